//! One established peer connection (one lane of one node pair, after the handshake): its
//! bounded outbound queue, the calls waiting for answers, and the loop that reads frames, hands
//! requests to the [`Router`] and answers to their callers.
//!
//! Both ends send requests and answers on the same connection; a frame's kind says which it is,
//! and the correlation id (chosen by the requester) matches an answer to its call.
//!
//! Bounds: the outbound queue holds at most `queue_bytes_max` bytes of frames not yet written
//! (a frame is accepted into an empty queue whatever its size), and a call that would pass it
//! fails at once; at most `calls_pending_max` calls wait for answers; at most
//! `inbound_requests_max` requests from the peer run at once, one more is answered `Busy`.
//! A request whose `ttl_ms` ran out before it started is dropped unanswered.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use cairn_types::limits::{PEER_LANE_SILENT_MS, PEER_LANE_SILENT_TIMEOUTS_MAX};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tokio::time::Instant;

use crate::peer::body::{ErrorAnswer, ErrorCode, Goodbye, Lane, Message};
use crate::peer::frame::{self, Frame, FrameError};
use crate::peer::router::{Response, Router};
use crate::peer::stats::PeerStats;

/// Why a call reached no answer from the peer's group (how each maps to openraft's errors:
/// `crate::network`).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request was not sent, or its connection was lost before the answer.
    #[error("peer unreachable: {0}")]
    Unreachable(Unreachable),
    /// No answer before the deadline (the request may have run).
    #[error("no answer before the deadline")]
    Timeout,
    /// The peer hosts no such group.
    #[error("the peer hosts no such group")]
    UnknownGroup,
    /// The peer answered with an error.
    #[error("the peer answered {:?}: {}", .0.code, .0.message)]
    Remote(ErrorAnswer),
    /// The request cannot be encoded (too large, or an entry not in its stored form).
    #[error("cannot encode the request: {0}")]
    Encode(FrameError),
    /// The peer answered with a frame of another kind than the request's answer.
    #[error("answer of frame kind {kind} to the request")]
    UnexpectedAnswer {
        /// The kind of the frame it sent.
        kind: u16,
    },
}

/// Why a request could not reach the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    /// No connection to the peer on that lane (down, or not yet connected).
    #[error("not connected")]
    NotConnected,
    /// The lane's outbound queue is full (the peer, or the network, is slower than the sender).
    #[error("outbound queue full")]
    QueueFull,
    /// As many calls wait for answers on the lane as it allows.
    #[error("too many calls waiting for answers")]
    TooManyPending,
    /// The connection closed before the answer came.
    #[error("connection lost")]
    ConnectionLost,
}

/// A frame queued for writing.
struct Outgoing {
    /// The encoded frame.
    bytes: BytesMut,
    /// A request's deadline: its `ttl_ms` is restamped (and the frame sealed) when written, and
    /// it is not written at all once past it. `None` for answers, which are queued sealed.
    deadline: Option<Instant>,
}

/// The frames waiting for the connection's writer, bounded in bytes.
struct OutQueue {
    /// Frames in order, their bytes, and whether the connection closed.
    state: Mutex<QueueState>,
    /// Wakes the one writer.
    ready: Notify,
    /// Most bytes queued (a frame is accepted into an empty queue whatever its size).
    bytes_max: usize,
}

struct QueueState {
    frames: VecDeque<Outgoing>,
    /// Bytes queued or being written.
    bytes: usize,
    closed: bool,
}

impl OutQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a frame; returns the bytes now queued.
    fn push(&self, outgoing: Outgoing) -> Result<usize, Unreachable> {
        let mut state = self.lock();
        if state.closed {
            return Err(Unreachable::ConnectionLost);
        }
        let length = outgoing.bytes.len();
        if state.bytes > 0 && state.bytes + length > self.bytes_max {
            return Err(Unreachable::QueueFull);
        }
        state.bytes += length;
        state.frames.push_back(outgoing);
        let queued = state.bytes;
        drop(state);
        self.ready.notify_one();
        Ok(queued)
    }

    /// The next frame to write; `None` once the queue is closed.
    async fn pop(&self) -> Option<Outgoing> {
        loop {
            {
                let mut state = self.lock();
                if state.closed {
                    return None;
                }
                if let Some(outgoing) = state.frames.pop_front() {
                    return Some(outgoing);
                }
            }
            // One consumer: a push between the check and here left a permit.
            self.ready.notified().await;
        }
    }

    /// A popped frame of `length` bytes was written (or dropped).
    fn written(&self, length: usize) {
        let mut state = self.lock();
        state.bytes = state.bytes.saturating_sub(length);
    }

    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.frames.clear();
        state.bytes = 0;
        drop(state);
        self.ready.notify_one();
    }
}

