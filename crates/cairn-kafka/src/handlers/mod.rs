//! Request handlers: one function per API, all answering through [`handle`].

mod cluster;
mod fetch;
mod groups;
mod leader_hint;
mod list_offsets;
mod offset_for_leader_epoch;
pub(crate) mod produce;
mod producers;
mod topics;

use cairn_meta::MetadataStore;
use kafka_protocol::messages::{ApiKey, FetchResponse, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::server::{Ctx, Request};

/// The APIs cairn serves today; ApiVersions advertises these, within the versions the shape
/// checker knows.
pub(crate) const IMPLEMENTED: &[ApiKey] = &[
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::CreatePartitions,
    ApiKey::DescribeConfigs,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::DescribeCluster,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::ListGroups,
    ApiKey::DescribeGroups,
    ApiKey::DeleteGroups,
    ApiKey::OffsetDelete,
    ApiKey::InitProducerId,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
];

/// The metric label of an API.
pub(crate) fn api_name(api_key: ApiKey) -> &'static str {
    match api_key {
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::Metadata => "Metadata",
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::ConsumerGroupHeartbeat => "ConsumerGroupHeartbeat",
        ApiKey::ConsumerGroupDescribe => "ConsumerGroupDescribe",
        _ => "other",
    }
}

/// The versions of `api_key` cairn serves, if any.
pub(crate) fn versions(api_key: ApiKey) -> Option<(i16, i16)> {
    if IMPLEMENTED.contains(&api_key) {
        crate::shape::supported_versions(api_key as i16)
    } else {
        None
    }
}

/// What serving a request produced.
#[allow(clippy::large_enum_variant)] // built once per request and moved straight into encoding
pub(crate) enum Handled {
    /// Send this response.
    Respond(ResponseKind),
    /// Send this Fetch response with the records of partition `p` of topic `t` from the files
    /// `[t][p]`.
    Fetch(FetchResponse, Vec<Vec<crate::sendfile::Ranges>>),
    /// No response is due (produce with acks=0).
    Silent,
    /// Close the connection instead of sending this response: the only way to tell an acks=0
    /// producer that its records were refused, as Kafka does.
    Refused(ResponseKind),
    /// Close the connection.
    Close,
}

/// Serves one decoded request, and counts the error codes of its answer: the one place that sees
/// every API's codes (`cairn_kafka_errors_total`).
pub(crate) async fn handle<M: MetadataStore>(ctx: &Ctx<M>, request: Request) -> Handled {
    let api = api_name(request.api_key);
    let handled = dispatch(ctx, request).await;
    let count = |code| ctx.metrics.error(api, code);
    match &handled {
        Handled::Respond(response) | Handled::Refused(response) => error_codes(response, count),
        Handled::Fetch(response, _) => fetch_error_codes(response, count),
        Handled::Silent | Handled::Close => {}
    }
    handled
}

