//! [`CoordStateMachine`]: openraft's state machine of the coordination group, cairn-coord's
//! [`Store`] (RFC 0009 §2).
//!
//! - Apply: a normal entry's batch holds one record whose value is an encoded [`Command`]; the
//!   entries openraft hands over at once are applied with [`Store::apply_batch`], in one redb
//!   transaction (a refusal changes nothing and is the same on every replica). Each revision an
//!   entry makes is published as an [`Applied`] to the watchers, and the applied position
//!   moves, before any writer is answered (read-your-writes). A command that does not decode
//!   is a newer version or damage: the group stops rather than skip it and diverge. A
//!   `Defragment` command naming this node rewrites its store after the batch.
//! - Durability: the store is a redb file (`store.redb`); each batch of entries is applied in
//!   one redb transaction with its position, without an fsync, and every [`PERSIST_ENTRIES`]
//!   entries or [`PERSIST_INTERVAL`] the applied state is made durable (RFC 0009 §2). The
//!   Raft log is the durability of what was acknowledged: a restart reopens the store as of
//!   its last persist and openraft applies the entries after it again. A membership entry is
//!   recorded in the store with its position, so the store's membership is always the one as
//!   of its applied position.
//! - Snapshots: the store is the snapshot, never copied to build one. Every
//!   `snapshot_entries` entries applied (the core's [`crate::core_group::CoreConfig`] setting)
//!   the group's trigger task asks openraft for one: the builder is made after the store was
//!   made durable at its applied position, and writes the `raft-snapshot` record at that point
//!   (membership as of it, the log start after it); openraft then purges the log behind it.
//!   The durable store is always at or after the record's point, so a crash between the two
//!   loses nothing the log no longer holds (an open refuses a store below the record).
//! - Serving one: [`RaftStateMachine::get_current_snapshot`] streams the store (one read
//!   transaction) into a [`CoordSnapshot`] whose meta is the store's applied position and
//!   membership as of that read: newer than the last built point, which openraft allows (the
//!   leader only needs the snapshot to cover what it purged; the follower installs any
//!   snapshot above its commit). It travels in one frame, at most [`CORE_SNAPSHOT_BYTES_MAX`];
//!   a bigger store is logged as an error and the send is refused by the frame's encoder
//!   (chunked snapshots are a later step).
//! - Installing one: the bytes restore a new `store.redb` beside the old one, with the
//!   snapshot's membership, renamed over it durably; the store and the shared reader are
//!   swapped; then the `raft-snapshot` record is written and the log reset if it lacks the
//!   point ([`crate::state_machine::install`]). Watchers see the revisions the install skipped
//!   from the new store's history when it still has them and they fit the feed; otherwise the
//!   feed overflows, so that every watcher lags and falls back to `history`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_coord::{Applied, Command, Entry, EntryOutcome, Store, StoreReader};
use cairn_storage::Disk;
use cairn_types::Offset;
use cairn_types::limits::{CORE_REPLIES_MAX, CORE_SNAPSHOT_BYTES_MAX};
use futures_util::StreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use tokio::sync::{Notify, broadcast, oneshot, watch};

use crate::core_group::{one_record, start_after};
use crate::entry::log_id;
use crate::group::{GroupLog, StoreError};
use crate::membership::Members;
use crate::record::{MembershipAt, SnapshotPoint};
use crate::state_machine::{install, membership_at, stored};
use crate::{LogId, RaftEntry, TypeConfig};

