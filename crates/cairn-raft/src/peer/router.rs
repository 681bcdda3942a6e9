//! The receive side's multiplexing: a [`Router`] hands each request for group G to the
//! [`GroupHandler`] registered for G (the group's openraft instance: [`crate::RaftHandler`]),
//! answers `UnknownGroup` for a group it does not host, and fans a batched `Heartbeats` frame
//! out to each group, batching their answers.
//!
//! A connection's reader starts every request inline, in the order the frames arrived
//! ([`Router::start`]: the handler's `handle` runs before the next frame is read), and only the
//! returned future runs on a task of its own; so a group sees a connection's appends in the
//! order the leader sent them, which a pipelined stream of appends needs.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::core_group::CoreRequest;
use crate::peer::body::{
    AppendRequest, AppendResponse, ErrorAnswer, ErrorCode, GroupAnswer, Heartbeat, HeartbeatAnswer,
    Lane, Message, Ping, PingAnswer, SnapshotRequest, SnapshotResponse, VoteRequest, VoteResponse,
};
use crate::peer::core_body::{CoreAnswer, CoreSnapshotRequest};

/// A request to a peer: what [`crate::peer::PeerClient::call`] sends.
#[derive(Clone, Debug)]
pub enum Request {
    /// A vote request, on the control lane.
    Vote(VoteRequest),
    /// A pre-vote request, on the control lane.
    PreVote(VoteRequest),
    /// An AppendEntries, on the data lane.
    Append(AppendRequest),
    /// Many groups' heartbeats, on the control lane (the call's group is unused).
    Heartbeats(Vec<Heartbeat>),
    /// A leader's snapshot, on the data lane.
    Snapshot(SnapshotRequest),
    /// A core write for the core leader, on the control lane.
    CoreWrite(CoreRequest),
    /// The core leader's snapshot, on the data lane.
    CoreSnapshot(CoreSnapshotRequest),
    /// A node's ping (RFC 0004), on the control lane (the call's group is unused).
    Ping(Ping),
    /// A request for the coordination group's leader (cairn-coord's encoded `Forward`), on the
    /// control lane.
    CoordCall(Bytes),
}

impl Request {
    /// The lane the request travels on.
    #[must_use]
    pub fn lane(&self) -> Lane {
        match self {
            Request::Append(_) | Request::Snapshot(_) | Request::CoreSnapshot(_) => Lane::Data,
            Request::Vote(_)
            | Request::PreVote(_)
            | Request::Heartbeats(_)
            | Request::CoreWrite(_)
            | Request::Ping(_)
            | Request::CoordCall(_) => Lane::Control,
        }
    }

    /// The request as a frame's message.
    pub(crate) fn into_message(self) -> Message {
        match self {
            Request::Vote(request) => Message::Vote(request),
            Request::PreVote(request) => Message::PreVote(request),
            Request::Append(request) => Message::Append(request),
            Request::Heartbeats(heartbeats) => Message::Heartbeats(heartbeats),
            Request::Snapshot(request) => Message::Snapshot(request),
            Request::CoreWrite(request) => Message::CoreWrite(request),
            Request::CoreSnapshot(request) => Message::CoreSnapshot(request),
            Request::Ping(ping) => Message::Ping(ping),
            Request::CoordCall(bytes) => Message::CoordCall(bytes),
        }
    }
}

/// A peer's answer to a [`Request`], of the same kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The answer to a vote request.
    Vote(VoteResponse),
    /// The answer to a pre-vote request.
    PreVote(VoteResponse),
    /// The answer to an AppendEntries.
    Append(AppendResponse),
    /// The answers to heartbeats, one per group.
    Heartbeats(Vec<HeartbeatAnswer>),
    /// The answer to a snapshot (a partition's or the core's).
    Snapshot(SnapshotResponse),
    /// The core leader's answer to a core write.
    CoreWrite(CoreAnswer),
    /// The answer to a ping.
    Ping(PingAnswer),
    /// The coordination leader's answer (cairn-coord's encoded `Answer`).
    CoordCall(Bytes),
}

