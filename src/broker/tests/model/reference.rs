//! The reference model: what the broker should hold and send, kept independently of its data
//! structures.
//!
//! Per session: subscriptions, pending messages (with the conflation rule), in-flight
//! deliveries and window, publish seqs, connected or detached (and since when), and every
//! message ever queued for it. Per connection: the heartbeat clock (last frame received, last
//! bytes sent, since when output has waited untaken, the next heartbeat check) and the control
//! frames queued. Tombstones of ended sessions, and the server counters. Each method mirrors one
//! broker rule (protocol.md; notes/reconnection.md) in the simplest way that can be checked.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::super::harness::{Delivery, Received};
use super::{EVENTS, QUEUES};
use crate::broker::ConnId;
use crate::config::Config;
use crate::protocol::frame::{OUTCOME_LOST, OUTCOME_NEW, OUTCOME_RESUMED};
use crate::protocol::stats::ServerStats;
use crate::protocol::{ErrorCode, Welcome, RESUME_TOKEN_LEN};

pub(super) type Token = [u8; RESUME_TOKEN_LEN];

/// Model key of a session (the broker's id is learnt from its WELCOME).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key(usize);

#[derive(Clone, Debug)]
pub(super) struct Message {
    pub(super) id: u64,
    pub(super) queue: usize,
    pub(super) event: usize,
    /// (queue, event, key) when the message conflates.
    pub(super) identity: Option<(usize, usize, &'static str)>,
    pub(super) len: usize,
}

impl Message {
    /// What it costs a session holding it, as the broker counts it against max_queue_bytes.
    pub(super) fn cost(&self) -> usize {
        let key_len = self.identity.map_or(0, |(_, _, key)| key.len());
        let event_len = super::EVENTS[self.event].len();
        crate::broker::store::message_cost(event_len, key_len, self.len) as usize
    }

    pub(super) fn payload(&self) -> Vec<u8> {
        vec![self.id as u8; self.len]
    }

    pub(super) fn delivery(&self, seq: u64, redelivered: bool) -> Received {
        Received::Deliver(Delivery {
            redelivered,
            seq,
            message_id: self.id,
            queue: QUEUES[self.queue].to_owned(),
            event: EVENTS[self.event].to_owned(),
            payload: self.payload(),
            delivery_count: None,
        })
    }
}

#[derive(Debug)]
pub(super) struct Session {
    /// 0 until its WELCOME is read.
    pub(super) id: u64,
    pub(super) token: Token,
    pub(super) conn: Option<ConnId>,
    /// Since when it is detached; `None` while connected.
    pub(super) detached_at: Option<Duration>,
    pub(super) window: usize,
    pub(super) subscriptions: BTreeSet<(usize, Option<usize>)>,
    pub(super) pending: VecDeque<Message>,
    pub(super) in_flight: BTreeMap<u64, Message>,
    pub(super) last_sent_seq: u64,
    pub(super) last_publish_seq: u64,
    pub(super) is_receipt_due: bool,
    /// After a resume: in-flight seqs from this one on go out again at the next flush.
    pub(super) redeliver_from: Option<u64>,
    /// Ids of the messages queued for it, in order, minus those removed by conflation.
    pub(super) accepted: Vec<u64>,
    pub(super) conflated: u64,
    pub(super) redelivered: u64,
    pub(super) resumes: u64,
}

impl Session {
    fn new(window: usize) -> Session {
        Session {
            id: 0,
            token: [0; RESUME_TOKEN_LEN],
            conn: None,
            detached_at: None,
            window,
            subscriptions: BTreeSet::new(),
            pending: VecDeque::new(),
            in_flight: BTreeMap::new(),
            last_sent_seq: 0,
            last_publish_seq: 0,
            is_receipt_due: false,
            redeliver_from: None,
            accepted: Vec::new(),
            conflated: 0,
            redelivered: 0,
            resumes: 0,
        }
    }

    fn is_routed(&self, message: &Message) -> bool {
        self.subscriptions.contains(&(message.queue, None))
            || (message.event < 2
                && self
                    .subscriptions
                    .contains(&(message.queue, Some(message.event))))
    }

    pub(super) fn depth(&self) -> usize {
        self.pending.len() + self.in_flight.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.pending
            .iter()
            .chain(self.in_flight.values())
            .map(|m| m.cost())
            .sum()
    }

    pub(super) fn lowest_unacked(&self) -> u64 {
        self.in_flight
            .keys()
            .next()
            .copied()
            .unwrap_or(self.last_sent_seq + 1)
    }

