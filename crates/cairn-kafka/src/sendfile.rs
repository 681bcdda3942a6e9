//! Zero-copy Fetch responses: the response's fields are encoded into memory, its record sets
//! are sent from the segment files with `sendfile`, so stored batches never pass through the
//! broker's memory (the kernel hands page-cache pages to the socket).
//!
//! `kafka-protocol` encodes every field: each struct holding an array (the response, a topic) is
//! encoded with the array empty and each partition with its records empty; the fixed tail that
//! leaves (empty array or records, then an empty tagged-field section from v12) is cut off and
//! the real array count, records length and file ranges are written in its place. The tail is
//! checked, so a struct with tagged fields set is an error, not a corrupt frame. A test holds the
//! frames to `kafka-protocol`'s own encoding of the same response with the records inline, for
//! every version.
//!
//! If a segment file turns out shorter than its range (a truncation while the response was being
//! sent), the frame cannot be completed and the connection is closed, as Kafka does. The same
//! happens if retention deleted the segment after it was located and the descriptor cache had
//! closed its descriptor meanwhile (a segment deleted while its descriptor is open stays
//! readable): the file is never reopened by name, so no other file's bytes are sent.

use std::io;

use bytes::{BufMut, BytesMut};
use cairn_storage::{FileRange, RealFile};
use kafka_protocol::messages::fetch_response::{NodeEndpoint, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

/// The file ranges of one partition's record set, in log order.
pub(crate) type Ranges = Vec<FileRange<RealFile>>;

/// A piece of a response frame.
pub(crate) enum Chunk {
    /// Encoded bytes.
    Bytes(BytesMut),
    /// Stored batches, sent from the file.
    File(FileRange<RealFile>),
}

/// The first version with compact (flexible) encodings and tagged fields.
const FLEXIBLE: i16 = 12;

/// Encodes a Fetch response frame (length, header, body) whose partition `p` of topic `t` has
/// its records in `files[t][p]` instead of inline (none or an empty list: the records inline).
///
/// # Errors
/// A field `kafka-protocol` refuses for `version`, tagged fields on a response whose records are
/// in files, or a frame over 2 GiB.
pub(crate) fn encode_fetch(
    correlation_id: i32,
    version: i16,
    mut response: FetchResponse,
    mut files: Vec<Vec<Ranges>>,
) -> Result<Vec<Chunk>, String> {
    let mut frame = Frame { chunks: Vec::new(), buffer: BytesMut::with_capacity(4096), files: 0 };
    frame.buffer.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut frame.buffer, ApiKey::Fetch.response_header_version(version))
        .map_err(|e| e.to_string())?;
    let topics = std::mem::take(&mut response.responses);
    let tagged = response_tagged_fields(std::mem::take(&mut response.node_endpoints), version)?;
    if !response.unknown_tagged_fields.is_empty()
        || topics.iter().any(|topic| !topic.unknown_tagged_fields.is_empty())
    {
        return Err(UNTAGGED.to_owned());
    }
    frame.encode_cut(&response, version)?;
    frame.count(topics.len(), version)?;
    for (t, mut topic) in topics.into_iter().enumerate() {
        let partitions = std::mem::take(&mut topic.partitions);
        frame.encode_cut(&topic, version)?;
        frame.count(partitions.len(), version)?;
        for (p, partition) in partitions.iter().enumerate() {
            let ranges = files.get_mut(t).and_then(|topic| topic.get_mut(p)).map(std::mem::take);
            let Some(ranges) = ranges.filter(|ranges| !ranges.is_empty()) else {
                partition.encode(&mut frame.buffer, version).map_err(|e| e.to_string())?;
                continue;
            };
            if partition.records.as_ref().is_none_or(|records| !records.is_empty()) {
                return Err("a partition has records both inline and in files".to_owned());
            }
            if has_tagged_fields(partition) {
                return Err(UNTAGGED.to_owned());
            }
            frame.encode_cut(partition, version)?;
            let len: u64 = ranges.iter().map(|range| u64::from(range.len)).sum();
            frame.count(usize::try_from(len).map_err(|e| e.to_string())?, version)?;
            for range in ranges {
                frame.file(range);
            }
            frame.end_struct(version);
        }
        frame.end_struct(version);
    }
    match tagged {
        Some(tagged) => frame.buffer.extend_from_slice(&tagged),
        None => frame.end_struct(version),
    }
    frame.finish()
}

