//! [`Broker`]: the partitions hosted on this node, kept in step with the metadata store.
//!
//! Topic operations go to the [`MetadataStore`] and to the partitions here under one admin lock,
//! so two operations on topics never interleave. Each is all-or-nothing:
//!
//! - Creating a topic commits it to the metadata, then opens its partitions' logs; if any fails
//!   to open, the ones made are closed and removed and the topic is deleted again.
//! - Creating partitions opens the new logs first and commits the count only once all opened.
//! - Deleting a topic frees its name and records it as pending deletion in one metadata write,
//!   removes its partition directories, then clears the pending entry. Directories are named by
//!   topic id (`layout.rs`), so a topic re-created under the name never sees the old data.
//!
//! On start the data directory is reconciled with the metadata before anything is served
//! (`Broker::open`): name-layout directories are renamed to the id layout, doomed directories
//! (pending deletions, partitions beyond a topic's count) are removed, anything unrecognised is
//! moved aside into `<data-dir>/unrecognised/<unix-ms>/` (never deleted), and every partition is
//! opened. A partition whose log cannot be opened is served offline ([`Health`]); a topic never
//! stops the node from starting.
//!
//! The broker is generic over the [`Volume`] its partitions live on (`RealDisk` in `cairn
//! serve`, `SimDisk` in tests) and takes its wall clock from [`BrokerConfig::clock`]; it names
//! no disk and no clock of its own.
//!
//! Partitions are opened, created and closed on blocking threads, up to
//! `PARTITION_OPENS_PARALLEL_MAX` at once (`parallel.rs`), and the names of the partition
//! directories opened or made together are made durable with one fsync of `topics/`, before
//! any of them is served or acknowledged.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cairn_meta::{ConfigChange, MetadataStore, TopicId, TopicMeta, TopicSpec};
use cairn_raft::{GroupCommit, GroupLog, GroupPeers, StoreError, Timers};
use cairn_storage::{Clock, FlushPolicy, LogConfig, RealDisk, Retention};
use cairn_types::{LeaderEpoch, NodeId};
use futures_util::StreamExt;

use crate::error::{BrokerError, PartitionError};
use crate::health::Health;
use crate::layout::{Entry, Known, partition_dir_name};
use crate::parallel::{blocking, in_parallel};
use crate::partition::{Partition, PartitionConfig, RaftSettings, Replicas, Shared};
use crate::producer_ids::ProducerIds;
use crate::volume::Volume;
use cairn_raft::compaction::{Cleaning, Throttle};

/// Where a start moves entries of `topics/` it does not recognise, one subdirectory per start.
const UNRECOGNISED_DIR: &str = "unrecognised";

/// How long a start or a topic creation waits for its new partitions to lead their groups (a
/// one-voter group elects itself at once, a group of several in about one election timeout);
/// one that does not is served anyway, refusing produce as not the leader until it does. Not
/// longer: a group placed on a node that died before the core marked it dead elects no
/// leader, and CreateTopics answers only after the wait (Kafka's does not wait at all).
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// Broker settings.
#[derive(Clone)]
pub struct BrokerConfig {
    /// Partition logs live in `data_dir/topics/<topic-id-hex>-<partition>`.
    pub data_dir: PathBuf,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// The log cleaner's settings (RFC 0007).
    pub cleaner: CleanerConfig,
    /// Bytes at the durable end of each partition log kept in the OS page cache
    /// ([`LogConfig::cache_window_bytes`]); `None` leaves caching to the OS.
    pub cache_window_bytes: Option<u64>,
    /// Observes the duration of every partition log flush (a group commit's fsync), in seconds.
    pub flush_seconds: Arc<cairn_metrics::Histogram>,
    /// Offline partitions and a full disk, for readiness and the `cairn_partitions_offline`
    /// gauge.
    pub health: Arc<Health>,
    /// The wall clock: log-append time, retention, `segment.ms`, the names of moved-aside
    /// directories. `SystemClock` in `cairn serve`; tests move a `ManualClock`.
    pub clock: Arc<dyn Clock>,
    /// This node's id: the voter of every partition's Raft group.
    pub node_id: NodeId,
    /// The Raft timers of every partition's group.
    pub raft_timers: Timers,
    /// The node's peer transport: with it, each partition's group has the replicas the
    /// consistent core placed (only those on this node are hosted here, and they follow the
    /// core: [`Broker::run_placement`]); without, this node is every group's only voter.
    pub peers: Option<GroupPeers>,
}

impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("data_dir", &self.data_dir)
            .field("retention_interval", &self.retention_interval)
            .field("cleaner", &self.cleaner)
            .field("cache_window_bytes", &self.cache_window_bytes)
            .field("health", &self.health)
            .field("node_id", &self.node_id)
            .field("raft_timers", &self.raft_timers)
            .field("peers", &self.peers.is_some())
            .finish_non_exhaustive()
    }
}

/// The log cleaner's settings (RFC 0007).
#[derive(Clone, Debug)]
pub struct CleanerConfig {
    /// How often the cleaner looks at every partition (Kafka's `log.cleaner.backoff.ms`).
    pub interval: Duration,
    /// The most keys a round's map holds (about 64 bytes each at most): Kafka's
    /// `log.cleaner.dedupe.buffer.size`. A leader ends a round where its map fills.
    pub keys_max: usize,
    /// Bytes a second the cleaner reads and writes at most, over a pass (Kafka's
    /// `log.cleaner.io.max.bytes.per.second`); `None`: unlimited.
    pub io_bytes_per_sec: Option<u64>,
    /// What the cleaner did, for `/metrics`.
    pub metrics: CleanerMetrics,
}

