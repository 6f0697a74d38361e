//! What [`Client::recv`](super::Client::recv) returns: owned copies of what the server sent.
//!
//! The zero-copy path, [`Client::poll_deliveries`](super::Client::poll_deliveries), hands out
//! borrowed [`Deliver`] views instead and never builds these.

use crate::protocol::frame::DELIVER_REDELIVERED;
use crate::protocol::{Deliver, ErrorCode};

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
    /// ([`ReconnectingClient`](super::ReconnectingClient) keeps track of receipts itself and
    /// does not return this.)
    Receipt(u64),
    /// From [`ReconnectingClient`](super::ReconnectingClient) only: the connection was lost
    /// and a new one resumed the session. Nothing was lost: deliveries continue after the last
    /// one received, and the publishes not yet receipted were sent again with their seqs.
    Resumed {
        /// The session, unchanged.
        session_id: u64,
        /// Publishes sent again on the new connection (the server had not accepted them).
        resent: u64,
    },
    /// From [`ReconnectingClient`](super::ReconnectingClient) only: the session could not be
    /// resumed, and the server started a new one (subscriptions are made again on it). The
    /// messages the old session still held are gone; deliveries received before this event
    /// came first.
    Lost {
        /// Why, as the server said in WELCOME (SESSION_EXPIRED, QUEUE_OVERFLOW,
        /// SERVER_RESTARTED, SESSION_UNKNOWN, ...); `None` for a code this crate does not
        /// know.
        reason: Option<ErrorCode>,
        /// How many of the old session's messages this client never received, if the server
        /// knows (protocol.md §LOST): pending ones, unacked deliveries above the last seq this
        /// client received, and the message whose arrival ended the session. Messages
        /// published after the session ended are not counted.
        missed: Option<u64>,
        /// The new session.
        session_id: u64,
        /// Publishes not receipted by the old session and published again on the new one, with
        /// new seqs. The old session may have accepted some of them already, so they may reach
        /// subscribers twice.
        republished: u64,
    },
}

/// An owned DELIVER. Layout: protocol.md §DELIVER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The session's delivery sequence number: 1, 2, 3, ... with no gaps. Acks name it.
    pub seq: u64,
    /// Server-wide message id, the same in every session the message reaches.
    pub message_id: u64,
    /// True when the message was sent before on an earlier connection of the session (a
    /// resume).
    pub redelivered: bool,
    /// Queue name.
    pub queue: Vec<u8>,
    /// Event name (may be empty).
    pub event: Vec<u8>,
    /// Payload.
    pub payload: Vec<u8>,
    /// For a group message delivered before to a member that did not ack it: how many times
    /// it has been delivered, this time included (protocol.md §DELIVER, DELIVERY_COUNT).
    pub delivery_count: Option<u16>,
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
            delivery_count: deliver.delivery_count,
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
            delivery_count: self.delivery_count,
            payload: &self.payload,
        }
    }
}
