//! `cairn-bench produce`, and the producers `e2e` runs too.
//!
//! Each producer sends each partition's batch to the partition's leader (`routes.rs`): one
//! pipelined connection ([`cairn_client::Pipeline`], `--inflight` requests awaiting
//! acknowledgement) per leader broker, each request carrying the batches of the partitions that
//! broker leads. On a single node that is one connection whose requests carry one batch per
//! partition. The *sender* assembles requests and writes them; each connection's *acker*
//! (`lanes.rs`) awaits its responses in order, records counts and latencies, and hands refused
//! batches that a Kafka producer retries back to the sender, which sends them again once the
//! routes are updated (after [`RETRY_BACKOFF`]). A record is counted once, when acknowledged.
//!
//! Pacing:
//! - `--rate`: the sender follows the open-loop [`Schedule`]. It wakes when the next record is
//!   due, takes every record due by now (falling behind only makes the next request larger, up
//!   to one full batch per partition), and sends. There is no linger: a request leaves as soon
//!   as its records are due. Latency, per record, is ack time minus the record's scheduled time.
//! - `--max`: the sender fills a whole request (one full batch per partition) and sends it as
//!   soon as an in-flight slot is free. Latency, per record, is ack time minus the time its
//!   request was ready (so it includes waiting for a slot, and retries, as a producer's
//!   `send()` would).
//!
//! With `--acks 0` the broker does not answer: records count when written to the socket, no
//! latency exists and nothing is retried.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use cairn_client::{Client, Options, Pipeline};
use cairn_types::ProducerId;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest};
use tokio::task::JoinHandle;

use crate::cli::{KafkaLoad, Pace, ProduceArgs};
use crate::kafka::{self, Topic, topic_name};
use crate::lanes::{AckContext, Flight, Lane, Retries, Sent};
use crate::monitor::Monitor;
use crate::report::Report;
use crate::routes::{self, NodeId, Routes};
use crate::schedule::{Schedule, share};
use crate::stats::{Counters, Recorder};
use crate::workload::{KeyGen, PartitionBatch, Placement, RequestBuilder, STAMP_BYTES, Values};

/// The least time between two sends of refused batches (Kafka's `retry.backoff.ms`, shorter:
/// a failover measurement is only as precise as this).
pub const RETRY_BACKOFF: Duration = Duration::from_millis(10);
/// Longest a run waits, before its clock starts, for Metadata to name a leader of every
/// partition.
pub const LEADERS_WAIT: Duration = Duration::from_secs(60);
/// Between two Metadata requests of that wait.
const LEADERS_POLL: Duration = Duration::from_millis(50);

/// What every producer of a run shares.
pub struct Plan {
    /// The topic.
    pub topic: Topic,
    /// Its brokers and partition leaders when the run starts.
    pub routes: Routes,
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
    /// Records written to a connection for the first time (resends not counted).
    pub sent: u64,
    /// Records whose partition answered with an error that is not retried, or whose retries
    /// ran past the request timeout.
    pub errors: u64,
    /// The first such error, described.
    pub first_error: Option<String>,
    /// Batches sent again after a retriable refusal or a failed connection.
    pub batches_retried: u64,
    /// Their records.
    pub records_retried: u64,
}

/// A producer with its connections open, ready to start.
pub struct Producer {
    index: u64,
    /// A connection to each leader of the plan's routes, and its Produce version.
    connections: BTreeMap<NodeId, (Pipeline, i16)>,
    /// How to connect (the bootstrap broker is asked first on a refresh).
    options: Options,
    /// Its producer id and epoch, if idempotent.
    producer_id: Option<(ProducerId, i16)>,
}

/// The routes of `topic` once Metadata names a leader for each of its partitions (or, after
/// [`LEADERS_WAIT`], as they are: the producers retry until leaders are elected).
///
/// # Errors
/// If no broker answers Metadata.
pub async fn leaders(options: &Options, topic: &Topic) -> anyhow::Result<Routes> {
    let waited = Instant::now();
    loop {
        let routes = routes::fetch(options, [options.bootstrap.clone()], &topic.name).await?;
        let led = topic.partitions.iter().all(|&p| routes.leader(p).is_some());
        if led || waited.elapsed() > LEADERS_WAIT {
            return Ok(routes);
        }
        tokio::time::sleep(LEADERS_POLL).await;
    }
}

