//! etcd's rules that need no storage: key ranges, compares, sorting, and the duplicate-key
//! rule of a Txn.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::{Bound, RangeBounds};

use crate::types::{
    Compare, CompareResult, CompareTarget, KeyValue, KvError, RequestOp, SortOrder, SortTarget,
    TxnRequest,
};

/// A key range as etcd names one: `range_end` empty for `key` alone, `[0]` for every key from
/// `key` on (and `key` `[0]` too: every key), else `[key, range_end)`; an end at or before the
/// key names nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Span<'a> {
    /// No key.
    Empty,
    /// One key.
    One(&'a [u8]),
    /// Every key from the first on.
    From(&'a [u8]),
    /// `[start, end)`.
    Between(&'a [u8], &'a [u8]),
}

impl<'a> Span<'a> {
    pub(crate) fn of(key: &'a [u8], range_end: &'a [u8]) -> Span<'a> {
        match range_end {
            [] => Span::One(key),
            [0] => Span::From(key),
            end if end <= key => Span::Empty,
            end => Span::Between(key, end),
        }
    }

    /// The span as bounds over keys.
    pub(crate) fn bounds(self) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
        match self {
            Span::Empty => (Bound::Excluded(&[]), Bound::Excluded(&[])),
            Span::One(key) => (Bound::Included(key), Bound::Included(key)),
            Span::From(key) => (Bound::Included(key), Bound::Unbounded),
            Span::Between(start, end) => (Bound::Included(start), Bound::Excluded(end)),
        }
    }

    fn contains(self, key: &[u8]) -> bool {
        self != Span::Empty && self.bounds().contains(key)
    }
}

/// The ops of the branch a Txn took.
pub(crate) fn branch(request: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded { &request.success } else { &request.failure }
}

pub(crate) fn meets(compare: &Compare, kv: &KeyValue) -> bool {
    let ordering = match &compare.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(r) => kv.create_revision.cmp(r),
        CompareTarget::Mod(r) => kv.mod_revision.cmp(r),
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
        CompareTarget::Lease(l) => kv.lease.cmp(l),
    };
    match compare.result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
        CompareResult::NotEqual => ordering.is_ne(),
    }
}

/// How `a` and `b` compare in a Range's order (`SortOrder::None` is ascending).
pub(crate) fn ordering(
    a: &KeyValue,
    b: &KeyValue,
    order: SortOrder,
    target: SortTarget,
) -> Ordering {
    let ordering = match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    if order == SortOrder::Descend { ordering.reverse() } else { ordering }
}

/// etcd's rule (its `checkIntervals`): within a branch of a Txn, nested ones included, no key
/// is put twice and no put falls in a deleted range; a nested Txn's two branches may put the
/// same key, as only one of them runs.
pub(crate) fn check_duplicates(request: &TxnRequest) -> Result<(), KvError> {
    intervals(&request.success)?;
    intervals(&request.failure)?;
    Ok(())
}

type Deleted = Vec<(Vec<u8>, Vec<u8>)>;

/// The keys `ops` put and the ranges they delete, or the duplicate.
fn intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Deleted), KvError> {
    let mut deletes: Deleted = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) => Some((d.key.clone(), d.range_end.clone())),
            _ => None,
        })
        .collect();
    let mut puts = BTreeSet::new();
    for op in ops {
        let RequestOp::Txn(nested) = op else { continue };
        let (then_puts, then_deletes) = intervals(&nested.success)?;
        let (else_puts, else_deletes) = intervals(&nested.failure)?;
        for key in &then_puts {
            if puts.contains(key) || deleted(&deletes, key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in &else_puts {
            let clash = puts.contains(key) && !then_puts.contains(key);
            if clash || deleted(&deletes, key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        deletes.extend(then_deletes);
        deletes.extend(else_deletes);
    }
    for op in ops {
        let RequestOp::Put(put) = op else { continue };
        if puts.contains(&put.key) || deleted(&deletes, &put.key) {
            return Err(KvError::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, deletes))
}

fn deleted(deletes: &Deleted, key: &[u8]) -> bool {
    deletes.iter().any(|(start, end)| Span::of(start, end).contains(key))
}
