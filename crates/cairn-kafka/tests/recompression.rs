//! A topic's `compression.type` over real TCP: set with CreateTopics and IncrementalAlterConfigs,
//! applied by Produce, observed with Fetch. Batches of another codec are stored recompressed
//! with every record, offset, timestamp and header field kept; batches already in the topic's
//! codec (and every batch of a `producer` topic) are stored byte for byte; decompression bombs
//! and oversized requests are refused. The node is `cairn_testkit::TestNode` (a real broker,
//! LocalMetadata and partition logs in a temporary directory); every response is awaited within
//! a bound, never with sleeps.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use cairn_protocol::compression::{compress, encode_batch, validate_records};
use cairn_testkit::TestNode;
use cairn_testkit::wire::Connection;
use cairn_types::ProducerId;
use cairn_types::batch::{
    BatchBuilder, BatchHeader, Batches, Compression, HEADER_BYTES, RecordBatch, records_in,
};
use cairn_types::limits::{BATCH_BYTES_MAX, DECOMPRESSED_BATCH_BYTES_MAX};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ProduceRequest,
    ProduceResponse, TopicName as WireTopicName,
};
use kafka_protocol::protocol::StrBytes;

const MIB: usize = 1024 * 1024;

/// A node whose requests may hold 256 MiB: room for the largest batches at once.
async fn start() -> TestNode {
    TestNode::builder().server(|config| config.request_bytes_max = 256 * MIB).start().await
}

/// One connection, one request at a time, and the requests of these tests.
struct Conn(Connection);

impl Conn {
    async fn open(node: &TestNode) -> Conn {
        Conn(Connection::open(node.addr()).await)
    }

    /// Creates a topic of `partitions` partitions with `configs`; returns the error code.
    async fn create_topic(&mut self, name: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
        let configs = configs
            .iter()
            .map(|(key, value)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string((*key).into()))
                    .with_value(Some(StrBytes::from_string((*value).into())))
            })
            .collect();
        let topic = CreatableTopic::default()
            .with_name(wire_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(configs);
        let request =
            CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(10_000);
        let response: CreateTopicsResponse = self.0.call(ApiKey::CreateTopics, 5, &request).await;
        response.topics[0].error_code
    }

    /// Sets one topic config; returns the error code.
    async fn set_config(&mut self, topic: &str, key: &str, value: &str) -> i16 {
        let config = AlterableConfig::default()
            .with_name(StrBytes::from_string(key.into()))
            .with_config_operation(0)
            .with_value(Some(StrBytes::from_string(value.into())));
        let resource = AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.into()))
            .with_configs(vec![config]);
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![resource]);
        let response: IncrementalAlterConfigsResponse =
            self.0.call(ApiKey::IncrementalAlterConfigs, 1, &request).await;
        response.responses[0].error_code
    }

    /// Produces `records` (a record set) to each listed partition with `acks=all`; returns each
    /// partition's (error code, base offset, error message), by partition.
    async fn produce(
        &mut self,
        topic: &str,
        partitions: &[(i32, &[u8])],
    ) -> Vec<(i16, i64, Option<String>)> {
        let data = partitions
            .iter()
            .map(|(index, records)| {
                PartitionProduceData::default()
                    .with_index(*index)
                    .with_records(Some(Bytes::copy_from_slice(records)))
            })
            .collect();
        let request =
            ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
                TopicProduceData::default().with_name(wire_name(topic)).with_partition_data(data),
            ]);
        let response: ProduceResponse = self.0.call(ApiKey::Produce, 9, &request).await;
        let mut answers = response.responses[0].partition_responses.clone();
        answers.sort_by_key(|p| p.index);
        answers
            .into_iter()
            .map(|p| (p.error_code, p.base_offset, p.error_message.map(|m| m.to_string())))
            .collect()
    }

    /// Produces one record set to partition 0 and expects it appended at `base_offset`.
    async fn produce_ok(&mut self, topic: &str, records: &[u8], base_offset: i64) {
        let answers = self.produce(topic, &[(0, records)]).await;
        assert_eq!(answers[0].0, 0, "produce refused: {:?}", answers[0].2);
        assert_eq!(answers[0].1, base_offset);
    }

    /// The stored record set of partition 0 from `offset` (at most 8 MiB).
    async fn fetch(&mut self, topic: &str, offset: i64) -> Bytes {
        let partition = FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(8 << 20);
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(8 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default().with_topic(wire_name(topic)).with_partitions(vec![partition]),
            ]);
        let response: FetchResponse = self.0.call(ApiKey::Fetch, 12, &request).await;
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        partition.records.clone().unwrap_or_default()
    }
}

