//! [`ClusterStatus`]: the JSON document of the admin endpoint `GET /cluster`, which
//! `cairn cluster status` reads, and [`ClusterView`], how the admin server gets it from the
//! node's consistent core.
//!
//! The document is the cluster as the answering node sees it: the core's leader and term as it
//! knows them, its own commit and apply of the core's log, and every registered node with its
//! addresses, rack, liveness (as the core leader last committed it) and whether it is a core
//! voter. Per-partition leaders and lag are not part of it yet: they come with multi-node
//! partitions, as a new `partitions` field; readers ignore fields they do not know.

use std::fmt;
use std::sync::Arc;

use cairn_meta::{Liveness, NodeRecord};
use cairn_raft::core_group::CoreStatus;
use serde::{Deserialize, Serialize};

/// The shape version of [`ClusterStatus`]; a reader refuses another.
pub const CLUSTER_STATUS_VERSION: u32 = 1;

/// `GET /cluster`: the cluster as one node sees it (module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// [`CLUSTER_STATUS_VERSION`].
    pub version: u32,
    /// The cluster id (32 hex digits), once the core holds one.
    pub cluster_id: Option<String>,
    /// The node that answered.
    pub node_id: u64,
    /// The consistent core as that node sees it.
    pub core: CoreView,
    /// Every registered node, by id.
    pub nodes: Vec<NodeView>,
}

/// The consistent core as one node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreView {
    /// Its leader (Kafka's controller), if the node knows one.
    pub leader: Option<u64>,
    /// Its current term as the node knows it.
    pub term: u64,
    /// The last core log entry the node knows committed.
    pub committed_index: Option<u64>,
    /// The last core log entry the node applied.
    pub applied_index: Option<u64>,
    /// Its voters.
    pub voters: Vec<u64>,
}

/// One registered node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Its id (Kafka broker id).
    pub id: u64,
    /// Its advertised Kafka address, `host:port`.
    pub kafka: String,
    /// Its peer address (`--peer-listen`), or `none` for a single node without one.
    pub peer: String,
    /// Its rack, if it has one.
    pub rack: Option<String>,
    /// Up or down, as the core leader last committed.
    pub liveness: LivenessView,
    /// Whether it is a voter of the core.
    pub voter: bool,
}

/// [`Liveness`] in the document: `"alive"` or `"dead"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LivenessView {
    /// Heard from within the grace period.
    Alive,
    /// Silent for longer than the grace period.
    Dead,
}

impl ClusterStatus {
    /// The document of `status` (from [`cairn_raft::core_group::CoreMetadata::status`]).
    #[must_use]
    pub fn of(status: &CoreStatus) -> ClusterStatus {
        let voters: Vec<u64> = status.voters.iter().map(|id| id.0).collect();
        let nodes = status
            .state
            .nodes()
            .map(|node| NodeView::of(node, voters.contains(&node.meta.id.0)))
            .collect();
        ClusterStatus {
            version: CLUSTER_STATUS_VERSION,
            cluster_id: status.state.cluster_id().map(|id| hex(&id)),
            node_id: status.node.0,
            core: CoreView {
                leader: status.leader.map(|id| id.0),
                term: status.term,
                committed_index: status.committed_index,
                applied_index: status.applied_index,
                voters,
            },
            nodes,
        }
    }
}

impl NodeView {
    fn of(node: &NodeRecord, voter: bool) -> NodeView {
        let host = &node.meta.host;
        let kafka = if host.contains(':') {
            format!("[{host}]:{}", node.meta.port)
        } else {
            format!("{host}:{}", node.meta.port)
        };
        NodeView {
            id: node.meta.id.0,
            kafka,
            peer: node.peer_address.clone(),
            rack: node.meta.rack.clone(),
            liveness: match node.liveness {
                Liveness::Alive => LivenessView::Alive,
                Liveness::Dead => LivenessView::Dead,
            },
            voter,
        }
    }
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Where the admin server gets a [`ClusterStatus`] when asked: a function over the node's core.
#[derive(Clone)]
pub struct ClusterView(Arc<dyn Fn() -> ClusterStatus + Send + Sync>);

impl ClusterView {
    /// A view whose status is `status()`, called on each `GET /cluster`; it must be cheap and
    /// must not block (the core's status reads published values).
    pub fn new(status: impl Fn() -> ClusterStatus + Send + Sync + 'static) -> ClusterView {
        ClusterView(Arc::new(status))
    }

    /// The status now.
    #[must_use]
    pub fn status(&self) -> ClusterStatus {
        (self.0)()
    }
}

impl fmt::Debug for ClusterView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterView")
    }
}
