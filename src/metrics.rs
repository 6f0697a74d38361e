//! Counters owned by the event loop: plain u64s, no atomics (one thread updates them).

use serde::{Deserialize, Serialize};

/// Server-wide counters. Copied out for a stats snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Connections accepted.
    pub connections_accepted: u64,
    /// Connections refused at max_connections.
    pub connections_refused: u64,
    /// Messages accepted from publishers (duplicates excluded).
    pub messages_published: u64,
    /// Duplicate publishes (seq already accepted): receipted, not routed.
    pub messages_duplicate: u64,
    /// DELIVER frames sent.
    pub messages_delivered: u64,
    /// Deliveries acked.
    pub messages_acked: u64,
    /// Queued messages replaced by a newer one with the same conflation identity.
    pub messages_conflated: u64,
    /// Messages dropped because their session overflowed (the one that overflowed it and
    /// everything the closed session still held).
    pub messages_dropped_overflow: u64,
    /// Messages a session still held when it ended for any other reason.
    pub messages_dropped_session_closed: u64,
    /// DELIVER frames sent again after a resume (REDELIVERED flag).
    pub messages_redelivered: u64,
    /// Sessions detached when their connection ended (kept for a resume).
    pub sessions_detached: u64,
    /// Sessions resumed.
    pub sessions_resumed: u64,
    /// Resume attempts answered with LOST.
    pub sessions_lost: u64,
    /// Resumes that took a session over from a connection that still looked alive.
    pub sessions_taken_over: u64,
    /// Detached sessions closed at the end of their keep-alive.
    pub sessions_expired: u64,
    /// Connections closed for HEARTBEAT_TIMEOUT (silent peer or stalled reader).
    pub heartbeat_timeouts: u64,
    /// PROXY protocol headers that named a client.
    pub proxy_headers: u64,
    /// PROXY protocol LOCAL headers (proxy health checks).
    pub proxy_local_headers: u64,
    /// Connections refused for a missing, bad or untrusted PROXY header.
    pub proxy_rejected: u64,
    /// Times a connection's reading was paused by its publish rate limit.
    pub throttle_episodes: u64,
    /// HELLOs refused with AUTH_FAILED.
    pub auth_failures: u64,
    /// HELLOs held back by the failed-authentication slowdown.
    pub auth_throttled: u64,
    /// PUBLISH, SUBSCRIBE and STATS requests refused with NOT_AUTHORIZED.
    pub not_authorized: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
}
