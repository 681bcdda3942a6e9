//! The consumer group's members (RFC 0008, ConsumerGroupHeartbeat v1 semantics): three
//! members of [`GROUP`] subscribed to [`TOPIC`], heartbeating every 200–500 ms to the
//! coordinator of the offsets group's leader and committing as they consume, while the
//! faults move the coordinator. Each applies answers as a real client does:
//!
//! - It joins with epoch 0 and a member id of its own, and takes the epoch of each answer;
//!   the partitions it owns are the assignment an answer sends, from the moment it has it.
//! - On FENCED_MEMBER_EPOCH or UNKNOWN_MEMBER_ID it owns nothing and rejoins with epoch 0;
//!   any other error, or no answer, it retries soon, as it is.
//! - Once a session passed since it sent the last heartbeat acknowledged, it owns nothing and
//!   rejoins (it must consider itself fenced: the coordinator may have given its partitions
//!   away).
//! - After each acknowledged heartbeat (but in `Setup::pause_ms`, when nothing is produced) it
//!   commits each partition it owns at a new offset, higher than any sent before for it, with
//!   its member epoch as the generation.
//!
//! One member, chosen by the seed, leaves (epoch −1, owning nothing from then, the leave sent
//! until answered while it is away) during the workload and rejoins a while later under a new
//! member id; some stall for a while before the healing (a pause, or a cut from the cluster:
//! no heartbeat, no commit), so that the coordinator fences them while the others go on.
//! After healing, the members run until the group settled (Stable, every partition owned by
//! the member the coordinator assigned it to), then stop where they are; once the offsets
//! group's fence committed, the final coordinator is asked for the group's committed offsets,
//! which the checks compare with the acknowledged commits.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cairn_group::records::TopicPartitions;
use cairn_group::{
    CommitRequest, ConsumerGroupDescription, ErrorCode, HeartbeatRequest, HeartbeatResponse,
    OffsetToCommit, Reply,
};

use crate::Setup;
use crate::coordinator::{self, GROUP, PARTITIONS, SESSION_TIMEOUT_MS, TOPIC, TOPIC_ID};
use crate::rng::Rng;
use crate::world::{MemberView, World};

/// The members' names.
const MEMBERS: [&str; 3] = ["m1", "m2", "m3"];

/// The members' rebalance timeout: above the session, as a client's is (5 minutes against
/// 45 s by default), so that a member is never fenced for not revoking partitions it may still
/// think it owns.
const REBALANCE_TIMEOUT_MS: i32 = 5_000;

/// How soon a member retries a heartbeat that was not acknowledged.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// How often the settling after healing looks at the group.
const SETTLE_EVERY: Duration = Duration::from_millis(100);

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

fn session() -> Duration {
    Duration::from_millis(SESSION_TIMEOUT_MS.unsigned_abs().into())
}

/// The members' software (module docs); returns once the final offsets are known.
pub async fn run(seed: u64, setup: Arc<Setup>, world: World) -> turmoil::Result {
    let Some(offsets) = setup.offsets else { return Ok(()) };
    let mut rng = Rng::new(seed ^ 0x6d65_6d62_6572_7321);
    let leaver = rng.pick(&[0, 1, 2]);
    let workload = setup.workload_ms;
    let leave_at = Duration::from_millis(rng.range(workload * 3 / 10, workload * 7 / 10));
    let away = Duration::from_millis(rng.range(1_000, 2_500));
    let mut running = Vec::new();
    for (at, name) in MEMBERS.into_iter().enumerate() {
        // A stall of 1–4.5 s that ends before the healing.
        let stalls = rng.range(0, 2) == 0;
        let lasts = rng.range(1_000, 4_500);
        let from = Duration::from_millis(rng.range(2_000, workload.saturating_sub(lasts)));
        let lasts = Duration::from_millis(lasts);
        let member = Member {
            name,
            incarnation: 1,
            view: MemberView { id: format!("{name}-1"), ..MemberView::default() },
            interval: Duration::from_millis(rng.range(200, 500)),
            leave: (at == leaver).then_some((leave_at, away)),
            stall: stalls.then_some((from, lasts)),
            offsets,
            setup: Arc::clone(&setup),
            world: world.clone(),
        };
        running.push(tokio::task::spawn_local(member.run()));
    }
    settle(offsets, &world).await;
    // The members stop where they are: a commit cut short is one sent, never acknowledged.
    for member in running {
        member.abort();
    }
    while !world.lock().fences.contains_key(&offsets) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    final_offsets(offsets, &world).await;
    Ok(())
}

