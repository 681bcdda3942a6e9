//! ApiVersions, Metadata and DescribeCluster.

use std::collections::BTreeSet;

use cairn_broker::{OFFSETS_TOPIC, Partition};
use cairn_meta::{MetadataStore, REPLICATION_FACTOR_DEFAULT, TopicMeta, TopicName, TopicSpec};
use cairn_types::{LeaderEpoch, NodeId};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, DescribeClusterRequest, DescribeClusterResponse,
    MetadataRequest, MetadataResponse,
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
    authorized_operations: i32,
) -> MetadataResponseTopic {
    let live: BTreeSet<NodeId> = ctx.broker.meta().nodes().iter().map(|node| node.id).collect();
    let partitions =
        (0..topic.partitions).map(|index| partition_response(ctx, topic, index, &live)).collect();
    MetadataResponseTopic::default()
        .with_name(Some(text(topic.name.as_str()).into()))
        // Topic ids exist from v10.
        .with_topic_id(if version >= 10 { topic.id.as_uuid() } else { uuid::Uuid::nil() })
        .with_is_internal(topic.name.as_str() == OFFSETS_TOPIC)
        .with_partitions(partitions)
        .with_topic_authorized_operations(authorized_operations)
}

/// One partition's Metadata answer; `live` holds the nodes the consistent core marks alive.
///
/// - Offline replicas: those on nodes the core marks dead, and this node's own if its log
///   could not be opened or failed (as Kafka lists a replica on a failed log directory).
///   They are never in the ISR.
/// - Leader: an online replica here names the leader its group knows; a node without an online
///   replica names the leader a peer announced in its pings (RFC 0004) if one did lately, with
///   its epoch, else the core's preferred leader. Either only if that node is alive: otherwise
///   (an election, or a leader the core marks dead) the answer is Kafka's
///   `LEADER_NOT_AVAILABLE` with leader -1, the replicas, ISR and epoch still given.
/// - ISR: the leader's own account; elsewhere every replica that is not offline (a node that
///   does not lead cannot tell).
fn partition_response<M: MetadataStore>(
    ctx: &Ctx<M>,
    topic: &TopicMeta,
    index: u32,
    live: &BTreeSet<NodeId>,
) -> MetadataResponsePartition {
    let response = MetadataResponsePartition::default().with_partition_index(index as i32);
    let Some(placed) = ctx.broker.meta().leader(topic.name.as_str(), index) else {
        return response
            .with_error_code(ResponseError::LeaderNotAvailable.code())
            .with_leader_id(BrokerId(-1));
    };
    let hosted = ctx.broker.partition(topic.name.as_str(), index);
    let online = hosted.as_ref().filter(|partition| partition.offline().is_none());
    let this_node = ctx.config.node_id;
    let offline: Vec<NodeId> = placed
        .replicas
        .iter()
        .copied()
        .filter(|&replica| {
            !live.contains(&replica)
                || (replica == this_node && hosted.is_some() && online.is_none())
        })
        .collect();
    // The leader epoch is the partition group's term, which grows with every election (every
    // restart, with one voter).
    let announced = ctx.broker.announced_leader(placed.group);
    let leader_epoch = match (&hosted, announced) {
        (Some(partition), _) => partition.leader_epoch(),
        (None, Some((_, epoch))) => epoch,
        (None, None) => placed.leader_epoch,
    };
    let leader = known_leader(online.map(AsRef::as_ref), announced, placed.leader, live);
    let isr: Vec<NodeId> = match online.and_then(|partition| partition.in_sync()) {
        Some(in_sync) => in_sync,
        None => placed.replicas.clone(),
    };
    let ids = |nodes: &[NodeId]| -> Vec<BrokerId> {
        nodes.iter().filter_map(|node| Some(BrokerId(i32::try_from(node.0).ok()?))).collect()
    };
    let isr: Vec<NodeId> = isr.into_iter().filter(|node| !offline.contains(node)).collect();
    let response = response
        .with_leader_epoch(leader_epoch.0)
        .with_replica_nodes(ids(&placed.replicas))
        .with_isr_nodes(ids(&isr))
        .with_offline_replicas(ids(&offline));
    match leader.and_then(|leader| i32::try_from(leader.0).ok()) {
        Some(leader) => response.with_leader_id(BrokerId(leader)),
        None => response
            .with_error_code(ResponseError::LeaderNotAvailable.code())
            .with_leader_id(BrokerId(-1)),
    }
}

