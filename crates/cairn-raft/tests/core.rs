//! The consistent core on the real thing: a one-voter openraft group over its log in a
//! directory, serving `MetadataStore` ([`CoreMetadata`]). Topics created, grown, altered and
//! deleted, then found again after a restart (from a snapshot and the log after it); a snapshot
//! built and the log purged behind it; a `LocalMetadata` file imported once and kept aside; and
//! crashes of a `SimDisk` mid-way that lose no acknowledged change.

#![allow(clippy::unwrap_used)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_meta::{
    ConfigChange, CoreState, LocalMetadata, MetaError, MetadataStore, NodeMeta, TopicMeta,
    TopicName, TopicSpec,
};
use cairn_metrics::Histogram;
use cairn_raft::Timers;
use cairn_raft::core_group::{CoreConfig, CoreMetadata, CoreNode, NoForward};
use cairn_storage::sim::SimDisk;
use cairn_storage::{Disk, DiskFile, LogConfig, RealDisk, SystemClock};
use cairn_types::NodeId;

/// Bounds every wait of these tests.
const WAIT: Duration = Duration::from_secs(20);

/// Node 1 with its Kafka listener on `port` and its etcd API beside it (`port - 6713`: 2379
/// for 9092).
fn node(port: u16) -> CoreNode {
    CoreNode {
        meta: NodeMeta { id: NodeId(1), host: "127.0.0.1".into(), port, rack: None },
        peer_address: "127.0.0.1:9093".into(),
        etcd_address: Some(format!("127.0.0.1:{}", port - 6713)),
    }
}

/// The etcd address node 1 has in `core`'s state.
fn etcd_address<D: Disk + Clone>(core: &CoreMetadata<D>) -> Option<String> {
    core.state().node(NodeId(1)).and_then(|record| record.etcd_address.clone())
}

/// Fast timers, small segments, a snapshot every `snapshot_entries` entries.
fn config(snapshot_entries: u64) -> CoreConfig {
    let histogram = Arc::new(Histogram::new(&[0.001, 0.01, 0.1]).unwrap());
    let mut config = CoreConfig::new(Arc::new(SystemClock), histogram);
    config.log = LogConfig { segment_bytes: 2048, ..cairn_raft::core_group::core_log_config() };
    config.timers = Timers {
        heartbeat_ms: 50,
        heartbeat_min_interval_ms: 50,
        election_timeout_min_ms: 200,
        election_timeout_max_ms: 400,
    };
    config.snapshot_entries = snapshot_entries;
    config.write_timeout = WAIT;
    config
}

async fn open<D: Disk + Clone>(
    disk: D,
    meta: &Path,
    port: u16,
    snapshot_entries: u64,
) -> CoreMetadata<D> {
    let opened =
        CoreMetadata::open(disk, meta, node(port), None, config(snapshot_entries), NoForward);
    tokio::time::timeout(WAIT, opened).await.expect("opens in time").expect("opens")
}

fn spec(name: &str, partitions: u32, configs: &[(&str, &str)]) -> TopicSpec {
    TopicSpec {
        name: TopicName::new(name).unwrap(),
        partitions,
        replication_factor: 1,
        configs: configs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        assignments: None,
    }
}

fn set(key: &str, value: &str) -> ConfigChange {
    ConfigChange::Set { key: key.into(), value: value.into() }
}

/// What a reader sees of a core: topics, pending deletions, nodes.
fn seen<M: MetadataStore>(meta: &M) -> (Vec<TopicMeta>, Vec<TopicMeta>, Vec<NodeMeta>) {
    let unwrap = |topics: Vec<Arc<TopicMeta>>| topics.iter().map(|t| TopicMeta::clone(t)).collect();
    (unwrap(meta.topics()), unwrap(meta.pending_deletions()), meta.nodes())
}

