//! [`ProcessNode`]: a real `cairn serve` process on free loopback ports and a temporary data
//! directory, and [`run`]: any `cairn` command as a process with a deadline.
//!
//! The binary's path is an argument: only the tests of the crate that builds it have it
//! (`env!("CARGO_BIN_EXE_cairn")`), under nextest and `cargo test` alike. Nothing sleeps to
//! synchronise: start-up and other conditions are awaited by polling ([`ProcessNode::wait_until`];
//! each wait ends early if the process exits), every process is awaited with a deadline, and a node not stopped by its test
//! is killed when dropped.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a node has to answer 200 on `/health/ready`, unless its builder says otherwise.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Between two readiness probes (the wait ends early if the process exits).
pub const READY_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long a node has to exit after SIGTERM or SIGKILL, unless its builder says otherwise.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one command run by [`run`] may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of the node's log shown when it fails.
const LOG_TAIL_LINES: usize = 100;

/// `count` distinct loopback ports that were free a moment ago (bound, then released).
///
/// They are taken below Linux's ephemeral range (32768–60999 by default), where the kernel
/// never hands a port to an outgoing connection: a port from `bind(0)` comes from that range,
/// and between its release and the node's bind, another test's outgoing connection could take
/// it. Tests run in parallel processes, so each starts at a point of its own (from its pid and
/// the clock) and steps through the range.
///
/// # Panics
///
/// If `count` free ports cannot be found.
#[must_use]
pub fn free_ports(count: usize) -> Vec<u16> {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let start = std::process::id().wrapping_mul(7919).wrapping_add(nanos);
    let mut held: Vec<TcpListener> = Vec::with_capacity(count);
    for step in 0..SPAN {
        if held.len() == count {
            break;
        }
        // Below FIRST + SPAN = 32000: fits a u16.
        let port = (FIRST + start.wrapping_add(step.wrapping_mul(101)) % SPAN) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        }
    }
    assert_eq!(held.len(), count, "free loopback ports below the ephemeral range");
    held.iter().map(|l| l.local_addr().expect("a bound port").port()).collect()
}

/// A command running `program` without any `CAIRN_*` variable of the caller's environment.
#[must_use]
pub fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CAIRN_") {
            command.env_remove(name);
        }
    }
    command
}

/// What a command did.
#[derive(Debug)]
pub struct Run {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output, lossily decoded.
    pub stdout: String,
    /// Its standard error, lossily decoded.
    pub stderr: String,
}

