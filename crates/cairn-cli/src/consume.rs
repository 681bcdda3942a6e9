//! `cairn consume`: read a topic's records with a Fetch loop and print them.
//!
//! The starting offset of each partition comes from `--from` (ListOffsets for earliest, latest
//! and timestamps). Without `--follow`, each partition is read up to its high watermark as it
//! was at the start, then the command ends; with it, fetches long-poll (`max_wait_ms` 500) until
//! interrupted. Control batches are skipped, compressed batches decompressed.
//!
//! Output: `text` prints `key<TAB>value` per record, the bytes as they are (a null key or value
//! prints as nothing); `json` prints one object per line, `{"topic", "partition", "offset",
//! "timestamp", "key", "value", "headers": [{"key", "value"}]}`, where bytes are decoded as
//! UTF-8 with invalid sequences replaced by U+FFFD (lossy), and null stays `null`.

use std::borrow::Cow;
use std::convert::Infallible;

use anyhow::{Context, bail};
use cairn_client::Client;
use cairn_client::codes as errors;
use cairn_client::fetch::{self, Limits};
use cairn_client::records::{Consumed, DecodeError, decode_batches};
use clap::{Args, ValueEnum};
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::messages::fetch_response::PartitionData;
use serde::Serialize;

use crate::lookup::{self, EARLIEST, LATEST};

/// The fetches' limits: the broker waits up to 500 ms for new records; a response carries at
/// most 16 MiB, at most 1 MiB of it from one partition (the broker still sends a first batch
/// larger than this whole).
pub const FETCH_LIMITS: Limits =
    Limits { partition_bytes: 1024 * 1024, bytes: 16 * 1024 * 1024, max_wait_ms: 500 };

/// Kafka's OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// `cairn consume`.
#[derive(Args)]
pub struct ConsumeArgs {
    /// The topic.
    topic: String,
    /// Read only this partition [default: all].
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// Where to start: earliest, latest, an offset, or @TIMESTAMP_MS (the first record at or
    /// after that time, in ms since the Unix epoch).
    #[arg(long, default_value = "earliest", value_name = "POSITION", value_parser = parse_from)]
    from: From,
    /// Keep waiting for new records instead of stopping at the end of each partition.
    #[arg(long)]
    follow: bool,
    /// Stop after this many records.
    #[arg(long, value_name = "N")]
    max_records: Option<u64>,
    /// Output: text (key<TAB>value, raw bytes) or json (one object per line, bytes as UTF-8
    /// with invalid sequences replaced).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Where consumption starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    /// The log start offset.
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// This offset.
    Offset(i64),
    /// The first record with a timestamp at or after this (ms since the epoch).
    Timestamp(i64),
}

/// How records are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `key<TAB>value`, raw bytes.
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses `--from`.
fn parse_from(text: &str) -> Result<From, String> {
    let invalid = || format!("expected earliest, latest, an offset or @TIMESTAMP_MS, got {text:?}");
    match text {
        "earliest" => Ok(From::Earliest),
        "latest" => Ok(From::Latest),
        _ => match text.strip_prefix('@') {
            Some(ms) => ms.parse::<i64>().ok().filter(|ms| *ms >= 0).map(From::Timestamp),
            None => text.parse::<i64>().ok().filter(|o| *o >= 0).map(From::Offset),
        }
        .ok_or_else(invalid),
    }
}

/// One record as JSON.
#[derive(Serialize)]
struct JsonRecord<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Option<Cow<'a, str>>,
    value: Option<Cow<'a, str>>,
    headers: Vec<JsonHeader<'a>>,
}

/// One record header as JSON.
#[derive(Serialize)]
struct JsonHeader<'a> {
    key: Cow<'a, str>,
    value: Option<Cow<'a, str>>,
}

fn lossy(bytes: Option<&[u8]>) -> Option<Cow<'_, str>> {
    bytes.map(String::from_utf8_lossy)
}

