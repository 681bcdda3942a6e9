//! Boundary and fault tests of [`Log`]: torn tails, bit flips, EIO, ENOSPC, lost indexes and
//! epoch histories, recovery cost, retention, rolling and the input errors of every call.
//! Tests that need no fault injection run against both the real file system and [`SimDisk`].

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_storage::sim::{EIO, SimDisk};
use cairn_storage::{
    Disk, DiskFile, Error, FlushPolicy, Log, LogConfig, ManualClock, RealDisk, Retention,
};
use cairn_types::batch::{BatchBuilder, BatchHeader, Batches, Frames};
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{LeaderEpoch, Offset};

const T0: i64 = 1_700_000_000_000;
const EPOCH: LeaderEpoch = LeaderEpoch(3);

/// A batch of `records` records of `value_bytes` each, timestamped `timestamp`.
fn batch(records: u8, value_bytes: usize, timestamp: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(timestamp);
    for i in 0..records {
        builder = builder.record(Some(&[i]), Some(&vec![i; value_bytes]), &[(b"h", Some(b"v"))]);
    }
    builder.build()
}

fn open<D: Disk + Clone>(
    disk: &D,
    dir: &Path,
    config: LogConfig,
    clock: &ManualClock,
) -> Result<Log<D>, Error> {
    Log::open(disk.clone(), dir, config, Arc::new(clock.clone()))
}

/// Everything in the log, copied and verified.
fn read_all<D: Disk>(log: &Log<D>) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let mut from = log.start_offset();
    while from < log.next_offset() {
        from = log.read(from, 1 << 20, log.next_offset(), &mut out)?;
    }
    Ok(out)
}

/// Appends `count` batches one call each; returns the bytes the log must hold.
fn fill<D: Disk>(log: &mut Log<D>, count: usize, value_bytes: usize) -> Vec<u8> {
    let mut all = Vec::new();
    for i in 0..count {
        let mut bytes = batch(3, value_bytes, T0 + i as i64);
        log.append(&mut bytes, EPOCH).unwrap();
        all.extend_from_slice(&bytes);
    }
    all
}

/// The data file of the segment at `base` whose first Raft index is `first_index`.
fn data_path(dir: &Path, base: u64, first_index: u64) -> PathBuf {
    dir.join(format!("{base:020}-{first_index:020}.log"))
}

/// Generic form of the shared tests: each takes a disk and a directory.
fn torn_tail_is_cut<D: Disk + Clone>(disk: &D, dir: &Path) {
    let clock = ManualClock::new(T0);
    let mut log = open(disk, dir, support::config(), &clock).unwrap();
    let expected = fill(&mut log, 3, 100);
    let next = log.next_offset();
    drop(log);
    // Half of a fourth batch reached the disk: a torn write.
    let mut torn = batch(3, 100, T0);
    cairn_types::batch::set_base_offset(&mut torn, next);
    let path = data_path(dir, 0, 0);
    let file = disk.open(&path).unwrap();
    let len = file.len().unwrap();
    file.write_all_at(&torn[..torn.len() / 2], len).unwrap();
    file.sync_data().unwrap();
    drop(file);
    let log = open(disk, dir, support::config(), &clock).unwrap();
    assert_eq!(log.recovery().truncated_bytes, (torn.len() / 2) as u64);
    assert_eq!(log.next_offset(), next);
    assert_eq!(read_all(&log).unwrap(), expected);
    assert_eq!(disk.open(&path).unwrap().len().unwrap(), len, "torn bytes are cut from the file");
}

fn corruption_followed_by_valid_data_is_reported<D: Disk + Clone>(disk: &D, dir: &Path) {
    let clock = ManualClock::new(T0);
    let config = LogConfig { flush: FlushPolicy::Manual, ..support::config() };
    let mut log = open(disk, dir, config.clone(), &clock).unwrap();
    fill(&mut log, 3, 100);
    drop(log); // nothing flushed, so nothing checkpointed: all three batches are walked on open
    let path = data_path(dir, 0, 0);
    let file = disk.open(&path).unwrap();
    let len = file.len().unwrap();
    let mut byte = [0u8];
    let middle = len / 2;
    file.read_at(&mut byte, middle).unwrap();
    file.write_all_at(&[byte[0] ^ 0x04], middle).unwrap();
    file.sync_data().unwrap();
    let error = open(disk, dir, config, &clock).err().expect("corruption is reported");
    assert!(matches!(error, Error::Corruption { .. }), "{error:?}");
    assert_eq!(file.len().unwrap(), len, "corrupt data is never truncated");
}

