//! [`GroupCoordinator`]: runs cairn-group's [`Shard`]s on the partitions of the offsets topic
//! this node leads (RFC 0006 §1–2).
//!
//! - The offsets topic (`__consumer_offsets`) is created on first use, through the core,
//!   compacted (RFC 0007): committed offsets never age out, and a new coordinator replays the
//!   live records and the uncleaned tail, not every commit ever made.
//! - A group's coordinator is the leader of partition `abs(java_hash(group)) % partitions`. A
//!   request for a group whose partition this node does not lead is `NOT_COORDINATOR`.
//! - When this node leads a partition in a new term, a shard task starts (within
//!   [`LOAD_CHECK_INTERVAL`], or at the first request): it waits for its term's first entry to
//!   commit, replays the committed log into a fresh [`Shard`], then serves. A request that
//!   comes meanwhile waits for the load, up to [`LOAD_ANSWER_WAIT`], then is answered
//!   `COORDINATOR_LOAD_IN_PROGRESS`.
//! - The task owns the shard: requests reach it as jobs on a bounded queue, one at a time,
//!   with the time; the [`Effects`] it returns are carried out in order. A write is proposed
//!   to the partition (`acks=all`) before the next job runs, so writes append in the order
//!   the shard made them; its outcome comes back as `written` or `write_failed`.
//! - The task ends when the replica stops leading that term: every waiting request is then
//!   answered `NOT_COORDINATOR` (its sender dropped), and the next leader loads from the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_group::records::{self, RecordKey, RecordValue, encode_key, encode_value};
use cairn_group::{
    CommitRequest, CommitResponse, ConsumerGroupDescription, Effects, ErrorCode, FetchedOffset,
    GroupDescription, GroupListing, HeartbeatRequest, HeartbeatResponse, JoinRequest, JoinResponse,
    MemberRef, Reply, Shard, ShardConfig, SyncRequest, SyncResponse, TopicInfo, Topics, Waiter,
    Write,
};
use cairn_meta::{MetadataStore, REPLICATION_FACTOR_DEFAULT, TopicName, TopicSpec};
use cairn_storage::RealDisk;
use cairn_types::LeaderEpoch;
use tokio::sync::{mpsc, oneshot, watch};

use crate::broker::Broker;
use crate::error::PartitionError;
use crate::partition::{Acks, Partition};
use crate::replica::Role;
use crate::volume::Volume;

/// The offsets topic's name, as Kafka's.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Segment size of the offsets topic (Kafka's `offsets.topic.segment.bytes`).
const OFFSETS_SEGMENT_BYTES: u64 = 100 * 1024 * 1024;

/// Jobs one shard task holds queued; a full queue answers `COORDINATOR_LOAD_IN_PROGRESS`
/// (retriable), never waits.
const JOBS_QUEUED_MAX: usize = 1024;

/// Jobs one round of a shard task runs before their writes are proposed together.
const JOBS_PER_ROUND_MAX: usize = 64;

/// Most bytes of records merged into one proposal (below the offsets topic's
/// `max.message.bytes`, [`OFFSETS_MESSAGE_BYTES`]); a larger write goes alone.
const MERGED_WRITE_BYTES_MAX: usize = 1024 * 1024;

/// `max.message.bytes` of the offsets topic: room for the largest group's state.
const OFFSETS_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Outcomes of one shard's writes queued for its task; a write's waiter blocks on a full
/// queue until the task, which drains it before taking new jobs, catches up.
const WRITE_OUTCOMES_QUEUED_MAX: usize = 1024;

/// Bytes of the log one read of a load takes.
const LOAD_READ_BYTES: u32 = 4 * 1024 * 1024;

/// How often [`GroupCoordinator::run`] looks for offsets-topic partitions this node newly
/// leads.
const LOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long a request waits for its shard to load before it is answered
/// `COORDINATOR_LOAD_IN_PROGRESS`: a load takes a term's first commit and a replay, and some
/// clients' admin calls do not retry that error.
const LOAD_ANSWER_WAIT: Duration = Duration::from_secs(10);

/// How long a load waits for its term's first entry to commit.
const LOAD_WAIT: Duration = Duration::from_secs(30);

