//! The pipelined client against a real broker in this process (`cairn_testkit::TestNode`:
//! `cairn_kafka::serve` over TCP, partition logs in a temporary directory): many produce requests in flight on one connection
//! are acknowledged in order, with contiguous offsets, and a fetch reads them all back.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use cairn_client::records::{compressed_batch, decode_batches};
use cairn_client::{Client, Options};
use cairn_testkit::TestNode;
use cairn_types::batch::{BatchBuilder, Compression};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, MetadataRequest, ProduceRequest};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

const BOUND: Duration = Duration::from_secs(30);

fn wire_name(name: &'static str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(StrBytes::from_static_str(name))
}

/// A node with topic `p` (one partition) that serves 4 requests of a connection at once.
async fn start() -> TestNode {
    let node = TestNode::builder().server(|config| config.inflight_requests_max = 4).start().await;
    node.create_topic("p", 1).await;
    node
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
    let node = start().await;
    let client = Client::connect(&Options::new(node.bootstrap())).await.unwrap();
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
    // The log starts with its group's control batches: the membership entry (offset 0) and
    // the first leader's blank entry (offset 1).
    let first = 2i64;
    let mut expected_base = first;
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
    assert_eq!(values.len() as i64, expected_base - first);
    assert_eq!(values[0], "0:0");
    assert_eq!(values.last().unwrap(), &format!("{}:{}", requests - 1, (requests - 1) % 5));
    drop(pipeline);
    node.stop().await;
}
