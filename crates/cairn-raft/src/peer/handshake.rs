//! The handshake that opens every peer connection (RFC 0003 §6): the dialer sends `Hello`, the
//! acceptor checks it and answers with its own `Hello` or a `Goodbye { reason }`, and the dialer
//! checks the acceptor's. Refused: another cluster id (a node without one yet accepts any),
//! version ranges that do not overlap, and the wrong node (not the one the dialer meant, not a
//! peer of the acceptor, or the one of the pair that should be accepting: the lower id dials).
//!
//! Before a handshake is accepted a frame may be at most `PEER_HANDSHAKE_FRAME_BYTES_MAX`
//! bytes, so an unauthenticated connection cannot make a node allocate more.

use std::fmt;
use std::io;

use cairn_types::limits::PEER_HANDSHAKE_FRAME_BYTES_MAX;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::peer::body::{ClusterId, Goodbye, GoodbyeReason, Hello, Lane, Message};
use crate::peer::conn::{ReadError, read_frame};
use crate::peer::frame::{self, Frame, FrameError, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN};

/// Who this node is, as its `Hello` says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Identity {
    pub(crate) cluster_id: Option<ClusterId>,
    pub(crate) node_id: u64,
    pub(crate) incarnation: u64,
}

impl Identity {
    fn hello(&self, lane: Lane) -> Hello {
        Hello {
            version_min: PROTOCOL_VERSION_MIN,
            version_max: PROTOCOL_VERSION_MAX,
            lane,
            cluster_id: self.cluster_id,
            node_id: self.node_id,
            incarnation: self.incarnation,
        }
    }
}

/// Why a handshake failed.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// The stream failed or closed.
    Io(io::Error),
    /// The peer's bytes are not a handshake frame.
    Frame(FrameError),
    /// The peer sent something else than `Hello` or `Goodbye` first.
    Unexpected(u16),
    /// This node refused the peer (and told it so).
    Refused {
        /// What it told the peer.
        goodbye: Goodbye,
        /// The node id the peer's `Hello` claimed.
        node: u64,
    },
    /// The peer refused this node.
    RefusedByPeer(Goodbye),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(error) => write!(f, "{error}"),
            HandshakeError::Frame(error) => write!(f, "not a handshake frame: {error}"),
            HandshakeError::Unexpected(kind) => write!(f, "frame kind {kind} before the handshake"),
            HandshakeError::Refused { goodbye, .. } => {
                write!(f, "refused ({:?}): {}", goodbye.reason, goodbye.message)
            }
            HandshakeError::RefusedByPeer(goodbye) => {
                write!(f, "refused by the peer ({:?}): {}", goodbye.reason, goodbye.message)
            }
        }
    }
}

/// The peer's `Hello` and the version both speak.
#[derive(Clone, Debug)]
pub(crate) struct Agreed {
    pub(crate) hello: Hello,
    pub(crate) version: u16,
}

/// The dialer's side: this node dialed `expected` for `lane`.
pub(crate) async fn dial<S>(
    stream: &mut S,
    me: &Identity,
    lane: Lane,
    expected: u64,
) -> Result<Agreed, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    send(stream, Message::Hello(me.hello(lane))).await?;
    let hello = match receive(stream).await? {
        Message::Hello(hello) => hello,
        Message::Goodbye(goodbye) => return Err(HandshakeError::RefusedByPeer(goodbye)),
        other => return Err(HandshakeError::Unexpected(other.kind())),
    };
    let checked = check(me, &hello).and_then(|version| {
        if hello.node_id != expected {
            let message = format!("dialed node {expected}, node {} answered", hello.node_id);
            return Err(Goodbye { reason: GoodbyeReason::WrongNode, message });
        }
        if hello.lane != lane {
            let message = format!("dialed the {lane:?} lane, the peer answered {:?}", hello.lane);
            return Err(Goodbye { reason: GoodbyeReason::Protocol, message });
        }
        Ok(version)
    });
    agree(stream, hello, checked).await
}

