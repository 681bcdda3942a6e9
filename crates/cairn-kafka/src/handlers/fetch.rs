//! Fetch: whole batches as stored, long polling on the broker's progress channel. The batches
//! are located, not read: the response sends them from the segment files (`sendfile.rs`).
//!
//! cairn keeps no fetch sessions: a full fetch (session id 0) is answered with session id 0, which
//! tells clients that sessions are not available, so they keep sending full fetches; a request
//! naming a session gets `FETCH_SESSION_ID_NOT_FOUND`.

use std::time::Duration;

use cairn_broker::{Located, Offsets, Partition, PartitionError};
use cairn_meta::MetadataStore;
use cairn_types::limits::READ_BYTES_MAX;
use cairn_types::{LeaderEpoch, Offset};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use tokio::time::Instant;

use super::{leader_hint, text};
use crate::errors;
use crate::sendfile::Ranges;
use crate::server::Ctx;

/// Longest a fetch waits for `min_bytes`, whatever the client asks.
const FETCH_WAIT_MAX: Duration = Duration::from_secs(60);

/// One partition of the request, resolved.
struct Wanted {
    topic: usize,
    /// `None` if the topic is unknown: answered with an error.
    name: Option<String>,
    partition: FetchPartition,
}

fn partition_data(index: i32, code: i16, offsets: Option<Offsets>, version: i16) -> PartitionData {
    let (hw, mut start) =
        offsets.map_or((-1, -1), |o| (o.high_watermark.0 as i64, o.log_start.0 as i64));
    // The log start offset exists from v5.
    if version < 5 {
        start = -1;
    }
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(code)
        .with_high_watermark(hw)
        .with_last_stable_offset(hw)
        .with_log_start_offset(start)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(bytes::Bytes::new()))
}

/// `data` with KIP-951's `current_leader` if its error is a leader refusal (from v16).
fn hinted(data: PartitionData, partition: &Partition, version: i16) -> PartitionData {
    match leader_hint::current_leader(partition, data.error_code) {
        Some((leader, epoch)) if version >= leader_hint::FETCH_VERSION_MIN => {
            let current = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(epoch);
            data.with_current_leader(current)
        }
        _ => data,
    }
}

/// KIP-951: the endpoints of the leaders named in `topics`' hints (from v16).
/// A hint naming a leader the metadata does not list as alive is taken back (the client
/// then asks Metadata).
fn node_endpoints<M: MetadataStore>(
    ctx: &Ctx<M>,
    topics: &mut [FetchableTopicResponse],
    version: i16,
) -> Vec<NodeEndpoint> {
    if version < leader_hint::FETCH_VERSION_MIN {
        return Vec::new();
    }
    let hints = topics.iter_mut().flat_map(|t| &mut t.partitions).map(|p| &mut p.current_leader);
    let leader_of = |hint: &LeaderIdAndEpoch| hint.leader_id.0;
    leader_hint::live_endpoints(ctx, hints.collect(), leader_of)
        .into_iter()
        .map(|node| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(node.id.0 as i32))
                .with_host(text(node.host))
                .with_port(i32::from(node.port))
                .with_rack(node.rack.map(text))
        })
        .collect()
}

