//! A simulated host's software: a cairn node's peer transport over [`Turmoil`] and its
//! partition groups ([`RaftGroup`]s on the host's [`SimDisk`], every host a voter of every
//! group), registered in the [`World`] once running, with a cleaner per compacted group and a
//! group coordinator on its replica of the offsets group (`coordinator`). turmoil runs it
//! again from the start on a restart; the disk is what survives.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cairn_meta::CompactionConfig;
use cairn_metrics::Histogram;
use cairn_raft::compaction;
use cairn_raft::peer::{ClusterId, PeerConfig, PeerNode, Router};
use cairn_raft::{GroupLog, GroupPeers, GroupState, Network, Placement, RaftGroup, Timers};
use cairn_storage::sim::SimDisk;
use cairn_storage::{Clock, Disk, FlushPolicy, LogConfig};

use tokio::sync::watch;

use crate::transport::{Turmoil, TurmoilListener};
use crate::world::{Applied, Sink, World};
use crate::{Setup, coordinator};

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

/// Small segments, so that runs roll them (smaller still where rounds clean them); the group
/// commit flushes.
fn log_config(compacted: bool) -> LogConfig {
    LogConfig {
        segment_bytes: if compacted { 4 * 1024 } else { 16 * 1024 },
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
        let (raft, applied) = start_group(node, group, &setup, &peers, &disk, &world).await?;
        watch_leadership(node, group, &raft, &world);
        let raft = Arc::new(raft);
        if setup.compacted.contains(&group) {
            clean(node, group, Arc::clone(&raft), world.clone());
        }
        if setup.offsets == Some(group) {
            let raft = Arc::clone(&raft);
            let coordinator = coordinator::run(node, group, raft, applied, world.clone());
            tokio::task::spawn_local(coordinator);
        }
        world.lock().hosts.entry(node).or_default().insert(group, raft);
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
) -> Result<(RaftGroup<SimDisk>, watch::Receiver<Applied>), Box<dyn Error>> {
    let dir = PathBuf::from(format!("/node-{node}/group-{group}"));
    disk.create_dir_all(&dir)?;
    let clock: Arc<dyn Clock> = Arc::new(SimClock);
    let histogram = Arc::new(Histogram::new(&[0.001, 0.01, 0.1])?);
    let config = log_config(setup.compacted.contains(&group));
    let log = GroupLog::open(disk.clone(), &dir, config, Arc::clone(&clock), histogram)
        .map_err(|error| format!("node {node} group {group} does not open: {error}"))?;
    cairn_raft::runtime::spawn(log.clone().run_flusher());
    let (applied, applied_watch) = watch::channel(None);
    let sink = Arc::new(Sink { node, group, world: world.clone(), applied });
    let voters: BTreeSet<u64> = setup.nodes.iter().copied().collect();
    let placement = Placement { node, voters: &voters, group, peers: Some(peers) };
    let timers: &Timers = &setup.timers;
    let raft = RaftGroup::start(log, placement, timers, sink, clock)
        .await
        .map_err(|error| format!("node {node} group {group} does not start: {error}"))?;
    Ok((raft, applied_watch))
}

/// How often a host's cleaner looks at a compacted group.
const CLEAN_EVERY: Duration = Duration::from_millis(500);

/// A leader's map holds fewer keys than the client writes (`client::KEYS`), so rounds end
/// where the map fills.
const KEYS_MAX: usize = 6;

/// A cleaner's compaction configs: every round due at once, tombstones kept a second.
const COMPACTION: CompactionConfig = CompactionConfig {
    min_cleanable_dirty_ratio_millionths: 0,
    min_compaction_lag_ms: 0,
    max_compaction_lag_ms: i64::MAX,
    delete_retention_ms: 1000,
};

/// Runs `node`'s cleaner of `group` until the driver heals the cluster (module docs of
/// `Setup::compacted`): carries out the rounds the replica applied, and on the leader proposes
/// the next round and waits for its commit. A round left queued at a crash is carried out
/// after the restart; the checks carry out what the cleaners left.
fn clean(node: u64, group: u64, raft: crate::world::Group, world: World) {
    tokio::task::spawn_local(async move {
        loop {
            tokio::time::sleep(CLEAN_EVERY).await;
            if world.lock().healed {
                return;
            }
            match compaction::carry_out_rounds(raft.log(), &mut compaction::Throttle::new(None)) {
                Ok(done) if done.rounds > 0 => {
                    let mut state = world.lock();
                    state.rounds += done.rounds;
                    state
                        .event(format!("cleaned group={group} node={node} rounds={}", done.rounds));
                }
                Ok(_) => {}
                Err(error) => {
                    world.lock().event(format!("clean failed group={group} node={node}: {error}"));
                }
            }
            if raft.roles().current().state == GroupState::Leader {
                propose_round(node, group, &raft, &world).await;
            }
        }
    });
}

/// Proposes the next compaction round of `group` on its leader `node`, if one is due.
async fn propose_round(node: u64, group: u64, raft: &crate::world::Group, world: &World) {
    let Ok(committed) = raft.log().committed_offset() else { return };
    let now_ms = SimClock.now_ms();
    let mut unlimited = compaction::Throttle::new(None);
    let Ok(Some(round)) =
        compaction::plan_round(raft.log(), COMPACTION, committed, now_ms, KEYS_MAX, &mut unlimited)
    else {
        return;
    };
    let batch = cairn_raft::codec::compaction_batch(&round);
    let Ok(Some(pending)) = raft.propose(batch, cairn_raft::Proposal::TICKET_NONE, true).await
    else {
        return;
    };
    if let Ok(log_id) = pending.committed().await {
        let (from, to) = (round.from.0, round.to.0);
        let index = log_id.index;
        world.lock().event(format!("round group={group} node={node} index={index} {from}..{to}"));
    }
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
