//! Opening the consistent core of a node (RFC 0003 §5 "Bootstrap"): [`CoreMetadata::open`] and
//! [`CoreMetadata::shutdown`].
//!
//! 1. The core's log and files are in `<meta>/raft/` ([`super::CORE_DIR`]); the group runs over
//!    them with the core's state machine. A core that was never initialized is initialized with
//!    this node as its only voter, and campaigns at once.
//! 2. Once a leader is known and this node's state caught up with the commit, the leader's
//!    start commands: `SetClusterId` if the core has none (the id a data directory already
//!    had, else 16 random bytes), `RegisterNode` if this node is not registered with its
//!    current addresses (a restart may change them), and `SetEtcdAddress` if the registered
//!    address of its etcd API is not the current one.
//! 3. A `LocalMetadata` file in `<meta>` (`metadata.json`, a single node's store before the
//!    core) is imported once: `Import` into an empty core, every partition on this node, then
//!    the file is renamed `*.imported`, never deleted. A crash between the two finds a core with
//!    the topics and only renames.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cairn_meta::{
    CoreCommand, LOCAL_METADATA_FILE, LocalMetadata, MetaError, MetadataStore, TopicMeta,
};
use cairn_storage::Disk;
use cairn_types::NodeId;
use openraft::Raft;
use tokio::task::JoinHandle;

use super::liveness::{self, LivenessTimers};
use super::metadata::{CoreForward, CoreMetadata, CoreRequest, NoForward};
use super::peers::{CORE_GROUP, CoreHandler, PeerForward};
use super::state_machine::{CoreSnapshot, CoreStateMachine, Shared, SnapshotPolicy};
use super::{CORE_DIR, CoreConfig, CoreNode};
use crate::group::{GroupLog, StoreError};
use crate::peer::{PeerNode, Router};
use crate::{AppendSink, LogStore, ProposalAppended, TimersError, TypeConfig};
use crate::{Network, NoPeers, RaftHandler};
use openraft::error::InitializeError;
use openraft::network::{NetSnapshot, RaftNetworkFactory};

/// Why the core could not be opened or closed. Each stops the node's start: nothing retries.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Its log or files cannot be opened, read or written, or are damaged.
    #[error("the core's storage: {0}")]
    Store(#[from] StoreError),
    /// The Raft timers are invalid.
    #[error(transparent)]
    Timers(#[from] TimersError),
    /// The Raft group failed to start or stopped.
    #[error("the core's raft group: {0}")]
    Raft(String),
    /// A start command or the import was refused.
    #[error("the core's start: {0}")]
    Meta(#[from] MetaError),
    /// No leader was elected or the state did not catch up within the write timeout.
    #[error("the core did not become ready within {0:?}")]
    NotReady(Duration),
    /// The core belongs to another cluster than the node's settings say, or a multi-node start
    /// meets what only a single node can have.
    #[error("the core's cluster: {0}")]
    Cluster(String),
}

/// A command group's appends (the core's, the coordination group's) report no proposals:
/// nobody waits on their offsets.
pub(crate) struct NoSink;

impl AppendSink for NoSink {
    fn appended(&self, _ticket: u64, _appended: ProposalAppended) {}
}

/// What a command group's shutdown stops (the core's, the coordination group's): the log
/// and the tasks beside the group.
pub(crate) struct Stopper<D: Disk> {
    group: GroupLog<D>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl<D: Disk> Stopper<D> {
    pub(crate) fn new(group: GroupLog<D>, tasks: Vec<JoinHandle<()>>) -> Stopper<D> {
        Stopper { group, tasks: Mutex::new(tasks) }
    }

    /// Adds a task to stop.
    pub(crate) fn push(&self, task: JoinHandle<()>) {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).push(task);
    }

    /// Once the group's Raft stopped (`stopped`): ends the tasks, waiting until they are gone
    /// (so that what they held, the group's store among it, is released when this returns: a
    /// reopen right after finds it free), and closes the log cleanly.
    pub(crate) async fn close<E: std::fmt::Display>(
        &self,
        stopped: Result<(), E>,
    ) -> Result<(), CoreError> {
        let tasks: Vec<_> =
            self.tasks.lock().unwrap_or_else(PoisonError::into_inner).drain(..).collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // Cancelled (or ended before): either way it is gone.
            let _ = task.await;
        }
        self.group.close()?;
        stopped.map_err(|error| CoreError::Raft(error.to_string()))
    }
}

/// What the core of a node with peers runs over (RFC 0003 §5 "Bootstrap").
#[derive(Debug)]
pub struct CorePeers<'a> {
    /// The node's peer transport: where forwarded writes go.
    pub transport: &'a PeerNode,
    /// The node's Raft network over it.
    pub network: &'a Network,
    /// The node's router, where the core registers as group 0.
    pub router: &'a Router,
    /// The static voters of the core (`--peers`), this node included.
    pub voters: BTreeSet<NodeId>,
}

