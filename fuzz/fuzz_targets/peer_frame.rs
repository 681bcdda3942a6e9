//! Fuzz target `peer_frame`: the bytes a peer sends on one connection, frame after frame (length
//! checked before allocating, CRC, header, body), each frame also with its CRC recomputed so
//! that mutations reach the bodies; a frame that decodes must encode to its exact bytes.

#![no_main]

use cairn_fuzz::{Budget, run};
use cairn_raft::peer::fuzzing::fuzz_peer_frame;

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data, Budget::PeerFrame, fuzz_peer_frame));
