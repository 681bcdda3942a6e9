//! [`Members`]: a Raft membership by node ids alone, and its versioned encoding, the value of
//! a membership control batch (RFC 0003 §3: type 101).
//!
//! ```text
//! version: u8 (= 0)
//! config_count: u8                     1..=RAFT_MEMBERSHIP_CONFIGS_MAX (2 = joint consensus)
//! config_count × { voter_count: u16, voter_count × node_id: u64 }   ids strictly increasing
//! learner_count: u16, learner_count × node_id: u64                  ids strictly increasing
//! ```
//!
//! Big-endian, nothing after the learners. The encoding is canonical (sorted, no duplicates), so
//! every replica writes the same bytes for the same membership. Decoding reads untrusted bytes:
//! every count is checked against the bytes left before anything is read for it.

use std::collections::BTreeSet;

use cairn_types::limits::{RAFT_MEMBERSHIP_CONFIGS_MAX, RAFT_MEMBERSHIP_NODES_MAX};

use crate::{Membership, RaftNodeId};

/// The only version of the encoding written; a reader refuses any other.
const VERSION: u8 = 0;

/// Bytes of one node id.
const NODE_ID_BYTES: usize = 8;

/// Why a membership is not valid, or its bytes do not encode one. In a stored batch whose CRC
/// held, it is a writer's bug: report corruption, do not retry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembersError {
    /// An encoding version this build does not know.
    #[error("unknown membership encoding version {version}")]
    UnknownVersion {
        /// The version byte.
        version: u8,
    },
    /// The bytes end inside a field.
    #[error("membership truncated: need {needed} more bytes, have {available}")]
    Truncated {
        /// Bytes the next field needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// No configuration, or more than a joint consensus holds.
    #[error("membership of {count} configurations (1 to {max})", max = RAFT_MEMBERSHIP_CONFIGS_MAX)]
    ConfigCount {
        /// Configurations announced.
        count: usize,
    },
    /// A configuration without voters: no quorum could ever form.
    #[error("membership configuration {config} has no voters")]
    EmptyConfig {
        /// Position of the configuration.
        config: usize,
    },
    /// More node ids in one set than [`RAFT_MEMBERSHIP_NODES_MAX`].
    #[error("membership set of {count} nodes (at most {max})", max = RAFT_MEMBERSHIP_NODES_MAX)]
    TooManyNodes {
        /// Node ids announced.
        count: usize,
    },
    /// Node ids not in strictly increasing order (or repeated): not the canonical encoding.
    #[error("membership node ids not strictly increasing at node {node}")]
    NotIncreasing {
        /// The node id out of order.
        node: RaftNodeId,
    },
    /// A node both learner and voter.
    #[error("node {node} is both a voter and a learner")]
    LearnerIsVoter {
        /// The node.
        node: RaftNodeId,
    },
    /// Bytes after the learners.
    #[error("{bytes} bytes after the membership")]
    TrailingBytes {
        /// How many.
        bytes: usize,
    },
}

/// A Raft membership by node ids: one voter configuration, or two during a joint-consensus
/// change, and the learners (nodes that receive the log but do not vote). Always valid: every
/// way to make one checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    /// The voter configurations, in openraft's order (old, then new, while joint).
    configs: Vec<BTreeSet<RaftNodeId>>,
    /// Nodes that are in no configuration.
    learners: BTreeSet<RaftNodeId>,
}

impl Members {
    /// A membership of `configs` (1 or 2, none empty) and `learners` (none a voter).
    ///
    /// # Errors
    /// [`MembersError`] naming the first rule broken.
    pub fn new(
        configs: Vec<BTreeSet<RaftNodeId>>,
        learners: BTreeSet<RaftNodeId>,
    ) -> Result<Members, MembersError> {
        if configs.is_empty() || configs.len() > RAFT_MEMBERSHIP_CONFIGS_MAX {
            return Err(MembersError::ConfigCount { count: configs.len() });
        }
        for (position, config) in configs.iter().enumerate() {
            if config.is_empty() {
                return Err(MembersError::EmptyConfig { config: position });
            }
            check_set_size(config.len())?;
        }
        check_set_size(learners.len())?;
        if let Some(&node) = learners.iter().find(|node| configs.iter().any(|c| c.contains(node))) {
            return Err(MembersError::LearnerIsVoter { node });
        }
        Ok(Members { configs, learners })
    }

