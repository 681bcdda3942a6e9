//! `cairn-bench produce`, and the producers `e2e` runs too.
//!
//! Each producer has its own connection, pipelined ([`cairn_client::Pipeline`], `--inflight`
//! requests awaiting acknowledgement), and two tasks: the *sender* assembles requests of one
//! batch per partition and writes them; the *acker* awaits the responses in order and records
//! counts and latencies. They are joined by a channel as deep as the in-flight bound.
//!
//! Pacing:
//! - `--rate`: the sender follows the open-loop [`Schedule`]. It wakes when the next record is
//!   due, takes every record due by now (falling behind only makes the next request larger, up
//!   to one full batch per partition), and sends. There is no linger: a request leaves as soon
//!   as its records are due. Latency, per record, is ack time minus the record's scheduled time.
//! - `--max`: the sender fills a whole request (one full batch per partition) and sends it as
//!   soon as an in-flight slot is free. Latency, per record, is ack time minus the time its
//!   request was ready (so it includes waiting for a slot, as a producer's `send()` would).
//!
//! With `--acks 0` the broker does not answer: records count when written to the socket and no
//! latency exists.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use cairn_client::codes::describe;
use cairn_client::{Client, Options, Pending, Pipeline};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cli::{KafkaLoad, Pace, ProduceArgs};
use crate::kafka::{self, Topic, topic_name};
use crate::monitor::Monitor;
use crate::report::Report;
use crate::schedule::{Schedule, share};
use crate::stats::{Counters, Recorder, micros};
use crate::workload::{KeyGen, PartitionBatch, Placement, RequestBuilder, STAMP_BYTES, Values};

/// What every producer of a run shares.
pub struct Plan {
    /// The topic.
    pub topic: Topic,
    /// Pacing and sizes.
    pub pace: Pace,
    /// Keys, acks, compression, batch size.
    pub load: KafkaLoad,
    /// Whether values start with the record's scheduled time (`e2e`).
    pub stamp: bool,
}

/// What one producer did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Acknowledged records and bytes, latencies (empty with acks=0).
    pub recorder: Recorder,
    /// Records written to the connection.
    pub sent: u64,
    /// Records whose partition answered with an error.
    pub errors: u64,
    /// The first such error, described.
    pub first_error: Option<String>,
}

/// A producer with its connection open, ready to start.
pub struct Producer {
    index: u64,
    pipeline: Pipeline,
    /// The Produce version of the connection (from v13 topics are addressed by id).
    version: i16,
}

/// Opens the producers' connections (before the clock starts, so that connecting is not
/// measured).
///
/// # Errors
/// A failed connection, or a broker without a usable Produce version.
pub async fn connect(options: &Options, plan: &Plan) -> anyhow::Result<Vec<Producer>> {
    let mut producers = Vec::with_capacity(plan.pace.producers);
    for index in 0..plan.pace.producers {
        let client = Client::connect(options).await?;
        let pipeline = client.pipeline(plan.pace.inflight)?;
        let version = pipeline.version_of::<ProduceRequest>()?;
        if version >= 13 && plan.topic.id.is_nil() {
            bail!(
                "the broker reported no id for topic {}, which Produce v{version} needs",
                plan.topic.name
            );
        }
        producers.push(Producer { index: index as u64, pipeline, version });
    }
    Ok(producers)
}

/// Starts every producer at `start`; each task returns its [`Outcome`].
#[must_use]
pub fn spawn(
    producers: Vec<Producer>,
    plan: &Arc<Plan>,
    start: Instant,
    counters: &Arc<Counters>,
) -> Vec<JoinHandle<anyhow::Result<Outcome>>> {
    producers
        .into_iter()
        .map(|producer| {
            let plan = Arc::clone(plan);
            let counters = Arc::clone(counters);
            tokio::spawn(async move { produce(producer, plan, start, counters).await })
        })
        .collect()
}

/// Joins producer tasks, failing with the first error.
///
/// # Errors
/// A producer's error, or a producer task that panicked.
pub async fn join(tasks: Vec<JoinHandle<anyhow::Result<Outcome>>>) -> anyhow::Result<Vec<Outcome>> {
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.context("a producer task failed")??);
    }
    Ok(outcomes)
}

