//! [`hash_kv`]: etcd's HashKV hash of the keyspace's history at a revision, so a cairn member's
//! hash compares with etcd's own for the same writes. Pure: the backend gives it the changes
//! its history holds.
//!
//! etcd's algorithm (`mvcc.kvHasher`): CRC-32 (Castagnoli) over the name of its key bucket,
//! then, in the order of the history (main revision, then sub-revision), each change's bucket
//! key (main revision and sub-revision as big-endian 8-byte integers joined by `_`, with a
//! trailing `t` for a deletion) and its value (the protobuf `mvccpb.KeyValue` after the change;
//! a deletion's holds only the key). Changes after the revision asked are left out, and so is
//! a deletion at the compacted revision itself (which etcd's compaction may or may not keep);
//! below it, only what etcd's index keeps at the revision asked.

use cairn_coord::{Change, EventKind, KeyValue};
use prost::Message;

use crate::convert;

/// The name of etcd's key bucket, which its hash starts with.
const KEY_BUCKET: &[u8] = b"key";

/// A HashKV answer, as the backend computes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvHash {
    /// The hash.
    pub hash: u32,
    /// The compacted revision, -1 if nothing was ever compacted (etcd's).
    pub compact_revision: i64,
    /// The revision hashed up to (the request's, or the current one for 0).
    pub hash_revision: i64,
}

/// etcd's HashKV of `history` (every change the store holds, in (main, sub) order) up to
/// `revision` (included), the store compacted at `compact_revision` (-1: never).
///
/// As etcd's: of the changes at or below the compacted revision, only each key's last change
/// at `revision` counts, if it is a put (unless no key is live at `revision`: then all count).
pub fn hash_kv(compact_revision: i64, revision: i64, history: &[Change]) -> KvHash {
    let mut last = std::collections::HashMap::new();
    for change in history.iter().filter(|change| change.revision <= revision) {
        last.insert(change.kv.key.as_slice(), (change.kind, change.revision));
    }
    last.retain(|_, (kind, _)| *kind == EventKind::Put);
    let mut crc = crc32c::crc32c(KEY_BUCKET);
    for Change { revision: main, sub, kind, kv } in history {
        let (main, deleted) = (*main, *kind == EventKind::Delete);
        let kept = last.get(kv.key.as_slice()).is_some_and(|(_, at)| *at == main);
        if main > revision
            || (main <= compact_revision && !last.is_empty() && !kept)
            || (deleted && main == compact_revision)
        {
            continue;
        }
        crc = crc32c::crc32c_append(crc, &bucket_key(main, *sub, deleted));
        let value = if deleted {
            KeyValue { key: kv.key.clone(), ..KeyValue::default() }
        } else {
            kv.clone()
        };
        crc = crc32c::crc32c_append(crc, &convert::kv_to(value).encode_to_vec());
    }
    KvHash { hash: crc, compact_revision, hash_revision: revision }
}

/// etcd's key of a change in its key bucket: main and sub-revision, big-endian, joined by `_`,
/// with `t` after for a deletion.
fn bucket_key(main: i64, sub: u32, deleted: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&main.to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&i64::from(sub).to_be_bytes());
    if deleted {
        key.push(b't');
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str, create: i64, revision: i64, version: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: create,
            mod_revision: revision,
            version,
            lease: 0,
        }
    }

    fn deleted(key: &str, revision: i64) -> KeyValue {
        KeyValue { key: key.into(), mod_revision: revision, ..KeyValue::default() }
    }

    /// `put a 1`, `put b 2`, `put a 3`, `del b` (revisions 2 to 5), hashed by etcd 3.4.23
    /// (`etcdctl endpoint hashkv`) at the revision given, compacted at `compacted`.
    fn check(compacted: i64, revision: i64, expected: u32) {
        let history = [
            (EventKind::Put, put("a", "1", 2, 2, 1)),
            (EventKind::Put, put("b", "2", 3, 3, 1)),
            (EventKind::Put, put("a", "3", 2, 4, 2)),
            (EventKind::Delete, deleted("b", 5)),
        ];
        // Compaction at 4 took `a`'s first value (a later change of `a` is at or below 4).
        let history: Vec<Change> = history
            .into_iter()
            .filter(|(_, kv)| compacted != 4 || kv.mod_revision != 2)
            .map(|(kind, kv)| Change { revision: kv.mod_revision, sub: 0, kind, kv })
            .collect();
        let hashed = hash_kv(compacted, revision, &history);
        assert_eq!(hashed.hash, expected, "compacted {compacted}, at {revision}");
    }

    #[test]
    fn hashes_match_etcds() {
        check(-1, 5, 1_125_682_900);
        check(-1, 3, 1_827_592_406);
        check(4, 5, 1_468_967_122);
    }
}
