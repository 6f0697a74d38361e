//! What [`Client::recv`](super::Client::recv) returns: owned copies of what the server sent.
//!
//! The zero-copy path, [`Client::poll_deliveries`](super::Client::poll_deliveries), hands out
//! borrowed [`Deliver`] views instead and never builds these.

use crate::protocol::frame::DELIVER_REDELIVERED;
use crate::protocol::Deliver;

/// Something the server sent that the application reads with
/// [`Client::recv`](super::Client::recv).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message from a subscribed queue. Acknowledge it with
    /// [`Client::ack`](super::Client::ack).
    Deliver(Delivery),
    /// Every publish with a sequence number ≤ this one has been accepted by the server.
    /// Receipts are cumulative; several that arrive before `recv` is called come out as one.
    Receipt(u64),
}

/// An owned DELIVER. Layout: protocol.md §DELIVER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The session's delivery sequence number: 1, 2, 3, ... with no gaps. Acks name it.
    pub seq: u64,
    /// Server-wide message id, the same in every session the message reaches.
    pub message_id: u64,
    /// True when the message was sent before on an earlier connection (never in v1).
    pub redelivered: bool,
    /// Queue name.
    pub queue: Vec<u8>,
    /// Event name (may be empty).
    pub event: Vec<u8>,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Delivery {
    /// Copies a borrowed DELIVER.
    pub fn from_deliver(deliver: &Deliver<'_>) -> Delivery {
        Delivery {
            seq: deliver.seq,
            message_id: deliver.message_id,
            redelivered: deliver.flags & DELIVER_REDELIVERED != 0,
            queue: deliver.queue.to_vec(),
            event: deliver.event.to_vec(),
            payload: deliver.payload.to_vec(),
        }
    }

    /// A borrowed view of this delivery, as [`Client::poll_deliveries`] hands out.
    ///
    /// [`Client::poll_deliveries`]: super::Client::poll_deliveries
    pub fn as_deliver(&self) -> Deliver<'_> {
        Deliver {
            seq: self.seq,
            message_id: self.message_id,
            flags: if self.redelivered {
                DELIVER_REDELIVERED
            } else {
                0
            },
            queue: &self.queue,
            event: &self.event,
            payload: &self.payload,
        }
    }
}
