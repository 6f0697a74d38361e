//! Model test: random operation sequences against a reference model of the broker.
//!
//! Files: `ops.rs` (the operations and how they are generated), `reference.rs` (the model's
//! state and the broker's rules, one method per rule), `output.rs` (what a flush sends, and
//! each client's own view of it), `scenarios.rs` (hand-written runs for rare paths); this file
//! applies operations to both the model and a [`Harness`] and compares.
//!
//! Operations are what clients and the event loop do: publish (and resend), subscribe, ack,
//! ping, say BYE, drop the connection, open a new one with a new session or a resume (own
//! session or not, valid or not, taking over a live connection or not), stop and start reading;
//! the loop's flush pass and the clock. At every flush the model says exactly what each
//! connection must receive: WELCOME (outcome, lost reason, missed), control frames, RECEIPT,
//! redeliveries after a resume (same seq and message id, REDELIVERED), DELIVERs within the
//! window span, GOODBYE and the close. After every step the broker's stats must agree with it:
//! per session depth, bytes, in flight, pending, seqs, state (connected or detached); the
//! connections, counters, subscribers, tombstones, and a store holding exactly the messages
//! some live session references.
//!
//! Each client also checks its own view, as a real client would: deliveries deduplicated by
//! seq, with no gap, in acceptance order, a seq seen before only with REDELIVERED and the same
//! message; what it received plus what is pending is exactly what was queued for its session.
//!
//! The event loop's part: `Transmit` is one turn's flush and close passes, in which every
//! connection whose socket is writable takes all its output; `SetWritable` stops (or restarts)
//! a client's socket taking bytes; `Choke` flushes it once with a small room (the loop's
//! high-water mark), output past it left waiting, and leaves the socket full. Output that waits
//! untaken for a whole `heartbeat_timeout` (since it first waited, or since a transmit was cut
//! short) closes the connection with HEARTBEAT_TIMEOUT at its next heartbeat check.
//!
//! Most runs keep detached sessions for `KEEP_ALIVE_MS`; the others use
//! `reconnect_keep_alive_ms = 0`, where a session ends with its connection.

mod ops;
mod output;
mod reference;
mod scenarios;

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;

use super::harness::{test_config, Harness, Received, Sub, CONFLATING_QUEUE};
use crate::broker::{CloseReason, ConnId};
use crate::config::Config;
use crate::protocol::{ErrorCode, Frame, Hello, Resume, RESUME_TOKEN_LEN};
use ops::{op, Identity, Op, ResumeOp};
use reference::{Conn, Counters, Key, Message, Model};

const CLIENTS: usize = 3;
/// Connection ids handed out, lowest free first (the loop's slab reuses ids the same way).
const CONN_IDS: usize = 10;
const QUEUES: [&str; 3] = ["a", "b", CONFLATING_QUEUE];
/// Events a message may carry; subscriptions name only the non-empty ones.
const EVENTS: [&str; 3] = ["x", "y", ""];
const KEYS: [&str; 2] = ["", "k"];
const MAX_PAYLOAD_LEN: usize = 12;
/// Detached sessions are kept this long in the reconnecting runs: a few `Advance`s.
const KEEP_ALIVE_MS: u64 = 2_500;
/// STATS lists at most this many recently closed sessions.
const CLOSED_SESSIONS_LISTED: usize = 100;

fn model_config(reconnect_keep_alive_ms: u64) -> Config {
    Config {
        reconnect_keep_alive_ms,
        handshake_timeout_ms: 500,
        heartbeat_interval_ms: 1_000,
        heartbeat_timeout_ms: 3_000,
        in_flight_window: 3,
        max_queue_depth: 6,
        // Every model message costs 96 B (64 B size class + a node): 5 and 8 messages.
        max_queue_bytes: 5 * 96,
        max_queue_depth_detached: 9,
        max_queue_bytes_detached: 8 * 96,
        max_subscriptions: 16,
        ..test_config()
    }
}

