//! The store's snapshot: its whole state in a stream of our own format, for a Raft follower
//! that fell behind the purged log (and etcd's Maintenance.Snapshot), written from one read
//! transaction while applies go on, and [`Store::restore`], which builds a new store from one.
//!
//! ```text
//! magic: 8 bytes "cairn-kv", version: u8 (= 1)
//! revision: i64, compacted: i64, applied: u8 (0 none, 1 some), term: u64, index: u64
//! items, each tag: u8
//!   3 alarm   member: u64, alarm: u8                       (ascending, before the leases)
//!   1 lease   id: i64, ttl: i64, remaining: i64            (ascending ids)
//!   2 change  main: i64, sub: u32, length: u32, record     (ascending (main, sub))
//!   0 end     crc32c: u32 of every byte before it
//! ```
//!
//! Only the alarms, the history and the leases travel: the index, `latest` and the lease's keys are
//! rebuilt from them, as each change is replayed in order. Big-endian. A restore writes a new
//! file beside the target, checks the checksum before anything else sees it, and renames it
//! over the target (durably), so a cut or damaged snapshot leaves the target as it was.

use std::io::{self, Read};
use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, WriteTransaction};

use crate::store::{Position, Store, StoreReader};
use crate::tables::{
    ALARMS, APPLIED_INDEX, APPLIED_TERM, COMPACTED, GROUP, HISTORY, INDEX, LATEST, LEASE_KEYS,
    LEASES, MEMBERSHIP, META, REVISION, Record,
};
use crate::types::{EventKind, StoreError};

const MAGIC: &[u8; 8] = b"cairn-kv";
const VERSION: u8 = 1;
const END: u8 = 0;
const LEASE: u8 = 1;
const CHANGE: u8 = 2;
const ALARM: u8 = 3;

/// The longest record a snapshot may hold (a key and a value, each far below etcd's 1.5 MiB
/// request limit): a longer length is damage, refused before allocating.
const RECORD_BYTES_MAX: usize = 64 << 20;

/// How many items a restore loads per redb transaction.
const RESTORE_BATCH_ITEMS: usize = 10_000;

/// One item of a snapshot.
enum Item {
    Alarm { member: u64, alarm: u8 },
    Lease { id: i64, ttl: i64, remaining: i64 },
    Change { main: i64, sub: u32, record: Vec<u8> },
}

/// A writer that checksums what passes through.
struct Summing<'a, W> {
    out: &'a mut W,
    crc: u32,
}

impl<W: io::Write> Summing<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.out.write_all(bytes)
    }
}

/// A reader that checksums what passes through.
struct Checked<'a, R> {
    input: &'a mut R,
    crc: u32,
}

impl<R: Read> Checked<'_, R> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut bytes = [0; N];
        self.input.read_exact(&mut bytes).map_err(read_error)?;
        self.crc = crc32c::crc32c_append(self.crc, &bytes);
        Ok(bytes)
    }

    fn i64(&mut self) -> Result<i64, StoreError> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    fn bytes(&mut self, length: usize) -> Result<Vec<u8>, StoreError> {
        if length > RECORD_BYTES_MAX {
            return Err(damaged(format!("a record of {length} bytes")));
        }
        let mut bytes = Vec::new();
        let limit = u64::try_from(length).unwrap_or(u64::MAX);
        self.input.by_ref().take(limit).read_to_end(&mut bytes).map_err(read_error)?;
        if bytes.len() != length {
            return Err(damaged("the snapshot ends inside a record"));
        }
        self.crc = crc32c::crc32c_append(self.crc, &bytes);
        Ok(bytes)
    }
}

fn read_error(error: io::Error) -> StoreError {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        damaged("the snapshot ends early")
    } else {
        StoreError::Storage(format!("reading a snapshot: {error}"))
    }
}

fn damaged(why: impl Into<String>) -> StoreError {
    StoreError::Snapshot(why.into())
}

impl Store {
    /// Writes the store's snapshot (module docs) to `out`, from one read transaction: applies
    /// may go on meanwhile (through `&mut self` on another handle's thread, or afterwards).
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if redb or `out` fails.
    pub fn write_snapshot(&self, out: &mut impl io::Write) -> Result<(), StoreError> {
        self.reader().write_snapshot(out).map(drop)
    }