/// What a batch of entries did: each one's outcome (a command's; none for the others), and
/// the revisions they made.
type AppliedEntries = (Vec<Option<EntryOutcome>>, Vec<Arc<Applied>>);

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
    /// Reads of the store, beside its writer; swapped when a snapshot is installed.
    reader: RwLock<StoreReader>,
    /// The last applied entry.
    pub(crate) applied: watch::Sender<Option<LogId>>,
    /// Each applied revision, in order.
    pub(crate) revisions: broadcast::Sender<Arc<Applied>>,
    /// Outcomes of applied commands that had a waiter here, by index; at most
    /// [`CORE_REPLIES_MAX`], the oldest dropped.
    outcomes: Mutex<BTreeMap<u64, EntryOutcome>>,
    /// Woken when a snapshot is due.
    pub(crate) snapshot_due: Notify,
    /// Set once openraft started (`Raft::new` returned): until then it asks for the current
    /// snapshot only for its meta, and is answered without reading the store.
    pub(crate) started: AtomicBool,
    /// Ends (with an error) once the state machine is dropped: openraft drops it on its own
    /// task after its shutdown returned, and its store must be closed before a reopen.
    machine_dropped: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Shared {
    fn new(
        reader: StoreReader,
        applied: Option<LogId>,
        machine_dropped: oneshot::Receiver<()>,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            reader: RwLock::new(reader),
            applied: watch::Sender::new(applied),
            revisions: broadcast::Sender::new(APPLIED_BUFFER),
            outcomes: Mutex::new(BTreeMap::new()),
            snapshot_due: Notify::new(),
            started: AtomicBool::new(false),
            machine_dropped: Mutex::new(Some(machine_dropped)),
        })
    }

    /// Waits (at most `timeout`) until the state machine, and the store it holds, is dropped.
    pub(crate) async fn machine_dropped(&self, timeout: Duration) {
        let dropped = self.machine_dropped.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(dropped) = dropped
            && tokio::time::timeout(timeout, dropped).await.is_err()
        {
            tracing::warn!(?timeout, "the coordination state machine outlived its group");
        }
    }

    /// Reads of the store as applied now (of the installed store after a snapshot).
    pub(crate) fn reader(&self) -> StoreReader {
        self.reader.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn put_outcome(&self, index: u64, outcome: EntryOutcome) {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        outcomes.insert(index, outcome);
        while outcomes.len() > CORE_REPLIES_MAX {
            outcomes.pop_first();
        }
    }

    /// Takes the outcome of the command at `index`, once applied.
    pub(crate) fn take_outcome(&self, index: u64) -> Option<EntryOutcome> {
        self.outcomes.lock().unwrap_or_else(PoisonError::into_inner).remove(&index)
    }
}

/// The coordination group's state machine (module docs).
pub struct CoordStateMachine<D: Disk> {
    /// This node's id: the member a `Defragment` command may name.
    node: u64,
    group: GroupLog<D>,
    /// The group's directory, where `store.redb` is.
    dir: PathBuf,
    store: Store,
    applied: Option<LogId>,
    /// The newest membership applied.
    membership: Option<MembershipAt>,
    shared: Arc<Shared>,
    /// Entries applied since the last durable commit, and when the first of them was.
    unpersisted: (u64, Option<Instant>),
    /// Entries applied between two snapshots.
    snapshot_entries: u64,
    /// Entries applied since the last snapshot was begun.
    since_snapshot: u64,
    /// The last snapshot served, at its position: openraft asks twice in a row at start.
    served: Option<SnapshotOf<TypeConfig, CoordSnapshot>>,
    /// Dropped with the state machine: tells [`Shared::machine_dropped`].
    _dropped: oneshot::Sender<()>,
}

impl<D: Disk> CoordStateMachine<D> {
    /// The state machine over the store in `dir` (created if missing), as of its last persist;
    /// a snapshot is due every `snapshot_entries` entries.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be opened, its membership is damaged, or it is below
    /// the log's snapshot record (the entries the log was purged of would be lost).
    pub(crate) fn open(
        node: u64,
        group: GroupLog<D>,
        dir: &Path,
        snapshot_entries: u64,
    ) -> Result<(CoordStateMachine<D>, Arc<Shared>), StoreError> {
        let store = Store::open(&dir.join(STORE_FILE)).map_err(|error| storage(&error))?;
        let applied = store.applied().map(|(term, index)| log_id(term, index));
        let recorded = group.state().record.snapshot.as_ref().map(|p| p.last_log_id.index);
        let at = applied.map(|id| id.index);
        if recorded.is_some_and(|recorded| at.is_none_or(|at| at < recorded)) {
            return Err(StoreError::Invalid(format!(
                "the coordination store is applied to {at:?}, below the log's snapshot at \
                 {recorded:?}"
            )));
        }
        let membership = match store.membership().map_err(|error| storage(&error))? {
            Some(bytes) => Some(decode_membership(&bytes)?),
            None => None,
        };
        let (dropped, machine_dropped) = oneshot::channel();
        let shared = Shared::new(store.reader(), applied, machine_dropped);
        let machine = CoordStateMachine {
            node,
            group,
            dir: dir.to_path_buf(),
            store,
            applied,
            membership,
            shared: Arc::clone(&shared),
            unpersisted: (0, None),
            snapshot_entries,
            since_snapshot: 0,
            served: None,
            _dropped: dropped,
        };
        Ok((machine, shared))
    }

