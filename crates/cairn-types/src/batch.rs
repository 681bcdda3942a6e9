//! Kafka RecordBatch v2: a zero-copy, validating view and a builder.
//!
//! Layout (big-endian), 61 header bytes then the records:
//!
//! ```text
//!  0 base_offset: i64          21 attributes: i16          43 producer_id: i64
//!  8 batch_length: i32         23 last_offset_delta: i32   51 producer_epoch: i16
//! 12 partition_leader_epoch    27 base_timestamp: i64      53 base_sequence: i32
//! 16 magic: i8 (= 2)           35 max_timestamp: i64       57 record_count: i32
//! 17 crc: u32 (CRC32C of bytes 21..)
//! ```
//!
//! `batch_length` counts the bytes after itself, so a batch occupies `12 + batch_length` bytes.
//! The CRC covers `attributes` onward; `base_offset` and `partition_leader_epoch` lie before it, so
//! the log may rewrite them without touching the CRC (checked at compile time below).
//!
//! Everything here reads untrusted bytes: a malformed batch is a [`BatchError`], never a panic.

use crate::ids::{LeaderEpoch, Offset, ProducerId};
use crate::limits::{BATCH_BYTES_MAX, RECORD_BYTES_MIN, RECORD_HEADERS_MAX};
use crate::varint::{self, VarintError};

/// Bytes of the fixed batch header.
pub const HEADER_BYTES: usize = 61;
/// Bytes before the part counted by `batch_length` (base offset and the length itself).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only record batch format cairn accepts.
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const PARTITION_LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;
/// First byte covered by the CRC.
const CRC_COVERED_FROM: usize = ATTRIBUTES_AT;

// The fields the log rewrites on append must lie outside the CRC-covered range.
const _: () = assert!(BASE_OFFSET_AT + 8 <= CRC_COVERED_FROM);
const _: () = assert!(PARTITION_LEADER_EPOCH_AT + 4 <= CRC_COVERED_FROM);
const _: () = assert!(RECORD_COUNT_AT + 4 == HEADER_BYTES);

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// Why bytes are not a valid RecordBatch v2. Always the sender's (or the disk's) fault: the
/// caller rejects the input or reports corruption; retrying the same bytes cannot help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a batch header, or than the header's `batch_length` announces.
    #[error("batch truncated: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the header (or the header's length field) requires.
        needed: usize,
        /// Bytes actually available.
        available: usize,
    },
    /// `batch_length` is smaller than the fixed header.
    #[error("batch length {batch_length} is shorter than a batch header")]
    LengthTooSmall {
        /// The length field as read.
        batch_length: i32,
    },
    /// The batch is larger than [`BATCH_BYTES_MAX`] or a caller-given limit.
    #[error("batch of {bytes} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Size of the batch including the log overhead.
        bytes: u64,
        /// The limit it broke.
        limit: u64,
    },
    /// Magic byte other than 2 (message formats v0/v1 are not supported).
    #[error("unsupported record batch magic {magic}")]
    UnsupportedMagic {
        /// The magic byte as read.
        magic: i8,
    },
    /// The stored CRC32C does not match the bytes.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC from the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// Compression codec outside 0..=4.
    #[error("unknown compression codec {codec}")]
    UnknownCompression {
        /// The codec bits as read.
        codec: i16,
    },
    /// `last_offset_delta` or `record_count` is negative or inconsistent with the other.
    #[error("record count {record_count} inconsistent with last offset delta {last_offset_delta}")]
    BadRecordCount {
        /// The record count field.
        record_count: i32,
        /// The last offset delta field.
        last_offset_delta: i32,
    },
    /// An individual record inside an uncompressed batch is malformed.
    #[error("malformed record {index}: {reason}")]
    BadRecord {
        /// Index of the record inside the batch.
        index: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl From<VarintError> for &'static str {
    fn from(error: VarintError) -> Self {
        match error {
            VarintError::Truncated => "varint truncated",
            VarintError::TooLong => "varint too long",
        }
    }
}

/// Compression codec of a batch (attribute bits 0..=2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Records stored as is.
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing).
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The codec's value in a batch's attribute bits 0..=2 (the inverse of
    /// [`BatchHeader::compression`]).
    #[must_use]
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// Meaning of a batch's timestamps (attribute bit 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker on append.
    LogAppendTime,
}

fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("slice of 4 bytes"))
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("slice of 8 bytes"))
}

