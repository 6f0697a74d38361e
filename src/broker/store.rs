//! MessageStore: each accepted message stored once, reference counted.
//!
//! A message is stored only if at least one session will hold it. Its event name, conflation
//! key and payload share one allocation (the one allocation a publish makes). Every session
//! queue node holding the message counts one reference; the last release frees it
//! (mosquitto `msg_store.ref_count`).

use slab::Slab;

use super::QueueId;

/// Key of a stored message in the [`MessageStore`] slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsgKey(pub(crate) usize);

/// One stored message.
#[derive(Debug)]
pub(crate) struct StoredMessage {
    /// Server-wide message id (DELIVER.message_id).
    pub(crate) id: u64,
    /// Queue the message was published to.
    pub(crate) queue: QueueId,
    /// Conflation identity hash of (queue, event, key), when the message conflates.
    pub(crate) conflation: Option<u64>,
    /// Number of session queues holding this message; the message is freed at 0.
    pub(crate) refs: u32,
    event_len: u8,
    key_len: u8,
    /// event ++ key ++ payload.
    data: Box<[u8]>,
}

impl StoredMessage {
    pub(crate) fn event(&self) -> &[u8] {
        self.data.get(..self.event_len as usize).unwrap_or_default()
    }

    pub(crate) fn key(&self) -> &[u8] {
        let start = self.event_len as usize;
        self.data
            .get(start..start + self.key_len as usize)
            .unwrap_or_default()
    }

    pub(crate) fn payload(&self) -> &[u8] {
        let start = self.event_len as usize + self.key_len as usize;
        self.data.get(start..).unwrap_or_default()
    }

    /// Bytes counted against `max_queue_bytes` for each session holding it.
    pub(crate) fn queue_bytes(&self) -> u64 {
        self.payload().len() as u64
    }
}

/// All stored messages.
#[derive(Debug, Default)]
pub(crate) struct MessageStore {
    messages: Slab<StoredMessage>,
    /// Sum of payload bytes of stored messages.
    payload_bytes: u64,
}

impl MessageStore {
    /// Stores a message with zero references; the caller adds them with [`Self::retain`] and
    /// must call [`Self::release_if_unused`] if it ends up adding none.
    pub(crate) fn insert(
        &mut self,
        id: u64,
        queue: QueueId,
        conflation: Option<u64>,
        event: &[u8],
        key: &[u8],
        payload: &[u8],
    ) -> MsgKey {
        // Names are ≤ 255 bytes: the decoder read them with a u8 length.
        let event_len = u8::try_from(event.len()).unwrap_or(u8::MAX);
        let key_len = u8::try_from(key.len()).unwrap_or(u8::MAX);
        let mut data = Vec::with_capacity(event.len() + key.len() + payload.len());
        data.extend_from_slice(event);
        data.extend_from_slice(key);
        data.extend_from_slice(payload);
        self.payload_bytes += payload.len() as u64;
        MsgKey(self.messages.insert(StoredMessage {
            id,
            queue,
            conflation,
            refs: 0,
            event_len,
            key_len,
            data: data.into_boxed_slice(),
        }))
    }

    pub(crate) fn get(&self, key: MsgKey) -> &StoredMessage {
        // Invariant: a MsgKey is only held while its message has refs > 0, so it is live.
        &self.messages[key.0]
    }

    pub(crate) fn retain(&mut self, key: MsgKey) {
        self.messages[key.0].refs += 1;
    }

    /// Drops one reference; frees the message when none are left.
    pub(crate) fn release(&mut self, key: MsgKey) {
        let message = &mut self.messages[key.0];
        message.refs -= 1;
        if message.refs == 0 {
            self.free(key);
        }
    }

    /// Frees a message that no session took.
    pub(crate) fn release_if_unused(&mut self, key: MsgKey) {
        if self.messages[key.0].refs == 0 {
            self.free(key);
        }
    }

    fn free(&mut self, key: MsgKey) {
        let message = self.messages.remove(key.0);
        self.payload_bytes -= message.payload().len() as u64;
    }

    /// Number of stored messages.
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// Payload bytes stored.
    pub(crate) fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }
}
