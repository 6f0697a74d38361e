//! The Prometheus endpoint served by the event loop on `http_listen`: HTTP behaviour, live
//! figures, and the exposition's conformance (HELP and TYPE for every family, naming rules,
//! and the real `promtool check metrics` when it is installed).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use weir::Config;

use crate::common::{RawConn, TestServer, WAIT};

pub(crate) fn get(addr: std::net::SocketAddr, request: &str) -> String {
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
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
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

    assert!(get(metrics, "GET /nothing HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(get(metrics, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    assert!(get(metrics, &huge).starts_with("HTTP/1.1 431"));
    // The broker clients never noticed.
    assert_eq!(server.stats().server.connections, 2);
}

/// A server with a metrics listener that has seen a publish, a delivery, a detached session and
/// a close, so that labelled families have samples; returns the `/metrics` body.
fn metrics_of_a_busy_server() -> (TestServer, String) {
    let server = TestServer::with_config(Config {
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
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
    drop(subscriber);
    server.wait_for("the subscriber's session to detach", |s| {
        s.server.sessions_detached_now == 1
    });
    let response = get(metrics, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    (server, body.to_owned())
}

#[test]
fn every_metric_family_has_help_and_type_and_follows_the_naming_rules() {
    let (_server, body) = metrics_of_a_busy_server();
    let mut helps = BTreeSet::new();
    let mut types = BTreeMap::new();
    let mut sampled = BTreeSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a text");
            assert!(!help.trim().is_empty(), "{name}: empty HELP");
            assert!(helps.insert(name.to_owned()), "{name}: HELP twice");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helps.contains(name), "{name}: TYPE before HELP");
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none());
        } else {
            assert!(!line.starts_with('#'), "unexpected comment {line}");
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(types.contains_key(name), "{line}: sample before its TYPE");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<u64>().is_ok(), "{line}");
            sampled.insert(name.to_owned());
        }
    }
    assert!(types.len() >= 40, "only {} families", types.len());
    for (name, kind) in &types {
        assert!(helps.contains(name), "{name}: no HELP");
        assert!(name.starts_with("weir_"), "{name}");
        match kind.as_str() {
            "counter" => assert!(name.ends_with("_total"), "counter {name} without _total"),
            "gauge" => {
                for suffix in ["_total", "_sum", "_count", "_bucket"] {
                    assert!(!name.ends_with(suffix), "gauge {name} ends in {suffix}");
                }
            }
            other => panic!("{name}: unexpected type {other}"),
        }
        let stem = name.strip_suffix("_total").unwrap_or(name);
        if name.contains("bytes") {
            assert!(stem.ends_with("_bytes"), "{name}: the unit goes last");
        }
        for word in ["disconnected", "inflight", "_ms"] {
            assert!(!name.contains(word), "{name}: {word}");
        }
    }
    // Unlabelled families always have a sample, labelled ones here do (no resume was LOST, so
    // `weir_losses_total` has no reason yet).
    for name in types.keys().filter(|name| *name != "weir_losses_total") {
        assert!(sampled.contains(name), "{name}: no sample");
    }
    assert!(body.contains("weir_sessions_detached_total 1\n"), "{body}");
    assert!(body.contains("weir_sessions_detached_now 1\n"));
    assert!(body.contains("weir_sessions_by_state{state=\"detached\"} 1\n"));
    assert!(body.contains("weir_closes_total{reason=\"PEER_CLOSED\"} 1\n"));
}

#[test]
fn promtool_check_metrics_accepts_the_exposition() {
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut promtool = match promtool {
        Ok(child) => child,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("promtool is needed in CI (apt-get install prometheus): {e}")
        }
        Err(e) => {
            eprintln!("skipped: promtool not runnable ({e}); apt-get install prometheus");
            return;
        }
    };
    let (_server, body) = metrics_of_a_busy_server();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("promtool check metrics: {:?} {report}", output.status);
    assert!(output.status.success(), "promtool: {report}\n{body}");
    assert!(report.trim().is_empty(), "promtool lint: {report}");
}
