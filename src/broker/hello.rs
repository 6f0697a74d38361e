//! HELLO: new sessions, resumes, and the tombstones that explain sessions that are gone.
//!
//! Layout and rules: protocol.md §HELLO, §WELCOME, §Reconnection.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};

use super::auth::Admission;
use super::delivery_queue::DeliveryQueue;
use super::owners::Owner;
use super::session::{tokens_match, Session};
use super::timers::TimerTarget;
use super::tombstones::MIN_TOMBSTONE_TTL;
pub(super) use super::tombstones::{Held, Lost, Tombstone, Tombstones};
use super::{clamp_u32, Broker, ConnId, DelayedHello, SessionKey};
use crate::credentials::Grant;
use crate::protocol::codec::{encode_goodbye, encode_hello, encode_welcome};
use crate::protocol::frame::{OUTCOME_LOST, OUTCOME_NEW, OUTCOME_RESUMED};
use crate::protocol::{AuthMethod, ErrorCode, Frame, Hello, Resume, Welcome, RESUME_TOKEN_LEN};

/// The text of every AUTH_FAILED: it never says which part was wrong.
const AUTH_FAILED_TEXT: &str = "authentication failed";

impl Broker {
    pub(super) fn handle_hello(&mut self, conn: ConnId, hello: &Hello<'_>, now: Instant) {
        self.handle_hello_after_slowdown(conn, hello, now, false);
    }

    /// Answers the HELLO the failed-authentication slowdown held on `conn`.
    pub(super) fn run_delayed_hello(&mut self, conn: ConnId, now: Instant) {
        let Some(delayed) = self.conn_mut(conn).and_then(|s| s.delayed_hello.take()) else {
            return;
        };
        let decoded = delayed
            .frame
            .as_deref()
            .map(|bytes| crate::protocol::decode(bytes, u32::MAX));
        match decoded {
            Some(Ok(Some((Frame::Hello(hello), _)))) => {
                self.handle_hello_after_slowdown(conn, &hello, now, true);
            }
            // Refused unchecked (too many held), or (cannot happen) a frame that no longer
            // decodes.
            _ => {
                self.metrics.auth_failures += 1;
                self.fail(conn, ErrorCode::AuthFailed, 0, AUTH_FAILED_TEXT);
            }
        }
    }

    /// A HELLO whose password check result is in (`password.rs`): answered as if checked now.
    pub(super) fn handle_hello_checked(&mut self, conn: ConnId, hello: &Hello<'_>, now: Instant) {
        self.handle_hello_after_slowdown(conn, hello, now, true);
    }

