//! Read-only inspection of a log directory for offline tools (`cairn log verify|dump`).
//!
//! [`inspect`] walks every segment with full verification (CRC, offset continuity, epochs) and
//! judges what it finds by the rules of recovery (`recovery.rs`): an invalid tail of the last
//! segment with no valid batch after it, outside what the recovery checkpoint vouches for, is a
//! torn tail that [`crate::Log::open`] would cut; anything else invalid is corruption. Unlike
//! `Log::open` it writes nothing: no truncation, no index or checkpoint write, no epoch history
//! rewrite, no file or directory creation. So it is safe on a copy, on an empty directory, and it
//! never cuts what might be the live end of a log that a running node is still appending to.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use cairn_types::batch::BatchHeader;
use cairn_types::limits::{SCAN_BUFFER_BYTES, SEGMENT_BYTES_MAX};
use cairn_types::{Offset, RaftIndex};

use crate::checkpoint::{self, RecoveryPoint};
use crate::disk::{Disk, DiskFile, child};
use crate::epochs::Epochs;
use crate::error::{Error, Result, io_error};
use crate::recovery::{ADOPTED_FIRST_INDEX, collect_epochs, segment_names, valid_batch_after};
use crate::segment::{Boundary, DATA_SUFFIX, SegmentName, Walk, WalkStop};

/// What [`inspect`] found in a log directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    /// Segment data files in the directory. Zero means the directory holds no log.
    pub segments: usize,
    /// Base offset of the first segment (the log start offset).
    pub start_offset: Offset,
    /// Offset after the last valid batch walked (the log end offset after recovery).
    pub next_offset: Offset,
    /// Raft index of the first batch (from the first segment's name; 1 for a log to adopt).
    pub start_index: RaftIndex,
    /// Raft index after the last valid batch walked.
    pub next_index: RaftIndex,
    /// Whether segments have offset-only names, written before Raft indexes: `Log::open` would
    /// adopt the log, numbering its batches from index 1 as this walk does.
    pub adoptable: bool,
    /// Bytes of valid batches walked and verified.
    pub verified_bytes: u64,
    /// The end of the last segment that recovery would cut as a torn write, if any.
    pub torn_tail: Option<TornTail>,
    /// Whether the leader-epoch history file is missing or damaged, so that it was rebuilt in
    /// memory from the batches (recovery rebuilds and rewrites it).
    pub epochs_rebuilt: bool,
    /// False if the visitor stopped the walk: the offsets and bytes then cover what was walked.
    pub complete: bool,
}

/// Bytes at the end of the last segment that recovery would cut as a torn write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment data file.
    pub path: PathBuf,
    /// Byte position of the first invalid byte; the file would be cut to this length.
    pub position: u64,
    /// Bytes that would be cut.
    pub bytes: u64,
    /// Why the bytes at `position` are not a batch.
    pub reason: String,
}

/// Walks the log in `dir` without writing anything, calling `visit` with each valid batch header
/// in offset order until it returns [`ControlFlow::Break`]. Segments that end at or before `from`
/// are skipped (not walked, not verified); the last segment is always walked.
///
/// A directory without segment files gives an [`Inspection`] with `segments == 0`: it is not a
/// log (a node's partition directory always holds at least one segment).
///
/// # Errors
/// [`Error::Corruption`] for damage that recovery would refuse rather than cut (the first one
/// found); [`Error::Io`], e.g. if `dir` does not exist.
pub fn inspect<D: Disk>(
    disk: &D,
    dir: &Path,
    from: Offset,
    visit: &mut dyn FnMut(&BatchHeader) -> ControlFlow<()>,
) -> Result<Inspection> {
    let names = disk.list_dir(dir).map_err(io_error("list", dir))?;
    let segments = segment_names(dir, &names)?;
    let start = segments.first().map_or(Boundary::default(), first_boundary);
    let mut inspection = Inspection {
        segments: segments.len(),
        start_offset: start.offset,
        next_offset: start.offset,
        start_index: start.index,
        next_index: start.index,
        adoptable: segments.iter().any(|name| name.first_index.is_none()),
        complete: true,
        ..Inspection::default()
    };
    if segments.is_empty() {
        return Ok(inspection);
    }
    let trusted = trusted_prefix(disk, dir, &segments, checkpoint::read_point(disk, dir)?)?;
    let epochs = match crate::epochs::Epochs::load(disk, dir)? {
        Some((epochs, _)) => epochs,
        None => {
            inspection.epochs_rebuilt = true;
            rebuild_epochs(disk, dir, &segments)?
        }
    };
    let context = Context { disk, dir, segments: &segments, trusted, epochs: &epochs, from };
    context.walk(&mut inspection, visit)?;
    Ok(inspection)
}

