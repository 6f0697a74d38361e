use super::*;
use clap::CommandFactory;
use weir::protocol::stats::{QueueStats, ServerStats, SubscriptionStats};

#[test]
fn the_command_line_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn newlines_are_removed_from_stdin_lines() {
    assert_eq!(strip_newline(b"a\n"), b"a");
    assert_eq!(strip_newline(b"a\r\n"), b"a");
    assert_eq!(strip_newline(b"a"), b"a");
    assert_eq!(strip_newline(b"\n"), b"");
}

#[test]
fn resumes_and_losses_are_reported_in_one_line() {
    let resumed = Event::Resumed {
        session_id: 0x2a,
        resent: 0,
    };
    assert_eq!(
        reconnection_notice(&resumed).unwrap(),
        "weir-cli: resumed session 000000000000002a"
    );
    let lost = Event::Lost {
        reason: Some(weir::protocol::ErrorCode::SessionExpired),
        missed: Some(7),
        session_id: 0x2b,
        republished: 3,
    };
    assert_eq!(
        reconnection_notice(&lost).unwrap(),
        "weir-cli: LOST the session (SESSION_EXPIRED): 7 messages missed; continuing in \
         session 000000000000002b, 3 unreceipted publishes published again"
    );
    let unknown = Event::Lost {
        reason: None,
        missed: None,
        session_id: 1,
        republished: 0,
    };
    assert!(reconnection_notice(&unknown)
        .unwrap()
        .contains("an unknown number of messages missed"));
    assert_eq!(reconnection_notice(&Event::Receipt(1)), None);
}

#[test]
fn timeouts_are_positive_seconds() {
    assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
    assert!(parse_secs("0").is_err());
    assert!(parse_secs("-1").is_err());
    assert!(parse_secs("NaN").is_err());
    assert!(parse_secs("soon").is_err());
}

#[test]
fn the_summary_shows_sessions_with_subscriptions_and_queues() {
    let report = StatsReport {
        server: ServerStats {
            connections: 2,
            sessions: 2,
            queues: 1,
            messages_published: 5,
            closes: [(String::from("CLIENT_BYE"), 3)].into_iter().collect(),
            ..ServerStats::default()
        },
        sessions: vec![SessionStats {
            session_id: 4,
            client_name: String::from("weir-cli"),
            peer: String::from("127.0.0.1:5000"),
            state: String::from("connected"),
            subscriptions: vec![
                SubscriptionStats {
                    queue: String::from("db"),
                    event: Some(String::from("update")),
                },
                SubscriptionStats {
                    queue: String::from("db"),
                    event: None,
                },
            ],
            queue_depth: 7,
            in_flight: 2,
            pending: 5,
            ..SessionStats::default()
        }],
        queues: vec![QueueStats {
            name: String::from("db"),
            conflate: true,
            subscribers: 1,
            published: 5,
            ..QueueStats::default()
        }],
        sessions_omitted: 1,
        closed_sessions: Vec::new(),
        groups: Vec::new(),
        ..StatsReport::default()
    };
    let text = summarize(&report, 4);
    assert!(
        text.starts_with("server: 2 connections, 2 sessions (this request's included), 1 queue\n"),
        "{text}"
    );
    assert!(text.contains("closes: CLIENT_BYE 3"), "{text}");
    assert!(
        text.contains(
            "#0000000000000004 \"weir-cli\" from 127.0.0.1:5000, connected (this request)"
        ),
        "{text}"
    );
    assert!(
        text.contains("subscriptions: db:update, db (all events)"),
        "{text}"
    );
    assert!(
        text.contains("queue: 7 messages, 0 bytes (2 in flight, 5 pending)"),
        "{text}"
    );
    assert!(text.contains("1 more session not shown"), "{text}");
    assert!(
        text.contains("  db  1 subscriber, 5 published, conflating\n"),
        "{text}"
    );
}

