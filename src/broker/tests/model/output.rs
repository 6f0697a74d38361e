//! What a flush sends, and what each client makes of it.
//!
//! [`Model::take_output`] mirrors `poll_transmit`: control frames, a RECEIPT, redeliveries
//! after a resume, then new deliveries within the window span and the room the loop gave. The
//! frames the broker actually sent are compared with it by the caller; then each client
//! updates its own view of its session ([`see`]) and [`Model::check_views`] compares that view
//! with what was queued for it.

use std::time::Duration;

use super::super::harness::{encoded_len, Delivery, Received};
use super::reference::{Client, Control, Key, Model};
use crate::broker::{CloseReason, ConnId};
use crate::protocol::Welcome;

impl Control {
    fn encoded_len(&self) -> usize {
        match self {
            Control::Frame(frame) => encoded_len(frame),
            Control::Welcome { welcome, .. } => encoded_len(&Received::Welcome(*welcome)),
        }
    }
}

impl Model {
    /// What `id` receives in this flush (or close) pass, in order; moves pending messages into
    /// flight. `flushed_with`: the loop takes its output even if it was not marked dirty (its
    /// socket just became writable), with this much room (its high-water mark): control frames
    /// and a RECEIPT always go, (re)deliveries while fewer bytes than `room` have gone; output
    /// left over waits from now.
    pub(super) fn take_output(
        &mut self,
        id: ConnId,
        now: Duration,
        flushed_with: Option<usize>,
    ) -> Vec<Control> {
        let conn = self.conn(id);
        let mut out: Vec<Control> = Vec::new();
        if let Some(code) = conn.closing {
            out.append(&mut conn.control);
            let closed = Received::Closed(CloseReason::Goodbye(code));
            out.push(Control::Frame(closed));
            return out;
        }
        if !conn.is_writable && flushed_with.is_none() {
            return out;
        }
        let is_dirty = conn.waiting_since.is_some();
        out.append(&mut conn.control);
        let key = conn
            .session
            .expect("an open connection that is not closing has a session");
        let room = flushed_with.unwrap_or(usize::MAX);
        let mut bytes: usize = out.iter().map(Control::encoded_len).sum();
        let push = |out: &mut Vec<Control>, bytes: &mut usize, frame: Received| {
            *bytes += encoded_len(&frame);
            out.push(Control::Frame(frame));
        };
        let session = self.sessions.get_mut(&key).expect("a live session");
        if session.is_receipt_due {
            push(
                &mut out,
                &mut bytes,
                Received::Receipt(session.last_publish_seq),
            );
            session.is_receipt_due = false;
        }
        if let Some(from) = session.redeliver_from.take() {
            let seqs: Vec<u64> = session
                .in_flight
                .range(from..)
                .map(|(&seq, _)| seq)
                .collect();
            for seq in seqs {
                if bytes >= room {
                    session.redeliver_from = Some(seq);
                    break;
                }
                let frame = session.in_flight[&seq].delivery(seq, true);
                push(&mut out, &mut bytes, frame);
                session.redelivered += 1;
                self.counters.messages_redelivered += 1;
            }
        }
        while bytes < room && session.span() < session.window {
            let Some(message) = session.pending.pop_front() else {
                break;
            };
            session.last_sent_seq += 1;
            let seq = session.last_sent_seq;
            push(&mut out, &mut bytes, message.delivery(seq, false));
            session.in_flight.insert(seq, message);
            self.counters.messages_delivered += 1;
        }
        let is_cut_short = bytes >= room && session.has_output();
        assert!(
            is_dirty || flushed_with.is_some() || out.is_empty(),
            "conn {}: output waits but the broker was not told (never marked dirty): {out:?}",
            id.0
        );
        let conn = self.conn(id);
        // Output left over by a transmit cut short waits from now.
        conn.waiting_since = is_cut_short.then_some(now);
        if !out.is_empty() {
            conn.last_sent = now;
        }
        out
    }

