//! Competing consumers (issue #14): a SUBSCRIBE with a group name joins a *group*; each
//! message of the group's queue (and event filter) goes to exactly one member of each group,
//! and as before to every subscriber outside a group. Layout and rules: protocol.md §SUBSCRIBE
//! (GROUP) and §Groups.
//!
//! A group owns the messages it has not handed out yet (its *backlog*, bounded like a
//! session's queue) and one *assignment* per message a member holds. An assignment is found
//! from the member's queue entry by its [`GroupTag`] (the assignment's slab key), so an ack,
//! an expired ack deadline and a session end each release it in O(1), with no lookup.
//!
//! Dispatch respects each member's in-flight window: a member holding `window` group messages
//! gets no more until it acks (RabbitMQ prefetch). A delivery not acked within the group's
//! `ack_deadline_ms` of being sent, or held by a member whose session ends, goes back to the
//! front of the backlog with its delivery count; after `max_deliveries` it goes to the
//! group's dead-letter queue (or is dropped, counted, when it has none).
//!
//! Invariants: a member's `held` is the number of live assignments naming it; every message in
//! a backlog or an assignment holds one store reference; `backlog_bytes` is the sum of the
//! backlog's payload bytes. Sent assignments are linked, per group, in send order (`sent_head`
//! to `sent_tail`): a group's deadline is constant, so the head is always the first due, and
//! an ack unlinks in O(1). The timer heap holds at most one live entry per group (its head's
//! deadline, or an earlier one: on firing, the group is looked at and put back), so memory
//! does not grow with acked deliveries.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, warn};
use slab::Slab;

use super::delivery_queue::{DeliveryQueue, Entry, GroupTag};
use super::{Broker, ConnId, MsgKey, QueueId, SessionKey};
use crate::config::{DEFAULT_ACK_DEADLINE_MS, DEFAULT_MAX_DELIVERIES};
use crate::protocol::codec::encode_subscription;
use crate::protocol::{ErrorCode, Op, Publish, Subscription};

/// Most expired ack deadlines handled per [`Broker::handle_timeout`]: bounded work per tick;
/// the rest are due at once, so the loop comes straight back.
const MAX_EXPIRIES_PER_TICK: usize = 1_024;

/// Index of a group in [`Groups`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GroupId(u32);

/// A session's side of its group memberships, and what it was told about them.
#[derive(Debug, Default)]
pub(crate) struct GroupMembership {
    /// (group, member slot) per membership; bounded by `max_subscriptions`.
    pub(crate) groups: Vec<(GroupId, u32)>,
    /// Group messages this session was the last to hold before they were dead-lettered.
    pub(crate) dead_lettered: u64,
    /// `dead_lettered` as of the latest DROPPED(DEAD_LETTERED).
    pub(crate) dead_lettered_told: u64,
}

/// Every group.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    groups: Slab<Group>,
    by_key: HashMap<GroupKey, GroupId>,
    /// Groups per queue, indexed by `QueueId.0`: the hot path's only lookup (no hashing).
    by_queue: Vec<Vec<GroupId>>,
    assignments: Slab<Assignment>,
    /// (deadline, group, group serial), earliest first; see the module docs.
    deadlines: BinaryHeap<Reverse<(Instant, u32, u64)>>,
    /// Tells a group from an earlier one with the same slab key.
    next_serial: u64,
    /// Groups whose backlog overflowed during one dispatch, handled after it.
    overflowed: Vec<GroupId>,
}

/// What names a group: (queue, event filter, group name).
type GroupKey = (QueueId, Option<Box<[u8]>>, Box<[u8]>);

