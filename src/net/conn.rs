//! One TCP connection: socket, partial-frame read buffer, write buffer with a sent cursor.
//!
//! Buffers are allocated on demand: an idle connection holds no read bytes (reads go through
//! the loop's shared scratch buffer and only a partial frame is copied here) and an empty
//! write buffer is shrunk back after a burst, so idle connections stay small.

use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

/// Write buffers that grew past this during a burst are shrunk back once drained.
pub(crate) const KEEP_BUFFER_BYTES: usize = 256 * 1024;

#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    /// Bytes of an incomplete frame carried to the next read; bounded by the frame limit in
    /// force plus one scratch read.
    pub(crate) read_buf: Vec<u8>,
    /// Encoded frames to send; `write_buf[sent..]` is still unsent.
    pub(crate) write_buf: Vec<u8>,
    pub(crate) sent: usize,
    /// mio reported writable and no write has hit WouldBlock since.
    pub(crate) is_writable: bool,
    /// The listener requires a PROXY protocol header and it has not been read yet; bytes
    /// collect in `read_buf` until it is complete.
    pub(crate) is_awaiting_proxy_header: bool,
    /// Already on the loop's flush list this turn.
    pub(crate) is_queued_for_flush: bool,
    /// Set once the connection is closing: its final bytes are written, the write side is
    /// shut, and incoming bytes are discarded until EOF or this deadline (lingering close, so
    /// the peer reads the ERROR/GOODBYE instead of a reset).
    pub(crate) linger_until: Option<Instant>,
}

impl Connection {
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr) -> Connection {
        Connection {
            stream,
            peer,
            read_buf: Vec::new(),
            write_buf: Vec::new(),
            sent: 0,
            is_writable: false,
            is_awaiting_proxy_header: false,
            is_queued_for_flush: false,
            linger_until: None,
        }
    }

    pub(crate) fn has_unsent(&self) -> bool {
        self.sent < self.write_buf.len()
    }

    /// Resets the write buffer after everything was sent.
    pub(crate) fn reset_write_buf(&mut self) {
        self.write_buf.clear();
        self.sent = 0;
        if self.write_buf.capacity() > KEEP_BUFFER_BYTES {
            self.write_buf.shrink_to(KEEP_BUFFER_BYTES);
        }
    }
}
