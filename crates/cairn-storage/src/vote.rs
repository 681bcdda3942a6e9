//! The durable Raft vote of a partition replica: the `raft-vote` file of its directory (RFC 0003
//! §2, "The durable vote").
//!
//! Raft's safety rests on a node never voting twice in a term, so a vote must be on disk before
//! the node answers with it: [`VoteFile::save_vote`] returns only after `fdatasync`. The commit
//! index saved with it ([`VoteFile::save_committed`]) is a hint that shortens re-applying after a
//! restart; it is written without a sync and may be lost in a crash.
//!
//! The file holds two fixed slots that alternate (`crate::slots`), so a write torn by a crash
//! damages one slot only. A write never goes to the *anchor*, the slot known to hold the newest
//! durable vote: `save_committed` overwrites the other slot again and again, and a `save_vote`
//! writes the other slot and syncs it, which makes it the anchor. So after a crash the newest
//! valid slot holds the last synced vote or a newer one; a torn newer one falls back to the
//! anchor, which was never answered over. After a process crash the newest slot may still be
//! only in the page cache (a vote whose fsync failed, a commit index), so opening syncs the
//! file before it returns what it read: the vote it returns is one a crash cannot take back.
//!
//! A write never reuses a sequence number, not even one only a torn write left behind: the
//! next sequence is one above the highest sequence *field* of the file, valid slot or not. A
//! write torn short keeps the tail of what the slot held; were its number that of the complete
//! write still under the tail, the two would rebuild that older state exactly, with a valid
//! checksum and a sequence above the anchor (a failed save, a reopen that reads the anchor, then
//! a save torn again: the file would go back to a state from before that reopen). With every
//! write above the slot's sequence field, each change raises that field, so a slot reads valid
//! only as the last complete write to it, untouched since.
//!
//! The file is created by the first save, atomically (`crate::atomic`): a missing file is "no
//! vote yet", and a file with no valid slot is [`Error::Corruption`]. The caller keeps that
//! replica offline: guessing a vote could vote twice in a term.
//!
//! Slot 0 is at byte 0 and slot 1 at byte 4096, so the two never share a disk sector. Slot
//! layout, big-endian, 52 bytes: `magic u32 ("CARV"), sequence u64, version u16, flags u16,
//! term u64, voted_for u64, committed_term u64, committed_index u64, crc32c u32`. Flags: bit 0
//! `voted_for` is set, bit 1 the vote is committed (this node's leadership was granted), bit 2
//! the committed log id is set; every other bit, and every field a flag leaves unset, is zero.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::atomic;
use crate::disk::{Disk, DiskFile, child};
use crate::error::{Error, Result, io_error, io_or_no_space};
use crate::slots::{self, Slot, SlotFormat};

/// File name of the vote.
pub(crate) const FILE_NAME: &str = "raft-vote";
const FORMAT: SlotFormat =
    SlotFormat { magic: 0x4341_5256 /* "CARV" */, payload_bytes: PAYLOAD_BYTES, stride: 4096 };
/// The only format version written and read.
const VERSION: u16 = 1;
/// Version, flags, term, voted_for, committed term, committed index.
const PAYLOAD_BYTES: usize = 2 + 2 + 4 * 8;
const FLAG_VOTED_FOR: u16 = 1;
const FLAG_COMMITTED: u16 = 2;
const FLAG_LOG_ID: u16 = 4;

/// A Raft vote as stored: openraft's `Vote` with a standard leader id, in plain types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StoredVote {
    /// The term voted in.
    pub term: u64,
    /// The candidate voted for in `term`, if any.
    pub voted_for: Option<u64>,
    /// Whether a quorum granted the vote: the candidate is the elected leader of `term`.
    pub committed: bool,
}

/// A Raft log id as stored: the term and index of an entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoredLogId {
    /// Term of the entry (the leader epoch of its batch).
    pub term: u64,
    /// Raft index of the entry.
    pub index: u64,
}

/// What one slot holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct VoteState {
    vote: StoredVote,
    committed: Option<StoredLogId>,
}

