//! [`CoreCommand`]: the changes the consistent core's log holds, [`apply`] (the state machine's
//! transition) and [`CoreReply`].
//!
//! `apply` is a pure function of the state and the command: no clock, no randomness, no IO.
//! Ids and anything random come in the command (the leader draws a topic id; group ids and
//! producer ids are counters in the state). It validates again what the leader validated,
//! through the same functions, because the state may have changed between proposal and apply;
//! a command that fails is a no-op that returns the error, on every replica alike.
//!
//! The leader builds topic commands with [`CoreCommand::create_topic`] and
//! [`CoreCommand::create_partitions`], which place replicas (or check the client's) and run
//! `apply`'s checks, so a command proposed is one that would apply now.

use std::sync::Arc;

use cairn_types::limits::{
    CLUSTER_NODES_MAX, NODE_ADDRESS_BYTES_MAX, PRODUCER_IDS_PER_BLOCK, RACK_BYTES_MAX,
};
use cairn_types::{NodeId, ProducerId};

use crate::catalog::Topics;
use crate::cluster::placement::{check_assignments, place};
use crate::cluster::state::{CoreState, GroupId, Liveness, NodeRecord, PartitionAssignment};
use crate::{ConfigChange, MetaError, NodeMeta, TopicConfigs, TopicId, TopicMeta, TopicName};

/// One change of the core's state. See [`apply`] for what each does and refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreCommand {
    /// Sets the cluster id: once; setting the same id again does nothing.
    SetClusterId {
        /// 16 random bytes drawn by the first core leader.
        id: [u8; 16],
    },
    /// Registers a node, or updates its addresses and rack; it is alive afterwards.
    RegisterNode {
        /// Id (0 to `i32::MAX`, a Kafka broker id), Kafka host and port, rack.
        node: NodeMeta,
        /// Where peers reach it.
        peer_address: String,
    },
    /// Sets or clears the address of a registered node's etcd v3 API.
    SetEtcdAddress {
        /// The node.
        node: NodeId,
        /// `host:port` of its etcd listener; `None` if it serves no etcd API.
        address: Option<String>,
    },
    /// Marks a registered node alive or dead.
    SetLiveness {
        /// The node.
        node: NodeId,
        /// Its new liveness.
        liveness: Liveness,
    },
    /// Creates a topic with one replica list per partition.
    CreateTopic {
        /// The new topic's id, drawn by the leader.
        id: TopicId,
        /// Its name.
        name: TopicName,
        /// Config overrides, as the client sent them.
        configs: Vec<(String, String)>,
        /// Replicas of partitions `0..n`, each in preference order: the client's explicit
        /// assignment or the leader's placement.
        assignments: Vec<Vec<NodeId>>,
    },
    /// Raises a topic's partition count to `count`.
    CreatePartitions {
        /// The topic.
        name: TopicName,
        /// The new partition count.
        count: u32,
        /// Replicas of the new partitions (`count - current` of them).
        assignments: Vec<Vec<NodeId>>,
    },
    /// Changes a topic's configs, all or none.
    AlterConfigs {
        /// The topic.
        name: TopicName,
        /// The changes, applied in order.
        changes: Vec<ConfigChange>,
    },
    /// Deletes a topic: its name is free at once, it stays a pending deletion until
    /// [`CoreCommand::FinishDeletion`].
    DeleteTopic {
        /// The topic.
        name: TopicName,
    },
    /// Forgets a pending deletion (nothing if there is none).
    FinishDeletion {
        /// The deleted topic's id.
        id: TopicId,
    },
    /// Hands a registered node the next block of `PRODUCER_IDS_PER_BLOCK` producer ids.
    AllocateProducerIds {
        /// The node asking.
        node: NodeId,
    },
    /// Imports a single node's `LocalMetadata` into an empty core: every partition assigned
    /// to `node` alone.
    Import {
        /// The node whose store it was (registered).
        node: NodeId,
        /// Its live topics.
        topics: Vec<TopicMeta>,
        /// Its pending deletions.
        deleting: Vec<TopicMeta>,
    },
}

