//! One client connection as the loop sees it: its transport (socket and layers), its write
//! buffer with a sent cursor, and its readiness. What the bytes mean is the broker's.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use super::transport::Transport;

/// Write buffers that grew past this during a burst are shrunk back once drained.
pub(crate) const KEEP_BUFFER_BYTES: usize = 256 * 1024;

#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) transport: Transport,
    /// The socket's peer (the broker keeps the address a PROXY header named).
    pub(crate) peer: SocketAddr,
    /// Encoded frames to send; `write_buf[sent..]` is still unsent. Taken from the pool when
    /// there is something to send, given back once drained.
    pub(crate) write_buf: Vec<u8>,
    pub(crate) sent: usize,
    /// mio reported writable and no write has hit WouldBlock since.
    pub(crate) is_writable: bool,
    /// Already on the loop's flush list this turn.
    pub(crate) is_queued_for_flush: bool,
    /// Set once the connection is closing: its final bytes are written, the write side is
    /// shut, and incoming bytes are discarded until EOF or this deadline (lingering close, so
    /// the peer reads the ERROR/GOODBYE instead of a reset).
    pub(crate) linger_until: Option<Instant>,
}

impl Connection {
    pub(crate) fn new(transport: Transport, peer: SocketAddr) -> Connection {
        Connection {
            transport,
            peer,
            write_buf: Vec::new(),
            sent: 0,
            is_writable: false,
            is_queued_for_flush: false,
            linger_until: None,
        }
    }

    /// Hands `write_buf[sent..]` to the transport and advances `sent`.
    ///
    /// # Errors
    /// As `Write::write`; `WouldBlock` when the socket is full.
    pub(crate) fn write_unsent(&mut self) -> io::Result<usize> {
        let unsent = self.write_buf.get(self.sent..).unwrap_or_default();
        let n = self.transport.write(unsent)?;
        self.sent += n;
        Ok(n)
    }

    /// Resets the write buffer after everything was sent.
    pub(crate) fn reset_write_buf(&mut self) {
        self.write_buf.clear();
        self.sent = 0;
    }

    /// Hands the (drained) write buffer back to `pool`, so an idle connection holds none.
    pub(crate) fn release_write_buf(&mut self, pool: &mut BufferPool) {
        self.sent = 0;
        pool.put(std::mem::take(&mut self.write_buf));
    }
}

/// Write buffers shared by all connections: a connection takes one when it has something to
/// send and gives it back once everything is written, so memory follows the number of busy
/// connections, not open ones.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    free: Vec<Vec<u8>>,
}

/// Buffers kept for reuse; more are freed.
const POOLED_BUFFERS: usize = 64;

impl BufferPool {
    /// A cleared buffer with at least `capacity` bytes.
    pub(crate) fn take(&mut self, capacity: usize) -> Vec<u8> {
        match self.free.pop() {
            Some(buf) => buf,
            None => Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn put(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || self.free.len() >= POOLED_BUFFERS {
            return;
        }
        buf.clear();
        if buf.capacity() > KEEP_BUFFER_BYTES {
            buf.shrink_to(KEEP_BUFFER_BYTES);
        }
        self.free.push(buf);
    }
}
