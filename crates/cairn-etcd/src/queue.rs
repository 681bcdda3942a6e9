//! The waiting queue Lock and Campaign share, built on the KV API as etcd's `concurrency`
//! package builds it (`Mutex`, `Election`, `waitDeletes`), so it works on every member and
//! through leader changes: a contender's key is `<name>/<lease id in hex>`, attached to its
//! lease; the contender with the lowest `create_revision` under `<name>/` holds the lock (or
//! leads), and that revision is its fencing token. A contender waits for the deletion of the
//! key just before its own, then looks again.

use std::sync::Arc;

use cairn_coord::{
    Command, Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyValue, PutRequest,
    RangeRequest, Reply, RequestOp, ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse,
};
use tonic::Status;

use crate::backend::{CoordError, Coordination};
use crate::revisions::Revisions;
use crate::status::{self, SERVER_STOPPED};
use crate::stopping::Stopping;

/// The TTL of the lease granted for a Lock or Campaign without one, in seconds (etcd's
/// session default: such a call gets a lease of its own, which nobody keeps alive).
pub const SESSION_TTL_SECONDS: i64 = 60;

/// The keys of the election or lock `name`: `name/`.
pub fn prefix(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// A contender's key under `prefix`: its lease id in lowercase hex (etcd's `%x`).
pub fn key_of(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// The end of the range of every key starting with `prefix` (etcd's `GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every byte 0xff: every key from the prefix on
}

/// The caller's lease, or for 0 a lease of [`SESSION_TTL_SECONDS`] granted for this call, as
/// etcd's session does.
pub async fn session_lease<B: Coordination>(backend: &B, lease: i64) -> Result<i64, Status> {
    if lease != 0 {
        return Ok(lease);
    }
    let (id, _) =
        backend.lease_grant(0, SESSION_TTL_SECONDS).await.map_err(|e| status::of_coord(&e))?;
    Ok(id)
}

/// The Range of the contender under `prefix` created first (`first`) or last.
fn edge(prefix: &[u8], first: bool, max_create_revision: i64) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: if first { SortOrder::Ascend } else { SortOrder::Descend },
        sort_target: SortTarget::Create,
        max_create_revision,
        ..RangeRequest::default()
    }
}

/// The contender under `prefix` created first (the owner, the leader), if any, and the
/// revision read at.
pub async fn owner<B: Coordination>(
    backend: &B,
    prefix: &[u8],
) -> Result<(Option<KeyValue>, i64), CoordError> {
    let (response, revision) = backend.range(edge(prefix, true, 0), false).await?;
    Ok((response.kvs.into_iter().next(), revision))
}

/// Proposes `txn`; answers its reply and the revision after it.
pub async fn txn<B: Coordination>(
    backend: &B,
    txn: TxnRequest,
) -> Result<(TxnResponse, i64), Status> {
    match backend.write(Command::Txn(txn)).await.map_err(|e| status::of_coord(&e))? {
        (Reply::Txn(response), revision) => Ok((response, revision)),
        (other, _) => Err(mismatched(&other)),
    }
}

/// A reply of another shape than the request's: the backend broke its contract.
pub fn mismatched(reply: &impl std::fmt::Debug) -> Status {
    tracing::error!(?reply, "the coordination backend answered a txn with another's reply");
    Status::internal("cairn: the coordination group answered with an unexpected reply")
}

/// A contender's place in the queue, once its key is in.
#[derive(Debug)]
pub struct Entered {
    /// The key's creation revision: the fencing token once it owns.
    pub revision: i64,
    /// The key's value before, if it existed (the same lease entered before).
    pub existing: Option<Vec<u8>>,
    /// The owner at the time.
    pub owner: Option<KeyValue>,
    /// The store's revision after the Txn.
    pub header_revision: i64,
}

/// Puts `key` with `value` and `lease` unless it exists, and reads it and the owner, in one
/// Txn (etcd's `tryAcquire` and `Campaign`).
pub async fn enter<B: Coordination>(
    backend: &B,
    prefix: &[u8],
    key: &[u8],
    lease: i64,
    value: Vec<u8>,
) -> Result<Entered, Status> {
    let put = PutRequest { key: key.to_vec(), value, lease, ..PutRequest::default() };
    let get = RangeRequest { key: key.to_vec(), ..RangeRequest::default() };
    let owner = RequestOp::Range(edge(prefix, true, 0));
    let request = TxnRequest {
        compare: vec![create_is(key, 0)],
        success: vec![RequestOp::Put(put), owner.clone()],
        failure: vec![RequestOp::Range(get), owner],
    };
    let (response, header_revision) = txn(backend, request).await?;
    let created = response.succeeded;
    let mut ranges = response.responses.into_iter().map(|op| match op {
        ResponseOp::Range(range) => Ok(range.kvs.into_iter().next()),
        ResponseOp::Put(_) if created => Ok(None),
        other => Err(mismatched(&other)),
    });
    let ours = ranges.next().transpose()?.flatten();
    let owner = ranges.next().transpose()?.flatten();
    let (revision, existing) = match ours {
        Some(kv) if !created => (kv.create_revision, Some(kv.value)),
        None if created => (header_revision, None),
        other => return Err(mismatched(&other)),
    };
    Ok(Entered { revision, existing, owner, header_revision })
}

