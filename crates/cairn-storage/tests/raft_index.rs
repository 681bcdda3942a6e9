//! Boundary tests of the log as a Raft log: the follower append (bytes kept, divergence refused
//! with nothing written), the epoch history's start indexes, index entries that disagree with
//! the data, segment names that disagree with each other, cuts by index, reset, and the adoption
//! of a directory written in the format before Raft indexes (offset-only segment names, 20-byte
//! index entries, version 1 epoch history), including one a crash left half adopted. Tests that
//! need no fault injection run against both the real file system and [`SimDisk`].

#![allow(clippy::unwrap_used)]

mod support;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use cairn_storage::{Disk, DiskFile, EpochStart, Error, Log, ManualClock, inspect};
use cairn_types::batch::{self, BatchBuilder, Frames};
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{LeaderEpoch, Offset, RaftIndex};

const T0: i64 = 1_700_000_000_000;

fn open<D: Disk + Clone>(disk: &D, dir: &Path) -> Result<Log<D>, Error> {
    Log::open(disk.clone(), dir, support::config(), Arc::new(ManualClock::new(T0)))
}

/// A batch of `records` records of `value_bytes` each.
fn batch(records: u8, value_bytes: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(T0);
    for i in 0..records {
        builder = builder.record(Some(&[i]), Some(&vec![i; value_bytes]), &[]);
    }
    builder.build()
}

/// `batches` as a leader stamps them: offsets from `base`, epoch `epoch`.
fn stamped(base: u64, epoch: i32, batches: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = Offset(base);
    for bytes in batches {
        let mut bytes = bytes.clone();
        batch::set_base_offset(&mut bytes, next);
        batch::set_partition_leader_epoch(&mut bytes, LeaderEpoch(epoch));
        next = Frames::new(&bytes, BATCH_BYTES_MAX).next().unwrap().1.next_offset();
        out.extend_from_slice(&bytes);
    }
    out
}

/// Everything in the log, read by index range.
fn read_all<D: Disk>(log: &Log<D>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut from = log.start_index();
    while from < log.next_index() {
        let headers = log.read_entries(from, log.next_index(), 1 << 20, &mut out).unwrap();
        from = headers.last().unwrap().index.plus(1);
    }
    out
}

fn files<D: Disk>(disk: &D, dir: &Path) -> Vec<String> {
    let mut names = disk.list_dir(dir).unwrap();
    names.sort();
    names
}

fn epoch_start(epoch: i32, start_offset: u64, start_index: u64) -> EpochStart {
    EpochStart {
        epoch: LeaderEpoch(epoch),
        start_offset: Offset(start_offset),
        start_index: RaftIndex(start_index),
    }
}

/// A follower given the leader's bytes holds them byte for byte at the same indexes, records
/// each new epoch with its start index, and refuses what does not continue its log.
fn follower_keeps_the_leaders_bytes<D: Disk + Clone>(disk: &D, dir: &Path) {
    let mut leader = open(disk, &dir.join("leader")).unwrap();
    for epoch in [2, 2, 5] {
        let mut bytes = [batch(3, 100), batch(1, 10)].concat();
        leader.append(&mut bytes, LeaderEpoch(epoch)).unwrap();
    }
    let sent = read_all(&leader);
    let mut follower = open(disk, &dir.join("follower")).unwrap();
    let appended = follower.append_replicated(&sent).unwrap();
    assert_eq!((appended.first_index, appended.last_index), (RaftIndex(0), RaftIndex(5)));
    assert_eq!((appended.base_offset, appended.next_offset), (Offset(0), leader.next_offset()));
    assert_eq!(read_all(&follower), sent);
    let history = [epoch_start(2, 0, 0), epoch_start(5, 8, 4)];
    assert_eq!(follower.epoch_history(), &history);
    assert_eq!(leader.epoch_history(), &history);
    for index in 0..6 {
        let index = RaftIndex(index);
        assert_eq!(follower.entry_at(index).unwrap(), leader.entry_at(index).unwrap());
    }

    let before =
        (follower.next_offset(), follower.next_index(), files(disk, &dir.join("follower")));
    let next = follower.next_offset().0;
    let diverged = stamped(next + 1, 5, &[batch(1, 10)]);
    match follower.append_replicated(&diverged) {
        Err(Error::Diverged { expected, found }) => {
            assert_eq!((expected, found), (Offset(next), Offset(next + 1)));
        }
        other => panic!("expected Diverged, got {other:?}"),
    }
    // A gap inside the buffer is divergence too, and nothing of the buffer is written.
    let gap = [stamped(next, 5, &[batch(1, 10)]), stamped(next + 2, 5, &[batch(1, 10)])].concat();
    assert!(matches!(follower.append_replicated(&gap), Err(Error::Diverged { .. })));
    let stale = stamped(next, 4, &[batch(1, 10)]);
    assert!(matches!(follower.append_replicated(&stale), Err(Error::StaleEpoch { .. })));
    let mut damaged = stamped(next, 5, &[batch(2, 10)]);
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    assert!(matches!(follower.append_replicated(&damaged), Err(Error::InvalidBatch { .. })));
    let after = (follower.next_offset(), follower.next_index(), files(disk, &dir.join("follower")));
    assert_eq!(after, before, "refused appends write nothing");
    assert_eq!(follower.epoch_history(), &history);

    // Epochs 6 and 7 start inside one replicated buffer; both survive a reopen.
    let two = [stamped(next, 6, &[batch(1, 10)]), stamped(next + 1, 7, &[batch(1, 10)])].concat();
    assert_eq!(follower.append_replicated(&two).unwrap().first_index, RaftIndex(6));
    follower.close().unwrap();
    let follower = open(disk, &dir.join("follower")).unwrap();
    let tail = [epoch_start(6, next, 6), epoch_start(7, next + 1, 7)];
    assert_eq!(&follower.epoch_history()[2..], &tail);
    assert_eq!(follower.next_index(), RaftIndex(8));
}

