//! [`RaftRecord`]: what a partition's `raft-snapshot` file holds (RFC 0003 §3 "Snapshots are
//! small"), and its versioned encoding. cairn-storage keeps the bytes (checksummed, replaced
//! atomically); this module gives them their meaning.
//!
//! - the snapshot, if one was built or installed: its last log id `P`, the membership as of
//!   `P` with its log id, and the log start offset that goes with it;
//! - the newest membership the state machine applied (at or above the snapshot's), written when
//!   a membership entry is applied, so that after a restart the state machine reports the
//!   membership at its committed id without reading the log (RFC 0003 §11 b).
//!
//! ```text
//! version: u16 (= 1)
//! flags: u8                 bit 0: snapshot present, bit 1: its membership present,
//!                           bit 2: applied membership present; other bits zero
//! [bit 0] last_term: u64, last_index: u64, log_start_offset: u64
//! [bit 1] term: u64, index: u64, length: u16, Members encoding
//! [bit 2] term: u64, index: u64, length: u16, Members encoding
//! ```
//!
//! Big-endian, nothing after the last field. Decoding reads bytes from disk: every length is
//! checked against the bytes left.

use cairn_types::Offset;

use crate::entry::log_id;
use crate::membership::{Members, MembersError};
use crate::{LogId, Term};

/// The only version written and read.
const VERSION: u16 = 1;
const FLAG_SNAPSHOT: u8 = 1;
const FLAG_SNAPSHOT_MEMBERSHIP: u8 = 2;
const FLAG_APPLIED_MEMBERSHIP: u8 = 4;

/// A membership and the log id of the entry that carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MembershipAt {
    /// The membership entry's log id.
    pub(crate) log_id: LogId,
    /// The membership.
    pub(crate) members: Members,
}

/// The snapshot at `P`: everything a replica needs to start its log at `P + 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotPoint {
    /// `P`, the last log id the snapshot covers.
    pub(crate) last_log_id: LogId,
    /// The membership as of `P`; `None` before any membership entry.
    pub(crate) membership: Option<MembershipAt>,
    /// The partition's log start offset with the snapshot: the offset of entry `P + 1`.
    pub(crate) log_start_offset: Offset,
}

/// The content of `raft-snapshot` (module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RaftRecord {
    /// The current snapshot.
    pub(crate) snapshot: Option<SnapshotPoint>,
    /// The newest membership applied, if any was applied since the snapshot.
    pub(crate) applied_membership: Option<MembershipAt>,
}

/// Why stored bytes are not a record this version wrote: the replica stays offline.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// An encoding version this build does not know.
    #[error("unknown raft-snapshot record version {version}")]
    UnknownVersion {
        /// The version read.
        version: u16,
    },
    /// Flags this version never sets.
    #[error("unknown raft-snapshot record flags {flags:#04x}")]
    UnknownFlags {
        /// The flags read.
        flags: u8,
    },
    /// The bytes end inside a field, or go on after the last.
    #[error("raft-snapshot record of the wrong length: {reason}")]
    Length {
        /// Which field.
        reason: &'static str,
    },
    /// A membership in it is malformed.
    #[error("raft-snapshot record membership: {0}")]
    Members(#[from] MembersError),
}

