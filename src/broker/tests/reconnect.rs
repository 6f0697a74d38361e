//! Tests for the Detached state and resume (protocol.md §Reconnection).

use std::time::Duration;

use super::harness::{reconnect_config, said_goodbye, Delivery, Harness, Received};
use crate::broker::{CloseReason, ConnId};
use crate::protocol::frame::{OUTCOME_LOST, OUTCOME_NEW, OUTCOME_RESUMED};
use crate::protocol::{ErrorCode, Frame, Hello, Resume, Welcome};

const PUBLISHER: ConnId = ConnId(1);
const SUBSCRIBER: ConnId = ConnId(2);
const SUBSCRIBER_AGAIN: ConnId = ConnId(3);

fn resume(welcome: &Welcome, last_delivery_seq: u64, first_resendable: u64) -> Hello<'static> {
    Hello {
        extensions: false,
        inflight_window: 3,
        client_name: b"",
        resume: Some(Resume {
            session_id: welcome.session_id,
            resume_token: welcome.resume_token,
            last_delivery_seq,
            first_resendable_publish_seq: first_resendable,
        }),
        auth: None,
    }
}

/// Sends a resuming HELLO; returns the WELCOME and the deliveries that follow it at once.
fn resume_on(h: &mut Harness, conn: ConnId, hello: Hello<'_>) -> (Welcome, Vec<Delivery>) {
    h.connect(conn);
    h.send(conn, &Frame::Hello(hello));
    let mut frames = h.frames(conn).into_iter();
    let Some(Received::Welcome(welcome)) = frames.next() else {
        panic!("WELCOME first");
    };
    let deliveries = frames
        .map(|frame| match frame {
            Received::Deliver(d) => d,
            other => panic!("only deliveries after WELCOME, got {other:?}"),
        })
        .collect();
    (welcome, deliveries)
}