/// The coordinator's settings.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// Partitions of the offsets topic when this node creates it
    /// (`offsets.topic.num.partitions`).
    pub offsets_partitions: u32,
    /// Its replication factor ([`REPLICATION_FACTOR_DEFAULT`]: min(3, live nodes)).
    pub offsets_replication_factor: u16,
    /// The groups' settings.
    pub shard: ShardConfig,
    /// Longest a write of the coordinator waits to commit.
    pub write_timeout: Duration,
}

impl Default for CoordinatorConfig {
    fn default() -> CoordinatorConfig {
        CoordinatorConfig {
            offsets_partitions: 50,
            offsets_replication_factor: REPLICATION_FACTOR_DEFAULT,
            shard: ShardConfig::default(),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// A unit of work on a shard: it gets the shard, a way to park answers, and the time.
type Job = Box<dyn FnOnce(&mut Active, i64) -> Effects + Send>;

/// The shard a task serves, and the requests waiting for answers from it.
pub struct Active {
    shard: Shard,
    waiters: HashMap<Waiter, oneshot::Sender<Reply>>,
    next_waiter: u64,
}

impl Active {
    /// Registers an answer channel; the shard answers it under the returned id.
    fn park(&mut self, answer: oneshot::Sender<Reply>) -> Waiter {
        self.next_waiter += 1;
        let waiter = Waiter(self.next_waiter);
        self.waiters.insert(waiter, answer);
        waiter
    }
}

/// A running shard task of one partition, for one term.
#[derive(Clone)]
struct ShardHandle {
    epoch: LeaderEpoch,
    jobs: mpsc::Sender<Job>,
    /// Turns true once the shard is loaded; closed when the task ends.
    loaded: watch::Receiver<bool>,
}

/// The group coordinator of a node.
pub struct GroupCoordinator<M, D: Volume = RealDisk> {
    broker: Arc<Broker<M, D>>,
    config: CoordinatorConfig,
    shards: Mutex<HashMap<u32, ShardHandle>>,
    /// Set while this node creates the offsets topic.
    creating: AtomicBool,
    /// Seeds of the shards' member-id generators.
    seeds: AtomicU64,
}

impl<M: MetadataStore, D: Volume> GroupCoordinator<M, D> {
    /// A coordinator over `broker`'s partitions.
    #[must_use]
    pub fn new(broker: Arc<Broker<M, D>>, config: CoordinatorConfig) -> Arc<Self> {
        let seed = broker.clock().now_ms().cast_unsigned() ^ 0x5bd1_e995_cafe_f00d;
        Arc::new(GroupCoordinator {
            broker,
            config,
            shards: Mutex::new(HashMap::new()),
            creating: AtomicBool::new(false),
            seeds: AtomicU64::new(seed),
        })
    }

    /// The groups' settings.
    #[must_use]
    pub fn shard_config(&self) -> &ShardConfig {
        &self.config.shard
    }

    /// The offsets-topic partition that coordinates `group`, starting the topic's creation if
    /// it does not exist (`None` then: COORDINATOR_NOT_AVAILABLE until it does).
    pub fn partition_for(self: &Arc<Self>, group: &str) -> Option<u32> {
        match self.broker.meta().topic(OFFSETS_TOPIC) {
            Some(topic) => Some(partition_for(group, topic.partitions)),
            None => {
                self.create_offsets_topic();
                None
            }
        }
    }

    fn create_offsets_topic(self: &Arc<Self>) {
        if self.creating.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let spec = TopicSpec {
                name: TopicName::new(OFFSETS_TOPIC).expect("a valid name"),
                partitions: this.config.offsets_partitions,
                replication_factor: this.config.offsets_replication_factor,
                configs: vec![
                    ("cleanup.policy".into(), "compact".into()),
                    ("segment.bytes".into(), OFFSETS_SEGMENT_BYTES.to_string()),
                    ("max.message.bytes".into(), OFFSETS_MESSAGE_BYTES.to_string()),
                ],
                assignments: None,
            };
            match this.broker.create_topic(spec).await {
                Ok(_) => tracing::info!(
                    partitions = this.config.offsets_partitions,
                    "created the offsets topic {OFFSETS_TOPIC}"
                ),
                Err(error) if this.broker.meta().topic(OFFSETS_TOPIC).is_some() => {
                    tracing::debug!(%error, "the offsets topic was created meanwhile");
                }
                Err(error) => {
                    tracing::warn!(%error, "creating the offsets topic failed; the next group request retries")
                }
            }
            this.creating.store(false, Ordering::Release);
        });
    }

    /// Starts loading every offsets-topic partition this node leads, as soon as it leads it,
    /// until `shutdown` turns true: a new coordinator loads before its groups' members ask.
    /// Leadership is looked at every [`LOAD_CHECK_INTERVAL`]; a request that comes first
    /// starts the load itself.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Some(topic) = self.broker.meta().topic(OFFSETS_TOPIC) {
                for index in 0..topic.partitions {
                    // The answer only says whether the shard serves yet.
                    let _ = self.shard_of(index);
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                () = tokio::time::sleep(LOAD_CHECK_INTERVAL) => {}
            }
        }
    }

    /// The shard task of `group`'s partition, or the error to answer. While the partition's
    /// group elects (a new offsets topic, a failover), waits up to [`LOAD_ANSWER_WAIT`] for
    /// the outcome rather than answer `NOT_COORDINATOR` to a request that reached the right
    /// node early.
    async fn route(self: &Arc<Self>, group: &str) -> Result<ShardHandle, ErrorCode> {
        let index = self.partition_for(group).ok_or(ErrorCode::CoordinatorNotAvailable)?;
        match self.shard_of(index) {
            Err(ErrorCode::NotCoordinator) => {
                let electing =
                    self.broker.partition(OFFSETS_TOPIC, index).filter(|p| p.leader().is_none());
                match electing {
                    Some(partition) if partition.wait_leader(LOAD_ANSWER_WAIT).await => {
                        self.shard_of(index)
                    }
                    _ => Err(ErrorCode::NotCoordinator),
                }
            }
            routed => routed,
        }
    }

    /// The shard task of partition `index` (loaded or loading), starting it if this node
    /// leads the partition in a term without one.
    fn shard_of(self: &Arc<Self>, index: u32) -> Result<ShardHandle, ErrorCode> {
        let partition =
            self.broker.partition(OFFSETS_TOPIC, index).ok_or(ErrorCode::NotCoordinator)?;
        let replica = partition.replica();
        if replica.role() != &Role::Leader || partition.offline().is_some() {
            return Err(ErrorCode::NotCoordinator);
        }
        let epoch = replica.epoch();
        let mut shards = self.shards.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(handle) = shards.get(&index)
            && handle.epoch == epoch
            && !handle.jobs.is_closed()
        {
            return Ok(handle.clone());
        }
        let (jobs, queue) = mpsc::channel(JOBS_QUEUED_MAX);
        let (loaded, loaded_rx) = watch::channel(false);
        let handle = ShardHandle { epoch, jobs, loaded: loaded_rx };
        shards.insert(index, handle.clone());
        let task = ShardTask {
            partition,
            epoch,
            config: self.config.clone(),
            seed: self.seeds.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed),
            clock: Arc::clone(self.broker.clock()),
        };
        tokio::spawn(task.run(queue, loaded));
        Ok(handle)
    }

    /// Queues `job` on the shard `routed` names, once it is loaded (waiting up to
    /// [`LOAD_ANSWER_WAIT`] for that); `Err` if there is none here (not the coordinator),
    /// it is still loading, or its queue is full.
    async fn submit(routed: Result<ShardHandle, ErrorCode>, job: Job) -> Result<(), ErrorCode> {
        let mut handle = routed?;
        let loaded = handle.loaded.wait_for(|loaded| *loaded);
        match tokio::time::timeout(LOAD_ANSWER_WAIT, loaded).await {
            Err(_) => return Err(ErrorCode::CoordinatorLoadInProgress),
            Ok(Err(_)) => return Err(ErrorCode::NotCoordinator),
            Ok(Ok(_)) => {}
        }
        handle.jobs.try_send(job).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => ErrorCode::CoordinatorLoadInProgress,
            mpsc::error::TrySendError::Closed(_) => ErrorCode::NotCoordinator,
        })
    }

    /// Runs a job whose answer is parked in the shard; a dropped answer (the task ended) is
    /// `NOT_COORDINATOR`.
    async fn parked(
        routed: Result<ShardHandle, ErrorCode>,
        call: impl FnOnce(&mut Shard, Waiter, i64) -> Effects + Send + 'static,
    ) -> Result<Reply, ErrorCode> {
        let (answer, reply) = oneshot::channel();
        let job: Job = Box::new(move |active, now| {
            let waiter = active.park(answer);
            call(&mut active.shard, waiter, now)
        });
        Self::submit(routed, job).await?;
        reply.await.map_err(|_| ErrorCode::NotCoordinator)
    }

    /// Runs a job that answers at once.
    async fn direct<T: Send + 'static>(
        routed: Result<ShardHandle, ErrorCode>,
        call: impl FnOnce(&mut Shard, i64) -> (T, Effects) + Send + 'static,
    ) -> Result<T, ErrorCode> {
        let (answer, reply) = oneshot::channel();
        let job: Job = Box::new(move |active, now| {
            let (value, effects) = call(&mut active.shard, now);
            let _ = answer.send(value);
            effects
        });
        Self::submit(routed, job).await?;
        reply.await.map_err(|_| ErrorCode::NotCoordinator)
    }

    /// JoinGroup.
    pub async fn join(self: &Arc<Self>, request: JoinRequest) -> JoinResponse {
        let member = request.member_id.clone();
        let group = request.group_id.clone();
        match Self::parked(self.route(&group).await, move |shard, w, now| {
            shard.join(w, request, now)
        })
        .await
        {
            Ok(Reply::Join(answer)) => answer,
            Ok(_) => JoinResponse::error(ErrorCode::NotCoordinator, &member),
            Err(error) => JoinResponse::error(error, &member),
        }
    }

    /// SyncGroup.
    pub async fn sync(self: &Arc<Self>, request: SyncRequest) -> SyncResponse {
        let group = request.group_id.clone();
        match Self::parked(self.route(&group).await, move |shard, w, now| {
            shard.sync(w, request, now)
        })
        .await
        {
            Ok(Reply::Sync(answer)) => answer,
            Ok(_) => SyncResponse::error(ErrorCode::NotCoordinator),
            Err(error) => SyncResponse::error(error),
        }
    }

    /// Heartbeat.
    pub async fn heartbeat(
        self: &Arc<Self>,
        group: String,
        member: MemberRef,
        generation: i32,
    ) -> ErrorCode {
        let id = group.clone();
        let beat = move |shard: &mut Shard, now| {
            (shard.heartbeat(&id, &member, generation, now), Effects::default())
        };
        Self::direct(self.route(&group).await, beat).await.unwrap_or_else(|error| error)
    }

    /// LeaveGroup: one error per member, or the error of the whole request.
    pub async fn leave(
        self: &Arc<Self>,
        group: String,
        members: Vec<MemberRef>,
    ) -> Result<Vec<ErrorCode>, ErrorCode> {
        let id = group.clone();
        Self::direct(self.route(&group).await, move |shard, now| shard.leave(&id, &members, now))
            .await
    }

    /// OffsetCommit: one error per partition, in request order.
    pub async fn commit(self: &Arc<Self>, request: CommitRequest) -> CommitResponse {
        let group = request.group_id.clone();
        let keys: Vec<(String, i32)> =
            request.offsets.iter().map(|o| (o.topic.clone(), o.partition)).collect();
        let refused = |error| CommitResponse {
            partitions: keys.into_iter().map(|(t, p)| (t, p, error)).collect(),
        };
        match Self::parked(self.route(&group).await, move |shard, w, now| {
            shard.commit(w, request, now)
        })
        .await
        {
            Ok(Reply::Commit(answer)) => answer,
            Ok(_) => refused(ErrorCode::NotCoordinator),
            Err(error) => refused(error),
        }
    }

    /// OffsetFetch: the committed offsets of `partitions` (all when `None`); `member`, a
    /// consumer-protocol member's id and epoch (v9), is checked first.
    pub async fn offsets(
        self: &Arc<Self>,
        group: String,
        member: Option<(String, i32)>,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<(String, i32, FetchedOffset)>, ErrorCode> {
        let id = group.clone();
        let fetch = move |shard: &mut Shard, _| {
            let checked =
                member.map_or(ErrorCode::None, |(m, epoch)| shard.check_fetch(&id, &m, epoch));
            let answer = match checked {
                ErrorCode::None => Ok(shard.offsets(&id, partitions.as_deref())),
                error => Err(error),
            };
            (answer, Effects::default())
        };
        Self::direct(self.route(&group).await, fetch).await?
    }

    /// ConsumerGroupHeartbeat of request `version` (RFC 0008).
    pub async fn consumer_heartbeat(
        self: &Arc<Self>,
        request: HeartbeatRequest,
        version: i16,
    ) -> HeartbeatResponse {
        let group = request.group_id.clone();
        let broker = Arc::clone(&self.broker);
        let call = move |shard: &mut Shard, w, now| {
            shard.consumer_heartbeat(w, request, version, &Catalog(broker.meta()), now)
        };
        match Self::parked(self.route(&group).await, call).await {
            Ok(Reply::Heartbeat(answer)) => answer,
            Ok(_) => HeartbeatResponse::error(ErrorCode::NotCoordinator, "not the coordinator"),
            Err(error) => HeartbeatResponse::error(error, "not the coordinator"),
        }
    }

    /// ConsumerGroupDescribe of one group.
    pub async fn describe_consumer(
        self: &Arc<Self>,
        group: String,
    ) -> Result<ConsumerGroupDescription, ErrorCode> {
        let id = group.clone();
        let call = move |shard: &mut Shard, _| (shard.describe_consumer(&id), Effects::default());
        Self::direct(self.route(&group).await, call).await?
    }

    /// DescribeGroups of one group; `Ok(None)`: no such group.
    pub async fn describe(
        self: &Arc<Self>,
        group: String,
    ) -> Result<Option<GroupDescription>, ErrorCode> {
        let id = group.clone();
        Self::direct(self.route(&group).await, move |shard, _| {
            (shard.describe(&id), Effects::default())
        })
        .await
    }

    /// DeleteGroups of one group.
    pub async fn delete_group(self: &Arc<Self>, group: String) -> ErrorCode {
        let id = group.clone();
        match Self::parked(self.route(&group).await, move |shard, w, _| shard.delete_group(w, &id))
            .await
        {
            Ok(Reply::Deleted(error)) => error,
            Ok(_) => ErrorCode::NotCoordinator,
            Err(error) => error,
        }
    }

    /// OffsetDelete: per-partition errors, or the group's error.
    pub async fn delete_offsets(
        self: &Arc<Self>,
        group: String,
        partitions: Vec<(String, i32)>,
    ) -> Result<CommitResponse, ErrorCode> {
        let id = group.clone();
        let call = move |shard: &mut Shard, w, _| shard.delete_offsets(w, &id, &partitions);
        match Self::parked(self.route(&group).await, call).await? {
            Reply::Commit(answer) => Ok(answer),
            Reply::Deleted(error) => Err(error),
            _ => Err(ErrorCode::NotCoordinator),
        }
    }

    /// ListGroups: the groups of every shard this node serves, and the first error of a
    /// partition it leads but cannot list yet (loading).
    pub async fn list(self: &Arc<Self>) -> (Vec<GroupListing>, ErrorCode) {
        self.from_every_shard(Shard::list).await
    }

    /// Every committed offset of the groups this node coordinates now, as (group, topic,
    /// partition, offset): the lag metrics.
    pub async fn committed(self: &Arc<Self>) -> Vec<(String, String, i32, i64)> {
        self.from_every_shard(Shard::committed).await.0
    }

    /// `read` of every shard this node serves, concatenated, and the first error of a
    /// partition it leads but cannot read yet (loading).
    async fn from_every_shard<T: Send + 'static>(
        self: &Arc<Self>,
        read: fn(&Shard) -> Vec<T>,
    ) -> (Vec<T>, ErrorCode) {
        let Some(topic) = self.broker.meta().topic(OFFSETS_TOPIC) else {
            return (Vec::new(), ErrorCode::None);
        };
        let mut all = Vec::new();
        let mut error = ErrorCode::None;
        for index in 0..topic.partitions {
            let call = move |shard: &mut Shard, _| (read(shard), Effects::default());
            match Self::direct(self.shard_of(index), call).await {
                Ok(read) => all.extend(read),
                Err(ErrorCode::NotCoordinator) => {}
                Err(first) if error == ErrorCode::None => error = first,
                Err(_) => {}
            }
        }
        (all, error)
    }
}

