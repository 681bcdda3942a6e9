//! The one place cairn errors become Kafka error codes, and the messages clients see.
//!
//! Every match here is exhaustive (cairn's error enums are not `#[non_exhaustive]`), so a new
//! error variant does not compile until it is given a code and a message. Messages sent to
//! clients never carry server-side details (paths, OS errors): those stay in the node's log,
//! where the handler that answers with the error writes the full error.

use cairn_broker::{BrokerError, PartitionError, Refusal};
use cairn_meta::MetaError;
use kafka_protocol::ResponseError;

/// Kafka's "no error".
pub(crate) const NONE: i16 = 0;

/// The Kafka error code for a partition operation's failure.
pub(crate) fn partition_code(error: &PartitionError) -> i16 {
    let code = match error {
        PartitionError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        PartitionError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        PartitionError::Reserved => ResponseError::InvalidRecord,
        PartitionError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        PartitionError::ProducerFenced { .. } => ResponseError::InvalidProducerEpoch,
        PartitionError::Timeout => ResponseError::RequestTimedOut,
        PartitionError::Closed => ResponseError::NotLeaderOrFollower,
        PartitionError::Failed(_) | PartitionError::Violated(_) => ResponseError::KafkaStorageError,
        PartitionError::Refused(refusal) => refusal_code(*refusal),
        PartitionError::Storage(error) => return storage_code(error),
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
        Error::NoSpace { .. } | Error::Io { .. } | Error::Poisoned | Error::Corruption { .. } => {
            ResponseError::KafkaStorageError
        }
        // The broker's own bound or log configuration refused the operation, or the Raft layer's
        // view of the log disagrees with it (a follower's log diverged, an index outside it):
        // the replica cannot serve it either.
        Error::BeyondBound { .. }
        | Error::NotBatchBoundary { .. }
        | Error::SnapshotSize { .. }
        | Error::Config(_)
        | Error::Diverged { .. }
        | Error::IndexOutOfRange { .. }
        | Error::Rewrite(_) => ResponseError::KafkaStorageError,
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
        MetaError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        MetaError::BrokerNotAvailable(_) => ResponseError::BrokerNotAvailable,
        MetaError::Refused(_) => ResponseError::UnknownServerError,
        MetaError::Config(_) => ResponseError::InvalidConfig,
        MetaError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        MetaError::TooManyTopics { .. } => ResponseError::PolicyViolation,
        MetaError::NotController(_) => ResponseError::NotController,
        MetaError::TimedOut(_) => ResponseError::RequestTimedOut,
        MetaError::Storage(_) => ResponseError::KafkaStorageError,
    };
    code.code()
}

/// The Kafka error code of a replica's refusal (RFC 0003 §4).
fn refusal_code(refusal: Refusal) -> ResponseError {
    match refusal {
        Refusal::NotLeader { .. } => ResponseError::NotLeaderOrFollower,
        Refusal::FencedEpoch => ResponseError::FencedLeaderEpoch,
        Refusal::UnknownEpoch => ResponseError::UnknownLeaderEpoch,
        Refusal::LeaseLapsed => ResponseError::NotEnoughReplicas,
        Refusal::Offline => ResponseError::KafkaStorageError,
    }
}

/// The Kafka error code for a topic operation's failure.
pub(crate) fn broker_code(error: &BrokerError) -> i16 {
    match error {
        BrokerError::Meta(error) => meta_code(error),
        BrokerError::Partition { source, .. } => partition_code(source),
        BrokerError::Create { .. } | BrokerError::Io { .. } => {
            ResponseError::KafkaStorageError.code()
        }
    }
}

