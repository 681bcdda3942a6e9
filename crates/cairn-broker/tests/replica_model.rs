//! `Replica` against a model: random event sequences (valid and invalid) fed to the pure state
//! machine and to a plain model written from the rules of RFC 0003 §2 and §4; after every event
//! both agree on whether it was accepted, on every offset, and on every answer. No runtime, no IO.

use cairn_broker::{Refusal, Replica, Role, Violation};
use cairn_types::{LeaderEpoch, NodeId, Offset};
use proptest::prelude::*;

/// An event, with offsets relative to the model's state when it is applied (so that random
/// sequences keep hitting the boundaries: `-1`, `0`, `+1` around the offset that matters).
#[derive(Clone, Debug)]
enum Event {
    /// A new role at the current epoch plus `epoch_delta` (negative: a stale epoch).
    Role(RoleKind, i32),
    /// An append ending `delta` after the log end (`<= 0` is invalid).
    Appended(i64),
    /// A flush up to `delta` after the flushed offset.
    Flushed(i64),
    /// A commit up to `delta` after the flushed offset (one voter commits what is flushed).
    Committed(i64),
    /// A truncation at `delta` after the committed offset.
    Truncated(i64),
    /// A snapshot installed starting `delta` after the committed offset.
    Snapshot(i64),
    /// Retention up to `delta` after the log start.
    Purged(i64),
    /// The quorum lease lapsed or held.
    Lease(bool),
    /// The log failed.
    Failed,
}

#[derive(Clone, Copy, Debug)]
enum RoleKind {
    Leader,
    Follower(Option<u64>),
    Candidate,
}

fn event() -> impl Strategy<Value = Event> {
    let role = prop_oneof![
        Just(RoleKind::Leader),
        proptest::option::of(0..3_u64).prop_map(RoleKind::Follower),
        Just(RoleKind::Candidate),
    ];
    prop_oneof![
        2 => (role, -1..=2_i32).prop_map(|(role, delta)| Event::Role(role, delta)),
        6 => (-1..=5_i64).prop_map(Event::Appended),
        4 => (-1..=4_i64).prop_map(Event::Flushed),
        4 => (-2..=2_i64).prop_map(Event::Committed),
        2 => (-2..=3_i64).prop_map(Event::Truncated),
        1 => (-1..=3_i64).prop_map(Event::Snapshot),
        2 => (-1..=3_i64).prop_map(Event::Purged),
        1 => any::<bool>().prop_map(Event::Lease),
        1 => Just(Event::Failed),
    ]
}

/// The model: the rules written out plainly, one field per concept.
#[derive(Clone, Debug)]
struct Model {
    leader: bool,
    leader_hint: Option<u64>,
    offline: bool,
    epoch: i32,
    start: u64,
    end: u64,
    flushed: u64,
    committed: u64,
    term_start: Option<u64>,
    lease: bool,
}

fn shift(base: u64, delta: i64) -> u64 {
    base.saturating_add_signed(delta)
}

impl Model {
    /// Applies `event`; returns whether it was accepted. A rejected event changes nothing but
    /// takes the model offline.
    fn apply(&mut self, event: &Event) -> bool {
        if self.offline {
            return true;
        }
        let mut next = self.clone();
        let accepted = next.change(event) && next.ordered() && next.committed >= self.committed;
        if accepted {
            *self = next;
        } else {
            self.offline = true;
        }
        accepted
    }

    fn ordered(&self) -> bool {
        self.start <= self.committed && self.committed <= self.end && self.flushed <= self.end
    }

    fn change(&mut self, event: &Event) -> bool {
        match *event {
            Event::Role(kind, delta) => {
                let epoch = self.epoch.saturating_add(delta);
                if epoch < self.epoch {
                    return false;
                }
                let same_term_leader = self.leader && epoch == self.epoch;
                self.leader = matches!(kind, RoleKind::Leader);
                self.leader_hint = match kind {
                    RoleKind::Follower(hint) => hint,
                    _ => None,
                };
                if !same_term_leader {
                    self.lease = true;
                    self.term_start = self.leader.then_some(self.end);
                }
                if !self.leader {
                    self.term_start = None;
                }
                self.epoch = epoch;
                true
            }
            Event::Appended(delta) => {
                let end = shift(self.end, delta);
                let ok = end > self.end;
                self.end = end;
                ok
            }
            Event::Flushed(delta) => {
                let flushed = shift(self.flushed, delta);
                let ok = flushed >= self.flushed;
                self.flushed = flushed;
                ok
            }
            Event::Committed(delta) => {
                self.committed = shift(self.flushed, delta);
                true
            }
            Event::Truncated(delta) => {
                let at = shift(self.committed, delta);
                let ok = !self.leader && at >= self.committed;
                self.end = at;
                self.flushed = self.flushed.min(at);
                ok
            }
            Event::Snapshot(delta) => {
                let at = shift(self.committed, delta);
                let ok = !self.leader && at >= self.committed;
                (self.start, self.end, self.flushed, self.committed) = (at, at, at, at);
                ok
            }
            Event::Purged(delta) => {
                let start = shift(self.start, delta);
                let ok = start >= self.start;
                self.start = start;
                ok
            }
            Event::Lease(held) => {
                if self.leader {
                    self.lease = held;
                }
                true
            }
            Event::Failed => {
                self.offline = true;
                true
            }
        }
    }

