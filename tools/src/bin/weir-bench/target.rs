//! Targets (brokers named by URL) and what an adapter for one provides: a [`Publisher`] and a
//! [`Subscriber`] over a [`Wire`], a `TcpStream` with the adapter's own buffers.
//!
//! A new target is a `Target` variant, its URL scheme, and one module implementing the two
//! traits; scenarios only see the traits.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use crate::redis_target::{RedisPublisher, RedisSubscriber};
use crate::weir_target::{WeirPublisher, WeirSubscriber};

/// A broker to measure, from its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `redis://HOST:PORT`: Redis pub/sub.
    Redis(String),
    /// `weir://HOST:PORT`.
    Weir(String),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(url: &str) -> Result<Target, String> {
        let (scheme, address) = url
            .split_once("://")
            .ok_or_else(|| format!("{url}: expected SCHEME://HOST:PORT"))?;
        let address = address.trim_end_matches('/').to_owned();
        if address.rsplit_once(':').is_none() {
            return Err(format!("{url}: the address needs a port"));
        }
        match scheme {
            "weir" => Ok(Target::Weir(address)),
            "redis" => Ok(Target::Redis(address)),
            _ => Err(format!("{url}: unknown scheme (weir:// or redis://)")),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Redis(address) => write!(f, "redis://{address}"),
            Target::Weir(address) => write!(f, "weir://{address}"),
        }
    }
}

impl Target {
    /// Whether subscribers acknowledge deliveries on this target (so `--no-acks` applies).
    pub(crate) fn has_acks(&self) -> bool {
        matches!(self, Target::Weir(_))
    }

    /// A connection that has subscribed and seen the broker confirm it.
    pub(crate) fn subscriber(
        &self,
        options: &ConnectOptions,
        index: u16,
    ) -> io::Result<Box<dyn Subscriber>> {
        let name = format!("weir-bench-sub-{index}");
        Ok(match self {
            Target::Weir(address) => Box::new(WeirSubscriber::connect(address, &name, options)?),
            Target::Redis(address) => Box::new(RedisSubscriber::connect(address, options)?),
        })
    }

    /// A connection ready to publish.
    pub(crate) fn publisher(
        &self,
        options: &ConnectOptions,
        index: u16,
    ) -> io::Result<Box<dyn Publisher>> {
        let name = format!("weir-bench-pub-{index}");
        Ok(match self {
            Target::Weir(address) => Box::new(WeirPublisher::connect(address, &name, options)?),
            Target::Redis(address) => Box::new(RedisPublisher::connect(address, options)?),
        })
    }
}

/// What every adapter needs to open a connection, whatever the scenario.
#[derive(Clone, Debug)]
pub(crate) struct ConnectOptions {
    /// Queue (Weir) or channel (Redis).
    pub(crate) queue: String,
    /// Weir: in-flight window to ask for in HELLO (0 = the server's default).
    pub(crate) window: u32,
    /// Weir: whether subscribers ACK.
    pub(crate) is_acking: bool,
    /// Most messages a publisher may have sent and not had confirmed (Weir RECEIPT, Redis
    /// PUBLISH reply).
    pub(crate) max_unconfirmed: u64,
}

/// The sending half of a scenario, one per connection.
pub(crate) trait Publisher: Send {
    /// Sends one message (buffered); blocks while `max_unconfirmed` are unconfirmed.
    fn publish(&mut self, payload: &[u8]) -> io::Result<()>;
    /// Writes out whatever is buffered.
    fn flush(&mut self) -> io::Result<()>;
    /// Flushes and waits until the broker confirmed every message.
    fn finish(&mut self) -> io::Result<()>;
}

/// The receiving half of a scenario, one per connection.
pub(crate) trait Subscriber: Send {
    /// Waits up to [`POLL_INTERVAL`] for bytes and calls `on_message` with the payload of every
    /// complete message they hold (acking as the protocol needs).
    fn poll(&mut self, on_message: &mut dyn FnMut(&[u8])) -> io::Result<Polled>;
}

/// What a [`Subscriber::poll`] saw.
pub(crate) enum Polled {
    /// Still connected (messages may or may not have arrived).
    Open,
    /// The broker closed the connection; the reason it gave, if any.
    Closed(String),
}

/// A TCP stream with its own read buffer (`start..end` cursors) and write buffer.
pub(crate) struct Wire {
    stream: TcpStream,
    pub(crate) read_buf: Vec<u8>,
    /// Unread bytes are `read_buf[start..end]`.
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) write_buf: Vec<u8>,
}

impl Wire {
    pub(crate) fn connect(address: &str, read_timeout: Duration) -> io::Result<Wire> {
        let addr = address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
        let stream = TcpStream::connect_timeout(&addr, CONFIRM_TIMEOUT)
            .map_err(|e| io::Error::new(e.kind(), format!("{address}: {e}")))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(read_timeout))?;
        stream.set_write_timeout(Some(CONFIRM_TIMEOUT))?;
        Ok(Wire {
            stream,
            read_buf: vec![0; READ_BUF_BYTES],
            start: 0,
            end: 0,
            write_buf: Vec::with_capacity(2 * WRITE_BATCH_BYTES),
        })
    }

    pub(crate) fn unread(&self) -> &[u8] {
        &self.read_buf[self.start..self.end]
    }

    /// One read into the buffer, compacting or growing it first if it is full. `Ok(0)` is EOF;
    /// a read timeout is an error of kind `WouldBlock` or `TimedOut`.
    pub(crate) fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.read_buf.len() {
            if self.start > 0 {
                self.read_buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                // One frame larger than the buffer (a big payload).
                self.read_buf.resize(2 * self.read_buf.len(), 0);
            }
        }
        let n = self.stream.read(&mut self.read_buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if !self.write_buf.is_empty() {
            self.stream.write_all(&self.write_buf)?;
            self.write_buf.clear();
        }
        Ok(())
    }
}

pub(crate) fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

pub(crate) fn protocol_error(text: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text.into())
}

/// A subscriber's read timeout: how often it checks whether the run is over.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Longest wait for a connection, a handshake reply or a confirmation before the run fails.
pub(crate) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// Pipelined writes are flushed at this size: few syscalls, yet the broker gets a steady
/// stream rather than bursts.
pub(crate) const WRITE_BATCH_BYTES: usize = 64 * 1024;
const READ_BUF_BYTES: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls_round_trip_and_bad_ones_are_refused() {
        for url in ["weir://127.0.0.1:7400", "redis://localhost:6379"] {
            assert_eq!(url.parse::<Target>().unwrap().to_string(), url);
        }
        assert_eq!(
            "weir://127.0.0.1:7400/".parse::<Target>(),
            Ok(Target::Weir("127.0.0.1:7400".into()))
        );
        for bad in [
            "127.0.0.1:7400",
            "nats://127.0.0.1:4222",
            "weir://localhost",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }
}
