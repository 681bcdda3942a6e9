//! The group coordinator's APIs (RFC 0006): FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups and
//! OffsetDelete; and the consumer protocol's ConsumerGroupHeartbeat and ConsumerGroupDescribe
//! (RFC 0008). Each request becomes a version-free call of cairn-broker's
//! [`cairn_broker::GroupCoordinator`], and its answer this version's response.

use cairn_broker::OFFSETS_TOPIC;
use cairn_group::records::TopicPartitions;
use cairn_group::{CommitRequest, ErrorCode, JoinRequest, MemberRef, OffsetToCommit, SyncRequest};
use cairn_meta::MetadataStore;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response as describe;
use kafka_protocol::messages::consumer_group_heartbeat_response as beat;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::text;
use crate::server::Ctx;

/// FindCoordinator's key type of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// FindCoordinator's key type of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

fn code(error: ErrorCode) -> i16 {
    error.code()
}

fn string(value: &StrBytes) -> String {
    value.as_str().to_owned()
}

fn optional(value: Option<&StrBytes>) -> Option<String> {
    value.map(string)
}

/// FindCoordinator: the leader of the group's offsets-topic partition. v4+ batch the keys.
pub(crate) async fn find_coordinator<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys = if version >= 4 { request.coordinator_keys } else { vec![request.key] };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        coordinators.push(coordinator(ctx, request.key_type, key));
    }
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let one = coordinators.pop().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(one.error_code)
        .with_error_message(one.error_message)
        .with_node_id(one.node_id)
        .with_host(one.host)
        .with_port(one.port)
}

fn coordinator<M: MetadataStore>(ctx: &Ctx<M>, key_type: i8, key: StrBytes) -> Coordinator {
    let refuse = |error: ResponseError, message: &str| {
        Coordinator::default()
            .with_key(key.clone())
            .with_node_id(BrokerId(-1))
            .with_error_code(error.code())
            .with_error_message(Some(text(message)))
    };
    if key_type == KEY_TYPE_TRANSACTION {
        // Not retriable: a transactional producer fails at once instead of waiting.
        return refuse(
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactions are not supported yet",
        );
    }
    if key_type != KEY_TYPE_GROUP {
        return refuse(ResponseError::InvalidRequest, "unknown coordinator key type");
    }
    if key.is_empty() {
        return refuse(ResponseError::InvalidGroupId, "the group id is empty");
    }
    let Some(index) = ctx.groups.partition_for(key.as_str()) else {
        return refuse(
            ResponseError::CoordinatorNotAvailable,
            "the offsets topic is being created",
        );
    };
    let leader = super::cluster::partition_leader(ctx, OFFSETS_TOPIC, index);
    // Placed here but not opened yet (a new offsets topic): naming this node would have the
    // client's next request refused with NOT_COORDINATOR; this answer has it ask again.
    let placed_here = leader == Some(ctx.broker.node_id());
    if placed_here && ctx.broker.partition(OFFSETS_TOPIC, index).is_none() {
        return refuse(
            ResponseError::CoordinatorNotAvailable,
            "the group's partition is being opened",
        );
    }
    let node =
        leader.and_then(|leader| ctx.broker.meta().nodes().into_iter().find(|n| n.id == leader));
    let Some(node) = node else {
        return refuse(
            ResponseError::CoordinatorNotAvailable,
            "the group's partition has no leader",
        );
    };
    Coordinator::default()
        .with_key(key)
        .with_node_id(BrokerId(i32::try_from(node.id.0).unwrap_or(-1)))
        .with_host(text(node.host))
        .with_port(i32::from(node.port))
}

