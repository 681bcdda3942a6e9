//! The one place cairn errors become Kafka error codes.

use cairn_broker::{BrokerError, PartitionError};
use cairn_meta::MetaError;
use kafka_protocol::ResponseError;

/// Kafka's "no error".
pub(crate) const NONE: i16 = 0;

/// The Kafka error code for a partition operation's failure.
pub(crate) fn partition_code(error: &PartitionError) -> i16 {
    let code = match error {
        PartitionError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        PartitionError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        PartitionError::Timeout => ResponseError::RequestTimedOut,
        PartitionError::Closed => ResponseError::NotLeaderOrFollower,
        PartitionError::Failed(_) => ResponseError::KafkaStorageError,
        PartitionError::Storage(error) => return storage_code(error),
        _ => ResponseError::UnknownServerError,
    };
    code.code()
}

/// The Kafka error code for a storage failure.
pub(crate) fn storage_code(error: &cairn_storage::Error) -> i16 {
    use cairn_storage::Error;
    let code = match error {
        Error::InvalidBatch { .. } => ResponseError::CorruptMessage,
        Error::AppendSize { .. } => ResponseError::InvalidRecord,
        Error::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        Error::StaleEpoch { .. } => ResponseError::FencedLeaderEpoch,
        // Disk full, IO failure, poisoned log, corruption: the replica cannot serve this.
        _ => ResponseError::KafkaStorageError,
    };
    code.code()
}

/// The Kafka error code for a metadata operation's failure.
pub(crate) fn meta_code(error: &MetaError) -> i16 {
    let code = match error {
        MetaError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        MetaError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        MetaError::InvalidPartitions { .. } => ResponseError::InvalidPartitions,
        MetaError::InvalidReplicationFactor { .. } => ResponseError::InvalidReplicationFactor,
        MetaError::Config(_) => ResponseError::InvalidConfig,
        MetaError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        MetaError::TooManyTopics { .. } => ResponseError::PolicyViolation,
        MetaError::Storage(_) => ResponseError::KafkaStorageError,
        _ => ResponseError::UnknownServerError,
    };
    code.code()
}

/// The Kafka error code for a topic operation's failure.
pub(crate) fn broker_code(error: &BrokerError) -> i16 {
    match error {
        BrokerError::Meta(error) => meta_code(error),
        BrokerError::Partition { source, .. } => partition_code(source),
        _ => ResponseError::KafkaStorageError.code(),
    }
}