impl CleanerConfig {
    /// The default `interval`, in milliseconds (Kafka's).
    pub const INTERVAL_MS_DEFAULT: u64 = 15_000;
    /// The default `io_bytes_per_sec` (RFC 0007).
    pub const IO_BYTES_PER_SEC_DEFAULT: u64 = 64 << 20;
}

impl Default for CleanerConfig {
    fn default() -> CleanerConfig {
        CleanerConfig {
            interval: Duration::from_millis(CleanerConfig::INTERVAL_MS_DEFAULT),
            keys_max: 1_000_000,
            io_bytes_per_sec: Some(CleanerConfig::IO_BYTES_PER_SEC_DEFAULT),
            metrics: CleanerMetrics::default(),
        }
    }
}

/// The log cleaner's counters (registered by the node; unregistered ones count for nobody).
#[derive(Clone, Debug, Default)]
pub struct CleanerMetrics {
    /// Compaction rounds carried out.
    pub rounds: Arc<cairn_metrics::Counter>,
    /// Segments rewritten.
    pub segments: Arc<cairn_metrics::Counter>,
    /// Bytes the cleaner read and wrote.
    pub io_bytes: Arc<cairn_metrics::Counter>,
    /// Bytes the rewritten segments shed.
    pub bytes_dropped: Arc<cairn_metrics::Counter>,
}

/// The hosted partitions by topic name and index, with their topic's id.
type Hosted<D> = HashMap<(String, u32), (TopicId, Arc<Partition<D>>)>;

/// The partitions hosted on this node, their logs on a `D`.
pub struct Broker<M, D: Volume = RealDisk> {
    meta: Arc<M>,
    /// Where the partitions' directories and logs live.
    disk: D,
    topics_dir: PathBuf,
    partitions: RwLock<Hosted<D>>,
    /// Serializes topic create, delete, alter and partition creation.
    admin: tokio::sync::Mutex<()>,
    /// The ids this node hands to idempotent producers.
    producer_ids: ProducerIds,
    /// Bumped whenever any partition's high watermark moves.
    progress: Arc<tokio::sync::watch::Sender<u64>>,
    /// The group commit of every partition log of the node: one flusher, one fsync round for
    /// every log with appends ([`GroupCommit`]). Closed at shutdown or drop.
    group_commit: Arc<GroupCommit<GroupLog<D>>>,
    config: BrokerConfig,
}

impl<M, D: Volume> Drop for Broker<M, D> {
    fn drop(&mut self) {
        self.group_commit.close();
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BrokerError {
    let path = path.to_path_buf();
    move |source| BrokerError::Io { op, path, source }
}

/// A storage error's cause without the server-side path it names (for clients; the path is
/// logged).
fn cause(error: &cairn_storage::Error) -> String {
    match error {
        cairn_storage::Error::Io { op, source, .. } => format!("{op} failed: {source}"),
        cairn_storage::Error::NoSpace { .. } => "no space left on device".to_owned(),
        cairn_storage::Error::Corruption { reason, .. } => format!("corruption: {reason}"),
        other => other.to_string(),
    }
}

/// Removes a deleted topic's partition directory (its partition closed already); logs and
/// returns false if the directory stays (the next start removes it).
fn remove_partition<D: Volume>(disk: &D, topic: &str, dir: &Path) -> bool {
    match disk.remove_entry(dir) {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(topic, path = %dir.display(), %error, "removing data of a deleted partition failed; retried at the next start");
            false
        }
    }
}

/// Fsyncs a directory, so the renames and removals in it are durable.
fn sync_dir(disk: &impl Volume, path: &Path) -> Result<(), BrokerError> {
    disk.sync_dir(path).map_err(io("fsync", path))
}

/// What a start found, for its summary line.
#[derive(Debug, Default)]
struct Started {
    /// Partitions opened and served.
    opened: usize,
    /// Of those, partitions whose recovery had to walk or cut anything.
    recovered: usize,
    /// Bytes recovery verified batch by batch.
    verified_bytes: u64,
    /// Bytes recovery cut off as torn writes.
    cut_bytes: u64,
    /// Partitions that could not be opened.
    offline: usize,
}

/// The partition's settings and log configuration from its topic's configs and the broker's.
fn settings_for(topic: &TopicMeta, config: &BrokerConfig) -> (PartitionConfig, LogConfig) {
    let configs = &topic.configs;
    let settings = PartitionConfig {
        max_message_bytes: configs.max_message_bytes(),
        retention: if configs.cleanup_policy().delete {
            Retention { bytes: configs.retention_bytes(), ms: configs.retention_ms() }
        } else {
            Retention { bytes: None, ms: None }
        },
        compaction: configs.compaction(),
        log_append_time: configs.timestamp_type() == cairn_meta::TimestampType::LogAppendTime,
    };
    let log_config = LogConfig {
        segment_bytes: configs.segment_bytes(),
        segment_ms: Some(configs.segment_ms()),
        flush: FlushPolicy::Manual,
        cache_window_bytes: config.cache_window_bytes,
        ..LogConfig::default()
    };
    (settings, log_config)
}

/// An opened partition log with its Raft files, or why it could not be opened.
type Opened<D> = Result<GroupLog<D>, StoreError>;

/// Opens partition `index` of `topic` in `topics_dir` on `disk`, creating it if it does not
/// exist. The directory's own name is not synced: the caller syncs `topics_dir` once for all it
/// opens. With `repair` (the group has other voters to send the log again) a log damaged
/// inside is cut at the damage rather than left offline (`GroupLog::open_repairing`).
fn open_log<D: Volume>(
    disk: &D,
    topics_dir: &Path,
    config: &BrokerConfig,
    (topic, index, repair): &(Arc<TopicMeta>, u32, bool),
) -> Opened<D> {
    let (_, log_config) = settings_for(topic, config);
    let dir = topics_dir.join(partition_dir_name(topic.id, *index));
    let (clock, flush_seconds) = (Arc::clone(&config.clock), Arc::clone(&config.flush_seconds));
    if *repair {
        return GroupLog::open_repairing(disk.clone(), dir, log_config, clock, flush_seconds);
    }
    GroupLog::open_in_synced_parent(disk.clone(), dir, log_config, clock, flush_seconds)
}

impl<M: MetadataStore> Broker<M, RealDisk> {
    /// [`Broker::open_on`] the real file system: what `cairn serve` runs.
    ///
    /// # Errors
    /// As [`Broker::open_on`].
    pub async fn open(config: BrokerConfig, meta: Arc<M>) -> Result<Arc<Broker<M>>, BrokerError> {
        Broker::open_on(config, meta, RealDisk).await
    }
}

impl<M: MetadataStore, D: Volume> Broker<M, D> {
    /// Reconciles the data directory on `disk` with the metadata (see the module docs), then
    /// opens every partition the metadata names, recovering their logs; one that cannot be
    /// opened is served offline. Spawns the node's group commit on the current runtime.
    ///
    /// # Errors
    /// [`BrokerError::Io`] if `topics/` cannot be listed or created, or an unrecognised entry
    /// cannot be moved aside (the node refuses to start rather than delete it).
    pub async fn open_on(
        config: BrokerConfig,
        meta: Arc<M>,
        disk: D,
    ) -> Result<Arc<Broker<M, D>>, BrokerError> {
        let topics_dir = config.data_dir.join("topics");
        disk.create_dir_all(&topics_dir).map_err(io("create", &topics_dir))?;
        let broker = Arc::new(Broker {
            meta,
            disk,
            topics_dir,
            partitions: RwLock::new(HashMap::new()),
            admin: tokio::sync::Mutex::new(()),
            producer_ids: ProducerIds::default(),
            progress: Arc::new(tokio::sync::watch::channel(0).0),
            group_commit: Arc::new(GroupCommit::new(Arc::clone(&config.flush_seconds))),
            config,
        });
        tokio::spawn(Arc::clone(&broker.group_commit).run());
        broker.reconcile().await?;
        let partitions: Vec<(Arc<TopicMeta>, u32)> = broker
            .meta
            .topics()
            .into_iter()
            .flat_map(|topic| (0..topic.partitions).map(move |index| (Arc::clone(&topic), index)))
            .filter(|(topic, index)| broker.replicas_of(topic, *index).is_some())
            .collect();
        let started = broker.open_and_host(partitions).await?;
        tracing::info!(
            partitions = started.opened,
            recovered = started.recovered,
            verified_bytes = started.verified_bytes,
            cut_bytes = started.cut_bytes,
            offline = started.offline,
            "partitions opened"
        );
        Ok(broker)
    }