fn clean_reopen_walks_nothing_and_crash_walks_the_tail<D: Disk + Clone>(disk: &D, dir: &Path) {
    let clock = ManualClock::new(T0);
    let config = LogConfig { flush: FlushPolicy::Manual, ..support::config() };
    let mut log = open(disk, dir, config.clone(), &clock).unwrap();
    let mut expected = fill(&mut log, 40, 200);
    assert!(log.segment_count() >= 8);
    log.close().unwrap();
    let mut log = open(disk, dir, config.clone(), &clock).unwrap();
    assert_eq!(log.recovery().verified_bytes, 0);
    assert_eq!(log.recovery().replayed_bytes, 0, "a clean shutdown seals every index");
    log.flush().unwrap();
    // Flushed, then a crash: the checkpoint covers everything but the index lag.
    expected.extend(fill(&mut log, 2, 200));
    log.flush().unwrap();
    let tail = fill(&mut log, 1, 200);
    expected.extend(&tail);
    drop(log);
    let log = open(disk, dir, config, &clock).unwrap();
    assert_eq!(
        log.recovery().verified_bytes,
        tail.len() as u64,
        "only the unflushed tail is verified"
    );
    assert!(log.recovery().replayed_bytes < 4096, "replay bounded by one segment's index lag");
    assert_eq!(read_all(&log).unwrap(), expected);
}

fn lost_index_and_epoch_files_are_rebuilt<D: Disk + Clone>(disk: &D, dir: &Path) {
    let clock = ManualClock::new(T0);
    let mut log = open(disk, dir, support::config(), &clock).unwrap();
    let expected = fill(&mut log, 20, 150);
    let mut more = batch(2, 10, T0);
    log.append(&mut more, LeaderEpoch(9)).unwrap();
    let history = log.epoch_history().to_vec();
    let lookup = log.offset_for_timestamp(T0 + 7).unwrap();
    let ends = (log.next_offset(), log.next_index());
    log.close().unwrap();
    let indexes: Vec<String> =
        disk.list_dir(dir).unwrap().into_iter().filter(|n| n.ends_with(".index")).collect();
    assert!(indexes.len() > 1, "several segments");
    for name in &indexes {
        disk.remove_file(&dir.join(name)).unwrap();
    }
    disk.remove_file(&dir.join("leader-epochs")).unwrap();
    let log = open(disk, dir, support::config(), &clock).unwrap();
    assert!(log.recovery().rebuilt_epochs);
    assert_eq!(log.epoch_history(), &history[..]);
    assert_eq!(log.offset_for_timestamp(T0 + 7).unwrap(), lookup);
    assert_eq!((log.next_offset(), log.next_index()), ends, "indexes rebuilt from the names");
    let mut all = expected;
    all.extend(&more);
    assert_eq!(read_all(&log).unwrap(), all);
}

support::both_disks!(
    seed = 11;
    torn_tail_is_cut,
    corruption_followed_by_valid_data_is_reported,
    clean_reopen_walks_nothing_and_crash_walks_the_tail,
    lost_index_and_epoch_files_are_rebuilt
);

