//! Tests of [`LocalMetadata`]: a conformance suite of [`MetadataStore`] behaviour (written against
//! the trait, run on the real disk and on the simulated one), then what is particular to the
//! local store: durability across reopen and crashes, damaged files, write failures, and a model
//! test with crashes.
//!
//! The store never awaits, so its futures are driven by [`block_on`], a poll with a no-op waker.

use std::io;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use cairn_meta::{
    ConfigChange, ConfigError, LocalMetadata, MetaError, MetadataStore, NodeMeta,
    REPLICATION_FACTOR_DEFAULT, TopicMeta, TopicName, TopicSpec,
};
use cairn_storage::sim::{EIO, ENOSPC, SimDisk, SimFile};
use cairn_storage::{Disk, RealDisk};
use cairn_types::limits::{CLUSTER_PARTITIONS_MAX, TOPIC_PARTITIONS_MAX};
use cairn_types::{LeaderEpoch, NodeId};

const DIR: &str = "/data/meta";

/// Runs a future that completes without waiting, as every future of the local store does.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the local metadata store never waits"),
    }
}

fn node(id: u64) -> NodeMeta {
    NodeMeta { id: NodeId(id), host: "localhost".into(), port: 9092, rack: None }
}

fn name(text: &str) -> TopicName {
    TopicName::new(text).expect("valid test topic name")
}

fn spec(topic: &str, partitions: u32) -> TopicSpec {
    TopicSpec {
        name: name(topic),
        partitions,
        replication_factor: 1,
        configs: Vec::new(),
        assignments: None,
    }
}

fn spec_with(topic: &str, configs: &[(&str, &str)]) -> TopicSpec {
    let configs = configs.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect();
    TopicSpec { configs, ..spec(topic, 1) }
}

fn set(key: &str, value: &str) -> ConfigChange {
    ConfigChange::Set { key: key.to_owned(), value: value.to_owned() }
}

fn delete(key: &str) -> ConfigChange {
    ConfigChange::Delete { key: key.to_owned() }
}

fn create(store: &impl MetadataStore, spec: TopicSpec) -> Result<Arc<TopicMeta>, MetaError> {
    block_on(store.create_topic(spec))
}

fn names(store: &impl MetadataStore) -> Vec<String> {
    store.topics().iter().map(|topic| topic.name.to_string()).collect()
}

fn sim_open(disk: &SimDisk) -> Result<LocalMetadata<SimDisk>, MetaError> {
    LocalMetadata::open_with_disk(disk.clone(), Path::new(DIR), node(1))
}

fn sim_store(disk: &SimDisk) -> LocalMetadata<SimDisk> {
    sim_open(disk).expect("open on the sim disk")
}

// The conformance suite: behaviour every `MetadataStore` has, whatever keeps it.

fn creates_and_describes(store: &impl MetadataStore) {
    let created = create(store, spec_with("orders", &[("retention.ms", "1000")])).expect("new");
    assert_eq!(created.name, name("orders"));
    assert_eq!(created.partitions, 1);
    assert_eq!(created.replication_factor, 1);
    assert_eq!(created.configs.retention_ms(), Some(1000));
    assert_eq!(store.topic("orders"), Some(Arc::clone(&created)));
    create(store, spec("audit", 3)).expect("new");
    assert_eq!(names(store), ["audit", "orders"], "sorted by name");
    assert_eq!(store.topic("missing"), None);
    let other = store.topic("audit").expect("created");
    assert_ne!(other.id, created.id);
    // The default replication factor is the store's: 1 on a node without peers.
    let default = TopicSpec { replication_factor: REPLICATION_FACTOR_DEFAULT, ..spec("d", 1) };
    assert_eq!(create(store, default).expect("the default factor").replication_factor, 1);
}

