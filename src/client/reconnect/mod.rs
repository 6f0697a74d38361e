//! [`ReconnectingClient`]: the state a resume needs (session, subscriptions, last delivery
//! seq received, unreceipted publishes) and the public calls. Keeping a connection up is in
//! `link`; the outbound queue in `outbound`; delays between attempts in `backoff`.
//!
//! Invariants: every delivery taken from a connection passes through [`accept`] exactly once,
//! in the order received, so the inbox holds each seq once and in order; the outbound queue
//! holds consecutive seqs ending at `last_publish_seq`, and while the link is up the
//! connection has been handed all of them (its own numbering equals ours).

use std::collections::VecDeque;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::protocol::{EncodeError, Op, Resume, Welcome, MAX_NAME_LEN};

use self::backoff::Backoff;
use self::link::{inner_timeout, recovery, Recovery};
pub use self::options::{OnFull, ReconnectOptions, ReconnectStats};
use self::outbound::{publish_size, Outbound};
use super::error::CloseCause;
use super::{Client, ClientError, ClientOptions, Delivery, Event, TlsOptions};

mod backoff;
mod link;
mod options;
mod outbound;
mod receive;
mod subscriptions;
#[cfg(test)]
mod tests;

/// A [`Client`] that outlives its connections: it reconnects and resumes its session
/// (protocol.md §Reconnection).
///
/// It keeps what a resume needs: the session id and resume token from WELCOME, the
/// subscriptions, the highest delivery seq received (R) and the publishes not yet receipted
/// (the outbound queue, bounded). When a connection fails (EOF, reset, a GOODBYE that only
/// detaches the session, a write that cannot progress, or nothing received for WELCOME's
/// `heartbeat_timeout_ms`), it reconnects with exponential backoff and sends HELLO with the
/// resume block: R, and the lowest publish seq it still holds. Then:
///
/// - **RESUMED**: it drops the publishes WELCOME's `last_publish_seq` covers and sends the
///   rest again, in order, with their original seqs; the server resends the deliveries after
///   R. An [`Event::Resumed`] marks the spot in the event stream.
/// - **LOST**: the old session and the messages it held are gone; [`Event::Lost`] says why and
///   how many. The client subscribes again, and publishes the messages the old session never
///   receipted again in the new session, with new seqs. That is at least once, not exactly
///   once: the old session may have accepted some of them before it ended.
///
/// Deliveries with a seq ≤ R are dropped, so the application sees each message once and in
/// order within a session. A delivery is acked when [`ReconnectingClient::recv`] (or
/// `recv_timeout`, `try_recv`) hands it to the application; the ack goes out with the next
/// call that reads or writes. Receipts are tracked here and not returned as events.
///
/// # Blocking
///
/// Like [`Client`], it does I/O only inside calls, on the caller's thread. While there is no
/// connection, a call that needs one waits for the next attempt: `recv_timeout` no longer than
/// its timeout (an attempt under way may overrun it by up to [`ClientOptions::timeout`]),
/// `publish` not at all unless the outbound queue is full ([`OnFull`]), the others until
/// reconnected or [`ReconnectOptions::give_up_after`].
///
/// # What ends it
///
/// Errors a reconnection cannot fix are returned and end the client; every later call returns
/// them again (after the events received before them): a fatal ERROR (the request was bad;
/// resending it would fail again), GOODBYE(TAKEN_OVER) (another connection resumed this
/// session; fighting over it would not help), GOODBYE(CLIENT_BYE), and
/// [`ClientError::GaveUp`]. (One GOODBYE(TAKEN_OVER) shortly after an attempt that gave up
/// waiting for WELCOME is answered with a resume instead: that attempt's HELLO, arriving late,
/// may have been the taker.) The first connection is not retried: an address that never worked
/// is more likely a mistake than an outage.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use weir::client::{ClientOptions, Event, ReconnectOptions, ReconnectingClient};
///
/// # fn main() -> Result<(), weir::client::ClientError> {
/// let options = ReconnectOptions::default();
/// let mut client =
///     ReconnectingClient::connect("127.0.0.1:7400", &ClientOptions::default(), &options)?;
/// client.subscribe_all("db")?;
/// client.publish("db", "update", b"row 7")?;
/// client.wait_receipted()?;
/// while let Some(event) = client.recv_timeout(Duration::from_secs(1))? {
///     match event {
///         Event::Deliver(delivery) => println!("{:?}", delivery.payload),
///         Event::Lost { reason, missed, .. } => eprintln!("lost: {reason:?}, {missed:?}"),
///         _ => {}
///     }
/// }
/// client.bye()
/// # }
/// ```
pub struct ReconnectingClient {
    addrs: Vec<SocketAddr>,
    client_options: ClientOptions,
    /// Every connection attempt redoes the TLS handshake with these.
    tls: Option<TlsOptions>,
    options: ReconnectOptions,
    link: Link,
    /// The last WELCOME: session id, resume token and limits in force.
    welcome: Welcome,
    /// Subscriptions (plain, group memberships, patterns), in the order they were made.
    subscriptions: Vec<KeptSubscription>,
    /// Set by LOST: the new session has none of `subscriptions` yet.
    resubscribe: bool,
    inbox: Inbox,
    /// Highest delivery seq of the session in force handed to the application.
    consumed_seq: u64,
    /// Highest delivery seq acked on the connection in force (0 after a reconnection).
    acked_seq: u64,
    /// Highest publish seq assigned in the session in force.
    last_publish_seq: u64,
    outbound: Outbound,
    backoff: Backoff,
    last_ping_at: Instant,
    /// When an attempt last gave up waiting for WELCOME after sending HELLO.
    abandoned_hello_at: Option<Instant>,
    /// Why the last connection was lost (for [`ReconnectingClient::disconnect_reason`]).
    lost_because: Option<String>,
    stats: ReconnectStats,
}