impl Response {
    /// The answer as a frame's message.
    pub(crate) fn into_message(self) -> Message {
        match self {
            Response::Vote(answer) => Message::VoteAnswer(answer),
            Response::PreVote(answer) => Message::PreVoteAnswer(answer),
            Response::Append(answer) => Message::AppendAnswer(answer),
            Response::Heartbeats(answers) => Message::HeartbeatsAnswer(answers),
            Response::Snapshot(answer) => Message::SnapshotAnswer(answer),
            Response::CoreWrite(answer) => Message::CoreWriteAnswer(answer),
            Response::Ping(answer) => Message::PingAnswer(answer),
            Response::CoordCall(bytes) => Message::CoordCallAnswer(bytes),
        }
    }
}

/// A request for one group, as a [`GroupHandler`] receives it.
#[derive(Clone, Debug)]
pub enum GroupRequest {
    /// A vote request.
    Vote(VoteRequest),
    /// A pre-vote request.
    PreVote(VoteRequest),
    /// An AppendEntries, with entries or (a heartbeat) without.
    Append(AppendRequest),
    /// One of a batched `Heartbeats` frame's heartbeats (an AppendEntries without entries):
    /// unlike an append, it need not keep its place behind the appends before it.
    Heartbeat(AppendRequest),
    /// A leader's snapshot.
    Snapshot(SnapshotRequest),
    /// A core write handed to this node as the core leader (group 0 only).
    CoreWrite(CoreRequest),
    /// The core leader's snapshot (group 0 only).
    CoreSnapshot(CoreSnapshotRequest),
    /// A request for the coordination group's leader (that group only).
    CoordCall(Bytes),
}

/// What a [`GroupHandler`] returns: the group's answer ([`Response::Vote`],
/// [`Response::PreVote`] or [`Response::Append`], matching the request) or an error answer.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Response, ErrorAnswer>> + Send>>;

/// Serves one group's requests from peers.
///
/// Obligations: answer with the response kind of the request (a heartbeat is answered as an
/// append); the future may be dropped if the connection closes; `handle` must be cheap and
/// must not block (the connection's reader calls it inline, in the order the requests arrived,
/// and spawns the future).
pub trait GroupHandler: Send + Sync + 'static {
    /// Starts serving `request`.
    fn handle(&self, request: GroupRequest) -> HandlerFuture;
}

/// Serves a node's pings from peers (RFC 0004: `crate::Quiescence`).
pub trait PingHandler: Send + Sync + 'static {
    /// Takes `ping` in and answers it; cheap, never blocks.
    fn ping(&self, ping: Ping) -> PingAnswer;
}

/// The groups a node hosts, by group id: where requests from peers go.
#[derive(Default)]
pub struct Router {
    /// Handlers by group id; a group being created or removed races harmlessly with requests
    /// (one sees `UnknownGroup`, and its sender's Raft retries).
    groups: RwLock<BTreeMap<u64, Arc<dyn GroupHandler>>>,
    /// Where pings go; without one, a ping's groups are all refused.
    pings: RwLock<Option<Arc<dyn PingHandler>>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("groups", &self.handlers().len()).finish()
    }
}

impl Router {
    /// An empty router.
    #[must_use]
    pub fn new() -> Router {
        Router::default()
    }

    /// Routes `group`'s requests to `handler` (replacing any earlier one).
    pub fn register(&self, group: u64, handler: Arc<dyn GroupHandler>) {
        self.groups
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(group, handler);
    }

