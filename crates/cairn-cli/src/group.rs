//! `cairn group list|describe|reset-offsets|delete`: consumer groups over FindCoordinator,
//! ListGroups, DescribeGroups (ConsumerGroupDescribe for a consumer-protocol group, KIP-848),
//! OffsetFetch, OffsetCommit, DeleteGroups and ListOffsets.
//!
//! A group's requests go to its coordinator (FindCoordinator, then a connection to the node it
//! names); ListGroups goes to every broker, each listing the groups it coordinates; a log-end
//! offset is asked of the partition's leader.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use cairn_client::codes as errors;
use cairn_client::{Client, Options};
use clap::{Args, Subcommand};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, DeleteGroupsRequest, DescribeGroupsRequest,
    FindCoordinatorRequest, GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::lookup::{self, EARLIEST, LATEST, topic_name};
use crate::output;

/// Kafka's error codes the commands act on.
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const GROUP_ID_NOT_FOUND: i16 = 69;
/// How long a coordinator lookup retries while the coordinator is being elected or loaded.
const COORDINATOR_WAIT: Duration = Duration::from_secs(30);

/// Consumer group administration.
#[derive(Subcommand)]
pub enum GroupCommand {
    /// List the consumer groups of every broker, one per line: name, state, protocol type.
    List,
    /// Show a group: its state and members, and each committed offset with the partition's
    /// log end and the lag.
    Describe {
        /// The group.
        group: String,
    },
    /// Set a group's committed offsets of a topic. The group must have no members. Prints the
    /// plan and changes nothing unless --execute is given.
    ResetOffsets(ResetArgs),
    /// Delete a group and its committed offsets. The group must have no members.
    Delete {
        /// The group.
        group: String,
    },
}

/// `cairn group reset-offsets`.
#[derive(Args)]
pub struct ResetArgs {
    /// The group.
    group: String,
    /// The topic whose offsets are reset.
    #[arg(long)]
    topic: String,
    /// Only these partitions (comma-separated) [default: every partition].
    #[arg(long, value_delimiter = ',', value_name = "P,...")]
    partitions: Vec<i32>,
    #[command(flatten)]
    target: Target,
    /// Commit the new offsets (without it, only print them).
    #[arg(long)]
    execute: bool,
}

/// Where `reset-offsets` moves each partition's offset: exactly one of these.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct Target {
    /// The partition's log start.
    #[arg(long)]
    to_earliest: bool,
    /// The partition's log end.
    #[arg(long)]
    to_latest: bool,
    /// This offset (kept within the log start and end).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// The first record at or after this time, RFC 3339 (`2026-12-07T08:00:00Z`); the log end
    /// if there is none.
    #[arg(long, value_name = "TIME", value_parser = parse_datetime)]
    to_datetime: Option<i64>,
    /// The committed offset moved by N (negative: back), kept within the log.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
}

