//! `cairn produce`: one record per input line, batched per partition, sent with Produce.
//!
//! Records go into one open batch per partition (at most [`BATCH_RECORDS_MAX`] records or about
//! [`BATCH_BYTES_TARGET`] bytes, then it is sealed: built, and compressed if asked). Sealed
//! batches wait in the request being assembled, at most one per partition (Kafka accepts exactly
//! one batch per partition in a Produce request), until it holds [`REQUEST_BYTES_TARGET`] bytes,
//! input pauses for [`LINGER`], or input ends; then it is sent and its answer awaited before
//! the next one. A thread reads the input into a queue of at most [`QUEUED_BYTES_MAX`], so memory
//! is bounded by that, [`OPEN_BYTES_MAX`] of open batches, and one request.
//!
//! Partitions: `--partition` sends everything there; otherwise a keyed record goes where Kafka's
//! default partitioner puts it (`murmur2(key)`), and unkeyed records fill one partition's batch
//! at a time, starting at an arbitrary one and moving round-robin to the next partition when that
//! batch is sealed.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use cairn_client::Client;
use cairn_client::codes as errors;
use cairn_client::records::{compressed_batch, parse_codec, partition_for_key};
use cairn_types::batch::{BatchBuilder, Compression};
use cairn_types::limits::BATCH_BYTES_MAX;
use clap::Args;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::lookup::{self, topic_name};
use crate::topic::parse_key_value;

/// Records in one batch before it is sealed (a batch holds at least one).
pub const BATCH_RECORDS_MAX: u32 = 1000;
/// Uncompressed bytes after which a batch is sealed. A single larger record still makes a batch
/// of its own (the broker decides whether `max.message.bytes` allows it).
pub const BATCH_BYTES_TARGET: usize = 1024 * 1024;
/// Bytes of sealed batches after which the request is sent.
pub const REQUEST_BYTES_TARGET: usize = 8 * 1024 * 1024;
/// Bytes of all open batches together; past it every open batch is sealed and sent.
pub const OPEN_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Longest input line (one record): a record cannot be larger than a batch.
pub const LINE_BYTES_MAX: usize = BATCH_BYTES_MAX as usize;
/// How long a pause in the input may last before what has been read is sent anyway, so that
/// typed or trickling input is produced promptly.
pub const LINGER: Duration = Duration::from_millis(50);
/// Input lines queued between the reading thread and the producer.
pub const QUEUED_LINES_MAX: usize = 1024;
/// Bytes of input lines queued between the reading thread and the producer (a longer line
/// takes the whole budget alone).
pub const QUEUED_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Bytes a record adds to a batch beyond its key, value and headers (lengths, deltas): an upper
/// estimate used to decide when a batch is full.
const RECORD_OVERHEAD_BYTES: usize = 32;

/// `cairn produce`.
#[derive(Args)]
pub struct ProduceArgs {
    /// The topic (it must exist).
    topic: String,
    /// Send every record to this partition [default: by key, round-robin without a key].
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// Split each line at the first SEP into key and value (`\t` means a tab). Without it,
    /// records have no key.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header added to every record; repeatable.
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    headers: Vec<(String, String)>,
    /// Acknowledgement to wait for: 0 (none: offsets are not reported), 1 (the leader's
    /// append) or all (durable).
    #[arg(long, default_value = "all", value_name = "0|1|all", value_parser = parse_acks)]
    acks: i16,
    /// Compression codec of the batches: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_name = "CODEC", value_parser = parse_codec)]
    compression: Compression,
    /// Read lines from this file instead of standard input.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
}

/// Parses `--acks`.
fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        other => Err(format!("expected 0, 1 or all, got {other:?}")),
    }
}

/// The separator as given, with `\t` meaning a tab.
fn separator(text: &str) -> anyhow::Result<Vec<u8>> {
    if text.is_empty() {
        bail!("--key-separator must not be empty");
    }
    Ok(if text == "\\t" { b"\t".to_vec() } else { text.as_bytes().to_vec() })
}

