//! `cargo xtask bench`: the standard benchmark suite of issue 4, run on this machine and written
//! up as markdown (`OUT/report.md`; with `--write-docs`, also the generated part of
//! `docs/benchmarks.md` and its plots in `docs/bench/`).
//!
//! The steps, in order (the data of every server goes under `target/bench-suite/`, on the
//! repository's disk, and is removed at the end):
//! 1. `nats-server` and `iperf3` on the `PATH`, installed with `apt-get` when missing (as
//!    `compat.rs` installs kcat); `cargo build --release --bin cairn --bin cairn-bench`.
//! 2. Machine facts: CPU, memory, kernel, the file system and device of the data directory.
//! 3. Baselines: `cairn-bench disk` (raw sequential write bandwidth, fdatasync latency) and
//!    loopback TCP bandwidth with one `iperf3` stream over 127.0.0.1.
//! 4. cairn, one node (`cairn serve` on free loopback ports): durable produce (`--acks all
//!    --max`) of every size of [`report::RECORD_BYTES`] with every count of
//!    [`report::PRODUCERS`], each on a fresh 4-partition topic; one consumer reading a
//!    16-partition topic of 1 KiB records from the earliest offset right after it was filled
//!    (small enough to stay in the broker's page cache window); e2e latency at half the
//!    1 KiB / 4-producer run's records/s, after a warm-up. Every run samples the broker's RSS
//!    (`--broker-pid`); the broker is stopped with SIGTERM and must exit 0.
//! 5. NATS JetStream, the same produce matrix: one server per case, streams with file storage
//!    and 1 replica; then a 3-server cluster per case, streams with 3 replicas.
//! 6. cairn on three nodes (`cluster.rs`): the same produce matrix on topics with replication
//!    factor 3, every node's RSS sampled; then, on a fresh cluster, the time writes take to
//!    resume after the partition leader is SIGKILLed (`cairn-bench failover`, 20 kills).
//! 7. The report: [`report::render`].
//!
//! `--only` runs some of the steps (see [`Step`]); such a run cannot `--write-docs`.
//!
//! Measurements that fail are recorded in the report and the suite goes on; the task fails at
//! the end (and leaves `docs/` alone) if anything failed. Every process the suite starts is
//! owned by a [`Service`], which kills it by PID when dropped, so no server outlives a failure.
//! The suite is slow and its numbers depend on the machine: it is not part of `cargo xtask ci`.

mod cluster;
pub mod etcd;
pub mod report;

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use self::report::{
    BenchResult, CONSUME_STEM, Case, DISK_STEM, DISK_SUSTAINED_STEM, E2E_RATE_FRACTION, E2E_STEM,
    E2e, Loopback, Outcome, PEAK_PRODUCERS, PRODUCERS, RECORD_BYTES, Results, TARGET_RECORD_BYTES,
};

/// The options of `cargo xtask bench`.
pub const USAGE: &str = concat!(
    "  bench   the benchmark suite of docs/benchmarks.md (slow; not part of ci): baselines, cairn on\n",
    "          one node, NATS JetStream R1 and R3; writes OUT/report.md\n",
    "          --quick         a smoke run (3 s per produce run instead of 20 s)\n",
    "          --only STEPS    only these steps, comma-separated: baselines, cairn, nats-r1, nats-r3,\n",
    "                          cairn-r3, failover (not with --write-docs)\n",
    "          --out DIR       where the JSON, plots and report go [default: target/bench-report]\n",
    "          --write-docs    also regenerate docs/benchmarks.md between its bench markers, and the\n",
    "                          plots in docs/bench/\n",
);

/// Where results go unless `--out` says otherwise, relative to the workspace root.
pub const OUT_DEFAULT: &str = "target/bench-report";
/// The servers' data, relative to the target directory (the repository's disk, not a tmpfs).
pub const DATA_DIR: &str = "bench-suite";
/// The document `--write-docs` regenerates, relative to the workspace root.
pub const DOC: &str = "docs/benchmarks.md";
/// Where `--write-docs` puts the plots the document links to, relative to the workspace root.
pub const DOC_PLOTS_DIR: &str = "docs/bench";
/// The plots copied into [`DOC_PLOTS_DIR`]: the runs the targets are judged on (the other runs'
/// plots stay in the output directory, to keep the repository small).
pub const DOC_PLOTS: &[&str] = &[
    DISK_STEM,
    "cairn-produce-1024b-1p",
    "cairn-produce-1024b-4p",
    CONSUME_STEM,
    E2E_STEM,
    "nats-r1-produce-1024b-4p",
    "nats-r3-produce-1024b-4p",
];

/// Partitions of every cairn topic, and subjects of every NATS stream.
pub const PARTITIONS: usize = 4;
/// Produce requests awaiting acknowledgement per cairn producer (`cairn-bench --inflight`).
pub const KAFKA_INFLIGHT: usize = 5;
/// Bytes of one RecordBatch (`cairn-bench --batch-bytes`); a request holds one per partition.
pub const BATCH_BYTES: usize = 16 * 1024;
/// Partitions of the topic the consume run reads.
pub const CONSUME_PARTITIONS: usize = 16;
/// Most bytes of one fetch response of the consume run (Kafka's `fetch.max.bytes`; partitions
/// give up to 1 MiB each, Kafka's `max.partition.fetch.bytes`). Measured on the 2-vCPU VM of
/// docs/benchmarks.md, five runs each: 4 MiB responses 2229–3051 MB/s, 16 MiB (what 16
/// partitions at 1 MiB give without a lower cap) 1377–1570 MB/s. The consumer shares the
/// machine's two CPUs with the broker, and checks a 4 MiB response while it is still in the CPU
/// caches (in a `perf stat` pair, 22% less CPU for the same bytes).
pub const CONSUME_FETCH_BYTES: usize = 4 * 1024 * 1024;

/// Unacknowledged publishes per NATS producer for `record_bytes` records: as many record bytes
/// in flight as a cairn producer has (JetStream has no batches: one publish per record).
#[must_use]
pub fn nats_inflight(record_bytes: usize) -> usize {
    (KAFKA_INFLIGHT * PARTITIONS * BATCH_BYTES / record_bytes.max(1)).max(1)
}

/// How long a server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Slack on top of a run's own length before it is killed as hung.
const RUN_SLACK: Duration = Duration::from_secs(180);
/// Between two polls of a starting server or a running process.
const POLL: Duration = Duration::from_millis(100);
/// Longest the whole suite waits for other compilations (rustc) to finish before measuring.
const QUIET_WAIT_BUDGET: Duration = Duration::from_secs(600);

