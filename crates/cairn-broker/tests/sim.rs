//! The broker on a `SimDisk` with a `ManualClock` (`cairn_testkit::broker::open_sim_broker`):
//! what a real disk and the system clock cannot show. Retention driven by moving the clock, and
//! never past the high watermark; a power loss (unsynced writes dropped, appends torn) keeps
//! every `acks=all`-acknowledged record; the high watermark never exceeds what is flushed with
//! one voter, and never goes back, across the crash included.
//!
//! Tests run on a current-thread runtime: the flusher runs only when the test awaits, so a test
//! that appends and looks without awaiting sees appends that are not yet flushed or committed.

use std::path::Path;
use std::time::Duration;

use cairn_broker::{Acks, Partition, PartitionError};
use cairn_meta::{TopicName, TopicSpec};
use cairn_storage::ManualClock;
use cairn_storage::sim::SimDisk;
use cairn_testkit::broker::{MANUAL_CLOCK_START_MS, SimBroker, open_sim_broker, sim_broker_config};
use cairn_types::Offset;
use cairn_types::batch::{BatchBuilder, Batches};
use cairn_types::limits::BATCH_BYTES_MAX;

/// How long a test waits for an append to be committed.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Retention and segment age of the aging topic.
const RETENTION_MS: i64 = 60_000;
const SEGMENT_MS: i64 = 1_000;

async fn create(broker: &SimBroker, name: &str, configs: &[(&str, String)]) {
    let spec = TopicSpec {
        name: TopicName::new(name).expect("valid name"),
        partitions: 1,
        replication_factor: 1,
        configs: configs.iter().map(|(key, value)| ((*key).to_owned(), value.clone())).collect(),
        assignments: None,
    };
    broker.create_topic(spec).await.expect("new topic");
}

/// A batch of one record whose value is `value`.
fn batch(value: &str) -> Vec<u8> {
    BatchBuilder::new(MANUAL_CLOCK_START_MS)
        .record(Some(b"key"), Some(value.as_bytes()), &[])
        .build()
}

/// Produces one record with `acks=1` (answered once the group appended it); returns the
/// offset after it.
async fn append(partition: &Partition<SimDisk>, value: &str) -> Offset {
    let produced = partition.produce(batch(value), Acks::Leader, COMMIT_TIMEOUT).await;
    produced.expect("append").next_offset
}

/// The record values readable from `from` up to the high watermark, in offset order.
fn values(partition: &Partition<SimDisk>, from: Offset) -> Vec<String> {
    let high_watermark = partition.offsets().high_watermark;
    let mut values = Vec::new();
    let mut at = from;
    while at < high_watermark {
        let fetched = partition.read(at, 1 << 20).expect("read");
        for batch in Batches::new(&fetched.records, BATCH_BYTES_MAX) {
            let batch = batch.expect("a valid batch");
            at = batch.header().last_offset().plus(1);
            if batch.header().is_control() {
                continue; // Raft's membership and blank entries, which consumers skip.
            }
            for record in batch.records() {
                let record = record.expect("a valid record");
                let value = record.value.expect("a value");
                values.push(String::from_utf8(value.to_vec()).expect("utf-8"));
            }
        }
    }
    values
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

/// Segments past `retention.ms` by the manual clock go, oldest first, through the group's
/// snapshot and purge; the log then starts at the first offset kept.
#[tokio::test]
async fn retention_follows_the_manual_clock_and_stops_at_the_high_watermark() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = ManualClock::new(MANUAL_CLOCK_START_MS);
    let broker = open_sim_broker(sim_broker_config(dir.path(), &clock), SimDisk::new(7)).await;
    let configs = [
        ("retention.ms", RETENTION_MS.to_string()),
        ("segment.ms", SEGMENT_MS.to_string()),
        ("message.timestamp.type", "LogAppendTime".to_owned()),
    ];
    create(&broker, "aging", &configs).await;
    let partition = broker.partition("aging", 0).expect("hosted");

    // Three segments, the first two past retention by the clock. The first also holds the
    // group's membership (offset 0) and blank (offset 1) entries.
    let first = partition.produce(batch("a"), Acks::Leader, COMMIT_TIMEOUT).await.expect("append");
    assert_eq!(first.log_append_time_ms, Some(MANUAL_CLOCK_START_MS), "stamped by the clock");
    assert_eq!(first.base_offset, Offset(2), "after the membership and blank entries");
    clock.advance(2 * SEGMENT_MS);
    append(&partition, "b").await;
    clock.advance(RETENTION_MS + SEGMENT_MS);
    let end = append(&partition, "c").await;
    assert_eq!(partition.offsets().log_start, Offset(0));

    partition.wait_committed(end, COMMIT_TIMEOUT).await.expect("committed");
    assert_eq!(partition.apply_retention().await.expect("retention"), 2, "both aged segments go");
    let offsets = partition.offsets();
    assert_eq!((offsets.log_start, offsets.high_watermark), (Offset(4), end));
    assert_eq!(partition.replica().log_start(), Offset(4), "the replica saw the purge");
    assert!(matches!(
        partition.read(Offset(0), 1 << 20),
        Err(PartitionError::OffsetOutOfRange { .. })
    ));
    assert_eq!(values(&partition, Offset(4)), ["c"]);
    broker.shutdown().await;
}

