//! Abuse: slow and silent peers, floods of idle connections, publishers over their rate.
//! Each case gets its specified code and close (or back-pressure), and a well-behaved client on
//! the side keeps working throughout. Figures are printed for the issue notes.

use std::time::Instant;

use weir::client::{Client, ClientOptions, Event};
use weir::protocol::codec::encode_hello;
use weir::protocol::{ErrorCode, Hello, Op};
use weir::Config;

use crate::common::{RawConn, TestServer};

/// VmRSS of this process (the server runs in it), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// A client that keeps publishing to itself and checks each message comes back.
struct Bystander {
    client: Client,
    sent: u64,
}

impl Bystander {
    fn new(server: &TestServer) -> Bystander {
        let mut client = Client::connect(server.addr, &ClientOptions::default()).unwrap();
        client.subscribe_all("side").unwrap();
        Bystander { client, sent: 0 }
    }

    fn round_trip(&mut self) {
        self.sent += 1;
        self.client
            .publish("side", "e", self.sent.to_be_bytes())
            .unwrap();
        loop {
            if let Event::Deliver(d) = self.client.recv().unwrap() {
                assert_eq!(d.payload, self.sent.to_be_bytes());
                self.client.ack(d.seq).unwrap();
                return;
            }
        }
    }
}

#[test]
fn a_thousand_connections_that_never_send_hello_are_all_closed_with_handshake_timeout() {
    let server = TestServer::with_config(Config {
        handshake_timeout_ms: 500,
        ..Config::default()
    });
    let mut bystander = Bystander::new(&server);
    let before = rss_bytes();
    let started = Instant::now();
    let mut silent: Vec<RawConn> = (0..1_000).map(|_| RawConn::connect(server.addr)).collect();
    bystander.round_trip();
    let during = rss_bytes();
    let mut closed = 0;
    for conn in &mut silent {
        conn.expect_error_and_close(ErrorCode::HandshakeTimeout);
        closed += 1;
    }
    bystander.round_trip();
    let stats = server.wait_for("the silent connections gone", |s| s.server.connections == 1);
    assert_eq!(stats.server.closes.get("HANDSHAKE_TIMEOUT"), Some(&1_000));
    println!(
        "abuse: 1000 silent connections: {closed} closed with HANDSHAKE_TIMEOUT in {:.1} s; \
         process RSS {} KiB before, {} KiB with them open, {} KiB after",
        started.elapsed().as_secs_f64(),
        before / 1024,
        during / 1024,
        rss_bytes() / 1024
    );
}

#[test]
fn a_frame_truncated_then_silent_is_closed_by_the_handshake_timeout() {
    let server = TestServer::with_config(Config {
        handshake_timeout_ms: 300,
        ..Config::default()
    });
    let mut bystander = Bystander::new(&server);
    let mut hello = Vec::new();
    let frame = Hello {
        extensions: false,
        inflight_window: 0,
        client_name: b"slowloris",
        resume: None,
        auth: None,
    };
    encode_hello(&frame, &mut hello).unwrap();
    let mut conn = RawConn::connect(server.addr);
    conn.send(&hello[..hello.len() - 3]);
    bystander.round_trip();
    conn.expect_error_and_close(ErrorCode::HandshakeTimeout);
    bystander.round_trip();
}

#[test]
fn a_publisher_over_its_rate_is_slowed_by_back_pressure_and_loses_nothing() {
    let server = TestServer::with_config(Config {
        max_publish_rate: 500,
        ..Config::default()
    });
    let mut bystander = Bystander::new(&server);
    let mut subscriber = Client::connect(server.addr, &ClientOptions::default()).unwrap();
    subscriber.subscribe_all("fast").unwrap();
    let mut publisher = Client::connect(server.addr, &ClientOptions::default()).unwrap();
    let count = 1_500u32;
    for n in 0..count {
        publisher.publish("fast", "e", n.to_be_bytes()).unwrap();
    }
    publisher.flush().unwrap();
    // While the server holds the publisher back, it says so.
    let stats = server.wait_for("the publisher throttled", |s| {
        s.server.throttle_episodes >= 1 && s.sessions.iter().any(|s| s.is_throttled)
    });
    let throttled = stats.sessions.iter().find(|s| s.is_throttled).unwrap();
    assert_eq!(throttled.max_publish_rate, 500);
    bystander.round_trip();
    let mut received = 0u32;
    while received < count {
        if let Event::Deliver(d) = subscriber.recv().unwrap() {
            assert_eq!(d.payload, received.to_be_bytes(), "in order, none dropped");
            subscriber.ack(d.seq).unwrap();
            received += 1;
        }
    }
    publisher.wait_receipt(u64::from(count)).unwrap();
    let stats = server.stats();
    let publisher_stats = stats
        .sessions
        .iter()
        .max_by_key(|s| s.throttled_ms)
        .unwrap();
    assert!(publisher_stats.throttled_ms > 0);
    assert_eq!(
        stats.server.messages_published,
        u64::from(count) + bystander.sent
    );
    println!(
        "abuse: {count} publishes at max_publish_rate 500/s: {} throttle episodes, {} ms paused, \
         all {received} delivered in order",
        stats.server.throttle_episodes, publisher_stats.throttled_ms
    );
    let _ = Op::Publish;
}