fn refusals_change_nothing(store: &impl MetadataStore) {
    create(store, spec("a.b", 2)).expect("new");
    let before = store.topics();
    let refused = [
        (spec("a.b", 1), "already exists"),
        (spec("a_b", 1), "collides"),
        (spec("c", 0), "partition"),
        (spec("c", TOPIC_PARTITIONS_MAX + 1), "partition"),
        (TopicSpec { replication_factor: 2, ..spec("c", 1) }, "replication factor"),
        (spec_with("c", &[("retention.ms", "-5")]), "retention.ms"),
        (spec_with("c", &[("cleanup.policy", "shred")]), "cleanup.policy"),
        (spec_with("c", &[("no.such.config", "1")]), "unknown"),
        (spec_with("c", &[("segment.ms", "1"), ("segment.ms", "2")]), "more than once"),
    ];
    for (spec, message) in refused {
        let error = create(store, spec.clone()).expect_err("refused");
        assert!(error.to_string().contains(message), "{spec:?}: {error}");
    }
    assert!(matches!(create(store, spec("a.b", 1)), Err(MetaError::TopicExists(_))));
    assert!(matches!(create(store, spec("a_b", 1)), Err(MetaError::InvalidTopic(_))));
    assert!(matches!(
        create(store, spec_with("c", &[("segment.bytes", "1")])),
        Err(MetaError::Config(ConfigError::InvalidValue { .. }))
    ));
    assert_eq!(store.topics(), before);
    assert_eq!(store.topic("c"), None);
}

fn partitions_only_grow(store: &impl MetadataStore) {
    let created = create(store, spec("t", 2)).expect("new");
    let grow = |count| block_on(store.create_partitions("t", count, None));
    for count in [0, 1, 2, TOPIC_PARTITIONS_MAX + 1] {
        let error = grow(count).expect_err("refused");
        assert!(matches!(error, MetaError::InvalidPartitions { .. }), "{count}: {error}");
    }
    let grown = grow(5).expect("more partitions");
    assert_eq!(grown.partitions, 5);
    assert_eq!(grown.id, created.id);
    assert_eq!(store.topic("t"), Some(grown));
    assert!(matches!(
        block_on(store.create_partitions("missing", 3, None)),
        Err(MetaError::UnknownTopic(_))
    ));
}

fn alters_all_or_nothing(store: &impl MetadataStore) {
    create(store, spec_with("t", &[("retention.ms", "1000")])).expect("new");
    let alter = |changes| block_on(store.alter_configs("t", changes));
    let error = alter(vec![set("segment.ms", "10"), delete("retention.ms"), set("flush.ms", "1")])
        .expect_err("flush.ms is not supported");
    assert!(matches!(error, MetaError::Config(ConfigError::Unsupported { .. })), "{error}");
    let topic = store.topic("t").expect("exists");
    assert_eq!(topic.configs.retention_ms(), Some(1000));
    assert_eq!(topic.configs.segment_ms(), 604_800_000);

    let altered = alter(vec![set("segment.ms", "10"), delete("retention.ms")]).expect("valid");
    assert_eq!(altered.configs.segment_ms(), 10);
    assert_eq!(altered.configs.retention_ms(), Some(604_800_000));
    assert_eq!(store.topic("t"), Some(altered));
    assert!(matches!(
        block_on(store.alter_configs("missing", vec![])),
        Err(MetaError::UnknownTopic(_))
    ));
}

fn deletes_and_recreates(store: &impl MetadataStore) {
    let first = create(store, spec("t", 1)).expect("new");
    let deleted = block_on(store.delete_topic("t")).expect("exists");
    assert_eq!(deleted, first);
    assert_eq!(store.topic("t"), None);
    assert!(matches!(block_on(store.delete_topic("t")), Err(MetaError::UnknownTopic(_))));
    let second = create(store, spec("t", 1)).expect("free again");
    assert_ne!(second.id, first.id, "a recreated topic is a new topic");
}

fn deletion_stays_pending_until_finished(store: &impl MetadataStore) {
    let first = create(store, spec("t", 3)).expect("new");
    assert!(store.pending_deletions().is_empty());
    block_on(store.delete_topic("t")).expect("exists");
    assert_eq!(store.pending_deletions(), [Arc::clone(&first)], "same change as the name");
    let second = create(store, spec("t", 1)).expect("the name is free at once");
    assert_ne!(second.id, first.id);
    block_on(store.delete_topic("t")).expect("exists");
    let pending: Vec<_> = store.pending_deletions().iter().map(|topic| topic.id).collect();
    assert_eq!(pending.len(), 2);
    assert!(pending.contains(&first.id) && pending.contains(&second.id));
    block_on(store.finish_deletion(first.id)).expect("finish");
    block_on(store.finish_deletion(first.id)).expect("finishing twice is nothing");
    assert_eq!(store.pending_deletions(), [second]);
}

