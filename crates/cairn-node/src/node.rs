//! Running a node: open the data directory, the metadata and the partitions, serve Kafka and the
//! admin endpoints, and shut down cleanly on SIGTERM or SIGINT.

use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use cairn_broker::{Broker, BrokerConfig, CoordinatorConfig, Health, ShardConfig};
use cairn_kafka::ServerConfig;
use cairn_meta::{NodeMeta, NodeRecord};
use cairn_raft::coord_group::{COORD_GROUP, CoordGroup};
use cairn_raft::core_group::{
    CORE_GROUP, CoreConfig, CoreForward, CoreMetadata, CoreNode, CorePeers, NoForward, PeerForward,
};
use cairn_raft::peer::{ClusterId, PeerConfig, PeerNode, Router, Tcp};
use cairn_raft::{GroupPeers, Network};
use cairn_storage::RealDisk;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{AdminState, serve_admin};
use crate::config::{NodeConfig, PeerList};
use crate::etcd::{self, EtcdBackend};
use crate::status::{ClusterStatus, ClusterView};

/// How often retention runs over every partition (Kafka's `log.retention.check.interval.ms`).
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// Bytes of request frames all connections may hold in memory at once (keeps the broker well
/// under its memory target; a frame may be up to `FRAME_BYTES_MAX`). Frames are charged as
/// their bytes arrive, `FRAME_CHUNK_BYTES` at a time, until their request is answered.
const REQUEST_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Takes an exclusive lock on the data directory so two nodes never share it.
fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    fs::create_dir_all(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if file.try_lock().is_err() {
        bail!("data directory {} is in use by another cairn process", dir.display());
    }
    Ok(file)
}

/// The cluster id a data directory had before the consistent core held it (a `cluster-id`
/// file of 32 hex digits): the core keeps it if it sets its id now, so Kafka clients see the
/// same id after the upgrade. `None` without a file; read only.
fn previous_cluster_id(dir: &Path) -> anyhow::Result<Option<[u8; 16]>> {
    let path = dir.join("cluster-id");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    match uuid::Uuid::try_parse(text.trim()) {
        Ok(id) => Ok(Some(*id.as_bytes())),
        Err(error) => bail!("{} does not hold a cluster id ({error})", path.display()),
    }
}

/// The peer address a node registers in the core while it has no peer listener: a single node
/// with no `--peer-listen` is reached by no peer.
const PEER_ADDRESS_NONE: &str = "none";

/// The core's settings, with its flush histogram registered in `registry`.
fn core_config(registry: &cairn_metrics::Registry) -> anyhow::Result<CoreConfig> {
    let flush_seconds = registry
        .histogram(
            "cairn_core_flush_duration_seconds",
            "Duration of each flush of the consistent core's log (one fdatasync), in seconds.",
            cairn_metrics::LATENCY_BUCKETS_SECONDS,
        )
        .context("registering the core flush histogram")?;
    Ok(CoreConfig::new(Arc::new(cairn_storage::SystemClock), flush_seconds))
}

/// The coordination group's settings (the core's, with a flush histogram of its own).
fn coord_config(registry: &cairn_metrics::Registry) -> anyhow::Result<CoreConfig> {
    let flush_seconds = registry
        .histogram(
            "cairn_coord_flush_duration_seconds",
            "Duration of each flush of the coordination group's log (the etcd API's), in seconds.",
            cairn_metrics::LATENCY_BUCKETS_SECONDS,
        )
        .context("registering the coordination flush histogram")?;
    Ok(CoreConfig::new(Arc::new(cairn_storage::SystemClock), flush_seconds))
}

/// Opens the coordination group (RFC 0009 §1) in `<data>/meta/coord`, on the core's voters.
async fn open_coord(
    config: &NodeConfig,
    registry: &cairn_metrics::Registry,
    peers: Option<CorePeers<'_>>,
) -> anyhow::Result<Arc<CoordGroup<RealDisk>>> {
    let meta_dir = config.data_dir.join("meta");
    let coord_config = coord_config(registry)?;
    CoordGroup::open(RealDisk, &meta_dir, config.node_id.0, &coord_config, peers)
        .await
        .context("opening the coordination group")
}

