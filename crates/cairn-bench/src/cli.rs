//! The `cairn-bench` command line: subcommands and their flags (clap), shared by the binary and
//! the tests. Every flag struct is `Serialize`, so `--json` records the whole configuration.

use std::path::PathBuf;
use std::time::Duration;

use cairn_types::batch::Compression;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

/// Default duration of a run without `--records`, seconds.
pub const DURATION_DEFAULT_S: f64 = 10.0;

/// cairn-bench: load generator and baselines for cairn (or any Kafka broker).
///
/// Every subcommand prints a summary table on stdout, shows a live progress line on stderr (when
/// it is a terminal; `--quiet` turns it off), and can write `--json` results with a per-second
/// time series and a `--plot` SVG of throughput and latency over time.
#[derive(Debug, Parser)]
#[command(name = "cairn-bench", version)]
pub struct Cli {
    /// What to measure.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Produce records over the Kafka protocol (--max or --rate).
    ///
    /// As fast as possible (--max, closed loop with --inflight requests per producer) or at a
    /// fixed --rate (open loop: latency counts from
    /// each record's scheduled send time, so a slow broker cannot hide behind fewer sends).
    /// Latency is recorded per record: acknowledgement time minus the record's scheduled time
    /// (--rate) or the time its request was ready to send (--max).
    Produce(ProduceArgs),
    /// Consume a topic from the earliest offsets: records/s and MB/s.
    ///
    /// Reads from the earliest offsets up to the high watermarks at the start (or --records), with --consumers connections sharing the partitions: records/s and MB/s.
    Consume(ConsumeArgs),
    /// Produce-to-consume latency at a fixed --rate.
    ///
    /// Produces at --rate with each record's scheduled send time in its value,
    /// consume with long polls, and record receive time minus scheduled time for every record.
    E2e(E2eArgs),
    /// Raw sequential write bandwidth and fdatasync latency of the disk (--dir).
    ///
    /// The machine's physical limit where the data would go: raw sequential write bandwidth
    /// (1 MiB writes to a fresh file, one fdatasync at the end, after a page-cache warm-up) and
    /// the fdatasync latency of 4 KiB appends; the method of cairn-storage's `benches/log.rs`.
    Disk(DiskArgs),
    /// The produce workload against NATS JetStream, for comparison.
    ///
    /// A stream with file storage
    /// and --replicas replicas (default 1) on subjects `bench.>`, `jetstream.publish` with at most --inflight
    /// unacknowledged publishes per producer (one connection each).
    ///
    /// Mind the durability difference: a JetStream server acknowledges a publish once the
    /// message is written to its file store, *before* fsync (by default it syncs every 2
    /// minutes, `sync_interval`); cairn's acks=all acknowledges after fdatasync. Compare with
    /// cairn's --acks 1, or run nats-server with `sync_interval: always` for like with like.
    NatsProduce(NatsArgs),
    /// How long writes stop when a partition's leader is killed (needs a driver).
    ///
    /// Writes one small record per request (acks=all, one in flight) to a one-partition topic,
    /// and --kills times asks the driver on stdout to `kill <node>` the leader (answer on stdin:
    /// `killed <node>`), measures the time to the first write acknowledged by another broker,
    /// then asks to `restart <node>` (answer: `restarted <node>`) and waits until every replica
    /// is in sync again. `cargo xtask bench --only failover` is such a driver.
    Failover(FailoverArgs),
    /// Offsets committed per second through the group coordinators, and commit latency.
    ///
    /// --groups groups without members commit --partitions offsets of the topic per
    /// OffsetCommit, at --rate commits per second (open loop) or --max (closed loop, --inflight
    /// requests per coordinator connection of each of --committers tasks).
    Commit(CommitArgs),
    /// etcd v3 API load (cairn's `--etcd-listen` or a real etcd): puts, ranges, watch latency.
    ///
    /// --clients concurrent clients share --connections gRPC connections spread over
    /// --endpoints. `put`: random keys of the --keys key space; `range`: linearizable Get of a
    /// random preloaded key; `watch`: --watchers watchers on the key prefix over
    /// --watch-streams streams and one writer at --rate puts/s; latency is from the put's
    /// response to each watcher's receipt of its event. Closed loop unless --rate (open loop:
    /// latency from each operation's scheduled time).
    Etcd(EtcdArgs),
}

