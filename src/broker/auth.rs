//! The failed-authentication slowdown (issue 5, protocol.md §Authentication): a bucket of
//! failed attempts per source address, so password guessing over the network is slow.
//!
//! This is the run-time state of authentication; the checks themselves (hashes, tokens,
//! signed tokens, permissions) are pure functions in [`crate::credentials`]. Time comes in as
//! `now`: nothing here reads a clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed attempts a source may make at once before its HELLOs are slowed down.
const FAILURE_BURST: f64 = 5.0;
/// One more attempt is allowed per this long.
const FAILURE_REFILL: Duration = Duration::from_secs(10);
/// No HELLO is held longer than this; past it, further attempts from a source are refused
/// without being checked (answered after this delay), so parallel connections cannot raise the
/// guessing rate above one per `FAILURE_REFILL`.
const MAX_AUTH_DELAY: Duration = Duration::from_secs(60);
/// Sources remembered at most; beyond that, the ones that have fully recovered are forgotten
/// (then all, which only forgives). 10,000 × ~64 bytes.
const MAX_SOURCES: usize = 10_000;

/// What to do with a HELLO carrying credentials from a source, given its failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Check it now.
    Now,
    /// Hold it and check it then (the source's bucket is empty; a slot was reserved).
    At(Instant),
    /// Hold it and refuse it unchecked then (the source has more held than the delay allows).
    RefuseAt(Instant),
}

#[derive(Debug)]
struct Bucket {
    /// Attempts allowed now; negative when held HELLOs reserved future ones.
    tokens: f64,
    at: Instant,
    /// Inside a slowdown episode (logged once).
    is_throttling: bool,
}

/// Failed-authentication buckets per source address: burst 5, refill 1 per 10 s.
#[derive(Debug, Default)]
pub(crate) struct FailureBuckets {
    by_source: HashMap<IpAddr, Bucket>,
}

impl FailureBuckets {
    /// Decides whether a HELLO with credentials from `source` is checked now. The second value
    /// is true when this starts a slowdown episode (the caller logs it once).
    pub(crate) fn admit(&mut self, source: IpAddr, now: Instant) -> (Admission, bool) {
        let Some(bucket) = self.by_source.get_mut(&source) else {
            return (Admission::Now, false);
        };
        refill(bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.is_throttling = false;
            return (Admission::Now, false);
        }
        let starts_episode = !bucket.is_throttling;
        bucket.is_throttling = true;
        let wait = FAILURE_REFILL.mul_f64(1.0 - bucket.tokens);
        if wait > MAX_AUTH_DELAY {
            return (Admission::RefuseAt(now + MAX_AUTH_DELAY), starts_episode);
        }
        bucket.tokens -= 1.0;
        (Admission::At(now + wait), starts_episode)
    }

    /// A HELLO from `source` checked at once failed: takes one attempt from its bucket.
    pub(crate) fn record_failure(&mut self, source: IpAddr, now: Instant) {
        if !self.by_source.contains_key(&source) && self.by_source.len() >= MAX_SOURCES {
            self.by_source.retain(|_, bucket| {
                refill(bucket, now);
                bucket.tokens < FAILURE_BURST
            });
            if self.by_source.len() >= MAX_SOURCES {
                self.by_source.clear();
            }
        }
        let bucket = self.by_source.entry(source).or_insert(Bucket {
            tokens: FAILURE_BURST,
            at: now,
            is_throttling: false,
        });
        refill(bucket, now);
        bucket.tokens -= 1.0;
    }
}

fn refill(bucket: &mut Bucket, now: Instant) {
    let elapsed = now.saturating_duration_since(bucket.at);
    bucket.at = now;
    let refilled = elapsed.as_secs_f64() / FAILURE_REFILL.as_secs_f64();
    bucket.tokens = (bucket.tokens + refilled).min(FAILURE_BURST);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_five_failures_then_one_every_ten_seconds() {
        let mut buckets = FailureBuckets::default();
        let source: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(buckets.admit(source, t0).0, Admission::Now);
            buckets.record_failure(source, t0);
        }
        let (admission, starts) = buckets.admit(source, t0);
        assert_eq!(admission, Admission::At(t0 + FAILURE_REFILL));
        assert!(starts);
        let (admission, starts) = buckets.admit(source, t0);
        assert_eq!(admission, Admission::At(t0 + 2 * FAILURE_REFILL));
        assert!(!starts, "one episode");
        // Another source is not affected.
        assert_eq!(buckets.admit([10, 0, 0, 2].into(), t0).0, Admission::Now);
        // Reservations past the longest delay are refused unchecked.
        for _ in 0..10 {
            buckets.admit(source, t0);
        }
        assert!(matches!(
            buckets.admit(source, t0).0,
            Admission::RefuseAt(_)
        ));
        // Much later the bucket is full again.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(buckets.admit(source, later).0, Admission::Now);
    }
}
