//! Issue 9, deliverable 2: too many partitions for the open-file limit half-created a topic and
//! bricked the node (every partition held its files open, so at a limit of 1,024 creation failed
//! at partition ~336 and the node then could not start).
//!
//! Its own test binary, so its own process under nextest and `cargo test` alike: it lowers the
//! soft AND hard `RLIMIT_NOFILE` of the test process to 1,024 (the node it starts inherits both,
//! so raising the soft limit at start cannot hide descriptor growth), then serves 10,000
//! partitions from one real `cairn serve`: create, produce to every one, fetch every one,
//! restart, fetch every one again, with the node's open descriptors counted throughout.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_client::fetch::{self, Limits};
use cairn_client::records::decode_batches;
use cairn_client::{Client, Options};
use cairn_testkit::ProcessNode;
use cairn_types::batch::BatchBuilder;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreateTopicsRequest, FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tempfile::TempDir;
use uuid::Uuid;

/// The open-file limit, soft and hard, of the test and of the node it starts.
const OPEN_FILES_MAX: u64 = 1024;
const TOPICS: usize = 10;
const PARTITIONS_PER_TOPIC: i32 = 1000;
/// Records produced to each partition (one batch).
const RECORDS: usize = 3;
/// The node's descriptor cache at this limit (half of it), plus what the node holds besides:
/// listeners, the test's connection, the runtime's epoll and wake-up descriptors, standard
/// streams, the data directory lock, descriptors leased to in-flight operations.
const NODE_DESCRIPTORS_MAX: usize = 512 + 64;

/// How long a node has to become ready (a restart opens 10,000 partitions).
const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a node has to exit after SIGTERM (it flushes and seals every partition).
const STOP_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one request may take (creating 1,000 partitions, producing to them).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// Starts a node on the data directory in `dir` (new or left by an earlier node); returns it and
/// how long it took to become ready.
fn start_in(dir: TempDir) -> (ProcessNode, Duration) {
    let started = Instant::now();
    let builder =
        ProcessNode::builder(CAIRN).ready_timeout(READY_TIMEOUT).stop_timeout(STOP_TIMEOUT);
    (builder.start_in(dir), started.elapsed())
}

/// SIGTERM, then a successful exit; returns the directory and how long that took.
fn stop(node: ProcessNode) -> (TempDir, Duration) {
    let started = Instant::now();
    let (dir, _) = node.stop();
    (dir, started.elapsed())
}

/// The node's open descriptors now.
fn descriptors(node: &ProcessNode) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", node.pid())).expect("/proc/PID/fd").count()
}

/// The node's resident set size in KiB.
fn rss_kib(node: &ProcessNode) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid())).expect("status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS in kB")
}

fn assert_descriptors_bounded(node: &ProcessNode, when: &str) -> usize {
    let open = descriptors(node);
    assert!(
        open <= NODE_DESCRIPTORS_MAX,
        "{when}: the node has {open} descriptors open (limit {OPEN_FILES_MAX})\n{}",
        node.log_tail()
    );
    open
}

/// Lowers this process's soft and hard open-file limits (the node inherits them).
fn lower_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = Rlimit { current: Some(OPEN_FILES_MAX), maximum: Some(OPEN_FILES_MAX) };
    setrlimit(Resource::Nofile, limit).expect("lower RLIMIT_NOFILE");
    assert_eq!(getrlimit(Resource::Nofile), limit);
}

fn topic(t: usize) -> String {
    format!("wide-{t}")
}

/// The value of record `r` of partition `p` of topic `t`.
fn value(t: usize, p: i32, r: usize) -> Vec<u8> {
    format!("{t}/{p}/{r}").into_bytes()
}

async fn connect(node: &ProcessNode) -> Client {
    let mut options = Options::new(node.bootstrap().to_owned());
    options.request_timeout = REQUEST_TIMEOUT;
    Client::connect(&options).await.expect("connect")
}

/// Creates the topics; returns their ids.
async fn create_topics(client: &mut Client) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for t in 0..TOPICS {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(client.request_timeout_ms())
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic(t))))
                    .with_num_partitions(PARTITIONS_PER_TOPIC)
                    .with_replication_factor(1),
            ]);
        let response = client.send(&request).await.expect("CreateTopics");
        let result = &response.topics[0];
        assert_eq!(result.error_code, 0, "creating {}: {:?}", topic(t), result.error_message);
        ids.push(result.topic_id);
    }
    ids
}

/// Where a new partition's first record lands: after its group's membership entry (offset 0)
/// and its first leader's blank entry (offset 1), both control batches.
const FIRST_OFFSET: i64 = 2;

