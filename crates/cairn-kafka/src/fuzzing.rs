//! Hostile-input entry points: the bodies of the cargo-fuzz targets in `fuzz/` and of the tests
//! that replay their corpora on stable (`tests/fuzz_corpus.rs`), so that both run one piece of
//! code.
//!
//! - [`frame_length`] and [`decode_frame`]: the server's framing and request decode path without
//!   a socket. They mirror `server.rs` step for step (length prefix check before anything is
//!   allocated, [`shape::check_header`], the served version table, [`shape::check_request`], then
//!   `kafka-protocol`'s `RequestHeader` and `RequestKind` decoders); the server keeps its own
//!   private copy for now, so a change to one must be made to the other.
//! - [`fuzz_frame`], [`fuzz_request`], [`fuzz_record_batch`]: the three targets. Malformed input
//!   is never a failure; each panics only when a promise of the code under test is broken (the
//!   shape check accepted what `kafka-protocol` cannot decode, decompression grew its buffer past
//!   the cap, validation and decoding of records disagree), which is what the fuzzer reports.
//!
//! Nothing here is used by the server; it is public so that the fuzz crate (outside the
//! workspace) and integration tests can reach it.

use bytes::{Buf, Bytes};
use cairn_types::batch::{
    self, Batches, Compression, HEADER_BYTES, LOG_OVERHEAD_BYTES, RecordBatch,
};
use cairn_types::limits::{BATCH_BYTES_MAX, FRAME_BYTES_MAX};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::compression;
use crate::handlers;
use crate::shape::{self, ShapeError};

/// Smallest frame the server reads: api key, api version, correlation id and a client id length
/// (the check in `server.rs`'s `read_requests`).
pub const FRAME_BYTES_MIN: u32 = 10;

/// Decompression cap of [`fuzz_record_batch`]: small, so a bomb costs the fuzzer little, and
/// large enough that ordinary compressed batches decode.
pub const FUZZ_DECOMPRESSED_BYTES_MAX: usize = 1024 * 1024;

/// Why the server would close the connection on a frame. The variants follow the server's
/// reasons (`Close` in `server.rs`), with the shape check's and the crate's rejections apart.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix is below [`FRAME_BYTES_MIN`] or above [`FRAME_BYTES_MAX`]; nothing was
    /// allocated for the frame.
    #[error("frame of {0} bytes is outside the allowed size")]
    Size(i64),
    /// [`shape::check_header`] rejected the request header.
    #[error("malformed request header: {0}")]
    Header(ShapeError),
    /// The API or version is not served (and the request is not an ApiVersions the server
    /// answers with its version table).
    #[error("unsupported api {api_key} version {api_version}")]
    Unsupported {
        /// The key as read.
        api_key: i16,
        /// The version as read.
        api_version: i16,
    },
    /// [`shape::check_request`] rejected the body.
    #[error("malformed request body: {0}")]
    Body(ShapeError),
    /// `kafka-protocol` failed on a header or body that the shape check accepted: a shape-table
    /// bug (the server closes the connection; the fuzz targets panic).
    #[error("kafka-protocol rejected a checked request: {0}")]
    Decode(String),
}

/// A frame the server would hand to a handler.
#[derive(Debug)]
pub struct DecodedFrame {
    /// The API.
    pub api_key: ApiKey,
    /// The version served: 0 for an ApiVersions request of an unsupported version.
    pub api_version: i16,
    /// The decoded header (for the unsupported ApiVersions case, the v0 header the server
    /// answers with).
    pub header: RequestHeader,
    /// The decoded body; `None` for an ApiVersions request of an unsupported version.
    pub body: Option<RequestKind>,
    /// Bytes `kafka-protocol` took for the header (the shape check's `header_len` promises the
    /// same); 0 when nothing was decoded.
    pub header_bytes: usize,
    /// Bytes of the frame `kafka-protocol` left after the body (the shape check promises none);
    /// the whole frame when nothing was decoded.
    pub bytes_left: usize,
}

