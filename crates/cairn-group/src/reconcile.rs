//! The consumer protocol's reconciliation (RFC 0008, Kafka's `CurrentAssignmentBuilder`): one
//! step of a member's current assignment towards the group's target, run at each of its
//! heartbeats. Pure.
//!
//! A partition is never given to a member while another member still holds it (owns it, or
//! has it pending revocation): partitions change hands only once released. A member that must
//! give partitions up first stays at its epoch, told its reduced assignment, until it reports
//! them gone; then it moves to the target epoch, `Stable`, or `UnreleasedPartitions` while
//! some of its new partitions are still held elsewhere.

use std::collections::BTreeSet;

/// Where a member stands in its reconciliation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// At the target epoch with its whole target.
    Stable,
    /// It must revoke partitions before it moves to the next epoch.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members have not released yet.
    UnreleasedPartitions,
}

/// A member's current assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAssignment<P> {
    /// Its epoch.
    pub epoch: i32,
    /// Its epoch before the last change (a lost response is recognised by it).
    pub previous_epoch: i32,
    /// Its reconciliation state.
    pub state: MemberState,
    /// The partitions it may use.
    pub assigned: BTreeSet<P>,
    /// The partitions it must give up.
    pub pending_revocation: BTreeSet<P>,
}

/// One step of `member` towards `target` of epoch `target_epoch`. `held_elsewhere`: whether
/// another member still owns a partition or has it pending revocation. `reported`: the
/// partitions the member says it owns, if its heartbeat said (`None`: unchanged).
#[must_use]
pub fn reconcile<P: Ord + Clone>(
    member: &MemberAssignment<P>,
    target_epoch: i32,
    target: &BTreeSet<P>,
    held_elsewhere: impl Fn(&P) -> bool,
    reported: Option<&BTreeSet<P>>,
) -> MemberAssignment<P> {
    match member.state {
        MemberState::Stable if member.epoch == target_epoch => member.clone(),
        MemberState::UnrevokedPartitions => {
            let still_owned = reported
                .is_none_or(|owned| member.pending_revocation.iter().any(|p| owned.contains(p)));
            if still_owned {
                member.clone()
            } else {
                next(member, target_epoch, target, &held_elsewhere, reported)
            }
        }
        MemberState::Stable | MemberState::UnreleasedPartitions => {
            next(member, target_epoch, target, &held_elsewhere, reported)
        }
    }
}

/// Kafka's `computeNextAssignment`.
fn next<P: Ord + Clone>(
    member: &MemberAssignment<P>,
    target_epoch: i32,
    target: &BTreeSet<P>,
    held_elsewhere: &impl Fn(&P) -> bool,
    reported: Option<&BTreeSet<P>>,
) -> MemberAssignment<P> {
    let kept: BTreeSet<P> = member.assigned.intersection(target).cloned().collect();
    let revoke: BTreeSet<P> = member.assigned.difference(&kept).cloned().collect();
    let owns_revoked = reported.is_none_or(|owned| revoke.iter().any(|p| owned.contains(p)));
    if !revoke.is_empty() && owns_revoked {
        return MemberAssignment {
            epoch: member.epoch,
            previous_epoch: member.epoch,
            state: MemberState::UnrevokedPartitions,
            assigned: kept,
            pending_revocation: revoke,
        };
    }
    let (free, unreleased): (Vec<P>, Vec<P>) =
        target.difference(&kept).cloned().partition(|p| !held_elsewhere(p));
    let mut assigned = kept;
    assigned.extend(free);
    let state =
        if unreleased.is_empty() { MemberState::Stable } else { MemberState::UnreleasedPartitions };
    MemberAssignment {
        epoch: target_epoch,
        previous_epoch: member.epoch,
        state,
        assigned,
        pending_revocation: BTreeSet::new(),
    }
}