    /// Something to send beyond control frames: a RECEIPT, redeliveries, or pending messages
    /// the window has room for.
    pub(super) fn has_output(&self) -> bool {
        let has_redeliveries = self
            .redeliver_from
            .is_some_and(|from| self.in_flight.range(from..).next().is_some());
        self.is_receipt_due
            || has_redeliveries
            || (!self.pending.is_empty() && self.span() < self.window)
    }

    /// Seqs from the oldest unacked to the newest sent: what the window bounds.
    pub(super) fn span(&self) -> usize {
        match self.in_flight.keys().next() {
            Some(&lowest) => (self.last_sent_seq + 1 - lowest) as usize,
            None => 0,
        }
    }
}

/// A frame queued on a connection, in the order the broker queued it.
#[derive(Debug)]
pub(super) enum Control {
    Frame(Received),
    /// For a new session (`is_new`), the id and token are the broker's to choose: taken from
    /// the frame received, then checked to be fresh.
    Welcome {
        session: Key,
        welcome: Welcome,
        is_new: bool,
    },
}

/// A connection the broker has open (accepted, not yet closed by the close pass or EOF).
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) client: usize,
    /// The session it carries; `None` once the broker decided to close it.
    pub(super) session: Option<Key>,
    /// The GOODBYE the broker decided on; the close pass sends it and closes.
    pub(super) closing: Option<ErrorCode>,
    /// The socket takes bytes; when false the loop skips it in the flush pass.
    pub(super) is_writable: bool,
    pub(super) last_recv: Duration,
    pub(super) last_sent: Duration,
    /// Since when output has waited for the loop to take it (the broker's `waiting_since`).
    pub(super) waiting_since: Option<Duration>,
    /// The one live heartbeat timer entry of this connection.
    pub(super) next_check: Duration,
    ping_nonce: u64,
    pub(super) control: Vec<Control>,
}

impl Conn {
    pub(super) fn new(client: usize, now: Duration) -> Conn {
        Conn {
            client,
            session: None,
            closing: None,
            is_writable: true,
            last_recv: now,
            last_sent: now,
            waiting_since: None,
            next_check: now,
            ping_nonce: 0,
            control: Vec::new(),
        }
    }
}

/// What a client itself knows.
#[derive(Debug, Default)]
pub(super) struct Client {
    /// The connection it uses now (older ones it opened are abandoned: they fall silent).
    pub(super) conn: Option<ConnId>,
    /// Its latest session (the one it resumes), as its WELCOME named it.
    pub(super) session: Option<(Key, u64, Token)>,
    /// Deliveries received in that session, across resumes: seq → message id.
    pub(super) view: BTreeMap<u64, u64>,
}

#[derive(Debug)]
pub(super) struct Tombstone {
    pub(super) token: Token,
    pub(super) reason: ErrorCode,
    /// Messages never sent, plus the one that overflowed the session (QUEUE_OVERFLOW).
    pub(super) unsent: u64,
    /// Unacked delivery seqs when it ended.
    pub(super) in_flight: Vec<u64>,
    /// What STATS shows: the latest LOST answer's `missed`, or `unsent` before one
    /// (protocol.md §LOST, issue 13).
    pub(super) missed: u64,
}

impl Tombstone {
    /// protocol.md §LOST: held messages the client did not receive.
    fn missed_after(&self, received: u64) -> u64 {
        self.unsent + self.in_flight.iter().filter(|&&seq| seq > received).count() as u64
    }
}

/// Server counters the model predicts, named as in STATS.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Counters {
    pub(super) messages_published: u64,
    pub(super) messages_duplicate: u64,
    pub(super) messages_delivered: u64,
    pub(super) messages_redelivered: u64,
    pub(super) messages_acked: u64,
    pub(super) messages_conflated: u64,
    pub(super) messages_dropped_overflow: u64,
    pub(super) messages_dropped_session_closed: u64,
    pub(super) sessions_resumed: u64,
    pub(super) sessions_lost: u64,
    pub(super) losses: BTreeMap<String, u64>,
    pub(super) sessions_taken_over: u64,
    pub(super) sessions_expired: u64,
    pub(super) heartbeat_timeouts: u64,
}

