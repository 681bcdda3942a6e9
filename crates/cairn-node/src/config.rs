//! The node configuration: [`NodeConfig`], and how `cairn serve` resolves it from flags,
//! environment, a TOML file and defaults.
//!
//! # Precedence
//!
//! For every field, the first source that sets it wins:
//!
//! 1. the command-line flag, `--kafka-listen 0.0.0.0:9092`;
//! 2. the environment variable, `CAIRN_KAFKA_LISTEN` (an empty value counts as unset);
//! 3. the TOML file named by `--config PATH` or `CAIRN_CONFIG`, `kafka_listen = "0.0.0.0:9092"`;
//! 4. the default ([`NodeConfig::default`]).
//!
//! One name per field everywhere: the file key is the field name in snake_case (only snake_case:
//! `kafka-listen` in a file is an unknown key), the flag is the same name in kebab-case, and the
//! variable is `CAIRN_` followed by the name in upper case. Unknown keys in the file are errors,
//! so a typo cannot silently fall back to a default. Values are parsed the same way from all
//! three sources; a TOML file uses TOML types (`default_partitions = 3`,
//! `auto_create_topics = false`).
//!
//! The environment is read by [`resolve_with`] through an explicit lookup function rather than
//! by clap, so tests inject it instead of racing on the process environment.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, anyhow};
use cairn_types::NodeId;
use cairn_types::limits;
use serde::Deserialize;

/// Prefix of every environment variable: a field `kafka_listen` reads `CAIRN_KAFKA_LISTEN`.
pub const ENV_PREFIX: &str = "CAIRN_";

/// Environment variable naming the TOML file, when `--config` is not given.
pub const ENV_CONFIG: &str = "CAIRN_CONFIG";

/// Node ids a Kafka client can see: the broker id is an `int32` on the wire.
pub const NODE_ID_RANGE: RangeInclusive<u64> = 0..=i32::MAX as u64;

/// Partitions of an automatically created topic: as many as any topic may have.
pub const DEFAULT_PARTITIONS_RANGE: RangeInclusive<u32> = 1..=limits::TOPIC_PARTITIONS_MAX;

/// Concurrent Kafka connections a node may be configured to accept.
pub const CONNECTIONS_MAX_RANGE: RangeInclusive<usize> = 1..=1_000_000;

/// Requests one connection may have in flight (the per-connection queue between its reader and
/// writer tasks).
pub const INFLIGHT_REQUESTS_MAX_RANGE: RangeInclusive<usize> = 1..=1024;

/// Any configured delay, in milliseconds: none at all, at most one day.
pub const DELAY_MS_RANGE: RangeInclusive<u64> = 0..=24 * 3600 * 1000;

/// The log cleaner's IO cap, in bytes a second: at least 1 MiB/s, at most 1 TiB/s.
pub const CLEANER_IO_BYTES_PER_SEC_RANGE: RangeInclusive<u64> = 1 << 20..=1 << 40;

/// Any configured timeout, in milliseconds: at least 1 ms, at most one day.
pub const TIMEOUT_MS_RANGE: RangeInclusive<u64> = 1..=24 * 3600 * 1000;

/// Consumer-protocol session timeouts allowed (they travel as Kafka's `int32`).
pub const GROUP_TIMEOUT_MS_RANGE: RangeInclusive<u64> = 1..=3600 * 1000;

/// Where a single node serves the etcd API when no `--etcd-listen` is given (etcd's own
/// client port).
pub const ETCD_LISTEN_DEFAULT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 2379);

/// Voters the static core of `--peers` may have: the RFC's 1, 3 or 5 (any count up to 5 runs);
/// more nodes join as learners, which come with issue 13.
pub const CORE_VOTERS_MAX: usize = 5;

