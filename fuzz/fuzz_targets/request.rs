//! Fuzz target `request`: an api key and version (two big-endian `i16`s) then a request body,
//! through the shape check and, if it passes, `kafka-protocol`'s decoder, for every API and
//! version cairn accepts.

#![no_main]

use cairn_fuzz::{Budget, run};
use cairn_kafka::fuzzing::fuzz_request;

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data, Budget::Request, fuzz_request));
