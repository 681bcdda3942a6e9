//! [`LocalMetadata`]: the single-node [`MetadataStore`], one checksummed file rewritten atomically.
//!
//! # File format
//!
//! `<dir>/metadata.json` is two lines: a one-line JSON header, then the body.
//!
//! ```text
//! {"format":"cairn-metadata","version":2,"body_bytes":123,"crc32c":3735928559}
//! { ...pretty-printed JSON body: node_id, topics and pending_deletions... }
//! ```
//!
//! Version 2 added `pending_deletions`: topics already deleted (their names free) whose partition
//! data the broker has not finished removing. Version 1 files (without it) are read as having
//! none; every write is version 2.
//!
//! `body_bytes` is the body's length without the final newline and `crc32c` its CRC32C, so any
//! damage (a torn or truncated file, a flipped bit anywhere) is detected on open and reported as
//! [`MetaError::Storage`]; the store never starts empty in place of a damaged file. The body is
//! decoded into private structs and then through the same validating constructors as a request
//! ([`TopicName::new`], [`TopicConfigs::from_overrides`]), so bytes from disk are never trusted.
//! The body records the id of the node that owns the directory; opening it as another node
//! fails, as Kafka's `meta.properties` check does.
//!
//! # Durability
//!
//! Every change writes the whole state to `metadata.json.tmp`, fsyncs it, renames it over
//! `metadata.json` and fsyncs the directory, and only then publishes the new state to readers and
//! returns. A crash at any point leaves either the old file or the new one; a leftover `.tmp` is
//! an unacknowledged change and is removed on open. Admin changes are rare, so rewriting the
//! whole file (bounded by [`METADATA_FILE_BYTES_MAX`]) is the simple, correct choice.
//!
//! A failure before the rename leaves the old file in place: the change is refused and the
//! store stays usable (a full disk is retriable). A failure at or after the rename leaves the
//! file in an unknown state, so the store is *poisoned*: every later change fails until the
//! process restarts and reads back whatever the disk holds (fail-stop, as the partition logs do).
//!
//! # Concurrency
//!
//! Reads clone an `Arc` of the current snapshot and never wait for a write's IO. Writes are
//! serialized by one mutex held across their IO. The trait's futures do their IO inline when
//! polled (they never return `Pending`); on tokio, callers that mind a blocked worker for one
//! fsync can run them under `block_in_place` or `spawn_blocking`.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use cairn_storage::{Disk, DiskFile, RealDisk};
use cairn_types::limits::{METADATA_FILE_BYTES_MAX, TOPICS_MAX};
use cairn_types::{LeaderEpoch, NodeId, ProducerId};
use serde::{Deserialize, Serialize};

use crate::catalog::{Topics, topic_from_parts};
use crate::cluster::{Liveness, check_lists};
use crate::{
    ConfigChange, MetaError, MetadataStore, NodeMeta, PartitionLeader, REPLICATION_FACTOR_DEFAULT,
    TopicConfigs, TopicId, TopicMeta, TopicName, TopicSpec,
};

/// Name of the metadata file inside the store's directory.
const FILE_NAME: &str = "metadata.json";
/// The name of [`LocalMetadata`]'s file in its directory: what the consistent core imports
/// once and renames.
pub const LOCAL_METADATA_FILE: &str = FILE_NAME;
/// Name of the file a change is written to before it is renamed over [`FILE_NAME`].
const TMP_FILE_NAME: &str = "metadata.json.tmp";
/// The header's `format`: says what the file is to a person who finds it.
const FORMAT: &str = "cairn-metadata";
/// The header's `version`: the layout of the body. Bump it, and read both, when the body changes.
const VERSION: u32 = 2;
/// The oldest body layout still read ([`VERSION`] 1 had no `pending_deletions`).
const VERSION_OLDEST: u32 = 1;
/// The leader epoch of every partition. One node leads everything forever, so the epoch never
/// changes, across restarts included; the consistent core will bump it on leader changes.
const LEADER_EPOCH: LeaderEpoch = LeaderEpoch(0);
/// Fresh random ids tried before giving up on finding an unused one (a collision of 122 random
/// bits will not happen; the bound keeps the loop honest).
const TOPIC_ID_ATTEMPTS_MAX: usize = 16;

