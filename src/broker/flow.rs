//! Flow control: when a connection is read, and how much of it per turn.
//!
//! Every scheduling decision about input lives here, with its state, so the event loop only
//! asks [`Broker::handle_readable`](super::Broker::handle_readable) and
//! [`Broker::poll_reads`](super::Broker::poll_reads) and never keeps a policy list of its own:
//!
//! - **read budget**: at most `read_budget_bytes` from one connection per turn (fairness,
//!   redis `NET_MAX_WRITES_PER_EVENT`); the rest is read next turn;
//! - **fan-out budget**: the publishes read from one connection in one turn may queue at most
//!   [`TURN_DELIVERIES`] deliveries; the frames after that wait in the connection's input for
//!   the next turn, so one turn never queues much more than the next flush can send;
//! - **publish rate limits** (`max_publish_rate`, `max_publish_bytes_rate`): token buckets
//!   per connection; a connection in debt is not read (TCP back-pressure) until they refill;
//! - **the failed-authentication slowdown** pauses reading the same way while a HELLO is
//!   held ([`super::hello`]);
//! - **draining**: while the server itself holds a backlog for a subscriber that keeps up
//!   (more than a window pending, at most half a window in flight, its socket not full),
//!   connections that cannot carry acks (nothing in flight: typically publishers) are not read
//!   until the backlog drains, and never longer than [`MAX_DRAIN`];
//! - **the journal's bound**: while more than `MAX_IN_FLIGHT_BYTES` of durable records wait
//!   for the journal thread (`super::journal`), a connection that publishes to a durable
//!   queue is not read until the thread has written them down to half that.
//!
//! Invariant: a connection held back by any of these is on `read_again`, `deferred`,
//! `paused` or `journal_held` (each entry guarded by a flag on the connection), so the loop learns
//! of it again from [`Broker::poll_reads`](super::Broker::poll_reads): mio is edge-triggered
//! and would not report readiness that was left unread.

use std::time::{Duration, Instant};

use super::{Broker, ConnId, ConnState};
use crate::config::ListenerSettings;

/// Deliveries the publishes read from one connection in one turn may queue before that
/// connection stops being read for the turn. With fan-out to 100 that is about 650
/// publishes, under one in-flight window per subscriber, so the next flush can send them all
/// (measured: 1→100 went from 7.2 M to 10.8 M deliveries/s with this budget; issue 4 note).
pub(crate) const TURN_DELIVERIES: u64 = 64 * 1024;

/// Longest a connection's reading waits while the server drains backlogs of its own making:
/// then every deferred connection gets a turn (its heartbeats, its acks).
pub(crate) const MAX_DRAIN: Duration = Duration::from_millis(50);

/// How long the loop may sleep while connections are deferred: acks wake it sooner; this
/// bounds the wait should none come.
const DRAIN_POLL: Duration = Duration::from_millis(1);

/// What the loop should do with a connection's socket after handing its bytes to the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intake {
    /// Read more now, if the socket has more.
    More,
    /// Stop reading it this turn: [`Broker::poll_reads`](super::Broker::poll_reads) names it
    /// when it should be read again (budget, pause, drain).
    Hold,
    /// The core decided to close it (or does not know it): read nothing more; its close comes
    /// from [`Broker::poll_close`](super::Broker::poll_close).
    Closed,
}

/// Per-connection flow state, kept in [`ConnState`].
#[derive(Debug, Default)]
pub(super) struct ConnFlow {
    /// Bytes handed over this read: compared with `read_budget_bytes`.
    pub(super) read_bytes: usize,
    /// On `Flow::read_again`.
    pub(super) is_read_again: bool,
    /// On `Flow::deferred`.
    pub(super) is_deferred: bool,
    /// On `Flow::paused`.
    pub(super) is_pause_listed: bool,
    /// On `Flow::journal_held`: not read until the journal catches up.
    pub(super) is_journal_held: bool,
    /// Paused by memory back-pressure ([`super::memory`]); counted once per episode.
    pub(super) is_memory_paused: bool,
    /// Reading is paused until then (rate limit, failed-auth slowdown or memory); kept after
    /// the pause ends to tell one throttling episode from the next.
    pub(super) paused_until: Option<Instant>,
    /// Publish rate limiting; `None` while the connection has never been charged and its
    /// listener set no rate when it connected (most connections), as if buckets were empty.
    pub(super) rate: Option<Box<PublishBuckets>>,
}

