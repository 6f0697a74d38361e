//! The `throughput` and `fanout` scenarios: P publishers send tagged messages (a count, or for
//! a duration) as fast as the bounds allow, and every one of S subscribers should receive each
//! message once, in order per publisher. `fanout` is the same with one publisher and 100
//! subscribers by default.
//!
//! Two bounds keep the publishers honest, the same for every target:
//! - `--max-unconfirmed`: messages sent and not yet confirmed by the broker (Weir RECEIPT,
//!   Redis PUBLISH reply, MQTT PUBACK, or an answered NATS PING / MQTT PINGREQ);
//! - `--max-lag`: messages published and not yet received by the slowest subscriber. A
//!   confirmation only says the broker accepted a message, not that it was delivered; without
//!   this bound a publisher that outruns its subscribers fills their queues until the broker
//!   closes them, which measures a burst, not a sustainable rate.
//!
//! Subscribers are spread over `--client-threads` workers (about 50 connections each), every
//! publisher has its own; the rate is the distinct deliveries over all subscribers divided by
//! the time from the first publish to the last delivery.

use std::fmt::Write as _;
use std::io;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::report::Deliveries;
use crate::scenario::{resolve, run_rounds, watch, CommonArgs, Meters, Metric, Outcome};
use crate::target::{AdapterOptions, Target};
use crate::worker::{LinkPlan, PublisherSpec, Role, Run, RunSettings, SubscriberSpec};
use crate::{parse_secs, per_sec, thousands};

#[derive(Clone, Debug, Args)]
pub(crate) struct ThroughputArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Messages to send, over all publishers. Default 1,000,000 unless --duration is given.
    #[arg(short = 'n', long)]
    pub(crate) count: Option<u64>,
    /// Publish for this many seconds instead of a count.
    #[arg(short = 'd', long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) duration: Option<Duration>,
    /// Payload bytes per message (at least 8: the tag; 24 carry timestamps too).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..))]
    pub(crate) payload: u32,
    /// Publishing connections, each on its own thread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) publishers: u16,
    /// Subscribing connections; each receives every message. Default 1 (`fanout`: 100).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) subscribers: Option<u16>,
    /// Load-generator threads for the subscribers. Default: one per 50 subscribers, at most 4.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) client_threads: Option<u16>,
    /// Weir: never ACK. Deliveries then stop once the in-flight window is full and the run
    /// ends idle with the rest lost: this shows the window at work, not throughput. Ignored by
    /// targets without acks (MQTT QoS 1 must acknowledge).
    #[arg(long)]
    pub(crate) no_acks: bool,
    /// Weir: in-flight window to ask for in HELLO (0 = the server's default).
    #[arg(long, default_value_t = 0)]
    pub(crate) window: u32,
    /// Most messages a publisher may have sent and not yet had confirmed.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_unconfirmed: u64,
    /// Most messages the publishers may be ahead of the slowest subscriber. Default: 50,000
    /// or 32 MiB of payload, whichever is less (half of Weir's default max_queue_depth and
    /// max_queue_bytes).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_lag: Option<u64>,
    /// A subscriber still missing messages stops this many seconds after the publishers
    /// finished and it last received something.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_secs)]
    pub(crate) idle_timeout: Duration,
    /// Give up on a run after this many seconds.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_secs)]
    pub(crate) timeout: Duration,
}

/// Runs `throughput` (`is_fanout` false) or `fanout`; returns whether every run was clean.
///
/// # Errors
/// A connection that could not be opened or set up.
pub(crate) fn main(args: &ThroughputArgs, is_fanout: bool) -> io::Result<bool> {
    let scenario = if is_fanout { "fanout" } else { "throughput" };
    let subscribers = args
        .subscribers
        .unwrap_or(if is_fanout { FANOUT_SUBSCRIBERS } else { 1 });
    run_rounds(scenario, &args.common, "delivered_per_s", |target| {
        run_once(scenario, target, args, subscribers)
    })
}

