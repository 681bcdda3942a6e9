//! [`Store`]: etcd's MVCC key-value store (RFC 0009 §2), in memory.
//!
//! Every key keeps its changes by revision: a value, or a tombstone that ends its generation.
//! A read at revision R sees each key's last change at or before R. A write transaction takes
//! the next revision, whatever it changes (each change its own event, in order); a request
//! that changes nothing takes none. Compaction forgets what no read at or after its revision can
//! see.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Bound, RangeBounds};

use crate::types::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, Event,
    EventKind, KeyValue, KvError, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse,
};

/// One change of a key: its value from `revision` on, or none (deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Change {
    revision: i64,
    kv: Option<KeyValue>,
}

/// A lease: its TTL, what remained of it at the last checkpoint, and its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The TTL it was granted with, in seconds.
    pub ttl: i64,
    /// Seconds left at the last checkpoint (the TTL until one).
    pub remaining: i64,
    /// The keys attached to it.
    pub keys: BTreeSet<Vec<u8>>,
}

/// The keyspace, its history back to the compacted revision, and the leases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store {
    revision: i64,
    compacted: i64,
    keys: BTreeMap<Vec<u8>, Vec<Change>>,
    events: BTreeMap<i64, Vec<Event>>,
    leases: BTreeMap<i64, Lease>,
}

/// A key range as etcd names one: `range_end` empty for `key` alone, `[0]` for every key from
/// `key` on (and `key` `[0]` too: every key), else `[key, range_end)`.
fn bounds<'a>(key: &'a [u8], range_end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    match range_end {
        [] => (Bound::Included(key), Bound::Included(key)),
        [0] => (Bound::Included(key), Bound::Unbounded),
        end if end <= key => (Bound::Excluded(key), Bound::Excluded(key)),
        end => (Bound::Included(key), Bound::Excluded(end)),
    }
}

impl Store {
    /// An empty store at revision 1 (etcd's first revision; the first write makes 2).
    #[must_use]
    pub fn new() -> Store {
        Store { revision: 1, ..Store::default() }
    }

    /// The current revision.
    #[must_use]
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The compacted revision: reads below it are refused (0: none compacted).
    #[must_use]
    pub fn compacted(&self) -> i64 {
        self.compacted
    }