    /// `is_delayed`: the slowdown held this HELLO and its time has come (it already took its
    /// place in the source's bucket).
    fn handle_hello_after_slowdown(
        &mut self,
        conn: ConnId,
        hello: &Hello<'_>,
        now: Instant,
        is_delayed: bool,
    ) {
        let Some(granted) = self.authenticate(conn, hello, now, is_delayed) else {
            return;
        };
        let listener = self.conn(conn).map_or(0, |c| c.listener);
        if let (Some(resume), false) = (&hello.resume, self.listeners[listener].allow_anonymous) {
            // A listener that requires authentication resumes a session only for its owner.
            let owner = self
                .sessions_by_id
                .get(&resume.session_id)
                .map(|key| &self.sessions[key.0])
                .filter(|session| session.is_token(&resume.resume_token))
                .map(|session| &session.grant.identity);
            if owner.is_some_and(|owner| *owner != granted.identity) {
                self.metrics.auth_failures += 1;
                info!(
                    "{}: resume by another identity ({}) refused",
                    self.who(conn),
                    granted.identity
                );
                self.fail(conn, ErrorCode::AuthFailed, 0, AUTH_FAILED_TEXT);
                return;
            }
        }
        let lost = match &hello.resume {
            None => None,
            Some(resume) => match self.try_resume(conn, hello, resume, &granted, now) {
                Ok(()) => return,
                Err(lost) => Some(lost),
            },
        };
        let peer = self
            .conn(conn)
            .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| {
                c.peer.ip()
            });
        let owner = Owner::new(&granted.identity, peer);
        if let Err((code, text)) = self.make_room_for_session(&owner) {
            self.fail(conn, code, 0, text);
            return;
        }
        self.session_owners.add(&owner);
        let mut resume_token = [0u8; RESUME_TOKEN_LEN];
        self.entropy.fill(&mut resume_token);
        let listener = self.conn(conn).map_or(0, |c| c.listener);
        let window = self.window_for(listener, hello.inflight_window);
        let id = (u64::from(self.epoch) << 32) | u64::from(self.next_session_counter);
        self.next_session_counter = self.next_session_counter.wrapping_add(1).max(1);
        let key = SessionKey(self.sessions.insert(Session {
            id,
            resume_token,
            client_name: String::from_utf8_lossy(hello.client_name).into(),
            conn: Some(conn),
            listener,
            detached_at: None,
            generation: 0,
            window,
            queue: DeliveryQueue::default(),
            subscriptions: Vec::new(),
            patterns: Vec::new(),
            conflation: None,
            last_queue: None,
            last_publish_seq: 0,
            is_receipt_due: false,
            receipt_holds: std::collections::VecDeque::new(),
            published: 0,
            delivered: 0,
            acked: 0,
            conflated: 0,
            conflated_told: 0,
            expired: 0,
            expired_told: 0,
            is_ended_by_arrival: false,
            has_extensions: hello.extensions,
            redelivered: 0,
            resumes: 0,
            grant: granted,
            group: Default::default(),
            owner,
        }));
        self.sessions_by_id.insert(id, key);
        let (outcome, lost_reason, missed) = match lost {
            None => (OUTCOME_NEW, None, Some(0)),
            Some((reason, missed)) => {
                self.metrics.sessions_lost += 1;
                if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == reason) {
                    self.losses[i] += 1;
                }
                (OUTCOME_LOST, Some(reason), missed)
            }
        };
        self.attach(conn, key, now);
        let welcome = self.welcome(key, outcome, lost_reason, missed);
        self.push_control(conn, |out| encode_welcome(&welcome, out));
        debug!("{}: session opened (window {window})", self.who(conn));
    }

    /// Resumes the session named in `resume` on `conn`, or says why not. On some failures the
    /// old session is ended here (RESEND_GAP, RESUME_INVALID).
    fn try_resume(
        &mut self,
        conn: ConnId,
        hello: &Hello<'_>,
        resume: &Resume,
        granted: &Arc<Grant>,
        now: Instant,
    ) -> Result<(), Lost> {
        let live = self
            .sessions_by_id
            .get(&resume.session_id)
            .copied()
            .filter(|key| self.sessions[key.0].is_token(&resume.resume_token));
        let Some(key) = live else {
            return Err(self.why_gone(resume));
        };
        let session = &self.sessions[key.0];
        let last_publish = session.last_publish_seq;
        if resume.first_resendable_publish_seq > last_publish + 1 {
            let missed = resume.first_resendable_publish_seq - 1 - last_publish;
            info!(
                "session {:016x}: resume refused, RESEND_GAP of {missed}",
                session.id
            );
            self.end_refused(key, ErrorCode::ResendGap);
            return Err((ErrorCode::ResendGap, Some(missed)));
        }
        let received = resume.last_delivery_seq;
        if received > session.queue.last_sent_seq || received + 1 < session.queue.lowest_unacked() {
            info!(
                "session {:016x}: resume refused, RESUME_INVALID",
                session.id
            );
            self.end_refused(key, ErrorCode::ResumeInvalid);
            return Err((ErrorCode::ResumeInvalid, None));
        }
        if let Some(old) = session.conn {
            // Takeover: the old connection still looks alive; the new one wins.
            self.metrics.sessions_taken_over += 1;
            if let Some(state) = self.conn_mut(old) {
                state.session = None;
            }
            self.push_control(old, |out| {
                encode_goodbye(
                    ErrorCode::TakenOver,
                    "another connection resumed this session",
                    out,
                );
            });
            self.close_without_session(old, ErrorCode::TakenOver);
        }
        let listener = self.conn(conn).map_or(0, |c| c.listener);
        let window = self.window_for(listener, hello.inflight_window);
        let generation = self.new_generation();
        let session = &mut self.sessions[key.0];
        session.listener = listener;
        session.window = window;
        session.detached_at = None;
        session.generation = generation;
        session.resumes += 1;
        session.is_receipt_due = false;
        session.has_extensions = hello.extensions;
        session.queue.set_resend_from(received + 1);
        // Permissions as checked now; the publish cache may name a queue no longer allowed.
        session.grant = Arc::clone(granted);
        session.last_queue = None;
        if !hello.client_name.is_empty() {
            session.client_name = String::from_utf8_lossy(hello.client_name).into();
        }
        let id = session.id;
        self.metrics.sessions_resumed += 1;
        self.attach(conn, key, now);
        let welcome = self.welcome(key, OUTCOME_RESUMED, None, Some(0));
        self.push_control(conn, |out| encode_welcome(&welcome, out));
        info!(
            "session {id:016x} resumed by {} from seq {}",
            self.conn(conn)
                .map_or(String::new(), |c| c.peer.to_string()),
            received + 1
        );
        Ok(())
    }

    /// Checks the credentials of a HELLO against the listener's policy. `None` when the HELLO
    /// was answered (AUTH_REQUIRED, AUTH_FAILED), held by the failed-auth slowdown, or held
    /// for its password check (`password.rs`; it comes back through
    /// [`Self::handle_hello_checked`]).
    fn authenticate(
        &mut self,
        conn: ConnId,
        hello: &Hello<'_>,
        now: Instant,
        is_delayed: bool,
    ) -> Option<Arc<Grant>> {
        let state = self.conn(conn)?;
        let (peer, generation) = (state.peer, state.generation);
        let settings = self.listeners[state.listener];
        let Some(auth) = &hello.auth else {
            if !settings.allow_anonymous {
                let text = "this listener requires authentication";
                self.fail(conn, ErrorCode::AuthRequired, 0, text);
                return None;
            }
            let is_admin = settings.listen.ip().is_loopback();
            return Some(Arc::clone(&self.anonymous_grants[usize::from(is_admin)]));
        };
        let checked = self
            .conn_mut(conn)?
            .password_wait
            .as_mut()
            .and_then(|wait| {
                wait.result
                    .map(|result| (result, wait.grant.take(), wait.is_delayed))
            });
        let is_password = auth.method == AuthMethod::Password;
        if !is_delayed && checked.is_none() {
            let latest = self.latest_hold(conn);
            let (by_source, source_starts) = self.auth_failures.admit(&peer.ip(), now, latest);
            let (by_user, _) = if is_password {
                self.user_failures.admit(&Box::from(auth.user), now, latest)
            } else {
                (Admission::Now, false)
            };
            if source_starts {
                warn!(
                    "repeated authentication failures from {}: its HELLOs are now answered \
                     slowly (one per 10 s, within the handshake timeout)",
                    peer.ip()
                );
            }
            let at = [by_source, by_user]
                .into_iter()
                .filter_map(|admission| match admission {
                    Admission::Now => None,
                    Admission::At(at) => Some(at),
                })
                .max();
            if let Some(at) = at {
                self.metrics.auth_throttled += 1;
                let mut frame = Vec::new();
                // Cannot fail: it was decoded from the same fields.
                let _ = encode_hello(hello, &mut frame);
                let state = self.conn_mut(conn)?;
                state.delayed_hello = Some(Box::new(DelayedHello {
                    frame: Some(frame.into_boxed_slice()),
                }));
                // The loop stops reading this connection until then.
                state.flow.paused_until = Some(at);
                self.timers
                    .schedule(at, super::timers::TimerTarget::Conn(conn.0), generation);
                return None;
            }
        }
        let (verified, record) = match checked {
            Some((is_match, grant, was_delayed)) => {
                if is_match && !was_delayed {
                    // The attempt taken provisionally at queueing is given back.
                    self.auth_failures.refund(&peer.ip(), now);
                    self.user_failures.refund(&Box::from(auth.user), now);
                }
                // A failure was recorded when it was queued (or reserved by the slowdown).
                (grant.filter(|_| is_match), false)
            }
            None if is_password => {
                // Off the loop thread: hold the HELLO and queue the check.
                let (check, grant) = self.authenticator.password_check(auth);
                let user: Box<[u8]> = Box::from(auth.user);
                let is_suspect = self.auth_failures.is_suspect(&peer.ip(), now)
                    || self.user_failures.is_suspect(&user, now);
                if !is_delayed {
                    // Counted as a failure until it passes, so guesses in flight at once
                    // are slowed like guesses one after another.
                    self.auth_failures.record_failure(&peer.ip(), now);
                    self.user_failures.record_failure(&user, now);
                }
                let mut frame = Vec::new();
                let _ = encode_hello(hello, &mut frame);
                self.hold_for_password_check(
                    conn,
                    frame.into_boxed_slice(),
                    check,
                    grant,
                    is_delayed,
                    is_suspect,
                );
                return None;
            }
            None => {
                let unix_now = self.unix_now(now);
                (self.authenticator.verify(auth, unix_now), !is_delayed)
            }
        };
        if let Some((identity, permissions)) = verified {
            return Some(Arc::new(Grant {
                identity,
                permissions,
            }));
        }
        self.metrics.auth_failures += 1;
        if record {
            self.auth_failures.record_failure(&peer.ip(), now);
            if is_password {
                self.user_failures
                    .record_failure(&Box::from(auth.user), now);
            }
        }
        // The user name is not a secret; the secret is never logged.
        info!(
            "connection from {peer}: authentication failed ({:?}, user {:?})",
            auth.method,
            String::from_utf8_lossy(auth.user)
        );
        self.fail(conn, ErrorCode::AuthFailed, 0, AUTH_FAILED_TEXT);
        None
    }

    /// Unix seconds at `now`, from a wall-clock anchor taken once.
    fn unix_now(&mut self, now: Instant) -> u64 {
        let (at, unix) = self.wall_clock;
        let wall = if now >= at {
            unix + (now - at)
        } else {
            unix - (at - now)
        };
        wall.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Ends a session whose resume was refused. If it is still attached to a connection, that
    /// connection is told why and closed too: left open, it would have no session at all.
    fn end_refused(&mut self, key: SessionKey, code: ErrorCode) {
        match self.sessions[key.0].conn {
            Some(old) => self.goodbye(old, code, "a resume of this session was refused"),
            None => {
                self.end_session(key, code);
            }
        }
    }

    /// Why a session cannot be found: tombstone, earlier server run, or unknown. A wrong
    /// token is answered exactly like an unknown id.
    /// The tombstone records the `missed` it answers, so STATS_REPLY shows the same number.
    fn why_gone(&mut self, resume: &Resume) -> Lost {
        if let Some(tombstone) = self.tombstones.get_mut(resume.session_id) {
            if tokens_match(&tombstone.resume_token, &resume.resume_token) {
                let missed = tombstone.held.missed_after(resume.last_delivery_seq);
                tombstone.missed = missed;
                return (tombstone.reason, Some(missed));
            }
            return (ErrorCode::SessionUnknown, None);
        }
        let epoch = (resume.session_id >> 32) as u32;
        if epoch != self.epoch && !self.sessions_by_id.contains_key(&resume.session_id) {
            (ErrorCode::ServerRestarted, None)
        } else {
            (ErrorCode::SessionUnknown, None)
        }
    }

    /// Links `key` and `conn` and starts the connection's heartbeat chain.
    fn attach(&mut self, conn: ConnId, key: SessionKey, now: Instant) {
        let generation = self.new_generation();
        let Some(state) = self.conn_mut(conn) else {
            return;
        };
        state.session = Some(key);
        // The new generation retires the handshake timer entry, so heartbeat checks run as one
        // chain.
        state.generation = generation;
        let listener = state.listener;
        self.sessions[key.0].conn = Some(conn);
        let interval = self.listeners[listener].heartbeat_interval;
        self.timers
            .schedule(now + interval, TimerTarget::Conn(conn.0), generation);
        self.mark_dirty(conn);
        self.pump_groups_of(key);
    }

    /// Marks a connection closing after its session moved elsewhere.
    fn close_without_session(&mut self, conn: ConnId, code: ErrorCode) {
        let Some(state) = self.conn_mut(conn) else {
            return;
        };
        if state.close.is_none() {
            state.close = Some(super::CloseReason::Goodbye(code));
            self.closing.push_back(conn);
        }
    }

    fn welcome(
        &self,
        key: SessionKey,
        outcome: u8,
        lost_reason: Option<ErrorCode>,
        missed: Option<u64>,
    ) -> Welcome {
        let session = &self.sessions[key.0];
        let settings = &self.listeners[session.listener];
        Welcome {
            reconnect_keep_alive_ms: session
                .has_extensions
                .then(|| clamp_u32(settings.reconnect_keep_alive.as_millis())),
            outcome,
            lost_reason,
            missed,
            session_id: session.id,
            resume_token: session.resume_token,
            // What is durable: publishes still waiting for the journal are resent by the
            // client and taken as duplicates, never routed twice.
            last_publish_seq: session.receipt_seq(),
            max_frame_len: settings.max_frame_len,
            inflight_window: session.window,
            heartbeat_interval_ms: clamp_u32(settings.heartbeat_interval.as_millis()),
            heartbeat_timeout_ms: clamp_u32(settings.heartbeat_timeout.as_millis()),
            max_queue_depth: settings.max_queue_depth,
            max_queue_bytes: settings.max_queue_bytes,
        }
    }

    fn window_for(&self, listener: usize, requested: u32) -> u32 {
        let max = self.listeners[listener].in_flight_window;
        match requested {
            0 => max,
            requested => requested.min(max),
        }
    }

    pub(super) fn tombstone_ttl(&self) -> Duration {
        self.listeners
            .iter()
            .map(|l| l.reconnect_keep_alive)
            .max()
            .unwrap_or_default()
            .max(MIN_TOMBSTONE_TTL)
    }
}
