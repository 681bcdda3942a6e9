//! cairn-kafka: the Kafka wire protocol front door.
//!
//! - `shape`: checks a request body's structure (every array count and length bounded by the bytes
//!   left and a per-request element budget) before `kafka-protocol` decodes it.
//! - [`serve`]: the listener — framing, ordered pipelining, graceful shutdown (`server.rs`); the
//!   handlers (`handlers/`) and the one mapping of cairn errors to Kafka codes (`errors.rs`).
//! - `sendfile`: Fetch response frames whose record sets are sent from the segment files.
//! - `compression`: decompresses compressed record batches into a capped buffer to validate them.

pub mod codec;
pub mod compression;
mod errors;
pub mod fuzzing;
mod handlers;
mod metrics;
mod sendfile;
mod server;
pub mod shape;

pub use server::{ServerConfig, serve};
