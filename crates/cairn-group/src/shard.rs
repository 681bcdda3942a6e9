//! [`Shard`]: every classic group of one offsets-topic partition, as Kafka's group
//! coordinator runs them, driven by requests and time and answering through [`Effects`].

use std::collections::BTreeMap;

use cairn_types::batch::Batches;
use cairn_types::limits::{
    BATCH_BYTES_MAX, GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS_DEFAULT,
    GROUP_CONSUMER_SESSION_TIMEOUT_MS_DEFAULT, GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT,
    GROUP_MEMBERS_MAX_DEFAULT, GROUP_NEW_MEMBER_JOIN_TIMEOUT_MS,
    GROUP_OFFSET_METADATA_BYTES_MAX_DEFAULT, GROUP_OFFSETS_RETENTION_MS_DEFAULT,
    GROUP_SESSION_TIMEOUT_MS_MAX_DEFAULT, GROUP_SESSION_TIMEOUT_MS_MIN_DEFAULT,
};

use crate::api::{
    CommitRequest, CommitResponse, ConsumerGroupDescription, Effects, ErrorCode, FetchedOffset,
    GroupDescription, GroupListing, HeartbeatRequest, HeartbeatResponse, JoinRequest, JoinResponse,
    MemberRef, Reply, SyncRequest, SyncResponse, Topics, Waiter, Write,
};
use crate::consumer::{self, Records, Refusal, Settings};
use crate::group::{Group, InitialDelay, Member, State};
use crate::records::{self, CommittedOffset, RecordError, RecordKey, RecordValue, StoredGroup};

/// A member waiting in a rebalance does not expire by its session.
const KEPT_ALIVE: i64 = i64::MAX;

/// How long an Empty group without offsets is kept before its tombstone (Kafka removes it
/// at its next cleanup, `offsets.retention.check.interval.ms`: ten minutes).
const EMPTY_GROUP_KEPT_MS: i64 = 600_000;

