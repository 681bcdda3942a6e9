//! cairn-broker: the partitions a node hosts, on top of cairn-storage logs.
//!
//! - [`Broker`] keeps the hosted partitions in step with the [`cairn_meta::MetadataStore`]:
//!   creating, growing, reconfiguring and deleting topics, retention, clean shutdown. It is
//!   generic over the [`Volume`] the logs live on (`RealDisk`, or `SimDisk` in tests) and takes
//!   its wall clock from [`BrokerConfig::clock`].
//! - [`Partition`] is one replica: appends under a short mutex, a flusher task that runs the
//!   log's pipelined group commit, the high watermark (the commit offset) on a `watch` channel
//!   for `acks=all` and long polls, and reads of whole batches for fetches, bounded by it.
//! - [`Replica`] is the pure state machine a partition carries out: role, leader epoch, log
//!   start and end, flushed and committed offsets; typed [`Refusal`]s, and [`Violation`]s of its
//!   invariants that take the partition offline.
//! - [`Health`] lists the partitions that are offline (cannot be opened, failed, or found
//!   corrupt) and whether the disk is full, for readiness and metrics.
//!
//! This crate knows no wire protocol; cairn-kafka maps its errors to Kafka error codes.

mod broker;
mod error;
mod health;
mod layout;
mod parallel;
mod partition;
mod replica;
mod volume;

pub use broker::{Broker, BrokerConfig};
pub use error::{BrokerError, PartitionError};
pub use health::{Health, OfflinePartition};
pub use partition::{
    Appended, Durability, Fetched, Located, Offsets, Partition, PartitionConfig, Shared,
};
pub use replica::{Refusal, Replica, Role, Violation};
pub use volume::Volume;
