//! The Kafka listener: connections, framing, ordered pipelining, graceful shutdown.
//!
//! Per connection a reader loop takes frames off the socket — length checked against
//! `FRAME_BYTES_MAX` before anything is allocated, the body read in chunks of
//! [`FRAME_CHUNK_BYTES`], each charged to the node-wide request memory budget just before it is
//! read, within `request_timeout` of the length's arrival — checks their shape, decodes them and
//! spawns one task per request. A connection that announces a large frame and stalls therefore
//! holds one chunk of the budget beyond what it sent, until its deadline or shutdown closes it. The tasks'
//! handles go through a channel bounded by `inflight_requests_max` to a writer loop that awaits
//! them in order, so responses leave in request order while requests are served concurrently.
//! Fetch responses leave in chunks, their record sets sent from the segment files.
//! Anything malformed closes the connection with a log line; nothing panics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use cairn_broker::{Broker, CoordinatorConfig, GroupCoordinator};
use cairn_meta::MetadataStore;
use cairn_types::NodeId;
use cairn_types::limits::FRAME_CHUNK_BYTES;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::accept::{AcceptBackoff, out_of_descriptors};
use crate::codec::{self, FrameError};
use crate::handlers;
use crate::handlers::produce::AppendOrder;
use crate::lag::LagMetrics;
use crate::metrics::KafkaMetrics;
use crate::sendfile;

/// Settings of the Kafka listener.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This node's id, as Metadata reports it.
    pub node_id: NodeId,
    /// The cluster id reported to clients.
    pub cluster_id: String,
    /// Most concurrent connections; more are accepted and closed at once.
    pub connections_max: usize,
    /// Most requests of one connection being served at once.
    pub inflight_requests_max: usize,
    /// Most bytes of request frames held in memory across all connections.
    pub request_bytes_max: usize,
    /// Create unknown topics when a Metadata request allows it.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics asking for the default.
    pub default_partitions: u32,
    /// How long a connection may stay silent between requests.
    pub idle_timeout: Duration,
    /// How long a client may take to send a frame's body once its length prefix arrived (waits
    /// for the request memory budget included); also bounds the timeout a produce request asks
    /// for and a fetch's long poll. Kafka's `request.timeout.ms`.
    pub request_timeout: Duration,
    /// How long shutdown waits for connections to finish their in-flight requests.
    pub shutdown_grace: Duration,
    /// The group coordinator's settings.
    pub groups: CoordinatorConfig,
}

/// What every request handler can reach.
pub(crate) struct Ctx<M> {
    pub broker: Arc<Broker<M>>,
    /// The consumer groups this node coordinates.
    pub groups: Arc<GroupCoordinator<M>>,
    pub config: ServerConfig,
    pub metrics: KafkaMetrics,
    /// Turns true at shutdown: long polls answer with what they have.
    pub shutdown: watch::Receiver<bool>,
    /// Permits are KiB of request frames in memory.
    request_memory: Arc<Semaphore>,
    /// The budget's size in KiB: the most one frame is charged.
    request_kib_max: u32,
    /// Produce validations running at once: each may hold a decompressed batch and a zstd
    /// window (up to `DECOMPRESSED_BATCH_BYTES_MAX` each), so their number bounds that memory.
    pub validations: Semaphore,
}

/// Why a connection is being closed.
#[derive(Debug, thiserror::Error)]
enum Close {
    #[error("client closed the connection")]
    Eof,
    #[error("idle for longer than the idle timeout")]
    Idle,
    #[error("frame of {0} bytes not received within the request timeout")]
    RequestTimeout(usize),
    #[error("the client speaks TLS (its first bytes are a TLS handshake) to a plaintext listener")]
    Tls,
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes is outside the allowed size")]
    FrameSize(i64),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("unsupported api {api_key} version {api_version}")]
    Unsupported { api_key: i16, api_version: i16 },
    #[error("shutting down")]
    Shutdown,
}

