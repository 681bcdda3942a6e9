//! `cairn-bench etcd`: load over etcd's v3 gRPC API, against cairn's `--etcd-listen` or a real
//! etcd, through the `etcd-client` crate like any other client.
//!
//! `--connections` gRPC connections (one `etcd_client::Client` each, connected to one endpoint,
//! round-robin over `--endpoints`) are shared by `--clients` tasks: client `k` uses connection
//! `k mod C`, as etcd's own benchmark tool shares a few connections among many clients. Each
//! client has one operation in flight.
//!
//! Workloads (`--workload`):
//! - `put`: puts of `--value-bytes` values to random keys of the `--keys` key space.
//! - `range`: linearizable Gets (etcd-client's default, `serializable = false`) of random keys,
//!   after every key of the key space was put once (the preload, not measured).
//! - `watch`: `--watchers` watches of the key prefix over `--watch-streams` watch streams, and
//!   one writer putting at `--rate` puts/s (100 unless given). The latency of a delivery is the
//!   time from the put's response (the commit, as its client sees it) to the receipt of its
//!   event by a watcher, both on this process's monotonic clock; events are matched to puts by
//!   revision. An event can arrive before its put's response: it counts as 0 (and in
//!   `events_before_put_response`).
//!
//! Pacing is `produce`'s: closed loop by default (latency from the call), open loop with `--rate`
//! (each client takes every Cth operation of a global schedule, latency from the scheduled time,
//! so a slow server cannot hide behind fewer requests).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use etcd_client::{Client, ConnectOptions, KvClient, WatchOptions};
use tokio::sync::{mpsc, watch};

use crate::cli::{EtcdArgs, EtcdWorkload};
use crate::monitor::Monitor;
use crate::report::Report;
use crate::schedule::{Schedule, share};
use crate::stats::{Counters, Recorder, micros};
use crate::workload::{Rng, Values};

/// The watch workload's writer rate when `--rate` is 0, puts/s.
pub const WATCH_RATE_DEFAULT: u64 = 100;
/// Longest wait for the cluster to answer a linearizable read before the run.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two readiness probes.
const READY_POLL: Duration = Duration::from_millis(200);
/// Most tasks putting the key space before a range run.
const PRELOAD_TASKS_MAX: usize = 64;
/// Longest the watchers may take to be created, and to receive the last events after the
/// writer stops.
const WATCH_SETTLE: Duration = Duration::from_secs(30);
/// Events a watch stream buffers before its reader (a bound, not a tuning).
const WATCH_READY_QUEUE: usize = 1024;

/// Runs `cairn-bench etcd`.
///
/// # Errors
/// Bad flags, unreachable endpoints, a failed preload or watch, or a run where every operation
/// failed.
pub async fn run(args: &EtcdArgs) -> anyhow::Result<Report> {
    args.validate()?;
    let connections = connect(args).await?;
    let args = Arc::new(args.clone());
    match args.workload {
        EtcdWorkload::Put => kv_run(&args, &connections, "etcd-put").await,
        EtcdWorkload::Range => {
            preload(&args, &connections).await?;
            kv_run(&args, &connections, "etcd-range").await
        }
        EtcdWorkload::Watch => watch_run(&args, &connections).await,
    }
}

/// Opens the gRPC connections, round-robin over the endpoints.
async fn connect(args: &EtcdArgs) -> anyhow::Result<Vec<Client>> {
    let endpoints = args.endpoint_list();
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut connections = Vec::with_capacity(args.connection_count());
    for index in 0..args.connection_count() {
        let endpoint = &endpoints[index % endpoints.len()];
        let options = ConnectOptions::new().with_connect_timeout(timeout).with_timeout(timeout);
        let client = Client::connect([endpoint.as_str()], Some(options))
            .await
            .with_context(|| format!("connecting to the etcd API at {endpoint}"))?;
        connections.push(client);
    }
    for client in &connections {
        ready(client.kv_client(), &args.key_prefix).await?;
    }
    Ok(connections)
}

/// Waits until a linearizable read through `kv` succeeds (a cluster that just started may
/// still be electing its leader), up to [`READY_TIMEOUT`].
async fn ready(mut kv: KvClient, prefix: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match kv.get(prefix, None).await {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() > deadline => {
                return Err(error).context("the etcd API did not answer a linearizable read");
            }
            Err(_) => tokio::time::sleep(READY_POLL).await,
        }
    }
}

/// Key `index` of the key space.
fn key(prefix: &str, index: u64) -> String {
    format!("{prefix}{index:08}")
}