/// One group of competing consumers.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) queue: QueueId,
    /// Only this event (`None`: every event).
    pub(crate) event: Option<Box<[u8]>>,
    pub(crate) name: Box<[u8]>,
    /// Member slots; `None` for a slot freed by a member that left (reused by the next).
    members: Vec<Option<Member>>,
    pub(crate) member_count: u32,
    /// Round-robin position: the slot to try first.
    cursor: usize,
    /// Messages not handed out yet, oldest (or redelivered) first.
    backlog: VecDeque<Waiting>,
    backlog_bytes: u64,
    ack_deadline: Duration,
    /// Sent assignments, oldest first (NIL when none).
    sent_head: u32,
    sent_tail: u32,
    /// A live entry for this group is in the timer heap.
    is_scheduled: bool,
    serial: u64,
    max_deliveries: u16,
    dead_letter_queue: Option<Arc<str>>,
    /// Counters for STATS.
    pub(crate) assigned: u64,
    pub(crate) acked: u64,
    pub(crate) redelivered: u64,
    pub(crate) dead_lettered: u64,
}

#[derive(Debug, Clone, Copy)]
struct Member {
    session: SessionKey,
    /// Group messages it holds (pending and in flight); at most its window.
    held: u32,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    msg: MsgKey,
    /// Times sent to a member so far.
    deliveries: u16,
}

#[derive(Debug)]
struct Assignment {
    group: GroupId,
    slot: u32,
    session: SessionKey,
    msg: MsgKey,
    /// Times sent to a member, this assignment's send included once sent.
    deliveries: u16,
    /// Its delivery seq once sent (then it is in the member's in-flight ring).
    seq: Option<u64>,
    /// When its ack deadline passes (once sent).
    deadline: Instant,
    /// Links in its group's sent list (NIL at the ends).
    prev: u32,
    next: u32,
}

/// No assignment (end of a sent list).
const NIL: u32 = u32::MAX;

/// A group snapshot for STATS.
#[derive(Debug)]
pub(crate) struct GroupView<'a> {
    pub(crate) group: &'a Group,
    pub(crate) unassigned: u64,
    pub(crate) in_flight: u64,
}

impl Groups {
    /// True if `queue` has at least one group (the publish path then stores the message).
    pub(crate) fn has_groups(&self, queue: QueueId) -> bool {
        self.by_queue
            .get(queue.0 as usize)
            .is_some_and(|list| !list.is_empty())
    }

    /// The earliest ack deadline (possibly stale).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Every group, for STATS.
    pub(crate) fn iter(&self) -> impl Iterator<Item = GroupView<'_>> {
        self.groups.iter().map(|(_, group)| GroupView {
            group,
            unassigned: group.backlog.len() as u64,
            in_flight: group
                .members
                .iter()
                .flatten()
                .map(|m| u64::from(m.held))
                .sum(),
        })
    }

    /// The delivery count to put in a DELIVER of the message held for `tag`: `Some` from the
    /// second delivery on.
    pub(crate) fn delivery_count(&self, tag: GroupTag) -> Option<u16> {
        let assignment = self.assignments.get(tag.0 as usize)?;
        (assignment.deliveries >= 2).then_some(assignment.deliveries)
    }

    /// The message held for `tag` was just sent with `seq`: its ack deadline starts.
    pub(crate) fn handle_sent(&mut self, tag: GroupTag, seq: u64, now: Instant) -> Option<u16> {
        let assignment = self.assignments.get_mut(tag.0 as usize)?;
        assignment.seq = Some(seq);
        assignment.deliveries = assignment.deliveries.saturating_add(1);
        let deliveries = assignment.deliveries;
        let id = assignment.group;
        if let Some(group) = self.groups.get_mut(id.0 as usize) {
            let deadline = now + group.ack_deadline;
            assignment.deadline = deadline;
            assignment.prev = group.sent_tail;
            assignment.next = NIL;
            let tail = group.sent_tail;
            group.sent_tail = tag.0;
            if tail == NIL {
                group.sent_head = tag.0;
            } else if let Some(previous) = self.assignments.get_mut(tail as usize) {
                previous.next = tag.0;
            }
            if !group.is_scheduled {
                group.is_scheduled = true;
                self.deadlines.push(Reverse((deadline, id.0, group.serial)));
            }
        }
        (deliveries >= 2).then_some(deliveries)
    }

    /// Removes a sent assignment from its group's sent list (no-op for one never sent).
    fn unlink(&mut self, tag: u32) {
        let Some(assignment) = self.assignments.get(tag as usize) else {
            return;
        };
        if assignment.seq.is_none() {
            return;
        }
        let (prev, next, id) = (assignment.prev, assignment.next, assignment.group);
        let Some(group) = self.groups.get_mut(id.0 as usize) else {
            return;
        };
        match self.assignments.get_mut(prev as usize) {
            Some(previous) if prev != NIL => previous.next = next,
            _ => group.sent_head = next,
        }
        match self.assignments.get_mut(next as usize) {
            Some(following) if next != NIL => following.prev = prev,
            _ => group.sent_tail = prev,
        }
    }

    /// Removes an assignment, unlinking it first.
    fn take_assignment(&mut self, tag: u32) -> Option<Assignment> {
        self.unlink(tag);
        self.assignments.try_remove(tag as usize)
    }

    fn group_ids(&self, queue: QueueId) -> &[GroupId] {
        self.by_queue
            .get(queue.0 as usize)
            .map_or(&[][..], Vec::as_slice)
    }
}