impl<D: Disk + Clone> CoreMetadata<D, NoForward> {
    /// Opens (or creates) the core of a single node in `meta_dir/raft`: this node is its only
    /// voter. Waits until it leads and its state is current, runs the start commands and
    /// imports a `LocalMetadata` file found in `meta_dir` (module docs). `cluster_id` is the
    /// id a data directory had before the core, kept if the core sets one now.
    ///
    /// # Errors
    /// [`CoreError`]: storage, Raft, a refused start command, or no leader in time.
    pub async fn open(
        disk: D,
        meta_dir: &Path,
        node: CoreNode,
        cluster_id: Option<[u8; 16]>,
        config: CoreConfig,
        forward: NoForward,
    ) -> Result<CoreMetadata<D, NoForward>, CoreError> {
        let voters = BTreeSet::from([node.meta.id.0]);
        let network = NoPeers::<CoreSnapshot>::default();
        let core = start(disk.clone(), meta_dir, &node, &config, forward, network, &voters).await?;
        core.wait_ready(config.write_timeout).await?;
        core.settle(&node, cluster_id, config.write_timeout).await?;
        core.import_local(&disk, meta_dir, &node).await?;
        Ok(core)
    }
}

impl<D: Disk + Clone> CoreMetadata<D, PeerForward> {
    /// Opens (or creates) the core of a node with peers: a new core is initialized with the
    /// static voters (every voter does so with the same set, so their first entries are one
    /// entry); a core that has a log or a vote never is again. Registers the core as group 0
    /// in the router, waits for a leader, catches up with its commit and runs the start
    /// commands, `SetClusterId` with `cluster_id` (the id every node derives from the same
    /// settings) and this node's registration. Then starts the liveness judge, which acts
    /// while this node leads (`liveness.rs`).
    ///
    /// # Errors
    /// [`CoreError`]: storage, Raft, a refused start command, no leader in time,
    /// [`CoreError::Cluster`] if the core holds another cluster id or `meta_dir` holds a
    /// single node's metadata file (importing one into a cluster is not supported).
    pub async fn open_cluster(
        disk: D,
        meta_dir: &Path,
        node: CoreNode,
        cluster_id: [u8; 16],
        config: CoreConfig,
        peers: CorePeers<'_>,
    ) -> Result<Arc<CoreMetadata<D, PeerForward>>, CoreError> {
        make_dir(&disk, meta_dir)?;
        if exists(&disk, meta_dir, LOCAL_METADATA_FILE)? {
            return Err(CoreError::Cluster(format!(
                "{} holds a single node's metadata ({LOCAL_METADATA_FILE}), which a multi-node \
                 core does not import: start this node once without --peers first",
                meta_dir.display()
            )));
        }
        let voters: BTreeSet<u64> = peers.voters.iter().map(|id| id.0).collect();
        let forward = PeerForward::new(peers.transport, config.write_timeout);
        let network = peers.network.group_of::<CoreSnapshot>(CORE_GROUP);
        let core = start(disk, meta_dir, &node, &config, forward, network, &voters).await?;
        let core = Arc::new(core);
        let handler = CoreHandler::new(RaftHandler::new(core.raft.clone()), Arc::downgrade(&core));
        peers.router.register(CORE_GROUP, handler);
        core.wait_ready(config.write_timeout).await?;
        core.settle(&node, Some(cluster_id), config.write_timeout).await?;
        let timers = LivenessTimers::of(&config.timers);
        let judge = crate::runtime::spawn(liveness::run(Arc::downgrade(&core), timers));
        core.stopper.push(judge);
        match core.cluster_id() {
            Some(id) if id == cluster_id => Ok(core),
            held => Err(CoreError::Cluster(format!(
                "the core holds cluster id {}, the --peers settings make {}: this data \
                 directory belongs to another cluster or peer set",
                held.map_or_else(|| "none".to_owned(), |id| hex(&id)),
                hex(&cluster_id)
            ))),
        }
    }
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl<D: Disk + Clone, F: CoreForward> CoreMetadata<D, F> {
    /// Stops the group and closes the core's log cleanly.
    ///
    /// # Errors
    /// [`CoreError`] if the group or the log's final flush failed.
    pub async fn shutdown(&self) -> Result<(), CoreError> {
        let stopped = self.raft.shutdown().await;
        self.stopper.close(stopped).await
    }

    /// Waits until the core knows a leader (this node's state is brought to its commit by
    /// [`CoreMetadata::settle`]'s first step). A node restarted after leading may believe it
    /// still leads until its peers tell it otherwise: settle's read index finds out.
    async fn wait_ready(&self, timeout: Duration) -> Result<(), CoreError> {
        let waited = self
            .raft
            .wait(Some(timeout))
            .metrics(|metrics| metrics.current_leader.is_some(), "a core leader")
            .await;
        if waited.is_err() {
            return Err(CoreError::NotReady(timeout));
        }
        Ok(())
    }

    /// The start commands: the cluster id, this node's registration and its etcd address,
    /// when they change, after this node caught up with the leader's commit. A start command
    /// whose leader was unknown, unreachable or did not answer in time is tried again until
    /// `timeout` (each is the same whether it applied once or twice).
    async fn settle(
        &self,
        node: &CoreNode,
        cluster_id: Option<[u8; 16]>,
        timeout: Duration,
    ) -> Result<(), CoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.write_retrying(CoreRequest::ReadIndex, deadline).await?;
        if self.state().cluster_id().is_none() {
            let id = cluster_id.unwrap_or_else(|| *uuid::Uuid::new_v4().as_bytes());
            let command = CoreCommand::SetClusterId { id };
            self.write_retrying(CoreRequest::Command(command), deadline).await?;
        }
        let registered = self.state().node(node.meta.id).is_some_and(|record| {
            record.meta == node.meta
                && record.peer_address == node.peer_address
                && record.liveness == cairn_meta::Liveness::Alive
        });
        if !registered {
            let command = CoreCommand::RegisterNode {
                node: node.meta.clone(),
                peer_address: node.peer_address.clone(),
            };
            self.write_retrying(CoreRequest::Command(command), deadline).await?;
        }
        self.settle_etcd_address(node, deadline).await
    }

