//! The compaction rounds a replica has applied and not yet carried out (RFC 0007, "The
//! compaction point"), kept in the `compaction-rounds` state file so that a crash between a
//! round's apply and its end does not lose it: openraft applies nothing again after a restart.
//!
//! A round is self-contained: it names the range its map covers, its time and the topic's
//! `delete.retention.ms` as the leader saw them, so every replica carries it out alike whatever
//! its own clock and configs say. Rounds are carried out in the order applied.
//!
//! Layout (inside the checksummed state file format of `snapshot.rs`), big-endian:
//! `version u8, point u64, newest index u64 (all ones: none), count u32`, then per round `index u64, from u64, to u64,
//! time_ms i64, delete_retention_ms i64, keys u32`.

use std::collections::VecDeque;

use cairn_types::{Offset, RaftIndex};

use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::log::Log;
use crate::snapshot::{read_state_file, write_state_file};

/// File name of the rounds.
const FILE_NAME: &str = "compaction-rounds";
const VERSION: u8 = 1;
const HEADER_BYTES: usize = 1 + 8 + 8 + 4;
const ROUND_BYTES: usize = 8 * 5 + 4;
/// Rounds queued at most: a leader proposes one only after its own queue emptied, so a replica
/// far behind holds a few; past this its apply fails rather than grow the file without bound.
pub const ROUNDS_MAX: usize = 4096;

/// One compaction round, as its `compact` entry carries it (RFC 0007).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionRound {
    /// The Raft index of its entry.
    pub index: RaftIndex,
    /// The map covers `[from, to)`: the previous round's point.
    pub from: Offset,
    /// The round's point: every batch below it is cleaned.
    pub to: Offset,
    /// The leader's clock when it proposed the round: tombstones expire by it.
    pub time_ms: i64,
    /// The topic's `delete.retention.ms` then.
    pub delete_retention_ms: i64,
    /// Distinct keys in `[from, to)`: what the map must hold.
    pub keys: u32,
}

/// The rounds of a log: queued ones, oldest first, and the point of the newest applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rounds {
    pub(crate) queued: VecDeque<CompactionRound>,
    /// The `to` of the newest round applied: where the next round's map starts.
    pub(crate) point: Offset,
    /// The index of the newest round applied (queued or done).
    pub(crate) newest: Option<RaftIndex>,
}

impl Rounds {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_BYTES + self.queued.len() * ROUND_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.point.0.to_be_bytes());
        bytes.extend_from_slice(&self.newest.map_or(u64::MAX, |index| index.0).to_be_bytes());
        let count = u32::try_from(self.queued.len()).expect("at most ROUNDS_MAX");
        bytes.extend_from_slice(&count.to_be_bytes());
        for round in &self.queued {
            for field in [round.index.0, round.from.0, round.to.0] {
                bytes.extend_from_slice(&field.to_be_bytes());
            }
            bytes.extend_from_slice(&round.time_ms.to_be_bytes());
            bytes.extend_from_slice(&round.delete_retention_ms.to_be_bytes());
            bytes.extend_from_slice(&round.keys.to_be_bytes());
        }
        bytes
    }

    fn decode(bytes: &[u8]) -> std::result::Result<Rounds, String> {
        let mut at = 0;
        let mut take = |n: usize| -> std::result::Result<&[u8], String> {
            let field = bytes.get(at..at + n).ok_or_else(|| format!("cut at byte {at}"))?;
            at += n;
            Ok(field)
        };
        let u64_at = |field: &[u8]| u64::from_be_bytes(field.try_into().expect("8 bytes"));
        if take(1)? != [VERSION] {
            return Err("unknown version".into());
        }
        let point = Offset(u64_at(take(8)?));
        let newest = Some(u64_at(take(8)?)).filter(|&index| index != u64::MAX).map(RaftIndex);
        let count = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        if count > ROUNDS_MAX {
            return Err(format!("{count} rounds"));
        }
        let mut queued = VecDeque::with_capacity(count);
        for _ in 0..count {
            let (index, from, to) = (u64_at(take(8)?), u64_at(take(8)?), u64_at(take(8)?));
            let time_ms = i64::from_be_bytes(take(8)?.try_into().expect("8 bytes"));
            let delete_retention_ms = i64::from_be_bytes(take(8)?.try_into().expect("8 bytes"));
            let keys = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes"));
            let (index, from, to) = (RaftIndex(index), Offset(from), Offset(to));
            queued.push_back(CompactionRound {
                index,
                from,
                to,
                time_ms,
                delete_retention_ms,
                keys,
            });
        }
        if at != bytes.len() {
            return Err("trailing bytes".into());
        }
        Ok(Rounds { queued, point, newest })
    }

    /// The rounds stored in `dir`; none if it has no file.
    pub(crate) fn read<D: Disk>(disk: &D, dir: &std::path::Path) -> Result<Rounds> {
        let Some(bytes) = read_state_file(disk, dir, FILE_NAME, Self::bytes_max())? else {
            return Ok(Rounds::default());
        };
        Rounds::decode(&bytes).map_err(|reason| Error::Corruption {
            path: crate::disk::child(dir, FILE_NAME),
            position: 0,
            reason: format!("compaction rounds: {reason}"),
        })
    }

    fn bytes_max() -> usize {
        HEADER_BYTES + ROUNDS_MAX * ROUND_BYTES
    }
}

