//! ApiVersions, Metadata and DescribeCluster.

use cairn_meta::{MetadataStore, TopicMeta, TopicName, TopicSpec};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, DescribeClusterResponse, MetadataRequest, MetadataResponse,
};

use super::{IMPLEMENTED, text, versions};
use crate::errors;
use crate::server::Ctx;

/// The APIs and versions served; with `unsupported`, the error answer to a version we do not know.
pub(crate) fn api_versions(unsupported: bool) -> ApiVersionsResponse {
    let api_keys = IMPLEMENTED
        .iter()
        .filter_map(|api| {
            let (min, max) = versions(*api)?;
            Some(
                ApiVersion::default()
                    .with_api_key(*api as i16)
                    .with_min_version(min)
                    .with_max_version(max),
            )
        })
        .collect();
    let error_code =
        if unsupported { ResponseError::UnsupportedVersion.code() } else { errors::NONE };
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(api_keys)
}

fn brokers<M: MetadataStore>(ctx: &Ctx<M>) -> Vec<MetadataResponseBroker> {
    ctx.broker
        .meta()
        .nodes()
        .into_iter()
        .map(|node| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(node.id.0 as i32))
                .with_host(text(node.host))
                .with_port(i32::from(node.port))
                .with_rack(node.rack.map(text))
        })
        .collect()
}

fn topic_response<M: MetadataStore>(
    ctx: &Ctx<M>,
    topic: &TopicMeta,
    version: i16,
) -> MetadataResponseTopic {
    let meta = ctx.broker.meta();
    let partitions = (0..topic.partitions)
        .map(|index| {
            let response = MetadataResponsePartition::default().with_partition_index(index as i32);
            match meta.leader(topic.name.as_str(), index) {
                Some(leader) => {
                    let replicas: Vec<BrokerId> =
                        leader.replicas.iter().map(|n| BrokerId(n.0 as i32)).collect();
                    response
                        .with_leader_id(BrokerId(leader.leader.0 as i32))
                        .with_leader_epoch(leader.leader_epoch.0)
                        .with_isr_nodes(replicas.clone())
                        .with_replica_nodes(replicas)
                }
                None => response
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1)),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(text(topic.name.as_str()).into()))
        // Topic ids exist from v10.
        .with_topic_id(if version >= 10 { topic.id.as_uuid() } else { uuid::Uuid::nil() })
        .with_partitions(partitions)
}

fn topic_error(name: &str, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default().with_name(Some(text(name).into())).with_error_code(code)
}

/// Metadata: brokers, and the requested topics (all if none are named), auto-creating unknown
/// ones when both the request and the node allow it.
pub(crate) async fn metadata<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let meta = ctx.broker.meta();
    // Version 0 asks for every topic with an empty list; later versions with null.
    let requested = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(topics),
    };
    let topics = match requested {
        None => meta.topics().iter().map(|topic| topic_response(ctx, topic, version)).collect(),
        Some(requested) => {
            let mut topics = Vec::with_capacity(requested.len());
            for requested in requested {
                let Some(name) = requested.name else {
                    let unknown = MetadataResponseTopic::default()
                        .with_topic_id(requested.topic_id)
                        .with_error_code(ResponseError::UnknownTopicId.code());
                    topics.push(unknown);
                    continue;
                };
                let name = name.0.as_str().to_owned();
                if let Some(topic) = meta.topic(&name) {
                    topics.push(topic_response(ctx, &topic, version));
                    continue;
                }
                let auto_create = request.allow_auto_topic_creation || version < 4;
                if !(auto_create && ctx.config.auto_create_topics) {
                    topics.push(topic_error(&name, ResponseError::UnknownTopicOrPartition.code()));
                    continue;
                }
                let Ok(topic_name) = TopicName::new(&name) else {
                    topics.push(topic_error(&name, ResponseError::InvalidTopicException.code()));
                    continue;
                };
                let spec = TopicSpec {
                    name: topic_name,
                    partitions: ctx.config.default_partitions,
                    replication_factor: 1,
                    configs: Vec::new(),
                };
                match ctx.broker.create_topic(spec).await {
                    Ok(topic) => {
                        tracing::info!(topic = %name, partitions = topic.partitions, "auto-created topic");
                        topics.push(topic_response(ctx, &topic, version));
                    }
                    // Another request created it meanwhile.
                    Err(_) if meta.topic(&name).is_some() => {
                        let topic = meta.topic(&name).expect("checked just above");
                        topics.push(topic_response(ctx, &topic, version));
                    }
                    Err(error) => topics.push(topic_error(&name, errors::broker_code(&error))),
                }
            }
            topics
        }
    };
    MetadataResponse::default()
        .with_brokers(brokers(ctx))
        // The cluster id exists from v2.
        .with_cluster_id((version >= 2).then(|| text(ctx.config.cluster_id.clone())))
        .with_controller_id(BrokerId(ctx.config.node_id.0 as i32))
        .with_topics(topics)
}

/// DescribeCluster: the nodes and the cluster id.
pub(crate) fn describe_cluster<M: MetadataStore>(ctx: &Ctx<M>) -> DescribeClusterResponse {
    let brokers = brokers(ctx)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(b.node_id)
                .with_host(b.host)
                .with_port(b.port)
                .with_rack(b.rack)
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(text(ctx.config.cluster_id.clone()))
        .with_controller_id(BrokerId(ctx.config.node_id.0 as i32))
        .with_brokers(brokers)
}
