//! Hand-written runs through the model, so that rare paths are always covered: conflation,
//! overflow and timeouts; resumes with redeliveries cut short, a backlog catching up, write
//! stalls, takeover, expiry.

use super::ops::{Identity, Op, ResumeOp};
use super::{run, KEEP_ALIVE_MS};

#[test]
fn the_model_sees_conflation_overflow_and_timeouts() {
    use Op::*;
    let ops = [
        Subscribe {
            client: 1,
            queue: 2,
            event: None,
        },
        Subscribe {
            client: 2,
            queue: 0,
            event: Some(0),
        },
        Subscribe {
            client: 2,
            queue: 0,
            event: None,
        },
        Transmit,
        Publish {
            client: 0,
            queue: 2,
            event: 0,
            key: None,
            len: 3,
        },
        Publish {
            client: 0,
            queue: 2,
            event: 0,
            key: Some(0),
            len: 4,
        },
        Publish {
            client: 0,
            queue: 0,
            event: 0,
            key: Some(1),
            len: 5,
        },
        Publish {
            client: 0,
            queue: 0,
            event: 0,
            key: Some(1),
            len: 6,
        },
        Transmit,
        Ack {
            client: 1,
            up_to: 100,
            seqs: vec![],
        },
        Advance { ms: 1_400 },
        Transmit,
        Advance { ms: 1_400 },
        Advance { ms: 1_400 },
        Transmit,
    ];
    for keep_alive_ms in [0, KEEP_ALIVE_MS] {
        run(keep_alive_ms, &[1, 1, 0], &ops);
    }
}

fn publishes(client: usize, count: usize) -> impl Iterator<Item = Op> {
    (0..count).map(move |n| Op::Publish {
        client,
        queue: 0,
        event: n % 2,
        key: None,
        len: 4,
    })
}

fn resume_op(client: usize, last_delivery: u8, choke: Option<usize>) -> Op {
    Op::Resume(ResumeOp {
        client,
        window: 0,
        identity: Identity::Own,
        last_delivery,
        first_resendable: 1,
        choke,
    })
}

/// Detach with deliveries in flight, resume claiming fewer than were received (redeliveries,
/// cut short by a full socket, then resumed), a backlog that grew while detached (catching up
/// under the detached limits), a socket that stops taking bytes (write stall while the client
/// keeps pinging), takeover, a duplicate publish, expiry.
#[test]
fn the_model_sees_resumes_redeliveries_catch_up_and_write_stalls() {
    use Op::*;
    let ping = |nonce| Ping { client: 1, nonce };
    let ops: Vec<Op> = [Subscribe {
        client: 1,
        queue: 0,
        event: None,
    }]
    .into_iter()
    .chain(publishes(0, 5))
    .chain([
        Transmit,
        Ack {
            client: 1,
            up_to: 34,
            seqs: vec![],
        },
        Disconnect { client: 1 },
    ])
    .chain(publishes(0, 4))
    // Received up to seq 1 of 3: seqs 2 and 3 again, but the socket takes only one frame.
    .chain([resume_op(1, 1, Some(1))])
    .chain(publishes(0, 1))
    .chain([
        RepeatPublish {
            client: 0,
            back: 50,
        },
        SetWritable {
            client: 1,
            is_writable: true,
        },
        Choke { client: 1, room: 0 },
        Ack {
            client: 1,
            up_to: 100,
            seqs: vec![],
        },
        Advance { ms: 1_000 },
        ping(1),
        Advance { ms: 1_000 },
        ping(2),
        Advance { ms: 1_000 },
        ping(3),
        Advance { ms: 1_000 },
        Transmit,
        resume_op(1, 0, None),
        resume_op(1, 0, None),
        Transmit,
        Disconnect { client: 1 },
        Advance { ms: 1_400 },
        Advance { ms: 1_400 },
        resume_op(1, 0, None),
    ])
    .collect();
    run(KEEP_ALIVE_MS, &[0, 3, 0], &ops);
}
