//! The layers of one connection's byte stream: TCP at the bottom, then (per listener) the
//! PROXY protocol prefix, TLS and WebSocket, each a [`Layer`] over the one below, so the event
//! loop never asks which ones it has.
//!
//! Reading goes top-down: the top layer reads from a [`Below`] view of the layers under it,
//! which reads from the socket at the bottom. Writing the same way. Plain TCP has no layers
//! and reads and writes the socket directly (no dynamic dispatch, no allocation).
//!
//! A layer may have something to tell the core (the PROXY header's source address, or why it
//! was refused): the loop drains [`Transport::poll_event`] after each read, before handing
//! the bytes read to the broker.

pub(crate) mod proxy;
pub(crate) mod tls;
pub(crate) mod websocket;
mod ws_frames;

use std::io::{self, Read, Write};

use mio::net::TcpStream;

use crate::protocol::proxy::ProxyHeader;
use crate::protocol::ErrorCode;

/// Something a layer learned that the core must hear of.
#[derive(Debug)]
pub(crate) enum TransportEvent {
    /// The PROXY header was read (`Ok`), or refused (`Err`, with the reason).
    ProxyHeader(Result<ProxyHeader, String>),
    /// The layer refused the connection (a WebSocket upgrade or message that breaks its
    /// rules): the core closes it with this code and text. The layer has already queued
    /// whatever its own format says to the peer (an HTTP refusal).
    Refused(ErrorCode, String),
}

/// One layer of a connection's stream, over the stream `below` it.
pub(crate) trait Layer: Send + std::fmt::Debug {
    /// Reads bytes for the layer above. `WouldBlock` when nothing is ready (also while this
    /// layer is still consuming a prefix or handshake); `Ok(0)` at the end of the stream.
    ///
    /// # Errors
    /// As `Read::read`, plus `InvalidData` when the bytes below break this layer's format.
    fn read(&mut self, below: &mut Below<'_>, buf: &mut [u8]) -> io::Result<usize>;

    /// Takes bytes of the layer above, returning how many it took; it may hold them (then
    /// [`Layer::has_unsent`] is true until [`Layer::flush`] has pushed them down).
    ///
    /// # Errors
    /// As `Write::write`; `WouldBlock` when it can take nothing now.
    fn write(&mut self, below: &mut Below<'_>, buf: &[u8]) -> io::Result<usize>;

    /// Pushes down what this layer holds.
    ///
    /// # Errors
    /// `WouldBlock` while the stream below is full; other errors end the connection.
    fn flush(&mut self, below: &mut Below<'_>) -> io::Result<()> {
        let _ = below;
        Ok(())
    }

    /// Whether this layer holds bytes not yet pushed down.
    fn has_unsent(&self) -> bool {
        false
    }

    /// Ends this layer's sending side cleanly (a TLS close_notify), best effort.
    fn shutdown(&mut self, below: &mut Below<'_>) {
        let _ = below;
    }

    /// Something the core must hear of, once.
    fn poll_event(&mut self) -> Option<TransportEvent> {
        None
    }
}

/// The stream under a layer: the layers below it over the socket.
#[derive(Debug)]
pub(crate) struct Below<'a> {
    layers: &'a mut [Box<dyn Layer>],
    tcp: &'a mut TcpStream,
}

impl Below<'_> {
    fn split(&mut self) -> Option<(&mut Box<dyn Layer>, Below<'_>)> {
        let (top, rest) = self.layers.split_last_mut()?;
        Some((
            top,
            Below {
                layers: rest,
                tcp: self.tcp,
            },
        ))
    }
}

impl Read for Below<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.split() {
            Some((top, mut rest)) => top.read(&mut rest, buf),
            None => self.tcp.read(buf),
        }
    }
}

impl Write for Below<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.split() {
            Some((top, mut rest)) => top.write(&mut rest, buf),
            None => self.tcp.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.split() {
            Some((top, mut rest)) => {
                top.flush(&mut rest)?;
                rest.flush()
            }
            None => Ok(()),
        }
    }
}

/// A connection's stream: the socket and the layers over it, bottom first.
#[derive(Debug)]
pub(crate) struct Transport {
    tcp: TcpStream,
    /// Bottom first; empty for plain TCP (no allocation).
    layers: Box<[Box<dyn Layer>]>,
}

impl Transport {
    /// `layers` bottom first: e.g. `[proxy, tls]` for TLS behind a PROXY header.
    pub(crate) fn new(tcp: TcpStream, layers: Vec<Box<dyn Layer>>) -> Transport {
        Transport {
            tcp,
            layers: layers.into_boxed_slice(),
        }
    }

    /// The socket, for registration with mio and for discarding input while lingering.
    pub(crate) fn tcp(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    fn below(&mut self) -> Below<'_> {
        Below {
            layers: &mut self.layers,
            tcp: &mut self.tcp,
        }
    }

    /// Reads bytes of the top layer (Weir frames).
    ///
    /// # Errors
    /// As [`Layer::read`].
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.below().read(buf)
    }

    /// Writes bytes through every layer; returns how many the top layer took.
    ///
    /// # Errors
    /// As [`Layer::write`].
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.below().write(buf)
    }

    /// Pushes down whatever the layers hold.
    ///
    /// # Errors
    /// `WouldBlock` while the socket is full.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.layers.is_empty() {
            return Ok(());
        }
        self.below().flush()
    }

    /// Whether some layer holds bytes not yet on the socket.
    pub(crate) fn has_unsent(&self) -> bool {
        self.layers.iter().any(|layer| layer.has_unsent())
    }

    /// Ends the sending side: each layer's clean end, top first, then the socket's write side.
    pub(crate) fn shutdown_write(&mut self) {
        for top in (0..self.layers.len()).rev() {
            let (lower, upper) = self.layers.split_at_mut(top);
            if let Some(layer) = upper.first_mut() {
                layer.shutdown(&mut Below {
                    layers: lower,
                    tcp: &mut self.tcp,
                });
            }
        }
        let _ = self.tcp.shutdown(std::net::Shutdown::Write);
    }

    /// The next event of any layer, bottom first.
    pub(crate) fn poll_event(&mut self) -> Option<TransportEvent> {
        self.layers.iter_mut().find_map(|layer| layer.poll_event())
    }
}
