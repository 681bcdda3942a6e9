//! The versioned binary encoding of a [`CoreCommand`]: the value of the one record of a core
//! log entry (RFC 0003 §5).
//!
//! ```text
//! version: u8 (= 1)
//! kind: u8
//!  1 SetClusterId         id: [u8; 16]
//!  2 RegisterNode         node, peer_address: str
//!  3 SetLiveness          node_id: u64, liveness: u8 (0 dead, 1 alive)
//!  4 CreateTopic          topic_id: [u8; 16], name: str, configs, assignments
//!  5 CreatePartitions     name: str, count: u32, assignments
//!  6 AlterConfigs         name: str, change_count: u16, change_count × change
//!  7 DeleteTopic          name: str
//!  8 FinishDeletion       topic_id: [u8; 16]
//!  9 AllocateProducerIds  node_id: u64
//! 10 Import               node_id: u64, topic_count: u32 × topic, deleting_count: u32 × topic
//! 11 SetEtcdAddress       node_id: u64, address: optional str
//!
//! node        = node_id: u64, host: str, port: u16, rack: optional str
//! configs     = count: u16, count × (key: str, value: str)
//! assignments = count: u32 (<= TOPIC_PARTITIONS_MAX), count × (replicas: u8, replicas × u64)
//! change      = 0 key: str, value: str (set) | 1 key: str (delete)
//! topic       = topic_id: [u8; 16], name: str, partitions: u32, replication_factor: u16, configs
//! ```
//!
//! Kinds are only ever added, with the next number, and the version stays 1: a log written
//! before a kind existed never holds it, so every older log still decodes (kind 11 came with
//! the etcd API's member list).
//!
//! Conventions (big-endian, `str`, optional values, counts checked against the bytes left) are
//! `codec.rs`'s. Decoding checks form, not meaning: topic names and stored topics are validated
//! because their types demand it; whether a node exists or a config is valid is `apply`'s
//! question, asked against the state.

use cairn_types::limits::{TOPIC_PARTITIONS_MAX, TOPICS_MAX};

use crate::ConfigChange;
use crate::cluster::codec::{CodecError, Reader, STR_BYTES_MIN, TOPIC_BYTES_MIN, Writer};
use crate::cluster::command::CoreCommand;
use crate::cluster::state::Liveness;

/// The only version written; a reader refuses any other.
const VERSION: u8 = 1;

const SET_CLUSTER_ID: u8 = 1;
const REGISTER_NODE: u8 = 2;
const SET_LIVENESS: u8 = 3;
const CREATE_TOPIC: u8 = 4;
const CREATE_PARTITIONS: u8 = 5;
const ALTER_CONFIGS: u8 = 6;
const DELETE_TOPIC: u8 = 7;
const FINISH_DELETION: u8 = 8;
const ALLOCATE_PRODUCER_IDS: u8 = 9;
const IMPORT: u8 = 10;
const SET_ETCD_ADDRESS: u8 = 11;

