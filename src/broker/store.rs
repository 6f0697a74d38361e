//! MessageStore: each accepted message stored once, reference counted.
//!
//! A message is stored only if at least one session will hold it. Its event name, conflation
//! key and payload share one buffer. Every session queue node holding the message counts one
//! reference; the last release frees it (mosquitto `msg_store.ref_count`).
//!
//! Buffers come from a pool of power-of-two size classes (64 B to 64 KiB, at most
//! [`POOL_BYTES`] kept), so a steady stream of messages allocates nothing at all once warmed
//! up; malloc and free were 13% of the server's instructions per message under callgrind.
//! Larger payloads are allocated exactly and freed.

use std::time::Instant;

use slab::Slab;

use super::delivery_queue::NodeKey;
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
    /// When its time to live runs out, if it has one (`expiry.rs`), and the anchor node of
    /// the chain of pending queue nodes holding it.
    pub(crate) expiry: Option<(Instant, NodeKey)>,
    event_len: u8,
    key_len: u8,
    /// Bytes of `data` in use.
    len: u32,
    /// event ++ key ++ payload, then unused capacity up to the buffer's size class.
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
        self.data.get(start..self.len as usize).unwrap_or_default()
    }

    /// Bytes counted against `max_queue_bytes` for each session holding it: its real cost
    /// (its buffer at its size class, plus a queue node). The buffer is allocated at exactly that size class, so its length
    /// is the figure, read in O(1) for every subscriber it is queued for.
    pub(crate) fn queue_bytes(&self) -> u64 {
        self.data.len() as u64 + super::memory::NODE_BYTES
    }
}

/// What one message costs a session holding it, counted against `max_queue_bytes`: its
/// buffer as allocated (event, key and payload rounded up to the size class) plus one queue
/// node (issue #12: 64-byte payloads cost ~276 B each, not 64).
/// The reference the tests and the model check [`StoredMessage::queue_bytes`] against.
#[cfg(test)]
pub(crate) fn message_cost(event_len: usize, key_len: usize, payload_len: usize) -> u64 {
    let len = event_len + key_len + payload_len;
    let allocated = BufferPool::class(len).map_or(len, |class| SMALLEST_CLASS << class);
    allocated as u64 + super::memory::NODE_BYTES
}

/// All stored messages.
#[derive(Debug, Default)]
pub(crate) struct MessageStore {
    messages: Slab<StoredMessage>,
    /// Sum of payload bytes of stored messages.
    payload_bytes: u64,
    /// Sum of the buffer sizes (size class, not length) of stored messages.
    buffer_bytes: u64,
    pool: BufferPool,
    /// Queues of messages freed since the broker last took them ([`Self::take_freed`]): each
    /// entry is one message fewer held for that queue.
    freed: Vec<QueueId>,
}

/// Most bytes of free buffers kept for reuse.
pub(crate) const POOL_BYTES: usize = 16 * 1024 * 1024;
const SMALLEST_CLASS: usize = 64;
const LARGEST_CLASS: usize = 64 * 1024;
const CLASSES: usize = 11; // 64 B, 128 B, ... 64 KiB

#[derive(Debug, Default)]
struct BufferPool {
    free: [Vec<Box<[u8]>>; CLASSES],
    bytes: usize,
}

impl BufferPool {
    fn class(len: usize) -> Option<usize> {
        (len <= LARGEST_CLASS).then(|| {
            let size = len.max(SMALLEST_CLASS).next_power_of_two();
            (size.trailing_zeros() - SMALLEST_CLASS.trailing_zeros()) as usize
        })
    }

    fn take(&mut self, len: usize) -> Box<[u8]> {
        let Some(class) = Self::class(len) else {
            return vec![0; len].into_boxed_slice();
        };
        match self.free.get_mut(class).and_then(Vec::pop) {
            Some(buf) => {
                self.bytes -= buf.len();
                buf
            }
            None => vec![0; SMALLEST_CLASS << class].into_boxed_slice(),
        }
    }

