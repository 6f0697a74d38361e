//! Pattern subscriptions (issue #14): a SUBSCRIBE with PATTERN names queues by a pattern of
//! `.`-separated levels, where `*` matches exactly one level and a final `>` one or more.
//! Layout and rules: protocol.md §SUBSCRIBE (PATTERN) and §Patterns.
//!
//! A pattern is resolved against queue names when the subscription is added (every queue
//! known) and when a queue is created (every pattern subscription known), never per message.
//! Each match becomes a reference on the session's own (queue, event) subscription entry
//! (`session::Subscription::pattern_refs`), the same entry a literal SUBSCRIBE uses, so routing
//! is unchanged and a session gets each message once however many of its subscriptions match
//! (a literal one and two patterns, say). The identity's subscribe permissions are checked per
//! queue at match time: a queue it may not read is simply not matched.
//!
//! Invariants: every queue in a pattern's `matched` list holds exactly one `pattern_refs` on
//! the session's entry for (queue, the pattern's event); `Patterns::sessions` lists exactly the
//! live sessions with at least one pattern subscription.

use log::debug;

use super::subscribe::Source;
use super::{Broker, ConnId, QueueId, SessionKey};
use crate::protocol::codec::encode_subscription;
use crate::protocol::{ErrorCode, Op, Subscription};

/// A session's pattern subscription.
#[derive(Debug)]
pub(crate) struct PatternSubscription {
    pub(crate) pattern: Box<[u8]>,
    /// One event, or every event (`None`).
    pub(crate) event: Option<Box<[u8]>>,
    /// Queues it matches that the session may subscribe to; each holds one reference on the
    /// session's subscription entry. Bounded by `max_queues`.
    pub(crate) matched: Vec<QueueId>,
}

/// Broker-wide index of pattern subscribers, looked at when a queue is created.
#[derive(Debug, Default)]
pub(crate) struct Patterns {
    /// Sessions with at least one pattern subscription (bounded by the session count).
    sessions: Vec<SessionKey>,
}

/// Why a pattern is refused (ERROR(INVALID_NAME)).
pub(crate) fn check_pattern(pattern: &[u8]) -> Result<(), &'static str> {
    let levels = pattern.split(|&b| b == b'.').count();
    for (index, level) in pattern.split(|&b| b == b'.').enumerate() {
        match level {
            [] => return Err("a pattern level must not be empty"),
            b">" if index + 1 != levels => return Err("`>` may only be the last level"),
            b"*" | b">" => {}
            _ if level.iter().any(|&b| b == b'*' || b == b'>') => {
                return Err("`*` and `>` must be a whole level")
            }
            _ => {}
        }
    }
    Ok(())
}

