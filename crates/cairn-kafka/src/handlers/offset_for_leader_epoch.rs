//! OffsetForLeaderEpoch (KIP-101, KIP-320): where a leader epoch ends, from the leader's
//! leader-epoch history, so that a consumer can detect a log truncated under its position.
//!
//! Answered as Kafka answers it: per partition, on the leader only, after the request's current
//! leader epoch is checked (older: `FENCED_LEADER_EPOCH`, newer: `UNKNOWN_LEADER_EPOCH`, -1: no
//! check). The replica id (-1 a consumer, -2 a debugging tool, a broker id a follower) only
//! decides authorization in Kafka; cairn has no authorizer and answers every caller alike.

use cairn_meta::MetadataStore;
use cairn_types::LeaderEpoch;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderPartition;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::errors;
use crate::server::Ctx;

/// The answer for one partition of topic `topic`.
fn partition_end<M: MetadataStore>(
    ctx: &Ctx<M>,
    topic: &str,
    wanted: &OffsetForLeaderPartition,
) -> EpochEndOffset {
    // The default answer is Kafka's undefined one: epoch -1, end offset -1.
    let response = EpochEndOffset::default().with_partition(wanted.partition);
    let partition =
        u32::try_from(wanted.partition).ok().and_then(|index| ctx.broker.partition(topic, index));
    let Some(partition) = partition else {
        return response.with_error_code(ResponseError::UnknownTopicOrPartition.code());
    };
    let current =
        (wanted.current_leader_epoch != -1).then_some(LeaderEpoch(wanted.current_leader_epoch));
    match partition.epoch_end(current, LeaderEpoch(wanted.leader_epoch)) {
        Ok(Some(end)) => response
            .with_leader_epoch(end.epoch.0)
            .with_end_offset(i64::try_from(end.end_offset.0).unwrap_or(i64::MAX)),
        Ok(None) => response,
        Err(error) => response.with_error_code(errors::partition_code(&error)),
    }
}

/// Serves OffsetForLeaderEpoch.
pub(crate) fn offset_for_leader_epoch<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: &OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.topic.0.as_str();
            let partitions =
                topic.partitions.iter().map(|wanted| partition_end(ctx, name, wanted)).collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