/// Runs `command`; `client` is connected to the bootstrap broker, `options` reach the others.
///
/// # Errors
/// A clear message for any failed request or refused change.
pub async fn run(
    client: &mut Client,
    options: &Options,
    command: GroupCommand,
) -> anyhow::Result<()> {
    match command {
        GroupCommand::List => list(client, options).await,
        GroupCommand::Describe { group } => describe(client, options, &group).await,
        GroupCommand::ResetOffsets(args) => reset(client, options, args).await,
        GroupCommand::Delete { group } => delete(client, options, &group).await,
    }
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// A connection to `host:port` with the bootstrap's settings.
async fn connect(options: &Options, host: &str, port: i32) -> anyhow::Result<Client> {
    let options = Options { bootstrap: format!("{host}:{port}"), ..options.clone() };
    Client::connect(&options).await.with_context(|| format!("connecting to {host}:{port}"))
}

/// A connection to `group`'s coordinator, retrying while it is elected or loading.
async fn coordinator(
    client: &mut Client,
    options: &Options,
    group: &str,
) -> anyhow::Result<Client> {
    let started = tokio::time::Instant::now();
    loop {
        // Version 4 batched the keys.
        let request = if client.version_of::<FindCoordinatorRequest>()? >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![text(group)])
        } else {
            FindCoordinatorRequest::default().with_key(text(group))
        };
        let response = client.send(&request).await?;
        let (code, message, host, port) = match response.coordinators.into_iter().next() {
            Some(c) => (c.error_code, c.error_message, c.host, c.port),
            None => (response.error_code, response.error_message, response.host, response.port),
        };
        let retriable = matches!(code, COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS);
        if code == 0 {
            return connect(options, host.as_str(), port).await;
        }
        if !retriable || started.elapsed() > COORDINATOR_WAIT {
            bail!(
                "finding the coordinator of group {group}: {}",
                errors::describe(code, message.as_deref())
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Retries `call` on the coordinator while it answers that it is loading or moved.
async fn at_coordinator<T>(
    client: &mut Client,
    options: &Options,
    group: &str,
    call: impl AsyncFn(&mut Client) -> anyhow::Result<Result<T, i16>>,
) -> anyhow::Result<T> {
    let started = tokio::time::Instant::now();
    loop {
        let mut at = coordinator(client, options, group).await?;
        match call(&mut at).await? {
            Ok(value) => return Ok(value),
            Err(code)
                if matches!(
                    code,
                    NOT_COORDINATOR | COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE
                ) && started.elapsed() <= COORDINATOR_WAIT =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(code) => bail!("group {group}: {}", errors::describe(code, None)),
        }
    }
}

async fn list(client: &mut Client, options: &Options) -> anyhow::Result<()> {
    let brokers = lookup::metadata(client, Some(&[])).await?.brokers;
    let mut groups = BTreeMap::new();
    for broker in brokers {
        let mut at = connect(options, broker.host.as_str(), broker.port).await?;
        let response = at.send(&ListGroupsRequest::default()).await?;
        if response.error_code != 0 {
            output::note(&format!(
                "broker {}: {}",
                broker.node_id.0,
                errors::describe(response.error_code, None)
            ));
        }
        for g in response.groups {
            groups.insert(
                g.group_id.0.to_string(),
                (g.group_state.to_string(), g.protocol_type.to_string()),
            );
        }
    }
    let mut out = String::new();
    for (name, (state, protocol_type)) in groups {
        let protocol_type = if protocol_type.is_empty() { "-" } else { protocol_type.as_str() };
        let _ = writeln!(out, "{name}\t{state}\t{protocol_type}");
    }
    output::print(&out)
}

/// A group as `describe` and `reset-offsets` see it, of either protocol.
struct Described {
    state: String,
    /// The protocol type and the protocol (classic) or the server assignor (consumer).
    protocol: String,
    members: Vec<Member>,
}

/// One member of a [`Described`] group.
struct Member {
    id: String,
    client: String,
    host: String,
    partitions: Vec<(String, i32)>,
}

/// One group at its coordinator; `None` if there is no such group. A classic group answers
/// DescribeGroups; a consumer-protocol one, not found there, ConsumerGroupDescribe.
async fn described(
    client: &mut Client,
    options: &Options,
    group: &str,
) -> anyhow::Result<Option<Described>> {
    if let Some(classic) = described_classic(client, options, group).await? {
        return Ok(Some(classic));
    }
    at_coordinator(client, options, group, async |at: &mut Client| {
        if at.version_of::<ConsumerGroupDescribeRequest>().is_err() {
            return Ok(Ok(None));
        }
        let request =
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(text(group))]);
        let described = at.send(&request).await?.groups.into_iter().next();
        let g = described.context("the coordinator did not describe the group")?;
        let members = g.members.into_iter().map(|m| Member {
            id: m.member_id.to_string(),
            client: m.client_id.to_string(),
            host: m.client_host.to_string(),
            partitions: m
                .assignment
                .topic_partitions
                .into_iter()
                .flat_map(|t| {
                    t.partitions.into_iter().map(move |p| (t.topic_name.0.to_string(), p))
                })
                .collect(),
        });
        Ok(match g.error_code {
            0 => Ok(Some(Described {
                state: g.group_state.to_string(),
                protocol: format!("consumer {}", or_dash(&g.assignor_name)),
                members: members.collect(),
            })),
            GROUP_ID_NOT_FOUND => Ok(None),
            code => Err(code),
        })
    })
    .await
}

fn or_dash(value: &StrBytes) -> &str {
    if value.is_empty() { "-" } else { value.as_str() }
}

/// DescribeGroups of one group at its coordinator; `None` if there is no such classic group.
async fn described_classic(
    client: &mut Client,
    options: &Options,
    group: &str,
) -> anyhow::Result<Option<Described>> {
    at_coordinator(client, options, group, async |at: &mut Client| {
        let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(text(group))]);
        let described = at.send(&request).await?.groups.into_iter().next();
        let g = described.context("the coordinator did not describe the group")?;
        let members = g.members.iter().map(|m| Member {
            id: m.member_id.to_string(),
            client: m.client_id.to_string(),
            host: m.client_host.to_string(),
            partitions: assigned(&m.member_assignment),
        });
        Ok(match g.error_code {
            0 if g.group_state.as_str() == "Dead" => Ok(None),
            0 => Ok(Some(Described {
                state: g.group_state.to_string(),
                protocol: format!("{} {}", or_dash(&g.protocol_type), or_dash(&g.protocol_data)),
                members: members.collect(),
            })),
            GROUP_ID_NOT_FOUND => Ok(None),
            code => Err(code),
        })
    })
    .await
}

