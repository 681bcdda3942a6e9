//! The space quota (etcd's `--quota-backend-bytes`, RFC 0009 §2): before proposing a write that
//! may grow the store, the front door compares this member's store size plus the write's cost
//! with the quota. Past it, the member raises the NOSPACE alarm (a command: every replica then
//! refuses what may grow the store, the same way) and the write is refused with etcd's
//! `ResourceExhausted` "database space exceeded". Deletes, compactions and lease revocations
//! still go through; an operator frees space and deactivates the alarm (`etcdctl alarm
//! disarm`). Costs are etcd's: a put's key and value plus 256 bytes, a lease 64.

use cairn_coord::{AlarmKind, Command, KvError, PutRequest, RequestOp, TxnRequest};
use tonic::Status;

use crate::backend::Coordination;
use crate::config::EtcdConfig;
use crate::status;

/// What etcd counts for a put besides its key and value.
const PUT_OVERHEAD_BYTES: u64 = 256;

/// What etcd counts for a lease grant.
pub(crate) const LEASE_COST_BYTES: u64 = 64;

/// Admits a write of `cost` bytes (0: one that cannot grow the store), or raises the NOSPACE
/// alarm if the store would pass the quota, and refuses it.
pub(crate) async fn admit<B: Coordination>(
    backend: &B,
    config: &EtcdConfig,
    cost: u64,
) -> Result<(), Status> {
    let quota = config.quota_backend_bytes;
    let size = u64::try_from(backend.db_size()).unwrap_or(0);
    if quota == 0 || cost == 0 || size.saturating_add(cost) <= quota {
        return Ok(());
    }
    let member = backend.header().member_id;
    let raised = backend
        .alarms(false)
        .await
        .is_ok_and(|alarms| alarms.contains(&(member, AlarmKind::NoSpace)));
    if !raised {
        let raise = Command::Alarm { activate: true, member, alarm: AlarmKind::NoSpace };
        if let Err(error) = backend.write(raise).await {
            tracing::warn!(%error, "the NOSPACE alarm could not be raised");
        }
        tracing::warn!(size, quota, "the etcd store passed its space quota: NOSPACE alarm");
    }
    Err(status::of_kv(&KvError::NoSpace))
}

/// What a put counts against the quota.
pub(crate) fn put_cost(put: &PutRequest) -> u64 {
    let bytes = put.key.len().saturating_add(put.value.len());
    PUT_OVERHEAD_BYTES.saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX))
}

/// What a txn counts: its puts on both branches, at any depth.
pub(crate) fn txn_cost(txn: &TxnRequest) -> u64 {
    txn.success.iter().chain(&txn.failure).fold(0, |cost: u64, op| {
        cost.saturating_add(match op {
            RequestOp::Put(put) => put_cost(put),
            RequestOp::Txn(nested) => txn_cost(nested),
            RequestOp::Range(_) | RequestOp::DeleteRange(_) => 0,
        })
    })
}
