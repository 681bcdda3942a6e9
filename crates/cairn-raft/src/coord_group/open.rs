//! Opening the coordination group of a node: [`CoordGroup::open`] (with its snapshot
//! trigger) and [`CoordGroup::shutdown`]. Its log and files are in `<meta>/coord/`; a group that was never
//! initialized is initialized with the core's voters (every voter alike, as the core).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use cairn_storage::Disk;
use openraft::Raft;
use openraft::async_runtime::WatchReceiver;
use openraft::network::{NetSnapshot, RaftNetworkFactory};

use super::COORD_DIR;
use super::COORD_GROUP;
use super::group::{CoordGroup, clients};
use super::leases::{self, Lessor};
use super::state_machine::{CoordSnapshot, CoordStateMachine};
use crate::core_group::{CoreConfig, CoreError, CorePeers, NoSink, Stopper, initialize, make_dir};
use crate::group::GroupLog;
use crate::peer::{GroupHandler, GroupRequest, HandlerFuture, Response};
use crate::{LogStore, NoPeers, RaftHandler, TypeConfig};

impl<D: Disk + Clone> CoordGroup<D> {
    /// Opens (or creates) the coordination group in `meta_dir/coord` with the core's settings
    /// (its log, timers and write timeout): a single node's, this node its only voter, or with
    /// `peers`, the core's static voters, registered in the router as [`COORD_GROUP`]. Starts
    /// the leader's lease expiry.
    ///
    /// # Errors
    /// [`CoreError`]: storage or Raft.
    pub async fn open(
        disk: D,
        meta_dir: &Path,
        node: u64,
        config: &CoreConfig,
        peers: Option<CorePeers<'_>>,
    ) -> Result<Arc<CoordGroup<D>>, CoreError> {
        let group = match &peers {
            None => {
                let voters = BTreeSet::from([node]);
                let network = NoPeers::<CoordSnapshot>::default();
                start(disk, meta_dir, node, config, network, &voters).await?
            }
            Some(peers) => {
                let voters = peers.voters.iter().map(|id| id.0).collect();
                let network = peers.network.group_of::<CoordSnapshot>(COORD_GROUP).uncoalesced();
                let mut group = start(disk, meta_dir, node, config, network, &voters).await?;
                group.clients = clients(peers.transport);
                group
            }
        };
        let group = Arc::new(group);
        if let Some(peers) = peers {
            let raft = RaftHandler::new(group.raft.clone());
            peers.router.register(
                COORD_GROUP,
                Arc::new(CoordHandler { raft, group: Arc::downgrade(&group) }),
            );
        }
        let expiry = crate::runtime::spawn(leases::run(Arc::downgrade(&group)));
        group.stopper.push(expiry);
        Ok(group)
    }

    /// Stops the group and closes its log cleanly.
    ///
    /// # Errors
    /// [`CoreError`] if the group or the log's final flush failed.
    pub async fn shutdown(&self) -> Result<(), CoreError> {
        let stopped = self.raft.shutdown().await;
        let closed = self.stopper.close(stopped).await;
        // The store is closed when this returns: a reopen of the directory finds it free.
        self.shared.machine_dropped(self.timeout).await;
        closed
    }
}

