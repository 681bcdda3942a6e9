//! [`ProducerStates`]: what a partition knows of its idempotent producers (RFC 0006 §4): for
//! each producer id, its epoch and its last [`PRODUCER_BATCHES_KEPT`] batches' sequence
//! ranges and offsets. It is a function of the log, so every replica derives the same one; a
//! leader checks each idempotent batch against it before proposing the batch
//! ([`ProducerStates::check`]), Kafka's rules:
//!
//! - a batch repeating one of its producer's kept batches (same epoch, first and last
//!   sequence) is a duplicate: answered with the original's offsets, not appended again;
//! - an older epoch is fenced;
//! - a newer epoch must start at sequence 0;
//! - otherwise the first sequence must follow the last one (wrapping after `i32::MAX`);
//! - a producer the partition does not know may start at any sequence (KIP-360: its state
//!   may have expired, or been removed with the log's start).
//!
//! The encoding ([`ProducerStates::encode`]) is what snapshots of the state store; callers
//! checksum it.

use std::collections::{BTreeMap, VecDeque};

use cairn_types::batch::BatchHeader;
use cairn_types::limits::{PRODUCER_BATCHES_KEPT, PRODUCERS_PER_PARTITION_MAX};
use cairn_types::{Offset, ProducerId};

/// One idempotent batch, as the producer state sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    /// The producer.
    pub producer_id: ProducerId,
    /// Its epoch.
    pub epoch: i16,
    /// The sequence of the first record.
    pub first_seq: i32,
    /// The sequence of the last record.
    pub last_seq: i32,
    /// Where the batch is in the log; `None` while it is only proposed.
    pub offsets: Option<(Offset, Offset)>,
    /// The batch's largest timestamp.
    pub timestamp: i64,
}

impl ProducerBatch {
    /// The producer fields of `header`, if it is an idempotent data batch (a producer id and a
    /// sequence, not a control batch).
    #[must_use]
    pub fn of(header: &BatchHeader) -> Option<ProducerBatch> {
        if header.producer_id.0 < 0 || header.base_sequence < 0 || header.is_control() {
            return None;
        }
        Some(ProducerBatch {
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            first_seq: header.base_sequence,
            last_seq: add_sequence(header.base_sequence, header.last_offset_delta),
            offsets: Some((header.base_offset, header.last_offset())),
            timestamp: header.max_timestamp,
        })
    }

    /// The batch before it is in the log.
    #[must_use]
    pub fn proposed(self) -> ProducerBatch {
        ProducerBatch { offsets: None, ..self }
    }

    fn same_records(&self, other: &ProducerBatch) -> bool {
        self.first_seq == other.first_seq && self.last_seq == other.last_seq
    }
}

/// `seq + delta` in Kafka's sequence space, which wraps from `i32::MAX` to 0.
fn add_sequence(seq: i32, delta: u32) -> i32 {
    let sum = (i64::from(seq) + i64::from(delta)) % (i64::from(i32::MAX) + 1);
    i32::try_from(sum).unwrap_or(0)
}

/// What the leader does with an idempotent batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Append it.
    Append,
    /// It repeats this kept batch: answer with its offsets (once it is in the log).
    Duplicate(ProducerBatch),
    /// Its first sequence is not the next one (OUT_OF_ORDER_SEQUENCE_NUMBER).
    OutOfOrder {
        /// The sequence the producer should have sent.
        expected: i32,
    },
    /// Its epoch is older than the producer's (INVALID_PRODUCER_EPOCH).
    Fenced {
        /// The producer's epoch.
        current: i16,
    },
}

/// One producer's state.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Producer {
    epoch: i16,
    /// Oldest first, at most [`PRODUCER_BATCHES_KEPT`].
    batches: VecDeque<ProducerBatch>,
    /// The largest timestamp of its batches: expiry and eviction go by it.
    last_timestamp: i64,
}

impl Producer {
    fn new(epoch: i16) -> Producer {
        Producer { epoch, batches: VecDeque::new(), last_timestamp: i64::MIN }
    }

    fn check(&self, batch: &ProducerBatch) -> Verdict {
        if batch.epoch < self.epoch {
            return Verdict::Fenced { current: self.epoch };
        }
        if batch.epoch > self.epoch {
            return if batch.first_seq == 0 {
                Verdict::Append
            } else {
                Verdict::OutOfOrder { expected: 0 }
            };
        }
        if let Some(kept) = self.batches.iter().find(|kept| kept.same_records(batch)) {
            return Verdict::Duplicate(*kept);
        }
        match self.batches.back() {
            None => Verdict::Append,
            Some(last) => {
                let expected = add_sequence(last.last_seq, 1);
                if batch.first_seq == expected {
                    Verdict::Append
                } else {
                    Verdict::OutOfOrder { expected }
                }
            }
        }
    }