    /// Changes whenever any partition's high watermark moves (long polls wait on it).
    #[must_use]
    pub fn progress(&self) -> tokio::sync::watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// The metadata store.
    pub fn meta(&self) -> &M {
        &self.meta
    }

    /// This node's id.
    #[must_use]
    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    /// A producer id no producer of the cluster had (InitProducerId).
    ///
    /// # Errors
    /// As [`cairn_meta::MetadataStore::allocate_producer_ids`], when a new block is needed.
    pub async fn new_producer_id(&self) -> Result<cairn_types::ProducerId, cairn_meta::MetaError> {
        self.producer_ids.next(&*self.meta).await
    }

    /// Offline partitions and the disk's state.
    #[must_use]
    pub fn health(&self) -> &Arc<Health> {
        &self.config.health
    }

    /// The wall clock of the node (log-append time, retention, the group coordinator).
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.config.clock
    }

    /// A hosted partition.
    #[must_use]
    pub fn partition(&self, topic: &str, index: u32) -> Option<Arc<Partition<D>>> {
        let partitions = self.partitions.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        partitions.get(&(topic.to_owned(), index)).map(|(_, partition)| Arc::clone(partition))
    }

    /// The leader and leader epoch of partition group `group` as a peer announced them in its
    /// last pings (RFC 0004): what a node without a replica of the partition knows of it.
    #[must_use]
    pub fn announced_leader(&self, group: u64) -> Option<(NodeId, LeaderEpoch)> {
        let peers = self.config.peers.as_ref()?;
        let (leader, term) = peers.quiescence.leader_of(group, tokio::time::Instant::now())?;
        Some((NodeId(leader), LeaderEpoch(i32::try_from(term).ok()?)))
    }

    fn partition_dir(&self, topic: &TopicMeta, index: u32) -> PathBuf {
        self.topics_dir.join(partition_dir_name(topic.id, index))
    }

