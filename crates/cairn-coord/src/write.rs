//! [`Write`]: one request applied in a redb write transaction at the next revision, which it
//! takes only if it changed anything. Every check runs before the first change, so a refused
//! request wrote nothing.

use std::collections::BTreeSet;
use std::ops::Bound;

use redb::{ReadableTable, Table, WriteTransaction};

use crate::read::Kv;
use crate::rules::{branch, check_duplicates, meets};
use crate::tables::{
    ALARMS, HISTORY, INDEX, IndexKey, IndexValue, LATEST, LEASE_KEYS, LEASES, Latest, Record, Rev,
};
use crate::types::{
    AlarmKind, Applied, Compare, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, EventKind,
    KeyValue, KvError, PutRequest, PutResponse, RangeRequest, RequestOp, ResponseOp, TxnRequest,
    TxnResponse,
};

type WriteKv<'t> = Kv<
    Table<'t, Rev, &'static [u8]>,
    Table<'t, IndexKey, IndexValue>,
    Table<'t, &'static [u8], Latest>,
>;

/// The tables of a write transaction and what the request did so far.
pub(crate) struct Write<'t> {
    kv: WriteKv<'t>,
    leases: Table<'t, i64, (i64, i64)>,
    lease_keys: Table<'t, (i64, &'static [u8]), ()>,
    alarms: Table<'t, (u64, u8), ()>,
    /// The store's revision before the request; its changes are at `head + 1`.
    head: i64,
    /// The compacted revision, moved by a Compact.
    pub(crate) compacted: i64,
    /// The next change's sub-revision: how many changes the request made.
    sub: u32,
}

impl<'t> Write<'t> {
    pub(crate) fn open(
        txn: &'t WriteTransaction,
        head: i64,
        compacted: i64,
    ) -> Result<Self, KvError> {
        let kv = Kv {
            history: txn.open_table(HISTORY)?,
            index: txn.open_table(INDEX)?,
            latest: txn.open_table(LATEST)?,
        };
        let leases = txn.open_table(LEASES)?;
        let lease_keys = txn.open_table(LEASE_KEYS)?;
        let alarms = txn.open_table(ALARMS)?;
        Ok(Write { kv, leases, lease_keys, alarms, head, compacted, sub: 0 })
    }

    /// Whether the request changed a key (and so takes the next revision).
    pub(crate) fn changed(&self) -> bool {
        self.sub > 0
    }

    fn revision(&self) -> i64 {
        self.head + 1
    }

    /// The revision the request made, with its events, if it changed anything.
    pub(crate) fn made(&self) -> Result<Option<Applied>, KvError> {
        if !self.changed() {
            return Ok(None);
        }
        let mut made = self.kv.events_after(self.head, 1)?;
        Ok(made.pop().map(|(revision, events)| Applied { revision, events }))
    }

    fn lease_exists(&self, id: i64) -> Result<bool, KvError> {
        Ok(id != 0 && self.leases.get(id)?.is_some())
    }

    /// Put's checks, against the head.
    fn check_put(&self, request: &PutRequest) -> Result<(), KvError> {
        if request.key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        if request.lease != 0 && !request.ignore_lease && !self.lease_exists(request.lease)? {
            return Err(KvError::LeaseNotFound);
        }
        let exists = self.kv.head(&request.key)?.is_some();
        if (request.ignore_value || request.ignore_lease) && !exists {
            return Err(KvError::KeyNotFound);
        }
        Ok(())
    }

    /// Put.
    pub(crate) fn put(&mut self, request: &PutRequest) -> Result<PutResponse, KvError> {
        self.check_space()?;
        self.check_put(request)?;
        self.put_checked(request)
    }

    fn put_checked(&mut self, request: &PutRequest) -> Result<PutResponse, KvError> {
        let head = self.kv.head(&request.key)?;
        let needs_old = request.prev_kv || request.ignore_value;
        let previous =
            if needs_old && head.is_some() { self.kv.head_kv(&request.key)? } else { None };
        let (old_create, old_version, old_lease) = head.map_or((0, 0, 0), |l| (l.2, l.3, l.4));
        let revision = self.revision();
        let lease = if request.ignore_lease { old_lease } else { request.lease };
        let value = match (&previous, request.ignore_value) {
            (Some(old), true) => old.value.clone(),
            _ => request.value.clone(),
        };
        let create_revision = if head.is_some() { old_create } else { revision };
        let kv = KeyValue {
            key: request.key.clone(),
            create_revision,
            mod_revision: revision,
            version: old_version + 1,
            value,
            lease,
        };
        self.attach(&request.key, old_lease, lease)?;
        let prev = head.map(|l| (l.0, l.1));
        let sub = self.record(&Record { kind: EventKind::Put, prev, kv })?;
        let latest = (revision, sub, create_revision, old_version + 1, lease);
        self.kv.latest.insert(request.key.as_slice(), latest)?;
        Ok(PutResponse { prev_kv: if request.prev_kv { previous } else { None } })
    }

