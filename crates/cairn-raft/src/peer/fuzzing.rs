//! The body of the cargo-fuzz target `peer_frame` (in `fuzz/`) and of the test that replays its
//! corpus on stable (`tests/peer_fuzz_corpus.rs`), so both run one piece of code; and the seed
//! frames of its corpus: a valid frame of every kind, and hostile ones.
//!
//! - [`fuzz_peer_frame`]: the input is the bytes a peer sends on one connection, read frame after
//!   frame as a connection reads them (length checked before allocating, then decoded). A
//!   malformed frame is never a failure; it panics only when a promise of the codec breaks: a
//!   frame that decodes must encode to exactly its bytes (the encoding is canonical).
//! - [`seed_frames`]: what `fuzz/examples/seed_corpus.rs` writes to `fuzz/corpus/peer_frame`.
//! - [`stored`]: an entry as a leader's log returns it (batch stamped with its term and an
//!   offset), the only form an AppendEntries carries.
//!
//! Nothing here is used by the transport; it is public so that the fuzz crate (outside the
//! workspace) and integration tests can reach it.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use cairn_meta::{
    ConfigChange, ConfigError, CoreCommand, CoreReply, LogPosition, MetaError, NodeMeta,
    TopicConfigs, TopicId, TopicMeta, TopicName, TopicSpec,
};
use cairn_types::batch::{self, BatchBuilder};
use cairn_types::limits::{PEER_FRAME_BYTES_MAX, PEER_HEARTBEATS_GROUPS_MAX};
use cairn_types::{LeaderEpoch, NodeId, Offset, ProducerId};

use crate::core_group::{CoreRequest, Forwarded};
use crate::peer::body::{
    AppendRequest, AppendResponse, ClusterId, ErrorAnswer, ErrorCode, Goodbye, GoodbyeReason,
    GroupAnswer, Heartbeat, HeartbeatAnswer, Hello, Lane, LedGroup, Message, Ping, PingAnswer,
    SnapshotMeta, SnapshotRequest, SnapshotResponse, Vote, VoteRequest, VoteResponse,
};
use crate::peer::core_body::{CoreAnswer, CoreRefusal, CoreSnapshotRequest};
use crate::peer::frame::{self, Frame, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN};
use crate::{Members, PartitionSnapshot, Proposal, RaftEntry, codec};

/// Target `peer_frame`: `data` is a peer's byte stream. Each frame is decoded as it is and with
/// its CRC recomputed (so that mutations reach the bodies); one that decodes must encode back
/// to its exact bytes.
///
/// # Panics
/// If a decoded frame does not encode, or encodes to other bytes.
pub fn fuzz_peer_frame(data: &[u8]) {
    let mut rest = data;
    while rest.len() >= 4 {
        let prefix = [rest[0], rest[1], rest[2], rest[3]];
        let Ok(length) = frame::frame_length(prefix, PEER_FRAME_BYTES_MAX) else { return };
        let Some(whole) = rest.get(..4 + length) else { return };
        check_frame(whole);
        let mut resealed = whole.to_vec();
        let crc = crc32c::crc32c(&resealed[8..]);
        resealed[4..8].copy_from_slice(&crc.to_be_bytes());
        check_frame(&resealed);
        rest = &rest[4 + length..];
    }
}

/// Decodes one whole frame (prefix included) and, if it decodes, checks its encoding.
fn check_frame(whole: &[u8]) {
    if let Ok(decoded) = frame::decode(Bytes::copy_from_slice(&whole[4..])) {
        let again = frame::encode(&decoded).expect("a decoded frame encodes");
        assert_eq!(&again[..], whole, "decoding then encoding changed the frame {decoded:?}");
    }
}

/// `entry` as a leader's log returns it: its batch stamped with the entry's term and
/// `base_offset`, decoded again so that it carries the stored batch.
///
/// # Panics
/// If the entry has no batch form (a term above `i32::MAX`, a reserved proposal).
#[must_use]
pub fn stored(entry: &RaftEntry, base_offset: u64) -> RaftEntry {
    let mut bytes = codec::encode(entry, 1_700_000_000_000).expect("an encodable entry").to_vec();
    let epoch = i32::try_from(entry.term()).expect("a term with an epoch");
    batch::set_base_offset(&mut bytes, Offset(base_offset));
    batch::set_partition_leader_epoch(&mut bytes, LeaderEpoch(epoch));
    let log_id = crate::entry::log_id(entry.term(), entry.index());
    codec::decode(Bytes::from(bytes), log_id).expect("a stamped batch decodes")
}

/// A frame of `message` with the test's header fields.
fn frame(message: Message) -> Frame {
    Frame { version: PROTOCOL_VERSION_MAX, correlation: 7, group: 42, ttl_ms: 1000, message }
}

