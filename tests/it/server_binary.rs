//! The weir-server binary: config checking exit codes, systemd notifications, SIGHUP reload
//! without dropping connections, SIGTERM shutdown with exit 0.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use weir::client::{Client, ClientError, ClientOptions};
use weir::protocol::ErrorCode;

use crate::common::WAIT;

const SERVER: &str = env!("CARGO_BIN_EXE_weir-server");

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("weir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
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