    /// [`Store::write_snapshot`] into memory.
    ///
    /// # Errors
    ///
    /// As [`Store::write_snapshot`].
    pub fn snapshot(&self) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::new();
        self.write_snapshot(&mut bytes)?;
        Ok(bytes)
    }

    /// Builds the store at `path` from a snapshot, as [`Store::restore_as_member`] without a
    /// membership.
    ///
    /// # Errors
    ///
    /// As [`Store::restore_as_member`].
    pub fn restore(path: &Path, input: &mut impl Read) -> Result<Store, StoreError> {
        Store::restore_as_member(path, input, None)
    }

    /// Builds the store at `path` from a snapshot: a new file beside it (`path` with
    /// `.restoring` appended), filled and checked, `membership` (if any) recorded as the
    /// replicating group's ([`Store::membership`]) in the durable commit of its position, then
    /// renamed over `path` and the directory synced (a crash leaves the old store or the whole
    /// new one). A store open on `path` keeps reading its old file until dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError::Snapshot`] for a cut, damaged or malformed snapshot (`path` unchanged),
    /// [`StoreError::Storage`] if redb or the file system fails.
    pub fn restore_as_member(
        path: &Path,
        input: &mut impl Read,
        membership: Option<&[u8]>,
    ) -> Result<Store, StoreError> {
        let mut name = path.as_os_str().to_owned();
        name.push(".restoring");
        let temporary = std::path::PathBuf::from(name);
        match std::fs::remove_file(&temporary) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error.into()),
            _ => {}
        }
        let built = Store::open(&temporary).and_then(|store| store.load(input, membership));
        match built {
            Ok(store) => drop(store),
            Err(error) => {
                let _ = std::fs::remove_file(&temporary);
                return Err(error);
            }
        }
        std::fs::rename(&temporary, path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Store::open(path)
    }

    /// Defragment (etcd's): rewrites the store compactly, giving the space compaction freed
    /// back to the file system. Everything applied is made durable, the store's snapshot is
    /// written beside its file (`.defragment` appended) and restored over it with its
    /// membership and position, as a snapshot install does; this store then works on the new
    /// file. Readers taken before keep reading the old one until dropped. The writer waits
    /// meanwhile (etcd's defragment blocks its member's writes too).
    ///
    /// # Errors
    ///
    /// As [`Store::restore_as_member`]; the store is unchanged but made durable.
    pub fn defragment(&mut self) -> Result<(), StoreError> {
        self.persist()?;
        let membership = self.membership().map_err(|e| StoreError::Storage(e.to_string()))?;
        let fresh = match self.path().map(Path::to_path_buf) {
            Some(path) => {
                let mut name = path.as_os_str().to_owned();
                name.push(".defragment");
                let snapshot = std::path::PathBuf::from(name);
                let written =
                    std::fs::File::create(&snapshot).map_err(StoreError::from).and_then(|file| {
                        let mut out = io::BufWriter::new(file);
                        self.write_snapshot(&mut out)?;
                        out.into_inner().map_err(|e| StoreError::from(e.into_error()))?;
                        Ok(())
                    });
                let restored = written.and_then(|()| {
                    let mut input = io::BufReader::new(std::fs::File::open(&snapshot)?);
                    Store::restore_as_member(&path, &mut input, membership.as_deref())
                });
                let _ = std::fs::remove_file(&snapshot);
                restored?
            }
            None => {
                Store::in_memory()?.load(&mut self.snapshot()?.as_slice(), membership.as_deref())?
            }
        };
        *self = fresh;
        Ok(())
    }

    /// Builds an in-memory store from a snapshot (tests, tools).
    ///
    /// # Errors
    ///
    /// As [`Store::restore`].
    pub fn restore_in_memory(input: &mut impl Read) -> Result<Store, StoreError> {
        Store::in_memory()?.load(input, None)
    }

    /// Fills this empty store from `input` (and `membership`), then reopens its position.
    fn load(self, input: &mut impl Read, membership: Option<&[u8]>) -> Result<Store, StoreError> {
        let mut r = Checked { input, crc: 0 };
        let position = read_header(&mut r)?;
        let mut last = Last::default();
        loop {
            let (items, ended) = read_items(&mut r, &mut last, position.revision)?;
            load_items(self.database(), &items)?;
            if ended {
                break;
            }
        }
        let crc = r.crc;
        let mut trailer = [0; 4];
        r.input.read_exact(&mut trailer).map_err(read_error)?;
        if u32::from_be_bytes(trailer) != crc {
            return Err(damaged("the checksum does not match"));
        }
        finish(self.database(), position, membership)?;
        self.reopened()
    }
}

