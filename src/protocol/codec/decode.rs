//! Decoding: check the header, then parse the body (mini-redis `check` then `parse`).

use byteorder::{BigEndian, ByteOrder};

use crate::protocol::frame::{
    Ack, AckSeqs, Auth, AuthMethod, Deliver, Dropped, ErrorFrame, Frame, Goodbye, Hello, Publish,
    Resume, Start, Subscription, Welcome, DELIVER_DELIVERY_COUNT, ERROR_FATAL, ERROR_REF_OP,
    HELLO_AUTH, HELLO_EXTENSIONS, HELLO_RESUME, MAX_AUTH_SECRET_LEN, PUBLISH_CONFLATE, PUBLISH_TTL,
    START_LAST, START_OLDEST, START_POSITION, SUBSCRIBE_ALL_EVENTS, SUBSCRIBE_GROUP,
    SUBSCRIBE_PATTERN, SUBSCRIBE_START,
};
use crate::protocol::header::{FrameHeader, Op, HEADER_LEN, LEN_PREFIX_LEN};
use crate::protocol::{DecodeError, ErrorCode, RESUME_TOKEN_LEN};

use super::encode::encode;

/// Decodes one frame from the front of `buf`.
///
/// Returns `Ok(Some((frame, consumed)))` for a complete frame, `Ok(None)` when `buf` holds only
/// part of one. Errors are reported as soon as the header shows them.
///
/// Bounded work: O(frame length); no allocation.
///
/// # Errors
/// Any [`DecodeError`]; the connection that sent the bytes should be told the error's code and
/// closed, since the stream can no longer be framed reliably.
pub fn decode(buf: &[u8], max_frame_len: u32) -> Result<Option<(Frame<'_>, usize)>, DecodeError> {
    let Some(header) = FrameHeader::check(buf, max_frame_len)? else {
        return Ok(None);
    };
    let Some(body) = buf.get(LEN_PREFIX_LEN + HEADER_LEN..header.wire_len()) else {
        return Ok(None);
    };
    let frame = parse_body(header.op, body)?;
    Ok(Some((frame, header.wire_len())))
}

/// Fuzz entry point: decodes every frame it can from arbitrary bytes, with the default limit.
/// Must never panic; proptest drives it in CI and `tools/fuzz` under libFuzzer.
pub fn fuzz_decode(mut data: &[u8]) -> usize {
    let mut frames = 0;
    while let Ok(Some((frame, used))) = decode(data, crate::protocol::MAX_FRAME_LEN) {
        frames += 1;
        // Re-encoding a decoded frame must always succeed.
        let mut out = Vec::new();
        let _ = encode(&frame, &mut out);
        data = data.get(used..).unwrap_or_default();
    }
    frames
}

