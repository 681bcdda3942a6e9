//! [`Client`]: one TCP connection to one broker, one request in flight at a time.
//!
//! - [`Client::connect`] connects within a connect timeout and negotiates versions with
//!   ApiVersions (v3+ carries `client_software_name`/`version`); for every API the client then
//!   uses the highest version both sides support ([`Client::version_of`]).
//! - [`Client::send`] frames a request (size prefix, request header with a fresh correlation id),
//!   and reads the response within the request timeout, checking its size against
//!   [`FRAME_BYTES_MAX`] before allocating and its correlation id before decoding.
//! - [`Client::pipeline`] turns the connection into a [`Pipeline`]: many requests in flight,
//!   answered in order by a reader task.
//!
//! A single connection is enough while cairn runs on one node: every partition's leader is the
//! bootstrap broker. With replication, produce and fetch must go to each partition's leader as
//! Metadata reports it (`MetadataResponsePartition::leader_id` → `MetadataResponseBroker`
//! host/port): the change is a connection per leader, keyed by broker id, and routing each
//! request by its partitions.
//!
//! Responses are trusted to be from a Kafka broker: `kafka-protocol` allocates arrays from the
//! counts on the wire, so a hostile server could make this process abort on allocation. The
//! frame size is checked; the shape of the body is not (the broker's `cairn_kafka::shape` check
//! covers requests only).

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use cairn_types::limits::FRAME_BYTES_MAX;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{ClientError, api_name, io_reason};
use crate::pipeline::Pipeline;

/// The client id sent in every request header unless [`Options::client_id`] says otherwise.
pub const CLIENT_ID_DEFAULT: &str = "cairn-client";

/// Longest wait for the TCP connection to the bootstrap broker.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Longest wait for the response to one request, unless [`Options::request_timeout`] says
/// otherwise.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// How much longer than a request's own `timeout_ms` the client waits for its response, so
/// that the broker's timeout answer (REQUEST_TIMED_OUT) arrives before the client gives up.
pub const RESPONSE_GRACE: Duration = Duration::from_secs(5);

/// Newest Produce version the client uses: all the codec knows (from v13 topics are addressed by
/// id, KIP-516). A separate bound so it can be held back if a broker mishandles a new version.
const PRODUCE_VERSION_MAX: i16 = kafka_protocol::messages::ProduceRequest::VERSIONS.max;

/// Kafka's UNSUPPORTED_VERSION: an ApiVersions request newer than the broker knows.
const UNSUPPORTED_VERSION: i16 = 35;

/// Where to connect, how long to wait, and how to introduce ourselves.
#[derive(Clone, Debug)]
pub struct Options {
    /// `HOST:PORT` of the bootstrap broker.
    pub bootstrap: String,
    /// Longest wait for the TCP connection (and for ApiVersions).
    pub connect_timeout: Duration,
    /// Longest wait for the response to one request (plus [`RESPONSE_GRACE`]); also the
    /// `timeout_ms` callers put in requests ([`Client::request_timeout_ms`]).
    pub request_timeout: Duration,
    /// The client id of every request header, and ApiVersions' `client_software_name`.
    pub client_id: String,
}

impl Options {
    /// Options for `bootstrap` with the default timeouts and client id.
    #[must_use]
    pub fn new(bootstrap: impl Into<String>) -> Options {
        Options {
            bootstrap: bootstrap.into(),
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            client_id: CLIENT_ID_DEFAULT.to_owned(),
        }
    }
}

/// What a connection knows once versions are negotiated; shared by [`Client`] and [`Pipeline`].
#[derive(Debug)]
pub(crate) struct Session {
    /// The address as given, for messages.
    pub broker: String,
    /// Sent in every request header.
    pub client_id: StrBytes,
    /// The broker's supported versions, by API key (from ApiVersions).
    pub broker_versions: HashMap<i16, (i16, i16)>,
    /// See [`Options::request_timeout`].
    pub request_timeout: Duration,
}

impl Session {
    pub fn protocol(&self, reason: String) -> ClientError {
        ClientError::Protocol { broker: self.broker.clone(), reason }
    }

    pub fn request_timeout_ms(&self) -> i32 {
        i32::try_from(self.request_timeout.as_millis()).unwrap_or(i32::MAX)
    }

