//! SUBSCRIBE and UNSUBSCRIBE. Layout and rules: protocol.md §SUBSCRIBE.

use super::owners::OverLimit;
use super::session;
use super::{Broker, ConnId, QueueId, SessionKey};
use crate::protocol::codec::encode_subscription;
use crate::protocol::{ErrorCode, Op, Subscription};

impl Broker {
    pub(super) fn handle_subscribe(
        &mut self,
        conn: ConnId,
        key: SessionKey,
        sub: &Subscription<'_>,
    ) {
        if sub.queue.is_empty() || sub.event == Some(&[][..]) {
            self.fail(conn, ErrorCode::InvalidName, 0, "empty queue or event name");
            return;
        }
        let max_name_len = self.config.max_name_len;
        if sub.queue.len() > max_name_len || sub.event.is_some_and(|e| e.len() > max_name_len) {
            let text = "queue or event name longer than max_name_len";
            self.fail(conn, ErrorCode::LimitExceeded, 0, text);
            return;
        }
        if sub.group.is_some() || sub.is_pattern {
            // Issue #14: groups.rs (competing consumers), patterns.rs.
            self.handle_subscribe_extended(conn, key, sub);
            return;
        }
        let permissions = &self.sessions[key.0].grant.permissions;
        if !permissions.may_subscribe(sub.queue) {
            let text = "this session may not subscribe to this queue";
            self.deny(conn, 0, Op::Subscribe, text);
            return;
        }
        let existing = self.routes.find(sub.queue);
        let session = &self.sessions[key.0];
        let is_subscribed = existing.is_some_and(|q| {
            session
                .find_subscription(q, sub.event)
                .is_some_and(|i| session.subscriptions[i].is_literal)
        });
        if !is_subscribed {
            if session.subscription_count() >= self.config.max_subscriptions {
                let text = "max_subscriptions reached";
                self.fail(conn, ErrorCode::LimitExceeded, 0, text);
                return;
            }
            let queue = match self.find_or_create_queue(key, sub.queue) {
                Ok(queue) => queue,
                Err(text) => {
                    self.fail(conn, ErrorCode::LimitExceeded, 0, text);
                    return;
                }
            };
            self.add_subscription_ref(key, queue, sub.event, Source::Literal);
        }
        let mut answer = *sub;
        if let Some(start) = sub.start {
            // Found or created above.
            if let Some(queue) = self.routes.find(sub.queue) {
                answer.start = Some(self.replay(key, queue, sub.event, start));
            }
        }
        self.push_control(conn, |out| {
            let _ = encode_subscription(Op::Subscribed, &answer, out);
        });
    }

    pub(super) fn handle_unsubscribe(
        &mut self,
        conn: ConnId,
        key: SessionKey,
        sub: &Subscription<'_>,
    ) {
        if sub.group.is_some() || sub.is_pattern {
            // Issue #14: groups.rs (competing consumers), patterns.rs.
            self.handle_unsubscribe_extended(conn, key, sub);
            return;
        }
        if let Some(queue) = self.routes.find(sub.queue) {
            self.remove_subscription_ref(key, queue, sub.event, Source::Literal);
        }
        self.push_control(conn, |out| {
            let _ = encode_subscription(Op::Unsubscribed, sub, out);
        });
    }

