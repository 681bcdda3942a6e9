//! cairn's metrics: counters, gauges and histograms cheap enough for hot paths, grouped into a
//! [`Registry`] that renders the Prometheus text exposition format (version 0.0.4).
//!
//! # Shape
//!
//! - [`Counter`], [`Gauge`] and [`Histogram`] are single series. Updating one is one relaxed
//!   atomic operation (a histogram: one bucket increment plus a compare-and-swap on the sum).
//! - [`CounterFamily`], [`GaugeFamily`] and [`HistogramFamily`] are labelled metrics: one series
//!   per tuple of label values. [`CounterFamily::with`] looks a series up (or creates it) under a
//!   lock and returns an `Arc`; callers keep that `Arc` (per partition, per API key) so the hot
//!   path never touches the lock.
//! - A family holds at most [`SERIES_PER_FAMILY_MAX`] series. Label tuples beyond that share one
//!   overflow series whose every label value is [`OVERFLOW_LABEL_VALUE`], so a bug that labels by
//!   something unbounded (a client id, an offset) costs a bounded amount of memory and shows up on
//!   the dashboard instead of taking the node down.
//! - [`Registry`] owns metrics by name with their help text and renders them sorted by name (and a
//!   family's series sorted by label values), so the output is deterministic.
//!
//! # Architecture invariant
//!
//! cairn-metrics knows nothing about the network, tokio or HTTP: it is std only. Serving
//! `/metrics` is cairn-node's job.
//!
//! # Example
//!
//! ```
//! use cairn_metrics::Registry;
//!
//! let registry = Registry::new();
//! let requests = registry
//!     .counter_family("cairn_requests_total", "Requests handled.", &["api"])
//!     .expect("a valid, unique name");
//! let produce = requests.with(&["produce"]); // keep this Arc next to the handler
//! produce.inc();
//! assert!(registry.render().contains("cairn_requests_total{api=\"produce\"} 1\n"));
//! ```

mod error;
mod expose;
mod family;
mod metric;
mod registry;

pub use error::Error;
pub use family::{
    CounterFamily, GaugeFamily, HistogramFamily, LABELS_PER_FAMILY_MAX, OVERFLOW_LABEL_VALUE,
    SERIES_PER_FAMILY_MAX,
};
pub use metric::{
    BUCKETS_PER_HISTOGRAM_MAX, Counter, Gauge, Histogram, HistogramSnapshot,
    LATENCY_BUCKETS_SECONDS,
};
pub use registry::Registry;
