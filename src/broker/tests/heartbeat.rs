//! Heartbeats: PING after an interval of sending nothing or of receiving nothing,
//! GOODBYE(HEARTBEAT_TIMEOUT) after a timeout of receiving nothing. Time moves only through
//! the harness clock.

use std::time::Duration;

use super::harness::{said_goodbye, test_config, Harness, Received};
use crate::broker::ConnId;
use crate::config::Config;
use crate::protocol::{ErrorCode, Frame};

const CLIENT: ConnId = ConnId(1);
const PUBLISHER: ConnId = ConnId(2);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn interval() -> Duration {
    test_config().heartbeat_interval()
}

fn timeout() -> Duration {
    test_config().heartbeat_timeout()
}

/// Wakes up at every deadline the broker asks for up to `at` (time since the harness started),
/// flushing after each as the loop does, then at `at` itself. Frames stay unread.
fn run_until(h: &mut Harness, at: Duration) {
    let target = h.instant(at);
    while let Some(deadline) = h.broker.poll_timeout() {
        if deadline > target {
            break;
        }
        h.advance(deadline.saturating_duration_since(h.now));
        h.drive();
    }
    h.advance_to(at);
    h.drive();
}

#[test]
fn the_server_pings_a_connection_it_has_sent_nothing_on_for_an_interval() {
    let mut h = Harness::new();
    h.hello(CLIENT); // WELCOME went out at t = 0.
    run_until(&mut h, interval() - ms(1));
    assert_eq!(h.frames(CLIENT), []);
    run_until(&mut h, interval());
    assert_eq!(h.frames(CLIENT), [Received::Ping(1)]);
    run_until(&mut h, interval() * 2 - ms(1));
    assert_eq!(h.frames(CLIENT), []);
    run_until(&mut h, interval() * 2);
    assert_eq!(
        h.frames(CLIENT),
        [Received::Ping(2)],
        "a new nonce each time"
    );
}

/// CLIENT subscribed to "db" and, at 6 s, received one message from PUBLISHER.
fn delivered_to_client_at_6s() -> Harness {
    let mut h = Harness::new();
    h.hello(CLIENT);
    h.hello(PUBLISHER);
    h.subscribe(CLIENT, "db", None);
    h.discard(CLIENT);
    run_until(&mut h, ms(6_000));
    h.publish(PUBLISHER, "db", "e", "x");
    assert_eq!(h.payloads(CLIENT), ["x"]);
    h
}

/// Regression: HELLO armed a heartbeat check while the handshake timer entry, firing later,
/// armed a second chain of checks. Each chain cleared the other's "sent something" flag, so a
/// PING went out after as little as half an interval of silence (here at 15 s, 9 s after the
/// DELIVER).
#[test]
fn anything_sent_postpones_the_ping() {
    let mut h = delivered_to_client_at_6s();
    // The client acks at once: both directions were active at 6 s.
    h.ack(CLIENT, 1, &[]);
    run_until(&mut h, ms(6_000) + interval() - ms(1));
    assert_eq!(h.frames(CLIENT), []);
    run_until(&mut h, ms(6_000) + interval());
    assert_eq!(h.frames(CLIENT), [Received::Ping(1)]);
}

/// A client that only receives (the server keeps sending) still gets a PING an interval after
/// it last sent anything, so it has something to answer before the heartbeat timeout.
#[test]
fn a_client_that_only_receives_is_pinged_after_an_interval_of_its_own_silence() {
    let mut h = delivered_to_client_at_6s();
    run_until(&mut h, interval() - ms(1));
    assert_eq!(h.frames(CLIENT), []);
    run_until(&mut h, interval());
    assert_eq!(h.frames(CLIENT), [Received::Ping(1)]);
}

/// Issue 13: protocol.md once said both "after sending nothing" and "either direction idle".
/// The rule is the second: a client that receives a message every second but sends nothing
/// is PINGed an interval after it last sent, and by answering it stays connected.
#[test]
fn a_client_receiving_steadily_is_still_pinged_an_interval_after_its_last_frame() {
    let mut h = Harness::new();
    h.hello(CLIENT);
    h.hello(PUBLISHER);
    h.subscribe(CLIENT, "db", None);
    h.discard(CLIENT);
    let mut pings = Vec::new();
    for second in 1..=25 {
        run_until(&mut h, ms(second * 1_000));
        h.send(PUBLISHER, &Frame::Pong(0)); // the publisher is not what is tested
        h.publish(PUBLISHER, "db", "e", "x");
        for frame in h.frames(CLIENT) {
            if let Received::Ping(nonce) = frame {
                pings.push((second, nonce));
            }
        }
    }
    // Its SUBSCRIBE at 0 s was its last frame: PINGs at 10 s and 20 s, though the server
    // sent it something every second.
    assert_eq!(pings, [(10, 1), (20, 2)]);
    h.send(CLIENT, &Frame::Pong(2));
    run_until(&mut h, ms(25_000) + timeout() - ms(1));
    assert_eq!(h.stats().server.heartbeat_timeouts, 0);
}