    /// The keys of `[key, range_end)` at `revision` (etcd's range rules), each its last change
    /// at or before it, in key order.
    fn at<'a>(
        &'a self,
        key: &'a [u8],
        range_end: &'a [u8],
        revision: i64,
    ) -> impl Iterator<Item = &'a KeyValue> + 'a {
        let empty = matches!(bounds(key, range_end), (Bound::Excluded(_), Bound::Excluded(_)));
        let range =
            if empty { None } else { Some(self.keys.range::<[u8], _>(bounds(key, range_end))) };
        range.into_iter().flatten().filter_map(move |(_, changes)| {
            let seen = changes.partition_point(|c| c.revision <= revision);
            changes[..seen].last().and_then(|c| c.kv.as_ref())
        })
    }

    /// The revision a read of `revision` reads at (0: the current one).
    fn read_revision(&self, revision: i64) -> Result<i64, KvError> {
        match revision {
            r if r <= 0 => Ok(self.revision),
            r if r < self.compacted => Err(KvError::Compacted),
            r if r > self.revision => Err(KvError::FutureRevision),
            r => Ok(r),
        }
    }

    /// Range.
    ///
    /// # Errors
    ///
    /// [`KvError::Compacted`] or [`KvError::FutureRevision`] for a revision it cannot read at.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        let revision = self.read_revision(request.revision)?;
        Ok(self.range_at(request, revision))
    }

    fn range_at(&self, request: &RangeRequest, revision: i64) -> RangeResponse {
        let within = |value: i64, min: i64, max: i64| {
            (min == 0 || value >= min) && (max == 0 || value <= max)
        };
        let mut kvs: Vec<KeyValue> = self
            .at(&request.key, &request.range_end, revision)
            .filter(|kv| {
                within(kv.mod_revision, request.min_mod_revision, request.max_mod_revision)
            })
            .filter(|kv| {
                within(kv.create_revision, request.min_create_revision, request.max_create_revision)
            })
            .cloned()
            .collect();
        let count = i64::try_from(kvs.len()).unwrap_or(i64::MAX);
        sort(&mut kvs, request.sort_order, request.sort_target);
        let limit = usize::try_from(request.limit).unwrap_or(0);
        let more = limit > 0 && kvs.len() > limit;
        if more {
            kvs.truncate(limit);
        }
        if request.count_only {
            kvs.clear();
        } else if request.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value.clear());
        }
        RangeResponse { kvs, more, count }
    }

    /// Put: a new revision.
    ///
    /// # Errors
    ///
    /// [`KvError::EmptyKey`], [`KvError::LeaseNotFound`], or [`KvError::KeyNotFound`] for
    /// `ignore_value`/`ignore_lease` on a missing key.
    pub fn put(&mut self, request: &PutRequest) -> Result<PutResponse, KvError> {
        self.check_put(request, self.revision)?;
        let mut write = self.begin();
        let answer = write.put(request);
        write.commit();
        Ok(answer)
    }

    /// DeleteRange: a new revision if it deleted anything.
    ///
    /// # Errors
    ///
    /// [`KvError::EmptyKey`].
    pub fn delete_range(
        &mut self,
        request: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, KvError> {
        if request.key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        let mut write = self.begin();
        let answer = write.delete_range(request);
        write.commit();
        Ok(answer)
    }

    /// Txn: the compares (of every nesting level) are evaluated first, against the current
    /// revision; then the chosen ops run in order at one new revision (if they write), each
    /// seeing the ones before.
    ///
    /// # Errors
    ///
    /// [`KvError::DuplicateKey`] if the request changes a key twice on one path, or the error
    /// of an op of the chosen path (checked before anything is written).
    pub fn txn(&mut self, request: &TxnRequest) -> Result<TxnResponse, KvError> {
        check_duplicates(request)?;
        let path = self.choose(request);
        self.check_path(request, &path, &mut 0)?;
        let mut write = self.begin();
        let answer = write.txn(request, &path, &mut 0);
        write.commit();
        Ok(answer)
    }

    /// Each nested Txn's choice, depth first, against the current revision.
    fn choose(&self, request: &TxnRequest) -> Vec<bool> {
        let mut path = Vec::new();
        self.choose_into(request, &mut path);
        path
    }

    fn choose_into(&self, request: &TxnRequest, path: &mut Vec<bool>) {
        let succeeded = request.compare.iter().all(|c| self.holds(c));
        path.push(succeeded);
        for op in branch(request, succeeded) {
            if let RequestOp::Txn(nested) = op {
                self.choose_into(nested, path);
            }
        }
    }

    fn check_path(
        &self,
        request: &TxnRequest,
        path: &[bool],
        at: &mut usize,
    ) -> Result<(), KvError> {
        let succeeded = path[*at];
        *at += 1;
        for op in branch(request, succeeded) {
            match op {
                RequestOp::Range(r) => {
                    self.read_revision(r.revision)?;
                }
                RequestOp::Put(put) => self.check_put(put, self.revision)?,
                RequestOp::DeleteRange(d) if d.key.is_empty() => return Err(KvError::EmptyKey),
                RequestOp::DeleteRange(_) => {}
                RequestOp::Txn(nested) => self.check_path(nested, path, at)?,
            }
        }
        Ok(())
    }

    fn check_put(&self, request: &PutRequest, revision: i64) -> Result<(), KvError> {
        if request.key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        if request.lease != 0 && !request.ignore_lease && !self.leases.contains_key(&request.lease)
        {
            return Err(KvError::LeaseNotFound);
        }
        let exists = self.at(&request.key, &[], revision).next().is_some();
        if (request.ignore_value || request.ignore_lease) && !exists {
            return Err(KvError::KeyNotFound);
        }
        Ok(())
    }

    /// Whether every key of the compare's range meets it (a range without keys compares as
    /// one missing key: version, revisions and lease 0, and no value to equal anything).
    fn holds(&self, compare: &Compare) -> bool {
        let mut keys = self.at(&compare.key, &compare.range_end, self.revision).peekable();
        if keys.peek().is_none() {
            return !matches!(compare.target, CompareTarget::Value(_))
                && meets(compare, &KeyValue::default());
        }
        keys.all(|kv| meets(compare, kv))
    }

    /// Compact: forgets the history below `revision`.
    ///
    /// # Errors
    ///
    /// [`KvError::Compacted`] if it is at or below the compacted revision,
    /// [`KvError::FutureRevision`] if above the current one.
    pub fn compact(&mut self, revision: i64) -> Result<(), KvError> {
        if revision <= self.compacted {
            return Err(KvError::Compacted);
        }
        if revision > self.revision {
            return Err(KvError::FutureRevision);
        }
        self.keys.retain(|_, changes| {
            let seen = changes.partition_point(|c| c.revision <= revision);
            // The last change at or before the revision stays, unless it is a tombstone.
            let keep_from = seen.saturating_sub(1);
            changes.drain(..keep_from);
            if changes.first().is_some_and(|c| c.revision <= revision && c.kv.is_none()) {
                changes.remove(0);
            }
            !changes.is_empty()
        });
        self.events = self.events.split_off(&(revision + 1));
        self.compacted = revision;
        Ok(())
    }

    /// The events of the revisions after `revision`, in order, each its revision's changes.
    ///
    /// # Errors
    ///
    /// [`KvError::Compacted`] if revisions after `revision` were compacted away.
    pub fn events_after(&self, revision: i64) -> Result<Vec<(i64, &[Event])>, KvError> {
        if revision < self.compacted {
            return Err(KvError::Compacted);
        }
        let after = self.events.range(revision + 1..);
        Ok(after.map(|(r, events)| (*r, events.as_slice())).collect())
    }

    /// LeaseGrant of `id` (chosen by the leader, never 0) for `ttl` seconds.
    ///
    /// # Errors
    ///
    /// [`KvError::LeaseExists`], [`KvError::BadTtl`].
    pub fn lease_grant(&mut self, id: i64, ttl: i64) -> Result<(), KvError> {
        if ttl <= 0 || id == 0 {
            return Err(KvError::BadTtl);
        }
        if self.leases.contains_key(&id) {
            return Err(KvError::LeaseExists);
        }
        self.leases.insert(id, Lease { ttl, remaining: ttl, keys: BTreeSet::new() });
        Ok(())
    }

    /// LeaseRevoke (or expiry): the lease goes, and its keys with it, at one new revision.
    ///
    /// # Errors
    ///
    /// [`KvError::LeaseNotFound`].
    pub fn lease_revoke(&mut self, id: i64) -> Result<(), KvError> {
        let lease = self.leases.get(&id).ok_or(KvError::LeaseNotFound)?;
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        let mut write = self.begin();
        for key in keys {
            write.delete_range(&DeleteRangeRequest { key, range_end: Vec::new(), prev_kv: false });
        }
        write.commit();
        self.leases.remove(&id);
        Ok(())
    }

    /// Records what remains of leases' TTLs (the leader's checkpoint).
    pub fn lease_checkpoint(&mut self, remaining: &[(i64, i64)]) {
        for &(id, left) in remaining {
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.remaining = left;
            }
        }
    }

    /// The leases, by id.
    #[must_use]
    pub fn leases(&self) -> &BTreeMap<i64, Lease> {
        &self.leases
    }

    fn begin(&mut self) -> Write<'_> {
        let revision = self.revision + 1;
        Write { store: self, revision, events: Vec::new() }
    }
}

