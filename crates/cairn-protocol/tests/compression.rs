//! Compressed record batches: roundtrips for every codec, compressed batches through
//! `validate_records`, recompression from every codec to every codec, decompression bombs (refused at the cap, with the output buffer never
//! larger than it), snappy-java framing from hand-built vectors, and garbage that must give an
//! error, never a panic.

use cairn_protocol::compression::{
    CompressError, DecompressError, EncodeError, RecompressError, RecordsError, compress,
    decompress, recompress, stored_codec, validate_records,
};
use cairn_testkit::crc32c;
use cairn_types::batch::{self, BatchBuilder, Compression, HEADER_BYTES, RecordBatch};
use cairn_types::limits::DECOMPRESSED_BATCH_BYTES_MAX;
use cairn_types::{BatchError, ProducerId};
use proptest::prelude::*;

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

const COMPRESSED: [Compression; 4] =
    [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

const MIB: usize = 1024 * 1024;
const GIB: usize = 1024 * MIB;

// Batch header offsets (see cairn_types::batch).
const BATCH_LENGTH_AT: usize = 8;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const RECORD_COUNT_AT: usize = 57;

/// Recomputes the CRC of a batch whose covered bytes were edited.
fn reseal(batch: &mut [u8]) {
    let crc = crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The header of `uncompressed` (a `BatchBuilder` batch) with `payload` as its records part and
/// `codec` in its attributes; length and CRC fixed up.
fn with_payload(uncompressed: &[u8], codec: Compression, payload: &[u8]) -> Vec<u8> {
    let mut out = uncompressed[..HEADER_BYTES].to_vec();
    out.extend_from_slice(payload);
    let batch_length = i32::try_from(out.len() - 12).expect("test batches are small");
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = i16::from_be_bytes([out[ATTRIBUTES_AT], out[ATTRIBUTES_AT + 1]]);
    let attributes = (attributes & !0x07) | codec.attribute_bits();
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    reseal(&mut out);
    out
}

/// `uncompressed` with its records compressed with `codec`.
fn recompressed(uncompressed: &[u8], codec: Compression) -> Vec<u8> {
    let mut payload = Vec::new();
    compress(codec, &uncompressed[HEADER_BYTES..], &mut payload).expect("test records compress");
    with_payload(uncompressed, codec, &payload)
}

/// `batch` with its header claiming `record_count` records in `last_offset_delta + 1` offsets.
fn with_counts(batch: &[u8], record_count: i32, last_offset_delta: i32) -> Vec<u8> {
    let mut out = batch.to_vec();
    out[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&record_count.to_be_bytes());
    out[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
        .copy_from_slice(&last_offset_delta.to_be_bytes());
    reseal(&mut out);
    out
}

/// An uncompressed batch of `records` records with keys, values (compressible, as real ones
/// are) and a header.
fn sample_batch(records: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for i in 0..records {
        let key = format!("key-{i}");
        let value = format!("{{\"user\":{i},\"event\":\"click\",\"page\":\"/items/{}\"}}", i % 7);
        builder = builder.record_at(
            1_700_000_000_000 + i as i64,
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            &[(b"trace", Some(b"abc"))],
        );
    }
    builder.build()
}

/// Runs the broker's record check on `bytes`, which must be a well-framed batch.
fn check_records(bytes: &[u8], bytes_max: usize) -> Result<(), RecordsError> {
    let batch = RecordBatch::validate(bytes).expect("test batches are well framed");
    validate_records(&batch, &mut Vec::new(), bytes_max)
}

fn compressed(codec: Compression, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    compress(codec, input, &mut out).expect("test inputs compress");
    out
}

/// Decompresses into a fresh buffer; returns it, checked to respect the cap.
fn decompressed(
    codec: Compression,
    input: &[u8],
    bytes_max: usize,
) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    let result = decompress(codec, input, &mut out, bytes_max);
    assert!(out.capacity() <= bytes_max, "{codec:?}: capacity {} > {bytes_max}", out.capacity());
    result.map(|()| out)
}

/// Bytes that compress somewhat, like real records.
fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i / 4096) as u8).collect()
}

#[test]
fn crc32c_reference_check_value() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn roundtrip_every_codec() {
    for codec in CODECS {
        for len in [0, 1, 100, 70_000, 3 * MIB] {
            let input = patterned(len);
            let packed = compressed(codec, &input);
            assert_eq!(decompressed(codec, &packed, DECOMPRESSED_BATCH_BYTES_MAX), Ok(input));
        }
    }
}

