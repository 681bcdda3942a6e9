//! Where each partition's records go: the brokers of the cluster and the leader of every
//! partition of the benchmark's topic, as Metadata names them ([`Routes`]).
//!
//! A producer sends each partition's batch to the broker that leads it, one connection per
//! leader broker. A refusal that means "not here, or not now" (NOT_LEADER_OR_FOLLOWER,
//! LEADER_NOT_AVAILABLE and the other codes of [`retriable`]) sends the batch again after the
//! routes are updated: from the answer's KIP-951 leader hint when it has one, else from a fresh
//! Metadata request to any broker that answers. On a single node every partition routes to the
//! one broker, so a request carries every partition's batch, as before routing existed.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use cairn_client::codes::describe;
use cairn_client::{Client, Options};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, ProduceResponse};

use crate::kafka::topic_name;

/// A broker's id (Kafka's `node_id`).
pub type NodeId = i32;

/// Kafka's UNKNOWN_TOPIC_OR_PARTITION: a broker that has not applied the topic yet.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// Kafka's LEADER_NOT_AVAILABLE: an election is under way.
pub const LEADER_NOT_AVAILABLE: i16 = 5;
/// Kafka's NOT_LEADER_OR_FOLLOWER: the broker does not lead the partition.
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// Kafka's REQUEST_TIMED_OUT: the outcome is unknown (the write may still commit).
const REQUEST_TIMED_OUT: i16 = 7;
/// Kafka's NOT_ENOUGH_REPLICAS: the leader cannot reach a quorum right now.
const NOT_ENOUGH_REPLICAS: i16 = 19;
/// Kafka's NOT_ENOUGH_REPLICAS_AFTER_APPEND.
const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
/// Kafka's UNKNOWN_TOPIC_ID: as UNKNOWN_TOPIC_OR_PARTITION, for requests by topic id.
const UNKNOWN_TOPIC_ID: i16 = 100;

/// Whether a partition error of a Produce answer is one a Kafka producer retries after
/// updating its metadata: the partition moved or has no leader yet, the broker has not seen
/// the topic yet, or the outcome is unknown. Anything else is a failure of the records.
#[must_use]
pub fn retriable(code: i16) -> bool {
    matches!(
        code,
        UNKNOWN_TOPIC_OR_PARTITION
            | LEADER_NOT_AVAILABLE
            | NOT_LEADER_OR_FOLLOWER
            | REQUEST_TIMED_OUT
            | NOT_ENOUGH_REPLICAS
            | NOT_ENOUGH_REPLICAS_AFTER_APPEND
            | UNKNOWN_TOPIC_ID
    )
}

/// One partition as Metadata describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionRoute {
    /// Its leader, `None` while Metadata names none (-1).
    pub leader: Option<NodeId>,
    /// The replicas in sync, as the answering broker knows them.
    pub isr: Vec<NodeId>,
}

/// The brokers and the topic's partition leaders, as the last Metadata answer (and the leader
/// hints since) named them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    /// Every broker's `host:port`, by id.
    pub brokers: BTreeMap<NodeId, String>,
    /// The topic's partitions by index.
    pub partitions: BTreeMap<i32, PartitionRoute>,
}