/// The connection, or why there is none.
#[derive(Debug)]
enum Link {
    /// Boxed: a `Client` with its buffers' bookkeeping is far larger than the other states.
    Up(Box<Client>),
    Down {
        /// When the connection was lost; `give_up_after` counts from here.
        since: Instant,
        /// Failed attempts since then.
        failures: u32,
        next_attempt_at: Instant,
    },
    Ended(CloseCause),
}

/// Events received and not yet handed to the application.
#[derive(Debug, Default)]
struct Inbox {
    items: VecDeque<Item>,
    /// R: the highest delivery seq received in the session in force (0 for none).
    last_delivery_seq: u64,
    /// Bumped by LOST; deliveries of an earlier session are never acked.
    generation: u64,
}

#[derive(Debug)]
enum Item {
    Deliver { delivery: Delivery, generation: u64 },
    Notice(Event),
}

/// One subscription as the client keeps it to make it again on a new session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct KeptSubscription {
    queue: Vec<u8>,
    /// `None` = ALL_EVENTS.
    event: Option<Vec<u8>>,
    group: Option<Vec<u8>>,
    is_pattern: bool,
}

impl KeptSubscription {
    fn new(queue: &[u8], event: Option<&[u8]>, group: Option<&[u8]>, is_pattern: bool) -> Self {
        KeptSubscription {
            queue: queue.to_vec(),
            event: event.map(<[u8]>::to_vec),
            group: group.map(<[u8]>::to_vec),
            is_pattern,
        }
    }

    /// The SUBSCRIBE body it stands for.
    pub(super) fn view(&self) -> crate::protocol::Subscription<'_> {
        crate::protocol::Subscription {
            queue: &self.queue,
            event: self.event.as_deref(),
            group: self.group.as_deref(),
            is_pattern: self.is_pattern,
            start: None,
        }
    }
}

impl ReconnectingClient {
    /// Connects once (not retried) and starts a new session.
    ///
    /// # Errors
    /// As [`Client::connect`]; [`ClientError::InvalidArgument`] for invalid `options`.
    pub fn connect(
        addr: impl ToSocketAddrs,
        client_options: &ClientOptions,
        options: &ReconnectOptions,
    ) -> Result<ReconnectingClient, ClientError> {
        ReconnectingClient::connect_with(addr, client_options, None, options)
    }

    /// As [`ReconnectingClient::connect`], over TLS (see [`Client::connect_tls`]); every
    /// reconnection redoes the TLS handshake with `tls`.
    ///
    /// # Errors
    /// As [`Client::connect_tls`]; [`ClientError::InvalidArgument`] for invalid `options`.
    pub fn connect_tls(
        addr: impl ToSocketAddrs,
        client_options: &ClientOptions,
        tls: &TlsOptions,
        options: &ReconnectOptions,
    ) -> Result<ReconnectingClient, ClientError> {
        ReconnectingClient::connect_with(addr, client_options, Some(tls), options)
    }

