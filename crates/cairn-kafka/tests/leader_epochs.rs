//! OffsetForLeaderEpoch over real TCP against a node restarted on its data (every restart of a
//! one-voter group is a new leader epoch): the current epoch ends at the log end, an older one
//! where the next began, at every version; the request's current leader epoch fenced or
//! unknown; an unknown topic or partition; a request with an absurd array count refused
//! without allocating. And the KIP-951 hint of a Fetch refused for a fenced epoch: the leader,
//! its epoch and its endpoint. Bounds are the harness's response timeouts; no sleeps.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cairn_meta::MetadataStore;
use cairn_testkit::TestNode;
use cairn_testkit::wire::{Connection, request_frame};
use cairn_types::batch::BatchBuilder;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::EpochEndOffset;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOPIC: &str = "epochs";
const BOUND: Duration = Duration::from_secs(20);

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

/// Produces `count` records to partition 0 with acks=all; returns the batch's base offset.
async fn produce(conn: &mut Connection, count: usize) -> i64 {
    let mut batch = BatchBuilder::new(1_700_000_000_000);
    for _ in 0..count {
        batch = batch.record(None, Some(b"v"), &[]);
    }
    let data =
        PartitionProduceData::default().with_index(0).with_records(Some(batch.build().into()));
    let request =
        ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
            TopicProduceData::default().with_name(name(TOPIC)).with_partition_data(vec![data]),
        ]);
    let response: ProduceResponse = conn.call(ApiKey::Produce, 9, &request).await;
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0, "{partition:?}");
    partition.base_offset
}

/// The partition's leader epoch and high watermark, from ListOffsets(latest) v4.
async fn epoch_and_end(conn: &mut Connection) -> (i32, i64) {
    let partition = ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1);
    let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        ListOffsetsTopic::default().with_name(name(TOPIC)).with_partitions(vec![partition]),
    ]);
    let response: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, 4, &request).await;
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0, "{partition:?}");
    (partition.leader_epoch, partition.offset)
}

/// OffsetForLeaderEpoch at `version` for `(topic, partition, current_leader_epoch,
/// leader_epoch)` each.
async fn ask(
    conn: &mut Connection,
    version: i16,
    wanted: &[(&str, i32, i32, i32)],
) -> Vec<EpochEndOffset> {
    let topics = wanted
        .iter()
        .map(|&(topic, partition, current, epoch)| {
            let partition = OffsetForLeaderPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(current)
                .with_leader_epoch(epoch);
            OffsetForLeaderTopic::default().with_topic(name(topic)).with_partitions(vec![partition])
        })
        .collect();
    let request =
        OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(-1)).with_topics(topics);
    let response: OffsetForLeaderEpochResponse =
        conn.call(ApiKey::OffsetForLeaderEpoch, version, &request).await;
    assert_eq!(response.topics.len(), wanted.len());
    response.topics.into_iter().flat_map(|topic| topic.partitions).collect()
}

/// `(error, epoch, end offset)` of one answer.
fn triple(answer: &EpochEndOffset) -> (i16, i32, i64) {
    (answer.error_code, answer.leader_epoch, answer.end_offset)
}

/// Asks for each `(epoch, expected epoch, expected end)` at every version, with no current
/// epoch and with the current one.
async fn check_ends(conn: &mut Connection, current: i32, expected: &[(i32, i32, i64)]) {
    for version in 2..=4 {
        for &(epoch, found, end) in expected {
            for fence in [-1, current] {
                let answer = ask(conn, version, &[(TOPIC, 0, fence, epoch)]).await;
                assert_eq!(triple(&answer[0]), (0, found, end), "v{version} epoch {epoch}");
            }
        }
    }
}

async fn restart(node: TestNode) -> (TestNode, Connection) {
    let node = TestNode::builder_in(node.stop().await).start().await;
    let conn = Connection::open(node.addr()).await;
    (node, conn)
}

#[tokio::test]
async fn every_epoch_ends_where_the_next_began_across_restarts() {
    let node = TestNode::start().await;
    node.create_topic(TOPIC, 1).await;
    let mut conn = Connection::open(node.addr()).await;
    let versions: ApiVersionsResponse =
        conn.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).await;
    let listed =
        versions.api_keys.iter().find(|k| k.api_key == ApiKey::OffsetForLeaderEpoch as i16);
    assert_eq!(listed.map(|k| (k.min_version, k.max_version)), Some((2, 4)));

    let base = produce(&mut conn, 3).await;
    let (first, end) = epoch_and_end(&mut conn).await;
    assert_eq!(end, base + 3);
    // The current epoch ends at the log end; a newer one is unknown here: undefined, no error.
    check_ends(&mut conn, first, &[(first, first, end)]).await;
    let newer = ask(&mut conn, 4, &[(TOPIC, 0, -1, first + 1)]).await;
    assert_eq!(triple(&newer[0]), (0, -1, -1));
    let undefined = ask(&mut conn, 4, &[(TOPIC, 0, -1, -1)]).await;
    assert_eq!(triple(&undefined[0]), (0, -1, -1));

    // Each restart is a new epoch, whose first entry (Raft's blank) starts where the last
    // epoch ended.
    let (node, mut conn) = restart(node).await;
    produce(&mut conn, 2).await;
    let (second, second_end) = epoch_and_end(&mut conn).await;
    assert!(second > first, "{second} after {first}");
    assert_eq!(second_end, end + 1 + 2, "the blank entry, then two records");
    check_ends(&mut conn, second, &[(first, first, end), (second, second, second_end)]).await;
    // An epoch between the two (if the term moved more than once) is the older one's.
    for between in first + 1..second {
        check_ends(&mut conn, second, &[(between, first, end)]).await;
    }

    let (node, mut conn) = restart(node).await;
    let (third, third_end) = epoch_and_end(&mut conn).await;
    assert_eq!(third_end, second_end + 1, "only the blank entry");
    let expected = [(first, first, end), (second, second, second_end), (third, third, third_end)];
    check_ends(&mut conn, third, &expected).await;
    node.stop().await;
}