fn checks_partitions_without_changing(store: &impl MetadataStore) {
    create(store, spec("t", 2)).expect("new");
    let grown = store.check_create_partitions("t", 5, None).expect("valid");
    assert_eq!(grown.partitions, 5);
    assert_eq!(store.topic("t").map(|topic| topic.partitions), Some(2), "nothing changed");
    for (topic, count) in [("t", 2), ("t", 1), ("t", TOPIC_PARTITIONS_MAX + 1)] {
        let error = store.check_create_partitions(topic, count, None).expect_err("invalid");
        assert!(matches!(error, MetaError::InvalidPartitions { .. }), "{count}: {error}");
    }
    let error = store.check_create_partitions("missing", 3, None).expect_err("no topic");
    assert!(matches!(error, MetaError::UnknownTopic(_)), "{error}");
}

fn leads_existing_partitions(store: &impl MetadataStore) {
    create(store, spec("t", 2)).expect("new");
    let nodes = store.nodes();
    assert_eq!(nodes.len(), 1);
    let leader = store.leader("t", 1).expect("partition 1 exists");
    assert_eq!(leader.leader, nodes[0].id);
    assert_eq!(leader.replicas, [nodes[0].id]);
    assert_eq!(leader.leader_epoch, LeaderEpoch(0));
    assert_eq!(store.leader("t", 2), None);
    assert_eq!(store.leader("missing", 0), None);
}

fn bounds_cluster_partitions(store: &impl MetadataStore) {
    let topics = CLUSTER_PARTITIONS_MAX / u64::from(TOPIC_PARTITIONS_MAX);
    for index in 0..topics {
        create(store, spec(&format!("t{index}"), TOPIC_PARTITIONS_MAX)).expect("under the limit");
    }
    let error = create(store, spec("one-more", 1)).expect_err("over the limit");
    assert!(matches!(error, MetaError::InvalidPartitions { .. }), "{error}");
    let error =
        block_on(store.create_partitions("t0", TOPIC_PARTITIONS_MAX, None)).expect_err("same");
    assert!(matches!(error, MetaError::InvalidPartitions { .. }), "{error}");
}

/// Runs each conformance test on a fresh store from `open`.
fn conformance<M: MetadataStore>(mut open: impl FnMut() -> M) {
    creates_and_describes(&open());
    refusals_change_nothing(&open());
    partitions_only_grow(&open());
    alters_all_or_nothing(&open());
    deletes_and_recreates(&open());
    deletion_stays_pending_until_finished(&open());
    checks_partitions_without_changing(&open());
    leads_existing_partitions(&open());
    bounds_cluster_partitions(&open());
}

#[test]
fn conformance_on_the_real_disk() {
    let root = tempfile::tempdir().expect("temp dir");
    let mut count = 0;
    conformance(|| {
        count += 1;
        LocalMetadata::open(&root.path().join(count.to_string()), node(1)).expect("open")
    });
}

#[test]
fn conformance_on_the_sim_disk() {
    conformance(|| sim_store(&SimDisk::new(7)));
}

// The local store in particular.

