//! [`CoordGroup`]: the coordination group as the node's etcd front door uses it: writes
//! proposed by the leader (forwarded to it by the others), linearizable reads through a read
//! index, the applied store and its revisions for reads and watches.
//!
//! A write on the leader is proposed as one entry and answered once committed and applied
//! here, with the command's reply. A node that does not lead hands it to the leader
//! ([`Forward::Write`] in a `CoordCall` frame), then waits until it applied the entry itself,
//! so its own reads and watches see the change. A linearizable read asks the leader for its
//! read index (openraft's ReadIndex: a heartbeat round to a quorum, never a lease read) and
//! waits until this node applied through it. The outcome of a write that timed out, or whose
//! forward was lost after it left, is unknown: [`Refusal::Unavailable`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_coord::{Answer, Applied, Command, EntryPosition, Forward, Refusal, Reply, StoreReader};
use cairn_storage::Disk;
use openraft::async_runtime::WatchReceiver;
use openraft::error::ClientWriteError;
use openraft::{Raft, ReadPolicy};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::COORD_GROUP;
use super::leases::Lessor;
use super::state_machine::{CoordStateMachine, Shared};
use crate::core_group::command_batch;
use crate::entry::log_id;
use crate::peer::{CallError, ErrorCode, PeerClient, PeerNode, Request, Response, Unreachable};
use crate::{CommitResponder, LogId, Proposal, TypeConfig};

/// A write's outcome as the front door sees it: the reply and the store's revision after it.
pub type Written = (Reply, i64);

/// The coordination group on one node (module docs). Made by [`CoordGroup::open`].
pub struct CoordGroup<D: Disk + Clone> {
    pub(super) node: u64,
    pub(super) raft: Raft<TypeConfig, CoordStateMachine<D>>,
    pub(super) shared: Arc<Shared>,
    /// The leader's lease deadlines.
    pub(super) lessor: Lessor,
    /// The peers' clients, by node id (none on a single node).
    pub(super) clients: BTreeMap<u64, PeerClient>,
    /// How long a request waits for a leader, its commit and its apply.
    pub(super) timeout: Duration,
    pub(super) stopper: crate::core_group::Stopper<D>,
}