/// The cluster's topics as a consumer-protocol group looks them up; the offsets topic is
/// internal, matched by no subscription's expression.
struct Catalog<'a, M>(&'a M);

impl<M: MetadataStore> Topics for Catalog<'_, M> {
    fn get(&self, name: &str) -> Option<TopicInfo> {
        let topic = self.0.topic(name)?;
        Some(TopicInfo { id: *topic.id.as_bytes(), partitions: topic.partitions })
    }

    fn names(&self) -> Vec<String> {
        let topics = self.0.topics().into_iter().map(|t| t.name.as_str().to_owned());
        topics.filter(|name| name != OFFSETS_TOPIC).collect()
    }
}

/// Kafka's coordinator partition of a group: `abs(groupId.hashCode()) % partitions`, with
/// Java's `String.hashCode` over UTF-16 code units and `Utils.abs` (`i32::MIN` maps to 0).
#[must_use]
pub fn partition_for(group: &str, partitions: u32) -> u32 {
    let hash =
        group.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive.cast_unsigned() % partitions.max(1)
}

/// The task that serves one partition's shard for one term.
struct ShardTask<D: Volume> {
    partition: Arc<Partition<D>>,
    epoch: LeaderEpoch,
    config: CoordinatorConfig,
    seed: u64,
    clock: Arc<dyn cairn_storage::Clock>,
}

