//! The test harness: one [`Broker`], a fake clock, and owned copies of everything it sends.
//!
//! Plays the event loop's part (quinn-proto's `Pair`) through the same entry points the loop
//! uses: bytes a client sends go into its simulated socket and are read at once as the loop
//! reads a readable connection (`handle_readable`, then `handle_input` per chunk of at most
//! [`READ_CHUNK`] bytes while it says `More`); bytes the broker holds back stay in the socket
//! until `poll_reads` names the connection again, or new bytes arrive (mio is
//! edge-triggered). [`Harness::drive`] runs whole turns: the reads `poll_reads` asks for, the
//! flush pass (`poll_dirty` → `poll_transmit`, bytes decoded back into [`Received`]),
//! `handle_turn_end`, and the close pass (`poll_close` → last flush → `handle_disconnect`).
//! The readers (`frames`, `deliveries`, ...) drive, so everything sent between two reads is
//! one loop turn.
//!
//! Time only moves through [`Harness::advance`]; the system clock is read once, for the epoch.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::broker::{Broker, CloseReason, ConnId, Intake, Origin, PasswordTicket};
use crate::config::{Config, QueueConfig};
use crate::credentials::PasswordCheck;
use crate::protocol::codec::{self, encode_ack};
use crate::protocol::frame::{DELIVER_DELIVERY_COUNT, DELIVER_REDELIVERED};
use crate::protocol::stats::{SessionStats, StatsReport};
use crate::protocol::{
    self, Deliver, ErrorCode, Frame, Hello, Publish, Resume, Subscription, Welcome,
};

/// `room` for every `poll_transmit`: large enough that only the in-flight window limits
/// deliveries.
const ROOM: usize = 1 << 24;

/// Bytes one simulated `read` call yields (the loop's scratch buffer).
pub(super) const READ_CHUNK: usize = 64 * 1024;

/// A pre-declared queue with `conflate = true` in [`test_config`].
pub(super) const CONFLATING_QUEUE: &str = "latest";
/// A pre-declared queue with `max_payload_len = SMALL_QUEUE_MAX_PAYLOAD_LEN` in [`test_config`].
pub(super) const SMALL_QUEUE: &str = "small";
pub(super) const SMALL_QUEUE_MAX_PAYLOAD_LEN: u32 = 8;

/// Small limits so that every limit is reachable in a few frames. Reconnection is off: a
/// session ends with its connection (the reconnection tests use [`reconnect_config`]).
pub(super) fn test_config() -> Config {
    Config {
        reconnect_keep_alive_ms: 0,
        handshake_timeout_ms: 5_000,
        heartbeat_interval_ms: 10_000,
        heartbeat_timeout_ms: 30_000,
        in_flight_window: 16,
        max_queue_depth: 32,
        // Each small test message costs 96 B (64 B size class + a node): as many as the depth.
        max_queue_bytes: 32 * (64 + crate::broker::memory::NODE_BYTES),
        max_queues: 8,
        max_subscriptions: 4,
        queues: vec![
            QueueConfig {
                conflate: true,
                ..QueueConfig::new(CONFLATING_QUEUE)
            },
            QueueConfig {
                max_payload_len: Some(SMALL_QUEUE_MAX_PAYLOAD_LEN),
                ..QueueConfig::new(SMALL_QUEUE)
            },
        ],
        ..Config::default()
    }
}

/// [`test_config`] with sessions kept 60 s after their connection ends, and disconnected
/// limits twice the connected ones.
pub(super) fn reconnect_config() -> Config {
    Config {
        reconnect_keep_alive_ms: 60_000,
        max_queue_depth_detached: 64,
        // 64 small messages at their real cost (buffer and node), so depth is what binds.
        max_queue_bytes_detached: 64 * (64 + crate::broker::memory::NODE_BYTES),
        ..test_config()
    }
}