/// The group's committed offsets, by (topic, partition).
async fn committed(
    client: &mut Client,
    options: &Options,
    group: &str,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    at_coordinator(client, options, group, async |at: &mut Client| {
        // Version 8 batched the groups; a null topic list asks for all.
        let request = if at.version_of::<OffsetFetchRequest>()? >= 8 {
            let all = OffsetFetchRequestGroup::default().with_group_id(GroupId(text(group)));
            OffsetFetchRequest::default().with_groups(vec![all.with_topics(None)])
        } else {
            OffsetFetchRequest::default().with_group_id(GroupId(text(group))).with_topics(None)
        };
        let response = at.send(&request).await?;
        let (code, topics) = match response.groups.into_iter().next() {
            Some(g) => (
                g.error_code,
                g.topics
                    .into_iter()
                    .map(|t| {
                        (
                            t.name,
                            t.partitions
                                .into_iter()
                                .map(|p| (p.partition_index, p.committed_offset))
                                .collect::<Vec<_>>(),
                        )
                    })
                    .collect::<Vec<_>>(),
            ),
            None => (
                response.error_code,
                response
                    .topics
                    .into_iter()
                    .map(|t| {
                        (
                            t.name,
                            t.partitions
                                .into_iter()
                                .map(|p| (p.partition_index, p.committed_offset))
                                .collect(),
                        )
                    })
                    .collect(),
            ),
        };
        if code != 0 {
            return Ok(Err(code));
        }
        let each = topics.into_iter().flat_map(|(name, partitions)| {
            partitions.into_iter().map(move |(p, offset)| ((name.0.to_string(), p), offset))
        });
        Ok(Ok(each.collect()))
    })
    .await
}

/// The (topic, partition) pairs of a consumer-protocol assignment (`version: i16, [topic:
/// string, [partition: i32]], user_data: bytes`); empty if it does not parse.
fn assigned(assignment: &[u8]) -> Vec<(String, i32)> {
    fn parse(bytes: &[u8]) -> Option<Vec<(String, i32)>> {
        let mut at = 2usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let slice = bytes.get(at..at + n)?;
            at += n;
            Some(slice)
        };
        let mut out = Vec::new();
        let topics = i32::from_be_bytes(take(4)?.try_into().ok()?);
        for _ in 0..topics.max(0) {
            let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
            let name = String::from_utf8(take(usize::try_from(len).ok()?)?.to_vec()).ok()?;
            let partitions = i32::from_be_bytes(take(4)?.try_into().ok()?);
            for _ in 0..partitions.max(0) {
                out.push((name.clone(), i32::from_be_bytes(take(4)?.try_into().ok()?)));
            }
        }
        Some(out)
    }
    if assignment.len() < 2 { Vec::new() } else { parse(assignment).unwrap_or_default() }
}