/// The limits of one connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) queue_bytes_max: usize,
    pub(crate) calls_pending_max: usize,
    pub(crate) inbound_requests_max: usize,
}

/// An established connection to one peer on one lane.
pub(crate) struct Connection {
    /// The peer's node id.
    pub(crate) peer: u64,
    /// Which lane it is.
    pub(crate) lane: Lane,
    /// The protocol version negotiated by the handshake; every frame carries it.
    version: u16,
    queue: OutQueue,
    /// Calls waiting for answers, by correlation id.
    pending: Mutex<BTreeMap<u64, oneshot::Sender<Message>>>,
    calls_pending_max: usize,
    next_correlation: AtomicU64,
    /// Permits for the peer's requests running at once.
    inbound: Arc<Semaphore>,
    /// The node's counters.
    stats: watch::Sender<PeerStats>,
    /// Calls timed out in a row since the last frame from the peer.
    silent_timeouts: AtomicU32,
    /// When the connection was made, and the last frame from the peer (ms after it).
    opened: Instant,
    last_frame_ms: AtomicU64,
    /// Set when this node closed the connection as stuck.
    stalled: AtomicBool,
}

/// Why a connection ended, for its one log line.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The peer closed it between frames.
    PeerClosed,
    /// The peer said goodbye.
    Goodbye(Goodbye),
    /// Reading or writing failed.
    Io(io::Error),
    /// The peer broke the protocol: garbage, an oversized frame, a bad CRC, a frame out of place.
    Protocol(String),
    /// This node closed it: replaced by a newer connection, or shutting down.
    Closed,
    /// This node closed it as stuck: [`PEER_LANE_SILENT_TIMEOUTS_MAX`] calls timed out in a row
    /// with nothing at all from the peer for [`PEER_LANE_SILENT_MS`]. The lane is dialled again.
    Stalled,
}

impl Connection {
    pub(crate) fn new(
        peer: u64,
        lane: Lane,
        version: u16,
        limits: Limits,
        stats: watch::Sender<PeerStats>,
    ) -> Connection {
        Connection {
            peer,
            lane,
            version,
            queue: OutQueue {
                state: Mutex::new(QueueState { frames: VecDeque::new(), bytes: 0, closed: false }),
                ready: Notify::new(),
                bytes_max: limits.queue_bytes_max,
            },
            pending: Mutex::new(BTreeMap::new()),
            calls_pending_max: limits.calls_pending_max,
            next_correlation: AtomicU64::new(1),
            inbound: Arc::new(Semaphore::new(limits.inbound_requests_max)),
            stats,
            silent_timeouts: AtomicU32::new(0),
            opened: Instant::now(),
            last_frame_ms: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
        }
    }