/// The compare "`key`'s creation revision is `revision`" (0: it does not exist).
pub fn create_is(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Create(revision),
        key: key.to_vec(),
        range_end: Vec::new(),
    }
}

/// Waits until no key under `prefix` was created before `revision` (etcd's `waitDeletes`):
/// each time for the deletion of the last one created before it. Ends early with
/// `Unavailable` if the server stops.
pub async fn wait_turn<B: Coordination>(
    backend: &Arc<B>,
    prefix: &[u8],
    revision: i64,
    page_revisions: usize,
    mut stopping: Stopping,
) -> Result<(), Status> {
    let wait = async {
        loop {
            let mut revisions = Revisions::subscribe(backend, page_revisions);
            let range = edge(prefix, false, revision - 1);
            let (before, at) =
                backend.range(range, false).await.map_err(|e| status::of_coord(&e))?;
            let Some(before) = before.kvs.into_iter().next() else { return Ok(()) };
            revisions.skip_to(at);
            match deleted(&mut revisions, &before.key).await {
                // History no longer holds what the feed skipped: look again.
                Ok(()) | Err(CoordError::Compacted { .. }) => {}
                Err(error) => return Err(status::of_coord(&error)),
            }
        }
    };
    tokio::select! {
        waited = wait => waited,
        () = stopping.stopped() => Err(Status::unavailable(SERVER_STOPPED)),
    }
}

/// Completes once `key` is deleted in a revision `revisions` answers.
async fn deleted<B: Coordination>(
    revisions: &mut Revisions<B>,
    key: &[u8],
) -> Result<(), CoordError> {
    loop {
        let applied = revisions.next().await?;
        let gone = applied
            .events
            .iter()
            .any(|e| e.kind == cairn_coord::EventKind::Delete && e.kv.key == key);
        if gone {
            return Ok(());
        }
    }
}

/// A write that undoes a contender's entry if its call ends without an answer (the client
/// cancelled it, or waiting failed), as etcd's Lock and Campaign clean up on their way out:
/// dropped armed, it proposes its command from a task of its own.
pub struct Cleanup<B: Coordination> {
    backend: Arc<B>,
    /// The undoing write; `None` once disarmed.
    command: Option<Command>,
}

impl<B: Coordination> Cleanup<B> {
    /// Deletes `key` unless disarmed.
    pub fn delete(backend: &Arc<B>, key: &[u8]) -> Self {
        let delete = DeleteRangeRequest { key: key.to_vec(), ..DeleteRangeRequest::default() };
        Cleanup { backend: Arc::clone(backend), command: Some(Command::DeleteRange(delete)) }
    }

    /// Deletes `key` if it still has the creation revision `revision`, unless disarmed.
    pub fn resign(backend: &Arc<B>, key: &[u8], revision: i64) -> Self {
        Cleanup { backend: Arc::clone(backend), command: Some(resign(key, revision)) }
    }

    /// The call answers: nothing to undo.
    pub fn disarm(mut self) {
        self.command = None;
    }
}

/// The Txn that deletes `key` if it still has the creation revision `revision`.
pub fn resign(key: &[u8], revision: i64) -> Command {
    let delete = DeleteRangeRequest { key: key.to_vec(), ..DeleteRangeRequest::default() };
    Command::Txn(TxnRequest {
        compare: vec![create_is(key, revision)],
        success: vec![RequestOp::DeleteRange(delete)],
        failure: Vec::new(),
    })
}

impl<B: Coordination> Drop for Cleanup<B> {
    fn drop(&mut self) {
        let Some(command) = self.command.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime, no server: the key goes with its lease.
            return;
        };
        let backend = Arc::clone(&self.backend);
        runtime.spawn(async move {
            if let Err(error) = backend.write(command).await {
                tracing::warn!(%error, "could not remove an abandoned lock or campaign key");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_prefix_and_the_lease_in_hex() {
        assert_eq!(prefix(b"job"), b"job/");
        assert_eq!(key_of(b"job/", 0x694d_77aa_9e3a_1c04), b"job/694d77aa9e3a1c04");
    }

    #[test]
    fn prefix_end_increments_the_last_byte_below_0xff() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b");
        assert_eq!(prefix_end(&[0xff, 0xff]), [0]);
    }
}
