//! A session: one client's identity, subscriptions, sequence numbers and delivery queue.
//!
//! In v1 a session lives exactly as long as its connection; the fields that let it outlive
//! one (resume token, both sequence counters) are already kept here.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::queue::{NodeKey, SessionQueue};
use super::{ConnId, QueueId};
use crate::protocol::RESUME_TOKEN_LEN;

/// Key of a session in the broker's session slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey(pub(crate) usize);

/// One subscription: a queue and one event name, or every event (`event: None`).
#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) queue: QueueId,
    pub(crate) event: Option<Box<[u8]>>,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: u64,
    /// Secret that proves the right to resume; compared in constant time (issue 3).
    #[allow(dead_code)]
    pub(crate) resume_token: [u8; RESUME_TOKEN_LEN],
    pub(crate) client_name: Box<str>,
    pub(crate) conn: ConnId,
    /// In-flight window in force (≤ config `inflight_window`).
    pub(crate) window: u32,
    pub(crate) queue: SessionQueue,
    pub(crate) subscriptions: Vec<Subscription>,
    /// Conflation identity hash → the pending node holding the newest such message.
    /// Invariant: every entry points at a node still pending in `queue`.
    pub(crate) conflation: HashMap<u64, NodeKey, BuildHasherDefault<IdentityHasher>>,
    /// Highest client publish seq accepted (0 = none).
    pub(crate) last_publish_seq: u64,
    /// A RECEIPT for `last_publish_seq` has not been sent yet.
    pub(crate) is_receipt_due: bool,
    pub(crate) published: u64,
    pub(crate) delivered: u64,
    pub(crate) acked: u64,
    pub(crate) conflated: u64,
}

impl Session {
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
