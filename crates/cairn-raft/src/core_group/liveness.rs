//! Node liveness (RFC 0003 §5): the core leader marks a node `Dead` once it has not heard from
//! it for a grace period, and `Alive` again once it hears from it.
//!
//! What "heard" means: openraft's own record, on the leader, of the last acknowledged heartbeat
//! or append to each node of the core group (`RaftMetrics::heartbeat`, the sending time of the
//! newest request the node answered). That is the core's Raft traffic itself, so a node that is
//! connected but does not answer (paused, wedged) is silent too, which the peer transport's
//! connection state would miss. Every node of a static cluster is a core voter, so every node
//! is heard this way.
//!
//! [`LivenessJudge`] decides, purely, from what a tick observes: nothing unless this node leads;
//! a new leader (or a new term) counts silence from the moment it took office, so an election
//! does not mark everyone dead; a node is `Dead` after [`LivenessTimers::grace`] of silence and
//! `Alive` once it answered within it; the leader itself is alive. It proposes only a change
//! from the committed state, and at most once per [`LivenessTimers::retry`] per node, so a
//! flapping node or a failing proposal costs at most one core write per node per retry period.
//! [`run`] is the leader's task that ticks it and proposes through the leader's own write path
//! (never forwarded: only the leader proposes).

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use cairn_meta::{CoreCommand, CoreState, Liveness};
use cairn_storage::Disk;
use cairn_types::NodeId;
use openraft::Instant as _;
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver as _;
use tokio::time::Instant;

use super::metadata::{CoreForward, CoreMetadata};
use crate::Timers;

/// The liveness timers of the core, derived from its Raft timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessTimers {
    /// Silence after which the leader marks a node dead: 3 × the shortest election timeout,
    /// so a node that missed a few heartbeats, or a slow election, is not.
    pub grace: Duration,
    /// Shortest time between two proposals for one node (the longest election timeout).
    pub retry: Duration,
    /// How often the leader looks (the heartbeat interval).
    pub tick: Duration,
}

impl LivenessTimers {
    /// The liveness timers of a group running `timers`.
    #[must_use]
    pub fn of(timers: &Timers) -> LivenessTimers {
        LivenessTimers {
            grace: Duration::from_millis(timers.election_timeout_min_ms.saturating_mul(3)),
            retry: Duration::from_millis(timers.election_timeout_max_ms),
            tick: Duration::from_millis(timers.heartbeat_ms.max(1)),
        }
    }
}

/// What one tick sees.
#[derive(Debug)]
pub(crate) struct Observation<'a> {
    /// When.
    pub(crate) now: Instant,
    /// This node.
    pub(crate) me: NodeId,
    /// The core's term.
    pub(crate) term: u64,
    /// Whether this node leads the core in `term`.
    pub(crate) leading: bool,
    /// The last acknowledged request of each node this leader replicates to (`None`: none yet
    /// in this term). Empty unless leading.
    pub(crate) heard: &'a BTreeMap<NodeId, Option<Instant>>,
    /// Each registered node's liveness as committed.
    pub(crate) committed: &'a BTreeMap<NodeId, Liveness>,
}

/// The leader's liveness decisions (module docs). Pure: time comes in each [`Observation`].
#[derive(Debug)]
pub(crate) struct LivenessJudge {
    timers: LivenessTimers,
    /// The term this node leads and when it saw itself leading it first.
    office: Option<(u64, Instant)>,
    /// The last proposal for each node in this office: what and when.
    proposed: BTreeMap<NodeId, (Liveness, Instant)>,
}

impl LivenessJudge {
    pub(crate) fn new(timers: LivenessTimers) -> LivenessJudge {
        LivenessJudge { timers, office: None, proposed: BTreeMap::new() }
    }

