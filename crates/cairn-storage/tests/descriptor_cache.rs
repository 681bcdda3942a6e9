//! The descriptor cache behind [`RealFile`] at a tiny capacity: many files written, read and
//! synced interleaved keep their exact contents while the process's open descriptors stay
//! bounded, and a removed name is never reopened.
//!
//! Its own test binary (so its own process under `cargo test` too): the capacity is
//! process-wide, and a capacity of 2 would change what the conformance suite's other tests may
//! expect of handles whose files are removed or renamed.

// `allow-unwrap-in-tests` covers `#[test]` functions only; the helpers here are test code too.
#![allow(clippy::unwrap_used)]

use std::io;
use std::sync::Arc;

use cairn_storage::descriptors;
use cairn_storage::{Disk, DiskFile, RealDisk, RealFile};
use cairn_types::limits::{DESCRIPTORS_CACHED_MAX, DESCRIPTORS_CACHED_MIN};

/// The cache capacity of most tests here.
const CAPACITY: usize = 2;

/// Held by every test: they count the whole process's descriptors and set its cache capacity,
/// so under `cargo test` (threads in one process) they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Descriptors the process has open now (the listing's own descriptor included, as in every
/// count, so differences are exact).
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A deterministic byte for file `file`, step `step`.
fn byte(file: usize, step: usize) -> u8 {
    (file * 31 + step * 7) as u8
}

fn content(file: &RealFile) -> Vec<u8> {
    let mut buf = vec![0; usize::try_from(file.len().unwrap()).unwrap()];
    assert_eq!(file.read_at(&mut buf, 0).unwrap(), buf.len());
    buf
}

/// Writes, reads and syncs 40 files interleaved, half of them left unsynced for long stretches,
/// against an in-memory model; the process never holds more than the capacity (plus the one a
/// reopen takes before the sweep runs again) open at once, and every read is exact.
#[test]
fn many_files_interleaved_stay_exact_under_a_tiny_cache() {
    let _serial = serial();
    descriptors::set_capacity(CAPACITY);
    let temp = tempfile::tempdir().unwrap();
    let baseline = open_descriptors();
    let mut most = 0;
    let files: Vec<Arc<RealFile>> =
        (0..40).map(|i| RealDisk.create(&temp.path().join(format!("f{i}"))).unwrap()).collect();
    let mut model: Vec<Vec<u8>> = vec![Vec::new(); files.len()];
    for step in 0..30 {
        for (i, file) in files.iter().enumerate() {
            let chunk = vec![byte(i, step); 100 + i];
            file.write_all_at(&chunk, model[i].len() as u64).unwrap();
            model[i].extend_from_slice(&chunk);
            if (i + step) % 3 == 0 {
                file.sync_data().unwrap();
            }
            let other = (i * 7 + step) % files.len();
            assert_eq!(content(&files[other]), model[other], "file {other} at step {step}");
            most = most.max(open_descriptors() - baseline);
        }
    }
    for (file, expected) in files.iter().zip(&model) {
        file.sync_data().unwrap();
        assert_eq!(&content(file), expected);
    }
    assert!(most <= CAPACITY + 1, "{most} descriptors open for a cache of {CAPACITY}");
    drop(files);
    for (i, expected) in model.iter().enumerate() {
        let reopened = RealDisk.open(&temp.path().join(format!("f{i}"))).unwrap();
        assert_eq!(&content(&reopened), expected, "file {i} through a new handle");
    }
}

/// Closes `file`'s descriptor by using `others` (the cache holds [`CAPACITY`]).
fn evict(others: &[Arc<RealFile>]) {
    for _ in 0..2 {
        for other in others {
            other.len().unwrap();
        }
    }
}

/// A segment deleted while a reader holds its handle, with the descriptor already closed: the
/// read fails with `NotFound` instead of reading the new file that now has the name.
#[test]
fn a_removed_name_is_never_reopened() {
    let _serial = serial();
    descriptors::set_capacity(CAPACITY);
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("segment");
    let old = RealDisk.create(&path).unwrap();
    old.write_all_at(b"old bytes", 0).unwrap();
    old.sync_data().unwrap();
    let others: Vec<_> =
        (0..3).map(|i| RealDisk.create(&temp.path().join(format!("o{i}"))).unwrap()).collect();
    evict(&others);
    RealDisk.remove_file(&path).unwrap();
    let new = RealDisk.create(&path).unwrap();
    new.write_all_at(b"new bytes", 0).unwrap();
    evict(&others);

    let mut buf = [0; 9];
    assert_eq!(old.read_at(&mut buf, 0).unwrap_err().kind(), io::ErrorKind::NotFound);
    assert_eq!(old.lease().unwrap_err().kind(), io::ErrorKind::NotFound);
    assert!(old.sync_data().is_ok(), "nothing of the old file is unsynced");
    assert_eq!(content(&new), b"new bytes");
}

