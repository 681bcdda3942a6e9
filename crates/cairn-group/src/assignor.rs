//! The server-side assignors of the consumer protocol (RFC 0008, KIP-848): given each member's
//! subscription and current partitions, and each topic's partition count, the target
//! assignment. Pure and deterministic: the same input gives the same target on any node.
//!
//! - [`uniform`] (the default): balance first, then stickiness. When every member subscribes to
//!   the same topics, sizes differ by at most one: each member keeps what it owns up to its
//!   quota (`partitions / members`, the first `partitions % members` members in order one
//!   more, those already owning more first), and the free partitions fill the members under
//!   quota. Otherwise each topic's partitions are balanced the same way over its subscribers.
//! - [`range`]: per topic, contiguous ranges over its subscribers, static members first (by
//!   instance id), then by member id; computed afresh each time, as Kafka 4.0's.

use std::collections::{BTreeMap, BTreeSet};

/// What an assignor knows of one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSpec<T> {
    /// The member's `group.instance.id`, for a static member.
    pub instance_id: Option<String>,
    /// The topics it subscribes to.
    pub topics: BTreeSet<T>,
    /// The partitions it owns now (its current assignment).
    pub owned: BTreeSet<(T, i32)>,
}

/// A target assignment: each member's partitions.
pub type Assignment<T> = BTreeMap<String, BTreeSet<(T, i32)>>;

/// The uniform assignor (module docs). `topics`: each topic's partition count; subscriptions
/// to topics not in it are ignored.
#[must_use]
pub fn uniform<T: Ord + Clone>(
    members: &BTreeMap<String, MemberSpec<T>>,
    topics: &BTreeMap<T, u32>,
) -> Assignment<T> {
    let mut assignment = empty(members);
    let first = members.values().next();
    let homogeneous = first.is_some_and(|f| members.values().all(|m| m.topics == f.topics));
    if homogeneous {
        let ids: Vec<&String> = members.keys().collect();
        let partitions = partitions_of(first.map(|f| &f.topics), topics);
        balance(&ids, &partitions, members, &mut assignment);
    } else {
        for topic in topics.keys() {
            let ids: Vec<&String> = members
                .iter()
                .filter(|(_, m)| m.topics.contains(topic))
                .map(|(id, _)| id)
                .collect();
            let partitions = partitions_of(Some(&BTreeSet::from([topic.clone()])), topics);
            balance(&ids, &partitions, members, &mut assignment);
        }
    }
    assignment
}

/// An empty set of partitions for every member.
fn empty<T: Ord>(members: &BTreeMap<String, MemberSpec<T>>) -> Assignment<T> {
    members.keys().map(|m| (m.clone(), BTreeSet::new())).collect()
}

/// The partitions of `subscribed` topics that exist, in order.
fn partitions_of<T: Ord + Clone>(
    subscribed: Option<&BTreeSet<T>>,
    topics: &BTreeMap<T, u32>,
) -> Vec<(T, i32)> {
    let Some(subscribed) = subscribed else { return Vec::new() };
    subscribed
        .iter()
        .filter_map(|topic| topics.get(topic).map(|&count| (topic, count)))
        .flat_map(|(topic, count)| {
            (0..i32::try_from(count).unwrap_or(i32::MAX)).map(move |p| (topic.clone(), p))
        })
        .collect()
}

/// Spreads `partitions` over the members `ids` (in order), keeping owners up to their quota.
fn balance<T: Ord + Clone>(
    ids: &[&String],
    partitions: &[(T, i32)],
    members: &BTreeMap<String, MemberSpec<T>>,
    assignment: &mut Assignment<T>,
) {
    if ids.is_empty() {
        return;
    }
    let quota = partitions.len() / ids.len();
    let mut extra = partitions.len() % ids.len();
    let wanted: BTreeSet<&(T, i32)> = partitions.iter().collect();
    // Sticky part: what each member owns (and may have), up to the quota; those owning more
    // keep one more while extra slots last, in member order.
    let mut taken = BTreeSet::new();
    let mut kept = BTreeMap::new();
    for &id in ids {
        let owned: Vec<&(T, i32)> = members[id]
            .owned
            .iter()
            .filter(|p| wanted.contains(p) && !taken.contains(*p))
            .collect();
        let mut keep = owned.len().min(quota);
        if owned.len() > quota && extra > 0 {
            keep += 1;
            extra -= 1;
        }
        for &partition in &owned[..keep] {
            taken.insert(partition.clone());
        }
        kept.insert(id, keep);
        let slot = assignment.get_mut(id).expect("every member has a slot");
        slot.extend(owned[..keep].iter().map(|p| (*p).clone()));
    }
    // Free partitions fill the members under quota, then the extra slots, in member order.
    let mut free = partitions.iter().filter(|p| !taken.contains(*p));
    for &id in ids {
        let mut want = quota.saturating_sub(kept[id]);
        if kept[id] <= quota && extra > 0 {
            want += 1;
            extra -= 1;
        }
        let slot = assignment.get_mut(id).expect("every member has a slot");
        slot.extend(free.by_ref().take(want).cloned());
    }
}

/// The range assignor (module docs).
#[must_use]
pub fn range<T: Ord + Clone>(
    members: &BTreeMap<String, MemberSpec<T>>,
    topics: &BTreeMap<T, u32>,
) -> Assignment<T> {
    let mut assignment = empty(members);
    for (topic, &count) in topics {
        let mut subscribers: Vec<(&Option<String>, &String)> = members
            .iter()
            .filter(|(_, m)| m.topics.contains(topic))
            .map(|(id, m)| (&m.instance_id, id))
            .collect();
        // Static members first (by instance id), then the others by member id.
        subscribers.sort_by(|a, b| (a.0.is_none(), a.0, a.1).cmp(&(b.0.is_none(), b.0, b.1)));
        if subscribers.is_empty() {
            continue;
        }
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let (quota, extra) = (count / subscribers.len(), count % subscribers.len());
        let mut next = 0;
        for (i, (_, id)) in subscribers.into_iter().enumerate() {
            let size = quota + usize::from(i < extra);
            let slot = assignment.get_mut(id).expect("every member has a slot");
            slot.extend(
                (next..next + size).map(|p| (topic.clone(), i32::try_from(p).unwrap_or(i32::MAX))),
            );
            next += size;
        }
    }
    assignment
}