/// What `cairn-bench etcd` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EtcdWorkload {
    /// Puts of random keys.
    Put,
    /// Linearizable Gets of random preloaded keys.
    Range,
    /// Watchers on the key prefix, one writer: put-to-event latency.
    Watch,
}

/// `cairn-bench etcd`.
#[derive(Args, Clone, Debug, Serialize)]
pub struct EtcdArgs {
    /// The etcd API endpoints, comma-separated; connections go round-robin over them.
    #[arg(long, default_value = "127.0.0.1:2379", value_name = "HOST:PORT,...")]
    pub endpoints: String,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = EtcdWorkload::Put)]
    pub workload: EtcdWorkload,
    /// Concurrent clients, each with one operation in flight.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub clients: usize,
    /// gRPC connections the clients share (client i uses connection i mod N) [default:
    /// min(clients, 32)].
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Bytes of each value.
    #[arg(long, default_value_t = 256, value_name = "BYTES")]
    pub value_bytes: usize,
    /// Key space: keys `PREFIX00000000` .. of this many (range preloads them all).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub keys: u64,
    /// Prefix of every key (and of the watchers' range).
    #[arg(long, default_value = "/cairn-bench/", value_name = "PREFIX")]
    pub key_prefix: String,
    /// Run for this long [default: 10 s unless --ops].
    #[arg(long, value_name = "SECS", conflicts_with = "ops")]
    pub duration: Option<f64>,
    /// Do this many operations (watch: puts) in total, then stop.
    #[arg(long, value_name = "N")]
    pub ops: Option<u64>,
    /// Open loop: this many operations per second in total (watch: the writer's puts/s,
    /// default 100); 0 is closed loop.
    #[arg(long, default_value_t = 0, value_name = "OPS_PER_S")]
    pub rate: u64,
    /// Watchers of the watch workload (each a watch on the key prefix).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub watchers: usize,
    /// gRPC watch streams the watchers share (spread over the connections).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub watch_streams: usize,
    /// Leave latencies of the first SECS out of the percentiles.
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    pub warmup: f64,
    /// Longest one operation may take before it counts as an error, ms.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub timeout_ms: u64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: Output,
}

impl EtcdArgs {
    /// The endpoints, trimmed, none empty.
    #[must_use]
    pub fn endpoint_list(&self) -> Vec<String> {
        self.endpoints
            .split(',')
            .map(str::trim)
            .filter(|endpoint| !endpoint.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// gRPC connections: `--connections`, or min(clients, 32).
    #[must_use]
    pub fn connection_count(&self) -> usize {
        self.connections.unwrap_or(self.clients.min(ETCD_CONNECTIONS_DEFAULT_MAX)).max(1)
    }

    /// The run's length when not bounded by `--ops`.
    #[must_use]
    pub fn run_duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration.unwrap_or(DURATION_DEFAULT_S).max(0.0))
    }

    /// Checks the combination of flags.
    ///
    /// # Errors
    /// A message naming the flag at fault.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.endpoint_list().is_empty() {
            anyhow::bail!("--endpoints needs at least one HOST:PORT");
        }
        if self.clients == 0 {
            anyhow::bail!("--clients must be at least 1");
        }
        if self.keys == 0 {
            anyhow::bail!("--keys must be at least 1");
        }
        if self.workload == EtcdWorkload::Watch && (self.watchers == 0 || self.watch_streams == 0) {
            anyhow::bail!("--watchers and --watch-streams must be at least 1");
        }
        check_timing(self.duration, self.warmup)
    }
}

/// Most gRPC connections `cairn-bench etcd` opens unless `--connections` says otherwise (etcd's
/// own benchmark tool shares a few connections among many clients the same way).
pub const ETCD_CONNECTIONS_DEFAULT_MAX: usize = 32;

