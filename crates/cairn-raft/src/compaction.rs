//! Carrying out log compaction (RFC 0007) on a partition's log: what a replica does with the
//! rounds it applied ([`carry_out_rounds`]), and what a leader does to choose the next one
//! ([`plan_round`]). The partition (cairn-broker) and the simulation call both, with no lock
//! held across a call: they are blocking work.
//!
//! Carrying a round out reads its map's range, then rewrites the sealed segments below its
//! point one by one with no lock held, each swapped in under the log's lock; the log is locked
//! only to read a megabyte at a time, to list the segments and to swap one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_meta::CompactionConfig;
use cairn_protocol::compaction::{self, Cleaned, KeyMap};
use cairn_storage::{CompactionRound, Disk, Log, rewrite_segment};
use cairn_types::batch::{BatchHeader, Batches};
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{Offset, RaftIndex};

use crate::group::GroupLog;

/// Bytes a map's read takes from the log at once.
const MAP_READ_BYTES: u32 = 1 << 20;

/// The cleaner's IO cap (RFC 0007 "Carrying out a round"): bytes it read and wrote are
/// charged, and once ahead of `bytes_per_sec` since it started it sleeps the difference (it
/// runs on a blocking thread, holding no lock). Unlimited without a rate (the simulation).
/// It is also how a round in progress stops at shutdown: once its stop flag is set, a charge
/// fails, and the round, left queued, is carried out again after the restart.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: Option<u64>,
    started: std::time::Instant,
    charged: u64,
    stop: Option<Arc<AtomicBool>>,
}

/// The longest a throttled cleaner sleeps before it looks at its stop flag again.
const STOP_CHECK: std::time::Duration = std::time::Duration::from_millis(50);

impl Throttle {
    /// A throttle at `bytes_per_sec`, if any, starting now.
    #[must_use]
    pub fn new(bytes_per_sec: Option<u64>) -> Throttle {
        Throttle { bytes_per_sec, started: std::time::Instant::now(), charged: 0, stop: None }
    }

    /// This throttle, failing its charges once `stop` is set.
    #[must_use]
    pub fn stopping_on(mut self, stop: Arc<AtomicBool>) -> Throttle {
        self.stop = Some(stop);
        self
    }

    /// Charges `bytes`; sleeps while the cleaner is ahead of its rate.
    ///
    /// # Errors
    /// [`cairn_storage::Error::Rewrite`] once the stop flag is set.
    pub fn charge(&mut self, bytes: usize) -> cairn_storage::Result<()> {
        self.charged = self.charged.saturating_add(bytes as u64);
        loop {
            if self.stop.as_ref().is_some_and(|stop| stop.load(Ordering::Acquire)) {
                return Err(cairn_storage::Error::Rewrite("the cleaner is stopping".into()));
            }
            let Some(rate) = self.bytes_per_sec.filter(|&rate| rate > 0) else { return Ok(()) };
            let due = std::time::Duration::from_secs_f64(self.charged as f64 / rate as f64);
            match due.checked_sub(self.started.elapsed()) {
                Some(ahead) if !ahead.is_zero() => std::thread::sleep(ahead.min(STOP_CHECK)),
                _ => return Ok(()),
            }
        }
    }

    /// Bytes charged so far: what the cleaner read and wrote.
    #[must_use]
    pub fn charged(&self) -> u64 {
        self.charged
    }
}

/// What carrying out rounds did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cleaning {
    /// Rounds carried out.
    pub rounds: usize,
    /// Segments rewritten.
    pub segments: usize,
    /// Batches rewritten.
    pub batches: usize,
    /// Bytes of the segments rewritten, before and after.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
}

impl Cleaning {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: Cleaning) {
        self.rounds += other.rounds;
        self.segments += other.segments;
        self.batches += other.batches;
        self.bytes_before += other.bytes_before;
        self.bytes_after += other.bytes_after;
    }
}

/// Carries out every round `log` applied and has not carried out, oldest first (RFC 0007
/// "Carrying out a round"). A round that fails stays queued, to be tried again.
///
/// # Errors
/// The storage error a round met: [`cairn_storage::Error::Corruption`] for damage read.
pub fn carry_out_rounds<D: Disk + Clone>(
    log: &GroupLog<D>,
    throttle: &mut Throttle,
) -> cairn_storage::Result<Cleaning> {
    let mut cleaning = Cleaning::default();
    while let Some(round) = log.with_log(Log::next_round) {
        cleaning.add(carry_out(log, round, throttle)?);
    }
    Ok(cleaning)
}

