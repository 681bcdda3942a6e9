//! The 3-node part of the report (issue 10): the cairn R3 produce table, cairn against NATS
//! JetStream R3 in the same run, the failover times, and the targets of issue 10
//! ([`targets_r3`]). Pure, as its parent `report.rs`.

use std::fmt::Write as _;

use super::{
    BROKER_RSS_BYTES_MAX, FAILOVER_ELECTION_TIMEOUTS_MAX, Failover, PEAK_PRODUCERS, R3_VS_NATS_MIN,
    Results, TARGET_RECORD_BYTES, Table, Target, Verdict, cairn_r3_stem, case, failed, link, mb,
    mib, rate, ratio, render_target_table, size, us,
};

/// Each node's largest RSS in the 3-node produce runs: its samples in every run and its
/// `VmHWM` before the shutdown, by node id.
#[must_use]
pub fn r3_rss_max_bytes(results: &Results) -> Vec<(u64, u64)> {
    let mut max: Vec<(u64, u64)> = Vec::new();
    let mut add = |node: u64, bytes: u64| match max.iter_mut().find(|(id, _)| *id == node) {
        Some((_, seen)) => *seen = (*seen).max(bytes),
        None => max.push((node, bytes)),
    };
    for result in results.cairn_r3.iter().filter_map(|case| case.result.as_ref().ok()) {
        for (node, bytes) in result.node_rss_max_bytes() {
            if let Some(bytes) = bytes {
                add(node, bytes);
            }
        }
    }
    for &(node, hwm) in &results.cairn_r3_hwm_bytes {
        if let Some(hwm) = hwm {
            add(node, hwm);
        }
    }
    max.sort_unstable();
    max
}

/// `n1 41.0 / n2 39.5 / n3 40.2 MiB`.
fn per_node(values: &[(u64, Option<u64>)]) -> String {
    let cells: Vec<String> = values
        .iter()
        .map(|(node, bytes)| match bytes {
            Some(bytes) => format!("n{node} {}", mib(*bytes)),
            None => format!("n{node} -"),
        })
        .collect();
    cells.join(" / ")
}

/// The rows of the cairn R3 table.
#[must_use]
pub fn cairn_r3_rows(results: &Results, plot: &dyn Fn(&str) -> Option<String>) -> Vec<Vec<String>> {
    results
        .cairn_r3
        .iter()
        .map(|case| {
            let mut row = vec![size(case.record_bytes), case.producers.to_string()];
            match &case.result {
                Ok(result) => {
                    let ack = result.latency("ack");
                    let retried = result.value("batches_retried").unwrap_or_default();
                    row.extend([
                        rate(result.records_per_s),
                        mb(result.mb_per_s),
                        ack.map_or_else(String::new, |l| us(l.p50_us)),
                        ack.map_or_else(String::new, |l| us(l.p99_us)),
                        ack.map_or_else(String::new, |l| us(l.p999_us)),
                        format!("{retried:.0}"),
                        result.leaders(),
                        per_node(&result.node_rss_max_bytes()),
                        link(plot, &cairn_r3_stem(case.record_bytes, case.producers)),
                    ]);
                }
                Err(error) => row.push(failed(error)),
            }
            row
        })
        .collect()
}

/// The rows of "cairn vs NATS JetStream R3": every case both ran.
#[must_use]
pub fn versus_nats_rows(results: &Results) -> Vec<Vec<String>> {
    results
        .cairn_r3
        .iter()
        .filter_map(|cairn_case| {
            let cairn = cairn_case.result.as_ref().ok()?;
            let nats = case(&results.nats_r3, cairn_case.record_bytes, cairn_case.producers)?;
            let p99 = |result: &super::BenchResult| {
                result.latency("ack").map_or_else(String::new, |l| us(l.p99_us))
            };
            Some(vec![
                size(cairn_case.record_bytes),
                cairn_case.producers.to_string(),
                rate(cairn.records_per_s),
                rate(nats.records_per_s),
                if nats.records_per_s > 0.0 {
                    ratio(cairn.records_per_s / nats.records_per_s)
                } else {
                    String::new()
                },
                p99(cairn),
                p99(nats),
            ])
        })
        .collect()
}

