//! cairn's deterministic simulation of replication (RFC 0003 §8): a whole cluster in one
//! process on turmoil's simulated network and clock, each host a cairn node (its peer
//! transport over [`Turmoil`], a few partition groups on its own `SimDisk`), a client writing
//! with `acks=all`, a consumer group whose coordinator runs on the leader of one group (the
//! offsets partition, RFC 0006 and 0008), and faults chosen by one seed. After healing,
//! [`simulate`] checks that no acknowledged record was lost, that committed prefixes are
//! byte-identical, that offsets are consecutive and that no term had two leaders; and of the
//! consumer group, that no partition was owned by two members at once (at every step), that no
//! acknowledged commit was lost, and that the group settled.
//!
//! - [`transport`]: [`Turmoil`], cairn-raft's peer `Transport` over turmoil's TCP.
//! - `host`: a host's software (the node, its groups, its cleaners and coordinator) and
//!   `SimClock`.
//! - `client`: the workload and the fences written after healing.
//! - `coordinator`: the group coordinator each host runs on its replica of the offsets group
//!   while it leads (a cairn-group `Shard` loaded from the log, its writes proposed).
//! - `members`: the consumer group's members, heartbeating and committing.
//! - `faults`: the seeded fault schedule.
//! - `check`: the checks over every replica's log and of the consumer group.
//! - `world`: what hosts, client and driver share, and the event trace.
//!
//! Determinism: everything runs on turmoil's one thread and its simulated time, every choice
//! drawn from the seed, inside [`cairn_raft::runtime::Deterministic`] (openraft's jitter from
//! the seed, blocking work inline, tasks on the host's `LocalSet`), so a seed replays one trace;
//! what that takes of the code it runs is in `docs/internals/replication.md` ("Simulation").

mod check;
mod client;
mod coordinator;
mod faults;
mod host;
mod members;
mod rng;
pub mod transport;
mod world;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cairn_raft::Timers;
use cairn_raft::runtime::Deterministic;
use cairn_storage::sim::SimDisk;

pub use transport::{Turmoil, TurmoilListener};

use crate::faults::Faults;
use crate::world::World;

/// The longest a message waits on a healthy link.
pub const MAX_LATENCY: Duration = Duration::from_millis(20);

/// The simulated time a run may take, all of it: workload, healing and convergence.
const SIMULATION_MS: u64 = 90_000;

/// What a run simulates.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The nodes (hosts `n{id}`), every one a voter of every group.
    pub nodes: Vec<u64>,
    /// The partition groups every node hosts.
    pub groups: Vec<u64>,
    /// The groups' Raft timers.
    pub timers: Timers,
    /// Simulated milliseconds of writes under faults, before the cluster is healed.
    pub workload_ms: u64,
    /// Simulated milliseconds between two rounds of proposals (one per group).
    pub propose_every_ms: u64,
    /// A span of the workload (simulated milliseconds, from and until) in which the client
    /// writes nothing, so that the groups go idle and quiesce (RFC 0004) while faults go on, and
    /// the writes after it wake them.
    pub pause_ms: Option<(u64, u64)>,
    /// Groups the client writes to as an idempotent producer (RFC 0006 §4), one batch in
    /// flight, retrying it until it is acknowledged (across leader changes); the others get
    /// fire-and-forget records. Checked: each acknowledged record once, none twice, in order.
    pub idempotent: Vec<u64>,
    /// Groups compacted (RFC 0007): the client's records there have keys (a few, written over
    /// and over), their logs have small segments, and each host runs a cleaner that carries out
    /// the rounds its replica applied and, on the leader, proposes the next. Checked: after the
    /// rounds through the fence are carried out everywhere, the committed prefixes are still
    /// byte-identical, and an acknowledged record is gone only behind a newer one of its key.
    pub compacted: Vec<u64>,
    /// The group that is a partition of the offsets topic (RFC 0006): each host runs a group
    /// coordinator on its replica of it, serving while that replica leads (loaded from its
    /// committed log), and three consumer-protocol members (RFC 0008) heartbeat and commit to
    /// the leader's, one of them leaving and rejoining, while the faults move it. The client
    /// writes its records there too, which the coordinator's load skips. Checked: no partition
    /// owned by two members at once, no acknowledged commit lost, the group settled after
    /// healing. `None`: no consumer group.
    pub offsets: Option<u64>,
    /// Whether partitions and random loss drop TCP segments for good, as turmoil does, instead
    /// of holding them until the link heals (see `faults`): off by default, since the peer
    /// transport does not yet recover a lane whose stream stalls silently.
    pub lossy_links: bool,
}

