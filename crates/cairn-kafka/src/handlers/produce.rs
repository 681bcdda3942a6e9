//! Produce: validate every batch, recompress those whose codec differs from their topic's
//! `compression.type`, append per partition in the connection's request order, and acknowledge
//! as `acks` asks.
//!
//! Recompression ([`compression::recompress`]) runs under the same bounds as validation: it
//! reuses the batch's capped decompression, runs under the validation semaphore, and a request
//! stores at most [`PRODUCE_STORED_BYTES_MAX`] bytes. Batches already in the topic's codec, all
//! batches of `producer` topics, and control batches are stored byte for byte as sent.
//!
//! Clients pipeline produce requests on one connection and rely on the broker applying them in
//! order (per-partition ordering with several requests in flight). Validation runs as soon as a
//! request arrives; the appends wait for the previous produce request of the connection to have
//! appended ([`AppendOrder`]); the `acks=all` waits for durability overlap freely.

use std::sync::Arc;
use std::time::Duration;

use cairn_broker::{Acks, Appended, OFFSETS_TOPIC, Partition, PartitionError};
use cairn_meta::MetadataStore;
use cairn_metrics::Counter;
use cairn_protocol::compression::{EncodeError, RecompressError};
use cairn_protocol::{compaction, compression};
use cairn_types::batch::{Batches, Compression, RecordBatch};
use cairn_types::limits::{
    BATCH_BYTES_MAX, DECOMPRESSED_BATCH_BYTES_MAX, PRODUCE_STORED_BYTES_MAX,
};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, ResponseKind};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::{Handled, leader_hint, text};
use crate::errors;
use crate::server::Ctx;

/// Longest an `acks=all` produce waits, whatever the client asks.
const PRODUCE_TIMEOUT_MAX: Duration = Duration::from_secs(300);

/// Keeps one connection's produce appends in request order.
pub(crate) struct AppendOrder {
    /// Resolves (or errs, if that request failed early) once the connection's previous produce
    /// request has appended.
    pub previous: Option<oneshot::Receiver<()>>,
    /// Resolved, or dropped, once this request has appended.
    pub appended: oneshot::Sender<()>,
}

/// A partition's record set, validated, as it will be stored.
struct Validated {
    /// Every batch as sent, or recompressed to the topic's codec. A buffer of its own: the log
    /// rewrites offsets in place, and the request's bytes are shared with the frame.
    records: Vec<u8>,
    /// Records in them.
    count: u64,
}

/// Checks framing, CRC and every record (decompressing into a capped buffer) of a record set,
/// and builds the bytes to store: each batch as sent, or recompressed when its codec differs
/// from `topic_codec` ([`compression::stored_codec`]). They take at most `*stored_bytes_left`
/// bytes, which is reduced by what they take.
///
/// Framing and CRC failures are `CORRUPT_MESSAGE` (the bytes were damaged on the way; a retry
/// may help), malformed records `INVALID_RECORD` (a retry cannot), stored bytes over the limit
/// `MESSAGE_TOO_LARGE`.
fn validate(
    records: &[u8],
    topic: &TopicRules,
    scratch: &mut Vec<u8>,
    stored_bytes_left: &mut usize,
) -> Result<Validated, (ResponseError, String)> {
    if records.is_empty() {
        return Err((ResponseError::InvalidRecord, "empty record set".to_owned()));
    }
    let mut stored = Vec::with_capacity(records.len().min(*stored_bytes_left));
    let mut count = 0;
    for batch in Batches::new(records, BATCH_BYTES_MAX) {
        let batch = batch.map_err(|e| (ResponseError::CorruptMessage, e.to_string()))?;
        let codec = compression::stored_codec(batch.header(), topic.codec);
        let room = *stored_bytes_left - stored.len();
        if codec == batch.header().compression() {
            compression::validate_records(&batch, scratch, DECOMPRESSED_BATCH_BYTES_MAX)
                .map_err(|e| (ResponseError::InvalidRecord, e.to_string()))?;
            if batch.as_bytes().len() > room {
                return Err(too_large(batch.as_bytes().len(), room));
            }
            stored.extend_from_slice(batch.as_bytes());
        } else {
            compression::recompress(
                &batch,
                codec,
                scratch,
                DECOMPRESSED_BATCH_BYTES_MAX,
                room,
                &mut stored,
            )
            .map_err(|error| recompress_failed(codec, &error))?;
        }
        if topic.compacted {
            check_keyed(&batch, scratch)?;
        }
        count += u64::from(batch.record_count());
    }
    *stored_bytes_left -= stored.len();
    Ok(Validated { records: stored, count })
}

