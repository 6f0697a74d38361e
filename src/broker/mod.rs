//! The broker core: sessions, queues, routing, acks, conflation, limits and timers.
//!
//! Sans-IO (quinn-proto style): no sockets, no threads, no clock reads. The event loop feeds
//! it with `handle_*` (a decoded frame, a new or lost connection, the current time) and drains
//! it with `poll_*` (bytes to send per connection, connections to close, the next deadline).
//! Every decision about a message (route, queue, conflate, overflow-close, ack) is made here,
//! so it is tested deterministically without a socket (see `tests.rs`).
//!
//! Invariants:
//! - a connection is closed only by the loop's close pass, after `poll_close` named it; until
//!   then its state stays here, marked closing, and it receives no further frames;
//! - a session is freed the moment its end is decided (overflow, error, BYE, disconnect), so its
//!   queue stops growing at once;
//! - per message the hot path allocates only the stored payload; per subscriber it does no
//!   hashing beyond an identity-hashed conflation lookup.

mod close;
mod queue;
mod routes;
mod session;
mod stats;
mod store;
#[cfg(test)]
mod tests;
mod timers;

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::Instant;

use log::{debug, info, warn};
use slab::Slab;

pub use close::CloseReason;
pub use routes::QueueId;
pub use session::SessionKey;
pub use store::MsgKey;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::protocol::codec::{
    encode_deliver, encode_error, encode_goodbye, encode_ping, encode_receipt, encode_subscription,
    encode_welcome,
};
use crate::protocol::frame::{OUTCOME_LOST, OUTCOME_NEW};
use crate::protocol::{
    Ack, DecodeError, ErrorCode, Frame, Hello, Op, Publish, Subscription, Welcome, RESUME_TOKEN_LEN,
};
use close::CLOSE_COUNTERS;
use queue::{Nodes, SessionQueue};
use routes::Routes;
use session::Session;
use store::MessageStore;
use timers::Timers;

/// A connection's id: the event loop's slab key and mio token value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub usize);

/// The broker state machine. See the module docs.
#[derive(Debug)]
pub struct Broker {
    config: Config,
    /// Indexed by `ConnId.0`; `None` for free slots.
    conns: Vec<Option<ConnState>>,
    conn_count: usize,
    sessions: Slab<Session>,
    nodes: Nodes,
    store: MessageStore,
    routes: Routes,
    timers: Timers,
    dirty: Vec<ConnId>,
    closing: VecDeque<ConnId>,
    metrics: Metrics,
    closes: [u64; CLOSE_COUNTERS],
    next_session_id: u64,
    next_message_id: u64,
    next_generation: u64,
    /// The latest `now` given to any `handle_*`: the loop calls `poll_transmit` in the same turn,
    /// so this stands for when its bytes go out (`last_sent`). A turn with no `handle_*` call
    /// leaves it older than the write, which can make a PING early, never late.
    latest_now: Option<Instant>,
    /// Reused target list for fan-out (no allocation per publish once grown).
    targets: Vec<SessionKey>,
    /// Keyed hasher for conflation identities; random per broker so clients cannot aim
    /// collisions.
    conflation_hasher: RandomState,
    is_shutting_down: bool,
}

/// Per-connection state the broker keeps.
#[derive(Debug)]
struct ConnState {
    peer: SocketAddr,
    /// Tells this connection's live timer entries from stale ones: those of earlier connections
    /// with the same `ConnId`, and its own handshake entry once HELLO is accepted.
    generation: u64,
    session: Option<SessionKey>,
    /// Encoded control frames waiting for `poll_transmit` (WELCOME, RECEIPT is separate,
    /// SUBSCRIBED, PONG, PING, ERROR, GOODBYE, STATS_REPLY). Bounded by
    /// `max_write_buffer_bytes`.
    control: Vec<u8>,
    is_dirty: bool,
    /// Set once the broker has decided to close; no frames are handled after that.
    close: Option<CloseReason>,
    accepted_at: Instant,
    last_recv: Instant,
    /// When bytes were last handed to the loop for this connection (PING is due an interval
    /// later).
    last_sent: Instant,
    ping_nonce: u64,
}