/// The outcome of writes proposed together, reported back to the task.
type WriteOutcome = (Vec<u64>, Result<(), ErrorCode>);

impl<D: Volume> ShardTask<D> {
    async fn run(self, mut jobs: mpsc::Receiver<Job>, loaded: watch::Sender<bool>) {
        let topic = OFFSETS_TOPIC;
        let index = self.partition.index();
        let Some(mut roles) = self.partition.roles() else { return };
        let Some(shard) = self.load().await else {
            tracing::debug!(
                topic,
                partition = index,
                epoch = self.epoch.0,
                "group coordinator not loaded: the replica no longer leads this term"
            );
            return;
        };
        tracing::debug!(topic, partition = index, epoch = self.epoch.0, "group coordinator loaded");
        loaded.send_replace(true);
        let mut active = Active { shard, waiters: HashMap::new(), next_waiter: 0 };
        let (outcomes, mut written) = mpsc::channel::<WriteOutcome>(WRITE_OUTCOMES_QUEUED_MAX);
        loop {
            let deadline = active.shard.next_deadline();
            let sleep = self.sleep_until(deadline);
            let effects = tokio::select! {
                biased;
                changed = roles.changed() => {
                    if changed.is_none() || !self.still_leads() { break }
                    continue;
                }
                Some((ids, outcome)) = written.recv() => {
                    outcome_of(&mut active.shard, &ids, outcome, self.clock.now_ms())
                }
                job = jobs.recv() => match job {
                    Some(job) => Self::round(&mut active, job, &mut jobs, self.clock.now_ms()),
                    None => break,
                },
                () = sleep => active.shard.tick(self.clock.now_ms()),
            };
            self.carry_out(&mut active, effects, &outcomes).await;
            if active.shard.stale() {
                // A write's outcome is unknown and memory may be ahead of the log: the next
                // request loads the shard again (waiters hear NOT_COORDINATOR and retry), once
                // that outcome is known.
                tracing::warn!(
                    topic,
                    partition = index,
                    "group coordinator reloads after a failed write"
                );
                self.await_outcomes(&mut roles).await;
                break;
            }
        }
        tracing::debug!(
            topic,
            partition = index,
            epoch = self.epoch.0,
            "group coordinator stopped: the replica no longer leads this term"
        );
    }

