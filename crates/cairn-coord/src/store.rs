//! [`Store`]: etcd's MVCC key-value store (RFC 0009 §2) in a redb database, a file or memory.
//!
//! Every key keeps its changes by revision: a value, or a tombstone that ends its generation.
//! A read at revision R sees each key's last change at or before R. A write transaction takes
//! the next revision, whatever it changes (each change its own event, in order); a request
//! that changes nothing takes none. Compaction forgets what no read at or after its revision can
//! see. The tables are in `tables.rs`, reads in `read.rs`, writes in `write.rs`.
//!
//! Each batch of Raft entries is one redb write transaction committed without an fsync
//! (`Durability::None`), with the Raft position it applies through ([`Store::apply_batch`]);
//! [`Store::persist`] makes everything applied so far durable. After a crash the file opens as
//! of its last persist, position included, and the Raft log replays the rest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::backends::InMemoryBackend;
use redb::{
    BackendError, Builder, Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable,
    StorageBackend, Table, WriteTransaction,
};

use crate::command::{Entry, EntryOutcome, Reply, run};
use crate::read::Kv;
use crate::tables::{
    ALARMS, APPLIED_INDEX, APPLIED_TERM, COMPACTED, FORMAT, FORMAT_VERSION, GROUP, HISTORY, INDEX,
    LATEST, LEASE_KEYS, LEASES, MEMBERSHIP, META, REVISION,
};
use crate::types::{
    AlarmKind, Applied, Change, DeleteRangeRequest, DeleteRangeResponse, Event, KvError,
    PutRequest, PutResponse, RangeRequest, RangeResponse, StoreError, TxnRequest, TxnResponse,
};
use crate::write::{Write, lease_keys, read_revision};

/// A lease: its TTL, what remained of it at the last checkpoint, and its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The TTL it was granted with, in seconds.
    pub ttl: i64,
    /// Seconds left at the last checkpoint (the TTL until one).
    pub remaining: i64,
    /// The keys attached to it.
    pub keys: std::collections::BTreeSet<Vec<u8>>,
}

/// The keyspace, its history back to the compacted revision, the leases, and the Raft position
/// they are at, in one redb database. One writer (`&mut self`); reads take `&self` and run in
/// their own read transactions, also from other threads through [`Store::reader`].
pub struct Store {
    /// The database and its reads.
    reader: StoreReader,
    /// Where the file is (`None`: in memory).
    path: Option<PathBuf>,
    /// The in-memory backend, for its size (`None`: a file).
    memory: Option<Arc<InMemoryBackend>>,
    /// The head revision, as committed.
    revision: i64,
    /// The compacted revision, as committed.
    compacted: i64,
    /// The last applied Raft entry `(term, index)`, as committed.
    applied: Option<(u64, u64)>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("revision", &self.revision)
            .field("compacted", &self.compacted)
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

/// Where a store is: what a read transaction sees of its meta table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The head revision.
    pub revision: i64,
    /// The compacted revision (0: none).
    pub compacted: i64,
    /// The last applied Raft entry `(term, index)`, if any.
    pub applied: Option<(u64, u64)>,
}

impl Default for Store {
    fn default() -> Store {
        Store::new()
    }
}

/// Reads of a [`Store`] that may run beside its writer, on any thread: each call is one redb
/// read transaction, so it sees one committed state (its own head revision).
#[derive(Clone)]
pub struct StoreReader {
    db: Arc<Database>,
}

/// The in-memory backend, shared so that the store can tell its size.
#[derive(Debug)]
struct Memory(Arc<InMemoryBackend>);

impl StorageBackend for Memory {
    fn len(&self) -> Result<u64, BackendError> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        self.0.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        self.0.write(offset, data)
    }
}