/// Issue 9: a restart of 10,000 partitions took minutes because every open of a cleanly closed
/// log fsynced its active segment and wrote a checkpoint (which the descriptor cache then had to
/// fsync to close it), and every open of a log without batches rebuilt and persisted an empty
/// epoch history. What a clean close left needs nothing written, and stays durable without it.
#[test]
fn a_clean_reopen_writes_and_syncs_nothing() {
    let disk = SimDisk::new(5);
    let clock = ManualClock::new(T0);
    let (full, empty) = (Path::new("/full"), Path::new("/empty"));
    let mut log = open(&disk, full, support::config(), &clock).unwrap();
    let expected = fill(&mut log, 30, 200);
    assert!(log.segment_count() >= 3);
    log.close().unwrap();
    open(&disk, empty, support::config(), &clock).unwrap().close().unwrap();
    for _ in 0..2 {
        let (synced, written) = (disk.sync_count(), disk.bytes_written());
        let log = open(&disk, full, support::config(), &clock).unwrap();
        let new = open(&disk, empty, support::config(), &clock).unwrap();
        assert_eq!(disk.sync_count(), synced, "a clean reopen fsyncs nothing");
        assert_eq!(disk.bytes_written(), written, "a clean reopen writes nothing");
        assert_eq!(*log.recovery(), Default::default(), "and walks nothing");
        assert_eq!(*new.recovery(), Default::default(), "an empty log rebuilds no history");
        drop((log, new));
        disk.crash();
    }
    let mut log = open(&disk, full, support::config(), &clock).unwrap();
    assert_eq!(read_all(&log).unwrap(), expected, "everything stayed durable");
    let mut more = batch(2, 10, T0);
    log.append(&mut more, EPOCH).unwrap();
    drop(log);
    disk.crash();
    let log = open(&disk, full, support::config(), &clock).unwrap();
    let mut all = expected;
    all.extend(&more);
    assert_eq!(read_all(&log).unwrap(), all, "and appends after a clean reopen are durable");
}

#[test]
fn every_single_bit_flip_in_committed_batches_is_detected() {
    let disk = SimDisk::new(5);
    let dir = Path::new("/flip");
    let clock = ManualClock::new(T0);
    let mut log = open(&disk, dir, support::config(), &clock).unwrap();
    let expected = fill(&mut log, 3, 20);
    log.close().unwrap();
    let path = data_path(dir, 0, 0);
    let bits = disk.file_len(&path).unwrap() * 8;
    let mut detected = 0;
    for bit in 0..bits {
        disk.flip_bit(&path, bit).unwrap();
        // Detected at open, at read, or by the scrub; never returned as data.
        match open(&disk, dir, support::config(), &clock) {
            Err(Error::Corruption { .. }) => detected += 1,
            Err(other) => panic!("bit {bit}: unexpected error {other:?}"),
            Ok(log) => {
                let read = read_all(&log);
                assert!(
                    matches!(read, Err(Error::Corruption { .. })),
                    "bit {bit} returned as data"
                );
                assert!(
                    matches!(log.verify(), Err(Error::Corruption { .. })),
                    "bit {bit}: scrub missed it"
                );
                detected += 1;
            }
        }
        disk.flip_bit(&path, bit).unwrap();
    }
    assert_eq!(detected, bits);
    let log = open(&disk, dir, support::config(), &clock).unwrap();
    assert_eq!(read_all(&log).unwrap(), expected);
}

/// The header walks that find a fetch's batches start from index entries, so they skip the
/// batches in between; a batch there whose base offset or leader epoch (both outside its CRC)
/// is damaged, in data the recovery checkpoint vouched for, must be refused by the zero-copy
/// `locate` and by the copying read alike, never returned as data (RFC 0005).
#[test]
fn locate_and_read_refuse_damaged_offsets_and_epochs_in_checkpointed_data() {
    let disk = SimDisk::new(9);
    let dir = Path::new("/outside-crc");
    let clock = ManualClock::new(T0);
    let mut log = open(&disk, dir, support::config(), &clock).unwrap();
    let expected = fill(&mut log, 12, 20);
    log.close().unwrap();
    let second = Frames::new(&expected, BATCH_BYTES_MAX).nth(1).unwrap().0 as u64;
    // The lowest bit of the base offset (bytes 0..8) and of the leader epoch (bytes 12..16).
    for byte in [7, 15] {
        let bit = (second + byte) * 8;
        disk.flip_bit(&data_path(dir, 0, 0), bit).unwrap();
        let log = open(&disk, dir, support::config(), &clock).unwrap();
        let end = log.next_offset();
        let located = log.locate(Offset(0), 1 << 20, end);
        assert!(matches!(located, Err(Error::Corruption { .. })), "byte {byte}: sent as is");
        let mut out = Vec::new();
        let read = log.read(Offset(0), 1 << 20, end, &mut out);
        assert!(matches!(read, Err(Error::Corruption { .. })), "byte {byte}: {read:?}");
        assert!(out.is_empty(), "nothing of a failed read is kept");
        drop(log);
        disk.flip_bit(&data_path(dir, 0, 0), bit).unwrap();
    }
}

