//! A session's delivery queue (not a named queue: those are `routes.rs`): pending messages in
//! an intrusive list, in-flight ones in a window.
//!
//! Pending (unsent) messages are nodes in one `Slab<QueueNode>` shared by every session; a
//! session's [`DeliveryQueue`] holds only `head`, `tail` and counts, and the links are slab keys
//! (mosquitto's per-client message list, in safe code). Removing a conflated node from the
//! middle is O(1).
//!
//! In-flight (sent, unacked) messages sit in a ring indexed by `seq - base_seq`: delivery
//! sequence numbers are assigned when a message is sent, so in-flight seqs are one contiguous
//! range and an individual ack is O(1). The ring spans from the oldest unacked seq to the
//! newest sent one; the in-flight window bounds that span (not just the count of unacked
//! slots), so a client that never acks one seq cannot make the ring grow without bound.
//!
//! After a resume, `resend_from` walks the ring once to redeliver, with their original seqs,
//! the in-flight messages the client did not receive.
//!
//! Invariants: `pending_len` is the length of the list from `head`; `in_flight` is the number
//! of `Some` slots in `ring`; `ring` is empty or its first slot is `Some`; `bytes` is the sum of
//! payload bytes of every message held (pending and in flight).

use std::collections::VecDeque;

use slab::Slab;

use super::store::MsgKey;

const NIL: usize = usize::MAX;

/// What a queued message is held for: [`GroupTag::NONE`] for a plain subscription, else the
/// key of the group assignment it serves (`groups.rs`), so an ack or a session end releases
/// the assignment in O(1), without a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GroupTag(pub(crate) u32);

impl GroupTag {
    /// Not a group message.
    pub(crate) const NONE: GroupTag = GroupTag(u32::MAX);

    pub(crate) fn is_group(self) -> bool {
        self != GroupTag::NONE
    }
}

/// One held message: its key and what it is held for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) msg: MsgKey,
    pub(crate) tag: GroupTag,
}

/// Key of a node in the shared node slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NodeKey(pub(super) usize);

/// One pending message in one session's queue.
#[derive(Debug)]
pub(crate) struct QueueNode {
    msg: MsgKey,
    tag: GroupTag,
    prev: usize,
    next: usize,
    /// For a message with a time to live (`expiry.rs`): the session whose queue holds it,
    /// and the links of the message's chain of pending nodes (every session holding it
    /// unsent), starting at an anchor node of its own. NIL links otherwise.
    owner: usize,
    msg_prev: usize,
    msg_next: usize,
}

/// The shared node slab.
pub(crate) type Nodes = Slab<QueueNode>;

/// One session's queue.
#[derive(Debug)]
pub(crate) struct DeliveryQueue {
    head: usize,
    tail: usize,
    pending_len: u32,
    /// Seq of `ring[0]`; the next seq to send when `ring` is empty.
    base_seq: u64,
    ring: VecDeque<Option<Entry>>,
    in_flight: u32,
    /// Payload bytes held, pending and in flight.
    pub(crate) bytes: u64,
    /// Highest delivery seq sent so far (0 = none).
    pub(crate) last_sent_seq: u64,
    /// Next seq to redeliver after a resume; past `last_sent_seq` when there is none.
    resend_from: u64,
    /// In-flight messages with seq ≥ `resend_from`: those still to redeliver. Kept as a
    /// count so that asking "anything left to redeliver?" (every full write batch) is O(1).
    redeliveries_left: u32,
}

impl Default for DeliveryQueue {
    fn default() -> DeliveryQueue {
        DeliveryQueue {
            head: NIL,
            tail: NIL,
            pending_len: 0,
            base_seq: 1,
            ring: VecDeque::new(),
            in_flight: 0,
            bytes: 0,
            last_sent_seq: 0,
            resend_from: 1,
            redeliveries_left: 0,
        }
    }
}

impl DeliveryQueue {
    /// Messages held: pending plus in flight.
    pub(crate) fn depth(&self) -> u32 {
        self.pending_len + self.in_flight
    }

