//! The pure half of `cargo xtask bench`: what a suite run measured ([`Results`]), the parsing of
//! the tools' JSON (`cairn-bench --json` into [`BenchResult`], `iperf3 -J` into [`Loopback`]),
//! the targets of issue 4 ([`targets`]) and of issue 10 ([`targets_r3`]: the 3-node cluster)
//! and the markdown report ([`render`], [`splice`]).
//!
//! Nothing here starts a process or touches a file, so the tests feed fixture JSON and compare
//! table rows. `bench.rs` runs the measurements and fills [`Results`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

mod r3;

pub use self::r3::{r3_rss_max_bytes, targets_r3};

/// Record sizes (value bytes) of every produce matrix, cairn's and NATS's.
pub const RECORD_BYTES: [usize; 3] = [100, 1024, 16 * 1024];
/// Producer counts of every produce matrix.
pub const PRODUCERS: [usize; 2] = [1, 4];
/// The record size the produce targets are judged at, and the consume and e2e runs use.
pub const TARGET_RECORD_BYTES: usize = 1024;
/// The producer count of the "peak" the e2e rate is derived from.
pub const PEAK_PRODUCERS: usize = 4;

/// Target: durable produce of 1 KiB records reaches this fraction of the raw sequential write
/// bandwidth.
pub const PRODUCE_VS_DISK_MIN: f64 = 0.5;
/// Target: durable produce of 1 KiB records reaches this multiple of NATS JetStream R1's
/// records/s.
pub const PRODUCE_VS_NATS_MIN: f64 = 4.0;
/// Target: one consumer reading from the page cache reaches this fraction of loopback TCP.
pub const CONSUME_VS_LOOPBACK_MIN: f64 = 0.5;
/// Target: end-to-end p99 at [`E2E_RATE_FRACTION`] of the peak, µs.
pub const E2E_P99_US_MAX: u64 = 5_000;
/// Target: the broker's resident memory throughout the suite, bytes.
pub const BROKER_RSS_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// Target (issue 10): 3 nodes, replication factor 3, 1 KiB records reach this multiple of NATS
/// JetStream R3's records/s at the same concurrency.
pub const R3_VS_NATS_MIN: f64 = 4.0;
/// Target (issue 10): writes resume within this many election timeouts of the leader's kill
/// (p50 and p99).
pub const FAILOVER_ELECTION_TIMEOUTS_MAX: f64 = 3.0;
/// What a step that `--only` left out reports.
pub const NOT_RUN: &str = "not run";
/// The e2e run's rate as a fraction of the 1 KiB / [`PEAK_PRODUCERS`]-producer peak.
pub const E2E_RATE_FRACTION: f64 = 0.5;

/// The line before the generated part of `docs/benchmarks.md`.
pub const BEGIN_MARKER: &str = "<!-- bench:begin -->";
/// The line after it.
pub const END_MARKER: &str = "<!-- bench:end -->";

/// Latency percentiles of one histogram of a `cairn-bench` run, µs.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Latency {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest value.
    pub max_us: u64,
}

/// The parts of a `cairn-bench --json` report the suite uses (the per-second series is left in
/// the file, for the plot).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct BenchResult {
    /// The subcommand: `produce`, `consume`, `e2e`, `disk`, `nats-produce`.
    pub command: String,
    /// The run's flags, as `cairn-bench` recorded them.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Records done (acknowledged, consumed; for `disk`, 1 MiB writes).
    pub records: u64,
    /// Their bytes (keys and values for the Kafka subcommands).
    pub bytes: u64,
    /// Wall time of the measured part, s.
    pub elapsed_s: f64,
    /// `records / elapsed_s`.
    pub records_per_s: f64,
    /// `bytes / elapsed_s`, MB/s (10^6 bytes).
    pub mb_per_s: f64,
    /// Records that failed.
    #[serde(default)]
    pub errors: u64,
    /// Latency histograms by name (`ack`, `e2e`, `fetch`, `fdatasync_4k`).
    #[serde(default)]
    pub latencies: BTreeMap<String, Latency>,
    /// Command-specific numbers (`wire_mb_per_s`, `raw_write_mb_per_s`).
    #[serde(default)]
    pub values: BTreeMap<String, f64>,
    /// What the numbers mean.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The server's largest sampled RSS (`--broker-pid`), bytes.
    #[serde(default)]
    pub broker_rss_max_bytes: Option<u64>,
    /// For a run against a cluster: each node's id and PID (set by the suite, not in the JSON).
    #[serde(skip)]
    pub node_pids: Vec<(u64, u32)>,
}

impl BenchResult {
    /// Parses the JSON `cairn-bench --json` wrote.
    ///
    /// # Errors
    ///
    /// If the text is not JSON or lacks a field the suite reads.
    pub fn parse(json: &str) -> Result<BenchResult> {
        serde_json::from_str(json).context("parsing a cairn-bench --json report")
    }

    /// The latency histogram `name`, if the run recorded it.
    #[must_use]
    pub fn latency(&self, name: &str) -> Option<&Latency> {
        self.latencies.get(name)
    }

    /// Each node's largest RSS sample of a cluster run (`rss_max_bytes.pid<PID>`), by node id.
    #[must_use]
    pub fn node_rss_max_bytes(&self) -> Vec<(u64, Option<u64>)> {
        self.node_pids
            .iter()
            .map(|&(node, pid)| {
                (node, self.value(&format!("rss_max_bytes.pid{pid}")).map(|v| v as u64))
            })
            .collect()
    }

    /// The partition leaders a cluster run started with (`leader.p<N>` values): `p0→2 p1→3`.
    #[must_use]
    pub fn leaders(&self) -> String {
        let cells: Vec<String> = self
            .values
            .iter()
            .filter_map(|(name, &leader)| {
                let partition = name.strip_prefix("leader.p")?;
                Some(if leader < 0.0 {
                    format!("p{partition}→-")
                } else {
                    format!("p{partition}→{leader:.0}")
                })
            })
            .collect();
        cells.join(" ")
    }

    /// The number `values[name]`, if the run reported it.
    #[must_use]
    pub fn value(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }

    /// Publishes or requests in flight per producer (`config.pace.inflight`).
    #[must_use]
    pub fn inflight(&self) -> Option<u64> {
        self.config.get("pace")?.get("inflight")?.as_u64()
    }
}

/// Loopback TCP bandwidth, from `iperf3 -c 127.0.0.1 -J`.
#[derive(Clone, Debug, PartialEq)]
pub struct Loopback {
    /// Bits per second the server received (`end.sum_received`).
    pub received_bits_per_s: f64,
    /// Seconds the test ran.
    pub seconds: f64,
    /// Parallel streams of the test.
    pub streams: u64,
}

impl Loopback {
    /// The bandwidth in MB/s (10^6 bytes), the unit of `cairn-bench`.
    #[must_use]
    pub fn mb_per_s(&self) -> f64 {
        self.received_bits_per_s / 8.0 / 1e6
    }
}

