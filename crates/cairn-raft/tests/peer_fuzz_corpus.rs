//! The `peer_frame` fuzz corpus replayed on stable, within the allocation budget the fuzz target
//! enforces (`fuzz/src/lib.rs`), measured by a counting global allocator:
//!
//! - every file of `fuzz/corpus/peer_frame` goes through `fuzz_peer_frame`;
//! - the corpus holds every seed the generator writes, byte for byte, and those cover every
//!   frame kind;
//! - absurd counts are refused without allocating for them;
//! - mutations of the seeds (flipped bytes, cuts, the CRC resealed) never break a promise of
//!   the codec: a stand-in for the fuzzer that runs in every test run.

use std::collections::BTreeSet;

use bytes::Bytes;
use cairn_raft::peer::frame;
use cairn_raft::peer::fuzzing::{fuzz_peer_frame, sample_messages, seed_frames};
use cairn_testkit::alloc::{Counting, largest_allocation};
use cairn_testkit::corpus::{corpus, replay};
use proptest::prelude::*;

const MIB: usize = 1024 * 1024;

/// Counts the largest allocation of each test's thread (`cairn_testkit::alloc`).
#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What one allocation may take on an input of `input_bytes` (`Budget::PeerFrame`).
fn budget(input_bytes: usize) -> usize {
    MIB + 64 * input_bytes
}

#[test]
fn peer_frame_corpus_replays() {
    assert!(replay("peer_frame", fuzz_peer_frame, budget) >= seed_frames().len());
}

#[test]
fn the_corpus_holds_every_seed_and_every_kind() {
    let files = corpus("peer_frame");
    for (name, bytes) in seed_frames() {
        let file = format!("seed-{name}");
        let found = files.iter().find(|(f, _)| *f == file).map(|(_, data)| data);
        assert_eq!(found, Some(&bytes), "{file}: run fuzz/examples/seed_corpus.rs");
    }
    let kinds: BTreeSet<u16> = sample_messages().iter().map(|(_, m)| m.kind()).collect();
    assert_eq!(kinds, (1..=21).collect(), "a sample of every frame kind");
}

#[test]
fn absurd_counts_allocate_nothing_large() {
    for (name, bytes) in seed_frames() {
        if !name.contains("count") && !name.contains("length") {
            continue;
        }
        let (decoded, largest) = largest_allocation(|| {
            let prefix = [bytes[0], bytes[1], bytes[2], bytes[3]];
            frame::frame_length(prefix, u32::MAX)
                .and_then(|_| frame::decode(Bytes::copy_from_slice(&bytes[4..])))
        });
        assert!(decoded.is_err(), "{name} decoded");
        assert!(largest <= 64 * 1024, "{name}: one allocation of {largest} bytes");
    }
}

/// `bytes` with every change applied (position taken modulo the length), cut to `keep` bytes
/// of the body, and with its length prefix and CRC made right again.
fn mutate(bytes: &[u8], changes: &[(usize, u8)], keep: usize) -> Vec<u8> {
    let mut mutated = bytes.to_vec();
    let body = mutated.len() - 8;
    for &(position, value) in changes {
        mutated[8 + position % body] ^= value;
    }
    mutated.truncate(8 + keep.min(body));
    let length = u32::try_from(mutated.len() - 4).expect("small");
    mutated[..4].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&mutated[8..]);
    mutated[4..8].copy_from_slice(&crc.to_be_bytes());
    mutated
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_frames_never_break_a_promise(
        seed in 0..sample_messages().len(),
        changes in proptest::collection::vec((any::<usize>(), 1..=255_u8), 0..4),
        keep in any::<usize>(),
    ) {
        let (_, bytes) = &seed_frames()[seed];
        let mutated = mutate(bytes, &changes, keep);
        let ((), largest) = largest_allocation(|| fuzz_peer_frame(&mutated));
        prop_assert!(largest <= budget(mutated.len()), "{largest} bytes for {}", mutated.len());
    }
}
