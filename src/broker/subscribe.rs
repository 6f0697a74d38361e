//! SUBSCRIBE and UNSUBSCRIBE. Layout and rules: protocol.md §SUBSCRIBE.

use super::session;
use super::{Broker, ConnId, SessionKey};
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
        let is_subscribed =
            existing.is_some_and(|q| session.find_subscription(q, sub.event).is_some());
        if !is_subscribed {
            if session.subscriptions.len() + session.group.groups.len()
                >= self.config.max_subscriptions
            {
                let text = "max_subscriptions reached";
                self.fail(conn, ErrorCode::LimitExceeded, 0, text);
                return;
            }
            let Ok(queue) = self
                .routes
                .find_or_create(sub.queue, self.config.max_queues)
            else {
                self.fail(conn, ErrorCode::LimitExceeded, 0, "max_queues reached");
                return;
            };
            let session = &mut self.sessions[key.0];
            let had_any = session.subscriptions.iter().any(|s| s.queue == queue);
            let has_all = session.has_all_events(queue);
            match sub.event {
                None => self
                    .routes
                    .add_all_events(queue, key, session.named_events(queue)),
                Some(event) if !has_all => self.routes.add_event(queue, key, event),
                Some(_) => {}
            }
            session.push_subscription(session::Subscription {
                queue,
                event: sub.event.map(Box::from),
            });
            if !had_any {
                self.routes.queue_mut(queue).subscribers += 1;
            }
        }
        self.push_control(conn, |out| {
            let _ = encode_subscription(Op::Subscribed, sub, out);
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
            let session = &mut self.sessions[key.0];
            if let Some(index) = session.find_subscription(queue, sub.event) {
                session.subscriptions.swap_remove(index);
                match sub.event {
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
                }
            }
        }
        self.push_control(conn, |out| {
            let _ = encode_subscription(Op::Unsubscribed, sub, out);
        });
    }
}
