//! Kafka requests on a raw TCP stream, for the tests of the server itself: a frame is built
//! byte for byte (so a test can corrupt it), and a response is read within a bound.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a response may take to arrive whole.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request frame: the length prefix, a header (client id `test`) and `body`, encoded at
/// `version`.
///
/// # Panics
///
/// If `body` cannot be encoded at `version`.
#[must_use]
pub fn request_frame(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &impl Encodable,
) -> Vec<u8> {
    let mut buffer = BytesMut::new();
    buffer.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("test")))
        .encode(&mut buffer, api_key.request_header_version(version))
        .expect("a request header encodes");
    body.encode(&mut buffer, version).expect("the body encodes at this version");
    let length = i32::try_from(buffer.len() - 4).expect("a test frame is under 2 GiB");
    buffer[..4].copy_from_slice(&length.to_be_bytes());
    buffer.to_vec()
}

/// Reads one response frame to an `api_key` request at `version` within [`RESPONSE_TIMEOUT`];
/// returns its correlation id and the body after the header.
///
/// # Panics
///
/// If the response does not arrive whole in time or its header does not decode.
pub async fn read_response(stream: &mut TcpStream, api_key: ApiKey, version: i16) -> (i32, Bytes) {
    let read = async {
        let length = stream.read_i32().await.expect("a response length");
        let length = usize::try_from(length).expect("a non-negative response length");
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.expect("a whole response");
        Bytes::from(body)
    };
    let mut body = tokio::time::timeout(RESPONSE_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| panic!("no {api_key:?} response within {RESPONSE_TIMEOUT:?}"));
    let header = ResponseHeader::decode(&mut body, api_key.response_header_version(version))
        .expect("a response header");
    (header.correlation_id, body)
}

/// One connection sending one request at a time, each with the next correlation id.
#[derive(Debug)]
pub struct Connection {
    /// The stream, for a test that writes to it directly.
    pub stream: TcpStream,
    correlation_id: i32,
}

impl Connection {
    /// Connects to `addr`.
    ///
    /// # Panics
    ///
    /// If the connection is refused.
    pub async fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr).await.expect("connect to the node");
        Connection { stream, correlation_id: 0 }
    }

    /// Sends `body` as `api_key` at `version` and decodes the response.
    ///
    /// # Panics
    ///
    /// If sending fails, the response does not arrive in time, answers another request or
    /// does not decode.
    pub async fn call<T: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &impl Encodable,
    ) -> T {
        self.correlation_id += 1;
        let frame = request_frame(api_key, version, self.correlation_id, body);
        self.stream.write_all(&frame).await.expect("send the request");
        let (correlation_id, mut body) = read_response(&mut self.stream, api_key, version).await;
        assert_eq!(correlation_id, self.correlation_id, "the response to the request sent");
        T::decode(&mut body, version).expect("the response decodes")
    }
}
