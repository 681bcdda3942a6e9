//! [`RaftEntry`], openraft's log entry in cairn, and [`Proposal`], its application data.
//!
//! An entry is a log id and a payload; its stored form is one Kafka record batch ([`crate::codec`]).
//! The log id is not stored in the batch: the term is the batch's partition leader epoch and the
//! index is derived from the segment layout (RFC 0003 §3), which is why openraft's
//! `log_id_parts` exists.

use std::fmt;

use bytes::Bytes;
use cairn_types::Offset;
use cairn_types::batch::BatchHeader;
use cairn_types::limits::BATCH_BYTES_MAX;
use openraft::entry::RaftEntry as _;

use crate::membership::{Members, MembersError};
use crate::{CommittedLeaderId, LogId, Membership, Payload, Term};

/// A produced batch on its way into the Raft log: openraft's application data (`D`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// One Kafka record batch as produced (validated and recompressed by the Kafka layer); base
    /// offset and leader epoch are assigned by the leader's append.
    pub batch: Bytes,
    /// Keys the waiter of the proposing leader that the append reports offsets to (RFC 0003 §4);
    /// [`Proposal::TICKET_NONE`] in an entry read back from storage, where nobody waits.
    pub ticket: u64,
}

impl Proposal {
    /// The ticket of a proposal nobody waits for: one decoded from the log.
    pub const TICKET_NONE: u64 = 0;
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "proposal(ticket {}, {} bytes)", self.ticket, self.batch.len())
    }
}

/// A Raft log entry: a log id and a blank, normal ([`Proposal`]) or membership payload.
///
/// Two entries are equal when their log ids and payloads are: the stored batch an entry may
/// carry is its form, not its content.
#[derive(Clone, Debug)]
pub struct RaftEntry {
    /// The term of the leader that proposed it, as a committed leader id (what openraft's
    /// `log_id_parts` lends out).
    leader: CommittedLeaderId,
    /// The entry's position in the Raft log.
    index: u64,
    /// What it carries.
    payload: Payload,
    /// The batch the entry was decoded from (read from the log or received from the leader),
    /// so that it is appended again byte for byte with the follower append: a control batch's
    /// timestamp is not part of the payload, a proposal's offsets and epoch were stamped by its
    /// leader, and every replica must store identical bytes. `None` for an entry made on this
    /// node (appended with the leader append, which stamps it).
    stored: Option<Bytes>,
    /// For an entry read for apply from the log's record of recent appends, without its
    /// batch: the offset after its records.
    end_offset: Option<Offset>,
}

impl PartialEq for RaftEntry {
    fn eq(&self, other: &RaftEntry) -> bool {
        self.leader == other.leader && self.index == other.index && self.payload == other.payload
    }
}

impl RaftEntry {
    /// The entry a new leader of `term` appends first, at `index`.
    #[must_use]
    pub fn blank(term: Term, index: u64) -> RaftEntry {
        RaftEntry::new(log_id(term, index), Payload::Blank)
    }

    /// A produced batch at `index` in `term`.
    #[must_use]
    pub fn normal(term: Term, index: u64, proposal: Proposal) -> RaftEntry {
        RaftEntry::new(log_id(term, index), Payload::Normal(proposal))
    }

    /// A membership change at `index` in `term`.
    #[must_use]
    pub fn membership(term: Term, index: u64, members: &Members) -> RaftEntry {
        RaftEntry::new(log_id(term, index), Payload::Membership(members.to_membership()))
    }

    /// The term of the leader that proposed it: the Kafka leader epoch of its batch.
    #[must_use]
    pub fn term(&self) -> Term {
        self.leader.term
    }

    /// The entry's index in the Raft log.
    #[must_use]
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The proposal of a normal entry; `None` for blank and membership entries.
    #[must_use]
    pub fn proposal(&self) -> Option<&Proposal> {
        match &self.payload {
            Payload::Normal(proposal) => Some(proposal),
            Payload::Blank | Payload::Membership(_) => None,
        }
    }

