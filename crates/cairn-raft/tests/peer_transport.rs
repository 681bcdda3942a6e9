//! The peer transport over real TCP on 127.0.0.1: handshakes accepted and refused (each refusal
//! a `Goodbye`, a close and one log line per episode), calls of every kind both ways, deadlines,
//! bounded queues and in-flight requests, reconnection through a [`FaultProxy`], and peers
//! that break the protocol. No sleeps: waits are on the transport's counters and connection
//! state, each bounded by [`WAIT`].

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_raft::peer::frame::{self, Frame, PROTOCOL_VERSION_MAX};
use cairn_raft::peer::fuzzing::{sample_entries, stored};
use cairn_raft::peer::{
    AppendRequest, AppendResponse, CallError, ClusterId, ErrorAnswer, ErrorCode, GoodbyeReason,
    GroupAnswer, GroupHandler, GroupRequest, HandlerFuture, Heartbeat, Hello, Lane, Message,
    PeerConfig, PeerNode, PeerStats, Request, Response, Router, SnapshotResponse, Tcp, Unreachable,
    Vote, VoteRequest, VoteResponse,
};
use cairn_raft::{LogId, Proposal, RaftEntry};
use cairn_testkit::{Fault, FaultProxy};
use cairn_types::batch::BatchBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing_subscriber::fmt::MakeWriter;

/// The longest any condition of these tests may take to come true.
const WAIT: Duration = Duration::from_secs(20);

const CLUSTER: ClusterId = ClusterId(*b"cairn-test-clstr");

/// The group every test node hosts.
const GROUP: u64 = 7;

// ---------------------------------------------------------------------------------------------
// Harness: log capture, handlers, nodes, raw peers.
// ---------------------------------------------------------------------------------------------

/// The log lines of the test's thread (every task of a current-thread runtime runs on it).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (logs.clone(), tracing::subscriber::set_default(subscriber))
    }

    /// The lines holding every one of `needles`.
    fn lines(&self, needles: &[&str]) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned();
        text.lines()
            .filter(|line| needles.iter().all(|needle| line.contains(needle)))
            .map(str::to_owned)
            .collect()
    }
}

/// A group that grants every vote and accepts every append, after waiting for a permit of
/// `gate` (open unless a test closes it); counts what it ran.
struct Grant {
    runs: AtomicU64,
    entered: Semaphore,
    gate: Arc<Semaphore>,
}

impl Grant {
    fn open() -> Arc<Grant> {
        Grant::with_gate(Semaphore::MAX_PERMITS)
    }

    fn with_gate(permits: usize) -> Arc<Grant> {
        Arc::new(Grant {
            runs: AtomicU64::new(0),
            entered: Semaphore::new(0),
            gate: Arc::new(Semaphore::new(permits)),
        })
    }

    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }
}

/// A [`Grant`] as a group's handler.
struct Granting(Arc<Grant>);

impl GroupHandler for Granting {
    fn handle(&self, request: GroupRequest) -> HandlerFuture {
        let grant = Arc::clone(&self.0);
        Box::pin(async move {
            grant.runs.fetch_add(1, Ordering::SeqCst);
            grant.entered.add_permits(1);
            let _permit = grant.gate.acquire().await.expect("gate open");
            Ok(match request {
                GroupRequest::Vote(r) => {
                    Response::Vote(VoteResponse::new(r.vote, r.last_log_id, true))
                }
                GroupRequest::PreVote(r) => {
                    Response::PreVote(VoteResponse::new(r.vote, r.last_log_id, false))
                }
                GroupRequest::Heartbeat(_) => Response::Append(AppendResponse::Success),
                GroupRequest::Append(r) if r.entries.is_empty() => {
                    Response::Append(AppendResponse::Success)
                }
                GroupRequest::Append(r) => {
                    let last = r.entries.last().map(|e| LogId::new_term_index(e.term(), e.index()));
                    Response::Append(AppendResponse::PartialSuccess(last))
                }
                GroupRequest::Snapshot(r) => Response::Snapshot(SnapshotResponse { vote: r.vote }),
                GroupRequest::CoreSnapshot(r) => {
                    Response::Snapshot(SnapshotResponse { vote: r.vote })
                }
                GroupRequest::CoordCall(bytes) => Response::CoordCall(bytes),
                GroupRequest::CoreWrite(_) => {
                    return Err(ErrorAnswer {
                        code: ErrorCode::Unsupported,
                        message: "not the core".to_owned(),
                    });
                }
            })
        })
    }
}

