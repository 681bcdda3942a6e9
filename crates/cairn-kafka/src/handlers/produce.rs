//! Produce: validate every batch, append per partition, acknowledge as `acks` asks.

use std::time::Duration;

use bytes::BytesMut;
use cairn_broker::{Acks, PartitionError};
use cairn_meta::MetadataStore;
use cairn_types::batch::RecordBatch;
use cairn_types::limits::{BATCH_BYTES_MAX, DECOMPRESSED_BATCH_BYTES_MAX};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tokio::task::JoinSet;

use super::text;
use crate::compression;
use crate::errors;
use crate::server::Ctx;

/// Longest an `acks=all` produce waits, whatever the client asks.
const PRODUCE_TIMEOUT_MAX: Duration = Duration::from_secs(300);

/// Checks framing, CRC and every record (decompressing into a capped buffer) of a record set.
fn validate(records: &[u8], scratch: &mut Vec<u8>) -> Result<(), String> {
    let mut rest = records;
    if rest.is_empty() {
        return Err("empty record set".to_owned());
    }
    while !rest.is_empty() {
        let (batch, after) =
            RecordBatch::validate_prefix(rest, BATCH_BYTES_MAX).map_err(|e| e.to_string())?;
        compression::validate_records(&batch, scratch, DECOMPRESSED_BATCH_BYTES_MAX)
            .map_err(|e| e.to_string())?;
        rest = after;
    }
    Ok(())
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

/// Serves a produce request; `None` for `acks=0` (no response is sent).
pub(crate) async fn produce<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: ProduceRequest,
    version: i16,
) -> Option<ProduceResponse> {
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
        let name = topic.name.0.as_str().to_owned();
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_topic_id(topic.topic_id),
        );
        for data in topic.partition_data {
            let index = data.index;
            let Some(acks) = acks else {
                let code = ResponseError::InvalidRequiredAcks.code();
                responses[topic_index]
                    .partition_responses
                    .push(partition_error(index, code, None, version));
                continue;
            };
            if transactional {
                let code = ResponseError::TransactionalIdAuthorizationFailed.code();
                let message = Some("transactions are not supported yet".to_owned());
                responses[topic_index]
                    .partition_responses
                    .push(partition_error(index, code, message, version));
                continue;
            }
            let partition = u32::try_from(index).ok().and_then(|i| ctx.broker.partition(&name, i));
            let Some(partition) = partition else {
                let code = ResponseError::UnknownTopicOrPartition.code();
                responses[topic_index]
                    .partition_responses
                    .push(partition_error(index, code, None, version));
                continue;
            };
            let Some(records) = data.records else {
                let code = ResponseError::InvalidRecord.code();
                responses[topic_index]
                    .partition_responses
                    .push(partition_error(index, code, None, version));
                continue;
            };
            tasks.spawn(async move {
                let mut scratch = Vec::new();
                if let Err(message) = validate(&records, &mut scratch) {
                    tracing::debug!(topic = partition.topic(), partition = index, %message, "rejected invalid batch");
                    return (topic_index, partition_error(index, ResponseError::CorruptMessage.code(), Some(message), version));
                }
                // The log rewrites offsets in place; the request's bytes are shared with the frame.
                let mut buffer = BytesMut::from(&records[..]);
                let response = match partition.append(&mut buffer, acks, timeout).await {
                    Ok(appended) => PartitionProduceResponse::default()
                        .with_index(index)
                        .with_base_offset(appended.base_offset.0 as i64)
                        .with_log_append_time_ms(-1)
                        // The log start offset exists from v5.
                        .with_log_start_offset(if version >= 5 { appended.log_start_offset.0 as i64 } else { -1 }),
                    Err(error) => {
                        if !matches!(error, PartitionError::MessageTooLarge { .. } | PartitionError::Timeout) {
                            tracing::warn!(topic = partition.topic(), partition = index, %error, "produce failed");
                        }
                        partition_error(index, errors::partition_code(&error), Some(error.to_string()), version)
                    }
                };
                (topic_index, response)
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((topic_index, response)) => {
                responses[topic_index].partition_responses.push(response)
            }
            Err(error) => tracing::error!(%error, "produce task failed"),
        }
    }
    if acks == Some(Acks::None) {
        return None;
    }
    for topic in &mut responses {
        topic.partition_responses.sort_by_key(|p| p.index);
    }
    Some(ProduceResponse::default().with_responses(responses))
}
