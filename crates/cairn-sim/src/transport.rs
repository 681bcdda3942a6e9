//! [`Turmoil`]: cairn-raft's peer [`Transport`] over turmoil's simulated TCP, so that the peer
//! connections run unchanged in the simulator, where turmoil delays, holds and drops their
//! bytes and partitions their hosts.

use std::io;

use cairn_raft::peer::{Listener, Transport};
use turmoil::net::{TcpListener, TcpStream};

/// The simulator's transport: addresses are `host:port` with turmoil host names.
#[derive(Clone, Copy, Debug, Default)]
pub struct Turmoil;

impl Transport for Turmoil {
    type Stream = TcpStream;
    type Listener = TurmoilListener;

    async fn dial(&self, address: &str) -> io::Result<TcpStream> {
        TcpStream::connect(address).await
    }
}

/// A turmoil listener as the peer transport's [`Listener`].
pub struct TurmoilListener(pub TcpListener);

impl TurmoilListener {
    /// Binds `0.0.0.0:port` on the current simulated host.
    ///
    /// # Errors
    /// turmoil's bind error (the port is taken on this host).
    pub async fn bind(port: u16) -> io::Result<TurmoilListener> {
        Ok(TurmoilListener(TcpListener::bind(("0.0.0.0", port)).await?))
    }
}

impl Listener for TurmoilListener {
    type Stream = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, String)> {
        let (stream, remote) = self.0.accept().await?;
        Ok((stream, remote.to_string()))
    }
}
