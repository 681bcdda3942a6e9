//! Fuzz target `record_batch`: a record set (concatenated RecordBatch v2), through batch
//! validation, the records walk, the broker's produce-time record check with capped
//! decompression, and recompression with another codec.

#![no_main]

use cairn_fuzz::{Budget, run};
use cairn_protocol::fuzzing::fuzz_record_batch;

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data, Budget::RecordBatch, fuzz_record_batch));
