//! The recovery checkpoint: how far the log is known to be durable and valid, so that opening the
//! log walks only what came after it (cost proportional to the unflushed tail, not the log size).
//!
//! A checkpoint `(segment_base, position, next_offset)` claims: every segment before
//! `segment_base` was fsynced, together with its index, when the log rolled past it; and the
//! first `position` bytes of segment `segment_base` were fsynced before the checkpoint was written.
//! Because it is written only after the fsync it describes returned, it never claims more than is
//! durable, so it need not be fsynced itself: a lost checkpoint means an older one (or none) and a
//! longer walk, never a wrong recovery. It is fsynced on clean shutdown.
//!
//! Two fixed slots alternate (`crate::slots`), each with its own sequence number and CRC32C, so a
//! torn write of one slot leaves the other. Two adjacent 40-byte slots, big-endian:
//! `magic: u32, sequence: u64, segment_base: u64, position: u64, next_offset: u64, crc32c: u32`.

use std::path::Path;
use std::sync::Arc;

use cairn_types::Offset;

use crate::disk::{Disk, DiskFile, child};
use crate::error::{Result, io_error};
use crate::slots::{self, SlotFormat};

/// File name of the checkpoint.
pub(crate) const FILE_NAME: &str = "recovery-point";
/// Two adjacent 40-byte slots with a 24-byte payload.
const FORMAT: SlotFormat =
    SlotFormat { magic: 0x4341_5250 /* "CARP" */, payload_bytes: 24, stride: 40 };

/// What a checkpoint claims; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecoveryPoint {
    pub segment_base: Offset,
    pub position: u64,
    pub next_offset: Offset,
}

/// The open checkpoint file.
pub(crate) struct Checkpoint<F> {
    file: Arc<F>,
    /// Sequence number of the last slot written; the next write uses `sequence + 1`.
    sequence: u64,
}

fn encode(point: RecoveryPoint) -> [u8; 24] {
    let mut payload = [0u8; 24];
    payload[0..8].copy_from_slice(&point.segment_base.0.to_be_bytes());
    payload[8..16].copy_from_slice(&point.position.to_be_bytes());
    payload[16..24].copy_from_slice(&point.next_offset.0.to_be_bytes());
    payload
}

fn decode(payload: &[u8]) -> RecoveryPoint {
    let u64_at = |at: usize| u64::from_be_bytes(payload[at..at + 8].try_into().expect("8 bytes"));
    RecoveryPoint {
        segment_base: Offset(u64_at(0)),
        position: u64_at(8),
        next_offset: Offset(u64_at(16)),
    }
}

/// The newest valid slot of an open checkpoint file: its sequence number and point.
fn newest_slot<F: DiskFile>(file: &F, path: &Path) -> Result<Option<(u64, RecoveryPoint)>> {
    let slots = FORMAT.read(file, path)?;
    Ok(slots::newest(&slots).map(|slot| (slot.sequence, decode(&slot.payload))))
}

/// The newest valid recovery point of the log in `dir`, or `None` if there is no checkpoint file
/// or no valid slot in it. Read-only: creates and writes nothing (offline inspection).
pub(crate) fn read_point<D: Disk>(disk: &D, dir: &Path) -> Result<Option<RecoveryPoint>> {
    let path = child(dir, FILE_NAME);
    match disk.open_read_only(&path) {
        Ok(file) => Ok(newest_slot(&*file, &path)?.map(|(_, point)| point)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error("open", &path)(error)),
    }
}

impl<F: DiskFile> Checkpoint<F> {
    /// Opens (creating if needed) the checkpoint of the log in `dir` and returns the newest valid
    /// recovery point in it, and whether the file was created: its name is then durable only
    /// after the caller syncs `dir` (once for every file it creates there).
    pub(crate) fn open<D: Disk<File = F>>(
        disk: &D,
        dir: &Path,
    ) -> Result<(Checkpoint<F>, Option<RecoveryPoint>, bool)> {
        let path = child(dir, FILE_NAME);
        let (file, created) = match disk.open(&path) {
            Ok(file) => (file, false),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                (disk.create(&path).map_err(io_error("create", &path))?, true)
            }
            Err(error) => return Err(io_error("open", &path)(error)),
        };
        let newest = newest_slot(&*file, &path)?;
        let sequence = newest.map_or(0, |(sequence, _)| sequence);
        Ok((Checkpoint { file, sequence }, newest.map(|(_, point)| point), created))
    }

    /// Writes `point` into the older slot. Not synced: see the module docs.
    pub(crate) fn write(&mut self, point: RecoveryPoint) -> std::io::Result<()> {
        self.sequence += 1;
        let slot = (self.sequence % 2) as usize;
        FORMAT.write(&*self.file, slot, self.sequence, &encode(point))
    }

    /// Makes the last written point durable (clean shutdown).
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_layout_is_unchanged() {
        let point =
            RecoveryPoint { segment_base: Offset(7), position: 4096, next_offset: Offset(99) };
        let slot = FORMAT.encode(3, &encode(point));
        assert_eq!(slot.len(), 40);
        assert_eq!(slot[0..4], *b"CARP");
        assert_eq!(slot[4..12], 3u64.to_be_bytes());
        assert_eq!(slot[12..20], 7u64.to_be_bytes());
        assert_eq!(slot[36..40], crc32c::crc32c(&slot[..36]).to_be_bytes());
        let (sequence, payload) = FORMAT.decode(&slot).expect("a valid slot");
        assert_eq!((sequence, decode(payload)), (3, point));
    }
}
