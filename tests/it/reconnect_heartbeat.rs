//! Peers that go silent without closing (issue 3): the proxy blackholes the connection, so
//! neither side sees EOF. The server closes it with HEARTBEAT_TIMEOUT and keeps the session;
//! the client notices the silence on its own and resumes once the path works again.

use std::time::{Duration, Instant};

use weir::client::{ClientOptions, Event, ReconnectingClient};
use weir::Config;

use crate::chaos_proxy::{ChaosConfig, ChaosProxy};
use crate::common::{plain, publish_all, quick_reconnect, TestServer, WAIT};

#[test]
fn a_silent_path_is_timed_out_on_both_sides_and_the_session_resumes_without_loss() {
    let server = TestServer::with_config(Config {
        heartbeat_interval_ms: 50,
        heartbeat_timeout_ms: 300,
        ..Config::default()
    });
    let proxy = ChaosProxy::start(server.addr, ChaosConfig::PASS_THROUGH, 7);
    // Each attempt through the blackhole waits this long for a WELCOME that cannot come.
    let client_options = ClientOptions {
        name: String::from("stalled"),
        inflight_window: 0,
        timeout: Some(Duration::from_millis(500)),
        auth: None,
        extensions: false,
    };
    let mut subscriber =
        ReconnectingClient::connect(proxy.addr, &client_options, &quick_reconnect()).unwrap();
    subscriber.subscribe_all("db").unwrap();
    let session = subscriber.session_id();

    proxy.set_blackhole(true);
    server.wait_for("HEARTBEAT_TIMEOUT and a detached session", |s| {
        s.server.heartbeat_timeouts >= 1
            && s.sessions
                .iter()
                .any(|s| s.session_id == session && s.state == "detached")
    });
    // The client hears nothing either; it gives the connection up by itself.
    let deadline = Instant::now() + WAIT;
    while subscriber.stats().heartbeat_timeouts == 0 {
        assert!(Instant::now() < deadline, "{subscriber:?}");
        let event = subscriber.recv_timeout(Duration::from_millis(50)).unwrap();
        assert_eq!(event, None);
    }

    // Published while the session is detached: queued for it.
    let mut publisher = plain(server.addr, "publisher");
    publish_all(&mut publisher, "db", &["m0", "m1", "m2", "m3", "m4"]);
    proxy.set_blackhole(false);

    let mut received = Vec::new();
    let mut resumed = 0;
    while received.len() < 5 {
        match subscriber.recv().unwrap() {
            Event::Deliver(delivery) => received.push(delivery.payload),
            Event::Resumed { session_id, .. } => {
                assert_eq!(session_id, session);
                resumed += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(resumed >= 1);
    assert_eq!(received, [b"m0", b"m1", b"m2", b"m3", b"m4"]);
    let stats = server.stats().server;
    assert_eq!(stats.sessions_lost, 0);
    assert!(stats.sessions_resumed >= 1);
}
