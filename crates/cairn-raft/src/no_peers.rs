//! [`NoPeers`]: the Raft network of a group whose only voter is this node. It never has anyone
//! to send to; every call says so. The peer transport replaces it once nodes have peers.

use std::future::Future;
use std::marker::PhantomData;

use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse};
use openraft::raft::{VoteRequest, VoteResponse};
use openraft::type_config::alias::{SnapshotOf, VoteOf};

use crate::TypeConfig;

/// The network of a one-voter group, for a state machine whose snapshots are `S`.
pub struct NoPeers<S> {
    snapshot: PhantomData<fn() -> S>,
}

impl<S> Default for NoPeers<S> {
    fn default() -> NoPeers<S> {
        NoPeers { snapshot: PhantomData }
    }
}

fn unreachable() -> Unreachable<TypeConfig> {
    Unreachable::from_string("a group with one voter has no peers")
}

impl<S: Send + 'static> RaftNetworkFactory<TypeConfig> for NoPeers<S> {
    type Network = NoPeers<S>;

    async fn new_client(&mut self, _target: u64, _node: &openraft::EmptyNode) -> NoPeers<S> {
        NoPeers::default()
    }
}

impl<S: Send + 'static> RaftNetworkV2<TypeConfig> for NoPeers<S> {
    type SnapshotData = S;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: VoteOf<TypeConfig>,
        _snapshot: SnapshotOf<TypeConfig, S>,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(unreachable()))
    }
}