/// One frame the broker sent, copied out of the output bytes; or the close of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Received {
    Welcome(Welcome),
    Deliver(Delivery),
    Receipt(u64),
    Subscribed(Sub),
    Unsubscribed(Sub),
    Error {
        code: ErrorCode,
        fatal: bool,
        ref_seq: u64,
    },
    Goodbye(ErrorCode),
    Ping(u64),
    Pong(u64),
    StatsReply(Box<StatsReport>),
    /// DROPPED: reason, count, total.
    Dropped(u16, u64, u64),
    /// Not a frame: the close pass named this connection and the harness disconnected it.
    Closed(CloseReason),
}

/// An owned DELIVER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Delivery {
    /// The REDELIVERED flag (sent again after a resume).
    pub(super) redelivered: bool,
    pub(super) seq: u64,
    pub(super) message_id: u64,
    pub(super) queue: String,
    pub(super) event: String,
    pub(super) payload: Vec<u8>,
    /// DELIVERY_COUNT: times a group message was delivered, this one included.
    pub(super) delivery_count: Option<u16>,
}

impl Delivery {
    pub(super) fn payload_str(&self) -> &str {
        std::str::from_utf8(&self.payload).expect("test payloads are UTF-8")
    }
}

/// An owned SUBSCRIBED / UNSUBSCRIBED body; `event: None` is ALL_EVENTS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Sub {
    pub(super) queue: String,
    pub(super) event: Option<String>,
}

impl Sub {
    pub(super) fn new(queue: &str, event: Option<&str>) -> Sub {
        Sub {
            queue: queue.to_owned(),
            event: event.map(str::to_owned),
        }
    }
}

/// What the harness remembers per connection.
#[derive(Debug, Default)]
struct Client {
    inbox: Vec<Received>,
    /// Seq of this connection's next PUBLISH from [`Harness::publish`].
    next_publish_seq: u64,
    session_id: Option<u64>,
    /// Bytes the client sent that the server has not read yet: its socket's receive queue.
    socket: std::collections::VecDeque<u8>,
}

pub(super) struct Harness {
    pub(super) broker: Broker,
    pub(super) now: Instant,
    epoch: Instant,
    clients: BTreeMap<ConnId, Client>,
    /// Password checks are taken from the broker but not run (a stalled pool).
    pub(super) is_holding_password_checks: bool,
    pub(super) held_password_checks: Vec<(PasswordTicket, PasswordCheck)>,
}

impl Harness {
    pub(super) fn new() -> Harness {
        Harness::with_config(test_config())
    }

    pub(super) fn with_config(config: Config) -> Harness {
        Harness::with_seed(config, 7)
    }

    /// A harness whose broker's random seed is `seed` repeated (tokens, epoch, hash key).
    pub(super) fn with_seed(config: Config, seed: u8) -> Harness {
        config.validate().expect("test configs are valid");
        let epoch = Instant::now();
        Harness {
            broker: Broker::new(config, Origin::fixed(epoch, seed)),
            now: epoch,
            epoch,
            clients: BTreeMap::new(),
            is_holding_password_checks: false,
            held_password_checks: Vec::new(),
        }
    }

    // ---- inputs ----

    /// Accepts a TCP connection from 127.0.0.1:(40000 + id).
    pub(super) fn connect(&mut self, conn: ConnId) {
        self.connect_from(conn, [127, 0, 0, 1]);
    }

    /// Connects `conn` from source address `ip`.
    pub(super) fn connect_from(&mut self, conn: ConnId, ip: [u8; 4]) {
        let port = 40_000 + u16::try_from(conn.0).expect("small conn ids");
        let peer = SocketAddr::from((ip, port));
        self.broker.handle_connect(conn, peer, self.now);
        self.clients.insert(
            conn,
            Client {
                next_publish_seq: 1,
                ..Client::default()
            },
        );
    }

    /// Connects and completes the handshake with the server's default window.
    pub(super) fn hello(&mut self, conn: ConnId) -> Welcome {
        self.hello_with_window(conn, 0)
    }

