//! Time to live (issue #14): a message may expire before it is sent. Layout and rules:
//! protocol.md §PUBLISH (TTL) and §Time to live.
//!
//! A message with a time to live gets an *anchor* node in the shared node slab and one heap
//! entry (its deadline, its anchor), once per message, not per subscriber. Each pending node
//! holding it is linked into the anchor's chain when queued and unlinked in O(1) when it is
//! sent, conflated away, dropped or drained, so the chain is always exactly the sessions that
//! hold it unsent. When the deadline passes, [`Broker::expire_due`] walks the chain and
//! releases each node, at most [`MAX_EXPIRED_PER_TICK`] per tick (the rest are due at once,
//! so the loop comes straight back). In-flight (sent, unacked) messages are never expired.
//! A message that reaches the head of a session's queue expired is also dropped at send time.
//!
//! Memory: one anchor node and one heap entry (about 80 bytes) per message with a time to live,
//! kept until its deadline even when every subscriber was sent it sooner; so bounded by
//! publish rate × time to live, not by a configured limit. A timer wheel, or freeing the anchor
//! with the message and checking heap entries on pop, would tighten this (not done yet).
//!
//! Invariants: an anchor lives until its heap entry is handled (at or after its deadline),
//! so a live message's anchor key is never reused before its deadline; nodes are linked to
//! an anchor only before its deadline.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::delivery_queue::{
    first_in_chain, link_expiry, new_anchor, remove_anchor, DeliveryQueue, Entry, NodeKey,
};
use super::{Broker, MsgKey, QueueId, SessionKey};

/// Most pending nodes expired per [`Broker::handle_timeout`] (bounded work per tick).
const MAX_EXPIRED_PER_TICK: usize = 4_096;

/// Messages with a deadline, earliest first: (deadline, anchor node key).
#[derive(Debug, Default)]
pub(crate) struct Expiry {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Expiry {
    /// The earliest deadline (the loop wakes for it).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }
}

impl Broker {
    /// The deadline of a message published to `queue` with `ttl_ms` from its PUBLISH (which
    /// overrides the queue's `ttl_ms`); `None` for no expiry (0 means none).
    pub(super) fn deadline_for(&self, queue: QueueId, ttl_ms: Option<u32>) -> Option<Instant> {
        let ttl = ttl_ms.unwrap_or(self.routes.queue(queue).ttl_ms);
        (ttl > 0).then(|| self.now + Duration::from_millis(u64::from(ttl)))
    }

    /// A just-stored message expires at `at`: its anchor and heap entry.
    pub(super) fn schedule_expiry(&mut self, msg: MsgKey, at: Instant) {
        let anchor = new_anchor(&mut self.nodes, msg);
        self.store.set_expiry(msg, at, anchor);
        self.expiry.heap.push(Reverse((at, anchor_key(anchor))));
    }

    /// A pending node of session `key` now holds `msg`: if `msg` expires, the node joins its
    /// chain. O(1).
    pub(super) fn link_if_expiring(&mut self, key: SessionKey, msg: MsgKey, node: NodeKey) {
        if let Some((at, anchor)) = self.store.get(msg).expiry {
            if at > self.now {
                link_expiry(&mut self.nodes, anchor, node, key.0);
            }
        }
    }

    /// True if `msg` has a deadline at or before `now`.
    pub(super) fn is_expired(&self, msg: MsgKey) -> bool {
        self.store
            .get(msg)
            .expiry
            .is_some_and(|(at, _)| at <= self.now)
    }

    /// Releases pending nodes of messages whose deadline passed (bounded per tick).
    pub(super) fn expire_due(&mut self, now: Instant) {
        let mut budget = MAX_EXPIRED_PER_TICK;
        while let Some(&Reverse((at, anchor))) = self.expiry.heap.peek() {
            if at > now {
                return;
            }
            self.expiry.heap.pop();
            let anchor = node_key(anchor);
            while let Some((owner, node, entry)) = first_in_chain(&self.nodes, anchor) {
                if budget == 0 {
                    // Due at once: the loop comes straight back for the rest.
                    self.expiry.heap.push(Reverse((at, anchor_key(anchor))));
                    return;
                }
                budget -= 1;
                self.expire_node(SessionKey(owner), node, entry);
            }
            remove_anchor(&mut self.nodes, anchor);
        }
    }

    /// Drops expired messages at the head of a session's pending list before anything is
    /// sent (bounded by the window: at most that many are looked at).
    pub(super) fn expire_pending_front(&mut self, key: SessionKey) {
        for _ in 0..self.sessions[key.0].window.max(1) {
            let Some((node, entry)) = self.sessions[key.0].queue.front(&self.nodes) else {
                return;
            };
            if !self.is_expired(entry.msg) {
                return;
            }
            self.expire_node(key, node, entry);
        }
    }

    /// Removes one pending node whose message expired: released, counted, the session told
    /// (DROPPED(EXPIRED) for EXTENSIONS), a group assignment given up.
    fn expire_node(&mut self, key: SessionKey, node: NodeKey, entry: Entry) {
        let Some(session) = self.sessions.get_mut(key.0) else {
            return;
        };
        let message = self.store.get(entry.msg);
        let bytes = message.queue_bytes();
        if let (Some(hash), Some(conflation)) = (message.conflation, &mut session.conflation) {
            if conflation.get(&hash) == Some(&node) {
                conflation.remove(&hash);
            }
        }
        let _ = DeliveryQueue::remove(&mut session.queue, &mut self.nodes, node, bytes);
        session.expired += 1;
        self.metrics.messages_expired += 1;
        if session.has_extensions {
            if let Some(conn) = session.conn {
                self.mark_dirty(conn);
            }
        }
        self.store.release(entry.msg);
        if entry.tag.is_group() {
            self.handle_group_expired(entry.tag);
        }
    }
}

fn anchor_key(anchor: NodeKey) -> usize {
    anchor.0
}

fn node_key(key: usize) -> NodeKey {
    NodeKey(key)
}
