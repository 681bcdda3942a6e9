//! The suite's steps on a local 3-node cairn cluster (issue 10's targets): the durable produce
//! matrix on topics with replication factor 3 ([`Suite::cairn_r3`]), and the time writes take
//! to resume after the partition leader is SIGKILLed ([`Suite::failover`]), for which this is
//! the driver of `cairn-bench failover` (see its module documentation): it kills and restarts
//! the nodes the bench names on its stdout and answers on its stdin.
//!
//! Every node is a release `cairn serve` on free loopback ports (Kafka, admin, peer), with
//! `--node-id` and the same `--peers`; its data is under the suite's data directory. A node is
//! owned by a [`Service`] (killed by PID if the suite fails); at the end of a step every node is
//! stopped with SIGTERM and must exit 0.

use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::report::{
    self, BenchResult, Case, FAILOVER_STEM, Failover, PRODUCERS, RECORD_BYTES, Results,
};
use super::{
    KafkaLoad, PARTITIONS, RUN_SLACK, STOP_TIMEOUT, Service, Suite, free_port, fresh_dir, header,
    http_get, status_bytes, strings, wait_http_ok,
};

/// Nodes of the cluster, and replicas of every topic on it.
pub const NODES: u64 = 3;
/// Leaders the failover step kills, one after the other (issue 10: p50/p99 over 20 kills).
pub const FAILOVER_KILLS: u32 = 20;
/// Longest wait for each step of a failover round (the bench's `--step-timeout-secs`).
const FAILOVER_STEP_S: u64 = 120;
/// Bytes of each record of the failover writer ("small records").
const FAILOVER_RECORD_BYTES: usize = 100;
/// The failover writer's request timeout: a write that hangs this long counts in the resume time.
const FAILOVER_REQUEST_TIMEOUT_MS: u64 = 10_000;

/// One node of the cluster.
pub struct Node {
    /// Its id (Kafka broker id), 1..=[`NODES`].
    pub id: u64,
    /// Its Kafka listener.
    pub kafka: SocketAddr,
    /// Its admin HTTP listener.
    pub admin: SocketAddr,
    /// Its etcd v3 gRPC listener, when the cluster serves the etcd API.
    pub etcd: Option<SocketAddr>,
    /// `cairn serve` and its flags, to start it again after a kill.
    args: Vec<String>,
    /// The running process, `None` while killed.
    pub service: Option<Service>,
}

impl Node {
    /// The running process.
    ///
    /// # Errors
    /// If the node is not running (killed and not restarted).
    pub fn running(&mut self) -> Result<&mut Service> {
        let id = self.id;
        self.service.as_mut().with_context(|| format!("node {id} is not running"))
    }
}

impl Suite {
    /// Starts a 3-node cluster under `dir` (fresh) and waits until every node is ready; `tag`
    /// names its logs.
    fn start_cluster(&mut self, dir: &std::path::Path, tag: &str) -> Result<Vec<Node>> {
        self.start_cluster_serving(dir, tag, false)
    }

