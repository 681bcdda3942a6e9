//! The `cairn` binary: one executable for the server and its tools.
//!
//! - `cairn serve`: run a node (see `cairn serve --help` for flags, environment and config file).
//! - `cairn log verify|dump`: offline tools for a partition log directory.
//! - `cairn topic|produce|consume|cluster info`: a Kafka client for a running node
//!   (`cairn-client` speaks the protocol; one module per command).
//! - `cairn cluster status`: a node's view of the cluster from its admin endpoint.
//! - `cairn dev cluster`: a local cluster of `cairn serve` children, stopped together.

mod cluster;
mod consume;
mod dev;
mod group;
mod lookup;
mod offline;
mod output;
mod produce;
mod status;
mod topic;

/// mimalloc keeps freed pages for reuse; the system allocator returns large buffers (fetch
/// responses, produce requests) to the kernel and faults them in again on the next request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use cairn_client as client;
use clap::{Args, Parser, Subcommand};

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
    Log(offline::LogCommand),
    /// Create, list, describe, alter and delete topics on a running node.
    Topic {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(subcommand)]
        command: topic::TopicCommand,
    },
    /// List, describe, reset the offsets of and delete consumer groups on a running node.
    Group {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(subcommand)]
        command: group::GroupCommand,
    },
    /// Produce records, one per input line (standard input or --file).
    Produce {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        args: produce::ProduceArgs,
    },
    /// Print a topic's records.
    Consume {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        args: consume::ConsumeArgs,
    },
    /// Development tools: `cairn dev cluster` starts a local cluster.
    #[command(subcommand)]
    Dev(dev::DevCommand),
    /// Show the cluster.
    Cluster {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Cluster id, controller and brokers (Kafka DescribeCluster through --bootstrap).
    Info,
    /// Nodes, their liveness, the core's leader and term, and the node's core indexes, from a
    /// node's admin endpoint (--admin, not --bootstrap).
    Status(status::StatusArgs),
}

/// How the client commands reach a node. Global within each client command, so that
/// `cairn topic --bootstrap B list` and `cairn topic list --bootstrap B` both work; `serve` and
/// `log` do not take it.
#[derive(Args)]
struct ConnectArgs {
    /// The broker to connect to.
    #[arg(
        long,
        global = true,
        env = "CAIRN_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT"
    )]
    bootstrap: String,
    /// Longest wait for a connection to the broker, in ms.
    #[arg(long, global = true, value_name = "MS",
          default_value_t = client::CONNECT_TIMEOUT_DEFAULT.as_millis() as u64)]
    connect_timeout_ms: u64,
    /// Longest the broker may take to answer one request, in ms.
    #[arg(long, global = true, value_name = "MS",
          default_value_t = client::REQUEST_TIMEOUT_DEFAULT.as_millis() as u64)]
    request_timeout_ms: u64,
}

impl ConnectArgs {
    fn options(&self) -> client::Options {
        client::Options {
            bootstrap: self.bootstrap.clone(),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms.max(1)),
            request_timeout: Duration::from_millis(self.request_timeout_ms.max(1)),
            client_id: CLIENT_ID.to_owned(),
        }
    }
}

/// The client id the commands send in every request header.
const CLIENT_ID: &str = "cairn-cli";

/// The client commands, run against the broker in `connect`.
enum ClientCommand {
    Topic(topic::TopicCommand),
    Group(group::GroupCommand),
    Produce(produce::ProduceArgs),
    Consume(consume::ConsumeArgs),
    ClusterInfo,
}

/// Connects and runs `command` on a single-threaded runtime (one connection, one request at a
/// time: more threads would not help).
fn client_command(connect: &ConnectArgs, command: ClientCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let mut client = client::Client::connect(&connect.options()).await?;
        match command {
            ClientCommand::Topic(command) => topic::run(&mut client, command).await,
            ClientCommand::Group(command) => {
                group::run(&mut client, &connect.options(), command).await
            }
            ClientCommand::Produce(args) => produce::run(&mut client, args).await,
            ClientCommand::Consume(args) => consume::run(&mut client, args).await,
            ClientCommand::ClusterInfo => cluster::info(&mut client).await,
        }
    })
}

/// Runs a node until SIGTERM/SIGINT.
fn serve(args: cairn_node::config::ServeArgs) -> anyhow::Result<()> {
    let config = cairn_node::config::resolve(args)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log_level))
        .context("invalid log level")?;
    // Colour codes only for a person at a terminal, not in files or pipes read by programs.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
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
        Command::Log(command) => offline::run(command),
        Command::Dev(command) => dev::run(command),
        Command::Topic { connect, command } => {
            client_command(&connect, ClientCommand::Topic(command))
        }
        Command::Group { connect, command } => {
            client_command(&connect, ClientCommand::Group(command))
        }
        Command::Produce { connect, args } => {
            client_command(&connect, ClientCommand::Produce(args))
        }
        Command::Consume { connect, args } => {
            client_command(&connect, ClientCommand::Consume(args))
        }
        Command::Cluster { connect, command: ClusterCommand::Info } => {
            client_command(&connect, ClientCommand::ClusterInfo)
        }
        Command::Cluster { connect: _, command: ClusterCommand::Status(args) } => {
            status::run(&args)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of the output went away (`| head`): it has all it wanted.
        Err(error) if output::is_closed(&error) => ExitCode::SUCCESS,
        Err(error) => {
            output::note(&format!("error: {error:#}"));
            ExitCode::FAILURE
        }
    }
}
