//! The Election service (`v3electionpb.Election`), as etcd serves it over its own KV API
//! (`v3election` over `concurrency.Election`), on the queue of `queue.rs`: the leader of
//! `name` is the candidate whose key under `name/` was created first, its value the leader's
//! proclamation; a `LeaderKey` (key and creation revision) guards Proclaim and Resign.

use std::sync::Arc;

use cairn_coord::{KeyValue, PutRequest, RequestOp, TxnRequest};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::backend::{CoordError, Coordination};
use crate::config::EtcdConfig;
use crate::convert;
use crate::lease::ResponseStream;
use crate::proto::etcdserverpb as pb;
use crate::proto::v3electionpb::{self as epb, election_server::Election};
use crate::queue::{self, Cleanup};
use crate::revisions::Revisions;
use crate::status::{self, ELECTION_NO_LEADER, ELECTION_NOT_LEADER, MISSING_LEADER_KEY};
use crate::stopping::Stopping;

/// etcd's Election service.
pub struct ElectionService<B> {
    backend: Arc<B>,
    config: Arc<EtcdConfig>,
    stopping: Stopping,
}

impl<B: Coordination> ElectionService<B> {
    /// The service over `backend`.
    pub fn new(backend: Arc<B>, config: Arc<EtcdConfig>, stopping: Stopping) -> Self {
        ElectionService { backend, config, stopping }
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        convert::header(&self.backend.header(), revision)
    }

    /// Puts `value` on the leader's key if it is still the leader's (its creation revision
    /// unchanged), with the leader's lease; answers the revision after.
    async fn proclaim_as(&self, leader: &epb::LeaderKey, value: Vec<u8>) -> Result<i64, Status> {
        let put = PutRequest {
            key: leader.key.clone(),
            value,
            lease: leader.lease,
            ..Default::default()
        };
        let request = TxnRequest {
            compare: vec![queue::create_is(&leader.key, leader.rev)],
            success: vec![RequestOp::Put(put)],
            failure: Vec::new(),
        };
        let (response, revision) = queue::txn(&*self.backend, request).await?;
        if !response.succeeded {
            return Err(status::concurrency(ELECTION_NOT_LEADER));
        }
        Ok(revision)
    }
}

#[tonic::async_trait]
impl<B: Coordination> Election for ElectionService<B> {
    type ObserveStream = ResponseStream<epb::LeaderResponse>;

    /// Enters the election with the caller's lease and value (a candidate already in with
    /// another value proclaims it), then waits until it leads. A cancelled campaign resigns.
    async fn campaign(
        &self,
        request: Request<epb::CampaignRequest>,
    ) -> Result<Response<epb::CampaignResponse>, Status> {
        let request = request.into_inner();
        let lease = queue::session_lease(&*self.backend, request.lease).await?;
        let prefix = queue::prefix(&request.name);
        let key = queue::key_of(&prefix, lease);
        let backend = &*self.backend;
        let entered = queue::enter(backend, &prefix, &key, lease, request.value.clone()).await?;
        let leader = epb::LeaderKey { name: request.name, key, rev: entered.revision, lease };
        let cleanup = Cleanup::resign(&self.backend, &leader.key, leader.rev);
        if entered.existing.as_ref().is_some_and(|value| *value != request.value) {
            // On failure `cleanup` resigns, as etcd does.
            self.proclaim_as(&leader, request.value).await?;
        }
        let page = self.config.history_page_revisions;
        let stopping = self.stopping.clone();
        let waited = queue::wait_turn(&self.backend, &prefix, leader.rev, page, stopping).await;
        // Only a cancelled campaign resigns (dropped with `cleanup` armed): a failed wait
        // leaves the candidate in, as etcd's.
        cleanup.disarm();
        waited?;
        let header = self.header(entered.header_revision);
        Ok(Response::new(epb::CampaignResponse { header, leader: Some(leader) }))
    }

    async fn proclaim(
        &self,
        request: Request<epb::ProclaimRequest>,
    ) -> Result<Response<epb::ProclaimResponse>, Status> {
        let request = request.into_inner();
        let leader = request.leader.ok_or_else(|| status::concurrency(MISSING_LEADER_KEY))?;
        let revision = self.proclaim_as(&leader, request.value).await?;
        Ok(Response::new(epb::ProclaimResponse { header: self.header(revision) }))
    }

    async fn leader(
        &self,
        request: Request<epb::LeaderRequest>,
    ) -> Result<Response<epb::LeaderResponse>, Status> {
        let prefix = queue::prefix(&request.into_inner().name);
        let (leader, revision) =
            queue::owner(&*self.backend, &prefix).await.map_err(|e| status::of_coord(&e))?;
        let kv = leader.ok_or_else(|| status::concurrency(ELECTION_NO_LEADER))?;
        let header = self.header(revision);
        Ok(Response::new(epb::LeaderResponse { header, kv: Some(convert::kv_to(kv)) }))
    }

