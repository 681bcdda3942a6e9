//! The conformance suite of the [`Disk`] boundary: one generic [`suite`] that every implementation
//! runs ([`RealDisk`] in a temporary directory, [`SimDisk`] in memory), plus a differential
//! property test that runs random operation sequences on both and compares every result, so the
//! simulator cannot drift from the file system it stands in for.
//!
//! The second half tests what only [`SimDisk`] does: crashes (lost, torn and kept writes, names
//! that were never made durable), stale handles, and injected faults.
//!
//! [`RealDisk`] runs here with its default descriptor cache, large enough that every handle
//! keeps its descriptor. What it does when the cache closes descriptors (a capacity of 2, many
//! files interleaved, removed names) is `tests/descriptor_cache.rs`, a binary of its own because
//! the capacity is process-wide.

// `allow-unwrap-in-tests` covers `#[test]` functions only; the helpers here are test code too.
#![allow(clippy::unwrap_used)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_storage::sim::{self, SimDisk};
use cairn_storage::{Disk, DiskFile, RealDisk};
use proptest::prelude::*;

/// Runs every conformance check against `disk`, each in its own directory under `root`.
fn suite<D: Disk>(disk: D, root: &Path) {
    disk.create_dir_all(root).unwrap();
    read_write(&disk, &dir(&disk, root, "read_write"));
    set_len(&disk, &dir(&disk, root, "set_len"));
    create_open(&disk, &dir(&disk, root, "create_open"));
    open_read_only(&disk, &dir(&disk, root, "open_read_only"));
    list_dir(&disk, &dir(&disk, root, "list_dir"));
    remove(&disk, &dir(&disk, root, "remove"));
    rename(&disk, &dir(&disk, root, "rename"));
    sync_dir(&disk, &dir(&disk, root, "sync_dir"));
}

fn dir<D: Disk>(disk: &D, root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    disk.create_dir_all(&dir).unwrap();
    dir
}

/// The kind of a failed result, or `None` if it succeeded.
fn kind<T>(result: io::Result<T>) -> Option<io::ErrorKind> {
    result.err().map(|error| error.kind())
}

