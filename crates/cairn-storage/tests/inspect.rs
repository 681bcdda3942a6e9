//! Tests of [`cairn_storage::inspect`], the read-only walk of the offline tools: it reports what
//! recovery would cut or refuse, and leaves every byte and every name in the directory as it was.
//! Each test runs against both the real file system and [`SimDisk`].

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use cairn_storage::{Disk, DiskFile, Error, Inspection, Log, ManualClock, inspect};
use cairn_types::batch::{BatchBuilder, BatchHeader};
use cairn_types::{LeaderEpoch, Offset};

const T0: i64 = 1_700_000_000_000;

fn batch(records: u8, value_bytes: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(T0);
    for i in 0..records {
        builder = builder.record(Some(&[i]), Some(&vec![i; value_bytes]), &[]);
    }
    builder.build()
}

/// A log in `dir` with `count` batches of 3 records, closed or (`close == false`) dropped as a
/// crash would leave it. Returns the offset after the last batch.
fn write_log<D: Disk + Clone>(disk: &D, dir: &Path, count: usize, close: bool) -> Offset {
    let clock = Arc::new(ManualClock::new(T0));
    let mut log = Log::open(disk.clone(), dir, support::config(), clock).unwrap();
    for _ in 0..count {
        log.append(&mut batch(3, 100), LeaderEpoch(2)).unwrap();
    }
    let next = log.next_offset();
    if close {
        log.close().unwrap();
    }
    next
}

/// Every name in `dir` with its bytes.
fn snapshot<D: Disk>(disk: &D, dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for name in disk.list_dir(dir).unwrap() {
        let file = disk.open(&dir.join(&name)).unwrap();
        let mut bytes = vec![0; file.len().unwrap() as usize];
        file.read_at(&mut bytes, 0).unwrap();
        files.insert(name, bytes);
    }
    files
}

fn inspect_all<D: Disk>(disk: &D, dir: &Path) -> Result<(Inspection, Vec<BatchHeader>), Error> {
    let mut headers = Vec::new();
    let inspection = inspect(disk, dir, Offset(0), &mut |header| {
        headers.push(*header);
        ControlFlow::Continue(())
    })?;
    Ok((inspection, headers))
}

fn last_segment_path<D: Disk>(disk: &D, dir: &Path) -> std::path::PathBuf {
    let mut names: Vec<String> =
        disk.list_dir(dir).unwrap().into_iter().filter(|n| n.ends_with(".log")).collect();
    names.sort();
    dir.join(names.last().unwrap())
}

/// The defect: `cairn log verify` opened the log, which cut a "torn tail". Inspection reports the
/// cut that recovery would make, with the same numbers, and makes none.
fn verify_reports_a_torn_tail_without_cutting_it<D: Disk + Clone>(disk: &D, dir: &Path) {
    let next = write_log(disk, dir, 20, false);
    let path = last_segment_path(disk, dir);
    let file = disk.open(&path).unwrap();
    let len = file.len().unwrap();
    let mut torn = batch(3, 100);
    cairn_types::batch::set_base_offset(&mut torn, next);
    file.write_all_at(&torn[..torn.len() / 2], len).unwrap();
    file.sync_data().unwrap();
    let before = snapshot(disk, dir);

    let (inspection, headers) = inspect_all(disk, dir).unwrap();
    assert_eq!(snapshot(disk, dir), before, "inspection wrote nothing");
    let tail = inspection.torn_tail.clone().expect("a torn tail");
    assert_eq!((tail.path.as_path(), tail.position), (path.as_path(), len));
    assert_eq!(tail.bytes, (torn.len() / 2) as u64);
    assert_eq!(inspection.next_offset, next);
    assert_eq!(headers.len(), 20);
    assert!(inspection.complete && inspection.segments > 1, "{inspection:?}");

    let clock = Arc::new(ManualClock::new(T0));
    let log = Log::open(disk.clone(), dir, support::config(), clock).unwrap();
    assert_eq!(log.recovery().truncated_bytes, tail.bytes, "recovery cuts what was reported");
    assert_eq!(log.next_offset(), next);
    assert_eq!(inspection.verified_bytes, log.size_bytes());
}

