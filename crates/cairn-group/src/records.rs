//! The records of the offsets topic, in Kafka's `__consumer_offsets` format, so that Kafka's
//! tools read ours: a key names what a record is about, a value (absent: a tombstone) holds it.
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
}

impl RecordKey {
    /// The group the record belongs to.
    #[must_use]
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
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

/// A record's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordValue {
    /// A committed offset.
    Offset(CommittedOffset),
    /// A group's state.
    Group(StoredGroup),
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
}

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

/// Encodes a key.
#[must_use]
pub fn encode_key(key: &RecordKey) -> Vec<u8> {
    let mut w = Writer::default();
    match key {
        RecordKey::Offset { group, topic, partition } => {
            w.i16(OFFSET_KEY_VERSION);
            w.string(group);
            w.string(topic);
            w.i32(*partition);
        }
        RecordKey::Group { group } => {
            w.i16(GROUP_KEY_VERSION);
            w.string(group);
        }
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
    }
    w.0
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
    };
    r.end()?;
    Ok(value)
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