/// Parses the JSON of an `iperf3 -c ... -J` client run.
///
/// # Errors
///
/// If the text is not JSON, if iperf3 reported an error (its `error` field), or if
/// `end.sum_received` is missing.
pub fn parse_iperf3(json: &str) -> Result<Loopback> {
    let value: serde_json::Value =
        serde_json::from_str(json).context("parsing iperf3 -J output")?;
    if let Some(error) = value.get("error").and_then(serde_json::Value::as_str) {
        bail!("iperf3 failed: {error}");
    }
    let received =
        value.pointer("/end/sum_received").context("iperf3 -J output has no end.sum_received")?;
    let number = |name: &str| received.get(name).and_then(serde_json::Value::as_f64);
    let received_bits_per_s =
        number("bits_per_second").context("end.sum_received has no bits_per_second")?;
    let seconds = number("seconds").unwrap_or_default();
    let streams = value
        .pointer("/start/test_start/num_streams")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1);
    Ok(Loopback { received_bits_per_s, seconds, streams })
}

/// A measurement's result, or why there is none (a failure, or "not run" and the reason).
pub type Outcome<T> = Result<T, String>;

/// One produce run of a matrix.
#[derive(Clone, Debug)]
pub struct Case {
    /// Bytes of each record's value.
    pub record_bytes: usize,
    /// Concurrent producers (connections).
    pub producers: usize,
    /// What `cairn-bench` measured.
    pub result: Outcome<BenchResult>,
}

/// The e2e run and the rate it ran at.
#[derive(Clone, Debug)]
pub struct E2e {
    /// Records/s of the open-loop schedule.
    pub rate: u64,
    /// The peak it is a fraction of (1 KiB, [`PEAK_PRODUCERS`] producers), records/s.
    pub peak_records_per_s: f64,
    /// What `cairn-bench e2e` measured.
    pub result: BenchResult,
}

/// The failover measurement and the election timeouts of the nodes it ran on.
#[derive(Clone, Debug)]
pub struct Failover {
    /// What `cairn-bench failover` measured (`resume` latencies).
    pub result: BenchResult,
    /// The nodes' shortest election timeout, ms (their `/metrics`).
    pub election_timeout_min_ms: u64,
    /// Their longest.
    pub election_timeout_max_ms: u64,
}

/// Everything one suite run measured, in the order the report shows it.
#[derive(Clone, Debug)]
pub struct Results {
    /// The command that produced the results (`cargo xtask bench --write-docs`).
    pub command: String,
    /// Seconds each produce run lasted.
    pub duration_s: u64,
    /// Machine facts, label and value, in display order.
    pub machine: Vec<(String, String)>,
    /// `cairn-bench disk`: raw sequential write bandwidth and fdatasync latency.
    pub disk: Outcome<BenchResult>,
    /// `cairn-bench disk` writing about as much as a produce run: the rate the device sustains
    /// once the host's write-back cache is full (on a VM it can be far below the short write's).
    pub disk_sustained: Outcome<BenchResult>,
    /// `iperf3` over 127.0.0.1.
    pub loopback: Outcome<Loopback>,
    /// cairn, one node, durable produce: one case per record size and producer count.
    pub cairn: Vec<Case>,
    /// cairn, one consumer from the earliest offset of a topic filled right before.
    pub consume: Outcome<BenchResult>,
    /// cairn, end-to-end latency at [`E2E_RATE_FRACTION`] of the peak.
    pub e2e: Outcome<E2e>,
    /// NATS JetStream, one server, streams with one replica.
    pub nats_r1: Vec<Case>,
    /// NATS JetStream, a 3-server cluster, streams with three replicas.
    pub nats_r3: Vec<Case>,
    /// cairn, 3 nodes, topics with replication factor 3, durable produce.
    pub cairn_r3: Vec<Case>,
    /// Each node's peak RSS (`VmHWM`) at the end of the 3-node produce runs, by node id.
    pub cairn_r3_hwm_bytes: Vec<(u64, Option<u64>)>,
    /// Writes resuming after the partition leader is killed.
    pub failover: Outcome<Failover>,
    /// The cairn broker's peak RSS over its whole life (`VmHWM` just before its shutdown).
    pub broker_rss_hwm_bytes: Option<u64>,
    /// Failures outside the measurements (a server that did not start or stop cleanly).
    pub failures: Vec<String>,
    /// What to keep in mind about this run (other processes running, errors).
    pub notes: Vec<String>,
    /// Every server and `cairn-bench` command line, in order.
    pub commands: Vec<String>,
}

impl Results {
    /// Whether anything failed: a measurement, a server start or stop.
    #[must_use]
    pub fn failed(&self) -> bool {
        let case_failed = |cases: &[Case]| cases.iter().any(|case| case.result.is_err());
        let failed = |error: Option<&String>| error.is_some_and(|error| error != NOT_RUN);
        !self.failures.is_empty()
            || failed(self.disk.as_ref().err())
            || failed(self.loopback.as_ref().err())
            || case_failed(&self.cairn)
            || failed(self.consume.as_ref().err())
            || failed(self.e2e.as_ref().err())
            || case_failed(&self.nats_r1)
            || case_failed(&self.nats_r3)
            || case_failed(&self.cairn_r3)
            || failed(self.failover.as_ref().err())
    }
}

/// The file stem of a cairn produce case's `--json`/`--plot` files.
#[must_use]
pub fn cairn_produce_stem(record_bytes: usize, producers: usize) -> String {
    format!("cairn-produce-{record_bytes}b-{producers}p")
}

/// The file stem of a NATS case's files.
#[must_use]
pub fn nats_stem(replicas: usize, record_bytes: usize, producers: usize) -> String {
    format!("nats-r{replicas}-produce-{record_bytes}b-{producers}p")
}

/// The file stem of a 3-node cairn produce case.
#[must_use]
pub fn cairn_r3_stem(record_bytes: usize, producers: usize) -> String {
    format!("cairn-r3-produce-{record_bytes}b-{producers}p")
}

/// The file stem of the failover measurement.
pub const FAILOVER_STEM: &str = "cairn-failover";

/// The file stem of the raw disk baseline.
pub const DISK_STEM: &str = "disk";
/// Output stem of the sustained raw write.
pub const DISK_SUSTAINED_STEM: &str = "disk-sustained";
/// The file stem of the consume run.
pub const CONSUME_STEM: &str = "cairn-consume";
/// The file stem of the e2e run.
pub const E2E_STEM: &str = "cairn-e2e";

/// Whether a target holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The measurement meets the target.
    Met,
    /// It does not.
    NotMet,
    /// A measurement it needs failed or did not run.
    Unknown,
}

impl Verdict {
    fn of(met: bool) -> Verdict {
        if met { Verdict::Met } else { Verdict::NotMet }
    }

    /// The verdict as the report's cell.
    #[must_use]
    pub fn cell(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "**NOT met**",
            Verdict::Unknown => "not measured",
        }
    }
}

/// One row of the targets table.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The target, as issue 4 states it.
    pub target: &'static str,
    /// The numbers it is judged on.
    pub measured: String,
    /// Whether it holds.
    pub verdict: Verdict,
}

