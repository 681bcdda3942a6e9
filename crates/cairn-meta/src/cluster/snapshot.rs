//! The versioned encoding of a whole [`CoreState`]: the consistent core's Raft snapshot
//! (RFC 0003 §5: built every so many entries, sent whole to a lagging replica).
//!
//! ```text
//! version: u8 (= 2; 1 is still read)
//! cluster_id: optional [u8; 16]
//! applied: optional (term: u64, index: u64)
//! next_group: u64, next_producer_id: i64
//! node_count: u32 (<= CLUSTER_NODES_MAX), node_count × node_record
//! live_count: u32, live_count × (topic, topic.partitions × assignment)
//! deleting_count: u32, deleting_count × (topic, topic.partitions × assignment)
//! node_record = node, peer_address: str, liveness: u8, etcd_address: optional str
//! assignment = group: u64, replicas: u8, replicas × node_id: u64
//! ```
//!
//! Version 1, written before nodes had an etcd address, is version 2 without `etcd_address`
//! in `node_record`; it decodes to nodes without one. Only version 2 is written.
//!
//! Nodes by increasing id, live topics by name, deleting topics by id: equal states give equal
//! bytes. Decoding checks every count against the bytes left and every invariant `apply` keeps
//! (registered replicas, distinct and within the factor, unique group ids below `next_group`,
//! addresses within their bounds, the topic rules of the single node), so a restored state is
//! one `apply` could have made.

use std::collections::BTreeSet;
use std::sync::Arc;

use cairn_types::NodeId;
use cairn_types::limits::{
    CLUSTER_NODES_MAX, CORE_SNAPSHOT_BYTES_MAX, REPLICATION_FACTOR_MAX, TOPICS_MAX,
};

use crate::TopicMeta;
use crate::catalog::Topics;
use crate::cluster::codec::{CodecError, NODE_ID_BYTES, Reader, TOPIC_BYTES_MIN, Writer};
use crate::cluster::command::{check_etcd_address, check_node};
use crate::cluster::state::{
    CoreState, GroupId, Liveness, LogPosition, NodeRecord, PartitionAssignment,
};

/// The version written: node records carry their etcd address.
const VERSION: u8 = 2;
/// The version before nodes had an etcd address, still read.
const VERSION_NO_ETCD: u8 = 1;

/// Fewest bytes of an encoded assignment: group and replica count.
const ASSIGNMENT_BYTES_MIN: usize = 8 + 1;

impl CoreState {
    /// The snapshot encoding (module docs).
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] above [`CORE_SNAPSHOT_BYTES_MAX`] (the state's own bounds keep
    /// it far below), or [`CodecError::TooLong`] for a field that does not fit.
    pub fn encode_snapshot(&self) -> Result<Vec<u8>, CodecError> {
        let mut w = Writer::default();
        w.u8(VERSION);
        match &self.cluster_id {
            None => w.u8(0),
            Some(id) => {
                w.u8(1);
                w.bytes16(id);
            }
        }
        match self.applied {
            None => w.u8(0),
            Some(position) => {
                w.u8(1);
                w.u64(position.term);
                w.u64(position.index);
            }
        }
        w.u64(self.next_group);
        w.i64(self.next_producer_id);
        w.count("nodes", self.nodes.len())?;
        for record in self.nodes.values() {
            w.node(&record.meta)?;
            w.str("peer address", &record.peer_address)?;
            w.u8(u8::from(record.liveness == Liveness::Alive));
            w.opt_str("etcd address", record.etcd_address.as_deref())?;
        }
        let live: Vec<&Arc<TopicMeta>> = self.topics.live.values().collect();
        let deleting: Vec<&Arc<TopicMeta>> = self.topics.deleting.values().collect();
        for topics in [live, deleting] {
            w.count("topics", topics.len())?;
            for topic in topics {
                w.topic(topic)?;
                for assignment in self.assignments(topic.id) {
                    w.u64(assignment.group.0);
                    w.replicas(&assignment.replicas)?;
                }
            }
        }
        if w.out.len() > CORE_SNAPSHOT_BYTES_MAX {
            return Err(CodecError::TooLarge { bytes: w.out.len(), max: CORE_SNAPSHOT_BYTES_MAX });
        }
        Ok(w.out)
    }

    /// Restores a state from [`CoreState::encode_snapshot`]'s bytes.
    ///
    /// # Errors
    /// [`CodecError`] for anything but the encoding of a state `apply` could have made.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<CoreState, CodecError> {
        if bytes.len() > CORE_SNAPSHOT_BYTES_MAX {
            return Err(CodecError::TooLarge { bytes: bytes.len(), max: CORE_SNAPSHOT_BYTES_MAX });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != VERSION && version != VERSION_NO_ETCD {
            return Err(CodecError::UnknownVersion { what: "snapshot", version });
        }
        let mut state = CoreState {
            cluster_id: if r.flag("cluster id")? { Some(r.bytes16()?) } else { None },
            applied: if r.flag("applied")? {
                Some(LogPosition { term: r.u64()?, index: r.u64()? })
            } else {
                None
            },
            next_group: r.u64()?,
            next_producer_id: r.i64()?,
            ..CoreState::default()
        };
        if state.next_group == 0 || state.next_producer_id < 0 {
            return Err(invalid("group or producer id counter"));
        }
        read_nodes(&mut r, &mut state, version)?;
        let mut groups = BTreeSet::new();
        let live = read_topics(&mut r, &mut state, &mut groups)?;
        let deleting = read_topics(&mut r, &mut state, &mut groups)?;
        r.finish()?;
        state.topics = Topics::from_lists(live, deleting).map_err(CodecError::Invalid)?;
        Ok(state)
    }
}