impl Routes {
    /// The routes of `topic` in a Metadata answer.
    ///
    /// # Errors
    /// If the answer does not describe the topic, or describes it with an error.
    pub fn of_metadata(response: &MetadataResponse, topic: &str) -> anyhow::Result<Routes> {
        let brokers = response
            .brokers
            .iter()
            .map(|broker| (broker.node_id.0, address(&broker.host, broker.port)))
            .collect();
        let Some(described) = response
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|name| name.0.as_str() == topic))
        else {
            bail!("the broker did not describe topic {topic}");
        };
        if described.error_code != 0 {
            bail!("topic {topic}: {}", describe(described.error_code, None));
        }
        let partitions = described
            .partitions
            .iter()
            .map(|p| {
                let leader = (p.leader_id.0 >= 0).then_some(p.leader_id.0);
                let isr = p.isr_nodes.iter().map(|id| id.0).collect();
                (p.partition_index, PartitionRoute { leader, isr })
            })
            .collect();
        Ok(Routes { brokers, partitions })
    }

    /// The leader of `partition` and its address, if both are known.
    #[must_use]
    pub fn leader(&self, partition: i32) -> Option<(NodeId, &str)> {
        let leader = self.partitions.get(&partition)?.leader?;
        Some((leader, self.brokers.get(&leader)?.as_str()))
    }

    /// `items` grouped by the leader of their partition (`partition_of` names it), leaders in
    /// ascending id order and items in their order; items whose partition has no known leader
    /// come back apart.
    pub fn split<T>(
        &self,
        items: Vec<T>,
        partition_of: impl Fn(&T) -> i32,
    ) -> (BTreeMap<NodeId, Vec<T>>, Vec<T>) {
        let mut routed: BTreeMap<NodeId, Vec<T>> = BTreeMap::new();
        let mut unrouted = Vec::new();
        for item in items {
            match self.leader(partition_of(&item)) {
                Some((leader, _)) => routed.entry(leader).or_default().push(item),
                None => unrouted.push(item),
            }
        }
        (routed, unrouted)
    }

    /// Takes the KIP-951 leader hints of a Produce answer: a partition refused with a hint
    /// naming a leader whose address is known (from the answer's endpoints or the routes) now
    /// routes there. Returns whether every refused partition got a usable hint.
    pub fn take_hints(&mut self, response: &ProduceResponse) -> bool {
        for endpoint in &response.node_endpoints {
            self.brokers.insert(endpoint.node_id.0, address(&endpoint.host, endpoint.port));
        }
        let mut all = true;
        for answer in response.responses.iter().flat_map(|t| t.partition_responses.iter()) {
            if answer.error_code == 0 {
                continue;
            }
            let hinted = answer.current_leader.leader_id.0;
            if hinted >= 0 && self.brokers.contains_key(&hinted) {
                self.partitions.entry(answer.index).or_default().leader = Some(hinted);
            } else {
                all = false;
            }
        }
        all
    }

    /// Forgets `node` as a leader (its connection failed): its partitions route nowhere until
    /// the next refresh.
    pub fn drop_leader(&mut self, node: NodeId) {
        for route in self.partitions.values_mut() {
            if route.leader == Some(node) {
                route.leader = None;
            }
        }
    }

    /// How the leaders fell: `p0→2 p1→3 p2→1 p3→2` (`-` for no leader).
    #[must_use]
    pub fn describe_leaders(&self) -> String {
        let cells: Vec<String> = self
            .partitions
            .iter()
            .map(|(index, route)| match route.leader {
                Some(leader) => format!("p{index}→{leader}"),
                None => format!("p{index}→-"),
            })
            .collect();
        cells.join(" ")
    }
}

/// `host:port` (IPv6 hosts in brackets).
fn address(host: &str, port: i32) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// The Metadata request for `topic` (never creating it).
#[must_use]
pub fn metadata_request(topic: &str) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]))
        .with_allow_auto_topic_creation(false)
}