fn vote() -> Vote {
    Vote::new_committed(5, 2)
}

/// Voters 1, 2 and 3.
fn members_of_three() -> Members {
    let voters: BTreeSet<u64> = [1, 2, 3].into_iter().collect();
    Members::new(vec![voters], BTreeSet::new()).expect("a valid membership")
}

/// A snapshot at (5, 12) whose membership is `members`, as of (5, 12).
fn snapshot_request(members: &Members) -> SnapshotRequest {
    let at = crate::entry::log_id(5, 12);
    SnapshotRequest {
        vote: vote(),
        meta: SnapshotMeta {
            last_log_id: Some(at),
            last_membership: openraft::StoredMembership::new(Some(at), members.to_membership()),
        },
        data: PartitionSnapshot { log_start_offset: Offset(104), producers: Bytes::new() },
    }
}

/// [`snapshot_request`] carrying the state of one idempotent producer.
fn snapshot_with_producers() -> SnapshotRequest {
    let batch = BatchBuilder::new(1_700_000_000_000)
        .producer(cairn_types::ProducerId(7), 2, 40)
        .record(None, Some(b"v"), &[])
        .build();
    let mut header = *cairn_types::batch::RecordBatch::validate(&batch).expect("valid").header();
    header.base_offset = Offset(90);
    let mut states = cairn_storage::ProducerStates::new();
    states.record_batch_of(&header);
    let mut request = snapshot_request(&members_of_three());
    request.data.producers = Bytes::from(states.encode());
    request
}

/// Three stored entries of term 5 from index 10: a blank, a produced batch, a membership.
///
/// # Panics
/// Never: the entries are valid by construction.
#[must_use]
pub fn sample_entries() -> Vec<RaftEntry> {
    let produced = BatchBuilder::new(1_700_000_000_000)
        .record(Some(b"key"), Some(b"value"), &[])
        .record(None, Some(b"second"), &[])
        .build();
    let proposal = Proposal { batch: Bytes::from(produced), ticket: Proposal::TICKET_NONE };
    let voters: BTreeSet<u64> = [1, 2, 3].into_iter().collect();
    let members = Members::new(vec![voters], BTreeSet::new()).expect("a valid membership");
    vec![
        stored(&RaftEntry::blank(5, 10), 100),
        stored(&RaftEntry::normal(5, 11, proposal), 101),
        stored(&RaftEntry::membership(5, 12, &members), 103),
    ]
}

/// One message of every kind, named.
///
/// # Panics
/// Never: the messages are valid by construction.
#[must_use]
pub fn sample_messages() -> Vec<(&'static str, Message)> {
    let hello = Hello {
        version_min: PROTOCOL_VERSION_MIN,
        version_max: PROTOCOL_VERSION_MAX,
        lane: Lane::Data,
        cluster_id: Some(ClusterId(*b"0123456789abcdef")),
        node_id: 3,
        incarnation: 99,
    };
    let last = Some(crate::entry::log_id(4, 9));
    let append = AppendRequest {
        vote: vote(),
        prev_log_id: last,
        entries: sample_entries(),
        leader_commit: Some(crate::entry::log_id(4, 8)),
    };
    let heartbeat = |group| Heartbeat {
        group,
        request: AppendRequest { entries: Vec::new(), ..append.clone() },
    };
    let error = ErrorAnswer { code: ErrorCode::Busy, message: "busy".to_owned() };
    vec![
        ("hello", Message::Hello(hello.clone())),
        ("hello-bootstrap", Message::Hello(Hello { cluster_id: None, ..hello })),
        (
            "goodbye",
            Message::Goodbye(Goodbye {
                reason: GoodbyeReason::WrongCluster,
                message: "cluster id differs".to_owned(),
            }),
        ),
        ("vote", Message::Vote(VoteRequest::new(vote(), last))),
        ("vote-answer", Message::VoteAnswer(VoteResponse::new(vote(), last, true))),
        (
            "pre-vote",
            Message::PreVote(VoteRequest {
                leadership_transfer: true,
                ..VoteRequest::new(vote(), None)
            }),
        ),
        ("pre-vote-answer", Message::PreVoteAnswer(VoteResponse::new(vote(), None, false))),
        ("append", Message::Append(append.clone())),
        ("append-answer-success", Message::AppendAnswer(AppendResponse::Success)),
        ("append-answer-partial", Message::AppendAnswer(AppendResponse::PartialSuccess(last))),
        ("append-answer-conflict", Message::AppendAnswer(AppendResponse::Conflict)),
        ("append-answer-higher", Message::AppendAnswer(AppendResponse::HigherVote(vote()))),
        ("heartbeats", Message::Heartbeats(vec![heartbeat(1), heartbeat(2), heartbeat(3)])),
        (
            "heartbeats-answer",
            Message::HeartbeatsAnswer(vec![
                HeartbeatAnswer { group: 1, answer: GroupAnswer::Append(AppendResponse::Success) },
                HeartbeatAnswer { group: 2, answer: GroupAnswer::UnknownGroup },
                HeartbeatAnswer { group: 3, answer: GroupAnswer::Error(error.clone()) },
            ]),
        ),
        ("unknown-group", Message::UnknownGroup),
        ("error", Message::Error(error)),
        ("snapshot", Message::Snapshot(snapshot_request(&members_of_three()))),
        (
            "snapshot-empty-membership",
            Message::Snapshot(SnapshotRequest {
                meta: SnapshotMeta::default(),
                ..snapshot_request(&members_of_three())
            }),
        ),
        ("snapshot-with-producers", Message::Snapshot(snapshot_with_producers())),
        ("snapshot-answer", Message::SnapshotAnswer(SnapshotResponse { vote: vote() })),
        ("ping-empty", Message::Ping(Ping { from: 3, led: Vec::new() })),
        (
            "ping",
            Message::Ping(Ping {
                from: 1,
                led: vec![
                    LedGroup { group: 7, term: 4, quiesced: true },
                    LedGroup { group: 9, term: 2, quiesced: false },
                ],
            }),
        ),
        ("ping-answer", Message::PingAnswer(PingAnswer { refused: vec![9] })),
        ("coord-call", Message::CoordCall(bytes::Bytes::from_static(&[1, 2]))),
        ("coord-call-answer", Message::CoordCallAnswer(bytes::Bytes::from_static(&[1, 3, 0, 0]))),
    ]
    .into_iter()
    .chain(core_messages())
    .collect()
}

