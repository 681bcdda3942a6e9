//! [`Log`]: the partition log API (append, flush, read, truncate, retention). Opening and crash
//! recovery live in `recovery.rs`.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_types::batch::{self, BatchHeader, Batches, RecordBatch};
use cairn_types::limits::{
    APPEND_BYTES_MAX, BATCH_BYTES_MAX, READ_BYTES_MAX, READ_RANGES_MAX, SCAN_BUFFER_BYTES,
    SEGMENT_RECORDS_MAX,
};
use cairn_types::{LeaderEpoch, Offset, RaftIndex};

use crate::checkpoint::{Checkpoint, RecoveryPoint};
use crate::clock::Clock;
use crate::config::{FlushPolicy, LogConfig, Retention};
use crate::disk::{Disk, DiskFile, child};
use crate::epochs::{EpochStart, Epochs};
use crate::error::{ENOSPC, Error, Result, io_error, io_or_no_space};
use crate::producers::ProducerStates;
use crate::recovery::Recovery;
use crate::rounds::Rounds;
use crate::segment::{self, Boundary, DATA_SUFFIX, INDEX_SUFFIX, Segment, SegmentFiles, Walk};

/// The page cache window's drops are made in steps of this many bytes (or a quarter of the
/// window, if smaller) within a segment, and whenever the window's tail leaves a segment.
const CACHE_DROP_STEP_BYTES: u64 = 8 * 1024 * 1024;

/// What an [`Log::append`] or [`Log::append_replicated`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Offset assigned to the first record of the first batch.
    pub base_offset: Offset,
    /// Offset after the last record appended: the log end offset ([`Log::next_offset`]) once
    /// the append returned.
    pub next_offset: Offset,
    /// Raft index of the first batch appended.
    pub first_index: RaftIndex,
    /// Raft index of the last batch appended ([`Log::next_index`] is the one after it).
    pub last_index: RaftIndex,
    /// Whether the batches were fsynced before the call returned.
    pub durable: bool,
}

/// A byte range of a segment file holding whole batches, for zero-copy sending (`sendfile` on
/// a [`crate::RealFile`]'s leased descriptor). If retention deletes the segment meanwhile, the
/// bytes stay reachable while the handle's descriptor is open; a [`crate::RealFile`] whose
/// descriptor the cache had closed fails with `NotFound` instead (never another file's bytes).
/// The descriptor is not pinned here: a Fetch answering thousands of partitions would then hold
/// thousands of descriptors at once, the very bound the descriptor cache removes.
pub struct FileRange<F> {
    /// The segment data file.
    pub file: Arc<F>,
    /// Base offset of the segment (names the file in errors and logs).
    pub segment_base: Offset,
    /// Byte position of the first batch in the file.
    pub position: u64,
    /// Length in bytes; always whole batches.
    pub len: u32,
}

/// The answer to a [`Log::locate`].
pub struct Located<F> {
    /// Ranges in log order; concatenated they are consecutive batches. The first batch may start
    /// before the requested offset (it contains it); consumers skip records before it, as in Kafka.
    pub ranges: Vec<FileRange<F>>,
    /// Offset after the last batch returned; the requested offset if nothing was returned.
    pub next_offset: Offset,
    /// Sum of the range lengths.
    pub bytes: u64,
}

/// An fsync taken out of the log by [`Log::begin_flush`], to run without holding the log.
#[must_use = "hand the result of sync() to Log::complete_flush"]
pub struct PendingFlush<F> {
    file: Arc<F>,
    path: PathBuf,
    /// The log's cut generation when begun.
    generation: u64,
    /// What the log looked like when begun: what the fsync makes durable.
    point: RecoveryPoint,
    /// The log's appended byte count when begun.
    appended_bytes: u64,
    /// Raft index after the last batch the fsync covers.
    next_index: RaftIndex,
    /// Cached ranges of durable data behind the cache window, dropped after the fsync.
    cache_drops: Vec<CacheDrop<F>>,
}

/// A range of a segment file whose cached pages are to be dropped.
struct CacheDrop<F> {
    file: Arc<F>,
    from: u64,
    to: u64,
}

/// The page cache window's drops a flush carries ([`PendingFlush::take_cache_drops`]): advice
/// about data that was durable before the flush began, to run off the durability path.
#[must_use = "run() the drops, or the pages stay cached"]
pub struct CacheDrops<F>(Vec<CacheDrop<F>>);

impl<F: DiskFile> CacheDrops<F> {
    /// Whether there is nothing to drop.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Asks the OS to drop the cached pages (`POSIX_FADV_DONTNEED`). Call without holding the log.
    pub fn run(self) {
        for drop in &self.0 {
            drop.file.drop_cache(drop.from, drop.to);
        }
    }
}

impl<F: DiskFile> PendingFlush<F> {
    /// Offsets below this are durable once [`PendingFlush::sync`] succeeds.
    #[must_use]
    pub fn upto(&self) -> Offset {
        self.point.next_offset
    }

    /// Takes the page cache window's drops out of this flush, so the caller can run them after
    /// it has published what the flush made durable: dropping megabytes of pages takes time
    /// that acknowledgements should not wait for.
    pub fn take_cache_drops(&mut self) -> CacheDrops<F> {
        CacheDrops(std::mem::take(&mut self.cache_drops))
    }

    /// Runs the `fdatasync`, then the cache drops not taken out. Call without holding the log.
    ///
    /// # Errors
    /// [`Error::Io`]; pass it to [`Log::complete_flush`], which poisons the log.
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(io_error("fsync", &self.path))?;
        self.take_cache_drops().run();
        Ok(())
    }
}

