//! cairn-node: one cairn node, composed.
//!
//! - [`config`]: `NodeConfig` and the `cairn serve` flags (flags > environment > TOML file >
//!   defaults).
//! - [`admin`]: the admin HTTP endpoints (`/health/live`, `/health/ready`, `/metrics`,
//!   `/cluster`).
//! - [`status`]: `ClusterStatus`, the JSON document of `/cluster` (`cairn cluster status`).
//! - `etcd.rs`: the etcd v3 API over the coordination group (cairn-etcd's backend).
//! - [`run`]: opens the data directory, metadata, coordination group and partitions, serves
//!   Kafka, etcd and admin, and shuts down cleanly on SIGTERM/SIGINT.

pub mod admin;
pub mod config;
mod etcd;
mod node;
pub mod status;

pub use node::run;
