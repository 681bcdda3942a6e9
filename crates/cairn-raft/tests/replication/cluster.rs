//! [`Cluster`]: N nodes in the test's process, each a [`PeerNode`] on 127.0.0.1 with real
//! [`LogStore`]s in a temporary directory, hosting openraft groups over cairn's network
//! ([`Network`], [`RaftHandler`]). Every link of a node pair goes through a [`FaultProxy`] (the
//! lower id dials the higher one through it), so a test can cut, blackhole and heal links. A
//! node stops (its groups' `Raft`s shut down, its transport closed) and restarts from its
//! directory on the same listening port. Each node's disk is the real one behind a switch that
//! makes its fsyncs fail ([`FaultDisk`]); one group commit per node flushes all its groups' logs,
//! as a broker's does.
//!
//! Waits are on openraft's metrics and the transport's counters, each with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_metrics::Histogram;
use cairn_raft::CommitResponder;
use cairn_raft::peer::{ClusterId, PeerConfig, PeerNode, PeerStats, Router, Tcp};
use cairn_raft::{GroupCommit, GroupLog};
use cairn_raft::{Network, PartitionStateMachine, Proposal, RaftHandler, Timers, TypeConfig};
use cairn_testkit::{Fault, FaultProxy};
use cairn_types::RaftIndex;
use cairn_types::batch::BatchBuilder;
use openraft::async_runtime::WatchReceiver;
use openraft::{Raft, RaftMetrics, ServerState};
use tokio::net::{TcpListener, TcpSocket};

use crate::fault_disk::FaultDisk;
use crate::support::Opened;

/// The longest any condition of these tests may take to come true.
pub const WAIT: Duration = Duration::from_secs(30);

const CLUSTER: ClusterId = ClusterId(*b"cairn-raft-tests");

/// A group's `Raft` on one node.
pub type GroupRaft = Raft<TypeConfig, PartitionStateMachine<FaultDisk>>;

/// Test timers: 100 ms heartbeats, elections after 1–2 s (slow enough for a loaded 2-core
/// machine, fast enough for tests), checked by `Timers::validate`.
pub fn timers() -> Timers {
    let timers = Timers {
        heartbeat_ms: 100,
        heartbeat_min_interval_ms: 100,
        election_timeout_min_ms: 1000,
        election_timeout_max_ms: 2000,
    };
    timers.validate().expect("valid test timers");
    timers
}

/// One group on one node: its storage (flusher running) and its `Raft`.
pub struct Replica {
    pub opened: Opened<FaultDisk>,
    pub raft: GroupRaft,
}

/// A proposal's commit, to wait on. Its apply's receiver is kept: openraft drops the
/// responder of a write whose apply nobody waits for without reporting its commit.
pub struct Pending {
    pub commit: tokio::sync::oneshot::Receiver<cairn_raft::LogId>,
    pub applied: tokio::sync::oneshot::Receiver<Applied>,
}

type Applied = Result<
    openraft::raft::ClientWriteResponse<TypeConfig>,
    openraft::error::ClientWriteError<TypeConfig>,
>;

/// A running node.
pub struct Node {
    pub peer: PeerNode,
    pub router: Arc<Router>,
    pub network: Network,
    pub groups: BTreeMap<u64, Replica>,
    /// The node's disk: the real one, until a test makes its syncs fail.
    pub disk: FaultDisk,
    /// The group commit of every group's log on the node, as a broker runs it.
    pub group_commit: Arc<GroupCommit<GroupLog<FaultDisk>>>,
}

/// N nodes of one cluster (module docs).
pub struct Cluster {
    dir: tempfile::TempDir,
    timers: Timers,
    /// Each node's listening address, kept across restarts.
    addresses: BTreeMap<u64, SocketAddr>,
    /// The proxy of each pair `(low, high)`: `low` dials `high` through it.
    proxies: BTreeMap<(u64, u64), FaultProxy>,
    /// The running nodes.
    pub nodes: BTreeMap<u64, Node>,
    /// The groups every node hosts.
    groups: Vec<u64>,
    /// Restarts so far, for each new process's incarnation.
    incarnations: u64,
}

/// The one leader of `metrics` in a term above `above`, if every node follows it in its term
/// and a quorum acknowledged it (a leader takes writes only then: openraft's leader lease).
fn agreed_leader(metrics: &[RaftMetrics<TypeConfig>], above: u64) -> Option<(u64, u64)> {
    let leaders: Vec<&RaftMetrics<TypeConfig>> =
        metrics.iter().filter(|m| m.state == ServerState::Leader).collect();
    let [leader] = leaders[..] else { return None };
    leader.last_quorum_acked?;
    let agreed = metrics
        .iter()
        .all(|m| m.current_leader == Some(leader.id) && m.current_term == leader.current_term);
    (agreed && leader.current_term > above).then_some((leader.id, leader.current_term))
}

/// Binds `address` (port 0: any free one), reusing it if a node just left it.
fn bind(address: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(address).unwrap();
    socket.listen(128).unwrap()
}