/// The length of the frame announced by a 4-byte big-endian prefix, checked as the server checks
/// it before allocating the frame's buffer.
///
/// # Errors
/// [`FrameError::Size`] if the length is below [`FRAME_BYTES_MIN`] (negative included) or above
/// [`FRAME_BYTES_MAX`].
pub fn frame_length(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let length = i32::from_be_bytes(prefix);
    match u32::try_from(length) {
        Ok(length) if (FRAME_BYTES_MIN..=FRAME_BYTES_MAX).contains(&length) => {
            usize::try_from(length).map_err(|_| FrameError::Size(i64::from(length)))
        }
        _ => Err(FrameError::Size(i64::from(length))),
    }
}

/// Decodes one request frame (the bytes after the length prefix) as the server does.
///
/// # Errors
/// The [`FrameError`] for which the server would close the connection.
pub fn decode_frame(frame: &[u8]) -> Result<DecodedFrame, FrameError> {
    let info = shape::check_header(frame).map_err(FrameError::Header)?;
    let unsupported =
        FrameError::Unsupported { api_key: info.api_key, api_version: info.api_version };
    let api_key = ApiKey::try_from(info.api_key).map_err(|()| unsupported.clone())?;
    let supported = handlers::versions(api_key)
        .is_some_and(|(min, max)| (min..=max).contains(&info.api_version));
    if !supported {
        if api_key == ApiKey::ApiVersions {
            let header = RequestHeader::default()
                .with_request_api_key(info.api_key)
                .with_request_api_version(0)
                .with_correlation_id(info.correlation_id);
            return Ok(DecodedFrame {
                api_key,
                api_version: 0,
                header,
                body: None,
                header_bytes: 0,
                bytes_left: frame.len(),
            });
        }
        return Err(unsupported);
    }
    let body = frame.get(info.header_len..).unwrap_or_default();
    shape::check_request(info.api_key, info.api_version, body).map_err(FrameError::Body)?;
    let mut buffer = Bytes::copy_from_slice(frame);
    let header =
        RequestHeader::decode(&mut buffer, api_key.request_header_version(info.api_version))
            .map_err(|e| FrameError::Decode(format!("request header: {e}")))?;
    let header_bytes = frame.len() - buffer.remaining();
    let body = RequestKind::decode(api_key, &mut buffer, info.api_version)
        .map_err(|e| FrameError::Decode(format!("{api_key:?} v{}: {e}", info.api_version)))?;
    Ok(DecodedFrame {
        api_key,
        api_version: info.api_version,
        header,
        body: Some(body),
        header_bytes,
        bytes_left: buffer.remaining(),
    })
}

/// Target `frame`: `data` is what a client sent on one connection, read as the server reads it
/// (length prefix, frame, decode) until the server would close the connection or the bytes run
/// out.
///
/// # Panics
/// If the shape check accepts a frame that `kafka-protocol` then fails to decode, or decodes
/// with a different header length or leftover bytes.
pub fn fuzz_frame(data: &[u8]) {
    let mut rest = data;
    while let Some((prefix, after)) = rest.split_first_chunk::<4>() {
        let Ok(length) = frame_length(*prefix) else { return };
        // Fewer bytes than announced: the server would wait for more, then see EOF.
        let Some((frame, after)) = after.split_at_checked(length) else { return };
        match decode_frame(frame) {
            Ok(decoded) => {
                if decoded.body.is_some() {
                    let info = shape::check_header(frame).expect("decode_frame checked it");
                    assert_eq!(decoded.header_bytes, info.header_len, "header length disagrees");
                    assert_eq!(
                        decoded.bytes_left, 0,
                        "kafka-protocol left bytes of a checked body"
                    );
                }
            }
            Err(FrameError::Decode(error)) => panic!("{error}"),
            Err(_) => return,
        }
        rest = after;
    }
}

