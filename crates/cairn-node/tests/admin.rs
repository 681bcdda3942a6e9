//! The admin HTTP server over real TCP: every endpoint, the error statuses (400, 404, 405, 408,
//! 431, 505), readiness, the connection limit and shutdown. No sleeps: waits are on responses,
//! bounded by `tokio::time::timeout`.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_metrics::Registry;
use cairn_node::admin::{
    ADMIN_REQUEST_HEAD_BYTES_MAX, AdminLimits, AdminState, METRICS_CONTENT_TYPE, serve_admin,
    serve_admin_with,
};
use cairn_node::status::{
    CLUSTER_STATUS_VERSION, ClusterStatus, ClusterView, CoreView, LivenessView, NodeView,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Bound on anything a test waits for; far above what a passing test needs.
const BOUND: Duration = Duration::from_secs(5);

/// A running admin server.
struct Server {
    addr: SocketAddr,
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start() -> Server {
        Server::start_with(None).await
    }

    /// Starts with `limits`, or through [`serve_admin`] (the defaults) when `None`.
    async fn start_with(limits: Option<AdminLimits>) -> Server {
        Server::start_viewing(limits, None).await
    }

    /// [`Server::start_with`], answering `/cluster` from `cluster`.
    async fn start_viewing(limits: Option<AdminLimits>, cluster: Option<ClusterView>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Arc::new(Registry::new());
        let ready = Arc::new(AtomicBool::new(false));
        let state = AdminState {
            registry: Arc::clone(&registry),
            ready: Arc::clone(&ready),
            health: Arc::default(),
            cluster,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = match limits {
            Some(limits) => tokio::spawn(serve_admin_with(listener, state, limits, shutdown)),
            None => tokio::spawn(serve_admin(listener, state, shutdown)),
        };
        Server { addr, registry, ready, stop, task }
    }

    /// Sends `request` on a new connection and reads the response up to the server's close.
    async fn exchange(&self, request: &[u8]) -> Response {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        read_response(&mut stream).await
    }

    async fn get(&self, method: &str, path: &str) -> Response {
        self.exchange(format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes()).await
    }

    /// Triggers shutdown and waits for the server to return.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        timeout(BOUND, self.task).await.expect("shutdown completes").unwrap();
    }
}

async fn read_response(stream: &mut TcpStream) -> Response {
    let mut bytes = Vec::new();
    timeout(BOUND, stream.read_to_end(&mut bytes)).await.expect("the server closes").unwrap();
    Response::parse(&bytes)
}

/// A parsed response, checked for the headers every response carries.
#[derive(Debug)]
struct Response {
    status_line: String,
    headers: HashMap<String, String>,
    body: String,
}

impl Response {
    fn parse(bytes: &[u8]) -> Response {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{text:?}"));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_owned();
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(": ").unwrap();
                (name.to_ascii_lowercase(), value.to_owned())
            })
            .collect::<HashMap<_, _>>();
        assert_eq!(headers["connection"], "close");
        assert!(headers["date"].ends_with(" GMT"));
        Response { status_line, headers, body: body.to_owned() }
    }

    /// Checks the status line and body (and that `Content-Length` is the body's length).
    #[track_caller]
    fn check(&self, status_line: &str, body: &str) {
        assert_eq!(self.status_line, status_line, "{self:?}");
        assert_eq!(self.body, body, "{self:?}");
        assert_eq!(self.headers["content-length"], body.len().to_string());
    }
}

#[tokio::test]
async fn live() {
    let server = Server::start().await;
    let response = server.get("GET", "/health/live").await;
    response.check("HTTP/1.1 200 OK", "ok\n");
    assert_eq!(response.headers["content-type"], "text/plain; charset=utf-8");
    // A query string does not change the endpoint.
    server.get("GET", "/health/live?full=1").await.check("HTTP/1.1 200 OK", "ok\n");
    server.stop().await;
}

#[tokio::test]
async fn readiness_follows_the_flag() {
    let server = Server::start().await;
    server
        .get("GET", "/health/ready")
        .await
        .check("HTTP/1.1 503 Service Unavailable", "not ready\n");
    server.ready.store(true, Ordering::Release);
    server.get("GET", "/health/ready").await.check("HTTP/1.1 200 OK", "ready\n");
    server.ready.store(false, Ordering::Release);
    server
        .get("GET", "/health/ready")
        .await
        .check("HTTP/1.1 503 Service Unavailable", "not ready\n");
    server.stop().await;
}