    /// Runs `first` and the jobs queued behind it (at most [`JOBS_PER_ROUND_MAX`]), so that
    /// their writes go to the log together: under load, one Raft entry carries many commits.
    fn round(
        active: &mut Active,
        first: Job,
        queued: &mut mpsc::Receiver<Job>,
        now: i64,
    ) -> Effects {
        let mut effects = first(active, now);
        for _ in 1..JOBS_PER_ROUND_MAX {
            let Ok(job) = queued.try_recv() else { break };
            effects.extend(job(active, now));
        }
        effects
    }

    /// Waits until every entry appended so far committed, or this term ended: a failed write's
    /// outcome is then known, so a load sees it (loaded sooner, a write that commits later would
    /// leave the new shard behind the log).
    async fn await_outcomes(&self, roles: &mut cairn_raft::RoleWatch) {
        let end = self.partition.offsets().log_end;
        while self.still_leads() {
            tokio::select! {
                changed = roles.changed() => if changed.is_none() { return },
                committed = self.partition.wait_committed(end, LOAD_WAIT) => {
                    if !matches!(committed, Err(PartitionError::Timeout)) { return }
                }
            }
        }
    }

    fn still_leads(&self) -> bool {
        let replica = self.partition.replica();
        replica.role() == &Role::Leader && replica.epoch() == self.epoch
    }