/// The broker's group settings (Kafka's `group.*` and `offsets.*` configs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardConfig {
    /// `group.min.session.timeout.ms`.
    pub session_timeout_ms_min: i32,
    /// `group.max.session.timeout.ms`.
    pub session_timeout_ms_max: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i64,
    /// `group.max.size`.
    pub members_max: usize,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_bytes_max: usize,
    /// `group.consumer.session.timeout.ms`: a consumer-protocol member without a heartbeat
    /// this long is fenced.
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`: how often consumer-protocol members beat.
    pub consumer_heartbeat_interval_ms: i32,
}

impl Default for ShardConfig {
    fn default() -> ShardConfig {
        ShardConfig {
            session_timeout_ms_min: GROUP_SESSION_TIMEOUT_MS_MIN_DEFAULT,
            session_timeout_ms_max: GROUP_SESSION_TIMEOUT_MS_MAX_DEFAULT,
            initial_rebalance_delay_ms: GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT,
            members_max: GROUP_MEMBERS_MAX_DEFAULT,
            offsets_retention_ms: GROUP_OFFSETS_RETENTION_MS_DEFAULT,
            offset_metadata_bytes_max: GROUP_OFFSET_METADATA_BYTES_MAX_DEFAULT,
            consumer_session_timeout_ms: GROUP_CONSUMER_SESSION_TIMEOUT_MS_DEFAULT,
            consumer_heartbeat_interval_ms: GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS_DEFAULT,
        }
    }
}

impl ShardConfig {
    /// The configs of every group, as DescribeConfigs' GROUP resource lists them (Kafka's
    /// `GroupConfig`, KIP-848): the broker's, not alterable per group.
    #[must_use]
    pub fn group_configs(&self) -> [(&'static str, i32); 2] {
        [
            ("consumer.heartbeat.interval.ms", self.consumer_heartbeat_interval_ms),
            ("consumer.session.timeout.ms", self.consumer_session_timeout_ms),
        ]
    }
}

/// What a write in flight will do once it is durable.
#[derive(Debug)]
enum Pending {
    /// The leader's assignment for `generation`.
    Assignment { group: String, generation: i32, assignments: BTreeMap<String, Vec<u8>> },
    /// Group state or expired offsets; nobody waits.
    State,
    /// Committed offsets, answered once durable.
    Commit {
        waiter: Waiter,
        group: String,
        offsets: Vec<((String, i32), CommittedOffset)>,
        answer: Vec<(String, i32, ErrorCode)>,
    },
    /// A static member's new id in a Stable group.
    StaticRejoin {
        waiter: Waiter,
        group: String,
        generation: i32,
        old_id: String,
        new: Box<Member>,
    },
    /// Tombstones of a deleted group or of deleted offsets.
    Delete { waiter: Waiter, answer: Option<Vec<(String, i32, ErrorCode)>> },
    /// A consumer-protocol group's change, answered once durable.
    Heartbeat { waiter: Waiter, response: HeartbeatResponse },
}

/// What [`Shard::replay_batches`] read of the shard's partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// The offset after the last whole, valid batch read (0 if none was): where the next read
    /// starts.
    pub next_offset: u64,
    /// The records skipped as not the coordinator's: each one's batch base offset, and why.
    pub skipped: Vec<(u64, RecordError)>,
}

/// Every group of one offsets-topic partition.
#[derive(Debug)]
pub struct Shard {
    config: ShardConfig,
    groups: BTreeMap<String, Group>,
    writes: BTreeMap<u64, Pending>,
    /// Answers that changed nothing but read what writes in flight changed, each held
    /// until the write it names (the last one in flight then) is durable.
    held: BTreeMap<u64, Vec<(Waiter, Reply)>>,
    next_write: u64,
    rng: u64,
    /// A consumer-protocol group's write failed: memory may be ahead of the log.
    stale: bool,
}

impl Shard {
    /// An empty shard; `seed` draws its member ids.
    #[must_use]
    pub fn new(config: ShardConfig, seed: u64) -> Shard {
        Shard {
            config,
            groups: BTreeMap::new(),
            writes: BTreeMap::new(),
            held: BTreeMap::new(),
            next_write: 0,
            rng: seed,
            stale: false,
        }
    }

    /// Handles a JoinGroup; the answer comes now or when the rebalance completes.
    pub fn join(&mut self, waiter: Waiter, request: JoinRequest, now: i64) -> Effects {
        let mut effects = Effects::default();
        let group_id = request.group_id.clone();
        if let Err((error, member_id)) = self.try_join(waiter, request, now, &mut effects) {
            effects.reply(waiter, Reply::Join(JoinResponse::error(error, &member_id)));
        }
        self.forget_if_unused(&group_id);
        effects
    }

    fn try_join(
        &mut self,
        waiter: Waiter,
        request: JoinRequest,
        now: i64,
        effects: &mut Effects,
    ) -> Result<(), Refusal> {
        let refuse = |error| Err((error, request.member_id.clone()));
        if request.group_id.is_empty() {
            return refuse(ErrorCode::InvalidGroupId);
        }
        let timeouts = self.config.session_timeout_ms_min..=self.config.session_timeout_ms_max;
        if !timeouts.contains(&request.session_timeout_ms) {
            return refuse(ErrorCode::InvalidSessionTimeout);
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return refuse(ErrorCode::InconsistentGroupProtocol);
        }
        if let Some(group) = self.groups.get_mut(&request.group_id)
            && let Some(consumer) = group.consumer.take()
        {
            if !consumer.members.is_empty() {
                group.consumer = Some(consumer);
                return refuse(ErrorCode::InconsistentGroupProtocol);
            }
            // An empty consumer-protocol group becomes a classic one.
            let mut records = Vec::new();
            consumer.tombstones(&request.group_id, &mut records);
            self.write(records, Pending::State, effects);
        }
        if !self.groups.contains_key(&request.group_id) {
            if !request.member_id.is_empty() {
                return refuse(ErrorCode::UnknownMemberId);
            }
            self.groups.insert(request.group_id.clone(), Group::new(&request.group_id, now));
        }
        if request.member_id.is_empty() {
            self.join_new(waiter, request, now, effects)
        } else {
            self.join_known(waiter, request, now, effects)
        }
    }

    /// A first join: a dynamic member gets its id (and rejoins with it, version 4+); a
    /// static member joins at once or takes over its instance's place.
    fn join_new(
        &mut self,
        waiter: Waiter,
        request: JoinRequest,
        now: i64,
        effects: &mut Effects,
    ) -> Result<(), Refusal> {
        let prefix = request.group_instance_id.as_deref().unwrap_or(&request.client_id);
        let new_id = self.member_id(&request.group_id, prefix);
        let members_max = self.config.members_max;
        let group = self.groups.get_mut(&request.group_id).expect("created above");
        if !group.supports(&request.protocol_type, &request.protocols) {
            return Err((ErrorCode::InconsistentGroupProtocol, String::new()));
        }
        if let Some(instance) = &request.group_instance_id
            && let Some(old_id) = group.instances.get(instance).cloned()
        {
            return self.rejoin_static(waiter, request, old_id, new_id, now, effects);
        }
        if group.members.len() + group.pending.len() >= members_max {
            return Err((ErrorCode::GroupMaxSizeReached, String::new()));
        }
        if request.require_known_member_id && request.group_instance_id.is_none() {
            let expiry = now + i64::from(request.session_timeout_ms);
            group.pending.insert(new_id.clone(), expiry);
            return Err((ErrorCode::MemberIdRequired, new_id));
        }
        let member = new_member(&request, new_id, waiter, now);
        self.add_and_rebalance(&request.group_id, member, now, effects);
        Ok(())
    }

    fn join_known(
        &mut self,
        waiter: Waiter,
        request: JoinRequest,
        now: i64,
        effects: &mut Effects,
    ) -> Result<(), Refusal> {
        let refuse = |error| Err((error, request.member_id.clone()));
        let group = self.groups.get_mut(&request.group_id).expect("checked by the caller");
        if group.pending.contains_key(&request.member_id) {
            if !group.supports(&request.protocol_type, &request.protocols) {
                return refuse(ErrorCode::InconsistentGroupProtocol);
            }
            let member = new_member(&request, request.member_id.clone(), waiter, now);
            self.add_and_rebalance(&request.group_id, member, now, effects);
            return Ok(());
        }
        check_member(group, &request.member_id, request.group_instance_id.as_deref())?;
        if !group.supports(&request.protocol_type, &request.protocols) {
            return refuse(ErrorCode::InconsistentGroupProtocol);
        }
        let member = &group.members[&request.member_id];
        let unchanged = member.same_protocols(&request.protocols);
        let rejoin = match group.state {
            State::Empty => return refuse(ErrorCode::UnknownMemberId),
            State::PreparingRebalance => true,
            State::CompletingRebalance => !unchanged,
            State::Stable => !unchanged || group.is_leader(&request.member_id),
        };
        if !rejoin {
            effects.reply(waiter, Reply::Join(current_join(group, &request.member_id, false)));
            return Ok(());
        }
        let member = group.members.get_mut(&request.member_id).expect("checked above");
        if let Some(old) = member.join_waiter.replace(waiter) {
            let answer = JoinResponse::error(ErrorCode::RebalanceInProgress, &member.id);
            effects.reply(old, Reply::Join(answer));
        }
        update_member(member, &request);
        self.rebalance(&request.group_id, now, effects);
        Ok(())
    }

    /// A static member restarted with a new member id: it replaces the old one. A Stable
    /// group whose protocols stay keeps its assignment (after the new id is durable).
    fn rejoin_static(
        &mut self,
        waiter: Waiter,
        request: JoinRequest,
        old_id: String,
        new_id: String,
        now: i64,
        effects: &mut Effects,
    ) -> Result<(), Refusal> {
        let group = self.groups.get_mut(&request.group_id).expect("checked by the caller");
        let old = &group.members[&old_id];
        let mut new = new_member(&request, new_id, waiter, now);
        new.assignment.clone_from(&old.assignment);
        new.is_new = false;
        if group.state == State::Stable && old.same_protocols(&request.protocols) {
            let mut replaced = group.clone();
            replace_member(&mut replaced, &old_id, new.clone(), &mut Effects::default());
            let pending = Pending::StaticRejoin {
                waiter,
                group: request.group_id.clone(),
                generation: group.generation,
                old_id,
                new: Box::new(new),
            };
            let records = vec![group_record(&replaced)];
            self.write(records, pending, effects);
            return Ok(());
        }
        replace_member(group, &old_id, new, effects);
        self.rebalance(&request.group_id, now, effects);
        Ok(())
    }

    fn add_and_rebalance(&mut self, group_id: &str, member: Member, now: i64, fx: &mut Effects) {
        let group = self.groups.get_mut(group_id).expect("checked by the caller");
        group.add(member);
        if let Some(delay) = &mut group.initial_delay {
            delay.member_added = true;
        }
        self.rebalance(group_id, now, fx);
    }

    /// Starts a rebalance unless one is under way, then completes it if everyone rejoined.
    fn rebalance(&mut self, group_id: &str, now: i64, effects: &mut Effects) {
        let initial_delay = self.config.initial_rebalance_delay_ms;
        let group = self.groups.get_mut(group_id).expect("checked by the caller");
        if group.state != State::PreparingRebalance {
            prepare_rebalance(group, initial_delay, now, effects);
        }
        self.try_complete_join(group_id, now, effects);
    }

    fn try_complete_join(&mut self, group_id: &str, now: i64, effects: &mut Effects) {
        let Some(group) = self.groups.get(group_id) else { return };
        let ready = group.state == State::PreparingRebalance
            && group.initial_delay.is_none()
            && group.all_joined();
        if ready {
            self.complete_join(group_id, now, effects);
        }
    }

    /// Ends a rebalance: members that did not rejoin leave, the generation moves on, every
    /// rejoined member hears of it (the leader with every member's metadata).
    fn complete_join(&mut self, group_id: &str, now: i64, effects: &mut Effects) {
        let group = self.groups.get_mut(group_id).expect("checked by the caller");
        let gone: Vec<String> = group
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            group.remove(&id);
        }
        group.rebalance_deadline = None;
        group.initial_delay = None;
        group.generation = group.generation.wrapping_add(1).max(1);
        if group.members.is_empty() {
            group.protocol = None;
            group.transition(State::Empty, now);
            let records = vec![group_record(group)];
            self.write(records, Pending::State, effects);
            return;
        }
        group.protocol = group.select_protocol();
        group.transition(State::CompletingRebalance, now);
        let ids: Vec<String> = group.members.keys().cloned().collect();
        for id in ids {
            let answer = current_join(group, &id, false);
            let member = group.members.get_mut(&id).expect("listed above");
            member.is_new = false;
            member.deadline = now + i64::from(member.session_timeout_ms);
            if let Some(waiter) = member.join_waiter.take() {
                effects.reply(waiter, Reply::Join(answer));
            }
        }
    }

    /// Handles a SyncGroup; the answer comes now or once the leader's assignment is durable.
    pub fn sync(&mut self, waiter: Waiter, request: SyncRequest, now: i64) -> Effects {
        let mut effects = Effects::default();
        if let Err(error) = self.try_sync(waiter, request, now, &mut effects) {
            effects.reply(waiter, Reply::Sync(SyncResponse::error(error)));
        }
        effects
    }

    fn try_sync(
        &mut self,
        waiter: Waiter,
        request: SyncRequest,
        now: i64,
        effects: &mut Effects,
    ) -> Result<(), ErrorCode> {
        let group = self.groups.get_mut(&request.group_id).ok_or(ErrorCode::UnknownMemberId)?;
        check_member(group, &request.member_id, request.group_instance_id.as_deref())
            .map_err(|(error, _)| error)?;
        if request.generation_id != group.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        let mismatch = |asked: &Option<String>, have: &Option<String>| {
            asked.as_ref().is_some_and(|asked| Some(asked) != have.as_ref())
        };
        if mismatch(&request.protocol_type, &group.protocol_type)
            || mismatch(&request.protocol_name, &group.protocol)
        {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        match group.state {
            State::Empty => Err(ErrorCode::UnknownMemberId),
            State::PreparingRebalance => Err(ErrorCode::RebalanceInProgress),
            State::Stable => {
                let member = group.members.get_mut(&request.member_id).expect("checked");
                member.deadline = now + i64::from(member.session_timeout_ms);
                effects.reply(waiter, Reply::Sync(sync_answer(group, &request.member_id)));
                Ok(())
            }
            State::CompletingRebalance => {
                let member = group.members.get_mut(&request.member_id).expect("checked");
                if let Some(old) = member.sync_waiter.replace(waiter) {
                    let answer = SyncResponse::error(ErrorCode::RebalanceInProgress);
                    effects.reply(old, Reply::Sync(answer));
                }
                member.deadline = KEPT_ALIVE;
                if group.is_leader(&request.member_id) {
                    self.store_assignment(&request, effects);
                }
                Ok(())
            }
        }
    }

    /// Writes the leader's assignment; the members hear of it once it is durable.
    fn store_assignment(&mut self, request: &SyncRequest, effects: &mut Effects) {
        let group = &self.groups[&request.group_id];
        let mut assignments: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (member_id, assignment) in &request.assignments {
            if group.members.contains_key(member_id) {
                assignments.insert(member_id.clone(), assignment.clone());
            }
        }
        let mut assigned = group.clone();
        for member in assigned.members.values_mut() {
            member.assignment = assignments.get(&member.id).cloned().unwrap_or_default();
        }
        let pending = Pending::Assignment {
            group: request.group_id.clone(),
            generation: group.generation,
            assignments,
        };
        self.write(vec![group_record(&assigned)], pending, effects);
    }

    /// Handles a Heartbeat.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member: &MemberRef,
        generation: i32,
        now: i64,
    ) -> ErrorCode {
        let Some(group) = self.groups.get_mut(group_id) else { return ErrorCode::UnknownMemberId };
        if let Err((error, _)) =
            check_member(group, &member.member_id, member.group_instance_id.as_deref())
        {
            return error;
        }
        if group.state == State::Empty {
            return ErrorCode::UnknownMemberId;
        }
        if generation != group.generation {
            return ErrorCode::IllegalGeneration;
        }
        let known = group.members.get_mut(&member.member_id).expect("checked above");
        if known.join_waiter.is_none() && known.sync_waiter.is_none() {
            known.deadline = now + i64::from(known.session_timeout_ms);
        }
        match group.state {
            State::PreparingRebalance => ErrorCode::RebalanceInProgress,
            _ => ErrorCode::None,
        }
    }

    /// Handles a ConsumerGroupHeartbeat (RFC 0008) of request `version`; the answer comes
    /// once what it changed is durable. `topics` looks the cluster's topics up.
    pub fn consumer_heartbeat(
        &mut self,
        waiter: Waiter,
        request: HeartbeatRequest,
        version: i16,
        topics: &dyn Topics,
        now: i64,
    ) -> Effects {
        let mut effects = Effects::default();
        match self.try_consumer_heartbeat(&request, version, topics, now) {
            Err((error, message)) => {
                let answer = HeartbeatResponse::error(error, message);
                effects.reply(waiter, Reply::Heartbeat(answer));
            }
            Ok((response, records)) if records.is_empty() => {
                self.reply_after_writes(waiter, Reply::Heartbeat(response), &mut effects);
            }
            Ok((response, records)) => {
                self.write(records, Pending::Heartbeat { waiter, response }, &mut effects);
            }
        }
        self.forget_if_unused(&request.group_id);
        effects
    }

    fn try_consumer_heartbeat(
        &mut self,
        request: &HeartbeatRequest,
        version: i16,
        topics: &dyn Topics,
        now: i64,
    ) -> Result<(HeartbeatResponse, Records), Refusal> {
        consumer::check(request, version)?;
        let settings = Settings {
            session_timeout_ms: self.config.consumer_session_timeout_ms,
            heartbeat_interval_ms: self.config.consumer_heartbeat_interval_ms,
            members_max: self.config.members_max,
        };
        let new_id = if request.member_id.is_empty() {
            self.member_id(&request.group_id, "")
        } else {
            String::new()
        };
        let mut records = Vec::new();
        let joining = request.member_epoch == 0;
        let group_id = &request.group_id;
        let group = match self.groups.get_mut(group_id) {
            Some(group) => group,
            None if joining => {
                self.groups.entry(group_id.clone()).or_insert(Group::new(group_id, now))
            }
            None => {
                let message = format!("group {group_id} does not exist");
                return Err((ErrorCode::UnknownMemberId, message));
            }
        };
        if group.consumer.is_none() {
            to_consumer_group(group, joining, &mut records)?;
        }
        let consumer = group.consumer.as_mut().expect("converted above");
        let context = (&settings, topics, now);
        let response = consumer.heartbeat(group_id, request, new_id, context, &mut records)?;
        if consumer.members.is_empty() {
            group.state_timestamp = now;
        }
        Ok((response, records))
    }

    /// A consumer-protocol group as ConsumerGroupDescribe shows it.
    ///
    /// # Errors
    ///
    /// `GROUP_ID_NOT_FOUND` if there is no such group or it is a classic one.
    pub fn describe_consumer(&self, group_id: &str) -> Result<ConsumerGroupDescription, ErrorCode> {
        let group = self.groups.get(group_id).and_then(|g| g.consumer.as_ref());
        group.map(|c| c.describe(group_id)).ok_or(ErrorCode::GroupIdNotFound)
    }

    /// Whether a consumer-protocol member may fetch the group's offsets (OffsetFetch v9
    /// with a member id and epoch); classic groups and requests without a member pass.
    #[must_use]
    pub fn check_fetch(&self, group_id: &str, member_id: &str, epoch: i32) -> ErrorCode {
        let group = self.groups.get(group_id).and_then(|g| g.consumer.as_ref());
        match group {
            Some(consumer) if epoch >= 0 => consumer
                .check_offsets_access(member_id, epoch, None)
                .err()
                .unwrap_or(ErrorCode::None),
            _ => ErrorCode::None,
        }
    }

    /// Whether memory may be ahead of the log (a write whose change memory already made
    /// failed, with its outcome unknown): the runtime then drops the shard and loads it again,
    /// once that outcome is known (every entry appended before the failure committed, or the
    /// term over). Loaded sooner, a failed write that commits later leaves memory behind the
    /// log, and what the shard writes next contradicts it.
    #[must_use]
    pub fn stale(&self) -> bool {
        self.stale
    }

    /// Answers `reply` once the writes now in flight are durable (at once if none is): it
    /// may tell of what they changed.
    fn reply_after_writes(&mut self, waiter: Waiter, reply: Reply, effects: &mut Effects) {
        match self.writes.keys().next_back() {
            Some(&last) => self.held.entry(last).or_default().push((waiter, reply)),
            None => effects.reply(waiter, reply),
        }
    }

    /// Handles a LeaveGroup: an error per member, in request order.
    pub fn leave(
        &mut self,
        group_id: &str,
        members: &[MemberRef],
        now: i64,
    ) -> (Vec<ErrorCode>, Effects) {
        let mut effects = Effects::default();
        let mut errors = Vec::with_capacity(members.len());
        for member in members {
            let error = match self.groups.get_mut(group_id) {
                None => ErrorCode::UnknownMemberId,
                Some(group) => match leaving_member(group, member) {
                    Err(error) => error,
                    Ok(None) => ErrorCode::None,
                    Ok(Some(id)) => {
                        self.remove_member(group_id, &id, now, &mut effects);
                        ErrorCode::None
                    }
                },
            };
            errors.push(error);
        }
        self.forget_if_unused(group_id);
        (errors, effects)
    }

    /// Removes a member (it left or expired) and rebalances the rest.
    fn remove_member(&mut self, group_id: &str, member_id: &str, now: i64, fx: &mut Effects) {
        let group = self.groups.get_mut(group_id).expect("checked by the caller");
        let Some(member) = group.remove(member_id) else { return };
        answer_waiters(&member, ErrorCode::UnknownMemberId, fx);
        match group.state {
            State::Empty => {}
            State::PreparingRebalance => self.try_complete_join(group_id, now, fx),
            State::CompletingRebalance | State::Stable => self.rebalance(group_id, now, fx),
        }
    }

    /// Handles an OffsetCommit; the answer comes once the offsets are durable.
    pub fn commit(&mut self, waiter: Waiter, request: CommitRequest, now: i64) -> Effects {
        let mut effects = Effects::default();
        if let Err(error) = self.check_commit(&request, now) {
            let partitions =
                request.offsets.iter().map(|o| (o.topic.clone(), o.partition, error)).collect();
            effects.reply(waiter, Reply::Commit(CommitResponse { partitions }));
            self.forget_if_unused(&request.group_id);
            return effects;
        }
        let metadata_max = self.config.offset_metadata_bytes_max;
        let mut answer = Vec::with_capacity(request.offsets.len());
        let mut offsets = Vec::with_capacity(request.offsets.len());
        for o in request.offsets {
            let metadata = o.metadata.unwrap_or_default();
            if metadata.len() > metadata_max {
                answer.push((o.topic, o.partition, ErrorCode::OffsetMetadataTooLarge));
                continue;
            }
            answer.push((o.topic.clone(), o.partition, ErrorCode::None));
            let value = CommittedOffset {
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata,
                commit_timestamp: now,
            };
            offsets.push(((o.topic, o.partition), value));
        }
        if offsets.is_empty() {
            effects.reply(waiter, Reply::Commit(CommitResponse { partitions: answer }));
            return effects;
        }
        let group = request.group_id;
        let records =
            offsets.iter().map(|(key, value)| offset_record(&group, key, value)).collect();
        self.write(records, Pending::Commit { waiter, group, offsets, answer }, &mut effects);
        effects
    }

    /// Kafka's checks of a commit: a group without members takes commits without a member
    /// (generation −1); a group with members only from its members, in their generation.
    fn check_commit(&mut self, request: &CommitRequest, now: i64) -> Result<(), ErrorCode> {
        if request.group_id.is_empty() {
            return Err(ErrorCode::InvalidGroupId);
        }
        if !self.groups.contains_key(&request.group_id) {
            if request.generation_id >= 0 {
                return Err(ErrorCode::IllegalGeneration);
            }
            self.groups.insert(request.group_id.clone(), Group::new(&request.group_id, now));
        }
        let group = self.groups.get_mut(&request.group_id).expect("present");
        if let Some(consumer) = &group.consumer {
            let instance = request.group_instance_id.as_deref();
            return consumer.check_offsets_access(
                &request.member_id,
                request.generation_id,
                instance,
            );
        }
        if request.generation_id < 0 && group.state == State::Empty {
            return Ok(());
        }
        check_member(group, &request.member_id, request.group_instance_id.as_deref())
            .map_err(|(error, _)| error)?;
        if request.generation_id != group.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        match group.state {
            State::CompletingRebalance => Err(ErrorCode::RebalanceInProgress),
            State::Empty => Err(ErrorCode::UnknownMemberId),
            State::Stable | State::PreparingRebalance => {
                let member = group.members.get_mut(&request.member_id).expect("checked");
                if member.join_waiter.is_none() && member.sync_waiter.is_none() {
                    member.deadline = now + i64::from(member.session_timeout_ms);
                }
                Ok(())
            }
        }
    }

    /// The committed offsets of `partitions` (all the group's when `None`), as (topic,
    /// partition, offset). An unknown group has none.
    #[must_use]
    pub fn offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Vec<(String, i32, FetchedOffset)> {
        let group = self.groups.get(group_id);
        match partitions {
            Some(wanted) => wanted
                .iter()
                .map(|(topic, partition)| {
                    let key = (topic.clone(), *partition);
                    let found = group.and_then(|g| g.offsets.get(&key)).cloned();
                    (topic.clone(), *partition, found)
                })
                .collect(),
            None => group
                .map(|g| {
                    let all = g.offsets.iter();
                    all.map(|((t, p), o)| (t.clone(), *p, Some(o.clone()))).collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Every committed offset of every group, as (group, topic, partition, offset).
    #[must_use]
    pub fn committed(&self) -> Vec<(String, String, i32, i64)> {
        let groups = self.groups.values();
        let offsets = groups.flat_map(|g| g.offsets.iter().map(move |offset| (&g.id, offset)));
        offsets.map(|(id, ((t, p), o))| (id.clone(), t.clone(), *p, o.offset)).collect()
    }

    /// A group as DescribeGroups shows it; `None` if there is no such group.
    #[must_use]
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let group = self.groups.get(group_id)?;
        if group.consumer.is_some() {
            // Kafka's answer: DescribeGroups describes classic groups only.
            return Some(GroupDescription {
                error: ErrorCode::GroupIdNotFound,
                group_id: group.id.clone(),
                state: "Dead",
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        }
        let stable = group.state == State::Stable;
        Some(GroupDescription {
            error: ErrorCode::None,
            group_id: group.id.clone(),
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                group.protocol.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members: group.describe_members(),
        })
    }

    /// Every group, as ListGroups shows them.
    #[must_use]
    pub fn list(&self) -> Vec<GroupListing> {
        let groups = self.groups.values();
        groups
            .map(|g| match &g.consumer {
                Some(consumer) => GroupListing {
                    group_id: g.id.clone(),
                    protocol_type: "consumer".to_owned(),
                    state: consumer.state(),
                    group_type: "consumer",
                },
                None => GroupListing {
                    group_id: g.id.clone(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    state: g.state.name(),
                    group_type: "classic",
                },
            })
            .collect()
    }

    /// Handles one group of a DeleteGroups: only a group without members goes; its offsets
    /// go with it. Answered once the tombstones are durable.
    pub fn delete_group(&mut self, waiter: Waiter, group_id: &str) -> Effects {
        let mut effects = Effects::default();
        let error = match self.groups.get(group_id) {
            None => Some(ErrorCode::GroupIdNotFound),
            Some(group) if !group.is_empty() => Some(ErrorCode::NonEmptyGroup),
            Some(_) => None,
        };
        if let Some(error) = error {
            effects.reply(waiter, Reply::Deleted(error));
            return effects;
        }
        let group = self.groups.remove(group_id).expect("checked above");
        self.write(tombstones(&group), Pending::Delete { waiter, answer: None }, &mut effects);
        effects
    }

    /// Handles an OffsetDelete: offsets of topics the group does not consume go; those it
    /// consumes are refused with GROUP_SUBSCRIBED_TO_TOPIC. Answered once durable, as per
    /// partition errors; a group-level error comes as [`Reply::Deleted`].
    pub fn delete_offsets(
        &mut self,
        waiter: Waiter,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Effects {
        let mut effects = Effects::default();
        let Some(group) = self.groups.get_mut(group_id) else {
            effects.reply(waiter, Reply::Deleted(ErrorCode::GroupIdNotFound));
            return effects;
        };
        let subscribed = match group.state {
            State::Empty if group.consumer.is_some() => {
                group.consumer.as_ref().map(|c| c.subscribed())
            }
            State::Empty => Some(Default::default()),
            _ if group.protocol_type.as_deref() != Some("consumer") => {
                effects.reply(waiter, Reply::Deleted(ErrorCode::NonEmptyGroup));
                return effects;
            }
            _ => group.subscribed_topics(),
        };
        let mut answer = Vec::with_capacity(partitions.len());
        let mut records = Vec::new();
        for (topic, partition) in partitions {
            let consumed = subscribed.as_ref().is_none_or(|topics| topics.contains(topic));
            if consumed {
                answer.push((topic.clone(), *partition, ErrorCode::GroupSubscribedToTopic));
                continue;
            }
            answer.push((topic.clone(), *partition, ErrorCode::None));
            if group.offsets.remove(&(topic.clone(), *partition)).is_some() {
                let key = offset_key(group_id, topic, *partition);
                records.push((key, None));
            }
        }
        if records.is_empty() {
            effects.reply(waiter, Reply::Commit(CommitResponse { partitions: answer }));
        } else {
            self.write(records, Pending::Delete { waiter, answer: Some(answer) }, &mut effects);
        }
        self.forget_if_unused(group_id);
        effects
    }

    fn write(
        &mut self,
        records: Vec<(RecordKey, Option<RecordValue>)>,
        pending: Pending,
        fx: &mut Effects,
    ) {
        let id = self.next_write;
        self.next_write += 1;
        self.writes.insert(id, pending);
        fx.writes.push(Write { id, records });
    }

    /// Write `id` is durable: what waited on it happens.
    pub fn written(&mut self, id: u64, now: i64) -> Effects {
        let mut effects = Effects::default();
        match self.writes.remove(&id) {
            None | Some(Pending::State) => {}
            Some(Pending::Assignment { group, generation, assignments }) => {
                self.assigned(&group, generation, &assignments, now, &mut effects);
            }
            Some(Pending::Commit { waiter, group, offsets, answer }) => {
                if let Some(group) = self.groups.get_mut(&group) {
                    group.offsets.extend(offsets);
                }
                effects.reply(waiter, Reply::Commit(CommitResponse { partitions: answer }));
            }
            Some(Pending::StaticRejoin { waiter, group, generation, old_id, new }) => {
                self.replaced(waiter, &group, generation, &old_id, *new, &mut effects);
            }
            Some(Pending::Delete { waiter, answer: None }) => {
                effects.reply(waiter, Reply::Deleted(ErrorCode::None));
            }
            Some(Pending::Delete { waiter, answer: Some(partitions) }) => {
                effects.reply(waiter, Reply::Commit(CommitResponse { partitions }));
            }
            Some(Pending::Heartbeat { waiter, response }) => {
                effects.reply(waiter, Reply::Heartbeat(response));
            }
        }
        self.release_held(id, None, &mut effects);
        effects
    }

    /// Answers the replies held behind writes up to `id`, or `error` if `id` failed.
    fn release_held(&mut self, id: u64, error: Option<ErrorCode>, effects: &mut Effects) {
        let later = self.held.split_off(&(id + 1));
        for (waiter, reply) in std::mem::replace(&mut self.held, later).into_values().flatten() {
            let reply = match error {
                None => reply,
                Some(error) => Reply::Heartbeat(HeartbeatResponse::error(error, "write failed")),
            };
            effects.reply(waiter, reply);
        }
    }

    /// Write `id` failed (leadership lost, a timeout: its outcome is unknown): whoever
    /// waited on it hears `error`, and a rebalance it was to complete starts over. A write
    /// whose change memory already holds (a consumer-protocol group's, a fence, an expiry, a
    /// deletion) leaves the shard [`Shard::stale`].
    pub fn write_failed(&mut self, id: u64, error: ErrorCode, now: i64) -> Effects {
        let mut effects = Effects::default();
        match self.writes.remove(&id) {
            None => {}
            Some(Pending::State) => self.stale = true,
            Some(Pending::Assignment { group, generation, .. }) => {
                let Some(g) = self.groups.get_mut(&group) else { return effects };
                if g.state == State::CompletingRebalance && g.generation == generation {
                    for member in g.members.values_mut() {
                        if let Some(waiter) = member.sync_waiter.take() {
                            effects.reply(waiter, Reply::Sync(SyncResponse::error(error)));
                        }
                        member.deadline = now + i64::from(member.session_timeout_ms);
                    }
                    self.rebalance(&group, now, &mut effects);
                }
            }
            Some(Pending::Commit { waiter, answer, .. }) => {
                let partitions = answer.into_iter().map(|(t, p, _)| (t, p, error)).collect();
                effects.reply(waiter, Reply::Commit(CommitResponse { partitions }));
            }
            Some(Pending::StaticRejoin { waiter, new, .. }) => {
                effects.reply(waiter, Reply::Join(JoinResponse::error(error, &new.id)));
            }
            Some(Pending::Delete { waiter, .. }) => {
                self.stale = true;
                effects.reply(waiter, Reply::Deleted(error));
            }
            Some(Pending::Heartbeat { waiter, .. }) => {
                self.stale = true;
                let answer = HeartbeatResponse::error(error, "the group's write failed");
                effects.reply(waiter, Reply::Heartbeat(answer));
            }
        }
        self.release_held(id, Some(error), &mut effects);
        effects
    }

    /// The leader's assignment is durable: every member that waits gets its part, and the
    /// group is Stable, unless a rebalance started meanwhile.
    fn assigned(
        &mut self,
        group_id: &str,
        generation: i32,
        assignments: &BTreeMap<String, Vec<u8>>,
        now: i64,
        effects: &mut Effects,
    ) {
        let Some(group) = self.groups.get_mut(group_id) else { return };
        if group.state != State::CompletingRebalance || group.generation != generation {
            return;
        }
        for member in group.members.values_mut() {
            member.assignment = assignments.get(&member.id).cloned().unwrap_or_default();
        }
        group.transition(State::Stable, now);
        let ids: Vec<String> = group.members.keys().cloned().collect();
        for id in ids {
            let answer = sync_answer(group, &id);
            let member = group.members.get_mut(&id).expect("listed above");
            if let Some(waiter) = member.sync_waiter.take() {
                member.deadline = now + i64::from(member.session_timeout_ms);
                effects.reply(waiter, Reply::Sync(answer));
            }
        }
    }

    /// A static member's new id is durable: it takes the old one's place without a
    /// rebalance, unless the group moved on meanwhile (then it rejoins).
    fn replaced(
        &mut self,
        waiter: Waiter,
        group_id: &str,
        generation: i32,
        old_id: &str,
        new: Member,
        effects: &mut Effects,
    ) {
        let still = self.groups.get(group_id).is_some_and(|g| {
            g.state == State::Stable && g.generation == generation && g.members.contains_key(old_id)
        });
        if !still {
            let answer = JoinResponse::error(ErrorCode::UnknownMemberId, &new.id);
            effects.reply(waiter, Reply::Join(answer));
            return;
        }
        let group = self.groups.get_mut(group_id).expect("checked above");
        let new_id = new.id.clone();
        let mut new = new;
        new.join_waiter = None;
        replace_member(group, old_id, new, effects);
        let leader = group.is_leader(&new_id);
        effects.reply(waiter, Reply::Join(current_join(group, &new_id, leader)));
    }

    /// Moves time to `now`: rebalances that waited long enough complete, members without a
    /// heartbeat leave, offsets past retention expire.
    pub fn tick(&mut self, now: i64) -> Effects {
        let mut effects = Effects::default();
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            self.expire_rebalance(&id, now, &mut effects);
            self.expire_members(&id, now, &mut effects);
            self.expire_consumers(&id, now, &mut effects);
            self.expire_offsets(&id, now, &mut effects);
            self.forget_if_unused(&id);
        }
        effects
    }

    fn expire_rebalance(&mut self, group_id: &str, now: i64, effects: &mut Effects) {
        let delay_ms = self.config.initial_rebalance_delay_ms;
        let group = self.groups.get_mut(group_id).expect("listed by the caller");
        let due = group.rebalance_deadline.is_some_and(|deadline| deadline <= now);
        if group.state != State::PreparingRebalance || !due {
            return;
        }
        if let Some(delay) = group.initial_delay
            && delay.member_added
            && delay.remaining_ms > 0
        {
            let next = delay_ms.min(delay.remaining_ms);
            group.initial_delay =
                Some(InitialDelay { remaining_ms: delay.remaining_ms - next, member_added: false });
            group.rebalance_deadline = Some(now + next);
            return;
        }
        self.complete_join(group_id, now, effects);
    }

    fn expire_consumers(&mut self, group_id: &str, now: i64, effects: &mut Effects) {
        let group = self.groups.get_mut(group_id).expect("listed by the caller");
        let Some(consumer) = group.consumer.as_mut() else { return };
        let mut records = Vec::new();
        consumer.expire(group_id, now, &mut records);
        if consumer.members.is_empty() && !records.is_empty() {
            group.state_timestamp = now;
        }
        if !records.is_empty() {
            self.write(records, Pending::State, effects);
        }
    }

    fn expire_members(&mut self, group_id: &str, now: i64, effects: &mut Effects) {
        let group = self.groups.get_mut(group_id).expect("listed by the caller");
        let before = group.pending.len();
        group.pending.retain(|_, expiry| *expiry > now);
        let pending_expired = group.pending.len() < before;
        let expired: Vec<String> =
            group.members.values().filter(|m| m.deadline <= now).map(|m| m.id.clone()).collect();
        for id in expired {
            self.remove_member(group_id, &id, now, effects);
        }
        if pending_expired {
            self.try_complete_join(group_id, now, effects);
        }
    }

    /// Kafka's rules: an Empty group's offsets expire together, retention after it emptied;
    /// a group that never had members (manual assignment) loses each offset retention after
    /// its commit. The group goes with its last offset; an Empty group without offsets goes
    /// after [`EMPTY_GROUP_KEPT_MS`].
    fn expire_offsets(&mut self, group_id: &str, now: i64, effects: &mut Effects) {
        let retention = self.config.offsets_retention_ms;
        let group = self.groups.get_mut(group_id).expect("listed by the caller");
        let Some(expiry) = expiry(group, retention) else { return };
        if now < expiry {
            return;
        }
        let had_members = group.protocol_type.is_some() || group.consumer.is_some();
        let expired: Vec<(String, i32)> = group
            .offsets
            .iter()
            .filter(|(_, o)| had_members || o.commit_timestamp.saturating_add(retention) <= now)
            .map(|(key, _)| key.clone())
            .collect();
        let mut records = Vec::with_capacity(expired.len() + 1);
        for key in expired {
            group.offsets.remove(&key);
            records.push((offset_key(group_id, &key.0, key.1), None));
        }
        if group.offsets.is_empty() {
            match &group.consumer {
                Some(consumer) => consumer.tombstones(group_id, &mut records),
                None => records.push((RecordKey::Group { group: group_id.to_owned() }, None)),
            }
            self.groups.remove(group_id);
        }
        self.write(records, Pending::State, effects);
    }

    /// The earliest time [`Shard::tick`] has something to do, if any.
    #[must_use]
    pub fn next_deadline(&self) -> Option<i64> {
        let retention = self.config.offsets_retention_ms;
        let mut next: Option<i64> = None;
        let mut at = |time: i64| next = Some(next.map_or(time, |n| n.min(time)));
        for group in self.groups.values() {
            group.rebalance_deadline.into_iter().for_each(&mut at);
            group
                .members
                .values()
                .filter(|m| m.deadline != KEPT_ALIVE)
                .for_each(|m| at(m.deadline));
            group.pending.values().copied().for_each(&mut at);
            group.consumer.as_ref().and_then(|c| c.next_deadline()).into_iter().for_each(&mut at);
            expiry(group, retention).into_iter().for_each(&mut at);
        }
        next
    }

    /// Replays one record of the shard's partition (loading after a leader change). `None`
    /// is a tombstone.
    pub fn replay(&mut self, key: RecordKey, value: Option<RecordValue>, now: i64) {
        let group_id = key.group().to_owned();
        let consumer_record = !matches!(key, RecordKey::Offset { .. } | RecordKey::Group { .. });
        let known = self.groups.get(&group_id).is_some_and(|g| g.consumer.is_some());
        if consumer_record && value.is_none() && !known {
            return;
        }
        let group =
            self.groups.entry(group_id.clone()).or_insert_with(|| Group::new(&group_id, now));
        match (key, value) {
            (RecordKey::Offset { topic, partition, .. }, Some(RecordValue::Offset(offset))) => {
                group.offsets.insert((topic, partition), offset);
            }
            (RecordKey::Offset { topic, partition, .. }, _) => {
                group.offsets.remove(&(topic, partition));
            }
            (RecordKey::Group { .. }, Some(RecordValue::Group(stored))) => {
                load_group(group, stored, now)
            }
            (RecordKey::Group { .. }, _) => {
                let offsets = std::mem::take(&mut group.offsets);
                *group = Group::new(&group_id, now);
                group.offsets = offsets;
            }
            (RecordKey::ConsumerGroupMetadata { .. }, None) => group.consumer = None,
            (key, value) => {
                let session_timeout_ms = self.config.consumer_session_timeout_ms;
                let consumer = group.consumer.get_or_insert_default();
                consumer.replay(key, value, now, session_timeout_ms);
            }
        }
        self.forget_if_unused(&group_id);
    }

    /// Replays `bytes`, whole batches of the shard's partition as its log holds them (a new
    /// coordinator loading), record by record: control batches are skipped, and so are records
    /// that are not the coordinator's (listed in [`Replayed::skipped`]); the walk ends at the
    /// first batch that is not valid.
    pub fn replay_batches(&mut self, bytes: &[u8], now: i64) -> Replayed {
        let mut replayed = Replayed::default();
        for batch in Batches::new(bytes, BATCH_BYTES_MAX) {
            let Ok(batch) = batch else { break };
            replayed.next_offset = batch.header().next_offset().0;
            if batch.header().is_control() {
                continue;
            }
            for record in batch.records() {
                let decoded = record
                    .map_err(RecordError::from)
                    .and_then(|record| records::decode(record.key, record.value));
                match decoded {
                    Ok((key, value)) => self.replay(key, value, now),
                    Err(error) => replayed.skipped.push((batch.base_offset().0, error)),
                }
            }
        }
        replayed
    }

    /// Drops a group that holds nothing: no members, offsets or member ids handed out.
    fn forget_if_unused(&mut self, group_id: &str) {
        let unused = self.groups.get(group_id).is_some_and(|g| {
            g.consumer.is_none()
                && g.state == State::Empty
                && g.offsets.is_empty()
                && g.pending.is_empty()
                && g.generation == 0
        });
        if unused {
            self.groups.remove(group_id);
        }
    }

    /// A member id: the client id (a static member's instance id) and 128 random bits in a
    /// UUID's form, as Kafka makes them; drawn again in the unlikely case it is taken.
    fn member_id(&mut self, group_id: &str, prefix: &str) -> String {
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}-") };
        loop {
            let (high, low) = (self.next_random(), self.next_random());
            let id = format!(
                "{prefix}{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                high >> 32,
                (high >> 16) & 0xffff,
                high & 0xffff,
                low >> 48,
                low & 0xffff_ffff_ffff
            );
            let taken = self.groups.get(group_id).is_some_and(|g| {
                g.members.contains_key(&id)
                    || g.pending.contains_key(&id)
                    || g.consumer.as_ref().is_some_and(|c| c.members.contains_key(&id))
            });
            if !taken {
                return id;
            }
        }
    }

    /// splitmix64.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// When an Empty group's offsets (or, holding none, the group) next expire: `None` while the
/// group has members or member ids handed out.
fn expiry(group: &Group, retention: i64) -> Option<i64> {
    let consumer_members = group.consumer.as_ref().is_some_and(|c| !c.members.is_empty());
    if group.state != State::Empty || !group.pending.is_empty() || consumer_members {
        return None;
    }
    if group.consumer.is_some() {
        let kept = if group.offsets.is_empty() { EMPTY_GROUP_KEPT_MS } else { retention };
        return Some(group.state_timestamp.saturating_add(kept));
    }
    if group.protocol_type.is_none() {
        let oldest = group.offsets.values().map(|o| o.commit_timestamp).min()?;
        return Some(oldest.saturating_add(retention));
    }
    let kept = if group.offsets.is_empty() { EMPTY_GROUP_KEPT_MS } else { retention };
    Some(group.state_timestamp.saturating_add(kept))
}

fn new_member(request: &JoinRequest, id: String, waiter: Waiter, now: i64) -> Member {
    Member {
        id,
        instance_id: request.group_instance_id.clone(),
        client_id: request.client_id.clone(),
        client_host: request.client_host.clone(),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        session_timeout_ms: request.session_timeout_ms,
        protocol_type: request.protocol_type.clone(),
        protocols: request.protocols.clone(),
        assignment: Vec::new(),
        join_waiter: Some(waiter),
        sync_waiter: None,
        deadline: now + GROUP_NEW_MEMBER_JOIN_TIMEOUT_MS,
        is_new: true,
    }
}

fn update_member(member: &mut Member, request: &JoinRequest) {
    member.protocols.clone_from(&request.protocols);
    member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    member.session_timeout_ms = request.session_timeout_ms;
    member.client_id.clone_from(&request.client_id);
    member.client_host.clone_from(&request.client_host);
    if !member.is_new {
        member.deadline = KEPT_ALIVE;
    }
}

/// Checks that `member_id` is a member, and that a static member's instance is its own.
fn check_member(group: &Group, member_id: &str, instance: Option<&str>) -> Result<(), Refusal> {
    let refuse = |error| Err((error, member_id.to_owned()));
    if let Some(instance) = instance
        && let Some(owner) = group.instances.get(instance)
        && owner != member_id
    {
        return refuse(ErrorCode::FencedInstanceId);
    }
    if !group.members.contains_key(member_id) {
        return refuse(ErrorCode::UnknownMemberId);
    }
    Ok(())
}

/// The member a LeaveGroup names: `Ok(None)` for a member id handed out but never joined.
fn leaving_member(group: &mut Group, member: &MemberRef) -> Result<Option<String>, ErrorCode> {
    if member.member_id.is_empty() {
        let instance = member.group_instance_id.as_deref().ok_or(ErrorCode::UnknownMemberId)?;
        return group.instances.get(instance).cloned().map(Some).ok_or(ErrorCode::UnknownMemberId);
    }
    if group.pending.remove(&member.member_id).is_some() {
        return Ok(None);
    }
    check_member(group, &member.member_id, member.group_instance_id.as_deref())
        .map_err(|(error, _)| error)?;
    Ok(Some(member.member_id.clone()))
}

fn prepare_rebalance(group: &mut Group, initial_delay_ms: i64, now: i64, effects: &mut Effects) {
    if group.state == State::CompletingRebalance {
        for member in group.members.values_mut() {
            member.assignment.clear();
            if let Some(waiter) = member.sync_waiter.take() {
                let answer = SyncResponse::error(ErrorCode::RebalanceInProgress);
                effects.reply(waiter, Reply::Sync(answer));
            }
        }
    }
    for member in group.members.values_mut().filter(|m| m.join_waiter.is_none()) {
        // A member that has not rejoined keeps its session until the rebalance ends it.
        member.deadline = member.deadline.min(now + i64::from(member.session_timeout_ms));
    }
    let timeout = group.rebalance_timeout_ms();
    if group.state == State::Empty && initial_delay_ms > 0 {
        let delay = initial_delay_ms.min(timeout);
        group.initial_delay =
            Some(InitialDelay { remaining_ms: timeout - delay, member_added: false });
        group.rebalance_deadline = Some(now + delay);
    } else {
        group.rebalance_deadline = Some(now + timeout);
    }
    group.transition(State::PreparingRebalance, now);
}

/// The JoinGroup answer of the current generation for `member_id`.
fn current_join(group: &Group, member_id: &str, skip_assignment: bool) -> JoinResponse {
    let leader = group.is_leader(member_id);
    JoinResponse {
        error: ErrorCode::None,
        generation_id: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol.clone(),
        leader: group.leader.clone().unwrap_or_default(),
        skip_assignment,
        member_id: member_id.to_owned(),
        members: if leader { group.joined_members() } else { Vec::new() },
    }
}

fn sync_answer(group: &Group, member_id: &str) -> SyncResponse {
    SyncResponse {
        error: ErrorCode::None,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol.clone(),
        assignment: group.members[member_id].assignment.clone(),
    }
}

/// Puts `new` in `old_id`'s place (same instance, same leadership); the old member's
/// waiting requests are fenced.
fn replace_member(group: &mut Group, old_id: &str, new: Member, effects: &mut Effects) {
    let was_leader = group.is_leader(old_id);
    if let Some(old) = group.remove(old_id) {
        answer_waiters(&old, ErrorCode::FencedInstanceId, effects);
    }
    let new_id = new.id.clone();
    group.add(new);
    if was_leader {
        group.leader = Some(new_id);
    }
}

fn answer_waiters(member: &Member, error: ErrorCode, effects: &mut Effects) {
    if let Some(waiter) = member.join_waiter {
        effects.reply(waiter, Reply::Join(JoinResponse::error(error, &member.id)));
    }
    if let Some(waiter) = member.sync_waiter {
        effects.reply(waiter, Reply::Sync(SyncResponse::error(error)));
    }
}

fn offset_key(group: &str, topic: &str, partition: i32) -> RecordKey {
    RecordKey::Offset { group: group.to_owned(), topic: topic.to_owned(), partition }
}

fn offset_record(
    group: &str,
    (topic, partition): &(String, i32),
    value: &CommittedOffset,
) -> (RecordKey, Option<RecordValue>) {
    (offset_key(group, topic, *partition), Some(RecordValue::Offset(value.clone())))
}

fn group_record(group: &Group) -> (RecordKey, Option<RecordValue>) {
    let key = RecordKey::Group { group: group.id.clone() };
    (key, Some(RecordValue::Group(group.stored())))
}

fn tombstones(group: &Group) -> Vec<(RecordKey, Option<RecordValue>)> {
    let offsets = group.offsets.keys().map(|(t, p)| (offset_key(&group.id, t, *p), None));
    let mut records: Vec<_> = offsets.collect();
    match &group.consumer {
        Some(consumer) => consumer.tombstones(&group.id, &mut records),
        None => records.push((RecordKey::Group { group: group.id.clone() }, None)),
    }
    records
}

/// A stored group becomes the in-memory one: Stable with its members (their sessions start
/// now), or Empty.
fn load_group(group: &mut Group, stored: StoredGroup, now: i64) {
    let offsets = std::mem::take(&mut group.offsets);
    *group = Group::new(&group.id.clone(), stored.state_timestamp);
    group.offsets = offsets;
    group.generation = stored.generation;
    group.protocol = stored.protocol.clone();
    let protocol_type = stored.protocol_type;
    let protocol = stored.protocol.unwrap_or_default();
    for m in stored.members {
        let member = Member {
            id: m.member_id,
            instance_id: m.group_instance_id,
            client_id: m.client_id,
            client_host: m.client_host,
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            session_timeout_ms: m.session_timeout_ms,
            protocol_type: protocol_type.clone(),
            protocols: vec![(protocol.clone(), m.subscription)],
            assignment: m.assignment,
            join_waiter: None,
            sync_waiter: None,
            deadline: now + i64::from(m.session_timeout_ms),
            is_new: false,
        };
        group.add(member);
    }
    group.leader = stored.leader.filter(|leader| group.members.contains_key(leader));
    if group.leader.is_none() {
        group.leader = group.members.keys().next().cloned();
    }
    if group.members.is_empty() {
        group.protocol_type = (!protocol_type.is_empty()).then_some(protocol_type);
    } else {
        group.state = State::Stable;
    }
}

/// Makes an empty classic group a consumer-protocol one for a joining member (Kafka's
/// conversion of an empty group); a classic group with members is not one to heartbeat to.
fn to_consumer_group(
    group: &mut Group,
    joining: bool,
    records: &mut Records,
) -> Result<(), Refusal> {
    if !group.members.is_empty() || !group.pending.is_empty() {
        let message = format!("group {} is a classic group", group.id);
        return Err((ErrorCode::GroupIdNotFound, message));
    }
    if !joining {
        return Err((ErrorCode::UnknownMemberId, format!("{} is not a member", group.id)));
    }
    if group.generation > 0 || group.protocol_type.is_some() {
        records.push((RecordKey::Group { group: group.id.clone() }, None));
    }
    let offsets = std::mem::take(&mut group.offsets);
    *group = Group::new(&group.id.clone(), group.state_timestamp);
    group.offsets = offsets;
    group.consumer = Some(Box::default());
    Ok(())
}
