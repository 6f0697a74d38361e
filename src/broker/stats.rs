//! Introspection: the [`StatsReport`] behind STATS_REPLY and `ServerHandle::stats`.
//!
//! Built on request, never on the hot path; allocation here is fine.

use crate::protocol::stats::{
    QueueStats, ServerStats, SessionStats, StatsReport, SubscriptionStats,
};

use super::close::CloseReason;
use super::Broker;

impl Broker {
    /// A full introspection report: server counters, every session, every queue.
    pub fn stats(&self) -> StatsReport {
        let m = &self.metrics;
        let closes = self
            .closes
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (CloseReason::counter_name(i).to_owned(), n))
            .collect();
        let server = ServerStats {
            connections: self.conn_count as u64,
            sessions: self.sessions.len() as u64,
            queues: self.routes.len() as u64,
            connections_accepted: m.connections_accepted,
            connections_refused: m.connections_refused,
            messages_published: m.messages_published,
            messages_duplicate: m.messages_duplicate,
            messages_delivered: m.messages_delivered,
            messages_acked: m.messages_acked,
            messages_conflated: m.messages_conflated,
            messages_dropped_overflow: m.messages_dropped_overflow,
            messages_dropped_session_closed: m.messages_dropped_session_closed,
            stored_messages: self.store.len() as u64,
            stored_bytes: self.store.payload_bytes(),
            bytes_in: m.bytes_in,
            bytes_out: m.bytes_out,
            closes,
        };
        let mut sessions: Vec<SessionStats> = self
            .sessions
            .iter()
            .map(|(_, s)| {
                let peer = self
                    .conn(s.conn)
                    .map(|c| c.peer.to_string())
                    .unwrap_or_default();
                SessionStats {
                    session_id: s.id,
                    client_name: s.client_name.to_string(),
                    peer,
                    state: "connected".to_owned(),
                    subscriptions: s
                        .subscriptions
                        .iter()
                        .map(|sub| SubscriptionStats {
                            queue: lossy(&self.routes.queue(sub.queue).name),
                            event: sub.event.as_deref().map(lossy),
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
                    last_publish_seq: s.last_publish_seq,
                    last_delivery_seq: s.queue.last_sent_seq,
                }
            })
            .collect();
        sessions.sort_by_key(|s| s.session_id);
        let queues = self
            .routes
            .iter()
            .map(|q| QueueStats {
                name: lossy(&q.name),
                conflate: q.conflate,
                subscribers: u64::from(q.subscribers),
                published: q.published,
            })
            .collect();
        StatsReport {
            server,
            sessions,
            queues,
            sessions_omitted: 0,
        }
    }
}

/// Renders the report as JSON of at most `max_len` bytes, leaving sessions out (and counting
/// them in `sessions_omitted`) when every one would not fit.
pub(super) fn render_json(broker: &Broker, max_len: usize) -> Vec<u8> {
    let mut report = broker.stats();
    loop {
        let json = serde_json::to_vec(&report).unwrap_or_default();
        if json.len() <= max_len || (report.sessions.is_empty() && report.queues.is_empty()) {
            return json;
        }
        if report.sessions.is_empty() {
            report.queues.truncate(report.queues.len() / 2);
        } else {
            let keep = report.sessions.len() / 2;
            report.sessions_omitted += (report.sessions.len() - keep) as u64;
            report.sessions.truncate(keep);
        }
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
