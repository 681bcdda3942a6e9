//! `cairn-bench commit`: offsets committed per second through the group coordinators, and the
//! latency of each commit.
//!
//! `--groups` groups (`cairn-bench-commit-<i>`) commit `--partitions` offsets of the topic in
//! each OffsetCommit, as groups without members (generation −1, as a consumer with manual
//! assignment commits). Committers (`--committers`) each own every `C`th group and keep one
//! pipelined connection per coordinator node with `--inflight` requests awaiting answers.
//! Open loop (`--rate` commits per second, on the schedule of `schedule.rs`: latency from each
//! commit's due time) or closed (`--max`: latency from when the request was ready). A commit
//! counts `--partitions` records when every partition of it is answered without error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cairn_client::codes::describe;
use cairn_client::{Client, Options, Pending, Pipeline};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, OffsetCommitRequest,
    OffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;

use crate::cli::CommitArgs;
use crate::kafka::{self, topic_name};
use crate::monitor::Monitor;
use crate::report::Report;
use crate::schedule::Schedule;
use crate::stats::{Counters, Recorder};

/// How long the run waits for each group's coordinator to be found (the offsets topic is
/// created by the first lookup).
const COORDINATOR_WAIT: Duration = Duration::from_secs(60);

/// Runs `cairn-bench commit`.
///
/// # Errors
/// Bad flags, an unreachable broker, a coordinator not found in time, a failed connection.
pub async fn run(args: &CommitArgs) -> anyhow::Result<Report> {
    if args.groups == 0 || args.committers == 0 || args.inflight == 0 || args.partitions == 0 {
        bail!("--groups, --committers, --inflight and --partitions must be at least 1");
    }
    if args.rate.is_none() != args.max {
        bail!("give either --rate COMMITS_PER_S (open loop) or --max (closed loop)");
    }
    let options = kafka::options(&args.target);
    let mut admin = Client::connect(&options).await?;
    let topic = kafka::ensure_topic(
        &mut admin,
        &args.target.topic,
        args.partitions,
        args.replication_factor,
    )
    .await?;
    if topic.partitions.len() < args.partitions as usize {
        bail!(
            "topic {} has {} partitions, fewer than --partitions {}",
            args.target.topic,
            topic.partitions.len(),
            args.partitions
        );
    }
    let groups: Vec<String> = (0..args.groups).map(|i| format!("cairn-bench-commit-{i}")).collect();
    let mut coordinators = Vec::with_capacity(groups.len());
    for group in &groups {
        coordinators.push(settled_coordinator(&options, &mut admin, args, group).await?);
    }
    let mut committers = Vec::with_capacity(args.committers);
    for index in 0..args.committers {
        let mine: Vec<(String, String)> = groups
            .iter()
            .zip(&coordinators)
            .skip(index)
            .step_by(args.committers)
            .map(|(g, c)| (g.clone(), c.clone()))
            .collect();
        committers.push(Committer::connect(&options, args, index, mine).await?);
    }
    let counters = std::sync::Arc::new(Counters::default());
    let start = Instant::now();
    let monitor = Monitor::start(
        "commit",
        counters.clone(),
        start,
        !args.output.quiet,
        args.output.broker_pid.clone(),
    );
    let duration = Duration::from_secs_f64(args.duration.max(0.0));
    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));
    let runs: Vec<_> = committers
        .into_iter()
        .map(|c| tokio::spawn(c.run(start, duration, warmup, counters.clone())))
        .collect();
    let mut recorder = Recorder::after_warmup(warmup);
    let (mut errors, mut first_error) = (0, None);
    for run in runs {
        let (done, (failed, error)) = run.await.context("a committer task failed")??;
        recorder.merge(&done);
        errors += failed;
        first_error = first_error.or(error);
    }
    let elapsed = start.elapsed();
    let observed = monitor.stop().await;
    let config = serde_json::to_value(args).context("recording the configuration")?;
    let mut report = Report::of_run("commit", config, &recorder, "commit", &observed, elapsed);
    report.errors = errors;
    if let Some(error) = first_error {
        report.notes.push(format!("first failed commit: {error}"));
    }
    report.notes.push(format!(
        "records are committed offsets: {} per OffsetCommit, from {} groups without members",
        args.partitions, args.groups
    ));
    Ok(report)
}

