//! `cairn topic create|list|describe|alter|delete`: topic administration over CreateTopics,
//! Metadata, ListOffsets, DescribeConfigs, IncrementalAlterConfigs, CreatePartitions and
//! DeleteTopics.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use cairn_client::Client;
use cairn_client::codes as errors;
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::lookup::{self, EARLIEST, LATEST, topic_name};
use crate::output;

/// Kafka's config resource type for topics.
const RESOURCE_TOPIC: i8 = 2;
/// Kafka's config source for a value set on the topic itself (DescribeConfigs).
const SOURCE_TOPIC: i8 = 1;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// Topic administration.
#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List the topics, one name per line.
    List,
    /// Show a topic's partitions (leaders, replicas, earliest and latest offsets) and configs.
    Describe {
        /// The topic.
        name: String,
    },
    /// Change a topic's configs (--set, --delete) or grow its partitions (--partitions).
    Alter(AlterArgs),
    /// Delete a topic and its data.
    Delete {
        /// The topic.
        name: String,
    },
}

/// `cairn topic create`.
#[derive(Args)]
pub struct CreateArgs {
    /// The topic.
    name: String,
    /// Partitions [default: the broker's default_partitions].
    #[arg(long, value_name = "N")]
    partitions: Option<u32>,
    /// Replicas of each partition [default: the broker's default].
    #[arg(long, value_name = "R")]
    replication_factor: Option<u16>,
    /// A topic config, e.g. retention.ms=86400000; repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    configs: Vec<(String, String)>,
}

/// `cairn topic alter`.
#[derive(Args)]
pub struct AlterArgs {
    /// The topic.
    name: String,
    /// Set a config, e.g. retention.ms=3600000; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    set: Vec<(String, String)>,
    /// Remove a config override (back to the default); repeatable.
    #[arg(long = "delete", value_name = "KEY")]
    delete: Vec<String>,
    /// Grow the topic to this many partitions.
    #[arg(long, value_name = "N")]
    partitions: Option<u32>,
}

/// Parses `KEY=VALUE` (the value may contain `=`).
///
/// # Errors
/// A message if there is no `=` or the key is empty.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// Runs a topic command.
///
/// # Errors
/// A clear message for any failure.
pub async fn run(client: &mut Client, command: TopicCommand) -> anyhow::Result<()> {
    match command {
        TopicCommand::Create(args) => create(client, args).await,
        TopicCommand::List => list(client).await,
        TopicCommand::Describe { name } => describe(client, &name).await,
        TopicCommand::Alter(args) => alter(client, args).await,
        TopicCommand::Delete { name } => delete(client, &name).await,
    }
}

async fn create(client: &mut Client, args: CreateArgs) -> anyhow::Result<()> {
    let partitions = match args.partitions {
        None => -1,
        Some(n) => i32::try_from(n).context("--partitions is too large")?,
    };
    let replication_factor = match args.replication_factor {
        None => -1,
        Some(r) => i16::try_from(r).context("--replication-factor is too large")?,
    };
    let configs = args
        .configs
        .iter()
        .map(|(key, value)| {
            CreatableTopicConfig::default().with_name(text(key)).with_value(Some(text(value)))
        })
        .collect();
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(client.request_timeout_ms())
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic_name(&args.name))
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)
                .with_configs(configs),
        ]);
    let response = client.send(&request).await?;
    let Some(result) = response.topics.into_iter().find(|t| t.name.0.as_str() == args.name) else {
        bail!("the broker did not answer for topic {}", args.name);
    };
    if result.error_code != 0 {
        bail!(
            "creating topic {} failed: {}",
            args.name,
            errors::describe(result.error_code, result.error_message.as_deref())
        );
    }
    // The partition count is in the response from v5; older versions echo what was asked.
    let partitions = if result.num_partitions > 0 { result.num_partitions } else { partitions };
    let report = if partitions == 1 {
        format!("created topic {} with 1 partition\n", args.name)
    } else if partitions > 0 {
        format!("created topic {} with {partitions} partitions\n", args.name)
    } else {
        format!("created topic {}\n", args.name)
    };
    output::print(&report)
}

