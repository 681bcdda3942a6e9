//! Compressed record batches: capped decompression, compression for cairn's own producers, the
//! record check the broker runs on every produced batch ([`validate_records`]), and re-encoding
//! a batch's records with another codec ([`encode_batch`], [`recompress`]) for producers and for
//! topics whose `compression.type` names a codec ([`stored_codec`]).
//!
//! The payload formats, as Kafka clients write them into the records part of a batch:
//!
//! - gzip: RFC 1952; several concatenated members are accepted.
//! - snappy: two framings, both accepted. Java producers (xerial snappy-java's
//!   `SnappyOutputStream`) write a 16-byte header (`\x82SNAPPY\0`, then version and compatible
//!   version as big-endian `i32`s) followed by chunks of `[i32 big-endian length][raw snappy
//!   block]`; concatenated streams repeat the header. librdkafka writes one raw snappy block with
//!   no header. Kafka's own reader (`SnappyInputStream`) treats input without the magic as one
//!   raw block, and so does this module. [`compress`] writes the raw form, which every Kafka
//!   client reads (Java through that fallback).
//! - lz4: the LZ4 frame format; several concatenated frames are accepted. [`compress`] writes
//!   independent 64 KiB blocks without checksums, as Kafka's `KafkaLZ4BlockOutputStream` does
//!   (Java consumers decode each block on its own, so linked blocks would not do).
//! - zstd: one or more frames (skippable frames are skipped); content checksums are verified.
//!
//! Everything here reads untrusted bytes from the network: malformed input is a typed error,
//! never a panic, and decompression writes at most `bytes_max` bytes, stopping as soon as more
//! would come, so a decompression bomb costs at most `bytes_max` of output buffer. The codecs'
//! own state is bounded independently of the input's claims: gzip holds a 32 KiB window, lz4 at
//! most about three blocks (a frame declares its block size, at most 4 MiB, or 8 MiB for the
//! legacy format), zstd its window, which is refused above `max(bytes_max, 8 MiB)`.
//!
//! Pure functions over byte slices: no IO, no clock, no tokio.

use std::io::{self, Read, Write};

use cairn_types::BatchError;
use cairn_types::batch::{
    self, BatchHeader, Compression, HEADER_BYTES, LOG_OVERHEAD_BYTES, RecordBatch,
};
use cairn_types::limits::{BATCH_BYTES_MAX, DECOMPRESSED_BATCH_BYTES_MAX};
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{FrameDecoder, StreamingDecoder};

// Header fields a re-encoded batch rewrites (see `cairn_types::batch` for the layout).
const BATCH_LENGTH_AT: usize = 8;
const ATTRIBUTES_AT: usize = 21;
const ATTR_COMPRESSION_MASK: i16 = 0x07;

/// First bytes of a snappy-java (xerial) stream.
const XERIAL_MAGIC: [u8; 8] = *b"\x82SNAPPY\x00";
/// Magic, version and compatible version.
const XERIAL_HEADER_BYTES: usize = 16;
/// Bytes of a xerial chunk's length prefix.
const XERIAL_CHUNK_LENGTH_BYTES: usize = 4;

/// Smallest step by which decompression grows its output. The output grows geometrically from
/// here, and only by what the data needs, never by the spare capacity of a reused buffer (which
/// would be zero-filled for nothing).
const OUTPUT_GROW_BYTES_MIN: usize = 32 * 1024;

/// zstd windows up to this size are accepted whatever the cap. zstd levels 1 to 19 use windows of
/// at most 8 MiB (window log 23) when the content size is unknown, as in Java's streaming
/// compressor, so an ordinary frame decodes even under a small cap. Above it, the window must fit
/// in the cap: the decoder holds up to a window of output, so this bounds its memory.
const ZSTD_WINDOW_BYTES_FLOOR: usize = 8 * 1024 * 1024;

/// Why compressed records could not be decompressed. The sender's fault in every case: the
/// caller rejects the batch; retrying the same bytes cannot help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    /// The output would pass `bytes_max` (or a zstd frame asks for a window larger than this
    /// module allows for that cap). Decompression stopped there.
    #[error("decompressed records exceed {bytes_max} bytes")]
    TooLarge {
        /// The cap the output would have passed.
        bytes_max: usize,
    },
    /// The bytes are not valid data for their codec.
    #[error("corrupt {} data: {reason}", codec_name(*.codec))]
    Corrupt {
        /// The codec the batch claims.
        codec: Compression,
        /// What the decoder objected to.
        reason: String,
    },
}