    /// Deletes the leader's key if it is still the leader's; answers alike if it is not.
    async fn resign(
        &self,
        request: Request<epb::ResignRequest>,
    ) -> Result<Response<epb::ResignResponse>, Status> {
        let leader =
            request.into_inner().leader.ok_or_else(|| status::concurrency(MISSING_LEADER_KEY))?;
        let command = queue::resign(&leader.key, leader.rev);
        let (_, revision) = self.backend.write(command).await.map_err(|e| status::of_coord(&e))?;
        Ok(Response::new(epb::ResignResponse { header: self.header(revision) }))
    }

    /// The leader now (or the first candidate, if there is none yet), then each of its
    /// proclamations, then the next leader once its key is gone, and so on.
    async fn observe(
        &self,
        request: Request<epb::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let (out, responses) = mpsc::channel(self.config.stream_responses_buffered.max(1));
        let observer = Observer {
            backend: Arc::clone(&self.backend),
            prefix: queue::prefix(&request.into_inner().name),
            page_revisions: self.config.history_page_revisions,
            out,
        };
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = observer.run() => {}
                () = stopping.stopped() => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }
}

/// Why an Observe stream stopped following.
enum Interrupted {
    /// The client went away, or the stream failed and told it so: it ends.
    Ended,
    /// The feed lagged past what history holds: follow again from the store as it is now.
    Compacted,
}

/// One Observe stream, owned by its task.
struct Observer<B> {
    backend: Arc<B>,
    /// `name/`.
    prefix: Vec<u8>,
    page_revisions: usize,
    out: mpsc::Sender<Result<epb::LeaderResponse, Status>>,
}

impl<B: Coordination> Observer<B> {
    async fn run(self) {
        loop {
            let mut revisions = Revisions::subscribe(&self.backend, self.page_revisions);
            if let Interrupted::Ended = self.follow(&mut revisions).await {
                return;
            }
        }
    }

    /// Sends each leader and its proclamations, in order, until interrupted (etcd's
    /// `Election.observe`).
    async fn follow(&self, revisions: &mut Revisions<B>) -> Interrupted {
        loop {
            let followed = async {
                let (leader, at) =
                    self.check(queue::owner(&*self.backend, &self.prefix).await).await?;
                revisions.skip_to(at);
                let (leader, at) = match leader {
                    Some(leader) => (leader, at),
                    None => self.check(first_put(revisions, &self.prefix).await).await?,
                };
                self.send(at, leader.clone()).await?;
                self.proclamations(revisions, &leader.key).await
            };
            if let Err(interrupted) = followed.await {
                return interrupted;
            }
        }
    }

    /// Sends the puts of the leader's `key` until it is deleted.
    async fn proclamations(
        &self,
        revisions: &mut Revisions<B>,
        key: &[u8],
    ) -> Result<(), Interrupted> {
        loop {
            let applied = self.check(revisions.next().await).await?;
            for event in applied.events.iter().filter(|e| e.kv.key == key) {
                if event.kind == cairn_coord::EventKind::Delete {
                    return Ok(());
                }
                self.send(applied.revision, event.kv.clone()).await?;
            }
        }
    }

    async fn send(&self, revision: i64, kv: KeyValue) -> Result<(), Interrupted> {
        let header = convert::header(&self.backend.header(), revision);
        let response = epb::LeaderResponse { header, kv: Some(convert::kv_to(kv)) };
        self.out.send(Ok(response)).await.map_err(|_| Interrupted::Ended)
    }

    /// The value; a compaction interrupts; any other error is sent to the client, and ends the
    /// stream.
    async fn check<T>(&self, result: Result<T, CoordError>) -> Result<T, Interrupted> {
        match result {
            Ok(value) => Ok(value),
            Err(CoordError::Compacted { .. }) => Err(Interrupted::Compacted),
            Err(error) => {
                // The stream ends either way.
                let _ = self.out.send(Err(status::of_coord(&error))).await;
                Err(Interrupted::Ended)
            }
        }
    }
}

/// The first key put under `prefix` in the revisions to come (a first candidate), and the
/// revision that put it.
async fn first_put<B: Coordination>(
    revisions: &mut Revisions<B>,
    prefix: &[u8],
) -> Result<(KeyValue, i64), CoordError> {
    loop {
        let applied = revisions.next().await?;
        let put = applied
            .events
            .iter()
            .find(|e| e.kind == cairn_coord::EventKind::Put && e.kv.key.starts_with(prefix));
        if let Some(put) = put {
            return Ok((put.kv.clone(), applied.revision));
        }
    }
}
