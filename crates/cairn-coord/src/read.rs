//! Reads over the key-value tables, the same code for a read transaction (ranges and events
//! beside the writer) and for the write transaction (a Txn's own ranges and checks).
//!
//! A read at the revision of `latest` scans `latest` (one entry per live key) and fetches each
//! value from `history`; a read at an older revision seeks, key by key, each key's last change
//! at or before it in `index`. Neither scans the history.

use std::ops::Bound;

use redb::ReadableTable;

use crate::rules::{Span, ordering};
use crate::tables::{IndexKey, IndexValue, Latest, Record, Rev};
use crate::types::{
    Change, Event, KeyValue, KvError, RangeRequest, RangeResponse, SortOrder, SortTarget,
};

/// The tables a read needs: `history`, `index` and `latest`, of either kind of transaction.
pub(crate) struct Kv<H, I, L> {
    pub(crate) history: H,
    pub(crate) index: I,
    pub(crate) latest: L,
}

/// A key found by a read: its value is fetched only if the answer needs it.
struct Hit {
    kv: KeyValue,
    sub: u32,
    valued: bool,
}

impl<H, I, L> Kv<H, I, L>
where
    H: ReadableTable<Rev, &'static [u8]>,
    I: ReadableTable<IndexKey, IndexValue>,
    L: ReadableTable<&'static [u8], Latest>,
{
    /// The history record at `rev`, which the index or a `prev` pointer names.
    pub(crate) fn record(&self, rev: Rev) -> Result<Record, KvError> {
        let bytes = self.history.get(rev)?.ok_or_else(|| {
            KvError::Storage(format!("history record {rev:?} missing, though named"))
        })?;
        Ok(Record::decode(bytes.value(), rev.0)?)
    }

    /// The key's entry in `latest`, if it is live.
    pub(crate) fn head(&self, key: &[u8]) -> Result<Option<Latest>, KvError> {
        Ok(self.latest.get(key)?.map(|guard| guard.value()))
    }

    /// The key's value at the head, with its value.
    pub(crate) fn head_kv(&self, key: &[u8]) -> Result<Option<KeyValue>, KvError> {
        match self.head(key)? {
            None => Ok(None),
            Some(latest) => {
                let mut hit = head_hit(key, latest);
                self.fill(&mut hit)?;
                Ok(Some(hit.kv))
            }
        }
    }

    fn fill(&self, hit: &mut Hit) -> Result<(), KvError> {
        if !hit.valued {
            hit.kv.value = self.record((hit.kv.mod_revision, hit.sub))?.kv.value;
            hit.valued = true;
        }
        Ok(())
    }

    /// The live keys of `span` at `revision`, in key order; `latest_revision` is the revision
    /// `latest` holds.
    fn hits(
        &self,
        span: Span<'_>,
        revision: i64,
        latest_revision: i64,
    ) -> Result<Vec<Hit>, KvError> {
        if span == Span::Empty {
            return Ok(Vec::new());
        }
        if revision >= latest_revision {
            let mut hits = Vec::new();
            for entry in self.latest.range(span.bounds())? {
                let (key, latest) = entry?;
                hits.push(head_hit(key.value(), latest.value()));
            }
            return Ok(hits);
        }
        self.hits_before(span, revision)
    }

    /// The live keys of `span` at `revision`, each found by a seek in the index.
    fn hits_before(&self, span: Span<'_>, revision: i64) -> Result<Vec<Hit>, KvError> {
        let (start, end) = span.bounds();
        let upper: Bound<(&[u8], i64)> = match end {
            Bound::Included(key) => Bound::Included((key, i64::MAX)),
            Bound::Excluded(key) => Bound::Excluded((key, i64::MIN)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let first = match start {
            Bound::Included(key) | Bound::Excluded(key) => key.to_vec(),
            Bound::Unbounded => Vec::new(),
        };
        let mut hits = Vec::new();
        let mut next: Option<Vec<u8>> = Some(first);
        let mut inclusive = true;
        while let Some(key) = next.take() {
            let lower = if inclusive {
                Bound::Included((key.as_slice(), i64::MIN))
            } else {
                Bound::Excluded((key.as_slice(), i64::MAX))
            };
            let Some(entry) = self.index.range((lower, upper))?.next() else { break };
            let found = entry?.0.value().0.to_vec();
            if let Some(hit) = self.at(&found, revision)? {
                hits.push(hit);
            }
            next = Some(found);
            inclusive = false;
        }
        Ok(hits)
    }

    /// `key`'s last change at or before `revision`, if it is a value.
    fn at(&self, key: &[u8], revision: i64) -> Result<Option<Hit>, KvError> {
        let range = (key, i64::MIN)..=(key, revision);
        let Some(entry) = self.index.range(range)?.next_back() else { return Ok(None) };
        let (at, (sub, deleted)) = {
            let (k, v) = entry?;
            (k.value().1, v.value())
        };
        if deleted {
            return Ok(None);
        }
        let record = self.record((at, sub))?;
        Ok(Some(Hit { kv: record.kv, sub, valued: true }))
    }

    /// The keys of `[key, range_end)` at `revision` with their values.
    pub(crate) fn kvs_at(
        &self,
        key: &[u8],
        range_end: &[u8],
        revision: i64,
        latest_revision: i64,
    ) -> Result<Vec<KeyValue>, KvError> {
        let mut hits = self.hits(Span::of(key, range_end), revision, latest_revision)?;
        for hit in &mut hits {
            self.fill(hit)?;
        }
        Ok(hits.into_iter().map(|hit| hit.kv).collect())
    }

    /// A Range at `revision` (already checked readable).
    pub(crate) fn range_at(
        &self,
        request: &RangeRequest,
        revision: i64,
        latest_revision: i64,
    ) -> Result<RangeResponse, KvError> {
        let within = |value: i64, min: i64, max: i64| {
            (min == 0 || value >= min) && (max == 0 || value <= max)
        };
        let span = Span::of(&request.key, &request.range_end);
        let mut hits: Vec<Hit> = self
            .hits(span, revision, latest_revision)?
            .into_iter()
            .filter(|hit| {
                let kv = &hit.kv;
                within(kv.mod_revision, request.min_mod_revision, request.max_mod_revision)
                    && within(
                        kv.create_revision,
                        request.min_create_revision,
                        request.max_create_revision,
                    )
            })
            .collect();
        let count = i64::try_from(hits.len()).unwrap_or(i64::MAX);
        if request.sort_order != SortOrder::None || request.sort_target != SortTarget::Key {
            if request.sort_target == SortTarget::Value {
                for hit in &mut hits {
                    self.fill(hit)?;
                }
            }
            let (order, target) = (request.sort_order, request.sort_target);
            hits.sort_by(|a, b| ordering(&a.kv, &b.kv, order, target));
        }
        let limit = usize::try_from(request.limit).unwrap_or(0);
        let more = limit > 0 && hits.len() > limit;
        if more {
            hits.truncate(limit);
        }
        if request.count_only {
            hits.clear();
        }
        let mut kvs = Vec::with_capacity(hits.len());
        for mut hit in hits {
            if request.keys_only {
                hit.kv.value.clear();
            } else {
                self.fill(&mut hit)?;
            }
            kvs.push(hit.kv);
        }
        Ok(RangeResponse { kvs, more, count })
    }

    /// The events of up to `limit` revisions after `revision`, each revision whole.
    pub(crate) fn events_after(
        &self,
        revision: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Vec<Event>)>, KvError> {
        let mut revisions: Vec<(i64, Vec<Event>)> = Vec::new();
        for entry in self.history.range((revision.saturating_add(1), 0)..)? {
            let (rev, bytes) = entry?;
            let (main, _) = rev.value();
            let continues = revisions.last().is_some_and(|(last, _)| *last == main);
            if !continues && revisions.len() == limit {
                break;
            }
            let event = self.event(Record::decode(bytes.value(), main)?)?;
            match revisions.last_mut() {
                Some((_, events)) if continues => events.push(event),
                _ => revisions.push((main, vec![event])),
            }
        }
        Ok(revisions)
    }

    /// Every change the history holds up to `revision` (included), in (main, sub) order: its
    /// revision, sub-revision, kind and the key after it (a deletion's: the key alone).
    pub(crate) fn changes(&self, revision: i64) -> Result<Vec<Change>, KvError> {
        let mut changes = Vec::new();
        for entry in self.history.range(..=(revision, u32::MAX))? {
            let (rev, bytes) = entry?;
            let (main, sub) = rev.value();
            let record = Record::decode(bytes.value(), main)?;
            changes.push(Change { revision: main, sub, kind: record.kind, kv: record.kv });
        }
        Ok(changes)
    }

    fn event(&self, record: Record) -> Result<Event, KvError> {
        let prev_kv = match record.prev {
            None => None,
            Some(prev) => Some(self.record(prev)?.kv),
        };
        Ok(Event { kind: record.kind, kv: record.kv, prev_kv })
    }
}

/// A `latest` entry as a hit whose value is not fetched yet.
fn head_hit(key: &[u8], (mod_revision, sub, create_revision, version, lease): Latest) -> Hit {
    let kv = KeyValue {
        key: key.to_vec(),
        create_revision,
        mod_revision,
        version,
        value: Vec::new(),
        lease,
    };
    Hit { kv, sub, valued: false }
}