/// The open `raft-vote` file of one Raft group's directory; see the module docs.
pub struct VoteFile<D: Disk> {
    disk: D,
    /// The group's directory; exists, and its name is durable (the log's open makes it so).
    dir: PathBuf,
    /// The file, once it exists: the first save creates it.
    file: Option<Arc<D::File>>,
    /// The state of the newest slot read or written; `None` while there is no file.
    state: Option<VoteState>,
    /// The highest sequence number in the file, valid slot or not (a torn write leaves its
    /// number behind); the next write uses the one above. See the module docs.
    sequence: u64,
    /// The slot holding the newest durable state; writes go to the other one.
    anchor: usize,
    /// The slot written by `save_committed` since the last sync, if any.
    unsynced: Option<usize>,
    /// Set by an IO failure after which the file's durable state is unknown (fail-stop).
    poisoned: bool,
}

impl<D: Disk> VoteFile<D> {
    /// Opens the vote file of the Raft group in `dir` and returns the newest vote in it: `None`
    /// if there is none yet (no file). Writes nothing; syncs the file if it exists (see the
    /// module docs: nearly free when nothing in it is unsynced).
    ///
    /// # Errors
    /// - [`Error::Corruption`]: the file has no valid slot, or its newest slot is of an unknown
    ///   format version or inconsistent. Keep the replica offline.
    /// - [`Error::Io`]: opening, reading or syncing failed.
    pub fn open(disk: D, dir: impl Into<PathBuf>) -> Result<(VoteFile<D>, Option<StoredVote>)> {
        let dir = dir.into();
        let path = child(&dir, FILE_NAME);
        let mut vote_file = VoteFile {
            disk,
            dir,
            file: None,
            state: None,
            sequence: 0,
            anchor: 0,
            unsynced: None,
            poisoned: false,
        };
        match vote_file.disk.open(&path) {
            Ok(file) => {
                let (slot, state) = newest_state(&*file, &path)?;
                let sequence = FORMAT.highest_sequence_field(&*file, &path)?;
                file.sync_data().map_err(io_error("fsync", &path))?;
                vote_file.file = Some(file);
                vote_file.state = Some(state);
                vote_file.sequence = sequence.max(slot.sequence);
                vote_file.anchor = slot.index;
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error("open", &path)(error)),
        }
        let vote = vote_file.vote();
        Ok((vote_file, vote))
    }

    /// The newest vote saved or read; `None` before the first.
    #[must_use]
    pub fn vote(&self) -> Option<StoredVote> {
        self.state.map(|state| state.vote)
    }

    /// The newest committed log id saved or read (openraft's `read_committed`).
    #[must_use]
    pub fn committed(&self) -> Option<StoredLogId> {
        self.state.and_then(|state| state.committed)
    }

    /// Saves `vote` (with the committed log id kept) and makes it durable before returning:
    /// openraft answers no vote before it is on disk.
    ///
    /// # Errors
    /// - [`Error::NoSpace`]: the disk is full; the vote was not saved, the last durable one is
    ///   intact (an unsynced commit index may be gone), and a retry may succeed.
    /// - [`Error::Io`], then [`Error::Poisoned`] on every later call: whether the vote is durable
    ///   is unknown. Stop the group; reopening reads the old or the new vote.
    /// - [`Error::Corruption`]: a damaged sequence field holds the highest sequence number, so
    ///   no write can go above it; nothing was written.
    pub fn save_vote(&mut self, vote: StoredVote) -> Result<()> {
        let committed = self.committed();
        self.save(VoteState { vote, committed }, true)
    }

    /// Saves the committed log id with the current vote, without syncing: a later
    /// [`VoteFile::save_vote`] or [`VoteFile::sync`] makes it durable, and a crash before may
    /// lose it (never the vote). The caller clamps it to its locally flushed log id, so a restart
    /// never finds a commit above its own log. Before any vote, it is saved with the zero vote
    /// (term 0, no candidate), which reads back as that vote, and this first save is synced.
    ///
    /// # Errors
    /// As [`VoteFile::save_vote`].
    pub fn save_committed(&mut self, committed: Option<StoredLogId>) -> Result<()> {
        let vote = self.vote().unwrap_or_default();
        self.save(VoteState { vote, committed }, false)
    }