/// The segment files of the core's log, sorted.
fn segments<D: Disk>(disk: &D, meta: &Path) -> Vec<String> {
    let mut names: Vec<String> = disk
        .list_dir(&meta.join("raft"))
        .unwrap()
        .into_iter()
        .filter(|name| name.ends_with(".log"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_altered_grown_and_deleted_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta");
    let core = open(RealDisk, &meta, 9092, 10_000).await;
    assert_eq!(core.controller(), Some(NodeId(1)), "the only voter leads");
    assert!(core.cluster_id().is_some(), "the first leader set a cluster id");
    assert_eq!(core.nodes(), vec![node(9092).meta]);
    assert_eq!(etcd_address(&core).as_deref(), Some("127.0.0.1:2379"), "a start command");

    let orders = core.create_topic(spec("orders", 3, &[("retention.ms", "60000")])).await.unwrap();
    assert_eq!((orders.partitions, orders.replication_factor), (3, 1));
    assert_eq!(core.topic("orders").unwrap(), orders, "read-your-writes");
    let leader = core.leader("orders", 2).unwrap();
    assert_eq!((leader.leader, leader.replicas.clone()), (NodeId(1), vec![NodeId(1)]));
    assert!(core.leader("orders", 3).is_none());
    let error = core.create_topic(spec("orders", 1, &[])).await.unwrap_err();
    assert!(matches!(error, MetaError::TopicExists(_)), "{error}");
    let mut two = spec("pair", 1, &[]);
    two.replication_factor = 2;
    let error = core.create_topic(two).await.unwrap_err();
    assert!(matches!(error, MetaError::InvalidReplicationFactor { .. }), "{error}");
    let error = core.create_topic(spec("bad", 1, &[("retention.ms", "soon")])).await.unwrap_err();
    assert!(matches!(error, MetaError::Config(_)), "{error}");

    let altered = core.alter_configs("orders", vec![set("segment.ms", "3600000")]).await.unwrap();
    assert_eq!(altered.configs.segment_ms(), 3_600_000);
    assert_eq!(core.check_create_partitions("orders", 5, None).unwrap().partitions, 5);
    assert_eq!(core.topic("orders").unwrap().partitions, 3, "a check changes nothing");
    let grown = core.create_partitions("orders", 5, None).await.unwrap();
    assert_eq!(grown.partitions, 5);
    let error = core.create_partitions("orders", 4, None).await.unwrap_err();
    assert!(matches!(error, MetaError::InvalidPartitions { .. }), "{error}");
    let error = core.alter_configs("missing", vec![set("segment.ms", "1")]).await.unwrap_err();
    assert!(matches!(error, MetaError::UnknownTopic(_)), "{error}");

    core.create_topic(spec("gone", 2, &[])).await.unwrap();
    let gone = core.delete_topic("gone").await.unwrap();
    assert!(core.topic("gone").is_none());
    assert_eq!(core.pending_deletions(), vec![gone.clone()]);
    core.create_topic(spec("kept-deleting", 1, &[])).await.unwrap();
    let deleting = core.delete_topic("kept-deleting").await.unwrap();
    core.finish_deletion(gone.id).await.unwrap();
    core.finish_deletion(gone.id).await.unwrap(); // nothing left to finish: no change
    assert_eq!(core.pending_deletions(), vec![deleting]);

    let before = seen(&core);
    let state_before: Arc<CoreState> = core.state();
    let cluster_id = core.cluster_id();
    core.shutdown().await.unwrap();
    drop(core);

    // The same node again, its Kafka listener on another port: registered again.
    let core = open(RealDisk, &meta, 9094, 10_000).await;
    assert_eq!(core.cluster_id(), cluster_id, "the cluster id is set once");
    let (topics, deleting, nodes) = seen(&core);
    assert_eq!((topics, deleting), (before.0, before.1));
    assert_eq!(nodes, vec![node(9094).meta]);
    assert_eq!(etcd_address(&core).as_deref(), Some("127.0.0.1:2381"), "registered again");
    assert_eq!(core.topic("orders").unwrap().configs, altered.configs);
    assert!(core.state().applied() > state_before.applied());
    core.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_built_the_log_purged_and_a_restart_starts_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta");
    let core = open(RealDisk, &meta, 9092, 20).await;
    let first = segments(&RealDisk, &meta)[0].clone();
    assert!(first.starts_with("00000000000000000000-"), "{first}");
    for n in 0..50 {
        core.create_topic(spec(&format!("t{n}"), 1, &[("retention.ms", "1000")])).await.unwrap();
    }
    // A snapshot is due every 20 entries: the log is purged behind one.
    assert!(core.wait_purged(20, WAIT).await, "a snapshot is built and the log purged");
    assert_ne!(segments(&RealDisk, &meta)[0], first, "whole segments behind it are deleted");
    assert!(meta.join("raft/core-state").exists(), "the snapshot has its own file");
    let before = seen(&core);
    let applied = core.state().applied();
    core.shutdown().await.unwrap();
    drop(core);

    let core = open(RealDisk, &meta, 9092, 20).await;
    assert_eq!(seen(&core), before, "the snapshot and the log after it restore every topic");
    assert!(core.state().applied() >= applied);
    core.create_topic(spec("after", 1, &[])).await.unwrap();
    assert_eq!(core.topics().len(), 51);
    core.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_metadata_file_is_imported_once_and_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta");
    let local = LocalMetadata::open(&meta, node(9092).meta).unwrap();
    local
        .create_topic(spec("orders", 4, &[("retention.ms", "60000"), ("compression.type", "zstd")]))
        .await
        .unwrap();
    local.create_topic(spec("events", 1, &[])).await.unwrap();
    local.create_topic(spec("old", 2, &[])).await.unwrap();
    local.alter_configs("events", vec![set("cleanup.policy", "delete")]).await.unwrap();
    local.delete_topic("old").await.unwrap();
    let written = seen(&local);
    drop(local);

    let core = open(RealDisk, &meta, 9092, 10_000).await;
    let (topics, deleting, _) = seen(&core);
    assert_eq!((topics, deleting), (written.0.clone(), written.1.clone()), "ids, counts, configs");
    for topic in &written.0 {
        for partition in 0..topic.partitions {
            let leader = core.leader(topic.name.as_str(), partition).unwrap();
            assert_eq!(leader.replicas, vec![NodeId(1)], "every partition on this node");
        }
    }
    assert!(!meta.join("metadata.json").exists());
    let aside = std::fs::read(meta.join("metadata.json.imported")).unwrap();
    core.create_topic(spec("new", 1, &[])).await.unwrap();
    core.shutdown().await.unwrap();
    drop(core);

    // Imported once: a restart keeps the core's topics, and a file put back is not imported
    // into a core that holds topics, only set aside beside the first, which stays.
    std::fs::write(meta.join("metadata.json"), &aside).unwrap();
    let core = open(RealDisk, &meta, 9092, 10_000).await;
    assert_eq!(core.topics().len(), written.0.len() + 1);
    assert_eq!(std::fs::read(meta.join("metadata.json.imported")).unwrap(), aside);
    assert!(meta.join("metadata.json.imported.1").exists());
    core.shutdown().await.unwrap();
}

/// A process's view of a `SimDisk` that dies with it: once `dead`, every operation fails, so
/// the tasks of a core that "crashed" write nothing to the disk after its reboot (a real crash
/// stops them; here they live on in the test process).
#[derive(Clone)]
struct Mortal {
    disk: SimDisk,
    dead: Arc<AtomicBool>,
}

/// A file of a [`Mortal`] disk.
struct MortalFile {
    file: Arc<<SimDisk as Disk>::File>,
    dead: Arc<AtomicBool>,
}

fn dead_error() -> io::Error {
    io::Error::other("the process crashed")
}

impl Mortal {
    fn alive(&self) -> io::Result<()> {
        if self.dead.load(Ordering::SeqCst) { Err(dead_error()) } else { Ok(()) }
    }

    fn file(&self, file: io::Result<Arc<<SimDisk as Disk>::File>>) -> io::Result<Arc<MortalFile>> {
        Ok(Arc::new(MortalFile { file: file?, dead: Arc::clone(&self.dead) }))
    }
}

impl MortalFile {
    fn alive(&self) -> io::Result<()> {
        if self.dead.load(Ordering::SeqCst) { Err(dead_error()) } else { Ok(()) }
    }
}

impl DiskFile for MortalFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        self.alive()?;
        self.file.read_at(buf, position)
    }

    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        self.alive()?;
        self.file.write_all_at(buf, position)
    }

    fn len(&self) -> io::Result<u64> {
        self.alive()?;
        self.file.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.alive()?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.alive()?;
        self.file.sync_data()
    }
}

