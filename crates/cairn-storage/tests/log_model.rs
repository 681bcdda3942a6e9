//! Model-based property test of [`Log`] on the simulated disk: random sequences of append (leader
//! and replicated), flush, read, timestamp lookup, suffix truncation (at an offset and after a
//! Raft index), prefix deletion and purge, reset, time passing, crash (with torn writes) and
//! clean reopen, checked after every step against a plain in-memory model.
//!
//! Properties:
//! - every batch is one Raft entry: the log's indexes are the model's (dense from the start
//!   index), `entry_at`, `index_of` and `read_entries` agree with the offsets, and the durable
//!   index is the index of the durable offset, after every step and every crash and reopen;
//! - a replicated append keeps the leader's bytes, and one that does not continue the log is
//!   refused with nothing written;
//! - the log holds exactly the model's batches, byte for byte, at the model's offsets;
//! - after any crash, every batch the log had reported durable is there, byte-identical, and the
//!   log is a prefix of what was appended (nothing reappears, nothing is reordered);
//! - `durable_offset` never claims more than survives a crash;
//! - reads return the batch containing the requested offset first and respect `bytes_max`;
//! - timestamp lookups answer the first batch whose max timestamp reaches the target;
//! - the log's idempotent producers are those of every batch appended since the last reset, in
//!   order, purged ones included, after every step, crash and reopen.

use std::sync::Arc;

use cairn_storage::sim::SimDisk;
use cairn_storage::{
    Disk, Error, FlushPolicy, Log, LogConfig, ManualClock, ProducerBatch, ProducerStates, RealDisk,
};
use cairn_types::batch::{self, BatchBuilder, Batches, RecordBatch};
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{LeaderEpoch, Offset, ProducerId, RaftIndex};
use proptest::prelude::*;

/// How a disk crashes.
trait Crash: Disk + Clone {
    /// Crashes after the log was dropped without closing; returns whether unsynced data may be
    /// lost (power loss) rather than kept by the OS (process crash).
    fn crash(&self, tear: bool) -> bool;
}

impl Crash for SimDisk {
    fn crash(&self, tear: bool) -> bool {
        self.set_tear_on_crash(tear);
        SimDisk::crash(self);
        true
    }
}

