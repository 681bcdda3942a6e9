//! The process-wide cache of open file descriptors behind [`crate::RealFile`], so the number of
//! segment, index and checkpoint files is not bounded by the open-file limit.
//!
//! `RLIMIT_NOFILE` counts the descriptors of a whole process, so the cache is process-wide: an
//! [`Entry`] knows its file's path and opens the descriptor on use; once [`capacity`] entries
//! hold one, a clock (second-chance) sweep closes the least recently used. The capacity is set
//! once at start ([`set_capacity`], sized by [`capacity_for_limit`] from the soft limit that
//! [`raise_open_file_limit`] raised to the hard one). Open descriptors of cached entries are at
//! most the capacity, plus one per thread opening a file at that moment, plus one per file
//! whose descriptor cannot be closed yet (leased, or busy being synced).
//!
//! Three rules keep the cache invisible to the log:
//!
//! - **Never close unsynced writes** (PostgreSQL's "fsyncgate"; Linux `errseq_t`): a writeback
//!   error is reported to the file descriptions open when it happens, so a descriptor opened
//!   after it may never see it, and a later `fdatasync` would succeed over lost pages. An entry
//!   counts the writes made through it and the writes covered by its last successful
//!   `sync_data`; one with writes not yet covered is closed only after the cache fsyncs it. The
//!   sweep prefers clean victims and syncs a dirty one only when a whole sweep found none.
//!   Evicting only clean descriptors was rejected: the log writes its index and checkpoint
//!   files without syncing them until a roll or a clean shutdown, so every partition written
//!   to would hold two descriptors forever and the cache would bound nothing. When the cache's
//!   own fsync fails, the descriptor stays open and the error is kept: every later
//!   `sync_data` of the file returns it (the failed fsync consumed the error for that file
//!   description, so the owner's next fsync would otherwise succeed), and the log fails stop.
//! - **Leases**: an operation holds the descriptor (`Arc<File>`) it uses until it ends; a
//!   descriptor leased out (e.g. to a `sendfile` of a Fetch response) is never evicted.
//! - **A removed or renamed name is never reopened**: [`forget_name`] (called by
//!   [`crate::RealDisk`]'s `remove_file` and `rename`) marks every entry of that path gone. A
//!   descriptor open at that moment is pinned: it stays open, outside the cache's count, until
//!   the last handle drops, so readers of a segment deleted by retention keep reading it as
//!   before. An entry whose descriptor was already closed fails with `NotFound` instead of
//!   opening whatever file now has the name. A reopen also checks the device and inode number
//!   seen at the first open, so a name replaced behind the disk's back (a renamed directory) is
//!   an error too, never another file's bytes.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};

use cairn_types::limits::{
    DESCRIPTORS_CACHED_DEFAULT, DESCRIPTORS_CACHED_LIMIT_DIVISOR, DESCRIPTORS_CACHED_MAX,
    DESCRIPTORS_CACHED_MIN,
};

/// Most entries holding a descriptor; see [`set_capacity`].
static CAPACITY: AtomicUsize = AtomicUsize::new(DESCRIPTORS_CACHED_DEFAULT);
/// The entries that hold a cached descriptor (and, until the next sweep, stale ones).
static RING: Mutex<Ring> = Mutex::new(Ring { entries: Vec::new(), hand: 0 });
/// Every live entry by path, so that removing or renaming a name reaches its entries.
static NAMES: Mutex<BTreeMap<PathBuf, Vec<Weak<Entry>>>> = Mutex::new(BTreeMap::new());

/// How many descriptors the cache keeps open at most.
#[must_use]
pub fn capacity() -> usize {
    CAPACITY.load(Ordering::Relaxed)
}

/// Sets how many descriptors the cache keeps open (at least 1). Meant to be called once at
/// start; a smaller value takes effect as files are next opened.
pub fn set_capacity(descriptors: usize) {
    CAPACITY.store(descriptors.max(1), Ordering::Relaxed);
}