/// The response's own tagged-field section when it lists KIP-951 `node_endpoints` (v16+; the
/// only tagged field cairn sets on a Fetch response), as `kafka-protocol` encodes it: the
/// encoding of a response holding only them, from where the empty one's tagged section starts.
/// `None` without endpoints (the section is then empty).
fn response_tagged_fields(
    endpoints: Vec<NodeEndpoint>,
    version: i16,
) -> Result<Option<BytesMut>, String> {
    if endpoints.is_empty() {
        return Ok(None);
    }
    let mut empty = BytesMut::new();
    FetchResponse::default().encode(&mut empty, version).map_err(|e| e.to_string())?;
    let mut listed = BytesMut::new();
    let with_endpoints = FetchResponse::default().with_node_endpoints(endpoints);
    with_endpoints.encode(&mut listed, version).map_err(|e| e.to_string())?;
    // The empty response ends with its empty tagged section (one zero byte) from v12.
    let start = empty.len().checked_sub(1).filter(|_| version >= FLEXIBLE);
    match start {
        Some(start) if listed.len() > empty.len() && listed[..start] == empty[..start] => {
            Ok(Some(listed.split_off(start)))
        }
        _ => Err(format!("node endpoints cannot be sent in fetch v{version}")),
    }
}

const UNTAGGED: &str = "tagged fields are not supported with records sent from files";

/// Whether a partition sets any tagged field (v12+), which would follow its records.
fn has_tagged_fields(partition: &PartitionData) -> bool {
    let unset = PartitionData::default();
    partition.diverging_epoch != unset.diverging_epoch
        || partition.current_leader != unset.current_leader
        || partition.snapshot_id != unset.snapshot_id
        || !partition.unknown_tagged_fields.is_empty()
}

/// A frame being encoded.
struct Frame {
    chunks: Vec<Chunk>,
    buffer: BytesMut,
    /// Bytes in file chunks.
    files: u64,
}

impl Frame {
    /// Encodes `value` (whose array or records are empty) without its fixed tail: the empty
    /// array or records and, from v12, the empty tagged-field section.
    fn encode_cut<T: Encodable>(&mut self, value: &T, version: i16) -> Result<(), String> {
        let tail: &[u8] = if version >= FLEXIBLE { &[1, 0] } else { &[0, 0, 0, 0] };
        let start = self.buffer.len();
        value.encode(&mut self.buffer, version).map_err(|e| e.to_string())?;
        if !self.buffer[start..].ends_with(tail) {
            return Err(UNTAGGED.to_owned());
        }
        self.buffer.truncate(self.buffer.len() - tail.len());
        Ok(())
    }

    /// An array's element count or a records length: `i32`, or from v12 an unsigned varint of
    /// the value plus one.
    fn count(&mut self, value: usize, version: i16) -> Result<(), String> {
        if version < FLEXIBLE {
            self.buffer.put_i32(i32::try_from(value).map_err(|e| e.to_string())?);
            return Ok(());
        }
        let mut rest = u32::try_from(value + 1).map_err(|e| e.to_string())?;
        while rest >= 0x80 {
            self.buffer.put_u8((rest as u8 & 0x7f) | 0x80);
            rest >>= 7;
        }
        self.buffer.put_u8(rest as u8);
        Ok(())
    }

    /// Ends a struct: from v12, its (empty) tagged-field section.
    fn end_struct(&mut self, version: i16) {
        if version >= FLEXIBLE {
            self.buffer.put_u8(0);
        }
    }

    fn file(&mut self, range: FileRange<RealFile>) {
        if !self.buffer.is_empty() {
            self.chunks.push(Chunk::Bytes(self.buffer.split()));
        }
        self.files += u64::from(range.len);
        self.chunks.push(Chunk::File(range));
    }

    /// The chunks, with the frame length written into the first.
    fn finish(mut self) -> Result<Vec<Chunk>, String> {
        if !self.buffer.is_empty() {
            self.chunks.push(Chunk::Bytes(self.buffer.split()));
        }
        let encoded: u64 = self
            .chunks
            .iter()
            .map(|chunk| match chunk {
                Chunk::Bytes(bytes) => bytes.len() as u64,
                Chunk::File(_) => 0,
            })
            .sum();
        let length = i32::try_from(encoded + self.files - 4)
            .map_err(|_| "the response frame is over 2 GiB".to_owned())?;
        if let Some(Chunk::Bytes(first)) = self.chunks.first_mut() {
            first[..4].copy_from_slice(&length.to_be_bytes());
        }
        Ok(self.chunks)
    }
}

