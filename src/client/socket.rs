//! The TCP stream, in blocking mode, and the read timeout currently set on it.
//!
//! Invariant: between calls the stream is blocking, with the write timeout from
//! `ClientOptions::timeout`. A non-blocking read switches mode and back within the call.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// What one read produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReadOutcome {
    /// This many bytes (at least 1).
    Data(usize),
    /// The peer closed its side.
    Eof,
    /// Nothing arrived within the wait.
    TimedOut,
}

#[derive(Debug)]
pub(super) struct Socket {
    stream: TcpStream,
    /// The SO_RCVTIMEO last set (`None`: blocking without limit), so the option is changed only
    /// when a read asks for another wait.
    read_timeout: Option<Duration>,
}

impl Socket {
    /// Connects to the first address of `addr` that accepts, with TCP_NODELAY (frames are
    /// coalesced in the client's own write buffer) and the write timeout set.
    ///
    /// `timeout` must not be zero.
    pub(super) fn connect(addr: impl ToSocketAddrs, timeout: Option<Duration>) -> io::Result<Self> {
        let mut last_error = None;
        for addr in addr.to_socket_addrs()? {
            match connect_one(&addr, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_write_timeout(timeout)?;
                    return Ok(Socket {
                        stream,
                        read_timeout: None,
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")
        }))
    }

    /// Reads once into `buf` (not empty). `wait`: `None` blocks until bytes arrive,
    /// `Some(Duration::ZERO)` does not block, `Some(d)` blocks up to `d`.
    ///
    /// # Errors
    /// Socket errors other than a timeout or an interrupted call.
    pub(super) fn read(
        &mut self,
        buf: &mut [u8],
        wait: Option<Duration>,
    ) -> io::Result<ReadOutcome> {
        if wait == Some(Duration::ZERO) {
            self.stream.set_nonblocking(true)?;
            let result = self.read_retrying(buf);
            self.stream.set_nonblocking(false)?;
            return result;
        }
        if wait != self.read_timeout {
            self.stream.set_read_timeout(wait)?;
            self.read_timeout = wait;
        }
        self.read_retrying(buf)
    }

    /// Writes some of `buf`, blocking up to the write timeout.
    ///
    /// # Errors
    /// `WouldBlock` or `TimedOut` when the write timeout ran out with nothing written; any
    /// other socket error; `WriteZero` if the socket accepts nothing.
    pub(super) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match self.stream.write(buf) {
                Ok(0) if !buf.is_empty() => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sets how long a write may block (`None`: without limit; must not be zero).
    pub(super) fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_write_timeout(timeout)
    }

    /// The server's address.
    pub(super) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// This end's address.
    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    fn read_retrying(&mut self, buf: &mut [u8]) -> io::Result<ReadOutcome> {
        loop {
            match self.stream.read(buf) {
                Ok(0) => return Ok(ReadOutcome::Eof),
                Ok(n) => return Ok(ReadOutcome::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => return Ok(ReadOutcome::TimedOut),
                Err(e) => return Err(e),
            }
        }
    }
}

/// True for the errors a socket timeout produces (`WouldBlock` on Unix, `TimedOut` on Windows).
pub(super) fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn connect_one(addr: &SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
    match timeout {
        Some(timeout) => TcpStream::connect_timeout(addr, timeout),
        None => TcpStream::connect(addr),
    }
}
