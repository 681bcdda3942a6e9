//! Log compaction's pure parts (RFC 0007): [`KeyMap`], the bounded map of a round's dirty part
//! (each key's latest offset there), and [`clean_batch`], the rewrite of one batch by it.
//!
//! A record is kept by a round if it has a key, no record of its key in the dirty part is
//! newer, and, for a tombstone (a null value), it is at or after the round's previous point
//! (it has not been through a round yet) or younger than `delete.retention.ms` at the round's
//! time. A batch is never removed: its header stays (offsets, producer, epoch, timestamps), and
//! one left with no record is an empty, uncompressed batch, as Kafka's cleaner writes them.
//! Every replica computes the same bytes from the same batch, map and round.

use cairn_types::batch::{self, BatchError, BatchHeader, Compression, RecordBatch, TimestampType};
use cairn_types::limits::DECOMPRESSED_BATCH_BYTES_MAX;
use cairn_types::{Offset, varint};

use crate::compression::{CompressError, DecompressError, compress, decompress};

/// Why a batch could not be mapped or cleaned: it does not decode (the log holds damage the
/// verified read should have found) or does not compress again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CleanError {
    /// The records part does not decompress.
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    /// The kept records do not compress.
    #[error(transparent)]
    Compress(#[from] CompressError),
    /// A record is malformed.
    #[error(transparent)]
    Batch(#[from] BatchError),
}

/// FNV-1a, 128 bits, of `key`: the map's hash, fixed by the format so that every replica
/// agrees. (Not collision-resistant against a producer crafting keys, like Kafka's MD5: such
/// a producer can only hide its own records.)
#[must_use]
pub fn key_hash(key: &[u8]) -> u128 {
    const BASIS: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    key.iter().fold(BASIS, |hash, &byte| (hash ^ u128::from(byte)).wrapping_mul(PRIME))
}

/// The hash no slot holds when empty.
const EMPTY: u128 = 0;

/// Slots for `keys` keys at most 90% full: a power of two.
fn slots_for(keys: usize) -> usize {
    (keys + keys / 9 + 1).next_power_of_two()
}

/// The keys of a round's dirty part and each one's latest offset, in an open-addressing table
/// of at most `keys_max` keys (module docs).
#[derive(Clone, Debug)]
pub struct KeyMap {
    /// (hash, offset) per slot; a power of two of them, at most 90% full.
    slots: Vec<(u128, u64)>,
    keys: usize,
    keys_max: usize,
}

impl KeyMap {
    /// An empty map for at most `keys_max` keys. Its table starts small and doubles as keys
    /// come, so a round's memory follows its keys, up to about 36 bytes per key.
    #[must_use]
    pub fn new(keys_max: usize) -> KeyMap {
        KeyMap { slots: vec![(EMPTY, 0); slots_for(keys_max.min(1024))], keys: 0, keys_max }
    }

    /// Doubles the table if one more key would fill it past 90%.
    fn reserve_one(&mut self) {
        if (self.keys + 1) * 10 <= self.slots.len() * 9 {
            return;
        }
        let doubled = vec![(EMPTY, 0); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        for (hash, offset) in old.into_iter().filter(|(hash, _)| *hash != EMPTY) {
            let at = self.slot(hash);
            self.slots[at] = (hash, offset);
        }
    }

    /// Keys held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    fn hash(key: &[u8]) -> u128 {
        match key_hash(key) {
            EMPTY => 1,
            hash => hash,
        }
    }

    /// The slot of `hash`: the one holding it, or the empty one where it would go.
    fn slot(&self, hash: u128) -> usize {
        let mask = self.slots.len() - 1;
        // The low bits of the hash pick the start; truncation is the point.
        let mut at = (hash as usize) & mask;
        while self.slots[at].0 != EMPTY && self.slots[at].0 != hash {
            at = (at + 1) & mask;
        }
        at
    }

    /// The latest offset of `key`'s records in the dirty part, if it has any.
    #[must_use]
    pub fn latest(&self, key: &[u8]) -> Option<Offset> {
        let (hash, offset) = self.slots[self.slot(Self::hash(key))];
        (hash != EMPTY).then_some(Offset(offset))
    }

    /// Records `offset` as the latest of `key` (offsets come in log order). `false`, and
    /// nothing changed, if `key` is new and the map is full.
    pub fn insert(&mut self, key: &[u8], offset: Offset) -> bool {
        let hash = Self::hash(key);
        let mut at = self.slot(hash);
        if self.slots[at].0 == EMPTY {
            if self.keys == self.keys_max {
                return false;
            }
            self.reserve_one();
            at = self.slot(hash);
            self.keys += 1;
        }
        self.slots[at] = (hash, offset.0);
        true
    }

    /// Adds the keys of `batch`'s records, all of them, or none if its new keys do not fit:
    /// then `Ok(false)`, and the round ends before this batch.
    ///
    /// # Errors
    /// [`CleanError`] if the records do not decode.
    pub fn add_batch(
        &mut self,
        batch: &RecordBatch,
        scratch: &mut Vec<u8>,
    ) -> Result<bool, CleanError> {
        let header = batch.header();
        if header.is_control() {
            return Ok(true);
        }
        let mut keyed = Vec::new();
        for_each_record(batch, scratch, |record, _| {
            if let Some(key) = record.key {
                keyed.push((key_hash(key), key.to_vec(), record.offset_delta));
            }
        })?;
        let mut new: Vec<u128> = keyed
            .iter()
            .filter(|(_, key, _)| self.latest(key).is_none())
            .map(|(hash, _, _)| *hash)
            .collect();
        new.sort_unstable();
        new.dedup();
        if self.keys + new.len() > self.keys_max {
            return Ok(false);
        }
        for (_, key, delta) in keyed {
            self.insert(&key, header.base_offset.plus(u64::from(delta)));
        }
        Ok(true)
    }
}

/// What a round's cleaning knows besides the map (RFC 0007 "Tombstones and time").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Round {
    /// The previous round's point: tombstones below it have been through a round.
    pub previous_point: Offset,
    /// The round's time, from its `compact` entry.
    pub now_ms: i64,
    /// The topic's `delete.retention.ms`.
    pub delete_retention_ms: i64,
}

