//! One TCP connection: socket, partial-frame read buffer, write buffer with a sent cursor.
//!
//! Buffers are allocated on demand: an idle connection holds no read bytes (reads go through
//! the loop's shared scratch buffer and only a partial frame is copied here) and an empty
//! write buffer is shrunk back after a burst, so idle connections stay small.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

/// Write buffers that grew past this during a burst are shrunk back once drained.
pub(crate) const KEEP_BUFFER_BYTES: usize = 256 * 1024;

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
    /// On the loop's deferred-read list (server draining its own backlogs).
    pub(crate) is_deferred: bool,
    /// The TLS session on a TLS listener.
    pub(crate) tls: Option<Box<rustls::ServerConnection>>,
    /// Set once the connection is closing: its final bytes are written, the write side is
    /// shut, and incoming bytes are discarded until EOF or this deadline (lingering close, so
    /// the peer reads the ERROR/GOODBYE instead of a reset).
    pub(crate) linger_until: Option<Instant>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("is_tls", &self.tls.is_some())
            .field("unsent", &(self.write_buf.len() - self.sent))
            .finish_non_exhaustive()
    }
}

/// rustls buffers at most this much plaintext-turned-ciphertext per connection; the rest waits
/// in the write buffer (and the session queue behind it).
pub(crate) const TLS_BUFFER_LIMIT_BYTES: usize = 64 * 1024;

impl Connection {
    /// Reads bytes of the peer's stream (plaintext) into `buf`. On a TLS connection this
    /// reads records, runs the handshake (sending its replies at once) and returns decrypted
    /// bytes.
    ///
    /// # Errors
    /// As `Read::read`; `WouldBlock` when nothing is ready; `InvalidData` for a TLS failure
    /// (after the alert has been sent best effort).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.stream.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut self.stream)? == 0 {
                return Ok(0);
            }
            if let Err(error) = tls.process_new_packets() {
                let _ = tls.write_tls(&mut self.stream);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
            // Handshake replies go out now; if the socket is full the flush pass sends them.
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.is_writable = false;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Writes from `write_buf[sent..]` to the peer and advances `sent`; returns how many bytes
    /// were taken.
    ///
    /// # Errors
    /// As `Write::write`; `WouldBlock` when the socket is full.
    ///
    /// On a TLS connection, encrypted bytes already queued go first; plaintext is taken only
    /// while rustls holds less than its buffer limit, and the count is of bytes written to the
    /// socket.
    pub(crate) fn write_unsent(&mut self) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            let unsent = self.write_buf.get(self.sent..).unwrap_or_default();
            let n = self.stream.write(unsent)?;
            self.sent += n;
            return Ok(n);
        };
        if !tls.wants_write() {
            let unsent = self.write_buf.get(self.sent..).unwrap_or_default();
            self.sent += tls.writer().write(unsent)?;
        }
        tls.write_tls(&mut self.stream)
    }

    /// Shuts the write side (best effort), after the last frame; TLS sends close_notify.
    pub(crate) fn shutdown_write(&mut self) {
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
            while tls.wants_write() {
                if !matches!(tls.write_tls(&mut self.stream), Ok(n) if n > 0) {
                    break;
                }
            }
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    pub(crate) fn new(stream: TcpStream, peer: SocketAddr) -> Connection {
        Connection {
            stream,
            peer,
            read_buf: Vec::new(),
            write_buf: Vec::new(),
            sent: 0,
            is_writable: false,
            is_awaiting_proxy_header: false,
            tls: None,
            is_queued_for_flush: false,
            is_deferred: false,
            linger_until: None,
        }
    }

    /// Bytes of ours not yet on the socket: in `write_buf`, or encrypted and held by rustls.
    pub(crate) fn has_unsent(&self) -> bool {
        self.sent < self.write_buf.len() || self.tls.as_ref().is_some_and(|t| t.wants_write())
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
/// connections, not open ones (the idle-connection goal of issue 4).
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