/// The parsed options of `cargo xtask bench`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// A short smoke run.
    pub quick: bool,
    /// Where the runs' files and `report.md` go (relative paths are to the workspace root).
    pub out: PathBuf,
    /// Whether to regenerate the generated part of [`DOC`].
    pub write_docs: bool,
    /// The steps to run; every step when `None`.
    pub only: Option<Vec<Step>>,
}

/// A step of the suite that `--only` can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The disk and loopback baselines.
    Baselines,
    /// cairn on one node: produce, consume, e2e.
    Cairn,
    /// NATS JetStream, one server.
    NatsR1,
    /// NATS JetStream, 3 servers.
    NatsR3,
    /// cairn on 3 nodes, replication factor 3: produce.
    CairnR3,
    /// Writes resuming after the leader is killed.
    Failover,
}

impl Step {
    /// Every step, in the suite's order, with its `--only` name.
    pub const ALL: [(Step, &'static str); 6] = [
        (Step::Baselines, "baselines"),
        (Step::Cairn, "cairn"),
        (Step::NatsR1, "nats-r1"),
        (Step::NatsR3, "nats-r3"),
        (Step::CairnR3, "cairn-r3"),
        (Step::Failover, "failover"),
    ];

    /// The steps of an `--only` list.
    ///
    /// # Errors
    /// An unknown or empty step name.
    pub fn parse_list(list: &str) -> Result<Vec<Step>> {
        let mut steps = Vec::new();
        for name in list.split(',') {
            let Some(&(step, _)) = Step::ALL.iter().find(|(_, known)| *known == name.trim()) else {
                let names: Vec<&str> = Step::ALL.iter().map(|(_, name)| *name).collect();
                bail!("--only: unknown step `{name}` (steps: {})", names.join(", "));
            };
            steps.push(step);
        }
        Ok(steps)
    }

    fn name(self) -> &'static str {
        Step::ALL.iter().find(|(step, _)| *step == self).map_or("", |(_, name)| name)
    }
}

impl Options {
    /// Parses the arguments after `bench`.
    ///
    /// # Errors
    ///
    /// An unknown argument, or `--out` without a directory.
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options {
            quick: false,
            out: PathBuf::from(OUT_DEFAULT),
            write_docs: false,
            only: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--write-docs" => options.write_docs = true,
                "--out" => {
                    let dir = args.next().context("--out needs a directory")?;
                    options.out = PathBuf::from(dir);
                }
                "--only" => {
                    let list = args.next().context("--only needs a list of steps")?;
                    options.only = Some(Step::parse_list(list)?);
                }
                other => match other.strip_prefix("--out=") {
                    Some(dir) if !dir.is_empty() => options.out = PathBuf::from(dir),
                    _ => bail!("`cargo xtask bench` does not take `{other}`\n\nusage:\n{USAGE}"),
                },
            }
        }
        if options.write_docs && options.only.is_some() {
            bail!("--write-docs regenerates the whole report: it needs every step, not --only");
        }
        Ok(options)
    }

    /// The command line these options come from, for the report.
    #[must_use]
    pub fn command_line(&self) -> String {
        let mut line = String::from("cargo xtask bench");
        if self.quick {
            line.push_str(" --quick");
        }
        if self.out != Path::new(OUT_DEFAULT) {
            line.push_str(&format!(" --out {}", self.out.display()));
        }
        if let Some(steps) = &self.only {
            let names: Vec<&str> = steps.iter().map(|step| step.name()).collect();
            line.push_str(&format!(" --only {}", names.join(",")));
        }
        if self.write_docs {
            line.push_str(" --write-docs");
        }
        line
    }

    /// Whether the run includes `step`.
    #[must_use]
    pub fn runs(&self, step: Step) -> bool {
        self.only.as_ref().is_none_or(|steps| steps.contains(&step))
    }
}

/// Lengths and sizes of one suite run: the full suite or `--quick`.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Seconds of each produce and e2e run.
    duration_s: u64,
    /// Bytes of the raw sequential write (and its warm-up).
    disk_bytes: u64,
    /// Bytes of the sustained raw write: about what a produce run writes, past the host's
    /// write-back cache that a short write measures.
    disk_sustained_bytes: u64,
    /// Rounds of 4 KiB append + fdatasync.
    sync_rounds: u64,
    /// Seconds of the iperf3 test.
    iperf3_s: u64,
    /// Seconds the e2e consumers may take to drain after the producers stop.
    e2e_drain_s: u64,
    /// Seconds at the start of the e2e run left out of its latency percentiles.
    e2e_warmup_s: u64,
    /// Records of 1 KiB the consume run reads: within the page cache window of the topic's
    /// [`CONSUME_PARTITIONS`] partitions (cairn's default 256 MiB each).
    consume_records: u64,
    /// Whether to wait for other compilations to finish before each measurement.
    wait_for_quiet: bool,
    /// Leaders the failover step kills.
    failover_kills: u32,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                duration_s: 3,
                disk_bytes: 256 * 1024 * 1024,
                disk_sustained_bytes: 1024 * 1024 * 1024,
                sync_rounds: 200,
                iperf3_s: 2,
                e2e_drain_s: 10,
                e2e_warmup_s: 1,
                consume_records: 512 * 1024,
                wait_for_quiet: false,
                failover_kills: 3,
            }
        } else {
            Plan {
                duration_s: 20,
                disk_bytes: 1024 * 1024 * 1024,
                disk_sustained_bytes: 10 * 1024 * 1024 * 1024,
                sync_rounds: 1000,
                iperf3_s: 5,
                e2e_drain_s: 30,
                e2e_warmup_s: 5,
                consume_records: 3 * 1024 * 1024,
                wait_for_quiet: true,
                failover_kills: cluster::FAILOVER_KILLS,
            }
        }
    }
}

