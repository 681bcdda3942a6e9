//! The records of the offsets topic, in Kafka's `__consumer_offsets` format, so that Kafka's
//! tools read ours: a key names what a record is about, a value (absent: a tombstone) holds it.
//!
//! A key starts with an `i16` that says which record it is (Kafka calls it the key's version).
//! The classic protocol's records (RFC 0006):
//!
//! ```text
//! key, version 0 or 1: offset commit   group: string, topic: string, partition: i32
//! key, version 2:      group metadata  group: string
//! offset commit value, version 3:  offset: i64, leader_epoch: i32, metadata: string,
//!                                  commit_timestamp: i64
//! group metadata value, version 3: protocol_type: string, generation: i32,
//!     protocol: nullable string, leader: nullable string, current_state_timestamp: i64,
//!     members: [member_id: string, group_instance_id: nullable string, client_id: string,
//!               client_host: string, rebalance_timeout: i32, session_timeout: i32,
//!               subscription: bytes, assignment: bytes]
//! ```
//!
//! Strings are an `i16` length and UTF-8 (−1: null), byte arrays an `i32` length, arrays an
//! `i32` count; all big-endian. Older value versions (offset commit 0–2, group metadata 0–2)
//! are read too; they differ only in fields that are absent.
//!
//! The consumer protocol's records (RFC 0008, KIP-848), keys as above, every value version 0:
//!
//! ```text
//! key 3: consumer group metadata     group       value: epoch: i32
//! key 4: partition metadata          group       value: topics: [topic_id: uuid,
//!     topic_name: string, num_partitions: i32, partition_metadata: [partition: i32,
//!     racks: [string]]]
//! key 5: member metadata             group, member
//!     value: instance_id: nullable string, rack_id: nullable string, client_id: string,
//!     client_host: string, subscribed_topic_names: [string],
//!     subscribed_topic_regex: nullable string, rebalance_timeout_ms: i32,
//!     server_assignor: nullable string,
//!     tag 0: classic_member_metadata (nullable): session_timeout_ms: i32,
//!            supported_protocols: [name: string, metadata: bytes]
//! key 6: target assignment metadata  group       value: assignment_epoch: i32
//! key 7: target assignment member    group, member
//!     value: topic_partitions: [topic_id: uuid, partitions: [i32]]
//! key 8: current member assignment   group, member
//!     value: member_epoch: i32, previous_member_epoch: i32, state: i8,
//!     assigned_partitions: [topic_id: uuid, partitions: [i32]],
//!     partitions_pending_revocation: [topic_id: uuid, partitions: [i32]]
//! ```
//!
//! Their keys are laid out as the classic ones; their values are Kafka's *flexible* versions:
//! strings, byte arrays and arrays are an unsigned varint length + 1 (0: null), and every
//! struct, the value itself and each array element, ends with its tagged fields (a varint
//! count, then tag, size and bytes each; cairn writes none but the classic member metadata,
//! and skips tags it does not know). A uuid is its 16 bytes. Kafka 4.0 writes and reads
//! version 0 of each; cairn writes and reads the same.

use cairn_types::batch::{BatchBuilder, BatchError};
use cairn_types::varint;
use thiserror::Error;

/// What a record of the offsets topic is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKey {
    /// The committed offset of one partition for a group.
    Offset {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// A group's membership and assignment.
    Group {
        /// The group.
        group: String,
    },
    /// A consumer group's epoch.
    ConsumerGroupMetadata {
        /// The group.
        group: String,
    },
    /// The partition counts of a consumer group's subscribed topics.
    PartitionMetadata {
        /// The group.
        group: String,
    },
    /// One member of a consumer group: who it is and what it subscribes to.
    MemberMetadata {
        /// The group.
        group: String,
        /// The member.
        member: String,
    },
    /// The epoch of a consumer group's target assignment.
    TargetAssignmentMetadata {
        /// The group.
        group: String,
    },
    /// One member's partitions in its consumer group's target assignment.
    TargetAssignmentMember {
        /// The group.
        group: String,
        /// The member.
        member: String,
    },
    /// One member's current assignment, on its way to the target.
    CurrentMemberAssignment {
        /// The group.
        group: String,
        /// The member.
        member: String,
    },
}

impl RecordKey {
    /// The group the record belongs to.
    #[must_use]
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. }
            | RecordKey::Group { group }
            | RecordKey::ConsumerGroupMetadata { group }
            | RecordKey::PartitionMetadata { group }
            | RecordKey::MemberMetadata { group, .. }
            | RecordKey::TargetAssignmentMetadata { group }
            | RecordKey::TargetAssignmentMember { group, .. }
            | RecordKey::CurrentMemberAssignment { group, .. } => group,
        }
    }
}