/// The consistent core's messages: a forwarded write of every request kind, answers done and
/// refused, and a core snapshot.
fn core_messages() -> Vec<(&'static str, Message)> {
    let topic = TopicName::new("orders").expect("a valid topic name");
    let configs = vec![("retention.ms".to_owned(), "3600000".to_owned())];
    let spec = TopicSpec {
        name: topic.clone(),
        partitions: 3,
        replication_factor: 3,
        configs,
        assignments: None,
    };
    let assigned = TopicSpec {
        partitions: 2,
        replication_factor: 2,
        assignments: Some(vec![vec![NodeId(2), NodeId(1)], vec![NodeId(1), NodeId(3)]]),
        ..spec.clone()
    };
    let created = TopicMeta {
        id: TopicId::from_bytes(*b"fedcba9876543210"),
        name: topic,
        partitions: 3,
        replication_factor: 3,
        configs: TopicConfigs::from_overrides(&spec.configs).expect("valid configs"),
    };
    let changes = vec![
        ConfigChange::Set { key: "retention.ms".to_owned(), value: "60000".to_owned() },
        ConfigChange::Delete { key: "segment.ms".to_owned() },
    ];
    let register = CoreCommand::RegisterNode {
        node: NodeMeta { id: NodeId(2), host: "10.0.0.2".to_owned(), port: 9092, rack: None },
        peer_address: "10.0.0.2:9093".to_owned(),
    };
    let etcd_address =
        CoreCommand::SetEtcdAddress { node: NodeId(2), address: Some("10.0.0.2:2379".to_owned()) };
    let done =
        |reply, applied| Message::CoreWriteAnswer(CoreAnswer::Done(Forwarded { reply, applied }));
    let at = Some(LogPosition { term: 3, index: 17 });
    let refused = CoreRefusal::of(&MetaError::Config(ConfigError::InvalidValue {
        key: "retention.ms".to_owned(),
        value: "soon".to_owned(),
        reason: "not a number".to_owned(),
    }));
    let mut snapshot = snapshot_request(&members_of_three());
    snapshot.vote = vote();
    let core_snapshot = CoreSnapshotRequest {
        vote: snapshot.vote,
        meta: snapshot.meta,
        state: Bytes::from_static(b"an encoded core state"),
    };
    vec![
        ("core-write-create", Message::CoreWrite(CoreRequest::CreateTopic(spec))),
        ("core-write-create-assigned", Message::CoreWrite(CoreRequest::CreateTopic(assigned))),
        ("core-write-delete", Message::CoreWrite(CoreRequest::DeleteTopic("orders".to_owned()))),
        (
            "core-write-partitions",
            Message::CoreWrite(CoreRequest::CreatePartitions {
                name: "orders".to_owned(),
                count: 6,
                assignments: None,
            }),
        ),
        (
            "core-write-partitions-assigned",
            Message::CoreWrite(CoreRequest::CreatePartitions {
                name: "orders".to_owned(),
                count: 4,
                assignments: Some(vec![vec![NodeId(3), NodeId(2), NodeId(1)]]),
            }),
        ),
        (
            "core-write-alter",
            Message::CoreWrite(CoreRequest::AlterConfigs { name: "orders".to_owned(), changes }),
        ),
        (
            "core-write-finish",
            Message::CoreWrite(CoreRequest::FinishDeletion(TopicId::from_bytes(
                *b"0123456789abcdef",
            ))),
        ),
        ("core-write-command", Message::CoreWrite(CoreRequest::Command(register))),
        ("core-write-command-etcd", Message::CoreWrite(CoreRequest::Command(etcd_address))),
        ("core-write-read-index", Message::CoreWrite(CoreRequest::ReadIndex)),
        ("core-answer-done", done(CoreReply::Done, None)),
        ("core-answer-topic", done(CoreReply::Topic(Arc::new(created)), at)),
        (
            "core-answer-producer-ids",
            done(CoreReply::ProducerIds { first: ProducerId(1000), count: 1000 }, at),
        ),
        ("core-answer-refused", Message::CoreWriteAnswer(CoreAnswer::Refused(refused))),
        ("core-snapshot", Message::CoreSnapshot(core_snapshot)),
    ]
}

