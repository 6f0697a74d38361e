//! PUBLISH, routing, per-session enqueue (conflation and limits), and ACK.
//!
//! Layout and rules: protocol.md §PUBLISH, §RECEIPT, §ACK, §Conflation, §Limits.

use super::delivery_queue::DeliveryQueue;
use super::journal::DurableMessage;
use super::{Broker, ConnId, MsgKey, QueueId, SessionKey};
use crate::protocol::{Ack, ErrorCode, Op, Publish};

impl Broker {
    pub(super) fn handle_publish(&mut self, conn: ConnId, key: SessionKey, publish: &Publish<'_>) {
        let session = &mut self.sessions[key.0];
        let expected = session.last_publish_seq + 1;
        if publish.seq != expected {
            if publish.seq != 0 && publish.seq < expected {
                // A resend after a resume, or a client bug: receipted, never routed twice.
                self.metrics.messages_duplicate += 1;
                session.is_receipt_due = true;
                self.mark_dirty(conn);
            } else {
                let text = "publish seq must be the previous one + 1 (the first is 1)";
                self.fail(conn, ErrorCode::PublishSeqGap, publish.seq, text);
            }
            return;
        }
        if publish.ttl_ms.is_some() && !session.has_extensions {
            let text = "PUBLISH with TTL needs a HELLO with EXTENSIONS";
            self.fail(conn, ErrorCode::MalformedFrame, publish.seq, text);
            return;
        }
        if publish.queue.is_empty() {
            self.fail(
                conn,
                ErrorCode::InvalidName,
                publish.seq,
                "empty queue name",
            );
            return;
        }
        let max_name_len = self.config.max_name_len;
        if publish.queue.len() > max_name_len
            || publish.event.len() > max_name_len
            || publish.key.is_some_and(|key| key.len() > max_name_len)
        {
            let text = "queue, event or key name longer than max_name_len";
            self.fail(conn, ErrorCode::LimitExceeded, publish.seq, text);
            return;
        }
        let cached = session.last_queue.filter(|&id| {
            self.routes
                .get(id)
                .is_some_and(|q| *q.name == *publish.queue)
        });
        let queue_id = match cached {
            // `last_queue` is only ever a queue this session was allowed to publish to.
            Some(id) => id,
            None if !session.grant.permissions.may_publish(publish.queue) => {
                // Denied: the seq is consumed and receipted, the message goes nowhere.
                session.last_publish_seq = publish.seq;
                session.is_receipt_due = true;
                self.mark_dirty(conn);
                self.deny(
                    conn,
                    publish.seq,
                    Op::Publish,
                    "this session may not publish to this queue",
                );
                return;
            }
            None => match self.routes.find(publish.queue) {
                Some(id) => {
                    self.sessions[key.0].last_queue = Some(id);
                    id
                }
                None if self.is_wanted_by_a_pattern(publish.queue) => {
                    match self.find_or_create_queue(key, publish.queue) {
                        Ok(id) => {
                            self.sessions[key.0].last_queue = Some(id);
                            id
                        }
                        Err(text) => {
                            self.fail(conn, ErrorCode::LimitExceeded, publish.seq, text);
                            return;
                        }
                    }
                }
                None => {
                    // Nobody subscribes and nothing is declared: accepted and receipted,
                    // routed nowhere, and no queue is created (issue #12).
                    let session = &mut self.sessions[key.0];
                    session.last_publish_seq = publish.seq;
                    session.published += 1;
                    session.is_receipt_due = true;
                    self.mark_dirty(conn);
                    self.metrics.messages_published += 1;
                    self.next_message_id += 1;
                    return;
                }
            },
        };
        let queue = self.routes.queue_mut(queue_id);
        if let Some(max) = queue.max_payload_len {
            if publish.payload.len() > max as usize {
                let text = "payload longer than the queue's max_payload_len";
                self.fail(conn, ErrorCode::LimitExceeded, publish.seq, text);
                return;
            }
        }
        queue.published += 1;
        let conflates = queue.conflate || publish.key.is_some();
        // A durable queue's message id is its position in the queue (protocol.md §DELIVER).
        let position = queue
            .durable
            .as_ref()
            .filter(|_| self.journal.is_enabled)
            .map(|durable| durable.next_position);
        let session = &mut self.sessions[key.0];
        session.last_publish_seq = publish.seq;
        session.published += 1;
        self.metrics.messages_published += 1;
        let Some(position) = position else {
            session.is_receipt_due = true;
            self.mark_dirty(conn);
            let message_id = self.next_message_id;
            self.next_message_id += 1;
            self.route(queue_id, message_id, conflates, publish, false);
            return;
        };
        // The RECEIPT waits for the journal (`handle_durable` marks it due).
        let msg = self.route(queue_id, position, conflates, publish, true);
        let message = DurableMessage::new(publish.event, publish.key, publish.payload);
        self.journal_publish(queue_id, key, publish.seq, msg, message);
    }