/// A request on its way: what the acker needs to account for it.
struct Sent {
    /// This producer's index of the request's first record (the schedule's `j`).
    first: u64,
    /// Records in the request.
    records: u64,
    /// Their key and value bytes.
    bytes: u64,
    /// When the request was ready to send (`--max` latency starts here).
    ready: Instant,
    /// Records per partition.
    partitions: Vec<(i32, u32)>,
}

/// Milliseconds since the Unix epoch, for record timestamps.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How many records producer `k` sends at most, and until when (without `--records` and
/// `--rate`, the run is bounded by time alone).
#[must_use]
pub fn bounds(
    pace: &Pace,
    schedule: Option<Schedule>,
    k: u64,
    start: Instant,
) -> (u64, Option<Instant>) {
    let producers = pace.producers as u64;
    let limit = match (pace.records, schedule) {
        (Some(total), _) => share(total, producers, k),
        // The records due strictly before the run's end.
        (None, Some(schedule)) => schedule.due_by(
            u64::try_from(pace.duration().as_nanos()).unwrap_or(u64::MAX).saturating_sub(1),
        ),
        (None, None) => u64::MAX,
    };
    let deadline = (pace.records.is_none() && schedule.is_none()).then(|| start + pace.duration());
    (limit, deadline)
}

/// One producer's records: values, keys and, for `e2e`, the stamped copy of a value.
struct Records {
    values: Values,
    keys: KeyGen,
    /// Scratch for a value with its scheduled time in front.
    stamped: Vec<u8>,
    /// Whether values carry their scheduled time.
    stamp: bool,
    schedule: Option<Schedule>,
    /// Producers in the run (`P`) and this one's index (`k`).
    producers: u64,
    k: u64,
}

impl Records {
    /// Adds records `next..due` to `builder` until it is full; moves `next` past them.
    fn fill(&mut self, builder: &mut RequestBuilder, next: &mut u64, due: u64, start: Instant) {
        let timestamp_ms = now_ms();
        while *next < due {
            let key = self.keys.key(*next * self.producers + self.k);
            let key = key.as_ref().map(|k| &k[..]);
            let Placement::Partition(partition) = builder.place(key) else { break };
            let value = if self.stamp {
                // The scheduled time (with --rate; e2e requires it), else now.
                let due_ns = match self.schedule {
                    Some(schedule) => schedule.due_ns(*next),
                    None => u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
                };
                self.stamped.copy_from_slice(self.values.value(*next));
                self.stamped[..STAMP_BYTES].copy_from_slice(&due_ns.to_be_bytes());
                &self.stamped[..]
            } else {
                self.values.value(*next)
            };
            builder.add(partition, timestamp_ms, key, value);
            *next += 1;
        }
    }
}

/// The Produce request carrying `batches` to the plan's topic.
fn produce_request(
    plan: &Plan,
    version: i16,
    timeout_ms: i32,
    batches: Vec<PartitionBatch>,
) -> ProduceRequest {
    let data = batches
        .into_iter()
        .map(|batch| {
            PartitionProduceData::default()
                .with_index(batch.partition)
                .with_records(Some(batch.bytes))
        })
        .collect();
    let mut topic = TopicProduceData::default().with_partition_data(data);
    // Produce addresses topics by id from v13, by name before.
    if version >= 13 {
        topic.topic_id = plan.topic.id;
    } else {
        topic.name = topic_name(&plan.topic.name);
    }
    ProduceRequest::default()
        .with_acks(plan.load.acks.wire())
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![topic])
}