/// What one [`inspect`] walk knows about the whole log.
struct Context<'a, D> {
    disk: &'a D,
    dir: &'a Path,
    /// Segment names, in offset order.
    segments: &'a [SegmentName],
    /// The segment (position in `segments`) and position the recovery checkpoint vouches for.
    trusted: Option<(usize, u64)>,
    epochs: &'a Epochs,
    from: Offset,
}

/// How the walk of one segment ended.
enum SegmentEnd {
    /// At the end of the file; the next segment must start here.
    Whole(Boundary),
    /// The visitor stopped the walk.
    Stopped(Boundary),
    /// At a torn tail (last segment only).
    Torn(Boundary, TornTail),
}

impl<D: Disk> Context<'_, D> {
    fn walk(
        &self,
        inspection: &mut Inspection,
        visit: &mut dyn FnMut(&BatchHeader) -> ControlFlow<()>,
    ) -> Result<()> {
        let last = self.segments.len() - 1;
        let mut expected = first_boundary(&self.segments[0]);
        for (i, name) in self.segments.iter().enumerate() {
            let path = child(self.dir, &name.file_name(DATA_SUFFIX));
            check_continues(&path, name, expected)?;
            if i < last && self.segments[i + 1].base <= self.from {
                // Not walked: the next segment's name says where this one ends (an offset-only
                // name says nothing of indexes, so such a segment is walked).
                if let Some(index) = self.segments[i + 1].first_index {
                    expected = Boundary { position: 0, offset: self.segments[i + 1].base, index };
                    continue;
                }
            }
            let end = self.walk_segment(i, &path, expected, inspection, visit)?;
            match end {
                SegmentEnd::Whole(next) => expected = next,
                SegmentEnd::Stopped(next) => {
                    inspection.next_offset = next.offset;
                    inspection.next_index = next.index;
                    inspection.complete = false;
                    return Ok(());
                }
                SegmentEnd::Torn(next, torn) => {
                    expected = next;
                    inspection.torn_tail = Some(torn);
                }
            }
        }
        inspection.next_offset = expected.offset;
        inspection.next_index = expected.index;
        Ok(())
    }

    /// Bytes at the start of segment `i` (of `len` bytes) that the checkpoint vouches for:
    /// invalid bytes there are corruption, never a torn write.
    fn trusted_bytes(&self, i: usize, len: u64) -> u64 {
        match self.trusted {
            Some((trusted, _)) if i < trusted => len,
            Some((trusted, position)) if i == trusted => position,
            _ => 0,
        }
    }

    fn walk_segment(
        &self,
        i: usize,
        path: &Path,
        expected: Boundary,
        inspection: &mut Inspection,
        visit: &mut dyn FnMut(&BatchHeader) -> ControlFlow<()>,
    ) -> Result<SegmentEnd> {
        let file = self.disk.open_read_only(path).map_err(io_error("open", path))?;
        let len = file.len().map_err(io_error("stat", path))?;
        if len > SEGMENT_BYTES_MAX {
            let reason = "segment larger than any segment cairn writes".to_owned();
            return Err(Error::Corruption { path: path.to_path_buf(), position: len, reason });
        }
        let mut walk = Walk::new(&*file, path, expected, len)
            .with_epochs(self.epochs)
            .verifying(SCAN_BUFFER_BYTES);
        let at = |walk: &Walk<'_, _>| Boundary {
            position: 0,
            offset: walk.expected(),
            index: walk.index(),
        };
        loop {
            match walk.try_next() {
                Ok(Some(walked)) => {
                    inspection.verified_bytes += u64::from(walked.header.total_bytes());
                    if visit(&walked.header).is_break() {
                        return Ok(SegmentEnd::Stopped(at(&walk)));
                    }
                }
                Ok(None) => return Ok(SegmentEnd::Whole(at(&walk))),
                Err(WalkStop::Io(error)) => return Err(error),
                Err(WalkStop::Invalid { position, reason }) => {
                    let after = at(&walk);
                    let torn = i == self.segments.len() - 1
                        && position >= self.trusted_bytes(i, len)
                        && !valid_batch_after(
                            &*file,
                            path,
                            position,
                            len,
                            after.offset,
                            self.epochs,
                        )?;
                    if !torn {
                        return Err(Error::Corruption {
                            path: path.to_path_buf(),
                            position,
                            reason,
                        });
                    }
                    let path = path.to_path_buf();
                    let tail = TornTail { path, position, bytes: len - position, reason };
                    return Ok(SegmentEnd::Torn(after, tail));
                }
            }
        }
    }
}

