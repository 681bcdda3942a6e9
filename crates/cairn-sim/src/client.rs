//! The client: proposes one-record batches to each group's leader while faults run (but for a
//! pause in which the groups quiesce), keeps every
//! acknowledged one (`acks=all`: [`cairn_raft::Pending::committed`]), and once the driver has
//! healed the cluster writes a fence to each group and returns when every fence is committed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
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
    while turmoil::sim_elapsed().unwrap_or_default() < workload {
        if paused(turmoil::sim_elapsed().unwrap_or_default()) {
            tokio::time::sleep(Duration::from_millis(setup.propose_every_ms)).await;
            continue;
        }
        for &group in &setup.groups {
            ticket += 1;
            propose(&world, group, ticket, false).await;
        }
        tokio::time::sleep(Duration::from_millis(setup.propose_every_ms)).await;
    }
    while !world.lock().healed {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for &group in &setup.groups {
        loop {
            ticket += 1;
            let fenced = tokio::time::timeout(FENCE_TIMEOUT, propose(&world, group, ticket, true));
            if let Ok(Some(fence)) = fenced.await {
                world.lock().fences.insert(group, fence);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Proposes record `g{group}-{ticket}` to the group's leader, if one is known. The commit is
/// awaited here if `wait`, else in a task of its own; acknowledged records are recorded.
async fn propose(world: &World, group: u64, ticket: u64, wait: bool) -> Option<Ack> {
    let (node, raft) = world.lock().leader_of(group)?;
    let payload = format!("g{group}-{ticket}").into_bytes();
    let batch = BatchBuilder::new(SimClock.now_ms()).record(None, Some(&payload), &[]).build();
    let pending = raft.propose(Bytes::from(batch), ticket, true).await.ok()??;
    drop(raft);
    let world = world.clone();
    let acked = async move {
        let log_id = pending.committed().await.ok()?;
        let ack = Ack { group, ticket, index: log_id.index, term: log_id.leader_id.term, payload };
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
