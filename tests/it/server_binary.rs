//! The weir-server binary: config checking exit codes, systemd notifications, SIGHUP reload
//! without dropping connections, SIGTERM shutdown with exit 0.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir::client::{Client, ClientError, ClientOptions, Credentials, Event};
use weir::credentials::hash_password_with;
use weir::protocol::stats::StatsReport;
use weir::protocol::ErrorCode;

use crate::common::{free_addr, TempDir, WAIT};

const SERVER: &str = env!("CARGO_BIN_EXE_weir-server");

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn check(config: &Path) -> i32 {
    Command::new(SERVER)
        .arg("-t")
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .code()
        .unwrap()
}

/// The stdout of a command that must have exited 0 (its stderr in the failure message).
fn succeeded(output: std::process::Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn next_notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("a notification from weir-server");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn check_config_exits_0_for_a_good_file_78_for_a_bad_one_and_2_for_bad_usage() {
    let dir = TempDir::new("check");
    assert_eq!(check(&dir.file("good.toml", "max_queue_depth = 10\n")), 0);
    assert_eq!(check(&dir.file("typo.toml", "max_queue_dept = 10\n")), 78);
    assert_eq!(check(&dir.file("zero.toml", "max_queue_depth = 0\n")), 78);
    assert_eq!(check(&dir.0.join("missing.toml")), 78);
    let usage = Command::new(SERVER)
        .arg("--no-such-flag")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(usage.code(), Some(2));
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("weir.toml");
    assert_eq!(check(&shipped), 0, "the example weir.toml is valid");
}

#[test]
fn sighup_reloads_limits_without_dropping_clients_and_sigterm_exits_0() {
    let dir = TempDir::new("reload");
    let addr = free_addr();
    let config = |depth: u32| format!("listen = \"{addr}\"\nmax_queue_depth = {depth}\n");
    let path = dir.file("weir.toml", &config(100));
    let notify_path = dir.0.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(WAIT)).unwrap();
    let child = Command::new(SERVER)
        .arg("-c")
        .arg(&path)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Running(child);
    assert_eq!(next_notification(&notify), "READY=1");

    let options = ClientOptions {
        timeout: Some(WAIT),
        ..ClientOptions::default()
    };
    let mut before = Client::connect(addr, &options).unwrap();
    assert_eq!(before.welcome().max_queue_depth, 100);

    std::fs::write(&path, config(200)).unwrap();
    signal(&server.0, "HUP");
    assert_eq!(next_notification(&notify), "RELOADING=1");
    assert_eq!(next_notification(&notify), "READY=1");
    let after = Client::connect(addr, &options).unwrap();
    assert_eq!(after.welcome().max_queue_depth, 200, "new limits apply");
    before
        .ping()
        .expect("the earlier client is still connected");

    // A bad file is refused and the running configuration stays.
    std::fs::write(&path, "max_queue_depth = 0\n").unwrap();
    signal(&server.0, "HUP");
    assert_eq!(next_notification(&notify), "RELOADING=1");
    assert_eq!(next_notification(&notify), "READY=1");
    let third = Client::connect(addr, &options).unwrap();
    assert_eq!(third.welcome().max_queue_depth, 200);

    signal(&server.0, "TERM");
    assert_eq!(next_notification(&notify), "STOPPING=1");
    let err = loop {
        match before.recv_timeout(Duration::from_secs(5)) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            err,
            ClientError::Goodbye {
                code: Ok(ErrorCode::ServerShutdown),
                ..
            }
        ),
        "{err:?}"
    );
    let mut server = server;
    let status = server.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "clean shutdown exits 0");
}

/// Starts weir-server on `path` and waits for its READY notification.
fn start_notified(dir: &TempDir, path: &Path) -> (Running, UnixDatagram) {
    let notify_path = dir.0.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(WAIT)).unwrap();
    let child = Command::new(SERVER)
        .arg("-c")
        .arg(path)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Running(child);
    assert_eq!(next_notification(&notify), "READY=1");
    (server, notify)
}

fn with_auth(credentials: Credentials) -> ClientOptions {
    ClientOptions {
        timeout: Some(WAIT),
        auth: Some(credentials),
        ..ClientOptions::default()
    }
}

fn expect_auth_failed(result: Result<Client, ClientError>) {
    match result {
        Err(ClientError::Server {
            code: Ok(ErrorCode::AuthFailed),
            fatal: true,
            ..
        }) => {}
        Err(other) => panic!("expected AUTH_FAILED, got {other:?}"),
        Ok(_) => panic!("expected AUTH_FAILED, got a session"),
    }
}

