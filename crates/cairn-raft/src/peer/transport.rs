//! [`Transport`]: how a node reaches its peers (dial, accept, byte streams), so that the peer
//! connections run unchanged over TCP ([`Tcp`]) and, in the simulator, over turmoil's network.

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// Dials peers and accepts their connections.
///
/// Obligations: a stream delivers bytes in order or fails; `dial` and `accept` may be
/// cancelled (dropped) at any await point without leaking a connection.
pub trait Transport: Send + Sync + 'static {
    /// A connected byte stream.
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// Accepts connections on the node's peer address.
    type Listener: Listener<Stream = Self::Stream>;

    /// Connects to a peer's listener at `address` (`host:port`).
    fn dial(&self, address: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// The accepting side of a [`Transport`].
pub trait Listener: Send + 'static {
    /// A connected byte stream.
    type Stream;

    /// The next connection and its remote address (for logs).
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, String)>> + Send;
}

/// The production transport: TCP with `TCP_NODELAY` (frames are written whole; Nagle's
/// algorithm would only delay votes and heartbeats).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tcp;

impl Transport for Tcp {
    type Stream = TcpStream;
    type Listener = TcpListener;

    async fn dial(&self, address: &str) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, String)> {
        let (stream, remote) = TcpListener::accept(self).await?;
        stream.set_nodelay(true)?;
        Ok((stream, remote.to_string()))
    }
}
