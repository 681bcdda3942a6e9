//! [`CoordStateMachine`]: openraft's state machine of the coordination group, cairn-coord's
//! [`Store`] (RFC 0009 §2).
//!
//! - Apply: a normal entry's batch holds one record whose value is an encoded [`Command`]; it
//!   is applied with [`Store::apply`] (a refusal changes nothing and is the same on every
//!   replica). Each revision an entry makes is published as an [`Applied`] to the watchers,
//!   and the applied position moves, before any writer is answered (read-your-writes).
//!   A command that does not decode is a newer version or damage: the group stops rather than
//!   skip it and diverge.
//! - Durability: the store is a redb file (`store.redb`); each entry is applied in one redb
//!   transaction with its position, without an fsync, and every [`PERSIST_ENTRIES`] entries or
//!   [`PERSIST_INTERVAL`] the applied state is made durable (RFC 0009 §2). The Raft log is the
//!   durability of what was acknowledged: a restart reopens the store as of its last persist
//!   and openraft applies the entries after it again. A membership entry is recorded in the
//!   store with its position, so the store's membership is always the one as of its applied
//!   position.
//! - Snapshots: none yet; the log is never purged.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_coord::{Applied, Command, KvError, Reply, Store, StoreReader};
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

/// The answer of an applied command: its reply or refusal, and the store's revision after it.
pub(crate) type Outcome = (Result<Reply, KvError>, i64);

/// How many applied revisions a watcher may fall behind before it reads them from the store.
const APPLIED_BUFFER: usize = 4096;

/// Entries applied between two durable commits of the store, at most (etcd's batch limit).
pub const PERSIST_ENTRIES: u64 = 10_000;

/// How long applied entries wait for a durable commit of the store, at most (etcd's batch
/// interval).
pub const PERSIST_INTERVAL: Duration = Duration::from_millis(100);

/// The store's file in the group's directory.
pub const STORE_FILE: &str = "store.redb";

/// What the state machine shares with [`super::CoordGroup`].
pub(crate) struct Shared {
    /// Reads of the store, beside its writer.
    pub(crate) reader: StoreReader,
    /// The last applied entry.
    pub(crate) applied: watch::Sender<Option<LogId>>,
    /// Each applied revision, in order.
    pub(crate) revisions: broadcast::Sender<Arc<Applied>>,
    /// Outcomes of applied commands that had a waiter here, by index; at most
    /// [`CORE_REPLIES_MAX`], the oldest dropped.
    outcomes: Mutex<BTreeMap<u64, Outcome>>,
}

