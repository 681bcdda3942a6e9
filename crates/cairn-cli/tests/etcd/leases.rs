//! Leases and locks of the etcd API on three real nodes across a leader's death:
//!
//! - a lease kept alive through any live node outlives the coordination leader's SIGKILL and
//!   keeps its key; once its keep-alives stop, it expires (its key with it), and never sooner
//!   than its TTL after the last keep-alive it acknowledged;
//! - lock safety with fencing: a holder whose lease expires (a paused client: it stops
//!   renewing) loses the lock to a waiting contender across a leader change, and its write
//!   guarded by its lock key's create revision (the fencing token) is refused, while the new
//!   holder's succeeds.

use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, LockOptions, Txn, TxnOp, WatchOptions};

use crate::cluster::{Member, OPERATION, connect, leader, start, stop, wait_leader};

/// How long a lease takes to expire, a leader to be elected and more: the bound of the waits.
const EXPIRY: Duration = Duration::from_secs(30);

/// A client on every node's etcd API (etcd-client balances over them), each call bounded by
/// `timeout` (`None`: calls that wait, as a lock, are bounded by the test).
async fn client_of<'m>(
    members: impl IntoIterator<Item = &'m Member>,
    timeout: Option<Duration>,
) -> Client {
    let endpoints: Vec<&str> = members.into_iter().map(|m| m.etcd.as_str()).collect();
    let mut options = etcd_client::ConnectOptions::new().with_connect_timeout(OPERATION);
    if let Some(timeout) = timeout {
        options = options.with_timeout(timeout);
    }
    Client::connect(endpoints, Some(options)).await.expect("connects")
}

/// Renews lease `id` through the first live node that answers; the instant it was acknowledged.
async fn keep_alive(members: &[Member], id: i64) -> Option<Instant> {
    for member in members.iter().filter(|m| m.node.is_some()) {
        let Ok(mut client) = connect(&member.etcd).await else { continue };
        let renewed = async {
            let (mut keeper, mut answers) = client.lease_keep_alive(id).await?;
            keeper.keep_alive().await?;
            answers.message().await
        };
        if let Ok(Ok(Some(answer))) = tokio::time::timeout(OPERATION, renewed).await
            && answer.ttl() > 0
        {
            return Some(Instant::now());
        }
    }
    None
}

