//! The `cairn` binary: one executable for the server and its tools.
//!
//! Today it carries the offline partition-log tools (`cairn log verify|dump`); the broker
//! (`cairn serve`) and the client subcommands arrive with the Kafka front door.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use cairn_storage::{FlushPolicy, Log, LogConfig, RealDisk, SystemClock};
use cairn_types::Offset;
use cairn_types::batch::Batches;
use cairn_types::limits::BATCH_BYTES_MAX;
use clap::{Parser, Subcommand};

/// cairn: a Kafka-compatible, Raft-replicated commit log and coordination service.
#[derive(Parser)]
#[command(name = "cairn", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect a partition log directory offline (no node may be running on it).
    #[command(subcommand)]
    Log(LogCommand),
}

#[derive(Subcommand)]
enum LogCommand {
    /// Recover the log as a node would (cutting a torn tail), then verify every batch.
    Verify {
        /// The partition's directory.
        dir: PathBuf,
    },
    /// Print batch headers: offsets, leader epoch, timestamps, record count, size.
    Dump {
        /// The partition's directory.
        dir: PathBuf,
        /// First offset to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Most batches to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

fn open(dir: &Path) -> anyhow::Result<Log<RealDisk>> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let config = LogConfig { flush: FlushPolicy::Manual, ..LogConfig::default() };
    Log::open(RealDisk, dir, config, Arc::new(SystemClock))
        .with_context(|| format!("opening the log in {}", dir.display()))
}

fn verify(dir: &Path) -> anyhow::Result<()> {
    let log = open(dir)?;
    let recovery = log.recovery();
    log.verify().context("verifying batches")?;
    println!(
        "ok: offsets {}..{}, {} segments, {} bytes; recovery verified {} bytes, cut {} torn bytes",
        log.start_offset(),
        log.next_offset(),
        log.segment_count(),
        log.size_bytes(),
        recovery.verified_bytes,
        recovery.truncated_bytes,
    );
    Ok(())
}

fn dump(dir: &Path, from: u64, limit: usize) -> anyhow::Result<()> {
    let log = open(dir)?;
    let mut from = Offset(from).max(log.start_offset());
    let mut printed = 0;
    let mut bytes = Vec::new();
    println!(
        "base_offset\tlast_offset\tepoch\trecords\tbytes\tmax_timestamp\tcompression\tcontrol"
    );
    while printed < limit && from < log.next_offset() {
        bytes.clear();
        from = log.read_copy(from, 1 << 20, log.next_offset(), &mut bytes)?;
        for batch in Batches::new(&bytes, BATCH_BYTES_MAX).take(limit - printed) {
            let header = *batch?.header();
            println!(
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
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Log(LogCommand::Verify { dir }) => verify(&dir),
        Command::Log(LogCommand::Dump { dir, from, limit }) => dump(&dir, from, limit),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            #[allow(clippy::print_stderr)] // the binary's one place to report a failure
            {
                eprintln!("error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}
