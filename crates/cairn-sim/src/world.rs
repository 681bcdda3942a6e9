//! [`World`]: what the simulated hosts, the client, the members and the driver share (all on
//! turmoil's one thread): the running groups of each host, the event trace, the acknowledged
//! records, the offsets leaders assigned, every leader seen in each term, and the consumer
//! group's coordinators, members and commits ([`Coordination`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cairn_raft::{AppendSink, GroupState, ProposalAppended, RaftGroup};
use cairn_storage::Verdict;
use cairn_storage::sim::SimDisk;
use cairn_types::{Offset, RaftIndex};
use tokio::sync::{mpsc, watch};

use crate::coordinator::Job;

/// A group as a host runs it.
pub type Group = Arc<RaftGroup<SimDisk>>;

/// A record the client was told is committed (`acks=all`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The group (partition) it was written to.
    pub group: u64,
    /// The client's ticket of the proposal, unique in a run.
    pub ticket: u64,
    /// Its Raft index.
    pub index: u64,
    /// The term of the leader that appended it.
    pub term: u64,
    /// Its one record's value.
    pub payload: Vec<u8>,
    /// Its one record's key (a compacted group's records have one).
    pub key: Option<Vec<u8>>,
}

/// Everything shared, behind one lock (module docs).
#[derive(Default)]
pub struct State {
    /// Each running host's groups, by node and group id; a crashed host has none.
    pub hosts: BTreeMap<u64, BTreeMap<u64, Group>>,
    /// Starts of each node so far (its peer transport's incarnation).
    pub incarnations: BTreeMap<u64, u64>,
    /// The events of the run in the order they happened, each stamped with simulated time.
    pub trace: Vec<String>,
    /// Acknowledged proposals.
    pub acks: Vec<Ack>,
    /// The fence of each group: the last record the client had acknowledged after healing.
    pub fences: BTreeMap<u64, Ack>,
    /// The base offset each proposal got from the leader that appended it, by (group, ticket).
    pub appended: BTreeMap<(u64, u64), (u64, Offset)>,
    /// The leader append's verdict on each proposal, by (group, ticket).
    pub verdicts: BTreeMap<(u64, u64), Verdict>,
    /// The idempotent producer's acknowledged records (payloads), by group, in send order.
    pub idempotent_acks: BTreeMap<u64, Vec<Vec<u8>>>,
    /// The outcome of each idempotent proposal once known, by ticket: committed and admitted
    /// (`true`), or failed (`false`: the client retries the batch).
    pub outcomes: BTreeMap<u64, bool>,
    /// Idempotent proposals the leader answered as the repeat of a batch in its log.
    pub duplicates: usize,
    /// Compaction rounds the cleaners carried out.
    pub rounds: usize,
    /// What a check found while the run went on (an idempotent batch refused).
    pub violations: Vec<String>,
    /// Every node seen leading each (group, term).
    pub leaders: BTreeMap<(u64, u64), BTreeSet<u64>>,
    /// Set by the driver once every fault is healed and every host runs: the client fences.
    pub healed: bool,
    /// The consumer group's coordinators, members and commits.
    pub coordination: Coordination,
}

/// A host's coordinator while it serves: loaded in `term`, taking jobs.
pub struct Serving {
    /// The term its replica leads.
    pub term: u64,
    /// Which load of the run it is (a reload in the same term is another).
    pub load: u64,
    /// Its queue of jobs.
    pub jobs: mpsc::Sender<Job>,
}

/// A member as it sees itself: what it may use, and until when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberView {
    /// Its member id.
    pub id: String,
    /// Its member epoch (0 while it joins).
    pub epoch: i32,
    /// The partitions it owns: the last assignment an acknowledged answer gave it.
    pub owned: BTreeSet<i32>,
    /// When its session lapses if no heartbeat is acknowledged before: a session after it
    /// sent the last acknowledged one. It owns nothing from then on.
    pub until: Duration,
}

