//! [`Coordination`]: what the etcd services need of the coordination group (RFC 0009 §8),
//! and the plain types it answers with. The node implements it over the group's Raft replica;
//! the tests over a `cairn_coord::Store` in memory.

use std::future::Future;
use std::sync::Arc;

pub use cairn_coord::Applied;
use cairn_coord::{AlarmKind, Command, KvError, RangeRequest, RangeResponse, Reply};
use thiserror::Error;
use tokio::sync::broadcast;

use crate::hash::KvHash;

/// Who answers: the fields of every response's header that do not depend on the request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// The cluster's id.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: u64,
    /// The coordination group's current Raft term, as this member knows it.
    pub raft_term: u64,
    /// The store's revision as last applied on this member: the header revision of answers
    /// that read or write nothing (lease keep-alives and time-to-live, status, member lists).
    pub revision: i64,
}

/// Why the coordination group did not answer a request; each maps to etcd's gRPC status and
/// message (`crate::status`).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CoordError {
    /// The store refused the request (the same on every replica).
    #[error(transparent)]
    Kv(KvError),
    /// A watch or history read starts below the compacted revision.
    #[error("mvcc: required revision has been compacted (compacted at {compacted})")]
    Compacted {
        /// The compacted revision.
        compacted: i64,
    },
    /// No leader, or the request timed out: its outcome is unknown, the client may retry.
    /// The text is etcd's (`etcdserver: no leader`, `etcdserver: request timed out`).
    #[error("{0}")]
    Unavailable(String),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
}

impl From<KvError> for CoordError {
    fn from(error: KvError) -> Self {
        CoordError::Kv(error)
    }
}

/// A lease as LeaseTimeToLive reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseStatus {
    /// The lease's id.
    pub id: i64,
    /// Seconds left, -1 if it expired.
    pub ttl: i64,
    /// The TTL it was granted (or last kept alive) with, in seconds.
    pub granted_ttl: i64,
    /// The keys attached to it.
    pub keys: Vec<Vec<u8>>,
}

/// A member's view of the group, as Maintenance.Status reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The leader's member id, 0 if none is known.
    pub leader: u64,
    /// The last Raft index in this member's log.
    pub raft_index: u64,
    /// The last Raft index this member applied.
    pub raft_applied_index: u64,
    /// The current Raft term.
    pub raft_term: u64,
    /// The store's revision.
    pub revision: i64,
    /// The store's size on disk, in bytes.
    pub db_size: i64,
    /// The server's version, as etcd reports its own (`3.5.0` style: clients check it).
    pub version: String,
}

/// A member of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Where its peers reach it.
    pub peer_urls: Vec<String>,
    /// Where clients reach it.
    pub client_urls: Vec<String>,
    /// Whether it is a learner (a non-voting member).
    pub is_learner: bool,
}

/// What the etcd services need of the coordination group.
///
/// Obligations: writes are answered only once applied on this member; the revisions that
/// [`subscribe`](Coordination::subscribe) and [`history`](Coordination::history) give are
/// every applied revision with events, in order, without holes or repeats, and the same
/// revisions with the same events from both.
pub trait Coordination: Send + Sync + 'static {
    /// Who answers, as of now.
    fn header(&self) -> Header;

    /// A Range, linearizable unless `serializable`; answers with the store's revision when it
    /// read (the response header's revision: the current one, as etcd's, not the one asked).
    fn range(
        &self,
        request: RangeRequest,
        serializable: bool,
    ) -> impl Future<Output = Result<(RangeResponse, i64), CoordError>> + Send;

    /// Proposes `command` (Put, DeleteRange, Txn, Compact, LeaseRevoke; LeaseGrant goes
    /// through [`lease_grant`](Coordination::lease_grant)); answers its reply and the store's
    /// revision after it.
    fn write(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<(Reply, i64), CoordError>> + Send;

    /// Grants a lease of `ttl` seconds with `id`, or with an id the leader chooses if `id` is
    /// 0 (positive, unused); answers the id and the store's revision after it.
    fn lease_grant(
        &self,
        id: i64,
        ttl: i64,
    ) -> impl Future<Output = Result<(i64, i64), CoordError>> + Send;

    /// Renews the lease `id` for its granted TTL; answers that TTL, in seconds.
    /// `CoordError::Kv(KvError::LeaseNotFound)` if it does not exist.
    fn lease_keep_alive(&self, id: i64) -> impl Future<Output = Result<i64, CoordError>> + Send;

    /// The lease `id`'s remaining and granted TTL and its keys.
    /// `CoordError::Kv(KvError::LeaseNotFound)` if it does not exist.
    fn lease_time_to_live(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<LeaseStatus, CoordError>> + Send;

    /// The ids of every lease.
    fn leases(&self) -> impl Future<Output = Result<Vec<i64>, CoordError>> + Send;

    /// This member's view of the group.
    fn status(&self) -> impl Future<Output = Result<Status, CoordError>> + Send;

    /// The size of this member's store on disk, in bytes: what the space quota measures.
    fn db_size(&self) -> i64;

    /// Rewrites this member's store compactly (etcd's defragment), answering once done.
    fn defragment(&self) -> impl Future<Output = Result<(), CoordError>> + Send;

    /// The active alarms, `(member id, alarm)`, in order: linearizable (as etcd's, which
    /// asks through Raft), or this member's view if not.
    fn alarms(
        &self,
        linearizable: bool,
    ) -> impl Future<Output = Result<Vec<(u64, AlarmKind)>, CoordError>> + Send;

    /// The cluster's members.
    fn members(&self) -> Vec<Member>;

    /// Every revision applied from now on, in order, and the revision applied when
    /// subscribing (the receiver gets the revisions after it). A receiver that lags falls back
    /// to [`history`](Coordination::history).
    fn subscribe(&self) -> (broadcast::Receiver<Arc<Applied>>, i64);

    /// The applied revisions after `after`, at most `limit` of them, oldest first: fewer than
    /// `limit` only when none applied is left out. [`CoordError::Compacted`] if `after + 1`
    /// was compacted away.
    fn history(
        &self,
        after: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Arc<Applied>>, CoordError>> + Send;

    /// etcd's HashKV of the store's history up to `revision` (0: the current one): computed
    /// with [`hash_kv`](crate::hash_kv) over every change the store holds, in (main, sub)
    /// order; answers it and the store's current revision. `Kv(Compacted)` below the
    /// compacted revision, `Kv(FutureRevision)` above the current one.
    fn hash_kv(
        &self,
        revision: i64,
    ) -> impl Future<Output = Result<(KvHash, i64), CoordError>> + Send;
}
