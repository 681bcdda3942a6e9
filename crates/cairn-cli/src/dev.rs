//! `cairn dev cluster`: a local cluster of `cairn serve` processes for development, in one
//! command.
//!
//! Nodes `1..=N` (N from 1 to 5) run this same executable, each on three free loopback ports
//! (Kafka, peer, admin) and its own data directory `<data-dir>/node-<id>`, its log in
//! `<data-dir>/node-<id>.log`; `--data-dir` defaults to a new directory under the system's
//! temporary directory, kept after exit. Their addresses, process ids and the bootstrap string
//! for clients are printed, then `ready` once every node answers `/health/ready`.
//!
//! The children run in their own process group, so a terminal's Ctrl-C reaches only this
//! process, which stops them: SIGINT or SIGTERM sends each SIGTERM and waits for all, at most
//! `--stop-timeout-ms` (then SIGKILL), and exits 0 if each stopped cleanly. If a node exits on
//! its own (or is not ready in time), it is named and the others are stopped; the exit status
//! is then 1. The signal handlers are in place before the first child starts.
//!
//! Ports are found by binding port 0 and releasing it: another program may take one in
//! between, and that node then fails to bind, is named, and the cluster stops.

use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use rustix::process::{Pid, Signal, kill_process};
use tokio::signal::unix::{SignalKind, signal};

/// Most nodes `cairn dev cluster` starts (the most core voters a cluster has).
pub const DEV_NODES_MAX: u8 = 5;

/// Between two looks at the children and their readiness.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// `cairn dev` subcommands.
#[derive(Subcommand, Debug)]
pub enum DevCommand {
    /// Start a local cluster of `cairn serve` processes; Ctrl-C stops them all.
    Cluster(ClusterArgs),
}

/// `cairn dev cluster` flags.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Nodes to start (1 to 5), with ids 1..=N, every one a core voter.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=i64::from(DEV_NODES_MAX)))]
    nodes: u8,
    /// Where the nodes' data directories and logs go (default: a new temporary directory,
    /// kept after exit).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Longest wait for every node to be ready, in ms.
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    ready_timeout_ms: u64,
    /// Longest wait for the nodes to exit once told to stop, in ms (then they are killed).
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    stop_timeout_ms: u64,
}

/// Runs `command` until it is stopped.
///
/// # Errors
/// A node failed to start, exited, or was not ready in time; the others are stopped first.
pub fn run(command: DevCommand) -> anyhow::Result<()> {
    let DevCommand::Cluster(args) = command;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(cluster(&args))
}

/// One node of the cluster.
struct Node {
    id: u8,
    kafka: SocketAddr,
    peer: SocketAddr,
    admin: SocketAddr,
    /// The etcd v3 API's address.
    etcd: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    /// `None` once it exited and was reaped.
    child: Option<Child>,
}

impl Drop for Node {
    /// A node still running when the command ends without stopping it (a panic) is killed,
    /// not left behind.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_child(&child, Signal::KILL);
            let _ = child.wait();
        }
    }
}

