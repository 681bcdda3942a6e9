//! The sending side of Raft over the peer transport (RFC 0003 §6): [`Network`], a node's
//! openraft network over its [`PeerNode`]; [`GroupNetwork`], one group's
//! `RaftNetworkFactory`; [`PeerNetwork`], one group's client of one peer.
//!
//! - Votes and pre-votes go on the control lane (pre-vote is really sent, never openraft's
//!   default grant: an isolated node must not count grants it never got).
//! - AppendEntries go on the data lane with the entries in their stored form. `stream_append`
//!   is pipelined ([`crate::pipeline`]): several requests in flight per group and peer, in
//!   order, up to [`PEER_APPEND_INFLIGHT_BYTES_MAX`] of entries. A request whose entries would
//!   not fit one frame is split into several, sent in order.
//! - Heartbeats (the heartbeat client's empty AppendEntries) go through the peer's
//!   [`Coalescer`]: one `Heartbeats` frame for every group.
//! - `full_snapshot` sends the partition's small snapshot record in one frame.
//! - Every RPC carries the deadline openraft gives (`RPCOption::soft_ttl`); the receiver drops a
//!   request whose deadline passed before it ran.
//!
//! [`CallError`]s map to openraft's errors ([`rpc_error`]): no connection, a full queue, a
//! lost connection, a group the peer does not host or a failed group are `Unreachable` (openraft
//! backs off with [`PeerNetwork`]'s [`Backoff`]); a deadline is `Timeout`; a busy peer is a
//! `Network` error (openraft retries soon).

use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cairn_types::limits::{PEER_RECONNECT_BACKOFF_MS_MAX, PEER_RECONNECT_BACKOFF_MS_MIN};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout,
    Unreachable as RaftUnreachable,
};
use openraft::network::RaftNetworkV2;
use openraft::network::{Backoff as RaftBackoff, RPCOption, RPCTypes, RaftNetworkFactory};
use openraft::raft::StreamAppendResult;
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use tokio::time::Instant;

use crate::heartbeat::{Coalescer, HeartbeatResult};
use crate::peer::{
    AppendRequest, AppendResponse, Backoff, CallError, ErrorCode, GroupAnswer, PeerClient,
    PeerNode, Request, Response, SnapshotResponse, VoteRequest, VoteResponse,
};
use crate::pipeline::{self, Flight};
use crate::quiesce::Quiescence;
use crate::wire::WireSnapshot;
use crate::{PartitionSnapshot, RaftNodeId, TypeConfig};

#[cfg(doc)]
use cairn_types::limits::PEER_APPEND_INFLIGHT_BYTES_MAX;

/// A node's openraft network over its peer transport: a client per peer and, started on first
/// use, a heartbeat coalescer per peer. Cheap to clone.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

struct Inner {
    /// This node's id (openraft's errors name it).
    node_id: RaftNodeId,
    /// Each configured peer's client.
    clients: BTreeMap<RaftNodeId, PeerClient>,
    /// Each peer's heartbeat coalescer, once a group sent it a heartbeat.
    coalescers: Mutex<BTreeMap<RaftNodeId, Coalescer>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("node_id", &self.inner.node_id).finish()
    }
}

impl Network {
    /// The network of the groups hosted with `node`'s transport.
    #[must_use]
    pub fn new(node: &PeerNode) -> Network {
        let clients = node.peer_ids().into_iter().map(|peer| (peer, node.client(peer))).collect();
        let inner = Inner { node_id: node.node_id(), clients, coalescers: Mutex::default() };
        Network { inner: Arc::new(inner) }
    }

    /// Group `group`'s network factory, for its `Raft`.
    #[must_use]
    pub fn group(&self, group: u64) -> GroupNetwork {
        self.group_of(group)
    }

    /// Group `group`'s network factory for a group whose snapshots are `S` (the consistent
    /// core's: `CoreSnapshot`).
    #[must_use]
    pub fn group_of<S: WireSnapshot>(&self, group: u64) -> GroupNetwork<S> {
        GroupNetwork {
            group,
            inner: Arc::clone(&self.inner),
            coalesce: true,
            snapshot: PhantomData,
        }
    }
}

