//! Lookups several commands share: a topic's metadata and partition offsets.

use anyhow::{Context, bail};
use cairn_client::Client;
use cairn_client::codes as errors;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    BrokerId, ListOffsetsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

/// ListOffsets' special timestamp for the high watermark (the offset after the last record).
pub const LATEST: i64 = -1;
/// ListOffsets' special timestamp for the log start offset.
pub const EARLIEST: i64 = -2;

/// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// A wire topic name.
#[must_use]
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Metadata for every topic (`None`) or the named ones, never creating any.
///
/// # Errors
/// Any client error, or a top-level error code.
pub async fn metadata(
    client: &mut Client,
    topics: Option<&[&str]>,
) -> anyhow::Result<MetadataResponse> {
    let topics = topics.map(|names| {
        names
            .iter()
            .map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name))))
            .collect()
    });
    let request =
        MetadataRequest::default().with_topics(topics).with_allow_auto_topic_creation(false);
    let response = client.send(&request).await?;
    if response.error_code != 0 {
        bail!("metadata request failed: {}", errors::describe(response.error_code, None));
    }
    Ok(response)
}

/// The metadata of one existing topic, partitions sorted by index.
///
/// # Errors
/// A clear message if the topic does not exist or the broker reports an error for it.
pub async fn topic(client: &mut Client, name: &str) -> anyhow::Result<MetadataResponseTopic> {
    let response = metadata(client, Some(&[name])).await?;
    let Some(mut topic) =
        response.topics.into_iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
    else {
        bail!("the broker did not describe topic {name}");
    };
    match topic.error_code {
        0 => {}
        UNKNOWN_TOPIC_OR_PARTITION => bail!("topic {name} does not exist"),
        code => bail!("topic {name}: {}", errors::describe(code, None)),
    }
    topic.partitions.sort_by_key(|p| p.partition_index);
    Ok(topic)
}

/// For each of `partitions` of `topic`, the offset ListOffsets answers for `timestamp`
/// ([`EARLIEST`], [`LATEST`], or ms since the epoch: the first offset with a timestamp at or
/// after it, `-1` if there is none), in the order of `partitions`.
///
/// # Errors
/// Any client error, or an error code for any partition.
pub async fn offsets(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
    timeout_ms: i32,
) -> anyhow::Result<Vec<i64>> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_timeout_ms(timeout_ms)
        .with_topics(vec![
            ListOffsetsTopic::default().with_name(topic_name(topic)).with_partitions(
                partitions
                    .iter()
                    .map(|&index| {
                        ListOffsetsPartition::default()
                            .with_partition_index(index)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            ),
        ]);
    let response = client.send(&request).await.context("listing offsets")?;
    let answered: Vec<_> = response
        .topics
        .into_iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partitions)
        .collect();
    let mut offsets = Vec::with_capacity(partitions.len());
    for &index in partitions {
        let Some(answer) = answered.iter().find(|p| p.partition_index == index) else {
            bail!("the broker did not answer ListOffsets for {topic}-{index}");
        };
        if answer.error_code != 0 {
            bail!(
                "listing offsets of {topic}-{index}: {}",
                errors::describe(answer.error_code, None)
            );
        }
        offsets.push(answer.offset);
    }
    Ok(offsets)
}