#[test]
fn decompress_appends_and_restores_on_error() {
    for codec in CODECS {
        let packed = compressed(codec, b"records");
        let mut out = b"prefix:".to_vec();
        decompress(codec, &packed, &mut out, 7).unwrap();
        assert_eq!(out, b"prefix:records");
        let error = decompress(codec, &packed, &mut out, 6).unwrap_err();
        assert_eq!(error, DecompressError::TooLarge { bytes_max: 6 });
        assert_eq!(out, b"prefix:records", "{codec:?}");
    }
}

/// The cap is exact: output of `bytes_max` bytes passes, one byte more does not.
#[test]
fn cap_boundaries() {
    let check = |codec: Compression, len: usize, bytes_max: usize| {
        let packed = compressed(codec, &patterned(len));
        decompressed(codec, &packed, bytes_max).map(|out| out.len())
    };
    for codec in CODECS {
        for len in [0, 1, 1000, 300_000] {
            assert_eq!(check(codec, len, len), Ok(len), "{codec:?} {len}");
            assert_eq!(check(codec, len, len + 1), Ok(len), "{codec:?} {len}");
            if len > 0 {
                assert_eq!(
                    check(codec, len, len - 1),
                    Err(DecompressError::TooLarge { bytes_max: len - 1 }),
                    "{codec:?} {len}"
                );
            }
        }
    }
}

#[test]
fn compress_refuses_what_no_broker_would_decompress() {
    let input = vec![0u8; DECOMPRESSED_BATCH_BYTES_MAX + 1];
    let mut out = Vec::new();
    assert_eq!(
        compress(Compression::Zstd, &input, &mut out),
        Err(CompressError::TooLarge {
            bytes: DECOMPRESSED_BATCH_BYTES_MAX + 1,
            bytes_max: DECOMPRESSED_BATCH_BYTES_MAX,
        })
    );
    assert!(out.is_empty());
}

#[test]
fn compressed_batches_validate() {
    let uncompressed = sample_batch(200);
    let expected: Vec<_> =
        RecordBatch::validate(&uncompressed).unwrap().records().collect::<Result<_, _>>().unwrap();
    let mut scratch = Vec::new();
    for codec in CODECS {
        let bytes = recompressed(&uncompressed, codec);
        let batch = RecordBatch::validate(&bytes).unwrap();
        assert_eq!(batch.header().compression(), codec);
        if codec != Compression::None {
            assert!(bytes.len() < uncompressed.len() / 2, "{codec:?} did not compress");
        }
        validate_records(&batch, &mut scratch, DECOMPRESSED_BATCH_BYTES_MAX).unwrap();
        if codec != Compression::None {
            // The scratch now holds the records part, exactly as the builder wrote it.
            assert_eq!(scratch, &uncompressed[HEADER_BYTES..]);
            let decoded: Vec<_> = batch::records_in(&scratch, batch.record_count())
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(decoded, expected);
        }
    }
}

#[test]
fn validate_records_reuses_scratch() {
    let batches: Vec<_> = COMPRESSED.iter().map(|&c| recompressed(&sample_batch(50), c)).collect();
    let mut scratch = Vec::new();
    for bytes in &batches {
        validate_records(&RecordBatch::validate(bytes).unwrap(), &mut scratch, MIB).unwrap();
    }
    let capacity = scratch.capacity();
    for _ in 0..10 {
        for bytes in &batches {
            validate_records(&RecordBatch::validate(bytes).unwrap(), &mut scratch, MIB).unwrap();
        }
    }
    assert_eq!(scratch.capacity(), capacity, "steady state must not grow the scratch");
}

#[test]
fn wrong_record_count_is_rejected() {
    let uncompressed = sample_batch(10);
    for codec in CODECS {
        let bytes = recompressed(&uncompressed, codec);
        assert_eq!(check_records(&bytes, MIB), Ok(()));
        // One record more than there is: the eleventh is missing.
        assert!(matches!(
            check_records(&with_counts(&bytes, 11, 10), MIB),
            Err(RecordsError::Batch(BatchError::BadRecord { index: 10, .. }))
        ));
        // One record less: the tenth is left over.
        assert_eq!(
            check_records(&with_counts(&bytes, 9, 9), MIB),
            Err(RecordsError::Batch(BatchError::BadRecord {
                index: 9,
                reason: "bytes after the last record",
            }))
        );
    }
}

