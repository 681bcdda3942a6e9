//! [`RaftHandler`]: the receiving side of one group (RFC 0003 §6), the [`GroupHandler`] a node
//! registers in its [`crate::peer::Router`] for each group it hosts. Votes, pre-votes,
//! heartbeats and snapshots go straight to the group's `Raft`; appends go through the group's
//! append pipeline, which hands them to `Raft::stream_append` in the order they arrived (the
//! router starts them in that order) and answers each as openraft answers it, so a leader's
//! pipelined appends are appended in order and flushed together.
//!
//! The pipeline holds at most [`RAFT_APPENDS_QUEUED_MAX`] appends; one more is answered
//! `Busy`. When openraft's stream ends (a conflict, a higher vote), the appends behind the
//! one that ended it are answered `Failed` (the leader's stream stopped at the first error and
//! no longer waits for them) and a new stream starts. A stopped `Raft` answers `Failed`.
//!
//! A replica whose log lost committed entries abstains ([`RaftHandler::abstaining`]): until it
//! holds them again it answers votes and pre-votes `Failed`, as if unreachable, so no candidate
//! counts it (RFC 0003 §7, "bit flip in committed data"). A quiesced replica (RFC 0004) is
//! woken by any request, and refuses votes the same way while its leader is alive.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_types::limits::RAFT_APPENDS_QUEUED_MAX;
use futures_util::StreamExt;
use openraft::Raft;
use openraft::storage::{RaftStateMachine, Snapshot};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::peer::{
    AppendRequest, AppendResponse, ErrorAnswer, ErrorCode, GroupHandler, GroupRequest,
    HandlerFuture, Response, VoteRequest,
};
use crate::pipeline::{append_response, last_of};
use crate::quiesce::QuietHandle;
use crate::wire::WireSnapshot;
use crate::{LogId, TypeConfig};

/// An append waiting in the pipeline, and where its answer goes.
struct Queued {
    request: AppendRequest,
    answer: oneshot::Sender<Result<AppendResponse, ErrorAnswer>>,
}

/// One group's requests from peers, served by its `Raft` (module docs).
pub struct RaftHandler<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData: WireSnapshot>,
{
    raft: Raft<TypeConfig, SM>,
    appends: mpsc::Sender<Queued>,
    /// While set, votes and pre-votes are refused (module docs); the group clears it.
    abstain: Arc<AtomicBool>,
    /// The group's quiescence (RFC 0004), if it quiesces: any request wakes it, and a vote
    /// while its leader is alive is refused.
    quiet: Option<QuietHandle>,
}

impl<SM> RaftHandler<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData: WireSnapshot>,
{
    /// The handler of `raft`'s group; starts its append pipeline, which ends when the handler
    /// is dropped (removed from the router) or the `Raft` stops. Must run inside a tokio
    /// runtime.
    #[must_use]
    pub fn new(raft: Raft<TypeConfig, SM>) -> Arc<RaftHandler<SM>> {
        RaftHandler::abstaining(raft, Arc::new(AtomicBool::new(false)), None)
    }

    /// [`RaftHandler::new`], refusing votes and pre-votes while `abstain` is set, and waking
    /// the group's `quiet` on every request.
    #[must_use]
    pub fn abstaining(
        raft: Raft<TypeConfig, SM>,
        abstain: Arc<AtomicBool>,
        quiet: Option<QuietHandle>,
    ) -> Arc<RaftHandler<SM>> {
        let (appends, queued) = mpsc::channel(RAFT_APPENDS_QUEUED_MAX);
        crate::runtime::spawn(run_appends(raft.clone(), queued));
        Arc::new(RaftHandler { raft, appends, abstain, quiet })
    }

    /// The refusal of a vote or pre-vote, if this replica abstains or is quiesced under a
    /// live leader (module docs, RFC 0004 "Votes"); a leadership transfer is never refused for
    /// quiescence.
    fn refuses(&self, request: &VoteRequest) -> Option<HandlerFuture> {
        let error = if self.abstain.load(Ordering::Acquire) {
            "the replica lost committed entries and does not vote until it holds them"
        } else if let Some(quiet) = &self.quiet
            && !request.leadership_transfer
            && quiet.refuses_vote(Instant::now())
        {
            "the group is quiesced under a live leader"
        } else {
            return None;
        };
        Some(Box::pin(std::future::ready(Err(answer_error(ErrorCode::Failed, error)))))
    }

    fn append(&self, request: AppendRequest) -> HandlerFuture {
        let (answer, answered) = oneshot::channel();
        if let Err(error) = self.appends.try_send(Queued { request, answer }) {
            let error = match error {
                mpsc::error::TrySendError::Full(_) => {
                    answer_error(ErrorCode::Busy, "the group's append pipeline is full")
                }
                mpsc::error::TrySendError::Closed(_) => {
                    answer_error(ErrorCode::Failed, "the group stopped")
                }
            };
            return Box::pin(std::future::ready(Err(error)));
        }
        Box::pin(async move {
            match answered.await {
                Ok(answer) => answer.map(Response::Append),
                Err(_) => Err(answer_error(ErrorCode::Failed, "the group stopped")),
            }
        })
    }
}