fn carry_out<D: Disk + Clone>(
    log: &GroupLog<D>,
    round: CompactionRound,
    throttle: &mut Throttle,
) -> cairn_storage::Result<Cleaning> {
    log.with_log_mut(|log| log.seal_below(round.to))?;
    let keys = usize::try_from(round.keys).unwrap_or(usize::MAX);
    let (map, end) = build_map(log, round.from, round.to, keys, throttle)?;
    if end < round.to {
        let reason = format!("round {} holds more than its {keys} keys", round.index);
        return Err(cairn_storage::Error::Rewrite(reason));
    }
    let cleaning = compaction::Round {
        previous_point: round.from,
        now_ms: round.time_ms,
        delete_retention_ms: round.delete_retention_ms,
    };
    let mut scratch = Vec::new();
    let mut done = Cleaning { rounds: 1, ..Cleaning::default() };
    for sealed in log.with_log(|log| log.sealed_below(round.to)) {
        let rewritten = rewrite_segment(&sealed, round.to, |batch| {
            throttle.charge(batch.as_bytes().len()).map_err(|error| error.to_string())?;
            match compaction::clean_batch(batch, &map, &cleaning, &mut scratch) {
                Ok(Cleaned::Unchanged) => Ok(None),
                Ok(Cleaned::Rewritten(bytes)) => Ok(Some(bytes)),
                Err(error) => Err(error.to_string()),
            }
        })?;
        let Some(rewritten) = rewritten else { continue };
        let (changed, size) = (rewritten.changed, rewritten.size());
        throttle.charge(size as usize)?;
        if log.with_log_mut(|log| log.swap_rewritten(rewritten))? {
            done.segments += 1;
            done.batches += changed;
            done.bytes_before += u64::from(sealed.size());
            done.bytes_after += u64::from(size);
        }
    }
    log.with_log_mut(|log| log.finish_round(round.index))?;
    Ok(done)
}

/// The map of `[from, to)` (from the log start if retention took `from`), up to the last
/// batch whose keys fit `keys_max`: the map and where it ends.
fn build_map<D: Disk>(
    log: &GroupLog<D>,
    from: Offset,
    to: Offset,
    keys_max: usize,
    throttle: &mut Throttle,
) -> cairn_storage::Result<(KeyMap, Offset)> {
    let mut map = KeyMap::new(keys_max);
    let (mut bytes, mut scratch) = (Vec::new(), Vec::new());
    let mut at = from.max(log.with_log(Log::start_offset));
    while at < to {
        bytes.clear();
        let next = log.with_log(|log| log.read(at, MAP_READ_BYTES, to, &mut bytes))?;
        throttle.charge(bytes.len())?;
        for batch in Batches::new(&bytes, BATCH_BYTES_MAX) {
            let rewrite = |error: String| cairn_storage::Error::Rewrite(error);
            let batch = batch.map_err(|error| rewrite(error.to_string()))?;
            if !map.add_batch(&batch, &mut scratch).map_err(|error| rewrite(error.to_string()))? {
                return Ok((map, batch.header().base_offset));
            }
        }
        if next == at {
            break;
        }
        at = next;
    }
    Ok((map, at.min(to)))
}

/// The next round of a leader's `log` at `now_ms`, if one is due by `config` ([`due`]),
/// ending where a map of `keys_max` keys fills; `committed` is the high watermark. Its index
/// is its entry's, once proposed.
///
/// # Errors
/// A storage error reading the log.
pub fn plan_round<D: Disk>(
    log: &GroupLog<D>,
    config: CompactionConfig,
    committed: Offset,
    now_ms: i64,
    keys_max: usize,
    throttle: &mut Throttle,
) -> cairn_storage::Result<Option<CompactionRound>> {
    let Some((from, end)) = log.with_log(|log| due(log, config, committed, now_ms))? else {
        return Ok(None);
    };
    let (map, to) = build_map(log, from, end, keys_max, throttle)?;
    if to <= from {
        tracing::warn!(%from, keys_max, "a batch holds more keys than a compaction map may");
        return Ok(None);
    }
    Ok(Some(CompactionRound {
        index: RaftIndex(0),
        from,
        to,
        time_ms: now_ms,
        delete_retention_ms: config.delete_retention_ms,
        keys: u32::try_from(map.len()).unwrap_or(u32::MAX),
    }))
}

/// The dirty range `[from, end)` of `log` if a round is due (RFC 0007 "The compaction
/// point"): the cleanable log ends at the active segment, the high watermark `committed` and
/// the first batch younger than `min.compaction.lag.ms`; a round is due when the dirty part is
/// `min.cleanable.dirty.ratio` of it, or its first batch is older than
/// `max.compaction.lag.ms`. None while the log has rounds to carry out.
fn due<D: Disk>(
    log: &Log<D>,
    config: CompactionConfig,
    committed: Offset,
    now_ms: i64,
) -> cairn_storage::Result<Option<(Offset, Offset)>> {
    if log.next_round().is_some() {
        return Ok(None);
    }
    let start = log.start_offset();
    let from = log.compaction_point().max(start);
    let active = log.segment_bases().last().unwrap_or(start);
    let young_from = now_ms.saturating_sub(config.min_compaction_lag_ms).saturating_add(1);
    let young = log.offset_for_timestamp(young_from)?;
    let end = young.into_iter().chain([active, committed]).min().unwrap_or(start);
    if end <= from {
        return Ok(None);
    }
    let dirty = u128::from(log.bytes_between(from, end)?);
    let total = u128::from(log.bytes_between(start, end)?);
    let ratio = u128::from(config.min_cleanable_dirty_ratio_millionths);
    if dirty * 1_000_000 >= ratio * total {
        return Ok(Some((from, end)));
    }
    let mut first = Vec::new();
    log.read(from, 1, end, &mut first)?;
    let first = BatchHeader::parse(&first, BATCH_BYTES_MAX).ok();
    let overdue_at = now_ms.saturating_sub(config.max_compaction_lag_ms);
    Ok(first.filter(|first| first.max_timestamp <= overdue_at).map(|_| (from, end)))
}
