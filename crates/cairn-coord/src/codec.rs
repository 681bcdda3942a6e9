//! The encoding's building blocks, shared by [`crate::Command`]'s, [`crate::Reply`]'s and
//! [`crate::Forward`]'s: big-endian numbers, `u32`-prefixed bytes, counts checked against the
//! bytes left before anything is allocated, flags with unknown bits refused, and the requests
//! and values etcd's API names.

use crate::command::{CodecError, Reply, TXN_DEPTH_MAX};
use crate::types::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KeyValue,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder,
    SortTarget, TxnRequest, TxnResponse,
};

pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, value: u8) {
        self.0.push(value);
    }

    pub(crate) fn i64(&mut self, value: i64) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn count(&mut self, count: usize) -> Result<(), CodecError> {
        let count = u32::try_from(count).map_err(|_| CodecError::TooLong(count))?;
        self.0.extend_from_slice(&count.to_be_bytes());
        Ok(())
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        self.count(bytes.len())?;
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    pub(crate) fn flags(&mut self, flags: &[bool]) {
        let bits = flags.iter().enumerate().map(|(i, &set)| u8::from(set) << i);
        self.u8(bits.fold(0, |all, bit| all | bit));
    }

    pub(crate) fn put(&mut self, put: &PutRequest) -> Result<(), CodecError> {
        self.bytes(&put.key)?;
        self.bytes(&put.value)?;
        self.i64(put.lease);
        self.flags(&[put.prev_kv, put.ignore_value, put.ignore_lease]);
        Ok(())
    }

    pub(crate) fn delete(&mut self, delete: &DeleteRangeRequest) -> Result<(), CodecError> {
        self.bytes(&delete.key)?;
        self.bytes(&delete.range_end)?;
        self.flags(&[delete.prev_kv]);
        Ok(())
    }

    pub(crate) fn range(&mut self, range: &RangeRequest) -> Result<(), CodecError> {
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

    pub(crate) fn txn(&mut self, txn: &TxnRequest) -> Result<(), CodecError> {
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

    pub(crate) fn compare(&mut self, compare: &Compare) -> Result<(), CodecError> {
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

    pub(crate) fn op(&mut self, op: &RequestOp) -> Result<(), CodecError> {
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

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    pub(crate) fn take<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(CodecError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take::<1>()?[0])
    }

    pub(crate) fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    /// A count of items of at least `item_bytes` each, checked against the bytes left.
    pub(crate) fn count(&mut self, item_bytes: usize) -> Result<usize, CodecError> {
        let count = usize::try_from(u32::from_be_bytes(self.take()?)).unwrap_or(usize::MAX);
        if count.saturating_mul(item_bytes) > self.0.len() {
            return Err(CodecError::Truncated);
        }
        Ok(count)
    }

    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, CodecError> {
        let length = self.count(1)?;
        let (bytes, rest) = self.0.split_at(length);
        self.0 = rest;
        Ok(bytes.to_vec())
    }

    /// Flags of `N` bits; any other bit set is an error.
    pub(crate) fn flags<const N: usize>(&mut self) -> Result<[bool; N], CodecError> {
        let bits = self.u8()?;
        if bits >> N != 0 {
            return Err(CodecError::Unknown { what: "flags", value: bits });
        }
        Ok(std::array::from_fn(|i| bits & (1 << i) != 0))
    }

    pub(crate) fn put(&mut self) -> Result<PutRequest, CodecError> {
        let (key, value, lease) = (self.bytes()?, self.bytes()?, self.i64()?);
        let [prev_kv, ignore_value, ignore_lease] = self.flags()?;
        Ok(PutRequest { key, value, lease, prev_kv, ignore_value, ignore_lease })
    }

    pub(crate) fn delete(&mut self) -> Result<DeleteRangeRequest, CodecError> {
        let (key, range_end) = (self.bytes()?, self.bytes()?);
        let [prev_kv] = self.flags()?;
        Ok(DeleteRangeRequest { key, range_end, prev_kv })
    }

    pub(crate) fn range(&mut self) -> Result<RangeRequest, CodecError> {
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

    pub(crate) fn txn(&mut self, depth: usize) -> Result<TxnRequest, CodecError> {
        if depth >= TXN_DEPTH_MAX {
            return Err(CodecError::TooDeep);
        }
        // A compare is at least 18 bytes, an op at least 10.
        let compare = (0..self.count(18)?).map(|_| self.compare()).collect::<Result<_, _>>()?;
        let success = (0..self.count(10)?).map(|_| self.op(depth)).collect::<Result<_, _>>()?;
        let failure = (0..self.count(10)?).map(|_| self.op(depth)).collect::<Result<_, _>>()?;
        Ok(TxnRequest { compare, success, failure })
    }

    pub(crate) fn compare(&mut self) -> Result<Compare, CodecError> {
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

    pub(crate) fn op(&mut self, depth: usize) -> Result<RequestOp, CodecError> {
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

impl Writer {
    pub(crate) fn kv(&mut self, kv: &KeyValue) -> Result<(), CodecError> {
        self.bytes(&kv.key)?;
        for number in [kv.create_revision, kv.mod_revision, kv.version] {
            self.i64(number);
        }
        self.bytes(&kv.value)?;
        self.i64(kv.lease);
        Ok(())
    }

    pub(crate) fn kvs(&mut self, kvs: &[KeyValue]) -> Result<(), CodecError> {
        self.count(kvs.len())?;
        kvs.iter().try_for_each(|kv| self.kv(kv))
    }

    pub(crate) fn reply(&mut self, reply: &Reply) -> Result<(), CodecError> {
        match reply {
            Reply::Put(put) => {
                self.u8(1);
                self.kvs(put.prev_kv.as_slice())
            }
            Reply::DeleteRange(delete) => {
                self.u8(2);
                self.delete_response(delete)
            }
            Reply::Txn(txn) => {
                self.u8(3);
                self.txn_response(txn)
            }
            Reply::Done => {
                self.u8(4);
                Ok(())
            }
            Reply::LeaseGranted { id, ttl } => {
                self.u8(5);
                self.i64(*id);
                self.i64(*ttl);
                Ok(())
            }
        }
    }

    fn delete_response(&mut self, delete: &DeleteRangeResponse) -> Result<(), CodecError> {
        self.i64(delete.deleted);
        self.kvs(&delete.prev_kvs)
    }

    fn txn_response(&mut self, txn: &TxnResponse) -> Result<(), CodecError> {
        self.flags(&[txn.succeeded]);
        self.count(txn.responses.len())?;
        for response in &txn.responses {
            match response {
                ResponseOp::Range(range) => {
                    self.u8(0);
                    self.kvs(&range.kvs)?;
                    self.flags(&[range.more]);
                    self.i64(range.count);
                }
                ResponseOp::Put(put) => {
                    self.u8(1);
                    self.kvs(put.prev_kv.as_slice())?;
                }
                ResponseOp::DeleteRange(delete) => {
                    self.u8(2);
                    self.delete_response(delete)?;
                }
                ResponseOp::Txn(nested) => {
                    self.u8(3);
                    self.txn_response(nested)?;
                }
            }
        }
        Ok(())
    }
}

impl Reader<'_> {
    pub(crate) fn kv(&mut self) -> Result<KeyValue, CodecError> {
        Ok(KeyValue {
            key: self.bytes()?,
            create_revision: self.i64()?,
            mod_revision: self.i64()?,
            version: self.i64()?,
            value: self.bytes()?,
            lease: self.i64()?,
        })
    }

    /// A key-value is at least 40 bytes.
    pub(crate) fn kvs(&mut self) -> Result<Vec<KeyValue>, CodecError> {
        (0..self.count(40)?).map(|_| self.kv()).collect()
    }

    pub(crate) fn reply(&mut self) -> Result<Reply, CodecError> {
        Ok(match self.u8()? {
            1 => Reply::Put(PutResponse { prev_kv: self.optional_kv()? }),
            2 => Reply::DeleteRange(self.delete_response()?),
            3 => Reply::Txn(self.txn_response(0)?),
            4 => Reply::Done,
            5 => Reply::LeaseGranted { id: self.i64()?, ttl: self.i64()? },
            value => return Err(CodecError::Unknown { what: "reply", value }),
        })
    }

    fn optional_kv(&mut self) -> Result<Option<KeyValue>, CodecError> {
        let mut kvs = self.kvs()?;
        match kvs.len() {
            0 | 1 => Ok(kvs.pop()),
            _ => Err(CodecError::Unknown { what: "previous values of a put", value: 2 }),
        }
    }

    fn delete_response(&mut self) -> Result<DeleteRangeResponse, CodecError> {
        Ok(DeleteRangeResponse { deleted: self.i64()?, prev_kvs: self.kvs()? })
    }

    fn txn_response(&mut self, depth: usize) -> Result<TxnResponse, CodecError> {
        if depth >= TXN_DEPTH_MAX {
            return Err(CodecError::TooDeep);
        }
        let [succeeded] = self.flags()?;
        // A response is at least 5 bytes.
        let count = self.count(5)?;
        let mut responses = Vec::with_capacity(count);
        for _ in 0..count {
            responses.push(match self.u8()? {
                0 => {
                    let kvs = self.kvs()?;
                    let [more] = self.flags()?;
                    ResponseOp::Range(RangeResponse { kvs, more, count: self.i64()? })
                }
                1 => ResponseOp::Put(PutResponse { prev_kv: self.optional_kv()? }),
                2 => ResponseOp::DeleteRange(self.delete_response()?),
                3 => ResponseOp::Txn(self.txn_response(depth + 1)?),
                value => return Err(CodecError::Unknown { what: "txn response", value }),
            });
        }
        Ok(TxnResponse { succeeded, responses })
    }
}