/// What cleaning did to a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cleaned {
    /// Every record stays: the batch's bytes are kept as they are.
    Unchanged,
    /// The batch with fewer records (possibly none).
    Rewritten(Vec<u8>),
}

/// Cleans `batch` by `map` in `round` (module docs). Control batches are kept.
///
/// # Errors
/// [`CleanError`] if the records do not decode or the kept ones do not compress.
pub fn clean_batch(
    batch: &RecordBatch,
    map: &KeyMap,
    round: &Round,
    scratch: &mut Vec<u8>,
) -> Result<Cleaned, CleanError> {
    let header = *batch.header();
    if header.is_control() {
        return Ok(Cleaned::Unchanged);
    }
    let mut kept = Vec::new();
    let mut count = 0u32;
    for_each_record(batch, scratch, |record, raw| {
        let offset = header.base_offset.plus(u64::from(record.offset_delta));
        let timestamp = match header.timestamp_type() {
            TimestampType::LogAppendTime => header.max_timestamp,
            TimestampType::CreateTime => {
                header.base_timestamp.saturating_add(record.timestamp_delta)
            }
        };
        let latest = record.key.map(|key| map.latest(key).is_none_or(|latest| offset >= latest));
        let expired = record.value.is_none()
            && offset < round.previous_point
            && timestamp.saturating_add(round.delete_retention_ms) <= round.now_ms;
        if latest == Some(true) && !expired {
            kept.extend_from_slice(raw);
            count += 1;
        }
    })?;
    if count == header.record_count {
        return Ok(Cleaned::Unchanged);
    }
    let codec = if count == 0 { Compression::None } else { header.compression() };
    let records = if codec == Compression::None {
        kept
    } else {
        let mut compressed = Vec::new();
        compress(codec, &kept, &mut compressed)?;
        compressed
    };
    Ok(Cleaned::Rewritten(batch::with_records(batch.as_bytes(), codec, &records, count)))
}

/// The index of the first record without a key among the records of the batch whose header
/// is `header` and whose records, decompressed, are `body`: what a topic with
/// `cleanup.policy=compact` refuses (`INVALID_RECORD`, as Kafka). Control batches are keyed by
/// their form.
///
/// # Errors
/// [`BatchError`] if the records do not decode.
pub fn first_keyless(body: &[u8], header: &BatchHeader) -> Result<Option<u32>, BatchError> {
    if header.is_control() {
        return Ok(None);
    }
    for (index, record) in (0..).zip(batch::records_in(body, header.record_count)) {
        if record?.key.is_none() {
            return Ok(Some(index));
        }
    }
    Ok(None)
}

/// Calls `f` with each record of `batch` and its encoded bytes (length prefix included),
/// decompressing into `scratch` first if the batch is compressed.
fn for_each_record(
    batch: &RecordBatch,
    scratch: &mut Vec<u8>,
    mut f: impl FnMut(&batch::Record<'_>, &[u8]),
) -> Result<(), CleanError> {
    let header = batch.header();
    let stored = &batch.as_bytes()[batch::HEADER_BYTES..];
    let body = if header.compression() == Compression::None {
        stored
    } else {
        scratch.clear();
        decompress(header.compression(), stored, scratch, DECOMPRESSED_BATCH_BYTES_MAX)?;
        scratch.as_slice()
    };
    let mut at = 0;
    for record in batch::records_in(body, header.record_count) {
        let record = record?;
        let (length, prefix) = varint::get_varint(&body[at..])
            .map_err(|_| BatchError::BadRecord { index: 0, reason: "record length" })?;
        let end = at + prefix + usize::try_from(length).unwrap_or(0);
        f(&record, &body[at..end]);
        at = end;
    }
    Ok(())
}