/// Runs the suite from the workspace root `root`.
///
/// # Errors
///
/// If a tool cannot be installed, the binaries do not build, the output cannot be written, or
/// any measurement failed (after the report is written; `docs/` is then left alone).
pub fn run(root: &Path, options: &Options) -> Result<()> {
    let started = Instant::now();
    header("bench: tools");
    ensure_tool("nats-server", &["--version"], "nats-server")?;
    ensure_tool("iperf3", &["--version"], "iperf3")?;
    header("bench: release binaries");
    let release = build(root)?;

    let out = root.join(&options.out);
    fs::create_dir_all(out.join("logs"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let data = target_dir(root).join(DATA_DIR);
    fresh_dir(&data)?;

    let mut suite = Suite::new(root, &release, &out, &data, Plan::new(options.quick));
    header("bench: machine");
    let machine = machine_facts(root, &data);
    let mut results = Results {
        command: options.command_line(),
        duration_s: suite.plan.duration_s,
        machine,
        disk: Err("not run".into()),
        disk_sustained: Err("not run".into()),
        loopback: Err("not run".into()),
        cairn: Vec::new(),
        consume: Err("not run".into()),
        e2e: Err("not run".into()),
        nats_r1: Vec::new(),
        nats_r3: Vec::new(),
        cairn_r3: Vec::new(),
        cairn_r3_hwm_bytes: Vec::new(),
        failover: Err("not run".into()),
        broker_rss_hwm_bytes: None,
        failures: Vec::new(),
        notes: Vec::new(),
        commands: Vec::new(),
    };

    run_steps(&mut suite, options, &mut results);
    if let Err(error) = fs::remove_dir_all(&data) {
        suite.notes.push(format!("cannot remove {}: {error}", data.display()));
    }

    results.commands = std::mem::take(&mut suite.commands);
    results.notes.append(&mut suite.notes);
    results.notes.push(format!("the suite took {:.0} s", started.elapsed().as_secs_f64()));
    write_outputs(root, options, &out, &results)
}

/// Runs the steps `options` asks for, in the suite's order, into `results`.
fn run_steps(suite: &mut Suite, options: &Options, results: &mut Results) {
    if options.runs(Step::Baselines) {
        header("bench: baselines");
        results.disk = suite.disk(DISK_STEM, suite.plan.disk_bytes);
        results.disk_sustained = suite.disk(DISK_SUSTAINED_STEM, suite.plan.disk_sustained_bytes);
        results.loopback = suite.loopback();
    }
    if options.runs(Step::Cairn) {
        header("bench: cairn, one node");
        if let Err(error) = suite.cairn_single_node(results) {
            results.failures.push(format!("cairn single node: {error:#}"));
        }
    }
    if options.runs(Step::NatsR1) {
        header("bench: NATS JetStream R1");
        results.nats_r1 = suite.nats(1);
    }
    if options.runs(Step::NatsR3) {
        header("bench: NATS JetStream R3");
        results.nats_r3 = suite.nats(3);
    }
    if options.runs(Step::CairnR3) {
        header("bench: cairn, 3 nodes, replication factor 3");
        if let Err(error) = suite.cairn_r3(results) {
            results.failures.push(format!("cairn 3 nodes: {error:#}"));
        }
    }
    if options.runs(Step::Failover) {
        header("bench: cairn, leader failover");
        if let Err(error) = suite.failover(results) {
            results.failures.push(format!("cairn failover: {error:#}"));
        }
    }
}

/// Writes `OUT/report.md`, prints the targets, and with `--write-docs` (and no failure) updates
/// [`DOC`] and [`DOC_PLOTS_DIR`].
fn write_outputs(root: &Path, options: &Options, out: &Path, results: &Results) -> Result<()> {
    let local_plot =
        |stem: &str| out.join(format!("{stem}.svg")).is_file().then(|| format!("{stem}.svg"));
    let report = format!(
        "# cairn benchmark suite\n\nWritten by `{}`; the JSON of every run is beside this file.\n\n{}",
        results.command,
        report::render(results, &local_plot)
    );
    let report_path = out.join("report.md");
    fs::write(&report_path, report)
        .with_context(|| format!("cannot write {}", report_path.display()))?;
    println!("\ntargets:");
    for target in report::targets(results).into_iter().chain(report::targets_r3(results)) {
        println!("  {:<13} {}: {}", target.verdict.cell(), target.target, target.measured);
    }
    println!("report: {}", report_path.display());

    if results.failed() {
        bail!(
            "some measurements failed (see {}){}",
            report_path.display(),
            if options.write_docs { "; docs/ left as it was" } else { "" }
        );
    }
    if options.write_docs {
        let plots_dir = root.join(DOC_PLOTS_DIR);
        fs::create_dir_all(&plots_dir)
            .with_context(|| format!("cannot create {}", plots_dir.display()))?;
        let mut copied = Vec::new();
        for stem in DOC_PLOTS {
            let source = out.join(format!("{stem}.svg"));
            if source.is_file() {
                let target = plots_dir.join(format!("{stem}.svg"));
                fs::copy(&source, &target)
                    .with_context(|| format!("cannot copy {}", source.display()))?;
                copied.push(*stem);
            }
        }
        let doc_plot = |stem: &str| copied.contains(&stem).then(|| format!("bench/{stem}.svg"));
        let doc_path = root.join(DOC);
        let document = fs::read_to_string(&doc_path)
            .with_context(|| format!("cannot read {}", doc_path.display()))?;
        let spliced = report::splice(&document, &report::render(results, &doc_plot))
            .with_context(|| format!("cannot regenerate {}", doc_path.display()))?;
        fs::write(&doc_path, spliced)
            .with_context(|| format!("cannot write {}", doc_path.display()))?;
        println!("updated {DOC} and {} plots in {DOC_PLOTS_DIR}/", copied.len());
    }
    Ok(())
}

/// The state of one suite run: where things are, and what it did so far.
struct Suite {
    /// The workspace root; every process runs there, and paths in commands are relative to it.
    root: PathBuf,
    /// The release `cairn` binary.
    cairn: PathBuf,
    /// The release `cairn-bench` binary.
    cairn_bench: PathBuf,
    /// The output directory.
    out: PathBuf,
    /// The servers' data directory (removed at the end).
    data: PathBuf,
    /// Lengths and sizes.
    plan: Plan,
    /// Every command line run, for the report.
    commands: Vec<String>,
    /// Remarks for the report.
    notes: Vec<String>,
    /// What is left of [`QUIET_WAIT_BUDGET`].
    quiet_budget: Duration,
}

impl Suite {
    /// A suite of the release binaries in `release`, writing to `out`, its servers' data in
    /// `data`.
    fn new(root: &Path, release: &Path, out: &Path, data: &Path, plan: Plan) -> Suite {
        Suite {
            root: root.to_path_buf(),
            cairn: release.join("cairn"),
            cairn_bench: release.join("cairn-bench"),
            out: out.to_path_buf(),
            data: data.to_path_buf(),
            plan,
            commands: Vec::new(),
            notes: Vec::new(),
            quiet_budget: QUIET_WAIT_BUDGET,
        }
    }

    /// `path` as the report shows it: relative to the workspace root when inside it.
    fn show(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).display().to_string()
    }

    /// Records `command` (program and arguments) for the report.
    fn record(&mut self, command: &Command) {
        let mut line = self.show(Path::new(command.get_program()));
        for arg in command.get_args() {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        self.commands.push(line);
    }

    /// Flushes dirty pages (so that a run does not pay for the previous one's write-back) and
    /// waits, within the budget, for other compilations on the machine to finish.
    fn settle(&mut self, stem: &str) {
        let _ = Command::new("sync").status();
        if !self.plan.wait_for_quiet {
            return;
        }
        let waited = Instant::now();
        while rustc_running() && waited.elapsed() < self.quiet_budget {
            thread::sleep(Duration::from_secs(1));
        }
        self.quiet_budget = self.quiet_budget.saturating_sub(waited.elapsed());
        if rustc_running() {
            self.notes.push(format!("rustc was running when {stem} started"));
        }
    }

    /// Runs `cairn-bench <args>` as the measurement `stem`: JSON, plot and summary table in the
    /// output directory, the server `server_pid`'s RSS sampled.
    fn bench(
        &mut self,
        stem: &str,
        args: &[String],
        server_pids: &[u32],
        length: Duration,
    ) -> Outcome<BenchResult> {
        self.settle(stem);
        header(&format!("bench: {stem}"));
        let json = self.out.join(format!("{stem}.json"));
        let _ = fs::remove_file(&json);
        let mut command = Command::new(&self.cairn_bench);
        command.args(args).arg("--json").arg(self.show(&json)).arg("--plot");
        command.arg(self.show(&self.out.join(format!("{stem}.svg")))).arg("--quiet");
        for pid in server_pids {
            command.arg("--broker-pid").arg(pid.to_string());
        }
        command.current_dir(&self.root);
        self.record(&command);
        let stdout = self.out.join(format!("{stem}.txt"));
        let stderr = self.out.join("logs").join(format!("{stem}.stderr"));
        let outcome = run_to_end(&mut command, &stdout, &stderr, length + RUN_SLACK)
            .and_then(|()| {
                let text = fs::read_to_string(&json)
                    .with_context(|| format!("cannot read {}", json.display()))?;
                BenchResult::parse(&text)
            })
            .map_err(|error| format!("{error:#}"));
        if rustc_running() && self.plan.wait_for_quiet {
            self.notes.push(format!("rustc was running when {stem} ended"));
        }
        if let Err(error) = &outcome {
            header(&format!("bench: {stem} failed: {error}"));
        }
        outcome
    }

    /// `cairn-bench disk` in the data directory, writing `bytes`.
    fn disk(&mut self, stem: &str, bytes: u64) -> Outcome<BenchResult> {
        let dir = self.show(&self.data.join("disk"));
        let args = strings(&[
            "disk",
            "--dir",
            &dir,
            "--bytes",
            &bytes.to_string(),
            "--sync-rounds",
            &self.plan.sync_rounds.to_string(),
        ]);
        self.bench(stem, &args, &[], Duration::from_secs(300))
    }

    /// Loopback TCP bandwidth: a one-off iperf3 server on 127.0.0.1 and one client stream.
    fn loopback(&mut self) -> Outcome<Loopback> {
        self.settle("iperf3");
        header("bench: loopback (iperf3)");
        self.measure_loopback().map_err(|error| format!("{error:#}"))
    }

    fn measure_loopback(&mut self) -> Result<Loopback> {
        let port = free_port()?;
        let mut server_command = Command::new("iperf3");
        server_command.args(["-s", "-1", "-B", "127.0.0.1", "-p", &port.to_string()]);
        self.record(&server_command);
        let mut server = Service::spawn("iperf3 server", &mut server_command, &self.log("iperf3"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while !listening(port) {
            server.ensure_running()?;
            if Instant::now() > deadline {
                bail!("the iperf3 server did not listen on port {port}");
            }
            thread::sleep(POLL);
        }
        let json = self.out.join("loopback-iperf3.json");
        let mut client = Command::new("iperf3");
        client.args(["-c", "127.0.0.1", "-p", &port.to_string()]);
        client.args(["-t", &self.plan.iperf3_s.to_string(), "-J"]);
        self.record(&client);
        let stderr = self.out.join("logs").join("iperf3-client.stderr");
        let length = Duration::from_secs(self.plan.iperf3_s);
        let ran = run_to_end(&mut client, &json, &stderr, length + RUN_SLACK);
        // The JSON says what went wrong even when the client fails.
        let text = fs::read_to_string(&json).unwrap_or_default();
        let parsed = report::parse_iperf3(&text);
        server.stop(STOP_TIMEOUT)?;
        ran?;
        parsed
    }

    fn log(&self, name: &str) -> PathBuf {
        self.out.join("logs").join(format!("{name}.log"))
    }

    /// cairn on one node: the produce matrix, consume and e2e, into `results`.
    fn cairn_single_node(&mut self, results: &mut Results) -> Result<()> {
        let dir = self.data.join("cairn");
        fresh_dir(&dir)?;
        let kafka = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let mut command = Command::new(&self.cairn);
        command.arg("serve").arg("--data-dir").arg(self.show(&dir));
        command.args(["--kafka-listen", &kafka.to_string(), "--admin-listen", &admin.to_string()]);
        command.current_dir(&self.root);
        self.record(&command);
        let mut broker = Service::spawn("cairn serve", &mut command, &self.log("cairn"))?;
        wait_http_ok(&mut broker, admin, "/health/ready")?;
        let bootstrap = kafka.to_string();

        self.cairn_produce(&mut broker, &bootstrap, results)?;
        self.cairn_consume_e2e(&mut broker, &bootstrap, results)?;

        let pid = broker.pid();
        results.broker_rss_hwm_bytes = fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| status_bytes(&status, "VmHWM:"));
        header("bench: stopping cairn (SIGTERM)");
        let status = broker.stop(STOP_TIMEOUT)?;
        if !status.success() {
            bail!("cairn serve exited with {status} after SIGTERM (see logs/cairn.log)");
        }
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        Ok(())
    }

    /// The durable produce matrix, each case on a fresh topic, deleted after its run.
    fn cairn_produce(
        &mut self,
        broker: &mut Service,
        bootstrap: &str,
        results: &mut Results,
    ) -> Result<()> {
        let duration = self.plan.duration_s.to_string();
        let length = Duration::from_secs(self.plan.duration_s);
        for record_bytes in RECORD_BYTES {
            for producers in PRODUCERS {
                let topic = topic(record_bytes, producers);
                let load =
                    KafkaLoad { topic: &topic, partitions: PARTITIONS, record_bytes, producers };
                let mut args = load.args("produce", bootstrap);
                args.extend(strings(&["--max", "--duration", &duration]));
                let stem = report::cairn_produce_stem(record_bytes, producers);
                let result = self.bench(&stem, &args, &[broker.pid()], length);
                results.cairn.push(Case { record_bytes, producers, result });
                broker.ensure_running()?;
                self.delete_topic(bootstrap, &topic);
            }
        }
        Ok(())
    }

    /// One consumer over a topic filled right before it, then e2e at half the 1 KiB /
    /// 4-producer run's rate.
    fn cairn_consume_e2e(
        &mut self,
        broker: &mut Service,
        bootstrap: &str,
        results: &mut Results,
    ) -> Result<()> {
        let pid = broker.pid();
        results.consume = self.cairn_consume(broker, bootstrap);
        broker.ensure_running()?;

        let peak = report::case(&results.cairn, TARGET_RECORD_BYTES, PEAK_PRODUCERS)
            .map(|result| result.records_per_s);
        let Some(peak) = peak else {
            results.e2e = Err("not run: no 1 KiB / 4-producer peak to take half of".into());
            return Ok(());
        };

        let rate = ((peak * E2E_RATE_FRACTION).round() as u64).max(1);
        let load = KafkaLoad {
            topic: "bench-e2e",
            partitions: PARTITIONS,
            record_bytes: TARGET_RECORD_BYTES,
            producers: PEAK_PRODUCERS,
        };
        let mut args = load.args("e2e", bootstrap);
        args.extend(strings(&[
            "--rate",
            &rate.to_string(),
            "--duration",
            &self.plan.duration_s.to_string(),
            "--warmup",
            &self.plan.e2e_warmup_s.to_string(),
            "--drain-secs",
            &self.plan.e2e_drain_s.to_string(),
        ]));
        let length = Duration::from_secs(self.plan.duration_s + self.plan.e2e_drain_s);
        results.e2e = self.bench(E2E_STEM, &args, &[pid], length).map(|result| E2e {
            rate,
            peak_records_per_s: peak,
            result,
        });
        broker.ensure_running()?;
        self.delete_topic(bootstrap, "bench-e2e");
        Ok(())
    }

    /// Fills a topic of 1 KiB records that fits in the broker's page cache window (acks=all,
    /// not a measurement), then reads it from the earliest offset with one consumer.
    fn cairn_consume(&mut self, broker: &mut Service, bootstrap: &str) -> Outcome<BenchResult> {
        const TOPIC: &str = "bench-consume";
        let load = KafkaLoad {
            topic: TOPIC,
            partitions: CONSUME_PARTITIONS,
            record_bytes: TARGET_RECORD_BYTES,
            producers: PEAK_PRODUCERS,
        };
        let mut fill = Command::new(&self.cairn_bench);
        fill.args(load.args("produce", bootstrap));
        fill.args(["--max", "--records", &self.plan.consume_records.to_string(), "--quiet"]);
        fill.current_dir(&self.root);
        self.record(&fill);
        header("bench: filling the consume topic");
        let stdout = self.out.join("logs").join("cairn-consume-fill.txt");
        let stderr = self.out.join("logs").join("cairn-consume-fill.stderr");
        run_to_end(&mut fill, &stdout, &stderr, Duration::from_secs(600))
            .map_err(|error| format!("filling {TOPIC} failed: {error:#}"))?;
        let fetch_bytes = CONSUME_FETCH_BYTES.to_string();
        let args = strings(&[
            "consume",
            "--bootstrap",
            bootstrap,
            "--topic",
            TOPIC,
            "--consumers",
            "1",
            "--fetch-bytes",
            &fetch_bytes,
        ]);
        let result = self.bench(CONSUME_STEM, &args, &[broker.pid()], Duration::from_secs(600));
        self.delete_topic(bootstrap, TOPIC);
        result
    }

    /// Deletes a topic the suite has no more use for, to give its disk space back.
    fn delete_topic(&mut self, bootstrap: &str, topic: &str) {
        let mut command = Command::new(&self.cairn);
        command.args(["topic", "--bootstrap", bootstrap, "delete", topic]);
        command.current_dir(&self.root);
        let status = command.stdin(Stdio::null()).stdout(Stdio::null()).status();
        if !status.is_ok_and(|status| status.success()) {
            self.notes.push(format!("could not delete topic {topic} after its run"));
        }
    }

    /// The NATS produce matrix against `replicas` servers with `replicas`-replica streams; each
    /// case on fresh servers with empty stores.
    fn nats(&mut self, replicas: usize) -> Vec<Case> {
        let mut cases = Vec::new();
        for record_bytes in RECORD_BYTES {
            for producers in PRODUCERS {
                let stem = report::nats_stem(replicas, record_bytes, producers);
                let result = self
                    .nats_case(&stem, replicas, record_bytes, producers, cases.is_empty())
                    .unwrap_or_else(|error| {
                        header(&format!("bench: {stem} failed: {error:#}"));
                        Err(format!("{error:#}"))
                    });
                cases.push(Case { record_bytes, producers, result });
            }
        }
        cases
    }

    /// One NATS case. The outer error is the servers' (start, stop), the inner the run's.
    fn nats_case(
        &mut self,
        stem: &str,
        replicas: usize,
        record_bytes: usize,
        producers: usize,
        record_servers: bool,
    ) -> Result<Outcome<BenchResult>> {
        let dir = self.data.join(format!("nats-r{replicas}"));
        fresh_dir(&dir)?;
        let mut cluster = self.start_nats(&dir, stem, replicas, record_servers)?;
        let (server, pid) = match cluster.first() {
            Some(first) => (first.client.to_string(), first.service.pid()),
            None => bail!("no NATS server started"),
        };
        let args = strings(&[
            "nats-produce",
            "--server",
            &server,
            "--stream",
            "bench",
            "--replicas",
            &replicas.to_string(),
            "--subjects",
            &PARTITIONS.to_string(),
            "--record-bytes",
            &record_bytes.to_string(),
            "--producers",
            &producers.to_string(),
            "--inflight",
            &nats_inflight(record_bytes).to_string(),
            "--max",
            "--duration",
            &self.plan.duration_s.to_string(),
        ]);
        let length = Duration::from_secs(self.plan.duration_s);
        let result = self.bench(stem, &args, &[pid], length);
        for server in &mut cluster {
            server.service.ensure_running()?;
        }
        // nats-server exits 1 after SIGTERM by design; only a hang is a failure here.
        for server in cluster {
            server.service.stop(STOP_TIMEOUT)?;
        }
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        Ok(result)
    }

    /// Starts `replicas` JetStream servers on loopback (a cluster when more than one) and waits
    /// until each reports healthy (which, clustered, means it knows the meta leader).
    fn start_nats(
        &mut self,
        dir: &Path,
        stem: &str,
        replicas: usize,
        record: bool,
    ) -> Result<Vec<NatsServer>> {
        let mut ports = Vec::with_capacity(replicas);
        for _ in 0..replicas {
            ports.push((free_port()?, free_port()?, free_port()?));
        }
        let mut servers = Vec::with_capacity(replicas);
        for (index, &(client, cluster, monitor)) in ports.iter().enumerate() {
            let name = format!("n{}", index + 1);
            let mut command = Command::new("nats-server");
            command.arg("-js").arg("-sd").arg(self.show(&dir.join(&name)));
            command.args(["-a", "127.0.0.1", "-p", &client.to_string()]);
            command.args(["-m", &monitor.to_string(), "-n", &name]);
            if replicas > 1 {
                let routes: Vec<String> = ports
                    .iter()
                    .enumerate()
                    .filter(|&(other, _)| other != index)
                    .map(|(_, &(_, route, _))| format!("nats://127.0.0.1:{route}"))
                    .collect();
                command.args(["--cluster", &format!("nats://127.0.0.1:{cluster}")]);
                command.args(["--cluster_name", "cairn-bench", "--routes", &routes.join(",")]);
            }
            command.current_dir(&self.root);
            if record {
                self.record(&command);
            }
            let log = self.log(&format!("{stem}-{name}"));
            let service = Service::spawn(&format!("nats-server {name}"), &mut command, &log)?;
            servers.push(NatsServer {
                client: SocketAddr::from((Ipv4Addr::LOCALHOST, client)),
                monitor: SocketAddr::from((Ipv4Addr::LOCALHOST, monitor)),
                service,
            });
        }
        for server in &mut servers {
            wait_http_ok(&mut server.service, server.monitor, "/healthz")?;
        }
        Ok(servers)
    }
}

/// One nats-server of a case.
struct NatsServer {
    /// Its client port.
    client: SocketAddr,
    /// Its HTTP monitoring port (`/healthz`).
    monitor: SocketAddr,
    /// The process.
    service: Service,
}

/// The cairn topic of a produce case.
/// The Kafka load every produce-side run shares: acks=all, [`KAFKA_INFLIGHT`] requests of
/// [`BATCH_BYTES`] batches in flight per producer.
struct KafkaLoad<'a> {
    topic: &'a str,
    partitions: usize,
    record_bytes: usize,
    producers: usize,
}

impl KafkaLoad<'_> {
    /// `cairn-bench <subcommand>` arguments for this load against `bootstrap`.
    fn args(&self, subcommand: &str, bootstrap: &str) -> Vec<String> {
        strings(&[
            subcommand,
            "--bootstrap",
            bootstrap,
            "--topic",
            self.topic,
            "--partitions",
            &self.partitions.to_string(),
            "--record-bytes",
            &self.record_bytes.to_string(),
            "--producers",
            &self.producers.to_string(),
            "--inflight",
            &KAFKA_INFLIGHT.to_string(),
            "--batch-bytes",
            &BATCH_BYTES.to_string(),
            "--acks",
            "all",
        ])
    }
}

fn topic(record_bytes: usize, producers: usize) -> String {
    format!("bench-{record_bytes}b-{producers}p")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&arg| arg.to_owned()).collect()
}

