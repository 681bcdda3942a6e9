//! Compaction's pure parts (RFC 0007) against a model: a log of random batches (every codec,
//! keyless records, tombstones, timestamps of both types) cleaned by one round keeps exactly
//! the records the model keeps (the latest of each key in the dirty part, tombstones until they
//! expire), at their offsets, with every batch's header; cleaning again changes nothing; the
//! map holds no more keys than its bound, a batch's keys all or none.

use std::collections::BTreeMap;

use cairn_protocol::compaction::{Cleaned, KeyMap, Round, clean_batch};
use cairn_protocol::compression::{decompress, encode_batch};
use cairn_types::Offset;
use cairn_types::batch::{self, BatchBuilder, Compression, RecordBatch};
use cairn_types::limits::DECOMPRESSED_BATCH_BYTES_MAX;
use proptest::prelude::*;

const START_MS: i64 = 1_700_000_000_000;
const RETENTION_MS: i64 = 1_000;

/// A record as generated: key and value from small domains (`None`: keyless, tombstone).
type Spec = (Option<u8>, Option<u8>, u16);

fn codec() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Gzip),
        Just(Compression::Snappy),
        Just(Compression::Lz4),
        Just(Compression::Zstd),
    ]
}

fn record() -> impl Strategy<Value = Spec> {
    let key = proptest::option::weighted(0.9, 0u8..6);
    let value = proptest::option::weighted(0.8, any::<u8>());
    (key, value, 0u16..2_000)
}

/// One batch at `base` holding `records`, encoded with `codec`.
fn build(base: u64, records: &[Spec], codec: Compression) -> Vec<u8> {
    let mut builder = BatchBuilder::new(START_MS);
    for &(key, value, at) in records {
        let key = key.map(|k| [k]);
        let value = value.map(|v| [v]);
        let timestamp = START_MS + i64::from(at);
        builder = builder.record_at(
            timestamp,
            key.as_ref().map(|k| &k[..]),
            value.as_ref().map(|v| &v[..]),
            &[],
        );
    }
    let plain = builder.build();
    let mut bytes = Vec::new();
    let batch = RecordBatch::validate(&plain).expect("valid");
    encode_batch(&batch, &plain[batch::HEADER_BYTES..], codec, usize::MAX, &mut bytes)
        .expect("encodes");
    batch::set_base_offset(&mut bytes, Offset(base));
    bytes
}

