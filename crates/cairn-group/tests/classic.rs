//! The classic group protocol against Kafka's rules, driven with a manual clock. Writes are
//! made durable (or failed) explicitly, as the runtime would report them; what was durable
//! is replayed into a new shard, as a new coordinator loads it.

use std::collections::BTreeMap;

use cairn_group::records::{RecordKey, RecordValue};
use cairn_group::{
    CommitRequest, Effects, ErrorCode, JoinRequest, JoinResponse, MemberRef, OffsetToCommit, Reply,
    Shard, ShardConfig, SyncRequest, SyncResponse, Waiter, Write,
};

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;
const DELAY: i64 = 3_000;

struct Harness {
    shard: Shard,
    now: i64,
    next_waiter: u64,
    replies: BTreeMap<Waiter, Vec<Reply>>,
    /// Writes handed out, not yet reported.
    inflight: Vec<Write>,
    /// The records made durable, in order: the partition's log.
    log: Vec<(RecordKey, Option<RecordValue>)>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(ShardConfig { initial_rebalance_delay_ms: DELAY, ..ShardConfig::default() })
    }

    fn with(config: ShardConfig) -> Harness {
        Harness {
            shard: Shard::new(config, 7),
            now: 1_000_000,
            next_waiter: 0,
            replies: BTreeMap::new(),
            inflight: Vec::new(),
            log: Vec::new(),
        }
    }

    fn waiter(&mut self) -> Waiter {
        self.next_waiter += 1;
        Waiter(self.next_waiter)
    }

    fn take(&mut self, effects: Effects) {
        for (waiter, reply) in effects.replies {
            self.replies.entry(waiter).or_default().push(reply);
        }
        self.inflight.extend(effects.writes);
    }

    /// Makes every write in flight durable, in order.
    fn flush(&mut self) {
        for write in std::mem::take(&mut self.inflight) {
            self.log.extend(write.records);
            let effects = self.shard.written(write.id, self.now);
            self.take(effects);
        }
    }

    fn fail_writes(&mut self, error: ErrorCode) {
        for write in std::mem::take(&mut self.inflight) {
            let effects = self.shard.write_failed(write.id, error, self.now);
            self.take(effects);
        }
    }

    fn advance(&mut self, ms: i64) {
        self.now += ms;
        let effects = self.shard.tick(self.now);
        self.take(effects);
    }

    /// Advances to the shard's next deadline.
    fn until_deadline(&mut self) {
        let deadline = self.shard.next_deadline().expect("a deadline");
        assert!(deadline >= self.now, "deadline {deadline} in the past (now {})", self.now);
        self.advance(deadline - self.now);
    }

    fn join(&mut self, group: &str, member_id: &str, protocols: &[&str]) -> Waiter {
        self.join_as(group, member_id, None, protocols)
    }

    fn join_as(
        &mut self,
        group: &str,
        member: &str,
        instance: Option<&str>,
        protocols: &[&str],
    ) -> Waiter {
        let waiter = self.waiter();
        let request = JoinRequest {
            group_id: group.into(),
            member_id: member.into(),
            group_instance_id: instance.map(Into::into),
            protocol_type: "consumer".into(),
            protocols: protocols.iter().map(|p| ((*p).to_owned(), subscription(&["t"]))).collect(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            require_known_member_id: true,
        };
        let effects = self.shard.join(waiter, request, self.now);
        self.take(effects);
        waiter
    }

    /// A dynamic member's two-step first join: its id, then the join that waits.
    fn new_member(&mut self, group: &str) -> (String, Waiter) {
        let first = self.join(group, "", &["range"]);
        let answer = self.join_answer(first);
        assert_eq!(answer.error, ErrorCode::MemberIdRequired);
        let waiter = self.join(group, &answer.member_id, &["range"]);
        (answer.member_id, waiter)
    }

    fn sync(
        &mut self,
        group: &str,
        member: &str,
        generation: i32,
        assignments: &[(&str, &[u8])],
    ) -> Waiter {
        let waiter = self.waiter();
        let request = SyncRequest {
            group_id: group.into(),
            member_id: member.into(),
            generation_id: generation,
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments: assignments.iter().map(|(m, a)| ((*m).to_owned(), a.to_vec())).collect(),
        };
        let effects = self.shard.sync(waiter, request, self.now);
        self.take(effects);
        waiter
    }

    fn heartbeat(&mut self, group: &str, member: &str, generation: i32) -> ErrorCode {
        let member = MemberRef { member_id: member.into(), group_instance_id: None };
        self.shard.heartbeat(group, &member, generation, self.now)
    }

    fn commit(&mut self, group: &str, member: &str, generation: i32, offset: i64) -> Waiter {
        let waiter = self.waiter();
        let request = CommitRequest {
            group_id: group.into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
            offsets: vec![OffsetToCommit {
                topic: "t".into(),
                partition: 0,
                offset,
                leader_epoch: 3,
                metadata: Some("m".into()),
            }],
        };
        let effects = self.shard.commit(waiter, request, self.now);
        self.take(effects);
        waiter
    }

    /// A commit made durable at once; fails unless it succeeded.
    fn commit_durably(&mut self, group: &str, member: &str, generation: i32, offset: i64) {
        let commit = self.commit(group, member, generation, offset);
        self.flush();
        assert_eq!(self.commit_error(commit), ErrorCode::None);
    }

    /// A DeleteGroups of `group`, its writes made durable: its answer.
    fn delete_group(&mut self, group: &str) -> Option<Reply> {
        let waiter = self.waiter();
        let effects = self.shard.delete_group(waiter, group);
        self.take(effects);
        self.flush();
        self.only_reply(waiter)
    }

    fn only_reply(&mut self, waiter: Waiter) -> Option<Reply> {
        let replies = self.replies.remove(&waiter)?;
        assert_eq!(replies.len(), 1, "{waiter:?} answered more than once: {replies:?}");
        replies.into_iter().next()
    }

    fn join_answer(&mut self, waiter: Waiter) -> JoinResponse {
        match self.only_reply(waiter) {
            Some(Reply::Join(answer)) => answer,
            other => panic!("{waiter:?}: expected a JoinGroup answer, got {other:?}"),
        }
    }

    fn sync_answer(&mut self, waiter: Waiter) -> SyncResponse {
        match self.only_reply(waiter) {
            Some(Reply::Sync(answer)) => answer,
            other => panic!("{waiter:?}: expected a SyncGroup answer, got {other:?}"),
        }
    }

    fn commit_error(&mut self, waiter: Waiter) -> ErrorCode {
        match self.only_reply(waiter) {
            Some(Reply::Commit(answer)) => answer.partitions[0].2,
            other => panic!("{waiter:?}: expected an OffsetCommit answer, got {other:?}"),
        }
    }

    fn waiting(&self, waiter: Waiter) -> bool {
        !self.replies.contains_key(&waiter)
    }

    fn state(&self, group: &str) -> &'static str {
        self.shard.describe(group).map_or("Dead", |d| d.state)
    }

    fn committed(&self, group: &str) -> Option<i64> {
        let wanted = [("t".to_owned(), 0)];
        self.shard.offsets(group, Some(&wanted))[0].2.as_ref().map(|o| o.offset)
    }

    /// A new coordinator: a fresh shard that replays the durable log.
    fn failover(&self) -> Harness {
        let mut next = Harness::new();
        next.now = self.now;
        for (key, value) in &self.log {
            next.shard.replay(key.clone(), value.clone(), next.now);
        }
        next.log = self.log.clone();
        next
    }
}

