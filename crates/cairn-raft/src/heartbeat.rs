//! [`Coalescer`]: one peer's heartbeat coalescer (RFC 0003 §6 "Heartbeats are batched per
//! peer"). Every group this node leads sends its heartbeats to that peer through it; it sends
//! them in one `Heartbeats` frame on the control lane [`PEER_HEARTBEATS_WINDOW_MS`] after the
//! first one of a batch arrived (at once on a link idle for ten windows), or as soon as
//! [`PEER_HEARTBEATS_GROUPS_MAX`] are waiting, and fans the answers back to each group. With 1,000 idle groups a node sends a frame per peer
//! per window rather than a frame per group per heartbeat interval.
//!
//! Bounds: at most [`PEER_HEARTBEATS_QUEUED_MAX`] heartbeats wait in the coalescer (one more
//! fails at once, as unreachable: the group's next heartbeat retries); a batch's frame carries
//! the earliest deadline of its heartbeats, and those past it are answered `Timeout` unsent.
//! The coalescer's task ends when every handle to it is dropped.

use std::time::Duration;

use cairn_types::limits::{
    PEER_HEARTBEATS_GROUPS_MAX, PEER_HEARTBEATS_QUEUED_MAX, PEER_HEARTBEATS_WINDOW_MS,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::peer::body::kind::HEARTBEATS_ANSWER;
use crate::peer::{
    AppendRequest, CallError, GroupAnswer, Heartbeat, PeerClient, Request, Response, Unreachable,
};

/// What a group's heartbeat gets back: the group's answer, or why the batch got none.
pub(crate) type HeartbeatResult = Result<GroupAnswer, CallError>;

/// One group's heartbeat waiting for its batch.
struct Queued {
    group: u64,
    request: AppendRequest,
    deadline: Instant,
    answer: oneshot::Sender<HeartbeatResult>,
}

/// A handle to one peer's heartbeat coalescer; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Coalescer {
    queue: mpsc::Sender<Queued>,
}

impl Coalescer {
    /// Starts the coalescer of the peer `client` calls. Must run inside a tokio runtime.
    pub(crate) fn spawn(client: PeerClient) -> Coalescer {
        let (queue, waiting) = mpsc::channel(PEER_HEARTBEATS_QUEUED_MAX);
        crate::runtime::spawn(run(client, waiting));
        Coalescer { queue }
    }

    /// Queues `group`'s heartbeat (an AppendEntries without entries) for the next batch; the
    /// receiver gets the group's answer.
    ///
    /// # Errors
    /// [`CallError::Unreachable`] at once if the coalescer is full or stopped.
    pub(crate) fn send(
        &self,
        group: u64,
        request: AppendRequest,
        deadline: Instant,
    ) -> Result<oneshot::Receiver<HeartbeatResult>, CallError> {
        let (answer, answered) = oneshot::channel();
        let queued = Queued { group, request, deadline, answer };
        self.queue.try_send(queued).map_err(|error| {
            CallError::Unreachable(match error {
                mpsc::error::TrySendError::Full(_) => Unreachable::QueueFull,
                mpsc::error::TrySendError::Closed(_) => Unreachable::ConnectionLost,
            })
        })?;
        Ok(answered)
    }
}

/// Gathers batches until every handle is dropped; each batch's call runs on a task of its own,
/// so a slow answer never holds up the next batch. A batch closes one window after its first
/// heartbeat, or at once if the peer's link carried no frame for [`IDLE_GAP_WINDOWS`] windows:
/// a lone heartbeat (a woken group renewing its lease when every other group is quiesced, RFC
/// 0004) goes out without waiting, and awake groups' heartbeats are still batched.
async fn run(client: PeerClient, mut waiting: mpsc::Receiver<Queued>) {
    let window = Duration::from_millis(PEER_HEARTBEATS_WINDOW_MS);
    let groups_max = PEER_HEARTBEATS_GROUPS_MAX as usize;
    let mut last_sent: Option<Instant> = None;
    while let Some(first) = waiting.recv().await {
        let now = Instant::now();
        let idle = last_sent.is_none_or(|sent| now - sent >= window * IDLE_GAP_WINDOWS);
        let closes = if idle { now } else { now + window };
        let mut batch = vec![first];
        while batch.len() < groups_max {
            match tokio::time::timeout_at(closes, waiting.recv()).await {
                Ok(Some(queued)) => batch.push(queued),
                Ok(None) | Err(_) => break,
            }
        }
        send(&client, batch);
        last_sent = Some(Instant::now());
    }
}

/// How many batching windows without a frame make a peer's link idle (module docs).
const IDLE_GAP_WINDOWS: u32 = 10;

/// Sends one batch and fans its answers out, in the background.
fn send(client: &PeerClient, batch: Vec<Queued>) {
    let now = Instant::now();
    let (live, expired): (Vec<Queued>, Vec<Queued>) =
        batch.into_iter().partition(|queued| queued.deadline > now);
    for queued in expired {
        let _ = queued.answer.send(Err(CallError::Timeout));
    }
    let Some(deadline) = live.iter().map(|queued| queued.deadline).min() else { return };
    let heartbeats = live
        .iter()
        .map(|queued| Heartbeat { group: queued.group, request: queued.request.clone() })
        .collect();
    let call = client.start(0, Request::Heartbeats(heartbeats), deadline);
    crate::runtime::spawn(async move {
        let answers = match call {
            Ok(call) => call.answer().await,
            Err(error) => Err(error),
        };
        fan_out(live, answers);
    });
}

/// Hands each group its answer: the answer at its position, which must name it.
fn fan_out(batch: Vec<Queued>, answers: Result<Response, CallError>) {
    let answers = match answers {
        Ok(Response::Heartbeats(answers)) if answers.len() == batch.len() => answers,
        Ok(other) => {
            let kind = match other {
                Response::Heartbeats(_) => "a heartbeats answer of another length",
                _ => "an answer of another kind",
            };
            tracing::warn!(peer_answer = kind, "a peer answered heartbeats wrongly");
            for queued in batch {
                let _ = queued
                    .answer
                    .send(Err(CallError::UnexpectedAnswer { kind: HEARTBEATS_ANSWER }));
            }
            return;
        }
        Err(error) => {
            for queued in batch {
                let _ = queued.answer.send(Err(copy(&error)));
            }
            return;
        }
    };
    for (queued, answer) in batch.into_iter().zip(answers) {
        let result = if answer.group == queued.group {
            Ok(answer.answer)
        } else {
            Err(CallError::UnexpectedAnswer { kind: HEARTBEATS_ANSWER })
        };
        let _ = queued.answer.send(result);
    }
}

/// The same failure for each group of a batch (`CallError` is not `Clone`: an encode error
/// carries a codec error, which a batch of heartbeats never has: no entries, at most
/// `PEER_HEARTBEATS_GROUPS_MAX` of them).
fn copy(error: &CallError) -> CallError {
    match error {
        CallError::Unreachable(reason) => CallError::Unreachable(*reason),
        CallError::Timeout => CallError::Timeout,
        CallError::UnknownGroup => CallError::UnknownGroup,
        CallError::Remote(answer) => CallError::Remote(answer.clone()),
        CallError::UnexpectedAnswer { kind } => CallError::UnexpectedAnswer { kind: *kind },
        CallError::Encode(_) => CallError::Unreachable(Unreachable::ConnectionLost),
    }
}
