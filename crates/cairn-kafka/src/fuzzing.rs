//! Hostile-input entry points: the bodies of the cargo-fuzz targets in `fuzz/` and of the tests
//! that replay their corpora on stable (`tests/fuzz_corpus.rs`), so that both run one piece of
//! code.
//!
//! The framing and decode path they drive is the server's own ([`crate::codec`]).
//! - [`fuzz_frame`], [`fuzz_request`], [`fuzz_record_batch`]: the three targets. Malformed input
//!   is never a failure; each panics only when a promise of the code under test is broken (the
//!   shape check accepted what `kafka-protocol` cannot decode, decompression grew its buffer past
//!   the cap, validation and decoding of records disagree), which is what the fuzzer reports.
//! - [`with_crcs_fixed`]: recomputes batch CRCs, so that the record-batch target's mutations get
//!   past the checksum.
//!
//! Nothing here is used by the server; it is public so that the fuzz crate (outside the
//! workspace) and integration tests can reach it.

use bytes::{Buf, Bytes};
use cairn_types::batch::{
    self, Batches, Compression, HEADER_BYTES, LOG_OVERHEAD_BYTES, RecordBatch,
};
use cairn_types::limits::BATCH_BYTES_MAX;
use kafka_protocol::messages::{ApiKey, RequestKind};

use crate::codec::{FrameError, decode_frame, frame_length};
use crate::compression;
use crate::shape::{self, ShapeError};

/// Decompression cap of [`fuzz_record_batch`]: small, so a bomb costs the fuzzer little, and
/// large enough that ordinary compressed batches decode.
pub const FUZZ_DECOMPRESSED_BYTES_MAX: usize = 1024 * 1024;

/// Target `frame`: `data` is what a client sent on one connection, read as the server reads it
/// (length prefix, frame, decode) until the server would close the connection or the bytes run
/// out.
///
/// # Panics
/// If the shape check accepts a frame that `kafka-protocol` then fails to decode, or decodes
/// with a different header length, or stops elsewhere than where the checked body ends.
pub fn fuzz_frame(data: &[u8]) {
    let mut rest = data;
    while let Some((prefix, after)) = rest.split_first_chunk::<4>() {
        let Ok(length) = frame_length(*prefix) else { return };
        // Fewer bytes than announced: the server would wait for more, then see EOF.
        let Some((frame, after)) = after.split_at_checked(length) else { return };
        match decode_frame(Bytes::copy_from_slice(frame)) {
            Ok(decoded) => {
                if decoded.body.is_some() {
                    let info = shape::check_header(frame).expect("decode_frame checked it");
                    assert_eq!(decoded.header_bytes, info.header_len, "header length disagrees");
                    assert_eq!(
                        decoded.bytes_left, decoded.trailing_bytes,
                        "kafka-protocol stopped elsewhere than the end of the checked body"
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
/// request body. The body goes through [`shape::check_request`], and, if accepted (bytes after
/// its last field included, as the server accepts them), through `kafka-protocol`'s decoder:
/// every API and version cairn accepts ([`shape::APIS`]), not only those the server serves
/// today.
///
/// # Panics
/// If the shape check accepts a body that `kafka-protocol` fails to decode, or that it does not
/// consume exactly up to the trailing bytes the check found (the promise of [`shape`]).
pub fn fuzz_request(data: &[u8]) {
    let Some(([key_hi, key_lo, version_hi, version_lo], body)) = data.split_first_chunk::<4>()
    else {
        return;
    };
    let api_key = i16::from_be_bytes([*key_hi, *key_lo]);
    let api_version = i16::from_be_bytes([*version_hi, *version_lo]);
    let trailing_bytes = match shape::check_request(api_key, api_version, body) {
        Ok(()) => 0,
        Err(ShapeError::TrailingBytes { count, .. }) => count,
        Err(_) => return,
    };
    let key = ApiKey::try_from(api_key)
        .unwrap_or_else(|()| panic!("shape accepted api key {api_key}, unknown to the crate"));
    let mut buffer = Bytes::copy_from_slice(body);
    if let Err(error) = RequestKind::decode(key, &mut buffer, api_version) {
        panic!("shape accepted {key:?} v{api_version} but kafka-protocol failed: {error}");
    }
    assert_eq!(
        buffer.remaining(),
        trailing_bytes,
        "{key:?} v{api_version}: kafka-protocol stopped elsewhere than the checked body's end"
    );
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
        batch::set_crc(batch);
        at += total;
    }
    out
}
