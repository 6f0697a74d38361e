//! Delays between reconnection attempts: exponential, capped, with random jitter.
//!
//! The first attempt after a connection is lost goes at once (most cuts are blips); after the
//! n-th failed attempt in a row the client waits `initial × 2^(n-1)`, capped at `max`, less a
//! random part of up to `jitter` of it, so that many clients cut at the same moment do not come
//! back in lockstep (the "full jitter" of AWS's backoff study when `jitter` is 1).

use std::time::{Duration, SystemTime};

/// Delay generator; holds its own small random source.
#[derive(Debug)]
pub(super) struct Backoff {
    initial: Duration,
    max: Duration,
    /// Fraction of each delay that may be taken off at random, 0.0..=1.0.
    jitter: f64,
    rng: XorShift,
}

impl Backoff {
    /// `initial` ≤ `max` and `jitter` in 0.0..=1.0 (checked by `ReconnectOptions`).
    pub(super) fn new(initial: Duration, max: Duration, jitter: f64) -> Backoff {
        Backoff {
            initial,
            max,
            jitter,
            rng: XorShift::seeded(),
        }
    }

    /// The wait after `failures` failed attempts in a row (0 means none: no wait).
    pub(super) fn delay(&mut self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let doublings = (failures - 1).min(MAX_DOUBLINGS);
        let base = self
            .initial
            .checked_mul(1 << doublings)
            .unwrap_or(self.max)
            .min(self.max);
        let cut = base.mul_f64(self.jitter * self.rng.next_unit());
        base.saturating_sub(cut)
    }
}

/// 2^30 × any sensible initial delay is past any sensible cap; stops the shift overflowing.
const MAX_DOUBLINGS: u32 = 30;

/// xorshift64*: enough randomness to spread reconnections, not for secrets.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    /// Seeded from the OS random source, or from the clock if that fails.
    fn seeded() -> XorShift {
        let mut bytes = [0u8; 8];
        let seed = match getrandom::getrandom(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64),
        };
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in 0.0..1.0.
    fn next_unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_jitter_only_shortens_them() {
        let initial = Duration::from_millis(10);
        let max = Duration::from_millis(300);
        let mut exact = Backoff::new(initial, max, 0.0);
        let delays: Vec<u64> = (0..8).map(|n| exact.delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
        let mut jittered = Backoff::new(initial, max, 0.5);
        for failures in 1..40 {
            let full = exact.delay(failures);
            let delay = jittered.delay(failures);
            assert!(delay <= full && delay >= full / 2, "{delay:?} vs {full:?}");
        }
        assert_eq!(exact.delay(u32::MAX), max);
    }
}