/// Opens the consistent core of a single node in `<data>/meta` (RFC 0003 §5): with no peers,
/// this node is its only voter and leads it. `etcd_address` is its etcd listener's.
async fn open_core(
    config: &NodeConfig,
    node: NodeMeta,
    etcd_address: Option<String>,
    registry: &cairn_metrics::Registry,
) -> anyhow::Result<Arc<CoreMetadata<RealDisk>>> {
    let peer_address = PEER_ADDRESS_NONE.to_owned();
    let core_node = CoreNode { meta: node, peer_address, etcd_address };
    let previous = previous_cluster_id(&config.data_dir)?;
    let meta_dir = config.data_dir.join("meta");
    let core_config = core_config(registry)?;
    let core = CoreMetadata::open(RealDisk, &meta_dir, core_node, previous, core_config, NoForward)
        .await
        .context("opening the consistent core")?;
    Ok(Arc::new(core))
}

/// A node's side of a cluster: its peer transport, the Raft network over it and the router of
/// peers' requests to its groups.
struct Peers {
    transport: PeerNode,
    network: Network,
    router: Arc<Router>,
}

/// The cluster id of a node with peers: the one given (`--cluster-id`), else derived from the
/// peer list.
fn cluster_id_of(config: &NodeConfig, peers: &PeerList) -> [u8; 16] {
    config.cluster_id.map_or_else(|| derived_cluster_id(peers), |given| given.0)
}

/// The cluster id every node of a static peer set derives from it (RFC 0003 §7): the same
/// settings give the same id on every node, before any core exists, so a peer's handshake can
/// be checked from the first connection. Four CRC32Cs of the canonical list (ids sorted,
/// addresses as parsed), each salted: a guard against misconfiguration, not a secret.
fn derived_cluster_id(peers: &PeerList) -> [u8; 16] {
    let text = format!("cairn-cluster-v1:{peers}");
    let mut id = [0; 16];
    for (salt, chunk) in (0_u8..).zip(id.chunks_exact_mut(4)) {
        let crc = crc32c::crc32c_append(crc32c::crc32c(&[salt]), text.as_bytes());
        chunk.copy_from_slice(&crc.to_be_bytes());
    }
    id
}

/// Starts the peer transport on `--peer-listen` for the static peer set.
async fn start_peers(config: &NodeConfig, peers: &PeerList) -> anyhow::Result<Peers> {
    let listen = config.peer_listen.context("peer_listen is set with peers")?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the peer listener to {listen}"))?;
    let cluster_id = cluster_id_of(config, peers);
    let incarnation = uuid::Uuid::new_v4().as_u64_pair().0;
    let peer_config = PeerConfig::new(
        config.node_id.0,
        Some(ClusterId(cluster_id)),
        incarnation,
        peers.addresses(),
    );
    let router = Arc::new(Router::new());
    let transport = PeerNode::start(peer_config, Tcp, listener, Arc::clone(&router));
    let network = Network::new(&transport);
    tracing::info!(
        peer_listen = %listen,
        %peers,
        cluster_id = %uuid::Uuid::from_bytes(cluster_id).simple(),
        "peer transport started"
    );
    Ok(Peers { transport, network, router })
}

/// Opens the consistent core of a node with peers: its voters are the static peer set.
/// `etcd_address` is its etcd listener's.
async fn open_cluster_core(
    config: &NodeConfig,
    node: NodeMeta,
    etcd_address: Option<String>,
    peer_list: &PeerList,
    peers: &Peers,
    registry: &cairn_metrics::Registry,
) -> anyhow::Result<Arc<CoreMetadata<RealDisk, PeerForward>>> {
    let peer_address = peer_list
        .0
        .get(&node.id)
        .map(ToString::to_string)
        .context("validation puts this node in peers")?;
    let core_node = CoreNode { meta: node, peer_address, etcd_address };
    let meta_dir = config.data_dir.join("meta");
    let core_peers = CorePeers {
        transport: &peers.transport,
        network: &peers.network,
        router: &peers.router,
        voters: peer_list.0.keys().copied().collect(),
    };
    let cluster_id = cluster_id_of(config, peer_list);
    CoreMetadata::open_cluster(
        RealDisk,
        &meta_dir,
        core_node,
        cluster_id,
        core_config(registry)?,
        core_peers,
    )
    .await
    .context("opening the consistent core with its peers")
}