    /// `SetEtcdAddress` if the registered record's etcd address is not this node's (after its
    /// registration, so the node is known).
    async fn settle_etcd_address(
        &self,
        node: &CoreNode,
        deadline: tokio::time::Instant,
    ) -> Result<(), CoreError> {
        let state = self.state();
        let registered = state.node(node.meta.id).map(|record| &record.etcd_address);
        if registered == Some(&node.etcd_address) {
            return Ok(());
        }
        let command =
            CoreCommand::SetEtcdAddress { node: node.meta.id, address: node.etcd_address.clone() };
        self.write_retrying(CoreRequest::Command(command), deadline).await?;
        Ok(())
    }

    /// [`CoreMetadata::write`], tried again after a retriable failure until `deadline`.
    async fn write_retrying(
        &self,
        request: CoreRequest,
        deadline: tokio::time::Instant,
    ) -> Result<(), MetaError> {
        loop {
            match self.write(request.clone()).await {
                Err(MetaError::NotController(why) | MetaError::TimedOut(why))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(%why, "a core start command is tried again");
                    tokio::time::sleep(START_RETRY_PAUSE).await;
                }
                done => return done.map(drop),
            }
        }
    }

    /// Imports the `LocalMetadata` file of `meta_dir` once, then renames it (module docs).
    async fn import_local(
        &self,
        disk: &D,
        meta_dir: &Path,
        node: &CoreNode,
    ) -> Result<(), CoreError> {
        let path = meta_dir.join(LOCAL_METADATA_FILE);
        if !exists(disk, meta_dir, LOCAL_METADATA_FILE)? {
            return Ok(());
        }
        let local = LocalMetadata::open_with_disk(disk.clone(), meta_dir, node.meta.clone())?;
        let topics: Vec<TopicMeta> = local.topics().iter().map(|t| TopicMeta::clone(t)).collect();
        let deleting: Vec<TopicMeta> =
            local.pending_deletions().iter().map(|t| TopicMeta::clone(t)).collect();
        let state = self.state();
        let empty = state.topics().is_empty() && state.pending_deletions().is_empty();
        if empty && !(topics.is_empty() && deleting.is_empty()) {
            let command = CoreCommand::Import { node: node.meta.id, topics, deleting };
            self.write(CoreRequest::Command(command)).await?;
            tracing::info!(path = %path.display(), "imported the node's local metadata into the core");
        } else if !empty {
            tracing::warn!(
                path = %path.display(),
                "the core holds topics already; the local metadata file is not imported again"
            );
        }
        let renamed = rename_aside(disk, meta_dir)?;
        tracing::info!(from = %path.display(), to = %renamed.display(), "local metadata file kept aside");
        Ok(())
    }
}

