//! [`FaultDisk`]: the real file system, with a switch that makes every `fdatasync` fail with
//! `EIO` from then on, as a failing device does: one node's disk going bad under a running
//! group, while the others keep theirs.

#![allow(clippy::unwrap_used, dead_code)]

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cairn_storage::sim::EIO;
use cairn_storage::{Disk, DiskFile, RealDisk, RealFile};

/// What a [`FaultDisk`] and its files share.
#[derive(Debug, Default)]
struct Switch {
    /// Set: every `sync_data` fails with `EIO` and makes nothing durable.
    failing: AtomicBool,
    /// `sync_data` calls failed so far.
    failed: AtomicU64,
}

/// [`RealDisk`] whose file syncs can be made to fail (module docs). Clones share the switch.
#[derive(Clone, Debug, Default)]
pub struct FaultDisk {
    switch: Arc<Switch>,
}

impl FaultDisk {
    /// From now on every file sync fails with `EIO`.
    pub fn fail_syncs(&self) {
        self.switch.failing.store(true, Ordering::SeqCst);
    }

    /// File syncs failed so far.
    pub fn failed_syncs(&self) -> u64 {
        self.switch.failed.load(Ordering::SeqCst)
    }

    fn file(&self, file: io::Result<Arc<RealFile>>) -> io::Result<Arc<FaultFile>> {
        Ok(Arc::new(FaultFile { file: file?, switch: Arc::clone(&self.switch) }))
    }
}

/// A [`RealFile`] of a [`FaultDisk`].
pub struct FaultFile {
    file: Arc<RealFile>,
    switch: Arc<Switch>,
}

impl DiskFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        self.file.read_at(buf, position)
    }

    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        self.file.write_all_at(buf, position)
    }

    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.switch.failing.load(Ordering::SeqCst) {
            self.switch.failed.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.file.sync_data()
    }

    fn drop_cache(&self, from: u64, to: u64) {
        self.file.drop_cache(from, to);
    }
}

impl Disk for FaultDisk {
    type File = FaultFile;

    fn open(&self, path: &Path) -> io::Result<Arc<FaultFile>> {
        self.file(RealDisk.open(path))
    }

    fn open_read_only(&self, path: &Path) -> io::Result<Arc<FaultFile>> {
        self.file(RealDisk.open_read_only(path))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<FaultFile>> {
        self.file(RealDisk.create(path))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        RealDisk.create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        RealDisk.list_dir(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealDisk.remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealDisk.rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        RealDisk.sync_dir(path)
    }
}
