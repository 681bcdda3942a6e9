//! `cairn-bench e2e`: produce-to-consume latency at a fixed rate.
//!
//! Consumers start at the partitions' high watermarks, then producers run the open-loop
//! schedule of `produce --rate`, writing each record's scheduled send time (ns since the run's
//! start, on this process's monotonic clock) into the first 8 bytes of its value. Consumers
//! long-poll (`min_bytes` 1, `--max-wait-ms`) and record, per record, the time its fetch
//! response arrived minus that scheduled time. Both sides run in this process, so one clock
//! serves both and no clock synchronisation is involved.
//!
//! cairn exposes only durable records to consumers (the high watermark is the durable offset),
//! so the end-to-end latency includes the fsync whatever `--acks` says.
//!
//! When the producers are done, the consumers go on until they have received every acknowledged
//! record or `--drain-secs` pass.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use cairn_client::Client;
use tokio::sync::watch;

use crate::cli::E2eArgs;
use crate::consume::{self, Position, Stop};
use crate::kafka::{self, LATEST};
use crate::monitor::{Monitor, Observed};
use crate::produce;
use crate::report::Report;
use crate::stats::{Counters, LatencySummary, Recorder};
use crate::wakeup::Probe;
use crate::workload::STAMP_BYTES;

/// Runs `cairn-bench e2e`.
///
/// # Errors
/// Bad flags, an unreachable broker, a failed connection, produce or fetch.
pub async fn run(args: &E2eArgs) -> anyhow::Result<Report> {
    args.pace.validate()?;
    if args.pace.rate.is_none() {
        bail!("e2e runs at a fixed --rate (open loop)");
    }
    if args.pace.record_bytes < STAMP_BYTES {
        bail!("--record-bytes must be at least {STAMP_BYTES}: each value carries its send time");
    }
    if args.consumers == 0 {
        bail!("--consumers must be at least 1");
    }
    let options = kafka::options(&args.target);
    let mut admin = Client::connect(&options).await?;
    let topic = kafka::ensure_topic(
        &mut admin,
        &args.target.topic,
        args.load.partitions,
        args.load.replication_factor,
    )
    .await?;
    let latest = kafka::offsets(&mut admin, &topic.name, &topic.partitions, LATEST).await?;
    let positions: Vec<Position> = topic
        .partitions
        .iter()
        .zip(&latest)
        .map(|(&partition, &next)| Position { partition, next, end: None })
        .collect();
    let shares = consume::assign(&positions, args.consumers);
    let mut consumer_clients = Vec::with_capacity(shares.len());
    for _ in 0..shares.len() {
        consumer_clients.push(Client::connect(&options).await?);
    }
    let routes = produce::leaders(&options, &topic).await?;
    let producer_plan = Arc::new(produce::Plan {
        topic: topic.clone(),
        routes,
        pace: args.pace.clone(),
        load: args.load.clone(),
        stamp: true,
    });
    let producers = produce::connect(&options, &producer_plan).await?;
    let (expected, expecting) = watch::channel(None);

    let produced = Arc::new(Counters::default());
    let consumed = Arc::new(Counters::default());
    let start = Instant::now();
    let consumer_plan = Arc::new(consume::Plan {
        topic,
        fetch_partition_bytes: 1024 * 1024,
        fetch_bytes: 64 * 1024 * 1024,
        max_wait_ms: args.max_wait_ms,
        stamps_from: Some(start),
        stop: Stop { records_max: None, expected: Some(expecting) },
        warmup: args.pace.warmup(),
    });
    let monitor = Monitor::start(
        "e2e",
        Arc::clone(&consumed),
        start,
        !args.output.quiet,
        args.output.broker_pid.clone(),
    );
    let probe = Probe::start(start, args.pace.warmup())?;
    let consumers = consume::spawn(consumer_clients, shares, &consumer_plan, start, &consumed);
    let outcomes = produce::join(produce::spawn(producers, &producer_plan, start, &produced)).await;
    let producing = start.elapsed();
    let total = match &outcomes {
        Ok(outcomes) => {
            let total = produce::merge(outcomes);
            // With acks=0 nothing is acknowledged: expect what was sent.
            let target =
                if args.load.acks.wire() == 0 { total.sent } else { total.recorder.records };
            let _ = expected
                .send(Some((target, Instant::now() + Duration::from_secs(args.drain_secs))));
            Some(total)
        }
        Err(_) => {
            // Stop the consumers now; the producers' error is reported.
            let _ = expected.send(Some((0, Instant::now())));
            None
        }
    };
    let consumed_outcome = consume::join(consumers).await;
    let elapsed = start.elapsed();
    let wakeup = probe.stop();
    let observed = monitor.stop().await;
    outcomes?;
    let consumed_outcome = consumed_outcome?;
    let total = total.unwrap_or_default();

    let run =
        Run { total: &total, consumed: &consumed_outcome, wakeup: &wakeup, observed: &observed };
    report(args, &producer_plan, &run, producing, elapsed)
}

/// What an e2e run recorded.
struct Run<'a> {
    /// The producers'.
    total: &'a produce::Outcome,
    /// The consumers'.
    consumed: &'a consume::Outcome,
    /// The wake-up probe's.
    wakeup: &'a Recorder,
    observed: &'a Observed,
}

/// The e2e report: the consumers' records and end-to-end latencies, the producers' acks.
fn report(
    args: &E2eArgs,
    producer_plan: &produce::Plan,
    run: &Run<'_>,
    producing: Duration,
    elapsed: Duration,
) -> anyhow::Result<Report> {
    let Run { total, consumed: consumed_outcome, wakeup, observed } = *run;
    let recorder = &consumed_outcome.recorder;
    let config = serde_json::to_value(args)?;
    let mut report = Report::of_run("e2e", config, recorder, "e2e", observed, elapsed);
    report.errors = total.errors;
    if let Some(latency) = LatencySummary::of(&total.recorder.total) {
        report.latencies.insert("ack".to_owned(), latency);
    }
    if let Some(latency) = LatencySummary::of(&wakeup.total) {
        report.latencies.insert("wakeup".to_owned(), latency);
    }
    report.values.insert("records_sent".to_owned(), total.sent as f64);
    report.values.insert("records_acked".to_owned(), total.recorder.records as f64);
    report.values.insert("produce_secs".to_owned(), producing.as_secs_f64());
    report.notes.push(produce::describe_load(producer_plan));
    report.notes.push(
        "e2e latency is per record: fetch response arrival minus the record's scheduled send \
         time; records and throughput are the consumers'"
            .to_owned(),
    );
    report.notes.push(
        "wakeup is how much later than asked a thread of this process sleeping 1 ms at a time \
         woke up during the run: the machine's scheduling delay under this load, which every \
         latency here includes"
            .to_owned(),
    );
    if recorder.records < total.recorder.records {
        report.notes.push(format!(
            "the consumers received {} of {} acknowledged records within --drain-secs",
            recorder.records, total.recorder.records
        ));
    }
    if let Some(error) = &total.first_error {
        report.notes.push(format!("first produce error: {error}"));
    }
    Ok(report)
}