    /// A call timed out, or could not even be queued (the queue or the pending calls full):
    /// after [`PEER_LANE_SILENT_TIMEOUTS_MAX`] in a row with no frame from the peer for
    /// [`PEER_LANE_SILENT_MS`], the connection is closed as stuck.
    fn note_timeout(&self) {
        let silent = self.silent_timeouts.fetch_add(1, Ordering::Relaxed) + 1;
        let quiet_ms = self.elapsed_ms().saturating_sub(self.last_frame_ms.load(Ordering::Relaxed));
        if silent >= PEER_LANE_SILENT_TIMEOUTS_MAX
            && quiet_ms >= PEER_LANE_SILENT_MS
            && !self.stalled.swap(true, Ordering::Relaxed)
        {
            self.close();
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn pending(&self) -> MutexGuard<'_, BTreeMap<u64, oneshot::Sender<Message>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the connection: the writer stops (so its loop ends), waiting calls fail.
    pub(crate) fn close(&self) {
        self.queue.close();
        self.pending().clear();
    }

    /// Queues a request now (so calls started one after another are written in that order)
    /// and returns the call, whose answer is awaited until `deadline`.
    pub(crate) fn start_call(
        self: &Arc<Self>,
        group: u64,
        message: Message,
        deadline: Instant,
    ) -> Result<PendingCall, CallError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(CallError::Timeout);
        }
        let request_kind = message.kind();
        let sent = SentKind::of(&message);
        let correlation = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let ttl_ms = ttl_ms(deadline - now);
        let frame = Frame { version: self.version, correlation, group, ttl_ms, message };
        // Sealed when written, with the ttl left then.
        let bytes = frame::encode_unsealed(&frame).map_err(CallError::Encode)?;
        let (sender, answer) = oneshot::channel();
        {
            let mut pending = self.pending();
            if pending.len() >= self.calls_pending_max {
                drop(pending);
                self.note_timeout();
                return Err(CallError::Unreachable(Unreachable::TooManyPending));
            }
            pending.insert(correlation, sender);
        }
        // Removes the entry however the call ends (answered, timed out, dropped).
        let call = PendingCall {
            connection: Arc::clone(self),
            correlation,
            request_kind,
            answer,
            deadline,
        };
        match self.queue.push(Outgoing { bytes, deadline: Some(deadline) }) {
            Ok(queued) => {
                self.stats.send_if_modified(|s| sent.count(s) | s.note_queued(queued));
                Ok(call)
            }
            Err(unreachable) => {
                if unreachable == Unreachable::QueueFull {
                    self.stats.send_modify(|s| s.calls_queue_full += 1);
                    // Nothing drains the queue: as telling as a timeout if the peer is silent.
                    self.note_timeout();
                }
                Err(CallError::Unreachable(unreachable))
            }
        }
    }

    /// Queues an answer; dropped (with a debug line) if the queue is full or closed, in which
    /// case the caller times out.
    fn answer(&self, correlation: u64, group: u64, message: Message) {
        let frame = Frame { version: self.version, correlation, group, ttl_ms: 0, message };
        let encoded = frame::encode_mut(&frame).or_else(|error| {
            let message = format!("cannot encode the answer: {error}");
            let message = Message::Error(ErrorAnswer { code: ErrorCode::Failed, message });
            frame::encode_mut(&Frame { message, ..frame })
        });
        let Ok(bytes) = encoded else { return };
        if let Err(error) = self.queue.push(Outgoing { bytes, deadline: None }) {
            tracing::debug!(peer = self.peer, lane = ?self.lane, %error, "answer dropped");
        }
    }

    /// Runs a request from the peer on its own task, within the inbound bound and its ttl.
    fn serve(self: &Arc<Self>, frame: Frame, router: &Arc<Router>) {
        let Frame { correlation, group, ttl_ms, message, .. } = frame;
        if ttl_ms == 0 {
            self.stats.send_modify(|s| s.requests_expired += 1);
            return;
        }
        let deadline = Instant::now() + Duration::from_millis(u64::from(ttl_ms));
        let Ok(permit) = Arc::clone(&self.inbound).try_acquire_owned() else {
            self.stats.send_modify(|s| s.requests_busy += 1);
            let message = "too many requests in flight on this connection".to_owned();
            self.answer(
                correlation,
                group,
                Message::Error(ErrorAnswer { code: ErrorCode::Busy, message }),
            );
            return;
        };
        self.stats.send_modify(|s| s.requests_run += 1);
        // Started here, in the order the requests arrived (a group's appends keep their order);
        // only the wait for the answer runs on a task.
        let answer = router.start(group, message, deadline);
        let connection = Arc::clone(self);
        crate::runtime::spawn(async move {
            let _permit = permit;
            // Past the deadline nobody waits for the answer.
            if let Ok(answer) = tokio::time::timeout_at(deadline, answer).await {
                connection.answer(correlation, group, answer);
            }
        });
    }

