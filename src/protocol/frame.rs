//! Frames as borrowed views into a receive buffer (smoltcp `Packet<&[u8]>` style).
//!
//! Decoding produces these without copying; the broker copies only a PUBLISH payload into its
//! message store. Encoders for every frame live in [`super::codec`].

use byteorder::{BigEndian, ByteOrder};

use super::header::Op;
use super::{ErrorCode, RESUME_TOKEN_LEN};

/// HELLO flag: the body carries a [`Resume`] block.
pub const HELLO_RESUME: u8 = 0x01;
/// HELLO flag: the body carries an [`Auth`] block (after the resume block, if any).
pub const HELLO_AUTH: u8 = 0x02;
/// HELLO flag: the client understands the extensions of protocol.md §Extensions (WELCOME's
/// `reconnect_keep_alive_ms`, the DROPPED frame). No body bytes of its own.
pub const HELLO_EXTENSIONS: u8 = 0x04;
/// DROPPED reason: messages replaced in the session's queue by conflation.
pub const DROPPED_CONFLATED: u16 = 0x0001;
/// DROPPED reason: messages whose time to live ran out before they were delivered.
pub const DROPPED_EXPIRED: u16 = 0x0002;
/// DROPPED reason: group messages this session was the last to hold, moved to the group's
/// dead-letter queue (or dropped when it has none) after `max_deliveries`.
pub const DROPPED_DEAD_LETTERED: u16 = 0x0003;
/// Longest secret (password, token or signed token) in a HELLO auth block, in bytes.
pub const MAX_AUTH_SECRET_LEN: usize = 2_048;
/// PUBLISH flag: the body carries a conflation key.
pub const PUBLISH_CONFLATE: u8 = 0x01;
/// PUBLISH flag: a u32 `ttl_ms` follows the event name (and key), before the payload
/// (EXTENSIONS only; protocol.md §Time to live).
pub const PUBLISH_TTL: u8 = 0x02;
/// SUBSCRIBE / UNSUBSCRIBE / SUBSCRIBED / UNSUBSCRIBED flag: every event of the queue.
pub const SUBSCRIBE_ALL_EVENTS: u8 = 0x01;
/// SUBSCRIBE / UNSUBSCRIBE / SUBSCRIBED / UNSUBSCRIBED flag: a group name follows the event
/// name; the subscription is one member of that competing-consumer group (EXTENSIONS only).
pub const SUBSCRIBE_GROUP: u8 = 0x02;
/// SUBSCRIBE / UNSUBSCRIBE / SUBSCRIBED / UNSUBSCRIBED flag: the queue name is a pattern of
/// `.`-separated levels where `*` matches one level and a final `>` the rest (EXTENSIONS only).
pub const SUBSCRIBE_PATTERN: u8 = 0x04;
/// SUBSCRIBE / SUBSCRIBED flag: a start block follows the event name and any group name
/// (durable queues, protocol.md §SUBSCRIBE).
pub const SUBSCRIBE_START: u8 = 0x08;
/// SUBSCRIBE start: from the position given.
pub const START_POSITION: u8 = 0x01;
/// SUBSCRIBE start: from the oldest retained message.
pub const START_OLDEST: u8 = 0x02;
/// SUBSCRIBE start: the last N retained messages.
pub const START_LAST: u8 = 0x03;
/// DELIVER flag: this sequence number was sent before on an earlier connection.
pub const DELIVER_REDELIVERED: u8 = 0x01;
/// DELIVER flag: a u16 delivery count follows the event name (a group message delivered
/// before to a member that did not ack it; sent only after a HELLO with EXTENSIONS).
pub const DELIVER_DELIVERY_COUNT: u8 = 0x02;
/// ERROR flag: the server closes the connection after this frame.
pub const ERROR_FATAL: u8 = 0x01;
/// ERROR flag: a `ref_op` byte follows `ref_seq` (sent only after a HELLO with EXTENSIONS).
pub const ERROR_REF_OP: u8 = 0x02;

