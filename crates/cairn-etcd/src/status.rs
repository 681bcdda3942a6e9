//! Every error the services answer, as etcd's gRPC status code and message: the one place
//! where [`CoordError`] and [`KvError`] become [`tonic::Status`].

use cairn_coord::KvError;
use tonic::{Code, Status};

use crate::backend::CoordError;

/// etcd's text for a request over the size limit.
pub const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
/// etcd's text for a Txn over the operations limit.
pub const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
/// etcd's text for a compacted revision (also a watch's cancel reason).
pub const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// etcd's text when a Proclaim's leader key is no longer the leader's
/// (`concurrency.ErrElectionNotLeader`).
pub const ELECTION_NOT_LEADER: &str = "election: not leader";
/// etcd's text when an election has no leader (`concurrency.ErrElectionNoLeader`).
pub const ELECTION_NO_LEADER: &str = "election: no leader";
/// etcd's text when a Proclaim or Resign names no leader (`v3election.ErrMissingLeaderKey`).
pub const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";
/// etcd's text when a waiting Lock's key was gone once its turn came: its lease expired or was
/// revoked (`concurrency.ErrSessionExpired`).
pub const SESSION_EXPIRED: &str = "mutex: session is expired";
/// etcd's text for a call cut short by the server stopping.
pub const SERVER_STOPPED: &str = "etcdserver: server stopped";

/// The status etcd answers for `error`.
pub fn of_coord(error: &CoordError) -> Status {
    match error {
        CoordError::Kv(kv) => of_kv(kv),
        CoordError::Compacted { .. } => Status::out_of_range(COMPACTED),
        CoordError::Unavailable(message) => Status::unavailable(message.clone()),
        CoordError::Invalid(message) => Status::invalid_argument(message.clone()),
    }
}

/// The status etcd answers for the store's `error`.
pub fn of_kv(error: &KvError) -> Status {
    let code = match error {
        KvError::Compacted | KvError::FutureRevision => Code::OutOfRange,
        KvError::LeaseNotFound => Code::NotFound,
        KvError::LeaseExists => Code::FailedPrecondition,
        KvError::NoSpace => Code::ResourceExhausted,
        KvError::DuplicateKey | KvError::EmptyKey | KvError::KeyNotFound | KvError::BadTtl => {
            Code::InvalidArgument
        }
        // The replica's store failed: as etcd's internal errors.
        KvError::Storage(_) => Code::Internal,
    };
    let message = match error {
        // etcd's gRPC layer prefixes the store's own text.
        KvError::Compacted | KvError::FutureRevision => format!("etcdserver: {error}"),
        _ => error.to_string(),
    };
    Status::new(code, message)
}

/// The status of an error etcd's `concurrency` package makes (Lock, Election): a plain Go
/// error, which gRPC answers as `Unknown` with its text.
pub fn concurrency(message: &str) -> Status {
    Status::unknown(message)
}

/// etcd's InvalidArgument with `message`.
pub fn invalid(message: &str) -> Status {
    Status::invalid_argument(message)
}

/// The answer of an RPC cairn does not serve yet, saying what to use instead.
pub fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("cairn: {what}"))
}
