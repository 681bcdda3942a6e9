//! [`GroupLog`]: a partition's log, vote and snapshot record as its Raft group sees them, shared
//! by the log store ([`crate::LogStore`], [`crate::LogReader`]), the state machine
//! ([`crate::PartitionStateMachine`]) and the partition that serves fetches from the same log.
//!
//! One mutex guards the log and what the Raft layer keeps beside it (the last purged log id, the
//! `IOFlushed` callbacks waiting for a flush, the membership entries not yet applied, the
//! `raft-snapshot` record). It is held for page-cache work only: appends, reads, taking and
//! completing a flush. Every fsync runs without it: the group commit ([`GroupCommit`], the
//! node's or the log's own) runs the log's on a blocking thread, and the vote has a mutex of its
//! own.

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use cairn_metrics::Histogram;
use cairn_storage::{Clock, Damage, Disk, Log, LogConfig, PendingFlush, VoteFile};
use cairn_types::{Offset, RaftIndex};
use openraft::storage::IOFlushed;

use crate::entry::log_id;
use crate::epoch::{self, TermError};
use crate::flush::{FlushError, FlushSlot, FlushTarget, GroupCommit};
use crate::membership::Members;
use crate::record::{MembershipAt, RaftRecord, RecordError, SnapshotPoint};
use crate::{AppendSink, CodecError, LogId, TypeConfig};

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
    /// Indexes of the entries in the log that the state machine must apply whole (membership
    /// and compaction entries, [`crate::RaftEntry::applied_whole`]) and has not applied yet: the
    /// committed id saved in `raft-vote` stays below them (see [`crate::LogStore`]), since
    /// openraft applies nothing again after a restart.
    pub(crate) unapplied: BTreeSet<u64>,
    /// The content of `raft-snapshot`.
    pub(crate) record: RaftRecord,
    /// The newest committed id openraft saved; `raft-vote` holds it clamped
    /// ([`GroupLog::save_committed`]).
    pub(crate) committed: Option<LogId>,
    /// The purge point the partition chose for the next snapshot (retention), if any.
    pub(crate) snapshot_at: Option<u64>,
    /// Why the log failed, once a flush failed.
    failed: Option<String>,
    /// The newest entries appended here, oldest first, consecutive: what apply needs of them
    /// (log id, end offset) without reading the log back. At most [`RECENT_ENTRIES_MAX`]; kept
    /// only once the log was told its state machine needs no batches ([`GroupLog::observe`]).
    pub(crate) recent: VecDeque<Recent>,
    /// Whether [`State::recent`] is kept.
    keep_recent: bool,
}

/// Entries of the log's tail that [`State::recent`] keeps: enough to cover what commits
/// between two applies of a busy partition, small enough for thousands of partitions.
pub(crate) const RECENT_ENTRIES_MAX: usize = 1024;

/// An appended entry as apply needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Recent {
    pub(crate) index: u64,
    pub(crate) term: crate::Term,
    /// The offset after its records.
    pub(crate) end: Offset,
}

struct Inner<D: Disk> {
    /// Writes `raft-snapshot`.
    disk: D,
    /// The partition's directory.
    dir: PathBuf,
    state: Mutex<State<D>>,
    /// The durable vote; saving it fsyncs, so it has a mutex of its own.
    vote: Mutex<VoteFile<D>>,
    /// The log's place in its group commit's queue.
    flush_slot: FlushSlot,
    /// The group commit that makes the log durable, once one runs it ([`GroupLog::run_flusher`],
    /// [`GroupLog::join_group_commit`]).
    flusher: OnceLock<Flusher<D>>,
    /// Observes the duration of the log's own fsyncs ([`GroupLog::flush`], its own group
    /// commit).
    flush_seconds: Arc<Histogram>,
    /// Told of every flush and apply, once the partition registers ([`GroupLog::observe`]).
    sink: OnceLock<Arc<dyn AppendSink>>,
    /// The index the log must hold again before the replica votes, after a cut of damage
    /// inside it (`raft-restore`, [`crate::restore`]); `None` once it does.
    restore: Mutex<Option<RaftIndex>>,
    /// The damage this open cut ([`GroupLog::open_repairing`]), oldest first.
    repaired: Vec<Damage>,
}

