//! A link: one non-blocking connection to a broker, its read buffer (`start..end` cursors),
//! its write buffer (with a `sent` cursor) and the [`Adapter`] that speaks the protocol.
//! The same for every target, so every adapter is measured through the same syscalls.
//!
//! A TLS target (`weirs://`) puts a rustls `ClientConnection` between the buffers and the
//! socket: the adapter still reads and writes plaintext, and the same mio loop drives the
//! handshake and the records.
//!
//! Readiness is remembered (mio is edge-triggered): `is_readable` stays true when a read was
//! cut short by its budget, `is_writable` until a write would block.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};

use mio::net::TcpStream;
use socket2::{Domain, Socket, Type};

use crate::target::{Adapter, Event};

pub(crate) struct Link {
    pub(crate) stream: TcpStream,
    pub(crate) adapter: Box<dyn Adapter>,
    input: InputBuf,
    /// Bytes to send; `out[sent..]` is still unsent.
    pub(crate) out: Vec<u8>,
    sent: usize,
    pub(crate) is_readable: bool,
    pub(crate) is_writable: bool,
    /// TLS session, for `weirs://` targets.
    tls: Option<Box<rustls::ClientConnection>>,
    /// [`Link::shut_write`] has begun (close_notify queued).
    is_closing: bool,
}

/// What one [`Link::read`] did.
#[derive(Debug, Default)]
pub(crate) struct ReadResult {
    pub(crate) bytes: usize,
    /// The broker closed the connection.
    pub(crate) is_eof: bool,
}

impl Link {
    /// Starts a non-blocking connect to `address`, from `source` if given (127.0.0.2, ... to
    /// spread many connections over several source addresses).
    ///
    /// # Errors
    /// The socket could not be created, bound or connected.
    pub(crate) fn connect(
        address: SocketAddr,
        source: Option<IpAddr>,
        mut adapter: Box<dyn Adapter>,
        read_buf_bytes: usize,
    ) -> io::Result<Link> {
        let tls = adapter.take_tls()?.map(Box::new);
        let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        socket.set_nodelay(true)?;
        if let Some(source) = source {
            socket.bind(&SocketAddr::new(source, 0).into())?;
        }
        match socket.connect(&address.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(EINPROGRESS) => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{address}: {e}"))),
        }
        Ok(Link {
            stream: TcpStream::from_std(socket.into()),
            adapter,
            input: InputBuf {
                buf: vec![0; read_buf_bytes],
                start: 0,
                end: 0,
            },
            out: Vec::new(),
            sent: 0,
            is_readable: true,
            is_writable: false,
            tls,
            is_closing: false,
        })
    }

    /// Reads until the socket has nothing more or `budget` bytes were read, handing every
    /// complete message to the adapter, then lets it append a batched ack.
    ///
    /// # Errors
    /// A socket error, or bytes the adapter cannot parse.
    pub(crate) fn read(
        &mut self,
        budget: usize,
        events: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<ReadResult> {
        let mut result = ReadResult::default();
        if self.tls.is_some() {
            self.read_tls(budget, &mut result, events)?;
            if result.bytes > 0 {
                self.adapter.end_of_input(&mut self.out);
            }
            return Ok(result);
        }
        while self.is_readable && result.bytes < budget && !result.is_eof {
            let space = self.input.space();
            let room = (budget - result.bytes).min(space.len());
            match self.stream.read(&mut space[..room]) {
                Ok(0) => result.is_eof = true,
                Ok(n) => {
                    result.bytes += n;
                    self.input.filled(n);
                    let used =
                        self.adapter
                            .handle_input(self.input.unread(), &mut self.out, events)?;
                    self.input.consume(used);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.is_readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if result.bytes > 0 {
            self.adapter.end_of_input(&mut self.out);
        }
        Ok(result)
    }

    /// [`Link::read`] through TLS: records from the socket into rustls, plaintext from rustls
    /// into the read buffer and on to the adapter.
    fn read_tls(
        &mut self,
        budget: usize,
        result: &mut ReadResult,
        events: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<()> {
        while self.is_readable && result.bytes < budget && !result.is_eof {
            let Some(tls) = self.tls.as_deref_mut() else {
                return Ok(());
            };
            match tls.read_tls(&mut self.stream) {
                Ok(0) => result.is_eof = true,
                Ok(n) => result.bytes += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.is_readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            tls.process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")))?;
            loop {
                match tls.reader().read(self.input.space()) {
                    Ok(0) => {
                        result.is_eof = true;
                        break;
                    }
                    Ok(n) => {
                        self.input.filled(n);
                        let used = self.adapter.handle_input(
                            self.input.unread(),
                            &mut self.out,
                            events,
                        )?;
                        self.input.consume(used);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // The peer closed without close_notify: end of input all the same.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        result.is_eof = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Writes buffered bytes until done or the socket would block.
    ///
    /// # Errors
    /// A socket error other than "would block" (or "not connected yet").
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if let Some(tls) = self.tls.as_deref_mut() {
            loop {
                let mut moved = 0;
                if self.sent < self.out.len() {
                    moved = tls.writer().write(&self.out[self.sent..])?;
                    self.sent += moved;
                }
                if tls.wants_write() {
                    match tls.write_tls(&mut self.stream) {
                        Ok(_) => {}
                        Err(e) if is_not_yet(&e) => {
                            self.is_writable = false;
                            return Ok(());
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                } else if self.sent == self.out.len() {
                    self.out.clear();
                    self.sent = 0;
                    return Ok(());
                } else if moved == 0 {
                    // rustls holds as much plaintext as it takes until the handshake is done.
                    return Ok(());
                }
            }
        }
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if is_not_yet(&e) => {
                    self.is_writable = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.sent = 0;
        Ok(())
    }

    /// Ends the sending side once everything buffered is written: TLS close_notify, then
    /// FIN. Returns false while bytes are still waiting (call again when writable).
    ///
    /// # Errors
    /// A socket error other than "would block".
    pub(crate) fn shut_write(&mut self) -> io::Result<bool> {
        if let Some(tls) = self.tls.as_deref_mut() {
            if !self.is_closing {
                tls.send_close_notify();
            }
        }
        self.is_closing = true;
        self.flush()?;
        if self.unsent() > 0 {
            return Ok(false);
        }
        self.stream.shutdown(std::net::Shutdown::Write)?;
        Ok(true)
    }

    /// Bytes buffered and not yet written.
    pub(crate) fn unsent(&self) -> usize {
        let held = self
            .tls
            .as_deref()
            .map_or(0, |tls| usize::from(tls.wants_write()));
        self.out.len() - self.sent + held
    }
}

/// "Try again later": the socket would block, or is still connecting.
fn is_not_yet(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected
    )
}

/// Linux `EINPROGRESS`: a non-blocking connect under way.
const EINPROGRESS: i32 = 115;

/// A link's read buffer: unread bytes are `buf[start..end]`.
struct InputBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InputBuf {
    /// Free space after the unread bytes, never empty: moves them to the front when the end is
    /// reached, or doubles the buffer when one message fills it.
    fn space(&mut self) -> &mut [u8] {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                self.buf.resize(2 * self.buf.len(), 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into [`Self::space`].
    fn filled(&mut self, n: usize) {
        self.end += n;
    }

    fn unread(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The adapter used `used` bytes of [`Self::unread`].
    fn consume(&mut self, used: usize) {
        self.start += used;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
}
