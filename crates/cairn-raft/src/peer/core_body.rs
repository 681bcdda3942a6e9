//! The bodies of the consistent core's own peer frames (RFC 0003 §5): `CoreWrite` (a
//! [`CoreRequest`] a node that does not lead hands to the core leader), its answer
//! ([`CoreAnswer`]: what the command answered and where it applied, or why it was refused) and
//! `CoreSnapshot` (the core's snapshot, its encoded state, for a replica that needs it).
//!
//! Field encodings (big-endian; a `str` is a u16 length and UTF-8, written whole):
//!
//! | body | fields |
//! |---|---|
//! | CoreWrite | tag u8: 1 CreateTopic (name str, partitions u32, replication factor u16, configs, assignments), 2 DeleteTopic (name str), 3 CreatePartitions (name str, count u32, assignments), 4 AlterConfigs (name str, changes), 5 FinishDeletion (topic id 16 bytes), 6 Command (length u32, cairn-meta's command encoding), 7 ReadIndex |
//! | CoreWriteAnswer | tag u8: 0 done (reply, applied: flag, term u64, index u64), 1 refused (code u16, number i64, count u8 ≤ 3 × str) |
//! | reply | tag u8: 0 Done, 1 Topic (id 16 bytes, name str, partitions u32, replication factor u16, configs), 2 ProducerIds (first i64, count i64) |
//! | configs | count u16 × (key str, value str) |
//! | changes | count u16 × (0 key str value str, or 1 key str) |
//! | assignments | flag u8 (0: none, placed by the leader), then count u32 (≤ `TOPIC_PARTITIONS_MAX`) × (replicas u16 × node id u64) |
//! | CoreSnapshot | as a partition's snapshot up to its membership, then length u32 and the encoded state |
//!
//! Every count is bounded by the bytes left; decoding checks form (names, canonical configs),
//! not meaning, which the leader checks against its state.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use cairn_meta::{
    ConfigChange, ConfigError, CoreCommand, CoreReply, LogPosition, MetaError, TopicConfigs,
    TopicId, TopicMeta, TopicName, TopicSpec,
};
use cairn_types::limits::{CORE_SNAPSHOT_BYTES_MAX, TOPIC_PARTITIONS_MAX};
use cairn_types::{NodeId, ProducerId};

use crate::core_group::{CoreRequest, Forwarded};
use crate::peer::body::{SnapshotMeta, Vote};
use crate::peer::frame::{FrameError, Reader};

/// The core leader's answer to a forwarded write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreAnswer {
    /// Carried out: the answer and where the entry applied.
    Done(Forwarded),
    /// Refused or failed: the error, as it travels.
    Refused(CoreRefusal),
}

/// A [`MetaError`] as it travels: its variant's code, and its fields (a number and up to three
/// texts). [`CoreRefusal::into_error`] gives the same variant back, so the Kafka error code a
/// client sees does not depend on which node it asked; a reason that is a fixed text in the
/// variant becomes a general one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreRefusal {
    /// Which variant (the codes are [`refusal`]'s).
    pub code: u16,
    /// The variant's number (a limit, a count, a factor), else 0.
    pub number: i64,
    /// The variant's texts, in order.
    pub texts: Vec<String>,
}

/// A core snapshot for a replica: the leader's vote, what openraft says of it and the encoded
/// state (at most `CORE_SNAPSHOT_BYTES_MAX`, and one frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreSnapshotRequest {
    /// The leader's vote, checked before anything is installed.
    pub vote: Vote,
    /// The snapshot's last log id and membership.
    pub meta: SnapshotMeta,
    /// The encoded `CoreState`.
    pub state: Bytes,
}

/// Texts a refusal carries at most.
const REFUSAL_TEXTS_MAX: usize = 3;