/// Where the first segment `name` starts: its name's first index, or the one adoption gives.
fn first_boundary(name: &SegmentName) -> Boundary {
    Boundary {
        position: 0,
        offset: name.base,
        index: name.first_index.unwrap_or(ADOPTED_FIRST_INDEX),
    }
}

/// Checks, as `Log::open` does, that the segment `name` starts where the one before it ended.
fn check_continues(path: &Path, name: &SegmentName, expected: Boundary) -> Result<()> {
    let reason = if name.base != expected.offset {
        format!(
            "segment starts at offset {} but the previous one ends at {}",
            name.base, expected.offset
        )
    } else if name.first_index.is_some_and(|index| index != expected.index) {
        format!(
            "segment starts at raft index {} but the previous one ends at {}",
            name.first_index.unwrap_or_default(),
            expected.index
        )
    } else {
        return Ok(());
    };
    Err(Error::Corruption { path: path.to_path_buf(), position: 0, reason })
}

/// Which prefix of the log the checkpoint `point` vouches for, as `Log::open` judges it: none
/// unless its segment exists and is at least as long as the position it names.
fn trusted_prefix<D: Disk>(
    disk: &D,
    dir: &Path,
    segments: &[SegmentName],
    point: Option<RecoveryPoint>,
) -> Result<Option<(usize, u64)>> {
    let Some(point) = point else { return Ok(None) };
    let Some(i) = segments.iter().position(|name| name.base == point.segment_base) else {
        return Ok(None);
    };
    let path = child(dir, &segments[i].file_name(DATA_SUFFIX));
    let len = disk.open_read_only(&path).and_then(|f| f.len()).map_err(io_error("stat", &path))?;
    Ok((point.position <= len).then_some((i, point.position)))
}

/// The epoch history as recovery would rebuild it from the batch headers, kept in memory.
fn rebuild_epochs<D: Disk>(disk: &D, dir: &Path, segments: &[SegmentName]) -> Result<Epochs> {
    let mut epochs = Epochs::default();
    let mut expected = first_boundary(&segments[0]);
    for name in segments {
        let path = child(dir, &name.file_name(DATA_SUFFIX));
        let file = disk.open_read_only(&path).map_err(io_error("open", &path))?;
        let from = Boundary { index: name.first_index.unwrap_or(expected.index), ..expected };
        match collect_epochs(&mut epochs, &*file, &path, from)? {
            Some(next) => expected = Boundary { position: 0, ..next },
            None => break,
        }
    }
    Ok(epochs)
}
