//! [`GroupCommit`]: the group commit of a node's logs, in rounds: one flusher serves every
//! partition log of a node (the broker's), or a single log ([`crate::GroupLog::run_flusher`]: the
//! core, the simulator, tests).
//!
//! The owner of a log implements [`FlushTarget`]: take a pending flush out of its log under its
//! lock ([`cairn_storage::Log::begin_flush`]), and record what the fsync made durable
//! ([`cairn_storage::Log::complete_flush`]) with whatever follows from it (a replica's `flushed`,
//! Raft's `IOFlushed` callbacks). A log with appends to make durable is queued once
//! ([`GroupCommit::notify`]); each round takes every queued log and begins all their flushes,
//! then runs their `fdatasync`s on up to [`SYNC_THREADS_MAX`] blocking threads at once (each
//! thread's share back to back; [`flush_round`] is the same round on one thread), recording each
//! log's right after its own fsync, so its callbacks do not wait for the others'. Appends made
//! while a round runs queue their log for the next round, so one fsync per log per round covers
//! everything appended to it meanwhile and appends never wait for the device. Per node this is
//! one flusher task wake-up per round instead of one per log per fsync; the fsyncs overlap on the
//! device as the per-log flushers' did (measured: back to back on one thread, a round's last log
//! waited for the others' fsyncs, and acks were slower).
//!
//! Durability is per log as before: a log's callbacks are answered only after the fsync that
//! covers their appends returned OK, and a failed fsync takes that log (only) out of service
//! ([`FlushTarget::fail`]): the round goes on with the others. Each fsync is timed into the
//! flusher's histogram; the page cache drops behind the logs' windows run after the round, off
//! the durability path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use cairn_metrics::Histogram;
use cairn_storage::{CacheDrops, DiskFile, PendingFlush};
use tokio::sync::Notify;

/// A log as the group commit sees it. Cloning shares the log (the queue holds clones).
pub trait FlushTarget: Clone + Send + 'static {
    /// The log's file type.
    type File: DiskFile + Send + Sync + 'static;
    /// The owner's error; a flush that fails with it takes the log out of service.
    type Error: std::fmt::Display;

    /// Takes the next fsync out of the log under the owner's lock ([`cairn_storage::Log::
    /// begin_flush`]); `None` if everything appended is durable (answering whoever waits).
    ///
    /// # Errors
    /// The log failed (poisoned, or writing its index failed).
    fn begin_flush(&self) -> Result<Option<PendingFlush<Self::File>>, Self::Error>;

    /// Records the fsync's result in the log ([`cairn_storage::Log::complete_flush`]) and
    /// carries out what it made durable.
    ///
    /// # Errors
    /// The fsync or the log failed: the log is poisoned.
    fn complete_flush(
        &self,
        pending: PendingFlush<Self::File>,
        synced: cairn_storage::Result<()>,
    ) -> Result<(), Self::Error>;

    /// The log's place in a group commit's queue.
    fn slot(&self) -> &FlushSlot;

    /// Takes the log out of service after a flush of it failed for `reason`: every waiting
    /// callback is answered with the failure, and every later append fails. Idempotent.
    fn fail(&self, reason: &str);
}

/// What a group commit keeps in each log: whether the log is queued for the next round, and
/// whether it closed (a closed log is never queued again; its close flushes it).
#[derive(Debug, Default)]
pub struct FlushSlot {
    /// Set by [`GroupCommit::notify`] when it queues the log; cleared when a round takes it,
    /// before that round begins the log's flush, so an append after it queues the log again.
    queued: AtomicBool,
    /// Set by [`FlushSlot::close`].
    closed: AtomicBool,
}

