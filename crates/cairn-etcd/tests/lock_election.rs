//! The Lock and Election services through the real `etcd-client`, against the tonic server on
//! 127.0.0.1 over a store in memory: contenders serialize, the fencing token grows, a
//! cancelled waiter leaves no key, leadership passes on resign, Observe sees every change.

mod support;

use cairn_etcd::EtcdConfig;
use etcd_client::{
    Client, EventType, GetOptions, LeaderKey, LockOptions, ProclaimOptions, ResignOptions,
    WatchOptions, WatchStream,
};
use support::{Harness, bounded, status_of};
use tokio::task::JoinHandle;
use tonic::Code;

async fn lease(client: &mut Client) -> i64 {
    bounded(client.lease_grant(60, None)).await.expect("lease grant").id()
}

/// The key's creation revision: the lock's fencing token.
async fn token(client: &mut Client, key: &[u8]) -> i64 {
    let got = bounded(client.get(key, None)).await.expect("get");
    got.kvs().first().expect("the lock key exists").create_revision()
}

/// A Lock of `name` with `lease` on a client of its own, running until it answers; answers
/// the key and the header revision.
fn lock_in_background(client: &Client, name: &str, lease: i64) -> JoinHandle<(Vec<u8>, i64)> {
    let mut client = client.clone();
    let name = name.to_owned();
    tokio::spawn(async move {
        let options = LockOptions::new().with_lease(lease);
        let locked = client.lock(name, Some(options)).await.expect("lock");
        (locked.key().to_vec(), locked.header().expect("a header").revision())
    })
}

/// A watch of every key under `prefix` from now on.
async fn watch_prefix(client: &mut Client, prefix: &str) -> WatchStream {
    let options = WatchOptions::new().with_prefix();
    let mut stream = bounded(client.watch(prefix, Some(options))).await.expect("watch");
    let created = bounded(stream.message()).await.expect("the watch").expect("created");
    assert!(created.created());
    stream
}

/// Waits for the next event under the watched prefix; answers its kind and key.
async fn next_event(stream: &mut WatchStream) -> (EventType, Vec<u8>) {
    loop {
        let response = bounded(stream.message()).await.expect("the watch").expect("a response");
        if let Some(event) = response.events().first() {
            return (event.event_type(), event.kv().expect("a key").key().to_vec());
        }
    }
}

#[tokio::test]
async fn contenders_serialize_and_the_fencing_token_grows() {
    let mut h = Harness::start().await;
    let (first, second) = (lease(&mut h.client).await, lease(&mut h.client).await);
    let held =
        bounded(h.client.lock("job", Some(LockOptions::new().with_lease(first)))).await.unwrap();
    assert_eq!(held.key(), format!("job/{first:x}").as_bytes(), "etcd's key: the lease in hex");
    let first_token = token(&mut h.client, held.key()).await;
    let mut events = watch_prefix(&mut h.client, "job/").await;
    let waiter = lock_in_background(&h.client, "job", second);
    let (kind, queued) = next_event(&mut events).await;
    assert_eq!((kind, queued.as_slice()), (EventType::Put, format!("job/{second:x}").as_bytes()));
    assert!(!waiter.is_finished(), "the second contender waits");
    let unlocked = bounded(h.client.unlock(held.key())).await.unwrap();
    let unlock_revision = unlocked.header().unwrap().revision();
    let (key, answered_at) = bounded(waiter).await.unwrap();
    assert_eq!(key, queued);
    assert!(answered_at >= unlock_revision, "locked at {answered_at}, before the unlock");
    let second_token = token(&mut h.client, &key).await;
    assert!(second_token > first_token, "fencing tokens {first_token} then {second_token}");
    let missing = bounded(h.client.get("job/", Some(GetOptions::new().with_prefix()))).await;
    assert_eq!(missing.unwrap().count(), 1, "only the holder's key is left");
    h.stop().await;
}

#[tokio::test]
async fn a_revoked_lease_releases_the_lock() {
    let mut h = Harness::start().await;
    let (first, second) = (lease(&mut h.client).await, lease(&mut h.client).await);
    let held =
        bounded(h.client.lock("r", Some(LockOptions::new().with_lease(first)))).await.unwrap();
    let mut events = watch_prefix(&mut h.client, "r/").await;
    let waiter = lock_in_background(&h.client, "r", second);
    next_event(&mut events).await; // the waiter's key
    let revoked = bounded(h.client.lease_revoke(first)).await.unwrap();
    let (key, answered_at) = bounded(waiter).await.unwrap();
    assert!(answered_at >= revoked.header().unwrap().revision());
    assert_ne!(key, held.key());
    h.stop().await;
}

#[tokio::test]
async fn a_cancelled_waiter_leaves_no_key() {
    let mut h = Harness::start().await;
    let (first, second) = (lease(&mut h.client).await, lease(&mut h.client).await);
    let held =
        bounded(h.client.lock("c", Some(LockOptions::new().with_lease(first)))).await.unwrap();
    let mut events = watch_prefix(&mut h.client, "c/").await;
    let waiter = lock_in_background(&h.client, "c", second);
    let (_, queued) = next_event(&mut events).await;
    waiter.abort(); // drops the call: the client resets the stream
    let (kind, key) = next_event(&mut events).await;
    assert_eq!((kind, key), (EventType::Delete, queued), "the waiter's key was deleted");
    let left = bounded(h.client.get("c/", Some(GetOptions::new().with_prefix()))).await.unwrap();
    let keys: Vec<&[u8]> = left.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, [held.key()]);
    h.stop().await;
}