/// The whole content of a file through its handle.
fn content(file: &impl DiskFile) -> Vec<u8> {
    let len = usize::try_from(file.len().unwrap()).unwrap();
    let mut buf = vec![0xaa; len];
    assert_eq!(file.read_at(&mut buf, 0).unwrap(), len);
    buf
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

fn read_write<D: Disk>(disk: &D, dir: &Path) {
    let file = disk.create(&dir.join("f")).unwrap();
    assert_eq!(file.len().unwrap(), 0);
    let mut buf = [0u8; 16];
    assert_eq!(file.read_at(&mut buf, 0).unwrap(), 0, "an empty file reads nothing");

    file.write_all_at(b"hello", 0).unwrap();
    assert_eq!(file.len().unwrap(), 5);
    assert_eq!(file.read_at(&mut buf, 0).unwrap(), 5, "a read stops at the end");
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(file.read_at(&mut buf[..3], 2).unwrap(), 3, "a read fills at most its buffer");
    assert_eq!(&buf[..3], b"llo");
    assert_eq!(file.read_at(&mut buf, 5).unwrap(), 0, "a read at the end reads nothing");
    assert_eq!(file.read_at(&mut buf, 1000).unwrap(), 0, "a read past the end reads nothing");

    file.write_all_at(b"XY", 1).unwrap();
    assert_eq!(content(&*file), b"hXYlo", "a write inside the file overwrites");
    file.write_all_at(b"!", 8).unwrap();
    assert_eq!(content(&*file), b"hXYlo\0\0\0!", "a write past the end leaves a zeroed hole");
    file.write_all_at(b"", 100).unwrap();
    assert_eq!(file.len().unwrap(), 9, "an empty write does not extend the file");
    file.sync_data().unwrap();
    assert_eq!(content(&*file), b"hXYlo\0\0\0!", "a sync does not change the content");
}

fn set_len<D: Disk>(disk: &D, dir: &Path) {
    let file = disk.create(&dir.join("f")).unwrap();
    file.write_all_at(b"hello", 0).unwrap();
    file.set_len(2).unwrap();
    assert_eq!(content(&*file), b"he");
    file.set_len(5).unwrap();
    assert_eq!(content(&*file), b"he\0\0\0", "extending fills with zeros, not old bytes");
    file.set_len(0).unwrap();
    file.sync_data().unwrap();
    assert_eq!(file.len().unwrap(), 0);
}

fn create_open<D: Disk>(disk: &D, dir: &Path) {
    let path = dir.join("f");
    assert_eq!(kind(disk.open(&path)), Some(io::ErrorKind::NotFound));
    assert_eq!(kind(disk.create(&dir.join("missing").join("f"))), Some(io::ErrorKind::NotFound));

    let first = disk.create(&path).unwrap();
    assert_eq!(kind(disk.create(&path)), Some(io::ErrorKind::AlreadyExists));
    first.write_all_at(b"abc", 0).unwrap();
    let second = disk.open(&path).unwrap();
    assert_eq!(content(&*second), b"abc", "open sees unsynced writes of another handle");
    second.write_all_at(b"Z", 3).unwrap();
    assert_eq!(content(&*first), b"abcZ", "handles of one file share its content");

    drop((first, second));
    assert_eq!(content(&*disk.open(&path).unwrap()), b"abcZ", "content outlives the handles");
}

/// Linux's answers to a write (`EBADF`) and a length change (`EINVAL`) through a descriptor
/// opened for reading only.
const BAD_DESCRIPTOR: i32 = 9;
const INVALID_ARGUMENT: i32 = 22;

fn open_read_only<D: Disk>(disk: &D, dir: &Path) {
    let path = dir.join("f");
    assert_eq!(kind(disk.open_read_only(&path)), Some(io::ErrorKind::NotFound));
    let writer = disk.create(&path).unwrap();
    writer.write_all_at(b"abc", 0).unwrap();
    let reader = disk.open_read_only(&path).unwrap();
    assert_eq!(content(&*reader), b"abc", "reads what the file holds");
    let refused = reader.write_all_at(b"Z", 0).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(BAD_DESCRIPTOR), "{refused}");
    let refused = reader.set_len(1).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(INVALID_ARGUMENT), "{refused}");
    assert_eq!(content(&*writer), b"abc", "nothing changed");
    writer.write_all_at(b"d", 3).unwrap();
    assert_eq!(content(&*reader), b"abcd", "and it sees later writes");
}

fn list_dir<D: Disk>(disk: &D, dir: &Path) {
    assert_eq!(disk.list_dir(dir).unwrap(), Vec::<String>::new());
    for name in ["c", "a", "b"] {
        disk.create(&dir.join(name)).unwrap();
    }
    assert_eq!(sorted(disk.list_dir(dir).unwrap()), ["a", "b", "c"]);
    disk.remove_file(&dir.join("b")).unwrap();
    assert_eq!(sorted(disk.list_dir(dir).unwrap()), ["a", "c"]);
    disk.rename(&dir.join("a"), &dir.join("d")).unwrap();
    assert_eq!(sorted(disk.list_dir(dir).unwrap()), ["c", "d"]);
    assert_eq!(kind(disk.list_dir(&dir.join("missing"))), Some(io::ErrorKind::NotFound));
}

fn remove<D: Disk>(disk: &D, dir: &Path) {
    let path = dir.join("f");
    assert_eq!(kind(disk.remove_file(&path)), Some(io::ErrorKind::NotFound));
    let file = disk.create(&path).unwrap();
    file.write_all_at(b"old", 0).unwrap();
    disk.remove_file(&path).unwrap();
    assert_eq!(kind(disk.open(&path)), Some(io::ErrorKind::NotFound));
    assert_eq!(kind(disk.remove_file(&path)), Some(io::ErrorKind::NotFound));

    // unlink semantics: the open handle still reads, writes and syncs the nameless file.
    file.write_all_at(b"er", 3).unwrap();
    file.sync_data().unwrap();
    assert_eq!(content(&*file), b"older");

    let recreated = disk.create(&path).unwrap();
    assert_eq!(recreated.len().unwrap(), 0, "a new file under a removed name starts empty");
    assert_eq!(content(&*file), b"older", "the old handle still sees the old file");
}

