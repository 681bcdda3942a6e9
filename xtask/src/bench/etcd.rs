//! `cargo xtask bench etcd`: cairn's etcd v3 API against a real etcd on the same machine in the
//! same run (issue 12's targets), written up as `OUT/report.md` with cairn/etcd ratios.
//!
//! Steps: `etcd` on the `PATH` (Debian's `etcd-server`, installed with `apt-get` when missing,
//! as the suite installs nats-server); the release binaries; a 3-node cairn cluster serving the
//! etcd API on every node (`cluster.rs`, fresh data) and a 3-member etcd cluster (etcd's
//! defaults: fsync on, default quota; data under the target directory, not a tmpfs), both up
//! for the whole run. Then `cairn-bench etcd` against each, alternating cairn, etcd, cairn,
//! etcd for every workload ([`ROUNDS`] rounds): puts at [`CLIENTS`] clients closed loop,
//! linearizable ranges at [`CLIENTS`] clients, puts open loop at half of each system's own best
//! closed-loop put rate (for p99 at half of peak), and watch latency at [`WATCHERS`] watchers.
//! Clients connect to all three members. Every server is stopped by PID at the end.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::report::{BenchResult, Outcome};
use super::{
    DATA_DIR, Plan, STOP_TIMEOUT, Service, Suite, build, ensure_tool, free_port, fresh_dir, header,
    machine_facts, strings, target_dir, wait_http_ok,
};

/// The options of `cargo xtask bench etcd`.
pub const USAGE: &str = concat!(
    "  bench etcd  cairn's etcd API against etcd 3 nodes each, same run (issue 12); writes\n",
    "              OUT/report.md [default OUT: target/bench-etcd]; --quick: 5 s runs;\n",
    "              --no-build: use the release binaries already in the target directory\n",
);

/// Where results go unless `--out` says otherwise, relative to the workspace root.
pub const OUT_DEFAULT: &str = "target/bench-etcd";
/// Concurrent clients of the put and range runs (issue 12).
pub const CLIENTS: usize = 256;
/// Bytes of every value (issue 12).
pub const VALUE_BYTES: usize = 256;
/// Key space of every run.
pub const KEYS: u64 = 10_000;
/// Watchers of the watch run (issue 12).
pub const WATCHERS: usize = 1000;
/// Watch streams the watchers share.
pub const WATCH_STREAMS: usize = 10;
/// The watch run's writer, puts/s.
pub const WATCH_RATE: u64 = 100;
/// Runs of each workload on each system, alternating.
pub const ROUNDS: usize = 2;
/// Members of each cluster.
const MEMBERS: usize = 3;

/// The parsed options of `cargo xtask bench etcd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// 5 s runs instead of 15 s.
    pub quick: bool,
    /// Where the runs' files and `report.md` go.
    pub out: PathBuf,
    /// Use the release binaries already built (`cargo build --release --bin cairn --bin
    /// cairn-bench` unifies features differently from two separate builds, so it may rebuild).
    pub no_build: bool,
}

impl Options {
    /// Parses the arguments after `bench etcd`.
    ///
    /// # Errors
    /// An unknown argument.
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut options =
            Options { quick: false, out: PathBuf::from(OUT_DEFAULT), no_build: false };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--no-build" => options.no_build = true,
                "--out" => options.out = PathBuf::from(args.next().context("--out needs a dir")?),
                other => bail!("`cargo xtask bench etcd` does not take `{other}`\n\n{USAGE}"),
            }
        }
        Ok(options)
    }
}

/// The systems compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Cairn,
    Etcd,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Cairn => "cairn",
            System::Etcd => "etcd",
        }
    }
}

/// A workload of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// Closed-loop puts.
    Put,
    /// Closed-loop linearizable ranges.
    Range,
    /// Open-loop puts at half of the system's best closed-loop put rate.
    PutHalf,
    /// Watch latency.
    Watch,
}

impl Workload {
    const ALL: [Workload; 4] = [Workload::Put, Workload::Range, Workload::PutHalf, Workload::Watch];

