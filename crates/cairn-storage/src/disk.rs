//! The disk boundary: every byte cairn-storage reads or writes goes through [`Disk`] and
//! [`DiskFile`], so the same log code runs on the real file system ([`RealDisk`]) and on the
//! seeded, fault-injecting [`crate::sim::SimDisk`].
//!
//! The traits are deliberately small and POSIX-shaped: positional reads and writes, `fdatasync`,
//! and explicit directory syncs. Their obligations are the ones a POSIX file system gives, no more:
//! a write is durable only after [`DiskFile::sync_data`] returns `Ok`; a created, removed or
//! renamed name is durable only after [`Disk::sync_dir`] on its parent returns `Ok`.
//!
//! A handle is not a descriptor: [`RealFile`]s share a bounded, process-wide cache of open
//! descriptors ([`crate::descriptors`]), so a process may hold handles of more files than its
//! open-file limit.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::descriptors::{self, Entry};

/// A file handle. Shared between the log and readers (`Arc`), so every method takes `&self`.
/// Whether it holds an OS descriptor is the implementation's business: [`RealFile`] opens one
/// on use and may close it between uses, never losing an unsynced write or a sync error.
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

    /// Opens an existing file for reading only: writes and length changes through the handle
    /// fail (`EBADF`). For offline inspection, which must not change what it reads and must work
    /// on a read-only file system.
    ///
    /// # Errors
    /// As [`Disk::open`].
    fn open_read_only(&self, path: &Path) -> io::Result<Arc<Self::File>>;

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

    /// Removes a file name. Handles of the file stay usable as long as they hold it open; a
    /// [`RealFile`] whose descriptor the cache had closed fails with `NotFound` from then on
    /// (it never reopens the name, which may name another file by then).
    ///
    /// # Errors
    /// IO errors.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Atomically renames `from` to `to`, replacing `to`. Handles of either file behave as
    /// after [`Disk::remove_file`] of their old name.
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

/// The real file system through `std::fs`. Its files share the process-wide descriptor cache
/// ([`crate::descriptors`]): a [`RealFile`] opens its descriptor on use and the cache closes the
/// least recently used ones beyond its capacity, so the number of files is not bounded by the
/// open-file limit.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealDisk;

/// A file of the real file system: its path, and a descriptor while the descriptor cache keeps
/// one open (see [`crate::descriptors`] for when it is closed and what is never done).
pub struct RealFile {
    entry: Arc<Entry>,
}

impl std::fmt::Debug for RealFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealFile").finish_non_exhaustive()
    }
}

impl RealFile {
    fn open_with(path: &Path, options: &OpenOptions, writable: bool) -> io::Result<Arc<RealFile>> {
        Ok(Arc::new(RealFile { entry: Entry::open(path, options, writable)? }))
    }

    /// The descriptor, for zero-copy sends (`sendfile`) of the file's bytes. Hold it for one
    /// operation only: while held it stays valid (even if the file is removed meanwhile) and the
    /// cache does not close it.
    ///
    /// # Errors
    /// `NotFound` if the file was removed or renamed after the cache closed its descriptor;
    /// errors reopening it.
    pub fn lease(&self) -> io::Result<Arc<File>> {
        self.entry.lease()
    }

    /// Appends the `len` bytes at `position` to `buf` (fewer at the end of the file); returns
    /// how many. Reads into the vector's spare capacity, so a caller filling a large buffer
    /// does not zero it first as [`DiskFile::read_at`] needs.
    ///
    /// # Errors
    /// IO errors from the device; as [`RealFile::lease`].
    pub fn read_append(&self, buf: &mut Vec<u8>, len: usize, position: u64) -> io::Result<usize> {
        self.entry.with_fd(false, |file| {
            let start = buf.len();
            buf.reserve_exact(len);
            while buf.len() - start < len {
                let done = buf.len() - start;
                match rustix::io::pread(
                    file,
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
        })
    }
}

impl DiskFile for RealFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        self.entry.with_fd(false, |file| {
            let mut done = 0;
            while done < buf.len() {
                match file.read_at(&mut buf[done..], position + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(done)
        })
    }

    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        self.entry.with_fd(true, |file| file.write_all_at(buf, position))
    }

    fn len(&self) -> io::Result<u64> {
        self.entry.with_fd(false, |file| Ok(file.metadata()?.len()))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.entry.with_fd(true, |file| file.set_len(len))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.entry.sync_data()
    }

    fn drop_cache(&self, from: u64, to: u64) {
        if let Some(len) = std::num::NonZeroU64::new(to.saturating_sub(from)) {
            // Advice: a failure leaves the pages cached, which is what not asking would do.
            let _ = self.entry.with_fd(false, |file| {
                Ok(rustix::fs::fadvise(file, from, Some(len), rustix::fs::Advice::DontNeed))
            });
        }
    }
}

impl Disk for RealDisk {
    type File = RealFile;

    fn open(&self, path: &Path) -> io::Result<Arc<RealFile>> {
        RealFile::open_with(path, OpenOptions::new().read(true).write(true), true)
    }

    fn open_read_only(&self, path: &Path) -> io::Result<Arc<RealFile>> {
        RealFile::open_with(path, OpenOptions::new().read(true), false)
    }

    fn create(&self, path: &Path) -> io::Result<Arc<RealFile>> {
        RealFile::open_with(path, OpenOptions::new().read(true).write(true).create_new(true), true)
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
        // Forgotten first: between the two, a reopen by this name could find another file.
        descriptors::forget_name(path);
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if from != to {
            descriptors::forget_name(from);
            descriptors::forget_name(to);
        }
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

/// Removes `path`; a file that is not there is not an error.
///
/// # Errors
/// [`crate::Error::Io`] for any other failure.
pub(crate) fn remove_if_present<D: Disk>(disk: &D, path: &Path) -> crate::Result<()> {
    match disk.remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(crate::error::io_error("remove", path)(error)),
    }
}
