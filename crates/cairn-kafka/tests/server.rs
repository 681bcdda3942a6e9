//! The Kafka listener over real TCP: version negotiation, hostile frames (stalled and TLS ones
//! included), ordered pipelining, acks=0, error counting and messages, authorized operations,
//! and graceful shutdown with a long poll or a stalled frame in flight. The node is
//! `cairn_testkit::TestNode` (a real broker, LocalMetadata and partition logs in a temporary
//! directory); bounds are `tokio::time::timeout`s, never sleeps.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::{Buf, Bytes};
use cairn_meta::MetadataStore;
use cairn_testkit::wire::{Connection, read_response, request_frame};
use cairn_testkit::{TestNode, TestNodeBuilder};
use cairn_types::batch::BatchBuilder;
use cairn_types::limits::FRAME_BYTES_MAX;
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DescribeClusterRequest,
    DescribeClusterResponse, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, TopicName as WireTopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BOUND: Duration = Duration::from_secs(20);

/// The node of most tests: topics auto-created, a 60 s request timeout.
fn node() -> TestNodeBuilder {
    TestNode::builder().server(|config| {
        config.auto_create_topics = true;
        config.request_timeout = Duration::from_secs(60);
    })
}

async fn start() -> TestNode {
    node().start().await
}

/// Whether the server closed the connection (EOF or reset within the bound).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(BOUND, stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

async fn connect(node: &TestNode) -> TcpStream {
    TcpStream::connect(node.addr()).await.unwrap()
}

async fn api_versions_works(node: &TestNode) {
    let mut stream = connect(node).await;
    stream
        .write_all(&request_frame(ApiKey::ApiVersions, 3, 7, &ApiVersionsRequest::default()))
        .await
        .unwrap();
    let (correlation_id, mut body) = read_response(&mut stream, ApiKey::ApiVersions, 3).await;
    assert_eq!(correlation_id, 7);
    let versions = ApiVersionsResponse::decode(&mut body, 3).unwrap();
    assert_eq!(versions.error_code, 0);
    let produce = versions.api_keys.iter().find(|k| k.api_key == ApiKey::Produce as i16).unwrap();
    assert!(produce.min_version <= 3 && produce.max_version >= 9);
}

#[tokio::test]
async fn api_versions_lists_the_served_apis() {
    let node = start().await;
    api_versions_works(&node).await;
}

#[tokio::test]
async fn unknown_api_versions_version_gets_the_v0_error_answer() {
    let node = start().await;
    let mut stream = connect(&node).await;
    // A client newer than the broker: ApiVersions v99 (flexible header, as every version from v3)
    // with a body the broker cannot parse.
    let mut request = request_frame(ApiKey::ApiVersions, 3, 11, &ApiVersionsRequest::default());
    request[6..8].copy_from_slice(&99i16.to_be_bytes());
    request.extend_from_slice(&[0xde, 0xad]);
    let length = (request.len() - 4) as i32;
    request[..4].copy_from_slice(&length.to_be_bytes());
    stream.write_all(&request).await.unwrap();
    let (correlation_id, mut body) = read_response(&mut stream, ApiKey::ApiVersions, 0).await;
    assert_eq!(correlation_id, 11);
    let versions = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(versions.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(!versions.api_keys.is_empty());
}

#[tokio::test]
async fn hostile_frames_close_the_connection_and_nothing_else() {
    let node = start().await;
    let hostile: [&[u8]; 4] = [
        // Absurd length prefix: refused before anything is allocated.
        &0x7fff_ffffi32.to_be_bytes(),
        // Negative and too-short lengths.
        &(-1i32).to_be_bytes(),
        &[0, 0, 0, 5, 0, 3, 0, 1, 0],
        // Metadata v1 claiming 2^31 - 1 topics in a 16-byte body.
        &[0, 0, 0, 16, 0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0],
    ];
    for bytes in hostile {
        let mut stream = connect(&node).await;
        stream.write_all(bytes).await.unwrap();
        assert!(closed(&mut stream).await, "connection kept open after {bytes:?}");
    }
    // The broker still serves everyone else.
    api_versions_works(&node).await;
}

#[tokio::test]
async fn pipelined_responses_keep_request_order() {
    let node = start().await;
    let mut stream = connect(&node).await;
    let mut requests = Vec::new();
    for correlation_id in 0..32 {
        if correlation_id % 2 == 0 {
            requests.extend(request_frame(
                ApiKey::Metadata,
                9,
                correlation_id,
                &MetadataRequest::default(),
            ));
        } else {
            requests.extend(request_frame(
                ApiKey::ApiVersions,
                3,
                correlation_id,
                &ApiVersionsRequest::default(),
            ));
        }
    }
    stream.write_all(&requests).await.unwrap();
    for expected in 0..32 {
        let (api_key, version) =
            if expected % 2 == 0 { (ApiKey::Metadata, 9) } else { (ApiKey::ApiVersions, 3) };
        let (correlation_id, _) = read_response(&mut stream, api_key, version).await;
        assert_eq!(correlation_id, expected);
    }
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    let partition = FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20);
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(WireTopicName(StrBytes::from_string(topic.into())))
                .with_partitions(vec![partition]),
        ])
}

