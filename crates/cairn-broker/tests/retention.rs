//! The retention task's lifecycle: it stops when shutdown is signalled, so a node can await it
//! before closing the partitions it sweeps. Real logs in a temporary directory.

use std::sync::Arc;
use std::time::Duration;

use cairn_meta::{TopicName, TopicSpec};
use cairn_testkit::broker::{TestBroker, broker_config, open_broker};
use tokio::sync::watch;

const BOUND: Duration = Duration::from_secs(20);

async fn broker(dir: &tempfile::TempDir) -> TestBroker {
    let broker = open_broker(broker_config(dir.path())).await;
    let spec = TopicSpec {
        name: TopicName::new("swept").expect("valid name"),
        partitions: 4,
        replication_factor: 1,
        configs: vec![("retention.ms".into(), "1".into())],
        assignments: None,
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
