//! The Kafka listener over real TCP: version negotiation, hostile frames, ordered pipelining,
//! acks=0, and graceful shutdown with a long poll in flight. The broker is real (LocalMetadata
//! and partition logs in a temporary directory); bounds are `tokio::time::timeout`s, never sleeps.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use cairn_broker::{Broker, BrokerConfig};
use cairn_kafka::{ServerConfig, serve};
use cairn_meta::{LocalMetadata, MetadataStore, NodeMeta, TopicName, TopicSpec};
use cairn_types::NodeId;
use cairn_types::batch::BatchBuilder;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest,
    ProduceRequest, RequestHeader, ResponseHeader, TopicName as WireTopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const BOUND: Duration = Duration::from_secs(20);

struct Node {
    addr: SocketAddr,
    broker: Arc<Broker<LocalMetadata>>,
    flush_seconds: Arc<cairn_metrics::Histogram>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let node = NodeMeta { id: NodeId(0), host: "127.0.0.1".into(), port: addr.port(), rack: None };
    let meta = Arc::new(LocalMetadata::open(&dir.path().join("meta"), node).unwrap());
    let config = BrokerConfig {
        data_dir: dir.path().into(),
        retention_interval: Duration::from_secs(3600),
        cache_window_bytes: None,
        flush_seconds: Arc::new(cairn_metrics::Histogram::latency()),
        health: Arc::default(),
    };
    let flush_seconds = Arc::clone(&config.flush_seconds);
    let broker = Broker::open(config, meta).await.unwrap();
    let (stop, stopping) = watch::channel(false);
    let config = ServerConfig {
        node_id: NodeId(0),
        cluster_id: "test-cluster".into(),
        connections_max: 16,
        inflight_requests_max: 8,
        request_bytes_max: 64 * 1024 * 1024,
        auto_create_topics: true,
        default_partitions: 1,
        idle_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(10),
    };
    let server_broker = Arc::clone(&broker);
    let server = tokio::spawn(async move {
        let registry = cairn_metrics::Registry::new();
        serve(listener, server_broker, config, &registry, stopping).await.unwrap();
    });
    Node { addr, broker, flush_seconds, stop, server, _dir: dir }
}

/// A request frame: length, header, body.
fn frame(api_key: ApiKey, version: i16, correlation_id: i32, body: &impl Encodable) -> Vec<u8> {
    let mut buffer = BytesMut::new();
    buffer.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("test")))
        .encode(&mut buffer, api_key.request_header_version(version))
        .unwrap();
    body.encode(&mut buffer, version).unwrap();
    let length = (buffer.len() - 4) as i32;
    buffer[..4].copy_from_slice(&length.to_be_bytes());
    buffer.to_vec()
}

/// Reads one response frame; returns its correlation id and the body after the header.
async fn response(stream: &mut TcpStream, api_key: ApiKey, version: i16) -> (i32, Bytes) {
    let length = tokio::time::timeout(BOUND, stream.read_i32()).await.unwrap().unwrap();
    let mut body = vec![0; length as usize];
    stream.read_exact(&mut body).await.unwrap();
    let mut body = Bytes::from(body);
    let header =
        ResponseHeader::decode(&mut body, api_key.response_header_version(version)).unwrap();
    (header.correlation_id, body)
}

/// Whether the server closed the connection (EOF or reset within the bound).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(BOUND, stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

async fn connect(node: &Node) -> TcpStream {
    TcpStream::connect(node.addr).await.unwrap()
}

