//! [`VoteFile`] on both disks: what it reads back, every single-bit flip, torn and cut slots,
//! leftover temporary files; and on [`SimDisk`], a crash at every step of `save_vote` and
//! `save_committed`.

use std::path::Path;

use cairn_storage::sim::{EIO, SimDisk};
use cairn_storage::{Disk, DiskFile, Error, StoredLogId, StoredVote, VoteFile};

use crate::crash::{CrashDisk, crash_points};
use crate::support::both_disks;

const FILE: &str = "raft-vote";
/// Where slot 1 starts, and the bytes of a slot.
const STRIDE: u64 = 4096;
const SLOT_BYTES: u64 = 52;

pub fn vote(term: u64, voted_for: Option<u64>, committed: bool) -> StoredVote {
    StoredVote { term, voted_for, committed }
}

fn log_id(term: u64, index: u64) -> Option<StoredLogId> {
    Some(StoredLogId { term, index })
}

/// Opens the vote file of `dir`, creating `dir` first.
fn open<D: Disk + Clone>(disk: &D, dir: &Path) -> Result<(VoteFile<D>, Option<StoredVote>), Error> {
    disk.create_dir_all(dir).unwrap();
    VoteFile::open(disk.clone(), dir)
}

/// The vote and committed log id a fresh open of `dir` reads.
fn reopen<D: Disk + Clone>(disk: &D, dir: &Path) -> (Option<StoredVote>, Option<StoredLogId>) {
    let (file, vote) = open(disk, dir).unwrap();
    assert_eq!(file.vote(), vote);
    (vote, file.committed())
}

/// Flips bit `bit` of the file at `path` through the disk itself.
fn flip<D: Disk>(disk: &D, path: &Path, bit: u64) {
    let file = disk.open(path).unwrap();
    let mut byte = [0u8];
    assert_eq!(file.read_at(&mut byte, bit / 8).unwrap(), 1);
    byte[0] ^= 1 << (bit % 8);
    file.write_all_at(&byte, bit / 8).unwrap();
}

fn saves_read_back<D: Disk + Clone>(disk: &D, dir: &Path) {
    let (mut file, none) = open(disk, dir).unwrap();
    assert_eq!(none, None);
    assert_eq!(disk.list_dir(dir).unwrap(), Vec::<String>::new(), "open writes nothing");
    assert_eq!(reopen(disk, dir), (None, None));
    file.save_vote(vote(1, Some(2), false)).unwrap();
    assert_eq!(reopen(disk, dir), (Some(vote(1, Some(2), false)), None));
    file.save_vote(vote(1, Some(2), true)).unwrap();
    file.save_committed(log_id(1, 7)).unwrap();
    assert_eq!(file.committed(), log_id(1, 7));
    assert_eq!(reopen(disk, dir), (Some(vote(1, Some(2), true)), log_id(1, 7)));
    // A vote keeps the committed log id, and a reopened file goes on from its newest slot.
    drop(file);
    let (mut file, _) = open(disk, dir).unwrap();
    file.save_vote(vote(3, None, false)).unwrap();
    file.save_committed(None).unwrap();
    file.save_committed(log_id(3, 9)).unwrap();
    file.sync().unwrap();
    assert_eq!(reopen(disk, dir), (Some(vote(3, None, false)), log_id(3, 9)));
    file.save_vote(vote(u64::MAX, Some(u64::MAX), true)).unwrap();
    assert_eq!(reopen(disk, dir), (Some(vote(u64::MAX, Some(u64::MAX), true)), log_id(3, 9)));
    assert_eq!(disk.list_dir(dir).unwrap(), vec![FILE.to_owned()]);
}

fn committed_before_any_vote_is_the_zero_vote<D: Disk + Clone>(disk: &D, dir: &Path) {
    let (mut file, _) = open(disk, dir).unwrap();
    file.save_committed(log_id(0, 0)).unwrap();
    assert_eq!(reopen(disk, dir), (Some(StoredVote::default()), log_id(0, 0)));
}

/// A file whose slot 0 holds `old` and slot 1 holds `new` (the newer).
fn two_votes<D: Disk + Clone>(disk: &D, dir: &Path, old: StoredVote, new: StoredVote) {
    let (mut file, _) = open(disk, dir).unwrap();
    file.save_vote(old).unwrap();
    file.save_vote(new).unwrap();
}

