//! [`CrashDisk`]: a [`SimDisk`] that loses power at a chosen step of the code under test, so a
//! test can crash a multi-step write (create, write, fsync, rename, directory fsync) between any
//! two of its steps, right after any one of them, or in the middle of a write.
//!
//! The sim disk forgets an unsynced overwrite entirely on a crash; a real device may have
//! stored part of it. A crash in the middle of a write ([`When::Torn`]) stores the first half of
//! its bytes durably, then crashes.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cairn_storage::sim::{SimDisk, SimFile};
use cairn_storage::{Disk, DiskFile};

/// Where the power goes off: at the `step`-th change to the disk (1-based). Changes are creates,
/// removes, renames, directory syncs, writes, length changes and file syncs; reads are not
/// steps.
#[derive(Clone, Copy, Debug)]
pub struct CrashPoint {
    pub step: u64,
    pub when: When,
}

/// When, around its step, the crash comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// The change is not made.
    Before,
    /// A write stores the first half of its bytes durably; any other change is not made.
    Torn,
    /// The change is made (durable or not as the sim disk says: unsynced data is lost).
    After,
}

/// Every crash point up to `steps` changes: before, in the middle of and after each.
pub fn crash_points(steps: u64) -> impl Iterator<Item = CrashPoint> {
    let whens = [When::Before, When::Torn, When::After];
    (1..=steps).flat_map(move |step| whens.map(|when| CrashPoint { step, when }))
}

/// A [`SimDisk`] that crashes at its [`CrashPoint`]: the change at that point and every change
/// after it fail with an error instead of reaching the disk.
#[derive(Clone)]
pub struct CrashDisk {
    sim: SimDisk,
    /// Changes seen so far, and whether the crash happened.
    state: Arc<Mutex<(u64, bool)>>,
    point: CrashPoint,
}

/// A file of a [`CrashDisk`].
pub struct CrashFile {
    inner: Arc<SimFile>,
    disk: CrashDisk,
    /// The file's name when opened, to store a torn write after the crash.
    path: PathBuf,
}

impl CrashDisk {
    pub fn new(sim: &SimDisk, point: CrashPoint) -> CrashDisk {
        CrashDisk { sim: sim.clone(), state: Arc::new(Mutex::new((0, false))), point }
    }

    /// Whether the crash happened.
    pub fn crashed(&self) -> bool {
        self.state.lock().unwrap().1
    }

    /// Runs the change `change` as the next step, crashing around it at the crash point; `torn`
    /// stores the half of a write that a crash in its middle leaves.
    fn step<T>(
        &self,
        change: impl FnOnce() -> io::Result<T>,
        torn: impl FnOnce(),
    ) -> io::Result<T> {
        let mut state = self.state.lock().unwrap();
        let crashed = || io::Error::other("power lost");
        if state.1 {
            return Err(crashed());
        }
        state.0 += 1;
        if state.0 != self.point.step {
            return change();
        }
        state.1 = true;
        match self.point.when {
            When::Before => self.sim.crash(),
            When::Torn => {
                self.sim.crash();
                torn();
            }
            When::After => {
                let _ = change();
                self.sim.crash();
            }
        }
        Err(crashed())
    }

    fn wrap(&self, inner: io::Result<Arc<SimFile>>, path: &Path) -> io::Result<Arc<CrashFile>> {
        Ok(Arc::new(CrashFile { inner: inner?, disk: self.clone(), path: path.to_path_buf() }))
    }
}

impl DiskFile for CrashFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        self.inner.read_at(buf, position)
    }

    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        let torn = || {
            // The name may not have survived the crash: then neither did the bytes.
            if let Ok(file) = self.disk.sim.open(&self.path) {
                file.write_all_at(&buf[..buf.len() / 2], position).unwrap();
                file.sync_data().unwrap();
            }
        };
        self.disk.step(|| self.inner.write_all_at(buf, position), torn)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.disk.step(|| self.inner.set_len(len), || {})
    }

    fn sync_data(&self) -> io::Result<()> {
        self.disk.step(|| self.inner.sync_data(), || {})
    }
}

impl Disk for CrashDisk {
    type File = CrashFile;

    fn open(&self, path: &Path) -> io::Result<Arc<CrashFile>> {
        self.wrap(self.sim.open(path), path)
    }

    fn open_read_only(&self, path: &Path) -> io::Result<Arc<CrashFile>> {
        self.wrap(self.sim.open_read_only(path), path)
    }

    fn create(&self, path: &Path) -> io::Result<Arc<CrashFile>> {
        let file = self.step(|| self.sim.create(path), || {});
        self.wrap(file, path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.step(|| self.sim.create_dir_all(path), || {})
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.sim.list_dir(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.step(|| self.sim.remove_file(path), || {})
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step(|| self.sim.rename(from, to), || {})
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.step(|| self.sim.sync_dir(path), || {})
    }
}
