//! Storage throughput benchmark (issue 2): group-committed append, reads from the page cache and
//! reopen time of a large log, each printed beside the raw sequential write bandwidth of the same
//! disk measured in the same run.
//!
//! ```text
//! cargo bench -p cairn-storage --bench log                        # full run, 1-2 minutes
//! CAIRN_BENCH_QUICK=1 cargo bench -p cairn-storage --bench log    # smoke run, seconds
//! ```
//!
//! Environment knobs:
//! - `CAIRN_BENCH_DIR`: where the data goes (a fresh subdirectory is created and removed at the
//!   end). Default `target/bench-data/`, on the same disk as the repository. Never point it at a
//!   tmpfs: the numbers would be memory bandwidth.
//! - `CAIRN_BENCH_GIB`: size of the log the reopen measurement builds (default 2, quick 0.25).
//! - `CAIRN_BENCH_QUICK=1`: small sizes everywhere, to check that the program runs.
//! - `CAIRN_BENCH_CASE_SECS`: safety cap on one write case (default 120); a capped case reports
//!   the bytes it did write.
//! - `CAIRN_BENCH_WARM_UP=0`: do not write and delete a scratch file before each write case
//!   (see `warm_page_cache`: on VMs that hand free pages back to the host, writing into cold
//!   page-cache pages costs more than the disk).
//!
//! What is measured (MB/s and GB/s are decimal, 10^6 and 10^9 bytes per second), in one group
//! per write size W of 16 KiB, 64 KiB, 256 KiB and 1 MiB. Each group measures its raw baselines
//! right before its append cases, so that both see the disk and the page cache in the same state
//! (virtual disks often burst above their sustained bandwidth for a while; baselines from
//! minutes earlier would compare different states of the device). Results and their analysis:
//! `docs/benchmarks.md`.
//! 1. `raw`: `std::fs` writes of 1 GiB to a fresh file, the baselines.
//!    - `raw single-sync`: 1 MiB `pwrite`s, one `fdatasync` at the end (timed). The disk's
//!      sequential write bandwidth, against which "append >= 70% of raw" is judged.
//!    - `raw sync-every W`: `pwrite` of W bytes then `fdatasync`, repeated: the best a log can do
//!      if it must be durable after every W-byte write (the same sync cadence as
//!      `FlushPolicy::EveryAppend` with W-byte appends).
//!    - `fdatasync latency` (once, before the groups): 4 KiB `pwrite` + `fdatasync` appended to
//!      a fresh file, p50/p99 over 1000 rounds.
//! 2. `append`: [`Log::append`] of 1 GiB in buffers of W bytes (16-record batches of 1 KiB
//!    records built with [`BatchBuilder`]; the same buffer is appended again and again, the log
//!    rewrites its offsets in place), with `EveryAppend` (one `fdatasync` per append: the group
//!    commit of one buffer) and `Interval { ms: 2, bytes: 4 MiB }` (group commit across
//!    appends), up to the final `flush`. Segments of 256 MiB, so rolls (and their fsyncs) are
//!    included. Reported: MB/s, records/s, the number of commits (appends after which the
//!    durable offset moved), and the ratios to both raw baselines of the group.
//! 3. `read`: the whole log written by the last append case (1 MiB, interval), from the page cache, twice
//!    (the second, warm pass is reported): [`Log::read`] (copy + CRC and offset checks) in
//!    1 MiB steps, and [`Log::locate`] (header lookup only) plus a `pread` of each range without
//!    verification, the path a `sendfile` would take.
//! 4. `reopen`: [`Log::open`] of a `CAIRN_BENCH_GIB` log in >= 8 segments after [`Log::close`]
//!    (median of 5), then after simulated crashes: the log is reopened, 4 MiB or 64 MiB are
//!    appended without a flush and the log is dropped without `close`. The page cache keeps the
//!    bytes but the recovery checkpoint is behind, so the next open verifies the tail.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_storage::{DiskFile, FlushPolicy, Log, LogConfig, RealDisk, SystemClock};
use cairn_types::LeaderEpoch;
use cairn_types::batch::BatchBuilder;
use cairn_types::limits::{SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: u64 = 1024 * 1024 * 1024;

/// Sizes of one write (raw) or one append buffer (log): the group-commit sizes of the issue.
const WRITE_SIZES_BYTES: [usize; 4] = [16 * KIB, 64 * KIB, 256 * KIB, MIB];
/// Records per RecordBatch: 16 records of ~1 KiB make a ~16 KiB batch.
const BATCH_RECORDS: usize = 16;
/// Value size of a record; with its key and framing a record is ~1 KiB.
const VALUE_BYTES: usize = 1000;
/// Segment size of the full run: small enough that 1 GiB of appends rolls 3 times.
const SEGMENT_BYTES: u64 = 256 * MIB as u64;
/// Read step, for both read measurements.
const READ_STEP_BYTES: u32 = MIB as u32;
/// Opens timed per reopen case; the median is reported.
const OPENS: usize = 5;
/// Unflushed tails of the crash cases.
const CRASH_TAILS_BYTES: [usize; 2] = [4 * MIB, 64 * MIB];
/// The flush policy that commits groups across appends.
const INTERVAL_POLICY: FlushPolicy = FlushPolicy::Interval { ms: 2, bytes: 4 * MIB as u64 };
/// The append cases of each group: one fsync per append, group commit across appends on the
/// appending thread, and group commit by a flusher thread (`Manual` policy, `begin_flush` /
/// `complete_flush` back to back) so that fsyncs overlap the appends.
const POLICIES: [(&str, FlushPolicy); 3] = [
    ("every-append", FlushPolicy::EveryAppend),
    ("interval", INTERVAL_POLICY),
    ("pipelined", FlushPolicy::Manual),
];
const EPOCH: LeaderEpoch = LeaderEpoch(1);

/// Run parameters, from the environment.
struct Settings {
    /// A fresh directory for this run, removed at the end.
    dir: PathBuf,
    quick: bool,
    /// Bytes written by each raw and append case.
    write_bytes: u64,
    /// Size of the reopen log.
    reopen_bytes: u64,
    /// Rounds of the fdatasync latency measurement.
    sync_rounds: usize,
    /// Safety cap on one write case.
    case_time_max: Duration,
    /// Whether each timed write case is preceded by [`warm_page_cache`].
    warm_up: bool,
}

impl Settings {
    fn from_env() -> BenchResult<Settings> {
        let quick = std::env::var("CAIRN_BENCH_QUICK").is_ok_and(|v| v == "1");
        let gib: f64 = match std::env::var("CAIRN_BENCH_GIB") {
            Ok(v) => v.parse().map_err(|e| format!("CAIRN_BENCH_GIB={v}: {e}"))?,
            Err(_) if quick => 0.25,
            Err(_) => 2.0,
        };
        let case_secs: u64 = match std::env::var("CAIRN_BENCH_CASE_SECS") {
            Ok(v) => v.parse().map_err(|e| format!("CAIRN_BENCH_CASE_SECS={v}: {e}"))?,
            Err(_) => 120,
        };
        let base = match std::env::var_os("CAIRN_BENCH_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => target_dir().join("bench-data"),
        };
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
        let dir = base.join(format!("log-{}-{stamp}", std::process::id()));
        Ok(Settings {
            dir,
            quick,
            write_bytes: if quick { 64 * MIB as u64 } else { GIB },
            reopen_bytes: (gib * GIB as f64) as u64,
            sync_rounds: if quick { 200 } else { 1000 },
            case_time_max: Duration::from_secs(case_secs),
            warm_up: std::env::var("CAIRN_BENCH_WARM_UP").map_or(true, |v| v != "0"),
        })
    }
}

/// The workspace's target directory: `CARGO_TARGET_DIR` if set, else `<workspace>/target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    }
}