/// JoinGroup.
pub(crate) async fn join_group<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: JoinGroupRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> JoinGroupResponse {
    let rebalance_timeout_ms =
        if version >= 1 { request.rebalance_timeout_ms } else { request.session_timeout_ms };
    let join = JoinRequest {
        group_id: string(&request.group_id.0),
        member_id: string(&request.member_id),
        group_instance_id: optional(request.group_instance_id.as_ref()),
        protocol_type: string(&request.protocol_type),
        protocols: request
            .protocols
            .iter()
            .map(|p| (string(&p.name), p.metadata.to_vec()))
            .collect(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms,
        client_id,
        client_host,
        require_known_member_id: version >= 4,
    };
    let answer = ctx.groups.join(join).await;
    let members = answer.members.into_iter().map(|m| {
        JoinGroupResponseMember::default()
            .with_member_id(text(m.member_id))
            .with_group_instance_id(m.group_instance_id.map(text))
            .with_metadata(m.metadata.into())
    });
    // Before v7 the protocol name is not nullable.
    let protocol_name = match answer.protocol_name {
        None if version < 7 => Some(text("")),
        name => name.map(text),
    };
    JoinGroupResponse::default()
        .with_error_code(code(answer.error))
        .with_generation_id(answer.generation_id)
        .with_protocol_type(answer.protocol_type.map(text))
        .with_protocol_name(protocol_name)
        .with_leader(text(answer.leader))
        // KIP-814 (v9): older versions cannot carry it, and their leader just assigns again.
        .with_skip_assignment(answer.skip_assignment && version >= 9)
        .with_member_id(text(answer.member_id))
        .with_members(members.collect())
}

/// SyncGroup.
pub(crate) async fn sync_group<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    let sync = SyncRequest {
        group_id: string(&request.group_id.0),
        member_id: string(&request.member_id),
        generation_id: request.generation_id,
        group_instance_id: optional(request.group_instance_id.as_ref()),
        protocol_type: optional(request.protocol_type.as_ref()),
        protocol_name: optional(request.protocol_name.as_ref()),
        assignments: request
            .assignments
            .iter()
            .map(|a| (string(&a.member_id), a.assignment.to_vec()))
            .collect(),
    };
    let answer = ctx.groups.sync(sync).await;
    SyncGroupResponse::default()
        .with_error_code(code(answer.error))
        .with_protocol_type(answer.protocol_type.map(text))
        .with_protocol_name(answer.protocol_name.map(text))
        .with_assignment(answer.assignment.into())
}

/// Heartbeat.
pub(crate) async fn heartbeat<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    let member = MemberRef {
        member_id: string(&request.member_id),
        group_instance_id: optional(request.group_instance_id.as_ref()),
    };
    let group = string(&request.group_id.0);
    let error = ctx.groups.heartbeat(group, member, request.generation_id).await;
    HeartbeatResponse::default().with_error_code(code(error))
}

/// LeaveGroup: one member before v3, a batch since.
pub(crate) async fn leave_group<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let members: Vec<MemberRef> = if version >= 3 {
        let listed = request.members.iter();
        listed
            .map(|m| MemberRef {
                member_id: string(&m.member_id),
                group_instance_id: optional(m.group_instance_id.as_ref()),
            })
            .collect()
    } else {
        vec![MemberRef { member_id: string(&request.member_id), group_instance_id: None }]
    };
    let group = string(&request.group_id.0);
    match ctx.groups.leave(group, members.clone()).await {
        Err(error) => LeaveGroupResponse::default().with_error_code(code(error)),
        Ok(errors) if version < 3 => LeaveGroupResponse::default().with_error_code(code(errors[0])),
        Ok(errors) => {
            let answers = members.into_iter().zip(errors).map(|(member, error)| {
                MemberResponse::default()
                    .with_member_id(text(member.member_id))
                    .with_group_instance_id(member.group_instance_id.map(text))
                    .with_error_code(code(error))
            });
            LeaveGroupResponse::default().with_members(answers.collect())
        }
    }
}