fn run(keep_alive_ms: u64, windows: &[u32], ops: &[Op]) {
    let config = model_config(keep_alive_ms);
    let mut h = Harness::with_config(config.clone());
    // The model knows queue semantics, not flow control (tested in backlog.rs, intake.rs).
    h.broker.turn_draining_off();
    let mut m = Model::new(config, CLIENTS);
    for (client, &window) in windows.iter().enumerate() {
        apply(&mut h, &mut m, &Op::Connect { client, window });
    }
    for op in ops {
        apply(&mut h, &mut m, op);
        check_invariants(&h, &m);
    }
    // Everyone leaves: BYE where still connected; abandoned connections time out, then every
    // detached session expires.
    let timeout = m.config.heartbeat_timeout_ms;
    let leave = (0..CLIENTS).map(|client| Op::Bye { client }).chain([
        Op::Transmit,
        Op::Advance { ms: timeout },
        Op::Transmit,
        Op::Advance { ms: KEEP_ALIVE_MS },
        Op::Transmit,
    ]);
    for op in leave {
        apply(&mut h, &mut m, &op);
        check_invariants(&h, &m);
    }
    assert!(
        m.conns.is_empty() && m.sessions.is_empty(),
        "the model kept something"
    );
    let server = h.stats().server;
    assert_eq!((server.sessions, server.connections), (0, 0));
    h.assert_store_is_empty();
}

