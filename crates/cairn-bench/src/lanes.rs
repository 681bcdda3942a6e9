//! A producer's connections, one per leader broker ([`Lane`]), the task that awaits each
//! connection's answers (the *acker*) and the batches waiting to be sent again ([`Retries`]).
//!
//! Every batch in flight is a [`Flight`]. Its acker resolves it exactly once: acknowledged
//! (counted, latency recorded), failed (counted as an error), or refused in a way a Kafka
//! producer retries ([`crate::routes::retriable`], or the connection failed before an answer):
//! then it goes back to the sender through [`Retries`] with the same bytes and the same ready
//! time, and is resolved again when its new answer comes. Records are therefore counted once,
//! whatever the number of attempts, and a retried record's latency includes its retries. A
//! flight is retried until [`Flight::deadline`] (the request timeout after it was ready), after
//! which it fails.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cairn_client::codes::describe;
use cairn_client::{Client, Options, Pending, Pipeline};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::produce::Outcome;
use crate::routes::{NodeId, Routes, retriable};
use crate::schedule::Schedule;
use crate::stats::{Counters, Recorder, micros};
use crate::workload::PartitionBatch;

/// One partition's batch on its way: what resending it and accounting for it need.
#[derive(Clone, Debug)]
pub struct Flight {
    /// The batch, kept to be sent again as it is.
    pub batch: PartitionBatch,
    /// Its key and value bytes.
    pub bytes: u64,
    /// When its request was first ready (`--max` latency starts here).
    pub ready: Instant,
    /// With a schedule (`--rate`): each record's scheduled time, ns since the run's start.
    pub dues: Vec<u64>,
    /// After this it is not sent again: a refusal fails it.
    pub deadline: Instant,
    /// Sends so far.
    pub attempts: u32,
}

/// One request on a lane: its flights, in the request's order.
pub struct Sent {
    /// The batches of the request.
    pub flights: Vec<Flight>,
}

/// What the ackers hand back to the sender, shared by a producer's lanes.
#[derive(Default)]
pub struct Retries {
    /// Flights to send again, oldest first. Bounded by the flights in flight: each comes from
    /// one, and the sender takes them before it builds new requests.
    queue: Mutex<VecDeque<Flight>>,
    /// Lanes whose connection failed, to be closed and dialled again.
    failed: Mutex<Vec<NodeId>>,
    /// Set when a refusal came without a usable leader hint: the routes need a Metadata refresh.
    refresh: Mutex<bool>,
    /// Woken on every resolution or retry.
    pub notify: Notify,
    /// Flights sent and not yet resolved (retries waiting included).
    pub outstanding: AtomicU64,
    /// Batches sent again.
    pub batches_retried: AtomicU64,
    /// Records sent again.
    pub records_retried: AtomicU64,
}

impl Retries {
    /// The flights waiting to be sent again, all of them.
    pub fn take(&self) -> Vec<Flight> {
        lock(&self.queue).drain(..).collect()
    }

    /// Lanes that failed since the last call.
    pub fn take_failed(&self) -> Vec<NodeId> {
        std::mem::take(&mut *lock(&self.failed))
    }

    /// Whether a refresh was asked for since the last call (and clears the request).
    pub fn take_refresh(&self) -> bool {
        std::mem::take(&mut *lock(&self.refresh))
    }

    /// Asks for a Metadata refresh.
    pub fn ask_refresh(&self) {
        *lock(&self.refresh) = true;
    }

    /// Whether no flight waits to be sent again.
    pub fn is_empty(&self) -> bool {
        lock(&self.queue).is_empty()
    }

    /// Queues `flight` to be sent again.
    pub fn retry(&self, flight: Flight) {
        self.batches_retried.fetch_add(1, Ordering::Relaxed);
        self.records_retried.fetch_add(u64::from(flight.batch.records), Ordering::Relaxed);
        lock(&self.queue).push_back(flight);
        self.notify.notify_one();
    }

    /// One flight is resolved (acknowledged or failed).
    pub fn resolved(&self) {
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
        self.notify.notify_one();
    }
}

/// A mutex's guard; a panicked holder (a bug elsewhere) leaves data that is still consistent
/// (every critical section is one push or take).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What every acker of a producer shares.
#[derive(Clone)]
pub struct AckContext {
    /// The run's schedule (`--rate`).
    pub schedule: Option<Schedule>,
    /// The run's start.
    pub start: Instant,
    /// Latencies before this are left out of the summary.
    pub warmup: Duration,
    /// The run's live counters.
    pub counters: Arc<Counters>,
    /// The producer's routes (leader hints go in).
    pub routes: Arc<Mutex<Routes>>,
    /// The way back to the sender.
    pub retries: Arc<Retries>,
}