/// The acceptor's side: `is_peer` says whether a node id is one of this node's peers.
pub(crate) async fn accept<S>(
    stream: &mut S,
    me: &Identity,
    is_peer: impl Fn(u64) -> bool,
) -> Result<Agreed, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = match receive(stream).await? {
        Message::Hello(hello) => hello,
        other => return Err(HandshakeError::Unexpected(other.kind())),
    };
    let checked = check(me, &hello).and_then(|version| {
        let node = hello.node_id;
        if !is_peer(node) || node == me.node_id {
            let message = format!("node {node} is not a peer of node {}", me.node_id);
            return Err(Goodbye { reason: GoodbyeReason::WrongNode, message });
        }
        if node > me.node_id {
            let message = format!("node {node} dialed node {}: the lower id dials", me.node_id);
            return Err(Goodbye { reason: GoodbyeReason::WrongNode, message });
        }
        Ok(version)
    });
    let agreed = agree(stream, hello, checked).await?;
    send(stream, Message::Hello(me.hello(agreed.hello.lane))).await?;
    Ok(agreed)
}

/// The checks both sides make: same cluster (or one without an id yet), overlapping versions;
/// the version agreed is the newest both speak.
fn check(me: &Identity, hello: &Hello) -> Result<u16, Goodbye> {
    if let (Some(mine), Some(theirs)) = (me.cluster_id, hello.cluster_id)
        && mine != theirs
    {
        let message = format!("cluster {} here, the peer's is {}", hex(&mine), hex(&theirs));
        return Err(Goodbye { reason: GoodbyeReason::WrongCluster, message });
    }
    let version = PROTOCOL_VERSION_MAX.min(hello.version_max);
    if version < PROTOCOL_VERSION_MIN.max(hello.version_min) {
        let message = format!(
            "versions {PROTOCOL_VERSION_MIN}..={PROTOCOL_VERSION_MAX} here, the peer speaks {}..={}",
            hello.version_min, hello.version_max
        );
        return Err(Goodbye { reason: GoodbyeReason::Version, message });
    }
    Ok(version)
}

/// Sends the `Goodbye` of a refusal, or accepts.
async fn agree<S: AsyncWrite + Unpin>(
    stream: &mut S,
    hello: Hello,
    checked: Result<u16, Goodbye>,
) -> Result<Agreed, HandshakeError> {
    match checked {
        Ok(version) => Ok(Agreed { hello, version }),
        Err(goodbye) => {
            // The refusal stands whether or not the peer hears of it.
            let _ = send(stream, Message::Goodbye(goodbye.clone())).await;
            let _ = stream.shutdown().await;
            Err(HandshakeError::Refused { goodbye, node: hello.node_id })
        }
    }
}

fn hex(id: &ClusterId) -> String {
    id.0.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Writes a handshake frame (version: this build's newest, the one `Hello` announces).
async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    message: Message,
) -> Result<(), HandshakeError> {
    let frame =
        Frame { version: PROTOCOL_VERSION_MAX, correlation: 0, group: 0, ttl_ms: 0, message };
    let bytes = frame::encode(&frame).map_err(HandshakeError::Frame)?;
    stream.write_all(&bytes).await.map_err(HandshakeError::Io)?;
    stream.flush().await.map_err(HandshakeError::Io)
}

/// Reads a handshake frame, at most `PEER_HANDSHAKE_FRAME_BYTES_MAX` bytes.
async fn receive<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Message, HandshakeError> {
    match read_frame(stream, PEER_HANDSHAKE_FRAME_BYTES_MAX).await {
        Ok(Some(frame)) => Ok(frame.message),
        Ok(None) => Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into())),
        Err(ReadError::Io(error)) => Err(HandshakeError::Io(error)),
        Err(ReadError::Frame(error)) => Err(HandshakeError::Frame(error)),
    }
}
