//! The bodies of peer frames: [`Message`], one variant per frame kind, and cairn's own encoding
//! of openraft's request and response types (never serde: openraft's types change between
//! alphas, and derived decoders pre-allocate from untrusted counts).
//!
//! Field encodings (big-endian):
//!
//! | field | bytes |
//! |---|---|
//! | vote | term u32, voted_for u64, committed flag u8 |
//! | optional log id | flag u8; if 1: term u32, index u64 |
//! | entry | term u32, index u64, batch length u32, the stored batch |
//! | text | length u16 (at most `PEER_MESSAGE_BYTES_MAX`), UTF-8 |
//! | flag | u8, exactly 0 or 1 |
//! | coordination body | length u32, cairn-coord's encoded `Forward` or `Answer` |
//!
//! An entry travels as its stored batch (stamped with its term by the leader's log) beside its
//! log id, and is decoded by [`crate::codec::decode`], which validates the batch and checks its
//! epoch against the term; its bytes stay a slice of the frame.

use crate::core_group::CoreRequest;
use crate::membership::Members;
use crate::peer::core_body::{self, CoreAnswer, CoreSnapshotRequest};
use crate::peer::frame::{FrameError, Reader};
use crate::{LeaderId, LogId, PartitionSnapshot, RaftEntry, TypeConfig, codec, epoch};
use bytes::{BufMut, Bytes, BytesMut};
use cairn_types::batch::{BatchHeader, HEADER_BYTES};
use cairn_types::limits::{
    BATCH_BYTES_MAX, PEER_ENTRY_OVERHEAD_BYTES, PEER_FRAME_BYTES_MAX, PEER_HEARTBEATS_GROUPS_MAX,
    PEER_MESSAGE_BYTES_MAX, PEER_QUIESCED_GROUPS_MAX, PRODUCER_STATE_BYTES_MAX,
};

// A snapshot's producers fit one frame with room for the rest of the request.
const _: () = assert!(PRODUCER_STATE_BYTES_MAX + 64 * 1024 <= PEER_FRAME_BYTES_MAX as usize);

/// A Raft vote: the term, the node voted for, and whether a quorum granted it.
pub type Vote = openraft::impls::Vote<LeaderId>;
/// openraft's vote (and pre-vote) request in cairn's type config.
pub type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
/// openraft's vote (and pre-vote) answer.
pub type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
/// openraft's AppendEntries request; a heartbeat is one without entries.
pub type AppendRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
/// openraft's AppendEntries answer.
pub type AppendResponse = openraft::raft::AppendEntriesResponse<TypeConfig>;
/// openraft's answer to a snapshot: the receiver's vote.
pub type SnapshotResponse = openraft::raft::SnapshotResponse<TypeConfig>;
/// What openraft says about a snapshot: its last log id and the membership as of it.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;

/// A leader's whole snapshot for a follower: a partition's snapshot is the small
/// `raft-snapshot` record (RFC 0003 §3), so it travels in one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// The leader's vote, checked by the follower before it installs anything.
    pub vote: Vote,
    /// The snapshot's last log id and the membership as of it.
    pub meta: SnapshotMeta,
    /// Where the log starts after the snapshot.
    pub data: PartitionSnapshot,
}

/// The magic number that opens a `Hello` body: "crnp" (cairn peer).
pub const HELLO_MAGIC: u32 = u32::from_be_bytes(*b"crnp");

/// The id of a cluster: 16 random bytes chosen once by the first core leader (RFC 0003 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClusterId(pub [u8; 16]);

/// One of the two connections of a node pair (RFC 0003 §6): heartbeats never queue behind
/// megabytes of appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// Votes, pre-votes, heartbeats (and later core RPCs and liveness).
    Control,
    /// AppendEntries with entries, snapshots (and later segment repair).
    Data,
}

impl Lane {
    /// Both lanes, in the order of their codes.
    pub const ALL: [Lane; 2] = [Lane::Control, Lane::Data];
}

/// The first frame each way on a peer connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The oldest protocol version the sender speaks.
    pub version_min: u16,
    /// The newest protocol version the sender speaks.
    pub version_max: u16,
    /// Which lane the connection is (chosen by the dialer, repeated by the acceptor).
    pub lane: Lane,
    /// The sender's cluster, `None` for a node bootstrapping without one yet.
    pub cluster_id: Option<ClusterId>,
    /// The sender's node id.
    pub node_id: u64,
    /// Tells a restarted process from the old one: a new incarnation's connection replaces the
    /// old one's at once.
    pub incarnation: u64,
}

