//! [`RaftGroup`], a partition's one-voter group as the broker runs it, on a real disk: a new
//! group initializes and elects itself, proposals are reported appended and committed with
//! their own log ids, every restart is a new term one higher, and a log written before Raft is
//! adopted with all its records.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_raft::{GroupState, Placement, RaftGroup, StoreError, Timers};
use cairn_storage::{Disk, Log, RealDisk, SystemClock};
use cairn_types::batch::{BatchBuilder, Batches};
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{LeaderEpoch, Offset};
use support::Opened;

/// Bounds every wait of this test.
const WAIT: Duration = Duration::from_secs(20);

/// This node's id.
const NODE: u64 = 3;

fn produced(value: &str) -> Bytes {
    Bytes::from(
        BatchBuilder::new(1_700_000_000_000).record(None, Some(value.as_bytes()), &[]).build(),
    )
}

async fn start(opened: &Opened<RealDisk>) -> Result<RaftGroup<RealDisk>, cairn_raft::GroupError> {
    let sink = Arc::clone(&opened.sink) as Arc<dyn cairn_raft::AppendSink>;
    let voters = std::collections::BTreeSet::from([NODE]);
    let placement = Placement { node: NODE, voters: &voters, group: 1, peers: None };
    let clock = Arc::new(SystemClock);
    RaftGroup::start(opened.group.clone(), placement, &Timers::default(), sink, clock).await
}

/// Proposes `value` and waits for its commit; the reported base offset.
async fn commit(
    group: &RaftGroup<RealDisk>,
    opened: &Opened<RealDisk>,
    value: &str,
    ticket: u64,
) -> Offset {
    let pending = group.propose(produced(value), ticket, true).await.unwrap().unwrap();
    let committed = tokio::time::timeout(WAIT, pending.committed()).await.unwrap().unwrap();
    let reported = opened.sink.0.lock().unwrap().clone();
    let (_, appended) = reported.iter().find(|(t, _)| *t == ticket).copied().unwrap();
    assert_eq!(appended.index.0, committed.index, "committed with its own log id");
    appended.base_offset
}

/// The values of the data records in the log, control batches (Raft's own entries) skipped.
fn values<D: Disk>(group: &cairn_raft::GroupLog<D>) -> Vec<String> {
    group.with_log(|log: &Log<D>| {
        let mut out = Vec::new();
        log.read(log.start_offset(), u32::MAX, log.next_offset(), &mut out).unwrap();
        let mut values = Vec::new();
        for batch in Batches::new(&out, BATCH_BYTES_MAX) {
            let batch = batch.unwrap();
            if batch.header().is_control() {
                continue;
            }
            for record in batch.records() {
                values.push(String::from_utf8(record.unwrap().value.unwrap().to_vec()).unwrap());
            }
        }
        values
    })
}

async fn restart_terms(path: &Path) -> Vec<u64> {
    let mut terms = Vec::new();
    for round in 0..3u64 {
        let opened = Opened::open(RealDisk, path);
        let group = start(&opened).await.unwrap();
        assert!(group.wait_leader(WAIT).await, "elects itself");
        let role = group.roles().current();
        assert_eq!((role.state, role.leader), (GroupState::Leader, Some(NODE)));
        terms.push(role.term);
        let base = commit(&group, &opened, &format!("round {round}"), round + 1).await;
        // Offsets continue: each round's record follows the last one and a blank entry.
        assert!(base.0 >= 2 + round * 2, "round {round} at {base:?}");
        group.shutdown().await;
    }
    terms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_restart_is_a_new_term_and_keeps_every_committed_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p0");
    let terms = restart_terms(&path).await;
    assert_eq!(terms, [1, 2, 3], "one term per start");
    let opened = Opened::open(RealDisk, &path);
    assert_eq!(values(&opened.group), ["round 0", "round 1", "round 2"]);
    // Offsets 0 and 1: the membership entry of `initialize` and the first term's blank.
    let first =
        opened.group.with_log(|log| log.read(Offset(0), 1, Offset(2), &mut Vec::new()).map(drop));
    assert!(first.is_ok());
}

/// Writes a log as a node before Raft did: offset-only segment names, epoch 2.
fn write_legacy_log(dir: &Path, records: usize) {
    let mut log = Log::open(RealDisk, dir, support::config(), Arc::new(SystemClock)).unwrap();
    for record in 0..records {
        let mut batch = BatchBuilder::new(1_700_000_000_000)
            .record(None, Some(format!("old {record}").as_bytes()), &[])
            .build();
        log.append(&mut batch, LeaderEpoch(2)).unwrap();
    }
    log.close().unwrap();
    // Back to the names of the old format: `{base_offset}.log` / `.index`.
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if let Some((base, rest)) = name.split_once('-')
            && (rest.ends_with(".log") || rest.ends_with(".index"))
        {
            let suffix = rest.rsplit_once('.').unwrap().1;
            std::fs::rename(&path, dir.join(format!("{base}.{suffix}"))).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_before_raft_is_adopted_with_all_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("legacy-0");
    write_legacy_log(&path, 5);
    let opened = Opened::open(RealDisk, &path);
    let group = start(&opened).await.unwrap();
    assert!(group.wait_leader(WAIT).await, "elects itself");
    // The log's epoch 2 is the term it starts in: the first election is term 3.
    assert_eq!(group.roles().current().term, 3);
    let base = commit(&group, &opened, "new", 1).await;
    assert_eq!(base, Offset(6), "after the 5 old records and the new term's blank entry");
    let expected: Vec<String> =
        (0..5).map(|i| format!("old {i}")).chain(["new".to_owned()]).collect();
    assert_eq!(values(&opened.group), expected);
    group.shutdown().await;
    drop(group);
    drop(opened);
    // Adopted once: the next start is an ordinary restart.
    let opened = Opened::open(RealDisk, &path);
    let group = start(&opened).await.unwrap();
    assert!(group.wait_leader(WAIT).await);
    assert_eq!(group.roles().current().term, 4);
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_log_cannot_be_read_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p0");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("raft-snapshot"), b"garbage").unwrap();
    let histogram = Arc::new(cairn_metrics::Histogram::new(&[0.1]).unwrap());
    let opened = cairn_raft::GroupLog::open(
        RealDisk,
        &path,
        support::config(),
        Arc::new(SystemClock),
        histogram,
    );
    assert!(matches!(opened, Err(StoreError::Storage(_) | StoreError::Record(_))), "a clear error");
}

/// A log of Raft-indexed segments that no group wrote (the broker before partitions ran
/// groups): its first entry is data, not a membership; it is adopted with every record kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_indexed_but_written_without_a_group_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p0");
    let mut log = Log::open(RealDisk, &path, support::config(), Arc::new(SystemClock)).unwrap();
    for record in 0..3 {
        let mut batch = BatchBuilder::new(1_700_000_000_000)
            .record(None, Some(format!("old {record}").as_bytes()), &[])
            .build();
        log.append(&mut batch, LeaderEpoch(0)).unwrap();
    }
    log.close().unwrap();
    let opened = Opened::open(RealDisk, &path);
    let group = start(&opened).await.unwrap();
    assert!(group.wait_leader(WAIT).await, "elects itself");
    assert_eq!(group.roles().current().term, 1);
    assert_eq!(commit(&group, &opened, "new", 1).await, Offset(4), "after the blank at 3");
    assert_eq!(values(&opened.group), ["old 0", "old 1", "old 2", "new"]);
    group.shutdown().await;
}
