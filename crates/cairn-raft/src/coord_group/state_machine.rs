//! [`CoordStateMachine`]: openraft's state machine of the coordination group, cairn-coord's
//! [`Store`] (RFC 0009 §2).
//!
//! - Apply: a normal entry's batch holds one record whose value is an encoded [`Command`]; it
//!   is applied with [`Store::apply`] (a refusal changes nothing and is the same on every
//!   replica). Each revision an entry makes is published as an [`Applied`] to the watchers,
//!   and the applied position moves, before any writer is answered (read-your-writes).
//!   A command that does not decode is a newer version or damage: the group stops rather than
//!   skip it and diverge.
//! - Restart: the store is in memory for now and applies the whole log again; its log is
//!   never purged and no snapshot is built (RFC 0009 §2 moves the store to redb, with its
//!   applied position and snapshots).

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use cairn_coord::{Command, Event, KvError, Reply, Store};
use cairn_storage::Disk;
use cairn_types::limits::CORE_REPLIES_MAX;
use futures_util::StreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use tokio::sync::{broadcast, watch};

use crate::core_group::one_record;
use crate::entry::log_id;
use crate::group::{GroupLog, StoreError};
use crate::membership::Members;
use crate::record::MembershipAt;
use crate::state_machine::stored;
use crate::{LogId, RaftEntry, TypeConfig};

/// One revision's events, in order, as every watcher of this node sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The revision.
    pub revision: i64,
    /// Its events.
    pub events: Vec<Event>,
}

/// The answer of an applied command: its reply or refusal, and the store's revision after it.
pub(crate) type Outcome = (Result<Reply, KvError>, i64);

/// How many applied revisions a watcher may fall behind before it reads them from the store.
const APPLIED_BUFFER: usize = 4096;

/// What the state machine shares with [`super::CoordGroup`].
pub(crate) struct Shared {
    /// The store, written by apply, read by everyone else.
    pub(crate) store: Arc<RwLock<Store>>,
    /// The last applied entry.
    pub(crate) applied: watch::Sender<Option<LogId>>,
    /// Each applied revision, in order.
    pub(crate) revisions: broadcast::Sender<Arc<Applied>>,
    /// Outcomes of applied commands that had a waiter here, by index; at most
    /// [`CORE_REPLIES_MAX`], the oldest dropped.
    outcomes: Mutex<BTreeMap<u64, Outcome>>,
}

impl Shared {
    pub(crate) fn new() -> Arc<Shared> {
        Arc::new(Shared {
            store: Arc::new(RwLock::new(Store::new())),
            applied: watch::Sender::new(None),
            revisions: broadcast::Sender::new(APPLIED_BUFFER),
            outcomes: Mutex::new(BTreeMap::new()),
        })
    }

    fn put_outcome(&self, index: u64, outcome: Outcome) {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        outcomes.insert(index, outcome);
        while outcomes.len() > CORE_REPLIES_MAX {
            outcomes.pop_first();
        }
    }

    /// Takes the outcome of the command at `index`, once applied.
    pub(crate) fn take_outcome(&self, index: u64) -> Option<Outcome> {
        self.outcomes.lock().unwrap_or_else(PoisonError::into_inner).remove(&index)
    }