    /// See [`Client::version_of`].
    pub fn version_of<R: Request>(&self) -> Result<i16, ClientError> {
        let unsupported = || ClientError::Unsupported { broker: self.broker.clone(), api: R::KEY };
        let ours = R::VERSIONS;
        let &(min, max) = self.broker_versions.get(&R::KEY).ok_or_else(unsupported)?;
        let ours_max = if R::KEY == ApiKey::Produce as i16 {
            ours.max.min(PRODUCE_VERSION_MAX)
        } else {
            ours.max
        };
        let version = ours_max.min(max);
        if version < ours.min.max(min) {
            return Err(unsupported());
        }
        Ok(version)
    }

    /// One whole request frame: size prefix, header, body.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] if encoding fails or the frame is larger than
    /// [`FRAME_BYTES_MAX`].
    pub fn encode<R: Request>(
        &self,
        request: &R,
        version: i16,
        correlation_id: i32,
    ) -> Result<BytesMut, ClientError> {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut frame = BytesMut::with_capacity(256);
        frame.put_i32(0);
        let name = api_name(R::KEY);
        header
            .encode(&mut frame, R::header_version(version))
            .and_then(|()| request.encode(&mut frame, version))
            .map_err(|error| self.protocol(format!("encoding {name} v{version}: {error}")))?;
        let length = frame.len() - 4;
        if length > FRAME_BYTES_MAX as usize {
            return Err(self.protocol(format!(
                "{name} request of {length} bytes exceeds the frame limit of {FRAME_BYTES_MAX}"
            )));
        }
        // Fits in an i32: FRAME_BYTES_MAX does.
        frame[..4].copy_from_slice(&(length as i32).to_be_bytes());
        Ok(frame)
    }

    /// Checks a response frame's header (`correlation_id` expected) and returns the body.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] for an undecodable header or another correlation id.
    pub fn body(
        &self,
        mut frame: Bytes,
        api: i16,
        version: i16,
        header_version: i16,
        correlation_id: i32,
    ) -> Result<Bytes, ClientError> {
        let header = ResponseHeader::decode(&mut frame, header_version).map_err(|error| {
            self.protocol(format!("{} v{version} response header: {error}", api_name(api)))
        })?;
        if header.correlation_id != correlation_id {
            return Err(self.protocol(format!(
                "response to {} carries correlation id {}, expected {correlation_id}",
                api_name(api),
                header.correlation_id
            )));
        }
        Ok(frame)
    }

    /// The error for a frame length outside `4..=FRAME_BYTES_MAX`.
    pub fn bad_length(&self, api: i16, length: i32) -> ClientError {
        self.protocol(format!(
            "{} response frame of {length} bytes is outside 4..={FRAME_BYTES_MAX}",
            api_name(api)
        ))
    }
}

/// Reads one response frame (after its size prefix). `Ok(Err(length))` for a size prefix
/// outside `4..=FRAME_BYTES_MAX`, checked before anything is allocated.
pub(crate) async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> io::Result<Result<Bytes, i32>> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await?;
    let length = i32::from_be_bytes(length);
    // A response holds at least its correlation id.
    if length < 4 || length as u32 > FRAME_BYTES_MAX {
        return Ok(Err(length));
    }
    let frame = cairn_protocol::frame::read_body(stream, length as usize).await?;
    Ok(Ok(frame.freeze()))
}

/// Decodes a response body; every byte must be used.
pub(crate) fn decode_body<T: Decodable>(mut body: Bytes, version: i16) -> Result<T, String> {
    let decoded = T::decode(&mut body, version).map_err(|error| format!("v{version}: {error}"))?;
    if !body.is_empty() {
        return Err(format!("v{version}: {} bytes left after the body", body.len()));
    }
    Ok(decoded)
}

/// A connection to one broker with negotiated API versions, one request at a time.
pub struct Client {
    stream: TcpStream,
    session: Session,
    /// Correlation id of the next request.
    correlation_id: i32,
    /// Set when an exchange was interrupted mid-frame: the stream position is unknown, so every
    /// later request fails rather than read a stale response.
    broken: bool,
}

