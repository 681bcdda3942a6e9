//! The client: proposes one-record batches to each group's leader while faults run (but for a
//! pause in which the groups quiesce), keeps every
//! acknowledged one (`acks=all`: [`cairn_raft::Pending::committed`]), and once the driver has
//! healed the cluster writes a fence to each group and returns when every fence is committed.
//!
//! To the groups of `Setup::idempotent` it writes as an idempotent producer instead
//! ([`Idempotent`]): one batch in flight, sent again with the same sequence to whichever node
//! leads when its outcome is unknown, acknowledged once a proposal of it commits and the leader
//! admitted it (appended, or answered as the repeat of one in the log).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_storage::Verdict;
use cairn_types::ProducerId;
use cairn_types::batch::BatchBuilder;

use crate::Setup;
use crate::host::SimClock;
use crate::world::{Ack, World};
use cairn_storage::Clock;

/// How long the client waits for a fence's commit before it tries again.
const FENCE_TIMEOUT: Duration = Duration::from_secs(2);

/// The client's software (module docs).
pub async fn run(setup: Arc<Setup>, world: World) -> turmoil::Result {
    let mut ticket = 0;
    let workload = Duration::from_millis(setup.workload_ms);
    let paused = |elapsed: Duration| {
        setup.pause_ms.is_some_and(|(from, until)| {
            (Duration::from_millis(from)..Duration::from_millis(until)).contains(&elapsed)
        })
    };
    let mut producers: Vec<Idempotent> =
        setup.idempotent.iter().map(|&group| Idempotent::new(group)).collect();
    while turmoil::sim_elapsed().unwrap_or_default() < workload {
        if paused(turmoil::sim_elapsed().unwrap_or_default()) {
            tokio::time::sleep(Duration::from_millis(setup.propose_every_ms)).await;
            continue;
        }
        for &group in setup.groups.iter().filter(|g| !setup.idempotent.contains(g)) {
            ticket += 1;
            propose(&world, group, ticket, false, setup.compacted.contains(&group)).await;
        }
        for producer in &mut producers {
            producer.step(&world, &mut ticket).await;
        }
        tokio::time::sleep(Duration::from_millis(setup.propose_every_ms)).await;
    }
    while !world.lock().healed {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for &group in &setup.groups {
        loop {
            ticket += 1;
            let keyed = setup.compacted.contains(&group);
            let fenced =
                tokio::time::timeout(FENCE_TIMEOUT, propose(&world, group, ticket, true, keyed));
            if let Ok(Some(fence)) = fenced.await {
                world.lock().fences.insert(group, fence);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Keys of a compacted group's records: few, so that rounds find much to drop.
pub const KEYS: u64 = 8;

/// Proposes record `g{group}-{ticket}` (with key `k{ticket % KEYS}` if `keyed`) to the group's
/// leader, if one is known. The commit is awaited here if `wait`, else in a task of its own;
/// acknowledged records are recorded.
async fn propose(world: &World, group: u64, ticket: u64, wait: bool, keyed: bool) -> Option<Ack> {
    let (node, raft) = world.lock().leader_of(group)?;
    let payload = format!("g{group}-{ticket}").into_bytes();
    let key = keyed.then(|| format!("k{}", ticket % KEYS).into_bytes());
    let batch =
        BatchBuilder::new(SimClock.now_ms()).record(key.as_deref(), Some(&payload), &[]).build();
    let pending = raft.propose(Bytes::from(batch), ticket, true).await.ok()??;
    drop(raft);
    let world = world.clone();
    let acked = async move {
        let log_id = pending.committed().await.ok()?;
        let (index, term) = (log_id.index, log_id.leader_id.term);
        let ack = Ack { group, ticket, index, term, payload, key };
        let mut state = world.lock();
        state.event(format!(
            "ack group={group} ticket={ticket} node={node} index={} term={}",
            ack.index, ack.term
        ));
        state.acks.push(ack.clone());
        Some(ack)
    };
    if wait {
        acked.await
    } else {
        tokio::task::spawn_local(acked);
        None
    }
}

/// How long the idempotent producer waits for a batch's outcome before it sends it again.
const RETRY_AFTER: Duration = Duration::from_millis(1000);

/// The client's idempotent producer of one group (module docs).
struct Idempotent {
    group: u64,
    /// The sequence of the batch in flight, or of the next one.
    sequence: i32,
    inflight: Option<Inflight>,
}

/// What became of the batch in flight.
enum Settled {
    /// A proposal of it committed and was admitted.
    Acked,
    /// Every proposal of it failed, or none answered in time: send it again.
    Unknown,
    /// Proposals of it are still out.
    Waiting,
}

/// The batch in flight and the tickets of its proposals so far.
struct Inflight {
    batch: Bytes,
    payload: Vec<u8>,
    tickets: Vec<u64>,
    sent_at: Duration,
}

impl Idempotent {
    fn new(group: u64) -> Idempotent {
        Idempotent { group, sequence: 0, inflight: None }
    }

    /// Settles the batch in flight if an outcome came, sends it again if none came in time or
    /// every proposal failed, or sends the next batch.
    async fn step(&mut self, world: &World, ticket: &mut u64) {
        let now = turmoil::sim_elapsed().unwrap_or_default();
        match self.inflight.as_ref().map(|inflight| self.settle(inflight, world, now)) {
            Some(Settled::Waiting) => return,
            Some(Settled::Unknown) => return self.send(world, ticket, now).await,
            Some(Settled::Acked) => {
                self.inflight = None;
                self.sequence += 1;
            }
            None => {}
        }
        let payload = format!("g{}-s{}", self.group, self.sequence).into_bytes();
        let batch = BatchBuilder::new(SimClock.now_ms())
            .producer(ProducerId(i64::try_from(self.group).unwrap_or(0)), 0, self.sequence)
            .record(None, Some(&payload), &[])
            .build();
        let batch = Bytes::from(batch);
        self.inflight = Some(Inflight { batch, payload, tickets: Vec::new(), sent_at: now });
        self.send(world, ticket, now).await;
    }

    /// What became of the batch in flight; an acknowledged one is recorded.
    fn settle(&self, inflight: &Inflight, world: &World, now: Duration) -> Settled {
        let mut state = world.lock();
        let outcome = |t: &u64| state.outcomes.get(t).copied();
        if inflight.tickets.iter().any(|t| outcome(t) == Some(true)) {
            state.event(format!("ack group={} idempotent sequence={}", self.group, self.sequence));
            state.idempotent_acks.entry(self.group).or_default().push(inflight.payload.clone());
            return Settled::Acked;
        }
        let failed = inflight.tickets.iter().all(|t| outcome(t) == Some(false));
        if failed || now.saturating_sub(inflight.sent_at) >= RETRY_AFTER {
            Settled::Unknown
        } else {
            Settled::Waiting
        }
    }

    /// Proposes the batch in flight to the group's leader, if one is known; the outcome comes
    /// to `World::outcomes` under the proposal's ticket.
    async fn send(&mut self, world: &World, ticket: &mut u64, now: Duration) {
        let Some(inflight) = &mut self.inflight else { return };
        inflight.sent_at = now;
        let group = self.group;
        let Some((_, raft)) = world.lock().leader_of(group) else { return };
        *ticket += 1;
        let ticket = *ticket;
        let Ok(Some(pending)) = raft.propose(inflight.batch.clone(), ticket, true).await else {
            return;
        };
        drop(raft);
        inflight.tickets.push(ticket);
        let world = world.clone();
        tokio::task::spawn_local(async move {
            let committed = pending.committed().await.is_ok();
            let mut state = world.lock();
            let admitted = match state.verdicts.get(&(group, ticket)).copied() {
                _ if !committed => false,
                Some(Verdict::Append) => true,
                Some(Verdict::Duplicate(_)) => {
                    state.duplicates += 1;
                    state.event(format!("duplicate group={group} ticket={ticket}"));
                    true
                }
                refused => {
                    let found =
                        format!("group {group}: idempotent proposal {ticket} refused: {refused:?}");
                    state.violations.push(found);
                    false
                }
            };
            state.outcomes.insert(ticket, admitted);
        });
    }
}
