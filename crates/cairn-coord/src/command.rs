//! [`Command`]: what the coordination group's log holds, one per entry, and [`Reply`], what
//! applying one answers; their versioned binary encoding.
//!
//! ```text
//! version: u8 (= 1)
//! kind: u8
//!  1 Put              put
//!  2 DeleteRange      delete
//!  3 Txn              txn
//!  4 Compact          revision: i64
//!  5 LeaseGrant       id: i64, ttl: i64
//!  6 LeaseRevoke      id: i64
//!  7 LeaseCheckpoint  count: u32, count × (id: i64, remaining: i64)
//!  8 Alarm            activate: u8 (0 or 1), member: u64, alarm: u8 (etcd's AlarmType)
//!  9 Defragment       member: u64
//!
//! bytes   = length: u32, length × u8
//! put     = key: bytes, value: bytes, lease: i64, flags: u8 (1 prev_kv, 2 ignore_value,
//!           4 ignore_lease)
//! delete  = key: bytes, range_end: bytes, flags: u8 (1 prev_kv)
//! range   = key: bytes, range_end: bytes, limit: i64, revision: i64, sort_order: u8,
//!           sort_target: u8, flags: u8 (1 keys_only, 2 count_only), min_mod: i64,
//!           max_mod: i64, min_create: i64, max_create: i64
//! txn     = compare_count: u32 × compare, success_count: u32 × op, failure_count: u32 × op
//! compare = result: u8, target: u8, (i64 | bytes for a value), key: bytes, range_end: bytes
//! op      = 0 range | 1 put | 2 delete | 3 txn (nested at most TXN_DEPTH_MAX deep)
//! ```
//!
//! Big-endian; every length and count is checked against the bytes left before anything is
//! allocated, so a damaged or hostile entry is an error, never a large allocation or a deep
//! recursion.

use thiserror::Error;

use crate::codec::{Reader, Writer};
use crate::store::Store;
use crate::types::{
    AlarmKind, DeleteRangeRequest, DeleteRangeResponse, KvError, PutRequest, PutResponse,
    TxnRequest, TxnResponse,
};
use crate::write::Write;

/// How deep Txns may nest in a command (etcd bounds a txn by its ops, 128 by default; the
/// depth is bounded here so decoding cannot recurse without end).
pub const TXN_DEPTH_MAX: usize = 64;

/// A change to the coordination store, as the leader proposes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Put.
    Put(PutRequest),
    /// DeleteRange.
    DeleteRange(DeleteRangeRequest),
    /// Txn.
    Txn(TxnRequest),
    /// Compact the history below `revision`.
    Compact {
        /// The revision.
        revision: i64,
    },
    /// LeaseGrant; the leader chose the id.
    LeaseGrant {
        /// The lease's id, never 0.
        id: i64,
        /// Its TTL in seconds.
        ttl: i64,
    },
    /// LeaseRevoke, or the leader's expiry of a lease.
    LeaseRevoke {
        /// The lease's id.
        id: i64,
    },
    /// The leader's record of what remains of leases' TTLs.
    LeaseCheckpoint {
        /// `(lease id, seconds remaining)`.
        remaining: Vec<(i64, i64)>,
    },
    /// Raises (`activate`) or clears an alarm of a member (etcd's Maintenance.Alarm). While a
    /// NOSPACE alarm is active, puts, lease grants and txns with a put are refused
    /// ([`KvError::NoSpace`]).
    Alarm {
        /// Raise, or clear.
        activate: bool,
        /// The etcd member id that raised it.
        member: u64,
        /// Which alarm.
        alarm: AlarmKind,
    },
    /// Maintenance.Defragment of one member's store: nothing for the store's state; the
    /// replica of `member` rewrites its file once it applied the entry ([`Store::defragment`]),
    /// in order with its applies.
    Defragment {
        /// The node whose store is rewritten.
        member: u64,
    },
}

