//! The broker core: sessions, queues, routing, acks, conflation, limits, reconnection, timers.
//!
//! Sans-IO (quinn-proto style): no sockets, no threads, no clock reads. The event loop feeds
//! it with `handle_*` (a decoded frame, a new or lost connection, the current time) and drains
//! it with `poll_*` (bytes to send per connection, connections to close, the next deadline).
//! Every decision about a message (route, queue, conflate, overflow-close, ack, redeliver) is
//! made here, so it is tested deterministically without a socket (see `tests/`).
//!
//! Files: `auth.rs` (credentials, permissions, failed-auth slowdown), `hello.rs` (new
//! sessions, resume, tombstones), `publish.rs` (publish, routing,
//! enqueue, ack), `subscribe.rs`, `heartbeat.rs` (timers), `ending.rs` (closing connections,
//! detaching and ending sessions), `stats.rs`.
//!
//! Invariants:
//! - a connection is closed only by the loop's close pass, after `poll_close` named it; until
//!   then its state stays here, marked closing, and it receives no further frames;
//! - a session is attached to at most one connection, and that connection's state names it;
//! - a session whose end is decided is freed at once (its queue stops growing), leaving a
//!   tombstone so a client that comes back learns why;
//! - per message the hot path allocates only the stored payload; per subscriber it does no
//!   hashing beyond an identity-hashed conflation lookup.

pub mod auth;
mod close;
mod ending;
mod heartbeat;
mod hello;
mod publish;
mod queue;
mod reload;
mod routes;
mod session;
mod stats;
mod store;
mod subscribe;
#[cfg(test)]
mod tests;
mod timers;

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::debug;
use slab::Slab;

pub use close::CloseReason;
pub use reload::ReloadOutcome;
pub use routes::QueueId;
pub use session::SessionKey;
pub use store::MsgKey;

use crate::config::{Config, ListenerSettings};
use crate::metrics::Metrics;
use crate::protocol::codec::{encode_deliver, encode_error, encode_ping, encode_receipt};
use crate::protocol::frame::DELIVER_REDELIVERED;
use crate::protocol::proxy::ProxyHeader;
use crate::protocol::{DecodeError, ErrorCode, Frame, Op};
use auth::{Authenticator, FailureBuckets, Grant};
use close::CLOSE_COUNTERS;
use hello::Tombstones;
use queue::Nodes;
use routes::Routes;
use session::Session;
use store::MessageStore;
use timers::{TimerTarget, Timers};

/// A connection's id: the event loop's slab key and mio token value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub usize);

/// The broker state machine. See the module docs.
#[derive(Debug)]
pub struct Broker {
    config: Config,
    /// Resolved settings per listener, indexed by the listener number the loop passes to
    /// [`Broker::handle_connect_via`].
    listeners: Vec<ListenerSettings>,
    /// Indexed by `ConnId.0`; `None` for free slots.
    conns: Vec<Option<ConnState>>,
    conn_count: usize,
    sessions: Slab<Session>,
    sessions_by_id: HashMap<u64, SessionKey>,
    tombstones: Tombstones,
    nodes: Nodes,
    store: MessageStore,
    routes: Routes,
    timers: Timers,
    dirty: Vec<ConnId>,
    /// Sessions found by `poll_transmit` or a publish, since the last
    /// [`Broker::take_backlogged`], caught up on acks yet holding more than a window of pending
    /// messages: the server, not the client, is what holds them back.
    backlogged: u32,
    /// Deliveries queued (one per message per target session) since the last
    /// [`Broker::take_queued`]: the loop bounds one turn's fan-out work with it.
    queued: u64,
    closing: VecDeque<ConnId>,
    metrics: Metrics,
    closes: [u64; CLOSE_COUNTERS],
    /// Failed resumes by reason, indexed like `ErrorCode::ALL`.
    losses: [u64; ErrorCode::ALL.len()],
    /// Random per broker run; the high 32 bits of every session id, so a resume aimed at an
    /// earlier run is told SERVER_RESTARTED.
    epoch: u32,
    next_session_counter: u32,
    next_message_id: u64,
    next_generation: u64,
    /// The latest `now` given to any `handle_*`. The loop calls `poll_transmit` in the same
    /// turn, so this stands for when its bytes go out (`last_sent`).
    latest_now: Option<Instant>,
    /// Reused target list for fan-out (no allocation per publish once grown).
    targets: Vec<SessionKey>,
    /// Keyed hasher for conflation identities; random per broker so clients cannot aim
    /// collisions.
    conflation_hasher: RandomState,
    is_shutting_down: bool,
    /// Users and signing key in force for new HELLOs (replaced by a reload).
    authenticator: Authenticator,
    /// Failed authentications per source address.
    auth_failures: FailureBuckets,
    /// What every anonymous session is granted, shared: `[0]` on other listeners, `[1]` (with
    /// STATS) on loopback ones.
    anonymous_grants: [Arc<Grant>; 2],
    /// Wall-clock anchor for signed-token expiry: (an `Instant` given to the broker, the Unix
    /// time then). Taken once, at the first HELLO with a signed token, unless a test set it.
    wall_clock: Option<(Instant, SystemTime)>,
}