/// Waits, after healing, until the group is settled: Stable with every member, each member at
/// the coordinator's epoch for it owning what the coordinator assigned it, every partition
/// owned.
async fn settle(offsets: u64, world: &World) {
    loop {
        tokio::time::sleep(SETTLE_EVERY).await;
        if !world.lock().healed {
            continue;
        }
        let described = coordinator::read(world, offsets, |shard| shard.describe_consumer(GROUP));
        let Ok(Ok(group)) = described.await else { continue };
        let mut state = world.lock();
        if settled(&group, &state.coordination.members.values().cloned().collect::<Vec<_>>()) {
            state.coordination.settled = true;
            state.event(format!("group settled epoch={}", group.epoch));
            return;
        }
    }
}

/// Whether `group` and the members' `views` agree on a Stable group of every member that
/// owns every partition.
fn settled(group: &ConsumerGroupDescription, views: &[MemberView]) -> bool {
    let now = now();
    let agree = group.members.iter().all(|described| {
        let assigned: BTreeSet<i32> =
            described.assignment.iter().flat_map(|(_, _, partitions)| partitions.clone()).collect();
        views.iter().any(|view| {
            view.id == described.member_id
                && view.epoch == described.member_epoch
                && view.owned == assigned
                && view.until > now
        })
    });
    let owned: BTreeSet<i32> = views.iter().flat_map(|view| view.owned.clone()).collect();
    let all = (0..i32::try_from(PARTITIONS).unwrap_or(0)).collect::<BTreeSet<_>>();
    group.state == "Stable" && group.members.len() == MEMBERS.len() && agree && owned == all
}

