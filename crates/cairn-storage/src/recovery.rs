//! Opening a log: find the segments, trust what the recovery checkpoint covers, walk the rest.
//!
//! Rules (DESIGN.md §3.7, docs/internals/storage.md):
//! - Segments before the checkpoint's segment, and its first `position` bytes, were fsynced before
//!   the checkpoint was written: their headers are replayed from the last index entry to rebuild
//!   in-memory state, without CRC checks. Cost: the index lag, bounded by `index_sync_bytes`.
//! - Everything after is walked with full verification (CRC, offsets, epochs). Cost: the
//!   unflushed tail.
//! - The first invalid batch of the last segment, with no valid batch anywhere after it, is a torn
//!   write: the file is cut there. An invalid batch followed by a valid one, or in any segment but
//!   the last, or inside the checkpointed part, is corruption: `open` fails and nothing is cut.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_types::batch::{BatchHeader, HEADER_BYTES, RecordBatch};
use cairn_types::limits::{BATCH_BYTES_MAX, SCAN_BUFFER_BYTES, SEGMENT_BYTES_MAX};
use cairn_types::{LeaderEpoch, Offset, RaftIndex};

use crate::checkpoint::{Checkpoint, RecoveryPoint};
use crate::clock::Clock;
use crate::config::LogConfig;
use crate::disk::{Disk, DiskFile, child};
use crate::epochs::{EpochStart, Epochs, Format};
use crate::error::{Error, Result, io_error};
use crate::index::{ENTRY_BYTES, Index};
use crate::log::Log;
use crate::producer_log::remove_stray_producer_snapshots;
use crate::rewrite::remove_stray_copies;
use crate::rounds::Rounds;
use crate::segment::{
    self, Boundary, DATA_SUFFIX, INDEX_SUFFIX, Segment, SegmentFiles, SegmentName, Walk, WalkStop,
};

/// The first Raft index of an adopted log: index 0 is left to the snapshot the Raft layer writes
/// for what came before.
pub(crate) const ADOPTED_FIRST_INDEX: RaftIndex = RaftIndex(1);

/// What the last [`Log::open`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes whose headers were replayed to catch up in-memory state (trusted data).
    pub replayed_bytes: u64,
    /// Bytes walked with full verification (data after the checkpoint).
    pub verified_bytes: u64,
    /// Bytes cut off as a torn write at the end of the log.
    pub truncated_bytes: u64,
    /// Whether the leader-epoch history had to be rebuilt from the batches.
    pub rebuilt_epochs: bool,
    /// Whether this open adopted a log written before segments carried Raft indexes: its
    /// segments were renamed with first indexes counted from 1, its indexes rebuilt in the
    /// 24-byte format and its epoch history given start indexes. Nothing was deleted. The Raft
    /// layer writes its snapshot at index 0 for such a log.
    pub adopted: bool,
}

impl<D: Disk> Log<D> {
    /// Opens the log in `dir`, creating an empty one (at offset 0 and Raft index 0) if the
    /// directory has no segments, and recovers it after a clean shutdown or a crash (see the
    /// module docs). A log of offset-only segment names is adopted ([`Recovery::adopted`]).
    ///
    /// # Errors
    /// [`Error::Config`]; [`Error::Corruption`] if the log is damaged inside data it relies on
    /// (repair from a replica); [`Error::Io`].
    pub fn open(
        disk: D,
        dir: impl AsRef<Path>,
        config: LogConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Log<D>> {
        let dir = dir.as_ref();
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf);
        let log = Log::open_in_synced_parent(disk, dir, config, clock)?;
        if let Some(parent) = parent {
            log.disk.sync_dir(&parent).map_err(io_error("fsync dir", &parent))?;
        }
        Ok(log)
    }