/// A read-only handle whose descriptor the cache closed is reopened read-only: offline tools
/// never get a writable descriptor, so they work on a read-only file system.
#[test]
fn a_read_only_file_is_reopened_read_only() {
    let _serial = serial();
    descriptors::set_capacity(CAPACITY);
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("segment");
    let writer = RealDisk.create(&path).unwrap();
    writer.write_all_at(b"bytes", 0).unwrap();
    writer.sync_data().unwrap();
    drop(writer);
    let reader = RealDisk.open_read_only(&path).unwrap();
    let others: Vec<_> =
        (0..3).map(|i| RealDisk.create(&temp.path().join(format!("o{i}"))).unwrap()).collect();
    evict(&others);
    assert_eq!(content(&reader), b"bytes", "reopened to read");
    let refused = reader.write_all_at(b"B", 0).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(9), "EBADF: reopened read-only: {refused}");
}

/// A file removed (or renamed) while its descriptor is open keeps it: the handle reads the
/// old bytes however many other files are used meanwhile, as readers of a segment deleted by
/// retention did before the cache existed.
#[test]
fn a_file_removed_while_open_stays_readable() {
    let _serial = serial();
    descriptors::set_capacity(CAPACITY);
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("segment");
    let file = RealDisk.create(&path).unwrap();
    file.write_all_at(b"kept", 0).unwrap();
    let renamed = RealDisk.create(&temp.path().join("a")).unwrap();
    renamed.write_all_at(b"moved", 0).unwrap();
    RealDisk.remove_file(&path).unwrap();
    RealDisk.rename(&temp.path().join("a"), &temp.path().join("b")).unwrap();
    let others: Vec<_> =
        (0..4).map(|i| RealDisk.create(&temp.path().join(format!("o{i}"))).unwrap()).collect();
    evict(&others);
    assert_eq!(content(&file), b"kept");
    file.sync_data().unwrap();
    assert_eq!(content(&renamed), b"moved");
}

/// A leased descriptor is not closed by the cache and keeps reading its file, even after the
/// name is removed and many other files are used.
#[test]
fn a_leased_descriptor_stays_valid() {
    use std::os::unix::fs::FileExt;
    let _serial = serial();
    descriptors::set_capacity(CAPACITY);
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("segment");
    let file = RealDisk.create(&path).unwrap();
    file.write_all_at(b"leased", 0).unwrap();
    let lease = file.lease().unwrap();
    let others: Vec<_> =
        (0..4).map(|i| RealDisk.create(&temp.path().join(format!("o{i}"))).unwrap()).collect();
    evict(&others);
    RealDisk.remove_file(&path).unwrap();
    evict(&others);
    let mut buf = [0; 6];
    lease.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"leased");
    assert_eq!(content(&file), b"leased", "the handle still had its descriptor at the removal");
}

/// Unsynced writes are synced, not lost, when the cache closes their descriptor: every file
/// is dirty here, yet descriptors stay bounded and every byte is there through new handles.
#[test]
fn dirty_descriptors_are_synced_before_they_close() {
    let _serial = serial();
    descriptors::set_capacity(CAPACITY);
    let temp = tempfile::tempdir().unwrap();
    let baseline = open_descriptors();
    let files: Vec<_> =
        (0..10).map(|i| RealDisk.create(&temp.path().join(format!("f{i}"))).unwrap()).collect();
    for (i, file) in files.iter().enumerate() {
        file.write_all_at(&[byte(i, 0); 64], 0).unwrap();
    }
    let open = open_descriptors() - baseline;
    assert!(open <= CAPACITY + 1, "{open} descriptors open for a cache of {CAPACITY}");
    for (i, file) in files.iter().enumerate() {
        file.sync_data().unwrap();
        let reopened = RealDisk.open(&temp.path().join(format!("f{i}"))).unwrap();
        assert_eq!(content(&reopened), [byte(i, 0); 64]);
    }
}