/// Descriptors a node holds besides its descriptor cache and its Kafka connections: standard
/// streams, listeners, the runtime's, the data directory lock, metadata writes, directory
/// syncs, admin connections and segment files leased to Fetch responses being sent.
const DESCRIPTORS_RESERVED: u64 = 64;

/// How many Kafka connections a soft open-file limit leaves once the descriptor cache
/// (`descriptors_cached`) and [`DESCRIPTORS_RESERVED`] are taken.
fn connections_left(soft_limit: u64, descriptors_cached: usize) -> u64 {
    soft_limit.saturating_sub(descriptors_cached as u64 + DESCRIPTORS_RESERVED)
}

/// Warns once, with the numbers, if `connections_max` is more than the open-file limit leaves.
/// The setting is kept, not clamped: past the descriptors left, accepts pause (the Kafka
/// listener's backoff) until connections close, and existing connections are served.
fn check_connections_max(connections_max: usize, soft_limit: u64) {
    let cached = cairn_storage::descriptors::capacity();
    let left = connections_left(soft_limit, cached);
    if connections_max as u64 > left {
        tracing::warn!(
            connections_max,
            connections_left = left,
            open_files_soft = soft_limit,
            descriptors_cached_max = cached,
            descriptors_reserved = DESCRIPTORS_RESERVED,
            "connections_max exceeds the connections the open file limit leaves; beyond them new connections wait until others close (lower --connections-max or raise the hard open file limit)"
        );
    }
}

/// Raises the soft open-file limit to the hard one and sizes the storage descriptor cache from
/// it, leaving the rest of the limit to sockets and other files. Returns the soft limit.
fn size_descriptor_cache() -> u64 {
    use cairn_storage::descriptors;
    let limit = match descriptors::raise_open_file_limit() {
        Ok((before, after)) => {
            tracing::info!(
                soft_before = before.soft,
                soft = after.soft,
                hard = after.hard,
                "open file limit"
            );
            after
        }
        Err(error) => {
            let limit = descriptors::open_file_limit();
            tracing::warn!(%error, soft = limit.soft, hard = limit.hard, "cannot raise the open file limit");
            limit
        }
    };
    descriptors::set_capacity(descriptors::capacity_for_limit(limit.soft));
    tracing::info!(descriptors_cached_max = descriptors::capacity(), "descriptor cache sized");
    limit.soft
}