    fn record(&mut self, batch: ProducerBatch) {
        if batch.epoch < self.epoch {
            // Fenced: a leader never appends it; a log written before the checks may hold it.
            return;
        }
        if batch.epoch > self.epoch {
            self.epoch = batch.epoch;
            self.batches.clear();
        }
        if let Some(kept) = self.batches.iter_mut().find(|kept| kept.same_records(&batch)) {
            // A proposed batch now in the log: its offsets are known.
            *kept = batch;
        } else {
            self.batches.push_back(batch);
            while self.batches.len() > PRODUCER_BATCHES_KEPT {
                self.batches.pop_front();
            }
        }
        self.last_timestamp = self.last_timestamp.max(batch.timestamp);
    }
}

/// The idempotent producers of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: BTreeMap<ProducerId, Producer>,
}

/// A producer-state encoding that does not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("producer state: {0}")]
pub struct DecodeError(&'static str);

const ENCODING_VERSION: u8 = 1;

impl ProducerStates {
    /// No producers.
    #[must_use]
    pub fn new() -> ProducerStates {
        ProducerStates::default()
    }

    /// How many producers are known.
    #[must_use]
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The verdict on `batch`, given the batches `proposed` ahead of it that are not in the
    /// log yet (in order).
    #[must_use]
    pub fn check(&self, batch: &ProducerBatch, proposed: &[ProducerBatch]) -> Verdict {
        let current = self.producers.get(&batch.producer_id);
        let mut ahead = proposed.iter().filter(|p| p.producer_id == batch.producer_id).peekable();
        if ahead.peek().is_none() {
            // The common case, and the leader append's hot path: nothing to overlay, no copy.
            return current.map_or(Verdict::Append, |producer| producer.check(batch));
        }
        let mut state = current.cloned();
        for ahead in ahead {
            state.get_or_insert_with(|| Producer::new(ahead.epoch)).record(*ahead);
        }
        state.map_or(Verdict::Append, |producer| producer.check(batch))
    }

    /// Records a batch appended to the log (or, on a leader, proposed: offsets `None`). A
    /// new producer beyond [`PRODUCERS_PER_PARTITION_MAX`] evicts the one written least
    /// recently.
    pub fn record(&mut self, batch: ProducerBatch) {
        if !self.producers.contains_key(&batch.producer_id)
            && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX
        {
            let oldest = self.producers.iter().min_by_key(|(id, p)| (p.last_timestamp, **id));
            if let Some((&id, _)) = oldest {
                self.producers.remove(&id);
            }
        }
        let producer =
            self.producers.entry(batch.producer_id).or_insert_with(|| Producer::new(batch.epoch));
        producer.record(batch);
    }

    /// The newest timestamp of any producer's batches; `None` without producers.
    #[must_use]
    pub fn newest_timestamp(&self) -> Option<i64> {
        self.producers.values().map(|p| p.last_timestamp).max()
    }

    /// Records `header`'s batch if it is an idempotent data batch ([`ProducerBatch::of`]).
    pub fn record_batch_of(&mut self, header: &BatchHeader) {
        if let Some(batch) = ProducerBatch::of(header) {
            self.record(batch);
        }
    }

    /// Removes the producers whose last batch is older than `expiration_ms` before `now_ms`
    /// (Kafka's `producer.id.expiration.ms`); returns how many went.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, p| p.last_timestamp.saturating_add(expiration_ms) > now_ms);
        before - self.producers.len()
    }

    /// The state as bytes: version, then each producer (id, epoch, last timestamp, its
    /// batches: sequences, offsets, timestamp). Proposed batches (no offsets yet) are left out:
    /// only what is in the log is state.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENCODING_VERSION];
        out.extend_from_slice(
            &u32::try_from(self.producers.len()).unwrap_or(u32::MAX).to_be_bytes(),
        );
        for (id, producer) in &self.producers {
            out.extend_from_slice(&id.0.to_be_bytes());
            out.extend_from_slice(&producer.epoch.to_be_bytes());
            out.extend_from_slice(&producer.last_timestamp.to_be_bytes());
            let stored: Vec<_> =
                producer.batches.iter().filter_map(|b| Some((b, b.offsets?))).collect();
            out.push(u8::try_from(stored.len()).unwrap_or(u8::MAX));
            for (batch, (base, last)) in stored {
                out.extend_from_slice(&batch.first_seq.to_be_bytes());
                out.extend_from_slice(&batch.last_seq.to_be_bytes());
                out.extend_from_slice(&base.0.to_be_bytes());
                out.extend_from_slice(&last.0.to_be_bytes());
                out.extend_from_slice(&batch.timestamp.to_be_bytes());
            }
        }
        out
    }

    /// Decodes [`ProducerStates::encode`]'s bytes.
    ///
    /// # Errors
    /// [`DecodeError`] for an unknown version, a truncation, trailing bytes, or counts over
    /// the bounds the encoder keeps.
    pub fn decode(bytes: &[u8]) -> Result<ProducerStates, DecodeError> {
        let mut r = Reader(bytes);
        if r.take::<1>()?[0] != ENCODING_VERSION {
            return Err(DecodeError("unknown version"));
        }
        let count = u32::from_be_bytes(r.take()?) as usize;
        if count > PRODUCERS_PER_PARTITION_MAX {
            return Err(DecodeError("too many producers"));
        }
        let mut states = ProducerStates::new();
        for _ in 0..count {
            let id = ProducerId(i64::from_be_bytes(r.take()?));
            let epoch = i16::from_be_bytes(r.take()?);
            let last_timestamp = i64::from_be_bytes(r.take()?);
            let batches = usize::from(r.take::<1>()?[0]);
            if batches > PRODUCER_BATCHES_KEPT {
                return Err(DecodeError("too many batches"));
            }
            let mut producer = Producer { epoch, batches: VecDeque::new(), last_timestamp };
            for _ in 0..batches {
                producer.batches.push_back(ProducerBatch {
                    producer_id: id,
                    epoch,
                    first_seq: i32::from_be_bytes(r.take()?),
                    last_seq: i32::from_be_bytes(r.take()?),
                    offsets: Some((
                        Offset(u64::from_be_bytes(r.take()?)),
                        Offset(u64::from_be_bytes(r.take()?)),
                    )),
                    timestamp: i64::from_be_bytes(r.take()?),
                });
            }
            if states.producers.insert(id, producer).is_some() {
                return Err(DecodeError("a producer twice"));
            }
        }
        if !r.0.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(states)
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(DecodeError("truncated"))?;
        self.0 = rest;
        Ok(*head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn batch(id: i64, epoch: i16, first_seq: i32, records: u32, base: u64) -> ProducerBatch {
        ProducerBatch {
            producer_id: ProducerId(id),
            epoch,
            first_seq,
            last_seq: add_sequence(first_seq, records - 1),
            offsets: Some((Offset(base), Offset(base + u64::from(records) - 1))),
            timestamp: i64::try_from(base).unwrap_or(0),
        }
    }

    #[test]
    fn sequences_follow_on_and_retries_are_duplicates() {
        let mut states = ProducerStates::new();
        let first = batch(7, 0, 0, 10, 100);
        assert_eq!(states.check(&first, &[]), Verdict::Append);
        states.record(first);
        assert_eq!(states.check(&first, &[]), Verdict::Duplicate(first), "a retry");
        let next = batch(7, 0, 10, 5, 110);
        assert_eq!(states.check(&next, &[]), Verdict::Append);
        let gap = batch(7, 0, 11, 5, 110);
        assert_eq!(states.check(&gap, &[]), Verdict::OutOfOrder { expected: 10 });
        states.record(next);
        // Only the last five batches are kept: the first goes after five more.
        for i in 0..4 {
            let more = batch(7, 0, 15 + i * 5, 5, 200 + u64::try_from(i).unwrap_or(0) * 5);
            states.record(more);
        }
        assert_eq!(states.check(&first, &[]), Verdict::OutOfOrder { expected: 35 });
        assert_eq!(states.check(&batch(7, 0, 10, 5, 110), &[]), Verdict::Duplicate(next));
    }

    #[test]
    fn epochs_fence_older_producers_and_restart_sequences() {
        let mut states = ProducerStates::new();
        states.record(batch(7, 3, 0, 10, 0));
        assert_eq!(states.check(&batch(7, 2, 10, 1, 10), &[]), Verdict::Fenced { current: 3 });
        assert_eq!(
            states.check(&batch(7, 4, 10, 1, 10), &[]),
            Verdict::OutOfOrder { expected: 0 },
            "a new epoch starts at 0"
        );
        states.record(batch(7, 4, 0, 1, 10));
        let before = states.clone();
        states.record(batch(7, 3, 10, 1, 11));
        assert_eq!(states, before, "a fenced batch in the log changes nothing");
        assert_eq!(states.check(&batch(7, 3, 10, 1, 11), &[]), Verdict::Fenced { current: 4 });
        assert_eq!(states.check(&batch(7, 4, 1, 1, 11), &[]), Verdict::Append);
    }

    #[test]
    fn an_unknown_producer_starts_anywhere() {
        let states = ProducerStates::new();
        assert_eq!(states.check(&batch(9, 0, 500, 1, 0), &[]), Verdict::Append);
    }

    #[test]
    fn sequences_wrap_after_the_largest() {
        let mut states = ProducerStates::new();
        let last = batch(7, 0, i32::MAX - 1, 2, 0);
        assert_eq!(last.last_seq, i32::MAX);
        states.record(last);
        assert_eq!(states.check(&batch(7, 0, 0, 3, 2), &[]), Verdict::Append);
        assert_eq!(add_sequence(i32::MAX, 2), 1);
    }

    #[test]
    fn proposed_batches_count_before_they_are_in_the_log() {
        let mut states = ProducerStates::new();
        states.record(batch(7, 0, 0, 10, 0));
        let proposed = batch(7, 0, 10, 10, 0).proposed();
        assert_eq!(states.check(&batch(7, 0, 20, 1, 0), &[proposed]), Verdict::Append);
        assert_eq!(
            states.check(&batch(7, 0, 10, 10, 0), &[proposed]),
            Verdict::Duplicate(proposed),
            "a retry of a batch still in flight: its offsets are not known yet"
        );
        states.record(proposed);
        let appended = batch(7, 0, 10, 10, 10);
        states.record(appended);
        assert_eq!(states.check(&appended, &[]), Verdict::Duplicate(appended), "offsets filled");
        assert_eq!(
            states.check(&batch(8, 0, 3, 1, 0), &[batch(8, 0, 0, 3, 0).proposed()]),
            Verdict::Append
        );
    }

    #[test]
    fn producers_expire_and_the_least_recent_is_evicted_beyond_the_cap() {
        let mut states = ProducerStates::new();
        states.record(batch(1, 0, 0, 1, 1_000));
        states.record(batch(2, 0, 0, 1, 5_000));
        assert_eq!(states.expire(6_000, 4_000), 1);
        assert_eq!(states.check(&batch(1, 0, 9, 1, 0), &[]), Verdict::Append, "1 is forgotten");
        assert_eq!(states.check(&batch(2, 0, 9, 1, 0), &[]), Verdict::OutOfOrder { expected: 1 });
        for id in 0..i64::try_from(PRODUCERS_PER_PARTITION_MAX).unwrap_or(0) {
            states.record(batch(100 + id, 0, 0, 1, 10_000 + id.unsigned_abs()));
        }
        assert_eq!(states.len(), PRODUCERS_PER_PARTITION_MAX);
        assert_eq!(states.check(&batch(2, 0, 9, 1, 0), &[]), Verdict::Append, "2 was evicted");
    }

    #[test]
    fn malformed_encodings_are_errors() {
        assert_eq!(ProducerStates::decode(&[]), Err(DecodeError("truncated")));
        assert_eq!(ProducerStates::decode(&[9, 0, 0, 0, 0]), Err(DecodeError("unknown version")));
        assert_eq!(ProducerStates::decode(&[1, 0, 0, 0, 0, 7]), Err(DecodeError("trailing bytes")));
        assert_eq!(
            ProducerStates::decode(&[1, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError("too many producers"))
        );
    }

    proptest! {
        #[test]
        fn encoding_round_trips_what_is_in_the_log(
            batches in proptest::collection::vec((0i64..20, 0i16..3, 0i32..1000, 1u32..50), 0..200),
        ) {
            let mut states = ProducerStates::new();
            for (i, (id, epoch, seq, records)) in batches.into_iter().enumerate() {
                states.record(batch(id, epoch, seq, records, u64::try_from(i).unwrap_or(0) * 100));
            }
            prop_assert_eq!(ProducerStates::decode(&states.encode()), Ok(states));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ProducerStates::decode(&bytes);
        }
    }
}
