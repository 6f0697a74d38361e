//! Every counter and gauge of the server, declared once: its name, kind, unit, help text and
//! how it is read from a
//! [`StatsReport`](crate::protocol::stats::StatsReport).
//!
//! The declaration below ([`ALL`]) is the only list of metrics. From it come:
//! - [`Metrics`], the counters the broker increments (plain `u64`s, no atomics: one thread
//!   updates them) and [`Gauges`], the levels the broker computes when a report is built;
//! - [`server_stats`], which fills the `server` object of STATS_REPLY (protocol.md
//!   §STATS_REPLY) with an exhaustive struct literal, so a figure declared here and missing
//!   from [`ServerStats`] (or the reverse) does not compile;
//! - the Prometheus exposition (`src/prometheus.rs`), which writes `# HELP` and `# TYPE` for
//!   each entry and reads its samples through [`Read`];
//! - `weir-cli stats`, which reads the same JSON through `StatsReport`.
//!
//! Naming rules, checked by the tests below: names are `weir_` and lowercase words; counters
//! end in `_total`; a unit is the last word before `_total` (or the last word of a gauge);
//! gauges never end in `_total`, `_sum`, `_count` or `_bucket`. The words are those of the
//! config keys and protocol.md (`detached`, `in_flight`, `queue_depth`).
//!
//! This module does no formatting for any exporter and touches no broker state.

use std::collections::BTreeMap;

use crate::protocol::stats::{QueueStats, ServerStats, SessionStats};

/// One metric family.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// Prometheus family name, with its unit and, for a counter, `_total`.
    pub name: &'static str,
    /// Counter (only goes up, from 0 at start) or gauge (a level).
    pub kind: Kind,
    /// The unit, also the last word of the name (before `_total`).
    pub unit: Unit,
    /// One line for people: Prometheus `# HELP` and the rustdoc of the field.
    pub help: &'static str,
    /// Where the figure is in the STATS_REPLY JSON: `server.KEY`, `sessions[].KEY` or
    /// `queues[].KEY` (protocol.md §STATS_REPLY).
    pub json: &'static str,
    /// How its samples are read from a report.
    pub read: Read,
}

/// Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Counts since start; never goes down.
    Counter,
    /// A level that goes up and down.
    Gauge,
}

impl Kind {
    /// The `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// The unit of a metric's value (Prometheus base units).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes.
    Bytes,
    /// A count of things (messages, sessions, connections): no unit word.
    Count,
    /// Seconds.
    Seconds,
    /// Microseconds (figures that are whole µs and far below a second, such as an fsync).
    Microseconds,
}

impl Unit {
    /// The word the name carries for this unit, if any.
    pub fn suffix(self) -> Option<&'static str> {
        match self {
            Unit::Bytes => Some("_bytes"),
            Unit::Count => None,
            Unit::Seconds => Some("_seconds"),
            Unit::Microseconds => Some("_microseconds"),
        }
    }
}

/// How the samples of a family are read from a `StatsReport`.
#[derive(Clone, Copy, Debug)]
pub enum Read {
    /// One unlabelled sample: a figure of `server`.
    Server(fn(&ServerStats) -> u64),
    /// One sample per key of a map of `server`, labelled `label="KEY"` (only keys seen).
    ServerByKey {
        /// The label name.
        label: &'static str,
        /// The map.
        read: fn(&ServerStats) -> &BTreeMap<String, u64>,
    },
    /// One sample per session state in [`SESSION_STATES`], labelled `state="STATE"`: `read`
    /// of the sessions in that state, combined by `fold`.
    SessionsByState {
        /// How the figures of the sessions in one state are combined.
        fold: Fold,
        /// The figure of one session.
        read: fn(&SessionStats) -> u64,
    },
    /// One sample per queue, labelled `queue="NAME"`.
    Queue(fn(&QueueStats) -> u64),
}

/// How per-session figures are combined into one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// Their sum.
    Sum,
    /// The largest (0 when there are none).
    Max,
}

impl Fold {
    /// Combines `values`.
    pub fn apply(self, values: impl Iterator<Item = u64>) -> u64 {
        match self {
            Fold::Sum => values.sum(),
            Fold::Max => values.max().unwrap_or(0),
        }
    }
}

/// The values of `sessions[].state` (protocol.md §STATS_REPLY).
pub const SESSION_STATES: [&str; 2] = ["connected", "detached"];

