//! [`SimDisk`]: a seeded, deterministic, in-memory [`Disk`] that models POSIX durability strictly
//! and injects faults, so that the log's crash recovery is tested without pulling a power cord.
//!
//! # Model
//!
//! A file is an *inode* with two contents: `current`, what reads see, and `durable`, the content
//! as of the last successful [`DiskFile::sync_data`]. Writes and `set_len` change only `current`;
//! `sync_data` copies `current` (bytes and length) to `durable`.
//!
//! A directory has two name maps: `current`, changed by create, remove and rename, and `durable`,
//! which catches up with `current` only on [`Disk::sync_dir`] of that directory. So a file whose
//! data was synced but whose name was not is lost on a crash, and a removed or renamed-over name
//! comes back. Removing a name leaves open handles usable, as `unlink` does. Directories
//! themselves are always durable and are never removed: the model checks the durability of files
//! and names, not of `mkdir`.
//!
//! [`SimDisk::crash`] is a power loss: the namespace becomes the durable namespace, every file
//! reachable from it becomes its durable content, and every handle opened before becomes stale.
//! If a file was only appended to since its last sync, a seeded-random prefix of the unsynced
//! bytes survives (a torn append, [`SimDisk::set_tear_on_crash`]); otherwise unsynced changes
//! vanish entirely.
//!
//! # Faults
//!
//! - [`SimDisk::crash`]: power loss, torn appends, stale handles.
//! - [`SimDisk::flip_bit`]: latent corruption of the medium, visible before and after a crash.
//! - [`SimDisk::fail_next_sync`]: the next `sync_data` fails and makes nothing durable.
//! - [`SimDisk::fail_next_write`]: the next write stores a strict prefix of its buffer, then fails.
//! - [`SimDisk::set_capacity_bytes`]: a full disk; writes store what fits, then fail with
//!   [`ENOSPC`].
//!
//! # Determinism
//!
//! Every random choice draws from one splitmix64 stream seeded by [`SimDisk::new`], and every map
//! is ordered, so the same seed and the same sequence of calls give the same bytes, the same
//! errors and the same [`Disk::list_dir`] order (sorted). Calls from several threads are
//! serialized by one mutex; the result is then deterministic for a given interleaving only.
//!
//! # Space
//!
//! An inode occupies its `current` length while it has a name in the current namespace or an open
//! handle of the current generation; [`SimDisk::set_capacity_bytes`] bounds the sum. An inode that
//! only the durable namespace still names (removed, directory not yet synced) occupies nothing
//! but is kept so that a crash can bring it back. Paths are compared component-wise, as
//! [`Path`] does; `..` is not resolved.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::disk::{Disk, DiskFile};

/// `EIO`, the errno of a failed device operation; for [`SimDisk::fail_next_sync`] and
/// [`SimDisk::fail_next_write`]. Errors built from it are `io::Error::from_raw_os_error(EIO)`.
pub const EIO: i32 = 5;

/// `ENOSPC`, the errno of a full device; what writes past [`SimDisk::set_capacity_bytes`] fail
/// with.
pub const ENOSPC: i32 = 28;

/// `EFBIG`, the errno of a write or `set_len` past [`FILE_BYTES_MAX`].
pub const EFBIG: i32 = 27;

/// Largest simulated file in bytes. Files live in memory, so a bogus position (a corrupted offset)
/// must fail with [`EFBIG`] rather than become a multi-gigabyte allocation. Above
/// `cairn_types::limits::SEGMENT_BYTES_MAX`, so every legal segment fits.
pub const FILE_BYTES_MAX: u64 = 1 << 32;

/// A seeded, deterministic, in-memory file system with strict POSIX durability and fault
/// injection. Cloning gives another handle to the same file system (shared state), so a test
/// keeps one clone to inject faults and crash while the log under test owns another.
#[derive(Clone)]
pub struct SimDisk {
    /// The whole file system; one lock serializes every operation, which is what makes a
    /// single-threaded run deterministic.
    state: Arc<Mutex<State>>,
}

/// An open file of a [`SimDisk`]. Becomes stale on [`SimDisk::crash`]: every method then fails.
pub struct SimFile {
    /// The file system this handle belongs to.
    state: Arc<Mutex<State>>,
    /// The inode this handle reads and writes; stays valid after the name is removed.
    inode: InodeId,
    /// The crash generation the handle was opened in; a mismatch means the handle is stale.
    generation: u64,
    /// Opened for writing (else writes and length changes fail as on a read-only descriptor).
    writable: bool,
}