/// A server process the suite started. Dropping it kills the process (by its PID) if it still
/// runs, so that no server outlives a failed suite.
struct Service {
    /// What it is, for messages.
    name: String,
    /// The process.
    child: Child,
    /// Its stdout and stderr.
    log: PathBuf,
}

impl Service {
    /// Starts `command` with stdout and stderr appended to `log`.
    fn spawn(name: &str, command: &mut Command, log: &Path) -> Result<Service> {
        let file =
            fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let stderr = file.try_clone().context("cannot duplicate a log file handle")?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Service { name: name.to_owned(), child, log: log.to_path_buf() })
    }

    /// Starts `command` with stdout and stderr appended to `log` (a restarted server keeps
    /// its earlier output).
    fn spawn_appending(name: &str, command: &mut Command, log: &Path) -> Result<Service> {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let stderr = file.try_clone().context("cannot duplicate a log file handle")?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Service { name: name.to_owned(), child, log: log.to_path_buf() })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL and reaps the process (a crash, for the failover measurement).
    fn kill(mut self) -> Result<()> {
        self.child.kill().with_context(|| format!("cannot kill {}", self.name))?;
        self.child.wait().with_context(|| format!("cannot reap {}", self.name))?;
        Ok(())
    }

    /// Fails, with the end of its log, if the process has exited.
    fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                bail!("{} exited with {status}: {}", self.name, log_tail(&self.log))
            }
            Err(error) => bail!("cannot check on {}: {error}", self.name),
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; kills it (and fails) if it takes
    /// longer.
    fn stop(mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        // xtask links no libc bindings: `kill` sends the signal.
        let signalled = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        if !signalled {
            bail!("cannot send SIGTERM to {} (pid {})", self.name, self.pid());
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} did not exit within {timeout:?} of SIGTERM: killed", self.name);
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // Best effort on the way out: SIGKILL by PID, then reap.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `command` to its end with stdout to `stdout` and stderr to `stderr`, killing it after
/// `timeout`.
fn run_to_end(
    command: &mut Command,
    stdout: &Path,
    stderr: &Path,
    timeout: Duration,
) -> Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let out =
        fs::File::create(stdout).with_context(|| format!("cannot create {}", stdout.display()))?;
    let err =
        fs::File::create(stderr).with_context(|| format!("cannot create {}", stderr.display()))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{program} did not finish within {timeout:?}: killed");
        }
        thread::sleep(POLL);
    };
    if !status.success() {
        bail!("{program} exited with {status}: {}", log_tail(stderr));
    }
    Ok(())
}