fn every_bit_flip_falls_back_or_is_refused<D: Disk + Clone>(disk: &D, dir: &Path) {
    let (old, new) = (vote(4, Some(1), true), vote(5, Some(2), false));
    two_votes(disk, dir, old, new);
    let path = dir.join(FILE);
    // Every bit of both slots, and of the bytes around the gap between them (which no one
    // reads; every bit of it would make the real-disk run take a minute of fsyncs).
    let bytes = (0..=SLOT_BYTES).chain([STRIDE - 1]).chain(STRIDE..STRIDE + SLOT_BYTES);
    for bit in bytes.flat_map(|byte| byte * 8..byte * 8 + 8) {
        flip(disk, &path, bit);
        let byte = bit / 8;
        let expected = if byte < SLOT_BYTES {
            new // slot 0 damaged: slot 1 is the newest anyway
        } else if byte >= STRIDE {
            old // slot 1 damaged: back to the older vote, the newer was never answered
        } else {
            new // between the slots: no one reads it
        };
        assert_eq!(reopen(disk, dir).0, Some(expected), "bit {bit}");
        flip(disk, &path, bit);
    }
    assert_eq!(reopen(disk, dir).0, Some(new));
}

fn a_single_slot_damaged_is_corruption<D: Disk + Clone>(disk: &D, dir: &Path) {
    let (mut file, _) = open(disk, dir).unwrap();
    file.save_vote(vote(4, Some(1), false)).unwrap();
    drop(file);
    let path = dir.join(FILE);
    for bit in 0..SLOT_BYTES * 8 {
        flip(disk, &path, bit);
        let error = open(disk, dir).err().unwrap_or_else(|| panic!("bit {bit} accepted"));
        assert!(matches!(error, Error::Corruption { .. }), "bit {bit}: {error}");
        flip(disk, &path, bit);
    }
    assert_eq!(reopen(disk, dir).0, Some(vote(4, Some(1), false)));
}

fn a_cut_file_falls_back_or_is_corruption<D: Disk + Clone>(disk: &D, dir: &Path) {
    let (old, new) = (vote(1, Some(1), false), vote(2, Some(1), false));
    two_votes(disk, dir, old, new);
    let file = disk.open(&dir.join(FILE)).unwrap();
    // Slot 1 torn by length: the older vote.
    file.set_len(STRIDE + SLOT_BYTES - 1).unwrap();
    assert_eq!(reopen(disk, dir).0, Some(old));
    file.set_len(STRIDE).unwrap();
    assert_eq!(reopen(disk, dir).0, Some(old));
    // Nothing valid left.
    for len in [SLOT_BYTES - 1, 0] {
        file.set_len(len).unwrap();
        assert!(matches!(open(disk, dir), Err(Error::Corruption { .. })), "length {len}");
    }
}

fn a_leftover_temp_file_is_replaced<D: Disk + Clone>(disk: &D, dir: &Path) {
    disk.create_dir_all(dir).unwrap();
    let temp = disk.create(&dir.join("raft-vote.tmp")).unwrap();
    temp.write_all_at(b"half a vote from a crash", 0).unwrap();
    let (mut file, none) = open(disk, dir).unwrap();
    assert_eq!(none, None);
    file.save_vote(vote(7, Some(3), false)).unwrap();
    assert_eq!(reopen(disk, dir).0, Some(vote(7, Some(3), false)));
    assert_eq!(disk.list_dir(dir).unwrap(), vec![FILE.to_owned()]);
}

both_disks!(seed = 11;
    saves_read_back,
    committed_before_any_vote_is_the_zero_vote,
    every_bit_flip_falls_back_or_is_refused,
    a_single_slot_damaged_is_corruption,
    a_cut_file_falls_back_or_is_corruption,
    a_leftover_temp_file_is_replaced,
);

const DIR: &str = "/group";

/// A disk whose vote file went through `setup`, crashed and reopened cleanly, so that what it
/// holds is durable.
fn prepared(seed: u64, setup: fn(&mut VoteFile<SimDisk>)) -> SimDisk {
    let sim = SimDisk::new(seed);
    let (mut file, _) = open(&sim, Path::new(DIR)).unwrap();
    setup(&mut file);
    file.sync().unwrap();
    sim.crash();
    sim
}

/// What a reopened vote file reads: the vote and the committed log id.
type Found = (Option<StoredVote>, Option<StoredLogId>);

/// Crashes opening the file and `change` at every step: after the crash the file reads as one of `allowed`, which
/// lists what it read before the change, then after each of its saves; and as the last of them
/// if `change` returned `Ok`.
fn check_crash_at_every_step(
    setup: fn(&mut VoteFile<SimDisk>),
    change: fn(&mut VoteFile<CrashDisk>) -> Result<(), Error>,
    allowed: &[Found],
) {
    let after = *allowed.last().unwrap();
    for (seed, point) in crash_points(24).enumerate() {
        let sim = prepared(seed as u64, setup);
        let disk = CrashDisk::new(&sim, point);
        // Opening is a step too: it syncs what it read.
        let result = VoteFile::open(disk.clone(), DIR).and_then(|(mut file, _)| change(&mut file));
        if !disk.crashed() {
            // Past the last step: the whole change ran, and a crash now keeps all of it.
            assert!(point.step > 1, "the change made no step");
            result.unwrap();
            sim.crash();
            assert_eq!(reopen(&sim, Path::new(DIR)), after);
            return;
        }
        let found = reopen(&sim, Path::new(DIR));
        assert!(allowed.contains(&found), "{point:?}: {found:?}");
        if result.is_ok() {
            assert_eq!(found, after, "{point:?}: answered, then lost");
        }
    }
    panic!("the change took more than 24 steps");
}