async fn describe(client: &mut Client, options: &Options, group: &str) -> anyhow::Result<()> {
    let Some(described) = described(client, options, group).await? else {
        bail!("group {group} does not exist");
    };
    let committed = committed(client, options, group).await?;
    let mut out = String::new();
    let _ = writeln!(out, "group: {group}");
    let _ = writeln!(out, "state: {}", described.state);
    let _ = writeln!(out, "protocol: {}", described.protocol);
    let _ = writeln!(out, "members: {}", described.members.len());
    let _ = writeln!(out);
    let owners = members_table(&mut out, &described.members);
    let mut rows = vec![
        ["topic", "partition", "committed", "log end", "lag", "member"].map(str::to_owned).to_vec(),
    ];
    for ((topic, partition), offset) in &committed {
        let end = log_end(client, options, topic, *partition).await;
        let lag = match (&end, *offset) {
            (Ok(end), offset) if offset >= 0 => (end - offset).max(0).to_string(),
            _ => "-".to_owned(),
        };
        rows.push(vec![
            topic.clone(),
            partition.to_string(),
            if *offset < 0 { "-".to_owned() } else { offset.to_string() },
            end.map_or_else(|error| error, |end| end.to_string()),
            lag,
            owners.get(&(topic.clone(), *partition)).cloned().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    output::table(&mut out, &rows);
    output::print(&out)
}

/// Appends the table of `members` (nothing without members); returns the member each
/// assigned partition belongs to.
fn members_table(out: &mut String, members: &[Member]) -> BTreeMap<(String, i32), String> {
    let mut owners = BTreeMap::new();
    if members.is_empty() {
        return owners;
    }
    let mut rows = vec![["member", "client", "host", "partitions"].map(str::to_owned).to_vec()];
    for member in members {
        let listed: Vec<String> =
            member.partitions.iter().map(|(t, p)| format!("{t}-{p}")).collect();
        for tp in &member.partitions {
            owners.insert(tp.clone(), member.id.clone());
        }
        rows.push(vec![
            member.id.clone(),
            member.client.clone(),
            member.host.clone(),
            if listed.is_empty() { "-".to_owned() } else { listed.join(",") },
        ]);
    }
    output::table(out, &rows);
    let _ = writeln!(out);
    owners
}

/// The log end (high watermark) of a partition, asked of its leader; the error as text.
async fn log_end(
    client: &mut Client,
    options: &Options,
    topic: &str,
    partition: i32,
) -> Result<i64, String> {
    offset_at(client, options, topic, partition, LATEST).await.map_err(|error| format!("({error})"))
}

/// ListOffsets for `timestamp` of one partition at its leader.
async fn offset_at(
    client: &mut Client,
    options: &Options,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> anyhow::Result<i64> {
    let metadata = lookup::metadata(client, Some(&[topic])).await?;
    let leader = metadata
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == partition)
        .map(|p| p.leader_id)
        .with_context(|| format!("{topic}-{partition} does not exist"))?;
    let broker = metadata.brokers.iter().find(|b| b.node_id == leader);
    let broker = broker.with_context(|| format!("{topic}-{partition} has no leader"))?;
    let mut at = connect(options, broker.host.as_str(), broker.port).await?;
    let offsets = lookup::offsets(&mut at, topic, &[partition], timestamp).await?;
    Ok(offsets[0])
}

async fn reset(client: &mut Client, options: &Options, args: ResetArgs) -> anyhow::Result<()> {
    if let Some(described) = described(client, options, &args.group).await?
        && described.state != "Empty"
    {
        let state = &described.state;
        bail!(
            "group {} is {state} with {} member(s): offsets can only be reset while it has none (stop its consumers first)",
            args.group,
            described.members.len()
        );
    }
    let topic = lookup::topic(client, &args.topic).await?;
    let partitions: Vec<i32> = if args.partitions.is_empty() {
        topic.partitions.iter().map(|p| p.partition_index).collect()
    } else {
        args.partitions.clone()
    };
    let committed = committed(client, options, &args.group).await?;
    let mut plan = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let current = committed.get(&(args.topic.clone(), partition)).copied().filter(|o| *o >= 0);
        let target = target_offset(client, options, &args, partition, current).await?;
        plan.push((partition, current, target));
    }
    let mut out = String::new();
    let mut rows = vec![["topic", "partition", "committed", "new"].map(str::to_owned).to_vec()];
    for (partition, current, target) in &plan {
        rows.push(vec![
            args.topic.clone(),
            partition.to_string(),
            current.map_or_else(|| "-".to_owned(), |o| o.to_string()),
            target.to_string(),
        ]);
    }
    output::table(&mut out, &rows);
    if !args.execute {
        let _ = writeln!(out, "\ndry run: nothing changed (add --execute to commit these offsets)");
        return output::print(&out);
    }
    commit(client, options, &args.group, &args.topic, &plan).await?;
    let _ = writeln!(out, "\ncommitted");
    output::print(&out)
}

/// Where `args` moves one partition whose committed offset is `current`.
async fn target_offset(
    client: &mut Client,
    options: &Options,
    args: &ResetArgs,
    partition: i32,
    current: Option<i64>,
) -> anyhow::Result<i64> {
    let topic = &args.topic;
    let start = offset_at(client, options, topic, partition, EARLIEST).await?;
    let end = offset_at(client, options, topic, partition, LATEST).await?;
    let target = &args.target;
    let offset = if target.to_earliest {
        start
    } else if target.to_latest {
        end
    } else if let Some(offset) = target.to_offset {
        offset
    } else if let Some(time) = target.to_datetime {
        match offset_at(client, options, topic, partition, time).await? {
            -1 => end,
            found => found,
        }
    } else if let Some(shift) = target.shift_by {
        current.unwrap_or(start).saturating_add(shift)
    } else {
        unreachable!("clap requires one target");
    };
    Ok(offset.clamp(start, end))
}

/// Commits `plan` as a group without members (generation −1).
async fn commit(
    client: &mut Client,
    options: &Options,
    group: &str,
    topic: &str,
    plan: &[(i32, Option<i64>, i64)],
) -> anyhow::Result<()> {
    at_coordinator(client, options, group, async |at: &mut Client| {
        let partitions = plan.iter().map(|(partition, _, offset)| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1)
        });
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(text(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(text(""))
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(partitions.collect()),
            ]);
        let response = at.send(&request).await?;
        let code = response
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.error_code)
            .find(|c| *c != 0);
        Ok(code.map_or(Ok(()), Err))
    })
    .await
}