    /// Brings `topics/` in line with the metadata before anything is opened: migrates the name
    /// layout, removes what is doomed, moves the unrecognised aside, finishes pending deletions.
    async fn reconcile(&self) -> Result<(), BrokerError> {
        let pending = self.meta.pending_deletions();
        let known = Known::new(&self.meta.topics(), &pending);
        let mut entries: Vec<OsString> =
            self.disk.entries(&self.topics_dir).map_err(io("list", &self.topics_dir))?;
        entries.sort();
        let (mut migrated, mut removed, mut removal_failed) = (0_usize, 0_usize, false);
        let mut unrecognised = Vec::new();
        for name in entries {
            let entry = name.to_str().map_or(Entry::Unrecognised, |text| known.classify(text));
            let path = self.topics_dir.join(&name);
            match entry {
                Entry::Live => {}
                Entry::Legacy(new) if self.disk.occupied(&self.topics_dir.join(&new)) => {
                    unrecognised.push(name);
                }
                Entry::Legacy(new) => {
                    let to = self.topics_dir.join(new);
                    self.disk.rename_entry(&path, &to).map_err(io("rename", &path))?;
                    migrated += 1;
                }
                Entry::Doomed => match self.disk.remove_entry(&path) {
                    Ok(()) => removed += 1,
                    Err(error) => {
                        tracing::error!(path = %path.display(), %error, "removing data of a deleted partition failed; retried at the next start");
                        removal_failed = true;
                    }
                },
                Entry::Unrecognised => unrecognised.push(name),
            }
        }
        if migrated + removed > 0 {
            sync_dir(&self.disk, &self.topics_dir)?;
            tracing::info!(migrated, removed, "reconciled partition directories with the metadata");
        }
        self.move_aside(&unrecognised)?;
        if !removal_failed {
            for topic in pending {
                self.finish_deletion(&topic).await;
            }
        }
        Ok(())
    }

    /// Moves `names` of `topics/` into `<data-dir>/unrecognised/<unix-ms>/`, with one log line.
    fn move_aside(&self, names: &[OsString]) -> Result<(), BrokerError> {
        if names.is_empty() {
            return Ok(());
        }
        let unix_ms = self.config.clock.now_ms();
        let parent = self.config.data_dir.join(UNRECOGNISED_DIR);
        let dir = parent.join(unix_ms.to_string());
        self.disk.create_dir_all(&dir).map_err(io("create", &dir))?;
        for name in names {
            let from = self.topics_dir.join(name);
            self.disk.rename_entry(&from, &dir.join(name)).map_err(io("move aside", &from))?;
        }
        for synced in [&dir, &parent, &self.config.data_dir, &self.topics_dir] {
            sync_dir(&self.disk, synced)?;
        }
        tracing::warn!(
            entries = names.len(),
            moved_to = %dir.display(),
            "moved entries of the topics directory that match no topic aside; nothing was deleted"
        );
        Ok(())
    }

    /// What every partition shares.
    fn shared(&self) -> Shared {
        Shared {
            progress: Arc::clone(&self.progress),
            flush_seconds: Arc::clone(&self.config.flush_seconds),
            health: Arc::clone(&self.config.health),
            clock: Arc::clone(&self.config.clock),
        }
    }

    /// Opens the logs of `partitions` on blocking threads, up to `PARTITION_OPENS_PARALLEL_MAX`
    /// at once; results in the order of `partitions`. With `all_or_nothing`, the first failure
    /// stops the rest: those not tried yet are `None`. Directory names are not synced (see
    /// [`open_log`]).
    async fn open_logs(
        &self,
        partitions: Vec<(Arc<TopicMeta>, u32)>,
        all_or_nothing: bool,
    ) -> Vec<Option<Opened<D>>> {
        let topics_dir = self.topics_dir.clone();
        let config = self.config.clone();
        let disk = self.disk.clone();
        // A replica with other voters can have its log sent again: damage inside it is cut.
        let partitions: Vec<(Arc<TopicMeta>, u32, bool)> = partitions
            .into_iter()
            .map(|(topic, index)| {
                let replicas = self.replicas_of(&topic, index);
                let repair = self.config.peers.is_some()
                    && replicas.is_some_and(|replicas| replicas.voters.len() > 1);
                (topic, index, repair)
            })
            .collect();
        blocking(move || {
            let failed = AtomicBool::new(false);
            in_parallel(&partitions, |partition| {
                if all_or_nothing && failed.load(Ordering::Relaxed) {
                    return None;
                }
                let opened = open_log(&disk, &topics_dir, &config, partition);
                if opened.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                Some(opened)
            })
        })
        .await
    }

    /// Counts and logs what the recovery of partition `index` found and cut, or why it is
    /// offline; the partition's log, or that reason.
    fn count_opened(
        &self,
        topic: &TopicMeta,
        index: u32,
        opened: Opened<D>,
        started: &mut Started,
    ) -> Result<GroupLog<D>, String> {
        let name = topic.name.as_str();
        match opened {
            Ok(group) => {
                for damage in group.repaired() {
                    tracing::warn!(
                        topic = name,
                        partition = index,
                        offset = damage.offset.0,
                        raft_index = damage.index.0,
                        dropped_bytes = damage.dropped_bytes,
                        path = %damage.path.display(),
                        position = damage.position,
                        reason = %damage.reason,
                        "partition log damaged inside: cut at the damage, the rest moved aside; \
                         the replica abstains until its peers have sent it again"
                    );
                }
                let (recovery, next_offset) =
                    group.with_log(|log| (log.recovery().clone(), log.next_offset()));
                if recovery.verified_bytes > 0
                    || recovery.truncated_bytes > 0
                    || recovery.rebuilt_epochs
                {
                    started.recovered += 1;
                    started.verified_bytes += recovery.verified_bytes;
                    started.cut_bytes += recovery.truncated_bytes;
                    tracing::info!(
                        topic = name,
                        partition = index,
                        verified_bytes = recovery.verified_bytes,
                        cut_bytes = recovery.truncated_bytes,
                        rebuilt_epochs = recovery.rebuilt_epochs,
                        adopted = recovery.adopted,
                        next_offset = next_offset.0,
                        "recovered partition log"
                    );
                }
                started.opened += 1;
                Ok(group)
            }
            Err(error) => {
                tracing::error!(topic = name, partition = index, %error, "partition log cannot be opened; serving it offline");
                started.offline += 1;
                Err(error.to_string())
            }
        }
    }