/// Why a connection is refused or closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoodbyeReason {
    /// The peer belongs to another cluster.
    WrongCluster = 1,
    /// No protocol version both sides speak.
    Version = 2,
    /// The peer is not the node expected at that address, not a known peer, or the one of the
    /// pair that must dial.
    WrongNode = 3,
    /// The peer broke the protocol (a frame kind out of place).
    Protocol = 4,
    /// The sender is shutting down.
    ShuttingDown = 5,
}

/// The last frame a node sends on a connection it refuses or closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Goodbye {
    /// The reason, as a code the peer can act on.
    pub reason: GoodbyeReason,
    /// Details for the peer's log (at most `PEER_MESSAGE_BYTES_MAX` bytes).
    pub message: String,
}

/// What a generic error answer says went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The receiver runs as many requests from this connection as it may; retry later.
    Busy = 1,
    /// The group could not answer (its Raft instance stopped, or its handler failed).
    Failed = 2,
    /// The request is not one the receiver serves on this lane.
    Unsupported = 3,
}

/// A generic error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorAnswer {
    /// What went wrong.
    pub code: ErrorCode,
    /// Details for the requester's log (at most `PEER_MESSAGE_BYTES_MAX` bytes).
    pub message: String,
}

/// One group's heartbeat in a batched `Heartbeats` frame: an AppendEntries without entries.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    /// The group it is for.
    pub group: u64,
    /// The empty AppendEntries (entries must be empty).
    pub request: AppendRequest,
}

/// A node's ping to a peer (RFC 0004): the failure detector of the node pair, carrying the
/// groups the sender leads, so that a node without a replica knows their leaders, and which of
/// them it leads quiescently with the receiver among their followers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ping {
    /// The sending node.
    pub from: u64,
    /// The groups the sender leads.
    pub led: Vec<LedGroup>,
}

/// One group a [`Ping`]'s sender leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LedGroup {
    /// The group.
    pub group: u64,
    /// The term the sender leads it in.
    pub term: u64,
    /// Whether the sender leads it quiescently with the receiver among its followers.
    pub quiesced: bool,
}

/// The answer to a [`Ping`]: the groups listed as quiesced that the receiver does not follow
/// quiescently (it follows another leader or term, does not know its leader yet, or does not
/// host the group).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PingAnswer {
    /// The refused groups.
    pub refused: Vec<u64>,
}

/// One group's answer in a `HeartbeatsAnswer` frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    /// The group it is from.
    pub group: u64,
    /// What the group answered.
    pub answer: GroupAnswer,
}

/// A group's answer to one heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupAnswer {
    /// The group's AppendEntries answer.
    Append(AppendResponse),
    /// The receiver hosts no such group.
    UnknownGroup,
    /// The group failed to answer.
    Error(ErrorAnswer),
}

/// What a peer frame carries: one variant per frame kind.
#[derive(Clone, Debug)]
pub enum Message {
    /// Handshake: the first frame each way.
    Hello(Hello),
    /// Handshake refused, or connection closed.
    Goodbye(Goodbye),
    /// A Raft vote request.
    Vote(VoteRequest),
    /// The answer to a [`Message::Vote`].
    VoteAnswer(VoteResponse),
    /// A pre-vote request (no term change on the receiver).
    PreVote(VoteRequest),
    /// The answer to a [`Message::PreVote`].
    PreVoteAnswer(VoteResponse),
    /// An AppendEntries with entries (data lane).
    Append(AppendRequest),
    /// The answer to a [`Message::Append`].
    AppendAnswer(AppendResponse),
    /// Many groups' heartbeats (empty AppendEntries) in one frame (control lane).
    Heartbeats(Vec<Heartbeat>),
    /// The answers to a [`Message::Heartbeats`], one per group.
    HeartbeatsAnswer(Vec<HeartbeatAnswer>),
    /// The answer to a request for a group the receiver does not host.
    UnknownGroup,
    /// A generic error answer.
    Error(ErrorAnswer),
    /// A leader's snapshot for a follower (data lane).
    Snapshot(SnapshotRequest),
    /// The answer to a [`Message::Snapshot`] or a [`Message::CoreSnapshot`].
    SnapshotAnswer(SnapshotResponse),
    /// A core write handed to the core leader by a node that does not lead (control lane).
    CoreWrite(CoreRequest),
    /// The answer to a [`Message::CoreWrite`].
    CoreWriteAnswer(CoreAnswer),
    /// The core leader's snapshot for a replica: the encoded core state (data lane).
    CoreSnapshot(CoreSnapshotRequest),
    /// A node's ping (control lane; the frame's group is unused).
    Ping(Ping),
    /// A request for the coordination group's leader (control lane): cairn-coord's encoded
    /// `Forward`, length-prefixed (u32).
    CoordCall(Bytes),
    /// The answer to a [`Message::CoordCall`]: cairn-coord's encoded `Answer`.
    CoordCallAnswer(Bytes),
    /// The answer to a [`Message::Ping`].
    PingAnswer(PingAnswer),
}