/// The 3-node produce sections.
pub fn render_cairn_r3(out: &mut String, results: &Results, plot: &dyn Fn(&str) -> Option<String>) {
    if results.cairn_r3.is_empty() {
        return;
    }
    let _ = writeln!(out, "### cairn, 3 nodes, replication factor 3: durable produce (acks=all)\n");
    let mut table = Table::new(&[
        "record",
        "producers",
        "records/s",
        "MB/s",
        "ack p50",
        "ack p99",
        "ack p99.9",
        "batches retried",
        "partition leaders",
        "RSS max per node",
        "plot",
    ]);
    for row in cairn_r3_rows(results, plot) {
        table.row(row);
    }
    out.push_str(&table.render());
    let hwm = per_node(&results.cairn_r3_hwm_bytes);
    let _ = writeln!(
        out,
        "Three `cairn serve` on this machine (the same two CPUs as the load generator), each case \
         on a fresh topic of 4 partitions with replication factor 3; the producers send each \
         partition's batch to its leader (one connection per leader broker), and acks=all is \
         answered once a majority of the replicas has the batch on disk (fdatasync). *partition \
         leaders* is where Metadata placed the leaders when the run started; *batches retried* \
         counts batches sent again after NOT_LEADER_OR_FOLLOWER and the like. Peak RSS \
         (`VmHWM`) of each node at the end of the runs: {hwm}.\n"
    );
    let _ = writeln!(out, "### cairn vs NATS JetStream R3 (same run)\n");
    let mut table = Table::new(&[
        "record",
        "producers",
        "cairn R3 records/s",
        "NATS R3 records/s",
        "cairn / NATS",
        "cairn ack p99",
        "NATS ack p99",
    ]);
    for row in versus_nats_rows(results) {
        table.row(row);
    }
    out.push_str(&table.render());
    let _ = writeln!(
        out,
        "NATS R3 acknowledges once a quorum of its servers has the message in its file store's \
         buffer, before any fsync (see above); cairn R3 acknowledges after a quorum's fdatasync.\n"
    );
}

/// `1.85 s (0.62 / 1.23 election timeouts)`: a resume time, and what it is in the shortest and
/// longest election timeout.
fn in_timeouts(micros: u64, failover: &Failover) -> String {
    let ms = micros as f64 / 1e3;
    let of = |timeout: u64| if timeout > 0 { ms / timeout as f64 } else { 0.0 };
    format!(
        "{} ({:.2} / {:.2})",
        us(micros),
        of(failover.election_timeout_max_ms),
        of(failover.election_timeout_min_ms)
    )
}

/// The failover section.
pub fn render_failover(out: &mut String, results: &Results) {
    if results.failover.as_ref().is_err_and(|error| error == super::NOT_RUN) {
        return;
    }
    let _ = writeln!(out, "### cairn, 3 nodes: writes resume after the leader is killed\n");
    let mut table = Table::new(&[
        "kills",
        "election timeout",
        "resume p50 (÷ max / ÷ min timeout)",
        "resume p99",
        "resume max",
        "kill confirm max",
        "writes retried",
    ]);
    match &results.failover {
        Ok(failover) => {
            let result = &failover.result;
            let resume = result.latency("resume");
            let cell = |pick: fn(&super::Latency) -> u64| {
                resume.map_or_else(String::new, |l| in_timeouts(pick(l), failover))
            };
            table.row(vec![
                format!("{:.0}", result.value("kills").unwrap_or_default()),
                format!(
                    "{}–{} ms",
                    failover.election_timeout_min_ms, failover.election_timeout_max_ms
                ),
                cell(|l| l.p50_us),
                cell(|l| l.p99_us),
                cell(|l| l.max_us),
                result.latency("kill_confirm").map_or_else(String::new, |l| us(l.max_us)),
                format!("{:.0}", result.value("writes_retried").unwrap_or_default()),
            ]);
            for note in &result.notes {
                let _ = writeln!(out, "- {note}");
            }
            let _ = writeln!(out);
        }
        Err(error) => table.row(vec![failed(error)]),
    }
    out.push_str(&table.render());
    let _ = writeln!(
        out,
        "A 3-node cluster, one partition with replication factor 3, one producer writing \
         continuously (acks=all, one request in flight). Each round waits until the leader lists \
         every replica in sync, SIGKILLs it, measures the time from the kill to the first write \
         acknowledged by another node, restarts the killed node and waits for it to be back in \
         sync. Times in election timeouts divide by the nodes' configured longest and shortest \
         election timeout (their `/metrics`).\n"
    );
}

