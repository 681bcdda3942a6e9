//! [`PeerNode`], a node's peer transport: the listener, a dialer per lane of every peer with a
//! higher node id (the lower id dials both lanes of a pair), the established connections, and
//! [`PeerClient`], a peer as the Raft network sees it (`call(group, request, deadline)`).
//!
//! A dialer reconnects with jittered backoff (50 ms → 2 s). A refused handshake or a failed
//! dial is logged once per episode: the first failure of a kind after a success or another
//! failure, not every retry; the acceptor logs one refusal per peer and reason likewise. A
//! connection's end is logged once, a protocol violation at warn level.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cairn_types::limits::{
    PEER_CALLS_PENDING_MAX, PEER_CONTROL_QUEUE_BYTES_DEFAULT, PEER_DATA_QUEUE_BYTES_DEFAULT,
    PEER_HANDSHAKE_TIMEOUT_MS, PEER_INBOUND_REQUESTS_MAX, PEER_RECONNECT_BACKOFF_MS_MAX,
    PEER_RECONNECT_BACKOFF_MS_MIN,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::peer::backoff::Backoff;
use crate::peer::body::{ClusterId, GoodbyeReason, Lane};
use crate::peer::conn::{self, CallError, Connection, Ended, Limits, PendingCall, Unreachable};
use crate::peer::handshake::{self, Agreed, HandshakeError, Identity};
use crate::peer::router::{Request, Response, Router};
use crate::peer::stats::PeerStats;
use crate::peer::transport::{Listener, Transport};

/// How a node's peer transport is set up.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// This node's id.
    pub node_id: u64,
    /// This node's cluster; `None` while bootstrapping (it then accepts any peer's).
    pub cluster_id: Option<ClusterId>,
    /// Tells this process from earlier ones of the same node (its `Hello` carries it).
    pub incarnation: u64,
    /// The other nodes and their peer addresses (`host:port`); this node dials those with a
    /// higher id and accepts the others.
    pub peers: BTreeMap<u64, String>,
    /// Bytes queued unwritten on one peer's control lane before calls fail at once.
    pub control_queue_bytes_max: usize,
    /// Bytes queued unwritten on one peer's data lane before calls fail at once.
    pub data_queue_bytes_max: usize,
    /// Requests from one connection run at once; more are answered `Busy`.
    pub inbound_requests_max: usize,
    /// Calls waiting for answers on one connection.
    pub calls_pending_max: usize,
    /// Longest from connect to an accepted handshake.
    pub handshake_timeout: Duration,
    /// First reconnect pause.
    pub backoff_min: Duration,
    /// Longest reconnect pause.
    pub backoff_max: Duration,
}

impl PeerConfig {
    /// The defaults of `cairn_types::limits` for node `node_id` of `cluster_id` with `peers`.
    #[must_use]
    pub fn new(
        node_id: u64,
        cluster_id: Option<ClusterId>,
        incarnation: u64,
        peers: BTreeMap<u64, String>,
    ) -> PeerConfig {
        PeerConfig {
            node_id,
            cluster_id,
            incarnation,
            peers,
            control_queue_bytes_max: PEER_CONTROL_QUEUE_BYTES_DEFAULT,
            data_queue_bytes_max: PEER_DATA_QUEUE_BYTES_DEFAULT,
            inbound_requests_max: PEER_INBOUND_REQUESTS_MAX,
            calls_pending_max: PEER_CALLS_PENDING_MAX,
            handshake_timeout: Duration::from_millis(PEER_HANDSHAKE_TIMEOUT_MS),
            backoff_min: Duration::from_millis(PEER_RECONNECT_BACKOFF_MS_MIN),
            backoff_max: Duration::from_millis(PEER_RECONNECT_BACKOFF_MS_MAX),
        }
    }

    fn identity(&self) -> Identity {
        Identity {
            cluster_id: self.cluster_id,
            node_id: self.node_id,
            incarnation: self.incarnation,
        }
    }

    fn limits(&self, lane: Lane) -> Limits {
        Limits {
            queue_bytes_max: match lane {
                Lane::Control => self.control_queue_bytes_max,
                Lane::Data => self.data_queue_bytes_max,
            },
            calls_pending_max: self.calls_pending_max,
            inbound_requests_max: self.inbound_requests_max,
        }
    }
}