/// Puts every key of the key space once, so that ranges find a value.
async fn preload(args: &Arc<EtcdArgs>, connections: &[Client]) -> anyhow::Result<()> {
    let tasks = args.clients.clamp(1, PRELOAD_TASKS_MAX);
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let mut kv = connections[task % connections.len()].kv_client();
            let args = Arc::clone(args);
            tokio::spawn(async move {
                let values = Values::new(args.value_bytes, task as u64);
                let mut index = task as u64;
                while index < args.keys {
                    kv.put(key(&args.key_prefix, index), values.value(index).to_vec(), None)
                        .await
                        .with_context(|| format!("preloading key {index}"))?;
                    index += tasks as u64;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for handle in handles {
        handle.await.context("a preload task failed")??;
    }
    Ok(())
}

/// What one client task did.
struct ClientOutcome {
    recorder: Recorder,
    errors: u64,
    first_error: Option<String>,
}

/// The put or range run: `--clients` tasks, closed or open loop.
async fn kv_run(
    args: &Arc<EtcdArgs>,
    connections: &[Client],
    command: &'static str,
) -> anyhow::Result<Report> {
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let monitor = Monitor::start(
        command,
        Arc::clone(&counters),
        start,
        !args.output.quiet,
        args.output.broker_pid.clone(),
    );
    let tasks: Vec<_> = (0..args.clients)
        .map(|k| {
            let kv = connections[k % connections.len()].kv_client();
            let args = Arc::clone(args);
            let counters = Arc::clone(&counters);
            tokio::spawn(async move { kv_client(k as u64, kv, &args, start, &counters).await })
        })
        .collect();
    let mut total = Recorder::after_warmup(Duration::from_secs_f64(args.warmup));
    let (mut errors, mut first_error) = (0, None);
    for task in tasks {
        let outcome = task.await.context("a client task failed")??;
        total.merge(&outcome.recorder);
        errors += outcome.errors;
        first_error = first_error.or(outcome.first_error);
    }
    let elapsed = start.elapsed();
    let observed = monitor.stop().await;
    if total.records == 0
        && let Some(error) = first_error
    {
        bail!("every operation failed; the first: {error}");
    }
    let config = serde_json::to_value(args.as_ref())?;
    let mut report = Report::of_run(command, config, &total, "op", &observed, elapsed);
    report.errors = errors;
    report.values.insert("clients".into(), args.clients as f64);
    report.values.insert("connections".into(), connections.len() as f64);
    report.notes.push(format!(
        "{} over {} connection(s) to {}, {} B values, {} keys, {}",
        match args.workload {
            EtcdWorkload::Range => "linearizable Gets of random preloaded keys",
            _ => "puts of random keys",
        },
        connections.len(),
        args.endpoints,
        args.value_bytes,
        args.keys,
        pacing(args.rate)
    ));
    if let Some(error) = first_error {
        report.notes.push(format!("the first failed operation: {error}"));
    }
    Ok(report)
}

/// How a run is paced, for its notes.
fn pacing(rate: u64) -> String {
    if rate == 0 {
        "closed loop (latency from the call)".to_owned()
    } else {
        format!("open loop at {rate} ops/s (latency from the scheduled time)")
    }
}

/// One client: operations until its share or the deadline is done, one at a time.
async fn kv_client(
    k: u64,
    mut kv: KvClient,
    args: &EtcdArgs,
    start: Instant,
    counters: &Counters,
) -> anyhow::Result<ClientOutcome> {
    let clients = args.clients as u64;
    let schedule = match args.rate {
        0 => None,
        rate => Some(Schedule::new(rate, clients, k).context("invalid schedule")?),
    };
    let duration_ns = u64::try_from(args.run_duration().as_nanos()).unwrap_or(u64::MAX);
    let limit = match (args.ops, schedule) {
        (Some(total), _) => share(total, clients, k),
        (None, Some(schedule)) => schedule.due_by(duration_ns.saturating_sub(1)),
        (None, None) => u64::MAX,
    };
    let deadline = (args.ops.is_none() && schedule.is_none()).then(|| start + args.run_duration());
    let values = Values::new(args.value_bytes, k);
    let mut rng = Rng::new(0x5eed ^ (k + 1));
    let timeout = Duration::from_millis(args.timeout_ms);
    let bytes = args.value_bytes as u64;
    let mut outcome = ClientOutcome {
        recorder: Recorder::after_warmup(Duration::from_secs_f64(args.warmup)),
        errors: 0,
        first_error: None,
    };
    let mut index = 0;
    while index < limit && deadline.is_none_or(|deadline| Instant::now() < deadline) {
        let began = match schedule {
            Some(schedule) => {
                let due = start + Duration::from_nanos(schedule.due_ns(index));
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        let key = key(&args.key_prefix, rng.next_u64() % args.keys);
        let result = tokio::time::timeout(timeout, async {
            match args.workload {
                EtcdWorkload::Range => {
                    let response = kv.get(key, None).await?;
                    anyhow::ensure!(response.kvs().len() == 1, "a preloaded key was not found");
                    Ok(())
                }
                _ => kv
                    .put(key, values.value(index).to_vec(), None)
                    .await
                    .map(drop)
                    .map_err(Into::into),
            }
        })
        .await;
        let done = Instant::now();
        let at = done.duration_since(start);
        match result {
            Ok(Ok(())) => {
                outcome.recorder.latency(at, micros(done.duration_since(began)), 1);
                outcome.recorder.count(at, 1, bytes);
                counters.add(1, bytes);
            }
            Ok(Err(error)) => fail(&mut outcome, counters, format!("{error:#}")),
            Err(_) => fail(&mut outcome, counters, format!("no answer within {timeout:?}")),
        }
        index += 1;
    }
    Ok(outcome)
}

/// Counts a failed operation.
fn fail(outcome: &mut ClientOutcome, counters: &Counters, error: String) {
    outcome.errors += 1;
    counters.errors.fetch_add(1, Ordering::Relaxed);
    outcome.first_error.get_or_insert(error);
}

/// Events one watch stream received: (revision, when).
type Receipts = Vec<(i64, Instant)>;

/// The watch run: watchers on the prefix, one writer, put-response-to-event latency.
async fn watch_run(args: &Arc<EtcdArgs>, connections: &[Client]) -> anyhow::Result<Report> {
    let (stop, stopping) = watch::channel(false);
    let delivered = Arc::new(AtomicU64::new(0));
    let (ready, mut readies) = mpsc::channel::<()>(WATCH_READY_QUEUE);
    let mut streams = Vec::with_capacity(args.watch_streams);
    for s in 0..args.watch_streams {
        // Watchers dealt round-robin to the streams; streams to the connections.
        let watchers = share(args.watchers as u64, args.watch_streams as u64, s as u64);
        if watchers == 0 {
            continue;
        }
        // Connection 0 carries the writer: watch streams start at connection 1 when there is one.
        let mut client = connections[(s + 1) % connections.len()].watch_client();
        let options = WatchOptions::new().with_prefix();
        let mut stream = client
            .watch(args.key_prefix.clone(), Some(options.clone()))
            .await
            .context("opening a watch stream")?;
        for _ in 1..watchers {
            stream
                .watch(args.key_prefix.clone(), Some(options.clone()))
                .await
                .context("adding a watcher")?;
        }
        let (delivered, ready, stopping) =
            (Arc::clone(&delivered), ready.clone(), stopping.clone());
        streams.push(tokio::spawn(async move {
            receive(stream, watchers, &delivered, ready, stopping).await
        }));
    }
    drop(ready);
    for _ in 0..streams.len() {
        tokio::time::timeout(WATCH_SETTLE, readies.recv())
            .await
            .context("the watchers were not all created in time")?
            .context("a watch stream ended before its watchers were created")?;
    }

    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let monitor = Monitor::start(
        "etcd-watch",
        Arc::clone(&counters),
        start,
        !args.output.quiet,
        args.output.broker_pid.clone(),
    );
    let (puts, put_recorder) = writer(args, connections[0].kv_client(), start, &counters).await?;
    let expected = puts.len() as u64 * args.watchers as u64;
    let drained = Instant::now() + WATCH_SETTLE;
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(true);
    let mut receipts = Vec::with_capacity(streams.len());
    for stream in streams {
        receipts.push(stream.await.context("a watch stream task failed")??);
    }
    let elapsed = start.elapsed();
    let observed = monitor.stop().await;

    let (deliveries, early) = match_deliveries(&puts, &receipts, start, args);
    let config = serde_json::to_value(args.as_ref())?;
    let mut report = Report::of_run("etcd-watch", config, &deliveries, "watch", &observed, elapsed);
    if let Some(summary) = crate::stats::LatencySummary::of(&put_recorder.total) {
        report.latencies.insert("put".into(), summary);
    }
    report.values.insert("watchers".into(), args.watchers as f64);
    report.values.insert("puts".into(), puts.len() as f64);
    report.values.insert("deliveries_expected".into(), expected as f64);
    report
        .values
        .insert("deliveries_missing".into(), expected.saturating_sub(deliveries.records) as f64);
    report.values.insert("events_before_put_response".into(), early as f64);
    report.notes.push(format!(
        "{} watchers of prefix {} over {} watch stream(s); one writer at {} puts/s of {} B \
         values; latency from the put's response to each watcher's receipt of the event",
        args.watchers,
        args.key_prefix,
        args.watch_streams,
        watch_rate(args),
        args.value_bytes
    ));
    Ok(report)
}

/// The writer's rate of the watch workload, puts/s.
fn watch_rate(args: &EtcdArgs) -> u64 {
    if args.rate == 0 { WATCH_RATE_DEFAULT } else { args.rate }
}

/// The watch workload's writer: puts on a fixed schedule; returns each put's revision and
/// response time, and the put latencies.
async fn writer(
    args: &EtcdArgs,
    mut kv: KvClient,
    start: Instant,
    counters: &Counters,
) -> anyhow::Result<(HashMap<i64, Instant>, Recorder)> {
    let schedule = Schedule::new(watch_rate(args), 1, 0).context("invalid schedule")?;
    let duration_ns = u64::try_from(args.run_duration().as_nanos()).unwrap_or(u64::MAX);
    let limit = args.ops.unwrap_or_else(|| schedule.due_by(duration_ns.saturating_sub(1)));
    let values = Values::new(args.value_bytes, 0);
    let mut puts = HashMap::with_capacity(usize::try_from(limit).unwrap_or(0));
    let mut recorder = Recorder::after_warmup(Duration::from_secs_f64(args.warmup));
    let bytes = args.value_bytes as u64;
    for index in 0..limit {
        let due = start + Duration::from_nanos(schedule.due_ns(index));
        tokio::time::sleep_until(due.into()).await;
        let response = kv
            .put(key(&args.key_prefix, index % args.keys), values.value(index).to_vec(), None)
            .await
            .context("the watch workload's put failed")?;
        let acked = Instant::now();
        let revision = response.header().context("a put response without a header")?.revision();
        puts.insert(revision, acked);
        let at = acked.duration_since(start);
        recorder.latency(at, micros(acked.duration_since(due)), 1);
        counters.add(1, bytes);
    }
    Ok((puts, recorder))
}

/// One watch stream's reader: signals `ready` once its `watchers` are created, then records
/// every event's revision and receipt time until `stopping`.
async fn receive(
    mut stream: etcd_client::WatchStream,
    watchers: u64,
    delivered: &AtomicU64,
    ready: mpsc::Sender<()>,
    mut stopping: watch::Receiver<bool>,
) -> anyhow::Result<Receipts> {
    let mut receipts = Receipts::new();
    let mut created = 0;
    loop {
        let message = tokio::select! {
            message = stream.message() => message.context("receiving watch events")?,
            _ = stopping.changed() => break,
        };
        let Some(response) = message else { bail!("a watch stream ended") };
        let now = Instant::now();
        if response.created() {
            created += 1;
            if created == watchers {
                // The run waits on this; if it is gone, the run failed and says why.
                let _ = ready.send(()).await;
            }
        }
        if response.canceled() {
            bail!("a watcher was canceled: {}", response.cancel_reason());
        }
        for event in response.events() {
            if let Some(kv) = event.kv() {
                receipts.push((kv.mod_revision(), now));
            }
        }
        delivered.fetch_add(response.events().len() as u64, Ordering::Relaxed);
    }
    Ok(receipts)
}

/// Deliveries matched to their puts: latencies (0 for an event before its put's response) and
/// how many came before the response. Events of no known put (none expected) are left out.
fn match_deliveries(
    puts: &HashMap<i64, Instant>,
    receipts: &[Receipts],
    start: Instant,
    args: &EtcdArgs,
) -> (Recorder, u64) {
    let mut recorder = Recorder::after_warmup(Duration::from_secs_f64(args.warmup));
    let mut early = 0;
    for (revision, received) in receipts.iter().flatten() {
        let Some(acked) = puts.get(revision) else { continue };
        if received < acked {
            early += 1;
        }
        let at = received.saturating_duration_since(start);
        recorder.latency(at, micros(received.saturating_duration_since(*acked)), 1);
        recorder.count(at, 1, args.value_bytes as u64);
    }
    (recorder, early)
}
