//! Resumes that fail (issue 3): the client is told why and how much it missed, never left to
//! guess from silence, and carries on in a new session with its subscriptions made again.

use weir::client::{ClientError, Event, ReconnectingClient};
use weir::protocol::codec::encode_hello;
use weir::protocol::frame::OUTCOME_LOST;
use weir::protocol::stats::StatsReport;
use weir::protocol::{ErrorCode, Hello, Op, Resume};
use weir::Config;

use crate::chaos_proxy::{ChaosConfig, ChaosProxy};
use crate::common::{plain, publish_all, reconnecting, RawConn, TestServer};

fn state_of(stats: &StatsReport, session_id: u64) -> Option<&str> {
    stats
        .sessions
        .iter()
        .find(|s| s.session_id == session_id)
        .map(|s| s.state.as_str())
}

fn closed_because(stats: &StatsReport, session_id: u64, reason: &str) -> bool {
    stats
        .closed_sessions
        .iter()
        .any(|s| s.session_id == session_id && s.reason == reason)
}

/// Events up to and including the first LOST; returns the payloads delivered before it and
/// the LOST event.
fn events_until_lost(client: &mut ReconnectingClient) -> (Vec<Vec<u8>>, Event) {
    let mut before = Vec::new();
    loop {
        match client.recv().expect("an event, not silence") {
            Event::Deliver(delivery) => before.push(delivery.payload),
            lost @ Event::Lost { .. } => return (before, lost),
            other => panic!("expected LOST, got {other:?}"),
        }
    }
}

fn expect_delivery(client: &mut ReconnectingClient, payload: &[u8]) {
    match client.recv() {
        Ok(Event::Deliver(delivery)) => assert_eq!(delivery.payload, payload),
        other => panic!("expected a delivery of {payload:?}, got {other:?}"),
    }
}

#[test]
fn a_client_back_after_the_keep_alive_is_told_lost_session_expired() {
    let server = TestServer::with_config(Config {
        reconnect_keep_alive_ms: 200,
        ..Config::default()
    });
    let proxy = ChaosProxy::start(server.addr, ChaosConfig::PASS_THROUGH, 1);
    let mut late = reconnecting(proxy.addr, "late");
    late.subscribe_all("db").unwrap();
    let old = late.session_id();
    let mut publisher = plain(server.addr, "publisher");
    publish_all(&mut publisher, "db", &["m0", "m1", "m2"]);
    // Held by the session (sent or not), never acked: they are what the client will miss.
    server.wait_for("three messages held", |s| {
        s.sessions
            .iter()
            .any(|s| s.session_id == old && s.queue_depth == 3)
    });

    proxy.cut_all();
    server.wait_for("the session to expire", |s| {
        s.server.sessions_expired == 1 && closed_because(s, old, "SESSION_EXPIRED")
    });

    let (before, lost) = events_until_lost(&mut late);
    // What reached the client before the cut is handed out first, in order.
    let expected: Vec<Vec<u8>> = ["m0", "m1", "m2"]
        .iter()
        .map(|m| m.as_bytes().to_vec())
        .collect();
    assert_eq!(before, expected[..before.len()]);
    let Event::Lost {
        reason,
        missed,
        session_id,
        republished,
    } = lost
    else {
        unreachable!()
    };
    assert_eq!(reason, Some(ErrorCode::SessionExpired));
    // Exactly what the client did not get.
    let not_received = 3 - before.len() as u64;
    assert!(missed == Some(not_received), "{missed:?}");
    assert_ne!(session_id, old);
    assert_eq!(republished, 0);
    assert_eq!(late.session_id(), session_id);

    // The new session has the subscription again: what is published now arrives.
    publish_all(&mut publisher, "db", &["after"]);
    expect_delivery(&mut late, b"after");
    assert_eq!(
        server.stats().server.losses.get("SESSION_EXPIRED"),
        Some(&1)
    );
}

