//! The group coordinator of the simulation (RFC 0006 §2, RFC 0008): on each host, a loop over
//! its replica of the offsets group (`Setup::offsets`, a partition of `__consumer_offsets`)
//! that does what cairn-broker's `coordinator.rs` does, over cairn-raft directly:
//!
//! - When the replica leads in a term and the term's first entry committed (the applied
//!   entry is of the term), it replays the committed log into a fresh cairn-group [`Shard`]
//!   (`Shard::replay_batches`, records not the coordinator's skipped) and serves it.
//! - It takes jobs one at a time, with the time; the [`Effects`] a job returns are carried
//!   out in order: its answers sent, its writes proposed as one batch (`records::batch`) with
//!   `acks=all` before the next job, their outcome reported back (`written`, `write_failed`
//!   after [`WRITE_TIMEOUT`] or a refusal), and so are the shard's deadlines (`tick`).
//! - It drops the shard when the replica stops leading that term (waiting requests then go
//!   unanswered: their senders are dropped), and loads it again in the same term after a write
//!   failed (`stale`: memory may be ahead of the log), once every entry its replica's log held
//!   then is applied: the failed write is then in the log or gone (`load`). cairn-broker's
//!   shard task does not wait for that yet.
//!
//! Members reach the coordinator of the offsets group's leader in-process, as the client
//! proposes ([`call`] for requests the shard may park, [`read`] for reads); no leader, a
//! coordinator still loading, a full queue or a coordinator gone are errors they retry.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use cairn_group::records;
use cairn_group::{Effects, ErrorCode, Reply, Shard, ShardConfig, TopicInfo, Waiter};
use cairn_raft::{GroupState, Proposal, RoleWatch};
use cairn_storage::Clock;
use cairn_types::{Offset, RaftIndex};
use tokio::sync::{mpsc, oneshot, watch};

use crate::check;
use crate::host::SimClock;
use crate::world::{Applied, Group, Serving, World};

/// The consumer group the members form.
pub const GROUP: &str = "sim-group";

/// The one topic the members subscribe to, its id and its partitions.
pub const TOPIC: &str = "events";
/// The id of [`TOPIC`].
pub const TOPIC_ID: [u8; 16] = *b"cairn-sim-events";
/// Partitions of [`TOPIC`].
pub const PARTITIONS: u32 = 6;

/// `group.consumer.session.timeout.ms`: short, so that members unable to reach a coordinator
/// through a failover are fenced within the run.
pub const SESSION_TIMEOUT_MS: i32 = 3_000;

/// `group.consumer.heartbeat.interval.ms`, as the coordinator tells members.
const HEARTBEAT_INTERVAL_MS: i32 = 300;

/// Jobs a coordinator holds queued; a full queue refuses more (the member retries).
const JOBS_QUEUED_MAX: usize = 64;

/// Outcomes of writes queued for the coordinator's loop.
const OUTCOMES_QUEUED_MAX: usize = 64;

/// How long a write waits to commit before it counts as failed (its outcome unknown), as
/// cairn-broker's `CoordinatorConfig::write_timeout`; shorter, so that runs reach it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a member waits for an answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes of the log one read of a load takes.
const LOAD_READ_BYTES: u32 = 1 << 20;

/// The shards' settings: the broker's defaults with a short session.
#[must_use]
pub fn shard_config() -> ShardConfig {
    ShardConfig {
        consumer_session_timeout_ms: SESSION_TIMEOUT_MS,
        consumer_heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
        ..ShardConfig::default()
    }
}

/// The cluster's topics as the coordinator sees them: [`TOPIC`] only.
#[must_use]
pub fn topics(name: &str) -> Option<TopicInfo> {
    (name == TOPIC).then_some(TopicInfo { id: TOPIC_ID, partitions: PARTITIONS })
}

/// A unit of work on a shard: it gets the shard, a way to park answers, and the time.
pub type Job = Box<dyn FnOnce(&mut Active, i64) -> Effects + Send>;

