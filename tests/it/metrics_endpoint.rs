//! The Prometheus endpoint served by the event loop on `metrics_listen`.

use std::io::{Read, Write};
use std::net::TcpStream;

use weir::Config;

use crate::common::{RawConn, TestServer, WAIT};

fn get(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    // Read to EOF; a reset after the response (the server closing on unread request bytes)
    // ends the read too.
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if !response.is_empty() => {
                eprintln!("read ended with {e} after the response");
                break;
            }
            Err(e) => panic!("no response: {e}"),
        }
    }
    String::from_utf8(response).unwrap()
}

#[test]
fn get_metrics_returns_prometheus_text_with_live_figures() {
    let server = TestServer::with_config(Config {
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Config::default()
    });
    let metrics = server
        .handle
        .metrics_addr()
        .expect("metrics listener bound");
    let mut publisher = RawConn::connect(server.addr);
    publisher.hello("pub");
    let mut subscriber = RawConn::connect(server.addr);
    subscriber.hello("sub");
    subscriber.subscribe("db", None);
    publisher.publish(1, "db", "e", b"x");
    publisher.read_frame().expect("RECEIPT");
    subscriber.read_frame().expect("DELIVER");

    let response = get(metrics, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"));
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, body.len());
    assert!(body.contains("weir_connections 2\n"), "{body}");
    assert!(body.contains("weir_messages_published_total 1\n"));
    assert!(body.contains("weir_messages_delivered_total 1\n"));
    assert!(body.contains("weir_queue_subscribers{queue=\"db\"} 1\n"));
    assert!(body.contains("weir_sessions_by_state{state=\"connected\"} 2\n"));

    assert!(get(metrics, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(get(metrics, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    assert!(get(metrics, &huge).starts_with("HTTP/1.1 431"));
    // The broker clients never noticed.
    assert_eq!(server.stats().server.connections, 2);
}
