//! The `record_batch` fuzz corpus (`fuzz/corpus/record_batch`) replayed on stable through
//! cairn-types alone: whole-buffer validation, the batch iterator, the lazy records iterator and
//! the allocation-free record check, which must agree with decoding; each file as it is and with
//! its batches' CRCs recomputed, as the fuzz target runs it.
//!
//! The fuzz target itself (`cairn_protocol::fuzzing::fuzz_record_batch`) also decompresses, which
//! needs cairn-protocol; cairn-protocol's `tests/fuzz_corpus.rs` replays the same files through
//! it.
//! This test keeps the cairn-types part runnable where cairn-types is tested on its own.

use std::fs;
use std::path::Path;

use cairn_types::batch::{self, Batches, Compression, Frames, HEADER_BYTES, RecordBatch};
use cairn_types::limits::BATCH_BYTES_MAX;

/// `data` with the CRC of every batch it frames recomputed (what
/// `cairn_protocol::fuzzing::with_crcs_fixed` does).
fn with_crcs_fixed(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    for (at, header) in Frames::new(data, BATCH_BYTES_MAX) {
        batch::set_crc(&mut out[at..at + header.total_bytes() as usize]);
    }
    out
}

/// What the target runs on a record set, minus decompression.
///
/// # Panics
/// If record validation accepts records that decoding rejects, or the other way round.
fn check_record_set(data: &[u8]) {
    let _ = RecordBatch::validate(data);
    for batch in Batches::new(data, BATCH_BYTES_MAX) {
        let Ok(batch) = batch else { return };
        let header = *batch.header();
        let decoded = batch.records().try_fold(0u32, |count, record| record.map(|_| count + 1));
        if header.compression() != Compression::None {
            assert!(
                decoded.is_err(),
                "records of a compressed batch decoded without decompressing"
            );
            continue;
        }
        let validated = batch::validate_records(&batch.as_bytes()[HEADER_BYTES..], &header);
        if validated.is_ok() {
            assert_eq!(decoded, Ok(header.record_count), "validated records do not decode");
        }
        if let Err(error) = decoded {
            assert!(validated.is_err(), "records validate but decoding fails: {error}");
        }
    }
}

#[test]
fn record_batch_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/record_batch");
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut replayed = 0;
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        check_record_set(&data);
        check_record_set(&with_crcs_fixed(&data));
        replayed += 1;
    }
    assert!(replayed > 10, "only {replayed} files in {}", dir.display());
}

/// The seeds the corpus must keep, whatever the fuzzer's minimisation drops.
#[test]
fn record_batch_corpus_keeps_its_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/record_batch");
    for seed in [
        "seed-none-5-records",
        "seed-gzip-5-records",
        "seed-snappy-5-records",
        "seed-snappy-java-5-records",
        "seed-lz4-5-records",
        "seed-zstd-5-records",
        "seed-batch-length-0x7fffffff",
        "seed-none-record-count-0x7fffffff",
        "seed-none-header-count-0x7fffffff",
        "seed-zstd-bomb-1gib",
    ] {
        let data = fs::read(dir.join(seed)).unwrap_or_else(|e| panic!("{seed}: {e}"));
        check_record_set(&data);
    }
    let valid = fs::read(dir.join("seed-none-5-records")).expect("read above");
    let batch = RecordBatch::validate(&valid).expect("a valid seed");
    assert_eq!(batch.records().filter(Result::is_ok).count(), 5);
}
