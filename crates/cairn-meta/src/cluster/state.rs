//! [`CoreState`]: what the consistent core's state machine holds (RFC 0003 §5), and its nouns:
//! [`NodeRecord`] and [`Liveness`], [`PartitionAssignment`] and [`GroupId`], [`LogPosition`].
//!
//! The state changes only through [`crate::apply`]; everything here reads it. It knows nothing
//! of Raft: the applied position is two opaque numbers the Raft layer sets.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_types::{NodeId, ProducerId};

use crate::catalog::Topics;
use crate::{MetaError, NodeMeta, TopicId, TopicMeta};

/// A Raft group's id. `0` is the consistent core; partitions get `1, 2, …` in the order their
/// assignments are applied, and an id is never reused, so a group's directory and log can never
/// be mistaken for a later partition's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub u64);

impl GroupId {
    /// The consistent core's own group.
    pub const CORE: GroupId = GroupId(0);
}

/// Whether the core leader considers a node up. Written only on transitions (RFC 0003 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Heartbeats arrive: replicas may be placed on it.
    Alive,
    /// Silent for longer than the grace period: no new replicas; its replicas are offline.
    Dead,
}

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// Id, Kafka host and port, rack: what clients see.
    pub meta: NodeMeta,
    /// Where peers reach it (`host:port` of `--peer-listen`).
    pub peer_address: String,
    /// Where its etcd v3 API listens (`host:port` of `--etcd-listen`), if it serves one: the
    /// client URL etcd's MemberList gives for it. Set by `SetEtcdAddress`, kept by a later
    /// `RegisterNode`.
    pub etcd_address: Option<String>,
    /// Up or down, as the core leader last committed.
    pub liveness: Liveness,
}

/// Where one partition lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionAssignment {
    /// Its Raft group.
    pub group: GroupId,
    /// Its replicas (the group's voters) in preference order, distinct, at least one.
    pub replicas: Vec<NodeId>,
}

impl PartitionAssignment {
    /// The replica that should lead: the first. It campaigns at once when the group starts.
    #[must_use]
    pub fn preferred_leader(&self) -> NodeId {
        // Every assignment is checked non-empty before it enters a state (`apply`, snapshots).
        self.replicas.first().copied().unwrap_or_default()
    }
}

/// A position in the core's Raft log: term and index, opaque here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    /// The entry's term.
    pub term: u64,
    /// The entry's index.
    pub index: u64,
}

/// The consistent core's state. Changed only by [`crate::apply`] (and
/// [`CoreState::set_applied`]); equal states encode to equal snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreState {
    /// The cluster's id, set once by the first core leader; peers with another are refused.
    pub(crate) cluster_id: Option<[u8; 16]>,
    /// Registered nodes, by id. At most `CLUSTER_NODES_MAX`.
    pub(crate) nodes: BTreeMap<NodeId, NodeRecord>,
    /// Live topics and pending deletions, under the same rules as the single node's.
    pub(crate) topics: Topics,
    /// Every topic's assignments, live or being deleted, by topic id: exactly one per
    /// partition, in partition order.
    pub(crate) assignments: BTreeMap<TopicId, Vec<PartitionAssignment>>,
    /// The group id the next assignment gets; above every group id in the state.
    pub(crate) next_group: u64,
    /// The first producer id of the next block handed out; never decreases.
    pub(crate) next_producer_id: i64,
    /// The last log entry applied, if any.
    pub(crate) applied: Option<LogPosition>,
}

impl Default for CoreState {
    fn default() -> CoreState {
        CoreState {
            cluster_id: None,
            nodes: BTreeMap::new(),
            topics: Topics::default(),
            assignments: BTreeMap::new(),
            next_group: 1,
            next_producer_id: 0,
            applied: None,
        }
    }
}

impl CoreState {
    /// The cluster id, once set.
    #[must_use]
    pub fn cluster_id(&self) -> Option<[u8; 16]> {
        self.cluster_id
    }

    /// Every registered node, by id.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values()
    }

    /// One registered node.
    #[must_use]
    pub fn node(&self, id: NodeId) -> Option<&NodeRecord> {
        self.nodes.get(&id)
    }

    /// Every live topic, sorted by name.
    #[must_use]
    pub fn topics(&self) -> Vec<Arc<TopicMeta>> {
        self.topics.live.values().cloned().collect()
    }

    /// One live topic by name.
    #[must_use]
    pub fn topic(&self, name: &str) -> Option<Arc<TopicMeta>> {
        self.topics.live.get(name).cloned()
    }

    /// Deleted topics whose data may still be on disk, by id.
    #[must_use]
    pub fn pending_deletions(&self) -> Vec<Arc<TopicMeta>> {
        self.topics.deleting.values().cloned().collect()
    }

    /// The assignments of topic `id` (live or being deleted), one per partition.
    #[must_use]
    pub fn assignments(&self, id: TopicId) -> &[PartitionAssignment] {
        self.assignments.get(&id).map_or(&[], Vec::as_slice)
    }

    /// The assignment of one partition of a live topic.
    #[must_use]
    pub fn assignment(&self, topic: &str, partition: u32) -> Option<&PartitionAssignment> {
        let topic = self.topics.live.get(topic)?;
        self.assignments(topic.id).get(usize::try_from(partition).ok()?)
    }

    /// A live topic as raising it to `count` partitions would leave it, changing nothing
    /// (CreatePartitions with `validate_only`).
    ///
    /// # Errors
    /// [`MetaError::UnknownTopic`], or [`MetaError::InvalidPartitions`] for a count not above
    /// today's or above the limit.
    pub fn check_create_partitions(
        &self,
        name: &str,
        count: u32,
    ) -> Result<Arc<TopicMeta>, MetaError> {
        self.topics.grown(name, count)
    }

    /// The first producer id the next allocation hands out.
    #[must_use]
    pub fn next_producer_id(&self) -> ProducerId {
        ProducerId(self.next_producer_id)
    }

    /// The last log position applied, as the Raft layer set it.
    #[must_use]
    pub fn applied(&self) -> Option<LogPosition> {
        self.applied
    }

    /// Records that the entry at `position` is applied: every entry, commands and Raft's own
    /// (blank, membership), moves it.
    ///
    /// # Panics
    /// If `position` is not after the last applied one: Raft applies each entry once, in
    /// order, so anything else is a bug of the caller (fail-stop).
    pub fn set_applied(&mut self, position: LogPosition) {
        assert!(
            self.applied.is_none_or(|applied| applied < position),
            "core entries applied out of order: {position:?} after {:?}",
            self.applied
        );
        self.applied = Some(position);
    }

    /// Registered nodes that are alive, by id, with their racks.
    pub(crate) fn live_nodes(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values().filter(|node| node.liveness == Liveness::Alive)
    }

    /// Leaders and replicas per node over every live topic's assignments.
    pub(crate) fn load(&self) -> BTreeMap<NodeId, Load> {
        let mut load: BTreeMap<NodeId, Load> = BTreeMap::new();
        for topic in self.topics.live.values() {
            for assignment in self.assignments(topic.id) {
                for (position, &node) in assignment.replicas.iter().enumerate() {
                    let entry = load.entry(node).or_default();
                    entry.replicas += 1;
                    entry.leaders += u64::from(position == 0);
                }
            }
        }
        load
    }
}

/// How much of the cluster's work a node carries: what placement balances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Load {
    /// Partitions it is the preferred leader of.
    pub(crate) leaders: u64,
    /// Partitions it is a replica of, leaders included.
    pub(crate) replicas: u64,
}