impl Network {
    /// Runs `quiescence` (RFC 0004) until the network is dropped: its scan, and a ping to each
    /// peer, every `interval`. Must run inside a tokio runtime.
    pub fn run_quiescence(&self, quiescence: &Arc<Quiescence>, interval: Duration) {
        let weak = Arc::downgrade(&self.inner);
        let scanned = Arc::clone(quiescence);
        crate::runtime::spawn(every(interval, weak.clone(), move || {
            scanned.scan(Instant::now());
            std::future::ready(())
        }));
        for (peer, client) in &self.inner.clients {
            let (peer, client, quiescence) = (*peer, client.clone(), Arc::clone(quiescence));
            crate::runtime::spawn(every(interval, weak.clone(), move || {
                ping(peer, client.clone(), Arc::clone(&quiescence), interval)
            }));
        }
    }
}

/// Runs `round` every `interval` (one at a time) while `alive` is.
async fn every<F, R>(interval: Duration, alive: std::sync::Weak<Inner>, mut round: F)
where
    F: FnMut() -> R + Send,
    R: std::future::Future<Output = ()> + Send,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if alive.strong_count() == 0 {
            return;
        }
        round().await;
    }
}

/// One ping to `peer` and the handling of its answer (an unanswered ping renews nothing).
async fn ping(peer: RaftNodeId, client: PeerClient, quiescence: Arc<Quiescence>, ttl: Duration) {
    let ping = quiescence.ping_for(peer);
    let sent = Instant::now();
    let answer = client.call(0, Request::Ping(ping.clone()), sent + ttl).await;
    if let Ok(Response::Ping(answer)) = answer {
        quiescence.answered(peer, &ping, sent, &answer.refused);
    }
}

impl Inner {
    /// `peer`'s coalescer, started if it was not. Must run inside a tokio runtime.
    fn coalescer(&self, peer: RaftNodeId) -> Option<Coalescer> {
        let client = self.clients.get(&peer)?;
        let mut coalescers = self.coalescers.lock().unwrap_or_else(PoisonError::into_inner);
        let coalescer =
            coalescers.entry(peer).or_insert_with(|| Coalescer::spawn(client.clone())).clone();
        Some(coalescer)
    }

    fn peer<S>(&self, group: u64, target: RaftNodeId, heartbeats: bool) -> PeerNetwork<S> {
        PeerNetwork {
            snapshot: PhantomData,
            node_id: self.node_id,
            target,
            group,
            client: self.clients.get(&target).cloned(),
            coalescer: if heartbeats { self.coalescer(target) } else { None },
        }
    }
}

/// One group's openraft network factory: the group's clients of each peer; its snapshots are
/// `S`.
pub struct GroupNetwork<S = PartitionSnapshot> {
    group: u64,
    inner: Arc<Inner>,
    /// Whether the group's heartbeats go through the peers' coalescers.
    coalesce: bool,
    snapshot: PhantomData<fn() -> S>,
}

impl<S> GroupNetwork<S> {
    /// The same factory, its heartbeats sent at once rather than coalesced: for a group whose
    /// heartbeats confirm linearizable reads (a ReadIndex waits for one round of them), where a
    /// coalescing window is added to every read and saves one frame a heartbeat interval.
    #[must_use]
    pub fn uncoalesced(self) -> GroupNetwork<S> {
        GroupNetwork { coalesce: false, ..self }
    }
}

impl<S> Clone for GroupNetwork<S> {
    fn clone(&self) -> GroupNetwork<S> {
        GroupNetwork {
            group: self.group,
            inner: Arc::clone(&self.inner),
            coalesce: self.coalesce,
            snapshot: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for GroupNetwork<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupNetwork").field("group", &self.group).finish()
    }
}

impl<S: WireSnapshot> RaftNetworkFactory<TypeConfig> for GroupNetwork<S> {
    type Network = PeerNetwork<S>;

    async fn new_client(
        &mut self,
        target: RaftNodeId,
        _node: &openraft::EmptyNode,
    ) -> PeerNetwork<S> {
        self.inner.peer(self.group, target, false)
    }

