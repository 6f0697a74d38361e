//! PROXY protocol behind a real HAProxy (`send-proxy-v2`), plus direct refusals.
//!
//! HAProxy comes from Debian's `haproxy` package (.ci/run installs it). It is started with a
//! generated config on free loopback ports and stopped by its PID.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir::client::{Client, ClientOptions, Event};
use weir::config::ListenerConfig;
use weir::protocol::ErrorCode;
use weir::Config;

use crate::common::{free_addr, RawConn, TempDir, TestServer, WAIT};

fn proxy_listener(trusted: &[&str]) -> Config {
    Config {
        listeners: vec![ListenerConfig {
            proxy_protocol: Some(true),
            trusted_proxies: Some(trusted.iter().map(|t| t.to_string()).collect()),
            ..ListenerConfig::new("127.0.0.1:0".parse().unwrap())
        }],
        ..Config::default()
    }
}

struct HaProxy {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts HAProxy in front of `backend`, or returns `None` when it is not installed outside
/// CI (in CI it must be there: .ci/run installs it).
fn start_haproxy(backend: SocketAddr) -> Option<HaProxy> {
    if Command::new("haproxy").arg("-v").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "haproxy must be installed in CI (.ci/run installs it)"
        );
        eprintln!("haproxy not installed: skipping (apt-get install haproxy)");
        return None;
    }
    let port = free_addr().port();
    let dir = TempDir::new(&format!("haproxy-{port}"));
    let config = format!(
        "global\n  maxconn 200\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
         frontend weir_in\n  bind 127.0.0.1:{port}\n  default_backend weir\n\
         backend weir\n  server s1 {backend} send-proxy-v2 check check-send-proxy inter 100ms\n"
    );
    let path = dir.0.join("haproxy.cfg");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();
    let child = Command::new("haproxy")
        .arg("-f")
        .arg(&path)
        .arg("-db")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not start listening");
        std::thread::sleep(Duration::from_millis(10));
    }
    Some(HaProxy {
        child,
        addr,
        _dir: dir,
    })
}

#[test]
fn through_haproxy_the_server_sees_the_real_client_and_pub_sub_works() {
    let server = TestServer::with_config(proxy_listener(&["127.0.0.1"]));
    let Some(haproxy) = start_haproxy(server.addr) else {
        return;
    };
    // HAProxy's health checks send a PROXY v2 LOCAL header, then close.
    server.wait_for("a health check", |s| s.server.proxy_local_headers >= 1);

    let options = ClientOptions {
        name: "behind-proxy".to_owned(),
        ..ClientOptions::default()
    };
    let mut subscriber = Client::connect(haproxy.addr, &options).expect("connect via haproxy");
    subscriber.subscribe_all("db").unwrap();
    let mut publisher = Client::connect(haproxy.addr, &ClientOptions::default()).unwrap();
    for n in 0..100u32 {
        publisher.publish("db", "update", n.to_be_bytes()).unwrap();
    }
    publisher.wait_receipt(100).unwrap();
    let mut received = Vec::new();
    while received.len() < 100 {
        if let Event::Deliver(d) = subscriber.recv().unwrap() {
            received.push(u32::from_be_bytes(d.payload[..4].try_into().unwrap()));
            subscriber.ack(d.seq).unwrap();
        }
    }
    assert_eq!(received, (0..100).collect::<Vec<_>>());

    // The server shows the client's own address (HAProxy's view of it), not HAProxy's.
    let stats = server.stats();
    let session = stats
        .sessions
        .iter()
        .find(|s| s.client_name == "behind-proxy")
        .unwrap();
    let client_addr = subscriber.local_addr().unwrap();
    assert_eq!(session.peer, client_addr.to_string());
    assert!(stats.server.proxy_headers >= 2);
    assert_eq!(stats.server.proxy_rejected, 0);
    println!(
        "haproxy: {} proxied connections, {} health checks, client seen as {}",
        stats.server.proxy_headers, stats.server.proxy_local_headers, session.peer
    );
}

