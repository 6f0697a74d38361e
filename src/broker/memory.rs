//! The global memory budget, `max_memory_bytes` (issue #12): what the broker holds, charged as
//! it is really allocated, and what happens near and past the budget.
//!
//! Charged: stored payloads at their buffer's size class (not their length) plus the free
//! buffers the pool keeps, each stored message's slab entry, queue nodes, sessions, queues,
//! tombstones, connections, and each connection's input (partial frames, frames held back)
//! and pending control output. Per-item figures for the fixed parts are `size_of` plus an
//! estimate of what hangs off them (names, small maps), stated below. Not charged: the
//! loop's own read and write buffers (bounded per connection by its budgets) and slab or map
//! capacity left over from a burst (bounded by the peak, and not reclaimable by closing
//! anyone).
//!
//! - At [`HIGH_WATER`] of the budget, a PUBLISH is not taken: it waits in its connection's
//!   input, whose reading is paused and retried every [`MEMORY_RETRY`] (its other bytes wait
//!   in the socket). Nothing is dropped; every other frame (ACK, SUBSCRIBE, STATS, PING) is
//!   still read from connections that send no PUBLISH, so consumers can drain and admins can
//!   look; heartbeats count the pause as heard (as for rate limits). A connection holding part
//!   of a frame is not read further either (a large PUBLISH arriving in pieces).
//! - Past the budget, the buffer pool is emptied first; then the largest holders are closed, largest first, until it is met again:
//!   a session by the real cost of its queue (GOODBYE(MEMORY_LIMIT), the session ends), or a
//!   connection by its input buffer; each counted in `memory_limit_closes`.
//!
//! The core gets the budget as a number: `0` in its config means no budget (the server
//! replaces 0 with a quarter of physical memory at startup, [`crate::server`]).

use std::time::Duration;

use log::warn;

use super::delivery_queue::QueueNode;
use super::hello::Tombstone;
use super::routes::Queue;
use super::session::Session;
use super::store::StoredMessage;
use super::{Broker, ConnId, ConnState, SessionKey};
use crate::protocol::ErrorCode;

/// Share of the budget past which publishers are not read: 7/8.
pub(crate) const HIGH_WATER: (u64, u64) = (7, 8);

/// How often a publisher paused for memory is tried again.
pub(crate) const MEMORY_RETRY: Duration = Duration::from_millis(10);

/// Most holders closed by one check: the rest wait for the next (bounded work per call).
const MAX_CLOSES_PER_CHECK: usize = 64;

/// Slab entry overhead (its tag), on top of the value.
const SLAB_ENTRY: usize = 8;

/// One queue node.
pub(crate) const NODE_BYTES: u64 = (std::mem::size_of::<QueueNode>() + SLAB_ENTRY) as u64;
/// One stored message, besides its buffer.
const MESSAGE_BYTES: u64 = (std::mem::size_of::<StoredMessage>() + SLAB_ENTRY) as u64;
/// One session: the struct, its id map entry, client name, grant and subscription list (an
/// estimate: 256 bytes past the struct).
const SESSION_BYTES: u64 = (std::mem::size_of::<Session>() + SLAB_ENTRY + 256) as u64;
/// One queue: the struct, its name index entry and name (estimate: 128 bytes past it).
const QUEUE_BYTES: u64 = (std::mem::size_of::<Queue>() + SLAB_ENTRY + 128) as u64;
/// One tombstone with its map and order entries (estimate).
const TOMBSTONE_BYTES: u64 = (std::mem::size_of::<Tombstone>() + 64) as u64;
/// One connection's state, besides its buffers.
const CONN_BYTES: u64 = std::mem::size_of::<Option<ConnState>>() as u64;

impl Broker {
    /// Bytes charged to the budget now (see the module docs). O(1).
    pub fn memory_bytes(&self) -> u64 {
        self.store.allocated_bytes()
            + self.store.len() as u64 * MESSAGE_BYTES
            + self.nodes.len() as u64 * NODE_BYTES
            + self.sessions.len() as u64 * SESSION_BYTES
            + self.routes.len() as u64 * QUEUE_BYTES
            + self.tombstones.len() as u64 * TOMBSTONE_BYTES
            + self.conn_count as u64 * CONN_BYTES
            + self.buffered_bytes as u64
    }

