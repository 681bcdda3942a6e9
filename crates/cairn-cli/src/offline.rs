//! `cairn log verify|dump`: offline tools for one partition directory
//! (`<data-dir>/topics/<partition-dir>`).
//!
//! They read through [`cairn_storage::inspect`], which writes nothing, and they hold the data
//! directory's lock while they run (shared to read, exclusive to repair): a running node holds it
//! exclusively, so a tool refuses to touch a live log, whose end looks exactly like a torn tail,
//! and a node cannot start while a tool reads. Only `verify --repair` writes: it reports the torn
//! tail first, then opens the log as a node would, which cuts it.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use cairn_storage::{FlushPolicy, Inspection, Log, LogConfig, RealDisk, SystemClock, TornTail};
use cairn_types::Offset;
use cairn_types::batch::BatchHeader;
use clap::Subcommand;

use crate::output;

/// The lock file a node holds in its data directory (`cairn_node`'s `lock_data_dir`).
const LOCK_FILE_NAME: &str = ".lock";
/// The directory of a data directory that holds the partition directories.
const TOPICS_DIR_NAME: &str = "topics";
/// Bytes of `dump` output gathered before they are written.
const DUMP_BUFFER_BYTES: usize = 64 * 1024;

/// `cairn log ...`.
#[derive(Subcommand)]
pub(crate) enum LogCommand {
    /// Verify every batch of a partition without changing anything, and report the torn tail a
    /// node would cut when it opens the partition. Refused while a node runs on the data directory.
    Verify {
        /// The partition's directory: <data-dir>/topics/<partition-dir>.
        dir: PathBuf,
        /// After reporting it, cut the torn tail as a node's recovery would.
        #[arg(long)]
        repair: bool,
    },
    /// Print batch headers: offsets, leader epoch, timestamps, record count, size. Read-only;
    /// refused while a node runs on the data directory.
    Dump {
        /// The partition's directory: <data-dir>/topics/<partition-dir>.
        dir: PathBuf,
        /// First offset to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Most batches to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// Runs a `cairn log` command.
pub(crate) fn run(command: LogCommand) -> anyhow::Result<()> {
    match command {
        LogCommand::Verify { dir, repair } => verify(&dir, repair),
        LogCommand::Dump { dir, from, limit } => dump(&dir, Offset(from), limit),
    }
}

/// How a tool uses the partition: what lock it takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Shared: other tools may read too; no node may run.
    Read,
    /// Exclusive, like a node.
    Write,
}

/// The partition directory `dir`, resolved, with the data directory's lock held for `access`
/// (`None` if `dir` is not inside a data directory, so no node can serve it).
fn claim(dir: &Path, access: Access) -> anyhow::Result<(PathBuf, Option<File>)> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{} is not a partition directory", dir.display()))?;
    if !dir.is_dir() {
        bail!("{} is not a partition directory: it is not a directory", dir.display());
    }
    let lock = match data_dir_of(&dir) {
        Some(data_dir) => lock_data_dir(&dir, data_dir, access)?,
        None => None,
    };
    Ok((dir, lock))
}

/// The data directory `partition` belongs to: the parent of its nearest `topics` ancestor.
fn data_dir_of(partition: &Path) -> Option<&Path> {
    partition
        .ancestors()
        .skip(1)
        .find(|a| a.file_name().is_some_and(|n| n == TOPICS_DIR_NAME))
        .and_then(Path::parent)
}

