//! The `core-state` file: the consistent core's snapshot on disk, the encoded [`CoreState`] and
//! the membership as of its last entry, kept by cairn-storage as one checksummed file replaced
//! atomically ([`cairn_storage::write_state_file`]).
//!
//! ```text
//! version: u8 (= 1)
//! membership: u8 (0: none, 1: present)
//! [1] term: u64, index: u64, length: u32, Members encoding
//! state: the rest, CoreState::encode_snapshot (its applied position is the snapshot's last
//!        log id)
//! ```
//!
//! Big-endian. Decoding reads bytes from disk or from a peer: every length is checked against
//! the bytes left, and the state is decoded by cairn-meta's checking decoder.

use std::path::Path;

use cairn_meta::CoreState;
use cairn_storage::Disk;
use cairn_types::limits::CORE_SNAPSHOT_BYTES_MAX;

use crate::LogId;
use crate::entry::log_id;
use crate::group::StoreError;
use crate::membership::Members;
use crate::record::MembershipAt;

/// The file's name in the core's directory.
pub(crate) const FILE_NAME: &str = "core-state";
/// The only version written and read.
const VERSION: u8 = 1;
/// Bytes of the header and the largest membership beside the state.
const OVERHEAD_BYTES_MAX: usize = 64 * 1024;
/// Largest file content written or read.
const FILE_BYTES_MAX: usize = CORE_SNAPSHOT_BYTES_MAX + OVERHEAD_BYTES_MAX;

/// A snapshot of the core as stored: the membership as of its last entry and the state.
pub(crate) struct StoredCore {
    /// The membership as of the state's applied position, if any entry carried one.
    pub(crate) membership: Option<MembershipAt>,
    /// The state, applied up to the snapshot's last log id.
    pub(crate) state: CoreState,
}

impl StoredCore {
    /// The snapshot's last log id: the state's applied position.
    pub(crate) fn last_log_id(&self) -> Option<LogId> {
        self.state.applied().map(|at| log_id(at.term, at.index))
    }
}

/// The file's content for `membership` and the encoded state `state`.
pub(crate) fn encode(membership: Option<&MembershipAt>, state: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(state.len() + 64);
    out.push(VERSION);
    match membership {
        None => out.push(0),
        Some(at) => {
            out.push(1);
            out.extend_from_slice(&at.log_id.leader_id.term.to_be_bytes());
            out.extend_from_slice(&at.log_id.index.to_be_bytes());
            let members = at.members.encode();
            // RAFT_MEMBERSHIP_NODES_MAX keeps a membership far below u32::MAX bytes.
            out.extend_from_slice(&(members.len() as u32).to_be_bytes());
            out.extend_from_slice(&members);
        }
    }
    out.extend_from_slice(state);
    out
}

/// Decodes a file's content.
///
/// # Errors
/// [`StoreError::Invalid`] for anything [`encode`] does not write, or a state cairn-meta
/// refuses.
pub(crate) fn decode(bytes: &[u8]) -> Result<StoredCore, StoreError> {
    let bad = |reason: String| StoreError::Invalid(format!("core-state: {reason}"));
    let (&version, rest) = bytes.split_first().ok_or_else(|| bad("empty".into()))?;
    if version != VERSION {
        return Err(bad(format!("unknown version {version}")));
    }
    let (&flag, mut rest) = rest.split_first().ok_or_else(|| bad("no membership flag".into()))?;
    let membership = match flag {
        0 => None,
        1 => {
            let mut take = |n: usize| -> Result<&[u8], StoreError> {
                if rest.len() < n {
                    return Err(bad(format!("{} bytes left where {n} are needed", rest.len())));
                }
                let (head, tail) = rest.split_at(n);
                rest = tail;
                Ok(head)
            };
            let term = u64::from_be_bytes(take(8)?.try_into().expect("8 bytes"));
            let index = u64::from_be_bytes(take(8)?.try_into().expect("8 bytes"));
            let length = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            let members = Members::decode(take(length)?)
                .map_err(|error| bad(format!("membership: {error}")))?;
            Some(MembershipAt { log_id: log_id(term, index), members })
        }
        other => return Err(bad(format!("unknown membership flag {other}"))),
    };
    let state = CoreState::decode_snapshot(rest).map_err(|error| bad(format!("state: {error}")))?;
    Ok(StoredCore { membership, state })
}

/// Reads the core's snapshot from `dir`: `None` if it has none yet.
///
/// # Errors
/// [`StoreError`] if the file cannot be read or is damaged: the core stays down.
pub(crate) fn read<D: Disk>(disk: &D, dir: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(cairn_storage::read_state_file(disk, dir, FILE_NAME, FILE_BYTES_MAX)?)
}

/// Durably replaces the core's snapshot in `dir` with `bytes` (an [`encode`]d file).
///
/// # Errors
/// [`StoreError`] if it cannot be written (too large, or the disk failed).
pub(crate) fn write<D: Disk>(disk: &D, dir: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    Ok(cairn_storage::write_state_file(disk, dir, FILE_NAME, bytes, FILE_BYTES_MAX)?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn a_file_round_trips_and_damage_is_refused() {
        let members = Members::new(vec![BTreeSet::from([1, 2, 3])], BTreeSet::new()).unwrap();
        let at = MembershipAt { log_id: log_id(2, 7), members };
        let mut state = CoreState::default();
        state.set_applied(cairn_meta::LogPosition { term: 2, index: 9 });
        let encoded_state = state.encode_snapshot().unwrap();
        let bytes = encode(Some(&at), &encoded_state);
        let stored = decode(&bytes).unwrap();
        assert_eq!(stored.membership, Some(at));
        assert_eq!(stored.state, state);
        assert_eq!(stored.last_log_id(), Some(log_id(2, 9)));

        let without = decode(&encode(None, &encoded_state)).unwrap();
        assert_eq!(without.membership, None);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "a file cut at {cut} is refused");
        }
        let mut flag = bytes.clone();
        flag[1] = 2;
        assert!(decode(&flag).is_err());
        let mut version = bytes;
        version[0] = 2;
        assert!(decode(&version).is_err());
    }
}