/// The node records of a snapshot of `version` (with their etcd addresses from version 2).
fn read_nodes(r: &mut Reader<'_>, state: &mut CoreState, version: u8) -> Result<(), CodecError> {
    let with_etcd = version != VERSION_NO_ETCD;
    // A node takes at least its id, two empty strings, port, rack flag and liveness, and from
    // version 2 the etcd address's flag.
    let node_bytes_min = NODE_ID_BYTES + 2 + 2 + 1 + 2 + 1 + usize::from(with_etcd);
    let count = r.count("nodes", node_bytes_min, CLUSTER_NODES_MAX)?;
    for _ in 0..count {
        let meta = r.node()?;
        let peer_address = r.str("peer address")?;
        let alive = r.flag("liveness")?;
        let etcd_address = if with_etcd { r.opt_str("etcd address")? } else { None };
        check_node(&meta, &peer_address).map_err(CodecError::Invalid)?;
        check_etcd_address(meta.id, etcd_address.as_deref()).map_err(CodecError::Invalid)?;
        if state.nodes.last_key_value().is_some_and(|(&last, _)| last >= meta.id) {
            return Err(invalid("node order (ids must increase)"));
        }
        let liveness = if alive { Liveness::Alive } else { Liveness::Dead };
        state.nodes.insert(meta.id, NodeRecord { meta, peer_address, etcd_address, liveness });
    }
    Ok(())
}

/// A list of topics with their assignments, checked against the nodes read before and the
/// group ids seen so far.
fn read_topics(
    r: &mut Reader<'_>,
    state: &mut CoreState,
    groups: &mut BTreeSet<u64>,
) -> Result<Vec<TopicMeta>, CodecError> {
    let count = r.count("topics", TOPIC_BYTES_MIN, TOPICS_MAX)?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let topic = r.topic()?;
        let partitions = u64::from(topic.partitions);
        let partitions =
            r.check_count("assignments", partitions, ASSIGNMENT_BYTES_MIN, usize::MAX)?;
        let mut assignments = Vec::with_capacity(partitions);
        for _ in 0..partitions {
            let group = r.u64()?;
            let replicas = r.replicas()?;
            check_assignment(state, &topic, group, &replicas, groups)?;
            assignments.push(PartitionAssignment { group: GroupId(group), replicas });
        }
        if state.assignments.insert(topic.id, assignments).is_some() {
            return Err(invalid("topic id (appears twice)"));
        }
        topics.push(topic);
    }
    Ok(topics)
}

fn check_assignment(
    state: &CoreState,
    topic: &TopicMeta,
    group: u64,
    replicas: &[NodeId],
    groups: &mut BTreeSet<u64>,
) -> Result<(), CodecError> {
    if group == GroupId::CORE.0 || group >= state.next_group || !groups.insert(group) {
        return Err(invalid("group id (the core's, reused, or not below next_group)"));
    }
    let factor = usize::from(topic.replication_factor);
    if replicas.len() != factor || factor > usize::from(REPLICATION_FACTOR_MAX) {
        return Err(CodecError::Invalid(format!(
            "assignment of {} replicas in topic {} of replication factor {factor}",
            replicas.len(),
            topic.name
        )));
    }
    for (position, node) in replicas.iter().enumerate() {
        if replicas[..position].contains(node) || !state.nodes.contains_key(node) {
            return Err(CodecError::Invalid(format!(
                "replica {node} of topic {} (repeated or not registered)",
                topic.name
            )));
        }
    }
    Ok(())
}

fn invalid(what: &str) -> CodecError {
    CodecError::Invalid(what.to_owned())
}