/// The `host:port` of the coordinator that takes `group`'s first commit (before the clock
/// starts): right after the offsets topic is created its partitions' leaders may still move,
/// and a commit sent to a former leader is refused `NOT_COORDINATOR` (a client looks the
/// coordinator up again; so does this).
async fn settled_coordinator(
    options: &Options,
    admin: &mut Client,
    args: &CommitArgs,
    group: &str,
) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        let address = coordinator(admin, group).await?;
        let options = Options { bootstrap: address.clone(), ..options.clone() };
        let mut client = Client::connect(&options).await?;
        let committer = Committer::request_of(&args.target.topic, args.partitions, group, 0);
        let answer = client.send(&committer).await?;
        let code = answer.topics.iter().flat_map(|t| &t.partitions).map(|p| p.error_code);
        match code.into_iter().find(|c| *c != 0) {
            None => return Ok(address),
            Some(code) if started.elapsed() > COORDINATOR_WAIT => {
                bail!("group {group}'s first commit failed: {}", describe(code, None));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The `host:port` of `group`'s coordinator, retrying while it is being created or elected.
async fn coordinator(client: &mut Client, group: &str) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        let key = StrBytes::from_string(group.to_owned());
        let request = if client.version_of::<FindCoordinatorRequest>()? >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![key])
        } else {
            FindCoordinatorRequest::default().with_key(key)
        };
        let response: FindCoordinatorResponse = client.send(&request).await?;
        let (code, host, port) = match response.coordinators.into_iter().next() {
            Some(c) => (c.error_code, c.host, c.port),
            None => (response.error_code, response.host, response.port),
        };
        if code == 0 {
            return Ok(format!("{}:{port}", host.as_str()));
        }
        if started.elapsed() > COORDINATOR_WAIT {
            bail!(
                "no coordinator for group {group}: {}",
                cairn_client::codes::describe(code, None)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One committer: its groups, a pipelined connection to each of their coordinators.
struct Committer {
    groups: Vec<(String, String)>,
    pipelines: BTreeMap<String, Pipeline>,
    topic: String,
    partitions: u32,
    inflight: usize,
    schedule: Option<Schedule>,
}

impl Committer {
    async fn connect(
        options: &Options,
        args: &CommitArgs,
        index: usize,
        groups: Vec<(String, String)>,
    ) -> anyhow::Result<Committer> {
        let mut pipelines = BTreeMap::new();
        for (_, address) in &groups {
            if !pipelines.contains_key(address) {
                let options = Options { bootstrap: address.clone(), ..options.clone() };
                let client = Client::connect(&options).await?;
                pipelines.insert(address.clone(), client.pipeline(args.inflight)?);
            }
        }
        let committers = u64::try_from(args.committers).unwrap_or(1);
        let schedule = args
            .rate
            .and_then(|rate| Schedule::new(rate, committers, u64::try_from(index).unwrap_or(0)));
        Ok(Committer {
            groups,
            pipelines,
            topic: args.target.topic.clone(),
            partitions: args.partitions,
            inflight: args.inflight,
            schedule,
        })
    }

    /// Commits until `duration` passed; returns the recorder and the commits that failed.
    async fn run(
        mut self,
        start: Instant,
        duration: Duration,
        warmup: Duration,
        counters: std::sync::Arc<Counters>,
    ) -> anyhow::Result<(Recorder, (u64, Option<String>))> {
        let (sent, mut acks) = mpsc::channel::<(Pending<OffsetCommitResponse>, Instant, String)>(
            self.inflight * self.pipelines.len().max(1),
        );
        let partitions = u64::from(self.partitions);
        let acker = tokio::spawn(async move {
            let mut recorder = Recorder::after_warmup(warmup);
            let mut failed = (0u64, None);
            while let Some((pending, due, target)) = acks.recv().await {
                let at = start.elapsed();
                let error = match pending.response().await {
                    Err(error) => Some(error.to_string()),
                    Ok(r) => {
                        let codes = r.topics.iter().flat_map(|t| &t.partitions);
                        codes.map(|p| p.error_code).find(|c| *c != 0).map(|c| describe(c, None))
                    }
                };
                if let Some(error) = error {
                    failed.0 += 1;
                    failed.1.get_or_insert(format!("{target}: {error}"));
                } else {
                    let latency = crate::stats::micros(Instant::now().duration_since(due));
                    recorder.latency(at, latency, 1);
                    recorder.count(at, partitions, 0);
                    counters.add(partitions, 0);
                }
            }
            (recorder, failed)
        });
        let mut index = 0u64;
        while start.elapsed() < duration {
            let due = match &self.schedule {
                Some(schedule) => {
                    let due = start + Duration::from_nanos(schedule.due_ns(index));
                    tokio::time::sleep_until(due.into()).await;
                    due
                }
                None => Instant::now(),
            };
            let (group, address) =
                &self.groups[usize::try_from(index).unwrap_or(0) % self.groups.len()];
            let request = self.request(group, i64::try_from(index).unwrap_or(i64::MAX));
            let pipeline = self.pipelines.get_mut(address).context("a coordinator's connection")?;
            let pending = pipeline.send(&request).await?;
            if sent.send((pending, due, format!("{group} at {address}"))).await.is_err() {
                break;
            }
            index += 1;
        }
        drop(sent);
        acker.await.context("the acker failed")
    }

    fn request(&self, group: &str, offset: i64) -> OffsetCommitRequest {
        Committer::request_of(&self.topic, self.partitions, group, offset)
    }

    /// A commit of `offset` for partitions `0..partitions` of `topic` by `group`.
    fn request_of(topic: &str, partitions: u32, group: &str, offset: i64) -> OffsetCommitRequest {
        let partitions = (0..partitions).map(|p| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(i32::try_from(p).unwrap_or(i32::MAX))
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
        });
        OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::from_static_str(""))
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(partitions.collect()),
            ])
    }
}