#[tokio::test]
async fn cluster_answers_the_views_status_as_json() {
    let server = Server::start().await;
    let starting = "no cluster status yet: the node is starting\n";
    server.get("GET", "/cluster").await.check("HTTP/1.1 503 Service Unavailable", starting);
    server.stop().await;

    let node = |id: u64, liveness| NodeView {
        id,
        kafka: format!("127.0.0.1:{}", 9000 + id),
        peer: format!("127.0.0.1:{}", 9100 + id),
        rack: (id == 2).then(|| "r2".to_owned()),
        liveness,
        voter: true,
    };
    let status = ClusterStatus {
        version: CLUSTER_STATUS_VERSION,
        cluster_id: Some("00112233445566778899aabbccddeeff".to_owned()),
        node_id: 2,
        core: CoreView {
            leader: Some(1),
            term: 4,
            committed_index: Some(17),
            applied_index: Some(16),
            voters: vec![1, 2, 3],
        },
        nodes: vec![
            node(1, LivenessView::Alive),
            node(2, LivenessView::Alive),
            node(3, LivenessView::Dead),
        ],
    };
    let view = {
        let status = status.clone();
        ClusterView::new(move || status.clone())
    };
    let server = Server::start_viewing(None, Some(view)).await;
    let response = server.get("GET", "/cluster").await;
    assert_eq!(response.status_line, "HTTP/1.1 200 OK", "{response:?}");
    assert_eq!(response.headers["content-type"], "application/json");
    assert_eq!(response.headers["content-length"], response.body.len().to_string());
    let decoded: ClusterStatus = serde_json::from_str(&response.body).unwrap();
    assert_eq!(decoded, status);
    // The field names and values machines read.
    for part in [r#""liveness":"dead""#, r#""leader":1"#, r#""rack":"r2""#, r#""rack":null"#] {
        assert!(response.body.contains(part), "{part} in {}", response.body);
    }
    let head = server.get("HEAD", "/cluster").await;
    assert_eq!((head.status_line.as_str(), head.body.as_str()), ("HTTP/1.1 200 OK", ""));
    let post = server.get("POST", "/cluster").await;
    post.check("HTTP/1.1 405 Method Not Allowed", "method not allowed\n");
    server.stop().await;
}

#[tokio::test]
async fn metrics_render_the_registry() {
    let server = Server::start().await;
    let requests = server.registry.counter("cairn_requests_total", "Requests.").unwrap();
    requests.add(42);
    let response = server.get("GET", "/metrics").await;
    response.check(
        "HTTP/1.1 200 OK",
        "# HELP cairn_requests_total Requests.\n# TYPE cairn_requests_total counter\n\
         cairn_requests_total 42\n",
    );
    assert_eq!(response.headers["content-type"], METRICS_CONTENT_TYPE);
    assert_eq!(METRICS_CONTENT_TYPE, "text/plain; version=0.0.4");
    server.stop().await;
}