/// One producer's sender loop; spawns and joins its acker.
async fn produce(
    mut producer: Producer,
    plan: Arc<Plan>,
    start: Instant,
    counters: Arc<Counters>,
) -> anyhow::Result<Outcome> {
    let pace = &plan.pace;
    let k = producer.index;
    let schedule = match pace.rate {
        Some(rate) => {
            Some(Schedule::new(rate, pace.producers as u64, k).context("invalid schedule")?)
        }
        None => None,
    };
    let (limit, deadline) = bounds(pace, schedule, k, start);
    let keys = KeyGen::new(plan.load.keys, k.wrapping_add(1));
    let partitions = u32::try_from(plan.topic.partitions.len()).unwrap_or(u32::MAX);
    let mut builder =
        RequestBuilder::new(partitions, plan.load.batch_bytes, keys.key_bytes(), pace.record_bytes);
    let mut records = Records {
        values: Values::new(pace.record_bytes, k),
        keys,
        stamped: vec![0u8; pace.record_bytes],
        stamp: plan.stamp,
        schedule,
        producers: pace.producers as u64,
        k,
    };
    let acks = plan.load.acks.wire();
    let (sent_tx, sent_rx) =
        mpsc::channel::<(Pending<ProduceResponse>, Sent)>(pace.inflight.max(1));
    let acker = (acks != 0).then(|| {
        let warmup = pace.warmup();
        tokio::spawn(acknowledge(sent_rx, schedule, (start, warmup), Arc::clone(&counters)))
    });
    let mut outcome = Outcome::default();
    let mut next = 0u64;

    let result: anyhow::Result<()> = async {
        loop {
            if next >= limit || deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Ok(());
            }
            let due = match schedule {
                Some(schedule) => {
                    let elapsed = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    schedule.due_by(elapsed).min(limit)
                }
                None => limit,
            };
            if next >= due {
                // Only with a schedule: sleep until the next record is due.
                if let Some(schedule) = schedule {
                    let at = start + Duration::from_nanos(schedule.due_ns(next));
                    tokio::time::sleep_until(at.into()).await;
                }
                continue;
            }
            let first = next;
            records.fill(&mut builder, &mut next, due, start);
            let count = next - first;
            let bytes = builder.bytes();
            let batches = builder.take(plan.load.compression.compression())?;
            let sent = Sent {
                first,
                records: count,
                bytes,
                ready: Instant::now(),
                partitions: batches.iter().map(|b| (b.partition, b.records)).collect(),
            };
            let timeout_ms = producer.pipeline.request_timeout_ms();
            let request = produce_request(&plan, producer.version, timeout_ms, batches);
            if acks == 0 {
                producer.pipeline.send_without_response(&request).await?;
                counters.add(count, bytes);
                outcome.recorder.count(start.elapsed(), count, bytes);
            } else {
                let pending = producer.pipeline.send(&request).await?;
                if sent_tx.send((pending, sent)).await.is_err() {
                    // The acker stopped: its error is the one to report.
                    return Ok(());
                }
            }
            outcome.sent += count;
        }
    }
    .await;
    drop(sent_tx);
    if let Some(acker) = acker {
        let acked = acker.await.context("the acknowledgement task failed")??;
        outcome.recorder.merge(&acked.recorder);
        outcome.errors = acked.errors;
        outcome.first_error = acked.first_error;
    }
    result?;
    // Keep the connection open until every response is in (the acker has joined).
    drop(producer);
    Ok(outcome)
}

/// The acker: awaits responses in order, counts what was acknowledged and records latencies.
async fn acknowledge(
    mut sent: mpsc::Receiver<(Pending<ProduceResponse>, Sent)>,
    schedule: Option<Schedule>,
    (start, warmup): (Instant, Duration),
    counters: Arc<Counters>,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome { recorder: Recorder::after_warmup(warmup), ..Outcome::default() };
    while let Some((pending, request)) = sent.recv().await {
        let response = pending.response().await?;
        let acked = Instant::now();
        let at = acked.duration_since(start);
        let answers: Vec<_> =
            response.responses.iter().flat_map(|t| t.partition_responses.iter()).collect();
        let mut failed = 0u64;
        for &(partition, records) in &request.partitions {
            let error = match answers.iter().find(|a| a.index == partition) {
                None => Some(format!("no answer for partition {partition}")),
                Some(answer) if answer.error_code != 0 => Some(format!(
                    "partition {partition}: {}",
                    describe(answer.error_code, answer.error_message.as_deref())
                )),
                Some(_) => None,
            };
            if let Some(error) = error {
                failed += u64::from(records);
                outcome.first_error.get_or_insert(error);
            }
        }
        outcome.errors += failed;
        counters.errors.fetch_add(failed, std::sync::atomic::Ordering::Relaxed);
        let ok = request.records - failed;
        let ok_bytes = (request.bytes * ok).checked_div(request.records).unwrap_or(0);
        counters.add(ok, ok_bytes);
        outcome.recorder.count(at, ok, ok_bytes);
        if failed > 0 {
            // Which records of a partial failure were acknowledged is unknown with keys: their
            // latency is left out.
            continue;
        }
        match schedule {
            Some(schedule) => {
                let at_ns = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
                for index in request.first..request.first + request.records {
                    let latency_ns = at_ns.saturating_sub(schedule.due_ns(index));
                    outcome.recorder.latency(at, micros(Duration::from_nanos(latency_ns)), 1);
                }
            }
            None => {
                let latency = micros(acked.duration_since(request.ready));
                outcome.recorder.latency(at, latency, request.records);
            }
        }
    }
    Ok(outcome)
}

