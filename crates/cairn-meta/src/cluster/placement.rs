//! Replica placement: where a new partition's replicas go ([`place`]), and the check of a
//! replica assignment a client gave ([`check_assignments`]), which `apply` also runs on every
//! assignment a command carries.
//!
//! [`place`] is deterministic (equal state and request, equal answer) and greedy, partition by
//! partition over the live nodes:
//! - the leader (first replica) is the node leading the fewest partitions, counting every live
//!   topic's assignments, then the one with the fewest replicas, then the lowest id; so the
//!   leaders of a topic on a fresh cluster differ by at most one per node;
//! - each further replica is a node whose rack the partition does not use yet, if any is left
//!   (Kafka's rack-aware assignment: a partition's replicas on distinct racks first), then the
//!   one with the fewest replicas, then the lowest id. Nodes without a rack share one rack, as
//!   in KRaft's placer, so a cluster without racks is simply balanced.

use std::collections::{BTreeMap, BTreeSet};

use cairn_types::NodeId;
use cairn_types::limits::{
    REPLICATION_FACTOR_DEFAULT, REPLICATION_FACTOR_MAX, TOPIC_PARTITIONS_MAX,
};

use crate::MetaError;
use crate::cluster::state::{CoreState, Liveness, Load};

/// Replicas for `partitions` new partitions, each list in preference order, with
/// `replication_factor` replicas each (`None`: the default, min(3, live nodes)).
///
/// # Errors
/// [`MetaError::InvalidPartitions`] above `TOPIC_PARTITIONS_MAX`;
/// [`MetaError::BrokerNotAvailable`] with no live node; [`MetaError::InvalidReplicationFactor`]
/// for 0, above [`REPLICATION_FACTOR_MAX`], or above the live nodes.
pub fn place(
    state: &CoreState,
    partitions: u32,
    replication_factor: Option<u16>,
) -> Result<Vec<Vec<NodeId>>, MetaError> {
    if partitions > TOPIC_PARTITIONS_MAX {
        return Err(MetaError::InvalidPartitions {
            count: i64::from(partitions),
            reason: "more than TOPIC_PARTITIONS_MAX partitions",
        });
    }
    let live: Vec<(NodeId, Option<&str>)> =
        state.live_nodes().map(|node| (node.meta.id, node.meta.rack.as_deref())).collect();
    if live.is_empty() {
        return Err(MetaError::BrokerNotAvailable("no live node to place replicas on".into()));
    }
    let factor = replication_factor.unwrap_or_else(|| {
        REPLICATION_FACTOR_DEFAULT.min(u16::try_from(live.len()).unwrap_or(u16::MAX))
    });
    check_factor(i64::from(factor))?;
    if usize::from(factor) > live.len() {
        return Err(MetaError::InvalidReplicationFactor {
            factor: i64::from(factor),
            reason: format!("only {} live node(s)", live.len()),
        });
    }
    let mut load = state.load();
    let racks: BTreeMap<NodeId, Option<&str>> = live.iter().copied().collect();
    let mut placed = Vec::new();
    for _ in 0..partitions {
        let replicas = place_one(&racks, &mut load, usize::from(factor));
        placed.push(replicas);
    }
    Ok(placed)
}

/// One partition's replicas among `racks` (the live nodes), updating `load`. `factor` is at
/// most the number of live nodes.
fn place_one(
    racks: &BTreeMap<NodeId, Option<&str>>,
    load: &mut BTreeMap<NodeId, Load>,
    factor: usize,
) -> Vec<NodeId> {
    let load_of = |load: &BTreeMap<NodeId, Load>, node: NodeId| -> Load {
        load.get(&node).copied().unwrap_or_default()
    };
    let mut replicas: Vec<NodeId> = Vec::with_capacity(factor);
    let mut racks_used: BTreeSet<Option<&str>> = BTreeSet::new();
    while replicas.len() < factor {
        let candidates = racks.iter().filter(|(node, _)| !replicas.contains(node));
        let best = if replicas.is_empty() {
            candidates.min_by_key(|&(&node, _)| (load_of(load, node), node))
        } else {
            candidates.min_by_key(|&(&node, rack)| {
                (racks_used.contains(rack), load_of(load, node).replicas, node)
            })
        };
        // `factor` is at most the number of live nodes, so a candidate is always left.
        let Some((&node, &rack)) = best else { break };
        let entry = load.entry(node).or_default();
        entry.replicas += 1;
        entry.leaders += u64::from(replicas.is_empty());
        racks_used.insert(rack);
        replicas.push(node);
    }
    replicas
}