/// Removes the run's directory when dropped, also when a measurement fails.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover directory under target/ is harmless and `cargo clean` removes it.
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn main() -> BenchResult<()> {
    let settings = Settings::from_env()?;
    fs::create_dir_all(&settings.dir)?;
    let _scratch = Scratch(settings.dir.clone());
    let mut report = Report::default();
    machine_facts(&settings, &mut report)?;
    fdatasync_latency(&settings, &mut report)?;
    let read_log = write_groups(&settings, &mut report)?;
    reads(&read_log, &mut report)?;
    fs::remove_dir_all(&read_log)?;
    reopen(&settings, &mut report)?;
    report.print();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Raw baselines and appends, one group per write size W.

/// Runs, for each W of [`WRITE_SIZES_BYTES`], the raw baselines and then the two append cases,
/// so that each append is compared with baselines measured next to it: the virtual disk this
/// was written on bursts well above its sustained bandwidth for a few seconds, and baselines
/// taken minutes earlier would compare different states of the device. Returns the directory of
/// the last append log, kept for the read measurement.
fn write_groups(settings: &Settings, report: &mut Report) -> BenchResult<PathBuf> {
    let batch = batch()?;
    let segment_bytes = SEGMENT_BYTES.min(settings.write_bytes / 4).max(SEGMENT_BYTES_MIN);
    let mut kept = None;
    for write_bytes in WRITE_SIZES_BYTES {
        let group = size_name(write_bytes);
        progress(&format!("{group}: raw single-sync"));
        warm_page_cache(settings)?;
        let run = raw_write(settings, "raw-single", MIB, false)?;
        let raw_single_mb_s = mb_per_s(run.bytes, run.elapsed);
        report.raw_row(&group, "single-sync", MIB, "once at the end", &run);
        progress(&format!("{group}: raw sync-every"));
        warm_page_cache(settings)?;
        let run = raw_write(settings, "raw-sync-every", write_bytes, true)?;
        let raw_same_cadence_mb_s = mb_per_s(run.bytes, run.elapsed);
        report.raw_row(&group, "sync-every", write_bytes, "after every write", &run);

        let mut buffer = append_buffer(&batch, write_bytes);
        for (policy_name, policy) in POLICIES {
            progress(&format!("{group}: append {policy_name}"));
            let dir = settings.dir.join(format!("append-{policy_name}-{write_bytes}"));
            let config = LogConfig { segment_bytes, flush: policy, ..LogConfig::default() };
            warm_page_cache(settings)?;
            let run = append_run(settings, &dir, config, &mut buffer)?;
            let records = run.appends * (buffer.len() / batch.len() * BATCH_RECORDS) as u64;
            report.append_row(AppendRow {
                policy: policy_name,
                write_bytes,
                buffer_bytes: buffer.len(),
                run,
                records,
                raw_same_cadence_mb_s,
                raw_single_mb_s,
            });
            if let Some(previous) = kept.replace(dir) {
                fs::remove_dir_all(previous)?;
            }
        }
    }
    kept.ok_or_else(|| "no append case ran".into())
}

/// What one raw write case did.
struct RawRun {
    bytes: u64,
    /// Until the last byte was durable.
    elapsed: Duration,
    /// Part of `elapsed` spent inside `fdatasync`.
    sync_elapsed: Duration,
    cpu: CpuTime,
}

/// Writes `settings.write_bytes` to a fresh file in `write_bytes` pieces, timed until they are
/// durable.
fn raw_write(
    settings: &Settings,
    name: &str,
    write_bytes: usize,
    sync_every_write: bool,
) -> BenchResult<RawRun> {
    let path = settings.dir.join(name);
    let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
    let buffer = pattern(write_bytes);
    let cpu_start = CpuTime::now();
    let start = Instant::now();
    let mut position = 0;
    let mut sync_elapsed = Duration::ZERO;
    while position < settings.write_bytes && start.elapsed() < settings.case_time_max {
        file.write_all_at(&buffer, position)?;
        position += write_bytes as u64;
        if sync_every_write {
            let sync_start = Instant::now();
            file.sync_data()?;
            sync_elapsed += sync_start.elapsed();
        }
    }
    if !sync_every_write {
        let sync_start = Instant::now();
        file.sync_data()?;
        sync_elapsed += sync_start.elapsed();
    }
    let elapsed = start.elapsed();
    let cpu = CpuTime::now().since(cpu_start);
    drop(file);
    fs::remove_file(&path)?;
    Ok(RawRun { bytes: position, elapsed, sync_elapsed, cpu })
}

/// Writes `settings.write_bytes` to a scratch file without syncing and deletes it, so that the
/// next case writes into page-cache pages the guest has just used.
///
/// Why: in a VM whose balloon driver reports free pages to the host (`page_reporting`), pages
/// that stayed free for a couple of seconds are handed back, and writing into them again faults
/// them in from the host. On the machine of `docs/benchmarks.md` that costs ~2 s per GiB
/// written (the copy into the page cache runs at ~500 MB/s instead of ~4 GB/s), and whether a
/// case pays it depends on what ran before it. Deleted before writeback starts, the scratch
/// data never reaches the disk. `CAIRN_BENCH_WARM_UP=0` turns this off.
fn warm_page_cache(settings: &Settings) -> BenchResult<()> {
    if !settings.warm_up {
        return Ok(());
    }
    let path = settings.dir.join("warm-up");
    let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
    let buffer = pattern(MIB);
    let mut position = 0;
    while position < settings.write_bytes {
        file.write_all_at(&buffer, position)?;
        position += buffer.len() as u64;
    }
    drop(file);
    fs::remove_file(&path)?;
    Ok(())
}

/// CPU time of this process, user and system, from `/proc/self/stat` (10 ms resolution). The
/// system time of a write case is mostly copying into the page cache and allocating its pages;
/// wall time minus CPU time is mostly waiting for `fdatasync`.
#[derive(Clone, Copy, Default)]
struct CpuTime {
    user: Duration,
    system: Duration,
}

impl std::fmt::Display for CpuTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} / {:.2}", self.user.as_secs_f64(), self.system.as_secs_f64())
    }
}