/// What a command that applied answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreReply {
    /// Applied (or nothing to do); nothing to report.
    Done,
    /// The topic as the command left it (created, grown, altered, deleted).
    Topic(Arc<TopicMeta>),
    /// A block of producer ids: `first .. first + count`.
    ProducerIds {
        /// The first id of the block.
        first: ProducerId,
        /// Ids in the block.
        count: i64,
    },
}

/// A new topic as the leader is asked for it (CreateTopics).
#[derive(Clone, Debug)]
pub struct NewTopic {
    /// A fresh random id (the leader draws it; `apply` refuses one in use).
    pub id: TopicId,
    /// The name.
    pub name: TopicName,
    /// Partitions, when no explicit assignment is given (ignored otherwise).
    pub partitions: u32,
    /// Replicas per partition; `None` for the cluster's default. Ignored with an explicit
    /// assignment.
    pub replication_factor: Option<u16>,
    /// The client's replica assignment, one list per partition, if it gave one.
    pub assignments: Option<Vec<Vec<NodeId>>>,
    /// Config overrides.
    pub configs: Vec<(String, String)>,
}

impl CoreCommand {
    /// The [`CoreCommand::CreateTopic`] for `topic`: replicas placed (or the client's checked)
    /// and every check of `apply` run against `state`.
    ///
    /// # Errors
    /// What `apply` would answer, or placement's refusal.
    pub fn create_topic(state: &CoreState, topic: NewTopic) -> Result<CoreCommand, MetaError> {
        CoreCommand::plan_topic(state, topic).map(|(command, _)| command)
    }

    /// [`CoreCommand::create_topic`] and the topic the command would create: what a
    /// CreateTopics with `validate_only` answers.
    ///
    /// # Errors
    /// As [`CoreCommand::create_topic`].
    pub fn plan_topic(
        state: &CoreState,
        topic: NewTopic,
    ) -> Result<(CoreCommand, Arc<TopicMeta>), MetaError> {
        let assignments = match topic.assignments {
            Some(assignments) => assignments,
            None => {
                state.topics.check_create(&topic.name, topic.partitions)?;
                place(state, topic.partitions, topic.replication_factor)?
            }
        };
        let created = checked_topic(state, topic.id, &topic.name, &topic.configs, &assignments)?;
        let command = CoreCommand::CreateTopic {
            id: topic.id,
            name: topic.name,
            configs: topic.configs,
            assignments,
        };
        Ok((command, created))
    }

    /// The [`CoreCommand::CreatePartitions`] raising `name` to `count` partitions: the new
    /// partitions placed with the topic's replication factor (or the client's assignment
    /// checked) and every check of `apply` run against `state`.
    ///
    /// # Errors
    /// What `apply` would answer, or placement's refusal.
    pub fn create_partitions(
        state: &CoreState,
        name: TopicName,
        count: u32,
        assignments: Option<Vec<Vec<NodeId>>>,
    ) -> Result<CoreCommand, MetaError> {
        let grown = state.topics.grown(name.as_str(), count)?;
        let current = state.topic(name.as_str()).map_or(0, |topic| topic.partitions);
        let assignments = match assignments {
            Some(assignments) => assignments,
            None => place(state, count - current, Some(grown.replication_factor))?,
        };
        checked_growth(state, &name, count, &assignments)?;
        Ok(CoreCommand::CreatePartitions { name, count, assignments })
    }
}

