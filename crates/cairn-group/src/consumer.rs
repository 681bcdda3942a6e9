//! One consumer-protocol group (RFC 0008, KIP-848): members that heartbeat, a target
//! assignment the coordinator computes, and each member's walk towards it.
//!
//! Every change is made in memory at once and described by the records it returns (Kafka's
//! record types 3–8); the shard writes them and answers once they are durable, so a new
//! coordinator replaying them ([`ConsumerGroup::replay`]) has the same group: members keep
//! their epochs, and a failover costs no rebalance.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{
    ConsumerGroupDescription, ConsumerMemberDescription, ErrorCode, HeartbeatRequest,
    HeartbeatResponse, Topics,
};
use crate::assignor::{self, MemberSpec};
use crate::reconcile::{MemberAssignment, MemberState, reconcile};
use crate::records::{
    ConsumerGroupMetadata, CurrentMemberAssignment, MemberMetadata, PartitionMetadata, RecordKey,
    RecordValue, TargetAssignmentMember, TargetAssignmentMetadata, TopicMetadata, TopicPartitions,
};

/// A topic id.
pub(crate) type TopicId = [u8; 16];
/// A partition of a topic, by id.
pub(crate) type Partition = (TopicId, i32);
/// Records to append: a key and a value, or none (a tombstone).
pub(crate) type Records = Vec<(RecordKey, Option<RecordValue>)>;
/// An error and a word on it.
pub(crate) type Refusal = (ErrorCode, String);

/// The default server assignor, and the other one.
pub(crate) const UNIFORM: &str = "uniform";
const RANGE: &str = "range";

/// The member epoch of a static member leaving for a while (it keeps its partitions).
const STATIC_LEAVE_EPOCH: i32 = -2;

/// The settings a heartbeat needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) session_timeout_ms: i32,
    pub(crate) heartbeat_interval_ms: i32,
    pub(crate) members_max: usize,
}

/// One member.
#[derive(Clone, Debug)]
pub(crate) struct ConsumerMember {
    pub(crate) metadata: MemberMetadata,
    pub(crate) current: MemberAssignment<Partition>,
    /// When it is fenced without a heartbeat.
    pub(crate) session_deadline: i64,
    /// While it must revoke partitions: when it is fenced if it has not.
    pub(crate) revoke_deadline: Option<i64>,
}

impl ConsumerMember {
    fn new(now: i64) -> ConsumerMember {
        ConsumerMember {
            metadata: MemberMetadata {
                instance_id: None,
                rack_id: None,
                client_id: String::new(),
                client_host: String::new(),
                subscribed_topic_names: Vec::new(),
                subscribed_topic_regex: None,
                rebalance_timeout_ms: -1,
                server_assignor: None,
                classic_member_metadata: None,
            },
            current: MemberAssignment {
                epoch: 0,
                previous_epoch: 0,
                state: MemberState::Stable,
                assigned: BTreeSet::new(),
                pending_revocation: BTreeSet::new(),
            },
            session_deadline: now,
            revoke_deadline: None,
        }
    }

    /// A loaded member that must revoke partitions gets its rebalance timeout from `now` (a
    /// new coordinator's timers start again); any other has none.
    fn restart_revocation(&mut self, now: i64) {
        let timeout = i64::from(self.metadata.rebalance_timeout_ms.max(0));
        self.revoke_deadline =
            (self.current.state == MemberState::UnrevokedPartitions).then_some(now + timeout);
    }

    fn holds(&self, partition: &Partition) -> bool {
        self.current.assigned.contains(partition)
            || self.current.pending_revocation.contains(partition)
    }
}

/// A consumer-protocol group.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConsumerGroup {
    /// The group epoch.
    pub(crate) epoch: i32,
    /// The group epoch the target assignment was computed at.
    pub(crate) assignment_epoch: i32,
    /// The subscribed topics as the target assignment saw them: id → (name, partitions).
    pub(crate) topics: BTreeMap<TopicId, (String, i32)>,
    /// The target assignment.
    pub(crate) target: BTreeMap<String, BTreeSet<Partition>>,
    pub(crate) members: BTreeMap<String, ConsumerMember>,
    /// The topics each subscription's regular expression matched at the last heartbeat
    /// (not stored: looked up again at the next one).
    matches: BTreeMap<String, BTreeSet<String>>,
}