    /// Reads the store.
    pub(crate) fn read<R>(&self, read: impl FnOnce(&Store) -> R) -> R {
        read(&self.store.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The coordination group's state machine (module docs).
pub struct CoordStateMachine<D: Disk> {
    group: GroupLog<D>,
    applied: Option<LogId>,
    /// The newest membership applied.
    membership: Option<MembershipAt>,
    shared: Arc<Shared>,
}

impl<D: Disk> CoordStateMachine<D> {
    pub(crate) fn new(group: GroupLog<D>, shared: Arc<Shared>) -> CoordStateMachine<D> {
        CoordStateMachine { group, applied: None, membership: None, shared }
    }

    /// Applies one entry; returns the command's outcome for a normal entry, and the revisions
    /// it made.
    fn apply_entry(
        &mut self,
        entry: &RaftEntry,
        published: &mut Vec<Arc<Applied>>,
    ) -> Result<Option<Outcome>, StoreError> {
        let id = log_id(entry.term(), entry.index());
        if self.applied.is_some_and(|applied| applied >= id) {
            return Err(StoreError::Invalid(format!(
                "coordination entry {id} applied again after {:?}",
                self.applied
            )));
        }
        let outcome = match entry.payload() {
            EntryPayload::Normal(proposal) => {
                let decode = |value: &[u8]| Command::decode(value).map_err(|e| e.to_string());
                let command = one_record(&proposal.batch, entry.index(), decode)?;
                Some(self.apply_command(&command, published))
            }
            EntryPayload::Membership(membership) => {
                let members = Members::from_membership(membership)
                    .map_err(|error| StoreError::Invalid(format!("membership: {error}")))?;
                self.membership = Some(MembershipAt { log_id: id, members });
                // The log store saves the committed id below unapplied membership entries.
                self.group.state().unapplied.retain(|&index| index > id.index);
                self.group.save_committed()?;
                None
            }
            EntryPayload::Blank => None,
        };
        self.applied = Some(id);
        Ok(outcome)
    }

    fn apply_command(&self, command: &Command, published: &mut Vec<Arc<Applied>>) -> Outcome {
        let mut store = self.shared.store.write().unwrap_or_else(PoisonError::into_inner);
        let before = store.revision();
        let reply = store.apply(command);
        let after = store.revision();
        if after > before {
            // The revisions this command made are newer than any compaction: they are there.
            let made = store.events_after(before).unwrap_or_default();
            published.extend(
                made.into_iter().map(|(revision, events)| {
                    Arc::new(Applied { revision, events: events.to_vec() })
                }),
            );
        }
        (reply, after)
    }
}

impl<D: Disk + Clone> RaftStateMachine<TypeConfig> for CoordStateMachine<D> {
    type SnapshotData = CoordSnapshot;
    type SnapshotBuilder = NoSnapshots;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembershipOf<TypeConfig>), io::Error> {
        Ok((self.applied, stored(self.membership.as_ref())))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: futures_util::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + Send,
    {
        let mut waiting = Vec::new();
        let mut published = Vec::new();
        let mut failed = None;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            match self.apply_entry(&entry, &mut published) {
                Ok(outcome) => waiting.push((entry.index(), outcome, responder)),
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        // What was applied is published before anyone hears of it (read-your-writes).
        for applied in published {
            // No receiver: nobody watches.
            let _ = self.shared.revisions.send(applied);
        }
        self.shared.applied.send_replace(self.applied);
        for (index, outcome, responder) in waiting {
            let Some(responder) = responder else { continue };
            if let Some(outcome) = outcome {
                self.shared.put_outcome(index, outcome);
            }
            responder.send(());
        }
        if let Some(error) = failed {
            tracing::error!(%error, "the coordination group's state machine stops");
            return Err(error.into());
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> NoSnapshots {
        NoSnapshots
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<NoSnapshots> {
        None
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMetaOf<TypeConfig>,
        _snapshot: CoordSnapshot,
    ) -> Result<(), io::Error> {
        Err(no_snapshots())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, CoordSnapshot>>, io::Error> {
        Ok(None)
    }
}

/// The coordination group's snapshot as it travels: the encoded store (none are built yet:
/// the log is never purged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordSnapshot {
    /// The encoded store.
    pub state: Bytes,
}

/// The coordination group builds no snapshots yet (module docs).
pub struct NoSnapshots;

fn no_snapshots() -> io::Error {
    io::Error::other("the coordination group keeps its whole log and builds no snapshots yet")
}

impl RaftSnapshotBuilder<TypeConfig> for NoSnapshots {
    type SnapshotData = CoordSnapshot;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, CoordSnapshot>, io::Error> {
        Err(no_snapshots())
    }
}