/// A group whose handler fails.
struct Failing;

impl GroupHandler for Failing {
    fn handle(&self, _: GroupRequest) -> HandlerFuture {
        let message = "raft stopped".to_owned();
        Box::pin(async move { Err(ErrorAnswer { code: ErrorCode::Failed, message }) })
    }
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let address = listener.local_addr().expect("address");
    (listener, address)
}

fn config(node: u64, cluster: Option<ClusterId>, peers: &[(u64, SocketAddr)]) -> PeerConfig {
    let peers: BTreeMap<u64, String> = peers.iter().map(|(id, a)| (*id, a.to_string())).collect();
    let mut config = PeerConfig::new(node, cluster, 1000 + node, peers);
    config.backoff_min = Duration::from_millis(5);
    config.backoff_max = Duration::from_millis(40);
    config
}

/// A node serving `grant` as [`GROUP`].
fn start(config: PeerConfig, listener: TcpListener, grant: &Arc<Grant>) -> PeerNode {
    let router = Arc::new(Router::new());
    router.register(GROUP, Arc::new(Granting(Arc::clone(grant))));
    PeerNode::start(config, Tcp, listener, router)
}

/// Nodes 1 and 2 of [`CLUSTER`], connected, each hosting a [`Grant`].
async fn pair() -> (PeerNode, PeerNode, Arc<Grant>, Arc<Grant>) {
    let ((l1, a1), (l2, a2)) = (listener().await, listener().await);
    let (g1, g2) = (Grant::open(), Grant::open());
    let n1 = start(config(1, Some(CLUSTER), &[(2, a2)]), l1, &g1);
    let n2 = start(config(2, Some(CLUSTER), &[(1, a1)]), l2, &g2);
    assert!(n1.wait_connected(2, WAIT).await, "1 → 2 connected");
    assert!(n2.wait_connected(1, WAIT).await, "2 ← 1 connected");
    (n1, n2, g1, g2)
}

async fn wait_stats(node: &PeerNode, what: &str, condition: impl FnMut(&PeerStats) -> bool) {
    let mut stats = node.stats();
    if tokio::time::timeout(WAIT, stats.wait_for(condition)).await.is_err() {
        panic!("timed out waiting for {what}: {:?}", *stats.borrow());
    }
}

fn deadline() -> Instant {
    Instant::now() + WAIT
}

fn vote_request() -> VoteRequest {
    VoteRequest::new(Vote::new(3, 1), Some(LogId::new_term_index(2, 10)))
}

fn append_request(entries: Vec<RaftEntry>) -> AppendRequest {
    AppendRequest {
        vote: Vote::new_committed(5, 1),
        prev_log_id: Some(LogId::new_term_index(4, 9)),
        entries,
        leader_commit: Some(LogId::new_term_index(4, 8)),
    }
}

fn hello(node: u64, lane: Lane, cluster: Option<ClusterId>) -> Hello {
    Hello {
        version_min: 1,
        version_max: PROTOCOL_VERSION_MAX,
        lane,
        cluster_id: cluster,
        node_id: node,
        incarnation: 1,
    }
}

/// A peer written by hand: frames in and out of a raw TCP stream.
struct Raw(TcpStream);

