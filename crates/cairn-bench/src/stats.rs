//! What a run measures: counts and latencies, in total and per second of the run.
//!
//! Latencies are kept in microseconds in HdrHistograms (1 µs to 1 hour, 3 significant digits in
//! total, 2 per second, which is plenty for a p50/p99 line on a plot). A [`Recorder`] belongs to
//! one task (a producer's acknowledgement reader, a consumer); recorders are merged at the end,
//! so nothing is shared on the hot path except the [`Counters`] the progress line reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram holds, in µs (1 hour); larger values are recorded as this.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Significant digits of the whole-run histograms.
const TOTAL_SIGFIG: u8 = 3;
/// Significant digits of the per-second histograms (a plot needs no more).
const SECOND_SIGFIG: u8 = 2;
/// Longest run the per-second series covers (a week); later seconds fold into the last one.
pub const SERIES_SECONDS_MAX: usize = 7 * 24 * 3600;

/// A latency histogram in µs.
pub type Latencies = Histogram<u64>;

/// A new latency histogram with `sigfig` significant digits.
fn latencies(sigfig: u8) -> Latencies {
    // The bounds are constants that hdrhistogram accepts (1 <= low, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, LATENCY_US_MAX, sigfig).expect("valid histogram bounds")
}

/// A new whole-run latency histogram.
#[must_use]
pub fn new_latencies() -> Latencies {
    latencies(TOTAL_SIGFIG)
}

/// A duration in whole µs, at least 1 (a histogram's lowest value).
#[must_use]
pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Counters the progress line reads while tasks run; updated once per request, not per record.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records done (acknowledged, consumed, written).
    pub records: AtomicU64,
    /// Their bytes.
    pub bytes: AtomicU64,
    /// Records that failed (a partition error in a produce response).
    pub errors: AtomicU64,
}

impl Counters {
    /// Adds `records` and `bytes`.
    pub fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// (records, bytes, errors) now.
    #[must_use]
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.records.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// One second of a run.
#[derive(Clone, Debug)]
pub struct Second {
    /// Records done in this second.
    pub records: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Latencies of the records (or requests) completed in this second.
    pub latencies: Latencies,
}

impl Second {
    fn new() -> Second {
        Second { records: 0, bytes: 0, latencies: latencies(SECOND_SIGFIG) }
    }
}

/// Counts and latencies of one task: the whole run and each second of it (by completion time,
/// in seconds since the run's start).
#[derive(Clone, Debug)]
pub struct Recorder {
    /// Every latency of the run completed after `warmup`, µs.
    pub total: Latencies,
    /// Latencies completed before this (since the run's start) are left out of `total`.
    pub warmup: Duration,
    /// Second `i` of the run at index `i`.
    pub seconds: Vec<Second>,
    /// Records done.
    pub records: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            total: new_latencies(),
            warmup: Duration::ZERO,
            seconds: Vec::new(),
            records: 0,
            bytes: 0,
        }
    }
}

impl Recorder {
    fn second(&mut self, at: Duration) -> &mut Second {
        let index = usize::try_from(at.as_secs()).unwrap_or(usize::MAX).min(SERIES_SECONDS_MAX);
        if self.seconds.len() <= index {
            self.seconds.resize_with(index + 1, Second::new);
        }
        &mut self.seconds[index]
    }

    /// Counts `records` of `bytes` done at `at` (since the run's start).
    pub fn count(&mut self, at: Duration, records: u64, bytes: u64) {
        self.records += records;
        self.bytes += bytes;
        let second = self.second(at);
        second.records += records;
        second.bytes += bytes;
    }

    /// A recorder whose `total` leaves out latencies completed in the first `warmup`.
    #[must_use]
    pub fn after_warmup(warmup: Duration) -> Recorder {
        Recorder { warmup, ..Recorder::default() }
    }

    /// Records a latency of `latency_us`, `count` times, completed at `at`.
    pub fn latency(&mut self, at: Duration, latency_us: u64, count: u64) {
        let value = latency_us.clamp(1, LATENCY_US_MAX);
        if at >= self.warmup {
            self.total.saturating_record_n(value, count);
        }
        self.second(at).latencies.saturating_record_n(value, count);
    }

    /// Adds `other` into this recorder.
    pub fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.total.add(&other.total);
        self.records += other.records;
        self.bytes += other.bytes;
        if self.seconds.len() < other.seconds.len() {
            self.seconds.resize_with(other.seconds.len(), Second::new);
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            mine.records += theirs.records;
            mine.bytes += theirs.bytes;
            let _ = mine.latencies.add(&theirs.latencies);
        }
    }

    /// The per-second series of a run that lasted `elapsed`, with the broker's RSS per second
    /// if it was sampled. The last second may be partial: its rates are over the part the run
    /// covered.
    #[must_use]
    pub fn series(&self, rss: &[Option<u64>], elapsed: Duration) -> Vec<SeriesPoint> {
        let seconds = self.seconds.len().max(rss.len());
        (0..seconds)
            .map(|index| {
                let second = self.seconds.get(index);
                let (records, bytes) = second.map_or((0, 0), |s| (s.records, s.bytes));
                let percentile = |q: f64| {
                    second
                        .filter(|s| !s.latencies.is_empty())
                        .map(|s| s.latencies.value_at_quantile(q))
                };
                // Completions can land a hair after `elapsed` was read: never divide by ~0.
                let covered = (elapsed.as_secs_f64() - index as f64).clamp(SECOND_COVERED_MIN, 1.0);
                SeriesPoint {
                    second: index as u64,
                    duration_s: covered,
                    records,
                    bytes,
                    records_per_s: records as f64 / covered,
                    mb_per_s: bytes as f64 / covered / 1e6,
                    p50_us: percentile(0.5),
                    p99_us: percentile(0.99),
                    rss_bytes: rss.get(index).copied().flatten(),
                }
            })
            .collect()
    }
}