#[tokio::test]
async fn produce_with_acks_0_gets_no_response_but_is_appended() {
    let node = start().await;
    node.create_topic("quiet", 1).await;
    let records = BatchBuilder::new(1_700_000_000_000).record(Some(b"k"), Some(b"v"), &[]).build();
    let produce =
        ProduceRequest::default().with_acks(0).with_timeout_ms(1000).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(WireTopicName(StrBytes::from_static_str("quiet")))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records.clone().into())),
                ]),
        ]);
    let mut stream = connect(&node).await;
    stream.write_all(&request_frame(ApiKey::Produce, 9, 1, &produce)).await.unwrap();
    // Long-poll until the record is durable: the fetch answers only when there is data. The
    // record follows the group's membership (0) and blank (1) entries.
    stream
        .write_all(&request_frame(ApiKey::Fetch, 12, 2, &fetch_request("quiet", 2, 10_000)))
        .await
        .unwrap();
    let (correlation_id, mut body) = read_response(&mut stream, ApiKey::Fetch, 12).await;
    assert_eq!(correlation_id, 2, "the acks=0 produce must not be answered");
    let fetched = FetchResponse::decode(&mut body, 12).unwrap();
    let partition = &fetched.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 3);
    let mut stored = partition.records.clone().unwrap();
    assert_eq!(stored.len(), records.len());
    assert_eq!(stored.get_i64(), 2, "base offset assigned by the log");
}

#[tokio::test]
async fn shutdown_answers_long_polls_and_stops() {
    let node = start().await;
    node.create_topic("idle", 1).await;
    let mut stream = connect(&node).await;
    stream
        .write_all(&request_frame(ApiKey::Fetch, 12, 5, &fetch_request("idle", 2, 60_000)))
        .await
        .unwrap();
    // Make sure the fetch is being served (it parks until data or shutdown) before stopping.
    let mut probe = connect(&node).await;
    probe
        .write_all(&request_frame(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default()))
        .await
        .unwrap();
    read_response(&mut probe, ApiKey::ApiVersions, 3).await;
    node.signal_stop();
    let (correlation_id, mut body) = read_response(&mut stream, ApiKey::Fetch, 12).await;
    assert_eq!(correlation_id, 5);
    let fetched = FetchResponse::decode(&mut body, 12).unwrap();
    assert_eq!(fetched.responses[0].partitions[0].records.as_ref().map(Bytes::len), Some(0));
    node.stop().await;
}

fn produce_request(topic: &str, topic_id: uuid::Uuid, acks: i16) -> ProduceRequest {
    let records = BatchBuilder::new(1_700_000_000_000).record(Some(b"k"), Some(b"v"), &[]).build();
    let partition =
        PartitionProduceData::default().with_index(0).with_records(Some(records.into()));
    ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(WireTopicName(StrBytes::from_string(topic.into())))
            .with_topic_id(topic_id)
            .with_partition_data(vec![partition]),
    ])
}

