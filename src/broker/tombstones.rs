//! Tombstones: what a client that comes back to an ended session is told (the reason, and
//! what it missed), kept for a while and bounded in number.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::session::Session;
use crate::protocol::{ErrorCode, RESUME_TOKEN_LEN};

/// Tombstones are kept at least this long, and at least as long as the longest keep-alive.
pub(super) const MIN_TOMBSTONE_TTL: Duration = Duration::from_secs(600);

/// Most tombstones kept; the oldest go first. 100,000 × ~100 bytes = ~10 MB at worst.
pub(super) const MAX_TOMBSTONES: usize = 100_000;

/// Why a resume did not happen, and how many messages were lost if known.
pub(super) type Lost = (ErrorCode, Option<u64>);

/// What the server remembers of a session that ended.
#[derive(Debug)]
pub(crate) struct Tombstone {
    pub(crate) resume_token: [u8; RESUME_TOKEN_LEN],
    pub(crate) client_name: Box<str>,
    pub(crate) reason: ErrorCode,
    /// What the session still held when it ended.
    pub(crate) held: Held,
    /// The `missed` of the latest LOST answer for it; until one, what a client that received
    /// every delivery sent missed. STATS_REPLY `closed_sessions[].missed` shows it.
    pub(crate) missed: u64,
    pub(crate) closed_at: Instant,
}

/// Runs of consecutive in-flight seqs kept per tombstone. Each individually acked seq in the
/// middle of the in-flight span splits a run, so 64 runs keep the count exact for any session
/// that acked in order, and for all but the most scattered individual acks.
pub(crate) const TOMBSTONE_RUNS: usize = 64;

/// Messages a session held when it ended: never sent, sent but unacked (as runs of seqs), and
/// the message whose arrival ended it, if one did. protocol.md §LOST defines `missed` from it.
#[derive(Debug, Default)]
pub(crate) struct Held {
    pub(crate) pending: u64,
    /// Unacked seqs as inclusive runs `(first, last)`, lowest first, at most `TOMBSTONE_RUNS`.
    pub(crate) in_flight_runs: Box<[(u64, u64)]>,
    /// Unacked seqs above the last kept run (0 unless there were more runs than kept).
    pub(crate) in_flight_rest: u64,
    /// The message whose arrival ended the session (QUEUE_OVERFLOW, or LIMIT_EXCEEDED for a
    /// message too large for its listener): lost to it too.
    pub(crate) overflowed: u64,
}

impl Held {
    /// Builds the record from the unacked seqs, lowest first.
    pub(crate) fn new(pending: u64, in_flight: &[u64], ended_by_arrival: bool) -> Held {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut rest = 0;
        for &seq in in_flight {
            if let Some(run) = runs.last_mut().filter(|run| run.1 + 1 == seq) {
                run.1 = seq;
            } else if runs.len() < TOMBSTONE_RUNS {
                runs.push((seq, seq));
            } else {
                rest += 1;
            }
        }
        Held {
            pending,
            in_flight_runs: runs.into(),
            in_flight_rest: rest,
            overflowed: u64::from(ended_by_arrival),
        }
    }

    /// What a client that received every delivery up to `last_received` missed: the pending
    /// messages, the unacked deliveries after that seq, and the overflowing message. Exact
    /// unless the unacked seqs formed more than `TOMBSTONE_RUNS` runs (then a lower bound).
    pub(crate) fn missed_after(&self, last_received: u64) -> u64 {
        let mut missed = self.pending + self.overflowed;
        for &(first, last) in self.in_flight_runs.iter() {
            if last > last_received {
                missed += last - first.max(last_received + 1) + 1;
            }
        }
        // Seqs past the kept runs lie above the last run: all after `last_received` when it is
        // within the runs, unknown (not counted) when it is beyond.
        if self
            .in_flight_runs
            .last()
            .is_some_and(|&(_, last)| last_received <= last)
        {
            missed += self.in_flight_rest;
        }
        missed
    }
}

/// Recently ended sessions by id, bounded in time and number.
#[derive(Debug, Default)]
pub(crate) struct Tombstones {
    by_id: HashMap<u64, Tombstone>,
    /// (expiry, session id), in insertion order; the TTL is the same for all.
    order: VecDeque<(Instant, u64)>,
}

impl Tombstones {
    pub(crate) fn insert(
        &mut self,
        session: &Session,
        reason: ErrorCode,
        held: Held,
        now: Instant,
        ttl: Duration,
    ) {
        while self.by_id.len() >= MAX_TOMBSTONES {
            let Some((_, id)) = self.order.pop_front() else {
                break;
            };
            self.by_id.remove(&id);
        }
        self.by_id.insert(
            session.id,
            Tombstone {
                resume_token: session.resume_token,
                client_name: session.client_name.clone(),
                reason,
                missed: held.missed_after(u64::MAX),
                held,
                closed_at: now,
            },
        );
        self.order.push_back((now + ttl, session.id));
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.order.front() {
            if at > now {
                break;
            }
            self.order.pop_front();
            self.by_id.remove(&id);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Tombstone> {
        self.by_id.get_mut(&id)
    }

    /// Most recent first.
    pub(crate) fn recent(&self) -> impl Iterator<Item = (u64, &Tombstone)> {
        self.order
            .iter()
            .rev()
            .filter_map(|(_, id)| self.by_id.get(id).map(|t| (*id, t)))
    }
}