/// What the first broker acknowledged and observed before the power loss.
struct BeforeCrash {
    /// Values of the records `acks=all` acknowledged, offset `i` holding value `i`.
    acknowledged: usize,
    /// The highest high watermark it showed.
    high_watermark: Offset,
}

/// Produces `rounds` rounds of a few appends each, waiting for the commit of every other round
/// (`acks=all`) and not of the others (`acks=1`, unknown after a crash). After every step, the
/// high watermark is at most the flushed offset (one voter) and never moved back.
async fn produce_and_watch(broker: &SimBroker, rounds: usize) -> BeforeCrash {
    let partition = broker.partition("kept", 0).expect("hosted");
    let (mut acknowledged, mut high_watermark, mut next) = (0, Offset(0), 0_usize);
    for round in 0..rounds {
        let mut end = Offset(0);
        for _ in 0..=round % 4 {
            end = append(&partition, &next.to_string()).await;
            next += 1;
        }
        if round % 2 == 0 {
            partition.wait_committed(end, COMMIT_TIMEOUT).await.expect("committed");
            acknowledged = next;
        } else {
            tokio::task::yield_now().await; // the flusher may or may not get there
        }
        let replica = partition.replica();
        assert!(replica.committed() <= replica.flushed(), "one voter commits only what is flushed");
        assert!(replica.committed() >= high_watermark, "the high watermark went back");
        high_watermark = replica.committed();
    }
    BeforeCrash { acknowledged, high_watermark }
}

/// A power loss drops what was not synced (tearing appends); the broker opened again on the
/// same disk holds every acknowledged record, and at least every offset it ever showed as the
/// high watermark: with one voter, the high watermark never claimed more than the disk held.
#[test]
fn acknowledged_records_survive_a_power_loss() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = ManualClock::new(MANUAL_CLOCK_START_MS);
    let disk = SimDisk::new(11);
    disk.set_tear_on_crash(true);
    let before = runtime().block_on(async {
        let broker = open_sim_broker(sim_broker_config(dir.path(), &clock), disk.clone()).await;
        create(&broker, "kept", &[]).await;
        let before = produce_and_watch(&broker, 40).await;
        // Unsynced appends at the moment of the power loss.
        append(&broker.partition("kept", 0).expect("hosted"), "lost?").await;
        disk.crash();
        before
    }); // Dropping the runtime stops the first broker's tasks: nothing of it runs again.
    assert!(before.acknowledged > 0 && before.high_watermark > Offset(0));

    runtime().block_on(async {
        let broker = open_sim_broker(sim_broker_config(dir.path(), &clock), disk.clone()).await;
        let partition = broker.partition("kept", 0).expect("hosted after the restart");
        assert!(partition.offline().is_none(), "{:?}", partition.offline());
        let offsets = partition.offsets();
        assert!(
            offsets.high_watermark >= before.high_watermark,
            "the high watermark went back over the crash: {offsets:?}, showed {:?}",
            before.high_watermark
        );
        let values = values(&partition, Offset(0));
        assert!(values.len() >= before.acknowledged, "{} of {}", values.len(), before.acknowledged);
        for (index, value) in values.iter().enumerate().take(before.acknowledged) {
            assert_eq!(*value, index.to_string(), "offset {index}");
        }
        // Still a working leader: the next append goes after what survived.
        let end = append(&partition, "after").await;
        partition.wait_committed(end, COMMIT_TIMEOUT).await.expect("committed");
        broker.shutdown().await;
    });
    assert_data_dir_untouched(dir.path());
}

/// The logs live on the sim disk: the real directory holds the metadata and nothing under
/// `topics/` but what the broker created there for `SimDisk`'s sake (nothing).
fn assert_data_dir_untouched(dir: &Path) {
    let topics = dir.join("topics");
    let real = std::fs::read_dir(&topics).map(|entries| entries.count()).unwrap_or(0);
    assert_eq!(real, 0, "partition data went to the real disk");
}
