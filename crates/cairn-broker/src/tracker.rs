//! [`Tracker`]: what a partition learns from its Raft group, carried out on its [`Replica`].
//!
//! The group's storage reports each proposal's append (`acks=1` waiters are answered from it),
//! each flush (`on_flushed`) and each apply (`on_committed`: the high watermark is the end of
//! the last applied entry); the role watch reports elections (`on_role`, the term as the leader
//! epoch). Blank and membership entries take offsets without being reported, so every event
//! first moves the replica's log end up to what it names. The high watermark (or the failure)
//! is published on a `watch` channel for long polls.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use cairn_raft::{AppendSink, GroupRole, GroupState, ProposalAppended};
use cairn_types::{NodeId, Offset, RaftIndex};
use tokio::sync::{oneshot, watch};

use crate::partition::{Durability, Shared};
use crate::replica::{Replica, Role, Violation};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a partition mutex is a bug that already stopped the broker's
    // invariant; the state is consistent at every `&mut` boundary, so continue with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A partition's replica state and its waiters, shared with its group's storage (module docs).
pub(crate) struct Tracker {
    pub(crate) topic: String,
    pub(crate) index: u32,
    /// Role, epoch and offsets.
    pub(crate) replica: Mutex<Replica>,
    /// The high watermark (or the failure), for long polls.
    pub(crate) durability: watch::Sender<Durability>,
    /// Proposals waiting for their append, by ticket.
    pub(crate) appends: Mutex<HashMap<u64, oneshot::Sender<ProposalAppended>>>,
    /// The broker's progress channel, flush histogram, health and clock.
    pub(crate) shared: Shared,
    /// Why the partition is offline; set once, never cleared (a restart reopens the log).
    pub(crate) offline: OnceLock<String>,
    /// Set when the partition closes: the group stopping then is not a failure.
    pub(crate) closing: std::sync::atomic::AtomicBool,
}

impl Tracker {
    /// Takes the partition offline for `reason` (the first reason is kept): logged once,
    /// reported to the broker's health, and every waiter woken to see it.
    pub(crate) fn go_offline(&self, reason: String) {
        if self.offline.set(reason.clone()).is_err() {
            return;
        }
        tracing::error!(topic = %self.topic, partition = self.index, %reason, "partition offline: it serves nothing until the node restarts");
        lock(&self.replica).on_failed(reason.clone());
        self.shared.health.set_offline(&self.topic, self.index, &reason);
        self.durability.send_replace(Durability::Failed(reason));
        self.shared.progress.send_modify(|events| *events = events.wrapping_add(1));
        lock(&self.appends).clear();
    }

    /// Applies `event` to the replica; a violation takes the partition offline.
    fn replica_event(&self, event: impl FnOnce(&mut Replica) -> Result<(), Violation>) {
        let result = event(&mut lock(&self.replica));
        if let Err(violation) = result {
            self.go_offline(format!("replica invariant broken: {violation}"));
        }
    }

    /// The group's role changed; `log_end` is the log's end now (the new term's blank entry
    /// may be in it already).
    pub(crate) fn on_role(&self, group: GroupRole, log_end: Offset) {
        let role = match group.state {
            GroupState::Leader => Role::Leader,
            GroupState::Follower | GroupState::Learner => {
                Role::Follower { leader: group.leader.map(NodeId) }
            }
            GroupState::Candidate => Role::Candidate,
            GroupState::Stopped => {
                if !self.closing.load(std::sync::atomic::Ordering::Acquire) {
                    self.go_offline("the raft group stopped".to_owned());
                }
                return;
            }
        };
        let epoch = match cairn_raft::epoch::epoch_of(group.term) {
            Ok(epoch) => epoch,
            Err(error) => return self.go_offline(error.to_string()),
        };
        self.replica_event(|replica| {
            // Two reporters carry roles out (the role watch, and a start waiting for its
            // leader); one may come late with a role of an older term: it changes nothing.
            if epoch < replica.epoch() {
                return Ok(());
            }
            advance_end(replica, log_end)?;
            replica.on_role(role, epoch)
        });
    }

    /// Publishes a high watermark that moved, waking long polls.
    fn publish(&self, committed: Offset) {
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
    }
}

/// Moves the replica's log end up to `log_end` (entries the sink does not report, blank and
/// membership, take offsets too); never back.
fn advance_end(replica: &mut Replica, log_end: Offset) -> Result<(), Violation> {
    if log_end > replica.log_end() { replica.on_appended(log_end) } else { Ok(()) }
}

impl AppendSink for Tracker {
    fn appended(&self, ticket: u64, appended: ProposalAppended) {
        self.replica_event(|replica| advance_end(replica, appended.next_offset));
        if let Some(waiter) = lock(&self.appends).remove(&ticket) {
            // The waiter may have given up (timeout, connection closed): nothing to answer.
            let _ = waiter.send(appended);
        }
    }

    fn flushed(&self, durable: Offset) {
        self.replica_event(|replica| {
            advance_end(replica, durable)?;
            if durable > replica.flushed() { replica.on_flushed(durable) } else { Ok(()) }
        });
    }

    fn append_failed(&self, error: &cairn_raft::StoreError) {
        if matches!(error, cairn_raft::StoreError::Storage(cairn_storage::Error::NoSpace { .. })) {
            self.shared.health.set_disk_full(true);
        }
    }

    fn applied(&self, _index: RaftIndex, end: Offset) {
        self.committed_through(end);
    }
}

impl Tracker {
    /// Every offset below `end` is committed (an entry ending there committed, or was
    /// applied): the high watermark moves up to it, never back, and long polls are woken.
    pub(crate) fn committed_through(&self, end: Offset) {
        let mut committed = None;
        self.replica_event(|replica| {
            advance_end(replica, end)?;
            if end > replica.committed() {
                replica.on_committed(end)?;
                committed = Some(end);
            }
            Ok(())
        });
        if let Some(committed) = committed {
            self.publish(committed);
        }
    }
}