    /// Appends `record` to the history and the index at the next sub-revision.
    fn record(&mut self, record: &Record) -> Result<u32, KvError> {
        let (revision, sub) = (self.revision(), self.sub);
        self.kv.history.insert((revision, sub), record.encode().as_slice())?;
        let deleted = record.kind == EventKind::Delete;
        self.kv.index.insert((record.kv.key.as_slice(), revision), (sub, deleted))?;
        self.sub += 1;
        Ok(sub)
    }

    /// DeleteRange.
    pub(crate) fn delete_range(
        &mut self,
        request: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, KvError> {
        if request.key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        let (key, end) = (&request.key, &request.range_end);
        let doomed = self.kv.kvs_at(key, end, self.revision(), self.revision())?;
        for kv in &doomed {
            self.delete_key(kv)?;
        }
        Ok(DeleteRangeResponse {
            deleted: i64::try_from(doomed.len()).unwrap_or(i64::MAX),
            prev_kvs: if request.prev_kv { doomed } else { Vec::new() },
        })
    }

    fn delete_key(&mut self, kv: &KeyValue) -> Result<(), KvError> {
        let prev = self.kv.head(&kv.key)?.map(|l| (l.0, l.1));
        self.attach(&kv.key, kv.lease, 0)?;
        let gone =
            KeyValue { key: kv.key.clone(), mod_revision: self.revision(), ..KeyValue::default() };
        self.record(&Record { kind: EventKind::Delete, prev, kv: gone })?;
        self.kv.latest.remove(kv.key.as_slice())?;
        Ok(())
    }

    /// Moves `key` from lease `old` to lease `new` (0: none).
    fn attach(&mut self, key: &[u8], old: i64, new: i64) -> Result<(), KvError> {
        if old == new {
            return Ok(());
        }
        if old != 0 {
            self.lease_keys.remove((old, key))?;
        }
        if self.lease_exists(new)? {
            self.lease_keys.insert((new, key), ())?;
        }
        Ok(())
    }

    /// Txn: the compares of every nesting level first, against the head; then the chosen ops.
    pub(crate) fn txn(&mut self, request: &TxnRequest) -> Result<TxnResponse, KvError> {
        if puts(request) {
            self.check_space()?;
        }
        check_duplicates(request)?;
        let mut path = Vec::new();
        self.choose(request, &mut path)?;
        self.check_path(request, &path, &mut 0)?;
        self.run_txn(request, &path, &mut 0)
    }

    fn choose(&self, request: &TxnRequest, path: &mut Vec<bool>) -> Result<(), KvError> {
        let mut succeeded = true;
        for compare in &request.compare {
            if !self.holds(compare)? {
                succeeded = false;
                break;
            }
        }
        path.push(succeeded);
        for op in branch(request, succeeded) {
            if let RequestOp::Txn(nested) = op {
                self.choose(nested, path)?;
            }
        }
        Ok(())
    }

    /// Whether every key of the compare's range meets it (a range without keys compares as
    /// one missing key: version, revisions and lease 0, and no value to equal anything).
    fn holds(&self, compare: &Compare) -> Result<bool, KvError> {
        let head = self.head;
        let kvs = self.kv.kvs_at(&compare.key, &compare.range_end, head + 1, head + 1)?;
        if kvs.is_empty() {
            return Ok(!matches!(compare.target, CompareTarget::Value(_))
                && meets(compare, &KeyValue::default()));
        }
        Ok(kvs.iter().all(|kv| meets(compare, kv)))
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
                    read_revision(r.revision, self.head, self.compacted)?;
                }
                RequestOp::Put(put) => self.check_put(put)?,
                RequestOp::DeleteRange(d) if d.key.is_empty() => return Err(KvError::EmptyKey),
                RequestOp::DeleteRange(_) => {}
                RequestOp::Txn(nested) => self.check_path(nested, path, at)?,
            }
        }
        Ok(())
    }

    fn run_txn(
        &mut self,
        request: &TxnRequest,
        path: &[bool],
        at: &mut usize,
    ) -> Result<TxnResponse, KvError> {
        let succeeded = path[*at];
        *at += 1;
        let mut responses = Vec::new();
        for op in branch(request, succeeded) {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.txn_range(r)?),
                RequestOp::Put(put) => ResponseOp::Put(self.put_checked(put)?),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete_range(d)?),
                RequestOp::Txn(nested) => ResponseOp::Txn(self.run_txn(nested, path, at)?),
            });
        }
        Ok(TxnResponse { succeeded, responses })
    }

    /// A Range inside a Txn: at the head it sees the Txn's own writes.
    fn txn_range(&self, request: &RangeRequest) -> Result<crate::types::RangeResponse, KvError> {
        let latest = self.revision();
        let revision = if request.revision <= 0 { latest } else { request.revision };
        self.kv.range_at(request, revision, latest)
    }

    /// Compact: forgets the history below `revision` (module docs of `tables.rs`).
    pub(crate) fn compact(&mut self, revision: i64) -> Result<(), KvError> {
        if revision <= self.compacted {
            return Err(KvError::Compacted);
        }
        if revision > self.head {
            return Err(KvError::FutureRevision);
        }
        // Only keys changed since the last compaction have changes it may forget: every other
        // key has at most one left at or before it, a value, which stays.
        let mut keys = BTreeSet::new();
        for entry in self.kv.history.range((self.compacted + 1, 0)..=(revision, u32::MAX))? {
            let (rev, bytes) = entry?;
            keys.insert(Record::decode(bytes.value(), rev.value().0)?.kv.key);
        }
        for key in &keys {
            self.compact_key(key, revision)?;
        }
        self.compacted = revision;
        Ok(())
    }

    /// Removes `key`'s changes at or before `revision` but the last, and the last too if it
    /// is a delete.
    fn compact_key(&mut self, key: &[u8], revision: i64) -> Result<(), KvError> {
        let mut changes: Vec<(i64, u32, bool)> = Vec::new();
        for entry in self.kv.index.range((key, i64::MIN)..=(key, revision))? {
            let (k, v) = entry?;
            let (sub, deleted) = v.value();
            changes.push((k.value().1, sub, deleted));
        }
        let keep = match changes.last() {
            Some(&(_, _, false)) => changes.len() - 1,
            _ => changes.len(),
        };
        for &(at, sub, _) in &changes[..keep] {
            self.kv.index.remove((key, at))?;
            self.kv.history.remove((at, sub))?;
        }
        Ok(())
    }

    /// LeaseGrant.
    pub(crate) fn lease_grant(&mut self, id: i64, ttl: i64) -> Result<(), KvError> {
        if ttl <= 0 || id == 0 {
            return Err(KvError::BadTtl);
        }
        self.check_space()?;
        if self.leases.get(id)?.is_some() {
            return Err(KvError::LeaseExists);
        }
        self.leases.insert(id, (ttl, ttl))?;
        Ok(())
    }

    /// LeaseRevoke: the lease and its keys, at one revision.
    pub(crate) fn lease_revoke(&mut self, id: i64) -> Result<(), KvError> {
        if self.leases.get(id)?.is_none() {
            return Err(KvError::LeaseNotFound);
        }
        for key in lease_keys(&self.lease_keys, id)? {
            if let Some(kv) = self.kv.head_kv(&key)? {
                self.delete_key(&kv)?;
            }
        }
        self.leases.remove(id)?;
        Ok(())
    }

    /// [`KvError::NoSpace`] while a NOSPACE alarm is active (of any member): what may grow
    /// the store is refused (etcd's capped applier: puts, lease grants, and txns with a put on
    /// either branch).
    fn check_space(&self) -> Result<(), KvError> {
        for entry in self.alarms.range(..)? {
            if entry?.0.value().1 == AlarmKind::NoSpace.code() {
                return Err(KvError::NoSpace);
            }
        }
        Ok(())
    }

    /// Raises or clears `member`'s `alarm` (clearing one not raised does nothing).
    pub(crate) fn alarm(
        &mut self,
        activate: bool,
        member: u64,
        alarm: AlarmKind,
    ) -> Result<(), KvError> {
        if activate {
            self.alarms.insert((member, alarm.code()), ())?;
        } else {
            self.alarms.remove((member, alarm.code()))?;
        }
        Ok(())
    }

    /// LeaseCheckpoint.
    pub(crate) fn lease_checkpoint(&mut self, remaining: &[(i64, i64)]) -> Result<(), KvError> {
        for &(id, left) in remaining {
            let ttl = self.leases.get(id)?.map(|guard| guard.value().0);
            if let Some(ttl) = ttl {
                self.leases.insert(id, (ttl, left))?;
            }
        }
        Ok(())
    }
}

