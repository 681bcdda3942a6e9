//! Fuzz target `frame`: the bytes a client sends on one connection, read as the server reads
//! them (4-byte length prefix checked before allocating, request header shape check, served
//! version table, body shape check, `kafka-protocol` decode), frame after frame.

#![no_main]

use cairn_fuzz::{Budget, run};
use cairn_kafka::fuzzing::fuzz_frame;

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data, Budget::Request, fuzz_frame));
