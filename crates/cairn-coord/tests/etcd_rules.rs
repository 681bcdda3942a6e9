//! etcd's rules one by one: range ends, limits and sorting, transactions (their own writes
//! seen, the duplicate-key rule, nested compares), `ignore_value` and `ignore_lease`, the
//! revision taken only by writes, and what a NOSPACE alarm refuses.

use cairn_coord::{
    AlarmKind, Command, Compare, CompareResult, CompareTarget, DeleteRangeRequest, KvError,
    PutRequest, RangeRequest, RequestOp, ResponseOp, SortOrder, SortTarget, Store, TxnRequest,
};

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest { key: key.into(), value: value.into(), ..PutRequest::default() }
}

fn range(key: &str, end: &[u8]) -> RangeRequest {
    RangeRequest { key: key.into(), range_end: end.to_vec(), ..RangeRequest::default() }
}

fn keys(store: &Store, request: &RangeRequest) -> Vec<String> {
    let answer = store.range(request).expect("a range");
    answer.kvs.iter().map(|kv| String::from_utf8(kv.key.clone()).expect("utf-8")).collect()
}

fn filled() -> Store {
    let mut store = Store::new();
    for (k, v) in [("a", "3"), ("b", "1"), ("b/x", "2"), ("c", "0")] {
        store.put(&put(k, v)).expect("a put");
    }
    store
}

#[test]
fn range_ends_name_a_key_a_prefix_or_everything_from_a_key() {
    let store = filled();
    assert_eq!(keys(&store, &range("b", b"")), ["b"]);
    assert_eq!(keys(&store, &range("b", b"c")), ["b", "b/x"]);
    assert_eq!(keys(&store, &range("b", &[0])), ["b", "b/x", "c"]);
    assert_eq!(
        keys(&store, &RangeRequest { key: vec![0], range_end: vec![0], ..range("", b"") }).len(),
        4
    );
    assert!(keys(&store, &range("c", b"b")).is_empty(), "an end before the start is empty");
}

#[test]
fn limits_count_everything_and_sorting_orders_by_the_target() {
    let store = filled();
    let limited = store.range(&RangeRequest { limit: 2, ..range("a", &[0]) }).expect("a range");
    assert_eq!((limited.kvs.len(), limited.count, limited.more), (2, 4, true));
    let by_value = RangeRequest {
        sort_order: SortOrder::Descend,
        sort_target: SortTarget::Value,
        ..range("a", &[0])
    };
    assert_eq!(keys(&store, &by_value), ["a", "b/x", "b", "c"]);
    let counted =
        store.range(&RangeRequest { count_only: true, ..range("a", &[0]) }).expect("a range");
    assert_eq!((counted.kvs.len(), counted.count), (0, 4));
    let recent = RangeRequest { min_mod_revision: 4, ..range("a", &[0]) };
    assert_eq!(keys(&store, &recent), ["b/x", "c"]);
}

#[test]
fn a_txn_takes_one_revision_and_sees_its_own_writes() {
    let mut store = filled();
    let before = store.revision();
    let request = TxnRequest {
        compare: Vec::new(),
        success: vec![
            RequestOp::Put(put("n", "1")),
            RequestOp::Range(range("n", b"")),
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: "a".into(),
                ..DeleteRangeRequest::default()
            }),
        ],
        failure: Vec::new(),
    };
    let answer = store.txn(&request).expect("a txn");
    assert_eq!(store.revision(), before + 1);
    let ResponseOp::Range(seen) = &answer.responses[1] else { panic!("a range answer") };
    assert_eq!(seen.kvs[0].mod_revision, before + 1, "the txn's own put");
    // A txn whose branch writes nothing takes no revision.
    let reading =
        TxnRequest { success: vec![RequestOp::Range(range("n", b""))], ..TxnRequest::default() };
    store.txn(&reading).expect("a txn");
    assert_eq!(store.revision(), before + 1);
}

