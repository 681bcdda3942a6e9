//! The node-to-node transport (RFC 0003 §6): the frame codec and the peer connections that
//! carry Raft's messages between nodes.
//!
//! - [`frame`]: the frame (`length | crc32c | kind | version | correlation | group | ttl_ms |
//!   body`), checked before anything is allocated for it; [`body`]: the messages it carries
//!   ([`Message`]), cairn's own encoding of openraft's requests and answers; [`core_body`]: the
//!   consistent core's own messages (a forwarded write and its answer, the core's snapshot).
//! - [`fuzzing`]: the body of the `peer_frame` fuzz target and its seed frames.

mod backoff;
pub mod body;
mod conn;
pub mod core_body;
pub mod frame;
pub mod fuzzing;
mod handshake;
mod node;
mod router;
mod stats;
mod transport;

pub use backoff::Backoff;
pub use body::{
    AppendRequest, AppendResponse, ClusterId, ErrorAnswer, ErrorCode, Goodbye, GoodbyeReason,
    GroupAnswer, Heartbeat, HeartbeatAnswer, Hello, Lane, LedGroup, Message, Ping, PingAnswer,
    SnapshotMeta, SnapshotRequest, SnapshotResponse, Vote, VoteRequest, VoteResponse,
};
pub use conn::{CallError, PendingCall, Unreachable};
pub use core_body::{CoreAnswer, CoreRefusal, CoreSnapshotRequest};
pub use frame::{Frame, FrameError};
pub use node::{PeerClient, PeerConfig, PeerNode};
pub use router::{
    GroupHandler, GroupRequest, HandlerFuture, PingHandler, Request, Response, Router,
};
pub use stats::PeerStats;
pub use transport::{Listener, Tcp, Transport};