impl CoreCommand {
    /// Checks that this command would apply to `state` now, changing nothing: the leader's
    /// check before it proposes a command it did not build with [`CoreCommand::create_topic`]
    /// or [`CoreCommand::create_partitions`], so a refused request never reaches the log.
    ///
    /// # Errors
    /// What [`apply`] would answer on `state`.
    pub fn check(&self, state: &CoreState) -> Result<(), MetaError> {
        match self {
            CoreCommand::AlterConfigs { name, changes } => {
                state.topics.altered(name.as_str(), changes).map(drop)
            }
            CoreCommand::DeleteTopic { name } => state.topics.check_delete(name.as_str()).map(drop),
            CoreCommand::FinishDeletion { .. } => Ok(()),
            CoreCommand::CreateTopic { id, name, configs, assignments } => {
                checked_topic(state, *id, name, configs, assignments).map(drop)
            }
            CoreCommand::CreatePartitions { name, count, assignments } => {
                checked_growth(state, name, *count, assignments).map(drop)
            }
            // Rare commands of the core itself (start, liveness, producer ids): a trial apply
            // on a copy is their check.
            CoreCommand::SetClusterId { .. }
            | CoreCommand::RegisterNode { .. }
            | CoreCommand::SetEtcdAddress { .. }
            | CoreCommand::SetLiveness { .. }
            | CoreCommand::AllocateProducerIds { .. }
            | CoreCommand::Import { .. } => apply(&mut state.clone(), self).map(drop),
        }
    }
}

/// Applies `command` to `state`: the core's state machine transition. On an error nothing
/// changed.
///
/// # Errors
/// The refusal, exactly as the leader's check would give it on the same state:
/// [`MetaError::Refused`] for commands that contradict the state (another cluster id, an
/// unknown node, an address out of bounds, a topic id in use, an import into a non-empty core, producer ids exhausted),
/// and the topic errors of the single-node store otherwise.
pub fn apply(state: &mut CoreState, command: &CoreCommand) -> Result<CoreReply, MetaError> {
    match command {
        CoreCommand::SetClusterId { id } => set_cluster_id(state, *id),
        CoreCommand::RegisterNode { node, peer_address } => {
            register_node(state, node, peer_address)
        }
        CoreCommand::SetEtcdAddress { node, address } => {
            set_etcd_address(state, *node, address.as_deref())
        }
        CoreCommand::SetLiveness { node, liveness } => set_liveness(state, *node, *liveness),
        CoreCommand::CreateTopic { id, name, configs, assignments } => {
            let topic = checked_topic(state, *id, name, configs, assignments)?;
            state.topics.put(&topic);
            let assigned = assign(state, assignments);
            state.assignments.insert(topic.id, assigned);
            Ok(CoreReply::Topic(topic))
        }
        CoreCommand::CreatePartitions { name, count, assignments } => {
            let topic = checked_growth(state, name, *count, assignments)?;
            state.topics.put(&topic);
            let assigned = assign(state, assignments);
            state.assignments.entry(topic.id).or_default().extend(assigned);
            Ok(CoreReply::Topic(topic))
        }
        CoreCommand::AlterConfigs { name, changes } => {
            let (topic, changed) = state.topics.altered(name.as_str(), changes)?;
            if changed {
                state.topics.put(&topic);
            }
            Ok(CoreReply::Topic(topic))
        }
        CoreCommand::DeleteTopic { name } => {
            let topic = state.topics.check_delete(name.as_str())?;
            state.topics.delete(&topic);
            Ok(CoreReply::Topic(topic))
        }
        CoreCommand::FinishDeletion { id } => {
            if state.topics.deleting.remove(id).is_some() {
                state.assignments.remove(id);
            }
            Ok(CoreReply::Done)
        }
        CoreCommand::AllocateProducerIds { node } => allocate_producer_ids(state, *node),
        CoreCommand::Import { node, topics, deleting } => import(state, *node, topics, deleting),
    }
}

fn set_cluster_id(state: &mut CoreState, id: [u8; 16]) -> Result<CoreReply, MetaError> {
    match state.cluster_id {
        Some(current) if current != id => Err(MetaError::Refused(format!(
            "the cluster id is already {}, not {}",
            hex(&current),
            hex(&id)
        ))),
        _ => {
            state.cluster_id = Some(id);
            Ok(CoreReply::Done)
        }
    }
}