impl Default for Setup {
    /// Three nodes, three groups (group 1 the offsets partition), 100 ms heartbeats, elections
    /// after 1–2 s, 10 s of faults.
    fn default() -> Setup {
        Setup {
            nodes: vec![1, 2, 3],
            groups: vec![1, 2, 3],
            timers: Timers {
                heartbeat_ms: 100,
                heartbeat_min_interval_ms: 100,
                election_timeout_min_ms: 1000,
                election_timeout_max_ms: 2000,
            },
            workload_ms: 10_000,
            propose_every_ms: 25,
            pause_ms: Some((3_000, 6_500)),
            idempotent: vec![3],
            compacted: vec![2],
            offsets: Some(1),
            lossy_links: false,
        }
    }
}

/// What a passing run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Records acknowledged to the client (fences and idempotent records included).
    pub acked: usize,
    /// Faults injected.
    pub faults: usize,
    /// Leader terms seen over all groups.
    pub terms: usize,
    /// Retries of the idempotent producer answered as repeats of a batch in the log.
    pub duplicates: usize,
    /// Compaction rounds carried out, over every replica, by the cleaners while faults ran.
    pub rounds: usize,
    /// Times the consumer group's epoch rose (members joined, left or were fenced).
    pub rebalances: usize,
    /// Loads of the group coordinator in a new term after one in an earlier term: failovers.
    pub coordinator_changes: usize,
    /// Of those, loads that found the consumer group mid-rebalance (a member reconciling, or
    /// the assignment behind the group epoch).
    pub failovers_mid_rebalance: usize,
    /// Offset commits acknowledged to the members (one per partition).
    pub commits: usize,
    /// The run's event trace, in order.
    pub trace: Vec<String>,
    /// FNV-1a of the trace: equal for equal runs.
    pub trace_hash: u64,
}

/// A run that broke a check or could not finish; its `Display` says how to replay it.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// What went wrong.
    pub violations: Vec<String>,
    /// The last events before the failure.
    pub trace_tail: Vec<String>,
    /// Every event of the run until the failure (`cairn-sim --trace` prints them).
    pub trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "simulation seed {} failed:", self.seed)?;
        for violation in &self.violations {
            writeln!(f, "  - {violation}")?;
        }
        writeln!(f, "last events:")?;
        for event in &self.trace_tail {
            writeln!(f, "  {event}")?;
        }
        write!(f, "replay: {}", replay_command(self.seed))
    }
}

impl std::error::Error for Failure {}

/// The command that replays `seed`.
#[must_use]
pub fn replay_command(seed: u64) -> String {
    format!("cargo xtask sim --seeds 1 --from {seed}")
}

/// Runs the simulation of `seed` over `setup` and checks it (module docs).
///
/// # Errors
/// [`Failure`] if a check failed, a host's software failed, or the cluster did not converge in
/// the simulated time.
pub fn simulate(seed: u64, setup: &Setup) -> Result<Report, Failure> {
    // Every host runs on this thread: openraft's jitter follows the seed, blocking work inline.
    let _deterministic = Deterministic::enter(seed.rotate_left(17) ^ 0x6a09_e667_f3bc_c908);
    let world = World::default();
    let setup = Arc::new(setup.clone());
    let disks: BTreeMap<u64, SimDisk> =
        setup.nodes.iter().map(|&node| (node, SimDisk::new(seed ^ node.rotate_left(32)))).collect();
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_millis(SIMULATION_MS))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(MAX_LATENCY)
        .repair_rate(0.01)
        .build();
    for (&node, disk) in &disks {
        sim.host(
            host::host_name(node),
            host::software(node, Arc::clone(&setup), disk.clone(), world.clone()),
        );
    }
    sim.client("client", client::run(Arc::clone(&setup), world.clone()));
    sim.client("members", members::run(seed, Arc::clone(&setup), world.clone()));
    let fail = |violations: Vec<String>| {
        let state = world.lock();
        let tail = state.trace.iter().rev().take(30).rev().cloned().collect();
        Failure { seed, violations, trace_tail: tail, trace: state.trace.clone() }
    };
    let faults =
        drive(seed, &mut sim, &setup, &disks, &world).map_err(|error| fail(vec![error]))?;
    converge(&mut sim, &setup, &world).map_err(|error| {
        let state = world.lock();
        let mut violations = vec![error];
        violations.extend(setup.groups.iter().map(|&g| check::positions(&state, &setup.nodes, g)));
        drop(state);
        fail(violations)
    })?;
    let state = world.lock();
    let violations = check::violations(&state, &setup);
    drop(state);
    if !violations.is_empty() {
        return Err(fail(violations));
    }
    let state = world.lock();
    Ok(Report {
        seed,
        acked: state.acks.len() + state.idempotent_acks.len(),
        faults,
        terms: state.leaders.len(),
        duplicates: state.duplicates,
        rounds: state.rounds,
        rebalances: state.coordination.rebalances,
        coordinator_changes: state.coordination.changes,
        failovers_mid_rebalance: state.coordination.failovers_mid_rebalance,
        commits: state.coordination.commits,
        trace_hash: rng::fnv1a(&state.trace),
        trace: state.trace.clone(),
    })
}

