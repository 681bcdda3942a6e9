//! What the store tests share: a store's whole observable state, and random commands.

// Each test file uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;

use cairn_coord::{
    AlarmKind, Command, Compare, CompareResult, CompareTarget, DeleteRangeRequest, Event, KeyValue,
    Lease, PutRequest, RangeRequest, RequestOp, Store, TxnRequest,
};
use proptest::prelude::*;

/// Everything a store answers: its position, every revision's keyspace from the compacted one
/// on, the events after it, and the leases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub revision: i64,
    pub compacted: i64,
    pub applied: Option<(u64, u64)>,
    pub keyspaces: Vec<(i64, Vec<KeyValue>)>,
    pub events: Vec<(i64, Vec<Event>)>,
    pub leases: BTreeMap<i64, Lease>,
    pub alarms: Vec<(u64, AlarmKind)>,
}

pub fn all_keys(revision: i64) -> RangeRequest {
    RangeRequest { key: vec![0], range_end: vec![0], revision, ..RangeRequest::default() }
}

pub fn state(store: &Store) -> State {
    let keyspaces = (store.compacted().max(1)..=store.revision())
        .map(|revision| {
            let answer = store.range(&all_keys(revision)).expect("a readable revision");
            (revision, answer.kvs)
        })
        .collect();
    State {
        revision: store.revision(),
        compacted: store.compacted(),
        applied: store.applied(),
        keyspaces,
        events: store.events_after(store.compacted(), usize::MAX).expect("events"),
        leases: store.leases().expect("leases"),
        alarms: store.alarms().expect("alarms"),
    }
}

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k]
}

/// Random commands over five keys and two leases, refused ones included (NOSPACE alarms
/// raised and cleared refuse puts meanwhile).
pub fn command() -> impl Strategy<Value = Command> {
    let put = (0..5u8, any::<u8>(), prop_oneof![3 => Just(0i64), 1 => 1..3i64]).prop_map(
        |(k, value, lease)| {
            Command::Put(PutRequest {
                key: key(k),
                value: vec![value],
                lease,
                ..PutRequest::default()
            })
        },
    );
    let delete = (0..5u8, any::<bool>()).prop_map(|(k, all)| {
        let range_end = if all { vec![0] } else { Vec::new() };
        Command::DeleteRange(DeleteRangeRequest { key: key(k), range_end, prev_kv: false })
    });
    let txn = (0..5u8, 0..3i64, 0..5u8, 0..5u8).prop_map(|(k, version, p, other)| {
        Command::Txn(TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Version(version),
                key: key(k),
                range_end: Vec::new(),
            }],
            success: vec![RequestOp::Put(PutRequest {
                key: key(p),
                value: vec![7],
                ..PutRequest::default()
            })],
            failure: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                key: key(other),
                ..DeleteRangeRequest::default()
            })],
        })
    });
    prop_oneof![
        6 => put,
        2 => delete,
        3 => txn,
        1 => (1..3i64).prop_map(|id| Command::LeaseGrant { id, ttl: 10 }),
        1 => (1..3i64).prop_map(|id| Command::LeaseRevoke { id }),
        1 => (1..3i64, 0..10i64).prop_map(|(id, left)| Command::LeaseCheckpoint { remaining: vec![(id, left)] }),
        1 => (1..40i64).prop_map(|revision| Command::Compact { revision }),
        1 => (any::<bool>(), 1..3u64).prop_map(|(activate, member)| {
            Command::Alarm { activate, member, alarm: AlarmKind::NoSpace }
        }),
    ]
}

/// Applies `commands` as Raft entries from index `first` on (every fifth one blank).
pub fn apply_all(store: &mut Store, commands: &[Command], first: u64) {
    for (i, command) in commands.iter().enumerate() {
        let index = first + u64::try_from(i).expect("few commands");
        let entry = if index.is_multiple_of(5) { None } else { Some(command) };
        if let Err(cairn_coord::KvError::Storage(error)) = store.apply_at(entry, (1, index)) {
            panic!("storage failed: {error}");
        }
    }
}
