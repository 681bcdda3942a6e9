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

use std::path::Path;
use std::sync::Arc;

use cairn_types::batch::{BatchHeader, HEADER_BYTES, RecordBatch};
use cairn_types::limits::{BATCH_BYTES_MAX, SCAN_BUFFER_BYTES, SEGMENT_BYTES_MAX};
use cairn_types::{LeaderEpoch, Offset};

use crate::checkpoint::{Checkpoint, RecoveryPoint};
use crate::clock::Clock;
use crate::config::LogConfig;
use crate::disk::{Disk, DiskFile, child};
use crate::epochs::{EpochStart, Epochs};
use crate::error::{Error, Result, io_error};
use crate::index::{ENTRY_BYTES, Index};
use crate::log::Log;
use crate::segment::{self, DATA_SUFFIX, INDEX_SUFFIX, Segment, Walk, WalkStop};

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
}

impl<D: Disk> Log<D> {
    /// Opens the log in `dir`, creating an empty one if the directory has no segments, and
    /// recovers it after a clean shutdown or a crash (see the module docs).
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
        let mut bases: Vec<Offset> =
            names.iter().filter_map(|n| segment::parse_data_name(n)).collect();
        bases.sort_unstable();
        // An index whose data file is gone: a crash interrupted a segment deletion.
        for name in &names {
            if let Some(stem) = name.strip_suffix(INDEX_SUFFIX) {
                let data_name = format!("{stem}{DATA_SUFFIX}");
                if segment::parse_data_name(&data_name)
                    .is_none_or(|base| bases.binary_search(&base).is_err())
                {
                    let path = child(&dir, name);
                    disk.remove_file(&path).map_err(io_error("remove", &path))?;
                }
            }
        }
        let (checkpoint, point, checkpoint_created) = Checkpoint::open(&disk, &dir)?;
        // A new partition: nothing to recover, sync or checkpoint, one directory sync (by
        // create_segment) for the names of all its files.
        let fresh = bases.is_empty() && checkpoint_created;
        if checkpoint_created && !bases.is_empty() {
            disk.sync_dir(&dir).map_err(io_error("fsync dir", &dir))?;
        }
        let stored_epochs = Epochs::load(&disk, &dir)?;
        let now_ms = clock.now_ms();
        let mut log = Log::from_parts(disk, dir, config, clock, checkpoint);
        if bases.is_empty() {
            let segment = log.create_segment(Offset(0), now_ms)?;
            log.segments.push_back(segment);
            log.epochs = stored_epochs.unwrap_or_default();
        } else {
            log.recover(&bases, point, stored_epochs, now_ms)?;
        }
        let next = log.next_offset();
        if log.epochs.truncate_from(next) {
            log.epochs.persist(&log.disk, &log.dir)?;
        }
        // Every byte is covered by the checkpoint (a clean close, or a crash right after a
        // flush): those bytes were fsynced before it was written, and it already says so. A
        // clean start then writes and syncs nothing.
        let covered = point == Some(log.end_point());
        if !fresh && !covered {
            let active = log.active();
            active.data.sync_data().map_err(io_error("fsync", &active.data_path))?;
        }
        log.durable = next;
        match point {
            Some(point) if covered => log.durable_point = point,
            _ if fresh => {}
            _ => log.write_checkpoint()?,
        }
        Ok(log)
    }

    fn recover(
        &mut self,
        bases: &[Offset],
        point: Option<RecoveryPoint>,
        stored_epochs: Option<Epochs>,
        now_ms: i64,
    ) -> Result<()> {
        for &base in bases {
            let data_path = child(&self.dir, &segment::file_name(base, DATA_SUFFIX));
            let index_path = child(&self.dir, &segment::file_name(base, INDEX_SUFFIX));
            let data = self.disk.open(&data_path).map_err(io_error("open", &data_path))?;
            let index = match self.disk.open(&index_path) {
                Ok(file) => file,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    self.disk.create(&index_path).map_err(io_error("create", &index_path))?
                }
                Err(error) => return Err(io_error("open", &index_path)(error)),
            };
            self.segments.push_back(Segment::new(&self.dir, base, data, index, now_ms));
        }
        self.epochs = match stored_epochs {
            Some(epochs) => epochs,
            None => self.rebuild_epochs()?,
        };
        let mut lens = Vec::with_capacity(bases.len());
        for segment in &self.segments {
            let len = segment.data.len().map_err(io_error("stat", &segment.data_path))?;
            if len > SEGMENT_BYTES_MAX {
                return Err(
                    segment.corruption(len, "segment larger than any segment cairn writes".into())
                );
            }
            lens.push(len as u32);
        }
        // Which prefix the checkpoint vouches for; without a usable one, nothing is trusted.
        let (trusted, trusted_position) = point
            .and_then(|p| {
                let i = bases.binary_search(&p.segment_base).ok()?;
                (p.position <= u64::from(lens[i])).then_some((i, p.position as u32))
            })
            .unwrap_or((0, 0));
        let last = bases.len() - 1;
        let interval = self.config.index_interval_bytes;
        let mut expected = bases[0];
        for (i, segment) in self.segments.iter_mut().enumerate() {
            if segment.base != expected {
                let reason = format!(
                    "segment starts at offset {} but the previous one ends at {expected}",
                    segment.base
                );
                return Err(segment.corruption(0, reason));
            }
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
            expected = segment.next;
        }
        Ok(())
    }

    /// Rebuilds the epoch history from the batch headers when its file is missing or damaged.
    /// Stops quietly at the first invalid batch: the recovery walk that follows judges it. A
    /// log without batches has no history, so nothing is rebuilt or persisted: a new log writes
    /// no epoch file until its first append, and its reopen must not write one either.
    fn rebuild_epochs(&mut self) -> Result<Epochs> {
        let mut epochs = Epochs::default();
        let mut expected = self.segments.front().map_or(Offset(0), |s| s.base);
        let mut complete = true;
        for segment in &self.segments {
            match collect_epochs(&mut epochs, &*segment.data, &segment.data_path, expected)? {
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

/// Adds the epochs of one segment's batches, from a batch with offset `expected` at its start,
/// to `epochs`. Returns the offset after the segment's last batch, or `None` if the walk stopped
/// at an invalid batch (the recovery or inspection walk that follows judges it).
///
/// # Errors
/// [`Error::Corruption`] if an epoch goes backwards; [`Error::Io`].
pub(crate) fn collect_epochs<F: DiskFile>(
    epochs: &mut Epochs,
    file: &F,
    path: &Path,
    expected: Offset,
) -> Result<Option<Offset>> {
    let len = file.len().map_err(io_error("stat", path))?;
    let mut walk = Walk::new(file, path, 0, len, expected);
    loop {
        match walk.try_next() {
            Ok(Some((_, header))) => {
                let epoch = header.partition_leader_epoch;
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
                    _ => epochs.push(EpochStart { epoch, start_offset: header.base_offset }),
                }
            }
            Ok(None) => return Ok(Some(walk.expected())),
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
    let mut walk = Walk::new(&*data, &path, u64::from(start), u64::from(len), segment.next)
        .with_epochs(epochs)
        .verifying(SCAN_BUFFER_BYTES);
    loop {
        match walk.try_next() {
            Ok(Some((position, header))) => {
                segment.on_append(position as u32, &header, interval_bytes)
            }
            Ok(None) => return Ok((u64::from(len - start), 0)),
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
            if header.base_offset < offset_min
                || position + u64::from(header.total_bytes()) > end
                || epochs
                    .epoch_at(header.base_offset)
                    .is_none_or(|e: LeaderEpoch| e != header.partition_leader_epoch)
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
                return Ok(true);
            }
        }
        window_start += (read - HEADER_BYTES + 1) as u64;
    }
    Ok(false)
}
