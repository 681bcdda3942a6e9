//! [`Partition`]: one partition replica, its Raft group (one voter today), its [`Replica`] state
//! and its high watermark.
//!
//! Every partition is an openraft group over its log ([`cairn_raft::RaftGroup`]); with one voter
//! it elects itself at every start, and produce, fetch, ListOffsets and retention go through it:
//! there is no second path (RFC 0003 §4, §9 step 3).
//!
//! - Produce ([`Partition::propose`], then [`Proposed::wait`]): validated and stamped here, then
//!   one proposal per batch, in request order. `acks=1` is answered when the group's storage
//!   reports the append (page cache), with its base offset; `acks=all` when the entry's own
//!   commit callback fires (a majority of fsyncs in the proposing term; not after apply, never
//!   "high watermark past my offset"); `acks=0` never. A wait that times out is
//!   `REQUEST_TIMED_OUT` (unknown outcome); a proposal whose leader lost its term is
//!   `NOT_LEADER_OR_FOLLOWER`.
//! - The [`Replica`] is fed from the group (`tracker.rs`): role and term from its role watch,
//!   `on_appended` from the append reports, `on_flushed` from the group commit, `on_committed`
//!   from apply (the end of the last applied entry). Raft's blank entry of each new term and the
//!   membership entry of a new group are control batches that take an offset; consumers skip
//!   them. **Flushed is not committed**: fetches, ListOffsets, timestamp lookups and retention
//!   are bounded by the commit offset, the high watermark, published on a `watch` channel that
//!   long-polling fetches wait on.
//! - Retention picks the whole segments past it (bounded by the high watermark), builds the
//!   group's snapshot at their last index and purges through it.
//!
//! A partition is *offline* when its log could not be opened, its group could not start or
//! stopped (a failed fsync or write), or a read found committed data failing verification: it
//! then refuses produce and fetch with [`PartitionError::Failed`] (`KAFKA_STORAGE_ERROR`) until
//! the node restarts, and reports itself to the broker's [`Health`] once.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use cairn_metrics::Histogram;
use cairn_raft::{
    GroupLog, GroupPeers, GroupState, Pending, Placement, ProposalAppended, ProposeError,
    RaftGroup, RaftNodeId, RoleWatch, Timers,
};
use cairn_storage::{Clock, Disk, FileRange, Log, LogConfig, RealDisk, Retention, Verdict};
use cairn_types::batch::{Batches, Frames};
use cairn_types::limits::{APPEND_BYTES_MAX, BATCH_BYTES_MAX};
use cairn_types::{LeaderEpoch, NodeId, Offset};
use tokio::sync::{oneshot, watch};

use crate::epoch_end::{EpochEnd, epoch_end};
use crate::error::PartitionError;
use crate::health::Health;
use crate::replica::{Refusal, Replica, Role, Violation};
use crate::tracker::{Tracker, lock};
use crate::volume::Volume;

mod cleaner;

/// What a successful append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record appended.
    pub base_offset: Offset,
    /// Offset after the last record appended.
    pub next_offset: Offset,
    /// The log start offset at the time of the append.
    pub log_start_offset: Offset,
    /// The time the batches were stamped with, if the topic uses log-append time.
    pub log_append_time_ms: Option<i64>,
}

/// Offsets of a partition at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    /// First offset still in the log.
    pub log_start: Offset,
    /// High watermark: offsets below are committed (with one voter: durable here) and visible
    /// to consumers.
    pub high_watermark: Offset,
    /// Log end: the next offset to be assigned.
    pub log_end: Offset,
}

impl Offsets {
    /// The offsets of a partition whose log could not be opened: nothing is known.
    const UNKNOWN: Offsets =
        Offsets { log_start: Offset(0), high_watermark: Offset(0), log_end: Offset(0) };

    fn of<D: Disk>(log: &Log<D>, replica: &Replica) -> Offsets {
        Offsets {
            log_start: log.start_offset(),
            high_watermark: replica.committed(),
            log_end: log.next_offset(),
        }
    }
}

/// Batches read for a fetch.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// Whole batches, stored bytes as they are on disk.
    pub records: Bytes,
    /// Offsets when the read was made.
    pub offsets: Offsets,
}

/// Batches located for a fetch, to be sent from the files.
pub struct Located<D: Disk = RealDisk> {
    /// Segment file ranges in log order; concatenated they are whole, consecutive batches.
    pub ranges: Vec<FileRange<D::File>>,
    /// Sum of the ranges' lengths.
    pub bytes: u64,
    /// Offsets when the batches were located.
    pub offsets: Offsets,
}

