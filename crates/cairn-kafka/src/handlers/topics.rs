//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! IncrementalAlterConfigs.

use cairn_broker::{BrokerError, OFFSETS_TOPIC};
use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_meta::{
    ConfigChange, ConfigSource, MetadataStore, REPLICATION_FACTOR_DEFAULT, TopicMeta, TopicName,
    TopicSpec,
};
use cairn_types::NodeId;
use cairn_types::limits::{CLUSTER_NODES_MAX, TOPIC_PARTITIONS_MAX};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    TopicName as WireTopicName,
};

use super::text;
use crate::errors;
use crate::server::Ctx;

/// Kafka's config resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;
/// DescribeConfigs' type of an integer config.
const CONFIG_TYPE_INT: i8 = 3;
/// Kafka's config sources (DescribeConfigs v1+).
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

/// The error code and client message of a failed topic operation. The full error, which may
/// name server paths, goes to the log: as a warning when the broker failed, at debug level when
/// the request was refused.
fn refusal(op: &'static str, topic: &str, error: &BrokerError) -> (i16, String) {
    let code = errors::broker_code(error);
    let broker_failed = code == ResponseError::KafkaStorageError.code()
        || code == ResponseError::UnknownServerError.code();
    if broker_failed {
        tracing::warn!(op, topic, %error, "topic operation failed");
    } else {
        tracing::debug!(op, topic, %error, "topic operation refused");
    }
    (code, errors::broker_message(error))
}

