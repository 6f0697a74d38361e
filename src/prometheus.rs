//! The Prometheus text exposition (format 0.0.4) of a [`StatsReport`].
//!
//! Served by the event loop on the optional `http_listen` address (`GET /metrics`). Which
//! families exist, their names, types and help texts come from [`crate::metrics::ALL`]; this
//! file only formats them. Every family gets `# HELP` and `# TYPE`; label values are escaped.
//! Sessions are aggregated by state (their number is unbounded), queues are labelled by name
//! up to the report's listing bound, the rest summed into one `queues="omitted"` series.

use std::fmt::Write as _;

use crate::metrics::{Metric, Read, ALL, SESSION_STATES};
use crate::protocol::stats::StatsReport;

/// Renders `report` as Prometheus text.
pub fn render(report: &StatsReport) -> String {
    let mut out = String::with_capacity(8192);
    for metric in ALL {
        family(&mut out, metric, report);
    }
    out
}

/// The family name `/metrics` uses: the declared one, but in seconds for a figure declared in
/// microseconds (Prometheus base units; `promtool check metrics` insists).
pub(crate) fn exported_name(metric: &Metric) -> std::borrow::Cow<'static, str> {
    match metric.name.strip_suffix("_microseconds") {
        Some(stem) if metric.unit == crate::metrics::Unit::Microseconds => {
            format!("{stem}_seconds").into()
        }
        _ => metric.name.into(),
    }
}

fn family(out: &mut String, metric: &Metric, report: &StatsReport) {
    // Prometheus wants base units: a figure kept in µs (STATS_REPLY's key says so) is exported
    // in seconds, named so.
    let is_micros = metric.unit == crate::metrics::Unit::Microseconds;
    let exported = exported_name(metric);
    let name = exported.as_ref();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {}", metric.help);
    let _ = writeln!(out, "# TYPE {name} {}", metric.kind.as_str());
    match metric.read {
        Read::Server(read) if is_micros => {
            let _ = writeln!(out, "{name} {}", read(&report.server) as f64 / 1e6);
        }
        Read::Server(read) => {
            let _ = writeln!(out, "{name} {}", read(&report.server));
        }
        Read::ServerByKey { label, read } => {
            for (key, value) in read(&report.server) {
                let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {value}", escape(key));
            }
        }
        Read::SessionsByState { fold, read } => {
            for state in SESSION_STATES {
                let in_state = report.sessions.iter().filter(|s| s.state == state);
                let value = fold.apply(in_state.map(read));
                let _ = writeln!(out, "{name}{{state=\"{state}\"}} {value}");
            }
        }
        Read::Queue(read) => {
            for queue in &report.queues {
                let _ = writeln!(
                    out,
                    "{name}{{queue=\"{}\"}} {}",
                    escape(&queue.name),
                    read(queue)
                );
            }
            if report.queues_omitted > 0 {
                // Past the listed queues, one aggregate series: the output is bounded by
                // the listing bound, not by the number of queues (issue #12).
                let _ = writeln!(
                    out,
                    "{name}{{queues=\"omitted\"}} {}",
                    read(&report.omitted_queue_totals)
                );
            }
        }
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::metrics::{server_stats, Gauges, Kind, Metrics};
    use crate::protocol::stats::{QueueStats, SessionStats};

    /// A report in which every family has at least one sample.
    fn full_report() -> StatsReport {
        let counters = Metrics {
            messages_published: 42,
            sessions_detached: 1,
            ..Metrics::default()
        };
        let gauges = Gauges {
            connections: 3,
            ..Gauges::default()
        };
        let closes: BTreeMap<String, u64> = [("QUEUE_OVERFLOW".to_owned(), 2)].into();
        let losses: BTreeMap<String, u64> = [("SESSION_EXPIRED".to_owned(), 1)].into();
        StatsReport {
            server: server_stats(&counters, &gauges, closes, losses),
            sessions: vec![
                SessionStats {
                    state: "connected".into(),
                    queue_depth: 5,
                    in_flight: 2,
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
                ..QueueStats::default()
            }],
            ..StatsReport::default()
        }
    }

    /// The family a sample line belongs to.
    fn sample_name(line: &str) -> &str {
        line.split(['{', ' ']).next().unwrap_or_default()
    }

    #[test]
    fn figures_are_exported_with_their_type_and_labels_are_escaped() {
        let text = render(&full_report());
        assert!(text.contains("# TYPE weir_connections gauge\nweir_connections 3\n"));
        assert!(text.contains("# TYPE weir_messages_published_total counter\n"));
        assert!(text.contains("weir_messages_published_total 42\n"));
        assert!(text.contains("weir_sessions_detached_total 1\n"));
        assert!(text.contains("weir_closes_total{reason=\"QUEUE_OVERFLOW\"} 2\n"));
        assert!(text.contains("weir_losses_total{reason=\"SESSION_EXPIRED\"} 1\n"));
        assert!(text.contains("weir_sessions_by_state{state=\"detached\"} 1\n"));
        assert!(text.contains("weir_session_queue_depth{state=\"connected\"} 5\n"));
        assert!(text.contains("weir_session_queue_depth_max{state=\"detached\"} 7\n"));
        assert!(text.contains("weir_session_in_flight{state=\"connected\"} 2\n"));
        assert!(text.contains("weir_queue_subscribers{queue=\"we\\\"ird\\nname\"} 2\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<u64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn every_declared_metric_appears_in_both_the_json_and_prometheus_renderings() {
        let report = full_report();
        let json = serde_json::to_value(&report).unwrap();
        let text = render(&report);
        for metric in ALL {
            let name = metric.name;
            // JSON: the key the declaration names is present where it says.
            let (object, key) = match metric.json.split_once('.') {
                Some(("server", key)) => (&json["server"], key),
                Some(("sessions[]", key)) => (&json["sessions"][0], key),
                Some(("queues[]", key)) => (&json["queues"][0], key),
                _ => panic!("{name}: bad json path {}", metric.json),
            };
            assert!(
                object.get(key).is_some(),
                "{name}: {} missing from the JSON",
                metric.json
            );
            // Prometheus: HELP, TYPE and at least one sample.
            let name = exported_name(metric);
            assert!(
                text.contains(&format!("# HELP {name} {}\n", metric.help)),
                "{name}: no HELP"
            );
            assert!(
                text.contains(&format!("# TYPE {name} {}\n", metric.kind.as_str())),
                "{name}: no TYPE"
            );
            assert!(
                text.lines()
                    .any(|l| !l.starts_with('#') && sample_name(l) == name),
                "{name}: no sample"
            );
        }
        // The other way round: every server figure of the JSON is declared...
        let declared: BTreeSet<&str> = ALL.iter().map(|m| m.json).collect();
        for key in json["server"].as_object().unwrap().keys() {
            assert!(
                declared.contains(format!("server.{key}").as_str()),
                "server.{key} is in the JSON but not in metrics::ALL"
            );
        }
        // ...and every exported sample belongs to a declared family.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                ALL.iter().any(|m| exported_name(m) == sample_name(line)),
                "{line}: undeclared family"
            );
        }
    }

    #[test]
    fn counters_and_gauges_keep_their_types_whatever_the_name() {
        let text = render(&StatsReport::default());
        for metric in ALL {
            let name = exported_name(metric);
            let line = format!("# TYPE {name} {}", metric.kind.as_str());
            assert!(text.contains(&line), "{line}");
            if metric.kind == Kind::Gauge {
                assert!(!text.contains(&format!("{name}_total")));
            }
        }
    }
}
