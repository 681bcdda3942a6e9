//! Cutting a log at damage inside it, for a replica whose peers can send the rest again
//! (DESIGN §3.7; `docs/internals/replication.md`, "Storage faults").
//!
//! [`crate::Log::open`] refuses a log with an invalid batch followed by valid data
//! ([`Error::Corruption`]) and cuts nothing: on its own, the log cannot tell what is lost. The
//! Raft layer, which can have a leader refill it, cuts it in two steps:
//!
//! 1. [`plan_cut`] reads, writes nothing: where the first invalid batch is (a batch boundary),
//!    the offset and Raft index it held, the bytes from there on, and an upper bound of the
//!    entries the log held before (`held_end`): the caller records that bound durably, so that
//!    the replica keeps abstaining until its log is back there, across restarts.
//! 2. [`cut_damage`] moves everything from the damaged batch on aside, never deleting it: the
//!    rest of the damaged segment copied into a file of `aside`, later segments renamed into
//!    it, all of it made durable, and only then the damaged segment cut at the batch and synced.
//!    The later valid batches go too: without the damaged entry they are not a contiguous log.
//!
//! A crash midway leaves the damaged segment whole, with some of the later segments moved
//! aside or none: the next open finds the same damage first, and the next plan cuts it again
//! (a partial copy is written again).

use std::io;
use std::path::{Path, PathBuf};

use cairn_types::limits::SCAN_BUFFER_BYTES;
use cairn_types::{Offset, RaftIndex};

use crate::disk::{Disk, DiskFile, child};
use crate::error::{Error, Result, io_error};
use crate::recovery::{next_valid_batch, segment_names};
use crate::segment::{self, Boundary, DATA_SUFFIX, INDEX_SUFFIX, SegmentName, Walk, WalkStop};

/// Damage inside a log that [`cut_damage`] can cut away: what [`plan_cut`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The segment data file holding the first invalid batch.
    pub path: PathBuf,
    /// Byte position of that batch: the segment is cut to this length.
    pub position: u64,
    /// Why the bytes there are not the expected batch.
    pub reason: String,
    /// The offset of the first batch dropped (the damaged one).
    pub offset: Offset,
    /// The Raft index of the first batch dropped: the log ends there after the cut.
    pub index: RaftIndex,
    /// Bytes dropped: the rest of the damaged segment and every later segment.
    pub dropped_bytes: u64,
    /// The Raft index after the last entry the log held before the cut, at least: counted
    /// from the batch headers after the damage, or bounded by the offsets of the valid batches
    /// a byte scan finds where the headers are damaged too (a batch holds at least one offset).
    /// Never below `index + 1`: the damaged batch was an entry.
    pub held_end: RaftIndex,
}

/// Plans the cut of the damage `error` reports in the log of `dir` (see the module docs):
/// `None` if `error` is not damage this cut can remove (not [`Error::Corruption`], in a file
/// other than a segment of `dir`, a log of offset-only names, segment names that disagree, or
/// a position that is not a batch boundary). Reads only.
///
/// # Errors
/// [`Error::Io`] if the segments cannot be listed or read.
pub fn plan_cut<D: Disk>(disk: &D, dir: &Path, error: &Error) -> Result<Option<Damage>> {
    let Error::Corruption { path, position, reason } = error else { return Ok(None) };
    if path.parent() != Some(dir) {
        return Ok(None);
    }
    let name = path.file_name().and_then(|name| name.to_str()).and_then(segment::parse_data_name);
    let Some(name @ SegmentName { first_index: Some(first_index), .. }) = name else {
        return Ok(None);
    };
    let names = disk.list_dir(dir).map_err(io_error("list", dir))?;
    let Ok(segments) = segment_names(dir, &names) else { return Ok(None) };
    let Some(damaged) = segments.iter().position(|segment| *segment == name) else {
        return Ok(None);
    };
    let file = disk.open_read_only(path).map_err(io_error("open", path))?;
    let len = file.len().map_err(io_error("stat", path))?;
    let start = Boundary { position: 0, offset: name.base, index: first_index };
    let Some(at) = boundary_at(&*file, path, start, *position)? else { return Ok(None) };
    let mut dropped_bytes = len - position;
    for later in &segments[damaged + 1..] {
        let later = child(dir, &later.file_name(DATA_SUFFIX));
        let file = disk.open_read_only(&later).map_err(io_error("open", &later))?;
        dropped_bytes += file.len().map_err(io_error("stat", &later))?;
    }
    let held_end = held_end(disk, dir, &segments[damaged..], at)?;
    Ok(Some(Damage {
        path: path.clone(),
        position: *position,
        reason: reason.clone(),
        offset: at.offset,
        index: at.index,
        dropped_bytes,
        held_end,
    }))
}

/// The batch boundary at `position` of `file`, walking headers from `start`; `None` if no batch
/// starts there.
fn boundary_at<F: DiskFile>(
    file: &F,
    path: &Path,
    start: Boundary,
    position: u64,
) -> Result<Option<Boundary>> {
    let mut walk = Walk::new(file, path, start, position);
    loop {
        match walk.try_next() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(WalkStop::Io(error)) => return Err(error),
            Err(WalkStop::Invalid { .. }) => return Ok(None),
        }
    }
    if walk.position() != position {
        return Ok(None);
    }
    let position = u32::try_from(position).unwrap_or(u32::MAX);
    Ok(Some(Boundary { position, offset: walk.expected(), index: walk.index() }))
}

