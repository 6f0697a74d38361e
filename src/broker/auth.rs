//! The failed-authentication slowdown (issue 5, protocol.md §Authentication): a bucket of
//! failed attempts per source address and per user name, so password guessing over the
//! network is slow, from one address or from many against one user.
//!
//! Issue #12: a slowdown only delays. A held HELLO is checked at the latest when its
//! handshake deadline is near (the caller passes that instant), never refused unchecked, so a
//! correct credential is accepted whatever others did from the same address; how many checks
//! run is bounded by the global budget of `super::password`. The tables are bounded: when
//! full, the entry that has recovered the most (the least active offender) is forgotten, never
//! the whole table.
//!
//! This is the run-time state of authentication; the checks themselves (hashes, tokens,
//! signed tokens, permissions) are pure functions in [`crate::credentials`]. Time comes in as
//! `now`: nothing here reads a clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Failed attempts a source may make at once before its HELLOs are slowed down.
const FAILURE_BURST: f64 = 5.0;
/// One more attempt is allowed per this long.
const FAILURE_REFILL: Duration = Duration::from_secs(10);
/// Sources (or users) remembered at most; beyond that, the one that has recovered the most is
/// forgotten. 10,000 × ~64 bytes.
const MAX_SOURCES: usize = 10_000;

/// What to do with a HELLO carrying credentials from a source, given its failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Check it now.
    Now,
    /// Hold it and check it then (the source's bucket is empty; a slot was reserved), at the
    /// latest at the instant given to [`FailureBuckets::admit`].
    At(Instant),
}

#[derive(Debug)]
struct Bucket {
    /// Attempts allowed now; negative when held HELLOs reserved future ones.
    tokens: f64,
    at: Instant,
    /// Inside a slowdown episode (logged once).
    is_throttling: bool,
}

/// Failed-authentication buckets per key (source address, user name): burst 5, refill 1 per
/// 10 s.
#[derive(Debug)]
pub(crate) struct FailureBuckets<K> {
    by_source: HashMap<K, Bucket>,
}

impl<K> Default for FailureBuckets<K> {
    fn default() -> Self {
        FailureBuckets {
            by_source: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> FailureBuckets<K> {
    /// Whether `source` has failed recently (its bucket is not full): its checks wait behind
    /// those of sources that have not.
    pub(crate) fn is_suspect(&mut self, source: &K, now: Instant) -> bool {
        self.by_source.get_mut(source).is_some_and(|bucket| {
            refill(bucket, now);
            bucket.tokens < FAILURE_BURST
        })
    }

    /// Decides whether a HELLO with credentials from `source` is checked now, or held (at most
    /// until `latest`). The second value is true when this starts a slowdown episode (the
    /// caller logs it once).
    pub(crate) fn admit(&mut self, source: &K, now: Instant, latest: Instant) -> (Admission, bool) {
        let Some(bucket) = self.by_source.get_mut(source) else {
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
        // Reservations go no deeper than the delay that is allowed: more parallel HELLOs do
        // not push later ones further out, they are checked at `latest` (and the global check
        // budget bounds how many run).
        if now + wait <= latest {
            bucket.tokens -= 1.0;
        }
        (Admission::At((now + wait).min(latest)), starts_episode)
    }

    /// A HELLO from `source` checked at once failed: takes one attempt from its bucket.
    ///
    /// Bounded work: O(1), or O(entries) when the table is full and a new source comes.
    pub(crate) fn record_failure(&mut self, source: &K, now: Instant) {
        if !self.by_source.contains_key(source) && self.by_source.len() >= MAX_SOURCES {
            // Forget the least active offender (the most recovered), not everyone: ~10,000
            // cheap failures from new addresses no longer wipe the table (issue #12).
            let forgiven = self
                .by_source
                .iter_mut()
                .map(|(key, bucket)| {
                    refill(bucket, now);
                    (bucket.tokens, key)
                })
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, key)| key.clone());
            if let Some(key) = forgiven {
                self.by_source.remove(&key);
            }
        }
        let bucket = self.by_source.entry(source.clone()).or_insert(Bucket {
            tokens: FAILURE_BURST,
            at: now,
            is_throttling: false,
        });
        refill(bucket, now);
        bucket.tokens -= 1.0;
    }
}

impl<K: Hash + Eq + Clone> FailureBuckets<K> {
    /// Gives back the attempt a check took provisionally (it passed).
    pub(crate) fn refund(&mut self, source: &K, now: Instant) {
        if let Some(bucket) = self.by_source.get_mut(source) {
            refill(bucket, now);
            bucket.tokens = (bucket.tokens + 1.0).min(FAILURE_BURST);
        }
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
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn a_source_gets_five_failures_then_one_every_ten_seconds_never_past_the_latest() {
        let mut buckets = FailureBuckets::default();
        let source: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        let latest = t0 + Duration::from_secs(30);
        for _ in 0..5 {
            assert_eq!(buckets.admit(&source, t0, latest).0, Admission::Now);
            buckets.record_failure(&source, t0);
        }
        let (admission, starts) = buckets.admit(&source, t0, latest);
        assert_eq!(admission, Admission::At(t0 + FAILURE_REFILL));
        assert!(starts);
        let (admission, starts) = buckets.admit(&source, t0, latest);
        assert_eq!(admission, Admission::At(t0 + 2 * FAILURE_REFILL));
        assert!(!starts, "one episode");
        // Another source is not affected.
        let other: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(buckets.admit(&other, t0, latest).0, Admission::Now);
        // Past the latest instant a HELLO is held until then, and checked (issue #12).
        for _ in 0..10 {
            buckets.admit(&source, t0, latest);
        }
        assert_eq!(buckets.admit(&source, t0, latest).0, Admission::At(latest));
        // Much later the bucket is full again.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(
            buckets
                .admit(&source, later, later + Duration::from_secs(30))
                .0,
            Admission::Now
        );
    }

    // Issue #12: ~10,000 cheap failures from distinct addresses wiped the table.
    #[test]
    fn a_full_table_forgets_the_least_active_offender_not_the_worst() {
        let mut buckets = FailureBuckets::default();
        let t0 = Instant::now();
        let worst: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..20 {
            buckets.record_failure(&worst, t0);
        }
        for n in 0..(MAX_SOURCES as u32 + 100) {
            let one_off = IpAddr::from((0x0B00_0000 + n).to_be_bytes());
            buckets.record_failure(&one_off, t0 + Duration::from_millis(u64::from(n)));
        }
        assert!(buckets.by_source.len() <= MAX_SOURCES);
        assert!(buckets.is_suspect(&worst, t0 + Duration::from_secs(20)));
    }
}