fn apply(h: &mut Harness, m: &mut Model, op: &Op) {
    let now = h.elapsed();
    match *op {
        Op::Publish {
            client,
            queue,
            event,
            key,
            len,
        } => {
            let Some((conn, session)) = m.attached(client) else {
                if let Some(conn) = m.clients[client].conn {
                    // Closing, in the same loop turn as the close: the broker must ignore it.
                    h.publish_with_seq(conn, 1, QUEUES[queue], "x", None, b"late");
                }
                return;
            };
            m.received(conn, now);
            let session = m.session(session);
            session.last_publish_seq += 1;
            session.is_receipt_due = true;
            let seq = session.last_publish_seq;
            m.mark_dirty(conn, now);
            let identity =
                (queue == 2 || key.is_some()).then(|| (queue, event, KEYS[key.unwrap_or(0)]));
            let message = Message {
                id: m.next_message_id,
                queue,
                event,
                identity,
                len,
            };
            m.next_message_id += 1;
            m.counters.messages_published += 1;
            let key_bytes = key.map(|k| KEYS[k].as_bytes());
            let payload = message.payload();
            h.publish_with_seq(conn, seq, QUEUES[queue], EVENTS[event], key_bytes, &payload);
            m.route(&message, now);
        }
        Op::RepeatPublish { client, back } => {
            let Some((conn, session)) = m.attached(client) else {
                return;
            };
            let last = m.sessions[&session].last_publish_seq;
            if last == 0 {
                return;
            }
            m.received(conn, now);
            resend(h, m, conn, session, last - (last - 1) * back / 100, now);
        }
        Op::Subscribe {
            client,
            queue,
            event,
        }
        | Op::Unsubscribe {
            client,
            queue,
            event,
        } => {
            let Some((conn, session)) = m.attached(client) else {
                return;
            };
            m.received(conn, now);
            let name = event.map(|e| EVENTS[e]);
            let sub = Sub::new(QUEUES[queue], name);
            if matches!(op, Op::Subscribe { .. }) {
                m.session(session).subscriptions.insert((queue, event));
                h.subscribe(conn, QUEUES[queue], name);
                m.push_control(conn, Received::Subscribed(sub), now);
            } else {
                m.session(session).subscriptions.remove(&(queue, event));
                h.unsubscribe(conn, QUEUES[queue], name);
                m.push_control(conn, Received::Unsubscribed(sub), now);
            }
        }
        Op::Ack {
            client,
            up_to,
            ref seqs,
        } => {
            let Some((conn, session)) = m.attached(client) else {
                return;
            };
            m.received(conn, now);
            let session = m.session(session);
            let last = session.last_sent_seq;
            let up_to = last * up_to / 100;
            let seqs: Vec<u64> = if last == 0 {
                Vec::new()
            } else {
                seqs.iter().map(|p| 1 + (last - 1) * p / 100).collect()
            };
            let (span_before, before) = (session.span(), session.in_flight.len());
            session
                .in_flight
                .retain(|&seq, _| seq > up_to && !seqs.contains(&seq));
            let acked = before - session.in_flight.len();
            let is_room_made = session.span() < span_before && !session.pending.is_empty();
            m.counters.messages_acked += acked as u64;
            if is_room_made {
                m.mark_dirty(conn, now);
            }
            h.ack(conn, up_to, &seqs);
        }
        Op::Ping { client, nonce } => {
            let Some((conn, _)) = m.attached(client) else {
                return;
            };
            m.received(conn, now);
            h.send(conn, &Frame::Ping(nonce));
            m.push_control(conn, Received::Pong(nonce), now);
        }
        Op::Transmit => transmit(h, m, None),
        Op::SetWritable {
            client,
            is_writable,
        } => {
            let Some(conn) = m.clients[client].conn else {
                return;
            };
            let was_writable = std::mem::replace(&mut m.conn(conn).is_writable, is_writable);
            if is_writable && !was_writable {
                transmit(h, m, Some((conn, usize::MAX)));
            }
        }
        Op::Choke { client, room } => {
            let Some(conn) = m.clients[client].conn else {
                return;
            };
            m.conn(conn).is_writable = false;
            transmit(h, m, Some((conn, room)));
        }
        Op::Disconnect { client } => {
            let Some(conn) = m.clients[client].conn.take() else {
                return;
            };
            h.disconnect(conn, CloseReason::PeerClosed);
            let state = m
                .conns
                .remove(&conn)
                .expect("the client's connection is open");
            if let Some(session) = state.session {
                m.detach(session, now);
            }
        }
        Op::Bye { client } => {
            let Some((conn, _)) = m.attached(client) else {
                return;
            };
            m.received(conn, now);
            h.send(conn, &Frame::Bye);
            m.goodbye(conn, ErrorCode::ClientBye, now);
        }
        Op::Connect { client, window } => {
            let Some(conn) = connect(h, m, client, now) else {
                return;
            };
            let hello = Hello {
                extensions: false,
                inflight_window: window,
                client_name: b"model",
                resume: None,
                auth: None,
            };
            h.send(conn, &Frame::Hello(hello));
            m.open_session(conn, window, None, now);
            // HELLO and its WELCOME are one loop turn; the flush covers every connection.
            transmit(h, m, None);
        }
        Op::Resume(ref resume_op) => resume(h, m, resume_op, now),
        Op::Advance { ms } => {
            h.advance(Duration::from_millis(ms));
            let now = h.elapsed();
            let due: Vec<ConnId> = m
                .conns
                .iter()
                .filter(|(_, c)| c.closing.is_none() && c.session.is_some() && c.next_check <= now)
                .map(|(&id, _)| id)
                .collect();
            for conn in due {
                m.check_conn(conn, now);
            }
            let keep_alive = m.keep_alive();
            let expired: Vec<_> = m
                .sessions
                .iter()
                .filter(|(_, s)| s.detached_at.is_some_and(|at| at + keep_alive <= now))
                .map(|(&key, _)| key)
                .collect();
            for key in expired {
                m.counters.sessions_expired += 1;
                m.end_session(key, ErrorCode::SessionExpired);
            }
        }
    }
}

/// Opens a connection for `client` with the lowest free id.
fn connect(h: &mut Harness, m: &mut Model, client: usize, now: Duration) -> Option<ConnId> {
    let conn = (1..=CONN_IDS)
        .map(ConnId)
        .find(|id| !m.conns.contains_key(id))?;
    h.connect(conn);
    m.conns.insert(conn, Conn::new(client, now));
    m.clients[client].conn = Some(conn);
    Some(conn)
}

