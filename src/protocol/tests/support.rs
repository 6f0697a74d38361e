//! Owned frames, proptest strategies and helpers shared by the protocol tests.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use crate::protocol::codec::{decode, encode, MAX_TEXT_LEN};
use crate::protocol::frame::{
    Ack, AckSeqs, Auth, AuthMethod, Deliver, Dropped, ErrorFrame, Frame, Goodbye, Hello, Publish,
    Resume, Subscription, Welcome, DELIVER_DELIVERY_COUNT, DROPPED_CONFLATED, MAX_AUTH_SECRET_LEN,
    OUTCOME_LOST, OUTCOME_NEW,
};
use crate::protocol::header::Op;
use crate::protocol::{ErrorCode, Start, MAX_FRAME_LEN, MAX_NAME_LEN, RESUME_TOKEN_LEN, VERSION};

/// An owned frame, so strategies can produce frames and tests can borrow [`Frame`] views.
#[derive(Clone, Debug)]
pub(super) enum Owned {
    Hello(OwnedHello),
    Publish(OwnedPublish),
    /// SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBED or UNSUBSCRIBED, as `op` says.
    Subscription {
        op: Op,
        sub: OwnedSubscription,
    },
    Ack(OwnedAck),
    Ping(u64),
    Pong(u64),
    Bye,
    Stats,
    Welcome(Welcome),
    Deliver(OwnedDeliver),
    Receipt(u64),
    Error(OwnedError),
    Goodbye(OwnedGoodbye),
    StatsReply(Vec<u8>),
    Dropped(Dropped),
}

#[derive(Clone, Debug)]
pub(super) struct OwnedHello {
    pub(super) inflight_window: u32,
    pub(super) client_name: Vec<u8>,
    pub(super) resume: Option<Resume>,
    /// (method, user, secret)
    pub(super) auth: Option<(AuthMethod, Vec<u8>, Vec<u8>)>,
    pub(super) extensions: bool,
}

#[derive(Clone, Debug)]
pub(super) struct OwnedPublish {
    pub(super) seq: u64,
    pub(super) queue: Vec<u8>,
    pub(super) event: Vec<u8>,
    pub(super) key: Option<Vec<u8>>,
    pub(super) ttl_ms: Option<u32>,
    pub(super) payload: Vec<u8>,
}

#[derive(Clone, Debug)]
pub(super) struct OwnedSubscription {
    pub(super) queue: Vec<u8>,
    pub(super) event: Option<Vec<u8>>,
    pub(super) group: Option<Vec<u8>>,
    pub(super) is_pattern: bool,
    pub(super) start: Option<Start>,
}

#[derive(Clone, Debug)]
pub(super) struct OwnedAck {
    pub(super) up_to: u64,
    pub(super) seqs: Vec<u64>,
    /// `seqs` as the wire bytes an [`AckSeqs`] view borrows.
    bytes: Vec<u8>,
}

#[derive(Clone, Debug)]
pub(super) struct OwnedDeliver {
    pub(super) seq: u64,
    pub(super) message_id: u64,
    pub(super) flags: u8,
    pub(super) queue: Vec<u8>,
    pub(super) event: Vec<u8>,
    pub(super) delivery_count: Option<u16>,
    pub(super) payload: Vec<u8>,
}

#[derive(Clone, Debug)]
pub(super) struct OwnedError {
    pub(super) code: Result<ErrorCode, u16>,
    pub(super) fatal: bool,
    pub(super) ref_seq: u64,
    pub(super) ref_op: Option<u8>,
    pub(super) text: Vec<u8>,
}

#[derive(Clone, Debug)]
pub(super) struct OwnedGoodbye {
    pub(super) code: Result<ErrorCode, u16>,
    pub(super) text: Vec<u8>,
}

