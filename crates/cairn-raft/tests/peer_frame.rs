//! The peer frame codec against its rules: every kind round-trips byte for byte, entries stay
//! slices of the frame, and damaged or hostile frames are refused with the error that names
//! what is wrong.

use bytes::Bytes;
use cairn_raft::peer::frame::{self, Frame, PROTOCOL_VERSION_MAX};
use cairn_raft::peer::fuzzing::{fuzz_peer_frame, sample_entries, sample_messages, seed_frames};
use cairn_raft::peer::{AppendRequest, FrameError, Heartbeat, Message, Vote, VoteRequest};
use cairn_raft::{LogId, Proposal, RaftEntry};
use cairn_types::batch::BatchBuilder;
use cairn_types::limits::{
    BATCH_BYTES_MAX, PEER_FRAME_BYTES_MAX, PEER_HEARTBEATS_GROUPS_MAX, RAFT_READ_BYTES_MAX,
};
use proptest::prelude::*;

fn frame(message: Message) -> Frame {
    Frame { version: PROTOCOL_VERSION_MAX, correlation: 9, group: 77, ttl_ms: 250, message }
}

/// Encodes, decodes the bytes after the length prefix, and encodes again.
fn round_trip(frame: &Frame) -> (Bytes, Frame) {
    let bytes = frame::encode(frame).expect("encodes");
    let prefix = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let length = frame::frame_length(prefix, PEER_FRAME_BYTES_MAX).expect("a valid length");
    assert_eq!(length, bytes.len() - 4);
    let decoded = frame::decode(bytes.slice(4..)).expect("decodes");
    assert_eq!(frame::encode(&decoded).expect("encodes again"), bytes, "{frame:?}");
    (bytes, decoded)
}

fn decode_whole(bytes: &[u8]) -> Result<Frame, FrameError> {
    frame::decode(Bytes::copy_from_slice(&bytes[4..]))
}

#[test]
fn every_kind_round_trips_with_its_header() {
    for (name, message) in sample_messages() {
        let (_, decoded) = round_trip(&frame(message.clone()));
        assert_eq!(decoded.message.kind(), message.kind(), "{name}");
        assert_eq!(
            (decoded.version, decoded.correlation, decoded.group, decoded.ttl_ms),
            (PROTOCOL_VERSION_MAX, 9, 77, 250),
            "{name}"
        );
        assert_eq!(format!("{:?}", decoded.message), format!("{message:?}"), "{name}");
    }
}

#[test]
fn entries_are_slices_of_the_frame() {
    let request = AppendRequest {
        vote: Vote::new_committed(5, 1),
        prev_log_id: None,
        entries: sample_entries(),
        leader_commit: None,
    };
    let bytes = frame::encode(&frame(Message::Append(request))).expect("encodes");
    let rest = bytes.slice(4..);
    let span = rest.as_ptr() as usize..rest.as_ptr() as usize + rest.len();
    let Message::Append(decoded) = frame::decode(rest.clone()).expect("decodes").message else {
        panic!("not an append");
    };
    assert_eq!(decoded.entries, sample_entries());
    let normal = decoded.entries[1].proposal().expect("a normal entry");
    assert!(span.contains(&(normal.batch.as_ptr() as usize)), "the batch was copied");
}

#[test]
fn damage_anywhere_is_refused() {
    let (bytes, _) = round_trip(&frame(Message::Append(AppendRequest {
        vote: Vote::new_committed(5, 1),
        prev_log_id: None,
        entries: sample_entries(),
        leader_commit: None,
    })));
    for position in 4..bytes.len() {
        let mut damaged = bytes.to_vec();
        damaged[position] ^= 0x10;
        assert!(
            matches!(decode_whole(&damaged), Err(FrameError::Crc { .. })),
            "a flipped bit at {position} got past the crc"
        );
    }
}

#[test]
fn lengths_are_checked_before_anything_else() {
    let over = (PEER_FRAME_BYTES_MAX + 1).to_be_bytes();
    assert!(matches!(
        frame::frame_length(over, PEER_FRAME_BYTES_MAX),
        Err(FrameError::TooLarge { length, max: PEER_FRAME_BYTES_MAX })
            if length == u64::from(PEER_FRAME_BYTES_MAX) + 1
    ));
    assert!(matches!(
        frame::frame_length(27_u32.to_be_bytes(), PEER_FRAME_BYTES_MAX),
        Err(FrameError::TooShort { length: 27 })
    ));
    assert_eq!(frame::frame_length(28_u32.to_be_bytes(), 28).expect("a header"), 28);
    assert!(matches!(
        frame::frame_length(29_u32.to_be_bytes(), 28),
        Err(FrameError::TooLarge { .. })
    ));
}

