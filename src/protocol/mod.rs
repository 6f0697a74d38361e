//! Wire protocol v1: pure bytes ⇄ frames.
//!
//! This module owns the byte layout of every frame, the version byte, the op codes, the error
//! codes and the frame limits. It mirrors `protocol.md` field by field; a change to one is a
//! change to the other, in the same commit.
//!
//! It must not touch sockets, broker state, the clock or the logger. Decoding never panics and
//! never allocates: [`codec::decode`] returns borrowed [`Frame`] views into the caller's buffer,
//! `Ok(None)` when more bytes are needed, and a [`DecodeError`] as soon as the 6-byte header shows
//! the frame is bad (before any body byte is waited for).
//!
//! Layout: protocol.md §Framing.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod codec;
pub mod error;
pub mod frame;
pub mod header;
pub mod proxy;
pub mod sniff;
pub mod stats;

pub use codec::{decode, fuzz_decode, EncodeError};
pub use error::{DecodeError, ErrorCode};
pub use frame::{
    Ack, AckSeqs, Auth, AuthMethod, Deliver, ErrorFrame, Frame, Goodbye, Hello, Publish, Resume,
    Start, Subscription, Welcome, MAX_AUTH_SECRET_LEN,
};
pub use header::{Op, HEADER_LEN, LEN_PREFIX_LEN};

/// The protocol version this crate speaks, carried in every frame header.
pub const VERSION: u8 = 0x01;

/// Default upper bound of a frame's length field (bytes after the length prefix) once HELLO
/// has been accepted: 1 MiB.
pub const MAX_FRAME_LEN: u32 = 1_048_576;

/// Default upper bound of a frame's length field before HELLO has been accepted: 4 KiB.
/// A HELLO is at most 1 + 4 + 1 + 255 + 40 + (1 + 1 + 255 + 2 + 2,048) = 2,608 bytes of body,
/// so this leaves room to spare while keeping unauthenticated connections cheap.
pub const MAX_FRAME_LEN_BEFORE_HELLO: u32 = 4_096;

/// Longest queue, event, conflation key or client name, in bytes (names carry a u8 length).
pub const MAX_NAME_LEN: usize = 255;

/// Length of the resume token in WELCOME and HELLO, in bytes.
pub const RESUME_TOKEN_LEN: usize = 16;
#[cfg(test)]
mod tests;
