//! The fuzz corpora replayed on stable, and hostile inputs that must allocate nothing large.
//!
//! - Replay: every file of `fuzz/corpus/frame` and `fuzz/corpus/request` goes through the same
//!   function as its cargo-fuzz target (`cairn_kafka::fuzzing`), which panics on a broken
//!   promise; each run's largest single allocation must also stay within the budget the fuzz
//!   targets enforce (`fuzz/src/lib.rs`). The `record_batch` corpus is replayed by
//!   cairn-protocol's `tests/fuzz_corpus.rs`.
//! - Allocation: a counting global allocator records the largest single allocation of the
//!   running thread. An absurd length prefix and absurd array counts (classic 0x7fffffff,
//!   compact 0xffffffff) must each be refused without one allocation over 2 MiB.

use cairn_kafka::codec::{FrameError, decode_frame, frame_length};
use cairn_kafka::fuzzing::{fuzz_frame, fuzz_request};
use cairn_kafka::shape::{APIS, ShapeError, check_request};
use cairn_testkit::alloc::{Counting, largest_allocation};
use cairn_testkit::corpus::{corpus, replay};
use cairn_types::limits::FRAME_BYTES_MAX;
use kafka_protocol::messages::ApiKey;

const MIB: usize = 1024 * 1024;

/// The most one allocation may take while a hostile input is refused.
const HOSTILE_ALLOCATION_BYTES_MAX: usize = 2 * MIB;

/// Counts the largest allocation of each test's thread (`cairn_testkit::alloc`).
#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Corpus replay.
// ---------------------------------------------------------------------------------------------

/// What one allocation may take on an input of `input_bytes` (the fuzz targets' budgets, in
/// `fuzz/src/lib.rs`).
fn request_budget(input_bytes: usize) -> usize {
    MIB + 64 * input_bytes
}

#[test]
fn frame_corpus_replays() {
    assert!(replay("frame", fuzz_frame, request_budget) > 100);
}

#[test]
fn request_corpus_replays() {
    assert!(replay("request", fuzz_request, request_budget) > 100);
}

