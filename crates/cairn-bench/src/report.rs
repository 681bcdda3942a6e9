//! The result of a run: [`Report`], printed as a summary table on stdout, written as JSON
//! (`--json`) and plotted (`--plot`).
//!
//! JSON shape (one object; numbers are plain, units in the key names):
//!
//! ```text
//! { "command": "produce", "config": { ...every flag... },
//!   "records": 1000, "bytes": 1024000, "elapsed_s": 1.0, "records_per_s": 1000.0,
//!   "mb_per_s": 1.02, "errors": 0,
//!   "latencies": { "ack": { "count", "mean_us", "p50_us", "p99_us", "p999_us", "max_us" }, ... },
//!   "values": { ...command-specific numbers... }, "notes": [ "..." ],
//!   "broker_rss_max_bytes": null,
//!   "series": [ { "second", "duration_s", "records", "bytes", "records_per_s", "mb_per_s",
//!                 "p50_us", "p99_us", "rss_bytes" } ] }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::monitor::Observed;
use crate::stats::{LatencySummary, Recorder, SeriesPoint, format_count, format_si, format_us};

/// Everything a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The subcommand: `produce`, `consume`, `e2e`, `disk`, `nats-produce`.
    pub command: String,
    /// The run's parameters, as given or defaulted.
    pub config: serde_json::Value,
    /// Records done (acknowledged, consumed; for `disk`, writes).
    pub records: u64,
    /// Their bytes (see `notes` for what is counted).
    pub bytes: u64,
    /// Wall time of the measured part, seconds.
    pub elapsed_s: f64,
    /// `records / elapsed_s`.
    pub records_per_s: f64,
    /// `bytes / elapsed_s / 10^6`.
    pub mb_per_s: f64,
    /// Records that failed.
    pub errors: u64,
    /// Latency percentiles by name (`ack`, `e2e`, `fetch`, `fdatasync_4k`).
    pub latencies: BTreeMap<String, LatencySummary>,
    /// Command-specific numbers by name, unit last (`raw_write_mb_per_s`).
    pub values: BTreeMap<String, f64>,
    /// What the numbers mean and what to keep in mind.
    pub notes: Vec<String>,
    /// The broker's largest RSS sampled (`--broker-pid`), bytes.
    pub broker_rss_max_bytes: Option<u64>,
    /// One point per second of the run.
    pub series: Vec<SeriesPoint>,
}

impl Report {
    /// A report of `records` and `bytes` done in `elapsed_s`, with the rates computed.
    #[must_use]
    pub fn new(
        command: &str,
        config: serde_json::Value,
        records: u64,
        bytes: u64,
        elapsed_s: f64,
    ) -> Report {
        let per_s = |count: u64| if elapsed_s > 0.0 { count as f64 / elapsed_s } else { 0.0 };
        Report {
            command: command.to_owned(),
            config,
            records,
            bytes,
            elapsed_s,
            records_per_s: per_s(records),
            mb_per_s: per_s(bytes) / 1e6,
            errors: 0,
            latencies: BTreeMap::new(),
            values: BTreeMap::new(),
            notes: Vec::new(),
            broker_rss_max_bytes: None,
            series: Vec::new(),
        }
    }

    /// The report of a run measured by `recorder` over `elapsed`: its records and bytes, its
    /// latencies under `latency`, and the broker's RSS `observed` in the per-second series.
    #[must_use]
    pub fn of_run(
        command: &str,
        config: serde_json::Value,
        recorder: &Recorder,
        latency: &str,
        observed: &Observed,
        elapsed: std::time::Duration,
    ) -> Report {
        let mut report =
            Report::new(command, config, recorder.records, recorder.bytes, elapsed.as_secs_f64());
        if let Some(summary) = LatencySummary::of(&recorder.total) {
            report.latencies.insert(latency.to_owned(), summary);
        }
        report.broker_rss_max_bytes = observed.rss_max_bytes();
        if observed.rss_max_by_pid.len() > 1 {
            for (pid, &rss) in &observed.rss_max_by_pid {
                report.values.insert(format!("rss_max_bytes.pid{pid}"), rss as f64);
            }
        }
        report.series = recorder.series(&observed.rss_bytes, elapsed);
        report
    }