/// A partition log: segments of RecordBatch v2 bytes in one directory. See the crate docs.
///
/// Writers need `&mut self`; readers `&self`, so an owner may share it behind a `RwLock`.
pub struct Log<D: Disk> {
    pub(crate) disk: D,
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) clock: Arc<dyn Clock>,
    /// Oldest first; never empty; the last one is the active segment, the only one written.
    pub(crate) segments: VecDeque<Segment<D::File>>,
    pub(crate) epochs: Epochs,
    pub(crate) checkpoint: Checkpoint<D::File>,
    /// Offsets below this are fsynced.
    pub(crate) durable: Offset,
    /// Raft indexes below this are fsynced: the index of the batch starting at `durable`.
    pub(crate) durable_index: RaftIndex,
    /// Bytes appended since the last fsync.
    pub(crate) unflushed_bytes: u64,
    /// When the oldest unflushed append happened.
    pub(crate) unflushed_since_ms: Option<i64>,
    /// Index bytes written since the active index was last fsynced.
    pub(crate) index_unsynced_bytes: u64,
    /// Set by a failed write or fsync; from then on every write fails (fail-stop).
    pub(crate) poisoned: bool,
    /// Bumped by every cut of written data (suffix truncation, undone append): a flush begun
    /// before a cut says nothing about what was written after it.
    pub(crate) generation: u64,
    /// Bytes appended since the log was opened.
    appended_bytes: u64,
    /// Batches of the append in progress: position in the buffer and header. Reused.
    scratch: Vec<(usize, BatchHeader)>,
    /// What the last open found and did.
    pub(crate) recovery: Recovery,
    /// The newest checkpointed point: everything before it is durable.
    pub(crate) durable_point: RecoveryPoint,
    /// Cached pages before this (segment base, position) have been dropped (cache window).
    pub(crate) cache_dropped: (Offset, u64),
    /// The idempotent producers as of the log end (`producer_log.rs`).
    pub(crate) producers: ProducerStates,
    /// Compaction rounds applied and not carried out (`rounds.rs`).
    pub(crate) rounds: Rounds,
}

/// In-memory state of the active segment before an append, to undo a failed one.
struct Undo {
    segments: usize,
    size: u32,
    next: Offset,
    next_index: RaftIndex,
    max_timestamp: i64,
    bytes_since_index: u32,
    index_len: usize,
}

impl<D: Disk> Log<D> {
    pub(crate) fn from_parts(
        disk: D,
        dir: PathBuf,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        checkpoint: Checkpoint<D::File>,
    ) -> Log<D> {
        Log {
            disk,
            dir,
            config,
            clock,
            segments: VecDeque::new(),
            epochs: Epochs::default(),
            checkpoint,
            durable: Offset(0),
            durable_index: RaftIndex(0),
            unflushed_bytes: 0,
            unflushed_since_ms: None,
            index_unsynced_bytes: 0,
            poisoned: false,
            generation: 0,
            appended_bytes: 0,
            scratch: Vec::new(),
            recovery: Recovery::default(),
            durable_point: RecoveryPoint::default(),
            cache_dropped: (Offset(0), 0),
            producers: ProducerStates::new(),
            rounds: Rounds::default(),
        }
    }

