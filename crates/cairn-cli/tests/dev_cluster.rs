//! `cairn dev cluster` as a real process: it starts its nodes, prints their addresses, pids,
//! the bootstrap string and the etcd endpoints, says `ready` once every node is; Metadata through
//! each node then lists every node and one controller, and a key put through one node's etcd API
//! is read through another's. SIGINT stops every child (each pid gone) with exit status 0;
//! a child that dies is named and the others are stopped, exit status 1.
//!
//! Nothing sleeps to synchronise: the printed lines are awaited on a channel with a deadline,
//! agreement is polled with a deadline, exits are awaited with a deadline. The test kills the
//! command and its children by pid if it fails midway.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_testkit::{clean_command, metadata_brokers};
use rustix::process::{Pid, Signal, kill_process, test_kill_process};
use tempfile::TempDir;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// How long the cluster has to print, become ready, agree, or stop.
const BOUND: Duration = Duration::from_secs(60);

/// One node as `cairn dev cluster` printed it.
#[derive(Debug)]
struct Printed {
    id: u32,
    kafka: String,
    etcd: String,
    pid: u32,
}

/// A running `cairn dev cluster`; killed with its children if dropped while running.
struct Dev {
    pid: u32,
    /// Its exit status, sent by the thread that waits for it.
    exited: mpsc::Receiver<ExitStatus>,
    nodes: Vec<Printed>,
    bootstrap: String,
    etcd_endpoints: String,
    /// Its standard error, written to a file.
    stderr: std::path::PathBuf,
    status: Option<ExitStatus>,
}

impl Dev {
    /// Starts `cairn dev cluster --nodes count --data-dir dir/data` and waits for `ready`.
    fn start(count: u32, dir: &Path) -> Dev {
        let stderr = dir.join("stderr");
        let mut command: Command = clean_command(CAIRN);
        command.args(["dev", "cluster", "--nodes", &count.to_string(), "--data-dir"]);
        command.arg(dir.join("data")).stdin(Stdio::null()).stdout(Stdio::piped());
        command.stderr(std::fs::File::create(&stderr).expect("a stderr file"));
        let mut child: Child = command.spawn().expect("spawn cairn dev cluster");
        let stdout = child.stdout.take().expect("piped stdout");
        let (done, exited) = mpsc::channel();
        let pid = child.id();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = done.send(status);
            }
        });
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        let mut dev = Dev {
            pid,
            exited,
            nodes: Vec::new(),
            bootstrap: String::new(),
            etcd_endpoints: String::new(),
            stderr,
            status: None,
        };
        dev.read_until_ready(&lines);
        dev
    }

    /// Reads the printed lines until `ready`, recording the nodes and the bootstrap string.
    fn read_until_ready(&mut self, lines: &mpsc::Receiver<String>) {
        let deadline = Instant::now() + BOUND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no `ready` within {BOUND:?}; stderr: {}", self.stderr_text())
            });
            if line.starts_with("ready: ") {
                return;
            }
            if let Some(bootstrap) = line.strip_prefix("bootstrap: ") {
                self.bootstrap = bootstrap.to_owned();
            } else if let Some(endpoints) = line.strip_prefix("etcd endpoints: ") {
                self.etcd_endpoints = endpoints.to_owned();
            } else if let Some(node) = line.strip_prefix("node ") {
                self.nodes.push(parse_node(node));
            }
        }
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        kill_process(pid(self.pid), signal).expect("signal cairn dev cluster");
    }

    /// Its exit status within [`BOUND`].
    fn wait(&mut self) -> ExitStatus {
        let status = self.exited.recv_timeout(BOUND).unwrap_or_else(|_| {
            panic!("no exit within {BOUND:?}: {}", self.stderr_text());
        });
        self.status = Some(status);
        status
    }

    /// Pauses `pause` between two polls, on its exit: it must not exit while polled.
    fn pause(&mut self, pause: Duration) {
        if let Ok(status) = self.exited.recv_timeout(pause) {
            self.status = Some(status);
            panic!("cairn dev cluster exited with {status}: {}", self.stderr_text());
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if self.status.is_none() {
            for node in &self.nodes {
                let _ = kill_process(pid(node.pid), Signal::KILL);
            }
            let _ = kill_process(pid(self.pid), Signal::KILL);
            let _ = self.exited.recv_timeout(BOUND);
        }
    }
}

fn pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).expect("a pid")).expect("a positive pid")
}