impl StoreReader {
    /// Writes the store's snapshot (module docs) to `out` from one read transaction, beside the
    /// writer; returns the position it was written at (the one its header holds).
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if redb or `out` fails.
    pub fn write_snapshot(&self, out: &mut impl io::Write) -> Result<Position, StoreError> {
        let txn = self.database().begin_read()?;
        let position = crate::store::read_meta(&txn)?;
        let mut w = Summing { out, crc: 0 };
        w.put(MAGIC)?;
        w.put(&[VERSION])?;
        w.put(&position.revision.to_be_bytes())?;
        w.put(&position.compacted.to_be_bytes())?;
        let (flag, (term, index)) = match position.applied {
            Some(applied) => (1, applied),
            None => (0, (0, 0)),
        };
        w.put(&[flag])?;
        w.put(&term.to_be_bytes())?;
        w.put(&index.to_be_bytes())?;
        match txn.open_table(ALARMS) {
            Ok(alarms) => {
                for entry in alarms.range(..)? {
                    let (member, alarm) = entry?.0.value();
                    w.put(&[ALARM])?;
                    w.put(&member.to_be_bytes())?;
                    w.put(&[alarm])?;
                }
            }
            // A store made before alarms existed, never written since: none.
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(error) => return Err(error.into()),
        }
        for entry in txn.open_table(LEASES)?.range(..)? {
            let (id, lease) = entry?;
            let (ttl, remaining) = lease.value();
            w.put(&[LEASE])?;
            for field in [id.value(), ttl, remaining] {
                w.put(&field.to_be_bytes())?;
            }
        }
        for entry in txn.open_table(HISTORY)?.range(..)? {
            let (rev, record) = entry?;
            let ((main, sub), record) = (rev.value(), record.value());
            let length = u32::try_from(record.len())
                .map_err(|_| StoreError::Storage("a record over 4 GiB".to_string()))?;
            w.put(&[CHANGE])?;
            w.put(&main.to_be_bytes())?;
            w.put(&sub.to_be_bytes())?;
            w.put(&length.to_be_bytes())?;
            w.put(record)?;
        }
        w.put(&[END])?;
        let crc = w.crc;
        w.out.write_all(&crc.to_be_bytes())?;
        Ok(position)
    }
}

fn read_header(r: &mut Checked<'_, impl Read>) -> Result<Position, StoreError> {
    if &r.take::<8>()? != MAGIC {
        return Err(damaged("not a cairn-kv snapshot"));
    }
    let [version] = r.take::<1>()?;
    if version != VERSION {
        return Err(damaged(format!("snapshot version {version} is not known")));
    }
    let (revision, compacted) = (r.i64()?, r.i64()?);
    let [flag] = r.take::<1>()?;
    let (term, index) = (r.u64()?, r.u64()?);
    let applied = match flag {
        0 => None,
        1 => Some((term, index)),
        other => return Err(damaged(format!("applied flag {other}"))),
    };
    if revision < 1 || compacted < 0 || compacted > revision {
        return Err(damaged(format!("revision {revision}, compacted {compacted}")));
    }
    Ok(Position { revision, compacted, applied })
}

/// The last lease id and change read, which the next must follow.
#[derive(Default)]
struct Last {
    alarm: Option<(u64, u8)>,
    lease: Option<i64>,
    change: Option<(i64, u32)>,
}

