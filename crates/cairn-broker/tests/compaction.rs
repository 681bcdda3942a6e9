//! Log compaction through a partition's Raft group (RFC 0007), on a real disk: a round keeps
//! the latest record of each key below its point at the same offsets, leaves the rest as it
//! was, keeps a tombstone through its first round and drops it in a later one past
//! `delete.retention.ms`; the cleaned log survives a restart.

use std::path::Path;
use std::time::Duration;

use cairn_broker::Acks;
use cairn_meta::{MetadataStore, TopicName, TopicSpec};
use cairn_storage::ManualClock;
use cairn_testkit::broker::{
    ReadRecord, TestBroker, committed_records, open_broker, sim_broker_config,
};
use cairn_types::Offset;
use cairn_types::batch::BatchBuilder;

const TIMEOUT: Duration = Duration::from_secs(20);
const TOPIC: &str = "compacted";
const T0: i64 = 1_700_000_000_000;
const DELETE_RETENTION_MS: i64 = 60_000;

async fn open(dir: &Path, clock: &ManualClock) -> TestBroker {
    let broker = open_broker(sim_broker_config(dir, clock)).await;
    if broker.meta().topic(TOPIC).is_none() {
        let configs = [
            ("cleanup.policy", "compact".to_owned()),
            ("segment.bytes", "1024".to_owned()),
            ("delete.retention.ms", DELETE_RETENTION_MS.to_string()),
        ];
        let spec = TopicSpec {
            name: TopicName::new(TOPIC).expect("valid name"),
            partitions: 1,
            replication_factor: 1,
            configs: configs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
            assignments: None,
        };
        broker.create_topic(spec).await.expect("created");
    }
    broker
}

/// A record of the partition: offset, key, value (`None`: a tombstone).
type Record = (u64, String, Option<String>);

async fn produce(broker: &TestBroker, key: Option<&str>, value: Option<&str>, timestamp: i64) {
    let batch = BatchBuilder::new(timestamp)
        .record(key.map(str::as_bytes), value.map(str::as_bytes), &[])
        .build();
    let partition = broker.partition(TOPIC, 0).expect("hosted");
    partition.produce(batch, Acks::All, TIMEOUT).await.expect("appended");
}

/// Every record of the partition, in order, without control batches.
fn records(broker: &TestBroker) -> Vec<Record> {
    let partition = broker.partition(TOPIC, 0).expect("hosted");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf-8");
    let record = |r: ReadRecord| (r.offset, text(r.key.expect("a key")), r.value.map(text));
    committed_records(&partition).into_iter().map(record).collect()
}

/// What a round over `[from, to)` at `now_ms` leaves of `before`: below `to`, the latest
/// record of each key in `[from, to)` and every record whose key has none there, less the
/// tombstones below `from` older than the retention.
fn cleaned(
    before: &[Record],
    from: u64,
    to: u64,
    now_ms: i64,
    stamps: &[(u64, i64)],
) -> Vec<Record> {
    let latest = |key: &str| {
        before.iter().filter(|r| r.0 >= from && r.0 < to && r.1 == key).map(|r| r.0).max()
    };
    let stamp = |offset: u64| stamps.iter().find(|s| s.0 == offset).expect("stamped").1;
    before
        .iter()
        .filter(|(offset, key, value)| {
            if *offset >= to {
                return true;
            }
            let newest = latest(key).is_none_or(|latest| *offset >= latest);
            let expired =
                value.is_none() && *offset < from && stamp(*offset) + DELETE_RETENTION_MS <= now_ms;
            newest && !expired
        })
        .cloned()
        .collect()
}

/// Runs cleaner passes until one carries out a round; the point it reached.
async fn clean_round(broker: &TestBroker) -> u64 {
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    let partition = broker.partition(TOPIC, 0).expect("hosted");
    let before = partition.compaction_point();
    let cleaning = broker.clean(&stopping).await;
    assert_eq!(cleaning.rounds, 1, "one round proposed and carried out: {cleaning:?}");
    let point = partition.compaction_point();
    assert!(point > before, "the point moved on from {before} to {point}");
    point.0
}

#[tokio::test]
async fn rounds_keep_the_latest_record_of_each_key_and_expire_tombstones_in_a_later_round() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(T0);
    let broker = open(dir.path(), &clock).await;
    let mut stamps = Vec::new();
    let mut next = 0;
    let mut write = async |key: &str, value: Option<&str>, stamps: &mut Vec<(u64, i64)>| {
        produce(&broker, Some(key), value, T0 - 1).await;
        stamps.push((next, T0 - 1));
        next += 1;
    };
    for i in 0..60 {
        write(&format!("k{}", i % 6), Some(&format!("v{i}")), &mut stamps).await;
    }
    write("k0", None, &mut stamps).await;
    for i in 0..30 {
        write(&format!("k{}", 1 + i % 5), Some(&format!("w{i}")), &mut stamps).await;
    }
    let before = records(&broker);
    let first = clean_round(&broker).await;
    let after_first = records(&broker);
    assert_eq!(after_first, cleaned(&before, 0, first, T0, &stamps));
    assert!(after_first.len() < before.len(), "the round dropped records");
    assert!(after_first.iter().any(|r| r.1 == "k0" && r.2.is_none()), "the tombstone is kept");

    // Past the tombstone's retention, a second round (the log dirty enough again) drops it.
    clock.advance(DELETE_RETENTION_MS + 1);
    for i in 0..90 {
        produce(&broker, Some(&format!("k{}", 1 + i % 5)), Some(&format!("x{i}")), T0).await;
        stamps.push((next, T0));
        next += 1;
    }
    let before = records(&broker);
    let second = clean_round(&broker).await;
    let after_second = records(&broker);
    assert_eq!(
        after_second,
        cleaned(&before, first, second, T0 + DELETE_RETENTION_MS + 1, &stamps)
    );
    assert!(!after_second.iter().any(|r| r.1 == "k0"), "k0's tombstone expired, and with it k0");
    broker.shutdown().await;

    let broker = open(dir.path(), &clock).await;
    assert_eq!(records(&broker), after_second, "the cleaned log is what a restart reads");
    assert_eq!(broker.partition(TOPIC, 0).expect("hosted").compaction_point(), Offset(second));
    broker.shutdown().await;
}
