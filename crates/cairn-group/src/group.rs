//! One classic group's state: its members, generation and committed offsets.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{JoinedMember, MemberDescription, Waiter};
use crate::consumer::ConsumerGroup;
use crate::records::{CommittedOffset, StoredGroup, StoredMember};

/// Kafka's group states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No members (offsets may remain).
    Empty,
    /// Waiting for the members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assigned.
    Stable,
}

impl State {
    /// Kafka's name of the state.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// One member.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    pub(crate) protocol_type: String,
    /// By preference; after a load, only the chosen protocol's metadata is known.
    pub(crate) protocols: Vec<(String, Vec<u8>)>,
    pub(crate) assignment: Vec<u8>,
    /// A JoinGroup waiting for the rebalance to complete.
    pub(crate) join_waiter: Option<Waiter>,
    /// A SyncGroup waiting for the leader's assignment.
    pub(crate) sync_waiter: Option<Waiter>,
    /// When the member expires without a heartbeat.
    pub(crate) deadline: i64,
    /// Joined during the current rebalance (Kafka's `isNew`): expires sooner if it never
    /// rejoins.
    pub(crate) is_new: bool,
}

impl Member {
    pub(crate) fn metadata(&self, protocol: &str) -> Vec<u8> {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    pub(crate) fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    /// Whether `protocols` are the member's own: a rejoin that changes nothing.
    pub(crate) fn same_protocols(&self, protocols: &[(String, Vec<u8>)]) -> bool {
        self.protocols == protocols
    }
}

/// One group of a shard.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub(crate) id: String,
    pub(crate) state: State,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) generation: i32,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// Static instance id → member id.
    pub(crate) instances: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined → their expiry.
    pub(crate) pending: BTreeMap<String, i64>,
    pub(crate) offsets: BTreeMap<(String, i32), CommittedOffset>,
    pub(crate) state_timestamp: i64,
    /// While preparing a rebalance: when it completes whoever rejoined.
    pub(crate) rebalance_deadline: Option<i64>,
    /// The first rebalance of an empty group: how much longer it may still be delayed, and
    /// whether a member joined during the current delay.
    pub(crate) initial_delay: Option<InitialDelay>,
    /// A consumer-protocol group's state (RFC 0008); then the classic fields are unused.
    pub(crate) consumer: Option<Box<ConsumerGroup>>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct InitialDelay {
    pub(crate) remaining_ms: i64,
    pub(crate) member_added: bool,
}

impl Group {
    pub(crate) fn new(id: &str, now: i64) -> Group {
        Group {
            id: id.to_owned(),
            state: State::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            instances: BTreeMap::new(),
            pending: BTreeMap::new(),
            offsets: BTreeMap::new(),
            state_timestamp: now,
            rebalance_deadline: None,
            initial_delay: None,
            consumer: None,
        }
    }

    /// Whether the group has no members (of either protocol) and no member ids handed out.
    pub(crate) fn is_empty(&self) -> bool {
        let consumers = self.consumer.as_ref().is_some_and(|c| !c.members.is_empty());
        self.state == State::Empty && self.pending.is_empty() && !consumers
    }

    pub(crate) fn transition(&mut self, state: State, now: i64) {
        self.state = state;
        self.state_timestamp = now;
    }

    pub(crate) fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// Whether a member with `protocol_type` and `protocols` may join (Kafka's
    /// `supportsProtocols`): the type must match and one protocol be supported by all.
    pub(crate) fn supports(&self, protocol_type: &str, protocols: &[(String, Vec<u8>)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| self.members.values().all(|m| m.supports(name)))
    }

    /// The protocol every member supports that most members prefer (Kafka's
    /// `selectProtocol`); ties go to the name first in order, so every replica agrees.
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: BTreeSet<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            let choice = member.protocols.iter().find(|(n, _)| candidates.contains(n.as_str()));
            if let Some((name, _)) = choice {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let most = votes.values().copied().max()?;
        votes.into_iter().find(|(_, count)| *count == most).map(|(name, _)| name.to_owned())
    }

    /// Largest rebalance timeout of the members: how long a rebalance waits for them.
    pub(crate) fn rebalance_timeout_ms(&self) -> i64 {
        self.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0)
    }

    /// Every member rejoined and no new member is still to come back with its id.
    pub(crate) fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    pub(crate) fn add(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        if let Some(instance) = &member.instance_id {
            self.instances.insert(instance.clone(), member.id.clone());
        }
        self.pending.remove(&member.id);
        self.members.insert(member.id.clone(), member);
    }

    pub(crate) fn remove(&mut self, member_id: &str) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        if let Some(instance) = &member.instance_id {
            self.instances.remove(instance);
        }
        if self.is_leader(member_id) {
            let rejoined = self.members.values().find(|m| m.join_waiter.is_some());
            let next = rejoined.or_else(|| self.members.values().next());
            self.leader = next.map(|m| m.id.clone());
        }
        Some(member)
    }

    /// The members with their metadata for the chosen protocol: the leader's JoinGroup answer.
    pub(crate) fn joined_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol.as_deref().unwrap_or_default();
        let members = self.members.values();
        members
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    pub(crate) fn describe_members(&self) -> Vec<MemberDescription> {
        let protocol = self.protocol.as_deref().unwrap_or_default();
        let stable = self.state == State::Stable;
        let members = self.members.values();
        members
            .map(|m| MemberDescription {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable { m.metadata(protocol) } else { Vec::new() },
                assignment: if stable { m.assignment.clone() } else { Vec::new() },
            })
            .collect()
    }

    /// The group as its metadata record stores it.
    pub(crate) fn stored(&self) -> StoredGroup {
        let protocol = self.protocol.as_deref().unwrap_or_default();
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_timestamp,
            members: self.members.values().map(|m| stored_member(m, protocol)).collect(),
        }
    }

    /// The topics the members' consumer-protocol subscriptions name; `None` if the group is
    /// not a consumer group or a subscription does not parse (then every topic counts).
    pub(crate) fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            topics.extend(subscription_topics(&member.metadata(protocol))?);
        }
        Some(topics)
    }
}

fn stored_member(member: &Member, protocol: &str) -> StoredMember {
    StoredMember {
        member_id: member.id.clone(),
        group_instance_id: member.instance_id.clone(),
        client_id: member.client_id.clone(),
        client_host: member.client_host.clone(),
        rebalance_timeout_ms: member.rebalance_timeout_ms,
        session_timeout_ms: member.session_timeout_ms,
        subscription: member.metadata(protocol),
        assignment: member.assignment.clone(),
    }
}

/// The topics of a consumer protocol subscription (every version starts with `version: i16,
/// topics: [string]`).
pub(crate) fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let (_version, rest) = metadata.split_first_chunk::<2>()?;
    let (count, mut rest) = rest.split_first_chunk::<4>()?;
    let count = usize::try_from(i32::from_be_bytes(*count)).ok()?;
    let mut topics = Vec::with_capacity(count.min(rest.len() / 2));
    for _ in 0..count {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let len = usize::try_from(i16::from_be_bytes(*len)).ok()?;
        let name = tail.get(..len)?;
        topics.push(String::from_utf8(name.to_vec()).ok()?);
        rest = &tail[len..];
    }
    Some(topics)
}