    fn stem(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range => "range",
            Workload::PutHalf => "put-half",
            Workload::Watch => "watch",
        }
    }
}

/// One run's result.
struct Run {
    system: System,
    workload: Workload,
    /// The open-loop rate, if any.
    rate: Option<u64>,
    result: Outcome<BenchResult>,
}

/// Runs the comparison from the workspace root `root`.
///
/// # Errors
/// A tool that cannot be installed, a build or cluster that fails, or a failed measurement
/// (after the report is written).
pub fn run(root: &Path, options: &Options) -> Result<()> {
    header("bench etcd: tools");
    ensure_tool("etcd", &["--version"], "etcd-server")?;
    header("bench etcd: release binaries");
    let release = if options.no_build { target_dir(root).join("release") } else { build(root)? };
    let out = root.join(&options.out);
    fs::create_dir_all(out.join("logs"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let data = target_dir(root).join(DATA_DIR).join("etcd-compare");
    fresh_dir(&data)?;
    let mut plan = Plan::new(options.quick);
    plan.duration_s = if options.quick { 5 } else { 15 };
    let mut suite = Suite::new(root, &release, &out, &data, plan);
    let machine = machine_facts(root, &data);
    let version = Command::new("etcd")
        .arg("--version")
        .output()
        .map(|output| {
            String::from_utf8_lossy(&output.stdout).lines().next().unwrap_or("").to_owned()
        })
        .unwrap_or_default();

    let cairn_dir = data.join("cairn");
    let mut nodes = suite.start_cluster_serving(&cairn_dir, "etcd-cairn", true)?;
    let cairn_endpoints: Vec<String> =
        nodes.iter().filter_map(|node| node.etcd).map(|addr| addr.to_string()).collect();
    let mut cairn_pids = Vec::new();
    for node in &mut nodes {
        cairn_pids.push(node.running()?.pid());
    }
    let etcd = start_etcd(&mut suite, &data.join("etcd"))?;
    let etcd_endpoints: Vec<String> = etcd.iter().map(|member| member.client.to_string()).collect();
    let etcd_pids: Vec<u32> = etcd.iter().map(|member| member.service.pid()).collect();

    let mut runs = Vec::new();
    for workload in Workload::ALL {
        for round in 0..ROUNDS {
            for system in [System::Cairn, System::Etcd] {
                let (endpoints, pids) = match system {
                    System::Cairn => (&cairn_endpoints, &cairn_pids),
                    System::Etcd => (&etcd_endpoints, &etcd_pids),
                };
                let rate = (workload == Workload::PutHalf).then(|| half_peak(&runs, system));
                let stem = format!("{}-{}-{}", system.name(), workload.stem(), round + 1);
                let args = bench_args(workload, &endpoints.join(","), rate, plan.duration_s);
                let length = Duration::from_secs(plan.duration_s);
                let result = suite.bench(&stem, &args, pids, length);
                runs.push(Run { system, workload, rate, result });
            }
        }
    }

    header("bench etcd: stopping the clusters");
    let mut failures = Vec::new();
    for member in etcd {
        // etcd exits 0 after SIGTERM; only a hang is a failure here.
        if let Err(error) = member.service.stop(STOP_TIMEOUT) {
            failures.push(format!("{error:#}"));
        }
    }
    if let Err(error) = suite.stop_cluster(nodes, &cairn_dir) {
        failures.push(format!("{error:#}"));
    }
    let _ = fs::remove_dir_all(&data);

    let report = render(&options.command_line(), &machine, &version, &suite.commands, &runs);
    let path = out.join("report.md");
    fs::write(&path, &report).with_context(|| format!("cannot write {}", path.display()))?;
    println!("{report}");
    println!("report: {}", path.display());
    failures.extend(runs.iter().filter_map(|run| run.result.as_ref().err().cloned()));
    if !failures.is_empty() {
        bail!("some steps failed: {}", failures.join("; "));
    }
    Ok(())
}

impl Options {
    fn command_line(&self) -> String {
        let mut line = String::from("cargo xtask bench etcd");
        if self.quick {
            line.push_str(" --quick");
        }
        if self.no_build {
            line.push_str(" --no-build");
        }
        if self.out != Path::new(OUT_DEFAULT) {
            let _ = write!(line, " --out {}", self.out.display());
        }
        line
    }
}

/// Half of `system`'s best closed-loop put rate so far, ops/s (at least 1).
fn half_peak(runs: &[Run], system: System) -> u64 {
    let best = runs
        .iter()
        .filter(|run| run.system == system && run.workload == Workload::Put)
        .filter_map(|run| run.result.as_ref().ok())
        .map(|result| result.records_per_s)
        .fold(0.0, f64::max);
    ((best / 2.0) as u64).max(1)
}

/// `cairn-bench etcd` arguments of one run.
fn bench_args(
    workload: Workload,
    endpoints: &str,
    rate: Option<u64>,
    duration_s: u64,
) -> Vec<String> {
    let mut args = strings(&[
        "etcd",
        "--endpoints",
        endpoints,
        "--clients",
        &CLIENTS.to_string(),
        "--value-bytes",
        &VALUE_BYTES.to_string(),
        "--keys",
        &KEYS.to_string(),
        "--duration",
        &duration_s.to_string(),
    ]);
    let extra = match workload {
        Workload::Put => strings(&["--workload", "put"]),
        Workload::Range => strings(&["--workload", "range"]),
        Workload::PutHalf => {
            strings(&["--workload", "put", "--rate", &rate.unwrap_or(1).to_string()])
        }
        Workload::Watch => strings(&[
            "--workload",
            "watch",
            "--watchers",
            &WATCHERS.to_string(),
            "--watch-streams",
            &WATCH_STREAMS.to_string(),
            "--rate",
            &WATCH_RATE.to_string(),
        ]),
    };
    args.extend(extra);
    args
}

/// One etcd member.
struct EtcdMember {
    /// Its client URL's address.
    client: SocketAddr,
    service: Service,
}

/// Starts a 3-member etcd cluster under `dir` with etcd's defaults and waits for `/health`.
fn start_etcd(suite: &mut Suite, dir: &Path) -> Result<Vec<EtcdMember>> {
    fresh_dir(dir)?;
    let mut ports = Vec::new();
    for _ in 0..MEMBERS {
        ports.push((free_port()?, free_port()?));
    }
    let cluster: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(index, (_, peer))| format!("e{}=http://127.0.0.1:{peer}", index + 1))
        .collect();
    let cluster = cluster.join(",");
    let mut members = Vec::new();
    for (index, &(client, peer)) in ports.iter().enumerate() {
        let name = format!("e{}", index + 1);
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut command = Command::new("etcd");
        command.args(["--name", &name, "--data-dir", &suite.show(&dir.join(&name))]);
        command.args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url]);
        command.args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url]);
        command.args(["--initial-cluster", &cluster, "--initial-cluster-state", "new"]);
        command.args(["--initial-cluster-token", "cairn-bench"]);
        command.current_dir(&suite.root);
        suite.record(&command);
        let log = suite.log(&format!("etcd-{name}"));
        let service = Service::spawn(&format!("etcd {name}"), &mut command, &log)?;
        members
            .push(EtcdMember { client: SocketAddr::from((Ipv4Addr::LOCALHOST, client)), service });
    }
    let started = Instant::now();
    for member in &mut members {
        wait_http_ok(&mut member.service, member.client, "/health")?;
    }
    header(&format!("bench etcd: etcd healthy after {:.1} s", started.elapsed().as_secs_f64()));
    Ok(members)
}