/// A committed offset, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will consume.
    pub offset: i64,
    /// The leader epoch of the record before `offset`, −1 when unknown.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
    /// When the commit was written, ms since the epoch.
    pub commit_timestamp: i64,
}

/// One member of a group, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMember {
    /// The coordinator-given member id.
    pub member_id: String,
    /// The static member's instance id.
    pub group_instance_id: Option<String>,
    /// The client id the member joined with.
    pub client_id: String,
    /// The address the member joined from.
    pub client_host: String,
    /// Longest the member may take to rejoin in a rebalance.
    pub rebalance_timeout_ms: i32,
    /// Longest the member may go without a heartbeat.
    pub session_timeout_ms: i32,
    /// The member's metadata for the chosen protocol.
    pub subscription: Vec<u8>,
    /// The member's assignment from the leader.
    pub assignment: Vec<u8>,
}

/// A group's state, as stored (written when a rebalance completes and when it empties).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredGroup {
    /// The group's protocol type (`consumer` for consumers).
    pub protocol_type: String,
    /// The generation.
    pub generation: i32,
    /// The chosen protocol (assignor), none while empty.
    pub protocol: Option<String>,
    /// The leader's member id, none while empty.
    pub leader: Option<String>,
    /// When the group entered its state, ms since the epoch.
    pub state_timestamp: i64,
    /// The members and their assignments.
    pub members: Vec<StoredMember>,
}

/// A consumer group's epoch, as stored: bumped when its members or subscriptions change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// The group epoch.
    pub epoch: i32,
}

/// The subscribed topics of a consumer group as its assignment saw them, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// One entry per subscribed topic.
    pub topics: Vec<TopicMetadata>,
}

/// One subscribed topic in [`PartitionMetadata`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMetadata {
    /// The topic id, its 16 bytes.
    pub topic_id: [u8; 16],
    /// The topic name.
    pub topic_name: String,
    /// How many partitions it has.
    pub partition_count: i32,
    /// The racks of its partitions' replicas; Kafka 4.0 no longer fills it (it writes none).
    pub partition_racks: Vec<PartitionRacks>,
}

/// The racks of one partition's replicas, in [`TopicMetadata`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRacks {
    /// The partition.
    pub partition: i32,
    /// The racks its replicas are on.
    pub racks: Vec<String>,
}

/// One member of a consumer group, as stored (written when it joins or changes its
/// subscription).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberMetadata {
    /// The static member's `group.instance.id`.
    pub instance_id: Option<String>,
    /// The member's `client.rack`.
    pub rack_id: Option<String>,
    /// The client id it joined with.
    pub client_id: String,
    /// The address it joined from.
    pub client_host: String,
    /// The topics it subscribes to by name.
    pub subscribed_topic_names: Vec<String>,
    /// The regular expression it subscribes with, if any.
    pub subscribed_topic_regex: Option<String>,
    /// Longest it may take to revoke partitions, −1 when unknown.
    pub rebalance_timeout_ms: i32,
    /// The server-side assignor it asked for, none for the group's default.
    pub server_assignor: Option<String>,
    /// What a member speaking the classic protocol inside a consumer group joined with (a
    /// tagged field, absent for consumer-protocol members; cairn does not mix them yet).
    pub classic_member_metadata: Option<ClassicMemberMetadata>,
}

/// The classic-protocol side of a [`MemberMetadata`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassicMemberMetadata {
    /// The session timeout it joined with.
    pub session_timeout_ms: i32,
    /// The protocols (assignors) it supports, in its order of preference.
    pub supported_protocols: Vec<ClassicProtocol>,
}

/// One protocol of a [`ClassicMemberMetadata`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassicProtocol {
    /// The protocol (assignor) name.
    pub name: String,
    /// The member's metadata for it.
    pub metadata: Vec<u8>,
}

/// The epoch of a consumer group's target assignment, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetAssignmentMetadata {
    /// The group epoch the target assignment was computed at.
    pub assignment_epoch: i32,
}

/// Partitions of one topic, by topic id: an entry of an assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPartitions {
    /// The topic id, its 16 bytes.
    pub topic_id: [u8; 16],
    /// The partitions.
    pub partitions: Vec<i32>,
}

/// One member's partitions in the target assignment, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetAssignmentMember {
    /// The partitions, by topic.
    pub topic_partitions: Vec<TopicPartitions>,
}