#[test]
fn sighup_replacing_users_changes_passwords_for_new_connections_only() {
    let dir = TempDir::new("reload-users");
    let addr = free_addr();
    let config = |password: &str| {
        let hash = hash_password_with(password.as_bytes(), b"reload-salt", 1_000);
        format!(
            "listen = \"{addr}\"\nallow_anonymous = false\n\n[[users]]\nname = \"alice\"\n\
             password_hash = \"{hash}\"\npublish = [\"*\"]\nsubscribe = [\"*\"]\n"
        )
    };
    let path = dir.file("weir.toml", &config("old-pw"));
    let (server, notify) = start_notified(&dir, &path);

    let mut before = Client::connect(addr, &with_auth(Credentials::password("alice", "old-pw")))
        .expect("the old password works before the reload");
    before.subscribe_all("q").unwrap();

    std::fs::write(&path, config("new-pw")).unwrap();
    signal(&server.0, "HUP");
    assert_eq!(next_notification(&notify), "RELOADING=1");
    assert_eq!(next_notification(&notify), "READY=1");

    let mut after = Client::connect(addr, &with_auth(Credentials::password("alice", "new-pw")))
        .expect("the new password works after the reload");
    expect_auth_failed(Client::connect(
        addr,
        &with_auth(Credentials::password("alice", "old-pw")),
    ));

    // The session authenticated before the reload stays connected and keeps working.
    before
        .ping()
        .expect("the earlier session is still connected");
    let seq = after.publish("q", "e", b"after reload").unwrap();
    after.wait_receipt(seq).unwrap();
    let delivery = loop {
        match before.recv().unwrap() {
            Event::Deliver(delivery) => break delivery,
            Event::Receipt(_) => {}
            other => panic!("expected a delivery, got {other:?}"),
        }
    };
    assert_eq!(&delivery.payload[..], b"after reload");
}

