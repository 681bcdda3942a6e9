//! The consumer rebalance protocol (RFC 0008, KIP-848) in the shard, driven with a manual
//! clock: members join, reconcile towards the target without a partition ever held by two
//! members, leave, are fenced; what was durable replays into a new shard with the same group.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use cairn_group::records::{RecordKey, RecordValue, TopicPartitions};
use cairn_group::{
    CommitRequest, Effects, ErrorCode, HeartbeatRequest, HeartbeatResponse, JoinRequest,
    OffsetToCommit, Reply, Shard, ShardConfig, TopicInfo, Topics, Waiter, Write,
};

const GROUP: &str = "g";
const TOPIC: [u8; 16] = [7; 16];
const SESSION: i32 = 45_000;
const REBALANCE: i32 = 30_000;

struct Harness {
    shard: Shard,
    now: i64,
    next_waiter: u64,
    replies: BTreeMap<Waiter, Reply>,
    inflight: Vec<Write>,
    log: Vec<(RecordKey, Option<RecordValue>)>,
    topics: Catalog,
}

/// The cluster's topics: `t` (six partitions) and whatever a test adds.
struct Catalog(BTreeMap<String, TopicInfo>);

impl Topics for Catalog {
    fn get(&self, name: &str) -> Option<TopicInfo> {
        self.0.get(name).copied()
    }

    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

/// What a member believes: its epoch and the partitions it owns.
#[derive(Clone, Debug, Default)]
struct Client {
    id: String,
    epoch: i32,
    owned: BTreeSet<i32>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            shard: Shard::new(ShardConfig::default(), 3),
            now: 1_000_000,
            next_waiter: 0,
            replies: BTreeMap::new(),
            inflight: Vec::new(),
            log: Vec::new(),
            topics: Catalog(BTreeMap::from([(
                "t".to_owned(),
                TopicInfo { id: TOPIC, partitions: 6 },
            )])),
        }
    }

    fn take(&mut self, effects: Effects) {
        for (waiter, reply) in effects.replies {
            assert!(self.replies.insert(waiter, reply).is_none(), "{waiter:?} answered twice");
        }
        self.inflight.extend(effects.writes);
    }

    fn flush(&mut self) {
        for write in std::mem::take(&mut self.inflight) {
            self.log.extend(write.records);
            let effects = self.shard.written(write.id, self.now);
            self.take(effects);
        }
    }

    fn advance(&mut self, ms: i64) {
        self.now += ms;
        let effects = self.shard.tick(self.now);
        self.take(effects);
        self.flush();
    }

    fn request(&self, client: &Client, full: bool) -> HeartbeatRequest {
        let owned = vec![TopicPartitions {
            topic_id: TOPIC,
            partitions: client.owned.iter().copied().collect(),
        }];
        HeartbeatRequest {
            group_id: GROUP.into(),
            member_id: client.id.clone(),
            member_epoch: client.epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: if client.epoch == 0 { REBALANCE } else { -1 },
            subscribed_topic_names: (client.epoch == 0).then(|| vec!["t".to_owned()]),
            subscribed_topic_regex: None,
            server_assignor: None,
            owned: if client.epoch == 0 { Some(Vec::new()) } else { full.then_some(owned) },
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
        }
    }

    /// Sends `request`; its answer once what it wrote is durable.
    fn send(&mut self, request: HeartbeatRequest) -> HeartbeatResponse {
        self.next_waiter += 1;
        let waiter = Waiter(self.next_waiter);
        let effects = self.shard.consumer_heartbeat(waiter, request, 1, &self.topics, self.now);
        self.take(effects);
        self.flush();
        match self.replies.remove(&waiter) {
            Some(Reply::Heartbeat(answer)) => answer,
            other => panic!("no heartbeat answer: {other:?}"),
        }
    }

    /// One heartbeat of `client` (a full one: it says what it owns), applied as a client
    /// applies its answer: it revokes what it is no longer assigned, takes what it is.
    fn beat(&mut self, client: &mut Client) -> HeartbeatResponse {
        let answer = self.send(self.request(client, true));
        assert_eq!(answer.error, ErrorCode::None, "{answer:?}");
        client.epoch = answer.member_epoch;
        if let Some(assignment) = &answer.assignment {
            client.owned = assignment.iter().flat_map(|t| t.partitions.iter().copied()).collect();
        }
        answer
    }

    fn join(&mut self, id: &str) -> Client {
        let mut client = Client { id: id.into(), ..Client::default() };
        self.beat(&mut client);
        client
    }

    /// Every client beats until none changes: the group is reconciled.
    fn settle(&mut self, clients: &mut [Client]) {
        for _ in 0..10 {
            let before: Vec<(i32, BTreeSet<i32>)> =
                clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
            for i in 0..clients.len() {
                self.beat(&mut clients[i]);
                assert_exclusive(clients);
            }
            let after: Vec<(i32, BTreeSet<i32>)> =
                clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
            if after == before {
                return;
            }
        }
        panic!("the group did not settle: {clients:?}");
    }

    fn describe_state(&self) -> &'static str {
        self.shard.describe_consumer(GROUP).expect("a consumer group").state
    }
}

