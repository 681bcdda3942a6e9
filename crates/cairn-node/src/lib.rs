//! cairn-node: one cairn node, composed.
//!
//! - [`config`]: `NodeConfig` and the `cairn serve` flags (flags > environment > TOML file >
//!   defaults).
//! - [`admin`]: the admin HTTP endpoints (`/health/live`, `/health/ready`, `/metrics`,
//!   `/cluster`).
//! - [`status`]: `ClusterStatus`, the JSON document of `/cluster` (`cairn cluster status`).
//! - [`run`]: opens the data directory, metadata and partitions, serves Kafka and admin, and
//!   shuts down cleanly on SIGTERM/SIGINT.

pub mod admin;
pub mod config;
mod node;
pub mod status;

pub use node::run;