impl Raw {
    async fn dial(address: SocketAddr) -> Raw {
        Raw(TcpStream::connect(address).await.expect("connect"))
    }

    async fn send(&mut self, correlation: u64, group: u64, ttl_ms: u32, message: Message) {
        let frame = Frame { version: PROTOCOL_VERSION_MAX, correlation, group, ttl_ms, message };
        self.write(&frame::encode(&frame).expect("encodes")).await;
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).await.expect("write");
    }

    /// The next frame, or `None` at the end of the stream.
    async fn receive(&mut self) -> Option<Frame> {
        let read = async {
            let mut prefix = [0; 4];
            self.0.read_exact(&mut prefix).await.ok()?;
            let length = frame::frame_length(prefix, u32::MAX).expect("a frame length");
            let mut rest = vec![0; length];
            self.0.read_exact(&mut rest).await.ok()?;
            Some(frame::decode(Bytes::from(rest)).expect("a frame"))
        };
        tokio::time::timeout(WAIT, read).await.expect("a frame or the end within the wait")
    }

    /// Connects to `address` as node `node` on `lane` and completes the handshake.
    async fn handshake(address: SocketAddr, node: u64, lane: Lane) -> Raw {
        let mut raw = Raw::dial(address).await;
        raw.send(0, 0, 0, Message::Hello(hello(node, lane, Some(CLUSTER)))).await;
        let answer = raw.receive().await.expect("an answer");
        assert!(matches!(answer.message, Message::Hello(_)), "{answer:?}");
        raw
    }
}

// ---------------------------------------------------------------------------------------------
// Calls.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn calls_of_every_kind_round_trip_both_ways() {
    let (n1, n2, g1, g2) = pair().await;
    let to2 = n1.client(2);
    let vote = to2.call(GROUP, Request::Vote(vote_request()), deadline()).await.expect("vote");
    assert_eq!(
        vote,
        Response::Vote(VoteResponse::new(
            Vote::new(3, 1),
            Some(LogId::new_term_index(2, 10)),
            true
        ))
    );
    let pre =
        to2.call(GROUP, Request::PreVote(vote_request()), deadline()).await.expect("pre-vote");
    assert!(matches!(pre, Response::PreVote(VoteResponse { vote_granted: false, .. })));
    let append = Request::Append(append_request(sample_entries()));
    let appended = to2.call(GROUP, append, deadline()).await.expect("append");
    assert_eq!(
        appended,
        Response::Append(AppendResponse::PartialSuccess(Some(LogId::new_term_index(5, 12))))
    );
    let heartbeats = [GROUP, 8, GROUP]
        .map(|group| Heartbeat { group, request: append_request(Vec::new()) })
        .to_vec();
    let answers =
        to2.call(0, Request::Heartbeats(heartbeats), deadline()).await.expect("heartbeats");
    let Response::Heartbeats(answers) = answers else { panic!("{answers:?}") };
    let answers: Vec<_> = answers.into_iter().map(|a| (a.group, a.answer)).collect();
    assert_eq!(
        answers,
        [
            (GROUP, GroupAnswer::Append(AppendResponse::Success)),
            (8, GroupAnswer::UnknownGroup),
            (GROUP, GroupAnswer::Append(AppendResponse::Success)),
        ]
    );
    assert_eq!(g2.runs(), 5);
    // The accepting node calls over the same connections.
    let back = n2.client(1).call(GROUP, Request::Vote(vote_request()), deadline()).await;
    assert!(matches!(back, Ok(Response::Vote(_))), "{back:?}");
    assert_eq!(g1.runs(), 1);
    n1.shutdown().await;
    n2.shutdown().await;
}

