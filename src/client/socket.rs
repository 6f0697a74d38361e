//! The TCP stream (plain or under rustls), in blocking mode, and the read timeout currently
//! set on it.
//!
//! Invariant: between calls the stream is blocking, with the write timeout from
//! `ClientOptions::timeout`. A non-blocking read switches mode and back within the call.
//! Over TLS the timeouts and modes are those of the TCP stream under rustls; a read that
//! times out mid-record leaves the partial record buffered in rustls for the next read.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};

use super::tls::TlsOptions;

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
enum Stream {
    Plain(TcpStream),
    /// Boxed: the rustls connection state is large.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            // A server that closes without close_notify (the broker drops connections it
            // ends) is an end of stream like any other.
            Stream::Tls(tls) => match tls.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            // rustls sends what it buffered before taking more, so a write that timed out
            // is retried by the next one (or the next read) and nothing is lost.
            Stream::Tls(tls) => tls.write(buf),
        }
    }
}

#[derive(Debug)]
pub(super) struct Socket {
    stream: Stream,
    /// The SO_RCVTIMEO last set (`None`: blocking without limit), so the option is changed only
    /// when a read asks for another wait.
    read_timeout: Option<Duration>,
}

impl Socket {
    /// Connects to the first address of `addr` that accepts, with TCP_NODELAY (frames are
    /// coalesced in the client's own write buffer) and the write timeout set.
    ///
    /// `timeout` must not be zero.
    /// With `tls`, the TLS handshake is completed before returning, each read or write of it
    /// bounded by `timeout`.
    ///
    /// # Errors
    /// The last address's connect error; the TLS configuration's or handshake's error
    /// (`InvalidData` wrapping a `rustls::Error` for a refused certificate).
    pub(super) fn connect(
        addr: impl ToSocketAddrs,
        timeout: Option<Duration>,
        tls: Option<&TlsOptions>,
    ) -> io::Result<Self> {
        // Configuration errors (a missing CA file) come before any connection is made.
        let connection = tls.map(TlsOptions::connection).transpose()?;
        let mut last_error = None;
        for addr in addr.to_socket_addrs()? {
            match connect_one(&addr, timeout) {
                Ok(tcp) => {
                    tcp.set_nodelay(true)?;
                    tcp.set_write_timeout(timeout)?;
                    let Some(mut connection) = connection else {
                        return Ok(Socket {
                            stream: Stream::Plain(tcp),
                            read_timeout: None,
                        });
                    };
                    tls_handshake(&mut connection, &tcp, timeout)?;
                    return Ok(Socket {
                        stream: Stream::Tls(Box::new(StreamOwned::new(connection, tcp))),
                        read_timeout: timeout,
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
            self.stream.tcp().set_nonblocking(true)?;
            let result = self.read_retrying(buf);
            self.stream.tcp().set_nonblocking(false)?;
            return result;
        }
        if wait != self.read_timeout {
            self.stream.tcp().set_read_timeout(wait)?;
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
        self.stream.tcp().set_write_timeout(timeout)
    }

    /// The server's address.
    pub(super) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.tcp().peer_addr()
    }

    /// This end's address.
    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.tcp().local_addr()
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

/// Runs the TLS handshake on `tcp` (blocking, each read bounded by `timeout`), leaving the
/// stream's read timeout at `timeout`.
fn tls_handshake(
    connection: &mut ClientConnection,
    mut tcp: &TcpStream,
    timeout: Option<Duration>,
) -> io::Result<()> {
    tcp.set_read_timeout(timeout)?;
    while connection.is_handshaking() {
        match connection.complete_io(&mut tcp) {
            Ok((0, 0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
