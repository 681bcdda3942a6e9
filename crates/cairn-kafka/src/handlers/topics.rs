//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! IncrementalAlterConfigs.

use cairn_broker::BrokerError;
use cairn_meta::{ConfigChange, ConfigSource, MetadataStore, TopicConfigs, TopicName, TopicSpec};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, TopicName as WireTopicName,
};

use super::text;
use crate::errors;
use crate::server::Ctx;

/// Kafka's config resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
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
        let name = topic.name.0.as_str().to_owned();
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let fail = |code: i16, message: String| {
            result.clone().with_error_code(code).with_error_message(Some(text(message)))
        };
        let topic_name = match TopicName::new(&name) {
            Ok(topic_name) => topic_name,
            Err(error) => {
                results.push(fail(ResponseError::InvalidTopicException.code(), error.to_string()));
                continue;
            }
        };
        if !topic.assignments.is_empty() {
            results.push(fail(
                ResponseError::InvalidRequest.code(),
                "manual replica assignment is not supported".into(),
            ));
            continue;
        }
        let partitions = if topic.num_partitions == -1 {
            i64::from(ctx.config.default_partitions)
        } else {
            i64::from(topic.num_partitions)
        };
        let replication_factor =
            if topic.replication_factor == -1 { 1 } else { i64::from(topic.replication_factor) };
        let (Ok(partitions), Ok(replication_factor)) =
            (u32::try_from(partitions), u16::try_from(replication_factor))
        else {
            results.push(fail(ResponseError::InvalidPartitions.code(), format!("invalid partition count {partitions} or replication factor {replication_factor}")));
            continue;
        };
        let mut configs = Vec::with_capacity(topic.configs.len());
        for config in topic.configs {
            let Some(value) = config.value else {
                continue;
            };
            configs.push((config.name.as_str().to_owned(), value.as_str().to_owned()));
        }
        if request.validate_only {
            let checked = TopicConfigs::from_overrides(&configs);
            let result = match checked {
                Err(error) => fail(ResponseError::InvalidConfig.code(), error.to_string()),
                Ok(_) if ctx.broker.meta().topic(&name).is_some() => fail(
                    ResponseError::TopicAlreadyExists.code(),
                    format!("topic {name} already exists"),
                ),
                Ok(_) if version >= 5 => result
                    .with_num_partitions(partitions as i32)
                    .with_replication_factor(replication_factor as i16),
                Ok(_) => result,
            };
            results.push(result);
            continue;
        }
        let spec = TopicSpec { name: topic_name, partitions, replication_factor, configs };
        match ctx.broker.create_topic(spec).await {
            Ok(meta) => {
                tracing::info!(topic = %name, partitions = meta.partitions, "created topic");
                // Topic ids exist from v7, partition counts from v5.
                let mut result = result.with_topic_id(if version >= 7 {
                    meta.id.as_uuid()
                } else {
                    uuid::Uuid::nil()
                });
                if version >= 5 {
                    result = result
                        .with_num_partitions(meta.partitions as i32)
                        .with_replication_factor(meta.replication_factor as i16);
                }
                results.push(result);
            }
            Err(error) => {
                let (code, message) = refusal("create topic", &name, &error);
                results.push(fail(code, message));
            }
        }
    }
    CreateTopicsResponse::default().with_topics(results)
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
        let name = topic.name.0.as_str().to_owned();
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        let fail = |code: i16, message: String| {
            result.clone().with_error_code(code).with_error_message(Some(text(message)))
        };
        if topic.assignments.is_some() {
            results.push(fail(
                ResponseError::InvalidRequest.code(),
                "manual replica assignment is not supported".into(),
            ));
            continue;
        }
        let Ok(count) = u32::try_from(topic.count) else {
            results.push(fail(
                ResponseError::InvalidPartitions.code(),
                format!("invalid partition count {}", topic.count),
            ));
            continue;
        };
        if request.validate_only {
            let current = ctx.broker.meta().topic(&name).map(|t| t.partitions);
            results.push(match current {
                None => fail(
                    ResponseError::UnknownTopicOrPartition.code(),
                    format!("topic {name} does not exist"),
                ),
                Some(current) if count <= current => fail(
                    ResponseError::InvalidPartitions.code(),
                    format!("topic has {current} partitions"),
                ),
                Some(_) => result,
            });
            continue;
        }
        match ctx.broker.create_partitions(&name, count).await {
            Ok(_) => results.push(result),
            Err(error) => {
                let (code, message) = refusal("create partitions", &name, &error);
                results.push(fail(code, message));
            }
        }
    }
    CreatePartitionsResponse::default().with_results(results)
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
                _ => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(text("unsupported resource type"))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
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
                (0, None) => invalid = Some(format!("no value for {key}")),
                (operation, _) => {
                    invalid = Some(format!(
                        "operation {operation} on {key} is not supported (no list-valued configs)"
                    ))
                }
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
