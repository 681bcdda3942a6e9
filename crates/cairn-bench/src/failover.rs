//! `cairn-bench failover`: how long writes stop when a partition's leader is killed.
//!
//! One producer writes one small record per request to a one-partition topic with acks=all,
//! one request in flight, for the whole run. The process that owns the brokers (`cargo xtask
//! bench`, or a person at a terminal) is the *driver*; this side asks it, one line on stdout
//! each, to `kill <node>` (SIGKILL) and later to `restart <node>`, and waits for its answer on
//! stdin (`killed <node>`, `restarted <node>`). Each round:
//! 1. wait until the leader (the broker that acknowledged the last write) lists every replica
//!    in sync, and a write after that was acknowledged;
//! 2. ask for the leader to be killed; the clock starts when the request is written;
//! 3. wait for the first write acknowledged by another broker: *resume time* is from the
//!    request to that acknowledgement (it includes the driver's kill, about a millisecond;
//!    reported apart as *kill confirm*);
//! 4. ask for the killed node to be restarted.
//!
//! The producer refreshes its routes as `produce` does (leader hints, else Metadata from any
//! broker that answers) and retries every [`RETRY_BACKOFF`], so the resume time is known to
//! about that precision.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use cairn_client::codes::describe;
use cairn_client::{Client, Options};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tokio::sync::{mpsc, watch};

use crate::cli::FailoverArgs;
use crate::kafka::{self, Topic, topic_name};
use crate::produce::RETRY_BACKOFF;
use crate::report::Report;
use crate::routes::{self, NodeId, Routes, retriable};
use crate::stats::{LatencySummary, micros, new_latencies};
use crate::workload::Values;
use cairn_types::batch::BatchBuilder;

/// The partition every write goes to.
const PARTITION: i32 = 0;

/// The last acknowledged write.
#[derive(Clone, Copy, Debug)]
struct Ack {
    /// When its answer arrived.
    at: Instant,
    /// The broker that acknowledged it (the leader then).
    node: NodeId,
}

/// What the writer counted, shared with the rounds.
#[derive(Debug, Default)]
struct Counts {
    /// Writes acknowledged.
    acked: AtomicU64,
    /// Writes refused in a retriable way, or lost with their connection.
    retried: AtomicU64,
    /// Writes refused otherwise.
    failed: AtomicU64,
    /// The first such refusal.
    first_error: Mutex<Option<String>>,
}

/// Answers of the driver waiting to be read (a few at most: it answers one request at a time).
const ANSWERS_QUEUED_MAX: usize = 4;

/// The driver's side of the conversation: requests go to `out`, answers (lines) come from
/// `answers`.
pub struct Driver {
    answers: mpsc::Receiver<String>,
    out: Box<dyn FnMut(&str) + Send>,
    timeout: Duration,
}

impl Driver {
    /// A driver answering on `answers`, asked through `out`, each answer within `timeout`.
    #[must_use]
    pub fn new(
        answers: mpsc::Receiver<String>,
        out: Box<dyn FnMut(&str) + Send>,
        timeout: Duration,
    ) -> Driver {
        Driver { answers, out, timeout }
    }

    /// Asks `<verb> <node>` and waits for `<done> <node>`.
    async fn ask(&mut self, verb: &str, done: &str, node: NodeId) -> anyhow::Result<()> {
        (self.out)(&format!("{verb} {node}"));
        let line = tokio::time::timeout(self.timeout, self.answers.recv())
            .await
            .with_context(|| format!("no answer to `{verb} {node}` within {:?}", self.timeout))?
            .with_context(|| {
                format!("the driver closed its side before answering `{verb} {node}`")
            })?;
        if line.trim() != format!("{done} {node}") {
            bail!("the driver answered `{}` to `{verb} {node}`", line.trim());
        }
        Ok(())
    }
}

/// Runs `cairn-bench failover` with the driver on stdin and stdout.
///
/// # Errors
/// Bad flags, no cluster, a driver that does not answer, writes that do not resume.
pub async fn run(args: &FailoverArgs) -> anyhow::Result<Report> {
    let (lines, answers) = mpsc::channel(ANSWERS_QUEUED_MAX);
    // A blocking reader of stdin; it ends with stdin, or when the measurement is over.
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if lines.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let out = Box::new(|line: &str| {
        #[allow(clippy::print_stdout)] // the protocol with the driver is stdout lines
        {
            println!("{line}");
        }
    });
    let timeout = Duration::from_secs(args.step_timeout_secs);
    measure(args, Driver::new(answers, out, timeout)).await
}