/// Frame kind codes, in the order of [`Message`]'s variants.
pub(crate) mod kind {
    pub(crate) const HELLO: u16 = 1;
    pub(crate) const GOODBYE: u16 = 2;
    pub(crate) const VOTE: u16 = 3;
    pub(crate) const VOTE_ANSWER: u16 = 4;
    pub(crate) const PRE_VOTE: u16 = 5;
    pub(crate) const PRE_VOTE_ANSWER: u16 = 6;
    pub(crate) const APPEND: u16 = 7;
    pub(crate) const APPEND_ANSWER: u16 = 8;
    pub(crate) const HEARTBEATS: u16 = 9;
    pub(crate) const HEARTBEATS_ANSWER: u16 = 10;
    pub(crate) const UNKNOWN_GROUP: u16 = 11;
    pub(crate) const ERROR: u16 = 12;
    pub(crate) const SNAPSHOT: u16 = 13;
    pub(crate) const SNAPSHOT_ANSWER: u16 = 14;
    pub(crate) const CORE_WRITE: u16 = 15;
    pub(crate) const CORE_WRITE_ANSWER: u16 = 16;
    pub(crate) const CORE_SNAPSHOT: u16 = 17;
    pub(crate) const PING: u16 = 18;
    pub(crate) const PING_ANSWER: u16 = 19;
    pub(crate) const COORD_CALL: u16 = 20;
    pub(crate) const COORD_CALL_ANSWER: u16 = 21;
}

impl Message {
    /// The frame kind code of this message.
    #[must_use]
    pub fn kind(&self) -> u16 {
        match self {
            Message::Hello(_) => kind::HELLO,
            Message::Goodbye(_) => kind::GOODBYE,
            Message::Vote(_) => kind::VOTE,
            Message::VoteAnswer(_) => kind::VOTE_ANSWER,
            Message::PreVote(_) => kind::PRE_VOTE,
            Message::PreVoteAnswer(_) => kind::PRE_VOTE_ANSWER,
            Message::Append(_) => kind::APPEND,
            Message::AppendAnswer(_) => kind::APPEND_ANSWER,
            Message::Heartbeats(_) => kind::HEARTBEATS,
            Message::HeartbeatsAnswer(_) => kind::HEARTBEATS_ANSWER,
            Message::UnknownGroup => kind::UNKNOWN_GROUP,
            Message::Error(_) => kind::ERROR,
            Message::Snapshot(_) => kind::SNAPSHOT,
            Message::SnapshotAnswer(_) => kind::SNAPSHOT_ANSWER,
            Message::CoreWrite(_) => kind::CORE_WRITE,
            Message::CoreWriteAnswer(_) => kind::CORE_WRITE_ANSWER,
            Message::CoreSnapshot(_) => kind::CORE_SNAPSHOT,
            Message::Ping(_) => kind::PING,
            Message::PingAnswer(_) => kind::PING_ANSWER,
            Message::CoordCall(_) => kind::COORD_CALL,
            Message::CoordCallAnswer(_) => kind::COORD_CALL_ANSWER,
        }
    }

    /// Whether the message is a request, which the receiver runs and answers.
    #[must_use]
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            Message::Vote(_)
                | Message::PreVote(_)
                | Message::Append(_)
                | Message::Heartbeats(_)
                | Message::Snapshot(_)
                | Message::CoreWrite(_)
                | Message::CoreSnapshot(_)
                | Message::Ping(_)
                | Message::CoordCall(_)
        )
    }
}