/// Per-partition settings derived from the topic's configs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionConfig {
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: u32,
    /// `retention.ms` / `retention.bytes`; none unless `cleanup.policy` holds `delete`.
    pub retention: Retention,
    /// The compaction configs, if `cleanup.policy` holds `compact` (RFC 0007).
    pub compaction: Option<cairn_meta::CompactionConfig>,
    /// `message.timestamp.type=LogAppendTime`: the broker stamps batches with its clock.
    pub log_append_time: bool,
}

/// The state a partition publishes: its high watermark, or the failure that stopped it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Offsets below are committed: the high watermark.
    Committed(Offset),
    /// The partition is offline (its log failed, could not be opened, or holds corrupt data);
    /// it serves nothing more until the node restarts.
    Failed(String),
}

/// What every partition of a broker shares.
#[derive(Clone)]
pub struct Shared {
    /// Bumped whenever any high watermark moves, so a long-polling fetch over many partitions
    /// waits on one channel.
    pub progress: Arc<watch::Sender<u64>>,
    /// Observes each fsync's duration.
    pub flush_seconds: Arc<Histogram>,
    /// Where partitions report going offline and a full disk.
    pub health: Arc<Health>,
    /// The wall clock log-append time is stamped with.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("health", &self.health).finish_non_exhaustive()
    }
}

/// How a produce wants to be acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// No answer (`acks=0`): nothing waits.
    None,
    /// Once the leader appended (`acks=1`, page cache).
    Leader,
    /// Once the group committed the entries (`acks=all`).
    All,
}

/// The Raft settings of every group on this node.
#[derive(Clone, Debug)]
pub struct RaftSettings {
    /// This node's id.
    pub node_id: NodeId,
    /// Heartbeat and election timers.
    pub timers: Timers,
    /// The node's peer transport; `None` on a node without peers (every group's only voter is
    /// this node).
    pub peers: Option<GroupPeers>,
}

/// A partition's group as the consistent core placed it: its id on the peer transport and its
/// voters (the partition's replicas, this node among them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replicas {
    /// The group's id.
    pub group: u64,
    /// The group's voters.
    pub voters: BTreeSet<RaftNodeId>,
}

impl Replicas {
    /// The group of a node without peers: this node alone (its id on a transport unused).
    #[must_use]
    pub fn sole(node: NodeId) -> Replicas {
        Replicas { group: 0, voters: BTreeSet::from([node.0]) }
    }
}

/// How long retention waits for its snapshot, then for its purge.
const RETENTION_WAIT: Duration = Duration::from_secs(30);

/// One partition replica on this node, its log on a `D`.
pub struct Partition<D: Volume = RealDisk> {
    /// Replica state, waiters, offline reason: what the group reports into.
    tracker: Arc<Tracker>,
    /// The group; `None` for a partition offline from the start.
    group: Option<RaftGroup<D>>,
    settings: Mutex<PartitionConfig>,
    /// The next proposal ticket; 0 is `Proposal::TICKET_NONE`.
    next_ticket: AtomicU64,
}

/// The replica of a log just opened: a follower (the role watch makes it leader), everything
/// recovered durable, committed up to what `raft-vote` says.
fn opened_replica<D: Volume>(log: &GroupLog<D>) -> Result<Replica, String> {
    let committed = log.committed_offset().map_err(|error| error.to_string())?;
    log.with_log(|log| {
        let durable = log.durable_offset();
        Replica::new(log.start_offset(), log.next_offset(), durable, committed.min(durable))
    })
    .map_err(|violation| violation.to_string())
}

/// Carries the group's role changes out on the replica until the group stops.
async fn watch_roles<D: Volume>(tracker: Arc<Tracker>, mut roles: RoleWatch, log: GroupLog<D>) {
    let mut role = roles.current();
    loop {
        let log_end = log.with_log(Log::next_offset);
        tracker.on_role(role, log_end);
        if role.state == GroupState::Stopped {
            return;
        }
        match roles.changed().await {
            Some(next) => role = next,
            None => {
                let stopped = cairn_raft::GroupRole { state: GroupState::Stopped, ..role };
                tracker.on_role(stopped, log_end);
                return;
            }
        }
    }
}