    /// A client whose empty AppendEntries go through the peer's heartbeat coalescer (unless
    /// [`GroupNetwork::uncoalesced`]).
    async fn new_heartbeat_client(
        &mut self,
        target: RaftNodeId,
        _node: &openraft::EmptyNode,
    ) -> PeerNetwork<S> {
        self.inner.peer(self.group, target, self.coalesce)
    }
}

/// One group's client of one peer (module docs), for a group whose snapshots are `S`.
pub struct PeerNetwork<S = PartitionSnapshot> {
    snapshot: PhantomData<fn() -> S>,
    node_id: RaftNodeId,
    target: RaftNodeId,
    group: u64,
    /// `None` for a node that is not a configured peer: every RPC is unreachable.
    client: Option<PeerClient>,
    /// The peer's coalescer, for the heartbeat client.
    coalescer: Option<Coalescer>,
}

impl<S> PeerNetwork<S> {
    fn client(&self, action: RPCTypes) -> Result<&PeerClient, RPCError<TypeConfig>> {
        self.client.as_ref().ok_or_else(|| {
            let why = format!("{action} to node {}, which is not a peer", self.target);
            RPCError::Unreachable(RaftUnreachable::from_string(why))
        })
    }

    /// What a failed call is to openraft.
    fn error(&self, error: CallError, action: RPCTypes, ttl: Duration) -> RPCError<TypeConfig> {
        rpc_error(error, action, self.node_id, self.target, ttl)
    }

    async fn vote_call(
        &self,
        request: Request,
        option: &RPCOption,
    ) -> Result<VoteResponse, RPCError<TypeConfig>> {
        let ttl = option.soft_ttl();
        let client = self.client(RPCTypes::Vote)?;
        let answer = client.call(self.group, request, Instant::now() + ttl).await;
        match answer {
            Ok(Response::Vote(answer) | Response::PreVote(answer)) => Ok(answer),
            Ok(_) => Err(self.error(unexpected(), RPCTypes::Vote, ttl)),
            Err(error) => Err(self.error(error, RPCTypes::Vote, ttl)),
        }
    }

    /// A heartbeat through the peer's coalescer, as one stream result.
    async fn heartbeat(
        &self,
        coalescer: &Coalescer,
        request: AppendRequest,
        ttl: Duration,
    ) -> Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>> {
        let prev = request.prev_log_id;
        let action = RPCTypes::AppendEntries;
        let answered = coalescer
            .send(self.group, request, Instant::now() + ttl)
            .map_err(|error| self.error(error, action, ttl))?;
        let answer: HeartbeatResult = answered.await.unwrap_or(Err(CallError::Timeout));
        let failure = match answer {
            Ok(GroupAnswer::Append(response)) => {
                return pipeline::stream_result(response, prev, prev)
                    .map_err(|error| self.error(error, action, ttl));
            }
            Ok(GroupAnswer::UnknownGroup) => CallError::UnknownGroup,
            Ok(GroupAnswer::Error(error)) => CallError::Remote(error),
            Err(error) => error,
        };
        Err(self.error(failure, action, ttl))
    }

    fn flight_sender(&self, ttl: Duration) -> Result<pipeline::Sender, RPCError<TypeConfig>> {
        let client = self.client(RPCTypes::AppendEntries)?.clone();
        let errors = ErrorContext { node_id: self.node_id, target: self.target };
        Ok(pipeline::Sender { client, group: self.group, ttl, errors })
    }
}

/// What openraft's errors name besides the failure.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ErrorContext {
    pub(crate) node_id: RaftNodeId,
    pub(crate) target: RaftNodeId,
}

impl ErrorContext {
    pub(crate) fn error(
        self,
        error: CallError,
        action: RPCTypes,
        ttl: Duration,
    ) -> RPCError<TypeConfig> {
        rpc_error(error, action, self.node_id, self.target, ttl)
    }
}

/// An answer of the wrong kind.
fn unexpected() -> CallError {
    CallError::UnexpectedAnswer { kind: 0 }
}

/// A failed call as openraft's error (module docs).
pub(crate) fn rpc_error(
    error: CallError,
    action: RPCTypes,
    id: RaftNodeId,
    target: RaftNodeId,
    timeout: Duration,
) -> RPCError<TypeConfig> {
    match error {
        CallError::Timeout => RPCError::Timeout(Timeout { action, id, target, timeout }),
        CallError::Remote(ref answer) if answer.code == ErrorCode::Busy => {
            RPCError::Network(NetworkError::new(&error))
        }
        CallError::Unreachable(_)
        | CallError::UnknownGroup
        | CallError::Remote(_)
        | CallError::Encode(_)
        | CallError::UnexpectedAnswer { .. } => RPCError::Unreachable(RaftUnreachable::new(&error)),
    }
}

