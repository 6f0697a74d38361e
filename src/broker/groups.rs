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
mod dispatch;

pub(super) use dispatch::drain_entries;

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
}
