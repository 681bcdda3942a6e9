//! The consumer protocol's records of the offsets topic (RFC 0008) against Kafka's layout:
//! golden bytes written by hand from Kafka's record schemas, round trips of arbitrary values,
//! tagged fields we do not know, and malformed input.
//!
//! The golden vectors follow the schemas field by field (`group-coordinator/src/main/
//! resources/common/message/ConsumerGroup*{Key,Value}.json` in apache/kafka): a key is its
//! record type as an `i16`, then `i16`-length strings; a value is its version (`i16` 0), then
//! the fields in schema order, where a string, byte array or array is its length + 1 as an
//! unsigned varint, a uuid its 16 bytes, and every struct (the value, each array element) ends
//! with its tagged fields: a varint count, 0 when there are none.

use cairn_group::records::{
    ClassicMemberMetadata, ClassicProtocol, ConsumerGroupMetadata, CurrentMemberAssignment,
    MemberMetadata, PartitionMetadata, PartitionRacks, RecordError, RecordKey, RecordValue,
    TargetAssignmentMember, TargetAssignmentMetadata, TopicMetadata, TopicPartitions, decode_key,
    decode_value, encode_key, encode_value,
};
use proptest::prelude::*;

/// `key` and `value` encode to `golden`, which decodes back to them; every strict prefix of
/// `golden` is truncated and one byte more is trailing.
fn check(key: &RecordKey, value: &RecordValue, golden: &[u8]) {
    assert_eq!(encode_value(value), golden, "{value:?}");
    assert_eq!(decode_value(key, golden).as_ref(), Ok(value));
    for len in 0..golden.len() {
        assert_eq!(decode_value(key, &golden[..len]), Err(RecordError::Truncated), "{len}");
    }
    let mut longer = golden.to_vec();
    longer.push(0);
    assert_eq!(decode_value(key, &longer), Err(RecordError::Trailing(1)));
}

fn key(record_type: i16) -> RecordKey {
    let (group, member) = ("g".to_owned(), "m".to_owned());
    match record_type {
        3 => RecordKey::ConsumerGroupMetadata { group },
        4 => RecordKey::PartitionMetadata { group },
        5 => RecordKey::MemberMetadata { group, member },
        6 => RecordKey::TargetAssignmentMetadata { group },
        7 => RecordKey::TargetAssignmentMember { group, member },
        8 => RecordKey::CurrentMemberAssignment { group, member },
        _ => panic!("not a consumer-protocol record type: {record_type}"),
    }
}

fn member_metadata() -> MemberMetadata {
    MemberMetadata {
        instance_id: None,
        rack_id: Some("r".into()),
        client_id: "c".into(),
        client_host: "/h".into(),
        subscribed_topic_names: vec!["a".into(), "b".into()],
        subscribed_topic_regex: None,
        rebalance_timeout_ms: 300_000,
        server_assignor: Some("uniform".into()),
        classic_member_metadata: None,
    }
}

#[test]
fn keys_are_the_record_type_then_group_and_member() {
    for record_type in 3..=8 {
        let key = key(record_type);
        let mut golden = vec![0, record_type.to_be_bytes()[1], 0, 1, b'g'];
        if matches!(record_type, 5 | 7 | 8) {
            golden.extend_from_slice(&[0, 1, b'm']);
        }
        assert_eq!(encode_key(&key), golden);
        assert_eq!(decode_key(&golden), Ok(key.clone()));
        assert_eq!(key.group(), "g");
        assert_eq!(decode_key(&golden[..golden.len() - 1]), Err(RecordError::Truncated));
    }
}

#[test]
fn epochs_are_an_i32_and_no_tagged_fields() {
    // Version 0, the epoch 5, no tagged fields.
    let value = RecordValue::ConsumerGroupMetadata(ConsumerGroupMetadata { epoch: 5 });
    check(&key(3), &value, &[0, 0, 0, 0, 0, 5, 0]);
    // Version 0, the assignment epoch 258 = 0x0102, no tagged fields.
    let value =
        RecordValue::TargetAssignmentMetadata(TargetAssignmentMetadata { assignment_epoch: 258 });
    check(&key(6), &value, &[0, 0, 0, 0, 1, 2, 0]);
}

