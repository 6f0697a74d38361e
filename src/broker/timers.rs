//! Deadlines per connection: handshake timeout and heartbeats.
//!
//! A min-heap of (deadline, connection, generation). Entries are never removed early; an entry
//! whose generation no longer matches its connection is skipped when it fires (lazy deletion),
//! so rescheduling is one push and nothing scans every connection.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::ConnId;

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl Timers {
    pub(crate) fn schedule(&mut self, at: Instant, conn: ConnId, generation: u64) {
        self.heap.push(Reverse((at, conn.0, generation)));
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops one entry due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(ConnId, u64)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                let Reverse((_, conn, generation)) = self.heap.pop()?;
                Some((ConnId(conn), generation))
            }
            _ => None,
        }
    }
}
