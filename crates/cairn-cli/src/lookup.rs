//! Lookups several commands share: a topic's metadata and partition offsets.

use anyhow::bail;
use cairn_client::Client;
use cairn_client::codes as errors;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

pub use cairn_client::lookup::{EARLIEST, LATEST, offsets, topic_name};

/// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

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
