//! Request handlers: one function per API, all answering through [`handle`].

mod cluster;
mod fetch;
mod list_offsets;
pub(crate) mod produce;
mod topics;

use cairn_meta::MetadataStore;
use kafka_protocol::messages::{ApiKey, FetchResponse, RequestKind, ResponseKind};
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
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::CreatePartitions,
    ApiKey::DescribeConfigs,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::DescribeCluster,
];

/// The metric label of an API.
pub(crate) fn api_name(api_key: ApiKey) -> &'static str {
    match api_key {
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::Metadata => "Metadata",
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
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
    /// Close the connection: the only way to tell an acks=0 producer that its records were
    /// refused, as Kafka does.
    Close,
}

/// Serves one decoded request.
pub(crate) async fn handle<M: MetadataStore>(ctx: &Ctx<M>, request: Request) -> Handled {
    let version = request.api_version;
    let order = request.order;
    let Some(body) = request.body else {
        return Handled::Respond(ResponseKind::ApiVersions(cluster::api_versions(true)));
    };
    let response = match body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(cluster::api_versions(false)),
        RequestKind::Metadata(request) => {
            ResponseKind::Metadata(cluster::metadata(ctx, request, version).await)
        }
        RequestKind::DescribeCluster(_) => {
            ResponseKind::DescribeCluster(cluster::describe_cluster(ctx))
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
        other => {
            // `decode` only lets implemented APIs through.
            tracing::error!(api = ?std::mem::discriminant(&other), "request for an api without a handler");
            return Handled::Close;
        }
    };
    Handled::Respond(response)
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