/// The seeds cover every API and version cairn accepts, with a valid body and, where the body
/// has an array, one whose first count is absurd.
#[test]
fn request_corpus_covers_every_api_and_version() {
    let files = corpus("request");
    let find = |name: &str| files.iter().find(|(file, _)| file == name).map(|(_, data)| data);
    for api in APIS {
        let key = ApiKey::try_from(api.api_key).expect("a known api");
        let api_name = format!("{key:?}").to_lowercase();
        for version in api.versions.min..=api.versions.max {
            for what in ["default", "generated"] {
                let name = format!("seed-{api_name}-v{version}-{what}");
                let data = find(&name).unwrap_or_else(|| panic!("{name} missing"));
                assert_eq!(check_request(api.api_key, version, &data[4..]), Ok(()), "{name}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Absurd length prefixes and counts.
// ---------------------------------------------------------------------------------------------

/// A Metadata v12 request header (flexible: header v2), correlation id 1, client id "c".
const METADATA_V12_HEADER: [u8; 12] = [0, 3, 0, 12, 0, 0, 0, 1, 0, 1, b'c', 0];

#[test]
fn absurd_length_prefix_is_refused_before_allocating() {
    let mut stream = 0x7fff_ffff_u32.to_be_bytes().to_vec();
    stream.extend(METADATA_V12_HEADER);
    let prefix: [u8; 4] = stream[..4].try_into().expect("four bytes");
    let (checked, largest) = largest_allocation(|| frame_length(prefix));
    assert_eq!(checked, Err(FrameError::Size(0x7fff_ffff)));
    assert_eq!(largest, 0, "the length check allocates nothing");
    let ((), largest) = largest_allocation(|| fuzz_frame(&stream));
    assert!(largest <= HOSTILE_ALLOCATION_BYTES_MAX, "{largest}");
    // The boundaries of the check.
    for (length, ok) in [
        (-1, false),
        (0, false),
        (9, false),
        (10, true),
        (FRAME_BYTES_MAX as i32, true),
        (FRAME_BYTES_MAX as i32 + 1, false),
        (i32::MIN, false),
    ] {
        assert_eq!(frame_length(length.to_be_bytes()).is_ok(), ok, "{length}");
    }
}

/// Frames whose body declares an absurd array count: (name, frame).
fn absurd_count_frames() -> Vec<(&'static str, Vec<u8>)> {
    // Metadata v1 (header v1, client id null): topics count 0x7fffffff, 16 bytes of body left.
    let mut classic = vec![0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff];
    classic.extend([0x7f, 0xff, 0xff, 0xff]);
    classic.resize(classic.len() + 16, 0);
    // Metadata v12: compact topics count 0xffffffff (0xfffffffe topics).
    let mut compact = METADATA_V12_HEADER.to_vec();
    compact.extend([0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0]);
    // DescribeGroups is not served, but CreateTopics v2 is: topics count 0x7fffffff.
    let mut create_topics = vec![0, 19, 0, 2, 0, 0, 0, 1, 0xff, 0xff];
    create_topics.extend([0x7f, 0xff, 0xff, 0xff]);
    create_topics.resize(create_topics.len() + 5, 0);
    vec![
        ("metadata-v1-classic", classic),
        ("metadata-v12-compact", compact),
        ("create-topics-v2", create_topics),
    ]
}

#[test]
fn absurd_array_counts_are_refused_without_allocating() {
    for (name, frame) in absurd_count_frames() {
        let (decoded, largest) =
            largest_allocation(|| decode_frame(bytes::Bytes::from(frame.clone())).map(drop));
        assert!(
            matches!(decoded, Err(FrameError::Body(ShapeError::CountTooLarge { .. }))),
            "{name}: {decoded:?}"
        );
        assert!(largest <= HOSTILE_ALLOCATION_BYTES_MAX, "{name}: {largest}");
        // The same through the whole connection path.
        let mut stream = (frame.len() as u32).to_be_bytes().to_vec();
        stream.extend_from_slice(&frame);
        let ((), largest) = largest_allocation(|| fuzz_frame(&stream));
        assert!(largest <= HOSTILE_ALLOCATION_BYTES_MAX, "{name}: {largest}");
    }
}

#[test]
fn every_absurd_count_seed_is_refused_without_allocating() {
    let mut seen = 0;
    for (name, data) in corpus("request") {
        if !name.contains("count-0x") {
            continue;
        }
        let api_key = i16::from_be_bytes([data[0], data[1]]);
        let version = i16::from_be_bytes([data[2], data[3]]);
        let (checked, largest) = largest_allocation(|| check_request(api_key, version, &data[4..]));
        assert!(
            matches!(checked, Err(ShapeError::CountTooLarge { .. } | ShapeError::BadVarint { .. })),
            "{name}: {checked:?}"
        );
        let ((), run_largest) = largest_allocation(|| fuzz_request(&data));
        assert!(largest.max(run_largest) <= HOSTILE_ALLOCATION_BYTES_MAX, "{name}: {largest}");
        seen += 1;
    }
    assert!(seen > 100, "only {seen} absurd-count seeds");
}

/// The server ignores bytes after a body's last field (as Kafka does); the crate stops there.
#[test]
fn trailing_bytes_after_a_checked_body_are_ignored() {
    let mut frame = METADATA_V12_HEADER.to_vec();
    // Metadata v12: null topics, allow auto-creation, include topic operations, no tags.
    frame.extend([0, 1, 0, 0]);
    let decoded = decode_frame(bytes::Bytes::from(frame.clone())).expect("a valid request");
    assert_eq!((decoded.bytes_left, decoded.trailing_bytes), (0, 0));
    frame.extend([0xff, 0xff, 0xff]);
    let decoded =
        decode_frame(bytes::Bytes::from(frame.clone())).expect("trailing bytes are ignored");
    assert_eq!((decoded.bytes_left, decoded.trailing_bytes), (3, 3));
    let mut stream = (frame.len() as u32).to_be_bytes().to_vec();
    stream.extend_from_slice(&frame);
    fuzz_frame(&stream);
}
