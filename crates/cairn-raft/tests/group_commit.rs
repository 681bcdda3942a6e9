//! The node's group commit ([`GroupCommit`]) over several partition logs, each on a disk of its
//! own: a model of its rounds (proptest, rounds driven by hand on `SimDisk`s, fsync failures
//! injected per disk), and its flusher loop on the real disk.
//!
//! What the model checks after every step: an append's `IOFlushed` callback is answered only
//! by a round that began after the append (never before its fsync), and then with `Ok` unless
//! that round's fsync of its log failed; a round syncs each log with appends exactly once and
//! leaves it durable to its end; a failed fsync takes that log out of service (its waiting and
//! later appends fail) and no other.

#![allow(clippy::unwrap_used)]

mod support;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_metrics::Histogram;
use cairn_raft::{GroupCommit, GroupLog, LogStore, RaftEntry, TypeConfig, flush_round};
use cairn_storage::sim::{EIO, SimDisk};
use cairn_storage::{Disk, LogConfig, RealDisk, SystemClock};
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt as _;
use proptest::prelude::*;
use tokio::sync::oneshot;

/// Bounds every wait of the loop test.
const WAIT: Duration = Duration::from_secs(10);

type Answer = oneshot::Receiver<Result<(), io::Error>>;

fn histogram() -> Arc<Histogram> {
    Arc::new(Histogram::new(&[0.001, 0.01, 0.1]).unwrap())
}

/// Segments large enough that no append in these tests rolls one (a roll syncs the segment
/// itself), the index synced rarely: every sync counted is a round's fsync.
fn config() -> LogConfig {
    LogConfig { segment_bytes: 64 << 20, index_sync_bytes: u64::MAX, ..support::config() }
}

/// One partition log in the test: its group, its store, the index of its next entry, and the
/// callbacks of its appends not answered yet.
struct Part<D: Disk> {
    group: GroupLog<D>,
    store: LogStore<D>,
    next: u64,
    unanswered: Vec<Answer>,
}

impl<D: Disk + Clone> Part<D> {
    fn open(disk: D, dir: &Path, commit: &Arc<GroupCommit<GroupLog<D>>>) -> Part<D> {
        let group =
            GroupLog::open(disk, dir, config(), Arc::new(SystemClock), histogram()).unwrap();
        group.join_group_commit(commit);
        let sink = Arc::new(support::Recorded::default());
        let store = LogStore::new(group.clone(), sink, Arc::new(SystemClock));
        Part { group, store, next: 0, unanswered: Vec::new() }
    }

    /// Appends `count` blank entries through the log store, as openraft does; `Err` if the log
    /// refused them (out of service).
    async fn append(&mut self, count: u64) -> Result<Answer, io::Error> {
        let entries: Vec<RaftEntry> =
            (self.next..self.next + count).map(|index| RaftEntry::blank(1, index)).collect();
        let (tx, rx) = TypeConfig::oneshot();
        self.store.append(entries, IOFlushed::<TypeConfig>::signal(tx)).await?;
        self.next += count;
        Ok(rx)
    }

    /// Whether everything appended is durable.
    fn durable(&self) -> bool {
        self.group.with_log(|log| log.durable_offset() == log.next_offset())
    }
}

/// A step of the model.
#[derive(Clone, Debug)]
enum Step {
    /// Append this many entries to log `.0`.
    Append(usize, u64),
    /// The next fsync of log `.0`'s disk fails with EIO.
    FailNextSync(usize),
    /// Run one round over the queued logs.
    Round,
}

fn steps(logs: usize) -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        6 => (0..logs, 1..4_u64).prop_map(|(log, count)| Step::Append(log, count)),
        1 => (0..logs).prop_map(Step::FailNextSync),
        4 => Just(Step::Round),
    ];
    proptest::collection::vec(step, 1..40)
}

/// What the model knows of one log.
#[derive(Clone, Copy, Debug, Default)]
struct Model {
    /// Appends whose callbacks no round answered yet.
    unflushed: bool,
    /// The next fsync of its disk fails.
    armed: bool,
    /// Out of service.
    failed: bool,
}

