//! [`PartitionStateMachine`]: openraft's state machine of a partition, whose state is its log.
//!
//! A partition's records are their own state: applying an entry only moves the applied log id
//! (and, for a membership entry, the membership, written to `raft-snapshot` before the entry
//! counts as applied). So after a restart it reports the committed id saved in `raft-vote` as
//! applied, with the membership recorded for it, and openraft re-applies nothing (RFC 0003
//! §11 b); the log store keeps that committed id below any membership entry not yet recorded.
//!
//! A snapshot is small (RFC 0003 §3): it is built at a purge point `P` the partition chooses
//! ([`GroupLog::snapshot_at`]; the applied id if none), and holds `P`, the membership as of
//! `P` and the log start offset that goes with it ([`PartitionSnapshot`]). Installing one keeps
//! the local log if it holds `P`, else starts the log again after `P`.

use std::io;

use bytes::Bytes;
use cairn_storage::{CompactionRound, Disk, ProducerStates};
use cairn_types::{Offset, RaftIndex};
use futures_util::StreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, RaftSnapshotBuilder};

use crate::entry::log_id;
use crate::group::{GroupLog, StoreError};
use crate::membership::Members;
use crate::record::{MembershipAt, RaftRecord, SnapshotPoint};
use crate::{LogId, TypeConfig};

/// The data of a partition's snapshot beside openraft's meta (last log id, membership): where
/// the log starts after it, and the idempotent producers as of there (RFC 0006 §4), so that a
/// replica that installs it recognises their retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSnapshot {
    /// The offset of the entry after the snapshot's last log id.
    pub log_start_offset: Offset,
    /// `ProducerStates::encode` of the producers before `log_start_offset`; empty when not
    /// known (a snapshot read from the record before its log).
    pub producers: Bytes,
}

/// A partition's Raft state machine (module docs).
pub struct PartitionStateMachine<D: Disk> {
    group: GroupLog<D>,
    /// The last log id applied.
    applied: Option<LogId>,
    /// The memberships known at or below `applied`, oldest first: the snapshot's, the one
    /// recorded, and those applied since the open (a snapshot below `applied` needs the
    /// membership as of its own point).
    memberships: Vec<MembershipAt>,
}

/// Builds a snapshot of a [`PartitionStateMachine`] as it was when the builder was made.
pub struct SnapshotBuilder<D: Disk> {
    group: GroupLog<D>,
    applied: Option<LogId>,
    memberships: Vec<MembershipAt>,
}

impl<D: Disk> PartitionStateMachine<D> {
    /// The state machine of `group`, applied up to its committed id (module docs).
    ///
    /// # Errors
    /// [`StoreError`] if the committed id is not in the log.
    pub fn new(group: GroupLog<D>) -> Result<PartitionStateMachine<D>, StoreError> {
        let committed = group.held_committed()?;
        let state = group.state();
        let record = &state.record;
        let mut memberships = Vec::new();
        let snapshot = record.snapshot.as_ref();
        memberships.extend(snapshot.and_then(|point| point.membership.clone()));
        memberships.extend(record.applied_membership.clone());
        let applied = [
            snapshot.map(|point| point.last_log_id),
            record.applied_membership.as_ref().map(|m| m.log_id),
            committed,
        ]
        .into_iter()
        .flatten()
        .max_by_key(|id| id.index);
        drop(state);
        Ok(PartitionStateMachine { group, applied, memberships })
    }

    /// Records an applied membership entry durably, then counts it as applied.
    async fn apply_membership(&mut self, at: MembershipAt) -> Result<(), StoreError> {
        let index = at.log_id.index;
        let record = {
            let mut record = self.group.state().record.clone();
            record.applied_membership = Some(at.clone());
            record
        };
        let written = record.clone();
        self.group.blocking(move |group| group.write_record(&written)).await?;
        let mut state = self.group.state();
        state.record = record;
        state.unapplied.retain(|&pending| pending > index);
        drop(state);
        self.memberships.push(at);
        // The saved committed id may have waited for this entry.
        self.group.save_committed()
    }