/// The group commit a log is in.
struct Flusher<D: Disk> {
    commit: Arc<GroupCommit<GroupLog<D>>>,
    /// Whether the log runs it alone ([`GroupLog::run_flusher`]): closing the log stops it.
    owned: bool,
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
        GroupLog::over(disk, dir, log, flush_seconds, Vec::new())
    }

    /// [`GroupLog::open`] for a caller that makes the directory's own name durable itself
    /// (one fsync of the parent for many partitions: `Log::open_in_synced_parent`).
    ///
    /// # Errors
    /// As [`GroupLog::open`].
    pub fn open_in_synced_parent(
        disk: D,
        dir: impl AsRef<Path>,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        flush_seconds: Arc<Histogram>,
    ) -> Result<GroupLog<D>, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let log = Log::open_in_synced_parent(disk.clone(), &dir, config, clock)?;
        GroupLog::over(disk, dir, log, flush_seconds, Vec::new())
    }

    /// The group of the log just opened in `dir`: its `raft-vote`, `raft-snapshot` and
    /// `raft-restore` read (the last removed if the log holds its index already); `repaired`:
    /// what the open cut.
    pub(crate) fn over(
        disk: D,
        dir: PathBuf,
        log: Log<D>,
        flush_seconds: Arc<Histogram>,
        repaired: Vec<Damage>,
    ) -> Result<GroupLog<D>, StoreError> {
        let (vote, _) = VoteFile::open(disk.clone(), &dir)?;
        let mut restore = crate::restore::read_restore(&disk, &dir)?;
        if restore.is_some_and(|index| index < log.next_index()) {
            crate::restore::clear_restore(&disk, &dir)?;
            restore = None;
        }
        let record = match cairn_storage::read_snapshot(&disk, &dir)? {
            Some(bytes) => RaftRecord::decode(&bytes)?,
            None => RaftRecord::default(),
        };
        let purged = record.snapshot.as_ref().map(|point| point.last_log_id);
        let mut state = State {
            log,
            purged,
            waiting: VecDeque::new(),
            unapplied: BTreeSet::new(),
            record,
            committed: None,
            snapshot_at: None,
            failed: None,
            recent: VecDeque::new(),
            keep_recent: false,
        };
        state.finish_install()?;
        let committed = vote.committed().map(|c| c.index);
        state.unapplied = state.applied_whole_after(committed)?;
        let inner = Inner {
            disk,
            dir,
            state: Mutex::new(state),
            vote: Mutex::new(vote),
            flush_slot: FlushSlot::default(),
            flusher: OnceLock::new(),
            flush_seconds,
            sink: OnceLock::new(),
            restore: Mutex::new(restore),
            repaired,
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

    /// Runs `f` on the log mutably, for what the partition changes outside Raft (its segment
    /// settings).
    pub fn with_log_mut<T>(&self, f: impl FnOnce(&mut Log<D>) -> T) -> T {
        f(&mut self.state().log)
    }

    /// Registers the partition to be told of every flush and apply (the first registration
    /// stays). Its state machine needs of each applied entry only the log id and end offset:
    /// from now on apply's reads of the log's recent tail come without batches
    /// ([`State::applied_only`]); the core, which applies its commands, never registers.
    pub fn observe(&self, sink: Arc<dyn AppendSink>) {
        let _ = self.inner.sink.set(sink);
        self.state().keep_recent = true;
    }

    /// The registered observer, if any.
    pub(crate) fn sink(&self) -> Option<&Arc<dyn AppendSink>> {
        self.inner.sink.get()
    }

    /// The offset below which the log is committed as far as `raft-vote` knows (the committed
    /// id saved, clamped to the log): where a reopened replica's high watermark starts.
    ///
    /// # Errors
    /// [`StoreError`] if the log cannot map the committed id to an offset (corruption).
    pub fn committed_offset(&self) -> Result<Offset, StoreError> {
        let committed = self.vote().committed().map(|c| crate::entry::log_id(c.term, c.index));
        let state = self.state();
        match committed {
            Some(_) => state.commit_bound(committed),
            // Nothing committed since the snapshot: the snapshot's point is.
            None => Ok(state.log.start_offset()),
        }
    }

    /// The index this replica's log must hold again before it may vote or campaign, if its log
    /// lost entries that a quorum may have counted it for: the committed index saved in
    /// `raft-vote` if recovery cut it (a bit flip in the log's last batch, which looks like a
    /// torn write, or synced bytes cut off), or the last index the log held before a cut of
    /// damage inside it (`raft-restore`, [`GroupLog::open_repairing`]), whichever is larger and
    /// not held; entries a snapshot covers count as held. Until its log reaches that index
    /// again (from the leader) the replica could elect a log without them
    /// ([`crate::RaftGroup::start`]). Both records stay until then (a save never lowers the
    /// committed index; `raft-restore` is removed once held), so a restart meanwhile knows it
    /// still.
    #[must_use]
    pub fn lost_committed(&self) -> Option<RaftIndex> {
        let saved = self.vote().committed().map(|committed| RaftIndex(committed.index));
        let restore = *lock(&self.inner.restore);
        let target = saved.max(restore)?;
        self.state().lacks(target).then_some(target)
    }

    /// The damage [`GroupLog::open_repairing`] cut from the log at this open, oldest first.
    #[must_use]
    pub fn repaired(&self) -> &[Damage] {
        &self.inner.repaired
    }

    /// Forgets `raft-restore` once the log holds its index again (durably removed).
    ///
    /// # Errors
    /// [`StoreError`] if the file cannot be removed.
    pub(crate) fn restored(&self) -> Result<(), StoreError> {
        let mut restore = lock(&self.inner.restore);
        if restore.is_some_and(|index| !self.state().lacks(index)) {
            crate::restore::clear_restore(&self.inner.disk, &self.inner.dir)?;
            *restore = None;
        }
        Ok(())
    }

    /// The committed id this log can stand for, which openraft and the state machine start
    /// from: the one `raft-vote` holds, or the log's last id if the log lost entries at or
    /// below it (recovery cut them).
    ///
    /// # Errors
    /// [`StoreError`] if the log cannot be read.
    pub(crate) fn held_committed(&self) -> Result<Option<LogId>, StoreError> {
        let saved = self.vote().committed().map(|c| crate::entry::log_id(c.term, c.index));
        let state = self.state();
        match saved {
            Some(saved) if state.lacks(RaftIndex(saved.index)) => state.last_log_id(),
            _ => Ok(saved),
        }
    }

    /// Whether the group has no state at all: an empty log, no snapshot, no vote. Such a group
    /// is initialized with its voters; any other is not (openraft refuses a second time).
    #[must_use]
    pub fn is_new(&self) -> bool {
        let state = self.state();
        let empty = state.log.next_index().0 == 0 && state.record.snapshot.is_none();
        drop(state);
        empty && self.vote().vote().is_none()
    }

    /// Gives a log written before Raft the snapshot record that stands for everything before
    /// it, so the group starts over it (RFC 0003 §3 "Existing data directories"): a log adopted
    /// from offset-only segment names (`Recovery::adopted`: indexes from 1) gets a snapshot at
    /// `(term 0, index 0)`; a log of Raft-indexed segments written without a group (no
    /// `raft-snapshot`, no `raft-vote`, data from index 0) gets one at its first entry, which
    /// stays readable as records. Both with membership `{node}` and the log's own start
    /// offset, and a vote in the log's latest epoch. Durable before it returns; whether it
    /// adopted. Call it before the group's store and state machine are made.
    ///
    /// # Errors
    /// [`StoreError`] if the log cannot be read or the record and vote cannot be written.
    pub fn adopt(&self, node: crate::RaftNodeId) -> Result<bool, StoreError> {
        let voted = self.vote().vote().is_some();
        let record = {
            let state = self.state();
            let Some(origin) = state.adoption_point(voted)? else { return Ok(false) };
            let members = Members::new(vec![BTreeSet::from([node])], BTreeSet::new())
                .map_err(|error| StoreError::Invalid(format!("membership of {node}: {error}")))?;
            let point = SnapshotPoint {
                last_log_id: origin,
                membership: Some(MembershipAt { log_id: origin, members }),
                log_start_offset: state.log.start_offset(),
            };
            RaftRecord { snapshot: Some(point), applied_membership: None }
        };
        tracing::info!(dir = %self.inner.dir.display(), "adopting a log written before its raft group");
        let latest = self.with_log(|log| log.epoch_history().last().map(|start| start.epoch));
        let term = latest.map_or(Ok(0), epoch::term_of)?;
        let origin = record.snapshot.as_ref().map(|point| point.last_log_id);
        self.write_record(&record)?;
        let mut state = self.state();
        state.purged = origin;
        state.record = record;
        drop(state);
        // The log's entries carry their epochs as terms: the group starts in the latest, with
        // no vote cast in it, so its first election is the term after.
        let mut vote = self.vote();
        if term > 0 && vote.vote().is_none_or(|saved| saved.term < term) {
            vote.save_vote(cairn_storage::StoredVote { term, voted_for: None, committed: false })?;
        }
        Ok(true)
    }

    /// Durably replaces the `raft-snapshot` record (no lock held while it syncs).
    pub(crate) fn write_record(&self, record: &RaftRecord) -> Result<(), StoreError> {
        cairn_storage::write_snapshot(&self.inner.disk, &self.inner.dir, &record.encode())?;
        Ok(())
    }

    /// Runs `f` on a blocking thread ([`crate::runtime::unblock`]): work that syncs (vote, cuts,
    /// snapshot files).
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&GroupLog<D>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let group = self.clone();
        crate::runtime::unblock(move || f(&group))
            .await
            .map_err(|error| StoreError::Failed(error.to_string()))?
    }

    /// Saves the newest committed id openraft reported, clamped to the durable log and below
    /// the first entry to apply whole not yet applied (unsynced: a later vote or close syncs it).
    /// Called again once such an entry is applied, after each flush, and at close, so the
    /// saved id catches up.
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

    /// Queues the log in its group commit after an append (nothing until one runs it: joining
    /// queues the log then).
    pub(crate) fn notify_flusher(&self) {
        if let Some(flusher) = self.inner.flusher.get() {
            flusher.commit.notify(self);
        }
    }

    /// Makes the log durable through `commit`, the group commit of every partition log of the
    /// node, which runs elsewhere ([`GroupCommit::run`]). A log joins one group commit once
    /// (a later join, or [`GroupLog::run_flusher`], does nothing).
    pub fn join_group_commit(&self, commit: &Arc<GroupCommit<GroupLog<D>>>) {
        let flusher = Flusher { commit: Arc::clone(commit), owned: false };
        if self.inner.flusher.set(flusher).is_ok() {
            self.notify_flusher();
        }
    }

    /// Runs a group commit of the log's own: makes appends durable and answers their callbacks
    /// until [`GroupLog::close`]. A failed flush takes the log out of service (every waiting
    /// callback is answered with an error, and every later append fails). Returns at once if
    /// the log joined a group commit already.
    pub async fn run_flusher(self) {
        let commit = Arc::new(GroupCommit::new(Arc::clone(&self.inner.flush_seconds)));
        let flusher = Flusher { commit: Arc::clone(&commit), owned: true };
        if self.inner.flusher.set(flusher).is_err() {
            return;
        }
        if self.inner.flush_slot.is_closed() {
            return;
        }
        commit.notify(&self);
        drop(self);
        commit.run().await;
    }

    /// Makes everything appended durable now and answers the waiting callbacks (before a cut).
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        crate::flush::flush_now(self, &self.inner.flush_seconds).await.map_err(
            |error| match error {
                FlushError::Target(error) => error,
                FlushError::Thread(reason) => StoreError::Failed(reason),
            },
        )
    }

    /// Stops the flusher and closes the log cleanly: flushed, sealed, the next open walks
    /// nothing. Waiting callbacks are answered.
    ///
    /// # Errors
    /// [`StoreError`] if the final flush or sync fails.
    pub fn close(&self) -> Result<(), StoreError> {
        self.inner.flush_slot.close();
        if let Some(flusher) = self.inner.flusher.get().filter(|flusher| flusher.owned) {
            flusher.commit.close();
        }
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

    /// Takes the log out of service: every waiting callback is answered with the failure. The
    /// first failure is logged.
    fn fail(&self, reason: &str) {
        let mut state = self.state();
        let dir = &self.inner.dir;
        let reason = state
            .failed
            .get_or_insert_with(|| {
                tracing::error!(dir = %dir.display(), %reason, "raft log failed");
                reason.to_owned()
            })
            .clone();
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
            self.fail(&error.to_string());
            return Err(error.into());
        }
        let (ready, durable_offset) = {
            let mut state = self.state();
            (state.take_ready(durable), state.log.durable_offset())
        };
        // The partition learns of the flush before openraft can commit (and apply) on it, so
        // its replica never sees a commit above its flush point.
        if let Some(sink) = self.sink() {
            sink.flushed(durable_offset);
        }
        ready.into_iter().for_each(|callback| callback.io_completed(Ok(())));
        // A follower often learns an entry is committed before its own flush of it, when the
        // saved id is clamped below it: save it now that the log holds it, or `raft-vote`
        // lags until the next commit, and a restart could not tell that a cut lost it
        // ([`GroupLog::lost_committed`]). Nothing is written if the saved id is current.
        self.save_committed()
    }

    fn slot(&self) -> &FlushSlot {
        &self.inner.flush_slot
    }

    fn fail(&self, reason: &str) {
        GroupLog::fail(self, reason);
    }
}

