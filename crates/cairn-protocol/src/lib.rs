//! cairn-protocol: what cairn's Kafka server (`cairn-kafka`) and client (`cairn-client`) share,
//! and nothing that knows the broker.
//!
//! - [`compression`]: the record batch codecs (capped decompression, compression in the formats
//!   Kafka clients write), the record check of produced batches, and re-encoding a batch with
//!   another codec (the broker's recompression for a topic's `compression.type`).
//! - [`frame`]: reading a size-prefixed frame's body once its length is checked.
//! - [`fuzzing`]: the record-batch fuzz target's body, shared by `fuzz/` and the corpus replay
//!   tests.

pub mod compaction;
pub mod compression;
pub mod frame;
pub mod fuzzing;