    /// [`Log::open`] without its fsync of `dir`'s parent: the caller makes the name of `dir`
    /// durable itself, with one [`Disk::sync_dir`] of the parent for all the logs it opens
    /// there, before it relies on any of them (acknowledges their creation or an append).
    /// Everything inside `dir` is made durable as by [`Log::open`].
    ///
    /// # Errors
    /// As [`Log::open`].
    pub fn open_in_synced_parent(
        disk: D,
        dir: impl AsRef<Path>,
        config: LogConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Log<D>> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        disk.create_dir_all(&dir).map_err(io_error("create dir", &dir))?;
        let names = disk.list_dir(&dir).map_err(io_error("list", &dir))?;
        let segments = segment_names(&dir, &names)?;
        remove_stray_indexes(&disk, &dir, &names, &segments)?;
        let (checkpoint, point, checkpoint_created) = Checkpoint::open(&disk, &dir)?;
        // A new partition: nothing to recover, sync or checkpoint, one directory sync (by
        // create_segment) for the names of all its files.
        let fresh = segments.is_empty() && checkpoint_created;
        if checkpoint_created && !segments.is_empty() {
            disk.sync_dir(&dir).map_err(io_error("fsync dir", &dir))?;
        }
        let (stored_epochs, format) = match Epochs::load(&disk, &dir)? {
            Some((epochs, format)) => (Some(epochs), Some(format)),
            None => (None, None),
        };
        let now_ms = clock.now_ms();
        let mut log = Log::from_parts(disk, dir, config, clock, checkpoint);
        if segments.is_empty() {
            let segment = log.create_segment(Offset(0), RaftIndex(0), now_ms)?;
            log.segments.push_back(segment);
            log.epochs = stored_epochs.unwrap_or_default();
        } else {
            log.recover(&segments, point, stored_epochs, now_ms)?;
        }
        log.settle_epochs(format == Some(Format::V1))?;
        if segments.iter().any(|name| name.first_index.is_none()) {
            log.adopt(&segments)?;
        }
        log.finish_open(point, fresh)?;
        remove_stray_producer_snapshots(&log.disk, &log.dir, &names, &segments)?;
        remove_stray_copies(&log.disk, &log.dir, &names)?;
        log.open_producers()?;
        log.rounds = Rounds::read(&log.disk, &log.dir)?;
        Ok(log)
    }

    /// The last step of an open: the active segment made durable and checkpointed, unless the
    /// checkpoint already covers every byte (a clean close, or a crash right after a flush):
    /// those bytes were fsynced before it was written, and it already says so. A clean start
    /// then writes and syncs nothing.
    fn finish_open(&mut self, point: Option<RecoveryPoint>, fresh: bool) -> Result<()> {
        let covered = point == Some(self.end_point());
        if !fresh && !covered {
            let active = self.active();
            active.data.sync_data().map_err(io_error("fsync", &active.data_path))?;
        }
        self.durable = self.next_offset();
        self.durable_index = self.next_index();
        match point {
            Some(point) if covered => self.durable_point = point,
            _ if fresh => {}
            _ => self.write_checkpoint()?,
        }
        Ok(())
    }

    /// Forgets epochs that start past the log end and gives a version 1 history its start
    /// indexes (`upgrade`), persisting the history if either changed it.
    fn settle_epochs(&mut self, upgrade: bool) -> Result<()> {
        let truncated = self.epochs.truncate_from(self.next_offset());
        if upgrade {
            let mut epochs = self.epochs.clone();
            epochs.fill_indexes(self.start_offset(), |offset| self.index_of(offset))?;
            self.epochs = epochs;
        }
        if truncated || upgrade {
            self.epochs.persist(&self.disk, &self.dir)?;
        }
        Ok(())
    }

    /// Gives every segment of an offset-only name (recovered with first indexes counted from
    /// [`ADOPTED_FIRST_INDEX`]) its full name: renames, reopens, then one directory sync. A crash
    /// midway leaves names of both forms, which the next open adopts the same way.
    fn adopt(&mut self, names: &[SegmentName]) -> Result<()> {
        for (segment, name) in self.segments.iter_mut().zip(names) {
            if name.first_index.is_some() {
                continue;
            }
            let (base, first_index) = (segment.base, segment.first_index);
            let data_path = child(&self.dir, &segment::file_name(base, first_index, DATA_SUFFIX));
            let index_path = child(&self.dir, &segment::file_name(base, first_index, INDEX_SUFFIX));
            for (from, to) in [(&segment.data_path, &data_path), (&segment.index_path, &index_path)]
            {
                self.disk.rename(from, to).map_err(io_error("rename", to))?;
            }
            segment.data = self.disk.open(&data_path).map_err(io_error("open", &data_path))?;
            segment.index_file =
                self.disk.open(&index_path).map_err(io_error("open", &index_path))?;
            segment.data_path = data_path;
            segment.index_path = index_path;
        }
        self.disk.sync_dir(&self.dir).map_err(io_error("fsync dir", &self.dir))?;
        self.recovery.adopted = true;
        Ok(())
    }