impl ConsumerGroup {
    /// Handles one heartbeat of `group_id` (a join, a leave or a member's), checked by
    /// [`check`]; `new_id` is the member id a v0 join gets. Appends the records to write.
    pub(crate) fn heartbeat(
        &mut self,
        group_id: &str,
        request: &HeartbeatRequest,
        new_id: String,
        context: (&Settings, &dyn Topics, i64),
        records: &mut Records,
    ) -> Result<HeartbeatResponse, Refusal> {
        let (settings, topics, now) = context;
        if request.member_epoch < 0 {
            return self.leave(group_id, request, records);
        }
        let id = if request.member_id.is_empty() { new_id } else { request.member_id.clone() };
        let joined = if request.member_epoch == 0 {
            self.join(group_id, &id, request, settings, now, records)?
        } else {
            self.check_member(&id, request)?;
            false
        };
        let mut bump = joined;
        bump |= self.update_member(group_id, &id, request, records);
        bump |= self.refresh_topics(group_id, topics, records);
        if bump {
            self.epoch = self.epoch.wrapping_add(1).max(1);
            records.push(epoch_record(group_id, self.epoch));
        }
        if self.epoch > self.assignment_epoch {
            self.assign(group_id, records);
        }
        let before = self.members[&id].current.assigned.clone();
        self.reconcile(group_id, &id, request, now, records);
        let member = self.members.get_mut(&id).expect("joined or checked above");
        member.session_deadline = now + i64::from(settings.session_timeout_ms);
        let full = request.owned.is_some() || request.member_epoch == 0;
        let changed = member.current.assigned != before;
        Ok(HeartbeatResponse {
            error: ErrorCode::None,
            message: None,
            member_id: Some(id),
            member_epoch: member.current.epoch,
            heartbeat_interval_ms: settings.heartbeat_interval_ms,
            assignment: (full || changed).then(|| by_topic(&member.current.assigned)),
        })
    }

    /// Epoch 0: a new member, a static member back under its instance id, or a member
    /// rejoining with its id (it owns nothing then). Whether the group's membership changed.
    fn join(
        &mut self,
        group_id: &str,
        id: &str,
        request: &HeartbeatRequest,
        settings: &Settings,
        now: i64,
        records: &mut Records,
    ) -> Result<bool, Refusal> {
        if let Some(instance) = &request.instance_id
            && let Some(old_id) = self.instance_owner(instance)
        {
            let old = &self.members[&old_id];
            if old.current.epoch != STATIC_LEAVE_EPOCH {
                let message = format!("instance {instance} is still used by member {old_id}");
                return Err((ErrorCode::UnreleasedInstanceId, message));
            }
            let mut member = old.clone();
            member.current.epoch = member.current.previous_epoch;
            let target = self.target.get(&old_id).cloned();
            self.remove(group_id, &old_id, records);
            if let Some(target) = target {
                records.push(target_record(group_id, id, &target));
                self.target.insert(id.to_owned(), target);
            }
            records.push(member_record(group_id, id, &member.metadata));
            records.push(current_record(group_id, id, &member.current));
            self.members.insert(id.to_owned(), member);
            return Ok(false);
        }
        if self.members.contains_key(id) {
            self.remove(group_id, id, records);
        } else if self.members.len() >= settings.members_max {
            let message = format!("the group has {} members", self.members.len());
            return Err((ErrorCode::GroupMaxSizeReached, message));
        }
        self.members.insert(id.to_owned(), ConsumerMember::new(now));
        Ok(true)
    }

    /// The epoch checks of a member's heartbeat (epoch > 0): a newer epoch than the
    /// member's, or an older one that is not its previous with a subset of its partitions,
    /// is fenced.
    fn check_member(&self, id: &str, request: &HeartbeatRequest) -> Result<(), Refusal> {
        let member = self.member(id, request.instance_id.as_deref())?;
        let current = &member.current;
        let received = request.member_epoch;
        let lost_response = received == current.previous_epoch
            && request
                .owned
                .as_ref()
                .is_some_and(|owned| owned_set(owned).iter().all(|p| current.assigned.contains(p)));
        if received == current.epoch || (received < current.epoch && lost_response) {
            return Ok(());
        }
        let message = format!("member epoch {received}, the member's is {}", current.epoch);
        Err((ErrorCode::FencedMemberEpoch, message))
    }