/// A HELLO held back by the failed-authentication slowdown.
#[derive(Debug)]
struct DelayedHello {
    /// The encoded HELLO, checked at `paused_until`; `None`: refused then, unchecked.
    frame: Option<Box<[u8]>>,
}

/// Per-connection state the broker keeps.
#[derive(Debug)]
struct ConnState {
    peer: SocketAddr,
    /// Which listener it came in on.
    listener: usize,
    /// Tells this connection's live timer entries from stale ones: those of earlier connections
    /// with the same `ConnId`, and its own handshake entry once HELLO is accepted.
    generation: u64,
    session: Option<SessionKey>,
    /// Encoded control frames waiting for `poll_transmit` (WELCOME, SUBSCRIBED, PONG, PING,
    /// ERROR, GOODBYE, STATS_REPLY). Bounded by `max_write_buffer_bytes`.
    control: Vec<u8>,
    is_dirty: bool,
    /// Set once the broker has decided to close; no frames are handled after that.
    close: Option<CloseReason>,
    accepted_at: Instant,
    last_recv: Instant,
    /// When bytes were last handed to the loop for this connection (PING is due an interval
    /// later).
    last_sent: Instant,
    /// Since when output has been waiting that the loop has not taken (it takes output only
    /// while the socket accepts bytes); `None` when nothing waits. Waiting for a whole
    /// heartbeat timeout means the peer stopped reading.
    waiting_since: Option<Instant>,
    /// The last `poll_transmit` stopped at `room` with more to send: the socket, not the
    /// broker, is what holds this connection's output back.
    is_output_blocked: bool,
    ping_nonce: u64,
    /// Publish rate limiting; `None` while the connection has never been charged and its
    /// listener set no rate when it connected (most connections), as if buckets were empty.
    rate: Option<Box<PublishBuckets>>,
    /// Reading this connection is paused until then (rate limit or failed-auth slowdown);
    /// kept after the pause ends to tell one throttling episode from the next.
    paused_until: Option<Instant>,
    /// A HELLO waiting for the failed-authentication slowdown; reading is paused until it is
    /// answered.
    delayed_hello: Option<Box<DelayedHello>>,
}

/// One connection's publish token buckets (messages, payload bytes). Negative means in debt:
/// reading is paused until they refill.
#[derive(Debug)]
struct PublishBuckets {
    publish_tokens: f64,
    publish_byte_tokens: f64,
    bucket_at: Instant,
    /// Total time reading was paused, in µs.
    throttled_us: u64,
}