/// Whether `key` exists, by a linearizable read (tried again while the balanced client picks
/// a dead node or the cluster elects).
async fn exists(client: &mut Client, key: &str) -> bool {
    let deadline = Instant::now() + EXPIRY;
    loop {
        match client.get(key, None).await {
            Ok(got) => return !got.kvs().is_empty(),
            Err(error) => {
                assert!(Instant::now() < deadline, "no read answered: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Kills the coordination group's leader and waits until another one is elected.
async fn kill_leader(members: &mut [Member]) -> usize {
    let old = wait_leader(members).await;
    members[old].kill();
    let deadline = Instant::now() + EXPIRY;
    while Instant::now() < deadline {
        if leader(members).await.is_some_and(|new| new != old) {
            return old;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no new leader within {EXPIRY:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kept_lease_outlives_its_leader_and_expires_once_left() {
    let mut members = start();
    let mut client = client_of(&members, Some(OPERATION)).await;
    let ttl = 10;
    let lease = client.lease_grant(ttl, None).await.expect("a lease").id();
    let options = etcd_client::PutOptions::new().with_lease(lease);
    client.put("workers/a", "up", Some(options)).await.expect("a put with the lease");

    // Renewed every second for three TTLs, through a leader's death.
    let mut renewed = keep_alive(&members, lease).await.expect("renewed");
    let old = kill_leader(&mut members).await;
    let until = Instant::now() + Duration::from_secs(2 * u64::try_from(ttl).expect("small"));
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(at) = keep_alive(&members, lease).await {
            assert!(at - renewed < Duration::from_secs(8), "no keep-alive for most of a TTL");
            renewed = at;
        }
        assert!(exists(&mut client, "workers/a").await, "a kept lease lost its key");
    }
    members[old].restart();

    // Left alone, it expires: not before its TTL after the last renewal, and then soon.
    let deadline = Instant::now() + EXPIRY;
    while exists(&mut client, "workers/a").await {
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lived = renewed.elapsed();
    assert!(lived >= Duration::from_secs(9), "expired {lived:?} after its last renewal");
    stop(members);
}

/// The create revision of `key` (0: gone).
async fn create_revision(client: &mut Client, key: &[u8]) -> i64 {
    let got = client.get(key, None).await.expect("a read");
    got.kvs().first().map_or(0, etcd_client::KeyValue::create_revision)
}

/// Puts `state/jobs` = `value` only while `key` is the lock key of `token` (outside the
/// lock's prefix `jobs/`: a key there would queue as a contender).
async fn guarded_write(client: &mut Client, key: &[u8], token: i64, value: &str) -> bool {
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, token)])
        .and_then([TxnOp::put("state/jobs", value, None)]);
    client.txn(txn).await.expect("a txn").succeeded()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_whose_lease_expired_cannot_write_past_the_fencing_token() {
    let mut members = start();
    let mut first = client_of(&members, Some(OPERATION)).await;
    // The waiter talks to a follower, which outlives the leader's death: its call waits
    // through the election rather than failing with its node.
    let leading = wait_leader(&members).await;
    let follower = members.iter().enumerate().find(|(i, _)| *i != leading).expect("a follower");
    let mut second = client_of(std::slice::from_ref(follower.1), None).await;
    let short = first.lease_grant(2, None).await.expect("a lease").id();
    let held = first.lock("jobs", Some(LockOptions::new().with_lease(short))).await;
    let key_a = held.expect("the first lock").key().to_vec();
    let token_a = create_revision(&mut first, &key_a).await;
    assert!(guarded_write(&mut first, &key_a, token_a, "a").await);

    // The first holder stops renewing (a pause), the leader dies, the second waits its turn.
    let long = second.lease_grant(30, None).await.expect("a lease").id();
    // The leader dies once the waiter queued (its key written): a write in flight when the
    // leader dies has an unknown outcome, and the lock call fails, as etcd's does.
    let queue = WatchOptions::new().with_prefix();
    let mut queued = first.watch("jobs/", Some(queue)).await.expect("a watch");
    let waiting = tokio::spawn(async move {
        let options = LockOptions::new().with_lease(long);
        let locked = tokio::time::timeout(EXPIRY, second.lock("jobs", Some(options))).await;
        (locked.expect("the lock within the expiry").expect("the second lock"), second)
    });
    let put = async {
        while let Some(answer) = queued.message().await.expect("a watch answer") {
            if !answer.events().is_empty() {
                return;
            }
        }
        panic!("the watch ended");
    };
    tokio::time::timeout(OPERATION, put).await.expect("the waiter queued in time");
    kill_leader(&mut members).await;
    let waited = waiting.await;
    let (locked, mut second) = waited.expect("the waiter");
    let key_b = locked.key().to_vec();
    let token_b = create_revision(&mut second, &key_b).await;
    assert!(token_b > token_a, "fencing tokens grow: {token_a} then {token_b}");

    assert!(guarded_write(&mut second, &key_b, token_b, "b").await);
    // The first holder comes back from its pause, on the nodes that live (a client balanced
    // over the dead one too would fail some calls to connect).
    let mut first = client_of(members.iter().filter(|m| m.node.is_some()), Some(OPERATION)).await;
    assert!(!guarded_write(&mut first, &key_a, token_a, "a again").await, "a stale holder wrote");
    let state = first.get("state/jobs", None).await.expect("a read");
    assert_eq!(state.kvs()[0].value(), b"b");
    stop(members);
}
