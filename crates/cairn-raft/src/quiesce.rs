//! [`Quiescence`]: idle groups stop their openraft timers, and one ping per node pair stands in
//! for them (RFC 0004).
//!
//! A node's groups register here ([`Quiescence::register`]). Every heartbeat interval the
//! node's scan ([`Quiescence::scan`]) quiesces the groups it leads that have been settled and
//! idle long enough, and wakes the followers whose leader's pings stopped; a ping per peer
//! ([`Quiescence::ping_for`]) lists the groups the node leads, marking those it leads
//! quiescently with that peer among their followers, and its answer
//! ([`Quiescence::answered`]) renews their lease or wakes what the peer refused. The receiving
//! side ([`PingHandler::ping`]) quiesces the marked groups it follows under that leader in that
//! term, refuses the others, wakes the groups that left the list, and remembers every listed
//! leader for the groups it has no replica of ([`Quiescence::leader_of`]).
//!
//! This module decides; it does no IO and knows nothing of openraft: a group is seen through
//! [`GroupTimers`] (its role now, its ticks on or off), and time is passed in, so the decisions
//! are tested with made-up instants.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cairn_types::limits::PEER_QUIESCED_GROUPS_MAX;
use tokio::time::Instant;

use crate::RaftNodeId;
use crate::peer::{LedGroup, Ping, PingAnswer, PingHandler};

/// How long a leader's group must stay settled with nothing appended before it quiesces.
pub const QUIESCE_AFTER: Duration = Duration::from_secs(2);

/// A group as [`Quiescence`] sees it: its role now, and its timers.
pub trait GroupTimers: Send + Sync + 'static {
    /// The group's role on this node now.
    fn view(&self) -> GroupView;
    /// Turns the group's openraft timers (ticks: heartbeats and the election timer) on or off.
    fn set_ticking(&self, on: bool);
}

/// A group's role on this node, as far as quiescence cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupView {
    /// Leads `term`.
    Leader {
        /// The term (leader epoch).
        term: u64,
        /// The other voters.
        followers: Vec<RaftNodeId>,
        /// The last index of the log.
        last_index: Option<u64>,
        /// The followers that acknowledged a heartbeat lately and hold `last_index`.
        in_sync: Vec<RaftNodeId>,
        /// Every voter holds `last_index`, it is committed, every follower acknowledged a
        /// heartbeat lately, the membership is not changing and the leader's lease holds.
        settled: bool,
    },
    /// Follows `leader` in `term`.
    Follower {
        /// The leader.
        leader: RaftNodeId,
        /// The term.
        term: u64,
    },
    /// Anything else: a candidate, a learner, a follower without a leader, stopped.
    Other,
}

/// A group's quiescence now.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Quiet {
    /// Timers on.
    Awake,
    /// Led quiescently in `term`; `in_sync` are the followers that held the last entry when
    /// it quiesced; `acked` holds, per follower, the send time of the last ping that listed the
    /// group and that the follower did not refuse.
    Leading {
        term: u64,
        followers: Vec<RaftNodeId>,
        in_sync: Vec<RaftNodeId>,
        acked: BTreeMap<RaftNodeId, Instant>,
    },
    /// Followed quiescently under `leader` in `term`.
    Following { leader: RaftNodeId, term: u64 },
}

struct Member {
    timers: Arc<dyn GroupTimers>,
    quiet: Quiet,
    /// Set while the group is not [`Quiet::Awake`]: what [`QuietHandle`] reads without a lock.
    flag: Arc<AtomicBool>,
    /// The leader's last index and since when it has been the same and settled.
    idle: Option<(Option<u64>, Instant)>,
    /// The term this node led the group in at the last scan.
    led: Option<u64>,
}

impl Member {
    fn set(&mut self, quiet: Quiet) {
        let was_awake = self.quiet == Quiet::Awake;
        let awake = quiet == Quiet::Awake;
        self.quiet = quiet;
        self.flag.store(!awake, Ordering::Release);
        if was_awake != awake {
            self.timers.set_ticking(awake);
        }
    }
}

/// A group's leader as a peer's ping announced it.
#[derive(Clone, Copy, Debug)]
struct Claim {
    leader: RaftNodeId,
    term: u64,
    at: Instant,
}

