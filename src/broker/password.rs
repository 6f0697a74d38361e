//! Password checks off the event-loop thread: the seam between the core, which decides which
//! check runs when, and the driver, which runs them (the server: a small worker pool in
//! `net::password_pool`; the tests: inline).
//!
//! Call order:
//! 1. a PASSWORD HELLO passes the failed-auth slowdown ([`super::auth`]); the core holds the
//!    HELLO on its connection (reading paused) and queues a [`PasswordCheck`];
//! 2. the driver takes the checks that are due with [`Broker::poll_password_check`], after
//!    the read pass and `handle_timeout`, every turn: the global budget
//!    (`max_password_checks_per_second`) says how many, checks for addresses and users with no
//!    recent failure first;
//! 3. it runs [`PasswordCheck::run`] anywhere and hands the result back with
//!    [`Broker::handle_password_checked`]; the core answers the HELLO as if checked inline
//!    and the connection is read again;
//! 4. a check still unanswered at the connection's handshake deadline: the HELLO gets
//!    ERROR(SERVER_BUSY) ("try again"), never AUTH_FAILED, and a late result is ignored.
//!
//! [`Broker::poll_timeout`] includes the time the budget allows the next check.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Broker, ConnId};
use crate::credentials::PasswordCheck;
use crate::protocol::{ErrorCode, Frame};

/// Names one check: the connection and its generation (a later connection with the same
/// `ConnId` does not take an old result).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordTicket {
    conn: ConnId,
    generation: u64,
}

/// A HELLO waiting for its password check, kept on its connection.
#[derive(Debug)]
pub(super) struct PasswordWait {
    /// The encoded HELLO, answered once the result is in.
    pub(super) frame: Box<[u8]>,
    /// What the check grants if it passes (`None` for an unknown user).
    pub(super) grant: Option<(
        crate::credentials::Identity,
        crate::credentials::Permissions,
    )>,
    /// The slowdown already took this HELLO's place in its buckets: a failure is not counted
    /// again.
    pub(super) is_delayed: bool,
    /// Handed to the driver (or dropped): not to be handed out again.
    pub(super) is_submitted: bool,
    /// The result, once in.
    pub(super) result: Option<bool>,
}

/// Checks waiting for the budget, and the budget.
#[derive(Debug)]
pub(super) struct PasswordChecks {
    /// From addresses and users with no recent failure: served first.
    clean: VecDeque<(PasswordTicket, PasswordCheck)>,
    /// From addresses or users that failed recently.
    suspect: VecDeque<(PasswordTicket, PasswordCheck)>,
    /// Checks allowed now (at most one second's worth).
    tokens: f64,
    at: Instant,
}

impl PasswordChecks {
    /// A full budget of `rate` checks per second at `now`.
    pub(super) fn new(rate: u32, now: Instant) -> PasswordChecks {
        PasswordChecks {
            clean: VecDeque::new(),
            suspect: VecDeque::new(),
            tokens: f64::from(rate.max(1)),
            at: now,
        }
    }

    pub(super) fn push(&mut self, ticket: PasswordTicket, check: PasswordCheck, is_suspect: bool) {
        let queue = if is_suspect {
            &mut self.suspect
        } else {
            &mut self.clean
        };
        queue.push_back((ticket, check));
    }

    fn refill(&mut self, rate: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate.max(1.0));
    }
}

impl Broker {
    /// The next password check to run, if the budget allows one at `now` (see the module docs
    /// for the call order). Skips checks whose connection has gone.
    pub fn poll_password_check(&mut self, now: Instant) -> Option<(PasswordTicket, PasswordCheck)> {
        let rate = f64::from(self.config.max_password_checks_per_second);
        self.password_checks.refill(rate, now);
        loop {
            if self.password_checks.tokens < 1.0 {
                return None;
            }
            let checks = &mut self.password_checks;
            let (ticket, check) = checks
                .clean
                .pop_front()
                .or_else(|| checks.suspect.pop_front())?;
            let Some(state) = self
                .conns
                .get_mut(ticket.conn.0)
                .and_then(Option::as_mut)
                .filter(|state| state.generation == ticket.generation && state.close.is_none())
            else {
                continue;
            };
            let Some(wait) = state.password_wait.as_mut().filter(|w| !w.is_submitted) else {
                continue;
            };
            wait.is_submitted = true;
            self.password_checks.tokens -= 1.0;
            return Some((ticket, check));
        }
    }

