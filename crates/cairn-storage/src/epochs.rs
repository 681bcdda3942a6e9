//! The leader-epoch history of a log: which epoch appended which offsets (Kafka's
//! `leader-epoch-checkpoint`, Raft's term of each entry).
//!
//! The history serves two purposes: Raft and Kafka's fetch-by-epoch ask "which epoch wrote offset
//! X" and "where did epoch E end", and every stored batch's epoch is checked against it. The
//! epoch field of a batch lies outside the batch CRC, so this check is what detects a damaged epoch.
//!
//! Each epoch start records both the offset and the Raft index of the epoch's first batch.
//!
//! It is persisted in its own small checksummed file, rewritten atomically (write temp, fsync,
//! rename, fsync directory) before the first batch of a new epoch is written. Version 2 (magic
//! `CAE2`): `magic u32, count u64, (epoch i32, start_offset u64, start_index u64)*, crc32c u32`.
//! Version 1 (magic `CAEP`, written before Raft indexes) has no start indexes: it is read, the
//! log fills them in from its segments and rewrites the file as version 2 (`recovery.rs`).

use std::path::Path;

use cairn_types::{LeaderEpoch, Offset, RaftIndex};

use crate::atomic;
use crate::disk::{Disk, DiskFile, child};
use crate::error::{Result, io_error};

/// File name of the persisted history.
pub(crate) const FILE_NAME: &str = "leader-epochs";
/// Version 1: `(epoch, start_offset)` entries.
const MAGIC_V1: u32 = 0x4341_4550; // "CAEP"
/// Version 2: `(epoch, start_offset, start_index)` entries.
const MAGIC_V2: u32 = 0x4341_4532; // "CAE2"
/// Bytes before the entries: magic and count.
const HEAD_BYTES: usize = 12;
/// Entries the file may hold; far above any real history (one entry per leader change).
const ENTRIES_MAX: usize = 1 << 20;

/// Where an epoch's first batch is: its offset and its Raft index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochStart {
    /// The leader epoch.
    pub epoch: LeaderEpoch,
    /// First offset appended in that epoch.
    pub start_offset: Offset,
    /// Raft index of the first batch appended in that epoch.
    pub start_index: RaftIndex,
}

/// Which version of the file a history was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Version 1: every `start_index` is zero until the log fills it in.
    V1,
    /// Version 2, the current one.
    V2,
}

/// Epoch starts, strictly increasing in epoch and in start offset and start index together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Epochs {
    entries: Vec<EpochStart>,
}

impl Epochs {
    pub(crate) fn entries(&self) -> &[EpochStart] {
        &self.entries
    }

    pub(crate) fn latest(&self) -> Option<EpochStart> {
        self.entries.last().copied()
    }