/// Cuts by index: after an entry, all of them, never below the bound; purge of whole segments;
/// reset to a snapshot's position, durable across a reopen.
fn cuts_by_index<D: Disk + Clone>(disk: &D, dir: &Path) {
    let mut log = open(disk, dir).unwrap();
    for _ in 0..30 {
        log.append(&mut batch(2, 200), LeaderEpoch(1)).unwrap();
    }
    assert!(log.segment_count() > 3, "small segments roll");
    let cut = log.entry_at(RaftIndex(20)).unwrap().unwrap();
    let bound = cut.next_offset.plus(1);
    assert!(matches!(
        log.truncate_after(Some(RaftIndex(20)), bound),
        Err(Error::BeyondBound { .. })
    ));
    log.truncate_after(Some(RaftIndex(20)), cut.next_offset).unwrap();
    assert_eq!((log.next_index(), log.next_offset()), (RaftIndex(21), cut.next_offset));
    assert_eq!(log.durable_index(), RaftIndex(21));
    assert!(matches!(
        log.truncate_after(Some(RaftIndex(21)), Offset(0)),
        Err(Error::IndexOutOfRange { .. })
    ));

    let start = log.purge_through(RaftIndex(9)).unwrap();
    assert!(start > RaftIndex(0) && start <= RaftIndex(10), "whole segments only: {start}");
    assert_eq!(log.start_index(), start);
    assert_eq!(log.entry_at(start).unwrap().unwrap().base_offset, log.start_offset());
    assert_eq!(log.entry_at(RaftIndex(start.0 - 1)).unwrap(), None);
    assert!(matches!(
        log.read_entries(RaftIndex(0), RaftIndex(5), 1 << 20, &mut Vec::new()),
        Err(Error::IndexOutOfRange { .. })
    ));

    log.reset(Offset(1000), RaftIndex(400)).unwrap();
    assert_eq!((log.start_offset(), log.next_offset()), (Offset(1000), Offset(1000)));
    assert_eq!((log.start_index(), log.next_index()), (RaftIndex(400), RaftIndex(400)));
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.epoch_history(), &[]);
    // A leader of an older epoch than any the log held goes on from the snapshot.
    let appended = log.append_replicated(&stamped(1000, 1, &[batch(1, 10)])).unwrap();
    assert_eq!(appended.first_index, RaftIndex(400));
    drop(log);
    let mut log = open(disk, dir).unwrap();
    assert_eq!((log.start_index(), log.next_index()), (RaftIndex(400), RaftIndex(401)));
    let names = files(disk, dir);
    let segments: Vec<&String> = names.iter().filter(|n| n.ends_with(".log")).collect();
    assert_eq!(segments, ["00000000000000001000-00000000000000000400.log"]);
    log.truncate_after(None, Offset(1000)).unwrap();
    assert_eq!((log.next_index(), log.next_offset()), (RaftIndex(400), Offset(1000)));
}

support::both_disks!(seed = 21; follower_keeps_the_leaders_bytes, cuts_by_index, legacy_log_is_adopted);