/// Runs `steps` over `logs` logs and checks the model after each.
async fn check(logs: usize, steps: Vec<Step>) {
    let commit = Arc::new(GroupCommit::new(histogram()));
    let disks: Vec<SimDisk> = (0..logs).map(|seed| SimDisk::new(seed as u64)).collect();
    let mut parts: Vec<Part<SimDisk>> =
        disks.iter().map(|disk| Part::open(disk.clone(), Path::new("/p"), &commit)).collect();
    let mut models = vec![Model::default(); logs];
    let seconds = histogram();
    // The first entry of a term writes the log's epoch file (an fsync of its own): append it
    // before any fsync is made to fail.
    for (part, model) in parts.iter_mut().zip(&mut models) {
        let answer = part.append(1).await.unwrap();
        part.unanswered.push(answer);
        model.unflushed = true;
    }
    round(&commit, &seconds, &disks, &mut parts, &mut models);
    for step in steps {
        match step {
            Step::Append(log, count) => {
                let appended = parts[log].append(count).await;
                assert_eq!(appended.is_err(), models[log].failed, "log {log} append: {appended:?}");
                if let Ok(answer) = appended {
                    parts[log].unanswered.push(answer);
                    models[log].unflushed = true;
                }
            }
            Step::FailNextSync(log) => {
                disks[log].fail_next_sync(EIO);
                models[log].armed = true;
            }
            Step::Round => round(&commit, &seconds, &disks, &mut parts, &mut models),
        }
        for (log, part) in parts.iter_mut().enumerate() {
            // No callback is answered outside a round.
            for answer in &mut part.unanswered {
                assert!(answer.try_recv().is_err(), "log {log}: answered before its fsync");
            }
        }
    }
}

/// One round, checked against the model.
fn round(
    commit: &GroupCommit<GroupLog<SimDisk>>,
    seconds: &Histogram,
    disks: &[SimDisk],
    parts: &mut [Part<SimDisk>],
    models: &mut [Model],
) {
    let syncs_before: Vec<u64> = disks.iter().map(SimDisk::sync_count).collect();
    let queued = commit.take_queued();
    let expected_synced = models.iter().filter(|m| m.unflushed && !m.failed).count();
    let done = flush_round(&queued, seconds);
    assert_eq!(done.synced, expected_synced, "one fsync per log with appends");
    for (log, (part, model)) in parts.iter_mut().zip(models.iter_mut()).enumerate() {
        let fails = model.unflushed && model.armed && !model.failed;
        for answer in part.unanswered.drain(..) {
            assert_eq!(answered(answer).is_err(), fails || model.failed, "log {log} callback");
        }
        let syncs = disks[log].sync_count() - syncs_before[log];
        if model.unflushed && !model.failed && !fails {
            assert_eq!(syncs, 1, "log {log}: one fsync in the round");
            assert!(part.durable(), "log {log}: durable to its end after the round");
            model.armed = false;
        } else {
            assert_eq!(syncs, 0, "log {log}: no successful fsync without appends");
        }
        model.failed |= fails;
        model.unflushed = false;
    }
}

/// A callback's answer, which a round gave already (the channel holds it).
fn answered(mut answer: Answer) -> Result<(), io::Error> {
    answer.try_recv().expect("the round answered the callback")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn rounds_answer_each_log_after_its_own_fsync_and_fail_only_the_failed_log(
        (logs, steps) in (1..5_usize).prop_flat_map(|logs| (Just(logs), steps(logs)))
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(check(logs, steps));
    }
}

/// The flusher loop on the real disk: appends to four logs are answered by the running group
/// commit, and closing it ends the loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_group_commit_makes_appends_of_every_log_durable_and_stops_when_closed() {
    let dir = tempfile::tempdir().unwrap();
    let commit = Arc::new(GroupCommit::new(histogram()));
    let flusher = tokio::spawn(Arc::clone(&commit).run());
    let mut parts: Vec<Part<RealDisk>> =
        (0..4).map(|p| Part::open(RealDisk, &dir.path().join(format!("p{p}")), &commit)).collect();
    for _ in 0..5 {
        let mut answers = Vec::new();
        for part in &mut parts {
            answers.push(part.append(3).await.unwrap());
        }
        for answer in answers {
            tokio::time::timeout(WAIT, answer).await.unwrap().unwrap().unwrap();
        }
        assert!(parts.iter().all(Part::durable));
    }
    commit.close();
    tokio::time::timeout(WAIT, flusher).await.unwrap().unwrap();
    for part in &parts {
        part.group.close().unwrap();
    }
}
