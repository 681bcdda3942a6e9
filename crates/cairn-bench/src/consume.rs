//! `cairn-bench consume`, and the consumers `e2e` runs too.
//!
//! Each consumer has its own connection and a share of the partitions (partition `i` of the
//! sorted list goes to consumer `i mod N`), and fetches all of its unfinished partitions in
//! one Fetch request at a time (a full fetch, no fetch session; `min_bytes` 1). Every record is
//! decoded (CRC checked, decompressed), as a real consumer would.
//!
//! Counted bytes are record keys and values (as `produce` counts them); the fetched record-set
//! bytes are reported beside them as `wire_bytes`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cairn_client::codes::describe;
use cairn_client::fetch::{self, Limits};
use cairn_client::records::{DecodeError, decode_batches};
use cairn_client::{Client, Pending, Pipeline};
use cairn_types::batch::Frames;
use cairn_types::limits::BATCH_BYTES_MAX;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::ConsumeArgs;
use crate::kafka::{self, EARLIEST, LATEST, Topic};
use crate::monitor::Monitor;
use crate::report::Report;
use crate::stats::{Counters, Recorder, micros};
use crate::workload::STAMP_BYTES;

/// Kafka's OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// Where one partition stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The partition index.
    pub partition: i32,
    /// The next offset to fetch.
    pub next: i64,
    /// Stop before this offset (`None`: follow).
    pub end: Option<i64>,
}

impl Position {
    fn done(&self) -> bool {
        self.end.is_some_and(|end| self.next >= end)
    }
}

/// Deals `positions` to `consumers` (> 0): position `i` to consumer `i mod consumers`.
#[must_use]
pub fn assign(positions: &[Position], consumers: usize) -> Vec<Vec<Position>> {
    let consumers = consumers.max(1);
    let mut shares = vec![Vec::new(); consumers];
    for (index, position) in positions.iter().enumerate() {
        shares[index % consumers].push(*position);
    }
    shares
}

/// When consumers stop, besides reaching every partition's end.
#[derive(Clone, Debug)]
pub struct Stop {
    /// After this many records in total (all consumers).
    pub records_max: Option<u64>,
    /// Set by `e2e` when the producers are done: the records to expect in total, and the
    /// deadline for receiving them.
    pub expected: Option<watch::Receiver<Option<(u64, Instant)>>>,
}

impl Stop {
    fn reached(&self, counters: &Counters) -> bool {
        let consumed = counters.records.load(Ordering::Relaxed);
        if self.records_max.is_some_and(|max| consumed >= max) {
            return true;
        }
        self.expected.as_ref().is_some_and(|expected| {
            expected
                .borrow()
                .is_some_and(|(total, deadline)| consumed >= total || Instant::now() >= deadline)
        })
    }
}

/// What every consumer of a run shares.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The topic.
    pub topic: Topic,
    /// Most bytes per partition per fetch.
    pub fetch_partition_bytes: i32,
    /// Most bytes per fetch.
    pub fetch_bytes: i32,
    /// Longest a fetch waits on the broker.
    pub max_wait_ms: i32,
    /// `Some(origin)`: read each value's scheduled time (ns since `origin`, see
    /// `workload::STAMP_BYTES`) and record receive time minus it per record (`e2e`); `None`:
    /// record each fetch's round trip.
    pub stamps_from: Option<Instant>,
    /// When to stop besides the partitions' ends.
    pub stop: Stop,
    /// Latencies completed before this are left out of the summary ([`Recorder::warmup`]).
    pub warmup: Duration,
}

/// What one consumer did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Records and key+value bytes consumed; fetch round trips or end-to-end latencies.
    pub recorder: Recorder,
    /// Record-set bytes received.
    pub wire_bytes: u64,
    /// Fetch requests made.
    pub fetches: u64,
}

/// Starts one consumer per share on its own (already connected) client.
#[must_use]
pub fn spawn(
    clients: Vec<Client>,
    shares: Vec<Vec<Position>>,
    plan: &Arc<Plan>,
    start: Instant,
    counters: &Arc<Counters>,
) -> Vec<JoinHandle<anyhow::Result<Outcome>>> {
    clients
        .into_iter()
        .zip(shares)
        .map(|(client, share)| {
            let plan = Arc::clone(plan);
            let counters = Arc::clone(counters);
            tokio::spawn(async move { consume(client, share, plan, start, counters).await })
        })
        .collect()
}

/// Joins consumer tasks and sums their outcomes.
///
/// # Errors
/// A consumer's error, or a consumer task that panicked.
pub async fn join(tasks: Vec<JoinHandle<anyhow::Result<Outcome>>>) -> anyhow::Result<Outcome> {
    let mut total = Outcome::default();
    for task in tasks {
        let outcome = task.await.context("a consumer task failed")??;
        total.recorder.merge(&outcome.recorder);
        total.wire_bytes += outcome.wire_bytes;
        total.fetches += outcome.fetches;
    }
    Ok(total)
}

