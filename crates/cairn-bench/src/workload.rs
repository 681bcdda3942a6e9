//! What producers send: record values, keys, and requests of one batch per partition.
//!
//! Values are slices of a pool of random uppercase letters (as Kafka's
//! `kafka-producer-perf-test` makes them), so compression sees text-like data, not zeros and
//! not noise. In `e2e` runs the first 8 bytes of each value carry the record's scheduled send
//! time (ns since the run's origin, big-endian), which the consumer reads back.

use bytes::Bytes;
use cairn_client::records::{BatchBuildError, compressed_batch, partition_for_key};
use cairn_types::ProducerId;
use cairn_types::batch::{BatchBuilder, Compression};

use crate::cli::Keys;

/// Extra bytes in the value pool beyond one value, so that values start at different offsets.
const POOL_SLACK_BYTES: usize = 4096;
/// Bytes of the scheduled time at the start of an `e2e` value.
pub const STAMP_BYTES: usize = 8;
/// Estimated bytes a record adds to a batch beyond its key and value (length, attributes,
/// deltas, header count as varints).
const RECORD_OVERHEAD_BYTES: usize = 8;
/// Bytes of a RecordBatch v2 header.
const BATCH_HEADER_BYTES: usize = cairn_types::batch::HEADER_BYTES;

/// A small, fast, seeded generator (xorshift64*): keys and the value pool need variety, not
/// cryptographic quality.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; zero is replaced).
    #[must_use]
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Record values of one size.
#[derive(Clone, Debug)]
pub struct Values {
    pool: Vec<u8>,
    record_bytes: usize,
}

impl Values {
    /// Values of `record_bytes` bytes, from a pool seeded by `seed`.
    #[must_use]
    pub fn new(record_bytes: usize, seed: u64) -> Values {
        let mut rng = Rng::new(seed);
        let pool = (0..record_bytes + POOL_SLACK_BYTES)
            .map(|_| b'A' + (rng.next_u64() % 26) as u8)
            .collect();
        Values { pool, record_bytes }
    }

    /// The value of record `index`.
    #[must_use]
    pub fn value(&self, index: u64) -> &[u8] {
        // 61 is prime: consecutive records start at well-spread offsets.
        let offset = (index.wrapping_mul(61) % POOL_SLACK_BYTES as u64) as usize;
        &self.pool[offset..offset + self.record_bytes]
    }

    /// Bytes of each value.
    #[must_use]
    pub fn record_bytes(&self) -> usize {
        self.record_bytes
    }
}

/// Record keys of one producer.
#[derive(Clone, Debug)]
pub struct KeyGen {
    keys: Keys,
    rng: Rng,
}

impl KeyGen {
    /// Keys of kind `keys`; `seed` makes random keys differ between producers.
    #[must_use]
    pub fn new(keys: Keys, seed: u64) -> KeyGen {
        KeyGen { keys, rng: Rng::new(seed) }
    }

    /// The key of the record with global index `global` (see `schedule`), `None` without keys.
    pub fn key(&mut self, global: u64) -> Option<[u8; 8]> {
        match self.keys {
            Keys::None => None,
            Keys::Random => Some(self.rng.next_u64().to_be_bytes()),
            Keys::Sequential => Some(global.to_be_bytes()),
        }
    }

    /// Bytes of each key.
    #[must_use]
    pub fn key_bytes(&self) -> usize {
        if self.keys == Keys::None { 0 } else { 8 }
    }
}

/// Where the next record goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Into this partition's batch.
    Partition(u32),
    /// Its batch is full: send the request first.
    Flush,
}

/// A Produce request being assembled: one open batch per partition, each of at most
/// `records_per_batch` records.
pub struct RequestBuilder {
    partitions: u32,
    records_per_batch: u32,
    batches: Vec<Option<BatchBuilder>>,
    /// Records in each partition's open batch.
    counts: Vec<u32>,
    /// The partition unkeyed records fill (Kafka's sticky partitioner: a batch at a time).
    sticky: u32,
    /// Records in the request.
    records: u64,
    /// Key and value bytes in the request.
    bytes: u64,
    /// An idempotent producer's id and epoch, and the next sequence of each partition.
    producer: Option<(ProducerId, i16, Vec<i32>)>,
}

impl RequestBuilder {
    /// An empty request over `partitions` (> 0) partitions, whose batches hold as many records
    /// of `record_bytes` values and `key_bytes` keys as fit in `batch_bytes` (at least one).
    #[must_use]
    pub fn new(partitions: u32, batch_bytes: usize, key_bytes: usize, record_bytes: usize) -> Self {
        let partitions = partitions.max(1);
        let record = record_bytes + key_bytes + RECORD_OVERHEAD_BYTES;
        let records_per_batch = batch_bytes.saturating_sub(BATCH_HEADER_BYTES) / record;
        let records_per_batch = u32::try_from(records_per_batch.max(1)).unwrap_or(u32::MAX);
        RequestBuilder {
            partitions,
            records_per_batch,
            batches: (0..partitions).map(|_| None).collect(),
            counts: vec![0; partitions as usize],
            sticky: 0,
            records: 0,
            bytes: 0,
            producer: None,
        }
    }

    /// Numbers the batches as idempotent producer `id` at `epoch`, from sequence 0.
    #[must_use]
    pub fn idempotent(mut self, id: ProducerId, epoch: i16) -> Self {
        self.producer = Some((id, epoch, vec![0; self.partitions as usize]));
        self
    }

    /// Records per batch.
    #[must_use]
    pub fn records_per_batch(&self) -> u32 {
        self.records_per_batch
    }