impl Broker {
    /// SUBSCRIBE with GROUP (or PATTERN): checked here, so `subscribe.rs` keeps one hook.
    pub(super) fn handle_subscribe_extended(
        &mut self,
        conn: ConnId,
        key: SessionKey,
        sub: &Subscription<'_>,
    ) {
        if !self.sessions[key.0].has_extensions {
            let text = "GROUP and PATTERN need a HELLO with EXTENSIONS";
            self.fail(conn, ErrorCode::MalformedFrame, 0, text);
            return;
        }
        if sub.is_pattern {
            self.handle_subscribe_pattern(conn, key, sub);
            return;
        }
        let Some(name) = sub.group else {
            return;
        };
        if name.is_empty() {
            self.fail(conn, ErrorCode::InvalidName, 0, "empty group name");
            return;
        }
        if name.len() > self.config.max_name_len {
            let text = "group name longer than max_name_len";
            self.fail(conn, ErrorCode::LimitExceeded, 0, text);
            return;
        }
        if !self.sessions[key.0]
            .grant
            .permissions
            .may_subscribe(sub.queue)
        {
            let text = "this session may not subscribe to this queue";
            self.deny(conn, 0, Op::Subscribe, text);
            return;
        }
        let session = &self.sessions[key.0];
        if session.subscription_count() >= self.config.max_subscriptions {
            self.fail(
                conn,
                ErrorCode::LimitExceeded,
                0,
                "max_subscriptions reached",
            );
            return;
        }
        let queue = match self.find_or_create_queue(key, sub.queue) {
            Ok(queue) => queue,
            Err(text) => {
                self.fail(conn, ErrorCode::LimitExceeded, 0, text);
                return;
            }
        };
        // SUBSCRIBED goes first: the first deliveries the join hands out follow it.
        self.push_control(conn, |out| {
            let _ = encode_subscription(Op::Subscribed, sub, out);
        });
        self.join_group(key, queue, sub.event, name);
    }

    /// UNSUBSCRIBE with GROUP (or PATTERN).
    pub(super) fn handle_unsubscribe_extended(
        &mut self,
        conn: ConnId,
        key: SessionKey,
        sub: &Subscription<'_>,
    ) {
        if sub.is_pattern {
            self.handle_unsubscribe_pattern(key, sub);
        } else if let (Some(queue), Some(name)) = (self.routes.find(sub.queue), sub.group) {
            self.leave_group(key, queue, sub.event, name);
        }
        self.push_control(conn, |out| {
            let _ = encode_subscription(Op::Unsubscribed, sub, out);
        });
    }