/// Serves a fetch, waiting up to `max_wait_ms` for `min_bytes`. The records of partition `p`
/// of topic `t` are the file ranges `[t][p]` of the second value; the response's own records
/// fields are empty.
pub(crate) async fn fetch<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: FetchRequest,
    version: i16,
) -> (FetchResponse, Vec<Vec<Ranges>>) {
    if request.session_id != 0 {
        let response =
            FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
        return (response, Vec::new());
    }
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut wanted = Vec::new();
    for (topic_index, topic) in request.topics.into_iter().enumerate() {
        let name = if version >= 13 {
            super::topic_name(ctx, topic.topic_id)
        } else {
            Some(topic.topic.0.as_str().to_owned())
        };
        let mut response = FetchableTopicResponse::default().with_topic_id(topic.topic_id);
        if version < 13 {
            response = response.with_topic(topic.topic.clone());
        } else if let Some(name) = &name {
            response = response.with_topic(TopicName(text(name.clone())));
        }
        topics.push(response);
        for partition in topic.partitions {
            wanted.push(Wanted { topic: topic_index, name: name.clone(), partition });
        }
    }
    let bytes_max = u32::try_from(request.max_bytes).unwrap_or(0).min(READ_BYTES_MAX);
    let min_bytes = u64::try_from(request.min_bytes).unwrap_or(0);
    let wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0))
        .min(FETCH_WAIT_MAX)
        .min(ctx.config.request_timeout);
    let deadline = Instant::now() + wait;
    let mut progress = ctx.broker.progress();
    let mut shutdown = ctx.shutdown.clone();
    loop {
        progress.borrow_and_update();
        let (responses, bytes, errors) = locate_once(ctx, &wanted, bytes_max, version);
        let stopping = *shutdown.borrow();
        if bytes >= min_bytes || errors || stopping || Instant::now() >= deadline {
            let mut topics = topics;
            let mut files: Vec<Vec<Ranges>> = topics.iter().map(|_| Vec::new()).collect();
            for (topic, data, ranges) in responses {
                let fetched: u64 = ranges.iter().map(|range| u64::from(range.len)).sum();
                if fetched > 0 {
                    let labels =
                        [topics[topic].topic.0.as_str(), &data.partition_index.to_string()];
                    ctx.metrics.fetched_bytes.with(&labels).add(fetched);
                }
                topics[topic].partitions.push(data);
                files[topic].push(ranges);
            }
            let endpoints = node_endpoints(ctx, &mut topics, version);
            let response =
                FetchResponse::default().with_responses(topics).with_node_endpoints(endpoints);
            return (response, files);
        }
        tokio::select! {
            changed = progress.changed() => if changed.is_err() { tokio::time::sleep_until(deadline).await },
                        () = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Locates every wanted partition's batches once; returns the partition answers with their file
/// ranges, the bytes located and whether any partition answered with an error (which ends a long
/// poll at once, as in Kafka).
fn locate_once<M: MetadataStore>(
    ctx: &Ctx<M>,
    wanted: &[Wanted],
    bytes_max: u32,
    version: i16,
) -> (Vec<(usize, PartitionData, Ranges)>, u64, bool) {
    let mut responses = Vec::with_capacity(wanted.len());
    let mut remaining = bytes_max;
    let mut total = 0u64;
    let mut errors = false;
    for want in wanted {
        let index = want.partition.partition;
        let Some(name) = &want.name else {
            errors = true;
            responses.push((
                want.topic,
                partition_data(index, ResponseError::UnknownTopicId.code(), None, version),
                Vec::new(),
            ));
            continue;
        };
        let partition = u32::try_from(index).ok().and_then(|i| ctx.broker.partition(name, i));
        let Some(partition) = partition else {
            errors = true;
            let code = if version >= 13 {
                ResponseError::UnknownTopicId
            } else {
                ResponseError::UnknownTopicOrPartition
            };
            responses.push((
                want.topic,
                partition_data(index, code.code(), None, version),
                Vec::new(),
            ));
            continue;
        };
        let epoch = want.partition.current_leader_epoch;
        if let Err(error) = partition.check_epoch((epoch >= 0).then_some(LeaderEpoch(epoch))) {
            errors = true;
            let code = errors::partition_code(&error);
            let data = partition_data(index, code, Some(partition.offsets()), version);
            responses.push((want.topic, hinted(data, &partition, version), Vec::new()));
            continue;
        }
        let Ok(from) = u64::try_from(want.partition.fetch_offset) else {
            errors = true;
            let code = ResponseError::OffsetOutOfRange.code();
            responses.push((
                want.topic,
                partition_data(index, code, Some(partition.offsets()), version),
                Vec::new(),
            ));
            continue;
        };
        let partition_max = u32::try_from(want.partition.partition_max_bytes).unwrap_or(0);
        // Once the response is full, later partitions answer empty (KIP-74: only the first
        // partition with data may exceed the limit, by one batch).
        if remaining == 0 && total > 0 {
            responses.push((
                want.topic,
                partition_data(index, errors::NONE, Some(partition.offsets()), version),
                Vec::new(),
            ));
            continue;
        }
        match partition.locate(Offset(from), partition_max.min(remaining.max(1))) {
            Ok(Located { ranges, bytes, offsets }) => {
                total += bytes;
                remaining = remaining.saturating_sub(u32::try_from(bytes).unwrap_or(u32::MAX));
                let data = partition_data(index, errors::NONE, Some(offsets), version);
                responses.push((want.topic, data, ranges));
            }
            Err(error) => {
                errors = true;
                match error {
                    PartitionError::OffsetOutOfRange { .. } => {}
                    // Logged once when the partition went offline; consumers poll it on.
                    PartitionError::Failed(_) => {
                        tracing::debug!(topic = partition.topic(), partition = index, %error, "fetch failed");
                    }
                    _ => {
                        tracing::warn!(topic = partition.topic(), partition = index, %error, "fetch failed");
                    }
                }
                let offsets = match &error {
                    PartitionError::OffsetOutOfRange { offsets } => Some(*offsets),
                    _ => Some(partition.offsets()),
                };
                let data = partition_data(index, errors::partition_code(&error), offsets, version);
                responses.push((want.topic, hinted(data, &partition, version), Vec::new()));
            }
        }
    }
    (responses, total, errors)
}
