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
        server.cli().args([
            "--server",
            &server.addr.to_string(),
            "pub",
            "-l",
            "db",
            "update",
        ]),
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
        .args(["pub", "-l", "db", "update"])
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
        summary.contains("db  1 subscriber, 1 published"),
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
            .args(["--server", &up.addr.to_string(), "pub", "-l", "db", "tick"]),
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

/// Sends `signal` (a name for kill(1), e.g. "INT") to `child`.
fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Issue 13: `pub db hello` publishes "hello" (event ""), like nats and redis-cli; a missing
/// message is a usage error, and stdin is read only with -l or --stdin.
#[test]
fn pub_with_two_words_publishes_the_second_and_without_a_message_exits_2() {
    let server = TestServer::start();
    let sub = server
        .cli()
        .args(["sub", "--json", "-n", "4", "db"])
        .spawn()
        .unwrap();
    server.wait_for("the subscription", |stats| subscribed(stats, "db"));

    let missing = run(server.cli().args(["pub", "db"]));
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing.stderr));
    assert!(
        text(&missing.stderr).contains("both a queue and a message must be given"),
        "{}",
        text(&missing.stderr)
    );
    // stdin is /dev/null here: before, this waited for stdin and published nothing.
    let two_words = run(server.cli().args(["pub", "db", "hello"]));
    assert!(two_words.status.success(), "{}", text(&two_words.stderr));
    let with_e = run(server.cli().args(["pub", "-e", "update", "db", "hi"]));
    assert!(with_e.status.success(), "{}", text(&with_e.stderr));
    let empty_lines = run(server.cli().args(["pub", "-l", "db", "insert"]));
    assert_eq!(empty_lines.status.code(), Some(1));
    assert_eq!(
        text(&empty_lines.stderr),
        "weir-cli: nothing published: stdin had no lines\n"
    );
    let whole = run_with_stdin(
        server.cli().args(["pub", "--stdin", "db", "file"]),
        b"line 1\nline 2\n",
    );
    assert!(whole.status.success(), "{}", text(&whole.stderr));
    let piped = run_with_stdin(server.cli().args(["pub", "db", "x"]), b"ignored\n");
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    assert!(
        text(&piped.stderr).contains("stdin is read only with -l"),
        "{}",
        text(&piped.stderr)
    );

    let received = finish(sub);
    assert!(received.status.success(), "{}", text(&received.stderr));
    let lines: Vec<serde_json::Value> = text(&received.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let got: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["event"].as_str().unwrap(), l["payload"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("", "hello"),
            ("update", "hi"),
            ("file", "line 1\nline 2\n"),
            ("", "x")
        ]
    );
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[0]["queue"], "db");
    assert_eq!(lines[0]["redelivered"], false);
    assert!(lines[0]["id"].is_u64());
}

/// Issue 13: a multi-line payload is one line of plain output; -vv shows seq and id.
#[test]
fn sub_escapes_newlines_and_vv_shows_seq_and_id() {
    let server = TestServer::start();
    let sub = server
        .cli()
        .args(["sub", "-vv", "-n", "1", "db"])
        .spawn()
        .unwrap();
    server.wait_for("the subscription", |stats| subscribed(stats, "db"));
    let published = run(server.cli().args(["pub", "db", "two\nlines"]));
    assert!(published.status.success(), "{}", text(&published.stderr));
    let received = finish(sub);
    assert!(received.status.success(), "{}", text(&received.stderr));
    assert_eq!(text(&received.stdout), "db \"\" seq=1 id=1 two\\nlines\n");
}

/// Issue 13: SIGINT and SIGTERM end `sub` with acks and BYE, leaving no detached session.
#[test]
fn sigint_and_sigterm_end_sub_cleanly_with_130_and_143() {
    let server = TestServer::start();
    for (signal, code, byes) in [("INT", 130, 1), ("TERM", 143, 2)] {
        let mut sub = server.cli().args(["sub", "db"]).spawn().unwrap();
        server.wait_for("the subscription", |stats| subscribed(stats, "db"));
        let published = run(server.cli().args(["pub", "db", "m"]));
        assert!(published.status.success(), "{}", text(&published.stderr));
        let mut line = [0u8; 2];
        sub.stdout.as_mut().unwrap().read_exact(&mut line).unwrap();
        assert_eq!(&line, b"m\n");
        send_signal(&sub, signal);
        let ended = finish(sub);
        assert_eq!(ended.status.code(), Some(code), "{}", text(&ended.stderr));
        server.wait_for("the session ended with BYE", |stats| {
            stats.sessions.is_empty() && stats.server.closes.get("CLIENT_BYE") == Some(&(2 * byes))
        });
        let stats = server.handle.stats().unwrap();
        assert_eq!(stats.server.messages_acked, byes);
        assert!(stats.queues.iter().all(|q| q.subscribers == 0), "{stats:?}");
    }
}

