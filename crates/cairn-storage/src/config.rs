//! Per-log configuration: segment rolling, index density and the durability policy.

use cairn_types::limits;

use crate::error::{Error, Result};

/// When appended data is made durable with `fdatasync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Every `append` call ends with an `fdatasync`: the call returns only once its batches are
    /// durable. Many batches per call is the group commit.
    EveryAppend,
    /// Flush when `bytes` unflushed bytes have accumulated or the oldest unflushed append is `ms`
    /// old (checked on `append` and on [`crate::Log::flush_if_due`]). Appends return before
    /// their data is durable; [`crate::Log::durable_offset`] says how far durability reaches.
    Interval {
        /// Longest time data stays unflushed, in milliseconds.
        ms: u64,
        /// Most unflushed bytes.
        bytes: u64,
    },
    /// Only explicit [`crate::Log::flush`] calls sync (the Raft layer drives durability).
    Manual,
}

/// Configuration of one log (one partition replica).
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Roll to a new segment before the active one would exceed this size (`segment.bytes`).
    pub segment_bytes: u64,
    /// Roll the active segment when it is older than this (`segment.ms`); `None` never.
    pub segment_ms: Option<i64>,
    /// Bytes of data between sparse index entries (`index.interval.bytes`).
    pub index_interval_bytes: u32,
    /// Unsynced index bytes after which the index file is fsynced; bounds crash-recovery work.
    pub index_sync_bytes: u64,
    /// Durability policy.
    pub flush: FlushPolicy,
    /// Keep only this many bytes at the durable end of the log in the OS page cache: each flush
    /// drops the cached pages of older data (`POSIX_FADV_DONTNEED`), so a write-once log
    /// recycles its pages instead of growing the page cache. Drops are made in steps of up to
    /// 8 MiB, so up to that much more stays cached. Readers of older data read from the device.
    /// `None` leaves caching to the OS.
    pub cache_window_bytes: Option<u64>,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes: limits::SEGMENT_BYTES_DEFAULT,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            index_interval_bytes: limits::INDEX_INTERVAL_BYTES_DEFAULT,
            index_sync_bytes: limits::INDEX_SYNC_BYTES_DEFAULT,
            flush: FlushPolicy::EveryAppend,
            cache_window_bytes: None,
        }
    }
}

impl LogConfig {
    /// Checks every field against its limits.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        if !(limits::SEGMENT_BYTES_MIN..=limits::SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(Error::Config(
                "segment_bytes outside [SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX]",
            ));
        }
        if self.segment_ms.is_some_and(|ms| ms <= 0) {
            return Err(Error::Config("segment_ms must be positive"));
        }
        if self.index_interval_bytes == 0 {
            return Err(Error::Config("index_interval_bytes must be positive"));
        }
        if let FlushPolicy::Interval { ms, bytes } = self.flush
            && (ms == 0 || bytes == 0)
        {
            return Err(Error::Config("flush interval ms and bytes must be positive"));
        }
        Ok(())
    }
}

/// Retention of old segments (`retention.bytes`, `retention.ms`); `None` keeps forever.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete the oldest segments while the log, without them, still holds at least this much.
    pub bytes: Option<u64>,
    /// Delete segments whose newest record is older than this.
    pub ms: Option<i64>,
}