/// The single-node metadata store: this node is the only node and leads every partition with
/// epoch 0. See the module docs for the file format and the durability rules.
///
/// `D` is the file system; [`RealDisk`] in production, `cairn_storage::sim::SimDisk` in tests that
/// crash.
pub struct LocalMetadata<D: Disk = RealDisk> {
    /// Where `metadata.json` lives.
    disk: D,
    /// The directory holding `metadata.json`.
    dir: PathBuf,
    /// This node: the only member of the cluster, leader of everything.
    node: NodeMeta,
    /// Serializes changes; `true` once the store is poisoned (see the module docs).
    writer: Mutex<bool>,
    /// What readers see: the state as of the last change made durable. Replaced whole, never
    /// mutated in place, so a poisoned lock still holds a consistent snapshot.
    snapshot: RwLock<Arc<State>>,
}

/// Everything the store holds besides the node: the topics, checked by [`Topics`]' rules.
type State = Topics;

/// A write's outcome when it fails: whether the old file is known to be intact.
enum PersistError {
    /// Failed before the rename: `metadata.json` is the old state. The store stays usable.
    Intact(MetaError),
    /// Failed at or after the rename: the file may hold the old or the new state.
    Unknown(MetaError),
}

impl PersistError {
    fn into_inner(self) -> MetaError {
        match self {
            PersistError::Intact(error) | PersistError::Unknown(error) => error,
        }
    }
}

/// The first line of the file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    /// Always [`FORMAT`].
    format: String,
    /// Layout of the body; [`VERSION`].
    version: u32,
    /// Length of the body in bytes, without the newline that ends the file.
    body_bytes: u64,
    /// CRC32C of those bytes.
    crc32c: u32,
}

/// The body, version 2 (version 1 is the same without `pending_deletions`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    /// The node that owns the directory.
    node_id: u64,
    /// Every topic, sorted by name.
    topics: Vec<StoredTopic>,
    /// Deleted topics whose data is still being removed, sorted by id.
    #[serde(default)]
    pending_deletions: Vec<StoredTopic>,
}

/// One topic in the body; validated into a [`TopicMeta`] on open.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredTopic {
    name: String,
    /// Hyphenated UUID.
    id: String,
    partitions: u32,
    replication_factor: u16,
    /// Overrides only, in canonical text.
    configs: BTreeMap<String, String>,
}

impl LocalMetadata<RealDisk> {
    /// Opens the store in `dir` on the real file system, creating the directory and an empty
    /// store if there is none.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if the directory or file cannot be read or written, if the file is
    /// damaged, or if it belongs to another node id.
    pub fn open(dir: &Path, node: NodeMeta) -> Result<LocalMetadata<RealDisk>, MetaError> {
        LocalMetadata::open_with_disk(RealDisk, dir, node)
    }
}

impl<D: Disk> LocalMetadata<D> {
    /// Opens the store in `dir` on `disk`, creating the directory and an empty store if there is
    /// none. An empty store is made durable before this returns, claiming `dir` for `node`.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if the directory or file cannot be read or written, if the file is
    /// damaged, or if it belongs to another node id.
    pub fn open_with_disk(
        disk: D,
        dir: &Path,
        node: NodeMeta,
    ) -> Result<LocalMetadata<D>, MetaError> {
        disk.create_dir_all(dir).map_err(io_error("create directory", dir))?;
        let tmp_path = dir.join(TMP_FILE_NAME);
        remove_if_exists(&disk, &tmp_path)?;
        let path = dir.join(FILE_NAME);
        let stored = match disk.open(&path) {
            Ok(file) => Some(read_state(&*file, &path, node.id)?),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(io_error("open", &path)(error)),
        };
        let store = LocalMetadata {
            disk,
            dir: dir.to_path_buf(),
            node,
            writer: Mutex::new(false),
            snapshot: RwLock::new(Arc::new(stored.clone().unwrap_or_default())),
        };
        if stored.is_none() {
            store.persist(&State::default()).map_err(PersistError::into_inner)?;
        }
        Ok(store)
    }

