//! Connection and session lifecycle: AWAITING_HELLO → CONNECTED → CLOSED.

use std::time::Duration;

use super::harness::{failed_with, resume_hello, said_goodbye, test_config, Harness, Received};
use crate::broker::{CloseReason, ConnId};
use crate::config::Config;
use crate::protocol::frame::{OUTCOME_LOST, OUTCOME_NEW};
use crate::protocol::{ErrorCode, Frame, Hello};

const CLIENT: ConnId = ConnId(1);
const OTHER: ConnId = ConnId(2);

// ---- AWAITING_HELLO ----

#[test]
fn welcome_carries_a_new_session_and_the_limits_in_force() {
    let config = test_config();
    let mut h = Harness::new();
    let welcome = h.hello(CLIENT);
    assert_eq!(welcome.outcome, OUTCOME_NEW);
    assert_eq!((welcome.lost_reason, welcome.missed), (None, Some(0)));
    assert_ne!(welcome.session_id, 0);
    assert_eq!(welcome.last_publish_seq, 0);
    assert_eq!(welcome.max_frame_len, config.max_frame_len);
    assert_eq!(welcome.inflight_window, config.in_flight_window);
    assert_eq!(
        u64::from(welcome.heartbeat_interval_ms),
        config.heartbeat_interval_ms
    );
    assert_eq!(
        u64::from(welcome.heartbeat_timeout_ms),
        config.heartbeat_timeout_ms
    );
    assert_eq!(welcome.max_queue_depth, config.max_queue_depth);
    assert_eq!(welcome.max_queue_bytes, config.max_queue_bytes);
    let other = h.hello(OTHER);
    assert_ne!(other.session_id, welcome.session_id);
    assert_ne!(other.resume_token, welcome.resume_token);
}

#[test]
fn hello_resuming_a_session_of_another_server_run_gets_lost_server_restarted() {
    let mut h = Harness::new();
    h.connect(CLIENT);
    // Session id 42 has epoch 0 in its high 32 bits; this broker's epoch is never 0.
    let welcome = h.handshake(CLIENT, resume_hello());
    assert_eq!(welcome.outcome, OUTCOME_LOST);
    assert_eq!(welcome.lost_reason, Some(ErrorCode::ServerRestarted));
    assert_eq!(welcome.missed, None, "unknown: u64::MAX on the wire");
    assert_ne!(welcome.session_id, 42);
    assert_eq!(welcome.last_publish_seq, 0);
    // The new session works like any other.
    h.subscribe(CLIENT, "db", None);
    h.publish(CLIENT, "db", "e", "x");
    assert_eq!(h.payloads(CLIENT), ["x"]);
}

/// Issue 13: the keep-alive was not in WELCOME. A HELLO with EXTENSIONS gets it as WELCOME's
/// trailing field; a HELLO without gets the 71-byte WELCOME old decoders expect.
#[test]
fn welcome_carries_the_keep_alive_only_when_hello_set_extensions() {
    let config = Config {
        reconnect_keep_alive_ms: 45_000,
        ..test_config()
    };
    let mut h = Harness::with_config(config);
    let plain = h.hello(CLIENT);
    assert_eq!(plain.reconnect_keep_alive_ms, None);
    h.connect(OTHER);
    let extended = h.handshake(
        OTHER,
        Hello {
            inflight_window: 0,
            client_name: b"ext",
            resume: None,
            auth: None,
            extensions: true,
        },
    );
    assert_eq!(extended.reconnect_keep_alive_ms, Some(45_000));
    let mut bytes = Vec::new();
    crate::protocol::codec::encode_welcome(&plain, &mut bytes);
    assert_eq!(bytes.len(), 6 + 71);
    bytes.clear();
    crate::protocol::codec::encode_welcome(&extended, &mut bytes);
    assert_eq!(bytes.len(), 6 + 75);
}

#[test]
fn a_frame_before_hello_is_hello_required() {
    let mut h = Harness::new();
    h.connect(CLIENT);
    h.subscribe(CLIENT, "db", None);
    assert_eq!(h.frames(CLIENT), failed_with(ErrorCode::HelloRequired));
    assert_eq!(h.stats().server.connections, 0);
}

/// Issue 13: the header checks of protocol.md §Framing come first, so an op code not in the
/// op table is UNKNOWN_OP even before HELLO; a known op other than HELLO, a server-to-client
/// one included, is HELLO_REQUIRED.
#[test]
fn an_unknown_op_before_hello_is_unknown_op_and_a_known_one_is_hello_required() {
    let mut h = Harness::new();
    h.connect(CLIENT);
    h.send_bytes(CLIENT, &[0, 0, 0, 2, 0x01, 0x7F]);
    assert_eq!(h.frames(CLIENT), failed_with(ErrorCode::UnknownOp));
    h.connect(OTHER);
    h.send(OTHER, &Frame::Receipt(1));
    assert_eq!(h.frames(OTHER), failed_with(ErrorCode::HelloRequired));
}

