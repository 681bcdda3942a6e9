//! The command encoding: every command decodes to itself, a cut or damaged one is an error
//! (never a panic or a large allocation), and nesting is bounded.

use cairn_coord::{
    AlarmKind, Answer, CodecError, Command, Compare, CompareResult, CompareTarget,
    DeleteRangeRequest, DeleteRangeResponse, Forward, KeyValue, KvError, PutRequest, PutResponse,
    RangeRequest, RangeResponse, Refusal, Reply, RequestOp, ResponseOp, SortOrder, SortTarget,
    TXN_DEPTH_MAX, TxnRequest, TxnResponse,
};
use proptest::prelude::*;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..6)
}

fn put() -> impl Strategy<Value = PutRequest> {
    (bytes(), bytes(), any::<i64>(), any::<[bool; 3]>()).prop_map(|(key, value, lease, f)| {
        PutRequest { key, value, lease, prev_kv: f[0], ignore_value: f[1], ignore_lease: f[2] }
    })
}

fn delete() -> impl Strategy<Value = DeleteRangeRequest> {
    (bytes(), bytes(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn range() -> impl Strategy<Value = RangeRequest> {
    let order =
        prop_oneof![Just(SortOrder::None), Just(SortOrder::Ascend), Just(SortOrder::Descend)];
    let target = prop_oneof![
        Just(SortTarget::Key),
        Just(SortTarget::Version),
        Just(SortTarget::Create),
        Just(SortTarget::Mod),
        Just(SortTarget::Value)
    ];
    (bytes(), bytes(), any::<[i64; 6]>(), order, target, any::<[bool; 2]>()).prop_map(
        |(key, range_end, n, sort_order, sort_target, f)| RangeRequest {
            key,
            range_end,
            limit: n[0],
            revision: n[1],
            sort_order,
            sort_target,
            keys_only: f[0],
            count_only: f[1],
            min_mod_revision: n[2],
            max_mod_revision: n[3],
            min_create_revision: n[4],
            max_create_revision: n[5],
        },
    )
}

fn compare() -> impl Strategy<Value = Compare> {
    let result = prop_oneof![
        Just(CompareResult::Equal),
        Just(CompareResult::Greater),
        Just(CompareResult::Less),
        Just(CompareResult::NotEqual)
    ];
    let target = prop_oneof![
        any::<i64>().prop_map(CompareTarget::Version),
        any::<i64>().prop_map(CompareTarget::Create),
        any::<i64>().prop_map(CompareTarget::Mod),
        bytes().prop_map(CompareTarget::Value),
        any::<i64>().prop_map(CompareTarget::Lease),
    ];
    (result, target, bytes(), bytes()).prop_map(|(result, target, key, range_end)| Compare {
        result,
        target,
        key,
        range_end,
    })
}

fn txn() -> impl Strategy<Value = TxnRequest> {
    let leaf = prop_oneof![
        range().prop_map(RequestOp::Range),
        put().prop_map(RequestOp::Put),
        delete().prop_map(RequestOp::DeleteRange),
    ];
    let ops = leaf.prop_recursive(3, 24, 4, |inner| {
        let txn = (
            prop::collection::vec(compare(), 0..3),
            prop::collection::vec(inner.clone(), 0..3),
            prop::collection::vec(inner, 0..3),
        );
        prop_oneof![
            txn.prop_map(|(compare, success, failure)| {
                RequestOp::Txn(TxnRequest { compare, success, failure })
            }),
            range().prop_map(RequestOp::Range),
        ]
    });
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(ops.clone(), 0..4),
        prop::collection::vec(ops, 0..4),
    )
        .prop_map(|(compare, success, failure)| TxnRequest { compare, success, failure })
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        put().prop_map(Command::Put),
        delete().prop_map(Command::DeleteRange),
        txn().prop_map(Command::Txn),
        any::<i64>().prop_map(|revision| Command::Compact { revision }),
        any::<(i64, i64)>().prop_map(|(id, ttl)| Command::LeaseGrant { id, ttl }),
        any::<i64>().prop_map(|id| Command::LeaseRevoke { id }),
        prop::collection::vec(any::<(i64, i64)>(), 0..4)
            .prop_map(|remaining| Command::LeaseCheckpoint { remaining }),
        (
            any::<bool>(),
            any::<u64>(),
            prop_oneof![Just(AlarmKind::NoSpace), Just(AlarmKind::Corrupt)]
        )
            .prop_map(|(activate, member, alarm)| Command::Alarm {
                activate,
                member,
                alarm
            }),
        any::<u64>().prop_map(|member| Command::Defragment { member }),
    ]
}

fn kv() -> impl Strategy<Value = KeyValue> {
    (bytes(), bytes(), any::<[i64; 4]>()).prop_map(|(key, value, n)| KeyValue {
        key,
        create_revision: n[0],
        mod_revision: n[1],
        version: n[2],
        value,
        lease: n[3],
    })
}

fn kvs() -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec(kv(), 0..3)
}