#[tokio::test]
async fn produce_v13_names_topics_by_id() {
    let node = start().await;
    node.create_topic("by-id", 1).await;
    let id = node.broker().meta().topic("by-id").unwrap().id.as_uuid();
    let mut stream = connect(&node).await;
    stream
        .write_all(&request_frame(ApiKey::Produce, 13, 3, &produce_request("", id, -1)))
        .await
        .unwrap();
    let (_, mut body) = read_response(&mut stream, ApiKey::Produce, 13).await;
    let produced = kafka_protocol::messages::ProduceResponse::decode(&mut body, 13).unwrap();
    let partition = &produced.responses[0].partition_responses[0];
    assert_eq!((partition.error_code, partition.base_offset), (0, 2));
    // acks=all answered after an fsync, which the flush histogram observed.
    assert!(node.flush_seconds().snapshot().count >= 1);
}

#[tokio::test]
async fn refused_acks_0_produce_closes_the_connection() {
    let node = start().await;
    let mut stream = connect(&node).await;
    // Unknown topic (auto-creation happens on Metadata, not Produce): refused, and with acks=0
    // closing the connection is the only way to tell the producer.
    stream
        .write_all(&request_frame(
            ApiKey::Produce,
            9,
            4,
            &produce_request("nowhere", uuid::Uuid::nil(), 0),
        ))
        .await
        .unwrap();
    assert!(closed(&mut stream).await);
}

async fn metadata_works(node: &TestNode) {
    let mut conn = Connection::open(node.addr()).await;
    let metadata: MetadataResponse =
        conn.call(ApiKey::Metadata, 9, &MetadataRequest::default()).await;
    assert_eq!(metadata.brokers.len(), 1);
}

#[tokio::test]
async fn partial_frames_do_not_freeze_other_clients() {
    // Neither the body deadline nor the shutdown grace may be what frees the budget here.
    let node = node()
        .server(|config| {
            config.connections_max = 64;
            config.request_timeout = Duration::from_secs(3600);
            config.shutdown_grace = Duration::from_secs(3600);
        })
        .start()
        .await;
    // Each connection sends a request and, behind it, the length prefix of the largest frame
    // (and a few bytes of its body): 12 x 100 MiB announced against a 64 MiB budget.
    let mut stalled = Vec::new();
    for correlation_id in 0..12 {
        let mut stream = connect(&node).await;
        let mut bytes =
            request_frame(ApiKey::ApiVersions, 3, correlation_id, &ApiVersionsRequest::default());
        bytes.extend_from_slice(&FRAME_BYTES_MAX.to_be_bytes());
        bytes.extend_from_slice(&[0; 100]);
        stream.write_all(&bytes).await.unwrap();
        // Answered: the server is reading this connection, the prefix is next.
        let (answered, _) = read_response(&mut stream, ApiKey::ApiVersions, 3).await;
        assert_eq!(answered, correlation_id);
        stalled.push(stream);
    }
    // Everyone else is still served.
    tokio::time::timeout(BOUND, async {
        api_versions_works(&node).await;
        metadata_works(&node).await;
    })
    .await
    .expect("a normal client is served while others stall inside frames");
    // Shutdown stops the partial frames at once instead of waiting out the grace.
    tokio::time::timeout(BOUND, node.stop())
        .await
        .expect("serve returns promptly at shutdown, far within its grace");
    for mut stream in stalled {
        assert!(closed(&mut stream).await);
    }
}