/// Writes `message`'s body.
pub(crate) fn encode(message: &Message, out: &mut BytesMut) -> Result<(), FrameError> {
    match message {
        Message::Hello(hello) => put_hello(out, hello),
        Message::Goodbye(goodbye) => {
            out.put_u16(goodbye.reason as u16);
            put_text(out, &goodbye.message);
        }
        Message::Vote(request) | Message::PreVote(request) => put_vote_request(out, request),
        Message::VoteAnswer(answer) | Message::PreVoteAnswer(answer) => {
            put_vote_response(out, answer);
        }
        Message::Append(request) => put_append_request(out, request)?,
        Message::AppendAnswer(answer) => put_append_response(out, answer),
        Message::Heartbeats(heartbeats) => put_heartbeats(out, heartbeats)?,
        Message::HeartbeatsAnswer(answers) => put_heartbeat_answers(out, answers)?,
        Message::UnknownGroup => {}
        Message::Error(error) => put_error(out, error),
        Message::Snapshot(request) => put_snapshot_request(out, request),
        Message::SnapshotAnswer(answer) => put_vote(out, &answer.vote),
        Message::CoreWrite(request) => core_body::put_request(out, request)?,
        Message::CoreWriteAnswer(answer) => core_body::put_answer(out, answer)?,
        Message::CoreSnapshot(request) => core_body::put_snapshot(out, request)?,
        Message::Ping(ping) => put_ping(out, ping)?,
        Message::PingAnswer(answer) => put_ping_answer(out, answer)?,
        Message::CoordCall(bytes) | Message::CoordCallAnswer(bytes) => {
            let length = u32::try_from(bytes.len())
                .map_err(|_| FrameError::Invalid { what: "coordination body length" })?;
            out.put_u32(length);
            out.put_slice(bytes);
        }
    }
    Ok(())
}

/// Reads the body of a frame of kind `kind`.
pub(crate) fn decode(kind: u16, reader: &mut Reader) -> Result<Message, FrameError> {
    Ok(match kind {
        kind::HELLO => Message::Hello(hello(reader)?),
        kind::GOODBYE => Message::Goodbye(goodbye(reader)?),
        kind::VOTE => Message::Vote(vote_request(reader)?),
        kind::VOTE_ANSWER => Message::VoteAnswer(vote_response(reader)?),
        kind::PRE_VOTE => Message::PreVote(vote_request(reader)?),
        kind::PRE_VOTE_ANSWER => Message::PreVoteAnswer(vote_response(reader)?),
        kind::APPEND => Message::Append(append_request(reader)?),
        kind::APPEND_ANSWER => Message::AppendAnswer(append_response(reader)?),
        kind::HEARTBEATS => Message::Heartbeats(heartbeats(reader)?),
        kind::HEARTBEATS_ANSWER => Message::HeartbeatsAnswer(heartbeat_answers(reader)?),
        kind::UNKNOWN_GROUP => Message::UnknownGroup,
        kind::ERROR => Message::Error(error(reader)?),
        kind::SNAPSHOT => Message::Snapshot(snapshot_request(reader)?),
        kind::SNAPSHOT_ANSWER => Message::SnapshotAnswer(SnapshotResponse { vote: vote(reader)? }),
        kind::CORE_WRITE => Message::CoreWrite(core_body::request(reader)?),
        kind::CORE_WRITE_ANSWER => Message::CoreWriteAnswer(core_body::answer(reader)?),
        kind::CORE_SNAPSHOT => Message::CoreSnapshot(core_body::snapshot(reader)?),
        kind::PING => Message::Ping(ping(reader)?),
        kind::PING_ANSWER => Message::PingAnswer(ping_answer(reader)?),
        kind::COORD_CALL => Message::CoordCall(coord_body(reader)?),
        kind::COORD_CALL_ANSWER => Message::CoordCallAnswer(coord_body(reader)?),
        unknown => return Err(FrameError::UnknownKind(unknown)),
    })
}

/// A coordination call's or answer's body: a u32 length and cairn-coord's encoding, opaque here.
fn coord_body(reader: &mut Reader) -> Result<Bytes, FrameError> {
    let length = reader.u32("coordination body length")? as usize;
    reader.bytes("coordination body", length)
}

// ---------------------------------------------------------------------------------------------
// Handshake and errors.
// ---------------------------------------------------------------------------------------------

fn put_hello(out: &mut BytesMut, hello: &Hello) {
    out.put_u32(HELLO_MAGIC);
    out.put_u16(hello.version_min);
    out.put_u16(hello.version_max);
    out.put_u8(match hello.lane {
        Lane::Control => 0,
        Lane::Data => 1,
    });
    match hello.cluster_id {
        None => out.put_u8(0),
        Some(ClusterId(id)) => {
            out.put_u8(1);
            out.put_slice(&id);
        }
    }
    out.put_u64(hello.node_id);
    out.put_u64(hello.incarnation);
}

