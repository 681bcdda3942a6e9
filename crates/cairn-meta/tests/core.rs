//! Tests of the consistent core's state machine: [`apply`] case by case (each refusal with its
//! error, and changing nothing), placement's properties, and the binary encodings (round
//! trips, arbitrary bytes refused without a panic, a snapshot taken mid-way changing nothing).

use std::sync::Arc;

use cairn_meta::{
    CodecError, ConfigChange, CoreCommand, CoreReply, CoreState, Liveness, LogPosition, MetaError,
    NewTopic, NodeMeta, TopicConfigs, TopicId, TopicMeta, TopicName, apply, place,
};
use cairn_types::limits::{NODE_ADDRESS_BYTES_MAX, PRODUCER_IDS_PER_BLOCK};
use cairn_types::{NodeId, ProducerId};

fn name(text: &str) -> TopicName {
    TopicName::new(text).expect("valid test topic name")
}

fn id(byte: u8) -> TopicId {
    TopicId::from_bytes([byte; 16])
}

fn nodes(ids: &[u64]) -> Vec<NodeId> {
    ids.iter().copied().map(NodeId).collect()
}

fn register(id: u64, rack: Option<&str>) -> CoreCommand {
    CoreCommand::RegisterNode {
        node: NodeMeta {
            id: NodeId(id),
            host: format!("host{id}"),
            port: 9092,
            rack: rack.map(str::to_owned),
        },
        peer_address: format!("host{id}:9093"),
    }
}

/// A state with nodes `1..=count` registered and alive, without racks.
fn cluster(count: u64) -> CoreState {
    let mut state = CoreState::default();
    for node in 1..=count {
        apply(&mut state, &register(node, None)).expect("registration applies");
    }
    state
}

fn create(topic: &str, byte: u8, assignments: &[&[u64]]) -> CoreCommand {
    CoreCommand::CreateTopic {
        id: id(byte),
        name: name(topic),
        configs: Vec::new(),
        assignments: assignments.iter().map(|replicas| nodes(replicas)).collect(),
    }
}

/// Applies `command`, which must fail with an error whose debug form contains `expected`, and
/// checks that the state did not change.
fn refused(state: &mut CoreState, command: &CoreCommand, expected: &str) -> MetaError {
    let before = state.clone();
    let error = apply(state, command).expect_err("the command must be refused");
    assert!(format!("{error:?}").contains(expected), "expected {expected}, got {error:?}");
    assert_eq!(*state, before, "a refused command changed the state");
    error
}

fn topic_of(reply: CoreReply) -> Arc<TopicMeta> {
    match reply {
        CoreReply::Topic(topic) => topic,
        other => panic!("expected a topic, got {other:?}"),
    }
}

#[test]
fn the_cluster_id_is_set_once() {
    let mut state = CoreState::default();
    apply(&mut state, &CoreCommand::SetClusterId { id: [7; 16] }).expect("first set");
    apply(&mut state, &CoreCommand::SetClusterId { id: [7; 16] }).expect("same id again");
    refused(&mut state, &CoreCommand::SetClusterId { id: [8; 16] }, "Refused");
    assert_eq!(state.cluster_id(), Some([7; 16]));
}

#[test]
fn nodes_register_and_change_liveness() {
    let mut state = cluster(2);
    let dead = CoreCommand::SetLiveness { node: NodeId(2), liveness: Liveness::Dead };
    apply(&mut state, &dead).expect("known node");
    assert_eq!(state.node(NodeId(2)).map(|n| n.liveness), Some(Liveness::Dead));
    let unknown = CoreCommand::SetLiveness { node: NodeId(9), liveness: Liveness::Dead };
    refused(&mut state, &unknown, "not registered");
    // Registering again updates the addresses and brings the node back.
    apply(&mut state, &register(2, Some("r1"))).expect("re-registration");
    let node = state.node(NodeId(2)).expect("registered");
    assert_eq!((node.liveness, node.meta.rack.as_deref()), (Liveness::Alive, Some("r1")));
    refused(&mut state, &register(1u64 << 31, None), "i32::MAX");
    let mut empty_host = register(3, None);
    if let CoreCommand::RegisterNode { node, .. } = &mut empty_host {
        node.host.clear();
    }
    refused(&mut state, &empty_host, "kafka host");
    refused(&mut state, &register(3, Some(&"r".repeat(256))), "rack");
}

