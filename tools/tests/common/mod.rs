//! Shared by the tools' integration tests: a real server on 127.0.0.1:0 in a thread.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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

/// Which way [`CutOnceProxy`] counts bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// A TCP proxy that cuts the first connection it carries (both sockets shut down) once
/// `cut_after` bytes have gone in `direction`, usually mid-frame; later connections pass
/// through untouched.
pub struct CutOnceProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl CutOnceProxy {
    pub fn start(upstream: SocketAddr, direction: Direction, cut_after: u64) -> CutOnceProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (cut_flag, stop_flag) = (cut.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut first = true;
            while !stop_flag.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let limit = |way| {
                    if first && way == direction {
                        cut_after
                    } else {
                        u64::MAX
                    }
                };
                let up = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (up_limit, down_limit) = (limit(Direction::Up), limit(Direction::Down));
                let flag = cut_flag.clone();
                std::thread::spawn(move || forward(up.0, up.1, up_limit, &flag));
                let flag = cut_flag.clone();
                std::thread::spawn(move || forward(server, client, down_limit, &flag));
                first = false;
            }
        });
        CutOnceProxy { addr, cut, stop }
    }

    /// True once the cut has happened.
    pub fn has_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for CutOnceProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either closes or `limit` bytes have passed, then shuts both
/// down.
fn forward(mut from: TcpStream, mut to: TcpStream, limit: u64, cut: &AtomicBool) {
    let mut buf = [0u8; 4096];
    let mut forwarded = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let room = usize::try_from(limit - forwarded).unwrap_or(usize::MAX);
        let n_forward = n.min(room);
        if to.write_all(&buf[..n_forward]).is_err() {
            break;
        }
        forwarded += n_forward as u64;
        if forwarded >= limit {
            cut.store(true, Ordering::SeqCst);
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
