//! The broker core: sessions, queues, routing, acks, conflation, limits, reconnection, timers.
//!
//! Sans-IO (quinn-proto style): no sockets, no threads, no clock reads. The event loop feeds
//! it with `handle_*` (a decoded frame, a new or lost connection, the current time) and drains
//! it with `poll_*` (bytes to send per connection, connections to close, the next deadline).
//! Every decision about a message (route, queue, conflate, overflow-close, ack, redeliver) is
//! made here, so it is tested deterministically without a socket (see `tests/`).
//!
//! # Call order (one loop turn)
//!
//! 1. [`Broker::poll_timeout`] gives the deadline to sleep until (now, while a connection
//!    waits for another read).
//! 2. Per new connection: [`Broker::handle_accept`] (take it or refuse it), then
//!    [`Broker::handle_connect_via`]; transport events ([`Broker::handle_proxy_header`]) as
//!    the loop's layers report them.
//! 3. Reads: for each readable connection and those [`Broker::poll_reads`] names,
//!    [`Broker::handle_readable`], then [`Broker::handle_input`] per chunk while the answer
//!    is [`Intake::More`].
//! 4. [`Broker::handle_timeout`].
//! 5. Flush pass: [`Broker::poll_dirty`], then [`Broker::poll_transmit`] per connection while
//!    its socket takes bytes ([`Broker::handle_written`] counts them); then
//!    [`Broker::handle_turn_end`].
//! 6. Close pass: [`Broker::poll_close`]; a last `poll_transmit`; [`Broker::handle_disconnect`]
//!    (also for EOF and I/O errors the loop saw itself).
//!
//! # Files
//!
//! `intake.rs` (bytes in, frames out), `flow.rs` (read and fan-out budgets, rate pauses,
//! draining), `transmit.rs` (bytes out, closes), `hello.rs` (new sessions, resume,
//! tombstones), `publish.rs` (publish, routing, enqueue, ack), `subscribe.rs`, `routes.rs`
//! (named queues and their subscribers), `delivery_queue.rs` (a session's pending and
//! in-flight messages), `store.rs` (payloads, stored once), `heartbeat.rs` and `timers.rs`,
//! `ending.rs` (closing connections, detaching and ending sessions), `auth.rs` (failed-auth
//! slowdown), `reload.rs`, `origin.rs` (time and seed from outside), `stats.rs`.
//!
//! Password checks leave the core as requests: after the read pass and `handle_timeout` the
//! driver takes them with `poll_password_check` and runs them where it likes (the server: a
//! worker pool), handing each result back with `handle_password_checked` (call order in
//! `password.rs`). The global memory budget is `memory.rs`; per-identity and per-address
//! limits `owners.rs`.
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
mod dashboard;
mod delivery_queue;
mod ending;
mod expiry;
mod flow;
mod groups;
mod heartbeat;
mod hello;
mod intake;
pub mod journal;
mod memory;
mod origin;
mod owners;
mod password;
mod patterns;
mod publish;
mod reload;
mod routes;
mod session;
mod stats;
mod store;
mod subscribe;
#[cfg(test)]
mod tests;
mod timers;
mod tombstones;
mod transmit;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use log::debug;
use slab::Slab;

pub use close::CloseReason;
pub use dashboard::HttpAccess;
pub use flow::Intake;
pub use origin::Origin;
pub use password::PasswordTicket;
pub use routes::QueueId;
pub use session::SessionKey;
pub use store::MsgKey;

