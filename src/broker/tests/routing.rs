//! Routing: which sessions a message reaches, how often, and in what order.

use super::harness::{Harness, Received, Sub};
use crate::broker::ConnId;

const PUBLISHER: ConnId = ConnId(1);
const ALL: ConnId = ConnId(2);
const UPDATES: ConnId = ConnId(3);
const DELETES: ConnId = ConnId(4);
const BOTH_WAYS: ConnId = ConnId(5);

/// A publisher and four subscribers of "db": every event, "update" only, "delete" only, and
/// both every event and "update".
fn fan_out() -> Harness {
    let mut h = Harness::new();
    for conn in [PUBLISHER, ALL, UPDATES, DELETES, BOTH_WAYS] {
        h.hello(conn);
    }
    h.subscribe(ALL, "db", None);
    h.subscribe(UPDATES, "db", Some("update"));
    h.subscribe(DELETES, "db", Some("delete"));
    h.subscribe(BOTH_WAYS, "db", Some("update"));
    h.subscribe(BOTH_WAYS, "db", None);
    for conn in [ALL, UPDATES, DELETES, BOTH_WAYS] {
        h.discard(conn);
    }
    h
}

#[test]
fn a_message_reaches_every_matching_session_once_with_one_message_id() {
    let mut h = fan_out();
    h.publish(PUBLISHER, "db", "update", "u1");
    let all = h.deliveries(ALL);
    let updates = h.deliveries(UPDATES);
    let both = h.deliveries(BOTH_WAYS);
    assert_eq!(h.deliveries(DELETES), vec![]);
    assert_eq!(
        h.deliveries(PUBLISHER),
        vec![],
        "the publisher did not subscribe"
    );
    for received in [&all, &updates, &both] {
        assert_eq!(received.len(), 1, "one copy each: {received:?}");
        let d = &received[0];
        assert_eq!((d.seq, d.message_id), (1, 1));
        assert_eq!((d.queue.as_str(), d.event.as_str()), ("db", "update"));
        assert_eq!(d.payload_str(), "u1");
    }
}

#[test]
fn a_session_subscribed_both_ways_gets_other_events_through_all_events() {
    let mut h = fan_out();
    h.publish(PUBLISHER, "db", "delete", "d1");
    h.publish(PUBLISHER, "db", "update", "u1");
    h.publish(PUBLISHER, "db", "insert", "i1");
    assert_eq!(h.payloads(ALL), ["d1", "u1", "i1"]);
    assert_eq!(h.payloads(BOTH_WAYS), ["d1", "u1", "i1"]);
    assert_eq!(h.payloads(UPDATES), ["u1"]);
    assert_eq!(h.payloads(DELETES), ["d1"]);
}

#[test]
fn a_message_without_event_reaches_only_all_events_subscribers() {
    let mut h = fan_out();
    h.publish(PUBLISHER, "db", "", "bare");
    assert_eq!(h.payloads(ALL), ["bare"]);
    assert_eq!(h.payloads(BOTH_WAYS), ["bare"]);
    assert_eq!(h.payloads(UPDATES), Vec::<String>::new());
}

#[test]
fn a_message_to_another_queue_reaches_nobody_here() {
    let mut h = fan_out();
    h.publish(PUBLISHER, "other", "update", "x");
    for conn in [ALL, UPDATES, DELETES, BOTH_WAYS] {
        assert_eq!(h.deliveries(conn), vec![]);
    }
    h.assert_store_is_empty();
}

#[test]
fn the_publisher_receives_its_own_message_when_subscribed() {
    let mut h = Harness::new();
    h.hello(PUBLISHER);
    h.subscribe(PUBLISHER, "db", None);
    h.publish(PUBLISHER, "db", "update", "mine");
    assert_eq!(h.payloads(PUBLISHER), ["mine"]);
}

#[test]
fn each_session_receives_messages_in_acceptance_order() {
    let (a, b, sub_1, sub_2) = (ConnId(1), ConnId(2), ConnId(3), ConnId(4));
    let mut h = Harness::new();
    for conn in [a, b, sub_1, sub_2] {
        h.hello(conn);
    }
    h.subscribe(sub_1, "q1", None);
    h.subscribe(sub_1, "q2", None);
    h.subscribe(sub_2, "q2", Some("e"));
    h.subscribe(sub_2, "q1", None);
    // Interleaved publishers, two queues, one loop turn.
    h.publish(a, "q1", "e", "a1");
    h.publish(b, "q2", "e", "b1");
    h.publish(a, "q2", "e", "a2");
    h.publish(b, "q1", "x", "b2");
    h.publish(a, "q1", "e", "a3");
    let order = ["a1", "b1", "a2", "b2", "a3"];
    let first = h.deliveries(sub_1);
    let second = h.deliveries(sub_2);
    for received in [&first, &second] {
        let payloads: Vec<_> = received.iter().map(|d| d.payload_str()).collect();
        assert_eq!(payloads, order);
        let seqs: Vec<_> = received.iter().map(|d| d.seq).collect();
        assert_eq!(
            seqs,
            [1, 2, 3, 4, 5],
            "delivery seqs are per session, no gaps"
        );
        let ids: Vec<_> = received.iter().map(|d| d.message_id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5], "message ids follow acceptance order");
    }
}

