//! Sealed segments rewritten in place (`rewrite.rs`, RFC 0007): batches below the point
//! rewritten, offsets, Raft indexes and producers unchanged; the rewrite survives a reopen; a
//! crash before the swap or in the middle of it loses nothing and leaves no copy behind, nor
//! one after it (`SimDisk` losing every unsynced write); a segment taken by retention meanwhile
//! is not swapped in. On the real disk and on `SimDisk`.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::Arc;

use cairn_storage::{Disk, Log, ManualClock, rewrite_segment};
use cairn_types::batch::{self, BatchBuilder, Batches, Compression, RecordBatch};
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{LeaderEpoch, Offset, ProducerId};

const T0: i64 = 1_700_000_000_000;

fn open<D: Disk + Clone>(disk: &D, dir: &Path) -> Log<D> {
    Log::open(disk.clone(), dir, support::config(), Arc::new(ManualClock::new(T0))).unwrap()
}

/// 60 batches of three keyed records, an idempotent producer's; their bytes as stored.
fn fill<D: Disk>(log: &mut Log<D>) -> Vec<Vec<u8>> {
    for n in 0..60 {
        let mut builder = BatchBuilder::new(T0).producer(ProducerId(7), 0, n * 3);
        for i in 0..3u8 {
            builder = builder.record(Some(&[i]), Some(&[n as u8; 40]), &[]);
        }
        log.append(&mut builder.build(), LeaderEpoch(1)).unwrap();
    }
    batches(log)
}

/// Every batch of the log, read back (verified).
fn batches<D: Disk>(log: &Log<D>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut from = log.start_offset();
    while from < log.next_offset() {
        from = log.read(from, 1 << 20, log.next_offset(), &mut out).unwrap();
    }
    Batches::new(&out, BATCH_BYTES_MAX).map(|b| b.unwrap().as_bytes().to_vec()).collect()
}

/// The rewrite of the tests: even batches emptied.
fn empty_even(batch: &RecordBatch<'_>) -> Result<Option<Vec<u8>>, String> {
    let even = batch.header().base_offset.0 % 2 == 0;
    Ok(even.then(|| batch::with_records(batch.as_bytes(), Compression::None, &[], 0)))
}

/// What the log must hold after the rewrite below `point`.
fn expected(before: &[Vec<u8>], point: Offset) -> Vec<Vec<u8>> {
    before
        .iter()
        .map(|bytes| {
            let batch = RecordBatch::validate(bytes).unwrap();
            match empty_even(&batch).unwrap() {
                Some(empty) if batch.header().base_offset < point => empty,
                _ => bytes.clone(),
            }
        })
        .collect()
}

/// Rewrites every sealed segment below `point`; the copies written, not yet swapped in.
fn copies<D: Disk + Clone>(log: &Log<D>, point: Offset) -> Vec<cairn_storage::Rewritten<D::File>> {
    let sealed = log.sealed_below(point);
    assert!(sealed.len() >= 2, "several sealed segments below the point");
    sealed.iter().filter_map(|s| rewrite_segment(s, point, empty_even).unwrap()).collect()
}

fn cleaned_files<D: Disk>(disk: &D, dir: &Path) -> Vec<String> {
    disk.list_dir(dir).unwrap().into_iter().filter(|n| n.ends_with(".cleaned")).collect()
}

/// The Raft view: every entry where it was.
fn entries<D: Disk>(log: &Log<D>) -> Vec<(u64, u64, u64)> {
    (log.start_index().0..log.next_index().0)
        .map(|i| {
            let entry = log.entry_at(cairn_types::RaftIndex(i)).unwrap().unwrap();
            (i, entry.base_offset.0, entry.next_offset.0)
        })
        .collect()
}

fn rewritten_in_place<D: Disk + Clone>(disk: &D, dir: &Path) {
    let mut log = open(disk, dir);
    let before = fill(&mut log);
    let (indexes, producers) = (entries(&log), log.producers().clone());
    let point = log.sealed_below(Offset(u64::MAX)).last().unwrap().base();
    for copy in copies(&log, point) {
        assert!(log.swap_rewritten(copy).unwrap());
    }
    let want = expected(&before, point);
    assert_ne!(want, before, "the rewrite changed batches");
    assert_eq!(batches(&log), want);
    assert_eq!(entries(&log), indexes, "offsets and Raft indexes do not move");
    assert_eq!(log.producers(), &producers);
    log.verify().unwrap();
    log.close().unwrap();
    let log = open(disk, dir);
    assert_eq!((batches(&log), entries(&log)), (want, indexes), "after a reopen");
    assert_eq!(log.producers(), &producers);
    assert!(cleaned_files(disk, dir).is_empty());
}