/// What the transport's tasks and clients share.
struct Core {
    config: PeerConfig,
    router: Arc<Router>,
    /// The established connection of each peer lane.
    links: Mutex<BTreeMap<(u64, Lane), Arc<Connection>>>,
    /// Bumped whenever `links` changes, for [`PeerNode::wait_connected`].
    links_changed: watch::Sender<u64>,
    stats: watch::Sender<PeerStats>,
    /// The last refusal logged per claimed node id (bounded: cleared when it would pass
    /// [`REFUSALS_REMEMBERED_MAX`]), so a peer redialing after a refusal is logged once.
    refusals: Mutex<BTreeMap<u64, GoodbyeReason>>,
    shutdown: watch::Sender<bool>,
}

/// Node ids whose last refusal the acceptor remembers.
const REFUSALS_REMEMBERED_MAX: usize = 256;

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A node's peer transport; dropping it (or [`PeerNode::shutdown`]) stops every task and closes
/// every connection.
pub struct PeerNode {
    core: Arc<Core>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for PeerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerNode").field("node_id", &self.core.config.node_id).finish()
    }
}

impl PeerNode {
    /// Starts accepting on `listener` and dialing the peers with higher ids over `transport`;
    /// requests from peers go to `router`. Must run inside a tokio runtime.
    pub fn start<T: Transport>(
        config: PeerConfig,
        transport: T,
        listener: T::Listener,
        router: Arc<Router>,
    ) -> PeerNode {
        let core = Arc::new(Core {
            config,
            router,
            links: Mutex::new(BTreeMap::new()),
            links_changed: watch::Sender::new(0),
            stats: watch::Sender::new(PeerStats::default()),
            refusals: Mutex::new(BTreeMap::new()),
            shutdown: watch::Sender::new(false),
        });
        let transport = Arc::new(transport);
        let mut tasks = vec![crate::runtime::spawn(accept_loop(Arc::clone(&core), listener))];
        let me = core.config.node_id;
        for (&peer, address) in core.config.peers.range(me.saturating_add(1)..) {
            if peer == me {
                continue;
            }
            for lane in Lane::ALL {
                let dialer = dial_loop(
                    Arc::clone(&core),
                    Arc::clone(&transport),
                    peer,
                    address.clone(),
                    lane,
                );
                tasks.push(crate::runtime::spawn(dialer));
            }
        }
        PeerNode { core, tasks }
    }

    /// Peer `peer` as the Raft network calls it.
    #[must_use]
    pub fn client(&self, peer: u64) -> PeerClient {
        PeerClient { core: Arc::clone(&self.core), peer }
    }

    /// This node's id.
    #[must_use]
    pub fn node_id(&self) -> u64 {
        self.core.config.node_id
    }

    /// The node ids of the peers this transport was configured with.
    #[must_use]
    pub fn peer_ids(&self) -> Vec<u64> {
        self.core.config.peers.keys().copied().filter(|&id| id != self.node_id()).collect()
    }

    /// The transport's counters, as a channel a test can wait on.
    #[must_use]
    pub fn stats(&self) -> watch::Receiver<PeerStats> {
        self.core.stats.subscribe()
    }

    /// Whether `peer`'s `lane` is connected now.
    #[must_use]
    pub fn is_connected(&self, peer: u64, lane: Lane) -> bool {
        locked(&self.core.links).contains_key(&(peer, lane))
    }

    /// Waits until both lanes of `peer` are connected; false if `timeout` passed first.
    pub async fn wait_connected(&self, peer: u64, timeout: Duration) -> bool {
        let mut changed = self.core.links_changed.subscribe();
        let both = |_: &u64| Lane::ALL.iter().all(|&lane| self.is_connected(peer, lane));
        matches!(tokio::time::timeout(timeout, changed.wait_for(both)).await, Ok(Ok(_)))
    }

    /// Waits until neither lane of `peer` is connected; false if `timeout` passed first.
    pub async fn wait_disconnected(&self, peer: u64, timeout: Duration) -> bool {
        let mut changed = self.core.links_changed.subscribe();
        let neither = |_: &u64| Lane::ALL.iter().all(|&lane| !self.is_connected(peer, lane));
        matches!(tokio::time::timeout(timeout, changed.wait_for(neither)).await, Ok(Ok(_)))
    }