    fn serving(&self) -> Result<(), Refusal> {
        match (self.offline, self.leader) {
            (true, _) => Err(Refusal::Offline),
            (false, true) => Ok(()),
            (false, false) => Err(Refusal::NotLeader { hint: self.leader_hint.map(NodeId) }),
        }
    }
}

fn feed(replica: &mut Replica, model: &Model, event: &Event) -> Result<(), Violation> {
    match *event {
        Event::Role(kind, delta) => {
            let role = match kind {
                RoleKind::Leader => Role::Leader,
                RoleKind::Follower(hint) => Role::Follower { leader: hint.map(NodeId) },
                RoleKind::Candidate => Role::Candidate,
            };
            replica.on_role(role, LeaderEpoch(model.epoch.saturating_add(delta)))
        }
        Event::Appended(delta) => replica.on_appended(Offset(shift(model.end, delta))),
        Event::Flushed(delta) => replica.on_flushed(Offset(shift(model.flushed, delta))),
        Event::Committed(delta) => replica.on_committed(Offset(shift(model.flushed, delta))),
        Event::Truncated(delta) => replica.on_truncated(Offset(shift(model.committed, delta))),
        Event::Snapshot(delta) => {
            replica.on_snapshot_installed(Offset(shift(model.committed, delta)))
        }
        Event::Purged(delta) => replica.on_purged(Offset(shift(model.start, delta))),
        Event::Lease(held) => {
            replica.on_lease(held);
            Ok(())
        }
        Event::Failed => {
            replica.on_failed("the log failed".into());
            Ok(())
        }
    }
}

/// The replica's state and answers equal the model's.
fn check(replica: &Replica, model: &Model) {
    assert_eq!(matches!(replica.role(), Role::Offline { .. }), model.offline, "offline");
    if model.offline {
        assert_eq!(replica.may_produce(), Err(Refusal::Offline));
        assert_eq!(replica.fetch_bound(), Err(Refusal::Offline));
        assert_eq!(replica.latest_offset(), Err(Refusal::Offline));
        assert_eq!(replica.retention_bound(), None);
        return;
    }
    let offsets = (replica.log_start(), replica.committed(), replica.flushed(), replica.log_end());
    let expected = (model.start, model.committed, model.flushed, model.end);
    assert_eq!((offsets.0.0, offsets.1.0, offsets.2.0, offsets.3.0), expected, "offsets");
    assert_eq!(replica.epoch(), LeaderEpoch(model.epoch));
    assert_eq!(replica.term_start(), model.term_start.map(Offset));
    let lease = if model.lease { Ok(()) } else { Err(Refusal::LeaseLapsed) };
    let produce = model.serving().and(lease);
    assert_eq!(replica.may_produce(), produce);
    assert_eq!(replica.fetch_bound(), model.serving().map(|()| Offset(model.committed)));
    let latest = match model.term_start {
        Some(start) if model.committed < start => None,
        _ => Some(Offset(model.committed)),
    };
    assert_eq!(replica.latest_offset(), model.serving().map(|()| latest));
    assert_eq!(replica.retention_bound(), Some(Offset(model.committed)));
    let epoch = model.epoch;
    assert_eq!(replica.check_epoch(None), Ok(()));
    assert_eq!(replica.check_epoch(Some(LeaderEpoch(epoch))), Ok(()));
    assert_eq!(replica.check_epoch(Some(LeaderEpoch(epoch - 1))), Err(Refusal::FencedEpoch));
    assert_eq!(replica.check_epoch(Some(LeaderEpoch(epoch + 1))), Err(Refusal::UnknownEpoch));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every event is accepted exactly when the model accepts it, a rejected one leaves the
    /// offsets as they were and the replica offline, and the answers match after every event.
    #[test]
    fn replica_follows_the_model(events in proptest::collection::vec(event(), 1..80)) {
        let mut replica = Replica::new(Offset(0), Offset(0), Offset(0), Offset(0)).unwrap();
        let mut model = Model {
            leader: false, leader_hint: None, offline: false, epoch: 0, start: 0, end: 0,
            flushed: 0, committed: 0, term_start: None, lease: true,
        };
        let mut highest_committed = Offset(0);
        for event in &events {
            let before = replica.clone();
            let fed = feed(&mut replica, &model, event);
            let accepted = model.apply(event);
            prop_assert_eq!(fed.is_ok(), accepted, "event {:?} from {:?}: {:?}", event, before, fed);
            if fed.is_err() {
                prop_assert_eq!(replica.committed(), before.committed());
                prop_assert_eq!(replica.log_end(), before.log_end());
            }
            check(&replica, &model);
            // The high watermark never goes back, whatever the events.
            prop_assert!(replica.committed() >= highest_committed || model.offline);
            highest_committed = highest_committed.max(replica.committed());
        }
    }
}

