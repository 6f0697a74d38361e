//! Introspection: the [`StatsReport`] behind STATS_REPLY and `ServerHandle::stats`.
//!
//! Built on request, never on the hot path; allocation here is fine. The server figures and
//! their names come from `crate::metrics`; this file computes the gauges and the per-session
//! and per-queue figures.

use std::time::Instant;

use crate::metrics::{self, Gauges};
use crate::protocol::stats::{
    ClosedSessionStats, DroppedStats, GroupStats, PatternStats, QueueStats, SessionStats,
    StatsReport, SubscriptionStats,
};
use crate::protocol::ErrorCode;

use super::close::CloseReason;
use super::Broker;

/// Most recently ended sessions listed in a report.
const CLOSED_SESSIONS_LISTED: usize = 100;

/// Most sessions and queues a STATS_REPLY or `/metrics` lists; past them, `sessions_omitted`
/// and `queues_omitted` say how many were left out (and `/metrics` exports the queues left
/// out as one aggregate series). With 100,000 queues one STATS cost 293 ms of loop time
/// (issue #12); listing stops here, and what is not listed costs no allocation.
pub(crate) const MAX_LISTED: usize = 1_000;

/// Most subscriptions listed per session: with 1,000 sessions of 1,000 subscriptions each a
/// report would otherwise build a million entries to send a fraction of them.
const MAX_LISTED_SUBSCRIPTIONS: usize = 100;

impl Broker {
    /// A full introspection report: server counters, every session, every queue, recently
    /// ended sessions. Unbounded: for tests and `ServerHandle::stats`; the loop uses
    /// [`Self::stats_bounded`].
    pub fn stats(&self) -> StatsReport {
        self.report(usize::MAX, usize::MAX, true)
    }

    /// The report `/metrics` renders: every session (aggregated by state there) up to
    /// `max_sessions`, queues up to [`MAX_LISTED`].
    ///
    /// Sessions come without names, addresses or subscriptions (exported only aggregated).
    pub fn metrics_report(&self) -> StatsReport {
        self.report(self.config.max_sessions, MAX_LISTED, false)
    }

    /// A report listing at most `max_sessions` sessions (lowest ids) and `max_queues` queues,
    /// counting the others in `sessions_omitted` / `queues_omitted`.
    ///
    /// Bounded work: O(sessions + queues) of counting, allocation only for what is listed.
    pub fn stats_bounded(&self, max_sessions: usize, max_queues: usize) -> StatsReport {
        self.report(max_sessions, max_queues, true)
    }

