//! [`Replica`]: a partition replica's role, leader epoch and offsets as a pure state machine.
//!
//! The async [`crate::Partition`] carries it out: it feeds in what happened (`on_*` events: an
//! append returned, a flush completed, the group committed, the role changed, the log was cut,
//! purged or replaced by a snapshot, the log failed) and asks what may be done (`may_produce`,
//! `check_epoch`, `fetch_bound`, `latest_offset`, `retention_bound`). The replica does no IO,
//! reads no clock and knows no runtime, so every rule here is tested by feeding events.
//!
//! **Flushed is not committed.** `flushed` is this replica's own fsync point; `committed` is the
//! group's commit index as an offset, **the high watermark**. Reads and retention are bounded by
//! `committed`. With one voter the partition reports every flush as a commit, through the same
//! [`Replica::on_committed`] the Raft commit callback calls.
//!
//! **Invariants**, checked after every event: `log_start <= committed <= log_end`,
//! `flushed <= log_end`, `committed` never decreases, `log_start` never moves back, nothing at or
//! below `committed` is truncated, a leader's log is append-only, the epoch never decreases. An
//! event that would break one is not applied: it is a [`Violation`], and the replica goes
//! [`Role::Offline`] (fail-stop) — the caller reports it, the replica never panics.

use cairn_types::{LeaderEpoch, NodeId, Offset};

/// What this replica is in its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts produce; its commit index is the high watermark consumers see.
    Leader,
    /// Replicates from `leader` (unknown during an election).
    Follower {
        /// The current leader, if known: the hint a refused client is sent to.
        leader: Option<NodeId>,
    },
    /// Campaigning: no leader is known.
    Candidate,
    /// Failed (log failure, corruption, broken invariant): serves nothing until a restart.
    /// Final: no event leaves it.
    Offline {
        /// Why, for the log and readiness.
        reason: String,
    },
}

/// Why a request is refused; cairn-kafka maps each to its Kafka error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not the leader (`NOT_LEADER_OR_FOLLOWER`); `hint` is the leader if known (KIP-951).
    #[error("not the leader of the partition")]
    NotLeader {
        /// The current leader, if known.
        hint: Option<NodeId>,
    },
    /// The request names an older leader epoch than ours (`FENCED_LEADER_EPOCH`).
    #[error("the request's leader epoch is older than the partition's")]
    FencedEpoch,
    /// The request names a newer leader epoch than ours (`UNKNOWN_LEADER_EPOCH`): this replica
    /// has not heard of it yet.
    #[error("the request's leader epoch is newer than the partition's")]
    UnknownEpoch,
    /// A leader that lost contact with its quorum for longer than an election timeout
    /// (`NOT_ENOUGH_REPLICAS`, retriable): another leader may exist by now.
    #[error("the leader's quorum lease lapsed")]
    LeaseLapsed,
    /// The replica is offline (`KAFKA_STORAGE_ERROR`).
    #[error("the partition is offline")]
    Offline,
}

/// An event that would break a replica invariant. Never applied: the replica goes offline.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The offsets would be out of order (`log_start <= committed <= log_end`,
    /// `flushed <= log_end`).
    #[error(
        "offsets out of order: start {log_start}, committed {committed}, flushed {flushed}, end {log_end}"
    )]
    Order {
        /// The first offset kept.
        log_start: u64,
        /// The commit offset.
        committed: u64,
        /// The flush offset.
        flushed: u64,
        /// The log end.
        log_end: u64,
    },
    /// The leader's append answered an idempotent batch as the repeat of one it had not
    /// written (cairn-raft's store judges a repeat only once the original is in the log).
    #[error("an idempotent batch was answered as the repeat of a batch not in the log")]
    DuplicateNotWritten,
    /// An offset that only grows would move back.
    #[error("{what} would move back from {from} to {to}")]
    Backwards {
        /// Which offset or epoch.
        what: &'static str,
        /// Its value.
        from: i128,
        /// The value the event asked for.
        to: i128,
    },
    /// A truncation would cut committed offsets.
    #[error("truncation at {at} would cut committed offsets below {committed}")]
    CommittedTruncated {
        /// Where the log would be cut.
        at: u64,
        /// The commit offset.
        committed: u64,
    },
    /// A leader's own log would be truncated or replaced (a leader only appends).
    #[error("a leader's log is append-only")]
    LeaderRewritten,
}