/// Opens the producers' connections (before the clock starts, so that connecting is not
/// measured): one per leader broker each.
///
/// # Errors
/// A failed connection, or a broker without a usable Produce version.
pub async fn connect(options: &Options, plan: &Plan) -> anyhow::Result<Vec<Producer>> {
    let mut leaders: Vec<(NodeId, String)> = plan
        .topic
        .partitions
        .iter()
        .filter_map(|&p| plan.routes.leader(p))
        .map(|(id, address)| (id, address.to_owned()))
        .collect();
    leaders.sort_unstable();
    leaders.dedup();
    let mut producers = Vec::with_capacity(plan.pace.producers);
    for index in 0..plan.pace.producers {
        let mut connections = BTreeMap::new();
        for (node, address) in &leaders {
            let mut options = options.clone();
            options.bootstrap.clone_from(address);
            let pipeline = Client::connect(&options).await?.pipeline(plan.pace.inflight)?;
            let version = produce_version(&pipeline, plan)?;
            connections.insert(*node, (pipeline, version));
        }
        let producer_id =
            if plan.load.idempotent { Some(init_producer_id(options).await?) } else { None };
        let options = options.clone();
        producers.push(Producer { index: index as u64, connections, options, producer_id });
    }
    Ok(producers)
}

/// A new idempotent producer's id and epoch (InitProducerId, asked of the bootstrap broker).
async fn init_producer_id(options: &Options) -> anyhow::Result<(ProducerId, i16)> {
    let mut client = Client::connect(options).await?;
    let response = client
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        )
        .await?;
    if response.error_code != 0 {
        bail!("InitProducerId answered error {}", response.error_code);
    }
    Ok((ProducerId(response.producer_id.0), response.producer_epoch))
}

