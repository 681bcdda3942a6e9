//! The store's redb tables (RFC 0009 §2) and the encoding of a history record.
//!
//! ```text
//! history     (main revision, sub) → record          every change back to the compacted revision
//! index       (key, main revision) → (sub, deleted)  each key's changes, no values
//! latest      key → (mod, sub, create, version, lease)  the live keys at the head, no values
//! leases      id → (ttl, remaining)
//! lease_keys  (id, key) → ()                         the keys attached to each lease
//! meta        name → u64                             format, revision, compacted, applied
//! group       name → bytes                           the replicating group's own records
//!                                                    (its membership), opaque here
//! ```
//!
//! A value is stored once, in its history record; `latest` and `index` point at it. A change
//! costs one insert in each of `history`, `index` and `latest` (no list rewritten per key).
//!
//! ```text
//! record = kind: u8 (0 put, 1 delete), prev: u8 (0 none, 1 some) [main: i64, sub: u32],
//!          key_length: u32, key, then for a put: create: i64, version: i64, lease: i64, value
//! ```
//!
//! `prev` points at the key's previous change (always a put: a deleted key has no previous
//! value), which compaction keeps while a later event points at it (it is the key's last
//! change at or before the compacted revision). Big-endian.

use redb::TableDefinition;

use crate::types::{EventKind, KeyValue, KvError, StoreError};

/// A history key: `(main revision, sub-revision)`.
pub(crate) type Rev = (i64, u32);
/// An index key: `(key, main revision)`.
pub(crate) type IndexKey = (&'static [u8], i64);
/// An index value: `(sub-revision, whether the change deleted the key)`.
pub(crate) type IndexValue = (u32, bool);
/// A `latest` value: `(mod revision, sub-revision, create revision, version, lease)`.
pub(crate) type Latest = (i64, u32, i64, i64, i64);

pub(crate) const HISTORY: TableDefinition<Rev, &[u8]> = TableDefinition::new("history");
pub(crate) const INDEX: TableDefinition<IndexKey, IndexValue> = TableDefinition::new("index");
pub(crate) const LATEST: TableDefinition<&[u8], Latest> = TableDefinition::new("latest");
pub(crate) const LEASES: TableDefinition<i64, (i64, i64)> = TableDefinition::new("leases");
pub(crate) const LEASE_KEYS: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("lease_keys");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const GROUP: TableDefinition<&str, &[u8]> = TableDefinition::new("group");
/// The active alarms: `(member, alarm code)` (etcd's `AlarmMember`). Stores made before it
/// lack the table until their first write: a read finds none.
pub(crate) const ALARMS: TableDefinition<(u64, u8), ()> = TableDefinition::new("alarms");

/// The `group` entry of the replicating group's membership.
pub(crate) const MEMBERSHIP: &str = "membership";

/// The layout of the tables, in `meta`'s [`FORMAT`] entry.
pub(crate) const FORMAT_VERSION: u64 = 1;

pub(crate) const FORMAT: &str = "format";
pub(crate) const REVISION: &str = "revision";
pub(crate) const COMPACTED: &str = "compacted";
pub(crate) const APPLIED_TERM: &str = "applied_term";
pub(crate) const APPLIED_INDEX: &str = "applied_index";

/// One change of a key, as the history keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// A put (with the key's value after it) or a delete (`kv` holds only the key).
    pub(crate) kind: EventKind,
    /// The key's previous change, if the key existed before.
    pub(crate) prev: Option<Rev>,
    /// The key and, for a put, its value and metadata; `mod_revision` is not stored (it is the
    /// record's main revision).
    pub(crate) kv: KeyValue,
}

/// Why a record's bytes do not decode (a damaged file or snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadRecord;

impl Record {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let put = self.kind == EventKind::Put;
        let mut out = Vec::with_capacity(48 + self.kv.key.len() + self.kv.value.len());
        out.push(u8::from(!put));
        match self.prev {
            None => out.push(0),
            Some((main, sub)) => {
                out.push(1);
                out.extend_from_slice(&main.to_be_bytes());
                out.extend_from_slice(&sub.to_be_bytes());
            }
        }
        // Keys are bounded far below 4 GiB by the request limits; a longer one cannot be put.
        let key_length = u32::try_from(self.kv.key.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&key_length.to_be_bytes());
        out.extend_from_slice(&self.kv.key);
        if put {
            for field in [self.kv.create_revision, self.kv.version, self.kv.lease] {
                out.extend_from_slice(&field.to_be_bytes());
            }
            out.extend_from_slice(&self.kv.value);
        }
        out
    }

    /// Decodes [`Record::encode`]'s bytes, the record of revision `main`.
    pub(crate) fn decode(bytes: &[u8], main: i64) -> Result<Record, BadRecord> {
        let mut r = bytes;
        let kind = match take::<1>(&mut r)?[0] {
            0 => EventKind::Put,
            1 => EventKind::Delete,
            _ => return Err(BadRecord),
        };
        let prev = match take::<1>(&mut r)?[0] {
            0 => None,
            1 => Some((i64::from_be_bytes(take(&mut r)?), u32::from_be_bytes(take(&mut r)?))),
            _ => return Err(BadRecord),
        };
        let key_length =
            usize::try_from(u32::from_be_bytes(take(&mut r)?)).map_err(|_| BadRecord)?;
        let (key, rest) = r.split_at_checked(key_length).ok_or(BadRecord)?;
        r = rest;
        let mut kv = KeyValue { key: key.to_vec(), mod_revision: main, ..KeyValue::default() };
        if kind == EventKind::Put {
            kv.create_revision = i64::from_be_bytes(take(&mut r)?);
            kv.version = i64::from_be_bytes(take(&mut r)?);
            kv.lease = i64::from_be_bytes(take(&mut r)?);
            kv.value = r.to_vec();
        } else if !r.is_empty() {
            return Err(BadRecord);
        }
        Ok(Record { kind, prev, kv })
    }
}

/// redb's errors are storage failures, never refusals.
macro_rules! storage_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for KvError {
            fn from(error: $error) -> KvError {
                KvError::Storage(error.to_string())
            }
        }

        impl From<$error> for StoreError {
            fn from(error: $error) -> StoreError {
                StoreError::Storage(error.to_string())
            }
        }
    )*};
}

storage_errors!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError,
    redb::CompactionError,
    std::io::Error
);

impl From<BadRecord> for KvError {
    fn from(_: BadRecord) -> KvError {
        KvError::Storage("a damaged history record".to_string())
    }
}

fn take<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], BadRecord> {
    let (head, rest) = bytes.split_first_chunk::<N>().ok_or(BadRecord)?;
    *bytes = rest;
    Ok(*head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_decode_to_themselves_and_cut_ones_do_not() {
        let put = Record {
            kind: EventKind::Put,
            prev: Some((3, 1)),
            kv: KeyValue {
                key: b"k".to_vec(),
                create_revision: 2,
                mod_revision: 9,
                version: 4,
                value: b"value".to_vec(),
                lease: 7,
            },
        };
        let delete = Record {
            kind: EventKind::Delete,
            prev: None,
            kv: KeyValue { key: b"gone".to_vec(), mod_revision: 9, ..KeyValue::default() },
        };
        for record in [put, delete] {
            let bytes = record.encode();
            assert_eq!(Record::decode(&bytes, 9), Ok(record.clone()));
            assert_eq!(Record::decode(&bytes[..3], 9), Err(BadRecord));
        }
    }
}