    /// Connects and completes the handshake asking for `window` (0 = server default).
    pub(super) fn hello_with_window(&mut self, conn: ConnId, window: u32) -> Welcome {
        self.connect(conn);
        let name = format!("client-{}", conn.0);
        self.handshake(
            conn,
            Hello {
                extensions: false,
                inflight_window: window,
                client_name: name.as_bytes(),
                resume: None,
                auth: None,
            },
        )
    }

    /// Sends `hello` on an accepted connection and returns the WELCOME it gets.
    pub(super) fn handshake(&mut self, conn: ConnId, hello: Hello<'_>) -> Welcome {
        self.send(conn, &Frame::Hello(hello));
        let frames = self.frames(conn);
        let [Received::Welcome(welcome)] = frames[..] else {
            panic!("expected WELCOME alone, got {frames:?}");
        };
        self.client_mut(conn).session_id = Some(welcome.session_id);
        welcome
    }

    /// Encodes `frame`, decodes it back as the loop would and feeds it to the broker.
    pub(super) fn send(&mut self, conn: ConnId, frame: &Frame<'_>) {
        let mut bytes = Vec::new();
        codec::encode(frame, &mut bytes).expect("test frames encode");
        self.send_bytes(conn, &bytes);
    }

    /// The client writes `bytes` (any split: whole frames, part of one, several); the loop
    /// reads its connection now, as on a readable event.
    pub(super) fn send_bytes(&mut self, conn: ConnId, bytes: &[u8]) {
        if let Some(client) = self.clients.get_mut(&conn) {
            client.socket.extend(bytes);
        }
        self.read(conn);
    }

    /// Bytes sent by the client that the server has not read (held back by flow control).
    pub(super) fn unread(&self, conn: ConnId) -> usize {
        self.clients.get(&conn).map_or(0, |c| c.socket.len())
    }

    /// The loop reads `conn`: `handle_readable`, then chunks while the broker says `More`.
    fn read(&mut self, conn: ConnId) {
        let mut intake = self.broker.handle_readable(conn, self.now);
        let mut chunk = Vec::new();
        while intake == Intake::More {
            chunk.clear();
            let Some(client) = self.clients.get_mut(&conn) else {
                return;
            };
            let n = client.socket.len().min(READ_CHUNK);
            if n == 0 {
                return;
            }
            chunk.extend(client.socket.drain(..n));
            intake = self.broker.handle_input(conn, &chunk, self.now);
        }
        if intake == Intake::Closed {
            // A closing connection's input is discarded unread (the loop lingers, then drops).
            if let Some(client) = self.clients.get_mut(&conn) {
                client.socket.clear();
            }
        }
    }

    /// Publishes with the connection's next publish seq; returns that seq.
    pub(super) fn publish(&mut self, conn: ConnId, queue: &str, event: &str, payload: &str) -> u64 {
        self.publish_frame(conn, queue, event, None, payload.as_bytes())
    }

    /// Publishes with the CONFLATE flag and `key`; returns the seq.
    pub(super) fn publish_keyed(
        &mut self,
        conn: ConnId,
        queue: &str,
        event: &str,
        key: &str,
        payload: &str,
    ) -> u64 {
        self.publish_frame(conn, queue, event, Some(key.as_bytes()), payload.as_bytes())
    }