/// A partition replica's role, epoch and offsets (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    /// What this replica is in its group.
    role: Role,
    /// The current term as a Kafka leader epoch.
    epoch: LeaderEpoch,
    /// The first offset kept in the log.
    log_start: Offset,
    /// The next offset to assign.
    log_end: Offset,
    /// Offsets below are fsynced on this replica.
    flushed: Offset,
    /// Offsets below are committed by the group: the high watermark.
    committed: Offset,
    /// A leader's first offset of its term; its high watermark is unknown until `committed`
    /// reaches it. `None` unless leader.
    term_start: Option<Offset>,
    /// Whether a leader's quorum lease holds (it heard from a majority within an election
    /// timeout). Always true with one voter; a new term starts with it held.
    lease_held: bool,
}

impl Replica {
    /// A follower with no known leader, at epoch 0, over a log with these offsets (as opened).
    ///
    /// # Errors
    /// [`Violation::Order`] if the offsets are out of order.
    pub fn new(
        log_start: Offset,
        log_end: Offset,
        flushed: Offset,
        committed: Offset,
    ) -> Result<Replica, Violation> {
        let replica = Replica {
            role: Role::Follower { leader: None },
            epoch: LeaderEpoch(0),
            log_start,
            log_end,
            flushed,
            committed,
            term_start: None,
            lease_held: true,
        };
        replica.check_order()?;
        Ok(replica)
    }

    /// A replica whose log could not be opened: offline from the start, no offsets known.
    #[must_use]
    pub fn offline(reason: String) -> Replica {
        Replica {
            role: Role::Offline { reason },
            epoch: LeaderEpoch(0),
            log_start: Offset(0),
            log_end: Offset(0),
            flushed: Offset(0),
            committed: Offset(0),
            term_start: None,
            lease_held: false,
        }
    }

