//! Cutting a log at damage inside it ([`plan_cut`], [`cut_damage`]), against a model: a log of
//! random batches over several segments, one bit flipped anywhere in a random batch that valid
//! batches follow, and the recovery checkpoint removed so that the open verifies every batch.
//!
//! Properties:
//! - the open reports the damage, and the plan cuts exactly at the flipped batch (its offset
//!   and Raft index), counting at least every entry the log held (`held_end`);
//! - after the cut (and a crash right after it, on the simulated disk) the log opens, ends at
//!   the flipped batch and holds the model's batches before it, byte for byte;
//! - nothing is lost: what the log keeps, followed by what was moved aside, is the damaged
//!   log byte for byte.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_storage::sim::SimDisk;
use cairn_storage::{Disk, DiskFile, Error, Log, ManualClock, cut_damage, plan_cut};
use cairn_types::batch::{BatchBuilder, Frames};
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{LeaderEpoch, Offset, RaftIndex};
use proptest::prelude::*;

const T0: i64 = 1_700_000_000_000;

fn open<D: Disk + Clone>(disk: &D, dir: &Path) -> Result<Log<D>, Error> {
    Log::open(disk.clone(), dir, support::config(), Arc::new(ManualClock::new(T0)))
}

/// The whole content of `path`.
fn read<D: Disk>(disk: &D, path: &Path) -> Vec<u8> {
    let file = disk.open_read_only(path).unwrap();
    let mut bytes = vec![0; usize::try_from(file.len().unwrap()).unwrap()];
    let read = file.read_at(&mut bytes, 0).unwrap();
    assert_eq!(read, bytes.len());
    bytes
}

/// The files of `dir` whose names contain `.log`, in name order (offset order).
fn data_files<D: Disk>(disk: &D, dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<String> =
        disk.list_dir(dir).unwrap().into_iter().filter(|name| name.contains(".log")).collect();
    names.sort();
    names.iter().map(|name| dir.join(name)).collect()
}

/// The segments' bytes, concatenated in order.
fn bytes_of<D: Disk>(disk: &D, files: &[PathBuf]) -> Vec<u8> {
    files.iter().flat_map(|path| read(disk, path)).collect()
}

/// Every batch the log holds, copied and verified.
fn read_all<D: Disk>(log: &Log<D>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut from = log.start_offset();
    while from < log.next_offset() {
        from = log.read(from, 1 << 20, log.next_offset(), &mut out).unwrap();
    }
    out
}

/// Appends one batch per `(records, value_bytes)` and closes the log; each batch's bytes as
/// stored, in order.
fn write_log<D: Disk + Clone>(disk: &D, dir: &Path, batches: &[(u8, usize)]) -> Vec<Vec<u8>> {
    let mut log = open(disk, dir).unwrap();
    let mut stored = Vec::new();
    for (i, &(records, value_bytes)) in batches.iter().enumerate() {
        let mut builder = BatchBuilder::new(T0 + i as i64);
        for r in 0..records {
            builder = builder.record(None, Some(&vec![r; value_bytes]), &[]);
        }
        let mut bytes = builder.build();
        log.append(&mut bytes, LeaderEpoch(1 + i as i32 / 8)).unwrap();
        stored.push(bytes);
    }
    log.close().unwrap();
    stored
}

