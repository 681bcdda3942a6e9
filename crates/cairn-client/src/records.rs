//! Record batches on the client side: building them (uncompressed with
//! `cairn_types::batch::BatchBuilder`, compressed with [`compressed_batch`]), Kafka's default
//! partitioner hash ([`murmur2`]), and decoding fetched batches ([`decode_batches`]).
//!
//! Errors are typed: [`BatchBuildError`] (the caller's batch or codec; stop),
//! [`UnknownCodec`] (a bad name), [`DecodeError`] (malformed fetched bytes; stop reading that
//! partition).

use cairn_protocol::compression::{self, CompressError, EncodeError};
use cairn_types::batch::{
    BatchError, Batches, Compression, HEADER_BYTES, RecordBatch, TimestampType, records_in,
};
use cairn_types::limits::{BATCH_BYTES_MAX, DECOMPRESSED_BATCH_BYTES_MAX};

/// A codec name that is not one of Kafka's `compression.type` values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown codec {name:?}: expected none, gzip, snappy, lz4 or zstd")]
pub struct UnknownCodec {
    /// The name as given.
    pub name: String,
}

/// Parses a codec name as Kafka's `compression.type` spells it.
///
/// # Errors
/// [`UnknownCodec`], whose message lists the valid names.
pub fn parse_codec(name: &str) -> Result<Compression, UnknownCodec> {
    match name {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => Err(UnknownCodec { name: other.to_owned() }),
    }
}

/// Why [`compressed_batch`] could not build a batch. The caller's input in every case: stop.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchBuildError {
    /// The input is not one valid batch.
    #[error(transparent)]
    Invalid(#[from] BatchError),
    /// The input is compressed already.
    #[error("the batch is already compressed")]
    AlreadyCompressed,
    /// The codec failed.
    #[error(transparent)]
    Compress(#[from] CompressError),
    /// The compressed batch is larger than a batch may be.
    #[error("compressed batch of {bytes} bytes exceeds the limit of {BATCH_BYTES_MAX}")]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
}

/// Turns `uncompressed` — one valid uncompressed batch, as `BatchBuilder::build` writes it —
/// into the same batch with its records part compressed with `codec`: the header is kept, the
/// codec bits, `batch_length` and CRC are rewritten. [`Compression::None`] returns it as is.
///
/// # Errors
/// [`BatchBuildError`] if the batch is not a valid uncompressed batch, the codec fails, or the
/// result is larger than [`BATCH_BYTES_MAX`].
pub fn compressed_batch(
    uncompressed: &[u8],
    codec: Compression,
) -> Result<Vec<u8>, BatchBuildError> {
    let batch = RecordBatch::validate(uncompressed)?;
    if batch.header().compression() != Compression::None {
        return Err(BatchBuildError::AlreadyCompressed);
    }
    if codec == Compression::None {
        return Ok(uncompressed.to_vec());
    }
    let mut out = Vec::with_capacity(uncompressed.len() / 2 + HEADER_BYTES);
    let records = &uncompressed[HEADER_BYTES..];
    match compression::encode_batch(&batch, records, codec, BATCH_BYTES_MAX as usize, &mut out) {
        Ok(()) => Ok(out),
        Err(EncodeError::Compress(error)) => Err(BatchBuildError::Compress(error)),
        Err(EncodeError::TooLarge { bytes, .. }) => Err(BatchBuildError::TooLarge { bytes }),
    }
}

/// Kafka's `Utils.murmur2`: the hash the default partitioner applies to record keys.
#[must_use]
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for `key` among `partitions` (> 0):
/// `toPositive(murmur2(key)) % partitions`.
#[must_use]
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    debug_assert!(partitions > 0);
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions.max(1)
}

/// One consumed record, with its absolute offset and timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumed<'a> {
    /// The record's offset.
    pub offset: i64,
    /// Its timestamp, ms since the epoch (create or log-append time, as the batch says).
    pub timestamp: i64,
    /// The key, `None` if null.
    pub key: Option<&'a [u8]>,
    /// The value, `None` if null (a tombstone).
    pub value: Option<&'a [u8]>,
    /// Header keys and values, in order.
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

/// What [`decode_batches`] did with a fetched record set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The offset after the last batch decoded (the next fetch starts there); the `from`
    /// passed in if no whole batch was there.
    pub next_offset: i64,
    /// Whether `visit` asked to stop.
    pub stopped: bool,
}