/// The case of `cases` with the most records/s at `record_bytes`.
#[must_use]
pub fn peak(cases: &[Case], record_bytes: usize) -> Option<(&Case, &BenchResult)> {
    cases
        .iter()
        .filter(|case| case.record_bytes == record_bytes)
        .filter_map(|case| case.result.as_ref().ok().map(|result| (case, result)))
        .max_by(|a, b| a.1.records_per_s.total_cmp(&b.1.records_per_s))
}

/// The successful case of `cases` at `record_bytes` and `producers`.
#[must_use]
pub fn case(cases: &[Case], record_bytes: usize, producers: usize) -> Option<&BenchResult> {
    cases
        .iter()
        .find(|case| case.record_bytes == record_bytes && case.producers == producers)
        .and_then(|case| case.result.as_ref().ok())
}

/// The cairn broker's largest RSS seen in the suite: its `VmHWM` and every run's samples.
#[must_use]
pub fn broker_rss_max_bytes(results: &Results) -> Option<u64> {
    let runs = results
        .cairn
        .iter()
        .filter_map(|case| case.result.as_ref().ok())
        .chain(results.consume.as_ref().ok())
        .chain(results.e2e.as_ref().ok().map(|e2e| &e2e.result))
        .filter_map(|result| result.broker_rss_max_bytes);
    runs.chain(results.broker_rss_hwm_bytes).max()
}

/// The first target: durable 1 KiB produce against the raw sequential write bandwidth. Judged
/// against the sustained raw write when it ran: a produce run writes gigabytes, past the
/// write-back cache the short raw write measures. Both ratios are shown.
fn produce_vs_disk(results: &Results) -> Target {
    let target = "durable produce (acks=all), 1 KiB records: >= 50% of the raw sequential write \
                  bandwidth";
    let baseline = results
        .disk_sustained
        .as_ref()
        .ok()
        .map(|disk| (disk, "sustained"))
        .or_else(|| results.disk.as_ref().ok().map(|disk| (disk, "short")));
    match (peak(&results.cairn, TARGET_RECORD_BYTES), baseline) {
        (Some((case, produce)), Some((disk, kind))) if disk.mb_per_s > 0.0 => {
            let ratio = produce.mb_per_s / disk.mb_per_s;
            let mut measured = format!(
                "{} MB/s ({}) / {} MB/s {kind} raw write = {ratio:.2}",
                mb(produce.mb_per_s),
                producers(case.producers),
                mb(disk.mb_per_s)
            );
            if let (Ok(short), "sustained") = (&results.disk, kind)
                && short.mb_per_s > 0.0
            {
                let _ = write!(
                    measured,
                    " ({:.2} of the {} MB/s short raw write)",
                    produce.mb_per_s / short.mb_per_s,
                    mb(short.mb_per_s)
                );
            }
            Target { target, measured, verdict: Verdict::of(ratio >= PRODUCE_VS_DISK_MIN) }
        }
        _ => Target {
            target,
            measured: "the 1 KiB produce runs or the disk baseline failed".to_owned(),
            verdict: Verdict::Unknown,
        },
    }
}

/// The targets of issue 4, judged on `results`.
#[must_use]
pub fn targets(results: &Results) -> Vec<Target> {
    let unknown = |target: &'static str, why: &str| Target {
        target,
        measured: why.to_owned(),
        verdict: Verdict::Unknown,
    };
    let mut rows = Vec::new();

    rows.push(produce_vs_disk(results));

    let target = "durable produce, 1 KiB records: >= 4x the records/s of NATS JetStream R1";
    rows.push(
        match (
            peak(&results.cairn, TARGET_RECORD_BYTES),
            peak(&results.nats_r1, TARGET_RECORD_BYTES),
        ) {
            (Some((cairn_case, cairn)), Some((nats_case, nats))) if nats.records_per_s > 0.0 => {
                let ratio = cairn.records_per_s / nats.records_per_s;
                Target {
                    target,
                    measured: format!(
                        "{} ({}) / {} records/s ({}) = {ratio:.2}",
                        rate(cairn.records_per_s),
                        producers(cairn_case.producers),
                        rate(nats.records_per_s),
                        producers(nats_case.producers)
                    ),
                    verdict: Verdict::of(ratio >= PRODUCE_VS_NATS_MIN),
                }
            }
            _ => unknown(target, "the 1 KiB cairn or NATS R1 runs failed"),
        },
    );

    let target = "consume from the page cache, one consumer: >= 50% of loopback TCP bandwidth";
    rows.push(match (&results.consume, &results.loopback) {
        (Ok(consume), Ok(loopback)) if loopback.mb_per_s() > 0.0 => {
            let ratio = consume.mb_per_s / loopback.mb_per_s();
            Target {
                target,
                measured: format!(
                    "{} MB/s / {} MB/s = {ratio:.2}",
                    mb(consume.mb_per_s),
                    mb(loopback.mb_per_s())
                ),
                verdict: Verdict::of(ratio >= CONSUME_VS_LOOPBACK_MIN),
            }
        }
        _ => unknown(target, "the consume run or the loopback baseline failed"),
    });

    let target = "end-to-end p99 <= 5 ms at 50% of the single-node peak rate";
    rows.push(match &results.e2e {
        Ok(e2e) => match e2e.result.latency("e2e") {
            Some(latency) => Target {
                target,
                measured: format!(
                    "p99 {} at {} records/s",
                    us(latency.p99_us),
                    rate(e2e.rate as f64)
                ),
                verdict: Verdict::of(latency.p99_us <= E2E_P99_US_MAX),
            },
            None => unknown(target, "the e2e run received no records"),
        },
        Err(_) => unknown(target, "the e2e run failed"),
    });

    let target = "broker RSS <= 512 MiB throughout the suite";
    rows.push(match broker_rss_max_bytes(results) {
        Some(rss) => Target {
            target,
            measured: format!("max {}", mib(rss)),
            verdict: Verdict::of(rss <= BROKER_RSS_BYTES_MAX),
        },
        None => unknown(target, "no RSS sample of the broker"),
    });
    rows
}

/// The generated part of the report: machine, baselines, results, ratios, targets, notes,
/// commands. `plot` gives the link to a run's SVG by file stem (`None`: no link).
#[must_use]
pub fn render(results: &Results, plot: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    render_machine(&mut out, results);
    render_baselines(&mut out, results, plot);
    render_cairn_produce(&mut out, results, plot);
    render_consume(&mut out, results, plot);
    render_e2e(&mut out, results, plot);
    render_nats(&mut out, results, plot);
    r3::render_cairn_r3(&mut out, results, plot);
    r3::render_failover(&mut out, results);
    render_targets(&mut out, results);
    r3::render_targets_r3(&mut out, results);
    render_notes(&mut out, results);
    render_commands(&mut out, results);
    out
}

fn render_machine(out: &mut String, results: &Results) {
    let _ = writeln!(out, "### Machine of this run\n");
    for (label, value) in &results.machine {
        let _ = writeln!(out, "- {label}: {value}");
    }
    let _ = writeln!(out);
}

