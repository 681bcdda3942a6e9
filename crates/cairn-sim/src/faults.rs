//! The driver's faults, chosen by the seed between turmoil steps: crashes (the host's
//! [`SimDisk`] losing and tearing its unsynced writes) and restarts, process restarts (the disk
//! kept), partitions (an isolated leader, a minority from the majority), held links (delay,
//! then everything delivered at once), and latency spikes. At most one host is down and one
//! network fault is active at a time, so a majority can always make progress once a fault heals.
//!
//! A partition holds the links' segments and delivers them when it heals, as TCP's
//! retransmissions would. turmoil's own partitions and random loss drop segments of a stream for
//! good, which leaves a hole that real TCP never leaves (the stream stalls forever, silently):
//! those, and one-way partitions (turmoil has no one-way hold), run only with
//! [`Setup::lossy_links`](crate::Setup::lossy_links).

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_storage::sim::SimDisk;

use crate::host::host_name;
use crate::rng::Rng;
use crate::world::World;

/// A host that is down, and when it comes back.
struct Down {
    node: u64,
    until: Duration,
}

/// The network fault in force, and when it heals.
struct Network {
    until: Duration,
}

/// The fault schedule of one run (module docs).
pub struct Faults {
    rng: Rng,
    nodes: Vec<u64>,
    /// When the next fault is chosen.
    next: Duration,
    down: Option<Down>,
    network: Option<Network>,
    /// Whether partitions and loss drop segments (module docs).
    lossy: bool,
}

impl Faults {
    /// The schedule of `seed` over `nodes`.
    #[must_use]
    pub fn new(seed: u64, nodes: &[u64], lossy: bool) -> Faults {
        let mut rng = Rng::new(seed ^ 0x5eed_fa17);
        let next = Duration::from_millis(rng.range(1500, 3000));
        Faults { rng, nodes: nodes.to_vec(), next, down: None, network: None, lossy }
    }

    /// Ends faults whose time is up and starts the next one when due.
    pub fn step(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        disks: &BTreeMap<u64, SimDisk>,
        world: &World,
    ) {
        let now = sim.elapsed();
        if self.down.as_ref().is_some_and(|down| down.until <= now) {
            self.restart(sim, world);
        }
        if self.network.as_ref().is_some_and(|network| network.until <= now) {
            self.heal_network(sim, world);
        }
        if now < self.next {
            return;
        }
        self.next = now + Duration::from_millis(self.rng.range(300, 2000));
        let lasts = Duration::from_millis(self.rng.range(500, 4000));
        match self.rng.range(0, 9) {
            0 | 1 => self.crash(sim, disks, world, true, now + lasts),
            2 => self.crash(sim, disks, world, false, now + lasts),
            3 => self.restart_process(sim, world),
            4 | 5 => self.partition(sim, world, false, now + lasts),
            6 => self.partition(sim, world, true, now + lasts),
            7 => self.hold(sim, world, now + lasts),
            _ => self.degrade(sim, world, now + lasts),
        }
    }

    /// Heals every fault: the down host restarts, every link is repaired and loses nothing.
    pub fn heal_all(&mut self, sim: &mut turmoil::Sim<'_>, world: &World) {
        if self.down.is_some() {
            self.restart(sim, world);
        }
        self.heal_network(sim, world);
    }

    /// A leader of some group if one runs, else any running host.
    fn victim(&mut self, world: &World) -> u64 {
        let state = world.lock();
        let group = state.hosts.values().flat_map(|groups| groups.keys()).next().copied();
        let leader = group.and_then(|group| state.leader_of(group)).map(|(node, _)| node);
        drop(state);
        leader.unwrap_or_else(|| self.rng.pick(&self.nodes))
    }