impl Cluster {
    /// `ids` nodes each hosting `groups` with the test [`timers`]; nothing initialized yet.
    pub async fn start(ids: &[u64], groups: &[u64]) -> Cluster {
        Cluster::start_with(ids, groups, timers()).await
    }

    /// `ids` nodes each hosting `groups` with `timers`; nothing initialized yet.
    pub async fn start_with(ids: &[u64], groups: &[u64], timers: Timers) -> Cluster {
        timers.validate().expect("valid timers");
        let mut listeners = BTreeMap::new();
        let mut addresses = BTreeMap::new();
        for &id in ids {
            let listener = bind("127.0.0.1:0".parse().unwrap());
            addresses.insert(id, listener.local_addr().unwrap());
            listeners.insert(id, listener);
        }
        let mut proxies = BTreeMap::new();
        for &low in ids {
            for &high in ids.iter().filter(|&&high| high > low) {
                proxies.insert((low, high), FaultProxy::start(addresses[&high]));
            }
        }
        let mut cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
            timers,
            addresses,
            proxies,
            nodes: BTreeMap::new(),
            groups: groups.to_vec(),
            incarnations: 0,
        };
        for (id, listener) in listeners {
            cluster.run_node(id, listener).await;
        }
        cluster
    }

    /// Starts node `id` on `listener`: its transport, then every group from its directory.
    async fn run_node(&mut self, id: u64, listener: TcpListener) {
        self.incarnations += 1;
        let peers: BTreeMap<u64, String> = self
            .addresses
            .keys()
            .filter(|&&peer| peer != id)
            .map(|&peer| (peer, self.proxy(id, peer).address().to_string()))
            .collect();
        let mut config = PeerConfig::new(id, Some(CLUSTER), self.incarnations, peers);
        config.backoff_min = Duration::from_millis(10);
        config.backoff_max = Duration::from_millis(200);
        let router = Arc::new(Router::new());
        let peer = PeerNode::start(config, Tcp, listener, Arc::clone(&router));
        let network = Network::new(&peer);
        let mut groups = BTreeMap::new();
        let disk = FaultDisk::default();
        let group_commit = Arc::new(GroupCommit::new(Arc::new(Histogram::latency())));
        tokio::spawn(Arc::clone(&group_commit).run());
        for &group in &self.groups {
            let path = self.dir.path().join(format!("node-{id}")).join(format!("group-{group}"));
            let opened = Opened::open_in(disk.clone(), &path, &group_commit);
            let config = Arc::new(self.timers.openraft_config().unwrap());
            let raft =
                Raft::new(id, config, network.group(group), opened.store(), opened.state_machine())
                    .await
                    .unwrap();
            router.register(group, RaftHandler::new(raft.clone()));
            groups.insert(group, Replica { opened, raft });
        }
        self.nodes.insert(id, Node { peer, router, network, groups, disk, group_commit });
    }

    /// The proxy between `a` and `b`.
    pub fn proxy(&self, a: u64, b: u64) -> &FaultProxy {
        &self.proxies[&(a.min(b), a.max(b))]
    }

    /// Sets `fault` on every link of `node`; a [`Fault::Reject`] also closes its open
    /// connections and returns once `node` saw them closed (a blackhole keeps them open,
    /// silent).
    pub async fn isolate(&self, node: u64, fault: Fault) {
        for (&(low, high), proxy) in &self.proxies {
            if low == node || high == node {
                proxy.set(fault);
                if fault == Fault::Reject {
                    proxy.cut();
                }
            }
        }
        if fault == Fault::Reject {
            let transport = &self.nodes[&node].peer;
            for peer in transport.peer_ids() {
                let closed = transport.wait_disconnected(peer, WAIT).await;
                assert!(closed, "node {node}'s links to {peer} closed");
            }
        }
    }

    /// Lets every link pass again; open connections are closed, so that nothing half-dropped
    /// stays in a stream.
    pub fn heal(&self) {
        for proxy in self.proxies.values() {
            proxy.set(Fault::Pass);
            proxy.cut();
        }
    }

    /// Group `group`'s `Raft` on `node`.
    pub fn raft(&self, node: u64, group: u64) -> &GroupRaft {
        &self.nodes[&node].groups[&group].raft
    }

    /// Initializes `group` with every node a voter, from `node`.
    pub async fn initialize(&self, node: u64, group: u64) {
        let voters: BTreeSet<u64> = self.addresses.keys().copied().collect();
        self.raft(node, group).initialize(voters).await.unwrap();
    }

    /// Waits until the running nodes agree on a leader of `group` in a term above `above`,
    /// which is the only leader among them and holds a lease; returns it and its term.
    pub async fn leader(&self, group: u64, above: u64) -> (u64, u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut receivers: Vec<_> =
            self.nodes.values().map(|node| node.groups[&group].raft.metrics()).collect();
        loop {
            let metrics: Vec<RaftMetrics<TypeConfig>> =
                receivers.iter().map(|rx| rx.borrow_watched().clone()).collect();
            if let Some(found) = agreed_leader(&metrics, above) {
                return found;
            }
            let changed = futures_util::future::select_all(
                receivers.iter_mut().map(|rx| Box::pin(rx.changed())),
            );
            let waited = tokio::time::timeout_at(deadline, changed).await;
            assert!(waited.is_ok(), "no leader of group {group} above term {above} in {WAIT:?}");
        }
    }

    /// Proposes `count` batches to `group` on `node` (values `"{tag}-{n}"`), returning the
    /// receivers of their commits' log ids.
    pub async fn propose(&self, node: u64, group: u64, tag: &str, count: u64) -> Vec<Pending> {
        let batches = (0..count).map(|n| {
            let value = format!("{tag}-{n}");
            BatchBuilder::new(1_700_000_000_000).record(None, Some(value.as_bytes()), &[]).build()
        });
        self.propose_batches(node, group, batches).await
    }

    /// Proposes `batches` to `group` on `node`, returning the receivers of their commits.
    pub async fn propose_batches(
        &self,
        node: u64,
        group: u64,
        batches: impl IntoIterator<Item = Vec<u8>>,
    ) -> Vec<Pending> {
        let raft = self.raft(node, group);
        let mut commits = Vec::new();
        for (n, batch) in (1..).zip(batches) {
            let (responder, commit, applied) = CommitResponder::new();
            let proposal = Proposal { batch: Bytes::from(batch), ticket: n };
            raft.client_write_ff(proposal, Some(responder)).await.unwrap();
            commits.push(Pending { commit, applied });
        }
        commits
    }

    /// Proposes `count` batches on the leader and waits for every commit; returns the last
    /// committed index.
    pub async fn commit(&self, node: u64, group: u64, tag: &str, count: u64) -> u64 {
        let commits = self.propose(node, group, tag, count).await;
        self.committed(node, commits).await
    }

    /// Waits for every commit of `commits`, proposed to `node`; the last committed index.
    pub async fn committed(&self, node: u64, commits: Vec<Pending>) -> u64 {
        let mut last = 0;
        for pending in commits {
            let committed =
                tokio::time::timeout(WAIT, pending.commit).await.expect("committed in time");
            let Ok(committed) = committed else {
                let outcome = tokio::time::timeout(WAIT, pending.applied).await;
                panic!("a proposal to node {node} was not committed: {outcome:?}");
            };
            last = committed.index;
        }
        last
    }

    /// Waits until `node` applied `group` up to `index`.
    pub async fn applied(&self, node: u64, group: u64, index: u64) {
        let raft = self.raft(node, group);
        let why = format!("node {node} applies group {group} to {index}");
        raft.wait(Some(WAIT)).applied_index_at_least(Some(index), why).await.unwrap();
    }

    /// The stored bytes of `group`'s entries `1..=last` on `node`, as its log holds them.
    pub fn entry_bytes(&self, node: u64, group: u64, last: u64) -> Vec<u8> {
        let opened = &self.nodes[&node].groups[&group].opened;
        opened.group.with_log(|log| {
            let mut out = Vec::new();
            let mut from = log.start_index();
            while from.0 <= last {
                let headers = log
                    .read_entries(from, RaftIndex(last + 1), 1 << 20, &mut out)
                    .expect("a readable log");
                assert!(!headers.is_empty(), "node {node} group {group} lacks entry {}", from.0);
                from = RaftIndex(from.0 + headers.len() as u64);
            }
            out
        })
    }

    /// Asserts that every running node holds byte-identical entries of `group` up to `last`.
    pub fn assert_identical(&self, group: u64, last: u64) {
        let mut logs = self.nodes.keys().map(|&node| (node, self.entry_bytes(node, group, last)));
        let (first, expected) = logs.next().expect("a node");
        assert!(!expected.is_empty());
        for (node, bytes) in logs {
            assert!(bytes == expected, "group {group}: node {node}'s log differs from {first}'s");
        }
    }

    /// Stops `node`: every group's `Raft` shut down, its storage closed, its transport closed.
    pub async fn stop(&mut self, node: u64) {
        let Node { peer, groups, router, group_commit, .. } =
            self.nodes.remove(&node).expect("a running node");
        for (group, replica) in groups {
            router.remove(group);
            if let Err(error) = replica.raft.shutdown().await {
                // Only a group that stopped already (a failed disk: fail-stop) may fail to.
                let stopped = replica.raft.metrics().borrow_watched().running_state.is_err();
                assert!(stopped, "node {node} group {group} did not shut down: {error}");
            }
            drop(replica);
        }
        group_commit.close();
        peer.shutdown().await;
    }

    /// Starts `node` again from its directory, on its old port.
    pub async fn restart(&mut self, node: u64) {
        let listener = bind(self.addresses[&node]);
        self.run_node(node, listener).await;
    }

    /// `node`'s transport counters now.
    pub fn stats(&self, node: u64) -> PeerStats {
        self.nodes[&node].peer.stats().borrow().clone()
    }

    /// Shuts every node down.
    pub async fn shutdown(mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}