#[tokio::test]
async fn fenced_unknown_and_missing_partitions_are_refused_per_partition() {
    let node = TestNode::start().await;
    node.create_topic(TOPIC, 1).await;
    let mut conn = Connection::open(node.addr()).await;
    let (epoch, end) = epoch_and_end(&mut conn).await;
    for version in 2..=4 {
        let answers = ask(
            &mut conn,
            version,
            &[
                (TOPIC, 0, epoch - 1, epoch),
                (TOPIC, 0, epoch + 1, epoch),
                (TOPIC, 0, epoch, epoch),
                ("nowhere", 0, -1, epoch),
                (TOPIC, 7, -1, epoch),
                (TOPIC, -1, -1, epoch),
            ],
        )
        .await;
        let got: Vec<_> = answers.iter().map(triple).collect();
        let expected = [
            (74, -1, -1), // FENCED_LEADER_EPOCH
            (75, -1, -1), // UNKNOWN_LEADER_EPOCH
            (0, epoch, end),
            (3, -1, -1), // UNKNOWN_TOPIC_OR_PARTITION
            (3, -1, -1),
            (3, -1, -1),
        ];
        assert_eq!(got, expected, "v{version}");
    }
    assert_eq!(node.metric(r#"cairn_kafka_errors_total{api="OffsetForLeaderEpoch",code="74"}"#), 3);
    node.stop().await;
}

#[tokio::test]
async fn an_absurd_partition_count_is_refused_without_allocating() {
    let node = TestNode::start().await;
    let mut conn = Connection::open(node.addr()).await;
    // v4 (flexible): replica id, one topic "t", then a partition count of 2^32 - 2.
    let mut frame = request_frame(
        ApiKey::OffsetForLeaderEpoch,
        4,
        1,
        &OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(-1)),
    );
    let body_start = frame.len() - 2; // empty topics array (1) and no tagged fields (0)
    frame.truncate(body_start);
    frame.extend([2, 2, b't', 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0]);
    let length = i32::try_from(frame.len() - 4).unwrap();
    frame[..4].copy_from_slice(&length.to_be_bytes());
    conn.stream.write_all(&frame).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(BOUND, conn.stream.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "the connection is closed: {read:?}");
    // The node serves on.
    let mut other = Connection::open(node.addr()).await;
    let answer = ask(&mut other, 4, &[("nowhere", 0, -1, 0)]).await;
    assert_eq!(answer[0].error_code, 3);
    node.stop().await;
}

#[tokio::test]
async fn a_fetch_with_a_fenced_epoch_names_the_leader_from_v16() {
    let node = TestNode::start().await;
    node.create_topic(TOPIC, 1).await;
    let mut conn = Connection::open(node.addr()).await;
    let (epoch, _) = epoch_and_end(&mut conn).await;
    let topic_id = node.broker().meta().topic(TOPIC).unwrap().id.as_uuid();
    for version in [12, 15, 16, 17, 18] {
        let partition = FetchPartition::default()
            .with_partition(0)
            .with_current_leader_epoch(epoch - 1)
            .with_partition_max_bytes(1 << 20);
        let topic = FetchTopic::default().with_partitions(vec![partition]);
        let topic = if version >= 13 {
            topic.with_topic_id(topic_id)
        } else {
            topic.with_topic(name(TOPIC))
        };
        let request = FetchRequest::default()
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![topic]);
        let response: FetchResponse = conn.call(ApiKey::Fetch, version, &request).await;
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 74, "v{version}");
        let leader = (partition.current_leader.leader_id.0, partition.current_leader.leader_epoch);
        let endpoints: Vec<_> = response
            .node_endpoints
            .iter()
            .map(|node| (node.node_id.0, node.host.to_string(), node.port))
            .collect();
        if version >= 16 {
            assert_eq!(leader, (0, epoch), "v{version}");
            let port = i32::from(node.addr().port());
            assert_eq!(endpoints, [(0, "127.0.0.1".to_owned(), port)], "v{version}");
        } else {
            assert_eq!(leader, (-1, -1), "no hint before v16");
            assert!(endpoints.is_empty());
        }
    }
    node.stop().await;
}
