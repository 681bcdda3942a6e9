//! The etcd v3 API of a node (RFC 0009): cairn-etcd's [`Coordination`] over the node's
//! replica of the coordination group ([`CoordGroup`]), and its listener.
//!
//! Linearizable ranges wait for the group's read index, then read this node's store;
//! serializable ones read it at once. Writes and lease calls go to the group's leader
//! (forwarded by the group when this node does not lead). Watches read this node's applied
//! revisions. A node's etcd member id is its node id plus one ([`member_id`]: etcd reserves 0
//! for "none", and node 0 is cairn's default); the header's cluster id is the first 8 bytes of
//! the cluster's.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use cairn_coord::{
    AlarmKind, Applied, Command, KvError, RangeRequest, RangeResponse, Refusal, Reply,
};
use cairn_etcd::{CoordError, Coordination, Header, KvHash, LeaseStatus, Member, Status};
use cairn_raft::coord_group::{COORD_DIR, CoordGroup, STORE_FILE};
use cairn_storage::RealDisk;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// The version a node reports in Status: the etcd API it serves.
const API_VERSION: &str = "3.5.0";

/// cairn-etcd's backend over the node's coordination group (module docs).
pub(crate) struct EtcdBackend {
    pub(crate) group: Arc<CoordGroup<RealDisk>>,
    pub(crate) node: u64,
    pub(crate) cluster_id: u64,
    /// The store's file, for Status's database size.
    pub(crate) store_file: PathBuf,
    /// The members as MemberList tells them.
    pub(crate) members: Box<dyn Fn() -> Vec<Member> + Send + Sync>,
}

impl EtcdBackend {
    /// The backend of `group` on node `node` of cluster `cluster_id` (16 bytes), whose meta
    /// directory is `meta_dir`.
    pub(crate) fn new(
        group: Arc<CoordGroup<RealDisk>>,
        node: u64,
        cluster_id: [u8; 16],
        meta_dir: &std::path::Path,
        members: Box<dyn Fn() -> Vec<Member> + Send + Sync>,
    ) -> EtcdBackend {
        let (head, _) = cluster_id.split_first_chunk::<8>().unwrap_or((&[0; 8], &[]));
        EtcdBackend {
            group,
            node,
            cluster_id: u64::from_be_bytes(*head),
            store_file: meta_dir.join(COORD_DIR).join(STORE_FILE),
            members,
        }
    }

    fn revision(&self) -> Result<(i64, i64), CoordError> {
        let position = self.group.reader().position().map_err(CoordError::Kv)?;
        Ok((position.revision, position.compacted))
    }
}

/// The etcd member id of node `node`: one more (etcd's 0 means none).
pub(crate) fn member_id(node: u64) -> u64 {
    node.saturating_add(1)
}

/// The front door's error for the group's refusal.
fn refused(refusal: Refusal) -> CoordError {
    match refusal {
        Refusal::Kv(error) => CoordError::Kv(error),
        Refusal::NotLeader(_) => CoordError::Unavailable("etcdserver: no leader".into()),
        Refusal::Unavailable(why) => CoordError::Unavailable(why),
    }
}

impl Coordination for EtcdBackend {
    fn header(&self) -> Header {
        Header {
            cluster_id: self.cluster_id,
            member_id: member_id(self.node),
            raft_term: self.group.status().term,
            revision: self.revision().map_or(0, |(revision, _)| revision),
        }
    }

    async fn range(
        &self,
        request: RangeRequest,
        serializable: bool,
    ) -> Result<(RangeResponse, i64), CoordError> {
        if !serializable {
            self.group.read_index().await.map_err(refused)?;
        }
        // The revision of the state read, exactly: a watch from the one after it (a lock's
        // wait for its predecessor's deletion) must not skip a change the read did not see.
        Ok(self.group.reader().range_at_head(&request)?)
    }

    async fn write(&self, command: Command) -> Result<(Reply, i64), CoordError> {
        self.group.write(command).await.map_err(refused)
    }

    async fn lease_grant(&self, id: i64, ttl: i64) -> Result<(i64, i64), CoordError> {
        match self.group.write(Command::LeaseGrant { id, ttl }).await.map_err(refused)? {
            (Reply::LeaseGranted { id, .. }, revision) => Ok((id, revision)),
            (other, _) => Err(CoordError::Unavailable(format!("a lease grant answered {other:?}"))),
        }
    }

    async fn lease_keep_alive(&self, id: i64) -> Result<i64, CoordError> {
        self.group.keep_alive(id).await.map_err(refused)
    }