/// A single node's store follows Kafka's rules for a manual assignment with the one broker it
/// has: only its own id, once per list, one list per new partition; a check changes nothing.
#[test]
fn a_manual_assignment_names_only_this_node() {
    let store = sim_store(&SimDisk::new(3));
    let assigned = |topic: &str, lists: &[&[u64]]| TopicSpec {
        partitions: lists.len() as u32,
        replication_factor: lists.first().map_or(0, |list| list.len() as u16),
        assignments: Some(
            lists.iter().map(|list| list.iter().map(|&n| NodeId(n)).collect()).collect(),
        ),
        ..spec(topic, 1)
    };
    let refusals = [
        (assigned("a", &[&[2]]), "includes broker 2, but no such broker is registered."),
        (assigned("a", &[&[1, 1]]), "includes the broker 1 more than once."),
        (assigned("a", &[&[1], &[]]), "includes an empty replica list."),
    ];
    for (spec, message) in refusals {
        let checked = store.check_create_topic(&spec).expect_err("refused");
        let error = create(&store, spec).expect_err("refused");
        assert!(matches!(error, MetaError::InvalidReplicaAssignment(_)), "{error:?}");
        assert!(error.to_string().ends_with(message), "{error}");
        assert_eq!(checked.to_string(), error.to_string(), "the check refuses alike");
    }
    assert!(store.topics().is_empty());
    let checked = store.check_create_topic(&assigned("a", &[&[1], &[1]])).expect("valid");
    assert_eq!((checked.partitions, checked.replication_factor), (2, 1));
    assert!(store.topics().is_empty(), "a check creates nothing");
    let created = create(&store, assigned("a", &[&[1], &[1]])).expect("created");
    assert_eq!((created.partitions, created.replication_factor), (2, 1));
    let grow = |count, lists: Vec<Vec<NodeId>>| {
        let checked = store.check_create_partitions("a", count, Some(&lists)).map(drop);
        let grown = block_on(store.create_partitions("a", count, Some(lists)));
        assert_eq!(checked.is_ok(), grown.is_ok(), "the check agrees");
        grown
    };
    let error = grow(4, vec![vec![NodeId(1)]]).expect_err("two lists needed");
    assert_eq!(
        error.to_string(),
        "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified."
    );
    let error = grow(3, vec![vec![NodeId(0)]]).expect_err("node 0 is not this node");
    assert!(error.to_string().contains("broker 0, but no such broker"), "{error}");
    assert_eq!(grow(3, vec![vec![NodeId(1)]]).expect("grown").partitions, 3);
}

#[test]
fn everything_survives_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let open = || LocalMetadata::open(dir.path(), node(1)).expect("open");
    let store = open();
    let orders = create(&store, spec_with("orders", &[("retention.bytes", "4096")])).expect("new");
    create(&store, spec("gone", 1)).expect("new");
    block_on(store.create_partitions("orders", 4, None)).expect("grow");
    block_on(store.alter_configs("orders", vec![set("message.timestamp.type", "LogAppendTime")]))
        .expect("alter");
    let gone = block_on(store.delete_topic("gone")).expect("delete");
    let before = store.topics();
    drop(store);

    let store = open();
    assert_eq!(store.topics(), before);
    assert_eq!(store.pending_deletions(), [gone], "a pending deletion survives a restart");
    let topic = store.topic("orders").expect("survived");
    assert_eq!(topic.id, orders.id, "the id is stable");
    assert_eq!(topic.partitions, 4);
    assert_eq!(topic.configs.retention_bytes(), Some(4096));
    assert_eq!(topic.configs.timestamp_type().as_str(), "LogAppendTime");
    assert_eq!(store.leader("orders", 3).map(|l| l.leader_epoch), Some(LeaderEpoch(0)));
    assert_eq!(names(&store), ["orders"]);
}

#[test]
fn open_makes_an_empty_store_durable() {
    let disk = SimDisk::new(1);
    drop(sim_store(&disk));
    disk.crash();
    assert!(disk.read_file(&Path::new(DIR).join("metadata.json")).is_ok());
    // The directory is now claimed by node 1.
    let error = LocalMetadata::open_with_disk(disk.clone(), Path::new(DIR), node(2))
        .expect_err("another node");
    assert!(error.to_string().contains("belongs to node 1, but this is node 2"), "{error}");
    assert!(sim_store(&disk).topics().is_empty());
}

#[test]
fn every_change_is_durable_when_it_returns() {
    let disk = SimDisk::new(2);
    let reopen = |store: LocalMetadata<SimDisk>| {
        let before = store.topics();
        drop(store);
        disk.crash();
        let store = sim_store(&disk);
        assert_eq!(store.topics(), before);
        store
    };
    let store = sim_store(&disk);
    create(&store, spec("t", 1)).expect("new");
    let store = reopen(store);
    block_on(store.create_partitions("t", 3, None)).expect("grow");
    let store = reopen(store);
    block_on(store.alter_configs("t", vec![set("retention.ms", "-1")])).expect("alter");
    let store = reopen(store);
    assert_eq!(store.topic("t").map(|topic| topic.configs.retention_ms()), Some(None));
    block_on(store.delete_topic("t")).expect("delete");
    let store = reopen(store);
    assert!(store.topics().is_empty());
}