/// Produces one batch of [`RECORDS`] records to every partition, acks=all.
async fn produce_everywhere(client: &mut Client, ids: &[Uuid]) {
    let by_id = client.version_of::<ProduceRequest>().expect("Produce version") >= 13;
    for (t, id) in ids.iter().enumerate() {
        let partitions = (0..PARTITIONS_PER_TOPIC)
            .map(|p| {
                let mut builder = BatchBuilder::new(0);
                for r in 0..RECORDS {
                    builder = builder.record(None, Some(&value(t, p, r)), &[]);
                }
                PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(Bytes::from(builder.build())))
            })
            .collect();
        let mut data = TopicProduceData::default().with_partition_data(partitions);
        if by_id {
            data.topic_id = *id;
        } else {
            data.name = TopicName(StrBytes::from_string(topic(t)));
        }
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(client.request_timeout_ms())
            .with_topic_data(vec![data]);
        let response = client.send(&request).await.expect("Produce");
        let answered = &response.responses[0].partition_responses;
        assert_eq!(answered.len(), PARTITIONS_PER_TOPIC as usize);
        for partition in answered {
            assert_eq!(partition.error_code, 0, "{} partition {}", topic(t), partition.index);
            assert_eq!(
                partition.base_offset,
                FIRST_OFFSET,
                "{} partition {}",
                topic(t),
                partition.index
            );
        }
    }
}

/// Fetches every partition from offset 0 and checks every record's value.
async fn fetch_everything(client: &mut Client, ids: &[Uuid]) {
    let by_id = client.version_of::<FetchRequest>().expect("Fetch version") >= 13;
    let limits = Limits { partition_bytes: 64 * 1024, bytes: 64 * 1024 * 1024, max_wait_ms: 0 };
    for (t, id) in ids.iter().enumerate() {
        let partitions = (0..PARTITIONS_PER_TOPIC).map(|p| (p, 0));
        let request = fetch::request(&topic(t), by_id.then_some(*id), partitions, limits)
            .expect("partitions to fetch");
        let response = client.send(&request).await.expect("Fetch");
        assert_eq!(response.error_code, 0);
        let answered = &response.responses[0].partitions;
        assert_eq!(answered.len(), PARTITIONS_PER_TOPIC as usize);
        for partition in answered {
            let p = partition.partition_index;
            assert_eq!(partition.error_code, 0, "{} partition {p}", topic(t));
            let records = partition.records.as_deref().unwrap_or_default();
            let mut values = Vec::new();
            decode_batches::<()>(records, 0, |record| {
                values.push(record.value.map(<[u8]>::to_vec));
                Ok(true)
            })
            .expect("decode");
            let expected: Vec<_> = (0..RECORDS).map(|r| Some(value(t, p, r))).collect();
            assert_eq!(values, expected, "{} partition {p}", topic(t));
        }
    }
}

/// 10,000 partitions on one node under an open-file limit of 1,024, soft and hard: every topic
/// is created whole, every partition takes and serves records, the node restarts and serves
/// them again, and its open descriptors stay bounded by the descriptor cache throughout.
#[test]
#[expect(clippy::print_stderr, reason = "the measured times, descriptors and RSS are reported")]
fn too_many_partitions_for_the_open_file_limit_do_not_brick_the_node() {
    lower_open_file_limit();
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");

    let (node, ready) = start_in(tempfile::tempdir().expect("temp dir"));
    let started = std::fs::read_to_string(node.log()).expect("log");
    assert_eq!(started.matches("connections_max exceeds").count(), 1, "1,024 > 1,024 - 512 - 64");
    let ids = runtime.block_on(async {
        let mut client = connect(&node).await;
        let started = Instant::now();
        let ids = create_topics(&mut client).await;
        let created = started.elapsed();
        let after_create = assert_descriptors_bounded(&node, "after creating the topics");
        let rss_created = rss_kib(&node);
        let started = Instant::now();
        produce_everywhere(&mut client, &ids).await;
        let produced = started.elapsed();
        assert_descriptors_bounded(&node, "after producing");
        let started = Instant::now();
        fetch_everything(&mut client, &ids).await;
        let fetched = started.elapsed();
        let after_fetch = assert_descriptors_bounded(&node, "after fetching");
        eprintln!(
            "first start: ready in {ready:?}; created {} partitions in {created:?} \
             ({after_create} descriptors, RSS {rss_created} KiB); produced in {produced:?}, \
             fetched in {fetched:?} ({after_fetch} descriptors, RSS {} KiB)",
            TOPICS as i32 * PARTITIONS_PER_TOPIC,
            rss_kib(&node)
        );
        ids
    });
    let (dir, stopped) = stop(node);

    let (node, ready) = start_in(dir);
    runtime.block_on(async {
        let opened = assert_descriptors_bounded(&node, "after the restart");
        let mut client = connect(&node).await;
        let started = Instant::now();
        fetch_everything(&mut client, &ids).await;
        let fetched = started.elapsed();
        let after_fetch = assert_descriptors_bounded(&node, "after fetching again");
        eprintln!(
            "stopped in {stopped:?}; restart: ready in {ready:?} ({opened} descriptors), \
             fetched in {fetched:?} ({after_fetch} descriptors, RSS {} KiB)",
            rss_kib(&node)
        );
    });
    stop(node);
}