/// `1: kafka H:P peer H:P admin H:P etcd H:P pid N log PATH`.
fn parse_node(line: &str) -> Printed {
    let words: Vec<&str> = line.split_whitespace().collect();
    let field = |name: &str| {
        let at = words.iter().position(|w| *w == name).unwrap_or_else(|| panic!("{line}"));
        words[at + 1].to_owned()
    };
    Printed {
        id: words[0].trim_end_matches(':').parse().unwrap_or_else(|_| panic!("{line}")),
        kafka: field("kafka"),
        etcd: field("etcd"),
        pid: field("pid").parse().unwrap_or_else(|_| panic!("{line}")),
    }
}

/// Puts a key through the etcd API at `writer` and reads it back, linearizably, through
/// `reader`.
fn put_then_get(writer: &str, reader: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let connect = |endpoint: &str| {
            let options = etcd_client::ConnectOptions::new().with_timeout(BOUND);
            etcd_client::Client::connect([endpoint.to_owned()], Some(options))
        };
        let mut writer = connect(writer).await.expect("connects");
        writer.put("dev/greeting", "hello", None).await.expect("a put");
        let mut reader = connect(reader).await.expect("connects");
        let got = reader.get("dev/greeting", None).await.expect("a get");
        assert_eq!(got.kvs().first().map(etcd_client::KeyValue::value), Some(&b"hello"[..]));
    });
}

/// Whether process `pid` exists (a zombie counts).
fn exists(pid_of: u32) -> bool {
    test_kill_process(pid(pid_of)).is_ok()
}

#[test]
fn dev_cluster_starts_three_nodes_that_agree_and_stops_them_on_sigint() {
    let dir = TempDir::new().expect("a directory");
    let mut dev = Dev::start(3, dir.path());
    let ids: Vec<u32> = dev.nodes.iter().map(|n| n.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    let kafkas: Vec<&str> = dev.nodes.iter().map(|n| n.kafka.as_str()).collect();
    assert_eq!(dev.bootstrap, kafkas.join(","));
    for node in &dev.nodes {
        assert!(exists(node.pid), "node {} runs", node.id);
        assert!(dir.path().join(format!("data/node-{}", node.id)).is_dir());
        assert!(dir.path().join(format!("data/node-{}.log", node.id)).is_file());
    }

    // Metadata through each node: three brokers and one controller, the same everywhere.
    let deadline = Instant::now() + BOUND;
    let agreed = loop {
        let seen: Vec<Result<(i32, Vec<i32>), String>> =
            dev.nodes.iter().map(|n| metadata_brokers(&n.kafka)).collect();
        let first = seen[0].clone();
        if let Ok((controller, brokers)) = &first
            && *controller > 0
            && *brokers == [1, 2, 3]
            && seen.iter().all(|s| *s == first)
        {
            break *controller;
        }
        assert!(Instant::now() < deadline, "no agreement within {BOUND:?}: {seen:?}");
        dev.pause(Duration::from_millis(50));
    };
    assert!((1..=3).contains(&agreed));
    let etcds: Vec<&str> = dev.nodes.iter().map(|n| n.etcd.as_str()).collect();
    assert_eq!(dev.etcd_endpoints, etcds.join(","));
    put_then_get(etcds[0], etcds[2]);

    dev.signal(Signal::INT);
    let status = dev.wait();
    let stderr = dev.stderr_text();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("SIGINT: stopping 3 nodes"), "{stderr}");
    assert!(stderr.contains("every node stopped"), "{stderr}");
    for node in &dev.nodes {
        assert!(!exists(node.pid), "node {} (pid {}) is gone", node.id, node.pid);
        let log = std::fs::read_to_string(dir.path().join(format!("data/node-{}.log", node.id)))
            .expect("its log");
        assert!(log.contains("cairn node stopped"), "node {} stopped cleanly:\n{log}", node.id);
    }
}

#[test]
fn dev_cluster_names_a_node_that_dies_and_stops_the_others() {
    let dir = TempDir::new().expect("a directory");
    let mut dev = Dev::start(2, dir.path());
    let victim = dev.nodes.iter().find(|n| n.id == 2).expect("node 2").pid;
    kill_process(pid(victim), Signal::KILL).expect("kill node 2");
    let status = dev.wait();
    let stderr = dev.stderr_text();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("node 2 (pid {victim}) exited")), "{stderr}");
    assert!(stderr.contains("error: node 2 exited"), "{stderr}");
    for node in &dev.nodes {
        assert!(!exists(node.pid), "node {} (pid {}) is gone", node.id, node.pid);
    }

    // More nodes than a core has voters: refused before anything starts.
    let many = cairn_testkit::run(CAIRN, &["dev", "cluster", "--nodes", "6"], &[], b"");
    assert_eq!(many.status.code(), Some(2), "{many:?}");
    assert!(many.stderr.contains("6 is not in 1..=5"), "{many:?}");
}
