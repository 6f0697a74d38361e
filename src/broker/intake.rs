//! Intake: the bytes of one connection in, frames out to the handlers.
//!
//! The one entry point every driver uses (the event loop, the broker tests, the benches, the
//! allocation test): [`Broker::handle_input`] takes whatever bytes the transport yielded,
//! decodes every complete frame, hands each to [`Broker::handle_frame`], keeps an incomplete
//! tail (or frames held back by [`super::flow`]) in the connection's input buffer, and says
//! with an [`Intake`] whether to read more.
//!
//! Bounded memory: the input buffer holds at most one partial frame (checked against the frame
//! limit from its header, before the body is buffered) plus what one read yielded after the
//! connection was held back; an idle connection keeps no buffer at all.

use std::time::Instant;

use super::flow::{Intake, Stop, TURN_DELIVERIES};
use super::{Broker, CloseReason, ConnId};
use crate::protocol::codec::encode_ping;
use crate::protocol::{self, DecodeError, ErrorCode, Frame, Op};

impl Broker {
    /// Bytes read from `conn`'s transport (plaintext Weir frames, after any PROXY header, TLS
    /// or WebSocket layer), in order. `bytes` may end mid-frame; it may be empty, to handle
    /// input held back earlier.
    ///
    /// Bounded work: O(bytes + held input), and at most `TURN_DELIVERIES` (65,536) deliveries queued
    /// per read of a connection before it is held back.
    pub fn handle_input(&mut self, conn: ConnId, bytes: &[u8], now: Instant) -> Intake {
        self.now = now;
        self.metrics.bytes_in += bytes.len() as u64;
        let Some(state) = self.conn_mut(conn) else {
            return Intake::Closed;
        };
        if state.close.is_some() {
            return Intake::Closed;
        }
        state.flow.read_bytes += bytes.len();
        let before = state.input.capacity();
        let (used, stopped) = if state.input.is_empty() {
            let (used, stopped) = self.decode_frames(conn, bytes, now);
            // Queues freed by these frames' acks go once per read, not per frame.
            self.collect_queues();
            if let (Some(rest), Some(state)) = (bytes.get(used..), self.conn_mut(conn)) {
                if state.close.is_none() {
                    state.input.extend_from_slice(rest);
                }
            }
            (used, stopped)
        } else {
            let mut input = std::mem::take(&mut state.input);
            input.extend_from_slice(bytes);
            let (used, stopped) = self.decode_frames(conn, &input, now);
            self.collect_queues();
            if let Some(state) = self.conn_mut(conn) {
                if state.close.is_none() && used < input.len() {
                    input.drain(..used);
                    state.input = input;
                }
            }
            (used, stopped)
        };
        let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) else {
            return Intake::Closed;
        };
        if state.input.is_empty() && state.input.capacity() > 0 {
            // Only a frame split across reads needs this buffer; an idle connection keeps
            // none.
            state.input = Vec::new();
        }
        if state.input.is_empty() {
            state.partial_since = None;
        } else if used > 0 || state.partial_since.is_none() {
            // A frame completed (or none was pending): the one now pending starts its clock.
            state.partial_since = Some(now);
        }
        self.buffered_bytes = self.buffered_bytes - before + state.input.capacity();
        self.enforce_memory_budget();
        self.intake_after(conn, stopped)
    }

    /// Whether `conn` holds bytes of an incomplete frame (an EOF now truncates it).
    pub(super) fn has_partial_input(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|state| !state.input.is_empty())
    }

    /// The peer closed its side: a clean close between frames, or a truncated frame.
    pub(super) fn eof_reason(&self, conn: ConnId) -> CloseReason {
        if self.has_partial_input(conn) {
            CloseReason::TruncatedFrame
        } else {
            CloseReason::PeerClosed
        }
    }

    /// Decodes and handles frames from the start of `buf`; returns how many bytes were used
    /// (all of them once the connection is closing) and why it stopped early, if it did.
    fn decode_frames(&mut self, conn: ConnId, buf: &[u8], now: Instant) -> (usize, Option<Stop>) {
        let mut pos = 0;
        loop {
            if self.is_closing(conn) {
                return (buf.len(), None);
            }
            let rest = buf.get(pos..).unwrap_or_default();
            match protocol::decode(rest, self.max_frame_len(conn)) {
                Ok(Some((frame, used))) => {
                    if matches!(frame, Frame::Publish(_)) && self.is_memory_high() {
                        // Near the budget a PUBLISH waits, unread, in the input (and the rest
                        // in the socket); every other frame (ACK, SUBSCRIBE, STATS, PING) goes
                        // on, so consumers can still drain (issue #12).
                        self.pause_for_memory(conn);
                        return (pos, Some(Stop::Paused));
                    }
                    let queued = self.flow.queued;
                    self.handle_frame(conn, frame, now);
                    pos += used;
                    if self.flow.queued > queued && self.flow.queued >= TURN_DELIVERIES {
                        return (pos, Some(Stop::FanOutBudget));
                    }
                    if self.read_paused_until(conn, now).is_some() || self.is_journal_held(conn) {
                        return (pos, Some(Stop::Paused));
                    }
                }
                Ok(None) => return (pos, None),
                Err(error) => {
                    match protocol::sniff::foreign_protocol(rest) {
                        Some(foreign) => self.handle_foreign_protocol(conn, &error, foreign),
                        None => self.handle_decode_error(conn, &error),
                    }
                    return (buf.len(), None);
                }
            }
        }
    }

    /// One decoded frame from `conn` (from [`Self::handle_input`]).
    ///
    /// Bounded work: O(frame size + subscribers of the message's queue and event).
    pub(super) fn handle_frame(&mut self, conn: ConnId, frame: Frame<'_>, now: Instant) {
        self.now = now;
        let Some(state) = self.conn_mut(conn) else {
            return;
        };
        if state.close.is_some() {
            return;
        }
        state.last_recv = now;
        if state.password_wait.is_some() {
            // Reading is paused while a password is checked; nothing else is taken before.
            return;
        }
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
            | Frame::StatsReply(_)
            | Frame::Dropped(_) => {
                let text = "server-to-client op sent by a client";
                self.fail(conn, ErrorCode::UnknownOp, 0, text);
            }
        }
    }

    /// The bytes from `conn` could not be decoded: tell it why and close it.
    pub(super) fn handle_decode_error(&mut self, conn: ConnId, error: &DecodeError) {
        if self.is_closing(conn) {
            return;
        }
        self.fail(conn, error.code(), 0, &error.to_string());
    }

    /// As `handle_decode_error`, for bytes of another protocol (TLS, HTTP): the
    /// ERROR's text says so.
    pub(super) fn handle_foreign_protocol(
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
}