/// The shard a coordinator serves, and the requests waiting for answers from it.
pub struct Active {
    shard: Shard,
    waiters: BTreeMap<Waiter, oneshot::Sender<Reply>>,
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

/// Why a member's request got no answer from a coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// The offsets group has no leader (COORDINATOR_NOT_AVAILABLE).
    NoLeader,
    /// Its leader's coordinator has not loaded the term (COORDINATOR_LOAD_IN_PROGRESS), or
    /// its queue is full.
    NotLoaded,
    /// The coordinator stopped before it answered (NOT_COORDINATOR).
    Gone,
    /// No answer within [`CALL_TIMEOUT`].
    TimedOut,
}

/// The queue of the coordinator that the offsets group `group`'s leader serves.
fn route(world: &World, group: u64) -> Result<mpsc::Sender<Job>, Unanswered> {
    let state = world.lock();
    let (node, raft) = state.leader_of(group).ok_or(Unanswered::NoLeader)?;
    let term = raft.roles().current().term;
    let serving = state.coordination.coordinators.get(&node);
    let serving = serving.filter(|s| s.term == term && !s.jobs.is_closed());
    serving.map(|s| s.jobs.clone()).ok_or(Unanswered::NotLoaded)
}

/// Queues `job` on the coordinator of `group`'s leader.
fn submit(world: &World, group: u64, job: Job) -> Result<(), Unanswered> {
    route(world, group)?.try_send(job).map_err(|error| match error {
        mpsc::error::TrySendError::Full(_) => Unanswered::NotLoaded,
        mpsc::error::TrySendError::Closed(_) => Unanswered::Gone,
    })
}

/// Runs `call` on the shard of `group`'s coordinator (the answer parked under a waiter) and
/// waits for the answer.
///
/// # Errors
/// [`Unanswered`] when no coordinator answered.
pub async fn call(
    world: &World,
    group: u64,
    call: impl FnOnce(&mut Shard, Waiter, i64) -> Effects + Send + 'static,
) -> Result<Reply, Unanswered> {
    let (answer, answered) = oneshot::channel();
    let job: Job = Box::new(move |active, now| {
        let waiter = active.park(answer);
        call(&mut active.shard, waiter, now)
    });
    submit(world, group, job)?;
    match tokio::time::timeout(CALL_TIMEOUT, answered).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(_)) => Err(Unanswered::Gone),
        Err(_) => Err(Unanswered::TimedOut),
    }
}

/// Reads `read` of the shard of `group`'s coordinator.
///
/// # Errors
/// [`Unanswered`] when no coordinator answered.
pub async fn read<T: Send + 'static>(
    world: &World,
    group: u64,
    read: impl FnOnce(&Shard) -> T + Send + 'static,
) -> Result<T, Unanswered> {
    let (answer, answered) = oneshot::channel();
    let job: Job = Box::new(move |active, _| {
        let _ = answer.send(read(&active.shard));
        Effects::default()
    });
    submit(world, group, job)?;
    match tokio::time::timeout(CALL_TIMEOUT, answered).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(Unanswered::Gone),
        Err(_) => Err(Unanswered::TimedOut),
    }
}

/// Runs `node`'s coordinator over its replica `raft` of the offsets group `group` (module
/// docs) until the host stops.
pub async fn run(
    node: u64,
    group: u64,
    raft: Group,
    mut applied: watch::Receiver<Applied>,
    world: World,
) {
    let mut roles = raft.roles();
    loop {
        let role = roles.current();
        if role.state != GroupState::Leader {
            if roles.changed().await.is_none() {
                return;
            }
            continue;
        }
        let term = role.term;
        let Some(shard) = load(node, &raft, term, &mut roles, &mut applied, &world).await else {
            if leads(&roles, term) {
                // The log could not be read: wait for the next term.
                if roles.changed().await.is_none() {
                    return;
                }
            }
            continue;
        };
        let coordinator = Coordinator { node, term, raft: &raft, raft_group: group, world: &world };
        coordinator.serve(shard, &mut roles).await;
    }
}

/// Whether the replica still leads `term`.
fn leads(roles: &RoleWatch, term: u64) -> bool {
    let role = roles.current();
    role.state == GroupState::Leader && role.term == term
}