    /// The budget in force; `u64::MAX` when none is set.
    pub(crate) fn max_memory_bytes(&self) -> u64 {
        match self.config.max_memory_bytes {
            0 => u64::MAX,
            max => max,
        }
    }

    /// Whether memory is past [`HIGH_WATER`] of the budget: publishers are not read.
    pub(super) fn is_memory_high(&self) -> bool {
        let max = self.max_memory_bytes();
        max != u64::MAX && self.memory_bytes() >= max / HIGH_WATER.1 * HIGH_WATER.0
    }

    /// Pauses reading `conn` for [`MEMORY_RETRY`], counting the episode once.
    pub(super) fn pause_for_memory(&mut self, conn: ConnId) {
        let until = self.now + MEMORY_RETRY;
        let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) else {
            return;
        };
        // One episode per stretch: a pause that starts within a second of the previous
        // one's end continues it.
        let now = self.now;
        let is_new_episode = !state.flow.is_memory_paused
            || state
                .flow
                .paused_until
                .is_none_or(|at| now.saturating_duration_since(at) > Duration::from_secs(1));
        if is_new_episode {
            state.flow.is_memory_paused = true;
            self.metrics.memory_pauses += 1;
        }
        state.flow.paused_until = Some(state.flow.paused_until.map_or(until, |at| at.max(until)));
    }

    /// Past the budget, closes the largest holders until it is met (at most
    /// [`MAX_CLOSES_PER_CHECK`] per call).
    ///
    /// Bounded work: O(sessions + connections) per close, only past the budget.
    pub(super) fn enforce_memory_budget(&mut self) {
        let max = self.max_memory_bytes();
        if self.memory_bytes() <= max {
            return;
        }
        // Free buffers kept for reuse go first: nobody loses anything.
        self.store.trim_pool();
        for _ in 0..MAX_CLOSES_PER_CHECK {
            // (What the last close freed went to the pool: not kept either.)
            self.store.trim_pool();
            let used = self.memory_bytes();
            if used <= max {
                return;
            }
            let session = self
                .sessions
                .iter()
                .map(|(key, s)| (s.queue.bytes, key))
                .max();
            let conn = self
                .conns
                .iter()
                .enumerate()
                .filter_map(|(index, c)| c.as_ref().map(|c| (c, index)))
                .filter(|(c, _)| c.close.is_none())
                .map(|(c, index)| (c.input.capacity() as u64, index))
                .max();
            let session_bytes = session.map_or(0, |(bytes, _)| bytes);
            let conn_bytes = conn.map_or(0, |(bytes, _)| bytes);
            if session_bytes == 0 && conn_bytes == 0 {
                return;
            }
            self.metrics.memory_limit_closes += 1;
            let text = "server memory over max_memory_bytes: largest consumers closed";
            if session_bytes >= conn_bytes {
                let Some((bytes, key)) = session else {
                    return;
                };
                let key = SessionKey(key);
                warn!(
                    "memory {used} B over max_memory_bytes {max} B: closing session {:#x} \
                     holding {bytes} B with MEMORY_LIMIT",
                    self.sessions[key.0].id
                );
                match self.sessions[key.0].conn {
                    Some(conn) => self.goodbye(conn, ErrorCode::MemoryLimit, text),
                    None => {
                        self.end_session(key, ErrorCode::MemoryLimit);
                    }
                }
            } else if let Some((bytes, index)) = conn {
                warn!(
                    "memory {used} B over max_memory_bytes {max} B: closing conn {index} \
                     holding {bytes} B of input with MEMORY_LIMIT"
                );
                let conn = ConnId(index);
                self.set_input(conn, Vec::new());
                self.goodbye(conn, ErrorCode::MemoryLimit, text);
            }
        }
    }

    /// Replaces `conn`'s input buffer, keeping the buffered-bytes charge exact.
    pub(super) fn set_input(&mut self, conn: ConnId, input: Vec<u8>) {
        let Some(state) = self.conns.get_mut(conn.0).and_then(Option::as_mut) else {
            return;
        };
        let before = state.input.capacity();
        let after = input.capacity();
        state.input = input;
        self.buffered_bytes = self.buffered_bytes - before + after;
    }
}