fn render_baselines(out: &mut String, results: &Results, plot: &dyn Fn(&str) -> Option<String>) {
    let _ = writeln!(out, "### Baselines (same run)\n");
    let mut table = Table::new(&["baseline", "result", "method", "plot"]);
    match &results.disk {
        Ok(disk) => {
            let method = disk.notes.first().cloned().unwrap_or_default();
            table.row(vec![
                "raw sequential write".into(),
                format!("{} MB/s", mb(disk.mb_per_s)),
                format!("`cairn-bench disk`: {method}"),
                link(plot, DISK_STEM),
            ]);
            if let Some(sync) = disk.latency("fdatasync_4k") {
                table.row(vec![
                    "fdatasync latency".into(),
                    format!(
                        "p50 {}, p99 {}, p99.9 {}",
                        us(sync.p50_us),
                        us(sync.p99_us),
                        us(sync.p999_us)
                    ),
                    disk.notes.get(1).cloned().unwrap_or_default(),
                    String::new(),
                ]);
            }
        }
        Err(error) => table.row(vec!["raw sequential write".into(), failed(error)]),
    }
    match &results.disk_sustained {
        Ok(disk) => table.row(vec![
            "raw sequential write, sustained".into(),
            format!("{} MB/s", mb(disk.mb_per_s)),
            format!("`cairn-bench disk`: {}", disk.notes.first().cloned().unwrap_or_default()),
            link(plot, DISK_SUSTAINED_STEM),
        ]),
        Err(error) => table.row(vec!["raw sequential write, sustained".into(), failed(error)]),
    }
    match &results.loopback {
        Ok(loopback) => table.row(vec![
            "loopback TCP".into(),
            format!(
                "{} MB/s ({:.1} Gbit/s)",
                mb(loopback.mb_per_s()),
                loopback.received_bits_per_s / 1e9
            ),
            format!(
                "iperf3 over 127.0.0.1, {} stream(s), {:.0} s, bytes received",
                loopback.streams, loopback.seconds
            ),
            String::new(),
        ]),
        Err(error) => {
            table.row(vec!["loopback TCP".into(), failed(error)]);
        }
    }
    out.push_str(&table.render());
}

/// The cairn produce table's rows: one per case.
#[must_use]
pub fn cairn_produce_rows(
    results: &Results,
    plot: &dyn Fn(&str) -> Option<String>,
) -> Vec<Vec<String>> {
    let disk_mb_per_s = results.disk.as_ref().ok().map(|disk| disk.mb_per_s);
    results
        .cairn
        .iter()
        .map(|case| {
            let mut row = vec![size(case.record_bytes), case.producers.to_string()];
            match &case.result {
                Ok(result) => {
                    let ack = result.latency("ack");
                    row.extend([
                        rate(result.records_per_s),
                        mb(result.mb_per_s),
                        ack.map_or_else(String::new, |l| us(l.p50_us)),
                        ack.map_or_else(String::new, |l| us(l.p99_us)),
                        ack.map_or_else(String::new, |l| us(l.p999_us)),
                        disk_mb_per_s
                            .filter(|disk| *disk > 0.0)
                            .map_or_else(String::new, |disk| ratio(result.mb_per_s / disk)),
                        result.broker_rss_max_bytes.map_or_else(String::new, mib),
                        link(plot, &cairn_produce_stem(case.record_bytes, case.producers)),
                    ]);
                }
                Err(error) => {
                    row.push(failed(error));
                    row.extend(std::iter::repeat_n(String::new(), 7));
                }
            }
            row
        })
        .collect()
}

/// The NATS table's rows for `cases` of `replicas` replicas; with `cairn`, a column of cairn's
/// records/s divided by NATS's at the same size and concurrency.
#[must_use]
pub fn nats_rows(
    replicas: usize,
    cases: &[Case],
    cairn: Option<&[Case]>,
    plot: &dyn Fn(&str) -> Option<String>,
) -> Vec<Vec<String>> {
    cases
        .iter()
        .map(|case| {
            let mut row = vec![size(case.record_bytes), case.producers.to_string()];
            match &case.result {
                Ok(result) => {
                    let ack = result.latency("ack");
                    row.extend([
                        result.inflight().map_or_else(String::new, |n| n.to_string()),
                        rate(result.records_per_s),
                        mb(result.mb_per_s),
                        ack.map_or_else(String::new, |l| us(l.p50_us)),
                        ack.map_or_else(String::new, |l| us(l.p99_us)),
                        ack.map_or_else(String::new, |l| us(l.p999_us)),
                    ]);
                    if let Some(cairn) = cairn {
                        let versus = self::case(cairn, case.record_bytes, case.producers)
                            .filter(|_| result.records_per_s > 0.0)
                            .map_or_else(String::new, |c| {
                                ratio(c.records_per_s / result.records_per_s)
                            });
                        row.push(versus);
                    }
                    row.push(result.broker_rss_max_bytes.map_or_else(String::new, mib));
                    row.push(link(plot, &nats_stem(replicas, case.record_bytes, case.producers)));
                }
                Err(error) => {
                    row.push(failed(error));
                    let rest = if cairn.is_some() { 8 } else { 7 };
                    row.extend(std::iter::repeat_n(String::new(), rest));
                }
            }
            row
        })
        .collect()
}

fn render_cairn_produce(
    out: &mut String,
    results: &Results,
    plot: &dyn Fn(&str) -> Option<String>,
) {
    let _ = writeln!(out, "### cairn, one node: durable produce (acks=all)\n");
    let mut table = Table::new(&[
        "record",
        "producers",
        "records/s",
        "MB/s",
        "ack p50",
        "ack p99",
        "ack p99.9",
        "MB/s / raw disk",
        "broker RSS max",
        "plot",
    ]);
    for row in cairn_produce_rows(results, plot) {
        table.row(row);
    }
    out.push_str(&table.render());
    let errors: u64 =
        results.cairn.iter().filter_map(|case| case.result.as_ref().ok()).map(|r| r.errors).sum();
    if errors > 0 {
        let _ = writeln!(out, "{errors} records failed (see the runs' JSON).\n");
    }
}

fn render_consume(out: &mut String, results: &Results, plot: &dyn Fn(&str) -> Option<String>) {
    let _ = writeln!(out, "### cairn, one node: consume (one consumer, page cache)\n");
    let mut table = Table::new(&[
        "records/s",
        "MB/s",
        "wire MB/s",
        "loopback MB/s",
        "MB/s / loopback",
        "fetch p50",
        "fetch p99",
        "broker RSS max",
        "plot",
    ]);
    match &results.consume {
        Ok(consume) => {
            let loopback = results.loopback.as_ref().ok().map(Loopback::mb_per_s);
            let fetch = consume.latency("fetch");
            table.row(vec![
                rate(consume.records_per_s),
                mb(consume.mb_per_s),
                consume.value("wire_mb_per_s").map_or_else(String::new, mb),
                loopback.map_or_else(String::new, mb),
                loopback
                    .filter(|l| *l > 0.0)
                    .map_or_else(String::new, |l| ratio(consume.mb_per_s / l)),
                fetch.map_or_else(String::new, |l| us(l.p50_us)),
                fetch.map_or_else(String::new, |l| us(l.p99_us)),
                consume.broker_rss_max_bytes.map_or_else(String::new, mib),
                link(plot, CONSUME_STEM),
            ]);
        }
        Err(error) => table.row(vec![failed(error)]),
    }
    out.push_str(&table.render());
    out.push_str(
        "The consumer reads a 16-partition topic of 1 KiB records from the earliest offset, right \
         after it was filled: the topic fits in cairn's page cache window (256 MiB per partition \
         by default), so the reads come from the page cache. It asks for at most 4 MiB per \
         fetch response (Kafka's `fetch.max.bytes`; 1 MiB per partition): on this machine 4 MiB \
         responses consume about 1.8 times as fast as 16 MiB ones, which the consumer checks \
         after they have left the CPU caches.\n\n",
    );
}