impl Broker {
    /// Creates a broker from a validated configuration.
    pub fn new(config: Config) -> Broker {
        let routes = Routes::new(&config.queues);
        Broker {
            config,
            conns: Vec::new(),
            conn_count: 0,
            sessions: Slab::new(),
            nodes: Nodes::new(),
            store: MessageStore::default(),
            routes,
            timers: Timers::default(),
            dirty: Vec::new(),
            closing: VecDeque::new(),
            metrics: Metrics::default(),
            closes: [0; CLOSE_COUNTERS],
            next_session_id: 1,
            next_message_id: 1,
            next_generation: 1,
            latest_now: None,
            targets: Vec::new(),
            conflation_hasher: RandomState::new(),
            is_shutting_down: false,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
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
            Some(state) if state.session.is_some() => self.config.max_frame_len,
            _ => self.config.max_frame_len_before_hello,
        }
    }

    /// True if the broker has decided to close `conn` (or does not know it): the loop should
    /// stop feeding it frames.
    pub fn is_closing(&self, conn: ConnId) -> bool {
        self.conn(conn).is_none_or(|state| state.close.is_some())
    }

    /// A connection was accepted. `conn` must not be in use.
    pub fn handle_connect(&mut self, conn: ConnId, peer: SocketAddr, now: Instant) {
        self.latest_now = Some(now);
        if self.conns.len() <= conn.0 {
            self.conns.resize_with(conn.0 + 1, || None);
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.conns[conn.0] = Some(ConnState {
            peer,
            generation,
            session: None,
            control: Vec::new(),
            is_dirty: false,
            close: None,
            accepted_at: now,
            last_recv: now,
            last_sent: now,
            ping_nonce: 0,
        });
        self.conn_count += 1;
        self.metrics.connections_accepted += 1;
        self.timers
            .schedule(now + self.config.handshake_timeout(), conn, generation);
        debug!("conn {} accepted from {peer}", conn.0);
    }

    /// A connection was refused at `max_connections` before reaching the broker.
    pub fn handle_refused(&mut self) {
        self.metrics.connections_refused += 1;
        self.closes[CloseReason::ProtocolError(ErrorCode::ServerBusy).counter_index()] += 1;
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
            Frame::Publish(publish) => self.handle_publish(conn, session, &publish),
            Frame::Subscribe(sub) => self.handle_subscribe(conn, session, &sub),
            Frame::Unsubscribe(sub) => self.handle_unsubscribe(conn, session, &sub),
            Frame::Ack(ack) => self.handle_ack(conn, session, &ack),
            Frame::Ping(nonce) => {
                self.push_control(conn, |out| encode_ping(Op::Pong, nonce, out));
            }
            Frame::Pong(_) => {}
            Frame::Bye => self.goodbye(conn, ErrorCode::ClientBye, "bye"),
            Frame::Stats => self.handle_stats(conn),
            Frame::Hello(_) => {
                self.fail(conn, ErrorCode::DuplicateHello, 0, "HELLO already accepted")
            }
            Frame::Welcome(_)
            | Frame::Deliver(_)
            | Frame::Receipt(_)
            | Frame::Subscribed(_)
            | Frame::Unsubscribed(_)
            | Frame::Error(_)
            | Frame::Goodbye(_)
            | Frame::StatsReply(_) => {
                self.fail(
                    conn,
                    ErrorCode::UnknownOp,
                    0,
                    "server-to-client op sent by a client",
                );
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

    /// The connection is gone (or the loop finished closing it). Frees its state; if the broker
    /// had not decided to close it, `reason` is recorded.
    pub fn handle_disconnect(&mut self, conn: ConnId, reason: CloseReason, _now: Instant) {
        let Some(state) = self.conns.get_mut(conn.0).and_then(Option::take) else {
            return;
        };
        self.conn_count -= 1;
        let reason = state.close.unwrap_or(reason);
        self.closes[reason.counter_index()] += 1;
        if let Some(session) = state.session {
            let dropped = self.end_session(session);
            self.metrics.messages_dropped_session_closed += dropped;
        }
        debug!("conn {} from {} closed: {reason}", conn.0, state.peer);
    }

    /// Runs every timer due at `now`: handshake timeouts, heartbeat PINGs and timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.latest_now = Some(now);
        while let Some((conn, generation)) = self.timers.pop_due(now) {
            self.check_timers(conn, generation, now);
        }
    }

    /// Starts a graceful shutdown: every connection gets GOODBYE(SERVER_SHUTDOWN) and is queued
    /// for closing.
    pub fn handle_shutdown(&mut self) {
        self.is_shutting_down = true;
        for index in 0..self.conns.len() {
            let conn = ConnId(index);
            if !self.is_closing(conn) {
                self.goodbye(conn, ErrorCode::ServerShutdown, "server shutting down");
            }
        }
    }

    /// Appends bytes for `conn` to `out`: pending control frames, a batched RECEIPT, then
    /// deliveries while `out.len() < room` and the in-flight window allows. Returns the
    /// number of bytes appended.
    ///
    /// Bounded work: stops at `room` (plus one frame).
    pub fn poll_transmit(&mut self, conn: ConnId, out: &mut Vec<u8>, room: usize) -> usize {
        let start = out.len();
        let latest_now = self.latest_now;
        let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) else {
            return 0;
        };
        if !state.control.is_empty() {
            out.extend_from_slice(&state.control);
            state.control.clear();
        }
        if let (None, Some(key)) = (state.close, state.session) {
            let session = &mut self.sessions[key.0];
            if session.is_receipt_due {
                encode_receipt(session.last_publish_seq, out);
                session.is_receipt_due = false;
            }
            while out.len() < room && session.queue.in_flight() < session.window {
                let Some((msg, node, seq)) = session.queue.send_next(&mut self.nodes) else {
                    break;
                };
                let message = self.store.get(msg);
                if let Some(hash) = message.conflation {
                    if session.conflation.get(&hash) == Some(&node) {
                        session.conflation.remove(&hash);
                    }
                }
                let queue = &self.routes.queue(message.queue).name;
                // Cannot fail: names were ≤ 255 bytes when decoded, payload ≤ max_frame_len.
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
        }
        let appended = out.len() - start;
        if appended > 0 {
            state.last_sent = latest_now.unwrap_or(state.last_sent);
        }
        appended
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

    // ---- frame handlers ----

    fn handle_hello(&mut self, conn: ConnId, hello: &Hello<'_>, now: Instant) {
        let mut resume_token = [0u8; RESUME_TOKEN_LEN];
        if let Err(error) = getrandom::getrandom(&mut resume_token) {
            warn!("OS random source failed ({error}); refusing HELLO");
            self.goodbye(conn, ErrorCode::ServerBusy, "cannot create a session now");
            return;
        }
        let window = match hello.inflight_window {
            0 => self.config.inflight_window,
            requested => requested.min(self.config.inflight_window),
        };
        let id = self.next_session_id;
        self.next_session_id += 1;
        let key = SessionKey(self.sessions.insert(Session {
            id,
            resume_token,
            client_name: String::from_utf8_lossy(hello.client_name).into(),
            conn,
            window,
            queue: SessionQueue::default(),
            subscriptions: Vec::new(),
            conflation: Default::default(),
            last_publish_seq: 0,
            is_receipt_due: false,
            published: 0,
            delivered: 0,
            acked: 0,
            conflated: 0,
        }));
        // v1 keeps no session after its connection ends, so every resume is LOST.
        let (outcome, lost_reason) = match hello.resume {
            Some(_) => (OUTCOME_LOST, Some(ErrorCode::SessionUnknown)),
            None => (OUTCOME_NEW, None),
        };
        let welcome = Welcome {
            outcome,
            lost_reason,
            missed: if lost_reason.is_some() { None } else { Some(0) },
            session_id: id,
            resume_token,
            last_publish_seq: 0,
            max_frame_len: self.config.max_frame_len,
            inflight_window: window,
            heartbeat_interval_ms: clamp_u32(self.config.heartbeat_interval_ms),
            heartbeat_timeout_ms: clamp_u32(self.config.heartbeat_timeout_ms),
            max_queue_depth: self.config.max_queue_depth,
            max_queue_bytes: self.config.max_queue_bytes,
        };
        let interval = self.config.heartbeat_interval();
        let generation = self.next_generation;
        self.next_generation += 1;
        if let Some(state) = self.conn_mut(conn) {
            state.session = Some(key);
            // Heartbeat checks start now, as one chain: the new generation retires the
            // handshake timer entry, which would otherwise start a second chain of checks.
            state.generation = generation;
            self.timers.schedule(now + interval, conn, generation);
        }
        self.push_control(conn, |out| encode_welcome(&welcome, out));
        debug!("conn {} session {id} opened (window {window})", conn.0);
    }

    fn handle_publish(&mut self, conn: ConnId, key: SessionKey, publish: &Publish<'_>) {
        let session = &mut self.sessions[key.0];
        let expected = session.last_publish_seq + 1;
        if publish.seq != expected {
            if publish.seq != 0 && publish.seq < expected {
                self.metrics.messages_duplicate += 1;
                session.is_receipt_due = true;
                self.mark_dirty(conn);
            } else {
                let text = "publish seq must be the previous one + 1 (the first is 1)";
                self.fail(conn, ErrorCode::PublishSeqGap, publish.seq, text);
            }
            return;
        }
        if publish.queue.is_empty() {
            self.fail(
                conn,
                ErrorCode::InvalidName,
                publish.seq,
                "empty queue name",
            );
            return;
        }
        let Ok(queue_id) = self
            .routes
            .find_or_create(publish.queue, self.config.max_queues)
        else {
            self.fail(
                conn,
                ErrorCode::LimitExceeded,
                publish.seq,
                "max_queues reached",
            );
            return;
        };
        let queue = self.routes.queue_mut(queue_id);
        if let Some(max) = queue.max_payload_len {
            if publish.payload.len() > max as usize {
                let text = "payload longer than the queue's max_payload_len";
                self.fail(conn, ErrorCode::LimitExceeded, publish.seq, text);
                return;
            }
        }
        queue.published += 1;
        let conflates = queue.conflate || publish.key.is_some();
        let session = &mut self.sessions[key.0];
        session.last_publish_seq = publish.seq;
        session.published += 1;
        session.is_receipt_due = true;
        self.mark_dirty(conn);
        self.metrics.messages_published += 1;
        let message_id = self.next_message_id;
        self.next_message_id += 1;
        self.route(queue_id, message_id, conflates, publish);
    }

    /// Queues one accepted message for every matching session.
    fn route(&mut self, queue: QueueId, message_id: u64, conflates: bool, publish: &Publish<'_>) {
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        self.routes.targets(queue, publish.event, &mut targets);
        if !targets.is_empty() {
            let key = publish.key.unwrap_or_default();
            let conflation = conflates.then(|| {
                self.conflation_hasher
                    .hash_one((queue.0, publish.event, key))
            });
            let msg = self.store.insert(
                message_id,
                queue,
                conflation,
                publish.event,
                key,
                publish.payload,
            );
            for &session in &targets {
                self.enqueue(session, msg);
            }
            self.store.release_if_unused(msg);
        }
        self.targets = targets;
    }

    /// Queues `msg` for one session: conflation first, then the depth and byte limits.
    fn enqueue(&mut self, key: SessionKey, msg: MsgKey) {
        let message = self.store.get(msg);
        let bytes = message.queue_bytes();
        let conflation = message.conflation;
        let session = &mut self.sessions[key.0];
        let mut replaced = None;
        if let Some(hash) = conflation {
            if let Some(&node) = session.conflation.get(&hash) {
                if let Some(old) = SessionQueue::node_msg(&self.nodes, node) {
                    let old_message = self.store.get(old);
                    if old_message.queue == message.queue
                        && old_message.event() == message.event()
                        && old_message.key() == message.key()
                    {
                        replaced = Some((node, old, old_message.queue_bytes()));
                    }
                }
            }
        }
        let (removed_depth, removed_bytes) = replaced.map_or((0, 0), |(_, _, b)| (1, b));
        let depth = session.queue.depth() - removed_depth + 1;
        let queue_bytes = session.queue.bytes - removed_bytes + bytes;
        if depth > self.config.max_queue_depth || queue_bytes > self.config.max_queue_bytes {
            let conn = session.conn;
            warn!(
                "session {} ({}) closed: QUEUE_OVERFLOW at depth {} / {} bytes",
                session.id,
                session.client_name,
                session.queue.depth(),
                session.queue.bytes
            );
            self.metrics.messages_dropped_overflow += 1;
            let text = "queue overflow: max_queue_depth or max_queue_bytes exceeded";
            self.goodbye_with(conn, ErrorCode::QueueOverflow, text, true);
            return;
        }
        if let Some((node, old, old_bytes)) = replaced {
            session.queue.remove(&mut self.nodes, node, old_bytes);
            self.store.release(old);
            session.conflated += 1;
            self.metrics.messages_conflated += 1;
        }
        let node = session.queue.push_back(&mut self.nodes, msg, bytes);
        self.store.retain(msg);
        if let Some(hash) = conflation {
            session.conflation.insert(hash, node);
        }
        if session.queue.in_flight() < session.window {
            let conn = session.conn;
            self.mark_dirty(conn);
        }
    }

    fn handle_subscribe(&mut self, conn: ConnId, key: SessionKey, sub: &Subscription<'_>) {
        if sub.queue.is_empty() || sub.event == Some(&[][..]) {
            self.fail(conn, ErrorCode::InvalidName, 0, "empty queue or event name");
            return;
        }
        let existing = self.routes.find(sub.queue);
        let session = &self.sessions[key.0];
        let is_subscribed =
            existing.is_some_and(|q| session.find_subscription(q, sub.event).is_some());
        if !is_subscribed {
            if session.subscriptions.len() >= self.config.max_subscriptions {
                self.fail(
                    conn,
                    ErrorCode::LimitExceeded,
                    0,
                    "max_subscriptions reached",
                );
                return;
            }
            let Ok(queue) = self
                .routes
                .find_or_create(sub.queue, self.config.max_queues)
            else {
                self.fail(conn, ErrorCode::LimitExceeded, 0, "max_queues reached");
                return;
            };
            let session = &mut self.sessions[key.0];
            let had_any = session.subscriptions.iter().any(|s| s.queue == queue);
            let has_all = session.has_all_events(queue);
            match sub.event {
                None => self
                    .routes
                    .add_all_events(queue, key, session.named_events(queue)),
                Some(event) if !has_all => self.routes.add_event(queue, key, event),
                Some(_) => {}
            }
            session.subscriptions.push(session::Subscription {
                queue,
                event: sub.event.map(Box::from),
            });
            if !had_any {
                self.routes.queue_mut(queue).subscribers += 1;
            }
        }
        self.push_control(conn, |out| {
            let _ = encode_subscription(Op::Subscribed, sub, out);
        });
    }

    fn handle_unsubscribe(&mut self, conn: ConnId, key: SessionKey, sub: &Subscription<'_>) {
        if let Some(queue) = self.routes.find(sub.queue) {
            let session = &mut self.sessions[key.0];
            if let Some(index) = session.find_subscription(queue, sub.event) {
                session.subscriptions.swap_remove(index);
                match sub.event {
                    None => self
                        .routes
                        .remove_all_events(queue, key, session.named_events(queue)),
                    Some(event) if !session.has_all_events(queue) => {
                        self.routes.remove_event(queue, key, event);
                    }
                    Some(_) => {}
                }
                if !session.subscriptions.iter().any(|s| s.queue == queue) {
                    self.routes.queue_mut(queue).subscribers -= 1;
                }
            }
        }
        self.push_control(conn, |out| {
            let _ = encode_subscription(Op::Unsubscribed, sub, out);
        });
    }

    fn handle_ack(&mut self, conn: ConnId, key: SessionKey, ack: &Ack<'_>) {
        let session = &mut self.sessions[key.0];
        let last_sent = session.queue.last_sent_seq;
        if ack.up_to > last_sent || ack.seqs.iter().any(|seq| seq == 0 || seq > last_sent) {
            let text = "ACK names a delivery seq that was never sent";
            self.fail(conn, ErrorCode::UnknownAckSeq, 0, text);
            return;
        }
        let before = session.queue.in_flight();
        let store = &mut self.store;
        let mut freed_bytes = 0;
        session.queue.ack_up_to(ack.up_to, |msg| {
            freed_bytes += store.get(msg).queue_bytes();
            store.release(msg);
        });
        for seq in ack.seqs.iter() {
            if let Some(msg) = session.queue.ack_one(seq) {
                freed_bytes += store.get(msg).queue_bytes();
                store.release(msg);
            }
        }
        session.queue.release_bytes(freed_bytes);
        let acked = u64::from(before - session.queue.in_flight());
        session.acked += acked;
        self.metrics.messages_acked += acked;
        if acked > 0 && session.queue.has_pending() {
            self.mark_dirty(conn);
        }
    }

    fn handle_stats(&mut self, conn: ConnId) {
        let max_body = self.config.max_frame_len as usize - crate::protocol::HEADER_LEN;
        let json = stats::render_json(self, max_body);
        self.push_control(conn, |out| {
            let _ = crate::protocol::codec::encode(&Frame::StatsReply(&json), out);
        });
    }

    // ---- timers ----

    fn check_timers(&mut self, conn: ConnId, generation: u64, now: Instant) {
        let handshake_deadline = self.config.handshake_timeout();
        let interval = self.config.heartbeat_interval();
        let timeout = self.config.heartbeat_timeout();
        let Some(state) = self.conn_mut(conn) else {
            return;
        };
        if state.generation != generation || state.close.is_some() {
            return;
        }
        if state.session.is_none() {
            let deadline = state.accepted_at + handshake_deadline;
            if now >= deadline {
                self.fail(conn, ErrorCode::HandshakeTimeout, 0, "no HELLO in time");
            } else {
                self.timers.schedule(deadline, conn, generation);
            }
            return;
        }
        let silent_until = state.last_recv + timeout;
        if now >= silent_until {
            self.goodbye(
                conn,
                ErrorCode::HeartbeatTimeout,
                "nothing received in time",
            );
            return;
        }
        let ping_at = state.last_sent + interval;
        if now < ping_at {
            self.timers
                .schedule(ping_at.min(silent_until), conn, generation);
            return;
        }
        state.ping_nonce += 1;
        let nonce = state.ping_nonce;
        // The PING goes out in this turn's flush pass.
        state.last_sent = now;
        self.push_control(conn, |out| encode_ping(Op::Ping, nonce, out));
        self.timers
            .schedule((now + interval).min(silent_until), conn, generation);
    }

    // ---- closing ----

    /// Sends a fatal ERROR and closes `conn` (bad input).
    fn fail(&mut self, conn: ConnId, code: ErrorCode, ref_seq: u64, text: &str) {
        info!("conn {}: ERROR {}: {text}", conn.0, code.name());
        self.push_control(conn, |out| {
            let _ = encode_error(code, true, ref_seq, text, out);
        });
        self.begin_close(conn, CloseReason::ProtocolError(code), false);
    }

    /// Sends GOODBYE and closes `conn`.
    fn goodbye(&mut self, conn: ConnId, code: ErrorCode, text: &str) {
        self.goodbye_with(conn, code, text, false);
    }

    fn goodbye_with(&mut self, conn: ConnId, code: ErrorCode, text: &str, is_overflow: bool) {
        self.push_control(conn, |out| encode_goodbye(code, text, out));
        self.begin_close(conn, CloseReason::Goodbye(code), is_overflow);
    }

    fn begin_close(&mut self, conn: ConnId, reason: CloseReason, is_overflow: bool) {
        let Some(state) = self.conn_mut(conn) else {
            return;
        };
        if state.close.is_some() {
            return;
        }
        state.close = Some(reason);
        let session = state.session.take();
        self.closing.push_back(conn);
        if let Some(session) = session {
            let dropped = self.end_session(session);
            if is_overflow {
                self.metrics.messages_dropped_overflow += dropped;
            } else {
                self.metrics.messages_dropped_session_closed += dropped;
            }
        }
    }

    /// Frees a session: its queue (releasing stored messages) and its routes. Returns the
    /// number of messages it still held.
    fn end_session(&mut self, key: SessionKey) -> u64 {
        let mut session = self.sessions.remove(key.0);
        let mut dropped = 0;
        let store = &mut self.store;
        session.queue.drain(&mut self.nodes, |msg| {
            dropped += 1;
            store.release(msg);
        });
        for sub in &session.subscriptions {
            match &sub.event {
                None => self
                    .routes
                    .remove_all_events(sub.queue, key, std::iter::empty()),
                Some(event) => self.routes.remove_event(sub.queue, key, event),
            }
        }
        let mut queues: Vec<QueueId> = session.subscriptions.iter().map(|s| s.queue).collect();
        queues.sort_unstable();
        queues.dedup();
        for queue in queues {
            self.routes.queue_mut(queue).subscribers -= 1;
        }
        debug!("session {} ended, {dropped} messages dropped", session.id);
        dropped
    }

    // ---- helpers ----

    fn conn(&self, conn: ConnId) -> Option<&ConnState> {
        self.conns.get(conn.0).and_then(Option::as_ref)
    }

    fn conn_mut(&mut self, conn: ConnId) -> Option<&mut ConnState> {
        self.conns.get_mut(conn.0).and_then(Option::as_mut)
    }

    fn mark_dirty(&mut self, conn: ConnId) {
        if let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) {
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
            self.goodbye(conn, ErrorCode::SlowConsumer, "write buffer limit exceeded");
        }
        self.mark_dirty(conn);
    }
}

fn clamp_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}
