//! The `connections` scenario: M idle sessions, each subscribed to its own topic, held open
//! for `--hold` seconds (answering the broker's heartbeats), then closed politely. With the
//! server's pid (`?pid=N`), its memory per connection is the growth of its resident set
//! (VmRSS) from before the first connect to the end of the hold, divided by M.
//!
//! The connections are spread over `--client-threads` workers and over source addresses
//! 127.0.0.2, 127.0.0.3, ... (`--sources`), so no one address runs short of ephemeral ports.
//! One process holds them all: keep M under its open-files limit.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::report::Deliveries;
use crate::scenario::{resolve, run_rounds, watch, CommonArgs, Meters, Metric, Outcome};
use crate::target::{AdapterOptions, Target};
use crate::throughput::mib;
use crate::worker::{Ended, LinkPlan, Role, Run, RunSettings, SubscriberSpec};
use crate::{parse_secs, per_sec, thousands};

#[derive(Clone, Debug, Args)]
pub(crate) struct ConnectionsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Connections to open and hold.
    #[arg(short = 'n', long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// Seconds to hold them once all are subscribed.
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = parse_secs)]
    hold: Duration,
    /// Load-generator threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    client_threads: u16,
    /// Source addresses 127.0.0.2 ... to connect from; 0 to let the system choose.
    #[arg(long, default_value_t = 4)]
    sources: u8,
}

/// # Errors
/// A connection that could not be opened or set up.
pub(crate) fn main(args: &ConnectionsArgs) -> io::Result<bool> {
    run_rounds(
        "connections",
        &args.common,
        "bytes_per_connection",
        |target| run_once(target, args),
    )
}

fn run_once(target: &Target, args: &ConnectionsArgs) -> io::Result<Outcome> {
    let address = resolve(target)?;
    let topic = args.common.run_topic();
    let count = args.connections as usize;
    let threads = usize::from(args.client_threads);
    let mut groups: Vec<Vec<LinkPlan>> = (0..threads).map(|_| Vec::new()).collect();
    for index in 0..count {
        let options = AdapterOptions {
            topic: format!("{topic}.{index}"),
            window: 0,
            is_acking: true,
            confirm_every: 1,
        };
        let source = (args.sources > 0 && address.ip().is_loopback()).then(|| {
            IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                2 + (index % usize::from(args.sources)) as u8,
            ))
        });
        groups[index % threads].push(LinkPlan {
            address,
            source,
            adapter: target.adapter(&format!("{topic}-c{index}"), &options),
            role: Role::Subscriber(SubscriberSpec {
                index,
                counts_for_lag: false,
                expects_messages: false,
                read_rate: None,
                latency_after: None,
            }),
            read_buf_bytes: READ_BUF_BYTES,
        });
    }
    let settings = RunSettings {
        publishers: 0,
        subscribers: count,
        max_lag: u64::MAX,
        idle_timeout: args.hold,
        timeout: args.hold + HOLD_GRACE,
        is_busy: false,
    };
    let meters = Meters::start(target);
    let rss_before = meters.server_rss();
    let setup_started = Instant::now();
    let run = Run::start(settings, groups)?;
    let setup = setup_started.elapsed();
    let held = Mutex::new(None);
    watch(&run, &meters, None, Some(args.hold), |shared, elapsed| {
        if elapsed < args.hold {
            return false;
        }
        if let Ok(mut held) = held.lock() {
            *held = Some((
                meters.server_rss(),
                shared.established.load(Ordering::Relaxed),
            ));
        }
        true
    });
    let report = run.join();
    let (rss_held, established) = held.into_inner().ok().flatten().unwrap_or((None, 0));
    let deliveries = Deliveries::of(&report);
    let closed: Vec<&Ended> = report
        .subscribers
        .iter()
        .map(|s| &s.ended)
        .filter(|e| e.is_closed_by_broker() || matches!(e, Ended::Failed(_)))
        .collect();
    let per_connection = match (rss_before, rss_held) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before) as f64 / count as f64),
        _ => None,
    };
    let mut notes = Vec::new();
    if let Some(first) = closed.first() {
        notes.push(format!(
            "{} of {} connections ended early (first: {})",
            thousands(closed.len() as u64),
            thousands(count as u64),
            first.describe()
        ));
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "connections  {target}  {} idle subscribed sessions held {:.0} s",
        thousands(count as u64),
        args.hold.as_secs_f64()
    );
    let _ = writeln!(
        text,
        "  set up      {} in {:.2} s ({} per s); {} ended early",
        thousands(established as u64),
        setup.as_secs_f64(),
        thousands(per_sec(count as u64, setup).round() as u64),
        closed.len()
    );
    let rss = |b: Option<u64>| b.map_or("–".into(), |b| format!("{:.1} MiB", mib(b)));
    let _ = writeln!(
        text,
        "  server RSS  {} before, {} held: {} bytes per connection",
        rss(rss_before),
        rss(rss_held),
        per_connection.map_or("–".into(), |b| thousands(b.round() as u64))
    );
    for note in &notes {
        let _ = writeln!(text, "  note: {note}");
    }
    let metrics = vec![
        Metric::new(
            "bytes_per_connection",
            "server bytes per connection",
            per_connection,
        ),
        Metric::new("connections", "connections held", Some(established as f64)),
        Metric::new(
            "setup_per_s",
            "connections set up per s",
            Some(per_sec(count as u64, setup)),
        ),
        Metric::new(
            "server_rss_held_mib",
            "server RSS held MiB",
            rss_held.map(mib),
        )
        .with_decimals(1),
        Metric::new("ended_early", "ended early", Some(closed.len() as f64)),
    ];
    let json = json!({
        "scenario": "connections",
        "target": target.to_string(),
        "connections": count,
        "established": established,
        "hold_s": args.hold.as_secs_f64(),
        "setup_s": setup.as_secs_f64(),
        "server_rss_before_bytes": rss_before,
        "server_rss_held_bytes": rss_held,
        "bytes_per_connection": per_connection,
        "ended_early": closed.len(),
        "received_while_idle": deliveries.rows.iter().map(|r| r.delivered).sum::<u64>(),
        "notes": notes,
    });
    Ok(Outcome {
        target: target.to_string(),
        metrics,
        notes,
        is_clean: closed.is_empty() && established == count,
        text,
        json,
    })
}

/// Idle links need little: a handshake reply, a heartbeat now and then.
const READ_BUF_BYTES: usize = 4 * 1024;
const HOLD_GRACE: Duration = Duration::from_secs(30);