impl Disk for Mortal {
    type File = MortalFile;

    fn open(&self, path: &Path) -> io::Result<Arc<MortalFile>> {
        self.alive()?;
        self.file(self.disk.open(path))
    }

    fn open_read_only(&self, path: &Path) -> io::Result<Arc<MortalFile>> {
        self.alive()?;
        self.file(self.disk.open_read_only(path))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<MortalFile>> {
        self.alive()?;
        self.file(self.disk.create(path))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.alive()?;
        self.disk.create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.alive()?;
        self.disk.list_dir(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.alive()?;
        self.disk.remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.alive()?;
        self.disk.rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.alive()?;
        self.disk.sync_dir(path)
    }
}

/// Creates topics one after another on a core over a `SimDisk`, crashes it after `acked` of
/// them were acknowledged with one more in flight (the process dies, then the power goes), and
/// checks that a core opened again holds every acknowledged topic.
async fn crash_after(seed: u64, acked: usize) {
    let disk = SimDisk::new(seed);
    let meta = PathBuf::from("/data/meta");
    disk.create_dir_all(Path::new("/data")).unwrap();
    disk.sync_dir(Path::new("/")).unwrap();
    let process = Mortal { disk: disk.clone(), dead: Arc::default() };
    let core = Arc::new(open(process.clone(), &meta, 9092, 7).await);
    let mut names = Vec::new();
    for n in 0..acked {
        let name = format!("t{n}");
        core.create_topic(spec(&name, 1, &[])).await.unwrap();
        names.push(name);
    }
    let in_flight = {
        let core = Arc::clone(&core);
        tokio::spawn(async move { core.create_topic(spec("in-flight", 1, &[])).await })
    };
    tokio::task::yield_now().await;
    process.dead.store(true, Ordering::SeqCst);
    disk.crash();
    let _ = tokio::time::timeout(WAIT, in_flight).await.expect("the write in flight ends");
    let _ = core.shutdown().await;
    drop(core);

    let rebooted = Mortal { disk: disk.clone(), dead: Arc::default() };
    let core = open(rebooted, &meta, 9092, 7).await;
    for name in &names {
        assert!(core.topic(name).is_some(), "seed {seed}: acknowledged topic {name} was lost");
    }
    assert!(core.topics().len() <= acked + 1);
    core.create_topic(spec("after-crash", 1, &[])).await.unwrap();
    core.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_way_keeps_every_acknowledged_change() {
    for (seed, acked) in [(1, 0), (2, 3), (3, 6), (4, 7), (5, 12), (6, 20), (7, 30)] {
        crash_after(seed, acked).await;
    }
}