/// No partition is owned by two clients at once.
fn assert_exclusive(clients: &[Client]) {
    let mut seen = BTreeSet::new();
    for p in clients.iter().flat_map(|c| &c.owned) {
        assert!(seen.insert(*p), "partition {p} owned by two members: {clients:?}");
    }
}

fn all_owned(clients: &[Client]) -> BTreeSet<i32> {
    clients.iter().flat_map(|c| c.owned.iter().copied()).collect()
}

#[test]
fn three_members_share_the_partitions_and_a_leaver_s_partitions_move_on() {
    let mut h = Harness::new();
    let mut clients = vec![h.join("a"), h.join("b"), h.join("c")];
    h.settle(&mut clients);
    assert_eq!(all_owned(&clients), (0..6).collect());
    assert!(clients.iter().all(|c| c.owned.len() == 2), "{clients:?}");
    assert_eq!(h.describe_state(), "Stable");
    let leaver = clients.remove(0);
    let left = h.send(HeartbeatRequest { member_epoch: -1, ..h.request(&leaver, false) });
    assert_eq!((left.error, left.member_epoch), (ErrorCode::None, -1));
    h.settle(&mut clients);
    assert_eq!(all_owned(&clients), (0..6).collect());
    assert!(clients.iter().all(|c| c.owned.len() == 3), "{clients:?}");
}

#[test]
fn a_partition_changes_hands_only_once_its_owner_revoked_it() {
    let mut h = Harness::new();
    let mut a = h.join("a");
    assert_eq!(a.owned, (0..6).collect());
    let mut b = h.join("b");
    assert!(b.owned.is_empty(), "b got partitions a still owns: {b:?}");
    // a must give up three partitions: it keeps its epoch until it says they are gone.
    let epoch = a.epoch;
    let answer = h.beat(&mut a);
    assert_eq!(answer.member_epoch, epoch);
    assert_eq!(a.owned.len(), 3);
    h.beat(&mut a);
    assert!(a.epoch > epoch, "a moves on once it revoked");
    h.beat(&mut b);
    assert_eq!(b.owned.len(), 3);
    assert!(a.owned.is_disjoint(&b.owned));
}

#[test]
fn epochs_the_coordinator_did_not_give_are_fenced_and_a_lost_answer_is_forgiven() {
    let mut h = Harness::new();
    let mut a = h.join("a");
    let ahead = h.send(HeartbeatRequest { member_epoch: a.epoch + 1, ..h.request(&a, true) });
    assert_eq!(ahead.error, ErrorCode::FencedMemberEpoch);
    // b joins: the group epoch moves; a's answer bumping it is "lost".
    let _b = h.join("b");
    let old = a.clone();
    h.beat(&mut a);
    h.beat(&mut a);
    assert!(a.epoch > old.epoch);
    let mut retry = old.clone();
    retry.owned = a.owned.clone();
    let answer = h.send(h.request(&retry, true));
    assert_eq!(answer.error, ErrorCode::None, "the previous epoch with a subset is accepted");
    let unknown = Client { id: "nobody".into(), epoch: 3, owned: BTreeSet::new() };
    assert_eq!(h.send(h.request(&unknown, true)).error, ErrorCode::UnknownMemberId);
}

