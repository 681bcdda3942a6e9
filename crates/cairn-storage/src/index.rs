//! The sparse segment index: one entry every `index_interval_bytes` of data, mapping an offset and
//! a Raft index to a file position and recording the largest timestamp before that position. It
//! is both Kafka's offset index and its time index, in one file of fixed-size, individually
//! checksummed entries.
//!
//! The index is a hint: lookups land on an entry and walk batch headers forward to the exact
//! answer, and every entry is validated against the batch it points at: a walk that reaches an
//! entry's position checks that it counted exactly the offsets and batches the entry claims
//! (`segment::Walk`). A lost or damaged tail of the index costs a longer walk (and is rebuilt on
//! open), never a wrong answer.
//!
//! Entry layout, big-endian, [`ENTRY_BYTES`] bytes: `relative_offset: u32, relative_index: u32,
//! position: u32, max_timestamp_before: i64, crc32c(previous 20 bytes): u32`. Both relative fields
//! count from the segment's name: its base offset and its first Raft index.

/// Bytes of one encoded entry.
pub(crate) const ENTRY_BYTES: usize = 24;
/// Bytes an entry's CRC covers: all but the CRC.
const CRC_COVERED_BYTES: usize = ENTRY_BYTES - 4;

/// One index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// Offset of the batch at `position`, relative to the segment's base offset.
    pub relative_offset: u32,
    /// Raft index of the batch at `position`, relative to the segment's first index: the number
    /// of batches before it in the segment.
    pub relative_index: u32,
    /// Byte position of a batch start (or of the segment end, for the entry written on roll).
    pub position: u32,
    /// Largest batch max-timestamp among the batches before `position`; `i64::MIN` if none.
    pub max_timestamp_before: i64,
}

impl IndexEntry {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.relative_index.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp_before.to_be_bytes());
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }

    fn decode(bytes: &[u8; ENTRY_BYTES]) -> Option<IndexEntry> {
        let u32_at = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        if crc32c::crc32c(&bytes[..CRC_COVERED_BYTES]) != u32_at(CRC_COVERED_BYTES) {
            return None;
        }
        Some(IndexEntry {
            relative_offset: u32_at(0),
            relative_index: u32_at(4),
            position: u32_at(8),
            max_timestamp_before: i64::from_be_bytes(
                bytes[12..20].try_into().expect("slice of 8 bytes"),
            ),
        })
    }
}

/// The in-memory index of one segment; entries strictly increase in offset, Raft index and
/// position (every batch takes at least one offset, one index and one header's bytes), and
/// `max_timestamp_before` never decreases.
#[derive(Clone, Debug, Default)]
pub(crate) struct Index {
    entries: Vec<IndexEntry>,
}

impl Index {
    /// Decodes the longest valid prefix of an index file: entries with a good checksum, strictly
    /// increasing offsets, indexes and positions, timestamps not decreasing, and positions at most
    /// `position_max`. Everything after the first bad entry is dropped (rebuilt by the caller).
    pub(crate) fn decode(bytes: &[u8], position_max: u64) -> Index {
        let mut index = Index::default();
        for chunk in bytes.chunks_exact(ENTRY_BYTES) {
            let chunk: &[u8; ENTRY_BYTES] =
                chunk.try_into().expect("chunks_exact yields ENTRY_BYTES");
            let Some(entry) = IndexEntry::decode(chunk) else { break };
            if u64::from(entry.position) > position_max || !index.accepts(&entry) {
                break;
            }
            index.entries.push(entry);
        }
        index
    }

    /// Whether `entry` may follow the current last entry.
    fn accepts(&self, entry: &IndexEntry) -> bool {
        self.entries.last().is_none_or(|last| {
            entry.relative_offset > last.relative_offset
                && entry.relative_index > last.relative_index
                && entry.position > last.position
                && entry.max_timestamp_before >= last.max_timestamp_before
        })
    }

    /// Appends an entry.
    ///
    /// # Panics
    /// If it would break the ordering invariant: the log computes entries from its own state.
    pub(crate) fn push(&mut self, entry: IndexEntry) {
        assert!(
            self.accepts(&entry),
            "index entry {entry:?} out of order after {:?}",
            self.entries.last()
        );
        self.entries.push(entry);
    }

