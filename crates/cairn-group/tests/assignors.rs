//! The consumer protocol's assignors (RFC 0008) over random groups: every partition of a
//! subscribed topic goes to exactly one of its subscribers; uniform balances a homogeneous group
//! to within one partition and moves no more than it must when a member joins or leaves; range
//! gives each subscriber one contiguous range per topic, static members first.

use std::collections::{BTreeMap, BTreeSet};

use cairn_group::assignor::{Assignment, MemberSpec, range, uniform};
use proptest::prelude::*;

type Members = BTreeMap<String, MemberSpec<u8>>;

fn member(topics: &[u8], owned: &[(u8, i32)], instance: Option<&str>) -> MemberSpec<u8> {
    MemberSpec {
        instance_id: instance.map(str::to_owned),
        topics: topics.iter().copied().collect(),
        owned: owned.iter().copied().collect(),
    }
}

/// Every partition of a topic someone subscribes to is assigned once, to a subscriber.
fn exactly_once(
    members: &Members,
    topics: &BTreeMap<u8, u32>,
    assignment: &Assignment<u8>,
) -> Result<(), TestCaseError> {
    let mut seen = BTreeMap::new();
    for (id, partitions) in assignment {
        for (topic, partition) in partitions {
            prop_assert!(
                members[id].topics.contains(topic),
                "{id} got {topic}/{partition} unsubscribed"
            );
            prop_assert!(
                seen.insert((*topic, *partition), id.clone()).is_none(),
                "{topic}/{partition} twice"
            );
        }
    }
    for (topic, count) in topics {
        if members.values().any(|m| m.topics.contains(topic)) {
            for partition in 0..*count as i32 {
                prop_assert!(
                    seen.contains_key(&(*topic, partition)),
                    "{topic}/{partition} unassigned"
                );
            }
        }
    }
    Ok(())
}

fn sizes(assignment: &Assignment<u8>) -> (usize, usize) {
    let sizes: Vec<usize> = assignment.values().map(BTreeSet::len).collect();
    (sizes.iter().copied().min().unwrap_or(0), sizes.iter().copied().max().unwrap_or(0))
}

/// The partitions whose owner changed from `before` to `after`, with their new owner; only
/// those whose old owner is still a member.
fn moved(before: &Assignment<u8>, after: &Assignment<u8>) -> Vec<((u8, i32), String)> {
    let owner = |a: &Assignment<u8>| -> BTreeMap<(u8, i32), String> {
        a.iter().flat_map(|(id, ps)| ps.iter().map(move |p| (*p, id.clone()))).collect()
    };
    let (b, a) = (owner(before), owner(after));
    a.into_iter()
        .filter(|(p, id)| b.get(p).is_some_and(|old| old != id && after.contains_key(old)))
        .collect()
}

/// `count` members `m0…` subscribed to `subscribed`, owning nothing.
fn alike(count: usize, subscribed: &[u8]) -> Members {
    (0..count).map(|i| (format!("m{i}"), member(subscribed, &[], None))).collect()
}

fn topics() -> impl Strategy<Value = BTreeMap<u8, u32>> {
    proptest::collection::btree_map(0u8..6, 1u32..20, 1..5)
}

proptest! {
    #[test]
    fn uniform_assigns_everything_once_and_balances_a_homogeneous_group(
        topics in topics(), count in 1usize..9,
    ) {
        let subscribed: Vec<u8> = topics.keys().copied().collect();
        let members: Members = alike(count, &subscribed);
        let assignment = uniform(&members, &topics);
        exactly_once(&members, &topics, &assignment)?;
        let (min, max) = sizes(&assignment);
        prop_assert!(max - min <= 1, "sizes {min}..{max}");
    }

    #[test]
    fn uniform_moves_no_more_than_it_must_when_one_member_joins_or_leaves(
        topics in topics(), count in 2usize..8,
    ) {
        let subscribed: Vec<u8> = topics.keys().copied().collect();
        let fresh: Members = alike(count, &subscribed);
        let before = uniform(&fresh, &topics);
        let owning = |members: &Members, assignment: &Assignment<u8>| -> Members {
            members.iter().map(|(id, m)| {
                let owned: Vec<(u8, i32)> = assignment.get(id).map(|ps| ps.iter().copied().collect()).unwrap_or_default();
                (id.clone(), member(&m.topics.iter().copied().collect::<Vec<_>>(), &owned, None))
            }).collect()
        };
        let mut joined = owning(&fresh, &before);
        joined.insert("new".to_owned(), member(&subscribed, &[], None));
        let after = uniform(&joined, &topics);
        exactly_once(&joined, &topics, &after)?;
        let total: usize = topics.values().map(|c| *c as usize).sum();
        // Only partitions the newcomer takes change owner, no more than its share.
        let taken = moved(&before, &after);
        prop_assert!(taken.iter().all(|(_, to)| to == "new"), "{taken:?}");
        prop_assert!(taken.len() <= total.div_ceil(count + 1));
        let mut left = owning(&fresh, &before);
        left.remove("m0").expect("m0");
        let after = uniform(&left, &topics);
        exactly_once(&left, &topics, &after)?;
        // Only the leaver's partitions move.
        let kept_moved = moved(&before, &after);
        prop_assert!(kept_moved.is_empty(), "kept owners' partitions moved: {kept_moved:?}");
    }

    #[test]
    fn heterogeneous_subscriptions_get_only_their_topics(
        topics in topics(),
        subscriptions in proptest::collection::vec(proptest::collection::btree_set(0u8..6, 0..4), 1..7),
    ) {
        let members: Members = subscriptions.iter().enumerate()
            .map(|(i, s)| (format!("m{i}"), member(&s.iter().copied().collect::<Vec<_>>(), &[], None)))
            .collect();
        exactly_once(&members, &topics, &uniform(&members, &topics))?;
        exactly_once(&members, &topics, &range(&members, &topics))?;
    }

    #[test]
    fn range_gives_contiguous_ranges_static_members_first(topics in topics(), count in 1usize..7) {
        let subscribed: Vec<u8> = topics.keys().copied().collect();
        let mut members: Members = alike(count, &subscribed);
        members.insert("z-static".to_owned(), member(&subscribed, &[], Some("a")));
        let assignment = range(&members, &topics);
        exactly_once(&members, &topics, &assignment)?;
        for (topic, partitions) in &topics {
            let mine = |id: &str| -> Vec<i32> {
                assignment[id].iter().filter(|(t, _)| t == topic).map(|(_, p)| *p).collect()
            };
            let first = mine("z-static");
            let size = *partitions as usize / members.len() + usize::from(!(*partitions as usize).is_multiple_of(members.len()));
            prop_assert_eq!(first, (0..i32::try_from(size.min(*partitions as usize)).unwrap()).collect::<Vec<_>>());
            for id in members.keys() {
                let got = mine(id);
                prop_assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{id}: {got:?} not contiguous");
            }
        }
    }
}
