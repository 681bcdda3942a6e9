//! One segment: a data file of consecutive RecordBatch v2 bytes, named after its base offset and
//! its first Raft index, and its sparse [`Index`]. Also the header [`Walk`] every lookup and
//! recovery step uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_types::batch::{BatchHeader, HEADER_BYTES, RecordBatch};
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{LeaderEpoch, Offset, RaftIndex};

use crate::disk::DiskFile;
use crate::epochs::Epochs;
use crate::error::{Error, Result, io_error};
use crate::index::{Index, IndexEntry};
use crate::verified::Verified;

/// Suffix of segment data files.
pub(crate) const DATA_SUFFIX: &str = ".log";
/// Suffix of segment index files.
pub(crate) const INDEX_SUFFIX: &str = ".index";
/// Window a lookup reads at once while walking headers.
const LOOKUP_WINDOW_BYTES: usize = 16 * 1024;

/// `00000000000000000042-00000000000000000007.log` and friends: the base offset and the first
/// Raft index, zero-padded so that names sort like offsets (and, in a valid log, like indexes).
pub(crate) fn file_name(base: Offset, first_index: RaftIndex, suffix: &str) -> String {
    format!("{:020}-{:020}{suffix}", base.0, first_index.0)
}

/// `00000000000000000042.log`: the names written before segments carried their first Raft index;
/// such a log is adopted on open (`recovery.rs`).
pub(crate) fn legacy_file_name(base: Offset, suffix: &str) -> String {
    format!("{:020}{suffix}", base.0)
}

/// What a segment file's name says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SegmentName {
    /// Offset of the segment's first batch.
    pub base: Offset,
    /// Raft index of its first batch; `None` for a legacy (offset-only) name.
    pub first_index: Option<RaftIndex>,
}

impl SegmentName {
    /// The file name this name gives with `suffix`.
    pub(crate) fn file_name(&self, suffix: &str) -> String {
        match self.first_index {
            Some(first_index) => file_name(self.base, first_index, suffix),
            None => legacy_file_name(self.base, suffix),
        }
    }
}

/// Parses a segment file name with `suffix` (either form) into what it says.
pub(crate) fn parse_name(name: &str, suffix: &str) -> Option<SegmentName> {
    let stem = name.strip_suffix(suffix)?;
    let number = |digits: &str| {
        (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<u64>().ok())
            .flatten()
    };
    match stem.split_once('-') {
        Some((base, first)) => Some(SegmentName {
            base: Offset(number(base)?),
            first_index: Some(RaftIndex(number(first)?)),
        }),
        None => Some(SegmentName { base: Offset(number(stem)?), first_index: None }),
    }
}

/// Parses a segment data file name.
pub(crate) fn parse_data_name(name: &str) -> Option<SegmentName> {
    parse_name(name, DATA_SUFFIX)
}

/// A batch boundary in a segment: where a batch starts (or the segment ends), and the offset
/// and Raft index the batch there must carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Boundary {
    /// Byte position in the data file.
    pub position: u32,
    /// Offset of the batch starting there.
    pub offset: Offset,
    /// Raft index of the batch starting there.
    pub index: RaftIndex,
}

/// One batch a [`Walk`] found.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Walked {
    /// Byte position of the batch in the file.
    pub position: u64,
    /// Its Raft index, counted by the walk from where it started.
    pub index: RaftIndex,
    /// Its header.
    pub header: BatchHeader,
}