    /// Queues one accepted message for every matching session and one member of each group
    /// of its queue. With `keep`, the message is stored even without a target and its key
    /// returned unreleased (the caller retains it: durable queues).
    pub(super) fn route(
        &mut self,
        queue: QueueId,
        message_id: u64,
        conflates: bool,
        publish: &Publish<'_>,
        keep: bool,
    ) -> Option<MsgKey> {
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        self.routes.targets(queue, publish.event, &mut targets);
        let has_groups = self.groups.has_groups(queue);
        let mut kept = None;
        if !targets.is_empty() || has_groups || keep {
            let key = publish.key.unwrap_or_default();
            let conflation = conflates.then(|| {
                std::hash::BuildHasher::hash_one(
                    &self.conflation_hasher,
                    (queue.0, publish.event, key),
                )
            });
            self.routes.queue_mut(queue).held += 1;
            let msg = self.store.insert(
                message_id,
                queue,
                conflation,
                publish.event,
                key,
                publish.payload,
            );
            if let Some(at) = self.deadline_for(queue, publish.ttl_ms) {
                self.schedule_expiry(msg, at);
            }
            for &session in &targets {
                self.enqueue(session, msg);
            }
            // Competing consumers (groups.rs): one member of each group.
            if has_groups {
                self.dispatch_to_groups(queue, publish.event, msg);
            }
            if keep {
                kept = Some(msg);
            } else {
                self.store.release_if_unused(msg);
            }
        }
        self.targets = targets;
        kept
    }

