//! [`Partition`]: one partition replica's log, its group commit, its [`Replica`] state and its
//! high watermark.
//!
//! Appends take the partition's mutex only to write into the page cache. Durability is the
//! partition's flusher task, the log's group commit ([`cairn_raft::GroupCommit`], which the Raft
//! log store runs too): it takes a pending flush from the log, runs the `fdatasync` on a
//! blocking thread without the mutex, completes it, and repeats while there is anything
//! unflushed — so one fsync commits every append made while the previous one ran and appends
//! never wait for the device.
//!
//! The partition carries out its [`Replica`]: appends report `on_appended`, the flusher
//! `on_flushed`, and the commit `on_committed`. **Flushed is not committed**: fetches,
//! ListOffsets, timestamp lookups and retention are bounded by the commit offset, the high
//! watermark, published on a `watch` channel that `acks=all` produces and long-polling fetches
//! wait on. With one voter (every partition today) a flush is a commit: the flusher calls the
//! same [`Partition::commit`] that the Raft commit callback will.
//!
//! A partition is *offline* when its log could not be opened, failed an fsync or write, or a read
//! found committed data failing verification: it then refuses produce and fetch with
//! [`PartitionError::Failed`] (`KAFKA_STORAGE_ERROR`) until the node restarts, and reports itself
//! to the broker's [`Health`] once.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use cairn_metrics::Histogram;
use cairn_raft::{FlushError, FlushTarget, GroupCommit};
use cairn_storage::{Clock, Disk, FileRange, Log, LogConfig, PendingFlush, RealDisk, Retention};
use cairn_types::batch::Frames;
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{LeaderEpoch, Offset};
use tokio::sync::watch;

use crate::error::PartitionError;
use crate::health::Health;
use crate::replica::{Replica, Role, Violation};

/// What a successful append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record appended.
    pub base_offset: Offset,
    /// Offset after the last record appended.
    pub next_offset: Offset,
    /// The log start offset at the time of the append.
    pub log_start_offset: Offset,
    /// The time the batches were stamped with, if the topic uses log-append time.
    pub log_append_time_ms: Option<i64>,
}

/// Offsets of a partition at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    /// First offset still in the log.
    pub log_start: Offset,
    /// High watermark: offsets below are committed (with one voter: durable here) and visible
    /// to consumers.
    pub high_watermark: Offset,
    /// Log end: the next offset to be assigned.
    pub log_end: Offset,
}

impl Offsets {
    /// The offsets of a partition whose log could not be opened: nothing is known.
    const UNKNOWN: Offsets =
        Offsets { log_start: Offset(0), high_watermark: Offset(0), log_end: Offset(0) };

    fn of<D: Disk>(log: &Log<D>, replica: &Replica) -> Offsets {
        Offsets {
            log_start: log.start_offset(),
            high_watermark: replica.committed(),
            log_end: log.next_offset(),
        }
    }
}

/// Batches read for a fetch.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// Whole batches, stored bytes as they are on disk.
    pub records: Bytes,
    /// Offsets when the read was made.
    pub offsets: Offsets,
}

/// Batches located for a fetch, to be sent from the files.
pub struct Located<D: Disk = RealDisk> {
    /// Segment file ranges in log order; concatenated they are whole, consecutive batches.
    pub ranges: Vec<FileRange<D::File>>,
    /// Sum of the ranges' lengths.
    pub bytes: u64,
    /// Offsets when the batches were located.
    pub offsets: Offsets,
}

/// Per-partition settings derived from the topic's configs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionConfig {
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: u32,
    /// `retention.ms` / `retention.bytes`.
    pub retention: Retention,
    /// `message.timestamp.type=LogAppendTime`: the broker stamps batches with its clock.
    pub log_append_time: bool,
}

/// The state a partition publishes: its high watermark, or the failure that stopped it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Offsets below are committed: the high watermark.
    Committed(Offset),
    /// The partition is offline (its log failed, could not be opened, or holds corrupt data);
    /// it serves nothing more until the node restarts.
    Failed(String),
}

/// What every partition of a broker shares.
#[derive(Clone)]
pub struct Shared {
    /// Bumped whenever any high watermark moves, so a long-polling fetch over many partitions
    /// waits on one channel.
    pub progress: Arc<watch::Sender<u64>>,
    /// Observes each fsync's duration.
    pub flush_seconds: Arc<Histogram>,
    /// Where partitions report going offline and a full disk.
    pub health: Arc<Health>,
    /// The wall clock log-append time is stamped with.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("health", &self.health).finish_non_exhaustive()
    }
}