impl<D: Volume> Partition<D> {
    /// Starts a partition over its opened log, or the reason it could not be opened (it is then
    /// offline from the start, and reported to the shared [`Health`]): its group (elected at
    /// once with one voter: [`Partition::wait_leader`]) and the role watch. The log must have
    /// joined the node's group commit ([`GroupLog::join_group_commit`]), or nothing it appends
    /// becomes durable.
    pub async fn start(
        topic: String,
        index: u32,
        opened: Result<GroupLog<D>, String>,
        settings: PartitionConfig,
        raft: RaftSettings,
        replicas: Replicas,
        shared: Shared,
    ) -> Arc<Partition<D>> {
        let replica = match &opened {
            Ok(log) => opened_replica(log),
            Err(reason) => Err(reason.clone()),
        };
        let committed = replica.as_ref().map_or(Offset(0), Replica::committed);
        let clock = Arc::clone(&shared.clock);
        let tracker = Arc::new(Tracker {
            topic,
            index,
            replica: Mutex::new(replica.clone().unwrap_or_else(Replica::offline)),
            durability: watch::channel(Durability::Committed(committed)).0,
            appends: Mutex::new(HashMap::new()),
            shared,
            offline: OnceLock::new(),
            closing: AtomicBool::new(false),
        });
        let group = match (opened, replica) {
            (Ok(log), Ok(_)) => Self::start_group(&tracker, log, &raft, &replicas, clock).await,
            (Ok(log), Err(reason)) => {
                drop(log.close());
                tracker.go_offline(reason);
                None
            }
            (Err(reason), _) => {
                tracker.go_offline(reason);
                None
            }
        };
        Arc::new(Partition {
            tracker,
            group,
            settings: Mutex::new(settings),
            next_ticket: AtomicU64::new(1),
        })
    }

    async fn start_group(
        tracker: &Arc<Tracker>,
        log: GroupLog<D>,
        raft: &RaftSettings,
        replicas: &Replicas,
        clock: Arc<dyn Clock>,
    ) -> Option<RaftGroup<D>> {
        let sink = Arc::clone(tracker) as Arc<dyn cairn_raft::AppendSink>;
        let placement = Placement {
            node: raft.node_id.0,
            voters: &replicas.voters,
            group: replicas.group,
            peers: raft.peers.as_ref(),
        };
        let start = RaftGroup::start(log.clone(), placement, &raft.timers, sink, clock);
        match Box::pin(start).await {
            Ok(group) => {
                tokio::spawn(watch_roles(Arc::clone(tracker), group.roles(), log));
                Some(group)
            }
            Err(error) => {
                drop(log.close());
                tracker.go_offline(format!("the raft group cannot start: {error}"));
                None
            }
        }
    }

    /// Waits up to `timeout` for the group to have a leader and, if this replica leads, for
    /// its term's first entry to commit (its high watermark known); whether both happened. A
    /// one-voter group elects itself at start, so this is short.
    pub async fn wait_leader(&self, timeout: Duration) -> bool {
        let Some(group) = &self.group else { return false };
        if group.wait_leader_known(timeout).await.is_none() {
            return false;
        }
        if group.roles().current().state != GroupState::Leader {
            return self.offline().is_none();
        }
        // The role watch carries the election out too; carry it out now so that the caller
        // sees the replica lead (a role applied twice changes nothing).
        let log_end = group.log().with_log(Log::next_offset);
        self.tracker.on_role(group.roles().current(), log_end);
        // Serving starts once the term's first entry committed: until then the high watermark
        // is not known (RFC 0003 §4).
        let mut durability = self.subscribe();
        let known = durability.wait_for(|_| {
            let replica = lock(&self.tracker.replica);
            replica.is_offline() || !matches!(replica.latest_offset(), Ok(None))
        });
        let known = tokio::time::timeout(timeout, known).await.is_ok_and(|known| known.is_ok());
        known && self.offline().is_none() && lock(&self.tracker.replica).role() == &Role::Leader
    }

    /// Watches the group's role (elections, stopping); `None` for a partition offline from
    /// the start.
    #[must_use]
    pub fn roles(&self) -> Option<RoleWatch> {
        self.group.as_ref().map(RaftGroup::roles)
    }

    /// The group's leader as this replica knows it (`None` during an election, offline, or
    /// while this replica leads without a quorum: cairn-raft's `RaftGroup::leader`).
    #[must_use]
    pub fn leader(&self) -> Option<NodeId> {
        self.group.as_ref()?.leader().map(NodeId)
    }

