//! [`Broker`]: the partitions hosted on this node, kept in step with the metadata store.
//!
//! Topic operations go to the [`MetadataStore`] first and then to the partitions here, under one
//! admin lock so two operations on topics never interleave. On startup the data directory is
//! reconciled with the metadata: every partition the metadata names is opened (recovering its
//! log), and directories of deleted topics left by a crash are removed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cairn_meta::{ConfigChange, MetadataStore, TopicMeta, TopicSpec};
use cairn_storage::{FlushPolicy, Log, LogConfig, RealDisk, Retention, SystemClock};
use cairn_types::LeaderEpoch;

use crate::error::{BrokerError, PartitionError};
use crate::partition::{Partition, PartitionConfig};

/// Suffix of a partition directory being deleted.
const DELETED_SUFFIX: &str = ".deleted";

/// Broker settings.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Partition logs live in `data_dir/topics/<topic>-<partition>`.
    pub data_dir: PathBuf,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Bytes at the durable end of each partition log kept in the OS page cache
    /// ([`LogConfig::cache_window_bytes`]); `None` leaves caching to the OS.
    pub cache_window_bytes: Option<u64>,
    /// Observes the duration of every partition log flush (a group commit's fsync), in seconds.
    pub flush_seconds: Arc<cairn_metrics::Histogram>,
}