/// A consumer-protocol subscription (version 0) to `topics`.
fn subscription(topics: &[&str]) -> Vec<u8> {
    let mut out = vec![0, 0];
    out.extend_from_slice(&i32::try_from(topics.len()).expect("few topics").to_be_bytes());
    for topic in topics {
        out.extend_from_slice(&i16::try_from(topic.len()).expect("short names").to_be_bytes());
        out.extend_from_slice(topic.as_bytes());
    }
    out.extend_from_slice(&(-1i32).to_be_bytes()); // No user data.
    out
}

/// Two members joined, synced and Stable in generation 1: (leader, follower).
fn stable_pair(h: &mut Harness) -> (String, String) {
    let (a, wa) = h.new_member("g");
    let (b, wb) = h.new_member("g");
    assert!(h.waiting(wa) && h.waiting(wb), "the first rebalance waits for the initial delay");
    h.until_deadline();
    h.until_deadline(); // A member joined during the first delay: it is extended once.
    let (ja, jb) = (h.join_answer(wa), h.join_answer(wb));
    assert_eq!((ja.error, jb.error), (ErrorCode::None, ErrorCode::None));
    assert_eq!((ja.generation_id, jb.generation_id), (1, 1));
    assert_eq!(ja.leader, a, "the first member leads");
    assert_eq!(ja.members.len(), 2, "the leader gets every member");
    assert!(jb.members.is_empty(), "followers get no members");
    assert_eq!(ja.protocol_name.as_deref(), Some("range"));
    let sb = h.sync("g", &b, 1, &[]);
    let sa = h.sync("g", &a, 1, &[(&a, b"for-a"), (&b, b"for-b")]);
    assert!(h.waiting(sa) && h.waiting(sb), "nobody hears of the assignment before it is durable");
    assert_eq!(h.state("g"), "CompletingRebalance");
    h.flush();
    assert_eq!(h.sync_answer(sa).assignment, b"for-a");
    assert_eq!(h.sync_answer(sb).assignment, b"for-b");
    assert_eq!(h.state("g"), "Stable");
    (a, b)
}