/// Checks replica lists given for new partitions (a client's explicit assignment, or any a
/// command carries) against `state`, by Kafka's rules (KRaft's
/// `validateManualPartitionAssignment`, then its check that a partition has an active
/// replica): see [`check_lists`]. Returns the replication factor.
///
/// # Errors
/// As [`check_lists`].
pub fn check_assignments(
    state: &CoreState,
    assignments: &[Vec<NodeId>],
    first_partition: u32,
    expected: Option<u16>,
) -> Result<u16, MetaError> {
    let liveness = |node: NodeId| state.node(node).map(|record| record.liveness);
    check_lists(liveness, assignments, first_partition, expected)
}

/// Checks replica lists given for new partitions against the nodes `liveness` knows (`None`:
/// not registered), each list in order: not empty; its ids, in ascending order, registered and
/// none twice; as many replicas as every other list (and as `expected`, an existing topic's
/// factor, if given); at most [`REPLICATION_FACTOR_MAX`]; at least one replica alive (a dead
/// node may hold a replica, as a fenced broker may in Kafka: it catches up when it returns).
/// Returns that replication factor; for no lists, `expected` or 0 (the partition count is
/// checked elsewhere). The messages are Kafka's, the partition counted from `first_partition`.
///
/// # Errors
/// [`MetaError::InvalidReplicaAssignment`], or [`MetaError::InvalidReplicationFactor`] above
/// [`REPLICATION_FACTOR_MAX`], for the first list that breaks a rule.
pub(crate) fn check_lists(
    liveness: impl Fn(NodeId) -> Option<Liveness>,
    assignments: &[Vec<NodeId>],
    first_partition: u32,
    expected: Option<u16>,
) -> Result<u16, MetaError> {
    let mut factor = expected.map(usize::from);
    for (offset, replicas) in assignments.iter().enumerate() {
        let partition = u64::from(first_partition) + offset as u64;
        check_list(&liveness, replicas, factor, partition)?;
        factor = Some(replicas.len());
    }
    // Lossless: every list was checked against REPLICATION_FACTOR_MAX.
    Ok(factor.map_or(0, |factor| factor as u16))
}

/// Checks one partition's replica list (see [`check_lists`]).
fn check_list(
    liveness: &impl Fn(NodeId) -> Option<Liveness>,
    replicas: &[NodeId],
    factor: Option<usize>,
    partition: u64,
) -> Result<(), MetaError> {
    let invalid = MetaError::InvalidReplicaAssignment;
    if replicas.is_empty() {
        return Err(invalid(
            "The manual partition assignment includes an empty replica list.".into(),
        ));
    }
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    for (position, &node) in sorted.iter().enumerate() {
        if liveness(node).is_none() {
            return Err(invalid(format!(
                "The manual partition assignment includes broker {node}, but no such broker is \
                 registered."
            )));
        }
        if position > 0 && sorted[position - 1] == node {
            return Err(invalid(format!(
                "The manual partition assignment includes the broker {node} more than once."
            )));
        }
    }
    if let Some(factor) = factor.filter(|factor| *factor != replicas.len()) {
        return Err(invalid(format!(
            "The manual partition assignment includes a partition with {} replica(s), but this \
             is not consistent with previous partitions, which have {factor} replica(s).",
            replicas.len()
        )));
    }
    check_factor(i64::try_from(replicas.len()).unwrap_or(i64::MAX))?;
    if replicas.iter().all(|&node| liveness(node) != Some(Liveness::Alive)) {
        return Err(invalid(format!(
            "All brokers specified in the manual partition assignment for partition {partition} \
             are fenced or in controlled shutdown."
        )));
    }
    Ok(())
}

/// Checks a replication factor against `1..=REPLICATION_FACTOR_MAX`.
fn check_factor(factor: i64) -> Result<(), MetaError> {
    let reason = if factor < 1 {
        "a partition needs at least one replica".to_owned()
    } else if factor > i64::from(REPLICATION_FACTOR_MAX) {
        format!("at most {REPLICATION_FACTOR_MAX} replicas per partition")
    } else {
        return Ok(());
    };
    Err(MetaError::InvalidReplicationFactor { factor, reason })
}