/// What a topic's configs ask of the batches produced to it.
#[derive(Clone, Copy, Debug, Default)]
struct TopicRules {
    /// `compression.type`'s codec, if not `producer`.
    codec: Option<Compression>,
    /// `cleanup.policy` holds `compact`: every record needs a key.
    compacted: bool,
}

/// Refuses a batch with a keyless record, for a compacted topic (`INVALID_RECORD`, as Kafka).
/// Called once the batch's records were validated: `scratch` then holds them decompressed if
/// the batch is compressed (both `validate_records` and `recompress` leave them there).
fn check_keyed(batch: &RecordBatch<'_>, scratch: &[u8]) -> Result<(), (ResponseError, String)> {
    let body = match batch.header().compression() {
        Compression::None => &batch.as_bytes()[cairn_types::batch::HEADER_BYTES..],
        _ => scratch,
    };
    match compaction::first_keyless(body, batch.header()) {
        Ok(None) => Ok(()),
        Ok(Some(index)) => Err((
            ResponseError::InvalidRecord,
            format!("record {index} has no key: a compacted topic keeps records by key"),
        )),
        Err(error) => Err((ResponseError::InvalidRecord, error.to_string())),
    }
}

/// The answer to a batch that would not fit in what the request may still store.
fn too_large(bytes: usize, bytes_max: usize) -> (ResponseError, String) {
    let message = format!(
        "a batch of {bytes} bytes, as stored, exceeds the {bytes_max} bytes left of the \
         {PRODUCE_STORED_BYTES_MAX} one produce request may store"
    );
    (ResponseError::MessageTooLarge, message)
}

/// The answer to a batch that could not be recompressed to `codec`.
fn recompress_failed(codec: Compression, error: &RecompressError) -> (ResponseError, String) {
    match error {
        RecompressError::Records(error) => (ResponseError::InvalidRecord, error.to_string()),
        RecompressError::Encode(EncodeError::TooLarge { bytes, bytes_max }) => {
            too_large(*bytes, *bytes_max)
        }
        RecompressError::Encode(EncodeError::Compress(error)) => {
            tracing::error!(codec = compression::codec_name(codec), %error, "recompression failed");
            (ResponseError::UnknownServerError, "recompression failed".to_owned())
        }
    }
}

fn partition_error(
    index: i32,
    code: i16,
    message: Option<String>,
    version: i16,
) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        // Error messages exist from v8.
        .with_error_message(message.filter(|_| version >= 8).map(text))
}

fn appended_response(index: i32, appended: &Appended, version: i16) -> PartitionProduceResponse {
    // The log start offset exists from v5.
    let log_start_offset = if version >= 5 { appended.log_start_offset.0 as i64 } else { -1 };
    PartitionProduceResponse::default()
        .with_index(index)
        .with_base_offset(appended.base_offset.0 as i64)
        .with_log_append_time_ms(appended.log_append_time_ms.unwrap_or(-1))
        .with_log_start_offset(log_start_offset)
}

