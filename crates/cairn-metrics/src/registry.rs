//! [`Registry`]: metrics by name, with help text, rendered as Prometheus text.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::Error;
use crate::expose;
use crate::family::{CounterFamily, Family, GaugeFamily, HistogramFamily};
use crate::metric::{Counter, Gauge, Histogram, bounds_rule};

/// The named metrics of one node.
///
/// Registration (at startup) takes a write lock; [`Registry::render`] (a scrape) takes a read
/// lock; updating a metric takes neither, because callers hold the returned `Arc`.
#[derive(Debug, Default)]
pub struct Registry {
    /// Metrics by name; the `BTreeMap` gives the sorted, deterministic exposition order.
    metrics: RwLock<BTreeMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    help: String,
    metric: Metric,
}

#[derive(Debug)]
enum Metric {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    Histogram(Arc<Histogram>),
    CounterFamily(Arc<CounterFamily>),
    GaugeFamily(Arc<GaugeFamily>),
    HistogramFamily(Arc<HistogramFamily>),
}

impl Metric {
    fn is_histogram(&self) -> bool {
        matches!(self, Metric::Histogram(_) | Metric::HistogramFamily(_))
    }
}

/// Suffixes of the sample names a histogram exposes besides its own name.
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

impl Registry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers a counter named `name` (by convention ending in `_total`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMetricName`] or [`Error::NameTaken`].
    pub fn counter(&self, name: &str, help: &str) -> Result<Arc<Counter>, Error> {
        let counter = Arc::new(Counter::new());
        self.insert(name, help, Metric::Counter(Arc::clone(&counter)))?;
        Ok(counter)
    }

    /// Registers a gauge named `name`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMetricName`] or [`Error::NameTaken`].
    pub fn gauge(&self, name: &str, help: &str) -> Result<Arc<Gauge>, Error> {
        let gauge = Arc::new(Gauge::new());
        self.insert(name, help, Metric::Gauge(Arc::clone(&gauge)))?;
        Ok(gauge)
    }

    /// Registers a histogram named `name` over `bounds` (see [`Histogram::new`]); pass
    /// [`crate::LATENCY_BUCKETS_SECONDS`] for request latencies. It exposes `name_bucket`,
    /// `name_sum` and `name_count`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMetricName`], [`Error::InvalidBuckets`] or [`Error::NameTaken`].
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        bounds: &[f64],
    ) -> Result<Arc<Histogram>, Error> {
        let histogram = Arc::new(Histogram::new(bounds)?);
        self.insert(name, help, Metric::Histogram(Arc::clone(&histogram)))?;
        Ok(histogram)
    }

    /// Registers a family of counters labelled by `label_names`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMetricName`], [`Error::NameTaken`], or a label-name error
    /// ([`Error::InvalidLabelName`], [`Error::DuplicateLabelName`], [`Error::LabelCount`]).
    pub fn counter_family(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<Arc<CounterFamily>, Error> {
        let family = Arc::new(CounterFamily { inner: Family::new(label_names, (), false)? });
        self.insert(name, help, Metric::CounterFamily(Arc::clone(&family)))?;
        Ok(family)
    }

    /// Registers a family of gauges labelled by `label_names`.
    ///
    /// # Errors
    ///
    /// As [`Registry::counter_family`].
    pub fn gauge_family(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<Arc<GaugeFamily>, Error> {
        let family = Arc::new(GaugeFamily { inner: Family::new(label_names, (), false)? });
        self.insert(name, help, Metric::GaugeFamily(Arc::clone(&family)))?;
        Ok(family)
    }

    /// Registers a family of histograms over `bounds`, labelled by `label_names` (which may not
    /// include `le`, the bucket label).
    ///
    /// # Errors
    ///
    /// As [`Registry::counter_family`], plus [`Error::InvalidBuckets`].
    pub fn histogram_family(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        bounds: &[f64],
    ) -> Result<Arc<HistogramFamily>, Error> {
        if let Some(reason) = bounds_rule(bounds) {
            return Err(Error::InvalidBuckets { reason });
        }
        let family =
            Arc::new(HistogramFamily { inner: Family::new(label_names, bounds.into(), true)? });
        self.insert(name, help, Metric::HistogramFamily(Arc::clone(&family)))?;
        Ok(family)
    }

    fn insert(&self, name: &str, help: &str, metric: Metric) -> Result<(), Error> {
        if !is_metric_name(name) {
            return Err(Error::InvalidMetricName { name: name.to_owned() });
        }
        let mut metrics = self.metrics.write().unwrap_or_else(PoisonError::into_inner);
        let new_names = exposed_names(name, metric.is_histogram());
        for (existing, entry) in metrics.iter() {
            let old_names = exposed_names(existing, entry.metric.is_histogram());
            if let Some(clash) = new_names.iter().find(|new| old_names.contains(new)) {
                return Err(Error::NameTaken { name: clash.clone() });
            }
        }
        metrics.insert(name.to_owned(), Entry { help: help.to_owned(), metric });
        Ok(())
    }

    /// Every metric in the Prometheus text exposition format 0.0.4: sorted by name, a family's
    /// series sorted by label values, each metric introduced by its `# HELP` and `# TYPE` lines.
    ///
    /// The values are read one atomic at a time while writers keep writing, so two metrics may
    /// be from slightly different instants; within one histogram the buckets and `_count` always
    /// agree.
    #[must_use]
    pub fn render(&self) -> String {
        let metrics = self.metrics.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(256 * metrics.len());
        for (name, entry) in metrics.iter() {
            match &entry.metric {
                Metric::Counter(counter) => {
                    expose::header(&mut out, name, &entry.help, "counter");
                    expose::sample(&mut out, name, &[], &[], None, &counter.get().to_string());
                }
                Metric::Gauge(gauge) => {
                    expose::header(&mut out, name, &entry.help, "gauge");
                    expose::sample(&mut out, name, &[], &[], None, &gauge.get().to_string());
                }
                Metric::Histogram(histogram) => {
                    expose::header(&mut out, name, &entry.help, "histogram");
                    render_histogram(&mut out, name, &[], &[], histogram);
                }
                Metric::CounterFamily(family) => {
                    expose::header(&mut out, name, &entry.help, "counter");
                    let label_names = family.inner.label_names();
                    for (labels, counter) in family.inner.sorted_series() {
                        let value = counter.get().to_string();
                        expose::sample(&mut out, name, label_names, &labels, None, &value);
                    }
                }
                Metric::GaugeFamily(family) => {
                    expose::header(&mut out, name, &entry.help, "gauge");
                    let label_names = family.inner.label_names();
                    for (labels, gauge) in family.inner.sorted_series() {
                        let value = gauge.get().to_string();
                        expose::sample(&mut out, name, label_names, &labels, None, &value);
                    }
                }
                Metric::HistogramFamily(family) => {
                    expose::header(&mut out, name, &entry.help, "histogram");
                    let label_names = family.inner.label_names();
                    for (labels, histogram) in family.inner.sorted_series() {
                        render_histogram(&mut out, name, label_names, &labels, &histogram);
                    }
                }
            }
        }
        out
    }
}

fn render_histogram(
    out: &mut String,
    name: &str,
    label_names: &[String],
    label_values: &[String],
    histogram: &Histogram,
) {
    let snapshot = histogram.snapshot();
    let bucket = format!("{name}_bucket");
    for (bound, count) in snapshot.bounds.iter().zip(&snapshot.cumulative) {
        let le = expose::float(*bound);
        let count = count.to_string();
        expose::sample(out, &bucket, label_names, label_values, Some(("le", &le)), &count);
    }
    let sum = expose::float(snapshot.sum);
    expose::sample(out, &format!("{name}_sum"), label_names, label_values, None, &sum);
    let count = snapshot.count.to_string();
    expose::sample(out, &format!("{name}_count"), label_names, label_values, None, &count);
}

/// The sample names a metric called `name` puts in the exposition (and so claims).
fn exposed_names(name: &str, histogram: bool) -> Vec<String> {
    let mut names = vec![name.to_owned()];
    if histogram {
        names.extend(HISTOGRAM_SUFFIXES.iter().map(|suffix| format!("{name}{suffix}")));
    }
    names
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(crate) fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with the reserved `__`.
pub(crate) fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names() {
        for good in ["a", "_a", ":a", "cairn_requests_total", "a:b_c9"] {
            assert!(is_metric_name(good), "{good}");
        }
        for bad in ["", "9a", "a-b", "a b", "é"] {
            assert!(!is_metric_name(bad), "{bad}");
        }
    }

    #[test]
    fn label_names() {
        for good in ["a", "_a", "api_key", "a9"] {
            assert!(is_label_name(good), "{good}");
        }
        for bad in ["", "9a", "a:b", "__name__", "a-b"] {
            assert!(!is_label_name(bad), "{bad}");
        }
    }
}
