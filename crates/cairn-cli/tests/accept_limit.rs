//! Issue 9: at the open-file limit the Kafka listener's accept loop logged `accept failed` and
//! retried at once, so while descriptors were short (`EMFILE`) it spun and logged without bound.
//!
//! Its own test binary (its own process): one real `cairn serve` whose open-file limit, soft and
//! hard, is lowered to [`OPEN_FILES_MAX`] once it is ready (`prlimit` on the child, so this test
//! process keeps its own limit for the connections it makes). The test fills every descriptor
//! the node has left with connections, checks that an existing connection is still served while
//! the listener fails accept after accept and logs the exhaustion once, then frees them and
//! checks that the node accepts again.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use cairn_client::{Client, Options};
use cairn_testkit::ProcessNode;
use kafka_protocol::messages::MetadataRequest;

/// The node's open-file limit, soft and hard, while the test runs.
const OPEN_FILES_MAX: u64 = 256;
/// How long the test keeps the node exhausted, serving the existing connection: many of the
/// listener's backoff pauses, and before the fix hundreds of thousands of failed accepts. (The
/// admin listener is out of descriptors too, so the failed accepts are counted afterwards.)
const EXHAUSTED_WATCH: Duration = Duration::from_secs(3);
/// Failed accepts the listener must have counted over [`EXHAUSTED_WATCH`]: its pauses grow from
/// 10 ms to 1 s, so at least this many fit.
const EXHAUSTED_ACCEPTS_MIN: u64 = 5;
/// The longest any one step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
const EXHAUSTED_LINE: &str = "accept failed: out of file descriptors";
const RECOVERED_LINE: &str = "accepting connections again";

fn log_text(node: &ProcessNode) -> String {
    std::fs::read_to_string(node.log()).unwrap_or_default()
}

fn descriptors(node: &ProcessNode) -> usize {
    let dir = format!("/proc/{}/fd", node.pid());
    std::fs::read_dir(dir).expect("/proc/PID/fd").count()
}

/// Failed accepts for want of descriptors, from the node's metrics.
fn failed_accepts(node: &ProcessNode) -> u64 {
    let (_, metrics) = node.admin_get("/metrics");
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("cairn_kafka_accept_errors_total{reason=\"descriptors\"} ")
        })
        .and_then(|count| count.parse::<u64>().ok())
        .unwrap_or(0)
}

fn lower_open_file_limit(node: &ProcessNode) {
    use rustix::process::{Pid, Resource, Rlimit, prlimit};
    let pid = i32::try_from(node.pid()).ok().and_then(Pid::from_raw).expect("a child's pid");
    let limit = Rlimit { current: Some(OPEN_FILES_MAX), maximum: Some(OPEN_FILES_MAX) };
    prlimit(Some(pid), Resource::Nofile, limit).expect("lower the node's RLIMIT_NOFILE");
}

async fn served(client: &mut Client) {
    let request = MetadataRequest::default().with_topics(Some(Vec::new()));
    let response = client.send(&request).await.expect("Metadata answered");
    assert_eq!(response.brokers.len(), 1);
}

async fn connect(node: &ProcessNode) -> Client {
    let mut options = Options::new(node.bootstrap().to_owned());
    options.connect_timeout = STEP_TIMEOUT;
    options.request_timeout = STEP_TIMEOUT;
    Client::connect(&options).await.expect("connect")
}

#[test]
fn accept_at_the_descriptor_limit_backs_off_and_recovers() {
    let mut node = ProcessNode::start(CAIRN);
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut existing = runtime.block_on(connect(&node));
    lower_open_file_limit(&node);

    // More connections than the node has descriptors left: it accepts until EMFILE, the rest
    // wait in its listen backlog.
    let free = OPEN_FILES_MAX as usize - descriptors(&node);
    let kafka: SocketAddr = node.bootstrap().parse().expect("address");
    let filling: Vec<TcpStream> = (0..free + 8)
        .map(|_| TcpStream::connect_timeout(&kafka, STEP_TIMEOUT).expect("connect (backlog)"))
        .collect();

    node.wait_until("the node to run out of descriptors", STEP_TIMEOUT, |node| {
        let open = descriptors(node);
        if open >= OPEN_FILES_MAX as usize && log_text(node).contains(EXHAUSTED_LINE) {
            Ok(())
        } else {
            Err(format!("{open} descriptors open"))
        }
    });

    // The existing connection is served all along, and the exhaustion is logged once.
    let watched = Instant::now();
    let mut requests = 0;
    while watched.elapsed() < EXHAUSTED_WATCH {
        runtime.block_on(served(&mut existing));
        requests += 1;
    }
    let log = log_text(&node);
    assert_eq!(log.matches(EXHAUSTED_LINE).count(), 1, "logged once in {requests} requests");
    assert_eq!(log.matches("accept failed").count(), 1, "and nothing else about it\n{log}");

    // Descriptors freed: the node accepts again, new clients are served.
    drop(filling);
    let mut fresh = runtime.block_on(async {
        tokio::time::timeout(STEP_TIMEOUT, connect(&node)).await.expect("accepted again")
    });
    runtime.block_on(served(&mut fresh));
    runtime.block_on(served(&mut existing));
    let log = log_text(&node);
    assert_eq!(log.matches(RECOVERED_LINE).count(), 1, "{log}");
    let failed = failed_accepts(&node);
    assert!(failed >= EXHAUSTED_ACCEPTS_MIN, "{failed} failed accepts, one line");
    drop((existing, fresh));
    drop(node.stop());
}