#[test]
fn a_silent_member_is_fenced_after_its_session() {
    let mut h = Harness::new();
    let mut clients = [h.join("a"), h.join("b")];
    h.settle(&mut clients);
    let [mut a, b] = clients;
    for _ in 0..10 {
        h.advance(i64::from(SESSION) / 3);
        h.beat(&mut a);
    }
    let members = h.shard.describe_consumer(GROUP).expect("group").members;
    assert_eq!(members.len(), 1, "b was fenced: {members:?}");
    h.beat(&mut a);
    assert_eq!(a.owned, (0..6).collect());
    let fenced = h.send(h.request(&b, true));
    assert_eq!(fenced.error, ErrorCode::UnknownMemberId);
}

#[test]
fn a_new_coordinator_replays_the_group_with_its_epochs() {
    let mut h = Harness::new();
    let mut clients = vec![h.join("a"), h.join("b")];
    h.settle(&mut clients);
    let before = h.shard.describe_consumer(GROUP).expect("group");
    assert_eq!(before, replayed(&h));
    // Members carry on without rejoining.
    h.shard = reloaded(&h);
    h.settle(&mut clients);
    assert!(clients.iter().all(|c| c.epoch == before.epoch), "{clients:?}");
}

#[test]
fn commits_need_the_member_s_current_epoch() {
    let mut h = Harness::new();
    let a = h.join("a");
    let commit = |member: &str, epoch: i32| CommitRequest {
        group_id: GROUP.into(),
        generation_id: epoch,
        member_id: member.into(),
        group_instance_id: None,
        offsets: vec![OffsetToCommit {
            topic: "t".into(),
            partition: 0,
            offset: 5,
            leader_epoch: -1,
            metadata: None,
        }],
    };
    let mut outcome = |request| {
        h.next_waiter += 1;
        let waiter = Waiter(h.next_waiter);
        let effects = h.shard.commit(waiter, request, h.now);
        h.take(effects);
        h.flush();
        match h.replies.remove(&waiter) {
            Some(Reply::Commit(answer)) => answer.partitions[0].2,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(outcome(commit("a", a.epoch + 1)), ErrorCode::StaleMemberEpoch);
    assert_eq!(outcome(commit("z", a.epoch)), ErrorCode::UnknownMemberId);
    assert_eq!(outcome(commit("a", a.epoch)), ErrorCode::None);
    assert_eq!(h.shard.check_fetch(GROUP, "a", a.epoch + 1), ErrorCode::StaleMemberEpoch);
    assert_eq!(h.shard.check_fetch(GROUP, "a", a.epoch), ErrorCode::None);
}

#[test]
fn classic_and_consumer_groups_do_not_mix_while_they_have_members() {
    let mut h = Harness::new();
    let a = h.join("a");
    h.next_waiter += 1;
    let waiter = Waiter(h.next_waiter);
    let join = JoinRequest {
        group_id: GROUP.into(),
        member_id: String::new(),
        group_instance_id: None,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Vec::new())],
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        client_id: "c".into(),
        client_host: "h".into(),
        require_known_member_id: false,
    };
    let effects = h.shard.join(waiter, join.clone(), h.now);
    h.take(effects);
    match h.replies.remove(&waiter) {
        Some(Reply::Join(answer)) => assert_eq!(answer.error, ErrorCode::InconsistentGroupProtocol),
        other => panic!("{other:?}"),
    }
    // Once empty, it may become a classic group.
    h.send(HeartbeatRequest { member_epoch: -1, ..h.request(&a, false) });
    let effects = h.shard.join(Waiter(1000), join, h.now);
    h.take(effects);
    h.flush();
    assert!(h.shard.describe_consumer(GROUP).is_err());
    let refused = h.send(h.request(&Client { id: "n".into(), ..Client::default() }, true));
    assert_eq!(refused.error, ErrorCode::GroupIdNotFound, "a classic group with members");
}