    /// The current snapshot.
    fn snapshot(&self) -> Arc<State> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs one change: `change` computes the next state (or `None` if nothing changes) and the
    /// result from the current one; the next state is made durable, then published.
    fn change<T>(
        &self,
        change: impl FnOnce(&State) -> Result<(Option<State>, T), MetaError>,
    ) -> Result<T, MetaError> {
        // A panic while holding the lock may have come after the rename and before the publish.
        let Ok(mut poisoned) = self.writer.lock() else {
            return Err(MetaError::Storage(
                "metadata store is poisoned: a change panicked; restart to recover".into(),
            ));
        };
        if *poisoned {
            return Err(MetaError::Storage(
                "metadata store is poisoned: an earlier write failed after it may have reached \
                 the disk; restart to recover"
                    .into(),
            ));
        }
        let current = self.snapshot();
        let (next, value) = change(&current)?;
        if let Some(next) = next {
            match self.persist(&next) {
                Ok(()) => {}
                Err(PersistError::Intact(error)) => return Err(error),
                Err(PersistError::Unknown(error)) => {
                    *poisoned = true;
                    return Err(error);
                }
            }
            *self.snapshot.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        }
        Ok(value)
    }

    /// Makes `state` the durable content of the store (see the module docs).
    fn persist(&self, state: &State) -> Result<(), PersistError> {
        let tmp_path = self.dir.join(TMP_FILE_NAME);
        let path = self.dir.join(FILE_NAME);
        let bytes = encode(self.node.id, state).map_err(PersistError::Intact)?;
        remove_if_exists(&self.disk, &tmp_path).map_err(PersistError::Intact)?;
        let file = self.disk.create(&tmp_path).map_err(|e| intact("create", &tmp_path, e))?;
        file.write_all_at(&bytes, 0).map_err(|e| intact("write", &tmp_path, e))?;
        file.sync_data().map_err(|e| intact("fsync", &tmp_path, e))?;
        drop(file);
        self.disk
            .rename(&tmp_path, &path)
            .map_err(|e| PersistError::Unknown(io_error("rename", &tmp_path)(e)))?;
        self.disk
            .sync_dir(&self.dir)
            .map_err(|e| PersistError::Unknown(io_error("fsync directory", &self.dir)(e)))
    }

    fn create(&self, spec: TopicSpec) -> Result<Arc<TopicMeta>, MetaError> {
        self.change(|state| {
            let planned = self.plan(state, &spec)?;
            let topic = Arc::new(TopicMeta { id: unused_topic_id(state)?, ..planned });
            let mut next = state.clone();
            next.put(&topic);
            Ok((Some(next), topic))
        })
    }

    /// The topic `spec` creates on `state` (with a nil id), if it may. Kafka's order of checks:
    /// existence, partitions, replication factor (or the assignment), configs.
    fn plan(&self, state: &State, spec: &TopicSpec) -> Result<TopicMeta, MetaError> {
        state.check_create(&spec.name, spec.partitions)?;
        let replication_factor = match &spec.assignments {
            Some(assignments) => check_lists(self.liveness(), assignments, 0, None)?,
            None => {
                let nodes = 1;
                if spec.replication_factor == REPLICATION_FACTOR_DEFAULT {
                    1
                } else if usize::from(spec.replication_factor) > nodes {
                    return Err(MetaError::InvalidReplicationFactor {
                        factor: i64::from(spec.replication_factor),
                        reason: format!("{nodes} node(s) available"),
                    });
                } else {
                    spec.replication_factor
                }
            }
        };
        Ok(TopicMeta {
            id: TopicId::from_bytes([0; 16]),
            name: spec.name.clone(),
            partitions: spec.partitions,
            replication_factor,
            configs: TopicConfigs::from_overrides(&spec.configs)?,
        })
    }