    /// The voter configurations.
    #[must_use]
    pub fn configs(&self) -> &[BTreeSet<RaftNodeId>] {
        &self.configs
    }

    /// The learners.
    #[must_use]
    pub fn learners(&self) -> &BTreeSet<RaftNodeId> {
        &self.learners
    }

    /// The versioned encoding (module docs).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let nodes = self.configs.iter().map(BTreeSet::len).sum::<usize>() + self.learners.len();
        let mut out = Vec::with_capacity(2 + 2 * (self.configs.len() + 1) + nodes * NODE_ID_BYTES);
        out.push(VERSION);
        // `new` bounds both counts: at most 2 configurations, sets below u16::MAX.
        out.push(self.configs.len() as u8);
        for config in &self.configs {
            put_set(&mut out, config);
        }
        put_set(&mut out, &self.learners);
        out
    }

    /// Decodes [`Members::encode`]'s bytes.
    ///
    /// # Errors
    /// [`MembersError`] for anything but the canonical encoding of a valid membership.
    pub fn decode(bytes: &[u8]) -> Result<Members, MembersError> {
        let mut reader = Reader { rest: bytes };
        let version = reader.u8()?;
        if version != VERSION {
            return Err(MembersError::UnknownVersion { version });
        }
        let count = usize::from(reader.u8()?);
        if count == 0 || count > RAFT_MEMBERSHIP_CONFIGS_MAX {
            return Err(MembersError::ConfigCount { count });
        }
        let mut configs = Vec::with_capacity(count);
        for _ in 0..count {
            configs.push(reader.set()?);
        }
        let learners = reader.set()?;
        if !reader.rest.is_empty() {
            return Err(MembersError::TrailingBytes { bytes: reader.rest.len() });
        }
        Members::new(configs, learners)
    }

    /// openraft's membership of these nodes (each an `EmptyNode`).
    pub(crate) fn to_membership(&self) -> Membership {
        Membership::new_with_defaults(self.configs.clone(), self.learners.iter().copied())
    }

    /// These nodes of openraft's `membership`.
    ///
    /// # Errors
    /// [`MembersError`] if openraft holds a membership cairn cannot store (none, or more than
    /// two configurations, or sets above [`RAFT_MEMBERSHIP_NODES_MAX`]).
    pub(crate) fn from_membership(membership: &Membership) -> Result<Members, MembersError> {
        Members::new(membership.get_joint_config().clone(), membership.learner_ids().collect())
    }
}

fn check_set_size(count: usize) -> Result<(), MembersError> {
    if count > RAFT_MEMBERSHIP_NODES_MAX {
        return Err(MembersError::TooManyNodes { count });
    }
    Ok(())
}

fn put_set(out: &mut Vec<u8>, set: &BTreeSet<RaftNodeId>) {
    // `Members::new` bounds every set by RAFT_MEMBERSHIP_NODES_MAX, below u16::MAX.
    out.extend_from_slice(&(set.len() as u16).to_be_bytes());
    for node in set {
        out.extend_from_slice(&node.to_be_bytes());
    }
}