#[test]
fn a_static_member_comes_back_to_its_partitions() {
    let mut h = Harness::new();
    let static_request = |h: &Harness, client: &Client| HeartbeatRequest {
        instance_id: Some("i1".into()),
        ..h.request(client, true)
    };
    let mut a = Client { id: "a".into(), ..Client::default() };
    let answer = h.send(static_request(&h, &a));
    a.epoch = answer.member_epoch;
    let mut b = h.join("b");
    for _ in 0..3 {
        let answer = h.send(static_request(&h, &a));
        a.epoch = answer.member_epoch;
        a.owned = answer
            .assignment
            .map_or(a.owned, |t| t.iter().flat_map(|t| t.partitions.iter().copied()).collect());
        h.beat(&mut b);
    }
    let owned = a.owned.clone();
    assert_eq!(owned.len(), 3);
    let away = h.send(HeartbeatRequest { member_epoch: -2, ..static_request(&h, &a) });
    assert_eq!(away.member_epoch, -2);
    let busy = h.send(static_request(&h, &Client { id: "a2".into(), ..Client::default() }));
    assert_eq!(busy.error, ErrorCode::None, "the instance left for a while: a new id takes it");
    let back: BTreeSet<i32> =
        busy.assignment.expect("a full answer").iter().flat_map(|t| t.partitions.clone()).collect();
    assert_eq!(back, owned, "the same partitions, without a rebalance");
    let again = h.send(static_request(&h, &Client { id: "a3".into(), ..Client::default() }));
    assert_eq!(again.error, ErrorCode::UnreleasedInstanceId);
    assert_eq!(replayed(&h), h.shard.describe_consumer(GROUP).expect("group"));
}

/// A new coordinator's shard: `h`'s durable records replayed.
fn reloaded(h: &Harness) -> Shard {
    let mut shard = Shard::new(ShardConfig::default(), 9);
    for (key, value) in h.log.clone() {
        shard.replay(key, value, h.now);
    }
    shard
}

/// The group as a new coordinator describes it.
fn replayed(h: &Harness) -> cairn_group::ConsumerGroupDescription {
    reloaded(h).describe_consumer(GROUP).expect("group")
}

#[test]
fn a_regular_expression_subscribes_to_every_topic_it_matches_whole() {
    let mut h = Harness::new();
    let other = [9; 16];
    h.topics.0.insert("tx".into(), TopicInfo { id: other, partitions: 2 });
    h.topics.0.insert("xt".into(), TopicInfo { id: [5; 16], partitions: 2 });
    let by_regex = |h: &Harness, client: &Client, regex: &str| HeartbeatRequest {
        subscribed_topic_names: Some(Vec::new()),
        subscribed_topic_regex: Some(regex.into()),
        ..h.request(client, true)
    };
    let joining = Client { id: "a".into(), ..Client::default() };
    let bad = h.send(by_regex(&h, &joining, "t("));
    assert_eq!(bad.error, ErrorCode::InvalidRegularExpression);
    let answer = h.send(by_regex(&h, &joining, "t.*"));
    let topics: BTreeMap<[u8; 16], usize> = answer
        .assignment
        .expect("a full answer")
        .iter()
        .map(|t| (t.topic_id, t.partitions.len()))
        .collect();
    assert_eq!(topics, BTreeMap::from([(TOPIC, 6), (other, 2)]), "t and tx, not xt");
    // A topic created later that matches joins the subscription at the next heartbeat.
    h.topics.0.insert("t2".into(), TopicInfo { id: [3; 16], partitions: 1 });
    let a = Client { id: "a".into(), epoch: answer.member_epoch, owned: BTreeSet::new() };
    let next = h.send(h.request(&a, false));
    assert!(next.member_epoch > a.epoch, "{next:?}");
    let described = h.shard.describe_consumer(GROUP).expect("group");
    let target: BTreeSet<String> =
        described.members[0].target.iter().map(|(_, name, _)| name.clone()).collect();
    assert_eq!(target, ["t", "t2", "tx"].map(str::to_owned).into());
}

