//! Error codes (shared by ERROR, GOODBYE and WELCOME's lost reason) and decode errors.
//!
//! The code table is declared once, in the `errors!` invocation below, in the same order as the
//! table in protocol.md §Error codes. A unit test parses that table and compares it with
//! [`ErrorCode::ALL`], so the two cannot drift.

use std::fmt;

macro_rules! errors {
    ($($name:ident($value:literal) $wire:literal $desc:literal,)*) => {
        /// A numeric code sent in ERROR, GOODBYE and WELCOME (lost reason).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum ErrorCode {
            $(#[doc = $desc] $name = $value,)*
        }

        impl ErrorCode {
            /// Every code, in protocol.md order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The code for a number, if it is one.
            pub fn from_u16(value: u16) -> Option<ErrorCode> {
                match value {
                    $($value => Some(ErrorCode::$name),)*
                    _ => None,
                }
            }

            /// The code's name as written in protocol.md (`QUEUE_OVERFLOW`).
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $wire,)*
                }
            }

            /// One-line description, as in protocol.md.
            pub fn description(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $desc,)*
                }
            }
        }
    };
}

errors! {
    MalformedFrame(0x0001) "MALFORMED_FRAME" "the frame body does not match the layout of its op",
    UnknownOp(0x0002) "UNKNOWN_OP" "the op code is unknown or not valid from a client",
    FrameTooLarge(0x0003) "FRAME_TOO_LARGE" "the length field exceeds the maximum frame length in force",
    FrameTooShort(0x0004) "FRAME_TOO_SHORT" "the length field is below 2 (zero included)",
    UnsupportedVersion(0x0005) "UNSUPPORTED_VERSION" "the version byte is not a version this server speaks",
    HelloRequired(0x0006) "HELLO_REQUIRED" "a frame other than HELLO arrived before HELLO",
    DuplicateHello(0x0007) "DUPLICATE_HELLO" "a second HELLO arrived on the same connection",
    InvalidName(0x0008) "INVALID_NAME" "a queue name is empty, or an event name is missing or present against the ALL_EVENTS flag",
    UnknownAckSeq(0x0009) "UNKNOWN_ACK_SEQ" "an ACK names a delivery sequence number that was never sent",
    PublishSeqGap(0x000A) "PUBLISH_SEQ_GAP" "a PUBLISH sequence number skips ahead of the next expected one",
    HandshakeTimeout(0x000B) "HANDSHAKE_TIMEOUT" "no HELLO arrived within the handshake timeout",
    QueueOverflow(0x000C) "QUEUE_OVERFLOW" "the session's queue would exceed max_queue_depth or max_queue_bytes",
    SlowConsumer(0x000D) "SLOW_CONSUMER" "the connection's write buffer exceeded its hard limit",
    ServerShutdown(0x000E) "SERVER_SHUTDOWN" "the server is shutting down",
    ClientBye(0x000F) "CLIENT_BYE" "the client sent BYE; the session ended normally",
    ServerBusy(0x0010) "SERVER_BUSY" "the server is at max_connections",
    LimitExceeded(0x0011) "LIMIT_EXCEEDED" "a configured limit was reached (max_queues, max_subscriptions, max_payload_len)",
    HeartbeatTimeout(0x0012) "HEARTBEAT_TIMEOUT" "nothing was received from the client within heartbeat_timeout",
    SessionUnknown(0x0013) "SESSION_UNKNOWN" "the session to resume does not exist here, or the resume token is wrong",
    SessionExpired(0x0014) "SESSION_EXPIRED" "the session stayed detached longer than reconnect_keep_alive_ms and was closed",
    TakenOver(0x0015) "TAKEN_OVER" "another connection resumed this session",
    ResendGap(0x0016) "RESEND_GAP" "the client can no longer resend publishes the server has not accepted",
    ServerRestarted(0x0017) "SERVER_RESTARTED" "the session belongs to an earlier run of the server",
    ResumeInvalid(0x0018) "RESUME_INVALID" "the resume block contradicts the session's state",
    ProxyRejected(0x0019) "PROXY_REJECTED" "a PROXY protocol header was missing, malformed, too long, or sent by an untrusted address",
    AuthRequired(0x001A) "AUTH_REQUIRED" "this listener requires authentication and HELLO carried none",
    AuthFailed(0x001B) "AUTH_FAILED" "the credentials were not accepted",
    NotAuthorized(0x001C) "NOT_AUTHORIZED" "the session may not publish to / subscribe to this queue, or use STATS",
    StorageFailed(0x001D) "STORAGE_FAILED" "a durable queue's journal could not write a published message (disk full, I/O error); it was not receipted",
    MemoryLimit(0x001E) "MEMORY_LIMIT" "the server is over max_memory_bytes and closed one of its largest consumers",
    SessionEvicted(0x001F) "SESSION_EVICTED" "a detached session was ended to make room for a newer one of the same identity or address",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (0x{:04X}): {}",
            self.name(),
            *self as u16,
            self.description()
        )
    }
}

/// What is wrong with the bytes of a frame. Every variant maps to an [`ErrorCode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The length field is below 2.
    FrameTooShort {
        /// The length field as read.
        len: u32,
    },
    /// The length field exceeds the limit in force.
    FrameTooLarge {
        /// The length field as read.
        len: u32,
        /// The limit in force.
        max: u32,
    },
    /// The version byte is not [`super::VERSION`].
    UnsupportedVersion {
        /// The version byte as read.
        version: u8,
    },
    /// The op code is unknown.
    UnknownOp {
        /// The op byte as read.
        op: u8,
    },
    /// The body does not match the op's layout.
    Malformed {
        /// The op whose body was being read.
        op: super::Op,
        /// Which field or rule failed.
        what: &'static str,
    },
}

impl DecodeError {
    /// The wire code that reports this error to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::FrameTooShort { .. } => ErrorCode::FrameTooShort,
            DecodeError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            DecodeError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            DecodeError::UnknownOp { .. } => ErrorCode::UnknownOp,
            DecodeError::Malformed { .. } => ErrorCode::MalformedFrame,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::FrameTooShort { len } => write!(f, "frame length {len} is below 2"),
            DecodeError::FrameTooLarge { len, max } => {
                write!(f, "frame length {len} exceeds the limit of {max}")
            }
            DecodeError::UnsupportedVersion { version } => {
                write!(f, "unsupported protocol version 0x{version:02X}")
            }
            DecodeError::UnknownOp { op } => write!(f, "unknown op 0x{op:02X}"),
            DecodeError::Malformed { op, what } => write!(f, "malformed {}: {what}", op.name()),
        }
    }
}

impl std::error::Error for DecodeError {}
