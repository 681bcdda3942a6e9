//! The requests, answers and errors of the store, as etcd's v3 KV and Lease APIs define them
//! (`etcdserverpb`, `mvccpb`), free of any wire encoding.

use thiserror::Error;

/// A key's value at some revision (etcd's `mvccpb.KeyValue`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The revision that created the key (of its current generation).
    pub create_revision: i64,
    /// The revision that last changed it.
    pub mod_revision: i64,
    /// How many times it changed since its creation: 1 when created.
    pub version: i64,
    /// The value.
    pub value: Vec<u8>,
    /// The lease it is attached to, 0 for none.
    pub lease: i64,
}

/// What happened to a key at a revision (etcd's `mvccpb.Event`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// A put or a delete.
    pub kind: EventKind,
    /// The key after the event (for a delete: the key and the deleting revision only).
    pub kv: KeyValue,
    /// The key before the event, if it existed.
    pub prev_kv: Option<KeyValue>,
}

/// One revision's changes, in the order they were made: what the coordination group
/// publishes to watchers as it applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The revision.
    pub revision: i64,
    /// Its events. Each carries `prev_kv` whenever the key existed before, whatever the
    /// request asked: the watches strip it unless theirs asked.
    pub events: Vec<Event>,
}

/// One change the history holds (what etcd's HashKV hashes): where it is and what it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Its revision.
    pub revision: i64,
    /// Its place among its revision's changes, from 0.
    pub sub: u32,
    /// A put or a delete.
    pub kind: EventKind,
    /// The key after it (a deletion's: the key, and the revision as its `mod_revision`).
    pub kv: KeyValue,
}

/// The kind of an [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A put.
    Put,
    /// A delete.
    Delete,
}

/// The order of a Range's answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// By key, ascending (the store's own order).
    #[default]
    None,
    /// Ascending by the target.
    Ascend,
    /// Descending by the target.
    Descend,
}

/// What a Range sorts by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The creation revision.
    Create,
    /// The last modification's revision.
    Mod,
    /// The value.
    Value,
}

/// A Range request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// The key, or the start of the range.
    pub key: Vec<u8>,
    /// The end of the range (exclusive): empty for the key alone, `[0]` for every key from
    /// `key` on.
    pub range_end: Vec<u8>,
    /// At most this many keys, 0 for no limit.
    pub limit: i64,
    /// The revision to read at, 0 for the current one.
    pub revision: i64,
    /// The order.
    pub sort_order: SortOrder,
    /// What to sort by.
    pub sort_target: SortTarget,
    /// Keys without values.
    pub keys_only: bool,
    /// Only the count.
    pub count_only: bool,
    /// Keys last modified at or after this revision (0: any).
    pub min_mod_revision: i64,
    /// Keys last modified at or before this revision (0: any).
    pub max_mod_revision: i64,
    /// Keys created at or after this revision (0: any).
    pub min_create_revision: i64,
    /// Keys created at or before this revision (0: any).
    pub max_create_revision: i64,
}

/// A Range answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The keys, within the limit.
    pub kvs: Vec<KeyValue>,
    /// Whether more keys matched than the limit let through.
    pub more: bool,
    /// How many keys matched.
    pub count: i64,
}

/// A Put request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The lease to attach the key to, 0 for none.
    pub lease: i64,
    /// Answer the key's previous value.
    pub prev_kv: bool,
    /// Keep the key's current value (the key must exist).
    pub ignore_value: bool,
    /// Keep the key's current lease (the key must exist).
    pub ignore_lease: bool,
}

/// A Put answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// The previous value, if asked for and it existed.
    pub prev_kv: Option<KeyValue>,
}

/// A DeleteRange request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    /// The key, or the start of the range.
    pub key: Vec<u8>,
    /// The end of the range, as [`RangeRequest::range_end`].
    pub range_end: Vec<u8>,
    /// Answer the deleted keys' values.
    pub prev_kv: bool,
}

/// A DeleteRange answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    /// How many keys it deleted.
    pub deleted: i64,
    /// Their values, if asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// How a [`Compare`] compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareResult {
    /// Equal.
    Equal,
    /// The key's is greater.
    Greater,
    /// The key's is less.
    Less,
    /// Not equal.
    NotEqual,
}