fn wire_name(name: &str) -> WireTopicName {
    WireTopicName(StrBytes::from_string(name.into()))
}

/// An uncompressed batch of `records` records from an idempotent producer: keys (some null),
/// values (some null), headers and timestamps that differ per record.
fn plain_batch(records: usize, base_sequence: i32) -> Vec<u8> {
    let mut builder =
        BatchBuilder::new(1_700_000_000_000).producer(ProducerId(42), 1, base_sequence);
    for i in 0..records {
        let key = format!("key-{i}");
        let value =
            format!("{{\"seq\":{base_sequence},\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 40));
        builder = builder.record_at(
            1_700_000_000_000 + (i as i64 * 13) % 500,
            (i % 4 != 0).then_some(key.as_bytes()),
            (i % 9 != 0).then_some(value.as_bytes()),
            &[(b"trace", Some(format!("t{i}").as_bytes())), (b"empty", None)],
        );
    }
    builder.build()
}

/// `plain` (an uncompressed batch) with its records compressed with `codec`, as a producer
/// sends it.
fn with_codec(plain: &[u8], codec: Compression) -> Vec<u8> {
    let batch = RecordBatch::validate(plain).unwrap();
    let mut out = Vec::new();
    encode_batch(&batch, &plain[HEADER_BYTES..], codec, usize::MAX, &mut out).unwrap();
    out
}

/// What recompression must keep of a batch: its header without the codec bits, length, CRC and
/// the two fields the log assigns (base offset, leader epoch), and its records decompressed.
fn contents(batch: &RecordBatch<'_>) -> (BatchHeader, Vec<u8>) {
    let mut records = Vec::new();
    validate_records(batch, &mut records, DECOMPRESSED_BATCH_BYTES_MAX).unwrap();
    if batch.header().compression() == Compression::None {
        records = batch.as_bytes()[HEADER_BYTES..].to_vec();
    }
    let mut header = *batch.header();
    header.attributes &= !0x07;
    header.batch_length = 0;
    header.crc = 0;
    header.base_offset = cairn_types::Offset(0);
    header.partition_leader_epoch = cairn_types::LeaderEpoch(0);
    (header, records)
}

/// The offset of a new partition's first produced record: the group's membership entry (0)
/// and its first term's blank entry (1) come first.
const FIRST: i64 = 2;
/// [`FIRST`] as an offset.
const FIRST_OFFSET: u64 = 2;

/// The stored batches of a fetched record set, each with its codec and base offset, without
/// the group's own entries (control batches without a producer, which consumers skip).
fn stored_batches(fetched: &[u8]) -> Vec<RecordBatch<'_>> {
    Batches::new(fetched, BATCH_BYTES_MAX)
        .map(Result::unwrap)
        .filter(|batch| {
            let header = batch.header();
            !(header.is_control() && header.producer_id == ProducerId::NONE)
        })
        .collect()
}