#[test]
fn a_written_but_unrenamed_change_is_ignored() {
    // The bytes a change would write, taken from a store that made it.
    let ahead = SimDisk::new(3);
    let store = sim_store(&ahead);
    create(&store, spec("new", 1)).expect("new");
    let file = Path::new(DIR).join("metadata.json");
    let change = ahead.read_file(&file).expect("written");

    // A crash after the temporary file was written and synced, before the rename.
    let disk = SimDisk::new(4);
    let store = sim_store(&disk);
    create(&store, spec("old", 1)).expect("new");
    drop(store);
    let tmp_path = Path::new(DIR).join("metadata.json.tmp");
    let tmp = disk.create(&tmp_path).expect("create tmp");
    cairn_storage::DiskFile::write_all_at(&*tmp, &change, 0).expect("write tmp");
    cairn_storage::DiskFile::sync_data(&*tmp).expect("sync tmp");
    disk.sync_dir(Path::new(DIR)).expect("sync dir");
    disk.crash();

    let store = sim_store(&disk);
    assert_eq!(names(&store), ["old"]);
    assert!(disk.read_file(&tmp_path).is_err(), "the leftover is removed on open");
    create(&store, spec("next", 1)).expect("the store works on");
    assert_eq!(names(&store), ["next", "old"]);
}

#[test]
fn a_failed_write_changes_nothing_and_the_store_works_on() {
    let disk = SimDisk::new(5);
    let store = sim_store(&disk);
    create(&store, spec("kept", 1)).expect("new");
    let before = store.topics();
    let faults: [&dyn Fn(); 3] =
        [&|| disk.fail_next_write(EIO), &|| disk.fail_next_sync(EIO), &|| {
            disk.set_capacity_bytes(Some(disk.used_bytes()))
        }];
    for fault in faults {
        fault();
        let error = create(&store, spec("lost", 1)).expect_err("the write fails");
        assert!(matches!(error, MetaError::Storage(_)), "{error}");
        assert_eq!(store.topics(), before, "not visible in memory");
        disk.set_capacity_bytes(None);
        disk.crash();
        let reopened = sim_store(&disk);
        assert_eq!(reopened.topics(), before, "not on disk");
        drop(reopened);
    }
    // The failures happened before the rename, so the store is not poisoned.
    create(&store, spec("later", 1)).expect("retry after the fault");
    assert_eq!(names(&store), ["kept", "later"]);
}

#[test]
fn a_full_disk_is_reported_with_its_cause() {
    let disk = SimDisk::new(6);
    let store = sim_store(&disk);
    disk.set_capacity_bytes(Some(disk.used_bytes()));
    let error = create(&store, spec("t", 1)).expect_err("disk full");
    assert!(
        error.to_string().contains(&io::Error::from_raw_os_error(ENOSPC).to_string()),
        "{error}"
    );
}

/// A [`SimDisk`] whose directory syncs fail while `fail` is set: a failure after the rename.
#[derive(Clone)]
struct DirSyncFails {
    disk: SimDisk,
    fail: Arc<AtomicBool>,
}

impl Disk for DirSyncFails {
    type File = SimFile;