/// Damage with valid data after it is corruption: reported, never called a torn tail.
fn verify_reports_corruption_and_writes_nothing<D: Disk + Clone>(disk: &D, dir: &Path) {
    write_log(disk, dir, 3, true);
    let path = last_segment_path(disk, dir);
    let file = disk.open(&path).unwrap();
    let middle = file.len().unwrap() / 2;
    let mut byte = [0u8];
    file.read_at(&mut byte, middle).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], middle).unwrap();
    file.sync_data().unwrap();
    let before = snapshot(disk, dir);
    let error = inspect_all(disk, dir).expect_err("corruption is reported");
    assert!(matches!(&error, Error::Corruption { path: p, .. } if *p == path), "{error:?}");
    assert_eq!(snapshot(disk, dir), before);

    // Damage in the last batch, with nothing after it, inside what the checkpoint says was
    // fsynced: corruption too, not a torn tail to cut.
    file.write_all_at(&byte, middle).unwrap();
    let end = file.len().unwrap() - 1;
    file.read_at(&mut byte, end).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], end).unwrap();
    file.sync_data().unwrap();
    let before = snapshot(disk, dir);
    let error = inspect_all(disk, dir).expect_err("corruption is reported");
    assert!(matches!(&error, Error::Corruption { position, .. } if *position < end), "{error:?}");
    assert_eq!(snapshot(disk, dir), before);
}

/// A clean log: everything verified, nothing to cut; a lost epoch history is rebuilt in memory
/// only (recovery would rewrite the file; inspection does not).
fn clean_log_inspects_like_it_opens<D: Disk + Clone>(disk: &D, dir: &Path) {
    let next = write_log(disk, dir, 30, true);
    disk.remove_file(&dir.join("leader-epochs")).unwrap();
    let before = snapshot(disk, dir);
    let (inspection, headers) = inspect_all(disk, dir).unwrap();
    assert_eq!(snapshot(disk, dir), before);
    assert!(inspection.epochs_rebuilt);
    assert_eq!(inspection.torn_tail, None);
    assert_eq!((inspection.start_offset, inspection.next_offset), (Offset(0), next));
    let offsets: Vec<Offset> = headers.iter().map(|h| h.base_offset).collect();
    assert_eq!(offsets, (0..30).map(|i| Offset(i * 3)).collect::<Vec<_>>());

    // From an offset: earlier segments are skipped; the visitor can stop the walk.
    let mut seen = Vec::new();
    let partial = inspect(disk, dir, Offset(60), &mut |header| {
        seen.push(header.base_offset);
        if seen.len() == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    })
    .unwrap();
    assert!(!partial.complete);
    assert_eq!(seen.len(), 3);
    assert!(seen[0] <= Offset(60) && seen[0] > Offset(0), "{seen:?}");
    assert_eq!(partial.next_offset, seen[2].plus(3));
}

/// A directory without segments is not a log: reported as such, and nothing is created in it
/// (the defect: `cairn log verify <data-dir>/topics` created a segment there).
fn a_directory_without_segments_is_left_alone<D: Disk + Clone>(disk: &D, dir: &Path) {
    disk.create_dir_all(&dir.join("orders-0")).unwrap();
    let before = disk.list_dir(dir).unwrap();
    let (inspection, headers) = inspect_all(disk, dir).unwrap();
    assert_eq!(inspection.segments, 0);
    assert!(headers.is_empty());
    assert_eq!(disk.list_dir(dir).unwrap(), before);
    let missing = dir.join("missing");
    assert!(matches!(inspect_all(disk, &missing), Err(Error::Io { .. })));
    assert!(disk.list_dir(&missing).is_err(), "a missing directory is not created");
}

support::both_disks!(
    seed = 5;
    verify_reports_a_torn_tail_without_cutting_it,
    verify_reports_corruption_and_writes_nothing,
    clean_log_inspects_like_it_opens,
    a_directory_without_segments_is_left_alone
);
