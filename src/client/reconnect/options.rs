//! How a [`ReconnectingClient`](super::ReconnectingClient) retries and buffers, and the
//! figures it keeps.

use std::time::Duration;

use crate::client::ClientError;

/// How a [`ReconnectingClient`](super::ReconnectingClient) retries and how much it buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconnectOptions {
    /// Wait after the first failed attempt; the first attempt after a connection is lost
    /// goes at once. Must not be zero.
    pub initial_backoff: Duration,
    /// The wait doubles after each failed attempt up to this. At least `initial_backoff`.
    pub max_backoff: Duration,
    /// Fraction of each wait taken off at random (0.0: none, 1.0: anywhere between zero and
    /// the full wait), so clients cut at the same moment do not return in lockstep.
    pub jitter: f64,
    /// Stop reconnecting once a connection has been down this long, with
    /// [`ClientError::GaveUp`]; `None` retries forever.
    pub give_up_after: Option<Duration>,
    /// Most publishes kept while not yet receipted. Must not be zero.
    pub outbound_capacity: usize,
    /// Most bytes (names and payloads) of publishes kept while not yet receipted; one
    /// publish larger than this is still accepted when nothing else is held.
    pub outbound_capacity_bytes: usize,
    /// What `publish` does when the outbound queue is full.
    pub on_full: OnFull,
}

impl Default for ReconnectOptions {
    fn default() -> ReconnectOptions {
        ReconnectOptions {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            jitter: 0.5,
            // The server's default reconnect_keep_alive_ms: past it, a resume can only be LOST,
            // and an outage that long is more likely a configuration problem than a blip.
            give_up_after: Some(Duration::from_secs(60)),
            // A few drains' worth of small publishes (the client takes in receipts every
            // 256 KiB written), so a steady publisher rarely waits.
            outbound_capacity: 16_384,
            outbound_capacity_bytes: 16 << 20,
            on_full: OnFull::Block,
        }
    }
}

impl ReconnectOptions {
    pub(super) fn validate(&self) -> Result<(), ClientError> {
        if self.initial_backoff.is_zero() {
            return Err(ClientError::InvalidArgument(
                "initial_backoff must not be zero",
            ));
        }
        if self.max_backoff < self.initial_backoff {
            return Err(ClientError::InvalidArgument(
                "max_backoff must be at least initial_backoff",
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(ClientError::InvalidArgument(
                "jitter must be between 0.0 and 1.0",
            ));
        }
        if self.outbound_capacity == 0 {
            return Err(ClientError::InvalidArgument(
                "outbound_capacity must not be zero",
            ));
        }
        Ok(())
    }
}

/// What [`ReconnectingClient::publish`](super::ReconnectingClient::publish) does when the outbound queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFull {
    /// Wait for receipts (reconnecting if need be) until there is room.
    #[default]
    Block,
    /// Take in what has arrived without waiting; if there is still no room, return
    /// [`ClientError::OutboundFull`].
    Error,
}

/// What a [`ReconnectingClient`](super::ReconnectingClient) has been through; figures since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconnectStats {
    /// Connections lost (each one starts a reconnection).
    pub disconnects: u64,
    /// Connection attempts after the first connection, successful or not.
    pub reconnect_attempts: u64,
    /// Connections lost because nothing arrived for the heartbeat timeout.
    pub heartbeat_timeouts: u64,
    /// WELCOME RESUMED received.
    pub resumes: u64,
    /// WELCOME LOST received.
    pub losses: u64,
    /// Sum of the `missed` counts the server gave with LOST (when it knew them).
    pub missed: u64,
    /// DELIVER frames received, duplicates included.
    pub deliveries: u64,
    /// DELIVER frames flagged REDELIVERED (sent before on an earlier connection).
    pub redelivered: u64,
    /// Deliveries dropped because their seq had been received before.
    pub duplicates_dropped: u64,
    /// Deliveries whose seq skipped ahead of the last one + 1 (0 unless the server loses
    /// in-flight messages).
    pub seq_gaps: u64,
    /// Publishes sent again after RESUMED.
    pub publishes_resent: u64,
    /// Publishes published again in a new session after LOST.
    pub publishes_republished: u64,
}
