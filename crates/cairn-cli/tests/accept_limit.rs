//! Issue 9: at the open-file limit the Kafka listener's accept loop logged `accept failed` and
//! retried at once, so while descriptors were short (`EMFILE`) it spun and logged without bound.
//!
//! Its own test binary (its own process): one real `cairn serve` whose open-file limit, soft and
//! hard, is lowered to [`OPEN_FILES_MAX`] once it is ready (`prlimit` on the child, so this test
//! process keeps its own limit for the connections it makes). The test fills every descriptor
//! the node has left with connections, checks that an existing connection is still served and
//! that the exhaustion is logged once, then frees them and checks that the node accepts again.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_client::{Client, Options};
use kafka_protocol::messages::MetadataRequest;

/// The node's open-file limit, soft and hard, while the test runs.
const OPEN_FILES_MAX: u64 = 256;
/// How long the test watches the exhausted node for log lines: many of the listener's backoff
/// pauses, and before the fix thousands of failed accepts.
const EXHAUSTED_WATCH: Duration = Duration::from_secs(3);
/// The longest any one step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Between polls of a condition the node reaches on its own.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
const EXHAUSTED_LINE: &str = "accept failed: out of file descriptors";
const RECOVERED_LINE: &str = "accepting connections again";

/// A running `cairn serve`, killed on drop if the test did not stop it.
struct Node {
    child: Child,
    kafka: String,
    admin: SocketAddr,
    log: std::path::PathBuf,
}

impl Node {
    fn start(dir: &Path) -> Node {
        let ports: Vec<u16> = {
            let listeners: Vec<TcpListener> =
                (0..2).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0")).collect();
            listeners.iter().map(|l| l.local_addr().expect("bound").port()).collect()
        };
        let kafka = format!("127.0.0.1:{}", ports[0]);
        let admin: SocketAddr = format!("127.0.0.1:{}", ports[1]).parse().expect("address");
        let log = dir.join("cairn.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(CAIRN);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CAIRN_") {
                command.env_remove(name);
            }
        }
        let child = command
            .args(["serve", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--kafka-listen", &kafka, "--admin-listen", &admin.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("spawn cairn serve");
        let mut node = Node { child, kafka, admin, log };
        node.wait_for("ready", |node| {
            node.get("/health/ready").is_some_and(|r| r.contains(" 200 "))
        });
        node
    }

    /// Polls `condition` until it holds; fails after [`STEP_TIMEOUT`] or if the node exits.
    fn wait_for(&mut self, what: &str, condition: impl Fn(&Node) -> bool) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !condition(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("cairn exited with {status} waiting for {what}\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "{what}: not within {STEP_TIMEOUT:?}");
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// An admin endpoint's whole response, or `None` if it cannot be reached.
    fn get(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&self.admin, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response)
    }

    fn descriptors(&self) -> usize {
        let dir = format!("/proc/{}/fd", self.child.id());
        std::fs::read_dir(dir).expect("/proc/PID/fd").count()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn lower_open_file_limit(&self) {
        use rustix::process::{Pid, Resource, Rlimit, prlimit};
        let limit = Rlimit { current: Some(OPEN_FILES_MAX), maximum: Some(OPEN_FILES_MAX) };
        prlimit(Some(Pid::from_child(&self.child)), Resource::Nofile, limit)
            .expect("lower the node's RLIMIT_NOFILE");
    }

    /// SIGTERM, then a successful exit within [`STEP_TIMEOUT`].
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "cairn exited with {status}\n{}", self.log_text());
                return;
            }
            assert!(Instant::now() < deadline, "no exit within {STEP_TIMEOUT:?} of SIGTERM");
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.try_wait().is_ok_and(|status| status.is_none()) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn served(client: &mut Client) {
    let request = MetadataRequest::default().with_topics(Some(Vec::new()));
    let response = client.send(&request).await.expect("Metadata answered");
    assert_eq!(response.brokers.len(), 1);
}

async fn connect(node: &Node) -> Client {
    let mut options = Options::new(node.kafka.clone());
    options.connect_timeout = STEP_TIMEOUT;
    options.request_timeout = STEP_TIMEOUT;
    Client::connect(&options).await.expect("connect")
}

#[test]
fn accept_at_the_descriptor_limit_backs_off_and_recovers() {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut node = Node::start(temp.path());
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut existing = runtime.block_on(connect(&node));
    node.lower_open_file_limit();

    // More connections than the node has descriptors left: it accepts until EMFILE, the rest
    // wait in its listen backlog.
    let free = OPEN_FILES_MAX as usize - node.descriptors();
    let kafka: SocketAddr = node.kafka.parse().expect("address");
    let filling: Vec<TcpStream> = (0..free + 8)
        .map(|_| TcpStream::connect_timeout(&kafka, STEP_TIMEOUT).expect("connect (backlog)"))
        .collect();
    node.wait_for("the node to run out of descriptors", |node| {
        node.descriptors() >= OPEN_FILES_MAX as usize && node.log_text().contains(EXHAUSTED_LINE)
    });

    // The existing connection is served all along, and the exhaustion is logged once.
    let watched = Instant::now();
    let mut requests = 0;
    while watched.elapsed() < EXHAUSTED_WATCH {
        runtime.block_on(served(&mut existing));
        requests += 1;
    }
    let log = node.log_text();
    assert_eq!(log.matches(EXHAUSTED_LINE).count(), 1, "logged once in {requests} requests");
    assert_eq!(log.matches("accept failed").count(), 1, "and nothing else about it\n{log}");

    // Descriptors freed: the node accepts again, new clients are served.
    drop(filling);
    let mut fresh = runtime.block_on(async {
        tokio::time::timeout(STEP_TIMEOUT, connect(&node)).await.expect("accepted again")
    });
    runtime.block_on(served(&mut fresh));
    runtime.block_on(served(&mut existing));
    let log = node.log_text();
    assert_eq!(log.matches(RECOVERED_LINE).count(), 1, "{log}");
    let metrics = node.get("/metrics").expect("metrics");
    let failures = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("cairn_kafka_accept_errors_total{reason=\"descriptors\"} ")
        })
        .and_then(|count| count.parse::<u64>().ok())
        .expect("failed accepts counted");
    assert!(failures >= 1, "{failures}");
    drop((existing, fresh));
    node.stop();
}