    /// The replicas in sync, if this replica leads (module docs of cairn-raft's `RaftGroup`).
    #[must_use]
    pub fn in_sync(&self) -> Option<Vec<NodeId>> {
        let in_sync = self.group.as_ref()?.in_sync()?;
        Some(in_sync.into_iter().map(NodeId).collect())
    }

    /// Why the partition is offline, if it is.
    #[must_use]
    pub fn offline(&self) -> Option<&str> {
        self.tracker.offline.get().map(String::as_str)
    }

    /// Runs `f` on the log and a copy of the replica state if the partition is online.
    /// Corruption found by `f` takes the partition offline: committed data it cannot serve must
    /// show in readiness and metrics.
    fn with_log<T>(
        &self,
        f: impl FnOnce(&mut Log<D>, &Replica) -> Result<T, PartitionError>,
    ) -> Result<T, PartitionError> {
        self.check_offline()?;
        let Some(group) = &self.group else {
            return Err(PartitionError::Failed("the partition log is not open".into()));
        };
        let replica = lock(&self.tracker.replica).clone();
        let result = group.log().with_log_mut(|log| f(log, &replica));
        if let Err(PartitionError::Storage(error)) = &result {
            self.offline_if_corrupt(error);
        }
        result
    }

    /// Takes the partition offline if `error` is corruption: committed data it cannot serve
    /// must show in readiness and metrics.
    fn offline_if_corrupt(&self, error: &cairn_storage::Error) {
        if matches!(error, cairn_storage::Error::Corruption { .. }) {
            self.tracker.go_offline(error.to_string());
        }
    }

    /// Topic name.
    #[must_use]
    pub fn topic(&self) -> &str {
        &self.tracker.topic
    }

