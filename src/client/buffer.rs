//! The client's read and write buffers: allocated once, reused, never shrunk.
//!
//! `ReadBuf` holds bytes read from the socket in `start..end`; decoding borrows from it and
//! advances `start`. It grows only to fit a frame whose header has been checked against the
//! decode limit, so its size is bounded by that limit plus one read chunk.
//!
//! `WriteBuf` holds encoded frames not yet written, with a `sent` cursor for partial writes
//! (redis `bufpos`/`sentlen`): a write that times out leaves the rest for the next flush, so
//! the stream never carries half a frame followed by another.

use crate::protocol::codec::encode_ack;
use crate::protocol::{EncodeError, LEN_PREFIX_LEN};

use super::ClientError;

/// Bytes read from the socket and not yet decoded.
#[derive(Debug)]
pub(super) struct ReadBuf {
    /// Zero-filled storage; its length is the capacity in use.
    bytes: Vec<u8>,
    /// First byte not yet decoded; always ≤ `end`.
    start: usize,
    /// One past the last byte read; always ≤ `bytes.len()`.
    end: usize,
}

impl ReadBuf {
    pub(super) fn new() -> ReadBuf {
        ReadBuf {
            bytes: vec![0; INITIAL_READ_BUF_BYTES],
            start: 0,
            end: 0,
        }
    }

    /// The bytes not yet decoded.
    pub(super) fn data(&self) -> &[u8] {
        // start ≤ end ≤ bytes.len() is kept by every method below.
        &self.bytes[self.start..self.end]
    }

    /// Marks `n` bytes at the front as decoded; `n` ≤ `data().len()`.
    pub(super) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Makes room for a read: at least [`MIN_READ_CHUNK_BYTES`] free at the tail, and room for
    /// the whole of the frame at the front, which is `frame_len` bytes on the wire (0 if its
    /// header is not complete yet). `frame_len` must come from a header checked against the
    /// decode limit: it is the only thing this buffer grows for.
    pub(super) fn reserve(&mut self, frame_len: usize) {
        self.compact_if_short(frame_len);
        let needed = frame_len.max(self.end + MIN_READ_CHUNK_BYTES);
        if needed > self.bytes.len() {
            self.bytes.resize(needed, 0);
        }
    }

    /// Moves the undecoded bytes to the front when the free tail is below a read chunk, without
    /// growing. Used before opportunistic reads, which must not make the buffer bigger.
    pub(super) fn compact_if_short(&mut self, frame_len: usize) {
        let free = self.bytes.len() - self.end;
        if self.start > 0
            && (free < MIN_READ_CHUNK_BYTES || self.start + frame_len > self.bytes.len())
        {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// The free tail to read into.
    pub(super) fn spare_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.end..]
    }

    /// Marks `n` bytes of the free tail as read.
    pub(super) fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.bytes.len());
    }
}

/// Encoded frames waiting to be written.
#[derive(Debug)]
pub(super) struct WriteBuf {
    bytes: Vec<u8>,
    /// Bytes of `bytes` already written; always ≤ `bytes.len()`.
    sent: usize,
    /// Offset and `up_to` of an ACK without listed seqs that is the last frame in `bytes` and
    /// not yet (partly) written, so a newer cumulative ack can replace it.
    trailing_ack: Option<(usize, u64)>,
}

impl WriteBuf {
    pub(super) fn new() -> WriteBuf {
        WriteBuf {
            bytes: Vec::with_capacity(FLUSH_THRESHOLD_BYTES * 2),
            sent: 0,
            trailing_ack: None,
        }
    }

    /// Bytes encoded and not yet written.
    pub(super) fn unsent(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    /// Records that `n` more bytes were written.
    pub(super) fn advance(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.bytes.len());
        if self.sent == self.bytes.len() {
            self.bytes.clear();
            self.sent = 0;
            self.trailing_ack = None;
        }
    }