impl Counters {
    pub(super) fn of(server: &ServerStats) -> Counters {
        Counters {
            messages_published: server.messages_published,
            messages_duplicate: server.messages_duplicate,
            messages_delivered: server.messages_delivered,
            messages_redelivered: server.messages_redelivered,
            messages_acked: server.messages_acked,
            messages_conflated: server.messages_conflated,
            messages_dropped_overflow: server.messages_dropped_overflow,
            messages_dropped_session_closed: server.messages_dropped_session_closed,
            sessions_resumed: server.sessions_resumed,
            sessions_lost: server.sessions_lost,
            losses: server.losses.clone(),
            sessions_taken_over: server.sessions_taken_over,
            sessions_expired: server.sessions_expired,
            heartbeat_timeouts: server.heartbeat_timeouts,
        }
    }
}

pub(super) struct Model {
    pub(super) config: Config,
    pub(super) sessions: BTreeMap<Key, Session>,
    next_key: usize,
    pub(super) tombstones: BTreeMap<u64, Tombstone>,
    pub(super) conns: BTreeMap<ConnId, Conn>,
    pub(super) clients: Vec<Client>,
    pub(super) next_message_id: u64,
    /// The broker's per-run epoch (high half of session ids), from the first WELCOME.
    pub(super) epoch: Option<u32>,
    pub(super) counters: Counters,
}

impl Model {
    pub(super) fn new(config: Config, clients: usize) -> Model {
        Model {
            config,
            sessions: BTreeMap::new(),
            next_key: 0,
            tombstones: BTreeMap::new(),
            conns: BTreeMap::new(),
            clients: (0..clients).map(|_| Client::default()).collect(),
            next_message_id: 1,
            epoch: None,
            counters: Counters::default(),
        }
    }

    pub(super) fn keep_alive(&self) -> Duration {
        Duration::from_millis(self.config.reconnect_keep_alive_ms)
    }

    pub(super) fn session(&mut self, key: Key) -> &mut Session {
        self.sessions.get_mut(&key).expect("a live session")
    }

    pub(super) fn conn(&mut self, conn: ConnId) -> &mut Conn {
        self.conns.get_mut(&conn).expect("an open connection")
    }

    /// The client's connection and its session, if it has one that is not closing.
    pub(super) fn attached(&self, client: usize) -> Option<(ConnId, Key)> {
        let id = self.clients[client].conn?;
        let conn = &self.conns[&id];
        match conn.closing {
            Some(_) => None,
            None => Some((id, conn.session?)),
        }
    }

    /// Any frame received counts as activity.
    pub(super) fn received(&mut self, conn: ConnId, now: Duration) {
        self.conn(conn).last_recv = now;
    }

    fn window_for(&self, requested: u32) -> usize {
        let window = match requested {
            0 => self.config.in_flight_window,
            requested => requested.min(self.config.in_flight_window),
        };
        window as usize
    }

    // ---- the broker's rules ----

    pub(super) fn mark_dirty(&mut self, conn: ConnId, now: Duration) {
        if let Some(conn) = self.conns.get_mut(&conn) {
            conn.waiting_since.get_or_insert(now);
        }
    }

    pub(super) fn push_control(&mut self, conn: ConnId, frame: Received, now: Duration) {
        self.conn(conn).control.push(Control::Frame(frame));
        self.mark_dirty(conn, now);
    }

    /// A new session for a HELLO on `conn`, attached to it; its WELCOME is queued.
    pub(super) fn open_session(
        &mut self,
        conn: ConnId,
        window: u32,
        lost: Option<(ErrorCode, Option<u64>)>,
        now: Duration,
    ) {
        let key = Key(self.next_key);
        self.next_key += 1;
        self.sessions
            .insert(key, Session::new(self.window_for(window)));
        if let Some((reason, _)) = lost {
            self.counters.sessions_lost += 1;
            *self
                .counters
                .losses
                .entry(reason.name().to_owned())
                .or_default() += 1;
        }
        self.attach(conn, key, now);
        let welcome = self.welcome(key, lost);
        self.conn(conn).control.push(Control::Welcome {
            session: key,
            welcome,
            is_new: true,
        });
    }

