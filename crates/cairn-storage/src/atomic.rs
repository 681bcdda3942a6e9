//! Replacing a small file atomically: write a temporary file, fsync it, rename it over the file,
//! fsync the directory. A crash at any point leaves the old content or the new one under the
//! name, never a mix; a temporary file left by a crash is removed by the next replacement and
//! read by no one.
//!
//! Used by the leader-epoch history (`leader-epochs`), the Raft snapshot (`raft-snapshot`) and
//! the first write of the Raft vote (`raft-vote`). cairn-meta's `local.rs` (`metadata.json`)
//! follows the same steps with code of its own.

use std::io;
use std::path::Path;

use crate::disk::{Disk, DiskFile, child};
use crate::error::{Error, io_error, io_or_no_space};

/// A failed [`replace`], and whether the old content is known to be what the name holds.
#[derive(Debug)]
pub(crate) struct ReplaceError {
    /// What failed.
    pub error: Error,
    /// `true`: it failed before the rename, the name holds the old content (or nothing, as
    /// before) and a retry is safe. `false`: it failed at or after the rename, the name holds
    /// the old or the new content, and which is durable is unknown.
    pub old_intact: bool,
}

/// The name of the temporary file [`replace`] writes before renaming it to `name`.
pub(crate) fn temp_name(name: &str) -> String {
    format!("{name}.tmp")
}

/// Durably replaces (or creates) the file `name` of `dir` with `bytes`. `dir` must exist, and
/// its own name be durable.
///
/// # Errors
/// [`ReplaceError`]: [`Error::NoSpace`] for a full disk (then always before the rename),
/// [`Error::Io`] otherwise.
pub(crate) fn replace<D: Disk>(
    disk: &D,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), ReplaceError> {
    let intact = |error| ReplaceError { error, old_intact: true };
    let temp = child(dir, &temp_name(name));
    match disk.remove_file(&temp) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(intact(io_error("remove", &temp)(error))),
    }
    let file = disk.create(&temp).map_err(|e| intact(io_or_no_space("create", &temp)(e)))?;
    file.write_all_at(bytes, 0).map_err(|e| intact(io_or_no_space("write", &temp)(e)))?;
    file.sync_data().map_err(|e| intact(io_error("fsync", &temp)(e)))?;
    drop(file);
    let unknown = |error| ReplaceError { error, old_intact: false };
    let path = child(dir, name);
    disk.rename(&temp, &path).map_err(|e| unknown(io_error("rename", &path)(e)))?;
    disk.sync_dir(dir).map_err(|e| unknown(io_error("fsync dir", dir)(e)))
}