/// The cache capacity for a soft open-file limit: a fraction of it
/// ([`DESCRIPTORS_CACHED_LIMIT_DIVISOR`]), leaving the rest to sockets and other files,
/// within [`DESCRIPTORS_CACHED_MIN`] and [`DESCRIPTORS_CACHED_MAX`].
#[must_use]
pub fn capacity_for_limit(soft_limit: u64) -> usize {
    let share = soft_limit / DESCRIPTORS_CACHED_LIMIT_DIVISOR;
    usize::try_from(share)
        .unwrap_or(usize::MAX)
        .clamp(DESCRIPTORS_CACHED_MIN, DESCRIPTORS_CACHED_MAX)
}

/// The process's open-file limit (`RLIMIT_NOFILE`); `u64::MAX` stands for unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// The soft limit: what `open` and `accept` are held to.
    pub soft: u64,
    /// The hard limit: the most the soft limit may be raised to without privileges.
    pub hard: u64,
}

/// The current open-file limit.
#[must_use]
pub fn open_file_limit() -> OpenFileLimit {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    OpenFileLimit {
        soft: limit.current.unwrap_or(u64::MAX),
        hard: limit.maximum.unwrap_or(u64::MAX),
    }
}

/// Raises the soft open-file limit to the hard limit; returns the limit before and after.
///
/// # Errors
/// `setrlimit` failed; the limit is then unchanged.
pub fn raise_open_file_limit() -> io::Result<(OpenFileLimit, OpenFileLimit)> {
    let before = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if before.current != before.maximum {
        let raised = rustix::process::Rlimit { current: before.maximum, maximum: before.maximum };
        rustix::process::setrlimit(rustix::process::Resource::Nofile, raised)?;
    }
    let before = OpenFileLimit {
        soft: before.current.unwrap_or(u64::MAX),
        hard: before.maximum.unwrap_or(u64::MAX),
    };
    Ok((before, open_file_limit()))
}

/// One file of the cache: its name, and its descriptor while open.
pub(crate) struct Entry {
    path: PathBuf,
    /// Device and inode number at the first open: a reopen must find the same file.
    identity: (u64, u64),
    /// Opened for writing too (else read-only, and so reopened).
    writable: bool,
    /// Set by every use; the sweep clears it and closes only entries found clear (second chance).
    referenced: AtomicBool,
    slot: Mutex<Slot>,
}

/// The mutable state of an [`Entry`].
struct Slot {
    /// The descriptor; `None` when closed (never while writes are unsynced).
    fd: Option<Arc<File>>,
    /// Whether `fd` is counted in the [`RING`] (false when pinned after its name went, or kept
    /// open after a failed fsync).
    cached: bool,
    /// Writes and length changes completed through any descriptor of this entry.
    writes: u64,
    /// `writes` as read before the last successful `sync_data` began: those are durable.
    synced: u64,
    /// A failed fsync, returned by every later `sync_data`.
    failed: Option<Failure>,
    /// The name was removed or renamed: never reopen it.
    gone: bool,
}

impl Slot {
    /// Whether closing the descriptor could only be done after an fsync.
    fn dirty(&self) -> bool {
        self.writes != self.synced
    }

    /// Whether an operation holds the descriptor.
    fn leased(&self) -> bool {
        self.fd.as_ref().is_some_and(|fd| Arc::strong_count(fd) > 1)
    }
}

/// A failed fsync, kept to be returned again.
struct Failure {
    raw_os_error: Option<i32>,
    kind: io::ErrorKind,
    message: String,
}

impl Failure {
    fn of(error: &io::Error) -> Failure {
        Failure {
            raw_os_error: error.raw_os_error(),
            kind: error.kind(),
            message: error.to_string(),
        }
    }

