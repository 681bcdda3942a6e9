//! A replica whose log is damaged inside (a bit flip with valid batches after it) is repaired
//! from its peers (DESIGN §3.7; `docs/internals/replication.md`, "Storage faults"):
//! [`GroupLog::open_repairing`] cuts the log at the first bad batch (cairn-storage's
//! `plan_cut` and `cut_damage`: everything from there on moved aside, never deleted) and the
//! group then abstains, as a replica whose recovery cut committed entries does
//! ([`GroupLog::lost_committed`]), until the leader has sent its log back.
//!
//! The log held entries up to some index before the cut, and this replica may have
//! acknowledged every one of them (a follower acknowledges an append once it is durable, and
//! may not have learned yet that it committed). Before anything is cut, that index (an upper
//! bound: `Damage::held_end`) is written to `raft-restore`, durably, beside the log; the group
//! abstains until its log holds it again, across restarts, and the file is removed once it
//! does. Format: cairn-storage's state file (`write_state_file`): 8 bytes, the last index to
//! hold again, big-endian, checksummed.

use std::io;
use std::path::Path;
use std::sync::Arc;

use cairn_metrics::Histogram;
use cairn_storage::{Clock, Damage, Disk, Log, LogConfig, VoteFile, cut_damage, plan_cut};
use cairn_types::RaftIndex;

use crate::group::{GroupLog, StoreError};

/// The file recording the index a damaged log must hold again before its replica votes.
pub(crate) const RESTORE_FILE: &str = "raft-restore";

/// Cuts at most this many separate damages in one open: a log damaged in more places than
/// this is left offline (each cut is a full verifying walk of the log).
const REPAIR_CUTS_MAX: usize = 8;

/// The index the log in `dir` must hold again, if `raft-restore` says so.
pub(crate) fn read_restore<D: Disk>(disk: &D, dir: &Path) -> Result<Option<RaftIndex>, StoreError> {
    let Some(bytes) = cairn_storage::read_state_file(disk, dir, RESTORE_FILE, 8)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
        StoreError::Invalid(format!("{RESTORE_FILE} holds {} bytes, not 8", bytes.len()))
    })?;
    Ok(Some(RaftIndex(u64::from_be_bytes(bytes))))
}

/// Durably records that the log in `dir` must hold `index` again: the larger of it and what
/// `raft-restore` holds already (an earlier cut not yet restored).
fn save_restore<D: Disk>(disk: &D, dir: &Path, index: RaftIndex) -> Result<(), StoreError> {
    let index = read_restore(disk, dir)?.map_or(index, |saved| saved.max(index));
    cairn_storage::write_state_file(disk, dir, RESTORE_FILE, &index.0.to_be_bytes(), 8)?;
    Ok(())
}

/// Removes `raft-restore` from `dir` (the log holds its index again), durably.
pub(crate) fn clear_restore<D: Disk>(disk: &D, dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(RESTORE_FILE);
    match disk.remove_file(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_failed("remove", &path, error)),
    }
    disk.sync_dir(dir).map_err(|error| io_failed("fsync dir", dir, error))
}

fn io_failed(op: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Storage(cairn_storage::Error::Io { op, path: path.to_path_buf(), source })
}

impl<D: Disk + Clone> GroupLog<D> {
    /// [`GroupLog::open_in_synced_parent`] for a replica whose peers can send its log again
    /// (a group of several voters): a log damaged inside is cut at the first bad batch instead
    /// of staying offline (module docs), after `raft-restore` records what it held. Each cut is
    /// in [`GroupLog::repaired`]. Anything else that stops the open (a vote or snapshot file
    /// that cannot be read, damage the cut cannot remove, an IO error) is returned as by
    /// [`GroupLog::open_in_synced_parent`], nothing cut.
    ///
    /// # Errors
    /// As [`GroupLog::open_in_synced_parent`].
    pub fn open_repairing(
        disk: D,
        dir: impl AsRef<Path>,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        flush_seconds: Arc<Histogram>,
    ) -> Result<GroupLog<D>, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let mut cuts = Vec::new();
        loop {
            let opened =
                Log::open_in_synced_parent(disk.clone(), &dir, config.clone(), Arc::clone(&clock));
            let error = match opened {
                Ok(log) => return GroupLog::over(disk, dir, log, flush_seconds, cuts),
                Err(error) => error,
            };
            if cuts.len() == REPAIR_CUTS_MAX {
                return Err(error.into());
            }
            let Some(damage) = plan_cut(&disk, &dir, &error)? else { return Err(error.into()) };
            cut(&disk, &dir, &damage, clock.now_ms())?;
            cuts.push(damage);
        }
    }
}

/// Cuts `damage` out of the log in `dir`, once its vote is known sound and `raft-restore`
/// holds what the log held; what is cut goes to `damaged/<now_ms>/` of `dir`.
fn cut<D: Disk + Clone>(
    disk: &D,
    dir: &Path,
    damage: &Damage,
    now_ms: i64,
) -> Result<(), StoreError> {
    // A replica whose vote is unknown stays offline (it could vote twice in a term): cut
    // nothing for it.
    VoteFile::open(disk.clone(), dir)?;
    save_restore(disk, dir, RaftIndex(damage.held_end.0.saturating_sub(1)))?;
    let aside = dir.join("damaged").join(now_ms.to_string());
    cut_damage(disk, dir, damage, &aside)?;
    Ok(())
}