fn rename<D: Disk>(disk: &D, dir: &Path) {
    let (a, b) = (dir.join("a"), dir.join("b"));
    assert_eq!(kind(disk.rename(&a, &b)), Some(io::ErrorKind::NotFound));

    let file_a = disk.create(&a).unwrap();
    file_a.write_all_at(b"first", 0).unwrap();
    disk.rename(&a, &b).unwrap();
    assert_eq!(kind(disk.open(&a)), Some(io::ErrorKind::NotFound));
    assert_eq!(content(&*disk.open(&b).unwrap()), b"first");
    file_a.write_all_at(b"!", 5).unwrap();
    assert_eq!(content(&*disk.open(&b).unwrap()), b"first!", "a handle follows its renamed file");

    // The atomic-replace pattern: write a temporary file, then rename it over the target.
    let file_old = disk.open(&b).unwrap();
    let file_new = disk.create(&a).unwrap();
    file_new.write_all_at(b"second", 0).unwrap();
    file_new.sync_data().unwrap();
    disk.rename(&a, &b).unwrap();
    assert_eq!(content(&*disk.open(&b).unwrap()), b"second");
    assert_eq!(content(&*file_old), b"first!", "a handle of the replaced file keeps its content");
    assert_eq!(sorted(disk.list_dir(dir).unwrap()), ["b"]);

    disk.rename(&b, &b).unwrap();
    assert_eq!(content(&*disk.open(&b).unwrap()), b"second", "renaming onto itself does nothing");
    assert_eq!(
        kind(disk.rename(&b, &dir.join("missing").join("b"))),
        Some(io::ErrorKind::NotFound)
    );
    assert!(disk.open(&b).is_ok(), "a failed rename leaves the source in place");
}

fn sync_dir<D: Disk>(disk: &D, dir: &Path) {
    disk.create(&dir.join("f")).unwrap().sync_data().unwrap();
    disk.sync_dir(dir).unwrap();
    disk.sync_dir(dir).unwrap();
    assert_eq!(kind(disk.sync_dir(&dir.join("missing"))), Some(io::ErrorKind::NotFound));
}

#[test]
fn real_disk_conforms() {
    let temp = tempfile::tempdir().unwrap();
    suite(RealDisk, &temp.path().join("root"));
}

/// `RealFile::read_append` reads exactly the range (less at the end of the file) after what the
/// vector holds, whatever its spare capacity.
#[test]
fn real_file_read_append_reads_the_range_only() {
    let temp = tempfile::tempdir().unwrap();
    let file = RealDisk.create(&temp.path().join("data")).unwrap();
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    file.write_all_at(&bytes, 0).unwrap();
    let mut buf = Vec::with_capacity(1 << 20);
    buf.extend_from_slice(b"head");
    assert_eq!(file.read_append(&mut buf, 3000, 100).unwrap(), 3000);
    assert_eq!(file.read_append(&mut buf, 500, 9_800).unwrap(), 200);
    assert_eq!(file.read_append(&mut buf, 10, 20_000).unwrap(), 0);
    assert_eq!(buf, [&b"head"[..], &bytes[100..3100], &bytes[9_800..]].concat());
}

#[test]
fn sim_disk_conforms() {
    suite(SimDisk::new(1), Path::new("/sim/root"));
}

#[test]
fn sim_disk_conforms_with_relative_paths() {
    suite(SimDisk::new(2), Path::new("relative/root"));
}

#[test]
fn sim_disk_conforms_after_crash() {
    let disk = SimDisk::new(3);
    suite(disk.clone(), Path::new("/before"));
    disk.crash();
    suite(disk, Path::new("/after"));
}

/// One step of the differential test. Names and handles are indices into small pools, so that
/// sequences hit existing files, removed names and shared handles often.
#[derive(Clone, Debug)]
enum Op {
    Create(usize),
    Open(usize),
    Remove(usize),
    Rename(usize, usize),
    Write { handle: usize, position: u64, data: Vec<u8> },
    SetLen { handle: usize, len: u64 },
    Read { handle: usize, position: u64, len: usize },
    Len(usize),
    Sync(usize),
    Close(usize),
    SyncDir,
    ListDir,
}

const NAMES: [&str; 3] = ["a", "b", "c"];