/// Serves CreateTopics.
pub(crate) async fn create_topics<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let done = match topic_spec(ctx, topic) {
            Err((code, message)) => Err((code, message)),
            Ok(spec) if request.validate_only => {
                let name = spec.name.to_string();
                ctx.broker
                    .meta()
                    .check_create_topic(&spec)
                    .map_err(|error| refusal("validate topic", &name, &BrokerError::Meta(error)))
            }
            Ok(spec) => create_one(ctx, spec).await,
        };
        results.push(match done {
            Ok(meta) => {
                // Topic ids exist from v7 (none for a topic only validated), partition counts
                // from v5.
                let mut result = result;
                if version >= 7 && !request.validate_only {
                    result = result.with_topic_id(meta.id.as_uuid());
                }
                if version >= 5 {
                    result = result
                        .with_num_partitions(meta.partitions as i32)
                        .with_replication_factor(meta.replication_factor as i16);
                }
                result
            }
            Err((code, message)) => {
                result.with_error_code(code).with_error_message(Some(text(message)))
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Creates the topic `spec` describes.
async fn create_one<M: MetadataStore>(
    ctx: &Ctx<M>,
    spec: TopicSpec,
) -> Result<Arc<TopicMeta>, (i16, String)> {
    let name = spec.name.to_string();
    match ctx.broker.create_topic(spec).await {
        Ok(meta) => {
            tracing::info!(topic = %name, partitions = meta.partitions, "created topic");
            Ok(meta)
        }
        Err(error) => Err(refusal("create topic", &name, &error)),
    }
}

/// The topic a CreateTopics entry asks for, its form checked: the name, the counts (-1 for
/// the defaults) or the manual assignment (Kafka's checks of its form, [`manual_topic`]).
fn topic_spec<M: MetadataStore>(
    ctx: &Ctx<M>,
    topic: CreatableTopic,
) -> Result<TopicSpec, (i16, String)> {
    let name = TopicName::new(topic.name.0.as_str())
        .map_err(|error| (ResponseError::InvalidTopicException.code(), error.to_string()))?;
    let configs = topic
        .configs
        .iter()
        .filter_map(|c| Some((c.name.as_str().to_owned(), c.value.as_ref()?.as_str().to_owned())))
        .collect();
    if !topic.assignments.is_empty() {
        let assignments = manual_topic(&topic)?;
        let partitions = u32::try_from(assignments.len()).unwrap_or(u32::MAX);
        // Every list is at most ASSIGNED_REPLICAS_MAX long.
        let replication_factor = assignments.first().map_or(0, |list| list.len() as u16);
        let assignments = Some(assignments);
        return Ok(TopicSpec { name, partitions, replication_factor, configs, assignments });
    }
    let partitions = if topic.num_partitions == -1 {
        i64::from(ctx.config.default_partitions)
    } else {
        i64::from(topic.num_partitions)
    };
    let replication_factor = match topic.replication_factor {
        -1 => i64::from(REPLICATION_FACTOR_DEFAULT),
        factor if factor < 1 => {
            return Err((
                ResponseError::InvalidReplicationFactor.code(),
                "Replication factor must be larger than 0, or -1 to use the default value."
                    .to_owned(),
            ));
        }
        factor => i64::from(factor),
    };
    let (Ok(partitions), Ok(replication_factor)) =
        (u32::try_from(partitions), u16::try_from(replication_factor))
    else {
        return Err((
            ResponseError::InvalidPartitions.code(),
            format!(
                "invalid partition count {partitions} or replication factor {replication_factor}"
            ),
        ));
    };
    Ok(TopicSpec { name, partitions, replication_factor, configs, assignments: None })
}

/// A CreateTopics manual assignment as replica lists of partitions `0..n`, with Kafka's
/// checks of its form (KRaft's `ReplicationControlManager.createTopic`, and its messages):
/// the counts must be -1; no partition twice; the partitions `0..n`. The lists themselves
/// (empty, unknown or repeated brokers, lengths that differ, no live replica) are checked
/// against the cluster by the metadata store, which answers with Kafka's messages too.
fn manual_topic(topic: &CreatableTopic) -> Result<Vec<Vec<NodeId>>, (i16, String)> {
    let request = |message: &str| (ResponseError::InvalidRequest.code(), message.to_owned());
    if topic.replication_factor != -1 {
        return Err(request(
            "A manual partition assignment was specified, but replication factor was not set \
             to -1.",
        ));
    }
    if topic.num_partitions != -1 {
        return Err(request(
            "A manual partition assignment was specified, but numPartitions was not set to -1.",
        ));
    }
    let mut by_partition: BTreeMap<i32, Vec<NodeId>> = BTreeMap::new();
    for assignment in &topic.assignments {
        let index = assignment.partition_index;
        if by_partition.contains_key(&index) {
            return Err(invalid_assignment(format!(
                "Found multiple manual partition assignments for partition {index}"
            )));
        }
        by_partition.insert(index, broker_list(&assignment.broker_ids)?);
    }
    let consecutive = by_partition.keys().zip(0..).all(|(index, expected)| *index == expected);
    if !consecutive {
        return Err(invalid_assignment(
            "partitions should be a consecutive 0-based integer sequence".into(),
        ));
    }
    if by_partition.len() > TOPIC_PARTITIONS_MAX as usize {
        return Err((
            ResponseError::InvalidPartitions.code(),
            format!("{} partitions: more than TOPIC_PARTITIONS_MAX", by_partition.len()),
        ));
    }
    Ok(by_partition.into_values().collect())
}

/// The most broker ids one replica list may name: more than a cluster's nodes always repeat
/// one or name one that is not registered.
const ASSIGNED_REPLICAS_MAX: usize = CLUSTER_NODES_MAX;

/// One replica list of a manual assignment as node ids: a negative id is a broker that is not
/// registered (the smallest first, as Kafka checks them in ascending order).
fn broker_list(ids: &[BrokerId]) -> Result<Vec<NodeId>, (i16, String)> {
    if let Some(negative) = ids.iter().map(|id| id.0).filter(|id| *id < 0).min() {
        return Err(invalid_assignment(format!(
            "The manual partition assignment includes broker {negative}, but no such broker is \
             registered."
        )));
    }
    if ids.len() > ASSIGNED_REPLICAS_MAX {
        return Err(invalid_assignment(format!(
            "The manual partition assignment names {} brokers, more than a cluster has.",
            ids.len()
        )));
    }
    Ok(ids.iter().map(|id| NodeId(u64::from(id.0.unsigned_abs()))).collect())
}

fn invalid_assignment(message: String) -> (i16, String) {
    (ResponseError::InvalidReplicaAssignment.code(), message)
}

/// Serves DeleteTopics (by name, or by id from v6).
pub(crate) async fn delete_topics<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<String>, uuid::Uuid)> = request
        .topic_names
        .into_iter()
        .map(|name| (Some(name.0.as_str().to_owned()), uuid::Uuid::nil()))
        .collect();
    for topic in request.topics {
        let name = match topic.name {
            Some(name) => Some(name.0.as_str().to_owned()),
            None => super::topic_name(ctx, topic.topic_id),
        };
        targets.push((name, topic.topic_id));
    }
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let response = DeletableTopicResult::default().with_topic_id(id);
        let Some(name) = name else {
            responses.push(response.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        let response = response.with_name(Some(WireTopicName(text(name.clone()))));
        if name == OFFSETS_TOPIC {
            let message = format!("{OFFSETS_TOPIC} is internal and cannot be deleted");
            responses.push(
                response
                    .with_error_code(ResponseError::InvalidTopicException.code())
                    .with_error_message((version >= 5).then(|| text(message))),
            );
            continue;
        }
        match ctx.broker.delete_topic(&name).await {
            Ok(meta) => {
                tracing::info!(topic = %name, "deleted topic");
                // Topic ids exist from v6.
                responses.push(response.with_topic_id(if version >= 6 {
                    meta.id.as_uuid()
                } else {
                    uuid::Uuid::nil()
                }));
            }
            Err(error) => {
                let (code, message) = refusal("delete topic", &name, &error);
                // Error messages exist from v5.
                responses.push(
                    response
                        .with_error_code(code)
                        .with_error_message((version >= 5).then(|| text(message))),
                );
            }
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Serves CreatePartitions.
pub(crate) async fn create_partitions<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        results.push(match grow_one(ctx, topic, request.validate_only).await {
            Ok(()) => result,
            Err((code, message)) => {
                result.with_error_code(code).with_error_message(Some(text(message)))
            }
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// Raises one topic's partition count (or checks that it may, `validate_only`).
async fn grow_one<M: MetadataStore>(
    ctx: &Ctx<M>,
    topic: CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let name = topic.name.0.as_str().to_owned();
    if name == OFFSETS_TOPIC {
        // Its partition count decides which partition coordinates each group.
        let message = format!("{OFFSETS_TOPIC} is internal: its partition count is fixed");
        return Err((ResponseError::InvalidTopicException.code(), message));
    }
    let Ok(count) = u32::try_from(topic.count) else {
        return Err((
            ResponseError::InvalidPartitions.code(),
            format!("invalid partition count {}", topic.count),
        ));
    };
    let assignments = match &topic.assignments {
        Some(lists) => Some(
            lists
                .iter()
                .map(|list| broker_list(&list.broker_ids))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let outcome = if validate_only {
        let checked =
            ctx.broker.meta().check_create_partitions(&name, count, assignments.as_deref());
        checked.map(drop).map_err(BrokerError::Meta)
    } else {
        ctx.broker.create_partitions(&name, count, assignments).await.map(drop)
    };
    outcome.map_err(|error| refusal("create partitions", &name, &error))
}

/// Serves DescribeConfigs for topics (brokers answer with no configs).
pub(crate) fn describe_configs<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match resource.resource_type {
                RESOURCE_TOPIC => {
                    let Some(topic) = ctx.broker.meta().topic(resource.resource_name.as_str())
                    else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let wanted = resource
                        .configuration_keys
                        .map(|keys| keys.iter().map(|k| k.as_str().to_owned()).collect::<Vec<_>>());
                    let configs = topic
                        .configs
                        .entries()
                        .into_iter()
                        .filter(|entry| {
                            wanted.as_ref().is_none_or(|keys| keys.iter().any(|k| k == &entry.name))
                        })
                        .map(|entry| {
                            let source = match entry.source {
                                ConfigSource::TopicOverride => SOURCE_TOPIC,
                                ConfigSource::Default => SOURCE_DEFAULT,
                            };
                            DescribeConfigsResourceResult::default()
                                .with_name(text(entry.name))
                                .with_value(Some(text(entry.value)))
                                .with_read_only(entry.read_only)
                                .with_config_source(source)
                        })
                        .collect();
                    result.with_configs(configs)
                }
                RESOURCE_BROKER => result,
                RESOURCE_GROUP => describe_group_configs(
                    ctx.groups.shard_config().group_configs(),
                    result,
                    resource.configuration_keys,
                ),
                _ => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(text("unsupported resource type"))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The configs of group `result` names: every group has the broker's (`group_configs`), read
/// only; a name is needed, as Kafka's.
fn describe_group_configs(
    configs: [(&'static str, i32); 2],
    result: DescribeConfigsResult,
    wanted: Option<Vec<kafka_protocol::protocol::StrBytes>>,
) -> DescribeConfigsResult {
    if result.resource_name.is_empty() {
        return result
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(text("a group config resource needs a group id")));
    }
    let configs = configs
        .iter()
        .filter(|(name, _)| {
            wanted.as_ref().is_none_or(|keys| keys.iter().any(|k| k.as_str() == *name))
        })
        .map(|&(name, value)| {
            DescribeConfigsResourceResult::default()
                .with_name(text(name))
                .with_value(Some(text(value.to_string())))
                .with_read_only(true)
                .with_config_source(SOURCE_DEFAULT)
                .with_config_type(CONFIG_TYPE_INT)
        })
        .collect();
    result.with_configs(configs)
}

/// Serves IncrementalAlterConfigs for topics.
pub(crate) async fn alter_configs<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let fail = |code: i16, message: String| {
            response.clone().with_error_code(code).with_error_message(Some(text(message)))
        };
        if resource.resource_type != RESOURCE_TOPIC {
            responses.push(fail(
                ResponseError::InvalidRequest.code(),
                "only topic configs can be altered".into(),
            ));
            continue;
        }
        let mut changes = Vec::with_capacity(resource.configs.len());
        let mut invalid = None;
        for config in resource.configs {
            let key = config.name.as_str().to_owned();
            match (config.config_operation, config.value) {
                (0, Some(value)) => {
                    changes.push(ConfigChange::Set { key, value: value.as_str().to_owned() })
                }
                (1, _) => changes.push(ConfigChange::Delete { key }),
                (2, Some(value)) => {
                    changes.push(ConfigChange::Append { key, value: value.as_str().to_owned() })
                }
                (3, Some(value)) => {
                    changes.push(ConfigChange::Subtract { key, value: value.as_str().to_owned() })
                }
                (0 | 2 | 3, None) => invalid = Some(format!("no value for {key}")),
                (operation, _) => invalid = Some(format!("unknown operation {operation} on {key}")),
            }
        }
        if let Some(message) = invalid {
            responses.push(fail(ResponseError::InvalidConfig.code(), message));
            continue;
        }
        let name = resource.resource_name.as_str().to_owned();
        if request.validate_only {
            let Some(topic) = ctx.broker.meta().topic(&name) else {
                responses.push(fail(
                    ResponseError::UnknownTopicOrPartition.code(),
                    format!("topic {name} does not exist"),
                ));
                continue;
            };
            responses.push(match topic.configs.apply(&changes) {
                Ok(_) => response,
                Err(error) => fail(ResponseError::InvalidConfig.code(), error.to_string()),
            });
            continue;
        }
        match ctx.broker.alter_configs(&name, changes).await {
            Ok(_) => responses.push(response),
            Err(error) => {
                let (code, message) = refusal("alter configs", &name, &error);
                responses.push(fail(code, message));
            }
        }
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