/// The fixed header fields of a batch, decoded and checked for internal consistency, without the
/// CRC (which needs the whole batch). What storage uses to walk a log file header by header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: Offset,
    /// Bytes of the batch after the base offset and length fields.
    pub batch_length: u32,
    /// Epoch of the leader that appended the batch; `-1` if never set.
    pub partition_leader_epoch: LeaderEpoch,
    /// CRC32C of the bytes from the attributes onward, as stored.
    pub crc: u32,
    /// Raw attribute bits.
    pub attributes: i16,
    /// `last offset - base offset`.
    pub last_offset_delta: u32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Producer id, or [`ProducerId::NONE`].
    pub producer_id: ProducerId,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the first record, `-1` if not idempotent.
    pub base_sequence: i32,
    /// Records in the batch.
    pub record_count: u32,
}

impl BatchHeader {
    /// Decodes the first [`HEADER_BYTES`] of `bytes`.
    ///
    /// # Errors
    /// [`BatchError`] if the header is short, not magic 2, longer than `bytes_max`, or its counts
    /// are inconsistent.
    pub fn parse(bytes: &[u8], bytes_max: u32) -> Result<BatchHeader, BatchError> {
        if bytes.len() < HEADER_BYTES {
            return Err(BatchError::Truncated { needed: HEADER_BYTES, available: bytes.len() });
        }
        let batch_length = read_i32(bytes, BATCH_LENGTH_AT);
        if batch_length < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
            return Err(BatchError::LengthTooSmall { batch_length });
        }
        let batch_length = batch_length as u32;
        let total = u64::from(batch_length) + LOG_OVERHEAD_BYTES as u64;
        let limit = u64::from(bytes_max.min(BATCH_BYTES_MAX));
        if total > limit {
            return Err(BatchError::TooLarge { bytes: total, limit });
        }
        let magic = bytes[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        let attributes = read_i16(bytes, ATTRIBUTES_AT);
        let codec = attributes & ATTR_COMPRESSION_MASK;
        if codec > 4 {
            return Err(BatchError::UnknownCompression { codec });
        }
        let record_count = read_i32(bytes, RECORD_COUNT_AT);
        let last_offset_delta = read_i32(bytes, LAST_OFFSET_DELTA_AT);
        // Compaction may remove records, so count <= delta + 1 rather than equality.
        if last_offset_delta < 0
            || record_count < 0
            || i64::from(record_count) > i64::from(last_offset_delta) + 1
        {
            return Err(BatchError::BadRecordCount { record_count, last_offset_delta });
        }
        let base_offset = read_i64(bytes, BASE_OFFSET_AT);
        Ok(BatchHeader {
            base_offset: Offset(base_offset as u64),
            batch_length,
            partition_leader_epoch: LeaderEpoch(read_i32(bytes, PARTITION_LEADER_EPOCH_AT)),
            crc: read_i32(bytes, CRC_AT) as u32,
            attributes,
            last_offset_delta: last_offset_delta as u32,
            base_timestamp: read_i64(bytes, BASE_TIMESTAMP_AT),
            max_timestamp: read_i64(bytes, MAX_TIMESTAMP_AT),
            producer_id: ProducerId(read_i64(bytes, PRODUCER_ID_AT)),
            producer_epoch: read_i16(bytes, PRODUCER_EPOCH_AT),
            base_sequence: read_i32(bytes, BASE_SEQUENCE_AT),
            record_count: record_count as u32,
        })
    }

    /// Bytes the whole batch occupies, log overhead included.
    #[must_use]
    pub fn total_bytes(&self) -> u32 {
        self.batch_length + LOG_OVERHEAD_BYTES as u32
    }

    /// Offset of the last record (covered by the batch even if compaction removed it).
    #[must_use]
    pub fn last_offset(&self) -> Offset {
        self.base_offset.plus(u64::from(self.last_offset_delta))
    }

    /// Offset after the batch: where the next batch starts.
    #[must_use]
    pub fn next_offset(&self) -> Offset {
        self.last_offset().plus(1)
    }

    /// The compression codec.
    #[must_use]
    pub fn compression(&self) -> Compression {
        match self.attributes & ATTR_COMPRESSION_MASK {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            // `parse` rejected everything above 4.
            _ => Compression::Zstd,
        }
    }

    /// Whether the timestamps are create or log-append time.
    #[must_use]
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_TIMESTAMP_TYPE == 0 {
            TimestampType::CreateTime
        } else {
            TimestampType::LogAppendTime
        }
    }

    /// Part of a transaction.
    #[must_use]
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// A control batch (transaction markers, and in cairn Raft-internal entries): consumers skip
    /// its records.
    #[must_use]
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// A borrowed, fully validated RecordBatch v2: header consistent, length exact, CRC correct.
#[derive(Clone, Copy, Debug)]
pub struct RecordBatch<'a> {
    header: BatchHeader,
    bytes: &'a [u8],
}

