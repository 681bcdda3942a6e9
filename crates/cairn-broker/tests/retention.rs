//! The retention task's lifecycle: it stops when shutdown is signalled, so a node can await it
//! before closing the partitions it sweeps. Real logs in a temporary directory.

use std::sync::Arc;
use std::time::Duration;

use cairn_broker::{Broker, BrokerConfig};
use cairn_meta::{LocalMetadata, NodeMeta, TopicName, TopicSpec};
use cairn_types::NodeId;
use tokio::sync::watch;

const BOUND: Duration = Duration::from_secs(20);

async fn broker(dir: &tempfile::TempDir) -> Arc<Broker<LocalMetadata>> {
    let node = NodeMeta { id: NodeId(0), host: "127.0.0.1".into(), port: 9092, rack: None };
    let meta = LocalMetadata::open(&dir.path().join("meta"), node).expect("fresh metadata");
    let config = BrokerConfig {
        data_dir: dir.path().into(),
        retention_interval: Duration::from_secs(3600),
        cache_window_bytes: None,
        flush_seconds: Arc::new(cairn_metrics::Histogram::latency()),
        health: Arc::default(),
    };
    let broker = Broker::open(config, Arc::new(meta)).await.expect("empty data directory");
    let spec = TopicSpec {
        name: TopicName::new("swept").expect("valid name"),
        partitions: 4,
        replication_factor: 1,
        configs: vec![("retention.ms".into(), "1".into())],
    };
    broker.create_topic(spec).await.expect("new topic");
    broker
}

#[tokio::test]
async fn retention_sweep_stops_at_shutdown() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let broker = broker(&dir).await;
    let (stop, stopping) = watch::channel(false);
    // The interval's first tick is immediate: a sweep starts at once, the next in an hour.
    let retention = tokio::spawn(Arc::clone(&broker).run_retention(stopping));
    stop.send(true).expect("the task holds a receiver");
    tokio::time::timeout(BOUND, retention)
        .await
        .expect("the retention task ends once shutdown is signalled")
        .expect("the retention task does not panic");
    broker.shutdown().await;
}

#[tokio::test]
async fn retention_does_not_sweep_after_shutdown() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let broker = broker(&dir).await;
    let (_stop, stopping) = watch::channel(true);
    // Partitions closed first: a sweep now would log failures; none must start.
    broker.shutdown().await;
    tokio::time::timeout(BOUND, Arc::clone(&broker).run_retention(stopping))
        .await
        .expect("a signalled retention task returns without sweeping");
}
