//! The nouns of the metadata: [`TopicName`] (validated by Kafka's rules), [`TopicId`],
//! [`TopicMeta`], [`NodeMeta`] and [`PartitionLeader`].
//!
//! These types carry no serde: the on-disk format of a store is its own business (see
//! `local.rs`), so changing it never changes this API, and everything read back from disk goes
//! through the same validating constructors as a client's request.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use cairn_types::limits::TOPIC_NAME_BYTES_MAX;
use cairn_types::{LeaderEpoch, NodeId};

use crate::configs::TopicConfigs;

/// A topic name that follows Kafka's rules: 1 to [`TOPIC_NAME_BYTES_MAX`] characters of
/// `[a-zA-Z0-9._-]`, and neither `.` nor `..`. Holding one is the proof it was checked.
///
/// Ordered and hashed as its text, and borrowable as `str`, so maps keyed by it answer `&str`
/// lookups.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName(String);

/// Why a topic name is refused. Kafka answers all of these with `INVALID_TOPIC_EXCEPTION`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    /// The empty string.
    #[error("topic name is empty")]
    Empty,
    /// Longer than [`TOPIC_NAME_BYTES_MAX`].
    #[error("topic name of {len} characters is longer than {TOPIC_NAME_BYTES_MAX}")]
    TooLong {
        /// Length of the refused name, in bytes.
        len: usize,
    },
    /// `.` or `..`, which would name a directory, not a topic.
    #[error("topic name {0:?} is reserved")]
    Reserved(&'static str),
    /// A character outside `[a-zA-Z0-9._-]`.
    #[error(
        "topic name {name:?} contains {character:?}; allowed are ascii alphanumerics, '.', '_', '-'"
    )]
    InvalidCharacter {
        /// The refused name (short: it passed the length check).
        name: String,
        /// The first character that is not allowed.
        character: char,
    },
}