/// Serves Kafka clients on `listener` until `shutdown` turns true, then stops accepting, lets
/// every connection finish its in-flight requests (up to `shutdown_grace`) and returns.
/// Metrics go to `registry`.
///
/// # Errors
/// If the Kafka metrics cannot be registered (their names are taken in `registry`).
pub async fn serve<M: MetadataStore>(
    listener: TcpListener,
    broker: Arc<Broker<M>>,
    config: ServerConfig,
    registry: &cairn_metrics::Registry,
    shutdown: watch::Receiver<bool>,
) -> Result<(), cairn_metrics::Error> {
    let metrics = KafkaMetrics::register(registry)?;
    let kib = u32::try_from(config.request_bytes_max / 1024).unwrap_or(u32::MAX).max(1);
    let groups = GroupCoordinator::new(Arc::clone(&broker), config.groups.clone());
    tokio::spawn(Arc::clone(&groups).run(shutdown.clone()));
    let lag = LagMetrics::register(registry)?;
    tokio::spawn(lag.run(Arc::clone(&groups), Arc::clone(&broker), shutdown.clone()));
    let ctx = Arc::new(Ctx {
        broker,
        groups,
        request_memory: Arc::new(Semaphore::new(kib as usize)),
        request_kib_max: kib,
        validations: Semaphore::new(
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
        ),
        config,
        metrics,
        shutdown: shutdown.clone(),
    });
    let connections = Arc::new(Semaphore::new(ctx.config.connections_max));
    let mut tasks = JoinSet::new();
    let mut stop = shutdown.clone();
    let mut backoff = AcceptBackoff::default();
    loop {
        let mut pause = None;
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Some(failed) = backoff.accepted() {
                        tracing::info!(failed, "accepting connections again");
                    }
                    let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                        tracing::warn!(%peer, "connection limit reached; closing new connection");
                        ctx.metrics.connections_rejected.with(&["connection_limit"]).inc();
                        continue;
                    };
                    let ctx = Arc::clone(&ctx);
                    let shutdown = shutdown.clone();
                    tasks.spawn(async move {
                        let _permit = permit;
                        connection(ctx, stream, peer, shutdown).await;
                    });
                }
                Err(error) => pause = Some(accept_failed(&ctx.metrics, &mut backoff, &error)),
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
        if let Some(delay) = pause {
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(ctx.config.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "shutdown grace over; closing remaining connections"
        );
        tasks.abort_all();
    }
    Ok(())
}

/// Counts a failed accept, logs it if it starts an episode, and returns how long to pause
/// before the next accept (see `accept.rs`).
fn accept_failed(
    metrics: &KafkaMetrics,
    backoff: &mut AcceptBackoff,
    error: &std::io::Error,
) -> Duration {
    let descriptors = out_of_descriptors(error);
    metrics.accept_errors.with(&[if descriptors { "descriptors" } else { "other" }]).inc();
    let pause = backoff.failed();
    if pause.first && descriptors {
        tracing::warn!(%error, "accept failed: out of file descriptors; new connections wait in the listen backlog, retried with a growing pause (logged once until accepting again; cairn_kafka_accept_errors_total counts)");
    } else if pause.first {
        tracing::warn!(%error, "accept failed; retried with a growing pause (logged once until accepting again; cairn_kafka_accept_errors_total counts)");
    }
    pause.delay
}

async fn connection<M: MetadataStore>(
    ctx: Arc<Ctx<M>>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "set_nodelay failed");
    }
    ctx.metrics.connections.inc();
    let (reader, mut writer) = stream.into_split();
    let (responses, mut pending) =
        mpsc::channel::<JoinHandle<Reply>>(ctx.config.inflight_requests_max.max(1));
    let write = async move {
        while let Some(handle) = pending.recv().await {
            match handle.await {
                Ok(Reply::Send(response)) => writer.write_all(&response).await?,
                Ok(Reply::Chunks(chunks)) => sendfile::send(&mut writer, &chunks).await?,
                Ok(Reply::Nothing) => {}
                // A response that cannot be sent would leave the client waiting forever.
                Ok(Reply::Close) => break,
                Err(error) => {
                    tracing::error!(%peer, %error, "request handler panicked; closing connection");
                    break;
                }
            }
        }
        writer.shutdown().await
    };
    let read = read_requests(&ctx, reader, peer, responses, shutdown);
    let (read, write) = tokio::join!(read, write);
    ctx.metrics.connections.dec();
    let rejected = match &read {
        Close::Eof | Close::Shutdown => None,
        Close::Idle => Some("idle"),
        Close::RequestTimeout(_) => Some("request_timeout"),
        Close::Tls => Some("tls"),
        Close::Io(_) => Some("io"),
        Close::FrameSize(_) => Some("frame_size"),
        Close::Malformed(_) => Some("malformed"),
        Close::Unsupported { .. } => Some("unsupported"),
    };
    match rejected {
        None => tracing::debug!(%peer, "connection closed"),
        Some("idle") => tracing::debug!(%peer, "idle connection closed"),
        Some(label) => {
            tracing::warn!(%peer, reason = %read, "closing connection");
            ctx.metrics.connections_rejected.with(&[label]).inc();
        }
    }
    if let Err(error) = write {
        tracing::debug!(%peer, %error, "writing responses failed");
    }
}

