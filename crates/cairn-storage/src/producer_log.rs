//! The log's idempotent producers (RFC 0006 §4): [`ProducerStates`] as of the log end, kept by
//! both appends, rebuilt after a cut, and snapshotted so that rebuilding reads at most the
//! active segment.
//!
//! - Every batch written records its producer ([`ProducerBatch::of`]); an append undone on a
//!   full disk rebuilds the state.
//! - A roll first expires the producers whose last batch is older than
//!   [`PRODUCER_ID_EXPIRATION_MS_DEFAULT`] before the newest batch any producer wrote (batch
//!   timestamps, so every replica expires the same ones at the same point of the log), then
//!   writes the state as of the new segment's start to `{base}-{first_index}.producers`
//!   (checksummed, replaced atomically). The data before that point was fsynced by the roll.
//! - Open, a suffix cut and an undone append rebuild: the newest readable snapshot of a
//!   segment still in the log (none: the first segment, from nothing), then every batch after
//!   it, expiring at each segment start as the roll did. A snapshot that does not read is
//!   derived data: an older one is used instead.
//! - A snapshot goes with its segment; one left by a crash without its segment is removed by the
//!   next open.
//! - A clean close of a large active segment leaves [`END_FILE`], the state at the end, which
//!   the next open takes instead of reading the segment.
//! - A Raft snapshot carries the state as of its point ([`Log::producers_before`]); a replica
//!   that installs it takes that state ([`Log::install_producers`]).

use cairn_types::Offset;
use cairn_types::batch::BatchHeader;
use cairn_types::limits::{PRODUCER_ID_EXPIRATION_MS_DEFAULT, PRODUCER_STATE_BYTES_MAX};

use crate::atomic::temp_name;
use crate::disk::{Disk, child, remove_if_present};
use crate::error::{Error, Result};
use crate::log::Log;
use crate::producers::ProducerStates;
use crate::segment::{self, Segment, SegmentName, WalkStop};
use crate::snapshot::{read_state_file, write_state_file};

/// Suffix of a segment's producer snapshot: the state as of the segment's start.
pub(crate) const PRODUCERS_SUFFIX: &str = ".producers";

/// The state file a clean close leaves when the active segment is large: the producers as of
/// the log end, with the end's offset and its last batch's CRC, so that the next open need not
/// read the whole active segment (Kafka writes a snapshot at shutdown too). An open uses it
/// only if the log still ends there with that batch, and removes it either way.
const END_FILE: &str = "producers-end";

/// Active segments smaller than this are walked at open: a close writes no [`END_FILE`].
const END_SNAPSHOT_MIN_BYTES: u32 = 1 << 20;

/// [`END_FILE`]'s head: the end offset (u64) and the last batch's CRC (u32).
const END_MARK_BYTES: usize = 12;

impl<D: Disk> Log<D> {
    /// The idempotent producers as of the log end.
    #[must_use]
    pub fn producers(&self) -> &ProducerStates {
        &self.producers
    }