use crate::config::{Config, ListenerSettings};
use crate::credentials::{Authenticator, Grant};
use crate::metrics::Metrics;
use crate::protocol::codec::{encode_error, encode_error_answering};
use crate::protocol::proxy::ProxyHeader;
use crate::protocol::{ErrorCode, Frame, Op};
use auth::FailureBuckets;
use close::CLOSE_COUNTERS;
use delivery_queue::Nodes;
use expiry::Expiry;
use flow::{ConnFlow, Flow, PublishBuckets};
use groups::Groups;
use hello::Tombstones;
use origin::Entropy;
use owners::Tally;
use password::{PasswordChecks, PasswordWait};
use patterns::Patterns;
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
    /// Competing-consumer groups (`groups.rs`).
    groups: Groups,
    /// Pattern subscribers, matched against each new queue (`patterns.rs`).
    patterns: Patterns,
    /// Messages with a time to live, by deadline (`expiry.rs`).
    expiry: Expiry,
    timers: Timers,
    dirty: Vec<ConnId>,
    /// Who is held back from reading, and this turn's budgets.
    flow: Flow,
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
    /// The `now` of the entry point being handled: every `handle_*` and `poll_*` that can
    /// change state takes `now` and sets this first, so code below them reads the time of
    /// the call it serves (never the clock).
    now: Instant,
    /// Where resume tokens come from: seeded by the caller, so a test can replay a run.
    entropy: Entropy,
    /// Reused target list for fan-out (no allocation per publish once grown).
    targets: Vec<SessionKey>,
    /// Reused list of group assignments one ACK released.
    released_tags: Vec<delivery_queue::GroupTag>,
    /// Keyed hasher for conflation identities; random per broker so clients cannot aim
    /// collisions.
    conflation_hasher: foldhash::quality::FixedState,
    is_shutting_down: bool,
    /// Users and signing key in force for new HELLOs (replaced by a reload).
    authenticator: Authenticator,
    /// Failed authentications per source address.
    auth_failures: FailureBuckets<std::net::IpAddr>,
    /// Failed password authentications per user name (guessing one user from many
    /// addresses).
    user_failures: FailureBuckets<Box<[u8]>>,
    /// Password checks waiting for the global budget (see `password.rs`).
    password_checks: PasswordChecks,
    /// What every anonymous session is granted, shared: `[0]` on other listeners, `[1]` (with
    /// STATS) on loopback ones.
    anonymous_grants: [Arc<Grant>; 2],
    /// Durable queues' records for the journal thread, and the receipts that wait for it.
    journal: journal::Journal,
    /// Live sessions per identity and source address (`max_sessions_per_*`).
    session_owners: Tally,
    /// Live queues per creating identity and source address (`max_queues_per_*`).
    queue_owners: Tally,
    /// Capacity of every connection's `input` and `control` buffers, charged to
    /// `max_memory_bytes`.
    buffered_bytes: usize,
    /// Reused list of queues whose stored messages were freed (see `collect_queues`).
    freed_queues: Vec<QueueId>,
    /// Wall-clock anchor for signed-token expiry: (an `Instant` given to the broker, the Unix
    /// time then), from [`Origin`] and [`Broker::set_wall_clock`].
    wall_clock: (Instant, SystemTime),
}

/// A HELLO held back by the failed-authentication slowdown.
#[derive(Debug)]
struct DelayedHello {
    /// The encoded HELLO, checked at `paused_until` (`None` cannot happen since issue #12:
    /// a held HELLO is always checked; kept as AUTH_FAILED should it).
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
    /// Bytes handed to [`Broker::handle_input`] not yet decoded: a partial frame, or frames
    /// held back by flow control. Empty (no allocation) on an idle connection. Its capacity
    /// is charged to `max_memory_bytes` (`buffered_bytes`).
    input: Vec<u8>,
    /// Since when `input` has started a frame not yet complete: reset whenever a frame
    /// completes. A frame incomplete for the heartbeat timeout closes the connection.
    partial_since: Option<Instant>,
    /// Budgets, pauses and which held-back list it is on.
    flow: ConnFlow,
    /// A HELLO waiting for the failed-authentication slowdown; reading is paused until it is
    /// answered.
    delayed_hello: Option<Box<DelayedHello>>,
    /// A HELLO waiting for its password check (`password.rs`); reading is paused until then.
    password_wait: Option<Box<PasswordWait>>,
}