    fn to_error(&self) -> io::Error {
        match self.raw_os_error {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(self.kind, format!("an earlier fsync failed: {}", self.message)),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

impl Entry {
    /// Opens `path` with `options` (making room in the cache first) and registers the entry;
    /// `writable` says whether `options` write, so that a reopen opens the same way.
    ///
    /// # Errors
    /// Those of `open` and `fstat`.
    pub(crate) fn open(
        path: &Path,
        options: &OpenOptions,
        writable: bool,
    ) -> io::Result<Arc<Entry>> {
        make_room();
        let file = options.open(path)?;
        let metadata = file.metadata()?;
        let entry = Arc::new(Entry {
            path: path.to_path_buf(),
            identity: (metadata.dev(), metadata.ino()),
            writable,
            referenced: AtomicBool::new(true),
            slot: Mutex::new(Slot {
                fd: Some(Arc::new(file)),
                cached: true,
                writes: 0,
                synced: 0,
                failed: None,
                gone: false,
            }),
        });
        lock(&RING).entries.push(Arc::downgrade(&entry));
        lock(&NAMES).entry(entry.path.clone()).or_default().push(Arc::downgrade(&entry));
        Ok(entry)
    }

    /// The descriptor, opened again if the cache closed it. Hold it for one operation only:
    /// a leased descriptor is not evicted.
    ///
    /// # Errors
    /// `NotFound` if the name was removed or renamed since the descriptor was closed, or now
    /// names another file; errors of `open`.
    pub(crate) fn lease(self: &Arc<Self>) -> io::Result<Arc<File>> {
        let mut slot = lock(&self.slot);
        self.referenced.store(true, Ordering::Relaxed);
        if let Some(fd) = &slot.fd {
            return Ok(Arc::clone(fd));
        }
        if slot.gone {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} was removed or renamed after its descriptor closed",
                    self.path.display()
                ),
            ));
        }
        make_room();
        let fd = Arc::new(self.reopen()?);
        slot.fd = Some(Arc::clone(&fd));
        slot.cached = true;
        lock(&RING).entries.push(Arc::downgrade(self));
        Ok(fd)
    }

    /// Runs `op` on a leased descriptor; with `write`, counts it as a write afterwards (even a
    /// failed one may have written a prefix), while the lease still keeps the descriptor open.
    pub(crate) fn with_fd<T>(
        self: &Arc<Self>,
        write: bool,
        op: impl FnOnce(&File) -> io::Result<T>,
    ) -> io::Result<T> {
        let fd = self.lease()?;
        let result = op(&fd);
        if write {
            lock(&self.slot).writes += 1;
        }
        drop(fd);
        result
    }

    /// `fdatasync` of every write made so far. A closed descriptor has nothing unsynced (it was
    /// closed only when clean), so this does not reopen the file.
    ///
    /// # Errors
    /// The fsync failed, now or earlier (kept: see the module docs).
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        let (fd, writes) = {
            let slot = lock(&self.slot);
            if let Some(failure) = &slot.failed {
                return Err(failure.to_error());
            }
            let Some(fd) = &slot.fd else {
                debug_assert!(!slot.dirty(), "a descriptor is closed only when clean");
                return Ok(());
            };
            (Arc::clone(fd), slot.writes)
        };
        let result = fd.sync_data();
        let mut slot = lock(&self.slot);
        match result {
            Ok(()) => slot.synced = slot.synced.max(writes),
            Err(ref error) => slot.failed = Some(Failure::of(error)),
        }
        result
    }

    fn reopen(&self) -> io::Result<File> {
        let file = OpenOptions::new().read(true).write(self.writable).open(&self.path)?;
        let metadata = file.metadata()?;
        if (metadata.dev(), metadata.ino()) != self.identity {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} now names another file", self.path.display()),
            ));
        }
        Ok(file)
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut names = lock(&NAMES);
        if let Some(entries) = names.get_mut(&self.path) {
            entries.retain(|entry| entry.strong_count() > 0);
            if entries.is_empty() {
                names.remove(&self.path);
            }
        }
    }
}

