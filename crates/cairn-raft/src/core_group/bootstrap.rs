//! Opening the consistent core of a node (RFC 0003 §5 "Bootstrap"): [`CoreMetadata::open`] and
//! [`CoreMetadata::shutdown`].
//!
//! 1. The core's log and files are in `<meta>/raft/` ([`super::CORE_DIR`]); the group runs over
//!    them with the core's state machine. A core that was never initialized is initialized with
//!    this node as its only voter, and campaigns at once.
//! 2. Once a leader is known and this node's state caught up with the commit, the leader's
//!    start commands: `SetClusterId` if the core has none (the id a data directory already
//!    had, else 16 random bytes) and `RegisterNode` if this node is not registered with its
//!    current addresses (a restart may change them).
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

use super::metadata::{CoreForward, CoreMetadata, CoreRequest};
use super::state_machine::{CoreStateMachine, Shared, SnapshotPolicy};
use super::{CORE_DIR, CoreConfig, CoreNode};
use crate::NoPeers;
use crate::group::{GroupLog, StoreError};
use crate::{AppendSink, LogStore, ProposalAppended, TimersError, TypeConfig};

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
}

/// The core log's appends report no proposals: nobody waits on their offsets.
struct NoSink;

impl AppendSink for NoSink {
    fn appended(&self, _ticket: u64, _appended: ProposalAppended) {}
}

/// What [`CoreMetadata::shutdown`] stops: the log and the tasks beside the group.
pub(crate) struct Stopper<D: Disk> {
    group: GroupLog<D>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl<D: Disk + Clone, F: CoreForward> CoreMetadata<D, F> {
    /// Opens (or creates) the core of this node in `meta_dir/raft`, waits until it has a
    /// leader and this node's state is current, runs the start commands and imports a
    /// `LocalMetadata` file found in `meta_dir` (module docs). `cluster_id` is the id a data
    /// directory had before the core, kept if the core sets one now.
    ///
    /// # Errors
    /// [`CoreError`]: storage, Raft, a refused start command, or no leader in time.
    pub async fn open(
        disk: D,
        meta_dir: &Path,
        node: CoreNode,
        cluster_id: Option<[u8; 16]>,
        config: CoreConfig,
        forward: F,
    ) -> Result<CoreMetadata<D, F>, CoreError> {
        let core = start(disk.clone(), meta_dir, &node, &config, forward).await?;
        core.wait_ready(config.write_timeout).await?;
        core.settle(&node, cluster_id).await?;
        core.import_local(&disk, meta_dir, &node).await?;
        Ok(core)
    }

    /// Stops the group and closes the core's log cleanly.
    ///
    /// # Errors
    /// [`CoreError`] if the group or the log's final flush failed.
    pub async fn shutdown(&self) -> Result<(), CoreError> {
        let stopped = self.raft.shutdown().await;
        let tasks: Vec<_> =
            self.stopper.tasks.lock().unwrap_or_else(PoisonError::into_inner).drain(..).collect();
        for task in tasks {
            task.abort();
        }
        self.stopper.group.close()?;
        stopped.map_err(|error| CoreError::Raft(error.to_string()))
    }

    /// Waits for a leader and for this node's state to reach the commit.
    async fn wait_ready(&self, timeout: Duration) -> Result<(), CoreError> {
        let waited = self
            .raft
            .wait(Some(timeout))
            .metrics(|metrics| metrics.current_leader.is_some(), "a core leader")
            .await;
        if waited.is_err() {
            return Err(CoreError::NotReady(timeout));
        }
        if self.raft.current_leader().await == Some(self.node.0) {
            let read = self.raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex);
            match tokio::time::timeout(timeout, read).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(CoreError::Raft(error.to_string())),
                Err(_) => return Err(CoreError::NotReady(timeout)),
            }
        }
        Ok(())
    }

    /// The start commands: the cluster id and this node's registration, when they change.
    async fn settle(&self, node: &CoreNode, cluster_id: Option<[u8; 16]>) -> Result<(), CoreError> {
        if self.state().cluster_id().is_none() {
            let id = cluster_id.unwrap_or_else(|| *uuid::Uuid::new_v4().as_bytes());
            self.write(CoreRequest::Command(CoreCommand::SetClusterId { id })).await?;
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
            self.write(CoreRequest::Command(command)).await?;
        }
        Ok(())
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

/// Starts the group over the core's directory, initialized with this node as its only voter if
/// it never was.
async fn start<D: Disk + Clone, F: CoreForward>(
    disk: D,
    meta_dir: &Path,
    node: &CoreNode,
    config: &CoreConfig,
    forward: F,
) -> Result<CoreMetadata<D, F>, CoreError> {
    let dir = meta_dir.join(CORE_DIR);
    make_dir(&disk, meta_dir)?;
    let group = GroupLog::open(
        disk.clone(),
        &dir,
        config.log.clone(),
        Arc::clone(&config.clock),
        Arc::clone(&config.flush_seconds),
    )?;
    let flusher = tokio::spawn(group.clone().run_flusher());
    let shared = Shared::new(Arc::default());
    let policy =
        SnapshotPolicy { entries: config.snapshot_entries, log_bytes: config.snapshot_log_bytes };
    let machine = CoreStateMachine::open(group.clone(), disk, dir, Arc::clone(&shared), policy)?;
    let store = LogStore::new(group.clone(), Arc::new(NoSink), Arc::clone(&config.clock));
    let raft_config = Arc::new(config.timers.openraft_config()?);
    let network = NoPeers::default();
    let raft = Raft::new(node.meta.id.0, raft_config, network, store, machine)
        .await
        .map_err(|error| CoreError::Raft(error.to_string()))?;
    initialize(&raft, node.meta.id).await?;
    let triggers = tokio::spawn(trigger_snapshots(raft.clone(), Arc::clone(&shared)));
    let state = shared.state.subscribe();
    Ok(CoreMetadata {
        node: node.meta.id,
        raft,
        shared,
        state,
        writer: tokio::sync::Mutex::new(()),
        forward,
        write_timeout: config.write_timeout,
        stopper: Stopper { group, tasks: Mutex::new(vec![flusher, triggers]) },
    })
}

/// Initializes a core that never was, with `node` as its only voter (openraft campaigns at once
/// for a lone voter).
async fn initialize<D: Disk + Clone>(
    raft: &Raft<TypeConfig, CoreStateMachine<D>>,
    node: NodeId,
) -> Result<(), CoreError> {
    let raft_error = |error: &dyn std::fmt::Display| CoreError::Raft(error.to_string());
    if raft.is_initialized().await.map_err(|e| raft_error(&e))? {
        return Ok(());
    }
    raft.initialize(BTreeSet::from([node.0])).await.map_err(|e| raft_error(&e))?;
    tracing::info!(node_id = %node, "initialized a new core with this node as its voter");
    Ok(())
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
fn make_dir<D: Disk>(disk: &D, dir: &Path) -> Result<(), CoreError> {
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
