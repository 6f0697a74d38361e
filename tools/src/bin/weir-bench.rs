//! weir-bench: a load generator for Weir and for peer brokers, with the same flags for each
//! (quinn `perf/` model; STYLE.md §10).
//!
//! # Layout
//!
//! - this file: the command line, dispatch to a scenario, number formatting;
//! - `throughput`: the `throughput` scenario (one module per scenario);
//! - `target`: targets named by URL and the [`target::Publisher`] / [`target::Subscriber`]
//!   traits every adapter implements, over a [`target::Wire`] (a `TcpStream` with the adapter's
//!   own buffers);
//! - `weir_target`, `redis_target`: the adapters for `weir://` and `redis://` (Redis pub/sub).
//!
//! Each adapter speaks its protocol directly over `std::net::TcpStream`, so no client
//! library's buffering or threading colours the figures, and a new scenario or target touches
//! only its own module.
//!
//! Threads: one per publisher and one per subscriber. Every subscriber is subscribed (Weir:
//! SUBSCRIBED received; Redis: the subscribe reply read) before the first publish. Every
//! payload starts with a big-endian u64 tag, `publisher << 48 | counter` (counter from 1), so
//! each subscriber counts losses, duplicates and out-of-order deliveries per publisher.
//!
//! Usage errors exit 2 (clap); a connection that fails, or a run in which a publisher failed
//! or a subscriber was closed, timed out or missed messages, exits 1.

#![forbid(unsafe_code)]

// The crate root is a file in src/bin/, so its modules live in weir-bench/ beside it, named
// explicitly: a module file directly in src/bin/ would be taken for another binary.
#[path = "weir-bench/redis_target.rs"]
mod redis_target;
#[path = "weir-bench/target.rs"]
mod target;
#[path = "weir-bench/throughput.rs"]
mod throughput;
#[path = "weir-bench/weir_target.rs"]
mod weir_target;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "weir-bench",
    version,
    about = "Load generator for Weir and peer brokers"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Publishers send --count messages as fast as confirmations and the slowest subscriber
    /// allow; every subscriber should receive each of them once, in order.
    Throughput(throughput::ThroughputArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.scenario {
        Scenario::Throughput(args) => throughput::main(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("weir-bench: {error}");
            ExitCode::FAILURE
        }
    }
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
