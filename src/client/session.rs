//! The session as the client sees it: sequence numbers both ways, events not yet returned, and
//! why the connection ended.
//!
//! It is kept apart from the socket and the read buffer so that a frame borrowed from the read
//! buffer can update it; [`Session::handle`] is the one place where server frames take effect.

use std::collections::VecDeque;

use crate::protocol::codec::encode_ping;
use crate::protocol::frame::OUTCOME_NEW;
use crate::protocol::{
    Deliver, Frame, Op, Start, Subscription, Welcome, MAX_FRAME_LEN, MAX_FRAME_LEN_BEFORE_HELLO,
    RESUME_TOKEN_LEN,
};

use super::buffer::WriteBuf;
use super::error::CloseCause;
use super::event::{Delivery, Event};
use super::ClientError;

#[derive(Debug)]
pub(super) struct Session {
    /// The WELCOME received; zeros until the handshake is done (never visible to callers).
    pub(super) welcome: Welcome,
    /// Largest length field the client sends: `welcome.max_frame_len`.
    pub(super) max_frame_len: u32,
    /// Largest length field the client decodes; see [`DELIVER_OVERHEAD_BYTES`].
    pub(super) decode_limit: u32,
    /// Highest publish seq assigned; the next PUBLISH carries this + 1.
    pub(super) last_publish_seq: u64,
    /// Highest seq a RECEIPT confirmed.
    pub(super) last_receipt: u64,
    /// Highest DELIVER seq received; acks may not name more.
    pub(super) last_delivery_seq: u64,
    /// Nonce of the next PING this client sends.
    pub(super) next_ping_nonce: u64,
    /// STATS requests sent; the server answers them in order.
    pub(super) stats_requested: u64,
    /// STATS_REPLY frames received.
    stats_answered: u64,
    /// Latest DROPPED `total` per reason 1 (CONFLATED), 2 (EXPIRED), 3 (DEAD_LETTERED), at
    /// index reason − 1 (EXTENSIONS only).
    pub(super) dropped_totals: [u64; 3],
    /// Deliveries and receipts received while the application was not reading, oldest first.
    /// Consecutive receipts are merged, so a publisher that never reads holds at most one.
    pub(super) inbox: VecDeque<Event>,
    /// Set once the connection has ended; every later call reports it.
    closed: Option<CloseCause>,
}

/// A reply to a request; the waiting call checks it is the one it asked for.
#[derive(Debug)]
pub(super) enum Reply {
    Pong(u64),
    Stats {
        /// 1 for the first STATS_REPLY of the connection, and so on.
        number: u64,
        json: String,
    },
    Subscribed(OwnedSubscription),
    Unsubscribed(OwnedSubscription),
}

/// The subscription echoed in SUBSCRIBED / UNSUBSCRIBED.
#[derive(Debug)]
pub(super) struct OwnedSubscription {
    queue: Vec<u8>,
    event: Option<Vec<u8>>,
    /// SUBSCRIBED's START block, when the SUBSCRIBE had one.
    pub(super) start: Option<Start>,
    group: Option<Vec<u8>>,
}

impl OwnedSubscription {
    fn from_frame(sub: &Subscription<'_>) -> OwnedSubscription {
        OwnedSubscription {
            queue: sub.queue.to_vec(),
            event: sub.event.map(<[u8]>::to_vec),
            start: sub.start,
            group: sub.group.map(<[u8]>::to_vec),
        }
    }

    /// True when this echoes the subscription `sub` (queue, event, group).
    pub(super) fn is(&self, sub: &Subscription<'_>) -> bool {
        self.queue == sub.queue
            && self.event.as_deref() == sub.event
            && self.group.as_deref() == sub.group
    }
}

impl Session {
    /// A session awaiting WELCOME: it sends within the before-HELLO limit and decodes with the
    /// default limit.
    pub(super) fn new() -> Session {
        Session {
            welcome: Welcome {
                reconnect_keep_alive_ms: None,
                outcome: OUTCOME_NEW,
                lost_reason: None,
                missed: None,
                session_id: 0,
                resume_token: [0; RESUME_TOKEN_LEN],
                last_publish_seq: 0,
                max_frame_len: 0,
                inflight_window: 0,
                heartbeat_interval_ms: 0,
                heartbeat_timeout_ms: 0,
                max_queue_depth: 0,
                max_queue_bytes: 0,
            },
            max_frame_len: MAX_FRAME_LEN_BEFORE_HELLO,
            decode_limit: MAX_FRAME_LEN.saturating_add(DELIVER_OVERHEAD_BYTES),
            last_publish_seq: 0,
            last_receipt: 0,
            dropped_totals: [0; 3],
            last_delivery_seq: 0,
            next_ping_nonce: 1,
            stats_requested: 0,
            stats_answered: 0,
            inbox: VecDeque::new(),
            closed: None,
        }
    }

    /// Takes on the limits and publish position the server granted.
    pub(super) fn handle_welcome(&mut self, welcome: Welcome) {
        self.welcome = welcome;
        self.max_frame_len = welcome.max_frame_len;
        self.decode_limit = welcome.max_frame_len.saturating_add(DELIVER_OVERHEAD_BYTES);
        self.last_publish_seq = welcome.last_publish_seq;
        self.last_receipt = welcome.last_publish_seq;
    }

