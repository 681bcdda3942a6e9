//! Lookups every tool built on the client needs: wire topic names and partition offsets.

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::codes::describe;
use crate::{Client, ClientError};

/// ListOffsets' special timestamp for the high watermark (the offset after the last record).
pub const LATEST: i64 = -1;
/// ListOffsets' special timestamp for the log start offset.
pub const EARLIEST: i64 = -2;

/// A wire topic name.
#[must_use]
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Why [`offsets`] failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OffsetsError {
    /// The exchange failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The broker left a partition out of its answer.
    #[error("the broker did not answer ListOffsets for {topic}-{partition}")]
    Missing {
        /// The topic.
        topic: String,
        /// The partition left out.
        partition: i32,
    },
    /// The broker answered a partition with an error code.
    #[error("listing offsets of {topic}-{partition}: {}", describe(*code, None))]
    Partition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The Kafka error code.
        code: i16,
    },
}

/// For each of `partitions` of `topic`, the offset ListOffsets answers for `timestamp`
/// ([`EARLIEST`], [`LATEST`], or ms since the epoch: the first offset with a timestamp at or
/// after it, `-1` if there is none), in the order of `partitions`.
///
/// # Errors
/// A client error, a partition missing from the answer, or an error code for any partition.
pub async fn offsets(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<Vec<i64>, OffsetsError> {
    let wanted = partitions.iter().map(|&index| {
        ListOffsetsPartition::default()
            .with_partition_index(index)
            .with_current_leader_epoch(-1)
            .with_timestamp(timestamp)
    });
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_timeout_ms(client.request_timeout_ms())
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(wanted.collect()),
        ]);
    let response = client.send(&request).await?;
    let answered: Vec<_> = response
        .topics
        .into_iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partitions)
        .collect();
    partitions
        .iter()
        .map(|&partition| {
            let Some(answer) = answered.iter().find(|p| p.partition_index == partition) else {
                return Err(OffsetsError::Missing { topic: topic.to_owned(), partition });
            };
            if answer.error_code != 0 {
                let code = answer.error_code;
                return Err(OffsetsError::Partition { topic: topic.to_owned(), partition, code });
            }
            Ok(answer.offset)
        })
        .collect()
}
