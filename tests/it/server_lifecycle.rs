//! Handshake timeout, connection limit, heartbeats, BYE and graceful shutdown.

use weir::protocol::codec::encode_ping;
use weir::protocol::{ErrorCode, Op};
use weir::Config;

use crate::common::{RawConn, TestServer};

#[test]
fn a_connection_that_never_sends_hello_is_closed_with_handshake_timeout() {
    let server = TestServer::with_config(Config {
        handshake_timeout_ms: 200,
        ..Config::default()
    });
    let mut conn = RawConn::connect(server.addr);
    conn.expect_error_and_close(ErrorCode::HandshakeTimeout);
    let stats = server.wait_for("close counted", |s| {
        s.server.closes.get("HANDSHAKE_TIMEOUT") == Some(&1)
    });
    assert_eq!(stats.server.connections, 0);
}

#[test]
fn the_connection_past_max_connections_gets_server_busy() {
    let server = TestServer::with_config(Config {
        max_connections: 2,
        ..Config::default()
    });
    let mut a = RawConn::connect(server.addr);
    a.hello("a");
    let mut b = RawConn::connect(server.addr);
    b.hello("b");
    let mut c = RawConn::connect(server.addr);
    c.expect_error_and_close(ErrorCode::ServerBusy);
    let stats = server.stats();
    assert_eq!(stats.server.connections_refused, 1);
    assert_eq!(stats.server.connections, 2);
}

#[test]
fn the_server_pings_a_quiet_client_and_closes_a_silent_one() {
    let server = TestServer::with_config(Config {
        heartbeat_interval_ms: 50,
        heartbeat_timeout_ms: 300,
        ..Config::default()
    });
    // A client that answers every PING stays connected across many timeouts' worth of PINGs,
    // answering on its own thread while the silent client below is timed out.
    let mut lively = RawConn::connect(server.addr);
    lively.hello("lively");
    let answering = std::thread::spawn(move || {
        for _ in 0..40 {
            let frame = lively.read_frame().expect("PING");
            assert_eq!(frame.op, Op::Ping as u8, "only PINGs, never a GOODBYE");
            let nonce = u64::from_be_bytes(frame.body[..8].try_into().unwrap());
            let mut pong = Vec::new();
            encode_ping(Op::Pong, nonce, &mut pong);
            lively.send(&pong);
        }
        lively
    });
    // A client that never answers is told why it is closed.
    let mut silent = RawConn::connect(server.addr);
    silent.hello("silent");
    let frames = silent.read_until_close();
    assert!(
        frames.iter().any(|f| f.op == Op::Ping as u8),
        "pinged first"
    );
    let last = frames.last().unwrap();
    assert_eq!(last.op, Op::Goodbye as u8);
    assert_eq!(last.code(), ErrorCode::HeartbeatTimeout as u16);
    let _lively = answering
        .join()
        .expect("the lively client was never closed");
    let stats = server.wait_for("the silent connection closed", |s| {
        s.server.connections == 1
    });
    let state = |name: &str| {
        let session = stats
            .sessions
            .iter()
            .find(|s| s.client_name == name)
            .unwrap();
        session.state.clone()
    };
    assert_eq!(
        state("lively"),
        "connected",
        "the lively client is still there"
    );
    assert_eq!(state("silent"), "detached", "kept for a resume");
    assert_eq!(stats.server.heartbeat_timeouts, 1);
}

#[test]
fn bye_is_answered_with_goodbye_client_bye() {
    let server = TestServer::start();
    let mut conn = RawConn::connect(server.addr);
    conn.hello("polite");
    let mut bye = Vec::new();
    weir::protocol::codec::encode_empty(Op::Bye, &mut bye);
    conn.send(&bye);
    let frames = conn.read_until_close();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].op, Op::Goodbye as u8);
    assert_eq!(frames[0].code(), ErrorCode::ClientBye as u16);
}

#[test]
fn shutdown_sends_goodbye_to_every_client_and_the_loop_returns_ok() {
    let server = TestServer::start();
    let mut conns: Vec<RawConn> = (0..5).map(|_| RawConn::connect(server.addr)).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.hello(&format!("c{i}"));
    }
    let handle = server.handle.clone();
    handle.shutdown().unwrap();
    for conn in &mut conns {
        let frames = conn.read_until_close();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].op, Op::Goodbye as u8);
        assert_eq!(frames[0].code(), ErrorCode::ServerShutdown as u16);
    }
    server
        .stop()
        .expect("run returns Ok after a graceful shutdown");
    assert!(handle.stats().is_err(), "the loop is gone");
}