impl Owned {
    pub(super) fn frame(&self) -> Frame<'_> {
        match self {
            Owned::Hello(h) => Frame::Hello(h.frame()),
            Owned::Publish(p) => Frame::Publish(p.frame()),
            Owned::Subscription { op, sub } => {
                let sub = sub.frame();
                match op {
                    Op::Subscribe => Frame::Subscribe(sub),
                    Op::Unsubscribe => Frame::Unsubscribe(sub),
                    Op::Subscribed => Frame::Subscribed(sub),
                    Op::Unsubscribed => Frame::Unsubscribed(sub),
                    _ => panic!("{op:?} is not a subscription op"),
                }
            }
            Owned::Ack(a) => Frame::Ack(Ack {
                up_to: a.up_to,
                seqs: AckSeqs::from_bytes(&a.bytes).unwrap(),
            }),
            Owned::Ping(n) => Frame::Ping(*n),
            Owned::Pong(n) => Frame::Pong(*n),
            Owned::Bye => Frame::Bye,
            Owned::Stats => Frame::Stats,
            Owned::Welcome(w) => Frame::Welcome(*w),
            Owned::Deliver(d) => Frame::Deliver(Deliver {
                seq: d.seq,
                message_id: d.message_id,
                flags: d.flags,
                queue: &d.queue,
                event: &d.event,
                delivery_count: d.delivery_count,
                payload: &d.payload,
            }),
            Owned::Receipt(seq) => Frame::Receipt(*seq),
            Owned::Error(e) => Frame::Error(ErrorFrame {
                ref_op: e.ref_op,
                code: e.code,
                fatal: e.fatal,
                ref_seq: e.ref_seq,
                text: &e.text,
            }),
            Owned::Goodbye(g) => Frame::Goodbye(Goodbye {
                code: g.code,
                text: &g.text,
            }),
            Owned::StatsReply(json) => Frame::StatsReply(json),
            Owned::Dropped(dropped) => Frame::Dropped(*dropped),
        }
    }

    pub(super) fn encoded(&self) -> Vec<u8> {
        encoded(&self.frame())
    }

    pub(super) fn hello(inflight_window: u32, client_name: &[u8], resume: Option<Resume>) -> Owned {
        Owned::Hello(OwnedHello {
            inflight_window,
            client_name: client_name.to_vec(),
            resume,
            auth: None,
            extensions: false,
        })
    }

    /// HELLO with an auth block.
    pub(super) fn hello_auth(
        inflight_window: u32,
        client_name: &[u8],
        resume: Option<Resume>,
        (method, user, secret): (AuthMethod, &[u8], &[u8]),
    ) -> Owned {
        Owned::Hello(OwnedHello {
            inflight_window,
            client_name: client_name.to_vec(),
            resume,
            auth: Some((method, user.to_vec(), secret.to_vec())),
            extensions: false,
        })
    }

    pub(super) fn publish(
        seq: u64,
        queue: &[u8],
        event: &[u8],
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Owned {
        Owned::Publish(OwnedPublish {
            seq,
            queue: queue.to_vec(),
            event: event.to_vec(),
            key: key.map(<[u8]>::to_vec),
            ttl_ms: None,
            payload: payload.to_vec(),
        })
    }

    pub(super) fn subscription(op: Op, queue: &[u8], event: Option<&[u8]>) -> Owned {
        Owned::Subscription {
            op,
            sub: OwnedSubscription {
                queue: queue.to_vec(),
                event: event.map(<[u8]>::to_vec),
                group: None,
                is_pattern: false,
                start: None,
            },
        }
    }

    pub(super) fn subscription_from(op: Op, queue: &[u8], start: Start) -> Owned {
        Owned::Subscription {
            op,
            sub: OwnedSubscription {
                queue: queue.to_vec(),
                event: None,
                group: None,
                is_pattern: false,
                start: Some(start),
            },
        }
    }

    pub(super) fn ack(up_to: u64, seqs: Vec<u64>) -> Owned {
        let bytes = seqs.iter().flat_map(|s| s.to_be_bytes()).collect();
        Owned::Ack(OwnedAck { up_to, seqs, bytes })
    }

    pub(super) fn deliver(
        seq: u64,
        message_id: u64,
        flags: u8,
        queue: &[u8],
        event: &[u8],
        payload: &[u8],
    ) -> Owned {
        Owned::Deliver(OwnedDeliver {
            seq,
            message_id,
            flags,
            queue: queue.to_vec(),
            event: event.to_vec(),
            delivery_count: None,
            payload: payload.to_vec(),
        })
    }

    pub(super) fn error(code: ErrorCode, ref_seq: u64, text: &[u8]) -> Owned {
        Owned::Error(OwnedError {
            code: Ok(code),
            fatal: true,
            ref_seq,
            ref_op: None,
            text: text.to_vec(),
        })
    }

    /// An ERROR the connection survives (fatal flag clear).
    pub(super) fn error_nonfatal(code: ErrorCode, ref_seq: u64, text: &[u8]) -> Owned {
        Owned::Error(OwnedError {
            code: Ok(code),
            fatal: false,
            ref_seq,
            ref_op: None,
            text: text.to_vec(),
        })
    }

    pub(super) fn goodbye(code: ErrorCode, text: &[u8]) -> Owned {
        Owned::Goodbye(OwnedGoodbye {
            code: Ok(code),
            text: text.to_vec(),
        })
    }
}

