//! weir-cli against a real server on 127.0.0.1:0, run as a child process.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use weir::client::{Client, ClientOptions, Event};
use weir::protocol::stats::StatsReport;
use weir::Config;

use common::{CutOnceProxy, Direction, TestServer, WAIT};

/// Waits for `child` (killing it after [`WAIT`]) and collects its output.
fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("weir-cli did not exit: {:?}", child.wait_with_output());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

fn run(command: &mut Command) -> Output {
    finish(command.spawn().expect("spawn weir-cli"))
}

/// Runs `command` with `input` on its stdin, then closed; collects its output.
fn run_with_stdin(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn weir-cli");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("write stdin");
    finish(child)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn subscribed(stats: &StatsReport, queue: &str) -> bool {
    stats
        .sessions
        .iter()
        .any(|s| s.subscriptions.iter().any(|sub| sub.queue == queue))
}

#[test]
fn pub_delivers_to_sub_which_prints_payloads_and_exits_after_count() {
    let server = TestServer::start();
    let sub = server.cli().args(["sub", "-n", "3", "db"]).spawn().unwrap();
    server.wait_for("the subscription", |stats| subscribed(stats, "db"));

    let published = run(server
        .cli()
        .args(["pub", "db", "update", "hello", "-n", "3"]));
    assert!(published.status.success(), "{}", text(&published.stderr));
    assert_eq!(published.stdout, b"", "pub prints nothing on success");

    let received = finish(sub);
    assert!(received.status.success(), "{}", text(&received.stderr));
    assert_eq!(text(&received.stdout), "hello\nhello\nhello\n");
    server.wait_for("every delivery acked", |stats| {
        stats.server.messages_acked == 3 && stats.server.closes.get("CLIENT_BYE") == Some(&2)
    });
}

#[test]
fn pub_reads_one_message_per_stdin_line_and_sub_v_prints_queue_and_event() {
    let server = TestServer::start();
    let sub = server
        .cli()
        .args(["sub", "-v", "-n", "3", "db", "update", "insert"])
        .spawn()
        .unwrap();
    server.wait_for("both subscriptions", |stats| {
        stats.sessions.iter().any(|s| s.subscriptions.len() == 2)
    });

    let published = run_with_stdin(
        server
            .cli()
            .args(["--server", &server.addr.to_string(), "pub", "db", "update"]),
        b"one\ntwo\r\n\n",
    );
    assert!(published.status.success(), "{}", text(&published.stderr));

    let received = finish(sub);
    assert!(received.status.success(), "{}", text(&received.stderr));
    assert_eq!(
        text(&received.stdout),
        "db update one\ndb update two\ndb update \n"
    );
}

#[test]
fn pub_keeps_its_session_alive_while_stdin_is_idle() {
    let server = TestServer::with_config(Config {
        heartbeat_interval_ms: 50,
        heartbeat_timeout_ms: 200,
        ..Config::default()
    });
    let sub = server.cli().args(["sub", "-n", "2", "db"]).spawn().unwrap();
    server.wait_for("the subscription", |stats| subscribed(stats, "db"));
    let mut publisher = server
        .cli()
        .args(["pub", "db", "update"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = publisher.stdin.take().unwrap();
    stdin.write_all(b"before\n").unwrap();
    // The stimulus, not a wait for state: stdin stays silent for several heartbeat timeouts.
    std::thread::sleep(Duration::from_millis(700));
    stdin.write_all(b"after\n").unwrap();
    drop(stdin);
    let published = finish(publisher);
    assert!(published.status.success(), "{}", text(&published.stderr));
    let received = finish(sub);
    assert!(received.status.success(), "{}", text(&received.stderr));
    assert_eq!(text(&received.stdout), "before\nafter\n");
}

#[test]
fn sub_sees_only_the_events_it_names() {
    let server = TestServer::start();
    let sub = server
        .cli()
        .args(["sub", "-n", "1", "db", "insert"])
        .spawn()
        .unwrap();
    server.wait_for("the subscription", |stats| subscribed(stats, "db"));
    for (event, payload) in [("update", "skipped"), ("insert", "wanted")] {
        let published = run(server.cli().args(["pub", "db", event, payload]));
        assert!(published.status.success(), "{}", text(&published.stderr));
    }
    let received = finish(sub);
    assert_eq!(text(&received.stdout), "wanted\n");
}

#[test]
fn pub_with_a_key_conflates_on_the_server() {
    let server = TestServer::start();
    // A subscriber that reads nothing keeps the messages queued on the server.
    let mut client = Client::connect(server.addr, &ClientOptions::default()).unwrap();
    client.subscribe_all("prices").unwrap();
    let published = run(server
        .cli()
        .args(["pub", "prices", "tick", "v", "-n", "5", "--key", "EURUSD"]));
    assert!(published.status.success(), "{}", text(&published.stderr));
    server.wait_for("conflation", |stats| stats.server.messages_published == 5);
    let stats = server.handle.stats().unwrap();
    let session = stats
        .sessions
        .iter()
        .find(|s| s.session_id == client.session_id())
        .unwrap();
    // Conflation only replaces messages not yet sent; all that is certain is that nothing was
    // lost or duplicated.
    assert_eq!(session.delivered + session.pending, 5 - session.conflated);
    match client.recv().unwrap() {
        Event::Deliver(delivery) => assert_eq!(delivery.payload, b"v"),
        other => panic!("expected a delivery, got {other:?}"),
    }
    client.bye().unwrap();
}

#[test]
fn stats_prints_a_summary_or_the_raw_json() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr, &ClientOptions::default()).unwrap();
    client.subscribe("db", "update").unwrap();
    client.publish("db", "update", "x").unwrap();
    client.wait_receipt(1).unwrap();

    let summary = run(server.cli().arg("stats"));
    assert!(summary.status.success(), "{}", text(&summary.stderr));
    let summary = text(&summary.stdout);
    assert!(summary.contains("subscriptions: db:update"), "{summary}");
    assert!(
        summary.contains("db  1 subscribers, 1 published"),
        "{summary}"
    );

    let json = run(server.cli().args(["stats", "--json"]));
    assert!(json.status.success(), "{}", text(&json.stderr));
    let report: StatsReport = serde_json::from_slice(&json.stdout).expect("valid JSON");
    assert_eq!(report.server.messages_published, 1);
    client.bye().unwrap();
}

#[test]
fn sub_with_a_timeout_stops_when_idle_and_fails_if_the_count_is_not_reached() {
    let server = TestServer::start();
    let idle = run(server.cli().args(["-W", "0.2", "sub", "quiet"]));
    assert!(idle.status.success(), "{}", text(&idle.stderr));
    assert_eq!(idle.stdout, b"");

    let short = run(server.cli().args(["sub", "quiet", "-n", "1", "-W", "0.2"]));
    assert_eq!(short.status.code(), Some(1));
    assert_eq!(
        text(&short.stderr),
        "weir-cli: timed out after 0 of 1 messages\n"
    );
}

#[test]
fn an_unreachable_server_exits_1_with_a_message() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let output = run(Command::new(env!("CARGO_BIN_EXE_weir-cli"))
        .args(["-s", &format!("127.0.0.1:{port}"), "pub", "q", "e", "m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()));
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("weir-cli: cannot connect to 127.0.0.1:"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let server = TestServer::start();
    for args in [
        &["pub", "q"][..],
        &["sub"],
        &["bench"],
        &["-W", "0", "stats"],
    ] {
        let output = run(server.cli().args(args));
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
}

#[test]
fn an_empty_queue_name_is_refused_without_ending_in_a_server_error() {
    let server = TestServer::start();
    let output = run(server.cli().args(["pub", "", "e", "m"]));
    assert_eq!(output.status.code(), Some(1));
    let mut stderr = String::new();
    output
        .stderr
        .as_slice()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(stderr, "weir-cli: invalid argument: queue name is empty\n");
}

#[test]
fn pub_and_sub_keep_going_across_cuts_and_sub_prints_each_message_once_in_order() {
    let server = TestServer::start();
    // The subscriber's first connection is cut on its way down, mid-stream; the publisher's on
    // its way up, after some of its publishes.
    let down = CutOnceProxy::start(server.addr, Direction::Down, 2_000);
    let up = CutOnceProxy::start(server.addr, Direction::Up, 3_000);
    let count = 300;
    let sub = server
        .cli()
        .args(["--server", &down.addr.to_string(), "sub", "-n"])
        .arg(count.to_string())
        .arg("db")
        .spawn()
        .unwrap();
    server.wait_for("the subscription", |stats| subscribed(stats, "db"));

    let lines: String = (0..count).map(|i| format!("line {i:04}\n")).collect();
    let published = run_with_stdin(
        server
            .cli()
            .args(["--server", &up.addr.to_string(), "pub", "db", "tick"]),
        lines.as_bytes(),
    );
    assert!(published.status.success(), "{}", text(&published.stderr));
    assert!(
        text(&published.stderr).contains("weir-cli: resumed session"),
        "{}",
        text(&published.stderr)
    );

    let received = finish(sub);
    assert!(received.status.success(), "{}", text(&received.stderr));
    assert_eq!(text(&received.stdout), lines);
    assert!(
        text(&received.stderr).contains("weir-cli: resumed session"),
        "{}",
        text(&received.stderr)
    );
    assert!(down.has_cut() && up.has_cut());
    server.wait_for("every message published once", |stats| {
        stats.server.messages_published == count
    });
}

/// A server that requires authentication, with user `alice` (password `alice-pw`).
fn server_with_alice() -> TestServer {
    TestServer::with_config(Config {
        allow_anonymous: Some(false),
        users: vec![weir::config::UserConfig {
            name: "alice".to_owned(),
            password_hash: Some(weir::credentials::hash_password_with(
                b"alice-pw",
                b"cli-test-salt",
                1_000,
            )),
            token_hash: None,
            publish: vec!["db".to_owned()],
            subscribe: vec!["db".to_owned()],
            admin: false,
        }],
        ..Config::default()
    })
}

/// A `weir-cli` command for `server` without any credentials from the test's environment.
fn cli_without_credentials(server: &TestServer) -> Command {
    let mut command = server.cli();
    command
        .env_remove("WEIR_PASSWORD")
        .env_remove("WEIR_TOKEN")
        .env_remove("WEIR_SIGNED_TOKEN");
    command
}

#[test]
fn user_with_weir_password_publishes_and_subscribes() {
    let server = server_with_alice();
    let sub = cli_without_credentials(&server)
        .env("WEIR_PASSWORD", "alice-pw")
        .args(["--user", "alice", "sub", "-n", "2", "db"])
        .spawn()
        .unwrap();
    server.wait_for("alice's subscription", |stats| {
        stats
            .sessions
            .iter()
            .any(|s| s.identity == "user:alice" && s.subscriptions.iter().any(|x| x.queue == "db"))
    });
    let published = run(cli_without_credentials(&server)
        .env("WEIR_PASSWORD", "alice-pw")
        .args(["pub", "db", "update", "hi", "-n", "2", "-u", "alice"]));
    assert!(published.status.success(), "{}", text(&published.stderr));
    let received = finish(sub);
    assert!(received.status.success(), "{}", text(&received.stderr));
    assert_eq!(text(&received.stdout), "hi\nhi\n");
    let stats = server.handle.stats().unwrap();
    assert_eq!(stats.server.messages_published, 2);
    assert_eq!(stats.server.auth_failures, 0);
}

#[test]
fn a_wrong_password_exits_1_with_a_message_and_user_without_weir_password_exits_2() {
    let server = server_with_alice();
    let wrong = run(cli_without_credentials(&server)
        .env("WEIR_PASSWORD", "not-alice-pw")
        .args(["--user", "alice", "pub", "db", "update", "hi"]));
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong.stderr));
    let stderr = text(&wrong.stderr);
    assert!(stderr.starts_with("weir-cli: "), "{stderr}");
    assert!(stderr.contains("AUTH_FAILED"), "{stderr}");
    assert!(
        !stderr.contains("not-alice-pw"),
        "the password is not shown: {stderr}"
    );
    server.wait_for("the failure counted", |stats| {
        stats.server.auth_failures == 1
    });

    let missing = run(cli_without_credentials(&server).args(["--user", "alice", "sub", "db"]));
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing.stderr));
    assert_eq!(
        text(&missing.stderr),
        "weir-cli: --user needs the password in the WEIR_PASSWORD variable\n"
    );
    // An empty variable counts as missing.
    let empty = run(cli_without_credentials(&server)
        .env("WEIR_PASSWORD", "")
        .args(["--user", "alice", "pub", "db", "update", "hi"]));
    assert_eq!(empty.status.code(), Some(2), "{}", text(&empty.stderr));
    let stats = server.handle.stats().unwrap();
    assert_eq!(stats.server.messages_published, 0);
    assert_eq!(
        stats.server.auth_failures, 1,
        "nothing was sent without a password"
    );
}
