//! The store against a model that keeps the whole keyspace of every revision: random puts,
//! deletes, transactions, leases and compactions, then reads at every revision answer as the
//! model does, the events replayed from the start rebuild the keyspace, and a store restored
//! from its snapshot answers alike.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use cairn_coord::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, EventKind, KeyValue, KvError,
    PutRequest, RequestOp, Store, TxnRequest,
};
use proptest::prelude::*;

type Keyspace = BTreeMap<Vec<u8>, KeyValue>;

/// Every revision's keyspace (index 0 unused, 1 the empty start), the leases and the
/// compacted revision.
struct Model {
    revisions: Vec<Keyspace>,
    leases: BTreeMap<i64, BTreeSet<Vec<u8>>>,
    compacted: i64,
}

impl Model {
    fn new() -> Model {
        Model {
            revisions: vec![Keyspace::new(), Keyspace::new()],
            leases: BTreeMap::new(),
            compacted: 0,
        }
    }

    fn revision(&self) -> i64 {
        i64::try_from(self.revisions.len()).expect("few revisions") - 1
    }

    fn current(&self) -> &Keyspace {
        self.revisions.last().expect("revision 1 at least")
    }

    /// Applies the writes of one transaction to a copy of the keyspace; a new revision if any.
    fn write(&mut self, ops: &[Op]) {
        let next = self.revision() + 1;
        let mut keys = self.current().clone();
        let mut changed = false;
        for op in ops {
            match op {
                Op::Put(key, value, lease) => {
                    let old = keys.get(key).cloned();
                    let kv = KeyValue {
                        key: key.clone(),
                        create_revision: old.as_ref().map_or(next, |o| o.create_revision),
                        mod_revision: next,
                        version: old.as_ref().map_or(1, |o| o.version + 1),
                        value: value.clone(),
                        lease: *lease,
                    };
                    for held in self.leases.values_mut() {
                        held.remove(key);
                    }
                    if let Some(held) = self.leases.get_mut(lease) {
                        held.insert(key.clone());
                    }
                    keys.insert(key.clone(), kv);
                    changed = true;
                }
                Op::Delete(key) => {
                    if keys.remove(key).is_some() {
                        for held in self.leases.values_mut() {
                            held.remove(key);
                        }
                        changed = true;
                    }
                }
            }
        }
        if changed {
            self.revisions.push(keys);
        }
    }
}

/// A write of the model.
#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, Vec<u8>, i64),
    Delete(Vec<u8>),
}

/// What the run does next.
#[derive(Clone, Debug)]
enum Action {
    Put {
        key: u8,
        value: u8,
        lease: i64,
    },
    Delete {
        key: u8,
    },
    /// If `key`'s version equals `version`, put; else delete `other`.
    Txn {
        key: u8,
        version: i64,
        put: u8,
        other: u8,
    },
    Grant(i64),
    Revoke(i64),
    Compact(i64),
}

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (0..5u8, any::<u8>(), prop_oneof![3 => Just(0i64), 1 => 1..3i64])
            .prop_map(|(key, value, lease)| Action::Put { key, value, lease }),
        2 => (0..5u8).prop_map(|key| Action::Delete { key }),
        3 => (0..5u8, 0..3i64, 0..5u8, 0..5u8)
            .prop_map(|(key, version, put, other)| Action::Txn { key, version, put, other }),
        1 => (1..3i64).prop_map(Action::Grant),
        1 => (1..3i64).prop_map(Action::Revoke),
        1 => (1..40i64).prop_map(Action::Compact),
    ]
}

fn put(k: u8, value: u8, lease: i64) -> PutRequest {
    PutRequest { key: key(k), value: vec![value], lease, ..PutRequest::default() }
}

fn delete(k: u8) -> DeleteRangeRequest {
    DeleteRangeRequest { key: key(k), ..DeleteRangeRequest::default() }
}