/// One member's current assignment, as stored (written at each step of its reconciliation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentMemberAssignment {
    /// The epoch the member is expected to heartbeat with.
    pub member_epoch: i32,
    /// Its epoch before the last bump, accepted in case the bump's response was lost.
    pub previous_member_epoch: i32,
    /// Kafka's member state code: 0 stable, 1 unrevoked partitions, 2 unreleased
    /// partitions, 127 unknown.
    pub state: i8,
    /// The partitions it owns.
    pub assigned_partitions: Vec<TopicPartitions>,
    /// The partitions it must give up before it moves on.
    pub partitions_pending_revocation: Vec<TopicPartitions>,
}

/// A record's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordValue {
    /// A committed offset.
    Offset(CommittedOffset),
    /// A group's state.
    Group(StoredGroup),
    /// A consumer group's epoch.
    ConsumerGroupMetadata(ConsumerGroupMetadata),
    /// A consumer group's subscribed topics.
    PartitionMetadata(PartitionMetadata),
    /// A consumer group's member.
    MemberMetadata(MemberMetadata),
    /// The epoch of a consumer group's target assignment.
    TargetAssignmentMetadata(TargetAssignmentMetadata),
    /// A member's partitions in the target assignment.
    TargetAssignmentMember(TargetAssignmentMember),
    /// A member's current assignment.
    CurrentMemberAssignment(CurrentMemberAssignment),
}