/// The Produce version of a connection, checked against what the topic allows.
fn produce_version(pipeline: &Pipeline, plan: &Plan) -> anyhow::Result<i16> {
    let version = pipeline.version_of::<ProduceRequest>()?;
    if version >= 13 && plan.topic.id.is_nil() {
        bail!(
            "the broker reported no id for topic {}, which Produce v{version} needs",
            plan.topic.name
        );
    }
    Ok(version)
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
    /// With a schedule: the scheduled times of the records in each partition's open batch.
    dues: Vec<Vec<u64>>,
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
            if let Some(schedule) = self.schedule {
                self.dues[partition as usize].push(schedule.due_ns(*next));
            }
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
    batches: impl Iterator<Item = PartitionBatch>,
) -> ProduceRequest {
    let data = batches
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

/// A producer's sending side: its lanes by leader, its routes, and what it resolved itself.
struct Sender {
    plan: Arc<Plan>,
    options: Options,
    lanes: BTreeMap<NodeId, Lane>,
    context: AckContext,
    /// Flights failed by the sender (unroutable past their deadline), and the retired lanes'
    /// outcomes.
    outcome: Outcome,
    /// When refused batches were last sent again.
    last_resend: Option<Instant>,
    /// The ackers of lanes closed after a failure, joined at the end.
    retired: Vec<JoinHandle<Outcome>>,
}

impl Sender {
    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.context.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lane to `node`, opened if there is none.
    async fn lane(&mut self, node: NodeId, address: &str) -> anyhow::Result<&mut Lane> {
        if !self.lanes.contains_key(&node) {
            let context = self.context.clone();
            let lane =
                Lane::open(&self.options, address, node, self.plan.pace.inflight, context).await?;
            produce_version(&lane.pipeline, &self.plan)?;
            self.lanes.insert(node, lane);
        }
        self.lanes.get_mut(&node).context("the lane was just opened")
    }

    /// Sends `flights`, each to its partition's leader; those without a known leader wait for
    /// a refresh (or fail, past their deadline).
    async fn send(&mut self, flights: Vec<Flight>) -> anyhow::Result<()> {
        let (routed, unrouted) = self.routes().split(flights, |f| f.batch.partition);
        if !unrouted.is_empty() {
            self.context.retries.ask_refresh();
        }
        for flight in unrouted {
            self.defer(flight, "no leader known");
        }
        for (node, flights) in routed {
            self.send_to(node, flights).await?;
        }
        Ok(())
    }

    /// Sends `flights` in one request to `node`.
    async fn send_to(&mut self, node: NodeId, mut flights: Vec<Flight>) -> anyhow::Result<()> {
        let Some(address) = self.routes().brokers.get(&node).cloned() else {
            flights.into_iter().for_each(|f| self.defer(f, "leader without an address"));
            return Ok(());
        };
        let plan = Arc::clone(&self.plan);
        let acks = plan.load.acks.wire();
        let lane = match self.lane(node, &address).await {
            Ok(lane) => lane,
            Err(error) => {
                self.lane_failed(node);
                let reason = format!("connecting to broker {node}: {error:#}");
                flights.into_iter().for_each(|f| self.defer(f, &reason));
                return Ok(());
            }
        };
        flights.iter_mut().for_each(|f| f.attempts += 1);
        let timeout_ms = lane.pipeline.request_timeout_ms();
        let batches = flights.iter().map(|f| f.batch.clone());
        let request = produce_request(&plan, lane.version, timeout_ms, batches);
        if acks == 0 {
            lane.pipeline.send_without_response(&request).await?;
            let at = self.context.start.elapsed();
            for flight in &flights {
                let records = u64::from(flight.batch.records);
                self.context.counters.add(records, flight.bytes);
                self.outcome.recorder.count(at, records, flight.bytes);
                // Written is all acks=0 gets: resolved.
                self.context.retries.resolved();
            }
            return Ok(());
        }
        match lane.pipeline.send(&request).await {
            Ok(pending) => {
                if lane.sent.send((pending, Sent { flights })).await.is_err() {
                    bail!("the acknowledgement task of broker {node} stopped");
                }
            }
            Err(error) => {
                self.lane_failed(node);
                let reason = format!("sending to broker {node}: {error}");
                flights.into_iter().for_each(|f| self.defer(f, &reason));
            }
        }
        Ok(())
    }

    /// The connection to `node` failed: route nothing there until a refresh.
    fn lane_failed(&mut self, node: NodeId) {
        self.routes().drop_leader(node);
        self.context.retries.ask_refresh();
        if let Some(lane) = self.lanes.remove(&node) {
            // Its acker resolves what was in flight on it; its outcome is merged at the end.
            self.retired.push(lane.acker);
        }
    }

    /// Hands `flight` back to the retry queue, or fails it past its deadline.
    fn defer(&mut self, flight: Flight, reason: &str) {
        if Instant::now() < flight.deadline {
            self.context.retries.retry(flight);
            return;
        }
        let records = u64::from(flight.batch.records);
        self.outcome.errors += records;
        self.context.counters.errors.fetch_add(records, Ordering::Relaxed);
        let partition = flight.batch.partition;
        self.outcome.first_error.get_or_insert_with(|| {
            format!("partition {partition}: {reason} (gave up after {} attempts)", flight.attempts)
        });
        self.context.retries.resolved();
    }

    /// Sends refused batches again, after [`RETRY_BACKOFF`] and, if asked for, a Metadata
    /// refresh. Closes the lanes whose connection failed first.
    async fn resend(&mut self) -> anyhow::Result<()> {
        for node in self.context.retries.take_failed() {
            if let Some(lane) = self.lanes.remove(&node) {
                self.retired.push(lane.acker);
            }
        }
        if self.context.retries.is_empty() {
            return Ok(());
        }
        if let Some(last) = self.last_resend {
            tokio::time::sleep_until((last + RETRY_BACKOFF).into()).await;
        }
        if self.context.retries.take_refresh() {
            self.refresh().await;
        }
        let flights = self.context.retries.take();
        self.last_resend = Some(Instant::now());
        self.send(flights).await
    }

    /// New routes from any broker that answers; the old ones stay if none does.
    async fn refresh(&mut self) {
        let mut addresses = vec![self.options.bootstrap.clone()];
        addresses.extend(self.routes().brokers.values().cloned());
        addresses.dedup();
        match routes::fetch(&self.options, addresses, &self.plan.topic.name).await {
            Ok(fresh) => *self.routes() = fresh,
            // Asked again at the next resend.
            Err(_) => self.context.retries.ask_refresh(),
        }
    }

    /// After the last new request: resends refused batches until every flight is resolved.
    async fn drain(&mut self) -> anyhow::Result<()> {
        loop {
            self.resend().await?;
            if self.context.retries.outstanding.load(Ordering::Acquire) == 0 {
                return Ok(());
            }
            if self.context.retries.is_empty() {
                self.context.retries.notify.notified().await;
            }
        }
    }

    /// Closes every lane and returns the producer's outcome: its own and every acker's.
    async fn close(mut self) -> anyhow::Result<Outcome> {
        let lanes = std::mem::take(&mut self.lanes);
        self.retired.extend(lanes.into_values().map(|lane| lane.acker));
        for acker in std::mem::take(&mut self.retired) {
            let acked = acker.await.context("an acknowledgement task failed")?;
            self.outcome.recorder.merge(&acked.recorder);
            self.outcome.errors += acked.errors;
            if self.outcome.first_error.is_none() {
                self.outcome.first_error = acked.first_error;
            }
        }
        let retries = &self.context.retries;
        self.outcome.batches_retried = retries.batches_retried.load(Ordering::Relaxed);
        self.outcome.records_retried = retries.records_retried.load(Ordering::Relaxed);
        Ok(self.outcome)
    }
}

/// One producer: builds requests until its bound, then resends what was refused until every
/// batch is resolved.
async fn produce(
    producer: Producer,
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
    let record_bytes = (keys.key_bytes() + pace.record_bytes) as u64;
    let partitions = u32::try_from(plan.topic.partitions.len()).unwrap_or(u32::MAX);
    let mut builder =
        RequestBuilder::new(partitions, plan.load.batch_bytes, keys.key_bytes(), pace.record_bytes);
    if let Some((id, epoch)) = producer.producer_id {
        builder = builder.idempotent(id, epoch);
    }
    let mut records = Records {
        values: Values::new(pace.record_bytes, k),
        keys,
        stamped: vec![0u8; pace.record_bytes],
        stamp: plan.stamp,
        schedule,
        dues: vec![Vec::new(); partitions as usize],
        producers: pace.producers as u64,
        k,
    };
    let mut sender = sender(producer, &plan, start, counters, schedule);
    let timeout = sender.options.request_timeout;
    let mut next = 0u64;
    let result: anyhow::Result<()> = async {
        loop {
            sender.resend().await?;
            if next >= limit || deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return sender.drain().await;
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
            let ready = Instant::now();
            let flights: Vec<Flight> = builder
                .take(plan.load.compression.compression())?
                .into_iter()
                .map(|batch| Flight {
                    bytes: u64::from(batch.records) * record_bytes,
                    dues: std::mem::take(&mut records.dues[batch.partition as usize]),
                    batch,
                    ready,
                    deadline: ready + timeout,
                    attempts: 0,
                })
                .collect();
            let new = flights.len() as u64;
            sender.context.retries.outstanding.fetch_add(new, Ordering::AcqRel);
            sender.outcome.sent += next - first;
            sender.send(flights).await?;
        }
    }
    .await;
    let outcome = sender.close().await;
    result?;
    outcome
}

/// The sender of `producer`, its connections turned into lanes.
fn sender(
    producer: Producer,
    plan: &Arc<Plan>,
    start: Instant,
    counters: Arc<Counters>,
    schedule: Option<Schedule>,
) -> Sender {
    let context = AckContext {
        schedule,
        start,
        warmup: plan.pace.warmup(),
        counters,
        routes: Arc::new(Mutex::new(plan.routes.clone())),
        retries: Arc::new(Retries::default()),
    };
    let lanes = producer
        .connections
        .into_iter()
        .map(|(node, (pipeline, version))| {
            (node, Lane::start(pipeline, version, node, plan.pace.inflight, context.clone()))
        })
        .collect();
    Sender {
        plan: Arc::clone(plan),
        options: producer.options,
        lanes,
        context,
        outcome: Outcome {
            recorder: Recorder::after_warmup(plan.pace.warmup()),
            ..Outcome::default()
        },
        last_resend: None,
        retired: Vec::new(),
    }
}

/// Sums the outcomes of a run's producers.
#[must_use]
pub fn merge(outcomes: &[Outcome]) -> Outcome {
    let mut total = Outcome::default();
    for outcome in outcomes {
        total.recorder.merge(&outcome.recorder);
        total.sent += outcome.sent;
        total.errors += outcome.errors;
        total.batches_retried += outcome.batches_retried;
        total.records_retried += outcome.records_retried;
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
    let topic = kafka::ensure_topic(
        &mut admin,
        &args.target.topic,
        args.load.partitions,
        args.load.replication_factor,
    )
    .await?;
    let routes = leaders(&options, &topic).await?;
    let plan = Arc::new(Plan {
        topic,
        routes,
        pace: args.pace.clone(),
        load: args.load.clone(),
        stamp: false,
    });
    let producers = connect(&options, &plan).await?;
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let monitor = Monitor::start(
        "produce",
        Arc::clone(&counters),
        start,
        !args.output.quiet,
        args.output.broker_pid.clone(),
    );
    let outcomes = join(spawn(producers, &plan, start, &counters)).await;
    let elapsed = start.elapsed();
    let observed = monitor.stop().await;
    let total = merge(&outcomes?);

    let config = serde_json::to_value(args)?;
    let mut report = Report::of_run("produce", config, &total.recorder, "ack", &observed, elapsed);
    report.errors = total.errors;
    report.values.insert("records_sent".to_owned(), total.sent as f64);
    report.values.insert("batches_retried".to_owned(), total.batches_retried as f64);
    report.values.insert("records_retried".to_owned(), total.records_retried as f64);
    for (&partition, route) in &plan.routes.partitions {
        let leader = route.leader.map_or(-1.0, f64::from);
        report.values.insert(format!("leader.p{partition}"), leader);
    }
    report.notes.push(format!(
        "partition leaders at the start: {}; {} batches ({} records) sent again after a \
         retriable refusal or a failed connection",
        plan.routes.describe_leaders(),
        total.batches_retried,
        total.records_retried
    ));
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