fn a_crash_before_the_swap_leaves_the_log_as_it_was<D: Disk + Clone>(disk: &D, dir: &Path) {
    let mut log = open(disk, dir);
    let before = fill(&mut log);
    let point = log.next_offset();
    let copies = copies(&log, point);
    assert!(!cleaned_files(disk, dir).is_empty());
    drop(copies);
    drop(log);
    let log = open(disk, dir);
    assert_eq!(batches(&log), before);
    assert!(cleaned_files(disk, dir).is_empty(), "the open removed the copies");
}

fn a_crash_inside_the_swap_keeps_either_whole_segment<D: Disk + Clone>(disk: &D, dir: &Path) {
    let mut log = open(disk, dir);
    let before = fill(&mut log);
    let point = log.next_offset();
    let mut copies = copies(&log, point);
    drop(log);
    // The swap's steps by hand, stopped after the data's rename: no index for either segment.
    let names = disk.list_dir(dir).unwrap();
    for (step, copy) in copies.drain(..).enumerate().take(2) {
        drop(copy);
        let data = names.iter().filter(|n| n.ends_with(".log.cleaned")).nth(step).unwrap();
        let target = data.trim_end_matches(".cleaned");
        disk.remove_file(&dir.join(target.replace(".log", ".index"))).unwrap();
        if step == 0 {
            disk.rename(&dir.join(data), &dir.join(target)).unwrap();
        }
    }
    disk.sync_dir(dir).unwrap();
    let log = open(disk, dir);
    let got = batches(&log);
    log.verify().unwrap();
    let first_rewritten = expected(&before, point);
    assert_eq!(got.len(), before.len());
    for (i, bytes) in got.iter().enumerate() {
        assert!(bytes == &before[i] || bytes == &first_rewritten[i], "batch {i} is whole");
    }
    assert_ne!(got, before, "the renamed segment is the rewritten one");
    assert!(cleaned_files(disk, dir).is_empty());
}

fn a_segment_deleted_meanwhile_is_not_swapped_in<D: Disk + Clone>(disk: &D, dir: &Path) {
    let mut log = open(disk, dir);
    fill(&mut log);
    let point = log.next_offset();
    let copies = copies(&log, point);
    let second = log.sealed_below(point)[1].base();
    log.delete_prefix(second, point).unwrap();
    let mut swapped = Vec::new();
    for copy in copies {
        swapped.push(log.swap_rewritten(copy).unwrap());
    }
    assert_eq!(swapped.first(), Some(&false), "the deleted segment's copy is dropped");
    assert!(swapped[1..].iter().all(|s| *s));
    assert!(cleaned_files(disk, dir).is_empty());
}

support::both_disks!(seed = 21;
    rewritten_in_place,
    a_crash_before_the_swap_leaves_the_log_as_it_was,
    a_crash_inside_the_swap_keeps_either_whole_segment,
    a_segment_deleted_meanwhile_is_not_swapped_in,
);

/// The checkpoint a clean close left names a position inside the segment a round then rewrites
/// (a batch boundary before, the middle of one after): the round makes the newer checkpoint
/// (the roll's) durable first, so the open after a crash, which loses every unsynced write,
/// does not replay the rewritten segment to that position.
#[test]
fn a_crash_after_a_round_opens_the_rewritten_log() {
    let disk = cairn_storage::sim::SimDisk::new(5);
    let dir = Path::new("/round");
    let config = cairn_storage::LogConfig { segment_bytes: 1 << 20, ..support::config() };
    let open = || Log::open(disk.clone(), dir, config.clone(), Arc::new(ManualClock::new(T0)));
    let mut log = open().unwrap();
    fill(&mut log);
    log.close().unwrap();
    let mut log = open().unwrap();
    for n in 0..60u8 {
        let builder = BatchBuilder::new(T0).record(Some(&[n]), Some(&[n; 40]), &[]);
        log.append(&mut builder.build(), LeaderEpoch(1)).unwrap();
    }
    log.flush().unwrap();
    let before = batches(&log);
    let point = log.next_offset();
    log.seal_below(point).unwrap();
    for sealed in log.sealed_below(point) {
        let copy = rewrite_segment(&sealed, point, empty_even).unwrap().unwrap();
        assert!(log.swap_rewritten(copy).unwrap());
    }
    drop(log);
    disk.crash();
    let log = open().expect("the log opens after the crash");
    assert_eq!(batches(&log), expected(&before, point));
}