/// A segment of the log. Owned by the log; readers see it through `&Log`.
pub(crate) struct Segment<F> {
    /// Offset of the first batch (in the file name).
    pub base: Offset,
    /// Offset after the last batch; `base` when empty.
    pub next: Offset,
    /// Raft index of the first batch (in the file name).
    pub first_index: RaftIndex,
    /// Raft index after the last batch; `first_index` when empty.
    pub next_index: RaftIndex,
    /// Valid bytes in the data file. Bytes past it (a torn or rolled-back write) are not data.
    pub size: u32,
    pub data: Arc<F>,
    pub data_path: PathBuf,
    pub index_file: Arc<F>,
    pub index_path: PathBuf,
    pub index: Index,
    /// Entries of `index` already written to `index_file` (a prefix).
    pub index_written: usize,
    /// Largest batch max-timestamp in the segment; `i64::MIN` when empty.
    pub max_timestamp: i64,
    /// Data bytes appended since the last index entry.
    pub bytes_since_index: u32,
    /// When the segment was created or recovered, for rolling by age (`segment.ms`).
    pub created_ms: i64,
    /// The byte ranges known to hold valid batches since the log opened (RFC 0005).
    pub verified: Verified,
}

/// The files of a segment, opened by the caller.
pub(crate) struct SegmentFiles<F> {
    pub data: Arc<F>,
    pub data_path: PathBuf,
    pub index: Arc<F>,
    pub index_path: PathBuf,
}

impl<F: DiskFile> Segment<F> {
    /// An empty segment starting at `base` and `first_index` over `files`.
    pub(crate) fn new(
        base: Offset,
        first_index: RaftIndex,
        files: SegmentFiles<F>,
        created_ms: i64,
    ) -> Segment<F> {
        Segment {
            base,
            next: base,
            first_index,
            next_index: first_index,
            size: 0,
            data: files.data,
            data_path: files.data_path,
            index_file: files.index,
            index_path: files.index_path,
            index: Index::default(),
            index_written: 0,
            max_timestamp: i64::MIN,
            bytes_since_index: 0,
            created_ms,
            verified: Verified::default(),
        }
    }

    /// Offset relative to the base. Callers only ask about offsets inside the segment.
    pub(crate) fn relative(&self, offset: Offset) -> u32 {
        u32::try_from(offset.distance_from(self.base)).unwrap_or(u32::MAX)
    }

    /// Raft index relative to the first index. Callers only ask about indexes inside the segment,
    /// which has fewer batches than offsets.
    pub(crate) fn relative_index(&self, index: RaftIndex) -> u32 {
        u32::try_from(index.distance_from(self.first_index)).unwrap_or(u32::MAX)
    }

    /// The segment's start, as a boundary.
    pub(crate) fn start(&self) -> Boundary {
        Boundary { position: 0, offset: self.base, index: self.first_index }
    }

    /// The segment's end: where its next batch would go.
    pub(crate) fn end(&self) -> Boundary {
        Boundary { position: self.size, offset: self.next, index: self.next_index }
    }

    /// The boundary an index entry marks.
    fn boundary_of(&self, entry: &IndexEntry) -> Boundary {
        Boundary {
            position: entry.position,
            offset: self.base.plus(u64::from(entry.relative_offset)),
            index: self.first_index.plus(u64::from(entry.relative_index)),
        }
    }

    /// Records a batch appended at `position` in the in-memory state, adding an index entry
    /// when an interval of data has passed since the last one.
    pub(crate) fn on_append(&mut self, position: u32, header: &BatchHeader, interval_bytes: u32) {
        debug_assert_eq!(position, self.size);
        debug_assert_eq!(header.base_offset, self.next);
        if self.bytes_since_index >= interval_bytes || (position == 0 && self.index.len() == 0) {
            self.index.push(IndexEntry {
                relative_offset: self.relative(header.base_offset),
                relative_index: self.relative_index(self.next_index),
                position,
                max_timestamp_before: self.max_timestamp,
            });
            self.bytes_since_index = 0;
        }
        self.size = position + header.total_bytes();
        self.next = header.next_offset();
        self.next_index = self.next_index.plus(1);
        // A control batch (Raft's blank and membership entries) is nobody's record: its time
        // answers no lookup by timestamp and ages no segment.
        if !header.is_control() {
            self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        }
        self.bytes_since_index += header.total_bytes();
    }