    /// Queues `msg` for one session: conflation first, then the depth and byte limits in force
    /// (the larger, disconnected ones while the session is detached).
    pub(super) fn enqueue(&mut self, key: SessionKey, msg: MsgKey) {
        let message = self.store.get(msg);
        let bytes = message.queue_bytes();
        let conflation = message.conflation;
        let session = &mut self.sessions[key.0];
        let mut replaced = None;
        if let Some(hash) = conflation {
            if let Some(node) = session.conflated_node(hash) {
                if let Some(old) = DeliveryQueue::node_msg(&self.nodes, node) {
                    let old_message = self.store.get(old);
                    if old_message.queue == message.queue
                        && old_message.event() == message.event()
                        && old_message.key() == message.key()
                    {
                        replaced = Some((node, old, old_message.queue_bytes()));
                    }
                }
            }
        }
        let settings = &self.listeners[session.listener];
        // A DELIVER is at most max_frame_len + 8 bytes on this session's listener; a message
        // published on a listener with a larger limit may not fit. Say so and close rather than
        // send a frame the client cannot read, or skip it silently.
        let deliver_len = crate::protocol::codec::deliver_len(
            self.routes.queue(message.queue).name.len(),
            message.event().len(),
            false,
            message.payload().len(),
        );
        if deliver_len > settings.max_frame_len as usize + 8 {
            self.metrics.messages_dropped_session_closed += 1;
            session.is_ended_by_arrival = true;
            let text = "a message is larger than this listener's max_frame_len allows";
            match session.conn {
                Some(conn) => self.goodbye(conn, ErrorCode::LimitExceeded, text),
                None => {
                    self.end_session(key, ErrorCode::LimitExceeded);
                }
            }
            return;
        }
        // Detached, or just resumed with a backlog that grew under the detached limits and is
        // still above the connected ones (catching up): the larger limits apply.
        let is_catching_up = session.queue.depth() > settings.max_queue_depth
            || session.queue.bytes > settings.max_queue_bytes;
        let (max_depth, max_bytes) = if session.conn.is_some() && !is_catching_up {
            (settings.max_queue_depth, settings.max_queue_bytes)
        } else {
            (
                settings.max_queue_depth_detached,
                settings.max_queue_bytes_detached,
            )
        };
        let (removed_depth, removed_bytes) = replaced.map_or((0, 0), |(_, _, b)| (1, b));
        let depth = session.queue.depth() - removed_depth + 1;
        let queue_bytes = session.queue.bytes - removed_bytes + bytes;
        if depth > max_depth || queue_bytes > max_bytes {
            self.overflow(key);
            return;
        }
        if let Some((node, old, old_bytes)) = replaced {
            session.queue.remove(&mut self.nodes, node, old_bytes);
            self.store.release(old);
            session.conflated += 1;
            self.metrics.messages_conflated += 1;
        }
        let node = session.queue.push_back(&mut self.nodes, msg, bytes);
        self.flow.queued += 1;
        self.store.retain(msg);
        self.link_if_expiring(key, msg, node);
        let session = &mut self.sessions[key.0];
        if let Some(hash) = conflation {
            // Allocated once per session, at its first conflating message.
            session
                .conflation
                .get_or_insert_with(Box::default)
                .insert(hash, node);
        }
        if session.queue.pending_len() > session.window
            && session.queue.in_flight() <= session.window / 2
            && session.conn.is_some_and(|conn| {
                // A client whose socket is full is slow to read, however few it has unacked.
                self.conns
                    .get(conn.0)
                    .and_then(Option::as_ref)
                    .is_some_and(|state| !state.is_output_blocked)
            })
        {
            // More than the next flush can send to a session that keeps up: see
            // `super::flow`.
            self.flow.backlogged += 1;
        }
        // A conflation owes an EXTENSIONS client a DROPPED even when its window is full.
        if session.queue.span() < session.window || session.is_drop_notice_due() {
            if let Some(conn) = session.conn {
                self.mark_dirty(conn);
            }
        }
    }

    pub(super) fn handle_ack(&mut self, conn: ConnId, key: SessionKey, ack: &Ack<'_>) {
        let session = &mut self.sessions[key.0];
        let last_sent = session.queue.last_sent_seq;
        if ack.up_to > last_sent || ack.seqs.iter().any(|seq| seq == 0 || seq > last_sent) {
            let text = "ACK names a delivery seq that was never sent";
            self.fail(conn, ErrorCode::UnknownAckSeq, 0, text);
            return;
        }
        let before = session.queue.in_flight();
        let span_before = session.queue.span();
        let store = &mut self.store;
        let mut freed_bytes = 0;
        // Group assignments released by this ack (reused list: no allocation once grown).
        let mut released = std::mem::take(&mut self.released_tags);
        session.queue.ack_up_to(ack.up_to, |entry| {
            freed_bytes += store.get(entry.msg).queue_bytes();
            store.release(entry.msg);
            if entry.tag.is_group() {
                released.push(entry.tag);
            }
        });
        for seq in ack.seqs.iter() {
            if let Some(entry) = session.queue.ack_one(seq) {
                freed_bytes += store.get(entry.msg).queue_bytes();
                store.release(entry.msg);
                if entry.tag.is_group() {
                    released.push(entry.tag);
                }
            }
        }
        session.queue.release_bytes(freed_bytes);
        let acked = u64::from(before - session.queue.in_flight());
        session.acked += acked;
        self.metrics.messages_acked += acked;
        if session.queue.span() < span_before && session.queue.has_pending() {
            self.mark_dirty(conn);
        }
        for tag in released.drain(..) {
            self.handle_group_release(tag);
        }
        self.released_tags = released;
    }
}
