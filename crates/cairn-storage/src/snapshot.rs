//! The Raft snapshot of a partition replica: the `raft-snapshot` file of its directory.
//!
//! A partition's Raft snapshot is small: the Raft layer encodes its last log id, membership, log
//! start offset and later producer state into opaque bytes (the records themselves stay in the
//! log, RFC 0003 §3). This module stores those bytes in one checksummed record, replaced
//! atomically (`crate::atomic`): after a crash the file holds the old snapshot or the new one.
//!
//! Layout, big-endian: `magic u32, version u32, length u32, bytes [u8; length], crc32c u32`, the
//! CRC32C covering every byte before it; `length` is at most
//! [`cairn_types::limits::SNAPSHOT_BYTES_MAX`].
//!
//! [`write_state_file`] and [`read_state_file`] keep other state files in the same format under
//! a name and a limit of their caller's: the consistent core's state machine snapshot, which is
//! larger (cairn-raft's `core-state`).

use std::io;
use std::path::Path;

use cairn_types::limits::SNAPSHOT_BYTES_MAX;

use crate::atomic;
use crate::disk::{Disk, DiskFile, child};
use crate::error::{Error, Result, io_error};

/// File name of the snapshot.
pub(crate) const FILE_NAME: &str = "raft-snapshot";
const MAGIC: u32 = 0x4341_5253; // "CARS"
/// The only format version written and read.
const VERSION: u32 = 1;
/// Magic, version, length.
const HEADER_BYTES: usize = 12;
const CRC_BYTES: usize = 4;

/// Reads the snapshot of the replica in `dir`: `None` if it has none (no file). A temporary
/// file a crashed write left is not looked at. Read-only: writes nothing.
///
/// # Errors
/// - [`Error::Corruption`]: the file is damaged (checksum, framing, a size above
///   [`SNAPSHOT_BYTES_MAX`], an unknown format version). Keep the replica offline: its Raft state
///   is unknown.
/// - [`Error::Io`]: reading failed.
pub fn read_snapshot<D: Disk>(disk: &D, dir: &Path) -> Result<Option<Vec<u8>>> {
    read_state_file(disk, dir, FILE_NAME, SNAPSHOT_BYTES_MAX)
}

/// Durably replaces the snapshot of the replica in `dir` with `snapshot`: on return it is on
/// disk, and a crash before leaves the old one (or none). `dir` must exist and be durable (the
/// log's open makes it so).
///
/// # Errors
/// - [`Error::SnapshotSize`]: `snapshot` is above [`SNAPSHOT_BYTES_MAX`]; nothing was written.
/// - [`Error::NoSpace`]: the disk is full; the old snapshot is in place, a retry may succeed.
/// - [`Error::Io`]: the file holds the old or the new snapshot, which one is durable is unknown:
///   stop the group and read it again after a restart.
pub fn write_snapshot<D: Disk>(disk: &D, dir: &Path, snapshot: &[u8]) -> Result<()> {
    write_state_file(disk, dir, FILE_NAME, snapshot, SNAPSHOT_BYTES_MAX)
}

/// Reads the state file `name` of `dir`, written by [`write_state_file`] with the same
/// `bytes_max` (at most `u32::MAX`): `None` if there is no such file. The same format and
/// checks as `raft-snapshot`, for a state machine's larger snapshot (the consistent core's).
///
/// # Errors
/// As [`read_snapshot`], with `bytes_max` as the limit.
pub fn read_state_file<D: Disk>(
    disk: &D,
    dir: &Path,
    name: &str,
    bytes_max: usize,
) -> Result<Option<Vec<u8>>> {
    let path = child(dir, name);
    let file = match disk.open_read_only(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("open", &path)(error)),
    };
    let len = file.len().map_err(io_error("stat", &path))?;
    let corrupt = |reason: String| Error::Corruption { path: path.clone(), position: 0, reason };
    let file_bytes_max = (HEADER_BYTES + bytes_max + CRC_BYTES) as u64;
    if len > file_bytes_max {
        return Err(corrupt(format!("{len} bytes, above the largest {name} file")));
    }
    let mut bytes = vec![0; len as usize]; // at most file_bytes_max, checked above
    let read = file.read_at(&mut bytes, 0).map_err(io_error("read", &path))?;
    bytes.truncate(read);
    decode(&bytes).map(|snapshot| Some(snapshot.to_vec())).map_err(corrupt)
}