/// What a random run of the group does next.
#[derive(Clone, Debug)]
enum Step {
    /// Member `0` heartbeats; a full heartbeat says what it owns.
    Beat(usize, bool),
    /// Member `0` leaves for good (and may join again later).
    Leave(usize),
    /// Time passes.
    Advance(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..4usize, any::<bool>()).prop_map(|(m, full)| Step::Beat(m, full)),
        1 => (0..4usize).prop_map(Step::Leave),
        2 => (1_000..20_000i64).prop_map(Step::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Under any interleaving of heartbeats, leaves and time: no partition is owned by two
    /// members that still think themselves members, and a new coordinator replaying the
    /// durable records describes the same group. A member thinks itself one until a session
    /// passed since its last answer, or, told to give partitions up, until the rebalance
    /// timeout passed without a full heartbeat saying it did (Kafka's clients leave at their
    /// poll timeout, the rebalance timeout, and count their partitions lost).
    #[test]
    fn members_never_share_a_partition_and_the_log_replays_the_group(
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        let mut h = Harness::new();
        let session = i64::from(SESSION);
        // Each client, and until when it thinks itself a member.
        let mut clients: Vec<Option<(Client, i64)>> = vec![None; 4];
        for step in steps {
            match step {
                Step::Beat(i, full) => {
                    let (mut client, until) = clients[i].take().unwrap_or_else(|| {
                        (Client { id: format!("m{i}"), ..Client::default() }, h.now)
                    });
                    let answer = h.send(h.request(&client, full));
                    match answer.error {
                        ErrorCode::None => {
                            client.epoch = answer.member_epoch;
                            let mut until = if full { h.now + session } else { until.max(h.now).min(h.now + session) };
                            if let Some(assignment) = &answer.assignment {
                                let now_owned: BTreeSet<i32> = assignment.iter().flat_map(|t| t.partitions.iter().copied()).collect();
                                if !client.owned.is_subset(&now_owned) {
                                    until = until.min(h.now + i64::from(REBALANCE));
                                }
                                client.owned = now_owned;
                            }
                            clients[i] = Some((client, until));
                        }
                        // Fenced or forgotten: it owns nothing and joins again.
                        _ => clients[i] = None,
                    }
                }
                Step::Leave(i) => {
                    if let Some((client, _)) = clients[i].take() {
                        h.send(HeartbeatRequest { member_epoch: -1, ..h.request(&client, false) });
                    }
                }
                Step::Advance(ms) => h.advance(ms),
            }
            let alive: Vec<Client> = clients
                .iter()
                .flatten()
                .filter(|(_, until)| h.now < *until)
                .map(|(c, _)| c.clone())
                .collect();
            assert_exclusive(&alive);
            if let Ok(now) = h.shard.describe_consumer(GROUP) {
                prop_assert_eq!(&replayed(&h), &now);
            }
        }
    }
}

/// A member asked to revoke partitions, then a coordinator failover: the new coordinator
/// restarts the revocation's rebalance timer (RFC 0008, "then restarts the timers"), so a
/// member that never revokes is still fenced and its partitions move on. The replay once
/// restarted only the session: a member that kept heartbeating with the partitions it was to
/// give up held them for good, and the group never settled.
#[test]
fn a_revocation_pending_at_a_failover_still_times_out() {
    let mut h = Harness::new();
    let a = h.join("a");
    let mut b = h.join("b");
    // a never revokes: it keeps saying it owns every partition.
    let request = h.request(&a, true);
    let answer = h.send(request);
    assert_eq!(answer.member_epoch, a.epoch, "a must revoke before it moves on");
    assert_eq!(h.describe_state(), "Reconciling");
    let mut replayed = Shard::new(ShardConfig::default(), 9);
    for (key, value) in h.log.clone() {
        replayed.replay(key, value, h.now);
    }
    h.shard = replayed;
    // Both keep their sessions; the rebalance timeout (30 s) passes.
    for _ in 0..8 {
        h.advance(5_000);
        let request = h.request(&a, true);
        h.send(request);
        h.beat(&mut b);
    }
    let members = h.shard.describe_consumer(GROUP).expect("group").members;
    assert_eq!(members.len(), 1, "a was fenced: {members:?}");
    h.beat(&mut b);
    assert_eq!(b.owned, (0..6).collect());
}

/// A member's session runs out and the write of its fence fails (its outcome unknown): the
/// shard already removed it in memory, so memory is ahead of the log and the runtime must load
/// the shard again. The failure once left the shard fresh: it went on without the member,
/// and what it wrote next counted the member gone, while the log still held it with its
/// partitions and target, which a later coordinator would replay.
#[test]
fn a_failed_write_of_a_session_expiry_makes_the_shard_stale() {
    let mut h = Harness::new();
    let mut clients = vec![h.join("a"), h.join("b")];
    h.settle(&mut clients);
    h.now += i64::from(SESSION) + 1;
    let effects = h.shard.tick(h.now);
    assert!(!effects.writes.is_empty(), "the fences of both members are written");
    for write in effects.writes {
        let answered = h.shard.write_failed(write.id, ErrorCode::NotCoordinator, h.now);
        assert!(answered.replies.is_empty());
    }
    assert!(h.shard.stale(), "memory is ahead of the log");
}
