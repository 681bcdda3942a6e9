//! [`CoreStateMachine`]: openraft's state machine of the consistent core, a [`CoreState`] in
//! memory (RFC 0003 §5 "here the state is not the log").
//!
//! - Apply: a normal entry's batch holds one record whose value is an encoded [`CoreCommand`];
//!   it is decoded and applied with [`cairn_meta::apply`] (a refusal is a no-op with an error
//!   answer, alike on every replica). Every entry moves the state's applied position. At the end
//!   of each apply call the state is published (an `Arc` swapped in a watch), and only then are
//!   the waiting writers answered, each with its command's answer left in [`Shared`].
//!   A command that does not decode is a newer version or damage: the group stops rather than
//!   skip it and diverge.
//! - Snapshots: the encoded state and membership in `core-state` (`file.rs`), then the
//!   `raft-snapshot` record at the same point, so the log store purges the segments behind it.
//!   One is wanted every `snapshot_entries` entries or `snapshot_log_bytes` bytes of commands;
//!   the group's trigger task builds it.
//! - Restart: the state is read from `core-state` and reported as applied; openraft re-applies
//!   the committed entries after it from the log.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use cairn_meta::{CoreCommand, CoreReply, CoreState, LogPosition, MetaError};
use cairn_storage::Disk;
use cairn_types::batch::RecordBatch;
use cairn_types::limits::CORE_REPLIES_MAX;
use cairn_types::{Offset, RaftIndex};
use futures_util::StreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use tokio::sync::{Notify, watch};

use super::file::{self, StoredCore};
use crate::entry::log_id;
use crate::group::{GroupLog, StoreError};
use crate::membership::Members;
use crate::record::{MembershipAt, SnapshotPoint};
use crate::state_machine::{install, membership_at, stored};
use crate::{LogId, RaftEntry, TypeConfig};

/// The core's snapshot as openraft moves it: the encoded [`CoreState`]
/// ([`CoreState::encode_snapshot`]), sent whole to a replica that needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreSnapshot {
    /// The encoded state; its applied position is the snapshot's last log id.
    pub state: Bytes,
}

/// What the state machine shares with [`super::CoreMetadata`].
pub(crate) struct Shared {
    /// The state as of the last apply: what reads see.
    pub(crate) state: watch::Sender<Arc<CoreState>>,
    /// Answers of applied commands that had a waiter here, by index; at most
    /// [`CORE_REPLIES_MAX`], the oldest dropped.
    replies: Mutex<BTreeMap<u64, Result<CoreReply, MetaError>>>,
    /// Woken when a snapshot is due.
    pub(crate) snapshot_due: Notify,
}

impl Shared {
    pub(crate) fn new(state: Arc<CoreState>) -> Arc<Shared> {
        Arc::new(Shared {
            state: watch::Sender::new(state),
            replies: Mutex::new(BTreeMap::new()),
            snapshot_due: Notify::new(),
        })
    }

    fn put_reply(&self, index: u64, reply: Result<CoreReply, MetaError>) {
        let mut replies = self.replies.lock().unwrap_or_else(PoisonError::into_inner);
        replies.insert(index, reply);
        while replies.len() > CORE_REPLIES_MAX {
            replies.pop_first();
        }
    }

    /// Takes the answer of the command at `index`, once applied.
    pub(crate) fn take_reply(&self, index: u64) -> Option<Result<CoreReply, MetaError>> {
        self.replies.lock().unwrap_or_else(PoisonError::into_inner).remove(&index)
    }
}

/// When a snapshot is due.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SnapshotPolicy {
    /// Entries applied since the last snapshot.
    pub(crate) entries: u64,
    /// Bytes of command batches applied since the last snapshot.
    pub(crate) log_bytes: u64,
}

/// The consistent core's state machine (module docs).
pub struct CoreStateMachine<D: Disk> {
    /// The core's log, for the `raft-snapshot` record beside `core-state`.
    group: GroupLog<D>,
    disk: D,
    /// The core's directory (`meta/raft`).
    dir: PathBuf,
    /// The state, applied up to its `applied()` position.
    state: CoreState,
    /// The newest membership applied (or the snapshot's).
    membership: Option<MembershipAt>,
    shared: Arc<Shared>,
    policy: SnapshotPolicy,
    /// Applied since the last snapshot was begun.
    since: SnapshotPolicy,
}

