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
/// command carries) against `state`: every partition has 1 to [`REPLICATION_FACTOR_MAX`]
/// replicas, all registered and alive, none twice, and all partitions as many (`expected`, if
/// given: an existing topic's factor). Returns that replication factor. An empty list is
/// accepted (no partitions; the partition count is checked elsewhere) with `expected` or 0.
///
/// # Errors
/// [`MetaError::InvalidReplicaAssignment`] or [`MetaError::InvalidReplicationFactor`], naming
/// the first partition (counted from `first_partition`) that breaks a rule.
pub fn check_assignments(
    state: &CoreState,
    assignments: &[Vec<NodeId>],
    first_partition: u32,
    expected: Option<u16>,
) -> Result<u16, MetaError> {
    let invalid = MetaError::InvalidReplicaAssignment;
    let mut factor = expected;
    for (offset, replicas) in assignments.iter().enumerate() {
        let partition = u64::from(first_partition) + offset as u64;
        if replicas.is_empty() {
            return Err(invalid(format!("partition {partition} has no replicas")));
        }
        check_factor(i64::try_from(replicas.len()).unwrap_or(i64::MAX))?;
        check_replicas(state, replicas, partition)?;
        // Lossless: at most REPLICATION_FACTOR_MAX, checked above.
        let count = replicas.len() as u16;
        match factor {
            None => factor = Some(count),
            Some(factor) if factor != count => {
                return Err(invalid(format!(
                    "partition {partition} has {count} replicas, other partitions {factor}: \
                     every partition needs the same number"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(factor.unwrap_or(0))
}

/// Checks one partition's replicas: registered, alive, distinct.
fn check_replicas(state: &CoreState, replicas: &[NodeId], partition: u64) -> Result<(), MetaError> {
    let invalid = MetaError::InvalidReplicaAssignment;
    for (position, node) in replicas.iter().enumerate() {
        if replicas[..position].contains(node) {
            return Err(invalid(format!("partition {partition} names node {node} twice")));
        }
        match state.node(*node) {
            None => {
                return Err(invalid(format!(
                    "partition {partition} names node {node}, which is not registered"
                )));
            }
            Some(record) if record.liveness == Liveness::Dead => {
                return Err(invalid(format!(
                    "partition {partition} names node {node}, which is not alive"
                )));
            }
            Some(_) => {}
        }
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
