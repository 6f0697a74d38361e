//! The `latency` scenario: one publisher on a fixed schedule (`--rate` messages per second,
//! open loop: message i is due at start + i / rate whatever happened before), subscribers
//! timing each delivery against the time it was due. That is the coordinated-omission
//! correction (see [`crate::histogram`]); the time from the actual send is reported too.
//! The publisher times each message the same two ways up to the broker's confirmation of it
//! (Weir: the cumulative RECEIPT covering its seq, which for a durable queue comes after the
//! covering fdatasync), so publish-to-receipt is measured in the same run.
//!
//! Publisher and subscribers share one worker that never sleeps (busy polling), so a
//! delivery is seen within one loop turn and the schedule is kept to within a few µs: the
//! load generator needs its own core for this (the bench scripts pin it).

use std::fmt::Write as _;
use std::io;
use std::time::Duration;

use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;

use crate::histogram::{new_histogram, LatencySummary};
use crate::report::Deliveries;
use crate::scenario::{resolve, run_rounds, watch, CommonArgs, Meters, Metric, Outcome};
use crate::target::{AdapterOptions, Target};
use crate::throughput::{limits, percent};
use crate::worker::{LinkPlan, PublisherSpec, Role, Run, RunSettings, SubscriberSpec};
use crate::{parse_secs, per_sec, thousands};

#[derive(Clone, Debug, Args)]
pub(crate) struct LatencyArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Messages per second, on a fixed schedule.
    #[arg(long, default_value_t = 50_000.0, value_parser = parse_rate)]
    rate: f64,
    /// Seconds of publishing, warm-up included.
    #[arg(short = 'd', long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    duration: Duration,
    /// Seconds at the start whose messages are delivered and counted but not timed.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs)]
    warmup: Duration,
    /// Payload bytes per message (at least 24: the tag and two timestamps).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(24..))]
    payload: u32,
    /// Subscribing connections; each times every message.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    subscribers: u16,
    /// Weir: in-flight window to ask for in HELLO (0 = the server's default).
    #[arg(long, default_value_t = 0)]
    window: u32,
    /// Most messages the publisher may have sent and not yet had confirmed.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_unconfirmed: u64,
    /// Give up on a run after this many seconds.
    #[arg(long, value_name = "SECS", default_value = "120", value_parser = parse_secs)]
    timeout: Duration,
}

/// # Errors
/// A connection that could not be opened or set up.
pub(crate) fn main(args: &LatencyArgs) -> io::Result<bool> {
    run_rounds("latency", &args.common, "p99_us", |target| {
        run_once(target, args)
    })
}