fn failed_response(
    partition: &Partition,
    error: &PartitionError,
    version: i16,
) -> PartitionProduceResponse {
    let index = partition.index() as i32;
    match error {
        // The client's own doing, answered with its code.
        PartitionError::MessageTooLarge { .. }
        | PartitionError::Timeout
        | PartitionError::OutOfOrderSequence { .. }
        | PartitionError::ProducerFenced { .. } => {}
        // Logged once when the partition went offline; every request to it would flood.
        PartitionError::Failed(_) => {
            tracing::debug!(topic = partition.topic(), partition = index, %error, "produce failed");
        }
        _ => tracing::warn!(topic = partition.topic(), partition = index, %error, "produce failed"),
    }
    let code = errors::partition_code(error);
    let response = partition_error(index, code, Some(errors::partition_message(error)), version);
    match leader_hint::current_leader(partition, code) {
        Some((leader, epoch)) if version >= leader_hint::PRODUCE_VERSION_MIN => response
            .with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(epoch),
            ),
        _ => response,
    }
}

/// KIP-951: the endpoints of the leaders named in `responses`' hints (from v10).
/// A hint naming a leader the metadata does not list as alive is taken back (the client
/// then asks Metadata).
fn node_endpoints<M: MetadataStore>(
    ctx: &Ctx<M>,
    responses: &mut [TopicProduceResponse],
    version: i16,
) -> Vec<NodeEndpoint> {
    if version < leader_hint::PRODUCE_VERSION_MIN {
        return Vec::new();
    }
    let hints = responses.iter_mut().flat_map(|t| &mut t.partition_responses);
    let leader_of = |hint: &LeaderIdAndEpoch| hint.leader_id.0;
    leader_hint::live_endpoints(ctx, hints.map(|p| &mut p.current_leader).collect(), leader_of)
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

/// A partition's part of the request once validated.
struct Ready {
    topic: usize,
    partition: Arc<Partition>,
    records: Vec<u8>,
    count: u64,
    /// Bytes and records produced, for metrics.
    counters: [Arc<Counter>; 2],
}

/// Resolves and validates every partition of the request: the ones ready to append, and the
/// answers of the ones refused already.
fn prepare<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: ProduceRequest,
    acks: Option<Acks>,
    version: i16,
) -> (Vec<TopicProduceResponse>, Vec<Ready>) {
    let transactional = request.transactional_id.is_some();
    let mut responses: Vec<TopicProduceResponse> = Vec::with_capacity(request.topic_data.len());
    let mut ready = Vec::new();
    let mut scratch = Vec::new();
    let mut stored_bytes_left = PRODUCE_STORED_BYTES_MAX;
    for (topic_index, topic) in request.topic_data.into_iter().enumerate() {
        // From v13 topics are named by id.
        let name = if version >= 13 {
            super::topic_name(ctx, topic.topic_id).unwrap_or_default()
        } else {
            topic.name.0.as_str().to_owned()
        };
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_topic_id(topic.topic_id),
        );
        // A topic deleted meanwhile has no partition left to find below.
        let meta = ctx.broker.meta().topic(&name);
        let rules = meta.map_or_else(TopicRules::default, |meta| TopicRules {
            codec: meta.configs.compression_type().codec(),
            compacted: meta.configs.cleanup_policy().compact,
        });
        for data in topic.partition_data {
            let index = data.index;
            let partition = u32::try_from(index).ok().and_then(|i| ctx.broker.partition(&name, i));
            let accepted = match (acks, partition, data.records) {
                (None, _, _) => Err((ResponseError::InvalidRequiredAcks, None)),
                _ if transactional => Err((
                    ResponseError::TransactionalIdAuthorizationFailed,
                    Some("transactions are not supported yet".to_owned()),
                )),
                (_, None, _) => Err((ResponseError::UnknownTopicOrPartition, None)),
                _ if name == OFFSETS_TOPIC => Err((
                    ResponseError::InvalidTopicException,
                    Some(format!(
                        "{OFFSETS_TOPIC} is internal: only the group coordinator writes it"
                    )),
                )),
                (_, _, None) => Err((ResponseError::InvalidRecord, None)),
                (_, Some(partition), Some(records)) => {
                    validate(&records, &rules, &mut scratch, &mut stored_bytes_left)
                        .map(|validated| (partition, validated))
                        .map_err(|(error, message)| (error, Some(message)))
                }
            };
            match accepted {
                Ok((partition, Validated { records, count })) => {
                    let labels = [name.as_str(), &index.to_string()];
                    let counters = [
                        ctx.metrics.produced_bytes.with(&labels),
                        ctx.metrics.produced_records.with(&labels),
                    ];
                    ready.push(Ready { topic: topic_index, partition, records, count, counters });
                }
                Err((error, message)) => {
                    let response = partition_error(index, error.code(), message, version);
                    responses[topic_index].partition_responses.push(response);
                }
            }
        }
    }
    (responses, ready)
}