/// Appends one record to `out` in `format`.
fn print_record(
    out: &mut Vec<u8>,
    format: Format,
    topic: &str,
    partition: i32,
    record: &Consumed<'_>,
) {
    match format {
        Format::Text => {
            out.extend_from_slice(record.key.unwrap_or_default());
            out.push(b'\t');
            out.extend_from_slice(record.value.unwrap_or_default());
            out.push(b'\n');
        }
        Format::Json => {
            let json = JsonRecord {
                topic,
                partition,
                offset: record.offset,
                timestamp: record.timestamp,
                key: lossy(record.key),
                value: lossy(record.value),
                headers: record
                    .headers
                    .iter()
                    .map(|(key, value)| JsonHeader {
                        key: String::from_utf8_lossy(key),
                        value: lossy(*value),
                    })
                    .collect(),
            };
            // Serializing strings and integers into memory cannot fail.
            let _ = serde_json::to_writer(&mut *out, &json);
            out.push(b'\n');
        }
    }
}

/// Where one partition stands.
struct Position {
    partition: i32,
    /// The next offset to fetch.
    next: i64,
    /// Stop before this offset (`None` with `--follow`).
    end: Option<i64>,
}

impl Position {
    fn done(&self) -> bool {
        self.end.is_some_and(|end| self.next >= end)
    }
}

/// Where each of `partitions` starts (from `from`), and, without `follow`, where it ends: its
/// high watermark now.
async fn start_positions(
    client: &mut Client,
    name: &str,
    partitions: Vec<i32>,
    from: From,
    follow: bool,
) -> anyhow::Result<Vec<Position>> {
    let latest = lookup::offsets(client, name, &partitions, LATEST).await?;
    let starts = match from {
        From::Earliest => lookup::offsets(client, name, &partitions, EARLIEST).await?,
        From::Latest => latest.clone(),
        From::Offset(offset) => {
            let earliest = lookup::offsets(client, name, &partitions, EARLIEST).await?;
            for ((partition, earliest), latest) in partitions.iter().zip(&earliest).zip(&latest) {
                if offset < *earliest || offset > *latest {
                    bail!(
                        "offset {offset} is out of range for {name}-{partition}: it holds \
                         offsets {earliest}..{latest}"
                    );
                }
            }
            vec![offset; partitions.len()]
        }
        From::Timestamp(ms) => {
            let found = lookup::offsets(client, name, &partitions, ms).await?;
            // -1: no record at or after the time, so start at the end.
            found.iter().zip(&latest).map(|(&f, &l)| if f < 0 { l } else { f }).collect()
        }
    };
    Ok(partitions
        .into_iter()
        .zip(starts.into_iter().zip(latest))
        .map(|(partition, (next, latest))| Position {
            partition,
            next,
            end: (!follow).then_some(latest),
        })
        .collect())
}

/// Appends the records of one partition's fetch answer to `out` (at most `remaining`, none at
/// or past the position's end) and moves the position past them; returns how many it took.
fn take_records(
    data: PartitionData,
    position: &mut Position,
    name: &str,
    format: Format,
    remaining: Option<u64>,
    out: &mut Vec<u8>,
) -> anyhow::Result<u64> {
    let partition = position.partition;
    match data.error_code {
        0 => {}
        OFFSET_OUT_OF_RANGE => bail!(
            "offset {} is out of range for {name}-{partition}: it holds offsets {}..{} \
             (retention may have removed records)",
            position.next,
            data.log_start_offset,
            data.high_watermark
        ),
        code => bail!("fetching {name}-{partition}: {}", errors::describe(code, None)),
    }
    let records = data.records.unwrap_or_default();
    let from = position.next;
    let mut taken = 0u64;
    let end = position.end;
    let decoded = decode_batches::<Infallible>(&records, position.next, |record| {
        if end.is_some_and(|end| record.offset >= end) {
            return Ok(false);
        }
        print_record(out, format, name, partition, &record);
        taken += 1;
        Ok(remaining.is_none_or(|remaining| taken < remaining))
    });
    match decoded {
        // A broker answers with the first batch whole however large (KIP-74); without one,
        // fetching again from the same offset would loop forever.
        Ok(decoded) if decoded.next_offset == from && !records.is_empty() => {
            bail!("fetching {name}-{partition}: the broker sent no whole batch at offset {from}")
        }
        Ok(decoded) => position.next = decoded.next_offset,
        Err(DecodeError::Batch(reason)) => {
            bail!("malformed records from {name}-{partition}: {reason}")
        }
        Err(DecodeError::Visit(never)) => match never {},
    }
    Ok(taken)
}