impl CpuTime {
    /// Zero if `/proc/self/stat` cannot be read (not Linux): the columns then read 0.
    fn now() -> CpuTime {
        let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        let fields: Vec<&str> =
            stat.rfind(')').map_or("", |end| &stat[end + 1..]).split_whitespace().collect();
        // Linux reports these in USER_HZ ticks, 100 per second on every architecture.
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        CpuTime {
            user: Duration::from_millis(ticks(11) * 10),
            system: Duration::from_millis(ticks(12) * 10),
        }
    }

    fn since(self, start: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(start.user),
            system: self.system.saturating_sub(start.system),
        }
    }
}

fn fdatasync_latency(settings: &Settings, report: &mut Report) -> BenchResult<()> {
    progress("fdatasync latency");
    let path = settings.dir.join("raw-latency");
    let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
    let buffer = pattern(4 * KIB);
    let mut latencies = Vec::with_capacity(settings.sync_rounds);
    for round in 0..settings.sync_rounds {
        let start = Instant::now();
        file.write_all_at(&buffer, (round * buffer.len()) as u64)?;
        file.sync_data()?;
        latencies.push(start.elapsed());
    }
    drop(file);
    fs::remove_file(&path)?;
    latencies.sort_unstable();
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    report.sync_latency(latencies.len(), quantile(0.5), quantile(0.99), quantile(1.0));
    Ok(())
}

