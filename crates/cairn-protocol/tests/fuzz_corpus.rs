//! The `record_batch` fuzz corpus replayed on stable, and decompression bombs that must allocate
//! nothing large.
//!
//! - Replay: every file of `fuzz/corpus/record_batch` goes through the same function as its
//!   cargo-fuzz target (`cairn_protocol::fuzzing`), which panics on a broken promise; each run's
//!   largest single allocation must also stay within the budget the fuzz target enforces
//!   (`fuzz/src/lib.rs`).
//! - Allocation: a counting global allocator records the largest single allocation of the
//!   running thread. 1 GiB decompression bombs under a 1 MiB cap must each be refused without
//!   one allocation over 2 MiB, and so must recompressing them.

use cairn_protocol::compression::{
    DecompressError, RecompressError, RecordsError, compress, recompress, validate_records,
};
use cairn_protocol::fuzzing::{FUZZ_DECOMPRESSED_BYTES_MAX, fuzz_record_batch, with_crcs_fixed};
use cairn_testkit::alloc::{Counting, largest_allocation};
use cairn_testkit::corpus::replay;
use cairn_testkit::crc32c;
use cairn_types::batch::{BatchBuilder, Compression, HEADER_BYTES, RecordBatch};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: usize = 1024 * MIB;

/// The most one allocation may take while a hostile input is refused.
const HOSTILE_ALLOCATION_BYTES_MAX: usize = 2 * MIB;

/// Counts the largest allocation of each test's thread (`cairn_testkit::alloc`).
#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Corpus replay.
// ---------------------------------------------------------------------------------------------

/// What one allocation may take on an input of `input_bytes` (the fuzz target's budget, in
/// `fuzz/src/lib.rs`).
fn record_batch_budget(input_bytes: usize) -> usize {
    10 * MIB + input_bytes
}

#[test]
fn record_batch_corpus_replays() {
    assert!(replay("record_batch", fuzz_record_batch, record_batch_budget) > 10);
}

// ---------------------------------------------------------------------------------------------
// Decompression bombs.
// ---------------------------------------------------------------------------------------------

