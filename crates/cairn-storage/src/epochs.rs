//! The leader-epoch history of a log: which epoch appended which offsets (Kafka's
//! `leader-epoch-checkpoint`, Raft's term of each entry).
//!
//! The history serves two purposes: Raft and Kafka's fetch-by-epoch ask "which epoch wrote offset
//! X" and "where did epoch E end", and every stored batch's epoch is checked against it. The
//! epoch field of a batch lies outside the batch CRC, so this check is what detects a damaged epoch.
//!
//! It is persisted in its own small checksummed file, rewritten atomically (write temp, fsync,
//! rename, fsync directory) before the first batch of a new epoch is written.

use std::path::Path;

use cairn_types::{LeaderEpoch, Offset};

use crate::disk::{Disk, DiskFile, child};
use crate::error::{Result, io_error};

/// File name of the persisted history.
pub(crate) const FILE_NAME: &str = "leader-epochs";
const TEMP_NAME: &str = "leader-epochs.tmp";
const MAGIC: u32 = 0x4341_4550; // "CAEP"
/// Entries the file may hold; far above any real history (one entry per leader change).
const ENTRIES_MAX: usize = 1 << 20;

/// The first offset written in an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochStart {
    /// The leader epoch.
    pub epoch: LeaderEpoch,
    /// First offset appended in that epoch.
    pub start_offset: Offset,
}

/// Epoch starts, strictly increasing in both epoch and start offset.
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

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.entries.len() * 12 + 4);
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_be_bytes());
        for entry in &self.entries {
            out.extend_from_slice(&entry.epoch.0.to_be_bytes());
            out.extend_from_slice(&entry.start_offset.0.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a persisted history; `None` if the file is damaged or not a history.
    fn decode(bytes: &[u8]) -> Option<Epochs> {
        let (body, crc) = bytes.split_last_chunk::<4>()?;
        if crc32c::crc32c(body) != u32::from_be_bytes(*crc) || body.len() < 12 {
            return None;
        }
        let (head, rest) = body.split_at(12);
        if u32::from_be_bytes(head[..4].try_into().ok()?) != MAGIC {
            return None;
        }
        let count = usize::try_from(u64::from_be_bytes(head[4..].try_into().ok()?)).ok()?;
        if count > ENTRIES_MAX || rest.len() != count * 12 {
            return None;
        }
        let mut epochs = Epochs::default();
        for chunk in rest.chunks_exact(12) {
            let epoch = LeaderEpoch(i32::from_be_bytes(chunk[..4].try_into().ok()?));
            let start_offset = Offset(u64::from_be_bytes(chunk[4..].try_into().ok()?));
            if epochs.latest().is_some_and(|l| l.epoch >= epoch || l.start_offset > start_offset) {
                return None;
            }
            epochs.entries.push(EpochStart { epoch, start_offset });
        }
        Some(epochs)
    }

    /// Loads the history of the log in `dir`: `Ok(None)` if there is no file or it is damaged
    /// (the caller rebuilds it from the batches).
    pub(crate) fn load<D: Disk>(disk: &D, dir: &Path) -> Result<Option<Epochs>> {
        let path = child(dir, FILE_NAME);
        let file = match disk.open_read_only(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("open", &path)(error)),
        };
        let len = file.len().map_err(io_error("stat", &path))?;
        if len > (ENTRIES_MAX as u64 + 2) * 12 {
            return Ok(None);
        }
        let mut bytes = vec![0; len as usize];
        let read = file.read_at(&mut bytes, 0).map_err(io_error("read", &path))?;
        bytes.truncate(read);
        Ok(Epochs::decode(&bytes))
    }

    /// Durably replaces the persisted history with this one.
    pub(crate) fn persist<D: Disk>(&self, disk: &D, dir: &Path) -> Result<()> {
        let temp = child(dir, TEMP_NAME);
        match disk.remove_file(&temp) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error("remove", &temp)(error)),
        }
        let file = disk.create(&temp).map_err(io_error("create", &temp))?;
        file.write_all_at(&self.encode(), 0).map_err(io_error("write", &temp))?;
        file.sync_data().map_err(io_error("fsync", &temp))?;
        let path = child(dir, FILE_NAME);
        disk.rename(&temp, &path).map_err(io_error("rename", &path))?;
        disk.sync_dir(dir).map_err(io_error("fsync dir", dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(epoch: i32, offset: u64) -> EpochStart {
        EpochStart { epoch: LeaderEpoch(epoch), start_offset: Offset(offset) }
    }

    #[test]
    fn lookups_and_truncation() {
        let mut epochs = Epochs::default();
        assert_eq!(epochs.epoch_at(Offset(0)), None);
        epochs.push(start(1, 0));
        epochs.push(start(3, 10));
        epochs.push(start(4, 10)); // epoch 3 wrote nothing
        epochs.push(start(7, 25));
        assert_eq!(epochs.entries(), &[start(1, 0), start(4, 10), start(7, 25)]);
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
        assert_eq!(Epochs::decode(&bytes), Some(epochs));
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Epochs::decode(&bad), None, "bit {bit}");
        }
        assert_eq!(Epochs::decode(&bytes[..bytes.len() - 1]), None);
    }
}