    /// Handles one frame read from the peer.
    fn dispatch(self: &Arc<Self>, frame: Frame, router: &Arc<Router>) -> Result<(), Ended> {
        self.silent_timeouts.store(0, Ordering::Relaxed);
        self.last_frame_ms.store(self.elapsed_ms(), Ordering::Relaxed);
        if frame.version != self.version {
            return Err(Ended::Protocol(format!(
                "frame of version {}, the connection speaks {}",
                frame.version, self.version
            )));
        }
        if frame.message.is_request() {
            self.serve(frame, router);
            return Ok(());
        }
        match frame.message {
            Message::Hello(_) => Err(Ended::Protocol("hello after the handshake".to_owned())),
            Message::Goodbye(goodbye) => Err(Ended::Goodbye(goodbye)),
            answer => {
                // An answer nobody waits for any more (timed out) is dropped.
                if let Some(sender) = self.pending().remove(&frame.correlation) {
                    let _ = sender.send(answer);
                }
                Ok(())
            }
        }
    }
}

/// A request written (or queued) to a peer, waiting for its answer; dropping it forgets the
/// call (an answer that comes later is dropped).
pub struct PendingCall {
    connection: Arc<Connection>,
    correlation: u64,
    /// The kind of the request's frame, which decides the kind its answer must be.
    request_kind: u16,
    answer: oneshot::Receiver<Message>,
    deadline: Instant,
}

impl std::fmt::Debug for PendingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCall")
            .field("peer", &self.connection.peer)
            .field("correlation", &self.correlation)
            .finish()
    }
}

impl PendingCall {
    /// The peer's answer, until the call's deadline.
    ///
    /// # Errors
    /// [`CallError::Timeout`] at the deadline, [`CallError::Unreachable`] if the connection
    /// closed first; [`CallError::UnknownGroup`], [`CallError::Remote`] and
    /// [`CallError::UnexpectedAnswer`] as the peer answered.
    pub async fn answer(mut self) -> Result<Response, CallError> {
        let message = match tokio::time::timeout_at(self.deadline, &mut self.answer).await {
            Ok(Ok(message)) => message,
            Ok(Err(_)) => return Err(CallError::Unreachable(Unreachable::ConnectionLost)),
            Err(_) => {
                self.connection.note_timeout();
                return Err(CallError::Timeout);
            }
        };
        use crate::peer::body::kind;
        match (self.request_kind, message) {
            (kind::VOTE, Message::VoteAnswer(answer)) => Ok(Response::Vote(answer)),
            (kind::PRE_VOTE, Message::PreVoteAnswer(answer)) => Ok(Response::PreVote(answer)),
            (kind::APPEND, Message::AppendAnswer(answer)) => Ok(Response::Append(answer)),
            (kind::HEARTBEATS, Message::HeartbeatsAnswer(answers)) => {
                Ok(Response::Heartbeats(answers))
            }
            (kind::SNAPSHOT | kind::CORE_SNAPSHOT, Message::SnapshotAnswer(answer)) => {
                Ok(Response::Snapshot(answer))
            }
            (kind::CORE_WRITE, Message::CoreWriteAnswer(answer)) => Ok(Response::CoreWrite(answer)),
            (kind::PING, Message::PingAnswer(answer)) => Ok(Response::Ping(answer)),
            (kind::COORD_CALL, Message::CoordCallAnswer(bytes)) => Ok(Response::CoordCall(bytes)),
            (_, Message::UnknownGroup) => Err(CallError::UnknownGroup),
            (_, Message::Error(error)) => Err(CallError::Remote(error)),
            (_, other) => Err(CallError::UnexpectedAnswer { kind: other.kind() }),
        }
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        self.connection.pending().remove(&self.correlation);
    }
}

/// What a sent request counts in [`PeerStats`].
#[derive(Clone, Copy)]
enum SentKind {
    Vote,
    PreVote,
    Append,
    Heartbeats(u64),
    Snapshot,
}

impl SentKind {
    fn of(message: &Message) -> SentKind {
        match message {
            Message::Vote(_) => SentKind::Vote,
            Message::PreVote(_) => SentKind::PreVote,
            Message::Heartbeats(items) => SentKind::Heartbeats(items.len() as u64),
            Message::Snapshot(_) => SentKind::Snapshot,
            _ => SentKind::Append,
        }
    }

