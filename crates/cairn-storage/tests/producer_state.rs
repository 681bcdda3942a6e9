//! The producers a clean close leaves for the next open (`producer_log.rs`): used when the log
//! still ends where it was closed with the same last batch, ignored otherwise, removed either
//! way; a large active segment need not be read again to know its producers.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use cairn_storage::{
    FlushPolicy, Log, LogConfig, ManualClock, ProducerStates, RealDisk, read_state_file,
    write_state_file,
};
use cairn_types::batch::{BatchBuilder, RecordBatch};
use cairn_types::{LeaderEpoch, ProducerId};

const T0: i64 = 1_700_000_000_000;
const END_FILE: &str = "producers-end";

fn open(dir: &Path) -> Log<RealDisk> {
    let config =
        LogConfig { segment_bytes: 64 << 20, flush: FlushPolicy::Manual, ..LogConfig::default() };
    Log::open(RealDisk, dir, config, Arc::new(ManualClock::new(T0))).unwrap()
}

/// 2 MiB of batches from three idempotent producers: one active segment above the threshold.
fn fill(log: &mut Log<RealDisk>) {
    for n in 0..200 {
        let mut batch = BatchBuilder::new(T0)
            .producer(ProducerId(n % 3), 0, i32::try_from(n / 3).unwrap())
            .record(None, Some(&[1; 10_000]), &[])
            .build();
        log.append(&mut batch, LeaderEpoch(1)).unwrap();
    }
}

/// Replaces the close's file with `states` under `mark` (its first 12 bytes).
fn forge(dir: &Path, mark: &[u8], states: &ProducerStates) {
    let mut bytes = mark.to_vec();
    bytes.extend_from_slice(&states.encode());
    write_state_file(&RealDisk, dir, END_FILE, &bytes, 1 << 24).unwrap();
}

#[test]
fn a_clean_close_leaves_the_producers_and_the_open_uses_them_only_where_they_belong() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("log");
    let mut log = open(&dir);
    fill(&mut log);
    let real = log.producers().clone();
    assert_eq!(real.len(), 3);
    log.close().unwrap();
    let left = read_state_file(&RealDisk, &dir, END_FILE, 1 << 24).unwrap().expect("left");

    // A stand-in under the right mark is taken as is: the open did not walk the segment.
    let mut other = ProducerStates::new();
    let batch =
        BatchBuilder::new(T0).producer(ProducerId(99), 0, 0).record(None, None, &[]).build();
    other.record_batch_of(RecordBatch::validate(&batch).unwrap().header());
    forge(&dir, &left[..12], &other);
    let log = open(&dir);
    assert_eq!(log.producers(), &other);
    assert!(!dir.join(END_FILE).exists(), "removed by the open");
    log.close().unwrap();

    // Under another end (a batch that is not the last one's), it is ignored: rebuilt.
    let mut wrong = left[..12].to_vec();
    wrong[11] ^= 1;
    forge(&dir, &wrong, &other);
    let log = open(&dir);
    assert_eq!(log.producers(), &real);
    assert!(!dir.join(END_FILE).exists());
}