    /// Creates queue `name` for session `key`, within `max_queues` and its owner's
    /// `max_queues_per_identity` / `max_queues_per_address`; the error is the text of the
    /// LIMIT_EXCEEDED to send.
    pub(super) fn try_create_queue(
        &mut self,
        key: SessionKey,
        name: &[u8],
    ) -> Result<QueueId, &'static str> {
        let owner = &self.sessions[key.0].owner;
        let config = &self.config;
        match self.queue_owners.over(
            owner,
            config.max_queues_per_identity,
            config.max_queues_per_address,
        ) {
            Some(OverLimit::Identity) => return Err("max_queues_per_identity reached"),
            Some(OverLimit::Address) => return Err("max_queues_per_address reached"),
            None => {}
        }
        let queue = self
            .routes
            .try_create(name, config.max_queues, owner.clone())
            .map_err(|_| "max_queues reached")?;
        self.queue_owners.add(owner);
        Ok(queue)
    }

    /// Frees `queue` if nothing uses it any more, and uncounts it from its creator.
    pub(super) fn release_queue(&mut self, queue: QueueId) {
        if let Some(owner) = self.routes.release_if_unused(queue) {
            self.queue_owners.remove(&owner);
        }
    }

    /// Takes the queues of stored messages freed since the last call off their `held` counts
    /// and frees those left unused. Called after every read, session end and timer pass.
    ///
    /// Bounded work: O(messages freed since the last call); allocates nothing once warmed up.
    pub(super) fn collect_queues(&mut self) {
        let mut freed = std::mem::take(&mut self.freed_queues);
        self.store.take_freed(&mut freed);
        for &queue in &freed {
            // Invariant: a queue with held > 0 is not freed, so it lives until this pass.
            self.routes.queue_mut(queue).held -= 1;
            self.release_queue(queue);
        }
        self.freed_queues = freed;
    }

    /// Adds a reference to the session's (queue, event) subscription entry, creating and
    /// routing the entry on the first one. A literal SUBSCRIBE and each matching pattern hold
    /// one reference each, so the session is routed once however many of them match.
    pub(super) fn add_subscription_ref(
        &mut self,
        key: SessionKey,
        queue: QueueId,
        event: Option<&[u8]>,
        source: Source,
    ) {
        let session = &mut self.sessions[key.0];
        if let Some(index) = session.find_subscription(queue, event) {
            let entry = &mut session.subscriptions[index];
            match source {
                Source::Literal => entry.is_literal = true,
                Source::Pattern => entry.pattern_refs += 1,
            }
            return;
        }
        let had_any = session.subscriptions.iter().any(|s| s.queue == queue);
        let has_all = session.has_all_events(queue);
        match event {
            None => self
                .routes
                .add_all_events(queue, key, session.named_events(queue)),
            Some(event) if !has_all => self.routes.add_event(queue, key, event),
            Some(_) => {}
        }
        session.push_subscription(session::Subscription {
            queue,
            event: event.map(Box::from),
            is_literal: source == Source::Literal,
            pattern_refs: u32::from(source == Source::Pattern),
        });
        if !had_any {
            self.routes.queue_mut(queue).subscribers += 1;
        }
    }

    /// Drops one reference added by [`Self::add_subscription_ref`]; the entry stops routing
    /// with its last reference.
    pub(super) fn remove_subscription_ref(
        &mut self,
        key: SessionKey,
        queue: QueueId,
        event: Option<&[u8]>,
        source: Source,
    ) {
        let session = &mut self.sessions[key.0];
        let Some(index) = session.find_subscription(queue, event) else {
            return;
        };
        let entry = &mut session.subscriptions[index];
        match source {
            Source::Literal if !entry.is_literal => return,
            Source::Literal => entry.is_literal = false,
            Source::Pattern => entry.pattern_refs = entry.pattern_refs.saturating_sub(1),
        }
        if entry.is_literal || entry.pattern_refs > 0 {
            return;
        }
        session.subscriptions.swap_remove(index);
        match event {
            None => self
                .routes
                .remove_all_events(queue, key, session.named_events(queue)),
            Some(event) if !session.has_all_events(queue) => {
                self.routes.remove_event(queue, key, event);
            }
            Some(_) => {}
        }
        if !session.subscriptions.iter().any(|s| s.queue == queue) {
            self.routes.queue_mut(queue).subscribers -= 1;
            // Freed once nothing uses it (issue 12: queue names do not run out).
            self.release_queue(queue);
        }
    }
}

/// Who holds a reference on a subscription entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// A SUBSCRIBE naming the queue itself.
    Literal,
    /// A pattern subscription matching the queue (`patterns.rs`).
    Pattern,
}