/// What the partition's mutex guards: the log and the replica state it carries out, changed
/// together so that the replica's offsets are always the log's.
struct Core<D: Disk> {
    /// `None` only for a partition whose log could not be opened (then it is offline).
    log: Option<Log<D>>,
    /// Role, epoch and offsets (`Replica` docs).
    replica: Replica,
}

/// One partition replica on this node, its log on a `D`.
pub struct Partition<D: Disk = RealDisk> {
    topic: String,
    index: u32,
    /// The log and the replica; appends hold it only to write into the page cache.
    core: Mutex<Core<D>>,
    settings: Mutex<PartitionConfig>,
    /// The high watermark (or the failure), for `acks=all` and long polls.
    durability: watch::Sender<Durability>,
    /// The log's group commit: woken after an append, closed by [`Partition::close`].
    group_commit: GroupCommit,
    /// The broker's progress channel, flush histogram and health.
    shared: Shared,
    /// Why the partition is offline; set once, never cleared (a restart reopens the log).
    offline: OnceLock<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the log mutex is a bug that already stopped the broker's invariant;
    // the log's own state is consistent at every `&mut` boundary, so continue with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The replica of a log just opened on this node, the only voter of its group: leader at
/// `epoch`, everything recovered (hence flushed) committed.
fn single_voter(log: &Log<impl Disk>, epoch: LeaderEpoch) -> Result<Replica, Violation> {
    let durable = log.durable_offset();
    let mut replica = Replica::new(log.start_offset(), log.next_offset(), durable, durable)?;
    replica.on_role(Role::Leader, epoch)?;
    Ok(replica)
}

impl<D: Disk> Partition<D> {
    /// Wraps an opened log, or the reason it could not be opened (the partition is then offline
    /// from the start, and reported to the shared [`Health`]), as its group's only voter, leader
    /// at `epoch`. Call [`Partition::run_flusher`] on a task to make appends durable.
    #[must_use]
    pub fn new(
        topic: String,
        index: u32,
        opened: Result<Log<D>, String>,
        settings: PartitionConfig,
        epoch: LeaderEpoch,
        shared: Shared,
    ) -> Arc<Partition<D>> {
        let (log, replica) = match opened {
            Ok(log) => match single_voter(&log, epoch) {
                Ok(replica) => (Some(log), replica),
                Err(violation) => (Some(log), Replica::offline(violation.to_string())),
            },
            Err(reason) => (None, Replica::offline(reason)),
        };
        let offline = match replica.role() {
            Role::Offline { reason } => Some(reason.clone()),
            _ => None,
        };
        let (durability, _) = watch::channel(match &offline {
            None => Durability::Committed(replica.committed()),
            Some(reason) => Durability::Failed(reason.clone()),
        });
        if let Some(reason) = &offline {
            shared.health.set_offline(&topic, index, reason);
        }
        Arc::new(Partition {
            topic,
            index,
            core: Mutex::new(Core { log, replica }),
            settings: Mutex::new(settings),
            durability,
            group_commit: GroupCommit::new(Arc::clone(&shared.flush_seconds)),
            shared,
            offline: offline.map(OnceLock::from).unwrap_or_default(),
        })
    }

    /// Why the partition is offline, if it is.
    #[must_use]
    pub fn offline(&self) -> Option<&str> {
        self.offline.get().map(String::as_str)
    }

    /// Takes the partition offline for `reason` (the first reason is kept): logged once,
    /// reported to the broker's health, and every waiter woken to see it.
    fn go_offline(&self, reason: String) {
        if self.offline.set(reason.clone()).is_err() {
            return;
        }
        tracing::error!(topic = %self.topic, partition = self.index, %reason, "partition offline: it serves nothing until the node restarts");
        lock(&self.core).replica.on_failed(reason.clone());
        self.shared.health.set_offline(&self.topic, self.index, &reason);
        self.durability.send_replace(Durability::Failed(reason));
        self.shared.progress.send_modify(|events| *events = events.wrapping_add(1));
    }