impl OwnedHello {
    pub(super) fn frame(&self) -> Hello<'_> {
        Hello {
            extensions: self.extensions,
            inflight_window: self.inflight_window,
            client_name: &self.client_name,
            resume: self.resume,
            auth: self.auth.as_ref().map(|(method, user, secret)| Auth {
                method: *method,
                user,
                secret,
            }),
        }
    }
}

impl OwnedPublish {
    pub(super) fn frame(&self) -> Publish<'_> {
        Publish {
            seq: self.seq,
            queue: &self.queue,
            event: &self.event,
            key: self.key.as_deref(),
            ttl_ms: self.ttl_ms,
            payload: &self.payload,
        }
    }
}

impl OwnedSubscription {
    pub(super) fn frame(&self) -> Subscription<'_> {
        Subscription {
            queue: &self.queue,
            event: self.event.as_deref(),
            group: self.group.as_deref(),
            is_pattern: self.is_pattern,
            start: self.start,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// Proptest settings for every protocol property: 256 cases from a fixed seed, so a run is
/// deterministic, and no regression files written into the source tree. Set
/// `PROPTEST_RNG_SEED` (or `PROPTEST_CASES`) to explore further.
pub(super) fn config() -> ProptestConfig {
    let default = ProptestConfig::default();
    let rng_seed = match std::env::var_os("PROPTEST_RNG_SEED") {
        Some(_) => default.rng_seed,
        None => RngSeed::Fixed(0x5EED_0001),
    };
    ProptestConfig {
        rng_seed,
        failure_persistence: None,
        ..default
    }
}

pub(super) fn bytes(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), len)
}

fn name_bytes() -> impl Strategy<Value = Vec<u8>> {
    // Mostly short names, sometimes up to the 255-byte limit.
    prop_oneof![4 => bytes(0..=16), 1 => bytes(0..=MAX_NAME_LEN)]
}

pub(super) fn known_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(ErrorCode::ALL)
}

/// A code as ERROR and GOODBYE carry it: a known one, or a number this crate does not know.
fn wire_code() -> impl Strategy<Value = Result<ErrorCode, u16>> {
    prop_oneof![
        3 => known_code().prop_map(Ok),
        1 => any::<u16>()
            .prop_filter("unknown codes only", |n| ErrorCode::from_u16(*n).is_none())
            .prop_map(Err),
    ]
}

fn resume() -> impl Strategy<Value = Resume> {
    (
        any::<u64>(),
        any::<[u8; RESUME_TOKEN_LEN]>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(session_id, resume_token, last_delivery_seq, first_resendable_publish_seq)| Resume {
                session_id,
                resume_token,
                last_delivery_seq,
                first_resendable_publish_seq,
            },
        )
}

fn auth() -> impl Strategy<Value = (AuthMethod, Vec<u8>, Vec<u8>)> {
    (
        prop::sample::select(vec![
            AuthMethod::Password,
            AuthMethod::Token,
            AuthMethod::SignedToken,
        ]),
        name_bytes(),
        prop_oneof![4 => bytes(0..=64), 1 => bytes(0..=MAX_AUTH_SECRET_LEN)],
    )
}

pub(super) fn hello() -> impl Strategy<Value = Owned> {
    (
        any::<u32>(),
        name_bytes(),
        prop::option::of(resume()),
        prop::option::of(auth()),
        any::<bool>(),
    )
        .prop_map(|(inflight_window, client_name, resume, auth, extensions)| {
            Owned::Hello(OwnedHello {
                inflight_window,
                client_name,
                resume,
                auth,
                extensions,
            })
        })
}

