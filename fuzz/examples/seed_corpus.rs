//! Writes the seed corpora of the fuzz targets: valid encodings of every request type and
//! version cairn accepts, valid record batches of every codec, a peer frame of every kind
//! (`cairn_raft::peer::fuzzing::seed_frames`, checked there), and the hostile inputs the
//! decoders exist to refuse (absurd length prefixes and counts, overlong varints, truncations,
//! decompression bombs). Every seed is checked before it is written: valid ones must pass the
//! checks (and decode), hostile ones must be refused, and no seed may panic its target.
//!
//! Run from the repository root:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus
//! ```
//!
//! Files are named `seed-<what>` in `fuzz/corpus/<target>/`; running it again replaces every
//! `seed-*` file with the same ones (it is deterministic) and leaves the fuzzer's own finds
//! (named by hash) alone. Frames are written only for the APIs the server serves; the
//! `request` target covers the others.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use cairn_kafka::codec::{FrameError, decode_frame};
use cairn_kafka::fuzzing::{fuzz_frame, fuzz_request};
use cairn_protocol::compression::{self, validate_records};
use cairn_protocol::fuzzing::{FUZZ_DECOMPRESSED_BYTES_MAX, fuzz_record_batch};
use cairn_raft::peer::fuzzing::{fuzz_peer_frame, seed_frames};
use cairn_kafka::shape::{APIS, ApiSchema, Schema, Ty, check_request};
use cairn_types::batch::{BatchBuilder, Compression, HEADER_BYTES};
use cairn_types::limits::FRAME_BYTES_MAX;
use cairn_types::{ProducerId, batch};
use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use kafka_protocol::messages::consumer_group_describe_request::ConsumerGroupDescribeRequest;
use kafka_protocol::messages::consumer_group_heartbeat_request::ConsumerGroupHeartbeatRequest;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsRequest;
use kafka_protocol::messages::create_topics_request::CreateTopicsRequest;
use kafka_protocol::messages::delete_records_request::DeleteRecordsRequest;
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsRequest;
use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::incremental_alter_configs_request::IncrementalAlterConfigsRequest;
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::join_group_request::JoinGroupRequest;
use kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequest;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderEpochRequest;
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::sasl_authenticate_request::SaslAuthenticateRequest;
use kafka_protocol::messages::sasl_handshake_request::SaslHandshakeRequest;
use kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes, encode_request_header_into_buffer};

const MIB: usize = 1024 * 1024;
const GIB: usize = 1024 * MIB;