/// A new leader's high watermark is unknown (OFFSET_NOT_AVAILABLE) until its term commits up to
/// its first offset, and then it is the commit offset.
#[test]
fn a_new_leaders_high_watermark_waits_for_its_term() {
    let mut replica = Replica::new(Offset(0), Offset(10), Offset(10), Offset(4)).unwrap();
    replica.on_role(Role::Leader, LeaderEpoch(3)).unwrap();
    assert_eq!(replica.term_start(), Some(Offset(10)));
    replica.on_appended(Offset(11)).unwrap(); // the term's first entry
    assert_eq!(replica.latest_offset(), Ok(None));
    assert_eq!(replica.fetch_bound(), Ok(Offset(4)), "fetches stop at the last known commit");
    replica.on_committed(Offset(9)).unwrap();
    assert_eq!(replica.latest_offset(), Ok(None));
    replica.on_committed(Offset(11)).unwrap();
    assert_eq!(replica.latest_offset(), Ok(Some(Offset(11))));
}

/// A single node opening its log: leader at once, everything flushed is committed, and the
/// high watermark is known (today's behaviour, no waiting for a first produce).
#[test]
fn a_single_voter_knows_its_high_watermark_at_once() {
    let mut replica = Replica::new(Offset(2), Offset(7), Offset(7), Offset(7)).unwrap();
    replica.on_role(Role::Leader, LeaderEpoch(0)).unwrap();
    assert_eq!(replica.latest_offset(), Ok(Some(Offset(7))));
    assert_eq!(replica.may_produce(), Ok(()));
}

/// A commit past the log end is a violation: refused, not applied, and the replica offline.
#[test]
fn a_commit_past_the_log_end_takes_the_replica_offline() {
    let mut replica = Replica::new(Offset(0), Offset(5), Offset(5), Offset(5)).unwrap();
    replica.on_role(Role::Leader, LeaderEpoch(1)).unwrap();
    let violation = replica.on_committed(Offset(6)).unwrap_err();
    assert!(matches!(violation, Violation::Order { committed: 6, log_end: 5, .. }), "{violation}");
    assert_eq!(replica.committed(), Offset(5));
    assert!(matches!(replica.role(), Role::Offline { reason } if reason.contains("invariant")));
    assert_eq!(replica.may_produce(), Err(Refusal::Offline));
}

/// Truncating committed offsets, or a leader's own log, is refused.
#[test]
fn committed_offsets_and_a_leaders_log_are_never_cut() {
    let mut follower = Replica::new(Offset(0), Offset(9), Offset(9), Offset(6)).unwrap();
    follower.on_role(Role::Follower { leader: Some(NodeId(2)) }, LeaderEpoch(1)).unwrap();
    assert_eq!(follower.may_produce(), Err(Refusal::NotLeader { hint: Some(NodeId(2)) }));
    follower.on_truncated(Offset(6)).unwrap();
    assert_eq!((follower.log_end(), follower.flushed()), (Offset(6), Offset(6)));
    let cut = follower.on_truncated(Offset(5)).unwrap_err();
    assert_eq!(cut, Violation::CommittedTruncated { at: 5, committed: 6 });

    let mut leader = Replica::new(Offset(0), Offset(9), Offset(9), Offset(6)).unwrap();
    leader.on_role(Role::Leader, LeaderEpoch(1)).unwrap();
    assert_eq!(leader.on_truncated(Offset(8)), Err(Violation::LeaderRewritten));
}