/// Everything a node needs to start, resolved and validated. Owned by cairn-node's startup,
/// which hands each part to the component that uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node's id: its Kafka broker id and, later, its Raft id. Unique in the cluster.
    pub node_id: NodeId,
    /// Directory holding the metadata and every partition log; created if missing.
    pub data_dir: PathBuf,
    /// Address the Kafka listener binds. Port 0 picks a free port.
    pub kafka_listen: SocketAddr,
    /// Address the admin HTTP server (`/health/*`, `/metrics`) binds. Port 0 picks a free port.
    pub admin_listen: SocketAddr,
    /// Address the etcd v3 gRPC API binds. `None`: a single node binds
    /// [`ETCD_LISTEN_DEFAULT`] if it is free (a warning otherwise); a node with peers serves no
    /// etcd API unless one is given (several local nodes would clash on the default).
    pub etcd_listen: Option<SocketAddr>,
    /// The etcd API's space quota, in bytes (etcd's `--quota-backend-bytes`): past it, writes
    /// that may grow the store are refused under the NOSPACE alarm. 0: no quota.
    pub etcd_quota_backend_bytes: u64,
    /// Address Kafka clients are told to connect to (metadata responses). `None`: the Kafka
    /// listener's bound address, see [`NodeConfig::advertised_address`]; validation guarantees
    /// that address is not a wildcard.
    pub advertise: Option<AdvertisedAddress>,
    /// Create a topic when a client produces to or asks metadata for an unknown one (Kafka's
    /// `auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partition count of automatically created topics (Kafka's `num.partitions`).
    pub default_partitions: u32,
    /// Partitions of the consumer groups' offsets topic when it is created (Kafka's
    /// `offsets.topic.num.partitions`); a group is coordinated by one partition's leader.
    pub offsets_topic_partitions: u32,
    /// How long the first rebalance of an empty consumer group waits for more members
    /// (Kafka's `group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay_ms: u64,
    /// How long a consumer-protocol member may go without a heartbeat before it is fenced
    /// (Kafka's `group.consumer.session.timeout.ms`).
    pub group_consumer_session_timeout_ms: u64,
    /// How often consumer-protocol members are told to heartbeat (Kafka's
    /// `group.consumer.heartbeat.interval.ms`).
    pub group_consumer_heartbeat_interval_ms: u64,
    /// How often the log cleaner looks at every partition for compaction rounds to carry out
    /// or propose (Kafka's `log.cleaner.backoff.ms`).
    pub log_cleaner_backoff_ms: u64,
    /// Bytes a second the log cleaner reads and writes at most (Kafka's
    /// `log.cleaner.io.max.bytes.per.second`).
    pub log_cleaner_io_bytes_per_sec: u64,
    /// Log filter in `tracing_subscriber::EnvFilter` syntax (`info`, `info,cairn_kafka=debug`);
    /// parsed by the binary when it installs the subscriber. `RUST_LOG`, when set, is applied by
    /// the binary on top.
    pub log_level: String,
    /// Most Kafka connections open at once; further clients wait in the listen backlog.
    pub connections_max: usize,
    /// Most requests one connection may have in flight before its reader stops reading.
    pub inflight_requests_max: usize,
    /// Longest a client may take to send a request frame's body once its length prefix arrived
    /// (the connection is closed after it), and longest the broker works on one request: bounds
    /// the timeout a client asks for on produce (`acks=all`) and the wait of a long-polling fetch.
    pub request_timeout_ms: u64,
    /// A Kafka connection with no request for this long is closed (Kafka's
    /// `connections.max.idle.ms`), so dead clients do not hold `connections_max` slots.
    pub connections_max_idle_ms: u64,
    /// Graceful shutdown waits this long for in-flight requests and log flushes before giving up.
    pub shutdown_timeout_ms: u64,
    /// Bytes at the durable end of each partition log kept in the OS page cache; older data is
    /// dropped from the cache as the log grows, so consumers of it read from the device. 0 leaves
    /// caching to the OS. See docs/internals/storage.md, "Page cache window".
    pub page_cache_window_bytes: u64,
    /// Address the peer listener binds (node-to-node Raft traffic). `None`: a single node, with
    /// no peer transport. Set exactly when `peers` is.
    pub peer_listen: Option<SocketAddr>,
    /// The static voter set of the consistent core, this node included (`--peers`); `None`: a
    /// single node, the core's only voter.
    pub peers: Option<PeerList>,
    /// The rack this node is in, registered in the core (placement spreads replicas over racks).
    pub rack: Option<String>,
    /// The cluster id, given (`--cluster-id`, as Kafka's `cluster.id`); `None`: derived from
    /// `peers`, so every node must be given the same list. Set only with `peers`.
    pub cluster_id: Option<ClusterIdSetting>,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            node_id: NodeId(0),
            data_dir: PathBuf::from("./cairn-data"),
            kafka_listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9644)),
            etcd_listen: None,
            etcd_quota_backend_bytes: cairn_etcd::QUOTA_BACKEND_BYTES_DEFAULT,
            advertise: None,
            auto_create_topics: true,
            default_partitions: 1,
            offsets_topic_partitions: 50,
            group_initial_rebalance_delay_ms: 3_000,
            group_consumer_session_timeout_ms: limits::GROUP_CONSUMER_SESSION_TIMEOUT_MS_DEFAULT
                .unsigned_abs()
                .into(),
            group_consumer_heartbeat_interval_ms:
                limits::GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS_DEFAULT.unsigned_abs().into(),
            log_cleaner_backoff_ms: cairn_broker::CleanerConfig::INTERVAL_MS_DEFAULT,
            log_cleaner_io_bytes_per_sec: cairn_broker::CleanerConfig::IO_BYTES_PER_SEC_DEFAULT,
            log_level: "info,openraft=error".to_owned(),
            connections_max: 1024,
            inflight_requests_max: 16,
            request_timeout_ms: limits::REQUEST_TIMEOUT_MS_DEFAULT,
            connections_max_idle_ms: 600_000,
            shutdown_timeout_ms: 30_000,
            page_cache_window_bytes: 256 << 20,
            peer_listen: None,
            peers: None,
            rack: None,
            cluster_id: None,
        }
    }
}