    /// Stops every task and closes every connection, then waits for the tasks to end.
    pub async fn shutdown(mut self) {
        self.core.shutdown.send_replace(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for PeerNode {
    fn drop(&mut self) {
        self.core.shutdown.send_replace(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One peer, as the Raft network calls it; cheap to clone.
#[derive(Clone)]
pub struct PeerClient {
    core: Arc<Core>,
    peer: u64,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient").field("peer", &self.peer).finish()
    }
}

impl PeerClient {
    /// The peer's node id.
    #[must_use]
    pub fn peer(&self) -> u64 {
        self.peer
    }

    /// Sends `request` for `group` on its lane and waits for the answer until `deadline`.
    ///
    /// # Errors
    /// [`CallError::Unreachable`] at once when the lane is not connected, its queue is full or
    /// too many calls wait; [`CallError::Timeout`] at the deadline; [`CallError::UnknownGroup`]
    /// and [`CallError::Remote`] as the peer answered.
    pub async fn call(
        &self,
        group: u64,
        request: Request,
        deadline: Instant,
    ) -> Result<Response, CallError> {
        self.start(group, request, deadline)?.answer().await
    }

    /// Queues `request` for `group` on its lane now and returns the call, whose answer comes
    /// by `deadline`: requests started one after another are written, and started by the peer,
    /// in that order (a pipelined stream of appends relies on it).
    ///
    /// # Errors
    /// As [`PeerClient::call`], for what fails before the request is queued.
    pub fn start(
        &self,
        group: u64,
        request: Request,
        deadline: Instant,
    ) -> Result<PendingCall, CallError> {
        let lane = request.lane();
        let connection = locked(&self.core.links).get(&(self.peer, lane)).cloned();
        let Some(connection) = connection else {
            return Err(CallError::Unreachable(Unreachable::NotConnected));
        };
        connection.start_call(group, request.into_message(), deadline)
    }
}

impl Core {
    /// Runs an established connection until it ends, installed as its peer lane's (replacing
    /// an older one: the peer reconnected), and logs its end once.
    async fn serve<S>(self: &Arc<Self>, stream: S, agreed: Agreed)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let Agreed { hello, version } = agreed;
        let (peer, lane) = (hello.node_id, hello.lane);
        let connection = Arc::new(Connection::new(
            peer,
            lane,
            version,
            self.config.limits(lane),
            self.stats.clone(),
        ));
        if let Some(old) = locked(&self.links).insert((peer, lane), Arc::clone(&connection)) {
            old.close();
        }
        locked(&self.refusals).remove(&peer);
        self.links_changed.send_modify(|generation| *generation += 1);
        self.stats.send_modify(|s| s.connections += 1);
        let me = self.config.node_id;
        tracing::info!(
            node_id = me,
            peer,
            ?lane,
            incarnation = hello.incarnation,
            "peer connected"
        );
        let router = Arc::clone(&self.router);
        let ended =
            conn::run(Arc::clone(&connection), stream, router, self.shutdown.subscribe()).await;
        {
            let mut links = locked(&self.links);
            if links.get(&(peer, lane)).is_some_and(|current| Arc::ptr_eq(current, &connection)) {
                links.remove(&(peer, lane));
            }
        }
        self.links_changed.send_modify(|generation| *generation += 1);
        log_end(me, peer, lane, &ended);
        if matches!(ended, Ended::Protocol(_)) {
            self.stats.send_modify(|s| s.protocol_errors += 1);
        }
    }

    /// Counts and logs a failed accepted handshake, once per claimed node and reason.
    fn note_refusal(&self, remote: &str, error: &HandshakeError) {
        let me = self.config.node_id;
        let HandshakeError::Refused { goodbye, node } = error else {
            tracing::info!(node_id = me, remote, %error, "peer handshake failed");
            return;
        };
        self.stats.send_modify(|s| s.refused += 1);
        let mut refusals = locked(&self.refusals);
        if refusals.get(node) == Some(&goodbye.reason) {
            return;
        }
        if refusals.len() >= REFUSALS_REMEMBERED_MAX {
            refusals.clear();
        }
        refusals.insert(*node, goodbye.reason);
        let reason = goodbye.reason;
        tracing::warn!(node_id = me, remote, ?reason, message = %goodbye.message, "peer handshake refused");
    }
}

fn log_end(me: u64, peer: u64, lane: Lane, ended: &Ended) {
    match ended {
        Ended::Protocol(error) => {
            tracing::warn!(node_id = me, peer, ?lane, %error, "peer disconnected: protocol violation");
        }
        Ended::Io(error) => {
            tracing::info!(node_id = me, peer, ?lane, %error, "peer connection failed")
        }
        Ended::PeerClosed => {
            tracing::info!(node_id = me, peer, ?lane, "peer closed the connection")
        }
        Ended::Goodbye(goodbye) => {
            let reason = goodbye.reason;
            tracing::info!(node_id = me, peer, ?lane, ?reason, message = %goodbye.message, "peer said goodbye");
        }
        Ended::Closed => tracing::debug!(node_id = me, peer, ?lane, "peer connection closed"),
        Ended::Stalled => {
            let timeouts = cairn_types::limits::PEER_LANE_SILENT_TIMEOUTS_MAX;
            tracing::warn!(
                node_id = me,
                peer,
                ?lane,
                timeouts,
                "peer connection stuck: calls timed out with nothing from the peer; reconnecting"
            );
        }
    }
}

/// Accepts connections until shutdown; each handshake runs on its own task.
async fn accept_loop<L: Listener>(core: Arc<Core>, mut listener: L)
where
    L::Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut shutdown = core.shutdown.subscribe();
    let config = &core.config;
    let mut backoff = Backoff::new(config.backoff_min, config.backoff_max, config.incarnation);
    let mut failing = false;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                failing = false;
                backoff.reset();
                crate::runtime::spawn(accept_one(Arc::clone(&core), stream, remote));
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(node_id = core.config.node_id, %error, "peer accept failed");
                    failing = true;
                }
                tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|stop| *stop) => return,
                    () = tokio::time::sleep(backoff.next_pause()) => {}
                }
            }
        }
    }
}