impl Shared {
    fn new(reader: StoreReader, applied: Option<LogId>) -> Arc<Shared> {
        Arc::new(Shared {
            reader,
            applied: watch::Sender::new(applied),
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
}

/// The coordination group's state machine (module docs).
pub struct CoordStateMachine<D: Disk> {
    group: GroupLog<D>,
    store: Store,
    applied: Option<LogId>,
    /// The newest membership applied.
    membership: Option<MembershipAt>,
    shared: Arc<Shared>,
    /// Entries applied since the last durable commit, and when the first of them was.
    unpersisted: (u64, Option<Instant>),
}

impl<D: Disk> CoordStateMachine<D> {
    /// The state machine over the store in `dir` (created if missing), as of its last persist.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be opened or its membership is damaged.
    pub(crate) fn open(
        group: GroupLog<D>,
        dir: &Path,
    ) -> Result<(CoordStateMachine<D>, Arc<Shared>), StoreError> {
        let store = Store::open(&dir.join(STORE_FILE)).map_err(|error| storage(&error))?;
        let applied = store.applied().map(|(term, index)| log_id(term, index));
        let membership = match store.membership().map_err(|error| storage(&error))? {
            Some(bytes) => Some(decode_membership(&bytes)?),
            None => None,
        };
        let shared = Shared::new(store.reader(), applied);
        let machine = CoordStateMachine {
            group,
            store,
            applied,
            membership,
            shared: Arc::clone(&shared),
            unpersisted: (0, None),
        };
        Ok((machine, shared))
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
        let position = (id.leader_id.term, id.index);
        let outcome = match entry.payload() {
            EntryPayload::Normal(proposal) => {
                let decode = |value: &[u8]| Command::decode(value).map_err(|e| e.to_string());
                let command = one_record(&proposal.batch, entry.index(), decode)?;
                Some(self.apply_command(&command, position, published)?)
            }
            EntryPayload::Membership(membership) => {
                let members = Members::from_membership(membership)
                    .map_err(|error| StoreError::Invalid(format!("membership: {error}")))?;
                let at = MembershipAt { log_id: id, members };
                let encoded = encode_membership(&at);
                self.store.apply_membership(&encoded, Some(position)).map_err(|e| storage(&e))?;
                self.membership = Some(at);
                // The log store saves the committed id below unapplied membership entries.
                self.group.state().unapplied.retain(|&index| index > id.index);
                self.group.save_committed()?;
                None
            }
            EntryPayload::Blank => {
                self.store.apply_at(None, position).map_err(|error| storage(&error))?;
                None
            }
        };
        self.applied = Some(id);
        self.unpersisted.0 += 1;
        self.unpersisted.1.get_or_insert_with(Instant::now);
        Ok(outcome)
    }

    fn apply_command(
        &mut self,
        command: &Command,
        position: (u64, u64),
        published: &mut Vec<Arc<Applied>>,
    ) -> Result<Outcome, StoreError> {
        let before = self.store.revision();
        let reply = self.store.apply_at(Some(command), position);
        if let Err(KvError::Storage(error)) = &reply {
            return Err(storage(error));
        }
        let after = self.store.revision();
        if after > before {
            let limit = usize::try_from(after - before).unwrap_or(usize::MAX);
            let made = self.store.events_after(before, limit).map_err(|error| storage(&error))?;
            published.extend(
                made.into_iter().map(|(revision, events)| Arc::new(Applied { revision, events })),
            );
        }
        Ok((reply, after))
    }

    /// Makes the applied entries durable if enough of them waited, or long enough.
    fn persist_if_due(&mut self) -> Result<(), StoreError> {
        let (entries, since) = self.unpersisted;
        let due = entries >= PERSIST_ENTRIES
            || since.is_some_and(|since| since.elapsed() >= PERSIST_INTERVAL);
        if due {
            self.persist()?;
        }
        Ok(())
    }

    /// Makes every applied entry durable.
    pub(crate) fn persist(&mut self) -> Result<(), StoreError> {
        self.store.persist().map_err(|error| storage(&error))?;
        self.unpersisted = (0, None);
        Ok(())
    }
}

fn storage(error: &dyn std::fmt::Display) -> StoreError {
    StoreError::Failed(format!("the coordination store: {error}"))
}

/// A membership as the store keeps it: its entry's term and index, then [`Members::encode`].
fn encode_membership(at: &MembershipAt) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&at.log_id.leader_id.term.to_be_bytes());
    bytes.extend_from_slice(&at.log_id.index.to_be_bytes());
    bytes.extend_from_slice(&at.members.encode());
    bytes
}

fn decode_membership(bytes: &[u8]) -> Result<MembershipAt, StoreError> {
    let bad = |why: &str| StoreError::Invalid(format!("the store's membership: {why}"));
    let (term, rest) = bytes.split_first_chunk::<8>().ok_or_else(|| bad("cut short"))?;
    let (index, members) = rest.split_first_chunk::<8>().ok_or_else(|| bad("cut short"))?;
    let members = Members::decode(members).map_err(|error| bad(&error.to_string()))?;
    let log_id = log_id(u64::from_be_bytes(*term), u64::from_be_bytes(*index));
    Ok(MembershipAt { log_id, members })
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
        if failed.is_none() {
            failed = self.persist_if_due().err();
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