/// A record as read back: offset, key, value.
type Stored = (u64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Every record of `batch`.
fn records_of(batch: &[u8]) -> Vec<Stored> {
    let batch = RecordBatch::validate(batch).expect("a valid batch");
    let header = *batch.header();
    let mut plain = Vec::new();
    let stored = &batch.as_bytes()[batch::HEADER_BYTES..];
    decompress(header.compression(), stored, &mut plain, DECOMPRESSED_BATCH_BYTES_MAX)
        .expect("decompresses");
    batch::records_in(&plain, header.record_count)
        .map(|record| {
            let record = record.expect("a valid record");
            let offset = header.base_offset.0 + u64::from(record.offset_delta);
            (offset, record.key.map(<[u8]>::to_vec), record.value.map(<[u8]>::to_vec))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn a_round_keeps_what_the_model_keeps_and_a_second_changes_nothing(
        batches in proptest::collection::vec((proptest::collection::vec(record(), 1..6), codec()), 1..12),
        point in 0.0f64..1.0,
        now_step in 0i64..3_000,
    ) {
        let mut log = Vec::new();
        let mut next = 0u64;
        for (records, codec) in &batches {
            log.push(build(next, records, *codec));
            next += records.len() as u64;
        }
        // The previous point at a batch boundary; the round covers the whole log.
        let first_dirty = ((batches.len() as f64 * point) as usize).min(batches.len() - 1);
        let previous_point = Offset(RecordBatch::validate(&log[first_dirty]).expect("valid").header().base_offset.0);
        let round = Round { previous_point, now_ms: START_MS + now_step, delete_retention_ms: RETENTION_MS };
        let mut scratch = Vec::new();
        let map_of = |log: &[Vec<u8>], scratch: &mut Vec<u8>| {
            let mut map = KeyMap::new(64);
            for bytes in &log[first_dirty..] {
                let batch = RecordBatch::validate(bytes).expect("valid");
                assert!(map.add_batch(&batch, scratch).expect("maps"), "6 keys fit");
            }
            map
        };
        let map = map_of(&log, &mut scratch);

        // The model: each key's latest offset in the dirty part, then the rule.
        let all: Vec<_> = log.iter().flat_map(|b| records_of(b)).collect();
        let mut latest = BTreeMap::new();
        for (offset, key, _) in &all {
            if let Some(key) = key.as_ref().filter(|_| *offset >= previous_point.0) {
                latest.insert(key.clone(), *offset);
            }
        }
        let timestamps: Vec<i64> = batches.iter().flat_map(|(r, _)| r.iter().map(|s| START_MS + i64::from(s.2))).collect();
        let kept: Vec<_> = all.iter().zip(&timestamps).filter(|((offset, key, value), at)| {
            let Some(key) = key else { return false };
            let newest = latest.get(key).is_none_or(|l| offset >= l);
            let expired = value.is_none() && *offset < previous_point.0 && **at + RETENTION_MS <= round.now_ms;
            newest && !expired
        }).map(|(record, _)| record.clone()).collect();

        let mut cleaned = Vec::new();
        for bytes in &log {
            let batch = RecordBatch::validate(bytes).expect("valid");
            let after = match clean_batch(&batch, &map, &round, &mut scratch).expect("cleans") {
                Cleaned::Unchanged => bytes.clone(),
                Cleaned::Rewritten(bytes) => bytes,
            };
            let (before, now) = (batch.header(), *RecordBatch::validate(&after).expect("a valid batch").header());
            prop_assert_eq!(now.base_offset, before.base_offset);
            prop_assert_eq!(now.last_offset_delta, before.last_offset_delta);
            prop_assert_eq!((now.producer_id, now.base_sequence), (before.producer_id, before.base_sequence));
            prop_assert_eq!((now.base_timestamp, now.max_timestamp), (before.base_timestamp, before.max_timestamp));
            cleaned.push(after);
        }
        let survived: Vec<_> = cleaned.iter().flat_map(|b| records_of(b)).collect();
        prop_assert_eq!(&survived, &kept);

        // Idempotent: the map of the cleaned dirty part is the same map; nothing changes.
        let again = map_of(&cleaned, &mut scratch);
        for bytes in &cleaned {
            let batch = RecordBatch::validate(bytes).expect("valid");
            prop_assert_eq!(clean_batch(&batch, &again, &round, &mut scratch).expect("cleans"), Cleaned::Unchanged);
        }
    }
}

#[test]
fn the_map_holds_at_most_its_bound_and_a_batch_all_or_nothing() {
    let mut map = KeyMap::new(3);
    assert!(map.insert(b"a", Offset(1)));
    assert!(map.insert(b"b", Offset(2)));
    assert!(map.insert(b"a", Offset(3)), "a known key is updated");
    assert_eq!(map.latest(b"a"), Some(Offset(3)));
    let two_new = BatchBuilder::new(0)
        .record(Some(b"c"), Some(b"1"), &[])
        .record(Some(b"d"), Some(b"1"), &[])
        .build();
    let batch = RecordBatch::validate(&two_new).expect("valid");
    assert!(!map.add_batch(&batch, &mut Vec::new()).expect("maps"), "c and d do not both fit");
    assert_eq!((map.len(), map.latest(b"c")), (2, None), "nothing of the batch was added");
    assert!(map.insert(b"c", Offset(4)));
    assert!(!map.insert(b"d", Offset(5)), "full");
    assert_eq!(map.latest(b"d"), None);
}

#[test]
fn the_map_grows_to_its_bound_and_keeps_every_key() {
    let keys = 10_000;
    let mut map = KeyMap::new(keys);
    for round in 0..2u64 {
        for key in 0..keys as u64 {
            let offset = Offset(round * 100_000 + key);
            assert!(map.insert(&key.to_be_bytes(), offset), "key {key} fits");
        }
    }
    assert_eq!(map.len(), keys);
    for key in 0..keys as u64 {
        assert_eq!(map.latest(&key.to_be_bytes()), Some(Offset(100_000 + key)));
    }
    assert!(!map.insert(b"one more", Offset(7)), "the map is full");
    assert_eq!(map.latest(b"one more"), None);
}
