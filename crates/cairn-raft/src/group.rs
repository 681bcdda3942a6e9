//! [`GroupLog`]: a partition's log, vote and snapshot record as its Raft group sees them, shared
//! by the log store ([`crate::LogStore`], [`crate::LogReader`]), the state machine
//! ([`crate::PartitionStateMachine`]) and the partition that serves fetches from the same log.
//!
//! One mutex guards the log and what the Raft layer keeps beside it (the last purged log id, the
//! `IOFlushed` callbacks waiting for a flush, the membership entries not yet applied, the
//! `raft-snapshot` record). It is held for page-cache work only: appends, reads, taking and
//! completing a flush. Every fsync runs without it: the group commit ([`GroupCommit`]) runs the
//! log's on a blocking thread, and the vote has a mutex of its own.

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cairn_metrics::Histogram;
use cairn_storage::{Clock, Disk, Log, LogConfig, PendingFlush, VoteFile};
use cairn_types::{Offset, RaftIndex};
use openraft::storage::IOFlushed;

use crate::entry::log_id;
use crate::epoch::{self, TermError};
use crate::flush::{FlushError, FlushTarget, GroupCommit};
use crate::record::{RaftRecord, RecordError};
use crate::{CodecError, LogId, TypeConfig};

/// Why the Raft layer cannot use a partition's log. openraft sees each as an `io::Error` and
/// stops the group; nothing here retries.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The log, the vote or the snapshot file failed (or is corrupt).
    #[error(transparent)]
    Storage(#[from] cairn_storage::Error),
    /// A stored batch is not the entry it should be.
    #[error("raft entry: {0}")]
    Codec(#[from] CodecError),
    /// A term without a Kafka leader epoch, or an epoch without a term.
    #[error(transparent)]
    Term(#[from] TermError),
    /// The `raft-snapshot` record is malformed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// openraft asked for something the log cannot do (an append that does not continue the
    /// log, a stored batch of another term than its entry): a bug above, fail-stop.
    #[error("raft log: {0}")]
    Invalid(String),
    /// An earlier flush failed: the log is out of service until a restart.
    #[error("raft log failed: {0}")]
    Failed(String),
}

impl From<StoreError> for io::Error {
    fn from(error: StoreError) -> io::Error {
        io::Error::other(error)
    }
}

/// An `IOFlushed` callback waiting for the log to be durable up to `end`.
struct Waiting {
    /// The index after the last entry of the append it answers.
    end: RaftIndex,
    callback: IOFlushed<TypeConfig>,
}

/// What the group's mutex guards (module docs).
pub(crate) struct State<D: Disk> {
    /// The partition's log.
    pub(crate) log: Log<D>,
    /// openraft's last purged log id: entries at or below it are hidden from Raft reads, even
    /// where the log still holds them (a purge only deletes whole segments the snapshot covers).
    pub(crate) purged: Option<LogId>,
    /// Callbacks of appends not yet durable, in append order.
    waiting: VecDeque<Waiting>,
    /// Indexes of membership entries in the log that the state machine has not applied yet: the
    /// committed id saved in `raft-vote` stays below them (see [`crate::LogStore`]).
    pub(crate) memberships: BTreeSet<u64>,
    /// The content of `raft-snapshot`.
    pub(crate) record: RaftRecord,
    /// The newest committed id openraft saved; `raft-vote` holds it clamped
    /// ([`GroupLog::save_committed`]).
    pub(crate) committed: Option<LogId>,
    /// The purge point the partition chose for the next snapshot (retention), if any.
    pub(crate) snapshot_at: Option<u64>,
    /// Why the log failed, once a flush failed.
    failed: Option<String>,
}

struct Inner<D: Disk> {
    /// Writes `raft-snapshot`.
    disk: D,
    /// The partition's directory.
    dir: PathBuf,
    state: Mutex<State<D>>,
    /// The durable vote; saving it fsyncs, so it has a mutex of its own.
    vote: Mutex<VoteFile<D>>,
    group_commit: GroupCommit,
}

/// A partition's log and Raft files, shared (module docs). Cloning shares.
pub struct GroupLog<D: Disk> {
    inner: Arc<Inner<D>>,
}

impl<D: Disk> Clone for GroupLog<D> {
    fn clone(&self) -> GroupLog<D> {
        GroupLog { inner: Arc::clone(&self.inner) }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under the lock is a bug that already stopped an invariant check; the log is
    // consistent at every `&mut` boundary, so go on with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<D: Disk + Clone> GroupLog<D> {
    /// Opens the partition in `dir`: its log (recovered), `raft-vote` and `raft-snapshot`.
    /// The log's flush policy should be manual: [`GroupLog::run_flusher`] flushes it. Each
    /// fsync is timed into `flush_seconds`.
    ///
    /// # Errors
    /// [`StoreError`] if a file cannot be opened or read, or is corrupt: keep the replica
    /// offline.
    pub fn open(
        disk: D,
        dir: impl AsRef<Path>,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        flush_seconds: Arc<Histogram>,
    ) -> Result<GroupLog<D>, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let log = Log::open(disk.clone(), &dir, config, clock)?;
        let (vote, _) = VoteFile::open(disk.clone(), &dir)?;
        let record = match cairn_storage::read_snapshot(&disk, &dir)? {
            Some(bytes) => RaftRecord::decode(&bytes)?,
            None => RaftRecord::default(),
        };
        let purged = record.snapshot.as_ref().map(|point| point.last_log_id);
        let mut state = State {
            log,
            purged,
            waiting: VecDeque::new(),
            memberships: BTreeSet::new(),
            record,
            committed: None,
            snapshot_at: None,
            failed: None,
        };
        state.finish_install()?;
        let committed = vote.committed().map(|c| c.index);
        state.memberships = state.membership_entries_after(committed)?;
        let inner = Inner {
            disk,
            dir,
            state: Mutex::new(state),
            vote: Mutex::new(vote),
            group_commit: GroupCommit::new(flush_seconds),
        };
        Ok(GroupLog { inner: Arc::new(inner) })
    }
}

impl<D: Disk> GroupLog<D> {
    /// Locks the log and the Raft state beside it; page-cache work only.
    pub(crate) fn state(&self) -> MutexGuard<'_, State<D>> {
        lock(&self.inner.state)
    }

    /// Locks the vote file.
    pub(crate) fn vote(&self) -> MutexGuard<'_, VoteFile<D>> {
        lock(&self.inner.vote)
    }

    /// Chooses `index` as the last entry of the next snapshot: retention's purge point, the
    /// last index of the newest segment it may delete (RFC 0003 §3). The snapshot is then
    /// built there (`trigger().snapshot()`), and `purge_log` at it deletes those segments.
    pub fn snapshot_at(&self, index: RaftIndex) {
        self.state().snapshot_at = Some(index.0);
    }

    /// Runs `f` on the log, for the partition's reads (fetches, offsets).
    pub fn with_log<T>(&self, f: impl FnOnce(&Log<D>) -> T) -> T {
        f(&self.state().log)
    }

    /// Durably replaces the `raft-snapshot` record (no lock held while it syncs).
    pub(crate) fn write_record(&self, record: &RaftRecord) -> Result<(), StoreError> {
        cairn_storage::write_snapshot(&self.inner.disk, &self.inner.dir, &record.encode())?;
        Ok(())
    }

    /// Runs `f` on a blocking thread: work that syncs (vote, cuts, snapshot files).
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&GroupLog<D>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let group = self.clone();
        tokio::task::spawn_blocking(move || f(&group))
            .await
            .map_err(|error| StoreError::Failed(format!("blocking thread failed: {error}")))?
    }

    /// Saves the newest committed id openraft reported, clamped to the durable log and below
    /// the first membership entry not yet applied (unsynced: a later vote or close syncs it).
    /// Called again once such an entry is applied, and at close, so the saved id catches up.
    pub(crate) fn save_committed(&self) -> Result<(), StoreError> {
        let clamped = {
            let state = self.state();
            match state.committed {
                Some(committed) => state.clamp_committed(committed)?,
                None => None,
            }
        };
        let Some(clamped) = clamped else { return Ok(()) };
        let stored =
            cairn_storage::StoredLogId { term: clamped.leader_id.term, index: clamped.index };
        let mut vote = self.vote();
        if vote.committed().is_some_and(|saved| saved >= stored) {
            return Ok(());
        }
        vote.save_committed(Some(stored))?;
        Ok(())
    }

    /// Wakes the group commit after an append.
    pub(crate) fn notify_flusher(&self) {
        self.inner.group_commit.notify();
    }

    /// The group commit loop: makes appends durable and answers their callbacks. Spawn it once;
    /// it returns after [`GroupLog::close`], or when a flush fails (every waiting callback is
    /// then answered with an error, and every later append fails).
    pub async fn run_flusher(self) {
        if let Err(error) = self.inner.group_commit.run(&self).await {
            let reason = match error {
                FlushError::Target(error) => error.to_string(),
                FlushError::Thread(reason) => format!("flusher thread failed: {reason}"),
            };
            tracing::error!(dir = %self.inner.dir.display(), %reason, "raft log failed");
            self.fail(reason);
        }
    }

    /// Makes everything appended durable now and answers the waiting callbacks (before a cut).
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        self.inner.group_commit.flush(self).await.map_err(|error| match error {
            FlushError::Target(error) => error,
            FlushError::Thread(reason) => StoreError::Failed(reason),
        })
    }

    /// Stops the flusher and closes the log cleanly: flushed, sealed, the next open walks
    /// nothing. Waiting callbacks are answered.
    ///
    /// # Errors
    /// [`StoreError`] if the final flush or sync fails.
    pub fn close(&self) -> Result<(), StoreError> {
        self.inner.group_commit.close();
        let mut state = self.state();
        state.log.seal()?;
        let durable = state.log.durable_index();
        let ready = state.take_ready(durable);
        drop(state);
        ready.into_iter().for_each(|callback| callback.io_completed(Ok(())));
        self.save_committed()?;
        self.vote().sync()?;
        Ok(())
    }

    /// Registers `callback` for an append ending before `end`; answers it now if that is
    /// durable already, or with the failure if the log failed.
    pub(crate) fn wait_durable(&self, end: RaftIndex, callback: IOFlushed<TypeConfig>) {
        let mut state = self.state();
        if let Some(reason) = &state.failed {
            let error = StoreError::Failed(reason.clone());
            drop(state);
            callback.io_completed(Err(error.into()));
            return;
        }
        if state.log.durable_index() >= end {
            drop(state);
            callback.io_completed(Ok(()));
            return;
        }
        state.waiting.push_back(Waiting { end, callback });
        drop(state);
        self.notify_flusher();
    }

    /// Takes the log out of service: every waiting callback is answered with the failure.
    fn fail(&self, reason: String) {
        let mut state = self.state();
        state.failed.get_or_insert(reason.clone());
        let waiting: Vec<_> = state.waiting.drain(..).collect();
        drop(state);
        for waiting in waiting {
            waiting.callback.io_completed(Err(StoreError::Failed(reason.clone()).into()));
        }
    }
}