    /// Records the producers of batches just written.
    pub(crate) fn record_producers<'a>(&mut self, headers: impl Iterator<Item = &'a BatchHeader>) {
        for header in headers {
            self.producers.record_batch_of(header);
        }
    }

    /// The roll's part: expires, then snapshots the state as of the active segment's start.
    pub(crate) fn snapshot_producers(&mut self) -> Result<()> {
        expire_at_segment_start(&mut self.producers);
        self.write_active_snapshot()
    }

    /// Writes the state as the active segment's snapshot (the state as of its start).
    fn write_active_snapshot(&self) -> Result<()> {
        let active = self.active();
        let name = segment::file_name(active.base, active.first_index, PRODUCERS_SUFFIX);
        let bytes = self.producers.encode();
        write_state_file(&self.disk, &self.dir, &name, &bytes, PRODUCER_STATE_BYTES_MAX)
    }

    /// Rebuilds the state from the newest readable segment snapshot and the batches after it
    /// (module docs).
    pub(crate) fn rebuild_producers(&mut self) -> Result<()> {
        self.producers = self.producers_before(self.next_offset())?;
        Ok(())
    }

    /// The producers as of `offset`, a batch boundary in the log (its start through its end):
    /// what a Raft snapshot whose entries end before `offset` carries (RFC 0006 §4). Read from
    /// the newest segment snapshot at or before it and the batches between.
    ///
    /// # Errors
    /// [`Error::Io`] reading a snapshot or a segment.
    pub fn producers_before(&self, offset: Offset) -> Result<ProducerStates> {
        let last = self.segments.iter().rposition(|s| s.base <= offset).unwrap_or(0);
        let (from, mut states) = self.newest_producer_snapshot(last)?;
        for (i, segment) in self.segments.iter().enumerate().take(last + 1).skip(from) {
            if i > from {
                expire_at_segment_start(&mut states);
            }
            replay_producers(segment, &self.epochs, offset, &mut states)?;
        }
        Ok(states)
    }

    /// Takes `states` as the producers of an empty log (a Raft snapshot installed: the state
    /// as of the log's start), in memory and as its segment's snapshot.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::NoSpace`] writing the snapshot.
    pub fn install_producers(&mut self, states: ProducerStates) -> Result<()> {
        debug_assert_eq!(self.start_offset(), self.next_offset(), "an empty log");
        self.producers = states;
        self.write_active_snapshot()
    }

    /// The producers at open: those a clean close left if they are this end's, else rebuilt.
    pub(crate) fn open_producers(&mut self) -> Result<()> {
        match self.producers_left_at_close()? {
            Some(states) => self.producers = states,
            None => self.rebuild_producers()?,
        }
        Ok(())
    }

    /// At a clean close: the producers as of the end, if the active segment is large.
    pub(crate) fn snapshot_producers_at_end(&self) -> Result<()> {
        if self.active().size < END_SNAPSHOT_MIN_BYTES {
            return Ok(());
        }
        let mut bytes = self.end_mark()?.to_vec();
        bytes.extend_from_slice(&self.producers.encode());
        let bytes_max = END_MARK_BYTES + PRODUCER_STATE_BYTES_MAX;
        write_state_file(&self.disk, &self.dir, END_FILE, &bytes, bytes_max)
    }

    /// The end offset and the CRC of the batch before it.
    fn end_mark(&self) -> Result<[u8; END_MARK_BYTES]> {
        let active = self.active();
        let last = active.locate(Offset(self.next_offset().0.saturating_sub(1)), &self.epochs)?;
        let mut mark = [0; END_MARK_BYTES];
        mark[..8].copy_from_slice(&self.next_offset().0.to_be_bytes());
        mark[8..].copy_from_slice(&last.header.crc.to_be_bytes());
        Ok(mark)
    }

    /// The producers [`END_FILE`] holds if they are this log end's; the file is removed.
    fn producers_left_at_close(&self) -> Result<Option<ProducerStates>> {
        let bytes_max = END_MARK_BYTES + PRODUCER_STATE_BYTES_MAX;
        let read = match read_state_file(&self.disk, &self.dir, END_FILE, bytes_max) {
            Ok(read) => read,
            Err(Error::Corruption { .. }) => None,
            Err(error) => return Err(error),
        };
        let Some(bytes) = read else { return Ok(None) };
        remove_if_present(&self.disk, &child(&self.dir, END_FILE))?;
        let ends_here = self.active().size > 0
            && bytes.len() >= END_MARK_BYTES
            && bytes[..END_MARK_BYTES] == self.end_mark()?;
        Ok(ends_here.then(|| ProducerStates::decode(&bytes[END_MARK_BYTES..]).ok()).flatten())
    }

    /// The newest segment, at most the `last`-th, whose snapshot reads, and the state it holds;
    /// the first segment and no producers if none does (a log's first segment has none until
    /// a purge).
    fn newest_producer_snapshot(&self, last: usize) -> Result<(usize, ProducerStates)> {
        for (i, segment) in self.segments.iter().enumerate().take(last + 1).rev() {
            let name = segment::file_name(segment.base, segment.first_index, PRODUCERS_SUFFIX);
            let read = read_state_file(&self.disk, &self.dir, &name, PRODUCER_STATE_BYTES_MAX);
            let bytes = match read {
                Ok(Some(bytes)) => bytes,
                Ok(None) | Err(Error::Corruption { .. }) => continue,
                Err(error) => return Err(error),
            };
            if let Ok(states) = ProducerStates::decode(&bytes) {
                return Ok((i, states));
            }
        }
        Ok((0, ProducerStates::new()))
    }

    /// Removes a segment's producer snapshot, if it has one.
    pub(crate) fn remove_producer_snapshot(&self, segment: &Segment<D::File>) -> Result<()> {
        let name = segment::file_name(segment.base, segment.first_index, PRODUCERS_SUFFIX);
        remove_if_present(&self.disk, &child(&self.dir, &name))
    }
}

/// The expiry a roll applies: judged against the newest batch any producer wrote.
fn expire_at_segment_start(states: &mut ProducerStates) {
    if let Some(newest) = states.newest_timestamp() {
        states.expire(newest, PRODUCER_ID_EXPIRATION_MS_DEFAULT);
    }
}

/// Records the producers of the batches of `segment` before `end`. A damaged header ends the
/// walk: the producers after it stay unknown (they may then start at any sequence), and the
/// read that meets the damage takes the partition offline, as without producers.
fn replay_producers<F: crate::disk::DiskFile>(
    segment: &Segment<F>,
    epochs: &crate::epochs::Epochs,
    end: Offset,
    states: &mut ProducerStates,
) -> Result<()> {
    let mut walk = segment.walk(segment.start(), epochs);
    loop {
        match walk.try_next() {
            Ok(Some(walked)) if walked.header.base_offset < end => {
                states.record_batch_of(&walked.header);
            }
            Ok(Some(_)) => return Ok(()),
            Ok(None) | Err(WalkStop::Invalid { .. }) => return Ok(()),
            Err(WalkStop::Io(error)) => return Err(error),
        }
    }
}

/// Removes the producer snapshots (and their temporary files) of no segment in `segments`: a
/// crash interrupted a segment's removal or rename, or a snapshot's replacement.
pub(crate) fn remove_stray_producer_snapshots<D: Disk>(
    disk: &D,
    dir: &std::path::Path,
    names: &[String],
    segments: &[SegmentName],
) -> Result<()> {
    for name in names {
        let snapshot = name.strip_suffix(temp_name("").as_str()).unwrap_or(name);
        let Some(owner) = segment::parse_name(snapshot, PRODUCERS_SUFFIX) else { continue };
        let keep = snapshot == name.as_str() && segments.binary_search(&owner).is_ok();
        if !keep {
            remove_if_present(disk, &child(dir, name))?;
        }
    }
    Ok(())
}
