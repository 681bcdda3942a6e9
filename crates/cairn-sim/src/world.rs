//! [`World`]: what the simulated hosts, the client and the driver share (all on turmoil's one
//! thread): the running groups of each host, the event trace, the acknowledged records, the
//! offsets leaders assigned, and every leader seen in each term.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cairn_raft::{AppendSink, GroupState, ProposalAppended, RaftGroup};
use cairn_storage::Verdict;
use cairn_storage::sim::SimDisk;
use cairn_types::Offset;

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

/// A group's [`AppendSink`] on one host: records the offset each proposal got.
pub struct Sink {
    /// The host.
    pub node: u64,
    /// The group.
    pub group: u64,
    /// Where to record.
    pub world: World,
}

impl AppendSink for Sink {
    fn appended(&self, ticket: u64, appended: ProposalAppended) {
        let mut state = self.world.lock();
        state.appended.insert((self.group, ticket), (self.node, appended.base_offset));
        state.verdicts.insert((self.group, ticket), appended.verdict);
    }
}
