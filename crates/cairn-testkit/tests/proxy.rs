//! [`FaultProxy`] between a client and an echo server on 127.0.0.1: each fault does what it
//! says, switched while connections are open. Silence is checked against a short deadline (a
//! read that must not complete), never by sleeping.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cairn_testkit::{Direction, Fault, FaultProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a read must stay silent for a dropped byte to count as dropped.
const SILENCE: Duration = Duration::from_millis(200);

/// The longest a byte that should go through may take.
const WAIT: Duration = Duration::from_secs(10);

/// An echo server; returns its address.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0; 1024];
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 || stream.write_all(&buffer[..read]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

/// Sends `byte` and returns what came back within `within`, `None` if nothing did.
async fn round_trip(stream: &mut TcpStream, byte: u8, within: Duration) -> Option<u8> {
    stream.write_all(&[byte]).await.expect("write");
    let mut answer = [0];
    match tokio::time::timeout(within, stream.read(&mut answer)).await {
        Ok(Ok(1)) => Some(answer[0]),
        Ok(Ok(_) | Err(_)) => panic!("the connection closed"),
        Err(_) => None,
    }
}

/// Whether the stream ends (EOF or reset) within [`WAIT`].
async fn ends(stream: &mut TcpStream) -> bool {
    let mut buffer = [0; 16];
    matches!(tokio::time::timeout(WAIT, stream.read(&mut buffer)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn passes_then_drops_one_way_or_both_and_resumes() {
    let proxy = FaultProxy::start(echo().await);
    let mut client = TcpStream::connect(proxy.address()).await.expect("connect");
    assert_eq!(round_trip(&mut client, 1, WAIT).await, Some(1));
    for direction in [Direction::Forward, Direction::Backward, Direction::Both] {
        proxy.set(Fault::Drop(direction));
        assert_eq!(round_trip(&mut client, 2, SILENCE).await, None, "{direction:?}");
        proxy.set(Fault::Pass);
        // Forward drops lose the byte; backward drops lose its echo: either way only the
        // next byte comes back.
        assert_eq!(round_trip(&mut client, 3, WAIT).await, Some(3), "{direction:?}");
    }
    assert_eq!((proxy.accepted(), proxy.open()), (1, 1));
}

#[tokio::test]
async fn delays_each_way() {
    let proxy = FaultProxy::start(echo().await);
    let mut client = TcpStream::connect(proxy.address()).await.expect("connect");
    assert_eq!(round_trip(&mut client, 1, WAIT).await, Some(1));
    let delay = Duration::from_millis(150);
    proxy.set(Fault::Delay(delay));
    let started = Instant::now();
    assert_eq!(round_trip(&mut client, 2, WAIT).await, Some(2));
    assert!(started.elapsed() >= 2 * delay, "{:?}", started.elapsed());
}

#[tokio::test]
async fn cut_closes_open_connections_and_reject_refuses_new_ones() {
    let proxy = FaultProxy::start(echo().await);
    let mut first = TcpStream::connect(proxy.address()).await.expect("connect");
    assert_eq!(round_trip(&mut first, 1, WAIT).await, Some(1));
    proxy.set(Fault::Reject);
    proxy.cut();
    assert!(ends(&mut first).await, "cut");
    let mut rejected = TcpStream::connect(proxy.address()).await.expect("connect");
    assert!(ends(&mut rejected).await, "rejected");
    proxy.set(Fault::Pass);
    let mut healed = TcpStream::connect(proxy.address()).await.expect("connect");
    assert_eq!(round_trip(&mut healed, 4, WAIT).await, Some(4));
    assert_eq!(proxy.accepted(), 3);
}
