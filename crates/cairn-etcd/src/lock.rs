//! The Lock service (`v3lockpb.Lock`), as etcd serves it over its own KV API (`v3lock` over
//! `concurrency.Mutex`), on the queue of `queue.rs`: Lock answers once the caller's key is the
//! oldest under `name/`; the key's `create_revision` is the fencing token. The lock is held
//! until Unlock deletes the key or its lease ends.

use std::sync::Arc;

use cairn_coord::{Command, RangeRequest, Reply};
use tonic::{Request, Response, Status};

use crate::backend::Coordination;
use crate::config::EtcdConfig;
use crate::convert;
use crate::proto::etcdserverpb as pb;
use crate::proto::v3lockpb;
use crate::queue::{self, Cleanup};
use crate::status::{self, SESSION_EXPIRED};
use crate::stopping::Stopping;

/// etcd's Lock service.
pub struct LockService<B> {
    backend: Arc<B>,
    config: Arc<EtcdConfig>,
    stopping: Stopping,
}

impl<B: Coordination> LockService<B> {
    /// The service over `backend`.
    pub fn new(backend: Arc<B>, config: Arc<EtcdConfig>, stopping: Stopping) -> Self {
        LockService { backend, config, stopping }
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        convert::header(&self.backend.header(), revision)
    }

    /// Waits for the caller's turn, then checks that its key outlived the wait; answers the
    /// revision read at, or `None` if a lease that ended while waiting took the key.
    async fn await_turn(
        &self,
        prefix: &[u8],
        key: &[u8],
        revision: i64,
    ) -> Result<Option<i64>, Status> {
        let page = self.config.history_page_revisions;
        let stopping = self.stopping.clone();
        queue::wait_turn(&self.backend, prefix, revision, page, stopping).await?;
        let ours = RangeRequest { key: key.to_vec(), ..RangeRequest::default() };
        let (ours, at) = self.backend.range(ours, false).await.map_err(|e| status::of_coord(&e))?;
        Ok((!ours.kvs.is_empty()).then_some(at))
    }
}

#[tonic::async_trait]
impl<B: Coordination> v3lockpb::lock_server::Lock for LockService<B> {
    /// Enters the queue of `name` with the caller's lease and waits for its turn. If the call
    /// ends otherwise (cancelled, the wait failed) its key is deleted, as etcd does.
    async fn lock(
        &self,
        request: Request<v3lockpb::LockRequest>,
    ) -> Result<Response<v3lockpb::LockResponse>, Status> {
        let request = request.into_inner();
        let lease = queue::session_lease(&*self.backend, request.lease).await?;
        let prefix = queue::prefix(&request.name);
        let key = queue::key_of(&prefix, lease);
        let cleanup = Cleanup::delete(&self.backend, &key);
        let entered = match queue::enter(&*self.backend, &prefix, &key, lease, Vec::new()).await {
            Ok(entered) => entered,
            Err(status) => {
                // The Txn wrote nothing.
                cleanup.disarm();
                return Err(status);
            }
        };
        let owns = entered.owner.as_ref().is_none_or(|o| o.create_revision == entered.revision);
        let at = if owns {
            entered.header_revision
        } else {
            // A failure drops `cleanup` armed: the key is deleted.
            match self.await_turn(&prefix, &key, entered.revision).await? {
                Some(at) => at,
                None => {
                    // etcd's answer; the key is gone already.
                    cleanup.disarm();
                    return Err(status::concurrency(SESSION_EXPIRED));
                }
            }
        };
        cleanup.disarm();
        Ok(Response::new(v3lockpb::LockResponse { header: self.header(at), key }))
    }

    async fn unlock(
        &self,
        request: Request<v3lockpb::UnlockRequest>,
    ) -> Result<Response<v3lockpb::UnlockResponse>, Status> {
        let key = request.into_inner().key;
        let delete = pb::DeleteRangeRequest { key, ..pb::DeleteRangeRequest::default() };
        let command = Command::DeleteRange(convert::delete_from(delete)?);
        let (reply, revision) =
            self.backend.write(command).await.map_err(|e| status::of_coord(&e))?;
        match reply {
            Reply::DeleteRange(_) => {
                Ok(Response::new(v3lockpb::UnlockResponse { header: self.header(revision) }))
            }
            other => Err(queue::mismatched(&other)),
        }
    }
}
