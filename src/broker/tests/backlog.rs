//! Backlogs the server causes itself: a subscriber that acks everything it was sent but still
//! has more than a window pending is held back by the server, not by the client. The loop then
//! reads only connections that may carry acks (`may_defer_read`) until the backlogs drain, so
//! queues stay short instead of growing until they overflow.

use std::time::Duration;

use super::harness::{reconnect_config, Harness, READ_CHUNK};
use crate::broker::flow::MAX_DRAIN;
use crate::broker::ConnId;
use crate::config::Config;

const PUBLISHER: ConnId = ConnId(1);
const SUBSCRIBER: ConnId = ConnId(2);
const WINDOW: u32 = 4;

/// A publisher and a subscriber with a window of 4 on every event of "db", and `queued`
/// messages published before the subscriber's connection is flushed.
fn backlog_of(queued: usize) -> Harness {
    backlog_with(reconnect_config(), queued)
}

fn backlog_with(config: Config, queued: usize) -> Harness {
    let mut h = Harness::with_config(config);
    h.hello(PUBLISHER);
    h.hello_with_window(SUBSCRIBER, WINDOW);
    h.subscribe(SUBSCRIBER, "db", None);
    h.discard(SUBSCRIBER);
    h.discard(PUBLISHER);
    assert!(!h.broker.has_backlog(), "nothing pending yet");
    for n in 0..queued {
        h.publish(PUBLISHER, "db", "e", &format!("m{n}"));
    }
    h
}

/// [`reconnect_config`] with queues deep enough for bursts of several read chunks.
fn deep_config() -> Config {
    Config {
        max_queue_depth: 10_000,
        max_queue_bytes: 1 << 30,
        max_queue_depth_detached: 10_000,
        max_queue_bytes_detached: 1 << 30,
        ..reconnect_config()
    }
}

/// More than two read chunks of 1 KiB publishes from the publisher.
fn burst(h: &mut Harness) {
    let payload = vec![b'x'; 1024];
    let mut bytes = Vec::new();
    for seq in 1..=(2 * READ_CHUNK / payload.len()) as u64 + 1 {
        let publish = crate::protocol::Publish {
            seq,
            queue: b"db",
            event: b"e",
            key: None,
            ttl_ms: None,
            payload: &payload,
        };
        crate::protocol::codec::encode_publish(&publish, &mut bytes).unwrap();
    }
    h.send_bytes(PUBLISHER, &bytes);
}

#[test]
fn a_subscriber_caught_up_on_acks_behind_more_than_a_window_is_a_backlog_of_the_server() {
    let mut h = backlog_with(deep_config(), 0);
    burst(&mut h);
    let first_chunk = h.session(SUBSCRIBER).queue_depth;
    // The first chunk queued more than a window for a subscriber that keeps up: the rest
    // waits in the publisher's socket while the server drains.
    assert!(h.unread(PUBLISHER) > 0, "the publisher stopped being read");
    assert!(h.broker.is_deferred(PUBLISHER));
    assert!(h.broker.may_defer_read(PUBLISHER), "nothing in flight");
    assert_eq!(h.payloads(SUBSCRIBER).len(), 4, "one window sent");
    assert!(!h.broker.may_defer_read(SUBSCRIBER), "its acks are read");
    let unread = h.unread(PUBLISHER);
    let mut rounds: u64 = 0;
    while h.unread(PUBLISHER) == unread {
        h.ack_all(SUBSCRIBER);
        assert_eq!(h.payloads(SUBSCRIBER).len(), 4);
        rounds += 1;
        assert!(rounds < 100, "the publisher is never read again");
    }
    let sent = (rounds + 1) * u64::from(WINDOW);
    assert!(
        sent + u64::from(WINDOW) >= first_chunk,
        "read again only once the backlog is down to a window: {sent} of {first_chunk} sent"
    );
}

#[test]
fn however_long_the_backlogs_last_a_deferred_connection_is_read_within_max_drain() {
    let mut h = backlog_with(deep_config(), 0);
    burst(&mut h);
    assert_eq!(h.payloads(SUBSCRIBER).len(), 4);
    let unread = h.unread(PUBLISHER);
    assert!(unread > 0, "deferred");
    let step = Duration::from_millis(10);
    let mut waited = Duration::ZERO;
    while h.unread(PUBLISHER) == unread {
        assert!(waited <= MAX_DRAIN + step, "deferred for {waited:?}");
        h.advance(step);
        waited += step;
        h.ack_all(SUBSCRIBER);
        assert_eq!(h.payloads(SUBSCRIBER).len(), 4, "the backlog lasts");
    }
    assert!(
        h.session(SUBSCRIBER).pending > u64::from(WINDOW),
        "still a backlog"
    );
    assert!(waited >= MAX_DRAIN, "released before MAX_DRAIN: {waited:?}");
}