/// Fresh routes of `topic` from the first of `addresses` that answers Metadata (each asked on a
/// new connection: the one a refresh follows may be the failed one).
///
/// # Errors
/// If none answers; the last failure is named.
pub async fn fetch(
    options: &Options,
    addresses: impl IntoIterator<Item = String>,
    topic: &str,
) -> anyhow::Result<Routes> {
    let request = metadata_request(topic);
    let mut last = None;
    for address in addresses {
        let mut options = options.clone();
        options.bootstrap = address;
        let answer = async {
            let mut client = Client::connect(&options).await?;
            let response = client.send(&request).await.context("asking for metadata")?;
            Routes::of_metadata(&response, topic)
        };
        match answer.await {
            Ok(routes) => return Ok(routes),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no broker to ask for metadata")))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::produce_response::{
        LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn metadata(leaders: &[i32]) -> MetadataResponse {
        let brokers = (1..=3)
            .map(|id| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(9000 + id)
            })
            .collect();
        let partitions = (0..)
            .zip(leaders)
            .map(|(index, &leader)| {
                MetadataResponsePartition::default()
                    .with_partition_index(index)
                    .with_leader_id(BrokerId(leader))
                    .with_isr_nodes(vec![BrokerId(1), BrokerId(2)])
            })
            .collect();
        let topic = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
            .with_partitions(partitions);
        MetadataResponse::default().with_brokers(brokers).with_topics(vec![topic])
    }

    #[test]
    fn metadata_gives_leaders_and_addresses() {
        let routes = Routes::of_metadata(&metadata(&[2, 3, -1, 2]), "t").unwrap();
        assert_eq!(routes.leader(0), Some((2, "127.0.0.1:9002")));
        assert_eq!(routes.leader(1), Some((3, "127.0.0.1:9003")));
        assert_eq!(routes.leader(2), None, "-1 is no leader");
        assert_eq!(routes.partitions[&0].isr, [1, 2]);
        assert_eq!(routes.describe_leaders(), "p0→2 p1→3 p2→- p3→2");
        assert!(Routes::of_metadata(&metadata(&[1]), "other").is_err());
    }

    #[test]
    fn batches_split_by_leader_and_unrouted_ones_stay_apart() {
        let routes = Routes::of_metadata(&metadata(&[2, 3, -1, 2]), "t").unwrap();
        let (routed, unrouted) = routes.split(vec![0, 1, 2, 3], |&p| p);
        assert_eq!(routed.into_iter().collect::<Vec<_>>(), [(2, vec![0, 3]), (3, vec![1])]);
        assert_eq!(unrouted, [2]);
        // One broker leading everything: one group, in partition order (the single node's
        // request is unchanged).
        let single = Routes::of_metadata(&metadata(&[1, 1, 1, 1]), "t").unwrap();
        let (routed, unrouted) = single.split(vec![0, 1, 2, 3], |&p| p);
        assert_eq!(routed.into_iter().collect::<Vec<_>>(), [(1, vec![0, 1, 2, 3])]);
        assert!(unrouted.is_empty());
    }

    fn refusal(index: i32, code: i16, hint: i32) -> PartitionProduceResponse {
        PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(code)
            .with_current_leader(LeaderIdAndEpoch::default().with_leader_id(BrokerId(hint)))
    }

    #[test]
    fn leader_hints_move_refused_partitions() {
        let mut routes = Routes::of_metadata(&metadata(&[1, 1]), "t").unwrap();
        let topic = TopicProduceResponse::default().with_partition_responses(vec![
            refusal(0, NOT_LEADER_OR_FOLLOWER, 4),
            refusal(1, 0, -1),
        ]);
        let endpoint = NodeEndpoint::default()
            .with_node_id(BrokerId(4))
            .with_host(StrBytes::from_static_str("::1"))
            .with_port(9004);
        let response = ProduceResponse::default()
            .with_responses(vec![topic.clone()])
            .with_node_endpoints(vec![endpoint]);
        assert!(routes.take_hints(&response));
        assert_eq!(routes.leader(0), Some((4, "[::1]:9004")));
        assert_eq!(routes.leader(1), Some((1, "127.0.0.1:9001")), "answered: unchanged");
        // A refusal without a hint (or naming an unknown broker) asks for a refresh.
        let topic = topic.with_partition_responses(vec![refusal(1, LEADER_NOT_AVAILABLE, -1)]);
        assert!(!routes.take_hints(&ProduceResponse::default().with_responses(vec![topic])));
        routes.drop_leader(4);
        assert_eq!(routes.leader(0), None);
    }

    #[test]
    fn retriable_codes() {
        for code in [3, 5, 6, 7, 19, 20, 100] {
            assert!(retriable(code), "{code}");
        }
        for code in [0, 2, 10, 29, 87] {
            assert!(!retriable(code), "{code}");
        }
    }
}