/// Sums the outcomes of a run's producers.
#[must_use]
pub fn merge(outcomes: &[Outcome]) -> Outcome {
    let mut total = Outcome::default();
    for outcome in outcomes {
        total.recorder.merge(&outcome.recorder);
        total.sent += outcome.sent;
        total.errors += outcome.errors;
        if total.first_error.is_none() {
            total.first_error.clone_from(&outcome.first_error);
        }
    }
    total
}

/// A description of the workload for the report's notes.
#[must_use]
pub fn describe_load(plan: &Plan) -> String {
    let pace = &plan.pace;
    let load = &plan.load;
    let mut pacing = match pace.rate {
        Some(rate) => format!("open loop at {rate} records/s"),
        None => "closed loop (--max)".to_owned(),
    };
    if pace.warmup > 0.0 {
        pacing += &format!("; latency percentiles leave out the first {} s (warm-up)", pace.warmup);
    }
    let name = |value: serde_json::Value| value.as_str().unwrap_or_default().to_owned();
    format!(
        "topic {} ({} partitions), {} producer(s), {} B values, keys {}, acks {}, compression {}, \
         batches up to {} B, {} requests in flight per producer, {pacing}",
        plan.topic.name,
        plan.topic.partitions.len(),
        pace.producers,
        pace.record_bytes,
        name(serde_json::json!(load.keys)),
        name(serde_json::json!(load.acks)),
        name(serde_json::json!(load.compression)),
        load.batch_bytes,
        pace.inflight,
    )
}

/// Runs `cairn-bench produce`.
///
/// # Errors
/// Bad flags, an unreachable broker, a topic that cannot be created, a failed connection.
pub async fn run(args: &ProduceArgs) -> anyhow::Result<Report> {
    args.pace.validate()?;
    let options = kafka::options(&args.target);
    let mut admin = Client::connect(&options).await?;
    let topic = kafka::ensure_topic(&mut admin, &args.target.topic, args.load.partitions).await?;
    let plan =
        Arc::new(Plan { topic, pace: args.pace.clone(), load: args.load.clone(), stamp: false });
    let producers = connect(&options, &plan).await?;
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let monitor = Monitor::start(
        "produce",
        Arc::clone(&counters),
        start,
        !args.output.quiet,
        args.output.broker_pid,
    );
    let outcomes = join(spawn(producers, &plan, start, &counters)).await;
    let elapsed = start.elapsed();
    let observed = monitor.stop().await;
    let total = merge(&outcomes?);

    let config = serde_json::to_value(args)?;
    let mut report = Report::of_run("produce", config, &total.recorder, "ack", &observed, elapsed);
    report.errors = total.errors;
    report.values.insert("records_sent".to_owned(), total.sent as f64);
    report.notes.push(describe_load(&plan));
    report.notes.push(
        "bytes are record keys and values; ack latency is per record: acknowledgement time \
         minus the record's scheduled send time (--rate) or the time its request was ready \
         (--max)"
            .to_owned(),
    );
    if let Some(error) = &total.first_error {
        report.notes.push(format!("first produce error: {error}"));
    }
    if args.load.acks.wire() == 0 {
        report.notes.push("acks=0: records count when written; no latency".to_owned());
    }
    Ok(report)
}
