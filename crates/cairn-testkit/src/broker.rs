//! A broker on a real directory, opened as `cairn serve` opens it (metadata in `meta/`, then
//! the partitions), with the settings tests share. Opening it again on the same directory after
//! [`cairn_broker::Broker::shutdown`] is a restart.
//!
//! [`open_sim_broker`] opens the same broker with its partition logs on a [`SimDisk`] and its
//! wall clock a [`ManualClock`] ([`sim_broker_config`]): crashes drop unsynced writes, time
//! moves when the test says. Its metadata stays a real file in the directory (`LocalMetadata`
//! writes through `std::fs`); the logs are in the `SimDisk` under the same paths.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_broker::{Broker, BrokerConfig};
use cairn_meta::{LocalMetadata, NodeMeta};
use cairn_storage::ManualClock;
use cairn_storage::sim::SimDisk;
use cairn_types::NodeId;

/// A broker over local metadata, as tests hold it.
pub type TestBroker = Arc<Broker<LocalMetadata>>;

/// A broker over local metadata with its partition logs on a [`SimDisk`].
pub type SimBroker = Arc<Broker<LocalMetadata, SimDisk>>;

/// Where a [`ManualClock`] of a test starts: a fixed wall time (2023-11-14), so timestamps
/// stamped by the broker are the same on every run.
pub const MANUAL_CLOCK_START_MS: i64 = 1_700_000_000_000;

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
        cleaner: cairn_broker::CleanerConfig::default(),
        cache_window_bytes: None,
        flush_seconds: Arc::new(cairn_metrics::Histogram::latency()),
        health: Arc::default(),
        clock: Arc::new(cairn_storage::SystemClock),
        node_id: cairn_types::NodeId(0),
        raft_timers: cairn_raft::Timers::default(),
        peers: None,
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

/// The settings of [`broker_config`], with `clock` as the broker's wall clock.
#[must_use]
pub fn sim_broker_config(data_dir: &Path, clock: &ManualClock) -> BrokerConfig {
    BrokerConfig { clock: Arc::new(clock.clone()), ..broker_config(data_dir) }
}

/// Opens a broker on `config.data_dir` whose partition logs are on `disk` (new, or left there
/// by an earlier broker: after [`SimDisk::crash`], that is a restart after a power loss).
///
/// # Panics
///
/// If the metadata or the broker cannot be opened.
pub async fn open_sim_broker(config: BrokerConfig, disk: SimDisk) -> SimBroker {
    let meta = Arc::new(open_metadata(&config.data_dir, UNSERVED_PORT));
    let dir = config.data_dir.clone();
    Broker::open_on(config, meta, disk)
        .await
        .unwrap_or_else(|error| panic!("open a broker on a sim disk at {}: {error}", dir.display()))
}

/// A record of a partition as [`committed_records`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRecord {
    /// Its offset.
    pub offset: u64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
}

/// Every record of `partition` from its log start to its high watermark, in order (read and
/// verified through the partition; control batches skipped).
///
/// # Panics
/// If a read fails or a batch or record does not decode.
#[must_use]
pub fn committed_records<D: cairn_broker::Volume>(
    partition: &cairn_broker::Partition<D>,
) -> Vec<ReadRecord> {
    let end = partition.offsets().high_watermark;
    let mut records = Vec::new();
    let mut from = partition.offsets().log_start;
    while from < end {
        let read = partition.read(from, 1 << 20).expect("a committed read");
        for batch in cairn_types::batch::Batches::new(&read.records, 1 << 20) {
            let batch = batch.expect("a valid batch");
            from = batch.header().next_offset();
            if batch.header().is_control() {
                continue;
            }
            for record in batch.records() {
                let record = record.expect("a valid record");
                records.push(ReadRecord {
                    offset: batch.header().base_offset.0 + u64::from(record.offset_delta),
                    key: record.key.map(<[u8]>::to_vec),
                    value: record.value.map(<[u8]>::to_vec),
                });
            }
        }
    }
    records
}
