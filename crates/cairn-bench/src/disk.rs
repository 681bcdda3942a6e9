//! `cairn-bench disk`: the physical limit of the disk the data goes to, measured the same way
//! every time (the method of `crates/cairn-storage/benches/log.rs`):
//!
//! 1. *fdatasync latency*: `--sync-rounds` rounds of a 4 KiB `pwrite` appended to a fresh file
//!    followed by `fdatasync`, each timed.
//! 2. *page-cache warm-up* (unless `--no-warm-up`): `--bytes` written to a scratch file in
//!    1 MiB writes and deleted without syncing. On VMs that hand free guest pages back to the
//!    host (balloon free page reporting), writing into cold page-cache pages faults them back
//!    in and costs more than the disk; whether a measurement pays that depends on what ran
//!    before it, so it is paid here, untimed.
//! 3. *raw sequential write*: `--bytes` in 1 MiB `pwrite`s to a fresh file, then one
//!    `fdatasync`, timed to its end: the sequential write bandwidth cairn's log is judged
//!    against.
//!
//! All in a fresh subdirectory of `--dir`, removed at the end. Never a tmpfs.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};

use crate::cli::DiskArgs;
use crate::monitor::Monitor;
use crate::report::Report;
use crate::stats::{Counters, LatencySummary, Recorder, micros};
use crate::workload::Rng;

/// Size of one write of the sequential measurement and the warm-up.
pub const WRITE_BYTES: usize = 1024 * 1024;
/// Size of one append of the fdatasync latency measurement.
pub const SYNC_WRITE_BYTES: usize = 4 * 1024;

/// Removes the run's directory when dropped, also when a measurement fails.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover directory under target/ is harmless.
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Bytes that no file system would compress.
fn pattern(len: usize) -> Vec<u8> {
    let mut rng = Rng::new(len as u64);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// What the measurements found.
#[derive(Debug, Default)]
struct Measured {
    /// fdatasync latencies by second, and the raw write's bytes by second.
    recorder: Recorder,
    /// Bytes of the raw write.
    raw_bytes: u64,
    /// Its wall time, to the end of the fdatasync.
    raw_elapsed: Duration,
    /// The part of it in the final fdatasync.
    raw_sync: Duration,
    /// fdatasync latencies of 4 KiB appends.
    sync_latencies: Recorder,
}

/// The measurements, synchronous (run on a blocking thread).
fn measure(
    dir: &Path,
    args: &DiskArgs,
    start: Instant,
    counters: &Counters,
) -> anyhow::Result<Measured> {
    let mut measured = Measured::default();

    let path = dir.join("fdatasync-latency");
    let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
    let small = pattern(SYNC_WRITE_BYTES);
    for round in 0..args.sync_rounds {
        let began = Instant::now();
        file.write_all_at(&small, round * SYNC_WRITE_BYTES as u64)?;
        file.sync_data()?;
        let latency = micros(began.elapsed());
        let at = start.elapsed();
        measured.sync_latencies.latency(at, latency, 1);
        measured.recorder.latency(at, latency, 1);
    }
    drop(file);
    fs::remove_file(&path)?;

    let large = pattern(WRITE_BYTES);
    if !args.no_warm_up {
        let path = dir.join("warm-up");
        let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
        let mut position = 0;
        while position < args.bytes {
            file.write_all_at(&large, position)?;
            position += WRITE_BYTES as u64;
        }
        drop(file);
        fs::remove_file(&path)?;
    }

    let path = dir.join("raw-single-sync");
    let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
    let began = Instant::now();
    let mut position = 0;
    while position < args.bytes {
        file.write_all_at(&large, position)?;
        position += WRITE_BYTES as u64;
        counters.add(1, WRITE_BYTES as u64);
        measured.recorder.count(start.elapsed(), 1, WRITE_BYTES as u64);
    }
    let sync_began = Instant::now();
    file.sync_data()?;
    measured.raw_sync = sync_began.elapsed();
    measured.raw_elapsed = began.elapsed();
    measured.raw_bytes = position;
    drop(file);
    fs::remove_file(&path)?;
    Ok(measured)
}

/// The file system type holding `dir`, from `/proc/self/mounts` (longest matching mount point).
fn filesystem_of(dir: &Path) -> Option<String> {
    let dir = fs::canonicalize(dir).ok()?;
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let mount_point = fields.next()?;
            let kind = fields.next()?;
            dir.starts_with(mount_point)
                .then(|| (mount_point.len(), format!("{kind} ({device} on {mount_point})")))
        })
        .max_by_key(|(length, _)| *length)
        .map(|(_, description)| description)
}

/// Runs `cairn-bench disk`.
///
/// # Errors
/// If the directory cannot be created or a write or fdatasync fails.
pub async fn run(args: &DiskArgs) -> anyhow::Result<Report> {
    if args.bytes < WRITE_BYTES as u64 {
        bail!("--bytes must be at least {WRITE_BYTES}");
    }
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let dir = args.dir.join(format!("disk-{}-{stamp}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let scratch = Scratch(dir.clone());
    let filesystem = filesystem_of(&dir);

    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let monitor = Monitor::start(
        "disk",
        Arc::clone(&counters),
        start,
        !args.output.quiet,
        args.output.broker_pid.clone(),
    );
    let measured = {
        let args = args.clone();
        let counters = Arc::clone(&counters);
        tokio::task::spawn_blocking(move || measure(&dir, &args, start, &counters)).await
    };
    let total_elapsed = start.elapsed();
    let observed = monitor.stop().await;
    drop(scratch);
    let measured = measured.context("the disk measurement thread failed")??;

    let mut report = Report::new(
        "disk",
        serde_json::to_value(args)?,
        measured.raw_bytes / WRITE_BYTES as u64,
        measured.raw_bytes,
        measured.raw_elapsed.as_secs_f64(),
    );
    if let Some(latency) = LatencySummary::of(&measured.sync_latencies.total) {
        report.latencies.insert("fdatasync_4k".to_owned(), latency);
    }
    report.values.insert("raw_write_mb_per_s".to_owned(), report.mb_per_s);
    report.values.insert("raw_final_fdatasync_s".to_owned(), measured.raw_sync.as_secs_f64());
    report.broker_rss_max_bytes = observed.rss_max_bytes();
    report.series = measured.recorder.series(&observed.rss_bytes, total_elapsed);
    report.notes.push(format!(
        "raw write: {} MiB in 1 MiB pwrites to a fresh file, one fdatasync at the end{}; \
         records are 1 MiB writes",
        measured.raw_bytes / WRITE_BYTES as u64,
        if args.no_warm_up { ", no page-cache warm-up" } else { ", after a page-cache warm-up" }
    ));
    report.notes.push(format!(
        "fdatasync latency: {} rounds of a 4 KiB append + fdatasync",
        args.sync_rounds
    ));
    if let Some(filesystem) = filesystem {
        report.notes.push(format!("file system: {filesystem}"));
    }
    Ok(report)
}
