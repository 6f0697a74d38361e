//! Delivery and ack: per-session delivery seqs, cumulative and individual acks, the in-flight
//! window.

use super::harness::{failed_with, test_config, Harness};
use crate::broker::ConnId;
use crate::protocol::ErrorCode;

const PUBLISHER: ConnId = ConnId(1);
const SUBSCRIBER: ConnId = ConnId(2);

/// A publisher and a subscriber of every event of "db" with `window` (0 = server default).
fn subscribed_with_window(window: u32) -> Harness {
    let mut h = Harness::new();
    h.hello(PUBLISHER);
    h.hello_with_window(SUBSCRIBER, window);
    h.subscribe(SUBSCRIBER, "db", None);
    h.discard(SUBSCRIBER);
    h
}

fn publish_n(h: &mut Harness, n: usize) {
    for i in 1..=n {
        h.publish(PUBLISHER, "db", "e", &format!("m{i}"));
    }
}

fn seqs(h: &mut Harness, conn: ConnId) -> Vec<u64> {
    h.deliveries(conn).iter().map(|d| d.seq).collect()
}

// ---- acks ----

#[test]
fn a_cumulative_ack_releases_every_delivery_up_to_its_seq() {
    let mut h = subscribed_with_window(0);
    publish_n(&mut h, 5);
    assert_eq!(seqs(&mut h, SUBSCRIBER), [1, 2, 3, 4, 5]);
    h.ack(SUBSCRIBER, 3, &[]);
    let session = h.session(SUBSCRIBER);
    assert_eq!(
        (session.in_flight, session.acked, session.queue_depth),
        (2, 3, 2)
    );
    assert_eq!(h.stats().server.stored_messages, 2);
    h.ack(SUBSCRIBER, 5, &[]);
    assert_eq!(h.session(SUBSCRIBER).in_flight, 0);
    h.assert_store_is_empty();
}

#[test]
fn individual_acks_release_exactly_the_listed_seqs() {
    let mut h = subscribed_with_window(0);
    publish_n(&mut h, 5);
    h.discard(SUBSCRIBER);
    h.ack(SUBSCRIBER, 0, &[2, 4]);
    let session = h.session(SUBSCRIBER);
    assert_eq!((session.in_flight, session.acked), (3, 2));
    // A cumulative ack over a hole skips what was already acked.
    h.ack(SUBSCRIBER, 3, &[]);
    let session = h.session(SUBSCRIBER);
    assert_eq!((session.in_flight, session.acked), (1, 4));
    h.ack(SUBSCRIBER, 0, &[4]);
    assert_eq!(
        h.session(SUBSCRIBER).acked,
        4,
        "acking an acked seq again is a no-op"
    );
    h.ack(SUBSCRIBER, 0, &[5]);
    assert_eq!(h.stats().server.messages_acked, 5);
    h.assert_store_is_empty();
    assert_eq!(h.frames(SUBSCRIBER), [], "acks are not answered");
}

#[test]
fn acking_twice_is_a_no_op() {
    let mut h = subscribed_with_window(0);
    publish_n(&mut h, 2);
    h.discard(SUBSCRIBER);
    h.ack(SUBSCRIBER, 2, &[]);
    h.ack(SUBSCRIBER, 2, &[1, 2]);
    assert_eq!(h.session(SUBSCRIBER).acked, 2);
    assert_eq!(h.frames(SUBSCRIBER), []);
}

#[test]
fn a_cumulative_ack_beyond_the_last_sent_seq_is_unknown_ack_seq() {
    let mut h = subscribed_with_window(0);
    publish_n(&mut h, 2);
    h.discard(SUBSCRIBER);
    h.ack(SUBSCRIBER, 3, &[]);
    assert_eq!(h.frames(SUBSCRIBER), failed_with(ErrorCode::UnknownAckSeq));
    h.assert_store_is_empty();
}