#[test]
fn a_second_hello_is_duplicate_hello_and_ends_the_session() {
    let mut h = Harness::new();
    h.hello(CLIENT);
    let hello = Hello {
        extensions: false,
        inflight_window: 0,
        client_name: b"again",
        resume: None,
        auth: None,
    };
    h.send(CLIENT, &Frame::Hello(hello));
    assert_eq!(h.frames(CLIENT), failed_with(ErrorCode::DuplicateHello));
    assert_eq!(h.stats().server.sessions, 0);
}

#[test]
fn a_server_to_client_op_from_a_client_is_unknown_op() {
    let mut h = Harness::new();
    h.hello(CLIENT);
    h.send(CLIENT, &Frame::Receipt(1));
    assert_eq!(h.frames(CLIENT), failed_with(ErrorCode::UnknownOp));
}

#[test]
fn undecodable_bytes_are_told_their_error_code_and_closed() {
    let mut h = Harness::new();
    h.hello(CLIENT);
    // Length 2, version 0x7F, op PING.
    h.send_bytes(CLIENT, &[0, 0, 0, 2, 0x7F, 0x05]);
    assert_eq!(h.frames(CLIENT), failed_with(ErrorCode::UnsupportedVersion));
}

#[test]
fn the_frame_limit_is_smaller_until_hello_is_accepted() {
    let config = test_config();
    let mut h = Harness::new();
    h.connect(CLIENT);
    assert_eq!(
        h.broker.max_frame_len(CLIENT),
        config.max_frame_len_before_hello
    );
    let welcome = h.handshake(
        CLIENT,
        Hello {
            extensions: false,
            inflight_window: 0,
            client_name: b"c",
            resume: None,
            auth: None,
        },
    );
    assert_eq!(h.broker.max_frame_len(CLIENT), welcome.max_frame_len);
    assert_eq!(welcome.max_frame_len, config.max_frame_len);
}

#[test]
fn a_connection_without_hello_is_closed_at_the_handshake_deadline() {
    let deadline = Duration::from_millis(test_config().handshake_timeout_ms);
    let mut h = Harness::new();
    h.connect(CLIENT);
    assert_eq!(h.broker.poll_timeout(), Some(h.now + deadline));
    h.advance(deadline - Duration::from_millis(1));
    assert_eq!(h.frames(CLIENT), []);
    h.advance(Duration::from_millis(1));
    assert_eq!(h.frames(CLIENT), failed_with(ErrorCode::HandshakeTimeout));
    assert_eq!(h.stats().server.closes.get("HANDSHAKE_TIMEOUT"), Some(&1));
}

#[test]
fn hello_just_before_the_deadline_is_accepted_and_not_timed_out() {
    let deadline = Duration::from_millis(test_config().handshake_timeout_ms);
    let mut h = Harness::new();
    h.connect(CLIENT);
    h.advance(deadline - Duration::from_millis(1));
    h.handshake(
        CLIENT,
        Hello {
            extensions: false,
            inflight_window: 0,
            client_name: b"late",
            resume: None,
            auth: None,
        },
    );
    h.advance(Duration::from_millis(1));
    assert_eq!(h.frames(CLIENT), []);
    assert_eq!(h.stats().server.sessions, 1);
}

#[test]
fn a_connection_past_max_connections_is_refused_with_server_busy_and_counted() {
    let mut h = Harness::with_config(crate::config::Config {
        max_connections: 1,
        ..super::harness::test_config()
    });
    let mut refusal = Vec::new();
    assert!(h.broker.handle_accept(&mut refusal), "the first is taken");
    assert!(refusal.is_empty());
    h.connect(CLIENT);
    assert!(!h.broker.handle_accept(&mut refusal), "the second is not");
    let (frame, _) = crate::protocol::decode(&refusal, u32::MAX)
        .unwrap()
        .unwrap();
    let crate::protocol::Frame::Error(error) = frame else {
        panic!("expected ERROR, got {frame:?}");
    };
    assert_eq!(error.code, Ok(ErrorCode::ServerBusy));
    let server = h.stats().server;
    assert_eq!(server.connections_refused, 1);
    assert_eq!(server.closes.get("SERVER_BUSY"), Some(&1));
    assert_eq!(server.connections, 1);
}

// ---- CONNECTED ----

#[test]
fn a_client_ping_is_answered_with_pong_and_the_same_nonce() {
    let mut h = Harness::new();
    h.hello(CLIENT);
    h.send(CLIENT, &Frame::Ping(0xDEAD_BEEF));
    assert_eq!(h.frames(CLIENT), [Received::Pong(0xDEAD_BEEF)]);
}

#[test]
fn bye_is_answered_with_goodbye_client_bye_and_a_close() {
    let mut h = Harness::new();
    h.hello(CLIENT);
    h.subscribe(CLIENT, "db", None);
    h.discard(CLIENT);
    h.send(CLIENT, &Frame::Bye);
    assert_eq!(h.frames(CLIENT), said_goodbye(ErrorCode::ClientBye));
    let stats = h.stats();
    assert_eq!((stats.server.sessions, stats.server.connections), (0, 0));
    assert_eq!(stats.server.closes.get("CLIENT_BYE"), Some(&1));
    assert!(
        !stats.queues.iter().any(|q| q.name == "db"),
        "a queue with no subscriber and nothing stored is freed (issue #12)"
    );
}

