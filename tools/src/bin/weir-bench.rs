//! weir-bench: a load generator for Weir and for peer brokers (Redis pub/sub, NATS core,
//! MQTT 3.1.1 / mosquitto), with the same flags, the same client code and the same accounting
//! for each (quinn `perf/` model; STYLE.md §10).
//!
//! # Layout
//!
//! - this file: the command line, dispatch to a scenario, number formatting;
//! - scenarios, one module each: `throughput` (also `fanout`), `latency`, `connections`,
//!   `slow` (`slow-consumer`), `hiccups` (the machine's own stalls, no broker); `scenario` holds what they share: target flags, rounds and
//!   compare mode, progress and the summary tables;
//! - `worker`: the load-generator threads, each a mio loop over many `link`s (non-blocking
//!   sockets with their buffers), each link a publisher or a subscriber;
//! - `target`: targets named by URL and the sans-IO [`target::Adapter`] trait; the adapters:
//!   `weir_target`, `redis_target`, `nats_target`, `mqtt_target`;
//! - `accounting` (payload stamps, loss/duplicate tracking), `report` (per-run delivery
//!   tables), `histogram` (latency percentiles), `probe` (server CPU and memory from /proc).
//!
//! Each adapter speaks its protocol directly, so no client library's buffering or threading
//! colours the figures: only the bytes differ between targets.
//!
//! Usage errors exit 2 (clap); a connection that fails, or a run in which a publisher failed
//! or a subscriber was closed, timed out or missed messages, exits 1.

#![forbid(unsafe_code)]

// The crate root is a file in src/bin/, so its modules live in weir-bench/ beside it, named
// explicitly: a module file directly in src/bin/ would be taken for another binary.
#[path = "weir-bench/accounting.rs"]
mod accounting;
#[path = "weir-bench/connections.rs"]
mod connections;
#[path = "weir-bench/hiccups.rs"]
mod hiccups;
#[path = "weir-bench/histogram.rs"]
mod histogram;
#[path = "weir-bench/latency.rs"]
mod latency;
#[path = "weir-bench/link.rs"]
mod link;
#[path = "weir-bench/mqtt_target.rs"]
mod mqtt_target;
#[path = "weir-bench/nats_target.rs"]
mod nats_target;
#[path = "weir-bench/probe.rs"]
mod probe;
#[path = "weir-bench/redis_target.rs"]
mod redis_target;
#[path = "weir-bench/report.rs"]
mod report;
#[path = "weir-bench/scenario.rs"]
mod scenario;
#[path = "weir-bench/slow.rs"]
mod slow;
#[path = "weir-bench/target.rs"]
mod target;
#[path = "weir-bench/throughput.rs"]
mod throughput;
#[path = "weir-bench/weir_target.rs"]
mod weir_target;
#[path = "weir-bench/worker.rs"]
mod worker;
#[path = "weir-bench/ws_target.rs"]
mod ws_target;

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use serde_json::{Map, Value};

