//! Three real `cairn serve` processes with their etcd API (`--etcd-listen`), and the etcd
//! clients the tests use on them.

use std::time::Duration;

use cairn_testkit::{ProcessNode, ProcessNodeBuilder, free_ports};
use etcd_client::Client;
use tempfile::TempDir;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// How long the nodes have to start and agree.
const READY: Duration = Duration::from_secs(60);
/// How long one operation may take before its outcome counts as unknown.
pub const OPERATION: Duration = Duration::from_secs(3);

/// Three nodes, started and ready.
pub fn start() -> Vec<Member> {
    let mut members = members();
    for member in &mut members {
        member.node = Some(member.builder.spawn_in(TempDir::new().expect("a directory")));
    }
    for member in &mut members {
        member.node.as_mut().expect("started").wait_ready(READY);
    }
    members
}

/// Stops every node still running (SIGTERM, a clean exit).
pub fn stop(members: Vec<Member>) {
    for member in members {
        if let Some(node) = member.node {
            node.stop();
        }
    }
}

impl Member {
    /// SIGKILLs the node, keeping its data directory for [`Member::restart`].
    pub fn kill(&mut self) {
        let node = self.node.take().expect("the node runs");
        self.dir = Some(node.kill());
    }

    /// Starts the node killed before on its data directory (not waiting for readiness).
    pub fn restart(&mut self) {
        let dir = self.dir.take().expect("killed before");
        self.node = Some(self.builder.spawn_in(dir));
    }
}

pub struct Member {
    builder: ProcessNodeBuilder,
    /// Its etcd API's address.
    pub etcd: String,
    /// The process, while it runs.
    pub node: Option<ProcessNode>,
    /// The data directory of a killed node, for its restart.
    dir: Option<TempDir>,
}

fn members() -> Vec<Member> {
    let ports = free_ports(6);
    let peers: Vec<String> =
        (1..=3).zip(&ports).map(|(id, port)| format!("{id}=127.0.0.1:{port}")).collect();
    let peers = peers.join(",");
    (1..=3_u64)
        .map(|id| {
            let peer = ports[usize::try_from(id - 1).expect("a small id")];
            let etcd = format!("127.0.0.1:{}", ports[usize::try_from(id + 2).expect("a small id")]);
            let builder = ProcessNode::builder(CAIRN).args([
                "--node-id".to_owned(),
                id.to_string(),
                "--peer-listen".to_owned(),
                format!("127.0.0.1:{peer}"),
                "--peers".to_owned(),
                peers.clone(),
                "--etcd-listen".to_owned(),
                etcd.clone(),
            ]);
            Member { builder, etcd, node: None, dir: None }
        })
        .collect()
}

/// The node leading the coordination group, as any answering node says (etcd's member id is
/// the node id plus one).
pub async fn leader(members: &[Member]) -> Option<usize> {
    for member in members.iter().filter(|m| m.node.is_some()) {
        let Ok(mut client) = connect(&member.etcd).await else { continue };
        let status = tokio::time::timeout(OPERATION, client.status()).await;
        if let Ok(Ok(status)) = status
            && status.leader() > 0
        {
            return usize::try_from(status.leader() - 2).ok();
        }
    }
    None
}

/// The node leading the coordination group, waited for (an election may be under way).
pub async fn wait_leader(members: &[Member]) -> usize {
    let deadline = std::time::Instant::now() + READY;
    loop {
        if let Some(leader) = leader(members).await {
            return leader;
        }
        assert!(std::time::Instant::now() < deadline, "no leader within {READY:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn connect(endpoint: &str) -> Result<Client, etcd_client::Error> {
    let options =
        etcd_client::ConnectOptions::new().with_connect_timeout(OPERATION).with_timeout(OPERATION);
    Client::connect([endpoint], Some(options)).await
}