/// Reads, checks and dispatches requests until the connection must close; returns why.
async fn read_requests<M: MetadataStore>(
    ctx: &Arc<Ctx<M>>,
    mut reader: impl AsyncRead + Unpin,
    peer: SocketAddr,
    responses: mpsc::Sender<JoinHandle<Reply>>,
    mut shutdown: watch::Receiver<bool>,
) -> Close {
    // Produce requests append in the order they arrived (clients rely on it for ordering with
    // several requests in flight); each waits for the previous one's signal.
    let mut previous_produce: Option<oneshot::Receiver<()>> = None;
    loop {
        let length = match read_length(ctx, &mut reader, &mut shutdown).await {
            Ok(length) => length,
            Err(close) => return close,
        };
        // Shutdown stops a partial frame at once; the deadline bounds a stalled one.
        let (frame, permit) = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return Close::Shutdown,
            read = tokio::time::timeout(ctx.config.request_timeout, read_body(ctx, &mut reader, length)) => match read {
                Err(_) => return Close::RequestTimeout(length),
                Ok(Err(close)) => return close,
                Ok(Ok(body)) => body,
            },
        };
        let mut request = match decode(Bytes::from(frame), length, peer) {
            Ok(request) => request,
            Err(close) => return close,
        };
        if request.api_key == ApiKey::Produce {
            let (appended, next) = oneshot::channel();
            request.order =
                Some(AppendOrder { previous: previous_produce.replace(next), appended });
        }
        let ctx = Arc::clone(ctx);
        let handle = tokio::spawn(async move {
            let _permit = permit;
            respond(&ctx, request).await
        });
        if responses.send(handle).await.is_err() {
            return Close::Eof;
        }
    }
}

/// Waits up to the idle timeout for the next frame's length prefix and checks it.
async fn read_length<M>(
    ctx: &Ctx<M>,
    reader: &mut (impl AsyncRead + Unpin),
    shutdown: &mut watch::Receiver<bool>,
) -> Result<usize, Close> {
    let mut prefix = [0u8; 4];
    tokio::select! {
        biased;
        _ = shutdown.wait_for(|stop| *stop) => return Err(Close::Shutdown),
        read = tokio::time::timeout(ctx.config.idle_timeout, reader.read_exact(&mut prefix)) => match read {
            Err(_) => return Err(Close::Idle),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Err(Close::Eof),
            Ok(Err(error)) => return Err(Close::Io(error)),
            Ok(Ok(_)) => {}
        },
    }
    match codec::frame_length(prefix) {
        Ok(length) => Ok(length),
        // A TLS record header: content type 22 (handshake), protocol version 3.x. As a length it
        // is far above the frame limit, so no Kafka frame is mistaken for it.
        Err(FrameError::Size(_)) if prefix[..2] == [0x16, 0x03] => Err(Close::Tls),
        Err(FrameError::Size(length)) => Err(Close::FrameSize(length)),
        Err(
            error @ (FrameError::Header(_)
            | FrameError::Unsupported { .. }
            | FrameError::Body(_)
            | FrameError::Decode(_)),
        ) => Err(Close::Malformed(error.to_string())),
    }
}

/// How much the buffer of a frame body grows at a time once its first chunk is full. Each
/// growth copies what arrived so far: doubling copies about a whole frame again (7.5% of the
/// broker's CPU producing 2 MiB requests, in `perf`), growing eightfold about a seventh of it.
/// Capacity beyond the bytes received is address space, not memory: it is only touched (and
/// charged to the request memory budget) as the bytes arrive, so a stalled client still holds
/// at most one chunk of budget beyond what it sent.
const FRAME_GROWTH_FACTOR: usize = 8;