/// A flipped bit inside a record of data the recovery checkpoint vouched for (a clean close
/// covers the whole log, so open reads no CRC) is found by the zero-copy `locate` before any
/// byte of it is returned; the batches before it are still served (RFC 0005).
#[test]
fn locate_verifies_checkpointed_data_once_before_serving_it() {
    let disk = SimDisk::new(11);
    let dir = Path::new("/checkpointed");
    let clock = ManualClock::new(T0);
    let mut log = open(&disk, dir, support::config(), &clock).unwrap();
    let expected = fill(&mut log, 12, 20);
    log.close().unwrap();
    let frames: Vec<(usize, BatchHeader)> = Frames::new(&expected, BATCH_BYTES_MAX).collect();
    let (third, header) = frames[2];
    // A byte of the third batch's records, inside its CRC.
    let bit = (third as u64 + u64::from(header.total_bytes()) - 3) * 8;
    disk.flip_bit(&data_path(dir, 0, 0), bit).unwrap();
    let log = open(&disk, dir, support::config(), &clock).unwrap();
    let end = log.next_offset();
    let located = log.locate(Offset(0), 1 << 20, end);
    assert!(matches!(located, Err(Error::Corruption { position, .. }) if position == third as u64));
    let before = log.locate(Offset(0), third as u32, end).expect("the batches before it");
    assert_eq!(before.bytes, third as u64);
    assert_eq!(before.next_offset, header.base_offset);
    let after = log.locate(header.next_offset(), 1 << 20, end).expect("the batches after it");
    assert_eq!(after.bytes, (expected.len() - third) as u64 - u64::from(header.total_bytes()));
    drop(log);
    disk.flip_bit(&data_path(dir, 0, 0), bit).unwrap();
    let log = open(&disk, dir, support::config(), &clock).unwrap();
    assert_eq!(
        log.locate(Offset(0), 1 << 20, end).expect("whole again").bytes,
        expected.len() as u64
    );
}

#[test]
fn eio_on_fsync_poisons_the_log() {
    let disk = SimDisk::new(3);
    let dir = Path::new("/eio");
    let clock = ManualClock::new(T0);
    let mut log = open(&disk, dir, support::config(), &clock).unwrap();
    let expected = fill(&mut log, 2, 50);
    disk.fail_next_sync(EIO);
    let error = log.append(&mut batch(1, 10, T0), EPOCH).unwrap_err();
    assert!(matches!(error, Error::Io { .. }) && !error.is_retriable(), "{error:?}");
    assert!(log.is_poisoned());
    assert!(matches!(log.append(&mut batch(1, 10, T0), EPOCH), Err(Error::Poisoned)));
    assert!(matches!(log.flush(), Err(Error::Poisoned)));
    assert!(matches!(log.truncate_suffix(Offset(0), Offset(0)), Err(Error::Poisoned)));
    // What was durable before stays readable; a reopen recovers from disk.
    drop(log);
    disk.crash();
    let log = open(&disk, dir, support::config(), &clock).unwrap();
    assert_eq!(read_all(&log).unwrap(), expected);
}

#[test]
fn eio_on_write_poisons_the_log() {
    let disk = SimDisk::new(4);
    let dir = Path::new("/eio-write");
    let clock = ManualClock::new(T0);
    let mut log = open(&disk, dir, support::config(), &clock).unwrap();
    let expected = fill(&mut log, 2, 50);
    disk.fail_next_write(EIO);
    assert!(matches!(log.append(&mut batch(2, 300, T0), EPOCH), Err(Error::Io { .. })));
    assert!(log.is_poisoned());
    drop(log);
    let log = open(&disk, dir, support::config(), &clock).unwrap();
    assert_eq!(read_all(&log).unwrap(), expected, "the partial write is a torn tail");
}