    /// [`Self::stats_bounded`]; `with_details`: names, addresses and subscriptions too.
    fn report(&self, max_sessions: usize, max_queues: usize, with_details: bool) -> StatsReport {
        let now = Some(self.now);
        let since = |at: Instant| now.map_or(0, |now| ms(now.saturating_duration_since(at)));
        let closes = self
            .closes
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (CloseReason::counter_name(i).to_owned(), n))
            .collect();
        let losses = self
            .losses
            .iter()
            .zip(ErrorCode::ALL)
            .filter(|(&n, _)| n > 0)
            .map(|(&n, code)| (code.name().to_owned(), n))
            .collect();
        let detached_now = self
            .sessions
            .iter()
            .filter(|(_, s)| s.conn.is_none())
            .count();
        let gauges = Gauges {
            connections: self.conn_count as u64,
            sessions: self.sessions.len() as u64,
            queues: self.routes.len() as u64,
            stored_messages: self.store.len() as u64,
            stored_bytes: self.store.payload_bytes(),
            sessions_detached_now: detached_now as u64,
            journal_fsync_p50_microseconds: self.journal.progress.sync_p50_micros,
            journal_fsync_p99_microseconds: self.journal.progress.sync_p99_micros,
            memory_bytes: self.memory_bytes(),
            max_memory_bytes: self.config.max_memory_bytes,
        };
        let server = metrics::server_stats(&self.metrics, &gauges, closes, losses);
        let mut listed: Vec<(u64, usize)> =
            self.sessions.iter().map(|(key, s)| (s.id, key)).collect();
        let sessions_omitted = listed.len().saturating_sub(max_sessions);
        if sessions_omitted > 0 {
            listed.select_nth_unstable(max_sessions);
            listed.truncate(max_sessions);
        }
        let mut sessions: Vec<SessionStats> = listed
            .iter()
            .map(|&(_, key)| &self.sessions[key])
            .map(|s| {
                let peer = s
                    .conn
                    .and_then(|conn| self.conn(conn))
                    .filter(|_| with_details)
                    .map(|c| c.peer.to_string())
                    .unwrap_or_default();
                let listed = if with_details {
                    MAX_LISTED_SUBSCRIPTIONS
                } else {
                    0
                };
                let settings = &self.listeners[s.listener];
                let keep_alive = settings.reconnect_keep_alive;
                let conn_state = s.conn.and_then(|conn| self.conn(conn));
                SessionStats {
                    session_id: s.id,
                    client_name: if with_details {
                        s.client_name.to_string()
                    } else {
                        String::new()
                    },
                    peer,
                    identity: if with_details {
                        s.grant.identity.to_string()
                    } else {
                        String::new()
                    },
                    state: if s.conn.is_some() {
                        "connected"
                    } else {
                        "detached"
                    }
                    .to_owned(),
                    detached_ms: s.detached_at.map(since),
                    expires_in_ms: s
                        .detached_at
                        .map(|at| ms(keep_alive).saturating_sub(since(at))),
                    resumes: s.resumes,
                    max_publish_rate: u64::from(settings.max_publish_rate),
                    max_publish_bytes_rate: settings.max_publish_bytes_rate,
                    is_throttled: conn_state.is_some_and(|c| {
                        c.flow
                            .paused_until
                            .is_some_and(|at| now.is_none_or(|now| at > now))
                    }),
                    throttled_ms: conn_state
                        .and_then(|c| c.flow.rate.as_ref())
                        .map_or(0, |rate| rate.throttled_us / 1_000),
                    subscriptions_omitted: s.subscriptions.len().saturating_sub(listed) as u64,
                    subscriptions: s
                        .subscriptions
                        .iter()
                        .filter(|sub| sub.is_literal)
                        .take(listed)
                        .map(|sub| SubscriptionStats {
                            queue: lossy(&self.routes.queue(sub.queue).name),
                            event: sub.event.as_deref().map(lossy),
                        })
                        .collect(),
                    patterns: s
                        .patterns
                        .iter()
                        .map(|p| PatternStats {
                            pattern: lossy(&p.pattern),
                            event: p.event.as_deref().map(lossy),
                            queues: p.matched.len() as u64,
                        })
                        .collect(),
                    queue_depth: u64::from(s.queue.depth()),
                    queue_bytes: s.queue.bytes,
                    in_flight: u64::from(s.queue.in_flight()),
                    pending: u64::from(s.queue.pending_len()),
                    published: s.published,
                    delivered: s.delivered,
                    acked: s.acked,
                    conflated: s.conflated,
                    redelivered: s.redelivered,
                    dropped: DroppedStats {
                        conflated: s.conflated,
                        expired: s.expired,
                        dead_lettered: s.group.dead_lettered,
                    },
                    last_publish_seq: s.last_publish_seq,
                    last_delivery_seq: s.queue.last_sent_seq,
                }
            })
            .collect();
        sessions.sort_by_key(|s| s.session_id);
        let queues = self
            .routes
            .iter()
            .take(max_queues)
            .map(|q| QueueStats {
                name: lossy(&q.name),
                conflate: q.conflate,
                subscribers: u64::from(q.subscribers),
                published: q.published,
                delivered: q.delivered,
                durable: q.durable.is_some(),
                retained: q.durable.as_ref().map_or(0, |d| d.retained.len() as u64),
                first_position: q.durable.as_ref().map_or(0, |d| {
                    d.retained.front().map_or(d.next_position, |r| r.position)
                }),
                next_position: q.durable.as_ref().map_or(0, |d| d.next_position),
            })
            .collect();
        let mut omitted_queue_totals = QueueStats::default();
        let mut queues_omitted = 0;
        for q in self.routes.iter().skip(max_queues) {
            queues_omitted += 1;
            omitted_queue_totals.subscribers += u64::from(q.subscribers);
            omitted_queue_totals.published += q.published;
        }
        let closed_sessions = self
            .tombstones
            .recent()
            .take(CLOSED_SESSIONS_LISTED)
            .map(|(id, t)| ClosedSessionStats {
                session_id: id,
                client_name: t.client_name.to_string(),
                reason: t.reason.name().to_owned(),
                closed_ms_ago: since(t.closed_at),
                missed: t.missed,
            })
            .collect();
        let groups = self
            .groups
            .iter()
            .map(|view| GroupStats {
                queue: lossy(&self.routes.queue(view.group.queue).name),
                event: view.group.event.as_deref().map(lossy),
                name: lossy(&view.group.name),
                members: u64::from(view.group.member_count),
                unassigned: view.unassigned,
                in_flight: view.in_flight,
                assigned: view.group.assigned,
                acked: view.group.acked,
                redelivered: view.group.redelivered,
                dead_lettered: view.group.dead_lettered,
            })
            .collect();
        StatsReport {
            server,
            sessions,
            queues,
            sessions_omitted: sessions_omitted as u64,
            queues_omitted,
            omitted_queue_totals,
            closed_sessions,
            groups,
        }
    }
}

/// Renders the report as JSON of at most `max_len` bytes, leaving sessions out (and counting
/// them in `sessions_omitted`) when every one would not fit.
pub(super) fn render_json(broker: &Broker, max_len: usize) -> Vec<u8> {
    let mut report = broker.stats_bounded(MAX_LISTED, MAX_LISTED);
    loop {
        let json = serde_json::to_vec(&report).unwrap_or_default();
        let is_minimal = report.sessions.is_empty()
            && report.queues.is_empty()
            && report.closed_sessions.is_empty();
        if json.len() <= max_len || is_minimal {
            return json;
        }
        if !report.closed_sessions.is_empty() {
            report
                .closed_sessions
                .truncate(report.closed_sessions.len() / 2);
        } else if !report.sessions.is_empty() {
            let keep = report.sessions.len() / 2;
            report.sessions_omitted += (report.sessions.len() - keep) as u64;
            report.sessions.truncate(keep);
        } else {
            report.queues.truncate(report.queues.len() / 2);
        }
    }
}

fn ms(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