/// The codes of [`CoreRefusal`], one per [`MetaError`] variant (and per [`ConfigError`]
/// variant).
mod refusal {
    pub(super) const TOPIC_EXISTS: u16 = 1;
    pub(super) const UNKNOWN_TOPIC: u16 = 2;
    pub(super) const INVALID_TOPIC: u16 = 3;
    pub(super) const TOO_MANY_TOPICS: u16 = 4;
    pub(super) const INVALID_PARTITIONS: u16 = 5;
    pub(super) const INVALID_REPLICATION_FACTOR: u16 = 6;
    pub(super) const INVALID_REPLICA_ASSIGNMENT: u16 = 7;
    pub(super) const BROKER_NOT_AVAILABLE: u16 = 8;
    pub(super) const REFUSED: u16 = 9;
    pub(super) const CONFIG_UNKNOWN_KEY: u16 = 10;
    pub(super) const CONFIG_INVALID_VALUE: u16 = 11;
    pub(super) const CONFIG_UNSUPPORTED: u16 = 12;
    pub(super) const CONFIG_DUPLICATE_KEY: u16 = 13;
    pub(super) const NOT_CONTROLLER: u16 = 14;
    pub(super) const TIMED_OUT: u16 = 15;
    pub(super) const STORAGE: u16 = 16;
    pub(super) const MAX: u16 = 16;
}

/// What the leader says for a fixed reason text it cannot send as the variant holds it.
const LEADER_REASON: &str = "refused by the core leader";

impl CoreRefusal {
    /// `error` as it travels.
    #[must_use]
    pub fn of(error: &MetaError) -> CoreRefusal {
        use refusal::*;
        let text = |code, text: &str| CoreRefusal { code, number: 0, texts: vec![text.to_owned()] };
        match error {
            MetaError::TopicExists(name) => text(TOPIC_EXISTS, name),
            MetaError::UnknownTopic(name) => text(UNKNOWN_TOPIC, name),
            MetaError::InvalidTopic(why) => text(INVALID_TOPIC, why),
            MetaError::TooManyTopics { limit } => CoreRefusal {
                code: TOO_MANY_TOPICS,
                number: i64::try_from(*limit).unwrap_or(i64::MAX),
                texts: Vec::new(),
            },
            MetaError::InvalidPartitions { count, reason } => CoreRefusal {
                code: INVALID_PARTITIONS,
                number: *count,
                texts: vec![(*reason).to_owned()],
            },
            MetaError::InvalidReplicationFactor { factor, reason } => CoreRefusal {
                code: INVALID_REPLICATION_FACTOR,
                number: *factor,
                texts: vec![reason.clone()],
            },
            MetaError::InvalidReplicaAssignment(why) => text(INVALID_REPLICA_ASSIGNMENT, why),
            MetaError::BrokerNotAvailable(why) => text(BROKER_NOT_AVAILABLE, why),
            MetaError::Refused(why) => text(REFUSED, why),
            MetaError::Config(config) => config_refusal(config),
            MetaError::NotController(why) => text(NOT_CONTROLLER, why),
            MetaError::TimedOut(why) => text(TIMED_OUT, why),
            MetaError::Storage(why) => text(STORAGE, why),
        }
    }

    /// The error this refusal stands for (type docs).
    #[must_use]
    pub fn into_error(self) -> MetaError {
        use refusal::*;
        let mut texts = self.texts.into_iter();
        let mut next = move || texts.next().unwrap_or_default();
        let number = self.number;
        match self.code {
            TOPIC_EXISTS => MetaError::TopicExists(next()),
            UNKNOWN_TOPIC => MetaError::UnknownTopic(next()),
            INVALID_TOPIC => MetaError::InvalidTopic(next()),
            TOO_MANY_TOPICS => {
                MetaError::TooManyTopics { limit: usize::try_from(number).unwrap_or(usize::MAX) }
            }
            INVALID_PARTITIONS => {
                MetaError::InvalidPartitions { count: number, reason: LEADER_REASON }
            }
            INVALID_REPLICATION_FACTOR => {
                MetaError::InvalidReplicationFactor { factor: number, reason: next() }
            }
            INVALID_REPLICA_ASSIGNMENT => MetaError::InvalidReplicaAssignment(next()),
            BROKER_NOT_AVAILABLE => MetaError::BrokerNotAvailable(next()),
            CONFIG_UNKNOWN_KEY => MetaError::Config(ConfigError::UnknownKey { key: next() }),
            CONFIG_INVALID_VALUE => MetaError::Config(ConfigError::InvalidValue {
                key: next(),
                value: next(),
                reason: next(),
            }),
            CONFIG_UNSUPPORTED => MetaError::Config(ConfigError::Unsupported {
                key: next(),
                value: next(),
                reason: LEADER_REASON,
            }),
            CONFIG_DUPLICATE_KEY => MetaError::Config(ConfigError::DuplicateKey { key: next() }),
            NOT_CONTROLLER => MetaError::NotController(next()),
            TIMED_OUT => MetaError::TimedOut(next()),
            STORAGE => MetaError::Storage(next()),
            // REFUSED, and (never decoded) any other code.
            _ => MetaError::Refused(next()),
        }
    }
}

