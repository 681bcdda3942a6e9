//! The pipelined client against a real broker in this process (`cairn_kafka::serve` over TCP,
//! partition logs in a temporary directory): many produce requests in flight on one connection
//! are acknowledged in order, with contiguous offsets, and a fetch reads them all back.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_broker::{Broker, BrokerConfig};
use cairn_client::records::{compressed_batch, decode_batches};
use cairn_client::{Client, Options};
use cairn_kafka::{ServerConfig, serve};
use cairn_meta::{LocalMetadata, NodeMeta, TopicName, TopicSpec};
use cairn_types::NodeId;
use cairn_types::batch::{BatchBuilder, Compression};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, MetadataRequest, ProduceRequest};
use kafka_protocol::protocol::StrBytes;
use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;

const BOUND: Duration = Duration::from_secs(30);

fn wire_name(name: &'static str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(StrBytes::from_static_str(name))
}

async fn start(dir: &std::path::Path) -> (String, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let node = NodeMeta { id: NodeId(0), host: "127.0.0.1".into(), port: addr.port(), rack: None };
    let meta = Arc::new(LocalMetadata::open(&dir.join("meta"), node).unwrap());
    let config = BrokerConfig {
        data_dir: dir.into(),
        retention_interval: Duration::from_secs(3600),
        cache_window_bytes: None,
        flush_seconds: Arc::new(cairn_metrics::Histogram::latency()),
        health: Arc::default(),
    };
    let broker = Broker::open(config, meta).await.unwrap();
    let spec = TopicSpec {
        name: TopicName::new("p").unwrap(),
        partitions: 1,
        replication_factor: 1,
        configs: Vec::new(),
    };
    broker.create_topic(spec).await.unwrap();
    let (stop, stopping) = watch::channel(false);
    let config = ServerConfig {
        node_id: NodeId(0),
        cluster_id: "client-test".into(),
        connections_max: 16,
        inflight_requests_max: 4,
        request_bytes_max: 64 * 1024 * 1024,
        auto_create_topics: false,
        default_partitions: 1,
        idle_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(10),
    };
    tokio::spawn(async move {
        let registry = cairn_metrics::Registry::new();
        serve(listener, broker, config, &registry, stopping).await.unwrap();
    });
    (addr.to_string(), stop)
}

/// A Produce request of one `records`-record batch for partition 0 of topic `p`, addressed by
/// id (Produce v13+) or by name.
fn produce(
    request_index: u32,
    records: u32,
    codec: Compression,
    id: Option<Uuid>,
) -> ProduceRequest {
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for record in 0..records {
        let value = format!("{request_index}:{record}");
        builder = builder.record(None, Some(value.as_bytes()), &[]);
    }
    let batch = compressed_batch(&builder.build(), codec).unwrap();
    let mut topic = TopicProduceData::default().with_partition_data(vec![
        PartitionProduceData::default().with_index(0).with_records(Some(Bytes::from(batch))),
    ]);
    match id {
        Some(id) => topic.topic_id = id,
        None => topic.name = wire_name("p"),
    }
    ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![topic])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_produces_are_acknowledged_in_order_with_contiguous_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (bootstrap, stop) = start(dir.path()).await;
    let client = Client::connect(&Options::new(bootstrap)).await.unwrap();
    let version = client.version_of::<ProduceRequest>().unwrap();
    let mut pipeline = client.pipeline(8).unwrap();
    // From Produce v13 topics are addressed by id: ask Metadata, through the pipeline.
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(wire_name("p")))]));
    let metadata = pipeline.request(&metadata).await.unwrap();
    let id = (version >= 13).then(|| metadata.topics[0].topic_id);
    let requests = 200u32;
    let mut pending = VecDeque::new();
    let mut offsets = Vec::new();
    tokio::time::timeout(BOUND, async {
        for index in 0..requests {
            // Batches of 1..=5 records, some compressed.
            let records = index % 5 + 1;
            let codec = if index % 3 == 0 { Compression::Zstd } else { Compression::None };
            if pending.len() == pipeline.inflight_max() {
                let (records, response): (u32, cairn_client::Pending<_>) =
                    pending.pop_front().unwrap();
                offsets.push((records, response.response().await.unwrap()));
            }
            pending.push_back((
                records,
                pipeline.send(&produce(index, records, codec, id)).await.unwrap(),
            ));
        }
        for (records, response) in pending {
            offsets.push((records, response.response().await.unwrap()));
        }
    })
    .await
    .unwrap();
    let mut expected_base = 0i64;
    for (records, response) in &offsets {
        let answer = &response.responses[0].partition_responses[0];
        assert_eq!(answer.error_code, 0);
        assert_eq!(answer.base_offset, expected_base, "acknowledged in request order");
        expected_base += i64::from(*records);
    }

    // One fetch through the same pipeline reads every record back, in order.
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(16 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(wire_name("p"))
                .with_topic_id(metadata.topics[0].topic_id)
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(16 << 20),
                ]),
        ]);
    let response = tokio::time::timeout(BOUND, pipeline.request(&fetch)).await.unwrap().unwrap();
    let set = response.responses[0].partitions[0].records.clone().unwrap();
    let mut values = Vec::new();
    decode_batches::<()>(&set, 0, |record| {
        values.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
        Ok(true)
    })
    .unwrap();
    assert_eq!(values.len() as i64, expected_base);
    assert_eq!(values[0], "0:0");
    assert_eq!(values.last().unwrap(), &format!("{}:{}", requests - 1, (requests - 1) % 5));
    let _ = stop.send(true);
}
