//! Latency histograms (hdrhistogram, 3 significant digits, in ns) and their summary in µs.
//!
//! Coordinated omission: in the open-loop `latency` scenario every message carries the time
//! it was *due* by the schedule, and latency is measured from that time, not from when the
//! publisher got round to sending it. A broker (or load generator) that stalls therefore
//! shows the stall in every message that should have gone out during it, as a real client
//! with a fixed send rate would see it. That is the correction; recording from the actual
//! send time as well gives the uncorrected figure for comparison.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Latencies in ns, 1 ns to 60 s.
pub(crate) fn new_histogram() -> Histogram<u64> {
    // Cannot fail: the bounds and precision are constants within hdrhistogram's limits.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

/// Records `ns`, clamped to the histogram's range.
pub(crate) fn record(histogram: &mut Histogram<u64>, ns: u64) {
    histogram.saturating_record(ns.clamp(1, MAX_LATENCY_NS));
}

/// The percentiles weir-bench reports, in µs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct LatencySummary {
    pub(crate) count: u64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

impl LatencySummary {
    pub(crate) fn of(histogram: &Histogram<u64>) -> LatencySummary {
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        let micros = |ns: u64| ns as f64 / 1_000.0;
        LatencySummary {
            count: histogram.len(),
            p50: micros(histogram.value_at_quantile(0.50)),
            p90: micros(histogram.value_at_quantile(0.90)),
            p99: micros(histogram.value_at_quantile(0.99)),
            p999: micros(histogram.value_at_quantile(0.999)),
            max: micros(histogram.max()),
            mean: histogram.mean() / 1_000.0,
        }
    }

    pub(crate) fn to_json(self) -> Value {
        json!({
            "count": self.count,
            "p50_us": self.p50,
            "p90_us": self.p90,
            "p99_us": self.p99,
            "p99_9_us": self.p999,
            "max_us": self.max,
            "mean_us": self.mean,
        })
    }
}

pub(crate) const MAX_LATENCY_NS: u64 = 60_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_reported_in_microseconds_within_precision() {
        let mut histogram = new_histogram();
        for us in 1..=1_000u64 {
            record(&mut histogram, us * 1_000);
        }
        let summary = LatencySummary::of(&histogram);
        assert_eq!(summary.count, 1_000);
        let close = |value: f64, expected: f64| (value - expected).abs() <= expected * 0.001;
        assert!(close(summary.p50, 500.0), "{summary:?}");
        assert!(close(summary.p90, 900.0), "{summary:?}");
        assert!(close(summary.p99, 990.0), "{summary:?}");
        assert!(close(summary.p999, 999.0), "{summary:?}");
        assert!(close(summary.max, 1_000.0), "{summary:?}");
        assert!(close(summary.mean, 500.5), "{summary:?}");
    }

    #[test]
    fn out_of_range_values_are_clamped_and_an_empty_histogram_is_all_zero() {
        let mut histogram = new_histogram();
        assert_eq!(LatencySummary::of(&histogram), LatencySummary::default());
        record(&mut histogram, 0);
        record(&mut histogram, u64::MAX);
        let summary = LatencySummary::of(&histogram);
        assert_eq!(summary.count, 2);
        assert!(summary.max >= 59_000_000.0, "{summary:?}");
    }

    #[test]
    fn a_stall_shows_in_every_message_due_during_it() {
        // A 20 ms stall at 100 µs intervals: measured from the due time, the 200 messages
        // due during the stall are each late by up to 20 ms, not just the first of them.
        let mut corrected = new_histogram();
        let mut raw = new_histogram();
        for i in 0..10_000u64 {
            let due = i * 100_000;
            let stalled = (5_000..5_200).contains(&i);
            let sent = if stalled { 520_000_000 } else { due };
            let received = sent + 20_000;
            record(&mut corrected, received - due);
            record(&mut raw, received - sent);
        }
        assert!(LatencySummary::of(&corrected).p99 > 5_000.0);
        assert!(LatencySummary::of(&raw).p99 < 21.0);
    }
}