    /// The liveness of the nodes a replica list may name: this node alone, alive.
    fn liveness(&self) -> impl Fn(NodeId) -> Option<Liveness> {
        let node = self.node.id;
        move |id| (id == node).then_some(Liveness::Alive)
    }

    /// The topic `name` grown to `count` partitions on `state`, if it may, with `assignments`
    /// for the new partitions if given.
    fn grown(
        &self,
        state: &Topics,
        name: &str,
        count: u32,
        assignments: Option<&[Vec<NodeId>]>,
    ) -> Result<Arc<TopicMeta>, MetaError> {
        let topic = state.grown(name, count)?;
        if let Some(assignments) = assignments {
            let current = state.live.get(name).map_or(0, |topic| topic.partitions);
            let added = count - current;
            if assignments.len() != added as usize {
                return Err(MetaError::InvalidReplicaAssignment(format!(
                    "Attempted to add {added} additional partition(s), but only {} \
                     assignment(s) were specified.",
                    assignments.len()
                )));
            }
            check_lists(self.liveness(), assignments, current, Some(topic.replication_factor))?;
        }
        Ok(topic)
    }

    fn delete(&self, name: &str) -> Result<Arc<TopicMeta>, MetaError> {
        self.change(|state| {
            let topic = state.check_delete(name)?;
            let mut next = state.clone();
            next.delete(&topic);
            Ok((Some(next), topic))
        })
    }

    fn finish(&self, id: TopicId) -> Result<(), MetaError> {
        self.change(|state| {
            if !state.deleting.contains_key(&id) {
                return Ok((None, ()));
            }
            let mut next = state.clone();
            next.deleting.remove(&id);
            Ok((Some(next), ()))
        })
    }

    fn add_partitions(
        &self,
        name: &str,
        count: u32,
        assignments: Option<&[Vec<NodeId>]>,
    ) -> Result<Arc<TopicMeta>, MetaError> {
        self.change(|state| {
            let topic = self.grown(state, name, count, assignments)?;
            let mut next = state.clone();
            next.put(&topic);
            Ok((Some(next), topic))
        })
    }

    fn alter(&self, name: &str, changes: &[ConfigChange]) -> Result<Arc<TopicMeta>, MetaError> {
        self.change(|state| {
            let (topic, changed) = state.altered(name, changes)?;
            if !changed {
                return Ok((None, topic));
            }
            let mut next = state.clone();
            next.put(&topic);
            Ok((Some(next), topic))
        })
    }
}

impl<D: Disk> MetadataStore for LocalMetadata<D> {
    /// The single-node test store keeps no producer id counter: it refuses (idempotent
    /// producers run against the consistent core, which every `cairn serve` runs).
    async fn allocate_producer_ids(&self) -> Result<(ProducerId, i64), MetaError> {
        Err(MetaError::Refused("this metadata store allocates no producer ids".into()))
    }

    fn topics(&self) -> Vec<Arc<TopicMeta>> {
        self.snapshot().live.values().cloned().collect()
    }

    fn topic(&self, name: &str) -> Option<Arc<TopicMeta>> {
        self.snapshot().live.get(name).cloned()
    }

    fn nodes(&self) -> Vec<NodeMeta> {
        vec![self.node.clone()]
    }

    fn controller(&self) -> Option<NodeId> {
        Some(self.node.id)
    }

    fn leader(&self, topic: &str, partition: u32) -> Option<PartitionLeader> {
        let topic = self.topic(topic)?;
        (partition < topic.partitions).then(|| PartitionLeader {
            leader: self.node.id,
            replicas: vec![self.node.id],
            leader_epoch: LEADER_EPOCH,
            group: 0,
        })
    }

    async fn create_topic(&self, spec: TopicSpec) -> Result<Arc<TopicMeta>, MetaError> {
        self.create(spec)
    }

