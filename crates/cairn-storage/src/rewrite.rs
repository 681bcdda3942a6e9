//! Rewriting sealed segments in place: the log's half of a compaction round (RFC 0007,
//! "Carrying out a round"). A batch is rewritten, never removed, so offsets, Raft indexes and
//! segment names do not move; only positions inside a segment do.
//!
//! 1. [`Log::sealed_below`] names the sealed segments holding batches below a point (a read,
//!    under the owner's read lock).
//! 2. [`rewrite_segment`] writes one segment's rewritten copy, each batch verified as it is
//!    read (CRC included), to `{name}.log.cleaned` and `{name}.index.cleaned`, both fsynced, holding no lock: a
//!    sealed segment is never written.
//! 3. [`Log::swap_rewritten`] (under the write lock) checks that the segment is still the one
//!    read (retention or a cut may have taken it meanwhile), then removes its index, renames
//!    the copy's data and index over it, each step made durable before the next, and takes the
//!    new segment into the log, every byte of it verified (RFC 0005).
//!
//! A crash before the swap leaves `.cleaned` files, which the next open removes; one inside it
//! leaves the old or the new data with no index, which the open rebuilds from the data.

use std::sync::Arc;

use cairn_types::batch::{BatchHeader, RecordBatch};
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{Offset, RaftIndex};

use crate::disk::{Disk, DiskFile, child, remove_if_present};
use crate::error::{Error, Result, io_error, io_or_no_space};
use crate::log::Log;
use crate::segment::{self, Boundary, DATA_SUFFIX, INDEX_SUFFIX, Segment, SegmentFiles, Walk};

/// Suffix of a rewritten copy's files, before the swap.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";

/// A sealed segment as [`Log::sealed_below`] saw it, with what its rewrite needs of the log.
pub struct SealedSegment<D: Disk> {
    disk: D,
    dir: std::path::PathBuf,
    index_interval_bytes: u32,
    base: Offset,
    first_index: RaftIndex,
    next: Offset,
    size: u32,
    data: Arc<D::File>,
    data_path: std::path::PathBuf,
}

impl<D: Disk> SealedSegment<D> {
    /// Offset of its first batch.
    #[must_use]
    pub fn base(&self) -> Offset {
        self.base
    }

    /// Offset after its last batch.
    #[must_use]
    pub fn next(&self) -> Offset {
        self.next
    }

    /// Its bytes.
    #[must_use]
    pub fn size(&self) -> u32 {
        self.size
    }
}

/// A segment's rewritten copy, durable under its `.cleaned` names, ready to swap in.
pub struct Rewritten<F> {
    /// The segment it replaces, as read.
    base: Offset,
    size_before: u32,
    segment: Segment<F>,
    /// Batches the rewrite changed.
    pub changed: usize,
}

impl<F> Rewritten<F> {
    /// Bytes of the copy.
    #[must_use]
    pub fn size(&self) -> u32 {
        self.segment.size
    }
}

impl<D: Disk> Log<D> {
    /// The sealed segments (not the active one) holding batches below `point`, oldest first.
    #[must_use]
    pub fn sealed_below(&self, point: Offset) -> Vec<SealedSegment<D>>
    where
        D: Clone,
    {
        let sealed = self.segments.iter().take(self.segments.len() - 1);
        sealed
            .filter(|segment| segment.base < point && segment.size > 0)
            .map(|segment| SealedSegment {
                disk: self.disk.clone(),
                dir: self.dir.clone(),
                index_interval_bytes: self.config.index_interval_bytes,
                base: segment.base,
                first_index: segment.first_index,
                next: segment.next,
                size: segment.size,
                data: Arc::clone(&segment.data),
                data_path: segment.data_path.clone(),
            })
            .collect()
    }

    /// Readies the log for a round below `point`: rolls the active segment if it holds a batch
    /// below it (segment boundaries differ between replicas, and a round rewrites sealed
    /// segments only), and makes the newest checkpoint durable. A checkpoint vouches for a
    /// prefix of the segment it names, so no durable one may name a segment the round
    /// rewrites: the newest names the active segment, whose base is now at or past `point`.
    ///
    /// # Errors
    /// As an append's roll (poisons); [`Error::Io`] syncing the checkpoint.
    pub fn seal_below(&mut self, point: Offset) -> Result<()> {
        self.check_writable()?;
        let active = self.active();
        if active.size > 0 && active.base < point {
            self.guarded(Log::roll)?;
        }
        let path = crate::disk::child(&self.dir, crate::checkpoint::FILE_NAME);
        self.checkpoint.sync().map_err(io_error("fsync", &path))
    }