    /// Publishes with the next seq and any key and payload bytes; returns the seq.
    pub(super) fn publish_frame(
        &mut self,
        conn: ConnId,
        queue: &str,
        event: &str,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> u64 {
        let client = self.client_mut(conn);
        let seq = client.next_publish_seq;
        client.next_publish_seq += 1;
        self.publish_with_seq(conn, seq, queue, event, key, payload);
        seq
    }

    /// Publishes with the next seq and a time to live (the session needs EXTENSIONS).
    pub(super) fn publish_ttl(
        &mut self,
        conn: ConnId,
        queue: &str,
        payload: &str,
        ttl_ms: u32,
    ) -> u64 {
        let client = self.client_mut(conn);
        let seq = client.next_publish_seq;
        client.next_publish_seq += 1;
        let publish = Publish {
            seq,
            queue: queue.as_bytes(),
            event: b"e",
            key: None,
            ttl_ms: Some(ttl_ms),
            payload: payload.as_bytes(),
        };
        self.send(conn, &Frame::Publish(publish));
        seq
    }

    /// Publishes with an explicit seq (the connection's own counter is left alone).
    pub(super) fn publish_with_seq(
        &mut self,
        conn: ConnId,
        seq: u64,
        queue: &str,
        event: &str,
        key: Option<&[u8]>,
        payload: &[u8],
    ) {
        let publish = Publish {
            seq,
            queue: queue.as_bytes(),
            event: event.as_bytes(),
            key,
            ttl_ms: None,
            payload,
        };
        self.send(conn, &Frame::Publish(publish));
    }

    /// SUBSCRIBE to one event, or to every event with `None`.
    pub(super) fn subscribe(&mut self, conn: ConnId, queue: &str, event: Option<&str>) {
        let sub = subscription(queue, event);
        self.send(conn, &Frame::Subscribe(sub));
    }

    /// SUBSCRIBE as a member of `group` (the session needs EXTENSIONS).
    pub(super) fn subscribe_group(
        &mut self,
        conn: ConnId,
        queue: &str,
        event: Option<&str>,
        group: &str,
    ) {
        let sub = Subscription {
            group: Some(group.as_bytes()),
            ..subscription(queue, event)
        };
        self.send(conn, &Frame::Subscribe(sub));
    }

    /// SUBSCRIBE with PATTERN (the session needs EXTENSIONS).
    pub(super) fn subscribe_pattern(&mut self, conn: ConnId, pattern: &str, event: Option<&str>) {
        let sub = Subscription {
            is_pattern: true,
            ..subscription(pattern, event)
        };
        self.send(conn, &Frame::Subscribe(sub));
    }

    /// UNSUBSCRIBE with PATTERN.
    pub(super) fn unsubscribe_pattern(&mut self, conn: ConnId, pattern: &str, event: Option<&str>) {
        let sub = Subscription {
            is_pattern: true,
            ..subscription(pattern, event)
        };
        self.send(conn, &Frame::Unsubscribe(sub));
    }

    /// UNSUBSCRIBE from `group`.
    pub(super) fn unsubscribe_group(
        &mut self,
        conn: ConnId,
        queue: &str,
        event: Option<&str>,
        group: &str,
    ) {
        let sub = Subscription {
            group: Some(group.as_bytes()),
            ..subscription(queue, event)
        };
        self.send(conn, &Frame::Unsubscribe(sub));
    }

    /// Connects and completes a handshake with EXTENSIONS and `window` (0 = default).
    pub(super) fn hello_extensions(&mut self, conn: ConnId, window: u32) -> Welcome {
        self.connect(conn);
        let name = format!("client-{}", conn.0);
        self.handshake(
            conn,
            Hello {
                extensions: true,
                inflight_window: window,
                client_name: name.as_bytes(),
                resume: None,
                auth: None,
            },
        )
    }

    pub(super) fn unsubscribe(&mut self, conn: ConnId, queue: &str, event: Option<&str>) {
        let sub = subscription(queue, event);
        self.send(conn, &Frame::Unsubscribe(sub));
    }

    pub(super) fn ack(&mut self, conn: ConnId, up_to: u64, seqs: &[u64]) {
        let mut bytes = Vec::new();
        encode_ack(up_to, seqs, &mut bytes).expect("test ACKs encode");
        self.send_bytes(conn, &bytes);
    }

    /// The event loop saw EOF (or an I/O error) on `conn`.
    pub(super) fn disconnect(&mut self, conn: ConnId, reason: CloseReason) {
        if let Some(client) = self.clients.get_mut(&conn) {
            client.socket.clear();
        }
        self.broker.handle_disconnect(conn, reason, self.now);
    }

    /// Moves the clock forward and runs the timers due, as the loop does on wake-up.
    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.broker.handle_timeout(self.now);
    }