#[test]
fn an_individual_ack_of_a_never_sent_seq_is_unknown_ack_seq() {
    let mut h = subscribed_with_window(0);
    publish_n(&mut h, 2);
    h.discard(SUBSCRIBER);
    h.ack(SUBSCRIBER, 0, &[1, 7]);
    assert_eq!(h.frames(SUBSCRIBER), failed_with(ErrorCode::UnknownAckSeq));
}

#[test]
fn an_ack_before_anything_was_sent_is_unknown_ack_seq() {
    let mut h = subscribed_with_window(0);
    h.ack(SUBSCRIBER, 1, &[]);
    assert_eq!(h.frames(SUBSCRIBER), failed_with(ErrorCode::UnknownAckSeq));
}

#[test]
fn an_ack_of_up_to_zero_with_no_seqs_acks_nothing() {
    let mut h = subscribed_with_window(0);
    h.ack(SUBSCRIBER, 0, &[]);
    publish_n(&mut h, 1);
    h.drive();
    h.ack(SUBSCRIBER, 0, &[]);
    assert_eq!(h.session(SUBSCRIBER).in_flight, 1);
    assert_eq!(h.frames(SUBSCRIBER).len(), 1, "only the DELIVER");
}

// ---- in-flight window ----

#[test]
fn only_window_deliveries_are_in_flight_until_acks_free_slots() {
    let mut h = subscribed_with_window(3);
    publish_n(&mut h, 8);
    assert_eq!(seqs(&mut h, SUBSCRIBER), [1, 2, 3]);
    let session = h.session(SUBSCRIBER);
    assert_eq!((session.in_flight, session.pending), (3, 5));
    assert_eq!(
        seqs(&mut h, SUBSCRIBER),
        Vec::<u64>::new(),
        "nothing more without an ack"
    );
    h.ack(SUBSCRIBER, 0, &[2]);
    assert_eq!(
        seqs(&mut h, SUBSCRIBER),
        Vec::<u64>::new(),
        "the window spans from the oldest unacked seq, 1, to the newest sent, 3"
    );
    h.ack(SUBSCRIBER, 1, &[]);
    assert_eq!(seqs(&mut h, SUBSCRIBER), [4, 5]);
    h.ack(SUBSCRIBER, 5, &[]);
    assert_eq!(seqs(&mut h, SUBSCRIBER), [6, 7, 8]);
    h.ack(SUBSCRIBER, 8, &[]);
    h.assert_store_is_empty();
}

#[test]
fn a_window_slot_freed_before_new_messages_arrive_is_used_by_them() {
    let mut h = subscribed_with_window(1);
    publish_n(&mut h, 1);
    assert_eq!(seqs(&mut h, SUBSCRIBER), [1]);
    h.ack(SUBSCRIBER, 1, &[]);
    publish_n(&mut h, 1);
    assert_eq!(seqs(&mut h, SUBSCRIBER), [2]);
}

#[test]
fn hello_may_ask_for_a_smaller_window_but_not_a_larger_one() {
    let server_window = test_config().in_flight_window;
    let mut h = Harness::new();
    assert_eq!(h.hello_with_window(ConnId(1), 2).inflight_window, 2);
    assert_eq!(
        h.hello_with_window(ConnId(2), 0).inflight_window,
        server_window
    );
    let larger = h.hello_with_window(ConnId(3), server_window + 1);
    assert_eq!(larger.inflight_window, server_window);
    let huge = h.hello_with_window(ConnId(4), u32::MAX);
    assert_eq!(huge.inflight_window, server_window);
}

#[test]
fn the_default_window_is_the_servers_inflight_window() {
    let server_window = test_config().in_flight_window as usize;
    let mut h = subscribed_with_window(0);
    publish_n(&mut h, server_window + 2);
    assert_eq!(h.deliveries(SUBSCRIBER).len(), server_window);
    h.ack(SUBSCRIBER, 1, &[]);
    assert_eq!(seqs(&mut h, SUBSCRIBER), [server_window as u64 + 1]);
}
