//! [`PeerStats`], the counters of a node's peer transport: what tests wait on (through a
//! `watch` channel, no polling) and what the metrics will export.

/// Counters since the transport started. Each field counts events, except
/// [`PeerStats::queued_bytes_peak`]. A change wakes the channel's watchers, except the count
/// of appends sent (it changes on every append; read it after another wait).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Connections whose handshake completed (either side).
    pub connections: u64,
    /// Dials that failed before a handshake completed (connect or handshake error).
    pub dial_failures: u64,
    /// Handshakes this node refused with a `Goodbye`.
    pub refused: u64,
    /// Handshakes a peer refused with a `Goodbye`.
    pub refused_by_peer: u64,
    /// Connections closed because the peer broke the protocol (garbage, an oversized frame,
    /// a bad CRC, a frame out of place).
    pub protocol_errors: u64,
    /// Requests from peers handed to the router.
    pub requests_run: u64,
    /// Requests from peers dropped unrun because their `ttl_ms` ran out first.
    pub requests_expired: u64,
    /// Requests from peers answered `Busy` (too many in flight on their connection).
    pub requests_busy: u64,
    /// Calls that failed at once because their lane's outbound queue was full.
    pub calls_queue_full: u64,
    /// The most bytes any outbound queue held at once.
    pub queued_bytes_peak: u64,
    /// Vote requests sent.
    pub votes_sent: u64,
    /// Pre-vote requests sent.
    pub pre_votes_sent: u64,
    /// AppendEntries frames sent (data lane; counted without waking watchers).
    pub appends_sent: u64,
    /// Batched `Heartbeats` frames sent.
    pub heartbeat_frames_sent: u64,
    /// Heartbeats carried by those frames, one per group.
    pub heartbeats_sent: u64,
    /// Snapshots sent.
    pub snapshots_sent: u64,
}

impl PeerStats {
    /// Notes that an outbound queue holds `queued` bytes; true if that is a new peak (only
    /// then are watchers woken: this runs on every call).
    pub(crate) fn note_queued(&mut self, queued: usize) -> bool {
        let grew = queued as u64 > self.queued_bytes_peak;
        self.queued_bytes_peak = self.queued_bytes_peak.max(queued as u64);
        grew
    }
}
