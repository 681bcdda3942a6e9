//! The three series types: [`Counter`], [`Gauge`] and [`Histogram`], each updated with relaxed
//! atomics and no lock.
//!
//! Relaxed ordering is enough: a metric is a statistic, read by a scrape that needs each value
//! to be one that was really stored, not a consistent cut across metrics.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::Error;

/// Most bucket bounds one histogram may declare (the `+Inf` bucket comes on top). Each bucket is
/// one atomic per series and one exposition line per scrape.
pub const BUCKETS_PER_HISTOGRAM_MAX: usize = 64;

/// Bucket upper bounds of [`Histogram::latency`], in seconds: Prometheus's 1-2.5-5 ladder from
/// 100 µs (a page-cache append) to 10 s (a long-poll fetch or a stuck fsync).
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

const _: () = assert!(bounds_rule(LATENCY_BUCKETS_SECONDS).is_none());

/// A monotonically increasing count (requests handled, bytes appended).
///
/// Wraps around at `u64::MAX`, which at a billion increments a second takes 584 years.
#[derive(Debug, Default)]
pub struct Counter {
    value: AtomicU64,
}

impl Counter {
    /// A counter at zero.
    #[must_use]
    pub const fn new() -> Counter {
        Counter { value: AtomicU64::new(0) }
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (open connections, bytes buffered).
#[derive(Debug, Default)]
pub struct Gauge {
    value: AtomicI64,
}

impl Gauge {
    /// A gauge at zero.
    #[must_use]
    pub const fn new() -> Gauge {
        Gauge { value: AtomicI64::new(0) }
    }

    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.value.store(value, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.add(-1);
    }

    /// Adds `delta` (which may be negative).
    pub fn add(&self, delta: i64) {
        self.value.fetch_add(delta, Ordering::Relaxed);
    }

    /// Subtracts `delta`.
    pub fn sub(&self, delta: i64) {
        self.value.fetch_sub(delta, Ordering::Relaxed);
    }

    /// The current value.
    #[must_use]
    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A distribution over fixed buckets, in seconds or any other unit the metric name states.
///
/// Buckets are stored as plain (non-cumulative) counts, one atomic each, plus an overflow bucket
/// for values above every bound; the scrape accumulates them. The count is not stored separately:
/// it is the sum of the buckets, so a scrape always sees `+Inf` equal to `_count`.
#[derive(Debug)]
pub struct Histogram {
    /// Strictly increasing, finite upper bounds (inclusive, as Prometheus's `le`).
    bounds: Box<[f64]>,
    /// `buckets[i]` counts observations in `(bounds[i - 1], bounds[i]]`; the extra last slot
    /// counts those above every bound.
    buckets: Box<[AtomicU64]>,
    /// Sum of all observations, as `f64` bits.
    sum_bits: AtomicU64,
}

impl Histogram {
    /// A histogram over `bounds`, the buckets' inclusive upper bounds; the `+Inf` bucket is
    /// implicit.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidBuckets`] if `bounds` is empty, longer than [`BUCKETS_PER_HISTOGRAM_MAX`],
    /// holds a non-finite value, or is not strictly increasing.
    pub fn new(bounds: &[f64]) -> Result<Histogram, Error> {
        if let Some(reason) = bounds_rule(bounds) {
            return Err(Error::InvalidBuckets { reason });
        }
        Ok(Histogram::from_valid_bounds(bounds))
    }

    /// A histogram of durations in seconds over [`LATENCY_BUCKETS_SECONDS`] (100 µs to 10 s).
    #[must_use]
    pub fn latency() -> Histogram {
        Histogram::from_valid_bounds(LATENCY_BUCKETS_SECONDS)
    }

    /// Builds from bounds that passed [`bounds_rule`].
    pub(crate) fn from_valid_bounds(bounds: &[f64]) -> Histogram {
        debug_assert!(bounds_rule(bounds).is_none());
        Histogram {
            bounds: bounds.into(),
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0.0_f64.to_bits()),
        }
    }

    /// Records one observation. `NaN` is ignored: it belongs in no bucket and would turn the sum
    /// into `NaN` for good.
    pub fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        // The first bound with `value <= bound`; past the end is the `+Inf` bucket.
        let index = self.bounds.partition_point(|bound| *bound < value);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        // The closure always returns `Some`, so the update cannot fail.
        let _ = self.sum_bits.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + value).to_bits())
        });
    }

    /// Records a duration in seconds (for histograms whose unit is seconds, such as
    /// [`Histogram::latency`]).
    pub fn observe_duration(&self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    /// The declared bucket bounds (without `+Inf`).
    #[must_use]
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// A copy of the current state, with cumulative bucket counts.
    #[must_use]
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        let mut total = 0_u64;
        for bucket in &self.buckets {
            total = total.wrapping_add(bucket.load(Ordering::Relaxed));
            cumulative.push(total);
        }
        let mut bounds = Vec::with_capacity(self.buckets.len());
        bounds.extend_from_slice(&self.bounds);
        bounds.push(f64::INFINITY);
        HistogramSnapshot {
            bounds,
            cumulative,
            sum: f64::from_bits(self.sum_bits.load(Ordering::Relaxed)),
            count: total,
        }
    }
}

/// What a [`Histogram`] held when [`Histogram::snapshot`] read it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Bucket upper bounds, ending with `f64::INFINITY`.
    pub bounds: Vec<f64>,
    /// `cumulative[i]` is the number of observations `<= bounds[i]`; the last equals `count`.
    pub cumulative: Vec<u64>,
    /// Sum of all observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// The rule `bounds` breaks, if any (a `const fn` so the built-in ladders are checked at compile
/// time).
pub(crate) const fn bounds_rule(bounds: &[f64]) -> Option<&'static str> {
    if bounds.is_empty() {
        return Some("no bounds");
    }
    if bounds.len() > BUCKETS_PER_HISTOGRAM_MAX {
        return Some("more than BUCKETS_PER_HISTOGRAM_MAX bounds");
    }
    let mut index = 0;
    while index < bounds.len() {
        if !bounds[index].is_finite() {
            return Some("a bound is not finite (the +Inf bucket is implicit)");
        }
        if index > 0 && bounds[index - 1] >= bounds[index] {
            return Some("bounds are not strictly increasing");
        }
        index += 1;
    }
    None
}
