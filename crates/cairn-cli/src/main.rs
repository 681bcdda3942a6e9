//! The `cairn` binary: one executable for the server and its tools.
//!
//! - `cairn serve`: run a node (see `cairn serve --help` for flags, environment and config file).
//! - `cairn log verify|dump`: offline tools for a partition log directory.

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
    /// Run a cairn node. With no flags: data in ./cairn-data, Kafka on 127.0.0.1:9092, admin HTTP
    /// on 127.0.0.1:9644. Precedence: flags > CAIRN_* environment > --config file > defaults.
    Serve(Box<cairn_node::config::ServeArgs>),
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

/// Runs a node until SIGTERM/SIGINT.
fn serve(args: cairn_node::config::ServeArgs) -> anyhow::Result<()> {
    let config = cairn_node::config::resolve(args)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log_level))
        .context("invalid log level")?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(cairn_node::run(config))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
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