fn run(store: &mut Store, model: &mut Model, action: &Action) -> Result<(), TestCaseError> {
    match *action {
        Action::Put { key: k, value, lease } => {
            let answer = store.put(&put(k, value, lease));
            if lease != 0 && !model.leases.contains_key(&lease) {
                prop_assert_eq!(answer, Err(KvError::LeaseNotFound));
            } else {
                prop_assert!(answer.is_ok());
                model.write(&[Op::Put(key(k), vec![value], lease)]);
            }
        }
        Action::Delete { key: k } => {
            let answer = store.delete_range(&delete(k)).expect("a delete");
            let existed = model.current().contains_key(&key(k));
            prop_assert_eq!(answer.deleted, i64::from(existed));
            model.write(&[Op::Delete(key(k))]);
        }
        Action::Txn { key: k, version, put: p, other } => {
            let compare = Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Version(version),
                key: key(k),
                range_end: Vec::new(),
            };
            let request = TxnRequest {
                compare: vec![compare],
                success: vec![RequestOp::Put(put(p, 7, 0))],
                failure: vec![RequestOp::DeleteRange(delete(other))],
            };
            let answer = store.txn(&request).expect("a txn");
            let holds = model.current().get(&key(k)).map_or(0, |kv| kv.version) == version;
            prop_assert_eq!(answer.succeeded, holds);
            let op = if holds { Op::Put(key(p), vec![7], 0) } else { Op::Delete(key(other)) };
            model.write(&[op]);
        }
        Action::Grant(id) => {
            let answer = store.lease_grant(id, 10);
            match model.leases.entry(id) {
                std::collections::btree_map::Entry::Occupied(_) => {
                    prop_assert_eq!(answer, Err(KvError::LeaseExists));
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    prop_assert!(answer.is_ok());
                    slot.insert(BTreeSet::new());
                }
            }
        }
        Action::Revoke(id) => {
            let answer = store.lease_revoke(id);
            match model.leases.remove(&id) {
                None => prop_assert_eq!(answer, Err(KvError::LeaseNotFound)),
                Some(keys) => {
                    prop_assert!(answer.is_ok());
                    let deletes: Vec<Op> = keys.into_iter().map(Op::Delete).collect();
                    model.write(&deletes);
                }
            }
        }
        Action::Compact(revision) => {
            let answer = store.compact(revision);
            if revision <= model.compacted {
                prop_assert_eq!(answer, Err(KvError::Compacted));
            } else if revision > model.revision() {
                prop_assert_eq!(answer, Err(KvError::FutureRevision));
            } else {
                prop_assert!(answer.is_ok());
                model.compacted = revision;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_store_answers_as_the_model_at_every_revision(
        actions in proptest::collection::vec(action(), 1..60),
        damage in any::<prop::sample::Index>(),
    ) {
        let mut store = Store::new();
        let mut model = Model::new();
        for action in &actions {
            run(&mut store, &mut model, action)?;
            prop_assert_eq!(store.revision(), model.revision());
        }
        for revision in 1..=model.revision() {
            let answer = store.range(&common::all_keys(revision));
            if revision < model.compacted {
                prop_assert_eq!(answer, Err(KvError::Compacted));
                continue;
            }
            let expected: Vec<KeyValue> =
                model.revisions[usize::try_from(revision).unwrap()].values().cloned().collect();
            prop_assert_eq!(answer.expect("a readable revision").kvs, expected, "at {}", revision);
        }
        prop_assert_eq!(store.range(&common::all_keys(model.revision() + 1)), Err(KvError::FutureRevision));
        // The events after the compacted revision rebuild the keyspace from there.
        let from = model.compacted.max(1);
        let mut rebuilt = model.revisions[usize::try_from(from).unwrap()].clone();
        for (revision, events) in store.events_after(from, usize::MAX).expect("not compacted") {
            for event in events {
                prop_assert_eq!(event.kv.mod_revision, revision);
                match event.kind {
                    EventKind::Put => rebuilt.insert(event.kv.key.clone(), event.kv.clone()),
                    EventKind::Delete => rebuilt.remove(&event.kv.key),
                };
            }
        }
        prop_assert_eq!(&rebuilt, model.current());
        let leases: BTreeMap<i64, BTreeSet<Vec<u8>>> =
            store.leases().expect("leases").into_iter().map(|(id, l)| (id, l.keys)).collect();
        prop_assert_eq!(leases, model.leases.clone());
        // A store rebuilt from its snapshot answers alike; a damaged snapshot is refused.
        let mut snapshot = store.snapshot().expect("a snapshot");
        let copy = Store::restore_in_memory(&mut snapshot.as_slice()).expect("restores");
        prop_assert_eq!(common::state(&copy), common::state(&store));
        let at = damage.index(snapshot.len());
        snapshot[at] ^= 0x10;
        prop_assert!(Store::restore_in_memory(&mut snapshot.as_slice()).is_err());
        let cut = damage.index(snapshot.len());
        prop_assert!(Store::restore_in_memory(&mut &snapshot[..cut]).is_err());
    }
}