/// A cursor over untrusted bytes.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, needed: usize) -> Result<&'a [u8], MembersError> {
        if self.rest.len() < needed {
            return Err(MembersError::Truncated { needed, available: self.rest.len() });
        }
        let (taken, rest) = self.rest.split_at(needed);
        self.rest = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, MembersError> {
        Ok(self.take(1)?[0])
    }

    /// A count and that many strictly increasing node ids; the count is checked against the
    /// bytes left before any id is read.
    fn set(&mut self) -> Result<BTreeSet<RaftNodeId>, MembersError> {
        let count = self.take(2)?;
        let count = usize::from(u16::from_be_bytes([count[0], count[1]]));
        check_set_size(count)?;
        let ids = self.take(count * NODE_ID_BYTES)?;
        let mut set = BTreeSet::new();
        for id in ids.chunks_exact(NODE_ID_BYTES) {
            let mut node = [0; NODE_ID_BYTES];
            node.copy_from_slice(id);
            let node = RaftNodeId::from_be_bytes(node);
            if set.last().is_some_and(|&last| last >= node) {
                return Err(MembersError::NotIncreasing { node });
            }
            set.insert(node);
        }
        Ok(set)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    /// Valid memberships: one or two non-empty configurations and disjoint learners.
    pub(crate) fn members() -> impl Strategy<Value = Members> {
        let node_set = || proptest::collection::btree_set(0u64..16, 1..6);
        (
            proptest::collection::vec(node_set(), 1..=2),
            proptest::collection::btree_set(0u64..32, 0..4),
        )
            .prop_map(|(configs, learners)| {
                let learners = learners
                    .into_iter()
                    .filter(|l| !configs.iter().any(|c| c.contains(l)))
                    .collect();
                Members::new(configs, learners).unwrap()
            })
    }

    #[test]
    fn a_three_voter_encoding_byte_by_byte() {
        let members = Members::new(vec![set(&[1, 2, 3])], set(&[9])).unwrap();
        let mut expected = vec![0, 1, 0, 3];
        for id in [1u64, 2, 3] {
            expected.extend_from_slice(&id.to_be_bytes());
        }
        expected.extend_from_slice(&[0, 1]);
        expected.extend_from_slice(&9u64.to_be_bytes());
        assert_eq!(members.encode(), expected);
    }

    #[test]
    fn invalid_memberships_are_refused() {
        assert_eq!(Members::new(vec![], set(&[])), Err(MembersError::ConfigCount { count: 0 }));
        let three = vec![set(&[1]), set(&[2]), set(&[3])];
        assert_eq!(Members::new(three, set(&[])), Err(MembersError::ConfigCount { count: 3 }));
        let empty = vec![set(&[1]), set(&[])];
        assert_eq!(Members::new(empty, set(&[])), Err(MembersError::EmptyConfig { config: 1 }));
        let both = Members::new(vec![set(&[1, 2])], set(&[2, 5]));
        assert_eq!(both, Err(MembersError::LearnerIsVoter { node: 2 }));
        let many: BTreeSet<u64> = (0..=RAFT_MEMBERSHIP_NODES_MAX as u64).collect();
        let count = many.len();
        assert_eq!(Members::new(vec![many], set(&[])), Err(MembersError::TooManyNodes { count }));
    }

    #[test]
    fn malformed_encodings_are_refused() {
        let check = |bytes: &[u8], expected: MembersError| {
            assert_eq!(Members::decode(bytes), Err(expected), "{bytes:?}");
        };
        check(&[], MembersError::Truncated { needed: 1, available: 0 });
        check(&[1, 1], MembersError::UnknownVersion { version: 1 });
        check(&[0, 0], MembersError::ConfigCount { count: 0 });
        check(&[0, 3], MembersError::ConfigCount { count: 3 });
        // A count far beyond the bytes present is refused before anything is read for it.
        check(&[0, 1, 0x0f, 0xff], MembersError::Truncated { needed: 4095 * 8, available: 0 });
        check(&[0, 1, 0xff, 0xff], MembersError::TooManyNodes { count: 0xffff });
        let mut repeated = vec![0, 1, 0, 2];
        repeated.extend_from_slice(&7u64.to_be_bytes());
        repeated.extend_from_slice(&7u64.to_be_bytes());
        repeated.extend_from_slice(&[0, 0]);
        check(&repeated, MembersError::NotIncreasing { node: 7 });
        let mut trailing = Members::new(vec![set(&[1])], set(&[])).unwrap().encode();
        trailing.push(0);
        check(&trailing, MembersError::TrailingBytes { bytes: 1 });
        let mut empty = vec![0, 1, 0, 0, 0, 0];
        check(&empty, MembersError::EmptyConfig { config: 0 });
        empty[5] = 1;
        check(&empty, MembersError::Truncated { needed: 8, available: 0 });
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_the_identity(members in members()) {
            prop_assert_eq!(Members::decode(&members.encode()), Ok(members.clone()));
            let membership = members.to_membership();
            prop_assert_eq!(Members::from_membership(&membership), Ok(members));
        }

        #[test]
        fn arbitrary_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            // Whatever decodes is canonical: it encodes back to the same bytes.
            if let Ok(members) = Members::decode(&bytes) {
                prop_assert_eq!(members.encode(), bytes);
            }
        }
    }
}