pub(super) fn publish() -> impl Strategy<Value = Owned> {
    (
        any::<u64>(),
        name_bytes(),
        name_bytes(),
        prop::option::of(name_bytes()),
        prop::option::of(any::<u32>()),
        bytes(0..=256),
    )
        .prop_map(|(seq, queue, event, key, ttl_ms, payload)| {
            Owned::Publish(OwnedPublish {
                seq,
                queue,
                event,
                key,
                ttl_ms,
                payload,
            })
        })
}

pub(super) fn subscription() -> impl Strategy<Value = Owned> {
    const OPS: &[Op] = &[
        Op::Subscribe,
        Op::Unsubscribe,
        Op::Subscribed,
        Op::Unsubscribed,
    ];
    (
        prop::sample::select(OPS),
        name_bytes(),
        prop::option::of(name_bytes()),
        prop::option::of(name_bytes()),
        any::<bool>(),
    )
        .prop_map(
            |(op, queue, event, group, is_pattern)| Owned::Subscription {
                op,
                sub: OwnedSubscription {
                    queue,
                    event,
                    group,
                    is_pattern,
                    start: None,
                },
            },
        )
}

pub(super) fn ack() -> impl Strategy<Value = Owned> {
    (any::<u64>(), prop::collection::vec(any::<u64>(), 0..64))
        .prop_map(|(up_to, seqs)| Owned::ack(up_to, seqs))
}

pub(super) fn welcome() -> impl Strategy<Value = Owned> {
    let outcome = prop_oneof![Just(OUTCOME_NEW), Just(OUTCOME_LOST), any::<u8>()];
    // `missed: None` is u64::MAX on the wire, so Some(u64::MAX) cannot round-trip.
    let missed = prop::option::of(0..u64::MAX);
    let head = (
        outcome,
        prop::option::of(known_code()),
        missed,
        any::<u64>(),
    );
    let tail = (
        any::<[u8; RESUME_TOKEN_LEN]>(),
        any::<u64>(),
        any::<[u32; 5]>(),
        any::<u64>(),
        prop::option::of(any::<u32>()),
    );
    (head, tail).prop_map(
        |(
            (outcome, lost_reason, missed, session_id),
            (resume_token, last, limits, bytes, keep),
        )| {
            let [max_frame_len, inflight_window, interval, timeout, depth] = limits;
            Owned::Welcome(Welcome {
                reconnect_keep_alive_ms: keep,
                outcome,
                lost_reason,
                missed,
                session_id,
                resume_token,
                last_publish_seq: last,
                max_frame_len,
                inflight_window,
                heartbeat_interval_ms: interval,
                heartbeat_timeout_ms: timeout,
                max_queue_depth: depth,
                max_queue_bytes: bytes,
            })
        },
    )
}

pub(super) fn deliver() -> impl Strategy<Value = Owned> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u8>(),
        name_bytes(),
        name_bytes(),
        prop::option::of(any::<u16>()),
        bytes(0..=256),
    )
        .prop_map(
            |(seq, message_id, flags, queue, event, delivery_count, payload)| {
                // The encoder sets DELIVERY_COUNT exactly when a count is given.
                let flags = match delivery_count {
                    Some(_) => flags | DELIVER_DELIVERY_COUNT,
                    None => flags & !DELIVER_DELIVERY_COUNT,
                };
                Owned::Deliver(OwnedDeliver {
                    seq,
                    message_id,
                    flags,
                    queue,
                    event,
                    delivery_count,
                    payload,
                })
            },
        )
}

pub(super) fn error_frame() -> impl Strategy<Value = Owned> {
    // Texts up to MAX_TEXT_LEN: the encoder cuts longer ones, so they cannot round-trip.
    (
        wire_code(),
        any::<bool>(),
        any::<u64>(),
        prop::option::of(any::<u8>()),
        bytes(0..=MAX_TEXT_LEN),
    )
        .prop_map(|(code, fatal, ref_seq, ref_op, text)| {
            Owned::Error(OwnedError {
                code,
                fatal,
                ref_seq,
                ref_op,
                text,
            })
        })
}

pub(super) fn goodbye() -> impl Strategy<Value = Owned> {
    (wire_code(), bytes(0..=MAX_TEXT_LEN))
        .prop_map(|(code, text)| Owned::Goodbye(OwnedGoodbye { code, text }))
}

