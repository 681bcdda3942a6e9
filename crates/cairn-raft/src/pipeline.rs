//! The pipelined AppendEntries stream of one group to one peer (RFC 0003 §6 "Pipelining"):
//! [`stream`] takes openraft's request stream and keeps several requests in flight on the data
//! lane, up to [`PEER_APPEND_INFLIGHT_BYTES_MAX`] of entries (one request whatever its size
//! when none is in flight), and yields their results in the order of the requests.
//!
//! Order holds end to end: a request is queued on the connection when it is taken from the
//! input ([`PeerClient::start`]), so requests are written in order; the receiver starts them in
//! the order they arrived, and its group's pipeline hands them to openraft in that order
//! (`crate::handler`).
//!
//! A request is a [`Flight`]: its entries split into as many AppendEntries as frames need
//! ([`split`]), sent one after another, their answers folded into one result. The stream ends
//! after the first result that is not a whole success (a conflict, a higher vote, a partial
//! success, an error), as openraft's sequential default does; the requests still in flight are
//! then dropped, and their late answers with them.
//!
//! Deadlines: the k-th request in flight (k from 1) gets `k × soft_ttl`, since the follower
//! answers in order and each answer may take up to `soft_ttl` after the one before.

use std::time::Duration;

use cairn_types::limits::{
    PEER_APPEND_FIXED_BYTES, PEER_APPEND_INFLIGHT_BYTES_MAX, PEER_ENTRY_OVERHEAD_BYTES,
    PEER_FRAME_BYTES_MAX, PEER_FRAME_HEADER_BYTES,
};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use futures_util::{Stream, StreamExt};
use openraft::error::RPCError;
use openraft::network::RPCTypes;
use openraft::raft::{StreamAppendError, StreamAppendResult};
use tokio::time::Instant;

use crate::network::{ErrorContext, conflict_without_prev};
use crate::peer::{AppendRequest, AppendResponse, CallError, PeerClient, Request, Response};
use crate::{LogId, RaftEntry, TypeConfig, codec};

/// Bytes of entries one AppendEntries frame may carry: what the frame cap leaves after the
/// header and the request's fixed fields.
pub(crate) const CHUNK_BYTES_MAX: usize =
    (PEER_FRAME_BYTES_MAX - PEER_FRAME_HEADER_BYTES - PEER_APPEND_FIXED_BYTES) as usize;

/// A stream's result for one request, or why it has none.
type Item = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// Where and how one group's appends to one peer are sent.
pub(crate) struct Sender {
    pub(crate) client: PeerClient,
    pub(crate) group: u64,
    /// openraft's `soft_ttl`: the time one answer may take.
    pub(crate) ttl: Duration,
    pub(crate) errors: ErrorContext,
}

/// One request on its way: its frames queued, its answers awaited in [`Flight::finish`].
pub(crate) struct Flight {
    /// Bytes of its entries, charged to the stream's window while it flies.
    bytes: usize,
    /// The last log id it sends (its previous log id if it has no entries).
    last: Option<LogId>,
    future: BoxFuture<'static, Item>,
}

/// A request's outcome.
pub(crate) struct Landed {
    bytes: usize,
    last: Option<LogId>,
    pub(crate) result: Item,
}

impl Landed {
    /// Whether every entry of the request was accepted.
    fn complete(&self) -> bool {
        matches!(&self.result, Ok(Ok(matching)) if *matching == self.last)
    }
}

impl Flight {
    /// Queues `request`'s frames on the data lane now, in order.
    pub(crate) fn start(sender: &Sender, request: AppendRequest, deadline: Instant) -> Flight {
        let bytes = request.entries.iter().map(entry_bytes).sum();
        let last = last_of(&request);
        let mut calls = Vec::new();
        let mut refused = None;
        for chunk in split(request, CHUNK_BYTES_MAX) {
            let range = (chunk.prev_log_id, last_of(&chunk));
            match sender.client.start(sender.group, Request::Append(chunk), deadline) {
                Ok(call) => calls.push((call, range)),
                Err(error) => {
                    refused = Some(error);
                    break;
                }
            }
        }
        let (errors, ttl) = (sender.errors, sender.ttl);
        let future = async move {
            let mut acked = None;
            for (call, (prev, chunk_last)) in calls {
                let answer = match call.answer().await {
                    Ok(Response::Append(response)) => stream_result(response, prev, chunk_last),
                    Ok(_) => Err(CallError::UnexpectedAnswer { kind: 0 }),
                    Err(error) => Err(error),
                };
                match answer {
                    Ok(Ok(matching)) if matching == chunk_last => acked = Some(matching),
                    Ok(other) => return Ok(other),
                    Err(error) => return partial(acked, error, errors, ttl),
                }
            }
            match (refused, acked) {
                (Some(error), acked) => partial(acked, error, errors, ttl),
                (None, Some(matching)) => Ok(Ok(matching)),
                (None, None) => Err(errors.error(unsent(), RPCTypes::AppendEntries, ttl)),
            }
        };
        Flight { bytes, last, future: Box::pin(future) }
    }