#[tokio::test]
async fn unknown_groups_and_failed_handlers_are_answered() {
    let ((l1, a1), (l2, a2)) = (listener().await, listener().await);
    let router = Arc::new(Router::new());
    router.register(9, Arc::new(Failing));
    let _n2 = PeerNode::start(config(2, Some(CLUSTER), &[(1, a1)]), Tcp, l2, router);
    let n1 = start(config(1, Some(CLUSTER), &[(2, a2)]), l1, &Grant::open());
    assert!(n1.wait_connected(2, WAIT).await);
    let to2 = n1.client(2);
    let unknown = to2.call(GROUP, Request::Vote(vote_request()), deadline()).await;
    assert!(matches!(unknown, Err(CallError::UnknownGroup)), "{unknown:?}");
    let failed = to2.call(9, Request::Append(append_request(Vec::new())), deadline()).await;
    assert!(
        matches!(&failed, Err(CallError::Remote(ErrorAnswer { code: ErrorCode::Failed, message })) if message == "raft stopped"),
        "{failed:?}"
    );
    // Not connected: no peer 3.
    let nowhere = n1.client(3).call(GROUP, Request::Vote(vote_request()), deadline()).await;
    assert!(
        matches!(nowhere, Err(CallError::Unreachable(Unreachable::NotConnected))),
        "{nowhere:?}"
    );
}

#[tokio::test]
async fn an_entry_not_in_its_stored_form_is_not_sent() {
    let (n1, _n2, _, g2) = pair().await;
    let produced = BatchBuilder::new(0).record(None, Some(b"v"), &[]).build();
    let fresh = RaftEntry::normal(5, 13, Proposal { batch: Bytes::from(produced), ticket: 1 });
    let to2 = n1.client(2);
    let call = to2.call(GROUP, Request::Append(append_request(vec![fresh])), deadline()).await;
    assert!(matches!(call, Err(CallError::Encode(_))), "{call:?}");
    assert_eq!(g2.runs(), 0);
}

// ---------------------------------------------------------------------------------------------
// Deadlines and bounds.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_call_fails_at_its_deadline() {
    let ((l1, a1), (l2, a2)) = (listener().await, listener().await);
    let stuck = Grant::with_gate(0);
    let n1 = start(config(1, Some(CLUSTER), &[(2, a2)]), l1, &Grant::open());
    let _n2 = start(config(2, Some(CLUSTER), &[(1, a1)]), l2, &stuck);
    assert!(n1.wait_connected(2, WAIT).await);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(300);
    let call = n1.client(2).call(GROUP, Request::Vote(vote_request()), deadline).await;
    assert!(matches!(call, Err(CallError::Timeout)), "{call:?}");
    assert!(Instant::now() >= deadline && started.elapsed() < WAIT);
    let past = n1.client(2).call(GROUP, Request::Vote(vote_request()), started).await;
    assert!(matches!(past, Err(CallError::Timeout)), "a call past its deadline is not sent");
}

/// A request whose `ttl_ms` ran out is dropped unrun and unanswered; the next is answered.
#[tokio::test]
async fn an_expired_request_is_not_run() {
    let (l2, a2) = listener().await;
    let grant = Grant::open();
    let n2 =
        start(config(2, Some(CLUSTER), &[(1, "127.0.0.1:9".parse().expect("addr"))]), l2, &grant);
    let mut raw = Raw::handshake(a2, 1, Lane::Control).await;
    raw.send(1, GROUP, 0, Message::Vote(vote_request())).await;
    raw.send(2, GROUP, 5000, Message::Vote(vote_request())).await;
    let answer = raw.receive().await.expect("an answer");
    assert_eq!(answer.correlation, 2, "only the live request is answered");
    assert!(matches!(answer.message, Message::VoteAnswer(_)));
    assert_eq!(grant.runs(), 1);
    assert_eq!(n2.stats().borrow().requests_expired, 1);
}