fn render_e2e(out: &mut String, results: &Results, plot: &dyn Fn(&str) -> Option<String>) {
    let _ = writeln!(out, "### cairn, one node: end-to-end latency\n");
    let mut table = Table::new(&[
        "rate (records/s)",
        "records received",
        "e2e p50",
        "e2e p99",
        "e2e p99.9",
        "e2e max",
        "ack p99",
        "wake-up lateness p99 / max",
        "broker RSS max",
        "plot",
    ]);
    match &results.e2e {
        Ok(e2e) => {
            let latency = e2e.result.latency("e2e");
            let ack = e2e.result.latency("ack");
            let wakeup = e2e.result.latency("wakeup");
            let acked = e2e.result.value("records_acked").unwrap_or_default() as u64;
            table.row(vec![
                format!(
                    "{} ({:.0}% of {})",
                    rate(e2e.rate as f64),
                    E2E_RATE_FRACTION * 100.0,
                    rate(e2e.peak_records_per_s)
                ),
                format!("{} of {} acknowledged", count(e2e.result.records), count(acked)),
                latency.map_or_else(String::new, |l| us(l.p50_us)),
                latency.map_or_else(String::new, |l| us(l.p99_us)),
                latency.map_or_else(String::new, |l| us(l.p999_us)),
                latency.map_or_else(String::new, |l| us(l.max_us)),
                ack.map_or_else(String::new, |l| us(l.p99_us)),
                wakeup.map_or_else(String::new, |l| format!("{} / {}", us(l.p99_us), us(l.max_us))),
                e2e.result.broker_rss_max_bytes.map_or_else(String::new, mib),
                link(plot, E2E_STEM),
            ]);
        }
        Err(error) => table.row(vec![failed(error)]),
    }
    out.push_str(&table.render());
    let _ = writeln!(
        out,
        "The e2e and ack percentiles leave out the run's first seconds (`--warmup`, in the \
         command lines below: connections, topic creation, the first segment files); the plot \
         shows every second. *Wake-up lateness* is how much later than asked a thread of the \
         load process that sleeps 1 ms at a time woke up during the run (`cairn-bench`'s \
         wake-up probe): the machine's scheduling delay under the load, included in every \
         latency of the run.\n"
    );
}

fn render_nats(out: &mut String, results: &Results, plot: &dyn Fn(&str) -> Option<String>) {
    let sections = [
        ("R1 (one server)", 1, &results.nats_r1, Some(results.cairn.as_slice())),
        ("R3 (3-server cluster)", 3, &results.nats_r3, None),
    ];
    for (title, replicas, cases, cairn) in sections {
        let _ = writeln!(out, "### NATS JetStream, file storage, {title}\n");
        let mut header = vec![
            "record",
            "producers",
            "in flight",
            "records/s",
            "MB/s",
            "ack p50",
            "ack p99",
            "ack p99.9",
            "server RSS max",
            "plot",
        ];
        if cairn.is_some() {
            header.insert(8, "cairn / NATS records/s");
        }
        let mut table = Table::new(&header);
        for row in nats_rows(replicas, cases, cairn, plot) {
            table.row(row);
        }
        out.push_str(&table.render());
    }
    let _ = writeln!(
        out,
        "**NATS acknowledges before fsync by default.** JetStream acknowledges a publish once the \
         message is in its file store's write buffer (R3: in a quorum of the replicas' stores), \
         and syncs to disk in the background every 2 minutes (`sync_interval`, configurable from \
         nats-server 2.10; Debian's 2.9 has no setting). cairn's acks=all acknowledges after \
         fdatasync. The NATS numbers are therefore not durable-equivalent: a power loss can take \
         back what NATS acknowledged, not what cairn did. *in flight* is unacknowledged \
         publishes per producer, chosen so that each producer has as many record bytes in flight \
         as a cairn producer (5 requests of one 16 KiB batch for each of 4 partitions).\n"
    );
}

/// A table of `targets` under the heading `### {heading}`.
fn render_target_table(out: &mut String, heading: &str, targets: Vec<Target>) {
    let _ = writeln!(out, "### {heading}\n");
    let mut table = Table::new(&["target", "measured", "verdict"]);
    for target in targets {
        table.row(vec![
            target.target.to_owned(),
            target.measured,
            target.verdict.cell().to_owned(),
        ]);
    }
    out.push_str(&table.render());
}

fn render_targets(out: &mut String, results: &Results) {
    render_target_table(out, "Targets (issue 4)", targets(results));
    if let Some(hwm) = results.broker_rss_hwm_bytes {
        let _ = writeln!(
            out,
            "Broker RSS: the largest of the per-second samples of every run and the broker's \
             peak (`VmHWM`, {}) read just before its shutdown.\n",
            mib(hwm)
        );
    }
}

fn render_notes(out: &mut String, results: &Results) {
    if results.notes.is_empty() && results.failures.is_empty() {
        return;
    }
    let _ = writeln!(out, "### Notes on this run\n");
    for failure in &results.failures {
        let _ = writeln!(out, "- failed: {failure}");
    }
    for note in &results.notes {
        let _ = writeln!(out, "- {note}");
    }
    let _ = writeln!(out);
}

fn render_commands(out: &mut String, results: &Results) {
    let _ = writeln!(out, "### Command lines of this run\n");
    let _ = writeln!(
        out,
        "Produced by `{}` ({} s per produce run). The servers and runs it started:\n",
        results.command, results.duration_s
    );
    let _ = writeln!(out, "<details><summary>command lines</summary>\n\n```text");
    for command in &results.commands {
        let _ = writeln!(out, "{command}");
    }
    let _ = writeln!(out, "```\n\n</details>");
}

/// Replaces the text between [`BEGIN_MARKER`] and [`END_MARKER`] in `document` by `generated`,
/// keeping the markers and everything outside them.
///
/// # Errors
///
/// If a marker is missing, or the end marker comes before the begin marker.
pub fn splice(document: &str, generated: &str) -> Result<String> {
    let begin = document
        .find(BEGIN_MARKER)
        .with_context(|| format!("no `{BEGIN_MARKER}` line in the document"))?;
    let after_begin = begin + BEGIN_MARKER.len();
    let end = document[after_begin..]
        .find(END_MARKER)
        .map(|position| after_begin + position)
        .with_context(|| format!("no `{END_MARKER}` line after `{BEGIN_MARKER}`"))?;
    let mut spliced = String::with_capacity(document.len() + generated.len());
    spliced.push_str(&document[..after_begin]);
    spliced.push_str("\n\n");
    spliced.push_str(generated.trim_end());
    spliced.push_str("\n\n");
    spliced.push_str(&document[end..]);
    Ok(spliced)
}