    fn open(&self, path: &Path) -> io::Result<Arc<SimFile>> {
        self.disk.open(path)
    }
    fn open_read_only(&self, path: &Path) -> io::Result<Arc<SimFile>> {
        self.disk.open_read_only(path)
    }
    fn create(&self, path: &Path) -> io::Result<Arc<SimFile>> {
        self.disk.create(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.disk.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.disk.list_dir(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.disk.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.disk.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.disk.sync_dir(path)
    }
}

#[test]
fn a_failure_after_the_rename_poisons_the_store() {
    let disk = DirSyncFails { disk: SimDisk::new(8), fail: Arc::new(AtomicBool::new(false)) };
    let store = LocalMetadata::open_with_disk(disk.clone(), Path::new(DIR), node(1)).expect("open");
    create(&store, spec("before", 1)).expect("new");
    disk.fail.store(true, Ordering::SeqCst);
    let error = create(&store, spec("unknown", 1)).expect_err("the directory sync fails");
    assert!(matches!(error, MetaError::Storage(_)), "{error}");
    assert_eq!(names(&store), ["before"], "a failed change is not visible");
    disk.fail.store(false, Ordering::SeqCst);
    let error = create(&store, spec("after", 1)).expect_err("poisoned");
    assert!(error.to_string().contains("poisoned"), "{error}");
    let error = block_on(store.delete_topic("before")).expect_err("poisoned");
    assert!(error.to_string().contains("poisoned"), "{error}");
    assert_eq!(names(&store), ["before"], "reads still work");
    drop(store);

    // The outcome was unknown: without a crash the rename stands, after a crash it does not.
    let reopened = sim_store(&disk.disk);
    assert_eq!(names(&reopened), ["before", "unknown"]);
    drop(reopened);
    disk.disk.crash();
    let reopened = sim_store(&disk.disk);
    assert_eq!(names(&reopened), ["before"]);
    create(&reopened, spec("after", 1)).expect("a restart clears the poison");
}

#[test]
fn an_alter_that_changes_nothing_writes_nothing() {
    let disk = SimDisk::new(9);
    let store = sim_store(&disk);
    let created = create(&store, spec_with("t", &[("retention.ms", "1000")])).expect("new");
    let syncs = disk.sync_count();
    let same = block_on(store.alter_configs("t", vec![set("retention.ms", "1000")]));
    assert_eq!(same.expect("valid"), created);
    let same = block_on(store.alter_configs("t", vec![delete("segment.ms")]));
    assert_eq!(same.expect("valid"), created);
    assert_eq!(disk.sync_count(), syncs);
}

#[test]
fn every_bit_flip_is_detected() {
    let disk = SimDisk::new(10);
    let store = sim_store(&disk);
    create(&store, spec_with("t", &[("retention.ms", "1000")])).expect("new");
    drop(store);
    let file = Path::new(DIR).join("metadata.json");
    let bits = disk.file_len(&file).expect("exists") * 8;
    for bit in 0..bits {
        disk.flip_bit(&file, bit).expect("inside the file");
        match sim_open(&disk) {
            Err(MetaError::Storage(message)) => {
                assert!(message.contains("metadata.json"), "bit {bit}: {message}");
            }
            Err(error) => panic!("bit {bit}: not a storage error: {error}"),
            Ok(store) => panic!("bit {bit}: damage not detected, read {:?}", store.topics()),
        }
        disk.flip_bit(&file, bit).expect("inside the file");
    }
    assert_eq!(names(&sim_store(&disk)), ["t"]);
}

#[test]
fn a_damaged_file_on_the_real_disk_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("metadata.json");
    let store = LocalMetadata::open(dir.path(), node(1)).expect("open");
    create(&store, spec("t", 1)).expect("new");
    drop(store);
    let good = std::fs::read(&file).expect("written");
    let damages: [(&str, Vec<u8>); 5] = [
        ("empty", Vec::new()),
        ("truncated", good[..good.len() - 10].to_vec()),
        ("extended", [good.as_slice(), b"{}\n"].concat()),
        ("garbage", b"\x00\x01\x02 not json\n".to_vec()),
        ("zeroed", vec![0; good.len()]),
    ];
    for (what, bytes) in damages {
        std::fs::write(&file, &bytes).expect("damage");
        let error = LocalMetadata::open(dir.path(), node(1)).expect_err(what);
        assert!(matches!(error, MetaError::Storage(_)), "{what}: {error}");
        assert!(error.to_string().contains("is damaged"), "{what}: {error}");
        // Still damaged: a failed open does not overwrite the evidence.
        assert_eq!(std::fs::read(&file).expect("still there"), bytes, "{what}");
    }
    std::fs::write(&file, &good).expect("repair");
    let store = LocalMetadata::open(dir.path(), node(1)).expect("repaired");
    assert_eq!(names(&store), ["t"]);
}

#[test]
fn a_file_from_a_newer_cairn_is_refused_by_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(LocalMetadata::open(dir.path(), node(1)).expect("open"));
    let file = dir.path().join("metadata.json");
    let text = std::fs::read_to_string(&file).expect("written");
    std::fs::write(&file, text.replace("\"version\":2", "\"version\":3")).expect("write");
    let error = LocalMetadata::open(dir.path(), node(1)).expect_err("newer format");
    assert!(error.to_string().contains("format version 3 is not supported"), "{error}");
}