/// Calls `f` with every error code of a response (top-level, per topic, per partition and per
/// resource), "no error" included.
fn error_codes(response: &ResponseKind, mut f: impl FnMut(i16)) {
    match response {
        ResponseKind::ApiVersions(r) => f(r.error_code),
        ResponseKind::Metadata(r) => {
            f(r.error_code);
            for topic in &r.topics {
                f(topic.error_code);
                topic.partitions.iter().for_each(|p| f(p.error_code));
            }
        }
        ResponseKind::DescribeCluster(r) => f(r.error_code),
        ResponseKind::Produce(r) => {
            r.responses.iter().flat_map(|t| &t.partition_responses).for_each(|p| f(p.error_code));
        }
        ResponseKind::Fetch(r) => fetch_error_codes(r, f),
        ResponseKind::ListOffsets(r) => {
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        ResponseKind::OffsetForLeaderEpoch(r) => {
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        ResponseKind::CreatePartitions(r) => r.results.iter().for_each(|t| f(t.error_code)),
        ResponseKind::DescribeConfigs(r) => r.results.iter().for_each(|t| f(t.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().for_each(|t| f(t.error_code));
        }
        other => group_error_codes(other, f),
    }
}

/// [`error_codes`] of the group coordinator's responses.
fn group_error_codes(response: &ResponseKind, mut f: impl FnMut(i16)) {
    match response {
        ResponseKind::FindCoordinator(r) => {
            f(r.error_code);
            r.coordinators.iter().for_each(|c| f(c.error_code));
        }
        ResponseKind::JoinGroup(r) => f(r.error_code),
        ResponseKind::SyncGroup(r) => f(r.error_code),
        ResponseKind::Heartbeat(r) => f(r.error_code),
        ResponseKind::ConsumerGroupHeartbeat(r) => f(r.error_code),
        ResponseKind::ConsumerGroupDescribe(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        ResponseKind::LeaveGroup(r) => {
            f(r.error_code);
            r.members.iter().for_each(|m| f(m.error_code));
        }
        ResponseKind::OffsetCommit(r) => {
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        ResponseKind::OffsetFetch(r) => {
            f(r.error_code);
            r.groups.iter().for_each(|g| f(g.error_code));
        }
        ResponseKind::ListGroups(r) => f(r.error_code),
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        ResponseKind::DeleteGroups(r) => r.results.iter().for_each(|g| f(g.error_code)),
        ResponseKind::InitProducerId(r) => f(r.error_code),
        ResponseKind::OffsetDelete(r) => {
            f(r.error_code);
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        other => {
            // `dispatch` builds only the responses above; a new API must be added here.
            tracing::error!(api = ?std::mem::discriminant(other), "error codes of a response not counted");
        }
    }
}

/// [`error_codes`] of a Fetch response.
fn fetch_error_codes(response: &FetchResponse, mut f: impl FnMut(i16)) {
    f(response.error_code);
    response.responses.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
}

/// Serves one decoded request.
async fn dispatch<M: MetadataStore>(ctx: &Ctx<M>, request: Request) -> Handled {
    let version = request.api_version;
    let order = request.order;
    let header = request.header;
    let peer = request.peer;
    let Some(body) = request.body else {
        return Handled::Respond(ResponseKind::ApiVersions(cluster::api_versions(true)));
    };
    let response = match body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(cluster::api_versions(false)),
        RequestKind::Metadata(request) => {
            ResponseKind::Metadata(cluster::metadata(ctx, request, version).await)
        }
        RequestKind::DescribeCluster(request) => {
            ResponseKind::DescribeCluster(cluster::describe_cluster(ctx, &request))
        }
        RequestKind::Produce(request) => {
            let Some(order) = order else {
                tracing::error!("produce request without an append order");
                return Handled::Close;
            };
            return produce::produce(ctx, request, version, order).await;
        }
        RequestKind::Fetch(request) => {
            let (response, files) = fetch::fetch(ctx, request, version).await;
            return Handled::Fetch(response, files);
        }
        RequestKind::ListOffsets(request) => {
            ResponseKind::ListOffsets(list_offsets::list_offsets(ctx, request, version))
        }
        RequestKind::OffsetForLeaderEpoch(request) => ResponseKind::OffsetForLeaderEpoch(
            offset_for_leader_epoch::offset_for_leader_epoch(ctx, &request),
        ),
        RequestKind::CreateTopics(request) => {
            ResponseKind::CreateTopics(topics::create_topics(ctx, request, version).await)
        }
        RequestKind::DeleteTopics(request) => {
            ResponseKind::DeleteTopics(topics::delete_topics(ctx, request, version).await)
        }
        RequestKind::CreatePartitions(request) => {
            ResponseKind::CreatePartitions(topics::create_partitions(ctx, request).await)
        }
        RequestKind::DescribeConfigs(request) => {
            ResponseKind::DescribeConfigs(topics::describe_configs(ctx, request))
        }
        RequestKind::IncrementalAlterConfigs(request) => {
            ResponseKind::IncrementalAlterConfigs(topics::alter_configs(ctx, request).await)
        }
        other => match dispatch_group(ctx, other, version, &header, peer).await {
            Ok(response) => response,
            Err(other) => {
                // `decode` only lets implemented APIs through.
                tracing::error!(api = ?std::mem::discriminant(&other), "request for an api without a handler");
                return Handled::Close;
            }
        },
    };
    Handled::Respond(response)
}

/// Serves a request of the group coordinator's APIs; `Err` gives back any other.
async fn dispatch_group<M: MetadataStore>(
    ctx: &Ctx<M>,
    body: RequestKind,
    version: i16,
    header: &RequestHeader,
    peer: std::net::SocketAddr,
) -> Result<ResponseKind, RequestKind> {
    let client_id =
        || header.client_id.as_ref().map_or_else(String::new, |c| c.as_str().to_owned());
    let host = || format!("/{}", peer.ip());
    Ok(match body {
        RequestKind::FindCoordinator(request) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(ctx, request, version).await)
        }
        RequestKind::JoinGroup(request) => ResponseKind::JoinGroup(
            groups::join_group(ctx, request, version, client_id(), host()).await,
        ),
        RequestKind::SyncGroup(request) => {
            ResponseKind::SyncGroup(groups::sync_group(ctx, request).await)
        }
        RequestKind::Heartbeat(request) => {
            ResponseKind::Heartbeat(groups::heartbeat(ctx, request).await)
        }
        RequestKind::ConsumerGroupHeartbeat(request) => {
            let (client_id, host) = (client_id(), host());
            let answer = groups::consumer_heartbeat(ctx, request, version, client_id, host).await;
            ResponseKind::ConsumerGroupHeartbeat(answer)
        }
        RequestKind::ConsumerGroupDescribe(request) => {
            ResponseKind::ConsumerGroupDescribe(groups::consumer_group_describe(ctx, request).await)
        }
        RequestKind::LeaveGroup(request) => {
            ResponseKind::LeaveGroup(groups::leave_group(ctx, request, version).await)
        }
        RequestKind::OffsetCommit(request) => {
            ResponseKind::OffsetCommit(groups::offset_commit(ctx, request).await)
        }
        RequestKind::OffsetFetch(request) => {
            ResponseKind::OffsetFetch(groups::offset_fetch(ctx, request, version).await)
        }
        RequestKind::ListGroups(request) => {
            ResponseKind::ListGroups(groups::list_groups(ctx, request).await)
        }
        RequestKind::DescribeGroups(request) => {
            ResponseKind::DescribeGroups(groups::describe_groups(ctx, request, version).await)
        }
        RequestKind::DeleteGroups(request) => {
            ResponseKind::DeleteGroups(groups::delete_groups(ctx, request).await)
        }
        RequestKind::OffsetDelete(request) => {
            ResponseKind::OffsetDelete(groups::offset_delete(ctx, request).await)
        }
        RequestKind::InitProducerId(request) => {
            ResponseKind::InitProducerId(producers::init_producer_id(ctx, request).await)
        }
        other => return Err(other),
    })
}

/// The name of the topic with this id (requests from v13 of Produce and Fetch, v6 of
/// DeleteTopics name topics by id).
pub(crate) fn topic_name<M: MetadataStore>(ctx: &Ctx<M>, id: uuid::Uuid) -> Option<String> {
    ctx.broker
        .meta()
        .topics()
        .into_iter()
        .find(|t| t.id.as_uuid() == id)
        .map(|t| t.name.as_str().to_owned())
}

/// A `StrBytes` from an owned string.
pub(crate) fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}
