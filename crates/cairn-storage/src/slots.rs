//! Two fixed-size, checksummed slots in one small file, overwritten in turn: a state that
//! changes in place without a write ever leaving the file with no valid copy, since a torn
//! write damages one slot only. Used by the recovery checkpoint (`recovery-point`) and the Raft
//! vote (`raft-vote`); each decides which slot a write goes to and when it syncs.
//!
//! Slot layout, big-endian: `magic u32, sequence u64, payload [u8; payload_bytes], crc32c u32`,
//! the CRC32C covering every byte before it. Slot `i` starts at byte `i * stride`. The valid slot
//! with the higher sequence is the newest.

use std::io;
use std::path::Path;

use crate::disk::DiskFile;
use crate::error::{Result, io_error};

/// Bytes of a slot around its payload: magic, sequence, CRC.
const FRAME_BYTES: usize = 4 + 8 + 4;

/// The shape of one kind of slot file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotFormat {
    /// Identifies the file kind; a slot with another magic is invalid.
    pub magic: u32,
    /// Bytes of the payload the owner encodes.
    pub payload_bytes: usize,
    /// Distance in bytes from the start of slot 0 to the start of slot 1 (at least a slot).
    pub stride: u64,
}

/// One valid slot read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Which of the two slots (0 or 1).
    pub index: usize,
    /// The sequence number it was written with.
    pub sequence: u64,
    /// The owner's payload, `payload_bytes` long, checksummed.
    pub payload: Vec<u8>,
}

impl SlotFormat {
    /// Bytes of one slot.
    pub(crate) const fn slot_bytes(&self) -> usize {
        FRAME_BYTES + self.payload_bytes
    }

    /// Bytes of a file holding both slots.
    pub(crate) const fn file_bytes(&self) -> u64 {
        self.stride + self.slot_bytes() as u64
    }

    /// The bytes of a slot holding `payload` at `sequence`.
    ///
    /// # Panics
    /// If `payload` is not `payload_bytes` long: the owner's encoder has a fixed size.
    pub(crate) fn encode(&self, sequence: u64, payload: &[u8]) -> Vec<u8> {
        assert_eq!(payload.len(), self.payload_bytes, "slot payload of the wrong size");
        let mut slot = Vec::with_capacity(self.slot_bytes());
        slot.extend_from_slice(&self.magic.to_be_bytes());
        slot.extend_from_slice(&sequence.to_be_bytes());
        slot.extend_from_slice(payload);
        let crc = crc32c::crc32c(&slot);
        slot.extend_from_slice(&crc.to_be_bytes());
        slot
    }