    async fn delete_topic(&self, name: &str) -> Result<Arc<TopicMeta>, MetaError> {
        self.delete(name)
    }

    fn check_create_topic(&self, spec: &TopicSpec) -> Result<Arc<TopicMeta>, MetaError> {
        self.plan(&self.snapshot(), spec).map(Arc::new)
    }

    async fn create_partitions(
        &self,
        name: &str,
        count: u32,
        assignments: Option<Vec<Vec<NodeId>>>,
    ) -> Result<Arc<TopicMeta>, MetaError> {
        self.add_partitions(name, count, assignments.as_deref())
    }

    fn check_create_partitions(
        &self,
        name: &str,
        count: u32,
        assignments: Option<&[Vec<NodeId>]>,
    ) -> Result<Arc<TopicMeta>, MetaError> {
        self.grown(&self.snapshot(), name, count, assignments)
    }

    fn pending_deletions(&self) -> Vec<Arc<TopicMeta>> {
        self.snapshot().deleting.values().cloned().collect()
    }

    async fn finish_deletion(&self, id: TopicId) -> Result<(), MetaError> {
        self.finish(id)
    }

    async fn alter_configs(
        &self,
        name: &str,
        changes: Vec<ConfigChange>,
    ) -> Result<Arc<TopicMeta>, MetaError> {
        self.alter(name, &changes)
    }
}

impl<D: Disk> fmt::Debug for LocalMetadata<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalMetadata")
            .field("dir", &self.dir)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// A random topic id that is free in `state` (see [`Topics::id_is_free`]).
fn unused_topic_id(state: &State) -> Result<TopicId, MetaError> {
    (0..TOPIC_ID_ATTEMPTS_MAX)
        .map(|_| TopicId::random())
        .find(|&id| state.id_is_free(id))
        .ok_or_else(|| MetaError::Storage("no unused random topic id found".into()))
}

/// A topic as the body stores it.
fn stored(topic: &TopicMeta) -> StoredTopic {
    StoredTopic {
        name: topic.name.to_string(),
        id: topic.id.to_string(),
        partitions: topic.partitions,
        replication_factor: topic.replication_factor,
        configs: topic.configs.overrides().clone(),
    }
}