    fn connect_with(
        addr: impl ToSocketAddrs,
        client_options: &ClientOptions,
        tls: Option<&TlsOptions>,
        options: &ReconnectOptions,
    ) -> Result<ReconnectingClient, ClientError> {
        options.validate()?;
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(ClientError::Io)?.collect();
        let mut client = Client::handshake(&addrs[..], client_options, tls, None)?;
        let welcome = *client.welcome();
        client.set_timeout(inner_timeout(client_options.timeout, &welcome))?;
        Ok(ReconnectingClient {
            addrs,
            client_options: client_options.clone(),
            tls: tls.cloned(),
            options: options.clone(),
            link: Link::Up(Box::new(client)),
            welcome,
            subscriptions: Vec::new(),
            resubscribe: false,
            inbox: Inbox::default(),
            consumed_seq: 0,
            acked_seq: 0,
            last_publish_seq: welcome.last_publish_seq,
            outbound: Outbound::new(options.outbound_capacity, options.outbound_capacity_bytes),
            backoff: Backoff::new(options.initial_backoff, options.max_backoff, options.jitter),
            last_ping_at: Instant::now(),
            abandoned_hello_at: None,
            lost_because: None,
            stats: ReconnectStats::default(),
        })
    }

    /// The session in force (it changes after [`Event::Lost`]).
    pub fn session_id(&self) -> u64 {
        self.welcome.session_id
    }

    /// The last WELCOME: the session, its resume token and the limits in force.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The resume block this client would send now: for handing the session to another
    /// process, or for tests.
    pub fn resume_block(&self) -> Resume {
        Resume {
            session_id: self.welcome.session_id,
            resume_token: self.welcome.resume_token,
            last_delivery_seq: self.inbox.last_delivery_seq,
            first_resendable_publish_seq: self
                .outbound
                .first_seq()
                .unwrap_or(self.last_publish_seq + 1),
        }
    }

    /// True while a connection is up (as far as the client knows without reading).
    pub fn is_connected(&self) -> bool {
        matches!(self.link, Link::Up(_))
    }

    /// While there is no connection (it was lost and the client is reconnecting): why it was
    /// lost, e.g. "the server ended the session: SERVER_SHUTDOWN". `None` while connected.
    pub fn disconnect_reason(&self) -> Option<&str> {
        match self.link {
            Link::Down { .. } => self.lost_because.as_deref(),
            _ => None,
        }
    }

    /// The highest delivery seq received in the session in force (0 for none).
    pub fn last_delivery_seq(&self) -> u64 {
        self.inbox.last_delivery_seq
    }

    /// Publishes not yet receipted (sent or waiting to be).
    pub fn unreceipted(&self) -> usize {
        self.outbound.len()
    }

    /// What the client has been through: reconnections, resumes, losses, duplicates dropped.
    pub fn stats(&self) -> ReconnectStats {
        self.stats
    }

    /// Publishes `payload` as `event` on `queue`: keeps a copy in the outbound queue until a
    /// RECEIPT covers it, and sends it (buffered, like [`Client::publish`]). Returns its seq
    /// in the session in force; after [`Event::Lost`] the messages still held get new seqs.
    ///
    /// Without a connection the message is only queued, and sent after the resume.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`], [`ClientError::Encode`] or
    /// [`ClientError::FrameTooLarge`] for a publish the server would refuse (nothing is
    /// kept); [`ClientError::OutboundFull`] with [`OnFull::Error`]; the errors that end the
    /// client.
    pub fn publish(
        &mut self,
        queue: impl AsRef<[u8]>,
        event: impl AsRef<[u8]>,
        payload: impl AsRef<[u8]>,
    ) -> Result<u64, ClientError> {
        self.publish_frame(queue.as_ref(), event.as_ref(), None, payload.as_ref())
    }

    /// Like [`ReconnectingClient::publish`], with a time to live (see
    /// [`Client::publish_with_ttl`]; needs [`ClientOptions::extensions`]). A publish resent
    /// after a resume or a loss starts its time to live again.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] without [`ClientOptions::extensions`]; otherwise as
    /// [`ReconnectingClient::publish`].
    pub fn publish_with_ttl(
        &mut self,
        queue: impl AsRef<[u8]>,
        event: impl AsRef<[u8]>,
        payload: impl AsRef<[u8]>,
        ttl_ms: u32,
    ) -> Result<u64, ClientError> {
        self.publish_frame_ttl(
            queue.as_ref(),
            event.as_ref(),
            None,
            Some(ttl_ms),
            payload.as_ref(),
        )
    }