/// An index entry whose checksum is good but whose Raft index is wrong (a bug, or damage before
/// the checksum was computed) is caught by the next lookup that walks past it, and by a scrub.
#[test]
fn an_index_entry_that_miscounts_is_corruption() {
    let disk = cairn_storage::sim::SimDisk::new(5);
    let dir = Path::new("/log");
    let mut log = open(&disk, dir).unwrap();
    for _ in 0..12 {
        // About 100 bytes each: an index entry every third batch (interval 256).
        log.append(&mut batch(1, 20), LeaderEpoch(1)).unwrap();
    }
    log.close().unwrap();
    let index_path = dir.join("00000000000000000000-00000000000000000000.index");
    let file = disk.open(&index_path).unwrap();
    let mut bytes = vec![0; file.len().unwrap() as usize];
    file.read_at(&mut bytes, 0).unwrap();
    assert!(bytes.len() >= 3 * 24, "several entries");
    // Entry 1 claims one batch more than there is before it; it still sorts between 0 and 2.
    let entry = &mut bytes[24..48];
    let relative_index = u32::from_be_bytes(entry[4..8].try_into().unwrap());
    entry[4..8].copy_from_slice(&(relative_index + 1).to_be_bytes());
    let crc = crc32c::crc32c(&entry[..20]);
    entry[20..24].copy_from_slice(&crc.to_be_bytes());
    file.write_all_at(&bytes, 0).unwrap();
    file.sync_data().unwrap();
    drop(file);
    let log = open(&disk, dir).unwrap();
    // A clean open trusts the index; the lookup starting at the bad entry walks to the next one.
    let lookup = log.entry_at(RaftIndex(u64::from(relative_index) + 1));
    assert!(matches!(lookup, Err(Error::Corruption { .. })), "{lookup:?}");
    assert!(matches!(log.verify(), Err(Error::Corruption { .. })));
}

/// Segment names whose first indexes disagree with the batches counted, or with each other's
/// order, are corruption: the log is not opened and no data file is renamed or cut.
#[test]
fn names_that_disagree_are_corruption() {
    let disk = cairn_storage::sim::SimDisk::new(6);
    let dir = Path::new("/log");
    let mut log = open(&disk, dir).unwrap();
    for _ in 0..10 {
        log.append(&mut batch(2, 300), LeaderEpoch(1)).unwrap();
    }
    let second = log.segment_bases().nth(1).unwrap();
    let second_index = log.index_of(second).unwrap();
    log.close().unwrap();
    let name = |index: u64| format!("{:020}-{index:020}.log", second.0);
    disk.rename(&dir.join(name(second_index.0)), &dir.join(name(second_index.0 + 1))).unwrap();
    disk.sync_dir(dir).unwrap();
    let data = |disk: &cairn_storage::sim::SimDisk| -> Vec<String> {
        files(disk, dir).into_iter().filter(|n| !n.ends_with(".index")).collect()
    };
    let before = data(&disk);
    let opened = open(&disk, dir);
    assert!(matches!(opened, Err(Error::Corruption { .. })), "miscounted first index");
    assert_eq!(data(&disk), before, "only index files, which are hints, may change");
    // First indexes that go down while offsets go up.
    disk.rename(&dir.join(name(second_index.0 + 1)), &dir.join(name(0))).unwrap();
    let opened = open(&disk, dir);
    assert!(matches!(opened, Err(Error::Corruption { .. })), "disordered names");
}