    /// Runs `f` on the log and the replica if the partition is online. Corruption found by
    /// `f` takes the partition offline: committed data it cannot serve must show in readiness
    /// and metrics. So does a replica invariant that `f` broke ([`PartitionError::Violated`]).
    fn with_log<T>(
        &self,
        f: impl FnOnce(&mut Log<D>, &mut Replica) -> Result<T, PartitionError>,
    ) -> Result<T, PartitionError> {
        self.check_offline()?;
        let mut guard = lock(&self.core);
        let Core { log: Some(log), replica } = &mut *guard else {
            return Err(PartitionError::Failed("the partition log is not open".into()));
        };
        let result = f(log, replica);
        drop(guard);
        match result {
            Err(PartitionError::Storage(error @ cairn_storage::Error::Corruption { .. })) => {
                let reason = error.to_string();
                self.go_offline(reason);
                Err(PartitionError::Storage(error))
            }
            Err(PartitionError::Violated(violation)) => {
                self.go_offline(format!("replica invariant broken: {violation}"));
                Err(PartitionError::Violated(violation))
            }
            other => other,
        }
    }

    /// Topic name.
    #[must_use]
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Partition index.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The leader epoch of this replica.
    #[must_use]
    pub fn leader_epoch(&self) -> LeaderEpoch {
        lock(&self.core).replica.epoch()
    }

    /// A copy of the replica state now: role, epoch, offsets.
    #[must_use]
    pub fn replica(&self) -> Replica {
        lock(&self.core).replica.clone()
    }

    /// Kafka's current-leader-epoch check of a request naming `requested` (`None`: no epoch).
    ///
    /// # Errors
    /// [`PartitionError::Refused`] with `FencedEpoch` or `UnknownEpoch`.
    pub fn check_epoch(&self, requested: Option<LeaderEpoch>) -> Result<(), PartitionError> {
        Ok(lock(&self.core).replica.check_epoch(requested)?)
    }

    /// Current settings.
    #[must_use]
    pub fn settings(&self) -> PartitionConfig {
        *lock(&self.settings)
    }

    /// Applies changed topic configs.
    ///
    /// # Errors
    /// [`PartitionError::Storage`] if the log rejects the new segment settings.
    pub fn reconfigure(
        &self,
        settings: PartitionConfig,
        log_config: LogConfig,
    ) -> Result<(), PartitionError> {
        if let Some(log) = lock(&self.core).log.as_mut() {
            log.reconfigure(log_config)?;
        }
        *lock(&self.settings) = settings;
        Ok(())
    }

    /// Watches the high watermark (or the failure), for long polls and `acks=all`.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<Durability> {
        self.durability.subscribe()
    }

    /// Offsets now (all zero for a partition whose log could not be opened).
    #[must_use]
    pub fn offsets(&self) -> Offsets {
        let core = lock(&self.core);
        core.log.as_ref().map_or(Offsets::UNKNOWN, |log| Offsets::of(log, &core.replica))
    }

    /// ListOffsets(latest): the high watermark, or `None` (`OFFSET_NOT_AVAILABLE`) while a new
    /// leader's term has not committed up to its start.
    ///
    /// # Errors
    /// [`PartitionError::Failed`] offline; [`PartitionError::Refused`] if not the leader.
    pub fn latest_offset(&self) -> Result<Option<Offset>, PartitionError> {
        self.with_log(|_, replica| Ok(replica.latest_offset()?))
    }