fn register_node(
    state: &mut CoreState,
    node: &NodeMeta,
    peer_address: &str,
) -> Result<CoreReply, MetaError> {
    check_node(node, peer_address).map_err(MetaError::Refused)?;
    if !state.nodes.contains_key(&node.id) && state.nodes.len() >= CLUSTER_NODES_MAX {
        return Err(MetaError::Refused(format!(
            "the cluster already has {CLUSTER_NODES_MAX} nodes, the most it may"
        )));
    }
    // The etcd address is set by its own command: a registration keeps it.
    let etcd_address = state.nodes.get(&node.id).and_then(|record| record.etcd_address.clone());
    let record = NodeRecord {
        meta: node.clone(),
        peer_address: peer_address.to_owned(),
        etcd_address,
        liveness: Liveness::Alive,
    };
    state.nodes.insert(node.id, record);
    Ok(CoreReply::Done)
}

fn set_etcd_address(
    state: &mut CoreState,
    node: NodeId,
    address: Option<&str>,
) -> Result<CoreReply, MetaError> {
    check_etcd_address(node, address).map_err(MetaError::Refused)?;
    let record = state.nodes.get_mut(&node).ok_or_else(|| unknown_node(node))?;
    record.etcd_address = address.map(str::to_owned);
    Ok(CoreReply::Done)
}

/// Checks a node's etcd address: absent, or 1 to `NODE_ADDRESS_BYTES_MAX` bytes.
pub(crate) fn check_etcd_address(node: NodeId, address: Option<&str>) -> Result<(), String> {
    match address {
        Some(address) if address.is_empty() || address.len() > NODE_ADDRESS_BYTES_MAX => {
            Err(format!(
                "node {node}: etcd address of {} bytes (1 to {NODE_ADDRESS_BYTES_MAX})",
                address.len()
            ))
        }
        _ => Ok(()),
    }
}

/// Checks a node's registration: a Kafka broker id, addresses and rack within their bounds.
pub(crate) fn check_node(node: &NodeMeta, peer_address: &str) -> Result<(), String> {
    if node.id.0 > i32::MAX as u64 {
        return Err(format!("node id {} is above i32::MAX (a Kafka broker id)", node.id));
    }
    let text = |what: &str, value: &str, max: usize| {
        if value.is_empty() || value.len() > max {
            Err(format!("node {}: {what} of {} bytes (1 to {max})", node.id, value.len()))
        } else {
            Ok(())
        }
    };
    text("kafka host", &node.host, NODE_ADDRESS_BYTES_MAX)?;
    text("peer address", peer_address, NODE_ADDRESS_BYTES_MAX)?;
    if let Some(rack) = &node.rack {
        text("rack", rack, RACK_BYTES_MAX)?;
    }
    Ok(())
}

fn set_liveness(
    state: &mut CoreState,
    node: NodeId,
    liveness: Liveness,
) -> Result<CoreReply, MetaError> {
    let record = state.nodes.get_mut(&node).ok_or_else(|| unknown_node(node))?;
    record.liveness = liveness;
    Ok(CoreReply::Done)
}

fn allocate_producer_ids(state: &mut CoreState, node: NodeId) -> Result<CoreReply, MetaError> {
    if !state.nodes.contains_key(&node) {
        return Err(unknown_node(node));
    }
    let first = state.next_producer_id;
    let next = first
        .checked_add(PRODUCER_IDS_PER_BLOCK)
        .ok_or_else(|| MetaError::Refused("producer ids are exhausted".into()))?;
    state.next_producer_id = next;
    Ok(CoreReply::ProducerIds { first: ProducerId(first), count: PRODUCER_IDS_PER_BLOCK })
}