fn config_refusal(error: &ConfigError) -> CoreRefusal {
    use refusal::*;
    let (code, texts) = match error {
        ConfigError::UnknownKey { key } => (CONFIG_UNKNOWN_KEY, vec![key.clone()]),
        ConfigError::InvalidValue { key, value, reason } => {
            (CONFIG_INVALID_VALUE, vec![key.clone(), value.clone(), reason.clone()])
        }
        ConfigError::Unsupported { key, value, reason: _ } => {
            (CONFIG_UNSUPPORTED, vec![key.clone(), value.clone()])
        }
        ConfigError::DuplicateKey { key } => (CONFIG_DUPLICATE_KEY, vec![key.clone()]),
    };
    CoreRefusal { code, number: 0, texts }
}

// ---------------------------------------------------------------------------------------------
// CoreWrite.
// ---------------------------------------------------------------------------------------------

const CREATE_TOPIC: u8 = 1;
const DELETE_TOPIC: u8 = 2;
const CREATE_PARTITIONS: u8 = 3;
const ALTER_CONFIGS: u8 = 4;
const FINISH_DELETION: u8 = 5;
const COMMAND: u8 = 6;
const READ_INDEX: u8 = 7;

/// Writes a forwarded request.
pub(crate) fn put_request(out: &mut BytesMut, request: &CoreRequest) -> Result<(), FrameError> {
    match request {
        CoreRequest::CreateTopic(spec) => {
            out.put_u8(CREATE_TOPIC);
            put_str(out, spec.name.as_str())?;
            out.put_u32(spec.partitions);
            out.put_u16(spec.replication_factor);
            put_pairs(out, spec.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
            put_assignments(out, spec.assignments.as_deref())?;
        }
        CoreRequest::DeleteTopic(name) => {
            out.put_u8(DELETE_TOPIC);
            put_str(out, name)?;
        }
        CoreRequest::CreatePartitions { name, count, assignments } => {
            out.put_u8(CREATE_PARTITIONS);
            put_str(out, name)?;
            out.put_u32(*count);
            put_assignments(out, assignments.as_deref())?;
        }
        CoreRequest::AlterConfigs { name, changes } => {
            out.put_u8(ALTER_CONFIGS);
            put_str(out, name)?;
            put_changes(out, changes)?;
        }
        CoreRequest::FinishDeletion(id) => {
            out.put_u8(FINISH_DELETION);
            out.put_slice(id.as_bytes());
        }
        CoreRequest::Command(command) => {
            out.put_u8(COMMAND);
            let bytes = command.encode().map_err(|_| invalid("core command"))?;
            out.put_u32(u32::try_from(bytes.len()).map_err(|_| invalid("core command"))?);
            out.put_slice(&bytes);
        }
        CoreRequest::ReadIndex => out.put_u8(READ_INDEX),
    }
    Ok(())
}

/// Reads a forwarded request.
pub(crate) fn request(reader: &mut Reader) -> Result<CoreRequest, FrameError> {
    Ok(match reader.u8("core request")? {
        CREATE_TOPIC => CoreRequest::CreateTopic(TopicSpec {
            name: topic_name(reader)?,
            partitions: reader.u32("partitions")?,
            replication_factor: reader.u16("replication factor")?,
            configs: pairs(reader)?,
            assignments: assignments(reader)?,
        }),
        DELETE_TOPIC => CoreRequest::DeleteTopic(str(reader, "topic name")?),
        CREATE_PARTITIONS => CoreRequest::CreatePartitions {
            name: str(reader, "topic name")?,
            count: reader.u32("partition count")?,
            assignments: assignments(reader)?,
        },
        ALTER_CONFIGS => CoreRequest::AlterConfigs {
            name: str(reader, "topic name")?,
            changes: changes(reader)?,
        },
        FINISH_DELETION => {
            CoreRequest::FinishDeletion(TopicId::from_bytes(reader.fixed("topic id")?))
        }
        COMMAND => {
            let length = reader.u32("core command length")? as usize;
            let bytes = reader.bytes("core command", length)?;
            CoreRequest::Command(CoreCommand::decode(&bytes).map_err(|_| invalid("core command"))?)
        }
        READ_INDEX => CoreRequest::ReadIndex,
        _ => return Err(invalid("core request")),
    })
}

// ---------------------------------------------------------------------------------------------
// CoreWriteAnswer.
// ---------------------------------------------------------------------------------------------

const REPLY_DONE: u8 = 0;
const REPLY_TOPIC: u8 = 1;
const REPLY_PRODUCER_IDS: u8 = 2;

/// Writes the answer to a forwarded request.
pub(crate) fn put_answer(out: &mut BytesMut, answer: &CoreAnswer) -> Result<(), FrameError> {
    match answer {
        CoreAnswer::Done(forwarded) => {
            out.put_u8(0);
            put_reply(out, &forwarded.reply)?;
            match forwarded.applied {
                None => out.put_u8(0),
                Some(at) => {
                    out.put_u8(1);
                    out.put_u64(at.term);
                    out.put_u64(at.index);
                }
            }
        }
        CoreAnswer::Refused(refusal) => {
            out.put_u8(1);
            out.put_u16(refusal.code);
            out.put_i64(refusal.number);
            let count = refusal.texts.len().min(REFUSAL_TEXTS_MAX);
            // At most REFUSAL_TEXTS_MAX.
            out.put_u8(count as u8);
            for text in &refusal.texts[..count] {
                put_str(out, text)?;
            }
        }
    }
    Ok(())
}

/// Reads the answer to a forwarded request.
pub(crate) fn answer(reader: &mut Reader) -> Result<CoreAnswer, FrameError> {
    if reader.flag("core answer")? {
        let code = reader.u16("refusal code")?;
        if code == 0 || code > refusal::MAX {
            return Err(invalid("refusal code"));
        }
        let number = reader.u64("refusal number")?.cast_signed();
        let count = usize::from(reader.u8("refusal texts")?);
        if count > REFUSAL_TEXTS_MAX {
            return Err(invalid("refusal texts"));
        }
        let texts = (0..count).map(|_| str(reader, "refusal text")).collect::<Result<_, _>>()?;
        return Ok(CoreAnswer::Refused(CoreRefusal { code, number, texts }));
    }
    let reply = reply(reader)?;
    let applied = if reader.flag("applied flag")? {
        Some(LogPosition { term: reader.u64("applied term")?, index: reader.u64("applied index")? })
    } else {
        None
    };
    Ok(CoreAnswer::Done(Forwarded { reply, applied }))
}

fn put_reply(out: &mut BytesMut, reply: &CoreReply) -> Result<(), FrameError> {
    match reply {
        CoreReply::Done => out.put_u8(REPLY_DONE),
        CoreReply::Topic(topic) => {
            out.put_u8(REPLY_TOPIC);
            out.put_slice(topic.id.as_bytes());
            put_str(out, topic.name.as_str())?;
            out.put_u32(topic.partitions);
            out.put_u16(topic.replication_factor);
            let overrides = topic.configs.overrides();
            put_pairs(out, overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        }
        CoreReply::ProducerIds { first, count } => {
            out.put_u8(REPLY_PRODUCER_IDS);
            out.put_i64(first.0);
            out.put_i64(*count);
        }
    }
    Ok(())
}

fn reply(reader: &mut Reader) -> Result<CoreReply, FrameError> {
    Ok(match reader.u8("core reply")? {
        REPLY_DONE => CoreReply::Done,
        REPLY_TOPIC => CoreReply::Topic(Arc::new(topic(reader)?)),
        REPLY_PRODUCER_IDS => CoreReply::ProducerIds {
            first: ProducerId(reader.u64("first producer id")?.cast_signed()),
            count: reader.u64("producer id count")?.cast_signed(),
        },
        _ => return Err(invalid("core reply")),
    })
}

/// A topic, its configs canonical (sorted keys, canonical values) as the core keeps them, so
/// that a topic has one encoding.
fn topic(reader: &mut Reader) -> Result<TopicMeta, FrameError> {
    let id = TopicId::from_bytes(reader.fixed("topic id")?);
    let name = topic_name(reader)?;
    let partitions = reader.u32("partitions")?;
    let replication_factor = reader.u16("replication factor")?;
    let pairs = pairs(reader)?;
    let configs = TopicConfigs::from_overrides(&pairs).map_err(|_| invalid("topic configs"))?;
    let canonical = configs.overrides().iter().eq(pairs.iter().map(|(k, v)| (k, v)));
    if !canonical {
        return Err(invalid("topic configs"));
    }
    Ok(TopicMeta { id, name, partitions, replication_factor, configs })
}

// ---------------------------------------------------------------------------------------------
// CoreSnapshot.
// ---------------------------------------------------------------------------------------------

/// Writes a core snapshot: the vote, the meta (as a partition snapshot's), the state.
pub(crate) fn put_snapshot(
    out: &mut BytesMut,
    request: &CoreSnapshotRequest,
) -> Result<(), FrameError> {
    crate::peer::body::put_vote(out, &request.vote);
    crate::peer::body::put_snapshot_meta(out, &request.meta);
    let length = request.state.len();
    if length > CORE_SNAPSHOT_BYTES_MAX {
        return Err(FrameError::TooLarge {
            length: length as u64,
            max: CORE_SNAPSHOT_BYTES_MAX as u32,
        });
    }
    // Below CORE_SNAPSHOT_BYTES_MAX, which is below u32::MAX.
    out.put_u32(length as u32);
    out.put_slice(&request.state);
    Ok(())
}

/// Reads a core snapshot; its state stays a slice of the frame.
pub(crate) fn snapshot(reader: &mut Reader) -> Result<CoreSnapshotRequest, FrameError> {
    let vote = crate::peer::body::vote(reader)?;
    let meta = crate::peer::body::snapshot_meta(reader)?;
    let length = reader.u32("core state length")? as usize;
    let state = reader.bytes("core state", length)?;
    Ok(CoreSnapshotRequest { vote, meta, state })
}

// ---------------------------------------------------------------------------------------------
// Fields.
// ---------------------------------------------------------------------------------------------

fn invalid(what: &'static str) -> FrameError {
    FrameError::Invalid { what }
}

/// Writes `text` whole, with a u16 length.
fn put_str(out: &mut BytesMut, text: &str) -> Result<(), FrameError> {
    let length = u16::try_from(text.len()).map_err(|_| invalid("text longer than 65535 bytes"))?;
    out.put_u16(length);
    out.put_slice(text.as_bytes());
    Ok(())
}

fn str(reader: &mut Reader, what: &'static str) -> Result<String, FrameError> {
    let length = usize::from(reader.u16(what)?);
    let bytes = reader.bytes(what, length)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| invalid(what))
}

fn topic_name(reader: &mut Reader) -> Result<TopicName, FrameError> {
    TopicName::new(&str(reader, "topic name")?).map_err(|_| invalid("topic name"))
}

fn put_pairs<'a>(
    out: &mut BytesMut,
    pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> Result<(), FrameError> {
    out.put_u16(u16::try_from(pairs.len()).map_err(|_| invalid("configs"))?);
    for (key, value) in pairs {
        put_str(out, key)?;
        put_str(out, value)?;
    }
    Ok(())
}

/// Bytes of the smallest config pair or change: two empty strings.
const PAIR_BYTES_MIN: usize = 4;

fn pairs(reader: &mut Reader) -> Result<Vec<(String, String)>, FrameError> {
    let count = count16(reader, "configs", PAIR_BYTES_MIN)?;
    (0..count).map(|_| Ok((str(reader, "config key")?, str(reader, "config value")?))).collect()
}

fn put_changes(out: &mut BytesMut, changes: &[ConfigChange]) -> Result<(), FrameError> {
    out.put_u16(u16::try_from(changes.len()).map_err(|_| invalid("config changes"))?);
    for change in changes {
        match change {
            ConfigChange::Set { key, value } => {
                out.put_u8(0);
                put_str(out, key)?;
                put_str(out, value)?;
            }
            ConfigChange::Delete { key } => {
                out.put_u8(1);
                put_str(out, key)?;
            }
            ConfigChange::Append { key, value } | ConfigChange::Subtract { key, value } => {
                out.put_u8(if matches!(change, ConfigChange::Append { .. }) { 2 } else { 3 });
                put_str(out, key)?;
                put_str(out, value)?;
            }
        }
    }
    Ok(())
}

fn changes(reader: &mut Reader) -> Result<Vec<ConfigChange>, FrameError> {
    let count = count16(reader, "config changes", 3)?;
    (0..count)
        .map(|_| match reader.u8("config change")? {
            0 => Ok(ConfigChange::Set {
                key: str(reader, "config key")?,
                value: str(reader, "config value")?,
            }),
            1 => Ok(ConfigChange::Delete { key: str(reader, "config key")? }),
            2 => Ok(ConfigChange::Append {
                key: str(reader, "config key")?,
                value: str(reader, "config value")?,
            }),
            3 => Ok(ConfigChange::Subtract {
                key: str(reader, "config key")?,
                value: str(reader, "config value")?,
            }),
            _ => Err(invalid("config change")),
        })
        .collect()
}

/// Writes a client's replica lists, if it gave any.
fn put_assignments(out: &mut BytesMut, lists: Option<&[Vec<NodeId>]>) -> Result<(), FrameError> {
    let Some(lists) = lists else {
        out.put_u8(0);
        return Ok(());
    };
    if lists.len() > TOPIC_PARTITIONS_MAX as usize {
        return Err(invalid("assignments"));
    }
    out.put_u8(1);
    // At most TOPIC_PARTITIONS_MAX.
    out.put_u32(lists.len() as u32);
    for replicas in lists {
        out.put_u16(u16::try_from(replicas.len()).map_err(|_| invalid("replica list"))?);
        for node in replicas {
            out.put_u64(node.0);
        }
    }
    Ok(())
}

/// Reads a client's replica lists (see the module docs).
fn assignments(reader: &mut Reader) -> Result<Option<Vec<Vec<NodeId>>>, FrameError> {
    if !reader.flag("assignments flag")? {
        return Ok(None);
    }
    // Each list takes at least its u16 count.
    let count = reader.count("assignments", 2, u64::from(TOPIC_PARTITIONS_MAX))?;
    let mut lists = Vec::with_capacity(count);
    for _ in 0..count {
        let replicas = count16(reader, "replica list", 8)?;
        let list = (0..replicas)
            .map(|_| reader.u64("replica").map(NodeId))
            .collect::<Result<Vec<_>, _>>()?;
        lists.push(list);
    }
    Ok(Some(lists))
}

/// A u16 count of elements of at least `element_bytes_min` bytes, bounded by the bytes left.
fn count16(
    reader: &mut Reader,
    what: &'static str,
    element_bytes_min: usize,
) -> Result<usize, FrameError> {
    let count = usize::from(reader.u16(what)?);
    let fits = reader.remaining() / element_bytes_min;
    if count > fits {
        return Err(FrameError::Count { what, count: count as u64, max: fits as u64 });
    }
    Ok(count)
}