    /// The member `id`, if it is one and `instance` is its own.
    fn member(&self, id: &str, instance: Option<&str>) -> Result<&ConsumerMember, Refusal> {
        let member = self.members.get(id).ok_or_else(|| {
            (ErrorCode::UnknownMemberId, format!("{id} is not a member of the group"))
        })?;
        if instance.is_some() && member.metadata.instance_id.as_deref() != instance {
            let message = format!("member {id} is not the instance's member");
            return Err((ErrorCode::FencedInstanceId, message));
        }
        Ok(member)
    }

    fn instance_owner(&self, instance: &str) -> Option<String> {
        let mut members = self.members.iter();
        members
            .find(|(_, m)| m.metadata.instance_id.as_deref() == Some(instance))
            .map(|(id, _)| id.clone())
    }

    /// Epoch −1: the member leaves; −2: a static member leaves for a while, keeping its
    /// partitions until its session ends.
    fn leave(
        &mut self,
        group_id: &str,
        request: &HeartbeatRequest,
        records: &mut Records,
    ) -> Result<HeartbeatResponse, Refusal> {
        let id = &request.member_id;
        self.member(id, request.instance_id.as_deref())?;
        if request.member_epoch == STATIC_LEAVE_EPOCH {
            let member = self.members.get_mut(id).expect("checked above");
            if member.current.epoch != STATIC_LEAVE_EPOCH {
                member.current.previous_epoch = member.current.epoch;
                member.current.epoch = STATIC_LEAVE_EPOCH;
            }
            records.push(current_record(group_id, id, &member.current));
        } else {
            self.fence(group_id, id, records);
        }
        Ok(HeartbeatResponse {
            error: ErrorCode::None,
            message: None,
            member_id: Some(id.clone()),
            member_epoch: request.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// Removes a member for good (it left, or its session or revocation ran out): its
    /// partitions are free, and the group epoch moves.
    pub(crate) fn fence(&mut self, group_id: &str, id: &str, records: &mut Records) {
        self.remove(group_id, id, records);
        self.epoch = self.epoch.wrapping_add(1).max(1);
        records.push(epoch_record(group_id, self.epoch));
    }

    fn remove(&mut self, group_id: &str, id: &str, records: &mut Records) {
        self.members.remove(id);
        self.target.remove(id);
        let member = || id.to_owned();
        let group = || group_id.to_owned();
        records
            .push((RecordKey::CurrentMemberAssignment { group: group(), member: member() }, None));
        records
            .push((RecordKey::TargetAssignmentMember { group: group(), member: member() }, None));
        records.push((RecordKey::MemberMetadata { group: group(), member: member() }, None));
    }

    /// Takes what the request says about the member; whether its subscription changed.
    fn update_member(
        &mut self,
        group_id: &str,
        id: &str,
        request: &HeartbeatRequest,
        records: &mut Records,
    ) -> bool {
        let member = self.members.get_mut(id).expect("joined or checked by the caller");
        let old = member.metadata.clone();
        let m = &mut member.metadata;
        m.instance_id.clone_from(&request.instance_id);
        m.client_id.clone_from(&request.client_id);
        m.client_host.clone_from(&request.client_host);
        if request.rack_id.is_some() {
            m.rack_id.clone_from(&request.rack_id);
        }
        if request.rebalance_timeout_ms >= 0 {
            m.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        if let Some(names) = &request.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            m.subscribed_topic_names = names;
        }
        if let Some(regex) = &request.subscribed_topic_regex {
            // An empty expression clears it (a client moving to subscribing by names).
            m.subscribed_topic_regex = (!regex.is_empty()).then(|| regex.clone());
        }
        if request.server_assignor.is_some() {
            m.server_assignor.clone_from(&request.server_assignor);
        }
        if *m == old {
            return false;
        }
        records.push(member_record(group_id, id, m));
        m.subscribed_topic_names != old.subscribed_topic_names
            || m.subscribed_topic_regex != old.subscribed_topic_regex
            || m.server_assignor != old.server_assignor
    }

    /// The topics `member` subscribes to: by name, and those its expression matched.
    fn topics_of<'a>(&'a self, member: &'a ConsumerMember) -> impl Iterator<Item = &'a String> {
        let regex = member.metadata.subscribed_topic_regex.as_ref();
        let matched = regex.and_then(|r| self.matches.get(r)).into_iter().flatten();
        member.metadata.subscribed_topic_names.iter().chain(matched)
    }

    /// Looks the subscribed topics up again (expressions matched anew); whether they
    /// changed (created, deleted, more partitions).
    fn refresh_topics(
        &mut self,
        group_id: &str,
        topics: &dyn Topics,
        records: &mut Records,
    ) -> bool {
        let regexes: BTreeSet<String> = self
            .members
            .values()
            .filter_map(|m| m.metadata.subscribed_topic_regex.clone())
            .collect();
        let all = if regexes.is_empty() { Vec::new() } else { topics.names() };
        self.matches = regexes
            .into_iter()
            .map(|pattern| {
                // A stored expression that does not compile (written elsewhere) matches none.
                let matched = compile(&pattern).map_or_else(
                    |_| BTreeSet::new(),
                    |regex| all.iter().filter(|n| regex.is_match(n)).cloned().collect(),
                );
                (pattern, matched)
            })
            .collect();
        let names: BTreeSet<&String> =
            self.members.values().flat_map(|m| self.topics_of(m)).collect();
        let mut now_seen = BTreeMap::new();
        for name in names {
            if let Some(info) = topics.get(name) {
                let count = i32::try_from(info.partitions).unwrap_or(i32::MAX);
                now_seen.insert(info.id, (name.clone(), count));
            }
        }
        if now_seen == self.topics {
            return false;
        }
        self.topics = now_seen;
        records.push(partition_metadata_record(group_id, &self.topics));
        true
    }

    /// Computes the target assignment of the group epoch (only the members whose target
    /// changed get a record).
    fn assign(&mut self, group_id: &str, records: &mut Records) {
        let ids: BTreeMap<&str, TopicId> =
            self.topics.iter().map(|(id, (name, _))| (name.as_str(), *id)).collect();
        let specs: BTreeMap<String, MemberSpec<TopicId>> = self
            .members
            .iter()
            .map(|(id, m)| {
                let topics = self.topics_of(m);
                let spec = MemberSpec {
                    instance_id: m.metadata.instance_id.clone(),
                    topics: topics.filter_map(|name| ids.get(name.as_str()).copied()).collect(),
                    owned: self.target.get(id).cloned().unwrap_or_default(),
                };
                (id.clone(), spec)
            })
            .collect();
        let counts: BTreeMap<TopicId, u32> = self
            .topics
            .iter()
            .map(|(id, (_, count))| (*id, u32::try_from(*count).unwrap_or(0)))
            .collect();
        let target = if self.assignor() == RANGE {
            assignor::range(&specs, &counts)
        } else {
            assignor::uniform(&specs, &counts)
        };
        for (id, partitions) in target {
            if self.target.get(&id) != Some(&partitions) {
                records.push(target_record(group_id, &id, &partitions));
                self.target.insert(id, partitions);
            }
        }
        self.assignment_epoch = self.epoch;
        let value = TargetAssignmentMetadata { assignment_epoch: self.assignment_epoch };
        let key = RecordKey::TargetAssignmentMetadata { group: group_id.to_owned() };
        records.push((key, Some(RecordValue::TargetAssignmentMetadata(value))));
    }

    /// The server assignor in use: the one most members asked for (ties to the first
    /// name), uniform when none did.
    pub(crate) fn assignor(&self) -> &str {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(name) = &member.metadata.server_assignor {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let most = votes.values().copied().max().unwrap_or(0);
        votes.into_iter().find(|(_, count)| *count == most).map_or(UNIFORM, |(name, _)| name)
    }

    /// One step of member `id` towards its target; a record if it moved.
    fn reconcile(
        &mut self,
        group_id: &str,
        id: &str,
        request: &HeartbeatRequest,
        now: i64,
        records: &mut Records,
    ) {
        let empty = BTreeSet::new();
        let target = self.target.get(id).unwrap_or(&empty);
        let member = &self.members[id];
        let held_elsewhere =
            |p: &Partition| self.members.iter().any(|(other, m)| other != id && m.holds(p));
        let reported = request.owned.as_ref().map(|owned| owned_set(owned));
        let next = reconcile(
            &member.current,
            self.assignment_epoch,
            target,
            held_elsewhere,
            reported.as_ref(),
        );
        if next == member.current {
            return;
        }
        records.push(current_record(group_id, id, &next));
        let timeout = i64::from(member.metadata.rebalance_timeout_ms.max(0));
        let member = self.members.get_mut(id).expect("present");
        // Each new set to revoke gets the rebalance timeout afresh (Kafka's).
        member.revoke_deadline =
            (next.state == MemberState::UnrevokedPartitions).then_some(now + timeout);
        member.current = next;
    }

    /// Fences every member whose session or revocation ran out by `now`.
    pub(crate) fn expire(&mut self, group_id: &str, now: i64, records: &mut Records) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.session_deadline <= now || m.revoke_deadline.is_some_and(|d| d <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.fence(group_id, &id, records);
        }
    }

    /// The earliest session or revocation deadline.
    pub(crate) fn next_deadline(&self) -> Option<i64> {
        let members = self.members.values();
        members.flat_map(|m| std::iter::once(m.session_deadline).chain(m.revoke_deadline)).min()
    }

    /// Whether `member_id` may commit or fetch offsets with `epoch` (OffsetCommit and
    /// OffsetFetch v9): a group without members takes anyone with epoch −1.
    pub(crate) fn check_offsets_access(
        &self,
        member_id: &str,
        epoch: i32,
        instance: Option<&str>,
    ) -> Result<(), ErrorCode> {
        if epoch < 0 && (self.members.is_empty() || member_id.is_empty()) {
            return Ok(());
        }
        let member = self.member(member_id, instance).map_err(|(error, _)| error)?;
        if member.current.epoch != epoch {
            return Err(ErrorCode::StaleMemberEpoch);
        }
        Ok(())
    }

    /// The topics the members subscribe to, by name.
    pub(crate) fn subscribed(&self) -> BTreeSet<String> {
        self.members.values().flat_map(|m| self.topics_of(m)).cloned().collect()
    }

    /// Kafka's state name: `Empty`, `Assigning` (the target is behind the group epoch),
    /// `Reconciling` (a member is not at the target yet) or `Stable`.
    pub(crate) fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.current.epoch != self.assignment_epoch || m.current.state != MemberState::Stable
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The group as ConsumerGroupDescribe shows it.
    pub(crate) fn describe(&self, group_id: &str) -> ConsumerGroupDescription {
        let named = |partitions: &BTreeSet<Partition>| {
            by_topic(partitions)
                .into_iter()
                .map(|t| {
                    let name = self.topics.get(&t.topic_id).map(|(n, _)| n.clone());
                    (t.topic_id, name.unwrap_or_default(), t.partitions)
                })
                .collect()
        };
        let empty = BTreeSet::new();
        let members = self.members.iter().map(|(id, m)| ConsumerMemberDescription {
            member_id: id.clone(),
            instance_id: m.metadata.instance_id.clone(),
            rack_id: m.metadata.rack_id.clone(),
            member_epoch: m.current.epoch,
            client_id: m.metadata.client_id.clone(),
            client_host: m.metadata.client_host.clone(),
            subscribed_topic_names: m.metadata.subscribed_topic_names.clone(),
            subscribed_topic_regex: m.metadata.subscribed_topic_regex.clone(),
            assignment: named(&m.current.assigned),
            target: named(self.target.get(id).unwrap_or(&empty)),
        });
        ConsumerGroupDescription {
            group_id: group_id.to_owned(),
            state: self.state(),
            epoch: self.epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor().to_owned(),
            members: members.collect(),
        }
    }

    /// The group's records as tombstones: what deleting it writes (its members' and its
    /// own).
    pub(crate) fn tombstones(&self, group_id: &str, records: &mut Records) {
        let mut copy = self.clone();
        let ids: Vec<String> = copy.members.keys().cloned().collect();
        for id in ids {
            copy.remove(group_id, &id, records);
        }
        let group = || group_id.to_owned();
        records.push((RecordKey::TargetAssignmentMetadata { group: group() }, None));
        records.push((RecordKey::PartitionMetadata { group: group() }, None));
        records.push((RecordKey::ConsumerGroupMetadata { group: group() }, None));
    }

    /// Replays one of the group's records (a new coordinator loading at `now`): the timers
    /// start again, each member's session (`session_timeout_ms`) and, for a member that must
    /// revoke partitions, its rebalance timeout.
    pub(crate) fn replay(
        &mut self,
        key: RecordKey,
        value: Option<RecordValue>,
        now: i64,
        session_timeout_ms: i32,
    ) {
        let session_deadline = now + i64::from(session_timeout_ms);
        let mut member_of = |id: String| {
            let member = self.members.entry(id).or_insert_with(|| ConsumerMember::new(0));
            member.session_deadline = session_deadline;
        };
        match (key, value) {
            (
                RecordKey::ConsumerGroupMetadata { .. },
                Some(RecordValue::ConsumerGroupMetadata(m)),
            ) => {
                self.epoch = m.epoch;
            }
            (RecordKey::PartitionMetadata { .. }, Some(RecordValue::PartitionMetadata(m))) => {
                let topics = m.topics.into_iter();
                self.topics =
                    topics.map(|t| (t.topic_id, (t.topic_name, t.partition_count))).collect();
            }
            (
                RecordKey::TargetAssignmentMetadata { .. },
                Some(RecordValue::TargetAssignmentMetadata(m)),
            ) => {
                self.assignment_epoch = m.assignment_epoch;
            }
            (RecordKey::MemberMetadata { member, .. }, Some(RecordValue::MemberMetadata(m))) => {
                member_of(member.clone());
                let replayed = self.members.get_mut(&member).expect("added above");
                replayed.metadata = m;
                replayed.restart_revocation(now);
            }
            (RecordKey::MemberMetadata { member, .. }, None) => {
                self.members.remove(&member);
            }
            (
                RecordKey::TargetAssignmentMember { member, .. },
                Some(RecordValue::TargetAssignmentMember(t)),
            ) => {
                self.target.insert(member, owned_set(&t.topic_partitions));
            }
            (RecordKey::TargetAssignmentMember { member, .. }, None) => {
                self.target.remove(&member);
            }
            (
                RecordKey::CurrentMemberAssignment { member, .. },
                Some(RecordValue::CurrentMemberAssignment(c)),
            ) => {
                member_of(member.clone());
                let replayed = self.members.get_mut(&member).expect("added above");
                replayed.current = from_stored(&c);
                replayed.restart_revocation(now);
            }
            // A member's current assignment goes with its metadata; the group's own
            // tombstones are handled by the shard (the group goes).
            _ => {}
        }
    }
}

/// Checks a heartbeat's fields as Kafka does before it looks at the group.
pub(crate) fn check(request: &HeartbeatRequest, version: i16) -> Result<(), Refusal> {
    let invalid = |message: &str| Err((ErrorCode::InvalidRequest, message.to_owned()));
    if request.group_id.is_empty() {
        return Err((ErrorCode::InvalidGroupId, "the group id is empty".to_owned()));
    }
    if request.member_id.is_empty() && (version >= 1 || request.member_epoch != 0) {
        return invalid("MemberId can't be empty");
    }
    match request.member_epoch {
        0 => {
            if request.rebalance_timeout_ms < 0 {
                return invalid("RebalanceTimeoutMs must be provided in first request");
            }
            if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none()
            {
                return invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request",
                );
            }
            if request.owned.as_ref().is_some_and(|owned| !owned.is_empty()) {
                return invalid("TopicPartitions must be empty when (re-)joining");
            }
        }
        STATIC_LEAVE_EPOCH if request.instance_id.is_none() => {
            return invalid("InstanceId can't be null when leaving with epoch -2");
        }
        epoch if epoch < STATIC_LEAVE_EPOCH => return invalid("MemberEpoch is invalid"),
        _ => {}
    }
    if let Some(assignor) = &request.server_assignor
        && assignor != UNIFORM
        && assignor != RANGE
    {
        let message = format!("assignor {assignor} is not supported: use uniform or range");
        return Err((ErrorCode::UnsupportedAssignor, message));
    }
    if let Some(pattern) = request.subscribed_topic_regex.as_deref().filter(|r| !r.is_empty()) {
        compile(pattern)?;
    }
    Ok(())
}

/// Most bytes a compiled expression (and its lazy DFA) may take: a hostile pattern costs
/// bounded memory, and matching is linear in the name.
const REGEX_BYTES_MAX: usize = 1 << 20;

/// A subscription's expression, matching whole topic names (as Kafka's `matches()`), RE2
/// syntax.
fn compile(pattern: &str) -> Result<regex::Regex, Refusal> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_BYTES_MAX)
        .dfa_size_limit(REGEX_BYTES_MAX)
        .build()
        .map_err(|error| {
            let message = format!("invalid regular expression {pattern:?}: {error}");
            (ErrorCode::InvalidRegularExpression, message)
        })
}