fn main() -> io::Result<()> {
    let root = std::env::args()
        .nth(1)
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"), PathBuf::from);
    let requests = request_seeds();
    let frames = frame_seeds();
    let batches = record_batch_seeds();
    let peer_frames = seed_frames();
    for (target, seeds, run) in [
        ("request", &requests, fuzz_request as fn(&[u8])),
        ("frame", &frames, fuzz_frame),
        ("record_batch", &batches, fuzz_record_batch),
        ("peer_frame", &peer_frames, fuzz_peer_frame),
    ] {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        // Seeds of an earlier run that this one no longer writes go.
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("seed-")) {
                fs::remove_file(path)?;
            }
        }
        let mut bytes = 0;
        for (name, data) in seeds {
            run(data);
            fs::write(dir.join(format!("seed-{name}")), data)?;
            bytes += data.len();
        }
        println!("{target}: {} seeds, {bytes} bytes, in {}", seeds.len(), dir.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Requests: `[api_key i16][api_version i16][body]`.
// ---------------------------------------------------------------------------------------------

/// A request body of one API and version, and whether the shape check must accept it.
struct Body {
    name: String,
    api_key: i16,
    version: i16,
    bytes: Vec<u8>,
    valid: bool,
}

impl Body {
    fn request_input(&self) -> Vec<u8> {
        let mut input = self.api_key.to_be_bytes().to_vec();
        input.extend(self.version.to_be_bytes());
        input.extend_from_slice(&self.bytes);
        input
    }
}

/// Generates `encode_default(api_key, version)`: the crate's default request, encoded.
macro_rules! default_requests {
    ($($key:ident => $request:ty,)*) => {
        fn encode_default(api_key: ApiKey, version: i16) -> Vec<u8> {
            let mut buffer = BytesMut::new();
            let encoded = match api_key {
                $(ApiKey::$key => <$request>::default().encode(&mut buffer, version),)*
                other => panic!("{other:?} is not in shape::APIS"),
            };
            encoded.unwrap_or_else(|e| panic!("default {api_key:?} v{version}: {e}"));
            buffer.to_vec()
        }
    };
}

default_requests! {
    Produce => ProduceRequest,
    Fetch => FetchRequest,
    ListOffsets => ListOffsetsRequest,
    OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
    Metadata => MetadataRequest,
    OffsetCommit => OffsetCommitRequest,
    OffsetFetch => OffsetFetchRequest,
    FindCoordinator => FindCoordinatorRequest,
    JoinGroup => JoinGroupRequest,
    Heartbeat => HeartbeatRequest,
    LeaveGroup => LeaveGroupRequest,
    SyncGroup => SyncGroupRequest,
    DescribeGroups => DescribeGroupsRequest,
    ListGroups => ListGroupsRequest,
    SaslHandshake => SaslHandshakeRequest,
    ApiVersions => ApiVersionsRequest,
    CreateTopics => CreateTopicsRequest,
    DeleteTopics => DeleteTopicsRequest,
    DeleteRecords => DeleteRecordsRequest,
    InitProducerId => InitProducerIdRequest,
    DescribeConfigs => DescribeConfigsRequest,
    SaslAuthenticate => SaslAuthenticateRequest,
    CreatePartitions => CreatePartitionsRequest,
    IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
    DescribeCluster => DescribeClusterRequest,
    DeleteGroups => DeleteGroupsRequest,
    OffsetDelete => OffsetDeleteRequest,
    ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
    ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
}

fn api_name(api: &ApiSchema) -> String {
    let key = ApiKey::try_from(api.api_key).expect("every api in shape::APIS is known");
    format!("{key:?}").to_lowercase()
}

/// A deterministic source of choices (splitmix64).
struct Choices(u64);

impl Choices {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> usize {
        (self.next() % bound) as usize
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Writes a populated body from the schema tables: every array 1 or 2 elements, short strings,
/// some nulls, known tagged fields and an unknown one where flexible. Records where each array
/// count was written, for the hostile variants.
struct Generator {
    choices: Choices,
    version: i16,
    flexible: bool,
    /// Offsets of array counts in the output.
    counts: Vec<usize>,
}

impl Generator {
    fn length(&mut self, out: &mut Vec<u8>, length: Option<usize>, wide: bool) {
        match (self.flexible, length) {
            (true, None) => out.push(0),
            (true, Some(length)) => put_uvarint(out, length as u32 + 1),
            (false, None) if wide => out.extend((-1i32).to_be_bytes()),
            (false, None) => out.extend((-1i16).to_be_bytes()),
            (false, Some(length)) if wide => out.extend((length as i32).to_be_bytes()),
            (false, Some(length)) => out.extend((length as i16).to_be_bytes()),
        }
    }

    /// `width` non-zero bytes (so that values differ from the crate's defaults).
    fn fixed(&mut self, width: usize, out: &mut Vec<u8>) {
        for _ in 0..width {
            out.push(self.choices.next() as u8 | 1);
        }
    }

    fn value(&mut self, ty: &Ty, out: &mut Vec<u8>) {
        match ty {
            Ty::I8 => self.fixed(1, out),
            Ty::Bool => out.push(1),
            Ty::I16 | Ty::U16 => self.fixed(2, out),
            Ty::I32 | Ty::U32 => self.fixed(4, out),
            Ty::I64 | Ty::F64 => self.fixed(8, out),
            Ty::Uuid => self.fixed(16, out),
            Ty::Str | Ty::NullableStr => {
                if matches!(ty, Ty::NullableStr) && self.choices.below(4) == 0 {
                    return self.length(out, None, false);
                }
                let length = 1 + self.choices.below(8);
                self.length(out, Some(length), false);
                for _ in 0..length {
                    out.push(b'a' + self.choices.below(26) as u8);
                }
            }
            Ty::Bytes | Ty::NullableBytes | Ty::Records => {
                if !matches!(ty, Ty::Bytes) && self.choices.below(4) == 0 {
                    return self.length(out, None, true);
                }
                let length = 1 + self.choices.below(8);
                self.length(out, Some(length), true);
                self.fixed(length, out);
            }
            Ty::Array(element) | Ty::NullableArray(element) => {
                if matches!(ty, Ty::NullableArray(_)) && self.choices.below(4) == 0 {
                    return self.length(out, None, true);
                }
                let count = 1 + self.choices.below(2);
                self.counts.push(out.len());
                self.length(out, Some(count), true);
                for _ in 0..count {
                    self.value(element, out);
                }
            }
            Ty::Struct(schema) => self.structure(schema, out),
        }
    }

    fn structure(&mut self, schema: &Schema, out: &mut Vec<u8>) {
        let version = self.version;
        for field in schema.fields.iter().filter(|field| field.versions.contains(version)) {
            self.value(&field.ty, out);
        }
        if !self.flexible {
            return;
        }
        let mut fields: Vec<(u32, Vec<u8>)> = Vec::new();
        for known in schema.tagged.iter().filter(|tagged| tagged.versions.contains(version)) {
            let mut value = Vec::new();
            // Not nullable inside a tag: a null known field would be re-encoded as absent.
            let ty = match known.ty {
                Ty::NullableStr => &Ty::Str,
                ref ty => ty,
            };
            let counts = self.counts.len();
            self.value(ty, &mut value);
            // Counts inside a tag's value are not at offsets of `out`.
            self.counts.truncate(counts);
            fields.push((known.tag, value));
        }
        fields.push((100, vec![1, 2, 3]));
        put_uvarint(out, fields.len() as u32);
        for (tag, value) in fields {
            put_uvarint(out, tag);
            put_uvarint(out, value.len() as u32);
            out.extend(value);
        }
    }
}

/// `body` with the array count at `offset` replaced by 0x7fffffff elements (classic) or by the
/// largest compact count, `0xffffffff` as a varint (0xfffffffe elements).
fn with_huge_count(body: &[u8], offset: usize, compact: bool) -> Vec<u8> {
    let mut patched = body[..offset].to_vec();
    let rest = if compact {
        patched.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        let len = body[offset..].iter().position(|byte| byte & 0x80 == 0).expect("a varint") + 1;
        offset + len
    } else {
        patched.extend(0x7fff_ffff_i32.to_be_bytes());
        offset + 4
    };
    patched.extend_from_slice(&body[rest..]);
    patched
}

fn request_bodies() -> Vec<Body> {
    let mut bodies = Vec::new();
    for api in APIS {
        let key = ApiKey::try_from(api.api_key).expect("every api in shape::APIS is known");
        let name = api_name(api);
        for version in api.versions.min..=api.versions.max {
            let flexible = api.flexible.contains(version);
            let body = |what: &str, bytes: Vec<u8>, valid: bool| Body {
                name: format!("{name}-v{version}-{what}"),
                api_key: api.api_key,
                version,
                bytes,
                valid,
            };
            bodies.push(body("default", encode_default(key, version), true));
            let seed = (api.api_key as u64) << 16 | version as u64;
            let mut generator =
                Generator { choices: Choices(seed), version, flexible, counts: Vec::new() };
            let mut generated = Vec::new();
            generator.structure(api.body, &mut generated);
            if let Some(&offset) = generator.counts.first() {
                let what = if flexible { "count-0xffffffff" } else { "count-0x7fffffff" };
                bodies.push(body(what, with_huge_count(&generated, offset, flexible), false));
            }
            if version == api.versions.max {
                let truncated = generated[..generated.len() - 1].to_vec();
                bodies.push(body("truncated", truncated, false));
                // Refused by the check as trailing bytes, which the server then ignores.
                let trailing = [&generated[..], &[0xff, 0x00, 0x01]].concat();
                bodies.push(body("trailing-bytes", trailing, false));
            }
            bodies.push(body("generated", generated, true));
        }
    }
    let hostile = |name: &str, api_key: ApiKey, version: i16, bytes: Vec<u8>| Body {
        name: name.to_owned(),
        api_key: api_key as i16,
        version,
        bytes,
        valid: false,
    };
    // The original report: a 20-byte Metadata request claiming 2^31 - 1 topics.
    let mut tiny = vec![0x7f, 0xff, 0xff, 0xff];
    tiny.resize(20, 0);
    bodies.push(hostile("metadata-v1-tiny-count-0x7fffffff", ApiKey::Metadata, 1, tiny));
    bodies.push(hostile(
        "metadata-v12-compact-count-0xffffffff",
        ApiKey::Metadata,
        12,
        vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0],
    ));
    bodies.push(hostile(
        "describegroups-v0-count-0x7fffffff",
        ApiKey::DescribeGroups,
        0,
        vec![0x7f, 0xff, 0xff, 0xff, 0, 0],
    ));
    bodies.push(hostile(
        "apiversions-v3-varint-6-bytes",
        ApiKey::ApiVersions,
        3,
        vec![0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01, 0x00],
    ));
    bodies.push(hostile(
        "apiversions-v3-varint-overflow",
        ApiKey::ApiVersions,
        3,
        vec![0x81, 0x80, 0x80, 0x80, 0x10, 0x01, 0x00],
    ));
    // Produce v9: no transactional id, acks, timeout, one topic "t", one partition whose
    // records claim 2^32 - 2 bytes.
    let mut produce = vec![0, 0xff, 0xff, 0, 0, 0x75, 0x30, 2, 2, b't', 2, 0, 0, 0, 0];
    produce.extend([0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0]);
    bodies.push(hostile("produce-v9-records-length-0xffffffff", ApiKey::Produce, 9, produce));
    bodies.push(hostile("unknown-api-999", ApiKey::Produce, 0, Vec::new()));
    if let Some(last) = bodies.last_mut() {
        last.api_key = 999;
    }
    bodies
}

fn request_seeds() -> Vec<(String, Vec<u8>)> {
    request_bodies()
        .into_iter()
        .map(|body| {
            let accepted = check_request(body.api_key, body.version, &body.bytes);
            assert_eq!(accepted.is_ok(), body.valid, "{}: {accepted:?}", body.name);
            (body.name.clone(), body.request_input())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Frames: what a client sends on a connection, `[length i32][header][body]` repeated.
// ---------------------------------------------------------------------------------------------

fn header(api_key: i16, version: i16, correlation_id: i32) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("seed")));
    let mut buffer = BytesMut::new();
    encode_request_header_into_buffer(&mut buffer, &header).expect("a known api key");
    buffer.to_vec()
}

fn framed(frame: &[u8]) -> Vec<u8> {
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(frame);
    out
}

fn frame_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut valid_frames = Vec::new();
    for body in request_bodies() {
        let Ok(key) = ApiKey::try_from(body.api_key) else { continue };
        // Generated and hostile bodies of every version; defaults only add length variants.
        if body.name.ends_with("-default") {
            continue;
        }
        let mut frame = header(key as i16, body.version, 7);
        frame.extend_from_slice(&body.bytes);
        let decoded = decode_frame(bytes::Bytes::copy_from_slice(&frame));
        // An API the server does not serve stops at the version table: one seed covers that.
        if matches!(decoded, Err(FrameError::Unsupported { .. })) {
            continue;
        }
        if body.valid && decoded.is_ok() {
            valid_frames.push(frame.clone());
        } else {
            let ignored_trailing_bytes = body.name.ends_with("-trailing-bytes");
            assert!(
                body.valid || decoded.is_err() || ignored_trailing_bytes,
                "{}: {decoded:?}",
                body.name
            );
        }
        seeds.push((body.name, framed(&frame)));
    }
    // Pipelined: three requests back to back, then one more whose length is absurd.
    let mut pipelined: Vec<u8> = valid_frames.iter().take(3).flat_map(|f| framed(f)).collect();
    seeds.push(("pipelined-3".to_owned(), pipelined.clone()));
    pipelined.extend(0x7fff_ffffu32.to_be_bytes());
    pipelined.extend(header(ApiKey::Metadata as i16, 12, 8));
    seeds.push(("pipelined-then-length-0x7fffffff".to_owned(), pipelined));

    let metadata_v12 = header(ApiKey::Metadata as i16, 12, 9);
    let with_length = |length: i32, frame: &[u8]| {
        let mut out = length.to_be_bytes().to_vec();
        out.extend_from_slice(frame);
        out
    };
    let mut hostile = vec![
        ("length-0x7fffffff", with_length(0x7fff_ffff, &metadata_v12)),
        ("length-negative", with_length(-1, &metadata_v12)),
        ("length-zero", with_length(0, &[])),
        ("length-9", with_length(9, &metadata_v12[..9])),
        ("length-frame-max-plus-1", with_length(FRAME_BYTES_MAX as i32 + 1, &metadata_v12)),
        ("length-frame-max-truncated", with_length(FRAME_BYTES_MAX as i32, &metadata_v12)),
        ("truncated-frame", with_length(100, &metadata_v12)),
        ("truncated-prefix", vec![0, 0]),
    ];
    // Header fields.
    let mut absurd_client_id = vec![0, 3, 0, 1, 0, 0, 0, 7];
    absurd_client_id.extend(i16::MAX.to_be_bytes());
    absurd_client_id.extend(b"short");
    hostile.push(("client-id-length-0x7fff", framed(&absurd_client_id)));
    let header_tags = [0, 18, 0, 3, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
    hostile.push(("header-tagged-count-0xffffffff", framed(&header_tags)));
    let header_varint = [0, 18, 0, 3, 0, 0, 0, 1, 0, 0, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00];
    hostile.push(("header-varint-6-bytes", framed(&header_varint)));
    hostile.push(("apiversions-v9-unsupported", framed(&[0, 18, 0, 9, 0, 0, 0, 5, 0, 0, 0])));
    hostile.push(("unknown-api-999", framed(&[0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0, 0])));
    for (name, input) in hostile {
        seeds.push((name.to_owned(), input));
    }
    seeds
}

// ---------------------------------------------------------------------------------------------
// Record batches.
// ---------------------------------------------------------------------------------------------

const BATCH_LENGTH_AT: usize = 8;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const RECORD_COUNT_AT: usize = 57;

/// CRC32C (Castagnoli), bit by bit.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

fn reseal(batch: &mut [u8]) {
    let crc = crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The header of `template` with `payload` as records and `codec` in the attributes, resealed.
fn with_payload(template: &[u8], codec: Compression, payload: &[u8]) -> Vec<u8> {
    let mut out = template[..HEADER_BYTES].to_vec();
    out.extend_from_slice(payload);
    let batch_length = i32::try_from(out.len() - 12).expect("seed batches are small");
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = i16::from_be_bytes([out[ATTRIBUTES_AT], out[ATTRIBUTES_AT + 1]]);
    let attributes = (attributes & !0x07) | codec.attribute_bits();
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    reseal(&mut out);
    out
}

fn compressed(codec: Compression, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    compression::compress(codec, input, &mut out).expect("seed records compress");
    out
}

fn sample_batch(records: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for i in 0..records {
        let key = format!("key-{i}");
        let value = format!("value-{i}-{}", "x".repeat(i % 7));
        let headers: &[(&[u8], Option<&[u8]>)] =
            if i % 2 == 0 { &[(b"trace", Some(b"1")), (b"null", None)] } else { &[] };
        builder = builder.record_at(
            1_700_000_000_000 + i as i64,
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            headers,
        );
    }
    builder.build()
}

fn xerial(chunks: &[&[u8]]) -> Vec<u8> {
    let mut stream = b"\x82SNAPPY\x00".to_vec();
    stream.extend(1i32.to_be_bytes());
    stream.extend(1i32.to_be_bytes());
    for chunk in chunks {
        stream.extend((chunk.len() as i32).to_be_bytes());
        stream.extend_from_slice(chunk);
    }
    stream
}

/// A zstd frame of `bytes` zeros: a window of `2^(10 + window_exponent)` bytes, RLE blocks of
/// 128 KiB, 4 bytes each.
fn zstd_bomb(bytes: usize, window_exponent: u8) -> Vec<u8> {
    let block_bytes = 128 * 1024;
    let blocks = bytes / block_bytes;
    let mut frame = 0xFD2F_B528u32.to_le_bytes().to_vec();
    frame.push(0x00);
    frame.push(window_exponent << 3);
    for i in 0..blocks {
        let header = u32::from(i + 1 == blocks) | (1 << 1) | ((block_bytes as u32) << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(0);
    }
    frame
}

fn with_counts(batch: &[u8], record_count: i32, last_offset_delta: i32) -> Vec<u8> {
    let mut out = batch.to_vec();
    out[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&record_count.to_be_bytes());
    out[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
        .copy_from_slice(&last_offset_delta.to_be_bytes());
    reseal(&mut out);
    out
}

fn record_batch_seeds() -> Vec<(String, Vec<u8>)> {
    let one = sample_batch(1);
    let five = sample_batch(5);
    let mut valid: Vec<(String, Vec<u8>)> = vec![
        ("none-1-record".to_owned(), one.clone()),
        ("none-5-records".to_owned(), five.clone()),
        ("none-two-batches".to_owned(), [one.clone(), five.clone()].concat()),
        (
            "none-control".to_owned(),
            BatchBuilder::new(0).control().record(Some(b"\0\0\0\0"), None, &[]).build(),
        ),
        (
            "none-idempotent".to_owned(),
            BatchBuilder::new(0)
                .producer(ProducerId(1000), 2, 42)
                .record(None, Some(b"v"), &[])
                .record(None, None, &[])
                .build(),
        ),
    ];
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let payload = compressed(codec, &five[HEADER_BYTES..]);
        let name = format!("{}-5-records", compression::codec_name(codec));
        valid.push((name, with_payload(&five, codec, &payload)));
    }
    let raw = compressed(Compression::Snappy, &five[HEADER_BYTES..]);
    valid.push((
        "snappy-java-5-records".to_owned(),
        with_payload(&five, Compression::Snappy, &xerial(&[&raw])),
    ));

    let mut hostile: Vec<(String, Vec<u8>)> = Vec::new();
    let mut absurd_length = one.clone();
    absurd_length[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4]
        .copy_from_slice(&0x7fff_ffff_i32.to_be_bytes());
    hostile.push(("batch-length-0x7fffffff".to_owned(), absurd_length));
    hostile.push(("truncated".to_owned(), five[..five.len() - 3].to_vec()));
    hostile.push((
        "none-record-count-0x7fffffff".to_owned(),
        with_counts(&one, i32::MAX, i32::MAX - 1),
    ));
    let gzip =
        with_payload(&one, Compression::Gzip, &compressed(Compression::Gzip, &one[HEADER_BYTES..]));
    hostile.push((
        "gzip-record-count-0x7fffffff".to_owned(),
        with_counts(&gzip, i32::MAX, i32::MAX - 1),
    ));
    // A record whose length is a 6-byte varint.
    let mut records = vec![0x81, 0x80, 0x80, 0x80, 0x80, 0x00];
    records.extend_from_slice(&one[HEADER_BYTES + 1..]);
    hostile.push((
        "none-record-length-varint-6-bytes".to_owned(),
        with_payload(&one, Compression::None, &records),
    ));
    // A record claiming 0x7fffffff headers (varint of 2 * 0x7fffffff, zigzag).
    let mut record = vec![0u8, 0, 0, 1, 1];
    record.extend([0xfe, 0xff, 0xff, 0xff, 0x0f]);
    let mut records = vec![(record.len() as u8) << 1];
    records.extend(record);
    hostile.push((
        "none-header-count-0x7fffffff".to_owned(),
        with_payload(&one, Compression::None, &records),
    ));
    // Decompression bombs, all far over the fuzz cap (1 MiB) and the broker's (64 MiB).
    let zstd = with_payload(&one, Compression::Zstd, &zstd_bomb(GIB, 7));
    hostile.push(("zstd-bomb-1gib".to_owned(), zstd));
    // An 8 MiB window: accepted under any cap (compression.rs, ZSTD_WINDOW_BYTES_FLOOR).
    let zstd = with_payload(&one, Compression::Zstd, &zstd_bomb(64 * MIB, 13));
    hostile.push(("zstd-bomb-64mib-window-8mib".to_owned(), zstd));
    let mut window = 0xFD2F_B528u32.to_le_bytes().to_vec();
    window.extend([0x00, 20 << 3, 0x53, 0x00, 0x00, 0x00]);
    hostile.push(("zstd-window-1gib".to_owned(), with_payload(&one, Compression::Zstd, &window)));
    let gzip_member = compressed(Compression::Gzip, &vec![0; MIB]);
    hostile.push((
        "gzip-bomb-65mib".to_owned(),
        with_payload(&one, Compression::Gzip, &gzip_member.repeat(65)),
    ));
    let lz4_frame = compressed(Compression::Lz4, &vec![0; 4 * MIB]);
    hostile.push((
        "lz4-bomb-16mib".to_owned(),
        with_payload(&one, Compression::Lz4, &lz4_frame.repeat(4)),
    ));
    let mut snappy_claim = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
    snappy_claim.extend([0; 16]);
    hostile.push((
        "snappy-length-claim-4gib".to_owned(),
        with_payload(&one, Compression::Snappy, &snappy_claim),
    ));
    let mut xerial_chunk = xerial(&[]);
    xerial_chunk.extend(0x7fff_ffff_i32.to_be_bytes());
    xerial_chunk.extend([0; 16]);
    hostile.push((
        "snappy-java-chunk-0x7fffffff".to_owned(),
        with_payload(&one, Compression::Snappy, &xerial_chunk),
    ));

    let check = |bytes: &[u8]| -> Result<(), String> {
        let mut scratch = Vec::new();
        for batch in batch::Batches::new(bytes, u32::MAX) {
            let batch = batch.map_err(|e| e.to_string())?;
            validate_records(&batch, &mut scratch, FUZZ_DECOMPRESSED_BYTES_MAX)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    for (name, bytes) in &valid {
        assert_eq!(check(bytes), Ok(()), "{name}");
    }
    for (name, bytes) in &hostile {
        assert!(check(bytes).is_err(), "{name} accepted");
    }
    valid.into_iter().chain(hostile).collect()
}