    /// Joins `session` to the group (`queue`, `event`, `name`), creating the group with the
    /// queue's settings if needed. Returns false if it was a member already.
    pub(super) fn join_group(
        &mut self,
        key: SessionKey,
        queue: QueueId,
        event: Option<&[u8]>,
        name: &[u8],
    ) -> bool {
        let group_key = (queue, event.map(Box::from), Box::<[u8]>::from(name));
        let id = match self.groups.by_key.get(&group_key) {
            Some(&id) => id,
            None => {
                let declared = self
                    .config
                    .queues
                    .iter()
                    .find(|q| q.name.as_bytes() == &*self.routes.queue(queue).name);
                let group = Group {
                    queue,
                    event: group_key.1.clone(),
                    name: group_key.2.clone(),
                    members: Vec::new(),
                    member_count: 0,
                    cursor: 0,
                    backlog: VecDeque::new(),
                    backlog_bytes: 0,
                    ack_deadline: Duration::from_millis(
                        declared.map_or(DEFAULT_ACK_DEADLINE_MS, |q| q.ack_deadline_ms),
                    ),
                    sent_head: NIL,
                    sent_tail: NIL,
                    is_scheduled: false,
                    serial: self.groups.next_serial,
                    max_deliveries: declared.map_or(DEFAULT_MAX_DELIVERIES, |q| q.max_deliveries),
                    dead_letter_queue: declared
                        .and_then(|q| q.dead_letter_queue.as_deref())
                        .map(Arc::from),
                    assigned: 0,
                    acked: 0,
                    redelivered: 0,
                    dead_lettered: 0,
                };
                self.groups.next_serial += 1;
                // Bounded: groups ≤ sessions × max_subscriptions.
                let id = GroupId(self.groups.groups.insert(group) as u32);
                self.groups.by_key.insert(group_key, id);
                let index = queue.0 as usize;
                if self.groups.by_queue.len() <= index {
                    self.groups.by_queue.resize_with(index + 1, Vec::new);
                }
                self.groups.by_queue[index].push(id);
                id
            }
        };
        let session = &self.sessions[key.0];
        if session.group.groups.iter().any(|&(g, _)| g == id) {
            return false;
        }
        let group = &mut self.groups.groups[id.0 as usize];
        let member = Member {
            session: key,
            held: 0,
        };
        let slot = match group.members.iter().position(Option::is_none) {
            Some(slot) => {
                group.members[slot] = Some(member);
                slot
            }
            None => {
                group.members.push(Some(member));
                group.members.len() - 1
            }
        };
        group.member_count += 1;
        let slot = slot as u32;
        self.sessions[key.0].group.groups.push((id, slot));
        self.routes.queue_mut(queue).subscribers += 1;
        self.pump_group(id);
        true
    }

    /// Removes `session` from the group; returns false if it was not a member. What it holds
    /// stays in its queue and is delivered (or redelivered to others if not acked in time).
    pub(super) fn leave_group(
        &mut self,
        key: SessionKey,
        queue: QueueId,
        event: Option<&[u8]>,
        name: &[u8],
    ) -> bool {
        let group_key = (queue, event.map(Box::from), Box::<[u8]>::from(name));
        let Some(&id) = self.groups.by_key.get(&group_key) else {
            return false;
        };
        let memberships = &mut self.sessions[key.0].group.groups;
        let Some(index) = memberships.iter().position(|&(g, _)| g == id) else {
            return false;
        };
        let (_, slot) = memberships.swap_remove(index);
        self.remove_member(id, slot);
        true
    }

    /// Removes every membership of a session being freed (its `memberships`, taken from it).
    pub(super) fn leave_all_groups(&mut self, memberships: &[(GroupId, u32)]) {
        for &(id, slot) in memberships {
            self.remove_member(id, slot);
        }
    }

