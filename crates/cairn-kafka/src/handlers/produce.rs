//! Produce: validate every batch, append per partition, acknowledge as `acks` asks.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cairn_broker::{Acks, Partition, PartitionError};
use cairn_meta::MetadataStore;
use cairn_metrics::Counter;
use cairn_types::batch::RecordBatch;
use cairn_types::limits::{BATCH_BYTES_MAX, DECOMPRESSED_BATCH_BYTES_MAX};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use tokio::task::JoinSet;

use super::{Handled, text};
use crate::compression;
use crate::errors;
use crate::server::Ctx;

/// Longest an `acks=all` produce waits, whatever the client asks.
const PRODUCE_TIMEOUT_MAX: Duration = Duration::from_secs(300);

/// Checks framing, CRC and every record (decompressing into a capped buffer) of a record set;
/// returns the number of records. Framing and CRC failures are `CORRUPT_MESSAGE` (the bytes were
/// damaged on the way; a retry may help), malformed records `INVALID_RECORD` (a retry cannot).
fn validate(records: &[u8], scratch: &mut Vec<u8>) -> Result<u64, (ResponseError, String)> {
    let mut rest = records;
    if rest.is_empty() {
        return Err((ResponseError::InvalidRecord, "empty record set".to_owned()));
    }
    let mut count = 0;
    while !rest.is_empty() {
        let (batch, after) = RecordBatch::validate_prefix(rest, BATCH_BYTES_MAX)
            .map_err(|e| (ResponseError::CorruptMessage, e.to_string()))?;
        compression::validate_records(&batch, scratch, DECOMPRESSED_BATCH_BYTES_MAX)
            .map_err(|e| (ResponseError::InvalidRecord, e.to_string()))?;
        count += u64::from(batch.record_count());
        rest = after;
    }
    Ok(count)
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

/// Appends one partition's record set and builds its answer.
async fn append(
    partition: Arc<Partition>,
    records: Bytes,
    acks: Acks,
    timeout: Duration,
    version: i16,
    counters: [Arc<Counter>; 2],
) -> PartitionProduceResponse {
    let index = partition.index() as i32;
    let mut scratch = Vec::new();
    let records_count = match validate(&records, &mut scratch) {
        Ok(count) => count,
        Err((error, message)) => {
            tracing::debug!(topic = partition.topic(), partition = index, %message, "rejected invalid batch");
            return partition_error(index, error.code(), Some(message), version);
        }
    };
    // The log rewrites offsets in place; the request's bytes are shared with the frame.
    let mut buffer = BytesMut::from(&records[..]);
    match partition.append(&mut buffer, acks, timeout).await {
        Ok(appended) => {
            let [bytes, records] = counters;
            bytes.add(buffer.len() as u64);
            records.add(records_count);
            // The log start offset exists from v5.
            let log_start_offset =
                if version >= 5 { appended.log_start_offset.0 as i64 } else { -1 };
            PartitionProduceResponse::default()
                .with_index(index)
                .with_base_offset(appended.base_offset.0 as i64)
                .with_log_append_time_ms(appended.log_append_time_ms.unwrap_or(-1))
                .with_log_start_offset(log_start_offset)
        }
        Err(error) => {
            if !matches!(error, PartitionError::MessageTooLarge { .. } | PartitionError::Timeout) {
                tracing::warn!(topic = partition.topic(), partition = index, %error, "produce failed");
            }
            partition_error(index, errors::partition_code(&error), Some(error.to_string()), version)
        }
    }
}

/// Serves a produce request. With `acks=0` nothing is answered, and a refused partition closes
/// the connection.
pub(crate) async fn produce<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: ProduceRequest,
    version: i16,
) -> Handled {
    let acks = match request.acks {
        0 => Some(Acks::None),
        1 => Some(Acks::Leader),
        -1 => Some(Acks::All),
        _ => None,
    };
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0))
        .min(PRODUCE_TIMEOUT_MAX);
    let transactional = request.transactional_id.is_some();
    let mut tasks = JoinSet::new();
    let mut responses: Vec<TopicProduceResponse> = Vec::with_capacity(request.topic_data.len());
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
                (_, _, None) => Err((ResponseError::InvalidRecord, None)),
                (Some(acks), Some(partition), Some(records)) => Ok((acks, partition, records)),
            };
            let (acks, partition, records) = match accepted {
                Ok(accepted) => accepted,
                Err((error, message)) => {
                    let response = partition_error(index, error.code(), message, version);
                    responses[topic_index].partition_responses.push(response);
                    continue;
                }
            };
            let labels = [name.as_str(), &index.to_string()];
            let counters = [
                ctx.metrics.produced_bytes.with(&labels),
                ctx.metrics.produced_records.with(&labels),
            ];
            tasks.spawn(async move {
                (topic_index, append(partition, records, acks, timeout, version, counters).await)
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((topic_index, response)) => {
                ctx.metrics.error("Produce", response.error_code);
                responses[topic_index].partition_responses.push(response);
            }
            Err(error) => tracing::error!(%error, "produce task failed"),
        }
    }
    if acks == Some(Acks::None) {
        let refused =
            responses.iter().flat_map(|t| &t.partition_responses).any(|p| p.error_code != 0);
        return if refused { Handled::Close } else { Handled::Silent };
    }
    for topic in &mut responses {
        topic.partition_responses.sort_by_key(|p| p.index);
    }
    Handled::Respond(ResponseKind::Produce(ProduceResponse::default().with_responses(responses)))
}
