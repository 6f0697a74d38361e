//! Deadlines: handshake timeouts and heartbeats per connection, expiry per detached session.
//!
//! A min-heap of (deadline, target, generation). Entries are never removed early; an entry
//! whose generation no longer matches its target is skipped when it fires (lazy deletion), so
//! rescheduling is one push and nothing scans every connection.
//!
//! Every connection has one or two entries at a time (its handshake entry stays until its
//! deadline), so an entry is kept to 32 bytes: the target is packed into one word.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// What a timer entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerTarget {
    /// A connection (`ConnId.0`): handshake deadline, heartbeats, write stalls.
    Conn(usize),
    /// A detached session (`SessionKey.0`): keep-alive expiry.
    Session(usize),
}

impl TimerTarget {
    /// Connection keys as they are, session keys with the top bit set: the packed words order
    /// like the enum (connections first, then by key). Slab keys index a `Vec`, so they stay
    /// below `isize::MAX` and never use the top bit.
    fn pack(self) -> u64 {
        match self {
            TimerTarget::Conn(key) => key as u64,
            TimerTarget::Session(key) => SESSION_BIT | key as u64,
        }
    }

    fn unpack(word: u64) -> TimerTarget {
        let key = (word & !SESSION_BIT) as usize;
        if word & SESSION_BIT == 0 {
            TimerTarget::Conn(key)
        } else {
            TimerTarget::Session(key)
        }
    }
}

/// The top bit of a packed target: set for sessions.
const SESSION_BIT: u64 = 1 << 63;

#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// (deadline, packed target, generation), earliest first.
    heap: BinaryHeap<Reverse<(Instant, u64, u64)>>,
}

impl Timers {
    pub(crate) fn schedule(&mut self, at: Instant, target: TimerTarget, generation: u64) {
        self.heap.push(Reverse((at, target.pack(), generation)));
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops one entry due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(TimerTarget, u64)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                let Reverse((_, target, generation)) = self.heap.pop()?;
                Some((TimerTarget::unpack(target), generation))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn packed_targets_come_back_unchanged() {
        for target in [
            TimerTarget::Conn(0),
            TimerTarget::Conn(12_345),
            TimerTarget::Session(0),
            TimerTarget::Session(usize::MAX >> 1),
        ] {
            assert_eq!(TimerTarget::unpack(target.pack()), target);
        }
    }

    #[test]
    fn entries_due_together_pop_in_target_order() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.schedule(now, TimerTarget::Session(1), 7);
        timers.schedule(now, TimerTarget::Conn(9), 8);
        timers.schedule(now + Duration::from_secs(1), TimerTarget::Conn(0), 9);
        timers.schedule(now, TimerTarget::Conn(2), 6);
        let due: Vec<_> = std::iter::from_fn(|| timers.pop_due(now)).collect();
        assert_eq!(
            due,
            vec![
                (TimerTarget::Conn(2), 6),
                (TimerTarget::Conn(9), 8),
                (TimerTarget::Session(1), 7),
            ]
        );
        assert_eq!(timers.next_deadline(), Some(now + Duration::from_secs(1)));
    }
}
