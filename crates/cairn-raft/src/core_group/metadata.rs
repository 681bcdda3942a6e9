//! [`CoreMetadata`]: [`MetadataStore`] served by the consistent core (RFC 0003 §5).
//!
//! Reads come from the state this node applied, published by the state machine as an `Arc`:
//! as cheap as `LocalMetadata`'s. A write is a [`CoreRequest`]. On the leader, under one writer
//! lock, the state is first brought up to the leader's commit (a read index, so a new leader
//! checks against everything committed before it), then the request is checked and built into
//! a [`CoreCommand`] (placement included), encoded as a one-record batch and proposed; the
//! answer comes once the entry is committed **and** applied here. A node that does not lead
//! hands the request to the leader through [`CoreForward`] (the peer transport's `CoreWrite`),
//! then waits until it applied the entry itself, so its own reads see the change.
//!
//! Partition leaders are each assignment's first replica for now, with leader epoch 0: the
//! per-partition group leader cache comes with multi-node partitions.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_meta::{
    ConfigChange, CoreCommand, CoreReply, CoreState, Liveness, LogPosition, MetaError,
    MetadataStore, NewTopic, NodeMeta, PartitionLeader, REPLICATION_FACTOR_DEFAULT, TopicId,
    TopicMeta, TopicName, TopicSpec,
};
use cairn_storage::Disk;
use cairn_types::batch::BatchBuilder;
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{LeaderEpoch, NodeId, ProducerId};
use openraft::async_runtime::WatchReceiver;
use openraft::error::ClientWriteError;
use openraft::{Raft, ReadPolicy};
use tokio::sync::watch;

use super::state_machine::{CoreStateMachine, Shared};
use crate::raft_group::leader_with_lease;
use crate::{CommitResponder, Proposal, TypeConfig};

/// A change of the core's state as a node asks for it; the leader checks it against its state
/// and builds the command.
#[derive(Clone, Debug)]
pub enum CoreRequest {
    /// CreateTopics: replicas placed by the leader, or the client's assignment checked.
    CreateTopic(TopicSpec),
    /// DeleteTopics.
    DeleteTopic(String),
    /// CreatePartitions: raise the topic to `count` partitions.
    CreatePartitions {
        /// The topic.
        name: String,
        /// The new partition count.
        count: u32,
        /// The client's replica lists of the new partitions, or `None`: placed by the leader.
        assignments: Option<Vec<Vec<NodeId>>>,
    },
    /// IncrementalAlterConfigs, all or none.
    AlterConfigs {
        /// The topic.
        name: String,
        /// The changes, in order.
        changes: Vec<ConfigChange>,
    },
    /// The data of a deleted topic is gone.
    FinishDeletion(TopicId),
    /// A command built already (the core's own: cluster id, node registration, import); the
    /// leader checks it.
    Command(CoreCommand),
    /// Nothing to change: the leader's read index, so that the asking node, once it applied
    /// through it, sees every change committed before it asked ([`CoreMetadata::sync`]).
    ReadIndex,
}

/// What the leader answers a forwarded request: the command's answer and where it applied,
/// which the forwarding node waits to apply too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarded {
    /// The applied command's answer.
    pub reply: CoreReply,
    /// The entry's position; for a request that changed nothing and was not proposed, the
    /// leader's read index (`None` before anything was committed).
    pub applied: Option<LogPosition>,
}

/// How a node that does not lead the core hands a write to the leader (RFC 0003 §5
/// `CoreWrite`). The peer transport implements it: it sends the request to `leader`, whose
/// [`CoreMetadata::serve_forwarded`] answers.
pub trait CoreForward: Send + Sync + 'static {
    /// Has `leader` carry out `request`.
    ///
    /// # Errors
    /// The leader's refusal, or [`MetaError::NotController`] if it cannot be reached or no
    /// longer leads (retriable), or [`MetaError::TimedOut`] if the outcome is unknown.
    fn forward(
        &self,
        leader: NodeId,
        request: CoreRequest,
    ) -> impl Future<Output = Result<Forwarded, MetaError>> + Send;
}

/// The forwarding of a node without peers: it is the core's only voter, so it always leads
/// once elected, and a request meeting another leader is refused as retriable.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoForward;