/// Decodes the batches of a fetched record set, calling `visit` for every record at or after
/// `from` (earlier records come when a fetch starts inside a batch). Control batches are
/// skipped; compressed batches are decompressed (at most [`DECOMPRESSED_BATCH_BYTES_MAX`]). A
/// partial batch at the end (a broker may cut the last one) ends the set. `visit` returns
/// `false` to stop.
///
/// # Errors
/// [`DecodeError::Batch`] for a malformed batch or record, [`DecodeError::Visit`] for a visit
/// error.
pub fn decode_batches<E>(
    records: &[u8],
    from: i64,
    mut visit: impl FnMut(Consumed<'_>) -> Result<bool, E>,
) -> Result<Decoded, DecodeError<E>> {
    let mut next_offset = from;
    let mut scratch = Vec::new();
    for batch in Batches::new(records, BATCH_BYTES_MAX) {
        let batch = match batch {
            Ok(batch) => batch,
            // Kafka brokers may send a partial batch at the end of a fetch response.
            Err(BatchError::Truncated { .. }) => break,
            Err(error) => return Err(DecodeError::Batch(error.to_string())),
        };
        let header = *batch.header();
        let batch_next = header.next_offset().0 as i64;
        if batch_next <= from {
            continue;
        }
        if header.is_control() {
            next_offset = next_offset.max(batch_next);
            continue;
        }
        let body = &batch.as_bytes()[HEADER_BYTES..];
        let records = if header.compression() == Compression::None {
            records_in(body, header.record_count)
        } else {
            scratch.clear();
            compression::decompress(
                header.compression(),
                body,
                &mut scratch,
                DECOMPRESSED_BATCH_BYTES_MAX,
            )
            .map_err(|error| {
                DecodeError::Batch(format!("batch at offset {}: {error}", header.base_offset))
            })?;
            records_in(&scratch, header.record_count)
        };
        let base_offset = header.base_offset.0 as i64;
        for record in records {
            let record = record.map_err(|error| {
                DecodeError::Batch(format!("batch at offset {base_offset}: {error}"))
            })?;
            let offset = base_offset + i64::from(record.offset_delta);
            if offset < from {
                continue;
            }
            // With log-append time the broker stamps the batch, not each record (Kafka's rule).
            let timestamp = match header.timestamp_type() {
                TimestampType::LogAppendTime => header.max_timestamp,
                TimestampType::CreateTime => header.base_timestamp + record.timestamp_delta,
            };
            let consumed = Consumed {
                offset,
                timestamp,
                key: record.key,
                value: record.value,
                headers: record.headers,
            };
            if !visit(consumed).map_err(DecodeError::Visit)? {
                return Ok(Decoded { next_offset: offset + 1, stopped: true });
            }
        }
        next_offset = next_offset.max(batch_next);
    }
    Ok(Decoded { next_offset, stopped: false })
}

/// Why [`decode_batches`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError<E> {
    /// A batch or record is malformed (what and where). The broker sent bad bytes: stop reading
    /// the partition.
    #[error("{0}")]
    Batch(String),
    /// The visitor failed with its own error.
    #[error("{0}")]
    Visit(E),
}

#[cfg(test)]
mod tests {
    use cairn_types::batch::BatchBuilder;

    use super::*;

    /// Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(murmur2(data), expected, "{}", String::from_utf8_lossy(data));
        }
    }

    fn sample(records: usize) -> Vec<u8> {
        let mut builder = BatchBuilder::new(1_700_000_000_000);
        for i in 0..records {
            let key = format!("key-{i}");
            let value = format!("value {i} value {i} value {i}");
            builder = builder.record_at(
                1_700_000_000_000 + i as i64,
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                &[(b"h", Some(b"v")), (b"n", None)],
            );
        }
        builder.build()
    }

    #[test]
    fn compressed_batches_validate_and_decode_for_every_codec() {
        let plain = sample(100);
        let expected = decode_all(&plain, 0);
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bytes = compressed_batch(&plain, codec).unwrap();
            let batch = RecordBatch::validate(&bytes).unwrap();
            assert_eq!(batch.header().compression(), codec);
            assert_eq!(batch.record_count(), 100);
            compression::validate_records(&batch, &mut Vec::new(), DECOMPRESSED_BATCH_BYTES_MAX)
                .unwrap();
            assert_eq!(decode_all(&bytes, 0), expected, "{codec:?}");
        }
    }

    fn decode_all(bytes: &[u8], from: i64) -> Vec<(i64, i64, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        decode_batches::<()>(bytes, from, |record| {
            out.push((
                record.offset,
                record.timestamp,
                record.key.unwrap().to_vec(),
                record.value.unwrap().to_vec(),
            ));
            Ok(true)
        })
        .unwrap();
        out
    }

    #[test]
    fn decoding_skips_records_before_from_control_batches_and_a_cut_tail() {
        let mut bytes = sample(10);
        let control = BatchBuilder::new(0).control().record(None, Some(b"marker"), &[]).build();
        let mut control = control;
        cairn_types::batch::set_base_offset(&mut control, cairn_types::Offset(10));
        bytes.extend_from_slice(&control);
        let mut third = sample(5);
        cairn_types::batch::set_base_offset(&mut third, cairn_types::Offset(11));
        bytes.extend_from_slice(&third[..third.len() - 3]);
        let records = decode_all(&bytes, 4);
        assert_eq!(records.iter().map(|r| r.0).collect::<Vec<_>>(), (4..10).collect::<Vec<_>>());
        assert_eq!(records[0].1, 1_700_000_000_004);
        let decoded = decode_batches::<()>(&bytes, 4, |_| Ok(true)).unwrap();
        assert_eq!(decoded, Decoded { next_offset: 11, stopped: false });
        let stopped = decode_batches::<()>(&bytes, 0, |r| Ok(r.offset < 2)).unwrap();
        assert_eq!(stopped, Decoded { next_offset: 3, stopped: true });
    }

    #[test]
    fn keyed_partitioning_is_positive_modulo() {
        // murmur2("21") is negative: toPositive keeps the low 31 bits.
        let expected = ((-973_932_308i32 & 0x7fff_ffff) as u32) % 7;
        assert_eq!(partition_for_key(b"21", 7), expected);
        assert_eq!(partition_for_key(b"anything", 1), 0);
    }
}
