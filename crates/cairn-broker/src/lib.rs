//! cairn-broker: the partitions a node hosts, on top of cairn-storage logs.
//!
//! - [`Broker`] keeps the hosted partitions in step with the [`cairn_meta::MetadataStore`]:
//!   creating, growing, reconfiguring and deleting topics, retention, clean shutdown.
//! - [`Partition`] is one replica: appends under a short mutex, a flusher task that runs the
//!   log's pipelined group commit, the high watermark (the durable offset) on a `watch` channel
//!   for `acks=all` and long polls, and reads of whole batches for fetches.
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

pub use broker::{Broker, BrokerConfig};
pub use error::{BrokerError, PartitionError};
pub use health::{Health, OfflinePartition};
pub use partition::{
    Appended, Durability, Fetched, Located, Offsets, Partition, PartitionConfig, Shared,
};
pub use replica::{Refusal, Replica, Role, Violation};