/// `1 record`, `2 records`.
fn records(count: u64) -> String {
    if count == 1 { "1 record".to_owned() } else { format!("{count} records") }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs `cairn produce`.
///
/// # Errors
/// A clear message for bad input, an unknown topic or partition, or a failed produce (what was
/// produced before is reported too).
pub async fn run(client: &mut Client, args: ProduceArgs) -> anyhow::Result<()> {
    let separator = args.key_separator.as_deref().map(separator).transpose()?;
    let input: Box<dyn Read + Send> = match &args.file {
        Some(path) => Box::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ),
        None => Box::new(std::io::stdin()),
    };
    let topic = lookup::topic(client, &args.topic).await?;
    let partitions = u32::try_from(topic.partitions.len()).unwrap_or(u32::MAX);
    if partitions == 0 {
        bail!("topic {} has no partitions", args.topic);
    }
    if let Some(partition) = args.partition
        && partition >= partitions
    {
        bail!("topic {} has no partition {partition} (it has {partitions})", args.topic);
    }
    let headers: Vec<(Vec<u8>, Vec<u8>)> =
        args.headers.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect();
    let mut producer = Producer {
        client,
        topic,
        name: args.topic.clone(),
        partitions,
        fixed_partition: args.partition,
        acks: args.acks,
        codec: args.compression,
        open: (0..partitions).map(|_| None).collect(),
        open_bytes: 0,
        ready: BTreeMap::new(),
        ready_bytes: 0,
        // Like Kafka's sticky partitioner, unkeyed records start at an arbitrary partition.
        sticky: (now_ms().unsigned_abs() % u64::from(partitions)) as u32,
        produced: BTreeMap::new(),
        sent: 0,
    };
    let result = read_lines(input, separator.as_deref(), &headers, &mut producer).await;
    let result = match result {
        Ok(()) => producer.finish().await,
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => crate::output::print(&producer.summary()),
        Err(error) if producer.sent > 0 => {
            Err(anyhow::anyhow!("{error:#} (records sent before the failure: {})", producer.sent))
        }
        Err(error) => Err(error),
    }
}

/// What the reading thread hands over.
enum Input {
    /// One line without its line end, holding its share of the queue's byte budget.
    Line(Vec<u8>, OwnedSemaphorePermit),
    /// A line longer than [`LINE_BYTES_MAX`].
    TooLong,
    /// Reading failed.
    Failed(std::io::Error),
}

/// Reads lines on a thread of its own (blocking reads of standard input or a file) into a
/// channel bounded by [`QUEUED_LINES_MAX`] lines and [`QUEUED_BYTES_MAX`] bytes. The channel
/// closes at the end of the input.
fn spawn_reader(input: Box<dyn Read + Send>) -> mpsc::Receiver<Input> {
    let (lines, receiver) = mpsc::channel(QUEUED_LINES_MAX);
    let budget = Arc::new(Semaphore::new(QUEUED_BYTES_MAX));
    let runtime = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::with_capacity(256 * 1024, input);
        loop {
            let mut line = Vec::new();
            let limit = LINE_BYTES_MAX as u64 + 1;
            let read = match (&mut reader).take(limit).read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) if line.last() != Some(&b'\n') && line.len() > LINE_BYTES_MAX => {
                    Input::TooLong
                }
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    let share = line.len().clamp(1, QUEUED_BYTES_MAX) as u32;
                    let Ok(permit) =
                        runtime.block_on(Arc::clone(&budget).acquire_many_owned(share))
                    else {
                        return;
                    };
                    Input::Line(line, permit)
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => Input::Failed(error),
            };
            let last = !matches!(read, Input::Line(..));
            // The producer stopped (after an error): nothing more to do.
            if lines.blocking_send(read).is_err() || last {
                return;
            }
        }
    });
    receiver
}