    /// Waits for the answers.
    pub(crate) async fn finish(self) -> Landed {
        Landed { bytes: self.bytes, last: self.last, result: self.future.await }
    }
}

/// A flight that failed after `acked` (the last log id of its accepted frames, if any): a
/// partial success, or the failure itself.
fn partial(
    acked: Option<Option<LogId>>,
    error: CallError,
    errors: ErrorContext,
    ttl: Duration,
) -> Item {
    match acked {
        Some(matching) => Ok(Ok(matching)),
        None => Err(errors.error(error, RPCTypes::AppendEntries, ttl)),
    }
}

/// A request none of whose frames was queued (cannot be: a request has at least one frame).
fn unsent() -> CallError {
    CallError::Unreachable(crate::peer::Unreachable::NotConnected)
}

/// The pipelined stream of results of `input`'s requests (module docs).
pub(crate) fn stream<S>(sender: Sender, input: S) -> impl Stream<Item = Item> + Send + 'static
where
    S: Stream<Item = AppendRequest> + Send + Unpin + 'static,
{
    let pipeline = Pipeline {
        sender,
        input: Some(input),
        flights: FuturesOrdered::new(),
        inflight_bytes: 0,
        done: false,
    };
    futures_util::stream::unfold(pipeline, |mut pipeline| async move {
        let item = pipeline.next().await?;
        Some((item, pipeline))
    })
}

struct Pipeline<S> {
    sender: Sender,
    /// openraft's requests; `None` once it ended.
    input: Option<S>,
    /// The requests in flight, oldest first.
    flights: FuturesOrdered<BoxFuture<'static, Landed>>,
    /// Bytes of entries in flight.
    inflight_bytes: usize,
    /// A result ended the stream.
    done: bool,
}

impl<S: Stream<Item = AppendRequest> + Send + Unpin + 'static> Pipeline<S> {
    /// The next request's result, sending more requests while the window allows.
    async fn next(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        loop {
            let window_open =
                self.flights.is_empty() || self.inflight_bytes < PEER_APPEND_INFLIGHT_BYTES_MAX;
            let may_send = self.input.is_some() && window_open;
            if !may_send && self.flights.is_empty() {
                return None;
            }
            tokio::select! {
                biased;
                landed = self.flights.next(), if !self.flights.is_empty() => {
                    let Some(landed) = landed else { continue };
                    self.inflight_bytes -= landed.bytes;
                    self.done = !landed.complete();
                    return Some(landed.result);
                }
                request = next_request(&mut self.input), if may_send => match request {
                    Some(request) => self.send(request),
                    None => self.input = None,
                },
            }
        }
    }

    fn send(&mut self, request: AppendRequest) {
        let ahead = u32::try_from(self.flights.len()).unwrap_or(u32::MAX);
        let deadline = Instant::now() + self.sender.ttl.saturating_mul(ahead.saturating_add(1));
        let flight = Flight::start(&self.sender, request, deadline);
        self.inflight_bytes += flight.bytes;
        self.flights.push_back(Box::pin(flight.finish()));
    }
}

async fn next_request<S: Stream<Item = AppendRequest> + Unpin>(
    input: &mut Option<S>,
) -> Option<AppendRequest> {
    input.as_mut()?.next().await
}

/// `request` split into requests whose entries each fit `budget` bytes (an entry larger than
/// the budget alone), in order, each continuing the one before; at least one request. Every
/// part but the last carries the leader's commit clamped to its own last entry.
pub(crate) fn split(request: AppendRequest, budget: usize) -> Vec<AppendRequest> {
    let AppendRequest { vote, prev_log_id, entries, leader_commit } = request;
    let mut parts = Vec::new();
    let mut prev = prev_log_id;
    let mut current: Vec<RaftEntry> = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        let size = entry_bytes(&entry);
        if !current.is_empty() && bytes + size > budget {
            let last = current.last().map(log_id_of);
            let entries = std::mem::take(&mut current);
            let commit = leader_commit.min(last);
            parts.push(AppendRequest { vote, prev_log_id: prev, entries, leader_commit: commit });
            prev = last;
            bytes = 0;
        }
        bytes += size;
        current.push(entry);
    }
    parts.push(AppendRequest { vote, prev_log_id: prev, entries: current, leader_commit });
    parts
}

/// Bytes `entry` takes in an AppendEntries body.
fn entry_bytes(entry: &RaftEntry) -> usize {
    let batch = codec::encode(entry, 0).map_or(0, |batch| batch.len());
    batch + PEER_ENTRY_OVERHEAD_BYTES as usize
}

fn log_id_of(entry: &RaftEntry) -> LogId {
    crate::entry::log_id(entry.term(), entry.index())
}

