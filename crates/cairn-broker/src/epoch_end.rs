//! [`epoch_end`]: where a leader epoch ends in a log, from its leader-epoch history — the answer
//! of Kafka's OffsetForLeaderEpoch (KIP-101, KIP-279, KIP-320), pure.
//!
//! The rules are Kafka's (`LeaderEpochFileCache.endOffsetFor`), so that a client's truncation
//! and divergence checks work against cairn as they do against Kafka:
//! - the requested epoch is `-1` (undefined): no answer;
//! - it is the latest epoch: that epoch and the log end offset (not the high watermark: a
//!   consumer checks its position against it, a follower truncates to it);
//! - a later epoch is known: the largest epoch at or below the requested one and the start
//!   offset of the first later epoch, which is where the found epoch ends; if none is at or
//!   below (the requested epoch is older than every epoch still in the history), the requested
//!   epoch itself and the start of the oldest epoch kept;
//! - otherwise (newer than every epoch known): no answer.
//!
//! A leader's current epoch counts as started at the log end even before its first entry is
//! appended (Kafka records it in the cache when the replica becomes leader). Epochs are seen as
//! Kafka's cache holds them once the log start moved: those wholly before the log start are
//! gone, and the one holding the log start starts there (cairn's history file keeps them all).

use cairn_storage::EpochStart;
use cairn_types::{LeaderEpoch, Offset};

/// Kafka's `UNDEFINED_EPOCH`.
const UNDEFINED_EPOCH: LeaderEpoch = LeaderEpoch(-1);

/// Where an epoch ends: an OffsetForLeaderEpoch answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEnd {
    /// The largest epoch at or below the requested one (the requested one itself when it is
    /// older than every epoch kept).
    pub epoch: LeaderEpoch,
    /// The offset after that epoch's last entry: the next epoch's start, or the log end.
    pub end_offset: Offset,
}

/// Where `requested` ends in a log whose epoch history is `history` (oldest first) and which
/// holds the offsets `log_start..log_end`; `current` is the leader's own epoch, counted as
/// starting at `log_end` if the history does not have it yet. `None` is Kafka's undefined
/// answer (`UNDEFINED_EPOCH`, `UNDEFINED_EPOCH_OFFSET`). See the module docs for the rules.
#[must_use]
pub fn epoch_end(
    history: &[EpochStart],
    current: Option<LeaderEpoch>,
    (log_start, log_end): (Offset, Offset),
    requested: LeaderEpoch,
) -> Option<EpochEnd> {
    // Epochs wholly before the log start are gone (the next one starts at or before it).
    let gone = history.partition_point(|start| start.start_offset <= log_start).saturating_sub(1);
    let kept = history[gone..].iter().map(|start| (start.epoch, start.start_offset.max(log_start)));
    let newest = history.last().map(|start| start.epoch);
    let pending = current.filter(|current| newest.is_none_or(|newest| *current > newest));
    let starts: Vec<(LeaderEpoch, Offset)> =
        kept.chain(pending.map(|current| (current, log_end))).collect();
    if requested == UNDEFINED_EPOCH {
        return None;
    }
    if starts.last().is_some_and(|(latest, _)| *latest == requested) {
        return Some(EpochEnd { epoch: requested, end_offset: log_end });
    }
    let later = starts.partition_point(|(epoch, _)| *epoch <= requested);
    let (_, end_offset) = *starts.get(later)?;
    let epoch = later.checked_sub(1).map_or(requested, |floor| starts[floor].0);
    Some(EpochEnd { epoch, end_offset })
}

#[cfg(test)]
mod tests {
    use cairn_types::RaftIndex;
    use proptest::prelude::*;

    use super::*;

    fn history(starts: &[(i32, u64)]) -> Vec<EpochStart> {
        starts
            .iter()
            .map(|&(epoch, offset)| EpochStart {
                epoch: LeaderEpoch(epoch),
                start_offset: Offset(offset),
                start_index: RaftIndex(offset),
            })
            .collect()
    }

    fn answer(epoch: i32, end: u64) -> Option<EpochEnd> {
        Some(EpochEnd { epoch: LeaderEpoch(epoch), end_offset: Offset(end) })
    }