#[test]
fn partition_metadata_in_kafkas_layout() {
    let topic_id: [u8; 16] = std::array::from_fn(|i| u8::try_from(i + 1).expect("small"));
    let value = RecordValue::PartitionMetadata(PartitionMetadata {
        topics: vec![TopicMetadata {
            topic_id,
            topic_name: "t".into(),
            partition_count: 3,
            partition_racks: vec![PartitionRacks { partition: 0, racks: vec!["r".into()] }],
        }],
    });
    let mut golden = vec![0, 0, 2]; // Version 0; one topic.
    golden.extend_from_slice(&topic_id);
    golden.extend_from_slice(&[2, b't', 0, 0, 0, 3]); // "t", 3 partitions.
    golden.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, b'r', 0]); // Partition 0 on rack "r".
    golden.extend_from_slice(&[0, 0]); // The topic's tagged fields, the value's.
    check(&key(4), &value, &golden);
}

#[test]
fn member_metadata_in_kafkas_layout() {
    let golden = [
        0, 0, // Version 0.
        0, // Instance id: null.
        2, b'r', // Rack id "r".
        2, b'c', // Client id "c".
        3, b'/', b'h', // Client host "/h".
        3, 2, b'a', 2, b'b', // Subscribed topic names ["a", "b"].
        0,    // Regex: null.
        0, 4, 0x93, 0xe0, // Rebalance timeout 300 000 ms = 0x0004_93e0.
        8, b'u', b'n', b'i', b'f', b'o', b'r', b'm', // Server assignor "uniform".
        0,    // No tagged fields: the classic member metadata is null, its default.
    ];
    check(&key(5), &RecordValue::MemberMetadata(member_metadata()), &golden);
}

#[test]
fn classic_member_metadata_is_tagged_field_zero() {
    let classic = ClassicMemberMetadata {
        session_timeout_ms: 45_000,
        supported_protocols: vec![ClassicProtocol { name: "range".into(), metadata: vec![9] }],
    };
    let value = RecordValue::MemberMetadata(MemberMetadata {
        classic_member_metadata: Some(classic),
        ..member_metadata()
    });
    let mut golden = encode_value(&RecordValue::MemberMetadata(member_metadata()));
    golden.pop(); // The tagged-field count 0 of the golden vector above.
    golden.extend_from_slice(&[
        1, 0, 16, // One tagged field: tag 0, 16 bytes.
        1,  // Non-null (a tagged nullable struct starts with a marker, 0 being null).
        0, 0, 0xaf, 0xc8, // Session timeout 45 000 ms = 0xafc8.
        2, 6, b'r', b'a', b'n', b'g', b'e', 2, 9, 0, // One protocol "range", metadata [9].
        0, // The struct's tagged fields.
    ]);
    check(&key(5), &value, &golden);
}

#[test]
fn assignments_are_topic_ids_and_partitions() {
    let value = RecordValue::TargetAssignmentMember(TargetAssignmentMember {
        topic_partitions: vec![TopicPartitions { topic_id: [0xaa; 16], partitions: vec![0, 2] }],
    });
    let mut golden = vec![0, 0, 2]; // Version 0; one topic.
    golden.extend_from_slice(&[0xaa; 16]);
    golden.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0, 2]); // Partitions [0, 2].
    golden.extend_from_slice(&[0, 0]); // The topic's tagged fields, the value's.
    check(&key(7), &value, &golden);

    let value = RecordValue::CurrentMemberAssignment(CurrentMemberAssignment {
        member_epoch: 7,
        previous_member_epoch: 6,
        state: 1,
        assigned_partitions: vec![TopicPartitions { topic_id: [0x11; 16], partitions: vec![1] }],
        partitions_pending_revocation: Vec::new(),
    });
    let mut golden = vec![0, 0, 0, 0, 0, 7, 0, 0, 0, 6, 1]; // Version 0; epochs 7, 6; state 1.
    golden.push(2); // One assigned topic,
    golden.extend_from_slice(&[0x11; 16]);
    golden.extend_from_slice(&[2, 0, 0, 0, 1, 0]); // partition 1, its tagged fields.
    golden.extend_from_slice(&[1, 0]); // None pending revocation; the value's tagged fields.
    check(&key(8), &value, &golden);
}