#[derive(Debug, Parser)]
#[command(
    name = "weir-bench",
    version,
    about = "Load generator for Weir and peer brokers (Redis, NATS, MQTT)",
    after_help = "Targets: weir://HOST:PORT, redis://HOST:PORT, nats://HOST:PORT, \
                  mqtt://HOST:PORT?qos=0|1; add ?pid=N (&pid=N) for a local server's CPU and \
                  memory. Weir: ?user=NAME&password=PW, ?token=T or ?signed_token=T send \
                  credentials in HELLO; weirs://HOST:PORT?ca=PEM[&name=SNI] speaks TLS. \
                  ws://HOST:PORT and wss://HOST:PORT?ca=PEM speak Weir over WebSocket \
                  (a listener with transport = \"websocket\"); nats-ws://HOST:PORT is NATS \
                  over nats-server's websocket listener. \
                  --compare A,B,... runs each scenario against several in turn."
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// P publishers to S subscribers as fast as confirmations and the slowest subscriber
    /// allow; every subscriber should receive each message once, in order.
    Throughput(throughput::ThroughputArgs),
    /// One publisher to many subscribers (100 by default): `throughput` for fan-out.
    Fanout(throughput::ThroughputArgs),
    /// A fixed publish rate (open loop); delivery latency percentiles, corrected for
    /// coordinated omission.
    Latency(latency::LatencyArgs),
    /// Many idle subscribed sessions; the server's memory per connection.
    Connections(connections::ConnectionsArgs),
    /// One fast and one slow subscriber: what the broker does about the slow one.
    SlowConsumer(slow::SlowArgs),
    /// No broker: how long this machine stalls a thread that never sleeps, and the latency
    /// floor those stalls alone set at a publish rate. Run it pinned to a benchmark's core.
    Hiccups(hiccups::HiccupsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = Cli::command();
    let matches = command.clone().get_matches();
    let _ = scenario::RUN_CONFIGURATION.set(configuration(&command, &matches));
    if let Err(e) = catch_signals() {
        eprintln!("weir-bench: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let result = match &cli.scenario {
        Scenario::Throughput(args) => throughput::main(args, false),
        Scenario::Fanout(args) => throughput::main(args, true),
        Scenario::Latency(args) => latency::main(args),
        Scenario::Connections(args) => connections::main(args),
        Scenario::SlowConsumer(args) => slow::main(args),
        Scenario::Hiccups(args) => hiccups::main(args),
    };
    match result {
        // 128 + the signal, the shell's convention, after the partial summary.
        Ok(_) if scenario::interrupted().is_some() => {
            ExitCode::from(128 + scenario::interrupted().unwrap_or(0) as u8)
        }
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("weir-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT and SIGTERM stop the run under way (links closed cleanly, partial summary); a
/// second one ends the process at once.
fn catch_signals() -> std::io::Result<()> {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use signal_hook::consts::{SIGINT, SIGTERM};
    for signal in [SIGINT, SIGTERM] {
        let again = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&again))?;
        signal_hook::flag::register(signal, again)?;
        let caught = Arc::clone(&scenario::INTERRUPTED);
        signal_hook::flag::register_usize(signal, caught, signal as usize)?;
    }
    Ok(())
}

/// The scenario's flags with their values, defaults included, for the JSON document.
/// Credentials in target URLs (`password=`, `token=`, `signed_token=`) are removed.
fn configuration(command: &clap::Command, matches: &clap::ArgMatches) -> Value {
    let Some((scenario, args)) = matches.subcommand() else {
        return Value::Null;
    };
    let Some(subcommand) = command.find_subcommand(scenario) else {
        return Value::Null;
    };
    let mut flags = Map::new();
    for id in subcommand.get_arguments().map(clap::Arg::get_id) {
        let Some(values) = args.get_raw(id.as_str()) else {
            continue;
        };
        let values: Vec<Value> = values
            .map(|v| Value::from(redact(&v.to_string_lossy())))
            .collect();
        let value = match <[Value; 1]>::try_from(values) {
            Ok([one]) => one,
            Err(many) => Value::from(many),
        };
        flags.insert(id.to_string(), value);
    }
    serde_json::json!({
        "scenario": scenario,
        "flags": flags,
    })
}

/// `text` with the values of `password=`, `token=` and `signed_token=` replaced by `REDACTED`.
fn redact(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = ["password=", "token="]
        .iter()
        .filter_map(|key| rest.find(key).map(|i| i + key.len()))
        .min()
    {
        out += &rest[..at];
        out += "REDACTED";
        rest = &rest[at..];
        rest = rest.find('&').map_or("", |end| &rest[end..]);
    }
    out + rest
}

fn per_sec(count: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        count as f64 / elapsed.as_secs_f64()
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// 1234567 → "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let (head, rest) = digits.split_at((digits.len() - 1) % 3 + 1);
    let mut out = head.to_owned();
    for group in rest.as_bytes().chunks(3) {
        out.push(',');
        out.extend(group.iter().map(|&digit| char::from(digit)));
    }
    out
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{text}: expected seconds, e.g. 2 or 0.5"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_target_urls_are_redacted() {
        assert_eq!(
            redact("weir://h:1?user=a&password=pw&pid=3"),
            "weir://h:1?user=a&password=REDACTED&pid=3"
        );
        assert_eq!(
            redact("weir://h:1?signed_token=x.y"),
            "weir://h:1?signed_token=REDACTED"
        );
        assert_eq!(redact("weir://h:1?token=t"), "weir://h:1?token=REDACTED");
        assert_eq!(redact("nats://h:1"), "nats://h:1");
    }

    #[test]
    fn thousands_are_grouped_by_three() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(thousands(n), text);
        }
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