#[test]
fn a_client_that_sends_nothing_is_closed_with_heartbeat_timeout() {
    let mut h = Harness::new();
    h.hello(CLIENT);
    run_until(&mut h, timeout() - ms(1));
    let frames = h.frames(CLIENT);
    assert!(
        frames.iter().all(|f| matches!(f, Received::Ping(_))),
        "{frames:?}"
    );
    run_until(&mut h, timeout());
    assert_eq!(h.frames(CLIENT), said_goodbye(ErrorCode::HeartbeatTimeout));
    assert_eq!(h.stats().server.closes.get("HEARTBEAT_TIMEOUT"), Some(&1));
}

#[test]
fn the_timeout_counts_from_the_last_frame_received() {
    let mut h = Harness::new();
    h.hello(CLIENT);
    run_until(&mut h, ms(12_345));
    h.send(CLIENT, &Frame::Pong(0));
    run_until(&mut h, ms(12_345) + timeout() - ms(1));
    assert!(h
        .control(CLIENT)
        .iter()
        .all(|f| matches!(f, Received::Ping(_))));
    run_until(&mut h, ms(12_345) + timeout());
    assert_eq!(h.control(CLIENT), said_goodbye(ErrorCode::HeartbeatTimeout));
}

#[test]
fn a_client_that_keeps_sending_is_not_closed() {
    let mut h = Harness::new();
    h.hello(CLIENT);
    for n in 1..=40 {
        run_until(&mut h, ms(n * 5_000));
        h.send(CLIENT, &Frame::Ping(n));
    }
    let frames = h.frames(CLIENT);
    assert!(
        !frames.iter().any(|f| matches!(f, Received::Goodbye(_))),
        "{frames:?}"
    );
    assert_eq!(h.stats().server.sessions, 1);
}

/// Answers every PING the client got with its PONG; returns how many it answered.
fn answer_pings(h: &mut Harness, conn: ConnId) -> usize {
    let frames = h.frames(conn);
    let mut answered = 0;
    for frame in frames {
        match frame {
            Received::Ping(nonce) => {
                h.send(conn, &Frame::Pong(nonce));
                answered += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    answered
}

fn a_client_that_only_answers_pings_stays_connected(config: Config) {
    let horizon = config.heartbeat_timeout() * 10;
    let mut h = Harness::with_config(config);
    h.hello(CLIENT);
    let mut pings = 0;
    while h.elapsed() < horizon {
        let deadline = h
            .broker
            .poll_timeout()
            .expect("a heartbeat timer is always armed");
        h.advance(deadline - h.now);
        pings += answer_pings(&mut h, CLIENT);
    }
    assert!(pings >= 9, "pinged {pings} times");
    assert_eq!(h.stats().server.sessions, 1);
}

#[test]
fn a_client_that_only_answers_pings_stays_connected_with_the_defaults() {
    a_client_that_only_answers_pings_stays_connected(test_config());
}

/// Regression: the server used to check for silence once per interval and ping only if nothing
/// was sent since the previous check, so a PING could come up to two intervals after the last
/// send; with `heartbeat_timeout_ms` under two intervals a client that answered every PING was
/// closed with HEARTBEAT_TIMEOUT. PINGs are now due exactly an interval after the last send.
#[test]
fn a_client_that_only_answers_pings_stays_connected_when_the_timeout_is_under_two_intervals() {
    a_client_that_only_answers_pings_stays_connected(Config {
        heartbeat_interval_ms: 10_000,
        heartbeat_timeout_ms: 15_000,
        ..test_config()
    });
}

/// Regression (fixed in 59bb048, "fix heartbeat start"): the first heartbeat check used to wait
/// for the handshake deadline, so a handshake timeout longer than the heartbeat timeout closed a
/// passive client before it was ever pinged.
#[test]
fn a_client_that_only_answers_pings_stays_connected_when_the_handshake_timeout_is_long() {
    a_client_that_only_answers_pings_stays_connected(Config {
        handshake_timeout_ms: 60_000,
        heartbeat_interval_ms: 10_000,
        heartbeat_timeout_ms: 30_000,
        ..test_config()
    });
}

/// Regression: see `anything_sent_postpones_the_ping`; two chains also meant twice the timer
/// work for every connection for its whole life.
#[test]
fn a_quiet_session_wakes_the_loop_once_per_interval() {
    let mut h = Harness::new();
    h.hello(CLIENT);
    let mut wakeups = 0;
    while h.elapsed() < interval() * 10 {
        let deadline = h.broker.poll_timeout().expect("a heartbeat timer is armed");
        h.advance(deadline - h.now);
        assert_eq!(
            answer_pings(&mut h, CLIENT),
            usize::from(h.elapsed() >= interval())
        );
        wakeups += 1;
    }
    // One per PING, plus the handshake entry that fires once and is skipped as stale.
    assert_eq!(wakeups, 10 + 1);
}