impl<D: Disk + Clone> CoordGroup<D> {
    /// Carries out `command` on the leader, here or forwarded; answers once this node applied it.
    ///
    /// # Errors
    /// The store's refusal ([`Refusal::Kv`]); [`Refusal::Unavailable`] if no leader could be
    /// reached in time (etcd's "no leader": nothing changed) or the outcome is unknown.
    pub async fn write(&self, command: Command) -> Result<Written, Refusal> {
        let deadline = Instant::now() + self.timeout;
        match self.call(Forward::Write(command), deadline).await? {
            Answer::Written { reply, revision, applied } => {
                self.wait_applied(Some(applied), deadline).await?;
                Ok((reply, revision))
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Waits until this node applied everything committed before the call (a read index from
    /// the leader): a read after it is linearizable.
    ///
    /// # Errors
    /// As [`CoordGroup::write`]: no leader in time, or no answer.
    pub async fn read_index(&self) -> Result<(), Refusal> {
        let deadline = Instant::now() + self.timeout;
        match self.call(Forward::ReadIndex, deadline).await? {
            Answer::ReadIndex(applied) => self.wait_applied(applied, deadline).await,
            other => Err(unexpected(&other)),
        }
    }

    /// Renews lease `id` at the leader; answers its TTL.
    ///
    /// # Errors
    /// [`Refusal::Kv`] (`LeaseNotFound`) for a lease that does not exist; as
    /// [`CoordGroup::write`] otherwise.
    pub async fn keep_alive(&self, id: i64) -> Result<i64, Refusal> {
        let deadline = Instant::now() + self.timeout;
        match self.call(Forward::KeepAlive { id }, deadline).await? {
            Answer::Lease { granted, .. } => Ok(granted),
            other => Err(unexpected(&other)),
        }
    }

    /// What remains of lease `id` at the leader, and its granted TTL, in seconds.
    ///
    /// # Errors
    /// As [`CoordGroup::keep_alive`].
    pub async fn time_to_live(&self, id: i64) -> Result<(i64, i64), Refusal> {
        let deadline = Instant::now() + self.timeout;
        match self.call(Forward::TimeToLive { id }, deadline).await? {
            Answer::Lease { remaining, granted } => Ok((remaining, granted)),
            other => Err(unexpected(&other)),
        }
    }

    /// Reads of the store as this node applied it (each read sees one applied state). Take
    /// one per read: an installed snapshot replaces the store, and a reader kept across it
    /// reads the old one.
    #[must_use]
    pub fn reader(&self) -> StoreReader {
        self.shared.reader()
    }

    /// Every revision applied here from now on, and the store's revision when subscribing
    /// (revisions up to it may come again: a watcher skips what it sent).
    ///
    /// # Errors
    /// [`Refusal::Unavailable`] if the store cannot be read.
    pub fn subscribe(&self) -> Result<(broadcast::Receiver<Arc<Applied>>, i64), Refusal> {
        let receiver = self.shared.revisions.subscribe();
        let position = self.reader().position().map_err(|e| Refusal::Unavailable(e.to_string()))?;
        Ok((receiver, position.revision))
    }

    /// The group as this node sees it: leader, term, commit and apply indexes.
    #[must_use]
    pub fn status(&self) -> CoordStatus {
        let metrics = self.raft.metrics().borrow_watched().clone();
        CoordStatus {
            leader: metrics.current_leader,
            term: metrics.current_term,
            committed_index: metrics.local_committed.map_or(0, |id| id.index),
            applied_index: metrics.last_applied.map_or(0, |id| id.index),
        }
    }

    /// Waits until this node built a snapshot covering `index` and purged its log behind it,
    /// at most `timeout`; whether it did.
    pub async fn wait_purged(&self, index: u64, timeout: Duration) -> bool {
        let covered = |id: Option<&LogId>| id.is_some_and(|id| id.index >= index);
        self.raft
            .wait(Some(timeout))
            .metrics(|m| covered(m.snapshot.as_ref()) && covered(m.purged.as_ref()), "a purge")
            .await
            .is_ok()
    }

    /// Carries out a request forwarded by another node (this node must lead), as its encoded
    /// answer.
    pub async fn serve_forwarded(&self, request: &[u8]) -> Bytes {
        let answer = match Forward::decode(request) {
            Ok(forward) => self.serve(forward).await.unwrap_or_else(Answer::Refused),
            Err(error) => Answer::Refused(Refusal::Unavailable(format!(
                "a coordination request that does not decode: {error}"
            ))),
        };
        let encoded = answer.encode().unwrap_or_else(|error| {
            let why = format!("the answer does not encode: {error}");
            Answer::Refused(Refusal::Unavailable(why)).encode().unwrap_or_default()
        });
        Bytes::from(encoded)
    }

    /// `forward` here if this node leads, else at the leader; a leader unknown or unreachable
    /// is waited for and tried again until `deadline`.
    async fn call(&self, forward: Forward, deadline: Instant) -> Result<Answer, Refusal> {
        loop {
            let outcome = match self.raft.current_leader().await {
                Some(leader) if leader == self.node => self.serve(forward.clone()).await,
                Some(leader) => self.forward(leader, &forward, deadline).await,
                None => Err(Refusal::NotLeader(None)),
            };
            match outcome {
                Err(Refusal::NotLeader(_)) if Instant::now() < deadline => {
                    self.leader_changed(deadline).await;
                }
                Err(Refusal::NotLeader(_)) => {
                    return Err(Refusal::Unavailable("etcdserver: no leader".into()));
                }
                outcome => return outcome,
            }
        }
    }

    /// Waits (until `deadline`, at most a pause) for the group's leader to change.
    async fn leader_changed(&self, deadline: Instant) {
        let seen = self.raft.metrics().borrow_watched().current_leader;
        let pause = deadline.min(Instant::now() + LEADER_PAUSE);
        let wait = self.raft.wait(Some(pause.saturating_duration_since(Instant::now())));
        // Timing out is the point: a pause before the next try.
        let _ = wait
            .metrics(|m| m.current_leader.is_some() && m.current_leader != seen, "a new leader")
            .await;
    }

    /// The leader's side of a request.
    async fn serve(&self, forward: Forward) -> Result<Answer, Refusal> {
        match forward {
            Forward::Write(command) => self.propose(command).await,
            Forward::ReadIndex => Ok(Answer::ReadIndex(self.leader_read_index().await?)),
            Forward::KeepAlive { id } => {
                let granted = self.lessor.keep_alive(self, id).await?;
                Ok(Answer::Lease { remaining: granted, granted })
            }
            Forward::TimeToLive { id } => {
                let (remaining, granted) = self.lessor.time_to_live(self, id).await?;
                Ok(Answer::Lease { remaining, granted })
            }
        }
    }

    /// The leader's read index: everything committed before the call.
    pub(super) async fn leader_read_index(&self) -> Result<Option<EntryPosition>, Refusal> {
        let read = tokio::time::timeout(
            self.timeout,
            self.raft.ensure_linearizable(ReadPolicy::ReadIndex),
        );
        match read.await {
            Ok(Ok(read)) => Ok(Some(position(*read.log_id()))),
            Ok(Err(error)) => {
                let leader = error.forward_to_leader().and_then(|f| f.leader_id);
                Err(Refusal::NotLeader(leader))
            }
            Err(_) => Err(Refusal::Unavailable("etcdserver: request timed out".into())),
        }
    }

    /// Proposes `command` (this node leads) and waits for its apply here.
    pub(super) async fn propose(&self, command: Command) -> Result<Answer, Refusal> {
        let command = self.lessor.choose_id(self, command);
        let value = command.encode().map_err(|error| refused(&error))?;
        let batch = command_batch(&value).map_err(|error| refused(&error))?;
        let proposal = Proposal { batch, ticket: Proposal::TICKET_NONE };
        let (responder, complete) = CommitResponder::outcome_only();
        if let Err(fatal) = self.raft.client_write_ff(proposal, Some(responder)).await {
            return Err(Refusal::Unavailable(format!("the coordination group stopped: {fatal}")));
        }
        let written = match tokio::time::timeout(self.timeout, complete).await {
            Ok(Ok(written)) => written,
            Ok(Err(_)) | Err(_) => return Err(timed_out()),
        };
        let log_id = match written {
            Ok(response) => response.log_id,
            Err(ClientWriteError::ForwardToLeader(forward)) => {
                return Err(Refusal::NotLeader(forward.leader_id));
            }
            Err(_) => return Err(timed_out()),
        };
        let (reply, revision) = self.shared.take_outcome(log_id.index).ok_or_else(|| {
            Refusal::Unavailable(format!("the answer of entry {} was lost", log_id.index))
        })?;
        self.lessor.applied(self, &reply);
        Ok(Answer::Written {
            reply: reply.map_err(Refusal::Kv)?,
            revision,
            applied: position(log_id),
        })
    }

    /// Hands `forward` to `leader` over the peer transport.
    async fn forward(
        &self,
        leader: u64,
        forward: &Forward,
        deadline: Instant,
    ) -> Result<Answer, Refusal> {
        let Some(client) = self.clients.get(&leader) else {
            return Err(Refusal::NotLeader(None));
        };
        let bytes = Bytes::from(forward.encode().map_err(|error| refused(&error))?);
        match client.call(COORD_GROUP, Request::CoordCall(bytes), deadline).await {
            Ok(Response::CoordCall(bytes)) => match Answer::decode(&bytes) {
                Ok(Answer::Refused(refusal)) => Err(refusal),
                Ok(answer) => Ok(answer),
                Err(error) => Err(Refusal::Unavailable(format!("the leader's answer: {error}"))),
            },
            Ok(other) => Err(Refusal::Unavailable(format!("the leader answered {other:?}"))),
            // Only a write's outcome is unknown when its call fails: the others are asked again.
            Err(_) if !matches!(forward, Forward::Write(_)) => Err(Refusal::NotLeader(None)),
            Err(error) => Err(call_error(&error)),
        }
    }

    /// Waits until this node applied `position` (nothing to wait for: `None`), until `deadline`.
    async fn wait_applied(
        &self,
        position: Option<EntryPosition>,
        deadline: Instant,
    ) -> Result<(), Refusal> {
        let Some((term, index)) = position else { return Ok(()) };
        let target = log_id(term, index);
        let mut applied = self.shared.applied.subscribe();
        let reached = applied.wait_for(|applied| applied.is_some_and(|at| at >= target));
        match tokio::time::timeout_at(deadline, reached).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Refusal::Unavailable("the coordination group stopped".into())),
            Err(_) => Err(timed_out()),
        }
    }
}

/// The coordination group as one node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoordStatus {
    /// The leader this node knows.
    pub leader: Option<u64>,
    /// The term.
    pub term: u64,
    /// The last entry known committed.
    pub committed_index: u64,
    /// The last entry applied here.
    pub applied_index: u64,
}

/// How long a request waits at most before looking for the leader again.
const LEADER_PAUSE: Duration = Duration::from_millis(50);

fn position(id: LogId) -> EntryPosition {
    (id.leader_id.term, id.index)
}

fn timed_out() -> Refusal {
    Refusal::Unavailable("etcdserver: request timed out".into())
}

fn refused(error: &dyn std::fmt::Display) -> Refusal {
    Refusal::Unavailable(format!("the request does not encode: {error}"))
}

fn unexpected(answer: &Answer) -> Refusal {
    match answer {
        Answer::Refused(refusal) => refusal.clone(),
        other => Refusal::Unavailable(format!("an answer of another kind: {other:?}")),
    }
}

/// A failed call to the leader: not sent (retriable, nothing changed) or maybe run.
fn call_error(error: &CallError) -> Refusal {
    match error {
        CallError::Unreachable(Unreachable::ConnectionLost)
        | CallError::Timeout
        | CallError::UnexpectedAnswer { .. } => {
            Refusal::Unavailable(format!("the leader: {error}"))
        }
        CallError::Unreachable(_) | CallError::UnknownGroup => Refusal::NotLeader(None),
        CallError::Remote(answer) if answer.code != ErrorCode::Failed => Refusal::NotLeader(None),
        CallError::Remote(_) | CallError::Encode(_) => {
            Refusal::Unavailable(format!("the leader: {error}"))
        }
    }
}

/// The peers' clients of `transport`, by node id.
pub(super) fn clients(transport: &PeerNode) -> BTreeMap<u64, PeerClient> {
    transport.peer_ids().into_iter().map(|peer| (peer, transport.client(peer))).collect()
}