impl Store {
    /// Opens the store in the redb file at `path`, creating it (empty, at revision 1) if it
    /// does not exist. A file left by a crash opens as of its last [`Store::persist`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the file cannot be opened, is damaged, is open elsewhere or
    /// holds another format.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Builder::new().create(path)?;
        Store::init(db, Some(path.to_path_buf()), None)
    }

    /// An empty store in memory (redb's in-memory backend), at revision 1.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if redb fails (it does not, short of memory).
    pub fn in_memory() -> Result<Store, StoreError> {
        let backend = Arc::new(InMemoryBackend::new());
        let db = Builder::new().create_with_backend(Memory(Arc::clone(&backend)))?;
        Store::init(db, None, Some(backend))
    }

    /// [`Store::in_memory`], for tests and tools.
    ///
    /// # Panics
    ///
    /// Never in practice: an in-memory database does no IO.
    #[must_use]
    pub fn new() -> Store {
        Store::in_memory().expect("an in-memory redb database opens: it does no IO")
    }

    /// Creates the tables of a new database, or checks the format of an existing one, and reads
    /// its position.
    fn init(
        db: Database,
        path: Option<PathBuf>,
        memory: Option<Arc<InMemoryBackend>>,
    ) -> Result<Store, StoreError> {
        let mut txn = db.begin_write()?;
        let format = {
            let mut meta = txn.open_table(META)?;
            let format = meta.get(FORMAT)?.map(|guard| guard.value());
            if format.is_none() {
                meta.insert(FORMAT, FORMAT_VERSION)?;
                meta.insert(REVISION, 1)?;
                meta.insert(COMPACTED, 0)?;
            }
            format
        };
        match format {
            None => {
                create_tables(&txn)?;
                txn.set_durability(Durability::Immediate)?;
                txn.commit()?;
            }
            Some(FORMAT_VERSION) => txn.abort()?,
            Some(other) => {
                return Err(StoreError::Storage(format!("unknown store format {other}")));
            }
        }
        let reader = StoreReader { db: Arc::new(db) };
        let txn = reader.db.begin_read()?;
        let Position { revision, compacted, applied } = read_meta(&txn)?;
        Ok(Store { reader, path, memory, revision, compacted, applied })
    }

    /// The database, for the snapshot's reads and restore's writes.
    pub(crate) fn database(&self) -> &Database {
        &self.reader.db
    }

    /// This store with its position read again from its database (after a restore filled it).
    pub(crate) fn reopened(mut self) -> Result<Store, StoreError> {
        let position = read_meta(&self.reader.db.begin_read()?)?;
        self.revision = position.revision;
        self.compacted = position.compacted;
        self.applied = position.applied;
        Ok(self)
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

    /// The last Raft entry applied, `(term, index)`, as committed (durable once persisted).
    #[must_use]
    pub fn applied(&self) -> Option<(u64, u64)> {
        self.applied
    }

    /// A handle for reads beside the writer, on other threads.
    #[must_use]
    pub fn reader(&self) -> StoreReader {
        self.reader.clone()
    }

    /// Range.
    ///
    /// # Errors
    ///
    /// [`KvError::Compacted`] or [`KvError::FutureRevision`] for a revision it cannot read at;
    /// [`KvError::Storage`].
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        self.reader.range(request)
    }

    /// The events of up to `limit` revisions after `revision`, in order, each its revision's
    /// changes (a revision is never split). Page by asking again after the last revision
    /// answered.
    ///
    /// # Errors
    ///
    /// [`KvError::Compacted`] if revisions after `revision` were compacted away;
    /// [`KvError::Storage`].
    pub fn events_after(
        &self,
        revision: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Vec<Event>)>, KvError> {
        self.reader.events_after(revision, limit)
    }

    /// The leases, by id, with their keys.
    ///
    /// # Errors
    ///
    /// [`KvError::Storage`].
    pub fn leases(&self) -> Result<BTreeMap<i64, Lease>, KvError> {
        self.reader.leases()
    }

    /// The active alarms, `(member, alarm)`, in order.
    ///
    /// # Errors
    ///
    /// [`KvError::Storage`].
    pub fn alarms(&self) -> Result<Vec<(u64, AlarmKind)>, KvError> {
        self.reader.alarms()
    }

    /// Put: a new revision.
    ///
    /// # Errors
    ///
    /// [`KvError::EmptyKey`], [`KvError::LeaseNotFound`], or [`KvError::KeyNotFound`] for
    /// `ignore_value`/`ignore_lease` on a missing key; [`KvError::Storage`].
    pub fn put(&mut self, request: &PutRequest) -> Result<PutResponse, KvError> {
        self.write(None, |write| write.put(request))
    }

    /// DeleteRange: a new revision if it deleted anything.
    ///
    /// # Errors
    ///
    /// [`KvError::EmptyKey`]; [`KvError::Storage`].
    pub fn delete_range(
        &mut self,
        request: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, KvError> {
        self.write(None, |write| write.delete_range(request))
    }

    /// Txn: the compares (of every nesting level) are evaluated first, against the current
    /// revision; then the chosen ops run in order at one new revision (if they write), each
    /// seeing the ones before.
    ///
    /// # Errors
    ///
    /// [`KvError::DuplicateKey`] if the request changes a key twice on one path, or the error
    /// of an op of the chosen path (checked before anything is written); [`KvError::Storage`].
    pub fn txn(&mut self, request: &TxnRequest) -> Result<TxnResponse, KvError> {
        self.write(None, |write| write.txn(request))
    }

    /// Compact: forgets the history below `revision`, keeping each key's last change at or
    /// before it unless that is a delete.
    ///
    /// # Errors
    ///
    /// [`KvError::Compacted`] if it is at or below the compacted revision,
    /// [`KvError::FutureRevision`] if above the current one; [`KvError::Storage`].
    pub fn compact(&mut self, revision: i64) -> Result<(), KvError> {
        self.write(None, |write| write.compact(revision))
    }

    /// LeaseGrant of `id` (chosen by the leader, never 0) for `ttl` seconds.
    ///
    /// # Errors
    ///
    /// [`KvError::LeaseExists`], [`KvError::BadTtl`]; [`KvError::Storage`].
    pub fn lease_grant(&mut self, id: i64, ttl: i64) -> Result<(), KvError> {
        self.write(None, |write| write.lease_grant(id, ttl))
    }

    /// LeaseRevoke (or expiry): the lease goes, and its keys with it, at one new revision.
    ///
    /// # Errors
    ///
    /// [`KvError::LeaseNotFound`]; [`KvError::Storage`].
    pub fn lease_revoke(&mut self, id: i64) -> Result<(), KvError> {
        self.write(None, |write| write.lease_revoke(id))
    }

    /// Records what remains of leases' TTLs (the leader's checkpoint); unknown ids are skipped.
    ///
    /// # Errors
    ///
    /// [`KvError::Storage`].
    pub fn lease_checkpoint(&mut self, remaining: &[(i64, i64)]) -> Result<(), KvError> {
        self.write(None, |write| write.lease_checkpoint(remaining))
    }

    /// The head as committed: where the next transaction starts.
    fn head(&self) -> Head {
        Head { revision: self.revision, compacted: self.compacted, applied: self.applied }
    }

    /// A write transaction that commits without an fsync.
    fn begin(&self) -> Result<WriteTransaction, KvError> {
        let mut txn = self.reader.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        Ok(txn)
    }

    /// Commits `txn` with `head` recorded in the meta table, and takes `head` as the store's.
    fn commit(&mut self, txn: WriteTransaction, head: Head) -> Result<(), KvError> {
        write_meta(&mut txn.open_table(META)?, head.revision, head.compacted, head.applied)?;
        txn.commit()?;
        (self.revision, self.compacted, self.applied) =
            (head.revision, head.compacted, head.applied);
        Ok(())
    }

    /// Runs `request` in one write transaction, committed without an fsync together with the
    /// new position `applied` (if given). A refused request changes nothing but the position.
    pub(crate) fn write<T>(
        &mut self,
        applied: Option<(u64, u64)>,
        request: impl FnOnce(&mut Write<'_>) -> Result<T, KvError>,
    ) -> Result<T, KvError> {
        let mut head = self.head();
        head.advance(applied);
        let txn = self.begin()?;
        let (answer, _) = run_in(&txn, &mut head, request)?;
        if answer.is_err() && applied.is_none() {
            txn.abort()?;
            return answer;
        }
        self.commit(txn, head)?;
        answer
    }

    /// Applies Raft entries, each at its position `(term, index)`, in order, in one write
    /// transaction committed without an fsync ([`Store::persist`] makes it durable): each
    /// entry's outcome (a refused command changed nothing, and moves the position all the
    /// same) and the store's revision after it, and every revision the entries made, with its
    /// events (each with `prev_kv` where the key existed).
    ///
    /// # Errors
    ///
    /// [`KvError::Storage`]: nothing of the batch was applied, and the replica stops.
    ///
    /// # Panics
    ///
    /// If the positions do not follow the last applied one, in order: Raft applies each entry
    /// once.
    pub fn apply_batch(
        &mut self,
        entries: &[(Entry<'_>, (u64, u64))],
    ) -> Result<(Vec<EntryOutcome>, Vec<Applied>), KvError> {
        let mut head = self.head();
        let txn = self.begin()?;
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut made = Vec::new();
        for &(entry, position) in entries {
            head.advance(Some(position));
            let reply = match entry {
                Entry::Command(command) => {
                    let (reply, applied) = run_in(&txn, &mut head, |write| run(write, command))?;
                    made.extend(applied);
                    reply
                }
                Entry::Membership(membership) => {
                    txn.open_table(GROUP)?.insert(MEMBERSHIP, membership)?;
                    Ok(Reply::Done)
                }
                Entry::Blank => Ok(Reply::Done),
            };
            outcomes.push((reply, head.revision));
        }
        self.commit(txn, head)?;
        Ok((outcomes, made))
    }

    /// Records the replicating group's `membership` (opaque here), applied at `applied`: a
    /// restart finds the membership as of the applied position, never ahead of it or behind
    /// it. One entry of [`Store::apply_batch`].
    ///
    /// # Errors
    ///
    /// [`KvError::Storage`].
    ///
    /// # Panics
    ///
    /// As [`Store::apply_batch`].
    pub fn apply_membership(
        &mut self,
        membership: &[u8],
        applied: (u64, u64),
    ) -> Result<(), KvError> {
        self.apply_batch(&[(Entry::Membership(membership), applied)]).map(|_| ())
    }

    /// The replicating group's membership as last recorded ([`Store::apply_membership`]).
    ///
    /// # Errors
    ///
    /// [`KvError::Storage`].
    pub fn membership(&self) -> Result<Option<Vec<u8>>, KvError> {
        let txn = self.reader.db.begin_read()?;
        let table = match txn.open_table(GROUP) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        Ok(table.get(MEMBERSHIP)?.map(|guard| guard.value().to_vec()))
    }

    /// Makes everything applied so far durable: one fsynced commit (with redb's quick repair,
    /// so that a reopen after a crash does not walk the whole file). The caller calls it every
    /// 100 ms or 10,000 entries, and purges its Raft log only up to [`Store::applied`] as of
    /// the last persist.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`]: the store is as of its last persist, and the replica stops.
    pub fn persist(&mut self) -> Result<(), StoreError> {
        let mut txn = self.reader.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.set_quick_repair(true);
        txn.commit()?;
        Ok(())
    }

    /// The store's file (`None`: in memory).
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The size of the store's file in bytes (of its memory, in memory): the quota's measure
    /// and etcd's `Status.db_size`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the file cannot be read.
    pub fn size_bytes(&self) -> Result<u64, StoreError> {
        match (&self.path, &self.memory) {
            (Some(path), _) => Ok(std::fs::metadata(path)?.len()),
            (None, Some(memory)) => {
                memory.len().map_err(|error| StoreError::Storage(error.to_string()))
            }
            (None, None) => Err(StoreError::Storage("a store without a backend".to_string())),
        }
    }
}

/// The store's head inside a write transaction: what it will commit.
#[derive(Clone, Copy)]
struct Head {
    revision: i64,
    compacted: i64,
    applied: Option<(u64, u64)>,
}

impl Head {
    /// Moves the position to `applied` (if given).
    ///
    /// # Panics
    ///
    /// Unless `applied` is after the position: Raft applies each entry once, in order.
    fn advance(&mut self, applied: Option<(u64, u64)>) {
        if let Some(position) = applied {
            assert!(
                self.applied.is_none_or(|last| position > last),
                "raft entries are applied once, in order: {position:?} after {:?}",
                self.applied
            );
            self.applied = Some(position);
        }
    }
}

/// Runs `request` in `txn` at the revision after `head`, which takes it if the request changed
/// anything: its answer (a refusal wrote nothing: every check runs first) and the revision it
/// made, with its events.
fn run_in<T>(
    txn: &WriteTransaction,
    head: &mut Head,
    request: impl FnOnce(&mut Write<'_>) -> Result<T, KvError>,
) -> Result<(Result<T, KvError>, Option<Applied>), KvError> {
    let mut write = Write::open(txn, head.revision, head.compacted)?;
    let answer = request(&mut write);
    match answer {
        Err(KvError::Storage(message)) => Err(KvError::Storage(message)),
        Err(refusal) => {
            debug_assert!(!write.changed(), "a refused request wrote: {refusal:?}");
            Ok((Err(refusal), None))
        }
        Ok(answer) => {
            head.compacted = write.compacted;
            let made = write.made()?;
            if let Some(applied) = &made {
                head.revision = applied.revision;
            }
            Ok((Ok(answer), made))
        }
    }
}

/// Creates every table, so that read transactions find them.
fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(HISTORY)?;
    txn.open_table(INDEX)?;
    txn.open_table(LATEST)?;
    txn.open_table(LEASES)?;
    txn.open_table(LEASE_KEYS)?;
    txn.open_table(ALARMS)?;
    Ok(())
}

/// The revision, compacted revision and applied position a transaction sees.
pub(crate) fn read_meta(txn: &ReadTransaction) -> Result<Position, KvError> {
    let meta = txn.open_table(META)?;
    let get = |name: &str| -> Result<Option<u64>, KvError> {
        Ok(meta.get(name)?.map(|guard| guard.value()))
    };
    let missing = || KvError::Storage("the store's meta table lacks its revision".to_string());
    let revision = get(REVISION)?.ok_or_else(missing)?.cast_signed();
    let compacted = get(COMPACTED)?.ok_or_else(missing)?.cast_signed();
    let applied = match (get(APPLIED_TERM)?, get(APPLIED_INDEX)?) {
        (Some(term), Some(index)) => Some((term, index)),
        _ => None,
    };
    Ok(Position { revision, compacted, applied })
}

fn write_meta(
    meta: &mut Table<'_, &'static str, u64>,
    revision: i64,
    compacted: i64,
    applied: Option<(u64, u64)>,
) -> Result<(), KvError> {
    meta.insert(REVISION, revision.cast_unsigned())?;
    meta.insert(COMPACTED, compacted.cast_unsigned())?;
    if let Some((term, index)) = applied {
        meta.insert(APPLIED_TERM, term)?;
        meta.insert(APPLIED_INDEX, index)?;
    }
    Ok(())
}

impl StoreReader {
    /// The database, for the snapshot's reads.
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// Range, at the head of the state this call sees.
    ///
    /// # Errors
    ///
    /// As [`Store::range`].
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        self.range_at_head(request).map(|(response, _)| response)
    }

    /// Range, and the head revision of the state it read (etcd's header revision: a watch
    /// from the revision after it misses nothing the read did not see).
    ///
    /// # Errors
    ///
    /// As [`Store::range`].
    pub fn range_at_head(&self, request: &RangeRequest) -> Result<(RangeResponse, i64), KvError> {
        let txn = self.db.begin_read()?;
        let position = read_meta(&txn)?;
        let head = position.revision;
        let revision = read_revision(request.revision, head, position.compacted)?;
        Ok((open_kv(&txn)?.range_at(request, revision, head)?, head))
    }

    /// The events of up to `limit` revisions after `revision`.
    ///
    /// # Errors
    ///
    /// As [`Store::events_after`].
    pub fn events_after(
        &self,
        revision: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Vec<Event>)>, KvError> {
        let txn = self.db.begin_read()?;
        if revision < read_meta(&txn)?.compacted {
            return Err(KvError::Compacted);
        }
        open_kv(&txn)?.events_after(revision, limit)
    }

    /// The active alarms, `(member, alarm)`, in order.
    ///
    /// # Errors
    ///
    /// [`KvError::Storage`].
    pub fn alarms(&self) -> Result<Vec<(u64, AlarmKind)>, KvError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(ALARMS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        let mut alarms = Vec::new();
        for entry in table.range(..)? {
            let (member, code) = entry?.0.value();
            let alarm = AlarmKind::from_code(code)
                .ok_or_else(|| KvError::Storage(format!("an alarm of unknown kind {code}")))?;
            alarms.push((member, alarm));
        }
        Ok(alarms)
    }

    /// The leases, by id, with their keys.
    ///
    /// # Errors
    ///
    /// [`KvError::Storage`].
    pub fn leases(&self) -> Result<BTreeMap<i64, Lease>, KvError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LEASES)?;
        let keys = txn.open_table(LEASE_KEYS)?;
        let mut leases = BTreeMap::new();
        for entry in table.range(..)? {
            let (id, lease) = entry?;
            let (id, (ttl, remaining)) = (id.value(), lease.value());
            leases.insert(id, Lease { ttl, remaining, keys: lease_keys(&keys, id)? });
        }
        Ok(leases)
    }

    /// Every change the history holds up to `revision` (0: the head), in (revision, sub)
    /// order, with the position it was read at: what etcd's HashKV hashes.
    ///
    /// # Errors
    ///
    /// [`KvError::Compacted`] or [`KvError::FutureRevision`] for a revision it cannot read at;
    /// [`KvError::Storage`].
    pub fn changes(&self, revision: i64) -> Result<(Vec<Change>, Position), KvError> {
        let txn = self.db.begin_read()?;
        let position = read_meta(&txn)?;
        let revision = read_revision(revision, position.revision, position.compacted)?;
        Ok((open_kv(&txn)?.changes(revision)?, position))
    }

    /// The head revision, the compacted revision and the applied position, as committed.
    ///
    /// # Errors
    ///
    /// [`KvError::Storage`].
    pub fn position(&self) -> Result<Position, KvError> {
        read_meta(&self.db.begin_read()?)
    }
}

type ReadKv = Kv<
    redb::ReadOnlyTable<crate::tables::Rev, &'static [u8]>,
    redb::ReadOnlyTable<crate::tables::IndexKey, crate::tables::IndexValue>,
    redb::ReadOnlyTable<&'static [u8], crate::tables::Latest>,
>;

fn open_kv(txn: &ReadTransaction) -> Result<ReadKv, KvError> {
    Ok(Kv {
        history: txn.open_table(HISTORY)?,
        index: txn.open_table(INDEX)?,
        latest: txn.open_table(LATEST)?,
    })
}
