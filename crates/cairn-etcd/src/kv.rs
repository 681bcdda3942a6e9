//! The KV service: Range, Put, DeleteRange, Txn and Compact over [`Coordination`].

use std::sync::Arc;

use cairn_coord::{Command, Reply};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::backend::Coordination;
use crate::config::EtcdConfig;
use crate::convert;
use crate::proto::etcdserverpb as pb;
use crate::quota;
use crate::status::{self, REQUEST_TOO_LARGE};

/// etcd's KV service.
pub struct KvService<B> {
    backend: Arc<B>,
    config: Arc<EtcdConfig>,
}

impl<B: Coordination> KvService<B> {
    /// The service over `backend`.
    pub fn new(backend: Arc<B>, config: Arc<EtcdConfig>) -> Self {
        KvService { backend, config }
    }

    /// Refuses a write larger than etcd would propose.
    fn check_size(&self, request: &impl Message) -> Result<(), Status> {
        if request.encoded_len() > self.config.request_bytes_max {
            return Err(status::invalid(REQUEST_TOO_LARGE));
        }
        Ok(())
    }

    /// Proposes `command`; answers its reply and the response header after it.
    async fn write(&self, command: Command) -> Result<(Reply, Option<pb::ResponseHeader>), Status> {
        let (reply, revision) =
            self.backend.write(command).await.map_err(|e| status::of_coord(&e))?;
        Ok((reply, convert::header(&self.backend.header(), revision)))
    }
}

/// A reply of another kind than the command's: the backend broke its contract.
fn mismatched(reply: &Reply) -> Status {
    tracing::error!(?reply, "the coordination backend answered a command with another's reply");
    Status::internal("cairn: the coordination group answered with an unexpected reply")
}

#[tonic::async_trait]
impl<B: Coordination> pb::kv_server::Kv for KvService<B> {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let request = request.into_inner();
        let serializable = request.serializable;
        let range = convert::range_from(request)?;
        let (response, revision) =
            self.backend.range(range, serializable).await.map_err(|e| status::of_coord(&e))?;
        let head = convert::header(&self.backend.header(), revision);
        Ok(Response::new(convert::range_to(response, &head)))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let request = request.into_inner();
        self.check_size(&request)?;
        let put = convert::put_from(request)?;
        quota::admit(self.backend.as_ref(), &self.config, quota::put_cost(&put)).await?;
        match self.write(Command::Put(put)).await? {
            (Reply::Put(put), head) => Ok(Response::new(convert::put_to(put, &head))),
            (other, _) => Err(mismatched(&other)),
        }
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let request = request.into_inner();
        self.check_size(&request)?;
        match self.write(Command::DeleteRange(convert::delete_from(request)?)).await? {
            (Reply::DeleteRange(delete), head) => {
                Ok(Response::new(convert::delete_to(delete, &head)))
            }
            (other, _) => Err(mismatched(&other)),
        }
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let request = request.into_inner();
        self.check_size(&request)?;
        let txn = convert::txn_from(request, self.config.txn_ops_max)?;
        quota::admit(self.backend.as_ref(), &self.config, quota::txn_cost(&txn)).await?;
        match self.write(Command::Txn(txn)).await? {
            (Reply::Txn(txn), head) => Ok(Response::new(convert::txn_to(txn, &head))),
            (other, _) => Err(mismatched(&other)),
        }
    }

    /// Compacts the history; `physical` is answered at once, the store's compaction being
    /// done when the command applies.
    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let revision = request.into_inner().revision;
        match self.write(Command::Compact { revision }).await? {
            (Reply::Done, header) => Ok(Response::new(pb::CompactionResponse { header })),
            (other, _) => Err(mismatched(&other)),
        }
    }
}