/// True if queue `name` matches `pattern` (checked by [`check_pattern`]). Bounded work: one
/// pass over both; no allocation.
pub(crate) fn pattern_matches(pattern: &[u8], name: &[u8]) -> bool {
    let mut levels = name.split(|&b| b == b'.');
    for token in pattern.split(|&b| b == b'.') {
        if token == b">" {
            return levels.next().is_some();
        }
        match levels.next() {
            Some(level) if token == b"*" || token == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

impl Broker {
    /// SUBSCRIBE with PATTERN (EXTENSIONS checked by the caller).
    pub(super) fn handle_subscribe_pattern(
        &mut self,
        conn: ConnId,
        key: SessionKey,
        sub: &Subscription<'_>,
    ) {
        if sub.group.is_some() {
            let text = "PATTERN together with GROUP is not supported";
            self.fail(conn, ErrorCode::MalformedFrame, 0, text);
            return;
        }
        if let Err(text) = check_pattern(sub.queue) {
            self.fail(conn, ErrorCode::InvalidName, 0, text);
            return;
        }
        let session = &self.sessions[key.0];
        let is_subscribed = session
            .patterns
            .iter()
            .any(|p| *p.pattern == *sub.queue && p.event.as_deref() == sub.event);
        if !is_subscribed {
            if session.subscription_count() >= self.config.max_subscriptions {
                let text = "max_subscriptions reached";
                self.fail(conn, ErrorCode::LimitExceeded, 0, text);
                return;
            }
            // Bounded: one pass over the queues (≤ max_queues), once per SUBSCRIBE.
            let mut matched = Vec::new();
            for index in 0..self.routes.len() {
                let queue = QueueId(index as u32);
                if self.may_match(key, sub.queue, queue) {
                    matched.push(queue);
                }
            }
            for &queue in &matched {
                self.add_subscription_ref(key, queue, sub.event, Source::Pattern);
            }
            let session = &mut self.sessions[key.0];
            if session.patterns.is_empty() {
                self.patterns.sessions.push(key);
            }
            debug!(
                "session {:016x}: pattern {:?} matches {} queues",
                session.id,
                String::from_utf8_lossy(sub.queue),
                matched.len()
            );
            session.patterns.push(PatternSubscription {
                pattern: sub.queue.into(),
                event: sub.event.map(Box::from),
                matched,
            });
        }
        self.push_control(conn, |out| {
            let _ = encode_subscription(Op::Subscribed, sub, out);
        });
    }

    /// UNSUBSCRIBE with PATTERN: removes the subscription with this pattern and event, if any.
    /// Messages already queued stay queued.
    pub(super) fn handle_unsubscribe_pattern(&mut self, key: SessionKey, sub: &Subscription<'_>) {
        let session = &mut self.sessions[key.0];
        let Some(index) = session
            .patterns
            .iter()
            .position(|p| *p.pattern == *sub.queue && p.event.as_deref() == sub.event)
        else {
            return;
        };
        let removed = session.patterns.swap_remove(index);
        if session.patterns.is_empty() {
            self.forget_pattern_session(key);
        }
        for queue in removed.matched {
            self.remove_subscription_ref(key, queue, sub.event, Source::Pattern);
        }
    }

    /// Finds or creates queue `name` for session `key` (within `max_queues` and its owner's
    /// `max_queues_per_*`; the error is the LIMIT_EXCEEDED text); a new queue is matched
    /// against every pattern subscription at once. Every queue creation outside the config goes
    /// through here.
    pub(super) fn find_or_create_queue(
        &mut self,
        key: SessionKey,
        name: &[u8],
    ) -> Result<QueueId, &'static str> {
        if let Some(id) = self.routes.find(name) {
            return Ok(id);
        }
        let id = self.try_create_queue(key, name)?;
        self.match_new_queue(id);
        Ok(id)
    }

    /// Finds or creates a queue the configuration names (a dead-letter queue): counted against
    /// `max_queues` only, not against a session's owner.
    pub(super) fn find_or_create_unowned_queue(
        &mut self,
        name: &[u8],
    ) -> Result<QueueId, super::routes::TooManyQueues> {
        if let Some(id) = self.routes.find(name) {
            return Ok(id);
        }
        let id = self
            .routes
            .try_create_unowned(name, self.config.max_queues)?;
        self.match_new_queue(id);
        Ok(id)
    }

    /// Whether a pattern subscription of a session allowed to read it would match a queue
    /// named `name`: a publish to a name that is no queue yet creates it only then (issue 12:
    /// names nobody wants are not kept). Bounded work: the pattern subscriptions.
    pub(super) fn is_wanted_by_a_pattern(&self, name: &[u8]) -> bool {
        self.patterns.sessions.iter().any(|&key| {
            let session = &self.sessions[key.0];
            session
                .patterns
                .iter()
                .any(|p| pattern_matches(&p.pattern, name))
                && session.grant.permissions.may_subscribe(name)
        })
    }

    /// A queue was created: each pattern subscription that matches it, of a session allowed to
    /// subscribe to it, starts routing it. Bounded work: one pass over the pattern subscribers
    /// (sessions × max_subscriptions at most), once per queue.
    pub(super) fn match_new_queue(&mut self, queue: QueueId) {
        let mut index = 0;
        while let Some(&key) = self.patterns.sessions.get(index) {
            index += 1;
            // Taken out while its entries are updated (no clone of the patterns).
            let mut patterns = std::mem::take(&mut self.sessions[key.0].patterns);
            for pattern in &mut patterns {
                if self.may_match(key, &pattern.pattern, queue) {
                    pattern.matched.push(queue);
                    let event = pattern.event.as_deref();
                    self.add_subscription_ref(key, queue, event, Source::Pattern);
                }
            }
            self.sessions[key.0].patterns = patterns;
        }
    }

    /// A session ends: it leaves the pattern index (its entries go with its subscriptions).
    pub(super) fn forget_pattern_session(&mut self, key: SessionKey) {
        if let Some(at) = self.patterns.sessions.iter().position(|&k| k == key) {
            self.patterns.sessions.swap_remove(at);
        }
    }

    /// `queue` matches `pattern` and the session may subscribe to it.
    fn may_match(&self, key: SessionKey, pattern: &[u8], queue: QueueId) -> bool {
        let name = &self.routes.queue(queue).name;
        pattern_matches(pattern, name) && self.sessions[key.0].grant.permissions.may_subscribe(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_matches_exactly_one_level() {
        assert!(pattern_matches(b"orders.*", b"orders.eu"));
        assert!(!pattern_matches(b"orders.*", b"orders"));
        assert!(!pattern_matches(b"orders.*", b"orders.eu.fr"));
        assert!(pattern_matches(b"*.eu", b"orders.eu"));
        assert!(pattern_matches(b"*", b"orders"));
        assert!(!pattern_matches(b"*", b"orders.eu"));
    }

    #[test]
    fn a_final_gt_matches_one_or_more_levels() {
        assert!(pattern_matches(b"orders.>", b"orders.eu"));
        assert!(pattern_matches(b"orders.>", b"orders.eu.fr"));
        assert!(!pattern_matches(b"orders.>", b"orders"));
        assert!(!pattern_matches(b"orders.>", b"ordersx.eu"));
        assert!(pattern_matches(b">", b"a.b.c"));
    }

    #[test]
    fn literal_levels_compare_whole_levels() {
        assert!(pattern_matches(b"orders.eu", b"orders.eu"));
        assert!(!pattern_matches(b"orders.eu", b"orders.eux"));
        assert!(!pattern_matches(b"orders.eu", b"orders"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            &b"orders..eu"[..],
            b".orders",
            b"orders.",
            b"orders.>.eu",
            b"a*.b",
            b"a.>b",
        ] {
            assert!(
                check_pattern(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for good in [&b"orders.>"[..], b"*.eu.*", b">", b"*", b"orders"] {
            assert!(
                check_pattern(good).is_ok(),
                "{:?}",
                String::from_utf8_lossy(good)
            );
        }
    }
}