impl CoreForward for NoForward {
    async fn forward(&self, leader: NodeId, _request: CoreRequest) -> Result<Forwarded, MetaError> {
        Err(MetaError::NotController(format!(
            "node {leader} leads the core and this node has no peer transport to reach it"
        )))
    }
}

/// The core as one node sees it ([`CoreMetadata::status`]): plain values, no openraft type.
#[derive(Clone, Debug)]
pub struct CoreStatus {
    /// The node answering.
    pub node: NodeId,
    /// The core's leader as this node knows it.
    pub leader: Option<NodeId>,
    /// The core's term as this node knows it.
    pub term: u64,
    /// The last core entry this node knows committed.
    pub committed_index: Option<u64>,
    /// The last core entry this node applied.
    pub applied_index: Option<u64>,
    /// The core's voters (its membership as this node knows it).
    pub voters: Vec<NodeId>,
    /// The state this node applied: nodes with addresses, racks and liveness.
    pub state: Arc<CoreState>,
}

/// Why a write did not happen here.
enum LocalWrite {
    /// Another node leads (or none is known): forward.
    NotLeader(Option<NodeId>),
    /// Refused or failed.
    Failed(MetaError),
}

impl From<MetaError> for LocalWrite {
    fn from(error: MetaError) -> LocalWrite {
        LocalWrite::Failed(error)
    }
}

/// [`MetadataStore`] on the consistent core (module docs). Made by [`CoreMetadata::open`].
pub struct CoreMetadata<D: Disk + Clone, F: CoreForward = NoForward> {
    /// This node.
    pub(super) node: NodeId,
    pub(super) raft: Raft<TypeConfig, CoreStateMachine<D>>,
    pub(super) shared: Arc<Shared>,
    /// The applied state, as published.
    pub(super) state: watch::Receiver<Arc<CoreState>>,
    /// Serializes the leader's check-and-propose, so each check sees every change before it.
    pub(super) writer: tokio::sync::Mutex<()>,
    pub(super) forward: F,
    pub(super) write_timeout: Duration,
    /// How long a quorum's acknowledgement keeps this node the controller it names (the
    /// longest election timeout, openraft's leader lease).
    pub(super) lease: Duration,
    /// Stops the core's log and tasks ([`CoreMetadata::shutdown`]).
    pub(super) stopper: super::bootstrap::Stopper<D>,
}

impl<D: Disk + Clone, F: CoreForward> CoreMetadata<D, F> {
    /// The state this node applied last.
    #[must_use]
    pub fn state(&self) -> Arc<CoreState> {
        Arc::clone(&self.state.borrow())
    }

    /// The cluster id the core holds (set by its first leader).
    #[must_use]
    pub fn cluster_id(&self) -> Option<[u8; 16]> {
        self.state.borrow().cluster_id()
    }

    /// Waits until a snapshot covers `index` and the log is purged through it, for at most
    /// `timeout`; returns whether that happened (operators and tests watch the snapshots).
    pub async fn wait_purged(&self, index: u64, timeout: Duration) -> bool {
        let covered = |id: Option<&crate::LogId>| id.is_some_and(|id| id.index >= index);
        self.raft
            .wait(Some(timeout))
            .metrics(|m| covered(m.snapshot.as_ref()) && covered(m.purged.as_ref()), "a purge")
            .await
            .is_ok()
    }

    /// Carries out a request forwarded by another node: this node must lead.
    ///
    /// # Errors
    /// The command's refusal; [`MetaError::NotController`] if this node does not lead.
    pub async fn serve_forwarded(&self, request: CoreRequest) -> Result<Forwarded, MetaError> {
        match self.write_here(request).await {
            Ok(forwarded) => Ok(forwarded),
            Err(LocalWrite::NotLeader(leader)) => Err(MetaError::NotController(format!(
                "this node does not lead the core (leader: {leader:?})"
            ))),
            Err(LocalWrite::Failed(error)) => Err(error),
        }
    }

    /// Carries out `request` on the leader, here or forwarded; returns the command's answer once
    /// this node applied it.
    ///
    /// # Errors
    /// The command's refusal, [`MetaError::NotController`] without a reachable leader,
    /// [`MetaError::TimedOut`] when the outcome is unknown.
    pub async fn write(&self, request: CoreRequest) -> Result<CoreReply, MetaError> {
        let leader = match self.write_here(request.clone()).await {
            Ok(done) => return Ok(done.reply),
            Err(LocalWrite::Failed(error)) => return Err(error),
            Err(LocalWrite::NotLeader(leader)) => leader,
        };
        let Some(leader) = leader else {
            return Err(MetaError::NotController("no core leader is known".into()));
        };
        let done = self.forward.forward(leader, request).await?;
        if let Some(applied) = done.applied {
            self.wait_applied(applied).await?;
        }
        Ok(done.reply)
    }

