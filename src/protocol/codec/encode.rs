//! Encoding: every encoder appends to a caller-owned `Vec<u8>`.

use byteorder::{BigEndian, ByteOrder};

use crate::protocol::frame::{
    Dropped, Frame, Hello, Publish, Subscription, Welcome, DELIVER_DELIVERY_COUNT, ERROR_FATAL,
    ERROR_REF_OP, HELLO_AUTH, HELLO_EXTENSIONS, HELLO_RESUME, MAX_AUTH_SECRET_LEN,
    PUBLISH_CONFLATE, PUBLISH_TTL, SUBSCRIBE_ALL_EVENTS, SUBSCRIBE_GROUP, SUBSCRIBE_PATTERN,
    SUBSCRIBE_START,
};
use crate::protocol::header::{FrameHeader, Op, HEADER_LEN, LEN_PREFIX_LEN};
use crate::protocol::{ErrorCode, MAX_NAME_LEN, RESUME_TOKEN_LEN};

/// Why a frame could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// A queue, event, key or client name is longer than 255 bytes.
    NameTooLong,
    /// The frame would exceed `u32::MAX` bytes.
    FrameTooLarge,
    /// A HELLO auth secret is longer than [`MAX_AUTH_SECRET_LEN`] bytes.
    SecretTooLong,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::NameTooLong => write!(f, "a name is longer than {MAX_NAME_LEN} bytes"),
            EncodeError::FrameTooLarge => write!(f, "frame longer than u32::MAX bytes"),
            EncodeError::SecretTooLong => {
                write!(
                    f,
                    "an auth secret is longer than {MAX_AUTH_SECRET_LEN} bytes"
                )
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Appends any frame to `out`.
///
/// # Errors
/// [`EncodeError`] if a name exceeds 255 bytes or the frame exceeds `u32::MAX` bytes; `out` is
/// left unchanged in that case.
pub fn encode(frame: &Frame<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match *frame {
        Frame::Hello(ref hello) => encode_hello(hello, out),
        Frame::Publish(ref publish) => encode_publish(publish, out),
        Frame::Subscribe(ref sub) => encode_subscription(Op::Subscribe, sub, out),
        Frame::Unsubscribe(ref sub) => encode_subscription(Op::Unsubscribe, sub, out),
        Frame::Subscribed(ref sub) => encode_subscription(Op::Subscribed, sub, out),
        Frame::Unsubscribed(ref sub) => encode_subscription(Op::Unsubscribed, sub, out),
        Frame::Ack(ref ack) => {
            let body = 8 + 2 + ack.seqs.len() * 8;
            check_total(body)?;
            let count = u16::try_from(ack.seqs.len()).map_err(|_| EncodeError::FrameTooLarge)?;
            FrameHeader::write(Op::Ack, body, out);
            put_u64(out, ack.up_to);
            put_u16(out, count);
            for seq in ack.seqs.iter() {
                put_u64(out, seq);
            }
            Ok(())
        }
        Frame::Ping(nonce) => {
            encode_ping(Op::Ping, nonce, out);
            Ok(())
        }
        Frame::Pong(nonce) => {
            encode_ping(Op::Pong, nonce, out);
            Ok(())
        }
        Frame::Bye => {
            FrameHeader::write(Op::Bye, 0, out);
            Ok(())
        }
        Frame::Stats => {
            FrameHeader::write(Op::Stats, 0, out);
            Ok(())
        }
        Frame::Welcome(ref welcome) => {
            encode_welcome(welcome, out);
            Ok(())
        }
        Frame::Deliver(ref d) => encode_deliver_counted(
            d.seq,
            d.message_id,
            d.flags,
            d.delivery_count,
            d.queue,
            d.event,
            d.payload,
            out,
        ),
        Frame::Receipt(seq) => {
            encode_receipt(seq, out);
            Ok(())
        }
        Frame::Error(ref e) => {
            let code = e.code.map_or_else(|n| n, |c| c as u16);
            encode_error_raw(code, e.fatal, e.ref_seq, e.ref_op, e.text, out)
        }
        Frame::Goodbye(ref g) => {
            let code = g.code.map_or_else(|n| n, |c| c as u16);
            encode_goodbye_raw(code, g.text, out)
        }
        Frame::StatsReply(json) => {
            check_total(json.len())?;
            FrameHeader::write(Op::StatsReply, json.len(), out);
            out.extend_from_slice(json);
            Ok(())
        }
        Frame::Dropped(ref dropped) => {
            encode_dropped(dropped, out);
            Ok(())
        }
    }
}

/// Appends HELLO. Layout: protocol.md §HELLO.
///
/// # Errors
/// [`EncodeError::NameTooLong`] for a client or user name over 255 bytes,
/// [`EncodeError::SecretTooLong`] for an auth secret over [`MAX_AUTH_SECRET_LEN`] bytes.
pub fn encode_hello(hello: &Hello<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_name(hello.client_name)?;
    let resume_len = if hello.resume.is_some() {
        8 + RESUME_TOKEN_LEN + 8 + 8
    } else {
        0
    };
    let auth_len = match &hello.auth {
        Some(auth) => {
            check_name(auth.user)?;
            if auth.secret.len() > MAX_AUTH_SECRET_LEN {
                return Err(EncodeError::SecretTooLong);
            }
            1 + 1 + auth.user.len() + 2 + auth.secret.len()
        }
        None => 0,
    };
    let body = 1 + 4 + 1 + hello.client_name.len() + resume_len + auth_len;
    FrameHeader::write(Op::Hello, body, out);
    let mut flags = 0;
    if hello.resume.is_some() {
        flags |= HELLO_RESUME;
    }
    if hello.auth.is_some() {
        flags |= HELLO_AUTH;
    }
    if hello.extensions {
        flags |= HELLO_EXTENSIONS;
    }
    out.push(flags);
    put_u32(out, hello.inflight_window);
    put_name(out, hello.client_name);
    if let Some(resume) = &hello.resume {
        put_u64(out, resume.session_id);
        out.extend_from_slice(&resume.resume_token);
        put_u64(out, resume.last_delivery_seq);
        put_u64(out, resume.first_resendable_publish_seq);
    }
    if let Some(auth) = &hello.auth {
        out.push(auth.method as u8);
        put_name(out, auth.user);
        // Checked above: ≤ MAX_AUTH_SECRET_LEN, which fits a u16.
        put_u16(out, auth.secret.len() as u16);
        out.extend_from_slice(auth.secret);
    }
    Ok(())
}

/// Appends PUBLISH. Layout: protocol.md §PUBLISH.
///
/// # Errors
/// [`EncodeError`] for a name over 255 bytes or a frame over `u32::MAX` bytes.
pub fn encode_publish(publish: &Publish<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_name(publish.queue)?;
    check_name(publish.event)?;
    let key_len = match publish.key {
        Some(key) => {
            check_name(key)?;
            1 + key.len()
        }
        None => 0,
    };
    let ttl_len = if publish.ttl_ms.is_some() { 4 } else { 0 };
    let body = 8
        + 1
        + 1
        + publish.queue.len()
        + 1
        + publish.event.len()
        + key_len
        + ttl_len
        + publish.payload.len();
    check_total(body)?;
    FrameHeader::write(Op::Publish, body, out);
    put_u64(out, publish.seq);
    let conflate = if publish.key.is_some() {
        PUBLISH_CONFLATE
    } else {
        0
    };
    let ttl = if publish.ttl_ms.is_some() {
        PUBLISH_TTL
    } else {
        0
    };
    out.push(conflate | ttl);
    put_name(out, publish.queue);
    put_name(out, publish.event);
    if let Some(key) = publish.key {
        put_name(out, key);
    }
    if let Some(ttl_ms) = publish.ttl_ms {
        out.extend_from_slice(&ttl_ms.to_be_bytes());
    }
    out.extend_from_slice(publish.payload);
    Ok(())
}

/// Appends SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBED or UNSUBSCRIBED. Layout: protocol.md §SUBSCRIBE.
///
/// # Errors
/// [`EncodeError::NameTooLong`] for a name over 255 bytes.
pub fn encode_subscription(
    op: Op,
    sub: &Subscription<'_>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    check_name(sub.queue)?;
    let event = sub.event.unwrap_or_default();
    check_name(event)?;
    let group_len = match sub.group {
        Some(group) => {
            check_name(group)?;
            1 + group.len()
        }
        None => 0,
    };
    // START only in SUBSCRIBE (9 bytes) and SUBSCRIBED (25 bytes).
    let start = sub
        .start
        .filter(|_| matches!(op, Op::Subscribe | Op::Subscribed));
    let start_len = match (start, op) {
        (None, _) => 0,
        (Some(_), Op::Subscribed) => 25,
        (Some(_), _) => 9,
    };
    let body = 1 + 1 + sub.queue.len() + 1 + event.len() + group_len + start_len;
    FrameHeader::write(op, body, out);
    let mut flags = 0;
    if sub.event.is_none() {
        flags |= SUBSCRIBE_ALL_EVENTS;
    }
    if sub.group.is_some() {
        flags |= SUBSCRIBE_GROUP;
    }
    if sub.is_pattern {
        flags |= SUBSCRIBE_PATTERN;
    }
    if start.is_some() {
        flags |= SUBSCRIBE_START;
    }
    out.push(flags);
    put_name(out, sub.queue);
    put_name(out, event);
    if let Some(group) = sub.group {
        put_name(out, group);
    }
    if let Some(start) = start {
        out.push(start.from);
        out.extend_from_slice(&start.value.to_be_bytes());
        if op == Op::Subscribed {
            out.extend_from_slice(&start.first_position.to_be_bytes());
            out.extend_from_slice(&start.skipped.to_be_bytes());
        }
    }
    Ok(())
}

/// Appends an ACK of every delivery up to `up_to` and of each seq in `seqs`.
/// Layout: protocol.md §ACK.
///
/// # Errors
/// [`EncodeError::FrameTooLarge`] for more than 65,535 individual seqs.
pub fn encode_ack(up_to: u64, seqs: &[u64], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let count = u16::try_from(seqs.len()).map_err(|_| EncodeError::FrameTooLarge)?;
    FrameHeader::write(Op::Ack, 8 + 2 + seqs.len() * 8, out);
    put_u64(out, up_to);
    put_u16(out, count);
    for &seq in seqs {
        put_u64(out, seq);
    }
    Ok(())
}

/// Appends PING or PONG with its nonce. Layout: protocol.md §PING.
pub fn encode_ping(op: Op, nonce: u64, out: &mut Vec<u8>) {
    FrameHeader::write(op, 8, out);
    put_u64(out, nonce);
}

/// Appends a frame with an empty body (BYE, STATS).
pub fn encode_empty(op: Op, out: &mut Vec<u8>) {
    FrameHeader::write(op, 0, out);
}

/// Appends WELCOME. Layout: protocol.md §WELCOME.
pub fn encode_welcome(w: &Welcome, out: &mut Vec<u8>) {
    let extension_len = if w.reconnect_keep_alive_ms.is_some() {
        4
    } else {
        0
    };
    FrameHeader::write(Op::Welcome, WELCOME_BODY_LEN + extension_len, out);
    out.push(w.outcome);
    put_u16(out, w.lost_reason.map_or(0, |c| c as u16));
    put_u64(out, w.missed.unwrap_or(u64::MAX));
    put_u64(out, w.session_id);
    out.extend_from_slice(&w.resume_token);
    put_u64(out, w.last_publish_seq);
    put_u32(out, w.max_frame_len);
    put_u32(out, w.inflight_window);
    put_u32(out, w.heartbeat_interval_ms);
    put_u32(out, w.heartbeat_timeout_ms);
    put_u32(out, w.max_queue_depth);
    put_u64(out, w.max_queue_bytes);
    if let Some(keep_alive) = w.reconnect_keep_alive_ms {
        put_u32(out, keep_alive);
    }
}

/// Appends DROPPED. Layout: protocol.md §DROPPED.
pub fn encode_dropped(dropped: &Dropped, out: &mut Vec<u8>) {
    FrameHeader::write(Op::Dropped, DROPPED_BODY_LEN, out);
    put_u16(out, dropped.reason);
    put_u64(out, dropped.count);
    put_u64(out, dropped.total);
}

/// Appends DELIVER. Layout: protocol.md §DELIVER. This is the per-message hot path: it writes
/// straight into `out` and allocates only if `out` must grow.
///
/// # Errors
/// [`EncodeError`] for a name over 255 bytes or a frame over `u32::MAX` bytes.
pub fn encode_deliver(
    seq: u64,
    message_id: u64,
    flags: u8,
    queue: &[u8],
    event: &[u8],
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    encode_deliver_counted(seq, message_id, flags, None, queue, event, payload, out)
}

/// The length field of a DELIVER (header and body, protocol.md §DELIVER) for these name and
/// payload lengths: what the broker compares with a listener's limit before queuing a message
/// for a session, and what [`encode_deliver_counted`] writes.
pub fn deliver_len(
    queue_len: usize,
    event_len: usize,
    has_count: bool,
    payload_len: usize,
) -> usize {
    let count_len = if has_count { 2 } else { 0 };
    HEADER_LEN + 8 + 8 + 1 + 1 + queue_len + 1 + event_len + count_len + payload_len
}

/// The length field of the largest HELLO a client can send (protocol.md §HELLO: the longest
/// client name, a resume block, an auth block with the longest user name and secret), from
/// the encoder itself: `max_frame_len_before_hello` must admit it.
pub fn max_hello_len() -> usize {
    let name = [b'n'; crate::protocol::MAX_NAME_LEN];
    let secret = vec![b's'; MAX_AUTH_SECRET_LEN];
    let hello = Hello {
        inflight_window: u32::MAX,
        client_name: &name,
        resume: Some(crate::protocol::Resume {
            session_id: u64::MAX,
            resume_token: [0; crate::protocol::RESUME_TOKEN_LEN],
            last_delivery_seq: u64::MAX,
            first_resendable_publish_seq: u64::MAX,
        }),
        auth: Some(crate::protocol::Auth {
            method: crate::protocol::AuthMethod::Password,
            user: &name,
            secret: &secret,
        }),
        extensions: true,
    };
    let mut out = Vec::new();
    // Within every limit by construction.
    let _ = encode_hello(&hello, &mut out);
    out.len().saturating_sub(LEN_PREFIX_LEN)
}

/// Appends DELIVER with an optional delivery count (protocol.md §DELIVER, DELIVERY_COUNT): the
/// flag is set exactly when `delivery_count` is `Some`, whatever `flags` says.
///
/// # Errors
/// As [`encode_deliver`].
#[allow(clippy::too_many_arguments)]
pub fn encode_deliver_counted(
    seq: u64,
    message_id: u64,
    flags: u8,
    delivery_count: Option<u16>,
    queue: &[u8],
    event: &[u8],
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    check_name(queue)?;
    check_name(event)?;
    let flags = match delivery_count {
        Some(_) => flags | DELIVER_DELIVERY_COUNT,
        None => flags & !DELIVER_DELIVERY_COUNT,
    };
    let body = deliver_len(
        queue.len(),
        event.len(),
        delivery_count.is_some(),
        payload.len(),
    ) - HEADER_LEN;
    check_total(body)?;
    // One reservation and a stack-built fixed part: this runs once per subscriber per message.
    out.reserve(LEN_PREFIX_LEN + HEADER_LEN + body);
    let mut fixed = [0u8; LEN_PREFIX_LEN + HEADER_LEN + 8 + 8 + 1 + 1];
    BigEndian::write_u32(&mut fixed[0..4], (HEADER_LEN + body) as u32);
    fixed[4] = crate::protocol::VERSION;
    fixed[5] = Op::Deliver as u8;
    BigEndian::write_u64(&mut fixed[6..14], seq);
    BigEndian::write_u64(&mut fixed[14..22], message_id);
    fixed[22] = flags;
    // Names were checked to be ≤ 255 bytes above.
    fixed[23] = queue.len() as u8;
    out.extend_from_slice(&fixed);
    out.extend_from_slice(queue);
    out.push(event.len() as u8);
    out.extend_from_slice(event);
    if let Some(count) = delivery_count {
        put_u16(out, count);
    }
    out.extend_from_slice(payload);
    Ok(())
}

/// Appends RECEIPT. Layout: protocol.md §RECEIPT.
pub fn encode_receipt(seq: u64, out: &mut Vec<u8>) {
    FrameHeader::write(Op::Receipt, 8, out);
    put_u64(out, seq);
}

/// Appends ERROR. Layout: protocol.md §ERROR. Text longer than 1,024 bytes is cut.
///
/// # Errors
/// None in practice; the signature matches the other encoders.
pub fn encode_error(
    code: ErrorCode,
    fatal: bool,
    ref_seq: u64,
    text: &str,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    encode_error_raw(code as u16, fatal, ref_seq, None, text.as_bytes(), out)
}

/// Appends ERROR with the REF_OP flag and the op of the request it answers. Layout:
/// protocol.md §ERROR; only for a connection whose HELLO set EXTENSIONS.
pub fn encode_error_answering(
    code: ErrorCode,
    fatal: bool,
    ref_seq: u64,
    ref_op: Op,
    text: &str,
    out: &mut Vec<u8>,
) {
    // Cannot fail: the text is cut to MAX_TEXT_LEN.
    let _ = encode_error_raw(
        code as u16,
        fatal,
        ref_seq,
        Some(ref_op as u8),
        text.as_bytes(),
        out,
    );
}

/// Appends GOODBYE. Layout: protocol.md §GOODBYE. Text longer than 1,024 bytes is cut.
pub fn encode_goodbye(code: ErrorCode, text: &str, out: &mut Vec<u8>) {
    // Cannot fail: the text is cut to MAX_TEXT_LEN.
    let _ = encode_goodbye_raw(code as u16, text.as_bytes(), out);
}

fn encode_error_raw(
    code: u16,
    fatal: bool,
    ref_seq: u64,
    ref_op: Option<u8>,
    text: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let text = cut_text(text);
    let ref_op_len = usize::from(ref_op.is_some());
    FrameHeader::write(Op::Error, 2 + 1 + 8 + ref_op_len + text.len(), out);
    put_u16(out, code);
    let mut flags = if fatal { ERROR_FATAL } else { 0 };
    if ref_op.is_some() {
        flags |= ERROR_REF_OP;
    }
    out.push(flags);
    put_u64(out, ref_seq);
    if let Some(op) = ref_op {
        out.push(op);
    }
    out.extend_from_slice(text);
    Ok(())
}

fn encode_goodbye_raw(code: u16, text: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let text = cut_text(text);
    FrameHeader::write(Op::Goodbye, 2 + text.len(), out);
    put_u16(out, code);
    out.extend_from_slice(text);
    Ok(())
}

/// Body length of WELCOME in bytes, without the EXTENSIONS field (4 more bytes with it).
pub const WELCOME_BODY_LEN: usize = 1 + 2 + 8 + 8 + RESUME_TOKEN_LEN + 8 + 4 * 5 + 8;

/// Body length of DROPPED in bytes.
pub const DROPPED_BODY_LEN: usize = 2 + 8 + 8;

/// Longest ERROR / GOODBYE text the encoders write, in bytes.
pub const MAX_TEXT_LEN: usize = 1_024;

fn cut_text(text: &[u8]) -> &[u8] {
    text.get(..MAX_TEXT_LEN).unwrap_or(text)
}

fn check_name(name: &[u8]) -> Result<(), EncodeError> {
    if name.len() > MAX_NAME_LEN {
        Err(EncodeError::NameTooLong)
    } else {
        Ok(())
    }
}

fn check_total(body: usize) -> Result<(), EncodeError> {
    if body + HEADER_LEN > u32::MAX as usize {
        Err(EncodeError::FrameTooLarge)
    } else {
        Ok(())
    }
}

fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// Writes a name checked to be ≤ 255 bytes by the caller.
fn put_name(out: &mut Vec<u8>, name: &[u8]) {
    out.push(name.len() as u8);
    out.extend_from_slice(name);
}
