//! A blocking client over `std::net`, built only on [`crate::protocol`].
//!
//! A [`Client`] owns one TCP connection and the session on it: it sends HELLO and waits for
//! WELCOME in [`Client::connect`], numbers publishes 1, 2, 3, ..., checks acks against the
//! deliveries it has seen, answers the server's PINGs, and turns ERROR and GOODBYE into a
//! [`ClientError`].
//!
//! # Buffering
//!
//! Publishes and acks are encoded into a write buffer and sent when it passes 64 KiB, on
//! [`Client::flush`], and at the start of every call that waits for the server (`recv`,
//! `poll_deliveries`, `subscribe`, `wait_receipt`, `ping`, `stats`, `bye`). Consecutive
//! cumulative acks are merged into one ACK. Frames arriving while a call waits for something
//! else (deliveries during `subscribe`, receipts during `recv`) are kept, in order, for
//! [`Client::recv`]. Reads are large (a 64 KiB buffer that grows only to fit a frame whose
//! length has been checked against the limit in force).
//!
//! # No background thread
//!
//! The client reads only inside a call. The server expects to hear from a client within
//! WELCOME's `heartbeat_timeout_ms` (30 s by default) and sends PING after
//! `heartbeat_interval_ms` of silence; a client that is inside `recv` or `poll_deliveries`
//! answers automatically, but one that makes no call for longer than the timeout is closed
//! with HEARTBEAT_TIMEOUT. Call [`Client::ping`] from idle loops.
//!
//! # Example
//!
//! ```no_run
//! use weir::client::{Client, ClientOptions, Event};
//!
//! # fn main() -> Result<(), weir::client::ClientError> {
//! let mut client = Client::connect("127.0.0.1:7400", &ClientOptions::default())?;
//! client.subscribe_all("db")?;
//! let seq = client.publish("db", "update", b"row 7")?;
//! client.wait_receipt(seq)?;
//! if let Event::Deliver(delivery) = client.recv()? {
//!     client.ack(delivery.seq)?;
//! }
//! client.bye()
//! # }
//! ```
//!
//! # Reconnection
//!
//! A `Client` ends with its connection. [`ReconnectingClient`] is built on it and outlives
//! connections: it reconnects with backoff, resumes the session (protocol.md §Reconnection),
//! resends what the server did not receipt, drops deliveries it has already received, and
//! tells the application with [`Event::Resumed`] and [`Event::Lost`] where that happened.
//! [`Client::resume`] is the one-shot building block it uses.
//!
//! The client must not know anything about the server beyond protocol.md.

mod buffer;
mod connect;
mod error;
mod event;
mod options;
mod receive;
mod reconnect;
mod session;
mod socket;
mod subscriptions;
mod tls;
mod transport;

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::protocol::codec::{
    encode_ack, encode_empty, encode_hello, encode_ping, encode_publish, encode_subscription,
};
use crate::protocol::frame::OUTCOME_RESUMED;
use crate::protocol::{
    decode, ErrorCode, Frame, Hello, Op, Publish, Start, Subscription, MAX_FRAME_LEN,
    MAX_FRAME_LEN_BEFORE_HELLO,
};

pub use self::error::ClientError;
pub use self::event::{Delivery, Event};
pub use self::options::{ClientOptions, Credentials, DEFAULT_TIMEOUT};
pub use self::reconnect::{OnFull, ReconnectOptions, ReconnectStats, ReconnectingClient};
pub use self::tls::{TlsOptions, TlsTrust};
pub use crate::protocol::{Deliver, Resume, Welcome};

use self::buffer::{ReadBuf, WriteBuf};
use self::error::CloseCause;
use self::session::{op_name, Reply, Session};
use self::socket::Socket;
use self::transport::Deadline;
#[cfg(test)]
use self::transport::DRAIN_AFTER_BYTES;

