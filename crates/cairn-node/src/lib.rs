//! cairn-node: one cairn node, composed.
//!
//! - [`config`]: `NodeConfig` and the `cairn serve` flags (flags > environment > TOML file >
//!   defaults).
//! - [`admin`]: the admin HTTP endpoints (`/health/live`, `/health/ready`, `/metrics`).
//! - [`run`]: opens the data directory, metadata and partitions, serves Kafka and admin, and
//!   shuts down cleanly on SIGTERM/SIGINT.

pub mod admin;
pub mod config;
mod node;

pub use node::run;