impl<D: Disk> Log<D> {
    /// Queues `round`, applied, durably (module docs); a round at or below the newest applied
    /// index is one applied before (openraft applying again after a snapshot): ignored.
    ///
    /// # Errors
    /// [`Error::Rewrite`] if [`ROUNDS_MAX`] are queued; the state file's write errors.
    pub fn queue_round(&mut self, round: CompactionRound) -> Result<()> {
        if self.rounds.newest.is_some_and(|newest| newest >= round.index) {
            return Ok(());
        }
        if self.rounds.queued.len() == ROUNDS_MAX {
            return Err(Error::Rewrite(format!("{ROUNDS_MAX} compaction rounds queued")));
        }
        let mut rounds = self.rounds.clone();
        rounds.queued.push_back(round);
        rounds.point = round.to;
        rounds.newest = Some(round.index);
        self.write_rounds(rounds)
    }

    /// The oldest round queued and not carried out.
    #[must_use]
    pub fn next_round(&self) -> Option<CompactionRound> {
        self.rounds.queued.front().copied()
    }

    /// The point of the newest round applied: where the next round's map starts.
    #[must_use]
    pub fn compaction_point(&self) -> Offset {
        self.rounds.point
    }

    /// Records the round of `index`, the oldest queued, as carried out, durably.
    ///
    /// # Errors
    /// The state file's write errors.
    pub fn finish_round(&mut self, index: RaftIndex) -> Result<()> {
        if self.rounds.queued.front().is_none_or(|round| round.index != index) {
            return Ok(());
        }
        let mut rounds = self.rounds.clone();
        rounds.queued.pop_front();
        self.write_rounds(rounds)
    }

    fn write_rounds(&mut self, rounds: Rounds) -> Result<()> {
        let bytes = rounds.encode();
        write_state_file(&self.disk, &self.dir, FILE_NAME, &bytes, Rounds::bytes_max())?;
        self.rounds = rounds;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_round_trip() {
        let round = CompactionRound {
            index: RaftIndex(9),
            from: Offset(3),
            to: Offset(70),
            time_ms: -5,
            delete_retention_ms: 86_400_000,
            keys: 12,
        };
        let rounds = Rounds {
            queued: VecDeque::from([round, CompactionRound { index: RaftIndex(12), ..round }]),
            point: Offset(70),
            newest: Some(RaftIndex(12)),
        };
        assert_eq!(Rounds::decode(&rounds.encode()), Ok(rounds.clone()));
        assert_eq!(Rounds::decode(&Rounds::default().encode()), Ok(Rounds::default()));
        let bytes = rounds.encode();
        assert!(Rounds::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