impl<D: Disk + Clone> CoreStateMachine<D> {
    /// The state machine of the core in `dir`, as of its `core-state` file (empty without one).
    ///
    /// # Errors
    /// [`StoreError`] if the file is damaged, or older than the log's snapshot record (which is
    /// written after it: the state the log was purged behind would be lost).
    pub(crate) fn open(
        group: GroupLog<D>,
        disk: D,
        dir: PathBuf,
        shared: Arc<Shared>,
        policy: SnapshotPolicy,
    ) -> Result<CoreStateMachine<D>, StoreError> {
        let stored = match file::read(&disk, &dir)? {
            Some(bytes) => file::decode(&bytes)?,
            None => StoredCore { membership: None, state: CoreState::default() },
        };
        let recorded = group.state().record.snapshot.as_ref().map(|p| p.last_log_id.index);
        let applied = stored.last_log_id().map(|id| id.index);
        if recorded.is_some_and(|recorded| applied.is_none_or(|applied| applied < recorded)) {
            return Err(StoreError::Invalid(format!(
                "core-state is applied to {applied:?}, below the log's snapshot at {recorded:?}"
            )));
        }
        shared.state.send_replace(Arc::new(stored.state.clone()));
        let since = SnapshotPolicy { entries: 0, log_bytes: 0 };
        Ok(CoreStateMachine {
            group,
            disk,
            dir,
            state: stored.state,
            membership: stored.membership,
            shared,
            policy,
            since,
        })
    }
}

impl<D: Disk> CoreStateMachine<D> {
    /// Applies one entry; returns the command's answer for a normal entry.
    fn apply_entry(
        &mut self,
        entry: &RaftEntry,
    ) -> Result<Option<Result<CoreReply, MetaError>>, StoreError> {
        let position = LogPosition { term: entry.term(), index: entry.index() };
        if self.state.applied().is_some_and(|applied| applied >= position) {
            return Err(StoreError::Invalid(format!(
                "core entry {position:?} applied again after {:?}",
                self.state.applied()
            )));
        }
        let reply = match entry.payload() {
            EntryPayload::Normal(proposal) => {
                let command = decode_command(&proposal.batch, entry.index())?;
                self.since.log_bytes += proposal.batch.len() as u64;
                Some(cairn_meta::apply(&mut self.state, &command))
            }
            EntryPayload::Membership(membership) => {
                let members = Members::from_membership(membership)
                    .map_err(|error| StoreError::Invalid(format!("membership: {error}")))?;
                self.membership =
                    Some(MembershipAt { log_id: log_id(position.term, position.index), members });
                // The log store saves the committed id below unapplied membership entries.
                self.group.state().unapplied.retain(|&index| index > position.index);
                self.group.save_committed()?;
                None
            }
            EntryPayload::Blank => None,
        };
        self.state.set_applied(position);
        self.since.entries += 1;
        Ok(reply)
    }

    fn snapshot_is_due(&self) -> bool {
        self.since.entries >= self.policy.entries || self.since.log_bytes >= self.policy.log_bytes
    }
}

/// The command a core entry's batch holds: one record, its value the encoded command.
fn decode_command(batch: &[u8], index: u64) -> Result<CoreCommand, StoreError> {
    one_record(batch, index, |value| CoreCommand::decode(value).map_err(|e| e.to_string()))
}

