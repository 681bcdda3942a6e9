//! [`Timers`]: the Raft timers of a group, and the one openraft `Config` every cairn group runs
//! with (RFC 0003 §6 "Timers", §3 "Snapshots are small; purge is retention").

use openraft::{Config, SnapshotPolicy};

/// The timers of a Raft group, in milliseconds. The defaults are RFC 0003 §6's: heartbeats every
/// 250 ms, elections after 1.5–3 s of silence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// Interval between a leader's heartbeats to a follower.
    pub heartbeat_ms: u64,
    /// A heartbeat to a follower that acknowledged anything this recently is skipped (busy groups
    /// send none).
    pub heartbeat_min_interval_ms: u64,
    /// Shortest silence after which a follower campaigns (after a pre-vote round).
    pub election_timeout_min_ms: u64,
    /// Longest such silence; each follower draws its timeout between the two.
    pub election_timeout_max_ms: u64,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            heartbeat_ms: 250,
            heartbeat_min_interval_ms: 250,
            election_timeout_min_ms: 1500,
            election_timeout_max_ms: 3000,
        }
    }
}

/// Timers openraft refuses: the message says which rule they break. A configuration error,
/// reported at start; nothing retries.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid raft timers: {reason}")]
pub struct TimersError {
    /// openraft's explanation.
    pub reason: String,
}

/// Client writes openraft takes from its queue in one batch (one storage append). openraft
/// preallocates the batch per group (its default, 4096, is most of a group's memory); a
/// partition's produce requests rarely queue more.
const API_BATCH_CAPACITY: u64 = 256;

/// Entries of openraft's per-group log-stage statistics (its default 1024 is preallocated).
const LOG_STAGE_CAPACITY: u64 = 64;

/// Entries in one AppendEntries while a leader probes a follower's log. A pipelined stream is
/// not bounded by it; both are bounded in bytes by the log reader.
const APPEND_ENTRIES_MAX: u64 = 300;

impl Timers {
    /// Checks the timers as the groups will use them, so that a node refuses bad timers at
    /// start, with the reason, rather than at its first group.
    ///
    /// # Errors
    /// [`TimersError`] if openraft refuses them (election timeouts not above the heartbeat and
    /// its skip window, an empty election range).
    pub fn validate(&self) -> Result<(), TimersError> {
        self.openraft_config().map(drop)
    }

    /// The openraft configuration of a group: these timers, pre-vote on, and no snapshot or
    /// purge of openraft's own (retention decides both: a snapshot is built at the purge point
    /// and everything it covers may go).
    ///
    /// # Errors
    /// [`TimersError`] if the timers break openraft's rules (election timeouts not above the
    /// heartbeat and its skip window, an empty election range).
    pub fn openraft_config(&self) -> Result<Config, TimersError> {
        let config = Config {
            cluster_name: "cairn".to_owned(),
            heartbeat_interval: self.heartbeat_ms,
            heartbeat_min_interval: Some(self.heartbeat_min_interval_ms),
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            enable_pre_vote: Some(true),
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            max_payload_entries: APPEND_ENTRIES_MAX,
            // A restarted node campaigns for a new term rather than resuming the old one: the
            // term, Kafka's leader epoch, grows with every restart, and the new term's blank
            // entry fixes the high watermark (RFC 0003 §4).
            enable_leader_restore: Some(false),
            // A follower whose log lost committed entries (a bit flip in its last batch, cut
            // as a torn write) comes back shorter than the leader knew it. It abstains from
            // votes until restored (`RaftGroup::start`); the leader must send it the entries
            // again rather than assert (debug) or stall (release) on the reverted match.
            allow_log_reversion: Some(true),
            // openraft preallocates these per group; a node hosts thousands of groups.
            api_batch_capacity: API_BATCH_CAPACITY,
            log_stage_capacity: Some(LOG_STAGE_CAPACITY),
            ..Config::default()
        };
        config.validate().map_err(|error| TimersError { reason: error.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_timers_are_a_valid_config() {
        let config = Timers::default().openraft_config().unwrap();
        assert_eq!(config.enable_pre_vote, Some(true));
        assert_eq!(config.snapshot_policy, SnapshotPolicy::Never);
        assert_eq!((config.election_timeout_min, config.election_timeout_max), (1500, 3000));
        assert_eq!(config.heartbeat_interval, 250);
    }

    #[test]
    fn timers_openraft_refuses_are_an_error() {
        let check = |timers: Timers| {
            let error = timers.openraft_config().unwrap_err();
            assert!(error.to_string().starts_with("invalid raft timers: "), "{error}");
        };
        let timers = Timers::default();
        check(Timers { election_timeout_max_ms: 1500, ..timers });
        check(Timers { heartbeat_ms: 1500, ..timers });
        // heartbeat + skip window + one tick must stay below the shortest election timeout.
        check(Timers { heartbeat_min_interval_ms: 1200, ..timers });
        assert_eq!(Timers { heartbeat_min_interval_ms: 1100, ..timers }.validate(), Ok(()));
    }
}