fn hello(reader: &mut Reader) -> Result<Hello, FrameError> {
    if reader.u32("hello magic")? != HELLO_MAGIC {
        return Err(FrameError::Invalid { what: "hello magic" });
    }
    let version_min = reader.u16("version_min")?;
    let version_max = reader.u16("version_max")?;
    if version_min > version_max {
        return Err(FrameError::Invalid { what: "hello version range" });
    }
    let lane = match reader.u8("lane")? {
        0 => Lane::Control,
        1 => Lane::Data,
        _ => return Err(FrameError::Invalid { what: "lane" }),
    };
    let cluster_id = match reader.flag("cluster id flag")? {
        false => None,
        true => Some(ClusterId(reader.fixed("cluster id")?)),
    };
    let node_id = reader.u64("node_id")?;
    let incarnation = reader.u64("incarnation")?;
    Ok(Hello { version_min, version_max, lane, cluster_id, node_id, incarnation })
}

fn goodbye(reader: &mut Reader) -> Result<Goodbye, FrameError> {
    let reason = match reader.u16("goodbye reason")? {
        1 => GoodbyeReason::WrongCluster,
        2 => GoodbyeReason::Version,
        3 => GoodbyeReason::WrongNode,
        4 => GoodbyeReason::Protocol,
        5 => GoodbyeReason::ShuttingDown,
        _ => return Err(FrameError::Invalid { what: "goodbye reason" }),
    };
    Ok(Goodbye { reason, message: text(reader)? })
}

fn put_error(out: &mut BytesMut, error: &ErrorAnswer) {
    out.put_u16(error.code as u16);
    put_text(out, &error.message);
}

fn error(reader: &mut Reader) -> Result<ErrorAnswer, FrameError> {
    let code = match reader.u16("error code")? {
        1 => ErrorCode::Busy,
        2 => ErrorCode::Failed,
        3 => ErrorCode::Unsupported,
        _ => return Err(FrameError::Invalid { what: "error code" }),
    };
    Ok(ErrorAnswer { code, message: text(reader)? })
}

/// Writes `text`, cut to `PEER_MESSAGE_BYTES_MAX` bytes at a character boundary.
fn put_text(out: &mut BytesMut, text: &str) {
    let mut end = text.len().min(PEER_MESSAGE_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    // At most PEER_MESSAGE_BYTES_MAX, far below u16::MAX.
    out.put_u16(end as u16);
    out.put_slice(&text.as_bytes()[..end]);
}

fn text(reader: &mut Reader) -> Result<String, FrameError> {
    let length = usize::from(reader.u16("text length")?);
    if length > PEER_MESSAGE_BYTES_MAX {
        let max = PEER_MESSAGE_BYTES_MAX as u64;
        return Err(FrameError::Count { what: "text bytes", count: length as u64, max });
    }
    let bytes = reader.bytes("text", length)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| FrameError::Invalid { what: "text" })
}

// ---------------------------------------------------------------------------------------------
// Votes and log ids.
// ---------------------------------------------------------------------------------------------

pub(crate) fn put_vote(out: &mut BytesMut, vote: &Vote) {
    out.put_u64(vote.leader_id.term);
    out.put_u64(vote.leader_id.voted_for);
    out.put_u8(u8::from(vote.committed));
}

pub(crate) fn vote(reader: &mut Reader) -> Result<Vote, FrameError> {
    let term = reader.u64("vote term")?;
    let voted_for = reader.u64("vote node")?;
    let committed = reader.flag("vote committed")?;
    Ok(Vote { leader_id: LeaderId { term, voted_for }, committed })
}

fn put_log_id(out: &mut BytesMut, log_id: Option<&LogId>) {
    match log_id {
        None => out.put_u8(0),
        Some(log_id) => {
            out.put_u8(1);
            out.put_u64(log_id.leader_id.term);
            out.put_u64(log_id.index);
        }
    }
}

fn log_id(reader: &mut Reader) -> Result<Option<LogId>, FrameError> {
    if !reader.flag("log id flag")? {
        return Ok(None);
    }
    let term = reader.u64("log id term")?;
    let index = reader.u64("log id index")?;
    Ok(Some(crate::entry::log_id(term, index)))
}

fn put_vote_request(out: &mut BytesMut, request: &VoteRequest) {
    put_vote(out, &request.vote);
    put_log_id(out, request.last_log_id.as_ref());
    out.put_u8(u8::from(request.leadership_transfer));
}

fn vote_request(reader: &mut Reader) -> Result<VoteRequest, FrameError> {
    let vote = vote(reader)?;
    let last_log_id = log_id(reader)?;
    let leadership_transfer = reader.flag("leadership transfer")?;
    Ok(VoteRequest { vote, last_log_id, leadership_transfer })
}