fn op() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    let handle = 0..8usize;
    prop_oneof![
        name.clone().prop_map(Op::Create),
        name.clone().prop_map(Op::Open),
        name.clone().prop_map(Op::Remove),
        (name.clone(), name).prop_map(|(from, to)| Op::Rename(from, to)),
        (handle.clone(), 0..48u64, prop::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(handle, position, data)| Op::Write { handle, position, data }),
        (handle.clone(), 0..48u64).prop_map(|(handle, len)| Op::SetLen { handle, len }),
        (handle.clone(), 0..64u64, 0..24usize).prop_map(|(handle, position, len)| Op::Read {
            handle,
            position,
            len
        }),
        handle.clone().prop_map(Op::Len),
        handle.clone().prop_map(Op::Sync),
        handle.prop_map(Op::Close),
        Just(Op::SyncDir),
        Just(Op::ListDir),
    ]
}

/// One implementation under differential test: its disk, its directory, its open handles.
struct Subject<D: Disk> {
    disk: D,
    dir: PathBuf,
    handles: Vec<Arc<D::File>>,
}

/// What an operation observably did: the error kind, or the bytes/number/names it returned.
#[derive(Debug, PartialEq)]
enum Outcome {
    Failed(io::ErrorKind),
    Done,
    Bytes(Vec<u8>),
    Number(u64),
    Names(Vec<String>),
    NoHandle,
}

impl<D: Disk> Subject<D> {
    fn new(disk: D, dir: &Path) -> Self {
        disk.create_dir_all(dir).unwrap();
        Subject { disk, dir: dir.to_path_buf(), handles: Vec::new() }
    }

    fn path(&self, name: usize) -> PathBuf {
        self.dir.join(NAMES[name])
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        let outcome =
            |result: io::Result<Outcome>| result.unwrap_or_else(|e| Outcome::Failed(e.kind()));
        let handle_index =
            |handle: usize| (!self.handles.is_empty()).then(|| handle % self.handles.len());
        let handle = |handle: usize| handle_index(handle).map(|index| &self.handles[index]);
        let done = |result: io::Result<()>| outcome(result.map(|()| Outcome::Done));
        match op {
            Op::Create(name) | Op::Open(name) => {
                let path = self.path(*name);
                let result = if matches!(op, Op::Create(_)) {
                    self.disk.create(&path)
                } else {
                    self.disk.open(&path)
                };
                match result {
                    Ok(file) => {
                        self.handles.push(file);
                        Outcome::Done
                    }
                    Err(error) => Outcome::Failed(error.kind()),
                }
            }
            Op::Remove(name) => done(self.disk.remove_file(&self.path(*name))),
            Op::Rename(from, to) => done(self.disk.rename(&self.path(*from), &self.path(*to))),
            Op::Write { handle: h, position, data } => match handle(*h) {
                Some(file) => done(file.write_all_at(data, *position)),
                None => Outcome::NoHandle,
            },
            Op::SetLen { handle: h, len } => match handle(*h) {
                Some(file) => done(file.set_len(*len)),
                None => Outcome::NoHandle,
            },
            Op::Read { handle: h, position, len } => match handle(*h) {
                Some(file) => {
                    let mut buf = vec![0; *len];
                    outcome(file.read_at(&mut buf, *position).map(|read| {
                        buf.truncate(read);
                        Outcome::Bytes(buf)
                    }))
                }
                None => Outcome::NoHandle,
            },
            Op::Len(h) => match handle(*h) {
                Some(file) => outcome(file.len().map(Outcome::Number)),
                None => Outcome::NoHandle,
            },
            Op::Sync(h) => match handle(*h) {
                Some(file) => done(file.sync_data()),
                None => Outcome::NoHandle,
            },
            Op::Close(h) => match handle_index(*h) {
                Some(index) => {
                    self.handles.swap_remove(index);
                    Outcome::Done
                }
                None => Outcome::NoHandle,
            },
            Op::SyncDir => done(self.disk.sync_dir(&self.dir)),
            Op::ListDir => {
                outcome(self.disk.list_dir(&self.dir).map(|names| Outcome::Names(sorted(names))))
            }
        }
    }