/// Asks the coordinator for the group's committed offsets until one answers.
async fn final_offsets(offsets: u64, world: &World) {
    loop {
        let fetched = coordinator::read(world, offsets, coordinator::committed);
        if let Ok(committed) = fetched.await {
            let mut state = world.lock();
            state.event(format!("final offsets {committed:?}"));
            state.coordination.final_offsets = Some(committed);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One member (module docs).
struct Member {
    name: &'static str,
    /// Starts of the member (a rejoin after leaving is another, with a new id).
    incarnation: u32,
    view: MemberView,
    interval: Duration,
    /// When it leaves, and for how long.
    leave: Option<(Duration, Duration)>,
    /// When it stalls, and for how long.
    stall: Option<(Duration, Duration)>,
    /// The offsets group.
    offsets: u64,
    setup: Arc<Setup>,
    world: World,
}

impl Member {
    async fn run(mut self) {
        loop {
            if let Some((at, lasts)) = self.stall
                && now() >= at
            {
                self.stall = None;
                let (name, ms) = (self.name, lasts.as_millis());
                self.world.lock().event(format!("member {name} stalls for {ms} ms"));
                tokio::time::sleep(lasts).await;
            }
            self.lapse();
            if let Some((at, away)) = self.leave
                && now() >= at
            {
                self.leave = None;
                self.leave_for(away).await;
                continue;
            }
            let acknowledged = self.heartbeat().await;
            if acknowledged && self.view.epoch > 0 && !self.paused() {
                self.commit().await;
            }
            let wait = if acknowledged { self.interval } else { RETRY_AFTER };
            tokio::time::sleep(wait).await;
        }
    }

    /// Shows the member's view to the checks.
    fn publish(&self) {
        let mut state = self.world.lock();
        state.coordination.members.insert(self.name.to_owned(), self.view.clone());
    }

    /// Owns nothing from now, and rejoins with epoch 0.
    fn fence(&mut self, why: &str) {
        self.view.epoch = 0;
        self.view.owned.clear();
        self.view.until = now();
        self.publish();
        let (name, id) = (self.name, &self.view.id);
        self.world.lock().event(format!("member {name} fenced id={id}: {why}"));
    }

    /// A session without an acknowledged heartbeat: the member considers itself fenced.
    fn lapse(&mut self) {
        if self.view.epoch != 0 && now() >= self.view.until {
            self.fence("session lapsed");
        }
    }

    fn paused(&self) -> bool {
        let elapsed = now();
        self.setup.pause_ms.is_some_and(|(from, until)| {
            (Duration::from_millis(from)..Duration::from_millis(until)).contains(&elapsed)
        })
    }

    fn request(&self, epoch: i32) -> HeartbeatRequest {
        let joining = epoch == 0;
        let owned = if self.view.owned.is_empty() {
            Vec::new()
        } else {
            vec![TopicPartitions {
                topic_id: TOPIC_ID,
                partitions: self.view.owned.iter().copied().collect(),
            }]
        };
        HeartbeatRequest {
            group_id: GROUP.to_owned(),
            member_id: self.view.id.clone(),
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: if joining { REBALANCE_TIMEOUT_MS } else { -1 },
            subscribed_topic_names: joining.then(|| vec![TOPIC.to_owned()]),
            subscribed_topic_regex: None,
            server_assignor: None,
            owned: Some(owned),
            client_id: self.name.to_owned(),
            client_host: "/sim".to_owned(),
        }
    }

    /// One heartbeat; whether it was acknowledged.
    async fn heartbeat(&mut self) -> bool {
        let sent = now();
        let request = self.request(self.view.epoch);
        let beat = move |shard: &mut cairn_group::Shard, waiter, now| {
            shard.consumer_heartbeat(waiter, request, 1, &coordinator::topics, now)
        };
        match coordinator::call(&self.world, self.offsets, beat).await {
            Ok(Reply::Heartbeat(answer)) if answer.error == ErrorCode::None => {
                self.acknowledged(&answer, sent);
                true
            }
            Ok(Reply::Heartbeat(answer))
                if matches!(
                    answer.error,
                    ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId
                ) =>
            {
                self.fence(&format!("{:?}", answer.error));
                false
            }
            Ok(_) | Err(_) => false,
        }
    }

    /// Applies an acknowledged answer to a heartbeat sent at `sent`.
    fn acknowledged(&mut self, answer: &HeartbeatResponse, sent: Duration) {
        let before = (self.view.epoch, self.view.owned.clone());
        self.view.epoch = answer.member_epoch;
        if let Some(assignment) = &answer.assignment {
            let topic = assignment.iter().filter(|t| t.topic_id == TOPIC_ID);
            self.view.owned = topic.flat_map(|t| t.partitions.iter().copied()).collect();
        }
        self.view.until = sent + session();
        self.publish();
        if before != (self.view.epoch, self.view.owned.clone()) {
            let (name, id, epoch) = (self.name, &self.view.id, self.view.epoch);
            let owned = &self.view.owned;
            self.world.lock().event(format!("member {name} id={id} epoch={epoch} owns={owned:?}"));
        }
    }

    /// Commits a new offset of every partition it owns, with its epoch.
    async fn commit(&mut self) {
        let offsets: Vec<(i32, i64)> = {
            let mut state = self.world.lock();
            let coordination = &mut state.coordination;
            let offsets: Vec<(i32, i64)> = self
                .view
                .owned
                .iter()
                .map(|&partition| {
                    let next = coordination.next_offset.entry(partition).or_insert(0);
                    *next += 1;
                    (partition, *next)
                })
                .collect();
            for &(partition, offset) in &offsets {
                coordination.sent.entry(partition).or_default().insert(offset);
            }
            offsets
        };
        let request = CommitRequest {
            group_id: GROUP.to_owned(),
            generation_id: self.view.epoch,
            member_id: self.view.id.clone(),
            group_instance_id: None,
            offsets: offsets
                .iter()
                .map(|&(partition, offset)| OffsetToCommit {
                    topic: TOPIC.to_owned(),
                    partition,
                    offset,
                    leader_epoch: -1,
                    metadata: None,
                })
                .collect(),
        };
        let commit =
            move |shard: &mut cairn_group::Shard, waiter, now| shard.commit(waiter, request, now);
        let Ok(Reply::Commit(answer)) = coordinator::call(&self.world, self.offsets, commit).await
        else {
            return;
        };
        let mut state = self.world.lock();
        let coordination = &mut state.coordination;
        for ((_, partition, error), (_, offset)) in answer.partitions.iter().zip(&offsets) {
            if *error == ErrorCode::None {
                let acked = coordination.acked.entry(*partition).or_insert(*offset);
                *acked = (*acked).max(*offset);
                coordination.commits += 1;
            }
        }
    }

    /// Leaves the group (epoch −1: it owns nothing from now), sending the leave again until
    /// it is answered or `away` passed, and comes back as a new member once `away` passed.
    async fn leave_for(&mut self, away: Duration) {
        let back = now() + away;
        let request = self.request(-1);
        self.view.epoch = 0;
        self.view.owned.clear();
        self.view.until = now();
        self.publish();
        let (name, id) = (self.name, self.view.id.clone());
        self.world.lock().event(format!("member {name} leaves id={id}"));
        let mut answered = false;
        while !answered && now() < back {
            let request = request.clone();
            let leave = move |shard: &mut cairn_group::Shard, waiter, now| {
                shard.consumer_heartbeat(waiter, request, 1, &coordinator::topics, now)
            };
            let left = coordinator::call(&self.world, self.offsets, leave).await;
            answered =
                matches!(left, Ok(Reply::Heartbeat(answer)) if answer.error == ErrorCode::None);
            if !answered {
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
        self.world.lock().event(format!("member {name} left id={id} answered={answered}"));
        tokio::time::sleep(back.saturating_sub(now())).await;
        self.incarnation += 1;
        self.view.id = format!("{}-{}", self.name, self.incarnation);
    }
}