fn put_vote_response(out: &mut BytesMut, response: &VoteResponse) {
    put_vote(out, &response.vote);
    out.put_u8(u8::from(response.vote_granted));
    put_log_id(out, response.last_log_id.as_ref());
}

fn vote_response(reader: &mut Reader) -> Result<VoteResponse, FrameError> {
    let vote = vote(reader)?;
    let vote_granted = reader.flag("vote granted")?;
    let last_log_id = log_id(reader)?;
    Ok(VoteResponse { vote, vote_granted, last_log_id })
}

// ---------------------------------------------------------------------------------------------
// AppendEntries and heartbeats.
// ---------------------------------------------------------------------------------------------

/// The least bytes one entry takes in a body: its overhead and a batch header.
const ENTRY_BYTES_MIN: usize = PEER_ENTRY_OVERHEAD_BYTES as usize + HEADER_BYTES;

/// The least bytes one heartbeat takes: group, vote, and two absent log ids.
const HEARTBEAT_BYTES_MIN: usize = 8 + 13 + 1 + 1;

/// The least bytes one heartbeat answer takes: group and kind.
const HEARTBEAT_ANSWER_BYTES_MIN: usize = 8 + 2;

/// The fields of an AppendEntries around its entries.
fn put_append_head(out: &mut BytesMut, request: &AppendRequest) {
    put_vote(out, &request.vote);
    put_log_id(out, request.prev_log_id.as_ref());
    put_log_id(out, request.leader_commit.as_ref());
}

fn append_head(reader: &mut Reader) -> Result<AppendRequest, FrameError> {
    let vote = vote(reader)?;
    let prev_log_id = log_id(reader)?;
    let leader_commit = log_id(reader)?;
    Ok(AppendRequest { vote, prev_log_id, entries: Vec::new(), leader_commit })
}

fn put_append_request(out: &mut BytesMut, request: &AppendRequest) -> Result<(), FrameError> {
    put_append_head(out, request);
    let count = u32::try_from(request.entries.len()).map_err(|_| FrameError::TooLarge {
        length: request.entries.len() as u64,
        max: PEER_FRAME_BYTES_MAX,
    })?;
    out.put_u32(count);
    for entry in &request.entries {
        put_entry(out, entry)?;
        if out.len() > PEER_FRAME_BYTES_MAX as usize + 4 {
            return Err(FrameError::TooLarge {
                length: out.len() as u64,
                max: PEER_FRAME_BYTES_MAX,
            });
        }
    }
    Ok(())
}

/// Writes an entry as its log id and stored batch; refuses one whose batch is not stamped with
/// its term (not read from a log).
fn put_entry(out: &mut BytesMut, entry: &RaftEntry) -> Result<(), FrameError> {
    let index = entry.index();
    let batch = codec::encode(entry, 0).map_err(|source| FrameError::Entry { index, source })?;
    let header = BatchHeader::parse(&batch, BATCH_BYTES_MAX)
        .map_err(|e| FrameError::Entry { index, source: e.into() })?;
    if epoch::term_of(header.partition_leader_epoch).ok() != Some(entry.term()) {
        return Err(FrameError::EntryNotStored { index });
    }
    out.put_u64(entry.term());
    out.put_u64(index);
    // A valid batch: at most BATCH_BYTES_MAX, a u32.
    out.put_u32(batch.len() as u32);
    out.put_slice(&batch);
    Ok(())
}

fn append_request(reader: &mut Reader) -> Result<AppendRequest, FrameError> {
    let mut request = append_head(reader)?;
    let count = reader.count("entries", ENTRY_BYTES_MIN, u64::from(u32::MAX))?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let term = reader.u64("entry term")?;
        let index = reader.u64("entry index")?;
        let length = reader.u32("entry length")? as usize;
        let batch = reader.bytes("entry batch", length)?;
        let log_id = crate::entry::log_id(term, index);
        let entry =
            codec::decode(batch, log_id).map_err(|source| FrameError::Entry { index, source })?;
        entries.push(entry);
    }
    request.entries = entries;
    Ok(request)
}

fn put_append_response(out: &mut BytesMut, response: &AppendResponse) {
    match response {
        AppendResponse::Success => out.put_u8(0),
        AppendResponse::PartialSuccess(log_id) => {
            out.put_u8(1);
            put_log_id(out, log_id.as_ref());
        }
        AppendResponse::Conflict => out.put_u8(2),
        AppendResponse::HigherVote(vote) => {
            out.put_u8(3);
            put_vote(out, vote);
        }
    }
}

