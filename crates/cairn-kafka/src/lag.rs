//! The consumer groups' committed offsets and lag in `/metrics` (issue 11): every
//! [`PUBLISH_INTERVAL`], the node that coordinates a group publishes, for each partition it
//! committed, `cairn_group_committed_offset` and, if the partition has a replica on this node,
//! `cairn_group_lag`: that replica's high watermark minus the committed offset, at least 0. A
//! follower's high watermark trails the leader's by its replication delay, so lag read there
//! may be that much short. Series of groups this node no longer coordinates, or offsets no
//! longer committed, go at the next publish.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cairn_broker::{Broker, GroupCoordinator};
use cairn_meta::MetadataStore;
use cairn_metrics::{GaugeFamily, Registry};
use tokio::sync::watch;

/// How often the offsets are published.
pub(crate) const PUBLISH_INTERVAL: Duration = Duration::from_secs(5);

/// The two gauge families.
pub(crate) struct LagMetrics {
    committed: Arc<GaugeFamily>,
    lag: Arc<GaugeFamily>,
}

impl LagMetrics {
    /// Registers the families in `registry`.
    pub(crate) fn register(registry: &Registry) -> Result<LagMetrics, cairn_metrics::Error> {
        let labels = &["group", "topic", "partition"];
        Ok(LagMetrics {
            committed: registry.gauge_family(
                "cairn_group_committed_offset",
                "The offset a consumer group committed, by partition (published by its coordinator).",
                labels,
            )?,
            lag: registry.gauge_family(
                "cairn_group_lag",
                "Records a consumer group has not committed yet: the high watermark minus the committed offset (published by its coordinator, for partitions with a replica on its node).",
                labels,
            )?,
        })
    }

    /// Publishes the offsets of the groups `groups` coordinates now (module docs).
    pub(crate) async fn publish<M: MetadataStore>(
        &self,
        groups: &Arc<GroupCoordinator<M>>,
        broker: &Broker<M>,
    ) {
        let committed = groups.committed().await;
        let mut lagging = HashSet::new();
        for (group, topic, partition, offset) in &committed {
            let labels = [group.as_str(), topic, &partition.to_string()];
            self.committed.with(&labels).set(*offset);
            let hosted = u32::try_from(*partition).ok().and_then(|p| broker.partition(topic, p));
            if let Some(hosted) = hosted {
                let high_watermark = i64::try_from(hosted.offsets().high_watermark.0);
                let lag = high_watermark.unwrap_or(i64::MAX).saturating_sub(*offset).max(0);
                self.lag.with(&labels).set(lag);
                lagging.insert(labels.map(str::to_owned));
            }
        }
        let published: HashSet<[String; 3]> = committed
            .into_iter()
            .map(|(group, topic, partition, _)| [group, topic, partition.to_string()])
            .collect();
        let key = |labels: &[String]| <[String; 3]>::try_from(labels.to_vec()).ok();
        self.committed.retain(|labels| key(labels).is_some_and(|k| published.contains(&k)));
        self.lag.retain(|labels| key(labels).is_some_and(|k| lagging.contains(&k)));
    }

    /// Publishes every [`PUBLISH_INTERVAL`] until `shutdown` turns true.
    pub(crate) async fn run<M: MetadataStore>(
        self,
        groups: Arc<GroupCoordinator<M>>,
        broker: Arc<Broker<M>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ticks = tokio::time::interval(PUBLISH_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = ticks.tick() => {}
            }
            self.publish(&groups, &broker).await;
        }
    }
}
