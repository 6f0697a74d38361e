//! STATS and the store: the introspection report, and no message left behind.

use super::harness::{test_config, Harness, Received, CONFLATING_QUEUE};
use crate::broker::{CloseReason, ConnId};
use crate::config::Config;
use crate::protocol::stats::SubscriptionStats;
use crate::protocol::{ErrorCode, Frame};

const PUBLISHER: ConnId = ConnId(1);
const SUBSCRIBER: ConnId = ConnId(2);

fn sub(queue: &str, event: Option<&str>) -> SubscriptionStats {
    SubscriptionStats {
        queue: queue.to_owned(),
        event: event.map(str::to_owned),
    }
}

#[test]
fn the_stats_reply_parses_and_shows_sessions_subscriptions_and_depths() {
    let mut h = Harness::new();
    let publisher = h.hello(PUBLISHER);
    let subscriber = h.hello_with_window(SUBSCRIBER, 2);
    h.subscribe(SUBSCRIBER, "db", Some("update"));
    h.subscribe(SUBSCRIBER, "db", None);
    for n in 0..5 {
        h.publish(PUBLISHER, "db", "update", &format!("{n:03}"));
    }
    h.discard(SUBSCRIBER);
    h.ack(SUBSCRIBER, 0, &[2]);
    h.drive();
    h.send(PUBLISHER, &Frame::Stats);
    let frames = h.control(PUBLISHER);
    let [Received::StatsReply(report)] = &frames[..] else {
        panic!("expected one STATS_REPLY, got {frames:?}");
    };

    let server = &report.server;
    assert_eq!((server.connections, server.sessions), (2, 2));
    assert_eq!(server.queues, 3, "two declared plus db");
    assert_eq!(server.messages_published, 5);
    // Seq 1 is still unacked, so the window (which spans from it) has no room for a third.
    assert_eq!((server.messages_delivered, server.messages_acked), (2, 1));
    assert_eq!((server.stored_messages, server.stored_bytes), (4, 12));

    assert_eq!(report.sessions.len(), 2);
    let p = &report.sessions[0];
    assert_eq!(p.session_id, publisher.session_id);
    assert_eq!(p.client_name, "client-1");
    assert_eq!(p.peer, "127.0.0.1:40001");
    assert_eq!(p.state, "connected");
    assert_eq!((p.published, p.last_publish_seq), (5, 5));
    assert!(p.subscriptions.is_empty());

    let s = &report.sessions[1];
    assert_eq!(s.session_id, subscriber.session_id);
    assert_eq!(
        s.subscriptions,
        [sub("db", Some("update")), sub("db", None)]
    );
    // Seq 1 in flight (2 acked; the window of 2 still spans from 1), 3 to 5 pending.
    assert_eq!(
        (s.queue_depth, s.queue_bytes),
        (4, 4 * (64 + crate::broker::memory::NODE_BYTES)),
        "real cost: 64 B buffer + node"
    );
    assert_eq!((s.in_flight, s.pending), (1, 3));
    assert_eq!((s.delivered, s.acked, s.last_delivery_seq), (2, 1, 2));

    let queues: Vec<_> = report
        .queues
        .iter()
        .map(|q| (q.name.as_str(), q.conflate, q.subscribers, q.published))
        .collect();
    assert_eq!(
        queues,
        [
            (CONFLATING_QUEUE, true, 0, 0),
            ("small", false, 0, 0),
            ("db", false, 1, 5)
        ]
    );
    assert_eq!(
        **report,
        h.stats(),
        "the reply is the report of that moment"
    );
}

#[test]
fn stats_before_hello_is_hello_required() {
    let mut h = Harness::new();
    h.connect(PUBLISHER);
    h.send(PUBLISHER, &Frame::Stats);
    let frames = h.frames(PUBLISHER);
    assert!(matches!(
        frames[0],
        Received::Error {
            code: ErrorCode::HelloRequired,
            ..
        }
    ));
}

#[test]
fn no_message_is_left_stored_after_acks_closes_and_disconnects() {
    let config = Config {
        max_queue_depth: 4,
        ..super::harness::test_config()
    };
    let mut h = Harness::with_config(config);
    let (acker, overflowing, leaver, bye, conflater) =
        (ConnId(2), ConnId(3), ConnId(4), ConnId(5), ConnId(6));
    h.hello(PUBLISHER);
    h.hello(acker);
    h.hello_with_window(overflowing, 1);
    h.hello_with_window(leaver, 1);
    h.hello(bye);
    h.hello_with_window(conflater, 1);
    for conn in [acker, overflowing, leaver, bye, conflater] {
        h.subscribe(conn, "db", None);
        h.subscribe(conn, CONFLATING_QUEUE, None);
    }
    h.subscribe(overflowing, "extra", None);
    // One turn: every session holds m0 m1 p1 k1 (p0 and k0 conflated away), depth 4.
    for n in 0..2 {
        h.publish(PUBLISHER, "db", "e", &format!("m{n}"));
        h.publish(PUBLISHER, CONFLATING_QUEUE, "price", &format!("p{n}"));
        h.publish_keyed(PUBLISHER, "db", "price", "k", &format!("k{n}"));
    }
    h.publish(PUBLISHER, "extra", "e", "one too many");
    h.drive();
    let server = h.stats().server;
    assert_eq!(server.closes.get("QUEUE_OVERFLOW"), Some(&1), "{server:?}");
    assert_eq!(
        server.messages_conflated,
        2 * 5,
        "p0 and k0 in each of 5 sessions"
    );
    assert_eq!(server.stored_messages, 4);
    h.ack_all(acker);
    h.send(bye, &Frame::Bye);
    h.disconnect(leaver, CloseReason::IoError);
    while h.session(conflater).queue_depth > 0 {
        h.drive();
        h.ack_all(conflater);
    }
    h.assert_store_is_empty();
    for conn in [PUBLISHER, acker, conflater] {
        h.disconnect(conn, CloseReason::PeerClosed);
    }
    h.drive();
    let server = h.stats().server;
    assert_eq!((server.sessions, server.connections), (0, 0));
    h.assert_store_is_empty();
}

// Issue #12: with 100,000 queues one STATS cost 293 ms of loop time and /metrics grew without
// bound.
#[test]
fn stats_and_metrics_list_a_bounded_number_of_queues_and_say_how_many_were_left_out() {
    let mut h = Harness::with_config(crate::config::Config {
        max_queues: 5_000,
        max_subscriptions: 5_000,
        ..test_config()
    });
    let conn = ConnId(1);
    h.hello(conn);
    for n in 0..3_000 {
        h.subscribe(conn, &format!("q{n}"), None);
    }
    h.discard(conn);
    // The STATS frame an admin (loopback anonymous) session sends.
    h.send(conn, &Frame::Stats);
    let frames = h.frames(conn);
    let [Received::StatsReply(report)] = &frames[..] else {
        panic!("{frames:?}");
    };
    assert_eq!(report.server.queues, 3_002);
    assert_eq!(report.queues.len(), 1_000);
    assert_eq!(report.queues_omitted, 2_002);
    let session = &report.sessions[0];
    assert_eq!(
        (session.subscriptions.len(), session.subscriptions_omitted),
        (100, 2_900)
    );
    let metrics = h.broker.metrics_report();
    let text = crate::prometheus::render(&metrics);
    let series = text
        .lines()
        .filter(|l| l.starts_with("weir_queue_subscribers{"))
        .count();
    assert_eq!(series, 1_001, "1,000 listed and one aggregate");
    assert!(text.contains("weir_queue_subscribers{queues=\"omitted\"} 2002\n"));
}
