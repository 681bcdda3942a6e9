//! The few admin exchanges a benchmark needs before it starts: the topic (created if missing),
//! its partitions and id, and partition offsets.

use anyhow::{Context as _, bail};
use cairn_client::codes::describe;
use cairn_client::{Client, Options};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest};
use uuid::Uuid;

use crate::cli::Target;

/// The client id of every connection the benchmark opens.
pub const CLIENT_ID: &str = "cairn-bench";
/// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// Kafka's TOPIC_ALREADY_EXISTS (a concurrent creator won).
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// Connection options for `target`.
#[must_use]
pub fn options(target: &Target) -> Options {
    let mut options = Options::new(target.bootstrap.clone());
    options.request_timeout = std::time::Duration::from_millis(target.request_timeout_ms.max(1));
    options.client_id = CLIENT_ID.to_owned();
    options
}

/// A wire topic name.
pub use cairn_client::lookup::{EARLIEST, LATEST, offsets, topic_name};

/// What the benchmark needs to know about its topic.
#[derive(Clone, Debug)]
pub struct Topic {
    /// Its name.
    pub name: String,
    /// Its id (nil from a broker without topic ids).
    pub id: Uuid,
    /// Its partition indexes, ascending.
    pub partitions: Vec<i32>,
}

/// The topic's metadata, `None` if it does not exist.
///
/// # Errors
/// A client error or another error code.
pub async fn topic(client: &mut Client, name: &str) -> anyhow::Result<Option<Topic>> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(name)))]))
        .with_allow_auto_topic_creation(false);
    let response = client.send(&request).await.context("asking for the topic's metadata")?;
    let Some(topic) =
        response.topics.into_iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
    else {
        bail!("the broker did not describe topic {name}");
    };
    match topic.error_code {
        0 => {}
        UNKNOWN_TOPIC_OR_PARTITION => return Ok(None),
        code => bail!("topic {name}: {}", describe(code, None)),
    }
    let mut partitions: Vec<i32> = topic.partitions.iter().map(|p| p.partition_index).collect();
    partitions.sort_unstable();
    Ok(Some(Topic { name: name.to_owned(), id: topic.topic_id, partitions }))
}

/// The topic, created with `partitions` partitions of `replication_factor` replicas (-1: the
/// broker's default) if it does not exist. An existing topic is used as it is, whatever its
/// partition count and replicas.
///
/// # Errors
/// A client error, or the broker's refusal to create the topic.
pub async fn ensure_topic(
    client: &mut Client,
    name: &str,
    partitions: u32,
    replication_factor: i16,
) -> anyhow::Result<Topic> {
    if let Some(topic) = topic(client, name).await? {
        return Ok(topic);
    }
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(client.request_timeout_ms())
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(
                    i32::try_from(partitions).context("--partitions is too large")?,
                )
                .with_replication_factor(replication_factor),
        ]);
    let response = client.send(&request).await.context("creating the topic")?;
    for result in response.topics {
        if result.error_code != 0 && result.error_code != TOPIC_ALREADY_EXISTS {
            bail!(
                "creating topic {name} failed: {}",
                describe(result.error_code, result.error_message.as_deref())
            );
        }
    }
    match topic(client, name).await? {
        Some(topic) => Ok(topic),
        None => bail!("topic {name} does not exist right after it was created"),
    }
}

/// The topic, which must exist.
///
/// # Errors
/// If it does not exist, or a client error.
pub async fn existing_topic(client: &mut Client, name: &str) -> anyhow::Result<Topic> {
    match topic(client, name).await? {
        Some(topic) => Ok(topic),
        None => bail!("topic {name} does not exist: produce to it first"),
    }
}
