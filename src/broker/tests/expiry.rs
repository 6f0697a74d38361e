//! Time to live (issue #14): expired messages are never sent, in-flight ones stay, each
//! removal is counted and told with DROPPED(EXPIRED); the queue default and its override.

use std::time::Duration;

use super::harness::{test_config, Harness, Received};
use crate::broker::ConnId;
use crate::config::{Config, QueueConfig};
use crate::protocol::frame::DROPPED_EXPIRED;
use crate::protocol::ErrorCode;

const PUBLISHER: ConnId = ConnId(1);
const SLOW: ConnId = ConnId(2);
const PLAIN: ConnId = ConnId(3);

fn ttl_config() -> Config {
    let mut config = test_config();
    config.queues.push(QueueConfig {
        ttl_ms: 500,
        ..QueueConfig::new("quotes")
    });
    config
}

/// An EXTENSIONS publisher and a subscriber to `queue` with a window of 2 that has read
/// nothing yet.
fn slow_subscriber(queue: &str) -> Harness {
    let mut h = Harness::with_config(ttl_config());
    h.hello_extensions(PUBLISHER, 0);
    h.hello_extensions(SLOW, 2);
    h.subscribe(SLOW, queue, None);
    h.discard(SLOW);
    h
}

#[test]
fn a_slow_subscriber_gets_no_expired_message_and_is_told_how_many_expired() {
    let mut h = slow_subscriber("db");
    for i in 1..=6 {
        h.publish_ttl(PUBLISHER, "db", &format!("m{i}"), 100);
    }
    assert_eq!(h.payloads(SLOW), ["m1", "m2"], "the window holds two");
    h.advance(Duration::from_millis(100));
    // The four pending ones expired at their deadline; the two in flight stay.
    assert_eq!(h.frames(SLOW), [Received::Dropped(DROPPED_EXPIRED, 4, 4)]);
    assert_eq!(h.session(SLOW).queue_depth, 2);
    h.ack_all(SLOW);
    assert!(h.payloads(SLOW).is_empty(), "nothing expired is ever sent");
    let stats = h.stats();
    assert_eq!(stats.server.messages_expired, 4);
    let slow = h.session(SLOW);
    assert_eq!(slow.dropped.expired, 4);
    assert_eq!(slow.acked, 2, "in-flight messages are not expired");
    h.assert_store_is_empty();
}

#[test]
fn a_message_expires_only_for_the_sessions_that_still_hold_it_unsent() {
    let mut h = slow_subscriber("db");
    h.hello(PLAIN);
    h.subscribe(PLAIN, "db", None);
    h.discard(PLAIN);
    for i in 1..=3 {
        h.publish_ttl(PUBLISHER, "db", &format!("m{i}"), 50);
    }
    assert_eq!(h.payloads(PLAIN), ["m1", "m2", "m3"]);
    assert_eq!(h.payloads(SLOW), ["m1", "m2"]);
    h.advance(Duration::from_millis(60));
    h.ack_all(PLAIN);
    h.ack_all(SLOW);
    assert!(h.payloads(SLOW).is_empty());
    assert_eq!(h.session(SLOW).dropped.expired, 1);
    assert_eq!(h.session(PLAIN).dropped.expired, 0);
    assert_eq!(h.stats().server.messages_expired, 1);
    h.assert_store_is_empty();
}

#[test]
fn the_queue_default_ttl_applies_and_a_publish_ttl_of_zero_overrides_it() {
    let mut h = slow_subscriber("quotes");
    for i in 1..=3 {
        h.publish(PUBLISHER, "quotes", "e", &format!("q{i}"));
    }
    h.publish_ttl(PUBLISHER, "quotes", "forever", 0);
    h.publish_ttl(PUBLISHER, "quotes", "long", 10_000);
    assert_eq!(h.payloads(SLOW), ["q1", "q2"]);
    h.advance(Duration::from_millis(499));
    assert!(h.frames(SLOW).is_empty(), "not yet");
    h.advance(Duration::from_millis(1));
    assert_eq!(h.frames(SLOW), [Received::Dropped(DROPPED_EXPIRED, 1, 1)]);
    h.ack_all(SLOW);
    assert_eq!(h.payloads(SLOW), ["forever", "long"]);
    h.ack_all(SLOW);
    h.advance(Duration::from_secs(20));
    h.assert_store_is_empty();
}

#[test]
fn a_subscriber_without_extensions_is_not_told_but_the_drop_is_counted() {
    let mut h = Harness::with_config(ttl_config());
    h.hello_extensions(PUBLISHER, 0);
    h.hello_with_window(PLAIN, 1);
    h.subscribe(PLAIN, "db", None);
    h.discard(PLAIN);
    h.publish_ttl(PUBLISHER, "db", "a", 10);
    h.publish_ttl(PUBLISHER, "db", "b", 10);
    assert_eq!(h.payloads(PLAIN), ["a"]);
    h.advance(Duration::from_millis(10));
    assert!(h.frames(PLAIN).is_empty());
    assert_eq!(h.session(PLAIN).dropped.expired, 1);
}

#[test]
fn expired_group_messages_are_not_offered_again() {
    let mut h = Harness::with_config(ttl_config());
    h.hello_extensions(PUBLISHER, 0);
    h.hello_extensions(SLOW, 1);
    h.subscribe_group(SLOW, "jobs", None, "w");
    h.discard(SLOW);
    for i in 1..=3 {
        h.publish_ttl(PUBLISHER, "jobs", &format!("j{i}"), 100);
    }
    assert_eq!(h.payloads(SLOW), ["j1"]);
    h.advance(Duration::from_millis(100));
    h.ack_all(SLOW);
    assert!(h.payloads(SLOW).is_empty(), "the backlog's two expired");
    assert_eq!(h.stats().server.messages_expired, 2);
    h.assert_store_is_empty();
}

#[test]
fn a_ttl_publish_needs_extensions() {
    let mut h = Harness::with_config(ttl_config());
    h.hello(PUBLISHER);
    h.publish_ttl(PUBLISHER, "db", "x", 10);
    let frames = h.frames(PUBLISHER);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(matches!(
        frames[0],
        Received::Error {
            code: ErrorCode::MalformedFrame,
            fatal: true,
            ..
        }
    ));
}
