//! ListOffsets: earliest, latest, and the first offset at or after a timestamp.

use cairn_broker::{Partition, PartitionError};
use cairn_meta::MetadataStore;
use cairn_protocol::compression;
use cairn_types::batch::{Batches, Compression};
use cairn_types::limits::{BATCH_BYTES_MAX, DECOMPRESSED_BATCH_BYTES_MAX};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::errors;
use crate::server::Ctx;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// The exact offset and timestamp of the first record with timestamp `>= target` in a batch.
fn refine(batch_bytes: &[u8], target: i64) -> Option<(i64, i64)> {
    let batch = Batches::new(batch_bytes, BATCH_BYTES_MAX).next()?.ok()?;
    let header = *batch.header();
    let mut scratch = Vec::new();
    let records = if header.compression() == Compression::None {
        cairn_types::batch::records_in(
            &batch.as_bytes()[cairn_types::batch::HEADER_BYTES..],
            header.record_count,
        )
    } else {
        compression::decompress(
            header.compression(),
            &batch.as_bytes()[cairn_types::batch::HEADER_BYTES..],
            &mut scratch,
            DECOMPRESSED_BATCH_BYTES_MAX,
        )
        .ok()?;
        cairn_types::batch::records_in(&scratch, header.record_count)
    };
    for record in records {
        let record = record.ok()?;
        let timestamp = header.base_timestamp + record.timestamp_delta;
        if timestamp >= target {
            return Some((header.base_offset.0 as i64 + i64::from(record.offset_delta), timestamp));
        }
    }
    // Only the batch's max timestamp qualified (e.g. log-append time): answer the batch.
    Some((header.base_offset.0 as i64, header.max_timestamp))
}

fn lookup(partition: &Partition, timestamp: i64) -> Result<(i64, i64), i16> {
    // An offline partition knows no offsets it can vouch for (one whose log could not be opened
    // knows none at all): KAFKA_STORAGE_ERROR, as for produce and fetch.
    if let Some(reason) = partition.offline() {
        return Err(errors::partition_code(&PartitionError::Failed(reason.to_owned())));
    }
    match timestamp {
        LATEST => match partition.latest_offset() {
            Ok(Some(high_watermark)) => Ok((high_watermark.0 as i64, -1)),
            // A new leader whose term has not committed yet (RFC 0003 §4).
            Ok(None) => Err(ResponseError::OffsetNotAvailable.code()),
            Err(error) => Err(errors::partition_code(&error)),
        },
        EARLIEST => Ok((partition.offsets().log_start.0 as i64, -1)),
        t if t >= 0 => match partition.batch_for_timestamp(t) {
            Ok(Some((_, bytes))) => Ok(refine(&bytes, t).unwrap_or((-1, -1))),
            Ok(None) => Ok((-1, -1)),
            Err(error) => Err(errors::partition_code(&error)),
        },
        // The record with the largest timestamp: the first one reaching the maximum.
        MAX_TIMESTAMP => match partition.max_timestamp() {
            None => Ok((-1, -1)),
            Some(max) => lookup(partition, max),
        },
        // -4 (earliest local): every segment is local, so the log start. -5 (latest tiered):
        // nothing is tiered, answered "none" (-1) as Kafka does without tiered storage.
        -4 => lookup(partition, EARLIEST),
        -5 => Ok((-1, -1)),
        _ => Err(ResponseError::InvalidRequest.code()),
    }
}

/// Serves ListOffsets.
pub(crate) fn list_offsets<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.as_str().to_owned();
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let partition = u32::try_from(p.partition_index)
                        .ok()
                        .and_then(|i| ctx.broker.partition(&name, i));
                    let Some(partition) = partition else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_offset(-1)
                            .with_timestamp(-1);
                    };
                    match lookup(&partition, p.timestamp) {
                        Ok((offset, timestamp)) => response
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(if version >= 4 {
                                partition.leader_epoch().0
                            } else {
                                -1
                            }),
                        Err(code) => {
                            response.with_error_code(code).with_offset(-1).with_timestamp(-1)
                        }
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