    /// Hosts partitions over their opened logs (or the reasons they are offline): joins each log
    /// to the node's group commit and starts its Raft group, up to
    /// `PARTITION_OPENS_PARALLEL_MAX` at once (a group's start waits on a few fsyncs of its own
    /// files, which the journal commits together).
    async fn host_all(&self, opened: Vec<ToHost<D>>) -> Vec<Arc<Partition<D>>> {
        let raft = RaftSettings {
            node_id: self.config.node_id,
            timers: self.config.raft_timers,
            peers: self.config.peers.clone(),
        };
        let hosted: Vec<(TopicId, Arc<Partition<D>>)> = futures_util::stream::iter(opened)
            .map(|(topic, index, opened)| {
                let (settings, _) = settings_for(&topic, &self.config);
                let name = topic.name.to_string();
                let replicas = self
                    .replicas_of(&topic, index)
                    .unwrap_or_else(|| Replicas::sole(self.config.node_id));
                let (shared, raft) = (self.shared(), raft.clone());
                let opened = opened.inspect(|log| log.join_group_commit(&self.group_commit));
                async move {
                    let started =
                        Partition::start(name, index, opened, settings, raft, replicas, shared);
                    (topic.id, started.await)
                }
            })
            .buffer_unordered(cairn_types::limits::PARTITION_OPENS_PARALLEL_MAX)
            .collect()
            .await;
        let mut partitions =
            self.partitions.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (id, partition) in &hosted {
            let key = (partition.topic().to_owned(), partition.index());
            partitions.insert(key, (*id, Arc::clone(partition)));
        }
        hosted.into_iter().map(|(_, partition)| partition).collect()
    }

    /// Opens the logs of `partitions` (each on its own: one that cannot be opened is served
    /// offline), makes the names of the directories the opens made durable before anything is
    /// served (a crash after a topic's creation was committed, before its partitions were
    /// made), hosts them and waits for their groups to have leaders; what the opens found.
    async fn open_and_host(
        &self,
        partitions: Vec<(Arc<TopicMeta>, u32)>,
    ) -> Result<Started, BrokerError> {
        let opened = self.open_logs(partitions.clone(), false).await;
        sync_dir(&self.disk, &self.topics_dir)?;
        let mut started = Started::default();
        let to_host: Vec<_> = partitions
            .iter()
            .zip(opened)
            .filter_map(|((topic, index), opened)| {
                let opened = self.count_opened(topic, *index, opened?, &mut started);
                Some((Arc::clone(topic), *index, opened))
            })
            .collect();
        let hosted = self.host_all(to_host).await;
        wait_leaders(&hosted).await;
        Ok(started)
    }

    /// Partition `index`'s group if this node hosts one of its replicas: on a node without
    /// peers every partition, with this node as the only voter.
    fn replicas_of(&self, topic: &TopicMeta, index: u32) -> Option<Replicas> {
        let node = self.config.node_id;
        if self.config.peers.is_none() {
            return Some(Replicas::sole(node));
        }
        let placed = self.meta.leader(topic.name.as_str(), index)?;
        placed.replicas.contains(&node).then(|| Replicas {
            group: placed.group,
            voters: placed.replicas.iter().map(|replica| replica.0).collect(),
        })
    }

    /// The partitions the metadata places on this node that it does not host yet.
    fn unhosted(&self) -> Vec<(Arc<TopicMeta>, u32)> {
        let partitions = self.partitions.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut missing = Vec::new();
        for topic in self.meta.topics() {
            for index in 0..topic.partitions {
                let hosted = partitions.contains_key(&(topic.name.to_string(), index));
                if !hosted && self.replicas_of(&topic, index).is_some() {
                    missing.push((Arc::clone(&topic), index));
                }
            }
        }
        missing
    }

    /// Hosts every partition the metadata places here and this node does not host yet (a
    /// replica that cannot be opened is served offline), then waits for their groups to have
    /// leaders. Call with the admin lock held.
    async fn host_placed(&self) -> Result<(), BrokerError> {
        let partitions = self.unhosted();
        if partitions.is_empty() {
            return Ok(());
        }
        let started = self.open_and_host(partitions).await?;
        tracing::info!(
            partitions = started.opened,
            offline = started.offline,
            "hosted the partitions placed on this node"
        );
        Ok(())
    }

    /// Stops hosting the partitions whose topic is gone (deleted, or deleted and made again
    /// under another id) or that the metadata no longer places here, and removes their data.
    /// The deletion's record is finished by the node the delete request came through. Call
    /// with the admin lock held.
    async fn retire_unplaced(&self) {
        let retired: Vec<_> = {
            let mut partitions =
                self.partitions.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            let gone: Vec<_> = partitions
                .iter()
                .filter(|((name, index), (id, _))| {
                    let topic = self.meta.topic(name).filter(|topic| topic.id == *id);
                    topic.is_none_or(|topic| self.replicas_of(&topic, *index).is_none())
                })
                .map(|(key, _)| key.clone())
                .collect();
            gone.into_iter().filter_map(|key| Some((key.1, partitions.remove(&key)?))).collect()
        };
        if retired.is_empty() {
            return;
        }
        let closing = retired.iter().map(|(_, (_, partition))| Arc::clone(partition)).collect();
        close_all(closing).await;
        let doomed: Vec<(String, PathBuf)> = retired
            .iter()
            .map(|(index, (id, partition))| {
                self.config.health.forget(partition.topic(), *index);
                let dir = self.topics_dir.join(partition_dir_name(*id, *index));
                (partition.topic().to_owned(), dir)
            })
            .collect();
        let (topics_dir, disk) = (self.topics_dir.clone(), self.disk.clone());
        let count = doomed.len();
        blocking(move || {
            in_parallel(&doomed, |(topic, dir)| remove_partition(&disk, topic, dir));
            if let Err(error) = sync_dir(&disk, &topics_dir) {
                tracing::error!(%error, "fsync of the topics directory failed; what is left is moved aside at the next start");
            }
        })
        .await;
        tracing::info!(
            partitions = count,
            "stopped hosting partitions no longer placed on this node"
        );
    }