impl NodeConfig {
    /// What to tell Kafka clients to connect to, given the address the Kafka listener actually
    /// bound (which differs from `kafka_listen` when its port is 0).
    #[must_use]
    pub fn advertised_address(&self, kafka_bound: SocketAddr) -> AdvertisedAddress {
        match &self.advertise {
            Some(advertise) => advertise.clone(),
            None => {
                debug_assert!(!kafka_bound.ip().is_unspecified(), "validate rejects wildcards");
                AdvertisedAddress { host: kafka_bound.ip().to_string(), port: kafka_bound.port() }
            }
        }
    }

    /// Checks every field against its range and the fields against each other.
    ///
    /// # Errors
    ///
    /// The first rule broken, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.check().map_err(|invalid| anyhow!("invalid {}: {}", invalid.field, invalid.message))
    }

    fn check(&self) -> Result<(), Invalid> {
        in_range("node_id", self.node_id.0, &NODE_ID_RANGE)?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(Invalid::new("data_dir", "must not be empty".to_owned()));
        }
        if self.advertise.is_none() && self.kafka_listen.ip().is_unspecified() {
            return Err(Invalid::new(
                "kafka_listen",
                format!(
                    "{} is a wildcard address, which Kafka clients cannot connect to: set \
                     advertise (--advertise, CAIRN_ADVERTISE) to the HOST:PORT clients should use",
                    self.kafka_listen
                ),
            ));
        }
        if listeners_clash(self.kafka_listen, self.admin_listen) {
            return Err(Invalid::new(
                "admin_listen",
                format!("{} clashes with kafka_listen {}", self.admin_listen, self.kafka_listen),
            ));
        }
        if let Some(etcd) = self.etcd_listen {
            for (field, other) in
                [("kafka_listen", self.kafka_listen), ("admin_listen", self.admin_listen)]
            {
                if listeners_clash(etcd, other) {
                    let message = format!("{etcd} clashes with {field} {other}");
                    return Err(Invalid::new("etcd_listen", message));
                }
            }
        }
        in_range("default_partitions", self.default_partitions, &DEFAULT_PARTITIONS_RANGE)?;
        in_range(
            "offsets_topic_partitions",
            self.offsets_topic_partitions,
            &DEFAULT_PARTITIONS_RANGE,
        )?;
        in_range(
            "group_initial_rebalance_delay_ms",
            self.group_initial_rebalance_delay_ms,
            &DELAY_MS_RANGE,
        )?;
        in_range(
            "group_consumer_session_timeout_ms",
            self.group_consumer_session_timeout_ms,
            &GROUP_TIMEOUT_MS_RANGE,
        )?;
        in_range(
            "group_consumer_heartbeat_interval_ms",
            self.group_consumer_heartbeat_interval_ms,
            &(1..=self.group_consumer_session_timeout_ms.saturating_sub(1).max(1)),
        )?;
        in_range("log_cleaner_backoff_ms", self.log_cleaner_backoff_ms, &TIMEOUT_MS_RANGE)?;
        in_range(
            "log_cleaner_io_bytes_per_sec",
            self.log_cleaner_io_bytes_per_sec,
            &CLEANER_IO_BYTES_PER_SEC_RANGE,
        )?;
        if self.log_level.trim().is_empty() || self.log_level.chars().any(char::is_whitespace) {
            return Err(Invalid::new(
                "log_level",
                format!(
                    "{:?} is not a log filter such as `info` or `info,cairn_kafka=debug`",
                    self.log_level
                ),
            ));
        }
        in_range("connections_max", self.connections_max, &CONNECTIONS_MAX_RANGE)?;
        in_range(
            "inflight_requests_max",
            self.inflight_requests_max,
            &INFLIGHT_REQUESTS_MAX_RANGE,
        )?;
        in_range("request_timeout_ms", self.request_timeout_ms, &TIMEOUT_MS_RANGE)?;
        in_range("connections_max_idle_ms", self.connections_max_idle_ms, &TIMEOUT_MS_RANGE)?;
        in_range("shutdown_timeout_ms", self.shutdown_timeout_ms, &TIMEOUT_MS_RANGE)?;
        self.check_peers()?;
        self.check_rack()?;
        self.check_cluster_id()
    }

    /// `--peers` and `--peer-listen` come together; the list names this node, at the address
    /// its listener binds, and every id is a node id.
    fn check_peers(&self) -> Result<(), Invalid> {
        let (listen, peers) = match (self.peer_listen, &self.peers) {
            (None, None) => return Ok(()),
            (Some(listen), Some(peers)) => (listen, peers),
            (Some(_), None) => {
                return Err(Invalid::new("peers", "is required with peer_listen".to_owned()));
            }
            (None, Some(_)) => {
                return Err(Invalid::new("peer_listen", "is required with peers".to_owned()));
            }
        };
        if let Some(&id) = peers.0.keys().find(|id| !NODE_ID_RANGE.contains(&id.0)) {
            let message = format!("node id {id} is outside 0..={}", NODE_ID_RANGE.end());
            return Err(Invalid::new("peers", message));
        }
        let Some(mine) = peers.0.get(&self.node_id) else {
            let message = format!("{peers} does not name this node (node_id {})", self.node_id);
            return Err(Invalid::new("peers", message));
        };
        if listen.port() == 0 {
            let message = "port 0 cannot be named in peers: give the port".to_owned();
            return Err(Invalid::new("peer_listen", message));
        }
        if !listen_matches(listen, mine) {
            let message =
                format!("{listen} is not this node's address in peers ({}={mine})", self.node_id);
            return Err(Invalid::new("peer_listen", message));
        }
        for (field, other) in
            [("kafka_listen", self.kafka_listen), ("admin_listen", self.admin_listen)]
        {
            if listeners_clash(listen, other) {
                let message = format!("{listen} clashes with {field} {other}");
                return Err(Invalid::new("peer_listen", message));
            }
        }
        Ok(())
    }

    /// A given cluster id names a cluster of peers; a single node's id is its core's.
    fn check_cluster_id(&self) -> Result<(), Invalid> {
        if self.cluster_id.is_some() && self.peers.is_none() {
            let message = "is set only with peers (a single node keeps its core's id)".to_owned();
            return Err(Invalid::new("cluster_id", message));
        }
        Ok(())
    }

    fn check_rack(&self) -> Result<(), Invalid> {
        let Some(rack) = &self.rack else { return Ok(()) };
        if rack.is_empty() || rack.len() > limits::RACK_BYTES_MAX {
            let message = format!("{rack:?} must be 1 to {} bytes", limits::RACK_BYTES_MAX);
            return Err(Invalid::new("rack", message));
        }
        Ok(())
    }
}

