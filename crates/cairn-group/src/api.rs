//! What the coordinator is asked and answers, free of any wire version: the Kafka front door
//! translates each request version to these and back.

use crate::records::{CommittedOffset, RecordKey, RecordValue, TopicPartitions};

/// Kafka error codes the coordinator answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ErrorCode {
    /// Success.
    None = 0,
    /// A topic or partition that does not exist.
    UnknownTopicOrPartition = 3,
    /// A commit's metadata is over `offset.metadata.max.bytes`.
    OffsetMetadataTooLarge = 12,
    /// The coordinator is loading the group's partition.
    CoordinatorLoadInProgress = 14,
    /// No coordinator (the group's partition has no leader, or the group is being deleted).
    CoordinatorNotAvailable = 15,
    /// This node does not coordinate the group.
    NotCoordinator = 16,
    /// The generation is not the group's.
    IllegalGeneration = 22,
    /// The member's protocols do not fit the group's.
    InconsistentGroupProtocol = 23,
    /// An empty or invalid group id.
    InvalidGroupId = 24,
    /// The member id is not the group's.
    UnknownMemberId = 25,
    /// The session timeout is outside the broker's range.
    InvalidSessionTimeout = 26,
    /// The group is rebalancing: rejoin.
    RebalanceInProgress = 27,
    /// The request is malformed.
    InvalidRequest = 42,
    /// DeleteGroups on a group with members.
    NonEmptyGroup = 68,
    /// The group does not exist.
    GroupIdNotFound = 69,
    /// A new member must rejoin with the member id in the answer.
    MemberIdRequired = 79,
    /// The group has `group.max.size` members.
    GroupMaxSizeReached = 81,
    /// Another member holds the static instance id.
    FencedInstanceId = 82,
    /// OffsetDelete on a topic the group consumes.
    GroupSubscribedToTopic = 86,
    /// An old client's request to a consumer-protocol group (OffsetCommit below v9).
    UnsupportedVersion = 35,
    /// The member's epoch is not one the coordinator accepts: it must rejoin.
    FencedMemberEpoch = 110,
    /// A static member joined while its instance's previous member is still active.
    UnreleasedInstanceId = 111,
    /// A server assignor this coordinator does not have.
    UnsupportedAssignor = 112,
    /// A commit or fetch with a member epoch that is not the member's current one.
    StaleMemberEpoch = 113,
    /// A subscription's regular expression does not compile.
    InvalidRegularExpression = 128,
}

impl ErrorCode {
    /// The code on the wire.
    #[must_use]
    pub fn code(self) -> i16 {
        self as i16
    }
}

/// A request's waiter: the runtime's handle for an answer that may come later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Waiter(pub u64);

/// A JoinGroup request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRequest {
    /// The group.
    pub group_id: String,
    /// Empty for a member's first join.
    pub member_id: String,
    /// The static member's instance id.
    pub group_instance_id: Option<String>,
    /// `consumer`, `connect`, ...
    pub protocol_type: String,
    /// The member's protocols (assignors) by preference, with its metadata for each.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// The member's session timeout.
    pub session_timeout_ms: i32,
    /// The member's rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// The client id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Version 4 and later: a new member gets MEMBER_ID_REQUIRED and rejoins.
    pub require_known_member_id: bool,
}

/// One member in the leader's JoinGroup answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedMember {
    /// Its member id.
    pub member_id: String,
    /// Its static instance id.
    pub group_instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Vec<u8>,
}

