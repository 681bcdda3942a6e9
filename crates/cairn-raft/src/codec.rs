//! A [`RaftEntry`] ⇄ one Kafka record batch (RFC 0003 §3 "Control batches").
//!
//! - `Normal`: the produced batch, as is.
//! - `Blank`: a control batch (attribute bit 0x20, producer id -1) of one record whose key is
//!   the 4-byte control key `(version 0, type 100)` and whose value is empty.
//! - `Membership`: the same with type 101 and the [`Members`] encoding as the value.
//! - A compaction round (RFC 0007): a normal entry whose proposal is the same with type 102 and
//!   the round as the value ([`compaction_batch`]); the leader's cleaner proposes it, and every
//!   replica queues the round when it applies the entry.
//!
//! Kafka consumers skip control batches, and Java and librdkafka skip control types they do not
//! know (Kafka's own are 0–6); librdkafka fails on a control key of any size but 4. Each entry
//! takes one offset, as KRaft's LEADER_CHANGE does.
//!
//! A batch is one of Raft's own entries exactly when it is a control batch without a producer
//! (producer id -1): Kafka's own control batches, transaction markers, always carry their
//! producer. [`encode`] refuses a proposal of that form, so decoding is never ambiguous.
//!
//! Every replica must store identical bytes for an entry: a control batch's only free field is
//! its timestamp, an input of [`encode`] (the membership entry's comes from the command that
//! made it, never from a clock), and an entry decoded from a batch is encoded as that batch.

use bytes::Bytes;
use cairn_storage::CompactionRound;
use cairn_types::batch::{BatchBuilder, BatchHeader, Compression, RecordBatch, TimestampType};
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{BatchError, LeaderEpoch, Offset, ProducerId, RaftIndex};

use crate::epoch::{self, TermError};
use crate::membership::{Members, MembersError};
use crate::{LogId, Payload, Proposal, RaftEntry, Term};

/// The version of the control key cairn writes and reads (Kafka's control keys are version 0).
pub const CONTROL_KEY_VERSION: i16 = 0;
/// Control type of a blank entry; above Kafka's own types (0–6).
pub const CONTROL_TYPE_BLANK: i16 = 100;
/// Control type of a membership entry.
pub const CONTROL_TYPE_MEMBERSHIP: i16 = 101;
/// Control type of a compaction round.
pub const CONTROL_TYPE_COMPACTION: i16 = 102;
/// Bytes of a compaction round's value: version, from, to, time, delete retention, keys.
const COMPACTION_VALUE_BYTES: usize = 1 + 8 * 4 + 4;
/// The version of a compaction round's value.
const COMPACTION_VALUE_VERSION: u8 = 0;
/// Bytes of a control record's key: version and type, two `i16`s.
const CONTROL_KEY_BYTES: usize = 4;

