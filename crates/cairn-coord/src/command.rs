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

use crate::store::Store;
use crate::types::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KvError,
    PutRequest, PutResponse, RangeRequest, RequestOp, SortOrder, SortTarget, TxnRequest,
    TxnResponse,
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
    /// A Compact's, a LeaseGrant's, a LeaseRevoke's or a LeaseCheckpoint's: nothing but the
    /// store's revision after it.
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
    /// entry without one (blank, membership), which still moves [`Store::applied`]. The
    /// changes and the position are one redb transaction, committed without an fsync;
    /// [`Store::persist`] makes them durable.
    ///
    /// # Errors
    ///
    /// As [`Store::apply`]; a refused command moves the position all the same.
    ///
    /// # Panics
    ///
    /// If `applied` is not after the last applied position: Raft applies each entry once.
    pub fn apply_at(
        &mut self,
        command: Option<&Command>,
        applied: (u64, u64),
    ) -> Result<Reply, KvError> {
        self.write(Some(applied), |write| match command {
            Some(command) => run(write, command),
            None => Ok(Reply::Done),
        })
    }
}

fn run(write: &mut Write<'_>, command: &Command) -> Result<Reply, KvError> {
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
            Reply::Done
        }
        Command::LeaseRevoke { id } => {
            write.lease_revoke(*id)?;
            Reply::Done
        }
        Command::LeaseCheckpoint { remaining } => {
            write.lease_checkpoint(remaining)?;
            Reply::Done
        }
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
            value => return Err(CodecError::Unknown { what: "command", value }),
        };
        match r.0.len() {
            0 => Ok(command),
            left => Err(CodecError::Trailing(left)),
        }
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }

    fn i64(&mut self, value: i64) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }

    fn count(&mut self, count: usize) -> Result<(), CodecError> {
        let count = u32::try_from(count).map_err(|_| CodecError::TooLong(count))?;
        self.0.extend_from_slice(&count.to_be_bytes());
        Ok(())
    }

    fn bytes(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        self.count(bytes.len())?;
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn flags(&mut self, flags: &[bool]) {
        let bits = flags.iter().enumerate().map(|(i, &set)| u8::from(set) << i);
        self.u8(bits.fold(0, |all, bit| all | bit));
    }

    fn put(&mut self, put: &PutRequest) -> Result<(), CodecError> {
        self.bytes(&put.key)?;
        self.bytes(&put.value)?;
        self.i64(put.lease);
        self.flags(&[put.prev_kv, put.ignore_value, put.ignore_lease]);
        Ok(())
    }

    fn delete(&mut self, delete: &DeleteRangeRequest) -> Result<(), CodecError> {
        self.bytes(&delete.key)?;
        self.bytes(&delete.range_end)?;
        self.flags(&[delete.prev_kv]);
        Ok(())
    }

    fn range(&mut self, range: &RangeRequest) -> Result<(), CodecError> {
        self.bytes(&range.key)?;
        self.bytes(&range.range_end)?;
        self.i64(range.limit);
        self.i64(range.revision);
        self.u8(order_code(range.sort_order));
        self.u8(target_code(range.sort_target));
        self.flags(&[range.keys_only, range.count_only]);
        for bound in [
            range.min_mod_revision,
            range.max_mod_revision,
            range.min_create_revision,
            range.max_create_revision,
        ] {
            self.i64(bound);
        }
        Ok(())
    }

    fn txn(&mut self, txn: &TxnRequest) -> Result<(), CodecError> {
        self.count(txn.compare.len())?;
        for compare in &txn.compare {
            self.compare(compare)?;
        }
        for ops in [&txn.success, &txn.failure] {
            self.count(ops.len())?;
            for op in ops {
                self.op(op)?;
            }
        }
        Ok(())
    }

    fn compare(&mut self, compare: &Compare) -> Result<(), CodecError> {
        self.u8(match compare.result {
            CompareResult::Equal => 0,
            CompareResult::Greater => 1,
            CompareResult::Less => 2,
            CompareResult::NotEqual => 3,
        });
        let (code, number) = match &compare.target {
            CompareTarget::Version(v) => (0, *v),
            CompareTarget::Create(r) => (1, *r),
            CompareTarget::Mod(r) => (2, *r),
            CompareTarget::Value(_) => (3, 0),
            CompareTarget::Lease(l) => (4, *l),
        };
        self.u8(code);
        match &compare.target {
            CompareTarget::Value(value) => self.bytes(value)?,
            _ => self.i64(number),
        }
        self.bytes(&compare.key)?;
        self.bytes(&compare.range_end)
    }

    fn op(&mut self, op: &RequestOp) -> Result<(), CodecError> {
        let code = match op {
            RequestOp::Range(_) => 0,
            RequestOp::Put(_) => 1,
            RequestOp::DeleteRange(_) => 2,
            RequestOp::Txn(_) => 3,
        };
        self.u8(code);
        match op {
            RequestOp::Range(range) => self.range(range),
            RequestOp::Put(put) => self.put(put),
            RequestOp::DeleteRange(delete) => self.delete(delete),
            RequestOp::Txn(txn) => self.txn(txn),
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(CodecError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take::<1>()?[0])
    }

    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    /// A count of items of at least `item_bytes` each, checked against the bytes left.
    fn count(&mut self, item_bytes: usize) -> Result<usize, CodecError> {
        let count = usize::try_from(u32::from_be_bytes(self.take()?)).unwrap_or(usize::MAX);
        if count.saturating_mul(item_bytes) > self.0.len() {
            return Err(CodecError::Truncated);
        }
        Ok(count)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, CodecError> {
        let length = self.count(1)?;
        let (bytes, rest) = self.0.split_at(length);
        self.0 = rest;
        Ok(bytes.to_vec())
    }

    /// Flags of `N` bits; any other bit set is an error.
    fn flags<const N: usize>(&mut self) -> Result<[bool; N], CodecError> {
        let bits = self.u8()?;
        if bits >> N != 0 {
            return Err(CodecError::Unknown { what: "flags", value: bits });
        }
        Ok(std::array::from_fn(|i| bits & (1 << i) != 0))
    }

    fn put(&mut self) -> Result<PutRequest, CodecError> {
        let (key, value, lease) = (self.bytes()?, self.bytes()?, self.i64()?);
        let [prev_kv, ignore_value, ignore_lease] = self.flags()?;
        Ok(PutRequest { key, value, lease, prev_kv, ignore_value, ignore_lease })
    }

    fn delete(&mut self) -> Result<DeleteRangeRequest, CodecError> {
        let (key, range_end) = (self.bytes()?, self.bytes()?);
        let [prev_kv] = self.flags()?;
        Ok(DeleteRangeRequest { key, range_end, prev_kv })
    }

    fn range(&mut self) -> Result<RangeRequest, CodecError> {
        let (key, range_end, limit, revision) =
            (self.bytes()?, self.bytes()?, self.i64()?, self.i64()?);
        let sort_order = order_of(self.u8()?)?;
        let sort_target = target_of(self.u8()?)?;
        let [keys_only, count_only] = self.flags()?;
        Ok(RangeRequest {
            key,
            range_end,
            limit,
            revision,
            sort_order,
            sort_target,
            keys_only,
            count_only,
            min_mod_revision: self.i64()?,
            max_mod_revision: self.i64()?,
            min_create_revision: self.i64()?,
            max_create_revision: self.i64()?,
        })
    }

    fn txn(&mut self, depth: usize) -> Result<TxnRequest, CodecError> {
        if depth >= TXN_DEPTH_MAX {
            return Err(CodecError::TooDeep);
        }
        // A compare is at least 18 bytes, an op at least 10.
        let compare = (0..self.count(18)?).map(|_| self.compare()).collect::<Result<_, _>>()?;
        let success = (0..self.count(10)?).map(|_| self.op(depth)).collect::<Result<_, _>>()?;
        let failure = (0..self.count(10)?).map(|_| self.op(depth)).collect::<Result<_, _>>()?;
        Ok(TxnRequest { compare, success, failure })
    }

    fn compare(&mut self) -> Result<Compare, CodecError> {
        let result = match self.u8()? {
            0 => CompareResult::Equal,
            1 => CompareResult::Greater,
            2 => CompareResult::Less,
            3 => CompareResult::NotEqual,
            value => return Err(CodecError::Unknown { what: "compare result", value }),
        };
        let target = match self.u8()? {
            0 => CompareTarget::Version(self.i64()?),
            1 => CompareTarget::Create(self.i64()?),
            2 => CompareTarget::Mod(self.i64()?),
            3 => CompareTarget::Value(self.bytes()?),
            4 => CompareTarget::Lease(self.i64()?),
            value => return Err(CodecError::Unknown { what: "compare target", value }),
        };
        Ok(Compare { result, target, key: self.bytes()?, range_end: self.bytes()? })
    }

    fn op(&mut self, depth: usize) -> Result<RequestOp, CodecError> {
        Ok(match self.u8()? {
            0 => RequestOp::Range(self.range()?),
            1 => RequestOp::Put(self.put()?),
            2 => RequestOp::DeleteRange(self.delete()?),
            3 => RequestOp::Txn(self.txn(depth + 1)?),
            value => return Err(CodecError::Unknown { what: "txn op", value }),
        })
    }
}

fn order_code(order: SortOrder) -> u8 {
    match order {
        SortOrder::None => 0,
        SortOrder::Ascend => 1,
        SortOrder::Descend => 2,
    }
}

fn order_of(code: u8) -> Result<SortOrder, CodecError> {
    [SortOrder::None, SortOrder::Ascend, SortOrder::Descend]
        .into_iter()
        .find(|&order| order_code(order) == code)
        .ok_or(CodecError::Unknown { what: "sort order", value: code })
}

fn target_code(target: SortTarget) -> u8 {
    match target {
        SortTarget::Key => 0,
        SortTarget::Version => 1,
        SortTarget::Create => 2,
        SortTarget::Mod => 3,
        SortTarget::Value => 4,
    }
}

fn target_of(code: u8) -> Result<SortTarget, CodecError> {
    let targets = [
        SortTarget::Key,
        SortTarget::Version,
        SortTarget::Create,
        SortTarget::Mod,
        SortTarget::Value,
    ];
    targets
        .into_iter()
        .find(|&target| target_code(target) == code)
        .ok_or(CodecError::Unknown { what: "sort target", value: code })
}