/// Runs `cairn consume`.
///
/// # Errors
/// A clear message for an unknown topic or partition, an offset out of range, or a failed
/// fetch.
pub async fn run(client: &mut Client, args: ConsumeArgs) -> anyhow::Result<()> {
    let name = args.topic.as_str();
    let topic = lookup::topic(client, name).await?;
    let all: Vec<i32> = topic.partitions.iter().map(|p| p.partition_index).collect();
    let partitions = match args.partition {
        None => all,
        Some(partition) => {
            let partition = i32::try_from(partition).unwrap_or(i32::MAX);
            if !all.contains(&partition) {
                bail!("topic {name} has no partition {partition} (it has {})", all.len());
            }
            vec![partition]
        }
    };
    let mut positions = start_positions(client, name, partitions, args.from, args.follow).await?;
    // Fetch addresses topics by id from v13, by name before.
    let by_id = client.version_of::<FetchRequest>()? >= 13;
    if by_id && topic.topic_id.is_nil() {
        bail!("the broker reported no id for topic {name}, which its Fetch version needs");
    }
    let mut printed = 0u64;
    let mut out = Vec::new();
    loop {
        if args.max_records.is_some_and(|max| printed >= max) {
            return Ok(());
        }
        let unfinished = positions.iter().filter(|p| !p.done()).map(|p| (p.partition, p.next));
        let topic_id = by_id.then_some(topic.topic_id);
        let Some(request) = fetch::request(name, topic_id, unfinished, FETCH_LIMITS) else {
            return Ok(());
        };
        let response = client.send(&request).await.context("fetching records")?;
        if response.error_code != 0 {
            bail!("fetch failed: {}", errors::describe(response.error_code, None));
        }
        out.clear();
        for data in response.responses.into_iter().flat_map(|t| t.partitions) {
            let Some(position) = positions.iter_mut().find(|p| p.partition == data.partition_index)
            else {
                continue;
            };
            let remaining = args.max_records.map(|max| max - printed);
            printed += take_records(data, position, name, args.format, remaining, &mut out)?;
            if args.max_records.is_some_and(|max| printed >= max) {
                break;
            }
        }
        crate::output::write(&out)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_positions() {
        assert_eq!(parse_from("earliest"), Ok(From::Earliest));
        assert_eq!(parse_from("latest"), Ok(From::Latest));
        assert_eq!(parse_from("42"), Ok(From::Offset(42)));
        assert_eq!(parse_from("@1700000000000"), Ok(From::Timestamp(1_700_000_000_000)));
        for bad in ["", "-1", "@", "@-5", "@x", "first"] {
            assert!(parse_from(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_records_are_lossy_utf8_with_nulls() {
        let record = Consumed {
            offset: 7,
            timestamp: 1_700_000_000_000,
            key: Some(b"k\xff"),
            value: None,
            headers: vec![(b"h", Some(b"v")), (b"n", None)],
        };
        let mut out = Vec::new();
        print_record(&mut out, Format::Json, "t", 2, &record);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "topic": "t", "partition": 2, "offset": 7, "timestamp": 1_700_000_000_000i64,
                "key": "k\u{fffd}", "value": null,
                "headers": [{"key": "h", "value": "v"}, {"key": "n", "value": null}],
            })
        );
        out.clear();
        print_record(&mut out, Format::Text, "t", 2, &record);
        assert_eq!(out, b"k\xff\t\n");
    }
}