    /// The role.
    #[must_use]
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The current leader epoch.
    #[must_use]
    pub fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }

    /// The first offset kept.
    #[must_use]
    pub fn log_start(&self) -> Offset {
        self.log_start
    }

    /// The next offset to assign.
    #[must_use]
    pub fn log_end(&self) -> Offset {
        self.log_end
    }

    /// Offsets below are fsynced here.
    #[must_use]
    pub fn flushed(&self) -> Offset {
        self.flushed
    }

    /// Offsets below are committed: the high watermark.
    #[must_use]
    pub fn committed(&self) -> Offset {
        self.committed
    }

    /// A leader's first offset of its term (`None` unless leader).
    #[must_use]
    pub fn term_start(&self) -> Option<Offset> {
        self.term_start
    }

    /// Whether the replica is offline (final until a restart).
    #[must_use]
    pub fn is_offline(&self) -> bool {
        matches!(self.role, Role::Offline { .. })
    }

    // ---- events ----

    /// The role or epoch changed. Becoming leader starts a term at the log end: its high
    /// watermark is unknown until `committed` reaches it.
    ///
    /// # Errors
    /// [`Violation::Backwards`] for an epoch below the current one.
    pub fn on_role(&mut self, role: Role, epoch: LeaderEpoch) -> Result<(), Violation> {
        self.apply(|next| {
            if epoch < next.epoch {
                return Err(backwards("leader epoch", next.epoch.0, epoch.0));
            }
            let leads_on = next.role == Role::Leader && epoch == next.epoch;
            next.term_start = match role {
                Role::Leader if leads_on => next.term_start,
                Role::Leader => Some(next.log_end),
                _ => None,
            };
            if !leads_on {
                next.lease_held = true;
            }
            next.role = role;
            next.epoch = epoch;
            Ok(())
        })
    }

    /// An append (leader's or replicated) returned: the log now ends at `log_end`.
    ///
    /// # Errors
    /// [`Violation::Backwards`] if `log_end` is not past the current end.
    pub fn on_appended(&mut self, log_end: Offset) -> Result<(), Violation> {
        self.apply(|next| {
            if log_end <= next.log_end {
                return Err(backwards("log end", next.log_end.0, log_end.0));
            }
            next.log_end = log_end;
            Ok(())
        })
    }

    /// A flush completed: offsets below `flushed` are on stable storage here.
    ///
    /// # Errors
    /// [`Violation::Backwards`] if it moves back; [`Violation::Order`] if past the log end.
    pub fn on_flushed(&mut self, flushed: Offset) -> Result<(), Violation> {
        self.apply(|next| {
            if flushed < next.flushed {
                return Err(backwards("flushed offset", next.flushed.0, flushed.0));
            }
            next.flushed = flushed;
            Ok(())
        })
    }

    /// The group committed every offset below `committed`: the new high watermark.
    ///
    /// # Errors
    /// [`Violation::Backwards`] if it moves back; [`Violation::Order`] if past the log end.
    pub fn on_committed(&mut self, committed: Offset) -> Result<(), Violation> {
        self.apply(|next| {
            next.committed = committed;
            Ok(())
        })
    }

    /// The log was cut: it now ends at `at` (a follower's uncommitted suffix).
    ///
    /// # Errors
    /// [`Violation::CommittedTruncated`] below the commit offset; [`Violation::LeaderRewritten`]
    /// on a leader.
    pub fn on_truncated(&mut self, at: Offset) -> Result<(), Violation> {
        self.apply(|next| {
            if next.role == Role::Leader {
                return Err(Violation::LeaderRewritten);
            }
            if at < next.committed {
                return Err(Violation::CommittedTruncated {
                    at: at.0,
                    committed: next.committed.0,
                });
            }
            next.log_end = at;
            next.flushed = next.flushed.min(at);
            Ok(())
        })
    }

    /// The log was replaced by an installed snapshot: empty, starting (and ending) at `start`,
    /// every offset below it committed and durable.
    ///
    /// # Errors
    /// [`Violation::Backwards`] if it would take back committed offsets;
    /// [`Violation::LeaderRewritten`] on a leader.
    pub fn on_snapshot_installed(&mut self, start: Offset) -> Result<(), Violation> {
        self.apply(|next| {
            if next.role == Role::Leader {
                return Err(Violation::LeaderRewritten);
            }
            if start < next.committed {
                return Err(backwards("committed offset", next.committed.0, start.0));
            }
            (next.log_start, next.log_end, next.flushed, next.committed) =
                (start, start, start, start);
            Ok(())
        })
    }

    /// Offsets below `log_start` were deleted (retention).
    ///
    /// # Errors
    /// [`Violation::Backwards`] if the start moves back; [`Violation::Order`] past the commit
    /// offset.
    pub fn on_purged(&mut self, log_start: Offset) -> Result<(), Violation> {
        self.apply(|next| {
            if log_start < next.log_start {
                return Err(backwards("log start", next.log_start.0, log_start.0));
            }
            next.log_start = log_start;
            Ok(())
        })
    }

    /// A leader's quorum lease lapsed (`held == false`: no majority heard within an election
    /// timeout) or was regained. Ignored unless leader.
    pub fn on_lease(&mut self, held: bool) {
        if self.role == Role::Leader {
            self.lease_held = held;
        }
    }

    /// The log failed (IO error, corruption): offline until a restart. The first reason stays.
    pub fn on_failed(&mut self, reason: String) {
        if !self.is_offline() {
            self.role = Role::Offline { reason };
            self.term_start = None;
        }
    }

    /// Applies `change` to a copy, checks the invariants against the state before, and keeps
    /// the copy only if they hold; otherwise goes offline and returns the violation. Events on
    /// an offline replica change nothing.
    fn apply(
        &mut self,
        change: impl FnOnce(&mut Replica) -> Result<(), Violation>,
    ) -> Result<(), Violation> {
        if self.is_offline() {
            return Ok(());
        }
        let mut next = self.clone();
        let checked = change(&mut next).and_then(|()| next.check_after(self));
        match &checked {
            Ok(()) => *self = next,
            Err(violation) => self.on_failed(format!("replica invariant broken: {violation}")),
        }
        checked
    }

    /// The invariants of a state following `before`.
    fn check_after(&self, before: &Replica) -> Result<(), Violation> {
        self.check_order()?;
        if self.committed < before.committed {
            return Err(backwards("committed offset", before.committed.0, self.committed.0));
        }
        if let Some(start) = self.term_start
            && start > self.log_end
        {
            return Err(Violation::LeaderRewritten);
        }
        Ok(())
    }

    fn check_order(&self) -> Result<(), Violation> {
        let ordered = self.log_start <= self.committed
            && self.committed <= self.log_end
            && self.flushed <= self.log_end;
        if ordered {
            return Ok(());
        }
        Err(Violation::Order {
            log_start: self.log_start.0,
            committed: self.committed.0,
            flushed: self.flushed.0,
            log_end: self.log_end.0,
        })
    }

    // ---- answers ----

    /// Whether a produce may be appended here now.
    ///
    /// # Errors
    /// The [`Refusal`] for a non-leader, an offline replica, or a leader whose lease lapsed.
    pub fn may_produce(&self) -> Result<(), Refusal> {
        self.serving()?;
        if self.lease_held { Ok(()) } else { Err(Refusal::LeaseLapsed) }
    }

    /// Kafka's current-leader-epoch check of a request (`None`: the client sent none).
    ///
    /// # Errors
    /// [`Refusal::FencedEpoch`] for an older epoch, [`Refusal::UnknownEpoch`] for a newer one.
    pub fn check_epoch(&self, requested: Option<LeaderEpoch>) -> Result<(), Refusal> {
        match requested {
            Some(epoch) if epoch < self.epoch => Err(Refusal::FencedEpoch),
            Some(epoch) if epoch > self.epoch => Err(Refusal::UnknownEpoch),
            _ => Ok(()),
        }
    }

    /// The offset fetches stop before: the commit offset, on the leader.
    ///
    /// # Errors
    /// The [`Refusal`] for a non-leader or an offline replica.
    pub fn fetch_bound(&self) -> Result<Offset, Refusal> {
        self.serving().map(|()| self.committed)
    }

    /// ListOffsets(latest): the high watermark, or `None` (`OFFSET_NOT_AVAILABLE`) while a new
    /// leader's term has not committed up to its start. Once `committed` reaches `term_start`,
    /// every entry of earlier terms is committed, so no earlier leader can have shown a higher
    /// high watermark: the one answered never goes back.
    ///
    /// # Errors
    /// The [`Refusal`] for a non-leader or an offline replica.
    pub fn latest_offset(&self) -> Result<Option<Offset>, Refusal> {
        self.serving()?;
        let known = self.term_start.is_none_or(|start| self.committed >= start);
        Ok(known.then_some(self.committed))
    }

    /// The offset retention may delete up to (whole segments below it): the commit offset, on
    /// any replica; `None` when offline.
    #[must_use]
    pub fn retention_bound(&self) -> Option<Offset> {
        (!self.is_offline()).then_some(self.committed)
    }

    /// Serving reads and writes is the leader's.
    fn serving(&self) -> Result<(), Refusal> {
        match &self.role {
            Role::Leader => Ok(()),
            Role::Follower { leader } => Err(Refusal::NotLeader { hint: *leader }),
            Role::Candidate => Err(Refusal::NotLeader { hint: None }),
            Role::Offline { .. } => Err(Refusal::Offline),
        }
    }
}

/// A [`Violation::Backwards`]; `i128` holds both offsets (`u64`) and epochs (`i32`).
fn backwards(what: &'static str, from: impl Into<i128>, to: impl Into<i128>) -> Violation {
    Violation::Backwards { what, from: from.into(), to: to.into() }
}