/// Proposes every validated partition's records in order, and answers those refused at once
/// into `responses`; the others are answered by the returned tasks (the topic's position in
/// `responses`, the answer): once appended (`acks=1`) or committed (`acks=all`), or timed out.
/// `acks=0` waits for nothing.
async fn append(
    ready: Vec<Ready>,
    acks: Acks,
    timeout: Duration,
    version: i16,
    responses: &mut [TopicProduceResponse],
) -> JoinSet<(usize, PartitionProduceResponse)> {
    let mut waits = JoinSet::new();
    for part in ready {
        let index = part.partition.index() as i32;
        let bytes_len = part.records.len() as u64;
        match part.partition.propose(part.records, acks).await {
            Ok(proposed) => {
                let [bytes, records] = &part.counters;
                bytes.add(bytes_len);
                records.add(part.count);
                if acks == Acks::None {
                    continue;
                }
                let partition = part.partition;
                waits.spawn(async move {
                    let response = match proposed.wait(timeout).await {
                        Ok(appended) => appended_response(index, &appended, version),
                        Err(error) => failed_response(&partition, &error, version),
                    };
                    (part.topic, response)
                });
            }
            Err(error) => {
                let response = failed_response(&part.partition, &error, version);
                responses[part.topic].partition_responses.push(response);
            }
        }
    }
    waits
}

/// Serves a produce request. With `acks=0` nothing is answered, and a refused partition closes
/// the connection.
pub(crate) async fn produce<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: ProduceRequest,
    version: i16,
    order: AppendOrder,
) -> Handled {
    let acks = match request.acks {
        0 => Some(Acks::None),
        1 => Some(Acks::Leader),
        -1 => Some(Acks::All),
        _ => None,
    };
    // `acks=1` is answered at the leader's append, whatever timeout the client sent (Kafka
    // ignores it then); `acks=all` waits at most the client's timeout.
    let timeout = match acks {
        Some(Acks::All) => Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0)),
        _ => PRODUCE_TIMEOUT_MAX,
    }
    .min(PRODUCE_TIMEOUT_MAX)
    .min(ctx.config.request_timeout);
    let (mut responses, ready) = {
        // The semaphore is never closed, so this waits for a permit and never fails.
        let _permit = ctx.validations.acquire().await;
        prepare(ctx, request, acks, version)
    };
    if let Some(previous) = order.previous {
        // An error means the previous request ended without appending: nothing to wait for.
        let _ = previous.await;
    }
    let mut durable_waits = match acks {
        Some(acks) => append(ready, acks, timeout, version, &mut responses).await,
        None => JoinSet::new(),
    };
    // The next produce request of this connection may append now.
    let _ = order.appended.send(());
    while let Some(joined) = durable_waits.join_next().await {
        match joined {
            Ok((topic, response)) => responses[topic].partition_responses.push(response),
            Err(error) => tracing::error!(%error, "produce durability wait failed"),
        }
    }
    for topic in &mut responses {
        topic.partition_responses.sort_by_key(|p| p.index);
    }
    let refused =
        responses.iter().flat_map(|t| &t.partition_responses).any(|p| p.error_code != errors::NONE);
    let endpoints = node_endpoints(ctx, &mut responses, version);
    let response = ResponseKind::Produce(
        ProduceResponse::default().with_responses(responses).with_node_endpoints(endpoints),
    );
    match acks {
        Some(Acks::None) if refused => Handled::Refused(response),
        Some(Acks::None) => Handled::Silent,
        Some(Acks::Leader | Acks::All) | None => Handled::Respond(response),
    }
}