    /// Queues an applied compaction round durably (RFC 0007): the partition's cleaner carries
    /// it out; then counts the entry as applied.
    async fn apply_compaction(&mut self, round: CompactionRound) -> Result<(), StoreError> {
        self.group
            .blocking(move |group| Ok(group.with_log_mut(|log| log.queue_round(round))?))
            .await?;
        self.group.state().unapplied.remove(&round.index.0);
        self.group.save_committed()
    }
}

/// openraft's stored membership of `at`.
pub(crate) fn stored(at: Option<&MembershipAt>) -> StoredMembershipOf<TypeConfig> {
    match at {
        Some(at) => {
            StoredMembershipOf::<TypeConfig>::new(Some(at.log_id), at.members.to_membership())
        }
        None => StoredMembershipOf::<TypeConfig>::default(),
    }
}

/// The membership of openraft's stored membership, if it has one.
pub(crate) fn membership_at(
    stored: &StoredMembershipOf<TypeConfig>,
) -> Result<Option<MembershipAt>, StoreError> {
    let Some(log_id) = *stored.log_id() else { return Ok(None) };
    let members = Members::from_membership(stored.membership())
        .map_err(|error| StoreError::Invalid(format!("snapshot membership: {error}")))?;
    Ok(Some(MembershipAt { log_id, members }))
}