    /// Appends one frame produced by `encode`, refusing it if its length field would exceed
    /// `max_frame_len`. On error nothing is appended.
    ///
    /// # Errors
    /// [`ClientError::Encode`] from the encoder, [`ClientError::FrameTooLarge`].
    pub(super) fn push(
        &mut self,
        max_frame_len: u32,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<(), ClientError> {
        let before = self.bytes.len();
        if let Err(e) = encode(&mut self.bytes) {
            self.bytes.truncate(before);
            return Err(ClientError::Encode(e));
        }
        let len = self.bytes.len() - before - LEN_PREFIX_LEN;
        if len > max_frame_len as usize {
            self.bytes.truncate(before);
            return Err(ClientError::FrameTooLarge {
                len,
                max: max_frame_len,
            });
        }
        self.trailing_ack = None;
        Ok(())
    }

    /// Appends a cumulative ACK, or raises the `up_to` of the ACK already at the tail: ACK
    /// `up_to` is cumulative, so one frame says what several would.
    pub(super) fn push_cumulative_ack(&mut self, up_to: u64) {
        let (at, up_to) = match self.trailing_ack {
            Some((at, previous)) if at >= self.sent => {
                self.bytes.truncate(at);
                (at, previous.max(up_to))
            }
            _ => (self.bytes.len(), up_to),
        };
        // Cannot fail: no listed seqs, and a 16-byte frame is under any max_frame_len the
        // client accepts.
        if encode_ack(up_to, &[], &mut self.bytes).is_ok() {
            self.trailing_ack = Some((at, up_to));
        }
    }
}

/// Encoded bytes after which publishes and acks flush on their own. 64 KiB amortizes the
/// write syscall over hundreds of small messages while staying well under a socket buffer.
pub(super) const FLUSH_THRESHOLD_BYTES: usize = 64 * 1024;

/// Initial read buffer: a few hundred small frames per read syscall.
const INITIAL_READ_BUF_BYTES: usize = 64 * 1024;

/// The least free space a blocking read is given, so reads stay large.
const MIN_READ_CHUNK_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_buf_grows_only_to_the_frame_it_is_asked_to_fit() {
        let mut buf = ReadBuf::new();
        buf.reserve(200_000);
        assert!(buf.spare_mut().len() >= 200_000);
        let mut small = ReadBuf::new();
        small.reserve(10);
        assert_eq!(small.spare_mut().len(), INITIAL_READ_BUF_BYTES);
    }

    #[test]
    fn read_buf_compacts_before_growing() {
        let mut buf = ReadBuf::new();
        let n = buf.spare_mut().len();
        buf.filled(n);
        buf.consume(n - 10);
        buf.reserve(0);
        assert_eq!(buf.data().len(), 10);
        assert_eq!(buf.spare_mut().len(), INITIAL_READ_BUF_BYTES - 10);
    }

    #[test]
    fn consecutive_cumulative_acks_become_one_frame() {
        let mut buf = WriteBuf::new();
        buf.push_cumulative_ack(3);
        buf.push_cumulative_ack(7);
        buf.push_cumulative_ack(5);
        let mut expected = Vec::new();
        encode_ack(7, &[], &mut expected).unwrap();
        assert_eq!(buf.unsent(), &expected[..]);
    }

    #[test]
    fn an_ack_partly_written_is_not_rewritten() {
        let mut buf = WriteBuf::new();
        buf.push_cumulative_ack(3);
        buf.advance(2);
        buf.push_cumulative_ack(7);
        let mut expected = Vec::new();
        encode_ack(3, &[], &mut expected).unwrap();
        encode_ack(7, &[], &mut expected).unwrap();
        assert_eq!(buf.unsent(), &expected[2..]);
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_and_not_kept() {
        let mut buf = WriteBuf::new();
        let err = buf
            .push(10, |out| {
                out.extend_from_slice(&[0, 0, 0, 20]);
                out.extend_from_slice(&[0; 20]);
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(
            err,
            ClientError::FrameTooLarge { len: 20, max: 10 }
        ));
        assert!(buf.unsent().is_empty());
    }
}