/// The pause between two tries of a start command whose leader was not reachable.
const START_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Starts the group over the core's directory with `network`, initialized with `voters` if it
/// never was.
async fn start<D, F, N>(
    disk: D,
    meta_dir: &Path,
    node: &CoreNode,
    config: &CoreConfig,
    forward: F,
    network: N,
    voters: &BTreeSet<u64>,
) -> Result<CoreMetadata<D, F>, CoreError>
where
    D: Disk + Clone,
    F: CoreForward,
    N: RaftNetworkFactory<TypeConfig>,
    N::Network: NetSnapshot<TypeConfig, SnapshotData = CoreSnapshot>,
{
    let dir = meta_dir.join(CORE_DIR);
    make_dir(&disk, meta_dir)?;
    let group = GroupLog::open(
        disk.clone(),
        &dir,
        config.log.clone(),
        Arc::clone(&config.clock),
        Arc::clone(&config.flush_seconds),
    )?;
    let flusher = crate::runtime::spawn(group.clone().run_flusher());
    let shared = Shared::new(Arc::default());
    let policy =
        SnapshotPolicy { entries: config.snapshot_entries, log_bytes: config.snapshot_log_bytes };
    let machine = CoreStateMachine::open(group.clone(), disk, dir, Arc::clone(&shared), policy)?;
    let store = LogStore::new(group.clone(), Arc::new(NoSink), Arc::clone(&config.clock));
    let raft_config = Arc::new(config.timers.openraft_config()?);
    let raft = Raft::new(node.meta.id.0, raft_config, network, store, machine)
        .await
        .map_err(|error| CoreError::Raft(error.to_string()))?;
    initialize(&raft, voters, "core").await?;
    let triggers = crate::runtime::spawn(trigger_snapshots(raft.clone(), Arc::clone(&shared)));
    let state = shared.state.subscribe();
    Ok(CoreMetadata {
        node: node.meta.id,
        raft,
        shared,
        state,
        writer: tokio::sync::Mutex::new(()),
        forward,
        write_timeout: config.write_timeout,
        lease: Duration::from_millis(config.timers.election_timeout_max_ms),
        stopper: Stopper::new(group, vec![flusher, triggers]),
    })
}

