//! The KV, Lease, Maintenance and Cluster services through the real `etcd-client`, against
//! the tonic server on 127.0.0.1 over a store in memory.

mod support;

use etcd_client::{
    AlarmAction, AlarmType, Compare, CompareOp, DeleteOptions, GetOptions, LeaseTimeToLiveOptions,
    PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use support::{Harness, bounded, status_of};
use tonic::Code;

#[tokio::test]
async fn put_then_get_answers_the_value_and_revisions() {
    let mut h = Harness::start().await;
    let put = bounded(h.client.put("a", "1", None)).await.unwrap();
    let header = put.header().unwrap();
    assert_eq!((header.cluster_id(), header.member_id(), header.raft_term()), (7, 1, 3));
    assert_eq!(header.revision(), 2, "the first write makes revision 2");
    bounded(h.client.put("a", "2", None)).await.unwrap();
    let got = bounded(h.client.get("a", None)).await.unwrap();
    assert_eq!(got.header().unwrap().revision(), 3);
    let kv = &got.kvs()[0];
    assert_eq!((kv.key(), kv.value()), (&b"a"[..], &b"2"[..]));
    assert_eq!((kv.create_revision(), kv.mod_revision(), kv.version()), (2, 3, 2));
    let old = bounded(h.client.get("a", Some(GetOptions::new().with_revision(2)))).await.unwrap();
    assert_eq!(old.kvs()[0].value(), b"1", "a read at a past revision");
    h.stop().await;
}

#[tokio::test]
async fn prefix_limit_sort_and_count() {
    let mut h = Harness::start().await;
    for (key, value) in [("p/b", "2"), ("p/a", "3"), ("p/c", "1"), ("q", "0")] {
        bounded(h.client.put(key, value, None)).await.unwrap();
    }
    let all = bounded(h.client.get("p/", Some(GetOptions::new().with_prefix()))).await.unwrap();
    let keys: Vec<&[u8]> = all.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, [&b"p/a"[..], b"p/b", b"p/c"]);
    let options = GetOptions::new()
        .with_prefix()
        .with_limit(2)
        .with_sort(SortTarget::Value, SortOrder::Descend);
    let page = bounded(h.client.get("p/", Some(options))).await.unwrap();
    let values: Vec<&[u8]> = page.kvs().iter().map(|kv| kv.value()).collect();
    assert_eq!(values, [&b"3"[..], b"2"]);
    assert!(page.more());
    assert_eq!(page.count(), 3);
    let counted =
        bounded(h.client.get("p/", Some(GetOptions::new().with_prefix().with_count_only())))
            .await
            .unwrap();
    assert_eq!((counted.count(), counted.kvs().len()), (3, 0));
    h.stop().await;
}

#[tokio::test]
async fn delete_answers_the_previous_values() {
    let mut h = Harness::start().await;
    bounded(h.client.put("d/1", "x", None)).await.unwrap();
    bounded(h.client.put("d/2", "y", None)).await.unwrap();
    let options = DeleteOptions::new().with_prefix().with_prev_key();
    let deleted = bounded(h.client.delete("d/", Some(options))).await.unwrap();
    assert_eq!(deleted.deleted(), 2);
    let values: Vec<&[u8]> = deleted.prev_kvs().iter().map(|kv| kv.value()).collect();
    assert_eq!(values, [&b"x"[..], b"y"]);
    let put =
        bounded(h.client.put("d/1", "z", Some(PutOptions::new().with_prev_key()))).await.unwrap();
    assert!(put.prev_key().is_none(), "the key was deleted");
    h.stop().await;
}

#[tokio::test]
async fn txn_compare_and_swap() {
    let mut h = Harness::start().await;
    let create = Txn::new()
        .when([Compare::version("lock", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("lock", "me", None)])
        .or_else([TxnOp::get("lock", None)]);
    let first = bounded(h.client.txn(create.clone())).await.unwrap();
    assert!(first.succeeded());
    let second = bounded(h.client.txn(create)).await.unwrap();
    assert!(!second.succeeded());
    match &second.op_responses()[0] {
        TxnOpResponse::Get(get) => assert_eq!(get.kvs()[0].value(), b"me"),
        other => panic!("expected the failure branch's get, got {other:?}"),
    }
    h.stop().await;
}

#[tokio::test]
async fn txn_errors_are_etcds() {
    let mut h = Harness::start().await;
    let twice = Txn::new().and_then([TxnOp::put("k", "1", None), TxnOp::put("k", "2", None)]);
    let status = status_of(bounded(h.client.txn(twice)).await.unwrap_err());
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "etcdserver: duplicate key given in txn request");
    let many: Vec<TxnOp> = (0..129).map(|i| TxnOp::put(format!("k{i}"), "v", None)).collect();
    let status = status_of(bounded(h.client.txn(Txn::new().and_then(many))).await.unwrap_err());
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "etcdserver: too many operations in txn request")
    );
    let status = status_of(bounded(h.client.put("", "v", None)).await.unwrap_err());
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "etcdserver: key is not provided")
    );
    h.stop().await;
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_refused() {
    let mut h = Harness::start().await;
    let value = vec![b'v'; 1536 * 1024];
    let status = status_of(bounded(h.client.put("big", value, None)).await.unwrap_err());
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "etcdserver: request is too large")
    );
    h.stop().await;
}