/// The seeds of the `peer_frame` corpus, named (the corpus files are `seed-<name>`): a valid frame of every kind
/// ([`sample_messages`]), all of them in one stream, and hostile frames (absurd lengths and
/// counts, a bad CRC, an unknown kind, truncations, trailing bytes).
///
/// # Panics
/// Never: the frames are valid by construction.
#[must_use]
pub fn seed_frames() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut stream = Vec::new();
    for (name, message) in sample_messages() {
        let bytes = frame::encode(&frame(message)).expect("a valid frame encodes").to_vec();
        stream.extend_from_slice(&bytes);
        seeds.push((name.to_owned(), bytes));
    }
    seeds.push(("stream".to_owned(), stream));
    seeds.extend(hostile_frames());
    seeds
}

/// Frames a decoder must refuse without allocating for their claims.
fn hostile_frames() -> Vec<(String, Vec<u8>)> {
    let valid = |message| frame::encode(&frame(message)).expect("a valid frame").to_vec();
    let resealed = |mut bytes: Vec<u8>| {
        let crc = crc32c::crc32c(&bytes[8..]);
        bytes[4..8].copy_from_slice(&crc.to_be_bytes());
        bytes
    };
    let heartbeats = valid(Message::Heartbeats(Vec::new()));
    let append = valid(Message::Append(AppendRequest {
        vote: vote(),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    }));
    let unknown = valid(Message::UnknownGroup);
    let mut seeds = vec![
        ("length-7fffffff", 0x7fff_ffff_u32.to_be_bytes().to_vec()),
        ("length-over-max", (PEER_FRAME_BYTES_MAX + 1).to_be_bytes().to_vec()),
        ("length-below-header", 3_u32.to_be_bytes().to_vec()),
        ("truncated", unknown[..unknown.len() - 1].to_vec()),
    ];
    let mut bad_crc = unknown.clone();
    bad_crc[4] ^= 0x01;
    seeds.push(("bad-crc", bad_crc));
    let mut kind = unknown.clone();
    kind[8..10].copy_from_slice(&999_u16.to_be_bytes());
    seeds.push(("unknown-kind", resealed(kind)));
    let mut trailing = unknown;
    trailing.push(0);
    let length = u32::try_from(trailing.len() - 4).expect("small");
    trailing[..4].copy_from_slice(&length.to_be_bytes());
    seeds.push(("trailing-byte", resealed(trailing)));
    // The count is the body's last field of an empty AppendEntries or Heartbeats.
    for (name, mut bytes) in
        [("entries-count-ffffffff", append), ("heartbeats-count-ffffffff", heartbeats)]
    {
        let at = bytes.len() - 4;
        bytes[at..].copy_from_slice(&u32::MAX.to_be_bytes());
        seeds.push((name, resealed(bytes)));
    }
    let mut too_many = valid(Message::Heartbeats(Vec::new()));
    let at = too_many.len() - 4;
    too_many[at..].copy_from_slice(&(PEER_HEARTBEATS_GROUPS_MAX + 1).to_be_bytes());
    seeds.push(("heartbeats-count-over-max", resealed(too_many)));
    seeds.into_iter().map(|(name, bytes)| (name.to_owned(), bytes)).collect()
}
