//! cairn's vocabulary, shared by every other crate.
//!
//! - [`Offset`], [`LeaderEpoch`], [`NodeId`], [`ProducerId`]: newtypes so that an offset is never
//!   passed where an epoch is expected.
//! - [`batch`]: a zero-copy, validating view over a Kafka RecordBatch v2 ([`RecordBatch`]), the
//!   one on-disk and on-wire record format of cairn, plus a builder for uncompressed batches.
//! - [`limits`]: every `*_max` of the system in one place.
//!
//! This crate does no IO, spawns nothing and knows nothing of tokio, files or sockets.
//!
//! ```
//! use cairn_types::batch::{BatchBuilder, RecordBatch};
//!
//! let bytes = BatchBuilder::new(1_700_000_000_000).record(Some(b"k"), Some(b"v"), &[]).build();
//! let batch = RecordBatch::validate(&bytes).expect("the builder writes valid batches");
//! assert_eq!(batch.record_count(), 1);
//! ```

pub mod batch;
mod ids;
pub mod limits;
pub mod varint;

pub use batch::{BatchError, RecordBatch};
pub use ids::{LeaderEpoch, NodeId, Offset, ProducerId, RaftIndex};