/// Declares the server figures once: `key = "prometheus_name", Unit, "help";`. The key is the
/// field of [`Metrics`] or [`Gauges`] and of [`ServerStats`], and the JSON key.
macro_rules! declare_metrics {
    (
        counters { $( $c:ident = $c_name:literal, $c_unit:ident, $c_help:literal; )* }
        gauges { $( $g:ident = $g_name:literal, $g_unit:ident, $g_help:literal; )* }
        families { $( $family:expr, )* }
    ) => {
        /// Server-wide counters, incremented by the broker. Copied out for a report.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Metrics {
            $( #[doc = $c_help] pub $c: u64, )*
        }

        /// Server-wide levels, computed by the broker when it builds a report.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Gauges {
            $( #[doc = $g_help] pub $g: u64, )*
        }

        /// Every metric family, in exposition order.
        pub static ALL: &[Metric] = &[
            $( Metric {
                name: $c_name,
                kind: Kind::Counter,
                unit: Unit::$c_unit,
                help: $c_help,
                json: concat!("server.", stringify!($c)),
                read: Read::Server(|server| server.$c),
            }, )*
            $( Metric {
                name: $g_name,
                kind: Kind::Gauge,
                unit: Unit::$g_unit,
                help: $g_help,
                json: concat!("server.", stringify!($g)),
                read: Read::Server(|server| server.$g),
            }, )*
            $( $family, )*
        ];

        /// The `server` object of STATS_REPLY from the counters, the gauges and the two
        /// by-reason maps.
        pub fn server_stats(
            counters: &Metrics,
            gauges: &Gauges,
            closes: BTreeMap<String, u64>,
            losses: BTreeMap<String, u64>,
        ) -> ServerStats {
            ServerStats {
                $( $c: counters.$c, )*
                $( $g: gauges.$g, )*
                closes,
                losses,
            }
        }
    };
}