#[derive(Default)]
struct State {
    groups: BTreeMap<u64, Member>,
    /// When each peer's last ping arrived.
    heard: BTreeMap<RaftNodeId, Instant>,
    /// The leaders peers announce, by group, the highest term kept.
    claims: BTreeMap<u64, Claim>,
}

/// The node's quiescence of its groups (module docs). Shared by the groups, their handlers,
/// the router (pings) and the node's ping tasks.
pub struct Quiescence {
    node: RaftNodeId,
    /// A follower wakes when its leader's pings stopped this long ago.
    wake_after: Duration,
    /// A quiesced leader holds its lease while a quorum acknowledged a ping sent this recently.
    lease: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for Quiescence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quiescence").field("node", &self.node).finish_non_exhaustive()
    }
}

/// A registered group's handle: cheap checks and its wake-up. Cheap to clone.
#[derive(Clone)]
pub struct QuietHandle {
    group: u64,
    flag: Arc<AtomicBool>,
    quiescence: Arc<Quiescence>,
}

impl std::fmt::Debug for QuietHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuietHandle").field("group", &self.group).finish_non_exhaustive()
    }
}

impl QuietHandle {
    /// Whether the group is quiesced now.
    #[must_use]
    pub fn is_quiet(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Wakes the group if it is quiesced; whether it was.
    pub fn wake(&self) -> bool {
        self.is_quiet() && self.quiescence.wake(self.group)
    }

    /// Whether a vote or pre-vote for the group must be refused now without asking openraft
    /// (RFC 0004 "Votes"): it is quiesced and its leader (or, leading, its lease) is alive.
    /// Otherwise the group is woken and the vote goes on.
    #[must_use]
    pub fn refuses_vote(&self, now: Instant) -> bool {
        if !self.is_quiet() {
            return false;
        }
        if self.quiescence.leader_alive(self.group, now) {
            return true;
        }
        self.quiescence.wake(self.group);
        false
    }

    /// Whether the group is led quiescently here and a quorum acknowledged its pings lately
    /// (its lease, module docs).
    #[must_use]
    pub fn holds_lease(&self, now: Instant) -> bool {
        self.is_quiet() && self.quiescence.leads(self.group, now)
    }

    /// The followers that acknowledged the quiesced leader's ping lately (its lease, module
    /// docs), or `None` if the group is not led quiescently.
    #[must_use]
    pub fn acked_followers(&self, now: Instant) -> Option<Vec<RaftNodeId>> {
        if !self.is_quiet() {
            return None;
        }
        self.quiescence.acked_followers(self.group, now)
    }

    /// Stops quiescing the group (it is shutting down).
    pub fn unregister(&self) {
        self.quiescence.locked().groups.remove(&self.group);
    }
}

impl Quiescence {
    /// The quiescence of node `node`'s groups: followers wake after `wake_after` without their
    /// leader's ping; a quiesced leader's lease lasts `lease` from a ping's send time (RFC 0004:
    /// `election_timeout_min` and that less a heartbeat interval).
    #[must_use]
    pub fn new(node: RaftNodeId, wake_after: Duration, lease: Duration) -> Arc<Quiescence> {
        Arc::new(Quiescence { node, wake_after, lease, state: Mutex::default() })
    }