/// `cairn-bench commit`.
#[derive(Args, Clone, Debug, Serialize)]
pub struct CommitArgs {
    /// Broker and topic (created with --partitions partitions if missing).
    #[command(flatten)]
    pub target: Target,
    /// Groups committing, spread over the offsets topic's partitions (and so coordinators).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub groups: usize,
    /// Offsets in each commit: partitions 0..N of the topic.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub partitions: u32,
    /// Tasks sending commits, each for every Nth group.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub committers: usize,
    /// Commits awaiting an answer per connection.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub inflight: usize,
    /// Open loop: this many commits per second in total.
    #[arg(long, value_name = "COMMITS_PER_S", conflicts_with = "max")]
    pub rate: Option<u64>,
    /// Closed loop: as fast as answers allow.
    #[arg(long)]
    pub max: bool,
    /// Seconds to run.
    #[arg(long, default_value_t = DURATION_DEFAULT_S, value_name = "SECS")]
    pub duration: f64,
    /// Leave latencies of the first SECS out of the percentiles.
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    pub warmup: f64,
    /// Replicas of the topic's partitions when it is created (-1: the broker's default).
    #[arg(long, default_value_t = -1, value_name = "N", allow_negative_numbers = true)]
    pub replication_factor: i16,
    /// Where results go.
    #[command(flatten)]
    pub output: Output,
}

/// Where results go, shared by every subcommand.
#[derive(Args, Clone, Debug, Serialize)]
pub struct Output {
    /// Write all results, including the per-second series, as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Draw throughput and latency over time as an SVG to this file.
    #[arg(long, value_name = "PATH.svg")]
    pub plot: Option<PathBuf>,
    /// No live progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Sample this process's resident memory (the broker's) every second; report the largest.
    /// Repeat it for a cluster: the series shows the largest of the brokers each second, and
    /// each broker's largest sample is reported apart.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Vec<u32>,
}

/// Which Kafka broker and topic.
#[derive(Args, Clone, Debug, Serialize)]
pub struct Target {
    /// The broker to connect to.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// The topic.
    #[arg(long, default_value = "cairn-bench")]
    pub topic: String,
    /// Longest the broker may take to answer one request, in ms.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub request_timeout_ms: u64,
}

/// How fast, how long, how large: the producer side of a run (Kafka and NATS alike).
#[derive(Args, Clone, Debug, Serialize)]
pub struct Pace {
    /// Producers, each with its own connection and task.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub producers: usize,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024, value_name = "BYTES")]
    pub record_bytes: usize,
    /// Requests (Kafka) or publishes (NATS) awaiting acknowledgement per producer.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub inflight: usize,
    /// Run for this long [default: 10 s unless --records].
    #[arg(long, value_name = "SECS", conflicts_with = "records")]
    pub duration: Option<f64>,
    /// Send this many records in total, then stop.
    #[arg(long, value_name = "N")]
    pub records: Option<u64>,
    /// Open loop: this many records per second in total, on a fixed schedule.
    #[arg(long, value_name = "RECORDS_PER_S", conflicts_with = "max")]
    pub rate: Option<u64>,
    /// Closed loop: as fast as acknowledgements allow.
    #[arg(long)]
    pub max: bool,
    /// Leave latencies completed in the first SECS out of the summary's percentiles (a warm-up:
    /// connections, topic creation, first segment files). The per-second series and the
    /// throughput still cover the whole run.
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    pub warmup: f64,
}

impl Pace {
    /// The warm-up left out of the latency percentiles.
    #[must_use]
    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup.max(0.0))
    }

    /// The run's length when not bounded by `--records`.
    #[must_use]
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration.unwrap_or(DURATION_DEFAULT_S).max(0.0))
    }

    /// Checks the combination of flags.
    ///
    /// # Errors
    /// A message naming the flag at fault.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.producers == 0 {
            anyhow::bail!("--producers must be at least 1");
        }
        if self.inflight == 0 {
            anyhow::bail!("--inflight must be at least 1");
        }
        if self.rate.is_none() && !self.max {
            anyhow::bail!("give either --rate RECORDS_PER_S (open loop) or --max (closed loop)");
        }
        if self.rate == Some(0) {
            anyhow::bail!("--rate must be at least 1");
        }
        check_timing(self.duration, self.warmup)
    }
}