impl PublishBuckets {
    /// Full buckets at `now` for `settings` (what a connection starts with).
    fn full(settings: &ListenerSettings, now: Instant) -> PublishBuckets {
        PublishBuckets {
            publish_tokens: f64::from(settings.max_publish_rate),
            publish_byte_tokens: settings.max_publish_bytes_rate as f64,
            bucket_at: now,
            throttled_us: 0,
        }
    }
}

impl Broker {
    /// Creates a broker from a validated configuration.
    pub fn new(config: Config) -> Broker {
        let routes = Routes::new(&config.queues);
        let listeners = config.listener_settings();
        let conflation_hasher = RandomState::new();
        let mut epoch_bytes = [0u8; 4];
        let epoch = match getrandom::getrandom(&mut epoch_bytes) {
            Ok(()) => u32::from_be_bytes(epoch_bytes),
            // RandomState is seeded from the OS too; any distinct value will do here.
            Err(_) => std::hash::BuildHasher::hash_one(&conflation_hasher, 0u8) as u32,
        };
        Broker {
            listeners,
            conns: Vec::new(),
            conn_count: 0,
            sessions: Slab::new(),
            sessions_by_id: HashMap::new(),
            tombstones: Tombstones::default(),
            nodes: Nodes::new(),
            store: MessageStore::default(),
            routes,
            timers: Timers::default(),
            dirty: Vec::new(),
            backlogged: 0,
            queued: 0,
            closing: VecDeque::new(),
            metrics: Metrics::default(),
            closes: [0; CLOSE_COUNTERS],
            losses: [0; ErrorCode::ALL.len()],
            epoch: epoch.max(1),
            next_session_counter: 1,
            next_message_id: 1,
            next_generation: 1,
            latest_now: None,
            targets: Vec::new(),
            authenticator: Authenticator::from_config(&config).unwrap_or_else(|error| {
                // Validation parsed it already; a config that skipped validation gets no users.
                log::warn!("authentication config refused: {error}");
                Authenticator::default()
            }),
            config,
            auth_failures: FailureBuckets::default(),
            anonymous_grants: [
                Arc::new(Grant::anonymous(false)),
                Arc::new(Grant::anonymous(true)),
            ],
            wall_clock: None,
            conflation_hasher,
            is_shutting_down: false,
        }
    }

    /// Fixes the wall clock for signed-token expiry: `unix` is the Unix time at `now`
    /// (deterministic tests; otherwise the system clock is read once).
    pub fn set_wall_clock(&mut self, now: Instant, unix: SystemTime) {
        self.wall_clock = Some((now, unix));
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Resolved settings of every listener, in config order.
    pub fn listeners(&self) -> &[ListenerSettings] {
        &self.listeners
    }

    /// Open connections known to the broker.
    pub fn connection_count(&self) -> usize {
        self.conn_count
    }

    /// Counters so far.
    pub fn metrics(&self) -> Metrics {
        self.metrics
    }

    /// True once [`Self::handle_shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.is_shutting_down
    }

    /// Max frame length to decode with on `conn`: smaller until HELLO is accepted.
    pub fn max_frame_len(&self, conn: ConnId) -> u32 {
        match self.conn(conn) {
            Some(state) if state.session.is_some() => self.settings(state.listener).max_frame_len,
            _ => self.config.max_frame_len_before_hello,
        }
    }

    /// True if the broker has decided to close `conn` (or does not know it): the loop should
    /// stop feeding it frames.
    pub fn is_closing(&self, conn: ConnId) -> bool {
        self.conn(conn).is_none_or(|state| state.close.is_some())
    }

    /// A connection was accepted on the first listener. `conn` must not be in use.
    pub fn handle_connect(&mut self, conn: ConnId, peer: SocketAddr, now: Instant) {
        self.handle_connect_via(0, conn, peer, now);
    }

