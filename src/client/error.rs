//! [`ClientError`], and the record of why a client's connection ended.
//!
//! Which errors leave the client usable is part of the contract: [`ClientError::Timeout`],
//! [`ClientError::InvalidArgument`], [`ClientError::Encode`], [`ClientError::FrameTooLarge`] and
//! a [`ClientError::Server`] that is not `fatal` change nothing on the connection. Every other
//! error ends it, and each later call returns the same error again. A plain `Client` does not
//! reconnect; [`ReconnectingClient`](super::ReconnectingClient) does, and reports only the
//! errors it cannot recover from.

use std::{fmt, io};

use crate::protocol::sniff::{foreign_protocol, ForeignProtocol};
use crate::protocol::{DecodeError, EncodeError, ErrorCode};

/// Why a [`Client`](super::Client) call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The server closed the connection without a GOODBYE or ERROR first.
    Closed,
    /// The server sent bytes that are not a valid frame; the connection is dropped.
    Decode(DecodeError),
    /// A frame could not be encoded (a name over 255 bytes, more than 65,535 acked seqs).
    /// Nothing was sent.
    Encode(EncodeError),
    /// The frame would be longer than the server's `max_frame_len` (from WELCOME), which would
    /// make the server close the session. Nothing was sent.
    FrameTooLarge {
        /// The frame's length field: bytes after the 4-byte length prefix.
        len: usize,
        /// The limit in force.
        max: u32,
    },
    /// The server ended the session with GOODBYE (QUEUE_OVERFLOW, SLOW_CONSUMER,
    /// SERVER_SHUTDOWN, HEARTBEAT_TIMEOUT, ...).
    Goodbye {
        /// The reason code; `Err(n)` keeps a number this crate does not know.
        code: Result<ErrorCode, u16>,
        /// The server's text.
        text: String,
    },
    /// The call's arguments would make the server end the session (an empty queue name, an
    /// ack of a delivery never received, ...), so it was refused locally. Nothing was sent.
    InvalidArgument(&'static str),
    /// A socket operation failed; the connection is dropped.
    Io(io::Error),
    /// The server sent ERROR. In v1 every ERROR is fatal: the server closes the connection.
    Server {
        /// The error code; `Err(n)` keeps a number this crate does not know.
        code: Result<ErrorCode, u16>,
        /// True when the server closes the connection after the error.
        fatal: bool,
        /// The publish sequence number the error concerns, or 0.
        ref_seq: u64,
        /// The server's text.
        text: String,
    },
    /// The wait set by [`ClientOptions::timeout`](super::ClientOptions::timeout) (or passed to
    /// the call) ran out. The client stays usable; a reply that arrives later is recognised
    /// and skipped.
    Timeout,
    /// The server sent a frame that makes no sense here (a client-to-server op, a second
    /// WELCOME, ...); the connection is dropped. Carries the op's protocol.md name.
    UnexpectedFrame(&'static str),
    /// [`ReconnectingClient`](super::ReconnectingClient) with [`OnFull::Error`]: the outbound
    /// queue of publishes not yet receipted is full. Nothing was buffered; try again once
    /// receipts have come in (any call that reads takes them in).
    ///
    /// [`OnFull::Error`]: super::OnFull::Error
    OutboundFull,
    /// [`ReconnectingClient`](super::ReconnectingClient) tried to reconnect for longer than
    /// [`ReconnectOptions::give_up_after`](super::ReconnectOptions::give_up_after).
    GaveUp {
        /// Connection attempts made since the connection was lost.
        attempts: u32,
        /// Why the last attempt (or the connection) failed.
        last_error: String,
    },
    /// The server answered in another protocol (a TLS listener reached without TLS, an HTTP
    /// server): the address is wrong or needs TLS. The connection is dropped.
    WrongProtocol(ForeignProtocol),
}

impl ClientError {
    /// True when the connection has ended and every later call will fail too.
    pub fn is_fatal(&self) -> bool {
        match self {
            ClientError::Encode(_)
            | ClientError::FrameTooLarge { .. }
            | ClientError::InvalidArgument(_)
            | ClientError::OutboundFull
            | ClientError::Timeout => false,
            ClientError::Server { fatal, .. } => *fatal,
            ClientError::Closed
            | ClientError::Decode(_)
            | ClientError::GaveUp { .. }
            | ClientError::Goodbye { .. }
            | ClientError::Io(_)
            | ClientError::UnexpectedFrame(_)
            | ClientError::WrongProtocol(_) => true,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Closed => write!(f, "the server closed the connection"),
            ClientError::Decode(e) => write!(f, "bad frame from the server: {e}"),
            ClientError::Encode(e) => write!(f, "cannot encode the frame: {e}"),
            ClientError::FrameTooLarge { len, max } => write!(
                f,
                "frame length {len} exceeds the server's max_frame_len of {max}"
            ),
            ClientError::Goodbye { code, text } => {
                write!(f, "the server ended the session: {}", CodeName(*code))?;
                write_text(f, text)
            }
            ClientError::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            ClientError::Io(e) => write!(f, "I/O error: {e}"),
            ClientError::Server {
                code,
                ref_seq,
                text,
                ..
            } => {
                write!(f, "server error {}", CodeName(*code))?;
                if *ref_seq != 0 {
                    write!(f, " (publish seq {ref_seq})")?;
                }
                write_text(f, text)
            }
            ClientError::Timeout => write!(f, "timed out waiting for the server"),
            ClientError::UnexpectedFrame(op) => write!(f, "unexpected {op} frame from the server"),
            ClientError::OutboundFull => {
                write!(f, "the outbound queue of unreceipted publishes is full")
            }
            ClientError::GaveUp {
                attempts,
                last_error,
            } => write!(
                f,
                "gave up reconnecting after {attempts} attempts; last error: {last_error}"
            ),
            ClientError::WrongProtocol(foreign) => write!(f, "{foreign}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Decode(e) => Some(e),
            ClientError::Encode(e) => Some(e),
            ClientError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Why the connection ended, kept so that every later call can report it again.
#[derive(Clone, Debug)]
pub(super) enum CloseCause {
    Decode(DecodeError),
    Foreign(ForeignProtocol),
    Eof,
    Goodbye {
        code: Result<ErrorCode, u16>,
        text: String,
    },
    Io(io::ErrorKind, String),
    Server {
        code: Result<ErrorCode, u16>,
        ref_seq: u64,
        text: String,
    },
    Unexpected(&'static str),
    GaveUp {
        attempts: u32,
        last_error: String,
    },
}

impl CloseCause {
    /// The cause for a decode error of the stream starting with `bytes`: another protocol
    /// when the bytes show one (a TLS alert, an HTTP response), else the decode error.
    pub(super) fn decode(error: DecodeError, bytes: &[u8]) -> CloseCause {
        match foreign_protocol(bytes) {
            Some(foreign) => CloseCause::Foreign(foreign),
            None => CloseCause::Decode(error),
        }
    }

    /// The cause behind an error that ended a connection, so that it can be reported again;
    /// `None` for the errors that leave a connection usable.
    pub(super) fn from_error(error: &ClientError) -> Option<CloseCause> {
        Some(match error {
            ClientError::Closed => CloseCause::Eof,
            ClientError::Decode(e) => CloseCause::Decode(*e),
            ClientError::WrongProtocol(p) => CloseCause::Foreign(*p),
            ClientError::GaveUp {
                attempts,
                last_error,
            } => CloseCause::GaveUp {
                attempts: *attempts,
                last_error: last_error.clone(),
            },
            ClientError::Goodbye { code, text } => CloseCause::Goodbye {
                code: *code,
                text: text.clone(),
            },
            ClientError::Io(e) => CloseCause::io(e),
            ClientError::Server {
                code,
                fatal: true,
                ref_seq,
                text,
            } => CloseCause::Server {
                code: *code,
                ref_seq: *ref_seq,
                text: text.clone(),
            },
            ClientError::UnexpectedFrame(op) => CloseCause::Unexpected(op),
            ClientError::Encode(_)
            | ClientError::FrameTooLarge { .. }
            | ClientError::InvalidArgument(_)
            | ClientError::OutboundFull
            | ClientError::Server { .. }
            | ClientError::Timeout => return None,
        })
    }

    /// Records an I/O error (io::Error is not Clone, so its kind and message are kept).
    pub(super) fn io(error: &io::Error) -> CloseCause {
        CloseCause::Io(error.kind(), error.to_string())
    }

    /// The error a call reports for this cause.
    pub(super) fn to_error(&self) -> ClientError {
        match self {
            CloseCause::Decode(e) => ClientError::Decode(*e),
            CloseCause::Foreign(p) => ClientError::WrongProtocol(*p),
            CloseCause::Eof => ClientError::Closed,
            CloseCause::Goodbye { code, text } => ClientError::Goodbye {
                code: *code,
                text: text.clone(),
            },
            CloseCause::Io(kind, message) => {
                ClientError::Io(io::Error::new(*kind, message.clone()))
            }
            CloseCause::Server {
                code,
                ref_seq,
                text,
            } => ClientError::Server {
                code: *code,
                fatal: true,
                ref_seq: *ref_seq,
                text: text.clone(),
            },
            CloseCause::Unexpected(op) => ClientError::UnexpectedFrame(op),
            CloseCause::GaveUp {
                attempts,
                last_error,
            } => ClientError::GaveUp {
                attempts: *attempts,
                last_error: last_error.clone(),
            },
        }
    }
}

/// Shows a wire code by its protocol.md name, or in hex when this crate does not know it.
struct CodeName(Result<ErrorCode, u16>);

impl fmt::Display for CodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(code) => f.write_str(code.name()),
            Err(n) => write!(f, "0x{n:04X}"),
        }
    }
}

fn write_text(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    if text.is_empty() {
        Ok(())
    } else {
        write!(f, ": {text}")
    }
}
