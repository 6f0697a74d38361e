//! Per-connection timers: the handshake deadline, PINGs, the heartbeat timeout, and write
//! stalls (a peer that stopped reading). Rules: protocol.md §Heartbeats.

use std::time::Instant;

use super::timers::TimerTarget;
use super::{Broker, ConnId};
use crate::protocol::codec::encode_ping;
use crate::protocol::{ErrorCode, Op};

impl Broker {
    pub(super) fn check_conn(&mut self, conn: ConnId, generation: u64, now: Instant) {
        let handshake_deadline = self.config.handshake_timeout();
        let Some(state) = self.conn(conn) else {
            return;
        };
        if state.generation != generation || state.close.is_some() {
            return;
        }
        let target = TimerTarget::Conn(conn.0);
        if state.delayed_hello.is_some() {
            // A held HELLO is answered at its time; the handshake deadline no longer applies.
            match state.flow.paused_until {
                Some(at) if at > now => self.timers.schedule(at, target, generation),
                _ => self.run_delayed_hello(conn, now),
            }
            return;
        }
        if state.session.is_none() {
            let deadline = state.accepted_at + handshake_deadline;
            if now >= deadline && state.password_wait.is_some() {
                self.password_check_timed_out(conn);
            } else if now >= deadline {
                self.fail(conn, ErrorCode::HandshakeTimeout, 0, "no HELLO in time");
            } else {
                self.timers.schedule(deadline, target, generation);
            }
            return;
        }
        let settings = self.listeners[state.listener];
        let (interval, timeout) = (settings.heartbeat_interval, settings.heartbeat_timeout);
        // A connection whose reading the rate limit paused was not silent: its bytes wait in
        // the socket because we stopped reading.
        let heard_at = state
            .flow
            .paused_until
            .map_or(state.last_recv, |at| at.min(now).max(state.last_recv));
        let silent_until = heard_at + timeout;
        let partial_until = state.partial_since.map(|since| since + timeout);
        if partial_until.is_some_and(|at| now >= at) {
            // Issue #12: a frame trickled in, or left one byte short, holds its buffer; a
            // frame must complete within heartbeat_timeout of its first byte.
            self.metrics.partial_frame_timeouts += 1;
            let text = "a frame stayed incomplete for heartbeat_timeout_ms";
            self.drop_connection(conn, ErrorCode::HeartbeatTimeout, text);
            return;
        }
        if now >= silent_until {
            self.metrics.heartbeat_timeouts += 1;
            let text = "nothing received within heartbeat_timeout_ms";
            self.drop_connection(conn, ErrorCode::HeartbeatTimeout, text);
            return;
        }
        // Output that has waited a whole timeout for the loop to take it: the socket has been
        // full all that time, so the peer stopped reading.
        let stalled_until = state.waiting_since.map(|since| since + timeout);
        if stalled_until.is_some_and(|at| now >= at) {
            self.metrics.heartbeat_timeouts += 1;
            let text = "the client stopped reading for heartbeat_timeout_ms";
            self.drop_connection(conn, ErrorCode::HeartbeatTimeout, text);
            return;
        }
        let next_check = [stalled_until, partial_until]
            .into_iter()
            .flatten()
            .fold(silent_until, Instant::min);
        // PING after an interval without sending, or without hearing anything: a client that
        // only receives then still has something to answer before the timeout.
        let ping_at = state.last_sent.min(heard_at) + interval;
        if now < ping_at {
            self.timers
                .schedule(ping_at.min(next_check), target, generation);
            return;
        }
        let Some(state) = self.conn_mut(conn) else {
            return;
        };
        state.ping_nonce += 1;
        let nonce = state.ping_nonce;
        // The PING goes out in this turn's flush pass.
        state.last_sent = now;
        self.push_control(conn, |out| encode_ping(Op::Ping, nonce, out));
        self.timers
            .schedule((now + interval).min(next_check), target, generation);
    }
}