/// Target `request`: `data` is an api key (`i16`, big-endian), an api version (`i16`) and a
/// request body. The body goes through [`shape::check_request`], and, if accepted, through
/// `kafka-protocol`'s decoder: every API and version cairn accepts ([`shape::APIS`]), not only
/// those the server serves today.
///
/// # Panics
/// If the shape check accepts a body that `kafka-protocol` fails to decode or does not consume
/// exactly (the promise of [`shape`]).
pub fn fuzz_request(data: &[u8]) {
    let Some(([key_hi, key_lo, version_hi, version_lo], body)) = data.split_first_chunk::<4>()
    else {
        return;
    };
    let api_key = i16::from_be_bytes([*key_hi, *key_lo]);
    let api_version = i16::from_be_bytes([*version_hi, *version_lo]);
    if shape::check_request(api_key, api_version, body).is_err() {
        return;
    }
    let key = ApiKey::try_from(api_key)
        .unwrap_or_else(|()| panic!("shape accepted api key {api_key}, unknown to the crate"));
    let mut buffer = Bytes::copy_from_slice(body);
    if let Err(error) = RequestKind::decode(key, &mut buffer, api_version) {
        panic!("shape accepted {key:?} v{api_version} but kafka-protocol failed: {error}");
    }
    assert_eq!(buffer.remaining(), 0, "{key:?} v{api_version}: kafka-protocol left bytes");
}

/// Target `record_batch`: `data` is a record set (concatenated batches, as in a produce
/// request). Runs [`RecordBatch::validate`] on the whole, then per batch what the broker runs on
/// a produced batch: [`batch::validate_records`] for uncompressed batches,
/// [`compression::validate_records`] (capped at [`FUZZ_DECOMPRESSED_BYTES_MAX`]) for all, and
/// decodes the records to compare.
///
/// All of it twice: on `data` as it is, and with the CRC of every batch it frames recomputed, so
/// that mutations reach the records and the codecs instead of stopping at the checksum.
///
/// # Panics
/// If decompression grows its buffer past the cap, or record validation accepts records that
/// decoding rejects.
pub fn fuzz_record_batch(data: &[u8]) {
    check_record_set(data);
    let resealed = with_crcs_fixed(data);
    if resealed != data {
        check_record_set(&resealed);
    }
}

/// The checks of [`fuzz_record_batch`] on one record set.
fn check_record_set(data: &[u8]) {
    let _ = RecordBatch::validate(data);
    let mut scratch = Vec::new();
    for batch in Batches::new(data, BATCH_BYTES_MAX) {
        let Ok(batch) = batch else { return };
        let header = *batch.header();
        // The lazy iterator on any batch (a compressed one yields one error).
        for _ in batch.records() {}
        let validated =
            compression::validate_records(&batch, &mut scratch, FUZZ_DECOMPRESSED_BYTES_MAX);
        assert!(
            scratch.capacity() <= FUZZ_DECOMPRESSED_BYTES_MAX,
            "decompression buffer grew to {} bytes, past the cap",
            scratch.capacity()
        );
        let records: &[u8] = if header.compression() == Compression::None {
            let records = batch.as_bytes().get(HEADER_BYTES..).unwrap_or_default();
            assert_eq!(
                validated.is_ok(),
                batch::validate_records(records, &header).is_ok(),
                "compression::validate_records and batch::validate_records disagree"
            );
            records
        } else {
            &scratch
        };
        if validated.is_ok() {
            let decoded = batch::records_in(records, header.record_count)
                .try_fold(0u32, |count, record| record.map(|_| count + 1));
            assert_eq!(decoded, Ok(header.record_count), "validated records do not decode");
        }
    }
}

/// Where a batch's CRC is stored, and where the bytes it covers start (`cairn_types::batch`).
const CRC_AT: usize = 17;
const CRC_COVERED_FROM: usize = 21;

/// `data` with the CRC of every batch it frames (by each batch's length field, while they fit)
/// recomputed.
#[must_use]
pub fn with_crcs_fixed(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut at = 0;
    while let Some(rest) = out.get_mut(at..) {
        let Some(&[a, b, c, d]) = rest.get(LOG_OVERHEAD_BYTES - 4..LOG_OVERHEAD_BYTES) else {
            break;
        };
        let Ok(length) = usize::try_from(i32::from_be_bytes([a, b, c, d])) else { break };
        let total = LOG_OVERHEAD_BYTES + length;
        let Some(batch) = rest.get_mut(..total).filter(|batch| batch.len() >= HEADER_BYTES) else {
            break;
        };
        let crc = crc32c(&batch[CRC_COVERED_FROM..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        at += total;
    }
    out
}

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), one table entry per byte value.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = index as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            bit += 1;
        }
        table[index] = crc;
        index += 1;
    }
    table
};

/// CRC32C of `bytes`, as RecordBatch v2 uses it (cairn-kafka does not depend on a CRC crate).
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc = CRC32C_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}
