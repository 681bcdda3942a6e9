//! The coordination group on the real thing, one voter over its log in a directory: writes
//! answered with their replies and revisions, linearizable reads, watchers fed every revision
//! in order, leases granted with leader-chosen ids, renewed and expired with their keys,
//! everything found again after a restart, and snapshots with the log purged behind them.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_coord::{
    Command, DeleteRangeRequest, EventKind, KvError, PutRequest, RangeRequest, Refusal, Reply,
};
use cairn_metrics::Histogram;
use cairn_raft::Timers;
use cairn_raft::coord_group::{CoordGroup, STORE_FILE};
use cairn_raft::core_group::CoreConfig;
use cairn_storage::{LogConfig, RealDisk, SystemClock};

/// Bounds every wait of these tests.
const WAIT: Duration = Duration::from_secs(20);

fn config() -> CoreConfig {
    config_with(cairn_types::limits::CORE_SNAPSHOT_ENTRIES_DEFAULT)
}

/// Small segments, a snapshot due every `snapshot_entries` entries.
fn config_with(snapshot_entries: u64) -> CoreConfig {
    let histogram = Arc::new(Histogram::new(&[0.001, 0.01, 0.1]).unwrap());
    let mut config = CoreConfig::new(Arc::new(SystemClock), histogram);
    config.timers = Timers {
        heartbeat_ms: 50,
        heartbeat_min_interval_ms: 50,
        election_timeout_min_ms: 200,
        election_timeout_max_ms: 400,
    };
    config.write_timeout = WAIT;
    config.snapshot_entries = snapshot_entries;
    config.log = LogConfig { segment_bytes: 2048, ..cairn_raft::core_group::core_log_config() };
    config
}

async fn open(meta: &Path) -> Arc<CoordGroup<RealDisk>> {
    open_with(meta, &config()).await
}

async fn open_with(meta: &Path, config: &CoreConfig) -> Arc<CoordGroup<RealDisk>> {
    let opened = CoordGroup::open(RealDisk, meta, 1, config, None);
    tokio::time::timeout(WAIT, opened).await.expect("opens in time").expect("opens")
}

/// The coordination log's segment files, in order.
fn segments(meta: &Path) -> Vec<String> {
    let names = std::fs::read_dir(meta.join("coord")).unwrap();
    let mut names: Vec<String> = names
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".log"))
        .collect();
    names.sort();
    names
}

fn put(key: &str, value: &str, lease: i64) -> Command {
    Command::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        prev_kv: true,
        ..PutRequest::default()
    })
}