/// A record of the offsets topic that is not in Kafka's format.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RecordError {
    /// The bytes ended inside a field.
    #[error("offsets-topic record truncated")]
    Truncated,
    /// Bytes after the last field.
    #[error("offsets-topic record has {0} bytes after its last field")]
    Trailing(usize),
    /// A version this broker does not read.
    #[error("offsets-topic {what} version {version} is unknown")]
    Version {
        /// Key or value.
        what: &'static str,
        /// The version read.
        version: i16,
    },
    /// A length that is negative where null is not allowed, or a string that is not UTF-8.
    #[error("offsets-topic record has an invalid {0}")]
    Invalid(&'static str),
    /// A record without a key: not one a coordinator wrote.
    #[error("offsets-topic record has no key")]
    NoKey,
    /// The record's framing in its batch is invalid.
    #[error("offsets-topic record unreadable: {0}")]
    Batch(#[from] BatchError),
}

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;
const CONSUMER_GROUP_METADATA_KEY_VERSION: i16 = 3;
const PARTITION_METADATA_KEY_VERSION: i16 = 4;
const MEMBER_METADATA_KEY_VERSION: i16 = 5;
const TARGET_ASSIGNMENT_METADATA_KEY_VERSION: i16 = 6;
const TARGET_ASSIGNMENT_MEMBER_KEY_VERSION: i16 = 7;
const CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION: i16 = 8;
/// The one version of every consumer-protocol value (Kafka 4.0's).
const CONSUMER_VALUE_VERSION: i16 = 0;
/// The tag of [`MemberMetadata::classic_member_metadata`].
const CLASSIC_MEMBER_METADATA_TAG: u32 = 0;

/// Encodes a key.
#[must_use]
pub fn encode_key(key: &RecordKey) -> Vec<u8> {
    let mut w = Writer::default();
    let (version, group, member) = match key {
        RecordKey::Offset { group, topic, partition } => {
            w.i16(OFFSET_KEY_VERSION);
            w.string(group);
            w.string(topic);
            w.i32(*partition);
            return w.0;
        }
        RecordKey::Group { group } => (GROUP_KEY_VERSION, group, None),
        RecordKey::ConsumerGroupMetadata { group } => {
            (CONSUMER_GROUP_METADATA_KEY_VERSION, group, None)
        }
        RecordKey::PartitionMetadata { group } => (PARTITION_METADATA_KEY_VERSION, group, None),
        RecordKey::MemberMetadata { group, member } => {
            (MEMBER_METADATA_KEY_VERSION, group, Some(member))
        }
        RecordKey::TargetAssignmentMetadata { group } => {
            (TARGET_ASSIGNMENT_METADATA_KEY_VERSION, group, None)
        }
        RecordKey::TargetAssignmentMember { group, member } => {
            (TARGET_ASSIGNMENT_MEMBER_KEY_VERSION, group, Some(member))
        }
        RecordKey::CurrentMemberAssignment { group, member } => {
            (CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION, group, Some(member))
        }
    };
    w.i16(version);
    w.string(group);
    if let Some(member) = member {
        w.string(member);
    }
    w.0
}

/// Decodes a key.
///
/// # Errors
/// [`RecordError`] if the bytes are not a key of a known version.
pub fn decode_key(bytes: &[u8]) -> Result<RecordKey, RecordError> {
    let mut r = Reader(bytes);
    let key = match r.i16()? {
        0 | 1 => RecordKey::Offset { group: r.string()?, topic: r.string()?, partition: r.i32()? },
        2 => RecordKey::Group { group: r.string()? },
        3 => RecordKey::ConsumerGroupMetadata { group: r.string()? },
        4 => RecordKey::PartitionMetadata { group: r.string()? },
        5 => RecordKey::MemberMetadata { group: r.string()?, member: r.string()? },
        6 => RecordKey::TargetAssignmentMetadata { group: r.string()? },
        7 => RecordKey::TargetAssignmentMember { group: r.string()?, member: r.string()? },
        8 => RecordKey::CurrentMemberAssignment { group: r.string()?, member: r.string()? },
        version => return Err(RecordError::Version { what: "key", version }),
    };
    r.end()?;
    Ok(key)
}

/// Encodes a value.
#[must_use]
pub fn encode_value(value: &RecordValue) -> Vec<u8> {
    let mut w = Writer::default();
    match value {
        RecordValue::Offset(offset) => {
            w.i16(OFFSET_VALUE_VERSION);
            w.i64(offset.offset);
            w.i32(offset.leader_epoch);
            w.string(&offset.metadata);
            w.i64(offset.commit_timestamp);
        }
        RecordValue::Group(group) => encode_group(&mut w, group),
        RecordValue::ConsumerGroupMetadata(metadata) => {
            w.i16(CONSUMER_VALUE_VERSION);
            w.i32(metadata.epoch);
            w.no_tagged_fields();
        }
        RecordValue::PartitionMetadata(metadata) => encode_partition_metadata(&mut w, metadata),
        RecordValue::MemberMetadata(member) => encode_member_metadata(&mut w, member),
        RecordValue::TargetAssignmentMetadata(metadata) => {
            w.i16(CONSUMER_VALUE_VERSION);
            w.i32(metadata.assignment_epoch);
            w.no_tagged_fields();
        }
        RecordValue::TargetAssignmentMember(member) => {
            w.i16(CONSUMER_VALUE_VERSION);
            w.topic_partitions(&member.topic_partitions);
            w.no_tagged_fields();
        }
        RecordValue::CurrentMemberAssignment(current) => {
            w.i16(CONSUMER_VALUE_VERSION);
            w.i32(current.member_epoch);
            w.i32(current.previous_member_epoch);
            w.i8(current.state);
            w.topic_partitions(&current.assigned_partitions);
            w.topic_partitions(&current.partitions_pending_revocation);
            w.no_tagged_fields();
        }
    }
    w.0
}

fn encode_partition_metadata(w: &mut Writer, metadata: &PartitionMetadata) {
    w.i16(CONSUMER_VALUE_VERSION);
    w.compact_array(&metadata.topics, |w, topic| {
        w.uuid(&topic.topic_id);
        w.compact_string(&topic.topic_name);
        w.i32(topic.partition_count);
        w.compact_array(&topic.partition_racks, |w, partition| {
            w.i32(partition.partition);
            w.compact_array(&partition.racks, |w, rack| w.compact_string(rack));
            w.no_tagged_fields();
        });
        w.no_tagged_fields();
    });
    w.no_tagged_fields();
}

fn encode_member_metadata(w: &mut Writer, member: &MemberMetadata) {
    w.i16(CONSUMER_VALUE_VERSION);
    w.compact_nullable_string(member.instance_id.as_deref());
    w.compact_nullable_string(member.rack_id.as_deref());
    w.compact_string(&member.client_id);
    w.compact_string(&member.client_host);
    w.compact_array(&member.subscribed_topic_names, |w, topic| w.compact_string(topic));
    w.compact_nullable_string(member.subscribed_topic_regex.as_deref());
    w.i32(member.rebalance_timeout_ms);
    w.compact_nullable_string(member.server_assignor.as_deref());
    let Some(classic) = &member.classic_member_metadata else {
        w.no_tagged_fields(); // Null is the field's default, which is not written.
        return;
    };
    let mut field = Writer::default();
    field.uvarint(1); // Present: a nullable struct starts with a non-zero marker.
    field.i32(classic.session_timeout_ms);
    field.compact_array(&classic.supported_protocols, |w, protocol| {
        w.compact_string(&protocol.name);
        w.compact_bytes(&protocol.metadata);
        w.no_tagged_fields();
    });
    field.no_tagged_fields();
    w.uvarint(1); // One tagged field.
    w.tagged_field(CLASSIC_MEMBER_METADATA_TAG, &field.0);
}

fn encode_group(w: &mut Writer, group: &StoredGroup) {
    w.i16(GROUP_VALUE_VERSION);
    w.string(&group.protocol_type);
    w.i32(group.generation);
    w.nullable_string(group.protocol.as_deref());
    w.nullable_string(group.leader.as_deref());
    w.i64(group.state_timestamp);
    w.i32(i32::try_from(group.members.len()).unwrap_or(i32::MAX));
    for member in &group.members {
        w.string(&member.member_id);
        w.nullable_string(member.group_instance_id.as_deref());
        w.string(&member.client_id);
        w.string(&member.client_host);
        w.i32(member.rebalance_timeout_ms);
        w.i32(member.session_timeout_ms);
        w.bytes(&member.subscription);
        w.bytes(&member.assignment);
    }
}

/// Decodes the value of a record whose key is `key`.
///
/// # Errors
/// [`RecordError`] if the bytes are not a value of a known version.
pub fn decode_value(key: &RecordKey, bytes: &[u8]) -> Result<RecordValue, RecordError> {
    let mut r = Reader(bytes);
    let value = match key {
        RecordKey::Offset { .. } => RecordValue::Offset(decode_offset(&mut r)?),
        RecordKey::Group { .. } => RecordValue::Group(decode_group(&mut r)?),
        RecordKey::ConsumerGroupMetadata { .. } => {
            r.consumer_value_version("consumer group metadata value")?;
            let epoch = r.i32()?;
            r.skip_tagged_fields()?;
            RecordValue::ConsumerGroupMetadata(ConsumerGroupMetadata { epoch })
        }
        RecordKey::PartitionMetadata { .. } => {
            r.consumer_value_version("partition metadata value")?;
            let topics = r.compact_array(decode_topic_metadata)?;
            r.skip_tagged_fields()?;
            RecordValue::PartitionMetadata(PartitionMetadata { topics })
        }
        RecordKey::MemberMetadata { .. } => {
            r.consumer_value_version("member metadata value")?;
            RecordValue::MemberMetadata(decode_member_metadata(&mut r)?)
        }
        RecordKey::TargetAssignmentMetadata { .. } => {
            r.consumer_value_version("target assignment metadata value")?;
            let assignment_epoch = r.i32()?;
            r.skip_tagged_fields()?;
            RecordValue::TargetAssignmentMetadata(TargetAssignmentMetadata { assignment_epoch })
        }
        RecordKey::TargetAssignmentMember { .. } => {
            r.consumer_value_version("target assignment member value")?;
            let topic_partitions = r.topic_partitions()?;
            r.skip_tagged_fields()?;
            RecordValue::TargetAssignmentMember(TargetAssignmentMember { topic_partitions })
        }
        RecordKey::CurrentMemberAssignment { .. } => {
            r.consumer_value_version("current member assignment value")?;
            RecordValue::CurrentMemberAssignment(decode_current_member_assignment(&mut r)?)
        }
    };
    r.end()?;
    Ok(value)
}

/// Decodes a record of the offsets topic: its key, and its value (`None`: a tombstone).
///
/// # Errors
/// [`RecordError::NoKey`] for a record without a key, else the key's or the value's error.
pub fn decode(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<(RecordKey, Option<RecordValue>), RecordError> {
    let key = decode_key(key.ok_or(RecordError::NoKey)?)?;
    let value = value.map(|bytes| decode_value(&key, bytes)).transpose()?;
    Ok((key, value))
}

/// One uncompressed record batch, without a producer, of `records` (keys and values encoded,
/// a tombstone without a value) stamped `timestamp_ms`: what a coordinator's runtime proposes
/// to its partition for a [`crate::Write`], or for several together.
#[must_use]
pub fn batch<'a>(
    records: impl IntoIterator<Item = &'a (RecordKey, Option<RecordValue>)>,
    timestamp_ms: i64,
) -> Vec<u8> {
    let mut builder = BatchBuilder::new(timestamp_ms);
    for (key, value) in records {
        let key = encode_key(key);
        let value = value.as_ref().map(encode_value);
        builder = builder.record(Some(&key), value.as_deref(), &[]);
    }
    builder.build()
}

fn decode_topic_metadata(r: &mut Reader<'_>) -> Result<TopicMetadata, RecordError> {
    let topic_id = r.uuid()?;
    let topic_name = r.compact_string()?;
    let partition_count = r.i32()?;
    let partition_racks = r.compact_array(|r| {
        let partition = r.i32()?;
        let racks = r.compact_array(Reader::compact_string)?;
        r.skip_tagged_fields()?;
        Ok(PartitionRacks { partition, racks })
    })?;
    r.skip_tagged_fields()?;
    Ok(TopicMetadata { topic_id, topic_name, partition_count, partition_racks })
}

/// Decodes a member metadata value after its version, through its tagged fields: its one
/// known tagged field is the classic member metadata.
fn decode_member_metadata(r: &mut Reader<'_>) -> Result<MemberMetadata, RecordError> {
    let mut member = MemberMetadata {
        instance_id: r.compact_nullable_string()?,
        rack_id: r.compact_nullable_string()?,
        client_id: r.compact_string()?,
        client_host: r.compact_string()?,
        subscribed_topic_names: r.compact_array(Reader::compact_string)?,
        subscribed_topic_regex: r.compact_nullable_string()?,
        rebalance_timeout_ms: r.i32()?,
        server_assignor: r.compact_nullable_string()?,
        classic_member_metadata: None,
    };
    r.tagged_fields(|tag, field| {
        if tag == CLASSIC_MEMBER_METADATA_TAG {
            member.classic_member_metadata = decode_classic_member_metadata(field)?;
        }
        Ok(())
    })?;
    Ok(member)
}

/// Decodes the tagged classic member metadata, all of `field`: a marker (0: null), then the
/// struct.
fn decode_classic_member_metadata(
    mut field: Reader<'_>,
) -> Result<Option<ClassicMemberMetadata>, RecordError> {
    if field.uvarint()? == 0 {
        field.end()?;
        return Ok(None);
    }
    let session_timeout_ms = field.i32()?;
    let supported_protocols = field.compact_array(|r| {
        let protocol = ClassicProtocol { name: r.compact_string()?, metadata: r.compact_bytes()? };
        r.skip_tagged_fields()?;
        Ok(protocol)
    })?;
    field.skip_tagged_fields()?;
    field.end()?;
    Ok(Some(ClassicMemberMetadata { session_timeout_ms, supported_protocols }))
}

fn decode_current_member_assignment(
    r: &mut Reader<'_>,
) -> Result<CurrentMemberAssignment, RecordError> {
    let current = CurrentMemberAssignment {
        member_epoch: r.i32()?,
        previous_member_epoch: r.i32()?,
        state: r.i8()?,
        assigned_partitions: r.topic_partitions()?,
        partitions_pending_revocation: r.topic_partitions()?,
    };
    r.skip_tagged_fields()?;
    Ok(current)
}

fn decode_offset(r: &mut Reader<'_>) -> Result<CommittedOffset, RecordError> {
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::Version { what: "offset commit value", version });
    }
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp = r.i64()?;
    if version == 1 {
        r.i64()?; // The expire timestamp of version 1, which nothing reads any more.
    }
    Ok(CommittedOffset { offset, leader_epoch, metadata, commit_timestamp })
}