/// Non-zero, non-repeating-looking bytes (no file system here compresses, but be safe).
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Appends.

/// One ~16 KiB batch of [`BATCH_RECORDS`] records, key `key-NNNN` and a [`VALUE_BYTES`] value.
fn batch() -> BenchResult<Vec<u8>> {
    let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let value = pattern(VALUE_BYTES);
    let mut builder = BatchBuilder::new(now_ms);
    for i in 0..BATCH_RECORDS {
        builder = builder.record(Some(format!("key-{i:04}").as_bytes()), Some(&value), &[]);
    }
    Ok(builder.build())
}

/// As many copies of `batch` as fit in `bytes_max` (at least one), concatenated.
fn append_buffer(batch: &[u8], bytes_max: usize) -> Vec<u8> {
    batch.repeat((bytes_max / batch.len()).max(1))
}

/// What one append case did.
struct AppendRun {
    bytes: u64,
    appends: u64,
    /// Appends after which the durable offset had moved: the number of group commits (rolls
    /// and the final flush included).
    commits: u64,
    elapsed: Duration,
    cpu: CpuTime,
}

/// Appends `buffer` until `settings.write_bytes` are written, then flushes (timed) and closes.
fn append_run(
    settings: &Settings,
    dir: &Path,
    config: LogConfig,
    buffer: &mut [u8],
) -> BenchResult<AppendRun> {
    if config.flush == FlushPolicy::Manual {
        return pipelined_append_run(settings, dir, config, buffer);
    }
    let mut log = Log::open(RealDisk, dir, config, Arc::new(SystemClock))?;
    let mut run = AppendRun {
        bytes: 0,
        appends: 0,
        commits: 0,
        elapsed: Duration::ZERO,
        cpu: CpuTime::default(),
    };
    let cpu_start = CpuTime::now();
    let start = Instant::now();
    let mut durable = log.durable_offset();
    while run.bytes < settings.write_bytes && start.elapsed() < settings.case_time_max {
        log.append(buffer, EPOCH)?;
        run.bytes += buffer.len() as u64;
        run.appends += 1;
        if log.durable_offset() != durable {
            durable = log.durable_offset();
            run.commits += 1;
        }
    }
    if log.flush()? != durable {
        run.commits += 1;
    }
    run.elapsed = start.elapsed();
    run.cpu = CpuTime::now().since(cpu_start);
    log.close()?;
    Ok(run)
}

