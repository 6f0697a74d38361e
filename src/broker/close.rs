//! Why a connection or session ends.

use std::fmt;

use crate::protocol::ErrorCode;

/// Why a connection closed (nats `ClosedState`, quinn `ConnectionError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The server sent GOODBYE with this code (overflow, shutdown, BYE, heartbeat ...).
    Goodbye(ErrorCode),
    /// An I/O error on the socket (reset, write failure).
    IoError,
    /// The peer closed cleanly between frames.
    PeerClosed,
    /// The server sent a fatal ERROR with this code (bad input).
    ProtocolError(ErrorCode),
    /// The peer closed in the middle of a frame.
    TruncatedFrame,
}

impl CloseReason {
    /// Name used in metrics and logs: the error code's name, or `PEER_CLOSED`,
    /// `TRUNCATED_FRAME`, `IO_ERROR`.
    pub fn name(&self) -> &'static str {
        match self {
            CloseReason::Goodbye(code) | CloseReason::ProtocolError(code) => code.name(),
            CloseReason::IoError => "IO_ERROR",
            CloseReason::PeerClosed => "PEER_CLOSED",
            CloseReason::TruncatedFrame => "TRUNCATED_FRAME",
        }
    }

    /// Index into the per-reason close counters.
    pub(crate) fn counter_index(&self) -> usize {
        match self {
            CloseReason::Goodbye(code) | CloseReason::ProtocolError(code) => {
                ErrorCode::ALL.iter().position(|c| c == code).unwrap_or(0)
            }
            CloseReason::IoError => ErrorCode::ALL.len(),
            CloseReason::PeerClosed => ErrorCode::ALL.len() + 1,
            CloseReason::TruncatedFrame => ErrorCode::ALL.len() + 2,
        }
    }

    /// Name for a counter index (inverse of `counter_index`).
    pub(crate) fn counter_name(index: usize) -> &'static str {
        match ErrorCode::ALL.get(index) {
            Some(code) => code.name(),
            None => match index - ErrorCode::ALL.len() {
                0 => "IO_ERROR",
                1 => "PEER_CLOSED",
                _ => "TRUNCATED_FRAME",
            },
        }
    }
}

/// Number of distinct close counters.
pub(crate) const CLOSE_COUNTERS: usize = ErrorCode::ALL.len() + 3;

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