fn append_response(reader: &mut Reader) -> Result<AppendResponse, FrameError> {
    Ok(match reader.u8("append answer")? {
        0 => AppendResponse::Success,
        1 => AppendResponse::PartialSuccess(log_id(reader)?),
        2 => AppendResponse::Conflict,
        3 => AppendResponse::HigherVote(vote(reader)?),
        _ => return Err(FrameError::Invalid { what: "append answer" }),
    })
}

/// A count of a batched frame's items, refused above [`PEER_HEARTBEATS_GROUPS_MAX`].
fn put_item_count(out: &mut BytesMut, count: usize) -> Result<(), FrameError> {
    let max = u64::from(PEER_HEARTBEATS_GROUPS_MAX);
    if count as u64 > max {
        return Err(FrameError::Count { what: "heartbeats", count: count as u64, max });
    }
    // At most PEER_HEARTBEATS_GROUPS_MAX.
    out.put_u32(count as u32);
    Ok(())
}

fn put_heartbeats(out: &mut BytesMut, heartbeats: &[Heartbeat]) -> Result<(), FrameError> {
    put_item_count(out, heartbeats.len())?;
    for heartbeat in heartbeats {
        if !heartbeat.request.entries.is_empty() {
            return Err(FrameError::Invalid { what: "heartbeat with entries" });
        }
        out.put_u64(heartbeat.group);
        put_append_head(out, &heartbeat.request);
    }
    Ok(())
}

fn heartbeats(reader: &mut Reader) -> Result<Vec<Heartbeat>, FrameError> {
    let max = u64::from(PEER_HEARTBEATS_GROUPS_MAX);
    let count = reader.count("heartbeats", HEARTBEAT_BYTES_MIN, max)?;
    let mut heartbeats = Vec::with_capacity(count);
    for _ in 0..count {
        let group = reader.u64("heartbeat group")?;
        heartbeats.push(Heartbeat { group, request: append_head(reader)? });
    }
    Ok(heartbeats)
}

/// A ping's group count, at most [`PEER_QUIESCED_GROUPS_MAX`].
fn put_ping_count(out: &mut BytesMut, count: usize) -> Result<(), FrameError> {
    let max = u64::from(PEER_QUIESCED_GROUPS_MAX);
    if count as u64 > max {
        return Err(FrameError::Count { what: "led groups", count: count as u64, max });
    }
    // At most PEER_QUIESCED_GROUPS_MAX.
    out.put_u32(count as u32);
    Ok(())
}

fn put_ping(out: &mut BytesMut, ping: &Ping) -> Result<(), FrameError> {
    out.put_u64(ping.from);
    put_ping_count(out, ping.led.len())?;
    for LedGroup { group, term, quiesced } in &ping.led {
        out.put_u64(*group);
        out.put_u64(*term);
        out.put_u8(u8::from(*quiesced));
    }
    Ok(())
}

fn ping(reader: &mut Reader) -> Result<Ping, FrameError> {
    let from = reader.u64("ping sender")?;
    let max = u64::from(PEER_QUIESCED_GROUPS_MAX);
    let count = reader.count("led groups", 17, max)?;
    let mut led = Vec::with_capacity(count);
    for _ in 0..count {
        let group = reader.u64("led group")?;
        let term = reader.u64("led term")?;
        let quiesced = match reader.u8("quiesced flag")? {
            0 => false,
            1 => true,
            _ => return Err(FrameError::Invalid { what: "quiesced flag" }),
        };
        led.push(LedGroup { group, term, quiesced });
    }
    Ok(Ping { from, led })
}

fn put_ping_answer(out: &mut BytesMut, answer: &PingAnswer) -> Result<(), FrameError> {
    put_ping_count(out, answer.refused.len())?;
    for group in &answer.refused {
        out.put_u64(*group);
    }
    Ok(())
}

fn ping_answer(reader: &mut Reader) -> Result<PingAnswer, FrameError> {
    let max = u64::from(PEER_QUIESCED_GROUPS_MAX);
    let count = reader.count("refused groups", 8, max)?;
    let mut refused = Vec::with_capacity(count);
    for _ in 0..count {
        refused.push(reader.u64("refused group")?);
    }
    Ok(PingAnswer { refused })
}