    /// The membership of a membership entry, `None` for the others.
    ///
    /// # Errors
    /// [`MembersError`] if openraft put a membership cairn cannot store in the entry (none, or
    /// more than two configurations, or sets above the limit).
    pub fn members(&self) -> Result<Option<Members>, MembersError> {
        match &self.payload {
            Payload::Membership(membership) => Members::from_membership(membership).map(Some),
            Payload::Blank | Payload::Normal(_) => Ok(None),
        }
    }

    /// The round of a compaction entry (RFC 0007), `None` for the others.
    #[must_use]
    pub fn compaction(&self) -> Option<cairn_storage::CompactionRound> {
        let proposal = self.proposal()?;
        let header = BatchHeader::parse(&proposal.batch, BATCH_BYTES_MAX).ok()?;
        if !crate::codec::is_reserved(&header) {
            return None;
        }
        let round = crate::codec::compaction_round(&proposal.batch, &header).ok()?;
        Some(cairn_storage::CompactionRound { index: cairn_types::RaftIndex(self.index), ..round })
    }

    /// Whether the state machine needs the entry whole to apply it (a membership or
    /// compaction entry), not only its log id and end offset.
    #[must_use]
    pub fn applied_whole(&self) -> bool {
        matches!(self.payload, Payload::Membership(_)) || self.compaction().is_some()
    }

    /// The payload, for the codec.
    pub(crate) fn payload(&self) -> &Payload {
        &self.payload
    }

    /// The batch this entry was decoded from, if it was: an entry with one is appended as
    /// stored (the follower append), one without is made on this node (the leader append).
    pub(crate) fn stored(&self) -> Option<&Bytes> {
        self.stored.as_ref()
    }

    /// This entry, remembering the batch it was decoded from.
    /// An entry as apply needs it and no more: its log id and the offset after its records,
    /// without its batch (a blank payload; never a membership).
    pub(crate) fn applied_only(term: Term, index: u64, end_offset: Offset) -> RaftEntry {
        let mut entry = RaftEntry::blank(term, index);
        entry.end_offset = Some(end_offset);
        entry
    }

    /// The offset after the entry's records, from its stored batch or its apply form.
    pub(crate) fn end_offset(&self) -> Option<Offset> {
        if let Some(end) = self.end_offset {
            return Some(end);
        }
        let batch = self.stored.as_ref()?;
        let header = BatchHeader::parse(batch, BATCH_BYTES_MAX);
        header.ok().map(|header| header.next_offset())
    }

    pub(crate) fn with_stored(mut self, batch: Bytes) -> RaftEntry {
        self.stored = Some(batch);
        self
    }
}

/// The log id of the entry at `index` proposed in `term`.
pub(crate) fn log_id(term: Term, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term), index)
}

impl fmt::Display for RaftEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}:{}", self.leader, self.index, self.payload)
    }
}

impl openraft::entry::RaftEntry for RaftEntry {
    type CommittedLeaderId = CommittedLeaderId;
    type Payload = Payload;

    fn new(log_id: LogId, payload: Payload) -> RaftEntry {
        RaftEntry {
            leader: log_id.leader_id,
            index: log_id.index,
            payload,
            stored: None,
            end_offset: None,
        }
    }

    fn log_id_parts(&self) -> (&CommittedLeaderId, u64) {
        (&self.leader, self.index)
    }

    fn set_log_id(&mut self, new: LogId) {
        // A stored batch belongs to the old id (its epoch is the old term): forget it.
        if (self.leader, self.index) != (new.leader_id, new.index) {
            self.stored = None;
        }
        self.leader = new.leader_id;
        self.index = new.index;
    }

    fn get_membership(&self) -> Option<Membership> {
        match &self.payload {
            Payload::Membership(membership) => Some(membership.clone()),
            Payload::Blank | Payload::Normal(_) => None,
        }
    }
}