impl TopicName {
    /// Checks `name` against Kafka's rules.
    ///
    /// # Errors
    /// [`TopicNameError`] naming the first rule `name` breaks.
    pub fn new(name: &str) -> Result<TopicName, TopicNameError> {
        if name.is_empty() {
            return Err(TopicNameError::Empty);
        }
        if name.len() > TOPIC_NAME_BYTES_MAX {
            return Err(TopicNameError::TooLong { len: name.len() });
        }
        match name {
            "." => return Err(TopicNameError::Reserved(".")),
            ".." => return Err(TopicNameError::Reserved("..")),
            _ => {}
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if let Some(character) = name.chars().find(|&c| !allowed(c)) {
            return Err(TopicNameError::InvalidCharacter { name: name.to_owned(), character });
        }
        Ok(TopicName(name.to_owned()))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name with every `.` replaced by `_`. Kafka derives metric names from topic names that
    /// way, so two topics whose keys are equal (`a.b` and `a_b`) would share metrics; it refuses
    /// to create the second one, and so does cairn.
    #[must_use]
    pub fn collision_key(&self) -> String {
        self.0.replace('.', "_")
    }

    /// Whether `self` and `other` are different names with the same [`TopicName::collision_key`].
    #[must_use]
    pub fn collides_with(&self, other: &TopicName) -> bool {
        self != other && self.collision_key() == other.collision_key()
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TopicName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for TopicName {
    type Err = TopicNameError;

    fn from_str(name: &str) -> Result<TopicName, TopicNameError> {
        TopicName::new(name)
    }
}

impl From<TopicName> for String {
    fn from(name: TopicName) -> String {
        name.0
    }
}

/// A topic's permanent identity (Kafka's topic id, KIP-516): a random v4 UUID assigned at
/// creation. A topic deleted and created again under the same name gets a new id, which is how
/// clients and logs tell the two apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicId(uuid::Uuid);

impl TopicId {
    /// A new random (v4) id. Never the nil UUID, which Kafka uses for "no id".
    #[must_use]
    pub fn random() -> TopicId {
        TopicId(uuid::Uuid::new_v4())
    }

    /// The id from its 16 bytes, as Kafka puts it on the wire.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 16]) -> TopicId {
        TopicId(uuid::Uuid::from_bytes(bytes))
    }

    /// The 16 bytes of the id, as Kafka puts it on the wire.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The id as 32 lowercase hex digits, without hyphens: the form partition directories are
    /// named by (`<id-hex>-<partition>`), whatever the length of the topic's name.
    #[must_use]
    pub fn to_hex(&self) -> String {
        self.0.simple().to_string()
    }

    /// Parses exactly the form [`TopicId::to_hex`] writes (32 lowercase hex digits).
    #[must_use]
    pub fn from_hex(text: &str) -> Option<TopicId> {
        let lowercase_hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
        if text.len() != 32 || !text.bytes().all(lowercase_hex) {
            return None;
        }
        uuid::Uuid::try_parse(text).ok().map(TopicId)
    }

    /// The id as a [`uuid::Uuid`], the type `kafka-protocol` uses for topic ids.
    #[must_use]
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

/// The hyphenated UUID form (`8-4-4-4-12` hex digits). Kafka's tools print ids in URL-safe
/// base64 instead; both encode the same 16 bytes.
impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for TopicId {
    type Err = uuid::Error;

    /// Parses any form [`uuid::Uuid`] accepts, including the one [`fmt::Display`] writes.
    fn from_str(text: &str) -> Result<TopicId, uuid::Error> {
        uuid::Uuid::parse_str(text).map(TopicId)
    }
}

/// One topic, as the metadata store holds it. Immutable: a change makes a new `TopicMeta`, and
/// readers keep the `Arc` of the one they were given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMeta {
    /// Permanent identity, assigned at creation.
    pub id: TopicId,
    /// The topic's name.
    pub name: TopicName,
    /// Number of partitions, `1..=TOPIC_PARTITIONS_MAX`; partitions are numbered
    /// `0..partitions` and are only ever added.
    pub partitions: u32,
    /// Replicas per partition, at least 1.
    pub replication_factor: u16,
    /// Config overrides and the defaults they resolve against.
    pub configs: TopicConfigs,
}

/// One node of the cluster, as clients see it in Metadata responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeMeta {
    /// The node's id (Kafka broker id).
    pub id: NodeId,
    /// Host name or address clients connect to (the advertised listener).
    pub host: String,
    /// Port clients connect to.
    pub port: u16,
    /// Rack, for rack-aware clients and replica placement; `None` if not configured.
    pub rack: Option<String>,
}

/// Who leads a partition, as clients see it in Metadata responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLeader {
    /// The node that accepts produce and fetch for the partition.
    pub leader: NodeId,
    /// Every replica, leader included, in preference order.
    pub replicas: Vec<NodeId>,
    /// Incremented on every leader change; clients fence stale leaders with it.
    pub leader_epoch: LeaderEpoch,
    /// The partition's Raft group id on the peer transport, assigned by the consistent core
    /// (0 from a single node's local metadata, which has no peers to address it).
    pub group: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that `name` is accepted (`Ok`) or refused with exactly the given error.
    fn check(name: &str, expected: Result<(), TopicNameError>) {
        let actual = TopicName::new(name);
        match (&actual, &expected) {
            (Ok(topic), Ok(())) => assert_eq!(topic.as_str(), name),
            (Err(error), Err(expected_error)) => assert_eq!(error, expected_error, "{name:?}"),
            _ => panic!("{name:?}: expected {expected:?}, got {actual:?}"),
        }
    }

    fn invalid(name: &str, character: char) -> Result<(), TopicNameError> {
        Err(TopicNameError::InvalidCharacter { name: name.to_owned(), character })
    }

    #[test]
    fn names_follow_kafka_rules() {
        let longest = "a".repeat(TOPIC_NAME_BYTES_MAX);
        let too_long = "a".repeat(TOPIC_NAME_BYTES_MAX + 1);
        check("orders", Ok(()));
        check("a", Ok(()));
        check("A-b_c.9", Ok(()));
        check("...", Ok(()));
        check(".hidden", Ok(()));
        check("-", Ok(()));
        check("__consumer_offsets", Ok(()));
        check(&longest, Ok(()));
        check("", Err(TopicNameError::Empty));
        check(&too_long, Err(TopicNameError::TooLong { len: TOPIC_NAME_BYTES_MAX + 1 }));
        check(".", Err(TopicNameError::Reserved(".")));
        check("..", Err(TopicNameError::Reserved("..")));
        check("a b", invalid("a b", ' '));
        check("a/b", invalid("a/b", '/'));
        check("a:b", invalid("a:b", ':'));
        check("é", invalid("é", 'é'));
        check("topic\0", invalid("topic\0", '\0'));
        check("a\nb", invalid("a\nb", '\n'));
    }

    #[test]
    fn length_is_counted_in_bytes() {
        // 125 two-byte characters: 250 bytes. Refused for its length before its characters.
        let name = "é".repeat(125);
        check(&name, Err(TopicNameError::TooLong { len: 250 }));
    }

    #[test]
    fn dots_and_underscores_collide() {
        let name = |text: &str| TopicName::new(text).expect("valid test name");
        assert_eq!(name("a.b_c").collision_key(), "a_b_c");
        assert!(name("a.b").collides_with(&name("a_b")));
        assert!(name("a_b").collides_with(&name("a.b")));
        assert!(!name("a.b").collides_with(&name("a.b")), "a name does not collide with itself");
        assert!(!name("a.b").collides_with(&name("a-b")));
    }

    #[test]
    fn names_parse_and_borrow_as_text() {
        let name: TopicName = "orders".parse().expect("valid");
        assert_eq!(name.to_string(), "orders");
        let mut map = std::collections::BTreeMap::new();
        map.insert(name, 1);
        assert_eq!(map.get("orders"), Some(&1));
        assert!("a b".parse::<TopicName>().is_err());
    }

    #[test]
    fn topic_ids_round_trip_through_text_and_bytes() {
        let id = TopicId::random();
        assert!(!id.as_uuid().is_nil());
        assert_eq!(id.as_uuid().get_version_num(), 4);
        assert_eq!(id.to_string().parse::<TopicId>().expect("own display parses"), id);
        assert_eq!(TopicId::from_bytes(*id.as_bytes()), id);
        assert_ne!(TopicId::random(), id);
        assert_eq!(id.to_hex().len(), 32);
        assert_eq!(TopicId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(TopicId::from_hex(&id.to_string()), None, "hyphenated is not the hex form");
        assert_eq!(TopicId::from_hex(&id.to_hex().to_uppercase()), None);
        assert_eq!(TopicId::from_hex("orders"), None);
    }
}
