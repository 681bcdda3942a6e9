//! The Maintenance and Cluster services: Status (with the alarms as its errors), Hash, HashKV,
//! Alarm (the NOSPACE alarm of `quota.rs`), Defragment and MemberList from
//! [`Coordination`]; the rest answers `Unimplemented`, saying what to use instead.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use cairn_coord::{AlarmKind, Command};

use crate::backend::{CoordError, Coordination};
use crate::convert;
use crate::lease::ResponseStream;
use crate::proto::etcdserverpb as pb;
use crate::status::{self, unimplemented};

/// etcd's Maintenance service.
pub struct MaintenanceService<B> {
    backend: Arc<B>,
}

impl<B: Coordination> MaintenanceService<B> {
    /// The service over `backend`.
    pub fn new(backend: Arc<B>) -> Self {
        MaintenanceService { backend }
    }
}

fn not_yet(what: &str) -> Status {
    unimplemented(&format!("{what} is not served yet (RFC 0009, step 5)"))
}

#[tonic::async_trait]
impl<B: Coordination> pb::maintenance_server::Maintenance for MaintenanceService<B> {
    type SnapshotStream = ResponseStream<pb::SnapshotResponse>;

    /// GET lists the active alarms (linearizable); ACTIVATE raises and DEACTIVATE clears the
    /// request's member's alarm through the group, answering it (DEACTIVATE: if it was active),
    /// as etcd does.
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        use pb::alarm_request::AlarmAction;
        let request = request.into_inner();
        let of_coord = |error: CoordError| status::of_coord(&error);
        let action = AlarmAction::try_from(request.action)
            .map_err(|_| status::invalid("etcdserver: unknown alarm action"))?;
        if action == AlarmAction::Get {
            let active = self.backend.alarms(true).await.map_err(of_coord)?;
            return Ok(Response::new(alarm_response(self.backend.as_ref(), active, None)));
        }
        let code = u8::try_from(request.alarm).ok().and_then(AlarmKind::from_code);
        let alarm = code.ok_or_else(|| status::invalid("etcdserver: unknown alarm"))?;
        let (activate, member) = (action == AlarmAction::Activate, request.member_id);
        // A deactivation answers the alarm only if it was active: asked before it goes.
        let was_active = activate
            || self.backend.alarms(true).await.map_err(of_coord)?.contains(&(member, alarm));
        let command = Command::Alarm { activate, member, alarm };
        let (_, revision) = self.backend.write(command).await.map_err(of_coord)?;
        let alarms = if was_active { vec![(member, alarm)] } else { Vec::new() };
        Ok(Response::new(alarm_response(self.backend.as_ref(), alarms, Some(revision))))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let status = self.backend.status().await.map_err(|e| status::of_coord(&e))?;
        let header = convert::header(&self.backend.header(), status.revision);
        let is_learner = false;
        // This member's view, as etcd's: a member without a leader still answers.
        let alarms = self.backend.alarms(false).await.map_err(|e| status::of_coord(&e))?;
        let errors = alarms.iter().map(|&(member, alarm)| alarm_text(member, alarm)).collect();
        Ok(Response::new(pb::StatusResponse {
            header,
            version: status.version,
            db_size: status.db_size,
            leader: status.leader,
            raft_index: status.raft_index,
            raft_term: status.raft_term,
            raft_applied_index: status.raft_applied_index,
            errors,
            db_size_in_use: status.db_size,
            is_learner,
        }))
    }

    /// Rewrites this member's store: the space compactions freed goes back to the file
    /// system (what brings a store back under its quota).
    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.backend.defragment().await.map_err(|e| status::of_coord(&e))?;
        let header = self.backend.header();
        Ok(Response::new(pb::DefragmentResponse {
            header: convert::header(&header, header.revision),
        }))
    }

    /// etcd hashes its whole database file (every bucket), which cairn does not have: this is
    /// HashKV's hash at the current revision, stable for the same keyspace history.
    async fn hash(
        &self,
        _request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        let (hash, revision) = self.backend.hash_kv(0).await.map_err(|e| status::of_coord(&e))?;
        let header = convert::header(&self.backend.header(), revision);
        Ok(Response::new(pb::HashResponse { header, hash: hash.hash }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        let revision = request.into_inner().revision;
        let (hash, current) =
            self.backend.hash_kv(revision).await.map_err(|e| status::of_coord(&e))?;
        Ok(Response::new(pb::HashKvResponse {
            header: convert::header(&self.backend.header(), current),
            hash: hash.hash,
            compact_revision: hash.compact_revision,
            hash_revision: hash.hash_revision,
        }))
    }

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(not_yet("Maintenance.Snapshot"))
    }

    async fn move_leader(
        &self,
        _request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        Err(not_yet("Maintenance.MoveLeader"))
    }

    async fn downgrade(
        &self,
        _request: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        Err(unimplemented("Maintenance.Downgrade does not apply to cairn"))
    }
}

/// Maintenance.Alarm's answer: `alarms`, with the header at `revision` (`None`: this member's
/// applied one).
fn alarm_response<B: Coordination>(
    backend: &B,
    alarms: Vec<(u64, AlarmKind)>,
    revision: Option<i64>,
) -> pb::AlarmResponse {
    let header = backend.header();
    let header = convert::header(&header, revision.unwrap_or(header.revision));
    let alarms = alarms
        .into_iter()
        .map(|(member_id, alarm)| pb::AlarmMember { member_id, alarm: i32::from(alarm.code()) })
        .collect();
    pb::AlarmResponse { header, alarms }
}

/// An alarm as etcd's Status lists it in `errors`.
fn alarm_text(member: u64, alarm: AlarmKind) -> String {
    let name = match alarm {
        AlarmKind::NoSpace => "NOSPACE",
        AlarmKind::Corrupt => "CORRUPT",
    };
    format!("memberID:{member} alarm:{name} ")
}

/// etcd's Cluster service.
pub struct ClusterService<B> {
    backend: Arc<B>,
}

impl<B: Coordination> ClusterService<B> {
    /// The service over `backend`.
    pub fn new(backend: Arc<B>) -> Self {
        ClusterService { backend }
    }
}

fn use_cairn_cluster(what: &str) -> Status {
    unimplemented(&format!(
        "{what} is not served: membership changes are made with `cairn cluster` (issue 13)"
    ))
}

#[tonic::async_trait]
impl<B: Coordination> pb::cluster_server::Cluster for ClusterService<B> {
    async fn member_add(
        &self,
        _request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        Err(use_cairn_cluster("Cluster.MemberAdd"))
    }

    async fn member_remove(
        &self,
        _request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        Err(use_cairn_cluster("Cluster.MemberRemove"))
    }

    async fn member_update(
        &self,
        _request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(use_cairn_cluster("Cluster.MemberUpdate"))
    }

    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let header = self.backend.header();
        let members = self.backend.members().into_iter().map(|member| pb::Member {
            id: member.id,
            name: member.name,
            peer_ur_ls: member.peer_urls,
            client_ur_ls: member.client_urls,
            is_learner: member.is_learner,
        });
        Ok(Response::new(pb::MemberListResponse {
            header: convert::header(&header, header.revision),
            members: members.collect(),
        }))
    }

    async fn member_promote(
        &self,
        _request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        Err(use_cairn_cluster("Cluster.MemberPromote"))
    }
}