    /// Applies `entries` in one store transaction: each one's outcome (a command's; none for
    /// a blank or membership entry), and the revisions they made.
    fn apply_entries(&mut self, entries: &[RaftEntry]) -> Result<AppliedEntries, StoreError> {
        let mut decoded = Vec::with_capacity(entries.len());
        let mut memberships = Vec::new();
        let mut last = self.applied;
        for entry in entries {
            let id = log_id(entry.term(), entry.index());
            if last.is_some_and(|applied| applied >= id) {
                return Err(StoreError::Invalid(format!(
                    "coordination entry {id} applied again after {last:?}"
                )));
            }
            last = Some(id);
            decoded.push((Decoded::of(entry, &mut memberships)?, (id.leader_id.term, id.index)));
        }
        let batch: Vec<_> = decoded.iter().map(|(entry, at)| (entry.as_entry(), *at)).collect();
        let (outcomes, made) = self.store.apply_batch(&batch).map_err(|e| storage(&e))?;
        for at in memberships {
            // The log store saves the committed id below unapplied membership entries.
            self.group.state().unapplied.retain(|&index| index > at.log_id.index);
            self.group.save_committed()?;
            self.membership = Some(at);
        }
        let node = self.node;
        let mine = |entry: &Decoded| matches!(entry, Decoded::Command(Command::Defragment { member }) if *member == node);
        if decoded.iter().any(|(entry, _)| mine(entry)) {
            self.defragment()?;
        }
        let count = u64::try_from(entries.len()).unwrap_or(u64::MAX);
        self.applied = last;
        self.since_snapshot += count;
        self.served = None;
        self.unpersisted.0 += count;
        self.unpersisted.1.get_or_insert_with(Instant::now);
        let outcomes = decoded
            .iter()
            .zip(outcomes)
            .map(|((entry, _), outcome)| matches!(entry, Decoded::Command(_)).then_some(outcome))
            .collect();
        Ok((outcomes, made.into_iter().map(Arc::new).collect()))
    }

