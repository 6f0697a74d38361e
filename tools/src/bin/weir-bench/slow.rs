//! The `slow-consumer` scenario: one publisher at full speed, one subscriber reading as fast
//! as it can, and one reading only `--slow-rate` messages per second (it leaves the rest in
//! its socket, so the broker's buffers fill as with a real slow client). The publisher waits
//! for the fast subscriber (`--max-lag`) but not for the slow one.
//!
//! What the broker did is the result: closed the slow subscriber (with which reason, after
//! how long), dropped messages for it without closing it (gaps in what it received), slowed
//! the publisher down to the slow reader's pace, or kept buffering; whether the fast subscriber
//! and the publisher kept their speed; and the server's memory (peak resident set).

use std::fmt::Write as _;
use std::io;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::report::Deliveries;
use crate::scenario::{resolve, run_rounds, watch, CommonArgs, Meters, Metric, Outcome, Watched};
use crate::target::{AdapterOptions, Target};
use crate::throughput::{mib, percent};
use crate::worker::{
    Ended, LinkPlan, PublisherSpec, Role, Run, RunSettings, SubscriberSpec, WorkerReport,
};
use crate::{parse_secs, per_sec, thousands};

#[derive(Clone, Debug, Args)]
pub(crate) struct SlowArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Seconds of publishing.
    #[arg(short = 'd', long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    duration: Duration,
    /// Messages per second the slow subscriber reads.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    slow_rate: u64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..))]
    payload: u32,
    /// Most messages the publisher may have sent and not yet had confirmed.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_unconfirmed: u64,
    /// Most messages the publisher may be ahead of the fast subscriber.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_lag: u64,
    /// Seconds of a first phase without the slow subscriber, to know the publisher's and the
    /// fast subscriber's speed alone (0 to skip).
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_secs)]
    baseline: Duration,
    /// Seconds the subscribers go on reading after the publisher stopped.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs)]
    drain: Duration,
}

/// # Errors
/// A connection that could not be opened or set up.
pub(crate) fn main(args: &SlowArgs) -> io::Result<bool> {
    run_rounds("slow-consumer", &args.common, "fast_per_s", |target| {
        run_once(target, args)
    })
}

/// One phase of a run: the publisher, the fast subscriber and, if `with_slow`, the slow one.
struct Phase {
    report: WorkerReport,
    peak_rss: Option<u64>,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
    server_cpu: Option<f64>,
}

fn phase(
    target: &Target,
    args: &SlowArgs,
    duration: Duration,
    with_slow: bool,
) -> io::Result<Phase> {
    let address = resolve(target)?;
    let topic = args.common.run_topic();
    let options = AdapterOptions {
        topic: topic.clone(),
        window: 0,
        is_acking: true,
        confirm_every: (args.max_unconfirmed / 4).max(1),
    };
    let max_unconfirmed = target
        .max_unconfirmed()
        .map_or(args.max_unconfirmed, |cap| cap.min(args.max_unconfirmed));
    let plan = |name: &str, role: Role| LinkPlan {
        address,
        source: None,
        adapter: target.adapter(&format!("{topic}-{name}"), &options),
        role,
        read_buf_bytes: READ_BUF_BYTES,
    };
    let subscriber = |index, read_rate: Option<f64>| {
        Role::Subscriber(SubscriberSpec {
            index,
            counts_for_lag: read_rate.is_none(),
            expects_messages: true,
            read_rate,
            latency_after: None,
        })
    };
    let mut groups = vec![
        vec![plan(
            "p0",
            Role::Publisher(PublisherSpec {
                index: 0,
                count: None,
                duration: Some(duration),
                rate: None,
                payload_len: args.payload as usize,
                max_unconfirmed,
                confirm_latency_after: None,
            }),
        )],
        vec![plan("fast", subscriber(FAST, None))],
    ];
    if with_slow {
        groups.push(vec![plan(
            "slow",
            subscriber(SLOW, Some(args.slow_rate as f64)),
        )]);
    }
    let settings = RunSettings {
        publishers: 1,
        subscribers: groups.len() - 1,
        max_lag: args.max_lag,
        idle_timeout: args.drain,
        timeout: duration + args.drain + STOP_GRACE,
        is_busy: false,
    };
    let meters = Meters::start(target);
    let rss_before = meters.server_rss();
    let run = Run::start(settings, groups)?;
    let stop_at = duration + args.drain;
    let watched = watch(&run, &meters, None, Some(duration), |_, elapsed| {
        elapsed >= stop_at
    });
    let report = run.join();
    Ok(Phase {
        report,
        peak_rss: watched.peak_rss,
        rss_before,
        rss_after: meters.server_rss(),
        server_cpu: meters.cpu_over(duration).0,
    })
}