#[test]
fn a_subscriber_slow_to_ack_is_not_a_backlog_of_the_server() {
    let mut h = backlog_of(12);
    let sent = h.deliveries(SUBSCRIBER);
    assert_eq!(sent.len(), 4);
    // One ack of four: three still in flight, more than half the window. The client is the
    // bottleneck, so publishers must not wait for it (it is closed at its queue limit).
    h.ack(SUBSCRIBER, sent[0].seq, &[]);
    assert_eq!(h.payloads(SUBSCRIBER).len(), 1);
    assert!(!h.broker.may_defer_read(SUBSCRIBER));
    h.publish(PUBLISHER, "db", "e", "read at once");
    assert_eq!(h.unread(PUBLISHER), 0, "not deferred");
    assert_eq!(h.session(SUBSCRIBER).queue_depth, 12);
}

#[test]
fn a_connection_without_a_session_or_closing_is_never_deferred() {
    let mut h = backlog_of(0);
    h.connect(ConnId(9));
    assert!(!h.broker.may_defer_read(ConnId(9)), "HELLO not read yet");
    assert!(!h.broker.may_defer_read(ConnId(10)), "unknown connection");
}

#[test]
fn publishing_past_a_window_for_a_subscriber_that_keeps_up_is_seen_before_any_flush() {
    // The loop asks after every read chunk, so one turn's intake stays near one window.
    let mut h = backlog_of(WINDOW as usize);
    assert!(
        !h.broker.has_backlog(),
        "a window's worth can go out in one flush"
    );
    h.publish(PUBLISHER, "db", "e", "one more");
    assert!(h.broker.has_backlog());
    assert!(h.broker.has_backlog(), "asking does not reset it");
    assert!(h.broker.take_backlogged());
    assert!(!h.broker.has_backlog());
}

#[test]
fn a_detached_session_is_never_a_backlog_of_the_server() {
    let mut h = backlog_of(0);
    h.disconnect(SUBSCRIBER, crate::broker::CloseReason::PeerClosed);
    for n in 0..3 * WINDOW {
        h.publish(PUBLISHER, "db", "e", &format!("m{n}"));
    }
    assert_eq!(
        h.session(SUBSCRIBER).pending,
        u64::from(3 * WINDOW),
        "kept, detached"
    );
    assert!(!h.broker.has_backlog());
}

#[test]
fn a_subscriber_whose_socket_is_full_is_not_a_backlog_of_the_server_however_few_it_has_unacked() {
    let mut h = backlog_of(0);
    // Its socket took only part of the first window (the loop's room ran out).
    for n in 0..WINDOW {
        h.publish(
            PUBLISHER,
            "db",
            &format!("e{n}"),
            "a payload of some length",
        );
    }
    h.flush_with_room(SUBSCRIBER, 1);
    let sent = h.take_inbox(SUBSCRIBER);
    assert!(
        !sent.is_empty() && sent.len() < WINDOW as usize,
        "{}",
        sent.len()
    );
    assert!(!h.broker.take_backlogged());
    // It acks what it got; more is published than a window.
    let last = h.session(SUBSCRIBER).last_delivery_seq;
    h.ack(SUBSCRIBER, last, &[]);
    for n in 0..2 * WINDOW {
        h.publish(PUBLISHER, "db", "e", &format!("m{n}"));
    }
    assert!(!h.broker.has_backlog(), "the client's socket holds it back");
}

#[test]
fn queued_counts_one_delivery_per_message_per_target_from_the_start_of_a_read() {
    let mut h = backlog_of(0);
    h.hello(ConnId(3));
    h.subscribe(ConnId(3), "db", None);
    let mut bytes = Vec::new();
    for n in 0..5u64 {
        let publish = crate::protocol::Publish {
            seq: n + 1,
            queue: b"db",
            event: b"e",
            key: None,
            ttl_ms: None,
            payload: b"m",
        };
        crate::protocol::codec::encode_publish(&publish, &mut bytes).unwrap();
    }
    let publish = crate::protocol::Publish {
        seq: 6,
        queue: b"nobody-listens",
        event: b"e",
        key: None,
        ttl_ms: None,
        payload: b"x",
    };
    crate::protocol::codec::encode_publish(&publish, &mut bytes).unwrap();
    h.send_bytes(PUBLISHER, &bytes);
    assert_eq!(
        h.broker.queued(),
        10,
        "5 messages to 2 subscribers, in one read"
    );
    assert_eq!(h.broker.take_queued(), 10);
    h.ack(SUBSCRIBER, 0, &[]);
    assert_eq!(h.broker.queued(), 0, "a new read starts the count again");
}