    /// Partition index.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.tracker.index
    }

    /// The leader epoch of this replica: its group's current term.
    #[must_use]
    pub fn leader_epoch(&self) -> LeaderEpoch {
        lock(&self.tracker.replica).epoch()
    }

    /// A copy of the replica state now: role, epoch, offsets.
    #[must_use]
    pub fn replica(&self) -> Replica {
        lock(&self.tracker.replica).clone()
    }

    /// Kafka's current-leader-epoch check of a request naming `requested` (`None`: no epoch).
    ///
    /// # Errors
    /// [`PartitionError::Refused`] with `FencedEpoch` or `UnknownEpoch`.
    pub fn check_epoch(&self, requested: Option<LeaderEpoch>) -> Result<(), PartitionError> {
        Ok(lock(&self.tracker.replica).check_epoch(requested)?)
    }

    /// OffsetForLeaderEpoch: where epoch `requested` ends in this leader's log
    /// ([`crate::epoch_end`], Kafka's rules; `None` is Kafka's undefined answer), after Kafka's
    /// checks in Kafka's order: the request's current leader epoch (`current`, `None` if it
    /// sent none), then leadership.
    ///
    /// # Errors
    /// [`PartitionError::Failed`] offline; [`PartitionError::Refused`] with `FencedEpoch`,
    /// `UnknownEpoch` or `NotLeader`.
    pub fn epoch_end(
        &self,
        current: Option<LeaderEpoch>,
        requested: LeaderEpoch,
    ) -> Result<Option<EpochEnd>, PartitionError> {
        self.with_log(|log, replica| {
            replica.check_epoch(current)?;
            replica.fetch_bound()?;
            let history = log.epoch_history();
            let bounds = (log.start_offset(), log.next_offset());
            Ok(epoch_end(history, Some(replica.epoch()), bounds, requested))
        })
    }

    /// Current settings.
    #[must_use]
    pub fn settings(&self) -> PartitionConfig {
        *lock(&self.settings)
    }

    /// Applies changed topic configs.
    ///
    /// # Errors
    /// [`PartitionError::Storage`] if the log rejects the new segment settings.
    pub fn reconfigure(
        &self,
        settings: PartitionConfig,
        log_config: LogConfig,
    ) -> Result<(), PartitionError> {
        if let Some(group) = &self.group {
            group.log().with_log_mut(|log| log.reconfigure(log_config))?;
        }
        *lock(&self.settings) = settings;
        Ok(())
    }

    /// Watches the high watermark (or the failure), for long polls.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<Durability> {
        self.tracker.durability.subscribe()
    }

    /// Offsets now (all zero for a partition whose log could not be opened).
    #[must_use]
    pub fn offsets(&self) -> Offsets {
        let Some(group) = &self.group else { return Offsets::UNKNOWN };
        let replica = lock(&self.tracker.replica).clone();
        group.log().with_log(|log| Offsets::of(log, &replica))
    }

    /// ListOffsets(latest): the high watermark, or `None` (`OFFSET_NOT_AVAILABLE`) while a new
    /// leader's term has not committed up to its start.
    ///
    /// # Errors
    /// [`PartitionError::Failed`] offline; [`PartitionError::Refused`] if not the leader.
    pub fn latest_offset(&self) -> Result<Option<Offset>, PartitionError> {
        self.check_offline()?;
        Ok(lock(&self.tracker.replica).latest_offset()?)
    }

    fn check_offline(&self) -> Result<(), PartitionError> {
        match self.tracker.offline.get() {
            Some(reason) => Err(PartitionError::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    fn check_open(&self) -> Result<(), PartitionError> {
        if self.tracker.closing.load(Ordering::Acquire) {
            return Err(PartitionError::Closed);
        }
        self.check_offline()
    }

    /// Proposes a produce request's record set (one or more batches) to the group, one
    /// proposal per batch in their order, and returns once all are handed over: calls made one
    /// after another are appended in that order. The batches are validated here (framing, CRC,
    /// `max.message.bytes`) and stamped with log-append time if the topic uses it; the log
    /// assigns offsets and the epoch. [`Proposed::wait`] waits for the answer `acks` asks for.
    ///
    /// # Errors
    /// [`PartitionError::MessageTooLarge`] for a batch over `max.message.bytes`;
    /// [`PartitionError::Storage`] for invalid batches; [`PartitionError::Refused`] if this
    /// replica may not take produce; [`PartitionError::Failed`] offline;
    /// [`PartitionError::Closed`] closing.
    pub async fn propose(&self, records: Vec<u8>, acks: Acks) -> Result<Proposed, PartitionError> {
        self.check_open()?;
        let settings = self.settings();
        let mut records = records;
        check_batch_sizes(&records, settings.max_message_bytes)?;
        let log_append_time_ms = settings
            .log_append_time
            .then(|| stamp_log_append_time(&mut records, self.tracker.shared.clock.now_ms()));
        let batches = split_batches(records)?;
        lock(&self.tracker.replica).may_produce()?;
        let Some(group) = &self.group else {
            return Err(PartitionError::Failed("the partition log is not open".into()));
        };
        let log_start_offset = group.log().with_log(Log::start_offset);
        let mut proposed = Proposed {
            tracker: Arc::clone(&self.tracker),
            acks,
            parts: Vec::with_capacity(batches.len()),
            log_start_offset,
            log_append_time_ms,
        };
        for batch in batches {
            proposed.parts.push(self.propose_batch(group, batch, acks).await?);
        }
        Ok(proposed)
    }

    /// [`Partition::propose`], then [`Proposed::wait`] up to `timeout`: one produce.
    ///
    /// # Errors
    /// As both.
    pub async fn produce(
        &self,
        records: Vec<u8>,
        acks: Acks,
        timeout: Duration,
    ) -> Result<Appended, PartitionError> {
        self.propose(records, acks).await?.wait(timeout).await
    }

    /// Hands one batch to the group, registering its append waiter first.
    async fn propose_batch(
        &self,
        group: &RaftGroup<D>,
        batch: Bytes,
        acks: Acks,
    ) -> Result<Part, PartitionError> {
        if acks == Acks::None {
            let ticket = cairn_raft::Proposal::TICKET_NONE;
            group.propose(batch, ticket, false).await.map_err(|e| self.propose_error(e))?;
            return Ok(Part { ticket, appended: None, pending: None });
        }
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let (sender, appended) = oneshot::channel();
        lock(&self.tracker.appends).insert(ticket, sender);
        match group.propose(batch, ticket, true).await {
            Ok(pending) => Ok(Part { ticket, appended: Some(appended), pending }),
            Err(error) => {
                lock(&self.tracker.appends).remove(&ticket);
                Err(self.propose_error(error))
            }
        }
    }

    fn propose_error(&self, error: ProposeError) -> PartitionError {
        proposal_error(&self.tracker, error)
    }

    /// Waits until offsets below `offset` are committed: the high watermark passing it (long
    /// polls and tests; `acks=all` waits on its entries' own commit instead, RFC 0003 §4).
    ///
    /// # Errors
    /// [`PartitionError::Timeout`] after `timeout`; [`PartitionError::Failed`] if the log failed.
    pub async fn wait_committed(
        &self,
        offset: Offset,
        timeout: Duration,
    ) -> Result<(), PartitionError> {
        let mut durability = self.subscribe();
        let wait = durability.wait_for(|state| match state {
            Durability::Committed(committed) => *committed >= offset,
            Durability::Failed(_) => true,
        });
        match tokio::time::timeout(timeout, wait).await {
            Err(_) => Err(PartitionError::Timeout),
            Ok(Err(_)) => Err(PartitionError::Closed),
            Ok(Ok(state)) => match &*state {
                Durability::Committed(_) => Ok(()),
                Durability::Failed(reason) => Err(PartitionError::Failed(reason.clone())),
            },
        }
    }

    /// Locates whole batches from the one containing `from`, at most `bytes_max` (at least one
    /// batch), up to the high watermark: the file ranges to send as they are (`sendfile`). The
    /// ranges keep their files open, so retention deleting a segment meanwhile does not cut them.
    ///
    /// # Errors
    /// [`PartitionError::OffsetOutOfRange`] if `from` is before the log start or after the log
    /// end; [`PartitionError::Refused`] if not the leader; [`PartitionError::Storage`] on
    /// corruption or IO failure.
    pub fn locate(&self, from: Offset, bytes_max: u32) -> Result<Located<D>, PartitionError> {
        self.with_log(|log, replica| {
            let bound = replica.fetch_bound()?;
            let offsets = Offsets::of(log, replica);
            if from < offsets.log_start || from > offsets.log_end {
                return Err(PartitionError::OffsetOutOfRange { offsets });
            }
            let located = log.locate(from, bytes_max, bound)?;
            Ok(Located { ranges: located.ranges, bytes: located.bytes, offsets })
        })
    }

    /// Reads whole batches from the one containing `from`, at most `bytes_max` (at least one
    /// batch), up to the high watermark, into memory, verifying each (CRC, offsets, epochs).
    ///
    /// # Errors
    /// As [`Partition::locate`]; a batch failing verification takes the partition offline.
    pub fn read(&self, from: Offset, bytes_max: u32) -> Result<Fetched, PartitionError> {
        self.with_log(|log, replica| {
            let bound = replica.fetch_bound()?;
            let offsets = Offsets::of(log, replica);
            if from < offsets.log_start || from > offsets.log_end {
                return Err(PartitionError::OffsetOutOfRange { offsets });
            }
            let mut buffer = Vec::new();
            log.read(from, bytes_max, bound, &mut buffer)?;
            Ok(Fetched { records: Bytes::from(buffer), offsets })
        })
    }

    /// The largest record timestamp in the partition (Kafka's max-timestamp offset spec).
    #[must_use]
    pub fn max_timestamp(&self) -> Option<i64> {
        self.group.as_ref().and_then(|group| group.log().with_log(Log::max_timestamp))
    }

    /// The first committed batch holding a record with timestamp `>= timestamp`: its base
    /// offset and bytes.
    ///
    /// # Errors
    /// [`PartitionError::Storage`]; [`PartitionError::Refused`] if not the leader.
    pub fn batch_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(Offset, Bytes)>, PartitionError> {
        let found = self.with_log(|log, replica| {
            let bound = replica.fetch_bound()?;
            let found = log.offset_for_timestamp(timestamp)?;
            Ok(found.filter(|offset| *offset < bound))
        })?;
        let Some(offset) = found else { return Ok(None) };
        let fetched = self.read(offset, 1)?;
        Ok(Some((offset, fetched.records)))
    }

    /// Deletes the segments past retention, never beyond the high watermark (the replica's
    /// retention bound): the group's snapshot is built at the last entry of the newest of them,
    /// and the log purged through it (RFC 0003 §3). Returns how many segments went.
    ///
    /// # Errors
    /// [`PartitionError::Failed`] if the group stopped; [`PartitionError::Timeout`] if the
    /// snapshot or the purge did not finish in time (the next sweep tries again).
    pub async fn apply_retention(&self) -> Result<usize, PartitionError> {
        if self.offline().is_some() || self.tracker.closing.load(Ordering::Acquire) {
            return Ok(0); // Logged once when it went offline; nothing to delete from.
        }
        let Some(group) = &self.group else { return Ok(0) };
        let retention = self.settings().retention;
        let Some(bound) = lock(&self.tracker.replica).retention_bound() else { return Ok(0) };
        let (point, before) = group
            .log()
            .with_log(|log| (log.retention_point(retention, bound), log.segment_count()));
        let Some(point) = point else { return Ok(0) };
        let purged = group
            .purge_through(point, RETENTION_WAIT)
            .await
            .map_err(|error| PartitionError::Failed(error.to_string()))?;
        let (start, after) = group.log().with_log(|log| (log.start_offset(), log.segment_count()));
        let moved = lock(&self.tracker.replica).on_purged(start);
        if let Err(violation) = moved {
            self.tracker.go_offline(format!("replica invariant broken: {violation}"));
            return Err(PartitionError::Violated(violation));
        }
        if !purged {
            return Err(PartitionError::Timeout);
        }
        Ok(before.saturating_sub(after))
    }

    /// Stops the group, then flushes and closes the log cleanly (the next open walks nothing).
    /// Proposals still waiting are answered `Closed`.
    ///
    /// # Errors
    /// [`PartitionError::Failed`] if the final flush or sync fails.
    pub async fn close(&self) -> Result<(), PartitionError> {
        self.tracker.closing.store(true, Ordering::Release);
        let Some(group) = &self.group else { return Ok(()) };
        group.shutdown().await;
        lock(&self.tracker.appends).clear();
        let log = group.log().clone();
        let closed = tokio::task::spawn_blocking(move || log.close())
            .await
            .map_err(|error| PartitionError::Failed(format!("closing thread failed: {error}")))?;
        closed.map_err(|error| PartitionError::Failed(error.to_string()))
    }
}

/// A proposal's error as the partition answers it.
fn proposal_error(tracker: &Tracker, error: ProposeError) -> PartitionError {
    match error {
        ProposeError::NotLeader { leader } => {
            PartitionError::Refused(Refusal::NotLeader { hint: leader.map(NodeId) })
        }
        ProposeError::Stopped(_) if tracker.closing.load(Ordering::Acquire) => {
            PartitionError::Closed
        }
        ProposeError::Stopped(reason) => match tracker.offline.get() {
            Some(offline) => PartitionError::Failed(offline.clone()),
            None => PartitionError::Failed(reason),
        },
    }
}

/// Where a proposal's records are, from its append report: where it was written, or, for an
/// idempotent batch repeating one in the log, where the original is. A batch the leader's
/// append refused otherwise is its error (cairn-raft's store docs).
fn admitted(appended: &ProposalAppended) -> Result<(Offset, Offset), PartitionError> {
    match appended.verdict {
        Verdict::Append => Ok((appended.base_offset, appended.next_offset)),
        Verdict::Duplicate(original) => match original.offsets {
            Some((base, last)) => Ok((base, last.plus(1))),
            None => Err(PartitionError::Violated(Violation::DuplicateNotWritten)),
        },
        Verdict::OutOfOrder { expected } => Err(PartitionError::OutOfOrderSequence { expected }),
        Verdict::Fenced { current } => Err(PartitionError::ProducerFenced { current }),
    }
}

/// One batch handed to the group.
struct Part {
    ticket: u64,
    /// Its append report; `None` for `acks=0`.
    appended: Option<oneshot::Receiver<ProposalAppended>>,
    /// Its commit or refusal; `None` for `acks=0`.
    pending: Option<Pending>,
}

/// A produce request's batches handed to the group ([`Partition::propose`]).
pub struct Proposed {
    tracker: Arc<Tracker>,
    acks: Acks,
    parts: Vec<Part>,
    log_start_offset: Offset,
    log_append_time_ms: Option<i64>,
}

impl Proposed {
    /// Waits up to `timeout` for the answer `acks` asks for: every batch appended (`acks=1`),
    /// every batch committed (`acks=all`); `acks=0` returns at once with unknown offsets
    /// (`-1`). The answer names the first batch's base offset.
    ///
    /// # Errors
    /// [`PartitionError::Timeout`] (unknown outcome); [`PartitionError::Refused`] with
    /// `NotLeader` if the leader lost its term (unknown outcome too);
    /// [`PartitionError::Failed`] or [`PartitionError::Closed`] if the group stopped.
    pub async fn wait(mut self, timeout: Duration) -> Result<Appended, PartitionError> {
        if self.acks == Acks::None {
            return Ok(self.answer(Offset(u64::MAX), Offset(u64::MAX)));
        }
        match tokio::time::timeout(timeout, self.outcome()).await {
            Err(_) => Err(PartitionError::Timeout),
            Ok(outcome) => outcome,
        }
    }

    fn answer(&self, base_offset: Offset, next_offset: Offset) -> Appended {
        Appended {
            base_offset,
            next_offset,
            log_start_offset: self.log_start_offset,
            log_append_time_ms: self.log_append_time_ms,
        }
    }

    async fn outcome(&mut self) -> Result<Appended, PartitionError> {
        let (mut base, mut next) = (None, Offset(0));
        for index in 0..self.parts.len() {
            let appended = self.appended(index).await?;
            let records = admitted(&appended)?;
            if self.acks == Acks::All
                && let Some(pending) = self.parts[index].pending.take()
            {
                pending.committed().await.map_err(|e| proposal_error(&self.tracker, e))?;
                // The high watermark passes the entry before the producer hears of it (apply
                // may come later): a fetch after the acknowledgement reads the records.
                self.tracker.committed_through(appended.next_offset);
            }
            base.get_or_insert(records.0);
            next = records.1;
        }
        Ok(self.answer(base.unwrap_or(next), next))
    }

    /// Waits for part `index`'s append report, or its refusal.
    async fn appended(&mut self, index: usize) -> Result<ProposalAppended, PartitionError> {
        let part = &mut self.parts[index];
        let (Some(appended), Some(pending)) = (part.appended.as_mut(), part.pending.as_mut())
        else {
            return Err(PartitionError::Closed);
        };
        tokio::select! {
            report = appended => report.map_err(|_| match self.tracker.offline.get() {
                Some(reason) => PartitionError::Failed(reason.clone()),
                None => PartitionError::Closed,
            }),
            refused = pending.refused() => Err(proposal_error(&self.tracker, refused)),
        }
    }
}

impl Drop for Proposed {
    fn drop(&mut self) {
        // Waiters given up on (answered, timed out, the connection closed) leave no entry.
        let mut appends = lock(&self.tracker.appends);
        for part in &self.parts {
            appends.remove(&part.ticket);
        }
    }
}

/// Splits a validated record set into its batches, each checked whole (framing, magic, CRC)
/// and not in the form of Raft's own entries: the log store must never meet a batch it
/// refuses, which would stop the group.
fn split_batches(records: Vec<u8>) -> Result<Vec<Bytes>, PartitionError> {
    if records.is_empty() || records.len() > APPEND_BYTES_MAX {
        let bytes = records.len();
        return Err(cairn_storage::Error::AppendSize { bytes, limit: APPEND_BYTES_MAX }.into());
    }
    let records = Bytes::from(records);
    let mut batches = Vec::new();
    let mut at = 0;
    for batch in Batches::new(&records, BATCH_BYTES_MAX) {
        let batch =
            batch.map_err(|source| cairn_storage::Error::InvalidBatch { position: at, source })?;
        if cairn_raft::codec::is_reserved(batch.header()) {
            return Err(PartitionError::Reserved);
        }
        let length = batch.as_bytes().len();
        batches.push(records.slice(at..at + length));
        at += length;
    }
    Ok(batches)
}

/// Rejects a record set containing a batch over `max_message_bytes` (`MESSAGE_TOO_LARGE`) before
/// anything is written. Framing errors are left to the log's validation.
fn check_batch_sizes(records: &[u8], max_message_bytes: u32) -> Result<(), PartitionError> {
    match Frames::new(records, BATCH_BYTES_MAX)
        .find(|(_, header)| header.total_bytes() > max_message_bytes)
    {
        Some((_, header)) => Err(PartitionError::MessageTooLarge {
            bytes: header.total_bytes(),
            limit: max_message_bytes,
        }),
        None => Ok(()),
    }
}

/// Stamps every batch of a record set with `now_ms` as log-append time; returns it. A malformed
/// tail is left alone: the log's validation rejects the whole append.
fn stamp_log_append_time(records: &mut [u8], now_ms: i64) -> i64 {
    let batches: Vec<_> = Frames::new(records, BATCH_BYTES_MAX)
        .map(|(at, header)| at..at + header.total_bytes() as usize)
        .collect();
    for range in batches {
        cairn_types::batch::set_log_append_time(&mut records[range], now_ms);
    }
    now_ms
}
