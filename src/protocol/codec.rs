//! Decoding and encoding of whole frames.
//!
//! `decode` is check-then-parse (mini-redis): [`FrameHeader::check`] bounds the length and
//! validates version and op from the first 6 bytes; only then is the body awaited and parsed.
//! "Need more bytes" is `Ok(None)`, never an error. Encoders append to a caller-owned `Vec<u8>`
//! so the caller decides where bytes go and reuses its buffers.
//!
//! `decode.rs` holds the decoder (header check, then body parse), `encode.rs` the encoders.

mod decode;
mod encode;

pub use decode::{decode, fuzz_decode};
pub use encode::*;