/// Runs `program args...` with the variables `env` and `stdin` as its standard input, within
/// [`COMMAND_TIMEOUT`].
///
/// # Panics
///
/// If it cannot be started or does not finish in time (it is killed then).
pub fn run(program: impl AsRef<OsStr>, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut command = clean_command(program);
    command.args(args).envs(env.iter().copied());
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn the command");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    // A command that fails early stops reading: a broken pipe here is expected then.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = wait_with_deadline(child, COMMAND_TIMEOUT, &format!("{args:?}"));
    writer.join().expect("the stdin writer does not panic");
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Waits for `child` and collects its piped output within `timeout`; `what` names it in the
/// panic message.
///
/// # Panics
///
/// If it does not exit in time (it is killed first) or cannot be waited for.
pub fn wait_with_deadline(child: Child, timeout: Duration, what: &str) -> Output {
    let pid = child.id();
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match result.recv_timeout(timeout) {
        Ok(output) => output.expect("wait for the process"),
        Err(_) => {
            signal(pid, "KILL");
            panic!("{what} did not finish within {timeout:?}");
        }
    }
}

/// Sends `SIG<name>` to `pid`; whether `kill` succeeded.
fn signal(pid: u32, name: &str) -> bool {
    let sent = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
    sent.is_ok_and(|status| status.success())
}

/// How a [`ProcessNode`] will start: the binary, extra `cairn serve` flags, its bounds and
/// where its log goes. Reusable: each start is a new process.
#[derive(Clone, Debug)]
pub struct ProcessNodeBuilder {
    binary: PathBuf,
    args: Vec<OsString>,
    ready_timeout: Duration,
    stop_timeout: Duration,
    log_through_pipe: bool,
}

impl ProcessNodeBuilder {
    /// Adds `cairn serve` flags after the data directory, listeners and
    /// `--auto-create-topics false`.
    #[must_use]
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// How long the node has to become ready (default [`READY_TIMEOUT`]).
    #[must_use]
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// How long the node has to exit once signalled (default [`STOP_TIMEOUT`]).
    #[must_use]
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Sends the node's standard error through a pipe (its standard output to `/dev/null`),
    /// copied into the log file by a thread of the test, instead of writing the log file
    /// itself: what a node logging into a pipe writes.
    #[must_use]
    pub fn log_through_pipe(mut self) -> Self {
        self.log_through_pipe = true;
        self
    }

    /// Starts a node on a new temporary directory and waits until it is ready.
    ///
    /// # Panics
    ///
    /// As [`ProcessNodeBuilder::start_in`], or if no temporary directory can be made.
    #[must_use]
    pub fn start(&self) -> ProcessNode {
        self.start_in(tempfile::tempdir().expect("a temporary directory"))
    }

    /// Starts a node on the data directory `dir/data` (new or left by an earlier node), its log
    /// appended to `dir/cairn.log`, and waits until it serves (ready, or degraded: see
    /// `probe_ready`).
    ///
    /// # Panics
    ///
    /// If it cannot be spawned, exits before it is ready or is not ready in time.
    #[must_use]
    pub fn start_in(&self, dir: tempfile::TempDir) -> ProcessNode {
        let mut node = self.spawn_in(dir);
        node.wait_ready(self.ready_timeout);
        node
    }

    /// [`ProcessNodeBuilder::start_in`] without waiting for readiness: for the nodes of a
    /// cluster, none of which is ready before a quorum of them runs. Wait with
    /// [`ProcessNode::wait_ready`].
    ///
    /// # Panics
    ///
    /// If it cannot be spawned.
    #[must_use]
    pub fn spawn_in(&self, dir: tempfile::TempDir) -> ProcessNode {
        let ports = free_ports(2);
        let bootstrap = format!("127.0.0.1:{}", ports[0]);
        let admin = SocketAddr::from(([127, 0, 0, 1], ports[1]));
        let data_dir = dir.path().join("data");
        let log = dir.path().join("cairn.log");
        let log_file = OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let mut command = clean_command(&self.binary);
        command.args(["serve", "--data-dir"]).arg(&data_dir);
        command.args(["--kafka-listen", &bootstrap, "--admin-listen", &admin.to_string()]);
        command.args(["--auto-create-topics", "false"]).args(&self.args).stdin(Stdio::null());
        let (child, copier) = self.spawn(command, log_file);
        let pid = child.id();
        let exited = wait_in_background(child);
        ProcessNode {
            binary: self.binary.clone(),
            pid,
            exited,
            status: None,
            bootstrap,
            admin,
            data_dir,
            log,
            dir: Some(dir),
            copier,
            stop_timeout: self.stop_timeout,
        }
    }

    /// Spawns `command` with its output going to `log_file`, directly or through a pipe and
    /// the returned copying thread.
    fn spawn(&self, mut command: Command, log_file: File) -> (Child, Option<JoinHandle<()>>) {
        if !self.log_through_pipe {
            command.stdout(log_file.try_clone().expect("log file")).stderr(log_file);
            return (command.spawn().expect("spawn cairn serve"), None);
        }
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn cairn serve");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let mut log_file = log_file;
        let copier = std::thread::spawn(move || {
            let _ = std::io::copy(&mut stderr, &mut log_file);
        });
        (child, Some(copier))
    }
}

/// Waits for `child` on a thread; the receiver gets its exit status.
fn wait_in_background(mut child: Child) -> mpsc::Receiver<ExitStatus> {
    let (done, exited) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok(status) = child.wait() {
            let _ = done.send(status);
        }
    });
    exited
}

