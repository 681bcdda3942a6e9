//! [`GroupCommit`]: a log's pipelined group commit, run by the Raft group's log
//! ([`crate::GroupLog::run_flusher`]) for its log store ([`crate::LogStore`]).
//!
//! The owner of a log implements [`FlushTarget`]: take a pending flush out of its log under its
//! lock ([`cairn_storage::Log::begin_flush`]), and record what the fsync made durable
//! ([`cairn_storage::Log::complete_flush`]) with whatever follows from it (a replica's `flushed`,
//! Raft's `IOFlushed` callbacks). [`GroupCommit::run`] runs the fsync on a blocking thread
//! without the lock and repeats while anything is unflushed, so one fsync covers every append
//! made while the previous one ran and appends never wait for the device. Each fsync is timed
//! into the owner's histogram; the page cache drops behind the log's window run after the flush
//! is recorded, off the durability path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_metrics::Histogram;
use cairn_storage::{DiskFile, PendingFlush};
use tokio::sync::Notify;

/// The owner of a log, as its group commit sees it.
pub trait FlushTarget {
    /// The log's file type.
    type File: DiskFile + Send + Sync + 'static;
    /// The owner's error; a flush that fails with it stops the group commit.
    type Error;

    /// Takes the next fsync out of the log under the owner's lock ([`cairn_storage::Log::
    /// begin_flush`]); `None` if everything appended is durable.
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
}

/// Why a group commit stopped.
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

/// The group commit of one log: wake it after an append, run it on a task.
pub struct GroupCommit {
    /// Wakes [`GroupCommit::run`] after an append.
    unflushed: Notify,
    /// Set by [`GroupCommit::close`]: the loop returns.
    closed: AtomicBool,
    /// Observes each fsync's duration.
    flush_seconds: Arc<Histogram>,
}

impl GroupCommit {
    /// A group commit timing its fsyncs into `flush_seconds`.
    #[must_use]
    pub fn new(flush_seconds: Arc<Histogram>) -> GroupCommit {
        GroupCommit { unflushed: Notify::new(), closed: AtomicBool::new(false), flush_seconds }
    }

    /// Something was appended: wake the loop.
    pub fn notify(&self) {
        self.unflushed.notify_one();
    }

    /// Stops the loop after the flush in progress (the owner makes the rest durable itself).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.unflushed.notify_one();
    }

    /// Whether [`GroupCommit::close`] was called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The flusher loop: flushes whenever woken, until closed; returns the first failure (the
    /// owner takes its log out of service).
    ///
    /// # Errors
    /// The first [`FlushError`].
    pub async fn run<T: FlushTarget>(&self, target: &T) -> Result<(), FlushError<T::Error>> {
        loop {
            let notified = self.unflushed.notified();
            if self.is_closed() {
                return Ok(());
            }
            self.flush(target).await?;
            notified.await;
        }
    }

    /// Flushes until nothing is unflushed.
    ///
    /// # Errors
    /// The first [`FlushError`].
    pub async fn flush<T: FlushTarget>(&self, target: &T) -> Result<(), FlushError<T::Error>> {
        loop {
            let Some(mut pending) = target.begin_flush().map_err(FlushError::Target)? else {
                return Ok(());
            };
            let drops = pending.take_cache_drops();
            let flush_seconds = Arc::clone(&self.flush_seconds);
            let (pending, synced) = crate::runtime::unblock(move || {
                let mut pending = pending;
                let started = std::time::Instant::now();
                let synced = pending.sync();
                flush_seconds.observe_duration(started.elapsed());
                (pending, synced)
            })
            .await
            .map_err(|error| FlushError::Thread(error.to_string()))?;
            target.complete_flush(pending, synced).map_err(FlushError::Target)?;
            if !drops.is_empty() {
                // Advice, off the durability path; it may overlap the next fsync.
                crate::runtime::unblock_detached(move || drops.run());
            }
        }
    }
}