/// A connection with a session on a Weir server. See the [module docs](self).
pub struct Client {
    socket: Socket,
    read_buf: ReadBuf,
    write_buf: WriteBuf,
    session: Session,
    /// From [`ClientOptions::timeout`].
    timeout: Option<Duration>,
    /// Bytes written since the socket was last read; past [`transport::DRAIN_AFTER_BYTES`], `flush`
    /// also reads what has arrived, so receipts do not pile up on the server.
    written_since_read: usize,
    /// When bytes last arrived from the server (the connect time before any did).
    last_received_at: Instant,
}

impl Client {
    /// The session id the server assigned.
    pub fn session_id(&self) -> u64 {
        self.session.welcome.session_id
    }

    /// The WELCOME the server sent: the limits in force for this session (max_frame_len,
    /// inflight_window, heartbeat interval and timeout, queue depth and bytes).
    pub fn welcome(&self) -> &Welcome {
        &self.session.welcome
    }

    /// The server's address.
    ///
    /// # Errors
    /// The socket's error, if it has none (e.g. after a reset).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.peer_addr()
    }

    /// This end's address, as the server's STATS report shows it in `peer`.
    ///
    /// # Errors
    /// The socket's error, if it has none.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Publishes `payload` as `event` on `queue` and returns its publish seq (1 for the
    /// session's first, then +1 each). The frame is buffered; see [`Client::flush`] and
    /// [`Client::wait_receipt`]. An empty event reaches only ALL_EVENTS subscribers.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for an empty queue name; [`ClientError::Encode`] for a
    /// name over 255 bytes; [`ClientError::FrameTooLarge`] when the frame would exceed the
    /// server's max_frame_len; errors of the automatic flush, in which case the message was
    /// not buffered and its seq not used.
    pub fn publish(
        &mut self,
        queue: impl AsRef<[u8]>,
        event: impl AsRef<[u8]>,
        payload: impl AsRef<[u8]>,
    ) -> Result<u64, ClientError> {
        self.publish_frame(queue.as_ref(), event.as_ref(), None, payload.as_ref())
    }

    /// Like [`Client::publish`], with a time to live: a subscriber that has not been sent the
    /// message `ttl_ms` after the server accepted it never gets it (protocol.md §Time to
    /// live); 0 never expires, overriding the queue's `ttl_ms`.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] unless the client connected with
    /// [`ClientOptions::extensions`] set; otherwise as [`Client::publish`].
    pub fn publish_with_ttl(
        &mut self,
        queue: impl AsRef<[u8]>,
        event: impl AsRef<[u8]>,
        payload: impl AsRef<[u8]>,
        ttl_ms: u32,
    ) -> Result<u64, ClientError> {
        if self.session.welcome.reconnect_keep_alive_ms.is_none() {
            let text = "a time to live needs ClientOptions::extensions";
            return Err(ClientError::InvalidArgument(text));
        }
        self.publish_frame_ttl(
            queue.as_ref(),
            event.as_ref(),
            None,
            Some(ttl_ms),
            payload.as_ref(),
        )
    }

    /// The running total of messages dropped from this session's queue for a DROPPED reason
    /// (`DROPPED_CONFLATED`, `DROPPED_EXPIRED`, `DROPPED_DEAD_LETTERED` in
    /// [`crate::protocol::frame`]), as of the latest DROPPED read (EXTENSIONS only; 0 before).
    pub fn dropped_total(&self, reason: u16) -> u64 {
        let index = usize::from(reason).wrapping_sub(1);
        self.session.dropped_totals.get(index).copied().unwrap_or(0)
    }

    /// Like [`Client::publish`], with a conflation key: while a message with the same queue,
    /// event and key is still waiting to be sent to a subscriber, this one replaces it there.
    ///
    /// # Errors
    /// As [`Client::publish`]; the key is at most 255 bytes (it may be empty).
    pub fn publish_conflated(
        &mut self,
        queue: impl AsRef<[u8]>,
        event: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
        payload: impl AsRef<[u8]>,
    ) -> Result<u64, ClientError> {
        self.publish_frame(
            queue.as_ref(),
            event.as_ref(),
            Some(key.as_ref()),
            payload.as_ref(),
        )
    }

    /// Sends everything buffered. When much has been written since the socket was last read,
    /// also takes in the receipts and PINGs that have arrived, without blocking.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] if the socket accepted nothing within the timeout (what was not
    /// sent stays buffered for the next flush); the error that ended the connection.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.session.check_open()?;
        self.write_out()?;
        self.drain()
    }

    /// Returns the next delivery or receipt, waiting up to [`ClientOptions::timeout`].
    /// Events kept while another call waited come first. Sends the write buffer first.
    ///
    /// After the connection ends, events received before the end are still returned; then
    /// the error that ended it.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] (the client stays usable); [`ClientError::Goodbye`] when the
    /// server ends the session; any other error that ends the connection.
    pub fn recv(&mut self) -> Result<Event, ClientError> {
        let deadline = self.deadline();
        self.recv_until(deadline)
    }

    /// Like [`Client::recv`], but waits up to `timeout` and returns `Ok(None)` if nothing
    /// came. `Duration::ZERO` only takes what has already arrived.
    ///
    /// # Errors
    /// As [`Client::recv`], without the timeout.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Event>, ClientError> {
        match self.recv_until(Deadline::after(Some(timeout))) {
            Ok(event) => Ok(Some(event)),
            Err(ClientError::Timeout) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The zero-copy receive path: calls `f` on every delivery available, borrowed from the
    /// read buffer, and returns how many there were. Sends the write buffer first.
    ///
    /// Deliveries kept by earlier calls come first. If none is buffered, waits for bytes once:
    /// up to `wait` (`None`: no limit, `Some(Duration::ZERO)`: not at all), and returns
    /// `Ok(0)` if none came. Receipts are not passed to `f`; they show in
    /// [`Client::last_receipt`]. Allocates nothing once the buffers have grown to their size.
    ///
    /// # Errors
    /// The error that ended the connection, once the deliveries received before it have been
    /// passed to `f`; a write [`ClientError::Timeout`]. Every delivery passed to `f` counts in
    /// [`Client::last_delivery_seq`], even when an error is returned.
    pub fn poll_deliveries(
        &mut self,
        wait: Option<Duration>,
        mut f: impl FnMut(&Deliver<'_>),
    ) -> Result<usize, ClientError> {
        if self.session.is_open() {
            self.write_out()?;
        }
        let mut count = 0;
        while let Some(event) = self.session.inbox.pop_front() {
            if let Event::Deliver(delivery) = event {
                f(&delivery.as_deliver());
                count += 1;
            }
        }
        if let Err(e) = self.session.check_open() {
            return if count > 0 { Ok(count) } else { Err(e) };
        }
        count += self.deliver_buffered(&mut f, count)?;
        if count == 0 {
            match self.fill(wait) {
                Ok(()) => {}
                Err(ClientError::Timeout) => return Ok(0),
                Err(e) => return Err(e),
            }
            count += self.deliver_buffered(&mut f, count)?;
        }
        Ok(count)
    }

    /// Acknowledges every delivery with a seq ≤ `up_to` (buffered like a publish; consecutive
    /// calls merge into one ACK). Acks free window slots so more deliveries flow. `0` does
    /// nothing.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] if `up_to` is above the highest delivery seq received
    /// (the server would close the session with UNKNOWN_ACK_SEQ); errors of the automatic
    /// flush.
    pub fn ack(&mut self, up_to: u64) -> Result<(), ClientError> {
        self.session.check_open()?;
        if up_to > self.session.last_delivery_seq {
            return Err(ClientError::InvalidArgument(
                "ack of a delivery seq not received",
            ));
        }
        if up_to == 0 {
            return Ok(());
        }
        self.flush_if_full()?;
        self.write_buf.push_cumulative_ack(up_to);
        Ok(())
    }

    /// Acknowledges every delivery with a seq ≤ `up_to` and each seq in `seqs` (buffered).
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] if a seq is above the highest delivery seq received;
    /// [`ClientError::Encode`] for more than 65,535 seqs; [`ClientError::FrameTooLarge`];
    /// errors of the automatic flush.
    pub fn ack_seqs(&mut self, up_to: u64, seqs: &[u64]) -> Result<(), ClientError> {
        self.session.check_open()?;
        let last = self.session.last_delivery_seq;
        if up_to > last || seqs.iter().any(|&seq| seq > last) {
            return Err(ClientError::InvalidArgument(
                "ack of a delivery seq not received",
            ));
        }
        self.flush_if_full()?;
        self.write_buf.push(self.session.max_frame_len, |out| {
            encode_ack(up_to, seqs, out)
        })
    }

    /// Sends the write buffer and waits until a RECEIPT covers publish `seq`: the server has
    /// accepted every publish up to it.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] if `seq` was never published; [`ClientError::Timeout`];
    /// the server's ERROR about a publish (LIMIT_EXCEEDED, INVALID_NAME, ...); the error that
    /// ended the connection.
    pub fn wait_receipt(&mut self, seq: u64) -> Result<(), ClientError> {
        self.session.check_open()?;
        if seq > self.session.last_publish_seq {
            return Err(ClientError::InvalidArgument("seq not published yet"));
        }
        let deadline = self.deadline();
        self.write_out()?;
        while self.session.last_receipt < seq {
            self.step(deadline)?;
        }
        Ok(())
    }

    /// The highest publish seq a RECEIPT has confirmed (0 for none).
    pub fn last_receipt(&self) -> u64 {
        self.session.last_receipt
    }

    /// The seq of the last publish buffered (0 for none).
    pub fn last_publish_seq(&self) -> u64 {
        self.session.last_publish_seq
    }

    /// The highest delivery seq received (0 for none); acks may name up to it.
    pub fn last_delivery_seq(&self) -> u64 {
        self.session.last_delivery_seq
    }

    /// Sends PING and waits for its PONG; returns the round-trip time.
    ///
    /// # Errors
    /// [`ClientError::Timeout`]; the error that ended the connection.
    pub fn ping(&mut self) -> Result<Duration, ClientError> {
        self.session.check_open()?;
        let nonce = self.session.next_ping_nonce;
        self.session.next_ping_nonce += 1;
        let deadline = self.deadline();
        let started = Instant::now();
        self.write_buf.push(self.session.max_frame_len, |out| {
            encode_ping(Op::Ping, nonce, out);
            Ok(())
        })?;
        self.write_out()?;
        loop {
            if let Some(Reply::Pong(echoed)) = self.step(deadline)? {
                if echoed == nonce {
                    return Ok(started.elapsed());
                }
            }
        }
    }

    /// Asks for the server's introspection report and returns it: UTF-8 JSON with the schema
    /// of [`crate::protocol::stats::StatsReport`].
    ///
    /// # Errors
    /// [`ClientError::Timeout`]; the error that ended the connection.
    pub fn stats(&mut self) -> Result<String, ClientError> {
        self.session.check_open()?;
        let deadline = self.deadline();
        self.write_buf.push(self.session.max_frame_len, |out| {
            encode_empty(Op::Stats, out);
            Ok(())
        })?;
        self.session.stats_requested += 1;
        let number = self.session.stats_requested;
        self.write_out()?;
        loop {
            if let Some(Reply::Stats { number: n, json }) = self.step(deadline)? {
                if n == number {
                    return Ok(json);
                }
            }
        }
    }

    /// Ends the session: sends BYE and waits for GOODBYE(CLIENT_BYE). Deliveries not yet
    /// received are dropped by the server.
    ///
    /// # Errors
    /// [`ClientError::Goodbye`] with another code; [`ClientError::Timeout`]; the error that
    /// ended the connection.
    pub fn bye(mut self) -> Result<(), ClientError> {
        self.end_session()
    }

    /// BYE, then waits for GOODBYE(CLIENT_BYE).
    fn end_session(&mut self) -> Result<(), ClientError> {
        self.session.check_open()?;
        let deadline = self.deadline();
        self.write_buf.push(self.session.max_frame_len, |out| {
            encode_empty(Op::Bye, out);
            Ok(())
        })?;
        self.write_out()?;
        loop {
            match self.step(deadline) {
                Ok(_) => {}
                Err(ClientError::Goodbye {
                    code: Ok(ErrorCode::ClientBye),
                    ..
                }) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// When bytes last arrived from the server (the connect time if none has yet). Only
    /// calls that read move it.
    fn last_received_at(&self) -> Instant {
        self.last_received_at
    }

    /// Buffers a PING without waiting for its PONG (which is skipped when it arrives).
    fn send_ping(&mut self) -> Result<(), ClientError> {
        self.session.check_open()?;
        let nonce = self.session.next_ping_nonce;
        self.session.next_ping_nonce += 1;
        self.write_buf.push(self.session.max_frame_len, |out| {
            encode_ping(Op::Ping, nonce, out);
            Ok(())
        })
    }

    /// Changes the bound of each blocking wait and socket write.
    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        if timeout == Some(Duration::ZERO) {
            return Err(ClientError::InvalidArgument("timeout must not be zero"));
        }
        self.socket
            .set_write_timeout(timeout)
            .map_err(|e| self.session.fail_io(e))?;
        self.timeout = timeout;
        Ok(())
    }

    /// Drops the connection without sending what is buffered (a write to a peer that went
    /// silent could block for the whole write timeout).
    fn abandon(mut self, why: &str) {
        let error = io::Error::new(io::ErrorKind::ConnectionAborted, why);
        self.session.fail_io(error);
    }

    fn publish_frame(
        &mut self,
        queue: &[u8],
        event: &[u8],
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<u64, ClientError> {
        self.publish_frame_ttl(queue, event, key, None, payload)
    }

    fn publish_frame_ttl(
        &mut self,
        queue: &[u8],
        event: &[u8],
        key: Option<&[u8]>,
        ttl_ms: Option<u32>,
        payload: &[u8],
    ) -> Result<u64, ClientError> {
        self.session.check_open()?;
        if queue.is_empty() {
            return Err(ClientError::InvalidArgument("queue name is empty"));
        }
        self.flush_if_full()?;
        let seq = self.session.last_publish_seq + 1;
        let publish = Publish {
            seq,
            queue,
            event,
            key,
            ttl_ms,
            payload,
        };
        self.write_buf.push(self.session.max_frame_len, |out| {
            encode_publish(&publish, out)
        })?;
        self.session.last_publish_seq = seq;
        Ok(seq)
    }

    fn deadline(&self) -> Deadline {
        Deadline::after(self.timeout)
    }
}

impl Drop for Client {
    /// Sends what is still buffered, best effort (as `BufWriter` does); call
    /// [`Client::flush`] or [`Client::bye`] to see errors.
    fn drop(&mut self) {
        if self.session.is_open() {
            let _ = self.write_out();
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("session_id", &self.session.welcome.session_id)
            .field("peer", &self.socket.peer_addr().ok())
            .field("last_publish_seq", &self.session.last_publish_seq)
            .field("last_receipt", &self.session.last_receipt)
            .field("last_delivery_seq", &self.session.last_delivery_seq)
            .field("open", &self.session.is_open())
            .finish_non_exhaustive()
    }
}

fn named_event(event: &[u8]) -> Result<&[u8], ClientError> {
    if event.is_empty() {
        Err(ClientError::InvalidArgument(
            "event name is empty; the _all variant covers every event",
        ))
    } else {
        Ok(event)
    }
}

#[cfg(test)]
mod tests;