impl<'a> RecordBatch<'a> {
    /// Validates that `bytes` is exactly one batch.
    ///
    /// # Errors
    /// [`BatchError`] for anything malformed, including trailing bytes after the batch.
    pub fn validate(bytes: &'a [u8]) -> Result<RecordBatch<'a>, BatchError> {
        let (batch, rest) = Self::validate_prefix(bytes, BATCH_BYTES_MAX)?;
        if !rest.is_empty() {
            return Err(BatchError::Truncated {
                needed: bytes.len() - rest.len(),
                available: bytes.len(),
            });
        }
        Ok(batch)
    }

    /// Validates the batch at the start of `bytes`; returns it and the bytes after it.
    ///
    /// # Errors
    /// [`BatchError`] for anything malformed, or a batch larger than `bytes_max`.
    pub fn validate_prefix(
        bytes: &'a [u8],
        bytes_max: u32,
    ) -> Result<(RecordBatch<'a>, &'a [u8]), BatchError> {
        let header = frame(bytes, bytes_max)?;
        let total = header.total_bytes() as usize;
        let (batch, rest) = bytes.split_at(total);
        let computed = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch { stored: header.crc, computed });
        }
        if header.compression() == Compression::None {
            // Every record takes at least RECORD_BYTES_MIN bytes: an absurd count is a lie.
            let records_bytes = (total - HEADER_BYTES) as u64;
            if u64::from(header.record_count) * u64::from(RECORD_BYTES_MIN) > records_bytes {
                return Err(BatchError::BadRecordCount {
                    record_count: header.record_count as i32,
                    last_offset_delta: header.last_offset_delta as i32,
                });
            }
        }
        Ok((RecordBatch { header, bytes: batch }, rest))
    }

    /// The decoded header.
    #[must_use]
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes, exactly as stored or received.
    #[must_use]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Offset of the first record.
    #[must_use]
    pub fn base_offset(&self) -> Offset {
        self.header.base_offset
    }

    /// Records in the batch.
    #[must_use]
    pub fn record_count(&self) -> u32 {
        self.header.record_count
    }

    /// The records of an uncompressed batch, decoded lazily. Compressed batches need their
    /// records decompressed first (then [`records_in`]); for them this yields a single error.
    pub fn records(&self) -> Records<'a> {
        Records {
            rest: &self.bytes[HEADER_BYTES..],
            remaining: self.header.record_count,
            index: 0,
            compressed: self.header.compression() != Compression::None,
        }
    }
}

/// The framing of the batch at the start of `bytes`: its header, checked, and that the whole batch
/// is there (`bytes` holds at least [`BatchHeader::total_bytes`]). The CRC is not checked.
fn frame(bytes: &[u8], bytes_max: u32) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes, bytes_max)?;
    let total = header.total_bytes() as usize;
    if bytes.len() < total {
        return Err(BatchError::Truncated { needed: total, available: bytes.len() });
    }
    Ok(header)
}

/// Iterates the whole batches at the start of a buffer of concatenated batches by framing only:
/// each one's position in the buffer and header (checked as [`BatchHeader::parse`] does), without
/// the CRC. Ends at the end of the buffer or at the first batch that is malformed or cut short,
/// silently: for callers that leave validation to someone else (the log validates an append;
/// a consumer validates what it decodes) or that want where the whole batches end.
/// [`Batches`] is the validating walk.
pub struct Frames<'a> {
    bytes: &'a [u8],
    /// Position of the next batch in `bytes`.
    at: usize,
    bytes_max: u32,
}

impl<'a> Frames<'a> {
    /// Batches of at most `bytes_max` bytes each.
    #[must_use]
    pub fn new(bytes: &'a [u8], bytes_max: u32) -> Frames<'a> {
        Frames { bytes, at: 0, bytes_max }
    }
}

impl Iterator for Frames<'_> {
    type Item = (usize, BatchHeader);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.at..)?;
        let Ok(header) = frame(rest, self.bytes_max) else {
            self.at = self.bytes.len();
            return None;
        };
        let start = self.at;
        self.at += header.total_bytes() as usize;
        Some((start, header))
    }
}

/// Iterates the validated batches of a buffer of concatenated batches (a produce request's record
/// set, a range read from disk): each one checked by [`RecordBatch::validate_prefix`], the first
/// failure yielded as the last item. [`Frames`] is the framing-only walk.
pub struct Batches<'a> {
    rest: &'a [u8],
    bytes_max: u32,
}