#[tokio::test]
async fn a_read_below_the_compaction_is_out_of_range() {
    let mut h = Harness::start().await;
    for value in ["1", "2", "3"] {
        bounded(h.client.put("c", value, None)).await.unwrap();
    }
    bounded(h.client.compact(3, None)).await.unwrap();
    let status = status_of(
        bounded(h.client.get("c", Some(GetOptions::new().with_revision(2)))).await.unwrap_err(),
    );
    assert_eq!(status.code(), Code::OutOfRange);
    assert_eq!(status.message(), "etcdserver: mvcc: required revision has been compacted");
    let status = status_of(
        bounded(h.client.get("c", Some(GetOptions::new().with_revision(99)))).await.unwrap_err(),
    );
    assert_eq!(
        (status.code(), status.message()),
        (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision")
    );
    h.stop().await;
}

#[tokio::test]
async fn leases_grant_keep_alive_report_and_revoke_with_their_keys() {
    let mut h = Harness::start().await;
    let lease = bounded(h.client.lease_grant(30, None)).await.unwrap();
    let id = lease.id();
    assert_eq!(lease.ttl(), 30);
    bounded(h.client.put("l/1", "v", Some(PutOptions::new().with_lease(id)))).await.unwrap();
    // The client reads the first answer itself (and refuses a TTL of 0).
    let (mut keeper, mut responses) = bounded(h.client.lease_keep_alive(id)).await.unwrap();
    for _ in 0..2 {
        bounded(keeper.keep_alive()).await.unwrap();
        let renewed = bounded(responses.message()).await.unwrap().unwrap();
        assert_eq!((renewed.id(), renewed.ttl()), (id, 30));
    }
    let options = LeaseTimeToLiveOptions::new().with_keys();
    let alive = bounded(h.client.lease_time_to_live(id, Some(options))).await.unwrap();
    assert_eq!((alive.ttl(), alive.granted_ttl(), alive.keys()), (30, 30, &[b"l/1".to_vec()][..]));
    let listed = bounded(h.client.leases()).await.unwrap();
    assert_eq!(listed.leases().iter().map(|l| l.id()).collect::<Vec<_>>(), [id]);
    bounded(h.client.lease_revoke(id)).await.unwrap();
    let gone = bounded(h.client.get("l/1", None)).await.unwrap();
    assert!(gone.kvs().is_empty(), "revoking the lease deleted its key");
    let missing = bounded(h.client.lease_time_to_live(id, None)).await.unwrap();
    assert_eq!(missing.ttl(), -1, "etcd's answer for a lease that does not exist");
    // etcd answers a keep-alive of a missing lease with TTL 0, which the client turns into
    // its own error.
    let refused = bounded(h.client.lease_keep_alive(id)).await.unwrap_err();
    assert!(matches!(refused, etcd_client::Error::LeaseKeepAliveError(_)), "{refused}");
    let status = status_of(bounded(h.client.lease_revoke(id)).await.unwrap_err());
    assert_eq!(
        (status.code(), status.message()),
        (Code::NotFound, "etcdserver: requested lease not found")
    );
    h.stop().await;
}

#[tokio::test]
async fn status_and_members_come_from_the_backend() {
    let mut h = Harness::start().await;
    bounded(h.client.put("s", "1", None)).await.unwrap();
    let status = bounded(h.client.status()).await.unwrap();
    assert_eq!((status.version(), status.leader(), status.raft_term()), ("3.5.0", 1, 3));
    assert_eq!(status.header().unwrap().revision(), 2);
    let members = bounded(h.client.member_list()).await.unwrap();
    assert_eq!(members.members()[0].name(), "cairn-1");
    assert_eq!(members.members()[0].client_urls(), ["http://127.0.0.1:2379"]);
    let status =
        status_of(bounded(h.client.member_add(["http://x:2380"], None)).await.unwrap_err());
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(status.message().contains("cairn cluster"), "{}", status.message());
    h.stop().await;
}

#[tokio::test]
async fn hash_kv_is_etcds_and_alarms_are_empty() {
    let mut h = Harness::start().await;
    // The writes etcd 3.4.23 hashed to these values (`etcdctl endpoint hashkv`).
    bounded(h.client.put("a", "1", None)).await.unwrap();
    bounded(h.client.put("b", "2", None)).await.unwrap();
    bounded(h.client.put("a", "3", None)).await.unwrap();
    bounded(h.client.delete("b", None)).await.unwrap();
    let now = bounded(h.client.hash_kv(0)).await.unwrap();
    assert_eq!((now.hash(), now.compact_version()), (1_125_682_900, -1));
    assert_eq!(now.header().unwrap().revision(), 5);
    assert_eq!(bounded(h.client.hash_kv(3)).await.unwrap().hash(), 1_827_592_406);
    assert_eq!(bounded(h.client.hash()).await.unwrap().hash(), now.hash());
    bounded(h.client.compact(4, None)).await.unwrap();
    let compacted = bounded(h.client.hash_kv(5)).await.unwrap();
    assert_eq!((compacted.hash(), compacted.compact_version()), (1_468_967_122, 4));
    let alarms = bounded(h.client.alarm(AlarmAction::Get, AlarmType::None, None)).await.unwrap();
    assert!(alarms.alarms().is_empty());
    h.stop().await;
}