    fn crash(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        disks: &BTreeMap<u64, SimDisk>,
        world: &World,
        leader: bool,
        until: Duration,
    ) {
        if self.down.is_some() {
            return;
        }
        let node = if leader { self.victim(world) } else { self.rng.pick(&self.nodes) };
        world.lock().host_down(node);
        sim.crash(host_name(node));
        if let Some(disk) = disks.get(&node) {
            disk.crash();
        }
        world.lock().event_at(sim.elapsed(), format!("crash node={node} leader={leader}"));
        self.down = Some(Down { node, until });
    }

    fn restart(&mut self, sim: &mut turmoil::Sim<'_>, world: &World) {
        if let Some(Down { node, .. }) = self.down.take() {
            world.lock().event_at(sim.elapsed(), format!("restart node={node}"));
            sim.bounce(host_name(node));
        }
    }

    /// A process restart: the host's software starts again, its disk as the kernel left it.
    fn restart_process(&mut self, sim: &mut turmoil::Sim<'_>, world: &World) {
        if self.down.is_some() {
            return;
        }
        let node = self.rng.pick(&self.nodes);
        world.lock().host_down(node);
        world.lock().event_at(sim.elapsed(), format!("bounce node={node}"));
        sim.bounce(host_name(node));
    }

    /// Cuts one node (a leader, or any) from the others, both ways or only its sends.
    fn partition(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        world: &World,
        one_way: bool,
        until: Duration,
    ) {
        if self.network.is_some() {
            return;
        }
        let node =
            if self.rng.range(0, 2) == 0 { self.victim(world) } else { self.rng.pick(&self.nodes) };
        let one_way = one_way && self.lossy;
        for &other in self.nodes.iter().filter(|&&other| other != node) {
            let (node, other) = (host_name(node), host_name(other));
            match (self.lossy, one_way) {
                (_, true) => sim.partition_oneway(node, other),
                (true, false) => sim.partition(node, other),
                (false, false) => sim.hold(node, other),
            }
        }
        world.lock().event_at(sim.elapsed(), format!("partition node={node} one_way={one_way}"));
        self.network = Some(Network { until });
    }

    /// Holds one link: its messages wait, then arrive together when it heals.
    fn hold(&mut self, sim: &mut turmoil::Sim<'_>, world: &World, until: Duration) {
        if self.network.is_some() {
            return;
        }
        let a = self.rng.pick(&self.nodes);
        let b = self.rng.pick(&self.nodes);
        if a == b {
            return;
        }
        sim.hold(host_name(a), host_name(b));
        world.lock().event_at(sim.elapsed(), format!("hold a={a} b={b}"));
        self.network = Some(Network { until });
    }

    /// Latency up to 5–200 ms, and with lossy links random loss (turmoil drops a link's
    /// messages and cuts it until it repairs).
    fn degrade(&mut self, sim: &mut turmoil::Sim<'_>, world: &World, until: Duration) {
        if self.network.is_some() {
            return;
        }
        let fail_per_mille = self.rng.range(1, 20);
        let latency_ms = self.rng.range(5, 200);
        if self.lossy {
            #[expect(clippy::cast_precision_loss, reason = "below 20")]
            sim.set_fail_rate(fail_per_mille as f64 / 1000.0);
        }
        sim.set_max_message_latency(Duration::from_millis(latency_ms));
        let fail = if self.lossy { fail_per_mille } else { 0 };
        world
            .lock()
            .event_at(sim.elapsed(), format!("degrade fail={fail}/1000 latency_ms={latency_ms}"));
        self.network = Some(Network { until });
    }

    fn heal_network(&mut self, sim: &mut turmoil::Sim<'_>, world: &World) {
        self.network = None;
        sim.set_fail_rate(0.0);
        sim.set_max_message_latency(crate::MAX_LATENCY);
        for &a in &self.nodes {
            for &b in self.nodes.iter().filter(|&&b| b > a) {
                sim.repair(host_name(a), host_name(b));
                sim.release(host_name(a), host_name(b));
            }
        }
        world.lock().event_at(sim.elapsed(), "heal".to_owned());
    }
}