/// Listens for SIGTERM and SIGINT from the call on; the future resolves when either arrives.
/// Called before readiness is reported: a signal sent as soon as the node is ready must stop it
/// cleanly, not meet the default action (death) because no handler was registered yet.
#[cfg(unix)]
fn termination() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (terminate, interrupt) {
            (Ok(mut terminate), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "cannot listen for SIGTERM or SIGINT; the node stops only when killed");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Resolves when the process receives Ctrl-C.
#[cfg(not(unix))]
fn termination() -> impl Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Help text of `cairn_partitions_offline`.
const OFFLINE_HELP: &str = "Partitions this node cannot serve: their log could not be opened, failed, or holds corrupt data.";

/// The log cleaner's counters, registered in `registry`.
fn cleaner_metrics(
    registry: &cairn_metrics::Registry,
) -> anyhow::Result<cairn_broker::CleanerMetrics> {
    let counter = |name: &str, help: &str| {
        registry.counter(name, help).with_context(|| format!("registering {name}"))
    };
    Ok(cairn_broker::CleanerMetrics {
        rounds: counter(
            "cairn_log_cleaner_rounds_total",
            "Log compaction rounds this node carried out (every replica carries out each round).",
        )?,
        segments: counter(
            "cairn_log_cleaner_segments_rewritten_total",
            "Sealed segments the log cleaner rewrote.",
        )?,
        io_bytes: counter(
            "cairn_log_cleaner_io_bytes_total",
            "Bytes the log cleaner read and wrote (capped by its IO rate).",
        )?,
        bytes_dropped: counter(
            "cairn_log_cleaner_dropped_bytes_total",
            "Bytes the log cleaner's rewrites removed from segments.",
        )?,
    })
}

/// The broker's settings from the node's, with its flush histogram registered in `registry`.
fn broker_config(
    config: &NodeConfig,
    registry: &cairn_metrics::Registry,
    health: Arc<Health>,
    peers: Option<GroupPeers>,
) -> anyhow::Result<BrokerConfig> {
    Ok(BrokerConfig {
        data_dir: config.data_dir.clone(),
        clock: Arc::new(cairn_storage::SystemClock),
        retention_interval: RETENTION_INTERVAL,
        cleaner: cairn_broker::CleanerConfig {
            interval: Duration::from_millis(config.log_cleaner_backoff_ms),
            io_bytes_per_sec: Some(config.log_cleaner_io_bytes_per_sec),
            metrics: cleaner_metrics(registry)?,
            ..cairn_broker::CleanerConfig::default()
        },
        cache_window_bytes: (config.page_cache_window_bytes > 0)
            .then_some(config.page_cache_window_bytes),
        flush_seconds: registry
            .histogram(
                "cairn_log_flush_duration_seconds",
                "Duration of each partition log flush (the fdatasync of one group commit), in seconds.",
                cairn_metrics::LATENCY_BUCKETS_SECONDS,
            )
            .context("registering the log flush histogram")?,
        health,
        node_id: config.node_id,
        raft_timers: raft_timers(registry)?,
        peers,
    })
}

/// The Raft timers of every group of the node, published as gauges so that tools (the failover
/// benchmark) can state times in election timeouts without knowing the defaults.
fn raft_timers(registry: &cairn_metrics::Registry) -> anyhow::Result<cairn_raft::Timers> {
    let timers = cairn_raft::Timers::default();
    for (name, help, value) in [
        (
            "cairn_raft_election_timeout_min_ms",
            "Shortest election timeout of the node's Raft groups, in milliseconds.",
            timers.election_timeout_min_ms,
        ),
        (
            "cairn_raft_election_timeout_max_ms",
            "Longest election timeout of the node's Raft groups, in milliseconds.",
            timers.election_timeout_max_ms,
        ),
    ] {
        let gauge = registry.gauge(name, help).context("registering a raft timer gauge")?;
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    }
    Ok(timers)
}

/// The Kafka listener's settings from the node's.
fn server_config(config: &NodeConfig, cluster_id: String) -> ServerConfig {
    ServerConfig {
        node_id: config.node_id,
        cluster_id,
        connections_max: config.connections_max,
        inflight_requests_max: config.inflight_requests_max,
        request_bytes_max: REQUEST_BYTES_MAX,
        auto_create_topics: config.auto_create_topics,
        default_partitions: config.default_partitions,
        idle_timeout: Duration::from_millis(config.connections_max_idle_ms),
        request_timeout: Duration::from_millis(config.request_timeout_ms),
        shutdown_grace: Duration::from_millis(config.shutdown_timeout_ms),
        groups: CoordinatorConfig {
            offsets_partitions: config.offsets_topic_partitions,
            shard: ShardConfig {
                initial_rebalance_delay_ms: i64::try_from(config.group_initial_rebalance_delay_ms)
                    .unwrap_or(i64::MAX),
                consumer_session_timeout_ms: i32::try_from(
                    config.group_consumer_session_timeout_ms,
                )
                .unwrap_or(i32::MAX),
                consumer_heartbeat_interval_ms: i32::try_from(
                    config.group_consumer_heartbeat_interval_ms,
                )
                .unwrap_or(i32::MAX),
                ..ShardConfig::default()
            },
            write_timeout: Duration::from_millis(config.request_timeout_ms),
            ..CoordinatorConfig::default()
        },
    }
}

/// Runs a node until SIGTERM/SIGINT, then stops accepting, finishes in-flight requests, flushes
/// every partition and returns.
///
/// # Errors
/// Startup failures: the data directory is in use or damaged, a listener cannot bind, the
/// core does not start.
pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    let soft_limit = size_descriptor_cache();
    check_connections_max(config.connections_max, soft_limit);
    let _lock = lock_data_dir(&config.data_dir)?;
    let kafka = TcpListener::bind(config.kafka_listen)
        .await
        .with_context(|| format!("binding the Kafka listener to {}", config.kafka_listen))?;
    let advertised = config.advertised_address(kafka.local_addr()?);
    let node = NodeMeta {
        id: config.node_id,
        host: advertised.host.clone(),
        port: advertised.port,
        rack: config.rack.clone(),
    };
    let admin = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding the admin listener to {}", config.admin_listen))?;
    let etcd = etcd::bind(config.etcd_listen, config.peers.is_none()).await?;
    let etcd_address = etcd.as_ref().map(TcpListener::local_addr).transpose()?;
    let registry = Arc::new(cairn_metrics::Registry::new());
    let listeners = Listeners {
        kafka,
        admin,
        etcd,
        etcd_address: etcd_address.map(|address| address.to_string()),
        advertised: advertised.to_string(),
    };
    let Some(peer_list) = &config.peers else {
        let meta = open_core(&config, node, listeners.etcd_address.clone(), &registry).await?;
        let coord = open_coord(&config, &registry, None).await?;
        return serve(&config, meta, coord, listeners, registry, None).await;
    };
    let peers = start_peers(&config, peer_list).await?;
    let served = serve_cluster(&config, node, peer_list, &peers, listeners, registry).await;
    peers.router.remove(COORD_GROUP);
    peers.router.remove(CORE_GROUP);
    peers.transport.shutdown().await;
    served
}