/// The mean of `values`, `None` when empty.
fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The markdown report: facts, commands, one row per run, and the ratios of the means.
fn render(
    command: &str,
    machine: &[(String, String)],
    etcd_version: &str,
    commands: &[String],
    runs: &[Run],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# cairn vs etcd, etcd v3 API, 3 local nodes each\n");
    let _ = writeln!(out, "Written by `{command}`.\n");
    for (name, value) in machine {
        let _ = writeln!(out, "- {name}: {value}");
    }
    let _ = writeln!(out, "- etcd: {etcd_version}\n");
    let _ = writeln!(
        out,
        "| workload | system | round | rate | ops/s | p50 | p99 | p99.9 | max | errors |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for run in runs {
        let rate = run.rate.map_or("closed".to_owned(), |rate| format!("{rate}/s"));
        let round = runs
            .iter()
            .filter(|other| other.system == run.system && other.workload == run.workload)
            .position(|other| std::ptr::eq(other, run))
            .map_or(0, |index| index + 1);
        match &run.result {
            Ok(result) => {
                let name = if run.workload == Workload::Watch { "watch" } else { "op" };
                let latency = result.latency(name);
                let cell = |value: Option<u64>| value.map_or("-".to_owned(), format_us);
                let _ = writeln!(
                    out,
                    "| {} | {} | {round} | {rate} | {:.0} | {} | {} | {} | {} | {} |",
                    run.workload.stem(),
                    run.system.name(),
                    result.records_per_s,
                    cell(latency.map(|l| l.p50_us)),
                    cell(latency.map(|l| l.p99_us)),
                    cell(latency.map(|l| l.p999_us)),
                    cell(latency.map(|l| l.max_us)),
                    result.errors,
                );
            }
            Err(error) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | {round} | {rate} | failed: {error} | | | | | |",
                    run.workload.stem(),
                    run.system.name()
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\n| workload | cairn/etcd ops/s (means) | cairn/etcd p99 (means) |\n|---|---|---|"
    );
    for workload in Workload::ALL {
        let collect = |system: System, pick: &dyn Fn(&BenchResult) -> Option<f64>| -> Vec<f64> {
            runs.iter()
                .filter(|run| run.system == system && run.workload == workload)
                .filter_map(|run| run.result.as_ref().ok())
                .filter_map(pick)
                .collect()
        };
        let name = if workload == Workload::Watch { "watch" } else { "op" };
        let rate = |result: &BenchResult| Some(result.records_per_s);
        let p99 = |result: &BenchResult| result.latency(name).map(|l| l.p99_us as f64);
        let ratio = |pick: &dyn Fn(&BenchResult) -> Option<f64>| match (
            mean(&collect(System::Cairn, pick)),
            mean(&collect(System::Etcd, pick)),
        ) {
            (Some(cairn), Some(etcd)) if etcd > 0.0 => format!("{:.2}", cairn / etcd),
            _ => "-".to_owned(),
        };
        let _ = writeln!(out, "| {} | {} | {} |", workload.stem(), ratio(&rate), ratio(&p99));
    }
    let _ = writeln!(out, "\nCommands:\n\n```text");
    for line in commands {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "```");
    out
}

/// A latency in µs for the table: `850 us`, `1.25 ms`.
fn format_us(us: u64) -> String {
    if us < 1_000 { format!("{us} us") } else { format!("{:.2} ms", us as f64 / 1e3) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let parsed = Options::parse(&strings(&["--quick", "--out", "x"])).unwrap();
        assert_eq!(parsed, Options { quick: true, out: PathBuf::from("x"), no_build: false });
        assert!(Options::parse(&strings(&["--what"])).is_err());
        assert_eq!(parsed.command_line(), "cargo xtask bench etcd --quick --out x");
    }

    #[test]
    fn half_peak_is_half_of_the_best_put_run() {
        let result = |per_s: f64| {
            BenchResult::parse(&format!(
                r#"{{"command":"etcd-put","records":1,"bytes":1,"elapsed_s":1.0,"records_per_s":{per_s},"mb_per_s":0.0}}"#
            ))
            .unwrap()
        };
        let runs = vec![
            Run {
                system: System::Cairn,
                workload: Workload::Put,
                rate: None,
                result: Ok(result(1000.0)),
            },
            Run {
                system: System::Cairn,
                workload: Workload::Put,
                rate: None,
                result: Ok(result(3000.0)),
            },
            Run {
                system: System::Etcd,
                workload: Workload::Put,
                rate: None,
                result: Ok(result(9000.0)),
            },
        ];
        assert_eq!(half_peak(&runs, System::Cairn), 1500);
        assert_eq!(half_peak(&runs, System::Etcd), 4500);
    }
}