/// Issue 13: GOODBYE(SERVER_SHUTDOWN) is reported at once, with the retrying.
#[test]
fn sub_says_at_once_that_the_server_shut_down_and_that_it_is_reconnecting() {
    let server = TestServer::start();
    let mut sub = server
        .cli()
        .args(["sub", "db"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    server.wait_for("the subscription", |stats| subscribed(stats, "db"));
    server.handle.shutdown().unwrap();
    let mut stderr = std::io::BufReader::new(sub.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    let _ = sub.kill();
    let _ = sub.wait();
    assert!(line.contains("SERVER_SHUTDOWN"), "{line}");
    assert!(line.contains("reconnecting"), "{line}");
}

/// Issue 13: `-h HOST -p PORT` name the server (redis-cli habit); `-h` alone is help.
#[test]
fn h_and_p_name_the_server_and_h_alone_is_help() {
    let server = TestServer::start();
    let port = server.addr.port().to_string();
    let output = run(server.cli().env_remove("WEIR_SERVER").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "sessions",
    ]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("(this request)"),
        "{}",
        text(&output.stdout)
    );
    for args in [&["-h"][..], &["--help"], &["pub", "-h"], &["sub", "--help"]] {
        let help = run(server.cli().args(args));
        assert!(help.status.success(), "{args:?}: {}", text(&help.stderr));
        assert!(text(&help.stdout).contains("Usage: weir-cli"), "{args:?}");
    }
}

/// Issue 13: ids in `stats --json` are 16-digit hex strings, the form `sessions` prints.
#[test]
fn session_ids_are_hex_strings_in_json_and_the_same_hex_in_text() {
    let server = TestServer::start();
    let client = Client::connect(server.addr, &ClientOptions::default()).unwrap();
    let id = format!("{:016x}", client.session_id());
    let json = run(server.cli().args(["stats", "--json"]));
    assert!(json.status.success(), "{}", text(&json.stderr));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let ids: Vec<&str> = value["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().expect("a string id"))
        .collect();
    assert!(ids.contains(&id.as_str()), "{ids:?}");
    let sessions = run(server.cli().arg("sessions"));
    assert!(
        text(&sessions.stdout).contains(&format!("session_id={id} ")),
        "{}",
        text(&sessions.stdout)
    );
    client.bye().unwrap();
}

/// Issue 13: a server answering in HTTP is named as such, not as a huge frame length.
#[test]
fn a_server_that_answers_in_http_is_named_as_such() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let http = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    let output = run(Command::new(env!("CARGO_BIN_EXE_weir-cli"))
        .args(["-s", &addr.to_string(), "stats"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()));
    http.join().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("answered with HTTP"), "{stderr}");
    assert!(!stderr.contains("exceeds"), "{stderr}");
}

fn bench(server: &TestServer, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir-bench"));
    command
        .arg("throughput")
        .arg("--target")
        .arg(format!("weir://{}", server.addr))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Issue 13: weir-bench's JSON carries its version, the start time and the configuration
/// (defaults included), and a refused connection names the address.
#[test]
fn weir_bench_json_has_version_time_and_configuration_and_refusals_name_the_address() {
    let server = TestServer::start();
    let output = run(&mut bench(&server, &["-n", "1000", "--json"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["weir_bench_version"], env!("CARGO_PKG_VERSION"));
    assert!(report["started_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(report["configuration"]["scenario"], "throughput");
    assert_eq!(report["configuration"]["flags"]["count"], "1000");
    assert_eq!(
        report["configuration"]["flags"]["payload"], "64",
        "defaults too"
    );
    assert_eq!(report["interrupted_by_signal"], serde_json::Value::Null);

    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let refused = run(Command::new(env!("CARGO_BIN_EXE_weir-bench"))
        .args(["throughput", "-n", "10", "--target"])
        .arg(format!("weir://127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()));
    assert_eq!(refused.status.code(), Some(1));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}

/// Issue 13: SIGINT stops a weir-bench run: its links end with BYE (no session left
/// detached), the summary of what was measured is printed, the exit status is 130.
#[test]
fn sigint_stops_weir_bench_with_a_partial_summary_and_no_detached_sessions() {
    let server = TestServer::start();
    let child = bench(&server, &["-d", "120", "--json"]).spawn().unwrap();
    server.wait_for("the run under way", |stats| {
        stats.server.messages_delivered > 0
    });
    send_signal(&child, "INT");
    let output = finish(child);
    assert_eq!(output.status.code(), Some(130), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["interrupted_by_signal"], 2);
    assert_eq!(report["runs"].as_array().unwrap().len(), 1);
    server.wait_for("every bench session ended with BYE", |stats| {
        stats.sessions.is_empty() && stats.server.closes.get("CLIENT_BYE") == Some(&2)
    });
}