#[tokio::test]
async fn requests_in_flight_are_bounded_per_connection() {
    let ((l1, a1), (l2, a2)) = (listener().await, listener().await);
    let stuck = Grant::with_gate(0);
    let mut c2 = config(2, Some(CLUSTER), &[(1, a1)]);
    c2.inbound_requests_max = 1;
    let n2 = start(c2, l2, &stuck);
    let n1 = start(config(1, Some(CLUSTER), &[(2, a2)]), l1, &Grant::open());
    assert!(n1.wait_connected(2, WAIT).await);
    let to2 = n1.client(2);
    let first = tokio::spawn({
        let to2 = to2.clone();
        async move { to2.call(GROUP, Request::Vote(vote_request()), deadline()).await }
    });
    let _entered = tokio::time::timeout(WAIT, stuck.entered.acquire()).await.expect("first runs");
    let second = to2.call(GROUP, Request::Vote(vote_request()), deadline()).await;
    assert!(
        matches!(second, Err(CallError::Remote(ErrorAnswer { code: ErrorCode::Busy, .. }))),
        "{second:?}"
    );
    stuck.gate.add_permits(1);
    assert!(matches!(first.await.expect("joined"), Ok(Response::Vote(_))));
    assert_eq!(n2.stats().borrow().requests_busy, 1);
}

/// A peer that completes the handshake and then reads nothing: the sender's data lane fills
/// its queue bound, and from then on calls fail at once instead of queueing more.
#[tokio::test]
async fn a_stalled_peer_fails_calls_at_once_within_the_queue_bound() {
    let (l1, _) = listener().await;
    let (stalled, a2) = listener().await;
    let queue_bytes_max = 1024 * 1024;
    let mut c1 = config(1, Some(CLUSTER), &[(2, a2)]);
    c1.data_queue_bytes_max = queue_bytes_max;
    let n1 = start(c1, l1, &Grant::open());
    // Node 2 answers both handshakes, then never reads again.
    let peer = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in Lane::ALL {
            let (stream, _) = stalled.accept().await.expect("accept");
            let mut raw = Raw(stream);
            let Some(Frame { message: Message::Hello(theirs), .. }) = raw.receive().await else {
                panic!("no hello")
            };
            raw.send(0, 0, 0, Message::Hello(hello(2, theirs.lane, Some(CLUSTER)))).await;
            held.push(raw);
        }
        std::future::pending::<()>().await;
        drop(held);
    });
    assert!(n1.wait_connected(2, WAIT).await);
    let big = vec![1; 256 * 1024];
    let batch = BatchBuilder::new(0).record(None, Some(&big), &[]).build();
    let proposal = Proposal { batch: Bytes::from(batch), ticket: 0 };
    let entry = stored(&RaftEntry::normal(5, 13, proposal), 200);
    let to2 = n1.client(2);
    let mut waiting = Vec::new();
    // Enough to fill the kernel's socket buffers many times over.
    for _ in 0..400 {
        if n1.stats().borrow().calls_queue_full > 0 {
            break;
        }
        let to2 = to2.clone();
        let request = Request::Append(append_request(vec![entry.clone()]));
        waiting.push(tokio::spawn(async move { to2.call(GROUP, request, deadline()).await }));
        tokio::task::yield_now().await;
    }
    let full =
        to2.call(GROUP, Request::Append(append_request(vec![entry.clone()])), deadline()).await;
    assert!(matches!(full, Err(CallError::Unreachable(Unreachable::QueueFull))), "{full:?}");
    let stats = n1.stats().borrow().clone();
    assert!(stats.queued_bytes_peak <= queue_bytes_max as u64, "{stats:?}");
    // Votes still go: the control lane has its own queue.
    assert!(n1.is_connected(2, Lane::Control));
    for call in waiting {
        call.abort();
    }
    peer.abort();
}

// ---------------------------------------------------------------------------------------------
// Handshakes.
// ---------------------------------------------------------------------------------------------