impl Broker {
    /// Creates a broker from a validated configuration, starting at `origin` (time and random
    /// seed, read by the caller: the core reads neither).
    pub fn new(config: Config, origin: Origin) -> Broker {
        let routes = Routes::new(&config.queues);
        let has_storage = config.data_dir.is_some();
        let listeners = config.listener_settings();
        let mut entropy = Entropy::new(origin.seed);
        let conflation_hasher = foldhash::quality::FixedState::with_seed(entropy.next_u64());
        let epoch = (entropy.next_u64() >> 32) as u32;
        let password_checks =
            PasswordChecks::new(config.max_password_checks_per_second, origin.now);
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
            groups: Groups::default(),
            patterns: Patterns::default(),
            expiry: Expiry::default(),
            timers: Timers::default(),
            dirty: Vec::new(),
            flow: Flow::default(),
            closing: VecDeque::new(),
            metrics: Metrics::default(),
            closes: [0; CLOSE_COUNTERS],
            losses: [0; ErrorCode::ALL.len()],
            epoch: epoch.max(1),
            next_session_counter: 1,
            next_message_id: 1,
            next_generation: 1,
            now: origin.now,
            entropy,
            targets: Vec::new(),
            released_tags: Vec::new(),
            authenticator: config.authenticator().unwrap_or_else(|error| {
                // Validation parsed it already; a config that skipped validation gets no users.
                log::warn!("authentication config refused: {error}");
                Authenticator::default()
            }),
            config,
            auth_failures: FailureBuckets::default(),
            user_failures: FailureBuckets::default(),
            password_checks,
            anonymous_grants: [
                Arc::new(Grant::anonymous(false)),
                Arc::new(Grant::anonymous(true)),
            ],
            wall_clock: (origin.now, origin.unix),
            journal: journal::Journal {
                is_enabled: has_storage,
                open_mark: journal::JournalMark(1),
                max_in_flight_bytes: journal::MAX_IN_FLIGHT_BYTES,
                ..journal::Journal::default()
            },
            session_owners: Tally::default(),
            queue_owners: Tally::default(),
            freed_queues: Vec::new(),
            buffered_bytes: 0,
            conflation_hasher,
            is_shutting_down: false,
        }
    }

    /// Re-anchors the wall clock for signed-token expiry: `unix` is the Unix time at `now`
    /// (the loop does this now and then, so a clock step is followed).
    pub fn set_wall_clock(&mut self, now: Instant, unix: SystemTime) {
        self.wall_clock = (now, unix);
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
    pub(super) fn max_frame_len(&self, conn: ConnId) -> u32 {
        match self.conn(conn) {
            Some(state) if state.session.is_some() => self.settings(state.listener).max_frame_len,
            _ => self.config.max_frame_len_before_hello,
        }
    }

    /// True if the broker has decided to close `conn` (or does not know it): the loop should
    /// stop feeding it frames.
    pub(super) fn is_closing(&self, conn: ConnId) -> bool {
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
        self.now = now;
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
            input: Vec::new(),
            partial_since: None,
            flow: ConnFlow {
                rate: has_rate.then(|| Box::new(PublishBuckets::full(&settings, now))),
                ..ConnFlow::default()
            },
            delayed_hello: None,
            password_wait: None,
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

    /// A connection arrived, before it has a `ConnId`: whether to take it. When not (at
    /// `max_connections`), `refusal` holds the ERROR(SERVER_BUSY) frame to send, best effort,
    /// before closing the socket at once (no linger: a flood must not hold descriptors).
    pub fn handle_accept(&mut self, refusal: &mut Vec<u8>) -> bool {
        if self.conn_count < self.config.max_connections {
            return true;
        }
        self.metrics.connections_refused += 1;
        self.closes[CloseReason::ProtocolError(ErrorCode::ServerBusy).counter_index()] += 1;
        let _ = encode_error(
            ErrorCode::ServerBusy,
            true,
            0,
            "max_connections reached",
            refusal,
        );
        false
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

    /// A transport layer of `conn` refused it (a WebSocket upgrade or message against the
    /// rules of protocol.md §WebSocket): ERROR(`code`, fatal) with `text`, then the close.
    pub fn handle_transport_refusal(&mut self, conn: ConnId, code: ErrorCode, text: &str) {
        self.fail(conn, code, 0, text);
    }

    /// Bytes the loop wrote to `conn`'s socket, for the counters (read bytes are counted by
    /// [`Self::handle_input`]).
    pub fn handle_written(&mut self, written: usize) {
        self.metrics.bytes_out += written as u64;
    }

    /// The connection is gone (or the loop finished closing it). Frees its state. If the
    /// broker had not decided to close it, `reason` is recorded and its session is detached
    /// (kept for the listener's keep-alive) rather than ended.
    pub fn handle_disconnect(&mut self, conn: ConnId, reason: CloseReason, now: Instant) {
        self.now = now;
        let reason = match reason {
            CloseReason::PeerClosed => self.eof_reason(conn),
            other => other,
        };
        let Some(state) = self.conns.get_mut(conn.0).and_then(Option::take) else {
            return;
        };
        self.conn_count -= 1;
        self.buffered_bytes -= state.input.capacity() + state.control.capacity();
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
        self.now = now;
        while let Some((target, generation)) = self.timers.pop_due(now) {
            match target {
                TimerTarget::Conn(conn) => self.check_conn(ConnId(conn), generation, now),
                TimerTarget::Session(key) => self.check_session(SessionKey(key), generation),
            }
        }
        self.expire_group_deadlines(now);
        self.expire_due(now);
        self.tombstones.expire(now);
        self.collect_queues();
        self.enforce_memory_budget();
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

    /// The earliest deadline the loop must wake for.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timers.next_deadline(),
            self.flow_deadline(),
            self.groups.next_deadline(),
            self.expiry.next_deadline(),
            self.password_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
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

    /// Refuses one request (a frame with op `ref_op`) with ERROR(NOT_AUTHORIZED), not fatal:
    /// the connection goes on. An EXTENSIONS client is told the op (protocol.md §ERROR).
    fn deny(&mut self, conn: ConnId, ref_seq: u64, ref_op: Op, text: &str) {
        self.metrics.not_authorized += 1;
        debug!("{}: NOT_AUTHORIZED: {text}", self.who(conn));
        let has_extensions = self
            .conn(conn)
            .and_then(|state| state.session)
            .is_some_and(|key| self.sessions[key.0].has_extensions);
        self.push_control(conn, |out| {
            let code = ErrorCode::NotAuthorized;
            if has_extensions {
                encode_error_answering(code, false, ref_seq, ref_op, text, out);
            } else {
                let _ = encode_error(code, false, ref_seq, text, out);
            }
        });
    }

    fn handle_stats(&mut self, conn: ConnId, session: SessionKey) {
        if !self.sessions[session.0].grant.permissions.admin {
            self.deny(conn, 0, Op::Stats, "STATS needs an admin session");
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
