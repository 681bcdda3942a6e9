//! A broker on a real directory, opened as `cairn serve` opens it (metadata in `meta/`, then
//! the partitions), with the settings tests share. Opening it again on the same directory after
//! [`cairn_broker::Broker::shutdown`] is a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_broker::{Broker, BrokerConfig};
use cairn_meta::{LocalMetadata, NodeMeta};
use cairn_types::NodeId;

/// A broker over local metadata, as tests hold it.
pub type TestBroker = Arc<Broker<LocalMetadata>>;

/// The port a broker opened without a server advertises (Kafka's default; nothing listens).
pub const UNSERVED_PORT: u16 = 9092;

/// This node (id 0) as the metadata records it, advertising `127.0.0.1:port`.
#[must_use]
pub fn node_meta(port: u16) -> NodeMeta {
    NodeMeta { id: NodeId(0), host: "127.0.0.1".into(), port, rack: None }
}

/// Opens (or creates) the metadata of the data directory `data_dir`, in `data_dir/meta`, for
/// node 0 advertising [`UNSERVED_PORT`]: what a test edits to build the state a crash leaves.
///
/// # Panics
///
/// If the store cannot be opened.
#[must_use]
pub fn metadata(data_dir: &Path) -> LocalMetadata {
    open_metadata(data_dir, UNSERVED_PORT)
}

fn open_metadata(data_dir: &Path, port: u16) -> LocalMetadata {
    let dir = data_dir.join("meta");
    LocalMetadata::open(&dir, node_meta(port))
        .unwrap_or_else(|error| panic!("open the metadata in {}: {error}", dir.display()))
}

/// The broker settings of tests: partitions in `data_dir/topics`, retention hourly (so it never
/// runs during a test unless asked to), the page cache left to the OS, a flush histogram and
/// health of its own that no registry exposes.
#[must_use]
pub fn broker_config(data_dir: &Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: data_dir.to_path_buf(),
        retention_interval: Duration::from_secs(3600),
        cache_window_bytes: None,
        flush_seconds: Arc::new(cairn_metrics::Histogram::latency()),
        health: Arc::default(),
    }
}

/// Opens a broker on `config.data_dir` (new, or left by an earlier broker) that no server
/// serves, as [`open_broker_at`] with [`UNSERVED_PORT`].
///
/// # Panics
///
/// If the metadata or the broker cannot be opened.
pub async fn open_broker(config: BrokerConfig) -> TestBroker {
    open_broker_at(config, UNSERVED_PORT).await
}

/// Opens a broker on `config.data_dir` whose metadata advertises `127.0.0.1:port`.
///
/// # Panics
///
/// If the metadata or the broker cannot be opened.
pub async fn open_broker_at(config: BrokerConfig, port: u16) -> TestBroker {
    let meta = Arc::new(open_metadata(&config.data_dir, port));
    let dir = config.data_dir.clone();
    Broker::open(config, meta)
        .await
        .unwrap_or_else(|error| panic!("open a broker on {}: {error}", dir.display()))
}
