//! Pattern subscriptions (issue #14): `*` and `>` levels, matching queues created later, one
//! delivery per message per session, permissions per queue, unsubscribe, validation, stats.

use super::harness::{failed_with, test_config, Harness};
use crate::broker::{CloseReason, ConnId};
use crate::config::{Config, UserConfig};
use crate::credentials::token_hash;
use crate::protocol::frame::{Auth, AuthMethod, Hello};
use crate::protocol::ErrorCode;

const PUBLISHER: ConnId = ConnId(1);
const WATCHER: ConnId = ConnId(2);
const OTHER: ConnId = ConnId(3);

fn pattern_config() -> Config {
    Config {
        max_queues: 32,
        max_subscriptions: 8,
        ..test_config()
    }
}

fn watched(pattern: &str) -> Harness {
    let mut h = Harness::with_config(pattern_config());
    h.hello(PUBLISHER);
    h.hello_extensions(WATCHER, 0);
    h.subscribe_pattern(WATCHER, pattern, None);
    h.discard(WATCHER);
    h
}

#[test]
fn a_pattern_subscriber_gets_matching_queues_including_ones_created_after_it() {
    let mut h = Harness::with_config(pattern_config());
    h.hello(PUBLISHER);
    h.publish(PUBLISHER, "orders.eu", "new", "before");
    h.hello_extensions(WATCHER, 0);
    h.subscribe_pattern(WATCHER, "orders.>", None);
    h.discard(WATCHER);
    h.publish(PUBLISHER, "orders.eu", "new", "eu");
    h.publish(PUBLISHER, "orders.us.ny", "new", "ny");
    h.publish(PUBLISHER, "orders", "new", "top level is not matched");
    h.publish(PUBLISHER, "ordersx.eu", "new", "another tree");
    h.publish(PUBLISHER, "audit.orders.eu", "new", "not a prefix match");
    let got: Vec<(String, String)> = h
        .deliveries(WATCHER)
        .into_iter()
        .map(|d| (d.queue.clone(), d.payload_str().to_owned()))
        .collect();
    assert_eq!(
        got,
        [
            ("orders.eu".to_owned(), "eu".to_owned()),
            ("orders.us.ny".to_owned(), "ny".to_owned())
        ],
        "the queue created after the SUBSCRIBE is matched too"
    );
    h.ack_all(WATCHER);
    h.assert_store_is_empty();
}

#[test]
fn a_star_matches_one_level_only() {
    let mut h = watched("orders.*.new");
    for queue in [
        "orders.eu.new",
        "orders.eu.fr.new",
        "orders.new",
        "orders.us.new",
    ] {
        h.publish(PUBLISHER, queue, "e", queue);
    }
    assert_eq!(h.payloads(WATCHER), ["orders.eu.new", "orders.us.new"]);
}

#[test]
fn a_session_gets_each_message_once_however_many_subscriptions_match() {
    let mut h = watched("orders.>");
    h.subscribe_pattern(WATCHER, "orders.*", None);
    h.subscribe(WATCHER, "orders.eu", None);
    h.subscribe_pattern(WATCHER, "*.eu", Some("new"));
    h.discard(WATCHER);
    h.publish(PUBLISHER, "orders.eu", "new", "one");
    h.publish(PUBLISHER, "orders.us", "new", "two");
    assert_eq!(h.payloads(WATCHER), ["one", "two"]);
    // Take away all but one: still exactly one copy.
    h.unsubscribe(WATCHER, "orders.eu", None);
    h.unsubscribe_pattern(WATCHER, "orders.*", None);
    h.discard(WATCHER);
    h.publish(PUBLISHER, "orders.eu", "new", "three");
    assert_eq!(h.payloads(WATCHER), ["three"]);
    h.ack_all(WATCHER);
    h.assert_store_is_empty();
}

#[test]
fn unsubscribing_the_pattern_stops_it_and_keeps_a_literal_subscription() {
    let mut h = watched("orders.>");
    h.subscribe(WATCHER, "orders.eu", None);
    h.discard(WATCHER);
    h.unsubscribe_pattern(WATCHER, "orders.>", None);
    h.discard(WATCHER);
    h.publish(PUBLISHER, "orders.eu", "e", "literal");
    h.publish(PUBLISHER, "orders.us", "e", "gone");
    assert_eq!(h.payloads(WATCHER), ["literal"]);
    let stats = h.session(WATCHER);
    assert!(stats.patterns.is_empty());
    assert_eq!(stats.subscriptions.len(), 1);
}

#[test]
fn a_pattern_with_an_event_filter_gets_only_that_event() {
    let mut h = Harness::with_config(pattern_config());
    h.hello(PUBLISHER);
    h.hello_extensions(WATCHER, 0);
    h.subscribe_pattern(WATCHER, "orders.>", Some("new"));
    h.discard(WATCHER);
    h.publish(PUBLISHER, "orders.eu", "new", "yes");
    h.publish(PUBLISHER, "orders.eu", "cancel", "no");
    assert_eq!(h.payloads(WATCHER), ["yes"]);
}