/// One connection's publish token buckets (messages, payload bytes). Negative means in debt:
/// reading is paused until they refill.
#[derive(Debug)]
pub(super) struct PublishBuckets {
    publish_tokens: f64,
    publish_byte_tokens: f64,
    bucket_at: Instant,
    /// Total time reading was paused, in µs.
    pub(super) throttled_us: u64,
}

impl PublishBuckets {
    /// Full buckets at `now` for `settings` (what a connection starts with).
    pub(super) fn full(settings: &ListenerSettings, now: Instant) -> PublishBuckets {
        PublishBuckets {
            publish_tokens: f64::from(settings.max_publish_rate),
            publish_byte_tokens: settings.max_publish_bytes_rate as f64,
            bucket_at: now,
            throttled_us: 0,
        }
    }
}

/// The broker-wide flow state: who is held back, and this turn's budgets.
#[derive(Debug, Default)]
pub(super) struct Flow {
    /// Cut off by a budget: read again next turn.
    read_again: Vec<ConnId>,
    /// Left unread while the server drains backlogs it is the cause of.
    deferred: Vec<ConnId>,
    /// Paused by a rate limit or the auth slowdown, with the time to look again.
    paused: Vec<(Instant, ConnId)>,
    /// Publishers to durable queues held while the journal is past its bound.
    journal_held: Vec<ConnId>,
    /// The last flush pass found a backlog of the server's making.
    is_draining: bool,
    /// Since when backlogs have been found turn after turn.
    draining_since: Option<Instant>,
    /// Sessions found by `poll_transmit` or a publish, since the last turn end, caught up on
    /// acks yet holding more than a window of pending messages.
    pub(super) backlogged: u32,
    /// Deliveries queued (one per message per target session) since the current read began.
    pub(super) queued: u64,
    /// Tests of queue semantics against a reference model that knows nothing of flow control
    /// turn draining off (flow control has tests of its own).
    #[cfg(test)]
    pub(super) is_drain_off: bool,
}

