//! Transmit: what each connection is sent next, and which connections to close.
//!
//! The loop's flush pass asks [`Broker::poll_dirty`] for connections with something new, then
//! [`Broker::poll_transmit`] for their bytes while the socket takes them; its close pass asks
//! [`Broker::poll_close`]. The session queue is the backlog: frames are encoded into the
//! loop's write buffer only while it has room, so depth limits, conflation and
//! close-on-overflow act on messages, not on opaque bytes.

use std::time::Instant;

use super::{Broker, CloseReason, ConnId};
use crate::protocol::codec::{encode_deliver_counted, encode_dropped, encode_receipt};
use crate::protocol::frame::{
    Dropped, DELIVER_REDELIVERED, DROPPED_CONFLATED, DROPPED_DEAD_LETTERED, DROPPED_EXPIRED,
};
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
        if let Some(key) = self.conn(conn).and_then(|state| state.session) {
            // Never send a message whose time to live ran out (expiry.rs).
            self.expire_pending_front(key);
        }
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
                let seq = session.receipt_seq();
                // While every new publish waits for the journal, nothing new is receipted.
                if seq > 0 {
                    encode_receipt(seq, out);
                }
                session.is_receipt_due = false;
            }
            if session.is_drop_notice_due() {
                if session.conflated > session.conflated_told {
                    let total = session.conflated;
                    let count = total - session.conflated_told;
                    let dropped = Dropped {
                        reason: DROPPED_CONFLATED,
                        count,
                        total,
                    };
                    encode_dropped(&dropped, out);
                    session.conflated_told = total;
                }
                if session.expired > session.expired_told {
                    let total = session.expired;
                    let dropped = Dropped {
                        reason: DROPPED_EXPIRED,
                        count: total - session.expired_told,
                        total,
                    };
                    encode_dropped(&dropped, out);
                    session.expired_told = total;
                }
                let group = &mut session.group;
                if group.dead_lettered > group.dead_lettered_told {
                    let total = group.dead_lettered;
                    let dropped = Dropped {
                        reason: DROPPED_DEAD_LETTERED,
                        count: total - group.dead_lettered_told,
                        total,
                    };
                    encode_dropped(&dropped, out);
                    group.dead_lettered_told = total;
                }
            }
            if session.queue.pending_len() > session.window
                && session.queue.in_flight() <= session.window / 2
            {
                self.flow.backlogged += 1;
            }
            while out.len() < room {
                let Some((entry, seq)) = session.queue.next_redelivery() else {
                    break;
                };
                let message = self.store.get(entry.msg);
                let queue = &self.routes.queue(message.queue).name;
                let delivery_count = match entry.tag.is_group() && session.has_extensions {
                    true => self.groups.delivery_count(entry.tag),
                    false => None,
                };
                // Cannot fail: names were ≤ 255 bytes when decoded, payload ≤ max_frame_len.
                let _ = encode_deliver_counted(
                    seq,
                    message.id,
                    DELIVER_REDELIVERED,
                    delivery_count,
                    queue,
                    message.event(),
                    message.payload(),
                    out,
                );
                session.redelivered += 1;
                self.metrics.messages_redelivered += 1;
            }
            while out.len() < room && session.queue.span() < session.window {
                let Some((entry, node, seq)) = session.queue.send_next(&mut self.nodes) else {
                    break;
                };
                let message = self.store.get(entry.msg);
                if let (Some(hash), Some(conflation)) =
                    (message.conflation, &mut session.conflation)
                {
                    if conflation.get(&hash) == Some(&node) {
                        conflation.remove(&hash);
                    }
                }
                let queue = &self.routes.queue(message.queue).name;
                let delivery_count = match entry.tag.is_group() {
                    // The ack deadline starts now (groups.rs).
                    true => self
                        .groups
                        .handle_sent(entry.tag, seq, now)
                        .filter(|_| session.has_extensions),
                    false => None,
                };
                let _ = encode_deliver_counted(
                    seq,
                    message.id,
                    0,
                    delivery_count,
                    queue,
                    message.event(),
                    message.payload(),
                    out,
                );
                self.routes.queue_mut(message.queue).delivered += 1;
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
