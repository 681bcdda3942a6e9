//! cairn-coord: the coordination store behind the etcd v3 API (RFC 0009), in a redb file it
//! owns: no clock, no network, no async runtime.
//!
//! [`Store`] is etcd's MVCC model: revisions (one per write transaction), each key's
//! creation and modification revisions and version, ranges at past revisions, transactions with
//! compares over key ranges and etcd's duplicate-key rule, compaction, and leases that take
//! their keys with them. Every replica of the coordination group applies the same commands to
//! it ([`Store::apply_batch`]: a batch of entries in one transaction, with their Raft position,
//! without an fsync) and gets the same answers;
//! [`Store::persist`] makes what was applied durable, and a crash reopens the file as of the last
//! persist. The events of each revision feed the watches. [`Store::write_snapshot`] and
//! [`Store::restore`] carry the whole store to a follower.
//!
//! - `types.rs`: the requests, answers and errors, as etcd's API names them.
//! - `store.rs`: [`Store`] and [`StoreReader`] (reads beside the writer).
//! - `tables.rs`: the redb tables and the history record's encoding.
//! - `read.rs`, `write.rs`: reads and writes over the tables; `rules.rs`: etcd's rules that
//!   need no storage.
//! - `snapshot.rs`: the snapshot stream and restore.
//! - `command.rs`: [`Command`], what the coordination group's log holds, [`Reply`], what
//!   applying one answers ([`Store::apply`]), and their encoding (`codec.rs`).
//! - `forward.rs`: [`Forward`], what a node asks the group's leader, and its [`Answer`].

mod codec;
mod command;
mod forward;
mod read;
mod rules;
mod snapshot;
mod store;
mod tables;
mod types;
mod write;

pub use command::{CodecError, Command, Entry, EntryOutcome, Reply, TXN_DEPTH_MAX};
pub use forward::{Answer, EntryPosition, Forward, Refusal};

pub use store::{Lease, Position, Store, StoreReader};
pub use types::{
    AlarmKind, Applied, Change, Compare, CompareResult, CompareTarget, DeleteRangeRequest,
    DeleteRangeResponse, Event, EventKind, KeyValue, KvError, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder, SortTarget, StoreError,
    TxnRequest, TxnResponse,
};