/// Two nodes of different clusters: every dial is refused, but each side logs one line for
/// the episode however often the dialer retries.
#[tokio::test]
async fn another_cluster_is_refused_with_one_log_line_per_episode() {
    let (logs, _guard) = Logs::capture();
    let ((l1, a1), (l2, a2)) = (listener().await, listener().await);
    let other = ClusterId(*b"some-other-clstr");
    let n1 = start(config(1, Some(other), &[(2, a2)]), l1, &Grant::open());
    let n2 = start(config(2, Some(CLUSTER), &[(1, a1)]), l2, &Grant::open());
    wait_stats(&n1, "six refusals", |s| s.refused_by_peer >= 6).await;
    assert!(!n1.is_connected(2, Lane::Control) && !n1.is_connected(2, Lane::Data));
    wait_stats(&n2, "six refusals", |s| s.refused >= 6).await;
    assert_eq!(
        logs.lines(&["node_id=2", "peer handshake refused", "WrongCluster"]).len(),
        1,
        "acceptor"
    );
    let dialer = logs.lines(&["node_id=1", "cannot connect to peer", "WrongCluster"]);
    assert_eq!(dialer.len(), 2, "one per lane: {dialer:?}");
}

/// What a hand-written dialer gets for each wrong `Hello`: a `Goodbye` naming the reason, then
/// the end of the stream.
#[tokio::test]
async fn wrong_hellos_get_a_goodbye_and_a_close() {
    let (l2, a2) = listener().await;
    let (_l3, a3) = listener().await;
    let n2 = start(config(2, None, &[(1, a2), (3, a3)]), l2, &Grant::open());
    let cases = [
        (
            Hello { version_min: 2, version_max: 3, ..hello(1, Lane::Control, None) },
            GoodbyeReason::Version,
        ),
        (hello(9, Lane::Control, None), GoodbyeReason::WrongNode),
        (hello(3, Lane::Data, None), GoodbyeReason::WrongNode),
        (hello(2, Lane::Data, None), GoodbyeReason::WrongNode),
    ];
    for (hello, reason) in cases {
        let mut raw = Raw::dial(a2).await;
        raw.send(0, 0, 0, Message::Hello(hello.clone())).await;
        let answer = raw.receive().await.expect("an answer");
        assert!(
            matches!(&answer.message, Message::Goodbye(goodbye) if goodbye.reason == reason),
            "{hello:?}: {answer:?}"
        );
        assert!(raw.receive().await.is_none(), "{hello:?}: closed after the goodbye");
    }
    // A node without a cluster id yet accepts any (bootstrap).
    let mut raw = Raw::dial(a2).await;
    raw.send(0, 0, 0, Message::Hello(hello(1, Lane::Control, Some(CLUSTER)))).await;
    assert!(matches!(raw.receive().await.map(|f| f.message), Some(Message::Hello(_))));
    wait_stats(&n2, "four refusals", |s| s.refused == 4).await;
}

