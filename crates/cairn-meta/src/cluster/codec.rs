//! The pieces of the core's binary encodings (commands and snapshots): a writer, a reader of
//! untrusted bytes and [`CodecError`], and the encodings of the nouns both formats share
//! (strings, node ids, nodes, topics, replica lists).
//!
//! Big-endian. A string is `len: u16, bytes` (UTF-8); an optional value is `0` or `1` then the
//! value; a list is its count then its elements. The reader checks every count against the
//! bytes left (each element takes at least a known number of bytes) and against a named
//! maximum before it allocates, so what a decode allocates is bounded by its input.

use cairn_types::NodeId;

use crate::catalog::topic_from_parts;
use crate::{NodeMeta, TopicId, TopicMeta, TopicName};

/// Why bytes are not a valid command or snapshot. In an entry or snapshot whose checksum held,
/// it is a writer's bug or a newer format: report it, do not retry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A format version this build does not know.
    #[error("unknown {what} version {version}")]
    UnknownVersion {
        /// What was decoded (`command`, `snapshot`).
        what: &'static str,
        /// The version byte.
        version: u8,
    },
    /// A command kind this build does not know.
    #[error("unknown core command kind {kind}")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// The bytes end inside a field.
    #[error("truncated: need {needed} more bytes, have {available}")]
    Truncated {
        /// Bytes the next field needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// A count above its maximum, or more elements than the bytes left could hold.
    #[error("{count} {what} announced, at most {max} fit")]
    TooMany {
        /// What is counted.
        what: &'static str,
        /// The announced count.
        count: u64,
        /// The most the format or the bytes left allow.
        max: u64,
    },
    /// A flag or enum byte outside its values.
    #[error("invalid {what} tag {tag}")]
    BadTag {
        /// The field.
        what: &'static str,
        /// The byte.
        tag: u8,
    },
    /// A string that is not UTF-8.
    #[error("{what} is not UTF-8")]
    NotUtf8 {
        /// The field.
        what: &'static str,
    },
    /// Well-formed bytes whose value breaks a rule (a topic name, a config, a state invariant).
    #[error("invalid {0}")]
    Invalid(String),
    /// Bytes after the end.
    #[error("{bytes} bytes after the end")]
    TrailingBytes {
        /// How many.
        bytes: usize,
    },
    /// A value too long for its field; nothing was encoded.
    #[error("{what} of {len} is too long to encode")]
    TooLong {
        /// The field.
        what: &'static str,
        /// Its length (bytes or elements).
        len: usize,
    },
    /// More bytes than the format's maximum.
    #[error("{bytes} bytes exceed the maximum of {max}")]
    TooLarge {
        /// The input's length.
        bytes: usize,
        /// The maximum.
        max: usize,
    },
}

/// Bytes of a node id.
pub(crate) const NODE_ID_BYTES: usize = 8;
/// Fewest bytes of an encoded string (its length).
pub(crate) const STR_BYTES_MIN: usize = 2;
/// Fewest bytes of an encoded topic: id, name, partitions, factor, config count.
pub(crate) const TOPIC_BYTES_MIN: usize = 16 + STR_BYTES_MIN + 4 + 2 + 2;

/// Appends encodings to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    /// The bytes so far.
    pub(crate) out: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, value: u8) {
        self.out.push(value);
    }

    pub(crate) fn u16(&mut self, value: u16) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn i64(&mut self, value: i64) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn bytes16(&mut self, value: &[u8; 16]) {
        self.out.extend_from_slice(value);
    }

    /// A list's count as a `u32`.
    pub(crate) fn count(&mut self, what: &'static str, count: usize) -> Result<(), CodecError> {
        let count = u32::try_from(count).map_err(|_| too_long(what, count))?;
        self.u32(count);
        Ok(())
    }

    /// A string of at most `u16::MAX` bytes.
    pub(crate) fn str(&mut self, what: &'static str, text: &str) -> Result<(), CodecError> {
        let len = u16::try_from(text.len()).map_err(|_| too_long(what, text.len()))?;
        self.u16(len);
        self.out.extend_from_slice(text.as_bytes());
        Ok(())
    }

    pub(crate) fn opt_str(
        &mut self,
        what: &'static str,
        text: Option<&str>,
    ) -> Result<(), CodecError> {
        match text {
            None => self.u8(0),
            Some(text) => {
                self.u8(1);
                self.str(what, text)?;
            }
        }
        Ok(())
    }

    pub(crate) fn node(&mut self, node: &NodeMeta) -> Result<(), CodecError> {
        self.u64(node.id.0);
        self.str("host", &node.host)?;
        self.u16(node.port);
        self.opt_str("rack", node.rack.as_deref())
    }

    /// A replica list: its length as a `u8`, then the ids.
    pub(crate) fn replicas(&mut self, replicas: &[NodeId]) -> Result<(), CodecError> {
        self.u8(u8::try_from(replicas.len()).map_err(|_| too_long("replicas", replicas.len()))?);
        for node in replicas {
            self.u64(node.0);
        }
        Ok(())
    }

    /// Key-value pairs (configs): a `u16` count, then each key and value.
    pub(crate) fn pairs<'p>(
        &mut self,
        pairs: impl ExactSizeIterator<Item = (&'p String, &'p String)>,
    ) -> Result<(), CodecError> {
        self.u16(u16::try_from(pairs.len()).map_err(|_| too_long("configs", pairs.len()))?);
        for (key, value) in pairs {
            self.str("config key", key)?;
            self.str("config value", value)?;
        }
        Ok(())
    }

    /// A topic without its assignments.
    pub(crate) fn topic(&mut self, topic: &TopicMeta) -> Result<(), CodecError> {
        self.bytes16(topic.id.as_bytes());
        self.str("topic name", topic.name.as_str())?;
        self.u32(topic.partitions);
        self.u16(topic.replication_factor);
        self.pairs(topic.configs.overrides().iter())
    }
}

