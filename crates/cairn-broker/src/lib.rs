//! cairn-broker: the partitions a node hosts, on top of cairn-storage logs.
//!
//! - [`Broker`] keeps the hosted partitions in step with the [`cairn_meta::MetadataStore`]:
//!   creating, growing, reconfiguring and deleting topics, retention, clean shutdown. It is
//!   generic over the [`Volume`] the logs live on (`RealDisk`, or `SimDisk` in tests) and takes
//!   its wall clock from [`BrokerConfig::clock`].
//! - [`Partition`] is one replica and its Raft group (one voter today, the same code path as
//!   many): produce proposes through the group and is answered from its append report
//!   (`acks=1`) or commit callback (`acks=all`); the high watermark (the end of the last applied
//!   entry) on a `watch` channel for long polls; reads of whole batches for fetches, bounded by
//!   it; retention as a snapshot and a purge.
//! - [`Replica`] is the pure state machine a partition carries out: role, leader epoch, log
//!   start and end, flushed and committed offsets; typed [`Refusal`]s, and [`Violation`]s of its
//!   invariants that take the partition offline.
//! - [`epoch_end`] answers OffsetForLeaderEpoch from a log's leader-epoch history, by Kafka's
//!   rules ([`Partition::epoch_end`] adds the epoch and leadership checks).
//! - [`GroupCoordinator`] runs cairn-group's shards on the offsets-topic partitions this node
//!   leads (RFC 0006): consumer groups and their committed offsets.
//! - [`Health`] lists the partitions that are offline (cannot be opened, failed, or found
//!   corrupt) and whether the disk is full, for readiness and metrics.
//!
//! This crate knows no wire protocol; cairn-kafka maps its errors to Kafka error codes.

mod broker;
mod coordinator;
mod epoch_end;
mod error;
mod health;
mod layout;
mod parallel;
mod partition;
mod producer_ids;
mod replica;
mod tracker;
mod volume;

pub use broker::{Broker, BrokerConfig, CleanerConfig, CleanerMetrics};
pub use cairn_group::ShardConfig;
pub use cairn_raft::compaction::Cleaning;
pub use coordinator::{CoordinatorConfig, GroupCoordinator, OFFSETS_TOPIC, partition_for};
pub use epoch_end::{EpochEnd, epoch_end};
pub use error::{BrokerError, PartitionError};
pub use health::{Health, OfflinePartition};
pub use partition::{
    Acks, Appended, Durability, Fetched, Located, Offsets, Partition, PartitionConfig, Proposed,
    RaftSettings, Replicas, Shared,
};
pub use replica::{Refusal, Replica, Role, Violation};
pub use volume::Volume;