/// A markdown table.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|&cell| cell.to_owned()).collect(), rows: Vec::new() }
    }

    /// Adds a row; a short one (a failure) is padded with empty cells to the header's width.
    fn row(&mut self, mut row: Vec<String>) {
        row.resize(row.len().max(self.header.len()), String::new());
        self.rows.push(row);
    }

    /// The table and a blank line after it.
    fn render(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(&self.header);
        out.push_str(&line(&vec!["---".to_owned(); self.header.len()]));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out.push('\n');
        out
    }
}

/// `[svg](link)` if the run has a plot to link to.
fn link(plot: &dyn Fn(&str) -> Option<String>, stem: &str) -> String {
    plot(stem).map_or_else(String::new, |target| format!("[svg]({target})"))
}

/// A failure in a table cell: one line, no pipes.
fn failed(error: &str) -> String {
    let line = error.lines().next().unwrap_or_default().replace('|', "/");
    format!("failed: {line}")
}

/// A record size for people: `100 B`, `1 KiB`, `16 KiB`.
#[must_use]
pub fn size(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

/// A rate for people, as `cairn-bench` prints it: `950`, `12.3k`, `1.23M`.
#[must_use]
pub fn rate(per_s: f64) -> String {
    if per_s < 1e3 {
        format!("{per_s:.0}")
    } else if per_s < 1e6 {
        format!("{:.1}k", per_s / 1e3)
    } else {
        format!("{:.2}M", per_s / 1e6)
    }
}

/// `1 producer`, `4 producers`.
fn producers(count: usize) -> String {
    format!("{count} producer{}", if count == 1 { "" } else { "s" })
}

/// A count with thousands separators: `1,234,567`.
#[must_use]
pub fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// MB/s with one decimal.
#[must_use]
pub fn mb(mb_per_s: f64) -> String {
    format!("{mb_per_s:.1}")
}

/// A ratio with two decimals.
#[must_use]
pub fn ratio(value: f64) -> String {
    format!("{value:.2}")
}

/// A latency for people, as `cairn-bench` prints it: `850 us`, `1.25 ms`, `2.50 s`.
#[must_use]
pub fn us(micros: u64) -> String {
    if micros < 1_000 {
        format!("{micros} us")
    } else if micros < 1_000_000 {
        format!("{:.2} ms", micros as f64 / 1e3)
    } else {
        format!("{:.2} s", micros as f64 / 1e6)
    }
}

/// Bytes in MiB with one decimal.
#[must_use]
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `cairn-bench --json` report as the tool writes it (series shortened).
    fn bench_json(command: &str, records_per_s: f64, mb_per_s: f64, extra: &str) -> String {
        format!(
            r#"{{
  "command": "{command}",
  "config": {{ "pace": {{ "inflight": 320, "producers": 4 }} }},
  "records": 2813640, "bytes": 2881167360, "elapsed_s": 10.0,
  "records_per_s": {records_per_s}, "mb_per_s": {mb_per_s}, "errors": 0,
  "latencies": {{ "ack": {{ "count": 2813640, "mean_us": 5016.9, "p50_us": 4851,
                           "p99_us": 10423, "p999_us": 13759, "max_us": 18783 }} }},
  "values": {{ "records_sent": 2813640.0 {extra} }},
  "notes": ["topic p4 (4 partitions)"],
  "broker_rss_max_bytes": 25329664,
  "series": [{{ "second": 0, "duration_s": 1.0, "records": 445140, "bytes": 455823360,
               "records_per_s": 445140.0, "mb_per_s": 455.8, "p50_us": 2751, "p99_us": 7935,
               "rss_bytes": 22306816 }}]
}}"#
        )
    }

    const DISK_JSON: &str = r#"{
  "command": "disk", "config": { "bytes": 1073741824 },
  "records": 1024, "bytes": 1073741824, "elapsed_s": 0.5,
  "records_per_s": 2040.8, "mb_per_s": 2139.9, "errors": 0,
  "latencies": { "fdatasync_4k": { "count": 1000, "mean_us": 152.5, "p50_us": 153,
                                   "p99_us": 230, "p999_us": 435, "max_us": 514 } },
  "values": { "raw_final_fdatasync_s": 0.31, "raw_write_mb_per_s": 2139.9 },
  "notes": ["raw write: 1024 MiB in 1 MiB pwrites", "fdatasync latency: 1000 rounds"],
  "broker_rss_max_bytes": null, "series": []
}"#;

    /// The start and end of an `iperf3 -c 127.0.0.1 -t 5 -J` run (intervals left out).
    const IPERF3_JSON: &str = r#"{
  "start": { "connected": [{ "socket": 5, "local_host": "127.0.0.1", "remote_port": 5201 }],
             "version": "iperf 3.12", "test_start": { "protocol": "TCP", "num_streams": 1,
             "duration": 5 } },
  "intervals": [],
  "end": {
    "streams": [],
    "sum_sent": { "start": 0, "end": 5.000042, "seconds": 5.000042, "bytes": 25769803776,
                  "bits_per_second": 41231257330.1, "retransmits": 0 },
    "sum_received": { "start": 0, "end": 5.000121, "seconds": 5.000121,
                      "bytes": 25769672704, "bits_per_second": 41230395470.5 },
    "cpu_utilization_percent": { "host_total": 98.1 }
  }
}"#;

    fn ok(json: &str) -> BenchResult {
        BenchResult::parse(json).unwrap()
    }

    fn cases(records_per_s: f64, mb_per_s: f64) -> Vec<Case> {
        let mut cases = Vec::new();
        for record_bytes in RECORD_BYTES {
            for producers in PRODUCERS {
                let scale = producers as f64 / 4.0;
                let json = bench_json("produce", records_per_s * scale, mb_per_s * scale, "");
                cases.push(Case { record_bytes, producers, result: Ok(ok(&json)) });
            }
        }
        cases
    }

    fn sample() -> Results {
        let consume_extra = r#", "wire_mb_per_s": 800.5"#;
        let mut consume = ok(&bench_json("consume", 772_649.0, 791.2, consume_extra));
        consume.latencies.insert("fetch".into(), consume.latencies["ack"].clone());
        let mut e2e = ok(&bench_json("e2e", 140_000.0, 143.4, r#", "records_acked": 2800000"#));
        let mut e2e_latency = e2e.latencies["ack"].clone();
        e2e_latency.p99_us = 4_200;
        e2e.latencies.insert("e2e".into(), e2e_latency.clone());
        e2e_latency.p99_us = 1_860;
        e2e_latency.max_us = 9_530;
        e2e.latencies.insert("wakeup".into(), e2e_latency);
        Results {
            command: "cargo xtask bench --write-docs".into(),
            duration_s: 20,
            machine: vec![("CPU".into(), "AMD EPYC, 2 logical CPUs".into())],
            disk: Ok(ok(DISK_JSON)),
            disk_sustained: Err("not run".into()),
            loopback: parse_iperf3(IPERF3_JSON).map_err(|e| e.to_string()),
            cairn: cases(281_232.1, 287.98),
            consume: Ok(consume),
            e2e: Ok(E2e { rate: 140_616, peak_records_per_s: 281_232.1, result: e2e }),
            nats_r1: cases(164_400.0, 168.3),
            nats_r3: vec![Case {
                record_bytes: 1024,
                producers: 4,
                result: Err("nats-server did not become healthy".into()),
            }],
            cairn_r3: Vec::new(),
            cairn_r3_hwm_bytes: Vec::new(),
            failover: Err(NOT_RUN.into()),
            broker_rss_hwm_bytes: Some(40 * 1024 * 1024),
            failures: Vec::new(),
            notes: vec!["rustc was running when cairn-e2e started".into()],
            commands: vec!["target/release/cairn serve --data-dir target/bench-suite/cairn".into()],
        }
    }

    fn plots(stem: &str) -> Option<String> {
        (stem == "cairn-produce-1024b-4p").then(|| format!("bench/{stem}.svg"))
    }

    #[test]
    fn cairn_bench_json_is_parsed() {
        let result = ok(&bench_json("produce", 281_232.087, 287.98, ""));
        assert_eq!(result.command, "produce");
        assert_eq!(result.records, 2_813_640);
        assert_eq!(result.latency("ack").map(|l| l.p999_us), Some(13_759));
        assert_eq!(result.value("records_sent"), Some(2_813_640.0));
        assert_eq!(result.inflight(), Some(320));
        assert_eq!(result.broker_rss_max_bytes, Some(25_329_664));
        let disk = ok(DISK_JSON);
        assert_eq!(disk.broker_rss_max_bytes, None);
        assert_eq!(disk.latency("fdatasync_4k").map(|l| l.p99_us), Some(230));
        assert!(BenchResult::parse("{}").is_err());
        assert!(BenchResult::parse("not json").is_err());
    }

    #[test]
    fn iperf3_json_is_parsed() {
        let loopback = parse_iperf3(IPERF3_JSON).unwrap();
        assert_eq!(loopback.streams, 1);
        assert!((loopback.seconds - 5.000121).abs() < 1e-9);
        assert!((loopback.mb_per_s() - 5153.799).abs() < 0.001, "{}", loopback.mb_per_s());
        let error = parse_iperf3(r#"{"start": {}, "error": "unable to connect to server"}"#);
        assert_eq!(error.unwrap_err().to_string(), "iperf3 failed: unable to connect to server");
        assert!(parse_iperf3(r#"{"end": {}}"#).is_err());
        assert!(parse_iperf3("").is_err());
    }

    #[test]
    fn produce_rows_have_rates_latencies_ratio_and_plot() {
        let mut results = sample();
        results.cairn[0].result = Err("cairn-bench produce exited with 1\nmore | detail".into());
        let rows = cairn_produce_rows(&results, &plots);
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[0][..3], ["100 B", "1", "failed: cairn-bench produce exited with 1"]);
        assert!(rows[0][3..].iter().all(String::is_empty));
        assert_eq!(rows[0].len(), rows[3].len());
        assert_eq!(
            rows[3],
            [
                "1 KiB",
                "4",
                "281.2k",
                "288.0",
                "4.85 ms",
                "10.42 ms",
                "13.76 ms",
                "0.13",
                "24.2 MiB",
                "[svg](bench/cairn-produce-1024b-4p.svg)"
            ]
        );
        assert_eq!(rows[2][..3], ["1 KiB", "1", "70.3k"]);
        assert_eq!(rows[2][9], "", "no plot link for this case");
    }

    #[test]
    fn nats_rows_compare_with_cairn_at_the_same_size_and_concurrency() {
        let results = sample();
        let rows = nats_rows(1, &results.nats_r1, Some(&results.cairn), &plots);
        assert_eq!(
            rows[3],
            [
                "1 KiB", "4", "320", "164.4k", "168.3", "4.85 ms", "10.42 ms", "13.76 ms", "1.71",
                "24.2 MiB", ""
            ]
        );
        let rows = nats_rows(3, &results.nats_r3, None, &plots);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].len(), 10);
        assert_eq!(rows[0][2], "failed: nats-server did not become healthy");
    }

    #[test]
    fn targets_are_judged_on_the_run() {
        let results = sample();
        let targets = targets(&results);
        let verdicts: Vec<Verdict> = targets.iter().map(|t| t.verdict).collect();
        assert_eq!(
            verdicts,
            [Verdict::NotMet, Verdict::NotMet, Verdict::NotMet, Verdict::Met, Verdict::Met]
        );
        assert_eq!(
            targets[0].measured,
            "288.0 MB/s (4 producers) / 2139.9 MB/s short raw write = 0.13"
        );
        assert_eq!(
            targets[1].measured,
            "281.2k (4 producers) / 164.4k records/s (4 producers) = 1.71"
        );
        assert_eq!(targets[2].measured, "791.2 MB/s / 5153.8 MB/s = 0.15");
        assert_eq!(targets[3].measured, "p99 4.20 ms at 140.6k records/s");
        assert_eq!(targets[4].measured, "max 40.0 MiB", "VmHWM is above every sample");

        let mut results = sample();
        results.disk = Err("no space".into());
        results.e2e = Err("timeout".into());
        let targets = super::targets(&results);
        assert_eq!(targets[0].verdict, Verdict::Unknown);
        assert_eq!(targets[3].verdict, Verdict::Unknown);
        assert_eq!(targets[3].measured, "the e2e run failed");
    }

    #[test]
    fn report_has_every_section_and_plain_nats_statement() {
        let results = sample();
        let report = render(&results, &plots);
        for heading in [
            "### Machine of this run",
            "### Baselines (same run)",
            "### cairn, one node: durable produce (acks=all)",
            "### cairn, one node: consume (one consumer, page cache)",
            "### cairn, one node: end-to-end latency",
            "### NATS JetStream, file storage, R1 (one server)",
            "### NATS JetStream, file storage, R3 (3-server cluster)",
            "### Targets (issue 4)",
            "### Notes on this run",
            "### Command lines of this run",
        ] {
            assert!(report.contains(&format!("{heading}\n")), "missing {heading}:\n{report}");
        }
        assert!(report.contains("**NATS acknowledges before fsync by default.**"));
        assert!(report.contains(
            "| raw sequential write | 2139.9 MB/s | `cairn-bench disk`: raw write: 1024 MiB in 1 \
             MiB pwrites |  |\n"
        ));
        assert!(report.contains(
            "| loopback TCP | 5153.8 MB/s (41.2 Gbit/s) | iperf3 over 127.0.0.1, 1 stream(s), \
             5 s, bytes received |  |\n"
        ));
        assert!(report.contains(
            "| 772.6k | 791.2 | 800.5 | 5153.8 | 0.15 | 4.85 ms | 10.42 ms | 24.2 MiB |  |\n"
        ));
        assert!(report.contains(
            "| 140.6k (50% of 281.2k) | 2,813,640 of 2,800,000 acknowledged | 4.85 ms | 4.20 ms | \
             13.76 ms | 18.78 ms | 10.42 ms | 1.86 ms / 9.53 ms | 24.2 MiB |  |\n"
        ));
        assert!(report.contains(
            "| end-to-end p99 <= 5 ms at 50% of the single-node peak rate | p99 4.20 ms at \
             140.6k records/s | met |\n"
        ));
        assert!(report.contains("- rustc was running when cairn-e2e started\n"));
        assert!(
            report.contains("target/release/cairn serve --data-dir target/bench-suite/cairn\n")
        );
        // Every table row has as many cells as its header.
        let mut columns = None;
        for line in report.lines() {
            if !line.starts_with('|') {
                columns = None;
                continue;
            }
            let cells = line.matches(" | ").count();
            assert_eq!(*columns.get_or_insert(cells), cells, "ragged table row: {line}");
        }
    }

    /// `sample()` with the 3-node steps: R3 cases on nodes 1..=3 (PIDs 11..=13) with their RSS
    /// and leaders, NATS R3 at a quarter of cairn's rate, and a failover of 20 kills.
    fn sample_r3() -> Results {
        let mut results = sample();
        let extra = r#", "rss_max_bytes.pid11": 52428800.0, "rss_max_bytes.pid12": 62914560.0,
                       "rss_max_bytes.pid13": 57671680.0, "leader.p0": 2.0, "leader.p1": 3.0,
                       "leader.p2": -1.0, "batches_retried": 7.0"#;
        results.cairn_r3 = cases(0.0, 0.0)
            .into_iter()
            .map(|case| {
                let scale = case.producers as f64 / 4.0;
                let json = bench_json("produce", 140_000.0 * scale, 143.4 * scale, extra);
                let mut result = ok(&json);
                result.node_pids = vec![(1, 11), (2, 12), (3, 13)];
                Case { result: Ok(result), ..case }
            })
            .collect();
        results.nats_r3 = cases(35_000.0, 35.8);
        results.cairn_r3_hwm_bytes = vec![(1, Some(70 << 20)), (2, Some(64 << 20)), (3, None)];
        let mut failover = ok(&bench_json("failover", 190.0, 0.0, r#", "kills": 20.0"#));
        let mut resume = failover.latencies["ack"].clone();
        (resume.count, resume.p50_us, resume.p99_us, resume.max_us) =
            (20, 4_500_000, 9_600_000, 9_700_000);
        failover.latencies.insert("resume".into(), resume);
        results.failover = Ok(Failover {
            result: failover,
            election_timeout_min_ms: 1500,
            election_timeout_max_ms: 3000,
        });
        results
    }

    #[test]
    fn r3_rows_compare_with_nats_r3_and_show_nodes() {
        let results = sample_r3();
        let rows = r3::cairn_r3_rows(&results, &|_| None);
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[3][..4], ["1 KiB", "4", "140.0k", "143.4"]);
        assert_eq!(
            rows[3][7..10],
            [
                "7".to_owned(),
                "p0→2 p1→3 p2→-".to_owned(),
                "n1 50.0 MiB / n2 60.0 MiB / n3 55.0 MiB".to_owned(),
            ]
        );
        let versus = r3::versus_nats_rows(&results);
        assert_eq!(versus[3][..5], ["1 KiB", "4", "140.0k", "35.0k", "4.00"]);
        // The peak per node: its samples and its VmHWM, whichever is larger.
        assert_eq!(r3_rss_max_bytes(&results), [(1, 70 << 20), (2, 64 << 20), (3, 55 << 20)]);
    }

    #[test]
    fn r3_targets_are_judged_on_the_run() {
        let mut results = sample_r3();
        let verdicts = |results: &Results| -> Vec<Verdict> {
            targets_r3(results).into_iter().map(|target| target.verdict).collect()
        };
        // 4.00x NATS R3; p99 9.6 s > 3 x 3 s; 70 MiB per node at most.
        assert_eq!(verdicts(&results), [Verdict::Met, Verdict::NotMet, Verdict::Met]);
        let failover = &targets_r3(&results)[1].measured;
        assert!(
            failover.starts_with("p50 4.50 s (1.50 / 3.00), p99 9.60 s (3.20 / 6.40)"),
            "{failover}"
        );
        results.nats_r3[3].result = Err("no servers".into());
        results.failover = Err(NOT_RUN.into());
        results.cairn_r3_hwm_bytes[0].1 = Some(600 << 20);
        assert_eq!(verdicts(&results), [Verdict::Unknown, Verdict::Unknown, Verdict::NotMet]);
        // A step --only left out is no failure; a failed one is.
        let mut only = sample_r3();
        only.disk = Err(NOT_RUN.into());
        only.nats_r3 = cases(35_000.0, 35.8);
        assert!(!only.failed());
        only.failover = Err("writes did not resume".into());
        assert!(only.failed());
        let report = render(&sample_r3(), &|_| None);
        for heading in [
            "### cairn, 3 nodes, replication factor 3: durable produce (acks=all)",
            "### cairn vs NATS JetStream R3 (same run)",
            "### cairn, 3 nodes: writes resume after the leader is killed",
            "### Targets (issue 10)",
        ] {
            assert!(report.contains(heading), "{heading}");
        }
        assert!(!report.contains("waits for replication"));
    }

    #[test]
    fn splice_replaces_only_between_the_markers() {
        let document = "# Benchmarks\n\nhand-written\n\n<!-- bench:begin -->\nold\n\
                        <!-- bench:end -->\n\nafter\n";
        let spliced = splice(document, "new table\n").unwrap();
        assert_eq!(
            spliced,
            "# Benchmarks\n\nhand-written\n\n<!-- bench:begin -->\n\nnew table\n\n\
             <!-- bench:end -->\n\nafter\n"
        );
        assert_eq!(splice(&spliced, "new table").unwrap(), spliced, "splicing is idempotent");
        assert!(splice("no markers", "x").is_err());
        assert!(splice("<!-- bench:end --> <!-- bench:begin -->", "x").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(size(100), "100 B");
        assert_eq!(size(1024), "1 KiB");
        assert_eq!(size(16_384), "16 KiB");
        assert_eq!(rate(950.0), "950");
        assert_eq!(rate(281_232.1), "281.2k");
        assert_eq!(rate(2_452_533.0), "2.45M");
        assert_eq!(us(850), "850 us");
        assert_eq!(us(4_851), "4.85 ms");
        assert_eq!(us(2_500_000), "2.50 s");
        assert_eq!(mib(25_329_664), "24.2 MiB");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(cairn_produce_stem(16_384, 1), "cairn-produce-16384b-1p");
        assert_eq!(nats_stem(3, 100, 4), "nats-r3-produce-100b-4p");
    }
}
