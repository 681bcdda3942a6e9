//! The topic lifecycle on a real disk: directories named by topic id, crash-safe deletion,
//! all-or-nothing creation, what a start does with what it finds in `topics/`, and partitions
//! that are served offline instead of stopping the node.
//!
//! Each test opens a broker over local metadata in a temporary directory
//! (`cairn_testkit::broker`); a "restart" shuts the broker down and opens a new one over the
//! same directory. Crash states are built
//! exactly as a crash leaves them: the metadata change made durable, the directory steps not.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_broker::{Acks, BrokerConfig, BrokerError, Health, PartitionError};
use cairn_meta::{MetadataStore, TopicMeta, TopicName, TopicSpec};
use cairn_testkit::broker::{TestBroker, broker_config, metadata, open_broker};
use cairn_types::Offset;
use cairn_types::batch::BatchBuilder;
use cairn_types::limits::TOPIC_NAME_BYTES_MAX;

/// How long a test waits for an append to become durable.
const DURABLE_TIMEOUT: Duration = Duration::from_secs(20);

async fn open_with(dir: &Path, health: Arc<Health>) -> TestBroker {
    open_broker(BrokerConfig { health, ..broker_config(dir) }).await
}

async fn open(dir: &Path) -> TestBroker {
    open_broker(broker_config(dir)).await
}

fn spec(name: &str, partitions: u32) -> TopicSpec {
    let name = TopicName::new(name).expect("valid name");
    TopicSpec { name, partitions, replication_factor: 1, configs: Vec::new(), assignments: None }
}

/// Appends one batch of `records` records to `topic`-`index` and waits until it is durable.
async fn produce(broker: &TestBroker, topic: &str, index: u32, records: usize) {
    let partition = broker.partition(topic, index).expect("hosted");
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for record in 0..records {
        builder = builder.record(Some(b"key"), Some(format!("value {record}").as_bytes()), &[]);
    }
    let produced = partition.produce(builder.build(), Acks::All, DURABLE_TIMEOUT).await;
    produced.expect("committed");
}

/// The records and their batches' bytes readable from the start of `topic`-`index`, without
/// Raft's own entries (control batches, which consumers skip).
fn contents(broker: &TestBroker, topic: &str, index: u32) -> (u64, usize) {
    let partition = broker.partition(topic, index).expect("hosted");
    let start = partition.offsets().log_start;
    let read = partition.read(start, 1 << 20).expect("read");
    let (mut records, mut bytes) = (0, 0);
    for batch in cairn_types::batch::Batches::new(&read.records, 1 << 20) {
        let batch = batch.expect("a valid batch");
        if !batch.header().is_control() {
            records += u64::from(batch.header().record_count);
            bytes += batch.as_bytes().len();
        }
    }
    (records, bytes)
}

fn topics_dir(dir: &Path) -> PathBuf {
    dir.join("topics")
}

/// Names of the entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The directory names the id layout gives `topic`'s partitions.
fn dirs_of(topic: &TopicMeta) -> Vec<String> {
    let mut names: Vec<String> =
        (0..topic.partitions).map(|index| format!("{}-{index}", topic.id.to_hex())).collect();
    names.sort();
    names
}

#[tokio::test]
async fn deleting_a_topic_with_the_longest_name_removes_its_data_and_a_recreated_topic_is_empty() {
    let dir = tempfile::tempdir().expect("temp dir");
    let name = "x".repeat(TOPIC_NAME_BYTES_MAX);
    let broker = open(dir.path()).await;
    let old = broker.create_topic(spec(&name, 3)).await.expect("create");
    for index in 0..3 {
        produce(&broker, &name, index, 5).await;
    }
    assert_eq!(contents(&broker, &name, 2).0, 5);
    broker.delete_topic(&name).await.expect("deleting a 249-character topic succeeds");
    assert!(entries(&topics_dir(dir.path())).is_empty(), "its data is gone");
    assert!(broker.meta().pending_deletions().is_empty(), "and the deletion is finished");
    let new = broker.create_topic(spec(&name, 3)).await.expect("re-create");
    assert_ne!(new.id, old.id);
    for index in 0..3 {
        assert_eq!(contents(&broker, &name, index), (0, 0), "partition {index} is empty");
    }
    broker.shutdown().await;
    drop(broker);
    let broker = open(dir.path()).await;
    assert_eq!(contents(&broker, &name, 0), (0, 0), "still empty after a restart");
    broker.shutdown().await;
}

