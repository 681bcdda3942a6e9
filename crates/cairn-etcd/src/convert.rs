//! Protobuf messages ⇄ cairn-coord's types, with etcd's checks of each request on the way in
//! (empty keys, `ignore_value`/`ignore_lease` misuse, the Txn operations limit) and the
//! response header on the way out.

use cairn_coord as coord;
use cairn_coord::TXN_DEPTH_MAX;
use tonic::Status;

use crate::backend::Header;
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::{compare, range_request, request_op, response_op};
use crate::proto::mvccpb;
use crate::status::{TOO_MANY_OPS, invalid};

const EMPTY_KEY: &str = "etcdserver: key is not provided";

/// The response header: who answered, at `revision`.
pub fn header(header: &Header, revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        cluster_id: header.cluster_id,
        member_id: header.member_id,
        revision,
        raft_term: header.raft_term,
    })
}

/// A Range request, checked as etcd checks it.
pub fn range_from(request: pb::RangeRequest) -> Result<coord::RangeRequest, Status> {
    if request.key.is_empty() {
        return Err(invalid(EMPTY_KEY));
    }
    let sort_order = match range_request::SortOrder::try_from(request.sort_order) {
        Ok(range_request::SortOrder::None) => coord::SortOrder::None,
        Ok(range_request::SortOrder::Ascend) => coord::SortOrder::Ascend,
        Ok(range_request::SortOrder::Descend) => coord::SortOrder::Descend,
        Err(_) => return Err(invalid("etcdserver: invalid sort order")),
    };
    let sort_target = match range_request::SortTarget::try_from(request.sort_target) {
        Ok(range_request::SortTarget::Key) => coord::SortTarget::Key,
        Ok(range_request::SortTarget::Version) => coord::SortTarget::Version,
        Ok(range_request::SortTarget::Create) => coord::SortTarget::Create,
        Ok(range_request::SortTarget::Mod) => coord::SortTarget::Mod,
        Ok(range_request::SortTarget::Value) => coord::SortTarget::Value,
        Err(_) => return Err(invalid("etcdserver: invalid sort target")),
    };
    Ok(coord::RangeRequest {
        key: request.key,
        range_end: request.range_end,
        limit: request.limit,
        revision: request.revision,
        sort_order,
        sort_target,
        keys_only: request.keys_only,
        count_only: request.count_only,
        min_mod_revision: request.min_mod_revision,
        max_mod_revision: request.max_mod_revision,
        min_create_revision: request.min_create_revision,
        max_create_revision: request.max_create_revision,
    })
}

/// A Put request, checked as etcd checks it.
pub fn put_from(request: pb::PutRequest) -> Result<coord::PutRequest, Status> {
    if request.key.is_empty() {
        return Err(invalid(EMPTY_KEY));
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(invalid("etcdserver: value is provided"));
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(invalid("etcdserver: lease is provided"));
    }
    Ok(coord::PutRequest {
        key: request.key,
        value: request.value,
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    })
}

/// A DeleteRange request, checked as etcd checks it.
pub fn delete_from(request: pb::DeleteRangeRequest) -> Result<coord::DeleteRangeRequest, Status> {
    if request.key.is_empty() {
        return Err(invalid(EMPTY_KEY));
    }
    Ok(coord::DeleteRangeRequest {
        key: request.key,
        range_end: request.range_end,
        prev_kv: request.prev_kv,
    })
}

/// A Txn request, checked as etcd checks it: at most `ops_max` operations, counted as the
/// largest of its compares, success and failure ops, each nested Txn within what is left; no
/// empty key. Nesting deeper than cairn-coord encodes is refused too.
pub fn txn_from(request: pb::TxnRequest, ops_max: usize) -> Result<coord::TxnRequest, Status> {
    txn_at(request, ops_max, 0)
}

fn txn_at(
    request: pb::TxnRequest,
    ops_max: usize,
    depth: usize,
) -> Result<coord::TxnRequest, Status> {
    let ops = request.compare.len().max(request.success.len()).max(request.failure.len());
    if ops > ops_max {
        return Err(invalid(TOO_MANY_OPS));
    }
    if depth >= TXN_DEPTH_MAX {
        return Err(invalid("cairn: txns nested too deep"));
    }
    let compare = request.compare.into_iter().map(compare_from).collect::<Result<_, _>>()?;
    let left = ops_max - ops;
    let op = |op| op_from(op, left, depth);
    Ok(coord::TxnRequest {
        compare,
        success: request.success.into_iter().map(op).collect::<Result<_, _>>()?,
        failure: request.failure.into_iter().map(op).collect::<Result<_, _>>()?,
    })
}

