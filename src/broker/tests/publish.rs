//! PUBLISH: sequence numbers, RECEIPTs, names and limits.

use super::harness::{
    failed_with, test_config, Harness, Received, SMALL_QUEUE, SMALL_QUEUE_MAX_PAYLOAD_LEN,
};
use crate::broker::{CloseReason, ConnId};
use crate::protocol::{ErrorCode, Frame, Subscription};

const PUBLISHER: ConnId = ConnId(1);
const SUBSCRIBER: ConnId = ConnId(2);

fn publisher_and_subscriber() -> Harness {
    let mut h = Harness::new();
    h.hello(PUBLISHER);
    h.hello(SUBSCRIBER);
    h.subscribe(SUBSCRIBER, "db", None);
    h.discard(SUBSCRIBER);
    h
}

// ---- sequence numbers and RECEIPT ----

#[test]
fn receipts_are_batched_into_one_per_transmit_with_the_highest_seq() {
    let mut h = publisher_and_subscriber();
    for n in 0..10 {
        h.publish(PUBLISHER, "db", "e", &format!("m{n}"));
    }
    assert_eq!(h.frames(PUBLISHER), [Received::Receipt(10)]);
    h.publish(PUBLISHER, "db", "e", "m10");
    assert_eq!(h.frames(PUBLISHER), [Received::Receipt(11)]);
    assert_eq!(h.frames(PUBLISHER), [], "nothing new, no RECEIPT");
    assert_eq!(h.deliveries(SUBSCRIBER).len(), 11);
}

#[test]
fn a_message_nobody_subscribes_to_is_still_receipted() {
    let mut h = Harness::new();
    h.hello(PUBLISHER);
    h.publish(PUBLISHER, "void", "e", "lost");
    assert_eq!(h.frames(PUBLISHER), [Received::Receipt(1)]);
    assert_eq!(h.stats().server.messages_published, 1);
    h.assert_store_is_empty();
}

#[test]
fn a_duplicate_publish_seq_is_receipted_but_not_routed() {
    let mut h = publisher_and_subscriber();
    h.publish(PUBLISHER, "db", "e", "one");
    h.publish(PUBLISHER, "db", "e", "two");
    assert_eq!(h.frames(PUBLISHER), [Received::Receipt(2)]);
    // A client that lost the RECEIPT resends both.
    h.publish_with_seq(PUBLISHER, 1, "db", "e", None, b"one");
    h.publish_with_seq(PUBLISHER, 2, "db", "e", None, b"two");
    assert_eq!(h.frames(PUBLISHER), [Received::Receipt(2)]);
    assert_eq!(h.payloads(SUBSCRIBER), ["one", "two"]);
    let server = h.stats().server;
    assert_eq!(
        (server.messages_published, server.messages_duplicate),
        (2, 2)
    );
    // The next new seq is still accepted.
    h.publish(PUBLISHER, "db", "e", "three");
    assert_eq!(h.payloads(SUBSCRIBER), ["three"]);
}

#[test]
fn a_publish_seq_gap_is_a_fatal_error_and_closes_the_connection() {
    let mut h = publisher_and_subscriber();
    h.publish(PUBLISHER, "db", "e", "one");
    h.publish_with_seq(PUBLISHER, 3, "db", "e", None, b"three");
    assert_eq!(
        h.frames(PUBLISHER),
        [
            Received::Error {
                code: ErrorCode::PublishSeqGap,
                fatal: true,
                ref_seq: 3,
            },
            Received::Closed(CloseReason::ProtocolError(ErrorCode::PublishSeqGap)),
        ],
        "no RECEIPT for a closing connection"
    );
    assert_eq!(h.payloads(SUBSCRIBER), ["one"]);
    assert_eq!(h.stats().server.sessions, 1);
}

#[test]
fn a_first_publish_seq_of_zero_is_a_gap() {
    let mut h = publisher_and_subscriber();
    h.publish_with_seq(PUBLISHER, 0, "db", "e", None, b"zero");
    assert_eq!(h.frames(PUBLISHER), failed_with(ErrorCode::PublishSeqGap));
    assert_eq!(h.deliveries(SUBSCRIBER), vec![]);
}