    /// Adds the entry that marks the end of the segment (on roll and clean shutdown), so the
    /// index alone tells the segment's size, end offset, end index and newest timestamp on the
    /// next open.
    pub(crate) fn seal_index(&mut self) {
        let end = IndexEntry {
            relative_offset: self.relative(self.next),
            relative_index: self.relative_index(self.next_index),
            position: self.size,
            max_timestamp_before: self.max_timestamp,
        };
        if self.size > 0 && self.index.last().is_none_or(|last| last.position < self.size) {
            self.index.push(end);
        }
    }

    /// Writes index entries not yet in the index file. Not synced.
    pub(crate) fn write_index(&mut self) -> Result<()> {
        if self.index_written == self.index.len() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for entry in &self.index.entries()[self.index_written..] {
            entry.encode(&mut bytes);
        }
        let position = (self.index_written * crate::index::ENTRY_BYTES) as u64;
        self.index_file
            .write_all_at(&bytes, position)
            .map_err(io_error("write", &self.index_path))?;
        self.index_written = self.index.len();
        Ok(())
    }

    /// Rewrites the index file from the in-memory index (after recovery or truncation).
    pub(crate) fn rewrite_index(&mut self) -> Result<()> {
        self.index_file.set_len(0).map_err(io_error("truncate", &self.index_path))?;
        self.index_written = 0;
        self.write_index()
    }

    /// A header walk over this segment from the boundary `from` up to the segment's valid size,
    /// checking every index entry it reaches against what it counted.
    pub(crate) fn walk<'a>(&'a self, from: Boundary, epochs: &'a Epochs) -> Walk<'a, F> {
        Walk::new(&*self.data, &self.data_path, from, u64::from(self.size))
            .with_epochs(epochs)
            .with_marks(self.index.entries(), self.base, self.first_index)
    }

    /// Where to start walking towards `offset`: the nearest index entry at or before it.
    fn floor_offset(&self, offset: Offset) -> Boundary {
        self.index
            .floor_offset(self.relative(offset))
            .map_or(self.start(), |entry| self.boundary_of(&entry))
    }

    /// The batch containing `offset` (which must lie in `[base, next)`).
    pub(crate) fn locate(&self, offset: Offset, epochs: &Epochs) -> Result<Walked> {
        debug_assert!(self.base <= offset && offset < self.next);
        let mut walk = self.walk(self.floor_offset(offset), epochs);
        while let Some(walked) = walk.next_header()? {
            if walked.header.last_offset() >= offset {
                return Ok(walked);
            }
        }
        Err(self.corruption(
            u64::from(self.size),
            format!("offset {offset} not found before the segment end"),
        ))
    }

    /// The batch with Raft index `index` (which must lie in `[first_index, next_index)`).
    ///
    /// An index is not in the data: only counting batches between two points that claim an
    /// index proves it. So the walk from the index entry at or before `index` goes on to the
    /// next entry, or to the segment end and its next index, whichever comes first.
    pub(crate) fn entry(&self, index: RaftIndex, epochs: &Epochs) -> Result<Walked> {
        debug_assert!(self.first_index <= index && index < self.next_index);
        let from = self
            .index
            .floor_index(self.relative_index(index))
            .map_or(self.start(), |entry| self.boundary_of(&entry));
        let mut walk = self.walk(from, epochs);
        let mut found = None;
        while let Some(walked) = walk.next_header()? {
            if walked.index == index {
                found = Some(walked);
                break;
            }
        }
        let Some(found) = found else {
            let reason = format!("raft index {index} not found before the segment end");
            return Err(self.corruption(u64::from(self.size), reason));
        };
        let entries = self.index.entries();
        let after = entries.partition_point(|e| u64::from(e.position) <= found.position);
        let next_entry = entries.get(after).map(|e| e.position);
        walk.walk_to(u64::from(next_entry.unwrap_or(self.size)))?;
        if next_entry.is_none() && walk.index() != self.next_index {
            let reason = format!(
                "the segment ends at raft index {} but its batches count to {}",
                self.next_index,
                walk.index()
            );
            return Err(self.corruption(u64::from(self.size), reason));
        }
        Ok(found)
    }