    /// The summary table for stdout.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "cairn-bench {}", self.command);
        let mut rows: Vec<(String, String)> = vec![
            ("records".into(), format_count(self.records)),
            (
                "bytes".into(),
                format!("{} ({:.1} MB)", format_count(self.bytes), self.bytes as f64 / 1e6),
            ),
            ("elapsed".into(), format!("{:.2} s", self.elapsed_s)),
            (
                "throughput".into(),
                format!("{} records/s, {:.1} MB/s", format_si(self.records_per_s), self.mb_per_s),
            ),
            ("errors".into(), format_count(self.errors)),
        ];
        for (name, value) in &self.values {
            rows.push((name.clone(), format_value(*value)));
        }
        if let Some(rss) = self.broker_rss_max_bytes {
            rows.push(("broker RSS max".into(), format!("{:.1} MiB", rss as f64 / 1048576.0)));
        }
        let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        for (name, value) in &rows {
            let _ = writeln!(out, "  {name:<width$}  {value}");
        }
        if !self.latencies.is_empty() {
            let _ = writeln!(out);
            out.push_str(&latency_table(&self.latencies));
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    /// Writes the report as pretty JSON to `path`.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self).context("serializing the report")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// A number for the table: integers without decimals, others with two.
fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// The latency table: one row per histogram, p50/p99/p99.9/max.
#[must_use]
pub fn latency_table(latencies: &BTreeMap<String, LatencySummary>) -> String {
    let mut rows =
        vec![["latency", "count", "p50", "p99", "p99.9", "max", "mean"].map(String::from)];
    for (name, summary) in latencies {
        rows.push([
            name.clone(),
            format_count(summary.count),
            format_us(summary.p50_us),
            format_us(summary.p99_us),
            format_us(summary.p999_us),
            format_us(summary.max_us),
            format_us(summary.mean_us.round() as u64),
        ]);
    }
    let widths: Vec<usize> =
        (0..7).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::from(" ");
        for (column, (cell, width)) in row.iter().zip(&widths).enumerate() {
            // Names left-aligned, numbers right-aligned.
            if column == 0 {
                let _ = write!(line, " {cell:<width$}");
            } else {
                let _ = write!(line, "  {cell:>width$}");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut report =
            Report::new("produce", serde_json::json!({"acks": "all"}), 2000, 2_048_000, 2.0);
        report.latencies.insert(
            "ack".into(),
            LatencySummary {
                count: 2000,
                mean_us: 1500.4,
                p50_us: 1200,
                p99_us: 5300,
                p999_us: 9100,
                max_us: 12_000,
            },
        );
        report.values.insert("producers".into(), 4.0);
        report.notes.push("latency per record".into());
        report.series = vec![SeriesPoint {
            second: 0,
            duration_s: 1.0,
            records: 1000,
            bytes: 1_024_000,
            records_per_s: 1000.0,
            mb_per_s: 1.024,
            p50_us: Some(1200),
            p99_us: None,
            rss_bytes: None,
        }];
        report
    }

    #[test]
    fn table_lists_rates_and_percentiles() {
        let table = sample().table();
        let expected = "\
cairn-bench produce
  records     2,000
  bytes       2,048,000 (2.0 MB)
  elapsed     2.00 s
  throughput  1.0k records/s, 1.0 MB/s
  errors      0
  producers   4

  latency  count      p50      p99    p99.9       max     mean
  ack      2,000  1.20 ms  5.30 ms  9.10 ms  12.00 ms  1.50 ms
note: latency per record
";
        assert_eq!(table, expected);
    }

    #[test]
    fn json_has_the_documented_shape() {
        let json = serde_json::to_value(sample()).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "broker_rss_max_bytes",
                "bytes",
                "command",
                "config",
                "elapsed_s",
                "errors",
                "latencies",
                "mb_per_s",
                "notes",
                "records",
                "records_per_s",
                "series",
                "values"
            ]
        );
        assert_eq!(json["records_per_s"], 1000.0);
        assert_eq!(json["latencies"]["ack"]["p999_us"], 9100);
        assert_eq!(
            json["series"][0],
            serde_json::json!({
                "second": 0, "duration_s": 1.0, "records": 1000, "bytes": 1_024_000,
                "records_per_s": 1000.0, "mb_per_s": 1.024,
                "p50_us": 1200, "p99_us": null, "rss_bytes": null
            })
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        sample().write_json(&path).unwrap();
        let read: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(read, json);
    }
}