#[tokio::test]
async fn stalled_frame_bodies_time_out() {
    let node =
        node().server(|config| config.request_timeout = Duration::from_millis(200)).start().await;
    let mut stream = connect(&node).await;
    let mut bytes = (1024 * 1024i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0; 10]);
    stream.write_all(&bytes).await.unwrap();
    // The idle timeout (60 s) is longer than the bound: only the body deadline closes it.
    assert!(closed(&mut stream).await, "a frame body not sent in time closes the connection");
    assert_eq!(node.metric(r#"cairn_kafka_connections_closed_total{reason="request_timeout"}"#), 1);
    api_versions_works(&node).await;
}

#[tokio::test]
async fn tls_client_hello_on_a_plaintext_listener_is_named_and_closed() {
    let node = start().await;
    let mut stream = connect(&node).await;
    // The start of a TLS 1.2/1.3 ClientHello record: handshake (22), version 3.1, length 512,
    // ClientHello (1).
    stream
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])
        .await
        .unwrap();
    assert!(closed(&mut stream).await);
    assert_eq!(node.metric(r#"cairn_kafka_connections_closed_total{reason="tls"}"#), 1);
    assert_eq!(node.metric(r#"cairn_kafka_connections_closed_total{reason="frame_size"}"#), 0);
}

#[tokio::test]
async fn errors_are_counted_for_every_api() {
    let node = start().await;
    let mut conn = Connection::open(node.addr()).await;
    let unknown = || WireTopicName(StrBytes::from_static_str("nowhere"));
    // CreateTopics: an invalid name (INVALID_TOPIC_EXCEPTION, 17).
    let create = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![
        CreatableTopic::default()
            .with_name(WireTopicName(StrBytes::from_static_str("bad/name")))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let created: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 5, &create).await;
    assert_eq!(created.topics[0].error_code, 17);
    // ListOffsets and Metadata without auto-creation: an unknown topic (3).
    let list = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        ListOffsetsTopic::default().with_name(unknown()).with_partitions(vec![
            ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1),
        ]),
    ]);
    let listed: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, 7, &list).await;
    assert_eq!(listed.topics[0].partitions[0].error_code, 3);
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(unknown()))]))
        .with_allow_auto_topic_creation(false);
    let metadata: MetadataResponse = conn.call(ApiKey::Metadata, 9, &metadata).await;
    assert_eq!(metadata.topics[0].error_code, 3);
    for (api, code) in [("CreateTopics", 17), ("ListOffsets", 3), ("Metadata", 3)] {
        let sample = format!(r#"cairn_kafka_errors_total{{api="{api}",code="{code}"}}"#);
        assert_eq!(node.metric(&sample), 1, "{sample}");
    }
}

#[tokio::test]
async fn error_messages_do_not_leak_server_paths() {
    let node = start().await;
    // A file where the partition directories go: every topic creation fails on the disk.
    let topics = node.dir().join("topics");
    std::fs::remove_dir_all(&topics).unwrap();
    std::fs::write(&topics, b"not a directory").unwrap();
    let create = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![
        CreatableTopic::default()
            .with_name(WireTopicName(StrBytes::from_static_str("doomed")))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let mut conn = Connection::open(node.addr()).await;
    let created: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 5, &create).await;
    let result = &created.topics[0];
    assert_ne!(result.error_code, 0, "creating a partition directory under a file fails");
    let message = result.error_message.as_ref().unwrap().to_string();
    assert!(!message.is_empty());
    let root = node.dir().to_str().unwrap();
    assert!(!message.contains(root), "{message:?} names a server path");
}

#[tokio::test]
async fn authorized_operations_are_answered_when_asked() {
    const TOPIC: i32 = 0b1101_1111_1000; // READ..DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS
    const CLUSTER: i32 = 0b1_1111_1010_0000; // CREATE, ALTER..IDEMPOTENT_WRITE
    let node = start().await;
    node.create_topic("seen", 1).await;
    let mut conn = Connection::open(node.addr()).await;
    for (version, asked) in [(8, true), (8, false), (10, true), (12, true), (12, false)] {
        let request = MetadataRequest::default()
            .with_topics(None)
            .with_include_cluster_authorized_operations(asked && version <= 10)
            .with_include_topic_authorized_operations(asked);
        let metadata: MetadataResponse = conn.call(ApiKey::Metadata, version, &request).await;
        let cluster = if asked && version <= 10 { CLUSTER } else { i32::MIN };
        let topic = if asked { TOPIC } else { i32::MIN };
        if version <= 10 {
            assert_eq!(metadata.cluster_authorized_operations, cluster, "v{version}");
        }
        assert_eq!(metadata.topics[0].topic_authorized_operations, topic, "v{version}");
    }
    for (version, asked) in [(0, true), (0, false), (1, true)] {
        let request =
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(asked);
        let described: DescribeClusterResponse =
            conn.call(ApiKey::DescribeCluster, version, &request).await;
        let expected = if asked { CLUSTER } else { i32::MIN };
        assert_eq!(described.cluster_authorized_operations, expected, "v{version}");
    }
}