    /// The furthest batch boundary at or after `start` such that the bytes in between are at
    /// most `bytes_max` and the batches end at or before `offset_max`. With `at_least_one`, one
    /// batch is included even if it is larger than `bytes_max`.
    pub(crate) fn boundary(
        &self,
        start: Boundary,
        bytes_max: u32,
        offset_max: Offset,
        at_least_one: bool,
        epochs: &Epochs,
    ) -> Result<Boundary> {
        let position_max = start.position.saturating_add(bytes_max).min(self.size);
        // Both bounds map to index entries; the earlier of the two is a safe place to start.
        let by_position = self.index.floor_position(position_max);
        let by_offset = self.index.floor_offset(self.relative(offset_max));
        let mut from = start;
        if let (Some(a), Some(b)) = (by_position, by_offset) {
            let entry = if a.position <= b.position { a } else { b };
            if entry.position > start.position {
                from = self.boundary_of(&entry);
            }
        }
        let mut walk = self.walk(from, epochs);
        let mut end = from;
        while let Some(Walked { position, index, header }) = walk.next_header()? {
            let batch_end = position as u32 + header.total_bytes();
            let fits = batch_end <= position_max && header.next_offset() <= offset_max;
            let forced = at_least_one
                && position as u32 == start.position
                && header.next_offset() <= offset_max;
            if !fits && !forced {
                break;
            }
            end = Boundary {
                position: batch_end,
                offset: header.next_offset(),
                index: index.plus(1),
            };
        }
        Ok(end)
    }

    /// The base offset of the first batch whose max timestamp is at least `timestamp`.
    pub(crate) fn find_timestamp(&self, timestamp: i64, epochs: &Epochs) -> Result<Option<Offset>> {
        let from = self
            .index
            .floor_timestamp(timestamp)
            .map_or(self.start(), |entry| self.boundary_of(&entry));
        let mut walk = self.walk(from, epochs);
        while let Some(walked) = walk.next_header()? {
            if !walked.header.is_control() && walked.header.max_timestamp >= timestamp {
                return Ok(Some(walked.header.base_offset));
            }
        }
        Ok(None)
    }

    pub(crate) fn corruption(&self, position: u64, reason: String) -> Error {
        Error::Corruption { path: self.data_path.clone(), position, reason }
    }
}

/// Why a walk stopped at a batch.
#[derive(Debug)]
pub(crate) enum WalkStop {
    /// The bytes at `position` are not the expected batch.
    Invalid { position: u64, reason: String },
    /// The device failed.
    Io(Error),
}

impl WalkStop {
    /// As a storage error: invalid bytes inside data the log relies on are corruption.
    pub(crate) fn into_error(self, path: &Path) -> Error {
        match self {
            WalkStop::Invalid { position, reason } => {
                Error::Corruption { path: path.to_path_buf(), position, reason }
            }
            WalkStop::Io(error) => error,
        }
    }
}

/// The index entries a walk checks as it passes them, with the segment name they are relative to.
struct Marks<'a> {
    /// Entries at or after the walk's position, in position order.
    entries: &'a [IndexEntry],
    base: Offset,
    first_index: RaftIndex,
}

/// Walks the batches of a data file from a known batch boundary, checking each header against
/// what the log expects (its offset follows the previous batch, its epoch matches the epoch
/// history, it ends before the end of valid data) and, in verifying mode, its CRC. It counts
/// Raft indexes from the boundary's, and at every index entry it reaches (`with_marks`) checks
/// that the entry claims exactly the offset and index counted, so a lookup that starts at one
/// entry and passes the next proves both agree with the data between them.
pub(crate) struct Walk<'a, F> {
    file: &'a F,
    path: &'a Path,
    /// Position of the next batch.
    position: u64,
    /// End of the bytes to walk.
    end: u64,
    /// Offset the next batch must start with.
    expected: Offset,
    /// Raft index of the next batch.
    index: RaftIndex,
    /// Epoch history to check against; `None` while rebuilding it.
    epochs: Option<&'a Epochs>,
    /// Index entries still ahead; `None` when not checking them.
    marks: Option<Marks<'a>>,
    verify_crc: bool,
    window: Vec<u8>,
    /// File position of `window[0]`.
    window_start: u64,
    window_bytes: usize,
}