#[test]
fn two_members_join_sync_and_heartbeat() {
    let mut h = Harness::new();
    let (a, b) = stable_pair(&mut h);
    assert_eq!(h.heartbeat("g", &a, 1), ErrorCode::None);
    assert_eq!(h.heartbeat("g", &b, 1), ErrorCode::None);
    assert_eq!(h.heartbeat("g", &b, 0), ErrorCode::IllegalGeneration);
    assert_eq!(h.heartbeat("g", "stranger", 1), ErrorCode::UnknownMemberId);
    assert_eq!(h.heartbeat("nope", &a, 1), ErrorCode::UnknownMemberId);
}

#[test]
fn a_silent_member_expires_and_the_rest_rebalance() {
    let mut h = Harness::new();
    let (a, b) = stable_pair(&mut h);
    h.advance(i64::from(SESSION) / 2);
    assert_eq!(h.heartbeat("g", &a, 1), ErrorCode::None);
    h.advance(i64::from(SESSION) / 2 - 1);
    assert_eq!(h.heartbeat("g", &a, 1), ErrorCode::None);
    assert_eq!(h.state("g"), "Stable");
    h.advance(1);
    // b has been silent for a whole session: it left at its deadline.
    let description = h.shard.describe("g").unwrap();
    assert_eq!(description.state, "PreparingRebalance");
    assert_eq!(description.members.len(), 1);
    assert_eq!(h.heartbeat("g", &b, 1), ErrorCode::UnknownMemberId);
    assert_eq!(h.heartbeat("g", &a, 1), ErrorCode::RebalanceInProgress);
    let rejoin = h.join("g", &a, &["range"]);
    let answer = h.join_answer(rejoin);
    assert_eq!((answer.error, answer.generation_id), (ErrorCode::None, 2), "all rejoined: at once");
}