impl Crash for RealDisk {
    /// A process crash: the page cache keeps every write.
    fn crash(&self, _tear: bool) -> bool {
        false
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Batches of (record count, value bytes, timestamp step) appended in one call.
    Append {
        batches: Vec<(u8, u16, i8)>,
        new_epoch: bool,
    },
    /// The same batches stamped by a leader and appended as a follower does; with `skew`, the
    /// first batch's base offset is off by this much (a diverged follower), which is refused.
    AppendReplicated {
        batches: Vec<(u8, u16, i8)>,
        new_epoch: bool,
        skew: i8,
    },
    /// Cut every entry after the one at this fraction of the log (`None`: all of them).
    TruncateAfter {
        at: Option<f64>,
    },
    /// Purge through the entry at this fraction of the log.
    Purge {
        at: f64,
    },
    /// Reset the log this many offsets and indexes past its end (a snapshot install).
    Reset {
        offsets: u16,
        indexes: u16,
    },
    Flush,
    /// A flush begun, these batches appended (and cut again if `cut`) meanwhile, then completed.
    PipelinedFlush {
        between: Vec<(u8, u16, i8)>,
        cut: bool,
    },
    /// Read from the batch at this fraction of the log, with this byte budget.
    Read {
        at: f64,
        bytes_max: u32,
    },
    Timestamp {
        at: f64,
    },
    Truncate {
        at: f64,
    },
    DeletePrefix {
        at: f64,
    },
    AdvanceTime {
        ms: u16,
    },
    Crash {
        tear: bool,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let batch = (1u8..6, 0u16..400, -3i8..10);
    prop_oneof![
        8 => (proptest::collection::vec(batch.clone(), 1..5), proptest::bool::weighted(0.1))
            .prop_map(|(batches, new_epoch)| Op::Append { batches, new_epoch }),
        4 => (proptest::collection::vec(batch, 1..5), proptest::bool::weighted(0.2), prop_oneof![8 => Just(0i8), 1 => -3i8..3])
            .prop_map(|(batches, new_epoch, skew)| Op::AppendReplicated { batches, new_epoch, skew }),
        1 => proptest::option::weighted(0.8, 0.0..1.0).prop_map(|at| Op::TruncateAfter { at }),
        1 => (0.0..1.0).prop_map(|at| Op::Purge { at }),
        1 => (0u16..50, 0u16..50).prop_map(|(offsets, indexes)| Op::Reset { offsets, indexes }),
        2 => Just(Op::Flush),
        2 => (proptest::collection::vec((1u8..4, 0u16..300, 0i8..5), 0..3), proptest::bool::weighted(0.2))
            .prop_map(|(between, cut)| Op::PipelinedFlush { between, cut }),
        3 => (0.0..1.0, 1u32..4000).prop_map(|(at, bytes_max)| Op::Read { at, bytes_max }),
        1 => (0.0..1.0).prop_map(|at| Op::Timestamp { at }),
        1 => (0.0..1.0).prop_map(|at| Op::Truncate { at }),
        1 => (0.0..1.0).prop_map(|at| Op::DeletePrefix { at }),
        1 => (0u16..2000).prop_map(|ms| Op::AdvanceTime { ms }),
        2 => any::<bool>().prop_map(|tear| Op::Crash { tear }),
        1 => Just(Op::Reopen),
    ]
}

fn config() -> impl Strategy<Value = LogConfig> {
    let flush = prop_oneof![
        Just(FlushPolicy::EveryAppend),
        Just(FlushPolicy::Manual),
        (1u64..1000, 1u64..5000).prop_map(|(ms, bytes)| FlushPolicy::Interval { ms, bytes }),
    ];
    let segments = (1024u64..6000, 64u32..1024, proptest::option::of(500i64..5000));
    (segments, flush, proptest::option::of(0u64..8000)).prop_map(
        |((segment_bytes, index_interval_bytes, segment_ms), flush, cache_window_bytes)| {
            LogConfig {
                segment_bytes,
                segment_ms,
                index_interval_bytes,
                index_sync_bytes: 2048,
                flush,
                cache_window_bytes,
            }
        },
    )
}

/// One appended batch as the log must hold it.
#[derive(Clone, Debug)]
struct Stored {
    base: Offset,
    next: Offset,
    index: RaftIndex,
    epoch: LeaderEpoch,
    max_timestamp: i64,
    bytes: Vec<u8>,
}

struct Model {
    start: Offset,
    next: Offset,
    start_index: RaftIndex,
    next_index: RaftIndex,
    batches: Vec<Stored>,
    epoch: LeaderEpoch,
    timestamp: i64,
    /// The producer batches of batches purged since the last reset, oldest first.
    purged: Vec<ProducerBatch>,
    /// The next sequence of each of the model's producers.
    sequences: [i32; 3],
}

impl Model {
    /// Index of the batch at fraction `at` of the current batches.
    fn pick(&self, at: f64) -> Option<usize> {
        if self.batches.is_empty() {
            return None;
        }
        Some(((self.batches.len() as f64 * at) as usize).min(self.batches.len() - 1))
    }

    /// The producers the log must know: those of the purged batches, then of the held ones.
    fn producers(&self) -> ProducerStates {
        self.producers_before(self.batches.len())
    }

    /// The producers as of the start of held batch `held` (of the log end if it is past them).
    fn producers_before(&self, held: usize) -> ProducerStates {
        let held = self.batches.iter().take(held).filter_map(|stored| {
            let header = *RecordBatch::validate(&stored.bytes).expect("valid").header();
            ProducerBatch::of(&header)
        });
        let mut states = ProducerStates::new();
        for batch in self.purged.iter().copied().chain(held) {
            states.record(batch);
        }
        states
    }

    /// Forgets the first `count` batches, remembering their producers.
    fn drop_front(&mut self, count: usize) {
        for stored in self.batches.drain(..count) {
            let header = *RecordBatch::validate(&stored.bytes).expect("valid").header();
            self.purged.extend(ProducerBatch::of(&header));
        }
    }
}

struct Harness<D: Crash> {
    disk: D,
    dir: std::path::PathBuf,
    clock: ManualClock,
    config: LogConfig,
    log: Option<Log<D>>,
    model: Model,
}

impl<D: Crash> Harness<D> {
    fn new(disk: D, dir: std::path::PathBuf, config: LogConfig) -> Harness<D> {
        let mut harness = Harness {
            disk,
            dir,
            clock: ManualClock::new(1_700_000_000_000),
            config,
            log: None,
            model: Model {
                start: Offset(0),
                next: Offset(0),
                start_index: RaftIndex(0),
                next_index: RaftIndex(0),
                batches: Vec::new(),
                epoch: LeaderEpoch(1),
                timestamp: 1_700_000_000_000,
                purged: Vec::new(),
                sequences: [0; 3],
            },
        };
        harness.open();
        harness
    }

    fn log(&mut self) -> &mut Log<D> {
        self.log.as_mut().expect("log is open between steps")
    }

    fn open(&mut self) {
        let log = Log::open(
            self.disk.clone(),
            &self.dir,
            self.config.clone(),
            Arc::new(self.clock.clone()),
        )
        .expect("recovery succeeds after crashes without corruption");
        self.log = Some(log);
    }

    /// Builds the batches of an append: concatenated, with each one's length.
    fn build(&mut self, batches: &[(u8, u16, i8)]) -> (Vec<u8>, Vec<usize>) {
        let mut buffer = Vec::new();
        let mut lens = Vec::new();
        for &(records, value_bytes, step) in batches {
            let mut builder = BatchBuilder::new(self.model.timestamp);
            // Batches of three producers, and some of none.
            let producer = usize::from(records % 4);
            if let Some(sequence) = self.model.sequences.get_mut(producer) {
                builder = builder.producer(ProducerId(producer as i64), 0, *sequence);
                *sequence += i32::from(records);
            }
            for i in 0..records {
                let value = vec![i; value_bytes as usize];
                self.model.timestamp += i64::from(step);
                builder = builder.record_at(self.model.timestamp, Some(&[i]), Some(&value), &[]);
            }
            let bytes = builder.build();
            buffer.extend_from_slice(&bytes);
            lens.push(bytes.len());
        }
        (buffer, lens)
    }

    fn append(&mut self, batches: &[(u8, u16, i8)], new_epoch: bool) {
        if new_epoch {
            self.model.epoch.0 += 1;
        }
        let (mut buffer, lens) = self.build(batches);
        let epoch = self.model.epoch;
        let appended = self.log().append(&mut buffer, epoch).expect("append succeeds");
        assert_eq!(appended.base_offset, self.model.next);
        assert_eq!(appended.first_index, self.model.next_index);
        self.record(&buffer, &lens);
        assert_eq!(appended.next_offset, self.model.next);
        assert_eq!(appended.last_index.0 + 1, self.model.next_index.0);
        if appended.durable {
            assert!(self.log().durable_offset() >= self.model.next);
        }
    }

    /// What a leader would send: the batches stamped with the next offsets and the epoch.
    /// Appended as a follower does; with a `skew`, refused as diverged with nothing written.
    fn append_replicated(&mut self, batches: &[(u8, u16, i8)], new_epoch: bool, skew: i8) {
        if new_epoch {
            self.model.epoch.0 += 1;
        }
        let (mut buffer, lens) = self.build(batches);
        let first = self.model.next.0.saturating_add_signed(i64::from(skew));
        let mut next = Offset(first);
        let mut at = 0;
        for len in &lens {
            batch::set_base_offset(&mut buffer[at..], next);
            batch::set_partition_leader_epoch(&mut buffer[at..], self.model.epoch);
            next =
                RecordBatch::validate(&buffer[at..at + len]).expect("valid").header().next_offset();
            at += len;
        }
        let result = self.log().append_replicated(&buffer);
        if first != self.model.next.0 {
            match result {
                Err(Error::Diverged { expected, found }) => {
                    assert_eq!((expected, found), (self.model.next, Offset(first)));
                }
                other => panic!("a diverged append is refused, not {other:?}"),
            }
            return;
        }
        let appended = result.expect("replicated append succeeds");
        assert_eq!(appended.first_index, self.model.next_index);
        let kept = buffer.clone();
        self.record(&buffer, &lens);
        assert_eq!(appended.next_offset, self.model.next);
        assert_eq!(appended.last_index.0 + 1, self.model.next_index.0);
        let copied: Vec<u8> = self
            .model
            .batches
            .iter()
            .rev()
            .take(lens.len())
            .rev()
            .flat_map(|b| b.bytes.clone())
            .collect();
        assert!(copied == kept, "the follower keeps the leader's bytes");
    }

    /// Adds the appended batches (as the log now holds them) to the model.
    fn record(&mut self, buffer: &[u8], lens: &[usize]) {
        let mut at = 0;
        for &len in lens {
            let bytes = buffer[at..at + len].to_vec();
            let batch = RecordBatch::validate(&bytes).expect("appended batch stays valid");
            assert_eq!(batch.base_offset(), self.model.next);
            assert_eq!(batch.header().partition_leader_epoch, self.model.epoch);
            let next = batch.header().next_offset();
            let max_timestamp = batch.header().max_timestamp;
            self.model.batches.push(Stored {
                base: self.model.next,
                next,
                index: self.model.next_index,
                epoch: self.model.epoch,
                max_timestamp,
                bytes,
            });
            self.model.next = next;
            self.model.next_index = self.model.next_index.plus(1);
            at += len;
        }
    }

    fn crash(&mut self, tear: bool) {
        let durable = self.log().durable_offset();
        drop(self.log.take());
        let power_loss = self.disk.crash(tear);
        self.open();
        let next = self.log().next_offset();
        if !power_loss {
            assert_eq!(next, self.model.next, "a process crash loses nothing the OS has");
        }
        assert!(next >= durable, "durable offset {durable} reported, only {next} survived");
        let kept = self.model.batches.iter().take_while(|b| b.next <= next).count();
        if kept < self.model.batches.len() || next != self.model.next {
            // Whatever survived beyond the durable point must end at a batch boundary.
            let boundary =
                if kept == 0 { self.model.start } else { self.model.batches[kept - 1].next };
            assert_eq!(
                next,
                boundary.max(self.model.start),
                "recovered end is not a batch boundary"
            );
        }
        self.model.batches.truncate(kept);
        self.model.next = next;
        self.model.next_index = self.model.start_index.plus(self.model.batches.len() as u64);
        assert_eq!(self.log().durable_offset(), next, "recovery makes what it keeps durable");
        assert_eq!(self.log().durable_index(), self.model.next_index);
    }

    /// Cuts the model after its batch `kept - 1`.
    fn cut_model(&mut self, kept: usize) {
        self.model.batches.truncate(kept);
        self.model.next = self.model.batches.last().map_or(self.model.start, |b| b.next);
        self.model.next_index = self.model.start_index.plus(kept as u64);
    }

    /// Every batch is the entry at its index: lookups by index and by offset agree with the
    /// model, a read by index range returns the model's bytes, and the durable index is the
    /// index of the durable offset.
    fn check_indexes(&self) {
        let model = &self.model;
        let log = self.log.as_ref().expect("open");
        assert_eq!(log.start_index(), model.start_index);
        assert_eq!(log.next_index(), model.next_index);
        for stored in &model.batches {
            let entry = log.entry_at(stored.index).expect("entry_at").expect("held");
            assert_eq!(entry.index, stored.index);
            assert_eq!((entry.base_offset, entry.next_offset), (stored.base, stored.next));
            assert_eq!(entry.epoch, stored.epoch);
            assert_eq!(log.index_of(stored.base).expect("index_of"), stored.index);
            assert_eq!(log.offset_of(stored.index).expect("offset_of"), stored.base);
        }
        assert_eq!(log.entry_at(model.next_index).expect("entry_at"), None);
        if let Some(before) = model.start_index.0.checked_sub(1) {
            assert_eq!(log.entry_at(RaftIndex(before)).expect("entry_at"), None);
        }
        let mut bytes = Vec::new();
        let mut from = model.start_index;
        while from < model.next_index {
            let headers =
                log.read_entries(from, model.next_index, 2048, &mut bytes).expect("read_entries");
            let last = headers.last().expect("a read by index returns at least one entry");
            assert_eq!(headers[0].index, from);
            from = last.index.plus(1);
        }
        let expected: Vec<u8> =
            model.batches.iter().flat_map(|b| b.bytes.iter().copied()).collect();
        assert!(bytes == expected, "entries read by index differ from the model");
        let durable = log.durable_offset();
        assert_eq!(
            log.index_of(durable).expect("durable offset is a boundary"),
            log.durable_index()
        );
    }

    /// The whole log equals the model.
    fn check(&mut self) {
        let model = &self.model;
        let log = self.log.as_ref().expect("open");
        assert_eq!(log.start_offset(), model.start);
        assert_eq!(log.next_offset(), model.next);
        assert!(log.durable_offset() <= log.next_offset());
        let mut bytes = Vec::new();
        let mut from = model.start;
        while from < model.next {
            let next = log.read(from, 4096, model.next, &mut bytes).expect("read");
            assert!(next > from, "read made no progress at {from}");
            from = next;
        }
        let expected: Vec<u8> =
            model.batches.iter().flat_map(|b| b.bytes.iter().copied()).collect();
        assert_eq!(bytes.len(), expected.len());
        assert!(bytes == expected, "log bytes differ from the model");
        log.verify().expect("scrub finds no damage");
        assert!(log.producers() == &model.producers(), "the log's producers differ from the model");
        // As of a batch in the middle: what a Raft snapshot ending there carries.
        let middle = model.batches.len() / 2;
        let at = model.batches.get(middle).map_or(model.next, |b| b.base);
        let before = log.producers_before(at).expect("producers_before");
        assert!(before == model.producers_before(middle), "the producers as of {at} differ");
    }

    fn read(&mut self, at: f64, bytes_max: u32) {
        let Some(i) = self.model.pick(at) else { return };
        let target = &self.model.batches[i];
        // An offset in the middle of the batch: the read starts with the batch containing it.
        let from = Offset(target.base.0 + (target.next.0 - target.base.0) / 2);
        let log = self.log.as_ref().expect("open");
        let located = log.locate(from, bytes_max, self.model.next).expect("locate");
        let mut out = Vec::new();
        let next = log.read(from, bytes_max, self.model.next, &mut out).expect("read");
        assert_eq!(next, located.next_offset);
        assert_eq!(out.len() as u64, located.bytes);
        let batches: Vec<_> =
            Batches::new(&out, BATCH_BYTES_MAX).collect::<Result<_, _>>().expect("valid");
        assert!(!batches.is_empty(), "a read returns at least one batch");
        assert_eq!(batches[0].base_offset(), target.base);
        if batches.len() > 1 {
            assert!(out.len() <= bytes_max as usize, "more than bytes_max beyond the first batch");
        }
        for (got, want) in batches.iter().zip(&self.model.batches[i..]) {
            assert_eq!(got.as_bytes(), &want.bytes[..]);
        }
    }

    fn timestamp(&mut self, at: f64) {
        let Some(i) = self.model.pick(at) else { return };
        let target = self.model.batches[i].max_timestamp - 1;
        let want = self.model.batches.iter().find(|b| b.max_timestamp >= target).map(|b| b.base);
        let got = self.log.as_ref().expect("open").offset_for_timestamp(target).expect("lookup");
        assert_eq!(got, want, "timestamp {target}");
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Append { batches, new_epoch } => self.append(batches, *new_epoch),
            Op::Flush => {
                let durable = self.log().flush().expect("flush");
                assert_eq!(durable, self.model.next);
            }
            Op::PipelinedFlush { between, cut } => {
                let Some(mut pending) = self.log().begin_flush().expect("begin_flush") else {
                    return;
                };
                let upto = pending.upto();
                assert_eq!(upto, self.model.next);
                let before = self.model.next;
                if !between.is_empty() {
                    self.append(between, false);
                }
                let cut = *cut && before > self.model.start && !between.is_empty();
                if cut {
                    let kept = self.model.batches.iter().take_while(|b| b.base < before).count();
                    let start = self.model.start;
                    self.log().truncate_suffix(before, start).expect("truncate");
                    self.cut_model(kept);
                }
                let synced = pending.sync();
                let durable = self.log().complete_flush(pending, synced).expect("complete_flush");
                assert!(durable >= upto, "a completed flush makes everything before it durable");
                assert!(durable <= self.model.next);
            }
            Op::Read { at, bytes_max } => self.read(*at, *bytes_max),
            Op::Timestamp { at } => self.timestamp(*at),
            Op::Truncate { at } => {
                let Some(i) = self.model.pick(*at) else { return };
                let offset = self.model.batches[i].base;
                let start = self.model.start;
                self.log().truncate_suffix(offset, start).expect("truncate");
                self.cut_model(i);
            }
            Op::AppendReplicated { batches, new_epoch, skew } => {
                self.append_replicated(batches, *new_epoch, *skew);
            }
            Op::TruncateAfter { at } => self.truncate_after(*at),
            Op::Purge { at } => self.purge(*at),
            Op::Reset { offsets, indexes } => {
                let start = self.model.next.plus(u64::from(*offsets));
                let next_index = self.model.next_index.plus(u64::from(*indexes));
                self.log().reset(start, next_index).expect("reset");
                self.model.batches.clear();
                self.model.purged.clear();
                (self.model.start, self.model.next) = (start, start);
                (self.model.start_index, self.model.next_index) = (next_index, next_index);
                assert_eq!(self.log().epoch_history(), &[], "a reset log has no history");
                assert_eq!(self.log().durable_offset(), start, "a reset is durable");
            }
            Op::DeletePrefix { at } => {
                let Some(i) = self.model.pick(*at) else { return };
                let upto = self.model.batches[i].base;
                let next = self.model.next;
                let start = self.log().delete_prefix(upto, next).expect("delete_prefix");
                assert!(start <= upto && start >= self.model.start);
                let dropped = self.model.batches.iter().take_while(|b| b.base < start).count();
                assert!(
                    dropped == self.model.batches.len()
                        || self.model.batches[dropped].base == start
                );
                self.model.drop_front(dropped);
                self.model.start = start;
                self.model.start_index = self.model.start_index.plus(dropped as u64);
            }
            Op::AdvanceTime { ms } => {
                self.clock.advance(i64::from(*ms));
                self.log().flush_if_due().expect("flush_if_due");
            }
            Op::Crash { tear } => self.crash(*tear),
            Op::Reopen => {
                self.log.take().expect("open").close().expect("close");
                self.open();
                assert_eq!(
                    self.log().recovery().verified_bytes,
                    0,
                    "a clean reopen verifies nothing"
                );
            }
        }
        self.check();
        self.check_indexes();
    }

    fn truncate_after(&mut self, at: Option<f64>) {
        let start = self.model.start;
        let Some(at) = at else {
            self.log().truncate_after(None, start).expect("truncate_after(None)");
            self.cut_model(0);
            return;
        };
        let Some(i) = self.model.pick(at) else { return };
        let index = self.model.batches[i].index;
        if i > 0 {
            // Cutting below the bound is refused, and changes nothing.
            let (bound, before) = (self.model.batches[i].next, self.model.batches[i - 1].index);
            match self.log().truncate_after(Some(before), bound) {
                Err(Error::BeyondBound { .. }) => {}
                other => panic!("a cut below the bound is refused, not {other:?}"),
            }
        }
        self.log().truncate_after(Some(index), start).expect("truncate_after");
        self.cut_model(i + 1);
    }

    fn purge(&mut self, at: f64) {
        let Some(i) = self.model.pick(at) else { return };
        let index = self.model.batches[i].index;
        let start_index = self.log().purge_through(index).expect("purge_through");
        assert!(start_index >= self.model.start_index && start_index.0 <= index.0 + 1);
        let dropped = self.model.batches.iter().take_while(|b| b.index < start_index).count();
        let start = self.log().start_offset();
        assert!(
            dropped == self.model.batches.len() || self.model.batches[dropped].base == start,
            "the new start index and offset name one batch"
        );
        self.model.drop_front(dropped);
        (self.model.start, self.model.start_index) = (start, start_index);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Power loss on the simulated disk.
    #[test]
    fn log_matches_model(seed: u64, config in config(), ops in proptest::collection::vec(op(), 1..60)) {
        let disk = SimDisk::new(seed);
        let mut harness = Harness::new(disk.clone(), "/data/topic-0".into(), config);
        for op in &ops {
            harness.step(op);
        }
        // The cache window drops only durable data.
        prop_assert_eq!(disk.cache_dropped_bytes().1, 0);
    }

    /// Process crashes on the real file system.
    #[test]
    fn log_matches_model_on_real_disk(config in config(), ops in proptest::collection::vec(op(), 1..40)) {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut harness = Harness::new(RealDisk, temp.path().join("topic-0"), config);
        for op in &ops {
            harness.step(op);
        }
    }
}