impl RaftRecord {
    /// The versioned encoding (module docs).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&VERSION.to_be_bytes());
        let snapshot_membership = self.snapshot.as_ref().and_then(|p| p.membership.as_ref());
        let mut flags = 0;
        if self.snapshot.is_some() {
            flags |= FLAG_SNAPSHOT;
        }
        if snapshot_membership.is_some() {
            flags |= FLAG_SNAPSHOT_MEMBERSHIP;
        }
        if self.applied_membership.is_some() {
            flags |= FLAG_APPLIED_MEMBERSHIP;
        }
        out.push(flags);
        if let Some(point) = &self.snapshot {
            put_log_id(&mut out, point.last_log_id);
            out.extend_from_slice(&point.log_start_offset.0.to_be_bytes());
        }
        for membership in
            [snapshot_membership, self.applied_membership.as_ref()].into_iter().flatten()
        {
            put_log_id(&mut out, membership.log_id);
            let members = membership.members.encode();
            let length =
                u16::try_from(members.len()).expect("RAFT_MEMBERSHIP_NODES_MAX keeps it small");
            out.extend_from_slice(&length.to_be_bytes());
            out.extend_from_slice(&members);
        }
        out
    }

    /// Decodes a record from stored bytes.
    ///
    /// # Errors
    /// [`RecordError`] for anything [`RaftRecord::encode`] does not write.
    pub(crate) fn decode(bytes: &[u8]) -> Result<RaftRecord, RecordError> {
        let mut reader = Reader { bytes };
        let version = u16::from_be_bytes(reader.take("version")?);
        if version != VERSION {
            return Err(RecordError::UnknownVersion { version });
        }
        let [flags] = reader.take("flags")?;
        if flags & !(FLAG_SNAPSHOT | FLAG_SNAPSHOT_MEMBERSHIP | FLAG_APPLIED_MEMBERSHIP) != 0
            || (flags & FLAG_SNAPSHOT_MEMBERSHIP != 0 && flags & FLAG_SNAPSHOT == 0)
        {
            return Err(RecordError::UnknownFlags { flags });
        }
        let mut snapshot = None;
        if flags & FLAG_SNAPSHOT != 0 {
            let last_log_id = reader.log_id()?;
            let log_start_offset = Offset(u64::from_be_bytes(reader.take("log start offset")?));
            snapshot = Some(SnapshotPoint { last_log_id, membership: None, log_start_offset });
        }
        if flags & FLAG_SNAPSHOT_MEMBERSHIP != 0
            && let Some(point) = &mut snapshot
        {
            point.membership = Some(reader.membership()?);
        }
        let applied_membership =
            if flags & FLAG_APPLIED_MEMBERSHIP != 0 { Some(reader.membership()?) } else { None };
        if !reader.bytes.is_empty() {
            return Err(RecordError::Length { reason: "bytes after the last field" });
        }
        Ok(RaftRecord { snapshot, applied_membership })
    }
}

fn put_log_id(out: &mut Vec<u8>, id: LogId) {
    out.extend_from_slice(&id.leader_id.term.to_be_bytes());
    out.extend_from_slice(&id.index.to_be_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<N>() else {
            return Err(RecordError::Length { reason: field });
        };
        self.bytes = rest;
        Ok(*head)
    }

    fn log_id(&mut self) -> Result<LogId, RecordError> {
        let term: Term = u64::from_be_bytes(self.take("term")?);
        let index = u64::from_be_bytes(self.take("index")?);
        Ok(log_id(term, index))
    }

    fn membership(&mut self) -> Result<MembershipAt, RecordError> {
        let log_id = self.log_id()?;
        let length = usize::from(u16::from_be_bytes(self.take("membership length")?));
        if self.bytes.len() < length {
            return Err(RecordError::Length { reason: "membership" });
        }
        let (members, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(MembershipAt { log_id, members: Members::decode(members)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::tests::members;
    use proptest::prelude::*;

    fn at(term: u64, index: u64, members: Members) -> MembershipAt {
        MembershipAt { log_id: log_id(term, index), members }
    }

    proptest! {
        #[test]
        fn every_record_roundtrips(
            snapshot in proptest::option::of((0..9u64, 0..1000u64, any::<u64>())),
            snapshot_members in proptest::option::of(members()),
            applied in proptest::option::of(members()),
        ) {
            let snapshot = snapshot.map(|(term, index, start)| SnapshotPoint {
                last_log_id: log_id(term, index),
                membership: snapshot_members.map(|m| at(term, index, m)),
                log_start_offset: Offset(start),
            });
            let record = RaftRecord { snapshot, applied_membership: applied.map(|m| at(9, 7, m)) };
            let bytes = record.encode();
            prop_assert_eq!(RaftRecord::decode(&bytes), Ok(record));
            // Every strict prefix is refused.
            for len in 0..bytes.len() {
                prop_assert!(RaftRecord::decode(&bytes[..len]).is_err());
            }
        }
    }

    #[test]
    fn what_this_version_does_not_write_is_refused() {
        let bytes = RaftRecord::default().encode();
        assert_eq!(bytes, [0, 1, 0]);
        assert_eq!(RaftRecord::decode(&[0, 2, 0]), Err(RecordError::UnknownVersion { version: 2 }));
        assert_eq!(RaftRecord::decode(&[0, 1, 8]), Err(RecordError::UnknownFlags { flags: 8 }));
        // A snapshot membership without a snapshot.
        assert_eq!(RaftRecord::decode(&[0, 1, 2]), Err(RecordError::UnknownFlags { flags: 2 }));
        assert!(matches!(RaftRecord::decode(&[0, 1, 0, 0]), Err(RecordError::Length { .. })));
    }
}