/// What ended the wait: a signal, or a node that exited.
enum Ended {
    Signal(&'static str),
    Exited { id: u8, pid: u32, status: ExitStatus },
}

async fn cluster(args: &ClusterArgs) -> anyhow::Result<()> {
    // Before any child exists: a Ctrl-C from now on stops them.
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let root = data_root(args.data_dir.as_deref())?;
    let mut nodes = plan(args.nodes, &root)?;
    let peers = peers_flag(&nodes);
    for index in 0..nodes.len() {
        if let Err(error) = spawn(&mut nodes[index], &peers) {
            stop_all(&mut nodes, stop_timeout(args));
            return Err(error);
        }
    }
    let timeout = stop_timeout(args);
    match watch(&mut nodes, &root, args, &mut interrupt, &mut terminate).await {
        Ok(ended) => finish(&mut nodes, ended, timeout),
        Err(error) => {
            stop_all(&mut nodes, timeout);
            Err(error)
        }
    }
}

/// Prints the nodes, waits until they are ready and then until a signal or a node's exit.
async fn watch(
    nodes: &mut [Node],
    root: &Path,
    args: &ClusterArgs,
    interrupt: &mut tokio::signal::unix::Signal,
    terminate: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<Ended> {
    print_plan(root, nodes)?;
    let deadline = Instant::now() + Duration::from_millis(args.ready_timeout_ms);
    let ended = tokio::select! {
        _ = interrupt.recv() => Some(Ended::Signal("SIGINT")),
        _ = terminate.recv() => Some(Ended::Signal("SIGTERM")),
        ended = wait_ready(nodes, deadline) => ended?,
    };
    if let Some(ended) = ended {
        return Ok(ended);
    }
    crate::output::print(&format!("ready: {} nodes; Ctrl-C stops them\n", nodes.len()))?;
    Ok(tokio::select! {
        _ = interrupt.recv() => Ended::Signal("SIGINT"),
        _ = terminate.recv() => Ended::Signal("SIGTERM"),
        ended = wait_exit(nodes) => ended,
    })
}

fn stop_timeout(args: &ClusterArgs) -> Duration {
    Duration::from_millis(args.stop_timeout_ms)
}

/// Stops every node and says how the cluster ended.
fn finish(nodes: &mut [Node], ended: Ended, timeout: Duration) -> anyhow::Result<()> {
    match ended {
        Ended::Signal(name) => {
            crate::output::note(&format!("{name}: stopping {} nodes", nodes.len()));
            let clean = stop_all(nodes, timeout);
            if !clean {
                bail!("not every node stopped cleanly: see their logs");
            }
            crate::output::note("every node stopped");
            Ok(())
        }
        Ended::Exited { id, pid, status } => {
            let log = nodes.iter().find(|n| n.id == id).map(|n| n.log.display().to_string());
            crate::output::note(&format!(
                "node {id} (pid {pid}) exited with {status}; stopping the others (its log: {})",
                log.unwrap_or_default()
            ));
            stop_all(nodes, timeout);
            bail!("node {id} exited with {status}")
        }
    }
}

/// The directory the nodes' directories go in: `dir`, made if missing, or a new one.
fn data_root(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = dir {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        return Ok(dir.to_owned());
    }
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("cairn-dev-{}-{nanos:09}", std::process::id()));
    fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Nodes `1..=count` on free loopback ports, not started.
fn plan(count: u8, root: &Path) -> anyhow::Result<Vec<Node>> {
    let ports = free_ports(usize::from(count) * 4)?;
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    Ok((1..=count)
        .zip(ports.chunks_exact(4))
        .map(|(id, ports)| Node {
            id,
            kafka: loopback(ports[0]),
            peer: loopback(ports[1]),
            admin: loopback(ports[2]),
            etcd: loopback(ports[3]),
            data_dir: root.join(format!("node-{id}")),
            log: root.join(format!("node-{id}.log")),
            child: None,
        })
        .collect())
}

/// `count` distinct loopback ports that were free a moment ago.
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("finding free loopback ports")?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect::<std::io::Result<Vec<u16>>>()
        .context("finding free loopback ports")
}

/// The `--peers` value every node gets.
fn peers_flag(nodes: &[Node]) -> String {
    let peers: Vec<String> = nodes.iter().map(|n| format!("{}={}", n.id, n.peer)).collect();
    peers.join(",")
}

/// Starts `node` as `cairn serve`, in its own process group, its output to its log.
fn spawn(node: &mut Node, peers: &str) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the cairn executable")?;
    let log =
        File::create(&node.log).with_context(|| format!("creating {}", node.log.display()))?;
    let mut command = Command::new(exe);
    command
        .arg("serve")
        .args(["--node-id", &node.id.to_string()])
        .arg("--data-dir")
        .arg(&node.data_dir)
        .args(["--kafka-listen", &node.kafka.to_string()])
        .args(["--admin-listen", &node.admin.to_string()])
        .args(["--peer-listen", &node.peer.to_string(), "--peers", peers])
        .args(["--etcd-listen", &node.etcd.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("the log file")?)
        .stderr(log)
        .process_group(0);
    let child = command.spawn().with_context(|| format!("starting node {}", node.id))?;
    node.child = Some(child);
    Ok(())
}

fn print_plan(root: &Path, nodes: &[Node]) -> anyhow::Result<()> {
    let mut out = format!("data: {} (kept after exit)\n", root.display());
    for node in nodes {
        let pid = node.child.as_ref().map_or(0, Child::id);
        out.push_str(&format!(
            "node {}: kafka {} peer {} admin {} etcd {} pid {} log {}\n",
            node.id,
            node.kafka,
            node.peer,
            node.admin,
            node.etcd,
            pid,
            node.log.display()
        ));
    }
    let bootstrap: Vec<String> = nodes.iter().map(|n| n.kafka.to_string()).collect();
    out.push_str(&format!("bootstrap: {}\n", bootstrap.join(",")));
    let etcd: Vec<String> = nodes.iter().map(|n| n.etcd.to_string()).collect();
    out.push_str(&format!("etcd endpoints: {}\n", etcd.join(",")));
    crate::output::print(&out)
}

/// Waits until every node answers ready (`None`), or one exits first.
///
/// # Errors
/// Not every node was ready by `deadline`.
async fn wait_ready(nodes: &mut [Node], deadline: Instant) -> anyhow::Result<Option<Ended>> {
    let mut waiting: Vec<u8> = nodes.iter().map(|n| n.id).collect();
    loop {
        if let Some(exited) = reap(nodes) {
            return Ok(Some(exited));
        }
        waiting.retain(|&id| nodes.iter().any(|n| n.id == id && !is_ready(n.admin)));
        if waiting.is_empty() {
            return Ok(None);
        }
        if Instant::now() >= deadline {
            bail!("nodes {waiting:?} were not ready in time; see their logs");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits until a node exits.
async fn wait_exit(nodes: &mut [Node]) -> Ended {
    loop {
        if let Some(exited) = reap(nodes) {
            return exited;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The first node found exited, reaped.
fn reap(nodes: &mut [Node]) -> Option<Ended> {
    for node in nodes {
        let Some(child) = node.child.as_mut() else { continue };
        let pid = child.id();
        // An error here means the child cannot be waited for: count it as gone.
        let status = match child.try_wait() {
            Ok(None) => continue,
            Ok(Some(status)) => status,
            Err(_) => ExitStatus::default(),
        };
        node.child = None;
        return Some(Ended::Exited { id: node.id, pid, status });
    }
    None
}

/// Whether the admin endpoint at `admin` answers 200 on `/health/ready`.
fn is_ready(admin: SocketAddr) -> bool {
    let probe = || -> std::io::Result<bool> {
        let timeout = Duration::from_secs(1);
        let mut stream = TcpStream::connect_timeout(&admin, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream
            .write_all(b"GET /health/ready HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\n\r\n")?;
        let mut head = [0_u8; 12];
        stream.read_exact(&mut head)?;
        Ok(&head == b"HTTP/1.1 200")
    };
    probe().unwrap_or(false)
}

/// SIGTERM to every running node, then waits for all until `timeout` (SIGKILL to those left).
/// Whether every node exited successfully.
fn stop_all(nodes: &mut [Node], timeout: Duration) -> bool {
    for child in nodes.iter().filter_map(|n| n.child.as_ref()) {
        signal_child(child, Signal::TERM);
    }
    let deadline = Instant::now() + timeout;
    let mut clean = true;
    for node in nodes.iter_mut() {
        let Some(mut child) = node.child.take() else { continue };
        let status = wait_until(&mut child, deadline).or_else(|| {
            crate::output::note(&format!("node {} did not stop in time: killed", node.id));
            signal_child(&child, Signal::KILL);
            child.wait().ok()
        });
        clean &= status.is_some_and(|status| status.success());
    }
    clean
}

/// The exit status of `child` if it exits by `deadline`.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Sends `signal` to `child`; a child already gone is no error (it is reaped next).
fn signal_child(child: &Child, signal: Signal) {
    let pid = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
    if let Some(pid) = pid {
        let _ = kill_process(pid, signal);
    }
}