#[test]
fn a_key_changed_twice_on_one_path_is_a_duplicate() {
    let mut store = filled();
    let twice = TxnRequest {
        success: vec![RequestOp::Put(put("k", "1")), RequestOp::Put(put("k", "2"))],
        ..TxnRequest::default()
    };
    assert_eq!(store.txn(&twice), Err(KvError::DuplicateKey));
    let in_deleted = TxnRequest {
        success: vec![
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: "a".into(),
                range_end: "z".into(),
                prev_kv: false,
            }),
            RequestOp::Put(put("k", "1")),
        ],
        ..TxnRequest::default()
    };
    assert_eq!(store.txn(&in_deleted), Err(KvError::DuplicateKey));
    // The two branches of a nested txn may put the same key: only one runs.
    let nested = TxnRequest {
        success: vec![RequestOp::Txn(TxnRequest {
            compare: Vec::new(),
            success: vec![RequestOp::Put(put("k", "1"))],
            failure: vec![RequestOp::Put(put("k", "2"))],
        })],
        ..TxnRequest::default()
    };
    assert!(store.txn(&nested).is_ok());
    let nested_and_outer = TxnRequest {
        success: vec![
            RequestOp::Put(put("k", "0")),
            RequestOp::Txn(TxnRequest {
                success: vec![RequestOp::Put(put("k", "1"))],
                ..TxnRequest::default()
            }),
        ],
        ..TxnRequest::default()
    };
    assert_eq!(store.txn(&nested_and_outer), Err(KvError::DuplicateKey));
    // The two branches of the outer txn are separate paths.
    let branches = TxnRequest {
        success: vec![RequestOp::Put(put("k", "1"))],
        failure: vec![RequestOp::Put(put("k", "2"))],
        ..TxnRequest::default()
    };
    assert!(store.txn(&branches).is_ok());
}

#[test]
fn nested_compares_are_evaluated_before_any_op_runs() {
    let mut store = filled();
    let absent = Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Version(0),
        key: "fresh".into(),
        range_end: Vec::new(),
    };
    let request = TxnRequest {
        success: vec![
            RequestOp::Put(put("fresh", "1")),
            RequestOp::Txn(TxnRequest {
                compare: vec![absent],
                success: vec![RequestOp::Put(put("seen-absent", "1"))],
                failure: Vec::new(),
            }),
        ],
        ..TxnRequest::default()
    };
    let answer = store.txn(&request).expect("a txn");
    let ResponseOp::Txn(inner) = &answer.responses[1] else { panic!("a txn answer") };
    assert!(inner.succeeded, "compared against the state before the txn, as etcd does");
}

#[test]
fn compares_over_a_range_hold_for_every_key_and_a_missing_key_is_version_zero() {
    let txn = |compare: Compare| {
        let mut store = filled();
        store
            .txn(&TxnRequest { compare: vec![compare], ..TxnRequest::default() })
            .expect("a txn")
            .succeeded
    };
    let created_after = |revision| Compare {
        result: CompareResult::Greater,
        target: CompareTarget::Create(revision),
        key: "b".into(),
        range_end: "c".into(),
    };
    assert!(txn(created_after(2)), "b (3) and b/x (4) both");
    assert!(!txn(created_after(3)), "not b");
    let missing = Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Version(0),
        key: "nope".into(),
        range_end: Vec::new(),
    };
    assert!(txn(missing));
    let value_of_missing = Compare {
        result: CompareResult::NotEqual,
        target: CompareTarget::Value(b"x".to_vec()),
        key: "nope".into(),
        range_end: Vec::new(),
    };
    assert!(!txn(value_of_missing), "a missing key's value compares with nothing");
}