#[test]
fn frames_after_a_fatal_error_in_the_same_turn_are_ignored() {
    let mut h = publisher_and_subscriber();
    h.publish_with_seq(PUBLISHER, 0, "db", "e", None, b"gap");
    h.publish_with_seq(PUBLISHER, 1, "db", "e", None, b"after");
    assert_eq!(h.frames(PUBLISHER), failed_with(ErrorCode::PublishSeqGap));
    assert_eq!(h.deliveries(SUBSCRIBER), vec![]);
    h.assert_store_is_empty();
}

// ---- names ----

#[test]
fn an_empty_queue_name_in_publish_is_invalid_name() {
    let mut h = Harness::new();
    h.hello(PUBLISHER);
    h.publish(PUBLISHER, "", "e", "x");
    let frames = h.frames(PUBLISHER);
    assert_eq!(
        frames[0],
        Received::Error {
            code: ErrorCode::InvalidName,
            fatal: true,
            ref_seq: 1,
        }
    );
    assert_eq!(
        frames[1..],
        [Received::Closed(CloseReason::ProtocolError(
            ErrorCode::InvalidName
        ))]
    );
}

#[test]
fn an_empty_queue_name_in_subscribe_is_invalid_name() {
    let mut h = Harness::new();
    h.hello(SUBSCRIBER);
    h.subscribe(SUBSCRIBER, "", None);
    assert_eq!(h.frames(SUBSCRIBER), failed_with(ErrorCode::InvalidName));
}

#[test]
fn an_empty_event_name_without_all_events_is_invalid_name() {
    let mut h = Harness::new();
    h.hello(SUBSCRIBER);
    h.send(
        SUBSCRIBER,
        &Frame::Subscribe(Subscription {
            queue: b"db",
            event: Some(b""),
            start: None,
            group: None,
            is_pattern: false,
        }),
    );
    assert_eq!(h.frames(SUBSCRIBER), failed_with(ErrorCode::InvalidName));
}

// ---- limits ----

#[test]
fn a_payload_over_the_queues_max_payload_len_is_limit_exceeded() {
    let mut h = Harness::new();
    h.hello(PUBLISHER);
    h.hello(SUBSCRIBER);
    h.subscribe(SUBSCRIBER, SMALL_QUEUE, None);
    let fits = vec![b'x'; SMALL_QUEUE_MAX_PAYLOAD_LEN as usize];
    let too_long = vec![b'x'; SMALL_QUEUE_MAX_PAYLOAD_LEN as usize + 1];
    h.publish_frame(PUBLISHER, SMALL_QUEUE, "e", None, &fits);
    h.publish_frame(PUBLISHER, SMALL_QUEUE, "e", None, &too_long);
    assert_eq!(
        h.frames(PUBLISHER),
        [
            Received::Error {
                code: ErrorCode::LimitExceeded,
                fatal: true,
                ref_seq: 2,
            },
            Received::Closed(CloseReason::ProtocolError(ErrorCode::LimitExceeded)),
        ]
    );
    assert_eq!(h.deliveries(SUBSCRIBER).len(), 1);
}

#[test]
fn max_queues_counts_live_queues_and_is_limit_exceeded_for_subscribe() {
    let config = test_config();
    let declared = config.queues.len();
    let mut h = Harness::with_config(config.clone());
    h.hello(PUBLISHER);
    h.hello(SUBSCRIBER);
    // Publishing to names nobody subscribes to creates no queue (issue #12).
    for n in 0..100 {
        h.publish(PUBLISHER, &format!("nobody{n}"), "e", "x");
    }
    assert_eq!(h.stats().server.queues, declared as u64);
    assert!(!h
        .frames(PUBLISHER)
        .iter()
        .any(|f| matches!(f, Received::Closed(_))));
    let max_subscriptions = config.max_subscriptions;
    let mut subscribers = Vec::new();
    for n in declared..config.max_queues {
        let index = n - declared;
        let conn = ConnId(10 + index / max_subscriptions);
        if index % max_subscriptions == 0 {
            h.hello(conn);
            subscribers.push(conn);
        }
        h.subscribe(conn, &format!("q{n}"), None);
    }
    assert_eq!(h.stats().server.queues, config.max_queues as u64);
    // Existing queues still work.
    h.subscribe(SUBSCRIBER, "q2", None);
    h.subscribe(SUBSCRIBER, "one-too-many", None);
    let frames = h.frames(SUBSCRIBER);
    assert_eq!(frames[1..], failed_with(ErrorCode::LimitExceeded));
    assert_eq!(h.stats().server.queues, config.max_queues as u64);
    // Their subscribers gone, the queues are freed and the names can be used again.
    for conn in subscribers {
        h.send(conn, &Frame::Bye);
    }
    h.hello(ConnId(9));
    h.subscribe(ConnId(9), "fresh", None);
    assert_eq!(h.frames(ConnId(9)).len(), 1, "SUBSCRIBED");
    assert_eq!(h.stats().server.queues, declared as u64 + 1);
}