    /// Opens the files of the segment `name` (creating a missing index). A segment of an
    /// offset-only name gets a first index the recovery walk corrects.
    fn open_segment(&self, name: &SegmentName, now_ms: i64) -> Result<Segment<D::File>> {
        let data_path = child(&self.dir, &name.file_name(DATA_SUFFIX));
        let index_path = child(&self.dir, &name.file_name(INDEX_SUFFIX));
        let data = self.disk.open(&data_path).map_err(io_error("open", &data_path))?;
        let index = match self.disk.open(&index_path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.disk.create(&index_path).map_err(io_error("create", &index_path))?
            }
            Err(error) => return Err(io_error("open", &index_path)(error)),
        };
        let first_index = name.first_index.unwrap_or(ADOPTED_FIRST_INDEX);
        let files = SegmentFiles { data, data_path, index, index_path };
        Ok(Segment::new(name.base, first_index, files, now_ms))
    }

    /// Each segment's data file length, refusing one larger than any segment cairn writes.
    fn segment_lens(&self) -> Result<Vec<u32>> {
        let mut lens = Vec::with_capacity(self.segments.len());
        for segment in &self.segments {
            let len = segment.data.len().map_err(io_error("stat", &segment.data_path))?;
            if len > SEGMENT_BYTES_MAX {
                return Err(
                    segment.corruption(len, "segment larger than any segment cairn writes".into())
                );
            }
            lens.push(len as u32);
        }
        Ok(lens)
    }

    fn recover(
        &mut self,
        names: &[SegmentName],
        point: Option<RecoveryPoint>,
        stored_epochs: Option<Epochs>,
        now_ms: i64,
    ) -> Result<()> {
        for name in names {
            let segment = self.open_segment(name, now_ms)?;
            self.segments.push_back(segment);
        }
        self.epochs = match stored_epochs {
            Some(epochs) => epochs,
            None => self.rebuild_epochs(names)?,
        };
        let lens = self.segment_lens()?;
        // Which prefix the checkpoint vouches for; without a usable one, nothing is trusted.
        let (trusted, trusted_position) = point
            .and_then(|p| {
                let i = names.iter().position(|name| name.base == p.segment_base)?;
                (p.position <= u64::from(lens[i])).then_some((i, p.position as u32))
            })
            .unwrap_or((0, 0));
        let last = names.len() - 1;
        let interval = self.config.index_interval_bytes;
        let mut expected = self.segments[0].start();
        for (i, segment) in self.segments.iter_mut().enumerate() {
            if names[i].first_index.is_none() {
                segment.first_index = expected.index;
                segment.next_index = expected.index;
            }
            check_continues(segment, expected)?;
            let len = lens[i];
            let replay_end = match i.cmp(&trusted) {
                std::cmp::Ordering::Less => len,
                std::cmp::Ordering::Equal => trusted_position,
                std::cmp::Ordering::Greater => 0,
            };
            load_index(segment, replay_end)?;
            self.recovery.replayed_bytes += segment.replay(replay_end, &self.epochs, interval)?;
            if replay_end < len {
                let (verified, truncated) =
                    verify_tail(segment, len, i == last, &self.epochs, interval)?;
                self.recovery.verified_bytes += verified;
                self.recovery.truncated_bytes += truncated;
            }
            if i < last {
                segment.seal_index();
            }
            segment.write_index()?;
            expected = segment.end();
        }
        Ok(())
    }

    /// Rebuilds the epoch history from the batch headers when its file is missing or damaged.
    /// Stops quietly at the first invalid batch: the recovery walk that follows judges it. A
    /// log without batches has no history, so nothing is rebuilt or persisted: a new log writes
    /// no epoch file until its first append, and its reopen must not write one either.
    fn rebuild_epochs(&mut self, names: &[SegmentName]) -> Result<Epochs> {
        let mut epochs = Epochs::default();
        let mut expected = self.segments[0].start();
        let mut complete = true;
        for (segment, name) in self.segments.iter().zip(names) {
            let from = Boundary {
                position: 0,
                offset: expected.offset,
                index: name.first_index.unwrap_or(expected.index),
            };
            match collect_epochs(&mut epochs, &*segment.data, &segment.data_path, from)? {
                Some(next) => expected = next,
                None => {
                    complete = false;
                    break;
                }
            }
        }
        if epochs.entries().is_empty() {
            return Ok(epochs);
        }
        self.recovery.rebuilt_epochs = true;
        if complete {
            epochs.persist(&self.disk, &self.dir)?;
        }
        Ok(epochs)
    }
}

/// Checks that `segment`'s name continues the segment before it, which ends at `expected`
/// (the log's start for the first): offsets and Raft indexes agree with the batches counted.
fn check_continues<F: DiskFile>(segment: &Segment<F>, expected: Boundary) -> Result<()> {
    if segment.base != expected.offset {
        let reason = format!(
            "segment starts at offset {} but the previous one ends at {}",
            segment.base, expected.offset
        );
        return Err(segment.corruption(0, reason));
    }
    if segment.first_index != expected.index {
        let reason = format!(
            "segment starts at raft index {} but the previous one ends at {}",
            segment.first_index, expected.index
        );
        return Err(segment.corruption(0, reason));
    }
    Ok(())
}