/// One consumer's fetch loop. Like Kafka's consumer it keeps the next fetch in flight while it
/// decodes and checks the records of the last one: each partition's next offset comes from the
/// batch headers alone.
async fn consume(
    client: Client,
    mut positions: Vec<Position>,
    plan: Arc<Plan>,
    start: Instant,
    counters: Arc<Counters>,
) -> anyhow::Result<Outcome> {
    let topic = &plan.topic;
    let by_id = client.version_of::<FetchRequest>()? >= 13;
    if by_id && topic.id.is_nil() {
        bail!("the broker reported no id for topic {}, which its Fetch version needs", topic.name);
    }
    let mut pipeline = client.pipeline(2)?;
    let mut outcome =
        Outcome { recorder: Recorder::after_warmup(plan.warmup), ..Outcome::default() };
    let mut next_fetch = fetch(&mut pipeline, &positions, &plan, by_id).await?;
    loop {
        let Some((pending, asked)) = next_fetch.take() else { return Ok(outcome) };
        let response = pending.response().await.context("fetching records")?;
        let received = Instant::now();
        let at = received.duration_since(start);
        outcome.fetches += 1;
        if response.error_code != 0 {
            bail!("fetch failed: {}", describe(response.error_code, None));
        }
        let answers: Vec<PartitionData> =
            response.responses.into_iter().flat_map(|t| t.partitions).collect();
        let fetched_from = positions.clone();
        for data in answers.iter().filter(|data| data.error_code == 0) {
            if let Some(position) =
                positions.iter_mut().find(|p| p.partition == data.partition_index)
            {
                let set = data.records.as_deref().unwrap_or_default();
                position.next = after_last_batch(set, position.next);
            }
        }
        if !plan.stop.reached(&counters) {
            next_fetch = fetch(&mut pipeline, &positions, &plan, by_id).await?;
        }
        let received_ns = plan.stamps_from.map(|origin| received.duration_since(origin).as_nanos());
        let mut records = 0u64;
        let mut bytes = 0u64;
        for data in answers {
            let Some(from) = fetched_from.iter().find(|p| p.partition == data.partition_index)
            else {
                continue;
            };
            let taken = take(data, *from, &topic.name, received_ns, at, &mut outcome)?;
            records += taken.0;
            bytes += taken.1;
        }
        if plan.stamps_from.is_none() {
            outcome.recorder.latency(at, micros(received.duration_since(asked)), 1);
        }
        counters.add(records, bytes);
        outcome.recorder.count(at, records, bytes);
        if plan.stop.reached(&counters) {
            return Ok(outcome);
        }
    }
}

/// Sends a fetch for every partition not done; `None` when all are.
async fn fetch(
    pipeline: &mut Pipeline,
    positions: &[Position],
    plan: &Plan,
    by_id: bool,
) -> anyhow::Result<Option<(Pending<FetchResponse>, Instant)>> {
    let limits = Limits {
        partition_bytes: plan.fetch_partition_bytes,
        bytes: plan.fetch_bytes,
        max_wait_ms: plan.max_wait_ms,
    };
    let unfinished = positions.iter().filter(|p| !p.done()).map(|p| (p.partition, p.next));
    let topic = &plan.topic;
    let Some(request) = fetch::request(&topic.name, by_id.then_some(topic.id), unfinished, limits)
    else {
        return Ok(None);
    };
    let asked = Instant::now();
    let pending = pipeline.send(&request).await.context("fetching records")?;
    Ok(Some((pending, asked)))
}

/// The offset after the last whole batch of `set` (headers only, no checksums), or `from` when
/// it holds none: where the partition's next fetch starts. [`take`] checks the records later.
fn after_last_batch(set: &[u8], from: i64) -> i64 {
    Frames::new(set, BATCH_BYTES_MAX)
        .fold(from, |next, (_, header)| next.max(header.next_offset().0 as i64))
}

