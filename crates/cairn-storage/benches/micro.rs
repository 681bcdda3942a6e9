//! Micro-benchmarks of the log's hot paths on the real file system (page cache), with divan:
//!
//! - `locate`: latency of [`Log::locate`] at random offsets of a 64 MiB log: the sparse index
//!   search plus the header walk, for one batch (`bytes_max` 1) and for a 1 MiB answer.
//! - `append_unflushed`: [`Log::append`] of a 256 KiB buffer (16 batches of 16 1 KiB records)
//!   with `FlushPolicy::Manual`: validation, offset assignment and the `pwrite` into the page
//!   cache, without `fdatasync`.
//!
//! ```text
//! cargo bench -p cairn-storage --bench micro
//! ```
//!
//! The logs live in temporary directories under `target/bench-data/` (same disk as the
//! repository, never tmpfs) and are removed at the end. The append benchmark writes at most
//! `APPEND_SAMPLES * APPEND_SAMPLE_SIZE` buffers (200 MiB), with no segment roll.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_storage::{FlushPolicy, Log, LogConfig, RealDisk, SystemClock};
use cairn_types::batch::BatchBuilder;
use cairn_types::limits::SEGMENT_BYTES_MAX;
use cairn_types::{LeaderEpoch, Offset};
use divan::counter::BytesCount;
use tempfile::TempDir;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Size of the log `locate` searches.
const READ_LOG_BYTES: u64 = 64 * MIB as u64;
/// Size of one append in `append_unflushed`.
const APPEND_BYTES: usize = 256 * KIB;
/// Samples and appends per sample of `append_unflushed`: fixed, so the bytes written are bounded.
const APPEND_SAMPLES: u32 = 100;
const APPEND_SAMPLE_SIZE: u32 = 8;
const EPOCH: LeaderEpoch = LeaderEpoch(1);

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

fn temp_dir() -> TempDir {
    let parent = bench_data_dir();
    std::fs::create_dir_all(&parent).expect("target/bench-data must be creatable for benchmarks");
    tempfile::Builder::new()
        .prefix("micro-")
        .tempdir_in(parent)
        .expect("a temporary directory under target/bench-data")
}

/// `count` copies of a 16-record batch of 1 KiB records (8-byte key, 1000-byte value).
fn batches(count: usize) -> Vec<u8> {
    let value = vec![0x5a; 1000];
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for i in 0..16 {
        builder = builder.record(Some(format!("key-{i:04}").as_bytes()), Some(&value), &[]);
    }
    builder.build().repeat(count)
}

fn open(dir: &Path) -> Log<RealDisk> {
    let config = LogConfig {
        segment_bytes: SEGMENT_BYTES_MAX,
        flush: FlushPolicy::Manual,
        ..LogConfig::default()
    };
    Log::open(RealDisk, dir, config, Arc::new(SystemClock)).expect("a new log opens")
}

/// Looks up a random offset and returns one batch (`bytes_max` 1) or 1 MiB of batch ranges.
#[divan::bench(args = [1, 1024 * 1024])]
fn locate(bencher: divan::Bencher, bytes_max: u32) {
    let dir = temp_dir();
    let mut log = open(dir.path());
    let mut buffer = batches(MIB / (16 * KIB));
    while log.size_bytes() < READ_LOG_BYTES {
        log.append(&mut buffer, EPOCH).expect("appending to a fresh log");
    }
    log.flush().expect("flushing a fresh log");
    let end = log.next_offset();
    let state = Cell::new(0x2545_f491_4f6c_dd1d_u64);
    bencher
        .with_inputs(|| {
            let mut x = state.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            state.set(x);
            Offset(x % end.0)
        })
        .bench_local_refs(|from| {
            log.locate(*from, bytes_max, end).expect("locating inside the log")
        });
}

/// Appends a 256 KiB buffer without fsync.
#[divan::bench(sample_count = APPEND_SAMPLES, sample_size = APPEND_SAMPLE_SIZE)]
fn append_unflushed(bencher: divan::Bencher) {
    let dir = temp_dir();
    let mut log = open(dir.path());
    let mut buffer = batches(APPEND_BYTES / (16 * KIB));
    bencher
        .counter(BytesCount::new(buffer.len()))
        .bench_local(|| log.append(&mut buffer, EPOCH).expect("appending to a fresh log"));
}