/// The segments named in the directory listing `names`, in offset order. Two segments of one
/// base offset, or first indexes that do not grow with base offsets, are corruption.
///
/// # Errors
/// [`Error::Corruption`].
pub(crate) fn segment_names(dir: &Path, names: &[String]) -> Result<Vec<SegmentName>> {
    let mut segments: Vec<SegmentName> =
        names.iter().filter_map(|name| segment::parse_data_name(name)).collect();
    segments.sort_unstable();
    for pair in segments.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let indexes_disagree =
            matches!((a.first_index, b.first_index), (Some(x), Some(y)) if x >= y);
        if a.base == b.base || indexes_disagree {
            let reason = format!(
                "segment names {} and {} do not order offsets and raft indexes alike",
                a.file_name(DATA_SUFFIX),
                b.file_name(DATA_SUFFIX)
            );
            let path: PathBuf = child(dir, &b.file_name(DATA_SUFFIX));
            return Err(Error::Corruption { path, position: 0, reason });
        }
    }
    Ok(segments)
}

/// Removes index files that belong to no segment (a crash interrupted a segment deletion or
/// rename) and the indexes of offset-only names (the 20-byte format, rebuilt on adoption).
fn remove_stray_indexes<D: Disk>(
    disk: &D,
    dir: &Path,
    names: &[String],
    segments: &[SegmentName],
) -> Result<()> {
    for name in names.iter().filter(|name| name.ends_with(INDEX_SUFFIX)) {
        let keep = segment::parse_name(name, INDEX_SUFFIX).is_some_and(|index| {
            index.first_index.is_some() && segments.binary_search(&index).is_ok()
        });
        if !keep {
            let path = child(dir, name);
            disk.remove_file(&path).map_err(io_error("remove", &path))?;
        }
    }
    Ok(())
}

/// Adds the epochs of one segment's batches, from a batch at boundary `from` at its start, to
/// `epochs`. Returns where the segment's last batch ends (offset and Raft index), or `None` if
/// the walk stopped at an invalid batch (the recovery or inspection walk that follows judges it).
///
/// # Errors
/// [`Error::Corruption`] if an epoch goes backwards; [`Error::Io`].
pub(crate) fn collect_epochs<F: DiskFile>(
    epochs: &mut Epochs,
    file: &F,
    path: &Path,
    from: Boundary,
) -> Result<Option<Boundary>> {
    let len = file.len().map_err(io_error("stat", path))?;
    let mut walk = Walk::new(file, path, from, len);
    loop {
        match walk.try_next() {
            Ok(Some(walked)) => {
                let epoch = walked.header.partition_leader_epoch;
                match epochs.latest() {
                    Some(latest) if epoch == latest.epoch => {}
                    Some(latest) if epoch < latest.epoch => {
                        let reason = format!("epoch {epoch} after epoch {}", latest.epoch);
                        let position = walk.position();
                        return Err(Error::Corruption {
                            path: path.to_path_buf(),
                            position,
                            reason,
                        });
                    }
                    _ => epochs.push(EpochStart {
                        epoch,
                        start_offset: walked.header.base_offset,
                        start_index: walked.index,
                    }),
                }
            }
            Ok(None) => {
                let position = u32::try_from(walk.position()).unwrap_or(u32::MAX);
                let (offset, index) = (walk.expected(), walk.index());
                return Ok(Some(Boundary { position, offset, index }));
            }
            Err(WalkStop::Io(error)) => return Err(error),
            Err(WalkStop::Invalid { .. }) => return Ok(None),
        }
    }
}

/// Loads the segment's index entries at positions up to `position_max`; drops the rest from the
/// file so no stale entry outlives this open.
fn load_index<F: DiskFile>(segment: &mut Segment<F>, position_max: u32) -> Result<()> {
    let file_len = segment.index_file.len().map_err(io_error("stat", &segment.index_path))?;
    // An index never has more entries than the data has batches, plus the seal entry.
    let len_max = (u64::from(position_max) / HEADER_BYTES as u64 + 2) * ENTRY_BYTES as u64;
    let mut bytes = vec![0; file_len.min(len_max) as usize];
    let read =
        segment.index_file.read_at(&mut bytes, 0).map_err(io_error("read", &segment.index_path))?;
    bytes.truncate(read);
    segment.index = Index::decode(&bytes, u64::from(position_max));
    segment.index_written = segment.index.len();
    let kept = (segment.index_written * ENTRY_BYTES) as u64;
    if file_len > kept {
        segment.index_file.set_len(kept).map_err(io_error("truncate", &segment.index_path))?;
    }
    Ok(())
}