    /// Moves the clock to `at` after the harness was created (never backwards).
    pub(super) fn advance_to(&mut self, at: Duration) {
        let target = self.epoch + at;
        assert!(target >= self.now, "the fake clock only moves forward");
        self.advance(target - self.now);
    }

    /// The instant `at` after the harness was created.
    pub(super) fn instant(&self, at: Duration) -> Instant {
        self.epoch + at
    }

    /// Time since the harness was created.
    pub(super) fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    // ---- the loop's output passes ----

    /// One flush pass and one close pass, repeated until the broker has nothing left to say.
    pub(super) fn drive(&mut self) {
        self.drive_where(|_| true);
    }

    /// [`Self::drive`] in which only the connections for which `is_writable` holds take
    /// output: the others' sockets are full, so the loop skips them in the flush pass (their
    /// output keeps waiting). The close pass still writes final frames best effort.
    pub(super) fn drive_where(&mut self, is_writable: impl Fn(ConnId) -> bool) {
        let mut reads = Vec::new();
        loop {
            // The sends since the last drive were this turn's read pass; now its flush pass,
            // turn end and close pass, then the next turn's reads.
            let mut is_busy = false;
            self.broker.handle_timeout(self.now);
            // The harness is the password worker pool: checks run inline, results come back
            // in the same turn (the server's pool returns them a turn or so later).
            while let Some((ticket, check)) = self.broker.poll_password_check(self.now) {
                if self.is_holding_password_checks {
                    self.held_password_checks.push((ticket, check));
                    continue;
                }
                let is_match = check.run();
                self.broker
                    .handle_password_checked(ticket, is_match, self.now);
                is_busy = true;
            }
            while let Some(conn) = self.broker.poll_dirty() {
                if is_writable(conn) {
                    self.transmit(conn);
                }
            }
            self.broker.handle_turn_end(self.now);
            while let Some((conn, reason)) = self.broker.poll_close() {
                // Best effort, as the loop does: the ERROR or GOODBYE goes out first.
                self.transmit(conn);
                self.broker.handle_disconnect(conn, reason, self.now);
                self.client_mut(conn).inbox.push(Received::Closed(reason));
                is_busy = true;
            }
            // Another turn runs now only if something wakes the loop now: output, or a
            // connection to read again (time stands still between readers).
            reads.clear();
            self.broker.poll_reads(self.now, &mut reads);
            reads.sort_unstable();
            reads.dedup();
            for &conn in &reads {
                self.read(conn);
            }
            if reads.is_empty() && !is_busy && !self.broker.has_dirty() {
                return;
            }
        }
    }

    /// `conn`'s socket became writable: the loop takes its output, whether or not the broker
    /// marked it dirty since, with `room` bytes for `poll_transmit` (its high-water mark).
    /// Output past `room` stays with the broker.
    pub(super) fn flush_with_room(&mut self, conn: ConnId, room: usize) {
        self.transmit_with_room(conn, room);
    }

    fn transmit(&mut self, conn: ConnId) {
        self.transmit_with_room(conn, ROOM);
    }

    fn transmit_with_room(&mut self, conn: ConnId, room: usize) {
        let mut out = Vec::new();
        let appended = self.broker.poll_transmit(conn, &mut out, room, self.now);
        assert_eq!(
            appended,
            out.len(),
            "poll_transmit reports what it appended"
        );
        let mut rest = &out[..];
        while !rest.is_empty() {
            let (frame, used) = protocol::decode(rest, u32::MAX)
                .expect("the broker sends well-formed frames")
                .expect("the broker sends whole frames");
            let received = received(frame);
            self.client_mut(conn).inbox.push(received);
            rest = &rest[used..];
        }
    }

    // ---- readers (each one drives first) ----

    /// Everything `conn` received since the last read.
    pub(super) fn frames(&mut self, conn: ConnId) -> Vec<Received> {
        self.drive();
        std::mem::take(&mut self.client_mut(conn).inbox)
    }