/// Feeds the lines of `input` to `producer`; a pause in the input longer than [`LINGER`] sends
/// what is pending.
async fn read_lines(
    input: Box<dyn Read + Send>,
    separator: Option<&[u8]>,
    headers: &[(Vec<u8>, Vec<u8>)],
    producer: &mut Producer<'_>,
) -> anyhow::Result<()> {
    let mut lines = spawn_reader(input);
    let header_refs: Vec<(&[u8], Option<&[u8]>)> =
        headers.iter().map(|(k, v)| (k.as_slice(), Some(v.as_slice()))).collect();
    let mut number = 0u64;
    loop {
        let next = if producer.pending() {
            match tokio::time::timeout(LINGER, lines.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    producer.flush_all().await?;
                    continue;
                }
            }
        } else {
            lines.recv().await
        };
        number += 1;
        let line = match next {
            None => return Ok(()),
            Some(Input::Line(line, _permit)) => line,
            Some(Input::TooLong) => bail!("line {number} is longer than {LINE_BYTES_MAX} bytes"),
            Some(Input::Failed(error)) => return Err(error).context("reading input"),
        };
        let (key, value) = match separator {
            None => (None, &line[..]),
            Some(separator) => {
                let Some(at) = line.windows(separator.len()).position(|w| w == separator) else {
                    bail!(
                        "line {number} has no key separator {:?}",
                        String::from_utf8_lossy(separator)
                    );
                };
                (Some(&line[..at]), &line[at + separator.len()..])
            }
        };
        producer.add(key, value, &header_refs, now_ms()).await?;
    }
}

/// A batch being filled.
struct Open {
    builder: BatchBuilder,
    records: u32,
    /// Estimated uncompressed size.
    bytes: usize,
}

/// A sealed batch waiting in the request being assembled.
struct Ready {
    batch: Vec<u8>,
    records: u32,
}

/// What was produced to one partition.
#[derive(Clone, Copy)]
struct Produced {
    first_offset: i64,
    last_offset: i64,
    records: u64,
}

struct Producer<'a> {
    client: &'a mut Client,
    /// The topic's metadata (its id addresses it from Produce v13).
    topic: MetadataResponseTopic,
    name: String,
    partitions: u32,
    fixed_partition: Option<u32>,
    acks: i16,
    codec: Compression,
    /// The open batch of each partition.
    open: Vec<Option<Open>>,
    open_bytes: usize,
    /// Sealed batches by partition: the next request.
    ready: BTreeMap<u32, Ready>,
    ready_bytes: usize,
    /// The partition unkeyed records go to.
    sticky: u32,
    /// Acknowledged offsets by partition.
    produced: BTreeMap<u32, Produced>,
    /// Records sent (acknowledged, or written for acks=0).
    sent: u64,
}

