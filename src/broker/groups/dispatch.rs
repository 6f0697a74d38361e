//! Dispatch: each message to one member of each group, within members' windows; ack
//! deadlines, redelivery, dead letters and a full backlog.

use super::*;

impl Broker {
    /// A message of `queue` (event `event`): one copy to each of the queue's groups whose
    /// event filter matches. Bounded work: per group, one pass over its members at most.
    pub(in crate::broker) fn dispatch_to_groups(
        &mut self,
        queue: QueueId,
        event: &[u8],
        msg: MsgKey,
    ) {
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
    pub(super) fn offer(
        &mut self,
        id: GroupId,
        msg: MsgKey,
        deliveries: u16,
        is_redelivery: bool,
    ) -> bool {
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
    pub(super) fn pick_member(&mut self, id: GroupId) -> Option<u32> {
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
    pub(super) fn assign(&mut self, id: GroupId, slot: u32, msg: MsgKey, deliveries: u16) {
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
    pub(super) fn pump_group(&mut self, id: GroupId) {
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
    pub(in crate::broker) fn pump_groups_of(&mut self, key: SessionKey) {
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
    pub(in crate::broker) fn handle_group_release(&mut self, tag: GroupTag) {
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
    pub(in crate::broker) fn handle_group_expired(&mut self, tag: GroupTag) {
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
    pub(in crate::broker) fn reclaim_from_ended_session(&mut self, entries: &[Entry]) {
        for entry in entries {
            if let Some(assignment) = self.groups.take_assignment(entry.tag.0) {
                self.requeue(assignment);
            }
            self.store.release(entry.msg);
        }
    }

    /// Takes back deliveries whose ack deadline passed (at most [`MAX_EXPIRIES_PER_TICK`]).
    pub(in crate::broker) fn expire_group_deadlines(&mut self, now: Instant) {
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
    pub(super) fn expire_assignment(&mut self, assignment: Assignment) {
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
    pub(super) fn requeue(&mut self, assignment: Assignment) {
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
    pub(super) fn dead_letter(&mut self, msg: MsgKey, queue: Option<&str>) {
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
    pub(super) fn overflow_group(&mut self, id: GroupId) {
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
pub(in crate::broker) fn drain_entries(
    queue: &mut DeliveryQueue,
    nodes: &mut crate::broker::delivery_queue::Nodes,
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