    pub(crate) fn pending_len(&self) -> u32 {
        self.pending_len
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight
    }

    pub(crate) fn has_pending(&self) -> bool {
        self.head != NIL
    }

    /// Seqs from the oldest unacked to the newest sent: what the in-flight window bounds.
    pub(crate) fn span(&self) -> u32 {
        // The ring never exceeds the window, a u32.
        u32::try_from(self.ring.len()).unwrap_or(u32::MAX)
    }

    /// Lowest seq still awaiting an ack, or `last_sent_seq + 1` if none.
    pub(crate) fn lowest_unacked(&self) -> u64 {
        if self.ring.is_empty() {
            self.last_sent_seq + 1
        } else {
            self.base_seq
        }
    }

    /// Up to `limit` in-flight (unacked) seqs, lowest first.
    pub(crate) fn in_flight_seqs(&self, limit: usize) -> Vec<u64> {
        let base = self.base_seq;
        self.ring
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.is_some())
            .map(|(i, _)| base + i as u64)
            .take(limit)
            .collect()
    }

    /// After a resume: redeliver every in-flight seq ≥ `seq`.
    ///
    /// Bounded work: one pass over the in-flight ring (at most the window), once per resume.
    pub(crate) fn set_resend_from(&mut self, seq: u64) {
        self.resend_from = seq;
        let left = self
            .ring
            .iter()
            .skip(self.resend_offset())
            .filter(|slot| slot.is_some())
            .count();
        // The ring never exceeds the window, a u32.
        self.redeliveries_left = u32::try_from(left).unwrap_or(u32::MAX);
    }

    /// True while in-flight messages remain to be redelivered. O(1).
    pub(crate) fn has_redeliveries(&self) -> bool {
        self.redeliveries_left > 0
    }

    /// Next in-flight message to redeliver, with its seq.
    pub(crate) fn next_redelivery(&mut self) -> Option<(Entry, u64)> {
        while self.resend_from <= self.last_sent_seq {
            let seq = self.resend_from.max(self.base_seq);
            self.resend_from = seq + 1;
            let index = usize::try_from(seq - self.base_seq).ok()?;
            if let Some(Some(msg)) = self.ring.get(index) {
                self.redeliveries_left -= 1;
                return Some((*msg, seq));
            }
        }
        None
    }

    fn resend_offset(&self) -> usize {
        usize::try_from(self.resend_from.saturating_sub(self.base_seq)).unwrap_or(usize::MAX)
    }

    /// Appends a message at the tail of the pending list.
    pub(crate) fn push_back(&mut self, nodes: &mut Nodes, msg: MsgKey, bytes: u64) -> NodeKey {
        self.push_back_tagged(nodes, msg, GroupTag::NONE, bytes)
    }

    /// Appends a message held for `tag` at the tail of the pending list.
    pub(crate) fn push_back_tagged(
        &mut self,
        nodes: &mut Nodes,
        msg: MsgKey,
        tag: GroupTag,
        bytes: u64,
    ) -> NodeKey {
        let key = nodes.insert(QueueNode {
            msg,
            tag,
            prev: self.tail,
            next: NIL,
            owner: NIL,
            msg_prev: NIL,
            msg_next: NIL,
        });
        if self.tail == NIL {
            self.head = key;
        } else {
            nodes[self.tail].next = key;
        }
        self.tail = key;
        self.pending_len += 1;
        self.bytes += bytes;
        NodeKey(key)
    }

    /// The oldest pending node and its entry.
    pub(crate) fn front(&self, nodes: &Nodes) -> Option<(NodeKey, Entry)> {
        let node = nodes.get(self.head)?;
        Some((
            NodeKey(self.head),
            Entry {
                msg: node.msg,
                tag: node.tag,
            },
        ))
    }

    /// The message of a pending node (for conflation checks).
    pub(crate) fn node_msg(nodes: &Nodes, node: NodeKey) -> Option<MsgKey> {
        nodes.get(node.0).map(|n| n.msg)
    }

    /// Unlinks a pending node and returns its message.
    ///
    /// Precondition: `node` is in this queue's pending list.
    pub(crate) fn remove(&mut self, nodes: &mut Nodes, node: NodeKey, bytes: u64) -> MsgKey {
        unlink_expiry(nodes, node.0);
        let QueueNode {
            msg, prev, next, ..
        } = nodes.remove(node.0);
        if prev == NIL {
            self.head = next;
        } else {
            nodes[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            nodes[next].prev = prev;
        }
        self.pending_len -= 1;
        self.bytes -= bytes;
        msg
    }

    /// Moves the head of the pending list into flight; returns its message, the node it was in
    /// (now freed) and its delivery seq.
    pub(crate) fn send_next(&mut self, nodes: &mut Nodes) -> Option<(Entry, NodeKey, u64)> {
        if self.head == NIL {
            return None;
        }
        let node = NodeKey(self.head);
        // Sent: no longer expires (in-flight messages are never expired).
        unlink_expiry(nodes, self.head);
        let QueueNode { msg, tag, next, .. } = nodes.remove(self.head);
        self.head = next;
        if next == NIL {
            self.tail = NIL;
        } else {
            nodes[next].prev = NIL;
        }
        self.pending_len -= 1;
        if self.ring.is_empty() {
            self.base_seq = self.last_sent_seq + 1;
        }
        self.last_sent_seq += 1;
        if self.resend_from == self.last_sent_seq {
            // Nothing left to redeliver: keep the cursor just past the newest sent seq.
            self.resend_from += 1;
        }
        let entry = Entry { msg, tag };
        self.ring.push_back(Some(entry));
        self.in_flight += 1;
        Some((entry, node, self.last_sent_seq))
    }

    /// Acks every in-flight seq ≤ `up_to`, calling `freed` for each message released.
    pub(crate) fn ack_up_to(&mut self, up_to: u64, mut freed: impl FnMut(Entry)) {
        while self.base_seq <= up_to {
            let Some(slot) = self.ring.pop_front() else {
                break;
            };
            let seq = self.base_seq;
            self.base_seq += 1;
            if let Some(msg) = slot {
                self.in_flight -= 1;
                if seq >= self.resend_from {
                    self.redeliveries_left -= 1;
                }
                freed(msg);
            }
        }
        self.trim_front();
    }

    /// Acks one seq if it is in flight; returns its message. Also how a group takes back a
    /// delivery whose ack deadline passed: a later ack of that seq is then a no-op.
    pub(crate) fn ack_one(&mut self, seq: u64) -> Option<Entry> {
        let index = usize::try_from(seq.checked_sub(self.base_seq)?).ok()?;
        let msg = self.ring.get_mut(index)?.take()?;
        self.in_flight -= 1;
        if seq >= self.resend_from {
            self.redeliveries_left -= 1;
        }
        self.trim_front();
        Some(msg)
    }

    /// Subtracts acked bytes (the caller knows each message's size).
    pub(crate) fn release_bytes(&mut self, bytes: u64) {
        self.bytes -= bytes;
    }

    fn trim_front(&mut self) {
        while let Some(None) = self.ring.front() {
            self.ring.pop_front();
            self.base_seq += 1;
        }
    }

    /// Empties the queue, calling `freed` for every message it held (pending and in flight).
    pub(crate) fn drain(&mut self, nodes: &mut Nodes, mut freed: impl FnMut(Entry)) {
        while self.head != NIL {
            unlink_expiry(nodes, self.head);
            let QueueNode { msg, tag, next, .. } = nodes.remove(self.head);
            self.head = next;
            freed(Entry { msg, tag });
        }
        self.tail = NIL;
        self.pending_len = 0;
        for msg in self.ring.drain(..).flatten() {
            freed(msg);
        }
        self.in_flight = 0;
        self.bytes = 0;
        self.redeliveries_left = 0;
    }
}