/// Bytes of a response in chunks.
pub(crate) fn chunks_len(chunks: &[Chunk]) -> u64 {
    chunks
        .iter()
        .map(|chunk| match chunk {
            Chunk::Bytes(bytes) => bytes.len() as u64,
            Chunk::File(range) => u64::from(range.len),
        })
        .sum()
}

/// Writes a frame's chunks to the socket, the file ranges with `sendfile`.
///
/// # Errors
/// A socket error, a failed `sendfile`, or a file shorter than its range.
pub(crate) async fn send(writer: &mut OwnedWriteHalf, chunks: &[Chunk]) -> io::Result<()> {
    for chunk in chunks {
        match chunk {
            Chunk::Bytes(bytes) => writer.write_all(bytes).await?,
            Chunk::File(range) => send_file(writer.as_ref(), range).await?,
        }
    }
    Ok(())
}

async fn send_file(stream: &TcpStream, range: &FileRange<RealFile>) -> io::Result<()> {
    // Leased for the whole range: the descriptor stays open (and on the same file) until sent.
    let file = range.file.lease().map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("segment {} of a fetch range is gone: {error}", range.segment_base),
        )
    })?;
    let mut position = range.position;
    let mut left = range.len as usize;
    while left > 0 {
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(stream, &*file, Some(&mut position), left).map_err(io::Error::from)
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "segment {} ends before its fetch range {}+{}",
                        range.segment_base, range.position, range.len
                    ),
                ));
            }
            Ok(sent) => left -= sent,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use cairn_storage::{Disk, DiskFile, RealDisk};
    use cairn_types::Offset;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, LeaderIdAndEpoch};
    use kafka_protocol::messages::{BrokerId, ResponseKind, TopicName};
    use proptest::prelude::*;
    use tokio::io::AsyncReadExt;

    use super::*;

    /// One partition of a generated response: fields, and the file slices of its records.
    #[derive(Clone, Debug)]
    struct Part {
        index: i32,
        error_code: i16,
        high_watermark: i64,
        log_start: i64,
        /// `(position, len)` in the file; none: records inline and empty.
        slices: Vec<(u64, u32)>,
        /// A KIP-951 leader hint (id, epoch), set only on a partition without records.
        leader: Option<(i32, i32)>,
    }

    fn part() -> impl Strategy<Value = Part> {
        (
            0..1000i32,
            -1..100i16,
            -1..i64::MAX,
            -1..i64::MAX,
            prop::collection::vec((0..4000u64, 0..300u32), 0..4),
            prop::option::of((0..10i32, 0..1000i32)),
        )
            .prop_map(|(index, error_code, high_watermark, log_start, slices, leader)| {
                Part {
                    index,
                    error_code,
                    high_watermark,
                    log_start,
                    leader: leader.filter(|_| slices.is_empty()),
                    slices,
                }
            })
    }

    /// KIP-951 node endpoints of a response: id, host, port, rack.
    fn endpoints() -> impl Strategy<Value = Vec<NodeEndpoint>> {
        let endpoint = (0..10i32, "[a-z]{1,12}", 1..65536i32, prop::option::of("[a-z]{1,4}"));
        prop::collection::vec(endpoint, 0..3).prop_map(|nodes| {
            nodes
                .into_iter()
                .map(|(id, host, port, rack)| {
                    NodeEndpoint::default()
                        .with_node_id(BrokerId(id))
                        .with_host(host.into())
                        .with_port(port)
                        .with_rack(rack.map(Into::into))
                })
                .collect()
        })
    }

    fn file_with(content: &[u8]) -> (tempfile::TempDir, Arc<RealFile>) {
        let dir = tempfile::tempdir().unwrap();
        let file = RealDisk.create(&dir.path().join("segment")).unwrap();
        file.write_all_at(content, 0).unwrap();
        (dir, file)
    }

    /// The generated response with records inline, and with records in the file.
    fn responses(
        version: i16,
        topics: &[(String, Vec<Part>)],
        endpoints: Vec<NodeEndpoint>,
        file: &Arc<RealFile>,
        content: &[u8],
    ) -> (FetchResponse, FetchResponse, Vec<Vec<Ranges>>) {
        let mut inline = Vec::new();
        let mut shells = Vec::new();
        let mut files = Vec::new();
        for (t, (name, parts)) in topics.iter().enumerate() {
            let topic = FetchableTopicResponse::default()
                .with_topic(TopicName(name.clone().into()))
                .with_topic_id(uuid::Uuid::from_u128(t as u128 + 1));
            let (mut with_records, mut shell, mut ranges) = (topic.clone(), topic, Vec::new());
            for part in parts {
                let data = PartitionData::default()
                    .with_partition_index(part.index)
                    .with_error_code(part.error_code)
                    .with_high_watermark(part.high_watermark)
                    .with_last_stable_offset(part.high_watermark)
                    .with_log_start_offset(if version >= 5 { part.log_start } else { -1 })
                    .with_preferred_read_replica(BrokerId(-1))
                    .with_records(Some(Bytes::new()));
                let data = match part.leader.filter(|_| version >= 12) {
                    Some((id, epoch)) => data.with_current_leader(
                        LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(id))
                            .with_leader_epoch(epoch),
                    ),
                    None => data,
                };
                let records: Vec<u8> = part
                    .slices
                    .iter()
                    .flat_map(|&(at, len)| &content[at as usize..(at + u64::from(len)) as usize])
                    .copied()
                    .collect();
                with_records.partitions.push(data.clone().with_records(Some(records.into())));
                shell.partitions.push(data);
                ranges.push(
                    part.slices
                        .iter()
                        .map(|&(position, len)| FileRange {
                            file: Arc::clone(file),
                            segment_base: Offset(0),
                            position,
                            len,
                        })
                        .collect(),
                );
            }
            inline.push(with_records);
            shells.push(shell);
            files.push(ranges);
        }
        let endpoints = if version >= 16 { endpoints } else { Vec::new() };
        let top = FetchResponse::default()
            .with_throttle_time_ms(7)
            .with_error_code(3)
            .with_node_endpoints(endpoints);
        (top.clone().with_responses(inline), top.with_responses(shells), files)
    }

    /// The chunks with the file ranges read in.
    fn flatten(chunks: &[Chunk]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in chunks {
            match chunk {
                Chunk::Bytes(bytes) => out.extend_from_slice(bytes),
                Chunk::File(range) => {
                    let got = range.file.read_append(&mut out, range.len as usize, range.position);
                    assert_eq!(got.unwrap(), range.len as usize);
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Byte for byte what `kafka-protocol` encodes with the same records inline.
        #[test]
        fn frames_match_kafka_protocol_with_records_inline(
            version in 4..=18i16,
            correlation_id in any::<i32>(),
            topics in prop::collection::vec(
                ("[a-z]{1,20}", prop::collection::vec(part(), 0..4)),
                0..4,
            ),
            endpoints in endpoints(),
        ) {
            let content: Vec<u8> = (0..4300u32).map(|i| (i * 31 % 251) as u8).collect();
            let (_dir, file) = file_with(&content);
            let (inline, shell, files) = responses(version, &topics, endpoints, &file, &content);
            let expected = crate::server::encode(
                ApiKey::Fetch,
                version,
                correlation_id,
                &ResponseKind::Fetch(inline),
            )
            .unwrap();
            let chunks = encode_fetch(correlation_id, version, shell, files).unwrap();
            prop_assert_eq!(chunks_len(&chunks), expected.len() as u64);
            prop_assert_eq!(flatten(&chunks), expected.to_vec());
        }
    }

    #[test]
    fn tagged_fields_are_refused() {
        let (_dir, file) = file_with(b"0123456789");
        let range = || {
            vec![vec![vec![FileRange {
                file: Arc::clone(&file),
                segment_base: Offset(0),
                position: 0,
                len: 10,
            }]]]
        };
        let partition = PartitionData::default().with_records(Some(Bytes::new()));
        let tagged = partition.clone().with_snapshot_id(
            kafka_protocol::messages::fetch_response::SnapshotId::default().with_epoch(1),
        );
        for (data, ok) in [(partition, true), (tagged, false)] {
            let response = FetchResponse::default().with_responses(vec![
                FetchableTopicResponse::default().with_partitions(vec![data]),
            ]);
            assert_eq!(encode_fetch(1, 12, response, range()).is_ok(), ok);
        }
    }

    /// A file shorter than its range fails the send instead of leaving a short frame.
    #[tokio::test]
    async fn a_cut_file_fails_the_send() {
        let (_dir, file) = file_with(b"0123456789");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_read, mut write) = server.into_split();
        let range =
            |len| FileRange { file: Arc::clone(&file), segment_base: Offset(0), position: 4, len };
        let whole = [Chunk::Bytes(BytesMut::from(&b"ab"[..])), Chunk::File(range(6))];
        send(&mut write, &whole).await.unwrap();
        let cut = [Chunk::File(range(7))];
        let error = send(&mut write, &cut).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        drop(write);
        let mut received = Vec::new();
        let mut client = client;
        client.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, b"ab456789456789");
    }
}