/// [`append_run`] with a flusher thread: the appender holds the log only to append; the flusher
/// takes a pending flush, fsyncs without the lock, and completes it, back to back. Each fsync
/// commits every append made while the previous one ran.
fn pipelined_append_run(
    settings: &Settings,
    dir: &Path,
    config: LogConfig,
    buffer: &mut [u8],
) -> BenchResult<AppendRun> {
    let log = Mutex::new(Log::open(RealDisk, dir, config, Arc::new(SystemClock))?);
    let appending = AtomicBool::new(true);
    let cpu_start = CpuTime::now();
    let start = Instant::now();
    let (bytes, appends, commits) = std::thread::scope(|scope| -> BenchResult<(u64, u64, u64)> {
        let flusher = scope.spawn(|| -> Result<u64, cairn_storage::Error> {
            let mut commits = 0;
            loop {
                let still_appending = appending.load(Ordering::Acquire);
                let pending = log.lock().expect("no panics while locked").begin_flush()?;
                let Some(mut pending) = pending else {
                    if still_appending {
                        std::thread::yield_now();
                        continue;
                    }
                    return Ok(commits);
                };
                let synced = pending.sync();
                log.lock().expect("no panics while locked").complete_flush(pending, synced)?;
                commits += 1;
            }
        });
        let (mut bytes, mut appends) = (0u64, 0u64);
        while bytes < settings.write_bytes && start.elapsed() < settings.case_time_max {
            log.lock().expect("no panics while locked").append(buffer, EPOCH)?;
            bytes += buffer.len() as u64;
            appends += 1;
        }
        appending.store(false, Ordering::Release);
        let commits = flusher.join().expect("flusher does not panic")?;
        Ok((bytes, appends, commits))
    })?;
    let elapsed = start.elapsed();
    let cpu = CpuTime::now().since(cpu_start);
    let log = log.into_inner().expect("no panics while locked");
    assert_eq!(log.durable_offset(), log.next_offset());
    log.close()?;
    Ok(AppendRun { bytes, appends, commits, elapsed, cpu })
}

// ---------------------------------------------------------------------------------------------
// Reads.

fn reads(dir: &Path, report: &mut Report) -> BenchResult<()> {
    progress("reads");
    let log = Log::open(RealDisk, dir, LogConfig::default(), Arc::new(SystemClock))?;
    for pass in 1..=2 {
        let (bytes, elapsed) = read_pass(&log)?;
        report.read_row("read (copy + verify)", pass, bytes, elapsed);
    }
    for pass in 1..=2 {
        let (bytes, elapsed) = locate_pass(&log)?;
        report.read_row("locate + pread (no verify)", pass, bytes, elapsed);
    }
    log.close()?;
    Ok(())
}

/// Reads the whole log with [`Log::read`] in [`READ_STEP_BYTES`] steps.
fn read_pass(log: &Log<RealDisk>) -> BenchResult<(u64, Duration)> {
    let end = log.next_offset();
    let mut out = Vec::with_capacity(2 * READ_STEP_BYTES as usize);
    let mut from = log.start_offset();
    let mut bytes = 0;
    let start = Instant::now();
    while from < end {
        out.clear();
        let next = log.read(from, READ_STEP_BYTES, end, &mut out)?;
        if next <= from {
            return Err(format!("read made no progress at offset {from}").into());
        }
        from = next;
        bytes += out.len() as u64;
    }
    Ok((bytes, start.elapsed()))
}

/// Locates the whole log with [`Log::locate`] and a `pread` of each range into one buffer.
fn locate_pass(log: &Log<RealDisk>) -> BenchResult<(u64, Duration)> {
    let end = log.next_offset();
    let mut buffer = vec![0; 2 * READ_STEP_BYTES as usize];
    let mut from = log.start_offset();
    let mut bytes = 0;
    let start = Instant::now();
    while from < end {
        let located = log.locate(from, READ_STEP_BYTES, end)?;
        for range in &located.ranges {
            let len = range.len as usize;
            if buffer.len() < len {
                buffer.resize(len, 0);
            }
            let got = range.file.read_at(&mut buffer[..len], range.position)?;
            if got != len {
                return Err(format!("short read: {got} of {len} bytes").into());
            }
            bytes += len as u64;
        }
        if located.next_offset <= from {
            return Err(format!("locate made no progress at offset {from}").into());
        }
        from = located.next_offset;
    }
    Ok((bytes, start.elapsed()))
}

// ---------------------------------------------------------------------------------------------
// Reopen.