/// A new expiry chain for `msg` (`expiry.rs`): an anchor node in no session's queue.
pub(crate) fn new_anchor(nodes: &mut Nodes, msg: MsgKey) -> NodeKey {
    NodeKey(nodes.insert(QueueNode {
        msg,
        tag: GroupTag::NONE,
        prev: NIL,
        next: NIL,
        owner: NIL,
        msg_prev: NIL,
        msg_next: NIL,
    }))
}

/// Links the pending node `node` of session `owner` into the expiry chain after `anchor`.
pub(crate) fn link_expiry(nodes: &mut Nodes, anchor: NodeKey, node: NodeKey, owner: usize) {
    let Some(first) = nodes.get(anchor.0).map(|a| a.msg_next) else {
        return;
    };
    if let Some(n) = nodes.get_mut(node.0) {
        n.owner = owner;
        n.msg_prev = anchor.0;
        n.msg_next = first;
    }
    if let Some(f) = nodes.get_mut(first) {
        f.msg_prev = node.0;
    }
    nodes[anchor.0].msg_next = node.0;
}

/// The first pending node on `anchor`'s chain, with its session and entry; `None` once the
/// chain is empty (every holder sent, dropped or ended).
pub(crate) fn first_in_chain(nodes: &Nodes, anchor: NodeKey) -> Option<(usize, NodeKey, Entry)> {
    let first = nodes.get(anchor.0)?.msg_next;
    let node = nodes.get(first)?;
    Some((
        node.owner,
        NodeKey(first),
        Entry {
            msg: node.msg,
            tag: node.tag,
        },
    ))
}