fn txn_response() -> impl Strategy<Value = TxnResponse> {
    let leaf = prop_oneof![
        (kvs(), any::<bool>(), any::<i64>())
            .prop_map(|(kvs, more, count)| ResponseOp::Range(RangeResponse { kvs, more, count })),
        prop::option::of(kv()).prop_map(|prev_kv| ResponseOp::Put(PutResponse { prev_kv })),
        (any::<i64>(), kvs()).prop_map(|(deleted, prev_kvs)| {
            ResponseOp::DeleteRange(DeleteRangeResponse { deleted, prev_kvs })
        }),
    ];
    let op = leaf.prop_recursive(3, 16, 3, |inner| {
        (any::<bool>(), prop::collection::vec(inner, 0..3)).prop_map(|(succeeded, responses)| {
            ResponseOp::Txn(TxnResponse { succeeded, responses })
        })
    });
    (any::<bool>(), prop::collection::vec(op, 0..4))
        .prop_map(|(succeeded, responses)| TxnResponse { succeeded, responses })
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        prop::option::of(kv()).prop_map(|prev_kv| Reply::Put(PutResponse { prev_kv })),
        (any::<i64>(), kvs()).prop_map(|(deleted, prev_kvs)| {
            Reply::DeleteRange(DeleteRangeResponse { deleted, prev_kvs })
        }),
        txn_response().prop_map(Reply::Txn),
        Just(Reply::Done),
        any::<(i64, i64)>().prop_map(|(id, ttl)| Reply::LeaseGranted { id, ttl }),
    ]
}

fn answer() -> impl Strategy<Value = Answer> {
    let errors =
        [KvError::Compacted, KvError::DuplicateKey, KvError::LeaseNotFound, KvError::BadTtl];
    let refusal = prop_oneof![
        prop::sample::select(errors.to_vec()).prop_map(Refusal::Kv),
        prop::option::of(any::<u64>()).prop_map(Refusal::NotLeader),
        "[a-z ]{0,12}".prop_map(Refusal::Unavailable),
    ];
    prop_oneof![
        (reply(), any::<i64>(), any::<(u64, u64)>())
            .prop_map(|(reply, revision, applied)| Answer::Written { reply, revision, applied }),
        prop::option::of(any::<(u64, u64)>()).prop_map(Answer::ReadIndex),
        any::<(i64, i64)>().prop_map(|(remaining, granted)| Answer::Lease { remaining, granted }),
        refusal.prop_map(Answer::Refused),
    ]
}

fn forward() -> impl Strategy<Value = Forward> {
    prop_oneof![
        command().prop_map(Forward::Write),
        Just(Forward::ReadIndex),
        any::<i64>().prop_map(|id| Forward::KeepAlive { id }),
        any::<i64>().prop_map(|id| Forward::TimeToLive { id }),
    ]
}

proptest! {
    #[test]
    fn forwarded_requests_and_answers_decode_to_themselves(
        forward in forward(),
        answer in answer(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = forward.encode().expect("encodes");
        prop_assert_eq!(Forward::decode(&bytes), Ok(forward));
        let bytes = answer.encode().expect("encodes");
        prop_assert_eq!(Answer::decode(&bytes), Ok(answer));
        prop_assert!(Answer::decode(&bytes[..cut.index(bytes.len())]).is_err());
    }

    #[test]
    fn every_command_decodes_to_itself(command in command()) {
        let bytes = command.encode().expect("encodes");
        prop_assert_eq!(Command::decode(&bytes), Ok(command));
    }

    #[test]
    fn a_cut_command_is_an_error(command in command(), cut in any::<prop::sample::Index>()) {
        let bytes = command.encode().expect("encodes");
        let cut = cut.index(bytes.len());
        prop_assert!(Command::decode(&bytes[..cut]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert_eq!(Command::decode(&longer), Err(CodecError::Trailing(1)));
    }

    #[test]
    fn damaged_bytes_never_panic(command in command(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = command.encode().expect("encodes");
        let at = at.index(bytes.len());
        bytes[at] = byte;
        let _ = Command::decode(&bytes);
    }
}

#[test]
fn a_huge_count_is_refused_before_allocating() {
    let bytes = [1, 7, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(Command::decode(&bytes), Err(CodecError::Truncated));
}

#[test]
fn nesting_is_bounded() {
    let mut txn = TxnRequest::default();
    for _ in 0..TXN_DEPTH_MAX {
        txn = TxnRequest { success: vec![RequestOp::Txn(txn)], ..TxnRequest::default() };
    }
    let bytes = Command::Txn(txn.clone()).encode().expect("encodes");
    assert_eq!(Command::decode(&bytes), Err(CodecError::TooDeep));
    let shallower = match txn.success.pop() {
        Some(RequestOp::Txn(inner)) => inner,
        other => panic!("not a txn: {other:?}"),
    };
    let bytes = Command::Txn(shallower.clone()).encode().expect("encodes");
    assert_eq!(Command::decode(&bytes), Ok(Command::Txn(shallower)));
}

#[test]
fn unknown_versions_and_kinds_are_refused() {
    assert_eq!(Command::decode(&[2, 4]), Err(CodecError::UnknownVersion(2)));
    assert_eq!(Command::decode(&[1, 99]), Err(CodecError::Unknown { what: "command", value: 99 }));
    assert_eq!(Command::decode(&[]), Err(CodecError::Truncated));
}