/// A running `cairn serve` on free loopback ports, its data directory in a temporary directory
/// it holds until [`ProcessNode::stop`] or [`ProcessNode::kill`] hands it back (for a restart
/// with [`ProcessNodeBuilder::start_in`]). Dropped while running, it is killed.
#[derive(Debug)]
pub struct ProcessNode {
    binary: PathBuf,
    pid: u32,
    /// The exit status, sent by the thread that waits for the process.
    exited: mpsc::Receiver<ExitStatus>,
    status: Option<ExitStatus>,
    bootstrap: String,
    admin: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    /// Holds the data directory; handed to the caller by `stop` and `kill`.
    dir: Option<tempfile::TempDir>,
    /// Copies a piped standard error into the log; ends when the process has exited.
    copier: Option<JoinHandle<()>>,
    stop_timeout: Duration,
}

impl ProcessNode {
    /// A node of `binary` (the `cairn` executable) to start.
    #[must_use]
    pub fn builder(binary: impl Into<PathBuf>) -> ProcessNodeBuilder {
        ProcessNodeBuilder {
            binary: binary.into(),
            args: Vec::new(),
            ready_timeout: READY_TIMEOUT,
            stop_timeout: STOP_TIMEOUT,
            log_through_pipe: false,
        }
    }

    /// Starts a node of `binary` with the default settings on a new temporary directory.
    ///
    /// # Panics
    ///
    /// As [`ProcessNodeBuilder::start`].
    #[must_use]
    pub fn start(binary: impl Into<PathBuf>) -> ProcessNode {
        ProcessNode::builder(binary).start()
    }

