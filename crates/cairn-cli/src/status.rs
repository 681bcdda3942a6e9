//! `cairn cluster status`: the cluster as one node sees it, from that node's admin endpoint
//! (`GET /cluster`, `cairn_node::status::ClusterStatus`): nodes with addresses, rack, liveness
//! and core role, the core's leader and term, the node's commit and apply of the core's log.
//! A table for people, `--json` (the document as the node sent it) for machines.
//!
//! The admin endpoint speaks plain HTTP/1.1, one request per connection; this is its client:
//! one `GET`, the whole exchange within `--timeout-ms`, the answer at most
//! [`STATUS_RESPONSE_BYTES_MAX`].

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cairn_node::status::{CLUSTER_STATUS_VERSION, ClusterStatus, LivenessView};
use clap::Args;

/// Largest answer read: far above the document of the most nodes a cluster may have.
pub const STATUS_RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// `cairn cluster status` flags.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The admin HTTP address of the node to ask (its `--admin-listen`).
    #[arg(long, env = "CAIRN_ADMIN", default_value = "127.0.0.1:9644", value_name = "HOST:PORT")]
    admin: String,
    /// Print the status document as JSON (as the node sent it) instead of a table.
    #[arg(long)]
    json: bool,
    /// Longest the whole exchange with the node may take, in ms.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    timeout_ms: u64,
}

/// Asks the node at `--admin` and prints what it answered.
///
/// # Errors
/// A clear message if the node is unreachable, answers an error, or something else than a
/// status document.
pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let body = get_cluster(&args.admin, timeout)?;
    let status: ClusterStatus = serde_json::from_str(&body)
        .with_context(|| format!("the node at {} answered no cluster status", args.admin))?;
    if status.version != CLUSTER_STATUS_VERSION {
        bail!(
            "the node at {} answered cluster status version {}; this cairn reads version {}",
            args.admin,
            status.version,
            CLUSTER_STATUS_VERSION
        );
    }
    if args.json {
        return crate::output::print(&format!("{}\n", body.trim_end()));
    }
    crate::output::print(&table(&status))
}

/// `GET /cluster` on `admin`: the body of a 200 answer.
fn get_cluster(admin: &str, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    let unreachable = |why: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "cannot reach the admin endpoint of a node at {admin}: {why} (is a node running \
             with --admin-listen {admin}?)"
        )
    };
    let address = admin
        .to_socket_addrs()
        .with_context(|| format!("--admin {admin} is not a HOST:PORT"))?
        .next()
        .with_context(|| format!("--admin {admin} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout).map_err(|e| unreachable(&e))?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| unreachable(&e))?;
    let request = format!("GET /cluster HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| unreachable(&e))?;
    let response = read_all(&mut stream, deadline).map_err(|e| unreachable(&e))?;
    let (code, body) = parse_response(&response)
        .with_context(|| format!("the node at {admin} answered no valid HTTP response"))?;
    if code != 200 {
        bail!("the node at {admin} answered {code}: {}", body.trim_end());
    }
    Ok(body)
}

/// Reads until the server closes, by `deadline`, at most [`STATUS_RESPONSE_BYTES_MAX`].
fn read_all(stream: &mut TcpStream, deadline: Instant) -> std::io::Result<Vec<u8>> {
    let mut response = Vec::new();
    let mut chunk = [0_u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no whole answer in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Ok(response);
        }
        if response.len() + read > STATUS_RESPONSE_BYTES_MAX {
            let why = format!("an answer above {STATUS_RESPONSE_BYTES_MAX} bytes");
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
        }
        response.extend_from_slice(&chunk[..read]);
    }
}

/// The status code and body of a whole HTTP/1.1 response.
fn parse_response(response: &[u8]) -> anyhow::Result<(u16, String)> {
    let text = std::str::from_utf8(response).context("not UTF-8")?;
    let (head, body) = text.split_once("\r\n\r\n").context("no end of the head")?;
    let status_line = head.lines().next().unwrap_or_default();
    let code = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("status line {status_line:?}"))?;
    Ok((code, body.to_owned()))
}

/// The status as a table for people.
fn table(status: &ClusterStatus) -> String {
    let mut out = String::new();
    let index = |index: Option<u64>| index.map_or_else(|| "-".to_owned(), |i| i.to_string());
    let _ = writeln!(out, "cluster id: {}", status.cluster_id.as_deref().unwrap_or("(none)"));
    let _ = writeln!(out, "answered by: node {}", status.node_id);
    let leader = status.core.leader.map_or_else(|| "(none)".to_owned(), |id| id.to_string());
    let _ = writeln!(
        out,
        "core: leader {leader}, term {}, committed {}, applied {}",
        status.core.term,
        index(status.core.committed_index),
        index(status.core.applied_index)
    );
    let _ = writeln!(out, "nodes: {}", status.nodes.len());
    let mut rows = vec![["ID", "KAFKA", "PEER", "RACK", "LIVENESS", "CORE"].map(str::to_owned)];
    for node in &status.nodes {
        let role = match (status.core.leader == Some(node.id), node.voter) {
            (true, _) => "leader",
            (false, true) => "voter",
            (false, false) => "-",
        };
        let liveness = match node.liveness {
            LivenessView::Alive => "alive",
            LivenessView::Dead => "dead",
        };
        rows.push([
            node.id.to_string(),
            node.kafka.clone(),
            node.peer.clone(),
            node.rack.clone().unwrap_or_else(|| "-".to_owned()),
            liveness.to_owned(),
            role.to_owned(),
        ]);
    }
    let widths: Vec<usize> =
        (0..6).map(|c| rows.iter().map(|row| row[c].chars().count()).max().unwrap_or(0)).collect();
    for row in &rows {
        let cells: Vec<String> =
            row.iter().zip(&widths).map(|(cell, &width)| format!("{cell:<width$}")).collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    out
}