#[test]
fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
    let mut h = Harness::new();
    let (a, b) = stable_pair(&mut h);
    let start = h.now;
    let (c, wc) = h.new_member("g");
    assert_eq!(h.state("g"), "PreparingRebalance");
    let wa = h.join("g", &a, &["range"]);
    // b keeps heartbeating but never rejoins.
    while h.waiting(wa) {
        h.advance(1_000);
        let beat = h.heartbeat("g", &b, 1);
        assert!(matches!(beat, ErrorCode::RebalanceInProgress | ErrorCode::UnknownMemberId));
    }
    assert_eq!(h.now - start, i64::from(REBALANCE), "at the rebalance timeout");
    let (ja, jc) = (h.join_answer(wa), h.join_answer(wc));
    assert_eq!((ja.generation_id, jc.generation_id), (2, 2));
    let members: Vec<&str> = ja.members.iter().map(|m| m.member_id.as_str()).collect();
    assert_eq!(members.len(), 2);
    assert!(members.contains(&a.as_str()) && members.contains(&c.as_str()));
    assert_eq!(h.heartbeat("g", &b, 2), ErrorCode::UnknownMemberId);
}

#[test]
fn commits_follow_the_generation_and_are_answered_once_durable() {
    let mut h = Harness::new();
    let (a, _b) = stable_pair(&mut h);
    let stale = h.commit("g", &a, 0, 5);
    assert_eq!(h.commit_error(stale), ErrorCode::IllegalGeneration);
    let stranger = h.commit("g", "stranger", 1, 5);
    assert_eq!(h.commit_error(stranger), ErrorCode::UnknownMemberId);
    let manual = h.commit("g", "", -1, 5);
    assert_eq!(h.commit_error(manual), ErrorCode::UnknownMemberId, "the group has members");
    let commit = h.commit("g", &a, 1, 42);
    assert!(h.waiting(commit));
    assert_eq!(h.committed("g"), None, "not visible before it is durable");
    h.flush();
    assert_eq!(h.commit_error(commit), ErrorCode::None);
    assert_eq!(h.committed("g"), Some(42));
    let lost = h.commit("g", &a, 1, 43);
    h.fail_writes(ErrorCode::NotCoordinator);
    assert_eq!(h.commit_error(lost), ErrorCode::NotCoordinator);
    assert_eq!(h.committed("g"), Some(42), "a failed write changes nothing");
    // A rebalance in its second half refuses commits; its first half takes them.
    let _ = h.join("g", &a, &["range", "sticky"]);
    let during = h.commit("g", &a, 1, 44);
    h.flush();
    assert_eq!(h.commit_error(during), ErrorCode::None, "PreparingRebalance takes commits");
}

#[test]
fn a_group_without_members_takes_commits_without_a_generation() {
    let mut h = Harness::new();
    let commit = h.commit("manual", "", -1, 7);
    h.flush();
    assert_eq!(h.commit_error(commit), ErrorCode::None);
    assert_eq!(h.committed("manual"), Some(7));
    assert_eq!(h.state("manual"), "Empty");
    let stale = h.commit("other", "m", 3, 7);
    assert_eq!(h.commit_error(stale), ErrorCode::IllegalGeneration);
    assert_eq!(h.state("other"), "Dead", "a refused commit leaves no group behind");
    let listed: Vec<String> = h.shard.list().into_iter().map(|g| g.group_id).collect();
    assert_eq!(listed, ["manual"]);
}

#[test]
fn leaving_rebalances_and_the_last_member_empties_the_group() {
    let mut h = Harness::new();
    let (a, b) = stable_pair(&mut h);
    let leave = |h: &mut Harness, id: &str| {
        let member = MemberRef { member_id: id.into(), group_instance_id: None };
        let (errors, effects) = h.shard.leave("g", &[member], h.now);
        h.take(effects);
        errors[0]
    };
    assert_eq!(leave(&mut h, &a), ErrorCode::None);
    assert_eq!(leave(&mut h, &a), ErrorCode::UnknownMemberId);
    let rejoin = h.join("g", &b, &["range"]);
    let answer = h.join_answer(rejoin);
    assert_eq!((answer.generation_id, answer.leader.as_str()), (2, b.as_str()), "b leads now");
    assert_eq!(leave(&mut h, &b), ErrorCode::None);
    assert_eq!(h.state("g"), "Empty");
    assert_eq!(h.inflight.len(), 1, "the emptied group is written");
    h.flush();
    let reloaded = h.failover();
    let description = reloaded.shard.describe("g").unwrap();
    assert_eq!((description.state, description.members.len()), ("Empty", 0));
}