    /// Bytes of the batches from the one holding `from` to the one before `to` (both clamped
    /// to the log): the sizes a dirty ratio compares.
    ///
    /// # Errors
    /// [`Error::Corruption`] or [`Error::Io`] from the header walks.
    pub fn bytes_between(&self, from: Offset, to: Offset) -> Result<u64> {
        Ok(self.position_of(to)?.saturating_sub(self.position_of(from)?))
    }

    /// Bytes of the log before the batch holding `offset` (all of it at or past the end).
    fn position_of(&self, offset: Offset) -> Result<u64> {
        let offset = offset.max(self.start_offset());
        if offset >= self.next_offset() {
            return Ok(self.segments.iter().map(|s| u64::from(s.size)).sum());
        }
        let at = self.segment_of(offset);
        let before: u64 = self.segments.iter().take(at).map(|s| u64::from(s.size)).sum();
        let segment = &self.segments[at];
        let within =
            if offset <= segment.base { 0 } else { segment.locate(offset, &self.epochs)?.position };
        Ok(before + within)
    }

    /// Takes `rewritten` into the log in place of its segment (module docs); `false`, and the
    /// copy removed, if that segment is no longer the one read.
    ///
    /// # Errors
    /// [`Error::Io`] (poisons: the segment may be half swapped until the next open).
    pub fn swap_rewritten(&mut self, rewritten: Rewritten<D::File>) -> Result<bool> {
        let at = self.segments.iter().position(|s| s.base == rewritten.base);
        let current = at.filter(|&at| {
            let segment = &self.segments[at];
            at + 1 < self.segments.len() && segment.size == rewritten.size_before
        });
        let Some(at) = current else {
            remove_copy(&self.disk, &rewritten.segment)?;
            return Ok(false);
        };
        self.guarded(|log| {
            let old = &log.segments[at];
            let (data_path, index_path) = (old.data_path.clone(), old.index_path.clone());
            let sync_dir =
                |log: &Log<D>| log.disk.sync_dir(&log.dir).map_err(io_error("fsync dir", &log.dir));
            remove_if_present(&log.disk, &index_path)?;
            sync_dir(log)?;
            let copy = &rewritten.segment;
            log.disk.rename(&copy.data_path, &data_path).map_err(io_error("rename", &data_path))?;
            sync_dir(log)?;
            log.disk
                .rename(&copy.index_path, &index_path)
                .map_err(io_error("rename", &index_path))?;
            sync_dir(log)?;
            let data = log.disk.open(&data_path).map_err(io_error("open", &data_path))?;
            let index = log.disk.open(&index_path).map_err(io_error("open", &index_path))?;
            let mut segment = rewritten.segment;
            (segment.data, segment.data_path) = (data, data_path);
            (segment.index_file, segment.index_path) = (index, index_path);
            segment.verified.insert(0, segment.size);
            log.segments[at] = segment;
            Ok(true)
        })
    }
}