#[test]
fn wildcard_characters_are_literal_without_the_pattern_flag() {
    let mut h = Harness::with_config(pattern_config());
    h.hello(PUBLISHER);
    h.hello(WATCHER);
    h.subscribe(WATCHER, "orders.*", None);
    h.discard(WATCHER);
    h.publish(PUBLISHER, "orders.eu", "e", "not for it");
    h.publish(PUBLISHER, "orders.*", "e", "literal star");
    assert_eq!(h.payloads(WATCHER), ["literal star"]);
}

#[test]
fn malformed_patterns_are_refused_with_invalid_name() {
    for bad in ["orders..eu", "orders.>.eu", "ord*", "orders."] {
        let mut h = Harness::with_config(pattern_config());
        h.hello_extensions(WATCHER, 0);
        h.subscribe_pattern(WATCHER, bad, None);
        assert_eq!(
            h.frames(WATCHER),
            failed_with(ErrorCode::InvalidName),
            "{bad}"
        );
    }
}

#[test]
fn a_pattern_needs_extensions_and_no_group() {
    let mut h = Harness::with_config(pattern_config());
    h.hello(WATCHER);
    h.subscribe_pattern(WATCHER, "orders.>", None);
    assert_eq!(h.frames(WATCHER), failed_with(ErrorCode::MalformedFrame));
}

#[test]
fn a_pattern_counts_once_against_max_subscriptions() {
    // The queues exist before the pattern (declared: a publish to a name nobody wants
    // creates no queue, issue 12).
    let mut config = Config {
        max_subscriptions: 2,
        ..pattern_config()
    };
    for queue in ["a.1", "a.2", "a.3"] {
        config.queues.push(crate::config::QueueConfig::new(queue));
    }
    let mut h = Harness::with_config(config);
    h.hello(PUBLISHER);
    h.hello_extensions(WATCHER, 0);
    h.subscribe_pattern(WATCHER, "a.*", None);
    h.subscribe(WATCHER, "b", None);
    h.discard(WATCHER);
    assert_eq!(h.session(WATCHER).patterns[0].queues, 3);
    h.subscribe_pattern(WATCHER, "c.*", None);
    assert_eq!(h.frames(WATCHER), failed_with(ErrorCode::LimitExceeded));
}

#[test]
fn stats_list_patterns_and_queues_count_pattern_subscribers() {
    let mut h = watched("orders.>");
    h.publish(PUBLISHER, "orders.eu", "e", "x");
    h.publish(PUBLISHER, "orders.us", "e", "x");
    let session = h.session(WATCHER);
    assert_eq!(session.patterns.len(), 1);
    assert_eq!(session.patterns[0].pattern, "orders.>");
    assert_eq!(session.patterns[0].event, None);
    assert_eq!(session.patterns[0].queues, 2);
    assert!(
        session.subscriptions.is_empty(),
        "only literal ones are listed"
    );
    let stats = h.stats();
    let eu = stats.queues.iter().find(|q| q.name == "orders.eu").unwrap();
    assert_eq!(eu.subscribers, 1);
}

#[test]
fn an_ended_pattern_session_leaves_no_routes_behind() {
    let mut h = watched("orders.>");
    h.publish(PUBLISHER, "orders.eu", "e", "x");
    h.disconnect(WATCHER, CloseReason::PeerClosed);
    h.hello_extensions(OTHER, 0);
    h.subscribe_pattern(OTHER, "orders.*", None);
    h.discard(OTHER);
    h.publish(PUBLISHER, "orders.us", "e", "new queue after the end");
    h.publish(PUBLISHER, "orders.eu", "e", "old queue");
    assert_eq!(h.payloads(OTHER).len(), 2);
    h.ack_all(OTHER);
    let stats = h.stats();
    assert!(stats.queues.iter().all(|q| q.subscribers <= 1));
    h.assert_store_is_empty();
}

/// A token user who may subscribe to `orders.eu*` only.
fn permission_config() -> Config {
    Config {
        users: vec![UserConfig {
            name: "eu".to_owned(),
            password_hash: None,
            token_hash: Some(token_hash(b"eu-token")),
            publish: vec![],
            subscribe: vec!["orders.eu*".to_owned()],
            admin: false,
        }],
        ..pattern_config()
    }
}

#[test]
fn a_pattern_matches_only_queues_the_identity_may_subscribe_to() {
    let mut h = Harness::with_config(permission_config());
    h.hello(PUBLISHER);
    h.publish(PUBLISHER, "orders.eu", "e", "x");
    h.publish(PUBLISHER, "orders.us", "e", "x");
    h.connect(WATCHER);
    h.handshake(
        WATCHER,
        Hello {
            extensions: true,
            inflight_window: 0,
            client_name: b"eu",
            resume: None,
            auth: Some(Auth {
                method: AuthMethod::Token,
                user: b"",
                secret: b"eu-token",
            }),
        },
    );
    h.subscribe_pattern(WATCHER, "orders.>", None);
    h.discard(WATCHER);
    h.publish(PUBLISHER, "orders.eu", "e", "eu");
    h.publish(PUBLISHER, "orders.us", "e", "us: not allowed");
    h.publish(PUBLISHER, "orders.eu2", "e", "eu2: created later, allowed");
    h.publish(
        PUBLISHER,
        "orders.uk",
        "e",
        "uk: created later, not allowed",
    );
    assert_eq!(h.payloads(WATCHER), ["eu", "eu2: created later, allowed"]);
    assert_eq!(h.session(WATCHER).patterns[0].queues, 2);
}
