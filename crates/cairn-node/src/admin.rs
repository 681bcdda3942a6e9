//! The admin HTTP server: `/health/live`, `/health/ready` and `/metrics` for orchestrators and
//! Prometheus, and `/cluster` (JSON, [`crate::status::ClusterStatus`]) for `cairn cluster
//! status`.
//!
//! A deliberately small, strict HTTP/1.1 server written by hand (four read-only endpoints do
//! not justify an HTTP stack): one request per connection, answered with `Connection: close`.
//!
//! - The request head (request line and headers) is read up to [`ADMIN_REQUEST_HEAD_BYTES_MAX`];
//!   a longer head gets `431`. A body, if any, is ignored (nothing here takes one).
//! - Parsing is strict (RFC 9112): CRLF line ends, single spaces in the request line, token
//!   methods and header names, no obsolete line folding, exactly one `Host` in HTTP/1.1. Anything
//!   else gets `400`; a version other than 1.x gets `505`.
//! - Routing: an unknown path is `404`; a known path with a method other than `GET` or `HEAD` is
//!   `405` with `Allow: GET, HEAD`. `HEAD` gets the headers `GET` would, without the body.
//! - Bounds: at most [`AdminLimits::connections_max`] connections are served at once (the rest
//!   wait in the listen backlog); the head must arrive within [`AdminLimits::read_timeout`]
//!   (else `408`) and the response must be taken within [`AdminLimits::write_timeout`], so a slow
//!   client holds a task for a bounded time.
//! - Shutdown: when the `shutdown` future completes, the server stops accepting, drops
//!   connections still waiting for a request, lets responses being written finish (each bounded
//!   by the write timeout), and returns.
//!
//! `/health/ready` answers 503 until the node serves Kafka (and once it shuts down), and also
//! while it serves with some partitions offline or a full disk, with a body that starts
//! `not ready, degraded` and names them (see [`ready_body`]); `cairn_partitions_offline` counts
//! the offline partitions for alerting.
//!
//! After responding, the server half-closes and discards what the client still sends (up to
//! [`ADMIN_LINGER_BYTES_MAX`], for at most [`ADMIN_LINGER_TIMEOUT`]): closing a socket with
//! unread input sends a TCP reset, which can destroy the response before the client reads it.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_broker::Health;
use cairn_metrics::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tracing::{debug, error, warn};

use crate::status::ClusterView;

/// Most admin connections served at once ([`AdminLimits::default`]).
pub const ADMIN_CONNECTIONS_MAX: usize = 64;

/// Longest request head (request line and headers, with the blank line) the server reads.
pub const ADMIN_REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;

/// Time a client has to send its whole request head ([`AdminLimits::default`]).
pub const ADMIN_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a client has to take the whole response ([`AdminLimits::default`]).
pub const ADMIN_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes discarded after the response while waiting for the client to close.
pub const ADMIN_LINGER_BYTES_MAX: usize = 64 * 1024;

/// Longest wait for the client to close after the response.
pub const ADMIN_LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// Most offline partitions `/health/ready` names one by one; the rest are counted.
pub const ADMIN_READY_OFFLINE_LISTED_MAX: usize = 100;

/// `Content-Type` of `/metrics`: the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// `Content-Type` of `/cluster`.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// What the admin endpoints report. Cloned into every connection task.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The node's metrics, rendered by `/metrics`.
    pub registry: Arc<Registry>,
    /// Set by the node once it serves Kafka requests (and cleared when it starts shutting
    /// down); `/health/ready` answers 200 while it is set, 503 otherwise.
    pub ready: Arc<AtomicBool>,
    /// Offline partitions and a full disk, named by `/health/ready` (see [`ready_body`]).
    pub health: Arc<Health>,
    /// The cluster as this node sees it, answered by `/cluster`; `None` (503) until the node
    /// has its consistent core.
    pub cluster: Option<ClusterView>,
}

/// Bounds of the admin server; [`AdminLimits::default`] is what the node uses, tests shorten
/// the timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// Most connections served at once; must be at least 1.
    pub connections_max: usize,
    /// Time a client has to send its whole request head.
    pub read_timeout: Duration,
    /// Time a client has to take the whole response.
    pub write_timeout: Duration,
}

impl Default for AdminLimits {
    fn default() -> AdminLimits {
        AdminLimits {
            connections_max: ADMIN_CONNECTIONS_MAX,
            read_timeout: ADMIN_READ_TIMEOUT,
            write_timeout: ADMIN_WRITE_TIMEOUT,
        }
    }
}

/// Serves the admin endpoints on `listener` with the default [`AdminLimits`] until `shutdown`
/// completes (see the module documentation for what shutdown waits for).
pub async fn serve_admin(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()>,
) {
    serve_admin_with(listener, state, AdminLimits::default(), shutdown).await;
}