/// Whether the peer listener bound at `listen` is what peers dial as `named`: the same port,
/// and the same IP unless the listener binds a wildcard (a DNS name is taken on trust).
fn listen_matches(listen: SocketAddr, named: &AdvertisedAddress) -> bool {
    if listen.port() != named.port {
        return false;
    }
    match named.host.parse::<IpAddr>() {
        Ok(ip) => listen.ip().is_unspecified() || ip == listen.ip(),
        Err(_) => true,
    }
}

/// A cluster id given in the configuration (`--cluster-id`): a UUID, hyphenated or as 32 hex
/// digits. With it, each node may name its peers at addresses of its own (behind a proxy or a
/// NAT), since the id no longer comes from the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ClusterIdSetting(pub [u8; 16]);

impl FromStr for ClusterIdSetting {
    type Err = String;

    fn from_str(input: &str) -> Result<ClusterIdSetting, String> {
        match uuid::Uuid::try_parse(input.trim()) {
            Ok(id) if id.is_nil() => Err("the nil UUID is not a cluster id".to_owned()),
            Ok(id) => Ok(ClusterIdSetting(*id.as_bytes())),
            Err(error) => Err(format!("{input:?} is not a UUID ({error})")),
        }
    }
}

impl TryFrom<String> for ClusterIdSetting {
    type Error = String;

    fn try_from(input: String) -> Result<ClusterIdSetting, String> {
        input.parse()
    }
}

/// The static voter set of the consistent core (`--peers 1=HOST:PORT,2=HOST:PORT,...`): node
/// ids and the peer addresses they are dialed at. At least one and at most
/// [`CORE_VOTERS_MAX`] nodes, ids and addresses unique.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PeerList(pub BTreeMap<NodeId, AdvertisedAddress>);

impl PeerList {
    /// The ids and addresses as the peer transport takes them.
    #[must_use]
    pub fn addresses(&self) -> BTreeMap<u64, String> {
        self.0.iter().map(|(id, address)| (id.0, address.to_string())).collect()
    }
}

impl FromStr for PeerList {
    type Err = String;

    fn from_str(input: &str) -> Result<PeerList, String> {
        let mut peers = BTreeMap::new();
        for entry in input.split(',').map(str::trim) {
            let Some((id, address)) = entry.split_once('=') else {
                return Err(format!("{entry:?} is not ID=HOST:PORT"));
            };
            let id: u64 =
                id.trim().parse().map_err(|_| format!("{entry:?}: the node id is not a number"))?;
            let address: AdvertisedAddress =
                address.trim().parse().map_err(|error| format!("{entry:?}: {error}"))?;
            if peers.values().any(|known| *known == address) {
                return Err(format!("{address} is named twice"));
            }
            if peers.insert(NodeId(id), address).is_some() {
                return Err(format!("node id {id} is named twice"));
            }
        }
        if peers.len() > CORE_VOTERS_MAX {
            return Err(format!(
                "{} nodes, at most {CORE_VOTERS_MAX} may be core voters (more nodes join as \
                 learners, not supported yet)",
                peers.len()
            ));
        }
        Ok(PeerList(peers))
    }
}