#[test]
fn lengths_above_127_take_two_varint_bytes() {
    let long = "x".repeat(200);
    let member = MemberMetadata { client_id: long.clone(), ..member_metadata() };
    let bytes = encode_value(&RecordValue::MemberMetadata(member.clone()));
    // Version, null instance id, rack "r", then 201 = 0b1_1001001: 0xc9, 0x01.
    assert_eq!(&bytes[..7], [0, 0, 0, 2, b'r', 0xc9, 0x01]);
    assert_eq!(decode_value(&key(5), &bytes), Ok(RecordValue::MemberMetadata(member)));
}

#[test]
fn unknown_tagged_fields_are_skipped() {
    // The group epoch with a tag-0 int64, as Kafka 4.1 adds (the metadata hash).
    let bytes = [0, 0, 0, 0, 0, 5, 1, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
    let value = RecordValue::ConsumerGroupMetadata(ConsumerGroupMetadata { epoch: 5 });
    assert_eq!(decode_value(&key(3), &bytes), Ok(value));
    // An unknown tag inside an assignment's topic struct, and one after the value's fields.
    let mut bytes = vec![0, 0, 2];
    bytes.extend_from_slice(&[0xaa; 16]);
    bytes.extend_from_slice(&[2, 0, 0, 0, 4]); // Partition 4,
    bytes.extend_from_slice(&[1, 9, 2, 0xde, 0xad]); // tag 9, two bytes.
    bytes.extend_from_slice(&[1, 200, 1, 0]); // Tag 200 (a two-byte varint), empty.
    let value = RecordValue::TargetAssignmentMember(TargetAssignmentMember {
        topic_partitions: vec![TopicPartitions { topic_id: [0xaa; 16], partitions: vec![4] }],
    });
    assert_eq!(decode_value(&key(7), &bytes), Ok(value));
    // A member with an unknown tag 3 after the classic member metadata's tag 0 (null here).
    let mut bytes = encode_value(&RecordValue::MemberMetadata(member_metadata()));
    bytes.pop();
    bytes.extend_from_slice(&[2, 0, 1, 0, 3, 1, 0xff]);
    assert_eq!(decode_value(&key(5), &bytes), Ok(RecordValue::MemberMetadata(member_metadata())));
}

#[test]
fn malformed_values_are_errors() {
    assert_eq!(
        decode_value(&key(3), &[0, 1, 0, 0, 0, 5, 0]),
        Err(RecordError::Version { what: "consumer group metadata value", version: 1 })
    );
    // A tagged field longer than what is left.
    assert_eq!(decode_value(&key(3), &[0, 0, 0, 0, 0, 5, 1, 0, 9, 1]), Err(RecordError::Truncated));
    // A null client id, which the schema does not allow.
    let mut bytes = encode_value(&RecordValue::MemberMetadata(member_metadata()));
    bytes[5] = 0;
    assert_eq!(decode_value(&key(5), &bytes), Err(RecordError::Invalid("null string")));
    // A null array of partitions.
    let bytes = [[0, 0, 2].as_slice(), &[0; 16], &[0, 0, 0]].concat();
    assert_eq!(decode_value(&key(7), &bytes), Err(RecordError::Invalid("array count")));
    // A varint of six bytes, and one past 32 bits.
    let bytes = [0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
    assert_eq!(decode_value(&key(7), &bytes), Err(RecordError::Invalid("varint")));
    let bytes = [0, 0, 0xff, 0xff, 0xff, 0xff, 0x10];
    assert_eq!(decode_value(&key(7), &bytes), Err(RecordError::Invalid("varint")));
    // A classic member metadata tag whose struct does not fill its size.
    let mut bytes = encode_value(&RecordValue::MemberMetadata(member_metadata()));
    bytes.pop();
    bytes.extend_from_slice(&[1, 0, 2, 0, 0]);
    assert_eq!(decode_value(&key(5), &bytes), Err(RecordError::Trailing(1)));
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9./-]{0,12}|\\PC{0,4}"
}

fn topic_partitions() -> impl Strategy<Value = Vec<TopicPartitions>> {
    let topic = (any::<[u8; 16]>(), prop::collection::vec(any::<i32>(), 0..5))
        .prop_map(|(topic_id, partitions)| TopicPartitions { topic_id, partitions });
    prop::collection::vec(topic, 0..4)
}

fn member_value() -> impl Strategy<Value = MemberMetadata> {
    let protocol = (name(), prop::collection::vec(any::<u8>(), 0..8))
        .prop_map(|(name, metadata)| ClassicProtocol { name, metadata });
    let classic = (any::<i32>(), prop::collection::vec(protocol, 0..3)).prop_map(
        |(session_timeout_ms, supported_protocols)| ClassicMemberMetadata {
            session_timeout_ms,
            supported_protocols,
        },
    );
    let ids = (prop::option::of(name()), prop::option::of(name()), name(), name());
    let subscription = (prop::collection::vec(name(), 0..4), prop::option::of(name()));
    let rest = (any::<i32>(), prop::option::of(name()), prop::option::of(classic));
    (ids, subscription, rest).prop_map(
        |(
            (instance_id, rack_id, client_id, client_host),
            (names, regex),
            (timeout, assignor, classic),
        )| {
            MemberMetadata {
                instance_id,
                rack_id,
                client_id,
                client_host,
                subscribed_topic_names: names,
                subscribed_topic_regex: regex,
                rebalance_timeout_ms: timeout,
                server_assignor: assignor,
                classic_member_metadata: classic,
            }
        },
    )
}

fn partition_metadata_value() -> impl Strategy<Value = PartitionMetadata> {
    let racks = (any::<i32>(), prop::collection::vec(name(), 0..3))
        .prop_map(|(partition, racks)| PartitionRacks { partition, racks });
    let topic = (any::<[u8; 16]>(), name(), any::<i32>(), prop::collection::vec(racks, 0..3))
        .prop_map(|(topic_id, topic_name, partition_count, partition_racks)| TopicMetadata {
            topic_id,
            topic_name,
            partition_count,
            partition_racks,
        });
    prop::collection::vec(topic, 0..4).prop_map(|topics| PartitionMetadata { topics })
}

/// A consumer-protocol record: its type and value.
fn record() -> impl Strategy<Value = (i16, RecordValue)> {
    let current = (any::<i32>(), any::<i32>(), any::<i8>(), topic_partitions(), topic_partitions())
        .prop_map(|(member_epoch, previous_member_epoch, state, assigned, pending)| {
            RecordValue::CurrentMemberAssignment(CurrentMemberAssignment {
                member_epoch,
                previous_member_epoch,
                state,
                assigned_partitions: assigned,
                partitions_pending_revocation: pending,
            })
        });
    prop_oneof![
        any::<i32>().prop_map(|epoch| (
            3,
            RecordValue::ConsumerGroupMetadata(ConsumerGroupMetadata { epoch })
        )),
        partition_metadata_value().prop_map(|v| (4, RecordValue::PartitionMetadata(v))),
        member_value().prop_map(|v| (5, RecordValue::MemberMetadata(v))),
        any::<i32>().prop_map(|assignment_epoch| (
            6,
            RecordValue::TargetAssignmentMetadata(TargetAssignmentMetadata { assignment_epoch })
        )),
        topic_partitions().prop_map(|topic_partitions| (
            7,
            RecordValue::TargetAssignmentMember(TargetAssignmentMember { topic_partitions })
        )),
        current.prop_map(|v| (8, v)),
    ]
}

proptest! {
    #[test]
    fn every_value_round_trips((record_type, value) in record()) {
        let key = key(record_type);
        let bytes = encode_value(&value);
        prop_assert_eq!(decode_value(&key, &bytes), Ok(value));
        prop_assert_eq!(decode_value(&key, &bytes[..bytes.len() - 1]), Err(RecordError::Truncated));
    }

    #[test]
    fn every_key_round_trips(record_type in 3i16..=8, group in name(), member in name()) {
        let key = match key(record_type) {
            RecordKey::MemberMetadata { .. } => RecordKey::MemberMetadata { group, member },
            RecordKey::TargetAssignmentMember { .. } => {
                RecordKey::TargetAssignmentMember { group, member }
            }
            RecordKey::CurrentMemberAssignment { .. } => {
                RecordKey::CurrentMemberAssignment { group, member }
            }
            RecordKey::ConsumerGroupMetadata { .. } => RecordKey::ConsumerGroupMetadata { group },
            RecordKey::PartitionMetadata { .. } => RecordKey::PartitionMetadata { group },
            _ => RecordKey::TargetAssignmentMetadata { group },
        };
        prop_assert_eq!(decode_key(&encode_key(&key)), Ok(key));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        record_type in 3i16..=8,
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = decode_value(&key(record_type), &bytes);
    }
}
