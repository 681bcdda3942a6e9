//! cairn-meta: cluster metadata behind one interface, [`MetadataStore`].
//!
//! Topics (id, partition count, replication factor, configs), the nodes of the cluster and who
//! leads each partition. Today [`LocalMetadata`] keeps them in one file on the node; the
//! Raft-replicated consistent core implements the same trait next, so nothing above this crate
//! may assume a single node: leaders and the node list always come from here. The core's state
//! machine is here already, pure: [`CoreState`], [`CoreCommand`], [`apply`], placement
//! ([`place`]) and the binary encodings of commands and snapshots.

mod catalog;
mod cluster;
mod configs;
mod local;
mod topic;

use std::future::Future;
use std::sync::Arc;

use cairn_types::{NodeId, ProducerId};

pub use cluster::{
    CodecError, CoreCommand, CoreReply, CoreState, GroupId, Liveness, LogPosition, NewTopic,
    NodeRecord, PartitionAssignment, apply, check_assignments, place,
};
pub use configs::{
    CONFIG_KEYS, CleanupPolicy, CompactionConfig, CompressionType, ConfigEntry, ConfigError,
    ConfigSource, TimestampType, TopicConfigs,
};
pub use local::{LOCAL_METADATA_FILE, LocalMetadata};
pub use topic::{NodeMeta, PartitionLeader, TopicId, TopicMeta, TopicName, TopicNameError};

/// A requested change of one topic config (Kafka IncrementalAlterConfigs semantics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigChange {
    /// Set `key` to `value`.
    Set {
        /// Config name, e.g. `retention.ms`.
        key: String,
        /// New value, as text.
        value: String,
    },
    /// Remove `key`, back to its default.
    Delete {
        /// Config name.
        key: String,
    },
    /// Add the items of `value` (comma-separated) that a list config `key` does not hold
    /// (Kafka's APPEND).
    Append {
        /// Config name: a list config (`cleanup.policy`).
        key: String,
        /// Items to add.
        value: String,
    },
    /// Remove the items of `value` (comma-separated) from a list config `key` (Kafka's
    /// SUBTRACT).
    Subtract {
        /// Config name: a list config (`cleanup.policy`).
        key: String,
        /// Items to remove.
        value: String,
    },
}

/// The [`TopicSpec::replication_factor`] that asks for the store's default: min(3, live nodes)
/// with a consistent core, 1 on a node without peers (Kafka's -1).
pub const REPLICATION_FACTOR_DEFAULT: u16 = 0;

/// What creating a topic needs.
#[derive(Clone, Debug)]
pub struct TopicSpec {
    /// Validated name.
    pub name: TopicName,
    /// Number of partitions, at least 1.
    pub partitions: u32,
    /// Replicas per partition; [`REPLICATION_FACTOR_DEFAULT`] for the store's default
    /// (min(3, live nodes)).
    pub replication_factor: u16,
    /// Initial config overrides (validated by the store).
    pub configs: Vec<(String, String)>,
    /// The client's replica lists (Kafka's manual assignment) of partitions `0..n`, each in
    /// preference order (the first is the preferred leader); `None` to have the store place
    /// the replicas. When given, the partition count is the number of lists and the
    /// replication factor their length: `partitions` and `replication_factor` must say the
    /// same (the Kafka layer sets them so).
    pub assignments: Option<Vec<Vec<NodeId>>>,
}

/// Errors of metadata operations; each maps to one Kafka error code in cairn-kafka.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// `TOPIC_ALREADY_EXISTS`.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// `UNKNOWN_TOPIC_OR_PARTITION`.
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    /// `INVALID_TOPIC_EXCEPTION`: the name collides with an existing topic's once `.` and `_`
    /// are treated alike (see [`TopicName::collision_key`]). The message names both topics.
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    /// `POLICY_VIOLATION`: the cluster already holds `cairn_types::limits::TOPICS_MAX` topics.
    #[error("the cluster already holds {limit} topics, the most it may")]
    TooManyTopics {
        /// The limit.
        limit: usize,
    },
    /// `INVALID_PARTITIONS`: zero, above the limit, or not more than today (create partitions).
    #[error("invalid partition count {count}: {reason}")]
    InvalidPartitions {
        /// Requested count.
        count: i64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// `INVALID_REPLICATION_FACTOR`: zero, more replicas than live nodes, or more than
    /// `cairn_types::limits::REPLICATION_FACTOR_MAX`.
    #[error("invalid replication factor {factor}: {reason}")]
    InvalidReplicationFactor {
        /// Requested factor.
        factor: i64,
        /// Why it is refused (e.g. how many nodes are available).
        reason: String,
    },
    /// `INVALID_REPLICA_ASSIGNMENT`: an explicit replica assignment (CreateTopics or
    /// CreatePartitions `assignments`) names an unknown or dead node, repeats a node, leaves a
    /// partition without replicas, or gives partitions different replica counts.
    /// The message is Kafka's own sentence, as a client compares it.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// `BROKER_NOT_AVAILABLE`: no live node to place a replica on. Retriable: nodes come back.
    #[error("no node available: {0}")]
    BrokerNotAvailable(String),
    /// `UNKNOWN_SERVER_ERROR`: the consistent core refused a command that contradicts its state
    /// (a cluster id already set to another, an unknown node, a topic id in use, an import into
    /// a core that holds topics). A correct leader does not propose one; nothing changed.
    #[error("metadata command refused: {0}")]
    Refused(String),
    /// `INVALID_CONFIG`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `NOT_CONTROLLER`: this node is not the consistent core's leader and cannot hand the
    /// change to one (none is known, or the forward failed). Retriable: a leader is elected or
    /// found; nothing changed.
    #[error("no core leader took the change: {0}")]
    NotController(String),
    /// `REQUEST_TIMED_OUT`: the change was proposed but its outcome was not known in time: it
    /// may still apply. Retriable, as Kafka's unknown outcomes are.
    #[error("the metadata change timed out: {0}")]
    TimedOut(String),
    /// `KAFKA_STORAGE_ERROR`: the metadata could not be read, or a change could not be made
    /// durable (the change is then not visible). If the outcome on disk is unknown the store is
    /// poisoned and refuses every later change until the process restarts; a failure that left
    /// the old state intact (e.g. a full disk) may be retried.
    #[error("metadata storage failed: {0}")]
    Storage(String),
}