/// The partitions hosted on this node.
pub struct Broker<M> {
    meta: Arc<M>,
    topics_dir: PathBuf,
    partitions: RwLock<HashMap<(String, u32), Arc<Partition>>>,
    /// Serializes topic create, delete, alter and partition creation.
    admin: tokio::sync::Mutex<()>,
    /// Bumped whenever any partition's high watermark moves.
    progress: Arc<tokio::sync::watch::Sender<u64>>,
    config: BrokerConfig,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BrokerError {
    let path = path.to_path_buf();
    move |source| BrokerError::Io { op, path, source }
}

/// The partition's settings and log configuration from its topic's configs and the broker's.
fn settings_for(topic: &TopicMeta, config: &BrokerConfig) -> (PartitionConfig, LogConfig) {
    let configs = &topic.configs;
    let settings = PartitionConfig {
        max_message_bytes: configs.max_message_bytes(),
        retention: Retention { bytes: configs.retention_bytes(), ms: configs.retention_ms() },
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

impl<M: MetadataStore> Broker<M> {
    /// Opens every partition the metadata names (recovering their logs) and removes the data of
    /// topics that no longer exist. Spawns each partition's flusher on the current runtime.
    ///
    /// # Errors
    /// [`BrokerError`] if a log cannot be opened (e.g. corruption) or the directory is unusable.
    pub async fn open(config: BrokerConfig, meta: Arc<M>) -> Result<Arc<Broker<M>>, BrokerError> {
        let topics_dir = config.data_dir.join("topics");
        std::fs::create_dir_all(&topics_dir).map_err(io("create", &topics_dir))?;
        let broker = Arc::new(Broker {
            meta,
            topics_dir,
            partitions: RwLock::new(HashMap::new()),
            admin: tokio::sync::Mutex::new(()),
            progress: Arc::new(tokio::sync::watch::channel(0).0),
            config,
        });
        for topic in broker.meta.topics() {
            broker.open_partitions(&topic, 0)?;
        }
        broker.remove_strays()?;
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

    /// A hosted partition.
    #[must_use]
    pub fn partition(&self, topic: &str, index: u32) -> Option<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        partitions.get(&(topic.to_owned(), index)).cloned()
    }

    fn partition_dir(&self, topic: &str, index: u32) -> PathBuf {
        self.topics_dir.join(format!("{topic}-{index}"))
    }

    /// Opens partitions `from..topic.partitions` of `topic` and starts their flushers.
    fn open_partitions(&self, topic: &TopicMeta, from: u32) -> Result<(), BrokerError> {
        let name = topic.name.as_str();
        let (settings, log_config) = settings_for(topic, &self.config);
        for index in from..topic.partitions {
            let dir = self.partition_dir(name, index);
            let log = Log::open(RealDisk, &dir, log_config.clone(), Arc::new(SystemClock))
                .map_err(|source| BrokerError::Partition {
                    topic: name.to_owned(),
                    partition: index,
                    source: source.into(),
                })?;
            let epoch =
                self.meta.leader(name, index).map_or(LeaderEpoch(0), |leader| leader.leader_epoch);
            let progress = Arc::clone(&self.progress);
            let flush_seconds = Arc::clone(&self.config.flush_seconds);
            let partition = Partition::new(
                name.to_owned(),
                index,
                log,
                settings,
                epoch,
                progress,
                flush_seconds,
            );
            tokio::spawn(Arc::clone(&partition).run_flusher());
            let mut partitions =
                self.partitions.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            partitions.insert((name.to_owned(), index), partition);
        }
        Ok(())
    }

    /// Removes partition directories that no topic owns (a crash during a topic deletion).
    fn remove_strays(&self) -> Result<(), BrokerError> {
        let entries = std::fs::read_dir(&self.topics_dir).map_err(io("list", &self.topics_dir))?;
        for entry in entries {
            let entry = entry.map_err(io("list", &self.topics_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let owned = name.rsplit_once('-').is_some_and(|(topic, index)| {
                index.parse::<u32>().is_ok_and(|index| self.partition(topic, index).is_some())
            });
            if !owned {
                tracing::warn!(dir = %name, "removing partition data of a deleted topic");
                let path = entry.path();
                std::fs::remove_dir_all(&path).map_err(io("remove", &path))?;
            }
        }
        Ok(())
    }

    /// Creates a topic and opens its partitions.
    ///
    /// # Errors
    /// [`BrokerError::Meta`] for invalid or duplicate topics; [`BrokerError::Partition`].
    pub async fn create_topic(&self, spec: TopicSpec) -> Result<Arc<TopicMeta>, BrokerError> {
        let _admin = self.admin.lock().await;
        let topic = self.meta.create_topic(spec).await?;
        self.open_partitions(&topic, 0)?;
        Ok(topic)
    }

    /// Raises a topic's partition count.
    ///
    /// # Errors
    /// As [`Broker::create_topic`].
    pub async fn create_partitions(
        &self,
        name: &str,
        count: u32,
    ) -> Result<Arc<TopicMeta>, BrokerError> {
        let _admin = self.admin.lock().await;
        let before = self.meta.topic(name).map_or(0, |topic| topic.partitions);
        let topic = self.meta.create_partitions(name, count).await?;
        self.open_partitions(&topic, before)?;
        Ok(topic)
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

    /// Deletes a topic: metadata first, then its partitions' data.
    ///
    /// # Errors
    /// [`BrokerError::Meta`] if it does not exist; [`BrokerError::Io`] removing data (the topic is
    /// gone from the metadata; the data is removed at the next start).
    pub async fn delete_topic(&self, name: &str) -> Result<Arc<TopicMeta>, BrokerError> {
        let _admin = self.admin.lock().await;
        let topic = self.meta.delete_topic(name).await?;
        for index in 0..topic.partitions {
            let removed = {
                let mut partitions =
                    self.partitions.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                partitions.remove(&(name.to_owned(), index))
            };
            if let Some(partition) = removed {
                // Waiters see the partition closed; its data goes either way.
                if let Err(error) = partition.close() {
                    tracing::warn!(topic = name, partition = index, %error, "closing a deleted partition failed");
                }
            }
            let dir = self.partition_dir(name, index);
            let doomed = self.topics_dir.join(format!("{name}-{index}{DELETED_SUFFIX}"));
            match std::fs::rename(&dir, &doomed) {
                Ok(()) => std::fs::remove_dir_all(&doomed).map_err(io("remove", &doomed))?,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(io("rename", &dir)(error)),
            }
        }
        Ok(topic)
    }

    /// Every hosted partition.
    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        partitions.values().cloned().collect()
    }

    /// Applies retention to every partition every `retention_interval` until `shutdown` turns
    /// true; spawn it once. A sweep in progress stops before its next partition, so awaiting
    /// this task after signalling `shutdown` waits for one partition's retention at most, and no
    /// sweep touches the partitions once [`Broker::shutdown`] closes them.
    pub async fn run_retention(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(self.config.retention_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = interval.tick() => {}
            }
            let broker = Arc::clone(&self);
            let stopping = shutdown.clone();
            let sweep = tokio::task::spawn_blocking(move || broker.sweep_retention(&stopping));
            if sweep.await.is_err() {
                tracing::error!("retention sweep panicked");
            }
        }
    }

    /// One retention pass over every partition, stopping early once `shutdown` turns true.
    fn sweep_retention(&self, shutdown: &tokio::sync::watch::Receiver<bool>) {
        for partition in self.all_partitions() {
            if *shutdown.borrow() {
                return;
            }
            match partition.apply_retention() {
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

    /// Flushes and seals every partition (clean shutdown: the next start walks nothing).
    pub async fn shutdown(&self) {
        for partition in self.all_partitions() {
            let topic = partition.topic().to_owned();
            let index = partition.index();
            let closed = tokio::task::spawn_blocking(move || partition.close()).await;
            match closed {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(topic, partition = index, %error, "closing partition failed")
                }
                Err(error) => {
                    tracing::error!(topic, partition = index, %error, "closing partition panicked")
                }
            }
        }
    }
}