/// How far a crashed deletion got: the metadata change is durable (the name is free, the topic
/// pending deletion), then `removed` partition directories were removed, and the next one was
/// half removed if `torn`.
#[derive(Clone, Copy, Debug)]
struct CrashPoint {
    removed: u32,
    torn: bool,
}

/// Builds the crash state: a topic with data, deleted in the metadata only, some of its
/// directories removed as the broker removes them.
async fn crashed_deletion(dir: &Path, partitions: u32, crash: CrashPoint) -> Arc<TopicMeta> {
    let broker = open(dir).await;
    let topic = broker.create_topic(spec("doomed", partitions)).await.expect("create");
    for index in 0..partitions {
        produce(&broker, "doomed", index, 3).await;
    }
    broker.shutdown().await;
    drop(broker);
    let store = metadata(dir);
    store.delete_topic("doomed").await.expect("the metadata write of the deletion");
    drop(store);
    let mut removing =
        (0..partitions).map(|index| topics_dir(dir).join(format!("{}-{index}", topic.id.to_hex())));
    for path in removing.by_ref().take(crash.removed as usize) {
        std::fs::remove_dir_all(path).expect("remove");
    }
    if crash.torn {
        let half = removing.next().expect("a partition left to tear");
        let first = entries(&half).into_iter().next().expect("a file in the partition");
        std::fs::remove_file(half.join(first)).expect("remove one file");
    }
    assert_eq!(entries(&topics_dir(dir)).len() as u32, partitions - crash.removed);
    topic
}

#[tokio::test]
async fn a_crash_in_the_middle_of_a_deletion_is_finished_at_start_and_never_serves_old_data() {
    let partitions = 4;
    let mut points = Vec::new();
    for removed in 0..=partitions {
        points.push(CrashPoint { removed, torn: false });
        if removed < partitions {
            points.push(CrashPoint { removed, torn: true });
        }
    }
    for crash in points {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = crashed_deletion(dir.path(), partitions, crash).await;
        let broker = open(dir.path()).await;
        assert!(broker.meta().topic("doomed").is_none(), "{crash:?}: the name is gone");
        assert!(broker.partition("doomed", 0).is_none(), "{crash:?}");
        assert!(entries(&topics_dir(dir.path())).is_empty(), "{crash:?}: all its data is gone");
        assert!(broker.meta().pending_deletions().is_empty(), "{crash:?}: deletion finished");
        assert!(!dir.path().join("unrecognised").exists(), "{crash:?}: nothing was unknown");
        let new = broker.create_topic(spec("doomed", partitions)).await.expect("re-create");
        assert_ne!(new.id, old.id);
        for index in 0..partitions {
            assert_eq!(contents(&broker, "doomed", index), (0, 0), "{crash:?}");
        }
        broker.shutdown().await;
    }
}

#[tokio::test]
async fn startup_moves_unrecognised_entries_aside_and_deletes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = open(dir.path()).await;
    let topic = broker.create_topic(spec("kept", 2)).await.expect("create");
    produce(&broker, "kept", 1, 4).await;
    broker.shutdown().await;
    drop(broker);
    let topics = topics_dir(dir.path());
    std::fs::write(topics.join("notes.txt"), b"mine").expect("write");
    std::fs::create_dir(topics.join("backup-7")).expect("mkdir");
    std::fs::write(topics.join("backup-7").join("00000000000000000000.log"), b"x").expect("write");
    let stranger = format!("{}-0", cairn_meta::TopicId::random().to_hex());
    std::fs::create_dir(topics.join(&stranger)).expect("mkdir");
    for index in 0..500 {
        std::fs::write(topics.join(format!("junk-{index}.tmp")), b"").expect("write");
    }

    let broker = open(dir.path()).await;
    assert_eq!(entries(&topics), dirs_of(&topic), "only the topic's partitions stay");
    assert_eq!(contents(&broker, "kept", 1).0, 4, "and its data");
    let aside = entries(&dir.path().join("unrecognised"));
    assert_eq!(aside.len(), 1, "one place per start: {aside:?}");
    let moved = dir.path().join("unrecognised").join(&aside[0]);
    assert_eq!(entries(&moved).len(), 503);
    assert_eq!(std::fs::read(moved.join("notes.txt")).expect("kept"), b"mine");
    let log = moved.join("backup-7/00000000000000000000.log");
    assert_eq!(std::fs::read(log).expect("kept"), b"x");
    assert!(moved.join(&stranger).is_dir());
    broker.shutdown().await;
}