fn run_once(target: &Target, args: &LatencyArgs) -> io::Result<Outcome> {
    let address = resolve(target)?;
    let topic = args.common.run_topic();
    let options = AdapterOptions {
        topic: topic.clone(),
        window: args.window,
        is_acking: true,
        // A confirmation request every 1 ms of traffic: cheap, and the bound never bites.
        confirm_every: ((args.rate / 1_000.0) as u64).max(1),
    };
    let max_unconfirmed = target
        .max_unconfirmed()
        .map_or(args.max_unconfirmed, |cap| cap.min(args.max_unconfirmed));
    let mut links = vec![LinkPlan {
        address,
        source: None,
        adapter: target.adapter(&format!("{topic}-p0"), &options),
        role: Role::Publisher(PublisherSpec {
            index: 0,
            count: None,
            duration: Some(args.duration),
            rate: Some(args.rate),
            payload_len: args.payload as usize,
            max_unconfirmed,
            confirm_latency_after: Some(args.warmup),
        }),
        read_buf_bytes: READ_BUF_BYTES,
    }];
    for index in 0..usize::from(args.subscribers) {
        links.push(LinkPlan {
            address,
            source: None,
            adapter: target.adapter(&format!("{topic}-s{index}"), &options),
            role: Role::Subscriber(SubscriberSpec {
                index,
                counts_for_lag: true,
                expects_messages: true,
                read_rate: None,
                latency_after: Some(args.warmup),
            }),
            read_buf_bytes: READ_BUF_BYTES,
        });
    }
    let settings = RunSettings {
        publishers: 1,
        subscribers: usize::from(args.subscribers),
        max_lag: u64::MAX,
        idle_timeout: Duration::from_secs(2),
        timeout: args.timeout,
        is_busy: true,
    };
    let run = Run::start(settings, vec![links])?;
    let meters = Meters::start(target);
    watch(&run, &meters, None, Some(args.duration), |_, _| false);
    let report = run.join();
    let deliveries = Deliveries::of(&report);
    let mut corrected = new_histogram();
    let mut raw = new_histogram();
    for subscriber in &report.subscribers {
        if let Some((c, r)) = &subscriber.latency {
            add(&mut corrected, c);
            add(&mut raw, r);
        }
    }
    let mut confirm_corrected = new_histogram();
    let mut confirm_raw = new_histogram();
    for publisher in &report.publishers {
        if let Some((c, r)) = &publisher.confirm_latency {
            add(&mut confirm_corrected, c);
            add(&mut confirm_raw, r);
        }
    }
    let corrected = LatencySummary::of(&corrected);
    let raw = LatencySummary::of(&raw);
    let confirm_corrected = LatencySummary::of(&confirm_corrected);
    let confirm_raw = LatencySummary::of(&confirm_raw);
    let (server_cpu, bench_cpu) = meters.cpu_over(args.duration);
    let achieved = per_sec(deliveries.total_sent(), args.duration);
    let mut notes = deliveries.problems();
    notes.extend(limits(server_cpu, None));
    if achieved < args.rate * 0.99 {
        notes.push(format!(
            "the publisher fell behind its schedule: {} msg/s of {}",
            thousands(achieved.round() as u64),
            thousands(args.rate.round() as u64)
        ));
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "latency  {target}  1 pub → {} sub  {} msg/s × {} B for {:.0} s ({:.0} s warm-up)",
        args.subscribers,
        thousands(args.rate.round() as u64),
        args.payload,
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64()
    );
    let _ = writeln!(
        text,
        "  {:<34} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "µs", "p50", "p90", "p99", "p99.9", "max"
    );
    for (label, s) in [
        ("from due time (CO-corrected)", corrected),
        ("from send time (uncorrected)", raw),
        ("publish to confirmation, from due", confirm_corrected),
        ("publish to confirmation, from send", confirm_raw),
    ] {
        let _ = writeln!(
            text,
            "  {label:<34} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            s.p50, s.p90, s.p99, s.p999, s.max
        );
    }
    let _ = writeln!(
        text,
        "  timed {} deliveries; sent {} ({} msg/s)",
        thousands(corrected.count),
        thousands(deliveries.total_sent()),
        thousands(achieved.round() as u64)
    );
    deliveries.write_table(&mut text, 4);
    let _ = writeln!(
        text,
        "  CPU         server {}, weir-bench {} (% of one core; weir-bench busy-polls)",
        percent(server_cpu),
        percent(bench_cpu)
    );
    for note in &notes {
        let _ = writeln!(text, "  note: {note}");
    }
    let metrics = vec![
        Metric::new("p50_us", "p50 µs", Some(corrected.p50)).with_decimals(1),
        Metric::new("p90_us", "p90 µs", Some(corrected.p90)).with_decimals(1),
        Metric::new("p99_us", "p99 µs", Some(corrected.p99)).with_decimals(1),
        Metric::new("p99_9_us", "p99.9 µs", Some(corrected.p999)).with_decimals(1),
        Metric::new("max_us", "max µs", Some(corrected.max)).with_decimals(1),
        Metric::new("raw_p99_us", "p99 µs from send", Some(raw.p99)).with_decimals(1),
        Metric::new(
            "confirm_p50_us",
            "confirmation p50 µs",
            Some(confirm_corrected.p50),
        )
        .with_decimals(1),
        Metric::new(
            "confirm_p99_us",
            "confirmation p99 µs",
            Some(confirm_corrected.p99),
        )
        .with_decimals(1),
        Metric::new("sent_per_s", "sent msg/s", Some(achieved)),
        Metric::new("server_cpu_pct", "server CPU %", server_cpu),
        Metric::new(
            "lost",
            "lost deliveries",
            Some(deliveries.lost().total() as f64),
        ),
    ];
    let json = json!({
        "scenario": "latency",
        "target": target.to_string(),
        "topic": topic,
        "rate": args.rate,
        "duration_s": args.duration.as_secs_f64(),
        "warmup_s": args.warmup.as_secs_f64(),
        "payload_bytes": args.payload,
        "subscribers": args.subscribers,
        "latency_corrected": corrected.to_json(),
        "latency_uncorrected": raw.to_json(),
        "confirm_latency_corrected": confirm_corrected.to_json(),
        "confirm_latency_uncorrected": confirm_raw.to_json(),
        "sent_msgs_per_s": achieved.round(),
        "deliveries": deliveries.to_json(),
        "server_cpu_pct": server_cpu,
        "bench_cpu_pct": bench_cpu,
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

fn add(sum: &mut Histogram<u64>, part: &Histogram<u64>) {
    // Cannot fail: every histogram here has the same bounds.
    let _ = sum.add(part);
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.replace('_', "").parse::<f64>() {
        Ok(rate) if rate >= 1.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!("{text}: expected messages per second, at least 1")),
    }
}

const READ_BUF_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_accept_digit_groups_and_refuse_nonsense() {
        assert_eq!(parse_rate("50_000"), Ok(50_000.0));
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        for bad in ["0", "-1", "fast", "inf"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