/// The last log id `request` sends: its last entry's, or its previous one.
pub(crate) fn last_of(request: &AppendRequest) -> Option<LogId> {
    request.entries.last().map(log_id_of).or(request.prev_log_id)
}

/// A peer's answer to the AppendEntries `(prev, last]` as a stream result.
///
/// # Errors
/// A conflict without a previous log id, which no sound peer answers.
pub(crate) fn stream_result(
    response: AppendResponse,
    prev: Option<LogId>,
    last: Option<LogId>,
) -> Result<StreamAppendResult<TypeConfig>, CallError> {
    if matches!(response, AppendResponse::Conflict) && prev.is_none() {
        return Err(conflict_without_prev());
    }
    Ok(response.into_stream_result(prev, last))
}

/// A stream result as the answer to a request whose last log id is `last`.
pub(crate) fn append_response(
    result: StreamAppendResult<TypeConfig>,
    last: Option<LogId>,
) -> AppendResponse {
    match result {
        Ok(matching) if matching == last => AppendResponse::Success,
        Ok(matching) => AppendResponse::PartialSuccess(matching),
        Err(StreamAppendError::Conflict(_)) => AppendResponse::Conflict,
        Err(StreamAppendError::HigherVote(vote)) => AppendResponse::HigherVote(vote),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::Vote;
    use crate::peer::fuzzing::stored;
    use crate::{Proposal, entry::log_id};
    use bytes::Bytes;
    use cairn_types::batch::BatchBuilder;

    fn entry(index: u64, value_bytes: usize) -> RaftEntry {
        let value = vec![7u8; value_bytes];
        let batch = BatchBuilder::new(1_700_000_000_000).record(None, Some(&value), &[]).build();
        let proposal = Proposal { batch: Bytes::from(batch), ticket: Proposal::TICKET_NONE };
        stored(&RaftEntry::normal(3, index, proposal), index)
    }

    fn request(entries: Vec<RaftEntry>) -> AppendRequest {
        AppendRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(2, 9)),
            entries,
            leader_commit: Some(log_id(3, 12)),
        }
    }

    #[test]
    fn a_request_within_the_budget_is_one_part() {
        let whole = request((10..14).map(|i| entry(i, 100)).collect());
        let parts = split(whole.clone(), CHUNK_BYTES_MAX);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].entries, whole.entries);
        assert_eq!(parts[0].prev_log_id, whole.prev_log_id);
        assert_eq!(parts[0].leader_commit, whole.leader_commit);
        let empty = split(request(Vec::new()), CHUNK_BYTES_MAX);
        assert_eq!(empty.len(), 1);
        assert!(empty[0].entries.is_empty());
    }

    #[test]
    fn a_request_over_the_budget_is_split_in_order_and_each_part_continues_the_last() {
        let entries: Vec<RaftEntry> = (10..20).map(|i| entry(i, 1000)).collect();
        let size = entry_bytes(&entries[0]);
        // Three entries fit a part, not four.
        let budget = size * 3 + size / 2;
        let parts = split(request(entries.clone()), budget);
        let counts: Vec<usize> = parts.iter().map(|p| p.entries.len()).collect();
        assert_eq!(counts, [3, 3, 3, 1]);
        let mut prev = Some(log_id(2, 9));
        for (position, part) in parts.iter().enumerate() {
            assert_eq!(part.prev_log_id, prev);
            let bytes: usize = part.entries.iter().map(entry_bytes).sum();
            assert!(bytes <= budget, "{bytes} > {budget}");
            prev = last_of(part);
            // The commit never runs past what the part itself carries, but the last's is the
            // leader's own.
            let commit = if position + 1 == parts.len() { Some(log_id(3, 12)) } else { prev };
            assert_eq!(part.leader_commit, commit.min(Some(log_id(3, 12))));
        }
        let rejoined: Vec<RaftEntry> = parts.into_iter().flat_map(|p| p.entries).collect();
        assert_eq!(rejoined, entries);
        // An entry larger than the budget travels alone.
        let parts = split(request(entries[..2].to_vec()), size / 2);
        assert_eq!(parts.iter().map(|p| p.entries.len()).collect::<Vec<_>>(), [1, 1]);
    }

    #[test]
    fn answers_map_to_stream_results_and_back() {
        let (prev, last) = (Some(log_id(2, 9)), Some(log_id(3, 12)));
        let check = |response: AppendResponse| {
            let result = stream_result(response.clone(), prev, last).unwrap();
            assert_eq!(append_response(result, last), response);
        };
        check(AppendResponse::Success);
        check(AppendResponse::PartialSuccess(Some(log_id(3, 10))));
        check(AppendResponse::Conflict);
        check(AppendResponse::HigherVote(Vote::new(4, 2)));
        // A conflict with nothing before it is a broken peer, not a panic.
        assert!(stream_result(AppendResponse::Conflict, None, last).is_err());
    }
}