    #[test]
    fn kafka_rules_on_a_gapped_history() {
        // Epochs 2 at 0, 4 at 10, 7 at 25; log end 40.
        let history = history(&[(2, 0), (4, 10), (7, 25)]);
        let end = |requested| {
            epoch_end(&history, Some(LeaderEpoch(7)), (Offset(0), Offset(40)), requested)
        };
        assert_eq!(end(LeaderEpoch(7)), answer(7, 40), "the current epoch ends at the log end");
        assert_eq!(end(LeaderEpoch(4)), answer(4, 25));
        assert_eq!(end(LeaderEpoch(5)), answer(4, 25), "an epoch without entries: the one before");
        assert_eq!(end(LeaderEpoch(2)), answer(2, 10));
        assert_eq!(end(LeaderEpoch(1)), answer(1, 0), "older than every epoch: the first start");
        assert_eq!(end(LeaderEpoch(8)), None, "newer than every epoch");
        assert_eq!(end(LeaderEpoch(-1)), None, "undefined");
    }

    #[test]
    fn a_leader_epoch_not_yet_in_the_history_starts_at_the_log_end() {
        let history = history(&[(2, 0), (4, 10)]);
        let end = |requested| {
            epoch_end(&history, Some(LeaderEpoch(6)), (Offset(0), Offset(30)), requested)
        };
        assert_eq!(end(LeaderEpoch(6)), answer(6, 30));
        assert_eq!(end(LeaderEpoch(4)), answer(4, 30));
        assert_eq!(end(LeaderEpoch(5)), answer(4, 30));
        // A follower (no epoch of its own): its latest epoch is the newest in the history.
        let bounds = (Offset(0), Offset(30));
        assert_eq!(epoch_end(&history, None, bounds, LeaderEpoch(4)), answer(4, 30));
        assert_eq!(epoch_end(&history, None, bounds, LeaderEpoch(5)), None);
        let empty = (Offset(0), Offset(0));
        assert_eq!(epoch_end(&[], None, empty, LeaderEpoch(0)), None, "no history at all");
    }

    #[test]
    fn epochs_before_the_log_start_are_gone() {
        // Epochs 2 at 0, 4 at 10, 7 at 25; the log starts at 15, inside epoch 4.
        let history = history(&[(2, 0), (4, 10), (7, 25)]);
        let end = |requested| epoch_end(&history, None, (Offset(15), Offset(40)), requested);
        assert_eq!(end(LeaderEpoch(2)), answer(2, 15), "older than every epoch kept");
        assert_eq!(end(LeaderEpoch(3)), answer(3, 15));
        assert_eq!(end(LeaderEpoch(4)), answer(4, 25));
        assert_eq!(end(LeaderEpoch(7)), answer(7, 40));
    }

    /// A log as the model: the epoch of every offset (non-decreasing), from `first`.
    fn log() -> impl Strategy<Value = (u64, Vec<i32>)> {
        (0u64..50, prop::collection::vec((0i32..4, 1usize..6), 1..8)).prop_map(|(first, runs)| {
            let mut epoch = 0;
            let mut epochs = Vec::new();
            for (step, length) in runs {
                epoch += step + 1;
                epochs.extend(std::iter::repeat_n(epoch, length));
            }
            (first, epochs)
        })
    }

    proptest! {
        /// Against the log itself: the answer for a requested epoch is the newest epoch at or
        /// below it that wrote an offset, ending after its last offset (the log end for the
        /// newest); older than all: the first offset; newer than all: none.
        /// The history is written with the whole log; the model is what is left of the log
        /// after `deleted` offsets went from its start.
        #[test]
        fn answers_match_the_log(
            (first, whole) in log(),
            deleted in any::<prop::sample::Index>(),
            requested in -1i32..40,
        ) {
            let mut starts = Vec::new();
            for (i, &epoch) in whole.iter().enumerate() {
                if starts.last().is_none_or(|&(last, _)| last != epoch) {
                    starts.push((epoch, first + i as u64));
                }
            }
            let log_end = first + whole.len() as u64;
            let deleted = deleted.index(whole.len());
            let (first, epochs) = (first + deleted as u64, &whole[deleted..]);
            let bounds = (Offset(first), Offset(log_end));
            let got = epoch_end(&history(&starts), None, bounds, LeaderEpoch(requested));
            let newest = *epochs.last().expect("a non-empty log");
            let wrote: Vec<u64> = (0..epochs.len())
                .filter(|&i| epochs[i] <= requested)
                .map(|i| first + i as u64)
                .collect();
            let expected = if requested == -1 || requested > newest {
                None
            } else if let Some(&last) = wrote.last() {
                let index = usize::try_from(last - first).expect("an offset of the log");
                answer(epochs[index], last + 1)
            } else {
                answer(requested, first)
            };
            prop_assert_eq!(got, expected);
        }
    }
}
