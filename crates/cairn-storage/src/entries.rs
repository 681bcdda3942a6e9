//! The log seen as a Raft log. Every batch is one entry, whose index is derived from the segment
//! layout (the segment's first index, in its name, plus the batch's ordinal in the segment) and
//! stored nowhere else. Here: lookups by index, the verified read of an index range, and the
//! cuts the Raft log store makes (truncate after an entry, purge through one, reset to a snapshot).

use cairn_types::batch::Frames;
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{LeaderEpoch, Offset, RaftIndex};

use crate::disk::{Disk, child};
use crate::epochs::Epochs;
use crate::error::{Error, Result, io_error};
use crate::log::Log;
use crate::segment::{self, DATA_SUFFIX, INDEX_SUFFIX, Segment, SegmentFiles, Walked};

/// One entry of the log as Raft sees it: its index and term (the batch's leader epoch), and the
/// offsets it covers, for the conversion of a commit index to a high watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    /// The entry's Raft index.
    pub index: RaftIndex,
    /// Offset of the batch's first record.
    pub base_offset: Offset,
    /// Offset after the batch's last record.
    pub next_offset: Offset,
    /// The batch's partition leader epoch: the entry's term.
    pub epoch: LeaderEpoch,
}

impl EntryHeader {
    fn of(walked: &Walked) -> EntryHeader {
        EntryHeader {
            index: walked.index,
            base_offset: walked.header.base_offset,
            next_offset: walked.header.next_offset(),
            epoch: walked.header.partition_leader_epoch,
        }
    }
}

impl<D: Disk> Log<D> {
    /// Position in `segments` of the segment holding `index` (`start <= index < next`).
    fn segment_of_index(&self, index: RaftIndex) -> usize {
        self.segments.partition_point(|s| s.first_index <= index).saturating_sub(1)
    }

    fn check_index(&self, index: RaftIndex) -> Result<()> {
        let (start, end) = (self.start_index(), self.next_index());
        if index < start || index > end {
            return Err(Error::IndexOutOfRange { index, start, end });
        }
        Ok(())
    }

    /// The entry at `index`, or `None` if the log does not hold it (below
    /// [`Log::start_index`], at or past [`Log::next_index`]). Reads headers only: binary search
    /// of the segments by first index, the index entry at or before it, a walk counting batches.
    ///
    /// # Errors
    /// [`Error::Corruption`] if the headers walked are damaged or disagree with the index;
    /// [`Error::Io`].
    pub fn entry_at(&self, index: RaftIndex) -> Result<Option<EntryHeader>> {
        if index < self.start_index() || index >= self.next_index() {
            return Ok(None);
        }
        let segment = &self.segments[self.segment_of_index(index)];
        Ok(Some(EntryHeader::of(&segment.entry(index, &self.epochs)?)))
    }

