//! `hiccups`: how often, and for how long, this machine stops a thread that never sleeps
//! (jHiccup's idea). Run it pinned to the core a server or weir-bench would use, before a
//! latency run: the stalls it sees (host scheduling of a virtual CPU, interrupts, kernel
//! work) delay every broker alike, and at a fixed publish rate they alone set a floor under
//! the tail percentiles, which this also reports.
//!
//! The loop reads the clock as fast as it can; a gap between two readings longer than
//! `--threshold-us` is a stall. The floor: a stream of `--rate` messages per second due on a
//! fixed schedule, each delayed until the end of any stall it falls in (coordinated
//! omission corrected, as `latency` measures), with no other cost.

use std::io;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;

use crate::histogram::{new_histogram, LatencySummary, MAX_LATENCY_NS};
use crate::{parse_secs, thousands};

#[derive(Debug, Args)]
pub(crate) struct HiccupsArgs {
    /// Seconds to measure.
    #[arg(short = 'd', long, default_value = "5", value_parser = parse_secs)]
    duration: Duration,
    /// Gaps between clock readings up to this many µs are the loop itself, not stalls.
    #[arg(long, default_value_t = 20)]
    threshold_us: u64,
    /// Publish rate of the stream whose latency floor is reported (messages per second).
    #[arg(long, default_value_t = 50_000.0)]
    rate: f64,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Stalls seen by one spinning thread.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Stalls {
    /// Gaps over the threshold, in ns.
    pub(crate) gaps_ns: Vec<u64>,
    pub(crate) measured: Duration,
}

impl Stalls {
    fn count_over(&self, ns: u64) -> usize {
        self.gaps_ns.iter().filter(|&&gap| gap > ns).count()
    }

    fn total(&self) -> Duration {
        Duration::from_nanos(self.gaps_ns.iter().sum())
    }

    /// Latencies (ns) of a stream at `rate` msg/s over the measured time that only these
    /// stalls delay: a stall of `g` holds the messages due during it, `g`, `g - interval`, ...
    /// down to one interval (hdrhistogram's coordinated-omission correction); every other
    /// message counts as 1 ns.
    pub(crate) fn floor(&self, rate: f64) -> Histogram<u64> {
        let mut histogram = new_histogram();
        let interval_ns = (1e9 / rate).max(1.0) as u64;
        let total = (self.measured.as_secs_f64() * rate) as u64;
        for &gap in &self.gaps_ns {
            // Cannot fail: clamped to the histogram's range.
            let _ = histogram.record_correct(gap.clamp(1, MAX_LATENCY_NS), interval_ns);
        }
        let on_time = total.saturating_sub(histogram.len());
        if on_time > 0 {
            // Cannot fail: 1 is within the histogram's bounds.
            let _ = histogram.record_n(1, on_time);
        }
        histogram
    }
}

/// Spins for `duration` (or until SIGINT/SIGTERM), reading the clock, and keeps the gaps
/// longer than `threshold`.
pub(crate) fn measure(duration: Duration, threshold: Duration) -> Stalls {
    let threshold_ns = u64::try_from(threshold.as_nanos()).unwrap_or(u64::MAX);
    let start = Instant::now();
    let mut last = start;
    let mut gaps_ns = Vec::new();
    loop {
        let now = Instant::now();
        let gap = u64::try_from((now - last).as_nanos()).unwrap_or(u64::MAX);
        if gap > threshold_ns {
            gaps_ns.push(gap);
        }
        last = now;
        // SIGINT/SIGTERM: report what was measured so far (one relaxed load per reading).
        if now - start >= duration || crate::scenario::interrupted().is_some() {
            return Stalls {
                gaps_ns,
                measured: now - start,
            };
        }
    }
}

pub(crate) fn main(args: &HiccupsArgs) -> io::Result<bool> {
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--rate must be a positive number",
        ));
    }
    let stalls = measure(args.duration, Duration::from_micros(args.threshold_us));
    let floor = LatencySummary::of(&stalls.floor(args.rate));
    let max_us = stalls
        .gaps_ns
        .iter()
        .max()
        .map_or(0.0, |&ns| ns as f64 / 1e3);
    if args.json {
        let document = json!({
            "scenario": "hiccups",
            "seconds": stalls.measured.as_secs_f64(),
            "threshold_us": args.threshold_us,
            "stalls": stalls.gaps_ns.len(),
            "stalls_over_200us": stalls.count_over(200_000),
            "stalls_over_1ms": stalls.count_over(1_000_000),
            "max_stall_us": max_us,
            "stalled_ms": stalls.total().as_secs_f64() * 1e3,
            "floor_rate": args.rate,
            "floor": floor.to_json(),
        });
        println!("{document}");
    } else {
        println!(
            "hiccups over {:.1} s (a spinning thread; gaps over {} µs):",
            stalls.measured.as_secs_f64(),
            args.threshold_us
        );
        println!(
            "  stalls {}, over 200 µs {}, over 1 ms {}; longest {:.0} µs; {:.1} ms stalled in all",
            thousands(stalls.gaps_ns.len() as u64),
            stalls.count_over(200_000),
            stalls.count_over(1_000_000),
            max_us,
            stalls.total().as_secs_f64() * 1e3
        );
        println!(
            "  floor at {} msg/s from these stalls alone (µs): p99 {:.1}, p99.9 {:.1}, max {:.1}",
            thousands(args.rate as u64),
            floor.p99,
            floor.p999,
            floor.max
        );
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_delays_only_the_messages_due_inside_stalls() {
        // 1 s at 1,000 msg/s (one due every ms) with one 10 ms stall: 10 messages wait 10, 9,
        // ... 1 ms; the other 990 are on time.
        let stalls = Stalls {
            gaps_ns: vec![10_000_000],
            measured: Duration::from_secs(1),
        };
        let floor = stalls.floor(1_000.0);
        assert_eq!(floor.len(), 1_000);
        let summary = LatencySummary::of(&floor);
        assert!(summary.p99 < 1.0, "p99 {} µs", summary.p99);
        assert!(
            (8_000.0..=10_010.0).contains(&summary.p999),
            "p99.9 {}",
            summary.p999
        );
        assert_eq!(floor.count_between(900_000, 11_000_000), 10);
    }

    #[test]
    fn no_stalls_no_floor() {
        let stalls = Stalls {
            gaps_ns: Vec::new(),
            measured: Duration::from_secs(2),
        };
        let summary = LatencySummary::of(&stalls.floor(50_000.0));
        assert_eq!(summary.count, 100_000);
        assert!(summary.max < 0.01);
    }

    #[test]
    fn a_short_measurement_returns_on_time_and_counts_only_long_gaps() {
        let stalls = measure(Duration::from_millis(20), Duration::from_secs(10));
        assert!(stalls.gaps_ns.is_empty());
        assert!(stalls.measured >= Duration::from_millis(20));
    }
}