/// Whether `txn` puts on either branch, at any depth.
fn puts(txn: &TxnRequest) -> bool {
    txn.success.iter().chain(&txn.failure).any(|op| match op {
        RequestOp::Put(_) => true,
        RequestOp::Txn(nested) => puts(nested),
        RequestOp::Range(_) | RequestOp::DeleteRange(_) => false,
    })
}

/// The keys attached to lease `id`.
pub(crate) fn lease_keys(
    table: &impl ReadableTable<(i64, &'static [u8]), ()>,
    id: i64,
) -> Result<BTreeSet<Vec<u8>>, KvError> {
    let mut keys = BTreeSet::new();
    let empty: &[u8] = &[];
    let end = match id.checked_add(1) {
        Some(next) => Bound::Excluded((next, empty)),
        None => Bound::Unbounded,
    };
    for entry in table.range((Bound::Included((id, empty)), end))? {
        keys.insert(entry?.0.value().1.to_vec());
    }
    Ok(keys)
}

/// The revision a read of `revision` reads at (0: the head).
pub(crate) fn read_revision(revision: i64, head: i64, compacted: i64) -> Result<i64, KvError> {
    match revision {
        r if r <= 0 => Ok(head),
        r if r < compacted => Err(KvError::Compacted),
        r if r > head => Err(KvError::FutureRevision),
        r => Ok(r),
    }
}