impl<D: Disk> RaftStateMachine<TypeConfig> for PartitionStateMachine<D> {
    type SnapshotData = PartitionSnapshot;
    type SnapshotBuilder = SnapshotBuilder<D>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembershipOf<TypeConfig>), io::Error> {
        Ok((self.applied, stored(self.memberships.last())))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: futures_util::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + Send,
    {
        let mut end = None;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = log_id(entry.term(), entry.index());
            if let EntryPayload::Membership(membership) = entry.payload() {
                let members = Members::from_membership(membership)
                    .map_err(|error| StoreError::Invalid(format!("membership: {error}")))?;
                self.apply_membership(MembershipAt { log_id, members }).await?;
            } else if let Some(round) = entry.compaction() {
                self.apply_compaction(round).await?;
            }
            self.applied = Some(log_id);
            // Entries come from the log (with their batch, or their end from the record of
            // recent appends); one made elsewhere (openraft's storage suite) reports no end.
            end = entry.end_offset();
            if let Some(responder) = responder {
                responder.send(());
            }
        }
        if let (Some(applied), Some(end), Some(sink)) = (self.applied, end, self.group.sink()) {
            sink.applied(RaftIndex(applied.index), end);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder<D> {
        SnapshotBuilder {
            group: self.group.clone(),
            applied: self.applied,
            memberships: self.memberships.clone(),
        }
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<SnapshotBuilder<D>> {
        Some(self.get_snapshot_builder().await)
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: PartitionSnapshot,
    ) -> Result<(), io::Error> {
        let Some(last) = meta.last_log_id else {
            return Err(StoreError::Invalid("a snapshot without a last log id".into()).into());
        };
        let membership = membership_at(&meta.last_membership)?;
        let point = SnapshotPoint {
            last_log_id: last,
            membership: membership.clone(),
            log_start_offset: snapshot.log_start_offset,
        };
        let producers = snapshot.producers;
        self.group.blocking(move |group| install(group, point, &producers)).await?;
        self.applied = Some(last);
        self.memberships = membership.into_iter().collect();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, PartitionSnapshot>>, io::Error> {
        let state = self.group.state();
        Ok(state.record.snapshot.as_ref().map(|point| snapshot_of(point, &state.log)))
    }
}

/// openraft's snapshot of a stored snapshot point, with the producers of `log` before it.
fn snapshot_of<D: Disk>(
    point: &SnapshotPoint,
    log: &cairn_storage::Log<D>,
) -> SnapshotOf<TypeConfig, PartitionSnapshot> {
    let meta = SnapshotMetaOf::<TypeConfig> {
        last_log_id: Some(point.last_log_id),
        last_membership: stored(point.membership.as_ref()),
    };
    SnapshotOf::<TypeConfig, PartitionSnapshot> {
        meta,
        snapshot: PartitionSnapshot {
            log_start_offset: point.log_start_offset,
            producers: producers_before(log, point.log_start_offset),
        },
    }
}

/// The encoded producers of `log` before `offset`; none when they cannot be read (then the
/// installing replica knows the producers of the entries after the snapshot only, and
/// accepts the others' next batches at any sequence).
fn producers_before<D: Disk>(log: &cairn_storage::Log<D>, offset: Offset) -> Bytes {
    if offset < log.start_offset() || offset > log.next_offset() {
        return Bytes::new();
    }
    // At a purge point (a segment's start) this reads that segment's producer snapshot only.
    match log.producers_before(offset) {
        Ok(states) => Bytes::from(states.encode()),
        Err(error) => {
            tracing::warn!(%error, "the producers of a snapshot could not be read");
            Bytes::new()
        }
    }
}

/// Installs `point`: `raft-snapshot` first, then the log reset if it does not hold the
/// snapshot's last log id (an open completes a reset a crash interrupted), with `producers`
/// (encoded; empty or undecodable: none known) as its producers.
pub(crate) fn install<D: Disk>(
    group: &GroupLog<D>,
    point: SnapshotPoint,
    producers: &[u8],
) -> Result<(), StoreError> {
    let last = point.last_log_id;
    let record = RaftRecord { snapshot: Some(point.clone()), applied_membership: None };
    group.write_record(&record)?;
    let mut state = group.state();
    let holds = match state.log.entry_at(RaftIndex(last.index))? {
        Some(header) => crate::epoch::term_of(header.epoch)? == last.leader_id.term,
        None => false,
    };
    if !holds {
        state.log.reset(point.log_start_offset, RaftIndex(last.index + 1))?;
        state.recent.clear();
        match ProducerStates::decode(producers) {
            Ok(states) => state.log.install_producers(states)?,
            Err(_) if producers.is_empty() => {}
            Err(error) => tracing::warn!(%error, "a snapshot's producers do not decode"),
        }
    }
    state.record = record;
    if state.purged.is_none_or(|purged| purged.index < last.index) {
        state.purged = Some(last);
    }
    state.unapplied.retain(|&index| index > last.index);
    Ok(())
}

impl<D: Disk> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<D> {
    type SnapshotData = PartitionSnapshot;

    async fn build_snapshot(
        &mut self,
    ) -> Result<SnapshotOf<TypeConfig, PartitionSnapshot>, io::Error> {
        let Some(applied) = self.applied else {
            // openraft asks for one at start when entries are purged and no snapshot exists; a
            // state machine that applied nothing has nothing to keep.
            let log_start_offset = self.group.with_log(cairn_storage::Log::start_offset);
            return Ok(SnapshotOf::<TypeConfig, PartitionSnapshot> {
                meta: SnapshotMetaOf::<TypeConfig>::default(),
                snapshot: PartitionSnapshot { log_start_offset, producers: Bytes::new() },
            });
        };
        let point = self.point(applied)?;
        let record = {
            let mut record = self.group.state().record.clone();
            record.snapshot = Some(point.clone());
            record
        };
        let written = record.clone();
        self.group.blocking(move |group| group.write_record(&written)).await?;
        let mut state = self.group.state();
        state.record = record;
        Ok(snapshot_of(&point, &state.log))
    }
}

impl<D: Disk> SnapshotBuilder<D> {
    /// The snapshot point: the partition's purge point if it chose one at or below `applied`
    /// whose membership is known, else `applied`.
    fn point(&self, applied: LogId) -> Result<SnapshotPoint, StoreError> {
        let state = self.group.state();
        let wanted = state.snapshot_at.filter(|&index| index <= applied.index);
        let last = match wanted {
            Some(index)
                if index >= state.log.start_index().0 && index < state.log.next_index().0 =>
            {
                state.log_id_at(index)?
            }
            _ => applied,
        };
        let membership = self.memberships.iter().rev().find(|m| m.log_id.index <= last.index);
        let (last, membership) = match membership {
            Some(membership) => (last, Some(membership.clone())),
            // The membership as of `last` is not known here: build at the applied id.
            None if !self.memberships.is_empty() => (applied, self.memberships.last().cloned()),
            None => (last, None),
        };
        let log_start_offset = if last.index + 1 >= state.log.next_index().0 {
            state.log.next_offset()
        } else {
            state.log.offset_of(RaftIndex((last.index + 1).max(state.log.start_index().0)))?
        };
        Ok(SnapshotPoint { last_log_id: last, membership, log_start_offset })
    }
}
