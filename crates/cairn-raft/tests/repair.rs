//! [`GroupLog::open_repairing`] on real directories: a log damaged inside (a flipped byte with
//! valid batches after it, in an older segment) is cut at the damage; the replica must hold
//! again everything the log held before it votes (`lost_committed`, from `raft-restore`, above
//! the saved committed index), across a restart, until its log is back there; a replica whose
//! vote cannot be read has nothing cut. (A group of three refilling such a replica runs on real
//! processes: `cairn-cli/tests/storage_faults.rs`.)

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_metrics::Histogram;
use cairn_raft::{GroupLog, StoreError};
use cairn_storage::{Log, RealDisk, StoredLogId, StoredVote, SystemClock, VoteFile};
use cairn_types::batch::{BatchBuilder, Frames};
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{LeaderEpoch, RaftIndex};

/// Entries written; the byte flipped is in entry [`DAMAGED`].
const ENTRIES: u64 = 40;
const DAMAGED: usize = 5;

fn histogram() -> Arc<Histogram> {
    Arc::new(Histogram::new(&[0.1]).unwrap())
}

fn open(path: &Path) -> Result<GroupLog<RealDisk>, StoreError> {
    GroupLog::open(RealDisk, path, support::config(), Arc::new(SystemClock), histogram())
}

fn open_repairing(path: &Path) -> Result<GroupLog<RealDisk>, StoreError> {
    GroupLog::open_repairing(RealDisk, path, support::config(), Arc::new(SystemClock), histogram())
}

/// Appends `count` one-record batches of epoch 1 to the log in `path`.
fn append(path: &Path, count: u64) {
    let mut log = Log::open(RealDisk, path, support::config(), Arc::new(SystemClock)).unwrap();
    for n in 0..count {
        let value = format!("record {n} {}", "x".repeat(100));
        let mut batch =
            BatchBuilder::new(1_700_000_000_000).record(None, Some(value.as_bytes()), &[]).build();
        log.append(&mut batch, LeaderEpoch(1)).unwrap();
    }
    log.close().unwrap();
}

/// The segment files of `path`, in order.
fn segments(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    files
}

/// A log of [`ENTRIES`] entries over several segments, a vote with committed index 10, and a
/// byte flipped inside entry [`DAMAGED`]; the recovery checkpoint removed so the open walks
/// everything.
fn damaged_log(path: &Path) {
    append(path, ENTRIES);
    let (mut vote, _) = VoteFile::open(RealDisk, path).unwrap();
    vote.save_vote(StoredVote { term: 1, voted_for: Some(1), committed: true }).unwrap();
    vote.save_committed(Some(StoredLogId { term: 1, index: 10 })).unwrap();
    vote.sync().unwrap();
    drop(vote);
    let files = segments(path);
    assert!(files.len() > 1, "several segments: {files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let (at, _) = Frames::new(&bytes, BATCH_BYTES_MAX).nth(DAMAGED).expect("in the first segment");
    bytes[at + 70] ^= 0x10;
    std::fs::write(&files[0], bytes).unwrap();
    std::fs::remove_file(path.join("recovery-point")).unwrap();
}

#[test]
fn a_log_damaged_inside_is_cut_and_must_hold_again_all_it_held_before_it_votes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p0");
    damaged_log(&path);
    assert!(matches!(open(&path), Err(StoreError::Storage(_))), "a plain open refuses it");

    let group = open_repairing(&path).unwrap();
    let [damage] = group.repaired() else { panic!("one cut: {:?}", group.repaired()) };
    assert_eq!(damage.index, RaftIndex(DAMAGED as u64));
    assert_eq!(damage.held_end, RaftIndex(ENTRIES), "headers intact: counted exactly");
    assert_eq!(group.with_log(|log| log.next_index()), RaftIndex(DAMAGED as u64));
    // Above the saved committed index (10): the replica may have acknowledged every entry.
    let held = RaftIndex(damage.held_end.0 - 1);
    assert_eq!(group.lost_committed(), Some(held));
    group.close().unwrap();
    drop(group);
    assert!(path.join("raft-restore").exists());
    assert!(path.join("damaged").is_dir());

    // A restart before the refill still knows what to wait for.
    let group = open(&path).unwrap();
    assert_eq!(group.lost_committed(), Some(held));
    assert!(group.repaired().is_empty());
    group.close().unwrap();
    drop(group);

    // Once the log holds that index again, nothing is lost and `raft-restore` goes.
    append(&path, held.0 + 1 - DAMAGED as u64);
    let group = open(&path).unwrap();
    assert_eq!(group.lost_committed(), None);
    assert!(!path.join("raft-restore").exists());
    group.close().unwrap();
}

#[test]
fn a_replica_whose_vote_cannot_be_read_has_nothing_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p0");
    damaged_log(&path);
    let mut vote = std::fs::read(path.join("raft-vote")).unwrap();
    let len = vote.len();
    for at in [8, 4096 + 8].into_iter().filter(|&at| at < len) {
        vote[at] ^= 0x01;
    }
    std::fs::write(path.join("raft-vote"), vote).unwrap();
    let before: Vec<Vec<u8>> = segments(&path).iter().map(|f| std::fs::read(f).unwrap()).collect();

    assert!(matches!(open_repairing(&path), Err(StoreError::Storage(_))));
    let after: Vec<Vec<u8>> = segments(&path).iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(before == after, "the log is left as it was");
    assert!(!path.join("raft-restore").exists() && !path.join("damaged").exists());
}