/// The cluster metadata. Reads are local and cheap (a snapshot); writes are durable before they
/// return (on the consistent core: committed by a majority).
pub trait MetadataStore: Send + Sync + 'static {
    /// Every topic, sorted by name.
    fn topics(&self) -> Vec<Arc<TopicMeta>>;

    /// One topic by name.
    fn topic(&self, name: &str) -> Option<Arc<TopicMeta>>;

    /// The nodes of the cluster.
    fn nodes(&self) -> Vec<NodeMeta>;

    /// The node that takes metadata changes (Kafka's controller): the consistent core's
    /// leader; `None` while none is known.
    fn controller(&self) -> Option<NodeId>;

    /// Leader, replicas and leader epoch of a partition.
    fn leader(&self, topic: &str, partition: u32) -> Option<PartitionLeader>;

    /// Brings this node's reads up to every change committed before the call (a read index
    /// from the consistent core's leader, then this node's apply through it), for a read that
    /// must not miss a change made through another node. A store whose reads are always
    /// current (a single node's) has nothing to do.
    ///
    /// # Errors
    /// [`MetaError::NotController`] or [`MetaError::TimedOut`] when the leader cannot say;
    /// reads then stay as they were.
    fn sync(&self) -> impl Future<Output = Result<(), MetaError>> + Send {
        std::future::ready(Ok(()))
    }

    /// A number that grows with every change this node applies (0 for a store that changes
    /// only through this node's own calls).
    fn generation(&self) -> u64 {
        0
    }

    /// Resolves once [`MetadataStore::generation`] is past `seen`: a change made through
    /// another node reached this one. Never, for a store that changes only through its own
    /// calls.
    fn changed_since(&self, seen: u64) -> impl Future<Output = ()> + Send {
        let _ = seen;
        std::future::pending()
    }

    /// Creates a topic (validating name, counts, the assignment and configs).
    fn create_topic(
        &self,
        spec: TopicSpec,
    ) -> impl Future<Output = Result<Arc<TopicMeta>, MetaError>> + Send;

    /// Checks that [`MetadataStore::create_topic`] of `spec` would be accepted now (placement
    /// included), changing nothing; returns the topic it would create (its id not the one a
    /// creation draws). CreateTopics with `validate_only`.
    ///
    /// # Errors
    /// As `create_topic` would refuse.
    fn check_create_topic(&self, spec: &TopicSpec) -> Result<Arc<TopicMeta>, MetaError>;

    /// Deletes a topic; returns what it was. The name is free at once; the topic stays in
    /// [`MetadataStore::pending_deletions`], in the same atomic change, until
    /// [`MetadataStore::finish_deletion`] says its data is gone.
    fn delete_topic(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Arc<TopicMeta>, MetaError>> + Send;

    /// Raises a topic's partition count to `count`; the new partitions' replicas are
    /// `assignments` (one list per new partition, in preference order) or placed by the store.
    fn create_partitions(
        &self,
        name: &str,
        count: u32,
        assignments: Option<Vec<Vec<NodeId>>>,
    ) -> impl Future<Output = Result<Arc<TopicMeta>, MetaError>> + Send;

    /// Checks that [`MetadataStore::create_partitions`] with these arguments would be accepted
    /// now, changing nothing; returns the topic as it would then be.
    ///
    /// # Errors
    /// As `create_partitions` would refuse.
    fn check_create_partitions(
        &self,
        name: &str,
        count: u32,
        assignments: Option<&[Vec<NodeId>]>,
    ) -> Result<Arc<TopicMeta>, MetaError>;

    /// Deleted topics whose data may still be on disk: their names are free, their ids are not
    /// reused. The broker removes their partition directories and then calls
    /// [`MetadataStore::finish_deletion`]; a start finishes them before serving.
    fn pending_deletions(&self) -> Vec<Arc<TopicMeta>>;

    /// Forgets the pending deletion of topic `id` once its data is gone (nothing if there is
    /// none).
    fn finish_deletion(&self, id: TopicId) -> impl Future<Output = Result<(), MetaError>> + Send;

    /// Hands this node the next block of producer ids (`first`, `count`): never one handed out
    /// before, to any node (the consistent core's `AllocateProducerIds`).
    ///
    /// # Errors
    /// [`MetaError::NotController`] or [`MetaError::TimedOut`] when the core cannot answer;
    /// [`MetaError::Refused`] when the ids are exhausted, or by a store that allocates none.
    fn allocate_producer_ids(
        &self,
    ) -> impl Future<Output = Result<(ProducerId, i64), MetaError>> + Send;

    /// Applies config changes atomically (all or none).
    fn alter_configs(
        &self,
        name: &str,
        changes: Vec<ConfigChange>,
    ) -> impl Future<Output = Result<Arc<TopicMeta>, MetaError>> + Send;
}