/// The measurement with `driver`.
///
/// # Errors
/// As [`run`].
pub async fn measure(args: &FailoverArgs, mut driver: Driver) -> anyhow::Result<Report> {
    if args.kills == 0 {
        bail!("--kills must be at least 1");
    }
    let options = kafka::options(&args.target);
    let mut admin = Client::connect(&options).await?;
    let topic =
        kafka::ensure_topic(&mut admin, &args.target.topic, 1, args.replication_factor).await?;
    drop(admin);
    let routes = Arc::new(Mutex::new(crate::produce::leaders(&options, &topic).await?));
    let (acks, mut acked) = watch::channel(None);
    let counts = Arc::new(Counts::default());
    let writer = Writer {
        options: options.clone(),
        topic: topic.clone(),
        routes: Arc::clone(&routes),
        values: Values::new(args.record_bytes, 1),
        clients: BTreeMap::new(),
        acks,
        counts: Arc::clone(&counts),
    };
    let writing = tokio::spawn(writer.run());
    let view = View {
        options,
        topic: topic.name.clone(),
        routes,
        replicas: usize::try_from(args.replication_factor).unwrap_or(0).max(1),
        step: Duration::from_secs(args.step_timeout_secs),
    };
    let start = Instant::now();
    let mut rounds = Vec::with_capacity(args.kills as usize);
    let result = async {
        for _ in 0..args.kills {
            rounds.push(round(&mut driver, &mut acked, &view).await?);
        }
        anyhow::Ok(())
    }
    .await;
    writing.abort();
    result?;
    Ok(report(args, &rounds, &counts, start.elapsed()))
}

/// What a round needs to look at the cluster.
struct View {
    options: Options,
    topic: String,
    routes: Arc<Mutex<Routes>>,
    /// Replicas the partition has: all of them must be in sync before a kill.
    replicas: usize,
    /// Longest wait for each step.
    step: Duration,
}

/// One kill.
#[derive(Clone, Copy, Debug)]
struct Round {
    killed: NodeId,
    resumed_by: NodeId,
    /// From the kill request to the first write acknowledged by another broker.
    resume: Duration,
    /// From the kill request to the driver's confirmation.
    confirm: Duration,
}

/// One round: steady state, kill, resume, restart.
async fn round(
    driver: &mut Driver,
    acked: &mut watch::Receiver<Option<Ack>>,
    view: &View,
) -> anyhow::Result<Round> {
    let leader = steady(acked, view).await?;
    let killed_at = Instant::now();
    driver.ask("kill", "killed", leader).await?;
    let confirm = killed_at.elapsed();
    let resumed = tokio::time::timeout(
        view.step,
        acked.wait_for(|ack| ack.is_some_and(|a| a.at > killed_at && a.node != leader)),
    )
    .await
    .with_context(|| format!("no write acknowledged within {:?} of killing {leader}", view.step))?
    .context("the writer stopped")?
    .context("an acknowledgement")?;
    let round = Round {
        killed: leader,
        resumed_by: resumed.node,
        resume: resumed.at.duration_since(killed_at),
        confirm,
    };
    driver.ask("restart", "restarted", leader).await?;
    Ok(round)
}

/// Waits until the broker that acknowledges the writes lists every replica in sync in its own
/// Metadata and acknowledged a write after saying so; returns it.
async fn steady(acked: &mut watch::Receiver<Option<Ack>>, view: &View) -> anyhow::Result<NodeId> {
    let deadline = Instant::now() + view.step;
    let mut last = String::from("no write acknowledged yet");
    while Instant::now() < deadline {
        let ack = *acked.borrow_and_update();
        if let Some(ack) = ack {
            let address = lock(&view.routes).brokers.get(&ack.node).cloned();
            let fresh = match address {
                Some(address) => routes::fetch(&view.options, [address], &view.topic).await,
                None => Err(anyhow::anyhow!("no address of broker {}", ack.node)),
            };
            match fresh {
                Ok(fresh) => {
                    let route = fresh.partitions.get(&PARTITION).cloned().unwrap_or_default();
                    if route.leader == Some(ack.node) && route.isr.len() >= view.replicas {
                        let checked = Instant::now();
                        let after = acked.wait_for(|a| a.is_some_and(|a| a.at > checked));
                        match tokio::time::timeout(deadline - Instant::now().min(deadline), after)
                            .await
                        {
                            Ok(Ok(a)) if a.is_some_and(|a| a.node == ack.node) => {
                                return Ok(ack.node);
                            }
                            _ => last = format!("leadership moved from {}", ack.node),
                        }
                    } else {
                        last = format!("leader {:?}, in sync {:?}", route.leader, route.isr);
                    }
                }
                Err(error) => last = format!("{error:#}"),
            }
        }
        tokio::time::sleep(STEADY_POLL).await;
    }
    bail!(
        "the partition did not settle with all {} replicas in sync within {:?}: {last}",
        view.replicas,
        view.step
    )
}