    /// Replaces the configuration (a topic config changed). Takes effect on the next append:
    /// a smaller `segment_bytes` rolls then, it does not split existing segments.
    ///
    /// # Errors
    /// [`Error::Config`] if the new configuration is out of its limits; the old one stays.
    pub fn reconfigure(&mut self, config: LogConfig) -> Result<()> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// The current configuration.
    #[must_use]
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The log's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first offset still in the log (Kafka's log start offset).
    #[must_use]
    pub fn start_offset(&self) -> Offset {
        self.segments.front().expect("a log has at least one segment").base
    }

    /// The offset the next appended record gets (Kafka's log end offset).
    #[must_use]
    pub fn next_offset(&self) -> Offset {
        self.active().next
    }

    /// Offsets below this are durable (fsynced). Never more than what is on stable storage.
    #[must_use]
    pub fn durable_offset(&self) -> Offset {
        self.durable
    }

    /// The Raft index of the first batch still in the log.
    #[must_use]
    pub fn start_index(&self) -> RaftIndex {
        self.segments.front().expect("a log has at least one segment").first_index
    }

    /// The Raft index the next appended batch gets.
    #[must_use]
    pub fn next_index(&self) -> RaftIndex {
        self.active().next_index
    }

    /// Raft indexes below this are durable (fsynced): the index of the batch that starts at
    /// [`Log::durable_offset`], moving with it.
    #[must_use]
    pub fn durable_index(&self) -> RaftIndex {
        self.durable_index
    }

    /// Bytes of log data on disk (indexes excluded).
    #[must_use]
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| u64::from(s.size)).sum()
    }

    /// Number of segments, the active one included.
    #[must_use]
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_bases(&self) -> impl Iterator<Item = Offset> + '_ {
        self.segments.iter().map(|s| s.base)
    }

    /// The leader-epoch history: where each epoch started, oldest first.
    #[must_use]
    pub fn epoch_history(&self) -> &[EpochStart] {
        self.epochs.entries()
    }

    /// The epoch that appended `offset`, if it is covered by the history.
    #[must_use]
    pub fn epoch_at(&self, offset: Offset) -> Option<LeaderEpoch> {
        self.epochs.epoch_at(offset)
    }

    /// What opening the log found and did (work done, torn bytes cut).
    #[must_use]
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Whether an earlier IO failure stopped all writes.
    #[must_use]
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    pub(crate) fn active(&self) -> &Segment<D::File> {
        self.segments.back().expect("a log has at least one segment")
    }

    pub(crate) fn active_mut(&mut self) -> &mut Segment<D::File> {
        self.segments.back_mut().expect("a log has at least one segment")
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.poisoned { Err(Error::Poisoned) } else { Ok(()) }
    }

    /// Runs a write operation; any failure but a full disk poisons the log.
    pub(crate) fn guarded<T>(&mut self, op: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.check_writable()?;
        let result = op(self);
        if result.as_ref().is_err_and(|error| !error.is_retriable()) {
            self.poisoned = true;
        }
        result
    }

    /// Appends a buffer of one or more concatenated batches (a produce request's record set):
    /// the leader append.
    ///
    /// Every batch is validated (framing, magic, CRC) before anything is written. The log assigns
    /// consecutive offsets and writes `epoch` as each batch's partition leader epoch, rewriting
    /// those header fields in `batches` in place (the CRC does not cover them). The bytes go to the
    /// active segment in one write (one per segment when the append rolls), and are fsynced
    /// before return if the flush policy says so. Each batch is one Raft entry: the batches get
    /// consecutive indexes from [`Log::next_index`].
    ///
    /// # Errors
    /// - [`Error::InvalidBatch`], [`Error::AppendSize`], [`Error::StaleEpoch`]: rejected input,
    ///   nothing written.
    /// - [`Error::NoSpace`]: retriable; nothing of this call is kept.
    /// - [`Error::Io`], [`Error::Poisoned`]: fatal, see [`Error`].
    pub fn append(&mut self, batches: &mut [u8], epoch: LeaderEpoch) -> Result<Appended> {
        self.check_append(batches.len())?;
        if let Some(latest) = self.epochs.latest().filter(|latest| epoch < latest.epoch) {
            return Err(Error::StaleEpoch { epoch, latest: latest.epoch });
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = validate(batches, &mut scratch).and_then(|()| {
            self.guarded(|log| {
                log.assign(batches, &mut scratch, epoch);
                log.begin_epochs(&scratch)?;
                log.write_batches(batches, &scratch)
            })
        });
        self.finish_append(scratch, result, batches.len())
    }

    /// Appends batches a leader appended, as they are: the follower append. Nothing in
    /// `batches` is rewritten; their offsets and epochs are the leader's.
    ///
    /// Every batch is validated (framing, magic, CRC); the first must start at the log end
    /// ([`Log::next_offset`]) and each next where the one before ends; epochs may not go below
    /// the log's latest epoch nor decrease. A new epoch is recorded in the history before any
    /// batch is written, as [`Log::append`] does. Written, rolled and flushed as [`Log::append`].
    ///
    /// # Errors
    /// - [`Error::Diverged`]: a batch does not continue the log; nothing written.
    /// - [`Error::InvalidBatch`], [`Error::AppendSize`], [`Error::StaleEpoch`]: rejected input,
    ///   nothing written.
    /// - [`Error::NoSpace`], [`Error::Io`], [`Error::Poisoned`]: as [`Log::append`].
    pub fn append_replicated(&mut self, batches: &[u8]) -> Result<Appended> {
        self.check_append(batches.len())?;
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = validate(batches, &mut scratch)
            .and_then(|()| self.check_continues(&scratch))
            .and_then(|()| {
                self.guarded(|log| {
                    log.begin_epochs(&scratch)?;
                    log.write_batches(batches, &scratch)
                })
            });
        self.finish_append(scratch, result, batches.len())
    }

    /// Refuses an append of `bytes` bytes to a poisoned log, of nothing or of too much.
    fn check_append(&self, bytes: usize) -> Result<()> {
        self.check_writable()?;
        if bytes == 0 || bytes > APPEND_BYTES_MAX {
            return Err(Error::AppendSize { bytes, limit: APPEND_BYTES_MAX });
        }
        Ok(())
    }

    /// Checks that validated replicated batches continue the log: offsets from the log end,
    /// epochs not going backwards.
    fn check_continues(&self, headers: &[(usize, BatchHeader)]) -> Result<()> {
        let mut expected = self.next_offset();
        let mut latest = self.epochs.latest().map(|latest| latest.epoch);
        for (_, header) in headers {
            if header.base_offset != expected {
                return Err(Error::Diverged { expected, found: header.base_offset });
            }
            let epoch = header.partition_leader_epoch;
            if let Some(latest) = latest.filter(|latest| epoch < *latest) {
                return Err(Error::StaleEpoch { epoch, latest });
            }
            latest = Some(epoch);
            expected = header.next_offset();
        }
        Ok(())
    }

    /// The end of an append: puts the scratch back and, if it was written, counts it, flushes
    /// if due and says what was appended.
    fn finish_append(
        &mut self,
        scratch: Vec<(usize, BatchHeader)>,
        result: Result<()>,
        bytes: usize,
    ) -> Result<Appended> {
        let first = scratch.first().map(|(_, header)| header.base_offset);
        let next = scratch.last().map(|(_, header)| header.next_offset());
        let count = scratch.len() as u64;
        self.scratch = scratch;
        result?;
        let (Some(first), Some(next)) = (first, next) else {
            unreachable!("a validated, non-empty append holds at least one batch")
        };
        self.unflushed_bytes += bytes as u64;
        self.appended_bytes += bytes as u64;
        self.unflushed_since_ms.get_or_insert_with(|| self.clock.now_ms());
        if self.flush_due() {
            self.flush()?;
        }
        let next_index = self.next_index();
        Ok(Appended {
            base_offset: first,
            next_offset: next,
            first_index: RaftIndex(next_index.0 - count),
            last_index: RaftIndex(next_index.0 - 1),
            durable: self.durable >= next,
        })
    }

    /// Records in the history, durably and before any batch is written, every epoch of the
    /// batches about to be appended that is new. The caller has rejected stale epochs.
    fn begin_epochs(&mut self, headers: &[(usize, BatchHeader)]) -> Result<()> {
        let latest = self.epochs.latest().map(|latest| latest.epoch);
        if headers.iter().all(|(_, header)| Some(header.partition_leader_epoch) == latest) {
            return Ok(());
        }
        let previous = self.epochs.clone();
        let mut index = self.next_index();
        for (_, header) in headers {
            let epoch = header.partition_leader_epoch;
            if self.epochs.latest().is_none_or(|latest| latest.epoch != epoch) {
                let start_offset = header.base_offset;
                self.epochs.push(EpochStart { epoch, start_offset, start_index: index });
            }
            index = index.plus(1);
        }
        let result = self.epochs.persist(&self.disk, &self.dir).map_err(no_space_or_io);
        if result.is_err() {
            self.epochs = previous;
        }
        result
    }

    /// Assigns offsets and the epoch to the validated batches, in the buffer and in `headers`.
    fn assign(&self, batches: &mut [u8], headers: &mut [(usize, BatchHeader)], epoch: LeaderEpoch) {
        let mut next = self.next_offset();
        for (at, header) in headers.iter_mut() {
            batch::set_base_offset(&mut batches[*at..], next);
            batch::set_partition_leader_epoch(&mut batches[*at..], epoch);
            header.base_offset = next;
            header.partition_leader_epoch = epoch;
            next = header.next_offset();
            // The rewritten fields lie outside the CRC (a compile-time fact in cairn-types);
            // check the pair once more in debug builds.
            debug_assert!(RecordBatch::validate_prefix(&batches[*at..], BATCH_BYTES_MAX).is_ok());
        }
    }

    /// Writes the batches, rolling segments as needed; undoes everything on a full disk.
    fn write_batches(&mut self, batches: &[u8], headers: &[(usize, BatchHeader)]) -> Result<()> {
        let active = self.active();
        let undo = Undo {
            segments: self.segments.len(),
            size: active.size,
            next: active.next,
            next_index: active.next_index,
            max_timestamp: active.max_timestamp,
            bytes_since_index: active.bytes_since_index,
            index_len: active.index.len(),
        };
        let result = self.write_runs(batches, headers);
        if let Err(Error::NoSpace { .. }) = &result {
            self.undo_append(&undo)?;
        }
        result
    }

    fn write_runs(&mut self, batches: &[u8], headers: &[(usize, BatchHeader)]) -> Result<()> {
        let now_ms = self.clock.now_ms();
        let active = self.active();
        if active.size > 0
            && self.config.segment_ms.is_some_and(|ms| now_ms - active.created_ms >= ms)
        {
            self.roll()?;
        }
        let mut run_start = 0;
        for (i, (at, header)) in headers.iter().enumerate() {
            let active = self.active();
            let run_bytes = (*at - headers[run_start].0) as u64;
            let size_after = u64::from(active.size) + run_bytes + u64::from(header.total_bytes());
            let records_after = header.next_offset().distance_from(active.base);
            let full =
                size_after > self.config.segment_bytes || records_after > SEGMENT_RECORDS_MAX;
            if full && (active.size > 0 || i > run_start) {
                self.write_run(batches, &headers[run_start..i])?;
                run_start = i;
                self.roll()?;
            }
        }
        self.write_run(batches, &headers[run_start..])
    }

    /// Writes consecutive batches to the active segment with one write.
    fn write_run(&mut self, batches: &[u8], run: &[(usize, BatchHeader)]) -> Result<()> {
        let (Some(first), Some(last)) = (run.first(), run.last()) else { return Ok(()) };
        let end = last.0 + last.1.total_bytes() as usize;
        let interval = self.config.index_interval_bytes;
        let active = self.active_mut();
        active
            .data
            .write_all_at(&batches[first.0..end], u64::from(active.size))
            .map_err(io_or_no_space("write", &active.data_path))?;
        let run_position = active.size;
        for (at, header) in run {
            debug_assert_eq!((active.size - run_position) as usize, at - first.0);
            active.on_append(active.size, header, interval);
        }
        // Validated before they were written (the callers' contract).
        active.verified.insert(run_position, active.size);
        self.record_producers(run.iter().map(|(_, header)| header));
        Ok(())
    }

    /// Restores the state before a failed append: removes segments it created and cuts the
    /// active segment back. Failing that, the log is poisoned by the caller.
    fn undo_append(&mut self, undo: &Undo) -> Result<()> {
        self.generation += 1;
        while self.segments.len() > undo.segments {
            let segment = self.segments.pop_back().expect("more segments than before");
            self.remove_segment_files(&segment)?;
        }
        self.disk.sync_dir(&self.dir).map_err(io_error("fsync dir", &self.dir))?;
        let active = self.active_mut();
        active.size = undo.size;
        active.next = undo.next;
        active.next_index = undo.next_index;
        active.max_timestamp = undo.max_timestamp;
        active.bytes_since_index = undo.bytes_since_index;
        active.index.truncate_to_position(
            active.index.entries().get(undo.index_len).map_or(u32::MAX, |e| e.position),
        );
        active.index_written = active.index_written.min(active.index.len());
        active.verified.truncate(undo.size);
        active
            .data
            .set_len(u64::from(undo.size))
            .map_err(io_error("truncate", &active.data_path))?;
        // A roll during the failed append fsynced bytes past `size`: make the cut durable too.
        active.data.sync_data().map_err(io_error("fsync", &active.data_path))?;
        self.durable = undo.next;
        self.durable_index = undo.next_index;
        self.unflushed_bytes = 0;
        self.unflushed_since_ms = None;
        self.rebuild_producers()?;
        self.sync_checkpoint()
    }

    /// Seals the active segment (data and index fsynced) and starts a new one at the log end.
    pub(crate) fn roll(&mut self) -> Result<()> {
        let now_ms = self.clock.now_ms();
        let active = self.active_mut();
        active.data.sync_data().map_err(io_error("fsync", &active.data_path))?;
        active.seal_index();
        active.write_index()?;
        active.index_file.sync_data().map_err(io_error("fsync", &active.index_path))?;
        let (base, first_index) = (active.next, active.next_index);
        let segment = self.create_segment(base, first_index, now_ms)?;
        self.segments.push_back(segment);
        self.durable = base;
        self.durable_index = first_index;
        self.unflushed_bytes = 0;
        self.unflushed_since_ms = None;
        self.index_unsynced_bytes = 0;
        self.snapshot_producers()?;
        self.write_checkpoint()
    }

    /// Creates the files of a new, empty segment and makes their names durable.
    pub(crate) fn create_segment(
        &self,
        base: Offset,
        first_index: RaftIndex,
        now_ms: i64,
    ) -> Result<Segment<D::File>> {
        let data_path = child(&self.dir, &segment::file_name(base, first_index, DATA_SUFFIX));
        let index_path = child(&self.dir, &segment::file_name(base, first_index, INDEX_SUFFIX));
        let data = self.disk.create(&data_path).map_err(io_or_no_space("create", &data_path))?;
        let index = self.disk.create(&index_path).map_err(io_or_no_space("create", &index_path))?;
        self.disk.sync_dir(&self.dir).map_err(io_error("fsync dir", &self.dir))?;
        let files = SegmentFiles { data, data_path, index, index_path };
        Ok(Segment::new(base, first_index, files, now_ms))
    }

    pub(crate) fn remove_segment_files(&self, segment: &Segment<D::File>) -> Result<()> {
        for path in [&segment.data_path, &segment.index_path] {
            self.disk.remove_file(path).map_err(io_error("remove", path))?;
        }
        self.remove_producer_snapshot(segment)
    }

    /// Records that the whole log is durable (the caller just made it so).
    pub(crate) fn write_checkpoint(&mut self) -> Result<()> {
        self.write_checkpoint_at(self.end_point())
    }

    /// The point a checkpoint of the whole log records: the end of the active segment.
    pub(crate) fn end_point(&self) -> RecoveryPoint {
        let active = self.active();
        RecoveryPoint {
            segment_base: active.base,
            position: u64::from(active.size),
            next_offset: active.next,
        }
    }

    pub(crate) fn write_checkpoint_at(&mut self, point: RecoveryPoint) -> Result<()> {
        assert!(point.next_offset <= self.durable, "a checkpoint claims only durable data");
        self.durable_point = point;
        let path = child(&self.dir, crate::checkpoint::FILE_NAME);
        self.checkpoint.write(point).map_err(io_error("write", &path))
    }

    /// Writes a checkpoint for the current state and fsyncs it: for changes that make an older
    /// checkpoint wrong (cuts), not only stale.
    pub(crate) fn sync_checkpoint(&mut self) -> Result<()> {
        self.write_checkpoint()?;
        let path = child(&self.dir, crate::checkpoint::FILE_NAME);
        self.checkpoint.sync().map_err(io_error("fsync", &path))
    }

    /// The cached ranges of durable data more than `cache_window_bytes` behind the durable end
    /// that were not dropped yet; marks them dropped.
    fn take_cache_drops(&mut self) -> Vec<CacheDrop<D::File>> {
        let Some(window) = self.config.cache_window_bytes else { return Vec::new() };
        let end = (self.durable_point.segment_base, self.durable_point.position);
        // Walk back from the durable end until `window` bytes are behind: that is the target.
        let mut kept = 0;
        let mut target = None;
        for segment in self.segments.iter().rev().skip_while(|s| s.base > end.0) {
            let size = if segment.base == end.0 { end.1 } else { u64::from(segment.size) };
            if kept + size > window {
                target = Some((segment.base, size - (window - kept)));
                break;
            }
            kept += size;
        }
        // Advise in steps: each call costs the kernel a page-cache walk and, for pages it keeps,
        // a drain of every CPU's LRU batches, so a drop per small flush costs more than it saves.
        let step = (window / 4).min(CACHE_DROP_STEP_BYTES);
        let Some(target) = target.filter(|&(base, position)| {
            (base, position) > self.cache_dropped
                && (base != self.cache_dropped.0 || position - self.cache_dropped.1 >= step)
        }) else {
            return Vec::new();
        };
        let first = self.segments.partition_point(|s| s.base < self.cache_dropped.0);
        let drops = self
            .segments
            .range(first..)
            .take_while(|s| s.base <= target.0)
            .filter_map(|segment| {
                let from =
                    if segment.base == self.cache_dropped.0 { self.cache_dropped.1 } else { 0 };
                let to = if segment.base == target.0 { target.1 } else { u64::from(segment.size) };
                (to > from).then(|| CacheDrop { file: Arc::clone(&segment.data), from, to })
            })
            .collect();
        self.cache_dropped = target;
        drops
    }

    /// Whether the flush policy asks for a flush now.
    fn flush_due(&self) -> bool {
        if self.unflushed_bytes == 0 {
            return false;
        }
        match self.config.flush {
            FlushPolicy::Manual => false,
            FlushPolicy::EveryAppend => true,
            FlushPolicy::Interval { ms, bytes } => {
                let now_ms = self.clock.now_ms();
                let since_ms = self.unflushed_since_ms.unwrap_or(now_ms);
                self.unflushed_bytes >= bytes
                    // A clock that jumped backwards counts as due rather than postponing forever.
                    || now_ms < since_ms
                    || (now_ms - since_ms) as u64 >= ms
            }
        }
    }

    /// Flushes if the policy's interval or byte threshold has passed; call from a timer.
    ///
    /// # Errors
    /// As [`Log::flush`].
    pub fn flush_if_due(&mut self) -> Result<Offset> {
        if self.flush_due() {
            self.flush()?;
        }
        Ok(self.durable)
    }

    /// Makes every appended batch durable with one `fdatasync` of the active segment (earlier
    /// segments were synced when they were rolled); returns the durable offset.
    ///
    /// # Errors
    /// [`Error::Io`] if the fsync fails: the log is poisoned (the page cache may have dropped the
    /// unwritten pages, so retrying could report data durable that is not).
    pub fn flush(&mut self) -> Result<Offset> {
        match self.begin_flush()? {
            None => Ok(self.durable),
            Some(mut pending) => {
                let synced = pending.sync();
                self.complete_flush(pending, synced)
            }
        }
    }

    /// First half of a pipelined flush: writes pending index entries and returns the fsync to
    /// run, without holding the log, while appends continue; `None` if everything is durable.
    /// Hand the fsync's result to [`Log::complete_flush`]. One fsync covers every append made
    /// before it starts, so a flusher running these back to back is a group commit that
    /// overlaps the device's work with the appender's.
    ///
    /// # Errors
    /// [`Error::Poisoned`]; [`Error::Io`] writing the index (poisons).
    pub fn begin_flush(&mut self) -> Result<Option<PendingFlush<D::File>>> {
        self.guarded(|log| {
            if log.durable == log.next_offset() {
                return Ok(None);
            }
            let active = log.active_mut();
            let index_before = active.index_written;
            match active.write_index() {
                // The index is a hint: on a full disk, keep the entries in memory and go on.
                Err(Error::NoSpace { .. }) => {}
                other => other?,
            }
            let index_bytes = (active.index_written - index_before) * crate::index::ENTRY_BYTES;
            log.index_unsynced_bytes += index_bytes as u64;
            let cache_drops = log.take_cache_drops();
            let active = log.active();
            Ok(Some(PendingFlush {
                file: Arc::clone(&active.data),
                path: active.data_path.clone(),
                generation: log.generation,
                point: RecoveryPoint {
                    segment_base: active.base,
                    position: u64::from(active.size),
                    next_offset: active.next,
                },
                appended_bytes: log.appended_bytes,
                next_index: active.next_index,
                cache_drops,
            }))
        })
    }

    /// Second half of a pipelined flush: records what the fsync made durable (nothing if a cut
    /// happened since [`Log::begin_flush`]) and returns the durable offset.
    ///
    /// # Errors
    /// [`Error::Io`] if `synced` is an error: the log is poisoned.
    pub fn complete_flush(
        &mut self,
        pending: PendingFlush<D::File>,
        synced: Result<()>,
    ) -> Result<Offset> {
        self.guarded(|log| {
            synced?;
            let upto = pending.point.next_offset;
            if pending.generation != log.generation || upto <= log.durable {
                return Ok(log.durable);
            }
            log.durable = upto;
            log.durable_index = pending.next_index;
            log.unflushed_bytes = log.appended_bytes - pending.appended_bytes;
            log.unflushed_since_ms = (log.unflushed_bytes > 0).then(|| log.clock.now_ms());
            if log.index_unsynced_bytes >= log.config.index_sync_bytes {
                let active = log.active();
                active.index_file.sync_data().map_err(io_error("fsync", &active.index_path))?;
                log.index_unsynced_bytes = 0;
            }
            // A checkpoint describes a position in the active segment; after a roll the roll's
            // own checkpoint is newer.
            if log.active().base == pending.point.segment_base {
                log.write_checkpoint_at(pending.point)?;
            }
            Ok(log.durable)
        })
    }

    /// Flushes everything and records a checkpoint covering the whole log, so the next open
    /// walks nothing.
    ///
    /// # Errors
    /// As [`Log::flush`].
    pub fn close(mut self) -> Result<()> {
        self.seal()
    }

    /// What [`Log::close`] does, keeping the log usable: flush, seal the active index and make
    /// the checkpoint durable. For owners that cannot give the log away (it sits in a mutex).
    ///
    /// # Errors
    /// As [`Log::flush`].
    pub fn seal(&mut self) -> Result<()> {
        self.flush()?;
        self.guarded(|log| {
            let active = log.active_mut();
            active.seal_index();
            active.write_index()?;
            active.index_file.sync_data().map_err(io_error("fsync", &active.index_path))?;
            log.snapshot_producers_at_end()?;
            log.sync_checkpoint()
        })
    }

    /// Index of the segment holding `offset` (`start <= offset < next`).
    pub(crate) fn segment_of(&self, offset: Offset) -> usize {
        self.segments.partition_point(|s| s.base <= offset).saturating_sub(1)
    }

    pub(crate) fn check_range(&self, offset: Offset) -> Result<()> {
        let (start, end) = (self.start_offset(), self.next_offset());
        if offset < start || offset > end {
            return Err(Error::OffsetOutOfRange { offset, start, end });
        }
        Ok(())
    }

    /// Finds the whole batches from the one containing `from` onward, at most `bytes_max` bytes
    /// (but at least one batch, as Kafka fetch requires) and ending at or before `upto` (the high
    /// watermark, or [`Log::next_offset`]), to be sent as they are. Every byte returned is valid
    /// (RFC 0005): what was appended since the log opened, or verified before, costs a header
    /// walk; the rest is read and verified once (CRC, offsets, epochs) before it is returned.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] if `from` is outside `[start, next]`; [`Error::Corruption`] if
    /// the batches found are damaged; [`Error::Io`].
    pub fn locate(&self, from: Offset, bytes_max: u32, upto: Offset) -> Result<Located<D::File>> {
        self.find(from, bytes_max, upto, true)
    }

    /// [`Log::locate`]; verifying what is not known valid yet if `verify` (a copying read
    /// verifies the bytes it copies instead).
    fn find(
        &self,
        from: Offset,
        bytes_max: u32,
        upto: Offset,
        verify: bool,
    ) -> Result<Located<D::File>> {
        self.check_range(from)?;
        let upto = upto.min(self.next_offset());
        let mut located = Located { ranges: Vec::new(), next_offset: from, bytes: 0 };
        let mut budget = bytes_max.min(READ_BYTES_MAX);
        if from >= upto {
            return Ok(located);
        }
        for segment in self.segments.range(self.segment_of(from)..) {
            let start = if located.ranges.is_empty() {
                let walked = segment.locate(from, &self.epochs)?;
                let position = walked.position as u32;
                Boundary { position, offset: walked.header.base_offset, index: walked.index }
            } else {
                segment.start()
            };
            if start.offset >= upto {
                break;
            }
            let first = located.ranges.is_empty();
            let end = segment.boundary(start, budget, upto, first, &self.epochs)?;
            if end.position == start.position {
                break;
            }
            if verify {
                self.verify_span(segment, start, end.position)?;
            }
            let len = end.position - start.position;
            located.ranges.push(FileRange {
                file: Arc::clone(&segment.data),
                segment_base: segment.base,
                position: u64::from(start.position),
                len,
            });
            located.bytes += u64::from(len);
            located.next_offset = end.offset;
            budget = budget.saturating_sub(len);
            if budget == 0
                || end.offset >= upto
                || end.position < segment.size
                || located.ranges.len() == READ_RANGES_MAX
            {
                break;
            }
        }
        Ok(located)
    }

    /// [`Log::locate`], then copies the batches into `out` (appending) and verifies each one:
    /// CRC, offset continuity and leader epoch. Damaged data is never returned as data: this is
    /// the one copying read of the log. Returns the offset after the last batch copied.
    ///
    /// # Errors
    /// As [`Log::locate`]; [`Error::Corruption`] if any copied batch fails verification (`out`
    /// is then restored to its length before the call).
    pub fn read(
        &self,
        from: Offset,
        bytes_max: u32,
        upto: Offset,
        out: &mut Vec<u8>,
    ) -> Result<Offset> {
        let located = self.find(from, bytes_max, upto, false)?;
        let out_start = out.len();
        let result = self.copy_verified(&located, out);
        if result.is_err() {
            out.truncate(out_start);
        }
        result.map(|()| located.next_offset)
    }

    /// Verifies the batches of `segment` from `from` to `end` (a batch boundary) unless they
    /// are known valid, and records them as valid (RFC 0005).
    fn verify_span(&self, segment: &Segment<D::File>, from: Boundary, end: u32) -> Result<()> {
        if segment.verified.covers(from.position, end) {
            return Ok(());
        }
        let path = &segment.data_path;
        let mut walk = Walk::new(&*segment.data, path, from, u64::from(end))
            .with_epochs(&self.epochs)
            .verifying(SCAN_BUFFER_BYTES);
        while walk.try_next().map_err(|stop| stop.into_error(path))?.is_some() {}
        segment.verified.insert(from.position, end);
        Ok(())
    }

    fn copy_verified(&self, located: &Located<D::File>, out: &mut Vec<u8>) -> Result<()> {
        let mut expected = None;
        for range in &located.ranges {
            let segment = &self.segments[self.segment_of(range.segment_base)];
            let path = &segment.data_path;
            let start = out.len();
            out.resize(start + range.len as usize, 0);
            let got = range
                .file
                .read_at(&mut out[start..], range.position)
                .map_err(io_error("read", path))?;
            if got != range.len as usize {
                let error =
                    io::Error::new(io::ErrorKind::UnexpectedEof, "segment shrank during read");
                return Err(io_error("read", path)(error));
            }
            self.verify_copied(&out[start..], path, range.position, &mut expected)?;
            let position = range.position as u32;
            segment.verified.insert(position, position + range.len);
        }
        Ok(())
    }

    /// Verifies the batches copied from `path` at `position`: each is valid (CRC included),
    /// starts where the one before it ended (`expected`, carried across ranges) and carries the
    /// epoch the history gives its offset.
    fn verify_copied(
        &self,
        bytes: &[u8],
        path: &Path,
        mut position: u64,
        expected: &mut Option<Offset>,
    ) -> Result<()> {
        for batch in Batches::new(bytes, BATCH_BYTES_MAX) {
            let corruption =
                |reason: String| Error::Corruption { path: path.to_path_buf(), position, reason };
            let batch = batch.map_err(|e| corruption(e.to_string()))?;
            let header = batch.header();
            if expected.is_some_and(|expected| header.base_offset != expected) {
                return Err(corruption(format!(
                    "batch offset {} where {expected:?} was expected",
                    header.base_offset
                )));
            }
            if self.epochs.epoch_at(header.base_offset) != Some(header.partition_leader_epoch) {
                return Err(corruption(format!(
                    "batch epoch {} disagrees with the epoch history",
                    header.partition_leader_epoch
                )));
            }
            *expected = Some(header.next_offset());
            position += batch.as_bytes().len() as u64;
        }
        Ok(())
    }

    /// The largest batch max-timestamp in the log; `None` if the log is empty.
    #[must_use]
    pub fn max_timestamp(&self) -> Option<i64> {
        self.segments.iter().map(|s| s.max_timestamp).filter(|t| *t != i64::MIN).max()
    }

    /// The base offset of the first batch holding a record with timestamp `>= timestamp`
    /// (Kafka ListOffsets by time, to batch precision), or `None` if there is none.
    ///
    /// # Errors
    /// [`Error::Corruption`] or [`Error::Io`] from the header walk.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<Offset>> {
        for segment in &self.segments {
            if segment.max_timestamp >= timestamp {
                return segment.find_timestamp(timestamp, &self.epochs);
            }
        }
        Ok(None)
    }

    /// Removes every batch at or after `at` (a Raft log conflict), durably. `at` must be a batch
    /// boundary and not below `bound` (the commit index: committed data is never truncated).
    ///
    /// # Errors
    /// [`Error::BeyondBound`], [`Error::OffsetOutOfRange`], [`Error::NotBatchBoundary`];
    /// [`Error::Io`] (poisons).
    pub fn truncate_suffix(&mut self, at: Offset, bound: Offset) -> Result<()> {
        self.check_writable()?;
        if at < bound {
            return Err(Error::BeyondBound { op: "truncate_suffix", offset: at, bound });
        }
        self.check_range(at)?;
        if at == self.next_offset() {
            return Ok(());
        }
        let index = self.segment_of(at);
        let position = if at == self.segments[index].base {
            0
        } else {
            let walked = self.segments[index].locate(at, &self.epochs)?;
            if walked.header.base_offset != at {
                return Err(Error::NotBatchBoundary { offset: at });
            }
            walked.position as u32
        };
        self.guarded(|log| {
            log.generation += 1;
            while log.segments.len() > index + 1 {
                let segment = log.segments.pop_back().expect("more segments than index + 1");
                log.remove_segment_files(&segment)?;
            }
            log.disk.sync_dir(&log.dir).map_err(io_error("fsync dir", &log.dir))?;
            let interval = log.config.index_interval_bytes;
            let epochs = &log.epochs;
            let active = log.segments.back_mut().expect("a log has at least one segment");
            active.verified.truncate(position);
            active
                .data
                .set_len(u64::from(position))
                .map_err(io_error("truncate", &active.data_path))?;
            active.data.sync_data().map_err(io_error("fsync", &active.data_path))?;
            active.index.truncate_to_position(position);
            log.cache_dropped = log.cache_dropped.min((active.base, u64::from(position)));
            active.replay(position, epochs, interval)?;
            active.rewrite_index()?;
            // Stale entries past the cut must not survive a crash to mislead the next open.
            active.index_file.sync_data().map_err(io_error("fsync", &active.index_path))?;
            if log.epochs.truncate_from(at) {
                log.epochs.persist(&log.disk, &log.dir)?;
            }
            log.durable = at;
            log.durable_index = log.next_index();
            log.unflushed_bytes = 0;
            log.unflushed_since_ms = None;
            log.rebuild_producers()?;
            // An older checkpoint may vouch for positions whose bytes were just cut and will be
            // rewritten differently: replace it durably.
            log.sync_checkpoint()
        })
    }

    /// Deletes the oldest segments that end at or before `upto` (never the active segment);
    /// returns the new start offset. `upto` may not pass `bound` (what must be kept, e.g. the
    /// oldest offset a Raft snapshot does not cover).
    ///
    /// # Errors
    /// [`Error::BeyondBound`]; [`Error::Io`] (poisons).
    pub fn delete_prefix(&mut self, upto: Offset, bound: Offset) -> Result<Offset> {
        if upto > bound {
            return Err(Error::BeyondBound { op: "delete_prefix", offset: upto, bound });
        }
        let count = self
            .segments
            .iter()
            .take(self.segments.len() - 1)
            .take_while(|s| s.next <= upto)
            .count();
        self.delete_oldest(count)?;
        Ok(self.start_offset())
    }

    /// Applies `retention.ms` and `retention.bytes` to whole segments, oldest first, never the
    /// active segment and never one ending after `bound`. Returns the number deleted.
    ///
    /// # Errors
    /// [`Error::Io`] (poisons).
    pub fn apply_retention(&mut self, retention: Retention, bound: Offset) -> Result<usize> {
        let count = self.past_retention(retention, bound);
        self.delete_oldest(count)?;
        Ok(count)
    }

    /// The last Raft index of the newest segment [`Log::apply_retention`] would delete now, or
    /// `None` if it would delete none: where a Raft group builds its snapshot before purging
    /// through it (RFC 0003 §3 "Snapshots are small; purge is retention"). Deletes nothing.
    #[must_use]
    pub fn retention_point(&self, retention: Retention, bound: Offset) -> Option<RaftIndex> {
        let count = self.past_retention(retention, bound);
        let newest = self.segments.get(count.checked_sub(1)?)?;
        newest.next_index.0.checked_sub(1).map(RaftIndex)
    }

    /// How many of the oldest segments are past retention: never the active segment, never one
    /// ending after `bound`.
    fn past_retention(&self, retention: Retention, bound: Offset) -> usize {
        let now_ms = self.clock.now_ms();
        let mut remaining = self.size_bytes();
        let mut count = 0;
        for segment in self.segments.iter().take(self.segments.len() - 1) {
            let expired =
                retention.ms.is_some_and(|ms| segment.max_timestamp < now_ms.saturating_sub(ms));
            let oversized =
                retention.bytes.is_some_and(|bytes| remaining - u64::from(segment.size) >= bytes);
            if segment.next > bound || !(expired || oversized) {
                break;
            }
            remaining -= u64::from(segment.size);
            count += 1;
        }
        count
    }

    pub(crate) fn delete_oldest(&mut self, count: usize) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        debug_assert!(count < self.segments.len(), "the active segment is never deleted");
        // The durable checkpoint must not point at a segment about to go, or the next open would
        // not find it and walk the whole log. After a flush the last checkpoint written describes
        // the active segment; sync it.
        self.flush()?;
        self.guarded(|log| {
            log.sync_checkpoint()?;
            // Oldest first, so a crash midway leaves a contiguous log.
            for _ in 0..count {
                let segment = log.segments.pop_front().expect("count < segments");
                log.remove_segment_files(&segment)?;
            }
            log.disk.sync_dir(&log.dir).map_err(io_error("fsync dir", &log.dir))
        })
    }

    /// Reads and verifies every batch of the log (a scrub); the first damage is an error.
    ///
    /// # Errors
    /// [`Error::Corruption`] or [`Error::Io`].
    pub fn verify(&self) -> Result<()> {
        for segment in &self.segments {
            let mut walk = segment
                .walk(segment.start(), &self.epochs)
                .verifying(cairn_types::limits::SCAN_BUFFER_BYTES);
            while walk.next_header()?.is_some() {}
        }
        Ok(())
    }
}

/// Validates a buffer of concatenated batches into `headers` (position in the buffer, header).
fn validate(batches: &[u8], headers: &mut Vec<(usize, BatchHeader)>) -> Result<()> {
    headers.clear();
    let mut at = 0;
    for batch in Batches::new(batches, BATCH_BYTES_MAX) {
        let batch = batch.map_err(|source| Error::InvalidBatch { position: at, source })?;
        headers.push((at, *batch.header()));
        at += batch.as_bytes().len();
    }
    Ok(())
}

/// Turns an IO error that is a full disk into [`Error::NoSpace`].
fn no_space_or_io(error: Error) -> Error {
    match error {
        Error::Io { path, source, .. } if source.raw_os_error() == Some(ENOSPC) => {
            Error::NoSpace { path }
        }
        other => other,
    }
}
