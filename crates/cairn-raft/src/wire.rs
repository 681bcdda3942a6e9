//! [`WireSnapshot`]: how each kind of group's snapshot travels between nodes. A partition's is
//! its small snapshot record (`Snapshot` frames); the consistent core's is its encoded state
//! (`CoreSnapshot` frames). The Raft network ([`crate::PeerNetwork`]) sends one, the receiving
//! side ([`crate::RaftHandler`]) takes it back, each for its group's snapshot type.

use crate::PartitionSnapshot;
use crate::coord_group::CoordSnapshot;
use crate::core_group::CoreSnapshot;
use crate::peer::{
    CoreSnapshotRequest, GroupRequest, Request, SnapshotMeta, SnapshotRequest, Vote,
};

/// A group's snapshot data as it travels in one peer frame.
pub trait WireSnapshot: Sized + Send + Sync + 'static {
    /// The request that carries `data` (with `meta`) from the leader whose vote is `vote`.
    fn request(vote: Vote, meta: SnapshotMeta, data: Self) -> Request;

    /// The snapshot `request` carries; `None` if it is not this kind's snapshot.
    fn received(request: GroupRequest) -> Option<(Vote, SnapshotMeta, Self)>;
}

impl WireSnapshot for PartitionSnapshot {
    fn request(vote: Vote, meta: SnapshotMeta, data: PartitionSnapshot) -> Request {
        Request::Snapshot(SnapshotRequest { vote, meta, data })
    }

    fn received(request: GroupRequest) -> Option<(Vote, SnapshotMeta, PartitionSnapshot)> {
        match request {
            GroupRequest::Snapshot(SnapshotRequest { vote, meta, data }) => {
                Some((vote, meta, data))
            }
            _ => None,
        }
    }
}

/// The coordination group's snapshot travels in the core's frame kind: an encoded state.
impl WireSnapshot for CoordSnapshot {
    fn request(vote: Vote, meta: SnapshotMeta, data: CoordSnapshot) -> Request {
        Request::CoreSnapshot(CoreSnapshotRequest { vote, meta, state: data.state })
    }

    fn received(request: GroupRequest) -> Option<(Vote, SnapshotMeta, CoordSnapshot)> {
        match request {
            GroupRequest::CoreSnapshot(CoreSnapshotRequest { vote, meta, state }) => {
                Some((vote, meta, CoordSnapshot { state }))
            }
            _ => None,
        }
    }
}

impl WireSnapshot for CoreSnapshot {
    fn request(vote: Vote, meta: SnapshotMeta, data: CoreSnapshot) -> Request {
        Request::CoreSnapshot(CoreSnapshotRequest { vote, meta, state: data.state })
    }

    fn received(request: GroupRequest) -> Option<(Vote, SnapshotMeta, CoreSnapshot)> {
        match request {
            GroupRequest::CoreSnapshot(CoreSnapshotRequest { vote, meta, state }) => {
                Some((vote, meta, CoreSnapshot { state }))
            }
            _ => None,
        }
    }
}