/// The leader of a partition as this node knows it, if that node is alive: its own replica's
/// view when online, else the leader a peer announced, else the core's preferred leader.
fn known_leader(
    online: Option<&Partition>,
    announced: Option<(NodeId, LeaderEpoch)>,
    preferred: NodeId,
    live: &BTreeSet<NodeId>,
) -> Option<NodeId> {
    match online {
        Some(partition) => partition.leader(),
        None => Some(announced.map_or(preferred, |(leader, _)| leader)),
    }
    .filter(|leader| live.contains(leader))
}

/// The live leader of `topic`'s partition `index` as Metadata would name it, if any.
pub(crate) fn partition_leader<M: MetadataStore>(
    ctx: &Ctx<M>,
    topic: &str,
    index: u32,
) -> Option<NodeId> {
    let placed = ctx.broker.meta().leader(topic, index)?;
    let live: BTreeSet<NodeId> = ctx.broker.meta().nodes().iter().map(|node| node.id).collect();
    let hosted = ctx.broker.partition(topic, index);
    let online = hosted.as_deref().filter(|partition| partition.offline().is_none());
    known_leader(online, ctx.broker.announced_leader(placed.group), placed.leader, &live)
}

fn topic_error(name: &str, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default().with_name(Some(text(name).into())).with_error_code(code)
}

/// Kafka's ACL operation codes (`AclOperation`), the bit numbers of an authorized-operations
/// field.
mod operation {
    pub(super) const READ: u8 = 3;
    pub(super) const WRITE: u8 = 4;
    pub(super) const CREATE: u8 = 5;
    pub(super) const DELETE: u8 = 6;
    pub(super) const ALTER: u8 = 7;
    pub(super) const DESCRIBE: u8 = 8;
    pub(super) const CLUSTER_ACTION: u8 = 9;
    pub(super) const DESCRIBE_CONFIGS: u8 = 10;
    pub(super) const ALTER_CONFIGS: u8 = 11;
    pub(super) const IDEMPOTENT_WRITE: u8 = 12;
}

/// The bitfield of a set of operations (Kafka's `Utils.to32BitField`).
const fn operations(codes: &[u8]) -> i32 {
    let mut bits = 0;
    let mut i = 0;
    while i < codes.len() {
        bits |= 1 << codes[i];
        i += 1;
    }
    bits
}

/// What a client may do to a topic. cairn has no authorizer, and Kafka without one answers every
/// operation the resource type supports (its `AclEntry.supportedOperations`).
pub(crate) const TOPIC_OPERATIONS: i32 = {
    use operation::*;
    operations(&[READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS])
};

/// What a client may do to the cluster, as for [`TOPIC_OPERATIONS`].
pub(crate) const CLUSTER_OPERATIONS: i32 = {
    use operation::*;
    operations(&[
        CREATE,
        CLUSTER_ACTION,
        DESCRIBE_CONFIGS,
        ALTER_CONFIGS,
        IDEMPOTENT_WRITE,
        ALTER,
        DESCRIBE,
    ])
};

/// An authorized-operations field the client did not ask for.
pub(crate) const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// `operations` if the client asked for them, else [`OPERATIONS_NOT_REQUESTED`].
fn authorized(requested: bool, operations: i32) -> i32 {
    if requested { operations } else { OPERATIONS_NOT_REQUESTED }
}

/// Metadata: brokers, and the requested topics (all if none are named), auto-creating unknown
/// ones when both the request and the node allow it.
pub(crate) async fn metadata<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // The fields exist from v8 (the cluster's until v10); the request's flags decode as false
    // outside them.
    let topic_operations =
        authorized(request.include_topic_authorized_operations, TOPIC_OPERATIONS);
    let cluster_operations =
        authorized(request.include_cluster_authorized_operations, CLUSTER_OPERATIONS);
    let auto_create =
        (request.allow_auto_topic_creation || version < 4) && ctx.config.auto_create_topics;
    // Version 0 asks for every topic with an empty list; later versions with null.
    let requested = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(topics),
    };
    sync_if_missing(ctx, requested.as_deref()).await;
    let topics = match requested {
        None => ctx
            .broker
            .meta()
            .topics()
            .iter()
            .map(|topic| topic_response(ctx, topic, version, topic_operations))
            .collect(),
        Some(requested) => {
            let mut topics = Vec::with_capacity(requested.len());
            for requested in requested {
                let Some(name) = requested.name else {
                    // By id (v10+; consumers of the consumer protocol learn their topics so).
                    let id = requested.topic_id;
                    let all = ctx.broker.meta().topics();
                    let known = all.iter().find(|t| !id.is_nil() && t.id.as_uuid() == id);
                    topics.push(match known {
                        Some(topic) => topic_response(ctx, topic, version, topic_operations),
                        None => MetadataResponseTopic::default()
                            .with_topic_id(id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    });
                    continue;
                };
                let name = name.0.as_str();
                topics.push(named_topic(ctx, name, auto_create, version, topic_operations).await);
            }
            topics
        }
    };
    MetadataResponse::default()
        .with_brokers(brokers(ctx))
        // The cluster id exists from v2.
        .with_cluster_id((version >= 2).then(|| text(ctx.config.cluster_id.clone())))
        .with_controller_id(controller_id(ctx))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_operations)
}