fn run_once(target: &Target, args: &SlowArgs) -> io::Result<Outcome> {
    let baseline = if args.baseline.is_zero() {
        None
    } else {
        Some(phase(target, args, args.baseline, false)?)
    };
    let alone_per_s = baseline
        .as_ref()
        .map(|phase| per_sec(phase.report.publishers[0].published, args.baseline));
    let Phase {
        report,
        peak_rss,
        rss_before,
        rss_after,
        server_cpu,
    } = phase(target, args, args.duration, true)?;
    let stop_at = args.duration + args.drain;
    let watched = Watched { peak_rss };
    let deliveries = Deliveries::of(&report);
    let sent = deliveries.total_sent();
    let published_per_s = per_sec(sent, args.duration);
    let fast = &report.subscribers[FAST];
    let slow = &report.subscribers[SLOW];
    let fast_per_s = per_sec(
        fast.tracker.tally.unique,
        fast.last_message_at.unwrap_or(args.duration),
    );
    let slow_losses = deliveries.rows[SLOW].losses;
    let slow_received = slow.tracker.tally.unique;
    let slow_per_s = per_sec(slow_received, slow.ended_at.min(stop_at));
    let verdict = verdict(
        &slow.ended,
        slow.ended_at,
        slow_losses.gaps,
        slow_losses.tail,
        published_per_s,
        alone_per_s,
    );
    let mut notes = vec![verdict.clone()];
    let fast_row = &deliveries.rows[FAST];
    if fast_row.ended != Ended::Complete || fast_row.losses.total() > 0 {
        notes.push(format!(
            "the fast subscriber {}, {} messages not received",
            fast_row.ended.describe(),
            thousands(fast_row.losses.total())
        ));
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "slow-consumer  {target}  1 pub → fast + slow ({} msg/s) sub  {} B for {:.0} s",
        thousands(args.slow_rate),
        args.payload,
        args.duration.as_secs_f64()
    );
    let _ = writeln!(
        text,
        "  publisher   {:>12} msgs, {} msg/s{}",
        thousands(sent),
        thousands(published_per_s.round() as u64),
        alone_per_s.map_or(String::new(), |alone| format!(
            " ({} msg/s without the slow subscriber: {:.0}%)",
            thousands(alone.round() as u64),
            100.0 * published_per_s / alone
        ))
    );
    let _ = writeln!(
        text,
        "  fast        {:>12} msgs, {} msg/s, {}",
        thousands(fast.tracker.tally.unique),
        thousands(fast_per_s.round() as u64),
        fast.ended.describe()
    );
    let _ = writeln!(
        text,
        "  slow        {:>12} msgs, {} msg/s, {} (after {:.2} s); {} lost mid-stream, {} \
         not received at the end",
        thousands(slow_received),
        thousands(slow_per_s.round() as u64),
        slow.ended.describe(),
        slow.ended_at.as_secs_f64(),
        thousands(slow_losses.gaps),
        thousands(slow_losses.tail),
    );
    let rss = |b: Option<u64>| b.map_or("–".into(), |b| format!("{:.1} MiB", mib(b)));
    let _ = writeln!(
        text,
        "  server      RSS {} before, {} peak, {} after; CPU {}",
        rss(rss_before),
        rss(watched.peak_rss),
        rss(rss_after),
        percent(server_cpu)
    );
    let _ = writeln!(text, "  verdict: {verdict}");
    for note in notes.iter().skip(1) {
        let _ = writeln!(text, "  note: {note}");
    }
    let kept = alone_per_s.map(|alone| 100.0 * published_per_s / alone);
    let metrics = vec![
        Metric::new("published_per_s", "published msg/s", Some(published_per_s)),
        Metric::new(
            "published_alone_per_s",
            "published msg/s, no slow sub",
            alone_per_s,
        ),
        Metric::new("publisher_kept_pct", "publisher speed kept %", kept),
        Metric::new("fast_per_s", "fast subscriber msg/s", Some(fast_per_s)),
        Metric::new("slow_per_s", "slow subscriber msg/s", Some(slow_per_s)),
        Metric::new(
            "slow_lost_gaps",
            "slow: lost mid-stream",
            Some(slow_losses.gaps as f64),
        ),
        Metric::new(
            "slow_closed_after_s",
            "slow: closed after s",
            slow.ended
                .is_closed_by_broker()
                .then_some(slow.ended_at.as_secs_f64()),
        )
        .with_decimals(2),
        Metric::new(
            "server_rss_peak_mib",
            "server peak RSS MiB",
            watched.peak_rss.map(mib),
        )
        .with_decimals(1),
        Metric::new("server_cpu_pct", "server CPU %", server_cpu),
    ];
    let json = json!({
        "scenario": "slow-consumer",
        "target": target.to_string(),
        "duration_s": args.duration.as_secs_f64(),
        "slow_rate": args.slow_rate,
        "payload_bytes": args.payload,
        "verdict": verdict,
        "published_msgs_per_s": published_per_s.round(),
        "published_alone_msgs_per_s": alone_per_s.map(f64::round),
        "fast_msgs_per_s": fast_per_s.round(),
        "slow_msgs_per_s": slow_per_s.round(),
        "slow_ended": slow.ended.describe(),
        "slow_ended_at_s": slow.ended_at.as_secs_f64(),
        "deliveries": deliveries.to_json(),
        "server_rss_before_bytes": rss_before,
        "server_rss_peak_bytes": watched.peak_rss,
        "server_rss_after_bytes": rss_after,
        "server_cpu_pct": server_cpu,
        "notes": notes,
    });
    Ok(Outcome {
        target: target.to_string(),
        metrics,
        notes,
        // Not losing anything is not the point here: the run is clean when the fast
        // subscriber got everything.
        is_clean: fast_row.ended == Ended::Complete && fast_row.losses.total() == 0,
        text,
        json,
    })
}