    /// Proposes `command` only if this node leads the core (never forwarded): the core
    /// leader's own changes, such as liveness. Checked against the state as of the leader's
    /// commit first, as every write.
    ///
    /// # Errors
    /// [`MetaError::NotController`] if this node does not lead; the command's refusal;
    /// [`MetaError::TimedOut`] when the outcome is unknown.
    pub async fn propose_here(&self, command: CoreCommand) -> Result<(), MetaError> {
        match self.write_here(CoreRequest::Command(command)).await {
            Ok(_) => Ok(()),
            Err(LocalWrite::NotLeader(leader)) => Err(MetaError::NotController(format!(
                "this node no longer leads the core (leader: {leader:?})"
            ))),
            Err(LocalWrite::Failed(error)) => Err(error),
        }
    }

    /// The core as this node sees it now: its leader and term, this node's commit and apply,
    /// the voters and every registered node (`cairn cluster status`).
    #[must_use]
    pub fn status(&self) -> CoreStatus {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let voters = metrics.membership_config.membership().voter_ids().map(NodeId).collect();
        CoreStatus {
            node: self.node,
            leader: metrics.current_leader.map(NodeId),
            term: metrics.current_term,
            committed_index: metrics.local_committed.map(|id| id.index),
            applied_index: metrics.last_applied.map(|id| id.index),
            voters,
            state: self.state(),
        }
    }

    /// Waits until this node applied every change the core committed before the call: a read
    /// index from the leader (here, or asked for through [`CoreForward`]), then this node's
    /// apply through it. What a read that must not miss a change just made elsewhere calls.
    ///
    /// # Errors
    /// As [`CoreMetadata::write`]: no reachable leader, or no answer in time.
    pub async fn sync(&self) -> Result<(), MetaError> {
        self.write(CoreRequest::ReadIndex).await.map(drop)
    }

    /// The leader's check, proposal and wait (module docs).
    async fn write_here(&self, request: CoreRequest) -> Result<Forwarded, LocalWrite> {
        let leader = self.raft.current_leader().await;
        if leader != Some(self.node.0) {
            return Err(LocalWrite::NotLeader(leader.map(NodeId)));
        }
        // A read index changes nothing: it need not wait behind the writers.
        let _writer = match request {
            CoreRequest::ReadIndex => None,
            _ => Some(self.writer.lock().await),
        };
        let within = tokio::time::timeout(
            self.write_timeout,
            self.raft.ensure_linearizable(ReadPolicy::ReadIndex),
        );
        let read = match within.await {
            Ok(Ok(read)) => *read.log_id(),
            Ok(Err(error)) => {
                let leader = error.forward_to_leader().and_then(|f| f.leader_id).map(NodeId);
                return Err(LocalWrite::NotLeader(leader));
            }
            Err(_) => return Err(timed_out("reading the core's commit").into()),
        };
        let Some(command) = build(&self.state(), request)? else {
            let applied = LogPosition { term: read.leader_id.term, index: read.index };
            return Ok(Forwarded { reply: CoreReply::Done, applied: Some(applied) });
        };
        self.propose(&command).await
    }

    /// Proposes `command` and waits for its apply here.
    async fn propose(&self, command: &CoreCommand) -> Result<Forwarded, LocalWrite> {
        let proposal = Proposal { batch: encode_command(command)?, ticket: Proposal::TICKET_NONE };
        let (responder, complete) = CommitResponder::outcome_only();
        if let Err(fatal) = self.raft.client_write_ff(proposal, Some(responder)).await {
            return Err(MetaError::Storage(format!("the core group stopped: {fatal}")).into());
        }
        let written = match tokio::time::timeout(self.write_timeout, complete).await {
            Ok(Ok(written)) => written,
            Ok(Err(_)) => return Err(timed_out("the core dropped the proposal").into()),
            Err(_) => return Err(timed_out("waiting for the commit and apply").into()),
        };
        let log_id = match written {
            Ok(response) => response.log_id,
            Err(ClientWriteError::ForwardToLeader(forward)) => {
                return Err(LocalWrite::NotLeader(forward.leader_id.map(NodeId)));
            }
            Err(error) => return Err(timed_out(&error.to_string()).into()),
        };
        let applied = LogPosition { term: log_id.leader_id.term, index: log_id.index };
        let reply = self.shared.take_reply(log_id.index).ok_or_else(|| {
            MetaError::Storage(format!("the answer of core entry {} was lost", log_id.index))
        })?;
        Ok(Forwarded { reply: reply?, applied: Some(applied) })
    }