/// Why records could not be compressed. Local input, not network bytes: the caller's mistake.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompressError {
    /// The input is larger than any broker would decompress ([`DECOMPRESSED_BATCH_BYTES_MAX`]).
    #[error("{bytes} bytes of records exceed the limit of {bytes_max}")]
    TooLarge {
        /// Size of the input.
        bytes: usize,
        /// The limit it passed.
        bytes_max: usize,
    },
    /// The encoder failed (not expected when writing to memory; kept rather than a panic).
    #[error("{} compression failed: {reason}", codec_name(*.codec))]
    Failed {
        /// The codec asked for.
        codec: Compression,
        /// What the encoder reported.
        reason: String,
    },
}

/// Why a batch's records are invalid. The sender's fault: the caller rejects the batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    /// The records part of a compressed batch does not decompress (within the cap).
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    /// The (decompressed) records are malformed or do not match the header.
    #[error(transparent)]
    Batch(#[from] BatchError),
}

/// The codec's name as Kafka's `compression.type` spells it.
#[must_use]
pub fn codec_name(codec: Compression) -> &'static str {
    match codec {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

/// Decompresses the records part of a batch compressed with `codec`, appending to `out`.
///
/// At most `bytes_max` bytes are appended: decompression stops as soon as more would come, and
/// `out` grows to at most its length plus `bytes_max` (its capacity is never raised beyond that).
/// [`Compression::None`] copies `compressed`, under the same cap.
///
/// # Errors
/// [`DecompressError::TooLarge`] if the output would pass `bytes_max`,
/// [`DecompressError::Corrupt`] if `compressed` is not valid `codec` data. On error `out` is
/// truncated back to its length on entry.
pub fn decompress(
    codec: Compression,
    compressed: &[u8],
    out: &mut Vec<u8>,
    bytes_max: usize,
) -> Result<(), DecompressError> {
    let start = out.len();
    let limit = start.saturating_add(bytes_max);
    let mut sink = Sink { out, start, limit, bytes_max, codec };
    let result = match codec {
        Compression::None => sink.append(compressed),
        Compression::Gzip => sink.read_all(&mut flate2::bufread::MultiGzDecoder::new(compressed)),
        Compression::Snappy => decompress_snappy(compressed, &mut sink),
        Compression::Lz4 => decompress_lz4(compressed, &mut sink),
        Compression::Zstd => decompress_zstd(compressed, &mut sink),
    };
    if result.is_err() {
        sink.out.truncate(sink.start);
    }
    result
}

/// Compresses `input` (the records part of a batch) with `codec`, appending to `out`, in the
/// format Kafka clients write (see the module documentation); zstd at ruzstd's fastest level.
///
/// # Errors
/// [`CompressError::TooLarge`] if `input` is larger than [`DECOMPRESSED_BATCH_BYTES_MAX`] (no
/// broker would accept it); [`CompressError::Failed`] if the encoder fails. On error `out` is
/// truncated back to its length on entry.
pub fn compress(codec: Compression, input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
    if input.len() > DECOMPRESSED_BATCH_BYTES_MAX {
        return Err(CompressError::TooLarge {
            bytes: input.len(),
            bytes_max: DECOMPRESSED_BATCH_BYTES_MAX,
        });
    }
    let start = out.len();
    let failed = |reason: String| CompressError::Failed { codec, reason };
    let result = match codec {
        Compression::None => {
            out.extend_from_slice(input);
            Ok(())
        }
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(&mut *out, flate2::Compression::default());
            encoder
                .write_all(input)
                .and_then(|()| encoder.finish())
                .map(drop)
                .map_err(|error| failed(error.to_string()))
        }
        Compression::Snappy => {
            let bound = snap::raw::max_compress_len(input.len());
            out.resize(start + bound, 0);
            match snap::raw::Encoder::new().compress(input, &mut out[start..]) {
                Ok(written) => {
                    out.truncate(start + written);
                    Ok(())
                }
                Err(error) => Err(failed(error.to_string())),
            }
        }
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, &mut *out);
            match encoder.write_all(input) {
                Ok(()) => encoder.finish().map(drop).map_err(|error| failed(error.to_string())),
                Err(error) => Err(failed(error.to_string())),
            }
        }
        Compression::Zstd => {
            // Reading a slice and writing a `Vec` cannot fail, which is all ruzstd unwraps.
            ruzstd::encoding::compress(
                input,
                &mut *out,
                ruzstd::encoding::CompressionLevel::Fastest,
            );
            Ok(())
        }
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Checks the records of `batch`, already validated by [`RecordBatch::validate`] (framing and
/// CRC): exactly `record_count` well-formed records, nothing after them, offset deltas within
/// the batch (see [`batch::validate_records`]). A compressed batch is first decompressed into
/// `scratch` (cleared first, at most `decompressed_bytes_max` bytes; pass
/// [`DECOMPRESSED_BATCH_BYTES_MAX`]).
///
/// What the broker runs on every produced batch. It allocates nothing per record, and nothing for
/// the output once `scratch` has grown to the batches' size; the codecs still build their own
/// state per call. `scratch` keeps its capacity: a caller that keeps it across batches should
/// keep one per worker, not per connection, or shrink it after a large batch.
///
/// # Errors
/// [`RecordsError`] if the records do not decompress within the cap or are malformed.
pub fn validate_records(
    batch: &RecordBatch<'_>,
    scratch: &mut Vec<u8>,
    decompressed_bytes_max: usize,
) -> Result<(), RecordsError> {
    let header = batch.header();
    // A validated batch is at least a header long.
    let records = batch.as_bytes().get(HEADER_BYTES..).unwrap_or_default();
    match header.compression() {
        Compression::None => batch::validate_records(records, header)?,
        codec => {
            scratch.clear();
            decompress(codec, records, scratch, decompressed_bytes_max)?;
            batch::validate_records(scratch, header)?;
        }
    }
    Ok(())
}

/// Why a batch could not be re-encoded with another codec ([`encode_batch`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The codec failed on the records.
    #[error(transparent)]
    Compress(#[from] CompressError),
    /// The re-encoded batch would be larger than the caller allows (compressing incompressible
    /// records, or storing compressed ones uncompressed, can grow a batch).
    #[error("re-encoded batch of {bytes} bytes exceeds the limit of {bytes_max}")]
    TooLarge {
        /// Size of the re-encoded batch.
        bytes: usize,
        /// The limit it passed.
        bytes_max: usize,
    },
}

/// Why a produced batch could not be recompressed ([`recompress`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecompressError {
    /// The batch's records are invalid, or do not decompress within the cap: the sender's
    /// fault, as in [`validate_records`].
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// The records could not be re-encoded (within the size allowed).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// The codec a produced batch is stored with when its topic's codec is `topic_codec` (`None`:
/// Kafka's `compression.type=producer`, the producer's own). A batch keeps its codec when it
/// already matches, when the topic keeps the producer's, and when it is a control batch
/// (control batches are written as they are, never recompressed); otherwise it takes the
/// topic's.
#[must_use]
pub fn stored_codec(header: &BatchHeader, topic_codec: Option<Compression>) -> Compression {
    match topic_codec {
        Some(codec) if !header.is_control() => codec,
        _ => header.compression(),
    }
}

/// Appends to `out` the batch `batch` re-encoded with `codec`, given `records`, the batch's
/// records part uncompressed (its own bytes after the header for an uncompressed batch, what
/// [`validate_records`] decompressed otherwise). The header is kept, offsets, timestamps,
/// producer fields and record count included; only the codec bits of the attributes, the batch
/// length and the CRC are rewritten. [`Compression::None`] stores the records uncompressed.
///
/// # Errors
/// [`EncodeError::Compress`] if the codec fails; [`EncodeError::TooLarge`] if the new batch is
/// larger than `batch_bytes_max` (or [`BATCH_BYTES_MAX`], whichever is smaller). On error `out`
/// is truncated back to its length on entry.
pub fn encode_batch(
    batch: &RecordBatch<'_>,
    records: &[u8],
    codec: Compression,
    batch_bytes_max: usize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let bytes_max = batch_bytes_max.min(BATCH_BYTES_MAX as usize);
    let start = out.len();
    // A validated batch is at least a header long.
    out.extend_from_slice(batch.as_bytes().get(..HEADER_BYTES).unwrap_or_default());
    let result = compress(codec, records, out).map_err(EncodeError::from).and_then(|()| {
        let bytes = out.len() - start;
        if bytes > bytes_max {
            return Err(EncodeError::TooLarge { bytes, bytes_max });
        }
        Ok(bytes)
    });
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(error) => {
            out.truncate(start);
            return Err(error);
        }
    };
    let encoded = &mut out[start..];
    // Fits in an i32: at most BATCH_BYTES_MAX, checked just above.
    let batch_length = (bytes - LOG_OVERHEAD_BYTES) as i32;
    encoded[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = (batch.header().attributes & !ATTR_COMPRESSION_MASK) | codec.attribute_bits();
    encoded[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch::set_crc(encoded);
    Ok(())
}

/// Checks the records of a produced `batch` as [`validate_records`] does (decompressing into
/// `scratch`, at most `decompressed_bytes_max` bytes) and appends the batch re-encoded with
/// `codec` to `out` ([`encode_batch`], at most `batch_bytes_max` bytes). What the broker runs on
/// a batch whose codec differs from the one its topic stores ([`stored_codec`]); the records
/// are decompressed once, for both steps.
///
/// # Errors
/// [`RecompressError::Records`] as [`validate_records`]; [`RecompressError::Encode`] as
/// [`encode_batch`]. On error `out` is as it was on entry.
pub fn recompress(
    batch: &RecordBatch<'_>,
    codec: Compression,
    scratch: &mut Vec<u8>,
    decompressed_bytes_max: usize,
    batch_bytes_max: usize,
    out: &mut Vec<u8>,
) -> Result<(), RecompressError> {
    validate_records(batch, scratch, decompressed_bytes_max)?;
    let records = match batch.header().compression() {
        // A validated batch is at least a header long.
        Compression::None => batch.as_bytes().get(HEADER_BYTES..).unwrap_or_default(),
        _ => scratch.as_slice(),
    };
    encode_batch(batch, records, codec, batch_bytes_max, out)?;
    Ok(())
}

/// Where decompressed bytes go: `out` from `start`, up to `limit` (`start + bytes_max`).
struct Sink<'a> {
    out: &'a mut Vec<u8>,
    /// Length of `out` on entry; on error `out` is truncated back to it.
    start: usize,
    /// Length `out` may reach.
    limit: usize,
    /// The caller's cap, for errors.
    bytes_max: usize,
    /// The codec being decoded, for errors.
    codec: Compression,
}

impl Sink<'_> {
    fn corrupt(&self, reason: impl ToString) -> DecompressError {
        DecompressError::Corrupt { codec: self.codec, reason: reason.to_string() }
    }

    fn too_large(&self) -> DecompressError {
        DecompressError::TooLarge { bytes_max: self.bytes_max }
    }

    /// Bytes that may still be appended.
    fn room(&self) -> usize {
        self.limit - self.out.len()
    }

    /// Makes room for `additional` more bytes (at most [`Sink::room`]), growing the capacity
    /// geometrically so that many small steps stay linear, but never past `limit`.
    fn reserve(&mut self, additional: usize) {
        let needed = self.out.len() + additional;
        debug_assert!(needed <= self.limit);
        if needed > self.out.capacity() {
            let doubled = self.out.capacity().saturating_mul(2).min(self.limit);
            self.out.reserve_exact(needed.max(doubled) - self.out.len());
        }
    }

    /// Appends `bytes`, or fails without appending if they do not fit.
    fn append(&mut self, bytes: &[u8]) -> Result<(), DecompressError> {
        if bytes.len() > self.room() {
            return Err(self.too_large());
        }
        self.reserve(bytes.len());
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    /// Reads `reader` to its end into `out`. Fails as soon as it yields a byte past `limit`.
    fn read_all(&mut self, reader: &mut impl Read) -> Result<(), DecompressError> {
        let mut filled = self.out.len();
        let result = loop {
            if filled == self.out.len() {
                if filled == self.limit {
                    // Full: any further byte makes the output too large.
                    let mut probe = [0u8; 1];
                    break match read_retrying(reader, &mut probe) {
                        Ok(0) => Ok(()),
                        Ok(_) => Err(self.too_large()),
                        Err(error) => Err(self.corrupt(error)),
                    };
                }
                let produced = filled - self.start;
                let grow = produced.max(OUTPUT_GROW_BYTES_MIN).min(self.limit - filled);
                self.reserve(grow);
                self.out.resize(filled + grow, 0);
            }
            match read_retrying(reader, &mut self.out[filled..]) {
                Ok(0) => break Ok(()),
                Ok(read) => filled += read,
                Err(error) => break Err(self.corrupt(error)),
            }
        };
        self.out.truncate(filled);
        result
    }
}

/// `reader.read(buf)`, retried on [`io::ErrorKind::Interrupted`].
fn read_retrying(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

fn decompress_snappy(compressed: &[u8], sink: &mut Sink<'_>) -> Result<(), DecompressError> {
    let Some(mut rest) = strip_xerial_header(compressed) else {
        return snappy_block(compressed, sink);
    };
    while let Some((length, after)) = rest.split_first_chunk::<XERIAL_CHUNK_LENGTH_BYTES>() {
        if let Some(after_header) = strip_xerial_header(rest) {
            // Concatenated streams: the magic's first four bytes, read as a length, are negative,
            // so they cannot be mistaken for a chunk.
            rest = after_header;
            continue;
        }
        let length = usize::try_from(i32::from_be_bytes(*length))
            .map_err(|_| sink.corrupt("negative snappy-java chunk length"))?;
        let chunk =
            after.get(..length).ok_or_else(|| sink.corrupt("snappy-java chunk truncated"))?;
        snappy_block(chunk, sink)?;
        rest = &after[length..];
    }
    if !rest.is_empty() {
        return Err(sink.corrupt("snappy-java chunk length truncated"));
    }
    Ok(())
}

/// The bytes after a snappy-java header, if `bytes` starts with one.
fn strip_xerial_header(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.len() >= XERIAL_HEADER_BYTES && bytes.starts_with(&XERIAL_MAGIC) {
        Some(&bytes[XERIAL_HEADER_BYTES..])
    } else {
        None
    }
}

/// Decompresses one raw snappy block. The block states its decompressed length up front, so an
/// oversized one is refused before anything is allocated for it.
fn snappy_block(block: &[u8], sink: &mut Sink<'_>) -> Result<(), DecompressError> {
    let length = snap::raw::decompress_len(block).map_err(|error| sink.corrupt(error))?;
    if length > sink.room() {
        return Err(sink.too_large());
    }
    sink.reserve(length);
    let at = sink.out.len();
    sink.out.resize(at + length, 0);
    match snap::raw::Decoder::new().decompress(block, &mut sink.out[at..]) {
        Ok(written) => {
            sink.out.truncate(at + written);
            Ok(())
        }
        Err(error) => Err(sink.corrupt(error)),
    }
}

fn decompress_lz4(compressed: &[u8], sink: &mut Sink<'_>) -> Result<(), DecompressError> {
    let mut decoder = lz4_flex::frame::FrameDecoder::new(compressed);
    // The decoder reports the end of each frame as the end of input; keep going while input is
    // left, for concatenated frames.
    loop {
        let left = decoder.get_ref().len();
        sink.read_all(&mut decoder)?;
        let left_after = decoder.get_ref().len();
        if left_after == 0 {
            return Ok(());
        }
        if left_after == left {
            return Err(sink.corrupt("lz4 decoder stopped before the end of its input"));
        }
    }
}

fn decompress_zstd(mut compressed: &[u8], sink: &mut Sink<'_>) -> Result<(), DecompressError> {
    let window_bytes_max = sink.bytes_max.max(ZSTD_WINDOW_BYTES_FLOOR) as u64;
    loop {
        let mut frame = FrameDecoder::new();
        frame.set_max_window_size(window_bytes_max);
        match StreamingDecoder::new_with_decoder(&mut compressed, frame) {
            Ok(mut decoder) => {
                sink.read_all(&mut decoder)?;
                let frame = &decoder.decoder;
                if let (Some(stored), Some(computed)) =
                    (frame.get_checksum_from_data(), frame.get_calculated_checksum())
                    && stored != computed
                {
                    return Err(sink.corrupt(format_args!(
                        "content checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
                    )));
                }
            }
            Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                length,
                ..
            })) => {
                compressed = compressed
                    .get(length as usize..)
                    .ok_or_else(|| sink.corrupt("skippable frame truncated"))?;
            }
            Err(FrameDecoderError::WindowSizeTooBig { .. }) => return Err(sink.too_large()),
            Err(error) => return Err(sink.corrupt(error)),
        }
        if compressed.is_empty() {
            return Ok(());
        }
    }
}