    /// Everything `conn` received since the last read, without driving first.
    pub(super) fn take_inbox(&mut self, conn: ConnId) -> Vec<Received> {
        self.clients
            .get_mut(&conn)
            .map(|client| std::mem::take(&mut client.inbox))
            .unwrap_or_default()
    }

    /// The DELIVERs `conn` received since the last read; other frames stay unread.
    pub(super) fn deliveries(&mut self, conn: ConnId) -> Vec<Delivery> {
        self.drive();
        let inbox = std::mem::take(&mut self.client_mut(conn).inbox);
        let (deliveries, others): (Vec<_>, Vec<_>) = inbox
            .into_iter()
            .partition(|frame| matches!(frame, Received::Deliver(_)));
        self.client_mut(conn).inbox = others;
        deliveries
            .into_iter()
            .map(|frame| match frame {
                Received::Deliver(delivery) => delivery,
                _ => unreachable!("partitioned on Deliver"),
            })
            .collect()
    }

    /// Payloads of the DELIVERs `conn` received since the last read, as text.
    pub(super) fn payloads(&mut self, conn: ConnId) -> Vec<String> {
        self.deliveries(conn)
            .iter()
            .map(|d| d.payload_str().to_owned())
            .collect()
    }

    /// Everything `conn` received since the last read, apart from DELIVERs, SUBSCRIBED,
    /// UNSUBSCRIBED and RECEIPTs (dropped unread).
    pub(super) fn control(&mut self, conn: ConnId) -> Vec<Received> {
        self.frames(conn)
            .into_iter()
            .filter(|frame| {
                !matches!(
                    frame,
                    Received::Deliver(_)
                        | Received::Subscribed(_)
                        | Received::Unsubscribed(_)
                        | Received::Receipt(_)
                )
            })
            .collect()
    }

    /// Drops everything `conn` received so far.
    pub(super) fn discard(&mut self, conn: ConnId) {
        self.frames(conn);
    }

    /// Acks everything delivered to `conn` so far (cumulatively).
    pub(super) fn ack_all(&mut self, conn: ConnId) {
        let last = self.session(conn).last_delivery_seq;
        self.ack(conn, last, &[]);
    }

    /// The broker's report after the current turn completes (a reader: it drives first).
    pub(super) fn stats(&mut self) -> StatsReport {
        self.drive();
        self.broker.stats()
    }

    /// The broker's report now, in the middle of a turn (no driving).
    pub(super) fn peek_stats(&self) -> StatsReport {
        self.broker.stats()
    }

    /// The stats of `conn`'s session (it must still have one).
    ///
    /// A peek: it does not drive, so it shows the state in the middle of a turn.
    pub(super) fn session(&self, conn: ConnId) -> SessionStats {
        let id = self.clients[&conn]
            .session_id
            .expect("handshake done on this connection");
        self.broker
            .stats()
            .sessions
            .into_iter()
            .find(|s| s.session_id == id)
            .unwrap_or_else(|| panic!("conn {} has no live session {id}", conn.0))
    }

    /// Asserts nothing is left in the message store.
    pub(super) fn assert_store_is_empty(&mut self) {
        let server = self.stats().server;
        assert_eq!(
            (server.stored_messages, server.stored_bytes),
            (0, 0),
            "messages left in the store"
        );
    }

    fn client_mut(&mut self, conn: ConnId) -> &mut Client {
        self.clients.entry(conn).or_default()
    }
}

fn subscription<'a>(queue: &'a str, event: Option<&'a str>) -> Subscription<'a> {
    Subscription {
        queue: queue.as_bytes(),
        event: event.map(str::as_bytes),
        start: None,
        group: None,
        is_pattern: false,
    }
}

/// A HELLO asking to resume a session the server cannot know.
pub(super) fn resume_hello() -> Hello<'static> {
    Hello {
        extensions: false,
        inflight_window: 0,
        client_name: b"resumer",
        resume: Some(Resume {
            session_id: 42,
            resume_token: [7; protocol::RESUME_TOKEN_LEN],
            last_delivery_seq: 3,
            first_resendable_publish_seq: 1,
        }),
        auth: None,
    }
}