    /// The result of a check from [`Self::poll_password_check`]: answers the held HELLO
    /// (WELCOME, or AUTH_FAILED) and reads the connection again. A result for a connection
    /// that has gone, or answered already, is ignored.
    pub fn handle_password_checked(
        &mut self,
        ticket: PasswordTicket,
        is_match: bool,
        now: Instant,
    ) {
        self.now = now;
        let Some(state) = self
            .conns
            .get_mut(ticket.conn.0)
            .and_then(Option::as_mut)
            .filter(|state| state.generation == ticket.generation && state.close.is_none())
        else {
            return;
        };
        let Some(wait) = state.password_wait.as_mut().filter(|w| w.result.is_none()) else {
            return;
        };
        wait.result = Some(is_match);
        let frame = wait.frame.clone();
        state.flow.paused_until = Some(now);
        if let Ok(Some((Frame::Hello(hello), _))) = crate::protocol::decode(&frame, u32::MAX) {
            self.handle_hello_checked(ticket.conn, &hello, now);
        }
        if let Some(state) = self.conns.get_mut(ticket.conn.0).and_then(Option::as_mut) {
            state.password_wait = None;
        }
        self.read_again(ticket.conn);
    }

    /// Holds `hello` on `conn` until its password is checked, queueing the check.
    pub(super) fn hold_for_password_check(
        &mut self,
        conn: ConnId,
        hello_frame: Box<[u8]>,
        check: PasswordCheck,
        grant: Option<(
            crate::credentials::Identity,
            crate::credentials::Permissions,
        )>,
        is_delayed: bool,
        is_suspect: bool,
    ) {
        let deadline = self.handshake_deadline(conn);
        let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) else {
            return;
        };
        let ticket = PasswordTicket {
            conn,
            generation: state.generation,
        };
        state.password_wait = Some(Box::new(PasswordWait {
            frame: hello_frame,
            grant,
            is_delayed,
            is_submitted: false,
            result: None,
        }));
        // The loop stops reading it until the result is in (or the deadline passes).
        state.flow.paused_until = Some(deadline);
        self.password_checks.push(ticket, check, is_suspect);
    }

    /// The handshake deadline passed with the check unanswered: SERVER_BUSY, not
    /// AUTH_FAILED (the credentials were never judged).
    pub(super) fn password_check_timed_out(&mut self, conn: ConnId) {
        self.metrics.auth_checks_timed_out += 1;
        if let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) {
            state.password_wait = None;
        }
        let text = "the password could not be checked in time; try again";
        self.fail(conn, ErrorCode::ServerBusy, 0, text);
    }

    /// When the budget allows the next check, if any waits.
    pub(super) fn password_deadline(&self) -> Option<Instant> {
        let checks = &self.password_checks;
        if checks.clean.is_empty() && checks.suspect.is_empty() {
            return None;
        }
        if checks.tokens >= 1.0 {
            return Some(self.now);
        }
        let rate = f64::from(self.config.max_password_checks_per_second).max(1.0);
        Some(checks.at + Duration::from_secs_f64((1.0 - checks.tokens) / rate))
    }

    /// The latest instant a HELLO on `conn` may be held by the slowdown: three quarters of the
    /// way to its handshake deadline, leaving the rest for the check itself.
    pub(super) fn latest_hold(&self, conn: ConnId) -> Instant {
        let accepted_at = self.conn(conn).map_or(self.now, |c| c.accepted_at);
        let timeout = self.config.handshake_timeout();
        (accepted_at + timeout.mul_f64(0.75)).max(self.now)
    }

    fn handshake_deadline(&self, conn: ConnId) -> Instant {
        let accepted_at = self.conn(conn).map_or(self.now, |c| c.accepted_at);
        accepted_at + self.config.handshake_timeout()
    }
}
