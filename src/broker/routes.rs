//! Queues and subscriptions: which sessions a message published to (queue, event) reaches.
//!
//! Names are interned once, at subscribe or first publish; a publish looks its queue up with a
//! borrowed `&[u8]` and finds its targets in two lists: the queue's ALL_EVENTS subscribers and
//! the subscribers of its event name. A session subscribed both ways is kept out of the event
//! lists of that queue, so routing needs no per-subscriber check to deliver once.
//!
//! A queue lives while it is declared in the config, has a subscriber, or has stored
//! messages (a DELIVER needs its name); otherwise it is freed ([`Routes::release_if_unused`]),
//! so `max_queues` counts live queues and a flood of names cannot use them up for good
//! (issue #12). A publish to a name nobody subscribes to creates nothing.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;
use slab::Slab;

use super::journal::DurableQueue;
use super::owners::Owner;
use super::SessionKey;
use crate::config::{QueueConfig, DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES};

/// Index of a queue in [`Routes`]. Held only while the queue lives (by subscriptions, stored
/// messages, or as a cache checked with [`Routes::get`]); a freed queue's id may be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub(crate) u32);

/// One queue.
#[derive(Debug)]
pub(crate) struct Queue {
    /// Shared with the name index, `Routes::by_name`: one allocation per queue name.
    pub(crate) name: Arc<[u8]>,
    /// Every message conflates on (event, key).
    pub(crate) conflate: bool,
    /// Largest payload accepted, if limited.
    pub(crate) max_payload_len: Option<u32>,
    /// Messages accepted for this queue.
    pub(crate) published: u64,
    /// DELIVERs sent of its messages, first deliveries only (a fan-out to n sessions counts n).
    pub(crate) delivered: u64,
    /// Positions, retained messages and sync policy of a durable queue; `None` for the
    /// others (every queue without a `data_dir`).
    pub(crate) durable: Option<Box<DurableQueue>>,
    /// Default time to live of its messages, in ms (0 = none; `expiry.rs`).
    pub(crate) ttl_ms: u32,
    /// Sessions subscribed to every event.
    all_events: SessionList,
    /// Sessions subscribed to a named event and not to ALL_EVENTS; `None` until the first
    /// such subscription (a queue per subscriber is common, and its map would stay empty).
    by_event: Option<Box<EventMap>>,
    /// Distinct sessions with any subscription on this queue.
    pub(crate) subscribers: u32,
    /// Stored messages published to this queue.
    pub(crate) held: u32,
    /// Declared in the config: never freed.
    pub(crate) is_declared: bool,
    /// Who created it (counted against the per-identity and per-address queue limits);
    /// `None` for declared queues.
    pub(crate) owner: Option<Box<Owner>>,
}

impl Queue {
    fn is_unused(&self) -> bool {
        // A durable queue is always declared; the check keeps its positions whatever happens.
        !self.is_declared && self.subscribers == 0 && self.held == 0 && self.durable.is_none()
    }
}

/// All queues.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    queues: Slab<Queue>,
    by_name: HashMap<Arc<[u8]>, QueueId, RandomState>,
}

/// Event name → sessions subscribed to it (see [`Queue`]).
type EventMap = HashMap<Box<[u8]>, Vec<SessionKey>, RandomState>;

/// Why a queue could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TooManyQueues;

impl Routes {
    pub(crate) fn new(declared: &[QueueConfig]) -> Routes {
        let mut routes = Routes::default();
        for q in declared {
            let _ = routes.declare(q, true);
        }
        routes
    }

    /// Applies a queue declaration from the config (at startup or reload), creating the
    /// queue if needed; never refused by `max_queues`. Durability starts only at startup
    /// (the journal's files are opened then); a reload changes a durable queue's sync policy
    /// and retention. A declared queue counts against nobody: returns the owner it had been
    /// counted against, if any.
    pub(crate) fn declare(
        &mut self,
        declared: &QueueConfig,
        is_startup: bool,
    ) -> Option<Box<Owner>> {
        let id = self
            .find(declared.name.as_bytes())
            .unwrap_or_else(|| self.create(declared.name.as_bytes(), None));
        let queue = &mut self.queues[id.0 as usize];
        queue.conflate = declared.conflate;
        queue.max_payload_len = declared.max_payload_len;
        let max_messages = declared.max_messages.unwrap_or(DEFAULT_MAX_MESSAGES);
        let max_bytes = declared.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        match &mut queue.durable {
            Some(durable) => {
                durable.fsync = declared.fsync_policy();
                durable.max_messages = max_messages;
                durable.max_bytes = max_bytes;
            }
            None if declared.durable && is_startup => {
                queue.durable = Some(Box::new(DurableQueue {
                    fsync: declared.fsync_policy(),
                    next_position: 1,
                    retained: std::collections::VecDeque::new(),
                    retained_bytes: 0,
                    max_messages,
                    max_bytes,
                    trimmed_below: 1,
                }));
            }
            None if declared.durable => log::warn!(
                "queue {:?}: durable = true takes effect at the next restart",
                declared.name
            ),
            None => {}
        }
        queue.ttl_ms = declared.ttl_ms;
        queue.is_declared = true;
        queue.owner.take()
    }

