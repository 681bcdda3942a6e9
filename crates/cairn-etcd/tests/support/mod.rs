//! A [`Coordination`] over `cairn_coord::Store` in memory, for the tests only, and a harness
//! that serves it on 127.0.0.1 and connects the real `etcd-client` to it.

// Each test binary uses a part of it.
#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cairn_coord::{
    AlarmKind, Change, Command, KvError, PutRequest, RangeRequest, RangeResponse, Reply, Store,
};
use cairn_etcd::{
    Applied, CoordError, Coordination, EtcdConfig, Header, KvHash, LeaseStatus, Member, Status,
};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

/// Every test step's bound.
pub const STEP: Duration = Duration::from_secs(10);

/// Runs `future`, failing the test if it takes longer than [`STEP`].
pub async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future).await.expect("a test step timed out")
}

/// The store in a mutex, each write's revisions broadcast in order while the lock is held.
pub struct MemoryBackend {
    state: Mutex<State>,
    feed: broadcast::Sender<Arc<Applied>>,
}

struct State {
    store: Store,
    next_lease: i64,
}

impl MemoryBackend {
    /// An empty store whose live feed holds `feed_capacity` revisions for a slow reader.
    pub fn new(feed_capacity: usize) -> Arc<Self> {
        let (feed, _) = broadcast::channel(feed_capacity);
        Arc::new(MemoryBackend {
            state: Mutex::new(State { store: Store::new(), next_lease: 1 }),
            feed,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("a test backend's lock was poisoned")
    }

    /// Puts `key` at once, without yielding: on the test's single thread, the server's tasks
    /// see nothing until the test awaits.
    pub fn put_now(&self, key: &str, value: &str) -> i64 {
        let put = PutRequest { key: key.into(), value: value.into(), ..PutRequest::default() };
        self.apply(&Command::Put(put)).expect("a put").1
    }

    /// Applies `command` and broadcasts the revisions it made.
    fn apply(&self, command: &Command) -> Result<(Reply, i64), CoordError> {
        let mut state = self.state();
        let before = state.store.revision();
        let reply = state.store.apply(command)?;
        for (revision, events) in state.store.events_after(before, usize::MAX)? {
            let applied = Applied { revision, events };
            // No subscriber is fine.
            let _ = self.feed.send(Arc::new(applied));
        }
        Ok((reply, state.store.revision()))
    }
}

impl Coordination for MemoryBackend {
    fn header(&self) -> Header {
        Header {
            cluster_id: 7,
            member_id: 1,
            raft_term: 3,
            revision: self.state().store.revision(),
        }
    }

    async fn range(
        &self,
        request: RangeRequest,
        _serializable: bool,
    ) -> Result<(RangeResponse, i64), CoordError> {
        let state = self.state();
        Ok((state.store.range(&request)?, state.store.revision()))
    }

    async fn write(&self, command: Command) -> Result<(Reply, i64), CoordError> {
        self.apply(&command)
    }

    async fn lease_grant(&self, id: i64, ttl: i64) -> Result<(i64, i64), CoordError> {
        let id = if id == 0 {
            let mut state = self.state();
            state.next_lease += 1;
            state.next_lease
        } else {
            id
        };
        let (_, revision) = self.apply(&Command::LeaseGrant { id, ttl })?;
        Ok((id, revision))
    }

    async fn lease_keep_alive(&self, id: i64) -> Result<i64, CoordError> {
        let state = self.state();
        let lease = state.store.leases()?.get(&id).cloned().ok_or(KvError::LeaseNotFound)?;
        Ok(lease.ttl)
    }

    async fn lease_time_to_live(&self, id: i64) -> Result<LeaseStatus, CoordError> {
        let state = self.state();
        let lease = state.store.leases()?.get(&id).cloned().ok_or(KvError::LeaseNotFound)?;
        let keys = lease.keys.iter().cloned().collect();
        Ok(LeaseStatus { id, ttl: lease.remaining, granted_ttl: lease.ttl, keys })
    }

    async fn leases(&self) -> Result<Vec<i64>, CoordError> {
        Ok(self.state().store.leases()?.keys().copied().collect())
    }

    fn db_size(&self) -> i64 {
        let size = self.state().store.size_bytes().unwrap_or(0);
        i64::try_from(size).unwrap_or(i64::MAX)
    }

    async fn defragment(&self) -> Result<(), CoordError> {
        let defragmented = self.state().store.defragment();
        defragmented.map_err(|error| CoordError::Unavailable(error.to_string()))
    }

    async fn alarms(&self, _linearizable: bool) -> Result<Vec<(u64, AlarmKind)>, CoordError> {
        Ok(self.state().store.alarms()?)
    }

    async fn status(&self) -> Result<Status, CoordError> {
        let revision = self.state().store.revision();
        Ok(Status {
            leader: 1,
            raft_index: 10,
            raft_applied_index: 10,
            raft_term: 3,
            revision,
            db_size: 4096,
            version: "3.5.0".to_owned(),
        })
    }

    fn members(&self) -> Vec<Member> {
        vec![Member {
            id: 1,
            name: "cairn-1".to_owned(),
            peer_urls: vec!["http://127.0.0.1:2380".to_owned()],
            client_urls: vec!["http://127.0.0.1:2379".to_owned()],
            is_learner: false,
        }]
    }

    fn subscribe(&self) -> (broadcast::Receiver<Arc<Applied>>, i64) {
        let state = self.state();
        (self.feed.subscribe(), state.store.revision())
    }

    async fn history(&self, after: i64, limit: usize) -> Result<Vec<Arc<Applied>>, CoordError> {
        let state = self.state();
        let events = state.store.events_after(after, limit).map_err(|error| match error {
            KvError::Compacted => CoordError::Compacted { compacted: state.store.compacted() },
            other => CoordError::Kv(other),
        })?;
        Ok(events
            .into_iter()
            .map(|(revision, events)| Arc::new(Applied { revision, events }))
            .collect())
    }

    async fn hash_kv(&self, revision: i64) -> Result<(KvHash, i64), CoordError> {
        let state = self.state();
        let (current, compacted) = (state.store.revision(), state.store.compacted());
        if revision > current {
            return Err(KvError::FutureRevision.into());
        }
        if revision > 0 && revision < compacted {
            return Err(KvError::Compacted.into());
        }
        let at = if revision == 0 { current } else { revision };
        let compact_revision = if compacted == 0 { -1 } else { compacted };
        Ok((cairn_etcd::hash_kv(compact_revision, at, &Self::changes(&state)?), current))
    }
}

impl MemoryBackend {
    /// The changes the store holds, in (revision, sub) order.
    fn changes(state: &State) -> Result<Vec<Change>, KvError> {
        Ok(state.store.reader().changes(0)?.0)
    }
}

/// A served backend and a connected client.
pub struct Harness {
    /// The backend behind the server.
    pub backend: Arc<MemoryBackend>,
    /// The real etcd client, connected.
    pub client: etcd_client::Client,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Harness {
    /// Serves a fresh backend with etcd's defaults.
    pub async fn start() -> Harness {
        Harness::start_with(EtcdConfig::default(), 1024).await
    }

    /// Serves a fresh backend with `config` and a live feed of `feed_capacity` revisions.
    pub async fn start_with(config: EtcdConfig, feed_capacity: usize) -> Harness {
        let backend = MemoryBackend::new(feed_capacity);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("the listener's address");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let served = Arc::clone(&backend);
        let server = tokio::spawn(cairn_etcd::serve_with(listener, served, config, shutdown));
        let endpoint = format!("http://{address}");
        let client = bounded(etcd_client::Client::connect([endpoint], None))
            .await
            .expect("the client connects");
        Harness { backend, client, stop, server }
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) {
        drop(self.client);
        let _ = self.stop.send(());
        bounded(self.server).await.expect("the server task").expect("the server ran");
    }
}

/// The gRPC status of a failed call.
pub fn status_of(error: etcd_client::Error) -> tonic::Status {
    match error {
        etcd_client::Error::GRpcStatus(status) => status,
        other => panic!("expected a gRPC status, got {other}"),
    }
}