impl TryFrom<String> for PeerList {
    type Error = String;

    fn try_from(input: String) -> Result<PeerList, String> {
        input.parse()
    }
}

impl fmt::Display for PeerList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, (id, address)) in self.0.iter().enumerate() {
            let separator = if position == 0 { "" } else { "," };
            write!(f, "{separator}{id}={address}")?;
        }
        Ok(())
    }
}

/// Two listeners clash when they would bind the same port on overlapping addresses.
fn listeners_clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A field that breaks a rule.
#[derive(Debug)]
struct Invalid {
    field: &'static str,
    message: String,
}

impl Invalid {
    fn new(field: &'static str, message: String) -> Invalid {
        Invalid { field, message }
    }
}

fn in_range<T>(field: &'static str, value: T, range: &RangeInclusive<T>) -> Result<(), Invalid>
where
    T: PartialOrd + fmt::Display,
{
    if range.contains(&value) {
        return Ok(());
    }
    Err(Invalid::new(field, format!("{value} is outside {}..={}", range.start(), range.end())))
}

/// The `HOST:PORT` Kafka clients are told to connect to. The host is a DNS name or an IP
/// address; an IPv6 address is written in brackets (`[2001:db8::1]:9092`) and stored without
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct AdvertisedAddress {
    /// DNS name or IP address (IPv6 without brackets), as it goes in a Metadata response.
    pub host: String,
    /// TCP port, never 0.
    pub port: u16,
}

/// Why a string is not an [`AdvertisedAddress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidAddress {
    /// The rejected input.
    pub input: String,
    /// The rule it breaks.
    pub reason: &'static str,
}

impl fmt::Display for InvalidAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a HOST:PORT address: {}", self.input, self.reason)
    }
}

impl std::error::Error for InvalidAddress {}

/// Longest DNS name.
const HOST_BYTES_MAX: usize = 253;

impl FromStr for AdvertisedAddress {
    type Err = InvalidAddress;

    fn from_str(input: &str) -> Result<AdvertisedAddress, InvalidAddress> {
        let invalid = |reason| InvalidAddress { input: input.to_owned(), reason };
        let (host, port) = if let Some(rest) = input.strip_prefix('[') {
            let (ip, port) =
                rest.split_once("]:").ok_or_else(|| invalid("expected [IPV6]:PORT"))?;
            let ip: Ipv6Addr =
                ip.parse().map_err(|_| invalid("not an IPv6 address in brackets"))?;
            (IpAddr::V6(ip).to_string(), port)
        } else {
            let (host, port) = input.rsplit_once(':').ok_or_else(|| invalid("missing :PORT"))?;
            if host.contains(':') {
                return Err(invalid("an IPv6 address must be in brackets, as [::1]:9092"));
            }
            if !is_host(host) {
                return Err(invalid("the host is not a DNS name or IPv4 address"));
            }
            (host.to_owned(), port)
        };
        if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
            return Err(invalid("a wildcard address is not one clients can connect to"));
        }
        let port: u16 =
            port.parse().map_err(|_| invalid("the port is not a number in 1..=65535"))?;
        if port == 0 {
            return Err(invalid("the port is not a number in 1..=65535"));
        }
        Ok(AdvertisedAddress { host, port })
    }
}

/// A DNS name (letters, digits, `-`, `_`, dot-separated labels of 1 to 63 bytes) or an IPv4
/// address, which has the same shape.
fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= HOST_BYTES_MAX
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl TryFrom<String> for AdvertisedAddress {
    type Error = InvalidAddress;

    fn try_from(input: String) -> Result<AdvertisedAddress, InvalidAddress> {
        input.parse()
    }
}