    fn check_offline(&self) -> Result<(), PartitionError> {
        match self.offline.get() {
            Some(reason) => Err(PartitionError::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    fn check_open(&self) -> Result<(), PartitionError> {
        if self.group_commit.is_closed() {
            return Err(PartitionError::Closed);
        }
        self.check_offline()
    }

    /// Appends a produce request's record set (one or more batches; the log validates framing
    /// and CRC) as the leader, and returns at once: the records are in the page cache, and the
    /// flusher makes them durable next. `records` is rewritten in place (offsets, epoch,
    /// log-append time). Appends are applied in call order, so callers serialize calls that must
    /// keep an order.
    ///
    /// # Errors
    /// [`PartitionError::MessageTooLarge`] for a batch over `max.message.bytes`;
    /// [`PartitionError::Refused`] if this replica may not take produce;
    /// [`PartitionError::Storage`] for invalid batches, a full disk or a failed log.
    pub fn append(&self, records: &mut [u8]) -> Result<Appended, PartitionError> {
        self.check_open()?;
        let settings = self.settings();
        check_batch_sizes(records, settings.max_message_bytes)?;
        let log_append_time_ms = settings
            .log_append_time
            .then(|| stamp_log_append_time(records, self.shared.clock.now_ms()));
        let appended = self.with_log(|log, replica| {
            replica.may_produce()?;
            let appended = log.append(records, replica.epoch())?;
            replica.on_appended(appended.next_offset)?;
            Ok((appended, log.start_offset()))
        });
        let full =
            matches!(appended, Err(PartitionError::Storage(cairn_storage::Error::NoSpace { .. })));
        self.shared.health.set_disk_full(full);
        let (appended, log_start_offset) = appended?;
        self.group_commit.notify();
        Ok(Appended {
            base_offset: appended.base_offset,
            next_offset: appended.next_offset,
            log_start_offset,
            log_append_time_ms,
        })
    }

    /// Waits until offsets below `offset` are committed (`acks=all`). With one voter no other
    /// leader can append at `offset`, so the high watermark passing it commits this append;
    /// with Raft, `acks=all` waits on the entry's own commit callback instead (RFC 0003 §4).
    ///
    /// # Errors
    /// [`PartitionError::Timeout`] after `timeout` (the outcome is unknown: the data may still
    /// be committed); [`PartitionError::Failed`] if the log failed.
    pub async fn wait_committed(
        &self,
        offset: Offset,
        timeout: Duration,
    ) -> Result<(), PartitionError> {
        let mut durability = self.subscribe();
        let wait = durability.wait_for(|state| match state {
            Durability::Committed(committed) => *committed >= offset,
            Durability::Failed(_) => true,
        });
        match tokio::time::timeout(timeout, wait).await {
            Err(_) => Err(PartitionError::Timeout),
            Ok(Err(_)) => Err(PartitionError::Closed),
            Ok(Ok(state)) => match &*state {
                Durability::Committed(_) => Ok(()),
                Durability::Failed(reason) => Err(PartitionError::Failed(reason.clone())),
            },
        }
    }

    /// Locates whole batches from the one containing `from`, at most `bytes_max` (at least one
    /// batch), up to the high watermark: the file ranges to send as they are (`sendfile`). The
    /// ranges keep their files open, so retention deleting a segment meanwhile does not cut them.
    ///
    /// # Errors
    /// [`PartitionError::OffsetOutOfRange`] if `from` is before the log start or after the log
    /// end; [`PartitionError::Refused`] if not the leader; [`PartitionError::Storage`] on
    /// corruption or IO failure.
    pub fn locate(&self, from: Offset, bytes_max: u32) -> Result<Located<D>, PartitionError> {
        self.with_log(|log, replica| {
            let bound = replica.fetch_bound()?;
            let offsets = Offsets::of(log, replica);
            if from < offsets.log_start || from > offsets.log_end {
                return Err(PartitionError::OffsetOutOfRange { offsets });
            }
            let located = log.locate(from, bytes_max, bound)?;
            Ok(Located { ranges: located.ranges, bytes: located.bytes, offsets })
        })
    }

    /// Reads whole batches from the one containing `from`, at most `bytes_max` (at least one
    /// batch), up to the high watermark, into memory, verifying each (CRC, offsets, epochs).
    ///
    /// # Errors
    /// As [`Partition::locate`]; a batch failing verification takes the partition offline.
    pub fn read(&self, from: Offset, bytes_max: u32) -> Result<Fetched, PartitionError> {
        self.with_log(|log, replica| {
            let bound = replica.fetch_bound()?;
            let offsets = Offsets::of(log, replica);
            if from < offsets.log_start || from > offsets.log_end {
                return Err(PartitionError::OffsetOutOfRange { offsets });
            }
            let mut buffer = Vec::new();
            log.read(from, bytes_max, bound, &mut buffer)?;
            Ok(Fetched { records: Bytes::from(buffer), offsets })
        })
    }

    /// The largest record timestamp in the partition (Kafka's max-timestamp offset spec).
    #[must_use]
    pub fn max_timestamp(&self) -> Option<i64> {
        lock(&self.core).log.as_ref().and_then(Log::max_timestamp)
    }

    /// The first committed batch holding a record with timestamp `>= timestamp`: its base
    /// offset and bytes.
    ///
    /// # Errors
    /// [`PartitionError::Storage`]; [`PartitionError::Refused`] if not the leader.
    pub fn batch_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(Offset, Bytes)>, PartitionError> {
        let found = self.with_log(|log, replica| {
            let bound = replica.fetch_bound()?;
            let found = log.offset_for_timestamp(timestamp)?;
            Ok(found.filter(|offset| *offset < bound))
        })?;
        let Some(offset) = found else { return Ok(None) };
        let fetched = self.read(offset, 1)?;
        Ok(Some((offset, fetched.records)))
    }

    /// Deletes segments past retention, never beyond the high watermark (the replica's
    /// retention bound). Returns how many.
    ///
    /// # Errors
    /// [`PartitionError::Storage`].
    pub fn apply_retention(&self) -> Result<usize, PartitionError> {
        if self.offline.get().is_some() {
            return Ok(0); // Logged once when it went offline; nothing to delete from.
        }
        let retention = self.settings().retention;
        self.with_log(|log, replica| {
            let Some(bound) = replica.retention_bound() else { return Ok(0) };
            let deleted = log.apply_retention(retention, bound)?;
            replica.on_purged(log.start_offset())?;
            Ok(deleted)
        })
    }

    /// The group committed every offset below `committed`: the replica moves its high
    /// watermark, and `acks=all` and long polls waiting on it wake. With one voter the flusher
    /// calls it after each flush; with Raft, the group's commit callback will.
    ///
    /// # Errors
    /// [`PartitionError::Violated`] if the commit breaks a replica invariant (the partition goes
    /// offline); [`PartitionError::Failed`] if the partition is offline.
    pub fn commit(&self, committed: Offset) -> Result<(), PartitionError> {
        self.with_log(|_, replica| Ok(replica.on_committed(committed)?))?;
        let moved = self.durability.send_if_modified(|state| match state {
            Durability::Committed(current) if *current < committed => {
                *current = committed;
                true
            }
            _ => false,
        });
        if moved {
            self.shared.progress.send_modify(|events| *events = events.wrapping_add(1));
        }
        Ok(())
    }

    /// The flusher loop: runs until [`Partition::close`]. Spawn it once per partition.
    pub async fn run_flusher(self: Arc<Self>) {
        if let Err(error) = self.group_commit.run(&*self).await {
            let error = match error {
                FlushError::Target(error) => error,
                FlushError::Thread(reason) => {
                    PartitionError::Failed(format!("flusher thread failed: {reason}"))
                }
            };
            self.go_offline(format!("the log failed: {error}"));
        }
    }

    /// Stops accepting appends, flushes and closes the log cleanly (the next open walks nothing).
    ///
    /// # Errors
    /// [`PartitionError::Storage`] if the final flush fails.
    pub fn close(&self) -> Result<(), PartitionError> {
        self.group_commit.close();
        let mut guard = lock(&self.core);
        let Core { log: Some(log), replica } = &mut *guard else { return Ok(()) };
        let durable = log.flush()?;
        log.seal()?;
        if self.offline.get().is_some() {
            return Ok(());
        }
        // One voter: the final flush commits what it made durable.
        let committed = replica.on_flushed(durable).and_then(|()| replica.on_committed(durable));
        drop(guard);
        match committed {
            Ok(()) => {
                self.durability.send_replace(Durability::Committed(durable));
                Ok(())
            }
            Err(violation) => {
                self.go_offline(format!("replica invariant broken: {violation}"));
                Err(PartitionError::Violated(violation))
            }
        }
    }
}

impl<D: Disk> FlushTarget for Partition<D> {
    type File = D::File;
    type Error = PartitionError;

    fn begin_flush(&self) -> Result<Option<PendingFlush<D::File>>, PartitionError> {
        match lock(&self.core).log.as_mut() {
            Some(log) => Ok(log.begin_flush()?),
            None => Ok(None),
        }
    }

    fn complete_flush(
        &self,
        pending: PendingFlush<D::File>,
        synced: cairn_storage::Result<()>,
    ) -> Result<(), PartitionError> {
        let durable = self.with_log(|log, replica| {
            let durable = log.complete_flush(pending, synced)?;
            replica.on_flushed(durable)?;
            Ok(durable)
        })?;
        // One voter: what is flushed here is committed by the group.
        self.commit(durable)
    }
}

/// Rejects a record set containing a batch over `max_message_bytes` (`MESSAGE_TOO_LARGE`) before
/// anything is written. Framing errors are left to the log's validation.
fn check_batch_sizes(records: &[u8], max_message_bytes: u32) -> Result<(), PartitionError> {
    match Frames::new(records, BATCH_BYTES_MAX)
        .find(|(_, header)| header.total_bytes() > max_message_bytes)
    {
        Some((_, header)) => Err(PartitionError::MessageTooLarge {
            bytes: header.total_bytes(),
            limit: max_message_bytes,
        }),
        None => Ok(()),
    }
}

/// Stamps every batch of a record set with `now_ms` as log-append time; returns it. A malformed
/// tail is left alone: the log's validation rejects the whole append.
fn stamp_log_append_time(records: &mut [u8], now_ms: i64) -> i64 {
    let batches: Vec<_> = Frames::new(records, BATCH_BYTES_MAX)
        .map(|(at, header)| at..at + header.total_bytes() as usize)
        .collect();
    for range in batches {
        cairn_types::batch::set_log_append_time(&mut records[range], now_ms);
    }
    now_ms
}
