//! The STATS_REPLY body: a UTF-8 JSON document with this schema (protocol.md §STATS_REPLY).
//!
//! The server serializes these types; clients and tools deserialize them. Names on the wire
//! are bytes; here they are shown as UTF-8 with invalid bytes replaced by U+FFFD.
//!
//! The figures of [`ServerStats`] are declared, with their kind, unit and help text, in
//! `src/metrics.rs` (which fills this struct); a figure added here without a declaration there
//! does not compile.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole introspection report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    /// Server-wide figures.
    pub server: ServerStats,
    /// Every session, ordered by session id.
    pub sessions: Vec<SessionStats>,
    /// Every queue, in creation order.
    pub queues: Vec<QueueStats>,
    /// Sessions left out of `sessions` so the reply fits in one frame, or past the number a
    /// report lists (0 normally).
    #[serde(default)]
    pub sessions_omitted: u64,
    /// Queues left out of `queues` past the number a report lists (0 normally).
    #[serde(default)]
    pub queues_omitted: u64,
    /// Sums over the queues left out (`name` empty): exported as one aggregate series. Not
    /// in the JSON.
    #[serde(skip)]
    pub omitted_queue_totals: QueueStats,
    /// Recently ended sessions, most recent first (at most 100).
    #[serde(default)]
    pub closed_sessions: Vec<ClosedSessionStats>,
    /// Competing-consumer groups (protocol.md §Groups).
    #[serde(default)]
    pub groups: Vec<GroupStats>,
}

/// One competing-consumer group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStats {
    /// Queue name.
    pub queue: String,
    /// Event filter; `None` for every event.
    pub event: Option<String>,
    /// Group name.
    pub name: String,
    /// Members now.
    pub members: u64,
    /// Messages waiting in the group, not yet given to a member.
    pub unassigned: u64,
    /// Messages members hold now (queued for them or sent, not acked).
    pub in_flight: u64,
    /// Messages given to members (redeliveries included).
    pub assigned: u64,
    /// Deliveries members acked.
    pub acked: u64,
    /// Messages given again after an ack deadline or a member's session end.
    pub redelivered: u64,
    /// Messages that reached max_deliveries.
    pub dead_lettered: u64,
}

/// A session that ended recently: what a client resuming it will be told.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedSessionStats {
    /// Session id; in JSON a string of 16 lowercase hex digits (ids exceed 2^53).
    #[serde(with = "hex_id")]
    pub session_id: u64,
    /// Client name from its last HELLO.
    pub client_name: String,
    /// Why it ended: an error code name (`QUEUE_OVERFLOW`, `SESSION_EXPIRED`, ...).
    pub reason: String,
    /// Milliseconds since it ended.
    pub closed_ms_ago: u64,
    /// Messages it still held when it ended.
    pub missed: u64,
}

