//! [`Health`]: what a node cannot serve right now — offline partitions and a full disk — for
//! readiness and metrics.
//!
//! A partition goes offline when its log cannot be opened at start (corruption, an IO error, too
//! many open files), when its log fails an fsync or write (poisoned), or when a read finds
//! committed data that fails verification. It stays offline until the node restarts; produce and
//! fetch on it answer `KAFKA_STORAGE_ERROR` while every other partition is served. The broker's
//! partitions report here; the admin server's `/health/ready` and the `cairn_partitions_offline`
//! gauge read it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cairn_metrics::Gauge;

/// One partition the node cannot serve, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflinePartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// The cause, as logged (it may name server-side paths: for operators, not clients).
    pub reason: String,
}

/// The node's offline partitions and disk state, shared by the broker and the admin server.
#[derive(Debug)]
pub struct Health {
    /// Offline partitions by (topic, index), with their reason.
    offline: Mutex<BTreeMap<(String, u32), String>>,
    /// Set to the number of offline partitions on every change (`cairn_partitions_offline`).
    gauge: Arc<Gauge>,
    /// Whether the last append that reached the disk found it full (set by an append refused
    /// with ENOSPC, cleared by the next append that succeeds).
    disk_full: AtomicBool,
}

impl Default for Health {
    /// Health with a gauge that no registry exposes (tests).
    fn default() -> Health {
        Health::new(Arc::new(Gauge::new()))
    }
}

impl Health {
    /// Everything healthy; `gauge` will count the offline partitions.
    #[must_use]
    pub fn new(gauge: Arc<Gauge>) -> Health {
        gauge.set(0);
        Health { offline: Mutex::new(BTreeMap::new()), gauge, disk_full: AtomicBool::new(false) }
    }

    /// Records that a partition is offline (the first reason is kept).
    pub(crate) fn set_offline(&self, topic: &str, partition: u32, reason: &str) {
        let mut offline = self.offline.lock().unwrap_or_else(PoisonError::into_inner);
        offline.entry((topic.to_owned(), partition)).or_insert_with(|| reason.to_owned());
        self.gauge.set(i64::try_from(offline.len()).unwrap_or(i64::MAX));
    }

    /// Forgets a partition that no longer exists (its topic was deleted).
    pub(crate) fn forget(&self, topic: &str, partition: u32) {
        let mut offline = self.offline.lock().unwrap_or_else(PoisonError::into_inner);
        offline.remove(&(topic.to_owned(), partition));
        self.gauge.set(i64::try_from(offline.len()).unwrap_or(i64::MAX));
    }

    /// Every offline partition, sorted by topic and index.
    #[must_use]
    pub fn offline(&self) -> Vec<OfflinePartition> {
        let offline = self.offline.lock().unwrap_or_else(PoisonError::into_inner);
        offline
            .iter()
            .map(|((topic, partition), reason)| OfflinePartition {
                topic: topic.clone(),
                partition: *partition,
                reason: reason.clone(),
            })
            .collect()
    }

    /// How many partitions are offline.
    #[must_use]
    pub fn offline_count(&self) -> usize {
        self.offline.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Records whether the disk was full for the last append that reached it.
    pub(crate) fn set_disk_full(&self, full: bool) {
        // Read first: appends call this on every success, and a store would bounce the line.
        if self.disk_full.load(Ordering::Relaxed) != full {
            self.disk_full.store(full, Ordering::Relaxed);
        }
    }

    /// Whether appends are being refused because the disk is full.
    #[must_use]
    pub fn disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_counts_offline_partitions() {
        let gauge = Arc::new(Gauge::new());
        let health = Health::new(Arc::clone(&gauge));
        health.set_offline("t", 1, "corrupt");
        health.set_offline("t", 1, "a second reason is not kept");
        health.set_offline("a", 0, "io");
        assert_eq!(gauge.get(), 2);
        let offline = health.offline();
        assert_eq!(offline[0].topic, "a");
        assert_eq!(offline[1].reason, "corrupt");
        health.forget("t", 1);
        assert_eq!(gauge.get(), 1);
        assert_eq!(health.offline_count(), 1);
    }

    #[test]
    fn disk_full_follows_the_last_append() {
        let health = Health::default();
        assert!(!health.disk_full());
        health.set_disk_full(true);
        assert!(health.disk_full());
        health.set_disk_full(false);
        assert!(!health.disk_full());
    }
}