fn run_once(
    scenario: &str,
    target: &Target,
    args: &ThroughputArgs,
    subscribers: u16,
) -> io::Result<Outcome> {
    let address = resolve(target)?;
    let topic = args.common.run_topic();
    let options = AdapterOptions {
        topic: topic.clone(),
        window: args.window,
        is_acking: !args.no_acks,
        confirm_every: (args.max_unconfirmed / 4).max(1),
    };
    let max_unconfirmed = target
        .max_unconfirmed()
        .map_or(args.max_unconfirmed, |cap| cap.min(args.max_unconfirmed));
    let count = match (args.count, args.duration) {
        (None, None) => Some(DEFAULT_COUNT),
        (count, _) => count,
    };
    let shares = count.map(|count| split(count, args.publishers));
    let mut groups: Vec<Vec<LinkPlan>> = Vec::new();
    for index in 0..usize::from(args.publishers) {
        let spec = PublisherSpec {
            index,
            count: shares.as_ref().map(|s| s[index]),
            duration: args.duration,
            rate: None,
            payload_len: args.payload as usize,
            max_unconfirmed,
            confirm_latency_after: None,
        };
        groups.push(vec![LinkPlan {
            address,
            source: None,
            adapter: target.adapter(&format!("{topic}-p{index}"), &options),
            role: Role::Publisher(spec),
            read_buf_bytes: READ_BUF_BYTES,
        }]);
    }
    let threads = usize::from(
        args.client_threads
            .unwrap_or(subscribers.div_ceil(SUBSCRIBERS_PER_THREAD).min(4)),
    );
    let first_subscriber_group = groups.len();
    groups.extend((0..threads).map(|_| Vec::new()));
    for index in 0..usize::from(subscribers) {
        let spec = SubscriberSpec {
            index,
            counts_for_lag: true,
            expects_messages: true,
            read_rate: None,
            latency_after: None,
        };
        groups[first_subscriber_group + index % threads].push(LinkPlan {
            address,
            source: None,
            adapter: target.adapter(&format!("{topic}-s{index}"), &options),
            role: Role::Subscriber(spec),
            read_buf_bytes: READ_BUF_BYTES,
        });
    }
    let settings = RunSettings {
        publishers: usize::from(args.publishers),
        subscribers: usize::from(subscribers),
        max_lag: args.max_lag.unwrap_or_else(|| {
            (DEFAULT_MAX_LAG_BYTES / u64::from(args.payload)).clamp(1, DEFAULT_MAX_LAG)
        }),
        idle_timeout: args.idle_timeout,
        timeout: args.timeout,
        is_busy: false,
    };
    let run = Run::start(settings, groups)?;
    let meters = Meters::start(target);
    watch(&run, &meters, count, args.duration, |_, _| false);
    let start = run.start;
    let report = run.join();
    let wall = start.elapsed();
    let deliveries = Deliveries::of(&report);
    let last_delivery = report
        .subscribers
        .iter()
        .filter_map(|s| s.last_message_at)
        .max();
    let last_publish = report
        .publishers
        .iter()
        .map(|p| p.last_publish_at)
        .max()
        .unwrap_or_default();
    let elapsed = last_delivery.unwrap_or(last_publish).max(last_publish);
    // The CPU counters were read at the end of the whole run (idle tail included), which
    // only adds idle time: divide by the measured part.
    let (server_cpu, bench_cpu) = meters.cpu_over(elapsed.min(wall));
    let server_rss = meters.server_rss();
    let delivered_per_s = per_sec(deliveries.delivered(), elapsed);
    let published_per_s = per_sec(deliveries.total_sent(), last_publish);
    let acks = if target.has_acks(&options) {
        "acks on"
    } else {
        "no acks"
    };
    let mut notes = deliveries.problems();
    notes.extend(limits(server_cpu, bench_cpu));
    let lost = deliveries.lost();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{scenario}  {target}  {} pub → {subscribers} sub  {} × {} B  {acks}",
        args.publishers,
        count.map_or_else(
            || format!("{:.0} s", args.duration.unwrap_or_default().as_secs_f64()),
            thousands
        ),
        args.payload,
    );
    let _ = writeln!(
        text,
        "  sent        {:>12} msgs, {} msg/s (last publish at {:.3} s)",
        thousands(deliveries.total_sent()),
        thousands(published_per_s.round() as u64),
        last_publish.as_secs_f64()
    );
    deliveries.write_table(&mut text, 8);
    let _ = writeln!(
        text,
        "  delivered   {:>12} msg/s over all subscribers ({:.3} s, first publish → last \
         delivery)",
        thousands(delivered_per_s.round() as u64),
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        text,
        "  CPU         server {}, weir-bench {} (% of one core); server RSS {}",
        percent(server_cpu),
        percent(bench_cpu),
        server_rss.map_or("–".into(), |b| format!("{:.1} MiB", mib(b)))
    );
    for note in &notes {
        let _ = writeln!(text, "  note: {note}");
    }
    let metrics = vec![
        Metric::new("delivered_per_s", "delivered msg/s", Some(delivered_per_s)),
        Metric::new("published_per_s", "published msg/s", Some(published_per_s)),
        Metric::new("server_cpu_pct", "server CPU %", server_cpu),
        Metric::new("bench_cpu_pct", "weir-bench CPU %", bench_cpu),
        Metric::new("lost", "lost deliveries", Some(lost.total() as f64)),
        Metric::new("server_rss_mib", "server RSS MiB", server_rss.map(mib)).with_decimals(1),
    ];
    let json = json!({
        "scenario": scenario,
        "target": target.to_string(),
        "topic": topic,
        "publishers": args.publishers,
        "subscribers": subscribers,
        "payload_bytes": args.payload,
        "acks": target.has_acks(&options),
        "count": count,
        "duration_s": args.duration.map(|d| d.as_secs_f64()),
        "deliveries": deliveries.to_json(),
        "elapsed_s": elapsed.as_secs_f64(),
        "last_publish_s": last_publish.as_secs_f64(),
        "delivered_msgs_per_s": delivered_per_s.round(),
        "published_msgs_per_s": published_per_s.round(),
        "server_cpu_pct": server_cpu,
        "bench_cpu_pct": bench_cpu,
        "server_rss_bytes": server_rss,
        "notes": notes,
        "clean": deliveries.is_clean(),
    });
    Ok(Outcome {
        target: target.to_string(),
        metrics,
        notes,
        is_clean: deliveries.is_clean(),
        text,
        json,
    })
}