/// Between two looks at a settling partition.
const STEADY_POLL: Duration = Duration::from_millis(50);

/// A mutex's guard (a panicked holder leaves routes that are still whole).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The producer of the measurement: one record per request, one request in flight, to the
/// partition's leader, for ever (it is aborted at the end).
struct Writer {
    options: Options,
    topic: Topic,
    routes: Arc<Mutex<Routes>>,
    values: Values,
    /// A connection per broker written to, dropped when it fails.
    clients: BTreeMap<NodeId, Client>,
    acks: watch::Sender<Option<Ack>>,
    counts: Arc<Counts>,
}

impl Writer {
    async fn run(mut self) {
        let mut index = 0u64;
        loop {
            if !self.write(index).await {
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
            index = index.wrapping_add(1);
        }
    }

    /// Writes record `index` once; whether it was acknowledged.
    async fn write(&mut self, index: u64) -> bool {
        let target = lock(&self.routes).leader(PARTITION).map(|(n, a)| (n, a.to_owned()));
        let Some((node, address)) = target else {
            self.refresh().await;
            return false;
        };
        let answer = match open_client(&mut self.clients, &self.options, node, &address).await {
            Ok(client) => match request(&self.topic, &self.values, client, index) {
                Ok(request) => client.send(&request).await.map_err(anyhow::Error::from),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        match answer {
            Ok(response) => self.answered(node, &response),
            Err(_) => {
                // The connection failed (the leader was killed): ask the others.
                self.clients.remove(&node);
                lock(&self.routes).drop_leader(node);
                self.counts.retried.fetch_add(1, Ordering::Relaxed);
                self.refresh().await;
                false
            }
        }
    }

    /// Accounts for an answer from `node`; whether the write was acknowledged.
    fn answered(&mut self, node: NodeId, response: &ProduceResponse) -> bool {
        let code = response
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .find(|a| a.index == PARTITION)
            .map(|a| (a.error_code, a.error_message.as_ref().map(ToString::to_string)));
        match code {
            Some((0, _)) => {
                self.counts.acked.fetch_add(1, Ordering::Relaxed);
                self.acks.send_replace(Some(Ack { at: Instant::now(), node }));
                true
            }
            Some((code, _)) if retriable(code) => {
                self.counts.retried.fetch_add(1, Ordering::Relaxed);
                if !lock(&self.routes).take_hints(response) {
                    // Refreshed before the next write (not awaited here: no await in this fn).
                    lock(&self.routes).drop_leader(node);
                }
                false
            }
            other => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                let reason = match other {
                    Some((code, message)) => describe(code, message.as_deref()),
                    None => "no answer for the partition".to_owned(),
                };
                lock(&self.counts.first_error).get_or_insert(reason);
                false
            }
        }
    }

    /// New routes from any broker that answers (the old ones stay if none does).
    async fn refresh(&mut self) {
        let mut addresses = vec![self.options.bootstrap.clone()];
        addresses.extend(lock(&self.routes).brokers.values().cloned());
        addresses.dedup();
        if let Ok(fresh) = routes::fetch(&self.options, addresses, &self.topic.name).await {
            *lock(&self.routes) = fresh;
        }
    }
}

/// The connection to `node` in `clients`, opened if there is none.
async fn open_client<'a>(
    clients: &'a mut BTreeMap<NodeId, Client>,
    options: &Options,
    node: NodeId,
    address: &str,
) -> anyhow::Result<&'a mut Client> {
    match clients.entry(node) {
        std::collections::btree_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
        std::collections::btree_map::Entry::Vacant(entry) => {
            let mut options = options.clone();
            options.bootstrap = address.to_owned();
            Ok(entry.insert(Client::connect(&options).await?))
        }
    }
}