    async fn lease_time_to_live(&self, id: i64) -> Result<LeaseStatus, CoordError> {
        let (ttl, granted_ttl) = self.group.time_to_live(id).await.map_err(refused)?;
        let leases = self.group.reader().leases()?;
        let lease = leases.get(&id).ok_or(CoordError::Kv(KvError::LeaseNotFound))?;
        let keys = lease.keys.iter().cloned().collect();
        Ok(LeaseStatus { id, ttl, granted_ttl, keys })
    }

    async fn leases(&self) -> Result<Vec<i64>, CoordError> {
        self.group.read_index().await.map_err(refused)?;
        Ok(self.group.reader().leases()?.into_keys().collect())
    }

    fn db_size(&self) -> i64 {
        let size = std::fs::metadata(&self.store_file).map_or(0, |file| file.len());
        i64::try_from(size).unwrap_or(i64::MAX)
    }

    async fn defragment(&self) -> Result<(), CoordError> {
        // Through the log, so that the rewrite is ordered with this node's applies; answered
        // once this node applied it, the rewrite done.
        let command = Command::Defragment { member: self.node };
        self.group.write(command).await.map(drop).map_err(refused)
    }

    async fn alarms(&self, linearizable: bool) -> Result<Vec<(u64, AlarmKind)>, CoordError> {
        if linearizable {
            self.group.read_index().await.map_err(refused)?;
        }
        Ok(self.group.reader().alarms()?)
    }

    async fn status(&self) -> Result<Status, CoordError> {
        let status = self.group.status();
        let db_size = self.db_size();
        Ok(Status {
            leader: status.leader.map_or(0, member_id),
            raft_index: status.committed_index,
            raft_applied_index: status.applied_index,
            raft_term: status.term,
            revision: self.revision()?.0,
            db_size,
            version: API_VERSION.to_owned(),
        })
    }

    async fn hash_kv(&self, revision: i64) -> Result<(KvHash, i64), CoordError> {
        let (changes, position) = self.group.reader().changes(revision)?;
        let at = if revision == 0 { position.revision } else { revision };
        let compacted = if position.compacted == 0 { -1 } else { position.compacted };
        Ok((cairn_etcd::hash_kv(compacted, at, &changes), position.revision))
    }

    fn members(&self) -> Vec<Member> {
        (self.members)()
    }

    fn subscribe(&self) -> (broadcast::Receiver<Arc<Applied>>, i64) {
        match self.group.subscribe() {
            Ok(subscribed) => subscribed,
            // The store cannot be read: the watch's history reads will say so.
            Err(_) => (broadcast::channel(1).1, 0),
        }
    }

    async fn history(&self, after: i64, limit: usize) -> Result<Vec<Arc<Applied>>, CoordError> {
        match self.group.reader().events_after(after, limit) {
            Ok(revisions) => Ok(revisions
                .into_iter()
                .map(|(revision, events)| Arc::new(Applied { revision, events }))
                .collect()),
            Err(KvError::Compacted) => Err(CoordError::Compacted { compacted: self.revision()?.1 }),
            Err(error) => Err(CoordError::Kv(error)),
        }
    }
}

/// Binds the etcd listener: `given`, or for a single node the default if it is free.
///
/// # Errors
/// A given address that cannot be bound.
pub(crate) async fn bind(
    given: Option<SocketAddr>,
    single_node: bool,
) -> anyhow::Result<Option<TcpListener>> {
    use anyhow::Context;
    if let Some(address) = given {
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding the etcd listener to {address}"))?;
        return Ok(Some(listener));
    }
    if !single_node {
        return Ok(None);
    }
    let address = crate::config::ETCD_LISTEN_DEFAULT;
    match TcpListener::bind(address).await {
        Ok(listener) => Ok(Some(listener)),
        Err(error) => {
            tracing::warn!(%address, %error, "the etcd API's default address is taken: no etcd API (give --etcd-listen)");
            Ok(None)
        }
    }
}

/// Serves the etcd API on `listener` with a space quota of `quota_bytes` until `stopped`.
pub(crate) fn spawn(
    listener: TcpListener,
    backend: EtcdBackend,
    quota_bytes: u64,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let address = listener.local_addr().map(|address| address.to_string()).unwrap_or_default();
    let config = cairn_etcd::EtcdConfig {
        quota_backend_bytes: quota_bytes,
        ..cairn_etcd::EtcdConfig::default()
    };
    tokio::spawn(async move {
        tracing::info!(etcd = %address, "etcd API listening");
        let served = cairn_etcd::serve_with(listener, Arc::new(backend), config, stopped).await;
        if let Err(error) = served {
            tracing::error!(%error, "the etcd API stopped");
        }
    })
}
