//! The outbound queue of a [`ReconnectingClient`](super::ReconnectingClient): publishes not
//! yet receipted, kept so that they can be sent again after a resume.
//!
//! Invariant: the seqs held are consecutive, oldest first (publishes are appended with the next
//! seq and leave from the front when a RECEIPT covers them), so "everything after seq L" is a
//! suffix and the first seq held is what HELLO's `first_resendable_publish_seq` states.
//!
//! Each publish is one allocation: queue, event, key and payload packed in one boxed slice.

use std::collections::VecDeque;
use std::fmt;

use crate::protocol::MAX_NAME_LEN;

/// One publish not yet receipted.
pub(super) struct Outgoing {
    /// Its publish seq in the session in force.
    pub(super) seq: u64,
    /// queue ++ event ++ key ++ payload.
    data: Box<[u8]>,
    /// Names are ≤ 255 bytes (checked before a publish is queued).
    queue_len: u8,
    event_len: u8,
    key_len: Option<u8>,
    /// Its time to live, if published with one (it starts again when resent after a resume).
    pub(super) ttl_ms: Option<u32>,
}

impl Outgoing {
    pub(super) fn queue(&self) -> &[u8] {
        &self.data[..self.queue_len as usize]
    }

    pub(super) fn event(&self) -> &[u8] {
        let start = self.queue_len as usize;
        &self.data[start..start + self.event_len as usize]
    }

    pub(super) fn key(&self) -> Option<&[u8]> {
        let start = self.queue_len as usize + self.event_len as usize;
        self.key_len
            .map(|len| &self.data[start..start + len as usize])
    }

    pub(super) fn payload(&self) -> &[u8] {
        let start = self.queue_len as usize
            + self.event_len as usize
            + self.key_len.map_or(0, |len| len as usize);
        &self.data[start..]
    }
}

/// Publishes not yet receipted, bounded in number and bytes.
pub(super) struct Outbound {
    entries: VecDeque<Outgoing>,
    /// Sum of `data` lengths; always ≤ `max_bytes` unless a single entry is larger.
    bytes: usize,
    max_len: usize,
    max_bytes: usize,
}

impl Outbound {
    pub(super) fn new(max_len: usize, max_bytes: usize) -> Outbound {
        Outbound {
            entries: VecDeque::new(),
            bytes: 0,
            max_len,
            max_bytes,
        }
    }

    /// True when a publish of `size` bytes (names and payload) fits. An empty queue takes
    /// any one publish, so a payload larger than `max_bytes` still goes through, alone.
    pub(super) fn has_room(&self, size: usize) -> bool {
        self.entries.is_empty()
            || (self.entries.len() < self.max_len && self.bytes + size <= self.max_bytes)
    }

    /// Appends a publish; `seq` must be the last seq held + 1, names ≤ 255 bytes.
    pub(super) fn push(
        &mut self,
        seq: u64,
        queue: &[u8],
        event: &[u8],
        key: Option<&[u8]>,
        payload: &[u8],
    ) {
        debug_assert!(self.entries.back().is_none_or(|last| last.seq + 1 == seq));
        debug_assert!(queue.len() <= MAX_NAME_LEN && event.len() <= MAX_NAME_LEN);
        let key_bytes = key.unwrap_or_default();
        let mut data = Vec::with_capacity(publish_size(queue, event, key, payload));
        data.extend_from_slice(queue);
        data.extend_from_slice(event);
        data.extend_from_slice(key_bytes);
        data.extend_from_slice(payload);
        self.bytes += data.len();
        self.entries.push_back(Outgoing {
            seq,
            data: data.into_boxed_slice(),
            queue_len: queue.len() as u8,
            event_len: event.len() as u8,
            key_len: key.map(|k| k.len() as u8),
            ttl_ms: None,
        });
    }

    /// Gives the publish just pushed a time to live.
    pub(super) fn set_last_ttl(&mut self, ttl_ms: Option<u32>) {
        if let Some(last) = self.entries.back_mut() {
            last.ttl_ms = ttl_ms;
        }
    }