/// Opens the core and the coordination group of a node with peers, then serves.
async fn serve_cluster(
    config: &NodeConfig,
    node: NodeMeta,
    peer_list: &PeerList,
    peers: &Peers,
    listeners: Listeners,
    registry: Arc<cairn_metrics::Registry>,
) -> anyhow::Result<()> {
    let etcd_address = listeners.etcd_address.clone();
    let meta = open_cluster_core(config, node, etcd_address, peer_list, peers, &registry).await?;
    let core_peers = CorePeers {
        transport: &peers.transport,
        network: &peers.network,
        router: &peers.router,
        voters: peer_list.0.keys().copied().collect(),
    };
    let coord = open_coord(config, &registry, Some(core_peers)).await?;
    let group_peers = GroupPeers::new(
        config.node_id.0,
        peers.network.clone(),
        Arc::clone(&peers.router),
        &cairn_raft::Timers::default(),
    );
    publish_quiesced(&registry, &group_peers.quiescence)?;
    serve(config, meta, coord, listeners, registry, Some(group_peers)).await
}

/// Publishes how many of the node's groups are quiesced (RFC 0004) as a gauge, every second
/// while `quiescence` is in use.
fn publish_quiesced(
    registry: &cairn_metrics::Registry,
    quiescence: &Arc<cairn_raft::Quiescence>,
) -> anyhow::Result<()> {
    let gauge = registry
        .gauge(
            "cairn_raft_groups_quiesced",
            "Raft groups on this node whose timers are stopped because they are idle (RFC 0004).",
        )
        .context("registering the quiesced groups gauge")?;
    let quiescence = Arc::downgrade(quiescence);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        while let Some(quiescence) = quiescence.upgrade() {
            gauge.set(i64::try_from(quiescence.quiesced()).unwrap_or(i64::MAX));
            drop(quiescence);
            ticks.tick().await;
        }
    });
    Ok(())
}

/// The Kafka, admin and etcd listeners, bound.
struct Listeners {
    kafka: TcpListener,
    admin: TcpListener,
    /// None: this node serves no etcd API.
    etcd: Option<TcpListener>,
    /// The etcd listener's bound address: what the core registers for this node.
    etcd_address: Option<String>,
    /// The address Kafka clients are told, for the log.
    advertised: String,
}