#[test]
fn etcd_addresses_are_set_on_registered_nodes_and_kept_by_registration() {
    let mut state = cluster(2);
    assert_eq!(state.node(NodeId(1)).and_then(|n| n.etcd_address.clone()), None);
    let set = |node: u64, address: Option<&str>| CoreCommand::SetEtcdAddress {
        node: NodeId(node),
        address: address.map(str::to_owned),
    };
    apply(&mut state, &set(1, Some("127.0.0.1:2379"))).expect("known node");
    let etcd_of = |state: &CoreState, node: u64| {
        state.node(NodeId(node)).and_then(|record| record.etcd_address.clone())
    };
    assert_eq!(etcd_of(&state, 1).as_deref(), Some("127.0.0.1:2379"));
    // A registration (a restart with new addresses) keeps it: it has its own command.
    apply(&mut state, &register(1, Some("r1"))).expect("re-registration");
    assert_eq!(etcd_of(&state, 1).as_deref(), Some("127.0.0.1:2379"));
    apply(&mut state, &set(1, None)).expect("cleared");
    assert_eq!(etcd_of(&state, 1), None);
    refused(&mut state, &set(9, Some("127.0.0.1:2379")), "not registered");
    refused(&mut state, &set(9, None), "not registered");
    refused(&mut state, &set(2, Some("")), "etcd address");
    refused(&mut state, &set(2, Some(&"a".repeat(NODE_ADDRESS_BYTES_MAX + 1))), "etcd address");
    apply(&mut state, &set(2, Some(&"a".repeat(NODE_ADDRESS_BYTES_MAX)))).expect("at the bound");
    let command = set(2, Some("10.0.0.2:2379"));
    command.check(&state).expect("the leader's check passes");
    let bytes = command.encode().expect("encodable");
    assert_eq!(bytes[..2], [1, 11], "version 1, kind 11");
    assert_eq!(CoreCommand::decode(&bytes).expect("decodes"), command);
}