#[test]
fn records_over_the_cap_are_rejected() {
    let uncompressed = sample_batch(100);
    let records_bytes = uncompressed.len() - HEADER_BYTES;
    for codec in COMPRESSED {
        let bytes = recompressed(&uncompressed, codec);
        assert_eq!(check_records(&bytes, records_bytes), Ok(()));
        assert_eq!(
            check_records(&bytes, records_bytes - 1),
            Err(RecordsError::Decompress(DecompressError::TooLarge {
                bytes_max: records_bytes - 1
            }))
        );
    }
}

// Recompression: a produced batch re-encoded with its topic's codec.

/// An uncompressed batch from an idempotent producer: every header field set.
fn producer_batch(records: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(1_700_000_000_000).producer(ProducerId(7_000), 3, 41);
    for i in 0..records {
        let key = format!("key-{i}");
        let value = format!("{{\"user\":{i},\"page\":\"/items/{}\"}}", i % 7);
        let header_value = (i % 3 != 0).then_some(b"abc".as_slice());
        builder = builder.record_at(
            1_700_000_000_000 + (i as i64 * 37) % 1000,
            (i % 5 != 0).then_some(key.as_bytes()),
            (i % 11 != 0).then_some(value.as_bytes()),
            &[(b"trace", header_value), (b"", Some(b""))],
        );
    }
    builder.build()
}

/// The records of a valid batch, decompressed and decoded, with the header fields that
/// recompression must keep (everything but the codec bits, the length and the CRC).
fn contents(bytes: &[u8]) -> (batch::BatchHeader, Vec<u8>) {
    let batch = RecordBatch::validate(bytes).expect("a valid batch");
    let mut records = Vec::new();
    decompress(batch.header().compression(), &bytes[HEADER_BYTES..], &mut records, MIB)
        .expect("records decompress");
    let mut header = *batch.header();
    header.attributes &= !0x07;
    header.batch_length = 0;
    header.crc = 0;
    (header, records)
}

#[test]
fn recompression_keeps_every_record_and_header_field() {
    let plain = producer_batch(300);
    let (header, records) = contents(&plain);
    let decoded: Vec<_> = batch::records_in(&records, header.record_count)
        .collect::<Result<_, _>>()
        .expect("builder records decode");
    let mut scratch = Vec::new();
    for from in CODECS {
        let source = recompressed(&plain, from);
        let batch = RecordBatch::validate(&source).expect("a valid batch");
        for to in CODECS {
            let mut out = b"before".to_vec();
            recompress(&batch, to, &mut scratch, MIB, usize::MAX, &mut out)
                .unwrap_or_else(|e| panic!("{from:?} to {to:?}: {e}"));
            assert_eq!(&out[..6], b"before", "appended, not overwritten");
            let stored = &out[6..];
            assert_eq!(RecordBatch::validate(stored).expect("valid").header().compression(), to);
            let (stored_header, stored_records) = contents(stored);
            assert_eq!(stored_header, header, "{from:?} to {to:?}");
            assert_eq!(stored_records, records, "{from:?} to {to:?}");
            let stored_decoded: Vec<_> = batch::records_in(&stored_records, header.record_count)
                .collect::<Result<_, _>>()
                .expect("records decode");
            assert_eq!(stored_decoded, decoded);
        }
    }
}

#[test]
fn recompressing_to_uncompressed_gives_back_the_uncompressed_batch() {
    let plain = producer_batch(100);
    for from in COMPRESSED {
        let source = recompressed(&plain, from);
        let batch = RecordBatch::validate(&source).expect("a valid batch");
        let mut out = Vec::new();
        recompress(&batch, Compression::None, &mut Vec::new(), MIB, usize::MAX, &mut out)
            .expect("recompresses");
        assert_eq!(out, plain, "{from:?}");
    }
}

#[test]
fn a_recompressed_batch_over_its_limit_is_refused_and_writes_nothing() {
    let plain = producer_batch(200);
    let source = recompressed(&plain, Compression::Zstd);
    let batch = RecordBatch::validate(&source).expect("a valid batch");
    let mut out = b"kept".to_vec();
    let limit = plain.len() - 1;
    assert_eq!(
        recompress(&batch, Compression::None, &mut Vec::new(), MIB, limit, &mut out),
        Err(RecompressError::Encode(EncodeError::TooLarge {
            bytes: plain.len(),
            bytes_max: limit
        }))
    );
    assert_eq!(out, b"kept");
    // Invalid records are refused as validate_records refuses them, before encoding.
    let bad = with_counts(&source, 201, 200);
    let bad = RecordBatch::validate(&bad).expect("well framed");
    assert!(matches!(
        recompress(&bad, Compression::Gzip, &mut Vec::new(), MIB, usize::MAX, &mut out),
        Err(RecompressError::Records(RecordsError::Batch(_)))
    ));
    assert_eq!(out, b"kept");
}