async fn start<D, N>(
    disk: D,
    meta_dir: &Path,
    node: u64,
    config: &CoreConfig,
    network: N,
    voters: &BTreeSet<u64>,
) -> Result<CoordGroup<D>, CoreError>
where
    D: Disk + Clone,
    N: RaftNetworkFactory<TypeConfig>,
    N::Network: NetSnapshot<TypeConfig, SnapshotData = CoordSnapshot>,
{
    let dir = meta_dir.join(COORD_DIR);
    make_dir(&disk, meta_dir)?;
    let log = GroupLog::open(
        disk,
        &dir,
        config.log.clone(),
        Arc::clone(&config.clock),
        Arc::clone(&config.flush_seconds),
    )?;
    let flusher = crate::runtime::spawn(log.clone().run_flusher());
    let (machine, shared) =
        CoordStateMachine::open(node, log.clone(), &dir, config.snapshot_entries)?;
    let store = LogStore::new(log.clone(), Arc::new(NoSink), Arc::clone(&config.clock));
    let mut raft_config = config.timers.openraft_config()?;
    // Every heartbeat goes out, even to a follower that just answered an append: one group,
    // and the heartbeats [`announce_commits`] triggers must not be skipped.
    raft_config.heartbeat_min_interval = None;
    let raft_config = Arc::new(raft_config);
    let raft = Raft::new(node, raft_config, network, store, machine)
        .await
        .map_err(|error| CoreError::Raft(error.to_string()))?;
    shared.started.store(true, std::sync::atomic::Ordering::Release);
    initialize(&raft, voters, "coordination").await?;
    let triggers = crate::runtime::spawn(trigger_snapshots(raft.clone(), Arc::clone(&shared)));
    let applied = shared.applied.subscribe();
    let announcer = crate::runtime::spawn(announce_commits(raft.clone(), node, applied));
    let extension = Duration::from_millis(config.timers.election_timeout_max_ms);
    Ok(CoordGroup {
        node,
        raft,
        shared,
        lessor: Lessor::new(extension),
        clients: std::collections::BTreeMap::new(),
        timeout: request_timeout(config),
        stopper: Stopper::new(log, vec![flusher, triggers, announcer]),
    })
}

/// How long a coordination request waits at most for a leader, its commit and its apply:
/// etcd's request timeout (5 s and two election timeouts: 11 s with cairn's defaults), within
/// the core's write timeout. A client then hears "request timed out" rather than waiting 30 s.
fn request_timeout(config: &CoreConfig) -> Duration {
    let elections = config.timers.election_timeout_max_ms.saturating_mul(2);
    config.write_timeout.min(REQUEST_TIMEOUT_BASE + Duration::from_millis(elections))
}

/// The part of a request's timeout that is not election time (etcd's).
const REQUEST_TIMEOUT_BASE: Duration = Duration::from_secs(5);

/// Builds a snapshot whenever the state machine says one is due, until the group stops
/// (openraft then purges the log behind it).
async fn trigger_snapshots<D: Disk + Clone>(
    raft: Raft<TypeConfig, CoordStateMachine<D>>,
    shared: Arc<super::state_machine::Shared>,
) {
    loop {
        shared.snapshot_due.notified().await;
        if raft.trigger().snapshot().await.is_err() {
            return;
        }
    }
}

/// While this node leads, tells the followers of each entry it applied (so committed) at once:
/// a heartbeat carries the leader's commit index, as etcd's leader sends an empty append after
/// each commit. A follower then applies a write, answers the put it forwarded and feeds its
/// watchers one round trip after the commit rather than at the next append or heartbeat
/// (measured: watch events trailed their puts by ~10 ms at 100 puts/s). One heartbeat per
/// follower is in flight at a time; commits meanwhile ride the next.
async fn announce_commits<D: Disk + Clone>(
    raft: Raft<TypeConfig, CoordStateMachine<D>>,
    node: u64,
    mut applied: tokio::sync::watch::Receiver<Option<crate::LogId>>,
) {
    while applied.changed().await.is_ok() {
        let leads = raft.metrics().borrow_watched().current_leader == Some(node);
        if leads && raft.trigger().heartbeat().await.is_err() {
            return;
        }
    }
}

/// The coordination group's handler in a node's router: Raft's RPCs to its `Raft`, forwarded
/// requests to the group (this node must lead).
struct CoordHandler<D: Disk + Clone> {
    raft: Arc<RaftHandler<CoordStateMachine<D>>>,
    group: Weak<CoordGroup<D>>,
}

impl<D: Disk + Clone> GroupHandler for CoordHandler<D> {
    fn handle(&self, request: GroupRequest) -> HandlerFuture {
        let GroupRequest::CoordCall(bytes) = request else {
            return self.raft.handle(request);
        };
        let group = self.group.clone();
        Box::pin(async move {
            let Some(group) = group.upgrade() else {
                let refusal = cairn_coord::Refusal::NotLeader(None);
                let answer = cairn_coord::Answer::Refused(refusal).encode().unwrap_or_default();
                return Ok(Response::CoordCall(answer.into()));
            };
            Ok(Response::CoordCall(group.serve_forwarded(&bytes).await))
        })
    }
}