/// What applying a [`Command`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A Put's.
    Put(PutResponse),
    /// A DeleteRange's.
    DeleteRange(DeleteRangeResponse),
    /// A Txn's.
    Txn(TxnResponse),
    /// A LeaseGrant's: the lease (its id chosen by the leader).
    LeaseGranted {
        /// The lease's id.
        id: i64,
        /// Its TTL in seconds.
        ttl: i64,
    },
    /// A Compact's, a LeaseRevoke's or a LeaseCheckpoint's: nothing but the store's revision
    /// after it.
    Done,
}

impl Store {
    /// Applies `command`: what every replica of the coordination group does with each entry.
    ///
    /// # Errors
    ///
    /// The [`KvError`] of the request, the same on every replica (the store is unchanged), or
    /// [`KvError::Storage`]: the store failed, the replica stops.
    pub fn apply(&mut self, command: &Command) -> Result<Reply, KvError> {
        self.write(None, |write| run(write, command))
    }

    /// Applies the Raft entry at `applied` (`(term, index)`): its command, or none for an
    /// entry without one (blank), which still moves [`Store::applied`]. One entry of
    /// [`Store::apply_batch`].
    ///
    /// # Errors
    ///
    /// As [`Store::apply`]; a refused command moves the position all the same.
    ///
    /// # Panics
    ///
    /// As [`Store::apply_batch`].
    pub fn apply_at(
        &mut self,
        command: Option<&Command>,
        applied: (u64, u64),
    ) -> Result<Reply, KvError> {
        let entry = command.map_or(Entry::Blank, Entry::Command);
        let (mut outcomes, _) = self.apply_batch(&[(entry, applied)])?;
        outcomes.pop().map_or(Ok(Reply::Done), |(reply, _)| reply)
    }
}

/// One Raft entry of the coordination group as the store applies it
/// ([`Store::apply_batch`]).
#[derive(Clone, Copy, Debug)]
pub enum Entry<'a> {
    /// A command.
    Command(&'a Command),
    /// The replicating group's membership, opaque here ([`Store::membership`]).
    Membership(&'a [u8]),
    /// An entry with nothing to apply (a new leader's first).
    Blank,
}

/// What one entry did: its reply (a refusal changed nothing) and the store's revision after it.
pub type EntryOutcome = (Result<Reply, KvError>, i64);

pub(crate) fn run(write: &mut Write<'_>, command: &Command) -> Result<Reply, KvError> {
    Ok(match command {
        Command::Put(put) => Reply::Put(write.put(put)?),
        Command::DeleteRange(delete) => Reply::DeleteRange(write.delete_range(delete)?),
        Command::Txn(txn) => Reply::Txn(write.txn(txn)?),
        Command::Compact { revision } => {
            write.compact(*revision)?;
            Reply::Done
        }
        Command::LeaseGrant { id, ttl } => {
            write.lease_grant(*id, *ttl)?;
            Reply::LeaseGranted { id: *id, ttl: *ttl }
        }
        Command::LeaseRevoke { id } => {
            write.lease_revoke(*id)?;
            Reply::Done
        }
        Command::LeaseCheckpoint { remaining } => {
            write.lease_checkpoint(remaining)?;
            Reply::Done
        }
        Command::Alarm { activate, member, alarm } => {
            write.alarm(*activate, *member, *alarm)?;
            Reply::Done
        }
        Command::Defragment { .. } => Reply::Done,
    })
}

/// Why a command's bytes do not decode.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The bytes end inside a field.
    #[error("the command ends inside a field")]
    Truncated,
    /// Bytes follow the command.
    #[error("{0} bytes follow the command")]
    Trailing(usize),
    /// A version this build does not know.
    #[error("command version {0} is not known")]
    UnknownVersion(u8),
    /// A kind, an op, an order or a target this version does not have.
    #[error("unknown {what} {value}")]
    Unknown {
        /// What was read.
        what: &'static str,
        /// Its value.
        value: u8,
    },
    /// Txns nested deeper than [`TXN_DEPTH_MAX`].
    #[error("txns nested deeper than {TXN_DEPTH_MAX}")]
    TooDeep,
    /// A field longer than its length prefix can say.
    #[error("a field of {0} bytes does not fit its length")]
    TooLong(usize),
}