/// The version 1 epoch history, as the code before Raft indexes wrote it.
fn epochs_v1(entries: &[(i32, u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0x4341_4550u32.to_be_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_be_bytes());
    for (epoch, offset) in entries {
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// A 20-byte index entry of the format before Raft indexes.
fn index_entry_v1(relative_offset: u32, position: u32, max_timestamp_before: i64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&relative_offset.to_be_bytes());
    out.extend_from_slice(&position.to_be_bytes());
    out.extend_from_slice(&max_timestamp_before.to_be_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn write<D: Disk>(disk: &D, path: &Path, bytes: &[u8]) {
    let file = disk.create(path).unwrap();
    file.write_all_at(bytes, 0).unwrap();
    file.sync_data().unwrap();
}

/// Writes a log as the code before Raft indexes did: retention had deleted offsets below 100;
/// segments at 100 (3 batches), 109 (2) and 115 (2, the first of epoch 4); an index file per
/// segment; an epoch history naming epochs that started before the log start. Returns the bytes.
fn write_legacy_log<D: Disk>(disk: &D, dir: &Path) -> Vec<u8> {
    disk.create_dir_all(dir).unwrap();
    let segments = [
        (100, stamped(100, 2, &[batch(3, 50), batch(3, 50), batch(3, 50)])),
        (109, stamped(109, 2, &[batch(3, 50), batch(3, 50)])),
        (115, stamped(115, 4, &[batch(3, 50), batch(3, 50)])),
    ];
    let mut all = Vec::new();
    for (base, bytes) in &segments {
        write(disk, &dir.join(format!("{base:020}.log")), bytes);
        write(disk, &dir.join(format!("{base:020}.index")), &index_entry_v1(0, 0, i64::MIN));
        all.extend_from_slice(bytes);
    }
    write(disk, &dir.join("leader-epochs"), &epochs_v1(&[(1, 40), (2, 90), (4, 115)]));
    disk.sync_dir(dir).unwrap();
    all
}

/// The adopted log: indexes from 1, names renamed, history upgraded, nothing lost.
fn check_adopted<D: Disk + Clone>(disk: &D, dir: &Path, all: &[u8]) {
    let log = open(disk, dir).unwrap();
    assert!(log.recovery().adopted);
    assert_eq!((log.start_offset(), log.next_offset()), (Offset(100), Offset(121)));
    assert_eq!((log.start_index(), log.next_index()), (RaftIndex(1), RaftIndex(8)));
    let entry = log.entry_at(RaftIndex(6)).unwrap().unwrap();
    assert_eq!((entry.base_offset, entry.epoch), (Offset(115), LeaderEpoch(4)));
    assert_eq!(log.epoch_history(), &[epoch_start(2, 100, 1), epoch_start(4, 115, 6)]);
    assert_eq!(read_all(&log), all);
    log.verify().unwrap();
    log.close().unwrap();
    let names = files(disk, dir);
    let expected = [
        "00000000000000000100-00000000000000000001.index",
        "00000000000000000100-00000000000000000001.log",
        "00000000000000000109-00000000000000000004.index",
        "00000000000000000109-00000000000000000004.log",
        "00000000000000000115-00000000000000000006.index",
        "00000000000000000115-00000000000000000006.log",
        "leader-epochs",
        "recovery-point",
    ];
    assert_eq!(names, expected);
    let mut log = open(disk, dir).unwrap();
    assert!(!log.recovery().adopted, "adopted once");
    assert_eq!(log.recovery().verified_bytes, 0, "a clean reopen walks nothing");
    assert_eq!(log.entry_at(RaftIndex(6)).unwrap().unwrap().base_offset, Offset(115));
    let appended = log.append(&mut batch(1, 10), LeaderEpoch(4)).unwrap();
    assert_eq!(appended.first_index, RaftIndex(8));
}

/// A directory of the old format is adopted on open; inspection reports it as adoptable and
/// numbers its batches the same way without writing anything.
fn legacy_log_is_adopted<D: Disk + Clone>(disk: &D, dir: &Path) {
    let all = write_legacy_log(disk, dir);
    let before = files(disk, dir);
    let inspection = inspect(disk, dir, Offset(0), &mut |_| ControlFlow::Continue(())).unwrap();
    assert!(inspection.adoptable);
    assert_eq!((inspection.start_index, inspection.next_index), (RaftIndex(1), RaftIndex(8)));
    assert_eq!(files(disk, dir), before, "inspection writes nothing");
    check_adopted(disk, dir, &all);
    let inspection = inspect(disk, dir, Offset(0), &mut |_| ControlFlow::Continue(())).unwrap();
    assert!(!inspection.adoptable);
    assert_eq!((inspection.start_index, inspection.next_index), (RaftIndex(1), RaftIndex(9)));
}

/// A crash during adoption left the first segment renamed, the others not, and the version 1
/// history: the next open finishes the adoption to the same result.
#[test]
fn a_half_adopted_log_is_adopted_the_same_way() {
    let disk = cairn_storage::sim::SimDisk::new(8);
    let dir = Path::new("/log");
    let all = write_legacy_log(&disk, dir);
    let rename = |from: &str, to: &str| disk.rename(&dir.join(from), &dir.join(to)).unwrap();
    rename("00000000000000000100.log", "00000000000000000100-00000000000000000001.log");
    // Its index, 20-byte entries under the old name, now belongs to no segment.
    disk.sync_dir(dir).unwrap();
    check_adopted(&disk, dir, &all);
}