/// Writes `batches`, flips bit `bit` of batch `victim` on disk, then opens, plans, cuts (calls
/// `crash` right after) and checks the module's properties.
fn check<D: Disk + Clone>(
    disk: &D,
    dir: &Path,
    batches: &[(u8, usize)],
    victim: usize,
    bit: usize,
    crash: impl Fn(),
) {
    assert!(victim + 1 < batches.len(), "valid batches follow the damaged one");
    let stored = write_log(disk, dir, batches);
    disk.remove_file(&dir.join("recovery-point")).unwrap();
    let segments = data_files(disk, dir);
    assert!(segments.len() > 1, "several segments");
    // Each batch's file and position, in log order.
    let mut places = Vec::new();
    for path in &segments {
        let bytes = read(disk, path);
        places.extend(Frames::new(&bytes, BATCH_BYTES_MAX).map(|(at, _)| (path.clone(), at)));
    }
    assert_eq!(places.len(), stored.len());
    let (path, at) = &places[victim];
    let byte = at + bit / 8 % stored[victim].len();
    let file = disk.open(path).unwrap();
    let mut flipped = [0u8];
    file.read_at(&mut flipped, byte as u64).unwrap();
    file.write_all_at(&[flipped[0] ^ (1 << (bit % 8))], byte as u64).unwrap();
    file.sync_data().unwrap();
    drop(file);
    let damaged = bytes_of(disk, &segments);

    let error = open(disk, dir).err().expect("the damage is reported");
    let damage = plan_cut(disk, dir, &error).unwrap().expect("a damage the cut can remove");
    let offset: u64 = stored[..victim].iter().map(|b| u64::from(batch_records(b))).sum();
    assert_eq!((damage.index, damage.offset), (RaftIndex(victim as u64), Offset(offset)));
    assert_eq!(damage.path, *path);
    assert!(damage.held_end >= RaftIndex(stored.len() as u64), "{damage:?}");
    let aside = dir.join("damaged").join("1");
    cut_damage(disk, dir, &damage, &aside).unwrap();
    crash();

    let log = open(disk, dir).unwrap();
    assert_eq!(log.next_index(), damage.index);
    assert_eq!(log.next_offset(), damage.offset);
    assert_eq!(read_all(&log), stored[..victim].concat());
    drop(log);
    let mut kept = bytes_of(disk, &data_files(disk, dir));
    assert_eq!(kept.len() as u64 + damage.dropped_bytes, damaged.len() as u64);
    kept.extend(bytes_of(disk, &data_files(disk, &aside)));
    assert!(kept == damaged, "the log and what was moved aside are the damaged log");
}

/// The record count of a stored batch.
fn batch_records(bytes: &[u8]) -> u32 {
    let (_, header) = Frames::new(bytes, BATCH_BYTES_MAX).next().unwrap();
    u32::try_from(header.next_offset().0 - header.base_offset.0).unwrap()
}

/// 30 batches of 5 records of 40 bytes: about 10 segments of 4 KiB.
fn uniform() -> Vec<(u8, usize)> {
    vec![(5, 40); 30]
}

fn a_flip_in_an_older_segment_is_cut_there<D: Disk + Clone>(disk: &D, dir: &Path) {
    check(disk, dir, &uniform(), 7, 8 * 100 + 3, || {});
}

support::both_disks!(seed = 5; a_flip_in_an_older_segment_is_cut_there);

#[test]
fn a_flip_in_a_length_field_of_the_last_segment_still_counts_the_entries_after_it() {
    // Byte 8 is the first byte of batch_length: the header walk is lost after it, and the
    // entries are bounded by the offsets of the valid batches a scan finds.
    let disk = SimDisk::new(3);
    check(&disk, Path::new("/log"), &uniform(), 27, 8 * 8 + 6, || disk.crash());
}

#[test]
fn damage_outside_a_segment_is_not_planned() {
    let disk = SimDisk::new(4);
    let dir = Path::new("/log");
    write_log(&disk, dir, &uniform());
    let error = Error::Corruption {
        path: dir.join("leader-epochs"),
        position: 0,
        reason: "test".to_owned(),
    };
    assert_eq!(plan_cut(&disk, dir, &error).unwrap(), None);
    let segment = data_files(&disk, dir)[1].clone();
    let off_boundary = Error::Corruption { path: segment, position: 5, reason: "test".to_owned() };
    assert_eq!(plan_cut(&disk, dir, &off_boundary).unwrap(), None, "not a batch boundary");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_cut_keeps_the_prefix_before_the_damage_and_moves_the_rest_aside(
        batches in prop::collection::vec((1u8..6, 1usize..400), 12..40),
        victim in any::<prop::sample::Index>(),
        bit in any::<usize>(),
        seed in any::<u64>(),
        crash in any::<bool>(),
    ) {
        let disk = SimDisk::new(seed);
        let victim = victim.index(batches.len() - 1);
        check(&disk, Path::new("/log"), &batches, victim, bit, || if crash { disk.crash() });
    }
}