/// The snapshot bytes today's code wrote before nodes had an etcd address (version 1): node 1
/// alive in rack `r1`, node 2 dead, one topic of two partitions.
fn snapshot_version_1() -> Vec<u8> {
    fn str(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(&u16::try_from(text.len()).expect("short").to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    let mut bytes = vec![1, 1];
    bytes.extend_from_slice(&[7; 16]);
    bytes.push(1);
    bytes.extend_from_slice(&3u64.to_be_bytes());
    bytes.extend_from_slice(&9u64.to_be_bytes());
    bytes.extend_from_slice(&3u64.to_be_bytes());
    bytes.extend_from_slice(&0i64.to_be_bytes());
    bytes.extend_from_slice(&2u32.to_be_bytes());
    for (node, rack, alive) in [(1u64, Some("r1"), 1u8), (2, None, 0)] {
        bytes.extend_from_slice(&node.to_be_bytes());
        str(&mut bytes, &format!("host{node}"));
        bytes.extend_from_slice(&9092u16.to_be_bytes());
        match rack {
            None => bytes.push(0),
            Some(rack) => {
                bytes.push(1);
                str(&mut bytes, rack);
            }
        }
        str(&mut bytes, &format!("host{node}:9093"));
        bytes.push(alive);
    }
    bytes.extend_from_slice(&1u32.to_be_bytes());
    bytes.extend_from_slice(&[3; 16]);
    str(&mut bytes, "orders");
    bytes.extend_from_slice(&2u32.to_be_bytes());
    bytes.extend_from_slice(&1u16.to_be_bytes());
    bytes.extend_from_slice(&0u16.to_be_bytes());
    for (group, node) in [(1u64, 1u64), (2, 2)] {
        bytes.extend_from_slice(&group.to_be_bytes());
        bytes.push(1);
        bytes.extend_from_slice(&node.to_be_bytes());
    }
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes
}

#[test]
fn a_version_1_snapshot_still_decodes() {
    let bytes = snapshot_version_1();
    let state = CoreState::decode_snapshot(&bytes).expect("version 1 decodes");
    let mut expected = CoreState::default();
    apply(&mut expected, &CoreCommand::SetClusterId { id: [7; 16] }).expect("applies");
    apply(&mut expected, &register(1, Some("r1"))).expect("applies");
    apply(&mut expected, &register(2, None)).expect("applies");
    apply(&mut expected, &create("orders", 3, &[&[1], &[2]])).expect("applies");
    let dead = CoreCommand::SetLiveness { node: NodeId(2), liveness: Liveness::Dead };
    apply(&mut expected, &dead).expect("applies");
    expected.set_applied(LogPosition { term: 3, index: 9 });
    assert_eq!(state, expected);
    assert!(state.nodes().all(|record| record.etcd_address.is_none()));
    // It is written again as version 2, one optional etcd address more per node.
    let written = state.encode_snapshot().expect("encodable");
    assert_eq!((written[0], written.len()), (2, bytes.len() + 2));
    assert_eq!(CoreState::decode_snapshot(&written).expect("version 2 decodes"), state);
}

#[test]
fn snapshots_keep_etcd_addresses() {
    let mut state = cluster(3);
    let set = CoreCommand::SetEtcdAddress { node: NodeId(2), address: Some("h2:2379".into()) };
    apply(&mut state, &set).expect("applies");
    let bytes = state.encode_snapshot().expect("encodable");
    assert_eq!(bytes[0], 2, "version 2 is written");
    let decoded = CoreState::decode_snapshot(&bytes).expect("decodes");
    assert_eq!(decoded, state);
    assert_eq!(decoded.node(NodeId(2)).and_then(|n| n.etcd_address.as_deref()), Some("h2:2379"));
    // An empty etcd address is one no `apply` could have set.
    let mut bytes = cluster(1).encode_snapshot().expect("encodable");
    let flag = bytes.len() - 2 * 4 - 1;
    assert_eq!(bytes[flag], 0, "node 1's etcd address flag");
    bytes.splice(flag..=flag, [1, 0, 0]);
    let error = CoreState::decode_snapshot(&bytes).expect_err("empty address");
    assert!(matches!(error, CodecError::Invalid(_)), "{error:?}");
    assert!(matches!(CoreState::decode_snapshot(&[3]), Err(CodecError::UnknownVersion { .. })));
}

#[test]
fn create_topic_assigns_fresh_groups_that_are_never_reused() {
    let mut state = cluster(3);
    let topic = topic_of(apply(&mut state, &create("a", 1, &[&[1, 2], &[2, 3]])).expect("a"));
    assert_eq!((topic.partitions, topic.replication_factor), (2, 2));
    let groups: Vec<u64> = state.assignments(topic.id).iter().map(|a| a.group.0).collect();
    assert_eq!(groups, [1, 2]);
    assert_eq!(state.assignment("a", 1).map(|a| a.preferred_leader()), Some(NodeId(2)));
    apply(&mut state, &CoreCommand::DeleteTopic { name: name("a") }).expect("delete");
    assert_eq!(state.assignments(topic.id).len(), 2, "kept until the deletion finishes");
    apply(&mut state, &CoreCommand::FinishDeletion { id: topic.id }).expect("finish");
    assert!(state.assignments(topic.id).is_empty());
    let again = topic_of(apply(&mut state, &create("a", 2, &[&[3]])).expect("a again"));
    assert_eq!(state.assignments(again.id)[0].group.0, 3, "group ids are never reused");
}

#[test]
fn create_topic_refusals_change_nothing() {
    let mut state = cluster(3);
    apply(&mut state, &CoreCommand::SetLiveness { node: NodeId(3), liveness: Liveness::Dead })
        .expect("node 3 dies");
    apply(&mut state, &create("a.b", 1, &[&[1]])).expect("a.b");
    refused(&mut state, &create("a.b", 2, &[&[1]]), "TopicExists");
    refused(&mut state, &create("a_b", 2, &[&[1]]), "InvalidTopic");
    refused(&mut state, &create("c", 2, &[]), "InvalidPartitions");
    refused(&mut state, &create("c", 2, &[&[]]), "includes an empty replica list");
    refused(&mut state, &create("c", 2, &[&[1, 1]]), "includes the broker 1 more than once");
    // Kafka checks a list's ids in ascending order: 7 is the first it cannot find.
    refused(&mut state, &create("c", 2, &[&[9, 1, 7]]), "broker 7, but no such broker");
    refused(&mut state, &create("c", 2, &[&[2], &[3]]), "partition 1 are fenced");
    refused(&mut state, &create("c", 2, &[&[1, 2], &[1]]), "with 1 replica(s), but this is not");
    refused(&mut state, &create("c", 2, &[&[1, 2, 3, 4, 5, 6]]), "broker 4, but no such broker");
    let mut six = cluster(6);
    refused(&mut six, &create("c", 2, &[&[1, 2, 3, 4, 5, 6]]), "InvalidReplicationFactor");
    // A dead node may hold a replica beside a live one, as a fenced broker may in Kafka.
    let with_dead = topic_of(apply(&mut state, &create("d", 3, &[&[3, 1]])).expect("d"));
    assert_eq!(state.assignments(with_dead.id)[0].replicas, nodes(&[3, 1]));
    refused(&mut state, &create("c", 1, &[&[1]]), "in use");
    refused(&mut state, &create("c", 0, &[&[1]]), "in use");
    let bad_config = CoreCommand::CreateTopic {
        id: id(2),
        name: name("c"),
        configs: vec![("retention.ms".into(), "soon".into())],
        assignments: vec![nodes(&[1])],
    };
    refused(&mut state, &bad_config, "Config");
}

#[test]
fn create_partitions_checks_count_and_factor() {
    let mut state = cluster(3);
    apply(&mut state, &create("a", 1, &[&[1, 2]])).expect("a");
    let grow = |count, assignments: &[&[u64]]| CoreCommand::CreatePartitions {
        name: name("a"),
        count,
        assignments: assignments.iter().map(|replicas| nodes(replicas)).collect(),
    };
    refused(&mut state, &grow(1, &[]), "InvalidPartitions");
    refused(&mut state, &grow(3, &[&[2, 3]]), "add 2 additional partition(s), but only 1");
    refused(&mut state, &grow(2, &[&[2]]), "previous partitions, which have 2 replica(s)");
    let topic = topic_of(apply(&mut state, &grow(3, &[&[2, 3], &[3, 1]])).expect("grow"));
    assert_eq!(topic.partitions, 3);
    let leaders: Vec<NodeId> =
        state.assignments(topic.id).iter().map(|a| a.preferred_leader()).collect();
    assert_eq!(leaders, nodes(&[1, 2, 3]));
    let placed = CoreCommand::create_partitions(&state, name("a"), 5, None).expect("placed");
    let CoreCommand::CreatePartitions { assignments, .. } = &placed else {
        panic!("a create partitions command");
    };
    assert!(assignments.iter().all(|replicas| replicas.len() == 2), "the topic's factor");
    apply(&mut state, &placed).expect("what the leader built applies");
}

#[test]
fn the_leader_builds_commands_that_apply() {
    let mut state = cluster(4);
    let new = |topic: &str, byte, factor, explicit: Option<Vec<Vec<NodeId>>>| NewTopic {
        id: id(byte),
        name: name(topic),
        partitions: 8,
        replication_factor: factor,
        assignments: explicit,
        configs: vec![("retention.ms".into(), "1000".into())],
    };
    let command = CoreCommand::create_topic(&state, new("a", 1, None, None)).expect("default");
    let topic = topic_of(apply(&mut state, &command).expect("applies"));
    assert_eq!((topic.partitions, topic.replication_factor), (8, 3), "min(3, live nodes)");
    assert_eq!(topic.configs.retention_ms(), Some(1000));
    let error = CoreCommand::create_topic(&state, new("b", 2, Some(5), None))
        .expect_err("5 replicas on 4 nodes");
    assert!(matches!(error, MetaError::InvalidReplicationFactor { factor: 5, .. }), "{error:?}");
    let explicit = Some(vec![nodes(&[4, 1])]);
    let command = CoreCommand::create_topic(&state, new("b", 2, None, explicit)).expect("given");
    assert_eq!(topic_of(apply(&mut state, &command).expect("applies")).partitions, 1);
    let error = CoreCommand::create_topic(&state, new("a", 3, None, None)).expect_err("exists");
    assert!(matches!(error, MetaError::TopicExists(_)), "{error:?}");
}

#[test]
fn placement_needs_a_live_node() {
    let mut state = cluster(1);
    apply(&mut state, &CoreCommand::SetLiveness { node: NodeId(1), liveness: Liveness::Dead })
        .expect("dies");
    let error = place(&state, 1, None).expect_err("no live node");
    assert!(matches!(error, MetaError::BrokerNotAvailable(_)), "{error:?}");
    let error = place(&cluster(2), 1, Some(0)).expect_err("factor 0");
    assert!(matches!(error, MetaError::InvalidReplicationFactor { factor: 0, .. }), "{error:?}");
    let error = place(&cluster(9), 1, Some(6)).expect_err("factor 6");
    assert!(matches!(error, MetaError::InvalidReplicationFactor { factor: 6, .. }), "{error:?}");
}

#[test]
fn producer_ids_come_in_blocks() {
    let mut state = cluster(1);
    let allocate = CoreCommand::AllocateProducerIds { node: NodeId(1) };
    let first = apply(&mut state, &allocate).expect("first block");
    let second = apply(&mut state, &allocate).expect("second block");
    let block = |first| CoreReply::ProducerIds { first: ProducerId(first), count: 1000 };
    assert_eq!((first, second), (block(0), block(PRODUCER_IDS_PER_BLOCK)));
    refused(&mut state, &CoreCommand::AllocateProducerIds { node: NodeId(5) }, "registered");
}

fn imported(topic: &str, byte: u8, partitions: u32) -> TopicMeta {
    TopicMeta {
        id: id(byte),
        name: name(topic),
        partitions,
        replication_factor: 1,
        configs: TopicConfigs::default(),
    }
}

#[test]
fn import_assigns_every_partition_to_the_importing_node_once() {
    let mut state = cluster(2);
    let import = |node| CoreCommand::Import {
        node: NodeId(node),
        topics: vec![imported("a", 1, 2), imported("b", 2, 1)],
        deleting: vec![imported("a", 3, 1)],
    };
    refused(&mut state, &import(7), "registered");
    let twice = CoreCommand::Import {
        node: NodeId(2),
        topics: vec![imported("a", 1, 1), imported("b", 1, 1)],
        deleting: Vec::new(),
    };
    refused(&mut state, &twice, "appears twice");
    apply(&mut state, &import(2)).expect("import");
    assert_eq!(state.topics().len(), 2);
    assert_eq!(state.pending_deletions().len(), 1);
    for topic in [id(1), id(2), id(3)] {
        assert!(state.assignments(topic).iter().all(|a| a.replicas == [NodeId(2)]));
    }
    assert_eq!(state.assignments(id(1)).len(), 2);
    refused(&mut state, &import(2), "only once");
}

#[test]
fn alter_and_delete_follow_the_single_node_rules() {
    let mut state = cluster(1);
    apply(&mut state, &create("a", 1, &[&[1]])).expect("a");
    let set = |value: &str| CoreCommand::AlterConfigs {
        name: name("a"),
        changes: vec![ConfigChange::Set { key: "retention.ms".into(), value: value.into() }],
    };
    let topic = topic_of(apply(&mut state, &set("5")).expect("alter"));
    assert_eq!(topic.configs.retention_ms(), Some(5));
    refused(&mut state, &set("-7"), "Config");
    refused(&mut state, &CoreCommand::DeleteTopic { name: name("b") }, "UnknownTopic");
    apply(&mut state, &CoreCommand::FinishDeletion { id: id(9) }).expect("nothing to finish");
}

#[test]
fn applied_positions_only_move_forward() {
    let mut state = CoreState::default();
    state.set_applied(LogPosition { term: 1, index: 1 });
    state.set_applied(LogPosition { term: 2, index: 2 });
    assert_eq!(state.applied(), Some(LogPosition { term: 2, index: 2 }));
    let result = std::panic::catch_unwind(move || {
        let mut state = state;
        state.set_applied(LogPosition { term: 2, index: 2 });
    });
    assert!(result.is_err(), "applying an entry twice is a bug that stops the core");
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    // CreateTopic claiming u32::MAX assignments in a few bytes.
    let mut bytes = vec![1, 4];
    bytes.extend_from_slice(&[1; 16]);
    bytes.extend_from_slice(&[0, 1, b'a', 0, 0]);
    bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    let error = CoreCommand::decode(&bytes).expect_err("too many");
    assert!(matches!(error, CodecError::TooMany { what: "assignments", .. }), "{error:?}");
    // A snapshot claiming u32::MAX nodes.
    let mut bytes = vec![1, 0, 0];
    bytes.extend_from_slice(&1u64.to_be_bytes());
    bytes.extend_from_slice(&0i64.to_be_bytes());
    bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    let error = CoreState::decode_snapshot(&bytes).expect_err("too many");
    assert!(matches!(error, CodecError::TooMany { what: "nodes", .. }), "{error:?}");
    assert!(matches!(CoreCommand::decode(&[2, 1]), Err(CodecError::UnknownVersion { .. })));
    assert!(matches!(CoreCommand::decode(&[1, 99]), Err(CodecError::UnknownKind { kind: 99 })));
}

mod properties {
    //! Property tests: encodings, placement, and the state machine against itself with a
    //! snapshot in the middle.

    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    const TOPICS: &[&str] = &["a", "b", "c.d", "c_d"];
    /// Etcd addresses, the empty one refused.
    const ETCD_ADDRESSES: &[&str] = &["127.0.0.1:2379", "h:1", ""];

    /// Checks that a snapshot `state` decoded from `bytes` is written back as `bytes` (version
    /// 2), or (version 1) as a version 2 snapshot of the same state.
    fn check_rewritten(state: &CoreState, bytes: &[u8]) -> Result<(), TestCaseError> {
        let written = state.encode_snapshot().expect("re-encodes");
        if bytes.first() == Some(&1) {
            let again = CoreState::decode_snapshot(&written).expect("its own snapshot decodes");
            prop_assert_eq!(&again, state);
        } else {
            prop_assert_eq!(written, bytes.to_vec());
        }
        Ok(())
    }

    fn node_id() -> impl Strategy<Value = NodeId> {
        (0..6u64).prop_map(NodeId)
    }

    fn replicas() -> impl Strategy<Value = Vec<NodeId>> {
        proptest::collection::vec(node_id(), 0..4)
    }

    fn topic_name() -> impl Strategy<Value = TopicName> {
        proptest::sample::select(TOPICS).prop_map(name)
    }

    fn topic_id() -> impl Strategy<Value = TopicId> {
        (0..5u8).prop_map(id)
    }

    fn configs() -> impl Strategy<Value = Vec<(String, String)>> {
        let pair = proptest::sample::select(
            &[
                ("retention.ms", "1000"),
                ("retention.ms", "-5"),
                ("cleanup.policy", "delete"),
                ("segment.bytes", "2048"),
                ("bogus", "1"),
            ][..],
        )
        .prop_map(|(k, v)| (k.to_owned(), v.to_owned()));
        proptest::collection::vec(pair, 0..3)
    }

    fn stored_topic() -> impl Strategy<Value = TopicMeta> {
        (topic_id(), topic_name(), 1..4u32, 1..3u16).prop_map(|(id, name, partitions, factor)| {
            TopicMeta {
                id,
                name,
                partitions,
                replication_factor: factor,
                configs: TopicConfigs::from_overrides(&[("retention.ms".into(), "9".into())])
                    .expect("valid"),
            }
        })
    }

    fn register_node() -> impl Strategy<Value = CoreCommand> {
        (node_id(), proptest::option::of(proptest::sample::select(&["r1", "r2", "r3"][..])))
            .prop_map(|(node, rack)| register(node.0, rack))
    }

    fn command() -> impl Strategy<Value = CoreCommand> {
        let change = prop_oneof![
            (-2..3i64).prop_map(|ms| ConfigChange::Set {
                key: "retention.ms".into(),
                value: ms.to_string()
            }),
            Just(ConfigChange::Delete { key: "retention.ms".into() }),
        ];
        prop_oneof![
            1 => (0..2u8).prop_map(|byte| CoreCommand::SetClusterId { id: [byte; 16] }),
            3 => register_node(),
            2 => (node_id(), proptest::option::of(proptest::sample::select(ETCD_ADDRESSES)))
                .prop_map(|(node, address)| CoreCommand::SetEtcdAddress {
                    node,
                    address: address.map(str::to_owned),
                }),
            2 => (node_id(), any::<bool>()).prop_map(|(node, alive)| CoreCommand::SetLiveness {
                node,
                liveness: if alive { Liveness::Alive } else { Liveness::Dead },
            }),
            5 => (topic_id(), topic_name(), configs(), proptest::collection::vec(replicas(), 0..4))
                .prop_map(|(id, name, configs, assignments)| CoreCommand::CreateTopic {
                    id, name, configs, assignments,
                }),
            2 => (topic_name(), 0..6u32, proptest::collection::vec(replicas(), 0..3))
                .prop_map(|(name, count, assignments)| CoreCommand::CreatePartitions {
                    name, count, assignments,
                }),
            2 => (topic_name(), proptest::collection::vec(change, 0..3))
                .prop_map(|(name, changes)| CoreCommand::AlterConfigs { name, changes }),
            2 => topic_name().prop_map(|name| CoreCommand::DeleteTopic { name }),
            1 => topic_id().prop_map(|id| CoreCommand::FinishDeletion { id }),
            1 => node_id().prop_map(|node| CoreCommand::AllocateProducerIds { node }),
            1 => (
                node_id(),
                proptest::collection::vec(stored_topic(), 0..3),
                proptest::collection::vec(stored_topic(), 0..2),
            )
                .prop_map(|(node, topics, deleting)| CoreCommand::Import {
                    node, topics, deleting,
                }),
        ]
    }

    /// What `apply` answered, comparable (errors by their debug form).
    fn outcome(result: Result<CoreReply, MetaError>) -> Result<CoreReply, String> {
        result.map_err(|error| format!("{error:?}"))
    }

    /// Applies every command at index positions `1..`, checking that a refusal changes nothing.
    fn run(
        state: &mut CoreState,
        commands: &[CoreCommand],
        first_index: u64,
    ) -> Vec<Result<CoreReply, String>> {
        let mut outcomes = Vec::new();
        for (offset, command) in commands.iter().enumerate() {
            let before = state.clone();
            let result = apply(state, command);
            if result.is_err() {
                assert_eq!(*state, before, "refused {command:?} changed the state");
            }
            outcomes.push(outcome(result));
            state.set_applied(LogPosition { term: 1, index: first_index + offset as u64 });
        }
        outcomes
    }

    /// A state of live nodes `1..=count`, racks cycling through `racks` (`0`: none).
    fn racked_cluster(count: u64, racks: u64, dead: &BTreeSet<u64>) -> CoreState {
        let mut state = CoreState::default();
        for node in 1..=count {
            let rack = (racks > 0).then(|| format!("r{}", node % racks));
            apply(&mut state, &register(node, rack.as_deref())).expect("registers");
            if dead.contains(&node) {
                let dies =
                    CoreCommand::SetLiveness { node: NodeId(node), liveness: Liveness::Dead };
                apply(&mut state, &dies).expect("dies");
            }
        }
        state
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn commands_round_trip(command in command()) {
            let bytes = command.encode().expect("encodable");
            prop_assert_eq!(CoreCommand::decode(&bytes).expect("decodes"), command);
        }

        #[test]
        fn arbitrary_bytes_decode_or_are_refused(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            if let Ok(command) = CoreCommand::decode(&bytes) {
                prop_assert_eq!(command.encode().expect("re-encodes"), bytes.clone());
            }
            if let Ok(state) = CoreState::decode_snapshot(&bytes) {
                check_rewritten(&state, &bytes)?;
            }
        }

        #[test]
        fn damaged_encodings_decode_or_are_refused(
            commands in proptest::collection::vec(command(), 1..30),
            flip in any::<prop::sample::Index>(),
            bit in 0..8u8,
            cut in any::<prop::sample::Index>(),
        ) {
            let mut state = CoreState::default();
            run(&mut state, &commands, 1);
            for bytes in [commands[0].encode().expect("encodable"),
                          state.encode_snapshot().expect("encodable")] {
                let mut flipped = bytes.clone();
                flipped[flip.index(bytes.len())] ^= 1 << bit;
                let cut = &bytes[..cut.index(bytes.len())];
                for damaged in [&flipped[..], cut] {
                    // Must not panic; a clean decode must be a value that encodes the same.
                    if let Ok(command) = CoreCommand::decode(damaged) {
                        prop_assert_eq!(command.encode().expect("re-encodes"), damaged.to_vec());
                    }
                    if let Ok(state) = CoreState::decode_snapshot(damaged) {
                        check_rewritten(&state, damaged)?;
                    }
                }
            }
        }

        #[test]
        fn a_snapshot_in_the_middle_changes_nothing(
            commands in proptest::collection::vec(command(), 0..60),
            cut in any::<prop::sample::Index>(),
        ) {
            let cut = cut.index(commands.len() + 1);
            let mut straight = CoreState::default();
            let expected = run(&mut straight, &commands, 1);
            let mut restored = CoreState::default();
            let mut outcomes = run(&mut restored, &commands[..cut], 1);
            let bytes = restored.encode_snapshot().expect("encodable");
            let decoded = CoreState::decode_snapshot(&bytes).expect("own snapshot decodes");
            prop_assert_eq!(&decoded, &restored);
            let mut restored = decoded;
            outcomes.extend(run(&mut restored, &commands[cut..], cut as u64 + 1));
            prop_assert_eq!(outcomes, expected);
            prop_assert_eq!(restored, straight);
        }

        #[test]
        fn placement_spreads_replicas_racks_and_leaders(
            count in 1..9u64,
            racks in 0..4u64,
            dead in proptest::collection::btree_set(1..9u64, 0..3),
            partitions in 1..40u32,
            factor in proptest::option::of(1..6u16),
        ) {
            let state = racked_cluster(count, racks, &dead);
            let live: BTreeMap<NodeId, Option<String>> = state
                .nodes()
                .filter(|node| node.liveness == Liveness::Alive)
                .map(|node| (node.meta.id, node.meta.rack.clone()))
                .collect();
            let placed = place(&state, partitions, factor);
            prop_assert_eq!(format!("{placed:?}"), format!("{:?}", place(&state, partitions, factor)));
            let wanted = factor.unwrap_or_else(|| live.len().min(3) as u16);
            let placed = match placed {
                Err(MetaError::BrokerNotAvailable(_)) => {
                    prop_assert!(live.is_empty());
                    return Ok(());
                }
                Err(MetaError::InvalidReplicationFactor { .. }) => {
                    prop_assert!(usize::from(wanted) > live.len());
                    return Ok(());
                }
                other => other.expect("placed"),
            };
            prop_assert_eq!(placed.len(), partitions as usize);
            let rack_count = live.values().collect::<BTreeSet<_>>().len();
            let mut leaders: BTreeMap<NodeId, u32> = live.keys().map(|&node| (node, 0)).collect();
            for replicas in &placed {
                prop_assert_eq!(replicas.len(), usize::from(wanted));
                prop_assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), replicas.len());
                prop_assert!(replicas.iter().all(|node| live.contains_key(node)));
                let used: BTreeSet<_> = replicas.iter().map(|node| &live[node]).collect();
                prop_assert_eq!(used.len(), replicas.len().min(rack_count), "racks spread first");
                *leaders.entry(replicas[0]).or_default() += 1;
            }
            let (min, max) = (leaders.values().min(), leaders.values().max());
            prop_assert!(max.zip(min).is_some_and(|(max, min)| max - min <= 1), "{leaders:?}");
        }

        #[test]
        fn leaders_stay_balanced_across_topics(
            count in 1..7u64,
            racks in 0..3u64,
            topics in proptest::collection::vec((1..9u32, proptest::option::of(1..4u16)), 1..6),
        ) {
            let mut state = racked_cluster(count, racks, &BTreeSet::new());
            for (index, &(partitions, factor)) in topics.iter().enumerate() {
                let new = NewTopic {
                    id: id(index as u8 + 1),
                    name: name(&format!("t{index}")),
                    partitions,
                    replication_factor: factor.map(|f| f.min(count as u16)),
                    assignments: None,
                    configs: Vec::new(),
                };
                let command = CoreCommand::create_topic(&state, new).expect("placeable");
                apply(&mut state, &command).expect("the leader's command applies");
            }
            let mut leaders: BTreeMap<NodeId, u32> =
                (1..=count).map(|node| (NodeId(node), 0)).collect();
            for topic in state.topics() {
                for assignment in state.assignments(topic.id) {
                    *leaders.entry(assignment.preferred_leader()).or_default() += 1;
                }
            }
            let (min, max) = (leaders.values().min(), leaders.values().max());
            prop_assert!(max.zip(min).is_some_and(|(max, min)| max - min <= 1), "{leaders:?}");
        }
    }
}
