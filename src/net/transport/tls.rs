//! TLS as a layer (rustls `ServerConnection`, driven without blocking), and loading a
//! listener's certificate and key.

use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;

use super::{Below, Layer};

/// rustls buffers at most this much plaintext-turned-ciphertext per connection; the rest waits
/// in the write buffer (and the session queue behind it).
pub(crate) const TLS_BUFFER_LIMIT_BYTES: usize = 64 * 1024;

/// One connection's TLS session.
#[derive(Debug)]
pub(crate) struct Tls {
    session: Box<rustls::ServerConnection>,
}

impl Tls {
    /// A server session with `config` (the listener's at accept time: a reload that rotates
    /// the certificate affects only connections accepted after it).
    ///
    /// # Errors
    /// As `rustls::ServerConnection::new`.
    pub(crate) fn new(config: Arc<rustls::ServerConfig>) -> Result<Tls, rustls::Error> {
        let mut session = rustls::ServerConnection::new(config)?;
        session.set_buffer_limit(Some(TLS_BUFFER_LIMIT_BYTES));
        Ok(Tls {
            session: Box::new(session),
        })
    }

    /// Writes queued records below until done or the stream below is full.
    fn push(&mut self, below: &mut Below<'_>) -> io::Result<()> {
        while self.session.wants_write() {
            match self.session.write_tls(below) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Layer for Tls {
    fn read(&mut self, below: &mut Below<'_>, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.session.read_tls(below)? == 0 {
                return Ok(0);
            }
            if let Err(error) = self.session.process_new_packets() {
                // The alert, best effort.
                let _ = self.session.write_tls(below);
                return Err(io::Error::new(ErrorKind::InvalidData, error));
            }
            // Handshake replies go out now; if the stream is full the flush pass sends them.
            match self.push(below) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn write(&mut self, below: &mut Below<'_>, buf: &[u8]) -> io::Result<usize> {
        // Records already queued go first: plaintext is taken only while rustls holds less
        // than its buffer limit.
        self.push(below)?;
        let taken = self.session.writer().write(buf)?;
        match self.push(below) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(taken)
    }

    fn flush(&mut self, below: &mut Below<'_>) -> io::Result<()> {
        self.push(below)
    }

    fn has_unsent(&self) -> bool {
        self.session.wants_write()
    }

    fn shutdown(&mut self, below: &mut Below<'_>) {
        self.session.send_close_notify();
        while self.session.wants_write() {
            if !matches!(self.session.write_tls(below), Ok(n) if n > 0) {
                break;
            }
        }
    }
}