/// What a client is told about a partition operation's failure.
pub(crate) fn partition_message(error: &PartitionError) -> String {
    match error {
        PartitionError::OffsetOutOfRange { .. }
        | PartitionError::MessageTooLarge { .. }
        | PartitionError::Reserved
        | PartitionError::OutOfOrderSequence { .. }
        | PartitionError::ProducerFenced { .. }
        | PartitionError::Timeout
        | PartitionError::Closed
        | PartitionError::Refused(_) => error.to_string(),
        // The reason is a storage error's text, with its paths.
        PartitionError::Failed(_) => "the partition's log failed and stopped".to_owned(),
        PartitionError::Violated(_) => "the partition stopped on a broken invariant".to_owned(),
        PartitionError::Storage(error) => storage_message(error),
    }
}

/// What a client is told about a storage failure.
fn storage_message(error: &cairn_storage::Error) -> String {
    use cairn_storage::Error;
    match error {
        Error::InvalidBatch { .. }
        | Error::AppendSize { .. }
        | Error::Poisoned
        | Error::OffsetOutOfRange { .. }
        | Error::BeyondBound { .. }
        | Error::NotBatchBoundary { .. }
        | Error::StaleEpoch { .. }
        | Error::SnapshotSize { .. }
        | Error::Diverged { .. }
        | Error::IndexOutOfRange { .. }
        | Error::Rewrite(_)
        | Error::Config(_) => error.to_string(),
        Error::NoSpace { .. } => "no space left on the broker's disk".to_owned(),
        Error::Io { op, .. } => format!("{op} failed on the broker's disk"),
        Error::Corruption { .. } => "the partition's log is corrupt".to_owned(),
    }
}

/// What a client is told about a metadata operation's failure.
fn meta_message(error: &MetaError) -> String {
    match error {
        MetaError::TopicExists(_)
        | MetaError::UnknownTopic(_)
        | MetaError::InvalidTopic(_)
        | MetaError::TooManyTopics { .. }
        | MetaError::InvalidPartitions { .. }
        | MetaError::InvalidReplicationFactor { .. }
        | MetaError::InvalidReplicaAssignment(_)
        | MetaError::BrokerNotAvailable(_)
        | MetaError::Refused(_)
        | MetaError::NotController(_)
        | MetaError::TimedOut(_)
        | MetaError::Config(_) => error.to_string(),
        // Carries the metadata file's path and the OS error.
        MetaError::Storage(_) => "the broker's metadata storage failed".to_owned(),
    }
}

/// What a client is told about a topic operation's failure.
pub(crate) fn broker_message(error: &BrokerError) -> String {
    match error {
        BrokerError::Meta(error) => meta_message(error),
        BrokerError::Partition { topic, partition, source } => {
            format!("partition {topic}-{partition}: {}", partition_message(source))
        }
        // Written for clients: the cause without paths.
        BrokerError::Create { .. } => error.to_string(),
        BrokerError::Io { op, .. } => format!("{op} failed in the broker's data directory"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn client_messages_carry_no_server_paths() {
        let path = PathBuf::from("/srv/cairn-data/topics/orders-0");
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let storage = [
            cairn_storage::Error::NoSpace { path: path.clone() },
            cairn_storage::Error::Io { op: "fsync", path: path.clone(), source: io() },
            cairn_storage::Error::Corruption {
                path: path.clone(),
                position: 7,
                reason: "crc".into(),
            },
        ];
        let mut errors: Vec<BrokerError> = storage
            .into_iter()
            .map(|source| BrokerError::Partition {
                topic: "orders".into(),
                partition: 0,
                source: PartitionError::Storage(source),
            })
            .collect();
        errors.push(BrokerError::Io { op: "create", path: path.clone(), source: io() });
        errors.push(BrokerError::Meta(MetaError::Storage(format!("write {}", path.display()))));
        errors.push(BrokerError::Partition {
            topic: "orders".into(),
            partition: 0,
            source: PartitionError::Failed(format!("fsync failed on {}", path.display())),
        });
        for error in &errors {
            assert!(error.to_string().contains("/srv/cairn-data"), "the log keeps the path");
            let message = broker_message(error);
            assert!(!message.contains("/srv"), "{message:?} leaks the path of {error}");
        }
    }
}