/// Server-wide figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStats {
    /// Open TCP connections (before and after HELLO).
    pub connections: u64,
    /// Live sessions.
    pub sessions: u64,
    /// Queues known.
    pub queues: u64,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections refused at max_connections.
    pub connections_refused: u64,
    /// Messages accepted (duplicates excluded).
    pub messages_published: u64,
    /// Duplicate publishes receipted but not routed.
    pub messages_duplicate: u64,
    /// DELIVER frames sent.
    pub messages_delivered: u64,
    /// Deliveries acked.
    pub messages_acked: u64,
    /// Queued messages replaced by conflation.
    pub messages_conflated: u64,
    /// Messages dropped by session overflow.
    pub messages_dropped_overflow: u64,
    /// Messages still held by sessions that ended for another reason.
    pub messages_dropped_session_closed: u64,
    /// Messages currently stored (each once, however many sessions hold it).
    pub stored_messages: u64,
    /// Payload bytes currently stored.
    pub stored_bytes: u64,
    /// Sessions currently detached (waiting for a resume).
    #[serde(default)]
    pub sessions_detached_now: u64,
    /// Sessions detached since start when their connection ended (kept for a resume).
    #[serde(default)]
    pub sessions_detached: u64,
    /// DELIVER frames sent again after resumes.
    #[serde(default)]
    pub messages_redelivered: u64,
    /// Group messages given to another member after an ack deadline or a session end.
    #[serde(default)]
    pub messages_group_redelivered: u64,
    /// Group messages that reached max_deliveries.
    #[serde(default)]
    pub messages_dead_lettered: u64,
    /// Group messages dropped at max_deliveries (no dead-letter queue).
    #[serde(default)]
    pub messages_dropped_max_deliveries: u64,
    /// Queued messages whose time to live ran out before they were sent.
    #[serde(default)]
    pub messages_expired: u64,
    /// Sessions resumed.
    #[serde(default)]
    pub sessions_resumed: u64,
    /// Resume attempts answered with LOST.
    #[serde(default)]
    pub sessions_lost: u64,
    /// Resume attempts answered with LOST, by reason name.
    #[serde(default)]
    pub losses: BTreeMap<String, u64>,
    /// Resumes that took a session over from a live connection.
    #[serde(default)]
    pub sessions_taken_over: u64,
    /// Detached sessions that expired.
    #[serde(default)]
    pub sessions_expired: u64,
    /// Connections closed for HEARTBEAT_TIMEOUT.
    #[serde(default)]
    pub heartbeat_timeouts: u64,
    /// PROXY protocol headers that named a client.
    #[serde(default)]
    pub proxy_headers: u64,
    /// PROXY protocol LOCAL headers (proxy health checks).
    #[serde(default)]
    pub proxy_local_headers: u64,
    /// Connections refused for a missing, bad or untrusted PROXY header.
    #[serde(default)]
    pub proxy_rejected: u64,
    /// Times a connection's reading was paused by its publish rate limit.
    #[serde(default)]
    pub throttle_episodes: u64,
    /// HELLOs refused with AUTH_FAILED.
    #[serde(default)]
    pub auth_failures: u64,
    /// Password HELLOs answered SERVER_BUSY because they could not be checked in time.
    #[serde(default)]
    pub auth_checks_timed_out: u64,
    /// Detached sessions evicted for a newer session of the same identity or address.
    #[serde(default)]
    pub sessions_evicted: u64,
    /// Publisher reads paused because memory was near `max_memory_bytes`.
    #[serde(default)]
    pub memory_pauses: u64,
    /// Sessions closed with MEMORY_LIMIT.
    #[serde(default)]
    pub memory_limit_closes: u64,
    /// Connections closed because a frame stayed incomplete for the heartbeat timeout.
    #[serde(default)]
    pub partial_frame_timeouts: u64,
    /// Memory charged to `max_memory_bytes` now.
    #[serde(default)]
    pub memory_bytes: u64,
    /// The memory budget in force.
    #[serde(default)]
    pub max_memory_bytes: u64,
    /// HELLOs held back by the failed-authentication slowdown.
    #[serde(default)]
    pub auth_throttled: u64,
    /// PUBLISH, SUBSCRIBE and STATS requests refused with NOT_AUTHORIZED.
    #[serde(default)]
    pub not_authorized: u64,
    /// Messages of durable queues handed to the journal thread.
    #[serde(default)]
    pub messages_journaled: u64,
    /// Sessions ended with STORAGE_FAILED.
    #[serde(default)]
    pub messages_refused_storage: u64,
    /// Retained messages queued again by a SUBSCRIBE with START.
    #[serde(default)]
    pub messages_replayed: u64,
    /// Journal batches that could not be written or synced.
    #[serde(default)]
    pub journal_failed_batches: u64,
    /// fdatasync calls of the journal thread.
    #[serde(default)]
    pub journal_fsyncs: u64,
    /// Messages of `fsync = "always"` queues made durable by those calls.
    #[serde(default)]
    pub journal_synced_messages: u64,
    /// Bytes written to segment files.
    #[serde(default)]
    pub journal_written_bytes: u64,
    /// Median fdatasync time of the journal since start, µs (0 before the first).
    #[serde(default)]
    pub journal_fsync_p50_microseconds: u64,
    /// 99th percentile fdatasync time of the journal since start, µs.
    #[serde(default)]
    pub journal_fsync_p99_microseconds: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Connections closed, by reason name (only reasons seen).
    pub closes: BTreeMap<String, u64>,
}

/// One session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStats {
    /// Session id; in JSON a string of 16 lowercase hex digits (ids exceed 2^53).
    #[serde(with = "hex_id")]
    pub session_id: u64,
    /// Client name from HELLO.
    pub client_name: String,
    /// Peer address of the connection.
    pub peer: String,
    /// Who authenticated it: `anonymous`, `user:<name>` or `subject:<signed-token subject>`.
    #[serde(default)]
    pub identity: String,
    /// `connected` or `detached`.
    pub state: String,
    /// While detached: milliseconds since the connection ended.
    #[serde(default)]
    pub detached_ms: Option<u64>,
    /// While detached: milliseconds until the session expires.
    #[serde(default)]
    pub expires_in_ms: Option<u64>,
    /// Successful resumes of this session.
    #[serde(default)]
    pub resumes: u64,
    /// Its connection's publish rate limit in force (messages/s, 0 = unlimited).
    #[serde(default)]
    pub max_publish_rate: u64,
    /// Its connection's publish byte-rate limit in force (bytes/s, 0 = unlimited).
    #[serde(default)]
    pub max_publish_bytes_rate: u64,
    /// Reading its connection is paused right now by the rate limit.
    #[serde(default)]
    pub is_throttled: bool,
    /// Total time its connection's reading was paused by the rate limit, in ms.
    #[serde(default)]
    pub throttled_ms: u64,
    /// Subscriptions; `event: null` means ALL_EVENTS (at most 100 listed).
    pub subscriptions: Vec<SubscriptionStats>,
    /// Pattern subscriptions (protocol.md §Patterns).
    #[serde(default)]
    pub patterns: Vec<PatternStats>,
    /// Subscriptions left out of `subscriptions` past the 100 listed.
    #[serde(default)]
    pub subscriptions_omitted: u64,
    /// Messages held: pending + in flight.
    pub queue_depth: u64,
    /// Payload bytes held.
    pub queue_bytes: u64,
    /// Sent, awaiting ack.
    pub in_flight: u64,
    /// Waiting to be sent.
    pub pending: u64,
    /// Messages this session published (accepted).
    pub published: u64,
    /// DELIVER frames sent to it.
    pub delivered: u64,
    /// Deliveries it acked.
    pub acked: u64,
    /// Its queued messages replaced by conflation.
    pub conflated: u64,
    /// Deliveries sent to it again after resumes.
    #[serde(default)]
    pub redelivered: u64,
    /// Its messages dropped without closing it, by reason (the DROPPED totals).
    #[serde(default)]
    pub dropped: DroppedStats,
    /// Highest publish seq accepted from it.
    pub last_publish_seq: u64,
    /// Highest delivery seq sent to it.
    pub last_delivery_seq: u64,
}