#[test]
fn a_detached_session_shows_its_time_to_expiry_not_an_empty_peer() {
    let session = SessionStats {
        session_id: 0x2a,
        client_name: String::from("feed"),
        state: String::from("detached"),
        detached_ms: Some(800),
        expires_in_ms: Some(59_200),
        ..SessionStats::default()
    };
    let text = summarize_session(&session, false);
    assert!(
        text.starts_with("  #000000000000002a \"feed\" detached 0.8 s ago, expires in 59.2 s\n"),
        "{text}"
    );
    assert!(
        session_line(&session).contains("peer=- state=detached expires_in_ms=59200"),
        "{}",
        session_line(&session)
    );
}

/// Issue 13: `-s HOST` without a port, `-h HOST -p PORT`, IPv6.
#[test]
fn the_server_address_takes_a_host_without_port_and_h_p_overrides() {
    let addr = |server, host, port| server_address(server, host, port).unwrap();
    assert_eq!(addr("127.0.0.1", None, None), "127.0.0.1:7400");
    assert_eq!(addr("broker:7401", None, None), "broker:7401");
    assert_eq!(addr("broker:7401", Some("other"), None), "other:7401");
    assert_eq!(
        addr("127.0.0.1:7400", Some("10.0.0.1"), Some(9)),
        "10.0.0.1:9"
    );
    assert_eq!(addr("::1", None, None), "[::1]:7400");
    assert_eq!(addr("[::1]:7401", None, None), "[::1]:7401");
    assert_eq!(addr("x", Some("::1"), Some(1)), "[::1]:1");
    assert!(server_address("host:http", None, None).is_err());
    assert!(server_address("[::1", None, None).is_err());
}

#[test]
fn a_bare_h_is_help_and_h_with_a_value_is_the_host() {
    let args = |words: &[&str]| -> Vec<String> {
        help_for_bare_h(words.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    };
    assert_eq!(args(&["weir-cli", "-h"]), ["weir-cli", "--help"]);
    assert_eq!(
        args(&["weir-cli", "pub", "-h"]),
        ["weir-cli", "pub", "--help"]
    );
    assert_eq!(
        args(&["weir-cli", "-h", "-p", "1"]),
        ["weir-cli", "--help", "-p", "1"]
    );
    assert_eq!(
        args(&["weir-cli", "-h", "10.0.0.1", "stats"]),
        ["weir-cli", "-h", "10.0.0.1", "stats"]
    );
}

/// Issue 13: `pub QUEUE [EVENT] MESSAGE`, `-e`, `-l`, `--stdin`.
#[test]
fn pub_words_give_queue_event_and_message_or_stdin() {
    let plan = |words: &[&str]| {
        let cli = Cli::try_parse_from(["weir-cli", "pub"].iter().chain(words)).unwrap();
        let Command::Pub(args) = cli.command else {
            panic!("not pub")
        };
        PubPlan::from_args(&args)
    };
    let message = |queue: &str, event: &str, message: &str| PubPlan {
        queue: queue.into(),
        event: event.into(),
        source: Source::Message(message.into()),
    };
    assert_eq!(plan(&["db", "hello"]), Ok(message("db", "", "hello")));
    assert_eq!(
        plan(&["db", "update", "hi"]),
        Ok(message("db", "update", "hi"))
    );
    assert_eq!(
        plan(&["-e", "update", "db", "hi"]),
        Ok(message("db", "update", "hi"))
    );
    let lines = plan(&["-l", "db", "insert"]).unwrap();
    assert_eq!(
        (lines.event.as_str(), lines.source),
        ("insert", Source::Lines)
    );
    assert_eq!(plan(&["--stdin", "db"]).unwrap().source, Source::WholeStdin);
    for refused in [
        &["db"][..],
        &["-e", "x", "db"],
        &["-e", "x", "db", "y", "z"],
        &["-l", "a", "b", "c"],
    ] {
        assert!(plan(refused).is_err(), "{refused:?}");
    }
}

#[test]
fn plain_output_escapes_newlines_and_json_output_keeps_the_bytes() {
    let deliver = weir::client::Deliver {
        seq: 7,
        message_id: 42,
        flags: weir::protocol::frame::DELIVER_REDELIVERED,
        queue: b"db",
        event: b"",
        payload: b"a\nb\\c\r",
        delivery_count: None,
    };
    let mut out = Vec::new();
    print_delivery(&mut out, Format::Plain { verbose: 0 }, &deliver).unwrap();
    print_delivery(&mut out, Format::Plain { verbose: 1 }, &deliver).unwrap();
    print_delivery(&mut out, Format::Plain { verbose: 2 }, &deliver).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "a\\nb\\\\c\\r\ndb \"\" a\\nb\\\\c\\r\n\
         db \"\" seq=7 id=42 redelivered a\\nb\\\\c\\r\n"
    );
    let mut out = Vec::new();
    print_delivery(&mut out, Format::Json, &deliver).unwrap();
    let binary = weir::client::Deliver {
        payload: &[0xff, 0x00],
        flags: 0,
        ..deliver
    };
    print_delivery(&mut out, Format::Json, &binary).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        serde_json::json!({"queue": "db", "event": "", "seq": 7, "id": 42,
            "redelivered": true, "payload": "a\nb\\c\r", "encoding": "utf8"})
    );
    assert_eq!(lines[1]["payload"], "/wA=");
    assert_eq!(lines[1]["encoding"], "base64");
    assert_eq!(lines[1]["redelivered"], false);
}

