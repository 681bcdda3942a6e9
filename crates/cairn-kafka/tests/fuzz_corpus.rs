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

// The counting allocator is the one unsafe thing here: `GlobalAlloc` is an unsafe trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};

use cairn_kafka::codec::{FrameError, decode_frame, frame_length};
use cairn_kafka::fuzzing::{fuzz_frame, fuzz_request};
use cairn_kafka::shape::{APIS, ShapeError, check_request};
use cairn_types::limits::FRAME_BYTES_MAX;
use kafka_protocol::messages::ApiKey;

const MIB: usize = 1024 * 1024;

/// The most one allocation may take while a hostile input is refused.
const HOSTILE_ALLOCATION_BYTES_MAX: usize = 2 * MIB;

// ---------------------------------------------------------------------------------------------
// The counting allocator.
// ---------------------------------------------------------------------------------------------

/// [`System`], noting on the calling thread the largest allocation asked for.
struct Counting;

thread_local! {
    /// Largest single allocation (or reallocation target) of this thread since the last reset.
    /// `const` and without destructor, so that reading it never allocates.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: a thread being torn down may still allocate.
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller upholds `alloc`'s contract, which is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: the caller upholds `realloc`'s contract; `ptr` came from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, which is `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the largest single allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(0));
    let result = f();
    (result, LARGEST.with(Cell::get))
}

#[test]
fn the_counting_allocator_counts() {
    let ((), largest) = largest_allocation(|| drop(std::hint::black_box(vec![0u8; 3 * MIB])));
    assert!(largest >= 3 * MIB, "{largest}");
    let ((), largest) = largest_allocation(|| {});
    assert_eq!(largest, 0);
}

// ---------------------------------------------------------------------------------------------
// Corpus replay.
// ---------------------------------------------------------------------------------------------

/// The directory of a target's corpus.
fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

/// Every file of a target's corpus, by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
            let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, data)
        })
        .collect();
    files.sort();
    files
}

/// What one allocation may take on an input of `input_bytes` (the fuzz targets' budgets, in
/// `fuzz/src/lib.rs`).
fn request_budget(input_bytes: usize) -> usize {
    MIB + 64 * input_bytes
}

/// Replays a corpus through `target`, checking each file's largest allocation against
/// `budget`; returns how many files there were.
fn replay(target: &str, run: fn(&[u8]), budget: fn(usize) -> usize) -> usize {
    let files = corpus(target);
    for (name, data) in &files {
        let ((), largest) = largest_allocation(|| run(data));
        assert!(
            largest <= budget(data.len()),
            "{target}/{name}: one allocation took {largest} bytes, budget {}",
            budget(data.len())
        );
    }
    files.len()
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
