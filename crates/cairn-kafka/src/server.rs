//! The Kafka listener: connections, framing, ordered pipelining, graceful shutdown.
//!
//! Per connection a reader loop takes frames off the socket — length checked against
//! [`FRAME_BYTES_MAX`] and charged to the node-wide request memory budget *before* the buffer is
//! allocated — checks their shape, decodes them and spawns one task per request. The tasks'
//! handles go through a channel bounded by `inflight_requests_max` to a writer loop that awaits
//! them in order, so responses leave in request order while requests are served concurrently.
//! Fetch responses leave in chunks, their record sets sent from the segment files.
//! Anything malformed closes the connection with a log line; nothing panics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use cairn_broker::Broker;
use cairn_meta::MetadataStore;
use cairn_protocol::frame;
use cairn_types::NodeId;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::codec::{self, FrameError};
use crate::handlers;
use crate::handlers::produce::AppendOrder;
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
    /// How long shutdown waits for connections to finish their in-flight requests.
    pub shutdown_grace: Duration,
}

/// What every request handler can reach.
pub(crate) struct Ctx<M> {
    pub broker: Arc<Broker<M>>,
    pub config: ServerConfig,
    pub metrics: KafkaMetrics,
    /// Turns true at shutdown: long polls answer with what they have.
    pub shutdown: watch::Receiver<bool>,
    /// Permits are KiB of request frames in memory.
    request_memory: Arc<Semaphore>,
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
    let ctx = Arc::new(Ctx {
        broker,
        request_memory: Arc::new(Semaphore::new(kib as usize)),
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
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
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
                Err(error) => tracing::warn!(%error, "accept failed"),
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
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
    let read = read_requests(&ctx, reader, responses, shutdown);
    let (read, write) = tokio::join!(read, write);
    ctx.metrics.connections.dec();
    let rejected = match &read {
        Close::Eof | Close::Shutdown => None,
        Close::Idle => Some("idle"),
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
    responses: mpsc::Sender<JoinHandle<Reply>>,
    mut shutdown: watch::Receiver<bool>,
) -> Close {
    // Produce requests append in the order they arrived (clients rely on it for ordering with
    // several requests in flight); each waits for the previous one's signal.
    let mut previous_produce: Option<oneshot::Receiver<()>> = None;
    loop {
        let mut length = [0u8; 4];
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return Close::Shutdown,
            read = tokio::time::timeout(ctx.config.idle_timeout, reader.read_exact(&mut length)) => match read {
                Err(_) => return Close::Idle,
                Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Close::Eof,
                Ok(Err(error)) => return Close::Io(error),
                Ok(Ok(_)) => {}
            },
        }
        let length = match codec::frame_length(length) {
            Ok(length) => length,
            Err(FrameError::Size(length)) => return Close::FrameSize(length),
            Err(error) => return Close::Malformed(error.to_string()),
        };
        let permit = match charge(ctx, length).await {
            Some(permit) => permit,
            None => return Close::Shutdown,
        };
        let frame = match frame::read_body(&mut reader, length).await {
            Ok(frame) => frame,
            Err(error) => return Close::Io(error),
        };
        let mut request = match decode(frame.freeze(), length) {
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

/// Takes `length` bytes from the request memory budget, waiting for other requests to finish.
async fn charge<M>(ctx: &Ctx<M>, length: usize) -> Option<OwnedSemaphorePermit> {
    let kib = u32::try_from(length.div_ceil(1024)).unwrap_or(u32::MAX);
    let total = u32::try_from(ctx.config.request_bytes_max / 1024).unwrap_or(u32::MAX).max(1);
    Arc::clone(&ctx.request_memory).acquire_many_owned(kib.min(total)).await.ok()
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
    /// `None` when the version is not supported and the answer is an error (ApiVersions only).
    pub body: Option<RequestKind>,
}

fn decode(frame: Bytes, frame_bytes: usize) -> Result<Request, Close> {
    let decoded = codec::decode_frame(frame).map_err(|error| match error {
        FrameError::Size(length) => Close::FrameSize(length),
        FrameError::Unsupported { api_key, api_version } => {
            Close::Unsupported { api_key, api_version }
        }
        other => Close::Malformed(other.to_string()),
    })?;
    Ok(Request {
        frame_bytes,
        order: None,
        api_key: decoded.api_key,
        api_version: decoded.api_version,
        header: decoded.header,
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
        handlers::Handled::Close => return Reply::Close,
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
