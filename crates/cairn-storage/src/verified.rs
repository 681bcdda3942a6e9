//! [`Verified`]: the byte ranges of a segment file known since the log opened to hold valid
//! batches (RFC 0005): appended after validation, walked with full verification by recovery,
//! or verified by a read before it was served. Zero-copy reads ([`crate::Log::locate`]) verify
//! what is not covered yet, once, so a flip in data the recovery checkpoint vouched for is never
//! sent.
//!
//! Ranges always start and end at batch boundaries. The set keeps at most
//! [`VERIFIED_RANGES_MAX`] disjoint ranges: when a new range would pass it, the smallest is
//! forgotten (its bytes are verified again if read again), so memory stays bounded however
//! readers jump around.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// Most disjoint ranges a segment remembers.
pub(crate) const VERIFIED_RANGES_MAX: usize = 64;

/// The verified ranges of one segment file: `start -> end`, disjoint and not adjacent.
#[derive(Debug, Default)]
pub(crate) struct Verified {
    ranges: Mutex<BTreeMap<u32, u32>>,
}

impl Verified {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, u32>> {
        self.ranges.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `[start, end)` is verified.
    pub(crate) fn covers(&self, start: u32, end: u32) -> bool {
        start >= end || self.lock().range(..=start).next_back().is_some_and(|(_, &to)| to >= end)
    }

    /// Records `[start, end)` as verified, merged with the ranges it touches.
    pub(crate) fn insert(&self, start: u32, end: u32) {
        if start >= end {
            return;
        }
        let mut ranges = self.lock();
        let (mut from, mut to) = (start, end);
        // The ranges it touches are the last ones starting at or before its end (disjoint,
        // sorted): merge them in from the top, without allocating (an append inserts).
        while let Some((&key, &range_end)) = ranges.range(..=end).next_back() {
            if range_end < start {
                break;
            }
            ranges.remove(&key);
            from = from.min(key);
            to = to.max(range_end);
        }
        ranges.insert(from, to);
        while ranges.len() > VERIFIED_RANGES_MAX {
            let smallest = ranges.iter().min_by_key(|&(&s, &e)| e - s).map(|(&s, _)| s);
            smallest.map(|key| ranges.remove(&key));
        }
    }

    /// Forgets everything from `at` on (the file was cut there).
    pub(crate) fn truncate(&self, at: u32) {
        let mut ranges = self.lock();
        ranges.retain(|&start, _| start < at);
        if let Some((_, end)) = ranges.iter_mut().next_back() {
            *end = (*end).min(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_cover_and_are_cut() {
        let verified = Verified::default();
        assert!(!verified.covers(0, 10) && verified.covers(5, 5));
        verified.insert(0, 10);
        verified.insert(20, 30);
        assert!(verified.covers(0, 10) && verified.covers(2, 8) && !verified.covers(5, 25));
        verified.insert(10, 20);
        assert!(verified.covers(0, 30), "adjacent ranges merge");
        verified.insert(40, 50);
        verified.insert(35, 45);
        assert!(verified.covers(35, 50) && !verified.covers(30, 35));
        verified.truncate(42);
        assert!(verified.covers(35, 42) && !verified.covers(35, 43));
        verified.truncate(20);
        assert!(verified.covers(0, 20) && !verified.covers(0, 21) && !verified.covers(35, 36));
    }

    #[test]
    fn the_set_stays_bounded_by_forgetting_the_smallest_range() {
        let verified = Verified::default();
        for i in 0..VERIFIED_RANGES_MAX as u32 {
            verified.insert(i * 100, i * 100 + 10);
        }
        verified.insert(10_000, 10_050);
        verified.insert(20_000, 20_001);
        assert_eq!(verified.lock().len(), VERIFIED_RANGES_MAX);
        assert!(verified.covers(10_000, 10_050), "a large range is kept");
        assert!(!verified.covers(20_000, 20_001), "the smallest is forgotten");
    }
}