/// The whole file for `state`.
fn encode(node: NodeId, state: &State) -> Result<Vec<u8>, MetaError> {
    let body = Body {
        node_id: node.0,
        topics: state.live.values().map(|topic| stored(topic)).collect(),
        pending_deletions: state.deleting.values().map(|topic| stored(topic)).collect(),
    };
    let encoding =
        |error: serde_json::Error| MetaError::Storage(format!("encode metadata: {error}"));
    let body = serde_json::to_vec_pretty(&body).map_err(encoding)?;
    let header = Header {
        format: FORMAT.to_owned(),
        version: VERSION,
        body_bytes: body.len() as u64,
        crc32c: crc32c::crc32c(&body),
    };
    let mut bytes = serde_json::to_vec(&header).map_err(encoding)?;
    bytes.push(b'\n');
    bytes.extend_from_slice(&body);
    bytes.push(b'\n');
    // Never write what `read_state` would refuse.
    if bytes.len() as u64 > METADATA_FILE_BYTES_MAX {
        return Err(MetaError::Storage(format!(
            "metadata of {} bytes exceeds METADATA_FILE_BYTES_MAX",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Reads, checks and validates the file at `path`, owned by `node`.
fn read_state(file: &impl DiskFile, path: &Path, node: NodeId) -> Result<State, MetaError> {
    let len = file.len().map_err(io_error("stat", path))?;
    if len > METADATA_FILE_BYTES_MAX {
        return Err(damaged(path, &format!("{len} bytes exceeds METADATA_FILE_BYTES_MAX")));
    }
    let len = usize::try_from(len).map_err(|_| damaged(path, "too large for memory"))?;
    let mut bytes = vec![0; len];
    let read = file.read_at(&mut bytes, 0).map_err(io_error("read", path))?;
    if read != len {
        return Err(MetaError::Storage(format!("{} shrank while read", path.display())));
    }
    let body = decode(&bytes).map_err(|reason| damaged(path, &reason))?;
    if body.node_id != node.0 {
        return Err(MetaError::Storage(format!(
            "{} belongs to node {}, but this is node {node}; refusing to open another node's \
             metadata",
            path.display(),
            body.node_id
        )));
    }
    state_from(body).map_err(|reason| damaged(path, &reason))
}

/// Splits the file into header and body and checks the body's length and checksum.
fn decode(bytes: &[u8]) -> Result<Body, String> {
    let newline = bytes.iter().position(|&byte| byte == b'\n').ok_or("no header line")?;
    let (header, rest) = (&bytes[..newline], &bytes[newline + 1..]);
    let header: Header =
        serde_json::from_slice(header).map_err(|error| format!("bad header: {error}"))?;
    if header.format != FORMAT {
        return Err("not a cairn metadata file".into());
    }
    if !(VERSION_OLDEST..=VERSION).contains(&header.version) {
        return Err(format!(
            "format version {} is not supported (this cairn reads versions \
             {VERSION_OLDEST} to {VERSION})",
            header.version
        ));
    }
    let body_bytes = usize::try_from(header.body_bytes)
        .ok()
        .filter(|&body_bytes| body_bytes.checked_add(1) == Some(rest.len()))
        .ok_or_else(|| {
            format!(
                "length mismatch: the header announces {} body bytes, the file has {} after it",
                header.body_bytes,
                rest.len()
            )
        })?;
    let (body, end) = rest.split_at(body_bytes);
    if end != b"\n" {
        return Err("the file does not end with a newline".into());
    }
    let crc = crc32c::crc32c(body);
    if crc != header.crc32c {
        return Err(format!(
            "checksum mismatch: stored {:#010x}, computed {crc:#010x}",
            header.crc32c
        ));
    }
    serde_json::from_slice(body).map_err(|error| format!("bad body: {error}"))
}

/// Validates a decoded body into a state, as strictly as requests are validated.
fn state_from(body: Body) -> Result<State, String> {
    // Bounded before anything is validated: a damaged file must not cost unbounded work.
    if body.topics.len() > TOPICS_MAX || body.pending_deletions.len() > TOPICS_MAX {
        return Err(format!(
            "{} topics and {} pending deletions exceed TOPICS_MAX",
            body.topics.len(),
            body.pending_deletions.len()
        ));
    }
    let live = body.topics.into_iter().map(topic_from).collect::<Result<Vec<_>, _>>()?;
    let deleting =
        body.pending_deletions.into_iter().map(topic_from).collect::<Result<Vec<_>, _>>()?;
    Topics::from_lists(live, deleting)
}

/// Validates one stored topic.
fn topic_from(stored: StoredTopic) -> Result<TopicMeta, String> {
    let name = TopicName::new(&stored.name).map_err(|error| error.to_string())?;
    let id: TopicId =
        stored.id.parse().map_err(|error| format!("topic {name}: bad id: {error}"))?;
    let pairs: Vec<(String, String)> = stored.configs.into_iter().collect();
    topic_from_parts(id, name, stored.partitions, stored.replication_factor, &pairs)
}

fn remove_if_exists(disk: &impl Disk, path: &Path) -> Result<(), MetaError> {
    match disk.remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(io_error("remove", path)(error))
        }
        _ => Ok(()),
    }
}

fn intact(op: &str, path: &Path, error: io::Error) -> PersistError {
    PersistError::Intact(io_error(op, path)(error))
}

fn io_error(op: &str, path: &Path) -> impl FnOnce(io::Error) -> MetaError {
    let message = format!("{op} {}", path.display());
    move |error| MetaError::Storage(format!("{message}: {error}"))
}

fn damaged(path: &Path, reason: &str) -> MetaError {
    MetaError::Storage(format!(
        "{} is damaged ({reason}); refusing to start without the topic metadata",
        path.display()
    ))
}