/// Writes a log with `records` records into `dir` the way a node of the name layout did.
fn write_log(dir: &Path, records: usize) {
    let mut log = cairn_storage::Log::open(
        cairn_storage::RealDisk,
        dir,
        cairn_storage::LogConfig::default(),
        Arc::new(cairn_storage::SystemClock),
    )
    .expect("open log");
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for _ in 0..records {
        builder = builder.record(None, Some(b"old layout"), &[]);
    }
    log.append(&mut builder.build(), cairn_types::LeaderEpoch(0)).expect("append");
    log.flush().expect("flush");
    log.close().expect("close");
}

#[tokio::test]
async fn name_layout_directories_are_migrated_to_topic_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = metadata(dir.path());
    let topic = store.create_topic(spec("legacy", 2)).await.expect("create");
    drop(store);
    let topics = topics_dir(dir.path());
    write_log(&topics.join("legacy-0"), 7);
    write_log(&topics.join("legacy-1"), 2);
    write_log(&topics.join("gone-0.deleted"), 1);

    let broker = open(dir.path()).await;
    assert_eq!(entries(&topics), dirs_of(&topic), "renamed; the old deletion finished");
    assert_eq!(contents(&broker, "legacy", 0).0, 7);
    assert_eq!(contents(&broker, "legacy", 1).0, 2);
    assert!(!dir.path().join("unrecognised").exists());
    broker.shutdown().await;
}

#[tokio::test]
async fn creating_partitions_is_all_or_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = open(dir.path()).await;
    let topic = broker.create_topic(spec("grow", 2)).await.expect("create");
    let topics = topics_dir(dir.path());
    let occupied = topics.join(format!("{}-3", topic.id.to_hex()));
    std::fs::write(&occupied, b"in the way").expect("write");

    let error =
        broker.create_partitions("grow", 5, None).await.expect_err("partition 3 cannot be made");
    assert!(matches!(error, BrokerError::Create { partition: 3, .. }), "{error}");
    let message = error.to_string();
    assert!(!message.contains(&*dir.path().to_string_lossy()), "no server path: {message}");
    assert_eq!(broker.meta().topic("grow").expect("kept").partitions, 2, "nothing committed");
    assert!(broker.partition("grow", 2).is_none());
    let mut expected = dirs_of(&topic);
    expected.push(format!("{}-3", topic.id.to_hex()));
    assert_eq!(entries(&topics), expected, "partition 2's directory was removed");
    assert_eq!(std::fs::read(&occupied).expect("left alone"), b"in the way");

    std::fs::remove_file(&occupied).expect("clear the way");
    broker.create_partitions("grow", 5, None).await.expect("now it works");
    produce(&broker, "grow", 4, 1).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_topic_whose_partitions_cannot_be_made_is_not_created() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = open(dir.path()).await;
    let topics = topics_dir(dir.path());
    std::fs::remove_dir(&topics).expect("empty");
    std::fs::write(&topics, b"not a directory").expect("write");

    let error = broker.create_topic(spec("never", 3)).await.expect_err("cannot be made");
    assert!(matches!(error, BrokerError::Create { partition: 0, .. }), "{error}");
    assert!(!error.to_string().contains(&*dir.path().to_string_lossy()), "{error}");
    assert!(broker.meta().topic("never").is_none(), "absent from the metadata");
    assert!(broker.meta().topics().is_empty());
    assert!(broker.meta().pending_deletions().is_empty());
    assert!(broker.partition("never", 0).is_none());
    broker.shutdown().await;
    drop(broker);

    std::fs::remove_file(&topics).expect("repair");
    let broker = open(dir.path()).await;
    assert!(broker.meta().topics().is_empty(), "the node restarts without it");
    broker.create_topic(spec("never", 3)).await.expect("and it can be created now");
    broker.shutdown().await;
}

/// The data file of `topic`-`index`'s first segment.
fn first_segment(dir: &Path, topic: &TopicMeta, index: u32) -> PathBuf {
    topics_dir(dir)
        .join(format!("{}-{index}", topic.id.to_hex()))
        .join("00000000000000000000-00000000000000000000.log")
}

/// Flips one byte inside the records of the first batch of `topic`-`index`'s first segment.
fn corrupt_first_batch(dir: &Path, topic: &TopicMeta, index: u32) {
    let segment = first_segment(dir, topic, index);
    let mut bytes = std::fs::read(&segment).expect("read segment");
    bytes[70] ^= 0xff; // Past the 61-byte header: the CRC no longer matches.
    std::fs::write(&segment, bytes).expect("write segment");
}

