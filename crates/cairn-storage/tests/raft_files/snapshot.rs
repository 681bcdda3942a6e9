//! [`read_snapshot`] / [`write_snapshot`] on both disks: replacing, the size cap on both sides,
//! every single-bit flip, cut files, leftover temporary files; and on [`SimDisk`], a crash at
//! every step of a write and a full disk.

use std::path::Path;

use cairn_storage::sim::SimDisk;
use cairn_storage::{Disk, DiskFile, Error, RealDisk, read_snapshot, write_snapshot};
use cairn_types::limits::SNAPSHOT_BYTES_MAX;

use crate::crash::{CrashDisk, crash_points};
use crate::support::both_disks;

const FILE: &str = "raft-snapshot";
/// Magic, version, length and CRC around the snapshot bytes.
const FRAME_BYTES: usize = 16;

fn setup<D: Disk>(disk: &D, dir: &Path) {
    disk.create_dir_all(dir).unwrap();
}

fn is_corruption(result: Result<Option<Vec<u8>>, Error>) -> bool {
    matches!(result, Err(Error::Corruption { .. }))
}

fn writes_replace_and_read_back<D: Disk>(disk: &D, dir: &Path) {
    setup(disk, dir);
    assert_eq!(read_snapshot(disk, dir).unwrap(), None);
    write_snapshot(disk, dir, b"last log id (3, 17), voters {1, 2, 3}").unwrap();
    assert_eq!(
        read_snapshot(disk, dir).unwrap().unwrap(),
        b"last log id (3, 17), voters {1, 2, 3}"
    );
    write_snapshot(disk, dir, b"").unwrap();
    assert_eq!(read_snapshot(disk, dir).unwrap(), Some(Vec::new()));
    let largest = vec![0xa5; SNAPSHOT_BYTES_MAX];
    write_snapshot(disk, dir, &largest).unwrap();
    assert_eq!(read_snapshot(disk, dir).unwrap(), Some(largest.clone()));
    let error = write_snapshot(disk, dir, &vec![0; SNAPSHOT_BYTES_MAX + 1]).unwrap_err();
    assert!(matches!(error, Error::SnapshotSize { bytes, limit }
        if bytes == SNAPSHOT_BYTES_MAX + 1 && limit == SNAPSHOT_BYTES_MAX));
    assert_eq!(read_snapshot(disk, dir).unwrap(), Some(largest), "a refused write changes nothing");
    assert_eq!(disk.list_dir(dir).unwrap(), vec![FILE.to_owned()]);
}

fn every_bit_flip_is_corruption<D: Disk>(disk: &D, dir: &Path) {
    setup(disk, dir);
    write_snapshot(disk, dir, b"membership {1, 2, 3}, log start 4096").unwrap();
    let file = disk.open(&dir.join(FILE)).unwrap();
    let len = file.len().unwrap();
    for bit in 0..len * 8 {
        let mut byte = [0u8];
        file.read_at(&mut byte, bit / 8).unwrap();
        file.write_all_at(&[byte[0] ^ (1 << (bit % 8))], bit / 8).unwrap();
        assert!(is_corruption(read_snapshot(disk, dir)), "bit {bit}");
        file.write_all_at(&byte, bit / 8).unwrap();
    }
    assert_eq!(read_snapshot(disk, dir).unwrap().unwrap(), b"membership {1, 2, 3}, log start 4096");
}

fn a_cut_or_grown_file_is_corruption<D: Disk>(disk: &D, dir: &Path) {
    setup(disk, dir);
    write_snapshot(disk, dir, b"0123456789").unwrap();
    let file = disk.open(&dir.join(FILE)).unwrap();
    for len in [0, 1, 15, 25, 27, (SNAPSHOT_BYTES_MAX + FRAME_BYTES + 1) as u64] {
        file.set_len(len).unwrap();
        assert!(is_corruption(read_snapshot(disk, dir)), "length {len}");
    }
}

fn a_leftover_temp_file_is_ignored_and_replaced<D: Disk>(disk: &D, dir: &Path) {
    setup(disk, dir);
    write_snapshot(disk, dir, b"old").unwrap();
    let temp = disk.create(&dir.join("raft-snapshot.tmp")).unwrap();
    temp.write_all_at(b"a half-written snapshot", 0).unwrap();
    assert_eq!(read_snapshot(disk, dir).unwrap().unwrap(), b"old");
    write_snapshot(disk, dir, b"new").unwrap();
    assert_eq!(read_snapshot(disk, dir).unwrap().unwrap(), b"new");
    assert_eq!(disk.list_dir(dir).unwrap(), vec![FILE.to_owned()]);
}

both_disks!(seed = 13;
    writes_replace_and_read_back,
    every_bit_flip_is_corruption,
    a_cut_or_grown_file_is_corruption,
    a_leftover_temp_file_is_ignored_and_replaced,
);

#[test]
fn a_huge_file_is_refused_before_allocating() {
    let temp = tempfile::tempdir().unwrap();
    let disk = RealDisk;
    write_snapshot(&disk, temp.path(), b"small").unwrap();
    // Sparse: 64 GiB claimed, nothing stored. Reading it whole would exhaust the memory.
    disk.open(&temp.path().join(FILE)).unwrap().set_len(1 << 36).unwrap();
    let error = read_snapshot(&disk, temp.path()).unwrap_err();
    assert!(
        matches!(&error, Error::Corruption { reason, .. } if reason.contains("above")),
        "{error}"
    );
}

#[test]
fn a_crash_during_a_write_leaves_the_old_or_the_new_snapshot() {
    for old in [None, Some(b"old".to_vec())] {
        let mut points = crash_points(16).enumerate();
        loop {
            let (seed, point) = points.next().expect("a write takes fewer than 16 steps");
            let sim = SimDisk::new(seed as u64);
            setup(&sim, Path::new("/group"));
            if let Some(old) = &old {
                write_snapshot(&sim, Path::new("/group"), old).unwrap();
            }
            let disk = CrashDisk::new(&sim, point);
            let result = write_snapshot(&disk, Path::new("/group"), b"new");
            let found = read_snapshot(&sim, Path::new("/group")).unwrap();
            if !disk.crashed() {
                result.unwrap();
                sim.crash();
                let found = read_snapshot(&sim, Path::new("/group")).unwrap();
                assert_eq!(found.as_deref(), Some(&b"new"[..]), "written, then lost");
                break;
            }
            assert!(found == old || found.as_deref() == Some(b"new"), "{point:?}: {found:?}");
            if result.is_ok() {
                assert_eq!(found.as_deref(), Some(&b"new"[..]), "{point:?}: written, then lost");
            }
        }
    }
}

#[test]
fn a_full_disk_keeps_the_old_snapshot() {
    let sim = SimDisk::new(17);
    let dir = Path::new("/group");
    setup(&sim, dir);
    write_snapshot(&sim, dir, b"old").unwrap();
    sim.set_capacity_bytes(Some(sim.used_bytes() + 100));
    let error = write_snapshot(&sim, dir, &[7; 1000]).unwrap_err();
    assert!(matches!(error, Error::NoSpace { .. }), "{error}");
    assert!(error.is_retriable());
    sim.crash();
    assert_eq!(read_snapshot(&sim, dir).unwrap().unwrap(), b"old");
    sim.set_capacity_bytes(None);
    write_snapshot(&sim, dir, &[7; 1000]).unwrap();
    sim.crash();
    assert_eq!(read_snapshot(&sim, dir).unwrap(), Some(vec![7; 1000]));
}