// Issue #12: 100,000 distinct names filled max_queues for good.
#[test]
fn a_flood_of_queue_names_from_one_address_leaves_queues_for_others() {
    let mut h = Harness::with_config(crate::config::Config {
        max_queues: 12,
        max_queues_per_address: 4,
        ..test_config()
    });
    // The flood: sessions from one address subscribing to ever new names, and dropping.
    let mut refused = 0;
    for n in 0..40 {
        let conn = ConnId(100 + n);
        h.connect_from(conn, [10, 0, 0, 1]);
        h.send(
            conn,
            &Frame::Hello(crate::protocol::Hello {
                extensions: false,
                inflight_window: 0,
                client_name: b"flood",
                resume: None,
                auth: None,
            }),
        );
        for k in 0..4 {
            h.subscribe(conn, &format!("flood-{n}-{k}"), None);
        }
        refused += h
            .frames(conn)
            .iter()
            .filter(|f| {
                matches!(
                    f,
                    Received::Error {
                        code: ErrorCode::LimitExceeded,
                        ..
                    }
                )
            })
            .count();
        if n % 2 == 0 {
            h.disconnect(conn, CloseReason::PeerClosed);
        }
    }
    assert!(refused > 0, "the flood met its per-address limit");
    assert!(
        h.stats().server.queues <= 2 + 4,
        "declared + the flood's limit"
    );
    // A second client, from another address, still gets its queues.
    h.connect_from(ConnId(9), [10, 9, 9, 9]);
    h.send(
        ConnId(9),
        &Frame::Hello(crate::protocol::Hello {
            extensions: false,
            inflight_window: 0,
            client_name: b"second",
            resume: None,
            auth: None,
        }),
    );
    for k in 0..4 {
        h.subscribe(ConnId(9), &format!("mine{k}"), None);
    }
    let frames = h.frames(ConnId(9));
    assert_eq!(frames.len(), 5, "WELCOME and four SUBSCRIBED: {frames:?}");
    assert!(matches!(frames[0], Received::Welcome(_)));
    assert!(frames[1..]
        .iter()
        .all(|f| matches!(f, Received::Subscribed(_))));
}

#[test]
fn max_subscriptions_is_limit_exceeded_unless_already_subscribed() {
    let max = test_config().max_subscriptions;
    let mut h = Harness::new();
    h.hello(SUBSCRIBER);
    for n in 0..max {
        h.subscribe(SUBSCRIBER, "db", Some(&format!("e{n}")));
    }
    h.subscribe(SUBSCRIBER, "db", Some("e0"));
    assert_eq!(
        h.frames(SUBSCRIBER).len(),
        max + 1,
        "all answered with SUBSCRIBED"
    );
    h.subscribe(SUBSCRIBER, "db", None);
    assert_eq!(h.frames(SUBSCRIBER), failed_with(ErrorCode::LimitExceeded));
}

#[test]
fn names_longer_than_max_name_len_are_limit_exceeded_in_publish_and_subscribe() {
    let config = crate::config::Config {
        max_name_len: 4,
        ..test_config()
    };
    let mut h = Harness::with_config(config);
    h.hello(PUBLISHER);
    h.hello(SUBSCRIBER);
    h.subscribe(SUBSCRIBER, "abcd", Some("eeee"));
    h.publish(PUBLISHER, "abcd", "eeee", "fits");
    assert_eq!(h.payloads(SUBSCRIBER), ["fits"]);
    h.subscribe(SUBSCRIBER, "abcde", None);
    let frames = h.frames(SUBSCRIBER);
    assert_eq!(
        frames[1..],
        failed_with(ErrorCode::LimitExceeded),
        "{frames:?}"
    );
    h.publish(PUBLISHER, "abcd", "event", "x");
    assert_eq!(
        h.frames(PUBLISHER).last(),
        Some(&Received::Closed(CloseReason::ProtocolError(
            ErrorCode::LimitExceeded
        )))
    );
}