/// Rewrites the file at `path` with `body` under a version-`version` header.
fn write_file(path: &Path, version: u32, body: &str) {
    let header = serde_json::json!({
        "format": "cairn-metadata",
        "version": version,
        "body_bytes": body.len(),
        "crc32c": crc32c::crc32c(body.as_bytes()),
    });
    std::fs::write(path, format!("{header}\n{body}\n")).expect("write");
}

#[test]
fn a_version_1_file_is_read_and_rewritten_as_version_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(LocalMetadata::open(dir.path(), node(1)).expect("open"));
    let file = dir.path().join("metadata.json");
    let id = "0b5c8d0e-3f1a-4c2b-9d7e-6a5f4e3d2c1b";
    let body = format!(
        r#"{{"node_id": 1, "topics": [{{"name": "old", "id": "{id}", "partitions": 2,
        "replication_factor": 1, "configs": {{}}}}]}}"#
    );
    write_file(&file, 1, &body);
    let store = LocalMetadata::open(dir.path(), node(1)).expect("version 1 is read");
    let old = store.topic("old").expect("kept");
    assert_eq!(old.id.to_string(), id);
    assert!(store.pending_deletions().is_empty());
    block_on(store.delete_topic("old")).expect("delete");
    let text = std::fs::read_to_string(&file).expect("rewritten");
    assert!(text.starts_with(r#"{"format":"cairn-metadata","version":2,"#), "{text}");
    assert!(text.contains(id), "the pending deletion is in the file: {text}");
}

#[test]
fn the_file_is_readable_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalMetadata::open(dir.path(), node(7)).expect("open");
    create(&store, spec_with("t", &[("retention.ms", "+1000")])).expect("new");
    let text = std::fs::read_to_string(dir.path().join("metadata.json")).expect("written");
    let (header, body) = text.split_once('\n').expect("two parts");
    assert!(header.starts_with(r#"{"format":"cairn-metadata","version":2,"body_bytes":"#));
    assert!(body.contains(r#""node_id": 7"#), "{body}");
    assert!(body.contains(r#""retention.ms": "1000""#), "canonical values: {body}");
    // Real-disk specific: nothing else is left in the directory.
    let mut entries = RealDisk.list_dir(dir.path()).expect("list");
    entries.sort();
    assert_eq!(entries, ["metadata.json"]);
}

mod model {
    //! A model test: random changes, failed writes and crashes against a map of what must hold.

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Create {
            topic: usize,
            partitions: u32,
        },
        Delete {
            topic: usize,
        },
        AddPartitions {
            topic: usize,
            count: u32,
        },
        /// `None` deletes the override.
        AlterRetention {
            topic: usize,
            retention_ms: Option<i64>,
        },
        FailNextWrite,
        CrashAndReopen,
    }

    /// Two names that collide, so creates are refused for that too.
    const TOPICS: &[&str] = &["a", "b", "c.d", "c_d"];

    fn op() -> impl Strategy<Value = Op> {
        let topic = 0..TOPICS.len();
        prop_oneof![
            3 => (topic.clone(), 0..4u32)
                .prop_map(|(topic, partitions)| Op::Create { topic, partitions }),
            1 => topic.clone().prop_map(|topic| Op::Delete { topic }),
            2 => (topic.clone(), 0..6u32)
                .prop_map(|(topic, count)| Op::AddPartitions { topic, count }),
            2 => (topic, proptest::option::of(-2..3i64))
                .prop_map(|(topic, retention_ms)| Op::AlterRetention { topic, retention_ms }),
            1 => Just(Op::FailNextWrite),
            1 => Just(Op::CrashAndReopen),
        ]
    }

    /// What the model keeps of a topic: partitions and the `retention.ms` override.
    type Model = BTreeMap<&'static str, (u32, Option<i64>)>;

    /// Applies `op` to the model; `Some(true)` if it succeeds with a write, `Some(false)` if it
    /// succeeds without one, `None` if it is refused.
    fn step(model: &mut Model, op: &Op) -> Option<bool> {
        match *op {
            Op::Create { topic, partitions } => {
                let name = TOPICS[topic];
                let collides =
                    model.keys().any(|other| other.replace('.', "_") == name.replace('.', "_"));
                if collides || partitions == 0 {
                    return None;
                }
                model.insert(name, (partitions, None));
                Some(true)
            }
            Op::Delete { topic } => model.remove(TOPICS[topic]).map(|_| true),
            Op::AddPartitions { topic, count } => {
                let entry = model.get_mut(TOPICS[topic])?;
                if count <= entry.0 {
                    return None;
                }
                entry.0 = count;
                Some(true)
            }
            Op::AlterRetention { topic, retention_ms } => {
                let entry = model.get_mut(TOPICS[topic])?;
                if retention_ms.is_some_and(|ms| ms < -1) {
                    return None;
                }
                let changed = entry.1 != retention_ms;
                entry.1 = retention_ms;
                Some(changed)
            }
            Op::FailNextWrite | Op::CrashAndReopen => Some(false),
        }
    }

    fn run(store: &LocalMetadata<SimDisk>, op: &Op) -> Result<(), MetaError> {
        let topic = |index: usize| TOPICS[index];
        match *op {
            Op::Create { topic: index, partitions } => {
                create(store, spec(topic(index), partitions)).map(drop)
            }
            Op::Delete { topic: index } => block_on(store.delete_topic(topic(index))).map(drop),
            Op::AddPartitions { topic: index, count } => {
                block_on(store.create_partitions(topic(index), count, None)).map(drop)
            }
            Op::AlterRetention { topic: index, retention_ms } => {
                let change = match retention_ms {
                    Some(ms) => set("retention.ms", &ms.to_string()),
                    None => delete("retention.ms"),
                };
                block_on(store.alter_configs(topic(index), vec![change])).map(drop)
            }
            Op::FailNextWrite | Op::CrashAndReopen => Ok(()),
        }
    }

    fn observed(store: &LocalMetadata<SimDisk>) -> BTreeMap<String, (u32, Option<i64>)> {
        store
            .topics()
            .iter()
            .map(|topic| {
                let retention = topic.configs.overrides().get("retention.ms");
                let retention = retention.map(|ms| ms.parse().expect("canonical integer"));
                (topic.name.to_string(), (topic.partitions, retention))
            })
            .collect()
    }

    fn expected(model: &Model) -> BTreeMap<String, (u32, Option<i64>)> {
        model.iter().map(|(name, value)| ((*name).to_owned(), *value)).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn the_store_matches_the_model_across_failures_and_crashes(
            seed in any::<u64>(),
            ops in proptest::collection::vec(op(), 1..40),
        ) {
            let disk = SimDisk::new(seed);
            let mut store = sim_store(&disk);
            let mut model = Model::new();
            let mut write_fails = false;
            for op in &ops {
                let mut next = model.clone();
                let outcome = step(&mut next, op);
                let result = run(&store, op);
                match (outcome, write_fails) {
                    (None, _) => prop_assert!(result.is_err(), "{op:?} must be refused"),
                    (Some(true), true) => {
                        prop_assert!(matches!(result, Err(MetaError::Storage(_))), "{op:?}");
                        write_fails = false;
                    }
                    (Some(_), _) => {
                        prop_assert!(result.is_ok(), "{op:?}: {result:?}");
                        model = next;
                    }
                }
                match op {
                    Op::FailNextWrite => {
                        disk.fail_next_write(EIO);
                        write_fails = true;
                    }
                    Op::CrashAndReopen => {
                        drop(store);
                        disk.crash();
                        store = sim_store(&disk);
                    }
                    _ => {}
                }
                prop_assert_eq!(observed(&store), expected(&model), "after {:?}", op);
            }
        }
    }
}