/// Takes the records of one partition's fetch answer (none at or past the position's end),
/// starting at `position` (where it was fetched from); records end-to-end latencies if
/// `received_ns` is given; returns the records and their key+value bytes.
fn take(
    data: PartitionData,
    position: Position,
    topic: &str,
    received_ns: Option<u128>,
    at: Duration,
    outcome: &mut Outcome,
) -> anyhow::Result<(u64, u64)> {
    let partition = position.partition;
    match data.error_code {
        0 => {}
        OFFSET_OUT_OF_RANGE => bail!(
            "offset {} is out of range for {topic}-{partition} (it holds {}..{})",
            position.next,
            data.log_start_offset,
            data.high_watermark
        ),
        code => bail!("fetching {topic}-{partition}: {}", describe(code, None)),
    }
    let set = data.records.unwrap_or_default();
    outcome.wire_bytes += set.len() as u64;
    let end = position.end;
    let recorder = &mut outcome.recorder;
    let (mut records, mut bytes) = (0u64, 0u64);
    let decoded = decode_batches::<Infallible>(&set, position.next, |record| {
        if end.is_some_and(|end| record.offset >= end) {
            return Ok(false);
        }
        records += 1;
        let value = record.value.unwrap_or_default();
        bytes += (record.key.map_or(0, <[u8]>::len) + value.len()) as u64;
        if let (Some(now_ns), Some(stamp)) = (received_ns, value.get(..STAMP_BYTES)) {
            let mut due = [0u8; STAMP_BYTES];
            due.copy_from_slice(stamp);
            let due_ns = u128::from(u64::from_be_bytes(due));
            let latency_ns = u64::try_from(now_ns.saturating_sub(due_ns)).unwrap_or(u64::MAX);
            recorder.latency(at, micros(Duration::from_nanos(latency_ns)), 1);
        }
        Ok(true)
    });
    match decoded {
        // A broker answers with the first batch whole however large (KIP-74); without one,
        // fetching again from the same offset would loop forever.
        Ok(decoded) if decoded.next_offset == position.next && !set.is_empty() => {
            bail!("{topic}-{partition}: the broker sent no whole batch at offset {}", position.next)
        }
        Ok(_) => {}
        Err(DecodeError::Batch(reason)) => {
            bail!("malformed records from {topic}-{partition}: {reason}")
        }
        Err(DecodeError::Visit(never)) => match never {},
    }
    Ok((records, bytes))
}

/// Runs `cairn-bench consume`.
///
/// # Errors
/// Bad flags, an unreachable broker, a missing topic, a failed fetch.
pub async fn run(args: &ConsumeArgs) -> anyhow::Result<Report> {
    if args.consumers == 0 {
        bail!("--consumers must be at least 1");
    }
    let options = kafka::options(&args.target);
    let mut admin = Client::connect(&options).await?;
    let topic = kafka::existing_topic(&mut admin, &args.target.topic).await?;
    let earliest = kafka::offsets(&mut admin, &topic.name, &topic.partitions, EARLIEST).await?;
    let latest = kafka::offsets(&mut admin, &topic.name, &topic.partitions, LATEST).await?;
    let positions: Vec<Position> = topic
        .partitions
        .iter()
        .zip(earliest.iter().zip(&latest))
        .map(|(&partition, (&next, &end))| Position { partition, next, end: Some(end) })
        .collect();
    let available: i64 = positions.iter().map(|p| p.end.unwrap_or(p.next) - p.next).sum();
    let shares = assign(&positions, args.consumers);
    let mut clients = Vec::with_capacity(shares.len());
    for _ in 0..shares.len() {
        clients.push(Client::connect(&options).await?);
    }
    let plan = Arc::new(Plan {
        topic,
        fetch_partition_bytes: args.fetch_partition_bytes,
        fetch_bytes: args.fetch_bytes,
        max_wait_ms: args.max_wait_ms,
        stamps_from: None,
        stop: Stop { records_max: args.records, expected: None },
        warmup: Duration::ZERO,
    });
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let monitor = Monitor::start(
        "consume",
        Arc::clone(&counters),
        start,
        !args.output.quiet,
        args.output.broker_pid.clone(),
    );
    let outcome = join(spawn(clients, shares, &plan, start, &counters)).await;
    let elapsed = start.elapsed();
    let observed = monitor.stop().await;
    let outcome = outcome?;

    let config = serde_json::to_value(args)?;
    let mut report =
        Report::of_run("consume", config, &outcome.recorder, "fetch", &observed, elapsed);
    report.values.insert("records_available".to_owned(), available as f64);
    report.values.insert("wire_bytes".to_owned(), outcome.wire_bytes as f64);
    report.values.insert(
        "wire_mb_per_s".to_owned(),
        outcome.wire_bytes as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6,
    );
    report.values.insert("fetches".to_owned(), outcome.fetches as f64);
    report.notes.push(format!(
        "topic {} ({} partitions), {} consumer(s), from the earliest offsets to the high \
         watermarks at the start{}",
        plan.topic.name,
        plan.topic.partitions.len(),
        args.consumers,
        args.records.map_or(String::new(), |n| format!(" or {n} records"))
    ));
    report.notes.push(
        "bytes are record keys and values (wire_bytes: fetched record sets); fetch latency is \
         per request round trip"
            .to_owned(),
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_dealt_round_robin() {
        let positions: Vec<Position> =
            (0..5).map(|partition| Position { partition, next: 0, end: Some(10) }).collect();
        let shares = assign(&positions, 2);
        let indexes: Vec<Vec<i32>> =
            shares.iter().map(|s| s.iter().map(|p| p.partition).collect()).collect();
        assert_eq!(indexes, [vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(assign(&positions, 8).iter().filter(|s| s.is_empty()).count(), 3);
    }
}