    /// Follows the metadata on a node with peers: hosts each partition placed here once the
    /// core commits it and retires those of deleted topics (whichever node the admin request
    /// came through), until `shutdown`.
    pub async fn run_placement(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if self.config.peers.is_none() {
            return;
        }
        loop {
            let seen = self.meta.generation();
            {
                let _admin = self.admin.lock().await;
                self.retire_unplaced().await;
                if let Err(error) = self.host_placed().await {
                    tracing::error!(%error, "hosting the partitions placed on this node failed; retried at the next change");
                }
            }
            tokio::select! {
                () = self.meta.changed_since(seen) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Hosts new partitions over their opened logs and waits for them to lead.
    async fn host_new(&self, topic: &Arc<TopicMeta>, from: u32, logs: Vec<GroupLog<D>>) {
        let opened = (from..).zip(logs).map(|(index, log)| (Arc::clone(topic), index, Ok(log)));
        let hosted = self.host_all(opened.collect()).await;
        wait_leaders(&hosted).await;
    }

    /// Opens the logs of partitions `from..topic.partitions`, all or none, in parallel, then
    /// makes their directories' names durable with one fsync of `topics/`. If one fails, those
    /// opened are closed and every directory made is removed, and the error (logged with its
    /// path) names the cause without it.
    async fn open_new(
        &self,
        topic: &Arc<TopicMeta>,
        from: u32,
    ) -> Result<Vec<GroupLog<D>>, BrokerError> {
        let failed = |partition: u32, cause: String| {
            let topic = topic.name.to_string();
            BrokerError::Create { topic, partition, cause }
        };
        // An entry in the way was not made by this request (ids are new, and a start removes
        // directories beyond a topic's count): leave it alone, and make nothing.
        if let Some(index) =
            (from..topic.partitions).find(|i| self.disk.occupied(&self.partition_dir(topic, *i)))
        {
            return Err(failed(
                index,
                "an entry already occupies the partition's directory".into(),
            ));
        }
        let partitions = (from..topic.partitions).map(|index| (Arc::clone(topic), index)).collect();
        let mut logs = Vec::new();
        let mut failure = None;
        for (index, opened) in (from..).zip(self.open_logs(partitions, true).await) {
            match opened {
                Some(Ok(log)) => logs.push(log),
                Some(Err(error)) => {
                    tracing::error!(topic = %topic.name, partition = index, %error, "creating a partition failed; removing what was made");
                    let cause = match &error {
                        StoreError::Storage(error) => cause(error),
                        other => other.to_string(),
                    };
                    failure = failure.or(Some((index, cause)));
                }
                None => {}
            }
        }
        let failure = match failure {
            Some(failure) => Some(failure),
            None => sync_dir(&self.disk, &self.topics_dir).err().map(|error| {
                tracing::error!(topic = %topic.name, %error, "creating partitions failed; removing what was made");
                let cause = match &error {
                    BrokerError::Io { source, .. } => format!("fsync of the topics directory failed: {source}"),
                    other => other.to_string(),
                };
                (from, cause)
            }),
        };
        match failure {
            None => Ok(logs),
            Some((index, cause)) => {
                self.discard(topic, from, topic.partitions, logs);
                Err(failed(index, cause))
            }
        }
    }

    /// Closes `logs` and removes the directories of partitions `from..to`, which this request
    /// made. Failures are logged: what remains is doomed, removed at the next start.
    fn discard(&self, topic: &TopicMeta, from: u32, to: u32, logs: Vec<GroupLog<D>>) {
        for log in logs {
            // Removed next either way.
            drop(log.close());
        }
        for index in from..to {
            let dir = self.partition_dir(topic, index);
            if let Err(error) = self.disk.remove_entry(&dir) {
                tracing::error!(path = %dir.display(), %error, "removing a partition that was never created failed");
            }
        }
        if let Err(error) = sync_dir(&self.disk, &self.topics_dir) {
            tracing::error!(%error, "fsync of the topics directory failed");
        }
    }

    /// Creates a topic and opens its partitions, all or nothing (see the module docs).
    ///
    /// # Errors
    /// [`BrokerError::Meta`] for invalid or duplicate topics; [`BrokerError::Create`] if a
    /// partition's log cannot be made (the topic does not exist then).
    pub async fn create_topic(&self, spec: TopicSpec) -> Result<Arc<TopicMeta>, BrokerError> {
        let _admin = self.admin.lock().await;
        let topic = self.meta.create_topic(spec).await?;
        if self.config.peers.is_some() {
            // The core placed the replicas; this node hosts its own, the others theirs.
            self.host_placed().await?;
            return Ok(topic);
        }
        match self.open_new(&topic, 0).await {
            Ok(logs) => {
                self.host_new(&topic, 0, logs).await;
                Ok(topic)
            }
            Err(error) => {
                match self.meta.delete_topic(topic.name.as_str()).await {
                    Ok(_) => self.finish_deletion(&topic).await,
                    Err(meta_error) => {
                        tracing::error!(topic = %topic.name, error = %meta_error, "removing a topic whose partitions failed from the metadata failed; its partitions are served offline");
                        let offline = (0..topic.partitions)
                            .map(|index| (Arc::clone(&topic), index, Err(error.to_string())));
                        self.host_all(offline.collect()).await;
                    }
                }
                Err(error)
            }
        }
    }

    /// Raises a topic's partition count, the new partitions on `assignments` (one replica list
    /// each) or placed by the metadata: on a node without peers the new logs are made first and
    /// the count committed only once all of them opened.
    ///
    /// # Errors
    /// [`BrokerError::Meta`] for an invalid count or unknown topic; [`BrokerError::Create`] if a
    /// new partition's log cannot be made (nothing changed then).
    pub async fn create_partitions(
        &self,
        name: &str,
        count: u32,
        assignments: Option<Vec<Vec<NodeId>>>,
    ) -> Result<Arc<TopicMeta>, BrokerError> {
        let _admin = self.admin.lock().await;
        if self.config.peers.is_some() {
            let topic = self.meta.create_partitions(name, count, assignments).await?;
            self.host_placed().await?;
            return Ok(topic);
        }
        let before = self.meta.topic(name).map_or(0, |topic| topic.partitions);
        let grown = self.meta.check_create_partitions(name, count, assignments.as_deref())?;
        let logs = self.open_new(&grown, before).await?;
        match self.meta.create_partitions(name, count, assignments).await {
            Ok(topic) => {
                self.host_new(&topic, before, logs).await;
                Ok(topic)
            }
            Err(error) => {
                self.discard(&grown, before, grown.partitions, logs);
                Err(error.into())
            }
        }
    }

    /// Changes a topic's configs and applies them to its partitions.
    ///
    /// # Errors
    /// [`BrokerError::Meta`] for invalid configs (nothing changes).
    pub async fn alter_configs(
        &self,
        name: &str,
        changes: Vec<ConfigChange>,
    ) -> Result<Arc<TopicMeta>, BrokerError> {
        let _admin = self.admin.lock().await;
        let topic = self.meta.alter_configs(name, changes).await?;
        let (settings, log_config) = settings_for(&topic, &self.config);
        for index in 0..topic.partitions {
            if let Some(partition) = self.partition(name, index) {
                partition.reconfigure(settings, log_config.clone()).map_err(|source| {
                    BrokerError::Partition { topic: name.to_owned(), partition: index, source }
                })?;
            }
        }
        Ok(topic)
    }

    /// Deletes a topic: its name is freed and the topic recorded as pending deletion in one
    /// metadata write; then its partitions are closed, their directories removed, and the
    /// pending entry cleared. A crash anywhere leaves either the topic with all its data or a
    /// pending deletion that the next start finishes.
    ///
    /// # Errors
    /// [`BrokerError::Meta`] if it does not exist or the metadata cannot be written. Failing to
    /// remove the data is logged, not returned: the topic is deleted, and the next start
    /// removes what is left.
    pub async fn delete_topic(&self, name: &str) -> Result<Arc<TopicMeta>, BrokerError> {
        let _admin = self.admin.lock().await;
        let topic = self.meta.delete_topic(name).await?;
        let doomed: Vec<_> = (0..topic.partitions)
            .map(|index| {
                self.config.health.forget(name, index);
                let mut partitions =
                    self.partitions.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                let removed =
                    partitions.remove(&(name.to_owned(), index)).map(|(_, partition)| partition);
                (index, removed, self.partition_dir(&topic, index))
            })
            .collect();
        // Waiters see the partitions closed; their data goes either way.
        close_all(doomed.iter().filter_map(|(_, partition, _)| partition.clone()).collect()).await;
        let (owned, topics_dir, disk) =
            (name.to_owned(), self.topics_dir.clone(), self.disk.clone());
        // Off the runtime: removing is many unlinks and a directory fsync.
        let removed_all = blocking(move || {
            let removed = in_parallel(&doomed, |(_, _, dir)| remove_partition(&disk, &owned, dir));
            removed.iter().all(|removed| *removed) && sync_dir(&disk, &topics_dir).is_ok()
        })
        .await;
        if removed_all {
            self.finish_deletion(&topic).await;
        }
        Ok(topic)
    }

    /// Clears `topic`'s pending deletion once its directories are gone. A failure is logged:
    /// the next start finishes it (the directories are gone, so that is quick).
    async fn finish_deletion(&self, topic: &TopicMeta) {
        if let Err(error) = self.meta.finish_deletion(topic.id).await {
            tracing::error!(topic = %topic.name, id = %topic.id, %error, "recording a finished topic deletion failed; the next start finishes it");
        }
    }

    /// Every hosted partition.
    fn all_partitions(&self) -> Vec<Arc<Partition<D>>> {
        let partitions = self.partitions.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        partitions.values().map(|(_, partition)| Arc::clone(partition)).collect()
    }

    /// Applies retention to every partition every `retention_interval` until `shutdown` turns
    /// true; spawn it once. A sweep in progress stops before its next partition, so awaiting
    /// this task after signalling `shutdown` waits for one partition's retention at most, and no
    /// sweep touches the partitions once [`Broker::shutdown`] closes them.
    pub async fn run_retention(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        self.run_sweeps(Sweep::Retention, shutdown).await;
    }

    /// One retention pass over every partition, stopping early once `shutdown` turns true.
    async fn sweep_retention(&self, shutdown: &tokio::sync::watch::Receiver<bool>) {
        for partition in self.all_partitions() {
            if *shutdown.borrow() {
                return;
            }
            match partition.apply_retention().await {
                Ok(0) | Err(PartitionError::Closed) => {}
                Ok(deleted) => tracing::info!(
                    topic = partition.topic(),
                    partition = partition.index(),
                    deleted,
                    "retention deleted segments"
                ),
                Err(error) => {
                    tracing::warn!(topic = partition.topic(), partition = partition.index(), %error, "retention failed")
                }
            }
        }
    }

    /// Cleans every partition every `cleaner.interval` until `shutdown` turns true
    /// ([`Broker::clean`]); spawn it once. Like retention, a pass stops before its next
    /// partition once `shutdown` turns true.
    pub async fn run_cleaner(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        self.run_sweeps(Sweep::Cleaner, shutdown).await;
    }

    /// Runs `sweep` every period of its until `shutdown` turns true (a pass in progress is
    /// awaited).
    async fn run_sweeps(&self, sweep: Sweep, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let period = match sweep {
            Sweep::Retention => self.config.retention_interval,
            Sweep::Cleaner => self.config.cleaner.interval,
        };
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = interval.tick() => {}
            }
            match sweep {
                Sweep::Retention => self.sweep_retention(&shutdown).await,
                Sweep::Cleaner => {
                    self.clean(&shutdown).await;
                }
            }
        }
    }

    /// One cleaner pass (RFC 0007): each partition carries out the compaction rounds it
    /// applied, then, where this node leads a compacted topic, proposes the next round if one
    /// is due and carries it out once applied. One partition at a time; what it did, summed.
    pub async fn clean(&self, shutdown: &tokio::sync::watch::Receiver<bool>) -> Cleaning {
        let mut total = Cleaning::default();
        // A round in progress stops at its next charge once `shutdown` turns true.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (stop, mut shutdown) = (Arc::clone(&stop), shutdown.clone());
            tokio::spawn(async move {
                let _ = shutdown.wait_for(|stopping| *stopping).await;
                stop.store(true, std::sync::atomic::Ordering::Release);
            })
        };
        let mut throttle = Throttle::new(self.config.cleaner.io_bytes_per_sec).stopping_on(stop);
        for partition in self.all_partitions() {
            if *shutdown.borrow() {
                break;
            }
            match self.clean_partition(&partition, &mut throttle).await {
                Ok(cleaning) => total.add(cleaning),
                Err(PartitionError::Closed | PartitionError::Refused(_)) => {}
                Err(_) if *shutdown.borrow() => {}
                Err(error) => {
                    tracing::warn!(topic = partition.topic(), partition = partition.index(), %error, "log cleaning failed")
                }
            }
        }
        watcher.abort();
        let metrics = &self.config.cleaner.metrics;
        metrics.rounds.add(total.rounds as u64);
        metrics.segments.add(total.segments as u64);
        metrics.io_bytes.add(throttle.charged());
        metrics.bytes_dropped.add(total.bytes_before.saturating_sub(total.bytes_after));
        total
    }