/// Replays the committed log into a fresh shard once `term`'s first entry and every entry the
/// replica's log holds now are applied; `None` if the replica stopped leading `term`
/// meanwhile, or the log could not be read.
///
/// Waiting for the whole log matters when a stale shard loads again in its term: a write that
/// timed out is still in the log, and may commit yet (a leader cut off from its peers keeps
/// its term if they cannot elect another, and commits once they are back). Loaded without it,
/// the shard would go on from a state the log has moved past: a member the write removed
/// would stay in memory, and the targets written after it would count the member the log no
/// longer has (seed 1975 of the sweep: a partition in two targets and in none, the group
/// stuck). Once every entry appended before the load is applied, each earlier write is either
/// in the log it replays or gone with the term.
async fn load(
    node: u64,
    raft: &Group,
    term: u64,
    roles: &mut RoleWatch,
    applied: &mut watch::Receiver<Applied>,
    world: &World,
) -> Option<Shard> {
    let last = RaftIndex(raft.log().with_log(|log| log.next_index()).0.saturating_sub(1));
    let end = loop {
        if !leads(roles, term) {
            return None;
        }
        if let Some(end) = committed_in(raft, term, last, *applied.borrow()) {
            break end;
        }
        tokio::select! {
            biased;
            changed = roles.changed() => changed.map(drop)?,
            changed = applied.changed() => changed.ok()?,
        }
    };
    let mut shard = Shard::new(shard_config(), node ^ term.rotate_left(32));
    let now = SimClock.now_ms();
    let mut from = raft.log().with_log(|log| log.start_offset());
    let mut bytes = Vec::new();
    while from < end {
        bytes.clear();
        let read = raft.log().with_log(|log| log.read(from, LOAD_READ_BYTES, end, &mut bytes));
        let next = match read {
            Ok(next) => next,
            Err(error) => {
                let event = format!("coordinator load failed node={node} term={term}: {error}");
                world.lock().event(event);
                return None;
            }
        };
        shard.replay_batches(&bytes, now);
        if next <= from {
            break;
        }
        from = next;
    }
    Some(shard)
}

/// The committed end offset if `applied` reached `term`'s entries (then the term's first
/// entry committed) and the entry at `last`.
fn committed_in(raft: &Group, term: u64, last: RaftIndex, applied: Applied) -> Option<Offset> {
    let (index, end) = applied?;
    if index < last {
        return None;
    }
    let entry = raft.log().with_log(|log| log.entry_at(index)).ok().flatten()?;
    (u64::try_from(entry.epoch.0).ok() == Some(term)).then_some(end)
}

/// The outcome of writes proposed together.
type Outcome = (Vec<u64>, Result<(), ErrorCode>);

/// One load of a coordinator: the host, the term, the replica and its group's id.
struct Coordinator<'a> {
    node: u64,
    term: u64,
    raft: &'a Group,
    raft_group: u64,
    world: &'a World,
}