    fn remove_member(&mut self, id: GroupId, slot: u32) {
        let Some(group) = self.groups.groups.get_mut(id.0 as usize) else {
            return;
        };
        if let Some(member) = group.members.get_mut(slot as usize) {
            *member = None;
            group.member_count -= 1;
        }
        let queue = group.queue;
        self.routes.queue_mut(queue).subscribers -= 1;
        if group.member_count == 0 {
            self.free_group(id);
        }
    }

    /// The last member left: the backlog is dropped (counted), assignments still held by
    /// former members are orphaned (their acks then release only the message).
    fn free_group(&mut self, id: GroupId) {
        let group = self.groups.groups.remove(id.0 as usize);
        self.groups
            .by_key
            .remove(&(group.queue, group.event.clone(), group.name.clone()));
        if let Some(list) = self.groups.by_queue.get_mut(group.queue.0 as usize) {
            list.retain(|&g| g != id);
        }
        let dropped = group.backlog.len() as u64;
        for waiting in group.backlog {
            self.store.release(waiting.msg);
        }
        self.metrics.messages_dropped_session_closed += dropped;
        // Once per group end, not per message: bounded by the assignments held.
        for (_, assignment) in self.groups.assignments.iter_mut() {
            if assignment.group == id {
                assignment.group = GroupId(u32::MAX);
            }
        }
        debug!(
            "group {:?} freed with its last member, {dropped} unassigned messages dropped",
            String::from_utf8_lossy(&group.name)
        );
    }

    /// A message of `queue` (event `event`): one copy to each of the queue's groups whose
    /// event filter matches. Bounded work: per group, one pass over its members at most.
    pub(super) fn dispatch_to_groups(&mut self, queue: QueueId, event: &[u8], msg: MsgKey) {
        let mut index = 0;
        while let Some(&id) = self.groups.group_ids(queue).get(index) {
            index += 1;
            let group = &self.groups.groups[id.0 as usize];
            if group.event.as_deref().is_some_and(|e| e != event) {
                continue;
            }
            if !self.offer(id, msg, 0, false) {
                self.groups.overflowed.push(id);
            }
        }
        while let Some(id) = self.groups.overflowed.pop() {
            self.overflow_group(id);
        }
    }

    /// Hands `msg` to a member with room, or queues it in the backlog (at the front for a
    /// redelivery). False if the backlog is full (the caller applies the overflow outcome).
    fn offer(&mut self, id: GroupId, msg: MsgKey, deliveries: u16, is_redelivery: bool) -> bool {
        let has_backlog = !self.groups.groups[id.0 as usize].backlog.is_empty();
        if !has_backlog || is_redelivery {
            if let Some(slot) = self.pick_member(id) {
                self.assign(id, slot, msg, deliveries);
                return true;
            }
        }
        let bytes = self.store.get(msg).queue_bytes();
        let group = &mut self.groups.groups[id.0 as usize];
        let waiting = Waiting { msg, deliveries };
        if is_redelivery {
            // Redeliveries may exceed the bound: they come from members' windows, so at most
            // members × window more, and they must not be lost.
            group.backlog.push_front(waiting);
        } else {
            let depth = group.backlog.len() + 1;
            if depth > self.config.max_queue_depth as usize
                || group.backlog_bytes + bytes > self.config.max_queue_bytes
            {
                return false;
            }
            group.backlog.push_back(waiting);
        }
        group.backlog_bytes += bytes;
        self.store.retain(msg);
        true
    }

    /// The next member, round robin, that is attached and holds fewer than its window.
    fn pick_member(&mut self, id: GroupId) -> Option<u32> {
        let group = &self.groups.groups[id.0 as usize];
        let slots = group.members.len();
        for step in 0..slots {
            let slot = (group.cursor + step) % slots;
            let Some(member) = group.members[slot] else {
                continue;
            };
            let Some(session) = self.sessions.get(member.session.0) else {
                continue;
            };
            let is_attached = session
                .conn
                .is_some_and(|conn| self.conn(conn).is_some_and(|c| c.close.is_none()));
            if is_attached && member.held < session.window {
                self.groups.groups[id.0 as usize].cursor = (slot + 1) % slots;
                return Some(slot as u32);
            }
        }
        None
    }