/// The topic a [`CoreCommand::CreateTopic`] makes, if it applies to `state`. Kafka's order of
/// checks: existence and name, partitions, replication factor (the assignment), configs.
fn checked_topic(
    state: &CoreState,
    id: TopicId,
    name: &TopicName,
    configs: &[(String, String)],
    assignments: &[Vec<NodeId>],
) -> Result<Arc<TopicMeta>, MetaError> {
    let partitions = u32::try_from(assignments.len()).unwrap_or(u32::MAX);
    state.topics.check_create(name, partitions)?;
    let replication_factor = check_assignments(state, assignments, 0, None)?;
    let configs = TopicConfigs::from_overrides(configs)?;
    if id.as_uuid().is_nil() || !state.topics.id_is_free(id) {
        return Err(MetaError::Refused(format!("topic id {id} is in use or reserved")));
    }
    check_groups(state, assignments.len())?;
    Ok(Arc::new(TopicMeta { id, name: name.clone(), partitions, replication_factor, configs }))
}

/// The topic a [`CoreCommand::CreatePartitions`] makes, if it applies to `state`.
fn checked_growth(
    state: &CoreState,
    name: &TopicName,
    count: u32,
    assignments: &[Vec<NodeId>],
) -> Result<Arc<TopicMeta>, MetaError> {
    let grown = state.topics.grown(name.as_str(), count)?;
    let current = state.topic(name.as_str()).map_or(0, |topic| topic.partitions);
    let added = count - current;
    if assignments.len() != added as usize {
        return Err(MetaError::InvalidReplicaAssignment(format!(
            "Attempted to add {added} additional partition(s), but only {} assignment(s) were \
             specified.",
            assignments.len()
        )));
    }
    check_assignments(state, assignments, current, Some(grown.replication_factor))?;
    check_groups(state, assignments.len())?;
    Ok(grown)
}

/// Checks that `count` more group ids can be handed out.
fn check_groups(state: &CoreState, count: usize) -> Result<(), MetaError> {
    match state.next_group.checked_add(count as u64) {
        Some(_) => Ok(()),
        None => Err(MetaError::Refused("group ids are exhausted".into())),
    }
}

/// Assignments of the next group ids to `replicas` (checked by [`check_groups`]).
fn assign(state: &mut CoreState, replicas: &[Vec<NodeId>]) -> Vec<PartitionAssignment> {
    replicas
        .iter()
        .map(|replicas| {
            let group = GroupId(state.next_group);
            state.next_group += 1;
            PartitionAssignment { group, replicas: replicas.clone() }
        })
        .collect()
}

/// [`CoreCommand::Import`]: only into a core without topics, from a node that is registered,
/// of topics with one replica each (what a single node holds).
fn import(
    state: &mut CoreState,
    node: NodeId,
    live: &[TopicMeta],
    deleting: &[TopicMeta],
) -> Result<CoreReply, MetaError> {
    if !state.nodes.contains_key(&node) {
        return Err(unknown_node(node));
    }
    if !state.topics.live.is_empty() || !state.topics.deleting.is_empty() {
        return Err(MetaError::Refused(
            "the core already holds topics; a node's local metadata is imported only once, \
             into an empty core"
                .into(),
        ));
    }
    if let Some(topic) = live.iter().chain(deleting).find(|topic| topic.replication_factor != 1) {
        return Err(MetaError::Refused(format!(
            "imported topic {} has replication factor {}; a single node's topics have 1",
            topic.name, topic.replication_factor
        )));
    }
    let topics = Topics::from_lists(live.to_vec(), deleting.to_vec())
        .map_err(|reason| MetaError::Refused(format!("import: {reason}")))?;
    let partitions: u64 =
        topics.live.values().chain(topics.deleting.values()).map(|t| u64::from(t.partitions)).sum();
    check_groups(state, usize::try_from(partitions).unwrap_or(usize::MAX))?;
    let every: Vec<Arc<TopicMeta>> =
        topics.live.values().chain(topics.deleting.values()).cloned().collect();
    state.topics = topics;
    for topic in every {
        let replicas = vec![vec![node]; topic.partitions as usize];
        let assigned = assign(state, &replicas);
        state.assignments.insert(topic.id, assigned);
    }
    Ok(CoreReply::Done)
}

fn unknown_node(node: NodeId) -> MetaError {
    MetaError::Refused(format!("node {node} is not registered"))
}

/// `bytes` as lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