/// Removes an anchor whose chain is empty.
pub(crate) fn remove_anchor(nodes: &mut Nodes, anchor: NodeKey) {
    if nodes.get(anchor.0).is_some_and(|a| a.msg_next == NIL) {
        nodes.remove(anchor.0);
    }
}

/// Takes a node out of its expiry chain (no-op for one in none). O(1).
fn unlink_expiry(nodes: &mut Nodes, key: usize) {
    let Some(node) = nodes.get(key) else {
        return;
    };
    let (prev, next) = (node.msg_prev, node.msg_next);
    if prev == NIL {
        return;
    }
    if let Some(p) = nodes.get_mut(prev) {
        p.msg_next = next;
    }
    if let Some(n) = nodes.get_mut(next) {
        n.msg_prev = prev;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize) -> MsgKey {
        MsgKey(n)
    }

    #[test]
    fn pending_messages_are_sent_in_order_with_consecutive_seqs() {
        let mut nodes = Nodes::new();
        let mut q = DeliveryQueue::default();
        for n in 0..3 {
            q.push_back(&mut nodes, msg(n), 10);
        }
        assert_eq!(q.depth(), 3);
        let sent: Vec<_> = std::iter::from_fn(|| q.send_next(&mut nodes))
            .map(|(e, _, seq)| (e.msg, seq))
            .collect();
        assert_eq!(sent, vec![(msg(0), 1), (msg(1), 2), (msg(2), 3)]);
        assert_eq!(q.in_flight(), 3);
        assert!(nodes.is_empty());
    }

    #[test]
    fn removing_a_middle_node_keeps_the_list_linked() {
        let mut nodes = Nodes::new();
        let mut q = DeliveryQueue::default();
        q.push_back(&mut nodes, msg(0), 1);
        let middle = q.push_back(&mut nodes, msg(1), 1);
        q.push_back(&mut nodes, msg(2), 1);
        assert_eq!(q.remove(&mut nodes, middle, 1), msg(1));
        let order: Vec<_> = std::iter::from_fn(|| q.send_next(&mut nodes))
            .map(|(e, _, _)| e.msg)
            .collect();
        assert_eq!(order, vec![msg(0), msg(2)]);
    }

    #[test]
    fn individual_and_cumulative_acks_free_the_right_slots() {
        let mut nodes = Nodes::new();
        let mut q = DeliveryQueue::default();
        for n in 0..5 {
            q.push_back(&mut nodes, msg(n), 1);
            q.send_next(&mut nodes);
        }
        assert_eq!(q.ack_one(3).map(|e| e.msg), Some(msg(2)));
        assert_eq!(q.ack_one(3), None, "second ack of the same seq is a no-op");
        let mut freed = Vec::new();
        q.ack_up_to(2, |e| freed.push(e.msg));
        assert_eq!(freed, vec![msg(0), msg(1)]);
        assert_eq!(q.in_flight(), 2);
        freed.clear();
        q.ack_up_to(5, |e| freed.push(e.msg));
        assert_eq!(freed, vec![msg(3), msg(4)]);
        assert_eq!(q.in_flight(), 0);
        // The next send continues the sequence.
        q.push_back(&mut nodes, msg(9), 1);
        assert_eq!(q.send_next(&mut nodes).map(|s| s.2), Some(6));
        assert_eq!(q.ack_one(6).map(|e| e.msg), Some(msg(9)));
    }

    #[test]
    fn redelivery_walks_unacked_seqs_from_the_resume_point_once() {
        let mut nodes = Nodes::new();
        let mut q = DeliveryQueue::default();
        for n in 0..5 {
            q.push_back(&mut nodes, msg(n), 1);
            q.send_next(&mut nodes);
        }
        q.ack_one(4);
        q.set_resend_from(3);
        assert!(q.has_redeliveries());
        let again: Vec<_> = std::iter::from_fn(|| q.next_redelivery())
            .map(|(e, seq)| (e.msg, seq))
            .collect();
        assert_eq!(again, vec![(msg(2), 3), (msg(4), 5)]);
        assert!(!q.has_redeliveries());
        // New sends continue after the newest seq and are not redelivered.
        q.push_back(&mut nodes, msg(7), 1);
        assert_eq!(q.send_next(&mut nodes).map(|s| s.2), Some(6));
        assert_eq!(q.next_redelivery(), None);
    }

    #[test]
    fn acks_of_seqs_still_to_redeliver_leave_nothing_to_redeliver() {
        let mut nodes = Nodes::new();
        let mut q = DeliveryQueue::default();
        for n in 0..4 {
            q.push_back(&mut nodes, msg(n), 1);
            q.send_next(&mut nodes);
        }
        q.set_resend_from(2);
        assert!(q.has_redeliveries());
        q.ack_one(3);
        q.ack_up_to(2, |_| {});
        assert!(q.has_redeliveries(), "seq 4 is still to redeliver");
        q.ack_one(4);
        assert!(!q.has_redeliveries());
        assert_eq!(q.next_redelivery(), None);
        // A new send after that is not a redelivery.
        q.push_back(&mut nodes, msg(9), 1);
        q.send_next(&mut nodes);
        assert!(!q.has_redeliveries());
    }

    #[test]
    fn the_span_counts_from_the_oldest_unacked_seq() {
        let mut nodes = Nodes::new();
        let mut q = DeliveryQueue::default();
        for n in 0..4 {
            q.push_back(&mut nodes, msg(n), 1);
            q.send_next(&mut nodes);
        }
        q.ack_one(2);
        q.ack_one(3);
        assert_eq!(q.in_flight(), 2);
        assert_eq!(q.span(), 4, "seq 1 unacked holds the span open");
        q.ack_one(1);
        assert_eq!(q.span(), 1);
        assert_eq!(q.lowest_unacked(), 4);
    }

    #[test]
    fn drain_releases_pending_and_in_flight() {
        let mut nodes = Nodes::new();
        let mut q = DeliveryQueue::default();
        for n in 0..4 {
            q.push_back(&mut nodes, msg(n), 1);
        }
        q.send_next(&mut nodes);
        let mut freed = Vec::new();
        q.drain(&mut nodes, |e| freed.push(e.msg));
        freed.sort_by_key(|m| m.0);
        assert_eq!(freed, (0..4).map(msg).collect::<Vec<_>>());
        assert_eq!(q.depth(), 0);
        assert!(nodes.is_empty());
    }
}