/// Takes the lock a node takes on its data directory (shared for [`Access::Read`]).
fn lock_data_dir(
    partition: &Path,
    data_dir: &Path,
    access: Access,
) -> anyhow::Result<Option<File>> {
    let path = data_dir.join(LOCK_FILE_NAME);
    let opened = match access {
        Access::Read => OpenOptions::new().read(true).open(&path),
        Access::Write => OpenOptions::new().create(true).truncate(false).write(true).open(&path),
    };
    let file = match opened {
        Ok(file) => file,
        // No node ever ran on this data directory, and reading creates nothing.
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("opening {}", path.display())),
    };
    let locked = match access {
        Access::Read => file.try_lock_shared(),
        Access::Write => file.try_lock(),
    };
    match locked {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => bail!(
            "{} belongs to data directory {}, which a running cairn node holds (its lock {} is \
             taken): stop the node first; `cairn log` tools only work on a stopped node's data",
            partition.display(),
            data_dir.display(),
            path.display()
        ),
        Err(TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// [`cairn_storage::inspect`] of a partition directory, refusing a directory without segments.
fn inspect(
    dir: &Path,
    from: Offset,
    visit: &mut dyn FnMut(&BatchHeader) -> ControlFlow<()>,
) -> anyhow::Result<Inspection> {
    let inspection = cairn_storage::inspect(&RealDisk, dir, from, visit)
        .map_err(|error| match error {
            cairn_storage::Error::Corruption { .. } => anyhow::anyhow!(
                "{error}; corruption is never cut: restore the partition from a replica or a backup"
            ),
            error => anyhow::Error::new(error),
        })
        .with_context(|| format!("verifying {}", dir.display()))?;
    if inspection.segments == 0 {
        bail!("{}", not_a_partition(dir));
    }
    Ok(inspection)
}

/// Why `dir` (which holds no segment) is refused, and what a partition directory looks like.
fn not_a_partition(dir: &Path) -> String {
    let mut message = format!(
        "{} is not a partition directory: it holds no segment files. A partition directory is \
         <data-dir>/{TOPICS_DIR_NAME}/<partition-dir> and holds segment files named like \
         00000000000000000000-00000000000000000000.log (base offset, first raft index; with \
         .index files, leader-epochs and recovery-point)",
        dir.display()
    );
    let subdirectory = std::fs::read_dir(dir).ok().and_then(|entries| {
        entries.flatten().find(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path())
    });
    if let Some(subdirectory) = subdirectory {
        let _ = write!(message, "; its subdirectories may be, e.g. {}", subdirectory.display());
    }
    message
}

fn verify(dir: &Path, repair: bool) -> anyhow::Result<()> {
    let access = if repair { Access::Write } else { Access::Read };
    let (dir, _lock) = claim(dir, access)?;
    let inspection = inspect(&dir, Offset(0), &mut |_| ControlFlow::Continue(()))?;
    let mut report = format!(
        "ok: offsets {}..{} in {} segment{}, {} bytes verified\n",
        inspection.start_offset,
        inspection.next_offset,
        inspection.segments,
        if inspection.segments == 1 { "" } else { "s" },
        inspection.verified_bytes
    );
    if inspection.epochs_rebuilt {
        report.push_str("leader-epoch history: missing or damaged; recovery rebuilds it\n");
    }
    let Some(tail) = &inspection.torn_tail else {
        report.push_str("torn tail: none, nothing to cut\n");
        return output::print(&report);
    };
    let _ = writeln!(report, "torn tail: {}", describe(tail));
    if !repair {
        report.push_str(
            "nothing was changed: a node cuts the torn tail when it opens the partition; \
             `cairn log verify --repair` cuts it now\n",
        );
        return output::print(&report);
    }
    output::print(&report)?;
    let cut = cut_torn_tail(&dir)?;
    if cut != tail.bytes {
        bail!("recovery cut {cut} bytes where {} were reported", tail.bytes);
    }
    output::print(&format!(
        "repaired: cut {cut} bytes; the log ends at offset {}\n",
        inspection.next_offset
    ))
}

/// What recovery would cut, in words.
fn describe(tail: &TornTail) -> String {
    format!(
        "{} bytes at byte {} of {} ({}); recovery cuts them",
        tail.bytes,
        tail.position,
        tail.path.display(),
        tail.reason
    )
}

/// Opens the log as a node does, which cuts the torn tail, and closes it. Returns the bytes cut.
fn cut_torn_tail(dir: &Path) -> anyhow::Result<u64> {
    let config = LogConfig { flush: FlushPolicy::Manual, ..LogConfig::default() };
    let log = Log::open(RealDisk, dir, config, Arc::new(SystemClock))
        .with_context(|| format!("opening the log in {}", dir.display()))?;
    let cut = log.recovery().truncated_bytes;
    log.close().with_context(|| format!("closing the log in {}", dir.display()))?;
    Ok(cut)
}

fn dump(dir: &Path, from: Offset, limit: usize) -> anyhow::Result<()> {
    let (dir, _lock) = claim(dir, Access::Read)?;
    let mut out = String::from(
        "base_offset\tlast_offset\tepoch\trecords\tbytes\tmax_timestamp\tcompression\tcontrol\n",
    );
    let mut printed = 0;
    let mut written = Ok(());
    let mut visit = |header: &BatchHeader| {
        if printed >= limit {
            return ControlFlow::Break(());
        }
        if header.last_offset() < from {
            return ControlFlow::Continue(());
        }
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{:?}\t{}",
            header.base_offset,
            header.last_offset(),
            header.partition_leader_epoch,
            header.record_count,
            header.total_bytes(),
            header.max_timestamp,
            header.compression(),
            header.is_control(),
        );
        printed += 1;
        if out.len() >= DUMP_BUFFER_BYTES {
            written = output::print(&out);
            out.clear();
        }
        if written.is_err() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    };
    let inspection = inspect(&dir, from, &mut visit);
    written?;
    // Batches before a failure are printed; nothing is when the directory is refused.
    if printed > 0 || inspection.is_ok() {
        output::print(&out)?;
    }
    let inspection = inspection?;
    if let Some(tail) = inspection.torn_tail.filter(|_| inspection.complete) {
        output::note(&format!("note: torn tail not shown: {}", describe(&tail)));
    }
    Ok(())
}