impl Broker {
    /// Starts reading `conn` this turn (a readiness event, or named by [`Self::poll_reads`]):
    /// handles input held back earlier first, and says whether the loop may read the socket.
    pub fn handle_readable(&mut self, conn: ConnId, now: Instant) -> Intake {
        self.now = now;
        let is_draining = self.flow.is_draining && self.may_drain();
        let may_defer = is_draining && self.may_defer_read(conn);
        let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) else {
            return Intake::Closed;
        };
        if state.close.is_some() {
            return Intake::Closed;
        }
        if let Some(until) = state.flow.paused_until.filter(|&at| at > now) {
            list_paused(&mut self.flow, state, conn, until);
            return Intake::Hold;
        }
        if state.flow.is_journal_held {
            return Intake::Hold;
        }
        if may_defer {
            list_deferred(&mut self.flow, state, conn);
            return Intake::Hold;
        }
        state.flow.read_bytes = 0;
        let has_input = !state.input.is_empty();
        self.flow.queued = 0;
        if !has_input {
            return Intake::More;
        }
        // Frames held back (paused, or past last turn's fan-out budget) come first.
        self.handle_input(conn, &[], now)
    }

    /// Connections the loop should read this turn although mio will not report them: cut off
    /// by a budget, or whose pause or drain is over. Appends them to `reads`.
    pub fn poll_reads(&mut self, now: Instant, reads: &mut Vec<ConnId>) {
        for conn in self.flow.read_again.drain(..) {
            if let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) {
                state.flow.is_read_again = false;
                reads.push(conn);
            }
        }
        if self.flow.paused.is_empty() {
            return;
        }
        let conns = &mut self.conns;
        self.flow.paused.retain(|&(at, conn)| {
            let is_due = at <= now;
            if is_due {
                if let Some(state) = conns.get_mut(conn.0).and_then(Option::as_mut) {
                    state.flow.is_pause_listed = false;
                    reads.push(conn);
                }
            }
            !is_due
        });
    }

    /// The loop finished a turn's flush pass: decides whether the next turn drains backlogs
    /// of the server's making, and releases the deferred connections once it does not.
    pub fn handle_turn_end(&mut self, now: Instant) {
        self.now = now;
        let flow = &mut self.flow;
        flow.is_draining = std::mem::take(&mut flow.backlogged) > 0;
        if flow.is_draining {
            let since = *flow.draining_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= MAX_DRAIN {
                // However long the backlogs last, no connection waits unread longer than this.
                flow.is_draining = false;
                flow.draining_since = None;
            }
        } else {
            flow.draining_since = None;
        }
        if !flow.is_draining {
            for conn in flow.deferred.drain(..) {
                if let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) {
                    state.flow.is_deferred = false;
                    list_read_again(&mut flow.read_again, state, conn);
                }
            }
        }
    }

    /// The earliest time flow control needs the loop awake: now while connections wait for
    /// another read, soon while the server drains, or the end of the first pause.
    pub(super) fn flow_deadline(&self) -> Option<Instant> {
        if !self.flow.read_again.is_empty() {
            return Some(self.now);
        }
        if !self.flow.deferred.is_empty() {
            return Some(self.now + DRAIN_POLL);
        }
        self.flow.paused.iter().map(|&(at, _)| at).min()
    }

    /// Decides what the loop does after input was handled: `stopped` is why the decode loop
    /// stopped early, if it did.
    pub(super) fn intake_after(&mut self, conn: ConnId, stopped: Option<Stop>) -> Intake {
        if self.has_partial_input(conn) && self.is_memory_high() {
            // Near the memory budget a frame split across reads (typically a large PUBLISH)
            // does not grow: the rest of it waits in the socket (issue #12).
            self.pause_for_memory(conn);
        }
        let has_backlog = self.flow.backlogged > 0 && self.may_drain();
        let may_defer = has_backlog && self.may_defer_read(conn);
        let budget = self.config.read_budget_bytes;
        let now = self.now;
        let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) else {
            return Intake::Closed;
        };
        if state.close.is_some() {
            return Intake::Closed;
        }
        if let Some(until) = state.flow.paused_until.filter(|&at| at > now) {
            list_paused(&mut self.flow, state, conn, until);
            return Intake::Hold;
        }
        if state.flow.is_journal_held {
            return Intake::Hold;
        }
        if stopped == Some(Stop::FanOutBudget) || self.flow.queued >= TURN_DELIVERIES {
            // This turn's fan-out work is done; the rest (held in its input or still in the
            // socket) comes next turn.
            list_read_again(&mut self.flow.read_again, state, conn);
            return Intake::Hold;
        }
        if may_defer {
            // It filled a queue that keeps up past what the next flush sends: the rest waits
            // until the backlogs drain.
            list_deferred(&mut self.flow, state, conn);
            return Intake::Hold;
        }
        if state.flow.read_bytes >= budget {
            list_read_again(&mut self.flow.read_again, state, conn);
            return Intake::Hold;
        }
        Intake::More
    }

    /// Has the loop read `conn` next turn (a pause it was under has ended early).
    pub(super) fn read_again(&mut self, conn: ConnId) {
        if let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) {
            list_read_again(&mut self.flow.read_again, state, conn);
        }
    }

    /// Whether draining may defer reads (always, but in model tests).
    fn may_drain(&self) -> bool {
        #[cfg(test)]
        return !self.flow.is_drain_off;
        #[cfg(not(test))]
        true
    }

    /// Whether reading `conn` may wait while the server drains backlogs: it has a session
    /// with nothing in flight, so nothing it sends can be an ack that lets deliveries go on.
    pub(super) fn may_defer_read(&self, conn: ConnId) -> bool {
        self.conn(conn)
            .filter(|state| state.close.is_none())
            .and_then(|state| state.session)
            .is_some_and(|key| self.sessions[key.0].queue.in_flight() == 0)
    }

    /// Stops reading `conn` until the journal is back under its bound.
    pub(super) fn hold_for_journal(&mut self, conn: ConnId) {
        if let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) {
            if !state.flow.is_journal_held {
                state.flow.is_journal_held = true;
                self.flow.journal_held.push(conn);
            }
        }
    }

    /// The journal caught up: every held connection is read again.
    pub(super) fn release_journal_held(&mut self) {
        for conn in self.flow.journal_held.drain(..) {
            if let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) {
                state.flow.is_journal_held = false;
                list_read_again(&mut self.flow.read_again, state, conn);
            }
        }
    }

    /// Whether reading `conn` waits for the journal.
    pub(super) fn is_journal_held(&self, conn: ConnId) -> bool {
        self.conn(conn)
            .is_some_and(|state| state.flow.is_journal_held)
    }

    /// If reading `conn` is paused at `now`, until when.
    pub(super) fn read_paused_until(&self, conn: ConnId, now: Instant) -> Option<Instant> {
        let until = self.conn(conn)?.flow.paused_until?;
        (until > now).then_some(until)
    }

    /// Charges one PUBLISH of `bytes` payload bytes to `conn`'s token buckets; pauses its
    /// reading when they go into debt.
    pub(super) fn charge_publish(&mut self, conn: ConnId, bytes: usize) {
        let now = self.now;
        let Some(listener) = self.conn(conn).map(|c| c.listener) else {
            return;
        };
        let settings = self.listeners[listener];
        let (rate, byte_rate) = (
            f64::from(settings.max_publish_rate),
            settings.max_publish_bytes_rate as f64,
        );
        if rate == 0.0 && byte_rate == 0.0 {
            return;
        }
        let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) else {
            return;
        };
        // No buckets yet: the listener had no rate at connect (a reload set one since), which
        // left them empty as of then.
        let accepted_at = state.accepted_at;
        let flow = &mut state.flow;
        let buckets = flow.rate.get_or_insert_with(|| {
            Box::new(PublishBuckets {
                publish_tokens: 0.0,
                publish_byte_tokens: 0.0,
                bucket_at: accepted_at,
                throttled_us: 0,
            })
        });
        let elapsed = now
            .saturating_duration_since(buckets.bucket_at)
            .as_secs_f64();
        buckets.bucket_at = now;
        let mut debt_secs: f64 = 0.0;
        if rate > 0.0 {
            buckets.publish_tokens = (buckets.publish_tokens + elapsed * rate).min(rate) - 1.0;
            debt_secs = debt_secs.max(-buckets.publish_tokens / rate);
        }
        if byte_rate > 0.0 {
            buckets.publish_byte_tokens =
                (buckets.publish_byte_tokens + elapsed * byte_rate).min(byte_rate) - bytes as f64;
            debt_secs = debt_secs.max(-buckets.publish_byte_tokens / byte_rate);
        }
        if debt_secs > 0.0 {
            let until = now + Duration::from_secs_f64(debt_secs);
            // Paused time counts once: from the later of now and the current pause's end.
            let from = flow.paused_until.map_or(now, |at| at.max(now));
            let added = until.saturating_duration_since(from);
            buckets.throttled_us += u64::try_from(added.as_micros()).unwrap_or(u64::MAX);
            // One episode per stretch of throttling: a pause that starts within a second of
            // the previous one's end continues the episode.
            let is_new_episode = flow
                .paused_until
                .is_none_or(|at| now.saturating_duration_since(at) > Duration::from_secs(1));
            if is_new_episode {
                self.metrics.throttle_episodes += 1;
            }
            flow.paused_until = Some(until);
        }
    }
}