/// A JoinGroup answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinResponse {
    /// The error.
    pub error: ErrorCode,
    /// The new generation (−1 on error).
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// KIP-814: the leader should not compute a new assignment.
    pub skip_assignment: bool,
    /// The member's id (the one to rejoin with on MEMBER_ID_REQUIRED).
    pub member_id: String,
    /// Every member with its metadata, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    /// An error answer.
    #[must_use]
    pub fn error(error: ErrorCode, member_id: &str) -> JoinResponse {
        JoinResponse {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRequest {
    /// The group.
    pub group_id: String,
    /// The member.
    pub member_id: String,
    /// The generation the member joined.
    pub generation_id: i32,
    /// The static member's instance id.
    pub group_instance_id: Option<String>,
    /// Version 5: the protocol type the member expects.
    pub protocol_type: Option<String>,
    /// Version 5: the protocol the member expects.
    pub protocol_name: Option<String>,
    /// The leader's assignment of every member; empty from the others.
    pub assignments: Vec<(String, Vec<u8>)>,
}

/// A SyncGroup answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncResponse {
    /// The error.
    pub error: ErrorCode,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Vec<u8>,
}

impl SyncResponse {
    /// An error answer.
    #[must_use]
    pub fn error(error: ErrorCode) -> SyncResponse {
        SyncResponse { error, protocol_type: None, protocol_name: None, assignment: Vec::new() }
    }
}

/// A member named by a Heartbeat or a LeaveGroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRef {
    /// The member id (may be empty in a LeaveGroup naming a static member).
    pub member_id: String,
    /// The static member's instance id.
    pub group_instance_id: Option<String>,
}

/// One partition's offset in an OffsetCommit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetToCommit {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the record before it, −1 when unknown.
    pub leader_epoch: i32,
    /// The client's metadata (null is stored as empty).
    pub metadata: Option<String>,
}

/// An OffsetCommit request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRequest {
    /// The group.
    pub group_id: String,
    /// The member's generation; −1 for a group without members (manual assignment).
    pub generation_id: i32,
    /// The member; empty with generation −1.
    pub member_id: String,
    /// The static member's instance id.
    pub group_instance_id: Option<String>,
    /// The offsets.
    pub offsets: Vec<OffsetToCommit>,
}

/// An OffsetCommit answer: one error per requested partition, in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitResponse {
    /// (topic, partition, error).
    pub partitions: Vec<(String, i32, ErrorCode)>,
}

/// A group as DescribeGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    /// The error.
    pub error: ErrorCode,
    /// The group.
    pub group_id: String,
    /// Kafka's state name: Empty, PreparingRebalance, CompletingRebalance, Stable or Dead.
    pub state: &'static str,
    /// The protocol type, empty when none.
    pub protocol_type: String,
    /// The chosen protocol while Stable, empty otherwise.
    pub protocol: String,
    /// The members.
    pub members: Vec<MemberDescription>,
}

/// A member as DescribeGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    /// Its id.
    pub member_id: String,
    /// Its static instance id.
    pub group_instance_id: Option<String>,
    /// Its client id.
    pub client_id: String,
    /// Its address.
    pub client_host: String,
    /// Its metadata for the chosen protocol (Stable groups only).
    pub metadata: Vec<u8>,
    /// Its assignment (Stable groups only).
    pub assignment: Vec<u8>,
}

/// A group as ListGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupListing {
    /// The group.
    pub group_id: String,
    /// Its protocol type, empty when none.
    pub protocol_type: String,
    /// Kafka's state name.
    pub state: &'static str,
    /// `classic` or `consumer` (ListGroups v5).
    pub group_type: &'static str,
}

/// Records the runtime appends to the shard's partition, then reports with
/// [`crate::Shard::written`] or [`crate::Shard::write_failed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The write's id.
    pub id: u64,
    /// The records: a key and a value, or no value (a tombstone).
    pub records: Vec<(RecordKey, Option<RecordValue>)>,
}

/// An answer that was waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A JoinGroup answer.
    Join(JoinResponse),
    /// A SyncGroup answer.
    Sync(SyncResponse),
    /// An OffsetCommit answer.
    Commit(CommitResponse),
    /// A DeleteGroups or OffsetDelete answer for one group (or partition set).
    Deleted(ErrorCode),
    /// A ConsumerGroupHeartbeat answer.
    Heartbeat(HeartbeatResponse),
}

/// What a call asks the runtime to do: answer waiters, append records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Effects {
    /// Answers to send.
    pub replies: Vec<(Waiter, Reply)>,
    /// Records to append, in order.
    pub writes: Vec<Write>,
}

impl Effects {
    pub(crate) fn reply(&mut self, waiter: Waiter, reply: Reply) {
        self.replies.push((waiter, reply));
    }