async fn list(client: &mut Client) -> anyhow::Result<()> {
    let response = lookup::metadata(client, None).await?;
    let mut names: Vec<String> = response
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| t.name.as_ref().map(|n| n.0.as_str().to_owned()))
        .collect();
    names.sort();
    let mut out = String::new();
    for name in names {
        let _ = writeln!(out, "{name}");
    }
    output::print(&out)
}

/// Each partition's offset for `timestamp`, or the error code its lookup answered (an offline
/// partition: KAFKA_STORAGE_ERROR), so one partition does not hide the others. One request;
/// one per partition only if some partition answered an error.
async fn offsets_each(
    client: &mut Client,
    name: &str,
    indexes: &[i32],
    timestamp: i64,
) -> anyhow::Result<Vec<Result<i64, i16>>> {
    match lookup::offsets(client, name, indexes, timestamp).await {
        Ok(offsets) => return Ok(offsets.into_iter().map(Ok).collect()),
        Err(cairn_client::lookup::OffsetsError::Partition { .. }) => {}
        Err(other) => return Err(other.into()),
    }
    let mut each = Vec::with_capacity(indexes.len());
    for &index in indexes {
        each.push(match lookup::offsets(client, name, &[index], timestamp).await {
            Ok(offsets) => offsets
                .first()
                .copied()
                .ok_or(kafka_protocol::ResponseError::UnknownServerError.code()),
            Err(cairn_client::lookup::OffsetsError::Partition { code, .. }) => Err(code),
            Err(other) => return Err(other.into()),
        });
    }
    Ok(each)
}