    /// Counts the request; true (watchers woken) for all but appends, which are counted
    /// without waking anyone (a `Heartbeats` frame goes at most once per peer and window).
    fn count(self, stats: &mut PeerStats) -> bool {
        match self {
            SentKind::Vote => stats.votes_sent += 1,
            SentKind::PreVote => stats.pre_votes_sent += 1,
            SentKind::Snapshot => stats.snapshots_sent += 1,
            SentKind::Append => {
                stats.appends_sent += 1;
                return false;
            }
            SentKind::Heartbeats(items) => {
                stats.heartbeat_frames_sent += 1;
                stats.heartbeats_sent += items;
            }
        }
        true
    }
}

/// A duration as a frame's `ttl_ms`: at least 1 (0 means expired), at most `u32::MAX`.
pub(crate) fn ttl_ms(left: Duration) -> u32 {
    u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// Runs an established connection until it ends: reads and dispatches frames, writes the
/// queue, and stops on `shutdown`. Closes the connection before it returns.
pub(crate) async fn run<S>(
    connection: Arc<Connection>,
    stream: S,
    router: Arc<Router>,
    mut shutdown: watch::Receiver<bool>,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    // Biased: the order is fixed so that a simulated run replays (network.rs, `full_snapshot`).
    let ended = tokio::select! {
        biased;
        ended = read_frames(&connection, reader, &router) => ended,
        written = write_frames(&connection, writer) => match written {
            Ok(()) => Ended::Closed,
            Err(error) => Ended::Io(error),
        },
        _ = shutdown.wait_for(|stop| *stop) => Ended::Closed,
    };
    connection.close();
    if connection.stalled.load(Ordering::Relaxed) { Ended::Stalled } else { ended }
}

async fn read_frames<R: AsyncRead + Unpin>(
    connection: &Arc<Connection>,
    mut reader: R,
    router: &Arc<Router>,
) -> Ended {
    let mut buffer = BytesMut::new();
    loop {
        let max = cairn_types::limits::PEER_FRAME_BYTES_MAX;
        let frame = match next_frame(&mut reader, &mut buffer, max).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ended::PeerClosed,
            Err(ReadError::Io(error)) => return Ended::Io(error),
            Err(ReadError::Frame(error)) => return Ended::Protocol(error.to_string()),
        };
        if let Err(ended) = connection.dispatch(frame, router) {
            return ended;
        }
    }
}

async fn write_frames<W: AsyncWrite + Unpin>(
    connection: &Connection,
    mut writer: W,
) -> io::Result<()> {
    while let Some(mut outgoing) = connection.queue.pop().await {
        let length = outgoing.bytes.len();
        if let Some(deadline) = outgoing.deadline {
            let now = Instant::now();
            if now >= deadline {
                // Its caller gave up: do not make the peer run it.
                connection.queue.written(length);
                continue;
            }
            frame::restamp_ttl(&mut outgoing.bytes, ttl_ms(deadline - now));
        }
        let written = writer.write_all(&outgoing.bytes).await;
        connection.queue.written(length);
        written?;
    }
    Ok(())
}

/// Why no frame could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The stream failed or ended inside a frame.
    Io(io::Error),
    /// The bytes are not a frame.
    Frame(FrameError),
}