#[test]
fn the_topic_codec_applies_except_to_control_batches() {
    let plain = BatchBuilder::new(0).record(None, Some(b"v"), &[]).build();
    let control = BatchBuilder::new(0).control().record(None, Some(b"v"), &[]).build();
    for from in CODECS {
        let data = RecordBatch::validate(&recompressed(&plain, from)).map(|b| *b.header());
        let data = data.expect("valid");
        let marker = RecordBatch::validate(&recompressed(&control, from)).map(|b| *b.header());
        let marker = marker.expect("valid");
        // `compression.type=producer`: every batch keeps its codec.
        assert_eq!(stored_codec(&data, None), from);
        assert_eq!(stored_codec(&marker, None), from);
        for topic in CODECS {
            assert_eq!(stored_codec(&data, Some(topic)), topic);
            assert_eq!(stored_codec(&marker, Some(topic)), from, "control batches keep theirs");
        }
    }
}

// Decompression bombs: 1 GiB of zeros in a few MiB at most, inside a batch the framing accepts.

fn gzip_bomb() -> Vec<u8> {
    // Gzip members concatenate: one member of 1 MiB of zeros, 1024 times.
    compressed(Compression::Gzip, &vec![0; MIB]).repeat(GIB / MIB)
}

fn lz4_bomb() -> Vec<u8> {
    // LZ4 frames concatenate too.
    compressed(Compression::Lz4, &vec![0; 4 * MIB]).repeat(GIB / (4 * MIB))
}

/// Hand-built zstd frame header: no content size, no checksum, window `2^(10 + exponent)`.
fn zstd_frame_header(window_exponent: u8) -> Vec<u8> {
    let mut frame = 0xFD2F_B528u32.to_le_bytes().to_vec();
    frame.push(0x00); // frame header descriptor: all flags clear
    frame.push(window_exponent << 3); // window descriptor, mantissa 0
    frame
}

/// Appends an RLE block of `size` copies of `byte`.
fn zstd_rle_block(frame: &mut Vec<u8>, size: u32, byte: u8, last: bool) {
    let header = u32::from(last) | (1 << 1) | (size << 3);
    frame.extend_from_slice(&header.to_le_bytes()[..3]);
    frame.push(byte);
}

fn zstd_bomb() -> Vec<u8> {
    // A 128 KiB window and RLE blocks of 128 KiB, 4 bytes each.
    let block_bytes = 128 * 1024;
    let blocks = GIB / block_bytes;
    let mut frame = zstd_frame_header(7);
    for i in 0..blocks {
        zstd_rle_block(&mut frame, block_bytes as u32, 0, i + 1 == blocks);
    }
    frame
}

fn snappy_bomb() -> Vec<u8> {
    // snappy-java chunks of 1 MiB of zeros each, 100 MiB in all.
    let block = compressed(Compression::Snappy, &vec![0; MIB]);
    let mut stream = xerial_header();
    for _ in 0..100 {
        stream.extend_from_slice(&(block.len() as i32).to_be_bytes());
        stream.extend_from_slice(&block);
    }
    stream
}

#[test]
fn bombs_are_refused_at_the_cap() {
    let template = sample_batch(1);
    let bombs = [
        (Compression::Gzip, gzip_bomb()),
        (Compression::Lz4, lz4_bomb()),
        (Compression::Zstd, zstd_bomb()),
        (Compression::Snappy, snappy_bomb()),
    ];
    for (codec, bomb) in bombs {
        let bytes = with_payload(&template, codec, &bomb);
        let batch = RecordBatch::validate(&bytes).unwrap();
        let mut scratch = Vec::new();
        let cap = DECOMPRESSED_BATCH_BYTES_MAX;
        assert_eq!(
            validate_records(&batch, &mut scratch, cap),
            Err(RecordsError::Decompress(DecompressError::TooLarge { bytes_max: cap })),
            "{codec:?}"
        );
        assert!(scratch.capacity() <= cap, "{codec:?}: scratch grew to {}", scratch.capacity());
    }
}

#[test]
fn zstd_bomb_decodes_under_a_large_enough_cap() {
    // The hand-built frame is valid zstd: the refusal above is the cap, not corruption.
    let mut frame = zstd_frame_header(7);
    zstd_rle_block(&mut frame, 1000, 7, false);
    zstd_rle_block(&mut frame, 24, 9, true);
    let out = decompressed(Compression::Zstd, &frame, 1024).unwrap();
    assert_eq!(out, [vec![7; 1000], vec![9; 24]].concat());
}