/// A CreateTopics entry named `name` with the manual assignment `lists` (partition index,
/// broker ids) and the counts `partitions` and `factor`.
fn assigned_topic(
    name: &str,
    partitions: i32,
    factor: i16,
    lists: &[(i32, &[i32])],
) -> CreatableTopic {
    let assignments = lists
        .iter()
        .map(|(index, brokers)| {
            CreatableReplicaAssignment::default()
                .with_partition_index(*index)
                .with_broker_ids(brokers.iter().map(|&id| BrokerId(id)).collect())
        })
        .collect();
    CreatableTopic::default()
        .with_name(WireTopicName(StrBytes::from_string(name.to_owned())))
        .with_num_partitions(partitions)
        .with_replication_factor(factor)
        .with_assignments(assignments)
}

/// CreateTopics with a manual assignment on a single node (broker 0), and a replication
/// factor that is neither -1 nor positive: Kafka's codes and messages for every rule, `validate_only` refusing alike and creating nothing, and a valid
/// assignment honoured.
#[tokio::test]
async fn create_topics_assignments_follow_kafkas_rules_on_one_node() {
    let node = start().await;
    let mut conn = Connection::open(node.addr()).await;
    let default_or_more =
        "Replication factor must be larger than 0, or -1 to use the default value.";
    let refusals: [(CreatableTopic, i16, &str); 10] = [
        (assigned_topic("m", 1, 0, &[]), 38, default_or_more),
        (assigned_topic("m", 1, -2, &[]), 38, default_or_more),
        (assigned_topic("m", -1, 1, &[(0, &[0])]), 42, "replication factor was not set to -1."),
        (assigned_topic("m", 1, -1, &[(0, &[0])]), 42, "numPartitions was not set to -1."),
        (
            assigned_topic("m", -1, -1, &[(0, &[0]), (0, &[0])]),
            39,
            "Found multiple manual partition assignments for partition 0",
        ),
        (
            assigned_topic("m", -1, -1, &[(0, &[0]), (2, &[0])]),
            39,
            "partitions should be a consecutive 0-based integer sequence",
        ),
        (assigned_topic("m", -1, -1, &[(0, &[])]), 39, "includes an empty replica list."),
        (
            assigned_topic("m", -1, -1, &[(0, &[3, -2, 0, -1])]),
            39,
            "includes broker -2, but no such broker is registered.",
        ),
        (
            assigned_topic("m", -1, -1, &[(0, &[0, 7])]),
            39,
            "includes broker 7, but no such broker is registered.",
        ),
        (assigned_topic("m", -1, -1, &[(0, &[0, 0])]), 39, "includes the broker 0 more than once."),
    ];
    for validate_only in [true, false] {
        for (topic, code, message) in &refusals {
            let request = CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_validate_only(validate_only)
                .with_topics(vec![topic.clone()]);
            let created: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 5, &request).await;
            let result = &created.topics[0];
            let said = result.error_message.as_ref().map(ToString::to_string).unwrap_or_default();
            assert_eq!(result.error_code, *code, "{topic:?}: {said}");
            assert!(said.ends_with(message), "{topic:?}: {said}");
        }
    }
    assert!(node.broker().meta().topics().is_empty(), "nothing refused was created");
    // Valid: checked only, then made, partitions in index order whatever the request's order.
    let valid = assigned_topic("m", -1, -1, &[(1, &[0]), (0, &[0])]);
    for validate_only in [true, false] {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_validate_only(validate_only)
            .with_topics(vec![valid.clone()]);
        let created: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 7, &request).await;
        let result = &created.topics[0];
        assert_eq!(
            (result.error_code, result.num_partitions, result.replication_factor),
            (0, 2, 1)
        );
        assert_eq!(result.topic_id.is_nil(), validate_only, "an id only for a topic made");
        assert_eq!(node.broker().meta().topic("m").is_some(), !validate_only);
    }
}