    /// The changes to propose now, at most one per node.
    pub(crate) fn judge(&mut self, seen: &Observation<'_>) -> Vec<(NodeId, Liveness)> {
        if !seen.leading {
            self.office = None;
            self.proposed.clear();
            return Vec::new();
        }
        let since = match self.office {
            Some((term, since)) if term == seen.term => since,
            _ => {
                self.office = Some((seen.term, seen.now));
                self.proposed.clear();
                seen.now
            }
        };
        let mut changes = Vec::new();
        for (&node, &committed) in seen.committed {
            let Some(wanted) = self.wanted(seen, node, since) else { continue };
            if wanted == committed || self.proposed_lately(node, wanted, seen.now) {
                continue;
            }
            self.proposed.insert(node, (wanted, seen.now));
            changes.push((node, wanted));
        }
        changes
    }

    /// What `node` should be: `None` while undecided (a new leader's grace, not heard yet).
    fn wanted(&self, seen: &Observation<'_>, node: NodeId, since: Instant) -> Option<Liveness> {
        if node == seen.me {
            return Some(Liveness::Alive);
        }
        let heard = seen.heard.get(&node).copied().flatten();
        let silent_for = |from: Instant| seen.now.saturating_duration_since(from);
        if heard.is_some_and(|at| silent_for(at) <= self.timers.grace) {
            return Some(Liveness::Alive);
        }
        let reference = heard.map_or(since, |at| at.max(since));
        (silent_for(reference) > self.timers.grace).then_some(Liveness::Dead)
    }

    /// Whether `wanted` was proposed for `node` less than a retry period ago.
    fn proposed_lately(&self, node: NodeId, wanted: Liveness, now: Instant) -> bool {
        self.proposed.get(&node).is_some_and(|&(liveness, at)| {
            liveness == wanted && now.saturating_duration_since(at) < self.timers.retry
        })
    }
}

/// Each registered node's committed liveness.
fn committed(state: &CoreState) -> BTreeMap<NodeId, Liveness> {
    state.nodes().map(|node| (node.meta.id, node.liveness)).collect()
}

/// The leader's liveness task: ticks the judge every [`LivenessTimers::tick`] and proposes its
/// changes, one at a time, through the leader's own write path. Ends when the core is dropped.
pub(crate) async fn run<D: Disk + Clone, F: CoreForward>(
    core: Weak<CoreMetadata<D, F>>,
    timers: LivenessTimers,
) {
    let mut judge = LivenessJudge::new(timers);
    let mut ticks = tokio::time::interval(timers.tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(core) = core.upgrade() else { return };
        let changes = observe(&core, &mut judge);
        for (node, liveness) in changes {
            let silent = "for longer than the grace period";
            match core.propose_here(CoreCommand::SetLiveness { node, liveness }).await {
                Ok(()) => {
                    tracing::info!(%node, ?liveness, grace = ?timers.grace, silent, "core leader set a node's liveness")
                }
                Err(error) => {
                    tracing::warn!(%node, ?liveness, %error, "core leader could not set a node's liveness; tried again later")
                }
            }
        }
    }
}

