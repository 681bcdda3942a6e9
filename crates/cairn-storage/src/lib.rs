//! cairn-storage: the segmented partition log.
//!
//! A [`Log`] is one directory holding a partition replica's data: segments of Kafka RecordBatch
//! v2 bytes (the same bytes producers send, consumers fetch and Raft replicates), a sparse index
//! per segment, the leader-epoch history and a recovery checkpoint. See `docs/internals/storage.md`
//! for the on-disk format and the recovery rules.
//!
//! - [`Log::append`] validates batches, assigns offsets and the leader epoch, and writes them in
//!   one write per segment; [`Log::flush`] makes them durable with one `fdatasync` (group commit).
//! - [`Log::locate`] returns file ranges for zero-copy sending; [`Log::read`] copies and
//!   verifies every batch.
//! - [`Log::truncate_suffix`] (Raft conflicts), [`Log::delete_prefix`] and
//!   [`Log::apply_retention`] never pass a caller-given bound.
//! - Every batch is one Raft entry, its [`cairn_types::RaftIndex`] derived from the segment
//!   layout: [`Log::append_replicated`] (the follower append, bytes kept as the leader wrote
//!   them), [`Log::entry_at`], [`Log::read_entries`], [`Log::truncate_after`],
//!   [`Log::purge_through`] and [`Log::reset`] are the Raft log store's side of the log.
//! - [`Log::open`] recovers: it walks only what the last checkpoint does not cover, truncates a
//!   torn tail, and reports corruption inside the log instead of truncating it.
//! - [`plan_cut`] and [`cut_damage`] cut a log at such corruption, moving what they drop aside,
//!   for a replica whose peers send it again (the Raft layer decides).
//! - [`inspect`] walks a log directory read-only (offline tools): it verifies every batch and
//!   reports the torn tail recovery would cut, without cutting or writing anything.
//! - [`VoteFile`] (`raft-vote`) and [`read_snapshot`] / [`write_snapshot`] (`raft-snapshot`)
//!   keep a replica's Raft vote, commit index and snapshot beside its log, in plain types: this
//!   crate knows nothing of openraft.
//!
//! All IO goes through the [`Disk`] trait: [`RealDisk`] in production, [`sim::SimDisk`] in tests,
//! which loses unsynced writes on crash, tears writes, flips bits and fails with EIO or ENOSPC.
//! This crate does not use tokio or know about the network.
//!
//! ```
//! use std::sync::Arc;
//! use cairn_storage::{Log, LogConfig, SystemClock, sim::SimDisk};
//! use cairn_types::{LeaderEpoch, Offset, batch::BatchBuilder};
//!
//! let disk = SimDisk::new(7);
//! let mut log = Log::open(disk, "/p0", LogConfig::default(), Arc::new(SystemClock))?;
//! let mut batch = BatchBuilder::new(0).record(None, Some(b"hello"), &[]).build();
//! let appended = log.append(&mut batch, LeaderEpoch(1))?;
//! assert_eq!(appended.base_offset, Offset(0));
//! let mut bytes = Vec::new();
//! log.read(Offset(0), 1 << 20, log.next_offset(), &mut bytes)?;
//! assert_eq!(bytes, batch);
//! # Ok::<(), cairn_storage::Error>(())
//! ```

mod atomic;
mod checkpoint;
mod clock;
mod config;
pub mod descriptors;
mod disk;
mod entries;
mod epochs;
mod error;
mod index;
mod inspect;
mod log;
mod producer_log;
mod producers;
mod recovery;
mod repair;
mod rewrite;
mod rounds;
mod segment;
pub mod sim;
mod slots;
mod snapshot;
mod verified;
mod vote;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{FlushPolicy, LogConfig, Retention};
pub use disk::{Disk, DiskFile, RealDisk, RealFile};
pub use entries::EntryHeader;
pub use epochs::EpochStart;
pub use error::{Error, Result};
pub use inspect::{Inspection, TornTail, inspect};
pub use log::{Appended, CacheDrops, FileRange, Located, Log, PendingFlush};
pub use producers::{DecodeError as ProducerStateError, ProducerBatch, ProducerStates, Verdict};
pub use recovery::Recovery;
pub use repair::{Damage, cut_damage, plan_cut};
pub use rewrite::{Rewritten, SealedSegment, rewrite_segment};
pub use rounds::{CompactionRound, ROUNDS_MAX};
pub use snapshot::{read_snapshot, read_state_file, write_snapshot, write_state_file};
pub use vote::{StoredLogId, StoredVote, VoteFile};