/// A connection to one leader broker, and its acker.
pub struct Lane {
    /// The connection.
    pub pipeline: Pipeline,
    /// Its Produce version.
    pub version: i16,
    /// To the acker, in send order, as deep as the in-flight bound.
    pub sent: mpsc::Sender<(Pending<ProduceResponse>, Sent)>,
    /// The acker; its outcome is the lane's.
    pub acker: JoinHandle<Outcome>,
}

impl Lane {
    /// Opens a lane to `address`, the broker `node`.
    ///
    /// # Errors
    /// A failed connection or a broker without a usable Produce version.
    pub async fn open(
        options: &Options,
        address: &str,
        node: NodeId,
        inflight: usize,
        context: AckContext,
    ) -> anyhow::Result<Lane> {
        let mut options = options.clone();
        options.bootstrap = address.to_owned();
        let pipeline = Client::connect(&options).await?.pipeline(inflight)?;
        let version = pipeline.version_of::<ProduceRequest>()?;
        Ok(Lane::start(pipeline, version, node, inflight, context))
    }

    /// A lane over an open connection to broker `node`: starts its acker.
    #[must_use]
    pub fn start(
        pipeline: Pipeline,
        version: i16,
        node: NodeId,
        inflight: usize,
        context: AckContext,
    ) -> Lane {
        let (sent, receiver) = mpsc::channel(inflight.max(1));
        let acker = tokio::spawn(acknowledge(receiver, node, context));
        Lane { pipeline, version, sent, acker }
    }
}

/// The acker of the lane to `node`: awaits answers in order and resolves every flight.
async fn acknowledge(
    mut sent: mpsc::Receiver<(Pending<ProduceResponse>, Sent)>,
    node: NodeId,
    context: AckContext,
) -> Outcome {
    let mut outcome =
        Outcome { recorder: Recorder::after_warmup(context.warmup), ..Outcome::default() };
    while let Some((pending, request)) = sent.recv().await {
        let answer = pending.response().await;
        let acked = Instant::now();
        let at = acked.duration_since(context.start);
        let response = match answer {
            Ok(response) => response,
            Err(error) => {
                // The connection failed: the outcome of every request on it is unknown.
                lock(&context.routes).drop_leader(node);
                lock(&context.retries.failed).push(node);
                context.retries.ask_refresh();
                for flight in request.flights {
                    let reason = format!("connection to broker {node}: {error}");
                    retry_or_fail(&context, &mut outcome, flight, acked, reason);
                }
                continue;
            }
        };
        if !lock(&context.routes).take_hints(&response) {
            context.retries.ask_refresh();
        }
        for flight in request.flights {
            let partition = flight.batch.partition;
            let code = response
                .responses
                .iter()
                .flat_map(|t| t.partition_responses.iter())
                .find(|a| a.index == partition)
                .map(|a| (a.error_code, a.error_message.as_ref().map(ToString::to_string)));
            match code {
                Some((0, _)) => acknowledged(&context, &mut outcome, &flight, acked, at),
                Some((code, message)) if retriable(code) => {
                    let reason =
                        format!("partition {partition}: {}", describe(code, message.as_deref()));
                    retry_or_fail(&context, &mut outcome, flight, acked, reason);
                }
                Some((code, message)) => {
                    let reason =
                        format!("partition {partition}: {}", describe(code, message.as_deref()));
                    failed(&context, &mut outcome, &flight, reason);
                }
                None => failed(
                    &context,
                    &mut outcome,
                    &flight,
                    format!("no answer for partition {partition}"),
                ),
            }
        }
    }
    outcome
}

/// Counts an acknowledged flight and records its records' latencies.
fn acknowledged(
    context: &AckContext,
    outcome: &mut Outcome,
    flight: &Flight,
    acked: Instant,
    at: Duration,
) {
    let records = u64::from(flight.batch.records);
    context.counters.add(records, flight.bytes);
    outcome.recorder.count(at, records, flight.bytes);
    if context.schedule.is_some() {
        let at_ns = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
        for &due in &flight.dues {
            let latency = Duration::from_nanos(at_ns.saturating_sub(due));
            outcome.recorder.latency(at, micros(latency), 1);
        }
    } else {
        outcome.recorder.latency(at, micros(acked.duration_since(flight.ready)), records);
    }
    context.retries.resolved();
}

/// Counts a failed flight.
fn failed(context: &AckContext, outcome: &mut Outcome, flight: &Flight, reason: String) {
    let records = u64::from(flight.batch.records);
    outcome.errors += records;
    context.counters.errors.fetch_add(records, Ordering::Relaxed);
    outcome.first_error.get_or_insert(reason);
    context.retries.resolved();
}

/// Hands a refused flight back to the sender, or fails it past its deadline.
fn retry_or_fail(
    context: &AckContext,
    outcome: &mut Outcome,
    flight: Flight,
    now: Instant,
    reason: String,
) {
    if now >= flight.deadline {
        let reason = format!("{reason} (gave up after {} attempts)", flight.attempts);
        failed(context, outcome, &flight, reason);
    } else {
        context.retries.retry(flight);
    }
}