/// A flip inside data the recovery checkpoint vouched for (a clean shutdown covers it all) is
/// not seen by the open, which reads no CRC there; the first fetch of it verifies it before a
/// byte is sent (RFC 0005), refuses it, and takes the partition offline.
#[tokio::test]
async fn a_fetch_never_sends_damaged_bytes_the_open_trusted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = open(dir.path()).await;
    let topic = broker.create_topic(spec("trusted", 1)).await.expect("create");
    produce(&broker, "trusted", 0, 2).await;
    produce(&broker, "trusted", 0, 2).await;
    broker.shutdown().await;
    drop(broker);
    // A byte in the records of the first produced batch (Raft's membership entry before it is
    // read at the start, and would be found there).
    let segment = first_segment(dir.path(), &topic, 0);
    let mut bytes = std::fs::read(&segment).expect("read segment");
    let (position, header) = cairn_types::batch::Frames::new(&bytes, 1 << 20)
        .find(|(_, header)| !header.is_control())
        .expect("a produced batch");
    bytes[position + header.total_bytes() as usize - 3] ^= 0xff;
    std::fs::write(&segment, bytes).expect("write segment");

    let broker = open(dir.path()).await;
    let partition = broker.partition("trusted", 0).expect("hosted");
    assert!(partition.offline().is_none(), "the open trusted the checkpointed data");
    let located = partition.locate(Offset(0), 1 << 20);
    assert!(
        matches!(&located, Err(PartitionError::Storage(cairn_storage::Error::Corruption { .. }))),
        "{:?}",
        located.map(|located| located.bytes)
    );
    assert!(partition.offline().is_some_and(|reason| reason.contains("corruption")));
    assert!(matches!(partition.locate(Offset(0), 1 << 20), Err(PartitionError::Failed(_))));
    broker.shutdown().await;
}

#[tokio::test]
async fn a_partition_that_cannot_be_opened_is_served_offline_and_the_others_are_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = open(dir.path()).await;
    let topic = broker.create_topic(spec("mixed", 2)).await.expect("create");
    for index in 0..2 {
        produce(&broker, "mixed", index, 2).await;
        produce(&broker, "mixed", index, 2).await;
    }
    broker.shutdown().await;
    drop(broker);
    corrupt_first_batch(dir.path(), &topic, 1);
    // Without the checkpoint recovery walks everything, and finds a bad batch before a good one.
    let partition_dir = topics_dir(dir.path()).join(format!("{}-1", topic.id.to_hex()));
    std::fs::remove_file(partition_dir.join("recovery-point")).expect("remove checkpoint");

    let gauge = Arc::new(cairn_metrics::Gauge::new());
    let health = Arc::new(Health::new(Arc::clone(&gauge)));
    let broker = open_with(dir.path(), Arc::clone(&health)).await;
    assert_eq!(contents(&broker, "mixed", 0).0, 4, "the healthy partition is served");
    let offline = broker.partition("mixed", 1).expect("hosted, offline");
    assert!(offline.offline().is_some_and(|reason| reason.contains("corruption")));
    let batch = BatchBuilder::new(0).record(None, Some(b"v"), &[]).build();
    let produced = offline.produce(batch, Acks::Leader, DURABLE_TIMEOUT).await;
    assert!(matches!(produced, Err(PartitionError::Failed(_))));
    assert!(matches!(offline.locate(Offset(0), 1024), Err(PartitionError::Failed(_))));
    assert_eq!(gauge.get(), 1);
    let listed = health.offline();
    assert_eq!((listed[0].topic.as_str(), listed[0].partition), ("mixed", 1));
    broker.shutdown().await;
    drop(broker);
    // Nothing was cut: the damage is still there for repair.
    assert!(
        partition_dir
            .join("00000000000000000000-00000000000000000000.log")
            .metadata()
            .expect("kept")
            .len()
            > 0
    );
}