#[test]
fn only_messages_accepted_after_subscribe_are_delivered() {
    let (publisher, late) = (ConnId(1), ConnId(2));
    let mut h = Harness::new();
    h.hello(publisher);
    h.hello(late);
    h.publish(publisher, "db", "e", "before");
    h.subscribe(late, "db", None);
    h.publish(publisher, "db", "e", "after");
    let received = h.deliveries(late);
    assert_eq!(received.len(), 1);
    assert_eq!(
        (received[0].payload_str(), received[0].message_id),
        ("after", 2)
    );
}

#[test]
fn subscribe_is_idempotent_and_answered_with_subscribed() {
    let mut h = Harness::new();
    h.hello(ALL);
    h.hello(PUBLISHER);
    h.subscribe(ALL, "db", None);
    h.subscribe(ALL, "db", None);
    h.subscribe(ALL, "db", Some("update"));
    assert_eq!(
        h.frames(ALL),
        [
            Received::Subscribed(Sub::new("db", None)),
            Received::Subscribed(Sub::new("db", None)),
            Received::Subscribed(Sub::new("db", Some("update"))),
        ]
    );
    h.publish(PUBLISHER, "db", "update", "once");
    assert_eq!(h.payloads(ALL), ["once"]);
    assert_eq!(h.session(ALL).subscriptions.len(), 2);
}

#[test]
fn unsubscribe_stops_new_messages_but_queued_ones_are_still_delivered() {
    let mut h = Harness::new();
    h.hello(PUBLISHER);
    h.hello_with_window(UPDATES, 1);
    h.subscribe(UPDATES, "db", Some("update"));
    h.publish(PUBLISHER, "db", "update", "sent");
    h.publish(PUBLISHER, "db", "update", "queued");
    assert_eq!(
        h.payloads(UPDATES),
        ["sent"],
        "window 1 holds the second one back"
    );
    h.unsubscribe(UPDATES, "db", Some("update"));
    h.publish(PUBLISHER, "db", "update", "after");
    assert_eq!(
        h.frames(UPDATES),
        [
            Received::Subscribed(Sub::new("db", Some("update"))),
            Received::Unsubscribed(Sub::new("db", Some("update"))),
        ]
    );
    h.ack(UPDATES, 1, &[]);
    assert_eq!(h.payloads(UPDATES), ["queued"]);
    h.ack(UPDATES, 2, &[]);
    h.publish(PUBLISHER, "db", "update", "later");
    assert_eq!(h.deliveries(UPDATES), vec![]);
    h.assert_store_is_empty();
}

#[test]
fn unsubscribe_without_such_subscription_is_still_answered() {
    let mut h = Harness::new();
    h.hello(ALL);
    h.unsubscribe(ALL, "nowhere", Some("e"));
    h.unsubscribe(ALL, "nowhere", None);
    assert_eq!(
        h.frames(ALL),
        [
            Received::Unsubscribed(Sub::new("nowhere", Some("e"))),
            Received::Unsubscribed(Sub::new("nowhere", None)),
        ]
    );
}

#[test]
fn unsubscribing_all_events_leaves_the_named_subscription_routing() {
    let mut h = fan_out();
    h.unsubscribe(BOTH_WAYS, "db", None);
    h.publish(PUBLISHER, "db", "update", "u1");
    h.publish(PUBLISHER, "db", "delete", "d1");
    assert_eq!(h.payloads(BOTH_WAYS), ["u1"]);
    h.unsubscribe(BOTH_WAYS, "db", Some("update"));
    h.publish(PUBLISHER, "db", "update", "u2");
    assert_eq!(h.payloads(BOTH_WAYS), Vec::<String>::new());
    assert_eq!(h.payloads(UPDATES), ["u1", "u2"]);
}

#[test]
fn unsubscribing_the_named_event_leaves_all_events_routing() {
    let mut h = fan_out();
    h.unsubscribe(BOTH_WAYS, "db", Some("update"));
    h.publish(PUBLISHER, "db", "update", "u1");
    h.publish(PUBLISHER, "db", "delete", "d1");
    assert_eq!(h.payloads(BOTH_WAYS), ["u1", "d1"]);
}

#[test]
fn a_closed_subscriber_is_no_longer_routed_to() {
    let mut h = fan_out();
    h.disconnect(UPDATES, crate::broker::CloseReason::PeerClosed);
    h.publish(PUBLISHER, "db", "update", "u1");
    assert_eq!(h.payloads(ALL), ["u1"]);
    let queue = h
        .stats()
        .queues
        .into_iter()
        .find(|q| q.name == "db")
        .unwrap();
    assert_eq!(queue.subscribers, 3);
}
