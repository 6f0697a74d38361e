//! Conflation: a newer message replaces an older unsent one with the same (queue, event, key).

use super::harness::{Harness, Received, CONFLATING_QUEUE};
use crate::broker::ConnId;
use crate::protocol::frame::DROPPED_CONFLATED;
use crate::protocol::Hello;

const PUBLISHER: ConnId = ConnId(1);
const SUBSCRIBER: ConnId = ConnId(2);

/// A publisher and a subscriber with window 1 of every event of "db" and of the conflating
/// queue; "hold" is delivered first so that everything after it stays pending.
fn subscriber_holding_one() -> Harness {
    let mut h = Harness::new();
    h.hello(PUBLISHER);
    h.hello_with_window(SUBSCRIBER, 1);
    h.subscribe(SUBSCRIBER, "db", None);
    h.subscribe(SUBSCRIBER, CONFLATING_QUEUE, None);
    h.publish(PUBLISHER, "db", "e", "hold");
    assert_eq!(h.payloads(SUBSCRIBER), ["hold"]);
    h.discard(SUBSCRIBER);
    h
}

/// Acks one delivery at a time until nothing more comes; returns every payload received.
fn receive_all(h: &mut Harness, conn: ConnId) -> Vec<String> {
    let mut payloads = Vec::new();
    loop {
        h.ack_all(conn);
        let batch = h.payloads(conn);
        if batch.is_empty() {
            return payloads;
        }
        payloads.extend(batch);
    }
}

#[test]
fn a_newer_message_with_the_same_key_replaces_the_unsent_one_at_the_tail() {
    let mut h = subscriber_holding_one();
    h.publish_keyed(PUBLISHER, "db", "price", "AAPL", "a1");
    h.publish(PUBLISHER, "db", "price", "plain");
    h.publish_keyed(PUBLISHER, "db", "price", "MSFT", "m1");
    h.publish_keyed(PUBLISHER, "db", "price", "AAPL", "a2");
    let session = h.session(SUBSCRIBER);
    assert_eq!((session.pending, session.conflated), (3, 1));
    assert_eq!(receive_all(&mut h, SUBSCRIBER), ["plain", "m1", "a2"]);
    h.ack_all(SUBSCRIBER);
    h.assert_store_is_empty();
}

#[test]
fn message_ids_and_delivery_seqs_stay_in_acceptance_order_after_conflation() {
    let mut h = subscriber_holding_one();
    h.publish_keyed(PUBLISHER, "db", "price", "k", "old"); // message 2
    h.publish(PUBLISHER, "db", "other", "x"); // message 3
    h.publish_keyed(PUBLISHER, "db", "price", "k", "new"); // message 4
    h.ack_all(SUBSCRIBER);
    let first = h.deliveries(SUBSCRIBER);
    h.ack_all(SUBSCRIBER);
    let second = h.deliveries(SUBSCRIBER);
    let got: Vec<_> = first
        .iter()
        .chain(&second)
        .map(|d| (d.seq, d.message_id, d.payload_str()))
        .collect();
    assert_eq!(got, [(2, 3, "x"), (3, 4, "new")]);
}

#[test]
fn different_keys_events_or_queues_do_not_conflate() {
    let mut h = subscriber_holding_one();
    h.publish_keyed(PUBLISHER, "db", "price", "k", "1");
    h.publish_keyed(PUBLISHER, "db", "price", "other-key", "2");
    h.publish_keyed(PUBLISHER, "db", "volume", "k", "3");
    h.publish_keyed(PUBLISHER, CONFLATING_QUEUE, "price", "k", "4");
    h.publish_keyed(PUBLISHER, "db", "price", "", "5");
    assert_eq!(h.session(SUBSCRIBER).conflated, 0);
    assert_eq!(receive_all(&mut h, SUBSCRIBER), ["1", "2", "3", "4", "5"]);
}

#[test]
fn a_message_without_the_flag_does_not_replace_a_conflating_one() {
    let mut h = subscriber_holding_one();
    h.publish_keyed(PUBLISHER, "db", "price", "", "keyed");
    h.publish(PUBLISHER, "db", "price", "plain");
    assert_eq!(receive_all(&mut h, SUBSCRIBER), ["keyed", "plain"]);
}

#[test]
fn an_in_flight_message_is_never_replaced() {
    let mut h = Harness::new();
    h.hello(PUBLISHER);
    h.hello_with_window(SUBSCRIBER, 1);
    h.subscribe(SUBSCRIBER, "db", None);
    h.publish_keyed(PUBLISHER, "db", "price", "k", "sent");
    assert_eq!(h.payloads(SUBSCRIBER), ["sent"]);
    h.publish_keyed(PUBLISHER, "db", "price", "k", "pending-1");
    h.publish_keyed(PUBLISHER, "db", "price", "k", "pending-2");
    let session = h.session(SUBSCRIBER);
    assert_eq!(
        (session.in_flight, session.pending, session.conflated),
        (1, 1, 1)
    );
    assert_eq!(receive_all(&mut h, SUBSCRIBER), ["pending-2"]);
    h.ack_all(SUBSCRIBER);
    h.assert_store_is_empty();
}