impl Producer<'_> {
    /// Whether records are waiting to be sent.
    fn pending(&self) -> bool {
        self.open_bytes > 0 || !self.ready.is_empty()
    }

    async fn add(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&[u8], Option<&[u8]>)],
        timestamp: i64,
    ) -> anyhow::Result<()> {
        let partition = match (self.fixed_partition, key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => partition_for_key(key, self.partitions),
            (None, None) => self.sticky,
        };
        let size = RECORD_OVERHEAD_BYTES
            + key.map_or(0, <[u8]>::len)
            + value.len()
            + headers.iter().map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len) + 8).sum::<usize>();
        let slot = &mut self.open[partition as usize];
        let open = slot.get_or_insert_with(|| Open {
            builder: BatchBuilder::new(timestamp),
            records: 0,
            bytes: 0,
        });
        let builder = std::mem::replace(&mut open.builder, BatchBuilder::new(timestamp));
        open.builder = builder.record_at(timestamp, key, Some(value), headers);
        open.records += 1;
        open.bytes += size;
        self.open_bytes += size;
        if open.records >= BATCH_RECORDS_MAX || open.bytes >= BATCH_BYTES_TARGET {
            self.seal(partition).await?;
        }
        if self.open_bytes > OPEN_BYTES_MAX {
            self.flush_all().await?;
        }
        Ok(())
    }

    /// Builds the open batch of `partition` into the next request (sending the current one
    /// first if it already holds a batch for that partition).
    async fn seal(&mut self, partition: u32) -> anyhow::Result<()> {
        let Some(open) = self.open[partition as usize].take() else { return Ok(()) };
        self.open_bytes -= open.bytes;
        if partition == self.sticky {
            self.sticky = (self.sticky + 1) % self.partitions;
        }
        if self.ready.contains_key(&partition) {
            self.send().await?;
        }
        let batch = compressed_batch(&open.builder.build(), self.codec).map_err(|reason| {
            anyhow::anyhow!("building a batch for partition {partition}: {reason}")
        })?;
        self.ready_bytes += batch.len();
        self.ready.insert(partition, Ready { batch, records: open.records });
        if self.ready_bytes >= REQUEST_BYTES_TARGET {
            self.send().await?;
        }
        Ok(())
    }

    /// Seals every open batch and sends everything.
    async fn flush_all(&mut self) -> anyhow::Result<()> {
        for partition in 0..self.partitions {
            self.seal(partition).await?;
        }
        self.send().await
    }

    /// Sends everything at the end of the input.
    async fn finish(&mut self) -> anyhow::Result<()> {
        self.flush_all().await
    }

    /// Sends the assembled request and records its answer.
    async fn send(&mut self) -> anyhow::Result<()> {
        if self.ready.is_empty() {
            return Ok(());
        }
        let ready = std::mem::take(&mut self.ready);
        self.ready_bytes = 0;
        let version = self.client.version_of::<ProduceRequest>()?;
        let partition_data = ready
            .iter()
            .map(|(&partition, ready)| {
                PartitionProduceData::default()
                    .with_index(partition as i32)
                    .with_records(Some(Bytes::from(ready.batch.clone())))
            })
            .collect();
        // Produce addresses topics by id from v13, by name before.
        let mut topic = TopicProduceData::default().with_partition_data(partition_data);
        if version >= 13 {
            topic.topic_id = self.topic.topic_id;
        } else {
            topic.name = topic_name(&self.name);
        }
        let request = ProduceRequest::default()
            .with_acks(self.acks)
            .with_timeout_ms(self.client.request_timeout_ms())
            .with_topic_data(vec![topic]);
        let records: u64 = ready.values().map(|r| u64::from(r.records)).sum();
        if self.acks == 0 {
            self.client.send_without_response(&request).await?;
            self.sent += records;
            return Ok(());
        }
        let response = self.client.send(&request).await?;
        self.record(&ready, &response)
    }

    /// Checks a produce response against what was sent; notes the offsets.
    fn record(
        &mut self,
        ready: &BTreeMap<u32, Ready>,
        response: &ProduceResponse,
    ) -> anyhow::Result<()> {
        let answers: Vec<_> =
            response.responses.iter().flat_map(|t| t.partition_responses.iter()).collect();
        for (&partition, sent) in ready {
            let Some(answer) = answers.iter().find(|a| a.index == partition as i32) else {
                bail!("the broker did not answer for {}-{partition}", self.name);
            };
            if answer.error_code != 0 {
                let mut message = answer.error_message.as_deref().map(str::to_owned);
                if message.is_none()
                    && let Some(first) = answer.record_errors.first()
                {
                    message = first.batch_index_error_message.as_deref().map(str::to_owned);
                }
                bail!(
                    "producing to {}-{partition} failed: {}",
                    self.name,
                    errors::describe(answer.error_code, message.as_deref())
                );
            }
            let records = u64::from(sent.records);
            let last = answer.base_offset + i64::from(sent.records) - 1;
            let produced = self.produced.entry(partition).or_insert(Produced {
                first_offset: answer.base_offset,
                last_offset: last,
                records: 0,
            });
            produced.first_offset = produced.first_offset.min(answer.base_offset);
            produced.last_offset = produced.last_offset.max(last);
            produced.records += records;
            self.sent += records;
        }
        Ok(())
    }

    /// What was produced, for standard output.
    fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        if self.acks == 0 {
            let _ = writeln!(
                out,
                "sent {} to {} (acks=0: not confirmed, offsets unknown)",
                records(self.sent),
                self.name
            );
            return out;
        }
        let _ = writeln!(out, "produced {} to {}", records(self.sent), self.name);
        for (partition, produced) in &self.produced {
            let _ = writeln!(
                out,
                "  partition {partition}: {}, offsets {}..={}",
                records(produced.records),
                produced.first_offset,
                produced.last_offset
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks() {
        assert_eq!(parse_acks("0"), Ok(0));
        assert_eq!(parse_acks("1"), Ok(1));
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("-1"), Ok(-1));
        assert!(parse_acks("2").is_err());
    }

    #[test]
    fn separators() {
        assert_eq!(separator("\\t").unwrap(), b"\t");
        assert_eq!(separator("::").unwrap(), b"::");
        assert!(separator("").is_err());
    }
}