    async fn clean_partition(
        &self,
        partition: &Partition<D>,
        throttle: &mut Throttle,
    ) -> Result<Cleaning, PartitionError> {
        let mut cleaning = partition.carry_out_rounds(throttle).await?;
        let (now_ms, keys_max) = (self.config.clock.now_ms(), self.config.cleaner.keys_max);
        if partition.propose_round(now_ms, keys_max, throttle).await?.is_some() {
            cleaning.add(partition.carry_out_rounds(throttle).await?);
        }
        Ok(cleaning)
    }

    /// Stops every partition's group, then flushes and seals its log (clean shutdown: the next
    /// start walks nothing), up to `PARTITION_OPENS_PARALLEL_MAX` at once.
    pub async fn shutdown(&self) {
        close_all(self.all_partitions()).await;
        self.group_commit.close();
    }
}

/// The broker's periodic passes over its partitions.
#[derive(Clone, Copy)]
enum Sweep {
    /// [`Broker::run_retention`].
    Retention,
    /// [`Broker::run_cleaner`].
    Cleaner,
}

/// A partition to host: its topic, index, and its opened log or why it is offline.
type ToHost<D> = (Arc<TopicMeta>, u32, Result<GroupLog<D>, String>);

/// Closes `partitions`, up to `PARTITION_OPENS_PARALLEL_MAX` at once; failures are logged.
async fn close_all<D: Volume>(partitions: Vec<Arc<Partition<D>>>) {
    futures_util::stream::iter(partitions)
        .for_each_concurrent(cairn_types::limits::PARTITION_OPENS_PARALLEL_MAX, |partition| async move {
            if let Err(error) = partition.close().await {
                tracing::error!(topic = partition.topic(), partition = partition.index(), %error, "closing partition failed");
            }
        })
        .await;
}

/// Waits, all at once, for `partitions` to lead their groups, up to [`LEADER_WAIT`]; those that
/// do not are logged (they refuse produce as not the leader until they do).
async fn wait_leaders<D: Volume>(partitions: &[Arc<Partition<D>>]) {
    let waits = partitions.iter().filter(|p| p.offline().is_none()).map(|partition| async move {
        if !partition.wait_leader(LEADER_WAIT).await && partition.offline().is_none() {
            tracing::warn!(
                topic = partition.topic(),
                partition = partition.index(),
                "partition has not elected itself leader yet"
            );
        }
    });
    futures_util::future::join_all(waits).await;
}