    /// Drops every publish with a seq ≤ `up_to` (a RECEIPT, or WELCOME's last_publish_seq).
    pub(super) fn receipted(&mut self, up_to: u64) {
        while let Some(first) = self.entries.front() {
            if first.seq > up_to {
                break;
            }
            self.bytes -= first.data.len();
            self.entries.pop_front();
        }
    }

    /// Gives the publishes held the seqs `first`, `first + 1`, ... (a new session after LOST).
    pub(super) fn renumber(&mut self, first: u64) {
        for (seq, entry) in (first..).zip(self.entries.iter_mut()) {
            entry.seq = seq;
        }
    }

    /// The oldest seq held.
    pub(super) fn first_seq(&self) -> Option<u64> {
        self.entries.front().map(|e| e.seq)
    }

    /// The publishes with a seq above `seq`, oldest first.
    pub(super) fn after(&self, seq: u64) -> impl Iterator<Item = &Outgoing> {
        let skip = self.first_seq().map_or(0, |first| {
            usize::try_from(seq.saturating_add(1).saturating_sub(first)).unwrap_or(usize::MAX)
        });
        self.entries.iter().skip(skip)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("len", &self.entries.len())
            .field("bytes", &self.bytes)
            .field("first_seq", &self.first_seq())
            .finish()
    }
}

/// Bytes a publish takes in the outbound queue.
pub(super) fn publish_size(
    queue: &[u8],
    event: &[u8],
    key: Option<&[u8]>,
    payload: &[u8],
) -> usize {
    queue.len() + event.len() + key.map_or(0, <[u8]>::len) + payload.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(seqs: std::ops::RangeInclusive<u64>) -> Outbound {
        let mut outbound = Outbound::new(100, 1 << 20);
        for seq in seqs {
            let payload = seq.to_string();
            outbound.push(seq, b"q", b"ev", Some(b"k"), payload.as_bytes());
        }
        outbound
    }

    #[test]
    fn fields_come_back_as_pushed() {
        let mut outbound = Outbound::new(10, 100);
        outbound.push(1, b"queue", b"", None, b"payload");
        outbound.push(2, b"q", b"event", Some(b""), b"");
        let all: Vec<_> = outbound
            .after(0)
            .map(|e| (e.seq, e.queue(), e.event(), e.key(), e.payload()))
            .collect();
        assert_eq!(
            all,
            [
                (1, &b"queue"[..], &b""[..], None, &b"payload"[..]),
                (2, b"q", b"event", Some(&b""[..]), b""),
            ]
        );
    }

    #[test]
    fn receipts_drop_from_the_front_and_after_skips_what_the_server_has() {
        let mut outbound = filled(5..=9);
        outbound.receipted(6);
        assert_eq!(outbound.first_seq(), Some(7));
        let resend: Vec<u64> = outbound.after(7).map(|e| e.seq).collect();
        assert_eq!(resend, [8, 9]);
        assert_eq!(outbound.after(3).count(), 3);
        assert_eq!(outbound.after(9).count(), 0);
        outbound.renumber(1);
        let renumbered: Vec<u64> = outbound.after(0).map(|e| e.seq).collect();
        assert_eq!(renumbered, [1, 2, 3]);
        assert_eq!(outbound.after(0).next().unwrap().payload(), b"7");
        outbound.receipted(u64::MAX);
        assert_eq!(outbound.len(), 0);
        assert_eq!(outbound.bytes, 0);
    }

    #[test]
    fn room_is_bounded_by_count_and_bytes_but_one_publish_always_fits() {
        let mut outbound = Outbound::new(2, 10);
        assert!(outbound.has_room(1000));
        outbound.push(1, b"q", b"", None, b"1234");
        assert!(outbound.has_room(5));
        assert!(!outbound.has_room(6));
        outbound.push(2, b"q", b"", None, b"");
        assert!(!outbound.has_room(0));
    }
}