/// OffsetCommit.
pub(crate) async fn offset_commit<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let mut offsets = Vec::new();
    let mut unknown = Vec::new();
    for topic in &request.topics {
        let name = string(&topic.name.0);
        let known = ctx.broker.meta().topic(&name);
        for p in &topic.partitions {
            let exists = known
                .as_ref()
                .is_some_and(|t| u32::try_from(p.partition_index).is_ok_and(|i| i < t.partitions));
            if !exists {
                unknown.push((name.clone(), p.partition_index));
                continue;
            }
            offsets.push(OffsetToCommit {
                topic: name.clone(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: optional(p.committed_metadata.as_ref()),
            });
        }
    }
    let commit = CommitRequest {
        group_id: string(&request.group_id.0),
        generation_id: request.generation_id_or_member_epoch,
        member_id: string(&request.member_id),
        group_instance_id: optional(request.group_instance_id.as_ref()),
        offsets,
    };
    let mut answers = if commit.offsets.is_empty() {
        Vec::new()
    } else {
        ctx.groups.commit(commit).await.partitions
    };
    answers.extend(unknown.into_iter().map(|(t, p)| (t, p, ErrorCode::UnknownTopicOrPartition)));
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for (topic, partition, error) in answers {
        let answer = OffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(code(error));
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(existing) => existing.partitions.push(answer),
            None => topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(text(topic)))
                    .with_partitions(vec![answer]),
            ),
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// OffsetFetch: one group before v8, a batch of groups since.
pub(crate) async fn offset_fetch<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for group in request.groups {
            let wanted = group.topics.as_ref().map(|topics| {
                let each = topics.iter().map(|t| (&t.name, &t.partition_indexes));
                partitions_of(each)
            });
            let answer = OffsetFetchResponseGroup::default().with_group_id(group.group_id.clone());
            let member = group.member_id.as_ref().map(|m| (string(m), group.member_epoch));
            let offsets = ctx.groups.offsets(string(&group.group_id.0), member, wanted).await;
            groups.push(match offsets {
                Ok(found) => answer.with_topics(grouped(found, |name, partitions| {
                    let each = partitions.into_iter().map(|(p, o)| {
                        let (offset, epoch, metadata) = fetched(o);
                        OffsetFetchResponsePartitions::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(epoch)
                            .with_metadata(Some(text(metadata)))
                    });
                    OffsetFetchResponseTopics::default()
                        .with_name(TopicName(text(name)))
                        .with_partitions(each.collect())
                })),
                Err(error) => answer.with_error_code(code(error)),
            });
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = request
        .topics
        .as_ref()
        .map(|topics| partitions_of(topics.iter().map(|t| (&t.name, &t.partition_indexes))));
    match ctx.groups.offsets(string(&request.group_id.0), None, wanted.clone()).await {
        Ok(found) => {
            let found = found.into_iter().map(|(t, p, o)| (t, p, (o, ErrorCode::None)));
            OffsetFetchResponse::default().with_topics(legacy_topics(found.collect()))
        }
        // Before v2 there is no top-level error: every partition carries it.
        Err(error) if version < 2 => {
            let each = wanted.unwrap_or_default().into_iter().map(|(t, p)| (t, p, (None, error)));
            OffsetFetchResponse::default().with_topics(legacy_topics(each.collect()))
        }
        Err(error) => OffsetFetchResponse::default().with_error_code(code(error)),
    }
}

/// The (topic, partition) pairs a request names.
fn partitions_of<'a>(
    topics: impl Iterator<Item = (&'a TopicName, &'a Vec<i32>)>,
) -> Vec<(String, i32)> {
    topics.flat_map(|(name, partitions)| partitions.iter().map(|p| (string(&name.0), *p))).collect()
}

/// The topics of an OffsetFetch answer before v8, each partition with its offset and error.
fn legacy_topics(
    items: Vec<(String, i32, (cairn_group::FetchedOffset, ErrorCode))>,
) -> Vec<OffsetFetchResponseTopic> {
    grouped(items, |name, partitions| {
        let each = partitions.into_iter().map(|(p, (o, error))| {
            let (offset, epoch, metadata) = fetched(o);
            OffsetFetchResponsePartition::default()
                .with_partition_index(p)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(epoch)
                .with_metadata(Some(text(metadata)))
                .with_error_code(code(error))
        });
        OffsetFetchResponseTopic::default()
            .with_name(TopicName(text(name)))
            .with_partitions(each.collect())
    })
}