/// Up to [`RESTORE_BATCH_ITEMS`] items, and whether the end was reached.
fn read_items(
    r: &mut Checked<'_, impl Read>,
    last: &mut Last,
    revision: i64,
) -> Result<(Vec<Item>, bool), StoreError> {
    let mut items = Vec::new();
    while items.len() < RESTORE_BATCH_ITEMS {
        let [tag] = r.take::<1>()?;
        let item = match tag {
            END => return Ok((items, true)),
            ALARM if last.lease.is_none() && last.change.is_none() => {
                let (member, [alarm]) = (r.u64()?, r.take::<1>()?);
                if crate::types::AlarmKind::from_code(alarm).is_none() {
                    return Err(damaged(format!("alarm kind {alarm}")));
                }
                if last.alarm.is_some_and(|before| (member, alarm) <= before) {
                    return Err(damaged(format!("alarm ({member}, {alarm}) out of order")));
                }
                last.alarm = Some((member, alarm));
                Item::Alarm { member, alarm }
            }
            LEASE if last.change.is_none() => {
                let (id, ttl, remaining) = (r.i64()?, r.i64()?, r.i64()?);
                if last.lease.is_some_and(|before| id <= before) {
                    return Err(damaged(format!("lease {id} out of order")));
                }
                last.lease = Some(id);
                Item::Lease { id, ttl, remaining }
            }
            CHANGE => {
                let (main, sub) = (r.i64()?, u32::from_be_bytes(r.take()?));
                let length = usize::try_from(u32::from_be_bytes(r.take()?)).unwrap_or(usize::MAX);
                let record = r.bytes(length)?;
                if last.change.is_some_and(|before| (main, sub) <= before) || main > revision {
                    return Err(damaged(format!("change ({main}, {sub}) out of order")));
                }
                last.change = Some((main, sub));
                Item::Change { main, sub, record }
            }
            other => return Err(damaged(format!("item tag {other}"))),
        };
        items.push(item);
    }
    Ok((items, false))
}

/// Loads items in one non-durable transaction: leases as they are, each change into the
/// history, the index and `latest`.
fn load_items(db: &Database, items: &[Item]) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::None)?;
    {
        let mut alarms = txn.open_table(ALARMS)?;
        let mut leases = txn.open_table(LEASES)?;
        let mut history = txn.open_table(HISTORY)?;
        let mut index = txn.open_table(INDEX)?;
        let mut latest = txn.open_table(LATEST)?;
        for item in items {
            match item {
                Item::Alarm { member, alarm } => {
                    alarms.insert((*member, *alarm), ())?;
                }
                Item::Lease { id, ttl, remaining } => {
                    leases.insert(*id, (*ttl, *remaining))?;
                }
                Item::Change { main, sub, record } => {
                    let decoded = Record::decode(record, *main)
                        .map_err(|_| damaged(format!("record ({main}, {sub})")))?;
                    let kv = &decoded.kv;
                    history.insert((*main, *sub), record.as_slice())?;
                    let deleted = decoded.kind == EventKind::Delete;
                    index.insert((kv.key.as_slice(), *main), (*sub, deleted))?;
                    if deleted {
                        latest.remove(kv.key.as_slice())?;
                    } else {
                        let head = (*main, *sub, kv.create_revision, kv.version, kv.lease);
                        latest.insert(kv.key.as_slice(), head)?;
                    }
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// The leases' keys (from `latest`), the position and the membership, committed durably.
fn finish(db: &Database, position: Position, membership: Option<&[u8]>) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    attach_keys(&txn)?;
    if let Some(membership) = membership {
        txn.open_table(GROUP)?.insert(MEMBERSHIP, membership)?;
    }
    {
        let mut meta = txn.open_table(META)?;
        meta.insert(REVISION, position.revision.cast_unsigned())?;
        meta.insert(COMPACTED, position.compacted.cast_unsigned())?;
        if let Some((term, index)) = position.applied {
            meta.insert(APPLIED_TERM, term)?;
            meta.insert(APPLIED_INDEX, index)?;
        }
    }
    txn.commit()?;
    Ok(())
}

fn attach_keys(txn: &WriteTransaction) -> Result<(), StoreError> {
    let latest = txn.open_table(LATEST)?;
    let leases = txn.open_table(LEASES)?;
    let mut lease_keys = txn.open_table(LEASE_KEYS)?;
    for entry in latest.range(..)? {
        let (key, head) = entry?;
        let lease = head.value().4;
        if lease != 0 && leases.get(lease)?.is_some() {
            lease_keys.insert((lease, key.value()), ())?;
        }
    }
    Ok(())
}