async fn accept_one<S>(core: Arc<Core>, mut stream: S, remote: String)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let me = core.config.identity();
    let is_peer = |node| core.config.peers.contains_key(&node);
    let handshake = handshake::accept(&mut stream, &me, is_peer);
    match tokio::time::timeout(core.config.handshake_timeout, handshake).await {
        Ok(Ok(agreed)) => core.serve(stream, agreed).await,
        Ok(Err(error)) => core.note_refusal(&remote, &error),
        Err(_) => tracing::info!(node_id = me.node_id, remote, "peer handshake timed out"),
    }
}

/// Keeps one lane to a peer connected until shutdown: dial, handshake, serve, back off, again.
async fn dial_loop<T: Transport>(
    core: Arc<Core>,
    transport: Arc<T>,
    peer: u64,
    address: String,
    lane: Lane,
) {
    let config = &core.config;
    let seed = config.incarnation ^ peer.rotate_left(32) ^ (lane as u64);
    let mut backoff = Backoff::new(config.backoff_min, config.backoff_max, seed);
    let mut shutdown = core.shutdown.subscribe();
    // The kind of failure this episode was logged with; `None` after a success.
    let mut episode: Option<Failure> = None;
    loop {
        let attempt = async {
            let mut stream = transport.dial(&address).await.map_err(HandshakeError::Io)?;
            let agreed = handshake::dial(&mut stream, &config.identity(), lane, peer).await?;
            Ok::<_, HandshakeError>((stream, agreed))
        };
        let attempt = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            attempt = tokio::time::timeout(config.handshake_timeout, attempt) => attempt,
        };
        match attempt {
            Ok(Ok((stream, agreed))) => {
                episode = None;
                backoff.reset();
                core.serve(stream, agreed).await;
            }
            Ok(Err(error)) => note_dial_failure(&core, peer, lane, &address, &error, &mut episode),
            Err(_) => {
                let error = HandshakeError::Io(std::io::ErrorKind::TimedOut.into());
                note_dial_failure(&core, peer, lane, &address, &error, &mut episode);
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(backoff.next_pause()) => {}
        }
    }
}

/// What an episode of failed dials is logged for: a network failure (connect, reset, end of
/// stream, timeout: which of them varies from one try to the next) or a refusal's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Network,
    Refused(GoodbyeReason),
}

/// Counts a failed dial and logs it if it starts an episode (the first failure after a
/// success, or one of another [`Failure`] than the last).
fn note_dial_failure(
    core: &Core,
    peer: u64,
    lane: Lane,
    address: &str,
    error: &HandshakeError,
    episode: &mut Option<Failure>,
) {
    core.stats.send_modify(|s| match error {
        HandshakeError::RefusedByPeer(_) => s.refused_by_peer += 1,
        HandshakeError::Refused { .. } => s.refused += 1,
        _ => s.dial_failures += 1,
    });
    let failure = match error {
        HandshakeError::RefusedByPeer(goodbye) | HandshakeError::Refused { goodbye, .. } => {
            Failure::Refused(goodbye.reason)
        }
        _ => Failure::Network,
    };
    if *episode == Some(failure) {
        return;
    }
    *episode = Some(failure);
    let me = core.config.node_id;
    tracing::warn!(node_id = me, peer, ?lane, address, %error, "cannot connect to peer");
}
