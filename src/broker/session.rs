//! A session: one client's identity, subscriptions, sequence numbers and delivery queue.
//!
//! A session outlives its connection: when the connection ends for a reason that is not the
//! session's own fault or wish, it is *detached* (`conn == None`) and kept for the listener's
//! `reconnect_keep_alive`, queuing under the disconnected limits, until the client resumes it
//! or it expires. Sequence numbers in both directions live here, not on the connection.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Instant;

use super::delivery_queue::{DeliveryQueue, NodeKey};
use super::groups::GroupMembership;
use super::journal::ReceiptHold;
use super::owners::Owner;
use super::patterns::PatternSubscription;
use super::{ConnId, QueueId};
use crate::credentials::Grant;
use crate::protocol::RESUME_TOKEN_LEN;

/// Key of a session in the broker's session slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey(pub(crate) usize);

/// One subscription: a queue and one event name, or every event (`event: None`).
#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) queue: QueueId,
    pub(crate) event: Option<Box<[u8]>>,
    /// A SUBSCRIBE named this queue itself (listed in STATS, removed by UNSUBSCRIBE).
    pub(crate) is_literal: bool,
    /// Pattern subscriptions of this session matching the queue (`patterns.rs`). The entry
    /// routes while it is literal or this is above 0.
    pub(crate) pattern_refs: u32,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: u64,
    /// Secret that proves the right to resume; compared in constant time.
    pub(crate) resume_token: [u8; RESUME_TOKEN_LEN],
    pub(crate) client_name: Box<str>,
    /// The connection it is attached to; `None` while detached.
    pub(crate) conn: Option<ConnId>,
    /// Listener whose settings apply (the one its latest connection came in on).
    pub(crate) listener: usize,
    /// When it was detached; `None` while connected.
    pub(crate) detached_at: Option<Instant>,
    /// Retires stale expiry timer entries: bumped on every detach and resume.
    pub(crate) generation: u64,
    /// In-flight window in force (≤ config `in_flight_window`).
    pub(crate) window: u32,
    pub(crate) queue: DeliveryQueue,
    pub(crate) subscriptions: Vec<Subscription>,
    /// Conflation identity hash → the pending node holding the newest such message; `None`
    /// until the session first queues a conflating message (most never do), kept after that.
    /// Invariant: every entry points at a node still pending in `queue`.
    pub(crate) conflation: Option<Box<ConflationMap>>,
    /// The queue of this session's latest publish: publishers tend to repeat it, so a byte
    /// comparison usually replaces the name lookup.
    pub(crate) last_queue: Option<QueueId>,
    /// Highest client publish seq accepted (0 = none).
    pub(crate) last_publish_seq: u64,
    /// A RECEIPT for `last_publish_seq` (or, while publishes wait for the journal, for
    /// [`Session::receipt_seq`]) has not been sent yet.
    pub(crate) is_receipt_due: bool,
    /// Publishes to durable queues whose batch is not durable yet, oldest first: the RECEIPT
    /// stays below the oldest (`broker::journal`). Empty, without allocation, for a session
    /// that never publishes to a durable queue.
    pub(crate) receipt_holds: VecDeque<ReceiptHold>,
    pub(crate) published: u64,
    pub(crate) delivered: u64,
    pub(crate) acked: u64,
    pub(crate) conflated: u64,
    /// `conflated` as of the latest DROPPED(CONFLATED) sent (protocol.md §DROPPED).
    pub(crate) conflated_told: u64,
    /// Its queued messages whose time to live ran out before they were sent (`expiry.rs`).
    pub(crate) expired: u64,
    /// `expired` as of the latest DROPPED(EXPIRED) sent.
    pub(crate) expired_told: u64,
    /// The session ends because of a message's arrival (QUEUE_OVERFLOW, or LIMIT_EXCEEDED for
    /// a message too large for its listener): that message is missed too (protocol.md §LOST).
    pub(crate) is_ended_by_arrival: bool,
    /// Its latest HELLO set EXTENSIONS: WELCOME carries the keep-alive, DROPPED is sent.
    pub(crate) has_extensions: bool,
    /// Deliveries sent again after a resume.
    pub(crate) redelivered: u64,
    /// Successful resumes.
    pub(crate) resumes: u64,
    /// Who authenticated it and what it may do, as checked at open or at its latest resume.
    pub(crate) grant: Arc<Grant>,
    /// Its competing-consumer group memberships and dead-letter counts (`groups.rs`).
    pub(crate) group: GroupMembership,
    /// Its pattern subscriptions (`patterns.rs`); bounded by `max_subscriptions`.
    pub(crate) patterns: Vec<PatternSubscription>,
    /// The identity and address it was opened by, counted against `max_sessions_per_*` and
    /// the queues it creates against `max_queues_per_*`.
    pub(crate) owner: Owner,
}