/// WELCOME outcome: a new session was created.
pub const OUTCOME_NEW: u8 = 0x00;
/// WELCOME outcome: the requested session was resumed.
pub const OUTCOME_RESUMED: u8 = 0x01;
/// WELCOME outcome: the requested session could not be resumed; a new one was created and
/// `lost_reason` says why.
pub const OUTCOME_LOST: u8 = 0x02;

/// One decoded frame. Lifetimes borrow from the buffer that was decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// HELLO (client → server).
    Hello(Hello<'a>),
    /// PUBLISH (client → server).
    Publish(Publish<'a>),
    /// SUBSCRIBE (client → server).
    Subscribe(Subscription<'a>),
    /// UNSUBSCRIBE (client → server).
    Unsubscribe(Subscription<'a>),
    /// ACK (client → server).
    Ack(Ack<'a>),
    /// PING with its nonce (either way).
    Ping(u64),
    /// PONG echoing a PING's nonce (either way).
    Pong(u64),
    /// BYE (client → server).
    Bye,
    /// STATS request (client → server).
    Stats,
    /// WELCOME (server → client).
    Welcome(Welcome),
    /// DELIVER (server → client).
    Deliver(Deliver<'a>),
    /// RECEIPT: highest publish sequence number accepted (server → client).
    Receipt(u64),
    /// SUBSCRIBED (server → client).
    Subscribed(Subscription<'a>),
    /// UNSUBSCRIBED (server → client).
    Unsubscribed(Subscription<'a>),
    /// ERROR (server → client).
    Error(ErrorFrame<'a>),
    /// GOODBYE (server → client).
    Goodbye(Goodbye<'a>),
    /// STATS_REPLY: a UTF-8 JSON document (server → client).
    StatsReply(&'a [u8]),
    /// DROPPED (server → client, EXTENSIONS only).
    Dropped(Dropped),
}

impl Frame<'_> {
    /// The op code this frame is sent with.
    pub fn op(&self) -> Op {
        match self {
            Frame::Hello(_) => Op::Hello,
            Frame::Publish(_) => Op::Publish,
            Frame::Subscribe(_) => Op::Subscribe,
            Frame::Unsubscribe(_) => Op::Unsubscribe,
            Frame::Ack(_) => Op::Ack,
            Frame::Ping(_) => Op::Ping,
            Frame::Pong(_) => Op::Pong,
            Frame::Bye => Op::Bye,
            Frame::Stats => Op::Stats,
            Frame::Welcome(_) => Op::Welcome,
            Frame::Deliver(_) => Op::Deliver,
            Frame::Receipt(_) => Op::Receipt,
            Frame::Subscribed(_) => Op::Subscribed,
            Frame::Unsubscribed(_) => Op::Unsubscribed,
            Frame::Error(_) => Op::Error,
            Frame::Goodbye(_) => Op::Goodbye,
            Frame::StatsReply(_) => Op::StatsReply,
            Frame::Dropped(_) => Op::Dropped,
        }
    }
}

/// HELLO body. Layout: protocol.md §HELLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello<'a> {
    /// Requested in-flight window; 0 asks for the server's default.
    pub inflight_window: u32,
    /// Free-form client name shown in introspection (≤ 255 bytes).
    pub client_name: &'a [u8],
    /// Present when the client asks to resume a session.
    pub resume: Option<Resume>,
    /// Present when the client authenticates (AUTH flag).
    pub auth: Option<Auth<'a>>,
    /// The EXTENSIONS flag: the client accepts what protocol.md §Extensions adds.
    pub extensions: bool,
}

/// How an [`Auth`] block's secret is to be checked. Layout: protocol.md §HELLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AuthMethod {
    /// A user name and its password (`user` names the user).
    Password = 0x01,
    /// An opaque token configured for one user (`user` empty).
    Token = 0x02,
    /// A token signed with the server's `token_signing_key` (`user` empty).
    SignedToken = 0x03,
}

impl AuthMethod {
    /// The method for a wire byte, if it is one.
    pub fn from_u8(value: u8) -> Option<AuthMethod> {
        match value {
            0x01 => Some(AuthMethod::Password),
            0x02 => Some(AuthMethod::Token),
            0x03 => Some(AuthMethod::SignedToken),
            _ => None,
        }
    }
}

/// The auth block of HELLO. Layout: protocol.md §HELLO.
///
/// `Debug` never shows the secret, so a logged frame cannot leak it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Auth<'a> {
    /// Which kind of secret follows.
    pub method: AuthMethod,
    /// The user name for [`AuthMethod::Password`]; empty otherwise (≤ 255 bytes).
    pub user: &'a [u8],
    /// Password, token or signed token (≤ [`MAX_AUTH_SECRET_LEN`] bytes).
    pub secret: &'a [u8],
}

impl std::fmt::Debug for Auth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("method", &self.method)
            .field("user", &String::from_utf8_lossy(self.user))
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .finish()
    }
}

/// The resume block of HELLO. Layout: protocol.md §HELLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Session to resume.
    pub session_id: u64,
    /// Token the server gave in WELCOME.
    pub resume_token: [u8; RESUME_TOKEN_LEN],
    /// Highest delivery sequence number the client received (0 for none).
    pub last_delivery_seq: u64,
    /// Lowest publish sequence number the client can still resend.
    pub first_resendable_publish_seq: u64,
}

/// PUBLISH body. Layout: protocol.md §PUBLISH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish<'a> {
    /// Client publish sequence number: 1 for the session's first publish, then +1 each.
    pub seq: u64,
    /// Queue name, 1..=255 bytes.
    pub queue: &'a [u8],
    /// Event name, 0..=255 bytes.
    pub event: &'a [u8],
    /// Conflation key, when the CONFLATE flag is set (may be empty).
    pub key: Option<&'a [u8]>,
    /// Time to live in milliseconds (TTL flag), if any; 0 never expires.
    pub ttl_ms: Option<u32>,
    /// Message payload: the rest of the frame.
    pub payload: &'a [u8],
}

/// Body of SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBED and UNSUBSCRIBED. Layout: protocol.md §SUBSCRIBE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscription<'a> {
    /// Queue name.
    pub queue: &'a [u8],
    /// `None` for every event of the queue (ALL_EVENTS flag), else one event name.
    pub event: Option<&'a [u8]>,
    /// The competing-consumer group joined (GROUP flag), if any.
    pub group: Option<&'a [u8]>,
    /// `queue` is a pattern (PATTERN flag).
    pub is_pattern: bool,
    /// The START block (SUBSCRIBE and SUBSCRIBED only): where the subscription begins in a
    /// durable queue's retained messages. `None`: new messages only.
    pub start: Option<Start>,
}

/// Where a subscription to a durable queue starts, and (in SUBSCRIBED) where it did.
/// Layout: protocol.md §SUBSCRIBE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    /// [`START_POSITION`], [`START_OLDEST`] or [`START_LAST`].
    pub from: u8,
    /// The position for POSITION, the count for LAST, 0 for OLDEST.
    pub value: u64,
    /// SUBSCRIBED only: the position of the first message replayed (the queue's next
    /// position when none is; 0 for a queue that is not durable).
    pub first_position: u64,
    /// SUBSCRIBED only: positions asked for that are no longer retained.
    pub skipped: u64,
}