#[test]
fn the_tls_name_defaults_to_the_host_of_the_server_address() {
    assert_eq!(host_part("broker.example:7400"), "broker.example");
    assert_eq!(host_part("[::1]:7400"), "::1");
    assert_eq!(host_part("localhost"), "localhost");
}

#[test]
fn a_session_line_shows_identity_subscriptions_queue_and_throttling() {
    let mut session = SessionStats {
        session_id: 9,
        client_name: String::from("sub one"),
        peer: String::from("127.0.0.1:5000"),
        identity: String::from("user:alice"),
        state: String::from("connected"),
        subscriptions: vec![
            SubscriptionStats {
                queue: String::from("db"),
                event: Some(String::from("update")),
            },
            SubscriptionStats {
                queue: String::from("jobs"),
                event: None,
            },
        ],
        queue_depth: 7,
        queue_bytes: 700,
        in_flight: 2,
        is_throttled: true,
        ..SessionStats::default()
    };
    assert_eq!(
        session_line(&session),
        "session_id=0000000000000009 client_name=\"sub one\" identity=user:alice \
         peer=127.0.0.1:5000 state=connected subscriptions=db:update,jobs:* queue_depth=7 \
         queue_bytes=700 in_flight=2 is_throttled=true"
    );
    session.identity.clear();
    session.subscriptions.clear();
    session.is_throttled = false;
    assert_eq!(
        session_line(&session),
        "session_id=0000000000000009 client_name=\"sub one\" peer=127.0.0.1:5000 state=connected \
         subscriptions=- queue_depth=7 queue_bytes=700 in_flight=2 is_throttled=false"
    );
}

/// Issue 9: weir-cli renders from the same declaration as `/metrics` and STATS_REPLY.
#[test]
fn counters_lists_every_declared_server_figure_with_its_help() {
    let report = StatsReport {
        server: ServerStats {
            messages_published: 5,
            closes: [(String::from("CLIENT_BYE"), 3)].into_iter().collect(),
            ..ServerStats::default()
        },
        ..StatsReport::default()
    };
    let text = counters(&report);
    let server_metrics = weir::metrics::ALL
        .iter()
        .filter(|m| m.json.starts_with("server."))
        .count();
    assert_eq!(text.lines().count(), server_metrics, "{text}");
    assert!(text.contains("messages_published 5 (counter) "), "{text}");
    assert!(text.contains("closes CLIENT_BYE=3 (counter) "), "{text}");
}