    /// Puts `msg` in the queue of the member in `slot`, tagged with a new assignment.
    fn assign(&mut self, id: GroupId, slot: u32, msg: MsgKey, deliveries: u16) {
        let group = &mut self.groups.groups[id.0 as usize];
        // Invariant: `pick_member` returned an occupied slot.
        let Some(member) = group.members[slot as usize].as_mut() else {
            return;
        };
        member.held += 1;
        group.assigned += 1;
        let session_key = member.session;
        let tag = self.groups.assignments.insert(Assignment {
            group: id,
            slot,
            session: session_key,
            msg,
            deliveries,
            seq: None,
            deadline: self.now,
            prev: NIL,
            next: NIL,
        });
        let bytes = self.store.get(msg).queue_bytes();
        let session = &mut self.sessions[session_key.0];
        // Bounded by u32: assignments ≤ members × window.
        let node =
            session
                .queue
                .push_back_tagged(&mut self.nodes, msg, GroupTag(tag as u32), bytes);
        self.store.retain(msg);
        self.link_if_expiring(session_key, msg, node);
        let session = &mut self.sessions[session_key.0];
        self.flow.queued += 1;
        if session.queue.span() < session.window {
            if let Some(conn) = session.conn {
                self.mark_dirty(conn);
            }
        }
    }

    /// Hands out backlog messages while members have room. Bounded: stops at the first
    /// message no member can take.
    fn pump_group(&mut self, id: GroupId) {
        loop {
            let Some(group) = self.groups.groups.get(id.0 as usize) else {
                return;
            };
            let Some(&waiting) = group.backlog.front() else {
                return;
            };
            if self.is_expired(waiting.msg) {
                // Its time to live ran out while no member had room (expiry.rs).
                let bytes = self.store.get(waiting.msg).queue_bytes();
                let group = &mut self.groups.groups[id.0 as usize];
                group.backlog.pop_front();
                group.backlog_bytes -= bytes;
                self.metrics.messages_expired += 1;
                self.store.release(waiting.msg);
                continue;
            }
            let Some(slot) = self.pick_member(id) else {
                return;
            };
            let bytes = self.store.get(waiting.msg).queue_bytes();
            let group = &mut self.groups.groups[id.0 as usize];
            group.backlog.pop_front();
            group.backlog_bytes -= bytes;
            self.assign(id, slot, waiting.msg, waiting.deliveries);
            // The backlog's reference moves to the assignment.
            self.store.release(waiting.msg);
        }
    }

    /// A session attached (or resumed): its groups may hand it messages again.
    pub(super) fn pump_groups_of(&mut self, key: SessionKey) {
        let count = self.sessions[key.0].group.groups.len();
        for index in 0..count {
            if let Some(&(id, _)) = self.sessions[key.0].group.groups.get(index) {
                self.pump_group(id);
            }
        }
    }

    /// An acked (or otherwise released) queue entry: if it served a group assignment, that
    /// assignment ends and the member may take the next message. The caller releases the
    /// member's store reference.
    pub(super) fn handle_group_release(&mut self, tag: GroupTag) {
        let Some(assignment) = self.groups.take_assignment(tag.0) else {
            return;
        };
        let Some(group) = self.groups.groups.get_mut(assignment.group.0 as usize) else {
            return;
        };
        group.acked += 1;
        if let Some(Some(member)) = group.members.get_mut(assignment.slot as usize) {
            if member.session == assignment.session {
                // Saturating: a session that left and joined again may reuse its old slot.
                member.held = member.held.saturating_sub(1);
            }
        }
        self.pump_group(assignment.group);
    }