/// What a [`Compare`] compares, with the value to compare with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's version (0: it does not exist).
    Version(i64),
    /// Its creation revision.
    Create(i64),
    /// Its last modification's revision.
    Mod(i64),
    /// Its value.
    Value(Vec<u8>),
    /// Its lease.
    Lease(i64),
}

/// One condition of a Txn: every key of its range must meet it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// How.
    pub result: CompareResult,
    /// What, and with what.
    pub target: CompareTarget,
    /// The key, or the start of the range.
    pub key: Vec<u8>,
    /// The end of the range, as [`RangeRequest::range_end`].
    pub range_end: Vec<u8>,
}

/// One operation of a Txn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    /// A Range.
    Range(RangeRequest),
    /// A Put.
    Put(PutRequest),
    /// A DeleteRange.
    DeleteRange(DeleteRangeRequest),
    /// A nested Txn.
    Txn(TxnRequest),
}

/// A Txn request: if every compare holds, the success ops, else the failure ops, at one
/// revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// The conditions.
    pub compare: Vec<Compare>,
    /// The ops when they all hold.
    pub success: Vec<RequestOp>,
    /// The ops otherwise.
    pub failure: Vec<RequestOp>,
}

/// The answer of one op of a Txn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    /// A Range's.
    Range(RangeResponse),
    /// A Put's.
    Put(PutResponse),
    /// A DeleteRange's.
    DeleteRange(DeleteRangeResponse),
    /// A nested Txn's.
    Txn(TxnResponse),
}

/// A Txn answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the compares held.
    pub succeeded: bool,
    /// The answers of the ops that ran.
    pub responses: Vec<ResponseOp>,
}

/// Why the store refused a request (each maps to etcd's gRPC status and message), or could not
/// serve it ([`KvError::Storage`]).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum KvError {
    /// The revision asked for was compacted.
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The revision asked for is in the future.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// A Txn changes a key twice (etcd's rule).
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// The key is empty.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// The lease does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// The lease id is taken.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A lease's TTL must be positive.
    #[error("etcdserver: lease TTL must be positive")]
    BadTtl,
    /// A NOSPACE alarm is active: only reads, deletes, compactions and lease revocations are
    /// served until it is deactivated.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The store's file failed (IO, corruption, a damaged record): not an answer to the
    /// request, and not the same on every replica. The caller stops the replica (its store is
    /// as of its last commit) and recovers it from a snapshot; the request's outcome is
    /// unknown to its client.
    #[error("etcdserver: storage failed: {0}")]
    Storage(String),
}

/// An alarm, as etcd's Maintenance.Alarm names it (`AlarmType`, same numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlarmKind {
    /// The space quota is used up (raised by the node whose store passed it).
    NoSpace = 1,
    /// A replica's store disagrees with the others (etcd's corruption check).
    Corrupt = 2,
}

impl AlarmKind {
    /// The kind of etcd's number `code`, if it names one.
    #[must_use]
    pub fn from_code(code: u8) -> Option<AlarmKind> {
        match code {
            1 => Some(AlarmKind::NoSpace),
            2 => Some(AlarmKind::Corrupt),
            _ => None,
        }
    }

    /// etcd's number.
    #[must_use]
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Why a store could not be opened, made durable, snapshotted or restored: the caller stops
/// the replica (nothing here is an answer to a request).
#[derive(Debug, Error)]
pub enum StoreError {
    /// redb or the file system failed, or the file is damaged or of an unknown format.
    #[error("coordination store: {0}")]
    Storage(String),
    /// A snapshot's bytes are cut, damaged (checksum), of an unknown version or malformed.
    #[error("coordination snapshot: {0}")]
    Snapshot(String),
}

impl From<KvError> for StoreError {
    fn from(error: KvError) -> StoreError {
        match error {
            KvError::Storage(message) => StoreError::Storage(message),
            refusal => StoreError::Storage(format!("unexpected refusal: {refusal}")),
        }
    }
}