/// Walks `[segment.size, len)` with full verification, appending valid batches to the segment's
/// state. Returns the bytes verified and the bytes cut as a torn tail.
fn verify_tail<F: DiskFile>(
    segment: &mut Segment<F>,
    len: u32,
    is_last: bool,
    epochs: &Epochs,
    interval_bytes: u32,
) -> Result<(u64, u64)> {
    let data = Arc::clone(&segment.data);
    let path = segment.data_path.clone();
    let start = segment.size;
    let mut walk = Walk::new(&*data, &path, segment.end(), u64::from(len))
        .with_epochs(epochs)
        .verifying(SCAN_BUFFER_BYTES);
    loop {
        match walk.try_next() {
            Ok(Some(walked)) => {
                segment.on_append(walked.position as u32, &walked.header, interval_bytes)
            }
            Ok(None) => {
                segment.verified.insert(start, segment.size);
                return Ok((u64::from(len - start), 0));
            }
            Err(WalkStop::Io(error)) => return Err(error),
            Err(WalkStop::Invalid { position, reason }) => {
                if !is_last
                    || valid_batch_after(
                        &*data,
                        &path,
                        position,
                        u64::from(len),
                        walk.expected(),
                        epochs,
                    )?
                {
                    return Err(segment.corruption(position, reason));
                }
                data.set_len(position).map_err(io_error("truncate", &path))?;
                data.sync_data().map_err(io_error("fsync", &path))?;
                segment.verified.insert(start, segment.size);
                return Ok((position - u64::from(start), u64::from(len) - position));
            }
        }
    }
}

/// Whether any valid batch (CRC, offset at least `offset_min`, a known epoch) starts anywhere in
/// `(from, end)`: if so, the invalid bytes at `from` are not a torn tail but damage in the middle
/// of written data. Byte-by-byte search; runs only after an invalid batch was found.
pub(crate) fn valid_batch_after<F: DiskFile>(
    file: &F,
    path: &Path,
    from: u64,
    end: u64,
    offset_min: Offset,
    epochs: &Epochs,
) -> Result<bool> {
    Ok(next_valid_batch(file, path, from, end, offset_min, Some(epochs))?.is_some())
}

/// The first valid batch (CRC, offset at least `offset_min`, with `epochs` an epoch the history
/// knows for its offset) that starts anywhere in `(from, end)` and ends by `end`: its position
/// and header. Byte-by-byte search, for damaged data only.
pub(crate) fn next_valid_batch<F: DiskFile>(
    file: &F,
    path: &Path,
    from: u64,
    end: u64,
    offset_min: Offset,
    epochs: Option<&Epochs>,
) -> Result<Option<(u64, BatchHeader)>> {
    let mut window = vec![0u8; SCAN_BUFFER_BYTES];
    let mut batch = Vec::new();
    let mut window_start = from + 1;
    while window_start + HEADER_BYTES as u64 <= end {
        let want = (end - window_start).min(SCAN_BUFFER_BYTES as u64) as usize;
        let read =
            file.read_at(&mut window[..want], window_start).map_err(io_error("read", path))?;
        if read < HEADER_BYTES {
            break;
        }
        for i in 0..=read - HEADER_BYTES {
            let Ok(header) = BatchHeader::parse(&window[i..read], BATCH_BYTES_MAX) else {
                continue;
            };
            let position = window_start + i as u64;
            let epoch_unknown = epochs.is_some_and(|epochs| {
                epochs
                    .epoch_at(header.base_offset)
                    .is_none_or(|e: LeaderEpoch| e != header.partition_leader_epoch)
            });
            if header.base_offset < offset_min
                || position + u64::from(header.total_bytes()) > end
                || epoch_unknown
            {
                continue;
            }
            let total = header.total_bytes() as usize;
            let bytes = if i + total <= read {
                &window[i..i + total]
            } else {
                batch.resize(total, 0);
                let got = file.read_at(&mut batch, position).map_err(io_error("read", path))?;
                &batch[..got]
            };
            if RecordBatch::validate(bytes).is_ok() {
                return Ok(Some((position, header)));
            }
        }
        window_start += (read - HEADER_BYTES + 1) as u64;
    }
    Ok(None)
}