#[test]
fn shutdown_says_goodbye_server_shutdown_to_every_connection() {
    let waiting = ConnId(3);
    let mut h = Harness::new();
    h.hello(CLIENT);
    h.hello(OTHER);
    h.connect(waiting);
    h.subscribe(OTHER, "db", None);
    h.publish(CLIENT, "db", "e", "x");
    h.discard(OTHER);
    h.discard(CLIENT);
    h.publish(CLIENT, "db", "e", "unsent");
    h.broker.handle_shutdown();
    assert!(h.broker.is_shutting_down());
    for conn in [CLIENT, OTHER, waiting] {
        assert_eq!(h.frames(conn), said_goodbye(ErrorCode::ServerShutdown));
    }
    let server = h.stats().server;
    assert_eq!((server.sessions, server.connections), (0, 0));
    assert_eq!(server.closes.get("SERVER_SHUTDOWN"), Some(&3));
    h.assert_store_is_empty();
}

#[test]
fn a_peer_disconnect_ends_the_session_and_releases_its_queue() {
    let mut h = Harness::new();
    h.hello(CLIENT);
    h.hello_with_window(OTHER, 1);
    h.subscribe(OTHER, "db", None);
    for n in 0..3 {
        h.publish(CLIENT, "db", "e", &n.to_string());
    }
    h.drive();
    assert_eq!(h.stats().server.stored_messages, 3);
    h.disconnect(OTHER, CloseReason::PeerClosed);
    let server = h.stats().server;
    assert_eq!(server.sessions, 1);
    assert_eq!(server.messages_dropped_session_closed, 3);
    assert_eq!(server.closes.get("PEER_CLOSED"), Some(&1));
    h.assert_store_is_empty();
    assert_eq!(
        h.frames(OTHER).len(),
        2,
        "SUBSCRIBED and one DELIVER, nothing after"
    );
}

#[test]
fn a_conn_id_reused_after_a_close_starts_a_fresh_connection() {
    let mut h = Harness::new();
    h.hello(CLIENT);
    h.publish(CLIENT, "db", "e", "x");
    h.disconnect(CLIENT, CloseReason::PeerClosed);
    h.discard(CLIENT);
    let welcome = h.hello(CLIENT);
    assert_eq!(welcome.last_publish_seq, 0);
    // A new session: its first publish is seq 1 again.
    h.publish(CLIENT, "db", "e", "y");
    assert_eq!(h.frames(CLIENT), [Received::Receipt(1)]);
}

#[test]
fn a_client_that_never_reads_its_replies_is_closed_as_a_slow_consumer() {
    let config = Config {
        max_frame_len: 4_096,
        write_high_water_bytes: 1,
        max_write_buffer_bytes: 4_097,
        ..test_config()
    };
    let pongs_that_fit = config.max_write_buffer_bytes / PING_FRAME_LEN;
    let mut h = Harness::with_config(config);
    h.hello(CLIENT);
    // One loop turn: the PONGs pile up in the broker, nothing is flushed in between.
    for nonce in 0..pongs_that_fit as u64 {
        h.send(CLIENT, &Frame::Ping(nonce));
    }
    assert!(!h.broker.is_closing(CLIENT));
    h.send(CLIENT, &Frame::Ping(u64::MAX));
    assert!(h.broker.is_closing(CLIENT));
    assert_eq!(h.frames(CLIENT), said_goodbye(ErrorCode::SlowConsumer));
}

/// Length prefix, version, op, nonce.
const PING_FRAME_LEN: usize = 4 + 2 + 8;

// ---- replay (issue 9: time and randomness are passed in) ----

/// Everything two clients receive in a short scenario, run on a broker seeded with `seed`.
fn scenario(seed: u8) -> Vec<Received> {
    let mut h = Harness::with_seed(super::harness::test_config(), seed);
    let mut seen = Vec::new();
    for conn in [ConnId(1), ConnId(2)] {
        seen.push(Received::Welcome(h.hello(conn)));
    }
    h.subscribe(ConnId(2), "db", None);
    h.publish(ConnId(1), "db", "e", "one");
    h.advance(Duration::from_secs(11));
    seen.extend(h.frames(ConnId(1)));
    seen.extend(h.frames(ConnId(2)));
    seen
}

#[test]
fn the_same_seed_and_inputs_replay_the_same_output_and_another_seed_gives_other_tokens() {
    let first = scenario(3);
    assert_eq!(first, scenario(3), "a run replays exactly");
    let other = scenario(4);
    let tokens = |run: &[Received]| -> Vec<[u8; crate::protocol::RESUME_TOKEN_LEN]> {
        run.iter()
            .filter_map(|r| match r {
                Received::Welcome(w) => Some(w.resume_token),
                _ => None,
            })
            .collect()
    };
    assert_eq!(tokens(&first).len(), 2);
    assert_ne!(tokens(&first), tokens(&other), "tokens come from the seed");
    assert_ne!(
        tokens(&first)[0],
        tokens(&first)[1],
        "each session its own token"
    );
}