fn op_from(op: pb::RequestOp, ops_max: usize, depth: usize) -> Result<coord::RequestOp, Status> {
    Ok(match op.request {
        Some(request_op::Request::RequestRange(range)) => {
            coord::RequestOp::Range(range_from(range)?)
        }
        Some(request_op::Request::RequestPut(put)) => coord::RequestOp::Put(put_from(put)?),
        Some(request_op::Request::RequestDeleteRange(delete)) => {
            coord::RequestOp::DeleteRange(delete_from(delete)?)
        }
        Some(request_op::Request::RequestTxn(txn)) => {
            coord::RequestOp::Txn(txn_at(txn, ops_max, depth + 1)?)
        }
        None => return Err(invalid("cairn: a txn operation has no request")),
    })
}

fn compare_from(request: pb::Compare) -> Result<coord::Compare, Status> {
    if request.key.is_empty() {
        return Err(invalid(EMPTY_KEY));
    }
    let result = match compare::CompareResult::try_from(request.result) {
        Ok(compare::CompareResult::Equal) => coord::CompareResult::Equal,
        Ok(compare::CompareResult::Greater) => coord::CompareResult::Greater,
        Ok(compare::CompareResult::Less) => coord::CompareResult::Less,
        Ok(compare::CompareResult::NotEqual) => coord::CompareResult::NotEqual,
        Err(_) => return Err(invalid("etcdserver: invalid compare result")),
    };
    Ok(coord::Compare {
        result,
        target: compare_target(request.target, request.target_union)?,
        key: request.key,
        range_end: request.range_end,
    })
}

/// The compared field and value; a value of another kind than the target compares as that
/// kind's zero, as etcd reads it.
fn compare_target(
    target: i32,
    value: Option<compare::TargetUnion>,
) -> Result<coord::CompareTarget, Status> {
    use compare::TargetUnion as V;
    let number = |pick: fn(&V) -> Option<i64>| value.as_ref().and_then(pick).unwrap_or(0);
    Ok(match compare::CompareTarget::try_from(target) {
        Ok(compare::CompareTarget::Version) => coord::CompareTarget::Version(number(|v| {
            if let V::Version(n) = v { Some(*n) } else { None }
        })),
        Ok(compare::CompareTarget::Create) => coord::CompareTarget::Create(number(|v| {
            if let V::CreateRevision(n) = v { Some(*n) } else { None }
        })),
        Ok(compare::CompareTarget::Mod) => coord::CompareTarget::Mod(number(|v| {
            if let V::ModRevision(n) = v { Some(*n) } else { None }
        })),
        Ok(compare::CompareTarget::Lease) => {
            coord::CompareTarget::Lease(number(
                |v| if let V::Lease(n) = v { Some(*n) } else { None },
            ))
        }
        Ok(compare::CompareTarget::Value) => coord::CompareTarget::Value(match value {
            Some(V::Value(bytes)) => bytes,
            _ => Vec::new(),
        }),
        Err(_) => return Err(invalid("etcdserver: invalid compare target")),
    })
}

/// A key-value.
pub fn kv_to(kv: coord::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// An event, with its previous value only if `prev_kv`.
pub fn event_to(event: &coord::Event, prev_kv: bool) -> mvccpb::Event {
    let kind = match event.kind {
        coord::EventKind::Put => mvccpb::event::EventType::Put,
        coord::EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind.into(),
        kv: Some(kv_to(event.kv.clone())),
        prev_kv: if prev_kv { event.prev_kv.clone().map(kv_to) } else { None },
    }
}

/// A Range answer.
pub fn range_to(
    response: coord::RangeResponse,
    head: &Option<pb::ResponseHeader>,
) -> pb::RangeResponse {
    pb::RangeResponse {
        header: *head,
        kvs: response.kvs.into_iter().map(kv_to).collect(),
        more: response.more,
        count: response.count,
    }
}

/// A Put answer.
pub fn put_to(response: coord::PutResponse, head: &Option<pb::ResponseHeader>) -> pb::PutResponse {
    pb::PutResponse { header: *head, prev_kv: response.prev_kv.map(kv_to) }
}

/// A DeleteRange answer.
pub fn delete_to(
    response: coord::DeleteRangeResponse,
    head: &Option<pb::ResponseHeader>,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: *head,
        deleted: response.deleted,
        prev_kvs: response.prev_kvs.into_iter().map(kv_to).collect(),
    }
}

/// A Txn answer; every nested answer has the same header.
pub fn txn_to(response: coord::TxnResponse, head: &Option<pb::ResponseHeader>) -> pb::TxnResponse {
    let responses = response.responses.into_iter().map(|op| {
        let response = match op {
            coord::ResponseOp::Range(r) => response_op::Response::ResponseRange(range_to(r, head)),
            coord::ResponseOp::Put(r) => response_op::Response::ResponsePut(put_to(r, head)),
            coord::ResponseOp::DeleteRange(r) => {
                response_op::Response::ResponseDeleteRange(delete_to(r, head))
            }
            coord::ResponseOp::Txn(r) => response_op::Response::ResponseTxn(txn_to(r, head)),
        };
        pb::ResponseOp { response: Some(response) }
    });
    pb::TxnResponse { header: *head, succeeded: response.succeeded, responses: responses.collect() }
}