/// One subscription.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionStats {
    /// Queue name.
    pub queue: String,
    /// Event name, or `None` (JSON null) for ALL_EVENTS.
    pub event: Option<String>,
}

/// A session's drops by reason (protocol.md §DROPPED).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedStats {
    /// Replaced by conflation.
    #[serde(default)]
    pub conflated: u64,
    /// Time to live ran out before they were sent.
    #[serde(default)]
    pub expired: u64,
    /// Group messages it held last that reached `max_deliveries`.
    #[serde(default)]
    pub dead_lettered: u64,
}

/// One pattern subscription.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatternStats {
    /// The pattern, as subscribed.
    pub pattern: String,
    /// Event name, or `None` (JSON null) for ALL_EVENTS.
    pub event: Option<String>,
    /// Queues it matches now (those the session may subscribe to).
    pub queues: u64,
}

/// One queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Queue name.
    pub name: String,
    /// Configured to conflate every message.
    pub conflate: bool,
    /// Sessions with at least one subscription on it.
    pub subscribers: u64,
    /// Messages accepted for it.
    pub published: u64,
    /// DELIVERs sent of its messages (first deliveries; a fan-out to n sessions counts n).
    #[serde(default)]
    pub delivered: u64,
    /// Durable (`durable = true` with a `data_dir`): its messages are kept in segment files.
    #[serde(default)]
    pub durable: bool,
    /// Durable queues: messages retained now.
    #[serde(default)]
    pub retained: u64,
    /// Durable queues: position of the oldest retained message (= `next_position` when none).
    #[serde(default)]
    pub first_position: u64,
    /// Durable queues: position the next message gets.
    #[serde(default)]
    pub next_position: u64,
}

/// Session ids in JSON: a string of 16 lowercase hex digits, the one printed form of an id
/// everywhere (logs, weir-cli). A string because ids exceed 2^53, which JSON readers that use
/// doubles (JavaScript, jq) round. Reading also accepts a plain integer (older servers).
pub mod hex_id {
    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;

    /// `id` as 16 lowercase hex digits.
    pub fn format(id: u64) -> String {
        format!("{id:016x}")
    }

    /// Serializes `id` as its 16-digit hex string.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(id: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*id))
    }

    /// Reads a hex string (with or without `0x`) or an integer.
    ///
    /// # Errors
    /// A value that is neither.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_any(IdVisitor)
    }

    struct IdVisitor;

    impl Visitor<'_> for IdVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a session id: a string of hex digits or an integer")
        }

        fn visit_u64<E: de::Error>(self, id: u64) -> Result<u64, E> {
            Ok(id)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<u64, E> {
            let digits = text.strip_prefix("0x").unwrap_or(text);
            u64::from_str_radix(digits, 16)
                .map_err(|_| E::invalid_value(de::Unexpected::Str(text), &self))
        }
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used, clippy::indexing_slicing)]
    mod tests {
        use crate::protocol::stats::SessionStats;

        #[test]
        fn session_ids_are_16_hex_digit_strings_in_json() {
            let session = SessionStats {
                session_id: 0x5a3c_91e2_0000_0007,
                ..SessionStats::default()
            };
            let json = serde_json::to_value(&session).unwrap();
            assert_eq!(json["session_id"], "5a3c91e200000007");
            let back: SessionStats = serde_json::from_value(json).unwrap();
            assert_eq!(back, session);
            let mut old = serde_json::to_value(&session).unwrap();
            old["session_id"] = serde_json::json!(7);
            assert_eq!(
                serde_json::from_value::<SessionStats>(old)
                    .unwrap()
                    .session_id,
                7
            );
        }
    }
}
