//! A simulated host's software: a cairn node's peer transport over [`Turmoil`] and its
//! partition groups ([`RaftGroup`]s on the host's [`SimDisk`], every host a voter of every
//! group), registered in the [`World`] once running. turmoil runs it again from the start on a
//! restart; the disk is what survives.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cairn_metrics::Histogram;
use cairn_raft::peer::{ClusterId, PeerConfig, PeerNode, Router};
use cairn_raft::{GroupLog, GroupPeers, GroupState, Network, Placement, RaftGroup, Timers};
use cairn_storage::sim::SimDisk;
use cairn_storage::{Clock, Disk, FlushPolicy, LogConfig};

use crate::Setup;
use crate::transport::{Turmoil, TurmoilListener};
use crate::world::{Sink, World};

/// The port every host's peer transport listens on.
pub const PEER_PORT: u16 = 7000;

const CLUSTER: ClusterId = ClusterId(*b"cairn-simulation");

/// Wall-clock milliseconds of the simulation: a fixed epoch plus turmoil's elapsed time, so
/// that batch timestamps are the same in every run of a seed.
#[derive(Clone, Copy, Debug)]
pub struct SimClock;

/// The simulated epoch (2023-11-14).
const EPOCH_MS: i64 = 1_700_000_000_000;

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default().as_millis();
        EPOCH_MS.saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX))
    }
}

/// turmoil's name of node `node`'s host.
#[must_use]
pub fn host_name(node: u64) -> String {
    format!("n{node}")
}

/// Small segments, so that runs roll them; the group commit flushes.
fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 1024,
        flush: FlushPolicy::Manual,
        ..LogConfig::default()
    }
}

/// What turmoil runs on a host (module docs).
pub type Software = Pin<Box<dyn Future<Output = turmoil::Result>>>;

/// The software of node `node` on `disk`.
pub fn software(
    node: u64,
    setup: Arc<Setup>,
    disk: SimDisk,
    world: World,
) -> impl Fn() -> Software {
    move || -> Software { Box::pin(run(node, Arc::clone(&setup), disk.clone(), world.clone())) }
}

async fn run(node: u64, setup: Arc<Setup>, disk: SimDisk, world: World) -> turmoil::Result {
    let incarnation = {
        let mut state = world.lock();
        let count = state.incarnations.entry(node).or_default();
        *count += 1;
        let incarnation = *count;
        state.event(format!("start node={node} incarnation={incarnation}"));
        incarnation
    };
    let listener = TurmoilListener::bind(PEER_PORT).await?;
    let peers: BTreeMap<u64, String> = setup
        .nodes
        .iter()
        .filter(|&&peer| peer != node)
        .map(|&peer| (peer, format!("{}:{PEER_PORT}", host_name(peer))))
        .collect();
    let mut config = PeerConfig::new(node, Some(CLUSTER), incarnation, peers);
    config.backoff_min = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(200);
    let router = Arc::new(Router::new());
    let transport = PeerNode::start(config, Turmoil, listener, Arc::clone(&router));
    let peers = GroupPeers::new(node, Network::new(&transport), router, &setup.timers);
    for &group in &setup.groups {
        let raft = start_group(node, group, &setup, &peers, &disk, &world).await?;
        watch_leadership(node, group, &raft, &world);
        world.lock().hosts.entry(node).or_default().insert(group, Arc::new(raft));
    }
    // The node runs until turmoil crashes or restarts it.
    std::future::pending::<()>().await;
    drop(transport);
    Ok(())
}

async fn start_group(
    node: u64,
    group: u64,
    setup: &Setup,
    peers: &GroupPeers,
    disk: &SimDisk,
    world: &World,
) -> Result<RaftGroup<SimDisk>, Box<dyn Error>> {
    let dir = PathBuf::from(format!("/node-{node}/group-{group}"));
    disk.create_dir_all(&dir)?;
    let clock: Arc<dyn Clock> = Arc::new(SimClock);
    let histogram = Arc::new(Histogram::new(&[0.001, 0.01, 0.1])?);
    let log = GroupLog::open(disk.clone(), &dir, log_config(), Arc::clone(&clock), histogram)
        .map_err(|error| format!("node {node} group {group} does not open: {error}"))?;
    cairn_raft::runtime::spawn(log.clone().run_flusher());
    let sink = Arc::new(Sink { node, group, world: world.clone() });
    let voters: BTreeSet<u64> = setup.nodes.iter().copied().collect();
    let placement = Placement { node, voters: &voters, group, peers: Some(peers) };
    let timers: &Timers = &setup.timers;
    let raft = RaftGroup::start(log, placement, timers, sink, clock)
        .await
        .map_err(|error| format!("node {node} group {group} does not start: {error}"))?;
    Ok(raft)
}

/// Records every term in which `node` leads `group` (checked: one leader per term).
fn watch_leadership(node: u64, group: u64, raft: &RaftGroup<SimDisk>, world: &World) {
    let mut roles = raft.roles();
    let world = world.clone();
    tokio::task::spawn_local(async move {
        let mut role = roles.current();
        loop {
            if role.state == GroupState::Leader {
                let mut state = world.lock();
                let leaders = state.leaders.entry((group, role.term)).or_default();
                if leaders.insert(node) {
                    state.event(format!("leader group={group} term={} node={node}", role.term));
                }
            }
            match roles.changed().await {
                Some(next) => role = next,
                None => return,
            }
        }
    });
}