impl<'a> Batches<'a> {
    /// Batches of at most `bytes_max` bytes each.
    #[must_use]
    pub fn new(bytes: &'a [u8], bytes_max: u32) -> Batches<'a> {
        Batches { rest: bytes, bytes_max }
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<RecordBatch<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match RecordBatch::validate_prefix(self.rest, self.bytes_max) {
            Ok((batch, rest)) => {
                self.rest = rest;
                Some(Ok(batch))
            }
            Err(error) => {
                self.rest = &[];
                Some(Err(error))
            }
        }
    }
}

/// Rewrites the base offset of the batch at the start of `bytes`. The CRC stays valid.
///
/// # Panics
/// If `bytes` is shorter than a header: callers pass batches they have validated.
pub fn set_base_offset(bytes: &mut [u8], offset: Offset) {
    bytes[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&(offset.0 as i64).to_be_bytes());
}

/// Rewrites the partition leader epoch of the batch at the start of `bytes`. The CRC stays valid.
///
/// # Panics
/// If `bytes` is shorter than a header: callers pass batches they have validated.
pub fn set_partition_leader_epoch(bytes: &mut [u8], epoch: LeaderEpoch) {
    bytes[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
        .copy_from_slice(&epoch.0.to_be_bytes());
}

/// Stamps the batch at the start of `bytes` with log-append time `timestamp` (the topic's
/// `message.timestamp.type=LogAppendTime`): sets the timestamp-type attribute and the max
/// timestamp, which consumers then report for every record, and recomputes the CRC they cover.
///
/// # Panics
/// If `bytes` does not start with a whole batch: callers pass batches they have validated.
pub fn set_log_append_time(bytes: &mut [u8], timestamp: i64) {
    let attributes = read_i16(bytes, ATTRIBUTES_AT) | ATTR_TIMESTAMP_TYPE;
    bytes[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    bytes[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp.to_be_bytes());
    set_crc(bytes);
}

/// Recomputes and stores the CRC of the batch at the start of `bytes` (as far as its length
/// field says, within `bytes`), after fields it covers were rewritten.
///
/// # Panics
/// If `bytes` is shorter than a batch header.
pub fn set_crc(bytes: &mut [u8]) {
    let total = usize::try_from(read_i32(bytes, BATCH_LENGTH_AT))
        .map_or(bytes.len(), |length| (LOG_OVERHEAD_BYTES + length).min(bytes.len()));
    let crc = crc32c::crc32c(&bytes[CRC_COVERED_FROM..total]);
    bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// One record of an uncompressed batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Offset relative to the batch's base offset.
    pub offset_delta: u32,
    /// Timestamp relative to the batch's base timestamp.
    pub timestamp_delta: i64,
    /// The key, `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// The value, `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    /// Header keys and values in order.
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

/// Iterator over the records of an uncompressed batch; see [`RecordBatch::records`].
pub struct Records<'a> {
    rest: &'a [u8],
    remaining: u32,
    index: u32,
    compressed: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.compressed {
            self.compressed = false;
            self.remaining = 0;
            return Some(Err(BatchError::BadRecord {
                index: 0,
                reason: "records of a compressed batch must be decompressed first",
            }));
        }
        if self.remaining == 0 {
            return None;
        }
        let index = self.index;
        self.index += 1;
        self.remaining -= 1;
        let result =
            decode_record(self.rest).map_err(|reason| BatchError::BadRecord { index, reason });
        match result {
            Ok((record, used)) => {
                self.rest = &self.rest[used..];
                Some(Ok(record))
            }
            Err(error) => {
                self.remaining = 0;
                Some(Err(error))
            }
        }
    }
}

/// Reads a varint from `input` at `*at`, advancing `*at`.
fn take_varint(input: &[u8], at: &mut usize) -> Result<i32, &'static str> {
    let (value, used) = varint::get_varint(&input[*at..])?;
    *at += used;
    Ok(value)
}

/// Reads a length-prefixed byte string (`-1` = null) from `input` at `*at`.
fn take_bytes<'a>(input: &'a [u8], at: &mut usize) -> Result<Option<&'a [u8]>, &'static str> {
    let len = take_varint(input, at)?;
    if len < 0 {
        return if len == -1 { Ok(None) } else { Err("negative length") };
    }
    let len = len as usize;
    if input.len() - *at < len {
        return Err("length beyond the record");
    }
    let bytes = &input[*at..*at + len];
    *at += len;
    Ok(Some(bytes))
}

/// One record with its headers still encoded (but checked): what [`decode_record`] and
/// [`validate_records`] share, so that decoding and validation accept exactly the same bytes.
struct RecordParts<'a> {
    offset_delta: u32,
    timestamp_delta: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    header_count: u32,
    /// The encoded headers, `header_count` of them, already walked once.
    headers: &'a [u8],
}