    /// Resumes `key` on `conn` (takeover of the old connection if it still has it).
    pub(super) fn resume(
        &mut self,
        conn: ConnId,
        key: Key,
        window: u32,
        last_delivery_seq: u64,
        now: Duration,
    ) {
        if let Some(old) = self.sessions[&key].conn {
            self.counters.sessions_taken_over += 1;
            self.conn(old).session = None;
            self.push_control(old, Received::Goodbye(ErrorCode::TakenOver), now);
            self.conn(old).closing.get_or_insert(ErrorCode::TakenOver);
        }
        let window = self.window_for(window);
        let session = self.session(key);
        session.window = window;
        session.detached_at = None;
        session.resumes += 1;
        session.is_receipt_due = false;
        session.redeliver_from = Some(last_delivery_seq + 1);
        self.counters.sessions_resumed += 1;
        self.attach(conn, key, now);
        let mut welcome = self.welcome(key, None);
        welcome.outcome = OUTCOME_RESUMED;
        let session = &self.sessions[&key];
        (welcome.session_id, welcome.resume_token) = (session.id, session.token);
        self.conn(conn).control.push(Control::Welcome {
            session: key,
            welcome,
            is_new: false,
        });
    }

    fn welcome(&self, key: Key, lost: Option<(ErrorCode, Option<u64>)>) -> Welcome {
        let config = &self.config;
        let session = &self.sessions[&key];
        Welcome {
            reconnect_keep_alive_ms: None,
            outcome: match lost {
                None => OUTCOME_NEW,
                Some(_) => OUTCOME_LOST,
            },
            lost_reason: lost.map(|(reason, _)| reason),
            missed: lost.map_or(Some(0), |(_, missed)| missed),
            session_id: 0,
            resume_token: [0; RESUME_TOKEN_LEN],
            last_publish_seq: session.last_publish_seq,
            max_frame_len: config.max_frame_len,
            inflight_window: session.window as u32,
            heartbeat_interval_ms: config.heartbeat_interval_ms as u32,
            heartbeat_timeout_ms: config.heartbeat_timeout_ms as u32,
            max_queue_depth: config.max_queue_depth,
            max_queue_bytes: config.max_queue_bytes,
        }
    }

    fn attach(&mut self, conn: ConnId, key: Key, now: Duration) {
        let interval = self.config.heartbeat_interval();
        let state = self.conn(conn);
        state.session = Some(key);
        state.next_check = now + interval;
        self.session(key).conn = Some(conn);
        self.mark_dirty(conn, now);
    }

    /// Why a resume found no session: (reason, missed).
    pub(super) fn why_gone(
        &mut self,
        id: u64,
        token: &Token,
        received: u64,
    ) -> (ErrorCode, Option<u64>) {
        if let Some(tombstone) = self.tombstones.get_mut(&id) {
            if tombstone.token == *token {
                tombstone.missed = tombstone.missed_after(received);
                return (tombstone.reason, Some(tombstone.missed));
            }
            return (ErrorCode::SessionUnknown, None);
        }
        let is_live = self.sessions.values().any(|s| s.id == id);
        if Some((id >> 32) as u32) != self.epoch && !is_live {
            (ErrorCode::ServerRestarted, None)
        } else {
            (ErrorCode::SessionUnknown, None)
        }
    }

    /// A refused resume ends the session, and closes the connection it was still on.
    pub(super) fn end_refused(&mut self, key: Key, code: ErrorCode, now: Duration) {
        match self.sessions[&key].conn {
            Some(old) => self.goodbye(old, code, now),
            None => self.end_session(key, code),
        }
    }

    /// GOODBYE, close, end the session.
    pub(super) fn goodbye(&mut self, conn: ConnId, code: ErrorCode, now: Duration) {
        self.push_control(conn, Received::Goodbye(code), now);
        if let Some(key) = self.begin_close(conn, code) {
            self.end_session(key, code);
        }
    }

    /// GOODBYE, close, keep the session (detached).
    fn drop_connection(&mut self, conn: ConnId, code: ErrorCode, now: Duration) {
        self.push_control(conn, Received::Goodbye(code), now);
        if let Some(key) = self.begin_close(conn, code) {
            self.detach(key, now);
        }
    }

    fn begin_close(&mut self, conn: ConnId, code: ErrorCode) -> Option<Key> {
        let state = self.conns.get_mut(&conn)?;
        if state.closing.is_some() {
            return None;
        }
        state.closing = Some(code);
        let key = state.session.take();
        if let Some(key) = key {
            self.session(key).conn = None;
        }
        key
    }

    /// The session lost its connection: detached for the keep-alive, or ended without one.
    pub(super) fn detach(&mut self, key: Key, now: Duration) {
        let keep_alive = self.keep_alive();
        let session = self.session(key);
        session.conn = None;
        if keep_alive.is_zero() {
            self.counters.sessions_expired += 1;
            self.end_session(key, ErrorCode::SessionExpired);
        } else {
            session.detached_at = Some(now);
        }
    }