/// Asserts that `stored` holds `sent`'s records and header fields, at `base_offset`, in `codec`.
fn assert_same_batch(stored: &RecordBatch<'_>, sent: &[u8], codec: Compression, base_offset: u64) {
    assert_eq!(stored.header().compression(), codec);
    assert_eq!(stored.base_offset().0, base_offset);
    let sent = RecordBatch::validate(sent).unwrap();
    let (stored_header, stored_records) = contents(stored);
    let (sent_header, sent_records) = contents(&sent);
    assert_eq!(stored_header, sent_header);
    assert_eq!(stored_records, sent_records);
    // Decoded too: keys, values, headers, offset and timestamp deltas.
    let decode = |records: &[u8]| {
        records_in(records, sent_header.record_count)
            .map(|record| format!("{:?}", record.unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(decode(&stored_records), decode(&sent_records));
}

/// The bytes a stored batch shares with the batch as sent: everything but the base offset and
/// leader epoch the log assigns.
fn covered(batch: &[u8]) -> (&[u8], &[u8]) {
    (&batch[8..12], &batch[16..])
}

/// Regression: `compression.type` other than `producer` was refused with INVALID_CONFIG. Kafka
/// accepts it and stores produced batches of another codec recompressed to the topic's.
#[tokio::test]
async fn topic_compression_type_zstd_is_accepted_and_recompresses_gzip_batches() {
    let node = start().await;
    let mut conn = Conn::open(&node).await;
    assert_eq!(conn.create_topic("zstd-topic", 1, &[("compression.type", "zstd")]).await, 0);
    let first = plain_batch(300, 0);
    let second = plain_batch(5, 300);
    // One request whose record set holds a gzip batch and an uncompressed one, then a snappy one.
    let record_set = [with_codec(&first, Compression::Gzip), second.clone()].concat();
    conn.produce_ok("zstd-topic", &record_set, FIRST).await;
    let third = plain_batch(50, 305);
    conn.produce_ok("zstd-topic", &with_codec(&third, Compression::Snappy), FIRST + 305).await;

    let fetched = conn.fetch("zstd-topic", 0).await;
    let batches = stored_batches(&fetched);
    assert_eq!(batches.len(), 3);
    assert_same_batch(&batches[0], &first, Compression::Zstd, FIRST_OFFSET);
    assert_same_batch(&batches[1], &second, Compression::Zstd, FIRST_OFFSET + 300);
    assert_same_batch(&batches[2], &third, Compression::Zstd, FIRST_OFFSET + 305);
    node.stop().await;
}

#[tokio::test]
async fn batches_already_in_the_topic_codec_are_stored_byte_for_byte() {
    let node = start().await;
    let mut conn = Conn::open(&node).await;
    assert_eq!(conn.create_topic("zstd-kept", 1, &[("compression.type", "zstd")]).await, 0);
    let sent = with_codec(&plain_batch(200, 0), Compression::Zstd);
    conn.produce_ok("zstd-kept", &sent, FIRST).await;
    // A control batch is never recompressed, whatever the topic's codec.
    // (with a producer: one without is the form of the group's own entries, refused.)
    let marker = BatchBuilder::new(1_700_000_000_000)
        .producer(ProducerId(42), 1, 200)
        .control()
        .record(None, Some(b"m"), &[]);
    let marker = marker.build();
    conn.produce_ok("zstd-kept", &marker, FIRST + 200).await;
    let fetched = conn.fetch("zstd-kept", 0).await;
    let batches = stored_batches(&fetched);
    assert_eq!(batches.len(), 2);
    assert_eq!(covered(batches[0].as_bytes()), covered(&sent));
    assert_eq!(covered(batches[1].as_bytes()), covered(&marker));
    node.stop().await;
}

#[tokio::test]
async fn uncompressed_topic_stores_batches_uncompressed() {
    let node = start().await;
    let mut conn = Conn::open(&node).await;
    let configs = [("compression.type", "uncompressed")];
    assert_eq!(conn.create_topic("plain-topic", 1, &configs).await, 0);
    let mut offset = 0;
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let plain = plain_batch(100, offset as i32);
        conn.produce_ok("plain-topic", &with_codec(&plain, codec), FIRST + offset).await;
        let fetched = conn.fetch("plain-topic", FIRST + offset).await;
        let batches = stored_batches(&fetched);
        assert_eq!(batches[0].header().compression(), Compression::None, "{codec:?}");
        // Decompressed, the batch is exactly the uncompressed one its producer compressed.
        assert_eq!(covered(batches[0].as_bytes()), covered(&plain), "{codec:?}");
        offset += 100;
    }
    node.stop().await;
}

#[tokio::test]
async fn altered_compression_type_applies_to_later_batches() {
    let node = start().await;
    let mut conn = Conn::open(&node).await;
    assert_eq!(conn.create_topic("altered", 1, &[]).await, 0);
    let plains: Vec<Vec<u8>> = (0..3).map(|i| plain_batch(10, i * 10)).collect();
    let sent: Vec<Vec<u8>> = plains.iter().map(|p| with_codec(p, Compression::Gzip)).collect();
    // `producer` (the default): stored as sent.
    conn.produce_ok("altered", &sent[0], FIRST).await;
    assert_eq!(conn.set_config("altered", "compression.type", "lz4").await, 0);
    conn.produce_ok("altered", &sent[1], FIRST + 10).await;
    assert_eq!(conn.set_config("altered", "compression.type", "producer").await, 0);
    conn.produce_ok("altered", &sent[2], FIRST + 20).await;
    // Levels are not configurable: refused with INVALID_CONFIG, nothing changed.
    let level = conn.set_config("altered", "compression.zstd.level", "3").await;
    assert_eq!(level, ResponseError::InvalidConfig.code());

    let fetched = conn.fetch("altered", 0).await;
    let batches = stored_batches(&fetched);
    assert_eq!(batches.len(), 3);
    assert_eq!(covered(batches[0].as_bytes()), covered(&sent[0]));
    assert_same_batch(&batches[1], &plains[1], Compression::Lz4, FIRST_OFFSET + 10);
    assert_eq!(covered(batches[2].as_bytes()), covered(&sent[2]));
    node.stop().await;
}

/// A gzip batch of one record whose value is `value_bytes` zeros: about a thousandth of that
/// on the wire.
fn zeros_batch(value_bytes: usize) -> Vec<u8> {
    let value = vec![0u8; value_bytes];
    let plain = BatchBuilder::new(1_700_000_000_000).record(None, Some(&value), &[]).build();
    with_codec(&plain, Compression::Gzip)
}

#[tokio::test]
async fn decompression_bombs_are_refused_on_a_recompressing_topic() {
    let node = start().await;
    let mut conn = Conn::open(&node).await;
    let configs = [("compression.type", "uncompressed")];
    assert_eq!(conn.create_topic("bombed", 1, &configs).await, 0);
    // 65 concatenated gzip members of 1 MiB of zeros: decompresses past the cap (64 MiB),
    // refused before anything is stored.
    let mut member = Vec::new();
    compress(Compression::Gzip, &vec![0; MIB], &mut member).unwrap();
    let template = plain_batch(1, 0);
    let mut bomb = [&template[..HEADER_BYTES], &member.repeat(65)].concat();
    let batch_length = (bomb.len() - 12) as i32;
    bomb[8..12].copy_from_slice(&batch_length.to_be_bytes());
    bomb[22] |= 1; // gzip in the attributes' low byte
    cairn_types::batch::set_crc(&mut bomb);
    const { assert!(DECOMPRESSED_BATCH_BYTES_MAX < 65 * MIB) };
    assert!(bomb.len() < MIB, "{} bytes on the wire", bomb.len());
    let answers = conn.produce("bombed", &[(0, &bomb)]).await;
    assert_eq!(answers[0].0, ResponseError::InvalidRecord.code(), "{:?}", answers[0].2);
    // The partition still takes ordinary batches, from offset 0.
    conn.produce_ok("bombed", &with_codec(&plain_batch(3, 0), Compression::Gzip), FIRST).await;
    node.stop().await;
}

#[tokio::test]
async fn a_request_stores_at_most_its_limit_once_recompressed() {
    let node = start().await;
    let mut conn = Conn::open(&node).await;
    let configs = [("compression.type", "uncompressed"), ("max.message.bytes", "67108864")];
    assert_eq!(conn.create_topic("expanding", 2, &configs).await, 0);
    // Two batches of 51 MiB uncompressed, under 100 KiB each on the wire: the first fits in
    // what one request may store (100 MiB), the second would pass it.
    let batch = zeros_batch(51 * MIB);
    let answers = conn.produce("expanding", &[(0, &batch), (1, &batch)]).await;
    assert_eq!((answers[0].0, answers[0].1), (0, FIRST), "{:?}", answers[0].2);
    assert_eq!(answers[1].0, ResponseError::MessageTooLarge.code());
    let message = answers[1].2.as_deref().unwrap_or_default();
    assert!(message.contains("one produce request may store"), "{message}");
    node.stop().await;
}