    /// Rewrites this node's store compactly ([`Store::defragment`]: durable first, then a new
    /// file), reads going to the new one. The applies wait meanwhile, as etcd's do.
    fn defragment(&mut self) -> Result<(), StoreError> {
        let before = self.store.size_bytes().unwrap_or(0);
        self.store.defragment().map_err(|error| storage(&error))?;
        *self.shared.reader.write().unwrap_or_else(PoisonError::into_inner) = self.store.reader();
        self.unpersisted = (0, None);
        let after = self.store.size_bytes().unwrap_or(0);
        tracing::info!(before, after, "coordination store defragmented");
        Ok(())
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

/// An entry decoded for the store: what [`Entry`] borrows.
enum Decoded {
    Command(Command),
    Membership(Vec<u8>),
    Blank,
}

impl Decoded {
    /// `entry` decoded; a membership entry's membership is also added to `memberships`.
    fn of(entry: &RaftEntry, memberships: &mut Vec<MembershipAt>) -> Result<Decoded, StoreError> {
        Ok(match entry.payload() {
            EntryPayload::Normal(proposal) => {
                let decode = |value: &[u8]| Command::decode(value).map_err(|e| e.to_string());
                Decoded::Command(one_record(&proposal.batch, entry.index(), decode)?)
            }
            EntryPayload::Membership(membership) => {
                let members = Members::from_membership(membership)
                    .map_err(|error| StoreError::Invalid(format!("membership: {error}")))?;
                let at = MembershipAt { log_id: log_id(entry.term(), entry.index()), members };
                let encoded = encode_membership(&at);
                memberships.push(at);
                Decoded::Membership(encoded)
            }
            EntryPayload::Blank => Decoded::Blank,
        })
    }

    fn as_entry(&self) -> Entry<'_> {
        match self {
            Decoded::Command(command) => Entry::Command(command),
            Decoded::Membership(encoded) => Entry::Membership(encoded),
            Decoded::Blank => Entry::Blank,
        }
    }
}

/// A failure that stops the state machine, logged.
fn stops(error: StoreError) -> io::Error {
    tracing::error!(%error, "the coordination group's state machine stops");
    error.into()
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
    type SnapshotBuilder = CoordSnapshotBuilder<D>;

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
        let (mut applying, mut responders) = (Vec::new(), Vec::new());
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            applying.push(entry);
            responders.push(responder);
        }
        let (outcomes, published) = self.apply_entries(&applying).map_err(stops)?;
        let persisted = self.persist_if_due();
        // What was applied is published before anyone hears of it (read-your-writes).
        for applied in published {
            // No receiver: nobody watches.
            let _ = self.shared.revisions.send(applied);
        }
        self.shared.applied.send_replace(self.applied);
        for ((entry, outcome), responder) in applying.iter().zip(outcomes).zip(responders) {
            let Some(responder) = responder else { continue };
            if let Some(outcome) = outcome {
                self.shared.put_outcome(entry.index(), outcome);
            }
            responder.send(());
        }
        persisted.map_err(stops)?;
        if self.since_snapshot >= self.snapshot_entries {
            self.shared.snapshot_due.notify_one();
        }
        Ok(())
    }

    /// Makes the store durable at its applied position, the point the builder records.
    async fn get_snapshot_builder(&mut self) -> CoordSnapshotBuilder<D> {
        self.since_snapshot = 0;
        let persisted = self.persist();
        CoordSnapshotBuilder {
            group: self.group.clone(),
            point: persisted.map(|()| (self.applied, self.membership.clone())),
        }
    }

    async fn try_create_snapshot_builder(
        &mut self,
        _force: bool,
    ) -> Option<CoordSnapshotBuilder<D>> {
        Some(self.get_snapshot_builder().await)
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: CoordSnapshot,
    ) -> Result<(), io::Error> {
        let Some(last) = meta.last_log_id else {
            return Err(StoreError::Invalid("a snapshot without a last log id".into()).into());
        };
        let membership = membership_at(&meta.last_membership)?;
        let before = self.store.revision();
        let path = self.dir.join(STORE_FILE);
        let encoded = membership.as_ref().map(encode_membership);
        let restored = crate::runtime::unblock(move || {
            Store::restore_as_member(&path, &mut &snapshot.state[..], encoded.as_deref())
        })
        .await
        .map_err(|error| StoreError::Failed(error.to_string()))?
        .map_err(|error| storage(&error))?;
        if restored.applied() != Some((last.leader_id.term, last.index)) {
            let reason = format!(
                "a coordination snapshot at {last} holds a store applied to {:?}",
                restored.applied()
            );
            return Err(StoreError::Invalid(reason).into());
        }
        self.store = restored;
        *self.shared.reader.write().unwrap_or_else(PoisonError::into_inner) = self.store.reader();
        self.applied = Some(last);
        self.membership = membership.clone();
        self.unpersisted = (0, None);
        self.since_snapshot = 0;
        self.served = None;
        let point = SnapshotPoint {
            last_log_id: last,
            membership,
            // Every coordination entry is one record: its offsets follow its indexes.
            log_start_offset: Offset(last.index + 1),
        };
        // The store holds the point durably before the record lets the log go.
        self.group.blocking(move |group| install(group, point, &[])).await?;
        self.publish_jump(before);
        self.shared.applied.send_replace(self.applied);
        tracing::info!(
            index = last.index,
            revision = self.store.revision(),
            "coordination snapshot installed"
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, CoordSnapshot>>, io::Error> {
        let Some(applied) = self.applied else { return Ok(None) };
        if !self.shared.started.load(Ordering::Acquire) {
            // openraft's start reads the meta (the store is never behind it: nothing to
            // install); reading a large store whole here held the start up (1.4 s at 2 GB).
            return Ok(Some(snapshot_of(applied, self.membership.as_ref(), Bytes::new())));
        }
        if let Some(served) = self.served.as_ref().filter(|s| s.meta.last_log_id == Some(applied)) {
            return Ok(Some(served.clone()));
        }
        let reader = self.store.reader();
        let (position, bytes) = crate::runtime::unblock(move || {
            let mut out = Bounded { bytes: Vec::new() };
            reader.write_snapshot(&mut out).map(|position| (position, out.bytes))
        })
        .await
        .map_err(|error| StoreError::Failed(error.to_string()))?
        .map_err(|error| storage(&error))?;
        // Applies wait for this call: the read saw the state this machine applied.
        if position.applied != Some((applied.leader_id.term, applied.index)) {
            let reason = format!(
                "the coordination store was read at {:?}, not at its applied {applied}",
                position.applied
            );
            return Err(StoreError::Invalid(reason).into());
        }
        if bytes.len() > CORE_SNAPSHOT_BYTES_MAX {
            tracing::error!(
                index = applied.index,
                limit = CORE_SNAPSHOT_BYTES_MAX,
                "the coordination store's snapshot is above CORE_SNAPSHOT_BYTES_MAX, one peer \
                 frame: a follower behind the purged log cannot catch up until snapshots are \
                 sent in chunks"
            );
        }
        let snapshot = snapshot_of(applied, self.membership.as_ref(), Bytes::from(bytes));
        self.served = Some(snapshot.clone());
        Ok(Some(snapshot))
    }
}

impl<D: Disk> CoordStateMachine<D> {
    /// Publishes the revisions an installed snapshot jumped over (after `before`), from the
    /// new store's history. More than the feed holds, or some compacted away: every watcher
    /// is made to lag (revisions sent again are skipped by watchers), so that it reads
    /// `history` (or hears that its revision was compacted).
    fn publish_jump(&self, before: i64) {
        let after = before.max(self.store.compacted());
        let revisions = self.store.events_after(after, APPLIED_BUFFER + 1).unwrap_or_default();
        let complete = after == before && revisions.len() <= APPLIED_BUFFER;
        let mut sent = 0;
        for (revision, events) in revisions {
            // No receiver: nobody watches.
            let _ = self.shared.revisions.send(Arc::new(Applied { revision, events }));
            sent += 1;
        }
        if complete {
            return;
        }
        let Ok(last) = self.store.events_after(self.store.revision() - 1, 1) else { return };
        let Some((revision, events)) = last.into_iter().next() else { return };
        let last = Arc::new(Applied { revision, events });
        while sent <= APPLIED_BUFFER {
            let _ = self.shared.revisions.send(Arc::clone(&last));
            sent += 1;
        }
    }
}

/// A writer into memory that keeps at most one byte more than [`CORE_SNAPSHOT_BYTES_MAX`]:
/// enough for the frame's encoder to refuse it, never more memory.
struct Bounded {
    bytes: Vec<u8>,
}

impl io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = (CORE_SNAPSHOT_BYTES_MAX + 1).saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&buf[..buf.len().min(room)]);
        // What does not fit is dropped: the snapshot is refused whole.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// openraft's snapshot of the store at `last` with `membership`.
