//! The connection under a [`ReconnectingClient`]: keeping one up, noticing when it is dead,
//! reconnecting with backoff, and putting the session back as it was (protocol.md
//! §Reconnection).
//!
//! The link is `Up`, `Down` (waiting for the next attempt) or `Ended`. Any error from the
//! connection goes through [`ReconnectingClient::recover`], which decides between
//! reconnecting, reporting the error with the connection intact, and ending the client.

use std::thread;
use std::time::{Duration, Instant};

use log::debug;

use super::receive::accept;
use super::{Item, Link, ReconnectingClient};
use crate::client::error::CloseCause;
use crate::client::{Client, ClientError, Event};
use crate::protocol::frame::OUTCOME_RESUMED;
use crate::protocol::{ErrorCode, Op, Welcome};

impl ReconnectingClient {
    /// Runs `op` on a live connection, reconnecting after connection failures, until it
    /// succeeds, fails in a way a reconnection cannot fix, or `deadline` passes.
    pub(super) fn with_link<T>(
        &mut self,
        deadline: Option<Instant>,
        mut op: impl FnMut(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        loop {
            if !self.ensure_up(deadline)? {
                return Err(ClientError::Timeout);
            }
            let Link::Up(client) = &mut self.link else {
                continue;
            };
            let result = op(client);
            self.take_receipts();
            match result {
                Ok(value) => return Ok(value),
                Err(ClientError::Timeout) => {
                    self.check_liveness()?;
                    if deadline.is_some_and(|at| Instant::now() >= at) {
                        return Err(ClientError::Timeout);
                    }
                }
                Err(e) => self.recover(e)?,
            }
        }
    }

    /// Makes sure there is a connection, reconnecting when an attempt is due. Returns
    /// `Ok(false)` if `deadline` passes first (`None`: wait as long as it takes).
    pub(super) fn ensure_up(&mut self, deadline: Option<Instant>) -> Result<bool, ClientError> {
        loop {
            let (since, failures, next_attempt_at) = match &self.link {
                Link::Up(_) => return Ok(true),
                Link::Ended(cause) => return Err(cause.to_error()),
                Link::Down {
                    since,
                    failures,
                    next_attempt_at,
                    ..
                } => (*since, *failures, *next_attempt_at),
            };
            let now = Instant::now();
            if now < next_attempt_at {
                if deadline.is_some_and(|at| at <= now) {
                    return Ok(false);
                }
                let wake = deadline.map_or(next_attempt_at, |at| at.min(next_attempt_at));
                thread::sleep(wake - now);
                continue;
            }
            self.stats.reconnect_attempts += 1;
            let before = self.progress_mark();
            let error = match self.attempt() {
                Ok(()) => return Ok(true),
                Err(error) => error,
            };
            if let Link::Ended(cause) = &self.link {
                return Err(cause.to_error());
            }
            // An attempt cut during the resends still moved the session forward: on a link
            // that carries little per connection, that is how a backlog drains. Only attempts
            // that changed nothing count towards backoff and giving up.
            let (since, failures) = if self.progress_mark() == before {
                (since, failures.saturating_add(1))
            } else {
                (Instant::now(), 0)
            };
            let next_attempt_at = Instant::now() + self.backoff.delay(failures);
            let give_up_at = self
                .options
                .give_up_after
                .and_then(|limit| since.checked_add(limit));
            if give_up_at.is_some_and(|at| next_attempt_at > at) {
                let cause = CloseCause::GaveUp {
                    attempts: failures,
                    last_error: error.to_string(),
                };
                let error = cause.to_error();
                self.link = Link::Ended(cause);
                return Err(error);
            }
            debug!("reconnection attempt failed ({failures} in a row): {error}");
            self.link = Link::Down {
                since,
                failures,
                next_attempt_at,
            };
        }
    }

    /// What a reconnection attempt can move forward: publishes receipted, deliveries
    /// received, the session itself (LOST).
    fn progress_mark(&self) -> (Option<u64>, u64, u64) {
        (
            self.outbound.first_seq(),
            self.inbox.last_delivery_seq,
            self.inbox.generation,
        )
    }

    /// One reconnection: HELLO with the resume block, then the state the outcome calls for.
    /// On success the link is up; on an error that ends the client it is `Ended`; otherwise
    /// it is left down for the caller to schedule the next attempt.
    pub(super) fn attempt(&mut self) -> Result<(), ClientError> {
        let resume = self.resume_block();
        let mut client = Client::handshake(
            &self.addrs[..],
            &self.client_options,
            self.tls.as_ref(),
            Some(&resume),
        )
        .inspect_err(|error| {
            if matches!(error, ClientError::Timeout) {
                // The HELLO went out and may still reach the server; see
                // `is_own_takeover`.
                self.abandoned_hello_at = Some(Instant::now());
            }
        })?;
        let welcome = *client.welcome();
        self.welcome = welcome;
        if welcome.outcome == OUTCOME_RESUMED {
            self.handle_resumed(&welcome);
        } else {
            self.handle_lost(&welcome);
        }
        match self.restore(&mut client) {
            Ok(()) => {
                self.last_ping_at = Instant::now();
                self.link = Link::Up(Box::new(client));
                Ok(())
            }
            Err(error) => {
                self.salvage(client);
                let retry = recovery(&error) == Recovery::Reconnect
                    || matches!(error, ClientError::Timeout)
                    || self.is_own_takeover(&error);
                if !retry {
                    // Resending or re-subscribing failed for good (a publish the server's
                    // limits now refuse, a takeover): retrying would fail the same way.
                    self.end(&error);
                }
                Err(error)
            }
        }
    }

    pub(super) fn handle_resumed(&mut self, welcome: &Welcome) {
        self.outbound.receipted(welcome.last_publish_seq);
        self.last_publish_seq = self.last_publish_seq.max(welcome.last_publish_seq);
        let resent = self.outbound.len() as u64;
        self.stats.resumes += 1;
        self.stats.publishes_resent += resent;
        // The server may not have got the last ACK: send it again.
        self.acked_seq = 0;
        self.inbox.items.push_back(Item::Notice(Event::Resumed {
            session_id: welcome.session_id,
            resent,
        }));
    }

    pub(super) fn handle_lost(&mut self, welcome: &Welcome) {
        self.inbox.generation += 1;
        self.inbox.last_delivery_seq = 0;
        self.consumed_seq = 0;
        self.acked_seq = 0;
        self.outbound.renumber(1);
        let republished = self.outbound.len() as u64;
        self.last_publish_seq = republished;
        self.resubscribe = !self.subscriptions.is_empty();
        self.stats.losses += 1;
        self.stats.missed += welcome.missed.unwrap_or(0);
        self.stats.publishes_republished += republished;
        self.inbox.items.push_back(Item::Notice(Event::Lost {
            reason: welcome.lost_reason,
            missed: welcome.missed,
            session_id: welcome.session_id,
            republished,
        }));
    }

    /// After WELCOME: subscriptions again (after LOST), the publishes the server lacks, the
    /// ack of what the application consumed.
    pub(super) fn restore(&mut self, client: &mut Client) -> Result<(), ClientError> {
        client.set_timeout(inner_timeout(self.client_options.timeout, &self.welcome))?;
        if self.resubscribe {
            for kept in &self.subscriptions {
                client.request(Op::Subscribe, kept.view())?;
            }
            self.resubscribe = false;
        }
        let accepted = client.last_publish_seq();
        for publish in self.outbound.after(accepted) {
            let seq = client.publish_frame_ttl(
                publish.queue(),
                publish.event(),
                publish.key(),
                publish.ttl_ms,
                publish.payload(),
            )?;
            debug_assert_eq!(seq, publish.seq, "resent with its original seq");
        }
        if self.consumed_seq > 0 {
            client.ack(self.consumed_seq)?;
            self.acked_seq = self.consumed_seq;
        }
        client.flush()
    }

    /// Pings a quiet connection and drops a silent one: nothing received for WELCOME's
    /// `heartbeat_timeout_ms`, after taking in what has arrived.
    pub(super) fn check_liveness(&mut self) -> Result<(), ClientError> {
        let Link::Up(client) = &mut self.link else {
            return Ok(());
        };
        let (Some(interval), Some(timeout)) = (
            heartbeat_interval(&self.welcome),
            heartbeat_timeout(&self.welcome),
        ) else {
            return Ok(());
        };
        let now = Instant::now();
        if now.saturating_duration_since(client.last_received_at()) < interval {
            return Ok(());
        }
        let (inbox, stats) = (&mut self.inbox, &mut self.stats);
        let result = client.poll_deliveries(Some(Duration::ZERO), |d| accept(inbox, stats, d));
        match result {
            Ok(_) => {}
            Err(ClientError::Timeout) => {
                self.lose_link(String::from("a write made no progress"));
                return Ok(());
            }
            Err(e) => return self.recover(e),
        }
        let quiet = now.saturating_duration_since(client.last_received_at());
        if quiet >= timeout {
            self.stats.heartbeat_timeouts += 1;
            let why = format!("nothing received for {} ms", quiet.as_millis());
            self.lose_link(why);
            return Ok(());
        }
        if now.saturating_duration_since(self.last_ping_at) >= interval {
            self.last_ping_at = now;
            let result = client.send_ping().and_then(|()| client.flush());
            match result {
                Ok(()) => {}
                Err(ClientError::Timeout) => {
                    self.lose_link(String::from("a write made no progress"));
                }
                Err(e) => return self.recover(e),
            }
        }
        Ok(())
    }

    /// Acts on an error from the connection: reconnect later, report it, or end.
    pub(super) fn recover(&mut self, error: ClientError) -> Result<(), ClientError> {
        if self.is_own_takeover(&error) {
            self.lose_link(error.to_string());
            return Ok(());
        }
        match recovery(&error) {
            Recovery::Reconnect => {
                self.lose_link(error.to_string());
                Ok(())
            }
            Recovery::Report => Err(error),
            Recovery::End => {
                self.end(&error);
                Err(error)
            }
        }
    }

    /// True for a GOODBYE(TAKEN_OVER) that may come from this client's own past: an attempt
    /// that gave up waiting for WELCOME left its HELLO in flight, and when that HELLO reaches
    /// the server after a later attempt's, it takes the session over from the live
    /// connection. Such a takeover is answered with one more resume; a second one (another
    /// owner really has the session) ends the client.
    fn is_own_takeover(&mut self, error: &ClientError) -> bool {
        let taken_over = matches!(
            error,
            ClientError::Goodbye {
                code: Ok(ErrorCode::TakenOver),
                ..
            }
        );
        taken_over
            && self
                .abandoned_hello_at
                .take()
                .is_some_and(|at| at.elapsed() < STALE_HELLO_GRACE)
    }

    /// The connection is gone: keep what it received, schedule an immediate attempt.
    pub(super) fn lose_link(&mut self, why: String) {
        let now = Instant::now();
        let down = Link::Down {
            since: now,
            failures: 0,
            next_attempt_at: now,
        };
        if let Link::Up(client) = std::mem::replace(&mut self.link, down) {
            let client = *client;
            debug!(
                "session {:016x}: connection lost ({why}); reconnecting",
                self.welcome.session_id
            );
            self.stats.disconnects += 1;
            self.lost_because = Some(why);
            self.salvage(client);
        }
    }

    /// Ends the client with `error`, keeping what the connection received.
    pub(super) fn end(&mut self, error: &ClientError) {
        let cause = CloseCause::from_error(error).unwrap_or(CloseCause::Eof);
        if let Link::Up(client) = std::mem::replace(&mut self.link, Link::Ended(cause)) {
            let client = *client;
            self.salvage(client);
        }
    }

    /// Moves the deliveries a dead connection received into the inbox, then drops it without
    /// writing (its peer may not be reading).
    pub(super) fn salvage(&mut self, mut client: Client) {
        while let Some(event) = client.session.inbox.pop_front() {
            if let Event::Deliver(delivery) = event {
                accept(&mut self.inbox, &mut self.stats, &delivery.as_deliver());
            }
        }
        client.abandon("connection given up by the reconnecting client");
    }
}

/// What to do about an error from the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Recovery {
    /// The connection is gone but the session may not be: reconnect and resume.
    Reconnect,
    /// The call failed; the connection is fine (a bad argument, a timeout).
    Report,
    /// Reconnecting would not help.
    End,
}

