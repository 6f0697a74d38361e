//! The operations a run is made of, and how proptest generates them.

use proptest::prelude::*;

use super::{CLIENTS, EVENTS, KEYS, MAX_PAYLOAD_LEN, QUEUES};

/// Which session a resuming HELLO names.
#[derive(Clone, Copy, Debug)]
pub(super) enum Identity {
    /// The client's latest session, with its token.
    Own,
    /// The client's latest session, with a wrong token.
    WrongToken,
    /// An id of this server run that no session ever had.
    UnknownId,
    /// An id from an earlier run of the server.
    EarlierRun,
}

#[derive(Clone, Debug)]
pub(super) enum Op {
    Publish {
        client: usize,
        queue: usize,
        event: usize,
        key: Option<usize>,
        len: usize,
    },
    /// Resends an accepted publish seq, `back` percent of the way from the last to the first.
    RepeatPublish {
        client: usize,
        back: u64,
    },
    Subscribe {
        client: usize,
        queue: usize,
        event: Option<usize>,
    },
    Unsubscribe {
        client: usize,
        queue: usize,
        event: Option<usize>,
    },
    /// `up_to` and `seqs` are percentages of the last delivery seq sent, so always valid.
    Ack {
        client: usize,
        up_to: u64,
        seqs: Vec<u64>,
    },
    Ping {
        client: usize,
        nonce: u64,
    },
    /// One loop turn's flush and close passes.
    Transmit,
    /// The client's socket stops taking bytes, or takes them again (a writable event: the loop
    /// flushes it at once).
    SetWritable {
        client: usize,
        is_writable: bool,
    },
    /// The loop flushes the client's connection with `room` bytes (its high-water mark), then
    /// the socket is full: it stops being writable. Output past `room` waits.
    Choke {
        client: usize,
        room: usize,
    },
    /// EOF on the client's connection.
    Disconnect {
        client: usize,
    },
    Bye {
        client: usize,
    },
    /// A new connection and HELLO for a new session. A connection the client still had is
    /// abandoned: it stays open but falls silent.
    Connect {
        client: usize,
        window: u32,
    },
    /// A new connection and a resuming HELLO.
    Resume(ResumeOp),
    Advance {
        ms: u64,
    },
}

/// A resume; after RESUMED the client resends its publishes from `first_resendable`. Choices,
/// so that most resumes are valid: `last_delivery` 0 = the last seq sent, 1 = the lowest valid
/// (lowest unacked - 1), 2 = halfway between, 3 = one past the last sent, 4 = two below the
/// lowest unacked; `first_resendable` 0 = last accepted + 1 (it holds none), 1 = last accepted,
/// 2 = last accepted - 2, 3 = last accepted + 2 (one publish lost). With `choke`, the new
/// connection's first flush has that room and then its socket is full (see `Op::Choke`).
#[derive(Clone, Debug)]
pub(super) struct ResumeOp {
    pub(super) client: usize,
    pub(super) window: u32,
    pub(super) identity: Identity,
    pub(super) last_delivery: u8,
    pub(super) first_resendable: u8,
    pub(super) choke: Option<usize>,
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    let queue = 0..QUEUES.len();
    let sub_event = proptest::option::of(0..2usize);
    let key = proptest::option::of(0..KEYS.len());
    let publish = (
        client.clone(),
        queue.clone(),
        0..EVENTS.len(),
        key,
        0..=MAX_PAYLOAD_LEN,
    )
        .prop_map(|(client, queue, event, key, len)| Op::Publish {
            client,
            queue,
            event,
            key,
            len,
        });
    let repeat =
        (client.clone(), 0..=100u64).prop_map(|(client, back)| Op::RepeatPublish { client, back });
    let subscribe =
        (client.clone(), queue.clone(), sub_event.clone()).prop_map(|(client, queue, event)| {
            Op::Subscribe {
                client,
                queue,
                event,
            }
        });
    let unsubscribe =
        (client.clone(), queue, sub_event).prop_map(|(client, queue, event)| Op::Unsubscribe {
            client,
            queue,
            event,
        });
    let ack = (
        client.clone(),
        0..=100u64,
        proptest::collection::vec(0..=100u64, 0..3),
    )
        .prop_map(|(client, up_to, seqs)| Op::Ack {
            client,
            up_to,
            seqs,
        });
    let ping =
        (client.clone(), any::<u64>()).prop_map(|(client, nonce)| Op::Ping { client, nonce });
    let set_writable =
        (client.clone(), any::<bool>()).prop_map(|(client, is_writable)| Op::SetWritable {
            client,
            is_writable,
        });
    let identity = prop_oneof![
        12 => Just(Identity::Own),
        1 => Just(Identity::WrongToken),
        1 => Just(Identity::UnknownId),
        1 => Just(Identity::EarlierRun),
    ];
    // Mostly valid resumes: the invalid choices are 3 and 4, and 3.
    let last_delivery =
        prop_oneof![4 => Just(0u8), 2 => Just(1), 2 => Just(2), 1 => Just(3), 1 => Just(4)];
    let first_resendable = prop_oneof![4 => Just(0u8), 2 => Just(1), 2 => Just(2), 1 => Just(3)];
    let choke = proptest::option::weighted(0.3, 0..=150usize);
    let resume = (
        client.clone(),
        0..=4u32,
        identity,
        last_delivery,
        first_resendable,
        choke,
    )
        .prop_map(
            |(client, window, identity, last_delivery, first_resendable, choke)| {
                Op::Resume(ResumeOp {
                    client,
                    window,
                    identity,
                    last_delivery,
                    first_resendable,
                    choke,
                })
            },
        );
    prop_oneof![
        20 => publish,
        2 => repeat,
        10 => subscribe,
        2 => unsubscribe,
        6 => ack,
        2 => ping,
        10 => Just(Op::Transmit),
        4 => set_writable,
        3 => (client.clone(), 0..=150usize).prop_map(|(client, room)| Op::Choke { client, room }),
        2 => client.clone().prop_map(|client| Op::Disconnect { client }),
        1 => client.clone().prop_map(|client| Op::Bye { client }),
        2 => (client.clone(), 0..=4u32).prop_map(|(client, window)| Op::Connect { client, window }),
        4 => resume,
        6 => (0..1_500u64).prop_map(|ms| Op::Advance { ms }),
    ]
}
