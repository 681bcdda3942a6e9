//! The in-process harness itself: a node serves over TCP, stops within its bound, and starts
//! again on the same directory with what it held.

use cairn_meta::MetadataStore;
use cairn_testkit::TestNode;
use cairn_testkit::wire::Connection;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};

#[tokio::test]
async fn a_stopped_node_restarts_on_its_directory_with_its_topics() {
    let node = TestNode::builder().server(|config| config.cluster_id = "kit".into()).start().await;
    node.create_topic("kept", 3).await;
    let mut conn = Connection::open(node.addr()).await;
    let metadata: MetadataResponse =
        conn.call(ApiKey::Metadata, 9, &MetadataRequest::default().with_topics(None)).await;
    assert_eq!(metadata.cluster_id.as_deref(), Some("kit"));
    assert_eq!(metadata.brokers[0].port, i32::from(node.addr().port()));
    let dir = node.stop().await;

    let node = TestNode::builder_in(dir).start().await;
    let topic = node.broker().meta().topic("kept").expect("the topic survives the restart");
    assert_eq!(topic.partitions, 3);
    let mut conn = Connection::open(node.addr()).await;
    let metadata: MetadataResponse =
        conn.call(ApiKey::Metadata, 9, &MetadataRequest::default().with_topics(None)).await;
    assert_eq!(
        metadata.brokers[0].port,
        i32::from(node.addr().port()),
        "the new port is advertised"
    );
    assert_eq!(metadata.topics.len(), 1);
    node.stop().await;
}