/// A one-record batch whose records part is `payload`, compressed with `codec`.
fn batch_with_payload(codec: Compression, payload: &[u8]) -> Vec<u8> {
    let template = BatchBuilder::new(0).record(None, Some(b"v"), &[]).build();
    let mut out = template[..HEADER_BYTES].to_vec();
    out.extend_from_slice(payload);
    let batch_length = i32::try_from(out.len() - 12).expect("bombs are small");
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[21..23].copy_from_slice(&codec.attribute_bits().to_be_bytes());
    let crc = crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

fn compressed(codec: Compression, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    compress(codec, input, &mut out).expect("compresses");
    out
}

/// A zstd frame of 1 GiB of zeros: a window of `2^(10 + window_exponent)` bytes, then 8192 RLE
/// blocks of 128 KiB, 4 bytes each.
fn zstd_bomb(window_exponent: u8) -> Vec<u8> {
    let block_bytes = 128 * KIB;
    let blocks = GIB / block_bytes;
    let mut frame = 0xFD2F_B528u32.to_le_bytes().to_vec();
    frame.extend([0x00, window_exponent << 3]);
    for i in 0..blocks {
        let header = u32::from(i + 1 == blocks) | (1 << 1) | ((block_bytes as u32) << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(0);
    }
    frame
}

#[test]
fn gibibyte_bombs_under_a_mebibyte_cap_allocate_nothing_large() {
    let cap = MIB;
    let mut snappy_claim = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
    snappy_claim.extend([0; 16]);
    let bombs = [
        ("zstd, 128 KiB window", Compression::Zstd, zstd_bomb(7)),
        ("zstd, 1 MiB window", Compression::Zstd, zstd_bomb(10)),
        // Concatenated gzip members / lz4 frames: 1 GiB of zeros in about 1 and 4 MiB.
        ("gzip", Compression::Gzip, compressed(Compression::Gzip, &vec![0; MIB]).repeat(1024)),
        ("lz4", Compression::Lz4, compressed(Compression::Lz4, &vec![0; 4 * MIB]).repeat(256)),
        ("snappy claiming 4 GiB", Compression::Snappy, snappy_claim),
    ];
    for (name, codec, payload) in bombs {
        let bytes = batch_with_payload(codec, &payload);
        let batch = RecordBatch::validate(&bytes).expect("a well-framed batch");
        let mut scratch = Vec::new();
        let (result, largest) = largest_allocation(|| validate_records(&batch, &mut scratch, cap));
        assert_eq!(
            result,
            Err(RecordsError::Decompress(DecompressError::TooLarge { bytes_max: cap })),
            "{name}"
        );
        assert!(
            largest <= HOSTILE_ALLOCATION_BYTES_MAX,
            "{name}: one allocation took {largest} bytes under a {cap}-byte cap"
        );
        // Recompressing (a topic of another codec) decompresses under the same cap first.
        for target in [Compression::None, Compression::Zstd] {
            let mut out = Vec::new();
            let (result, largest) = largest_allocation(|| {
                recompress(&batch, target, &mut scratch, cap, usize::MAX, &mut out)
            });
            assert_eq!(
                result,
                Err(RecompressError::Records(RecordsError::Decompress(
                    DecompressError::TooLarge { bytes_max: cap }
                ))),
                "{name} to {target:?}"
            );
            assert!(largest <= HOSTILE_ALLOCATION_BYTES_MAX, "{name} to {target:?}: {largest}");
            assert!(out.is_empty(), "{name} to {target:?}: nothing is written");
        }
    }
}

/// The exception, by design (`compression.rs`, `ZSTD_WINDOW_BYTES_FLOOR`): a zstd window of up
/// to 8 MiB is accepted whatever the cap, so that frames from zstd levels 1 to 19 decode under a
/// small cap, and ruzstd holds the window in one buffer. A 33 KiB frame declaring an 8 MiB window
/// therefore costs one allocation of the window plus a block, not the cap; larger windows are
/// refused from the frame header.
#[test]
fn a_zstd_window_up_to_eight_mebibytes_is_allocated_whatever_the_cap() {
    let cap = MIB;
    for (window_exponent, bytes_max) in [(13, 8 * MIB + 512 * KIB), (14, 0)] {
        let bytes = batch_with_payload(Compression::Zstd, &zstd_bomb(window_exponent));
        let batch = RecordBatch::validate(&bytes).expect("a well-framed batch");
        let mut scratch = Vec::new();
        let (result, largest) = largest_allocation(|| validate_records(&batch, &mut scratch, cap));
        assert_eq!(
            result,
            Err(RecordsError::Decompress(DecompressError::TooLarge { bytes_max: cap })),
            "window 2^{}",
            10 + window_exponent
        );
        assert!(largest <= bytes_max.max(HOSTILE_ALLOCATION_BYTES_MAX), "{largest}");
    }
}

#[test]
fn the_fuzz_cap_is_one_mebibyte() {
    assert_eq!(FUZZ_DECOMPRESSED_BYTES_MAX, MIB);
}

#[test]
fn resealing_makes_crcs_valid_and_leaves_valid_batches_alone() {
    let batch = BatchBuilder::new(0).record(None, Some(b"v"), &[]).build();
    let two = [batch.clone(), batch.clone()].concat();
    assert_eq!(with_crcs_fixed(&two), two);
    let mut edited = two.clone();
    edited[two.len() - 1] ^= 0xff;
    assert!(RecordBatch::validate(&edited[batch.len()..]).is_err());
    let resealed = with_crcs_fixed(&edited);
    assert!(RecordBatch::validate(&resealed[batch.len()..]).is_ok());
    // Our CRC agrees with cairn-types' on a batch built by the builder: the first batch above
    // was left alone, so the table-driven CRC matches.
    assert_eq!(crc32c(&batch[21..]), u32::from_be_bytes(batch[17..21].try_into().expect("4")));
}
