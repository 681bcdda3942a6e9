//! The Lease service: LeaseGrant, LeaseRevoke, LeaseKeepAlive (a stream), LeaseTimeToLive and
//! LeaseLeases over [`Coordination`].

use std::pin::Pin;
use std::sync::Arc;

use cairn_coord::{Command, KvError, Reply};
use futures_util::Stream;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::backend::{CoordError, Coordination};
use crate::config::{EtcdConfig, LEASE_TTL_MAX_SECONDS};
use crate::convert;
use crate::proto::etcdserverpb as pb;
use crate::quota;
use crate::status;
use crate::stopping::Stopping;

/// The answers of a server stream.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// etcd's Lease service.
pub struct LeaseService<B> {
    backend: Arc<B>,
    config: Arc<EtcdConfig>,
    stopping: Stopping,
}

impl<B: Coordination> LeaseService<B> {
    /// The service over `backend`.
    pub fn new(backend: Arc<B>, config: Arc<EtcdConfig>, stopping: Stopping) -> Self {
        LeaseService { backend, config, stopping }
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        let header = self.backend.header();
        convert::header(&header, header.revision)
    }
}

#[tonic::async_trait]
impl<B: Coordination> pb::lease_server::Lease for LeaseService<B> {
    type LeaseKeepAliveStream = ResponseStream<pb::LeaseKeepAliveResponse>;

    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let request = request.into_inner();
        if request.ttl > LEASE_TTL_MAX_SECONDS {
            return Err(Status::out_of_range("etcdserver: too large lease TTL"));
        }
        let ttl = request.ttl.max(self.config.lease_ttl_min_seconds);
        quota::admit(self.backend.as_ref(), &self.config, quota::LEASE_COST_BYTES).await?;
        let (id, revision) =
            self.backend.lease_grant(request.id, ttl).await.map_err(|e| status::of_coord(&e))?;
        let header = convert::header(&self.backend.header(), revision);
        Ok(Response::new(pb::LeaseGrantResponse { header, id, ttl, error: String::new() }))
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let id = request.into_inner().id;
        let (reply, revision) = self
            .backend
            .write(Command::LeaseRevoke { id })
            .await
            .map_err(|e| status::of_coord(&e))?;
        if reply != Reply::Done {
            return Err(Status::internal("cairn: the coordination group answered a revoke oddly"));
        }
        let header = convert::header(&self.backend.header(), revision);
        Ok(Response::new(pb::LeaseRevokeResponse { header }))
    }

    /// Each request is answered in order with the renewed TTL, 0 for a lease that does not
    /// exist (etcd's answer); any other error ends the stream with its status.
    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(self.config.stream_responses_buffered);
        let backend = Arc::clone(&self.backend);
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            loop {
                let request = tokio::select! {
                    request = inbound.message() => request.transpose(),
                    () = stopping.stopped() => None,
                };
                let Some(request) = request else { break };
                let answer = match request {
                    Ok(request) => keep_alive(&*backend, request.id).await,
                    Err(status) => Err(status),
                };
                let last = answer.is_err();
                if tx.send(answer).await.is_err() || last {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let request = request.into_inner();
        let header = self.header();
        let lease = match self.backend.lease_time_to_live(request.id).await {
            Ok(lease) => lease,
            Err(CoordError::Kv(KvError::LeaseNotFound)) => {
                // etcd answers a missing lease with TTL -1, not an error.
                let missing = pb::LeaseTimeToLiveResponse {
                    header,
                    id: request.id,
                    ttl: -1,
                    ..Default::default()
                };
                return Ok(Response::new(missing));
            }
            Err(error) => return Err(status::of_coord(&error)),
        };
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header,
            id: lease.id,
            ttl: lease.ttl,
            granted_ttl: lease.granted_ttl,
            keys: if request.keys { lease.keys } else { Vec::new() },
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let ids = self.backend.leases().await.map_err(|e| status::of_coord(&e))?;
        let leases = ids.into_iter().map(|id| pb::LeaseStatus { id }).collect();
        Ok(Response::new(pb::LeaseLeasesResponse { header: self.header(), leases }))
    }
}

/// One keep-alive's answer.
async fn keep_alive<B: Coordination>(
    backend: &B,
    id: i64,
) -> Result<pb::LeaseKeepAliveResponse, Status> {
    let ttl = match backend.lease_keep_alive(id).await {
        Ok(ttl) => ttl,
        Err(CoordError::Kv(KvError::LeaseNotFound)) => 0,
        Err(error) => return Err(status::of_coord(&error)),
    };
    let header = backend.header();
    Ok(pb::LeaseKeepAliveResponse { header: convert::header(&header, header.revision), id, ttl })
}