    /// The sequence and payload of `slot`, or `None` if it is not a whole valid slot of this
    /// format (torn, damaged, zeros, another file's).
    pub(crate) fn decode<'a>(&self, slot: &'a [u8]) -> Option<(u64, &'a [u8])> {
        if slot.len() != self.slot_bytes() {
            return None;
        }
        let (body, crc) = slot.split_last_chunk::<4>()?;
        let (magic, rest) = body.split_first_chunk::<4>()?;
        let (sequence, payload) = rest.split_first_chunk::<8>()?;
        if u32::from_be_bytes(*magic) != self.magic || crc32c::crc32c(body).to_be_bytes() != *crc {
            return None;
        }
        Some((u64::from_be_bytes(*sequence), payload))
    }

    /// Both slots of `file` (at `path`, for errors), each `None` where it is not valid.
    pub(crate) fn read<F: DiskFile>(&self, file: &F, path: &Path) -> Result<[Option<Slot>; 2]> {
        let mut bytes = vec![0; self.slot_bytes()];
        let mut slots = [None, None];
        for (index, slot) in slots.iter_mut().enumerate() {
            let read =
                file.read_at(&mut bytes, self.position(index)).map_err(io_error("read", path))?;
            *slot = self.decode(&bytes[..read]).map(|(sequence, payload)| Slot {
                index,
                sequence,
                payload: payload.to_vec(),
            });
        }
        Ok(slots)
    }

    /// The highest number in the sequence field of either slot of `file`, valid or not (torn,
    /// damaged, zeros): what a torn write leaves of its sequence number, which the newest valid
    /// slot does not show. Bytes past the end of the file count as zeros.
    pub(crate) fn highest_sequence_field<F: DiskFile>(&self, file: &F, path: &Path) -> Result<u64> {
        let mut highest = 0;
        for index in 0..2 {
            // `read_at` fills the buffer unless the file ends first, leaving the rest zero.
            let mut field = [0u8; 8];
            file.read_at(&mut field, self.position(index) + 4).map_err(io_error("read", path))?;
            highest = highest.max(u64::from_be_bytes(field));
        }
        Ok(highest)
    }

    /// Writes `payload` at `sequence` into slot `index` of `file`. Not synced.
    ///
    /// # Errors
    /// IO errors; the slot may then hold any prefix of the new bytes over the old ones.
    pub(crate) fn write<F: DiskFile>(
        &self,
        file: &F,
        index: usize,
        sequence: u64,
        payload: &[u8],
    ) -> io::Result<()> {
        file.write_all_at(&self.encode(sequence, payload), self.position(index))
    }

    /// Byte position of slot `index`.
    fn position(&self, index: usize) -> u64 {
        debug_assert!(index < 2, "two slots");
        index as u64 * self.stride
    }
}

/// The newest of the valid slots, if any.
pub(crate) fn newest(slots: &[Option<Slot>; 2]) -> Option<&Slot> {
    slots.iter().flatten().max_by_key(|slot| slot.sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: SlotFormat = SlotFormat { magic: 0x5445_5354, payload_bytes: 5, stride: 64 };

    #[test]
    fn every_bit_flip_invalidates_a_slot() {
        let slot = FORMAT.encode(3, b"hello");
        assert_eq!(slot.len(), FORMAT.slot_bytes());
        assert_eq!(FORMAT.decode(&slot), Some((3, &b"hello"[..])));
        for bit in 0..slot.len() * 8 {
            let mut bad = slot.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(FORMAT.decode(&bad), None, "bit {bit}");
        }
        assert_eq!(FORMAT.decode(&slot[..slot.len() - 1]), None);
        let other = SlotFormat { magic: 0x5445_5355, ..FORMAT };
        assert_eq!(other.decode(&slot), None);
    }

    #[test]
    fn the_highest_sequence_field_counts_invalid_slots() {
        use crate::disk::Disk;
        use crate::sim::SimDisk;

        let disk = SimDisk::new(1);
        let path = Path::new("/slots");
        let file = disk.create(path).unwrap();
        assert_eq!(FORMAT.highest_sequence_field(&*file, path).unwrap(), 0, "an empty file");
        FORMAT.write(&*file, 0, 7, b"hello").unwrap();
        // Slot 1 torn: its frame and sequence, then not the rest (so no valid slot 1).
        let torn = FORMAT.encode(9, b"world");
        file.write_all_at(&torn[..14], FORMAT.position(1)).unwrap();
        let slots = FORMAT.read(&*file, path).unwrap();
        assert_eq!(newest(&slots).map(|slot| slot.sequence), Some(7));
        assert_eq!(FORMAT.highest_sequence_field(&*file, path).unwrap(), 9);
    }

    #[test]
    fn newest_is_the_highest_valid_sequence() {
        let slot = |index, sequence| Some(Slot { index, sequence, payload: Vec::new() });
        assert_eq!(newest(&[None, None]), None);
        assert_eq!(newest(&[slot(0, 4), slot(1, 5)]).map(|s| s.index), Some(1));
        assert_eq!(newest(&[slot(0, 6), slot(1, 5)]).map(|s| s.index), Some(0));
        assert_eq!(newest(&[None, slot(1, 1)]).map(|s| s.index), Some(1));
    }
}