    /// A pending group message expired in its member's queue (`expiry.rs`): the assignment
    /// ends (it is not offered again) and the member may take the next message. The caller
    /// releases the member's store reference.
    pub(super) fn handle_group_expired(&mut self, tag: GroupTag) {
        let Some(assignment) = self.groups.take_assignment(tag.0) else {
            return;
        };
        if let Some(group) = self.groups.groups.get_mut(assignment.group.0 as usize) {
            if let Some(Some(member)) = group.members.get_mut(assignment.slot as usize) {
                if member.session == assignment.session {
                    member.held = member.held.saturating_sub(1);
                }
            }
        }
        self.pump_group(assignment.group);
    }

    /// Entries drained from a session that ended: each group message goes back to its group
    /// (sent ones count a delivery). Call after the session left its groups.
    pub(super) fn reclaim_from_ended_session(&mut self, entries: &[Entry]) {
        for entry in entries {
            if let Some(assignment) = self.groups.take_assignment(entry.tag.0) {
                self.requeue(assignment);
            }
            self.store.release(entry.msg);
        }
    }

    /// Takes back deliveries whose ack deadline passed (at most [`MAX_EXPIRIES_PER_TICK`]).
    pub(super) fn expire_group_deadlines(&mut self, now: Instant) {
        let mut budget = MAX_EXPIRIES_PER_TICK;
        while budget > 0 {
            let Some(&Reverse((at, id, serial))) = self.groups.deadlines.peek() else {
                return;
            };
            if at > now {
                return;
            }
            self.groups.deadlines.pop();
            let id = GroupId(id);
            match self.groups.groups.get_mut(id.0 as usize) {
                Some(group) if group.serial == serial => group.is_scheduled = false,
                _ => continue,
            }
            while let Some(group) = self.groups.groups.get_mut(id.0 as usize) {
                let head = group.sent_head;
                let Some(assignment) = self.groups.assignments.get(head as usize) else {
                    break;
                };
                if assignment.deadline > now || budget == 0 {
                    // Put the group back on the heap at its head's deadline.
                    let deadline = assignment.deadline;
                    group.is_scheduled = true;
                    self.groups
                        .deadlines
                        .push(Reverse((deadline, id.0, group.serial)));
                    break;
                }
                budget -= 1;
                if let Some(assignment) = self.groups.take_assignment(head) {
                    self.expire_assignment(assignment);
                }
            }
        }
    }

    /// One delivery whose deadline passed: taken back from its member, given to another.
    fn expire_assignment(&mut self, assignment: Assignment) {
        let Some(seq) = assignment.seq else {
            return;
        };
        let session = &mut self.sessions[assignment.session.0];
        let span_before = session.queue.span();
        let taken = session.queue.ack_one(seq);
        if let Some(entry) = taken {
            let bytes = self.store.get(entry.msg).queue_bytes();
            session.queue.release_bytes(bytes);
            debug!(
                "session {:016x}: group delivery seq {seq} not acked in time, taken back",
                session.id
            );
            let conn = session.conn;
            if session.queue.span() < span_before && session.queue.has_pending() {
                if let Some(conn) = conn {
                    self.mark_dirty(conn);
                }
            }
        }
        self.requeue(assignment);
        // The member's reference is released only now: `requeue` took its own.
        if let Some(entry) = taken {
            self.store.release(entry.msg);
        }
    }