/// The Produce request of record `index` to `topic` on `client`: one batch of one record.
fn request(
    topic: &Topic,
    values: &Values,
    client: &Client,
    index: u64,
) -> anyhow::Result<ProduceRequest> {
    let version = client.version_of::<ProduceRequest>()?;
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(i64::MAX);
    let batch = BatchBuilder::new(now_ms).record(None, Some(values.value(index)), &[]);
    let data = PartitionProduceData::default()
        .with_index(PARTITION)
        .with_records(Some(Bytes::from(batch.build())));
    let mut produced = TopicProduceData::default().with_partition_data(vec![data]);
    if version >= 13 {
        produced.topic_id = topic.id;
    } else {
        produced.name = topic_name(&topic.name);
    }
    Ok(ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(client.request_timeout_ms())
        .with_topic_data(vec![produced]))
}

/// The report: resume times as the `resume` latency, every round in the notes.
fn report(args: &FailoverArgs, rounds: &[Round], counts: &Counts, elapsed: Duration) -> Report {
    let config = serde_json::to_value(args).unwrap_or_default();
    let acked = counts.acked.load(Ordering::Relaxed);
    let bytes = acked * args.record_bytes as u64;
    let mut report = Report::new("failover", config, acked, bytes, elapsed.as_secs_f64());
    report.errors = counts.failed.load(Ordering::Relaxed);
    let mut resume = new_latencies();
    let mut confirm = new_latencies();
    for round in rounds {
        let _ = resume.record(micros(round.resume).max(1));
        let _ = confirm.record(micros(round.confirm).max(1));
    }
    for (name, histogram) in [("resume", &resume), ("kill_confirm", &confirm)] {
        if let Some(summary) = LatencySummary::of(histogram) {
            report.latencies.insert(name.to_owned(), summary);
        }
    }
    report.values.insert("kills".to_owned(), rounds.len() as f64);
    report
        .values
        .insert("writes_retried".to_owned(), counts.retried.load(Ordering::Relaxed) as f64);
    let resumes: Vec<String> = rounds
        .iter()
        .map(|r| format!("{}→{} {:.0} ms", r.killed, r.resumed_by, r.resume.as_secs_f64() * 1e3))
        .collect();
    report.notes.push(format!("rounds (killed→resumed by, resume time): {}", resumes.join(", ")));
    report.notes.push(format!(
        "one {} B record per request, acks=all, one request in flight; retried every {} ms; \
         resume time is from the kill request to the first write acknowledged by another broker",
        args.record_bytes,
        RETRY_BACKOFF.as_millis()
    ));
    if let Some(error) = lock(&counts.first_error).as_ref() {
        report.notes.push(format!("first write error: {error}"));
    }
    for (index, round) in rounds.iter().enumerate() {
        report.values.insert(format!("resume_ms.{index:02}"), round.resume.as_secs_f64() * 1e3);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver whose requests are collected, with `answers` queued for it.
    fn driver(answers: &[&str]) -> (Driver, Arc<Mutex<Vec<String>>>, mpsc::Sender<String>) {
        driver_within(answers, Duration::from_secs(30))
    }

    fn driver_within(
        answers: &[&str],
        timeout: Duration,
    ) -> (Driver, Arc<Mutex<Vec<String>>>, mpsc::Sender<String>) {
        let (sender, receiver) = mpsc::channel(ANSWERS_QUEUED_MAX);
        for answer in answers {
            sender.try_send((*answer).to_owned()).unwrap();
        }
        let asked = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&asked);
        let out = Box::new(move |line: &str| record.lock().unwrap().push(line.to_owned()));
        (Driver::new(receiver, out, timeout), asked, sender)
    }

    #[tokio::test]
    async fn the_driver_is_asked_by_line_and_must_answer_in_kind() {
        let (mut ok, asked, _keep) = driver(&["killed 2", "restarted 2\n"]);
        ok.ask("kill", "killed", 2).await.unwrap();
        ok.ask("restart", "restarted", 2).await.unwrap();
        assert_eq!(*asked.lock().unwrap(), ["kill 2", "restart 2"]);

        let (mut wrong, _, _keep) = driver(&["killed 3"]);
        let error = wrong.ask("kill", "killed", 2).await.unwrap_err();
        assert_eq!(error.to_string(), "the driver answered `killed 3` to `kill 2`");

        // Silence ends at the step timeout (nothing can answer: no race).
        let (mut silent, _, _keep) = driver_within(&[], Duration::from_millis(20));
        let error = silent.ask("kill", "killed", 1).await.unwrap_err();
        assert!(error.to_string().starts_with("no answer to `kill 1` within"), "{error}");

        let (mut gone, _, sender) = driver(&[]);
        drop(sender);
        let error = gone.ask("restart", "restarted", 1).await.unwrap_err();
        assert!(error.to_string().contains("closed its side"), "{error}");
    }
}