impl<'a, F: DiskFile> Walk<'a, F> {
    pub(crate) fn new(file: &'a F, path: &'a Path, from: Boundary, end: u64) -> Walk<'a, F> {
        Walk {
            file,
            path,
            position: u64::from(from.position),
            end,
            expected: from.offset,
            index: from.index,
            epochs: None,
            marks: None,
            verify_crc: false,
            window: Vec::new(),
            window_start: 0,
            window_bytes: LOOKUP_WINDOW_BYTES,
        }
    }

    pub(crate) fn with_epochs(mut self, epochs: &'a Epochs) -> Walk<'a, F> {
        self.epochs = Some(epochs);
        self
    }

    /// Check the index `entries` of a segment named `(base, first_index)` as the walk reaches
    /// their positions.
    fn with_marks(
        mut self,
        entries: &'a [IndexEntry],
        base: Offset,
        first_index: RaftIndex,
    ) -> Walk<'a, F> {
        let ahead = entries.partition_point(|e| u64::from(e.position) < self.position);
        self.marks = Some(Marks { entries: &entries[ahead..], base, first_index });
        self
    }

    /// Verify every batch's CRC too, reading whole batches through a window of `window_bytes`.
    pub(crate) fn verifying(mut self, window_bytes: usize) -> Walk<'a, F> {
        self.verify_crc = true;
        self.window_bytes = window_bytes;
        self
    }

    /// Position of the next batch (after the last one returned).
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    /// Offset the next batch must start with.
    pub(crate) fn expected(&self) -> Offset {
        self.expected
    }

    /// Raft index of the next batch.
    pub(crate) fn index(&self) -> RaftIndex {
        self.index
    }

    /// Ensures `window` holds file bytes `[position, position + len)`; returns false at EOF.
    fn fill(&mut self, position: u64, len: usize) -> std::result::Result<bool, WalkStop> {
        let have = self.window_start <= position
            && position + len as u64 <= self.window_start + self.window.len() as u64;
        if have {
            return Ok(true);
        }
        let want = len
            .max(self.window_bytes)
            .min(usize::try_from(self.end - position).unwrap_or(usize::MAX))
            .max(len);
        self.window.resize(want, 0);
        let read = self
            .file
            .read_at(&mut self.window, position)
            .map_err(|e| WalkStop::Io(io_error("read", self.path)(e)))?;
        self.window.truncate(read);
        self.window_start = position;
        Ok(read >= len)
    }

    fn invalid(&self, reason: String) -> WalkStop {
        WalkStop::Invalid { position: self.position, reason }
    }

    /// Checks the index entries up to the current position: one that lies inside the batch just
    /// walked, or that claims another offset or index than counted, disagrees with the data.
    fn check_marks(&mut self) -> std::result::Result<(), WalkStop> {
        let Some(marks) = &mut self.marks else { return Ok(()) };
        while let Some((entry, rest)) = marks.entries.split_first() {
            let position = u64::from(entry.position);
            if position > self.position {
                break;
            }
            let offset = marks.base.plus(u64::from(entry.relative_offset));
            let index = marks.first_index.plus(u64::from(entry.relative_index));
            marks.entries = rest;
            if position < self.position || offset != self.expected || index != self.index {
                let reason = format!(
                    "index entry (offset {offset}, raft index {index}, position {position}) \
                     disagrees with the batches walked (offset {}, raft index {})",
                    self.expected, self.index
                );
                return Err(self.invalid(reason));
            }
        }
        Ok(())
    }

    /// The next batch: `Ok(None)` at the end, [`WalkStop`] if the bytes are not the expected batch.
    pub(crate) fn try_next(&mut self) -> std::result::Result<Option<Walked>, WalkStop> {
        self.check_marks()?;
        if self.position >= self.end {
            return Ok(None);
        }
        let position = self.position;
        let header = self.header_at(position)?;
        let total = u64::from(header.total_bytes());
        if self.verify_crc {
            let len = total as usize;
            if !self.fill(position, len)? {
                return Err(self.invalid("batch cut short".into()));
            }
            let at = (position - self.window_start) as usize;
            RecordBatch::validate(&self.window[at..at + len])
                .map_err(|e| self.invalid(e.to_string()))?;
        }
        let walked = Walked { position, index: self.index, header };
        self.position += total;
        self.expected = header.next_offset();
        self.index = self.index.plus(1);
        Ok(Some(walked))
    }

    /// Parses and checks the header of the batch at `position` (the walk's position).
    fn header_at(&mut self, position: u64) -> std::result::Result<BatchHeader, WalkStop> {
        if self.end - position < HEADER_BYTES as u64 || !self.fill(position, HEADER_BYTES)? {
            return Err(self.invalid("batch header cut short".into()));
        }
        let at = (position - self.window_start) as usize;
        let header = BatchHeader::parse(&self.window[at..], BATCH_BYTES_MAX)
            .map_err(|e| self.invalid(e.to_string()))?;
        let total = u64::from(header.total_bytes());
        if position + total > self.end {
            return Err(self.invalid(format!("batch of {total} bytes runs past the data end")));
        }
        if header.base_offset != self.expected {
            let reason =
                format!("batch offset {} where {} was expected", header.base_offset, self.expected);
            return Err(self.invalid(reason));
        }
        if let Some(epochs) = self.epochs {
            let expected_epoch: Option<LeaderEpoch> = epochs.epoch_at(header.base_offset);
            if expected_epoch != Some(header.partition_leader_epoch) {
                let reason = format!(
                    "batch epoch {} where the epoch history says {expected_epoch:?}",
                    header.partition_leader_epoch
                );
                return Err(self.invalid(reason));
            }
        }
        Ok(header)
    }

    /// Walks on until `position` (a batch boundary at or before the end), checking the index
    /// entries passed and the one there.
    pub(crate) fn walk_to(&mut self, position: u64) -> Result<()> {
        while self.position < position && self.next_header()?.is_some() {}
        self.check_marks().map_err(|stop| stop.into_error(self.path))
    }

    /// [`Walk::try_next`] for data the log relies on: any invalid batch is corruption.
    pub(crate) fn next_header(&mut self) -> Result<Option<Walked>> {
        self.try_next().map_err(|stop| stop.into_error(self.path))
    }
}

impl<F: DiskFile> Segment<F> {
    /// Rebuilds the in-memory state (size, next offset and index, newest timestamp, index
    /// entries) from the last index entry up to `end`, walking headers without CRC: the bytes are
    /// known durable and were validated when written. Returns the bytes walked.
    ///
    /// # Errors
    /// [`Error::Corruption`] if the walk finds anything but the expected batches.
    pub(crate) fn replay(&mut self, end: u32, epochs: &Epochs, interval_bytes: u32) -> Result<u64> {
        let (from, max_timestamp) = self
            .index
            .last()
            .map_or((self.start(), i64::MIN), |e| (self.boundary_of(e), e.max_timestamp_before));
        self.size = from.position;
        self.next = from.offset;
        self.next_index = from.index;
        self.max_timestamp = max_timestamp;
        self.bytes_since_index = 0;
        let data = Arc::clone(&self.data);
        let path = self.data_path.clone();
        let mut walk = Walk::new(&*data, &path, from, u64::from(end)).with_epochs(epochs);
        while let Some(walked) = walk.next_header()? {
            self.on_append(walked.position as u32, &walked.header, interval_bytes);
        }
        Ok(u64::from(end - from.position))
    }
}