/// Serves Kafka and admin over `meta` until SIGTERM/SIGINT, then shuts down cleanly.
async fn serve<F: CoreForward>(
    config: &NodeConfig,
    meta: Arc<CoreMetadata<RealDisk, F>>,
    coord: Arc<CoordGroup<RealDisk>>,
    listeners: Listeners,
    registry: Arc<cairn_metrics::Registry>,
    peers: Option<GroupPeers>,
) -> anyhow::Result<()> {
    let Listeners { kafka, admin, etcd, advertised, .. } = listeners;
    let ready = Arc::new(AtomicBool::new(false));
    let Some(cluster_bytes) = meta.cluster_id() else {
        bail!("the consistent core has no cluster id");
    };
    let cluster_id = uuid::Uuid::from_bytes(cluster_bytes).simple().to_string();
    let (stop, stopping) = watch::channel(false);
    let etcd_task = etcd.map(|listener| {
        let backend = etcd_backend(config, &meta, &coord, cluster_bytes);
        let mut etcd_stopping = stopping.clone();
        etcd::spawn(listener, backend, config.etcd_quota_backend_bytes, async move {
            let _ = etcd_stopping.wait_for(|stop| *stop).await;
        })
    });
    let health = Arc::new(Health::new(
        registry
            .gauge("cairn_partitions_offline", OFFLINE_HELP)
            .context("registering the offline partitions gauge")?,
    ));
    let status_meta = Arc::clone(&meta);
    let admin_state = AdminState {
        registry: Arc::clone(&registry),
        ready: Arc::clone(&ready),
        health: Arc::clone(&health),
        cluster: Some(ClusterView::new(move || ClusterStatus::of(&status_meta.status()))),
    };
    let mut admin_stopping = stopping.clone();
    let admin_task = tokio::spawn(serve_admin(admin, admin_state, async move {
        let _ = admin_stopping.wait_for(|stop| *stop).await;
    }));

    let broker_config = broker_config(config, &registry, health, peers)?;
    let broker =
        Broker::open(broker_config, Arc::clone(&meta)).await.context("opening partitions")?;
    let retention = tokio::spawn(Arc::clone(&broker).run_retention(stopping.clone()));
    let cleaner = tokio::spawn(Arc::clone(&broker).run_cleaner(stopping.clone()));
    let placement = tokio::spawn(Arc::clone(&broker).run_placement(stopping.clone()));
    let server_config = server_config(config, cluster_id);
    let terminated = termination();
    tracing::info!(
        kafka = %config.kafka_listen,
        %advertised,
        admin = %config.admin_listen,
        data_dir = %config.data_dir.display(),
        "cairn node ready"
    );
    ready.store(true, Ordering::Release);
    let server = {
        let broker = Arc::clone(&broker);
        tokio::spawn(async move {
            cairn_kafka::serve(kafka, broker, server_config, &registry, stopping).await
        })
    };
    let served = supervise(server, terminated, &ready, &stop).await;
    // The sweeps stop between partitions once `stop` is sent; it must end before the partitions
    // are closed under it.
    if let Err(error) = retention.await {
        tracing::error!(%error, "retention task failed");
    }
    if let Err(error) = cleaner.await {
        tracing::error!(%error, "log cleaner task failed");
    }
    if let Err(error) = placement.await {
        tracing::error!(%error, "placement task failed");
    }
    broker.shutdown().await;
    if let Some(task) = etcd_task
        && let Err(error) = task.await
    {
        tracing::error!(%error, "etcd API task failed");
    }
    if let Err(error) = coord.shutdown().await {
        tracing::error!(%error, "closing the coordination group failed");
    }
    if let Err(error) = meta.shutdown().await {
        tracing::error!(%error, "closing the consistent core failed");
    }
    if let Err(error) = admin_task.await {
        tracing::error!(%error, "admin listener task failed");
    }
    tracing::info!("cairn node stopped");
    served
}

/// The etcd API's backend: the coordination group, and the core's nodes as its members, each
/// with the etcd address it registered as its client URL.
fn etcd_backend<F: CoreForward>(
    config: &NodeConfig,
    meta: &Arc<CoreMetadata<RealDisk, F>>,
    coord: &Arc<CoordGroup<RealDisk>>,
    cluster_id: [u8; 16],
) -> EtcdBackend {
    let meta = Arc::clone(meta);
    let members = Box::new(move || meta.state().nodes().map(member).collect());
    let meta_dir = config.data_dir.join("meta");
    EtcdBackend::new(Arc::clone(coord), config.node_id.0, cluster_id, &meta_dir, members)
}

/// A registered node as an etcd member: its peer URL if it has peers, its client URL if it
/// serves the etcd API.
fn member(record: &NodeRecord) -> cairn_etcd::Member {
    let url = |address: &str| format!("http://{address}");
    cairn_etcd::Member {
        id: etcd::member_id(record.meta.id.0),
        name: format!("node-{}", record.meta.id.0),
        peer_urls: (record.peer_address != PEER_ADDRESS_NONE)
            .then(|| url(&record.peer_address))
            .into_iter()
            .collect(),
        client_urls: record.etcd_address.as_deref().map(url).into_iter().collect(),
        is_learner: false,
    }
}

/// What ended a Kafka listener task.
type Served = Result<Result<(), cairn_metrics::Error>, tokio::task::JoinError>;