/// Splits the record at the start of `input` into its parts, checking every length; returns them
/// and the bytes the record took. Allocates nothing.
fn split_record(input: &[u8]) -> Result<(RecordParts<'_>, usize), &'static str> {
    let (length, prefix) = varint::get_varint(input)?;
    if length < 0 || (input.len() - prefix) < length as usize {
        return Err("record length beyond the batch");
    }
    let body = &input[prefix..prefix + length as usize];
    if body.is_empty() {
        return Err("empty record");
    }
    let mut at = 1; // attributes byte, unused in v2
    let (timestamp_delta, used) = varint::get_varlong(&body[at..])?;
    at += used;
    let offset_delta = take_varint(body, &mut at)?;
    let offset_delta = u32::try_from(offset_delta).map_err(|_| "negative offset delta")?;
    let key = take_bytes(body, &mut at)?;
    let value = take_bytes(body, &mut at)?;
    let header_count = take_varint(body, &mut at)?;
    let header_count = u32::try_from(header_count).map_err(|_| "negative header count")?;
    if header_count > RECORD_HEADERS_MAX || header_count as usize > body.len() - at {
        return Err("header count beyond the record");
    }
    let headers_at = at;
    for _ in 0..header_count {
        take_bytes(body, &mut at)?.ok_or("null header key")?;
        take_bytes(body, &mut at)?;
    }
    if at != body.len() {
        return Err("trailing bytes in record");
    }
    let parts = RecordParts {
        offset_delta,
        timestamp_delta,
        key,
        value,
        header_count,
        headers: &body[headers_at..],
    };
    Ok((parts, prefix + length as usize))
}

fn decode_record(input: &[u8]) -> Result<(Record<'_>, usize), &'static str> {
    let (parts, used) = split_record(input)?;
    let mut headers = Vec::with_capacity(parts.header_count as usize);
    let mut at = 0;
    for _ in 0..parts.header_count {
        let key = take_bytes(parts.headers, &mut at)?.ok_or("null header key")?;
        let value = take_bytes(parts.headers, &mut at)?;
        headers.push((key, value));
    }
    let RecordParts { offset_delta, timestamp_delta, key, value, .. } = parts;
    Ok((Record { offset_delta, timestamp_delta, key, value, headers }, used))
}

/// The records of a batch whose records part is `bytes` and whose header says `record_count`:
/// for a compressed batch, `bytes` is the decompressed records part. Like
/// [`RecordBatch::records`], it does not look past the last record.
#[must_use]
pub fn records_in(bytes: &[u8], record_count: u32) -> Records<'_> {
    Records { rest: bytes, remaining: record_count, index: 0, compressed: false }
}

/// Checks, without allocating, that `bytes` is exactly the records `header` announces: its
/// `record_count` well-formed records and nothing after them, with offset deltas strictly
/// increasing and at most `last_offset_delta` (so that no record claims an offset outside its
/// batch). For a compressed batch, `bytes` is the decompressed records part.
///
/// # Errors
/// [`BatchError::BadRecord`] naming the first record at fault (index `record_count` for bytes
/// after the last record).
pub fn validate_records(bytes: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    let mut rest = bytes;
    let mut offset_delta_next = 0u32;
    for index in 0..header.record_count {
        let bad = |reason| BatchError::BadRecord { index, reason };
        let (parts, used) = split_record(rest).map_err(bad)?;
        if parts.offset_delta < offset_delta_next {
            return Err(bad("offset delta not increasing"));
        }
        if parts.offset_delta > header.last_offset_delta {
            return Err(bad("offset delta beyond the batch's last offset delta"));
        }
        offset_delta_next = parts.offset_delta + 1;
        rest = &rest[used..];
    }
    if !rest.is_empty() {
        return Err(BatchError::BadRecord {
            index: header.record_count,
            reason: "bytes after the last record",
        });
    }
    Ok(())
}

/// The batch whose header is `batch`'s (its first [`HEADER_BYTES`]: offsets, epochs,
/// timestamps, attributes, producer) and whose records part is `records`, holding
/// `record_count` records encoded with `codec`: the length, the count, the codec bits and the
/// CRC are set for them. Compaction's rewrite (RFC 0007); the caller keeps the records
/// consistent with the header (offset deltas within `last_offset_delta`).
///
/// # Panics
/// If `batch` is shorter than a header or the result longer than `i32::MAX`.
#[must_use]
pub fn with_records(
    batch: &[u8],
    codec: Compression,
    records: &[u8],
    record_count: u32,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + records.len());
    out.extend_from_slice(&batch[..HEADER_BYTES]);
    out.extend_from_slice(records);
    let attributes =
        (read_i16(&out, ATTRIBUTES_AT) & !ATTR_COMPRESSION_MASK) | codec.attribute_bits();
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    let length = len_i32(out.len() - LOG_OVERHEAD_BYTES);
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    let count = i32::try_from(record_count).expect("a record count within i32");
    out[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
    set_crc(&mut out);
    out
}

/// Builds an uncompressed RecordBatch v2 (for tests, tools, and Raft-internal control batches).
/// Base offset 0 and leader epoch -1: the log assigns both on append.
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    base_timestamp: i64,
    max_timestamp: i64,
    attributes: i16,
    producer_id: ProducerId,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: u32,
    records: Vec<u8>,
    scratch: Vec<u8>,
}