    /// Stops routing to `group`: its requests get `UnknownGroup`.
    pub fn remove(&self, group: u64) {
        self.groups.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&group);
    }

    /// Hands peers' pings to `handler`.
    pub fn serve_pings(&self, handler: Arc<dyn PingHandler>) {
        *self.pings.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handler);
    }

    fn ping(&self, ping: Ping) -> PingAnswer {
        let handler = self.pings.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match handler {
            Some(handler) => handler.ping(ping),
            None => PingAnswer {
                refused: ping.led.iter().filter(|led| led.quiesced).map(|led| led.group).collect(),
            },
        }
    }

    fn handlers(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Arc<dyn GroupHandler>>> {
        self.groups.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn handler(&self, group: u64) -> Option<Arc<dyn GroupHandler>> {
        self.handlers().get(&group).cloned()
    }

    /// Starts the request of a frame's message for `group`: the handler's `handle` runs now
    /// (so requests start in the order they arrived), the answer comes from the future, by
    /// `deadline` (the request's; a batch of heartbeats answers what it has a little before it).
    pub(crate) fn start(
        &self,
        group: u64,
        message: Message,
        deadline: Instant,
    ) -> BoxFuture<Message> {
        let request = match message {
            Message::Vote(request) => GroupRequest::Vote(request),
            Message::PreVote(request) => GroupRequest::PreVote(request),
            Message::Append(request) => GroupRequest::Append(request),
            Message::Snapshot(request) => GroupRequest::Snapshot(request),
            Message::CoreWrite(request) => GroupRequest::CoreWrite(request),
            Message::CoreSnapshot(request) => GroupRequest::CoreSnapshot(request),
            Message::CoordCall(bytes) => GroupRequest::CoordCall(bytes),
            Message::Ping(ping) => {
                return Box::pin(std::future::ready(Message::PingAnswer(self.ping(ping))));
            }
            Message::Heartbeats(heartbeats) => {
                let answers = self.heartbeats(heartbeats, deadline);
                return Box::pin(async move { Message::HeartbeatsAnswer(answers.await) });
            }
            other => {
                let message = format!("frame kind {} is not a request", other.kind());
                let error = ErrorAnswer { code: ErrorCode::Unsupported, message };
                return Box::pin(std::future::ready(Message::Error(error)));
            }
        };
        let Some(handler) = self.handler(group) else {
            return Box::pin(std::future::ready(Message::UnknownGroup));
        };
        let answer = handler.handle(request);
        Box::pin(async move {
            match answer.await {
                Ok(response) => response.into_message(),
                Err(error) => Message::Error(error),
            }
        })
    }

    /// Each heartbeat handed to its group now; the future gathers the answers in the
    /// heartbeats' order. One slow group must not cost the others their answers: what has
    /// not answered shortly before `deadline` ([`heartbeats_due`]) is answered `Failed`.
    fn heartbeats(
        &self,
        heartbeats: Vec<Heartbeat>,
        deadline: Instant,
    ) -> impl Future<Output = Vec<HeartbeatAnswer>> + Send + 'static {
        let mut answers: Vec<HeartbeatAnswer> = heartbeats
            .iter()
            .map(|h| HeartbeatAnswer { group: h.group, answer: GroupAnswer::UnknownGroup })
            .collect();
        let mut running = JoinSet::new();
        for (position, Heartbeat { group, request }) in heartbeats.into_iter().enumerate() {
            if let Some(handler) = self.handler(group) {
                // Until it answers: what a handler that panics or is late leaves.
                answers[position].answer = GroupAnswer::Error(ErrorAnswer {
                    code: ErrorCode::Failed,
                    message: "the group's handler failed or did not answer in time".to_owned(),
                });
                let future = handler.handle(GroupRequest::Heartbeat(request));
                crate::runtime::spawn_joined(&mut running, async move { (position, future.await) });
            }
        }
        let due = heartbeats_due(deadline);
        async move {
            loop {
                let joined = match tokio::time::timeout_at(due, running.join_next()).await {
                    Ok(Some(joined)) => joined,
                    Ok(None) => break,
                    // The rest keep their placeholder.
                    Err(_) => break,
                };
                let Ok((position, result)) = joined else { continue };
                answers[position].answer = match result {
                    Ok(Response::Append(response)) => GroupAnswer::Append(response),
                    Ok(other) => GroupAnswer::Error(ErrorAnswer {
                        code: ErrorCode::Failed,
                        message: format!("the group answered a heartbeat with {other:?}"),
                    }),
                    Err(error) => GroupAnswer::Error(error),
                };
            }
            answers
        }
    }
}

/// When a batch of heartbeats answers whatever its groups answered by then: a quarter of the
/// time left before `deadline` (at most [`HEARTBEATS_ANSWER_MARGIN`]) earlier, so that the
/// answer still reaches the sender in time.
fn heartbeats_due(deadline: Instant) -> Instant {
    let left = deadline.saturating_duration_since(Instant::now());
    deadline - (left / 4).min(HEARTBEATS_ANSWER_MARGIN)
}

/// The most a batch of heartbeats answers before its deadline.
const HEARTBEATS_ANSWER_MARGIN: Duration = Duration::from_millis(10);

/// A boxed future that can move between threads.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
