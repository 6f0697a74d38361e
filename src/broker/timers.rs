//! Deadlines: handshake timeouts and heartbeats per connection, expiry per detached session.
//!
//! A min-heap of (deadline, target, generation). Entries are never removed early; an entry
//! whose generation no longer matches its target is skipped when it fires (lazy deletion), so
//! rescheduling is one push and nothing scans every connection.

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

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, TimerTarget, u64)>>,
}

impl Timers {
    pub(crate) fn schedule(&mut self, at: Instant, target: TimerTarget, generation: u64) {
        self.heap.push(Reverse((at, target, generation)));
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops one entry due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(TimerTarget, u64)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                let Reverse((_, target, generation)) = self.heap.pop()?;
                Some((target, generation))
            }
            _ => None,
        }
    }
}