impl<D: Disk> State<D> {
    /// Whether the log lacks the entry at `index`: past its end, and not covered by the
    /// snapshot either.
    pub(crate) fn lacks(&self, index: RaftIndex) -> bool {
        let purged = self.purged.is_some_and(|purged| purged.index >= index.0);
        index >= self.log.next_index() && !purged
    }

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

    /// Where a log written before its group starts (see [`GroupLog::adopt`]): `None` for a
    /// group's own log (a snapshot, a vote, a new empty log, or a membership entry first).
    fn adoption_point(&self, voted: bool) -> Result<Option<LogId>, StoreError> {
        if self.record.snapshot.is_some() || voted {
            return Ok(None);
        }
        let (start, next) = (self.log.start_index().0, self.log.next_index().0);
        if self.log.recovery().adopted || start == 1 {
            return Ok(Some(crate::entry::log_id(0, 0)));
        }
        if start > 0 || next == 0 {
            return Ok(None);
        }
        let first = self.read(0, 1, None)?;
        match first.first() {
            Some(entry) if entry.members().is_ok_and(|members| members.is_none()) => {
                Ok(Some(crate::entry::log_id(entry.term(), 0)))
            }
            _ => Ok(None),
        }
    }

    /// Records an appended entry in [`State::recent`]; an entry that does not follow the last
    /// one starts the record again.
    pub(crate) fn remember(&mut self, recent: Recent) {
        if !self.keep_recent {
            return;
        }
        if self.recent.back().is_some_and(|last| last.index + 1 != recent.index) {
            self.recent.clear();
        }
        if self.recent.len() == RECENT_ENTRIES_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back(recent);
    }