/// A cursor over a frame body; every read is bounds-checked and fails as `Malformed`.
struct Reader<'a> {
    op: Op,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let Some((head, tail)) = self.rest.split_at_checked(n) else {
            return Err(self.malformed(what));
        };
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.bytes(1, what)?
            .first()
            .copied()
            .ok_or(self.malformed(what))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(BigEndian::read_u16(self.bytes(2, what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(BigEndian::read_u32(self.bytes(4, what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(BigEndian::read_u64(self.bytes(8, what)?))
    }

    fn name(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u8(what)?;
        self.bytes(len as usize, what)
    }

    fn flags(&mut self, known: u8) -> Result<u8, DecodeError> {
        let flags = self.u8("flags")?;
        if flags & !known != 0 {
            return Err(self.malformed("unknown flag bits set"));
        }
        Ok(flags)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.malformed("trailing bytes after the last field"))
        }
    }

    fn malformed(&self, what: &'static str) -> DecodeError {
        DecodeError::Malformed { op: self.op, what }
    }
}

fn parse_body(op: Op, body: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let mut r = Reader { op, rest: body };
    let frame = match op {
        Op::Hello => {
            let flags = r.flags(HELLO_RESUME | HELLO_AUTH | HELLO_EXTENSIONS)?;
            let inflight_window = r.u32("inflight_window")?;
            let client_name = r.name("client_name")?;
            let resume = if flags & HELLO_RESUME != 0 {
                let session_id = r.u64("session_id")?;
                let mut resume_token = [0u8; RESUME_TOKEN_LEN];
                resume_token.copy_from_slice(r.bytes(RESUME_TOKEN_LEN, "resume_token")?);
                Some(Resume {
                    session_id,
                    resume_token,
                    last_delivery_seq: r.u64("last_delivery_seq")?,
                    first_resendable_publish_seq: r.u64("first_resendable_publish_seq")?,
                })
            } else {
                None
            };
            let auth = if flags & HELLO_AUTH != 0 {
                let method = r.u8("auth method")?;
                let method =
                    AuthMethod::from_u8(method).ok_or(r.malformed("unknown auth method"))?;
                let user = r.name("auth user")?;
                let secret_len = usize::from(r.u16("auth secret length")?);
                if secret_len > MAX_AUTH_SECRET_LEN {
                    return Err(r.malformed("auth secret longer than 2048 bytes"));
                }
                let secret = r.bytes(secret_len, "auth secret")?;
                Some(Auth {
                    method,
                    user,
                    secret,
                })
            } else {
                None
            };
            r.finish()?;
            Frame::Hello(Hello {
                inflight_window,
                client_name,
                resume,
                auth,
                extensions: flags & HELLO_EXTENSIONS != 0,
            })
        }
        Op::Publish => {
            let seq = r.u64("seq")?;
            let flags = r.flags(PUBLISH_CONFLATE | PUBLISH_TTL)?;
            let queue = r.name("queue")?;
            let event = r.name("event")?;
            let key = if flags & PUBLISH_CONFLATE != 0 {
                Some(r.name("key")?)
            } else {
                None
            };
            let ttl_ms = if flags & PUBLISH_TTL != 0 {
                Some(r.u32("ttl_ms")?)
            } else {
                None
            };
            Frame::Publish(Publish {
                seq,
                queue,
                event,
                key,
                ttl_ms,
                payload: r.rest(),
            })
        }
        Op::Subscribe | Op::Unsubscribe | Op::Subscribed | Op::Unsubscribed => {
            let flags = r.flags(
                SUBSCRIBE_ALL_EVENTS | SUBSCRIBE_GROUP | SUBSCRIBE_PATTERN | SUBSCRIBE_START,
            )?;
            let queue = r.name("queue")?;
            let event = r.name("event")?;
            let group = if flags & SUBSCRIBE_GROUP != 0 {
                Some(r.name("group")?)
            } else {
                None
            };
            let start = if flags & SUBSCRIBE_START == 0 {
                None
            } else if matches!(op, Op::Subscribe | Op::Subscribed) {
                let from = r.u8("start")?;
                if !matches!(from, START_POSITION | START_OLDEST | START_LAST) {
                    return Err(r.malformed("unknown start"));
                }
                let value = r.u64("start value")?;
                let (first_position, skipped) = if op == Op::Subscribed {
                    (r.u64("first_position")?, r.u64("skipped")?)
                } else {
                    (0, 0)
                };
                Some(Start {
                    from,
                    value,
                    first_position,
                    skipped,
                })
            } else {
                return Err(r.malformed("START in UNSUBSCRIBE"));
            };
            r.finish()?;
            let event = if flags & SUBSCRIBE_ALL_EVENTS != 0 {
                if !event.is_empty() {
                    return Err(r.malformed("event name given with ALL_EVENTS"));
                }
                None
            } else {
                Some(event)
            };
            let sub = Subscription {
                queue,
                event,
                group,
                is_pattern: flags & SUBSCRIBE_PATTERN != 0,
                start,
            };
            match op {
                Op::Subscribe => Frame::Subscribe(sub),
                Op::Unsubscribe => Frame::Unsubscribe(sub),
                Op::Subscribed => Frame::Subscribed(sub),
                _ => Frame::Unsubscribed(sub),
            }
        }
        Op::Ack => {
            let up_to = r.u64("up_to")?;
            let count = r.u16("count")?;
            let seqs = r.bytes(count as usize * 8, "seqs")?;
            r.finish()?;
            Frame::Ack(Ack {
                up_to,
                seqs: AckSeqs::new(seqs),
            })
        }
        Op::Ping | Op::Pong => {
            let nonce = r.u64("nonce")?;
            r.finish()?;
            if op == Op::Ping {
                Frame::Ping(nonce)
            } else {
                Frame::Pong(nonce)
            }
        }
        Op::Bye | Op::Stats => {
            r.finish()?;
            if op == Op::Bye {
                Frame::Bye
            } else {
                Frame::Stats
            }
        }
        Op::Welcome => {
            let outcome = r.u8("outcome")?;
            let lost_reason = r.u16("lost_reason")?;
            let missed = r.u64("missed")?;
            let session_id = r.u64("session_id")?;
            let mut resume_token = [0u8; RESUME_TOKEN_LEN];
            resume_token.copy_from_slice(r.bytes(RESUME_TOKEN_LEN, "resume_token")?);
            let welcome = Welcome {
                outcome,
                lost_reason: ErrorCode::from_u16(lost_reason),
                missed: (missed != u64::MAX).then_some(missed),
                session_id,
                resume_token,
                last_publish_seq: r.u64("last_publish_seq")?,
                max_frame_len: r.u32("max_frame_len")?,
                inflight_window: r.u32("inflight_window")?,
                heartbeat_interval_ms: r.u32("heartbeat_interval_ms")?,
                heartbeat_timeout_ms: r.u32("heartbeat_timeout_ms")?,
                max_queue_depth: r.u32("max_queue_depth")?,
                max_queue_bytes: r.u64("max_queue_bytes")?,
                // Present exactly when the HELLO set EXTENSIONS; a decoder that never sets it
                // is never sent it.
                reconnect_keep_alive_ms: match r.rest.len() {
                    0 => None,
                    _ => Some(r.u32("reconnect_keep_alive_ms")?),
                },
            };
            r.finish()?;
            Frame::Welcome(welcome)
        }
        Op::Deliver => {
            let seq = r.u64("seq")?;
            let message_id = r.u64("message_id")?;
            let flags = r.u8("flags")?;
            let queue = r.name("queue")?;
            let event = r.name("event")?;
            let delivery_count = if flags & DELIVER_DELIVERY_COUNT != 0 {
                Some(r.u16("delivery_count")?)
            } else {
                None
            };
            Frame::Deliver(Deliver {
                seq,
                message_id,
                flags,
                queue,
                event,
                delivery_count,
                payload: r.rest(),
            })
        }
        Op::Receipt => {
            let seq = r.u64("seq")?;
            r.finish()?;
            Frame::Receipt(seq)
        }
        Op::Error => {
            let code = r.u16("code")?;
            let flags = r.u8("flags")?;
            let ref_seq = r.u64("ref_seq")?;
            let ref_op = if flags & ERROR_REF_OP != 0 {
                Some(r.u8("ref_op")?)
            } else {
                None
            };
            Frame::Error(ErrorFrame {
                code: ErrorCode::from_u16(code).ok_or(code),
                fatal: flags & ERROR_FATAL != 0,
                ref_seq,
                ref_op,
                text: r.rest(),
            })
        }
        Op::Goodbye => {
            let code = r.u16("code")?;
            Frame::Goodbye(Goodbye {
                code: ErrorCode::from_u16(code).ok_or(code),
                text: r.rest(),
            })
        }
        Op::StatsReply => Frame::StatsReply(r.rest()),
        Op::Dropped => {
            let dropped = Dropped {
                reason: r.u16("reason")?,
                count: r.u64("count")?,
                total: r.u64("total")?,
            };
            r.finish()?;
            Frame::Dropped(dropped)
        }
    };
    Ok(frame)
}
