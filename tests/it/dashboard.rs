//! The dashboard on the HTTP listener (issue 11): `GET /` serves the embedded page,
//! `GET /stats.json` the STATS_REPLY document it polls; off loopback both need HTTP Basic
//! credentials of an admin user. (The page itself is driven in Chromium by tests/browser.)

use base64::Engine;
use weir::config::UserConfig;
use weir::credentials::hash_password;
use weir::protocol::stats::StatsReport;
use weir::Config;

use crate::common::{RawConn, TestServer};
use crate::metrics_endpoint::get;

fn body(response: &str) -> (&str, &str) {
    response.split_once("\r\n\r\n").unwrap()
}

#[test]
fn on_loopback_the_page_and_its_json_are_served_without_credentials() {
    let server = TestServer::with_config(Config {
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Config::default()
    });
    let http = server.handle.metrics_addr().unwrap();
    let mut client = RawConn::connect(server.addr);
    client.hello("dash-client");
    client.subscribe("db", None);

    let page = get(http, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, html) = body(&page);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("Content-Type: text/html"));
    assert!(head.contains("Content-Security-Policy: default-src 'none'"));
    assert!(html.contains("stats.json") && html.contains("<canvas"));
    assert!(!html.contains("src=\"http"), "no external assets");

    let json = get(http, "GET /stats.json HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, json) = body(&json);
    assert!(head.contains("Content-Type: application/json"), "{head}");
    let report: StatsReport = serde_json::from_str(json).unwrap();
    let session = report
        .sessions
        .iter()
        .find(|s| s.client_name == "dash-client")
        .unwrap();
    assert_eq!(session.subscriptions[0].queue, "db");
    assert_eq!(report.queues[0].subscribers, 1);
}

#[test]
fn off_loopback_an_admin_password_is_required() {
    let user = |name: &str, admin: bool| UserConfig {
        name: name.into(),
        password_hash: Some(hash_password(b"s3cret").unwrap()),
        token_hash: None,
        publish: vec![],
        subscribe: vec![],
        admin,
    };
    let server = TestServer::with_config(Config {
        // Unspecified, so not a loopback listener, though the test reaches it on 127.0.0.1.
        http_listen: Some("0.0.0.0:0".parse().unwrap()),
        users: vec![user("ops", true), user("app", false)],
        ..Config::default()
    });
    let port = server.handle.metrics_addr().unwrap().port();
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let basic = |credentials: &str| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        format!("GET /stats.json HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {encoded}\r\n\r\n")
    };
    let anonymous = get(http, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    assert!(anonymous.contains("WWW-Authenticate: Basic realm=\"weir\""));
    assert!(get(http, &basic("ops:wrong")).starts_with("HTTP/1.1 401"));
    assert!(get(http, &basic("app:s3cret")).starts_with("HTTP/1.1 403"));
    let ok = get(http, &basic("ops:s3cret"));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    serde_json::from_str::<StatsReport>(body(&ok).1).unwrap();
    // /metrics stays as it was.
    assert!(get(http, "GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
    assert_eq!(server.stats().server.auth_failures, 1);
}
