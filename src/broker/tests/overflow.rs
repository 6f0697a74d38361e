//! Queue limits: a session whose queue would exceed `max_queue_depth` or `max_queue_bytes` is
//! closed with GOODBYE(QUEUE_OVERFLOW); nobody else notices.

use super::harness::{said_goodbye, test_config, Harness, Received, Sub};
use crate::broker::ConnId;
use crate::config::Config;
use crate::protocol::ErrorCode;

const PUBLISHER: ConnId = ConnId(1);
const SLOW: ConnId = ConnId(2);
const FAST: ConnId = ConnId(3);

/// A publisher, a subscriber with window 1 that never acks (SLOW) and one that keeps up
/// (FAST), both on every event of "db".
fn slow_and_fast(config: Config) -> Harness {
    let mut h = Harness::with_config(config);
    h.hello(PUBLISHER);
    h.hello_with_window(SLOW, 1);
    h.hello(FAST);
    for conn in [SLOW, FAST] {
        h.subscribe(conn, "db", None);
        h.discard(conn);
    }
    h
}

fn with_depth(max_queue_depth: u32) -> Config {
    Config {
        max_queue_depth,
        ..test_config()
    }
}

fn with_bytes(max_queue_bytes: u64) -> Config {
    Config {
        max_queue_bytes,
        ..test_config()
    }
}

/// FAST reads and acks whatever it got; returns the payloads.
fn fast_keeps_up(h: &mut Harness) -> Vec<String> {
    let payloads = h.payloads(FAST);
    h.ack_all(FAST);
    payloads
}

#[test]
fn overflowing_the_depth_closes_only_that_session_with_queue_overflow() {
    let mut h = slow_and_fast(with_depth(4));
    let mut fast = Vec::new();
    for n in 1..=4 {
        h.publish(PUBLISHER, "db", "e", &format!("m{n}"));
        fast.extend(fast_keeps_up(&mut h));
    }
    let slow = h.session(SLOW);
    assert_eq!((slow.queue_depth, slow.in_flight, slow.pending), (4, 1, 3));
    h.publish(PUBLISHER, "db", "e", "m5");
    h.publish(PUBLISHER, "db", "e", "m6");
    fast.extend(fast_keeps_up(&mut h));
    assert_eq!(fast, ["m1", "m2", "m3", "m4", "m5", "m6"]);

    assert_eq!(h.payloads(SLOW), ["m1"]);
    assert_eq!(h.frames(SLOW), said_goodbye(ErrorCode::QueueOverflow));
    let server = h.stats().server;
    assert_eq!(server.sessions, 2);
    assert_eq!(server.closes.get("QUEUE_OVERFLOW"), Some(&1));
    assert_eq!(
        server.messages_dropped_overflow, 5,
        "m5 and the 4 SLOW held"
    );
    assert_eq!(server.messages_published, 6);
    h.assert_store_is_empty();
    // The publisher was told nothing but RECEIPTs.
    assert!(h.control(PUBLISHER).is_empty());
}

#[test]
fn overflowing_the_bytes_closes_only_that_session_with_queue_overflow() {
    // Bytes count what a message really costs: its 64 B buffer and a node.
    let cost = crate::broker::store::message_cost(1, 0, 5);
    assert_eq!(cost, 64 + crate::broker::memory::NODE_BYTES);
    let mut h = slow_and_fast(with_bytes(2 * cost));
    h.publish(PUBLISHER, "db", "e", "12345");
    h.publish(PUBLISHER, "db", "e", "67890");
    let mut fast = fast_keeps_up(&mut h);
    assert_eq!(h.session(SLOW).queue_bytes, 2 * cost);
    h.publish(PUBLISHER, "db", "e", "!");
    h.publish(PUBLISHER, "db", "e", "after");
    fast.extend(fast_keeps_up(&mut h));
    assert_eq!(fast, ["12345", "67890", "!", "after"]);
    assert_eq!(h.payloads(SLOW), ["12345"]);
    assert_eq!(h.frames(SLOW), said_goodbye(ErrorCode::QueueOverflow));
    h.assert_store_is_empty();
}

#[test]
fn a_message_larger_than_max_queue_bytes_overflows_an_empty_session() {
    let mut h = slow_and_fast(with_bytes(4));
    h.publish(PUBLISHER, "db", "e", "12345");
    assert_eq!(h.frames(SLOW), said_goodbye(ErrorCode::QueueOverflow));
    assert_eq!(h.frames(FAST), said_goodbye(ErrorCode::QueueOverflow));
    assert_eq!(h.stats().server.sessions, 1);
    h.assert_store_is_empty();
}

#[test]
fn a_conflating_replacement_at_the_limit_does_not_overflow() {
    let mut h = slow_and_fast(with_depth(2));
    h.publish_keyed(PUBLISHER, "db", "price", "k", "1");
    assert_eq!(h.payloads(SLOW), ["1"]);
    h.publish_keyed(PUBLISHER, "db", "price", "k", "2");
    assert_eq!(h.session(SLOW).queue_depth, 2, "at the limit");
    h.publish_keyed(PUBLISHER, "db", "price", "k", "3");
    h.publish_keyed(PUBLISHER, "db", "price", "k", "4");
    let slow = h.session(SLOW);
    assert_eq!((slow.queue_depth, slow.conflated), (2, 2));
    h.ack_all(SLOW);
    assert_eq!(h.payloads(SLOW), ["4"]);
}

#[test]
fn a_subscriber_that_publishes_into_its_own_full_queue_is_closed_without_a_receipt() {
    let mut h = Harness::with_config(with_depth(1));
    h.hello_with_window(SLOW, 1);
    h.subscribe(SLOW, "db", None);
    h.publish(SLOW, "db", "e", "1");
    h.publish(SLOW, "db", "e", "2");
    let frames = h.frames(SLOW);
    assert_eq!(frames[0], Received::Subscribed(Sub::new("db", None)));
    assert_eq!(frames[1..], said_goodbye(ErrorCode::QueueOverflow));
    h.assert_store_is_empty();
}

#[test]
fn an_overflowed_session_ignores_its_remaining_frames() {
    let mut h = slow_and_fast(with_depth(1));
    h.publish(PUBLISHER, "db", "e", "1");
    assert_eq!(fast_keeps_up(&mut h), ["1"]);
    assert_eq!(h.payloads(SLOW), ["1"]);
    h.publish(PUBLISHER, "db", "e", "2");
    // Same loop turn: SLOW is closing, its ACK and PUBLISH are dropped unread.
    h.ack(SLOW, 1, &[]);
    h.publish(SLOW, "db", "e", "from-slow");
    assert_eq!(fast_keeps_up(&mut h), ["2"]);
    assert_eq!(h.frames(SLOW), said_goodbye(ErrorCode::QueueOverflow));
    assert_eq!(h.stats().server.messages_published, 2);
    h.assert_store_is_empty();
}