#[test]
fn snappy_length_claims_are_refused_before_allocating() {
    // A raw block whose header claims 1 GiB: refused from the header alone.
    let mut block = Vec::new();
    let mut claim = GIB as u64;
    while claim >= 0x80 {
        block.push((claim as u8) | 0x80);
        claim >>= 7;
    }
    block.push(claim as u8);
    block.extend_from_slice(&[0; 16]);
    let mut out = Vec::new();
    let result = decompress(Compression::Snappy, &block, &mut out, DECOMPRESSED_BATCH_BYTES_MAX);
    assert_eq!(result, Err(DecompressError::TooLarge { bytes_max: DECOMPRESSED_BATCH_BYTES_MAX }));
    assert_eq!(out.capacity(), 0);
}

#[test]
fn zstd_windows_beyond_the_cap_are_refused() {
    // A frame asking for a 1 GiB window, whatever its content: the decoder would hold it.
    let mut frame = zstd_frame_header(20);
    zstd_rle_block(&mut frame, 10, 0, true);
    assert_eq!(
        decompressed(Compression::Zstd, &frame, DECOMPRESSED_BATCH_BYTES_MAX),
        Err(DecompressError::TooLarge { bytes_max: DECOMPRESSED_BATCH_BYTES_MAX })
    );
    // An 8 MiB window (zstd level 19) passes even under a small cap.
    let mut frame = zstd_frame_header(13);
    zstd_rle_block(&mut frame, 10, 0, true);
    assert_eq!(decompressed(Compression::Zstd, &frame, 10), Ok(vec![0; 10]));
}

// Snappy as Java producers (snappy-java) and librdkafka write it.

fn xerial_header() -> Vec<u8> {
    let mut header = b"\x82SNAPPY\x00".to_vec();
    header.extend_from_slice(&1i32.to_be_bytes()); // version
    header.extend_from_slice(&1i32.to_be_bytes()); // compatible version
    header
}

/// `chunks` as snappy-java writes them: a header, then each chunk length-prefixed.
fn xerial(chunks: &[&[u8]]) -> Vec<u8> {
    let mut stream = xerial_header();
    for chunk in chunks {
        stream.extend_from_slice(&(chunk.len() as i32).to_be_bytes());
        stream.extend_from_slice(chunk);
    }
    stream
}

/// Raw snappy for "hello": length 5, then one literal of 5 bytes (tag `(5 - 1) << 2`).
const RAW_HELLO: &[u8] = b"\x05\x10hello";

#[test]
fn snappy_java_vectors() {
    let check = |stream: &[u8]| decompressed(Compression::Snappy, stream, MIB);
    // Byte for byte what snappy-java writes for "hello".
    let hello: &[u8] =
        b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x07\x05\x10hello";
    assert_eq!(xerial(&[RAW_HELLO]), hello);
    assert_eq!(check(hello), Ok(b"hello".to_vec()));
    // librdkafka: the raw block alone.
    assert_eq!(check(RAW_HELLO), Ok(b"hello".to_vec()));
    // Several chunks, as snappy-java writes beyond its block size.
    let world = compressed(Compression::Snappy, b", world");
    assert_eq!(check(&xerial(&[RAW_HELLO, &world])), Ok(b"hello, world".to_vec()));
    // Concatenated streams, each with its header.
    let twice = [xerial(&[RAW_HELLO]), xerial(&[&world])].concat();
    assert_eq!(check(&twice), Ok(b"hello, world".to_vec()));
    // A header and no chunk: nothing.
    assert_eq!(check(&xerial_header()), Ok(Vec::new()));
}

#[test]
fn snappy_java_malformed() {
    let check = |stream: &[u8]| match decompressed(Compression::Snappy, stream, MIB) {
        Err(DecompressError::Corrupt { codec: Compression::Snappy, reason }) => reason,
        other => panic!("expected corrupt snappy, got {other:?}"),
    };
    let hello = xerial(&[RAW_HELLO]);
    assert_eq!(check(&hello[..hello.len() - 1]), "snappy-java chunk truncated");
    assert_eq!(check(&hello[..18]), "snappy-java chunk length truncated");
    let mut negative = xerial_header();
    negative.extend_from_slice(&(-5i32).to_be_bytes());
    negative.extend_from_slice(RAW_HELLO);
    assert_eq!(check(&negative), "negative snappy-java chunk length");
    // An empty chunk is not a snappy block.
    check(&xerial(&[b""]));
    // A chunk whose block claims more bytes than it holds.
    check(&xerial(&[b"\x09\x10hello"]));
}

