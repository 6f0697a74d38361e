//! The Prometheus text exposition (format 0.0.4) of a [`StatsReport`].
//!
//! Served by the event loop on the optional `metrics_listen` address (`GET /metrics`). Counter
//! names follow Prometheus conventions (`_total` for counters); label values are escaped. Every
//! server figure of the report is exported; sessions are aggregated by state (their number is
//! unbounded), queues are labelled by name.

use std::fmt::Write as _;

use crate::protocol::stats::StatsReport;

/// Server figures that are gauges (a level, not a count since start).
const GAUGES: &[&str] = &[
    "connections",
    "sessions",
    "queues",
    "stored_messages",
    "stored_bytes",
    "sessions_detached_now",
];

/// Renders `report` as Prometheus text.
pub fn render(report: &StatsReport) -> String {
    let mut out = String::with_capacity(4096);
    let server = serde_json::to_value(&report.server).unwrap_or_default();
    if let Some(fields) = server.as_object() {
        for (name, value) in fields {
            if let Some(n) = value.as_u64() {
                if GAUGES.contains(&name.as_str()) {
                    gauge(&mut out, &format!("weir_{name}"), "", n);
                } else {
                    counter(&mut out, &format!("weir_{name}_total"), "", n);
                }
            } else if let Some(map) = value.as_object() {
                // closes and losses: one series per reason.
                let metric = format!("weir_{name}_total");
                let _ = writeln!(out, "# TYPE {metric} counter");
                for (reason, n) in map {
                    let n = n.as_u64().unwrap_or(0);
                    let _ = writeln!(out, "{metric}{{reason=\"{}\"}} {n}", escape(reason));
                }
            }
        }
    }
    let by_state = |state: &str| {
        report.sessions.iter().filter(|s| s.state == state).fold(
            (0u64, 0u64, 0u64, 0u64),
            |(n, depth, bytes, max), s| {
                (
                    n + 1,
                    depth + s.queue_depth,
                    bytes + s.queue_bytes,
                    max.max(s.queue_depth),
                )
            },
        )
    };
    let _ = writeln!(out, "# TYPE weir_sessions_by_state gauge");
    let _ = writeln!(out, "# TYPE weir_session_queue_depth_sum gauge");
    let mut lines = String::new();
    for state in ["connected", "detached"] {
        let (n, depth, bytes, max) = by_state(state);
        let _ = writeln!(lines, "weir_sessions_by_state{{state=\"{state}\"}} {n}");
        let _ = writeln!(
            lines,
            "weir_session_queue_depth_sum{{state=\"{state}\"}} {depth}"
        );
        let _ = writeln!(
            lines,
            "weir_session_queue_bytes_sum{{state=\"{state}\"}} {bytes}"
        );
        let _ = writeln!(
            lines,
            "weir_session_queue_depth_max{{state=\"{state}\"}} {max}"
        );
    }
    let _ = writeln!(out, "# TYPE weir_session_queue_bytes_sum gauge");
    let _ = writeln!(out, "# TYPE weir_session_queue_depth_max gauge");
    out.push_str(&lines);
    let _ = writeln!(out, "# TYPE weir_queue_subscribers gauge");
    let _ = writeln!(out, "# TYPE weir_queue_published_total counter");
    for queue in &report.queues {
        let name = escape(&queue.name);
        let _ = writeln!(
            out,
            "weir_queue_subscribers{{queue=\"{name}\"}} {}",
            queue.subscribers
        );
        let _ = writeln!(
            out,
            "weir_queue_published_total{{queue=\"{name}\"}} {}",
            queue.published
        );
    }
    out
}

fn counter(out: &mut String, metric: &str, labels: &str, value: u64) {
    let _ = writeln!(out, "# TYPE {metric} counter\n{metric}{labels} {value}");
}

fn gauge(out: &mut String, metric: &str, labels: &str, value: u64) {
    let _ = writeln!(out, "# TYPE {metric} gauge\n{metric}{labels} {value}");
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::stats::{QueueStats, ServerStats, SessionStats};

    #[test]
    fn every_server_figure_is_exported_with_its_type_and_labels_are_escaped() {
        let report = StatsReport {
            server: ServerStats {
                connections: 3,
                messages_published: 42,
                closes: [("QUEUE_OVERFLOW".to_owned(), 2)].into_iter().collect(),
                ..ServerStats::default()
            },
            sessions: vec![
                SessionStats {
                    state: "connected".into(),
                    queue_depth: 5,
                    ..SessionStats::default()
                },
                SessionStats {
                    state: "detached".into(),
                    queue_depth: 7,
                    ..SessionStats::default()
                },
            ],
            queues: vec![QueueStats {
                name: "we\"ird\nname".into(),
                subscribers: 2,
                published: 9,
                conflate: false,
            }],
            ..StatsReport::default()
        };
        let text = render(&report);
        assert!(text.contains("# TYPE weir_connections gauge\nweir_connections 3\n"));
        assert!(text.contains("# TYPE weir_messages_published_total counter\n"));
        assert!(text.contains("weir_messages_published_total 42\n"));
        assert!(text.contains("weir_closes_total{reason=\"QUEUE_OVERFLOW\"} 2\n"));
        assert!(text.contains("weir_sessions_by_state{state=\"detached\"} 1\n"));
        assert!(text.contains("weir_session_queue_depth_sum{state=\"connected\"} 5\n"));
        assert!(text.contains("weir_queue_subscribers{queue=\"we\\\"ird\\nname\"} 2\n"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<u64>().is_ok(), "{line}");
        }
        // Every server field of the JSON report appears.
        let json = serde_json::to_value(&report.server).unwrap();
        for field in json.as_object().unwrap().keys() {
            assert!(text.contains(&format!("weir_{field}")), "{field} missing");
        }
    }
}