const VERSION: u8 = 1;

const PUT: u8 = 1;
const DELETE_RANGE: u8 = 2;
const TXN: u8 = 3;
const COMPACT: u8 = 4;
const LEASE_GRANT: u8 = 5;
const LEASE_REVOKE: u8 = 6;
const LEASE_CHECKPOINT: u8 = 7;
const ALARM: u8 = 8;
const DEFRAGMENT: u8 = 9;

impl Command {
    /// The encoding (module docs).
    ///
    /// # Errors
    ///
    /// [`CodecError::TooLong`] for a key, value or list over `u32::MAX`.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut w = Writer(vec![VERSION]);
        match self {
            Command::Put(put) => {
                w.u8(PUT);
                w.put(put)?;
            }
            Command::DeleteRange(delete) => {
                w.u8(DELETE_RANGE);
                w.delete(delete)?;
            }
            Command::Txn(txn) => {
                w.u8(TXN);
                w.txn(txn)?;
            }
            Command::Compact { revision } => {
                w.u8(COMPACT);
                w.i64(*revision);
            }
            Command::LeaseGrant { id, ttl } => {
                w.u8(LEASE_GRANT);
                w.i64(*id);
                w.i64(*ttl);
            }
            Command::LeaseRevoke { id } => {
                w.u8(LEASE_REVOKE);
                w.i64(*id);
            }
            Command::LeaseCheckpoint { remaining } => {
                w.u8(LEASE_CHECKPOINT);
                w.count(remaining.len())?;
                for &(id, left) in remaining {
                    w.i64(id);
                    w.i64(left);
                }
            }
            Command::Alarm { activate, member, alarm } => {
                w.u8(ALARM);
                w.u8(u8::from(*activate));
                w.i64(member.cast_signed());
                w.u8(alarm.code());
            }
            Command::Defragment { member } => {
                w.u8(DEFRAGMENT);
                w.i64(member.cast_signed());
            }
        }
        Ok(w.0)
    }

    /// Decodes [`Command::encode`]'s bytes.
    ///
    /// # Errors
    ///
    /// [`CodecError`] for anything but one whole, well-formed command of a known version.
    pub fn decode(bytes: &[u8]) -> Result<Command, CodecError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(CodecError::UnknownVersion(version));
        }
        let command = match r.u8()? {
            PUT => Command::Put(r.put()?),
            DELETE_RANGE => Command::DeleteRange(r.delete()?),
            TXN => Command::Txn(r.txn(0)?),
            COMPACT => Command::Compact { revision: r.i64()? },
            LEASE_GRANT => Command::LeaseGrant { id: r.i64()?, ttl: r.i64()? },
            LEASE_REVOKE => Command::LeaseRevoke { id: r.i64()? },
            LEASE_CHECKPOINT => {
                let count = r.count(16)?;
                let mut remaining = Vec::with_capacity(count);
                for _ in 0..count {
                    remaining.push((r.i64()?, r.i64()?));
                }
                Command::LeaseCheckpoint { remaining }
            }
            ALARM => {
                let activate = match r.u8()? {
                    0 => false,
                    1 => true,
                    value => return Err(CodecError::Unknown { what: "alarm action", value }),
                };
                let member = r.i64()?.cast_unsigned();
                let code = r.u8()?;
                let alarm = AlarmKind::from_code(code)
                    .ok_or(CodecError::Unknown { what: "alarm", value: code })?;
                Command::Alarm { activate, member, alarm }
            }
            DEFRAGMENT => Command::Defragment { member: r.i64()?.cast_unsigned() },
            value => return Err(CodecError::Unknown { what: "command", value }),
        };
        match r.0.len() {
            0 => Ok(command),
            left => Err(CodecError::Trailing(left)),
        }
    }
}
