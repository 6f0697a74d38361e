//! The frame header: length prefix, version byte and op code.
//!
//! Layout: protocol.md §Framing.
//!
//! ```text
//! offset size type   field
//! 0      4    u32 BE length  bytes after this field: 2 (header) + body length
//! 4      1    u8     version 0x01
//! 5      1    u8     op      see Op
//! 6      n    bytes  body    n = length - 2
//! ```

use byteorder::{BigEndian, ByteOrder};

use super::error::DecodeError;

/// Byte ranges of the header fields (smoltcp style): the layout is declared here once.
pub mod field {
    use std::ops::Range;

    /// Length of everything after the length prefix, u32 big-endian.
    pub const LEN: Range<usize> = 0..4;
    /// Protocol version byte.
    pub const VERSION: usize = 4;
    /// Op code byte.
    pub const OP: usize = 5;
    /// First body byte.
    pub const BODY: usize = 6;
}

/// Size of the length prefix in bytes.
pub const LEN_PREFIX_LEN: usize = 4;
/// Size of the version and op bytes that follow the length prefix.
pub const HEADER_LEN: usize = 2;

macro_rules! ops {
    ($($(#[$doc:meta])* $name:ident = $value:literal $wire:literal,)*) => {
        /// Frame op codes. Client-to-server ops are below 0x80, server-to-client ops are 0x80
        /// and above; PING and PONG go both ways.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Op {
            $($(#[$doc])* $name = $value,)*
        }

        impl Op {
            /// Every op, in code order.
            pub const ALL: &'static [Op] = &[$(Op::$name,)*];

            /// The op for a code byte, if it is one.
            pub fn from_u8(value: u8) -> Option<Op> {
                match value {
                    $($value => Some(Op::$name),)*
                    _ => None,
                }
            }

            /// The op's name as written in protocol.md (`HELLO`, `STATS_REPLY`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Op::$name => $wire,)*
                }
            }
        }
    };
}

ops! {
    /// Client opens a session (or resumes one).
    Hello = 0x01 "HELLO",
    /// Client publishes a message.
    Publish = 0x02 "PUBLISH",
    /// Client subscribes to a queue's events.
    Subscribe = 0x03 "SUBSCRIBE",
    /// Client removes a subscription.
    Unsubscribe = 0x04 "UNSUBSCRIBE",
    /// Client acknowledges deliveries.
    Ack = 0x05 "ACK",
    /// Either side asks for a PONG.
    Ping = 0x06 "PING",
    /// Answer to PING.
    Pong = 0x07 "PONG",
    /// Client ends its session.
    Bye = 0x08 "BYE",
    /// Client asks for the introspection report.
    Stats = 0x09 "STATS",
    /// Server accepts HELLO.
    Welcome = 0x81 "WELCOME",
    /// Server delivers a message.
    Deliver = 0x82 "DELIVER",
    /// Server confirms publishes up to a sequence number.
    Receipt = 0x83 "RECEIPT",
    /// Server confirms a SUBSCRIBE.
    Subscribed = 0x84 "SUBSCRIBED",
    /// Server confirms an UNSUBSCRIBE.
    Unsubscribed = 0x85 "UNSUBSCRIBED",
    /// Server reports an error.
    Error = 0x86 "ERROR",
    /// Server ends the session and closes the connection.
    Goodbye = 0x87 "GOODBYE",
    /// Server answers STATS.
    StatsReply = 0x88 "STATS_REPLY",
    /// Server tells a session that messages queued for it were dropped without closing it
    /// (sent only to a client whose HELLO set EXTENSIONS).
    Dropped = 0x89 "DROPPED",
}

/// A checked frame header: the length field has been bounded, the version and op are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Bytes after the length prefix (header + body); `2 ≤ len ≤ max_frame_len`.
    pub len: u32,
    /// The frame's op.
    pub op: Op,
}

impl FrameHeader {
    /// Total bytes of the frame on the wire, length prefix included.
    pub fn wire_len(&self) -> usize {
        LEN_PREFIX_LEN + self.len as usize
    }

    /// Body length in bytes.
    pub fn body_len(&self) -> usize {
        self.len as usize - HEADER_LEN
    }

    /// Checks the header at the start of `buf` without waiting for the body.
    ///
    /// Returns `Ok(None)` when fewer header bytes than needed are present. The length is
    /// checked as soon as its 4 bytes are there, the version and op as soon as theirs are.
    ///
    /// # Errors
    /// [`DecodeError::FrameTooShort`], [`DecodeError::FrameTooLarge`],
    /// [`DecodeError::UnsupportedVersion`] or [`DecodeError::UnknownOp`].
    pub fn check(buf: &[u8], max_frame_len: u32) -> Result<Option<FrameHeader>, DecodeError> {
        let Some(len_bytes) = buf.get(field::LEN) else {
            return Ok(None);
        };
        let len = BigEndian::read_u32(len_bytes);
        if len < HEADER_LEN as u32 {
            return Err(DecodeError::FrameTooShort { len });
        }
        if len > max_frame_len {
            return Err(DecodeError::FrameTooLarge {
                len,
                max: max_frame_len,
            });
        }
        let Some(&version) = buf.get(field::VERSION) else {
            return Ok(None);
        };
        if version != super::VERSION {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let Some(&op) = buf.get(field::OP) else {
            return Ok(None);
        };
        let Some(op) = Op::from_u8(op) else {
            return Err(DecodeError::UnknownOp { op });
        };
        Ok(Some(FrameHeader { len, op }))
    }

    /// Appends this header (length prefix, version, op) to `out`.
    pub fn write(op: Op, body_len: usize, out: &mut Vec<u8>) {
        // body_len is bounded by the encoders (names ≤ 255, payloads checked against
        // u32::MAX); saturate rather than wrap if a caller passes something absurd.
        let len = u32::try_from(body_len + HEADER_LEN).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.push(super::VERSION);
        out.push(op as u8);
    }
}