/// Kafka producer settings.
#[derive(Args, Clone, Debug, Serialize)]
pub struct KafkaLoad {
    /// Partitions of the topic when it is created (an existing topic keeps its own).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub partitions: u32,
    /// Replicas of each partition when the topic is created (-1: the broker's default).
    #[arg(long, default_value_t = -1, value_name = "N", allow_negative_numbers = true)]
    pub replication_factor: i16,
    /// Record keys: none (batches fill partitions round-robin), random (8 random bytes) or
    /// sequential (8-byte counter); keyed records go where Kafka's default partitioner puts them.
    #[arg(long, value_enum, default_value_t = Keys::None)]
    pub keys: Keys,
    /// Acknowledgement: 0 (none; no latency), 1 (the leader's append) or all (durable).
    #[arg(long, value_enum, default_value_t = Acks::All)]
    pub acks: Acks,
    /// Compression codec of the batches.
    #[arg(long, value_enum, default_value_t = Codec::None)]
    pub compression: Codec,
    /// Records per RecordBatch: as many as fit in this many bytes (at least one); a request
    /// holds at most one batch per partition.
    #[arg(long, default_value_t = 16_384, value_name = "BYTES")]
    pub batch_bytes: usize,
    /// Idempotent producers (Kafka's `enable.idempotence`): each asks for a producer id
    /// (InitProducerId) and numbers its batches per partition.
    #[arg(long)]
    pub idempotent: bool,
}

/// Record keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Keys {
    /// No key.
    None,
    /// 8 random bytes.
    Random,
    /// An 8-byte big-endian counter over the run.
    Sequential,
}

/// Produce acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Acks {
    /// No response.
    #[value(name = "0")]
    #[serde(rename = "0")]
    None,
    /// The leader's append.
    #[value(name = "1")]
    #[serde(rename = "1")]
    Leader,
    /// Durable (the whole in-sync replica set).
    #[value(name = "all", alias = "-1")]
    #[serde(rename = "all")]
    All,
}

impl Acks {
    /// The Produce request's `acks` field.
    #[must_use]
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Compression codec, as Kafka's `compression.type` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 frames.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Codec {
    /// The batch attribute value.
    #[must_use]
    pub fn compression(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

/// `cairn-bench produce`.
#[derive(Args, Clone, Debug, Serialize)]
pub struct ProduceArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: Target,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub pace: Pace,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub load: KafkaLoad,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: Output,
}

/// `cairn-bench consume`.
#[derive(Args, Clone, Debug, Serialize)]
pub struct ConsumeArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: Target,
    /// Consumers, each with its own connection; partition i goes to consumer i mod N.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub consumers: usize,
    /// Stop after this many records in total [default: at the high watermarks at the start].
    #[arg(long, value_name = "N")]
    pub records: Option<u64>,
    /// Most bytes one partition contributes to a fetch response.
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub fetch_partition_bytes: i32,
    /// Most bytes of one fetch response.
    #[arg(long, default_value_t = 64 * 1024 * 1024, value_name = "BYTES")]
    pub fetch_bytes: i32,
    /// Longest a fetch waits on the broker for data.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub max_wait_ms: i32,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: Output,
}

/// `cairn-bench e2e`.
#[derive(Args, Clone, Debug, Serialize)]
pub struct E2eArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: Target,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub pace: Pace,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub load: KafkaLoad,
    /// Consumers, each with its own connection; partition i goes to consumer i mod N.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub consumers: usize,
    /// Longest a fetch waits on the broker for data (min_bytes is 1: it answers as soon as a
    /// record is there).
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub max_wait_ms: i32,
    /// After the producers finish, how long the consumers may take to receive the rest.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub drain_secs: u64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: Output,
}