fn decode_group(r: &mut Reader<'_>) -> Result<StoredGroup, RecordError> {
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::Version { what: "group metadata value", version });
    }
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = r.nullable_string()?;
    let leader = r.nullable_string()?;
    let state_timestamp = if version >= 2 { r.i64()? } else { -1 };
    let count = r.count()?;
    let mut members = Vec::with_capacity(count.min(r.0.len() / 20));
    for _ in 0..count {
        members.push(decode_member(r, version)?);
    }
    Ok(StoredGroup { protocol_type, generation, protocol, leader, state_timestamp, members })
}

fn decode_member(r: &mut Reader<'_>, version: i16) -> Result<StoredMember, RecordError> {
    let member_id = r.string()?;
    let group_instance_id = if version >= 3 { r.nullable_string()? } else { None };
    let client_id = r.string()?;
    let client_host = r.string()?;
    let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
    let session_timeout_ms = r.i32()?;
    let subscription = r.bytes()?;
    let assignment = r.bytes()?;
    let rebalance_timeout_ms =
        if rebalance_timeout_ms < 0 { session_timeout_ms } else { rebalance_timeout_ms };
    Ok(StoredMember {
        member_id,
        group_instance_id,
        client_id,
        client_host,
        rebalance_timeout_ms,
        session_timeout_ms,
        subscription,
        assignment,
    })
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    /// Callers bound strings far below `i16::MAX` bytes (`cairn_types::limits`).
    fn string(&mut self, s: &str) {
        self.i16(i16::try_from(s.len()).unwrap_or(i16::MAX));
        self.0.extend_from_slice(s.as_bytes());
    }
    fn nullable_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.i16(-1),
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.i32(i32::try_from(b.len()).unwrap_or(i32::MAX));
        self.0.extend_from_slice(b);
    }
    fn i8(&mut self, v: i8) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn uvarint(&mut self, v: u32) {
        varint::put_uvarint(&mut self.0, u64::from(v));
    }
    /// A compact length: `len + 1`, 0 being null.
    fn compact_len(&mut self, len: usize) {
        self.uvarint(u32::try_from(len).map_or(u32::MAX, |len| len.saturating_add(1)));
    }
    fn compact_string(&mut self, s: &str) {
        self.compact_len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn compact_nullable_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.compact_string(s),
            None => self.uvarint(0),
        }
    }
    fn compact_bytes(&mut self, b: &[u8]) {
        self.compact_len(b.len());
        self.0.extend_from_slice(b);
    }
    fn compact_array<T>(&mut self, items: &[T], mut each: impl FnMut(&mut Self, &T)) {
        self.compact_len(items.len());
        for item in items {
            each(self, item);
        }
    }
    fn uuid(&mut self, id: &[u8; 16]) {
        self.0.extend_from_slice(id);
    }
    /// The partitions of an assignment, each topic a struct of its own.
    fn topic_partitions(&mut self, topics: &[TopicPartitions]) {
        self.compact_array(topics, |w, topic| {
            w.uuid(&topic.topic_id);
            w.compact_array(&topic.partitions, |w, partition| w.i32(*partition));
            w.no_tagged_fields();
        });
    }
    /// One tagged field (after their count): its tag, its size (not + 1) and its bytes.
    fn tagged_field(&mut self, tag: u32, bytes: &[u8]) {
        self.uvarint(tag);
        self.uvarint(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(bytes);
    }
    /// The end of a struct in a flexible version that has no tagged field to write.
    fn no_tagged_fields(&mut self) {
        self.uvarint(0);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let bytes = self.take(usize::try_from(len).unwrap_or(0))?;
        let text = std::str::from_utf8(bytes).map_err(|_| RecordError::Invalid("string"))?;
        Ok(Some(text.to_owned()))
    }
    fn string(&mut self) -> Result<String, RecordError> {
        self.nullable_string()?.ok_or(RecordError::Invalid("null string"))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, RecordError> {
        let len = usize::try_from(self.i32()?).map_err(|_| RecordError::Invalid("length"))?;
        Ok(self.take(len)?.to_vec())
    }
    fn count(&mut self) -> Result<usize, RecordError> {
        usize::try_from(self.i32()?).map_err(|_| RecordError::Invalid("array count"))
    }
    fn i8(&mut self) -> Result<i8, RecordError> {
        Ok(i8::from_be_bytes(self.array()?))
    }
    /// At most five bytes, and no more than 32 bits.
    fn uvarint(&mut self) -> Result<u32, RecordError> {
        let (value, len) = varint::get_uvarint32(self.0).map_err(|error| match error {
            varint::VarintError::Truncated => RecordError::Truncated,
            varint::VarintError::TooLong => RecordError::Invalid("varint"),
        })?;
        self.take(len)?;
        Ok(value)
    }
    /// A compact length, none for null.
    fn compact_len(&mut self) -> Result<Option<usize>, RecordError> {
        let len = self.uvarint()?.checked_sub(1);
        len.map(|len| usize::try_from(len).map_err(|_| RecordError::Invalid("length"))).transpose()
    }
    fn compact_nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        let Some(len) = self.compact_len()? else { return Ok(None) };
        let text =
            std::str::from_utf8(self.take(len)?).map_err(|_| RecordError::Invalid("string"))?;
        Ok(Some(text.to_owned()))
    }
    fn compact_string(&mut self) -> Result<String, RecordError> {
        self.compact_nullable_string()?.ok_or(RecordError::Invalid("null string"))
    }
    fn compact_bytes(&mut self) -> Result<Vec<u8>, RecordError> {
        let len = self.compact_len()?.ok_or(RecordError::Invalid("null bytes"))?;
        Ok(self.take(len)?.to_vec())
    }
    fn compact_array<T>(
        &mut self,
        mut each: impl FnMut(&mut Self) -> Result<T, RecordError>,
    ) -> Result<Vec<T>, RecordError> {
        let count = self.compact_len()?.ok_or(RecordError::Invalid("array count"))?;
        let mut items = Vec::with_capacity(count.min(self.0.len()));
        for _ in 0..count {
            items.push(each(self)?);
        }
        Ok(items)
    }
    fn uuid(&mut self) -> Result<[u8; 16], RecordError> {
        self.array()
    }
    fn topic_partitions(&mut self) -> Result<Vec<TopicPartitions>, RecordError> {
        self.compact_array(|r| {
            let topic_id = r.uuid()?;
            let partitions = r.compact_array(Reader::i32)?;
            r.skip_tagged_fields()?;
            Ok(TopicPartitions { topic_id, partitions })
        })
    }
    /// The tagged fields that end a struct: each handed to `visit` with its tag and a reader
    /// over its bytes, which ignores tags it does not know.
    fn tagged_fields(
        &mut self,
        mut visit: impl FnMut(u32, Reader<'a>) -> Result<(), RecordError>,
    ) -> Result<(), RecordError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size =
                usize::try_from(self.uvarint()?).map_err(|_| RecordError::Invalid("length"))?;
            visit(tag, Reader(self.take(size)?))?;
        }
        Ok(())
    }
    fn skip_tagged_fields(&mut self) -> Result<(), RecordError> {
        self.tagged_fields(|_, _| Ok(()))
    }
    /// The version of a consumer-protocol value, which must be the one cairn knows.
    fn consumer_value_version(&mut self, what: &'static str) -> Result<(), RecordError> {
        match self.i16()? {
            CONSUMER_VALUE_VERSION => Ok(()),
            version => Err(RecordError::Version { what, version }),
        }
    }
    fn end(&self) -> Result<(), RecordError> {
        if self.0.is_empty() { Ok(()) } else { Err(RecordError::Trailing(self.0.len())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn group() -> StoredGroup {
        StoredGroup {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("c-1".into()),
            state_timestamp: 1_700_000_000_000,
            members: vec![StoredMember {
                member_id: "c-1".into(),
                group_instance_id: Some("host-a".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: vec![0, 1, 2],
                assignment: vec![3, 4],
            }],
        }
    }

    #[test]
    fn keys_and_values_round_trip_in_kafkas_layout() {
        let key = RecordKey::Offset { group: "g".into(), topic: "t".into(), partition: 2 };
        let bytes = encode_key(&key);
        assert_eq!(bytes, [0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 2]);
        assert_eq!(decode_key(&bytes), Ok(key.clone()));
        let offset = RecordValue::Offset(CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp: 9,
        });
        let bytes = encode_value(&offset);
        assert_eq!(&bytes[..2], [0, 3]);
        assert_eq!(decode_value(&key, &bytes), Ok(offset));
        let key = RecordKey::Group { group: "g".into() };
        assert_eq!(encode_key(&key), [0, 2, 0, 1, b'g']);
        let value = RecordValue::Group(group());
        assert_eq!(decode_value(&key, &encode_value(&value)), Ok(value));
    }

    #[test]
    fn older_value_versions_are_read() {
        // Offset commit value version 1: offset, metadata, commit and expire timestamps.
        let mut v1 = vec![0, 1];
        v1.extend_from_slice(&5i64.to_be_bytes());
        v1.extend_from_slice(&[0, 0]);
        v1.extend_from_slice(&6i64.to_be_bytes());
        v1.extend_from_slice(&7i64.to_be_bytes());
        let key = RecordKey::Offset { group: "g".into(), topic: "t".into(), partition: 0 };
        let expected = CommittedOffset {
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 6,
        };
        assert_eq!(decode_value(&key, &v1), Ok(RecordValue::Offset(expected)));
    }

    #[test]
    fn malformed_records_are_errors() {
        assert_eq!(
            decode_key(&[0, 9, 0, 0]),
            Err(RecordError::Version { what: "key", version: 9 })
        );
        assert_eq!(decode_key(&[0, 2, 0, 5, b'g']), Err(RecordError::Truncated));
        assert_eq!(decode_key(&[0, 2, 0, 1, b'g', 0]), Err(RecordError::Trailing(1)));
        assert_eq!(decode_key(&[0, 2, 0xff, 0xff]), Err(RecordError::Invalid("null string")));
        assert_eq!(decode_key(&[0, 2, 0, 1, 0xff]), Err(RecordError::Invalid("string")));
        let key = RecordKey::Group { group: "g".into() };
        let empty = StoredGroup { members: Vec::new(), ..group() };
        let mut bytes = encode_value(&RecordValue::Group(empty));
        let count_at = bytes.len() - 4; // An empty group ends with its member count.
        bytes[count_at..].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(decode_value(&key, &bytes), Err(RecordError::Invalid("array count")));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let key = RecordKey::Group { group: "g".into() };
            let _ = decode_key(&bytes);
            let _ = decode_value(&key, &bytes);
            let key = RecordKey::Offset { group: "g".into(), topic: "t".into(), partition: 0 };
            let _ = decode_value(&key, &bytes);
        }
    }
}
