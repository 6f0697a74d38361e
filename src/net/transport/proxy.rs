//! The PROXY protocol prefix as a layer: consumes the header a proxy sends before the
//! client's bytes, tells the core whom it names, then passes bytes through both ways.
//!
//! Bounded: it buffers at most [`MAX_PROXY_HEADER_LEN`] bytes, reading no more than the
//! header can still need; bytes after the header in the same read are served to the layer
//! above before anything else.

use std::io::{self, ErrorKind, Read, Write};

use super::{Below, Layer, TransportEvent};
use crate::protocol::proxy::{parse_proxy_header, MAX_PROXY_HEADER_LEN};

/// Where the prefix is.
#[derive(Debug)]
enum State {
    /// Collecting the header.
    Header(Vec<u8>),
    /// The header was read; these bytes after it (possibly none) come first.
    Leftover(Vec<u8>, usize),
    /// The header was refused: nothing more is read (the core is closing the connection).
    Refused,
}

/// The PROXY header layer of a listener with `proxy_protocol = true`.
#[derive(Debug)]
pub(crate) struct ProxyPrefix {
    state: State,
    event: Option<TransportEvent>,
}

impl ProxyPrefix {
    /// A layer expecting a header; `refusal` is set when the peer is not a trusted proxy, and
    /// is told to the core at once.
    pub(crate) fn new(refusal: Option<String>) -> ProxyPrefix {
        match refusal {
            Some(text) => ProxyPrefix {
                state: State::Refused,
                event: Some(TransportEvent::ProxyHeader(Err(text))),
            },
            None => ProxyPrefix {
                state: State::Header(Vec::new()),
                event: None,
            },
        }
    }
}

impl Layer for ProxyPrefix {
    fn read(&mut self, below: &mut Below<'_>, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match &mut self.state {
                State::Refused => return Err(ErrorKind::WouldBlock.into()),
                State::Leftover(bytes, pos) => {
                    if *pos >= bytes.len() {
                        self.state = State::Leftover(Vec::new(), 0);
                        return below.read(buf);
                    }
                    let rest = bytes.get(*pos..).unwrap_or_default();
                    let n = rest.len().min(buf.len());
                    if let (Some(to), Some(from)) = (buf.get_mut(..n), rest.get(..n)) {
                        to.copy_from_slice(from);
                    }
                    *pos += n;
                    if *pos >= bytes.len() {
                        self.state = State::Leftover(Vec::new(), 0);
                    }
                    return Ok(n);
                }
                State::Header(pending) => {
                    let mut chunk = [0u8; MAX_PROXY_HEADER_LEN];
                    let room = MAX_PROXY_HEADER_LEN.saturating_sub(pending.len()).max(1);
                    let n = below.read(chunk.get_mut(..room).unwrap_or_default())?;
                    if n == 0 {
                        return Ok(0);
                    }
                    pending.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    match parse_proxy_header(pending) {
                        Ok(None) => {}
                        Ok(Some((header, used))) => {
                            let rest = pending.split_off(used.min(pending.len()));
                            self.event = Some(TransportEvent::ProxyHeader(Ok(header)));
                            self.state = State::Leftover(rest, 0);
                            // The core hears of the header before any byte after it.
                            return Err(ErrorKind::WouldBlock.into());
                        }
                        Err(error) => {
                            self.event = Some(TransportEvent::ProxyHeader(Err(error.to_string())));
                            self.state = State::Refused;
                            return Err(ErrorKind::WouldBlock.into());
                        }
                    }
                }
            }
        }
    }

    fn write(&mut self, below: &mut Below<'_>, buf: &[u8]) -> io::Result<usize> {
        below.write(buf)
    }

    fn poll_event(&mut self) -> Option<TransportEvent> {
        self.event.take()
    }
}