#[test]
fn a_new_coordinator_keeps_the_stable_group_and_its_offsets() {
    let mut h = Harness::new();
    let (a, b) = stable_pair(&mut h);
    let commit = h.commit("g", &b, 1, 100);
    h.flush();
    assert_eq!(h.commit_error(commit), ErrorCode::None);
    let mut next = h.failover();
    assert_eq!(next.state("g"), "Stable", "no rebalance for a coordinator failover");
    assert_eq!(next.committed("g"), Some(100));
    assert_eq!(next.heartbeat("g", &a, 1), ErrorCode::None);
    assert_eq!(next.heartbeat("g", &b, 1), ErrorCode::None);
    let again = next.sync("g", &b, 1, &[]);
    assert_eq!(next.sync_answer(again).assignment, b"for-b", "assignments survive");
    let leader = next.join("g", &a, &["range"]);
    assert!(next.waiting(leader), "the leader's rejoin starts a rebalance");
    assert_eq!(next.heartbeat("g", &b, 1), ErrorCode::RebalanceInProgress);
}

#[test]
fn a_new_coordinator_loads_classic_and_consumer_groups_side_by_side() {
    use cairn_group::records::{ConsumerGroupMetadata, TargetAssignmentMetadata};
    let mut h = Harness::new();
    let (a, b) = stable_pair(&mut h);
    h.commit("g", &b, 1, 100);
    h.flush();
    let epoch = RecordValue::ConsumerGroupMetadata(ConsumerGroupMetadata { epoch: 3 });
    let target = TargetAssignmentMetadata { assignment_epoch: 3 };
    h.log.extend([
        (RecordKey::ConsumerGroupMetadata { group: "c".into() }, Some(epoch)),
        (RecordKey::MemberMetadata { group: "c".into(), member: "m".into() }, None),
        (
            RecordKey::TargetAssignmentMetadata { group: "c".into() },
            Some(RecordValue::TargetAssignmentMetadata(target)),
        ),
    ]);
    let mut next = h.failover();
    assert_eq!(next.state("c"), "Dead", "DescribeGroups describes classic groups only");
    let consumer = next.shard.describe_consumer("c").expect("a consumer group");
    assert_eq!((consumer.epoch, consumer.assignment_epoch, consumer.state), (3, 3, "Empty"));
    assert_eq!(next.state("g"), "Stable", "the classic group is untouched");
    assert_eq!(next.committed("g"), Some(100));
    assert_eq!(next.heartbeat("g", &a, 1), ErrorCode::None);
}

#[test]
fn a_failed_assignment_write_restarts_the_rebalance() {
    let mut h = Harness::new();
    let (a, wa) = h.new_member("g");
    h.until_deadline();
    assert_eq!(h.join_answer(wa).generation_id, 1);
    let sync = h.sync("g", &a, 1, &[(&a, b"x")]);
    h.fail_writes(ErrorCode::NotCoordinator);
    assert_eq!(h.sync_answer(sync).error, ErrorCode::NotCoordinator);
    assert_eq!(h.state("g"), "PreparingRebalance");
    let rejoin = h.join("g", &a, &["range"]);
    assert_eq!(h.join_answer(rejoin).generation_id, 2);
}

#[test]
fn a_restarted_static_member_takes_its_place_without_a_rebalance() {
    let mut h = Harness::new();
    let first = h.join_as("g", "", Some("host-a"), &["range"]);
    h.until_deadline();
    let joined = h.join_answer(first);
    assert_eq!(joined.generation_id, 1, "a static member needs no second join");
    let old_id = joined.member_id;
    let sync = h.sync("g", &old_id, 1, &[(&old_id, b"mine")]);
    h.flush();
    assert_eq!(h.sync_answer(sync).assignment, b"mine");
    // The process restarts: same instance id, no member id.
    let restart = h.join_as("g", "", Some("host-a"), &["range"]);
    assert!(h.waiting(restart), "answered once the new id is durable");
    h.flush();
    let answer = h.join_answer(restart);
    assert_eq!((answer.error, answer.generation_id), (ErrorCode::None, 1), "same generation");
    assert_ne!(answer.member_id, old_id);
    assert_eq!(h.state("g"), "Stable");
    let fenced = MemberRef { member_id: old_id, group_instance_id: Some("host-a".into()) };
    assert_eq!(h.shard.heartbeat("g", &fenced, 1, h.now), ErrorCode::FencedInstanceId);
    let sync = h.sync("g", &answer.member_id, 1, &[]);
    assert_eq!(h.sync_answer(sync).assignment, b"mine", "the assignment carries over");
}