    /// Records in the request so far.
    #[must_use]
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Key and value bytes in the request so far.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Where a record with `key` goes: a keyed record to Kafka's default partition for its key,
    /// an unkeyed one to the sticky partition (moving on when its batch is full).
    pub fn place(&mut self, key: Option<&[u8]>) -> Placement {
        let full =
            |this: &Self, partition: u32| this.counts[partition as usize] >= this.records_per_batch;
        match key {
            Some(key) => {
                let partition = partition_for_key(key, self.partitions);
                if full(self, partition) {
                    Placement::Flush
                } else {
                    Placement::Partition(partition)
                }
            }
            None => {
                for _ in 0..self.partitions {
                    if !full(self, self.sticky) {
                        return Placement::Partition(self.sticky);
                    }
                    self.sticky = (self.sticky + 1) % self.partitions;
                }
                Placement::Flush
            }
        }
    }

    /// Adds a record to `partition`'s batch (placed with [`RequestBuilder::place`]).
    pub fn add(&mut self, partition: u32, timestamp_ms: i64, key: Option<&[u8]>, value: &[u8]) {
        let index = partition as usize;
        let batch = self.batches[index].take().unwrap_or_else(|| BatchBuilder::new(timestamp_ms));
        self.batches[index] = Some(batch.record(key, Some(value), &[]));
        self.counts[index] += 1;
        self.records += 1;
        self.bytes += (key.map_or(0, <[u8]>::len) + value.len()) as u64;
    }

    /// The request's batches, built and compressed with `codec`, with their record counts,
    /// by partition; the builder is empty afterwards.
    ///
    /// # Errors
    /// If compression fails.
    pub fn take(&mut self, codec: Compression) -> Result<Vec<PartitionBatch>, BatchBuildError> {
        let mut batches = Vec::new();
        for (partition, slot) in self.batches.iter_mut().enumerate() {
            let Some(mut builder) = slot.take() else { continue };
            if let Some((id, epoch, sequences)) = &mut self.producer {
                let sequence = &mut sequences[partition];
                builder = builder.producer(*id, *epoch, *sequence);
                // Kafka's sequences wrap from i32::MAX to 0.
                let next = (i64::from(*sequence) + i64::from(self.counts[partition])) % (1 << 31);
                *sequence = i32::try_from(next).unwrap_or(0);
            }
            let bytes = builder.build();
            let bytes =
                if codec == Compression::None { bytes } else { compressed_batch(&bytes, codec)? };
            batches.push(PartitionBatch {
                partition: partition as i32,
                records: self.counts[partition],
                bytes: Bytes::from(bytes),
            });
            self.counts[partition] = 0;
        }
        self.records = 0;
        self.bytes = 0;
        Ok(batches)
    }
}

/// One partition's batch of a request.
#[derive(Clone, Debug)]
pub struct PartitionBatch {
    /// The partition index.
    pub partition: i32,
    /// Records in the batch.
    pub records: u32,
    /// The encoded (compressed) batch.
    pub bytes: Bytes,
}

#[cfg(test)]
mod tests {
    use cairn_types::batch::RecordBatch;

    use super::*;

    #[test]
    fn values_are_uppercase_letters_of_the_asked_size() {
        let values = Values::new(100, 7);
        for index in [0, 1, 2, 1_000_000] {
            let value = values.value(index);
            assert_eq!(value.len(), 100);
            assert!(value.iter().all(u8::is_ascii_uppercase));
        }
        assert_ne!(values.value(0), values.value(1));
    }

    #[test]
    fn unkeyed_requests_hold_one_full_batch_per_partition() {
        // 1 KiB values, 16 KiB batches: 15 records each.
        let mut builder = RequestBuilder::new(3, 16_384, 0, 1024);
        assert_eq!(builder.records_per_batch(), 15);
        let value = vec![b'x'; 1024];
        let mut placed = Vec::new();
        while let Placement::Partition(p) = builder.place(None) {
            placed.push(p);
            builder.add(p, 0, None, &value);
        }
        assert_eq!(placed.len(), 45);
        assert!(placed[..15].iter().all(|&p| p == 0) && placed[30..].iter().all(|&p| p == 2));
        let batches = builder.take(Compression::None).unwrap();
        assert_eq!(
            batches.iter().map(|b| (b.partition, b.records)).collect::<Vec<_>>(),
            [(0, 15), (1, 15), (2, 15)]
        );
        for batch in &batches {
            assert_eq!(RecordBatch::validate(&batch.bytes).unwrap().record_count(), 15);
        }
        assert_eq!(builder.records(), 0);
        assert!(matches!(builder.place(None), Placement::Partition(_)));
    }

    #[test]
    fn keyed_records_follow_the_default_partitioner_and_compress() {
        let mut keys = KeyGen::new(Keys::Sequential, 0);
        let mut builder = RequestBuilder::new(4, 1 << 20, 8, 100);
        let value = Values::new(100, 1);
        for global in 0..40 {
            let key = keys.key(global).unwrap();
            let Placement::Partition(partition) = builder.place(Some(&key)) else { panic!() };
            assert_eq!(partition, partition_for_key(&key, 4));
            builder.add(partition, 0, Some(&key), value.value(global));
        }
        assert_eq!(builder.bytes(), 40 * 108);
        let batches = builder.take(Compression::Lz4).unwrap();
        assert_eq!(batches.iter().map(|b| b.records).sum::<u32>(), 40);
        for batch in &batches {
            let header = *RecordBatch::validate(&batch.bytes).unwrap().header();
            assert_eq!(header.compression(), Compression::Lz4);
        }
    }

    #[test]
    fn a_record_larger_than_the_batch_size_still_makes_a_batch() {
        let builder = RequestBuilder::new(1, 100, 8, 1_000_000);
        assert_eq!(builder.records_per_batch(), 1);
    }
}