#[tokio::test]
async fn corruption_found_by_a_read_takes_the_partition_offline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gauge = Arc::new(cairn_metrics::Gauge::new());
    let health = Arc::new(Health::new(Arc::clone(&gauge)));
    let broker = open_with(dir.path(), Arc::clone(&health)).await;
    let topic = broker.create_topic(spec("rot", 2)).await.expect("create");
    produce(&broker, "rot", 0, 3).await;
    produce(&broker, "rot", 1, 3).await;
    corrupt_first_batch(dir.path(), &topic, 0);

    let partition = broker.partition("rot", 0).expect("hosted");
    let error = partition.read(Offset(0), 1 << 20).expect_err("the damage is found");
    assert!(matches!(error, PartitionError::Storage(cairn_storage::Error::Corruption { .. })));
    assert!(partition.offline().is_some(), "and the partition is offline");
    assert_eq!(gauge.get(), 1);
    let batch = BatchBuilder::new(0).record(None, Some(b"v"), &[]).build();
    let produced = partition.produce(batch, Acks::Leader, DURABLE_TIMEOUT).await;
    assert!(matches!(produced, Err(PartitionError::Failed(_))));
    assert_eq!(contents(&broker, "rot", 1).0, 3, "the other partition is served");

    broker.delete_topic("rot").await.expect("delete");
    assert_eq!(gauge.get(), 0, "a deleted partition is no longer offline");
    broker.shutdown().await;
}

/// Counts the turns a task spinning on the runtime gets while `work` runs.
async fn turns_during<T>(work: impl Future<Output = T>) -> (T, u64) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let turns = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&turns);
    let spinner = tokio::spawn(async move {
        loop {
            counted.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    });
    tokio::task::yield_now().await;
    let before = turns.load(Ordering::Relaxed);
    let done = work.await;
    let during = turns.load(Ordering::Relaxed) - before;
    spinner.abort();
    (done, during)
}

/// Issue 9: creating, opening and closing partitions ran one partition at a time inside the
/// async functions, so a CreateTopics of 1,000 partitions, a start or a shutdown held a runtime
/// thread for tens of seconds; on a current-thread runtime (this test's) nothing else ran at
/// all. They now run on blocking threads, so other tasks keep running meanwhile. So does
/// deleting a topic, which closes and removes every partition.
#[tokio::test]
async fn opening_many_partitions_does_not_block_the_runtime() {
    const PARTITIONS: u32 = 300;
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = open(dir.path()).await;
    let (created, turns) = turns_during(broker.create_topic(spec("wide", PARTITIONS))).await;
    created.expect("create");
    assert!(turns > 0, "other tasks ran while the topic's partitions were made");
    produce(&broker, "wide", PARTITIONS - 1, 2).await;
    let ((), turns) = turns_during(broker.shutdown()).await;
    assert!(turns > 0, "other tasks ran while the partitions were closed");
    drop(broker);

    let (broker, turns) = turns_during(open(dir.path())).await;
    assert!(turns > 0, "other tasks ran while the partitions were opened");
    assert_eq!(entries(&topics_dir(dir.path())).len(), PARTITIONS as usize);
    assert_eq!(contents(&broker, "wide", PARTITIONS - 1).0, 2, "the data is back");
    let (deleted, turns) = turns_during(broker.delete_topic("wide")).await;
    deleted.expect("delete");
    assert!(turns > 0, "other tasks ran while the partitions were closed and removed");
    assert!(entries(&topics_dir(dir.path())).is_empty(), "every partition directory is gone");
    broker.shutdown().await;
}

/// Every start is a new term of each partition's one-voter group, one higher: the leader epoch
/// clients see grows by one per restart, every acknowledged record stays, and offsets go on
/// after them (each term's blank entry takes one).
#[tokio::test]
async fn every_restart_is_a_new_leader_epoch_and_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = open(dir.path()).await;
    first.create_topic(spec("epochs", 1)).await.expect("create");
    first.shutdown().await;
    drop(first);
    let (mut epochs, mut bases) = (Vec::new(), Vec::new());
    for round in 1..=3 {
        let broker = open(dir.path()).await;
        let partition = broker.partition("epochs", 0).expect("hosted");
        epochs.push(partition.leader_epoch().0);
        let batch = BatchBuilder::new(1_700_000_000_000).record(None, Some(b"v"), &[]).build();
        let appended =
            partition.produce(batch, Acks::All, DURABLE_TIMEOUT).await.expect("committed");
        bases.push(appended.base_offset.0);
        assert_eq!(contents(&broker, "epochs", 0).0, round, "every record so far");
        broker.shutdown().await;
    }
    assert_eq!(epochs, [2, 3, 4], "created in term 1, then one term per start");
    // Membership (0) and the blanks of terms 1 and 2 (1, 2), then the first record (3); each
    // later start adds a blank before its record.
    assert_eq!(bases, [3, 5, 7]);
}