fn put_heartbeat_answers(
    out: &mut BytesMut,
    answers: &[HeartbeatAnswer],
) -> Result<(), FrameError> {
    put_item_count(out, answers.len())?;
    for HeartbeatAnswer { group, answer } in answers {
        out.put_u64(*group);
        match answer {
            GroupAnswer::Append(response) => {
                out.put_u16(kind::APPEND_ANSWER);
                put_append_response(out, response);
            }
            GroupAnswer::UnknownGroup => out.put_u16(kind::UNKNOWN_GROUP),
            GroupAnswer::Error(error) => {
                out.put_u16(kind::ERROR);
                put_error(out, error);
            }
        }
    }
    Ok(())
}

fn heartbeat_answers(reader: &mut Reader) -> Result<Vec<HeartbeatAnswer>, FrameError> {
    let max = u64::from(PEER_HEARTBEATS_GROUPS_MAX);
    let count = reader.count("heartbeat answers", HEARTBEAT_ANSWER_BYTES_MIN, max)?;
    let mut answers = Vec::with_capacity(count);
    for _ in 0..count {
        let group = reader.u64("heartbeat answer group")?;
        let answer = match reader.u16("heartbeat answer kind")? {
            kind::APPEND_ANSWER => GroupAnswer::Append(append_response(reader)?),
            kind::UNKNOWN_GROUP => GroupAnswer::UnknownGroup,
            kind::ERROR => GroupAnswer::Error(error(reader)?),
            _ => return Err(FrameError::Invalid { what: "heartbeat answer kind" }),
        };
        answers.push(HeartbeatAnswer { group, answer });
    }
    Ok(answers)
}

// ---------------------------------------------------------------------------------------------
// Snapshots.
// ---------------------------------------------------------------------------------------------

/// Writes a snapshot: vote, last log id, the membership (flag; if 1: its log id, a u16 length
/// and the `Members` encoding), the log start offset, the producers (u32 length, bytes). A
/// membership without a log id is openraft's empty default and is written as absent.
fn put_snapshot_request(out: &mut BytesMut, request: &SnapshotRequest) {
    put_vote(out, &request.vote);
    put_snapshot_meta(out, &request.meta);
    out.put_u64(request.data.log_start_offset.0);
    // At most PRODUCER_STATE_BYTES_MAX: far below u32::MAX.
    out.put_u32(request.data.producers.len() as u32);
    out.put_slice(&request.data.producers);
}

/// Writes a snapshot's meta: its last log id and its membership (see
/// [`put_snapshot_request`]); a core snapshot's too.
pub(crate) fn put_snapshot_meta(out: &mut BytesMut, meta: &SnapshotMeta) {
    put_log_id(out, meta.last_log_id.as_ref());
    let stored = &meta.last_membership;
    let members = Members::from_membership(stored.membership());
    match (stored.log_id(), members) {
        (Some(log_id), Ok(members)) => {
            out.put_u8(1);
            out.put_u64(log_id.leader_id.term);
            out.put_u64(log_id.index);
            let bytes = members.encode();
            // RAFT_MEMBERSHIP_NODES_MAX keeps an encoding far below u16::MAX bytes.
            out.put_u16(bytes.len() as u16);
            out.put_slice(&bytes);
        }
        // openraft's empty default, or a membership cairn never stores (refused on install).
        _ => out.put_u8(0),
    }
}

fn snapshot_request(reader: &mut Reader) -> Result<SnapshotRequest, FrameError> {
    let vote = vote(reader)?;
    let meta = snapshot_meta(reader)?;
    let log_start_offset = cairn_types::Offset(reader.u64("log start offset")?);
    let length = reader.u32("producers length")? as usize;
    if length > PRODUCER_STATE_BYTES_MAX {
        return Err(FrameError::Invalid { what: "producers length" });
    }
    let producers = reader.bytes("producers", length)?;
    Ok(SnapshotRequest { vote, meta, data: PartitionSnapshot { log_start_offset, producers } })
}

/// Reads [`put_snapshot_meta`]'s fields.
pub(crate) fn snapshot_meta(reader: &mut Reader) -> Result<SnapshotMeta, FrameError> {
    let last_log_id = log_id(reader)?;
    let last_membership = if reader.flag("snapshot membership flag")? {
        let term = reader.u64("membership term")?;
        let index = reader.u64("membership index")?;
        let length = usize::from(reader.u16("membership length")?);
        let bytes = reader.bytes("membership", length)?;
        let members =
            Members::decode(&bytes).map_err(|_| FrameError::Invalid { what: "membership" })?;
        let log_id = crate::entry::log_id(term, index);
        openraft::StoredMembership::new(Some(log_id), members.to_membership())
    } else {
        openraft::StoredMembership::default()
    };
    Ok(SnapshotMeta { last_log_id, last_membership })
}