    /// Waits until this node applied `position`, bounded by the write timeout.
    async fn wait_applied(&self, position: LogPosition) -> Result<(), MetaError> {
        let mut state = self.state.clone();
        let reached = state.wait_for(|state| state.applied().is_some_and(|at| at >= position));
        match tokio::time::timeout(self.write_timeout, reached).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(MetaError::Storage("the core's state machine stopped".into())),
            Err(_) => Err(timed_out("applying the leader's change here")),
        }
    }

    /// Runs `request` and expects a topic back.
    async fn topic_write(&self, request: CoreRequest) -> Result<Arc<TopicMeta>, MetaError> {
        match self.write(request).await? {
            CoreReply::Topic(topic) => Ok(topic),
            other => Err(MetaError::Refused(format!("the core answered {other:?}, not a topic"))),
        }
    }
}

fn timed_out(what: &str) -> MetaError {
    MetaError::TimedOut(what.to_owned())
}

/// The command that carries out `request` on `state`, checked; `None` if nothing changes.
fn build(state: &CoreState, request: CoreRequest) -> Result<Option<CoreCommand>, MetaError> {
    let name = |name: &str| TopicName::new(name).map_err(|_| MetaError::UnknownTopic(name.into()));
    let command = match request {
        CoreRequest::CreateTopic(spec) => {
            return CoreCommand::create_topic(state, new_topic(spec)).map(Some);
        }
        CoreRequest::CreatePartitions { name: topic, count, assignments } => {
            let topic = name(&topic)?;
            return CoreCommand::create_partitions(state, topic, count, assignments).map(Some);
        }
        CoreRequest::FinishDeletion(id) => {
            if !state.pending_deletions().iter().any(|topic| topic.id == id) {
                return Ok(None);
            }
            CoreCommand::FinishDeletion { id }
        }
        CoreRequest::DeleteTopic(topic) => CoreCommand::DeleteTopic { name: name(&topic)? },
        CoreRequest::AlterConfigs { name: topic, changes } => {
            CoreCommand::AlterConfigs { name: name(&topic)?, changes }
        }
        CoreRequest::Command(command) => command,
        CoreRequest::ReadIndex => return Ok(None),
    };
    command.check(state)?;
    Ok(Some(command))
}

/// The leader's request for a topic a client asked for: a fresh random id.
fn new_topic(spec: TopicSpec) -> NewTopic {
    NewTopic {
        id: TopicId::random(),
        name: spec.name,
        partitions: spec.partitions,
        replication_factor: (spec.replication_factor != REPLICATION_FACTOR_DEFAULT)
            .then_some(spec.replication_factor),
        assignments: spec.assignments,
        configs: spec.configs,
    }
}

/// A core entry's batch: one record whose value is the encoded command.
fn encode_command(command: &CoreCommand) -> Result<Bytes, MetaError> {
    let value = command
        .encode()
        .map_err(|error| MetaError::Refused(format!("the change does not encode: {error}")))?;
    command_batch(&value).map_err(MetaError::Refused)
}

/// The entry of a command group (the core, the coordination group): one record whose value is
/// the encoded command; refused above the batch limit.
pub(crate) fn command_batch(value: &[u8]) -> Result<Bytes, String> {
    // The timestamp is not part of the command: apply never reads it.
    let batch = BatchBuilder::new(0).record(None, Some(value), &[]).build();
    if batch.len() > BATCH_BYTES_MAX as usize {
        return Err(format!(
            "the change takes {} bytes, above the {BATCH_BYTES_MAX} of one entry",
            batch.len()
        ));
    }
    Ok(Bytes::from(batch))
}