    /// A connection was accepted on listener `listener` (index into [`Self::listeners`]).
    /// `conn` must not be in use.
    pub fn handle_connect_via(
        &mut self,
        listener: usize,
        conn: ConnId,
        peer: SocketAddr,
        now: Instant,
    ) {
        self.latest_now = Some(now);
        if self.conns.len() <= conn.0 {
            self.conns.resize_with(conn.0 + 1, || None);
        }
        let generation = self.new_generation();
        let listener = listener.min(self.listeners.len().saturating_sub(1));
        let settings = self.listeners[listener];
        let has_rate = settings.max_publish_rate != 0 || settings.max_publish_bytes_rate != 0;
        self.conns[conn.0] = Some(ConnState {
            peer,
            listener,
            generation,
            session: None,
            control: Vec::new(),
            is_dirty: false,
            close: None,
            accepted_at: now,
            last_recv: now,
            last_sent: now,
            waiting_since: None,
            is_output_blocked: false,
            ping_nonce: 0,
            rate: has_rate.then(|| Box::new(PublishBuckets::full(&settings, now))),
            paused_until: None,
            delayed_hello: None,
        });
        self.conn_count += 1;
        self.metrics.connections_accepted += 1;
        self.timers.schedule(
            now + self.config.handshake_timeout(),
            TimerTarget::Conn(conn.0),
            generation,
        );
        debug!("connection from {peer} accepted");
    }

    /// A connection was refused at `max_connections` before reaching the broker.
    pub fn handle_refused(&mut self) {
        self.metrics.connections_refused += 1;
        self.closes[CloseReason::ProtocolError(ErrorCode::ServerBusy).counter_index()] += 1;
    }

    /// The PROXY protocol header of `conn` was read: `Proxied` replaces the peer address used
    /// in introspection and logs; `Local` (a proxy health check) keeps the socket's; an error
    /// refuses the connection with ERROR(PROXY_REJECTED).
    pub fn handle_proxy_header(
        &mut self,
        conn: ConnId,
        header: Result<ProxyHeader, &dyn std::fmt::Display>,
    ) {
        match header {
            Ok(ProxyHeader::Proxied { source }) => {
                self.metrics.proxy_headers += 1;
                if let Some(state) = self.conn_mut(conn) {
                    debug!("connection from {}: proxied for {source}", state.peer);
                    state.peer = source;
                }
            }
            Ok(ProxyHeader::Local) => self.metrics.proxy_local_headers += 1,
            Err(error) => {
                self.metrics.proxy_rejected += 1;
                let text = error.to_string();
                self.fail(conn, ErrorCode::ProxyRejected, 0, &text);
            }
        }
    }

    /// If reading `conn` is paused by its publish rate limit at `now`, until when. The loop stops reading a paused connection (TCP back-pressure)
    /// and reads it again at that time.
    pub fn read_paused_until(&self, conn: ConnId, now: Instant) -> Option<Instant> {
        let until = self.conn(conn)?.paused_until?;
        (until > now).then_some(until)
    }