    /// The epoch that wrote `offset`, if any entry starts at or before it.
    pub(crate) fn epoch_at(&self, offset: Offset) -> Option<LeaderEpoch> {
        let after = self.entries.partition_point(|e| e.start_offset <= offset);
        after.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    /// Records that `epoch` starts at `start_offset`.
    ///
    /// # Panics
    /// If either would not increase: the log checks epochs before calling.
    pub(crate) fn push(&mut self, start: EpochStart) {
        if let Some(last) = self.entries.last() {
            assert!(start.epoch > last.epoch, "epoch {} after {}", start.epoch, last.epoch);
            assert!(start.start_offset >= last.start_offset, "epoch start going backwards");
            assert_eq!(
                start.start_offset == last.start_offset,
                start.start_index == last.start_index,
                "epoch start offsets and indexes move together"
            );
            if start.start_offset == last.start_offset {
                // The previous epoch wrote nothing: it is superseded.
                self.entries.pop();
            }
        }
        self.entries.push(start);
    }

    /// Forgets epochs that start at or after `offset` (suffix truncation); returns whether any went.
    pub(crate) fn truncate_from(&mut self, offset: Offset) -> bool {
        let keep = self.entries.partition_point(|e| e.start_offset < offset);
        let changed = keep != self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// The epochs as entries of `(epoch, start_offset)` only: a version 1 history, whose start
    /// indexes `index_of` fills in. Entries starting before `log_start` are first clamped to it
    /// (the latest of them starts there, the others go: no batch of theirs is left), as Kafka
    /// does when its log start moves.
    ///
    /// # Errors
    /// Whatever `index_of` returns.
    pub(crate) fn fill_indexes<E>(
        &mut self,
        log_start: Offset,
        mut index_of: impl FnMut(Offset) -> Result<RaftIndex, E>,
    ) -> Result<(), E> {
        let before = self.entries.partition_point(|e| e.start_offset <= log_start);
        if before > 1 {
            self.entries.drain(..before - 1);
        }
        if let Some(first) = self.entries.first_mut() {
            first.start_offset = first.start_offset.max(log_start);
        }
        for entry in &mut self.entries {
            entry.start_index = index_of(entry.start_offset)?;
        }
        Ok(())
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD_BYTES + self.entries.len() * 20 + 4);
        out.extend_from_slice(&MAGIC_V2.to_be_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_be_bytes());
        for entry in &self.entries {
            out.extend_from_slice(&entry.epoch.0.to_be_bytes());
            out.extend_from_slice(&entry.start_offset.0.to_be_bytes());
            out.extend_from_slice(&entry.start_index.0.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a persisted history of either version; `None` if the file is damaged or not a
    /// history. A version 1 history's start indexes are zero.
    fn decode(bytes: &[u8]) -> Option<(Epochs, Format)> {
        let (body, crc) = bytes.split_last_chunk::<4>()?;
        if crc32c::crc32c(body) != u32::from_be_bytes(*crc) || body.len() < HEAD_BYTES {
            return None;
        }
        let (head, rest) = body.split_at(HEAD_BYTES);
        let (format, entry_bytes) = match u32::from_be_bytes(head[..4].try_into().ok()?) {
            MAGIC_V1 => (Format::V1, 12),
            MAGIC_V2 => (Format::V2, 20),
            _ => return None,
        };
        let count = usize::try_from(u64::from_be_bytes(head[4..].try_into().ok()?)).ok()?;
        if count > ENTRIES_MAX || rest.len() != count * entry_bytes {
            return None;
        }
        let mut epochs = Epochs::default();
        for chunk in rest.chunks_exact(entry_bytes) {
            let u64_at = |at: usize| chunk[at..at + 8].try_into().ok().map(u64::from_be_bytes);
            let start = EpochStart {
                epoch: LeaderEpoch(i32::from_be_bytes(chunk[..4].try_into().ok()?)),
                start_offset: Offset(u64_at(4)?),
                start_index: RaftIndex(if format == Format::V2 { u64_at(12)? } else { 0 }),
            };
            if !epochs.accepts(&start, format) {
                return None;
            }
            epochs.entries.push(start);
        }
        Some((epochs, format))
    }

    /// Whether a decoded `start` may follow the last entry: epochs increase, offsets do not
    /// decrease, and (version 2) indexes move with offsets.
    fn accepts(&self, start: &EpochStart, format: Format) -> bool {
        self.latest().is_none_or(|last| {
            let offsets = last.start_offset.cmp(&start.start_offset);
            let indexes = last.start_index.cmp(&start.start_index);
            last.epoch < start.epoch
                && offsets.is_le()
                && (format == Format::V1 || offsets == indexes)
        })
    }

    /// Loads the history of the log in `dir`: `Ok(None)` if there is no file or it is damaged
    /// (the caller rebuilds it from the batches).
    pub(crate) fn load<D: Disk>(disk: &D, dir: &Path) -> Result<Option<(Epochs, Format)>> {
        let path = child(dir, FILE_NAME);
        let file = match disk.open_read_only(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("open", &path)(error)),
        };
        let len = file.len().map_err(io_error("stat", &path))?;
        if len > (ENTRIES_MAX as u64 + 1) * 20 {
            return Ok(None);
        }
        let mut bytes = vec![0; len as usize];
        let read = file.read_at(&mut bytes, 0).map_err(io_error("read", &path))?;
        bytes.truncate(read);
        Ok(Epochs::decode(&bytes))
    }

    /// Durably replaces the persisted history with this one.
    pub(crate) fn persist<D: Disk>(&self, disk: &D, dir: &Path) -> Result<()> {
        atomic::replace(disk, dir, FILE_NAME, &self.encode()).map_err(|failed| failed.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An epoch start whose batches take ten offsets each, so its index is a tenth of its offset.
    fn start(epoch: i32, offset: u64) -> EpochStart {
        EpochStart {
            epoch: LeaderEpoch(epoch),
            start_offset: Offset(offset),
            start_index: RaftIndex(offset / 10),
        }
    }

    #[test]
    fn lookups_and_truncation() {
        let mut epochs = Epochs::default();
        assert_eq!(epochs.epoch_at(Offset(0)), None);
        epochs.push(start(1, 0));
        epochs.push(start(3, 10));
        epochs.push(start(4, 10)); // epoch 3 wrote nothing
        epochs.push(start(7, 250));
        assert_eq!(epochs.entries(), &[start(1, 0), start(4, 10), start(7, 250)]);
        assert_eq!(epochs.epoch_at(Offset(9)), Some(LeaderEpoch(1)));
        assert_eq!(epochs.epoch_at(Offset(10)), Some(LeaderEpoch(4)));
        assert_eq!(epochs.epoch_at(Offset(1000)), Some(LeaderEpoch(7)));
        assert!(epochs.truncate_from(Offset(11)));
        assert_eq!(epochs.latest(), Some(start(4, 10)));
        assert!(!epochs.truncate_from(Offset(11)));
    }

    #[test]
    fn encoding_roundtrip_and_damage() {
        let mut epochs = Epochs::default();
        epochs.push(start(1, 0));
        epochs.push(start(2, 100));
        let bytes = epochs.encode();
        assert_eq!(Epochs::decode(&bytes), Some((epochs, Format::V2)));
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Epochs::decode(&bad), None, "bit {bit}");
        }
        assert_eq!(Epochs::decode(&bytes[..bytes.len() - 1]), None);
    }

    /// A version 2 history whose indexes go backwards while offsets go forwards is not one.
    #[test]
    fn indexes_move_with_offsets() {
        let mut epochs = Epochs::default();
        epochs.push(start(1, 0));
        epochs.entries.push(EpochStart { start_index: RaftIndex(0), ..start(2, 100) });
        assert_eq!(Epochs::decode(&epochs.encode()), None);
    }

    /// The version 1 layout, as the code before Raft indexes wrote it.
    fn encode_v1(entries: &[(i32, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC_V1.to_be_bytes());
        out.extend_from_slice(&(entries.len() as u64).to_be_bytes());
        for (epoch, offset) in entries {
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn version_1_is_read_and_its_indexes_filled_in() {
        let bytes = encode_v1(&[(1, 0), (2, 40), (5, 100), (6, 230)]);
        let (mut epochs, format) = Epochs::decode(&bytes).expect("a valid version 1 history");
        assert_eq!(format, Format::V1);
        assert_eq!(epochs.latest().map(|e| e.start_index), Some(RaftIndex(0)));
        // The log now starts at offset 50: epoch 1 has no batch left, epoch 2's first batch left
        // is at 50.
        let filled: Result<(), ()> =
            epochs.fill_indexes(Offset(50), |offset| Ok(RaftIndex(offset.0 / 10)));
        filled.expect("every offset has an index");
        assert_eq!(
            epochs.entries(),
            &[start(2, 50), start(5, 100), start(6, 230)],
            "clamped to the log start, indexes filled in"
        );
        assert_eq!(Epochs::decode(&epochs.encode()), Some((epochs, Format::V2)));
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Epochs::decode(&bad), None, "bit {bit}");
        }
    }
}