/// A resend of `seq` ≤ the last accepted: receipted, never routed again.
fn resend(h: &mut Harness, m: &mut Model, conn: ConnId, session: Key, seq: u64, now: Duration) {
    m.session(session).is_receipt_due = true;
    m.mark_dirty(conn, now);
    m.counters.messages_duplicate += 1;
    h.publish_with_seq(conn, seq, "a", "x", None, b"again");
}

fn resume(h: &mut Harness, m: &mut Model, by: &ResumeOp, now: Duration) {
    let epoch = m.epoch.expect("the first WELCOMEs were read");
    let own = m.clients[by.client]
        .session
        .map(|(_, id, token)| (id, token));
    let earlier_run = (
        (u64::from(epoch.wrapping_add(1)) << 32) | 1,
        [0; RESUME_TOKEN_LEN],
    );
    let (session_id, resume_token) = match (by.identity, own) {
        (Identity::Own, Some(own)) => own,
        (Identity::WrongToken, Some((id, mut token))) => {
            token[0] ^= 1;
            (id, token)
        }
        (Identity::UnknownId, _) => (
            (u64::from(epoch) << 32) | 0xFFFF_0000,
            [0; RESUME_TOKEN_LEN],
        ),
        (Identity::EarlierRun | Identity::Own | Identity::WrongToken, _) => earlier_run,
    };
    let live = m
        .sessions
        .iter()
        .find(|(_, s)| s.id == session_id)
        .map(|(&key, _)| key);
    let (received, resendable) = match live {
        Some(key) => {
            let session = &m.sessions[&key];
            let (lowest, last) = (session.lowest_unacked(), session.last_sent_seq);
            let received = match by.last_delivery {
                0 => last,
                1 => lowest - 1,
                2 => (lowest - 1 + last) / 2,
                3 => last + 1,
                _ => lowest.saturating_sub(2),
            };
            let accepted = session.last_publish_seq;
            let resendable = match by.first_resendable {
                0 => accepted + 1,
                1 => accepted.max(1),
                2 => accepted.saturating_sub(2).max(1),
                _ => accepted + 2,
            };
            (received, resendable)
        }
        None => (0, 1),
    };
    let Some(conn) = connect(h, m, by.client, now) else {
        return;
    };
    let hello = Hello {
        extensions: false,
        inflight_window: by.window,
        client_name: b"model",
        resume: Some(Resume {
            session_id,
            resume_token,
            last_delivery_seq: received,
            first_resendable_publish_seq: resendable,
        }),
        auth: None,
    };
    h.send(conn, &Frame::Hello(hello));
    let lost = match live.filter(|key| m.sessions[key].token == resume_token) {
        None => Some(m.why_gone(session_id, &resume_token, received)),
        Some(key) => {
            let session = &m.sessions[&key];
            let accepted = session.last_publish_seq;
            if resendable > accepted + 1 {
                m.end_refused(key, ErrorCode::ResendGap, now);
                Some((ErrorCode::ResendGap, Some(resendable - 1 - accepted)))
            } else if received > session.last_sent_seq || received + 1 < session.lowest_unacked() {
                m.end_refused(key, ErrorCode::ResumeInvalid, now);
                Some((ErrorCode::ResumeInvalid, None))
            } else {
                m.resume(conn, key, by.window, received, now);
                for seq in resendable..=accepted {
                    resend(h, m, conn, key, seq, now);
                }
                None
            }
        }
    };
    if let Some(lost) = lost {
        m.open_session(conn, by.window, Some(lost), now);
    }
    match by.choke {
        None => transmit(h, m, None),
        Some(room) => {
            m.conn(conn).is_writable = false;
            transmit(h, m, Some((conn, room)));
        }
    }
}

