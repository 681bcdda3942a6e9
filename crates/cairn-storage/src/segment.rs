//! One segment: a data file of consecutive RecordBatch v2 bytes, named after its base offset, and
//! its sparse [`Index`]. Also the header [`Walk`] every lookup and recovery step uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_types::batch::{BatchHeader, HEADER_BYTES, RecordBatch};
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{LeaderEpoch, Offset};

use crate::disk::{DiskFile, child};
use crate::epochs::Epochs;
use crate::error::{Error, Result, io_error};
use crate::index::{Index, IndexEntry};

/// Suffix of segment data files.
pub(crate) const DATA_SUFFIX: &str = ".log";
/// Suffix of segment index files.
pub(crate) const INDEX_SUFFIX: &str = ".index";
/// Window a lookup reads at once while walking headers.
const LOOKUP_WINDOW_BYTES: usize = 16 * 1024;

/// `00000000000000000042.log` and friends: zero-padded so names sort like offsets.
pub(crate) fn file_name(base: Offset, suffix: &str) -> String {
    format!("{:020}{suffix}", base.0)
}

/// Parses a segment data file name back into its base offset.
pub(crate) fn parse_data_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(DATA_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Offset)
}

/// A segment of the log. Owned by the log; readers see it through `&Log`.
pub(crate) struct Segment<F> {
    /// Offset of the first batch (also the file name).
    pub base: Offset,
    /// Offset after the last batch; `base` when empty.
    pub next: Offset,
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
}

impl<F: DiskFile> Segment<F> {
    pub(crate) fn new(
        dir: &Path,
        base: Offset,
        data: Arc<F>,
        index_file: Arc<F>,
        created_ms: i64,
    ) -> Segment<F> {
        Segment {
            base,
            next: base,
            size: 0,
            data,
            data_path: child(dir, &file_name(base, DATA_SUFFIX)),
            index_file,
            index_path: child(dir, &file_name(base, INDEX_SUFFIX)),
            index: Index::default(),
            index_written: 0,
            max_timestamp: i64::MIN,
            bytes_since_index: 0,
            created_ms,
        }
    }

    /// Offset relative to the base. Callers only ask about offsets inside the segment.
    pub(crate) fn relative(&self, offset: Offset) -> u32 {
        u32::try_from(offset.distance_from(self.base)).unwrap_or(u32::MAX)
    }

    /// Records a batch appended at `position` in the in-memory state, adding an index entry
    /// when an interval of data has passed since the last one.
    pub(crate) fn on_append(&mut self, position: u32, header: &BatchHeader, interval_bytes: u32) {
        debug_assert_eq!(position, self.size);
        debug_assert_eq!(header.base_offset, self.next);
        if self.bytes_since_index >= interval_bytes || (position == 0 && self.index.len() == 0) {
            self.index.push(IndexEntry {
                relative_offset: self.relative(header.base_offset),
                position,
                max_timestamp_before: self.max_timestamp,
            });
            self.bytes_since_index = 0;
        }
        self.size = position + header.total_bytes();
        self.next = header.next_offset();
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        self.bytes_since_index += header.total_bytes();
    }

    /// Adds the entry that marks the end of the segment (on roll and clean shutdown), so the
    /// index alone tells the segment's size and newest timestamp on the next open.
    pub(crate) fn seal_index(&mut self) {
        let end = IndexEntry {
            relative_offset: self.relative(self.next),
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

    /// A header walk over this segment starting at `position`, where a batch with offset
    /// `expected` must start, up to the segment's valid size.
    pub(crate) fn walk<'a>(
        &'a self,
        position: u32,
        expected: Offset,
        epochs: &'a Epochs,
    ) -> Walk<'a, F> {
        Walk::new(&*self.data, &self.data_path, u64::from(position), u64::from(self.size), expected)
            .with_epochs(epochs)
    }

    /// Where to start walking towards `offset`: the nearest index entry at or before it.
    fn floor_offset(&self, offset: Offset) -> (u32, Offset) {
        self.index.floor_offset(self.relative(offset)).map_or((0, self.base), |entry| {
            (entry.position, self.base.plus(u64::from(entry.relative_offset)))
        })
    }

    /// The batch containing `offset` (which must lie in `[base, next)`): its position and header.
    pub(crate) fn locate(&self, offset: Offset, epochs: &Epochs) -> Result<(u32, BatchHeader)> {
        debug_assert!(self.base <= offset && offset < self.next);
        let (position, expected) = self.floor_offset(offset);
        let mut walk = self.walk(position, expected, epochs);
        while let Some((position, header)) = walk.next_header()? {
            if header.last_offset() >= offset {
                return Ok((position, header));
            }
        }
        Err(self.corruption(
            u64::from(self.size),
            format!("offset {offset} not found before the segment end"),
        ))
    }