    fn locked(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many of the node's groups are quiesced now (leading or following).
    #[must_use]
    pub fn quiesced(&self) -> usize {
        self.locked().groups.values().filter(|member| member.quiet != Quiet::Awake).count()
    }

    /// Registers `group`, awake, seen through `timers`.
    #[must_use]
    pub fn register(self: &Arc<Self>, group: u64, timers: Arc<dyn GroupTimers>) -> QuietHandle {
        let flag = Arc::new(AtomicBool::new(false));
        let member =
            Member { timers, quiet: Quiet::Awake, flag: Arc::clone(&flag), idle: None, led: None };
        self.locked().groups.insert(group, member);
        QuietHandle { group, flag, quiescence: Arc::clone(self) }
    }

    /// Wakes `group`; whether it was quiesced.
    pub fn wake(&self, group: u64) -> bool {
        let mut state = self.locked();
        let Some(member) = state.groups.get_mut(&group) else { return false };
        member.idle = None;
        let was_quiet = member.quiet != Quiet::Awake;
        member.set(Quiet::Awake);
        was_quiet
    }

    fn leads(&self, group: u64, now: Instant) -> bool {
        let leading = matches!(
            self.locked().groups.get(&group).map(|member| &member.quiet),
            Some(Quiet::Leading { .. })
        );
        leading && self.leader_alive(group, now)
    }

    fn leader_alive(&self, group: u64, now: Instant) -> bool {
        let state = self.locked();
        match state.groups.get(&group).map(|member| &member.quiet) {
            Some(Quiet::Following { leader, .. }) => {
                state.heard.get(leader).is_some_and(|at| now.duration_since(*at) < self.wake_after)
            }
            Some(Quiet::Leading { followers, acked, .. }) => {
                let recent = self.recent(acked, now);
                quorum(followers.len() + 1, recent.len() + 1)
            }
            Some(Quiet::Awake) | None => false,
        }
    }

    fn acked_followers(&self, group: u64, now: Instant) -> Option<Vec<RaftNodeId>> {
        let state = self.locked();
        match &state.groups.get(&group)?.quiet {
            Quiet::Leading { acked, .. } => Some(self.recent(acked, now)),
            Quiet::Awake | Quiet::Following { .. } => None,
        }
    }

    fn recent(&self, acked: &BTreeMap<RaftNodeId, Instant>, now: Instant) -> Vec<RaftNodeId> {
        // In id order: the map's.
        acked
            .iter()
            .filter(|(_, sent)| now.duration_since(**sent) < self.lease)
            .map(|(follower, _)| *follower)
            .collect()
    }

    /// One round of the node's scan (module docs) at `now`.
    pub fn scan(&self, now: Instant) {
        let mut state = self.locked();
        let State { groups, heard, claims } = &mut *state;
        claims.retain(|_, claim| now.duration_since(claim.at) < self.wake_after);
        let mut leading = 0usize;
        for member in groups.values_mut() {
            let view = member.timers.view();
            member.led = match &view {
                GroupView::Leader { term, .. } => Some(*term),
                GroupView::Follower { .. } | GroupView::Other => None,
            };
            match (&member.quiet, view) {
                (
                    Quiet::Awake,
                    GroupView::Leader { term, followers, last_index, in_sync, settled },
                ) => {
                    let idle_since = match member.idle {
                        Some((index, since)) if settled && index == last_index => since,
                        _ => now,
                    };
                    member.idle = settled.then_some((last_index, idle_since));
                    let quiet_long = now.duration_since(idle_since) >= QUIESCE_AFTER;
                    if quiet_long && leading < PEER_QUIESCED_GROUPS_MAX as usize {
                        let acked = BTreeMap::new();
                        member.set(Quiet::Leading { term, followers, in_sync, acked });
                    }
                }
                (Quiet::Leading { term, .. }, GroupView::Leader { term: now_term, .. })
                    if *term == now_term => {}
                (Quiet::Following { leader, term }, view) => {
                    let silent = heard
                        .get(leader)
                        .is_none_or(|at| now.duration_since(*at) >= self.wake_after);
                    let still = view == GroupView::Follower { leader: *leader, term: *term };
                    if silent || !still {
                        member.set(Quiet::Awake);
                    }
                }
                (Quiet::Awake, _) => member.idle = None,
                // Led in another term, or no longer led: wake.
                (Quiet::Leading { .. }, _) => member.set(Quiet::Awake),
            }
            leading += usize::from(matches!(member.quiet, Quiet::Leading { .. }));
        }
    }

    /// The ping for `peer` now: the groups this node led at the last scan, marked quiesced
    /// where it leads them quiescently with `peer` among their followers.
    #[must_use]
    pub fn ping_for(&self, peer: RaftNodeId) -> Ping {
        let state = self.locked();
        let led = state
            .groups
            .iter()
            .filter_map(|(group, member)| {
                let (term, quiesced) = match &member.quiet {
                    Quiet::Leading { term, followers, .. } => (*term, followers.contains(&peer)),
                    Quiet::Awake | Quiet::Following { .. } => (member.led?, false),
                };
                Some(LedGroup { group: *group, term, quiesced })
            })
            .take(PEER_QUIESCED_GROUPS_MAX as usize)
            .collect();
        Ping { from: self.node, led }
    }

    /// `peer` answered `ping`, sent at `sent`, refusing `refused`: renews the lease of the
    /// other quiesced groups, wakes the refused, and wakes those `peer` was not in sync with
    /// when they quiesced (a follower back from a crash or a partition may lag, and may take
    /// the quiescence: it reports the leader its vote names; awake, the leader catches it up).
    pub fn answered(&self, peer: RaftNodeId, ping: &Ping, sent: Instant, refused: &[u64]) {
        let mut state = self.locked();
        for LedGroup { group, term, .. } in ping.led.iter().filter(|led| led.quiesced) {
            let Some(member) = state.groups.get_mut(group) else { continue };
            let lagging = match &mut member.quiet {
                Quiet::Leading { term: led, in_sync, acked, .. } if led == term => {
                    acked.insert(peer, sent);
                    !in_sync.contains(&peer)
                }
                _ => false,
            };
            if lagging || refused.contains(group) {
                member.set(Quiet::Awake);
                member.idle = None;
            }
        }
    }

    /// The leader of `group` (a group without a replica here) as a peer's ping announced it
    /// within the shortest election timeout before `now`, with its term.
    #[must_use]
    pub fn leader_of(&self, group: u64, now: Instant) -> Option<(RaftNodeId, u64)> {
        let state = self.locked();
        let claim = state.claims.get(&group)?;
        (now.duration_since(claim.at) < self.wake_after).then_some((claim.leader, claim.term))
    }

    /// Takes `ping` in at `now` (module docs).
    pub fn receive(&self, ping: &Ping, now: Instant) -> PingAnswer {
        let mut state = self.locked();
        state.heard.insert(ping.from, now);
        let mut refused = Vec::new();
        for &LedGroup { group, term, quiesced } in &ping.led {
            state.claim(group, Claim { leader: ping.from, term, at: now });
            if !quiesced {
                continue;
            }
            let Some(member) = state.groups.get_mut(&group) else {
                refused.push(group);
                continue;
            };
            let following = GroupView::Follower { leader: ping.from, term };
            if member.timers.view() == following {
                member.set(Quiet::Following { leader: ping.from, term });
            } else {
                member.set(Quiet::Awake);
                refused.push(group);
            }
        }
        let listed: BTreeSet<u64> =
            ping.led.iter().filter(|led| led.quiesced).map(|led| led.group).collect();
        for (group, member) in &mut state.groups {
            let left = matches!(member.quiet, Quiet::Following { leader, .. } if leader == ping.from)
                && !listed.contains(group);
            if left {
                member.set(Quiet::Awake);
            }
        }
        PingAnswer { refused }
    }
}

impl State {
    /// Keeps `claim` unless a fresher claim of a higher term stands.
    fn claim(&mut self, group: u64, claim: Claim) {
        let kept = self.claims.entry(group).or_insert(claim);
        if claim.term >= kept.term || kept.leader == claim.leader {
            *kept = claim;
        }
    }
}

impl PingHandler for Quiescence {
    fn ping(&self, ping: Ping) -> PingAnswer {
        self.receive(&ping, Instant::now())
    }
}

/// Whether `acks` of `voters` are a majority.
fn quorum(voters: usize, acks: usize) -> bool {
    acks > voters / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group whose view the test sets, recording its ticks.
    struct Fake {
        view: Mutex<GroupView>,
        ticking: AtomicBool,
    }

    impl Fake {
        fn new(view: GroupView) -> Arc<Fake> {
            Arc::new(Fake { view: Mutex::new(view), ticking: AtomicBool::new(true) })
        }

        fn set(&self, view: GroupView) {
            *self.view.lock().unwrap() = view;
        }

        fn ticking(&self) -> bool {
            self.ticking.load(Ordering::SeqCst)
        }
    }

    impl GroupTimers for Fake {
        fn view(&self) -> GroupView {
            self.view.lock().unwrap().clone()
        }

        fn set_ticking(&self, on: bool) {
            self.ticking.store(on, Ordering::SeqCst);
        }
    }

    const WAKE: Duration = Duration::from_millis(1500);
    const LEASE: Duration = Duration::from_millis(1250);
    const STEP: Duration = Duration::from_millis(250);

    fn leader(term: u64, last: u64, settled: bool) -> GroupView {
        let (followers, in_sync) = (vec![2, 3], vec![2, 3]);
        GroupView::Leader { term, followers, last_index: Some(last), in_sync, settled }
    }

    /// Node 1 leading group 7 in term 4, quiesced at the returned instant.
    fn quiesced_leader() -> (Arc<Quiescence>, Arc<Fake>, QuietHandle, Instant) {
        let quiescence = Quiescence::new(1, WAKE, LEASE);
        let fake = Fake::new(leader(4, 10, true));
        let handle = quiescence.register(7, Arc::clone(&fake) as Arc<dyn GroupTimers>);
        let start = Instant::now();
        let mut now = start;
        while now - start < QUIESCE_AFTER {
            quiescence.scan(now);
            assert!(fake.ticking() && !handle.is_quiet(), "quiesced before {QUIESCE_AFTER:?}");
            now += STEP;
        }
        quiescence.scan(now);
        assert!(!fake.ticking() && handle.is_quiet());
        (quiescence, fake, handle, now)
    }

    #[test]
    fn a_leader_quiesces_only_after_staying_settled_and_idle() {
        let quiescence = Quiescence::new(1, WAKE, LEASE);
        let fake = Fake::new(leader(4, 10, true));
        let handle = quiescence.register(7, Arc::clone(&fake) as Arc<dyn GroupTimers>);
        let mut now = Instant::now();
        for round in 0..40u64 {
            // A write every second round keeps it awake; so does an unsettled round.
            let last = 10 + round / 2;
            fake.set(leader(4, last, round % 5 != 4));
            quiescence.scan(now);
            assert!(!handle.is_quiet() && fake.ticking(), "round {round}");
            now += STEP * 3;
        }
        let (_, fake, handle, _) = quiesced_leader();
        assert!(handle.wake() && fake.ticking() && !handle.is_quiet());
        assert!(!handle.wake(), "waking an awake group changes nothing");
    }

    #[test]
    fn pings_list_the_quiesced_groups_and_their_answers_are_the_lease() {
        let (quiescence, fake, handle, now) = quiesced_leader();
        let ping = quiescence.ping_for(2);
        let led = |quiesced| vec![LedGroup { group: 7, term: 4, quiesced }];
        assert_eq!(ping, Ping { from: 1, led: led(true) });
        assert_eq!(quiescence.ping_for(9).led, led(false), "node 9 is no follower");
        assert!(!handle.holds_lease(now), "no follower acknowledged yet");
        quiescence.answered(2, &ping, now, &[]);
        assert!(handle.holds_lease(now + STEP), "itself and node 2: a quorum of three");
        assert_eq!(handle.acked_followers(now + STEP), Some(vec![2]));
        assert!(!handle.holds_lease(now + LEASE), "the lease runs from the ping's send time");
        // A refusal wakes the group.
        quiescence.answered(3, &ping, now, &[7]);
        assert!(!handle.is_quiet() && fake.ticking());
        assert_eq!(handle.acked_followers(now), None);
    }

    #[test]
    fn a_follower_not_in_sync_when_the_group_quiesced_wakes_it_by_answering() {
        let quiescence = Quiescence::new(1, WAKE, LEASE);
        // Node 3 was silent (dead) when the group settled with node 2.
        let view = |last| GroupView::Leader {
            term: 4,
            followers: vec![2, 3],
            last_index: Some(last),
            in_sync: vec![2],
            settled: true,
        };
        let fake = Fake::new(view(10));
        let handle = quiescence.register(7, Arc::clone(&fake) as Arc<dyn GroupTimers>);
        let start = Instant::now();
        let mut now = start;
        while now - start <= QUIESCE_AFTER {
            quiescence.scan(now);
            now += STEP;
        }
        assert!(handle.is_quiet());
        let ping = quiescence.ping_for(3);
        assert_eq!(ping.led, vec![LedGroup { group: 7, term: 4, quiesced: true }]);
        quiescence.answered(2, &quiescence.ping_for(2), now, &[]);
        assert!(handle.is_quiet(), "node 2 was in sync");
        // Back, node 3 takes the quiescence without refusing: the leader wakes to catch it up.
        quiescence.answered(3, &ping, now, &[]);
        assert!(!handle.is_quiet() && fake.ticking());
    }

    #[test]
    fn a_leader_that_loses_its_term_wakes() {
        let (quiescence, fake, handle, now) = quiesced_leader();
        fake.set(leader(5, 10, true));
        quiescence.scan(now);
        assert!(!handle.is_quiet() && fake.ticking());
    }

    fn follower() -> (Arc<Quiescence>, Arc<Fake>, QuietHandle) {
        let quiescence = Quiescence::new(2, WAKE, LEASE);
        let fake = Fake::new(GroupView::Follower { leader: 1, term: 4 });
        let handle = quiescence.register(7, Arc::clone(&fake) as Arc<dyn GroupTimers>);
        (quiescence, fake, handle)
    }

    fn ping_of(from: u64, groups: &[(u64, u64)]) -> Ping {
        let led = groups.iter().map(|&(group, term)| LedGroup { group, term, quiesced: true });
        Ping { from, led: led.collect() }
    }

    #[test]
    fn a_follower_quiesces_under_its_leader_and_refuses_what_it_does_not_follow() {
        let (quiescence, fake, handle) = follower();
        let now = Instant::now();
        // Another term, another leader, a group it does not host: refused, awake.
        for (ping, refused) in [
            (ping_of(1, &[(7, 5)]), vec![7]),
            (ping_of(3, &[(7, 4)]), vec![7]),
            (ping_of(1, &[(8, 4)]), vec![8]),
        ] {
            assert_eq!(quiescence.receive(&ping, now).refused, refused);
            assert!(!handle.is_quiet() && fake.ticking());
        }
        assert!(quiescence.receive(&ping_of(1, &[(7, 4)]), now).refused.is_empty());
        assert!(handle.is_quiet() && !fake.ticking());
        // The next ping without it wakes it.
        quiescence.receive(&ping_of(1, &[]), now + STEP);
        assert!(!handle.is_quiet() && fake.ticking());
    }

    #[test]
    fn a_follower_wakes_when_its_leader_falls_silent_and_only_then_takes_votes() {
        let (quiescence, fake, handle) = follower();
        let start = Instant::now();
        quiescence.receive(&ping_of(1, &[(7, 4)]), start);
        let mut now = start;
        while now - start < WAKE {
            quiescence.scan(now);
            assert!(handle.is_quiet(), "woke {:?} after the last ping", now - start);
            assert!(handle.refuses_vote(now), "a vote while the leader pings");
            now += STEP;
        }
        assert!(!handle.refuses_vote(now), "a vote after the leader fell silent");
        assert!(!handle.is_quiet() && fake.ticking(), "the vote woke it");
        quiescence.receive(&ping_of(1, &[(7, 4)]), now);
        quiescence.scan(now + WAKE);
        assert!(!handle.is_quiet() && fake.ticking(), "the scan wakes it too");
    }

    #[test]
    fn a_follower_of_another_leader_wakes_at_the_scan() {
        let (quiescence, fake, handle) = follower();
        let now = Instant::now();
        quiescence.receive(&ping_of(1, &[(7, 4)]), now);
        fake.set(GroupView::Follower { leader: 3, term: 5 });
        quiescence.scan(now);
        assert!(!handle.is_quiet() && fake.ticking());
    }

    #[test]
    fn an_awake_leader_is_announced_and_a_peer_knows_it_until_its_pings_stop() {
        let leading = Quiescence::new(1, WAKE, LEASE);
        let fake = Fake::new(leader(4, 10, false));
        let _handle = leading.register(7, Arc::clone(&fake) as Arc<dyn GroupTimers>);
        let now = Instant::now();
        assert!(leading.ping_for(3).led.is_empty(), "nothing led before a scan");
        leading.scan(now);
        let ping = leading.ping_for(3);
        assert_eq!(ping.led, vec![LedGroup { group: 7, term: 4, quiesced: false }]);
        let elsewhere = Quiescence::new(3, WAKE, LEASE);
        assert!(elsewhere.receive(&ping, now).refused.is_empty(), "only quiesced are refused");
        assert_eq!(elsewhere.leader_of(7, now + STEP), Some((1, 4)));
        // A lower term from another node does not replace it; a higher one does.
        elsewhere.receive(
            &Ping { from: 2, led: vec![LedGroup { group: 7, term: 3, quiesced: false }] },
            now,
        );
        assert_eq!(elsewhere.leader_of(7, now), Some((1, 4)));
        elsewhere.receive(
            &Ping { from: 2, led: vec![LedGroup { group: 7, term: 5, quiesced: false }] },
            now,
        );
        assert_eq!(elsewhere.leader_of(7, now), Some((2, 5)));
        assert_eq!(elsewhere.leader_of(7, now + WAKE), None, "a silent leader is forgotten");
    }

    #[test]
    fn an_unregistered_group_is_refused() {
        let (quiescence, _, handle) = follower();
        handle.unregister();
        let answer = quiescence.receive(&ping_of(1, &[(7, 4)]), Instant::now());
        assert_eq!(answer.refused, vec![7]);
    }
}
