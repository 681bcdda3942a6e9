//! The storage error type. Each variant's doc says what the caller does with it: reject the input,
//! retry later, or stop.

use std::io;
use std::path::PathBuf;

use cairn_types::batch::BatchError;
use cairn_types::{LeaderEpoch, Offset, RaftIndex};

/// Errors of cairn-storage: the [`crate::Log`], the [`crate::VoteFile`] and the Raft snapshot file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A batch handed to `append` is malformed. Reject the request; nothing was written.
    #[error("invalid batch at byte {position} of the append: {source}")]
    InvalidBatch {
        /// Byte position of the bad batch inside the appended buffer.
        position: usize,
        /// What is wrong with it.
        #[source]
        source: BatchError,
    },
    /// `append` was called with nothing, or with more than [`cairn_types::limits::APPEND_BYTES_MAX`].
    #[error("append of {bytes} bytes is outside 1..={limit}")]
    AppendSize {
        /// Bytes offered.
        bytes: usize,
        /// The ceiling.
        limit: usize,
    },
    /// The disk is full. Retriable: nothing of the failed call was kept, the log is consistent and
    /// accepts writes again once space is freed.
    #[error("no space left on device writing {path}")]
    NoSpace {
        /// File being written.
        path: PathBuf,
    },
    /// An IO operation failed. Fatal: the log is poisoned and accepts no further writes.
    #[error("{op} failed on {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A segment rewrite's function failed or broke a batch's offsets (`rewrite.rs`). Nothing
    /// of the log changed; the copy was removed.
    #[error("rewriting a segment failed: {0}")]
    Rewrite(String),
    /// An earlier write or fsync failed, so the durable state of the log is unknown (fail-stop,
    /// "fsyncgate"). Fatal until the process reopens the log and recovers from disk.
    #[error("log is poisoned by an earlier io failure")]
    Poisoned,
    /// Stored bytes inside the log failed validation (checksum, offsets, epochs, framing). Never
    /// served and never truncated: the range must be repaired from a replica.
    #[error("corruption in {path} at byte {position}: {reason}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte position of the first bad batch.
        position: u64,
        /// What failed.
        reason: String,
    },
    /// The offset is not in `[start, end]` of the log.
    #[error("offset {offset} is outside the log [{start}, {end}]")]
    OffsetOutOfRange {
        /// Requested offset.
        offset: Offset,
        /// Log start offset.
        start: Offset,
        /// Log end offset (next offset to be assigned).
        end: Offset,
    },
    /// A truncation or deletion would pass the bound the caller set (e.g. the commit index).
    #[error("{op} to offset {offset} would pass the bound {bound}")]
    BeyondBound {
        /// `truncate_suffix` or `delete_prefix`.
        op: &'static str,
        /// Requested offset.
        offset: Offset,
        /// The caller's bound.
        bound: Offset,
    },
    /// A suffix truncation at an offset inside a batch: batches are atomic.
    #[error("offset {offset} is inside a batch, not at a batch boundary")]
    NotBatchBoundary {
        /// Requested offset.
        offset: Offset,
    },
    /// An append carries an epoch older than one already in the log: a stale leader.
    #[error("leader epoch {epoch} is older than the log's latest epoch {latest}")]
    StaleEpoch {
        /// Epoch of the append.
        epoch: LeaderEpoch,
        /// Latest epoch in the log.
        latest: LeaderEpoch,
    },
    /// A Raft snapshot to write is larger than [`cairn_types::limits::SNAPSHOT_BYTES_MAX`]: the
    /// Raft layer's encoding outgrew its bound. Nothing was written; stop the group.
    #[error("snapshot of {bytes} bytes is above the limit of {limit}")]
    SnapshotSize {
        /// Bytes offered.
        bytes: usize,
        /// The ceiling.
        limit: usize,
    },
    /// A replicated batch does not continue the log: its base offset is not the log end. The
    /// follower's log and the leader's disagree here (or the leader sent from the wrong place);
    /// nothing of the append was written. The Raft layer resolves it (truncation or a retry
    /// from the right index), never the client.
    #[error(
        "replicated batch at offset {found} does not continue the log, which ends at {expected}"
    )]
    Diverged {
        /// The log end: the offset the batch had to start at.
        expected: Offset,
        /// The base offset the batch carries.
        found: Offset,
    },
    /// The Raft index is not in `[start, end]` of the log.
    #[error("raft index {index} is outside the log [{start}, {end}]")]
    IndexOutOfRange {
        /// Requested index.
        index: RaftIndex,
        /// First index in the log.
        start: RaftIndex,
        /// Index after the last entry.
        end: RaftIndex,
    },
    /// The configuration is out of its limits.
    #[error("invalid log config: {0}")]
    Config(&'static str),
}

impl Error {
    /// Whether the same call may succeed later without reopening the log.
    #[must_use]
    pub fn is_retriable(&self) -> bool {
        matches!(self, Error::NoSpace { .. })
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) const ENOSPC: i32 = 28;

/// Wraps an IO error with context.
pub(crate) fn io_error(
    op: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}

/// Wraps an IO error with context, as [`io_error`], except that a full disk is
/// [`Error::NoSpace`].
pub(crate) fn io_or_no_space(
    op: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| {
        if source.raw_os_error() == Some(ENOSPC) {
            Error::NoSpace { path }
        } else {
            Error::Io { op, path, source }
        }
    }
}
