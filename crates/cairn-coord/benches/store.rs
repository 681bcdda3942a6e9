//! The coordination store's speed (RFC 0009 §2), with divan, on a redb file in the page cache:
//! puts of 256-byte values applied as Raft entries (one non-durable redb commit each, or one per
//! batch of 64 as the state machine applies what openraft hands it at once; a durable persist
//! every 10,000), and ranges at the head over a filled store.
//!
//! ```text
//! cargo bench -p cairn-coord --bench store
//! ```
//!
//! The files live in temporary directories under `target/bench-data/` (the repository's disk)
//! and are removed after each sample.

use std::path::{Path, PathBuf};

use cairn_coord::{Command, Entry, PutRequest, RangeRequest, Store};
use divan::Bencher;
use divan::counter::ItemsCount;
use tempfile::TempDir;

const VALUE_BYTES: usize = 256;
const PUTS: u64 = 20_000;
const KEYS: u64 = 10_000;
const PERSIST_EVERY: u64 = 10_000;

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

fn empty_store() -> (TempDir, Store) {
    let parent = bench_data_dir();
    std::fs::create_dir_all(&parent).expect("target/bench-data must be creatable");
    let dir = tempfile::Builder::new().prefix("coord-").tempdir_in(parent).expect("a temp dir");
    let store = Store::open(&dir.path().join("store.redb")).expect("opens");
    (dir, store)
}

fn key(i: u64) -> Vec<u8> {
    format!("/registry/pods/default/{:08}", i % KEYS).into_bytes()
}

/// `count` puts over [`KEYS`] keys, as Raft entries from `first_index` on.
fn put_all(store: &mut Store, first_index: u64, count: u64) {
    let value = vec![7u8; VALUE_BYTES];
    for i in 0..count {
        let put = PutRequest { key: key(i), value: value.clone(), ..PutRequest::default() };
        let index = first_index + i;
        store.apply_at(Some(&Command::Put(put)), (1, index)).expect("a put");
        if index.is_multiple_of(PERSIST_EVERY) {
            store.persist().expect("persists");
        }
    }
}

/// [`put_all`] in batches of `batch` entries, each batch one non-durable commit.
fn put_batched(store: &mut Store, count: u64, batch: u64) {
    let value = vec![7u8; VALUE_BYTES];
    let mut first = 1;
    while first <= count {
        let last = (first + batch - 1).min(count);
        let commands: Vec<_> = (first..=last)
            .map(|i| {
                let put = PutRequest { key: key(i), value: value.clone(), ..PutRequest::default() };
                (Command::Put(put), (1, i))
            })
            .collect();
        let entries: Vec<_> = commands.iter().map(|(c, at)| (Entry::Command(c), *at)).collect();
        store.apply_batch(&entries).expect("a batch");
        if first / PERSIST_EVERY != (last + 1) / PERSIST_EVERY {
            store.persist().expect("persists");
        }
        first = last + 1;
    }
}

/// Puts per second: [`PUTS`] puts on [`KEYS`] keys in batches of 64, one commit per batch.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn put_256_bytes_batched_64(bencher: Bencher) {
    bencher.counter(ItemsCount::new(PUTS)).with_inputs(empty_store).bench_local_values(
        |(dir, mut store)| {
            put_batched(&mut store, PUTS, 64);
            store.persist().expect("persists");
            (dir, store)
        },
    );
}

/// Puts per second: [`PUTS`] puts on [`KEYS`] keys, each its own non-durable commit.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn put_256_bytes(bencher: Bencher) {
    bencher.counter(ItemsCount::new(PUTS)).with_inputs(empty_store).bench_local_values(
        |(dir, mut store)| {
            put_all(&mut store, 1, PUTS);
            store.persist().expect("persists");
            (dir, store)
        },
    );
}

/// A range at the head over 100 keys of a store of [`KEYS`] keys.
#[divan::bench(sample_count = 20, sample_size = 100)]
fn range_100_at_head(bencher: Bencher) {
    let (_dir, mut store) = empty_store();
    put_all(&mut store, 1, KEYS);
    let request =
        RangeRequest { key: key(5_000), range_end: key(5_100), ..RangeRequest::default() };
    bencher.counter(ItemsCount::new(100u64)).bench_local(|| {
        let answer = store.range(&request).expect("a range");
        assert_eq!(answer.kvs.len(), 100);
        answer
    });
}

/// A range at the head of one key.
#[divan::bench(sample_count = 20, sample_size = 1000)]
fn get_at_head(bencher: Bencher) {
    let (_dir, mut store) = empty_store();
    put_all(&mut store, 1, KEYS);
    let request = RangeRequest { key: key(1_234), ..RangeRequest::default() };
    bencher.bench_local(|| store.range(&request).expect("a range"));
}

/// The events of the last 100 revisions of 10,000.
#[divan::bench(sample_count = 20, sample_size = 100)]
fn events_after_recent(bencher: Bencher) {
    let (_dir, mut store) = empty_store();
    put_all(&mut store, 1, KEYS);
    let from = store.revision() - 100;
    bencher.bench_local(|| store.events_after(from, usize::MAX).expect("events"));
}
