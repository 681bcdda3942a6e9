//! The disk boundary: every byte cairn-storage reads or writes goes through [`Disk`] and
//! [`DiskFile`], so the same log code runs on the real file system ([`RealDisk`]) and on the
//! seeded, fault-injecting [`crate::sim::SimDisk`].
//!
//! The traits are deliberately small and POSIX-shaped: positional reads and writes, `fdatasync`,
//! and explicit directory syncs. Their obligations are the ones a POSIX file system gives, no more:
//! a write is durable only after [`DiskFile::sync_data`] returns `Ok`; a created, removed or
//! renamed name is durable only after [`Disk::sync_dir`] on its parent returns `Ok`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open file. Shared between the log and readers (`Arc`), so every method takes `&self`.
#[allow(clippy::len_without_is_empty)] // a file's emptiness is never the question asked
pub trait DiskFile: Send + Sync + 'static {
    /// Reads up to `buf.len()` bytes at `position`; returns how many were read (0 at or past the
    /// end). May return fewer bytes than asked even before the end only if the file shrank.
    ///
    /// # Errors
    /// IO errors from the device.
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize>;

    /// Writes all of `buf` at `position`. Not durable until [`DiskFile::sync_data`].
    ///
    /// # Errors
    /// IO errors; after an error an unknown prefix of `buf` may have been written.
    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()>;

    /// Current length in bytes.
    ///
    /// # Errors
    /// IO errors.
    fn len(&self) -> io::Result<u64>;

    /// Truncates or extends (with zeros) to `len`. Not durable until [`DiskFile::sync_data`].
    ///
    /// # Errors
    /// IO errors.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// `fdatasync`: makes every completed write and length change durable.
    ///
    /// # Errors
    /// IO errors. After an error the durable state of the file is unknown: callers fail stop.
    fn sync_data(&self) -> io::Result<()>;

    /// Advice that `[from, to)` will not be read soon, so the OS may drop its cached pages
    /// (`POSIX_FADV_DONTNEED`). Never changes content or durability: dirty pages are kept.
    /// Best effort, so there is no error to report.
    fn drop_cache(&self, _from: u64, _to: u64) {}
}

/// A file system rooted anywhere. Paths are absolute or relative to the process, as with `std::fs`.
pub trait Disk: Send + Sync + 'static {
    /// The file handle type.
    type File: DiskFile;

    /// Opens an existing file for reading and writing.
    ///
    /// # Errors
    /// `NotFound` if it does not exist, or other IO errors.
    fn open(&self, path: &Path) -> io::Result<Arc<Self::File>>;

    /// Creates a new, empty file for reading and writing; fails if it exists.
    ///
    /// # Errors
    /// `AlreadyExists`, or other IO errors.
    fn create(&self, path: &Path) -> io::Result<Arc<Self::File>>;

    /// Creates a directory and its parents.
    ///
    /// # Errors
    /// IO errors.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Names of the entries of a directory, in no particular order.
    ///
    /// # Errors
    /// IO errors.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// Removes a file name. Open handles stay usable.
    ///
    /// # Errors
    /// IO errors.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Atomically renames `from` to `to`, replacing `to`.
    ///
    /// # Errors
    /// IO errors.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Makes the directory's entries (creates, removes, renames) durable.
    ///
    /// # Errors
    /// IO errors; callers fail stop.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// The real file system through `std::fs`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealDisk;

/// A file of the real file system.
#[derive(Debug)]
pub struct RealFile {
    file: File,
}

impl RealFile {
    /// Appends the `len` bytes at `position` to `buf` (fewer at the end of the file); returns
    /// how many. Reads into the vector's spare capacity, so a caller filling a large buffer
    /// does not zero it first as [`DiskFile::read_at`] needs.
    ///
    /// # Errors
    /// IO errors from the device.
    pub fn read_append(&self, buf: &mut Vec<u8>, len: usize, position: u64) -> io::Result<usize> {
        let start = buf.len();
        buf.reserve_exact(len);
        while buf.len() - start < len {
            let done = buf.len() - start;
            match rustix::io::pread(
                &self.file,
                rustix::buffer::spare_capacity(buf),
                position + done as u64,
            ) {
                Ok(0) => break,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(error) => return Err(error.into()),
            }
        }
        // The spare capacity may have taken more than asked: keep the range only.
        buf.truncate(start + len);
        Ok(buf.len() - start)
    }
}

impl DiskFile for RealFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], position + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(done)
    }

    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        self.file.write_all_at(buf, position)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn drop_cache(&self, from: u64, to: u64) {
        if let Some(len) = std::num::NonZeroU64::new(to.saturating_sub(from)) {
            // Advice: a failure leaves the pages cached, which is what not asking would do.
            let _ = rustix::fs::fadvise(&self.file, from, Some(len), rustix::fs::Advice::DontNeed);
        }
    }
}

/// The descriptor, for zero-copy sends (`sendfile`) of the file's bytes.
impl std::os::fd::AsFd for RealFile {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Disk for RealDisk {
    type File = RealFile;

    fn open(&self, path: &Path) -> io::Result<Arc<RealFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(RealFile { file }))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<RealFile>> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        Ok(Arc::new(RealFile { file }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// Joins a directory and a file name; a helper so call sites read as intent.
pub(crate) fn child(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