/// Reads a frame body of `length` bytes chunk by chunk, charging each chunk to the request
/// memory budget just before reading it: the frame then holds at most one chunk of the budget
/// beyond the bytes that arrived (and at most the whole budget). The buffer grows geometrically
/// with the bytes read, never past `length`, so what it takes tracks what the client sent.
/// Returns the body and its share of the budget, which the request holds until answered. Waits
/// for the budget count against the caller's body deadline, so partial frames that together
/// need more than the budget cannot hold it for longer than that.
async fn read_body<M>(
    ctx: &Ctx<M>,
    reader: &mut (impl AsyncRead + Unpin),
    length: usize,
) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), Close> {
    let chunk_bytes = FRAME_CHUNK_BYTES as usize;
    let mut body: Vec<u8> = Vec::new();
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut charged_kib: u32 = 0;
    while body.len() < length {
        let target = (body.len() + chunk_bytes).min(length);
        let kib = u32::try_from(target.div_ceil(1024)).unwrap_or(u32::MAX).min(ctx.request_kib_max);
        if kib > charged_kib {
            let more = Arc::clone(&ctx.request_memory)
                .acquire_many_owned(kib - charged_kib)
                .await
                .map_err(|_| Close::Shutdown)?;
            charged_kib = kib;
            match &mut permit {
                Some(held) => held.merge(more),
                None => permit = Some(more),
            }
        }
        if body.capacity() < target {
            let capacity = (body.capacity() * FRAME_GROWTH_FACTOR).clamp(target, length);
            body.reserve_exact(capacity - body.len());
        }
        // `take` stops the reads at the chunk's end whatever the buffer's spare capacity.
        let mut limited = (&mut *reader).take((target - body.len()) as u64);
        while body.len() < target {
            match limited.read_buf(&mut body).await {
                // The client hung up inside a frame.
                Ok(0) => return Err(Close::Io(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {}
                Err(error) => return Err(Close::Io(error)),
            }
        }
    }
    Ok((body, permit))
}

/// A request ready for its handler.
pub(crate) struct Request {
    /// Bytes of the frame, for metrics.
    pub frame_bytes: usize,
    /// For produce requests: their place in the connection's append order.
    pub order: Option<AppendOrder>,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub header: RequestHeader,
    /// The client's address.
    pub peer: SocketAddr,
    /// `None` when the version is not supported and the answer is an error (ApiVersions only).
    pub body: Option<RequestKind>,
}

fn decode(frame: Bytes, frame_bytes: usize, peer: SocketAddr) -> Result<Request, Close> {
    let decoded = codec::decode_frame(frame).map_err(|error| match error {
        FrameError::Size(length) => Close::FrameSize(length),
        FrameError::Unsupported { api_key, api_version } => {
            Close::Unsupported { api_key, api_version }
        }
        error @ (FrameError::Header(_) | FrameError::Body(_) | FrameError::Decode(_)) => {
            Close::Malformed(error.to_string())
        }
    })?;
    Ok(Request {
        frame_bytes,
        order: None,
        api_key: decoded.api_key,
        api_version: decoded.api_version,
        header: decoded.header,
        peer,
        body: decoded.body,
    })
}

/// What the writer does with a served request.
enum Reply {
    /// Send this response frame.
    Send(Bytes),
    /// Send this response frame, parts of it from files.
    Chunks(Vec<sendfile::Chunk>),
    /// No response is due (produce with acks=0).
    Nothing,
    /// The response could not be encoded: close the connection.
    Close,
}

/// Serves one request.
async fn respond<M: MetadataStore>(ctx: &Ctx<M>, request: Request) -> Reply {
    let (api_key, api_version, correlation_id) =
        (request.api_key, request.api_version, request.header.correlation_id);
    let api = handlers::api_name(api_key);
    let started = std::time::Instant::now();
    ctx.metrics.requests.with(&[api]).inc();
    ctx.metrics.request_bytes.with(&[api]).add(request.frame_bytes as u64);
    let handled = handlers::handle(ctx, request).await;
    ctx.metrics.request_seconds.with(&[api]).observe_duration(started.elapsed());
    let encoded = match handled {
        handlers::Handled::Respond(response) => {
            encode(api_key, api_version, correlation_id, &response).map(Reply::Send)
        }
        handlers::Handled::Fetch(response, files) => {
            sendfile::encode_fetch(correlation_id, api_version, response, files).map(Reply::Chunks)
        }
        handlers::Handled::Silent => return Reply::Nothing,
        handlers::Handled::Refused(_) | handlers::Handled::Close => return Reply::Close,
    };
    match encoded {
        Ok(reply) => {
            let bytes = match &reply {
                Reply::Send(bytes) => bytes.len() as u64,
                Reply::Chunks(chunks) => sendfile::chunks_len(chunks),
                Reply::Nothing | Reply::Close => 0,
            };
            ctx.metrics.response_bytes.with(&[api]).add(bytes);
            reply
        }
        Err(error) => {
            tracing::error!(?api_key, api_version, %error, "encoding a response failed; closing connection");
            Reply::Close
        }
    }
}

/// A response frame: length, response header, body.
pub(crate) fn encode(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Bytes, String> {
    let mut buffer = BytesMut::with_capacity(256);
    buffer.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buffer, api_key.response_header_version(api_version))
        .map_err(|e| e.to_string())?;
    response.encode(&mut buffer, api_version).map_err(|e| e.to_string())?;
    let length = i32::try_from(buffer.len() - 4).map_err(|e| e.to_string())?;
    buffer[..4].copy_from_slice(&length.to_be_bytes());
    Ok(buffer.freeze())
}