    /// Every file of the directory with its content, read through fresh handles.
    fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let names = sorted(self.disk.list_dir(&self.dir).unwrap());
        names
            .into_iter()
            .map(|name| {
                let file = self.disk.open(&self.dir.join(&name)).unwrap();
                (name, content(&*file))
            })
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Without crashes or faults, `SimDisk` and `RealDisk` agree on every result of every
    /// operation, including the error kinds.
    #[test]
    fn sim_disk_matches_real_disk(ops in prop::collection::vec(op(), 1..60)) {
        let temp = tempfile::tempdir().unwrap();
        let mut real = Subject::new(RealDisk, temp.path());
        let mut sim = Subject::new(SimDisk::new(7), Path::new("/d"));
        for (step, op) in ops.iter().enumerate() {
            let expected = real.apply(op);
            prop_assert_eq!(sim.apply(op), expected, "step {} {:?}", step, op);
        }
        prop_assert_eq!(sim.snapshot(), real.snapshot());
    }
}

mod sim_faults {
    //! What only the simulator does: crashes and injected faults.

    use super::*;

    const DIR: &str = "/data";

    /// A disk with `/data` created, and the path of `/data/<name>`.
    fn setup(seed: u64, name: &str) -> (SimDisk, PathBuf) {
        let disk = SimDisk::new(seed);
        disk.create_dir_all(Path::new(DIR)).unwrap();
        (disk, Path::new(DIR).join(name))
    }

    /// Creates `path` with `bytes`, syncs its data and its directory entry: fully durable.
    fn durable_file(disk: &SimDisk, path: &Path, bytes: &[u8]) -> Arc<sim::SimFile> {
        let file = disk.create(path).unwrap();
        file.write_all_at(bytes, 0).unwrap();
        file.sync_data().unwrap();
        disk.sync_dir(Path::new(DIR)).unwrap();
        file
    }

    #[test]
    fn unsynced_data_is_lost_on_crash() {
        let (disk, path) = setup(1, "f");
        disk.set_tear_on_crash(false);
        let file = durable_file(&disk, &path, b"");
        file.write_all_at(b"unsynced", 0).unwrap();
        disk.crash();
        assert_eq!(disk.read_file(&path).unwrap(), b"");
    }

    #[test]
    fn synced_data_is_kept_and_unsynced_changes_revert() {
        let (disk, path) = setup(1, "f");
        let file = durable_file(&disk, &path, b"abcdef");
        // Neither an overwrite nor a truncation is a pure append, so no tear keeps any of it.
        file.write_all_at(b"XY", 1).unwrap();
        file.set_len(4).unwrap();
        disk.crash();
        assert_eq!(disk.read_file(&path).unwrap(), b"abcdef");
        assert_eq!(disk.file_len(&path).unwrap(), 6);
    }

    #[test]
    fn unsynced_truncation_then_regrowth_reverts() {
        let (disk, path) = setup(1, "f");
        let file = durable_file(&disk, &path, b"abc");
        file.set_len(1).unwrap();
        file.write_all_at(b"bcde", 1).unwrap();
        // Identical bytes rewritten: the content is an append of "de" again, and may tear.
        disk.crash();
        let content = disk.read_file(&path).unwrap();
        assert!(content.starts_with(b"abc") && b"abcde".starts_with(&content), "{content:?}");
    }