/// The Metadata answer for a topic named in the request, created first if it is unknown and
/// `auto_create` allows it.
async fn named_topic<M: MetadataStore>(
    ctx: &Ctx<M>,
    name: &str,
    auto_create: bool,
    version: i16,
    authorized_operations: i32,
) -> MetadataResponseTopic {
    let meta = ctx.broker.meta();
    if let Some(topic) = meta.topic(name) {
        return topic_response(ctx, &topic, version, authorized_operations);
    }
    if !auto_create {
        return topic_error(name, ResponseError::UnknownTopicOrPartition.code());
    }
    let Ok(topic_name) = TopicName::new(name) else {
        return topic_error(name, ResponseError::InvalidTopicException.code());
    };
    let spec = TopicSpec {
        name: topic_name,
        partitions: ctx.config.default_partitions,
        replication_factor: REPLICATION_FACTOR_DEFAULT,
        configs: Vec::new(),
        assignments: None,
    };
    match ctx.broker.create_topic(spec).await {
        Ok(topic) => {
            tracing::info!(topic = %name, partitions = topic.partitions, "auto-created topic");
            topic_response(ctx, &topic, version, authorized_operations)
        }
        // Another request may have created it meanwhile, and another deleted it since: one
        // lookup decides.
        Err(error) => match meta.topic(name) {
            Some(topic) => topic_response(ctx, &topic, version, authorized_operations),
            None => {
                tracing::warn!(topic = %name, %error, "auto-creating a topic failed");
                topic_error(name, errors::broker_code(&error))
            }
        },
    }
}

/// Before a Metadata answer that could miss a topic created through another node (every topic
/// asked for, or a named one this node does not know), this node's metadata catches up with
/// the core's commit (`MetadataStore::sync`, one read index). A failure is logged and the
/// answer given from what this node has: staleness, not an error.
async fn sync_if_missing<M: MetadataStore>(
    ctx: &Ctx<M>,
    requested: Option<&[MetadataRequestTopic]>,
) {
    let meta = ctx.broker.meta();
    let missing = requested.is_none_or(|topics| {
        topics
            .iter()
            .any(|t| t.name.as_ref().is_some_and(|name| meta.topic(name.0.as_str()).is_none()))
    });
    if missing && let Err(error) = meta.sync().await {
        tracing::debug!(%error, "metadata answered from this node's state without a read index");
    }
}

/// DescribeCluster: the nodes, the cluster id and, when asked, the cluster's authorized
/// operations.
pub(crate) fn describe_cluster<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: &DescribeClusterRequest,
) -> DescribeClusterResponse {
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
        .with_controller_id(controller_id(ctx))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(authorized(
            request.include_cluster_authorized_operations,
            CLUSTER_OPERATIONS,
        ))
}

/// Kafka's controller id: the consistent core's leader, or this node while it knows no valid
/// one (an election, or it is cut off). Any node takes admin requests and forwards their writes
/// to the core's leader, as Kafka's brokers do since KIP-590; an admin client told -1 waits
/// for a controller and may not ask again in time.
fn controller_id<M: MetadataStore>(ctx: &Ctx<M>) -> BrokerId {
    let controller = ctx.broker.meta().controller().unwrap_or(ctx.config.node_id);
    // Node ids are Kafka broker ids, at most `i32::MAX` (the core refuses others).
    BrokerId(i32::try_from(controller.0).unwrap_or(-1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorized_operations_are_kafkas_bitfields() {
        // READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, DESCRIBE_CONFIGS 10,
        // ALTER_CONFIGS 11.
        assert_eq!(TOPIC_OPERATIONS, 0b1101_1111_1000);
        // CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11,
        // IDEMPOTENT_WRITE 12.
        assert_eq!(CLUSTER_OPERATIONS, 0b1_1111_1010_0000);
    }
}