#[test]
fn hash_password_and_sign_token_make_credentials_the_server_accepts() {
    use base64::Engine;
    let dir = TempDir::new("auth-cli");
    let addr = free_addr();

    let mut hashing = Command::new(SERVER)
        .arg("--hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    hashing
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let hash = succeeded(hashing.wait_with_output().unwrap());
    let hash = hash.trim_end();
    assert!(hash.starts_with("pbkdf2-sha256$"), "{hash}");

    let key = base64::engine::general_purpose::STANDARD.encode([0x5a; 32]);
    let path = dir.file(
        "weir.toml",
        &format!(
            "listen = \"{addr}\"\nallow_anonymous = false\ntoken_signing_key = \"{key}\"\n\n\
             [[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nsubscribe = [\"a.*\"]\n"
        ),
    );
    assert_eq!(check(&path), 0, "the config accepts the printed hash");

    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let payload = format!(r#"{{"subject":"svc","exp":{exp},"subscribe":["svc.*"],"admin":true}}"#);
    let token = succeeded(
        Command::new(SERVER)
            .arg("-c")
            .arg(&path)
            .arg("--sign-token")
            .arg(&payload)
            .stderr(Stdio::piped())
            .output()
            .unwrap(),
    );
    let token = token.trim_end();
    assert!(token.contains('.'), "{token}");

    let (_server, _notify) = start_notified(&dir, &path);
    let mut alice = Client::connect(
        addr,
        &with_auth(Credentials::password("alice", "correct horse")),
    )
    .expect("the hashed password authenticates");
    alice.subscribe_all("a.b").unwrap();
    expect_auth_failed(Client::connect(
        addr,
        &with_auth(Credentials::password("alice", "correct horse\n")),
    ));

    let mut svc = Client::connect(addr, &with_auth(Credentials::signed_token(token)))
        .expect("the signed token authenticates");
    svc.subscribe_all("svc.jobs").unwrap();
    match svc.subscribe_all("a.b") {
        Err(ClientError::Server {
            code: Ok(ErrorCode::NotAuthorized),
            fatal: false,
            ..
        }) => {}
        other => panic!("expected NOT_AUTHORIZED, got {other:?}"),
    }
    let report = svc.stats().expect("the token grants admin");
    let report: StatsReport = serde_json::from_str(&report).unwrap();
    let identities: Vec<&str> = report
        .sessions
        .iter()
        .map(|s| s.identity.as_str())
        .collect();
    assert!(identities.contains(&"subject:svc"), "{identities:?}");
    assert!(identities.contains(&"user:alice"), "{identities:?}");
}

/// Issue 13: `-t` reads and parses the TLS files, and a start with a TLS file that does not
/// work exits 78 (a config error systemd does not restart on), like every config error.
#[test]
fn check_config_and_start_refuse_missing_or_bad_tls_files_with_78() {
    let dir = TempDir::new("tls-check");
    let not_pem = dir.file("not-a-cert.pem", "hello\n");
    let missing = dir.0.join("missing.pem");
    for (cert, key) in [(&missing, &missing), (&not_pem, &not_pem)] {
        let text = format!(
            "listen = \"{}\"\ntls_cert = {:?}\ntls_key = {:?}\n",
            free_addr(),
            cert.display().to_string(),
            key.display().to_string()
        );
        let path = dir.file("tls.toml", &text);
        assert_eq!(check(&path), 78, "{text}");
        let start = Command::new(SERVER)
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(start.status.code(), Some(78), "{text}");
        let stderr = String::from_utf8_lossy(&start.stderr);
        assert!(stderr.contains(&cert.display().to_string()), "{stderr}");
    }
}

/// Issue 13: --pid-file is written once the server listens and removed at a clean exit.
#[test]
fn the_pid_file_is_written_at_start_and_removed_at_a_clean_exit() {
    let dir = TempDir::new("pid-file");
    let path = dir.file("weir.toml", &format!("listen = \"{}\"\n", free_addr()));
    let pid_file = dir.0.join("weir.pid");
    let notify_path = dir.0.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(WAIT)).unwrap();
    let child = Command::new(SERVER)
        .arg("-c")
        .arg(&path)
        .arg("--pid-file")
        .arg(&pid_file)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Running(child);
    assert_eq!(next_notification(&notify), "READY=1");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(pid, format!("{}\n", server.0.id()));
    signal(&server.0, "TERM");
    assert_eq!(server.0.wait().unwrap().code(), Some(0));
    assert!(!pid_file.exists(), "removed at a clean exit");
}

/// Issue 13: --print-config does not show token_signing_key and lists unset keys as comments;
/// an unknown key gets a suggestion.
#[test]
fn print_config_hides_the_signing_key_and_typos_get_a_suggestion() {
    let dir = TempDir::new("print-config");
    let key = "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=";
    let path = dir.file("weir.toml", &format!("token_signing_key = \"{key}\"\n"));
    let printed = succeeded(
        Command::new(SERVER)
            .arg("--print-config")
            .arg("-c")
            .arg(&path)
            .output()
            .unwrap(),
    );
    assert!(!printed.contains(key), "{printed}");
    assert!(printed.contains("# token_signing_key is set"), "{printed}");
    assert!(printed.contains("# http_listen = "), "{printed}");
    let typo = Command::new(SERVER)
        .arg("-t")
        .arg("-c")
        .arg(dir.file("typo.toml", "max_queue_dept = 10\n"))
        .output()
        .unwrap();
    assert_eq!(typo.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(
        stderr.contains("did you mean `max_queue_depth`?"),
        "{stderr}"
    );
}

/// Issue 13: log lines name a connection by its peer address and its session (16 hex
/// digits), not by a reused slot number.
#[test]
fn log_lines_name_the_peer_and_the_session_in_hex() {
    let dir = TempDir::new("log-lines");
    let addr = free_addr();
    let path = dir.file("weir.toml", &format!("listen = \"{addr}\"\n"));
    let notify_path = dir.0.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(WAIT)).unwrap();
    let child = Command::new(SERVER)
        .arg("-c")
        .arg(&path)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Running(child);
    assert_eq!(next_notification(&notify), "READY=1");
    let options = ClientOptions {
        timeout: Some(WAIT),
        ..ClientOptions::default()
    };
    let client = Client::connect(addr, &options).unwrap();
    let peer = client.local_addr().unwrap();
    let session = format!("{:016x}", client.session_id());
    client.bye().unwrap();
    signal(&server.0, "TERM");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut server.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(server.0.wait().unwrap().code(), Some(0));
    assert!(
        stderr.contains(&format!("{peer} session {session}: session opened")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("connection from {peer} closed: CLIENT_BYE")),
        "{stderr}"
    );
    assert!(!stderr.contains("conn 0"), "{stderr}");
}

// Issue #12: an empty config file was accepted on SIGHUP as all defaults, and a reload could
// widen access silently.
#[test]
fn sighup_refuses_an_empty_file_and_a_widening_without_its_marker() {
    let dir = TempDir::new("reload-closed");
    let addr = free_addr();
    let users = |extra: &str| {
        let hash = hash_password_with(b"pw", b"reload-salt", 1_000);
        format!(
            "listen = \"{addr}\"\n{extra}allow_anonymous = false\n\n[[users]]\nname = \"alice\"\n\
             password_hash = \"{hash}\"\npublish = [\"*\"]\nsubscribe = [\"*\"]\n"
        )
    };
    let path = dir.file("weir.toml", &users(""));
    let (server, notify) = start_notified(&dir, &path);
    let anonymous = || Client::connect(addr, &ClientOptions::default());
    assert!(anonymous().is_err(), "anonymous HELLOs are refused");
    let reload = |text: &str| {
        std::fs::write(&path, text).unwrap();
        signal(&server.0, "HUP");
        assert_eq!(next_notification(&notify), "RELOADING=1");
        assert_eq!(next_notification(&notify), "READY=1");
    };
    // An empty (truncated) file: refused, the running configuration stays.
    reload("");
    assert!(anonymous().is_err(), "still refused after an empty file");
    Client::connect(addr, &with_auth(Credentials::password("alice", "pw")))
        .expect("alice still works after an empty file");
    // Allowing anonymous HELLOs without the marker: refused.
    reload(&format!("listen = \"{addr}\"\nallow_anonymous = true\n"));
    assert!(anonymous().is_err(), "a silent widening is refused");
    // With the marker: applied.
    reload(&format!(
        "listen = \"{addr}\"\nallow_anonymous = true\nreload_widens_access = true\n"
    ));
    anonymous().expect("the explicit widening is applied");
}