async fn delete(client: &mut Client, options: &Options, group: &str) -> anyhow::Result<()> {
    at_coordinator(client, options, group, async |at: &mut Client| {
        let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(text(group))]);
        let result = at.send(&request).await?.results.into_iter().next();
        let code = result.context("the coordinator did not answer for the group")?.error_code;
        Ok(if code == 0 { Ok(()) } else { Err(code) })
    })
    .await?;
    output::print(&format!("deleted group {group}\n"))
}

/// Parses RFC 3339 (`2026-12-07T08:00:00Z`, `2026-12-07T09:00:00.5+01:00`) to ms since the
/// epoch.
fn parse_datetime(value: &str) -> Result<i64, String> {
    let bad = || format!("{value:?} is not an RFC 3339 time such as 2026-12-07T08:00:00Z");
    let (date, rest) = value.split_once(['T', 't', ' ']).ok_or_else(bad)?;
    let mut ymd = date.splitn(3, '-').map(str::parse::<i64>);
    let (Some(Ok(y)), Some(Ok(m)), Some(Ok(d))) = (ymd.next(), ymd.next(), ymd.next()) else {
        return Err(bad());
    };
    let zone_at = rest.find(['Z', 'z', '+', '-']).ok_or_else(bad)?;
    let (time, zone) = rest.split_at(zone_at);
    let mut hms = time.splitn(3, ':');
    let (Some(h), Some(min), Some(s)) = (hms.next(), hms.next(), hms.next()) else {
        return Err(bad());
    };
    let (h, min): (i64, i64) = (h.parse().map_err(|_| bad())?, min.parse().map_err(|_| bad())?);
    let seconds: f64 = s.parse().map_err(|_| bad())?;
    let offset_min = match zone {
        "Z" | "z" => 0,
        _ => {
            let (sign, hm) = zone.split_at(1);
            let (oh, om) = hm.split_once(':').ok_or_else(bad)?;
            let minutes = oh.parse::<i64>().map_err(|_| bad())? * 60
                + om.parse::<i64>().map_err(|_| bad())?;
            if sign == "-" { -minutes } else { minutes }
        }
    };
    let valid = (1..=12).contains(&m)
        && (1..=31).contains(&d)
        && h < 24
        && min < 60
        && (0.0..61.0).contains(&seconds);
    if !valid {
        return Err(bad());
    }
    let days = days_from_civil(y, m, d);
    let ms = ((days * 24 + h) * 60 + min - offset_min) * 60_000 + (seconds * 1000.0).round() as i64;
    Ok(ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_to_epoch_milliseconds() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_datetime("2026-12-07T08:00:00Z"), Ok(1_796_630_400_000));
        assert_eq!(parse_datetime("2026-12-07T09:00:00.5+01:00"), Ok(1_796_630_400_500));
        assert_eq!(parse_datetime("2000-03-01T00:00:00-00:30"), Ok(951_870_600_000));
        assert!(parse_datetime("2026-13-07T08:00:00Z").is_err());
        assert!(parse_datetime("yesterday").is_err());
        assert!(parse_datetime("2026-12-07T08:00:00").is_err(), "a zone is required");
    }

    #[test]
    fn assignments_list_their_partitions() {
        let mut bytes = vec![0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 9];
        bytes.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(assigned(&bytes), [("t".to_owned(), 4), ("t".to_owned(), 9)]);
        assert_eq!(assigned(&[0, 1, 0, 0]), Vec::new(), "truncated: nothing");
        assert_eq!(assigned(&[]), Vec::new());
    }
}
