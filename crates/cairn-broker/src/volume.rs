//! [`Volume`]: the disk a broker hosts its partitions on — the logs' files through
//! [`cairn_storage::Disk`], plus the few operations on whole entries of `topics/` that the
//! broker's own directory protocol needs (listing, renaming or removing a partition directory).
//!
//! Two implementations: [`RealDisk`] (the file system, what `cairn serve` runs on) and
//! [`SimDisk`] (tests). `SimDisk` models the durability of files and names, not of directories:
//! its directories are always there and are not entries of their parent. So on a `SimDisk`
//! broker a start finds no directory to migrate, doom or move aside, and removing a partition
//! removes its files; the directory protocol itself is tested on real disks.

use std::ffi::OsString;
use std::io;
use std::path::Path;

use cairn_storage::sim::SimDisk;
use cairn_storage::{Disk, RealDisk};

/// A [`Disk`] with the entry operations of the broker's directory protocol.
pub trait Volume: Disk + Clone {
    /// Names of the entries of `dir` (files and directories), in no particular order.
    ///
    /// # Errors
    /// IO errors.
    fn entries(&self, dir: &Path) -> io::Result<Vec<OsString>>;

    /// Whether anything (file, directory, symlink) has the name `path`.
    fn occupied(&self, path: &Path) -> bool;

    /// Renames an entry (a directory included), replacing nothing that is a non-empty
    /// directory. Not durable until [`Disk::sync_dir`] of both parents.
    ///
    /// # Errors
    /// IO errors.
    fn rename_entry(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file or a directory tree; gone already is fine. Not durable until
    /// [`Disk::sync_dir`] of the parent.
    ///
    /// # Errors
    /// IO errors.
    fn remove_entry(&self, path: &Path) -> io::Result<()>;
}

impl Volume for RealDisk {
    fn entries(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(dir)?.map(|entry| entry.map(|entry| entry.file_name())).collect()
    }

    fn occupied(&self, path: &Path) -> bool {
        path.symlink_metadata().is_ok()
    }

    fn rename_entry(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_entry(&self, path: &Path) -> io::Result<()> {
        let removed = match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
            Ok(_) => std::fs::remove_file(path),
            Err(error) => Err(error),
        };
        match removed {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

impl Volume for SimDisk {
    fn entries(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        Ok(self.list_dir(dir)?.into_iter().map(OsString::from).collect())
    }

    fn occupied(&self, path: &Path) -> bool {
        self.list_dir(path).is_ok_and(|names| !names.is_empty())
            || self.open_read_only(path).is_ok()
    }

    fn rename_entry(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.rename(from, to)
    }

    fn remove_entry(&self, path: &Path) -> io::Result<()> {
        let removed = match self.list_dir(path) {
            // A directory: its files go; the directory itself stays (see the module docs).
            Ok(names) => names.iter().try_for_each(|name| self.remove_file(&path.join(name))),
            Err(_) => self.remove_file(path),
        };
        match removed {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}
