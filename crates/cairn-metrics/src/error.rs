//! The one error type of cairn-metrics: a metric was declared wrongly.

use std::fmt;

/// Why a metric could not be created or registered.
///
/// Every variant is a programming error in the declaring code (metrics are declared with literal
/// names at startup), never a runtime condition: do not retry; fix the declaration. Nothing on an
/// update path (`inc`, `observe`, `with`) returns an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The metric name does not match `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    InvalidMetricName {
        /// The rejected name.
        name: String,
    },
    /// A label name does not match `[a-zA-Z_][a-zA-Z0-9_]*`, starts with the reserved `__`, or is
    /// `le` on a histogram (the bucket label).
    InvalidLabelName {
        /// The rejected label name.
        name: String,
    },
    /// The same label name appears twice in one family.
    DuplicateLabelName {
        /// The repeated label name.
        name: String,
    },
    /// A family declares more than [`crate::LABELS_PER_FAMILY_MAX`] labels, or none.
    LabelCount {
        /// How many label names were given.
        count: usize,
    },
    /// The name, or one of the series names it exposes (`_bucket`, `_sum`, `_count` for a
    /// histogram), is already exposed by a metric in the registry.
    NameTaken {
        /// The clashing exposed name.
        name: String,
    },
    /// Histogram bucket bounds are empty, too many, not finite or not strictly increasing.
    InvalidBuckets {
        /// Which rule the bounds break.
        reason: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidMetricName { name } => {
                write!(f, "invalid metric name {name:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")
            }
            Error::InvalidLabelName { name } => write!(
                f,
                "invalid label name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]*, not start with \
                 `__`, and not be `le` on a histogram"
            ),
            Error::DuplicateLabelName { name } => write!(f, "label name {name:?} appears twice"),
            Error::LabelCount { count } => write!(
                f,
                "a family needs 1 to {} label names, got {count}",
                crate::LABELS_PER_FAMILY_MAX
            ),
            Error::NameTaken { name } => {
                write!(f, "metric name {name:?} is already exposed by a registered metric")
            }
            Error::InvalidBuckets { reason } => write!(f, "invalid histogram buckets: {reason}"),
        }
    }
}

impl std::error::Error for Error {}