/// One flush and close pass, after the loop flushed `flushed` (a connection and the room it
/// had) on a writable event: each connection gets exactly what the model says.
fn transmit(h: &mut Harness, m: &mut Model, flushed: Option<(ConnId, usize)>) {
    if let Some((conn, room)) = flushed {
        h.flush_with_room(conn, room);
    }
    let writable: BTreeSet<ConnId> = m
        .conns
        .iter()
        .filter(|(_, c)| c.is_writable)
        .map(|(&id, _)| id)
        .collect();
    h.drive_where(|conn| writable.contains(&conn));
    let now = h.elapsed();
    for conn in (0..=CONN_IDS).map(ConnId) {
        let frames = h.take_inbox(conn);
        if !m.conns.contains_key(&conn) {
            assert_eq!(frames, [], "conn {} is not open", conn.0);
            continue;
        }
        let flushed_with = flushed.filter(|f| f.0 == conn).map(|f| f.1);
        let expected = m.take_output(conn, now, flushed_with);
        assert_eq!(
            frames,
            m.resolve(&expected, &frames),
            "conn {} (client {}) at {now:?}",
            conn.0,
            m.conns[&conn].client
        );
        m.delivered(conn, expected, &frames);
    }
    m.check_views();
}

fn check_invariants(h: &Harness, m: &Model) {
    let stats = h.peek_stats();
    let mut referenced = std::collections::BTreeMap::new();
    for session in m.sessions.values() {
        let actual = stats
            .sessions
            .iter()
            .find(|s| s.session_id == session.id)
            .unwrap_or_else(|| panic!("session {:#x} is gone", session.id));
        let state = match session.conn {
            Some(_) => "connected",
            None => "detached",
        };
        let expected = (
            session.depth() as u64,
            session.bytes() as u64,
            session.in_flight.len() as u64,
            session.pending.len() as u64,
            session.last_sent_seq,
            session.last_publish_seq,
            session.conflated,
            session.redelivered,
            session.resumes,
            state,
        );
        let got = (
            actual.queue_depth,
            actual.queue_bytes,
            actual.in_flight,
            actual.pending,
            actual.last_delivery_seq,
            actual.last_publish_seq,
            actual.conflated,
            actual.redelivered,
            actual.resumes,
            actual.state.as_str(),
        );
        assert_eq!(
            got, expected,
            "session {:#x}: depth, bytes, in flight, pending, seqs, conflated, redelivered, \
             resumes, state",
            session.id
        );
        for message in session.pending.iter().chain(session.in_flight.values()) {
            referenced.insert(message.id, message.len as u64);
        }
    }
    let server = &stats.server;
    let detached = m.sessions.values().filter(|s| s.conn.is_none()).count();
    assert_eq!(
        (
            server.sessions,
            server.sessions_detached_now,
            server.connections
        ),
        (
            m.sessions.len() as u64,
            detached as u64,
            m.conns.len() as u64
        ),
        "sessions, detached, connections"
    );
    assert_eq!(Counters::of(server), m.counters);
    for (index, name) in QUEUES.iter().enumerate() {
        let subscribers = m
            .sessions
            .values()
            .filter(|s| s.subscriptions.iter().any(|sub| sub.0 == index))
            .count() as u64;
        let queue = stats.queues.iter().find(|q| q.name == *name);
        assert_eq!(
            queue.map_or(0, |q| q.subscribers),
            subscribers,
            "queue {name}"
        );
    }
    assert_eq!(
        (server.stored_messages, server.stored_bytes),
        (referenced.len() as u64, referenced.values().sum::<u64>()),
        "the store holds exactly the messages live sessions reference"
    );
    assert_eq!(
        stats.closed_sessions.len(),
        m.tombstones.len().min(CLOSED_SESSIONS_LISTED)
    );
    for closed in &stats.closed_sessions {
        let tombstone = &m.tombstones[&closed.session_id];
        assert_eq!(
            (closed.reason.as_str(), closed.missed),
            (tombstone.reason.name(), tombstone.missed),
            "tombstone of session {:#x}",
            closed.session_id
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_operations_match_the_model(
        keep_alive_ms in prop_oneof![1 => Just(0), 3 => Just(KEEP_ALIVE_MS)],
        windows in proptest::collection::vec(0..=4u32, CLIENTS),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run(keep_alive_ms, &windows, &ops);
    }
}