    /// Waits until the node answers ready (or degraded) on its admin listener.
    ///
    /// # Panics
    /// If it exits first or is not ready within `timeout`.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let admin = self.admin;
        self.wait_until("cairn to be ready", timeout, |_| match probe_ready(admin) {
            Ok(true) => Ok(()),
            Ok(false) => Err("not ready".to_owned()),
            Err(error) => Err(error.to_string()),
        });
    }

    /// Polls `condition` until it holds (`Ok`), pausing between polls on the process's exit, so
    /// the wait ends at once if the node exits.
    ///
    /// # Panics
    /// If the node exits, or `timeout` passes (with the last `Err` the condition gave and the
    /// node's log tail).
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&ProcessNode) -> Result<(), String>,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match condition(self) {
                Ok(()) => return,
                Err(last) => last,
            };
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?} (last: {last})\n{}",
                self.log_tail()
            );
            if let Ok(status) = self.exited.recv_timeout(READY_POLL_INTERVAL) {
                self.status = Some(status);
                panic!("cairn exited with {status} waiting for {what}\n{}", self.log_tail());
            }
        }
    }

    /// The process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The Kafka listener, as `--bootstrap` takes it.
    #[must_use]
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The admin HTTP listener.
    #[must_use]
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The data directory (`--data-dir`).
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The log file: every start on the same directory appends to it.
    #[must_use]
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last lines of the log, headed by its path, for failure messages.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        format!("--- {} ---\n{}", self.log.display(), tail.join("\n"))
    }

    /// `GET path` on the admin listener: the status line and the body.
    ///
    /// # Panics
    ///
    /// If the request fails or the response is not whole.
    #[must_use]
    pub fn admin_get(&self, path: &str) -> (String, String) {
        let mut stream =
            TcpStream::connect_timeout(&self.admin, Duration::from_secs(5)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let request = format!("GET {path} HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let (head, body) = response.split_once("\r\n\r\n").expect("a whole response");
        (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
    }

    /// The value of the unlabelled metric `name` on `/metrics`, as a `T`.
    ///
    /// # Errors
    ///
    /// The status line and a reason if the metric is missing or not a `T`.
    pub fn metric<T: std::str::FromStr>(&self, name: &str) -> Result<T, String> {
        let (status, body) = self.admin_get("/metrics");
        let value = body.lines().find_map(|line| {
            let (metric, value) = line.split_once(' ')?;
            (metric == name).then(|| value.trim().parse().ok()).flatten()
        });
        value.ok_or_else(|| format!("{status}: no metric {name}"))
    }

    /// Runs `cairn args... --bootstrap <this node>` with `stdin`, as [`run`].
    #[must_use]
    pub fn cairn(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--bootstrap", &self.bootstrap]);
        run(&self.binary, &all, &[], stdin)
    }

    /// Runs `cairn args...` against this node and returns its standard output.
    ///
    /// # Panics
    ///
    /// Unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, b"")
    }

    /// Runs `cairn args...` against this node with `stdin` and returns its standard output.
    ///
    /// # Panics
    ///
    /// Unless it succeeds.
    pub fn ok_with(&self, args: &[&str], stdin: &[u8]) -> String {
        let run = self.cairn(args, stdin);
        assert!(run.status.success(), "cairn {args:?} failed: {run:?}\n{}", self.log_tail());
        run.stdout
    }

    /// Runs `cairn args...` against this node with `stdin`; it must fail (status 1, nothing on
    /// standard output). Returns its standard error.
    ///
    /// # Panics
    ///
    /// Unless it fails so.
    #[must_use]
    pub fn fails(&self, args: &[&str], stdin: &[u8]) -> String {
        let run = self.cairn(args, stdin);
        assert_eq!(run.status.code(), Some(1), "cairn {args:?} should fail: {run:?}");
        assert!(run.stdout.is_empty(), "cairn {args:?} printed {:?}", run.stdout);
        run.stderr
    }

    /// SIGTERM, and the exit status within the stop timeout, which must be success. Returns
    /// the temporary directory (kept until dropped) and the data directory in it.
    ///
    /// # Panics
    ///
    /// If the node does not exit in time or exits with a failure.
    pub fn stop(mut self) -> (tempfile::TempDir, PathBuf) {
        assert!(signal(self.pid, "TERM"), "kill -TERM {}", self.pid);
        let status = self.await_exit("SIGTERM");
        assert!(status.success(), "cairn exited with {status} after SIGTERM\n{}", self.log_tail());
        let dir = self.dir.take().expect("the directory is only taken here");
        (dir, self.data_dir.clone())
    }

    /// SIGKILL (a crash), awaited within the stop timeout; returns the temporary directory.
    ///
    /// # Panics
    ///
    /// If the node does not exit in time.
    pub fn kill(mut self) -> tempfile::TempDir {
        assert!(signal(self.pid, "KILL"), "kill -KILL {}", self.pid);
        self.await_exit("SIGKILL");
        self.dir.take().expect("the directory is only taken here")
    }

    /// The exit status within the stop timeout of `signal`; the log is whole once it returns.
    fn await_exit(&mut self, signal: &str) -> ExitStatus {
        let timeout = self.stop_timeout;
        let status = self.exited.recv_timeout(timeout).unwrap_or_else(|_| {
            panic!("cairn did not exit within {timeout:?} of {signal}\n{}", self.log_tail())
        });
        self.status = Some(status);
        if let Some(copier) = self.copier.take() {
            copier.join().expect("the log copier does not panic");
        }
        status
    }
}

impl Drop for ProcessNode {
    fn drop(&mut self) {
        if self.status.is_none() && self.exited.try_recv().is_err() {
            signal(self.pid, "KILL");
        }
    }
}

/// The controller id and the broker ids (sorted) of a Metadata answer (v12, no topics) from
/// the Kafka listener at `bootstrap`, within [`METADATA_TIMEOUT`].
///
/// # Errors
/// What failed: the connection, the exchange, or the decoding.
pub fn metadata_brokers(bootstrap: &str) -> Result<(i32, Vec<i32>), String> {
    use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
    let request = MetadataRequest::default().with_topics(Some(Vec::new()));
    let response: MetadataResponse = kafka_call(bootstrap, ApiKey::Metadata, 12, &request)?;
    let mut brokers: Vec<i32> = response.brokers.iter().map(|b| b.node_id.0).collect();
    brokers.sort_unstable();
    Ok((response.controller_id.0, brokers))
}

/// `(error, leader epoch, end offset)` of OffsetForLeaderEpoch v4 for `epoch` of partition 0
/// of `topic` through `bootstrap` (`-1`: the latest epoch), within [`METADATA_TIMEOUT`]: only a
/// partition's leader answers without an error.
///
/// # Errors
/// What failed: the connection, the exchange, the decoding, or an answer without the partition.
pub fn epoch_end(bootstrap: &str, topic: &str, epoch: i32) -> Result<(i16, i32, i64), String> {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{
        ApiKey, BrokerId, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    };
    let partition = OffsetForLeaderPartition::default()
        .with_partition(0)
        .with_current_leader_epoch(-1)
        .with_leader_epoch(epoch);
    let wanted = OffsetForLeaderTopic::default()
        .with_topic(wire_name(topic))
        .with_partitions(vec![partition]);
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![wanted]);
    let response: OffsetForLeaderEpochResponse =
        kafka_call(bootstrap, ApiKey::OffsetForLeaderEpoch, 4, &request)?;
    let answer = response.topics.first().and_then(|t| t.partitions.first()).ok_or("no answer")?;
    Ok((answer.error_code, answer.leader_epoch, answer.end_offset))
}