/// The targets of issue 10, judged on `results`.
#[must_use]
pub fn targets_r3(results: &Results) -> Vec<Target> {
    let unknown = |target: &'static str, why: &str| Target {
        target,
        measured: why.to_owned(),
        verdict: Verdict::Unknown,
    };
    let mut rows = Vec::new();
    let target = "3 nodes, replication factor 3, acks=all, 1 KiB records: >= 4x NATS JetStream R3 \
                  records/s at the same concurrency";
    let pair = |producers| {
        let cairn = case(&results.cairn_r3, TARGET_RECORD_BYTES, producers)?;
        let nats = case(&results.nats_r3, TARGET_RECORD_BYTES, producers)?;
        (nats.records_per_s > 0.0).then(|| (cairn, nats, cairn.records_per_s / nats.records_per_s))
    };
    rows.push(match pair(PEAK_PRODUCERS) {
        Some((cairn, nats, versus)) => {
            let mut measured = format!(
                "{} / {} records/s ({PEAK_PRODUCERS} producers) = {versus:.2}",
                rate(cairn.records_per_s),
                rate(nats.records_per_s)
            );
            if let Some((_, _, one)) = pair(1) {
                let _ = write!(measured, "; 1 producer: {one:.2}");
            }
            Target { target, measured, verdict: Verdict::of(versus >= R3_VS_NATS_MIN) }
        }
        None => unknown(target, "the 1 KiB cairn R3 or NATS R3 runs failed or did not run"),
    });
    rows.push(failover_target(results));
    let target = "RSS <= 512 MiB per node during the 3-node produce benchmark";
    let rss = r3_rss_max_bytes(results);
    rows.push(match rss.iter().map(|&(_, bytes)| bytes).max() {
        Some(max) => Target {
            target,
            measured: rss
                .iter()
                .map(|(node, bytes)| format!("n{node} {}", mib(*bytes)))
                .collect::<Vec<_>>()
                .join(", "),
            verdict: Verdict::of(max <= BROKER_RSS_BYTES_MAX),
        },
        None => unknown(target, "no RSS sample of the nodes"),
    });
    rows
}

/// Writes resume within 3 election timeouts (the longest configured), p50 and p99.
fn failover_target(results: &Results) -> Target {
    let target = "writes resume <= 3 election timeouts after the leader is killed (p50, p99)";
    let measured = results.failover.as_ref().ok().and_then(|failover| {
        let resume = failover.result.latency("resume")?;
        let limit_us =
            FAILOVER_ELECTION_TIMEOUTS_MAX * failover.election_timeout_max_ms as f64 * 1e3;
        let met = (resume.p50_us as f64) <= limit_us && (resume.p99_us as f64) <= limit_us;
        Some(Target {
            target,
            measured: format!(
                "p50 {}, p99 {} over {} kills; 3 x {} ms = {}",
                in_timeouts(resume.p50_us, failover),
                in_timeouts(resume.p99_us, failover),
                resume.count,
                failover.election_timeout_max_ms,
                us(limit_us as u64)
            ),
            verdict: Verdict::of(met),
        })
    });
    measured.unwrap_or(Target {
        target,
        measured: "the failover measurement failed or did not run".to_owned(),
        verdict: Verdict::Unknown,
    })
}

/// The targets table of issue 10.
pub fn render_targets_r3(out: &mut String, results: &Results) {
    render_target_table(out, "Targets (issue 10)", targets_r3(results));
    let _ = writeln!(
        out,
        "The failover target is judged against the longest configured election timeout; the \
         times are also given in the shortest. Not judged here: replication factor 1 against \
         the single node (an A/B of two builds) and 1,000 idle partitions (see below).\n"
    );
}