/// Writes `sealed`'s batches, each passed through `rewrite` (`Ok(None)`: kept as it is) when it
/// starts below `point`, to the segment's `.cleaned` files, fsynced; `None` if no batch changed
/// (nothing is written then). `rewrite` must keep a batch's offsets and producer fields.
///
/// # Errors
/// [`Error::Corruption`] for a batch that fails verification; what `rewrite` returns, as
/// [`Error::Rewrite`]; [`Error::NoSpace`] or [`Error::Io`] writing the copy (removed then).
pub fn rewrite_segment<D: Disk>(
    sealed: &SealedSegment<D>,
    point: Offset,
    mut rewrite: impl FnMut(&RecordBatch<'_>) -> std::result::Result<Option<Vec<u8>>, String>,
) -> Result<Option<Rewritten<D::File>>> {
    let name = |suffix: &str| {
        let file = segment::file_name(sealed.base, sealed.first_index, suffix);
        child(&sealed.dir, &format!("{file}{CLEANED_SUFFIX}"))
    };
    let disk = &sealed.disk;
    let (data_path, index_path) = (name(DATA_SUFFIX), name(INDEX_SUFFIX));
    let data = disk.create(&data_path).map_err(io_or_no_space("create", &data_path))?;
    let index = disk.create(&index_path).map_err(io_or_no_space("create", &index_path))?;
    let files = SegmentFiles { data, data_path, index, index_path };
    let mut copy = Segment::new(sealed.base, sealed.first_index, files, 0);
    let written = copy_batches(sealed, point, &mut copy, &mut rewrite)
        .and_then(|changed| finish_copy(&mut copy).map(|()| changed));
    match written {
        Ok(0) => remove_copy(disk, &copy).map(|()| None),
        Ok(changed) => Ok(Some(Rewritten {
            base: sealed.base,
            size_before: sealed.size,
            segment: copy,
            changed,
        })),
        Err(error) => {
            // The copy is nobody's data; a failure to remove it leaves it to the next open.
            let _ = remove_copy(disk, &copy);
            Err(error)
        }
    }
}

/// Copies every batch of `sealed` into `copy`, rewritten below `point`; the batches changed.
fn copy_batches<D: Disk>(
    sealed: &SealedSegment<D>,
    point: Offset,
    copy: &mut Segment<D::File>,
    rewrite: &mut impl FnMut(&RecordBatch<'_>) -> std::result::Result<Option<Vec<u8>>, String>,
) -> Result<usize> {
    let start = Boundary { position: 0, offset: sealed.base, index: sealed.first_index };
    // Headers only: each batch's bytes are verified below, as read for the copy.
    let mut walk = Walk::new(&*sealed.data, &sealed.data_path, start, u64::from(sealed.size));
    let mut bytes = Vec::new();
    let mut changed = 0;
    while let Some(walked) = walk.next_header()? {
        bytes.resize(walked.header.total_bytes() as usize, 0);
        read_exact(&*sealed.data, &mut bytes, walked.position, &sealed.data_path)?;
        let (batch, _) =
            RecordBatch::validate_prefix(&bytes, BATCH_BYTES_MAX).map_err(|error| {
                Error::Corruption {
                    path: sealed.data_path.clone(),
                    position: walked.position,
                    reason: error.to_string(),
                }
            })?;
        let rewritten = if walked.header.base_offset < point {
            rewrite(&batch).map_err(Error::Rewrite)?
        } else {
            None
        };
        let (out, header) = match &rewritten {
            Some(out) => (out.as_slice(), same_offsets(out, &walked.header)?),
            None => (bytes.as_slice(), walked.header),
        };
        changed += usize::from(rewritten.is_some());
        let position = copy.size;
        copy.data
            .write_all_at(out, u64::from(position))
            .map_err(io_or_no_space("write", &copy.data_path))?;
        copy.on_append(position, &header, sealed.index_interval_bytes);
    }
    Ok(changed)
}

/// The header of `out`, a batch that must hold the offsets of `read`'s.
fn same_offsets(out: &[u8], read: &BatchHeader) -> Result<BatchHeader> {
    let header = *RecordBatch::validate(out).map_err(|e| Error::Rewrite(e.to_string()))?.header();
    if header.base_offset != read.base_offset || header.last_offset_delta != read.last_offset_delta
    {
        let base = header.base_offset;
        return Err(Error::Rewrite(format!("the rewrite moved the offsets of batch {base}")));
    }
    Ok(header)
}

/// Seals and writes the copy's index, and fsyncs both files.
fn finish_copy<F: DiskFile>(copy: &mut Segment<F>) -> Result<()> {
    copy.seal_index();
    copy.write_index()?;
    copy.data.sync_data().map_err(io_error("fsync", &copy.data_path))?;
    copy.index_file.sync_data().map_err(io_error("fsync", &copy.index_path))
}

fn read_exact<F: DiskFile>(
    file: &F,
    out: &mut [u8],
    position: u64,
    path: &std::path::Path,
) -> Result<()> {
    let read = file.read_at(out, position).map_err(io_error("read", path))?;
    if read < out.len() {
        let reason = format!("a batch of {} bytes cut at {read}", out.len());
        return Err(Error::Corruption { path: path.to_path_buf(), position, reason });
    }
    Ok(())
}

fn remove_copy<F>(disk: &impl Disk<File = F>, copy: &Segment<F>) -> Result<()> {
    remove_if_present(disk, &copy.data_path)?;
    remove_if_present(disk, &copy.index_path)
}

/// Removes the `.cleaned` copies named in `names`: a round a crash interrupted before its swap.
pub(crate) fn remove_stray_copies<D: Disk>(
    disk: &D,
    dir: &std::path::Path,
    names: &[String],
) -> Result<()> {
    for name in names.iter().filter(|name| name.ends_with(CLEANED_SUFFIX)) {
        remove_if_present(disk, &child(dir, name))?;
    }
    Ok(())
}