#[test]
fn capacity_for_limit_is_half_the_limit_within_bounds() {
    assert_eq!(descriptors::capacity_for_limit(1024), 512);
    assert_eq!(descriptors::capacity_for_limit(10), DESCRIPTORS_CACHED_MIN);
    assert_eq!(descriptors::capacity_for_limit(u64::MAX), DESCRIPTORS_CACHED_MAX);
}

/// Many partition logs (three files each) through a cache far smaller than their files: appends,
/// copying reads, a clean close and a reopen keep every batch, with descriptors bounded.
#[test]
fn many_logs_share_a_small_cache() {
    use cairn_storage::{Log, LogConfig, SystemClock};
    use cairn_types::batch::BatchBuilder;
    use cairn_types::{LeaderEpoch, Offset};

    const LOGS: usize = 60;
    let _serial = serial();
    descriptors::set_capacity(8);
    let temp = tempfile::tempdir().unwrap();
    let baseline = open_descriptors();
    let open = |i: usize| {
        let dir = temp.path().join(format!("p{i}"));
        Log::open(RealDisk, dir, LogConfig::default(), Arc::new(SystemClock)).unwrap()
    };
    let mut logs: Vec<_> = (0..LOGS).map(open).collect();
    let batch = |i: usize, round: usize| {
        BatchBuilder::new(0).record(None, Some(&[byte(i, round); 50]), &[]).build()
    };
    for round in 0..3 {
        for (i, log) in logs.iter_mut().enumerate() {
            log.append(&mut batch(i, round), LeaderEpoch(1)).unwrap();
        }
    }
    let check = |logs: &[Log<RealDisk>]| {
        for (i, log) in logs.iter().enumerate() {
            let mut bytes = Vec::new();
            log.read(Offset(0), 1 << 20, log.next_offset(), &mut bytes).unwrap();
            let mut expected = Vec::new();
            for round in 0..3 {
                let mut one = batch(i, round);
                cairn_types::batch::set_base_offset(&mut one, Offset(round as u64));
                cairn_types::batch::set_partition_leader_epoch(&mut one, LeaderEpoch(1));
                expected.extend_from_slice(&one);
            }
            assert_eq!(bytes, expected, "log {i}");
        }
    };
    check(&logs);
    let most = open_descriptors() - baseline;
    assert!(most <= 8 + 1, "{most} descriptors open for a cache of 8 and {LOGS} logs");
    for log in logs.drain(..) {
        log.close().unwrap();
    }
    let logs: Vec<_> = (0..LOGS).map(open).collect();
    check(&logs);
}

/// Threads writing, reading, syncing and replacing their own files through a cache of 3 at
/// once: no deadlock (the test ends), every read exact, descriptors bounded by the cache plus
/// one per thread.
#[test]
fn threads_share_a_tiny_cache() {
    const THREADS: usize = 4;
    let _serial = serial();
    descriptors::set_capacity(3);
    let temp = tempfile::tempdir().unwrap();
    let baseline = open_descriptors();
    let most = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let dir = temp.path().join(format!("t{t}"));
                scope.spawn(move || worker(t, &dir, baseline))
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).max().unwrap()
    });
    assert!(most <= 3 + THREADS + 1, "{most} descriptors open for a cache of 3");
}

/// One thread's files: appended, read back, synced, and one removed and created again.
fn worker(t: usize, dir: &std::path::Path, baseline: usize) -> usize {
    std::fs::create_dir_all(dir).unwrap();
    let path = |i: usize| dir.join(format!("f{i}"));
    let mut files: Vec<_> = (0..6).map(|i| RealDisk.create(&path(i)).unwrap()).collect();
    let mut model = vec![Vec::new(); files.len()];
    let mut most = 0;
    for step in 0..40 {
        for i in 0..files.len() {
            let chunk = [byte(t * 10 + i, step); 33];
            files[i].write_all_at(&chunk, model[i].len() as u64).unwrap();
            model[i].extend_from_slice(&chunk);
            if (i + step) % 4 == 0 {
                files[i].sync_data().unwrap();
            }
            let other = (i + step) % files.len();
            assert_eq!(content(&files[other]), model[other], "thread {t} file {other}");
        }
        let gone = step % files.len();
        RealDisk.remove_file(&path(gone)).unwrap();
        files[gone] = RealDisk.create(&path(gone)).unwrap();
        model[gone].clear();
        most = most.max(open_descriptors().saturating_sub(baseline));
    }
    most
}
