//! KIP-951 leader hints: a Produce (v10+) or Fetch (v16+) answer that refuses a partition with
//! `NOT_LEADER_OR_FOLLOWER` or `FENCED_LEADER_EPOCH` names the leader this replica knows and its
//! epoch (`current_leader`), and the response lists those leaders' endpoints
//! (`node_endpoints`), so a client retries at the leader without a Metadata round trip.
//!
//! No hint is given while this replica knows no leader (an election), nor when the leader it
//! knows is a node the consistent core marks dead: the client then falls back to Metadata, as
//! without KIP-951.

use std::collections::BTreeSet;

use cairn_broker::Partition;
use cairn_meta::{MetadataStore, NodeMeta};
use kafka_protocol::ResponseError;

use crate::server::Ctx;

/// The first Produce version with `current_leader` and `node_endpoints`.
pub(crate) const PRODUCE_VERSION_MIN: i16 = 10;
/// The first Fetch version with `node_endpoints` (and so with the hint, as Kafka gives it).
pub(crate) const FETCH_VERSION_MIN: i16 = 16;

/// The leader id and epoch to name for `partition` answered with error `code`, if any.
pub(crate) fn current_leader(partition: &Partition, code: i16) -> Option<(i32, i32)> {
    let refused = code == ResponseError::NotLeaderOrFollower.code()
        || code == ResponseError::FencedLeaderEpoch.code();
    if !refused {
        return None;
    }
    let leader = i32::try_from(partition.leader()?.0).ok()?;
    Some((leader, partition.leader_epoch().0))
}

/// The nodes among `leaders` (broker ids; unknown ones and -1 skipped) as the metadata lists
/// them, each once, by id: only live nodes (the consistent core's `nodes`).
fn endpoints<M: MetadataStore>(
    ctx: &Ctx<M>,
    leaders: impl IntoIterator<Item = i32>,
) -> Vec<NodeMeta> {
    let wanted: BTreeSet<i32> = leaders.into_iter().filter(|id| *id >= 0).collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let mut nodes: Vec<NodeMeta> = ctx
        .broker
        .meta()
        .nodes()
        .into_iter()
        .filter(|node| i32::try_from(node.id.0).is_ok_and(|id| wanted.contains(&id)))
        .collect();
    nodes.sort_by_key(|node| node.id);
    nodes
}

/// The endpoints of the leaders `hints` name ([`endpoints`]), each hint naming a leader the
/// metadata does not list reset to its default (no leader): the response's `node_endpoints`
/// and its hints agree, and no client is sent to a dead node. `leader_of` reads a hint's
/// leader id (Produce and Fetch have a hint type each).
pub(crate) fn live_endpoints<M: MetadataStore, H: Default>(
    ctx: &Ctx<M>,
    mut hints: Vec<&mut H>,
    leader_of: impl Fn(&H) -> i32,
) -> Vec<NodeMeta> {
    let listed = endpoints(ctx, hints.iter().map(|hint| leader_of(hint)));
    for hint in &mut hints {
        if !stays(&listed, leader_of(hint)) {
            **hint = H::default();
        }
    }
    listed
}

/// Whether a hint naming `leader` may stay beside the endpoints `listed`: a leader the metadata
/// does not list (a node the consistent core marks dead) is taken back, so that a client is
/// never sent to a dead node; it asks Metadata instead.
fn stays(listed: &[NodeMeta], leader: i32) -> bool {
    leader < 0 || listed.iter().any(|node| i32::try_from(node.id.0).is_ok_and(|id| id == leader))
}