    async fn sleep_until(&self, deadline: Option<i64>) {
        match deadline {
            None => std::future::pending().await,
            Some(at) => {
                let wait = at.saturating_sub(self.clock.now_ms()).max(0);
                tokio::time::sleep(Duration::from_millis(wait.cast_unsigned())).await;
            }
        }
    }

    /// Answers the replies and proposes the writes, in order; writes refused at once are
    /// reported to the shard here, and what that answers is carried out too.
    async fn carry_out(
        &self,
        active: &mut Active,
        effects: Effects,
        outcomes: &mpsc::Sender<WriteOutcome>,
    ) {
        let mut effects = effects;
        loop {
            for (waiter, reply) in effects.replies {
                if let Some(answer) = active.waiters.remove(&waiter) {
                    let _ = answer.send(reply);
                }
            }
            let mut refused = Effects::default();
            for together in merged(effects.writes) {
                if let Err(ids) = self.propose(together, outcomes).await {
                    let failed = Err(ErrorCode::NotCoordinator);
                    refused.extend(outcome_of(
                        &mut active.shard,
                        &ids,
                        failed,
                        self.clock.now_ms(),
                    ));
                }
            }
            if refused.replies.is_empty() && refused.writes.is_empty() {
                return;
            }
            effects = refused;
        }
    }