/// The last non-empty line of a log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let line = text.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("(empty log)");
    format!("{} (in {})", line.trim(), path.display())
}

/// Polls `http://addr/path` until it answers 200, failing if `service` exits or
/// [`READY_TIMEOUT`] passes.
fn wait_http_ok(service: &mut Service, addr: SocketAddr, path: &str) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        service.ensure_running()?;
        if http_status(addr, path).is_ok_and(|status| status == 200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not answer 200 on http://{addr}{path} within {READY_TIMEOUT:?}",
                service.name
            );
        }
        thread::sleep(POLL);
    }
}

/// The status code of `GET path` on `addr` (HTTP/1.0, one request per connection).
fn http_status(addr: SocketAddr, path: &str) -> Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 64];
    let read = stream.read(&mut head)?;
    parse_status_line(&String::from_utf8_lossy(&head[..read]))
}

/// The body of `GET path` on `addr`, which must answer 200.
fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    // A bounded read: the admin endpoints' documents are small.
    stream.take(HTTP_BODY_BYTES_MAX).read_to_string(&mut response)?;
    let status = parse_status_line(&response)?;
    if status != 200 {
        bail!("GET http://{addr}{path} answered {status}");
    }
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok(body.to_owned())
}

/// Most bytes read from an admin endpoint.
const HTTP_BODY_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// The status code of an HTTP response's first line (`HTTP/1.1 200 OK`).
fn parse_status_line(response: &str) -> Result<u16> {
    let line = response.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => {
            code.parse().with_context(|| format!("bad HTTP status line `{line}`"))
        }
        _ => bail!("bad HTTP status line `{line}`"),
    }
}

