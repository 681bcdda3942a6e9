//! Errors of partition and topic operations; cairn-kafka maps each to a Kafka error code.

use cairn_meta::MetaError;

use crate::partition::Offsets;
use crate::replica::{Refusal, Violation};

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
    /// A produced batch has the form of Raft's own entries, a control batch without a
    /// producer (`INVALID_RECORD`): only the group writes those.
    #[error("a control batch without a producer id is reserved for the broker")]
    Reserved,
    /// An idempotent batch whose first sequence does not follow its producer's last one
    /// (`OUT_OF_ORDER_SEQUENCE_NUMBER`): it was not appended.
    #[error("out of order sequence number: the producer's next sequence is {expected}")]
    OutOfOrderSequence {
        /// The sequence the producer should have sent.
        expected: i32,
    },
    /// An idempotent batch of an epoch older than its producer's (`INVALID_PRODUCER_EPOCH`):
    /// a newer instance of the producer fenced it; it was not appended.
    #[error("producer epoch {current} fenced this older one")]
    ProducerFenced {
        /// The producer's epoch.
        current: i16,
    },
    /// `acks=all` was not committed in time (`REQUEST_TIMED_OUT`): the outcome is unknown.
    #[error("timed out waiting for the commit")]
    Timeout,
    /// The partition is shutting down or was deleted (`NOT_LEADER_OR_FOLLOWER`, retriable).
    #[error("partition closed")]
    Closed,
    /// The partition is offline (`KAFKA_STORAGE_ERROR`): its log could not be opened, failed an
    /// fsync or write, or holds committed data that fails verification. Until a restart.
    #[error("partition offline: {0}")]
    Failed(String),
    /// The replica refused: not the leader, another leader epoch, a lapsed lease, offline.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// An operation would have broken a replica invariant; it was not applied and the partition
    /// went offline (`KAFKA_STORAGE_ERROR`) until a restart.
    #[error("replica invariant broken: {0}")]
    Violated(#[from] Violation),
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
    /// A partition of a new topic or a CreatePartitions request could not be made; nothing of
    /// the request was kept (`KAFKA_STORAGE_ERROR`). `cause` names the OS error without
    /// server-side paths (they are logged).
    #[error(
        "creating partition {partition} of topic {topic} failed ({cause}); nothing was created"
    )]
    Create {
        /// Topic name.
        topic: String,
        /// The first partition that could not be made.
        partition: u32,
        /// What failed, without paths.
        cause: String,
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