    /// Proposes `writes` as one batch, in order; their commit (or failure) is reported on
    /// `outcomes`, for all of them at once. `Err` with their ids if the partition refused
    /// the proposal.
    async fn propose(
        &self,
        writes: Vec<Write>,
        outcomes: &mpsc::Sender<WriteOutcome>,
    ) -> Result<(), Vec<u64>> {
        let ids: Vec<u64> = writes.iter().map(|w| w.id).collect();
        let all = writes.iter().flat_map(|w| &w.records);
        let batch = records::batch(all, self.clock.now_ms());
        let proposed = self.partition.propose(batch, Acks::All).await.map_err(|error| {
            tracing::debug!(%error, "a group coordinator write was refused");
            ids.clone()
        })?;
        let outcomes = outcomes.clone();
        let timeout = self.config.write_timeout;
        tokio::spawn(async move {
            let outcome = proposed.wait(timeout).await.map(|_| ()).map_err(|error| {
                tracing::debug!(%error, "a group coordinator write did not commit");
                ErrorCode::NotCoordinator
            });
            // Waits while the queue is full: the task drains it before it takes new jobs.
            let _ = outcomes.send((ids, outcome)).await;
        });
        Ok(())
    }

    /// Replays the committed log into a fresh shard once this term's first entry committed;
    /// `None` if the replica stopped leading the term meanwhile, or the log cannot be read.
    async fn load(&self) -> Option<Shard> {
        if !self.partition.wait_leader(LOAD_WAIT).await || !self.still_leads() {
            return None;
        }
        let offsets = self.partition.offsets();
        let mut shard = Shard::new(self.config.shard.clone(), self.seed);
        let now = self.clock.now_ms();
        let mut from = offsets.log_start;
        while from < offsets.high_watermark {
            let fetched = match self.partition.read(from, LOAD_READ_BYTES) {
                Ok(fetched) => fetched,
                Err(error) => {
                    tracing::error!(%error, partition = self.partition.index(), "loading the group coordinator failed");
                    return None;
                }
            };
            let replayed = shard.replay_batches(&fetched.records, now);
            for (offset, error) in &replayed.skipped {
                tracing::warn!(%error, offset, "skipping a record of the offsets topic");
            }
            let next = replayed.next_offset;
            if next <= from.0 {
                break;
            }
            from = cairn_types::Offset(next);
            tokio::task::yield_now().await;
        }
        Some(shard)
    }
}