/// ACK body. Layout: protocol.md §ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack<'a> {
    /// Every delivery with a sequence number ≤ this is acknowledged (0 acknowledges none).
    pub up_to: u64,
    /// Individually acknowledged sequence numbers.
    pub seqs: AckSeqs<'a>,
}

/// Borrowed list of u64 sequence numbers in an ACK (8 bytes each, big-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckSeqs<'a> {
    bytes: &'a [u8],
}

impl<'a> AckSeqs<'a> {
    /// Wraps bytes whose length is a multiple of 8 (checked by the decoder).
    pub(crate) fn new(bytes: &'a [u8]) -> AckSeqs<'a> {
        AckSeqs { bytes }
    }

    /// Wraps raw big-endian u64s; `None` unless the length is a multiple of 8.
    pub fn from_bytes(bytes: &'a [u8]) -> Option<AckSeqs<'a>> {
        (bytes.len() % 8 == 0).then_some(AckSeqs { bytes })
    }

    /// The raw bytes (8 per sequence number, big-endian).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Number of sequence numbers.
    pub fn len(&self) -> usize {
        self.bytes.len() / 8
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.bytes.len() < 8
    }

    /// Iterates over the sequence numbers in wire order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + 'a {
        self.bytes.chunks_exact(8).map(BigEndian::read_u64)
    }
}

/// WELCOME body. Layout: protocol.md §WELCOME.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// [`OUTCOME_NEW`], [`OUTCOME_RESUMED`] or [`OUTCOME_LOST`].
    pub outcome: u8,
    /// When `outcome` is LOST, why; otherwise `None` (0 on the wire).
    pub lost_reason: Option<ErrorCode>,
    /// When LOST: how many deliveries the client missed, if known (`u64::MAX` on the wire when
    /// unknown). 0 otherwise.
    pub missed: Option<u64>,
    /// The session's id.
    pub session_id: u64,
    /// Secret needed to resume this session.
    pub resume_token: [u8; RESUME_TOKEN_LEN],
    /// Highest client publish sequence number the server has accepted (0 for none).
    pub last_publish_seq: u64,
    /// Max frame length in force (bytes after the length prefix).
    pub max_frame_len: u32,
    /// Max deliveries sent and not yet acknowledged.
    pub inflight_window: u32,
    /// The server sends PING after this many ms without sending, or without receiving,
    /// anything (protocol.md §Heartbeats).
    pub heartbeat_interval_ms: u32,
    /// The server closes a connection it has received nothing from for this many ms.
    pub heartbeat_timeout_ms: u32,
    /// Max messages queued for the session (in flight included).
    pub max_queue_depth: u32,
    /// Max payload bytes queued for the session (in flight included).
    pub max_queue_bytes: u64,
    /// How long the server keeps the session after its connection ends, in ms; present
    /// (4 more body bytes) exactly when the HELLO set EXTENSIONS.
    pub reconnect_keep_alive_ms: Option<u32>,
}