pub(super) fn any_frame() -> impl Strategy<Value = Owned> {
    prop_oneof![
        hello(),
        publish(),
        subscription(),
        ack(),
        any::<u64>().prop_map(Owned::Ping),
        any::<u64>().prop_map(Owned::Pong),
        Just(Owned::Bye),
        Just(Owned::Stats),
        welcome(),
        deliver(),
        any::<u64>().prop_map(Owned::Receipt),
        error_frame(),
        goodbye(),
        bytes(0..=256).prop_map(Owned::StatsReply),
        (any::<u16>(), any::<u64>(), any::<u64>()).prop_map(|(reason, count, total)| {
            Owned::Dropped(Dropped {
                reason,
                count,
                total,
            })
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Samples

/// The resume token of protocol.md's worked example.
pub(super) const EXAMPLE_TOKEN: [u8; RESUME_TOKEN_LEN] = [
    0x3f, 0xa2, 0x91, 0x0c, 0x5e, 0x77, 0xd4, 0x18, 0xb6, 0x20, 0xe9, 0x4d, 0x81, 0xc3, 0x6a, 0xf5,
];

/// A WELCOME with the default limits, as in protocol.md's worked example.
pub(super) fn example_welcome(
    outcome: u8,
    lost_reason: Option<ErrorCode>,
    missed: Option<u64>,
    session_id: u64,
    inflight_window: u32,
) -> Owned {
    Owned::Welcome(Welcome {
        reconnect_keep_alive_ms: None,
        outcome,
        lost_reason,
        missed,
        session_id,
        resume_token: EXAMPLE_TOKEN,
        last_publish_seq: 0,
        max_frame_len: 1_048_576,
        inflight_window,
        heartbeat_interval_ms: 10_000,
        heartbeat_timeout_ms: 30_000,
        max_queue_depth: 100_000,
        max_queue_bytes: 67_108_864,
    })
}

/// One frame of every op, in op order.
pub(super) fn one_of_each_op() -> Vec<Owned> {
    let resume = Resume {
        session_id: 9,
        resume_token: [0x42; RESUME_TOKEN_LEN],
        last_delivery_seq: 3,
        first_resendable_publish_seq: 2,
    };
    vec![
        Owned::hello(64, b"split", Some(resume)),
        Owned::publish(1, b"prices", b"tick", Some(b"EURUSD"), b"1.0842"),
        Owned::subscription(Op::Subscribe, b"prices", None),
        Owned::subscription(Op::Unsubscribe, b"prices", Some(b"tick")),
        Owned::ack(2, vec![4, 6]),
        Owned::Ping(0x0102_0304_0506_0708),
        Owned::Pong(0x0102_0304_0506_0708),
        Owned::Bye,
        Owned::Stats,
        example_welcome(OUTCOME_NEW, None, Some(0), 1, 1024),
        Owned::deliver(1, 77, 0, b"prices", b"", &[0; 40]),
        Owned::Receipt(5),
        Owned::subscription(Op::Subscribed, b"prices", None),
        Owned::subscription(Op::Unsubscribed, b"prices", Some(b"tick")),
        Owned::error(ErrorCode::UnknownAckSeq, 0, b"seq 9 was never sent"),
        Owned::goodbye(ErrorCode::QueueOverflow, b"max_queue_depth"),
        Owned::StatsReply(br#"{"server":{"connections":1}}"#.to_vec()),
        Owned::Dropped(Dropped {
            reason: DROPPED_CONFLATED,
            count: 2,
            total: 7,
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers

pub(super) fn encoded(frame: &Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode(frame, &mut out).unwrap();
    out
}

/// Decodes every complete frame at the front of `buf`; returns them and the bytes they used.
/// Panics on a decode error.
pub(super) fn decode_all(mut buf: &[u8]) -> (Vec<Frame<'_>>, usize) {
    let mut frames = Vec::new();
    let mut consumed = 0;
    while let Some((frame, used)) = decode(buf, MAX_FRAME_LEN).unwrap() {
        frames.push(frame);
        consumed += used;
        buf = &buf[used..];
    }
    (frames, consumed)
}

pub(super) fn op_of(frame: &Frame<'_>) -> Op {
    frame.op()
}

pub(super) fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A frame with version 0x01, built by hand rather than by an encoder.
pub(super) fn frame(op: u8, body: &[u8]) -> Vec<u8> {
    frame_raw(VERSION, op, body)
}

pub(super) fn frame_raw(version: u8, op: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len() + 2).unwrap();
    [&len.to_be_bytes()[..], &[version, op], body].concat()
}