/// Reports writes `ids`' common outcome to `shard`.
fn outcome_of(shard: &mut Shard, ids: &[u64], outcome: Result<(), ErrorCode>, now: i64) -> Effects {
    let mut effects = Effects::default();
    for &id in ids {
        effects.extend(match outcome {
            Ok(()) => shard.written(id, now),
            Err(error) => shard.write_failed(id, error, now),
        });
    }
    effects
}

/// `writes` in order, in groups to propose together: each at most
/// [`MERGED_WRITE_BYTES_MAX`] of records, or one larger write alone.
fn merged(writes: Vec<Write>) -> Vec<Vec<Write>> {
    let mut groups: Vec<Vec<Write>> = Vec::new();
    let mut bytes = 0;
    for write in writes {
        let size = size_of(&write);
        match groups.last_mut() {
            Some(group) if bytes + size <= MERGED_WRITE_BYTES_MAX => group.push(write),
            _ => {
                bytes = 0;
                groups.push(vec![write]);
            }
        }
        bytes += size;
    }
    groups
}

/// About how many bytes `write`'s records take in a batch.
fn size_of(write: &Write) -> usize {
    write.records.iter().map(|(key, value)| record_size(key, value.as_ref())).sum()
}

fn record_size(key: &RecordKey, value: Option<&RecordValue>) -> usize {
    let members = match value {
        Some(RecordValue::Group(group)) => group
            .members
            .iter()
            .map(|m| m.member_id.len() + m.subscription.len() + m.assignment.len() + 64)
            .sum(),
        Some(RecordValue::Offset(offset)) => offset.metadata.len() + 32,
        Some(
            value @ (RecordValue::ConsumerGroupMetadata(_)
            | RecordValue::PartitionMetadata(_)
            | RecordValue::MemberMetadata(_)
            | RecordValue::TargetAssignmentMetadata(_)
            | RecordValue::TargetAssignmentMember(_)
            | RecordValue::CurrentMemberAssignment(_)),
        ) => encode_value(value).len(),
        None => 0,
    };
    let key = match key {
        RecordKey::Offset { group, topic, .. } => group.len() + topic.len() + 16,
        RecordKey::Group { group } => group.len() + 8,
        RecordKey::ConsumerGroupMetadata { .. }
        | RecordKey::PartitionMetadata { .. }
        | RecordKey::MemberMetadata { .. }
        | RecordKey::TargetAssignmentMetadata { .. }
        | RecordKey::TargetAssignmentMember { .. }
        | RecordKey::CurrentMemberAssignment { .. } => encode_key(key).len(),
    };
    key + members + 32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_match_kafkas_hash() {
        // Java: "my-group".hashCode() = -1906497762, abs % 50 = 12.
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(partition_for("", 50), 0);
        // A name whose hash is negative is taken by its absolute value.
        assert_eq!(partition_for("polygenelubricants", 50), 0, "hashCode is i32::MIN");
    }
}
