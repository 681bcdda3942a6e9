//! The store on a file: what a crash leaves (the state of the last persist, position included),
//! what a clean close keeps, and snapshots that rebuild the store, in memory and on disk; entries
//! applied in batches (one transaction each) as one by one.

mod common;

use cairn_coord::{Applied, Entry, Store, StoreError};
use common::{apply_all, command, state};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Apply, persist, apply more, crash (the file as a killed process leaves it), reopen: the
    /// store is exactly as at the persist, and the log's replay of the rest catches it up.
    #[test]
    fn a_crash_reopens_at_the_last_persist(
        before in proptest::collection::vec(command(), 0..40),
        after in proptest::collection::vec(command(), 1..40),
    ) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("store.redb");
        let mut store = Store::open(&path).expect("opens");
        apply_all(&mut store, &before, 1);
        store.persist().expect("persists");
        let persisted = state(&store);
        apply_all(&mut store, &after, 1 + before.len() as u64);
        let crashed = dir.path().join("crashed.redb");
        std::fs::copy(&path, &crashed).expect("the file as the crash left it");
        let full = state(&store);
        drop(store);

        let mut reopened = Store::open(&crashed).expect("reopens");
        prop_assert_eq!(state(&reopened), persisted);
        apply_all(&mut reopened, &after, 1 + before.len() as u64);
        prop_assert_eq!(state(&reopened), full.clone());
        // A clean close keeps everything applied.
        prop_assert_eq!(state(&Store::open(&path).expect("reopens")), full);
    }

    /// Entries applied in batches answer, publish and leave the store as the same entries
    /// applied one at a time (refusals and blanks inside a batch included).
    #[test]
    fn a_batch_applies_as_its_entries_one_by_one(
        commands in proptest::collection::vec(command(), 1..60),
        cuts in proptest::collection::vec(1usize..8, 1..20),
    ) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut single = Store::in_memory().expect("a store");
        let (mut outcomes, mut events) = (Vec::new(), Vec::new());
        for (i, command) in commands.iter().enumerate() {
            let entry = if i % 5 == 4 { None } else { Some(command) };
            let before = single.revision();
            let reply = single.apply_at(entry, (1, i as u64 + 1));
            outcomes.push((reply, single.revision()));
            let made = single.events_after(before, usize::MAX).expect("its events");
            events.extend(made.into_iter().map(|(revision, events)| Applied { revision, events }));
        }
        let path = dir.path().join("store.redb");
        let mut batched = Store::open(&path).expect("opens");
        let (mut answered, mut published) = (Vec::new(), Vec::new());
        let mut entries: Vec<(Entry<'_>, (u64, u64))> = commands.iter().enumerate().map(|(i, c)| {
            (if i % 5 == 4 { Entry::Blank } else { Entry::Command(c) }, (1, i as u64 + 1))
        }).collect();
        for cut in cuts.iter().cycle() {
            if entries.is_empty() {
                break;
            }
            let rest = entries.split_off((*cut).min(entries.len()));
            let (outcomes, made) = batched.apply_batch(&entries).expect("applies");
            answered.extend(outcomes);
            published.extend(made);
            entries = rest;
            if answered.len() == commands.len() / 2 {
                batched.persist().expect("persists");
            }
        }
        prop_assert_eq!(&answered, &outcomes);
        prop_assert_eq!(state(&batched), state(&single));
        prop_assert_eq!(published, events);
    }

    /// A store rebuilt from a snapshot on disk answers as the original.
    #[test]
    fn a_restored_file_answers_as_the_original(
        commands in proptest::collection::vec(command(), 0..60),
    ) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut store = Store::in_memory().expect("a store");
        apply_all(&mut store, &commands, 1);
        let snapshot = store.snapshot().expect("a snapshot");
        let path = dir.path().join("restored.redb");
        let restored = Store::restore(&path, &mut snapshot.as_slice()).expect("restores");
        prop_assert_eq!(state(&restored), state(&store));
        drop(restored);
        prop_assert_eq!(state(&Store::open(&path).expect("reopens")), state(&store));
    }
}

#[test]
fn a_damaged_snapshot_leaves_the_target_as_it_was() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("store.redb");
    let mut store = Store::open(&path).expect("opens");
    let commands: Vec<_> = (0..20u8)
        .map(|i| {
            cairn_coord::Command::Put(cairn_coord::PutRequest {
                key: vec![b'a' + i % 4],
                value: vec![i; 10],
                ..cairn_coord::PutRequest::default()
            })
        })
        .collect();
    apply_all(&mut store, &commands, 1);
    store.persist().expect("persists");
    let before = state(&store);
    let mut snapshot = store.snapshot().expect("a snapshot");
    drop(store);
    let middle = snapshot.len() / 2;
    snapshot[middle] ^= 0x40;
    let damaged = Store::restore(&path, &mut snapshot.as_slice());
    assert!(matches!(damaged, Err(StoreError::Snapshot(_))), "{damaged:?}");
    assert_eq!(state(&Store::open(&path).expect("reopens")), before);
}

#[test]
fn size_grows_with_the_keyspace_and_defragment_shrinks_it_after_compaction() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut store = Store::open(&dir.path().join("store.redb")).expect("opens");
    let empty = store.size_bytes().expect("a size");
    for i in 0..2_000u32 {
        let put = cairn_coord::PutRequest {
            key: format!("k{}", i % 10).into_bytes(),
            value: vec![7; 1024],
            ..cairn_coord::PutRequest::default()
        };
        store.put(&put).expect("a put");
    }
    store.persist().expect("persists");
    let full = store.size_bytes().expect("a size");
    assert!(full > empty + 1_000_000, "{full} after {empty}");
    store.compact(store.revision()).expect("compacts");
    let before = state(&store);
    let reader = store.reader();
    store.defragment().expect("defragments");
    let compacted = store.size_bytes().expect("a size");
    assert!(compacted < full / 2, "{compacted} of {full}");
    assert_eq!(state(&store), before, "the same store, position included");
    // A reader taken before reads the old file; the store goes on on the new one.
    assert_eq!(reader.range(&common::all_keys(0)).expect("a range").kvs.len(), 10);
    store.put(&cairn_coord::PutRequest { key: b"new".to_vec(), ..Default::default() }).unwrap();
    drop(store);
    let reopened = Store::open(&dir.path().join("store.redb")).expect("reopens");
    assert_eq!(reopened.range(&common::all_keys(0)).expect("a range").kvs.len(), 11);
}

#[test]
fn the_store_and_its_readers_go_to_other_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Store>();
    send_sync::<cairn_coord::StoreReader>();
    let mut store = Store::new();
    store
        .put(&cairn_coord::PutRequest { key: b"k".to_vec(), ..cairn_coord::PutRequest::default() })
        .expect("a put");
    let reader = store.reader();
    let read = std::thread::spawn(move || reader.range(&common::all_keys(0)).expect("a range"));
    store
        .delete_range(&cairn_coord::DeleteRangeRequest {
            key: b"k".to_vec(),
            ..cairn_coord::DeleteRangeRequest::default()
        })
        .expect("a delete");
    let answer = read.join().expect("the reader thread");
    assert!(answer.kvs.len() <= 1, "one committed state or the other");
}
