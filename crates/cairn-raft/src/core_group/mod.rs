//! The consistent core as an openraft group (RFC 0003 §5): group 0, whose log holds
//! cairn-meta's [`CoreCommand`]s and whose state machine is cairn-meta's [`CoreState`], serving
//! [`cairn_meta::MetadataStore`] as [`CoreMetadata`].
//!
//! - `state_machine.rs`: [`CoreStateMachine`], openraft's state machine over a `CoreState` in
//!   memory. Each normal entry is a one-record batch whose value is an encoded command; apply
//!   decodes it, runs [`cairn_meta::apply`], publishes the new state (an `Arc` swapped) and
//!   leaves the command's answer for its waiter. Snapshots are the encoded state in their own
//!   file (`core-state`, [`file`]), built every so many entries or bytes; the log is purged
//!   behind them.
//! - `metadata.rs`: [`CoreMetadata`], the `MetadataStore`: reads from the published state,
//!   writes checked and built by the leader, proposed, answered once committed and applied
//!   here; a node that does not lead hands them to the leader through [`CoreForward`].
//! - `liveness.rs`: the leader's judgement of which nodes are alive ([`LivenessTimers`]):
//!   `SetLiveness` after a grace period of silence in the core's own Raft traffic.
//! - `bootstrap.rs`: opening the core in `<data>/meta/raft/`: a new core is initialized with
//!   this node as its only voter; the first leader sets the cluster id and registers the node
//!   (and its etcd address);
//!   a single node's `LocalMetadata` file is imported once and renamed `*.imported`.
//!
//! The core lives in cairn-raft because its state machine is an openraft one and every openraft
//! type stays in this crate; cairn-meta, pure, sits below it.

mod bootstrap;
mod file;
mod liveness;
mod metadata;
mod peers;
mod state_machine;

use std::sync::Arc;
use std::time::Duration;

use cairn_meta::NodeMeta;
use cairn_metrics::Histogram;
use cairn_storage::{Clock, FlushPolicy, LogConfig};
use cairn_types::limits::{
    CORE_SEGMENT_BYTES, CORE_SNAPSHOT_ENTRIES_DEFAULT, CORE_SNAPSHOT_LOG_BYTES_DEFAULT,
    CORE_WRITE_TIMEOUT_MS,
};

pub use bootstrap::{CoreError, CorePeers};
pub(crate) use bootstrap::{NoSink, Stopper, initialize, make_dir};
pub use liveness::LivenessTimers;
pub(crate) use metadata::command_batch;
pub use metadata::{CoreForward, CoreMetadata, CoreRequest, CoreStatus, Forwarded, NoForward};
pub use peers::{CORE_GROUP, PeerForward};
pub use state_machine::{CoreSnapshot, CoreSnapshotBuilder, CoreStateMachine};
pub(crate) use state_machine::{one_record, start_after};

use crate::Timers;

/// The directory of the core's log and files, inside the metadata directory.
pub const CORE_DIR: &str = "raft";

/// How the core group runs.
#[derive(Clone)]
pub struct CoreConfig {
    /// The core log's settings; its flushes are the group commit's ([`core_log_config`]).
    pub log: LogConfig,
    /// The group's Raft timers.
    pub timers: Timers,
    /// Entries applied between two snapshots.
    pub snapshot_entries: u64,
    /// Bytes of commands applied between two snapshots (whichever comes first).
    pub snapshot_log_bytes: u64,
    /// How long a change waits for a leader, its commit and its apply; and how long opening
    /// waits for the core to elect a leader.
    pub write_timeout: Duration,
    /// Timestamps of the log's control batches.
    pub clock: Arc<dyn Clock>,
    /// Durations of the core log's fsyncs.
    pub flush_seconds: Arc<Histogram>,
}

impl CoreConfig {
    /// The defaults of RFC 0003 §5 with `clock` and `flush_seconds`.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>, flush_seconds: Arc<Histogram>) -> CoreConfig {
        CoreConfig {
            log: core_log_config(),
            timers: Timers::default(),
            snapshot_entries: CORE_SNAPSHOT_ENTRIES_DEFAULT,
            snapshot_log_bytes: CORE_SNAPSHOT_LOG_BYTES_DEFAULT,
            write_timeout: Duration::from_millis(CORE_WRITE_TIMEOUT_MS),
            clock,
            flush_seconds,
        }
    }
}

/// The core log's settings: segments of [`CORE_SEGMENT_BYTES`], flushed by the group commit.
#[must_use]
pub fn core_log_config() -> LogConfig {
    LogConfig {
        segment_bytes: CORE_SEGMENT_BYTES,
        flush: FlushPolicy::Manual,
        ..LogConfig::default()
    }
}

/// This node as the core registers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreNode {
    /// Id, advertised Kafka host and port, rack.
    pub meta: NodeMeta,
    /// Where peers reach it (`--peer-listen`).
    pub peer_address: String,
    /// Where its etcd v3 API listens (the bound `--etcd-listen`), if it serves one: registered
    /// so that every node's MemberList gives every member's client URL.
    pub etcd_address: Option<String>,
}