    /// A declaration was removed from the config: the queue stays while used, with default
    /// settings. Returns its owner if it was freed.
    pub(crate) fn undeclare(&mut self, name: &str) {
        if let Some(id) = self.find(name.as_bytes()) {
            let queue = &mut self.queues[id.0 as usize];
            queue.conflate = false;
            queue.max_payload_len = None;
            queue.ttl_ms = 0;
            queue.is_declared = false;
            let _ = self.release_if_unused(id);
        }
    }

    /// Frees queue `id` if nothing uses it (not declared, no subscriber, no stored message);
    /// returns its owner, if it was freed and had one.
    pub(crate) fn release_if_unused(&mut self, id: QueueId) -> Option<Box<Owner>> {
        let queue = self.queues.get(id.0 as usize)?;
        if !queue.is_unused() {
            return None;
        }
        let queue = self.queues.remove(id.0 as usize);
        self.by_name.remove(&queue.name);
        queue.owner
    }

    pub(crate) fn len(&self) -> usize {
        self.queues.len()
    }

    pub(crate) fn find(&self, name: &[u8]) -> Option<QueueId> {
        self.by_name.get(name).copied()
    }

    /// Creates a queue owned by `owner`, within `max_queues` (the caller checked that `name`
    /// is not a queue yet, and the owner's own limits).
    pub(crate) fn try_create(
        &mut self,
        name: &[u8],
        max_queues: usize,
        owner: Owner,
    ) -> Result<QueueId, TooManyQueues> {
        if self.queues.len() >= max_queues {
            return Err(TooManyQueues);
        }
        Ok(self.create(name, Some(Box::new(owner))))
    }

    /// Creates a queue the configuration names (a dead-letter queue), owned by nobody, within
    /// `max_queues`.
    pub(crate) fn try_create_unowned(
        &mut self,
        name: &[u8],
        max_queues: usize,
    ) -> Result<QueueId, TooManyQueues> {
        if self.queues.len() >= max_queues {
            return Err(TooManyQueues);
        }
        Ok(self.create(name, None))
    }

    fn create(&mut self, name: &[u8], owner: Option<Box<Owner>>) -> QueueId {
        let name: Arc<[u8]> = name.into();
        // Bounded by max_queues (validated ≤ usize; u32 ids leave ample room).
        let id = QueueId(self.queues.vacant_key() as u32);
        self.by_name.insert(Arc::clone(&name), id);
        self.queues.insert(Queue {
            name,
            conflate: false,
            max_payload_len: None,
            published: 0,
            delivered: 0,
            durable: None,
            ttl_ms: 0,
            all_events: SessionList::Empty,
            by_event: None,
            subscribers: 0,
            held: 0,
            is_declared: false,
            owner,
        });
        id
    }

    pub(crate) fn queue(&self, id: QueueId) -> &Queue {
        // Invariant: a QueueId is held (by a subscription or a stored message) only while its
        // queue lives; caches go through `get`.
        &self.queues[id.0 as usize]
    }

    /// The queue `id`, if it still lives.
    pub(crate) fn get(&self, id: QueueId) -> Option<&Queue> {
        self.queues.get(id.0 as usize)
    }

