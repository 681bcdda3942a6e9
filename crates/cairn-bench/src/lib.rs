//! cairn-bench: measures cairn (or any Kafka-protocol broker) the same way every time.
//!
//! Subcommands (`cli.rs`): `produce` (`produce.rs`), `consume` (`consume.rs`), `e2e`
//! (`e2e.rs`), `disk` (`disk.rs`, the raw disk baseline), `nats-produce` (`nats.rs`, the
//! produce workload against NATS JetStream) and `failover` (`failover.rs`, how long writes stop
//! when a leader is killed) and `commit` (`commit.rs`, offsets committed per second through the
//! group coordinators), and `etcd` (`etcd.rs`, puts, linearizable ranges and watch latency
//! over etcd's v3 gRPC API, against cairn or a real etcd). Producers route each partition's batch to its leader (`routes.rs`)
//! over one connection per leader broker (`lanes.rs`: the connections, their ackers and the
//! retries). Shared parts: the open-loop schedule
//! (`schedule.rs`), record and request generation (`workload.rs`), HdrHistogram recorders and
//! the per-second series (`stats.rs`), the progress line and broker RSS sampling
//! (`monitor.rs`), the summary table and JSON (`report.rs`), the SVG plot (`svg.rs`), and the
//! scheduling probe of e2e runs (`wakeup.rs`).
//!
//! Kafka traffic goes through `cairn-client`'s pipelined connections, etcd traffic through the
//! `etcd-client` crate; nothing here depends on
//! the broker's own crates, so the numbers are what any client would see.

pub mod cli;
pub mod commit;
pub mod consume;
pub mod disk;
pub mod e2e;
pub mod etcd;
pub mod failover;
pub mod kafka;
pub mod lanes;
pub mod monitor;
pub mod nats;
pub mod produce;
pub mod report;
pub mod routes;
pub mod schedule;
pub mod stats;
pub mod svg;
pub mod wakeup;
pub mod workload;

use anyhow::Context as _;

use crate::cli::{Command, Output};
use crate::report::Report;

/// Runs one subcommand and returns its report (not yet printed or written).
///
/// # Errors
/// Whatever the subcommand reports.
pub async fn run(command: &Command) -> anyhow::Result<Report> {
    match command {
        Command::Produce(args) => produce::run(args).await,
        Command::Consume(args) => consume::run(args).await,
        Command::E2e(args) => e2e::run(args).await,
        Command::Disk(args) => disk::run(args).await,
        Command::NatsProduce(args) => nats::run(args).await,
        Command::Failover(args) => failover::run(args).await,
        Command::Commit(args) => commit::run(args).await,
        Command::Etcd(args) => etcd::run(args).await,
    }
}

/// The output flags of `command`.
#[must_use]
pub fn output(command: &Command) -> &Output {
    match command {
        Command::Produce(args) => &args.output,
        Command::Consume(args) => &args.output,
        Command::E2e(args) => &args.output,
        Command::Disk(args) => &args.output,
        Command::NatsProduce(args) => &args.output,
        Command::Failover(args) => &args.output,
        Command::Commit(args) => &args.output,
        Command::Etcd(args) => &args.output,
    }
}

/// Writes the `--json` and `--plot` files `output` asks for.
///
/// # Errors
/// If a file cannot be written.
pub fn write_outputs(report: &Report, output: &Output) -> anyhow::Result<()> {
    if let Some(path) = &output.json {
        report.write_json(path)?;
    }
    if let Some(path) = &output.plot {
        let title = format!(
            "cairn-bench {}: {} records/s, {:.1} MB/s",
            report.command,
            stats::format_si(report.records_per_s),
            report.mb_per_s
        );
        std::fs::write(path, svg::plot(&title, &report.series))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