/// [`serve_admin`] with explicit limits.
///
/// # Panics
///
/// If `limits.connections_max` is 0 (the server could never serve anyone).
pub async fn serve_admin_with(
    listener: TcpListener,
    state: AdminState,
    limits: AdminLimits,
    shutdown: impl Future<Output = ()>,
) {
    assert!(limits.connections_max > 0, "admin connections_max must be at least 1");
    let semaphore = Arc::new(Semaphore::new(limits.connections_max));
    let (stop_sender, stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let mut backoff = cairn_kafka::accept::AcceptBackoff::default();
    loop {
        // Reap finished connections: the set holds at most `connections_max` running tasks plus
        // those that finished since the last accept.
        while let Some(result) = connections.try_join_next() {
            log_task_panic(result);
        }
        // A permit before `accept`: at the limit, new clients wait in the listen backlog.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&semaphore).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break, // The semaphore is never closed.
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, typically: pause (growing) instead of spinning,
                    // and log once until it accepts again.
                    let pause = backoff.failed();
                    if pause.first {
                        warn!(%error, "admin accept failed; retried with a growing pause (logged once until accepting again)");
                    }
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(pause.delay) => continue,
                    }
                }
            },
        };
        if let Some(failed) = backoff.accepted() {
            tracing::info!(failed, "admin listener accepting connections again");
        }
        let state = state.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            if let Err(error) = serve_connection(stream, &state, limits, stop).await {
                debug!(%peer, %error, "admin connection failed");
            }
            drop(permit);
        });
    }
    drop(listener);
    // Every connection task watches `stop`, so this join is bounded by the write timeout.
    let _ = stop_sender.send(true);
    while let Some(result) = connections.join_next().await {
        log_task_panic(result);
    }
}

fn log_task_panic(result: Result<(), tokio::task::JoinError>) {
    if let Err(join_error) = result {
        error!(error = %join_error, "admin connection task panicked");
    }
}

/// Completes once the server shuts down (or its stop sender is gone, which means the same).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// One connection: read one request head, answer it, close.
async fn serve_connection(
    mut stream: TcpStream,
    state: &AdminState,
    limits: AdminLimits,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut head = vec![0_u8; ADMIN_REQUEST_HEAD_BYTES_MAX];
    let read = tokio::select! {
        () = stopped(&mut stop) => return Ok(()),
        read = timeout(limits.read_timeout, read_head(&mut stream, &mut head)) => read,
    };
    let response = match read {
        Err(_elapsed) => Response::error(408),
        Ok(Err(error)) => return Err(error),
        Ok(Ok(Head::Closed)) => return Ok(()),
        Ok(Ok(Head::Truncated)) => Response::error(400),
        Ok(Ok(Head::TooLarge)) => Response::error(431),
        Ok(Ok(Head::Complete(len))) => match parse_head(&head[..len]) {
            Ok(request) => respond(&request, state),
            Err(status) => Response::error(status),
        },
    };
    let bytes = response.to_bytes(SystemTime::now());
    timeout(limits.write_timeout, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_elapsed| {
        io::Error::new(io::ErrorKind::TimedOut, "admin response write timed out")
    })??;
    tokio::select! {
        () = stopped(&mut stop) => {}
        _ = timeout(ADMIN_LINGER_TIMEOUT, linger(&mut stream)) => {}
    }
    Ok(())
}

/// How reading a request head ended.
enum Head {
    /// The head is `buffer[..len]`, ending with the blank line.
    Complete(usize),
    /// The client closed before sending anything.
    Closed,
    /// The client closed in the middle of the head.
    Truncated,
    /// The buffer filled up before the blank line.
    TooLarge,
}

async fn read_head(stream: &mut TcpStream, buffer: &mut [u8]) -> io::Result<Head> {
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            return Ok(Head::TooLarge);
        }
        let read = stream.read(&mut buffer[filled..]).await?;
        if read == 0 {
            return Ok(if filled == 0 { Head::Closed } else { Head::Truncated });
        }
        // The terminator may straddle the previous read.
        let search_from = filled.saturating_sub(3);
        filled += read;
        if let Some(at) = find(&buffer[search_from..filled], b"\r\n\r\n") {
            return Ok(Head::Complete(search_from + at + 4));
        }
    }
}