    /// [`Suite::start_cluster`], every node also serving etcd's v3 API (`--etcd-listen`) when
    /// `etcd` is true.
    pub(super) fn start_cluster_serving(
        &mut self,
        dir: &std::path::Path,
        tag: &str,
        etcd: bool,
    ) -> Result<Vec<Node>> {
        fresh_dir(dir)?;
        let mut ports = Vec::new();
        for _ in 0..NODES {
            ports.push((free_port()?, free_port()?, free_port()?));
        }
        let peers: Vec<String> =
            (1..=NODES).zip(&ports).map(|(id, p)| format!("{id}=127.0.0.1:{}", p.2)).collect();
        let peers = peers.join(",");
        let mut nodes = Vec::new();
        for (id, &(kafka, admin, peer)) in (1..=NODES).zip(&ports) {
            let data = dir.join(format!("n{id}"));
            let etcd = if etcd {
                Some(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)))
            } else {
                None
            };
            let mut args = strings(&[
                "serve",
                "--node-id",
                &id.to_string(),
                "--data-dir",
                &self.show(&data),
                "--kafka-listen",
                &format!("127.0.0.1:{kafka}"),
                "--admin-listen",
                &format!("127.0.0.1:{admin}"),
                "--peer-listen",
                &format!("127.0.0.1:{peer}"),
                "--peers",
                &peers,
            ]);
            if let Some(etcd) = etcd {
                args.extend(strings(&["--etcd-listen", &etcd.to_string()]));
            }
            let mut node = Node {
                id,
                kafka: SocketAddr::from((Ipv4Addr::LOCALHOST, kafka)),
                admin: SocketAddr::from((Ipv4Addr::LOCALHOST, admin)),
                etcd,
                args,
                service: None,
            };
            self.spawn_node(&mut node, tag, true)?;
            nodes.push(node);
        }
        for node in &mut nodes {
            let admin = node.admin;
            wait_http_ok(node.running()?, admin, "/health/ready")?;
        }
        Ok(nodes)
    }

    /// Starts `node`'s process (its log appended to when `fresh` is false: a restart).
    fn spawn_node(&mut self, node: &mut Node, tag: &str, fresh: bool) -> Result<()> {
        let mut command = Command::new(&self.cairn);
        command.args(&node.args).current_dir(&self.root);
        if fresh {
            self.record(&command);
        }
        let log = self.log(&format!("{tag}-n{}", node.id));
        let name = format!("cairn serve (node {})", node.id);
        node.service = Some(if fresh {
            Service::spawn(&name, &mut command, &log)?
        } else {
            Service::spawn_appending(&name, &mut command, &log)?
        });
        Ok(())
    }

    /// Stops every node with SIGTERM (each must exit 0) and removes the cluster's data.
    pub(super) fn stop_cluster(&mut self, nodes: Vec<Node>, dir: &std::path::Path) -> Result<()> {
        header("bench: stopping the cluster (SIGTERM)");
        let mut failures = Vec::new();
        for node in nodes {
            let Some(service) = node.service else { continue };
            match service.stop(STOP_TIMEOUT) {
                Ok(status) if status.success() => {}
                Ok(status) => failures.push(format!("node {} exited with {status}", node.id)),
                Err(error) => failures.push(format!("node {}: {error:#}", node.id)),
            }
        }
        if !failures.is_empty() {
            bail!("after SIGTERM: {}", failures.join("; "));
        }
        fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))
    }

    /// cairn on 3 nodes, replication factor 3: the durable produce matrix, each case on a fresh
    /// 4-partition topic (deleted after its run), every node's RSS sampled through the runs and
    /// its peak (`VmHWM`) read before the shutdown.
    pub(super) fn cairn_r3(&mut self, results: &mut Results) -> Result<()> {
        let dir = self.data.join("cairn-r3");
        let mut nodes = self.start_cluster(&dir, "cairn-r3")?;
        let bootstrap = nodes[0].kafka.to_string();
        let duration = self.plan.duration_s.to_string();
        let length = Duration::from_secs(self.plan.duration_s);
        for record_bytes in RECORD_BYTES {
            for producers in PRODUCERS {
                let topic = format!("r3-{record_bytes}b-{producers}p");
                let load =
                    KafkaLoad { topic: &topic, partitions: PARTITIONS, record_bytes, producers };
                let mut args = load.args("produce", &bootstrap);
                args.extend(strings(&["--replication-factor", &NODES.to_string()]));
                args.extend(strings(&["--max", "--duration", &duration]));
                let mut pids = Vec::new();
                for node in &mut nodes {
                    pids.push(node.running()?.pid());
                }
                let stem = report::cairn_r3_stem(record_bytes, producers);
                let result = self.bench(&stem, &args, &pids, length).map(|mut result| {
                    result.node_pids = (1..=NODES).zip(pids.iter().copied()).collect();
                    result
                });
                results.cairn_r3.push(Case { record_bytes, producers, result });
                for node in &mut nodes {
                    node.running()?.ensure_running()?;
                }
                self.delete_topic(&bootstrap, &topic);
            }
        }
        for node in &mut nodes {
            let pid = node.running()?.pid();
            let hwm = fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| status_bytes(&status, "VmHWM:"));
            results.cairn_r3_hwm_bytes.push((node.id, hwm));
        }
        self.stop_cluster(nodes, &dir)
    }

    /// Writes resume after the leader is killed: `cairn-bench failover` on a fresh cluster,
    /// driven from here.
    pub(super) fn failover(&mut self, results: &mut Results) -> Result<()> {
        let dir = self.data.join("failover");
        let mut nodes = self.start_cluster(&dir, "failover")?;
        let timeouts = election_timeouts(nodes[0].admin);
        self.settle(FAILOVER_STEM);
        header(&format!("bench: {FAILOVER_STEM}"));
        let outcome = self.drive_failover(&mut nodes);
        results.failover = match (outcome, timeouts) {
            (Ok(result), Ok((min, max))) => {
                Ok(Failover { result, election_timeout_min_ms: min, election_timeout_max_ms: max })
            }
            (Err(error), _) => Err(format!("{error:#}")),
            (Ok(_), Err(error)) => Err(format!("reading the election timeout: {error:#}")),
        };
        // A node the bench left killed is started again, so that all stop cleanly.
        for node in nodes.iter_mut().filter(|node| node.service.is_none()) {
            self.spawn_node(node, "failover", false)?;
        }
        self.stop_cluster(nodes, &dir)
    }

    /// Runs `cairn-bench failover` against `nodes`, killing and restarting them as it asks.
    fn drive_failover(&mut self, nodes: &mut [Node]) -> Result<BenchResult> {
        let json = self.out.join(format!("{FAILOVER_STEM}.json"));
        let _ = fs::remove_file(&json);
        let mut command = Command::new(&self.cairn_bench);
        command.args(strings(&[
            "failover",
            "--bootstrap",
            &nodes[0].kafka.to_string(),
            "--topic",
            "failover",
            "--kills",
            &self.plan.failover_kills.to_string(),
            "--record-bytes",
            &FAILOVER_RECORD_BYTES.to_string(),
            "--replication-factor",
            &NODES.to_string(),
            "--request-timeout-ms",
            &FAILOVER_REQUEST_TIMEOUT_MS.to_string(),
            "--step-timeout-secs",
            &FAILOVER_STEP_S.to_string(),
            "--quiet",
        ]));
        command.arg("--json").arg(self.show(&json)).current_dir(&self.root);
        self.record(&command);
        let stderr =
            fs::File::create(self.out.join("logs").join(format!("{FAILOVER_STEM}.stderr")))
                .context("cannot create the failover log")?;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("cannot start cairn-bench failover")?;
        let stdin = child.stdin.take().context("the bench's stdin")?;
        let stdout = child.stdout.take().context("the bench's stdout")?;
        let (lines, incoming) = mpsc::channel();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let kills = u64::from(self.plan.failover_kills);
        let budget = Duration::from_secs(FAILOVER_STEP_S * 4 * kills) + RUN_SLACK;
        let driven = self.answer(nodes, &incoming, stdin, Instant::now() + budget);
        if driven.is_err() {
            let _ = child.kill();
        }
        let status = child.wait().context("waiting for cairn-bench failover")?;
        let _ = reader.join();
        let table = driven?;
        fs::write(self.out.join(format!("{FAILOVER_STEM}.txt")), table)
            .context("cannot write the failover table")?;
        if !status.success() {
            bail!("cairn-bench failover exited with {status} (see logs/{FAILOVER_STEM}.stderr)");
        }
        let text =
            fs::read_to_string(&json).with_context(|| format!("cannot read {}", json.display()))?;
        BenchResult::parse(&text)
    }

    /// Answers the bench's requests until its stdout ends; returns what else it printed (its
    /// summary table).
    fn answer(
        &mut self,
        nodes: &mut [Node],
        incoming: &mpsc::Receiver<String>,
        mut stdin: ChildStdin,
        deadline: Instant,
    ) -> Result<String> {
        let mut table = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match incoming.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(table),
                Err(mpsc::RecvTimeoutError::Timeout) => bail!("cairn-bench failover ran too long"),
            };
            let request =
                line.split_once(' ').and_then(|(verb, id)| Some((verb, id.parse::<u64>().ok()?)));
            let reply = match request {
                Some(("kill", id)) => {
                    let node = node_mut(nodes, id)?;
                    let service =
                        node.service.take().with_context(|| format!("node {id} is not running"))?;
                    service.kill()?;
                    format!("killed {id}")
                }
                Some(("restart", id)) => {
                    let node = node_mut(nodes, id)?;
                    self.spawn_node(node, "failover", false)?;
                    let admin = node.admin;
                    wait_http_ok(node.running()?, admin, "/health/ready")?;
                    format!("restarted {id}")
                }
                _ => {
                    table.push_str(&line);
                    table.push('\n');
                    continue;
                }
            };
            writeln!(stdin, "{reply}").context("answering cairn-bench failover")?;
            stdin.flush().context("answering cairn-bench failover")?;
        }
    }
}

/// Node `id` of `nodes`.
fn node_mut(nodes: &mut [Node], id: u64) -> Result<&mut Node> {
    nodes.iter_mut().find(|node| node.id == id).with_context(|| format!("no node {id}"))
}

/// The node's configured election timeouts (min, max), in ms, from its `/metrics`.
fn election_timeouts(admin: SocketAddr) -> Result<(u64, u64)> {
    let metrics = http_get(admin, "/metrics")?;
    let gauge = |name: &str| -> Result<u64> {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .with_context(|| format!("no {name} in /metrics"))?
            .trim()
            .parse()
            .with_context(|| format!("{name} is not a number"))
    };
    Ok((gauge("cairn_raft_election_timeout_min_ms")?, gauge("cairn_raft_election_timeout_max_ms")?))
}