/// Steps the simulation through the workload with faults, heals it, and steps until the
/// client's fences are committed and the members are done; returns the number of faults.
fn drive(
    seed: u64,
    sim: &mut turmoil::Sim<'_>,
    setup: &Setup,
    disks: &BTreeMap<u64, SimDisk>,
    world: &World,
) -> Result<usize, String> {
    let mut faults = Faults::new(seed, &setup.nodes, setup.lossy_links);
    let workload = Duration::from_millis(setup.workload_ms);
    loop {
        if sim.elapsed() < workload {
            faults.step(sim, disks, world);
        } else if !world.lock().healed {
            faults.heal_all(sim, world);
            world.lock().healed = true;
        }
        let done = sim.step().map_err(|error| format!("the simulation stopped: {error}"))?;
        check::exclusive(&mut world.lock(), sim.elapsed());
        if done {
            break;
        }
        past_deadline(sim, unfinished(&world.lock(), setup))?;
        progress(sim, world);
    }
    let state = world.lock();
    Ok(state.trace.iter().filter(|event| is_fault(event)).count())
}

/// What the clients had not done when the time ran out.
fn unfinished(state: &world::State, setup: &Setup) -> &'static str {
    if setup.groups.iter().any(|group| !state.fences.contains_key(group)) {
        "the client's fences were not committed"
    } else if setup.offsets.is_some() && !state.coordination.settled {
        "the consumer group did not settle"
    } else {
        "the final coordinator's offsets were not read"
    }
}

fn is_fault(event: &str) -> bool {
    ["crash", "bounce", "partition", "hold", "degrade"]
        .iter()
        .any(|kind| event.split(' ').nth(1) == Some(kind))
}

/// Steps until every replica holds its group's fence.
fn converge(sim: &mut turmoil::Sim<'_>, setup: &Setup, world: &World) -> Result<(), String> {
    loop {
        let state = world.lock();
        let done = setup.groups.iter().all(|&group| check::caught_up(&state, group));
        drop(state);
        if done {
            return Ok(());
        }
        sim.step()
            .map_err(|error| format!("replicas did not catch up with the fences: {error}"))?;
        check::exclusive(&mut world.lock(), sim.elapsed());
        past_deadline(sim, "replicas did not catch up with the fences")?;
        progress(sim, world);
    }
}

/// With `CAIRN_SIM_PROGRESS` set, prints each simulated second's count of events and acks.
#[expect(clippy::print_stderr, reason = "an opt-in progress line for sweeps")]
fn progress(sim: &turmoil::Sim<'_>, world: &World) {
    let elapsed = sim.elapsed();
    if elapsed.subsec_millis() == 0 && std::env::var_os("CAIRN_SIM_PROGRESS").is_some() {
        let state = world.lock();
        let last = state.trace.last().cloned().unwrap_or_default();
        eprintln!(
            "{elapsed:?}: {} acks, {} events, last: {last}",
            state.acks.len(),
            state.trace.len()
        );
    }
}

/// Fails the run once the simulated time is up (turmoil's own limit binds `Sim::run` only).
fn past_deadline(sim: &turmoil::Sim<'_>, what: &str) -> Result<(), String> {
    if sim.elapsed() > Duration::from_millis(SIMULATION_MS) {
        return Err(format!("{what} in {SIMULATION_MS} ms of simulated time"));
    }
    Ok(())
}