/// Reads and discards until the client closes, up to [`ADMIN_LINGER_BYTES_MAX`].
async fn linger(stream: &mut TcpStream) {
    let mut sink = [0_u8; 4096];
    let mut discarded = 0;
    while discarded < ADMIN_LINGER_BYTES_MAX {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(read) => discarded += read,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// The parts of a request the server acts on.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    /// The path of the target, without the query.
    path: &'a str,
}

/// Parses a complete request head (ending with the blank line) into a [`Request`], or the error
/// status to answer with.
fn parse_head(head: &[u8]) -> Result<Request<'_>, u16> {
    let head = head.strip_suffix(b"\r\n\r\n").ok_or(400_u16)?;
    let mut lines = split_lines(head);
    let request_line = lines.next().ok_or(400_u16)?;
    let request_line = std::str::from_utf8(request_line).map_err(|_| 400_u16)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(400);
    }
    let http_11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ if is_http_version(version) => return Err(505),
        _ => return Err(400),
    };
    let path = target_path(target).ok_or(400_u16)?;

    let mut hosts = 0;
    for line in lines {
        let colon = line.iter().position(|b| *b == b':').ok_or(400_u16)?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        // Also rejects obsolete line folding (a line starting with whitespace) and whitespace
        // between the name and the colon.
        if name.is_empty() || !name.iter().copied().all(is_tchar) {
            return Err(400);
        }
        if !value.iter().all(|b| *b == b'\t' || *b == b' ' || (*b >= 0x21 && *b != 0x7f)) {
            return Err(400);
        }
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        }
    }
    if http_11 && hosts != 1 {
        return Err(400);
    }
    Ok(Request { method, path })
}

/// Splits on CRLF; a lone CR or LF inside a line makes that line fail the checks that follow
/// (they are not token, target or field-value bytes).
fn split_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(head);
    std::iter::from_fn(move || {
        let current = rest?;
        match find(current, b"\r\n") {
            Some(at) => {
                rest = Some(&current[at + 2..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// `HTTP/<digit>.<digit>`.
fn is_http_version(version: &str) -> bool {
    let bytes = version.as_bytes();
    bytes.len() == 8
        && bytes.starts_with(b"HTTP/")
        && bytes[5].is_ascii_digit()
        && bytes[6] == b'.'
        && bytes[7].is_ascii_digit()
}

/// The path of a request target in origin form (`/metrics?x`) or absolute form
/// (`http://host/metrics`); `None` if it is neither or has bytes a target may not.
fn target_path(target: &str) -> Option<&str> {
    if target.is_empty() || !target.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return None;
    }
    let path_and_query = if target.starts_with('/') {
        target
    } else {
        let lower = target.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
        let after_scheme = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return None;
        };
        match after_scheme.find('/') {
            Some(slash) => &after_scheme[slash..],
            None => "/",
        }
    };
    Some(path_and_query.split_once('?').map_or(path_and_query, |(path, _query)| path))
}

/// RFC 9110 `tchar`: the bytes of a token (method, header name).
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// The endpoints.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Live,
    Ready,
    Metrics,
    Cluster,
}

fn respond(request: &Request<'_>, state: &AdminState) -> Response {
    let endpoint = match request.path {
        "/health/live" => Endpoint::Live,
        "/health/ready" => Endpoint::Ready,
        "/metrics" => Endpoint::Metrics,
        "/cluster" => Endpoint::Cluster,
        _ => return Response::error(404).head_only(request.method == "HEAD"),
    };
    let head_only = match request.method {
        "GET" => false,
        "HEAD" => true,
        _ => return Response::error(405),
    };
    let response = match endpoint {
        Endpoint::Live => Response::text(200, "ok\n"),
        Endpoint::Ready if state.ready.load(Ordering::Acquire) => match ready_body(&state.health) {
            None => Response::text(200, "ready\n"),
            Some(degraded) => Response::text(503, &degraded),
        },
        Endpoint::Ready => Response::text(503, "not ready\n"),
        Endpoint::Metrics => Response {
            status: 200,
            content_type: METRICS_CONTENT_TYPE,
            body: state.registry.render().into_bytes(),
            head_only: false,
        },
        Endpoint::Cluster => cluster_response(state.cluster.as_ref()),
    };
    response.head_only(head_only)
}

/// `/cluster`: the status as JSON, or 503 before the node has its core. The document grows
/// with the registered nodes, at most `CLUSTER_NODES_MAX` of them (about 1 KiB each at most).
fn cluster_response(view: Option<&ClusterView>) -> Response {
    let Some(view) = view else {
        return Response::text(503, "no cluster status yet: the node is starting\n");
    };
    match serde_json::to_vec(&view.status()) {
        Ok(body) => {
            Response { status: 200, content_type: JSON_CONTENT_TYPE, body, head_only: false }
        }
        Err(error) => {
            error!(%error, "the cluster status does not encode as JSON");
            Response::error(500)
        }
    }
}

/// `None` when the serving node is healthy (`/health/ready` answers 200 `ready`); else the body
/// of its 503: `not ready, degraded` and what is wrong (a full disk, then each offline partition
/// with its cause, up to [`ADMIN_READY_OFFLINE_LISTED_MAX`]).
///
/// Why 503 and not 200 for a degraded node: readiness is what rolling restarts and disruption
/// budgets wait for, and a node that holds unreadable committed data or cannot append must stop
/// them: taking down another node meanwhile could lose the last good copy or the last writable
/// replica. Kafka clients connect to the node's advertised address, not through the
/// orchestrator's load balancing, so the healthy partitions keep being served (and a producer's
/// retry clears a full disk once space is free). The node is still alive (`/health/live` stays
/// 200): a restart repairs neither a corrupt log nor a full disk.
pub fn ready_body(health: &Health) -> Option<String> {
    let offline = health.offline();
    let disk_full = health.disk_full();
    if offline.is_empty() && !disk_full {
        return None;
    }
    let mut body = String::from("not ready, degraded\n");
    if disk_full {
        body.push_str("disk full: appends are refused until space is freed\n");
    }
    if !offline.is_empty() {
        body.push_str(&format!("offline partitions: {}\n", offline.len()));
    }
    for partition in offline.iter().take(ADMIN_READY_OFFLINE_LISTED_MAX) {
        let reason = partition.reason.replace(['\r', '\n'], " ");
        body.push_str(&format!("{}-{}: {reason}\n", partition.topic, partition.partition));
    }
    if let Some(more) = offline.len().checked_sub(ADMIN_READY_OFFLINE_LISTED_MAX).filter(|n| *n > 0)
    {
        body.push_str(&format!("... and {more} more\n"));
    }
    Some(body)
}

/// A response about to be written.
#[derive(Debug)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// Answering `HEAD`: the headers describe `body`, which is not sent.
    head_only: bool,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: TEXT_CONTENT_TYPE,
            body: body.as_bytes().to_vec(),
            head_only: false,
        }
    }

    /// A status with its reason phrase, lowercased, as the body.
    fn error(status: u16) -> Response {
        Response::text(status, &format!("{}\n", reason(status).to_ascii_lowercase()))
    }

    fn head_only(self, head_only: bool) -> Response {
        Response { head_only, ..self }
    }

    fn to_bytes(&self, now: SystemTime) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            http_date(now),
            self.content_type,
            self.body.len(),
        );
        if self.status == 405 {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut bytes = head.into_bytes();
        if !self.head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// `now` as an HTTP date (IMF-fixdate, RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(now: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    // A clock before 1970 is reported as 1970.
    let seconds = now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let days = seconds / 86_400;
    let of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
    )
}