#[tokio::test]
async fn lock_errors_are_etcds() {
    let mut h = Harness::start().await;
    let missing = LockOptions::new().with_lease(0x1234);
    let status = status_of(bounded(h.client.lock("x", Some(missing))).await.unwrap_err());
    assert_eq!(
        (status.code(), status.message()),
        (Code::NotFound, "etcdserver: requested lease not found")
    );
    let status = status_of(bounded(h.client.unlock("")).await.unwrap_err());
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "etcdserver: key is not provided")
    );
    h.stop().await;
}

/// The next value Observe reports.
async fn observed(stream: &mut etcd_client::ObserveStream) -> (Vec<u8>, Vec<u8>) {
    let response = bounded(stream.message()).await.expect("observe").expect("a leader");
    let kv = response.kv().expect("the leader's key");
    (kv.key().to_vec(), kv.value().to_vec())
}

fn leader_options(leader: &LeaderKey) -> (ProclaimOptions, ResignOptions) {
    (
        ProclaimOptions::new().with_leader(leader.clone()),
        ResignOptions::new().with_leader(leader.clone()),
    )
}

#[tokio::test]
async fn campaign_proclaim_observe_and_resign_hand_leadership_on() {
    let mut h = Harness::start().await;
    let (first, second) = (lease(&mut h.client).await, lease(&mut h.client).await);
    let won = bounded(h.client.campaign("e", "a1", first)).await.unwrap();
    let leader = won.leader().expect("a leader key").clone();
    assert_eq!((leader.name(), leader.lease()), (&b"e"[..], first));
    assert_eq!(leader.rev(), token(&mut h.client, leader.key()).await);
    let mut observe = bounded(h.client.observe("e")).await.unwrap();
    assert_eq!(observed(&mut observe).await, (leader.key().to_vec(), b"a1".to_vec()));
    let (proclaim, resign) = leader_options(&leader);
    bounded(h.client.proclaim("a2", Some(proclaim.clone()))).await.unwrap();
    assert_eq!(observed(&mut observe).await.1, b"a2");
    let mut events = watch_prefix(&mut h.client, "e/").await;
    let mut candidate = h.client.clone();
    let waiting = tokio::spawn(async move { candidate.campaign("e", "b1", second).await });
    next_event(&mut events).await; // the candidate's key: it waits
    assert!(!waiting.is_finished());
    bounded(h.client.resign(Some(resign))).await.unwrap();
    let next = bounded(waiting).await.unwrap().unwrap();
    let next = next.leader().expect("a leader key");
    assert!(next.rev() > leader.rev());
    assert_eq!(observed(&mut observe).await, (next.key().to_vec(), b"b1".to_vec()));
    let now = bounded(h.client.leader("e")).await.unwrap();
    assert_eq!(now.kv().expect("the leader").value(), b"b1");
    let status = status_of(bounded(h.client.proclaim("a3", Some(proclaim))).await.unwrap_err());
    assert_eq!((status.code(), status.message()), (Code::Unknown, "election: not leader"));
    h.stop().await;
}

#[tokio::test]
async fn observe_waits_for_the_first_candidate() {
    let mut h = Harness::start().await;
    let id = lease(&mut h.client).await;
    let mut observe = bounded(h.client.observe("quiet")).await.unwrap();
    let won = bounded(h.client.campaign("quiet", "v", id)).await.unwrap();
    let key = won.leader().expect("a leader key").key().to_vec();
    assert_eq!(observed(&mut observe).await, (key, b"v".to_vec()));
    h.stop().await;
}

#[tokio::test]
async fn leader_of_an_empty_election_errors() {
    let mut h = Harness::start().await;
    let status = status_of(bounded(h.client.leader("nobody")).await.unwrap_err());
    assert_eq!((status.code(), status.message()), (Code::Unknown, "election: no leader"));
    let status = status_of(bounded(h.client.resign(None)).await.unwrap_err());
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unknown, "\"leader\" field must be provided")
    );
    h.stop().await;
}

#[tokio::test]
async fn observe_catches_up_from_history_when_it_lags() {
    // A feed of two revisions, and ten puts of the leader's key while the server's tasks do
    // not run (`put_now` does not yield): the feed laps the observer.
    let mut h = Harness::start_with(EtcdConfig::default(), 2).await;
    let id = lease(&mut h.client).await;
    let won = bounded(h.client.campaign("busy", "v0", id)).await.unwrap();
    let key = won.leader().expect("a leader key").key_str().unwrap().to_owned();
    let mut observe = bounded(h.client.observe("busy")).await.unwrap();
    assert_eq!(observed(&mut observe).await.1, b"v0");
    for i in 1..10 {
        h.backend.put_now(&key, &format!("v{i}"));
    }
    for i in 1..10 {
        assert_eq!(observed(&mut observe).await.1, format!("v{i}").as_bytes());
    }
    h.stop().await;
}
