//! The intake path the event loop uses (`handle_readable` / `handle_input` / `poll_reads`),
//! driven without sockets: partial frames, EOF mid-frame, the fan-out budget, publish rate
//! pauses. Issue 9: these were tested only over TCP before.

use std::time::Duration;

use super::harness::{test_config, Harness, Received};
use crate::broker::flow::TURN_DELIVERIES;
use crate::broker::{CloseReason, ConnId};
use crate::config::Config;
use crate::protocol::codec::{self, encode_publish};
use crate::protocol::{Frame, Hello, Publish};

const PUBLISHER: ConnId = ConnId(1);

fn hello_bytes(name: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let hello = Hello {
        inflight_window: 0,
        client_name: name,
        resume: None,
        auth: None,
        extensions: false,
    };
    codec::encode(&Frame::Hello(hello), &mut bytes).unwrap();
    bytes
}

fn publishes(queue: &[u8], seqs: std::ops::RangeInclusive<u64>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for seq in seqs {
        let publish = Publish {
            seq,
            queue,
            event: b"e",
            key: None,
            ttl_ms: None,
            payload: b"payload",
        };
        encode_publish(&publish, &mut bytes).unwrap();
    }
    bytes
}

#[test]
fn frames_cut_at_every_byte_are_handled_once_complete_and_only_once() {
    let mut h = Harness::new();
    h.connect(PUBLISHER);
    let mut bytes = hello_bytes(b"split");
    let hello_len = bytes.len();
    bytes.extend(publishes(b"db", 1..=2));
    for (at, byte) in bytes.iter().enumerate() {
        h.send_bytes(PUBLISHER, std::slice::from_ref(byte));
        let frames = h.frames(PUBLISHER);
        if at + 1 == hello_len {
            assert!(matches!(frames[..], [Received::Welcome(_)]), "{frames:?}");
        } else if at + 1 == bytes.len() {
            assert_eq!(frames, [Received::Receipt(2)]);
        } else if at + 1 == hello_len + (bytes.len() - hello_len) / 2 {
            assert_eq!(frames, [Received::Receipt(1)], "after the first PUBLISH");
        } else {
            assert_eq!(frames, [], "nothing before byte {at} completes a frame");
        }
    }
    assert_eq!(h.stats().server.messages_published, 2);
}

#[test]
fn an_eof_between_frames_is_peer_closed_and_inside_one_is_a_truncated_frame() {
    let mut h = Harness::new();
    h.hello(ConnId(1));
    h.disconnect(ConnId(1), CloseReason::PeerClosed);
    h.hello(ConnId(2));
    let bytes = publishes(b"db", 1..=1);
    h.send_bytes(ConnId(2), &bytes[..bytes.len() - 1]);
    h.disconnect(ConnId(2), CloseReason::PeerClosed);
    let closes = h.stats().server.closes;
    assert_eq!(closes.get("PEER_CLOSED"), Some(&1), "{closes:?}");
    assert_eq!(closes.get("TRUNCATED_FRAME"), Some(&1), "{closes:?}");
}

#[test]
fn publishes_past_the_fan_out_budget_wait_in_the_input_for_the_next_turn() {
    const SUBSCRIBERS: u64 = 100;
    let per_turn = TURN_DELIVERIES.div_ceil(SUBSCRIBERS);
    let total = per_turn + 50;
    let mut h = Harness::with_config(Config {
        max_queue_depth: 2 * total as u32,
        max_queue_bytes: 1 << 30,
        max_subscriptions: 4,
        ..test_config()
    });
    h.hello(PUBLISHER);
    let subscribers: Vec<ConnId> = (0..SUBSCRIBERS).map(|n| ConnId(10 + n as usize)).collect();
    for &sub in &subscribers {
        h.hello(sub);
        h.subscribe(sub, "db", None);
        h.discard(sub);
    }
    // One read brings all of them; the broker handles publishes up to the budget.
    h.send_bytes(PUBLISHER, &publishes(b"db", 1..=total));
    assert_eq!(h.unread(PUBLISHER), 0, "all bytes were read");
    assert_eq!(
        h.take_inbox(PUBLISHER),
        [],
        "no flush yet: this is still the read pass"
    );
    let depth = h.session(subscribers[0]).queue_depth;
    assert_eq!(depth, per_turn, "the rest is held for the next turn");
    // The next turns handle the rest, in order.
    assert_eq!(
        h.frames(PUBLISHER),
        [Received::Receipt(per_turn), Received::Receipt(total)]
    );
    for &sub in &subscribers {
        assert_eq!(h.session(sub).queue_depth, total);
    }
}

#[test]
fn a_publisher_over_its_rate_is_not_read_until_its_buckets_refill() {
    let mut h = Harness::with_config(Config {
        max_publish_rate: 2,
        ..test_config()
    });
    h.hello(PUBLISHER);
    h.send_bytes(PUBLISHER, &publishes(b"db", 1..=5));
    h.drive();
    // Full buckets (2) take two; the third goes into debt and pauses reading.
    assert_eq!(h.frames(PUBLISHER), [Received::Receipt(3)]);
    assert!(h.stats().sessions[0].is_throttled);
    h.advance(Duration::from_millis(400));
    assert_eq!(
        h.frames(PUBLISHER),
        [],
        "still paused (debt of one message at 2/s)"
    );
    h.advance(Duration::from_millis(200));
    assert_eq!(h.frames(PUBLISHER), [Received::Receipt(4)]);
    h.advance(Duration::from_millis(500));
    assert_eq!(h.frames(PUBLISHER), [Received::Receipt(5)]);
    assert_eq!(
        h.stats().server.messages_published,
        5,
        "nothing dropped, only delayed"
    );
}