#[tokio::test]
async fn head_sends_headers_without_body() {
    let server = Server::start().await;
    server.registry.gauge("g", "A gauge.").unwrap().set(-3);
    let expected_len = server.registry.render().len().to_string();
    let response = server.get("HEAD", "/metrics").await;
    assert_eq!(response.status_line, "HTTP/1.1 200 OK");
    assert_eq!(response.body, "");
    assert_eq!(response.headers["content-length"], expected_len);

    let response = server.get("HEAD", "/health/live").await;
    assert_eq!((response.status_line.as_str(), response.body.as_str()), ("HTTP/1.1 200 OK", ""));
    assert_eq!(response.headers["content-length"], "3");
    let response = server.get("HEAD", "/nowhere").await;
    assert_eq!(
        (response.status_line.as_str(), response.body.as_str()),
        ("HTTP/1.1 404 Not Found", "")
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_path_is_404() {
    let server = Server::start().await;
    for path in ["/", "/metrics/", "/health", "/health/live/x", "/METRICS"] {
        server.get("GET", path).await.check("HTTP/1.1 404 Not Found", "not found\n");
    }
    server.stop().await;
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let server = Server::start().await;
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "get"] {
        let response = server.get(method, "/metrics").await;
        response.check("HTTP/1.1 405 Method Not Allowed", "method not allowed\n");
        assert_eq!(response.headers["allow"], "GET, HEAD");
    }
    server.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let server = Server::start().await;
    for request in [
        "hello\r\n\r\n",
        "GET /metrics HTTP/1.1\r\n\r\n", // no Host
        "GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", // two Hosts
        "GET  /metrics HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nBad Name: a\r\nHost: a\r\n\r\n",
        "GET /metrics HTTP/1.1\nHost: a\n\n\r\n\r\n",
    ] {
        server
            .exchange(request.as_bytes())
            .await
            .check("HTTP/1.1 400 Bad Request", "bad request\n");
    }
    server.stop().await;
}

#[tokio::test]
async fn other_http_versions_are_505() {
    let server = Server::start().await;
    server
        .exchange(b"GET /metrics HTTP/2.0\r\nHost: a\r\n\r\n")
        .await
        .check("HTTP/1.1 505 HTTP Version Not Supported", "http version not supported\n");
    // HTTP/1.0 needs no Host.
    server.exchange(b"GET /health/live HTTP/1.0\r\n\r\n").await.check("HTTP/1.1 200 OK", "ok\n");
    server.stop().await;
}

#[tokio::test]
async fn oversized_head_is_431() {
    let server = Server::start().await;
    let mut request = b"GET /metrics HTTP/1.1\r\nHost: a\r\nX-Filler: ".to_vec();
    request.resize(ADMIN_REQUEST_HEAD_BYTES_MAX + 1024, b'x');
    request.extend_from_slice(b"\r\n\r\n");
    server
        .exchange(&request)
        .await
        .check("HTTP/1.1 431 Request Header Fields Too Large", "request header fields too large\n");

    // Exactly at the bound is fine.
    let mut request = b"GET /health/live HTTP/1.1\r\nHost: a\r\nX-Filler: ".to_vec();
    request.resize(ADMIN_REQUEST_HEAD_BYTES_MAX - 4, b'x');
    request.extend_from_slice(b"\r\n\r\n");
    assert_eq!(request.len(), ADMIN_REQUEST_HEAD_BYTES_MAX);
    server.exchange(&request).await.check("HTTP/1.1 200 OK", "ok\n");
    server.stop().await;
}

#[tokio::test]
async fn head_split_across_writes_and_trailing_bytes() {
    let server = Server::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for piece in ["GET /health/li", "ve HTTP/1.1\r\nHost: a\r", "\n\r", "\nunread body bytes"] {
        stream.write_all(piece.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
    }
    read_response(&mut stream).await.check("HTTP/1.1 200 OK", "ok\n");
    server.stop().await;
}

#[tokio::test]
async fn truncated_head_is_400_and_empty_connection_is_closed() {
    let server = Server::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost:").await.unwrap();
    stream.shutdown().await.unwrap();
    read_response(&mut stream).await.check("HTTP/1.1 400 Bad Request", "bad request\n");

    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut bytes = Vec::new();
    timeout(BOUND, stream.read_to_end(&mut bytes)).await.unwrap().unwrap();
    assert!(bytes.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn slow_client_gets_408() {
    let limits = AdminLimits { read_timeout: Duration::from_millis(100), ..AdminLimits::default() };
    let server = Server::start_with(Some(limits)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
    read_response(&mut stream).await.check("HTTP/1.1 408 Request Timeout", "request timeout\n");
    server.stop().await;
}

#[tokio::test]
async fn connection_limit_queues_clients() {
    let read_timeout = Duration::from_millis(200);
    let limits = AdminLimits { connections_max: 1, read_timeout, ..AdminLimits::default() };
    let server = Server::start_with(Some(limits)).await;

    // `idle` takes the only slot and sends nothing; the next client waits in the backlog until
    // the server gives up on `idle` (which, like a real client, closes once answered).
    let idle_connected = Instant::now();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let idle = tokio::spawn(async move { read_response(&mut idle).await });
    let response = server.get("GET", "/health/live").await;
    assert!(idle_connected.elapsed() >= read_timeout, "served before the idle slot freed up");
    response.check("HTTP/1.1 200 OK", "ok\n");
    idle.await.unwrap().check("HTTP/1.1 408 Request Timeout", "request timeout\n");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_drops_idle_connections_and_stops_listening() {
    let server = Server::start().await; // default 10 s read timeout
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    // Accepted in order, so once this is answered `idle` has been accepted too.
    server.get("GET", "/health/live").await.check("HTTP/1.1 200 OK", "ok\n");

    let addr = server.addr;
    server.stop().await; // bounded by BOUND, well under the read timeout
    let mut bytes = Vec::new();
    timeout(BOUND, idle.read_to_end(&mut bytes)).await.unwrap().unwrap();
    assert!(bytes.is_empty(), "an idle connection is closed without a response");
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
}