#[test]
fn ignore_value_and_ignore_lease_keep_the_key_s_own() {
    let mut store = Store::new();
    store.lease_grant(7, 30).expect("a lease");
    store.put(&PutRequest { lease: 7, ..put("k", "v") }).expect("a put");
    let keep = PutRequest { ignore_value: true, ignore_lease: true, ..put("k", "") };
    store.put(&keep).expect("a put");
    let kv = &store.range(&range("k", b"")).expect("a range").kvs[0];
    assert_eq!((kv.value.as_slice(), kv.lease, kv.version), (&b"v"[..], 7, 2));
    let missing = PutRequest { ignore_value: true, ..put("other", "") };
    assert_eq!(store.put(&missing), Err(KvError::KeyNotFound));
    assert_eq!(store.put(&PutRequest { lease: 9, ..put("k", "v") }), Err(KvError::LeaseNotFound));
    store.lease_revoke(7).expect("revoked");
    assert!(
        store.range(&range("k", b"")).expect("a range").kvs.is_empty(),
        "the key went with its lease"
    );
}

#[test]
fn events_page_by_whole_revisions() {
    let mut store = filled();
    let both = TxnRequest {
        success: vec![RequestOp::Put(put("x", "1")), RequestOp::Put(put("y", "1"))],
        ..TxnRequest::default()
    };
    store.txn(&both).expect("a txn");
    let page = store.events_after(4, 2).expect("events");
    let shape: Vec<(i64, usize)> = page.iter().map(|(r, events)| (*r, events.len())).collect();
    assert_eq!(shape, [(5, 1), (6, 2)]);
    assert_eq!(store.events_after(1, 1).expect("events")[0].0, 2, "the next page starts after");
    assert!(store.events_after(6, 10).expect("events").is_empty());
}

#[test]
fn a_nospace_alarm_refuses_what_grows_the_store_until_every_member_clears_it() {
    let mut store = filled();
    let alarm = |activate, member| Command::Alarm { activate, member, alarm: AlarmKind::NoSpace };
    store.apply(&alarm(true, 7)).expect("raised");
    store.apply(&alarm(true, 9)).expect("raised");
    assert_eq!(store.alarms().expect("alarms"), [(7, AlarmKind::NoSpace), (9, AlarmKind::NoSpace)]);
    let revision = store.revision();

    // Puts, lease grants and txns with a put on either branch are refused, changing nothing.
    assert_eq!(store.put(&put("d", "1")), Err(KvError::NoSpace));
    assert_eq!(store.apply(&Command::LeaseGrant { id: 1, ttl: 10 }), Err(KvError::NoSpace));
    let delete_a =
        RequestOp::DeleteRange(DeleteRangeRequest { key: "a".into(), ..Default::default() });
    let growing = TxnRequest {
        compare: Vec::new(),
        success: vec![delete_a.clone()],
        failure: vec![RequestOp::Put(put("d", "1"))],
    };
    assert_eq!(store.txn(&growing), Err(KvError::NoSpace));
    assert_eq!(store.revision(), revision);

    // Reads, deletes, txns without a put and compaction go on.
    assert_eq!(keys(&store, &range("a", b"")), ["a"]);
    let shrinking =
        TxnRequest { compare: Vec::new(), success: vec![delete_a], failure: Vec::new() };
    assert!(store.txn(&shrinking).expect("a txn without a put").succeeded);
    let delete = DeleteRangeRequest { key: "b".into(), ..DeleteRangeRequest::default() };
    assert_eq!(store.delete_range(&delete).expect("a delete").deleted, 1);
    store.compact(store.revision()).expect("a compaction");

    // Cleared by one member, the other's alarm still refuses; cleared by both, puts go on.
    store.apply(&alarm(false, 7)).expect("cleared");
    assert_eq!(store.put(&put("d", "1")), Err(KvError::NoSpace));
    store.apply(&alarm(false, 9)).expect("cleared");
    assert_eq!(store.alarms().expect("alarms"), []);
    store.put(&put("d", "1")).expect("a put once cleared");
}