    /// The frames `expected` stands for, new sessions' ids and tokens taken from `frames`.
    pub(super) fn resolve(&self, expected: &[Control], frames: &[Received]) -> Vec<Received> {
        let resolve = |(index, control): (usize, &Control)| match control {
            Control::Frame(frame) => frame.clone(),
            Control::Welcome {
                welcome, is_new, ..
            } => {
                let mut welcome = *welcome;
                if let (true, Some(Received::Welcome(got))) = (is_new, frames.get(index)) {
                    (welcome.session_id, welcome.resume_token) = (got.session_id, got.resume_token);
                }
                Received::Welcome(welcome)
            }
        };
        expected.iter().enumerate().map(resolve).collect()
    }

    /// After `id` received `expected` (checked equal to what the broker sent): new sessions
    /// learn their id, the client updates its view, a closed connection is gone.
    pub(super) fn delivered(&mut self, id: ConnId, expected: Vec<Control>, frames: &[Received]) {
        let client = self.conns[&id].client;
        for (control, frame) in expected.into_iter().zip(frames) {
            match (control, frame) {
                (
                    Control::Welcome {
                        session, is_new, ..
                    },
                    Received::Welcome(welcome),
                ) => {
                    if is_new {
                        self.learn_new_session(session, welcome);
                    }
                    let client = &mut self.clients[client];
                    if is_new || client.session.map(|(key, ..)| key) != Some(session) {
                        client.view.clear();
                    }
                    client.session = Some((session, welcome.session_id, welcome.resume_token));
                }
                (_, Received::Deliver(delivery)) => {
                    let session = self.conns[&id].session;
                    let client = &mut self.clients[client];
                    if client.session.map(|(key, ..)| key) == session {
                        see(client, delivery);
                    }
                }
                _ => {}
            }
        }
        if self.conns[&id].closing.is_some() {
            self.conns.remove(&id);
            let client = &mut self.clients[client];
            if client.conn == Some(id) {
                client.conn = None;
            }
        }
    }

    fn learn_new_session(&mut self, key: Key, welcome: &Welcome) {
        let id = welcome.session_id;
        let epoch = (id >> 32) as u32;
        assert_eq!(*self.epoch.get_or_insert(epoch), epoch, "one epoch per run");
        assert!(
            id as u32 != 0
                && !self.tombstones.contains_key(&id)
                && self.sessions.values().all(|s| s.id != id),
            "session id {id:#x} is not fresh"
        );
        let session = self.session(key);
        session.id = id;
        session.token = welcome.resume_token;
    }

    /// Each client's view: what it received plus what is still pending for it is exactly what
    /// was queued for its session.
    pub(super) fn check_views(&self) {
        for (index, client) in self.clients.iter().enumerate() {
            let Some(session) = client.session.and_then(|(key, ..)| self.sessions.get(&key)) else {
                continue;
            };
            let seen: Vec<u64> = client
                .view
                .values()
                .copied()
                .chain(session.pending.iter().map(|m| m.id))
                .collect();
            assert_eq!(
                seen, session.accepted,
                "client {index}: received + pending is not what was queued for it"
            );
        }
    }
}

/// A client receives a DELIVER: a new seq must follow the last one, in acceptance order; a seq
/// seen before only again with REDELIVERED and the same message.
fn see(client: &mut Client, delivery: &Delivery) {
    match client.view.get(&delivery.seq) {
        Some(&message_id) => assert!(
            delivery.redelivered && delivery.message_id == message_id,
            "duplicate delivery {delivery:?} (first was message {message_id})"
        ),
        None => {
            let (last_seq, last_id) = client
                .view
                .last_key_value()
                .map_or((0, 0), |(&seq, &id)| (seq, id));
            assert!(
                !delivery.redelivered
                    && delivery.seq == last_seq + 1
                    && delivery.message_id > last_id,
                "gap or disorder: {delivery:?} after seq {last_seq} (message {last_id})"
            );
            client.view.insert(delivery.seq, delivery.message_id);
        }
    }
}