/// The shortest part of a second a series point is taken to cover (the run's last, partial
/// second), so that its rate stays finite.
pub const SECOND_COVERED_MIN: f64 = 0.001;

/// One second of the time series (`--json` and `--plot`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Seconds since the start of the run: this point covers `[second, second + duration_s)`.
    pub second: u64,
    /// The part of the second the run covered: 1 except for the last second.
    pub duration_s: f64,
    /// Records done in that second.
    pub records: u64,
    /// Bytes done in that second.
    pub bytes: u64,
    /// `records / duration_s`.
    pub records_per_s: f64,
    /// `bytes / duration_s`, in MB/s (10^6 bytes).
    pub mb_per_s: f64,
    /// Median latency of what completed in that second, µs.
    pub p50_us: Option<u64>,
    /// 99th percentile latency of what completed in that second, µs.
    pub p99_us: Option<u64>,
    /// The broker's resident set size sampled in that second (`--broker-pid`).
    pub rss_bytes: Option<u64>,
}

/// Percentiles of a latency histogram, µs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Largest value, µs.
    pub max_us: u64,
}

impl LatencySummary {
    /// The summary of `histogram`, `None` if it is empty.
    #[must_use]
    pub fn of(histogram: &Latencies) -> Option<LatencySummary> {
        if histogram.is_empty() {
            return None;
        }
        Some(LatencySummary {
            count: histogram.len(),
            mean_us: histogram.mean(),
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        })
    }
}

/// A latency in µs for people: `850 us`, `1.25 ms`, `2.50 s`.
#[must_use]
pub fn format_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} us")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// A count with thousands separators: `1,234,567`.
#[must_use]
pub fn format_count(count: u64) -> String {
    let digits = count.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A rate for people: `950/s`, `12.3k/s`, `1.23M/s`.
#[must_use]
pub fn format_rate(per_s: f64) -> String {
    format!("{}/s", format_si(per_s))
}

/// A large number for people: `950`, `12.3k`, `1.23M`.
#[must_use]
pub fn format_si(value: f64) -> String {
    if value < 1e3 {
        format!("{value:.0}")
    } else if value < 1e6 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{:.2}M", value / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_us(850), "850 us");
        assert_eq!(format_us(1_250), "1.25 ms");
        assert_eq!(format_us(2_500_000), "2.50 s");
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(1_000), "1,000");
        assert_eq!(format_count(1_234_567), "1,234,567");
        assert_eq!(format_rate(950.0), "950/s");
        assert_eq!(format_rate(12_345.0), "12.3k/s");
        assert_eq!(format_rate(1_234_567.0), "1.23M/s");
    }

    #[test]
    fn percentiles_come_from_every_recorded_value() {
        let mut recorder = Recorder::default();
        // 980 values of 100 us, 19 of 10 ms, 1 of 1 s: p50 100 us, p99 and p99.9 10 ms, max 1 s.
        recorder.latency(Duration::ZERO, 100, 980);
        recorder.latency(Duration::from_millis(1500), 10_000, 19);
        recorder.latency(Duration::from_millis(1500), 1_000_000, 1);
        let summary = LatencySummary::of(&recorder.total).unwrap();
        assert_eq!(summary.count, 1000);
        assert_eq!(summary.p50_us, 100);
        assert!((9_990..=10_010).contains(&summary.p99_us), "{summary:?}");
        assert_eq!(summary.p999_us, summary.p99_us);
        assert!((999_000..=1_001_000).contains(&summary.max_us), "{summary:?}");
        assert!(LatencySummary::of(&new_latencies()).is_none());
    }

    #[test]
    fn warmup_latencies_stay_out_of_the_total_but_in_the_series() {
        let mut recorder = Recorder::after_warmup(Duration::from_secs(2));
        recorder.latency(Duration::from_millis(1999), 50_000, 10);
        recorder.latency(Duration::from_secs(2), 100, 5);
        let summary = LatencySummary::of(&recorder.total).unwrap();
        assert_eq!((summary.count, summary.max_us), (5, 100));
        let series = recorder.series(&[], Duration::from_secs(3));
        assert!(series[1].p99_us.is_some_and(|p99| p99 >= 49_000), "{series:?}");
    }

    #[test]
    fn series_has_one_point_per_second_and_merges() {
        let mut a = Recorder::default();
        a.count(Duration::from_millis(100), 10, 1000);
        a.latency(Duration::from_millis(100), 200, 10);
        let mut b = Recorder::default();
        b.count(Duration::from_millis(2100), 5, 500);
        a.merge(&b);
        assert_eq!((a.records, a.bytes), (15, 1500));
        let series = a.series(&[None, Some(4096)], Duration::from_millis(2500));
        assert_eq!(series.len(), 3);
        assert_eq!(series[0].records_per_s, 10.0);
        assert_eq!(series[2].duration_s, 0.5);
        assert_eq!(series[2].records_per_s, 10.0, "the last, half second: 5 records");
        assert_eq!(series[0].records, 10);
        assert_eq!(series[0].p50_us, Some(200));
        assert_eq!(series[1].records, 0);
        assert_eq!(series[1].p50_us, None);
        assert_eq!(series[1].rss_bytes, Some(4096));
        assert_eq!(series[2].bytes, 500);
        assert!((series[2].mb_per_s - 0.001).abs() < 1e-12);
    }
}
