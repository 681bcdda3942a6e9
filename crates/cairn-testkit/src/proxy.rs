//! [`FaultProxy`]: a TCP proxy on 127.0.0.1 between two peers whose faults are switched while
//! it runs, so that tests can cut, blackhole or slow the peer links of real processes (each node
//! is told the proxy's address for its peer).
//!
//! It runs on a thread of its own with its own single-threaded runtime, so that synchronous
//! tests and tokio tests use it alike; dropping it stops the thread and closes every
//! connection.
//!
//! Faults apply to bytes as they are read, per direction ("forward" is from the side that
//! connected to the proxy to the target):
//! - [`Fault::Pass`]: bytes go through.
//! - [`Fault::Drop`]: a blackhole, one way or both: bytes are read and discarded, connections
//!   stay open (so the peers see silence, not a reset, and a stream resumed later is missing
//!   bytes: what the peers make of it is under test too).
//! - [`Fault::Delay`]: each chunk is held for a while before it is written (order kept).
//! - [`Fault::Reject`]: new connections are closed as soon as they are accepted, so a dialer
//!   keeps failing until the fault is lifted.
//!
//! [`FaultProxy::cut`] closes every open connection once, whatever the fault.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Bytes a proxy reads (and forwards) at a time in each direction.
const CHUNK_BYTES: usize = 64 * 1024;

/// Which way a [`Fault::Drop`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the side that connected to the proxy to the target.
    Forward,
    /// From the target back to the side that connected.
    Backward,
    /// Both ways.
    Both,
}

impl Direction {
    fn covers(self, forward: bool) -> bool {
        match self {
            Direction::Both => true,
            Direction::Forward => forward,
            Direction::Backward => !forward,
        }
    }
}

/// What the proxy does to the traffic, from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// Discard the bytes going `Direction`; connections stay open.
    Drop(Direction),
    /// Hold every chunk this long before forwarding it.
    Delay(Duration),
    /// Close new connections at once (open ones are left alone: [`FaultProxy::cut`] them).
    Reject,
}

/// The state the proxy's tasks watch.
struct Control {
    fault: watch::Sender<Fault>,
    /// Bumped by every cut: a connection ends when it changes.
    cuts: watch::Sender<u64>,
    /// Set once, when the proxy is dropped.
    stop: watch::Sender<bool>,
    /// Connections accepted so far.
    accepted: AtomicU64,
    /// Connections open now.
    open: AtomicU64,
}

/// A TCP proxy on 127.0.0.1 to one target, with switchable faults.
pub struct FaultProxy {
    address: SocketAddr,
    target: SocketAddr,
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("address", &self.address)
            .field("target", &self.target)
            .field("fault", &*self.control.fault.borrow())
            .finish()
    }
}

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `target`, passing everything.
    ///
    /// # Panics
    /// If no loopback port can be bound or the thread cannot start.
    #[must_use]
    pub fn start(target: SocketAddr) -> FaultProxy {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let address = listener.local_addr().expect("the proxy's address");
        let control = Arc::new(Control {
            fault: watch::Sender::new(Fault::Pass),
            cuts: watch::Sender::new(0),
            stop: watch::Sender::new(false),
            accepted: AtomicU64::new(0),
            open: AtomicU64::new(0),
        });
        let shared = Arc::clone(&control);
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", address.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the proxy's runtime");
                runtime.block_on(accept_loop(listener, target, shared));
            })
            .expect("start the proxy's thread");
        FaultProxy { address, target, control, thread: Some(thread) }
    }

    /// Where peers connect: they reach the target through it.
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Switches the fault; it applies to the next bytes read and the next connections.
    pub fn set(&self, fault: Fault) {
        self.control.fault.send_replace(fault);
    }

    /// The fault in force.
    #[must_use]
    pub fn fault(&self) -> Fault {
        *self.control.fault.borrow()
    }

    /// Closes every open connection (both sides see it closed); new ones are accepted as the
    /// fault says.
    pub fn cut(&self) {
        self.control.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// Connections accepted since the start.
    #[must_use]
    pub fn accepted(&self) -> u64 {
        self.control.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    #[must_use]
    pub fn open(&self) -> u64 {
        self.control.open.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.control.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: StdListener, target: SocketAddr, control: Arc<Control>) {
    let listener = TcpListener::from_std(listener).expect("a tokio listener");
    let mut stop = control.stop.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let Ok((client, _)) = accepted else { continue };
        control.accepted.fetch_add(1, Ordering::SeqCst);
        if *control.fault.borrow() == Fault::Reject {
            drop(client);
            continue;
        }
        tokio::spawn(proxy_connection(client, target, Arc::clone(&control)));
    }
}

/// Carries one connection both ways until either side closes, a cut, or the proxy stops.
async fn proxy_connection(client: TcpStream, target: SocketAddr, control: Arc<Control>) {
    let Ok(server) = TcpStream::connect(target).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    control.open.fetch_add(1, Ordering::SeqCst);
    let mut cuts = control.cuts.subscribe();
    cuts.mark_unchanged();
    let mut stop = control.stop.subscribe();
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pump(client_read, server_write, true, &control) => {}
        () = pump(server_read, client_write, false, &control) => {}
        _ = cuts.changed() => {}
        _ = stop.wait_for(|stop| *stop) => {}
    }
    control.open.fetch_sub(1, Ordering::SeqCst);
}

/// Copies one direction, applying the fault in force to each chunk.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, forward: bool, control: &Control) {
    let mut buffer = vec![0; CHUNK_BYTES];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let fault = *control.fault.borrow();
        match fault {
            Fault::Drop(direction) if direction.covers(forward) => continue,
            Fault::Delay(delay) => tokio::time::sleep(delay).await,
            Fault::Pass | Fault::Drop(_) | Fault::Reject => {}
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