    #[test]
    fn tear_keeps_a_prefix_of_the_unsynced_append() {
        let appended = b"0123456789";
        let mut kept_lens = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let (disk, path) = setup(seed, "f");
            let file = durable_file(&disk, &path, b"head");
            file.write_all_at(appended, 4).unwrap();
            disk.crash();
            let content = disk.read_file(&path).unwrap();
            let (head, tail) = content.split_at(4);
            assert_eq!(head, b"head", "seed {seed}: synced bytes always survive");
            assert!(appended.starts_with(tail), "seed {seed}: {tail:?} is not a prefix");
            kept_lens.insert(tail.len());
        }
        assert!(kept_lens.len() > 3, "tears should vary with the seed: {kept_lens:?}");
    }

    #[test]
    fn undurable_names_vanish_and_removals_revert() {
        let (disk, path) = setup(1, "new");
        let kept = Path::new(DIR).join("kept");
        durable_file(&disk, &kept, b"kept");
        let file = disk.create(&path).unwrap();
        file.write_all_at(b"synced data, unsynced name", 0).unwrap();
        file.sync_data().unwrap();
        disk.remove_file(&kept).unwrap();
        disk.crash();
        assert_eq!(kind(disk.open(&path)), Some(io::ErrorKind::NotFound));
        assert_eq!(disk.list_dir(Path::new(DIR)).unwrap(), ["kept"]);
        assert_eq!(disk.read_file(&kept).unwrap(), b"kept", "an unsynced remove comes back");
    }

    #[test]
    fn rename_is_durable_only_after_sync_dir() {
        let (disk, target) = setup(1, "target");
        let temp = Path::new(DIR).join("temp");
        durable_file(&disk, &target, b"old");
        durable_file(&disk, &temp, b"new");
        disk.rename(&temp, &target).unwrap();
        disk.crash();
        assert_eq!(disk.read_file(&target).unwrap(), b"old");
        assert_eq!(disk.read_file(&temp).unwrap(), b"new");

        disk.rename(&temp, &target).unwrap();
        disk.sync_dir(Path::new(DIR)).unwrap();
        disk.crash();
        assert_eq!(disk.read_file(&target).unwrap(), b"new");
        assert_eq!(disk.list_dir(Path::new(DIR)).unwrap(), ["target"]);
    }

    #[test]
    fn handles_opened_before_a_crash_are_stale() {
        let (disk, path) = setup(1, "f");
        let file = durable_file(&disk, &path, b"abc");
        disk.crash();
        let stale = |result: io::Result<()>| {
            let error = result.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::Other);
            assert_eq!(error.to_string(), "stale handle after crash");
        };
        stale(file.read_at(&mut [0; 4], 0).map(drop));
        stale(file.write_all_at(b"x", 0));
        stale(file.len().map(drop));
        stale(file.set_len(0));
        stale(file.sync_data());

        let reopened = disk.open(&path).unwrap();
        assert_eq!(content(&*reopened), b"abc");
        drop(file);
        assert_eq!(content(&*reopened), b"abc", "dropping a stale handle changes nothing");
    }

    #[test]
    fn flip_bit_corrupts_current_and_durable_content() {
        let (disk, path) = setup(1, "f");
        let file = durable_file(&disk, &path, b"abc");
        disk.flip_bit(&path, 8).unwrap();
        assert_eq!(disk.read_file(&path).unwrap(), b"acc");
        assert_eq!(content(&*file), b"acc", "open handles see the corruption");
        disk.crash();
        assert_eq!(disk.read_file(&path).unwrap(), b"acc", "a crash does not repair the medium");
        assert_eq!(kind(disk.flip_bit(&path, 24)), Some(io::ErrorKind::InvalidInput));
        assert_eq!(
            kind(disk.flip_bit(&Path::new(DIR).join("missing"), 0)),
            Some(io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn failed_sync_makes_nothing_durable() {
        let (disk, path) = setup(1, "f");
        disk.set_tear_on_crash(false);
        let file = durable_file(&disk, &path, b"");
        assert_eq!(disk.sync_count(), 1);
        file.write_all_at(b"data", 0).unwrap();
        disk.fail_next_sync(sim::EIO);
        assert_eq!(file.sync_data().unwrap_err().raw_os_error(), Some(sim::EIO));
        assert_eq!(disk.sync_count(), 1, "a failed sync is not counted");
        disk.crash();
        assert_eq!(disk.read_file(&path).unwrap(), b"");

        let file = disk.open(&path).unwrap();
        file.write_all_at(b"data", 0).unwrap();
        file.sync_data().unwrap();
        assert_eq!(disk.sync_count(), 2, "the fault fires once");
        disk.crash();
        assert_eq!(disk.read_file(&path).unwrap(), b"data");
    }

    #[test]
    fn failed_write_stores_a_strict_prefix() {
        let buf: Vec<u8> = (0..100).collect();
        let mut stored_lens = std::collections::BTreeSet::new();
        for seed in 0..16 {
            let (disk, path) = setup(seed, "f");
            let file = disk.create(&path).unwrap();
            disk.fail_next_write(sim::EIO);
            let error = file.write_all_at(&buf, 0).unwrap_err();
            assert_eq!(error.raw_os_error(), Some(sim::EIO));
            let stored = disk.read_file(&path).unwrap();
            assert!(stored.len() < buf.len() && buf.starts_with(&stored), "seed {seed}");
            assert_eq!(disk.bytes_written(), stored.len() as u64);
            stored_lens.insert(stored.len());

            file.write_all_at(&buf, 0).unwrap();
            assert_eq!(disk.read_file(&path).unwrap(), buf, "the fault fires once");
            assert_eq!(disk.bytes_written(), (stored.len() + buf.len()) as u64);
        }
        assert!(stored_lens.len() > 3, "partial writes should vary with the seed");
    }

    #[test]
    fn full_disk_stores_what_fits_then_fails_with_enospc() {
        let (disk, path) = setup(1, "f");
        disk.set_capacity_bytes(Some(10));
        let file = disk.create(&path).unwrap();
        file.write_all_at(b"012345", 0).unwrap();
        let error = file.write_all_at(b"6789ab", 6).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(sim::ENOSPC));
        assert_eq!(disk.read_file(&path).unwrap(), b"0123456789");
        file.write_all_at(b"AB", 0).unwrap();
        assert_eq!(file.set_len(20).unwrap_err().raw_os_error(), Some(sim::ENOSPC));
        assert_eq!(disk.used_bytes(), 10);

        let other_path = Path::new(DIR).join("g");
        let other = disk.create(&other_path).unwrap();
        assert_eq!(other.write_all_at(b"x", 0).unwrap_err().raw_os_error(), Some(sim::ENOSPC));
        assert_eq!(other.len().unwrap(), 0);

        // A removed file keeps its space while a handle is open (unlink semantics).
        disk.remove_file(&path).unwrap();
        assert_eq!(disk.used_bytes(), 10);
        drop(file);
        assert_eq!(disk.used_bytes(), 0);
        other.write_all_at(b"0123456789", 0).unwrap();
        disk.set_capacity_bytes(None);
        other.write_all_at(b"more", 10).unwrap();
    }

    #[test]
    fn removed_file_comes_back_after_its_handles_are_dropped() {
        let (disk, path) = setup(1, "f");
        drop(durable_file(&disk, &path, b"abc"));
        disk.remove_file(&path).unwrap();
        assert_eq!(disk.used_bytes(), 0);
        disk.crash();
        assert_eq!(disk.read_file(&path).unwrap(), b"abc");
    }

    #[test]
    fn file_bigger_than_the_limit_fails_with_efbig() {
        let (disk, path) = setup(1, "f");
        let file = disk.create(&path).unwrap();
        assert_eq!(
            file.write_all_at(b"x", sim::FILE_BYTES_MAX).unwrap_err().raw_os_error(),
            Some(sim::EFBIG)
        );
        assert_eq!(
            file.set_len(sim::FILE_BYTES_MAX + 1).unwrap_err().raw_os_error(),
            Some(sim::EFBIG)
        );
        assert_eq!(file.len().unwrap(), 0);
    }

    /// A workload that draws on every random choice: partial writes, a full disk, torn appends
    /// over several crashes. Returns everything observable at the end.
    fn workload(seed: u64) -> (Vec<(String, Vec<u8>)>, u64, u64) {
        let disk = SimDisk::new(seed);
        let dir = Path::new(DIR);
        disk.create_dir_all(dir).unwrap();
        for round in 0..4u8 {
            let path = dir.join(format!("segment-{}", round % 2));
            let file = disk.open(&path).or_else(|_| disk.create(&path)).unwrap();
            disk.sync_dir(dir).unwrap();
            let block = [round; 64];
            for step in 0..4u64 {
                if step == 2 {
                    disk.fail_next_write(sim::EIO);
                }
                let end = file.len().unwrap();
                let _ = file.write_all_at(&block, end);
                if step % 2 == 1 {
                    file.sync_data().unwrap();
                }
            }
            file.write_all_at(&block, file.len().unwrap()).unwrap();
            disk.crash();
        }
        let mut names = disk.list_dir(dir).unwrap();
        names.sort();
        let files = names
            .into_iter()
            .map(|name| {
                let content = disk.read_file(&dir.join(&name)).unwrap();
                (name, content)
            })
            .collect();
        (files, disk.sync_count(), disk.bytes_written())
    }

    #[test]
    fn same_seed_and_operations_give_the_same_result() {
        assert_eq!(workload(42), workload(42));
        let distinct: std::collections::BTreeSet<_> = (0..8).map(workload).collect();
        assert!(distinct.len() > 1, "the seed should matter");
    }
}
