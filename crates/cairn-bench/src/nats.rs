//! `cairn-bench nats-produce`: the produce workload against NATS JetStream, for comparison.
//!
//! The stream (`--stream`, created if missing) has file storage, `--replicas` replicas (a
//! JetStream cluster for more than one) and subjects `bench.>`; records go round-robin to
//! `bench.0` .. `bench.{N-1}` (`--subjects`). Each producer has its own connection and
//! publishes with `jetstream.publish`, at most `--inflight` publishes awaiting their
//! acknowledgement (a semaphore permit travels with each ack future to the acker task). Pacing
//! and latency are those of `produce`: open loop with `--rate` (latency from the scheduled
//! time), closed loop with `--max` (latency from the publish call). JetStream has no batches:
//! one publish per record.
//!
//! Durability differs: JetStream acknowledges once the message is in its file store (and, with
//! replicas, in a quorum of the replicas' stores), before fsync (`sync_interval`, 2 minutes by
//! default); cairn's acks=all acknowledges after fdatasync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, context::PublishAckFuture, stream};
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::cli::{NatsArgs, Pace};
use crate::monitor::Monitor;
use crate::report::Report;
use crate::schedule::Schedule;
use crate::stats::{Counters, Recorder, micros};
use crate::workload::Values;

/// A publish awaiting its acknowledgement.
struct Published {
    ack: PublishAckFuture,
    /// This producer's index of the record.
    index: u64,
    /// When the publish call began (`--max` latency starts here).
    ready: Instant,
    _permit: OwnedSemaphorePermit,
}

/// Runs `cairn-bench nats-produce`.
///
/// # Errors
/// Bad flags, an unreachable server, a stream that cannot be created, a failed publish.
pub async fn run(args: &NatsArgs) -> anyhow::Result<Report> {
    args.pace.validate()?;
    if args.subjects == 0 {
        bail!("--subjects must be at least 1");
    }
    if args.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    let mut contexts = Vec::with_capacity(args.pace.producers);
    for _ in 0..args.pace.producers {
        let client = async_nats::connect(args.server.as_str())
            .await
            .with_context(|| format!("connecting to NATS at {}", args.server))?;
        contexts.push(jetstream::new(client));
    }
    let Some(first) = contexts.first() else { bail!("--producers must be at least 1") };
    first
        .get_or_create_stream(stream::Config {
            name: args.stream.clone(),
            subjects: vec!["bench.>".to_owned()],
            storage: stream::StorageType::File,
            num_replicas: args.replicas,
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating JetStream stream {}", args.stream))?;
    let subjects: Arc<Vec<String>> =
        Arc::new((0..args.subjects).map(|s| format!("bench.{s}")).collect());

    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let monitor = Monitor::start(
        "nats-produce",
        Arc::clone(&counters),
        start,
        !args.output.quiet,
        args.output.broker_pid.clone(),
    );
    let tasks: Vec<_> = contexts
        .into_iter()
        .enumerate()
        .map(|(index, context)| {
            let pace = args.pace.clone();
            let subjects = Arc::clone(&subjects);
            let counters = Arc::clone(&counters);
            tokio::spawn(async move {
                producer(index as u64, context, pace, subjects, start, counters).await
            })
        })
        .collect();
    let mut total = Recorder::default();
    let mut failure = None;
    for task in tasks {
        match task.await.context("a producer task failed") {
            Ok(Ok(recorder)) => total.merge(&recorder),
            Ok(Err(error)) | Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    let elapsed = start.elapsed();
    let observed = monitor.stop().await;
    if let Some(error) = failure {
        return Err(error);
    }

    let config = serde_json::to_value(args)?;
    let mut report = Report::of_run("nats-produce", config, &total, "ack", &observed, elapsed);
    report.notes.push(format!(
        "stream {} (file storage, {} replica(s)), {} subject(s), {} producer(s), {} B values, \
         {} publishes in flight per producer, {}",
        args.stream,
        args.replicas,
        args.subjects,
        args.pace.producers,
        args.pace.record_bytes,
        args.pace.inflight,
        args.pace.rate.map_or("closed loop (--max)".to_owned(), |rate| format!(
            "open loop at {rate} records/s"
        ))
    ));
    report.notes.push(
        "JetStream acknowledges before fsync by default (sync_interval): compare with cairn \
         --acks 1, or run nats-server with sync_interval: always"
            .to_owned(),
    );
    Ok(report)
}

/// One producer: publishes on the schedule (or as fast as acks allow) and hands each ack future
/// to its acker.
async fn producer(
    k: u64,
    context: jetstream::Context,
    pace: Pace,
    subjects: Arc<Vec<String>>,
    start: Instant,
    counters: Arc<Counters>,
) -> anyhow::Result<Recorder> {
    let producers = pace.producers as u64;
    let schedule = match pace.rate {
        Some(rate) => Some(Schedule::new(rate, producers, k).context("invalid schedule")?),
        None => None,
    };
    let (limit, deadline) = crate::produce::bounds(&pace, schedule, k, start);
    let values = Values::new(pace.record_bytes, k);
    let permits = Arc::new(Semaphore::new(pace.inflight.max(1)));
    let (published, queue) = mpsc::channel::<Published>(pace.inflight.max(1));
    let record_bytes = pace.record_bytes as u64;
    let acker =
        tokio::spawn(acknowledge(queue, schedule, (start, pace.warmup()), counters, record_bytes));

    let result: anyhow::Result<()> = async {
        let mut index = 0u64;
        while index < limit && deadline.is_none_or(|deadline| Instant::now() < deadline) {
            if let Some(schedule) = schedule {
                let due = start + Duration::from_nanos(schedule.due_ns(index));
                tokio::time::sleep_until(due.into()).await;
            }
            let permit =
                Arc::clone(&permits).acquire_owned().await.context("in-flight bound closed")?;
            let ready = Instant::now();
            let subject =
                subjects[((index * producers + k) % subjects.len() as u64) as usize].clone();
            let ack = context
                .publish(subject, Bytes::copy_from_slice(values.value(index)))
                .await
                .context("publishing")?;
            if published.send(Published { ack, index, ready, _permit: permit }).await.is_err() {
                // The acker stopped: its error is the one to report.
                return Ok(());
            }
            index += 1;
        }
        Ok(())
    }
    .await;
    drop(published);
    let recorder = acker.await.context("the acknowledgement task failed")??;
    result?;
    Ok(recorder)
}

/// Awaits acknowledgements in publish order and records them.
async fn acknowledge(
    mut queue: mpsc::Receiver<Published>,
    schedule: Option<Schedule>,
    (start, warmup): (Instant, Duration),
    counters: Arc<Counters>,
    record_bytes: u64,
) -> anyhow::Result<Recorder> {
    let mut recorder = Recorder::after_warmup(warmup);
    while let Some(published) = queue.recv().await {
        published.ack.await.context("waiting for a JetStream acknowledgement")?;
        let acked = Instant::now();
        let at = acked.duration_since(start);
        let latency = match schedule {
            Some(schedule) => {
                let due = start + Duration::from_nanos(schedule.due_ns(published.index));
                acked.saturating_duration_since(due)
            }
            None => acked.duration_since(published.ready),
        };
        recorder.latency(at, micros(latency), 1);
        recorder.count(at, 1, record_bytes);
        counters.add(1, record_bytes);
    }
    Ok(recorder)
}