async fn describe(client: &mut Client, name: &str) -> anyhow::Result<()> {
    let topic = lookup::topic(client, name).await?;
    let indexes: Vec<i32> = topic.partitions.iter().map(|p| p.partition_index).collect();
    let earliest = offsets_each(client, name, &indexes, EARLIEST).await?;
    let latest = offsets_each(client, name, &indexes, LATEST).await?;
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(text(name))
            .with_configuration_keys(None),
    ]);
    let response = client.send(&request).await?;
    let Some(result) = response.results.into_iter().next() else {
        bail!("the broker did not describe the configs of topic {name}");
    };
    if result.error_code != 0 {
        bail!(
            "describing the configs of topic {name} failed: {}",
            errors::describe(result.error_code, result.error_message.as_deref())
        );
    }

    let replication = topic.partitions.first().map_or(0, |p| p.replica_nodes.len());
    let mut out = String::new();
    let _ = writeln!(out, "topic: {name}");
    if !topic.topic_id.is_nil() {
        let _ = writeln!(out, "id: {}", topic.topic_id);
    }
    let _ = writeln!(out, "partitions: {}", topic.partitions.len());
    let _ = writeln!(out, "replication factor: {replication}");
    let _ = writeln!(out);
    let ids = |nodes: &[kafka_protocol::messages::BrokerId]| match nodes {
        [] => "-".to_owned(),
        nodes => nodes.iter().map(|n| n.0.to_string()).collect::<Vec<_>>().join(","),
    };
    let mut rows = vec![
        [
            "partition",
            "leader",
            "epoch",
            "replicas",
            "isr",
            "offline",
            "earliest",
            "latest",
            "error",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for ((partition, earliest), latest) in topic.partitions.iter().zip(&earliest).zip(&latest) {
        // An offline partition answers its offsets with KAFKA_STORAGE_ERROR.
        let code = [partition.error_code, earliest.err().unwrap_or(0), latest.err().unwrap_or(0)]
            .into_iter()
            .find(|code| *code != 0);
        let error = code.map_or_else(|| "-".to_owned(), |code| errors::describe(code, None));
        let cell =
            |offset: &Result<i64, i16>| offset.map_or_else(|_| "-".to_owned(), |o| o.to_string());
        let (earliest, latest) = (cell(earliest), cell(latest));
        rows.push(vec![
            partition.partition_index.to_string(),
            partition.leader_id.0.to_string(),
            partition.leader_epoch.to_string(),
            ids(&partition.replica_nodes),
            ids(&partition.isr_nodes),
            ids(&partition.offline_replicas),
            earliest.to_string(),
            latest.to_string(),
            error,
        ]);
    }
    output::table(&mut out, &rows);
    let _ = writeln!(out);
    let _ = writeln!(out, "configs (* = set on the topic, others are defaults):");
    let mut configs = result.configs;
    configs.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    for config in configs {
        let marker = if config.config_source == SOURCE_TOPIC { '*' } else { ' ' };
        let value = match (&config.value, config.is_sensitive) {
            (_, true) => "(sensitive)",
            (Some(value), false) => value.as_str(),
            (None, false) => "(null)",
        };
        let _ = writeln!(out, "{marker} {}={value}", config.name.as_str());
    }
    output::print(&out)
}

async fn alter(client: &mut Client, args: AlterArgs) -> anyhow::Result<()> {
    if args.set.is_empty() && args.delete.is_empty() && args.partitions.is_none() {
        bail!("nothing to change: give --set KEY=VALUE, --delete KEY or --partitions N");
    }
    let name = &args.name;
    if !args.set.is_empty() || !args.delete.is_empty() {
        let mut configs: Vec<AlterableConfig> = args
            .set
            .iter()
            .map(|(key, value)| {
                AlterableConfig::default()
                    .with_name(text(key))
                    .with_config_operation(OP_SET)
                    .with_value(Some(text(value)))
            })
            .collect();
        configs.extend(args.delete.iter().map(|key| {
            AlterableConfig::default().with_name(text(key)).with_config_operation(OP_DELETE)
        }));
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(text(name))
                .with_configs(configs),
        ]);
        let response = client.send(&request).await?;
        let Some(result) = response.responses.into_iter().next() else {
            bail!("the broker did not answer for topic {name}");
        };
        if result.error_code != 0 {
            bail!(
                "changing the configs of topic {name} failed: {}",
                errors::describe(result.error_code, result.error_message.as_deref())
            );
        }
        let mut changes: Vec<String> = args.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        changes.extend(args.delete.iter().map(|k| format!("{k} (back to default)")));
        output::print(&format!("updated topic {name}: {}\n", changes.join(", ")))?;
    }
    if let Some(count) = args.partitions {
        let count = i32::try_from(count).context("--partitions is too large")?;
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(client.request_timeout_ms())
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(topic_name(name))
                    .with_count(count)
                    .with_assignments(None),
            ]);
        let response = client.send(&request).await?;
        let Some(result) = response.results.into_iter().next() else {
            bail!("the broker did not answer for topic {name}");
        };
        if result.error_code != 0 {
            bail!(
                "growing topic {name} to {count} partitions failed: {}",
                errors::describe(result.error_code, result.error_message.as_deref())
            );
        }
        output::print(&format!("topic {name} now has {count} partitions\n"))?;
    }
    Ok(())
}

async fn delete(client: &mut Client, name: &str) -> anyhow::Result<()> {
    // Names moved into `topics` (next to ids) in v6.
    let mut request = DeleteTopicsRequest::default().with_timeout_ms(client.request_timeout_ms());
    if client.version_of::<DeleteTopicsRequest>()? >= 6 {
        request.topics = vec![DeleteTopicState::default().with_name(Some(topic_name(name)))];
    } else {
        request.topic_names = vec![topic_name(name)];
    }
    let response = client.send(&request).await?;
    let Some(result) = response.responses.into_iter().next() else {
        bail!("the broker did not answer for topic {name}");
    };
    if result.error_code != 0 {
        bail!(
            "deleting topic {name} failed: {}",
            errors::describe(result.error_code, result.error_message.as_deref())
        );
    }
    output::print(&format!("deleted topic {name}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values() {
        assert_eq!(parse_key_value("a=b"), Ok(("a".into(), "b".into())));
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("a="), Ok(("a".into(), String::new())));
        assert!(parse_key_value("=b").is_err());
        assert!(parse_key_value("ab").is_err());
    }

    #[test]
    fn tables_align_columns() {
        let mut out = String::new();
        let rows =
            vec![vec!["a".to_owned(), "bb".to_owned()], vec!["ccc".to_owned(), "d".to_owned()]];
        output::table(&mut out, &rows);
        assert_eq!(out, "a    bb\nccc  d\n");
    }
}