/// Regression (issue 3): LOST's `missed` used to count every message the session held,
/// including in-flight deliveries with a seq ≤ the `last_delivery_seq` the client sent in
/// HELLO: the client received them but had not acked them yet, and was told 3.
#[test]
fn lost_missed_leaves_out_the_deliveries_the_client_received() {
    let server = TestServer::with_config(Config {
        reconnect_keep_alive_ms: 200,
        ..Config::default()
    });
    let proxy = ChaosProxy::start(server.addr, ChaosConfig::PASS_THROUGH, 8);
    let mut late = reconnecting(proxy.addr, "late");
    late.subscribe_all("db").unwrap();
    let mut publisher = plain(server.addr, "publisher");
    publish_all(&mut publisher, "db", &["m0", "m1", "m2"]);
    // Received and handed out; their acks would go with the next call, which comes too late.
    for payload in ["m0", "m1", "m2"] {
        expect_delivery(&mut late, payload.as_bytes());
    }
    proxy.cut_all();
    server.wait_for("the session to expire", |s| s.server.sessions_expired == 1);
    match late.recv() {
        Ok(Event::Lost { missed, .. }) => assert_eq!(missed, Some(0), "nothing was missed"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn overflow_while_connected_ends_the_session_and_the_client_carries_on_in_a_new_one() {
    let server = TestServer::with_config(Config {
        max_queue_depth: 4,
        ..Config::default()
    });
    let mut slow = reconnecting(server.addr, "slow");
    slow.subscribe_all("db").unwrap();
    let old = slow.session_id();
    let mut publisher = plain(server.addr, "publisher");
    publish_all(&mut publisher, "db", &["m0", "m1", "m2", "m3", "m4"]);
    server.wait_for("the overflow", |s| closed_because(s, old, "QUEUE_OVERFLOW"));

    // GOODBYE(QUEUE_OVERFLOW) comes after the deliveries sent before it; the resume then
    // learns the session is gone.
    let (before, lost) = events_until_lost(&mut slow);
    assert!(before.len() <= 4, "{before:?}");
    assert!(
        matches!(
            lost,
            Event::Lost {
                reason: Some(ErrorCode::QueueOverflow),
                ..
            }
        ),
        "{lost:?}"
    );
    publish_all(&mut publisher, "db", &["after"]);
    expect_delivery(&mut slow, b"after");
}

#[test]
fn overflow_while_detached_closes_the_session_and_the_client_is_told_on_return() {
    let server = TestServer::with_config(Config {
        max_queue_depth: 4,
        max_queue_depth_detached: 8,
        ..Config::default()
    });
    let proxy = ChaosProxy::start(server.addr, ChaosConfig::PASS_THROUGH, 2);
    let mut away = reconnecting(proxy.addr, "away");
    away.subscribe_all("db").unwrap();
    let old = away.session_id();
    proxy.cut_all();
    server.wait_for("the session to be detached", |s| {
        state_of(s, old) == Some("detached")
    });

    // The detached limit is the larger one: 8 messages fit, the 9th overflows.
    let mut publisher = plain(server.addr, "publisher");
    let payloads: Vec<String> = (0..9).map(|i| format!("m{i}")).collect();
    let payloads: Vec<&str> = payloads.iter().map(String::as_str).collect();
    publish_all(&mut publisher, "db", &payloads);
    server.wait_for("the overflow to close the session", |s| {
        closed_because(s, old, "QUEUE_OVERFLOW") && state_of(s, old).is_none()
    });

    let (before, lost) = events_until_lost(&mut away);
    assert!(before.is_empty(), "published after the cut: {before:?}");
    match lost {
        Event::Lost {
            reason: Some(ErrorCode::QueueOverflow),
            missed: Some(missed),
            ..
        } => assert_eq!(
            missed, 9,
            "the 8 the session held and the 9th that overflowed it"
        ),
        other => panic!("expected LOST(QUEUE_OVERFLOW), got {other:?}"),
    }
    publish_all(&mut publisher, "db", &["after"]);
    expect_delivery(&mut away, b"after");
}

#[test]
fn a_resume_with_a_wrong_token_is_refused_and_the_session_left_alone() {
    let server = TestServer::start();
    let mut owner = plain(server.addr, "owner");
    owner.subscribe_all("db").unwrap();
    let mut token = owner.welcome().resume_token;
    token[0] ^= 0x5A;

    let mut thief = RawConn::connect(server.addr);
    let mut hello = Vec::new();
    let resume = Resume {
        session_id: owner.session_id(),
        resume_token: token,
        last_delivery_seq: 0,
        first_resendable_publish_seq: 1,
    };
    let frame = Hello {
        extensions: false,
        inflight_window: 0,
        client_name: b"thief",
        resume: Some(resume),
        auth: None,
    };
    encode_hello(&frame, &mut hello).unwrap();
    thief.send(&hello);
    let welcome = thief.read_frame().expect("WELCOME");
    assert_eq!(welcome.op, Op::Welcome as u8);
    // Layout: protocol.md §WELCOME: outcome u8, lost_reason u16, missed u64, session_id u64.
    let body = &welcome.body;
    assert_eq!(body[0], OUTCOME_LOST);
    assert_eq!(
        u16::from_be_bytes([body[1], body[2]]),
        ErrorCode::SessionUnknown as u16,
        "a wrong token is answered exactly like an unknown session"
    );
    assert_eq!(
        u64::from_be_bytes(body[3..11].try_into().unwrap()),
        u64::MAX
    );
    let new_session = u64::from_be_bytes(body[11..19].try_into().unwrap());
    assert_ne!(new_session, owner.session_id());

    // The owner's session is untouched: not taken over, still subscribed, still delivering.
    let mut publisher = plain(server.addr, "publisher");
    publish_all(&mut publisher, "db", &["still yours"]);
    match owner.recv().unwrap() {
        weir::client::Event::Deliver(delivery) => assert_eq!(delivery.payload, b"still yours"),
        other => panic!("{other:?}"),
    }
    let stats = server.stats();
    assert_eq!(stats.server.sessions_taken_over, 0);
    assert_eq!(stats.server.losses.get("SESSION_UNKNOWN"), Some(&1));
    assert_eq!(state_of(&stats, owner.session_id()), Some("connected"));
}

#[test]
fn a_server_restart_is_lost_with_server_restarted_and_the_subscriptions_come_back() {
    let first = TestServer::start();
    let proxy = ChaosProxy::start(first.addr, ChaosConfig::PASS_THROUGH, 3);
    let mut survivor = reconnecting(proxy.addr, "survivor");
    survivor.subscribe_all("db").unwrap();
    let old = survivor.session_id();
    first.stop().unwrap();
    let second = TestServer::start();
    proxy.set_upstream(second.addr);

    match survivor.recv() {
        Ok(Event::Lost {
            reason: Some(ErrorCode::ServerRestarted),
            missed: None,
            session_id,
            ..
        }) => assert_ne!(session_id, old),
        other => panic!("expected LOST(SERVER_RESTARTED), got {other:?}"),
    }
    let mut publisher = plain(second.addr, "publisher");
    publish_all(&mut publisher, "db", &["hello again"]);
    expect_delivery(&mut survivor, b"hello again");
}

#[test]
fn a_client_that_cannot_reach_the_server_gives_up_after_its_limit() {
    let server = TestServer::start();
    let proxy = ChaosProxy::start(server.addr, ChaosConfig::PASS_THROUGH, 4);
    let options = weir::client::ReconnectOptions {
        give_up_after: Some(std::time::Duration::from_millis(100)),
        ..crate::common::quick_reconnect()
    };
    let mut client = ReconnectingClient::connect(
        proxy.addr,
        &crate::common::client_options("stranded"),
        &options,
    )
    .unwrap();
    drop(server);
    proxy.cut_all();
    match client.recv() {
        Err(ClientError::GaveUp { attempts, .. }) => assert!(attempts >= 1),
        other => panic!("expected GaveUp, got {other:?}"),
    }
    // Every later call says the same.
    assert!(matches!(
        client.publish("db", "e", "x"),
        Err(ClientError::GaveUp { .. })
    ));
}

/// Issue #14: group memberships and pattern subscriptions are made again on the new session
/// after LOST, like plain ones.
#[test]
fn groups_and_patterns_are_made_again_after_lost() {
    let server = TestServer::with_config(Config {
        reconnect_keep_alive_ms: 200,
        ..Config::default()
    });
    let proxy = ChaosProxy::start(server.addr, ChaosConfig::PASS_THROUGH, 1);
    let options = weir::client::ClientOptions {
        extensions: true,
        ..crate::common::client_options("worker")
    };
    let mut worker =
        ReconnectingClient::connect(proxy.addr, &options, &crate::common::quick_reconnect())
            .expect("connects");
    worker.subscribe_group("jobs", None, "pool").unwrap();
    worker.subscribe_pattern("orders.>", None).unwrap();
    let old = worker.session_id();
    proxy.cut_all();
    server.wait_for("the session to expire", |s| {
        closed_because(s, old, "SESSION_EXPIRED")
    });
    let (_, lost) = events_until_lost(&mut worker);
    assert!(matches!(lost, Event::Lost { .. }));
    let new = worker.session_id();
    server.wait_for("the new session's subscriptions", |s| {
        s.sessions
            .iter()
            .any(|s| s.session_id == new && s.patterns.len() == 1)
            && s.groups.iter().any(|g| g.name == "pool" && g.members == 1)
    });
    let mut publisher = plain(server.addr, "publisher");
    publish_all(&mut publisher, "jobs", &["job"]);
    publish_all(&mut publisher, "orders.eu", &["order"]);
    expect_delivery(&mut worker, b"job");
    expect_delivery(&mut worker, b"order");
}