    /// Makes the last save durable (clean shutdown, or with the log's flush). Nothing to do if
    /// it already is.
    ///
    /// # Errors
    /// [`Error::Io`], then [`Error::Poisoned`] on every later call.
    pub fn sync(&mut self) -> Result<()> {
        self.check_poisoned()?;
        let (Some(file), Some(slot)) = (&self.file, self.unsynced) else { return Ok(()) };
        let result = file.sync_data().map_err(io_error("fsync", &self.path()));
        self.poisoned = result.is_err();
        result?;
        self.anchor = slot;
        self.unsynced = None;
        Ok(())
    }

    fn save(&mut self, state: VoteState, durable: bool) -> Result<()> {
        self.check_poisoned()?;
        let result = match &self.file {
            None => self.create(state),
            Some(file) => {
                let file = Arc::clone(file);
                self.write_slot(&*file, state)
            }
        };
        match result {
            Ok(()) if durable => self.sync(),
            Ok(()) => Ok(()),
            Err(Failure { error, harmless }) => {
                self.poisoned = !harmless;
                Err(error)
            }
        }
    }

    /// Creates the file with `state` in slot 0 and slot 1 empty, durably.
    fn create(&mut self, state: VoteState) -> Result<(), Failure> {
        let mut bytes = vec![0; usize::try_from(FORMAT.file_bytes()).expect("a few KiB")];
        let slot = FORMAT.encode(1, &encode(state));
        bytes[..slot.len()].copy_from_slice(&slot);
        atomic::replace(&self.disk, &self.dir, FILE_NAME, &bytes)
            .map_err(|failed| Failure { error: failed.error, harmless: failed.old_intact })?;
        let path = self.path();
        let file = self.disk.open(&path).map_err(|e| Failure::fatal(io_error("open", &path)(e)))?;
        self.file = Some(file);
        self.state = Some(state);
        self.sequence = 1;
        self.anchor = 0;
        self.unsynced = None;
        Ok(())
    }

    /// Writes `state` into the slot that is not the anchor, without syncing it.
    fn write_slot(&mut self, file: &D::File, state: VoteState) -> Result<(), Failure> {
        let path = self.path();
        let slot = 1 - self.anchor;
        let Some(sequence) = self.sequence.checked_add(1) else {
            let reason = "the sequence numbers are exhausted".to_owned();
            let error = Error::Corruption { path, position: 0, reason };
            return Err(Failure { error, harmless: true });
        };
        // Taken even if the write fails: part of it may be in the slot.
        self.sequence = sequence;
        match FORMAT.write(file, slot, sequence, &encode(state)) {
            Ok(()) => {}
            // Only the slot that is not the anchor was touched: the last durable vote is intact.
            Err(error) => {
                let error = io_or_no_space("write", &path)(error);
                let harmless = matches!(error, Error::NoSpace { .. });
                return Err(Failure { error, harmless });
            }
        }
        self.state = Some(state);
        self.unsynced = Some(slot);
        Ok(())
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned { Err(Error::Poisoned) } else { Ok(()) }
    }

    fn path(&self) -> PathBuf {
        child(&self.dir, FILE_NAME)
    }
}

/// A failed save: the error, and whether the file is known to read as before it (so the vote
/// file stays usable) or not (poisoned).
struct Failure {
    error: Error,
    harmless: bool,
}

impl Failure {
    fn fatal(error: Error) -> Failure {
        Failure { error, harmless: false }
    }
}

/// The newest valid slot of the vote file at `path` and the state it holds.
fn newest_state<F: DiskFile>(file: &F, path: &Path) -> Result<(Slot, VoteState)> {
    let corrupt =
        |reason: String| Error::Corruption { path: path.to_path_buf(), position: 0, reason };
    let slots = FORMAT.read(file, path)?;
    let newest = slots::newest(&slots).ok_or_else(|| corrupt("no valid vote slot".to_owned()))?;
    if let [Some(a), Some(b)] = &slots
        && a.sequence == b.sequence
        && a.payload != b.payload
    {
        return Err(corrupt(format!("both vote slots claim sequence {}", a.sequence)));
    }
    let state = decode(&newest.payload)
        .map_err(|reason| corrupt(format!("vote slot {}: {reason}", newest.index)))?;
    Ok((newest.clone(), state))
}