#[test]
fn a_crash_during_the_first_vote_leaves_none_or_it() {
    check_crash_at_every_step(
        |_| {},
        |file| file.save_vote(vote(1, Some(1), false)),
        &[(None, None), (Some(vote(1, Some(1), false)), None)],
    );
}

#[test]
fn a_crash_during_save_vote_leaves_the_old_or_the_new_vote() {
    check_crash_at_every_step(
        |file| file.save_vote(vote(2, Some(1), true)).unwrap(),
        |file| file.save_vote(vote(3, Some(2), false)),
        &[(Some(vote(2, Some(1), true)), None), (Some(vote(3, Some(2), false)), None)],
    );
    // The second vote after the open goes to the other slot.
    check_crash_at_every_step(
        |file| {
            file.save_vote(vote(2, Some(1), true)).unwrap();
            file.save_committed(log_id(2, 4)).unwrap();
        },
        |file| {
            file.save_vote(vote(3, Some(2), false))?;
            file.save_vote(vote(4, Some(3), false))
        },
        &[
            (Some(vote(2, Some(1), true)), log_id(2, 4)),
            (Some(vote(3, Some(2), false)), log_id(2, 4)),
            (Some(vote(4, Some(3), false)), log_id(2, 4)),
        ],
    );
}

#[test]
fn a_crash_during_save_committed_never_takes_the_vote() {
    let setup = |file: &mut VoteFile<SimDisk>| file.save_vote(vote(2, Some(1), true)).unwrap();
    for seed in 0..64 {
        for syncs in [false, true] {
            let sim = prepared(seed, setup);
            let (mut file, _) = open(&sim, Path::new(DIR)).unwrap();
            file.save_committed(log_id(2, 1)).unwrap();
            file.save_committed(log_id(2, 2)).unwrap();
            if syncs {
                file.sync().unwrap();
            }
            sim.crash();
            let (vote_found, committed) = reopen(&sim, Path::new(DIR));
            assert_eq!(vote_found, Some(vote(2, Some(1), true)), "seed {seed}");
            if syncs {
                assert_eq!(committed, log_id(2, 2));
            } else {
                assert!([None, log_id(2, 1), log_id(2, 2)].contains(&committed), "{committed:?}");
            }
        }
    }
    check_crash_at_every_step(
        setup,
        |file| {
            file.save_committed(log_id(2, 1))?;
            file.save_committed(log_id(2, 2))?;
            file.sync()
        },
        &[
            (Some(vote(2, Some(1), true)), None),
            (Some(vote(2, Some(1), true)), log_id(2, 1)),
            (Some(vote(2, Some(1), true)), log_id(2, 2)),
        ],
    );
}

#[test]
fn a_failed_write_or_fsync_poisons_and_keeps_the_old_vote() {
    for fail_sync in [false, true] {
        let sim = SimDisk::new(3);
        let (mut file, _) = open(&sim, Path::new(DIR)).unwrap();
        file.save_vote(vote(1, Some(1), false)).unwrap();
        file.save_vote(vote(2, Some(1), false)).unwrap();
        if fail_sync {
            sim.fail_next_sync(EIO);
        } else {
            sim.fail_next_write(EIO);
        }
        assert!(matches!(file.save_vote(vote(3, Some(1), false)), Err(Error::Io { .. })));
        assert!(matches!(file.save_vote(vote(3, Some(1), false)), Err(Error::Poisoned)));
        assert!(matches!(file.save_committed(None), Err(Error::Poisoned)));
        assert!(matches!(file.sync(), Err(Error::Poisoned)));
        sim.crash();
        assert_eq!(reopen(&sim, Path::new(DIR)).0, Some(vote(2, Some(1), false)));
    }
}

#[test]
fn a_full_disk_refuses_the_first_vote_and_a_retry_saves_it() {
    let sim = SimDisk::new(5);
    let (mut file, _) = open(&sim, Path::new(DIR)).unwrap();
    sim.set_capacity_bytes(Some(sim.used_bytes() + 100));
    assert!(matches!(file.save_vote(vote(1, Some(1), false)), Err(Error::NoSpace { .. })));
    assert_eq!(reopen(&sim, Path::new(DIR)).0, None);
    sim.set_capacity_bytes(None);
    file.save_vote(vote(1, Some(1), false)).unwrap();
    sim.crash();
    assert_eq!(reopen(&sim, Path::new(DIR)).0, Some(vote(1, Some(1), false)));
}