impl FlushSlot {
    /// The log closed: rounds skip it from now on.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Whether [`FlushSlot::close`] was called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Why an explicit flush ([`flush_now`]) failed.
#[derive(Debug, thiserror::Error)]
pub enum FlushError<E> {
    /// The owner's flush failed.
    #[error(transparent)]
    Target(E),
    /// The blocking thread running the fsync failed (panicked or was cancelled): whether the
    /// fsync happened is unknown, so nothing more is reported durable.
    #[error("flusher thread failed: {0}")]
    Thread(String),
}

/// What one round did.
#[must_use = "run the cache drops"]
pub struct Round<F> {
    /// Logs whose fsync ran (successfully or not).
    pub synced: usize,
    /// Logs taken out of service by this round.
    pub failed: usize,
    /// The page cache drops of the round's flushes, to run after it.
    pub drops: Vec<CacheDrops<F>>,
}

/// The group commit of a set of logs (module docs): notify it after an append, run it on a
/// task. The queue holds each log at most once ([`FlushSlot`]), so it is bounded by the logs
/// of the node.
pub struct GroupCommit<T> {
    /// Logs with appends to make durable, each once, in the order they were queued.
    queue: Mutex<Vec<T>>,
    /// Wakes [`GroupCommit::run`] after a log is queued.
    wake: Notify,
    /// Set by [`GroupCommit::close`]: the loop returns.
    closed: AtomicBool,
    /// Observes each fsync's duration.
    flush_seconds: Arc<Histogram>,
}

impl<T: FlushTarget> GroupCommit<T> {
    /// A group commit timing its fsyncs into `flush_seconds`.
    #[must_use]
    pub fn new(flush_seconds: Arc<Histogram>) -> GroupCommit<T> {
        GroupCommit {
            queue: Mutex::new(Vec::new()),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            flush_seconds,
        }
    }

    /// `target` has appends to make durable: queues it for the next round, unless it is queued
    /// already, closed, or this group commit is closed.
    pub fn notify(&self, target: &T) {
        let slot = target.slot();
        if slot.is_closed() || slot.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock that `close` empties the queue under: nothing stays queued.
        if self.is_closed() {
            slot.queued.store(false, Ordering::Release);
            return;
        }
        queue.push(target.clone());
        drop(queue);
        self.wake.notify_one();
    }

    /// Takes every queued log out of the queue for a round (module docs: their slots are
    /// cleared first, so an append from now on queues its log again).
    pub fn take_queued(&self) -> Vec<T> {
        let targets =
            std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        for target in &targets {
            target.slot().queued.store(false, Ordering::Release);
        }
        targets
    }

    /// Stops the loop after the round in progress (each log's close makes the rest durable)
    /// and empties the queue: a queued log holds its group commit, which would hold it.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
        drop(self.take_queued());
    }

    /// Whether [`GroupCommit::close`] was called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The flusher loop: a round whenever logs are queued, until closed. A log whose flush
    /// fails is taken out of service; the others go on. The round's flushes begin on this task;
    /// their fsyncs run on up to [`SYNC_THREADS_MAX`] blocking threads at once, each thread's
    /// share back to back.
    pub async fn run(self: Arc<Self>) {
        loop {
            let notified = self.wake.notified();
            if self.is_closed() {
                return;
            }
            let targets = self.take_queued();
            if targets.is_empty() {
                notified.await;
                continue;
            }
            let Begin { begun, drops, .. } = begin_round(&targets);
            let share = begun.len().div_ceil(SYNC_THREADS_MAX).max(1);
            let mut threads = Vec::new();
            let mut begun = begun.into_iter().peekable();
            while begun.peek().is_some() {
                let part: Vec<Begun<T>> = begun.by_ref().take(share).collect();
                let in_part: Vec<T> = part.iter().map(|(target, _)| target.clone()).collect();
                let flush_seconds = Arc::clone(&self.flush_seconds);
                // Off the runtime (inline in a deterministic simulation: `runtime::unblock`);
                // joined below, so the parts' fsyncs run at once.
                let thread = crate::runtime::unblock(move || sync_all(part, &flush_seconds));
                threads.push(async move { (in_part, thread.await) });
            }
            for (in_part, synced) in futures_util::future::join_all(threads).await {
                if let Err(error) = synced {
                    // Whether these fsyncs happened is unknown: none is reported durable.
                    let reason = format!("flusher thread failed: {error}");
                    in_part.iter().for_each(|target| target.fail(&reason));
                }
            }
            run_drops(drops);
        }
    }
}

/// The most blocking threads one round runs fsyncs on at once: the logs' fsyncs overlap on the
/// device (on ext4 one journal commit can cover several), without a thread per log.
pub const SYNC_THREADS_MAX: usize = 4;