impl Client {
    /// Connects to `options.bootstrap` and negotiates API versions.
    ///
    /// # Errors
    /// [`ClientError::Unreachable`] if no connection can be made within the connect timeout;
    /// any error of the ApiVersions exchange.
    pub async fn connect(options: &Options) -> Result<Client, ClientError> {
        let broker = options.bootstrap.clone();
        let unreachable =
            |reason: String| ClientError::Unreachable { broker: broker.clone(), reason };
        let connecting = async {
            let addresses = tokio::net::lookup_host(&broker).await.map_err(|error| {
                unreachable(format!("cannot resolve the address: {}", io_reason(&error)))
            })?;
            let mut last = unreachable("the address resolves to nothing".to_owned());
            for address in addresses {
                match TcpStream::connect(address).await {
                    Ok(stream) => return Ok(stream),
                    Err(error) => last = unreachable(io_reason(&error)),
                }
            }
            Err(last)
        };
        let stream = match tokio::time::timeout(options.connect_timeout, connecting).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(unreachable(format!(
                    "no connection within {} ms",
                    options.connect_timeout.as_millis()
                )));
            }
        };
        // Small requests and responses: do not wait to coalesce them.
        let _ = stream.set_nodelay(true);
        let mut client = Client {
            stream,
            session: Session {
                broker,
                client_id: StrBytes::from_string(options.client_id.clone()),
                broker_versions: HashMap::new(),
                // ApiVersions is part of connecting.
                request_timeout: options.connect_timeout,
            },
            correlation_id: 0,
            broken: false,
        };
        client.negotiate().await?;
        client.session.request_timeout = options.request_timeout;
        Ok(client)
    }

    /// The broker's address as given.
    #[must_use]
    pub fn broker(&self) -> &str {
        &self.session.broker
    }

    /// The request timeout in ms, for the `timeout_ms` fields of requests (how long the broker
    /// may work on one); the client waits a little longer ([`RESPONSE_GRACE`]) for the answer.
    #[must_use]
    pub fn request_timeout_ms(&self) -> i32 {
        self.session.request_timeout_ms()
    }

    /// Asks ApiVersions, in our newest version first; a broker that does not know it answers
    /// UNSUPPORTED_VERSION in v0 with its own range, and we ask again in its newest.
    async fn negotiate(&mut self) -> Result<(), ClientError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(self.session.client_id.clone())
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let ours = ApiVersionsRequest::VERSIONS;
        let mut version = ours.max;
        let broker = self.session.broker.clone();
        for _ in 0..2 {
            let key = ApiVersionsRequest::KEY;
            let correlation_id = self.write_request(&request, version).await?;
            let frame = self.read_response(key, correlation_id, version, 0).await?;
            // An UNSUPPORTED_VERSION answer is encoded as v0 whatever was asked.
            let response = decode_body::<ApiVersionsResponse>(frame.clone(), version)
                .or_else(|_| decode_body::<ApiVersionsResponse>(frame, 0))
                .map_err(|reason| {
                    self.session.protocol(format!("ApiVersions response: {reason}"))
                })?;
            let theirs = response
                .api_keys
                .iter()
                .map(|api| (api.api_key, (api.min_version, api.max_version)))
                .collect::<HashMap<_, _>>();
            if response.error_code == UNSUPPORTED_VERSION {
                let Some(&(_, max)) = theirs.get(&key) else {
                    return Err(ClientError::Unsupported { broker, api: key });
                };
                if max >= version || max < ours.min {
                    return Err(ClientError::Unsupported { broker, api: key });
                }
                version = max;
                continue;
            }
            if response.error_code != 0 {
                return Err(self.session.protocol(format!(
                    "ApiVersions failed: {}",
                    crate::codes::describe(response.error_code, None)
                )));
            }
            self.session.broker_versions = theirs;
            return Ok(());
        }
        Err(ClientError::Unsupported { broker, api: ApiVersionsRequest::KEY })
    }

    /// The version of `R` this connection uses: the highest both the client (`kafka-protocol`'s
    /// range for `R`, Produce capped at the newest version this client writes) and the broker
    /// support.
    ///
    /// # Errors
    /// [`ClientError::Unsupported`] if the ranges do not overlap or the broker lacks the API.
    pub fn version_of<R: Request>(&self) -> Result<i16, ClientError> {
        self.session.version_of::<R>()
    }

    /// Sends `request` in the negotiated version and waits for its response.
    ///
    /// # Errors
    /// [`ClientError`] if the API is unsupported, the exchange times out or fails, or the
    /// response cannot be decoded.
    pub async fn send<R: Request>(&mut self, request: &R) -> Result<R::Response, ClientError> {
        let version = self.version_of::<R>()?;
        let correlation_id = self.write_request(request, version).await?;
        let header_version = <R::Response as HeaderVersion>::header_version(version);
        let frame = self.read_response(R::KEY, correlation_id, version, header_version).await?;
        decode_body::<R::Response>(frame, version).map_err(|reason| {
            self.session.protocol(format!("{} response: {reason}", api_name(R::KEY)))
        })
    }

    /// Sends `request`, for which the broker sends no response (Produce with acks=0).
    ///
    /// # Errors
    /// As [`Client::send`], but nothing is read.
    pub async fn send_without_response<R: Request>(
        &mut self,
        request: &R,
    ) -> Result<(), ClientError> {
        let version = self.version_of::<R>()?;
        self.write_request(request, version).await.map(drop)
    }

    /// Turns this connection into a [`Pipeline`] with at most `inflight_max` (>= 1) requests
    /// awaiting their responses. Needs a tokio runtime: it spawns the pipeline's reader task.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] if an earlier failure broke the connection.
    pub fn pipeline(self, inflight_max: usize) -> Result<Pipeline, ClientError> {
        if self.broken {
            return Err(self
                .session
                .protocol("the connection was broken by an earlier failure".into()));
        }
        Ok(Pipeline::new(self.stream, self.session, self.correlation_id, inflight_max))
    }

    /// Encodes and writes one request frame; returns its correlation id.
    async fn write_request<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<i32, ClientError> {
        if self.broken {
            return Err(self
                .session
                .protocol("the connection was broken by an earlier failure".into()));
        }
        let correlation_id = self.correlation_id;
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let frame = self.session.encode(request, version, correlation_id)?;
        let timeout = self.session.request_timeout;
        match tokio::time::timeout(timeout, self.stream.write_all(&frame)).await {
            Ok(Ok(())) => Ok(correlation_id),
            Ok(Err(error)) => {
                self.broken = true;
                Err(ClientError::Disconnected {
                    broker: self.session.broker.clone(),
                    api: R::KEY,
                    reason: io_reason(&error),
                })
            }
            Err(_) => {
                self.broken = true;
                Err(ClientError::Timeout {
                    broker: self.session.broker.clone(),
                    api: R::KEY,
                    timeout,
                })
            }
        }
    }

    /// Reads the response frame to `correlation_id` and returns its body (after the header).
    async fn read_response(
        &mut self,
        api: i16,
        correlation_id: i32,
        version: i16,
        header_version: i16,
    ) -> Result<Bytes, ClientError> {
        let timeout = self.session.request_timeout + RESPONSE_GRACE;
        let broker = self.session.broker.clone();
        let frame = match tokio::time::timeout(timeout, read_frame(&mut self.stream)).await {
            Ok(Ok(Ok(frame))) => frame,
            Ok(Ok(Err(length))) => {
                self.broken = true;
                return Err(self.session.bad_length(api, length));
            }
            Ok(Err(error)) => {
                self.broken = true;
                return Err(ClientError::Disconnected { broker, api, reason: io_reason(&error) });
            }
            Err(_) => {
                self.broken = true;
                return Err(ClientError::Timeout { broker, api, timeout });
            }
        };
        let body = self.session.body(frame, api, version, header_version, correlation_id);
        if body.is_err() {
            self.broken = true;
        }
        body
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use kafka_protocol::messages::MetadataRequest;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use tokio::net::TcpListener;

    use super::*;

    /// A fake broker: answers each request on one connection with `answer(request header)`,
    /// whole response frames (nothing for an empty vector, leaving the client waiting).
    pub(crate) async fn fake_broker(
        mut answer: impl FnMut(RequestHeader) -> Option<Vec<u8>> + Send + 'static,
    ) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            loop {
                let mut length = [0u8; 4];
                if stream.read_exact(&mut length).await.is_err() {
                    return;
                }
                let mut frame = BytesMut::zeroed(i32::from_be_bytes(length) as usize);
                stream.read_exact(&mut frame).await.unwrap();
                let mut frame = frame.freeze();
                let key = ApiKey::try_from(i16::from_be_bytes([frame[0], frame[1]])).unwrap();
                let version = i16::from_be_bytes([frame[2], frame[3]]);
                let header =
                    RequestHeader::decode(&mut frame, key.request_header_version(version)).unwrap();
                match answer(header) {
                    Some(response) => stream.write_all(&response).await.unwrap(),
                    None => std::future::pending::<()>().await,
                }
            }
        });
        address
    }

    /// A response frame: length, header v0 with `correlation_id`, `body` encoded in `version`.
    pub(crate) fn frame<T: Encodable>(correlation_id: i32, body: &T, version: i16) -> Vec<u8> {
        let mut buffer = BytesMut::new();
        buffer.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut buffer, 0)
            .unwrap();
        body.encode(&mut buffer, version).unwrap();
        let length = (buffer.len() - 4) as i32;
        buffer[..4].copy_from_slice(&length.to_be_bytes());
        buffer.to_vec()
    }

    pub(crate) fn versions(apis: &[(i16, i16, i16)]) -> ApiVersionsResponse {
        ApiVersionsResponse::default().with_api_keys(
            apis.iter()
                .map(|&(key, min, max)| {
                    ApiVersion::default()
                        .with_api_key(key)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        )
    }

    pub(crate) fn options(bootstrap: String) -> Options {
        Options {
            bootstrap,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            client_id: "test-client".to_owned(),
        }
    }

    #[tokio::test]
    async fn negotiation_retries_in_the_brokers_api_versions_version() {
        let mut asked = Vec::new();
        let broker = fake_broker(move |header| {
            asked.push(header.request_api_version);
            let id = header.correlation_id;
            if header.request_api_version > 2 {
                // An older broker: UNSUPPORTED_VERSION, in v0, with its range.
                let response = versions(&[(18, 0, 2)]).with_error_code(UNSUPPORTED_VERSION);
                return Some(frame(id, &response, 0));
            }
            assert_eq!(asked, [ApiVersionsRequest::VERSIONS.max, 2]);
            assert_eq!(header.client_id.as_deref(), Some("test-client"));
            Some(frame(id, &versions(&[(18, 0, 2), (3, 1, 9)]), 2))
        })
        .await;
        let client = Client::connect(&options(broker)).await.unwrap();
        assert_eq!(client.version_of::<MetadataRequest>().unwrap(), 9);
        assert!(matches!(
            client.version_of::<kafka_protocol::messages::ProduceRequest>(),
            Err(ClientError::Unsupported { api: 0, .. })
        ));
    }

    #[tokio::test]
    async fn oversized_frames_and_stray_correlation_ids_are_refused() {
        let broker =
            fake_broker(|_| Some((FRAME_BYTES_MAX as i32 + 1).to_be_bytes().to_vec())).await;
        let error = Client::connect(&options(broker)).await.err().unwrap();
        assert!(error.to_string().contains("outside 4..="), "{error}");

        let broker = fake_broker(|header| {
            Some(frame(header.correlation_id + 1, &versions(&[(18, 0, 4)]), 0))
        })
        .await;
        let error = Client::connect(&options(broker)).await.err().unwrap();
        assert!(error.to_string().contains("correlation id 1, expected 0"), "{error}");
    }

    #[tokio::test]
    async fn refused_and_closed_connections_are_reported() {
        let refused = Client::connect(&options("127.0.0.1:1".to_owned())).await.err().unwrap();
        assert_eq!(
            refused.to_string(),
            "cannot reach the broker at 127.0.0.1:1: connection refused"
        );

        // A broker that reads the whole request and hangs up (reading it all makes the close a
        // FIN rather than a reset).
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut length = [0u8; 4];
            stream.read_exact(&mut length).await.unwrap();
            let mut request = vec![0u8; i32::from_be_bytes(length) as usize];
            stream.read_exact(&mut request).await.unwrap();
        });
        let closed = Client::connect(&options(address.clone())).await.err().unwrap();
        let expected = format!(
            "lost the connection to the broker at {address} during ApiVersions: the broker \
             closed the connection"
        );
        assert_eq!(closed.to_string(), expected);
    }
}