/// Every truncation of every kind's body (the CRC resealed so the body decoder sees it) is
/// refused, never read past.
#[test]
fn truncated_bodies_are_refused() {
    for (name, message) in sample_messages() {
        let (bytes, _) = round_trip(&frame(message));
        for cut in 32..bytes.len() {
            let mut truncated = bytes[..cut].to_vec();
            let crc = crc32c::crc32c(&truncated[8..]);
            truncated[4..8].copy_from_slice(&crc.to_be_bytes());
            let decoded = decode_whole(&truncated);
            assert!(decoded.is_err(), "{name} cut at {cut} decoded: {decoded:?}");
        }
    }
}

#[test]
fn an_entry_not_read_from_a_log_is_not_sent() {
    let produced = BatchBuilder::new(0).record(None, Some(b"v"), &[]).build();
    let fresh = RaftEntry::normal(
        3,
        1,
        Proposal { batch: Bytes::from(produced), ticket: Proposal::TICKET_NONE },
    );
    let request = AppendRequest {
        vote: Vote::new_committed(3, 1),
        prev_log_id: None,
        entries: vec![fresh],
        leader_commit: None,
    };
    assert!(matches!(
        frame::encode(&frame(Message::Append(request))),
        Err(FrameError::EntryNotStored { index: 1 })
    ));
}

/// The frame bound holds an append of the target size plus one largest batch, and a frame
/// over it is refused on the sender.
#[test]
fn the_frame_bound_holds_an_append_and_refuses_more() {
    assert!(
        u64::from(PEER_FRAME_BYTES_MAX)
            > u64::from(RAFT_READ_BYTES_MAX) + u64::from(BATCH_BYTES_MAX)
    );
    let value = vec![7; 8 * 1024 * 1024];
    let produced = BatchBuilder::new(0).record(None, Some(&value), &[]).build();
    let proposal = Proposal { batch: Bytes::from(produced), ticket: Proposal::TICKET_NONE };
    let entry = cairn_raft::peer::fuzzing::stored(&RaftEntry::normal(2, 1, proposal), 0);
    let append = |count| {
        Message::Append(AppendRequest {
            vote: Vote::new_committed(2, 1),
            prev_log_id: None,
            entries: vec![entry.clone(); count],
            leader_commit: None,
        })
    };
    round_trip(&frame(append(8)));
    assert!(matches!(frame::encode(&frame(append(9))), Err(FrameError::TooLarge { .. })));
}

#[test]
fn heartbeats_are_bounded_per_frame() {
    let heartbeat = |group| Heartbeat {
        group,
        request: AppendRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        },
    };
    let most = u64::from(PEER_HEARTBEATS_GROUPS_MAX);
    round_trip(&frame(Message::Heartbeats((0..most).map(heartbeat).collect())));
    let over = Message::Heartbeats((0..=most).map(heartbeat).collect());
    assert!(matches!(frame::encode(&frame(over)), Err(FrameError::Count { .. })));
}

/// Every seed of the `peer_frame` corpus goes through the fuzz target's body without breaking
/// a promise (the corpus replay does the same for the files on disk).
#[test]
fn seeds_pass_the_fuzz_target() {
    for (name, bytes) in seed_frames() {
        fuzz_peer_frame(&bytes);
        let valid = !name.contains("length")
            && !name.contains("count")
            && !name.contains("crc")
            && !name.contains("kind")
            && !name.contains("trailing")
            && name != "truncated";
        if valid && name != "stream" {
            assert!(decode_whole(&bytes).is_ok(), "{name} does not decode");
        } else if !valid && bytes.len() >= 32 {
            assert!(decode_whole(&bytes).is_err(), "{name} decodes");
        }
    }
}

fn log_id() -> impl Strategy<Value = Option<LogId>> {
    proptest::option::of(
        (any::<u64>(), any::<u64>()).prop_map(|(t, i)| LogId::new_term_index(t, i)),
    )
}

fn vote() -> impl Strategy<Value = Vote> {
    (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(term, node, committed)| {
        if committed { Vote::new_committed(term, node) } else { Vote::new(term, node) }
    })
}

proptest! {
    #[test]
    fn votes_and_log_ids_round_trip(
        vote in vote(),
        last in log_id(),
        commit in log_id(),
        transfer in any::<bool>(),
        correlation in any::<u64>(),
        group in any::<u64>(),
        ttl_ms in any::<u32>(),
    ) {
        let request = VoteRequest { vote, last_log_id: last, leadership_transfer: transfer };
        let append = AppendRequest { vote, prev_log_id: last, entries: Vec::new(), leader_commit: commit };
        for message in [Message::Vote(request.clone()), Message::PreVote(request), Message::Append(append)] {
            let frame = Frame { version: 1, correlation, group, ttl_ms, message };
            let (_, decoded) = round_trip(&frame);
            prop_assert_eq!(format!("{:?}", decoded), format!("{:?}", frame));
        }
    }
}