impl fmt::Display for AdvertisedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The flags of `cairn serve`. Every field is optional so that [`resolve`] can tell "not given"
/// from "given as the default" and apply the precedence flags > environment > file > defaults.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeArgs {
    /// TOML configuration file; its keys are the snake_case names of the options below
    /// (`kafka_listen = "0.0.0.0:9092"`), and unknown keys are an error. Flags override
    /// environment variables, which override the file. [env: CAIRN_CONFIG]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// This node's id (the Kafka broker id), unique in the cluster, at most 2147483647.
    /// [env: CAIRN_NODE_ID] [default: 0]
    #[arg(long, value_name = "ID")]
    pub node_id: Option<u64>,
    /// Directory for the metadata and every partition log; created if missing.
    /// [env: CAIRN_DATA_DIR] [default: ./cairn-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the Kafka listener binds (port 0 picks a free one).
    /// [env: CAIRN_KAFKA_LISTEN] [default: 127.0.0.1:9092]
    #[arg(long, value_name = "IP:PORT")]
    pub kafka_listen: Option<SocketAddr>,
    /// Address of the admin HTTP server: /health/live, /health/ready, /metrics.
    /// [env: CAIRN_ADMIN_LISTEN] [default: 127.0.0.1:9644]
    #[arg(long, value_name = "IP:PORT")]
    pub admin_listen: Option<SocketAddr>,
    /// Address of the etcd v3 API (gRPC; etcdctl and etcd clients work unchanged). With
    /// --peers, give each node its own. [env: CAIRN_ETCD_LISTEN] [default: 127.0.0.1:2379 for a
    /// single node, if free; none with --peers]
    #[arg(long, value_name = "IP:PORT")]
    pub etcd_listen: Option<SocketAddr>,
    /// The etcd API's space quota in bytes, as etcd's --quota-backend-bytes: past it, the
    /// NOSPACE alarm refuses writes that may grow the store until `etcdctl alarm disarm`; 0:
    /// none. [env: CAIRN_ETCD_QUOTA_BACKEND_BYTES] [default: 2147483648]
    #[arg(long, value_name = "BYTES")]
    pub etcd_quota_backend_bytes: Option<u64>,
    /// Address Kafka clients are told to connect to (IPv6 in brackets). Required when
    /// --kafka-listen is a wildcard such as 0.0.0.0. [env: CAIRN_ADVERTISE] [default: the Kafka
    /// listener's address]
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<AdvertisedAddress>,
    /// Create unknown topics on first produce or metadata request.
    /// [env: CAIRN_AUTO_CREATE_TOPICS] [default: true]
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub auto_create_topics: Option<bool>,
    /// Partitions of an automatically created topic.
    /// [env: CAIRN_DEFAULT_PARTITIONS] [default: 1]
    #[arg(long, value_name = "COUNT")]
    pub default_partitions: Option<u32>,
    /// Partitions of the consumer groups' offsets topic, when this node creates it.
    /// [env: CAIRN_OFFSETS_TOPIC_PARTITIONS] [default: 50]
    #[arg(long, value_name = "COUNT")]
    pub offsets_topic_partitions: Option<u32>,
    /// How long a consumer group's first rebalance waits for more members.
    /// [env: CAIRN_GROUP_INITIAL_REBALANCE_DELAY_MS] [default: 3000]
    #[arg(long, value_name = "MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// How long a consumer-protocol member may go without a heartbeat before it is fenced.
    /// [env: CAIRN_GROUP_CONSUMER_SESSION_TIMEOUT_MS] [default: 45000]
    #[arg(long, value_name = "MS")]
    pub group_consumer_session_timeout_ms: Option<u64>,
    /// How often consumer-protocol members are told to heartbeat; below the session timeout.
    /// [env: CAIRN_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS] [default: 5000]
    #[arg(long, value_name = "MS")]
    pub group_consumer_heartbeat_interval_ms: Option<u64>,
    /// How often the log cleaner looks for compaction rounds to carry out or propose.
    /// [env: CAIRN_LOG_CLEANER_BACKOFF_MS] [default: 15000]
    #[arg(long, value_name = "MS")]
    pub log_cleaner_backoff_ms: Option<u64>,
    /// Bytes a second the log cleaner reads and writes at most.
    /// [env: CAIRN_LOG_CLEANER_IO_BYTES_PER_SEC] [default: 67108864]
    #[arg(long, value_name = "BYTES")]
    pub log_cleaner_io_bytes_per_sec: Option<u64>,
    /// Log filter, as `info` or `info,cairn_kafka=debug`; the default keeps the Raft library's
    /// per-group notices and warnings out (with a peer down, each group warns of every
    /// heartbeat that fails). [env: CAIRN_LOG_LEVEL] [default: info,openraft=error]
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Most Kafka connections open at once. [env: CAIRN_CONNECTIONS_MAX] [default: 1024]
    #[arg(long, value_name = "COUNT")]
    pub connections_max: Option<usize>,
    /// Most requests in flight on one connection.
    /// [env: CAIRN_INFLIGHT_REQUESTS_MAX] [default: 16]
    #[arg(long, value_name = "COUNT")]
    pub inflight_requests_max: Option<usize>,
    /// Longest a client may take to send a request's body, and the broker works on one request
    /// (caps produce timeouts and fetch waits). [env: CAIRN_REQUEST_TIMEOUT_MS] [default: 30000]
    #[arg(long, value_name = "MS")]
    pub request_timeout_ms: Option<u64>,
    /// Close Kafka connections idle this long. [env: CAIRN_CONNECTIONS_MAX_IDLE_MS]
    /// [default: 600000]
    #[arg(long, value_name = "MS")]
    pub connections_max_idle_ms: Option<u64>,
    /// Longest a graceful shutdown waits for in-flight work.
    /// [env: CAIRN_SHUTDOWN_TIMEOUT_MS] [default: 30000]
    #[arg(long, value_name = "MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// Bytes at the end of each partition log kept in the OS page cache once durable; older
    /// data is dropped from the cache (0: leave caching to the OS).
    /// [env: CAIRN_PAGE_CACHE_WINDOW_BYTES] [default: 268435456]
    #[arg(long, value_name = "BYTES")]
    pub page_cache_window_bytes: Option<u64>,
    /// Address the peer listener binds, for the other nodes of a cluster; required with
    /// --peers. [env: CAIRN_PEER_LISTEN] [default: none, a single node]
    #[arg(long, value_name = "IP:PORT")]
    pub peer_listen: Option<SocketAddr>,
    /// The cluster's static core voters, this node included, at most 5:
    /// `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT` (each node's peer address). Every node gets the
    /// same list. [env: CAIRN_PEERS] [default: none, a single node]
    #[arg(long, value_name = "ID=HOST:PORT,...")]
    pub peers: Option<PeerList>,
    /// The rack (or zone) this node is in. [env: CAIRN_RACK] [default: none]
    #[arg(long, value_name = "RACK")]
    pub rack: Option<String>,
    /// The cluster id (a UUID), the same on every node; with it, each node may name its peers
    /// at addresses of its own. Only with --peers.
    /// [env: CAIRN_CLUSTER_ID] [default: derived from --peers]
    #[arg(long, value_name = "UUID")]
    pub cluster_id: Option<ClusterIdSetting>,
}

