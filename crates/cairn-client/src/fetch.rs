//! Consumer Fetch requests: full fetches (no fetch session) of one topic's partitions.

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};
use uuid::Uuid;

use crate::lookup::topic_name;

/// The limits of a consumer's fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes one partition contributes to a response (`max.partition.fetch.bytes`).
    pub partition_bytes: i32,
    /// Most bytes of a response (`fetch.max.bytes`).
    pub bytes: i32,
    /// Longest the broker waits for data (`fetch.max.wait.ms`).
    pub max_wait_ms: i32,
}

/// A consumer's Fetch of topic `name`'s `partitions` (index, next offset), answered as soon as
/// there is a byte (`min_bytes` 1), without a fetch session; the topic goes by `topic_id` if
/// given (Fetch v13 and later), else by name. `None` when there are no partitions to fetch.
#[must_use]
pub fn request(
    name: &str,
    topic_id: Option<Uuid>,
    partitions: impl IntoIterator<Item = (i32, i64)>,
    limits: Limits,
) -> Option<FetchRequest> {
    let partitions: Vec<FetchPartition> = partitions
        .into_iter()
        .map(|(partition, next)| {
            FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(next)
                .with_partition_max_bytes(limits.partition_bytes)
        })
        .collect();
    if partitions.is_empty() {
        return None;
    }
    let mut topic = FetchTopic::default().with_partitions(partitions);
    match topic_id {
        Some(id) => topic.topic_id = id,
        None => topic.topic = topic_name(name),
    }
    Some(
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(limits.max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(limits.bytes)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![topic]),
    )
}