/// `cairn-bench disk`.
#[derive(Args, Clone, Debug, Serialize)]
pub struct DiskArgs {
    /// Where to write (a fresh subdirectory is created and removed). Never a tmpfs: that would
    /// measure memory.
    #[arg(long, default_value = "target/bench-data", value_name = "DIR")]
    pub dir: PathBuf,
    /// Bytes of the sequential write (and of the warm-up before it).
    #[arg(long, default_value_t = 1024 * 1024 * 1024, value_name = "BYTES")]
    pub bytes: u64,
    /// Rounds of 4 KiB append + fdatasync.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub sync_rounds: u64,
    /// Skip the page-cache warm-up (writing --bytes to a scratch file and deleting it before the
    /// timed write; on VMs that return free pages to the host, cold page-cache pages cost more
    /// than the disk).
    #[arg(long)]
    pub no_warm_up: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: Output,
}

/// `cairn-bench nats-produce`.
#[derive(Args, Clone, Debug, Serialize)]
pub struct NatsArgs {
    /// The NATS server.
    #[arg(long, default_value = "127.0.0.1:4222", value_name = "HOST:PORT")]
    pub server: String,
    /// The JetStream stream (created if missing: file storage, --replicas replicas, subjects
    /// `bench.>`).
    #[arg(long, default_value = "cairn-bench")]
    pub stream: String,
    /// Replicas of the stream when it is created (3 needs a JetStream cluster of at least 3
    /// servers; an existing stream keeps its own).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub replicas: usize,
    /// Subjects `bench.0` .. `bench.N-1`; records go round-robin over them (the counterpart of
    /// partitions).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub subjects: u32,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub pace: Pace,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: Output,
}

/// `cairn-bench failover`.
#[derive(Args, Clone, Debug, Serialize)]
pub struct FailoverArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: Target,
    /// Leaders to kill, one after the other.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub kills: u32,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub record_bytes: usize,
    /// Replicas of the topic's partition when it is created.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub replication_factor: i16,
    /// Longest wait for each step: the driver's answer, writes resuming, replicas in sync.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub step_timeout_secs: u64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: Output,
}

/// The checks of `--duration` (positive, if given) and `--warmup` (0 or more) every timed
/// workload shares.
fn check_timing(duration: Option<f64>, warmup: f64) -> anyhow::Result<()> {
    if let Some(duration) = duration
        && !(duration.is_finite() && duration > 0.0)
    {
        anyhow::bail!("--duration must be a positive number of seconds");
    }
    if !(warmup.is_finite() && warmup >= 0.0) {
        anyhow::bail!("--warmup must be a number of seconds, 0 or more");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cairn-bench").chain(args.iter().copied()))
    }

    #[test]
    fn produce_flags_parse_with_defaults() {
        let Command::Produce(args) = parse(&["produce", "--max", "--acks", "1"]).unwrap().command
        else {
            panic!("not produce")
        };
        assert_eq!(args.load.acks.wire(), 1);
        assert_eq!(args.load.keys, Keys::None);
        assert_eq!(args.pace.duration(), Duration::from_secs(10));
        args.pace.validate().unwrap();
        let json = serde_json::to_value(&args).unwrap();
        assert_eq!(json["load"]["acks"], "1");
        assert_eq!(json["load"]["compression"], "none");
        assert_eq!(json["target"]["bootstrap"], "127.0.0.1:9092");
    }

    #[test]
    fn nats_replicas_default_to_one() {
        let Command::NatsProduce(args) = parse(&["nats-produce", "--max"]).unwrap().command else {
            panic!("not nats-produce")
        };
        assert_eq!(args.replicas, 1);
        let Command::NatsProduce(args) =
            parse(&["nats-produce", "--max", "--replicas", "3"]).unwrap().command
        else {
            panic!("not nats-produce")
        };
        assert_eq!(args.replicas, 3);
        assert_eq!(serde_json::to_value(&args).unwrap()["replicas"], 3);
    }

    #[test]
    fn pace_needs_rate_or_max_not_both() {
        assert!(parse(&["produce", "--max", "--rate", "10"]).is_err());
        assert!(parse(&["produce", "--duration", "1", "--records", "10", "--max"]).is_err());
        let Command::Produce(args) = parse(&["produce"]).unwrap().command else { panic!() };
        assert!(args.pace.validate().is_err());
        let Command::Produce(args) = parse(&["produce", "--rate", "0"]).unwrap().command else {
            panic!()
        };
        assert!(args.pace.validate().is_err());
    }
}