impl BatchBuilder {
    /// An empty batch whose records are timestamped from `base_timestamp` (ms since the epoch).
    #[must_use]
    pub fn new(base_timestamp: i64) -> BatchBuilder {
        BatchBuilder {
            base_timestamp,
            max_timestamp: base_timestamp,
            attributes: 0,
            producer_id: ProducerId::NONE,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: 0,
            records: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Marks the batch as a control batch.
    #[must_use]
    pub fn control(mut self) -> BatchBuilder {
        self.attributes |= ATTR_CONTROL;
        self
    }

    /// Sets the idempotent producer fields.
    #[must_use]
    pub fn producer(mut self, id: ProducerId, epoch: i16, base_sequence: i32) -> BatchBuilder {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Appends a record timestamped with the batch's base timestamp.
    #[must_use]
    pub fn record(
        self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> BatchBuilder {
        let timestamp = self.base_timestamp;
        self.record_at(timestamp, key, value, headers)
    }

    /// Appends a record with its own timestamp.
    #[must_use]
    pub fn record_at(
        mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> BatchBuilder {
        fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
            match bytes {
                None => varint::put_varint(out, -1),
                Some(bytes) => {
                    varint::put_varint(out, len_i32(bytes.len()));
                    out.extend_from_slice(bytes);
                }
            }
        }
        let body = &mut self.scratch;
        body.clear();
        body.push(0);
        varint::put_varlong(body, timestamp - self.base_timestamp);
        varint::put_varint(body, self.record_count as i32);
        put_bytes(body, key);
        put_bytes(body, value);
        varint::put_varint(body, len_i32(headers.len()));
        for (key, value) in headers {
            put_bytes(body, Some(key));
            put_bytes(body, *value);
        }
        varint::put_varint(&mut self.records, len_i32(body.len()));
        self.records.extend_from_slice(body);
        self.record_count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self
    }

    /// Encodes the batch.
    ///
    /// # Panics
    /// If the batch is empty (Kafka batches hold at least one record) or larger than `i32::MAX`.
    #[must_use]
    pub fn build(&self) -> Vec<u8> {
        assert!(self.record_count > 0, "a batch holds at least one record");
        let total = HEADER_BYTES + self.records.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&0i64.to_be_bytes());
        out.extend_from_slice(&len_i32(total - LOG_OVERHEAD_BYTES).to_be_bytes());
        out.extend_from_slice(&(-1i32).to_be_bytes());
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&self.attributes.to_be_bytes());
        out.extend_from_slice(&(self.record_count as i32 - 1).to_be_bytes());
        out.extend_from_slice(&self.base_timestamp.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer_id.0.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&(self.record_count as i32).to_be_bytes());
        out.extend_from_slice(&self.records);
        let crc = crc32c::crc32c(&out[CRC_COVERED_FROM..]);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

fn len_i32(len: usize) -> i32 {
    i32::try_from(len).expect("record field longer than i32::MAX")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        BatchBuilder::new(1000)
            .record(Some(b"key"), Some(b"value"), &[(b"h", Some(b"1"))])
            .record_at(1005, None, Some(b""), &[])
            .record_at(999, Some(b"k2"), None, &[(b"h2", None)])
            .build()
    }

    #[test]
    fn builder_roundtrip() {
        let bytes = sample();
        let batch = RecordBatch::validate(&bytes).unwrap();
        let header = batch.header();
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.max_timestamp, 1005);
        assert_eq!(header.compression(), Compression::None);
        assert!(!header.is_control());
        let records: Vec<_> = batch.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(records[0].key, Some(&b"key"[..]));
        assert_eq!(records[0].headers, vec![(&b"h"[..], Some(&b"1"[..]))]);
        assert_eq!(records[1].timestamp_delta, 5);
        assert_eq!(records[1].value, Some(&b""[..]));
        assert_eq!(records[2].offset_delta, 2);
        assert_eq!(records[2].value, None);
        assert_eq!(records[2].headers, vec![(&b"h2"[..], None)]);
    }

    #[test]
    fn rewriting_offset_and_epoch_keeps_crc_valid() {
        let mut bytes = sample();
        set_base_offset(&mut bytes, Offset(1 << 40));
        set_partition_leader_epoch(&mut bytes, LeaderEpoch(7));
        let batch = RecordBatch::validate(&bytes).unwrap();
        assert_eq!(batch.base_offset(), Offset(1 << 40));
        assert_eq!(batch.header().partition_leader_epoch, LeaderEpoch(7));
        assert_eq!(batch.header().last_offset(), Offset((1 << 40) + 2));
    }

    #[test]
    fn log_append_time_keeps_the_batch_valid() {
        let mut bytes = sample();
        set_log_append_time(&mut bytes, 42_000);
        let batch = RecordBatch::validate(&bytes).unwrap();
        assert_eq!(batch.header().timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(batch.header().max_timestamp, 42_000);
        assert_eq!(batch.records().count(), 3);
    }

    #[test]
    fn typed_errors() {
        let good = sample();
        let check = |bytes: &[u8], expected: fn(&BatchError) -> bool| {
            let error = RecordBatch::validate(bytes).unwrap_err();
            assert!(expected(&error), "unexpected error {error:?}");
        };
        check(&good[..10], |e| matches!(e, BatchError::Truncated { .. }));
        check(&good[..good.len() - 1], |e| matches!(e, BatchError::Truncated { .. }));
        let mut bad = good.clone();
        bad[MAGIC_AT] = 1;
        check(&bad, |e| matches!(e, BatchError::UnsupportedMagic { magic: 1 }));
        let mut bad = good.clone();
        bad[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&10i32.to_be_bytes());
        check(&bad, |e| matches!(e, BatchError::LengthTooSmall { .. }));
        let mut bad = good.clone();
        bad[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        check(&bad, |e| matches!(e, BatchError::TooLarge { .. }));
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        check(&bad, |e| matches!(e, BatchError::CrcMismatch { .. }));
        let mut trailing = good.clone();
        trailing.push(0);
        check(&trailing, |e| matches!(e, BatchError::Truncated { .. }));
    }

    #[test]
    fn absurd_record_count_is_rejected() {
        let mut bytes = sample();
        bytes[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&1_000_000i32.to_be_bytes());
        bytes[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
            .copy_from_slice(&999_999i32.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[CRC_COVERED_FROM..]);
        bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            RecordBatch::validate(&bytes),
            Err(BatchError::BadRecordCount { record_count: 1_000_000, .. })
        ));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let good = sample();
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let at = bit / 8;
            // Base offset and leader epoch are outside the CRC by design; the log checks those
            // against its own offsets when reading.
            let outside_crc =
                at < BATCH_LENGTH_AT || (PARTITION_LEADER_EPOCH_AT..MAGIC_AT).contains(&at);
            assert_eq!(RecordBatch::validate(&bad).is_err(), !outside_crc, "bit {bit}");
        }
    }

    #[test]
    fn batches_iterates_concatenated_batches() {
        let mut buffer = sample();
        buffer.extend_from_slice(&sample());
        let batches: Vec<_> = Batches::new(&buffer, BATCH_BYTES_MAX).collect();
        assert_eq!(batches.len(), 2);
        assert!(batches.iter().all(Result::is_ok));
        buffer.push(1);
        let results: Vec<_> = Batches::new(&buffer, BATCH_BYTES_MAX).collect();
        assert_eq!(results.len(), 3);
        assert!(results[2].is_err());
    }

    #[test]
    fn frames_walk_whole_batches_without_the_crc() {
        let one = sample();
        let mut buffer = one.clone();
        buffer.extend_from_slice(&one);
        // A damaged CRC is not framing's concern.
        *buffer.last_mut().unwrap() ^= 1;
        let frames: Vec<_> = Frames::new(&buffer, BATCH_BYTES_MAX).collect();
        let positions: Vec<_> = frames.iter().map(|(at, _)| *at).collect();
        assert_eq!(positions, [0, one.len()]);
        assert!(frames.iter().all(|(_, header)| header.record_count == 3));
        // A batch cut short ends the walk, as does a malformed header, and nothing follows.
        let mut cut = buffer.clone();
        cut.extend_from_slice(&one[..one.len() - 1]);
        assert_eq!(Frames::new(&cut, BATCH_BYTES_MAX).count(), 2);
        let mut bad = one.clone();
        bad[MAGIC_AT] = 1;
        bad.extend_from_slice(&one);
        assert_eq!(Frames::new(&bad, BATCH_BYTES_MAX).count(), 0);
        let limit = u32::try_from(one.len() - 1).unwrap();
        assert_eq!(Frames::new(&one, limit).count(), 0);
        assert_eq!(Frames::new(&[], BATCH_BYTES_MAX).count(), 0);
    }

    /// Validates the records part of the batch `bytes` against its header, with the counts
    /// replaced by `record_count` and `last_offset_delta`.
    fn records_check(
        bytes: &[u8],
        record_count: u32,
        last_offset_delta: u32,
    ) -> Result<(), BatchError> {
        let mut header = *RecordBatch::validate(bytes).unwrap().header();
        header.record_count = record_count;
        header.last_offset_delta = last_offset_delta;
        validate_records(&bytes[HEADER_BYTES..], &header)
    }

    #[test]
    fn validate_records_boundaries() {
        let bytes = sample();
        assert_eq!(records_check(&bytes, 3, 2), Ok(()));
        // Compaction leaves gaps: fewer records than offsets is fine.
        assert_eq!(records_check(&bytes, 3, 10), Ok(()));
        let bad = |index, reason| Err(BatchError::BadRecord { index, reason });
        assert_eq!(records_check(&bytes, 2, 2), bad(2, "bytes after the last record"));
        assert!(matches!(records_check(&bytes, 4, 3), Err(BatchError::BadRecord { index: 3, .. })));
        assert_eq!(
            records_check(&bytes, 3, 1),
            bad(2, "offset delta beyond the batch's last offset delta")
        );
        let repeated = BatchBuilder::new(0).record(None, None, &[]).build();
        let mut twice = repeated[HEADER_BYTES..].to_vec();
        twice.extend_from_slice(&repeated[HEADER_BYTES..]);
        let header = *RecordBatch::validate(&sample()).unwrap().header();
        let header = BatchHeader { record_count: 2, last_offset_delta: 1, ..header };
        assert_eq!(validate_records(&twice, &header), bad(1, "offset delta not increasing"));
    }

    #[test]
    fn records_in_decodes_a_records_part() {
        let bytes = sample();
        let from_batch: Vec<_> = RecordBatch::validate(&bytes).unwrap().records().collect();
        let from_bytes: Vec<_> = records_in(&bytes[HEADER_BYTES..], 3).collect();
        assert_eq!(from_batch, from_bytes);
    }

    proptest! {
        #[test]
        fn validate_never_panics(bytes: Vec<u8>) {
            let _ = RecordBatch::validate(&bytes);
            for batch in Batches::new(&bytes, BATCH_BYTES_MAX).flatten() {
                for _ in batch.records() {}
            }
        }

        #[test]
        fn frames_agree_with_batches(cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>()) {
            let mut buffer = sample();
            buffer.extend_from_slice(&BatchBuilder::new(7).record(None, Some(b"v"), &[]).build());
            buffer.extend_from_slice(&sample());
            let flip = flip.index(buffer.len());
            buffer[flip] ^= 0x40;
            buffer.truncate(cut.index(buffer.len() + 1));
            // Every batch the validating walk accepts, framing finds at the same place, and
            // framing goes no further than the whole batches that are there.
            let mut at = 0;
            let frames: Vec<_> = Frames::new(&buffer, BATCH_BYTES_MAX).collect();
            for (i, batch) in Batches::new(&buffer, BATCH_BYTES_MAX).map_while(Result::ok).enumerate() {
                prop_assert_eq!(frames.get(i), Some(&(at, *batch.header())));
                at += batch.as_bytes().len();
            }
            for (start, header) in &frames {
                prop_assert!(start + header.total_bytes() as usize <= buffer.len());
            }
        }

        #[test]
        fn records_roundtrip(
            records in proptest::collection::vec(
                (proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                 proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
                 -1000i64..1000),
                1..20),
        ) {
            let mut builder = BatchBuilder::new(1_000_000);
            for (key, value, ts) in &records {
                builder = builder.record_at(1_000_000 + ts, key.as_deref(), value.as_deref(), &[]);
            }
            let bytes = builder.build();
            let batch = RecordBatch::validate(&bytes).unwrap();
            let decoded: Vec<_> = batch.records().collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(decoded.len(), records.len());
            for (i, (record, (key, value, ts))) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(record.offset_delta as usize, i);
                prop_assert_eq!(record.key, key.as_deref());
                prop_assert_eq!(record.value, value.as_deref());
                prop_assert_eq!(record.timestamp_delta, *ts);
            }
        }

        #[test]
        fn validate_records_agrees_with_decoding(
            seed_flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            record_count in 0u32..5,
        ) {
            let bytes = sample();
            let mut records = bytes[HEADER_BYTES..].to_vec();
            for (at, value) in seed_flips {
                let at = at % records.len();
                records[at] = value;
            }
            let header = *RecordBatch::validate(&bytes).unwrap().header();
            let header = BatchHeader { record_count, last_offset_delta: 4, ..header };
            let validated = validate_records(&records, &header);
            // Validation accepts what decoding accepts, and fails where decoding does, except
            // for the checks only it makes (offsets, bytes after the last record).
            let decoded: Result<Vec<_>, _> = records_in(&records, record_count).collect();
            match &validated {
                Ok(()) => prop_assert_eq!(decoded.map(|d| d.len()), Ok(record_count as usize)),
                Err(BatchError::BadRecord { reason, .. })
                    if reason.contains("offset delta") || reason.contains("after the last") => {}
                Err(error) => prop_assert_eq!(decoded.as_ref().err(), Some(error)),
            }
        }

        #[test]
        fn mutated_batches_never_panic(seed_flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut bytes = sample();
            for (at, value) in seed_flips {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            if let Ok(batch) = RecordBatch::validate(&bytes) {
                for _ in batch.records() {}
            }
        }
    }
}