    /// The furthest batch boundary at or after `start` (a boundary where a batch with offset
    /// `start_offset` begins) such that the bytes in between are at most `bytes_max` and the
    /// batches end at or before `offset_max`. With `at_least_one`, one batch is included even if it
    /// is larger than `bytes_max`. Returns the boundary position and the offset after it.
    pub(crate) fn boundary(
        &self,
        start: u32,
        start_offset: Offset,
        bytes_max: u32,
        offset_max: Offset,
        at_least_one: bool,
        epochs: &Epochs,
    ) -> Result<(u32, Offset)> {
        let position_max = start.saturating_add(bytes_max).min(self.size);
        // Both bounds map to index entries; the earlier of the two is a safe place to start.
        let by_position = self.index.floor_position(position_max);
        let by_offset = self.index.floor_offset(self.relative(offset_max));
        let mut from = (start, start_offset);
        if let (Some(a), Some(b)) = (by_position, by_offset) {
            let entry = if a.position <= b.position { a } else { b };
            if entry.position > start {
                from = (entry.position, self.base.plus(u64::from(entry.relative_offset)));
            }
        }
        let mut walk = self.walk(from.0, from.1, epochs);
        let mut end = from;
        while let Some((position, header)) = walk.next_header()? {
            let batch_end = position + header.total_bytes();
            let fits = batch_end <= position_max && header.next_offset() <= offset_max;
            let forced = at_least_one && position == start && header.next_offset() <= offset_max;
            if !fits && !forced {
                break;
            }
            end = (batch_end, header.next_offset());
        }
        Ok(end)
    }

    /// The base offset of the first batch whose max timestamp is at least `timestamp`.
    pub(crate) fn find_timestamp(&self, timestamp: i64, epochs: &Epochs) -> Result<Option<Offset>> {
        let (position, expected) = self
            .index
            .floor_timestamp(timestamp)
            .map_or((0, self.base), |e| (e.position, self.base.plus(u64::from(e.relative_offset))));
        let mut walk = self.walk(position, expected, epochs);
        while let Some((_, header)) = walk.next_header()? {
            if header.max_timestamp >= timestamp {
                return Ok(Some(header.base_offset));
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

/// Walks the batches of a data file from a known batch boundary, checking each header against
/// what the log expects (its offset follows the previous batch, its epoch matches the epoch
/// history, it ends before the end of valid data) and, in verifying mode, its CRC.
pub(crate) struct Walk<'a, F> {
    file: &'a F,
    path: &'a Path,
    /// Position of the next batch.
    position: u64,
    /// End of the bytes to walk.
    end: u64,
    /// Offset the next batch must start with.
    expected: Offset,
    /// Epoch history to check against; `None` while rebuilding it.
    epochs: Option<&'a Epochs>,
    verify_crc: bool,
    window: Vec<u8>,
    /// File position of `window[0]`.
    window_start: u64,
    window_bytes: usize,
}

impl<'a, F: DiskFile> Walk<'a, F> {
    pub(crate) fn new(
        file: &'a F,
        path: &'a Path,
        position: u64,
        end: u64,
        expected: Offset,
    ) -> Walk<'a, F> {
        Walk {
            file,
            path,
            position,
            end,
            expected,
            epochs: None,
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

    /// The next batch: `Ok(None)` at the end, [`WalkStop`] if the bytes are not the expected batch.
    pub(crate) fn try_next(&mut self) -> std::result::Result<Option<(u64, BatchHeader)>, WalkStop> {
        if self.position >= self.end {
            return Ok(None);
        }
        let position = self.position;
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
        if self.verify_crc {
            let len = total as usize;
            if !self.fill(position, len)? {
                return Err(self.invalid("batch cut short".into()));
            }
            let at = (position - self.window_start) as usize;
            RecordBatch::validate(&self.window[at..at + len])
                .map_err(|e| self.invalid(e.to_string()))?;
        }
        self.position += total;
        self.expected = header.next_offset();
        Ok(Some((position, header)))
    }

    /// [`Walk::try_next`] for data the log relies on: any invalid batch is corruption.
    pub(crate) fn next_header(&mut self) -> Result<Option<(u32, BatchHeader)>> {
        match self.try_next() {
            Ok(Some((position, header))) => Ok(Some((position as u32, header))),
            Ok(None) => Ok(None),
            Err(stop) => Err(stop.into_error(self.path)),
        }
    }
}

impl<F: DiskFile> Segment<F> {
    /// Rebuilds the in-memory state (size, next offset, newest timestamp, index entries) from the
    /// last index entry up to `end`, walking headers without CRC: the bytes are known durable and
    /// were validated when written. Returns the bytes walked.
    ///
    /// # Errors
    /// [`Error::Corruption`] if the walk finds anything but the expected batches.
    pub(crate) fn replay(&mut self, end: u32, epochs: &Epochs, interval_bytes: u32) -> Result<u64> {
        let (position, next, max_timestamp) =
            self.index.last().map_or((0, self.base, i64::MIN), |e| {
                (e.position, self.base.plus(u64::from(e.relative_offset)), e.max_timestamp_before)
            });
        self.size = position;
        self.next = next;
        self.max_timestamp = max_timestamp;
        self.bytes_since_index = 0;
        let data = Arc::clone(&self.data);
        let path = self.data_path.clone();
        let mut walk =
            Walk::new(&*data, &path, u64::from(position), u64::from(end), next).with_epochs(epochs);
        while let Some((position, header)) = walk.next_header()? {
            self.on_append(position, &header, interval_bytes);
        }
        Ok(u64::from(end - position))
    }
}