    /// An assignment given up (deadline or session end): its member holds one fewer, and the
    /// message goes to another member, or to the dead-letter queue after `max_deliveries`.
    fn requeue(&mut self, assignment: Assignment) {
        let id = assignment.group;
        let Some(group) = self.groups.groups.get_mut(id.0 as usize) else {
            // Its group ended with its last member: nobody is left to take it.
            self.metrics.messages_dropped_session_closed += 1;
            return;
        };
        if let Some(Some(member)) = group.members.get_mut(assignment.slot as usize) {
            if member.session == assignment.session {
                // Saturating: a session that left and joined again may reuse its old slot.
                member.held = member.held.saturating_sub(1);
            }
        }
        if assignment.deliveries >= group.max_deliveries {
            group.dead_lettered += 1;
            let dead_letter_queue = group.dead_letter_queue.clone();
            if let Some(session) = self.sessions.get_mut(assignment.session.0) {
                session.group.dead_lettered += 1;
                if session.has_extensions {
                    if let Some(conn) = session.conn {
                        self.mark_dirty(conn);
                    }
                }
            }
            self.dead_letter(assignment.msg, dead_letter_queue.as_deref());
        } else {
            if assignment.deliveries > 0 {
                group.redelivered += 1;
                self.metrics.messages_group_redelivered += 1;
            }
            self.store.retain(assignment.msg);
            if !self.offer(id, assignment.msg, assignment.deliveries, true) {
                self.groups.overflowed.push(id);
            }
            self.store.release(assignment.msg);
        }
        self.pump_group(id);
    }

    /// Publishes a copy of `msg` to `queue` (the dead-letter queue) as a new message, or
    /// counts it dropped when there is none. Rare: the copy may allocate.
    fn dead_letter(&mut self, msg: MsgKey, queue: Option<&str>) {
        self.metrics.messages_dead_lettered += 1;
        let Some(name) = queue else {
            self.metrics.messages_dropped_max_deliveries += 1;
            warn!("a group message reached max_deliveries and has no dead_letter_queue: dropped");
            return;
        };
        let Ok(dead_letter_queue) = self.find_or_create_unowned_queue(name.as_bytes()) else {
            self.metrics.messages_dropped_max_deliveries += 1;
            warn!("dead_letter_queue {name:?} cannot be created (max_queues): message dropped");
            return;
        };
        let message = self.store.get(msg);
        let event = message.event().to_vec();
        let payload = message.payload().to_vec();
        let publish = Publish {
            seq: 0,
            queue: name.as_bytes(),
            event: &event,
            key: None,
            ttl_ms: None,
            payload: &payload,
        };
        self.routes.queue_mut(dead_letter_queue).published += 1;
        let message_id = self.next_message_id;
        self.next_message_id += 1;
        self.route(dead_letter_queue, message_id, false, &publish, false);
    }

    /// The backlog is full: the same outcome as a session's overflow, told to every member
    /// (GOODBYE(QUEUE_OVERFLOW)); the backlog is dropped, counted.
    fn overflow_group(&mut self, id: GroupId) {
        let Some(group) = self.groups.groups.get(id.0 as usize) else {
            return;
        };
        warn!(
            "group {:?} closed: QUEUE_OVERFLOW with {} unassigned messages",
            String::from_utf8_lossy(&group.name),
            group.backlog.len()
        );
        self.metrics.messages_dropped_overflow += 1;
        let members: Vec<SessionKey> = group.members.iter().flatten().map(|m| m.session).collect();
        for key in members {
            let Some(session) = self.sessions.get_mut(key.0) else {
                continue;
            };
            session.is_ended_by_arrival = true;
            let text = "group backlog overflow: max_queue_depth or max_queue_bytes exceeded";
            match session.conn {
                Some(conn) => self.goodbye(conn, ErrorCode::QueueOverflow, text),
                None => {
                    self.end_session(key, ErrorCode::QueueOverflow);
                }
            }
        }
    }
}

/// Drains `queue` into `entries` (group ones) and releases plain ones through `release`.
pub(super) fn drain_entries(
    queue: &mut DeliveryQueue,
    nodes: &mut super::delivery_queue::Nodes,
    entries: &mut Vec<Entry>,
    mut release: impl FnMut(MsgKey),
) {
    queue.drain(nodes, |entry| {
        if entry.tag.is_group() {
            entries.push(entry);
        } else {
            release(entry.msg);
        }
    });
}