impl<D: Disk> FlushTarget for GroupLog<D> {
    type File = D::File;
    type Error = StoreError;

    fn begin_flush(&self) -> Result<Option<PendingFlush<D::File>>, StoreError> {
        let mut state = self.state();
        state.check_failed()?;
        let pending = state.log.begin_flush()?;
        if pending.is_none() {
            // Everything is durable, perhaps through a flush of the log's own (a purge flushes
            // before it deletes segments) that no `complete_flush` reported: answer whoever
            // waits, or an append's callback would wait for the next append's flush.
            let durable = state.log.durable_index();
            let ready = state.take_ready(durable);
            drop(state);
            ready.into_iter().for_each(|callback| callback.io_completed(Ok(())));
        }
        Ok(pending)
    }

    fn complete_flush(
        &self,
        pending: PendingFlush<D::File>,
        synced: cairn_storage::Result<()>,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let completed = state.log.complete_flush(pending, synced);
        let durable = state.log.durable_index();
        drop(state);
        if let Err(error) = completed {
            self.fail(error.to_string());
            return Err(error.into());
        }
        let ready = self.state().take_ready(durable);
        ready.into_iter().for_each(|callback| callback.io_completed(Ok(())));
        Ok(())
    }
}

impl<D: Disk> State<D> {
    /// Refuses work on a log whose flush failed.
    pub(crate) fn check_failed(&self) -> Result<(), StoreError> {
        match &self.failed {
            Some(reason) => Err(StoreError::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    /// The callbacks answered by the log being durable below `durable`.
    fn take_ready(&mut self, durable: RaftIndex) -> Vec<IOFlushed<TypeConfig>> {
        let count = self.waiting.iter().take_while(|waiting| waiting.end <= durable).count();
        self.waiting.drain(..count).map(|waiting| waiting.callback).collect()
    }

    /// The first index Raft sees: after the purged id, and in the log.
    pub(crate) fn visible_start(&self) -> u64 {
        let after_purged = self.purged.map_or(0, |purged| purged.index + 1);
        after_purged.max(self.log.start_index().0)
    }

    /// The log id of the entry at `index`, which the log holds.
    pub(crate) fn log_id_at(&self, index: u64) -> Result<LogId, StoreError> {
        let header = self
            .log
            .entry_at(RaftIndex(index))?
            .ok_or_else(|| StoreError::Invalid(format!("entry {index} is not in the log")))?;
        Ok(log_id(epoch::term_of(header.epoch)?, index))
    }

    /// The last log id Raft sees: the last entry's, or the purged id if it hides them all.
    pub(crate) fn last_log_id(&self) -> Result<Option<LogId>, StoreError> {
        let next = self.log.next_index().0;
        if next > self.visible_start() {
            return self.log_id_at(next - 1).map(Some);
        }
        Ok(self.purged)
    }

    /// The offset below which the log is committed, as far as this replica knows: entries up
    /// to `committed` may not be cut.
    pub(crate) fn commit_bound(&self, committed: Option<LogId>) -> Result<Offset, StoreError> {
        let start = self.log.start_index().0;
        match committed {
            Some(id) if id.index + 1 > start && id.index < self.log.next_index().0 => {
                Ok(self.log.offset_of(RaftIndex(id.index + 1))?)
            }
            Some(id) if id.index >= self.log.next_index().0 => Ok(self.log.next_offset()),
            _ => Ok(self.log.start_offset()),
        }
    }

    /// Completes a snapshot install that a crash interrupted between writing `raft-snapshot`
    /// and resetting the log: a log that does not hold the snapshot's last log id, and does not
    /// go past it either, starts again after it.
    fn finish_install(&mut self) -> Result<(), StoreError> {
        let Some(point) = &self.record.snapshot else { return Ok(()) };
        let (last, start) = (point.last_log_id, point.log_start_offset);
        let next = self.log.next_index().0;
        let holds = match self.log.entry_at(RaftIndex(last.index))? {
            Some(header) => epoch::term_of(header.epoch)? == last.leader_id.term,
            // Below the log: purged, the log starts after it.
            None => last.index < self.log.start_index().0 && next > last.index,
        };
        if !holds {
            tracing::info!(index = last.index, "completing an interrupted snapshot install");
            self.log.reset(start, RaftIndex(last.index + 1))?;
        }
        Ok(())
    }

    /// The indexes of the membership entries after `committed` (all of them for `None`):
    /// entries openraft may still apply.
    fn membership_entries_after(
        &self,
        committed: Option<u64>,
    ) -> Result<BTreeSet<u64>, StoreError> {
        let from = committed.map_or(0, |c| c + 1).max(self.visible_start());
        let entries = self.read(from, self.log.next_index().0, None)?;
        Ok(entries
            .iter()
            .filter(|entry| entry.members().is_ok_and(|members| members.is_some()))
            .map(crate::RaftEntry::index)
            .collect())
    }
}