fn too_long(what: &'static str, len: usize) -> CodecError {
    CodecError::TooLong { what, len }
}

/// A cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    /// The bytes not read yet.
    pub(crate) rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    fn take(&mut self, needed: usize) -> Result<&'a [u8], CodecError> {
        if self.rest.len() < needed {
            return Err(CodecError::Truncated { needed, available: self.rest.len() });
        }
        let (taken, rest) = self.rest.split_at(needed);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, CodecError> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        self.array().map(u64::from_be_bytes)
    }

    pub(crate) fn i64(&mut self) -> Result<i64, CodecError> {
        self.array().map(i64::from_be_bytes)
    }

    pub(crate) fn bytes16(&mut self) -> Result<[u8; 16], CodecError> {
        self.array()
    }

    /// A flag byte: 0 or 1.
    pub(crate) fn flag(&mut self, what: &'static str) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(CodecError::BadTag { what, tag }),
        }
    }

    /// Checks `count` elements of at least `element_bytes` each against `max` and the bytes
    /// left, before the caller allocates for them.
    pub(crate) fn check_count(
        &self,
        what: &'static str,
        count: u64,
        element_bytes: usize,
        max: usize,
    ) -> Result<usize, CodecError> {
        let fit = self.rest.len() / element_bytes.max(1);
        let max = max.min(fit);
        match usize::try_from(count) {
            Ok(count) if count <= max => Ok(count),
            _ => Err(CodecError::TooMany { what, count, max: max as u64 }),
        }
    }

    /// A `u32` list count, checked as [`Reader::check_count`] does.
    pub(crate) fn count(
        &mut self,
        what: &'static str,
        element_bytes: usize,
        max: usize,
    ) -> Result<usize, CodecError> {
        let count = self.u32()?;
        self.check_count(what, u64::from(count), element_bytes, max)
    }

    pub(crate) fn str(&mut self, what: &'static str) -> Result<String, CodecError> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::NotUtf8 { what })
    }

    pub(crate) fn opt_str(&mut self, what: &'static str) -> Result<Option<String>, CodecError> {
        if self.flag(what)? { self.str(what).map(Some) } else { Ok(None) }
    }

    pub(crate) fn node_id(&mut self) -> Result<NodeId, CodecError> {
        self.u64().map(NodeId)
    }

    pub(crate) fn node(&mut self) -> Result<NodeMeta, CodecError> {
        let id = self.node_id()?;
        let host = self.str("host")?;
        let port = self.u16()?;
        let rack = self.opt_str("rack")?;
        Ok(NodeMeta { id, host, port, rack })
    }

    pub(crate) fn topic_name(&mut self) -> Result<TopicName, CodecError> {
        let name = self.str("topic name")?;
        TopicName::new(&name).map_err(|error| CodecError::Invalid(error.to_string()))
    }

    pub(crate) fn topic_id(&mut self) -> Result<TopicId, CodecError> {
        self.bytes16().map(TopicId::from_bytes)
    }

    pub(crate) fn replicas(&mut self) -> Result<Vec<NodeId>, CodecError> {
        let count = usize::from(self.u8()?);
        let count = self.check_count("replicas", count as u64, NODE_ID_BYTES, usize::MAX)?;
        (0..count).map(|_| self.node_id()).collect()
    }

    pub(crate) fn pairs(&mut self) -> Result<Vec<(String, String)>, CodecError> {
        let count = u64::from(self.u16()?);
        let count = self.check_count("configs", count, 2 * STR_BYTES_MIN, usize::MAX)?;
        (0..count).map(|_| Ok((self.str("config key")?, self.str("config value")?))).collect()
    }

    /// A topic without its assignments, validated as a stored topic is. Its configs must be
    /// canonical (sorted keys, canonical values), as [`Writer::topic`] writes them, so that
    /// equal topics have one encoding.
    pub(crate) fn topic(&mut self) -> Result<TopicMeta, CodecError> {
        let id = self.topic_id()?;
        let name = self.topic_name()?;
        let partitions = self.u32()?;
        let replication_factor = self.u16()?;
        let pairs = self.pairs()?;
        let topic = topic_from_parts(id, name, partitions, replication_factor, &pairs)
            .map_err(CodecError::Invalid)?;
        if !topic.configs.overrides().iter().eq(pairs.iter().map(|(key, value)| (key, value))) {
            return Err(CodecError::Invalid(format!(
                "topic {}: configs not canonical",
                topic.name
            )));
        }
        Ok(topic)
    }

    /// Checks that nothing is left.
    pub(crate) fn finish(&self) -> Result<(), CodecError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes { bytes: self.rest.len() })
        }
    }
}