fn reopen(settings: &Settings, report: &mut Report) -> BenchResult<()> {
    let dir = settings.dir.join("reopen");
    // At least 8 segments whatever the size; 256 MiB for the default 2 GiB.
    let segment_bytes = SEGMENT_BYTES.min(settings.reopen_bytes / 8).max(SEGMENT_BYTES_MIN);
    let config = LogConfig { segment_bytes, flush: FlushPolicy::Manual, ..LogConfig::default() };
    progress(&format!("reopen: building a {} log", size_name(settings.reopen_bytes as usize)));
    let mut buffer = append_buffer(&batch()?, MIB);
    let mut log = Log::open(RealDisk, &dir, config.clone(), Arc::new(SystemClock))?;
    while log.size_bytes() < settings.reopen_bytes {
        log.append(&mut buffer, EPOCH)?;
    }
    log.close()?;

    progress("reopen: clean");
    let mut samples = Vec::new();
    for _ in 0..OPENS {
        samples.push(timed_open(&dir, &config)?);
    }
    report.reopen_row("clean shutdown", 0, samples);

    // The appends that the crash loses go to one segment: no roll may fsync them.
    let crash_config = LogConfig { segment_bytes: SEGMENT_BYTES_MAX, ..config.clone() };
    for tail_bytes in CRASH_TAILS_BYTES {
        progress(&format!("reopen: crash with a {} tail", size_name(tail_bytes)));
        let mut tail = append_buffer(&batch()?, tail_bytes);
        let mut samples = Vec::new();
        for _ in 0..OPENS {
            let mut log = Log::open(RealDisk, &dir, crash_config.clone(), Arc::new(SystemClock))?;
            log.append(&mut tail, EPOCH)?;
            // The crash: no flush, no close. The bytes stay in the page cache, unsynced, and
            // the checkpoint still points before them.
            drop(log);
            samples.push(timed_open(&dir, &config)?);
        }
        report.reopen_row("crash", tail.len() as u64, samples);
    }
    fs::remove_dir_all(&dir)?;
    Ok(())
}

/// One timed [`Log::open`], followed by a drop.
fn timed_open(dir: &Path, config: &LogConfig) -> BenchResult<OpenSample> {
    let start = Instant::now();
    let log = Log::open(RealDisk, dir, config.clone(), Arc::new(SystemClock))?;
    let elapsed = start.elapsed();
    let sample = OpenSample {
        elapsed,
        log_bytes: log.size_bytes(),
        segments: log.segment_count(),
        replayed_bytes: log.recovery().replayed_bytes,
        verified_bytes: log.recovery().verified_bytes,
        truncated_bytes: log.recovery().truncated_bytes,
    };
    drop(log);
    Ok(sample)
}

/// One timed open and what its recovery reported.
struct OpenSample {
    elapsed: Duration,
    log_bytes: u64,
    segments: usize,
    replayed_bytes: u64,
    verified_bytes: u64,
    truncated_bytes: u64,
}

// ---------------------------------------------------------------------------------------------
// Machine facts.

fn machine_facts(settings: &Settings, report: &mut Report) -> BenchResult<()> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name").map(|rest| rest.trim_start_matches([' ', '\t', ':']))
        })
        .unwrap_or("unknown");
    let threads = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:").map(|kib| kib.trim().to_owned()))
        .unwrap_or_else(|| "unknown".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let dir = fs::canonicalize(&settings.dir)?;
    report.facts = vec![
        ("cpu", cpu.to_owned()),
        ("nproc", threads.to_string()),
        ("memory", memory),
        ("kernel", kernel.trim().to_owned()),
        ("bench dir", dir.display().to_string()),
        ("filesystem", filesystem_of(&dir)),
        ("mode", if settings.quick { "quick".into() } else { "full".into() }),
        ("page-cache warm-up before each write case", settings.warm_up.to_string()),
        ("write case bytes", size_name(settings.write_bytes as usize)),
        ("reopen log bytes", size_name(settings.reopen_bytes as usize)),
    ];
    let mut json = Json::new("machine");
    for (key, value) in &report.facts {
        json.str(key, value);
    }
    json.emit();
    Ok(())
}

/// The mount of `dir` from `/proc/mounts` (the longest mount point containing it), best effort.
fn filesystem_of(dir: &Path) -> String {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [source, point, fstype, options, ..] = fields[..] else { return None };
            dir.starts_with(point)
                .then(|| (point.len(), format!("{fstype} on {source} at {point} ({options})")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, mount)| mount)
}

// ---------------------------------------------------------------------------------------------
// Output: one JSON line per result as it is measured, markdown tables at the end.

/// The markdown tables, filled as results come in.
#[derive(Default)]
struct Report {
    facts: Vec<(&'static str, String)>,
    raw: Vec<String>,
    append: Vec<String>,
    read: Vec<String>,
    reopen: Vec<String>,
    targets: Vec<String>,
}

/// One append case, for the report.
struct AppendRow {
    policy: &'static str,
    write_bytes: usize,
    buffer_bytes: usize,
    run: AppendRun,
    records: u64,
    raw_same_cadence_mb_s: f64,
    raw_single_mb_s: f64,
}

impl Report {
    fn raw_row(&mut self, group: &str, case: &str, write_bytes: usize, sync: &str, run: &RawRun) {
        let mb_s = mb_per_s(run.bytes, run.elapsed);
        let secs = run.elapsed.as_secs_f64();
        let sync_secs = run.sync_elapsed.as_secs_f64();
        self.raw.push(format!(
            "| {group} | raw {case} | {} | {sync} | {} | {secs:.2} | {sync_secs:.2} | {} | {mb_s:.0} |",
            size_name(write_bytes),
            size_name(run.bytes as usize),
            run.cpu,
        ));
        let mut json = Json::new("raw_write");
        json.str("group", group).str("case", case);
        json.int("write_bytes", write_bytes as u64).int("bytes", run.bytes);
        json.num("secs", secs).num("fdatasync_secs", sync_secs);
        json.num("cpu_user_secs", run.cpu.user.as_secs_f64());
        json.num("cpu_system_secs", run.cpu.system.as_secs_f64());
        json.num("mb_per_s", mb_s).emit();
    }