    /// Adds `other`'s effects after these.
    pub fn extend(&mut self, other: Effects) {
        self.replies.extend(other.replies);
        self.writes.extend(other.writes);
    }
}

/// An offset as OffsetFetch answers it: `None` when the group committed none.
pub type FetchedOffset = Option<CommittedOffset>;

/// A topic as the coordinator of a consumer-protocol group sees it: its id and partition count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic id.
    pub id: [u8; 16],
    /// Its partition count.
    pub partitions: u32,
}

/// The cluster's topics at the time of a call (the runtime's metadata).
pub trait Topics {
    /// The topic named `name`, if it exists.
    fn get(&self, name: &str) -> Option<TopicInfo>;
    /// The names a subscription's regular expression may match (internal topics left out).
    fn names(&self) -> Vec<String>;
}

/// A lookup by name alone: no topic matches a regular expression.
impl<F: Fn(&str) -> Option<TopicInfo>> Topics for F {
    fn get(&self, name: &str) -> Option<TopicInfo> {
        self(name)
    }

    fn names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A ConsumerGroupHeartbeat request (RFC 0008). Fields after `member_epoch` are `None` (or
/// −1) when unchanged since the member's last heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// The group.
    pub group_id: String,
    /// The member id: made by the client from v1, empty on a v0 join.
    pub member_id: String,
    /// 0 to join, −1 to leave, −2 for a static member leaving for a while, else current.
    pub member_epoch: i32,
    /// The static member's `group.instance.id`.
    pub instance_id: Option<String>,
    /// The member's `client.rack`.
    pub rack_id: Option<String>,
    /// How long the member may take to revoke partitions; −1 when unchanged.
    pub rebalance_timeout_ms: i32,
    /// The subscribed topics.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// The subscription's regular expression (v1).
    pub subscribed_topic_regex: Option<String>,
    /// The server-side assignor asked for.
    pub server_assignor: Option<String>,
    /// The partitions the member owns (a full request says them).
    pub owned: Option<Vec<TopicPartitions>>,
    /// The client id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
}

/// A ConsumerGroupHeartbeat answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// The error.
    pub error: ErrorCode,
    /// A word on the error.
    pub message: Option<String>,
    /// The member id.
    pub member_id: Option<String>,
    /// The member's epoch.
    pub member_epoch: i32,
    /// How often the member should heartbeat.
    pub heartbeat_interval_ms: i32,
    /// The member's partitions, when they changed or the request was full.
    pub assignment: Option<Vec<TopicPartitions>>,
}

impl HeartbeatResponse {
    /// An error answer.
    #[must_use]
    pub fn error(error: ErrorCode, message: impl Into<String>) -> HeartbeatResponse {
        HeartbeatResponse {
            error,
            message: Some(message.into()),
            member_id: None,
            member_epoch: -1,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }
}

/// A consumer-protocol group as ConsumerGroupDescribe shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupDescription {
    /// The group.
    pub group_id: String,
    /// `Empty`, `Assigning`, `Reconciling` or `Stable`.
    pub state: &'static str,
    /// The group epoch.
    pub epoch: i32,
    /// The target assignment's epoch.
    pub assignment_epoch: i32,
    /// The server assignor in use.
    pub assignor: String,
    /// The members.
    pub members: Vec<ConsumerMemberDescription>,
}

/// One member of a [`ConsumerGroupDescription`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerMemberDescription {
    /// Its id.
    pub member_id: String,
    /// Its static instance id.
    pub instance_id: Option<String>,
    /// Its rack.
    pub rack_id: Option<String>,
    /// Its epoch.
    pub member_epoch: i32,
    /// Its client id.
    pub client_id: String,
    /// Its address.
    pub client_host: String,
    /// The topics it subscribes to.
    pub subscribed_topic_names: Vec<String>,
    /// Its subscription's regular expression.
    pub subscribed_topic_regex: Option<String>,
    /// Its current partitions, as (topic id, topic name, partitions).
    pub assignment: Vec<([u8; 16], String, Vec<i32>)>,
    /// Its partitions in the target assignment.
    pub target: Vec<([u8; 16], String, Vec<i32>)>,
}