    fn put(&mut self, buf: Box<[u8]>) {
        let size = buf.len();
        if !size.is_power_of_two() || self.bytes + size > POOL_BYTES {
            return;
        }
        if let Some(list) = Self::class(size).and_then(|class| self.free.get_mut(class)) {
            self.bytes += size;
            list.push(buf);
        }
    }
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
        let len = event.len() + key.len() + payload.len();
        let mut data = self.pool.take(len);
        let (event_part, rest) = data.split_at_mut(event.len());
        event_part.copy_from_slice(event);
        let (key_part, rest) = rest.split_at_mut(key.len());
        key_part.copy_from_slice(key);
        rest[..payload.len()].copy_from_slice(payload);
        self.payload_bytes += payload.len() as u64;
        self.buffer_bytes += data.len() as u64;
        MsgKey(self.messages.insert(StoredMessage {
            id,
            queue,
            conflation,
            refs: 0,
            expiry: None,
            event_len,
            key_len,
            // Bounded by the frame limit (≤ 64 MiB).
            len: len as u32,
            data,
        }))
    }

    pub(crate) fn get(&self, key: MsgKey) -> &StoredMessage {
        // Invariant: a MsgKey is only held while its message has refs > 0, so it is live.
        &self.messages[key.0]
    }

    /// Gives a just-inserted message its expiry (see [`StoredMessage::expiry`]).
    pub(crate) fn set_expiry(&mut self, key: MsgKey, at: Instant, anchor: NodeKey) {
        self.messages[key.0].expiry = Some((at, anchor));
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
        self.buffer_bytes -= message.data.len() as u64;
        self.freed.push(message.queue);
        self.pool.put(message.data);
    }

    /// Moves the queues of messages freed since the last call into `out` (cleared first); the
    /// list keeps its capacity, so this allocates nothing once warmed up.
    pub(crate) fn take_freed(&mut self, out: &mut Vec<QueueId>) {
        out.clear();
        out.append(&mut self.freed);
    }

    /// Number of stored messages.
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// Bytes of buffers held: those of stored messages (at their size class) and the free
    /// ones the pool keeps for reuse.
    pub(crate) fn allocated_bytes(&self) -> u64 {
        self.buffer_bytes + self.pool.bytes as u64
    }

    /// Frees every buffer the pool keeps (memory is short: reuse can wait).
    pub(crate) fn trim_pool(&mut self) {
        self.pool = BufferPool::default();
    }

    /// Payload bytes stored.
    pub(crate) fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_buffers_are_reused_by_size_class_and_large_ones_are_not_pooled() {
        let mut store = MessageStore::default();
        let small = store.insert(1, QueueId(0), None, b"ev", b"", &[1; 100]);
        store.retain(small);
        assert_eq!(store.get(small).payload(), &[1; 100][..]);
        assert_eq!(store.get(small).event(), b"ev");
        store.release(small);
        assert_eq!(
            store.pool.bytes, 128,
            "102 bytes rounded up to the 128 B class"
        );
        let again = store.insert(2, QueueId(0), None, b"e", b"k", &[2; 90]);
        assert_eq!(store.pool.bytes, 0, "the 128 B buffer was taken back");
        assert_eq!(store.get(again).payload(), &[2; 90][..]);
        assert_eq!(store.get(again).key(), b"k");
        store.release_if_unused(again);
        let big = store.insert(3, QueueId(0), None, b"", b"", &vec![3; 100_000]);
        assert_eq!(store.get(big).payload().len(), 100_000);
        store.release_if_unused(big);
        assert_eq!(
            store.pool.bytes, 128,
            "payloads over 64 KiB are freed, not pooled"
        );
        assert_eq!((store.len(), store.payload_bytes()), (0, 0));
    }

    #[test]
    fn a_stored_message_costs_what_message_cost_says_pooled_or_not() {
        let mut store = MessageStore::default();
        for (event, key, payload) in [(1, 0, 5), (6, 3, 64), (0, 0, 1_000), (2, 2, 300_000)] {
            let msg = store.insert(
                1,
                QueueId(0),
                None,
                &vec![b'e'; event],
                &vec![b'k'; key],
                &vec![0; payload],
            );
            assert_eq!(
                store.get(msg).queue_bytes(),
                message_cost(event, key, payload),
                "{event}/{key}/{payload}"
            );
            store.release_if_unused(msg);
        }
    }
}