#[test]
fn bad_joins_are_refused_with_kafkas_errors() {
    let mut h = Harness::new();
    let (_a, wa) = h.new_member("g");
    h.until_deadline();
    let _ = h.join_answer(wa);
    let other = h.join("g", "", &["roundrobin"]);
    assert_eq!(h.join_answer(other).error, ErrorCode::InconsistentGroupProtocol);
    let unknown = h.join("g", "made-up", &["range"]);
    assert_eq!(h.join_answer(unknown).error, ErrorCode::UnknownMemberId);
    let no_group = h.join("", "", &["range"]);
    assert_eq!(h.join_answer(no_group).error, ErrorCode::InvalidGroupId);
    let mut request_with = |session| {
        let waiter = h.waiter();
        let request = JoinRequest {
            group_id: "g2".into(),
            member_id: String::new(),
            group_instance_id: None,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Vec::new())],
            session_timeout_ms: session,
            rebalance_timeout_ms: REBALANCE,
            client_id: "c".into(),
            client_host: "h".into(),
            require_known_member_id: true,
        };
        let effects = h.shard.join(waiter, request, h.now);
        h.take(effects);
        h.join_answer(waiter).error
    };
    assert_eq!(request_with(100), ErrorCode::InvalidSessionTimeout);
    assert_eq!(request_with(i32::MAX), ErrorCode::InvalidSessionTimeout);
    assert_eq!(h.state("g2"), "Dead");
}

#[test]
fn the_group_size_is_capped() {
    let mut h = Harness::with(ShardConfig { members_max: 2, ..ShardConfig::default() });
    let _ = h.new_member("g");
    let _ = h.new_member("g");
    let third = h.join("g", "", &["range"]);
    assert_eq!(h.join_answer(third).error, ErrorCode::GroupMaxSizeReached);
}

#[test]
fn the_protocol_most_members_prefer_among_common_ones_wins() {
    let mut h = Harness::new();
    let w1 = h.join("g", "", &["sticky", "range"]);
    let id1 = h.join_answer(w1).member_id;
    let w1 = h.join("g", &id1, &["sticky", "range"]);
    let w2 = h.join("g", "", &["range", "sticky"]);
    let id2 = h.join_answer(w2).member_id;
    let w2 = h.join("g", &id2, &["range", "sticky"]);
    let w3 = h.join("g", "", &["range", "roundrobin"]);
    let id3 = h.join_answer(w3).member_id;
    let w3 = h.join("g", &id3, &["range", "roundrobin"]);
    while h.waiting(w1) {
        h.until_deadline();
    }
    for waiter in [w1, w2, w3] {
        assert_eq!(h.join_answer(waiter).protocol_name.as_deref(), Some("range"));
    }
}

#[test]
fn only_empty_groups_are_deleted_and_their_offsets_go_with_them() {
    let mut h = Harness::new();
    let (a, _b) = stable_pair(&mut h);
    h.commit_durably("g", &a, 1, 9);
    assert_eq!(h.delete_group("g"), Some(Reply::Deleted(ErrorCode::NonEmptyGroup)));
    h.commit_durably("m", "", -1, 1);
    let waiter = h.waiter();
    let effects = h.shard.delete_group(waiter, "m");
    h.take(effects);
    assert!(h.waiting(waiter), "answered once the tombstones are durable");
    h.flush();
    assert_eq!(h.only_reply(waiter), Some(Reply::Deleted(ErrorCode::None)));
    assert_eq!(h.committed("m"), None);
    assert_eq!(h.failover().committed("m"), None, "the tombstones are in the log");
    assert_eq!(h.delete_group("m"), Some(Reply::Deleted(ErrorCode::GroupIdNotFound)));
}