    /// Keeps only entries at positions before `position`.
    pub(crate) fn truncate_to_position(&mut self, position: u32) {
        let keep = self.entries.partition_point(|e| e.position < position);
        self.entries.truncate(keep);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    pub(crate) fn last(&self) -> Option<&IndexEntry> {
        self.entries.last()
    }

    /// The last entry at or before relative offset `relative_offset`.
    pub(crate) fn floor_offset(&self, relative_offset: u32) -> Option<IndexEntry> {
        let after = self.entries.partition_point(|e| e.relative_offset <= relative_offset);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last entry at or before relative Raft index `relative_index`.
    pub(crate) fn floor_index(&self, relative_index: u32) -> Option<IndexEntry> {
        let after = self.entries.partition_point(|e| e.relative_index <= relative_index);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last entry at or before byte `position`.
    pub(crate) fn floor_position(&self, position: u32) -> Option<IndexEntry> {
        let after = self.entries.partition_point(|e| e.position <= position);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last entry all of whose preceding batches are older than `timestamp`.
    pub(crate) fn floor_timestamp(&self, timestamp: i64) -> Option<IndexEntry> {
        let after = self.entries.partition_point(|e| e.max_timestamp_before < timestamp);
        after.checked_sub(1).map(|i| self.entries[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry whose batches take two offsets each, so the index is half the offset.
    fn entry(relative_offset: u32, position: u32, max_timestamp_before: i64) -> IndexEntry {
        IndexEntry {
            relative_offset,
            relative_index: relative_offset / 2,
            position,
            max_timestamp_before,
        }
    }

    fn encode(entries: &[IndexEntry]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in entries {
            e.encode(&mut out);
        }
        out
    }

    #[test]
    fn decode_roundtrip_and_lookups() {
        let entries = [
            entry(0, 0, i64::MIN),
            entry(10, 4096, 100),
            entry(25, 8200, 100),
            entry(40, 12300, 250),
        ];
        let index = Index::decode(&encode(&entries), 20_000);
        assert_eq!(index.entries(), &entries);
        assert_eq!(index.floor_offset(9), Some(entries[0]));
        assert_eq!(index.floor_offset(10), Some(entries[1]));
        assert_eq!(index.floor_offset(1000), Some(entries[3]));
        assert_eq!(index.floor_index(4), Some(entries[0]));
        assert_eq!(index.floor_index(5), Some(entries[1]));
        assert_eq!(index.floor_index(20), Some(entries[3]));
        assert_eq!(index.floor_position(8199), Some(entries[1]));
        assert_eq!(index.floor_position(8200), Some(entries[2]));
        assert_eq!(index.floor_timestamp(100), Some(entries[0]));
        assert_eq!(index.floor_timestamp(101), Some(entries[2]));
        assert_eq!(index.floor_timestamp(i64::MIN), None);
    }

    #[test]
    fn decode_stops_at_damage() {
        let entries = [entry(0, 0, 1), entry(10, 4096, 2), entry(25, 8200, 3)];
        let mut bytes = encode(&entries);
        // Torn last entry.
        assert_eq!(Index::decode(&bytes[..bytes.len() - 3], u64::MAX).len(), 2);
        // Flipped bit in the middle entry.
        bytes[ENTRY_BYTES + 5] ^= 0x10;
        assert_eq!(Index::decode(&bytes, u64::MAX).len(), 1);
        // Entries beyond the data file.
        assert_eq!(Index::decode(&encode(&entries), 5000).len(), 2);
        // Out of order.
        let disorder = [entry(10, 4096, 2), entry(5, 8000, 3)];
        assert_eq!(Index::decode(&encode(&disorder), u64::MAX).len(), 1);
        // Offsets grow but the Raft index does not: the second entry claims no batch.
        let mut same_index = entry(12, 8000, 3);
        same_index.relative_index = 5;
        assert_eq!(Index::decode(&encode(&[entry(10, 4096, 2), same_index]), u64::MAX).len(), 1);
    }

    #[test]
    fn every_bit_flip_invalidates_an_entry() {
        let bytes = encode(&[entry(10, 4096, 2)]);
        assert_eq!(bytes.len(), ENTRY_BYTES);
        for bit in 0..ENTRY_BYTES * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Index::decode(&bad, u64::MAX).len(), 0, "bit {bit}");
        }
    }

    #[test]
    fn truncate_to_position() {
        let mut index = Index::decode(&encode(&[entry(0, 0, 1), entry(10, 4096, 2)]), u64::MAX);
        index.truncate_to_position(4096);
        assert_eq!(index.len(), 1);
        index.truncate_to_position(0);
        assert_eq!(index.len(), 0);
    }
}