/// The dialer checks the acceptor too: a node answering at a peer's address with another id
/// is told `WrongNode` and never used.
#[tokio::test]
async fn the_dialer_refuses_the_wrong_node() {
    let (logs, _guard) = Logs::capture();
    let ((l1, a1), (l3, a3)) = (listener().await, listener().await);
    // Node 1 believes node 2 lives where node 3 does.
    let n1 = start(config(1, Some(CLUSTER), &[(2, a3)]), l1, &Grant::open());
    let _n3 = start(config(3, Some(CLUSTER), &[(1, a1)]), l3, &Grant::open());
    wait_stats(&n1, "refusals", |s| s.refused >= 4).await;
    assert!(!n1.is_connected(2, Lane::Control));
    assert_eq!(logs.lines(&["node_id=1", "cannot connect to peer", "WrongNode"]).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Faults: cuts, blackholes, garbage.
// ---------------------------------------------------------------------------------------------

/// Nodes 1 and 2, node 1 reaching node 2 through a [`FaultProxy`] (node 2 dials node 1
/// directly), connected: the proxy, node 1, node 2.
async fn proxied_pair() -> (FaultProxy, PeerNode, PeerNode) {
    let ((l1, a1), (l2, a2)) = (listener().await, listener().await);
    let proxy = FaultProxy::start(a2);
    let n1 = start(config(1, Some(CLUSTER), &[(2, proxy.address())]), l1, &Grant::open());
    let n2 = start(config(2, Some(CLUSTER), &[(1, a1)]), l2, &Grant::open());
    assert!(n1.wait_connected(2, WAIT).await);
    (proxy, n1, n2)
}

/// Node 1 reaches node 2 through a proxy. Cut and refused, the lanes go down and calls fail
/// at once; healed, the dialer reconnects on its own and calls go through again.
#[tokio::test]
async fn reconnects_after_a_cut() {
    let (logs, _guard) = Logs::capture();
    let (proxy, n1, _n2) = proxied_pair().await;
    let to2 = n1.client(2);
    assert!(to2.call(GROUP, Request::Vote(vote_request()), deadline()).await.is_ok());

    proxy.set(Fault::Reject);
    proxy.cut();
    let failures = n1.stats().borrow().dial_failures;
    wait_stats(&n1, "failed redials", |s| s.dial_failures >= failures + 6).await;
    let down = to2.call(GROUP, Request::Vote(vote_request()), deadline()).await;
    assert!(matches!(down, Err(CallError::Unreachable(Unreachable::NotConnected))), "{down:?}");
    // One line per lane for the whole episode of failed redials.
    assert_eq!(logs.lines(&["node_id=1", "cannot connect to peer"]).len(), 2);

    proxy.set(Fault::Pass);
    assert!(n1.wait_connected(2, WAIT).await, "reconnected");
    assert!(to2.call(GROUP, Request::Vote(vote_request()), deadline()).await.is_ok());
    assert!(n1.stats().borrow().connections >= 4);
}

/// A blackholed link: calls fail at their deadline, never hang; healed and cut, it recovers.
#[tokio::test]
async fn a_blackholed_link_times_out_then_recovers() {
    let (proxy, n1, _n2) = proxied_pair().await;
    let to2 = n1.client(2);
    proxy.set(Fault::Drop(cairn_testkit::Direction::Backward));
    let short = Instant::now() + Duration::from_millis(300);
    let lost = to2.call(GROUP, Request::Vote(vote_request()), short).await;
    assert!(matches!(lost, Err(CallError::Timeout)), "{lost:?}");
    proxy.set(Fault::Pass);
    proxy.cut();
    let mut answered = false;
    let until = Instant::now() + WAIT;
    while !answered && Instant::now() < until {
        if !n1.wait_connected(2, WAIT).await {
            break;
        }
        answered = to2.call(GROUP, Request::Vote(vote_request()), deadline()).await.is_ok();
    }
    assert!(answered, "calls go through after the link healed");
}

/// After a good handshake, a peer that sends an oversized frame, a frame with a bad CRC or
/// bytes that are no frame at all is disconnected, with one warning line each.
#[tokio::test]
async fn protocol_violations_disconnect_with_a_log_line() {
    let (logs, _guard) = Logs::capture();
    let (l2, a2) = listener().await;
    let grant = Grant::open();
    let n2 =
        start(config(2, Some(CLUSTER), &[(1, "127.0.0.1:9".parse().expect("addr"))]), l2, &grant);
    let valid = frame::encode(&Frame {
        version: PROTOCOL_VERSION_MAX,
        correlation: 1,
        group: GROUP,
        ttl_ms: 5000,
        message: Message::Vote(vote_request()),
    })
    .expect("encodes");
    let mut bad_crc = valid.to_vec();
    bad_crc[20] ^= 0x01;
    let mut garbage = 40_u32.to_be_bytes().to_vec();
    garbage.extend((0..40_u8).map(|b| b.wrapping_mul(37)));
    let cases: [(&str, Vec<u8>); 3] = [
        ("oversized", 0x7fff_ffff_u32.to_be_bytes().to_vec()),
        ("bad crc", bad_crc),
        ("garbage", garbage),
    ];
    for (case, bytes) in &cases {
        let mut raw = Raw::handshake(a2, 1, Lane::Control).await;
        raw.write(bytes).await;
        assert!(raw.receive().await.is_none(), "{case}: disconnected");
    }
    wait_stats(&n2, "three violations", |s| s.protocol_errors >= 3).await;
    assert_eq!(logs.lines(&["node_id=2", "protocol violation"]).len(), 3);
    assert_eq!(logs.lines(&["protocol violation", "limit is"]).len(), 1, "oversized named");
    assert_eq!(logs.lines(&["protocol violation", "crc32c"]).len(), 2, "crc named");
    assert_eq!(grant.runs(), 0);
}

/// Before its handshake is accepted a connection may not send more than a handshake frame's
/// bound: an HTTP request (a 1.2 GB "length") is closed without allocating for it.
#[tokio::test]
async fn garbage_before_the_handshake_is_closed() {
    let (logs, _guard) = Logs::capture();
    let (l2, a2) = listener().await;
    let _n2 = start(config(2, Some(CLUSTER), &[]), l2, &Grant::open());
    let mut raw = Raw::dial(a2).await;
    raw.write(b"GET / HTTP/1.1\r\nHost: cairn\r\n\r\n").await;
    assert!(raw.receive().await.is_none());
    // The log line is written after the close; the next handshake is served after it.
    let mut next = Raw::dial(a2).await;
    next.send(0, 0, 0, Message::Hello(hello(9, Lane::Control, Some(CLUSTER)))).await;
    assert!(matches!(next.receive().await.map(|f| f.message), Some(Message::Goodbye(_))));
    assert_eq!(logs.lines(&["node_id=2", "peer handshake failed", "limit is 1024"]).len(), 1);
}

/// A lane whose stream stalls without an error (the proxy holds every byte, as a middlebox or
/// a simulated network may): after `PEER_LANE_SILENT_TIMEOUTS_MAX` calls time out with nothing
/// from the peer for `PEER_LANE_SILENT_MS`, the lane is closed as stuck and dialled again, so
/// calls go through once the path is clear, without anyone cutting the old connection.
#[tokio::test]
async fn a_stalled_lane_is_closed_and_dialled_again() {
    let (logs, _guard) = Logs::capture();
    let (proxy, n1, _n2) = proxied_pair().await;
    let to2 = n1.client(2);
    assert!(to2.call(GROUP, Request::Vote(vote_request()), deadline()).await.is_ok());

    // Held for an hour: the open connection is stuck, and so is any new one for now.
    let connections = n1.stats().borrow().connections;
    proxy.set(Fault::Delay(Duration::from_secs(3600)));
    // Calls time out for longer than the lane may stay silent (the last one after it).
    let silent = Duration::from_millis(cairn_types::limits::PEER_LANE_SILENT_MS);
    let calls = cairn_types::limits::PEER_LANE_SILENT_TIMEOUTS_MAX;
    let each = silent / (calls - 1) + Duration::from_millis(50);
    for _ in 0..calls {
        let lost = to2.call(GROUP, Request::Vote(vote_request()), Instant::now() + each).await;
        assert!(matches!(lost, Err(CallError::Timeout)), "{lost:?}");
    }

    // The path clears (the held connection is never cut): the lane was closed as stuck and is
    // dialled again, so a call goes through; on the held connection it would time out.
    proxy.set(Fault::Pass);
    wait_stats(&n1, "the stuck lane dialled again", |s| s.connections > connections).await;
    let answered = to2.call(GROUP, Request::Vote(vote_request()), deadline()).await;
    assert!(answered.is_ok(), "{answered:?}");
    assert_eq!(logs.lines(&["node_id=1", "peer connection stuck"]).len(), 1);
}
