//! cairn-client: a small async Kafka client over tokio and the `kafka-protocol` codec the broker
//! uses. The `cairn` CLI and `cairn-bench` are built on it.
//!
//! - [`Client`] (`client.rs`): one connection to one broker, version negotiation (ApiVersions),
//!   one request at a time with [`Client::send`]; bounded frames, connect and request timeouts.
//! - [`Pipeline`] (`pipeline.rs`): the same connection with up to `inflight_max` requests in
//!   flight; [`Pipeline::send`] returns a [`Pending`] response, matched by correlation id in
//!   order by a reader task.
//! - [`records`]: building (and compressing) record batches, Kafka's default partitioner, and
//!   decoding fetched batches.
//! - [`codes`]: Kafka error codes as readable messages.
//! - [`fetch`]: consumer Fetch requests.
//! - [`lookup`]: wire topic names and partition offsets (ListOffsets).
//! - [`ClientError`] (`error.rs`): the typed errors of a connection.
//!
//! What it is not (yet): a cluster-aware client. It talks to the broker it is given; routing by
//! partition leader comes with replication.

mod client;
pub mod codes;
mod error;
pub mod fetch;
pub mod lookup;
mod pipeline;
pub mod records;

pub use client::{
    CLIENT_ID_DEFAULT, CONNECT_TIMEOUT_DEFAULT, Client, Options, REQUEST_TIMEOUT_DEFAULT,
    RESPONSE_GRACE,
};
pub use error::{ClientError, api_name};
pub use pipeline::{Pending, Pipeline};