/// What the one record of a command group's entry (the core's, the coordination group's)
/// holds, decoded by `decode`.
pub(crate) fn one_record<T>(
    batch: &[u8],
    index: u64,
    decode: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, StoreError> {
    let bad = |reason: String| StoreError::Invalid(format!("entry {index}: {reason}"));
    let batch = RecordBatch::validate(batch).map_err(|error| bad(error.to_string()))?;
    let mut records = batch.records();
    let record = match (records.next(), records.next()) {
        (Some(Ok(record)), None) => record,
        (Some(Err(error)), _) => return Err(bad(error.to_string())),
        _ => return Err(bad(format!("{} records, not one", batch.record_count()))),
    };
    let value = record.value.ok_or_else(|| bad("a record without a value".into()))?;
    decode(value).map_err(|error| bad(format!("command: {error}")))
}

impl<D: Disk + Clone> RaftStateMachine<TypeConfig> for CoreStateMachine<D> {
    type SnapshotData = CoreSnapshot;
    type SnapshotBuilder = CoreSnapshotBuilder<D>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembershipOf<TypeConfig>), io::Error> {
        let applied = self.state.applied().map(|at| log_id(at.term, at.index));
        Ok((applied, stored(self.membership.as_ref())))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: futures_util::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + Send,
    {
        let mut waiting = Vec::new();
        let mut failed = None;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            match self.apply_entry(&entry) {
                Ok(reply) => waiting.push((entry.index(), reply, responder)),
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        // What was applied is published before anyone hears of it (read-your-writes).
        self.shared.state.send_replace(Arc::new(self.state.clone()));
        for (index, reply, responder) in waiting {
            let Some(responder) = responder else { continue };
            if let Some(reply) = reply {
                self.shared.put_reply(index, reply);
            }
            responder.send(());
        }
        if let Some(error) = failed {
            tracing::error!(%error, "the core's state machine stops");
            return Err(error.into());
        }
        if self.snapshot_is_due() {
            self.shared.snapshot_due.notify_one();
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> CoreSnapshotBuilder<D> {
        self.since = SnapshotPolicy { entries: 0, log_bytes: 0 };
        CoreSnapshotBuilder {
            group: self.group.clone(),
            disk: self.disk.clone(),
            dir: self.dir.clone(),
            state: Arc::new(self.state.clone()),
            membership: self.membership.clone(),
        }
    }

    async fn try_create_snapshot_builder(
        &mut self,
        _force: bool,
    ) -> Option<CoreSnapshotBuilder<D>> {
        Some(self.get_snapshot_builder().await)
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: CoreSnapshot,
    ) -> Result<(), io::Error> {
        let state = CoreState::decode_snapshot(&snapshot.state)
            .map_err(|error| StoreError::Invalid(format!("core snapshot: {error}")))?;
        let last = meta.last_log_id;
        let applied = state.applied().map(|at| log_id(at.term, at.index));
        let Some(last) = last.filter(|&last| Some(last) == applied) else {
            let reason =
                format!("a core snapshot at {last:?} holds a state applied to {applied:?}");
            return Err(StoreError::Invalid(reason).into());
        };
        let membership = membership_at(&meta.last_membership)?;
        let bytes = file::encode(membership.as_ref(), &snapshot.state);
        let disk = self.disk.clone();
        let dir = self.dir.clone();
        let point = SnapshotPoint {
            last_log_id: last,
            membership: membership.clone(),
            // Every core entry is one record: its offsets follow its indexes.
            log_start_offset: Offset(last.index + 1),
        };
        self.group
            .blocking(move |group| {
                file::write(&disk, &dir, &bytes)?;
                // The core's entries carry no idempotent producers.
                install(group, point, &[])
            })
            .await?;
        self.state = state;
        self.membership = membership;
        self.since = SnapshotPolicy { entries: 0, log_bytes: 0 };
        self.shared.state.send_replace(Arc::new(self.state.clone()));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, CoreSnapshot>>, io::Error> {
        let disk = self.disk.clone();
        let dir = self.dir.clone();
        let bytes = self.group.blocking(move |_| file::read(&disk, &dir)).await?;
        let Some(bytes) = bytes else { return Ok(None) };
        let stored = file::decode(&bytes)?;
        let Some(last) = stored.last_log_id() else { return Ok(None) };
        let state = stored.state.encode_snapshot().map_err(|error| {
            StoreError::Invalid(format!("core-state does not encode again: {error}"))
        })?;
        Ok(Some(snapshot_of(last, stored.membership.as_ref(), Bytes::from(state))))
    }
}

/// openraft's snapshot of the state `state` at `last` with `membership`.
fn snapshot_of(
    last: LogId,
    membership: Option<&MembershipAt>,
    state: Bytes,
) -> SnapshotOf<TypeConfig, CoreSnapshot> {
    let meta = SnapshotMetaOf::<TypeConfig> {
        last_log_id: Some(last),
        last_membership: stored(membership),
    };
    SnapshotOf::<TypeConfig, CoreSnapshot> { meta, snapshot: CoreSnapshot { state } }
}

/// Builds a snapshot of a [`CoreStateMachine`] as it was when the builder was made.
pub struct CoreSnapshotBuilder<D: Disk> {
    group: GroupLog<D>,
    disk: D,
    dir: PathBuf,
    state: Arc<CoreState>,
    membership: Option<MembershipAt>,
}

impl<D: Disk + Clone> RaftSnapshotBuilder<TypeConfig> for CoreSnapshotBuilder<D> {
    type SnapshotData = CoreSnapshot;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, CoreSnapshot>, io::Error> {
        let encoded = self.state.encode_snapshot().map_err(|error| {
            StoreError::Invalid(format!("the core's state does not encode: {error}"))
        })?;
        let encoded = Bytes::from(encoded);
        let Some(last) = self.state.applied().map(|at| log_id(at.term, at.index)) else {
            // openraft asks for one at start when entries are purged and no snapshot exists; a
            // state machine that applied nothing has nothing to keep.
            let meta = SnapshotMetaOf::<TypeConfig>::default();
            return Ok(SnapshotOf::<TypeConfig, CoreSnapshot> {
                meta,
                snapshot: CoreSnapshot { state: encoded },
            });
        };
        let bytes = file::encode(self.membership.as_ref(), &encoded);
        let (disk, dir) = (self.disk.clone(), self.dir.clone());
        let membership = self.membership.clone();
        self.group
            .blocking(move |group| {
                file::write(&disk, &dir, &bytes)?;
                let mut record = group.state().record.clone();
                record.snapshot = Some(SnapshotPoint {
                    last_log_id: last,
                    membership,
                    log_start_offset: start_after(group, last)?,
                });
                group.write_record(&record)?;
                group.state().record = record;
                Ok(())
            })
            .await?;
        tracing::info!(index = last.index, bytes = encoded.len(), "core snapshot built");
        Ok(snapshot_of(last, self.membership.as_ref(), encoded))
    }
}

/// The offset of the entry after `last` in a command group's log (the core's, the
/// coordination group's).
pub(crate) fn start_after<D: Disk>(group: &GroupLog<D>, last: LogId) -> Result<Offset, StoreError> {
    let state = group.state();
    let next = last.index + 1;
    if next >= state.log.next_index().0 {
        return Ok(state.log.next_offset());
    }
    Ok(state.log.offset_of(RaftIndex(next.max(state.log.start_index().0)))?)
}