    /// The entries `[from, to)` as apply needs them, from [`State::recent`], if it covers
    /// them and none is to be applied whole.
    pub(crate) fn applied_only(&self, from: u64, to: u64) -> Option<Vec<crate::RaftEntry>> {
        let first = self.recent.front()?.index;
        let last = self.recent.back()?.index;
        if from < first || to == 0 || to - 1 > last || from >= to {
            return None;
        }
        if self.unapplied.range(from..to).next().is_some() {
            return None;
        }
        let skip = usize::try_from(from - first).ok()?;
        let count = usize::try_from(to - from).ok()?;
        let entries = self.recent.iter().skip(skip).take(count);
        Some(entries.map(|e| crate::RaftEntry::applied_only(e.term, e.index, e.end)).collect())
    }

    /// The indexes of the entries to be applied whole after `committed` (all of them for
    /// `None`): entries openraft may still apply.
    fn applied_whole_after(&self, committed: Option<u64>) -> Result<BTreeSet<u64>, StoreError> {
        let from = committed.map_or(0, |c| c + 1).max(self.visible_start());
        let entries = self.read(from, self.log.next_index().0, None)?;
        Ok(entries
            .iter()
            .filter(|entry| entry.applied_whole())
            .map(crate::RaftEntry::index)
            .collect())
    }
}