    pub(crate) fn queue_mut(&mut self, id: QueueId) -> &mut Queue {
        &mut self.queues[id.0 as usize]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Queue> {
        self.queues.iter().map(|(_, queue)| queue)
    }

    /// Appends the sessions a message to (queue, event) reaches to `out`. No allocation
    /// beyond `out`'s growth; one hash lookup for the event.
    pub(crate) fn targets(&self, id: QueueId, event: &[u8], out: &mut Vec<SessionKey>) {
        let queue = self.queue(id);
        out.extend_from_slice(queue.all_events.as_slice());
        let Some(by_event) = queue.by_event.as_deref() else {
            return;
        };
        if by_event.is_empty() {
            return;
        }
        if let Some(list) = by_event.get(event) {
            out.extend_from_slice(list);
        }
    }

    /// Adds `session` to the ALL_EVENTS list and removes it from the event lists named in
    /// `named_events` (its own named subscriptions on this queue).
    pub(crate) fn add_all_events<'a>(
        &mut self,
        id: QueueId,
        session: SessionKey,
        named_events: impl Iterator<Item = &'a [u8]>,
    ) {
        let queue = self.queue_mut(id);
        queue.all_events.push(session);
        if let Some(by_event) = &mut queue.by_event {
            for event in named_events {
                remove_from(by_event, event, session);
            }
        }
    }

    /// Reverses [`Self::add_all_events`]: the session's named subscriptions route again.
    pub(crate) fn remove_all_events<'a>(
        &mut self,
        id: QueueId,
        session: SessionKey,
        named_events: impl Iterator<Item = &'a [u8]>,
    ) {
        let queue = self.queue_mut(id);
        queue.all_events.remove(session);
        let mut named_events = named_events.peekable();
        if named_events.peek().is_none() {
            return;
        }
        let by_event = queue.by_event.get_or_insert_with(Box::default);
        for event in named_events {
            by_event.entry(event.into()).or_default().push(session);
        }
    }

    /// Adds `session` to one event's list (call only if it has no ALL_EVENTS subscription).
    pub(crate) fn add_event(&mut self, id: QueueId, session: SessionKey, event: &[u8]) {
        let by_event = self.queue_mut(id).by_event.get_or_insert_with(Box::default);
        match by_event.get_mut(event) {
            Some(list) => list.push(session),
            None => {
                by_event.insert(event.into(), vec![session]);
            }
        }
    }

    /// Removes `session` from one event's list, if present.
    pub(crate) fn remove_event(&mut self, id: QueueId, session: SessionKey, event: &[u8]) {
        if let Some(by_event) = &mut self.queue_mut(id).by_event {
            remove_from(by_event, event, session);
        }
    }
}

/// Sessions in routing order; one is held without allocating (a queue per subscriber is
/// common). Once a list has allocated it stays a `Vec`, so its order changes exactly as a
/// `Vec`'s would (push, swap_remove).
#[derive(Debug)]
enum SessionList {
    Empty,
    One(SessionKey),
    Many(Vec<SessionKey>),
}

impl SessionList {
    fn as_slice(&self) -> &[SessionKey] {
        match self {
            SessionList::Empty => &[],
            SessionList::One(session) => std::slice::from_ref(session),
            SessionList::Many(list) => list,
        }
    }

    fn push(&mut self, session: SessionKey) {
        match self {
            SessionList::Empty => *self = SessionList::One(session),
            SessionList::One(first) => *self = SessionList::Many(vec![*first, session]),
            SessionList::Many(list) => list.push(session),
        }
    }

    /// Removes `session` if present, moving the last one into its place.
    fn remove(&mut self, session: SessionKey) {
        match self {
            SessionList::Empty => {}
            SessionList::One(only) => {
                if *only == session {
                    *self = SessionList::Empty;
                }
            }
            SessionList::Many(list) => {
                if let Some(pos) = list.iter().position(|&s| s == session) {
                    list.swap_remove(pos);
                }
            }
        }
    }
}

fn remove_from(by_event: &mut EventMap, event: &[u8], s: SessionKey) {
    if let Some(list) = by_event.get_mut(event) {
        if let Some(pos) = list.iter().position(|&x| x == s) {
            list.swap_remove(pos);
        }
        if list.is_empty() {
            by_event.remove(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &SessionList) -> Vec<usize> {
        list.as_slice().iter().map(|s| s.0).collect()
    }

    #[test]
    fn a_session_list_orders_like_a_vec_through_pushes_and_removals() {
        let mut list = SessionList::Empty;
        list.push(SessionKey(1));
        assert_eq!(keys(&list), [1]);
        list.remove(SessionKey(9));
        assert_eq!(keys(&list), [1]);
        list.push(SessionKey(2));
        list.push(SessionKey(3));
        list.remove(SessionKey(1));
        assert_eq!(keys(&list), [3, 2]);
        list.remove(SessionKey(3));
        list.remove(SessionKey(2));
        assert_eq!(keys(&list), [] as [usize; 0]);
        let mut one = SessionList::Empty;
        one.push(SessionKey(4));
        one.remove(SessionKey(4));
        assert_eq!(keys(&one), [] as [usize; 0]);
    }
}