/// Why the decode loop stopped before the end of its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// A publish filled this turn's fan-out budget.
    FanOutBudget,
    /// The connection's reading was paused (rate limit, held HELLO).
    Paused,
}

fn list_read_again(list: &mut Vec<ConnId>, state: &mut ConnState, conn: ConnId) {
    if !state.flow.is_read_again {
        state.flow.is_read_again = true;
        list.push(conn);
    }
}

fn list_deferred(flow: &mut Flow, state: &mut ConnState, conn: ConnId) {
    if !state.flow.is_deferred {
        state.flow.is_deferred = true;
        flow.deferred.push(conn);
    }
}

fn list_paused(flow: &mut Flow, state: &mut ConnState, conn: ConnId, until: Instant) {
    if !state.flow.is_pause_listed {
        state.flow.is_pause_listed = true;
        flow.paused.push((until, conn));
    }
}

/// What the backlog tests observe of the flow state.
#[cfg(test)]
impl Broker {
    /// Whether a backlog of the server's making was seen since the last turn end, and resets
    /// it (as `handle_turn_end` does).
    pub(super) fn take_backlogged(&mut self) -> bool {
        std::mem::take(&mut self.flow.backlogged) > 0
    }

    /// Whether a backlog of the server's making was seen since the last turn end.
    pub(super) fn has_backlog(&self) -> bool {
        self.flow.backlogged > 0
    }

    /// Deliveries queued since the current read began, and resets the count.
    pub(super) fn take_queued(&mut self) -> u64 {
        std::mem::take(&mut self.flow.queued)
    }

    /// Deliveries queued since the current read began.
    pub(super) fn queued(&self) -> u64 {
        self.flow.queued
    }

    /// Turns draining off (see `Flow::is_drain_off`).
    pub(super) fn turn_draining_off(&mut self) {
        self.flow.is_drain_off = true;
    }

    /// Whether some connection has output `poll_dirty` has not named yet.
    pub(super) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Whether `conn` is held back while the server drains.
    pub(super) fn is_deferred(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|state| state.flow.is_deferred)
    }
}
