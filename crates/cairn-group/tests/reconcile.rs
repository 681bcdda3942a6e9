//! The consumer protocol's reconciliation (RFC 0008) walking two members from one assignment
//! to another: a partition is never assigned to one member while the other still holds it,
//! a member gives up before it takes, and both reach the target, `Stable`, in a few heartbeats.

use std::collections::BTreeSet;

use cairn_group::reconcile::{MemberAssignment, MemberState, reconcile};
use proptest::prelude::*;

fn stable(epoch: i32, assigned: &BTreeSet<u8>) -> MemberAssignment<u8> {
    MemberAssignment {
        epoch,
        previous_epoch: epoch,
        state: MemberState::Stable,
        assigned: assigned.clone(),
        pending_revocation: BTreeSet::new(),
    }
}

fn set(items: &[u8]) -> BTreeSet<u8> {
    items.iter().copied().collect()
}

#[test]
fn a_member_revokes_before_it_takes_and_waits_for_what_others_hold() {
    let member = stable(1, &set(&[0, 1]));
    let target = set(&[1, 2]);
    let held_by_other = |p: &u8| *p == 2;
    let step = reconcile(&member, 2, &target, held_by_other, Some(&set(&[0, 1])));
    assert_eq!(step.state, MemberState::UnrevokedPartitions);
    assert_eq!((step.epoch, &step.assigned, &step.pending_revocation), (1, &set(&[1]), &set(&[0])));
    // Still owning 0: nothing moves.
    assert_eq!(reconcile(&step, 2, &target, held_by_other, Some(&set(&[0, 1]))), step);
    // 0 revoked, 2 still held elsewhere: the new epoch, waiting for 2.
    let step = reconcile(&step, 2, &target, held_by_other, Some(&set(&[1])));
    assert_eq!(
        (step.state, step.epoch, step.previous_epoch),
        (MemberState::UnreleasedPartitions, 2, 1)
    );
    assert_eq!(step.assigned, set(&[1]));
    // 2 released: stable with the whole target.
    let step = reconcile(&step, 2, &target, |_| false, Some(&set(&[1])));
    assert_eq!((step.state, step.epoch, &step.assigned), (MemberState::Stable, 2, &target));
}

proptest! {
    #[test]
    fn two_members_hand_partitions_over_without_overlap_and_converge(
        before in proptest::collection::vec(any::<bool>(), 1..12),
        after in proptest::collection::vec(any::<bool>(), 1..12),
        order in proptest::collection::vec(any::<bool>(), 8..16),
    ) {
        let n = before.len().min(after.len());
        let split = |sides: &[bool], a: bool| -> BTreeSet<u8> {
            (0..n).filter(|&i| sides[i] == a).map(|i| i as u8).collect()
        };
        let mut members = [stable(1, &split(&before, true)), stable(1, &split(&before, false))];
        let targets = [split(&after, true), split(&after, false)];
        for &first in &order {
            let (x, y) = if first { (0, 1) } else { (1, 0) };
            let other = members[y].clone();
            let held = |p: &u8| other.assigned.contains(p) || other.pending_revocation.contains(p);
            // The client reports what it was last told it may use: it revoked the rest.
            let reported = members[x].assigned.clone();
            members[x] = reconcile(&members[x], 2, &targets[x], held, Some(&reported));
            let [a, b] = &members;
            prop_assert!(a.assigned.is_disjoint(&b.assigned), "both use a partition: {a:?} {b:?}");
            prop_assert!(a.assigned.is_disjoint(&b.pending_revocation));
            prop_assert!(b.assigned.is_disjoint(&a.pending_revocation));
        }
        // Two more rounds each settle whatever the order left.
        for x in [0, 1, 0, 1, 0, 1] {
            let other = members[1 - x].clone();
            let held = |p: &u8| other.assigned.contains(p) || other.pending_revocation.contains(p);
            let reported = members[x].assigned.clone();
            members[x] = reconcile(&members[x], 2, &targets[x], held, Some(&reported));
        }
        for (member, target) in members.iter().zip(&targets) {
            prop_assert_eq!((member.state, member.epoch, &member.assigned), (MemberState::Stable, 2, target));
        }
    }
}