/// CreatePartitions with a manual assignment on a single node (broker 0), as
/// [`create_topics_assignments_follow_kafkas_rules_on_one_node`].
#[tokio::test]
async fn create_partitions_assignments_follow_kafkas_rules_on_one_node() {
    let node = start().await;
    let mut conn = Connection::open(node.addr()).await;
    node.create_topic("m", 2).await;
    let grow = |count: i32, lists: Option<&[&[i32]]>, validate_only: bool| {
        let assignments = lists.map(|lists| {
            lists
                .iter()
                .map(|ids| {
                    CreatePartitionsAssignment::default()
                        .with_broker_ids(ids.iter().map(|&id| BrokerId(id)).collect())
                })
                .collect()
        });
        CreatePartitionsRequest::default().with_validate_only(validate_only).with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(WireTopicName(StrBytes::from_static_str("m")))
                .with_count(count)
                .with_assignments(assignments),
        ])
    };
    for validate_only in [true, false] {
        let cases: [(i32, &[&[i32]], i16, &str); 3] = [
            (
                4,
                &[&[0]],
                39,
                "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified.",
            ),
            (
                3,
                &[&[0, 0]],
                39,
                "The manual partition assignment includes the broker 0 more than once.",
            ),
            (
                3,
                &[&[5]],
                39,
                "The manual partition assignment includes broker 5, but no such broker is registered.",
            ),
        ];
        for (count, lists, code, message) in cases {
            let answer: CreatePartitionsResponse = conn
                .call(ApiKey::CreatePartitions, 3, &grow(count, Some(lists), validate_only))
                .await;
            let result = &answer.results[0];
            let said = result.error_message.as_ref().map(ToString::to_string).unwrap_or_default();
            assert_eq!((result.error_code, said.as_str()), (code, message), "{lists:?}");
        }
        let answer: CreatePartitionsResponse =
            conn.call(ApiKey::CreatePartitions, 3, &grow(3, Some(&[&[0]]), validate_only)).await;
        assert_eq!(answer.results[0].error_code, 0);
        let partitions = node.broker().meta().topic("m").unwrap().partitions;
        assert_eq!(partitions, if validate_only { 2 } else { 3 });
    }
    assert!(node.broker().partition("m", 2).is_some(), "the new partition is hosted");
}

/// DescribeConfigs of the GROUP resource type (32): every group has the consumer protocol's
/// defaults, read only, all or the keys asked for; a group needs a name.
#[tokio::test]
async fn describe_configs_lists_the_group_configs() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
    let node = start().await;
    let mut conn = Connection::open(node.addr()).await;
    let resource =
        |name: &str, keys: Option<Vec<&str>>| {
            DescribeConfigsResource::default()
                .with_resource_type(32)
                .with_resource_name(StrBytes::from_string(name.to_owned()))
                .with_configuration_keys(keys.map(|keys| {
                    keys.into_iter().map(|k| StrBytes::from_string(k.into())).collect()
                }))
        };
    let request = DescribeConfigsRequest::default().with_resources(vec![
        resource("any-group", None),
        resource("any-group", Some(vec!["consumer.session.timeout.ms"])),
        resource("", None),
    ]);
    let response: DescribeConfigsResponse = conn.call(ApiKey::DescribeConfigs, 4, &request).await;
    let configs = |at: usize| -> Vec<(String, String, bool, i8)> {
        let result = &response.results[at];
        assert_eq!(result.error_code, 0, "{result:?}");
        result
            .configs
            .iter()
            .map(|c| {
                let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                (c.name.to_string(), value, c.read_only, c.config_source)
            })
            .collect()
    };
    let heartbeat = ("consumer.heartbeat.interval.ms".to_owned(), "5000".to_owned(), true, 5);
    let session = ("consumer.session.timeout.ms".to_owned(), "45000".to_owned(), true, 5);
    assert_eq!(configs(0), [heartbeat, session.clone()]);
    assert_eq!(configs(1), [session]);
    assert_ne!(response.results[2].error_code, 0, "a group config needs a group id");
    node.stop().await;
}
