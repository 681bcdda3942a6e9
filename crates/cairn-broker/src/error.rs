//! Errors of partition and topic operations; cairn-kafka maps each to a Kafka error code.

use cairn_meta::MetaError;

use crate::partition::Offsets;

/// Why a partition operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// The requested offset is outside `[log_start, log_end]` (`OFFSET_OUT_OF_RANGE`).
    #[error("offset out of range {offsets:?}")]
    OffsetOutOfRange {
        /// The partition's offsets at the time.
        offsets: Offsets,
    },
    /// A batch is larger than `max.message.bytes` (`MESSAGE_TOO_LARGE`).
    #[error("batch of {bytes} bytes exceeds max.message.bytes {limit}")]
    MessageTooLarge {
        /// Size of the batch.
        bytes: u32,
        /// The topic's limit.
        limit: u32,
    },
    /// `acks=all` did not become durable in time (`REQUEST_TIMED_OUT`): the outcome is unknown.
    #[error("timed out waiting for durability")]
    Timeout,
    /// The partition is shutting down or was deleted (`NOT_LEADER_OR_FOLLOWER`, retriable).
    #[error("partition closed")]
    Closed,
    /// The log failed an fsync or write and stopped (`KAFKA_STORAGE_ERROR`).
    #[error("partition failed: {0}")]
    Failed(String),
    /// The storage layer refused or failed (invalid batch, disk full, corruption, IO).
    #[error(transparent)]
    Storage(#[from] cairn_storage::Error),
}

/// Why a topic operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The metadata store refused or failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// Opening, closing or deleting a partition's log failed.
    #[error("partition {topic}-{partition}: {source}")]
    Partition {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: u32,
        /// What failed.
        #[source]
        source: PartitionError,
    },
    /// A filesystem operation on the data directory failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
