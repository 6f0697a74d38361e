//! Transmit: what each connection is sent next, and which connections to close.
//!
//! The loop's flush pass asks [`Broker::poll_dirty`] for connections with something new, then
//! [`Broker::poll_transmit`] for their bytes while the socket takes them; its close pass asks
//! [`Broker::poll_close`]. The session queue is the backlog: frames are encoded into the
//! loop's write buffer only while it has room, so depth limits, conflation and
//! close-on-overflow act on messages, not on opaque bytes.

use std::time::Instant;

use super::{Broker, CloseReason, ConnId};
use crate::protocol::codec::{encode_deliver, encode_receipt};
use crate::protocol::frame::DELIVER_REDELIVERED;
use crate::protocol::ErrorCode;

impl Broker {
    /// Appends bytes for `conn` to `out`: pending control frames, a batched RECEIPT,
    /// redeliveries after a resume, then new deliveries while `out.len() < room` and the
    /// in-flight window allows. Returns the number of bytes appended.
    ///
    /// Bounded work: stops at `room` (plus one frame).
    pub fn poll_transmit(
        &mut self,
        conn: ConnId,
        out: &mut Vec<u8>,
        room: usize,
        now: Instant,
    ) -> usize {
        self.now = now;
        let start = out.len();
        let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) else {
            return 0;
        };
        state.waiting_since = None;
        state.is_output_blocked = false;
        if !state.control.is_empty() {
            out.extend_from_slice(&state.control);
            // Control frames are rare (WELCOME, SUBSCRIBED, PING/PONG): free the buffer rather
            // than keep its capacity on every idle connection.
            self.buffered_bytes -= state.control.capacity();
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
                self.flow.backlogged += 1;
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
                state.waiting_since = Some(now);
                state.is_output_blocked = true;
            }
        }
        let appended = out.len() - start;
        if appended > 0 {
            state.last_sent = now;
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

    pub(super) fn mark_dirty(&mut self, conn: ConnId) {
        let now = self.now;
        if let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) {
            if state.waiting_since.is_none() {
                state.waiting_since = Some(now);
            }
            if !state.is_dirty {
                state.is_dirty = true;
                self.dirty.push(conn);
            }
        }
    }

    /// Encodes a control frame for `conn`; a client that lets control frames pile up past
    /// `max_write_buffer_bytes` (never reading) is closed with SLOW_CONSUMER.
    pub(super) fn push_control(&mut self, conn: ConnId, encode: impl FnOnce(&mut Vec<u8>)) {
        let limit = self.config.max_write_buffer_bytes;
        let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) else {
            return;
        };
        let before = state.control.capacity();
        encode(&mut state.control);
        let is_over = state.control.len() > limit && state.close.is_none();
        if is_over {
            state.control = Vec::new();
        }
        self.buffered_bytes = self.buffered_bytes - before + state.control.capacity();
        if is_over {
            self.drop_connection(conn, ErrorCode::SlowConsumer, "write buffer limit exceeded");
        }
        self.mark_dirty(conn);
    }
}