/// Initializes a core that never was with `voters` (openraft campaigns at once for a lone
/// voter). A core with a log or a vote is never initialized again: openraft refuses it
/// (`NotAllowed`), which also covers a leader's entries arriving between the check and the call.
/// Every voter of a new cluster initializes with the same set, so their first entries are the
/// same entry and whichever does so first loses nothing.
pub(crate) async fn initialize<SM: openraft::storage::RaftStateMachine<TypeConfig>>(
    raft: &Raft<TypeConfig, SM>,
    voters: &BTreeSet<u64>,
    group: &'static str,
) -> Result<(), CoreError> {
    let raft_error = |error: &dyn std::fmt::Display| CoreError::Raft(error.to_string());
    if raft.is_initialized().await.map_err(|e| raft_error(&e))? {
        tracing::info!(group, "the group has a log or a vote already: not initialized again");
        return Ok(());
    }
    match raft.initialize(voters.clone()).await {
        Ok(()) => {
            tracing::info!(group, ?voters, "initialized a new group with its static voters");
            Ok(())
        }
        Err(error) if matches!(error.api_error(), Some(InitializeError::NotAllowed(_))) => {
            tracing::info!(
                group,
                "the group received its first entries from a leader: not initialized"
            );
            Ok(())
        }
        Err(error) => Err(raft_error(&error)),
    }
}

/// Builds a snapshot whenever the state machine says one is due, until the group stops.
async fn trigger_snapshots<D: Disk + Clone>(
    raft: Raft<TypeConfig, CoreStateMachine<D>>,
    shared: Arc<Shared>,
) {
    loop {
        shared.snapshot_due.notified().await;
        if raft.trigger().snapshot().await.is_err() {
            return;
        }
    }
}

/// Makes `dir` and its name durable.
pub(crate) fn make_dir<D: Disk>(disk: &D, dir: &Path) -> Result<(), CoreError> {
    let io = |error: std::io::Error| {
        CoreError::Store(StoreError::Failed(format!("create {}: {error}", dir.display())))
    };
    disk.create_dir_all(dir).map_err(io)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        disk.sync_dir(parent).map_err(io)?;
    }
    Ok(())
}

fn exists<D: Disk>(disk: &D, dir: &Path, name: &str) -> Result<bool, CoreError> {
    let names = disk.list_dir(dir).map_err(|error| {
        CoreError::Store(StoreError::Failed(format!("list {}: {error}", dir.display())))
    })?;
    Ok(names.iter().any(|entry| entry == name))
}

/// Renames the local metadata file to the first free `*.imported` name (an older one is never
/// replaced), made durable; returns the new path.
fn rename_aside<D: Disk>(disk: &D, dir: &Path) -> Result<PathBuf, CoreError> {
    let fail = |what: String| CoreError::Store(StoreError::Failed(what));
    let names = disk.list_dir(dir).map_err(|e| fail(format!("list {}: {e}", dir.display())))?;
    let free = (0..100)
        .map(|n| match n {
            0 => format!("{LOCAL_METADATA_FILE}.imported"),
            n => format!("{LOCAL_METADATA_FILE}.imported.{n}"),
        })
        .find(|name| !names.contains(name))
        .ok_or_else(|| fail(format!("100 imported metadata files in {}", dir.display())))?;
    let (from, to) = (dir.join(LOCAL_METADATA_FILE), dir.join(free));
    disk.rename(&from, &to).map_err(|e| fail(format!("rename {}: {e}", from.display())))?;
    disk.sync_dir(dir).map_err(|e| fail(format!("fsync {}: {e}", dir.display())))?;
    Ok(to)
}