/// An offset as OffsetFetch answers it: −1, −1 and empty metadata when none is committed.
fn fetched(offset: cairn_group::FetchedOffset) -> (i64, i32, String) {
    match offset {
        Some(o) => (o.offset, o.leader_epoch, o.metadata),
        None => (-1, -1, String::new()),
    }
}

/// Groups (topic, partition, value) triples by topic, in first-seen order.
fn grouped<V, T>(
    items: Vec<(String, i32, V)>,
    topic: impl Fn(String, Vec<(i32, V)>) -> T,
) -> Vec<T> {
    let mut by_topic: Vec<(String, Vec<(i32, V)>)> = Vec::new();
    for (name, partition, value) in items {
        match by_topic.iter_mut().find(|(n, _)| *n == name) {
            Some((_, partitions)) => partitions.push((partition, value)),
            None => by_topic.push((name, vec![(partition, value)])),
        }
    }
    by_topic.into_iter().map(|(name, partitions)| topic(name, partitions)).collect()
}

/// ListGroups, filtered by state (v4+) and type (v5+: `classic` or `consumer`).
pub(crate) async fn list_groups<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let (groups, error) = ctx.groups.list().await;
    let states: Vec<String> =
        request.states_filter.iter().map(|s| s.as_str().to_lowercase()).collect();
    let types: Vec<String> =
        request.types_filter.iter().map(|s| s.as_str().to_lowercase()).collect();
    let listed = groups
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.to_lowercase()))
        .filter(|g| types.is_empty() || types.iter().any(|t| t == g.group_type))
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(text(g.group_id)))
                .with_protocol_type(text(g.protocol_type))
                .with_group_state(text(g.state))
                .with_group_type(text(g.group_type))
        });
    ListGroupsResponse::default().with_error_code(code(error)).with_groups(listed.collect())
}

/// DescribeGroups; an unknown group is `Dead` (v6+: GROUP_ID_NOT_FOUND).
pub(crate) async fn describe_groups<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut described = Vec::with_capacity(request.groups.len());
    for id in request.groups {
        let answer = DescribedGroup::default().with_group_id(id.clone());
        described.push(match ctx.groups.describe(string(&id.0)).await {
            Err(error) => answer.with_error_code(code(error)),
            Ok(None) => {
                let error = if version >= 6 { ErrorCode::GroupIdNotFound } else { ErrorCode::None };
                answer.with_error_code(code(error)).with_group_state(text("Dead"))
            }
            Ok(Some(group)) if group.error != ErrorCode::None => {
                // A consumer-protocol group: DescribeGroups describes classic groups only.
                let error = if version >= 6 { group.error } else { ErrorCode::None };
                answer.with_error_code(code(error)).with_group_state(text(group.state))
            }
            Ok(Some(group)) => answer
                .with_group_state(text(group.state))
                .with_protocol_type(text(group.protocol_type))
                .with_protocol_data(text(group.protocol))
                .with_authorized_operations(i32::MIN)
                .with_members(
                    group
                        .members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(text(m.member_id))
                                .with_group_instance_id(m.group_instance_id.map(text))
                                .with_client_id(text(m.client_id))
                                .with_client_host(text(m.client_host))
                                .with_member_metadata(m.metadata.into())
                                .with_member_assignment(m.assignment.into())
                        })
                        .collect(),
                ),
        });
    }
    DescribeGroupsResponse::default().with_groups(described)
}

/// DeleteGroups.
pub(crate) async fn delete_groups<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for id in request.groups_names {
        let error = ctx.groups.delete_group(string(&id.0)).await;
        results
            .push(DeletableGroupResult::default().with_group_id(id).with_error_code(code(error)));
    }
    DeleteGroupsResponse::default().with_results(results)
}

/// OffsetDelete.
pub(crate) async fn offset_delete<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (string(&t.name.0), p.partition_index)))
        .collect();
    match ctx.groups.delete_offsets(string(&request.group_id.0), partitions).await {
        Err(error) => OffsetDeleteResponse::default().with_error_code(code(error)),
        Ok(answer) => OffsetDeleteResponse::default().with_topics(grouped(
            answer.partitions,
            |name, parts| {
                OffsetDeleteResponseTopic::default()
                    .with_name(TopicName(text(name)))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, e)| {
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(code(e))
                            })
                            .collect(),
                    )
            },
        )),
    }
}