/// The same failure for a snapshot.
fn streaming_error(error: RPCError<TypeConfig>) -> StreamingError<TypeConfig> {
    match error {
        RPCError::Timeout(timeout) => StreamingError::Timeout(timeout),
        RPCError::Unreachable(unreachable) => StreamingError::Unreachable(unreachable),
        RPCError::Network(network) => StreamingError::Network(network),
        RPCError::RemoteError(remote) => {
            StreamingError::Unreachable(RaftUnreachable::from_string(remote.to_string()))
        }
    }
}

impl<W: WireSnapshot> RaftNetworkV2<TypeConfig> for PeerNetwork<W> {
    type SnapshotData = W;

    async fn append_entries(
        &mut self,
        rpc: AppendRequest,
        option: RPCOption,
    ) -> Result<AppendResponse, RPCError<TypeConfig>> {
        let ttl = option.soft_ttl();
        let range = (rpc.prev_log_id, pipeline::last_of(&rpc));
        let result = match (&self.coalescer, rpc.entries.is_empty()) {
            (Some(coalescer), true) => self.heartbeat(coalescer, rpc, ttl).await?,
            _ => {
                let sender = self.flight_sender(ttl)?;
                Flight::start(&sender, rpc, Instant::now() + ttl).finish().await.result?
            }
        };
        Ok(pipeline::append_response(result, range.1))
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: futures_util::Stream<Item = AppendRequest> + Send + Unpin + 'static,
    {
        let ttl = option.soft_ttl();
        if let Some(coalescer) = self.coalescer.clone() {
            // The heartbeat client: one empty request at a time, through the coalescer.
            let this = &*self;
            let stream = futures_util::stream::unfold(input, move |mut input| {
                let coalescer = coalescer.clone();
                async move {
                    let request = futures_util::StreamExt::next(&mut input).await?;
                    let result = this.heartbeat(&coalescer, request, ttl).await;
                    Some((result, input))
                }
            });
            return Box::pin(async move { Ok(Box::pin(stream) as BoxStream<'s, _>) });
        }
        let sender = self.flight_sender(ttl);
        Box::pin(async move {
            let stream = pipeline::stream(sender?, input);
            Ok(Box::pin(stream) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RPCError<TypeConfig>> {
        self.vote_call(Request::Vote(rpc), &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RPCError<TypeConfig>> {
        self.vote_call(Request::PreVote(rpc), &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, W>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError<TypeConfig>> {
        let ttl = option.soft_ttl();
        let action = RPCTypes::InstallSnapshot;
        let client = self.client(action).map_err(streaming_error)?;
        let request = W::request(vote, snapshot.meta, snapshot.snapshot);
        let call = client.call(self.group, request, Instant::now() + ttl);
        // Biased (here and in the peer transport): tokio's unbiased `select!` draws from a
        // per-runtime RNG that only `--cfg tokio_unstable` seeds, and the simulation replays a
        // seed only if every choice derives from it.
        let answer = tokio::select! {
            biased;
            closed = cancel => return Err(StreamingError::Closed(closed)),
            answer = call => answer,
        };
        match answer {
            Ok(Response::Snapshot(answer)) => Ok(answer),
            Ok(_) => Err(streaming_error(self.error(unexpected(), action, ttl))),
            Err(error) => Err(streaming_error(self.error(error, action, ttl))),
        }
    }

    /// Pauses before retrying an unreachable peer: doubling from 50 ms to 2 s, jittered
    /// (the transport's reconnect backoff, RFC 0003 §6).
    fn backoff(&self) -> Option<RaftBackoff> {
        let seed = self.node_id.rotate_left(40) ^ self.target.rotate_left(20) ^ self.group;
        let mut backoff = Backoff::new(
            Duration::from_millis(PEER_RECONNECT_BACKOFF_MS_MIN),
            Duration::from_millis(PEER_RECONNECT_BACKOFF_MS_MAX),
            seed,
        );
        Some(RaftBackoff::new(std::iter::from_fn(move || Some(backoff.next_pause()))))
    }
}

/// A stream result's conflict without a previous log id cannot be (an empty log matches any
/// leader's): a peer that answers one is broken.
pub(crate) fn conflict_without_prev() -> CallError {
    CallError::UnexpectedAnswer { kind: 0 }
}