impl Coordinator<'_> {
    /// Serves `shard` until the replica stops leading the term or the shard goes stale.
    async fn serve(&self, shard: Shard, roles: &mut RoleWatch) {
        let (jobs_sender, mut jobs) = mpsc::channel::<Job>(JOBS_QUEUED_MAX);
        let (outcomes, mut written) = mpsc::channel::<Outcome>(OUTCOMES_QUEUED_MAX);
        let load = self.loaded(&shard, jobs_sender);
        let mut active = Active { shard, waiters: BTreeMap::new(), next_waiter: 0 };
        let stale = loop {
            let sleep = sleep_until(active.shard.next_deadline());
            let effects = tokio::select! {
                biased;
                changed = roles.changed() => {
                    if changed.is_none() || !leads(roles, self.term) {
                        break false;
                    }
                    continue;
                }
                Some((ids, outcome)) = written.recv() => {
                    outcome_of(&mut active.shard, &ids, outcome, SimClock.now_ms())
                }
                Some(job) = jobs.recv() => job(&mut active, SimClock.now_ms()),
                () = sleep => active.shard.tick(SimClock.now_ms()),
            };
            self.carry_out(&mut active, effects, &outcomes).await;
            self.observe(&active.shard);
            if active.shard.stale() {
                break true;
            }
        };
        let mut state = self.world.lock();
        if state.coordination.coordinators.get(&self.node).is_some_and(|s| s.load == load) {
            state.coordination.coordinators.remove(&self.node);
        }
        let (node, term) = (self.node, self.term);
        state.event(format!("coordinator stopped node={node} term={term} stale={stale}"));
    }

    /// Registers the loaded coordinator; counts a move of the coordinator, and whether it
    /// found the group mid-rebalance; checks that it has every commit acknowledged so far,
    /// unless a later term already has a leader (then this one is deposed and does not know
    /// yet: its log lacks the later terms' entries, and it can acknowledge nothing more).
    /// Returns the load's number.
    fn loaded(&self, shard: &Shard, jobs: mpsc::Sender<Job>) -> u64 {
        let (node, term) = (self.node, self.term);
        let group = shard.describe_consumer(GROUP).ok();
        let (epoch, found) = group.as_ref().map_or((0, "none"), |g| (g.epoch, g.state));
        let mut state = self.world.lock();
        let group_id = self.raft_group;
        let deposed = state.leaders.range((group_id, term + 1)..).any(|(&(g, _), _)| g == group_id);
        if !deposed {
            let who = format!("the coordinator loaded on node {node} in term {term}");
            let lost = check::commits_kept(&state, &committed(shard), &who);
            state.violations.extend(lost);
        }
        let coordination = &mut state.coordination;
        coordination.loads += 1;
        let load = coordination.loads;
        let moved = coordination.newest_load.is_some_and(|newest| term > newest);
        if moved {
            coordination.changes += 1;
            if matches!(found, "Assigning" | "Reconciling") {
                coordination.failovers_mid_rebalance += 1;
            }
        }
        coordination.newest_load = coordination.newest_load.max(Some(term));
        coordination.coordinators.insert(node, Serving { term, load, jobs });
        state.event(format!(
            "coordinator loaded node={node} term={term} group={found} epoch={epoch}"
        ));
        load
    }

    /// Counts the group epoch's rises: rebalances.
    fn observe(&self, shard: &Shard) {
        let Ok(group) = shard.describe_consumer(GROUP) else { return };
        let mut state = self.world.lock();
        if group.epoch > state.coordination.epoch {
            state.coordination.epoch = group.epoch;
            state.coordination.rebalances += 1;
            state.event(format!("group epoch={} state={}", group.epoch, group.state));
        }
    }

    /// Sends the answers and proposes the writes, in order, as one batch; writes refused at
    /// once are reported to the shard here, and what that answers is carried out too.
    async fn carry_out(
        &self,
        active: &mut Active,
        effects: Effects,
        outcomes: &mpsc::Sender<Outcome>,
    ) {
        let mut effects = effects;
        loop {
            for (waiter, reply) in effects.replies {
                if let Some(answer) = active.waiters.remove(&waiter) {
                    let _ = answer.send(reply);
                }
            }
            if effects.writes.is_empty() {
                return;
            }
            let ids: Vec<u64> = effects.writes.iter().map(|write| write.id).collect();
            let all = effects.writes.iter().flat_map(|write| &write.records);
            let batch = Bytes::from(records::batch(all, SimClock.now_ms()));
            match self.raft.propose(batch, Proposal::TICKET_NONE, true).await {
                Ok(Some(pending)) => {
                    let outcomes = outcomes.clone();
                    tokio::task::spawn_local(async move {
                        let committed = tokio::time::timeout(WRITE_TIMEOUT, pending.committed());
                        let outcome = match committed.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(_)) | Err(_) => Err(ErrorCode::NotCoordinator),
                        };
                        let _ = outcomes.send((ids, outcome)).await;
                    });
                    return;
                }
                Ok(None) | Err(_) => {
                    let failed = Err(ErrorCode::NotCoordinator);
                    effects = outcome_of(&mut active.shard, &ids, failed, SimClock.now_ms());
                }
            }
        }
    }
}

/// The group's committed offsets of [`TOPIC`] in `shard`, by partition.
#[must_use]
pub fn committed(shard: &Shard) -> BTreeMap<i32, i64> {
    let all = shard.offsets(GROUP, None).into_iter().filter(|(topic, _, _)| topic == TOPIC);
    all.filter_map(|(_, partition, offset)| Some((partition, offset?.offset))).collect()
}

/// Sleeps until `deadline` (shard time), forever if none.
async fn sleep_until(deadline: Option<i64>) {
    match deadline {
        None => std::future::pending().await,
        Some(at) => {
            let wait = at.saturating_sub(SimClock.now_ms()).max(0);
            tokio::time::sleep(Duration::from_millis(wait.cast_unsigned())).await;
        }
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