/// Year, month (1-12) and day (1-31) of the day `days` after 1970-01-01, by Howard Hinnant's
/// `civil_from_days` (restricted to dates after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(head: &str, expected: Result<(&str, &str), u16>) {
        let actual = parse_head(head.as_bytes()).map(|request| (request.method, request.path));
        assert_eq!(actual, expected, "{head:?}");
    }

    #[test]
    fn request_heads() {
        check("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Ok(("GET", "/metrics")));
        check(
            "HEAD /health/live?verbose HTTP/1.1\r\nhost: x\r\n\r\n",
            Ok(("HEAD", "/health/live")),
        );
        check("GET http://x:9644/metrics HTTP/1.1\r\nHost: x\r\n\r\n", Ok(("GET", "/metrics")));
        check("GET HTTP://x HTTP/1.1\r\nHost: x\r\n\r\n", Ok(("GET", "/")));
        check("GET /metrics HTTP/1.0\r\n\r\n", Ok(("GET", "/metrics")));
        check(
            "DELETE /metrics HTTP/1.1\r\nHost: x\r\nA:\r\nB: \t v \r\n\r\n",
            Ok(("DELETE", "/metrics")),
        );

        check("GET /metrics HTTP/1.1\r\n\r\n", Err(400)); // no Host
        check("GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Err(400));
        check("GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Err(400));
        check("GET /metrics HTTP/1.1 \r\nHost: x\r\n\r\n", Err(400));
        check("GET /metrics\r\nHost: x\r\n\r\n", Err(400));
        check("GET metrics HTTP/1.1\r\nHost: x\r\n\r\n", Err(400));
        check("G(T /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Err(400));
        check("GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", Err(400));
        check("GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", Err(400));
        check("GET /metrics HTTP/1.1\r\nHost: x\nEvil: y\r\n\r\n", Err(400));
        check("GET /metrics HTTP/1.1\r\nHost: x\0\r\n\r\n", Err(400));
        check("GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n", Err(400));
        check("\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Err(400));
        check("GET /metrics FTP/1.1\r\nHost: x\r\n\r\n", Err(400));
        check("GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", Err(505));
    }

    #[test]
    fn http_dates() {
        let at = |seconds| http_date(UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT");
    }
}