    /// The offset where entry `index` starts; [`Log::next_offset`] for [`Log::next_index`].
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] outside `[start_index, next_index]`; as [`Log::entry_at`].
    pub fn offset_of(&self, index: RaftIndex) -> Result<Offset> {
        self.check_index(index)?;
        if index == self.next_index() {
            return Ok(self.next_offset());
        }
        let segment = &self.segments[self.segment_of_index(index)];
        Ok(segment.entry(index, &self.epochs)?.header.base_offset)
    }

    /// The index of the entry starting at `offset`; [`Log::next_index`] for
    /// [`Log::next_offset`].
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] outside `[start_offset, next_offset]`;
    /// [`Error::NotBatchBoundary`] if no batch starts at `offset`; as [`Log::entry_at`].
    pub fn index_of(&self, offset: Offset) -> Result<RaftIndex> {
        self.check_range(offset)?;
        if offset == self.next_offset() {
            return Ok(self.next_index());
        }
        let walked = self.segments[self.segment_of(offset)].locate(offset, &self.epochs)?;
        if walked.header.base_offset != offset {
            return Err(Error::NotBatchBoundary { offset });
        }
        Ok(walked.index)
    }

    /// Copies the entries from `from` up to `to_exclusive` (clamped to [`Log::next_index`]) into
    /// `out` (appending), at most `bytes_max` bytes but at least one entry, whole batches only,
    /// each verified as [`Log::read`] verifies (CRC, offset continuity, epoch); returns their
    /// headers in order. Nothing if `from >= to_exclusive`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] if `from` is outside `[start_index, next_index]`; as
    /// [`Log::read`] (`out` then keeps its length before the call).
    pub fn read_entries(
        &self,
        from: RaftIndex,
        to_exclusive: RaftIndex,
        bytes_max: u32,
        out: &mut Vec<u8>,
    ) -> Result<Vec<EntryHeader>> {
        self.check_index(from)?;
        let to = to_exclusive.min(self.next_index());
        if from >= to {
            return Ok(Vec::new());
        }
        let first = self.offset_of(from)?;
        let upto = self.offset_of(to)?;
        let start = out.len();
        self.read(first, bytes_max, upto, out)?;
        let headers = Frames::new(&out[start..], BATCH_BYTES_MAX)
            .zip(0..)
            .map(|((_, header), i)| EntryHeader {
                index: from.plus(i),
                base_offset: header.base_offset,
                next_offset: header.next_offset(),
                epoch: header.partition_leader_epoch,
            })
            .collect();
        Ok(headers)
    }

    /// Removes every entry after `index` (all of them for `None`), durably: a Raft log conflict.
    /// Cuts through [`Log::truncate_suffix`], so the cut may not go below `bound` (the commit
    /// offset: committed entries are never cut).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] if the entry after `index` is outside
    /// `[start_index, next_index]`; as [`Log::truncate_suffix`].
    pub fn truncate_after(&mut self, index: Option<RaftIndex>, bound: Offset) -> Result<()> {
        let cut = index.map_or(self.start_index(), |index| index.plus(1));
        let at = self.offset_of(cut)?;
        self.truncate_suffix(at, bound)
    }

    /// Deletes the oldest whole segments whose entries are all at or below `index` (never the
    /// active segment); returns the new [`Log::start_index`]. Entries of a segment that also
    /// holds later entries are kept: the caller hides them.
    ///
    /// # Errors
    /// [`Error::Io`] (poisons).
    pub fn purge_through(&mut self, index: RaftIndex) -> Result<RaftIndex> {
        let count = self
            .segments
            .iter()
            .take(self.segments.len() - 1)
            .take_while(|s| s.next_index.0.checked_sub(1).is_some_and(|last| last <= index.0))
            .count();
        self.delete_oldest(count)?;
        Ok(self.start_index())
    }

    /// Empties the log and starts it again at `start_offset` and `next_index`, with an empty
    /// epoch history: the install of a snapshot the local log does not reach. Durable on
    /// return. A crash midway leaves the log empty at its old start or at the new one.
    ///
    /// # Errors
    /// [`Error::Poisoned`]; [`Error::Io`] (poisons).
    pub fn reset(&mut self, start_offset: Offset, next_index: RaftIndex) -> Result<()> {
        let start = self.start_offset();
        self.truncate_suffix(start, start)?;
        self.guarded(|log| {
            log.generation += 1;
            log.rename_empty_active(start_offset, next_index)?;
            log.epochs = Epochs::default();
            log.epochs.persist(&log.disk, &log.dir)?;
            log.durable = start_offset;
            log.durable_index = next_index;
            log.cache_dropped = (start_offset, 0);
            log.sync_checkpoint()
        })
    }

    /// Gives the log's only segment, empty, the name of a segment at `(base, first_index)`: both
    /// files renamed, the directory synced, the files reopened by their new names.
    fn rename_empty_active(&mut self, base: Offset, first_index: RaftIndex) -> Result<()> {
        debug_assert!(self.segments.len() == 1 && self.active().size == 0, "an emptied log");
        let data_path = child(&self.dir, &segment::file_name(base, first_index, DATA_SUFFIX));
        let index_path = child(&self.dir, &segment::file_name(base, first_index, INDEX_SUFFIX));
        let old = self.active();
        // The state as of the old name's start is not the new one's: the log starts again.
        self.remove_producer_snapshot(old)?;
        self.producers = crate::producers::ProducerStates::new();
        let old = self.active();
        if old.data_path != data_path {
            // Data first: an index left behind under the old name has no data and is removed by
            // the next open, whichever rename a crash keeps.
            self.disk.rename(&old.data_path, &data_path).map_err(io_error("rename", &data_path))?;
            let index_result = self.disk.rename(&old.index_path, &index_path);
            index_result.map_err(io_error("rename", &index_path))?;
            self.disk.sync_dir(&self.dir).map_err(io_error("fsync dir", &self.dir))?;
        }
        let data = self.disk.open(&data_path).map_err(io_error("open", &data_path))?;
        let index = self.disk.open(&index_path).map_err(io_error("open", &index_path))?;
        let files = SegmentFiles { data, data_path, index, index_path };
        let segment = Segment::new(base, first_index, files, self.clock.now_ms());
        *self.active_mut() = segment;
        Ok(())
    }
}