/// The TOML file: the same fields as [`ServeArgs`] but `config`, snake_case keys only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<u64>,
    data_dir: Option<PathBuf>,
    kafka_listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    etcd_listen: Option<SocketAddr>,
    etcd_quota_backend_bytes: Option<u64>,
    advertise: Option<AdvertisedAddress>,
    auto_create_topics: Option<bool>,
    default_partitions: Option<u32>,
    offsets_topic_partitions: Option<u32>,
    group_initial_rebalance_delay_ms: Option<u64>,
    group_consumer_session_timeout_ms: Option<u64>,
    group_consumer_heartbeat_interval_ms: Option<u64>,
    log_cleaner_backoff_ms: Option<u64>,
    log_cleaner_io_bytes_per_sec: Option<u64>,
    log_level: Option<String>,
    connections_max: Option<usize>,
    inflight_requests_max: Option<usize>,
    request_timeout_ms: Option<u64>,
    connections_max_idle_ms: Option<u64>,
    shutdown_timeout_ms: Option<u64>,
    page_cache_window_bytes: Option<u64>,
    peer_listen: Option<SocketAddr>,
    peers: Option<PeerList>,
    rack: Option<String>,
    cluster_id: Option<ClusterIdSetting>,
}

/// The environment variable of a field: `kafka_listen` → `CAIRN_KAFKA_LISTEN`.
#[must_use]
pub fn env_var(field: &str) -> String {
    format!("{ENV_PREFIX}{}", field.to_ascii_uppercase())
}

/// [`resolve_with`] over the process environment.
///
/// # Errors
///
/// As [`resolve_with`], and if a `CAIRN_*` variable is not valid UTF-8 (taking it lossily could
/// silently name another directory).
pub fn resolve(args: ServeArgs) -> anyhow::Result<NodeConfig> {
    for (name, value) in std::env::vars_os() {
        let ours = name.to_str().is_some_and(|name| name.starts_with(ENV_PREFIX));
        if ours && value.to_str().is_none() {
            anyhow::bail!("{} is not valid UTF-8", name.to_string_lossy());
        }
    }
    resolve_with(args, |name| std::env::var(name).ok())
}

/// Which layer set a field, for error messages.
#[derive(Debug, Clone, Copy)]
enum Source {
    Flag,
    Env,
    File,
}