/// [`Damage::held_end`] for the damaged segment (first of `segments`, cut at `at`) and the
/// segments after it: the newest segment holding a batch tells.
fn held_end<D: Disk>(
    disk: &D,
    dir: &Path,
    segments: &[SegmentName],
    at: Boundary,
) -> Result<RaftIndex> {
    let floor = at.index.plus(1);
    for (i, name) in segments.iter().enumerate().rev() {
        let from = match (i, name.first_index) {
            (0, _) => at,
            (_, Some(index)) => Boundary { position: 0, offset: name.base, index },
            // A later segment of an offset-only name: its first index is unknown, so its
            // batches bound nothing here; the plan's caller saw a Raft-indexed log.
            (_, None) => continue,
        };
        let path = child(dir, &name.file_name(DATA_SUFFIX));
        let file = disk.open_read_only(&path).map_err(io_error("open", &path))?;
        let len = file.len().map_err(io_error("stat", &path))?;
        if let Some(end) = segment_end(&*file, &path, from, len)? {
            return Ok(end.max(floor));
        }
    }
    Ok(floor)
}

/// The Raft index after the last batch of `file` (length `len`) from `from`, at least: `None`
/// if it holds no batch there. Where a header is invalid, the valid batches a byte scan finds
/// after it bound the count (each holds at least one offset).
fn segment_end<F: DiskFile>(
    file: &F,
    path: &Path,
    from: Boundary,
    len: u64,
) -> Result<Option<RaftIndex>> {
    let mut walk = Walk::new(file, path, from, len);
    let mut end = None;
    loop {
        match walk.try_next() {
            Ok(Some(walked)) => end = Some(walked.index.plus(1)),
            Ok(None) => return Ok(end),
            Err(WalkStop::Io(error)) => return Err(error),
            Err(WalkStop::Invalid { .. }) => break,
        }
    }
    // The bytes at the stop were meant to be a batch: count it, then bound the rest.
    let (stop_offset, stop_index) = (walk.expected(), walk.index());
    let mut end = stop_index.plus(1);
    let mut position = walk.position();
    while let Some((at, header)) = next_valid_batch(file, path, position, len, stop_offset, None)? {
        let ahead = header.base_offset.0 - stop_offset.0;
        end = end.max(stop_index.plus(ahead + 1));
        position = at + u64::from(header.total_bytes()) - 1;
    }
    Ok(Some(end))
}

/// Cuts the log of `dir` at `damage` (planned by [`plan_cut`] on the log as it is), moving
/// what it drops into the directory `aside` (created; inside `dir`, or anywhere on the same
/// file system): durable before the damaged segment is cut. Nothing is deleted. Open the log
/// again after: it ends at `damage.index`.
///
/// # Errors
/// [`Error::Io`]; the log is then either whole or cut at the start of a moved segment (module
/// docs): open and plan again.
pub fn cut_damage<D: Disk>(disk: &D, dir: &Path, damage: &Damage, aside: &Path) -> Result<()> {
    disk.create_dir_all(aside).map_err(io_error("create dir", aside))?;
    let name = damage.path.file_name().and_then(|name| name.to_str()).unwrap_or("segment");
    let copy = child(aside, &format!("{name}.from-{}", damage.position));
    copy_from(disk, &damage.path, damage.position, &copy)?;
    let names = disk.list_dir(dir).map_err(io_error("list", dir))?;
    let damaged = segment::parse_data_name(name);
    for later in segment_names(dir, &names)?.iter().filter(|later| Some(**later) > damaged) {
        for suffix in [DATA_SUFFIX, INDEX_SUFFIX] {
            let file_name = later.file_name(suffix);
            let (from, to) = (child(dir, &file_name), child(aside, &file_name));
            match disk.rename(&from, &to) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound && suffix == INDEX_SUFFIX => {
                }
                Err(error) => return Err(io_error("rename", &from)(error)),
            }
        }
    }
    disk.sync_dir(aside).map_err(io_error("fsync dir", aside))?;
    if let Some(parent) = aside.parent().filter(|parent| *parent != dir) {
        disk.sync_dir(parent).map_err(io_error("fsync dir", parent))?;
    }
    disk.sync_dir(dir).map_err(io_error("fsync dir", dir))?;
    let file = disk.open(&damage.path).map_err(io_error("open", &damage.path))?;
    file.set_len(damage.position).map_err(io_error("truncate", &damage.path))?;
    file.sync_data().map_err(io_error("fsync", &damage.path))
}

/// Copies the bytes of `from` after `position` into the new file `to` and syncs it.
fn copy_from<D: Disk>(disk: &D, from: &Path, position: u64, to: &Path) -> Result<()> {
    let source = disk.open_read_only(from).map_err(io_error("open", from))?;
    let len = source.len().map_err(io_error("stat", from))?;
    let target = match disk.create(to) {
        Ok(file) => file,
        // A crash during an earlier cut left a partial copy: write it again.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            disk.open(to).map_err(io_error("open", to))?
        }
        Err(error) => return Err(io_error("create", to)(error)),
    };
    target.set_len(0).map_err(io_error("truncate", to))?;
    let mut buffer = vec![0u8; SCAN_BUFFER_BYTES];
    let mut at = position;
    while at < len {
        let want = usize::try_from(len - at).unwrap_or(usize::MAX).min(buffer.len());
        let read = source.read_at(&mut buffer[..want], at).map_err(io_error("read", from))?;
        if read == 0 {
            break;
        }
        target.write_all_at(&buffer[..read], at - position).map_err(io_error("write", to))?;
        at += read as u64;
    }
    target.sync_data().map_err(io_error("fsync", to))
}