#[test]
fn enospc_is_retriable_and_leaves_the_log_consistent() {
    let disk = SimDisk::new(8);
    let dir = Path::new("/full");
    let clock = ManualClock::new(T0);
    let mut log = open(&disk, dir, support::config(), &clock).unwrap();
    let mut expected = fill(&mut log, 5, 100);
    // Room for a little more; appends fail part-way, some while rolling a segment.
    disk.set_capacity_bytes(Some(disk.used_bytes() + 3000));
    let mut failures = 0;
    for i in 0..40 {
        let next = log.next_offset();
        let mut bytes = batch(2, 250 + i, T0);
        match log.append(&mut bytes, EPOCH) {
            Ok(_) => expected.extend(&bytes),
            Err(error) => {
                assert!(
                    matches!(error, Error::NoSpace { .. }) && error.is_retriable(),
                    "{error:?}"
                );
                assert!(!log.is_poisoned());
                assert_eq!(log.next_offset(), next, "nothing of a failed append is kept");
                failures += 1;
            }
        }
        assert_eq!(read_all(&log).unwrap(), expected);
    }
    assert!(failures > 0);
    disk.set_capacity_bytes(None);
    let mut bytes = batch(2, 100, T0);
    log.append(&mut bytes, EPOCH).unwrap();
    expected.extend(&bytes);
    drop(log);
    disk.crash();
    let log = open(&disk, dir, support::config(), &clock).unwrap();
    assert_eq!(read_all(&log).unwrap(), expected);
}

#[test]
fn invalid_input_is_rejected_before_anything_is_written() {
    let disk = SimDisk::new(2);
    let dir = Path::new("/input");
    let clock = ManualClock::new(T0);
    let mut log = open(&disk, dir, support::config(), &clock).unwrap();
    fill(&mut log, 1, 10);
    let written = disk.bytes_written();
    let mut good = batch(1, 10, T0);
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 1;
    let mut two = good.clone();
    two.extend_from_slice(&bad);
    let error = log.append(&mut two, EPOCH).unwrap_err();
    assert!(
        matches!(error, Error::InvalidBatch { position, .. } if position == good.len()),
        "{error:?}"
    );
    assert!(matches!(log.append(&mut [], EPOCH), Err(Error::AppendSize { .. })));
    assert!(matches!(log.append(&mut good, LeaderEpoch(1)), Err(Error::StaleEpoch { .. })));
    assert_eq!(disk.bytes_written(), written);
    assert!(!log.is_poisoned());
    let next = log.next_offset();
    assert!(matches!(
        log.locate(next.plus(1), 100, next.plus(1)),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.truncate_suffix(Offset(1), Offset(0)),
        Err(Error::NotBatchBoundary { .. })
    ));
    assert!(matches!(log.truncate_suffix(Offset(0), Offset(1)), Err(Error::BeyondBound { .. })));
    assert!(matches!(log.delete_prefix(Offset(2), Offset(1)), Err(Error::BeyondBound { .. })));
    let bad_config = LogConfig { segment_bytes: 10, ..support::config() };
    assert!(matches!(open(&disk, Path::new("/other"), bad_config, &clock), Err(Error::Config(_))));
}

#[test]
fn retention_by_time_and_size_respects_the_bound() {
    let disk = SimDisk::new(6);
    let dir = Path::new("/retention");
    let clock = ManualClock::new(T0);
    let mut log = open(&disk, dir, support::config(), &clock).unwrap();
    for i in 0..30 {
        log.append(&mut batch(3, 250, T0 + i * 1000), EPOCH).unwrap();
    }
    let segments = log.segment_count();
    assert!(segments > 5);
    // Bound at the start: nothing may go.
    let retention = Retention { bytes: Some(1), ms: Some(1) };
    assert_eq!(log.apply_retention(retention, log.start_offset()).unwrap(), 0);
    // By size: keep at least 8000 bytes.
    let deleted =
        log.apply_retention(Retention { bytes: Some(8000), ms: None }, log.next_offset()).unwrap();
    assert!(deleted > 0);
    assert!(log.size_bytes() >= 8000);
    assert_eq!(log.segment_count(), segments - deleted);
    // By time: everything older than 5 s before "now" = T0 + 30 s.
    clock.advance(30_000);
    log.apply_retention(Retention { bytes: None, ms: Some(5_000) }, log.next_offset()).unwrap();
    let first = log.start_offset();
    let mut bytes = Vec::new();
    log.read(first, 1 << 20, log.next_offset(), &mut bytes).unwrap();
    let first_batch = Batches::new(&bytes, BATCH_BYTES_MAX).next().unwrap().unwrap();
    // The oldest kept segment still holds data newer than the cut-off, or it is the active one.
    assert!(log.segment_count() == 1 || first_batch.header().max_timestamp >= T0 + 20_000);
    let start = log.start_offset();
    drop(log);
    disk.crash();
    let log = open(&disk, dir, support::config(), &clock).unwrap();
    assert_eq!(log.start_offset(), start, "deleted segments stay deleted after a crash");
}