/// Resolves the configuration: for each field the flag in `args`, else the variable `env`
/// returns, else the file's key, else the default; then validates the result.
///
/// # Errors
///
/// A message naming the problem and where it came from: a variable that does not parse
/// (`CAIRN_KAFKA_LISTEN="x": invalid socket address syntax`), a file that cannot be read or
/// parsed (with the line, and the key when it is unknown or mistyped), or a rule the merged
/// configuration breaks (`invalid default_partitions: 0 is outside 1..=10000 (set by
/// CAIRN_DEFAULT_PARTITIONS)`).
pub fn resolve_with(
    args: ServeArgs,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<NodeConfig> {
    let env = |name: &str| env(name).filter(|value| !value.is_empty());
    let config_path = args.config.clone().or_else(|| env(ENV_CONFIG).map(PathBuf::from));
    let file = match &config_path {
        Some(path) => load_file(path)?,
        None => FileConfig::default(),
    };

    let mut sources: Vec<(&'static str, Source)> = Vec::new();
    let defaults = NodeConfig::default();
    macro_rules! layer {
        ($field:ident) => {
            layer(stringify!($field), args.$field, &env, file.$field, &mut sources)?
        };
    }
    let config = NodeConfig {
        node_id: layer!(node_id).map_or(defaults.node_id, NodeId),
        data_dir: layer!(data_dir).unwrap_or(defaults.data_dir),
        kafka_listen: layer!(kafka_listen).unwrap_or(defaults.kafka_listen),
        admin_listen: layer!(admin_listen).unwrap_or(defaults.admin_listen),
        etcd_listen: layer!(etcd_listen).or(defaults.etcd_listen),
        etcd_quota_backend_bytes: layer!(etcd_quota_backend_bytes)
            .unwrap_or(defaults.etcd_quota_backend_bytes),
        advertise: layer!(advertise).or(defaults.advertise),
        auto_create_topics: layer!(auto_create_topics).unwrap_or(defaults.auto_create_topics),
        default_partitions: layer!(default_partitions).unwrap_or(defaults.default_partitions),
        offsets_topic_partitions: layer!(offsets_topic_partitions)
            .unwrap_or(defaults.offsets_topic_partitions),
        group_initial_rebalance_delay_ms: layer!(group_initial_rebalance_delay_ms)
            .unwrap_or(defaults.group_initial_rebalance_delay_ms),
        group_consumer_session_timeout_ms: layer!(group_consumer_session_timeout_ms)
            .unwrap_or(defaults.group_consumer_session_timeout_ms),
        group_consumer_heartbeat_interval_ms: layer!(group_consumer_heartbeat_interval_ms)
            .unwrap_or(defaults.group_consumer_heartbeat_interval_ms),
        log_cleaner_backoff_ms: layer!(log_cleaner_backoff_ms)
            .unwrap_or(defaults.log_cleaner_backoff_ms),
        log_cleaner_io_bytes_per_sec: layer!(log_cleaner_io_bytes_per_sec)
            .unwrap_or(defaults.log_cleaner_io_bytes_per_sec),
        log_level: layer!(log_level).unwrap_or(defaults.log_level),
        connections_max: layer!(connections_max).unwrap_or(defaults.connections_max),
        inflight_requests_max: layer!(inflight_requests_max)
            .unwrap_or(defaults.inflight_requests_max),
        request_timeout_ms: layer!(request_timeout_ms).unwrap_or(defaults.request_timeout_ms),
        connections_max_idle_ms: layer!(connections_max_idle_ms)
            .unwrap_or(defaults.connections_max_idle_ms),
        shutdown_timeout_ms: layer!(shutdown_timeout_ms).unwrap_or(defaults.shutdown_timeout_ms),
        page_cache_window_bytes: layer!(page_cache_window_bytes)
            .unwrap_or(defaults.page_cache_window_bytes),
        peer_listen: layer!(peer_listen).or(defaults.peer_listen),
        peers: layer!(peers).or(defaults.peers),
        rack: layer!(rack).or(defaults.rack),
        cluster_id: layer!(cluster_id).or(defaults.cluster_id),
    };

    config.check().map_err(|invalid| {
        let source = sources.iter().find(|(field, _)| *field == invalid.field).map(
            |(_, source)| match source {
                Source::Flag => format!("--{}", invalid.field.replace('_', "-")),
                Source::Env => env_var(invalid.field),
                Source::File => match &config_path {
                    Some(path) => format!("config file {}", path.display()),
                    None => "config file".to_owned(),
                },
            },
        );
        match source {
            Some(source) => {
                anyhow!("invalid {}: {} (set by {source})", invalid.field, invalid.message)
            }
            None => anyhow!("invalid {}: {} (the default)", invalid.field, invalid.message),
        }
    })?;
    Ok(config)
}

/// The highest-precedence value of `field`: the flag, else the environment variable (parsed
/// with `FromStr`), else the file's value; `None` when no layer sets it.
fn layer<T>(
    field: &'static str,
    flag: Option<T>,
    env: &impl Fn(&str) -> Option<String>,
    file: Option<T>,
    sources: &mut Vec<(&'static str, Source)>,
) -> anyhow::Result<Option<T>>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    if let Some(value) = flag {
        sources.push((field, Source::Flag));
        return Ok(Some(value));
    }
    let name = env_var(field);
    if let Some(text) = env(&name) {
        let value = text.parse::<T>().map_err(|error| anyhow!("{name}={text:?}: {error}"))?;
        sources.push((field, Source::Env));
        return Ok(Some(value));
    }
    if file.is_some() {
        sources.push((field, Source::File));
    }
    Ok(file)
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).map_err(|error| anyhow!("config file {}: {error}", path.display()))
}
