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
//! Two fixed slots alternate, each with its own sequence number and CRC32C, so a torn write of
//! one slot leaves the other. Slot layout, big-endian, [`SLOT_BYTES`] bytes:
//! `magic: u32, sequence: u64, segment_base: u64, position: u64, next_offset: u64, crc32c: u32`.

use std::path::Path;
use std::sync::Arc;

use cairn_types::Offset;

use crate::disk::{Disk, DiskFile, child};
use crate::error::{Result, io_error};

/// File name of the checkpoint.
pub(crate) const FILE_NAME: &str = "recovery-point";
const MAGIC: u32 = 0x4341_5250; // "CARP"
const SLOT_BYTES: usize = 40;

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

fn encode(sequence: u64, point: RecoveryPoint) -> [u8; SLOT_BYTES] {
    let mut slot = [0u8; SLOT_BYTES];
    slot[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    slot[4..12].copy_from_slice(&sequence.to_be_bytes());
    slot[12..20].copy_from_slice(&point.segment_base.0.to_be_bytes());
    slot[20..28].copy_from_slice(&point.position.to_be_bytes());
    slot[28..36].copy_from_slice(&point.next_offset.0.to_be_bytes());
    let crc = crc32c::crc32c(&slot[..36]);
    slot[36..40].copy_from_slice(&crc.to_be_bytes());
    slot
}

fn decode(slot: &[u8]) -> Option<(u64, RecoveryPoint)> {
    let u64_at = |at: usize| u64::from_be_bytes(slot[at..at + 8].try_into().expect("8 bytes"));
    if slot.len() != SLOT_BYTES
        || slot[0..4] != MAGIC.to_be_bytes()
        || crc32c::crc32c(&slot[..36]).to_be_bytes() != slot[36..40]
    {
        return None;
    }
    let point = RecoveryPoint {
        segment_base: Offset(u64_at(12)),
        position: u64_at(20),
        next_offset: Offset(u64_at(28)),
    };
    Some((u64_at(4), point))
}

/// The newest valid slot of an open checkpoint file: its sequence number and point.
fn newest_slot<F: DiskFile>(file: &F, path: &Path) -> Result<Option<(u64, RecoveryPoint)>> {
    let mut bytes = [0u8; 2 * SLOT_BYTES];
    let read = file.read_at(&mut bytes, 0).map_err(io_error("read", path))?;
    Ok(bytes[..read]
        .chunks_exact(SLOT_BYTES)
        .filter_map(decode)
        .max_by_key(|(sequence, _)| *sequence))
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
        self.file.write_all_at(&encode(self.sequence, point), (slot * SLOT_BYTES) as u64)
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
    fn every_bit_flip_invalidates_a_slot() {
        let point =
            RecoveryPoint { segment_base: Offset(7), position: 4096, next_offset: Offset(99) };
        let slot = encode(3, point);
        assert_eq!(decode(&slot), Some((3, point)));
        for bit in 0..SLOT_BYTES * 8 {
            let mut bad = slot;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode(&bad), None, "bit {bit}");
        }
    }
}