/// The consumer group's story (members: `members.rs`, coordinators: `coordinator.rs`).
#[derive(Default)]
pub struct Coordination {
    /// Each host's coordinator while it serves, by node.
    pub coordinators: BTreeMap<u64, Serving>,
    /// Loads so far.
    pub loads: u64,
    /// The newest term a coordinator loaded in.
    pub newest_load: Option<u64>,
    /// Loads in a term newer than every one loaded before: the coordinator moved.
    pub changes: usize,
    /// Of those, loads that found the group mid-rebalance (`Assigning` or `Reconciling`).
    pub failovers_mid_rebalance: usize,
    /// The highest group epoch a coordinator had, and how often it rose: rebalances.
    pub epoch: i32,
    /// Times the group epoch rose.
    pub rebalances: usize,
    /// Each member as it sees itself, by name.
    pub members: BTreeMap<String, MemberView>,
    /// Each partition's next offset to commit: every commit sent is higher than the ones
    /// before it.
    pub next_offset: BTreeMap<i32, i64>,
    /// Every offset sent in a commit, by partition.
    pub sent: BTreeMap<i32, BTreeSet<i64>>,
    /// The highest acknowledged commit of each partition.
    pub acked: BTreeMap<i32, i64>,
    /// Acknowledged commits (one per partition and request).
    pub commits: usize,
    /// Set once the group settled after healing.
    pub settled: bool,
    /// The final coordinator's committed offsets, asked after the fence.
    pub final_offsets: Option<BTreeMap<i32, i64>>,
    /// Set once two members were seen owning a partition (reported once).
    pub overlapped: bool,
}

impl State {
    /// Records `event` of a host or the client in the trace at the current simulated time.
    pub fn event(&mut self, event: String) {
        let now = turmoil::sim_elapsed().unwrap_or_default();
        self.event_at(now, event);
    }

    /// Records `event` in the trace at simulated time `now`: the driver's events, between
    /// turmoil's steps, where [`turmoil::sim_elapsed`] knows no time.
    pub fn event_at(&mut self, now: Duration, event: String) {
        self.trace.push(format!("{} {event}", now.as_millis()));
    }

    /// Node `node` stops (crashed or restarted): its groups and its coordinator go.
    pub fn host_down(&mut self, node: u64) {
        self.hosts.remove(&node);
        self.coordination.coordinators.remove(&node);
    }

    /// The group `group` on the host that leads it with the highest term, if any.
    #[must_use]
    pub fn leader_of(&self, group: u64) -> Option<(u64, Group)> {
        let mut best: Option<(u64, u64, &Group)> = None;
        for (&node, groups) in &self.hosts {
            let Some(raft) = groups.get(&group) else { continue };
            let role = raft.roles().current();
            if role.state == GroupState::Leader && best.is_none_or(|(_, term, _)| role.term > term)
            {
                best = Some((node, role.term, raft));
            }
        }
        best.map(|(node, _, raft)| (node, Arc::clone(raft)))
    }
}

/// The shared [`State`]; clones share it.
#[derive(Clone, Default)]
pub struct World(Arc<Mutex<State>>);

impl World {
    /// Locks the state. A panic under the lock already failed the run.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a replica applied (so its group committed): the last entry's index and the offset
/// after its records, the high watermark; `None` before its first apply in this start.
pub type Applied = Option<(RaftIndex, Offset)>;

/// A group's [`AppendSink`] on one host: records the offset each proposal got, and publishes
/// what the replica applied.
pub struct Sink {
    /// The host.
    pub node: u64,
    /// The group.
    pub group: u64,
    /// Where to record.
    pub world: World,
    /// Where to publish applies (the coordinator waits on it).
    pub applied: watch::Sender<Applied>,
}

impl AppendSink for Sink {
    fn appended(&self, ticket: u64, appended: ProposalAppended) {
        let mut state = self.world.lock();
        state.appended.insert((self.group, ticket), (self.node, appended.base_offset));
        state.verdicts.insert((self.group, ticket), appended.verdict);
    }

    fn applied(&self, index: RaftIndex, end: Offset) {
        self.applied.send_replace(Some((index, end)));
    }
}