#[test]
fn offsets_of_consumed_topics_are_not_deleted() {
    let mut h = Harness::new();
    let (a, _b) = stable_pair(&mut h);
    h.commit_durably("g", &a, 1, 9);
    let waiter = h.waiter();
    let partitions = [("t".to_owned(), 0), ("other".to_owned(), 0)];
    let effects = h.shard.delete_offsets(waiter, "g", &partitions);
    h.take(effects);
    let Some(Reply::Commit(answer)) = h.only_reply(waiter) else { panic!("no answer") };
    let errors: Vec<ErrorCode> = answer.partitions.iter().map(|p| p.2).collect();
    assert_eq!(errors, [ErrorCode::GroupSubscribedToTopic, ErrorCode::None]);
    assert_eq!(h.committed("g"), Some(9));
}

#[test]
fn an_empty_groups_offsets_expire_after_retention() {
    let retention = 60_000;
    let config = ShardConfig { offsets_retention_ms: retention, ..ShardConfig::default() };
    let mut h = Harness::with(config);
    h.commit_durably("m", "", -1, 1);
    h.advance(retention - 1);
    assert_eq!(h.committed("m"), Some(1));
    h.advance(1);
    assert_eq!(h.committed("m"), None);
    assert_eq!(h.state("m"), "Dead");
    h.flush();
    assert_eq!(h.failover().committed("m"), None, "expiry writes tombstones");
    assert_eq!(h.shard.next_deadline(), None, "nothing left to do");
}

#[test]
fn every_waiter_is_answered_exactly_once_under_random_schedules() {
    // A member set joins, leaves, goes silent and commits in a seeded random order, with
    // writes made durable or failed at random; at the end every request was answered once.
    for seed in 0..50u64 {
        let mut h = Harness::new();
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut members: Vec<String> = Vec::new();
        let mut asked: Vec<Waiter> = Vec::new();
        for _ in 0..200 {
            match next() % 8 {
                0 | 1 => {
                    let waiter = h.join("g", "", &["range"]);
                    asked.push(waiter);
                    if let Some(Reply::Join(answer)) =
                        h.replies.get(&waiter).and_then(|r| r.first())
                    {
                        members.push(answer.member_id.clone());
                    }
                }
                2 if !members.is_empty() => {
                    let id = members[usize::try_from(next()).unwrap() % members.len()].clone();
                    asked.push(h.join("g", &id, &["range"]));
                }
                3 if !members.is_empty() => {
                    let id = members[usize::try_from(next()).unwrap() % members.len()].clone();
                    let generation = h.shard.describe("g").map_or(0, |_| 1);
                    asked.push(h.sync("g", &id, generation, &[(&id, b"x")]));
                }
                4 if !members.is_empty() => {
                    let id = members.swap_remove(usize::try_from(next()).unwrap() % members.len());
                    let member = MemberRef { member_id: id, group_instance_id: None };
                    let (_, effects) = h.shard.leave("g", &[member], h.now);
                    h.take(effects);
                }
                5 => h.flush(),
                6 => h.fail_writes(ErrorCode::NotCoordinator),
                _ => h.advance(i64::try_from(next() % 20_000).unwrap()),
            }
        }
        // Drain: time passes until nothing is left to wait for.
        for _ in 0..100 {
            h.flush();
            match h.shard.next_deadline() {
                Some(deadline) if deadline < i64::MAX / 2 => h.advance(deadline - h.now + 1),
                _ => break,
            }
        }
        for waiter in asked {
            let replies = h.replies.get(&waiter).map_or(0, Vec::len);
            assert_eq!(replies, 1, "seed {seed}: {waiter:?} answered {replies} times");
        }
    }
}