#[test]
fn segments_roll_by_age() {
    let disk = SimDisk::new(9);
    let dir = Path::new("/age");
    let clock = ManualClock::new(T0);
    let config =
        LogConfig { segment_ms: Some(60_000), segment_bytes: 1 << 20, ..support::config() };
    let mut log = open(&disk, dir, config, &clock).unwrap();
    fill(&mut log, 3, 10);
    assert_eq!(log.segment_count(), 1);
    clock.advance(59_999);
    fill(&mut log, 1, 10);
    assert_eq!(log.segment_count(), 1);
    clock.advance(1);
    fill(&mut log, 1, 10);
    assert_eq!(log.segment_count(), 2);
}

/// With a cache window, each flush drops the cached pages of durable data more than the window
/// behind the durable end of the previous flush, across segment rolls and after a truncation;
/// what is read back is unchanged. Returns the bytes expected dropped.
/// Returns the bytes an exact window would have dropped and the most fewer the log may drop:
/// it drops in steps of a quarter of the window, so up to a step per phase stays cached.
fn cache_window_drops_durable_data_behind_the_window<D: Disk + Clone>(
    disk: &D,
    dir: &Path,
) -> (u64, u64) {
    const WINDOW: u64 = 3000;
    let clock = ManualClock::new(T0);
    let config = LogConfig { cache_window_bytes: Some(WINDOW), ..support::config() };
    let mut log = open(disk, dir, config.clone(), &clock).unwrap();
    let mut expected = fill(&mut log, 30, 100);
    assert!(log.segment_count() >= 3, "the window spans segment rolls");
    let batch_bytes = batch(3, 100, T0).len() as u64;
    // Each flush drops what the previous one made durable, less the window.
    let mut dropped = expected.len() as u64 - batch_bytes - WINDOW;
    assert_eq!(read_all(&log).unwrap(), expected);

    // Cut 10 batches, deeper than the window, and write 10 new ones: the rewritten bytes are
    // dropped again once the window has passed them.
    let cut = Offset(log.next_offset().0 - 30);
    log.truncate_suffix(cut, cut).unwrap();
    expected.truncate(expected.len() - 10 * batch_bytes as usize);
    expected.extend(fill(&mut log, 10, 100));
    dropped += 10 * batch_bytes - batch_bytes - WINDOW;
    assert_eq!(read_all(&log).unwrap(), expected);

    log.close().unwrap();
    let log = open(disk, dir, config, &clock).unwrap();
    assert_eq!(read_all(&log).unwrap(), expected);
    (dropped, 2 * (WINDOW / 4 + batch_bytes))
}

#[test]
fn cache_window_drops_only_durable_data() {
    let disk = SimDisk::new(11);
    let (exact, slack) =
        cache_window_drops_durable_data_behind_the_window(&disk, Path::new("/cache"));
    let (dropped, not_durable) = disk.cache_dropped_bytes();
    assert_eq!(not_durable, 0);
    assert!((exact - slack..=exact).contains(&dropped), "dropped {dropped}, exact {exact}");
    let temp = tempfile::tempdir().unwrap();
    cache_window_drops_durable_data_behind_the_window(&RealDisk, temp.path());
}

#[test]
fn interval_flush_policy_bounds_unflushed_data() {
    let disk = SimDisk::new(10);
    let dir = Path::new("/interval");
    let clock = ManualClock::new(T0);
    let config =
        LogConfig { flush: FlushPolicy::Interval { ms: 100, bytes: 1500 }, ..support::config() };
    let mut log = open(&disk, dir, config, &clock).unwrap();
    let appended = log.append(&mut batch(1, 10, T0), EPOCH).unwrap();
    assert!(!appended.durable);
    assert_eq!(log.durable_offset(), Offset(0));
    clock.advance(99);
    assert_eq!(log.flush_if_due().unwrap(), Offset(0));
    clock.advance(1);
    assert_eq!(log.flush_if_due().unwrap(), Offset(1));
    // The byte threshold flushes without waiting.
    let appended = log.append(&mut batch(3, 600, T0), EPOCH).unwrap();
    assert!(appended.durable);
}
