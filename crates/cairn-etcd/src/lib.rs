//! cairn-etcd: etcd v3's gRPC API in front of the coordination group (RFC 0009 §8), so that
//! etcd's clients (etcdctl, `etcd3`, `etcd-client`) work unchanged.
//!
//! The services are tonic's, generated at build time from `proto/` (etcd's public API as
//! cairn writes it: etcd's packages, services, messages, fields and numbers) by protox, with
//! no `protoc`. They run over any [`Coordination`], what the node implements over the group's
//! Raft replica.
//!
//! - `backend.rs`: [`Coordination`] and the types it answers with; [`CoordError`].
//! - `config.rs`: [`EtcdConfig`], the limits (etcd's defaults).
//! - `status.rs`: every error as etcd's gRPC status and message.
//! - `convert.rs`: protobuf ⇄ cairn-coord, with etcd's request checks.
//! - `quota.rs`: the space quota, which raises the NOSPACE alarm.
//! - `kv.rs`, `lease.rs`, `watch.rs`, `maintenance.rs` (and Cluster): the services;
//!   `unserved.rs`: Auth, which answers `Unimplemented` for now.
//! - `lock.rs`, `election.rs`: Lock and Election, on the KV API as etcd builds them, over the
//!   waiting queue of `queue.rs`, which follows the applied revisions with `revisions.rs`.
//! - `hash.rs`: [`hash_kv`], etcd's HashKV algorithm, for the backend's
//!   [`Coordination::hash_kv`].
//! - `server.rs`: [`serve`], every service on one port; `stopping.rs`: the signal that ends
//!   the streams when it stops.

mod backend;
mod config;
mod convert;
mod election;
mod hash;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod queue;
mod quota;
mod revisions;
mod server;
mod status;
mod stopping;
mod unserved;
mod watch;

pub use backend::{Applied, CoordError, Coordination, Header, LeaseStatus, Member, Status};
pub use config::{
    EtcdConfig, GRPC_OVERHEAD_BYTES, LEASE_TTL_MAX_SECONDS, QUOTA_BACKEND_BYTES_DEFAULT,
};
pub use hash::{KvHash, hash_kv};
pub use server::{serve, serve_with};

/// The generated protobuf messages and tonic services, by etcd's package names.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod proto {
    /// `mvccpb`: KeyValue and Event.
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    /// `authpb`: users, roles and permissions.
    pub mod authpb {
        tonic::include_proto!("authpb");
    }
    /// `etcdserverpb`: the KV, Watch, Lease, Cluster, Maintenance and Auth services.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    /// `v3lockpb`: the Lock service.
    pub mod v3lockpb {
        tonic::include_proto!("v3lockpb");
    }
    /// `v3electionpb`: the Election service.
    pub mod v3electionpb {
        tonic::include_proto!("v3electionpb");
    }
}