/// ConsumerGroupHeartbeat (RFC 0008): v0 has the coordinator make a joining member's id, v1
/// the client.
pub(crate) async fn consumer_heartbeat<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: ConsumerGroupHeartbeatRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> ConsumerGroupHeartbeatResponse {
    let owned = request.topic_partitions.map(|topics| {
        let each = topics.into_iter().map(|t| TopicPartitions {
            topic_id: *t.topic_id.as_bytes(),
            partitions: t.partitions,
        });
        each.collect()
    });
    let beat = cairn_group::HeartbeatRequest {
        group_id: string(&request.group_id.0),
        member_id: string(&request.member_id),
        member_epoch: request.member_epoch,
        instance_id: optional(request.instance_id.as_ref()),
        rack_id: optional(request.rack_id.as_ref()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.iter().map(|n| string(&n.0)).collect()),
        subscribed_topic_regex: optional(request.subscribed_topic_regex.as_ref()),
        server_assignor: optional(request.server_assignor.as_ref()),
        owned,
        client_id,
        client_host,
    };
    let answer = ctx.groups.consumer_heartbeat(beat, version).await;
    let assignment = answer.assignment.map(|topics| {
        let each = topics.into_iter().map(|t| {
            beat::TopicPartitions::default()
                .with_topic_id(uuid::Uuid::from_bytes(t.topic_id))
                .with_partitions(t.partitions)
        });
        beat::Assignment::default().with_topic_partitions(each.collect())
    });
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(code(answer.error))
        .with_error_message(answer.message.map(text))
        .with_member_id(answer.member_id.map(text))
        .with_member_epoch(answer.member_epoch)
        .with_heartbeat_interval_ms(answer.heartbeat_interval_ms)
        .with_assignment(assignment)
}

/// ConsumerGroupDescribe: each group, or its error (`GROUP_ID_NOT_FOUND` for a classic one).
pub(crate) async fn consumer_group_describe<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let mut groups = Vec::with_capacity(request.group_ids.len());
    for id in request.group_ids {
        let answer = describe::DescribedGroup::default()
            .with_group_id(id.clone())
            .with_authorized_operations(i32::MIN);
        groups.push(match ctx.groups.describe_consumer(string(&id.0)).await {
            Err(error) => answer.with_error_code(code(error)).with_group_state(text("Dead")),
            Ok(group) => answer
                .with_group_state(text(group.state))
                .with_group_epoch(group.epoch)
                .with_assignment_epoch(group.assignment_epoch)
                .with_assignor_name(text(group.assignor))
                .with_members(group.members.into_iter().map(described_member).collect()),
        });
    }
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

fn described_member(m: cairn_group::ConsumerMemberDescription) -> describe::Member {
    let assignment = |topics: Vec<([u8; 16], String, Vec<i32>)>| {
        let each = topics.into_iter().map(|(id, name, partitions)| {
            describe::TopicPartitions::default()
                .with_topic_id(uuid::Uuid::from_bytes(id))
                .with_topic_name(TopicName(text(name)))
                .with_partitions(partitions)
        });
        describe::Assignment::default().with_topic_partitions(each.collect())
    };
    /// ConsumerGroupDescribe v1's member type of a consumer-protocol member.
    const CONSUMER_MEMBER: i8 = 1;
    describe::Member::default()
        .with_member_id(text(m.member_id))
        .with_instance_id(m.instance_id.map(text))
        .with_rack_id(m.rack_id.map(text))
        .with_member_epoch(m.member_epoch)
        .with_client_id(text(m.client_id))
        .with_client_host(text(m.client_host))
        .with_subscribed_topic_names(
            m.subscribed_topic_names.into_iter().map(|n| TopicName(text(n))).collect(),
        )
        .with_subscribed_topic_regex(m.subscribed_topic_regex.map(text))
        .with_assignment(assignment(m.assignment))
        .with_target_assignment(assignment(m.target))
        .with_member_type(CONSUMER_MEMBER)
}