fn owned_set(topics: &[TopicPartitions]) -> BTreeSet<Partition> {
    let pairs = topics.iter().flat_map(|t| t.partitions.iter().map(|p| (t.topic_id, *p)));
    pairs.collect()
}

fn by_topic(partitions: &BTreeSet<Partition>) -> Vec<TopicPartitions> {
    let mut topics: Vec<TopicPartitions> = Vec::new();
    for &(topic_id, partition) in partitions {
        match topics.last_mut() {
            Some(last) if last.topic_id == topic_id => last.partitions.push(partition),
            _ => topics.push(TopicPartitions { topic_id, partitions: vec![partition] }),
        }
    }
    topics
}

/// Kafka's member state codes (records.rs).
fn state_code(state: MemberState) -> i8 {
    match state {
        MemberState::Stable => 0,
        MemberState::UnrevokedPartitions => 1,
        MemberState::UnreleasedPartitions => 2,
    }
}

fn from_stored(stored: &CurrentMemberAssignment) -> MemberAssignment<Partition> {
    let state = match stored.state {
        1 => MemberState::UnrevokedPartitions,
        2 => MemberState::UnreleasedPartitions,
        _ => MemberState::Stable,
    };
    MemberAssignment {
        epoch: stored.member_epoch,
        previous_epoch: stored.previous_member_epoch,
        state,
        assigned: owned_set(&stored.assigned_partitions),
        pending_revocation: owned_set(&stored.partitions_pending_revocation),
    }
}