#[test]
fn a_conflate_queue_conflates_without_the_flag_on_queue_and_event() {
    let mut h = subscriber_holding_one();
    h.publish(PUBLISHER, CONFLATING_QUEUE, "price", "p1");
    h.publish(PUBLISHER, CONFLATING_QUEUE, "volume", "v1");
    h.publish(PUBLISHER, CONFLATING_QUEUE, "price", "p2");
    h.publish(PUBLISHER, CONFLATING_QUEUE, "price", "p3");
    // With a key the identity differs from the key-less one.
    h.publish_keyed(PUBLISHER, CONFLATING_QUEUE, "price", "AAPL", "a1");
    assert_eq!(h.session(SUBSCRIBER).conflated, 2);
    assert_eq!(receive_all(&mut h, SUBSCRIBER), ["v1", "p3", "a1"]);
}

#[test]
fn conflation_is_per_session() {
    let other = ConnId(3);
    let mut h = subscriber_holding_one();
    h.hello(other);
    h.subscribe(other, "db", None);
    h.publish_keyed(PUBLISHER, "db", "price", "k", "1");
    // `other` has room in its window: "1" goes out at once and cannot be replaced.
    h.deliveries(other);
    h.publish_keyed(PUBLISHER, "db", "price", "k", "2");
    assert_eq!(h.payloads(other), ["2"]);
    assert_eq!(receive_all(&mut h, SUBSCRIBER), ["2"]);
    assert_eq!(h.session(other).conflated, 0);
    assert_eq!(h.session(SUBSCRIBER).conflated, 1);
}

#[test]
fn conflations_are_counted_for_the_session_and_the_server() {
    let mut h = subscriber_holding_one();
    for n in 0..5 {
        h.publish_keyed(PUBLISHER, "db", "price", "k", &n.to_string());
    }
    assert_eq!(h.session(SUBSCRIBER).conflated, 4);
    let server = h.stats().server;
    assert_eq!(server.messages_conflated, 4);
    assert_eq!(
        server.stored_messages, 2,
        "\"hold\" in flight and the last one pending"
    );
    assert_eq!(receive_all(&mut h, SUBSCRIBER), ["4"]);
    h.ack_all(SUBSCRIBER);
    h.assert_store_is_empty();
}

// ---- DROPPED (issue 13): the subscriber is told how many messages conflation removed ----

/// [`subscriber_holding_one`], but the subscriber's HELLO sets `extensions`.
fn extended_subscriber_holding_one() -> Harness {
    let mut h = Harness::new();
    h.hello(PUBLISHER);
    h.connect(SUBSCRIBER);
    h.handshake(
        SUBSCRIBER,
        Hello {
            inflight_window: 1,
            client_name: b"sub",
            resume: None,
            auth: None,
            extensions: true,
        },
    );
    h.subscribe(SUBSCRIBER, "db", None);
    h.publish(PUBLISHER, "db", "e", "hold");
    assert_eq!(h.payloads(SUBSCRIBER), ["hold"]);
    h.discard(SUBSCRIBER);
    h
}

#[test]
fn a_subscriber_with_extensions_is_told_how_many_messages_conflation_removed() {
    let mut h = extended_subscriber_holding_one();
    h.publish_keyed(PUBLISHER, "db", "price", "AAPL", "a1");
    h.publish_keyed(PUBLISHER, "db", "price", "AAPL", "a2");
    h.publish_keyed(PUBLISHER, "db", "price", "AAPL", "a3");
    // Two replacements in that turn: one DROPPED with the count and the running total.
    assert_eq!(
        h.frames(SUBSCRIBER),
        [Received::Dropped(DROPPED_CONFLATED, 2, 2)]
    );
    h.publish_keyed(PUBLISHER, "db", "price", "AAPL", "a4");
    assert_eq!(
        h.frames(SUBSCRIBER),
        [Received::Dropped(DROPPED_CONFLATED, 1, 3)]
    );
    assert_eq!(
        h.session(SUBSCRIBER).conflated,
        3,
        "the same count as STATS"
    );
    assert_eq!(receive_all(&mut h, SUBSCRIBER), ["a4"]);
}

#[test]
fn a_subscriber_without_extensions_gets_no_dropped_frame() {
    let mut h = subscriber_holding_one();
    h.publish_keyed(PUBLISHER, "db", "price", "AAPL", "a1");
    h.publish_keyed(PUBLISHER, "db", "price", "AAPL", "a2");
    assert_eq!(h.frames(SUBSCRIBER), []);
    assert_eq!(h.session(SUBSCRIBER).conflated, 1);
}