    /// Like [`ReconnectingClient::publish`], with a conflation key (see
    /// [`Client::publish_conflated`]).
    ///
    /// # Errors
    /// As [`ReconnectingClient::publish`].
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

    /// Sends what is buffered (acks included) and takes in receipts; without a connection,
    /// makes a reconnection attempt if one is due.
    ///
    /// # Errors
    /// The errors that end the client.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        match &mut self.link {
            Link::Ended(cause) => Err(cause.to_error()),
            Link::Down { .. } => self.ensure_up(Some(Instant::now())).map(|_| ()),
            Link::Up(client) => {
                let mut result = Ok(());
                if self.consumed_seq > self.acked_seq {
                    result = client.ack(self.consumed_seq);
                    if result.is_ok() {
                        self.acked_seq = self.consumed_seq;
                    }
                }
                let result = result.and_then(|()| client.flush());
                self.take_receipts();
                match result {
                    Ok(()) => self.check_liveness(),
                    // The socket took nothing for a whole heartbeat timeout.
                    Err(ClientError::Timeout) => {
                        self.lose_link(String::from("a write made no progress"));
                        Ok(())
                    }
                    Err(e) => self.recover(e),
                }
            }
        }
    }

    /// Waits until every publish made so far is receipted, reconnecting (and resending) as
    /// needed.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] if no receipt arrives for [`ClientOptions::timeout`] while
    /// connected; the errors that end the client (see
    /// [What ends it](ReconnectingClient#what-ends-it)).
    pub fn wait_receipted(&mut self) -> Result<(), ClientError> {
        self.wait_for_receipt(self.last_publish_seq)
    }

    /// Returns the next event: a delivery (each message once, in order), or
    /// [`Event::Resumed`] / [`Event::Lost`] where a reconnection happened. Waits up to
    /// [`ClientOptions::timeout`].
    ///
    /// # Errors
    /// [`ClientError::Timeout`] (the client stays usable); the errors that end the client,
    /// after the events received before them.
    pub fn recv(&mut self) -> Result<Event, ClientError> {
        match self.recv_until(self.deadline())? {
            Some(event) => Ok(event),
            None => Err(ClientError::Timeout),
        }
    }

    /// Like [`ReconnectingClient::recv`], but waits up to `timeout` and returns `Ok(None)` if
    /// nothing came. `Duration::ZERO` takes only what has already arrived.
    ///
    /// # Errors
    /// The errors that end the client, after the events received before them.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Event>, ClientError> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    /// The next event already received, without reading or writing anything. Acks for what
    /// it hands out go with the next call that does I/O.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.pop_event()
    }

    /// Sends PING and waits for its PONG, reconnecting if the connection turns out dead;
    /// returns the round-trip time. Keeps an idle session alive.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] past [`ClientOptions::timeout`]; the errors that end the
    /// client.
    pub fn ping(&mut self) -> Result<Duration, ClientError> {
        let deadline = self.deadline();
        self.with_link(deadline, Client::ping)
    }

    /// Acks what was handed out, then ends the session (BYE, then GOODBYE(CLIENT_BYE)),
    /// reconnecting first if need be.
    /// Publishes not yet receipted are dropped: call [`ReconnectingClient::wait_receipted`]
    /// first to keep them.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] past [`ClientOptions::timeout`]; the errors that end the
    /// client.
    pub fn bye(mut self) -> Result<(), ClientError> {
        let deadline = self.deadline();
        // What the application consumed is acked first, so the server counts it delivered
        // (unless a LOST on the way replaced the session those seqs belong to).
        let consumed = self.consumed_seq;
        let session_id = self.welcome.session_id;
        self.with_link(deadline, |client| {
            if consumed > 0 && client.session_id() == session_id {
                client.ack(consumed)?;
            }
            client.end_session()
        })
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
        if ttl_ms.is_some() && !self.client_options.extensions {
            let text = "a time to live needs ClientOptions::extensions";
            return Err(ClientError::InvalidArgument(text));
        }
        if let Link::Ended(cause) = &self.link {
            return Err(cause.to_error());
        }
        check_publish(queue, event, key, payload, self.welcome.max_frame_len)?;
        let size = publish_size(queue, event, key, payload);
        while !self.outbound.has_room(size) {
            match self.options.on_full {
                OnFull::Block => {
                    let oldest = self.outbound.first_seq().unwrap_or_default();
                    self.wait_for_receipt(oldest)?;
                }
                OnFull::Error => {
                    self.take_in()?;
                    if !self.outbound.has_room(size) {
                        return Err(ClientError::OutboundFull);
                    }
                }
            }
        }
        let seq = self.last_publish_seq + 1;
        self.outbound.push(seq, queue, event, key, payload);
        self.outbound.set_last_ttl(ttl_ms);
        self.last_publish_seq = seq;
        match &mut self.link {
            Link::Up(client) => {
                match client.publish_frame_ttl(queue, event, key, ttl_ms, payload) {
                    Ok(sent) => debug_assert_eq!(sent, seq, "the connection numbers as we do"),
                    // Whatever went wrong, the connection did not take this publish: its numbering
                    // and ours now differ, so only a new connection can carry on. (A timeout is a
                    // write that made no progress for a heartbeat timeout.)
                    Err(e) if recovery(&e) == Recovery::End => {
                        self.end(&e);
                        return Err(e);
                    }
                    Err(e) => self.lose_link(e.to_string()),
                }
            }
            Link::Down { .. } => {
                self.ensure_up(Some(Instant::now()))?;
            }
            Link::Ended(_) => {}
        }
        self.take_receipts();
        self.check_liveness()?;
        Ok(seq)
    }

    /// Waits until a RECEIPT covers publish `seq` (or nothing up to it is held).
    fn wait_for_receipt(&mut self, seq: u64) -> Result<(), ClientError> {
        let mut progress_deadline = self.deadline();
        let mut oldest = self.outbound.first_seq();
        loop {
            self.take_receipts();
            match self.outbound.first_seq() {
                Some(first) if first <= seq => {
                    if Some(first) != oldest {
                        oldest = Some(first);
                        progress_deadline = self.deadline();
                    }
                }
                _ => return Ok(()),
            }
            if !self.is_connected() {
                self.ensure_up(None)?;
                // The wait for a receipt starts again on the new connection.
                progress_deadline = self.deadline();
            }
            let Link::Up(client) = &mut self.link else {
                continue;
            };
            let wanted = seq.min(client.last_publish_seq());
            match client.wait_receipt(wanted) {
                Ok(()) => {}
                Err(ClientError::Timeout) => {
                    self.check_liveness()?;
                    if progress_deadline.is_some_and(|at| Instant::now() >= at) {
                        return Err(ClientError::Timeout);
                    }
                }
                Err(e) => self.recover(e)?,
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.client_options
            .timeout
            .and_then(|timeout| Instant::now().checked_add(timeout))
    }
}

impl fmt::Debug for ReconnectingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectingClient")
            .field("session_id", &self.welcome.session_id)
            .field("link", &self.link)
            .field("last_delivery_seq", &self.inbox.last_delivery_seq)
            .field("last_publish_seq", &self.last_publish_seq)
            .field("outbound", &self.outbound)
            .field("stats", &self.stats)
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

/// Shortest blocking read: below this a timed read costs more than it saves.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// Refuses locally what the server would refuse (and what could never be resent).
fn check_publish(
    queue: &[u8],
    event: &[u8],
    key: Option<&[u8]>,
    payload: &[u8],
    max_frame_len: u32,
) -> Result<(), ClientError> {
    if queue.is_empty() {
        return Err(ClientError::InvalidArgument("queue name is empty"));
    }
    let key_len = key.map_or(0, <[u8]>::len);
    if queue.len().max(event.len()).max(key_len) > MAX_NAME_LEN {
        return Err(ClientError::Encode(EncodeError::NameTooLong));
    }
    // Length field: version + op, seq, flags, the three names with their length bytes.
    let len = 2 + 8 + 1 + 1 + queue.len() + 1 + event.len() + key.map_or(0, |k| 1 + k.len());
    let len = len + payload.len();
    if len > max_frame_len as usize {
        return Err(ClientError::FrameTooLarge {
            len,
            max: max_frame_len,
        });
    }
    Ok(())
}