fn epoch_record(group_id: &str, epoch: i32) -> (RecordKey, Option<RecordValue>) {
    let key = RecordKey::ConsumerGroupMetadata { group: group_id.to_owned() };
    (key, Some(RecordValue::ConsumerGroupMetadata(ConsumerGroupMetadata { epoch })))
}

fn partition_metadata_record(
    group_id: &str,
    topics: &BTreeMap<TopicId, (String, i32)>,
) -> (RecordKey, Option<RecordValue>) {
    let topics = topics.iter().map(|(id, (name, count))| TopicMetadata {
        topic_id: *id,
        topic_name: name.clone(),
        partition_count: *count,
        partition_racks: Vec::new(),
    });
    let value = PartitionMetadata { topics: topics.collect() };
    let key = RecordKey::PartitionMetadata { group: group_id.to_owned() };
    (key, Some(RecordValue::PartitionMetadata(value)))
}

fn member_record(
    group_id: &str,
    id: &str,
    metadata: &MemberMetadata,
) -> (RecordKey, Option<RecordValue>) {
    let key = RecordKey::MemberMetadata { group: group_id.to_owned(), member: id.to_owned() };
    (key, Some(RecordValue::MemberMetadata(metadata.clone())))
}

fn target_record(
    group_id: &str,
    id: &str,
    partitions: &BTreeSet<Partition>,
) -> (RecordKey, Option<RecordValue>) {
    let key =
        RecordKey::TargetAssignmentMember { group: group_id.to_owned(), member: id.to_owned() };
    let value = TargetAssignmentMember { topic_partitions: by_topic(partitions) };
    (key, Some(RecordValue::TargetAssignmentMember(value)))
}

fn current_record(
    group_id: &str,
    id: &str,
    current: &MemberAssignment<Partition>,
) -> (RecordKey, Option<RecordValue>) {
    let key =
        RecordKey::CurrentMemberAssignment { group: group_id.to_owned(), member: id.to_owned() };
    let value = CurrentMemberAssignment {
        member_epoch: current.epoch,
        previous_member_epoch: current.previous_epoch,
        state: state_code(current.state),
        assigned_partitions: by_topic(&current.assigned),
        partitions_pending_revocation: by_topic(&current.pending_revocation),
    };
    (key, Some(RecordValue::CurrentMemberAssignment(value)))
}
