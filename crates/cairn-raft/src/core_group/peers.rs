//! The consistent core over the peer transport (RFC 0003 §5): [`CoreHandler`], group 0's
//! receiving side (openraft's RPCs to the core's `Raft`, forwarded writes to
//! [`CoreMetadata::serve_forwarded`]), and [`PeerForward`], the [`CoreForward`] that hands a
//! write to the core leader in a `CoreWrite` frame.
//!
//! A forwarded write's outcome is known only from its answer: a request that never left
//! (no connection, a full queue, a busy or unknown group at the leader) is
//! [`MetaError::NotController`], retriable with nothing changed; one that may have run (no
//! answer by the deadline, the connection lost after it was written) is
//! [`MetaError::TimedOut`], an unknown outcome.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use cairn_meta::MetaError;
use cairn_storage::Disk;
use cairn_types::NodeId;
use tokio::time::Instant;

use super::metadata::{CoreForward, CoreMetadata, CoreRequest, Forwarded};
use super::state_machine::CoreStateMachine;
use crate::RaftHandler;
use crate::peer::{
    CallError, CoreAnswer, CoreRefusal, ErrorCode, GroupHandler, GroupRequest, HandlerFuture,
    PeerClient, PeerNode, Request, Response, Unreachable,
};

/// The group id of the consistent core (RFC 0003 §6: partitions' groups are never 0).
pub const CORE_GROUP: u64 = 0;

/// Group 0's handler in a node's router: Raft's RPCs go to the core's `Raft`, `CoreWrite`s to
/// the core once it is open (until then they are refused as retriable).
pub(crate) struct CoreHandler<D: Disk + Clone, F: CoreForward> {
    raft: Arc<RaftHandler<CoreStateMachine<D>>>,
    /// The open core, set once [`CoreMetadata`] exists; weak, so the router does not keep a
    /// stopped core alive.
    core: OnceLock<Weak<CoreMetadata<D, F>>>,
}

impl<D: Disk + Clone, F: CoreForward> CoreHandler<D, F> {
    /// The handler of `raft`'s group, serving writes through `core`.
    pub(crate) fn new(
        raft: Arc<RaftHandler<CoreStateMachine<D>>>,
        core: Weak<CoreMetadata<D, F>>,
    ) -> Arc<CoreHandler<D, F>> {
        let handler = CoreHandler { raft, core: OnceLock::new() };
        // A fresh lock: the set cannot fail.
        let _ = handler.core.set(core);
        Arc::new(handler)
    }
}

impl<D: Disk + Clone, F: CoreForward> GroupHandler for CoreHandler<D, F> {
    fn handle(&self, request: GroupRequest) -> HandlerFuture {
        let GroupRequest::CoreWrite(request) = request else {
            return self.raft.handle(request);
        };
        let Some(core) = self.core.get().and_then(Weak::upgrade) else {
            let refusal = CoreRefusal::of(&MetaError::NotController(
                "the core of this node is not open".to_owned(),
            ));
            let answer = Ok(Response::CoreWrite(CoreAnswer::Refused(refusal)));
            return Box::pin(std::future::ready(answer));
        };
        Box::pin(async move {
            let answer = match core.serve_forwarded(request).await {
                Ok(forwarded) => CoreAnswer::Done(forwarded),
                Err(error) => CoreAnswer::Refused(CoreRefusal::of(&error)),
            };
            Ok(Response::CoreWrite(answer))
        })
    }
}

/// Hands core writes to the core leader over the peer transport (module docs).
#[derive(Clone, Debug)]
pub struct PeerForward {
    clients: BTreeMap<u64, PeerClient>,
    /// How long a forwarded write may take, its commit and the leader's apply included.
    timeout: Duration,
}

impl PeerForward {
    /// Forwards through `transport`'s clients, each write waiting at most `timeout`.
    #[must_use]
    pub fn new(transport: &PeerNode, timeout: Duration) -> PeerForward {
        let clients =
            transport.peer_ids().into_iter().map(|peer| (peer, transport.client(peer))).collect();
        PeerForward { clients, timeout }
    }
}

impl CoreForward for PeerForward {
    async fn forward(&self, leader: NodeId, request: CoreRequest) -> Result<Forwarded, MetaError> {
        let Some(client) = self.clients.get(&leader.0) else {
            let why = format!("the core leader, node {leader}, is not one of this node's peers");
            return Err(MetaError::NotController(why));
        };
        let deadline = Instant::now() + self.timeout;
        match client.call(CORE_GROUP, Request::CoreWrite(request), deadline).await {
            Ok(Response::CoreWrite(CoreAnswer::Done(forwarded))) => Ok(forwarded),
            Ok(Response::CoreWrite(CoreAnswer::Refused(refusal))) => Err(refusal.into_error()),
            Ok(other) => Err(MetaError::TimedOut(format!(
                "the core leader, node {leader}, answered {other:?} to a write"
            ))),
            Err(error) => Err(call_error(leader, &error)),
        }
    }
}

/// A failed forward as the writer sees it (module docs).
fn call_error(leader: NodeId, error: &CallError) -> MetaError {
    let not_sent = |why: &dyn std::fmt::Display| {
        MetaError::NotController(format!("the core leader, node {leader}: {why}"))
    };
    match error {
        CallError::Unreachable(Unreachable::ConnectionLost) | CallError::Timeout => {
            MetaError::TimedOut(format!("the core leader, node {leader}: {error}"))
        }
        CallError::UnexpectedAnswer { .. } => {
            MetaError::TimedOut(format!("the core leader, node {leader}: {error}"))
        }
        CallError::Unreachable(_) | CallError::UnknownGroup => not_sent(error),
        // Busy, or dropped unrun at its deadline: the write did not run.
        CallError::Remote(answer) if answer.code != ErrorCode::Failed => not_sent(error),
        CallError::Remote(_) => {
            MetaError::TimedOut(format!("the core leader, node {leader}: {error}"))
        }
        CallError::Encode(frame) => {
            MetaError::Refused(format!("the write does not encode: {frame}"))
        }
    }
}