/// One tick's observation of `core`, judged.
fn observe<D: Disk + Clone, F: CoreForward>(
    core: &CoreMetadata<D, F>,
    judge: &mut LivenessJudge,
) -> Vec<(NodeId, Liveness)> {
    let now = Instant::now();
    let metrics = core.raft.metrics();
    let metrics = metrics.borrow_watched();
    let leading =
        metrics.state == ServerState::Leader && metrics.current_leader == Some(core.node.0);
    let term = metrics.current_term;
    let heard: BTreeMap<NodeId, Option<Instant>> = metrics
        .heartbeat
        .iter()
        .flatten()
        .map(|(&node, acked)| {
            let at = acked.as_ref().and_then(|acked| now.checked_sub(acked.elapsed()));
            (NodeId(node), at)
        })
        .collect();
    drop(metrics);
    let committed = committed(&core.state());
    let seen =
        Observation { now, me: core.node, term, leading, heard: &heard, committed: &committed };
    judge.judge(&seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TIMERS: LivenessTimers = LivenessTimers {
        grace: Duration::from_millis(4500),
        retry: Duration::from_millis(3000),
        tick: Duration::from_millis(250),
    };

    fn ms(base: Instant, at: u64) -> Instant {
        base + Duration::from_millis(at)
    }

    /// A tick at `at` ms of leader 1 in `term` with `heard` (node, ms of its last ack) and the
    /// committed liveness.
    fn tick(
        judge: &mut LivenessJudge,
        base: Instant,
        at: u64,
        term: u64,
        heard: &[(u64, Option<u64>)],
        committed: &[(u64, Liveness)],
    ) -> Vec<(NodeId, Liveness)> {
        let heard = heard.iter().map(|&(n, t)| (NodeId(n), t.map(|t| ms(base, t)))).collect();
        let committed = committed.iter().map(|&(n, l)| (NodeId(n), l)).collect();
        let seen = Observation {
            now: ms(base, at),
            me: NodeId(1),
            term,
            leading: true,
            heard: &heard,
            committed: &committed,
        };
        judge.judge(&seen)
    }

    use Liveness::{Alive, Dead};

    #[test]
    fn a_silent_node_is_dead_after_the_grace_and_alive_when_heard_again() {
        let base = Instant::now();
        let mut judge = LivenessJudge::new(TIMERS);
        let all_alive = [(1, Alive), (2, Alive), (3, Alive)];
        // Node 2 answers every tick, node 3 last answered at 1 s.
        let heard = |at| [(2, Some(at)), (3, Some(1000))];
        assert_eq!(tick(&mut judge, base, 5000, 1, &heard(5000), &all_alive), vec![]);
        // Grace counts from the new office (5 s), not from the ack at 1 s.
        assert_eq!(tick(&mut judge, base, 9500, 1, &heard(9500), &all_alive), vec![]);
        let dead = tick(&mut judge, base, 9501, 1, &heard(9501), &all_alive);
        assert_eq!(dead, vec![(NodeId(3), Dead)]);
        // Not proposed again while the proposal may be in flight; again after a retry period.
        assert_eq!(tick(&mut judge, base, 9750, 1, &heard(9750), &all_alive), vec![]);
        assert_eq!(tick(&mut judge, base, 12_501, 1, &heard(12_501), &all_alive), dead);
        // Committed: nothing more to do.
        let three_dead = [(1, Alive), (2, Alive), (3, Dead)];
        assert_eq!(tick(&mut judge, base, 16_000, 1, &heard(16_000), &three_dead), vec![]);
        // It answers again: alive at once.
        let back = [(2, Some(20_000)), (3, Some(20_000))];
        let alive = tick(&mut judge, base, 20_100, 1, &back, &three_dead);
        assert_eq!(alive, vec![(NodeId(3), Alive)]);
    }

    #[test]
    fn a_new_leader_marks_nobody_dead_within_its_grace() {
        let base = Instant::now();
        let mut judge = LivenessJudge::new(TIMERS);
        let committed = [(1, Dead), (2, Alive), (3, Alive)];
        // Nobody answered yet in this term: only itself changes (it leads, so it is alive).
        let none = [(2, None), (3, None)];
        assert_eq!(tick(&mut judge, base, 0, 7, &none, &committed), vec![(NodeId(1), Alive)]);
        assert_eq!(tick(&mut judge, base, 4500, 7, &none, &committed[1..]), vec![]);
        // A new term restarts the grace.
        assert_eq!(tick(&mut judge, base, 5000, 8, &none, &committed[1..]), vec![]);
        assert_eq!(tick(&mut judge, base, 9500, 8, &none, &committed[1..]), vec![]);
        let both = tick(&mut judge, base, 9501, 8, &none, &committed[1..]);
        assert_eq!(both, vec![(NodeId(2), Dead), (NodeId(3), Dead)]);
    }

    #[test]
    fn a_follower_proposes_nothing_and_forgets_its_office() {
        let base = Instant::now();
        let mut judge = LivenessJudge::new(TIMERS);
        let committed = BTreeMap::from([(NodeId(2), Alive)]);
        let heard = BTreeMap::new();
        let follower = Observation {
            now: ms(base, 60_000),
            me: NodeId(1),
            term: 3,
            leading: false,
            heard: &heard,
            committed: &committed,
        };
        assert!(tick(&mut judge, base, 0, 3, &[], &[(2, Alive)]).is_empty());
        assert_eq!(judge.judge(&follower), vec![]);
        // Leading the same term again (it never does in Raft, but the judge must not rely on
        // it): the grace starts anew.
        assert!(tick(&mut judge, base, 61_000, 3, &[], &[(2, Alive)]).is_empty());
    }

    /// One tick of a generated run.
    #[derive(Clone, Debug)]
    struct Step {
        advance_ms: u64,
        leading: bool,
        new_term: bool,
        /// Per node 2..=4: whether it answered since the last tick.
        answered: [bool; 3],
        /// Per node 2..=4: whether the last proposal for it commits now.
        commits: [bool; 3],
    }

    fn step() -> impl Strategy<Value = Step> {
        (0_u64..2000, prop::bool::weighted(0.9), prop::bool::weighted(0.05), any::<[bool; 3]>())
            .prop_flat_map(|(advance_ms, leading, new_term, answered)| {
                any::<[bool; 3]>().prop_map(move |commits| Step {
                    advance_ms,
                    leading,
                    new_term,
                    answered,
                    commits,
                })
            })
    }

    proptest! {
        /// Against every run: only a leader proposes; never a change the state already holds;
        /// never `Dead` for a node heard within the grace, or within the grace of taking office;
        /// never the same proposal for a node twice within a retry period.
        #[test]
        fn the_judge_keeps_its_rules(steps in prop::collection::vec(step(), 1..200)) {
            let base = Instant::now();
            let mut judge = LivenessJudge::new(TIMERS);
            let (mut now, mut term, mut office) = (base, 1_u64, None::<(u64, Instant)>);
            let mut heard: BTreeMap<NodeId, Option<Instant>> =
                (2..=4).map(|n| (NodeId(n), None)).collect();
            let mut committed: BTreeMap<NodeId, Liveness> =
                (1..=4).map(|n| (NodeId(n), Alive)).collect();
            let mut last: BTreeMap<NodeId, (Liveness, Instant)> = BTreeMap::new();
            for step in steps {
                now += Duration::from_millis(step.advance_ms);
                if step.new_term {
                    term += 1;
                    heard.values_mut().for_each(|at| *at = None);
                }
                for (i, node) in (2..=4).map(NodeId).enumerate() {
                    if step.answered[i] {
                        heard.insert(node, Some(now));
                    }
                }
                let seen = Observation {
                    now, me: NodeId(1), term, leading: step.leading, heard: &heard,
                    committed: &committed,
                };
                let changes = judge.judge(&seen);
                if !step.leading {
                    prop_assert!(changes.is_empty());
                    office = None;
                    last.clear();
                    continue;
                }
                let since = match office {
                    Some((t, since)) if t == term => since,
                    _ => { last.clear(); office = Some((term, now)); now }
                };
                for &(node, liveness) in &changes {
                    prop_assert_ne!(committed[&node], liveness);
                    if liveness == Dead {
                        prop_assert!(node != NodeId(1));
                        prop_assert!(now.duration_since(since) > TIMERS.grace);
                        let at = heard[&node];
                        prop_assert!(at.is_none_or(|at| now.duration_since(at) > TIMERS.grace));
                    }
                    if let Some(&(previous, at)) = last.get(&node) {
                        prop_assert!(previous != liveness || now.duration_since(at) >= TIMERS.retry);
                    }
                    last.insert(node, (liveness, now));
                }
                prop_assert!(changes.len() <= committed.len());
                for (i, node) in (2..=4).map(NodeId).enumerate() {
                    if let (true, Some(&(liveness, _))) = (step.commits[i], last.get(&node)) {
                        committed.insert(node, liveness);
                    }
                }
            }
        }
    }
}
