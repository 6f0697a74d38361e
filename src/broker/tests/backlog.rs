//! Backlogs the server causes itself: a subscriber that acks everything it was sent but still
//! has more than a window pending is held back by the server, not by the client. The loop then
//! reads only connections that may carry acks (`may_defer_read`) until the backlogs drain, so
//! queues stay short instead of growing until they overflow.

use super::harness::{reconnect_config, Harness};
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
    assert!(!h.broker.take_backlogged(), "nothing pending yet");
    for n in 0..queued {
        h.publish(PUBLISHER, "db", "e", &format!("m{n}"));
    }
    h
}

#[test]
fn a_subscriber_caught_up_on_acks_behind_more_than_a_window_is_a_backlog_of_the_server() {
    let mut h = backlog_of(12);
    assert_eq!(h.payloads(SUBSCRIBER).len(), 4, "one window sent");
    assert!(h.broker.take_backlogged());
    assert!(!h.broker.take_backlogged(), "reported once per flush");
    // The publisher has nothing in flight: reading it can wait. The subscriber's acks cannot.
    assert!(h.broker.may_defer_read(PUBLISHER));
    assert!(!h.broker.may_defer_read(SUBSCRIBER));

    h.ack_all(SUBSCRIBER);
    assert_eq!(h.payloads(SUBSCRIBER).len(), 4);
    assert!(
        h.broker.take_backlogged(),
        "8 were pending when the window reopened"
    );
    h.ack_all(SUBSCRIBER);
    assert_eq!(h.payloads(SUBSCRIBER).len(), 4);
    assert!(
        !h.broker.take_backlogged(),
        "4 pending is not more than a window"
    );
}

#[test]
fn a_subscriber_slow_to_ack_is_not_a_backlog_of_the_server() {
    let mut h = backlog_of(12);
    let sent = h.deliveries(SUBSCRIBER);
    assert_eq!(sent.len(), 4);
    assert!(h.broker.take_backlogged());
    // One ack of four: three still in flight, more than half the window. The client is the
    // bottleneck, so publishers must not wait for it (it is closed at its queue limit).
    h.ack(SUBSCRIBER, sent[0].seq, &[]);
    assert_eq!(h.payloads(SUBSCRIBER).len(), 1);
    assert!(!h.broker.take_backlogged());
    assert!(!h.broker.may_defer_read(SUBSCRIBER));
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
fn queued_counts_one_delivery_per_message_per_target_until_taken() {
    let mut h = backlog_of(0);
    h.hello(ConnId(3));
    h.subscribe(ConnId(3), "db", None);
    h.broker.take_queued();
    for n in 0..5 {
        h.publish(PUBLISHER, "db", "e", &format!("m{n}"));
    }
    h.publish(PUBLISHER, "nobody-listens", "e", "x");
    assert_eq!(h.broker.queued(), 10, "5 messages to 2 subscribers");
    assert_eq!(h.broker.take_queued(), 10);
    assert_eq!(h.broker.queued(), 0);
}
