//! cairn-kafka: the Kafka wire protocol front door.
//!
//! - `shape`: checks a request body's structure (every array count and length bounded by the bytes
//!   left and a per-request element budget) before `kafka-protocol` decodes it.
//! - [`serve`]: the listener — framing, ordered pipelining, graceful shutdown (`server.rs`); the
//!   handlers (`handlers/`) and the one mapping of cairn errors to Kafka codes (`errors.rs`).
//! - [`accept`]: the listeners' pause after a failed `accept` (out of file descriptors), logged
//!   once per episode; the admin server uses it too.
//! - `sendfile`: Fetch response frames whose record sets are sent from the segment files.
//! - `codec`: the frame length check and a frame's whole decode path; `fuzzing`: the frame and
//!   request fuzz targets' bodies. Compression and frame body reading, which the client shares,
//!   are in `cairn-protocol`.

pub mod accept;
pub mod codec;
mod errors;
pub mod fuzzing;
mod handlers;
mod lag;
mod metrics;
mod sendfile;
mod server;
pub mod shape;

pub use server::{ServerConfig, serve};