    /// Charges one PUBLISH of `bytes` payload bytes to `conn`'s token buckets; pauses its
    /// reading when they go into debt.
    fn charge_publish(&mut self, conn: ConnId, bytes: usize) {
        let Some(now) = self.latest_now else {
            return;
        };
        let Some(listener) = self.conn(conn).map(|c| c.listener) else {
            return;
        };
        let settings = self.listeners[listener];
        let (rate, byte_rate) = (
            f64::from(settings.max_publish_rate),
            settings.max_publish_bytes_rate as f64,
        );
        if rate == 0.0 && byte_rate == 0.0 {
            return;
        }
        let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) else {
            return;
        };
        // No buckets yet: the listener had no rate at connect (a reload set one since), which
        // left them empty as of then.
        let accepted_at = state.accepted_at;
        let buckets = state.rate.get_or_insert_with(|| {
            Box::new(PublishBuckets {
                publish_tokens: 0.0,
                publish_byte_tokens: 0.0,
                bucket_at: accepted_at,
                throttled_us: 0,
            })
        });
        let elapsed = now
            .saturating_duration_since(buckets.bucket_at)
            .as_secs_f64();
        buckets.bucket_at = now;
        let mut debt_secs: f64 = 0.0;
        if rate > 0.0 {
            buckets.publish_tokens = (buckets.publish_tokens + elapsed * rate).min(rate) - 1.0;
            debt_secs = debt_secs.max(-buckets.publish_tokens / rate);
        }
        if byte_rate > 0.0 {
            buckets.publish_byte_tokens =
                (buckets.publish_byte_tokens + elapsed * byte_rate).min(byte_rate) - bytes as f64;
            debt_secs = debt_secs.max(-buckets.publish_byte_tokens / byte_rate);
        }
        if debt_secs > 0.0 {
            let until = now + Duration::from_secs_f64(debt_secs);
            // Paused time counts once: from the later of now and the current pause's end.
            let from = state.paused_until.map_or(now, |at| at.max(now));
            let added = until.saturating_duration_since(from);
            buckets.throttled_us += u64::try_from(added.as_micros()).unwrap_or(u64::MAX);
            // One episode per stretch of throttling: a pause that starts within a second of
            // the previous one's end continues the episode.
            let is_new_episode = state
                .paused_until
                .is_none_or(|at| now.saturating_duration_since(at) > Duration::from_secs(1));
            if is_new_episode {
                self.metrics.throttle_episodes += 1;
            }
            state.paused_until = Some(until);
        }
    }

    /// Bytes moved by the loop, for the counters.
    pub fn handle_io_bytes(&mut self, read: usize, written: usize) {
        self.metrics.bytes_in += read as u64;
        self.metrics.bytes_out += written as u64;
    }

    /// One decoded frame from `conn`.
    ///
    /// Bounded work: O(frame size + subscribers of the message's queue and event).
    pub fn handle_frame(&mut self, conn: ConnId, frame: Frame<'_>, now: Instant) {
        self.latest_now = Some(now);
        let Some(state) = self.conn_mut(conn) else {
            return;
        };
        if state.close.is_some() {
            return;
        }
        state.last_recv = now;
        if state.delayed_hello.is_some() {
            // The loop stops reading while a HELLO is held, so frames arrive here only after
            // its time: answer it first.
            self.run_delayed_hello(conn, now);
            if self.is_closing(conn) {
                return;
            }
        }
        let Some(state) = self.conn(conn) else {
            return;
        };
        let Some(session) = state.session else {
            match frame {
                Frame::Hello(hello) => self.handle_hello(conn, &hello, now),
                _ => self.fail(
                    conn,
                    ErrorCode::HelloRequired,
                    0,
                    "the first frame must be HELLO",
                ),
            }
            return;
        };
        match frame {
            Frame::Publish(publish) => {
                self.charge_publish(conn, publish.payload.len());
                self.handle_publish(conn, session, &publish);
            }
            Frame::Subscribe(sub) => self.handle_subscribe(conn, session, &sub),
            Frame::Unsubscribe(sub) => self.handle_unsubscribe(conn, session, &sub),
            Frame::Ack(ack) => self.handle_ack(conn, session, &ack),
            Frame::Ping(nonce) => {
                self.push_control(conn, |out| encode_ping(Op::Pong, nonce, out));
            }
            Frame::Pong(_) => {}
            Frame::Bye => self.goodbye(conn, ErrorCode::ClientBye, "bye"),
            Frame::Stats => self.handle_stats(conn, session),
            Frame::Hello(_) => {
                self.fail(conn, ErrorCode::DuplicateHello, 0, "HELLO already accepted");
            }
            Frame::Welcome(_)
            | Frame::Deliver(_)
            | Frame::Receipt(_)
            | Frame::Subscribed(_)
            | Frame::Unsubscribed(_)
            | Frame::Error(_)
            | Frame::Goodbye(_)
            | Frame::StatsReply(_) => {
                let text = "server-to-client op sent by a client";
                self.fail(conn, ErrorCode::UnknownOp, 0, text);
            }
        }
    }

    /// The bytes from `conn` could not be decoded: tell it why and close it.
    pub fn handle_decode_error(&mut self, conn: ConnId, error: &DecodeError) {
        if self.is_closing(conn) {
            return;
        }
        self.fail(conn, error.code(), 0, &error.to_string());
    }

    /// As [`Broker::handle_decode_error`], for bytes of another protocol (TLS, HTTP): the
    /// ERROR's text says so.
    pub fn handle_foreign_protocol(
        &mut self,
        conn: ConnId,
        error: &DecodeError,
        foreign: crate::protocol::sniff::ForeignProtocol,
    ) {
        if self.is_closing(conn) {
            return;
        }
        self.fail(conn, error.code(), 0, foreign.server_text());
    }

    /// The connection is gone (or the loop finished closing it). Frees its state. If the
    /// broker had not decided to close it, `reason` is recorded and its session is detached
    /// (kept for the listener's keep-alive) rather than ended.
    pub fn handle_disconnect(&mut self, conn: ConnId, reason: CloseReason, now: Instant) {
        self.latest_now = Some(now);
        let Some(state) = self.conns.get_mut(conn.0).and_then(Option::take) else {
            return;
        };
        self.conn_count -= 1;
        let reason = state.close.unwrap_or(reason);
        self.closes[reason.counter_index()] += 1;
        if let Some(session) = state.session {
            self.detach(session, now);
        }
        let id = state
            .session
            .and_then(|key| self.sessions.get(key.0))
            .map(|s| s.id);
        let id = id.map_or(String::new(), |id| format!(" session {id:016x}"));
        debug!("connection from {}{id} closed: {reason}", state.peer);
    }

    /// Runs every timer due at `now`: handshake timeouts, heartbeats, write stalls, detached
    /// session expiry, old tombstones.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.latest_now = Some(now);
        while let Some((target, generation)) = self.timers.pop_due(now) {
            match target {
                TimerTarget::Conn(conn) => self.check_conn(ConnId(conn), generation, now),
                TimerTarget::Session(key) => self.check_session(SessionKey(key), generation),
            }
        }
        self.tombstones.expire(now);
    }

    /// Starts a graceful shutdown: every connection gets GOODBYE(SERVER_SHUTDOWN) and is queued
    /// for closing; every session, detached ones included, ends.
    pub fn handle_shutdown(&mut self) {
        self.is_shutting_down = true;
        for index in 0..self.conns.len() {
            let conn = ConnId(index);
            if !self.is_closing(conn) {
                self.goodbye(conn, ErrorCode::ServerShutdown, "server shutting down");
            }
        }
        let detached: Vec<SessionKey> = self.sessions.iter().map(|(k, _)| SessionKey(k)).collect();
        for key in detached {
            self.end_session(key, ErrorCode::ServerShutdown);
        }
    }

    /// Appends bytes for `conn` to `out`: pending control frames, a batched RECEIPT,
    /// redeliveries after a resume, then new deliveries while `out.len() < room` and the
    /// in-flight window allows. Returns the number of bytes appended.
    ///
    /// Bounded work: stops at `room` (plus one frame).
    pub fn poll_transmit(&mut self, conn: ConnId, out: &mut Vec<u8>, room: usize) -> usize {
        let start = out.len();
        let latest_now = self.latest_now;
        let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) else {
            return 0;
        };
        state.waiting_since = None;
        state.is_output_blocked = false;
        if !state.control.is_empty() {
            out.extend_from_slice(&state.control);
            // Control frames are rare (WELCOME, SUBSCRIBED, PING/PONG): free the buffer rather
            // than keep its capacity on every idle connection.
            state.control = Vec::new();
        }
        if let (None, Some(key)) = (state.close, state.session) {
            let session = &mut self.sessions[key.0];
            if session.is_receipt_due {
                encode_receipt(session.last_publish_seq, out);
                session.is_receipt_due = false;
            }
            if session.queue.pending_len() > session.window
                && session.queue.in_flight() <= session.window / 2
            {
                self.backlogged += 1;
            }
            while out.len() < room {
                let Some((msg, seq)) = session.queue.next_redelivery() else {
                    break;
                };
                let message = self.store.get(msg);
                let queue = &self.routes.queue(message.queue).name;
                // Cannot fail: names were ≤ 255 bytes when decoded, payload ≤ max_frame_len.
                let _ = encode_deliver(
                    seq,
                    message.id,
                    DELIVER_REDELIVERED,
                    queue,
                    message.event(),
                    message.payload(),
                    out,
                );
                session.redelivered += 1;
                self.metrics.messages_redelivered += 1;
            }
            while out.len() < room && session.queue.span() < session.window {
                let Some((msg, node, seq)) = session.queue.send_next(&mut self.nodes) else {
                    break;
                };
                let message = self.store.get(msg);
                if let (Some(hash), Some(conflation)) =
                    (message.conflation, &mut session.conflation)
                {
                    if conflation.get(&hash) == Some(&node) {
                        conflation.remove(&hash);
                    }
                }
                let queue = &self.routes.queue(message.queue).name;
                let _ = encode_deliver(
                    seq,
                    message.id,
                    0,
                    queue,
                    message.event(),
                    message.payload(),
                    out,
                );
                session.delivered += 1;
                self.metrics.messages_delivered += 1;
            }
            if out.len() >= room && session.has_output() {
                // Cut off by `room`: the rest waits for the socket to take more.
                state.waiting_since = latest_now;
                state.is_output_blocked = true;
            }
        }
        let appended = out.len() - start;
        if appended > 0 {
            state.last_sent = latest_now.unwrap_or(state.last_sent);
        }
        appended
    }

    /// Whether `poll_transmit` found, since the last call, a session that acks as fast as it
    /// is sent to but still holds more than a window of pending messages. Then the server is
    /// the bottleneck, and reading more publishes would only deepen every queue (and make
    /// each delivery slower as the queues leave the CPU caches): the loop should read only
    /// the connections that may carry acks ([`Self::may_defer_read`]) until the backlogs
    /// drain. A subscriber that is slow to read or ack does not count, so a slow consumer
    /// never slows the publishers; it is closed at its queue limit instead.
    pub fn take_backlogged(&mut self) -> bool {
        std::mem::take(&mut self.backlogged) > 0
    }

    /// Deliveries queued since the last call (resets the count). The loop calls it before
    /// reading each connection and stops reading that connection for the turn past a budget,
    /// so one turn never queues much more than the next flush can send (a turn's queue nodes
    /// stay in the CPU caches), whatever the subscribers' ack timing.
    pub fn take_queued(&mut self) -> u64 {
        std::mem::take(&mut self.queued)
    }

    /// Deliveries queued since the last [`Self::take_queued`].
    pub fn queued(&self) -> u64 {
        self.queued
    }

    /// Whether a backlog of the server's making was seen since the last
    /// [`Self::take_backlogged`] (without resetting it): the loop stops reading publishers
    /// mid-turn then, so one turn's intake stays near one window per subscriber.
    pub fn has_backlog(&self) -> bool {
        self.backlogged > 0
    }

    /// Whether reading `conn` may wait while the server drains backlogs: it has a session
    /// with nothing in flight, so nothing it sends can be an ack that lets deliveries go on.
    pub fn may_defer_read(&self, conn: ConnId) -> bool {
        self.conn(conn)
            .filter(|state| state.close.is_none())
            .and_then(|state| state.session)
            .is_some_and(|key| self.sessions[key.0].queue.in_flight() == 0)
    }

    /// Next connection with something new to send. Each connection is returned once per
    /// `mark_dirty`, however many times it was marked.
    pub fn poll_dirty(&mut self) -> Option<ConnId> {
        while let Some(conn) = self.dirty.pop() {
            if let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) {
                state.is_dirty = false;
                return Some(conn);
            }
        }
        None
    }

    /// Next connection the broker decided to close, and why. The loop should write what
    /// `poll_transmit` still yields for it (best effort), close the socket, then call
    /// [`Self::handle_disconnect`].
    pub fn poll_close(&mut self) -> Option<(ConnId, CloseReason)> {
        while let Some(conn) = self.closing.pop_front() {
            if let Some(reason) = self.conn(conn).and_then(|state| state.close) {
                return Some((conn, reason));
            }
        }
        None
    }

    /// The earliest deadline the loop must wake for.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    // ---- helpers ----

    fn settings(&self, listener: usize) -> &ListenerSettings {
        // Invariant: listener indexes are clamped to the list at connect; config validation
        // guarantees at least one listener.
        &self.listeners[listener]
    }

    fn conn(&self, conn: ConnId) -> Option<&ConnState> {
        self.conns.get(conn.0).and_then(Option::as_ref)
    }

    fn conn_mut(&mut self, conn: ConnId) -> Option<&mut ConnState> {
        self.conns.get_mut(conn.0).and_then(Option::as_mut)
    }

    /// `conn` for a log line: its peer, and its session once HELLO made one ("127.0.0.1:5000
    /// session 000000000000002a"). The `ConnId` slot is reused, so it names nothing.
    pub(super) fn who(&self, conn: ConnId) -> String {
        let Some(state) = self.conn(conn) else {
            return String::from("a closed connection");
        };
        match state.session.and_then(|key| self.sessions.get(key.0)) {
            Some(session) => format!("{} session {:016x}", state.peer, session.id),
            None => state.peer.to_string(),
        }
    }

    fn new_generation(&mut self) -> u64 {
        let generation = self.next_generation;
        self.next_generation += 1;
        generation
    }

    fn mark_dirty(&mut self, conn: ConnId) {
        let now = self.latest_now;
        if let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) {
            if state.waiting_since.is_none() {
                state.waiting_since = now;
            }
            if !state.is_dirty {
                state.is_dirty = true;
                self.dirty.push(conn);
            }
        }
    }

    /// Encodes a control frame for `conn`; a client that lets control frames pile up past
    /// `max_write_buffer_bytes` (never reading) is closed with SLOW_CONSUMER.
    fn push_control(&mut self, conn: ConnId, encode: impl FnOnce(&mut Vec<u8>)) {
        let limit = self.config.max_write_buffer_bytes;
        let Some(state) = self.conn_mut(conn) else {
            return;
        };
        encode(&mut state.control);
        let is_over = state.control.len() > limit && state.close.is_none();
        if is_over {
            state.control.clear();
            self.drop_connection(conn, ErrorCode::SlowConsumer, "write buffer limit exceeded");
        }
        self.mark_dirty(conn);
    }

    /// Refuses one request with ERROR(NOT_AUTHORIZED), not fatal: the connection goes on.
    fn deny(&mut self, conn: ConnId, ref_seq: u64, text: &str) {
        self.metrics.not_authorized += 1;
        debug!("{}: NOT_AUTHORIZED: {text}", self.who(conn));
        self.push_control(conn, |out| {
            let _ = encode_error(ErrorCode::NotAuthorized, false, ref_seq, text, out);
        });
    }

    fn handle_stats(&mut self, conn: ConnId, session: SessionKey) {
        if !self.sessions[session.0].grant.permissions.admin {
            self.deny(conn, 0, "STATS needs an admin session");
            return;
        }
        let max_frame_len = self.max_frame_len(conn) as usize;
        let json = stats::render_json(self, max_frame_len - crate::protocol::HEADER_LEN);
        self.push_control(conn, |out| {
            let _ = crate::protocol::codec::encode(&Frame::StatsReply(&json), out);
        });
    }
}

fn clamp_u32(value: u128) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}