impl CoreCommand {
    /// The versioned encoding (module docs).
    ///
    /// # Errors
    /// [`CodecError::TooLong`] if a string, list or replica list does not fit its field (a
    /// config value over 65,535 bytes, more than 255 replicas); nothing is encoded then.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut w = Writer::default();
        w.u8(VERSION);
        w.u8(self.kind());
        match self {
            CoreCommand::SetClusterId { id } => w.bytes16(id),
            CoreCommand::RegisterNode { node, peer_address } => {
                w.node(node)?;
                w.str("peer address", peer_address)?;
            }
            CoreCommand::SetEtcdAddress { node, address } => {
                w.u64(node.0);
                w.opt_str("etcd address", address.as_deref())?;
            }
            CoreCommand::SetLiveness { node, liveness } => {
                w.u64(node.0);
                w.u8(u8::from(*liveness == Liveness::Alive));
            }
            CoreCommand::CreateTopic { id, name, configs, assignments } => {
                w.bytes16(id.as_bytes());
                w.str("topic name", name.as_str())?;
                w.pairs(configs.iter().map(|(key, value)| (key, value)))?;
                put_assignments(&mut w, assignments)?;
            }
            CoreCommand::CreatePartitions { name, count, assignments } => {
                w.str("topic name", name.as_str())?;
                w.u32(*count);
                put_assignments(&mut w, assignments)?;
            }
            CoreCommand::AlterConfigs { name, changes } => {
                w.str("topic name", name.as_str())?;
                put_changes(&mut w, changes)?;
            }
            CoreCommand::DeleteTopic { name } => w.str("topic name", name.as_str())?,
            CoreCommand::FinishDeletion { id } => w.bytes16(id.as_bytes()),
            CoreCommand::AllocateProducerIds { node } => w.u64(node.0),
            CoreCommand::Import { node, topics, deleting } => {
                w.u64(node.0);
                for list in [topics, deleting] {
                    w.count("topics", list.len())?;
                    for topic in list {
                        w.topic(topic)?;
                    }
                }
            }
        }
        Ok(w.out)
    }

    /// Decodes [`CoreCommand::encode`]'s bytes.
    ///
    /// # Errors
    /// [`CodecError`] for anything but a whole, well-formed command of a known version.
    pub fn decode(bytes: &[u8]) -> Result<CoreCommand, CodecError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(CodecError::UnknownVersion { what: "command", version });
        }
        let command = match r.u8()? {
            SET_CLUSTER_ID => CoreCommand::SetClusterId { id: r.bytes16()? },
            REGISTER_NODE => {
                CoreCommand::RegisterNode { node: r.node()?, peer_address: r.str("peer address")? }
            }
            SET_ETCD_ADDRESS => CoreCommand::SetEtcdAddress {
                node: r.node_id()?,
                address: r.opt_str("etcd address")?,
            },
            SET_LIVENESS => {
                let node = r.node_id()?;
                let alive = r.flag("liveness")?;
                let liveness = if alive { Liveness::Alive } else { Liveness::Dead };
                CoreCommand::SetLiveness { node, liveness }
            }
            CREATE_TOPIC => CoreCommand::CreateTopic {
                id: r.topic_id()?,
                name: r.topic_name()?,
                configs: r.pairs()?,
                assignments: assignments(&mut r)?,
            },
            CREATE_PARTITIONS => CoreCommand::CreatePartitions {
                name: r.topic_name()?,
                count: r.u32()?,
                assignments: assignments(&mut r)?,
            },
            ALTER_CONFIGS => {
                CoreCommand::AlterConfigs { name: r.topic_name()?, changes: changes(&mut r)? }
            }
            DELETE_TOPIC => CoreCommand::DeleteTopic { name: r.topic_name()? },
            FINISH_DELETION => CoreCommand::FinishDeletion { id: r.topic_id()? },
            ALLOCATE_PRODUCER_IDS => CoreCommand::AllocateProducerIds { node: r.node_id()? },
            IMPORT => {
                let node = r.node_id()?;
                let live = read_topics(&mut r)?;
                let deleting = read_topics(&mut r)?;
                CoreCommand::Import { node, topics: live, deleting }
            }
            kind => return Err(CodecError::UnknownKind { kind }),
        };
        r.finish()?;
        Ok(command)
    }

    /// The kind byte.
    fn kind(&self) -> u8 {
        match self {
            CoreCommand::SetClusterId { .. } => SET_CLUSTER_ID,
            CoreCommand::RegisterNode { .. } => REGISTER_NODE,
            CoreCommand::SetEtcdAddress { .. } => SET_ETCD_ADDRESS,
            CoreCommand::SetLiveness { .. } => SET_LIVENESS,
            CoreCommand::CreateTopic { .. } => CREATE_TOPIC,
            CoreCommand::CreatePartitions { .. } => CREATE_PARTITIONS,
            CoreCommand::AlterConfigs { .. } => ALTER_CONFIGS,
            CoreCommand::DeleteTopic { .. } => DELETE_TOPIC,
            CoreCommand::FinishDeletion { .. } => FINISH_DELETION,
            CoreCommand::AllocateProducerIds { .. } => ALLOCATE_PRODUCER_IDS,
            CoreCommand::Import { .. } => IMPORT,
        }
    }
}

fn put_assignments(
    w: &mut Writer,
    assignments: &[Vec<cairn_types::NodeId>],
) -> Result<(), CodecError> {
    if assignments.len() > TOPIC_PARTITIONS_MAX as usize {
        return Err(CodecError::TooLong { what: "assignments", len: assignments.len() });
    }
    w.count("assignments", assignments.len())?;
    for replicas in assignments {
        w.replicas(replicas)?;
    }
    Ok(())
}

fn assignments(r: &mut Reader<'_>) -> Result<Vec<Vec<cairn_types::NodeId>>, CodecError> {
    // Each list takes at least its one-byte length.
    let count = r.count("assignments", 1, TOPIC_PARTITIONS_MAX as usize)?;
    (0..count).map(|_| r.replicas()).collect()
}

fn put_changes(w: &mut Writer, changes: &[ConfigChange]) -> Result<(), CodecError> {
    let count = u16::try_from(changes.len())
        .map_err(|_| CodecError::TooLong { what: "config changes", len: changes.len() })?;
    w.u16(count);
    for change in changes {
        match change {
            ConfigChange::Set { key, value } => {
                w.u8(0);
                w.str("config key", key)?;
                w.str("config value", value)?;
            }
            ConfigChange::Delete { key } => {
                w.u8(1);
                w.str("config key", key)?;
            }
            ConfigChange::Append { key, value } | ConfigChange::Subtract { key, value } => {
                w.u8(if matches!(change, ConfigChange::Append { .. }) { 2 } else { 3 });
                w.str("config key", key)?;
                w.str("config value", value)?;
            }
        }
    }
    Ok(())
}

fn changes(r: &mut Reader<'_>) -> Result<Vec<ConfigChange>, CodecError> {
    let count = u64::from(r.u16()?);
    let count = r.check_count("config changes", count, 1 + STR_BYTES_MIN, usize::MAX)?;
    (0..count)
        .map(|_| match r.u8()? {
            0 => Ok(ConfigChange::Set { key: r.str("config key")?, value: r.str("config value")? }),
            1 => Ok(ConfigChange::Delete { key: r.str("config key")? }),
            2 => Ok(ConfigChange::Append {
                key: r.str("config key")?,
                value: r.str("config value")?,
            }),
            3 => Ok(ConfigChange::Subtract {
                key: r.str("config key")?,
                value: r.str("config value")?,
            }),
            tag => Err(CodecError::BadTag { what: "config change", tag }),
        })
        .collect()
}

fn read_topics(r: &mut Reader<'_>) -> Result<Vec<crate::TopicMeta>, CodecError> {
    let count = r.count("topics", TOPIC_BYTES_MIN, TOPICS_MAX)?;
    (0..count).map(|_| r.topic()).collect()
}