#[test]
fn a_trusted_peer_without_a_proxy_header_is_refused() {
    let server = TestServer::with_config(proxy_listener(&["127.0.0.1"]));
    let mut conn = RawConn::connect(server.addr);
    let mut hello = Vec::new();
    let frame = weir::protocol::Hello {
        extensions: false,
        inflight_window: 0,
        client_name: b"no-header",
        resume: None,
        auth: None,
    };
    weir::protocol::codec::encode_hello(&frame, &mut hello).unwrap();
    conn.send(&hello);
    conn.expect_error_and_close(ErrorCode::ProxyRejected);
}

#[test]
fn an_untrusted_peer_is_refused_before_it_sends_anything() {
    let server = TestServer::with_config(proxy_listener(&["10.0.0.0/8"]));
    let mut conn = RawConn::connect(server.addr);
    conn.expect_error_and_close(ErrorCode::ProxyRejected);
    server.wait_for("refusal counted", |s| s.server.proxy_rejected == 1);
}

#[test]
fn junk_instead_of_a_proxy_header_is_refused() {
    let server = TestServer::with_config(proxy_listener(&["127.0.0.1"]));
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"PROXY TCP4 not-an-address 1.2.3.4 1 2\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c",
    ] {
        let mut conn = RawConn::connect(server.addr);
        conn.send(junk);
        conn.expect_error_and_close(ErrorCode::ProxyRejected);
    }
    // A header that never ends is refused at its size limit, not buffered forever.
    let mut conn = RawConn::connect(server.addr);
    let mut endless = b"PROXY TCP4 ".to_vec();
    endless.extend_from_slice(&[b'9'; 200]);
    conn.send(&endless);
    conn.expect_error_and_close(ErrorCode::ProxyRejected);
    assert_eq!(server.stats().server.proxy_rejected, 4);
}

#[test]
fn tls_behind_a_proxy_header_works_through_haproxy_passing_tls_through() {
    // Issue 9: the PROXY prefix and TLS are layers that compose; HAProxy in TCP mode sends
    // its PROXY v2 header in clear, then relays the client's TLS bytes untouched.
    let cert = crate::tls::certificate("proxy-tls");
    let mut config = proxy_listener(&["127.0.0.1"]);
    config.listeners[0].tls_cert = Some(cert.dir.join("cert.pem"));
    config.listeners[0].tls_key = Some(cert.dir.join("key.pem"));
    let server = TestServer::with_config(config);
    let Some(haproxy) = start_haproxy(server.addr) else {
        return;
    };
    let tls = weir::client::TlsOptions::pinned("localhost", cert.der.to_vec());
    let options = |name: &str| ClientOptions {
        name: name.to_owned(),
        ..ClientOptions::default()
    };
    let mut subscriber =
        Client::connect_tls(haproxy.addr, &options("tls-behind-proxy"), &tls).expect("connect");
    subscriber.subscribe_all("db").unwrap();
    let mut publisher = Client::connect_tls(haproxy.addr, &options("pub"), &tls).unwrap();
    for n in 0..50u32 {
        publisher.publish("db", "update", n.to_be_bytes()).unwrap();
    }
    publisher.wait_receipt(50).unwrap();
    let mut received = Vec::new();
    while received.len() < 50 {
        if let Event::Deliver(d) = subscriber.recv().unwrap() {
            received.push(u32::from_be_bytes(d.payload[..4].try_into().unwrap()));
            subscriber.ack(d.seq).unwrap();
        }
    }
    assert_eq!(received, (0..50).collect::<Vec<_>>());
    let stats = server.stats();
    let session = stats
        .sessions
        .iter()
        .find(|s| s.client_name == "tls-behind-proxy")
        .unwrap();
    assert_eq!(session.peer, subscriber.local_addr().unwrap().to_string());
    assert_eq!(stats.server.proxy_rejected, 0);
}
