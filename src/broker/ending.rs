//! How connections close and sessions end.
//!
//! Two kinds of ending, kept apart on purpose:
//! - the *session* ends (fatal ERROR, BYE, QUEUE_OVERFLOW, expiry, shutdown, failed resume):
//!   its queue is freed at once and a tombstone keeps the reason for a client that returns;
//! - only the *connection* ends (EOF, reset, HEARTBEAT_TIMEOUT, SLOW_CONSUMER, TAKEN_OVER): the
//!   session is detached and waits `reconnect_keep_alive` for a resume, still queuing.

use std::time::Instant;

use log::{debug, info, warn};

use super::hello::Held;
use super::timers::TimerTarget;
use super::{Broker, CloseReason, ConnId, SessionKey};
use crate::protocol::codec::{encode_error, encode_goodbye};
use crate::protocol::ErrorCode;

impl Broker {
    /// Sends a fatal ERROR, closes `conn` and ends its session (bad input).
    pub(super) fn fail(&mut self, conn: ConnId, code: ErrorCode, ref_seq: u64, text: &str) {
        info!("{}: ERROR {}: {text}", self.who(conn), code.name());
        self.push_control(conn, |out| {
            let _ = encode_error(code, true, ref_seq, text, out);
        });
        if let Some(session) = self.begin_close(conn, CloseReason::ProtocolError(code)) {
            self.end_session(session, code);
        }
    }

    /// Sends GOODBYE, closes `conn` and ends its session.
    pub(super) fn goodbye(&mut self, conn: ConnId, code: ErrorCode, text: &str) {
        self.push_control(conn, |out| encode_goodbye(code, text, out));
        if let Some(session) = self.begin_close(conn, CloseReason::Goodbye(code)) {
            self.end_session(session, code);
        }
    }

    /// Sends GOODBYE and closes `conn`, keeping its session: detached, resumable.
    pub(super) fn drop_connection(&mut self, conn: ConnId, code: ErrorCode, text: &str) {
        self.push_control(conn, |out| encode_goodbye(code, text, out));
        if let Some(session) = self.begin_close(conn, CloseReason::Goodbye(code)) {
            let now = self.now;
            self.detach(session, now);
        }
    }

    /// Marks `conn` closing and unlinks its session, which the caller ends or detaches.
    fn begin_close(&mut self, conn: ConnId, reason: CloseReason) -> Option<SessionKey> {
        let state = self.conn_mut(conn)?;
        if state.close.is_some() {
            return None;
        }
        state.close = Some(reason);
        let session = state.session.take();
        self.closing.push_back(conn);
        if let Some(key) = session {
            self.sessions[key.0].conn = None;
        }
        session
    }

    /// The session lost its connection: keep it for the listener's keep-alive (or end it if
    /// reconnection is disabled there).
    pub(super) fn detach(&mut self, key: SessionKey, now: Instant) {
        let generation = self.new_generation();
        let session = &mut self.sessions[key.0];
        session.conn = None;
        let keep_alive = self.listeners[session.listener].reconnect_keep_alive;
        if keep_alive.is_zero() {
            self.metrics.sessions_expired += 1;
            self.end_session(key, ErrorCode::SessionExpired);
            return;
        }
        session.detached_at = Some(now);
        session.generation = generation;
        self.timers
            .schedule(now + keep_alive, TimerTarget::Session(key.0), generation);
        self.metrics.sessions_detached += 1;
        debug!(
            "session {:016x} detached for up to {keep_alive:?}",
            session.id
        );
    }

    /// A detached session's keep-alive ran out.
    pub(super) fn check_session(&mut self, key: SessionKey, generation: u64) {
        let Some(session) = self.sessions.get(key.0) else {
            return;
        };
        if session.generation != generation || session.conn.is_some() {
            return;
        }
        self.metrics.sessions_expired += 1;
        info!(
            "session {:016x} ({}) expired",
            session.id, session.client_name
        );
        self.end_session(key, ErrorCode::SessionExpired);
    }

    /// The session overflowed: closed, whether connected or detached.
    pub(super) fn overflow(&mut self, key: SessionKey) {
        self.sessions[key.0].is_ended_by_arrival = true;
        let session = &self.sessions[key.0];
        warn!(
            "session {:016x} ({}) closed: QUEUE_OVERFLOW at depth {} / {} bytes{}",
            session.id,
            session.client_name,
            session.queue.depth(),
            session.queue.bytes,
            if session.conn.is_none() {
                " while detached"
            } else {
                ""
            },
        );
        // The message that did not fit is lost to this session too.
        self.metrics.messages_dropped_overflow += 1;
        let text = "queue overflow: max_queue_depth or max_queue_bytes exceeded";
        match session.conn {
            Some(conn) => self.goodbye(conn, ErrorCode::QueueOverflow, text),
            None => {
                self.end_session(key, ErrorCode::QueueOverflow);
            }
        }
    }

    /// Frees a session: its queue (releasing stored messages) and its routes, leaving a
    /// tombstone with `reason`. Returns the number of messages it still held.
    pub(super) fn end_session(&mut self, key: SessionKey, reason: ErrorCode) -> u64 {
        let mut session = self.sessions.remove(key.0);
        if let Some(conn) = session.conn {
            if let Some(state) = self.conn_mut(conn) {
                state.session = None;
            }
        }
        self.sessions_by_id.remove(&session.id);
        // Once per session end, not per message: the seq list is bounded by the window.
        let held = Held::new(
            u64::from(session.queue.pending_len()),
            &session.queue.in_flight_seqs(usize::MAX),
            session.is_ended_by_arrival,
        );
        let mut dropped = 0;
        let store = &mut self.store;
        // Group messages go back to their groups (groups.rs), after it leaves them.
        let mut group_entries = Vec::new();
        super::groups::drain_entries(
            &mut session.queue,
            &mut self.nodes,
            &mut group_entries,
            |msg| {
                dropped += 1;
                store.release(msg);
            },
        );
        self.leave_all_groups(&session.group.groups);
        self.reclaim_from_ended_session(&group_entries);
        if reason == ErrorCode::QueueOverflow {
            self.metrics.messages_dropped_overflow += dropped;
        } else {
            self.metrics.messages_dropped_session_closed += dropped;
        }
        if !session.patterns.is_empty() {
            self.forget_pattern_session(key);
        }
        for sub in &session.subscriptions {
            match &sub.event {
                None => self
                    .routes
                    .remove_all_events(sub.queue, key, std::iter::empty()),
                Some(event) => self.routes.remove_event(sub.queue, key, event),
            }
        }
        let mut queues: Vec<_> = session.subscriptions.iter().map(|s| s.queue).collect();
        queues.sort_unstable();
        queues.dedup();
        for queue in queues {
            self.routes.queue_mut(queue).subscribers -= 1;
            self.release_queue(queue);
        }
        self.session_owners.remove(&session.owner);
        let ttl = self.tombstone_ttl();
        self.tombstones
            .insert(&session, reason, held, self.now, ttl);
        debug!(
            "session {:016x} ended ({}), {dropped} messages dropped",
            session.id,
            reason.name()
        );
        self.collect_queues();
        dropped
    }
}