/// A log whose flush a round began, and the fsync to run.
type Begun<T> = (T, PendingFlush<<T as FlushTarget>::File>);

/// The start of a round ([`begin_round`]).
struct Begin<T: FlushTarget> {
    /// The flushes begun.
    begun: Vec<Begun<T>>,
    /// Their page cache drops.
    drops: Vec<CacheDrops<T::File>>,
    /// Logs whose flush could not begin (taken out of service).
    failed: usize,
}

/// Runs the cache drops of a round on a blocking thread, off the durability path (they may
/// overlap the next round).
fn run_drops<F: DiskFile + Send + Sync + 'static>(drops: Vec<CacheDrops<F>>) {
    let drops: Vec<CacheDrops<F>> = drops.into_iter().filter(|drops| !drops.is_empty()).collect();
    if !drops.is_empty() {
        // Advice, off the durability path; it may overlap the next fsync.
        crate::runtime::unblock_detached(move || drops.into_iter().for_each(CacheDrops::run));
    }
}

/// Begins the flush of every log of a round that is not closed: each covers its log's appends
/// up to now. A log whose flush cannot begin is taken out of service ([`FlushTarget::fail`]).
fn begin_round<T: FlushTarget>(targets: &[T]) -> Begin<T> {
    let (mut begun, mut drops, mut failed) = (Vec::with_capacity(targets.len()), Vec::new(), 0);
    for target in targets.iter().filter(|target| !target.slot().is_closed()) {
        match target.begin_flush() {
            Ok(Some(mut pending)) => {
                drops.push(pending.take_cache_drops());
                begun.push((target.clone(), pending));
            }
            Ok(None) => {}
            Err(error) => {
                target.fail(&error.to_string());
                failed += 1;
            }
        }
    }
    Begin { begun, drops, failed }
}

/// Runs the fsyncs of `begun` back to back, recording each in its log before the next, so a
/// log's callbacks do not wait for the others' fsyncs. A log whose fsync or record fails is
/// taken out of service. Returns how many failed.
fn sync_all<T: FlushTarget>(begun: Vec<Begun<T>>, flush_seconds: &Histogram) -> usize {
    let mut failed = 0;
    for (target, mut pending) in begun {
        let started = Instant::now();
        let synced = pending.sync();
        flush_seconds.observe_duration(started.elapsed());
        if let Err(error) = target.complete_flush(pending, synced) {
            target.fail(&error.to_string());
            failed += 1;
        }
    }
    failed
}

/// One round over `targets` (module docs) on the calling (blocking) thread: begins every log's
/// flush, then runs each fsync and records it before the next ([`GroupCommit::run`] runs the
/// same steps with the fsyncs spread over threads). A log whose flush cannot begin or fails is
/// taken out of service ([`FlushTarget::fail`]); closed logs are skipped.
pub fn flush_round<T: FlushTarget>(targets: &[T], flush_seconds: &Histogram) -> Round<T::File> {
    let Begin { begun, drops, failed } = begin_round(targets);
    let synced = begun.len();
    let failed = failed + sync_all(begun, flush_seconds);
    Round { synced, failed, drops }
}

/// Flushes `target` until nothing appended to it is unflushed, outside the rounds (before a
/// cut of the log, which must not race a flush begun before it). A failed flush is returned;
/// the owner's `complete_flush` has taken the log out of service for an fsync error.
///
/// # Errors
/// The first [`FlushError`].
pub async fn flush_now<T: FlushTarget>(
    target: &T,
    flush_seconds: &Arc<Histogram>,
) -> Result<(), FlushError<T::Error>> {
    loop {
        let Some(mut pending) = target.begin_flush().map_err(FlushError::Target)? else {
            return Ok(());
        };
        let drops = pending.take_cache_drops();
        let flush_seconds = Arc::clone(flush_seconds);
        let (pending, synced) = crate::runtime::unblock(move || {
            let mut pending = pending;
            let started = Instant::now();
            let synced = pending.sync();
            flush_seconds.observe_duration(started.elapsed());
            (pending, synced)
        })
        .await
        .map_err(|error| FlushError::Thread(error.to_string()))?;
        target.complete_flush(pending, synced).map_err(FlushError::Target)?;
        run_drops(vec![drops]);
    }
}
