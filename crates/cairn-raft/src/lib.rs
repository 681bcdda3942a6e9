//! cairn's facade over openraft: every openraft type stays inside this crate.
//!
//! - [`TypeConfig`]: the one openraft type configuration of every group (partitions and the
//!   consistent core): `NodeId = u64`, `Term = u64` under the standard leader id (one leader per
//!   term, so the term is the Kafka leader epoch: [`epoch`]), `Node = EmptyNode` (addresses come
//!   from the core), `R = ()`, `D =` [`Proposal`], `Entry =` [`RaftEntry`], and a write's
//!   responder reports its commit (`on_commit`, what `acks=all` waits for) before its apply.
//! - [`Timers`]: a group's Raft timers, and the openraft configuration they make (pre-vote on,
//!   openraft's own snapshots and purges off: retention decides both).
//! - [`RaftEntry`]: a Raft entry whose stored form is one Kafka record batch; [`codec`] turns one
//!   into the other. Raft's own entries (blank, membership) are control batches that Kafka
//!   consumers skip.
//!
//! - [`GroupLog`], [`LogStore`], [`LogReader`], [`PartitionStateMachine`]: a partition's Raft
//!   log storage and state machine over its cairn-storage log, vote and snapshot files; a
//!   partition owns a [`RaftGroup`] over them. [`GroupCommit`]: the log's group commit.
//! - [`RaftGroup`]: a partition's openraft group, the one path of produce, commit and
//!   retention (one voter today: it elects itself at every start, a new term each time).
//!
//! - [`peer`]: the node-to-node transport (frames, connections, the router of requests to
//!   groups). [`Network`] / [`GroupNetwork`] / [`PeerNetwork`]: openraft's network over it
//!   (votes and pre-votes on the control lane, pipelined appends on the data lane, heartbeats
//!   batched per peer); [`RaftHandler`]: a group's receiving side, registered in the router.
//!
//! - [`runtime`]: openraft's runtime ([`runtime::CairnRuntime`]: tokio with seedable jitter),
//!   blocking work, and [`runtime::Deterministic`], which the simulator enters so that a seed
//!   replays one history.
//!
//! - [`compaction`]: carrying out the log compaction rounds a partition applied, and planning
//!   a leader's next one (RFC 0007).
//!
//! - [`core_group`]: the consistent core as an openraft group, serving cairn-meta's
//!   `MetadataStore` ([`core_group::CoreMetadata`]).
//!
//! The design is `docs/rfcs/0003-replication.md` §3 and §6; how a group's messages travel is
//! `docs/internals/replication.md`.

pub mod codec;
pub mod compaction;
mod config;
pub mod coord_group;
pub mod core_group;
mod entry;
pub mod epoch;
mod flush;
mod group;
mod handler;
mod heartbeat;
mod membership;
mod network;
mod no_peers;
pub mod peer;
mod pipeline;
mod quiesce;
mod raft_group;
mod record;
mod responder;
mod restore;
pub mod runtime;
mod state_machine;
mod store;
mod wire;

pub use codec::CodecError;
pub use config::{Timers, TimersError};
pub use entry::{Proposal, RaftEntry};
pub use epoch::TermError;
pub use flush::{FlushError, FlushSlot, FlushTarget, GroupCommit, Round, flush_round};
pub use group::{GroupLog, StoreError};
pub use handler::RaftHandler;
pub use membership::{Members, MembersError};
pub use network::{GroupNetwork, Network, PeerNetwork};
pub use no_peers::NoPeers;
pub use quiesce::{GroupTimers, GroupView, QUIESCE_AFTER, Quiescence, QuietHandle};
pub use raft_group::{
    GroupError, GroupPeers, GroupRole, GroupState, Pending, Placement, ProposeError, RaftGroup,
    RoleWatch, leader_with_lease,
};
pub use record::RecordError;
pub use responder::CommitResponder;
pub use state_machine::{PartitionSnapshot, PartitionStateMachine, SnapshotBuilder};
pub use store::{AppendSink, LogReader, LogStore, ProposalAppended};
pub use wire::WireSnapshot;

/// A Raft term: the Kafka partition leader epoch of the entries its leader appends.
pub type Term = u64;

/// A Raft node id: the cluster member's [`cairn_types::NodeId`].
pub type RaftNodeId = u64;

/// The leader id of a term: its term and the node voted for (openraft's standard leader id, one
/// leader per term).
pub type LeaderId = openraft::impls::leader_id_std::LeaderId<Term, RaftNodeId>;

/// The part of a [`LeaderId`] that a log id carries once committed: the term alone.
pub type CommittedLeaderId = openraft::vote::leader_id_std::CommittedLeaderId<Term>;

/// A Raft log id: the term of the leader that proposed an entry, and its index.
pub type LogId = openraft::LogId<CommittedLeaderId>;

/// A Raft membership over node ids alone (addresses come from the consistent core).
pub(crate) type Membership = openraft::Membership<RaftNodeId, openraft::EmptyNode>;

/// The payload of a [`RaftEntry`]: blank, a [`Proposal`], or a membership.
pub(crate) type Payload = openraft::EntryPayload<Proposal, RaftNodeId, openraft::EmptyNode>;

/// The openraft type configuration of every cairn group (RFC 0003 §3 "Type config"), written
/// out because openraft's `declare_raft_types!` cannot name the responder.
#[derive(Debug, Clone, Copy, Default, Eq, PartialEq, Ord, PartialOrd)]
pub struct TypeConfig {}

impl openraft::RaftTypeConfig for TypeConfig {
    type D = Proposal;
    type R = ();
    type NodeId = RaftNodeId;
    type Node = openraft::EmptyNode;
    type Term = Term;
    type LeaderId = LeaderId;
    type Vote = openraft::impls::Vote<LeaderId>;
    type Payload = Payload;
    type Entry = RaftEntry;
    type Responder<T>
        = CommitResponder<T>
    where
        T: openraft::OptionalSend + 'static;
    type Batch<T>
        = openraft::impls::InlineBatch<T>
    where
        T: openraft::OptionalSend + 'static;
    type AsyncRuntime = runtime::CairnRuntime;
    type ErrorSource = openraft::impls::BoxedErrorSource;
}