/// What the broker did about the slow subscriber, in words. `alone_per_s`: the publisher's
/// rate without the slow subscriber, if measured.
fn verdict(
    ended: &Ended,
    ended_at: Duration,
    gaps: u64,
    tail: u64,
    published_per_s: f64,
    alone_per_s: Option<f64>,
) -> String {
    if let Ended::Closed(reason) = ended {
        return format!(
            "closed the slow subscriber after {:.2} s ({reason}){}",
            ended_at.as_secs_f64(),
            if gaps > 0 {
                format!(
                    ", having dropped {} of its messages before",
                    thousands(gaps)
                )
            } else {
                String::new()
            }
        );
    }
    if gaps > 0 {
        return format!(
            "dropped {} messages for the slow subscriber without closing it",
            thousands(gaps)
        );
    }
    if let Some(alone) = alone_per_s.filter(|&alone| published_per_s < SLOWED_SHARE * alone) {
        return format!(
            "slowed the publisher to {:.0}% of its speed without the slow subscriber; no loss, \
             {} messages behind when stopped",
            100.0 * published_per_s / alone,
            thousands(tail)
        );
    }
    format!(
        "kept buffering for the slow subscriber: no loss, {} messages behind when stopped",
        thousands(tail)
    )
}

const FAST: usize = 0;
const SLOW: usize = 1;
const READ_BUF_BYTES: usize = 256 * 1024;
/// A publisher under this share of its speed alone was held back by the slow subscriber.
const SLOWED_SHARE: f64 = 0.5;
/// Time past the drain before a run that will not stop is abandoned.
const STOP_GRACE: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_names_what_the_broker_did() {
        let secs = Duration::from_millis(1_500);
        let closed = Ended::Closed("GOODBYE QUEUE_OVERFLOW".into());
        assert_eq!(
            verdict(&closed, secs, 0, 5, 1e6, None),
            "closed the slow subscriber after 1.50 s (GOODBYE QUEUE_OVERFLOW)"
        );
        assert!(
            verdict(&closed, secs, 7, 5, 1e6, None).ends_with("dropped 7 of its messages before")
        );
        assert_eq!(
            verdict(&Ended::Stopped, secs, 3, 0, 1e6, None),
            "dropped 3 messages for the slow subscriber without closing it"
        );
        assert!(verdict(&Ended::Stopped, secs, 0, 0, 2e5, Some(1e6))
            .starts_with("slowed the publisher to 20% of its speed"));
        assert!(verdict(&Ended::Stopped, secs, 0, 9, 9e5, Some(1e6)).starts_with("kept buffering"));
        assert!(verdict(&Ended::Stopped, secs, 0, 9, 2e5, None).starts_with("kept buffering"));
    }
}