/// Bytes a connection's reader asks the socket for at least, so that one read takes in the
/// small frames (heartbeats, answers, pings) that arrived together.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// The next frame of at most `max` bytes (checked before allocating for it), read through
/// `buffer`: one read takes whatever the socket holds, frames after the one returned stay in
/// `buffer` for the next call, and a frame's bytes are never zeroed before they are read.
/// `None` if the stream ended cleanly between frames. The buffer holds about one frame and one
/// read chunk at most.
async fn next_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut BytesMut,
    max: u32,
) -> Result<Option<Frame>, ReadError> {
    loop {
        let mut wanted = 4;
        if let Some(prefix) = buffer.first_chunk::<4>() {
            let length = frame::frame_length(*prefix, max).map_err(ReadError::Frame)?;
            if buffer.len() >= 4 + length {
                buffer.advance(4);
                let rest = buffer.split_to(length).freeze();
                return frame::decode(rest).map(Some).map_err(ReadError::Frame);
            }
            wanted = 4 + length;
        }
        buffer.reserve((wanted - buffer.len()).max(READ_CHUNK_BYTES));
        if reader.read_buf(buffer).await.map_err(ReadError::Io)? == 0 {
            if buffer.is_empty() {
                return Ok(None);
            }
            return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
    }
}

/// Reads one frame of at most `max` bytes (checked before allocating), and nothing after it
/// (the handshake's: what follows is the connection's); `None` if the stream ended cleanly
/// before it.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
) -> Result<Option<Frame>, ReadError> {
    let mut prefix = [0; 4];
    if reader.read(&mut prefix[..1]).await.map_err(ReadError::Io)? == 0 {
        return Ok(None);
    }
    reader.read_exact(&mut prefix[1..]).await.map_err(ReadError::Io)?;
    let length = frame::frame_length(prefix, max).map_err(ReadError::Frame)?;
    let mut rest = vec![0; length];
    reader.read_exact(&mut rest).await.map_err(ReadError::Io)?;
    frame::decode(Bytes::from(rest)).map(Some).map_err(ReadError::Frame)
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::ReadBuf;

    use cairn_types::limits::PEER_FRAME_BYTES_MAX;

    use super::*;
    use crate::peer::frame::FrameError;

    /// A stream that hands out its bytes in the given pieces, one piece (or what fits) per read.
    struct Pieces(VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut piece) = self.0.pop_front() {
                let n = piece.len().min(buf.remaining());
                buf.put_slice(&piece[..n]);
                if n < piece.len() {
                    self.0.push_front(piece.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    fn frame(correlation: u64, message_bytes: usize) -> Vec<u8> {
        let message = Message::Error(ErrorAnswer {
            code: ErrorCode::Busy,
            message: "x".repeat(message_bytes),
        });
        let frame = Frame { version: 1, correlation, group: 7, ttl_ms: 0, message };
        frame::encode(&frame).expect("encodes").to_vec()
    }

    async fn read_all(pieces: Vec<Vec<u8>>, max: u32) -> Result<Vec<u64>, ReadError> {
        let (mut reader, mut buffer, mut read) = (Pieces(pieces.into()), BytesMut::new(), vec![]);
        while let Some(frame) = next_frame(&mut reader, &mut buffer, max).await? {
            read.push(frame.correlation);
        }
        Ok(read)
    }

    #[tokio::test]
    async fn frames_are_read_whole_however_the_stream_splits_them() {
        let sizes = [0, 10, 300, 40_000, 5];
        let stream: Vec<u8> =
            sizes.iter().enumerate().flat_map(|(i, &n)| frame(i as u64, n)).collect();
        let expected: Vec<u64> = (0..sizes.len() as u64).collect();
        let max = PEER_FRAME_BYTES_MAX;
        // All at once; byte by byte; in pieces that straddle every frame boundary.
        assert_eq!(read_all(vec![stream.clone()], max).await.unwrap(), expected);
        let bytes = stream.iter().map(|&b| vec![b]).collect();
        assert_eq!(read_all(bytes, max).await.unwrap(), expected);
        let pieces = stream.chunks(977).map(<[u8]>::to_vec).collect();
        assert_eq!(read_all(pieces, max).await.unwrap(), expected);
    }

    #[tokio::test]
    async fn a_stream_ending_inside_a_frame_or_announcing_too_much_is_an_error() {
        let whole = frame(1, 100);
        let cut = whole[..whole.len() - 1].to_vec();
        let ended = read_all(vec![cut], PEER_FRAME_BYTES_MAX).await;
        assert!(matches!(ended, Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof));
        let prefix = u32::MAX.to_be_bytes().to_vec();
        let refused = read_all(vec![prefix], PEER_FRAME_BYTES_MAX).await;
        assert!(matches!(refused, Err(ReadError::Frame(FrameError::TooLarge { .. }))));
    }
}
