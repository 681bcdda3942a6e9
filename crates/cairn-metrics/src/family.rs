//! Labelled metrics: a family maps a tuple of label values to one series, with a bound on how
//! many series it may hold.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::metric::{Counter, Gauge, Histogram};
use crate::{Error, registry};

/// Most distinct label-value tuples one family holds. A tuple first seen after the family is full
/// is counted in the overflow series instead (see [`OVERFLOW_LABEL_VALUE`]). Ten thousand series
/// is far more than any honest label (API keys × versions, partitions of a node) needs and still
/// a scrape of bounded size.
pub const SERIES_PER_FAMILY_MAX: usize = 10_000;

/// Most label names one family declares.
pub const LABELS_PER_FAMILY_MAX: usize = 8;

/// Every label value of the overflow series: once a family holds [`SERIES_PER_FAMILY_MAX`]
/// series, observations for new label tuples go to the series whose labels are all `_overflow`
/// (it is created on first use, so it appears in the output only when something overflowed).
/// Tuples that got their own series before the family filled up keep them.
pub const OVERFLOW_LABEL_VALUE: &str = "_overflow";

/// How a family makes a new series.
pub(crate) trait Series: Send + Sync + 'static {
    /// What every series of the family shares (a histogram's bounds).
    type Spec: Send + Sync;
    fn make(spec: &Self::Spec) -> Self;
}

impl Series for Counter {
    type Spec = ();
    fn make((): &()) -> Counter {
        Counter::new()
    }
}

impl Series for Gauge {
    type Spec = ();
    fn make((): &()) -> Gauge {
        Gauge::new()
    }
}

impl Series for Histogram {
    type Spec = Box<[f64]>;
    fn make(bounds: &Box<[f64]>) -> Histogram {
        Histogram::from_valid_bounds(bounds)
    }
}

/// The family machinery shared by the three public family types.
#[derive(Debug)]
pub(crate) struct Family<M: Series> {
    /// Declared label names, validated, in exposition order.
    label_names: Box<[String]>,
    spec: M::Spec,
    /// Series by label values (same length and order as `label_names`). Holds at most
    /// `SERIES_PER_FAMILY_MAX` tuples plus the overflow tuple.
    series: RwLock<HashMap<Box<[String]>, Arc<M>>>,
}

impl<M: Series> Family<M> {
    pub(crate) fn new(label_names: &[&str], spec: M::Spec, histogram: bool) -> Result<Self, Error> {
        if label_names.is_empty() || label_names.len() > LABELS_PER_FAMILY_MAX {
            return Err(Error::LabelCount { count: label_names.len() });
        }
        for (index, name) in label_names.iter().enumerate() {
            if !registry::is_label_name(name) || (histogram && *name == "le") {
                return Err(Error::InvalidLabelName { name: (*name).to_owned() });
            }
            if label_names[..index].contains(name) {
                return Err(Error::DuplicateLabelName { name: (*name).to_owned() });
            }
        }
        Ok(Family {
            label_names: label_names.iter().map(|name| (*name).to_owned()).collect(),
            spec,
            series: RwLock::new(HashMap::new()),
        })
    }

    pub(crate) fn label_names(&self) -> &[String] {
        &self.label_names
    }

    fn with(&self, label_values: &[&str]) -> Arc<M> {
        assert_eq!(
            label_values.len(),
            self.label_names.len(),
            "a family declared with labels {:?} was given values {label_values:?}",
            self.label_names,
        );
        let key: Box<[String]> = label_values.iter().map(|value| (*value).to_owned()).collect();
        // The map is consistent whenever the lock is released (every change is one insert), so a
        // panic elsewhere while holding it leaves nothing to repair: ignore poisoning.
        if let Some(series) = self.series.read().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Arc::clone(series);
        }
        let mut map = self.series.write().unwrap_or_else(PoisonError::into_inner);
        let key = if map.len() >= SERIES_PER_FAMILY_MAX && !map.contains_key(&key) {
            vec![OVERFLOW_LABEL_VALUE.to_owned(); key.len()].into_boxed_slice()
        } else {
            key
        };
        Arc::clone(map.entry(key).or_insert_with(|| Arc::new(M::make(&self.spec))))
    }

    fn len(&self) -> usize {
        self.series.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn retain(&self, mut keep: impl FnMut(&[String]) -> bool) {
        self.series.write().unwrap_or_else(PoisonError::into_inner).retain(|key, _| keep(key));
    }

    /// Every series, sorted by label values, copied out so the caller formats without the lock.
    pub(crate) fn sorted_series(&self) -> Vec<(Box<[String]>, Arc<M>)> {
        let mut all: Vec<_> = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(labels, series)| (labels.clone(), Arc::clone(series)))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

macro_rules! family_type {
    ($(#[$doc:meta])* $name:ident, $series:ty) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            pub(crate) inner: Family<$series>,
        }

        impl $name {
            #[doc = concat!(
                "The [`", stringify!($series), "`] for `label_values` (one value per declared ",
                "label, in declaration order), created at zero on first use.\n\n",
                "Takes a lock and allocates: call it once per label tuple and keep the `Arc` ",
                "where the hot path can reach it. Once the family holds ",
                "[`SERIES_PER_FAMILY_MAX`] series, a new tuple gets the shared overflow series ",
                "(every label [`OVERFLOW_LABEL_VALUE`]).\n\n",
                "# Panics\n\n",
                "If the number of values differs from the number of declared label names ",
                "(a bug in the calling code, caught by any test that reaches the call).",
            )]
            #[must_use]
            pub fn with(&self, label_values: &[&str]) -> Arc<$series> {
                self.inner.with(label_values)
            }

            /// The declared label names, in order.
            #[must_use]
            pub fn label_names(&self) -> &[String] {
                self.inner.label_names()
            }

            /// How many series exist (including the overflow series, once used).
            #[must_use]
            pub fn len(&self) -> usize {
                self.inner.len()
            }

            /// Keeps only the series whose label values `keep` accepts: the others are no
            /// longer exported (a series whose subject went away). An `Arc` of a removed series
            /// still works, exported no more.
            pub fn retain(&self, keep: impl FnMut(&[String]) -> bool) {
                self.inner.retain(keep);
            }

            /// Whether no series exists yet.
            #[must_use]
            pub fn is_empty(&self) -> bool {
                self.inner.len() == 0
            }
        }
    };
}

family_type!(
    /// A [`Counter`] per label tuple (requests by API key, bytes in by topic).
    CounterFamily,
    Counter
);
family_type!(
    /// A [`Gauge`] per label tuple (connections by listener).
    GaugeFamily,
    Gauge
);
family_type!(
    /// A [`Histogram`] per label tuple, all over the same bucket bounds (request latency by API
    /// key).
    HistogramFamily,
    Histogram
);