/// A session's conflation map (see [`Session::conflation`]).
pub(crate) type ConflationMap = HashMap<u64, NodeKey, BuildHasherDefault<IdentityHasher>>;

impl Session {
    /// Compares a presented token with this session's in constant time (no early exit), so
    /// timing tells an attacker nothing about how many bytes matched.
    pub(crate) fn is_token(&self, token: &[u8; RESUME_TOKEN_LEN]) -> bool {
        tokens_match(&self.resume_token, token)
    }

    /// The highest publish seq a RECEIPT may name now: `last_publish_seq`, or just below the
    /// oldest publish still waiting for the journal.
    pub(crate) fn receipt_seq(&self) -> u64 {
        super::journal::receipt_seq(&self.receipt_holds, self.last_publish_seq)
    }

    /// Something for its connection beyond control frames: a RECEIPT, redeliveries, or
    /// pending messages the window has room for.
    pub(crate) fn has_output(&self) -> bool {
        self.is_receipt_due
            || self.is_drop_notice_due()
            || self.queue.has_redeliveries()
            || (self.queue.has_pending() && self.queue.span() < self.window)
    }

    /// Messages were conflated away since the last DROPPED, and the client takes DROPPED.
    pub(crate) fn is_drop_notice_due(&self) -> bool {
        self.has_extensions
            && (self.conflated > self.conflated_told
                || self.expired > self.expired_told
                || self.group.dead_lettered > self.group.dead_lettered_told)
    }

    /// Subscriptions counted against `max_subscriptions`: literal ones, group memberships and
    /// patterns (the entries patterns add are not counted again).
    pub(crate) fn subscription_count(&self) -> usize {
        let literal = self.subscriptions.iter().filter(|s| s.is_literal).count();
        literal + self.group.groups.len() + self.patterns.len()
    }

    pub(crate) fn has_all_events(&self, queue: QueueId) -> bool {
        self.subscriptions
            .iter()
            .any(|s| s.queue == queue && s.event.is_none())
    }

    pub(crate) fn named_events(&self, queue: QueueId) -> impl Iterator<Item = &[u8]> {
        self.subscriptions
            .iter()
            .filter(move |s| s.queue == queue)
            .filter_map(|s| s.event.as_deref())
    }

    /// The pending node holding the newest message with conflation identity `hash`.
    pub(crate) fn conflated_node(&self, hash: u64) -> Option<NodeKey> {
        self.conflation.as_ref()?.get(&hash).copied()
    }

    /// Adds a subscription; the first one gets a list of exactly one (most sessions never
    /// have more), later ones grow it as usual.
    pub(crate) fn push_subscription(&mut self, subscription: Subscription) {
        if self.subscriptions.capacity() == 0 {
            self.subscriptions.reserve_exact(1);
        }
        self.subscriptions.push(subscription);
    }

    pub(crate) fn find_subscription(&self, queue: QueueId, event: Option<&[u8]>) -> Option<usize> {
        self.subscriptions
            .iter()
            .position(|s| s.queue == queue && s.event.as_deref() == event)
    }
}

/// The conflation map's keys are already SipHash outputs keyed by a per-broker random key;
/// hashing them again per subscriber would be wasted work.
#[derive(Debug, Default)]
pub(crate) struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Constant-time equality of two resume tokens.
pub(crate) fn tokens_match(a: &[u8; RESUME_TOKEN_LEN], b: &[u8; RESUME_TOKEN_LEN]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}