    fn sync_latency(&mut self, rounds: usize, p50: Duration, p99: Duration, max: Duration) {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        self.raw.push(format!(
            "| - | fdatasync latency ({rounds} x 4 KiB write + fdatasync) | 4 KiB | every write | \
             p50 {:.0} us, p99 {:.0} us, max {:.0} us | | | | |",
            us(p50),
            us(p99),
            us(max)
        ));
        let mut json = Json::new("fdatasync_latency");
        json.int("rounds", rounds as u64).num("p50_us", us(p50)).num("p99_us", us(p99));
        json.num("max_us", us(max)).emit();
    }

    fn append_row(&mut self, row: AppendRow) {
        let AppendRow {
            policy,
            write_bytes,
            buffer_bytes,
            run,
            records,
            raw_same_cadence_mb_s,
            raw_single_mb_s,
        } = row;
        let secs = run.elapsed.as_secs_f64();
        let mb_s = mb_per_s(run.bytes, run.elapsed);
        let records_s = records as f64 / secs;
        let vs_same = mb_s / raw_same_cadence_mb_s;
        let vs_single = mb_s / raw_single_mb_s;
        let bytes_per_commit = run.bytes / run.commits.max(1);
        self.append.push(format!(
            "| {} ({buffer_bytes} B) | {policy} | {} | {} | {secs:.2} | {} | {mb_s:.0} | {:.0}k | \
             {vs_same:.2} | {vs_single:.2} |",
            size_name(write_bytes),
            run.commits,
            size_name(bytes_per_commit as usize),
            run.cpu,
            records_s / 1e3
        ));
        let mut json = Json::new("append");
        json.str("policy", policy)
            .int("write_bytes", write_bytes as u64)
            .int("buffer_bytes", buffer_bytes as u64);
        json.int("bytes", run.bytes).int("appends", run.appends).int("records", records);
        json.int("commits", run.commits)
            .num("secs", secs)
            .num("mb_per_s", mb_s)
            .num("records_per_s", records_s);
        json.num("cpu_user_secs", run.cpu.user.as_secs_f64());
        json.num("cpu_system_secs", run.cpu.system.as_secs_f64());
        json.num("ratio_raw_same_cadence", vs_same).num("ratio_raw_single_sync", vs_single).emit();
        if write_bytes >= 256 * KIB {
            // The target is against the single-sync baseline; the better of the group's two
            // baselines is shown too, since on a bursting disk either may be the higher.
            let vs_best = mb_s / raw_single_mb_s.max(raw_same_cadence_mb_s);
            let verdict = match (vs_single >= 0.70, vs_best >= 0.70) {
                (true, true) => "met",
                (true, false) => "met against single-sync, not against the group's best raw",
                (false, _) => "NOT met",
            };
            self.targets.push(format!(
                "| append {policy} {} >= 70% of raw | {:.0}% of single-sync, {:.0}% of best raw \
                 of its group | {verdict} |",
                size_name(write_bytes),
                vs_single * 100.0,
                vs_best * 100.0
            ));
        }
    }

    fn read_row(&mut self, method: &str, pass: u32, bytes: u64, elapsed: Duration) {
        let gb_s = bytes as f64 / elapsed.as_secs_f64() / 1e9;
        let pass_name = if pass == 1 { "1 (first)" } else { "2 (warm, reported)" };
        self.read.push(format!(
            "| {method} | {pass_name} | {} | {:.3} | {gb_s:.2} |",
            size_name(bytes as usize),
            elapsed.as_secs_f64()
        ));
        let mut json = Json::new("read");
        json.str("method", method).int("pass", u64::from(pass)).int("bytes", bytes);
        json.num("secs", elapsed.as_secs_f64()).num("gb_per_s", gb_s).emit();
        if pass == 2 {
            let verdict = if gb_s >= 2.0 { "met" } else { "NOT met" };
            self.targets.push(format!(
                "| {method} from page cache >= 2 GB/s | {gb_s:.2} GB/s | {verdict} |"
            ));
        }
    }