declare_metrics! {
    counters {
        connections_accepted = "weir_connections_accepted_total", Count,
            "Connections accepted.";
        connections_refused = "weir_connections_refused_total", Count,
            "Connections refused at max_connections.";
        messages_published = "weir_messages_published_total", Count,
            "Messages accepted from publishers (duplicates excluded).";
        messages_duplicate = "weir_messages_duplicate_total", Count,
            "Duplicate publishes (seq already accepted): receipted, not routed.";
        messages_delivered = "weir_messages_delivered_total", Count,
            "DELIVER frames sent the first time (redeliveries are counted apart).";
        messages_acked = "weir_messages_acked_total", Count,
            "Deliveries acknowledged.";
        messages_conflated = "weir_messages_conflated_total", Count,
            "Queued messages replaced by a newer one with the same conflation identity.";
        messages_dropped_overflow = "weir_messages_dropped_overflow_total", Count,
            "Messages dropped because their session overflowed (the one that did not fit and \
             what the closed session held).";
        messages_dropped_session_closed = "weir_messages_dropped_session_closed_total", Count,
            "Messages a session still held when it ended for a reason other than overflow.";
        messages_redelivered = "weir_messages_redelivered_total", Count,
            "DELIVER frames sent again, with REDELIVERED, after a resume.";
        messages_group_redelivered = "weir_messages_group_redelivered_total", Count,
            "Group messages given to another member after an ack deadline or a session end.";
        messages_dead_lettered = "weir_messages_dead_lettered_total", Count,
            "Group messages that reached max_deliveries (moved to the dead-letter queue, or \
             dropped when there is none).";
        messages_dropped_max_deliveries = "weir_messages_dropped_max_deliveries_total", Count,
            "Group messages dropped at max_deliveries: no dead_letter_queue, or it could not \
             be created.";
        messages_expired = "weir_messages_expired_total", Count,
            "Queued messages whose time to live ran out before they were sent (each session \
             queue or group backlog that held one counts once).";
        sessions_detached = "weir_sessions_detached_total", Count,
            "Sessions detached when their connection ended (kept for a resume).";
        sessions_resumed = "weir_sessions_resumed_total", Count,
            "Resumes answered RESUMED.";
        sessions_lost = "weir_sessions_lost_total", Count,
            "Resumes answered LOST.";
        sessions_taken_over = "weir_sessions_taken_over_total", Count,
            "Resumes that took a session over from a connection still attached to it.";
        sessions_expired = "weir_sessions_expired_total", Count,
            "Detached sessions closed at the end of their reconnect keep-alive.";
        heartbeat_timeouts = "weir_heartbeat_timeouts_total", Count,
            "Connections closed for HEARTBEAT_TIMEOUT (silent peer or stalled reader).";
        proxy_headers = "weir_proxy_headers_total", Count,
            "PROXY protocol headers that named a client.";
        proxy_local_headers = "weir_proxy_local_headers_total", Count,
            "PROXY protocol LOCAL headers (proxy health checks).";
        proxy_rejected = "weir_proxy_rejected_total", Count,
            "Connections refused for a missing, bad or untrusted PROXY header.";
        throttle_episodes = "weir_throttle_episodes_total", Count,
            "Times a connection's reading was paused by its publish rate limit.";
        auth_failures = "weir_auth_failures_total", Count,
            "HELLOs refused with AUTH_FAILED.";
        auth_throttled = "weir_auth_throttled_total", Count,
            "HELLOs held back by the failed-authentication slowdown.";
        not_authorized = "weir_not_authorized_total", Count,
            "PUBLISH, SUBSCRIBE and STATS requests refused with NOT_AUTHORIZED.";
        messages_journaled = "weir_messages_journaled_total", Count,
            "Messages of durable queues handed to the journal thread.";
        messages_refused_storage = "weir_messages_refused_storage_total", Count,
            "Sessions ended with STORAGE_FAILED: their durable publishes could not be written.";
        messages_replayed = "weir_messages_replayed_total", Count,
            "Retained messages of durable queues queued again by a SUBSCRIBE with START.";
        journal_failed_batches = "weir_journal_failed_batches_total", Count,
            "Journal batches (one per loop turn) that could not be written or synced.";
        journal_fsyncs = "weir_journal_fsyncs_total", Count,
            "fdatasync calls of the journal thread (group commit: one per file per group).";
        journal_synced_messages = "weir_journal_synced_messages_total", Count,
            "Messages of fsync = always queues made durable; divided by journal_fsyncs, the \
             messages per fsync.";
        journal_written_bytes = "weir_journal_written_bytes_total", Bytes,
            "Bytes the journal thread wrote to segment files.";
        auth_checks_timed_out = "weir_auth_checks_timed_out_total", Count,
            "Password HELLOs answered SERVER_BUSY: not checked by the handshake deadline \
             (the password check budget was spent).";
        sessions_evicted = "weir_sessions_evicted_total", Count,
            "Detached sessions ended with SESSION_EVICTED to make room for a newer session of \
             the same identity or address.";
        memory_pauses = "weir_memory_pauses_total", Count,
            "Times a publisher's reading was paused because memory was near max_memory_bytes.";
        memory_limit_closes = "weir_memory_limit_closes_total", Count,
            "Sessions closed with MEMORY_LIMIT (largest first) past max_memory_bytes.";
        partial_frame_timeouts = "weir_partial_frame_timeouts_total", Count,
            "Connections closed because a frame stayed incomplete for heartbeat_timeout.";
        bytes_in = "weir_read_bytes_total", Bytes,
            "Bytes read from client sockets.";
        bytes_out = "weir_written_bytes_total", Bytes,
            "Bytes written to client sockets.";
    }
    gauges {
        connections = "weir_connections", Count,
            "Open client connections, before and after HELLO.";
        sessions = "weir_sessions", Count,
            "Live sessions, connected and detached.";
        queues = "weir_queues", Count,
            "Queues known.";
        stored_messages = "weir_stored_messages", Count,
            "Messages stored now (each once, however many sessions hold it).";
        stored_bytes = "weir_stored_bytes", Bytes,
            "Payload bytes stored now.";
        sessions_detached_now = "weir_sessions_detached_now", Count,
            "Sessions detached now, waiting for a resume.";
        journal_fsync_p50_microseconds = "weir_journal_fsync_p50_microseconds", Microseconds,
            "Median time of the journal thread's fdatasync calls since start (the top of its \
             histogram bucket, at most 12.5% above; 0 before the first).";
        journal_fsync_p99_microseconds = "weir_journal_fsync_p99_microseconds", Microseconds,
            "99th percentile time of the journal thread's fdatasync calls since start, as \
             the median.";
        memory_bytes = "weir_memory_bytes", Bytes,
            "Memory charged to max_memory_bytes now: stored payloads as allocated, queue nodes, \
             sessions, connection input and control output.";
        max_memory_bytes = "weir_max_memory_bytes", Bytes,
            "The memory budget in force (max_memory_bytes).";
    }
    families {
        Metric {
            name: "weir_closes_total",
            kind: Kind::Counter,
            unit: Unit::Count,
            help: "Connections closed, by reason: an error code name, PEER_CLOSED, \
                   TRUNCATED_FRAME or IO_ERROR.",
            json: "server.closes",
            read: Read::ServerByKey { label: "reason", read: |server| &server.closes },
        },
        Metric {
            name: "weir_losses_total",
            kind: Kind::Counter,
            unit: Unit::Count,
            help: "Resumes answered LOST, by lost_reason name.",
            json: "server.losses",
            read: Read::ServerByKey { label: "reason", read: |server| &server.losses },
        },
        Metric {
            name: "weir_sessions_by_state",
            kind: Kind::Gauge,
            unit: Unit::Count,
            help: "Live sessions, by state.",
            json: "sessions[].state",
            read: Read::SessionsByState { fold: Fold::Sum, read: |_| 1 },
        },
        Metric {
            name: "weir_session_queue_depth",
            kind: Kind::Gauge,
            unit: Unit::Count,
            help: "Messages held by the sessions in this state (pending + in flight), summed.",
            json: "sessions[].queue_depth",
            read: Read::SessionsByState { fold: Fold::Sum, read: |s| s.queue_depth },
        },
        Metric {
            name: "weir_session_queue_depth_max",
            kind: Kind::Gauge,
            unit: Unit::Count,
            help: "The largest queue_depth of one session in this state.",
            json: "sessions[].queue_depth",
            read: Read::SessionsByState { fold: Fold::Max, read: |s| s.queue_depth },
        },
        Metric {
            name: "weir_session_queue_bytes",
            kind: Kind::Gauge,
            unit: Unit::Bytes,
            help: "Payload bytes held by the sessions in this state, summed.",
            json: "sessions[].queue_bytes",
            read: Read::SessionsByState { fold: Fold::Sum, read: |s| s.queue_bytes },
        },
        Metric {
            name: "weir_session_in_flight",
            kind: Kind::Gauge,
            unit: Unit::Count,
            help: "Deliveries sent and awaiting ACK by the sessions in this state, summed.",
            json: "sessions[].in_flight",
            read: Read::SessionsByState { fold: Fold::Sum, read: |s| s.in_flight },
        },
        Metric {
            name: "weir_queue_subscribers",
            kind: Kind::Gauge,
            unit: Unit::Count,
            help: "Sessions with at least one subscription on the queue.",
            json: "queues[].subscribers",
            read: Read::Queue(|q| q.subscribers),
        },
        Metric {
            name: "weir_queue_published_total",
            kind: Kind::Counter,
            unit: Unit::Count,
            help: "Messages accepted for the queue.",
            json: "queues[].published",
            read: Read::Queue(|q| q.published),
        },
    }
}