#[test]
fn corrupt_payloads_are_errors() {
    let corrupt = |codec: Compression, input: &[u8]| {
        let result = decompressed(codec, input, MIB);
        assert!(
            matches!(result, Err(DecompressError::Corrupt { codec: c, .. }) if c == codec),
            "{codec:?}: {result:?}"
        );
    };
    for codec in COMPRESSED {
        let packed = compressed(codec, &patterned(10_000));
        corrupt(codec, &packed[..packed.len() / 2]);
        corrupt(codec, b"definitely not compressed data");
        if codec != Compression::Lz4 {
            // An empty LZ4 stream is zero frames, which the decoder reads as no data.
            corrupt(codec, b"");
        }
        if codec != Compression::Snappy {
            // Trailing bytes after the last member or frame. (Snappy's raw form has no end
            // marker: trailing bytes are a different block header.)
            corrupt(codec, &[packed.as_slice(), b"trailing garbage"].concat());
        }
    }
    // gzip and zstd carry content checksums; flipping a bit of one is detected.
    for codec in [Compression::Gzip, Compression::Zstd] {
        let mut packed = compressed(codec, &patterned(10_000));
        let last = packed.len() - 1;
        packed[last] ^= 0x01;
        corrupt(codec, &packed);
    }
}

#[test]
fn lz4_linked_blocks_and_checksums_decode() {
    // Not what cairn writes, but valid frames other LZ4 writers produce.
    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
    use std::io::Write;
    let input = patterned(300_000);
    let info = FrameInfo::new()
        .block_size(BlockSize::Max64KB)
        .block_mode(BlockMode::Linked)
        .block_checksums(true)
        .content_checksum(true)
        .content_size(Some(input.len() as u64));
    let mut encoder = FrameEncoder::with_frame_info(info, Vec::new());
    encoder.write_all(&input).unwrap();
    let packed = encoder.finish().unwrap();
    assert_eq!(decompressed(Compression::Lz4, &packed, MIB), Ok(input));
}

#[test]
fn zstd_skippable_frames_are_skipped() {
    let mut stream = 0x184D_2A50u32.to_le_bytes().to_vec();
    stream.extend_from_slice(&3u32.to_le_bytes());
    stream.extend_from_slice(b"xyz");
    stream.extend_from_slice(&compressed(Compression::Zstd, b"records"));
    assert_eq!(decompressed(Compression::Zstd, &stream, MIB), Ok(b"records".to_vec()));
    // A skippable frame shorter than it claims.
    let truncated = &stream[..10];
    assert!(matches!(
        decompressed(Compression::Zstd, truncated, MIB),
        Err(DecompressError::Corrupt { .. })
    ));
}

fn codec_strategy() -> impl Strategy<Value = Compression> {
    proptest::sample::select(CODECS.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn roundtrip_arbitrary(codec in codec_strategy(), input in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let packed = compressed(codec, &input);
        prop_assert_eq!(decompressed(codec, &packed, input.len()), Ok(input));
    }

    #[test]
    fn garbage_never_panics(codec in codec_strategy(), input in proptest::collection::vec(any::<u8>(), 0..2000)) {
        if let Ok(out) = decompressed(codec, &input, 4096) {
            prop_assert!(out.len() <= 4096);
        }
    }

    /// Valid streams with a few bytes changed reach deeper into the decoders than noise does.
    #[test]
    fn mutated_streams_never_panic(
        codec in codec_strategy(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut packed = compressed(codec, &patterned(20_000));
        for (at, value) in flips {
            let at = at % packed.len();
            packed[at] = value;
        }
        if let Ok(out) = decompressed(codec, &packed, 30_000) {
            prop_assert!(out.len() <= 30_000);
        }
    }

    #[test]
    fn garbage_batches_never_panic(codec in codec_strategy(), payload in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let bytes = with_payload(&sample_batch(3), codec, &payload);
        // Uncompressed garbage may be refused by the framing already (too short for 3 records).
        let Ok(batch) = RecordBatch::validate(&bytes) else { return Ok(()) };
        let mut scratch = Vec::new();
        let _ = validate_records(&batch, &mut scratch, 4096);
        prop_assert!(scratch.capacity() <= 4096);
    }
}