/// Waits for `signal` while the Kafka listener runs, then turns readiness off and tells every
/// task to stop (`stop`). On the signal, waits for the listener to finish its in-flight requests.
/// If the listener ends first — it only ends after `stop` unless it failed — the node cannot
/// serve: readiness turns off at once and the node shuts down with an error.
///
/// # Errors
/// The listener ended before the signal (failed to start, panicked, or returned).
async fn supervise(
    mut server: tokio::task::JoinHandle<Result<(), cairn_metrics::Error>>,
    signal: impl Future<Output = ()>,
    ready: &AtomicBool,
    stop: &watch::Sender<bool>,
) -> anyhow::Result<()> {
    let ended = tokio::select! {
        () = signal => None,
        ended = &mut server => Some(ended),
    };
    ready.store(false, Ordering::Release);
    let _ = stop.send(true);
    match ended {
        None => {
            tracing::info!("shutting down: finishing in-flight requests");
            if let Some(reason) = failure(server.await) {
                tracing::error!(%reason, "kafka listener failed");
            }
            Ok(())
        }
        Some(ended) => {
            let reason = failure(ended).unwrap_or_else(|| "returned".to_owned());
            tracing::error!(%reason, "kafka listener stopped unexpectedly; shutting down");
            bail!("kafka listener stopped unexpectedly: {reason}")
        }
    }
}

/// Why a Kafka listener task ended, if it failed.
fn failure(served: Served) -> Option<String> {
    match served {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(format!("failed to start: {error}")),
        Err(error) => Some(format!("task failed: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(20);

    #[test]
    fn connections_left_by_the_open_file_limit() {
        // At the common limit of 1,024 the cache takes 512: the default 1,024 connections do
        // not fit, which start warns about.
        let cached = cairn_storage::descriptors::capacity_for_limit(1024);
        assert_eq!(connections_left(1024, cached), 1024 - 512 - DESCRIPTORS_RESERVED);
        assert!(connections_left(1024, cached) < NodeConfig::default().connections_max as u64);
        assert_eq!(connections_left(16, 32), 0, "never negative");
        let cached = cairn_storage::descriptors::capacity_for_limit(1 << 20);
        assert!(connections_left(1 << 20, cached) > 1024, "a high limit leaves plenty");
    }

    #[test]
    fn members_give_every_registered_etcd_address_as_a_client_url() {
        let record = |id: u64, peer: &str, etcd: Option<&str>| NodeRecord {
            meta: NodeMeta {
                id: cairn_types::NodeId(id),
                host: "h".into(),
                port: 9092,
                rack: None,
            },
            peer_address: peer.to_owned(),
            etcd_address: etcd.map(str::to_owned),
            liveness: cairn_meta::Liveness::Alive,
        };
        let other = member(&record(2, "10.0.0.2:9093", Some("10.0.0.2:2379")));
        assert_eq!(other.id, 3, "node id plus one");
        assert_eq!(other.client_urls, ["http://10.0.0.2:2379"]);
        assert_eq!(other.peer_urls, ["http://10.0.0.2:9093"]);
        let single = member(&record(0, PEER_ADDRESS_NONE, None));
        assert!(single.client_urls.is_empty() && single.peer_urls.is_empty());
    }

    #[tokio::test]
    async fn node_whose_kafka_task_dies_turns_unready_and_fails() {
        let ready = AtomicBool::new(true);
        let (stop, stopping) = watch::channel(false);
        let server = tokio::spawn(async { panic!("the listener died") });
        let signal = std::future::pending::<()>();
        let served = tokio::time::timeout(BOUND, supervise(server, signal, &ready, &stop))
            .await
            .expect("supervise returns when the listener dies, without a signal");
        let error = served.expect_err("a dead listener is an error exit");
        assert!(error.to_string().contains("the listener died"), "{error}");
        assert!(!ready.load(Ordering::Acquire), "a node without a listener is not ready");
        assert!(*stopping.borrow(), "the other tasks are told to stop");
    }

    #[tokio::test]
    async fn signal_stops_the_listener_and_succeeds() {
        let ready = AtomicBool::new(true);
        let (stop, stopping) = watch::channel(false);
        let mut stopped = stopping.clone();
        // A listener that, like `serve`, returns once told to stop.
        let server = tokio::spawn(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
            Ok(())
        });
        let signal = std::future::ready(());
        let served = tokio::time::timeout(BOUND, supervise(server, signal, &ready, &stop))
            .await
            .expect("the listener stops when told");
        assert!(served.is_ok());
        assert!(!ready.load(Ordering::Acquire));
        assert!(*stopping.borrow());
    }
}