async fn api_versions_works(node: &Node) {
    let mut stream = connect(node).await;
    stream
        .write_all(&frame(ApiKey::ApiVersions, 3, 7, &ApiVersionsRequest::default()))
        .await
        .unwrap();
    let (correlation_id, mut body) = response(&mut stream, ApiKey::ApiVersions, 3).await;
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
    let mut request = frame(ApiKey::ApiVersions, 3, 11, &ApiVersionsRequest::default());
    request[6..8].copy_from_slice(&99i16.to_be_bytes());
    request.extend_from_slice(&[0xde, 0xad]);
    let length = (request.len() - 4) as i32;
    request[..4].copy_from_slice(&length.to_be_bytes());
    stream.write_all(&request).await.unwrap();
    let (correlation_id, mut body) = response(&mut stream, ApiKey::ApiVersions, 0).await;
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
            requests.extend(frame(
                ApiKey::Metadata,
                9,
                correlation_id,
                &MetadataRequest::default(),
            ));
        } else {
            requests.extend(frame(
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
        let (correlation_id, _) = response(&mut stream, api_key, version).await;
        assert_eq!(correlation_id, expected);
    }
}

async fn create_topic(node: &Node, name: &str) {
    let spec = TopicSpec {
        name: TopicName::new(name).unwrap(),
        partitions: 1,
        replication_factor: 1,
        configs: Vec::new(),
    };
    node.broker.create_topic(spec).await.unwrap();
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
    create_topic(&node, "quiet").await;
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
    stream.write_all(&frame(ApiKey::Produce, 9, 1, &produce)).await.unwrap();
    // Long-poll until the record is durable: the fetch answers only when there is data.
    stream
        .write_all(&frame(ApiKey::Fetch, 12, 2, &fetch_request("quiet", 0, 10_000)))
        .await
        .unwrap();
    let (correlation_id, mut body) = response(&mut stream, ApiKey::Fetch, 12).await;
    assert_eq!(correlation_id, 2, "the acks=0 produce must not be answered");
    let fetched = FetchResponse::decode(&mut body, 12).unwrap();
    let partition = &fetched.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 1);
    let mut stored = partition.records.clone().unwrap();
    assert_eq!(stored.len(), records.len());
    assert_eq!(stored.get_i64(), 0, "base offset assigned by the log");
}

#[tokio::test]
async fn shutdown_answers_long_polls_and_stops() {
    let node = start().await;
    create_topic(&node, "idle").await;
    let mut stream = connect(&node).await;
    stream
        .write_all(&frame(ApiKey::Fetch, 12, 5, &fetch_request("idle", 0, 60_000)))
        .await
        .unwrap();
    // Make sure the fetch is being served (it parks until data or shutdown) before stopping.
    let mut probe = connect(&node).await;
    probe
        .write_all(&frame(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default()))
        .await
        .unwrap();
    response(&mut probe, ApiKey::ApiVersions, 3).await;
    node.stop.send(true).unwrap();
    let (correlation_id, mut body) = response(&mut stream, ApiKey::Fetch, 12).await;
    assert_eq!(correlation_id, 5);
    let fetched = FetchResponse::decode(&mut body, 12).unwrap();
    assert_eq!(fetched.responses[0].partitions[0].records.as_ref().map(Bytes::len), Some(0));
    tokio::time::timeout(BOUND, node.server).await.unwrap().unwrap();
    node.broker.shutdown().await;
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
    create_topic(&node, "by-id").await;
    let id = node.broker.meta().topic("by-id").unwrap().id.as_uuid();
    let mut stream = connect(&node).await;
    stream.write_all(&frame(ApiKey::Produce, 13, 3, &produce_request("", id, -1))).await.unwrap();
    let (_, mut body) = response(&mut stream, ApiKey::Produce, 13).await;
    let produced = kafka_protocol::messages::ProduceResponse::decode(&mut body, 13).unwrap();
    let partition = &produced.responses[0].partition_responses[0];
    assert_eq!((partition.error_code, partition.base_offset), (0, 0));
    // acks=all answered after an fsync, which the flush histogram observed.
    assert!(node.flush_seconds.snapshot().count >= 1);
}

#[tokio::test]
async fn refused_acks_0_produce_closes_the_connection() {
    let node = start().await;
    let mut stream = connect(&node).await;
    // Unknown topic (auto-creation happens on Metadata, not Produce): refused, and with acks=0
    // closing the connection is the only way to tell the producer.
    stream
        .write_all(&frame(ApiKey::Produce, 9, 4, &produce_request("nowhere", uuid::Uuid::nil(), 0)))
        .await
        .unwrap();
    assert!(closed(&mut stream).await);
}
