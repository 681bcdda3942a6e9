//! cairn-group: the group coordinator as a pure state machine (RFC 0006).
//!
//! A [`Shard`] holds every group of one partition of the offsets topic: Kafka's classic
//! protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), the consumer protocol
//! (ConsumerGroupHeartbeat, RFC 0008), committed offsets, and the listing, describing and
//! deleting of groups. It reads no clock and does no IO: each call
//! takes the time and returns [`Effects`] (answers for waiting requests, records to append),
//! and the runtime in `cairn-broker` appends the records to the partition and reports back
//! with [`Shard::written`] or [`Shard::write_failed`]. A new leader of the partition replays
//! its records ([`Shard::replay`]), in Kafka's own format ([`records`]).

mod api;
pub mod assignor;
mod consumer;
mod group;
pub mod reconcile;
pub mod records;
mod shard;

pub use api::{
    CommitRequest, CommitResponse, ConsumerGroupDescription, ConsumerMemberDescription, Effects,
    ErrorCode, FetchedOffset, GroupDescription, GroupListing, HeartbeatRequest, HeartbeatResponse,
    JoinRequest, JoinResponse, JoinedMember, MemberDescription, MemberRef, OffsetToCommit, Reply,
    SyncRequest, SyncResponse, TopicInfo, Topics, Waiter, Write,
};
pub use group::State;

pub use shard::{Replayed, Shard, ShardConfig};
