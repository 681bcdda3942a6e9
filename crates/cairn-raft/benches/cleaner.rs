//! The log cleaner's throughput (RFC 0007), with divan: one compaction round carried out over
//! a 64 MiB log on the real file system (page cache), 4,096 batches of 16 records of 1 KiB on
//! 8,192 keys written eight times each, so that one record in eight survives; uncapped, and at
//! the default IO cap of 64 MiB/s (what the cap lets through, against the uncapped rate).
//!
//! ```text
//! cargo bench -p cairn-raft --bench cleaner
//! ```
//!
//! The logs live in temporary directories under `target/bench-data/` (the repository's disk)
//! and are removed after each sample; building one is not timed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_raft::GroupLog;
use cairn_raft::compaction::{Throttle, carry_out_rounds};
use cairn_storage::{CompactionRound, FlushPolicy, LogConfig, RealDisk, SystemClock};
use cairn_types::batch::BatchBuilder;
use cairn_types::{LeaderEpoch, Offset};
use divan::counter::BytesCount;
use tempfile::TempDir;

const BATCHES: u64 = 4096;
const RECORDS_PER_BATCH: u64 = 16;
const KEYS: u64 = 8192;
const VALUE_BYTES: usize = 1000;
const LOG_BYTES: u64 = BATCHES * RECORDS_PER_BATCH * 1024;

fn main() {
    divan::main();
}

/// `<workspace>/target/bench-data`, or under `CARGO_TARGET_DIR` when set.
fn bench_data_dir() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    };
    target.join("bench-data")
}

/// A log of the module docs' batches in 16 MiB segments, flushed, with one round over all of
/// it queued as if applied.
fn dirty_log() -> (TempDir, GroupLog<RealDisk>) {
    let parent = bench_data_dir();
    std::fs::create_dir_all(&parent).expect("target/bench-data must be creatable");
    let dir = tempfile::Builder::new().prefix("cleaner-").tempdir_in(parent).expect("a temp dir");
    let config =
        LogConfig { segment_bytes: 16 << 20, flush: FlushPolicy::Manual, ..LogConfig::default() };
    let histogram = Arc::new(cairn_metrics::Histogram::latency());
    let clock = Arc::new(SystemClock);
    let log = GroupLog::open(RealDisk, dir.path(), config, clock, histogram).expect("opens");
    let value = vec![7u8; VALUE_BYTES];
    log.with_log_mut(|log| {
        for batch in 0..BATCHES {
            let mut builder = BatchBuilder::new(1_700_000_000_000);
            for record in 0..RECORDS_PER_BATCH {
                let key = ((batch * RECORDS_PER_BATCH + record) % KEYS).to_be_bytes();
                builder = builder.record(Some(&key), Some(&value), &[]);
            }
            log.append(&mut builder.build(), LeaderEpoch(1)).expect("appended");
        }
        log.flush().expect("flushed");
        let round = CompactionRound {
            index: log.next_index(),
            from: Offset(0),
            to: log.next_offset(),
            time_ms: 1_700_000_000_000,
            delete_retention_ms: 86_400_000,
            keys: u32::try_from(KEYS).expect("fits"),
        };
        log.queue_round(round).expect("queued");
    });
    (dir, log)
}

fn clean(bencher: divan::Bencher<'_, '_>, cap: Option<u64>) {
    bencher.counter(BytesCount::new(LOG_BYTES)).with_inputs(dirty_log).bench_local_values(
        |(dir, log)| {
            let cleaning = carry_out_rounds(&log, &mut Throttle::new(cap)).expect("cleaned");
            assert_eq!(cleaning.rounds, 1);
            assert!(cleaning.bytes_after * 4 < cleaning.bytes_before, "most records dropped");
            drop(log);
            drop(dir);
        },
    );
}

/// One round, the cleaner uncapped.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn round_uncapped(bencher: divan::Bencher<'_, '_>) {
    clean(bencher, None);
}

/// One round at the default cap of 64 MiB/s (read and written bytes both count).
#[divan::bench(sample_count = 3, sample_size = 1)]
fn round_capped_64_mib(bencher: divan::Bencher<'_, '_>) {
    clean(bencher, Some(64 << 20));
}