/// What the CPU figures say limited the run.
pub(crate) fn limits(server_cpu: Option<f64>, bench_cpu: Option<f64>) -> Vec<String> {
    let mut notes = Vec::new();
    if server_cpu.is_some_and(|cpu| cpu >= SATURATED_PERCENT) {
        notes.push("server CPU-bound (its core saturated)".to_owned());
    }
    if bench_cpu.is_some_and(|cpu| cpu >= SATURATED_PERCENT) {
        notes.push("weir-bench near one full core: the load generator may limit".to_owned());
    }
    notes
}

pub(crate) fn percent(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:.0}%"))
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `count` split over `parts` as evenly as possible.
fn split(count: u64, parts: u16) -> Vec<u64> {
    let parts = u64::from(parts);
    (0..parts)
        .map(|i| count / parts + u64::from(i < count % parts))
        .collect()
}

const DEFAULT_COUNT: u64 = 1_000_000;
const FANOUT_SUBSCRIBERS: u16 = 100;
/// Subscriber connections per load-generator thread by default.
const SUBSCRIBERS_PER_THREAD: u16 = 50;
const DEFAULT_MAX_LAG: u64 = 50_000;
const DEFAULT_MAX_LAG_BYTES: u64 = 32 * 1024 * 1024;
const READ_BUF_BYTES: usize = 256 * 1024;
/// A process at or above this share of one core is taken to be CPU-bound (/proc counts in
/// 10 ms ticks, so a saturated core reads a little under or over 100).
const SATURATED_PERCENT: f64 = 90.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_split_evenly_over_publishers() {
        assert_eq!(split(10, 3), [4, 3, 3]);
        assert_eq!(split(2, 4), [1, 1, 0, 0]);
    }

    #[test]
    fn a_saturated_core_is_named_as_the_limit() {
        assert_eq!(
            limits(Some(99.0), Some(40.0)),
            ["server CPU-bound (its core saturated)"]
        );
        assert!(limits(Some(50.0), None).is_empty());
        assert_eq!(limits(None, Some(95.0)).len(), 1);
    }
}