/// Bytes `frame` takes on the wire. Only for frames whose bytes the test knows in full (not
/// ERROR, GOODBYE or STATS_REPLY, whose texts are the broker's; not `Closed`).
pub(super) fn encoded_len(frame: &Received) -> usize {
    let frame = match frame {
        Received::Welcome(welcome) => Frame::Welcome(*welcome),
        Received::Deliver(d) => Frame::Deliver(Deliver {
            seq: d.seq,
            message_id: d.message_id,
            flags: if d.redelivered {
                DELIVER_REDELIVERED
            } else {
                0
            },
            queue: d.queue.as_bytes(),
            event: d.event.as_bytes(),
            delivery_count: d.delivery_count,
            payload: &d.payload,
        }),
        Received::Receipt(seq) => Frame::Receipt(*seq),
        Received::Subscribed(s) => Frame::Subscribed(subscription(&s.queue, s.event.as_deref())),
        Received::Unsubscribed(s) => {
            Frame::Unsubscribed(subscription(&s.queue, s.event.as_deref()))
        }
        Received::Ping(nonce) => Frame::Ping(*nonce),
        Received::Pong(nonce) => Frame::Pong(*nonce),
        other => panic!("the test does not know every byte of {other:?}"),
    };
    let mut out = Vec::new();
    codec::encode(&frame, &mut out).expect("test frames encode");
    out.len()
}

fn received(frame: Frame<'_>) -> Received {
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).expect("names are UTF-8 here");
    let sub = |s: Subscription<'_>| Sub {
        queue: text(s.queue),
        event: s.event.map(text),
    };
    let code = |code: Result<ErrorCode, u16>| code.expect("the broker sends known codes");
    match frame {
        Frame::Welcome(welcome) => Received::Welcome(welcome),
        Frame::Deliver(d) => {
            assert_eq!(
                d.flags & !(DELIVER_REDELIVERED | DELIVER_DELIVERY_COUNT),
                0,
                "no unknown DELIVER flags"
            );
            Received::Deliver(Delivery {
                redelivered: d.flags & DELIVER_REDELIVERED != 0,
                seq: d.seq,
                message_id: d.message_id,
                queue: text(d.queue),
                event: text(d.event),
                payload: d.payload.to_vec(),
                delivery_count: d.delivery_count,
            })
        }
        Frame::Receipt(seq) => Received::Receipt(seq),
        Frame::Subscribed(s) => Received::Subscribed(sub(s)),
        Frame::Unsubscribed(s) => Received::Unsubscribed(sub(s)),
        Frame::Error(e) => Received::Error {
            code: code(e.code),
            fatal: e.fatal,
            ref_seq: e.ref_seq,
        },
        Frame::Goodbye(g) => Received::Goodbye(code(g.code)),
        Frame::Ping(nonce) => Received::Ping(nonce),
        Frame::Pong(nonce) => Received::Pong(nonce),
        Frame::Dropped(d) => Received::Dropped(d.reason, d.count, d.total),
        Frame::StatsReply(json) => Received::StatsReply(Box::new(
            serde_json::from_slice(json).expect("STATS_REPLY is a StatsReport in JSON"),
        )),
        other => panic!("the broker sent a client-to-server frame: {other:?}"),
    }
}

/// A fatal ERROR with `code` and no ref seq.
pub(super) fn fatal(code: ErrorCode) -> Received {
    Received::Error {
        code,
        fatal: true,
        ref_seq: 0,
    }
}

/// What a connection sees when the broker ends it with a fatal ERROR.
pub(super) fn failed_with(code: ErrorCode) -> Vec<Received> {
    vec![
        fatal(code),
        Received::Closed(CloseReason::ProtocolError(code)),
    ]
}

/// What a connection sees when the broker ends it with GOODBYE.
pub(super) fn said_goodbye(code: ErrorCode) -> Vec<Received> {
    vec![
        Received::Goodbye(code),
        Received::Closed(CloseReason::Goodbye(code)),
    ]
}
