//! The harnesses cairn's integration tests share, so each test file keeps only what is
//! particular to it:
//!
//! - [`broker`]: a [`cairn_broker::Broker`] over [`cairn_meta::LocalMetadata`] on a real
//!   directory, configured as tests want it, opened again on the same directory for a restart.
//! - [`TestNode`]: that broker served by [`cairn_kafka::serve`] on a free loopback port in this
//!   process, with its metrics registry, stopped gracefully within a bound.
//! - [`ProcessNode`]: a real `cairn serve` process on free loopback ports (readiness awaited,
//!   SIGTERM or SIGKILL, restart on the same data directory, log captured), and [`run`] for any
//!   other `cairn` command with a deadline; [`metadata_brokers`], the controller and brokers a
//!   node's Metadata answer lists, and [`kafka_call`], any one request answered, blocking.
//! - [`FaultProxy`]: a TCP proxy between two peers whose faults (drop one way or both, delay,
//!   reject, cut) are switched while it runs, for the tests that cut peer links.
//! - [`wire`]: raw Kafka request frames and response reading, for tests below the client.
//! - [`alloc`] and [`corpus`]: a global allocator counting each thread's largest allocation,
//!   and the fuzz corpora replayed on stable within their allocation budgets.
//! - [`crc32c`]: a bit-by-bit CRC32C, the reference that tests hold cairn's own to.
//! - [`linearizable`]: a linearizability checker (porcupine's search, etcd's unknown outcomes)
//!   for histories of concurrent operations, with a register model.
//!
//! A dev-dependency only: tidy's `layering` rule refuses it in `[dependencies]`, so it may
//! depend on every cairn crate. Its failure mode is a panic naming what failed (with the node's
//! log where there is one), which fails the test that called it: it runs only under tests.

pub mod alloc;
pub mod broker;
pub mod corpus;
pub mod linearizable;
pub mod node;
pub mod process;
pub mod proxy;
pub mod wire;

pub use node::{TestNode, TestNodeBuilder};
pub use process::{
    ProcessNode, ProcessNodeBuilder, Run, clean_command, epoch_end, free_ports, kafka_call,
    metadata_brokers, run, wire_name,
};
pub use proxy::{Direction, Fault, FaultProxy};

/// CRC32C (Castagnoli), bit by bit: slow and obviously right, a reference independent of the
/// table-driven one cairn uses, for tests that build or reseal batches by hand.
#[must_use]
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}