/// The metric family named `name`, if declared.
pub fn find(name: &str) -> Option<&'static Metric> {
    ALL.iter().find(|metric| metric.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::protocol::stats::StatsReport;

    #[test]
    fn every_name_follows_the_prometheus_naming_rules() {
        let mut names = BTreeSet::new();
        for metric in ALL {
            let name = metric.name;
            assert!(names.insert(name), "{name} declared twice");
            assert!(name.starts_with("weir_"), "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}: lowercase words (and digits, as in p50) only"
            );
            let stem = match metric.kind {
                Kind::Counter => name
                    .strip_suffix("_total")
                    .unwrap_or_else(|| panic!("counter {name} must end in _total")),
                Kind::Gauge => {
                    for suffix in ["_total", "_sum", "_count", "_bucket"] {
                        assert!(!name.ends_with(suffix), "gauge {name} ends in {suffix}");
                    }
                    name
                }
            };
            let stem = stem.strip_suffix("_max").unwrap_or(stem);
            match metric.unit.suffix() {
                Some(unit) => assert!(stem.ends_with(unit), "{name}: unit {unit} last"),
                None => {
                    for unit in ["_bytes", "_seconds", "_ms", "_milliseconds"] {
                        assert!(!stem.ends_with(unit), "{name} has a unit but no Unit");
                    }
                }
            }
            for word in ["disconnected", "inflight"] {
                assert!(!name.contains(word), "{name}: say detached / in_flight");
            }
        }
    }

    #[test]
    fn every_help_text_is_one_escaped_line() {
        for metric in ALL {
            let help = metric.help;
            assert!(!help.is_empty(), "{} has no help", metric.name);
            assert!(!help.contains(['\n', '\\']), "{}: {help:?}", metric.name);
            assert!(!help.contains("  "), "{}: {help:?}", metric.name);
        }
    }

    #[test]
    fn sessions_detached_is_declared_as_a_counter() {
        let metric = find("weir_sessions_detached_total").expect("declared");
        assert_eq!(metric.kind, Kind::Counter);
        let counters = Metrics {
            sessions_detached: 3,
            ..Metrics::default()
        };
        let report = StatsReport {
            server: server_stats(
                &counters,
                &Gauges::default(),
                BTreeMap::new(),
                BTreeMap::new(),
            ),
            ..StatsReport::default()
        };
        let Read::Server(read) = metric.read else {
            panic!("unlabelled");
        };
        assert_eq!(read(&report.server), 3);
    }
}