/// Durably replaces (or creates) the state file `name` of `dir` with `bytes`, as
/// [`write_snapshot`] does `raft-snapshot`; `bytes_max` is at most `u32::MAX`.
///
/// # Errors
/// As [`write_snapshot`], with `bytes_max` as the limit.
pub fn write_state_file<D: Disk>(
    disk: &D,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    bytes_max: usize,
) -> Result<()> {
    if bytes.len() > bytes_max || u32::try_from(bytes.len()).is_err() {
        return Err(Error::SnapshotSize { bytes: bytes.len(), limit: bytes_max });
    }
    atomic::replace(disk, dir, name, &encode(bytes)).map_err(|failed| failed.error)
}

/// The file's bytes for `snapshot`, whose length its writer checked to fit a `u32`.
fn encode(snapshot: &[u8]) -> Vec<u8> {
    let length = u32::try_from(snapshot.len()).expect("checked by write_state_file");
    let mut bytes = Vec::with_capacity(HEADER_BYTES + snapshot.len() + CRC_BYTES);
    bytes.extend_from_slice(&MAGIC.to_be_bytes());
    bytes.extend_from_slice(&VERSION.to_be_bytes());
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(snapshot);
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    bytes
}

/// The snapshot bytes of a file's content, or why it is not a valid snapshot file.
fn decode(bytes: &[u8]) -> Result<&[u8], String> {
    let (body, crc) = bytes
        .split_last_chunk::<CRC_BYTES>()
        .filter(|(body, _)| body.len() >= HEADER_BYTES)
        .ok_or_else(|| format!("{} bytes, shorter than the smallest snapshot file", bytes.len()))?;
    if crc32c::crc32c(body).to_be_bytes() != *crc {
        return Err("checksum mismatch".to_owned());
    }
    let (header, snapshot) = body.split_at(HEADER_BYTES);
    let field = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    if field(0) != MAGIC {
        return Err(format!("magic {:#010x} is not a snapshot's", field(0)));
    }
    if field(4) != VERSION {
        return Err(format!("format version {} is not supported", field(4)));
    }
    if field(8) as usize != snapshot.len() {
        return Err(format!("length {} but {} bytes follow", field(8), snapshot.len()));
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_roundtrip() {
        let bytes = encode(b"membership");
        assert_eq!(bytes[0..4], *b"CARS");
        assert_eq!(bytes[8..12], 10u32.to_be_bytes());
        assert_eq!(bytes.len(), HEADER_BYTES + 10 + CRC_BYTES);
        assert_eq!(decode(&bytes), Ok(&b"membership"[..]));
        assert_eq!(decode(&encode(b"")), Ok(&b""[..]));
    }

    #[test]
    fn a_valid_checksum_over_a_wrong_header_is_refused() {
        let reseal = |mut bytes: Vec<u8>| {
            bytes.truncate(bytes.len() - CRC_BYTES);
            let crc = crc32c::crc32c(&bytes);
            bytes.extend_from_slice(&crc.to_be_bytes());
            bytes
        };
        let mut version = encode(b"x");
        version[7] = 2;
        assert!(decode(&reseal(version)).unwrap_err().contains("version 2"));
        let mut length = encode(b"x");
        length[11] = 2;
        assert!(decode(&reseal(length)).unwrap_err().contains("length 2"));
        let mut magic = encode(b"x");
        magic[0] = 0;
        assert!(decode(&reseal(magic)).unwrap_err().contains("magic"));
        assert!(decode(&[0; 15]).unwrap_err().contains("shorter"));
    }
}
