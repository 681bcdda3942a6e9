//! The live progress line on stderr and the broker's memory, sampled while a run goes on.
//!
//! One task ticks every [`TICK`] (so the line changes at most 4 times a second): it rewrites one
//! line on stderr — elapsed time, records done, the rate over the last tick and over the run,
//! errors — and, every [`RSS_SAMPLE_EVERY`] ticks (each second), reads each broker's `VmRSS`
//! from `/proc/PID/status` for every `--broker-pid` given. The line is drawn only when stderr is a
//! terminal and `--quiet` is off; the RSS is sampled either way.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::stats::{Counters, format_count, format_rate};

/// Between two updates of the progress line.
pub const TICK: Duration = Duration::from_millis(250);
/// Ticks between two samples of the broker's RSS: once a second.
pub const RSS_SAMPLE_EVERY: u32 = 4;

/// What the monitor saw.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The largest broker's RSS by second of the run (`None` where no sample was taken or
    /// readable).
    pub rss_bytes: Vec<Option<u64>>,
    /// Each broker's largest RSS sample, by PID.
    pub rss_max_by_pid: BTreeMap<u32, u64>,
}

impl Observed {
    /// Samples the RSS of `pids` at `elapsed` into the series and the maxima.
    fn sample(&mut self, pids: &[u32], elapsed: Duration) {
        let mut largest = None;
        for &pid in pids {
            if let Some(rss) = rss_bytes(pid) {
                let max = self.rss_max_by_pid.entry(pid).or_default();
                *max = (*max).max(rss);
                largest = largest.max(Some(rss));
            }
        }
        let second = usize::try_from(elapsed.as_secs()).unwrap_or(usize::MAX);
        if second < crate::stats::SERIES_SECONDS_MAX {
            if self.rss_bytes.len() <= second {
                self.rss_bytes.resize(second + 1, None);
            }
            self.rss_bytes[second] = largest;
        }
    }

    /// The largest RSS sampled.
    #[must_use]
    pub fn rss_max_bytes(&self) -> Option<u64> {
        self.rss_bytes.iter().flatten().copied().max()
    }
}

/// A running monitor; [`Monitor::stop`] ends it.
pub struct Monitor {
    stop: watch::Sender<bool>,
    task: JoinHandle<Observed>,
}

impl Monitor {
    /// Starts the monitor of a run that started at `start`, labelled `label` on the progress
    /// line. `show` draws the line (when stderr is a terminal); the RSS of every process of
    /// `broker_pids` is sampled.
    #[must_use]
    pub fn start(
        label: &'static str,
        counters: Arc<Counters>,
        start: Instant,
        show: bool,
        broker_pids: Vec<u32>,
    ) -> Monitor {
        let show = show && std::io::stderr().is_terminal();
        let (stop, mut stopping) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut observed = Observed::default();
            let mut ticker = tokio::time::interval(TICK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut tick = 0u32;
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopping.changed() => break,
                }
                if !broker_pids.is_empty() && tick.is_multiple_of(RSS_SAMPLE_EVERY) {
                    observed.sample(&broker_pids, start.elapsed());
                }
                tick = tick.wrapping_add(1);
                if show {
                    let (records, _, errors) = counters.snapshot();
                    let now = Instant::now();
                    let interval = now.duration_since(last.0).as_secs_f64().max(1e-9);
                    let recent = records.saturating_sub(last.1) as f64 / interval;
                    last = (now, records);
                    let line = progress_line(label, start.elapsed(), records, recent, errors);
                    draw(&line);
                }
            }
            if show {
                draw("");
            }
            observed
        });
        Monitor { stop, task }
    }

    /// Stops the monitor (clearing the progress line) and returns what it saw.
    pub async fn stop(self) -> Observed {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// Rewrites the current stderr line with `line` (an empty one clears it).
fn draw(line: &str) {
    let mut stderr = std::io::stderr().lock();
    // A progress line that cannot be written is not worth failing the run for.
    let _ = write!(stderr, "\r\x1b[2K{line}");
    let _ = stderr.flush();
}

/// `produce  12.3 s  1,234,567 records  523.1k/s now  498.0k/s avg  0 errors`.
#[must_use]
pub fn progress_line(
    label: &str,
    elapsed: Duration,
    records: u64,
    recent_per_s: f64,
    errors: u64,
) -> String {
    let seconds = elapsed.as_secs_f64();
    let average = if seconds > 0.0 { records as f64 / seconds } else { 0.0 };
    let mut line = format!(
        "{label}  {seconds:.1} s  {} records  {} now  {} avg",
        format_count(records),
        format_rate(recent_per_s),
        format_rate(average)
    );
    if errors > 0 {
        line.push_str(&format!("  {} errors", format_count(errors)));
    }
    line
}

/// The resident set size of process `pid` in bytes, from `/proc/PID/status`; `None` if it cannot
/// be read (the process is gone, not Linux).
#[must_use]
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    vm_rss_bytes(&status)
}

/// The `VmRSS:  1234 kB` line of a `/proc/PID/status` text, in bytes.
#[must_use]
pub fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let mut parts = line.split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_the_status_text() {
        let status = "Name:\tcairn\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(vm_rss_bytes(status), Some(12345 * 1024));
        assert_eq!(vm_rss_bytes("Name:\tx\n"), None);
        assert_eq!(vm_rss_bytes("VmRSS:\tlots kB\n"), None);
        // This process has an RSS.
        assert!(rss_bytes(std::process::id()).is_some_and(|rss| rss > 0));
    }

    #[test]
    fn progress_lines() {
        let line = progress_line("produce", Duration::from_secs(2), 2_000_000, 1_500_000.0, 0);
        assert_eq!(line, "produce  2.0 s  2,000,000 records  1.50M/s now  1.00M/s avg");
        let line = progress_line("e2e", Duration::ZERO, 0, 0.0, 3);
        assert_eq!(line, "e2e  0.0 s  0 records  0/s now  0/s avg  3 errors");
    }
}