/// DROPPED body. Layout: protocol.md §DROPPED.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Why: [`DROPPED_CONFLATED`], or a reason this crate does not know (kept as sent).
    pub reason: u16,
    /// Messages dropped for this reason since the previous DROPPED with this reason.
    pub count: u64,
    /// Messages dropped for this reason over the session's life (`count` included).
    pub total: u64,
}

/// DELIVER body. Layout: protocol.md §DELIVER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deliver<'a> {
    /// The session's delivery sequence number: 1, 2, 3, … with no gaps.
    pub seq: u64,
    /// Server-wide message id, the same in every session the message reaches.
    pub message_id: u64,
    /// [`DELIVER_REDELIVERED`], [`DELIVER_DELIVERY_COUNT`], or 0.
    pub flags: u8,
    /// Queue name.
    pub queue: &'a [u8],
    /// Event name.
    pub event: &'a [u8],
    /// How many times this group message has been delivered, this delivery included (≥ 2),
    /// present exactly when the DELIVERY_COUNT flag is set.
    pub delivery_count: Option<u16>,
    /// Payload.
    pub payload: &'a [u8],
}

/// ERROR body. Layout: protocol.md §ERROR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorFrame<'a> {
    /// The code as sent; `Err(n)` keeps a number this crate does not know.
    pub code: Result<ErrorCode, u16>,
    /// True when the server closes the connection after this frame.
    pub fatal: bool,
    /// The publish sequence number the error refers to, or 0.
    pub ref_seq: u64,
    /// The op code of the request the error answers (REF_OP flag), kept as sent.
    pub ref_op: Option<u8>,
    /// Human-readable UTF-8 text.
    pub text: &'a [u8],
}

/// GOODBYE body. Layout: protocol.md §GOODBYE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Goodbye<'a> {
    /// Why the server ends the session; `Err(n)` keeps an unknown number.
    pub code: Result<ErrorCode, u16>,
    /// Human-readable UTF-8 text.
    pub text: &'a [u8],
}