fn encode(state: VoteState) -> [u8; PAYLOAD_BYTES] {
    let VoteState { vote, committed } = state;
    let mut flags = 0;
    if vote.voted_for.is_some() {
        flags |= FLAG_VOTED_FOR;
    }
    if vote.committed {
        flags |= FLAG_COMMITTED;
    }
    if committed.is_some() {
        flags |= FLAG_LOG_ID;
    }
    let log_id = committed.unwrap_or_default();
    let mut payload = [0u8; PAYLOAD_BYTES];
    payload[0..2].copy_from_slice(&VERSION.to_be_bytes());
    payload[2..4].copy_from_slice(&flags.to_be_bytes());
    payload[4..12].copy_from_slice(&vote.term.to_be_bytes());
    payload[12..20].copy_from_slice(&vote.voted_for.unwrap_or(0).to_be_bytes());
    payload[20..28].copy_from_slice(&log_id.term.to_be_bytes());
    payload[28..36].copy_from_slice(&log_id.index.to_be_bytes());
    payload
}

/// The state of a checksummed slot payload, or why it is not one this version wrote.
fn decode(payload: &[u8]) -> Result<VoteState, String> {
    let u16_at = |at: usize| u16::from_be_bytes(payload[at..at + 2].try_into().expect("2 bytes"));
    let u64_at = |at: usize| u64::from_be_bytes(payload[at..at + 8].try_into().expect("8 bytes"));
    if payload.len() != PAYLOAD_BYTES {
        return Err(format!("payload of {} bytes", payload.len()));
    }
    let (version, flags) = (u16_at(0), u16_at(2));
    if version != VERSION {
        return Err(format!("format version {version} is not supported"));
    }
    if flags & !(FLAG_VOTED_FOR | FLAG_COMMITTED | FLAG_LOG_ID) != 0 {
        return Err(format!("unknown flags {flags:#06x}"));
    }
    let present = |flag: u16, value: u64| {
        if flags & flag != 0 {
            Ok(Some(value))
        } else if value == 0 {
            Ok(None)
        } else {
            Err(format!("a field flag {flag} leaves unset is {value}"))
        }
    };
    let voted_for = present(FLAG_VOTED_FOR, u64_at(12))?;
    let log_term = present(FLAG_LOG_ID, u64_at(20))?;
    let log_index = present(FLAG_LOG_ID, u64_at(28))?;
    let vote = StoredVote { term: u64_at(4), voted_for, committed: flags & FLAG_COMMITTED != 0 };
    let committed = match (log_term, log_index) {
        (Some(term), Some(index)) => Some(StoredLogId { term, index }),
        _ => None,
    };
    Ok(VoteState { vote, committed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(voted_for: Option<u64>, committed: bool, log_id: Option<(u64, u64)>) -> VoteState {
        VoteState {
            vote: StoredVote { term: 9, voted_for, committed },
            committed: log_id.map(|(term, index)| StoredLogId { term, index }),
        }
    }

    #[test]
    fn every_state_roundtrips() {
        for voted_for in [None, Some(0), Some(3), Some(u64::MAX)] {
            for committed in [false, true] {
                for log_id in [None, Some((0, 0)), Some((9, 1 << 40))] {
                    let state = state(voted_for, committed, log_id);
                    assert_eq!(decode(&encode(state)), Ok(state));
                }
            }
        }
        assert_eq!(FORMAT.slot_bytes(), 52);
    }

    #[test]
    fn a_payload_this_version_did_not_write_is_refused() {
        let good = encode(state(Some(2), true, Some((9, 5))));
        let with = |at: usize, value: u8| {
            let mut bad = good;
            bad[at] = value;
            decode(&bad)
        };
        assert!(with(1, 2).unwrap_err().contains("version 2"));
        assert!(with(3, 0x17).unwrap_err().contains("unknown flags"));
        // voted_for unset while its field is not zero: not a canonical encoding.
        assert!(with(3, 0x06).unwrap_err().contains("unset"));
        assert!(with(3, 0x03).unwrap_err().contains("unset"));
    }
}