/// Why an entry cannot be encoded, or a stored batch is not an entry. Decoding a batch whose
/// CRC held and failing is corruption (or a writer's bug): the replica stops, nothing retries.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not exactly one valid record batch.
    #[error("not a valid record batch: {0}")]
    Batch(#[from] BatchError),
    /// The entry's term has no Kafka leader epoch, or the batch's epoch names no term.
    #[error(transparent)]
    Term(#[from] TermError),
    /// The batch was stamped by another term's leader than its log id says.
    #[error("batch of leader epoch {epoch} stored as an entry of term {term}")]
    EpochMismatch {
        /// The term of the entry's log id.
        term: Term,
        /// The epoch in the batch.
        epoch: LeaderEpoch,
    },
    /// A proposal in the form reserved for Raft's own entries: a control batch without a
    /// producer. Refused so that no produced batch can be read back as a membership change.
    #[error("a proposal may not be a control batch without a producer id")]
    ReservedProposal,
    /// A control batch without a producer that breaks the form cairn writes.
    #[error("malformed raft control batch: {reason}")]
    Control {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A control key this build does not know.
    #[error("unknown raft control key: version {version}, type {control_type}")]
    UnknownControl {
        /// The key's version.
        version: i16,
        /// The key's type.
        control_type: i16,
    },
    /// The membership cannot be stored, or its stored encoding is malformed.
    #[error("membership entry: {0}")]
    Members(#[from] MembersError),
}

/// The batch to append for `entry`: a normal entry's proposal as is; a blank or membership
/// entry's control batch, timestamped `timestamp_ms` (or, for an entry decoded from a batch,
/// that batch). Base offset and leader epoch are the log's to stamp.
///
/// # Errors
/// [`CodecError::Batch`] for a proposal that is not exactly one batch,
/// [`CodecError::ReservedProposal`] for one in the form of Raft's own entries, and
/// [`CodecError::Members`] for a membership cairn cannot store.
pub fn encode(entry: &RaftEntry, timestamp_ms: i64) -> Result<Bytes, CodecError> {
    if let Some(stored) = entry.stored() {
        return Ok(stored.clone());
    }
    match entry.payload() {
        Payload::Normal(proposal) => {
            check_proposal(&proposal.batch)?;
            Ok(proposal.batch.clone())
        }
        Payload::Blank => Ok(control_batch(CONTROL_TYPE_BLANK, &[], timestamp_ms)),
        Payload::Membership(membership) => {
            let members = Members::from_membership(membership)?;
            Ok(control_batch(CONTROL_TYPE_MEMBERSHIP, &members.encode(), timestamp_ms))
        }
    }
}

/// The entry `log_id` whose stored form is `batch`: the batch is validated whole (length, CRC)
/// and its leader epoch must be the log id's term.
///
/// # Errors
/// [`CodecError`] for anything but a valid batch of that term in a form [`encode`] writes.
pub fn decode(batch: Bytes, log_id: LogId) -> Result<RaftEntry, CodecError> {
    let term = log_id.leader_id.term;
    let header = *RecordBatch::validate(&batch)?.header();
    let epoch = header.partition_leader_epoch;
    if epoch::term_of(epoch)? != term {
        return Err(CodecError::EpochMismatch { term, epoch });
    }
    if !is_reserved(&header) {
        let proposal = Proposal { batch: batch.clone(), ticket: Proposal::TICKET_NONE };
        return Ok(RaftEntry::normal(term, log_id.index, proposal).with_stored(batch));
    }
    let entry = match control_record(&batch, &header)? {
        (CONTROL_TYPE_BLANK, []) => RaftEntry::blank(term, log_id.index),
        (CONTROL_TYPE_BLANK, _) => {
            return Err(CodecError::Control { reason: "blank with a value" });
        }
        (CONTROL_TYPE_MEMBERSHIP, value) => {
            RaftEntry::membership(term, log_id.index, &Members::decode(value)?)
        }
        (CONTROL_TYPE_COMPACTION, _) => {
            compaction_round(&batch, &header)?;
            let proposal = Proposal { batch: batch.clone(), ticket: Proposal::TICKET_NONE };
            RaftEntry::normal(term, log_id.index, proposal)
        }
        (control_type, _) => {
            return Err(CodecError::UnknownControl { version: CONTROL_KEY_VERSION, control_type });
        }
    };
    Ok(entry.with_stored(batch))
}

/// Whether a batch has the form of Raft's own entries (a control batch without a producer):
/// a produced batch in that form is refused before it is proposed.
#[must_use]
pub fn is_reserved(header: &BatchHeader) -> bool {
    header.is_control() && header.producer_id == ProducerId::NONE
}

/// Checks that a proposal is exactly one batch (by its header: the Kafka layer validated the
/// records and the CRC) and, in the reserved form, a compaction round's.
fn check_proposal(batch: &[u8]) -> Result<(), CodecError> {
    let header = BatchHeader::parse(batch, BATCH_BYTES_MAX)?;
    let total = header.total_bytes() as usize;
    if total != batch.len() {
        return Err(BatchError::Truncated { needed: total, available: batch.len() }.into());
    }
    if is_reserved(&header) && compaction_round(batch, &header).is_err() {
        return Err(CodecError::ReservedProposal);
    }
    Ok(())
}

/// The batch of a compaction round's proposal, timestamped with the round's time. (The
/// round's index is its entry's.)
#[must_use]
pub fn compaction_batch(round: &CompactionRound) -> Bytes {
    let mut value = Vec::with_capacity(COMPACTION_VALUE_BYTES);
    value.push(COMPACTION_VALUE_VERSION);
    value.extend_from_slice(&round.from.0.to_be_bytes());
    value.extend_from_slice(&round.to.0.to_be_bytes());
    value.extend_from_slice(&round.time_ms.to_be_bytes());
    value.extend_from_slice(&round.delete_retention_ms.to_be_bytes());
    value.extend_from_slice(&round.keys.to_be_bytes());
    control_batch(CONTROL_TYPE_COMPACTION, &value, round.time_ms)
}

/// The round of a compaction batch (its index left 0 for the entry's to fill in).
///
/// # Errors
/// [`CodecError::Control`] or [`CodecError::UnknownControl`] for any other batch.
pub(crate) fn compaction_round(
    batch: &[u8],
    header: &BatchHeader,
) -> Result<CompactionRound, CodecError> {
    let malformed = |reason| CodecError::Control { reason };
    let (CONTROL_TYPE_COMPACTION, value) = control_record(batch, header)? else {
        return Err(malformed("not a compaction round"));
    };
    let value: &[u8; COMPACTION_VALUE_BYTES] =
        value.try_into().map_err(|_| malformed("compaction round size"))?;
    if value[0] != COMPACTION_VALUE_VERSION {
        return Err(malformed("compaction round version"));
    }
    let field = |at: usize| u64::from_be_bytes(value[at..at + 8].try_into().expect("8 bytes"));
    let signed = |at: usize| i64::from_be_bytes(value[at..at + 8].try_into().expect("8 bytes"));
    let (from, to) = (Offset(field(1)), Offset(field(9)));
    if from > to {
        return Err(malformed("compaction round ends before it starts"));
    }
    Ok(CompactionRound {
        index: RaftIndex(0),
        from,
        to,
        time_ms: signed(17),
        delete_retention_ms: signed(25),
        keys: u32::from_be_bytes(value[33..37].try_into().expect("4 bytes")),
    })
}

/// What the leader's append writes in place of a proposal it refuses (an idempotent batch that
/// repeats, skips or is fenced, RFC 0006 §4): a blank entry's control batch. The entry keeps
/// its index, consumers skip it, and it reads back as a blank entry.
pub(crate) fn refused_batch(timestamp_ms: i64) -> Bytes {
    control_batch(CONTROL_TYPE_BLANK, &[], timestamp_ms)
}

/// A control batch without a producer, of one record: key `(version 0, control_type)`, `value`.
fn control_batch(control_type: i16, value: &[u8], timestamp_ms: i64) -> Bytes {
    let mut key = [0; CONTROL_KEY_BYTES];
    key[..2].copy_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key[2..].copy_from_slice(&control_type.to_be_bytes());
    let batch = BatchBuilder::new(timestamp_ms).control().record(Some(&key), Some(value), &[]);
    Bytes::from(batch.build())
}

/// The control type and value of a reserved batch's one record, checked against the form
/// [`control_batch`] writes: uncompressed, create time, not transactional, no producer epoch or
/// sequence, one record at offset delta 0 with a 4-byte version-0 key, a value and no headers.
fn control_record<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
) -> Result<(i16, &'a [u8]), CodecError> {
    let malformed = |reason| CodecError::Control { reason };
    if header.compression() != Compression::None {
        return Err(malformed("compressed"));
    }
    if header.is_transactional() || header.timestamp_type() != TimestampType::CreateTime {
        return Err(malformed("unexpected attributes"));
    }
    if header.producer_epoch != -1 || header.base_sequence != -1 {
        return Err(malformed("a producer epoch or sequence"));
    }
    if header.record_count != 1 || header.last_offset_delta != 0 {
        return Err(malformed("not exactly one record"));
    }
    // Validated above: the batch is whole, so its one record decodes or is an error.
    let batch = RecordBatch::validate(batch)?;
    let record = batch.records().next().ok_or(malformed("no record"))??;
    if record.offset_delta != 0 || record.timestamp_delta != 0 || !record.headers.is_empty() {
        return Err(malformed("record fields"));
    }
    let key = record.key.ok_or(malformed("no control key"))?;
    let key: [u8; CONTROL_KEY_BYTES] = key.try_into().map_err(|_| malformed("control key size"))?;
    let version = i16::from_be_bytes([key[0], key[1]]);
    let control_type = i16::from_be_bytes([key[2], key[3]]);
    if version != CONTROL_KEY_VERSION {
        return Err(CodecError::UnknownControl { version, control_type });
    }
    let value = record.value.ok_or(malformed("no value"))?;
    Ok((control_type, value))
}