fn get(group: &CoordGroup<RealDisk>, key: &str) -> Option<Vec<u8>> {
    let request = RangeRequest { key: key.into(), ..RangeRequest::default() };
    let found = group.reader().range(&request).unwrap();
    found.kvs.first().map(|kv| kv.value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_answered_applied_and_found_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let group = open(dir.path()).await;
    let (mut revisions, at) = group.subscribe().unwrap();
    assert_eq!(at, 1);

    let (reply, revision) = group.write(put("a", "1", 0)).await.unwrap();
    assert_eq!((reply, revision), (Reply::Put(Default::default()), 2));
    let (reply, revision) = group.write(put("a", "2", 0)).await.unwrap();
    let Reply::Put(answer) = reply else { panic!("a put's reply: {reply:?}") };
    assert_eq!(answer.prev_kv.unwrap().value, b"1");
    assert_eq!(revision, 3);
    let refused = group.write(put("", "x", 0)).await;
    assert_eq!(refused, Err(Refusal::Kv(KvError::EmptyKey)));

    group.read_index().await.unwrap();
    assert_eq!(get(&group, "a").as_deref(), Some(&b"2"[..]));
    for expected in [2, 3] {
        let applied = tokio::time::timeout(WAIT, revisions.recv()).await.unwrap().unwrap();
        assert_eq!(applied.revision, expected);
        assert_eq!(applied.events[0].kind, EventKind::Put);
    }

    group.shutdown().await.unwrap();
    drop(group);
    let group = open(dir.path()).await;
    group.read_index().await.unwrap();
    assert_eq!(get(&group, "a").as_deref(), Some(&b"2"[..]));
    assert_eq!(group.reader().position().unwrap().revision, 3);
    group.shutdown().await.unwrap();
    drop(group);

    // A store behind the log (here: lost whole) is brought up to date by the log.
    std::fs::remove_file(dir.path().join("coord").join(STORE_FILE)).unwrap();
    let group = open(dir.path()).await;
    group.read_index().await.unwrap();
    assert_eq!(get(&group, "a").as_deref(), Some(&b"2"[..]));
    assert_eq!(group.reader().position().unwrap().revision, 3);
    group.write(put("b", "1", 0)).await.unwrap();
    group.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lives_while_renewed_and_takes_its_keys_when_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let group = open(dir.path()).await;
    let (reply, _) = group.write(Command::LeaseGrant { id: 0, ttl: 1 }).await.unwrap();
    let Reply::LeaseGranted { id, ttl: 1 } = reply else { panic!("a grant's reply: {reply:?}") };
    assert!(id > 0, "the leader chose an id");
    // Granted in this term, before any other lease call: its whole TTL, no election timeout on
    // top (which leases taken up at the start of a term get).
    assert_eq!(group.time_to_live(id).await, Ok((1, 1)));
    group.write(put("held", "v", id)).await.unwrap();
    group.write(put("free", "v", 0)).await.unwrap();

    // Renewed every 200 ms for 2 s: twice its TTL, it stays.
    for _ in 0..10 {
        assert_eq!(group.keep_alive(id).await, Ok(1));
        let (remaining, granted) = group.time_to_live(id).await.unwrap();
        assert_eq!(granted, 1);
        assert!((0..=1).contains(&remaining), "{remaining}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(get(&group, "held").is_some(), "a renewed lease kept its key");
    }
    // Left alone, it expires: its key goes, at one revision of its own.
    let (mut revisions, _) = group.subscribe().unwrap();
    let gone = tokio::time::timeout(WAIT, revisions.recv()).await.unwrap().unwrap();
    assert_eq!(gone.events.len(), 1);
    assert_eq!(
        (gone.events[0].kind, &gone.events[0].kv.key[..]),
        (EventKind::Delete, &b"held"[..])
    );
    assert_eq!(get(&group, "held"), None);
    assert!(get(&group, "free").is_some());
    assert_eq!(group.keep_alive(id).await, Err(Refusal::Kv(KvError::LeaseNotFound)));
    let revoke = group.write(Command::LeaseRevoke { id }).await;
    assert_eq!(revoke, Err(Refusal::Kv(KvError::LeaseNotFound)));
    let delete = DeleteRangeRequest { key: "free".into(), ..DeleteRangeRequest::default() };
    group.write(Command::DeleteRange(delete)).await.unwrap();
    group.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_purges_the_log_and_a_restart_finds_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(20);
    let group = open_with(dir.path(), &config).await;
    let first = segments(dir.path())[0].clone();
    for n in 0..120 {
        group.write(put(&format!("k{n:03}"), &format!("v{n}"), 0)).await.unwrap();
    }
    // A snapshot is due every 20 entries: the store made durable, the log purged behind it.
    assert!(group.wait_purged(100, WAIT).await, "a snapshot is built and the log purged");
    assert_ne!(segments(dir.path())[0], first, "whole segments behind it are deleted");
    let revision = group.reader().position().unwrap().revision;
    group.shutdown().await.unwrap();
    drop(group);

    let group = open_with(dir.path(), &config).await;
    group.read_index().await.unwrap();
    for n in 0..120 {
        assert_eq!(get(&group, &format!("k{n:03}")), Some(format!("v{n}").into_bytes()));
    }
    assert_eq!(group.reader().position().unwrap().revision, revision);
    group.write(put("after", "1", 0)).await.unwrap();
    group.shutdown().await.unwrap();
    drop(group);

    // The log no longer holds what the store held: a store lost now is refused, not rebuilt
    // from a log that lacks its start.
    std::fs::remove_file(dir.path().join("coord").join(STORE_FILE)).unwrap();
    let opened = CoordGroup::open(RealDisk, dir.path(), 1, &config, None).await;
    let Err(error) = opened else { panic!("a store below the log's snapshot opens") };
    assert!(error.to_string().contains("below the log's snapshot"), "{error}");
}