/// A publisher and a subscriber of every event of `db`; five messages published, the first
/// three received by the subscriber.
fn subscriber_with_five(h: &mut Harness) -> Welcome {
    h.hello(PUBLISHER);
    let welcome = h.hello_with_window(SUBSCRIBER, 3);
    h.subscribe(SUBSCRIBER, "db", None);
    for n in 1..=5 {
        h.publish(PUBLISHER, "db", "e", &format!("m{n}"));
    }
    let seqs: Vec<u64> = h.deliveries(SUBSCRIBER).iter().map(|d| d.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    welcome
}

#[test]
fn a_resumed_session_gets_unreceived_in_flight_seqs_again_then_the_backlog() {
    let mut h = Harness::with_config(reconnect_config());
    let welcome = subscriber_with_five(&mut h);
    h.ack(SUBSCRIBER, 1, &[]);
    h.disconnect(SUBSCRIBER, CloseReason::PeerClosed);
    h.publish(PUBLISHER, "db", "e", "m6");
    assert_eq!(h.stats().sessions[1].state, "detached");

    // The client saw seq 2 but not 3.
    let (resumed, deliveries) = resume_on(&mut h, SUBSCRIBER_AGAIN, resume(&welcome, 2, 1));
    assert_eq!(resumed.outcome, OUTCOME_RESUMED);
    assert_eq!(resumed.session_id, welcome.session_id);
    let got: Vec<(u64, bool, String)> = deliveries
        .into_iter()
        .map(|d| (d.seq, d.redelivered, d.payload_str().to_owned()))
        .collect();
    // Seq 3 again (same seq, flagged); then the window (span 2..=4 after seq 1 was acked) has
    // room for one more new message.
    assert_eq!(got, [(3, true, "m3".into()), (4, false, "m4".into())]);
    h.ack(SUBSCRIBER_AGAIN, 4, &[]);
    let rest: Vec<_> = h.payloads(SUBSCRIBER_AGAIN);
    assert_eq!(rest, ["m5", "m6"]);
    let stats = h.stats();
    assert_eq!(stats.server.sessions_resumed, 1);
    assert_eq!(stats.sessions[1].redelivered, 1);
}

#[test]
fn a_resume_states_the_last_accepted_publish_and_duplicates_are_not_routed_twice() {
    let mut h = Harness::with_config(reconnect_config());
    let welcome = h.hello(PUBLISHER);
    h.hello(SUBSCRIBER);
    h.subscribe(SUBSCRIBER, "db", None);
    h.publish(PUBLISHER, "db", "e", "a");
    h.publish(PUBLISHER, "db", "e", "b");
    h.disconnect(PUBLISHER, CloseReason::IoError);
    let again = ConnId(9);
    h.connect(again);
    let resumed = h.handshake(again, resume(&welcome, 0, 1));
    assert_eq!(resumed.outcome, OUTCOME_RESUMED);
    assert_eq!(resumed.last_publish_seq, 2);
    // A client that resends what it was not sure of: seq 2 is a duplicate.
    h.publish_with_seq(again, 2, "db", "e", None, b"b");
    h.publish_with_seq(again, 3, "db", "e", None, b"c");
    assert_eq!(h.payloads(SUBSCRIBER), ["a", "b", "c"]);
    assert_eq!(h.stats().server.messages_duplicate, 1);
}

#[test]
fn a_client_back_after_the_keep_alive_is_told_session_expired() {
    let mut h = Harness::with_config(reconnect_config());
    let welcome = subscriber_with_five(&mut h);
    h.disconnect(SUBSCRIBER, CloseReason::PeerClosed);
    h.advance(Duration::from_secs(61));
    h.assert_store_is_empty();
    h.connect(SUBSCRIBER_AGAIN);
    let lost = h.handshake(SUBSCRIBER_AGAIN, resume(&welcome, 3, 1));
    assert_eq!(lost.outcome, OUTCOME_LOST);
    assert_eq!(lost.lost_reason, Some(ErrorCode::SessionExpired));
    // It held five: seqs 1 to 3 in flight (the client says it received them) and two never
    // sent. Missed: the two.
    assert_eq!(
        lost.missed,
        Some(2),
        "held 5, of which the client had received 3"
    );
    assert_ne!(lost.session_id, welcome.session_id, "a new session");
    let stats = h.stats();
    assert_eq!(stats.server.sessions_expired, 1);
    assert_eq!(stats.closed_sessions[0].reason, "SESSION_EXPIRED");
}

#[test]
fn overflow_while_detached_closes_the_session_and_the_client_learns_it_on_return() {
    let mut h = Harness::with_config(reconnect_config());
    let welcome = subscriber_with_five(&mut h);
    h.disconnect(SUBSCRIBER, CloseReason::PeerClosed);
    // Disconnected limit: 64 messages (connected: 32).
    for n in 0..59 {
        h.publish(PUBLISHER, "db", "e", &format!("x{n}"));
    }
    assert_eq!(
        h.stats().sessions.len(),
        2,
        "64 held: still within the detached limit"
    );
    h.publish(PUBLISHER, "db", "e", "one too many");
    assert_eq!(h.stats().sessions.len(), 1);
    h.assert_store_is_empty();
    h.connect(SUBSCRIBER_AGAIN);
    let lost = h.handshake(SUBSCRIBER_AGAIN, resume(&welcome, 3, 1));
    assert_eq!(lost.lost_reason, Some(ErrorCode::QueueOverflow));
}

#[test]
fn a_wrong_token_is_refused_like_an_unknown_session_and_the_session_is_untouched() {
    let mut h = Harness::with_config(reconnect_config());
    let welcome = subscriber_with_five(&mut h);
    let mut forged = welcome;
    forged.resume_token[0] ^= 1;
    h.connect(SUBSCRIBER_AGAIN);
    let lost = h.handshake(SUBSCRIBER_AGAIN, resume(&forged, 0, 1));
    assert_eq!(lost.lost_reason, Some(ErrorCode::SessionUnknown));
    assert_eq!(lost.missed, None);
    // The real owner is still connected and still served.
    h.ack(SUBSCRIBER, 3, &[]);
    assert_eq!(h.payloads(SUBSCRIBER), ["m4", "m5"]);
}

#[test]
fn resuming_a_live_session_takes_it_over_from_the_old_connection() {
    let mut h = Harness::with_config(reconnect_config());
    let welcome = subscriber_with_five(&mut h);
    let (resumed, deliveries) = resume_on(&mut h, SUBSCRIBER_AGAIN, resume(&welcome, 3, 1));
    assert_eq!(resumed.outcome, OUTCOME_RESUMED);
    assert!(
        deliveries.is_empty(),
        "the window (3) is full with seqs 1 to 3"
    );
    let old = h.frames(SUBSCRIBER);
    assert!(
        old.ends_with(&[
            Received::Goodbye(ErrorCode::TakenOver),
            Received::Closed(CloseReason::Goodbye(ErrorCode::TakenOver))
        ]),
        "{old:?}"
    );
    h.ack(SUBSCRIBER_AGAIN, 3, &[]);
    assert_eq!(h.payloads(SUBSCRIBER_AGAIN), ["m4", "m5"]);
    let stats = h.stats();
    assert_eq!(stats.server.sessions_taken_over, 1);
    assert_eq!(stats.sessions[1].state, "connected");
}

#[test]
fn a_client_that_cannot_resend_far_enough_back_gets_resend_gap() {
    let mut h = Harness::with_config(reconnect_config());
    let welcome = h.hello(PUBLISHER);
    h.publish(PUBLISHER, "db", "e", "a");
    h.disconnect(PUBLISHER, CloseReason::PeerClosed);
    h.connect(ConnId(9));
    // The server accepted seq 1; the client can only resend from 4: 2 and 3 are lost.
    let lost = h.handshake(ConnId(9), resume(&welcome, 0, 4));
    assert_eq!(lost.lost_reason, Some(ErrorCode::ResendGap));
    assert_eq!(lost.missed, Some(2));
}

#[test]
fn a_resume_claiming_unsent_deliveries_is_resume_invalid() {
    let mut h = Harness::with_config(reconnect_config());
    let welcome = subscriber_with_five(&mut h);
    h.disconnect(SUBSCRIBER, CloseReason::PeerClosed);
    h.connect(SUBSCRIBER_AGAIN);
    let lost = h.handshake(SUBSCRIBER_AGAIN, resume(&welcome, 9, 1));
    assert_eq!(lost.lost_reason, Some(ErrorCode::ResumeInvalid));
    h.assert_store_is_empty();
}

#[test]
fn a_heartbeat_timeout_detaches_instead_of_ending_the_session() {
    let mut h = Harness::with_config(reconnect_config());
    let welcome = subscriber_with_five(&mut h);
    h.advance(Duration::from_secs(31));
    let frames = h.frames(SUBSCRIBER);
    assert!(frames.contains(&Received::Goodbye(ErrorCode::HeartbeatTimeout)));
    assert_eq!(h.stats().sessions[1].state, "detached");
    let (resumed, deliveries) = resume_on(&mut h, SUBSCRIBER_AGAIN, resume(&welcome, 3, 1));
    assert_eq!(resumed.outcome, OUTCOME_RESUMED);
    assert!(
        deliveries.is_empty(),
        "seqs 1 to 3 were received; the window is full"
    );
}

#[test]
fn bye_ends_the_session_for_good() {
    let mut h = Harness::with_config(reconnect_config());
    let welcome = h.hello(SUBSCRIBER);
    h.send(SUBSCRIBER, &crate::protocol::Frame::Bye);
    h.drive();
    h.connect(SUBSCRIBER_AGAIN);
    let lost = h.handshake(SUBSCRIBER_AGAIN, resume(&welcome, 0, 1));
    assert_eq!(lost.lost_reason, Some(ErrorCode::ClientBye));
}

/// Regression (issue 3; found while writing the model test, which now covers it): a refused
/// resume (RESEND_GAP or RESUME_INVALID) ends the session, but when that session was still
/// attached to a live connection, the connection stayed open with no session at all: its next
/// frame got ERROR(HELLO_REQUIRED) and its next heartbeat check ERROR(HANDSHAKE_TIMEOUT). It is
/// now told GOODBYE with the reason the session ended, and closed.
#[test]
fn a_refused_resume_of_a_live_session_also_closes_the_connection_it_was_on() {
    // (last_delivery_seq, first_resendable_publish_seq) against seqs 1 to 3 sent, 0 published.
    for (received, resendable, reason) in [
        (9, 1, ErrorCode::ResumeInvalid),
        (3, 9, ErrorCode::ResendGap),
    ] {
        let mut h = Harness::with_config(reconnect_config());
        let welcome = subscriber_with_five(&mut h);
        h.connect(SUBSCRIBER_AGAIN);
        let lost = h.handshake(SUBSCRIBER_AGAIN, resume(&welcome, received, resendable));
        assert_eq!(lost.lost_reason, Some(reason));
        assert_eq!(h.control(SUBSCRIBER), said_goodbye(reason));
        let stats = h.stats();
        assert_eq!((stats.server.connections, stats.server.sessions), (2, 2));
        assert_eq!(stats.closed_sessions[0].reason, reason.name());
    }
}

#[test]
fn a_hello_past_max_sessions_gets_server_busy_and_detached_sessions_count() {
    let mut h = Harness::with_config(crate::config::Config {
        max_sessions: 2,
        ..reconnect_config()
    });
    let first = h.hello(PUBLISHER);
    h.hello(SUBSCRIBER);
    h.disconnect(SUBSCRIBER, CloseReason::PeerClosed);
    // From another address: nothing of its own to evict.
    h.connect_from(ConnId(7), [10, 0, 0, 7]);
    h.send(
        ConnId(7),
        &Frame::Hello(Hello {
            extensions: false,
            inflight_window: 0,
            client_name: b"third",
            resume: None,
            auth: None,
        }),
    );
    let frames = h.frames(ConnId(7));
    assert!(
        frames.iter().any(|f| matches!(
            f,
            Received::Error {
                code: ErrorCode::ServerBusy,
                fatal: true,
                ..
            }
        )),
        "{frames:?}"
    );
    // A resume needs no new session and still works.
    h.disconnect(PUBLISHER, CloseReason::PeerClosed);
    let (resumed, _) = resume_on(&mut h, ConnId(8), resume(&first, 0, 1));
    assert_eq!(resumed.outcome, OUTCOME_RESUMED);
}

/// Issue 13: WELCOME said 2,001 and STATS 2,004 for the same session. `missed` is defined
/// once (protocol.md §LOST) and STATS_REPLY shows the number the LOST answer carried.
#[test]
fn lost_missed_and_stats_missed_are_the_same_number() {
    let mut h = Harness::with_config(reconnect_config());
    let welcome = subscriber_with_five(&mut h);
    h.disconnect(SUBSCRIBER, CloseReason::PeerClosed);
    // Before any resume: what a client that received everything sent would miss (the two
    // never sent).
    h.advance(Duration::from_secs(61));
    assert_eq!(h.stats().closed_sessions[0].missed, 2);
    h.connect(SUBSCRIBER_AGAIN);
    // The client received only seq 1: seqs 2 and 3 in flight and the two unsent are missed.
    let lost = h.handshake(SUBSCRIBER_AGAIN, resume(&welcome, 1, 1));
    assert_eq!(lost.missed, Some(4));
    assert_eq!(h.stats().closed_sessions[0].missed, 4, "as WELCOME said");
}

/// Issue 13: `missed` was a lower bound past 64 unacked deliveries; it is exact for any
/// number of them as long as they form few runs.
#[test]
fn lost_missed_is_exact_with_many_deliveries_in_flight() {
    let mut h = Harness::with_config(crate::config::Config {
        in_flight_window: 1_000,
        max_queue_depth: 1_000,
        max_queue_bytes: 1_000_000,
        max_queue_depth_detached: 1_000,
        max_queue_bytes_detached: 1_000_000,
        ..reconnect_config()
    });
    h.hello(PUBLISHER);
    let welcome = h.hello(SUBSCRIBER);
    h.subscribe(SUBSCRIBER, "db", None);
    for n in 0..300 {
        h.publish(PUBLISHER, "db", "e", &format!("m{n}"));
    }
    assert_eq!(h.deliveries(SUBSCRIBER).len(), 300);
    // Acked: up to 10, and 20 individually.
    h.ack(SUBSCRIBER, 10, &[20]);
    h.disconnect(SUBSCRIBER, CloseReason::PeerClosed);
    h.advance(Duration::from_secs(61));
    h.connect(SUBSCRIBER_AGAIN);
    // Received up to 250: unacked seqs 251..=300 missed.
    let lost = h.handshake(SUBSCRIBER_AGAIN, resume(&welcome, 250, 1));
    assert_eq!(lost.missed, Some(50));
    assert_eq!(h.stats().closed_sessions[0].missed, 50);
}

/// Issue 13: the message whose arrival overflowed the session is missed too.
#[test]
fn lost_missed_counts_the_message_that_overflowed_the_session() {
    let mut h = Harness::with_config(reconnect_config());
    h.hello(PUBLISHER);
    let welcome = h.hello(SUBSCRIBER);
    h.subscribe(SUBSCRIBER, "db", None);
    h.disconnect(SUBSCRIBER, CloseReason::PeerClosed);
    let limit = reconnect_config().max_queue_depth_detached;
    for n in 0..=limit {
        h.publish(PUBLISHER, "db", "e", &format!("{n}"));
    }
    assert_eq!(h.stats().closed_sessions[0].reason, "QUEUE_OVERFLOW");
    h.connect(SUBSCRIBER_AGAIN);
    let lost = h.handshake(SUBSCRIBER_AGAIN, resume(&welcome, 0, 1));
    assert_eq!(lost.lost_reason, Some(ErrorCode::QueueOverflow));
    assert_eq!(
        lost.missed,
        Some(u64::from(limit) + 1),
        "the held ones and the one too many"
    );
}

// Issue #12: connect/HELLO/SUBSCRIBE/drop cycles filled max_sessions with detached sessions.
#[test]
fn at_max_sessions_the_newcomers_own_detached_session_is_evicted_and_its_owner_told() {
    let mut h = Harness::with_config(crate::config::Config {
        max_sessions: 2,
        ..reconnect_config()
    });
    h.connect_from(PUBLISHER, [10, 0, 0, 1]);
    h.handshake(PUBLISHER, harness_hello(b"other"));
    let gone = h.hello(SUBSCRIBER);
    h.disconnect(SUBSCRIBER, CloseReason::PeerClosed);
    // Same address as the detached one: it makes room.
    h.connect(ConnId(7));
    let welcome = h.handshake(ConnId(7), harness_hello(b"third"));
    assert_eq!(welcome.outcome, OUTCOME_NEW);
    assert_eq!(h.stats().server.sessions_evicted, 1);
    // (The lost resume opens a new session: let the third's detached one make room.)
    h.disconnect(ConnId(7), CloseReason::PeerClosed);
    let (lost, _) = resume_on(&mut h, ConnId(8), resume(&gone, 0, 1));
    assert_eq!(lost.outcome, OUTCOME_LOST);
    assert_eq!(lost.lost_reason, Some(ErrorCode::SessionEvicted));
}

// Issue #12: one address may not hold every session; another address still gets one.
#[test]
fn one_address_at_its_session_limit_evicts_its_own_and_leaves_room_for_others() {
    let mut h = Harness::with_config(crate::config::Config {
        max_sessions: 10,
        max_sessions_per_address: 3,
        ..reconnect_config()
    });
    let mut flood = 0;
    for n in 0..50 {
        let conn = ConnId(100 + n);
        h.connect_from(conn, [10, 0, 0, 1]);
        h.send(conn, &Frame::Hello(harness_hello(b"flood")));
        if h.frames(conn)
            .iter()
            .any(|f| matches!(f, Received::Welcome(_)))
        {
            flood += 1;
        }
        h.disconnect(conn, CloseReason::PeerClosed);
    }
    assert_eq!(
        flood, 50,
        "each cycle evicts the flood's own oldest detached session"
    );
    let stats = h.stats();
    assert_eq!(
        stats.server.sessions, 3,
        "the flood holds at most its limit"
    );
    assert_eq!(stats.server.sessions_evicted, 47);
    for n in 0..7 {
        let conn = ConnId(10 + n);
        h.connect_from(conn, [10, 0, 1, n as u8]);
        let welcome = h.handshake(conn, harness_hello(b"second"));
        assert_eq!(welcome.outcome, OUTCOME_NEW, "room for another client");
    }
    // Attached sessions are never evicted: at its limit with none detached, LIMIT_EXCEEDED.
    for conn in [ConnId(200), ConnId(201), ConnId(202)] {
        h.connect_from(conn, [10, 0, 0, 1]);
        h.send(conn, &Frame::Hello(harness_hello(b"live")));
    }
    h.connect_from(ConnId(203), [10, 0, 0, 1]);
    h.send(ConnId(203), &Frame::Hello(harness_hello(b"one more")));
    assert_eq!(
        h.frames(ConnId(203))[..1],
        [Received::Error {
            code: ErrorCode::LimitExceeded,
            fatal: true,
            ref_seq: 0
        }]
    );
}

fn harness_hello(name: &'static [u8]) -> Hello<'static> {
    Hello {
        extensions: false,
        inflight_window: 0,
        client_name: name,
        resume: None,
        auth: None,
    }
}