    pub(super) fn end_session(&mut self, key: Key, reason: ErrorCode) {
        let session = self.sessions.remove(&key).expect("a live session");
        if let Some(conn) = session.conn.and_then(|c| self.conns.get_mut(&c)) {
            conn.session = None;
        }
        let dropped = session.depth() as u64;
        if reason == ErrorCode::QueueOverflow {
            self.counters.messages_dropped_overflow += dropped;
        } else {
            self.counters.messages_dropped_session_closed += dropped;
        }
        let unsent = session.pending.len() as u64 + u64::from(reason == ErrorCode::QueueOverflow);
        self.tombstones.insert(
            session.id,
            Tombstone {
                token: session.token,
                reason,
                unsent,
                in_flight: session.in_flight.keys().copied().collect(),
                missed: unsent,
            },
        );
    }

    /// Queues an accepted message for every session it routes to.
    pub(super) fn route(&mut self, message: &Message, now: Duration) {
        let targets: Vec<Key> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.is_routed(message))
            .map(|(&key, _)| key)
            .collect();
        for key in targets {
            self.enqueue(key, message.clone(), now);
        }
    }

    /// Conflation first, then the limits in force: the disconnected ones while detached, or
    /// while a resumed backlog is still above the connected ones (catching up).
    fn enqueue(&mut self, key: Key, message: Message, now: Duration) {
        let config = &self.config;
        let session = &self.sessions[&key];
        let is_catching_up = session.depth() > config.max_queue_depth as usize
            || session.bytes() as u64 > config.max_queue_bytes;
        let (max_depth, max_bytes) = match session.conn {
            Some(_) if !is_catching_up => (config.max_queue_depth, config.max_queue_bytes),
            _ => (
                config.max_queue_depth_detached.max(config.max_queue_depth),
                config.max_queue_bytes_detached.max(config.max_queue_bytes),
            ),
        };
        let replaced = message.identity.and_then(|identity| {
            session
                .pending
                .iter()
                .position(|old| old.identity == Some(identity))
        });
        let (removed_depth, removed_bytes) =
            replaced.map_or((0, 0), |i| (1, session.pending[i].cost()));
        let depth = session.depth() - removed_depth + 1;
        let bytes = session.bytes() - removed_bytes + message.cost();
        if depth > max_depth as usize || bytes as u64 > max_bytes {
            let conn = session.conn;
            self.counters.messages_dropped_overflow += 1;
            match conn {
                Some(conn) => self.goodbye(conn, ErrorCode::QueueOverflow, now),
                None => self.end_session(key, ErrorCode::QueueOverflow),
            }
            return;
        }
        let session = self.session(key);
        if let Some(index) = replaced {
            let old = session.pending.remove(index).expect("found above");
            session.accepted.retain(|&id| id != old.id);
            session.conflated += 1;
        }
        session.accepted.push(message.id);
        session.pending.push_back(message);
        let conn = session.conn.filter(|_| session.span() < session.window);
        if replaced.is_some() {
            self.counters.messages_conflated += 1;
        }
        if let Some(conn) = conn {
            self.mark_dirty(conn, now);
        }
    }

    /// A heartbeat check of `conn` at `now` (its timer entry fired): silence, then write stall,
    /// then PING; reschedules.
    pub(super) fn check_conn(&mut self, id: ConnId, now: Duration) {
        let (interval, timeout) = (
            self.config.heartbeat_interval(),
            self.config.heartbeat_timeout(),
        );
        let conn = self.conn(id);
        let silent_until = conn.last_recv + timeout;
        let stalled_until = conn.waiting_since.map(|since| since + timeout);
        if now >= silent_until || stalled_until.is_some_and(|at| now >= at) {
            self.counters.heartbeat_timeouts += 1;
            self.drop_connection(id, ErrorCode::HeartbeatTimeout, now);
            return;
        }
        let next = stalled_until.map_or(silent_until, |at| at.min(silent_until));
        // An interval after it last sent, or last heard anything.
        let ping_at = conn.last_sent.min(conn.last_recv) + interval;
        if now < ping_at {
            conn.next_check = ping_at.min(next);
            return;
        }
        conn.ping_nonce += 1;
        conn.last_sent = now;
        conn.next_check = (now + interval).min(next);
        let nonce = conn.ping_nonce;
        self.push_control(id, Received::Ping(nonce), now);
    }
}