/// The ops of the branch a Txn took.
fn branch(request: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded { &request.success } else { &request.failure }
}

fn meets(compare: &Compare, kv: &KeyValue) -> bool {
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

fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    if order == SortOrder::None && target == SortTarget::Key {
        return;
    }
    kvs.sort_by(|a, b| {
        let ordering = match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        if order == SortOrder::Descend { ordering.reverse() } else { ordering }
    });
}

/// etcd's rule (its `checkIntervals`): within a branch of a Txn, nested ones included, no key
/// is put twice and no put falls in a deleted range; a nested Txn's two branches may put the
/// same key, as only one of them runs.
fn check_duplicates(request: &TxnRequest) -> Result<(), KvError> {
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
    deletes.iter().any(|(start, end)| bounds(start, end).contains(key))
}

/// A write transaction at the next revision; it takes it only if it changed anything.
struct Write<'a> {
    store: &'a mut Store,
    revision: i64,
    events: Vec<Event>,
}

impl Write<'_> {
    /// The key's value as this transaction sees it (its own changes included).
    fn current(&self, key: &[u8]) -> Option<KeyValue> {
        self.store.at(key, &[], self.revision).next().cloned()
    }

    fn put(&mut self, request: &PutRequest) -> PutResponse {
        let previous = self.current(&request.key);
        let old = previous.clone().unwrap_or_default();
        let lease = if request.ignore_lease { old.lease } else { request.lease };
        let kv = KeyValue {
            key: request.key.clone(),
            create_revision: if previous.is_some() { old.create_revision } else { self.revision },
            mod_revision: self.revision,
            version: old.version + 1,
            value: if request.ignore_value { old.value.clone() } else { request.value.clone() },
            lease,
        };
        self.attach(&request.key, old.lease, lease);
        self.change(&request.key, Some(kv.clone()));
        self.events.push(Event { kind: EventKind::Put, kv, prev_kv: previous.clone() });
        PutResponse { prev_kv: if request.prev_kv { previous } else { None } }
    }

    fn delete_range(&mut self, request: &DeleteRangeRequest) -> DeleteRangeResponse {
        let doomed: Vec<KeyValue> =
            self.store.at(&request.key, &request.range_end, self.revision).cloned().collect();
        for kv in &doomed {
            self.attach(&kv.key, kv.lease, 0);
            self.change(&kv.key, None);
            let gone = KeyValue {
                key: kv.key.clone(),
                mod_revision: self.revision,
                ..KeyValue::default()
            };
            self.events.push(Event {
                kind: EventKind::Delete,
                kv: gone,
                prev_kv: Some(kv.clone()),
            });
        }
        DeleteRangeResponse {
            deleted: i64::try_from(doomed.len()).unwrap_or(i64::MAX),
            prev_kvs: if request.prev_kv { doomed } else { Vec::new() },
        }
    }

    fn txn(&mut self, request: &TxnRequest, path: &[bool], at: &mut usize) -> TxnResponse {
        let succeeded = path[*at];
        *at += 1;
        let mut responses = Vec::new();
        for op in branch(request, succeeded) {
            responses.push(match op {
                RequestOp::Range(r) => {
                    let revision = if r.revision <= 0 { self.revision } else { r.revision };
                    ResponseOp::Range(self.store.range_at(r, revision))
                }
                RequestOp::Put(put) => ResponseOp::Put(self.put(put)),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete_range(d)),
                RequestOp::Txn(nested) => ResponseOp::Txn(self.txn(nested, path, at)),
            });
        }
        TxnResponse { succeeded, responses }
    }

    /// Moves `key` from lease `old` to lease `new` (0: none).
    fn attach(&mut self, key: &[u8], old: i64, new: i64) {
        if let Some(lease) = self.store.leases.get_mut(&old) {
            lease.keys.remove(key);
        }
        if let Some(lease) = self.store.leases.get_mut(&new) {
            lease.keys.insert(key.to_vec());
        }
    }

    fn change(&mut self, key: &[u8], kv: Option<KeyValue>) {
        let changes = self.store.keys.entry(key.to_vec()).or_default();
        let change = Change { revision: self.revision, kv };
        match changes.last_mut() {
            Some(last) if last.revision == self.revision => *last = change,
            _ => changes.push(change),
        }
    }

    /// Takes the revision if anything changed.
    fn commit(self) {
        if !self.events.is_empty() {
            self.store.revision = self.revision;
            self.store.events.insert(self.revision, self.events);
        }
    }
}