/// Inodes are numbered in creation order and never reused, so a stale id never aliases a new file.
type InodeId = u64;

/// One file's contents and reference counts.
struct Inode {
    /// What reads see; changed by writes and `set_len`.
    current: Vec<u8>,
    /// The content as of the last successful `sync_data`; what a crash falls back to.
    durable: Vec<u8>,
    /// Invariant: `current[..dirty_from] == durable[..dirty_from]`, and both are at least this
    /// long. Lets `sync_data` copy only the changed tail instead of the whole file.
    dirty_from: usize,
    /// How many names of the current namespace point here.
    name_count: u64,
    /// How many handles of the current generation are open; they keep the inode alive after its
    /// last name is removed.
    handle_count: u64,
}

/// One directory's entries, by file name.
#[derive(Default)]
struct Dir {
    /// What create, remove, rename, open and `list_dir` see.
    current: BTreeMap<String, InodeId>,
    /// What survives a crash; a copy of `current` as of the last `sync_dir`.
    durable: BTreeMap<String, InodeId>,
}

/// Everything behind the [`SimDisk`] mutex.
struct State {
    /// The one source of randomness (torn appends, partial writes).
    rng: SplitMix64,
    /// Incremented by every crash; handles of older generations are stale.
    generation: u64,
    /// The id the next created inode gets.
    inode_next: InodeId,
    /// Every inode that is live or named by some durable directory entry.
    inodes: BTreeMap<InodeId, Inode>,
    /// Every directory, by path; directories are always durable.
    dirs: BTreeMap<PathBuf, Dir>,
    /// Whether a crash keeps a random prefix of unsynced appends (true) or drops them all.
    tear_on_crash: bool,
    /// Bound on the space of live inodes; `None` is unbounded.
    capacity_bytes: Option<u64>,
    /// Armed by `fail_next_sync`: the errno the next `sync_data` fails with.
    sync_fail_errno: Option<i32>,
    /// Armed by `fail_next_write`: the errno the next `write_all_at` fails with.
    write_fail_errno: Option<i32>,
    /// Successful `sync_data` calls since creation.
    sync_count: u64,
    /// Bytes stored by `write_all_at` since creation, partial writes included.
    bytes_written: u64,
    /// Bytes named by `drop_cache` since creation: (all, those not durable when named).
    cache_dropped: (u64, u64),
}

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to pick tear points.
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`; `bound` must not be zero. Modulo bias is irrelevant here.
    fn below(&mut self, bound: usize) -> usize {
        assert!(bound > 0, "below(0) has no valid result");
        let value = self.next_u64() % bound as u64;
        usize::try_from(value).expect("value < bound, and bound is a usize")
    }
}

impl SimDisk {
    /// An empty file system whose random choices all derive from `seed`. The directories `/` and
    /// the empty path (the base of relative paths) exist; create others with
    /// [`Disk::create_dir_all`]. Tearing on crash is on, capacity unbounded, no fault armed.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        let mut dirs = BTreeMap::new();
        dirs.insert(PathBuf::from("/"), Dir::default());
        dirs.insert(PathBuf::new(), Dir::default());
        let state = State {
            rng: SplitMix64 { state: seed },
            generation: 0,
            inode_next: 0,
            inodes: BTreeMap::new(),
            dirs,
            tear_on_crash: true,
            capacity_bytes: None,
            sync_fail_errno: None,
            write_fail_errno: None,
            sync_count: 0,
            bytes_written: 0,
            cache_dropped: (0, 0),
        };
        SimDisk { state: Arc::new(Mutex::new(state)) }
    }

    /// Simulates a power loss and reboot. Afterwards:
    /// - every directory's entries are those of its last `sync_dir`;
    /// - every file is its content as of its last `sync_data`, except that a file only appended
    ///   to since then keeps a seeded-random prefix (possibly empty, possibly all) of the appended
    ///   bytes when tearing is on;
    /// - files no durable name reaches are gone;
    /// - every handle opened before fails with "stale handle after crash".
    ///
    /// Armed faults and the capacity stay as they were: a test may arm a fault for recovery.
    pub fn crash(&self) {
        lock(&self.state).crash();
    }

    /// Flips bit `bit` (bit `bit % 8` of byte `bit / 8`) of the file at `path`, in both its
    /// current and durable content wherever that byte exists: latent corruption of the medium,
    /// which a crash does not undo.
    ///
    /// # Errors
    /// `NotFound` if `path` names no file, `InvalidInput` if the byte is past both contents.
    pub fn flip_bit(&self, path: &Path, bit: u64) -> io::Result<()> {
        let mut state = lock(&self.state);
        let id = state.lookup(path)?;
        let inode = state.inode_mut(id);
        let index = usize::try_from(bit / 8).unwrap_or(usize::MAX);
        let mask = 1u8 << (bit % 8);
        let mut flipped = false;
        for content in [&mut inode.current, &mut inode.durable] {
            if let Some(byte) = content.get_mut(index) {
                *byte ^= mask;
                flipped = true;
            }
        }
        if flipped {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bit {bit} is past the end of {}", path.display()),
            ))
        }
    }

    /// Arms a fault: the next [`DiskFile::sync_data`] call, on any file, fails with
    /// `io::Error::from_raw_os_error(errno)` (typically [`EIO`]) and makes nothing durable.
    pub fn fail_next_sync(&self, errno: i32) {
        lock(&self.state).sync_fail_errno = Some(errno);
    }

    /// Arms a fault: the next [`DiskFile::write_all_at`] call, on any file, stores a
    /// seeded-random strict prefix of its buffer (possibly empty) and then fails with
    /// `io::Error::from_raw_os_error(errno)` (typically [`EIO`]).
    pub fn fail_next_write(&self, errno: i32) {
        lock(&self.state).write_fail_errno = Some(errno);
    }

    /// Bounds the total `current` length of live files (named, or open) to `capacity_bytes`;
    /// `None` removes the bound. A write or `set_len` that would exceed it stores what fits (a
    /// prefix) and fails with [`ENOSPC`]. Lowering it below what is used fails later growth only.
    pub fn set_capacity_bytes(&self, capacity_bytes: Option<u64>) {
        lock(&self.state).capacity_bytes = capacity_bytes;
    }

    /// Whether [`SimDisk::crash`] keeps a random prefix of unsynced appends (`true`, the default)
    /// or drops every unsynced byte.
    pub fn set_tear_on_crash(&self, tear_on_crash: bool) {
        lock(&self.state).tear_on_crash = tear_on_crash;
    }

    /// Successful [`DiskFile::sync_data`] calls so far, over all files and crashes.
    #[must_use]
    pub fn sync_count(&self) -> u64 {
        lock(&self.state).sync_count
    }

    /// Bytes stored by [`DiskFile::write_all_at`] so far (partial writes included), over all
    /// files and crashes.
    #[must_use]
    pub fn bytes_written(&self) -> u64 {
        lock(&self.state).bytes_written
    }

    /// Bytes named by [`DiskFile::drop_cache`] so far, over all files and crashes: all of them,
    /// and those that were not durable when named (a log drops only durable data).
    #[must_use]
    pub fn cache_dropped_bytes(&self) -> (u64, u64) {
        lock(&self.state).cache_dropped
    }

    /// Bytes that count against the capacity now: the `current` length of every live file.
    #[must_use]
    pub fn used_bytes(&self) -> u64 {
        lock(&self.state).used_bytes()
    }

    /// The current content (what a read sees) of the file at `path`.
    ///
    /// # Errors
    /// `NotFound` if `path` names no file.
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = lock(&self.state);
        let id = state.lookup(path)?;
        Ok(state.inode_mut(id).current.clone())
    }

    /// The current length in bytes of the file at `path`.
    ///
    /// # Errors
    /// `NotFound` if `path` names no file.
    pub fn file_len(&self, path: &Path) -> io::Result<u64> {
        let mut state = lock(&self.state);
        let id = state.lookup(path)?;
        Ok(state.inode_mut(id).current.len() as u64)
    }

    /// A handle to inode `id`, counted so the inode outlives its names.
    fn handle(&self, state: &mut State, id: InodeId, writable: bool) -> Arc<SimFile> {
        state.inode_mut(id).handle_count += 1;
        Arc::new(SimFile {
            state: Arc::clone(&self.state),
            inode: id,
            generation: state.generation,
            writable,
        })
    }

    /// Opens the existing file at `path`, for writing too if `writable`.
    fn open_file(&self, path: &Path, writable: bool) -> io::Result<Arc<SimFile>> {
        let mut state = lock(&self.state);
        if state.dirs.contains_key(path) {
            return Err(error(io::ErrorKind::IsADirectory, "is a directory", path));
        }
        let id = state.lookup(path)?;
        Ok(self.handle(&mut state, id, writable))
    }
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately lock-free and short: the contents can be large, and formatting must not
        // block on (or deadlock with) a thread inside an operation.
        f.debug_struct("SimDisk").finish_non_exhaustive()
    }
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("inode", &self.inode)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Locks the state. A poisoned lock means a test thread panicked (a failed assertion) while
/// holding it; every operation leaves the state consistent before anything that can panic, and
/// `SimFile::drop` must not double-panic while unwinding, so the poison is ignored.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The error every method of a handle opened before a crash returns.
fn stale() -> io::Error {
    io::Error::other("stale handle after crash")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no such file: {}", path.display()))
}

fn error(kind: io::ErrorKind, what: &str, path: &Path) -> io::Error {
    io::Error::new(kind, format!("{what}: {}", path.display()))
}

/// Splits a file path into its directory and its name.
fn split(path: &Path) -> io::Result<(&Path, &str)> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| error(io::ErrorKind::InvalidInput, "not a utf-8 file name", path))?;
    Ok((path.parent().unwrap_or(Path::new("")), name))
}

/// `position` as an in-memory index, after checking that `len` bytes from there stay within
/// [`FILE_BYTES_MAX`] (`EFBIG` otherwise, also where `usize` is too small for it).
fn checked_start(position: u64, len: usize) -> io::Result<usize> {
    let efbig = || io::Error::from_raw_os_error(EFBIG);
    let end = position.checked_add(len as u64).ok_or_else(efbig)?;
    if end > FILE_BYTES_MAX {
        return Err(efbig());
    }
    // `end` must be addressable too, not only `position`: the file may grow to it.
    usize::try_from(end).map_err(|_| efbig())?;
    usize::try_from(position).map_err(|_| efbig())
}

impl State {
    /// The inode of `id`, which the caller knows exists.
    ///
    /// # Panics
    /// If it does not: callers pass the id of a name just looked up or of a handle of the current
    /// generation, and `collect_garbage` keeps every named or open inode.
    fn inode_mut(&mut self, id: InodeId) -> &mut Inode {
        self.inodes.get_mut(&id).expect("named and open inodes are never collected")
    }

    /// Fails with "stale handle" unless `generation` is the current one.
    fn check(&self, generation: u64) -> io::Result<()> {
        if generation == self.generation { Ok(()) } else { Err(stale()) }
    }

    /// The inode the current namespace names `path`.
    fn lookup(&self, path: &Path) -> io::Result<InodeId> {
        let (dir, name) = split(path)?;
        let dir = self.dirs.get(dir).ok_or_else(|| not_found(path))?;
        dir.current.get(name).copied().ok_or_else(|| not_found(path))
    }

    /// Whether `path` is a file of the current namespace.
    fn is_file(&self, path: &Path) -> bool {
        self.lookup(path).is_ok()
    }

    /// The directory at `path` (for `list_dir` and `sync_dir`).
    fn dir_mut(&mut self, path: &Path) -> io::Result<&mut Dir> {
        if self.is_file(path) {
            return Err(error(io::ErrorKind::NotADirectory, "not a directory", path));
        }
        self.dirs.get_mut(path).ok_or_else(|| not_found(path))
    }

    /// The directory holding the entry `path` (existing or not) and the entry's name, after
    /// checking that `path` is not a directory.
    fn entry_dir(&mut self, path: &Path) -> io::Result<(&mut Dir, String)> {
        if self.dirs.contains_key(path) {
            return Err(error(io::ErrorKind::IsADirectory, "is a directory", path));
        }
        let (dir, name) = split(path)?;
        let dir = self.dirs.get_mut(dir).ok_or_else(|| not_found(path))?;
        Ok((dir, name.to_owned()))
    }

    /// The space live inodes occupy.
    fn used_bytes(&self) -> u64 {
        let live = self.inodes.values().filter(|inode| inode.name_count + inode.handle_count > 0);
        live.map(|inode| inode.current.len() as u64).sum()
    }

    /// How many more bytes live inodes may grow by, saturated to `usize`.
    fn room_bytes(&self) -> usize {
        let Some(capacity_bytes) = self.capacity_bytes else { return usize::MAX };
        let room_bytes = capacity_bytes.saturating_sub(self.used_bytes());
        usize::try_from(room_bytes).unwrap_or(usize::MAX)
    }

    /// Drops inodes that nothing can reach any more: no current name, no open handle, and no
    /// durable name a crash could bring back.
    fn collect_garbage(&mut self) {
        let durable: BTreeSet<InodeId> =
            self.dirs.values().flat_map(|dir| dir.durable.values().copied()).collect();
        self.inodes
            .retain(|id, inode| inode.name_count + inode.handle_count > 0 || durable.contains(id));
    }

    /// `pwrite` into `current`, with the armed write fault and the capacity applied: stores a
    /// prefix of `buf` and fails if either cuts it short.
    fn write(&mut self, id: InodeId, buf: &[u8], position: u64) -> io::Result<()> {
        let start = checked_start(position, buf.len())?;
        let injected_errno = self.write_fail_errno.take();
        let wanted_len = match injected_errno {
            Some(_) if !buf.is_empty() => self.rng.below(buf.len()),
            _ => buf.len(),
        };
        let room_bytes = self.room_bytes();
        let inode = self.inode_mut(id);
        // Overwrites need no space; only growth past the current length counts.
        let end_max = inode.current.len().saturating_add(room_bytes);
        let stored_len = wanted_len.min(end_max.saturating_sub(start));
        if stored_len > 0 {
            let end = start + stored_len;
            if inode.current.len() < end {
                inode.current.resize(end, 0);
            }
            inode.current[start..end].copy_from_slice(&buf[..stored_len]);
            inode.dirty_from = inode.dirty_from.min(start);
        }
        self.bytes_written += stored_len as u64;
        if let Some(errno) = injected_errno {
            Err(io::Error::from_raw_os_error(errno))
        } else if stored_len < buf.len() {
            Err(io::Error::from_raw_os_error(ENOSPC))
        } else {
            Ok(())
        }
    }

    /// `ftruncate` of `current`; growth is zero-filled and stops at the capacity.
    fn set_len(&mut self, id: InodeId, len: u64) -> io::Result<()> {
        let len = checked_start(len, 0)?;
        let room_bytes = self.room_bytes();
        let inode = self.inode_mut(id);
        if len <= inode.current.len() {
            inode.current.truncate(len);
            inode.dirty_from = inode.dirty_from.min(len);
            return Ok(());
        }
        let end = len.min(inode.current.len().saturating_add(room_bytes));
        inode.current.resize(end, 0);
        if end < len { Err(io::Error::from_raw_os_error(ENOSPC)) } else { Ok(()) }
    }

    /// `fdatasync`: `durable` becomes `current`, unless a sync fault is armed.
    fn sync(&mut self, id: InodeId) -> io::Result<()> {
        if let Some(errno) = self.sync_fail_errno.take() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let Inode { current, durable, dirty_from, .. } = self.inode_mut(id);
        debug_assert_eq!(current[..*dirty_from], durable[..*dirty_from]);
        durable.truncate(*dirty_from);
        durable.extend_from_slice(&current[*dirty_from..]);
        *dirty_from = current.len();
        self.sync_count += 1;
        Ok(())
    }

    /// Power loss; see [`SimDisk::crash`].
    fn crash(&mut self) {
        self.generation += 1;
        let mut name_counts: BTreeMap<InodeId, u64> = BTreeMap::new();
        for dir in self.dirs.values_mut() {
            dir.current.clone_from(&dir.durable);
            for &id in dir.durable.values() {
                *name_counts.entry(id).or_default() += 1;
            }
        }
        // Inodes are visited in id order, so the random draws are the same on every run.
        let inodes = std::mem::take(&mut self.inodes);
        for (id, inode) in inodes {
            let Some(&name_count) = name_counts.get(&id) else { continue };
            let content = self.survivor(inode);
            let inode = Inode {
                current: content.clone(),
                dirty_from: content.len(),
                durable: content,
                name_count,
                handle_count: 0,
            };
            self.inodes.insert(id, inode);
        }
    }

    /// What a crash leaves of `inode`: its durable content, plus a random prefix of what was
    /// appended since, if tearing is on and nothing else changed.
    fn survivor(&mut self, inode: Inode) -> Vec<u8> {
        let Inode { current, mut durable, .. } = inode;
        let synced_len = durable.len();
        let appended_only = current.len() > synced_len && current[..synced_len] == durable[..];
        if self.tear_on_crash && appended_only {
            let kept_len = self.rng.below(current.len() - synced_len + 1);
            durable.extend_from_slice(&current[synced_len..synced_len + kept_len]);
        }
        durable
    }
}

impl SimFile {
    /// `refused` for a write or length change through a read-only handle, as Linux answers
    /// (`EBADF` for `pwrite`, `EINVAL` for `ftruncate`).
    fn check_writable(&self, refused: rustix::io::Errno) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(refused.raw_os_error()))
        }
    }
}

impl DiskFile for SimFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        let mut state = lock(&self.state);
        state.check(self.generation)?;
        let current = &state.inode_mut(self.inode).current;
        let start = usize::try_from(position).unwrap_or(usize::MAX);
        let Some(available) = current.get(start..) else { return Ok(0) };
        let read_len = available.len().min(buf.len());
        buf[..read_len].copy_from_slice(&available[..read_len]);
        Ok(read_len)
    }

    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        self.check_writable(rustix::io::Errno::BADF)?;
        let mut state = lock(&self.state);
        state.check(self.generation)?;
        state.write(self.inode, buf, position)
    }

    fn len(&self) -> io::Result<u64> {
        let mut state = lock(&self.state);
        state.check(self.generation)?;
        Ok(state.inode_mut(self.inode).current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable(rustix::io::Errno::INVAL)?;
        let mut state = lock(&self.state);
        state.check(self.generation)?;
        state.set_len(self.inode, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.check(self.generation)?;
        state.sync(self.inode)
    }

    fn drop_cache(&self, from: u64, to: u64) {
        let mut state = lock(&self.state);
        if state.generation != self.generation || to <= from {
            return;
        }
        let durable_to = state.inode_mut(self.inode).dirty_from as u64;
        let (all, not_durable) = &mut state.cache_dropped;
        *all += to - from;
        *not_durable += to.saturating_sub(durable_to.max(from));
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        // A crash already forgot every older handle.
        if state.generation != self.generation {
            return;
        }
        let inode = state.inode_mut(self.inode);
        debug_assert!(inode.handle_count > 0);
        inode.handle_count = inode.handle_count.saturating_sub(1);
        state.collect_garbage();
    }
}

impl Disk for SimDisk {
    type File = SimFile;

    fn open(&self, path: &Path) -> io::Result<Arc<SimFile>> {
        self.open_file(path, true)
    }

    fn open_read_only(&self, path: &Path) -> io::Result<Arc<SimFile>> {
        self.open_file(path, false)
    }

    fn create(&self, path: &Path) -> io::Result<Arc<SimFile>> {
        let mut state = lock(&self.state);
        if state.dirs.contains_key(path) {
            return Err(error(io::ErrorKind::AlreadyExists, "exists", path));
        }
        let id = state.inode_next;
        let (dir, name) = state.entry_dir(path)?;
        if dir.current.contains_key(&name) {
            return Err(error(io::ErrorKind::AlreadyExists, "exists", path));
        }
        dir.current.insert(name, id);
        state.inode_next += 1;
        let inode = Inode {
            current: Vec::new(),
            durable: Vec::new(),
            dirty_from: 0,
            name_count: 1,
            handle_count: 0,
        };
        state.inodes.insert(id, inode);
        Ok(self.handle(&mut state, id, true))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.is_file(path) {
            return Err(error(io::ErrorKind::AlreadyExists, "exists", path));
        }
        if let Some(file) = path.ancestors().skip(1).find(|ancestor| state.is_file(ancestor)) {
            return Err(error(io::ErrorKind::NotADirectory, "not a directory", file));
        }
        for ancestor in path.ancestors() {
            state.dirs.entry(ancestor.to_path_buf()).or_default();
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut state = lock(&self.state);
        Ok(state.dir_mut(path)?.current.keys().cloned().collect())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        let (dir, name) = state.entry_dir(path)?;
        let id = dir.current.remove(&name).ok_or_else(|| not_found(path))?;
        state.inode_mut(id).name_count -= 1;
        state.collect_garbage();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.dirs.contains_key(from) {
            return Err(error(io::ErrorKind::Unsupported, "sim disk renames files only", from));
        }
        let id = state.lookup(from)?;
        state.entry_dir(to)?;
        // Renaming onto the same name, or onto another name of the same inode, does nothing
        // (POSIX `rename`).
        if state.lookup(to).ok() == Some(id) {
            return Ok(());
        }
        // Both directories were found above; nothing fails from here on.
        let (from_dir, from_name) = state.entry_dir(from)?;
        from_dir.current.remove(&from_name);
        let (to_dir, to_name) = state.entry_dir(to)?;
        if let Some(replaced) = to_dir.current.insert(to_name, id) {
            state.inode_mut(replaced).name_count -= 1;
            state.collect_garbage();
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        let dir = state.dir_mut(path)?;
        dir.durable.clone_from(&dir.current);
        state.collect_garbage();
        Ok(())
    }
}
