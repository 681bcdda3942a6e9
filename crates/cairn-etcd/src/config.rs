//! [`EtcdConfig`]: the front door's limits, etcd's defaults unless said otherwise.

use std::time::Duration;

/// The limits and timers of the etcd services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// The largest write request, encoded (etcd's `--max-request-bytes`, 1.5 MiB). gRPC
    /// messages up to this plus [`GRPC_OVERHEAD_BYTES`] are decoded, so a larger write is
    /// refused with etcd's "request is too large" rather than a transport error.
    pub request_bytes_max: usize,
    /// The most operations in a Txn (etcd's `--max-txn-ops`, 128), counted as etcd does: the
    /// largest of its compares, success and failure ops, nested Txns within what is left.
    pub txn_ops_max: usize,
    /// The shortest lease TTL, in seconds: a grant below it is raised to it, as etcd does
    /// (etcd derives it from its election timeout; 2 s with the default timers).
    pub lease_ttl_min_seconds: i64,
    /// How often a watch created with `progress_notify` gets a progress notification when idle
    /// (etcd's 10 minutes).
    pub progress_interval: Duration,
    /// How many revisions a lagging or new watcher reads from history at a time.
    pub history_page_revisions: usize,
    /// How many watch or keep-alive responses may wait for a slow client, per stream; beyond
    /// it the stream stops reading the live feed and its watchers fall back to history.
    pub stream_responses_buffered: usize,
    /// The most watches on one stream.
    pub watches_per_stream_max: usize,
    /// The space quota of the store, in bytes (etcd's `--quota-backend-bytes`, 2 GiB): a
    /// write that would grow the store past it raises the NOSPACE alarm and is refused, as is
    /// every write that may grow the store until the alarm is deactivated. 0: no quota.
    pub quota_backend_bytes: u64,
}

/// Room for gRPC's own framing above [`EtcdConfig::request_bytes_max`] (etcd's 512 KiB).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// etcd's default space quota: 2 GiB.
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 << 30;

/// etcd's largest lease TTL, in seconds (`MaxLeaseTTL`).
pub const LEASE_TTL_MAX_SECONDS: i64 = 9_000_000_000;

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            request_bytes_max: 1536 * 1024,
            txn_ops_max: 128,
            lease_ttl_min_seconds: 2,
            progress_interval: Duration::from_secs(600),
            history_page_revisions: 256,
            stream_responses_buffered: 64,
            watches_per_stream_max: 10_000,
            quota_backend_bytes: QUOTA_BACKEND_BYTES_DEFAULT,
        }
    }
}
