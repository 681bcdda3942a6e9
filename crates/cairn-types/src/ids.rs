//! Identifier and position newtypes.
//!
//! Kafka puts most of these on the wire as signed integers with `-1` as "none"; inside cairn a
//! value that can be absent is an `Option`, and conversion happens at the protocol boundary.

use std::fmt;

/// The position of a record in a partition log. Offsets are dense: every record, including the
/// records of control batches, has one, and a batch covers `base..=last`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub u64);

impl Offset {
    /// The offset `n` records after this one (`self + n`).
    ///
    /// # Panics
    /// On overflow, which would take 2^64 records and means a bug upstream.
    #[must_use]
    pub fn plus(self, n: u64) -> Offset {
        Offset(self.0.checked_add(n).expect("offset overflow"))
    }

    /// Records from `earlier` up to (not including) `self`; zero if `earlier` is later.
    #[must_use]
    pub fn distance_from(self, earlier: Offset) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The position of an entry in a partition's Raft log. Every batch of a partition log is one
/// entry, so indexes are dense over batches as offsets are over records; cairn-storage derives a
/// batch's index from its segment (the segment's first index plus the batch's ordinal in it) and
/// never stores it twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RaftIndex(pub u64);

impl RaftIndex {
    /// The index `n` entries after this one (`self + n`).
    ///
    /// # Panics
    /// On overflow, which would take 2^64 entries and means a bug upstream.
    #[must_use]
    pub fn plus(self, n: u64) -> RaftIndex {
        RaftIndex(self.0.checked_add(n).expect("raft index overflow"))
    }

    /// Entries from `earlier` up to (not including) `self`; zero if `earlier` is later.
    #[must_use]
    pub fn distance_from(self, earlier: RaftIndex) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for RaftIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The epoch of the partition leader that appended a batch: Kafka's partition leader epoch, and in
/// cairn the Raft term of the entry. Stored in every batch header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaderEpoch(pub i32);

impl fmt::Display for LeaderEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A cluster member (Kafka broker id, Raft node id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An idempotent or transactional producer's id; `-1` on the wire means "none".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerId(pub i64);

impl ProducerId {
    /// The id carried by batches of producers that are neither idempotent nor transactional.
    pub const NONE: ProducerId = ProducerId(-1);
}