/// `topic` as the Kafka protocol's topic name.
#[must_use]
pub fn wire_name(topic: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(kafka_protocol::protocol::StrBytes::from_string(
        topic.to_owned(),
    ))
}

/// One Kafka request `body` of `api_key` at `version` to the listener at `bootstrap`, on a new
/// blocking connection, and its decoded answer, within [`METADATA_TIMEOUT`] per step: for
/// tests without a runtime (the process tests) that speak to a node below the CLI.
///
/// # Errors
/// What failed: the connection, the exchange, or the decoding (bytes left over included).
pub fn kafka_call<T: kafka_protocol::protocol::Decodable>(
    bootstrap: &str,
    api_key: kafka_protocol::messages::ApiKey,
    version: i16,
    body: &impl kafka_protocol::protocol::Encodable,
) -> Result<T, String> {
    use bytes::Buf as _;
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::Decodable as _;
    let fail = |what: &str, error: &dyn std::fmt::Display| format!("{api_key:?} {what}: {error}");
    let address: SocketAddr = bootstrap.parse().map_err(|e| fail("address", &e))?;
    let mut stream =
        TcpStream::connect_timeout(&address, METADATA_TIMEOUT).map_err(|e| fail("connect", &e))?;
    stream.set_read_timeout(Some(METADATA_TIMEOUT)).map_err(|e| fail("timeout", &e))?;
    let frame = crate::wire::request_frame(api_key, version, 1, body);
    stream.write_all(&frame).map_err(|e| fail("send", &e))?;
    let mut length = [0_u8; 4];
    stream.read_exact(&mut length).map_err(|e| fail("read", &e))?;
    let length = usize::try_from(i32::from_be_bytes(length)).map_err(|e| fail("length", &e))?;
    let mut answer = vec![0_u8; length];
    stream.read_exact(&mut answer).map_err(|e| fail("read", &e))?;
    let mut answer = bytes::Bytes::from(answer);
    ResponseHeader::decode(&mut answer, api_key.response_header_version(version))
        .map_err(|e| fail("header", &e))?;
    let response = T::decode(&mut answer, version).map_err(|e| fail("decode", &e))?;
    if answer.has_remaining() {
        return Err(format!("{api_key:?}: {} bytes after the answer", answer.remaining()));
    }
    Ok(response)
}

/// How long [`metadata_brokers`] and [`kafka_call`] wait to connect and for each read.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the node serves: `GET /health/ready` answers 200, or 503 with a body saying it
/// serves degraded (some partitions offline: the tests of that case look at it themselves).
fn probe_ready(admin: SocketAddr) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect_timeout(&admin, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(b"GET /health/ready HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.starts_with("HTTP/1.1 200") || response.contains("\r\n\r\nnot ready, degraded\n"))
}