    fn reopen_row(&mut self, case: &str, tail_bytes: u64, mut samples: Vec<OpenSample>) {
        samples.sort_by_key(|s| s.elapsed);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let (min, max) = (ms(samples[0].elapsed), ms(samples[samples.len() - 1].elapsed));
        let median = &samples[samples.len() / 2];
        let median_ms = ms(median.elapsed);
        let tail_name = if tail_bytes == 0 { "-".into() } else { size_name(tail_bytes as usize) };
        self.reopen.push(format!(
            "| {case} | {} | {} | {tail_name} | {median_ms:.1} | {min:.1} / {max:.1} | {} | {} | {} |",
            size_name(median.log_bytes as usize),
            median.segments,
            median.replayed_bytes,
            median.verified_bytes,
            median.truncated_bytes
        ));
        let mut json = Json::new("reopen");
        json.str("case", case).int("tail_bytes", tail_bytes).int("log_bytes", median.log_bytes);
        json.int("segments", median.segments as u64).int("opens", samples.len() as u64);
        json.num("median_ms", median_ms).num("min_ms", min).num("max_ms", max);
        json.int("replayed_bytes", median.replayed_bytes)
            .int("verified_bytes", median.verified_bytes);
        json.int("truncated_bytes", median.truncated_bytes).emit();
        if tail_bytes == 0 {
            let big = median.log_bytes >= 2 * GIB && median.segments >= 8;
            let verdict = match (median_ms <= 200.0, big) {
                (true, true) => "met",
                (true, false) => "met (log smaller than the 2 GiB / 8 segments of the target)",
                (false, _) => "NOT met",
            };
            self.targets.push(format!(
                "| reopen after clean shutdown <= 200 ms ({}, {} segments) | {median_ms:.1} ms | {verdict} |",
                size_name(median.log_bytes as usize),
                median.segments
            ));
        }
    }

    fn print(&self) {
        println!();
        println!("## Machine");
        println!();
        for (key, value) in &self.facts {
            println!("- {key}: {value}");
        }
        print_table(
            "Raw sequential writes (std::fs, fresh file)",
            "| group | baseline | write size | fdatasync | bytes | secs | in fdatasync s | cpu user / sys s | MB/s |",
            &self.raw,
        );
        print_table(
            "Append (Log::append, RealDisk, 1 KiB records, 16-record batches)",
            "| buffer W (actual) | flush policy | commits | bytes per commit | secs | cpu user / sys s | MB/s | records/s | vs raw sync-every W | vs raw single-sync |",
            &self.append,
        );
        print_table(
            "Read (whole log, 1 MiB steps, page cache)",
            "| method | pass | bytes | secs | GB/s |",
            &self.read,
        );
        print_table(
            "Reopen (Log::open, median of 5)",
            "| case | log | segments | unflushed tail | median ms | min / max ms | replayed bytes | verified bytes | truncated bytes |",
            &self.reopen,
        );
        print_table("Targets", "| target | measured | verdict |", &self.targets);
    }
}

fn print_table(title: &str, header: &str, rows: &[String]) {
    println!();
    println!("## {title}");
    println!();
    println!("{header}");
    let columns = header.matches('|').count() - 1;
    println!("{}|", "|---".repeat(columns));
    for row in rows {
        println!("{row}");
    }
}

/// A flat JSON object written by hand (the bench uses std only).
struct Json(String);

impl Json {
    fn new(bench: &str) -> Json {
        let mut json = Json(String::from("{"));
        json.str("bench", bench);
        json
    }

    fn key(&mut self, key: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(key);
        self.0.push_str("\":");
    }

    fn str(&mut self, key: &str, value: &str) -> &mut Json {
        self.key(key);
        self.0.push('"');
        for c in value.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if c.is_control() => {
                    let _ = write!(self.0, "\\u{:04x}", u32::from(c));
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }

    fn int(&mut self, key: &str, value: u64) -> &mut Json {
        self.key(key);
        let _ = write!(self.0, "{value}");
        self
    }

    fn num(&mut self, key: &str, value: f64) -> &mut Json {
        self.key(key);
        if value.is_finite() {
            let _ = write!(self.0, "{value:.3}");
        } else {
            self.0.push_str("null");
        }
        self
    }

    fn emit(&mut self) {
        println!("{}}}", self.0);
    }
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

/// `16 KiB`, `1 MiB`, `2 GiB`, or bytes when not a whole number of KiB.
fn size_name(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// Progress on stderr, so stdout holds only results.
#[expect(clippy::print_stderr, reason = "progress of a benchmark binary belongs on stderr")]
fn progress(step: &str) {
    eprintln!("cairn-bench: {step}");
}