/// A loopback port free right now (the OS picks it; it stays free unless someone takes it
/// before the server binds it).
fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Whether a TCP socket listens on `port` (any local address), from `/proc/net/tcp{,6}`;
/// polling this does not connect, which a one-off `iperf3 -s -1` would take as its test.
fn listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .any(|table| tcp_table_listens(&table, port))
}

/// Whether a `/proc/net/tcp` table has a socket in state LISTEN (`0A`) on `port`.
fn tcp_table_listens(table: &str, port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1).unwrap_or_default();
        let state = fields.nth(1).unwrap_or_default();
        local.ends_with(&wanted) && state == "0A"
    })
}

/// Whether a `rustc` process runs on the machine (another engineer's build would skew the
/// numbers on a machine with few cores).
fn rustc_running() -> bool {
    let Ok(entries) = fs::read_dir("/proc") else { return false };
    entries.filter_map(Result::ok).any(|entry| {
        fs::read_to_string(entry.path().join("comm")).is_ok_and(|comm| comm.trim() == "rustc")
    })
}

/// A `/proc/PID/status` size field (`VmHWM:  1234 kB`) in bytes.
fn status_bytes(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix(key))?;
    let mut parts = line.split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    (parts.next() == Some("kB")).then(|| value.saturating_mul(1024))
}

