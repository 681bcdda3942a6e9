//! The body of the cargo-fuzz target `record_batch` (in `fuzz/`) and of the test that replays
//! its corpus on stable (`tests/fuzz_corpus.rs`), so that both run one piece of code. The
//! frame and request targets, which drive the server's decode path, live in
//! `cairn_kafka::fuzzing`.
//!
//! - [`fuzz_record_batch`]: malformed input is never a failure; it panics only when a promise of
//!   the code under test is broken (decompression grew its buffer past the cap, validation and
//!   decoding of records disagree, recompression changed the records), which is what the fuzzer
//!   reports.
//! - [`with_crcs_fixed`]: recomputes batch CRCs, so that the target's mutations get past the
//!   checksum.
//!
//! Nothing here is used by the server or the client; it is public so that the fuzz crate
//! (outside the workspace) and integration tests can reach it.

use cairn_types::batch::{self, Batches, Compression, Frames, HEADER_BYTES, RecordBatch};
use cairn_types::limits::BATCH_BYTES_MAX;

use crate::compression;

/// Decompression cap of [`fuzz_record_batch`]: small, so a bomb costs the fuzzer little, and
/// large enough that ordinary compressed batches decode.
pub const FUZZ_DECOMPRESSED_BYTES_MAX: usize = 1024 * 1024;

/// Target `record_batch`: `data` is a record set (concatenated batches, as in a produce
/// request). Runs [`RecordBatch::validate`] on the whole, then per batch what the broker runs on
/// a produced batch: [`batch::validate_records`] for uncompressed batches,
/// [`compression::validate_records`] (capped at [`FUZZ_DECOMPRESSED_BYTES_MAX`]) for all, and
/// decodes the records to compare; a batch whose records are valid is also recompressed
/// ([`compression::recompress`]) with another codec, which must keep its records.
///
/// All of it twice: on `data` as it is, and with the CRC of every batch it frames recomputed, so
/// that mutations reach the records and the codecs instead of stopping at the checksum.
///
/// # Panics
/// If decompression grows its buffer past the cap, record validation accepts records that
/// decoding rejects, or recompression fails on valid records or changes them.
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
            check_recompression(&batch, records);
        }
    }
}

/// Recompresses a batch whose records (`records`, uncompressed) are valid with another codec:
/// it must succeed, the result must be a valid batch with the same header fields apart from the
/// codec, and its records must decompress to `records` again.
fn check_recompression(batch: &RecordBatch<'_>, records: &[u8]) {
    let header = batch.header();
    let codec = match header.compression() {
        Compression::None => Compression::Zstd,
        _ => Compression::None,
    };
    let mut scratch = Vec::new();
    let mut out = Vec::new();
    let recompressed = compression::recompress(
        batch,
        codec,
        &mut scratch,
        FUZZ_DECOMPRESSED_BYTES_MAX,
        BATCH_BYTES_MAX as usize,
        &mut out,
    );
    match recompressed {
        Ok(()) => {}
        // Incompressible records near the batch size limit may not fit once compressed.
        Err(compression::RecompressError::Encode(compression::EncodeError::TooLarge {
            ..
        })) => return,
        Err(error) => panic!("valid records did not recompress: {error}"),
    }
    let again = RecordBatch::validate(&out).expect("a recompressed batch is valid");
    let mut new_header = *again.header();
    assert_eq!(new_header.compression(), codec, "codec bits not rewritten");
    new_header.attributes = header.attributes;
    new_header.batch_length = header.batch_length;
    new_header.crc = header.crc;
    assert_eq!(new_header, *header, "recompression changed header fields");
    let mut decompressed = Vec::new();
    compression::validate_records(&again, &mut decompressed, FUZZ_DECOMPRESSED_BYTES_MAX)
        .expect("recompressed records are valid");
    let stored = match codec {
        Compression::None => out.get(HEADER_BYTES..).unwrap_or_default(),
        _ => &decompressed,
    };
    assert_eq!(stored, records, "recompression changed the records");
}

/// `data` with the CRC of every batch it frames ([`Frames`]: up to the first batch that is
/// malformed or cut short) recomputed. The batches after that one are never validated anyway:
/// [`Batches`] stops at the first error, which for that batch comes before its CRC is checked.
#[must_use]
pub fn with_crcs_fixed(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    for (at, header) in Frames::new(data, BATCH_BYTES_MAX) {
        batch::set_crc(&mut out[at..at + header.total_bytes() as usize]);
    }
    out
}
