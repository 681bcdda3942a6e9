//! A partition's part of log compaction (RFC 0007): the leader decides rounds
//! ([`Partition::propose_round`]), every replica carries out the rounds it applied
//! ([`Partition::carry_out_rounds`]), in order, on a blocking thread (cairn-raft's
//! `compaction`). The broker's cleaner task calls both (`Broker::run_cleaner`), one partition
//! at a time.

use cairn_raft::compaction::{self, Cleaning, Throttle};
use cairn_storage::{CompactionRound, Log};
use cairn_types::Offset;

use super::Partition;
use crate::error::PartitionError;
use crate::parallel::blocking;
use crate::replica::Role;
use crate::volume::Volume;

/// How long a leader waits for its round's entry to commit, then to be applied.
const ROUND_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl<D: Volume> Partition<D> {
    /// Carries out every round this replica applied and has not carried out, oldest first.
    ///
    /// # Errors
    /// [`PartitionError::Storage`] if a round fails (it stays queued: the next call tries it
    /// again); corruption found takes the partition offline.
    pub async fn carry_out_rounds(
        &self,
        throttle: &mut Throttle,
    ) -> Result<Cleaning, PartitionError> {
        let Some(group) = self.group.as_ref().filter(|_| self.offline().is_none()) else {
            return Ok(Cleaning::default());
        };
        if group.log().with_log(Log::next_round).is_none() {
            return Ok(Cleaning::default()); // Nothing queued: no trip to a blocking thread.
        }
        let log = group.log().clone();
        let done =
            throttled(throttle, move |throttle| compaction::carry_out_rounds(&log, throttle));
        self.storage_result(done.await)
    }

    /// On the leader of a compacted topic whose rounds are all carried out here: proposes the
    /// next round if one is due by the topic's configs at `now_ms`, with a map of at most
    /// `keys_max` keys, and waits for it to commit. Returns the round proposed.
    ///
    /// # Errors
    /// What the proposal meets ([`PartitionError::Refused`] after losing leadership,
    /// [`PartitionError::Timeout`]); [`PartitionError::Storage`] reading the log.
    pub async fn propose_round(
        &self,
        now_ms: i64,
        keys_max: usize,
        throttle: &mut Throttle,
    ) -> Result<Option<CompactionRound>, PartitionError> {
        let (Some(config), Some(group)) = (self.settings().compaction, self.group.as_ref()) else {
            return Ok(None);
        };
        let committed = {
            let replica = super::lock(&self.tracker.replica);
            let leader = matches!(replica.role(), Role::Leader);
            // Known once the term committed its start: every round before it is applied here.
            replica.latest_offset().ok().flatten().filter(|_| leader)
        };
        let Some(committed) = committed else { return Ok(None) };
        let log = group.log().clone();
        let planned = throttled(throttle, move |throttle| {
            compaction::plan_round(&log, config, committed, now_ms, keys_max, throttle)
        });
        let planned = planned.await;
        let Some(round) = self.storage_result(planned)? else { return Ok(None) };
        let batch = cairn_raft::codec::compaction_batch(&round);
        let pending = group
            .propose(batch, cairn_raft::Proposal::TICKET_NONE, true)
            .await
            .map_err(|error| self.propose_error(error))?;
        let Some(pending) = pending else { return Ok(None) };
        let committed = tokio::time::timeout(ROUND_WAIT, pending.committed()).await;
        let index = match committed {
            Err(_) => return Err(PartitionError::Timeout),
            Ok(Err(error)) => return Err(self.propose_error(error)),
            Ok(Ok(log_id)) => cairn_types::RaftIndex(log_id.index),
        };
        // Applied (so queued here) once the high watermark passes the entry.
        let offset = self.storage_result(group.log().with_log(|log| log.offset_of(index)))?;
        self.wait_committed(offset.plus(1), ROUND_WAIT).await?;
        Ok(Some(CompactionRound { index, ..round }))
    }

    /// Where the next compaction round's map starts: the point of the newest round applied.
    #[must_use]
    pub fn compaction_point(&self) -> Offset {
        self.group.as_ref().map_or(Offset(0), |group| group.log().with_log(Log::compaction_point))
    }

    /// `result` as a partition result; corruption takes the partition offline.
    fn storage_result<T>(&self, result: cairn_storage::Result<T>) -> Result<T, PartitionError> {
        result.map_err(|error| {
            self.offline_if_corrupt(&error);
            PartitionError::Storage(error)
        })
    }
}

/// Runs `work` with `throttle` on a blocking thread, and hands the throttle back.
async fn throttled<T: Send + 'static>(
    throttle: &mut Throttle,
    work: impl FnOnce(&mut Throttle) -> T + Send + 'static,
) -> T {
    let mut owned = std::mem::replace(throttle, Throttle::new(None));
    let (result, owned) = blocking(move || (work(&mut owned), owned)).await;
    *throttle = owned;
    result
}
