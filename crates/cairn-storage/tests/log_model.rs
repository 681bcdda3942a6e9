//! Model-based property test of [`Log`] on the simulated disk: random sequences of append, flush,
//! read, timestamp lookup, suffix truncation, prefix deletion, time passing, crash (with torn
//! writes) and clean reopen, checked after every step against a plain in-memory model.
//!
//! Properties:
//! - the log holds exactly the model's batches, byte for byte, at the model's offsets;
//! - after any crash, every batch the log had reported durable is there, byte-identical, and the
//!   log is a prefix of what was appended (nothing reappears, nothing is reordered);
//! - `durable_offset` never claims more than survives a crash;
//! - reads return the batch containing the requested offset first and respect `bytes_max`;
//! - timestamp lookups answer the first batch whose max timestamp reaches the target.

use std::sync::Arc;

use cairn_storage::sim::SimDisk;
use cairn_storage::{Disk, FlushPolicy, Log, LogConfig, ManualClock, RealDisk};
use cairn_types::batch::{BatchBuilder, Batches, RecordBatch};
use cairn_types::limits::BATCH_BYTES_MAX;
use cairn_types::{LeaderEpoch, Offset};
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
        8 => (proptest::collection::vec(batch, 1..5), proptest::bool::weighted(0.1))
            .prop_map(|(batches, new_epoch)| Op::Append { batches, new_epoch }),
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
    max_timestamp: i64,
    bytes: Vec<u8>,
}

struct Model {
    start: Offset,
    next: Offset,
    batches: Vec<Stored>,
    epoch: LeaderEpoch,
    timestamp: i64,
}

impl Model {
    /// Index of the batch at fraction `at` of the current batches.
    fn pick(&self, at: f64) -> Option<usize> {
        if self.batches.is_empty() {
            return None;
        }
        Some(((self.batches.len() as f64 * at) as usize).min(self.batches.len() - 1))
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
                batches: Vec::new(),
                epoch: LeaderEpoch(1),
                timestamp: 1_700_000_000_000,
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

    fn append(&mut self, batches: &[(u8, u16, i8)], new_epoch: bool) {
        if new_epoch {
            self.model.epoch.0 += 1;
        }
        let mut buffer = Vec::new();
        let mut built = Vec::new();
        for &(records, value_bytes, step) in batches {
            let mut builder = BatchBuilder::new(self.model.timestamp);
            for i in 0..records {
                let value = vec![i; value_bytes as usize];
                self.model.timestamp += i64::from(step);
                builder = builder.record_at(self.model.timestamp, Some(&[i]), Some(&value), &[]);
            }
            let bytes = builder.build();
            buffer.extend_from_slice(&bytes);
            built.push(bytes.len());
        }
        let epoch = self.model.epoch;
        let appended = self.log().append(&mut buffer, epoch).expect("append succeeds");
        assert_eq!(appended.base_offset, self.model.next);
        let mut at = 0;
        for len in built {
            let bytes = buffer[at..at + len].to_vec();
            let batch = RecordBatch::validate(&bytes).expect("appended batch stays valid");
            assert_eq!(batch.base_offset(), self.model.next);
            assert_eq!(batch.header().partition_leader_epoch, epoch);
            let next = batch.header().next_offset();
            let max_timestamp = batch.header().max_timestamp;
            self.model.batches.push(Stored { base: self.model.next, next, max_timestamp, bytes });
            self.model.next = next;
            at += len;
        }
        assert_eq!(appended.next_offset, self.model.next);
        if appended.durable {
            assert!(self.log().durable_offset() >= self.model.next);
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
        assert_eq!(self.log().durable_offset(), next, "recovery makes what it keeps durable");
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
                    self.model.batches.truncate(kept);
                    self.model.next = before;
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
                self.model.batches.truncate(i);
                self.model.next = offset;
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
                self.model.batches.drain(..dropped);
                self.model.start = start;
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