fn answer_error(code: ErrorCode, message: impl ToString) -> ErrorAnswer {
    ErrorAnswer { code, message: message.to_string() }
}

impl<SM> GroupHandler for RaftHandler<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData: WireSnapshot>,
{
    fn handle(&self, request: GroupRequest) -> HandlerFuture {
        if let GroupRequest::Vote(vote) | GroupRequest::PreVote(vote) = &request
            && let Some(refused) = self.refuses(vote)
        {
            return refused;
        }
        if let Some(quiet) = &self.quiet {
            quiet.wake();
        }
        let raft = self.raft.clone();
        let failed = |error: &dyn std::fmt::Display| answer_error(ErrorCode::Failed, error);
        match request {
            GroupRequest::Append(request) => self.append(request),
            GroupRequest::Vote(request) => Box::pin(async move {
                raft.vote(request).await.map(Response::Vote).map_err(|e| failed(&e))
            }),
            GroupRequest::PreVote(request) => Box::pin(async move {
                raft.pre_vote(request).await.map(Response::PreVote).map_err(|e| failed(&e))
            }),
            GroupRequest::Heartbeat(request) => Box::pin(async move {
                raft.append_entries(request).await.map(Response::Append).map_err(|e| failed(&e))
            }),
            GroupRequest::Snapshot(_) | GroupRequest::CoreSnapshot(_) => {
                let Some((vote, meta, snapshot)) = SM::SnapshotData::received(request) else {
                    let error = "a snapshot of another kind of group";
                    return Box::pin(std::future::ready(Err(answer_error(
                        ErrorCode::Unsupported,
                        error,
                    ))));
                };
                Box::pin(async move {
                    let snapshot = Snapshot { meta, snapshot };
                    let installed = raft.install_full_snapshot(vote, snapshot).await;
                    installed.map(Response::Snapshot).map_err(|e| failed(&e))
                })
            }
            GroupRequest::CoreWrite(_) | GroupRequest::CoordCall(_) => {
                let error = "a core write or coordination call for a group that serves neither";
                Box::pin(std::future::ready(Err(answer_error(ErrorCode::Unsupported, error))))
            }
        }
    }
}

/// Why one of openraft's append streams ended.
enum StreamEnd {
    /// A conflict or a higher vote: start another.
    Restart,
    /// The group's `Raft` stopped, or the handler was dropped.
    Stop,
}

/// Feeds the group's appends to `Raft::stream_append`, one stream after another.
async fn run_appends<SM>(raft: Raft<TypeConfig, SM>, mut queued: mpsc::Receiver<Queued>)
where
    SM: RaftStateMachine<TypeConfig, SnapshotData: WireSnapshot>,
{
    loop {
        let mut waiting = VecDeque::new();
        let end = run_stream(&raft, &mut queued, &mut waiting).await;
        for (answer, _) in waiting {
            let error = answer_error(ErrorCode::Failed, "an earlier append ended the stream");
            let _ = answer.send(Err(error));
        }
        if matches!(end, StreamEnd::Stop) {
            return;
        }
    }
}

/// Answers waiting for openraft, in order, with the last log id each request sends.
type Waiting = VecDeque<(oneshot::Sender<Result<AppendResponse, ErrorAnswer>>, Option<LogId>)>;

/// One of openraft's append streams: appends go in as they come, answers come out in order.
/// Never blocks on the feed (it holds as many appends as the queue): a stalled feed would stop
/// the answers that drain it.
async fn run_stream<SM>(
    raft: &Raft<TypeConfig, SM>,
    queued: &mut mpsc::Receiver<Queued>,
    waiting: &mut Waiting,
) -> StreamEnd
where
    SM: RaftStateMachine<TypeConfig, SnapshotData: WireSnapshot>,
{
    let (feed, mut fed) = mpsc::channel::<AppendRequest>(RAFT_APPENDS_QUEUED_MAX);
    let input = futures_util::stream::poll_fn(move |context| fed.poll_recv(context));
    let mut answers = pin!(raft.stream_append(input));
    loop {
        tokio::select! {
            biased;
            answer = answers.next(), if !waiting.is_empty() => {
                let Some((reply, last)) = waiting.pop_front() else { continue };
                let (answer, end) = match answer {
                    Some(Ok(Ok(matching))) => (Ok(append_response(Ok(matching), last)), None),
                    Some(Ok(Err(error))) => {
                        (Ok(append_response(Err(error), last)), Some(StreamEnd::Restart))
                    }
                    Some(Err(fatal)) => {
                        (Err(answer_error(ErrorCode::Failed, fatal)), Some(StreamEnd::Stop))
                    }
                    None => {
                        let error = answer_error(ErrorCode::Failed, "the append stream ended");
                        (Err(error), Some(StreamEnd::Restart))
                    }
                };
                let _ = reply.send(answer);
                if let Some(end) = end {
                    return end;
                }
            }
            next = queued.recv() => {
                let Some(Queued { request, answer }) = next else { return StreamEnd::Stop };
                let last = last_of(&request);
                if feed.try_send(request).is_err() {
                    let _ = answer.send(Err(answer_error(ErrorCode::Busy, "the append stream is full")));
                    continue;
                }
                waiting.push_back((answer, last));
            }
        }
    }
}
