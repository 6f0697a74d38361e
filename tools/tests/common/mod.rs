//! Shared by the tools' integration tests: a real server on 127.0.0.1:0 in a thread.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use weir::protocol::stats::StatsReport;
use weir::{Config, Server, ServerHandle};

/// Bounds every wait; a hang fails the test instead of blocking the run. Never asserted as a
/// duration.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::with_config(Config::default())
    }

    /// Starts a server with `config`, listening on a free loopback port.
    pub fn with_config(config: Config) -> TestServer {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..config
        };
        let (handle, thread) = Server::spawn(config).expect("server starts");
        TestServer {
            addr: handle.local_addr(),
            handle,
            thread: Some(thread),
        }
    }

    /// Polls the server's stats until `condition` holds (never sleeps blindly for state).
    pub fn wait_for(&self, what: &str, condition: impl Fn(&StatsReport) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let stats = self.handle.stats().expect("stats");
            if condition(&stats) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {stats:#?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A `weir-cli` command aimed at this server through `WEIR_SERVER`, output captured.
    pub fn cli(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir-cli"));
        command
            .env("WEIR_SERVER", self.addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.handle.shutdown();
            let _ = thread.join();
        }
    }
}