    /// Applies one server frame after the handshake. DELIVER is copied into the inbox (the
    /// zero-copy path intercepts it before calling this), RECEIPT updates the receipt position
    /// and the inbox, PING queues a PONG in `write_buf`; replies are returned for the waiting
    /// call to recognise.
    ///
    /// # Errors
    /// [`ClientError::Server`] for ERROR, [`ClientError::Goodbye`] for GOODBYE,
    /// [`ClientError::UnexpectedFrame`] for a frame a server never sends after WELCOME. All of
    /// them close the session except a non-fatal ERROR.
    pub(super) fn handle(
        &mut self,
        frame: Frame<'_>,
        write_buf: &mut WriteBuf,
    ) -> Result<Option<Reply>, ClientError> {
        match frame {
            Frame::Deliver(deliver) => {
                self.handle_deliver(&deliver);
                self.inbox
                    .push_back(Event::Deliver(Delivery::from_deliver(&deliver)));
            }
            Frame::Receipt(seq) => self.handle_receipt(seq),
            Frame::Ping(nonce) => write_buf.push(self.max_frame_len, |out| {
                encode_ping(Op::Pong, nonce, out);
                Ok(())
            })?,
            Frame::Pong(nonce) => return Ok(Some(Reply::Pong(nonce))),
            Frame::StatsReply(json) => {
                self.stats_answered += 1;
                return Ok(Some(Reply::Stats {
                    number: self.stats_answered,
                    json: String::from_utf8_lossy(json).into_owned(),
                }));
            }
            Frame::Subscribed(sub) => {
                return Ok(Some(Reply::Subscribed(OwnedSubscription::from_frame(&sub))))
            }
            Frame::Unsubscribed(sub) => {
                return Ok(Some(Reply::Unsubscribed(OwnedSubscription::from_frame(
                    &sub,
                ))))
            }
            Frame::Error(error) => {
                let text = String::from_utf8_lossy(error.text).into_owned();
                if error.fatal {
                    return Err(self.close(CloseCause::Server {
                        code: error.code,
                        ref_seq: error.ref_seq,
                        text,
                    }));
                }
                return Err(ClientError::Server {
                    code: error.code,
                    fatal: false,
                    ref_seq: error.ref_seq,
                    text,
                });
            }
            Frame::Goodbye(goodbye) => {
                return Err(self.close(CloseCause::Goodbye {
                    code: goodbye.code,
                    text: String::from_utf8_lossy(goodbye.text).into_owned(),
                }))
            }
            // Sent only after a HELLO with EXTENSIONS: the running totals are kept.
            Frame::Dropped(dropped) => {
                let index = usize::from(dropped.reason).wrapping_sub(1);
                if let Some(total) = self.dropped_totals.get_mut(index) {
                    *total = (*total).max(dropped.total);
                }
            }
            Frame::Welcome(_)
            | Frame::Hello(_)
            | Frame::Publish(_)
            | Frame::Subscribe(_)
            | Frame::Unsubscribe(_)
            | Frame::Ack(_)
            | Frame::Bye
            | Frame::Stats => return Err(self.close(CloseCause::Unexpected(op_name(&frame)))),
        }
        Ok(None)
    }

    /// Records a DELIVER's seq, so acks up to it are allowed.
    pub(super) fn handle_deliver(&mut self, deliver: &Deliver<'_>) {
        self.last_delivery_seq = self.last_delivery_seq.max(deliver.seq);
    }

    fn handle_receipt(&mut self, seq: u64) {
        self.last_receipt = self.last_receipt.max(seq);
        match self.inbox.back_mut() {
            Some(Event::Receipt(last)) => *last = (*last).max(seq),
            _ => self.inbox.push_back(Event::Receipt(seq)),
        }
    }

    /// Records why the connection ended (the first cause wins) and returns the error to report.
    pub(super) fn close(&mut self, cause: CloseCause) -> ClientError {
        let error = cause.to_error();
        self.closed.get_or_insert(cause);
        error
    }

    /// Records an I/O failure as the end of the connection and returns it.
    pub(super) fn fail_io(&mut self, error: std::io::Error) -> ClientError {
        self.closed.get_or_insert_with(|| CloseCause::io(&error));
        ClientError::Io(error)
    }

    /// # Errors
    /// The error that ended the connection, if it has ended.
    pub(super) fn check_open(&self) -> Result<(), ClientError> {
        match &self.closed {
            Some(cause) => Err(cause.to_error()),
            None => Ok(()),
        }
    }

    pub(super) fn is_open(&self) -> bool {
        self.closed.is_none()
    }
}

/// The protocol.md name of a frame's op.
pub(super) fn op_name(frame: &Frame<'_>) -> &'static str {
    frame.op().name()
}

/// How much longer a DELIVER's length field is than that of the PUBLISH it carries, at most:
/// DELIVER has seq + message_id + flags (17 bytes) where PUBLISH has seq + flags (9 bytes) and
/// no key. A publish the server accepted at exactly `max_frame_len` therefore arrives as a
/// DELIVER up to 8 bytes over it, so the client decodes with this much slack.
pub(super) const DELIVER_OVERHEAD_BYTES: u32 = 8;