/// Marks every entry of `path` gone: never reopened by that name again. A descriptor open now
/// is pinned (kept open, outside the cache's count) until its entry drops.
pub(crate) fn forget_name(path: &Path) {
    let entries = lock(&NAMES).remove(path).unwrap_or_default();
    for entry in entries.iter().filter_map(Weak::upgrade) {
        let mut slot = lock(&entry.slot);
        slot.gone = true;
        slot.cached = false;
    }
}

/// The clock over the entries holding a cached descriptor.
struct Ring {
    entries: Vec<Weak<Entry>>,
    /// Where the sweep continues.
    hand: usize,
}

/// What the sweep did with the entry under the hand.
enum Step {
    /// Passed over it (recently used, leased, busy or dirty).
    Kept,
    /// Dropped a stale entry (its file dropped, closed, pinned or failed).
    Dropped,
    /// Closed its clean descriptor: drop this after releasing the ring.
    Closed(Arc<File>),
}

impl Ring {
    /// Looks at the entry under the hand; remembers the first dirty one passed in `dirty`.
    fn step(&mut self, dirty: &mut Option<Arc<Entry>>) -> Step {
        let at = self.hand % self.entries.len();
        let Some(entry) = self.entries[at].upgrade() else {
            self.entries.swap_remove(at);
            return Step::Dropped;
        };
        let Some(mut slot) = try_lock(&entry.slot) else {
            self.hand = at + 1;
            return Step::Kept;
        };
        if !slot.cached || slot.fd.is_none() {
            self.entries.swap_remove(at);
            return Step::Dropped;
        }
        if entry.referenced.swap(false, Ordering::Relaxed) || slot.leased() {
            self.hand = at + 1;
            return Step::Kept;
        }
        if slot.dirty() {
            dirty.get_or_insert_with(|| Arc::clone(&entry));
            self.hand = at + 1;
            return Step::Kept;
        }
        slot.cached = false;
        self.entries.swap_remove(at);
        slot.fd.take().map_or(Step::Dropped, Step::Closed)
    }

    /// Drops `entry`'s element, if present.
    fn remove(&mut self, entry: &Arc<Entry>) {
        if let Some(at) =
            self.entries.iter().position(|e| std::ptr::eq(e.as_ptr(), Arc::as_ptr(entry)))
        {
            self.entries.swap_remove(at);
        }
    }
}

/// Closes descriptors until fewer than [`capacity`] are cached: clean ones not used since the
/// hand last passed, or, when a whole sweep found none, one dirty one after syncing it. Gives
/// up (the cache runs over by one) when every descriptor is in use.
fn make_room() {
    let capacity = capacity();
    let mut closed = Vec::new();
    let mut dirty = None;
    let full = {
        let mut ring = lock(&RING);
        // Two passes: the first may only clear the recently-used marks.
        let mut steps = 2 * ring.entries.len() + 1;
        while ring.entries.len() >= capacity && steps > 0 {
            steps -= 1;
            if let Step::Closed(fd) = ring.step(&mut dirty) {
                closed.push(fd);
            }
        }
        ring.entries.len() >= capacity
    };
    drop(closed);
    if full && let Some(entry) = dirty {
        close_dirty(&entry);
    }
}

/// Syncs and closes a dirty descriptor, unless it is in use by now. A failed fsync keeps the
/// descriptor open, out of the cache, and the error for the owner's next `sync_data`.
fn close_dirty(entry: &Arc<Entry>) {
    let Some(mut slot) = try_lock(&entry.slot) else { return };
    if !slot.cached || slot.leased() || slot.failed.is_some() {
        return;
    }
    let Some(fd) = slot.fd.clone() else { return };
    let writes = slot.writes;
    match fd.sync_data() {
        Ok(()) => {
            slot.synced = writes;
            slot.fd = None;
        }
        Err(error) => slot.failed = Some(Failure::of(&error)),
    }
    slot.cached = false;
    lock(&RING).remove(entry);
    drop(slot);
    drop(fd);
}