fn snapshot_of(
    last: LogId,
    membership: Option<&MembershipAt>,
    state: Bytes,
) -> SnapshotOf<TypeConfig, CoordSnapshot> {
    let meta = SnapshotMetaOf::<TypeConfig> {
        last_log_id: Some(last),
        last_membership: stored(membership),
    };
    SnapshotOf::<TypeConfig, CoordSnapshot> { meta, snapshot: CoordSnapshot { state } }
}

/// The coordination group's snapshot as it travels: the encoded store
/// ([`Store::write_snapshot`]); its applied position is the snapshot's last log id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordSnapshot {
    /// The encoded store.
    pub state: Bytes,
}

/// Builds a snapshot of a [`CoordStateMachine`]: its store was made durable at the point when
/// the builder was made; the builder records that point in `raft-snapshot` (module docs).
pub struct CoordSnapshotBuilder<D: Disk> {
    group: GroupLog<D>,
    /// The applied id and membership the store was made durable at, or why it was not.
    point: Result<(Option<LogId>, Option<MembershipAt>), StoreError>,
}

impl<D: Disk + Clone> RaftSnapshotBuilder<TypeConfig> for CoordSnapshotBuilder<D> {
    type SnapshotData = CoordSnapshot;

    /// The snapshot's data is left empty: openraft keeps only the meta of a built snapshot,
    /// and a follower is served the store as it is then (`get_current_snapshot`).
    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, CoordSnapshot>, io::Error> {
        let (applied, membership) = match &self.point {
            Ok(point) => point.clone(),
            Err(error) => return Err(StoreError::Failed(error.to_string()).into()),
        };
        let Some(last) = applied else {
            // openraft asks for one at start when entries are purged and no snapshot exists; a
            // state machine that applied nothing has nothing to keep.
            let meta = SnapshotMetaOf::<TypeConfig>::default();
            let snapshot = CoordSnapshot { state: Bytes::new() };
            return Ok(SnapshotOf::<TypeConfig, CoordSnapshot> { meta, snapshot });
        };
        let recorded = membership.clone();
        self.group
            .blocking(move |group| {
                let mut record = group.state().record.clone();
                if record.snapshot.as_ref().is_some_and(|point| point.last_log_id >= last) {
                    return Ok(());
                }
                record.snapshot = Some(SnapshotPoint {
                    last_log_id: last,
                    membership: recorded,
                    log_start_offset: start_after(group, last)?,
                });
                group.write_record(&record)?;
                group.state().record = record;
                Ok(())
            })
            .await?;
        tracing::info!(index = last.index, "coordination snapshot built");
        Ok(snapshot_of(last, membership.as_ref(), Bytes::new()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use cairn_coord::{PutRequest, RangeRequest};
    use cairn_metrics::Histogram;
    use cairn_storage::{RealDisk, SystemClock};

    use super::*;

    fn machine(dir: &Path) -> (CoordStateMachine<RealDisk>, Arc<Shared>) {
        let histogram = Arc::new(Histogram::new(&[0.1]).unwrap());
        let config = crate::core_group::core_log_config();
        let log_dir = dir.join("log");
        let clock = Arc::new(SystemClock);
        let group = GroupLog::open(RealDisk, &log_dir, config, clock, histogram).unwrap();
        CoordStateMachine::open(1, group, &log_dir, 10).unwrap()
    }

    fn value(shared: &Shared, key: &str) -> Option<Vec<u8>> {
        let request = RangeRequest { key: key.into(), ..RangeRequest::default() };
        shared.reader().range(&request).unwrap().kvs.first().map(|kv| kv.value.clone())
    }

    #[tokio::test]
    async fn a_served_snapshot_installs_the_leaders_store_membership_and_position() {
        let (leader_dir, follower_dir) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut leader, leader_shared) = machine(leader_dir.path());
        let members = Members::new(vec![BTreeSet::from([1, 2, 3])], BTreeSet::new()).unwrap();
        let at = MembershipAt { log_id: log_id(1, 1), members };
        leader.store.apply_membership(&encode_membership(&at), (1, 1)).unwrap();
        leader.membership = Some(at.clone());
        for index in 2..50 {
            let put = PutRequest {
                key: format!("k{index}").into(),
                value: b"v".to_vec(),
                ..PutRequest::default()
            };
            leader.store.apply_at(Some(&Command::Put(put)), (1, index)).unwrap();
        }
        leader.applied = Some(log_id(1, 49));
        // While openraft starts, the meta only: the store is not read.
        let meta_only = leader.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(meta_only.meta.last_log_id, Some(log_id(1, 49)));
        assert!(meta_only.snapshot.state.is_empty());
        leader_shared.started.store(true, Ordering::Release);
        let served = leader.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(served.meta.last_log_id, Some(log_id(1, 49)), "the store's applied position");
        assert_eq!(membership_at(&served.meta.last_membership).unwrap(), Some(at.clone()));

        let (mut follower, shared) = machine(follower_dir.path());
        let (mut revisions, old_reader) = (shared.revisions.subscribe(), shared.reader());
        follower.install_snapshot(&served.meta, served.snapshot).await.unwrap();
        assert_eq!(value(&shared, "k7").as_deref(), Some(&b"v"[..]), "the shared reader swapped");
        assert_eq!(old_reader.position().unwrap().revision, 1, "a kept reader reads the old store");
        assert_eq!(*shared.applied.borrow(), Some(log_id(1, 49)));
        assert_eq!(revisions.recv().await.unwrap().revision, 2, "skipped revisions replayed");
        let record = follower.group.state().record.snapshot.clone().unwrap();
        assert_eq!((record.last_log_id, record.membership), (log_id(1, 49), Some(at.clone())));
        // Readers hold the database open: all go before a reopen.
        drop((follower, shared, old_reader, revisions));

        // Durable with its membership: a reopen finds both.
        let (mut reopened, shared) = machine(follower_dir.path());
        let (applied, membership) = reopened.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(1, 49)));
        assert_eq!(membership_at(&membership).unwrap(), Some(at));
        assert_eq!(value(&shared, "k49").as_deref(), Some(&b"v"[..]));
    }
}