pub(super) fn recovery(error: &ClientError) -> Recovery {
    match error {
        ClientError::Closed
        | ClientError::Decode(_)
        | ClientError::Io(_)
        | ClientError::UnexpectedFrame(_) => Recovery::Reconnect,
        ClientError::Goodbye {
            code: Ok(ErrorCode::ClientBye | ErrorCode::TakenOver),
            ..
        } => Recovery::End,
        // HEARTBEAT_TIMEOUT and SLOW_CONSUMER only detach the session; for QUEUE_OVERFLOW,
        // SERVER_SHUTDOWN and codes unknown here, the resume's WELCOME tells what is left.
        ClientError::Goodbye { .. } => Recovery::Reconnect,
        ClientError::Server { fatal: true, .. }
        | ClientError::GaveUp { .. }
        | ClientError::WrongProtocol(_) => Recovery::End,
        ClientError::Server { fatal: false, .. }
        | ClientError::Encode(_)
        | ClientError::FrameTooLarge { .. }
        | ClientError::InvalidArgument(_)
        | ClientError::OutboundFull
        | ClientError::Timeout => Recovery::Report,
    }
}

pub(super) fn heartbeat_interval(welcome: &Welcome) -> Option<Duration> {
    let ms = welcome.heartbeat_interval_ms;
    (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
}

fn heartbeat_timeout(welcome: &Welcome) -> Option<Duration> {
    let ms = welcome.heartbeat_timeout_ms;
    (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
}

/// Each wait of the connection underneath is bounded by the heartbeat timeout, so a silent
/// peer is noticed within about one timeout whatever the call.
pub(super) fn inner_timeout(timeout: Option<Duration>, welcome: &Welcome) -> Option<Duration> {
    match (timeout, heartbeat_timeout(welcome)) {
        (Some(timeout), Some(heartbeat)) => Some(timeout.min(heartbeat)),
        (timeout, heartbeat) => timeout.or(heartbeat),
    }
}

/// How long a HELLO abandoned without a WELCOME may still arrive and take the session over.
/// TCP delivers a segment a few retransmission timeouts after its sender closed at most; a
/// proxy or middlebox can hold it longer. A minute covers both.
const STALE_HELLO_GRACE: Duration = Duration::from_secs(60);
