//! Per-listener reconnection settings, and a peer that stops reading while still sending.

use std::time::Duration;

use weir::config::ListenerConfig;
use weir::protocol::codec::encode_ping;
use weir::protocol::Op;
use weir::Config;

use crate::common::{RawConn, TestServer};

#[test]
fn each_listener_applies_its_own_keep_alive() {
    let server = TestServer::with_config(Config {
        listeners: vec![
            ListenerConfig {
                reconnect_keep_alive_ms: Some(0),
                ..ListenerConfig::new("127.0.0.1:0".parse().unwrap())
            },
            ListenerConfig {
                reconnect_keep_alive_ms: Some(60_000),
                heartbeat_interval_ms: Some(2_000),
                heartbeat_timeout_ms: Some(6_000),
                ..ListenerConfig::new("127.0.0.1:0".parse().unwrap())
            },
        ],
        ..Config::default()
    });
    let addrs = server.handle.local_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    let mut local = RawConn::connect(addrs[0]);
    local.hello("no-keep-alive");
    let mut remote = RawConn::connect(addrs[1]);
    let welcome = remote.hello("keep-alive");
    // WELCOME carries the listener's values: heartbeat_interval_ms at body offset 51.
    let interval = u32::from_be_bytes(welcome.body[51..55].try_into().unwrap());
    assert_eq!(interval, 2_000);
    drop(local);
    drop(remote);
    let stats = server.wait_for("both connections gone", |s| s.server.connections == 0);
    assert_eq!(
        stats.sessions.len(),
        1,
        "only the keep-alive listener's session is kept"
    );
    assert_eq!(stats.sessions[0].client_name, "keep-alive");
    assert_eq!(stats.sessions[0].state, "detached");
    assert_eq!(stats.closed_sessions[0].reason, "SESSION_EXPIRED");
}

#[test]
fn a_subscriber_that_stops_reading_but_keeps_sending_is_detected_and_detached() {
    let server = TestServer::with_config(Config {
        heartbeat_interval_ms: 100,
        heartbeat_timeout_ms: 400,
        ..Config::default()
    });
    let mut stuck = RawConn::connect(server.addr);
    stuck.hello("stuck");
    stuck.subscribe("flood", None);
    let mut publisher = RawConn::connect(server.addr);
    publisher.hello("publisher");
    // Enough to fill the stuck client's socket buffers several times over.
    let payload = vec![7u8; 16 * 1024];
    let mut seq = 0;
    let mut pong = Vec::new();
    encode_ping(Op::Ping, 1, &mut pong);
    let stats = loop {
        for _ in 0..64 {
            seq += 1;
            publisher.publish(seq, "flood", "e", &payload);
        }
        // The stuck client keeps talking (never reading), so only the write stall can tell.
        stuck.send(&pong);
        let stats = server.stats();
        if stats.server.heartbeat_timeouts >= 1 {
            break stats;
        }
        // Drain the publisher's receipts so it is not the one stalling.
        while let Ok(Some(_)) = publisher_poll(&mut publisher) {}
        std::thread::sleep(Duration::from_millis(20));
    };
    let session = stats
        .sessions
        .iter()
        .find(|s| s.client_name == "stuck")
        .expect("kept, detached");
    assert_eq!(session.state, "detached");
    let publisher_session = stats
        .sessions
        .iter()
        .find(|s| s.client_name == "publisher")
        .unwrap();
    assert_eq!(publisher_session.state, "connected");
}

/// Reads one frame if any arrives within a moment.
fn publisher_poll(conn: &mut RawConn) -> std::io::Result<Option<()>> {
    conn.stream
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let mut byte = [0u8; 65536];
    let result = match std::io::Read::read(&mut conn.stream, &mut byte) {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(())),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(None),
        Err(e) => Err(e),
    };
    conn.stream
        .set_read_timeout(Some(crate::common::WAIT))
        .unwrap();
    result
}