impl<D: Disk + Clone, F: CoreForward> MetadataStore for CoreMetadata<D, F> {
    fn topics(&self) -> Vec<Arc<TopicMeta>> {
        self.state.borrow().topics()
    }

    fn topic(&self, name: &str) -> Option<Arc<TopicMeta>> {
        self.state.borrow().topic(name)
    }

    fn nodes(&self) -> Vec<NodeMeta> {
        let state = self.state.borrow();
        state
            .nodes()
            .filter(|node| node.liveness == Liveness::Alive)
            .map(|n| n.meta.clone())
            .collect()
    }

    /// The core's leader as this node knows it; not this node while it leads without a
    /// quorum's acknowledgement within the lease (cut off: it takes no write, and a client
    /// told to send it admin requests would keep coming back to it).
    fn controller(&self) -> Option<NodeId> {
        leader_with_lease(&self.raft.metrics().borrow_watched(), self.lease).map(NodeId)
    }

    fn generation(&self) -> u64 {
        generation(&self.state.borrow())
    }

    async fn changed_since(&self, seen: u64) {
        let mut state = self.state.clone();
        // An error: the core stopped, and nothing changes any more.
        if state.wait_for(|state| generation(state) > seen).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    async fn sync(&self) -> Result<(), MetaError> {
        CoreMetadata::sync(self).await
    }

    fn leader(&self, topic: &str, partition: u32) -> Option<PartitionLeader> {
        let state = self.state.borrow();
        let assignment = state.assignment(topic, partition)?;
        Some(PartitionLeader {
            leader: assignment.preferred_leader(),
            replicas: assignment.replicas.clone(),
            leader_epoch: LeaderEpoch(0),
            group: assignment.group.0,
        })
    }

    async fn create_topic(&self, spec: TopicSpec) -> Result<Arc<TopicMeta>, MetaError> {
        self.topic_write(CoreRequest::CreateTopic(spec)).await
    }

    async fn delete_topic(&self, name: &str) -> Result<Arc<TopicMeta>, MetaError> {
        self.topic_write(CoreRequest::DeleteTopic(name.to_owned())).await
    }

    fn check_create_topic(&self, spec: &TopicSpec) -> Result<Arc<TopicMeta>, MetaError> {
        let (_, topic) = CoreCommand::plan_topic(&self.state(), new_topic(spec.clone()))?;
        Ok(topic)
    }

    async fn create_partitions(
        &self,
        name: &str,
        count: u32,
        assignments: Option<Vec<Vec<NodeId>>>,
    ) -> Result<Arc<TopicMeta>, MetaError> {
        let request = CoreRequest::CreatePartitions { name: name.to_owned(), count, assignments };
        self.topic_write(request).await
    }

    fn check_create_partitions(
        &self,
        name: &str,
        count: u32,
        assignments: Option<&[Vec<NodeId>]>,
    ) -> Result<Arc<TopicMeta>, MetaError> {
        let state = self.state();
        let topic = TopicName::new(name).map_err(|_| MetaError::UnknownTopic(name.into()))?;
        CoreCommand::create_partitions(&state, topic, count, assignments.map(<[_]>::to_vec))?;
        state.check_create_partitions(name, count)
    }

    fn pending_deletions(&self) -> Vec<Arc<TopicMeta>> {
        self.state.borrow().pending_deletions()
    }

    async fn finish_deletion(&self, id: TopicId) -> Result<(), MetaError> {
        self.write(CoreRequest::FinishDeletion(id)).await.map(drop)
    }

    async fn alter_configs(
        &self,
        name: &str,
        changes: Vec<ConfigChange>,
    ) -> Result<Arc<TopicMeta>, MetaError> {
        self.topic_write(CoreRequest::AlterConfigs { name: name.to_owned(), changes }).await
    }

    async fn allocate_producer_ids(&self) -> Result<(ProducerId, i64), MetaError> {
        let command = CoreCommand::AllocateProducerIds { node: self.node };
        match self.write(CoreRequest::Command(command)).await? {
            CoreReply::ProducerIds { first, count } => Ok((first, count)),
            other => Err(MetaError::Refused(format!("the core answered {other:?}, not ids"))),
        }
    }
}

/// The generation of an applied core state: one past its applied index.
fn generation(state: &CoreState) -> u64 {
    state.applied().map_or(0, |applied| applied.index + 1)
}