/// Makes sure `program <version_args>` runs, installing Debian's `package` if it does not.
fn ensure_tool(program: &str, version_args: &[&str], package: &str) -> Result<()> {
    let works = || {
        Command::new(program)
            .args(version_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if works() {
        header(&format!("{program} is installed"));
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
    if !is_root {
        bail!(
            "{program} is not installed and installing it needs root: run `apt-get install -y \
             {package}` as root, then run again"
        );
    }
    let apt_get = |args: &[&str]| -> Result<()> {
        header(&format!("$ apt-get {}", args.join(" ")));
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .context("cannot run apt-get (Debian/Ubuntu only)")?;
        if !status.success() {
            bail!("`apt-get {}` failed: {status}", args.join(" "));
        }
        Ok(())
    };
    if let Err(first) = apt_get(&["install", "-y", "-q", package]) {
        header(&format!("{first:#}; updating the package lists and trying again"));
        apt_get(&["update", "-q"])?;
        apt_get(&["install", "-y", "-q", package])?;
    }
    if !works() {
        bail!("`apt-get install {package}` succeeded but `{program}` still does not run");
    }
    Ok(())
}

/// Builds the release binaries and returns the directory holding them.
fn build(root: &Path) -> Result<PathBuf> {
    let args = ["build", "--release", "--locked", "--bin", "cairn", "--bin", "cairn-bench"];
    header(&format!("$ cargo {}", args.join(" ")));
    let status =
        Command::new("cargo").args(args).current_dir(root).status().context("cannot run cargo")?;
    if !status.success() {
        bail!("`cargo {}` failed: {status}", args.join(" "));
    }
    Ok(target_dir(root).join("release"))
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target/` in the workspace).
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// Removes `dir` if it exists and creates it empty.
fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// The machine facts of the report. Each is best effort: an unreadable one says so.
fn machine_facts(root: &Path, data: &Path) -> Vec<(String, String)> {
    let read = |path: &str| fs::read_to_string(path).unwrap_or_default();
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| {
                let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&output.stderr));
                text.lines().next().unwrap_or_default().trim().to_owned()
            })
            .unwrap_or_else(|| "unknown".to_owned())
    };
    let mut facts = vec![
        ("Date".to_owned(), output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])),
        ("CPU".to_owned(), cpu_summary(&read("/proc/cpuinfo"))),
        ("Memory".to_owned(), memory_summary(&read("/proc/meminfo"))),
        ("Kernel".to_owned(), read("/proc/sys/kernel/osrelease").trim().to_owned()),
    ];
    let mounts = read("/proc/self/mounts");
    let canonical = fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
    let storage = match mount_of(&mounts, &canonical) {
        Some(mount) => {
            let device = mount.device.trim_start_matches("/dev/");
            let cache = fs::read_to_string(format!("/sys/class/block/{device}/queue/write_cache"))
                .map(|cache| format!(", write cache: {}", cache.trim()))
                .unwrap_or_default();
            format!(
                "{} ({} on {}, {}{cache}); data under `{}`",
                mount.kind,
                mount.device,
                mount.point,
                mount.options,
                canonical.strip_prefix(root).unwrap_or(&canonical).display()
            )
        }
        None => "unknown".to_owned(),
    };
    facts.push(("Data file system".to_owned(), storage));
    let commit = output("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(root)
        .output()
        .is_ok_and(|output| !output.stdout.is_empty());
    let commit = if dirty { format!("{commit} (with uncommitted changes)") } else { commit };
    facts.push(("cairn commit".to_owned(), commit));
    facts.push((
        "Tools".to_owned(),
        format!(
            "{}; {}; {}",
            output("rustc", &["--version"]),
            output("nats-server", &["--version"]),
            output("iperf3", &["--version"])
        ),
    ));
    facts
}

/// `AMD EPYC, 2 logical CPUs at 2600 MHz, virtual machine` from `/proc/cpuinfo`.
fn cpu_summary(cpuinfo: &str) -> String {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
    };
    let cpus = cpuinfo.lines().filter(|line| line.starts_with("processor")).count();
    let mut summary = format!(
        "{}, {cpus} logical CPU{}",
        field("model name").unwrap_or_else(|| "unknown model".to_owned()),
        if cpus == 1 { "" } else { "s" }
    );
    if let Some(mhz) = field("cpu MHz").and_then(|mhz| mhz.parse::<f64>().ok()) {
        summary.push_str(&format!(" at {mhz:.0} MHz"));
    }
    if field("flags").is_some_and(|flags| flags.split_whitespace().any(|flag| flag == "hypervisor"))
    {
        summary.push_str(", virtual machine");
    }
    summary
}

/// `23.5 GiB RAM, no swap` from `/proc/meminfo`.
fn memory_summary(meminfo: &str) -> String {
    let gib =
        |key: &str| status_bytes(meminfo, key).map(|bytes| bytes as f64 / (1u64 << 30) as f64);
    let ram =
        gib("MemTotal:").map_or_else(|| "unknown RAM".to_owned(), |g| format!("{g:.1} GiB RAM"));
    match gib("SwapTotal:") {
        Some(swap) if swap > 0.0 => format!("{ram}, {swap:.1} GiB swap"),
        Some(_) => format!("{ram}, no swap"),
        None => ram,
    }
}

/// One line of `/proc/self/mounts`.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    device: String,
    point: String,
    kind: String,
    options: String,
}

/// The mount holding `path` (the longest mount point that is a prefix of it).
fn mount_of(mounts: &str, path: &Path) -> Option<Mount> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let mount = Mount {
                device: fields.next()?.to_owned(),
                point: fields.next()?.to_owned(),
                kind: fields.next()?.to_owned(),
                options: fields.next()?.to_owned(),
            };
            path.starts_with(&mount.point).then_some(mount)
        })
        .max_by_key(|mount| mount.point.len())
}

/// Prints a progress line on stderr, in the format of the CI step headers.
#[expect(clippy::print_stderr, reason = "progress lines of a command-line tool belong on stderr")]
fn header(line: &str) {
    eprintln!("==> {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        strings(list)
    }

    #[test]
    fn options_parse() {
        let default = Options::parse(&[]).unwrap();
        assert_eq!(
            default,
            Options {
                quick: false,
                out: PathBuf::from(OUT_DEFAULT),
                write_docs: false,
                only: None
            }
        );
        assert_eq!(default.command_line(), "cargo xtask bench");
        let options = Options::parse(&args(&["--quick", "--out", "x/y", "--write-docs"])).unwrap();
        assert_eq!(
            options,
            Options { quick: true, out: PathBuf::from("x/y"), write_docs: true, only: None }
        );
        assert_eq!(options.command_line(), "cargo xtask bench --quick --out x/y --write-docs");
        assert_eq!(Options::parse(&args(&["--out=z"])).unwrap().out, PathBuf::from("z"));
        assert!(Options::parse(&args(&["--out"])).is_err());
        assert!(Options::parse(&args(&["--out="])).is_err());
        assert!(Options::parse(&args(&["--fast"])).is_err());
        let only = Options::parse(&args(&["--only", "nats-r3,cairn-r3, failover"])).unwrap();
        assert_eq!(only.only, Some(vec![Step::NatsR3, Step::CairnR3, Step::Failover]));
        assert!(only.runs(Step::Failover) && !only.runs(Step::Cairn));
        assert!(default.runs(Step::Cairn) && default.runs(Step::Failover));
        assert_eq!(only.command_line(), "cargo xtask bench --only nats-r3,cairn-r3,failover");
        assert!(Options::parse(&args(&["--only", "nats"])).is_err(), "unknown step");
        assert!(Options::parse(&args(&["--only"])).is_err());
        let error = Options::parse(&args(&["--only", "failover", "--write-docs"])).unwrap_err();
        assert!(error.to_string().contains("needs every step"), "{error}");
    }

    /// A `sleep` process owned by a [`Service`], its log in the temporary directory.
    fn sleeper(name: &str) -> (Service, PathBuf) {
        let log =
            std::env::temp_dir().join(format!("xtask-bench-{}-{name}.log", std::process::id()));
        let service = Service::spawn(name, Command::new("sleep").arg("600"), &log).unwrap();
        (service, log)
    }

    fn alive(pid: u32) -> bool {
        // A reaped process has no /proc entry (a zombie would still have one).
        Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn dropping_a_service_kills_its_process() {
        let (mut service, log) = sleeper("drop");
        let pid = service.pid();
        service.ensure_running().unwrap();
        drop(service);
        assert!(!alive(pid), "pid {pid} outlived its Service");
        let _ = fs::remove_file(log);
    }

    #[test]
    fn stopping_a_service_sends_sigterm() {
        let (service, log) = sleeper("stop");
        let pid = service.pid();
        let status = service.stop(Duration::from_secs(10)).unwrap();
        assert!(!status.success(), "sleep ends by the signal: {status}");
        assert!(!alive(pid));
        let _ = fs::remove_file(log);
    }

    #[test]
    fn nats_keeps_as_many_bytes_in_flight_as_cairn() {
        assert_eq!(nats_inflight(100), 3276);
        assert_eq!(nats_inflight(1024), 320);
        assert_eq!(nats_inflight(16 * 1024), 20);
        assert_eq!(nats_inflight(1 << 30), 1);
    }

    #[test]
    fn http_status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n").unwrap(), 200);
        assert_eq!(parse_status_line("HTTP/1.0 503 Service Unavailable\r\n").unwrap(), 503);
        assert!(parse_status_line("").is_err());
        assert!(parse_status_line("SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_status_line("HTTP/1.1 abc\r\n").is_err());
    }

    #[test]
    fn tcp_table_finds_listeners_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt\n\
   0: 0100007F:1451 00000000:0000 0A 00000000:00000000 00:00000000 00000000\n\
   1: 0100007F:B2E4 0100007F:1451 01 00000000:00000000 00:00000000 00000000\n";
        assert!(tcp_table_listens(table, 5201), "0x1451 = 5201 listens");
        assert!(!tcp_table_listens(table, 45796), "0xB2E4 = 45796 is an established client");
        assert!(!tcp_table_listens(table, 80));
        assert!(!tcp_table_listens("", 5201));
    }

    #[test]
    fn proc_status_fields() {
        let status = "Name:\tcairn\nVmHWM:\t   40960 kB\nVmRSS:\t   12345 kB\n";
        assert_eq!(status_bytes(status, "VmHWM:"), Some(40 * 1024 * 1024));
        assert_eq!(status_bytes(status, "VmRSS:"), Some(12345 * 1024));
        assert_eq!(status_bytes(status, "VmSwap:"), None);
        assert_eq!(status_bytes("VmHWM:\t12 pages\n", "VmHWM:"), None);
    }

    #[test]
    fn machine_summaries() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2595.124\n\
                       flags\t\t: fpu sse2 hypervisor avx2\n\nprocessor\t: 1\n\
                       model name\t: AMD EPYC\n";
        assert_eq!(cpu_summary(cpuinfo), "AMD EPYC, 2 logical CPUs at 2595 MHz, virtual machine");
        assert_eq!(cpu_summary(""), "unknown model, 0 logical CPUs");
        let meminfo = "MemTotal:       24641536 kB\nMemFree:  1 kB\nSwapTotal:             0 kB\n";
        assert_eq!(memory_summary(meminfo), "23.5 GiB RAM, no swap");
        let mounts = "proc /proc proc rw 0 0\n/dev/vda / ext4 rw,relatime,discard 0 0\n\
                      tmpfs /tmp tmpfs rw 0 0\n/dev/vdb /work/data xfs rw 0 0\n";
        let mount = mount_of(mounts, Path::new("/work/main/target/bench-suite")).unwrap();
        assert_eq!(
            mount,
            Mount {
                device: "/dev/vda".into(),
                point: "/".into(),
                kind: "ext4".into(),
                options: "rw,relatime,discard".into()
            }
        );
        assert_eq!(mount_of(mounts, Path::new("/work/data/x")).unwrap().kind, "xfs");
        assert_eq!(mount_of(mounts, Path::new("/tmp/a")).unwrap().kind, "tmpfs");
    }
}
