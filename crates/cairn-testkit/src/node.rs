//! [`TestNode`]: a broker served over real TCP in this process, as `cairn serve` serves it but
//! without the admin server, the configuration layers or signals: a test reaches into the
//! broker, the metrics registry and the data directory directly.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_broker::{BrokerConfig, CoordinatorConfig, ShardConfig};
use cairn_kafka::{ServerConfig, serve};
use cairn_meta::{TopicMeta, TopicName, TopicSpec};
use cairn_metrics::{Histogram, Registry};
use cairn_types::NodeId;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::{TestBroker, broker_config, open_broker_at};

/// How long [`TestNode::stop`] waits for `serve` to return once signalled: above the default
/// shutdown grace, so a node stops within it unless a connection is stuck past its grace.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The listener settings of tests: 16 connections, 8 requests in flight each, 64 MiB of
/// request memory, no topic auto-creation, one partition by default, a 60 s idle timeout, a
/// 30 s request timeout and a 10 s shutdown grace; an offsets topic of 4 partitions and no
/// initial rebalance delay.
#[must_use]
pub fn server_config() -> ServerConfig {
    ServerConfig {
        node_id: NodeId(0),
        cluster_id: "test-cluster".into(),
        connections_max: 16,
        inflight_requests_max: 8,
        request_bytes_max: 64 * 1024 * 1024,
        auto_create_topics: false,
        default_partitions: 1,
        idle_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(10),
        groups: CoordinatorConfig {
            offsets_partitions: 4,
            shard: ShardConfig { initial_rebalance_delay_ms: 0, ..ShardConfig::default() },
            ..CoordinatorConfig::default()
        },
    }
}

/// How a [`TestNode`] will start: its directory, its broker and listener settings.
pub struct TestNodeBuilder {
    dir: TempDir,
    broker: BrokerConfig,
    server: ServerConfig,
}

impl TestNodeBuilder {
    /// Changes the listener settings (from [`server_config`]).
    #[must_use]
    pub fn server(mut self, change: impl FnOnce(&mut ServerConfig)) -> Self {
        change(&mut self.server);
        self
    }

    /// Changes the broker settings (from [`broker_config`] on the node's directory).
    #[must_use]
    pub fn broker(mut self, change: impl FnOnce(&mut BrokerConfig)) -> Self {
        change(&mut self.broker);
        self
    }

    /// Opens the broker and starts serving it on a free loopback port.
    ///
    /// # Panics
    ///
    /// If the port, the metadata or the broker cannot be opened.
    pub async fn start(self) -> TestNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let flush_seconds = Arc::clone(&self.broker.flush_seconds);
        let broker = open_broker_at(self.broker, addr.port()).await;
        let registry = Arc::new(Registry::new());
        let (stop, stopping) = watch::channel(false);
        let server = tokio::spawn({
            let broker = Arc::clone(&broker);
            let registry = Arc::clone(&registry);
            async move { serve(listener, broker, self.server, &registry, stopping).await }
        });
        TestNode { addr, broker, registry, flush_seconds, stop, server, dir: self.dir }
    }
}

/// A broker on a temporary directory served by [`cairn_kafka::serve`] on a free loopback port.
///
/// Stop it with [`TestNode::stop`] to check that it stops; dropped, it stops serving in the
/// background. A restart is `TestNode::builder_in(node.stop().await)`.
pub struct TestNode {
    addr: SocketAddr,
    broker: TestBroker,
    registry: Arc<Registry>,
    flush_seconds: Arc<Histogram>,
    stop: watch::Sender<bool>,
    server: JoinHandle<Result<(), cairn_metrics::Error>>,
    dir: TempDir,
}

impl TestNode {
    /// Starts a node with the test settings on a new temporary directory.
    ///
    /// # Panics
    ///
    /// As [`TestNodeBuilder::start`], or if no temporary directory can be made.
    pub async fn start() -> TestNode {
        TestNode::builder().start().await
    }

    /// A node to start on a new temporary directory.
    ///
    /// # Panics
    ///
    /// If no temporary directory can be made.
    #[must_use]
    pub fn builder() -> TestNodeBuilder {
        TestNode::builder_in(tempfile::tempdir().expect("a temporary directory"))
    }

    /// A node to start on `dir`, new or left by an earlier node (a restart).
    #[must_use]
    pub fn builder_in(dir: TempDir) -> TestNodeBuilder {
        let broker = broker_config(dir.path());
        TestNodeBuilder { dir, broker, server: server_config() }
    }

    /// The Kafka listener's address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Kafka listener's address as a bootstrap string (`127.0.0.1:PORT`).
    #[must_use]
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The broker being served.
    #[must_use]
    pub fn broker(&self) -> &TestBroker {
        &self.broker
    }

    /// The registry the listener's metrics are in.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The histogram of the broker's partition log flushes (not in [`TestNode::registry`]).
    #[must_use]
    pub fn flush_seconds(&self) -> &Histogram {
        &self.flush_seconds
    }

    /// The data directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The value of one rendered metric sample, e.g.
    /// `cairn_kafka_errors_total{api="Metadata",code="3"}`; 0 if it was never recorded.
    #[must_use]
    pub fn metric(&self, sample: &str) -> u64 {
        let rendered = self.registry.render();
        rendered
            .lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    /// Creates `name` with `partitions` partitions and the default configs.
    ///
    /// # Panics
    ///
    /// If the name is invalid or the broker refuses the topic.
    pub async fn create_topic(&self, name: &str, partitions: u32) -> Arc<TopicMeta> {
        let name_ = TopicName::new(name).unwrap_or_else(|error| panic!("{name:?}: {error}"));
        let spec = TopicSpec {
            name: name_,
            partitions,
            replication_factor: 1,
            configs: vec![],
            assignments: None,
        };
        let created = self.broker.create_topic(spec).await;
        created.unwrap_or_else(|error| panic!("create topic {name}: {error}"))
    }

    /// Tells the listener to shut down, without waiting: in-flight requests are still being
    /// answered when this returns.
    pub fn signal_stop(&self) {
        self.stop.send_replace(true);
    }

    /// Shuts the node down: the listener within [`STOP_TIMEOUT`], then the broker (every
    /// partition flushed and closed). Returns the directory, for a restart or a look at the
    /// files.
    ///
    /// # Panics
    ///
    /// If `serve` does not return within [`STOP_TIMEOUT`], fails or panics.
    pub async fn stop(self) -> TempDir {
        self.signal_stop();
        match tokio::time::timeout(STOP_TIMEOUT, self.server).await {
            Err(_) => panic!("serve did not return within {STOP_TIMEOUT:?} of shutdown"),
            Ok(Err(error)) => panic!("serve panicked: {error}"),
            Ok(Ok(Err(error))) => panic!("serve failed: {error}"),
            Ok(Ok(Ok(()))) => {}
        }
        self.broker.shutdown().await;
        self.dir
    }
}
