//! Shared helpers: start a server, and a raw-socket connection for wire-level tests.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use weir::client::{Client, ClientOptions, ReconnectOptions, ReconnectingClient};
use weir::protocol::codec::{encode_hello, encode_publish, encode_subscription};
use weir::protocol::stats::StatsReport;
use weir::protocol::{decode, Hello, Op, Publish, Subscription};
use weir::{Config, Server, ServerHandle};

/// How long any single wait in a test may take before it counts as a failure. Generous: the
/// CI machine is shared; this bounds a hang, it does not measure speed.
pub const WAIT: Duration = Duration::from_secs(20);

/// Client options for tests: a name, the server's window, waits bounded by [`WAIT`].
pub fn client_options(name: &str) -> ClientOptions {
    ClientOptions {
        name: name.to_owned(),
        inflight_window: 0,
        timeout: Some(WAIT),
        auth: None,
        extensions: false,
    }
}

/// Reconnection in milliseconds, giving up only after [`WAIT`].
pub fn quick_reconnect() -> ReconnectOptions {
    ReconnectOptions {
        initial_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(50),
        give_up_after: Some(WAIT),
        ..ReconnectOptions::default()
    }
}

/// A reconnecting client with [`client_options`] and [`quick_reconnect`].
pub fn reconnecting(addr: SocketAddr, name: &str) -> ReconnectingClient {
    ReconnectingClient::connect(addr, &client_options(name), &quick_reconnect())
        .unwrap_or_else(|e| panic!("{name} connects: {e}"))
}

/// A plain client, e.g. a publisher straight to the server.
pub fn plain(addr: SocketAddr, name: &str) -> Client {
    Client::connect(addr, &client_options(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Publishes `payloads` as event `e` on `queue` and waits for their receipt.
pub fn publish_all(client: &mut Client, queue: &str, payloads: &[&str]) {
    let mut last = 0;
    for payload in payloads {
        last = client.publish(queue, "e", payload).expect("publish");
    }
    client.wait_receipt(last).expect("receipt");
}

/// A server running on its own thread, shut down when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::with_config(Config::default())
    }

    pub fn with_config(mut config: Config) -> TestServer {
        config.listen = "127.0.0.1:0".parse().unwrap();
        let (handle, thread) = Server::spawn(config).expect("server starts");
        TestServer {
            addr: handle.local_addr(),
            handle,
            thread: Some(thread),
        }
    }

    /// A server whose reloads (`handle.reload()`) load the configuration `load` returns, as
    /// SIGHUP does with the config file.
    pub fn with_reload(
        mut config: Config,
        load: impl Fn() -> Result<Config, weir::config::ConfigError> + Send + 'static,
    ) -> TestServer {
        config.listen = "127.0.0.1:0".parse().unwrap();
        let mut server = Server::bind(config).expect("server binds");
        server.reload_with(load);
        let handle = server.handle();
        let thread = std::thread::Builder::new()
            .name("weir-loop".into())
            .spawn(move || server.run())
            .expect("loop thread");
        TestServer {
            addr: handle.local_addr(),
            handle,
            thread: Some(thread),
        }
    }

    /// Reloads and waits until the loop has applied it (commands are handled in order).
    pub fn reload(&self) {
        self.handle.reload().expect("reload");
        let _ = self.stats();
    }

    pub fn stats(&self) -> StatsReport {
        self.handle.stats().expect("stats")
    }

    /// Polls the server's stats until `condition` holds (never sleeps blindly for state).
    pub fn wait_for(&self, what: &str, condition: impl Fn(&StatsReport) -> bool) -> StatsReport {
        let deadline = Instant::now() + WAIT;
        loop {
            let stats = self.stats();
            if condition(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {stats:#?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the server and waits for its thread; returns what `run` returned.
    pub fn stop(mut self) -> std::io::Result<()> {
        let _ = self.handle.shutdown();
        self.thread.take().unwrap().join().expect("loop thread")
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

/// An owned copy of a decoded frame: op and body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub op: u8,
    pub body: Vec<u8>,
}

impl RawFrame {
    /// ERROR or GOODBYE code.
    pub fn code(&self) -> u16 {
        u16::from_be_bytes([self.body[0], self.body[1]])
    }
}

/// A raw TCP connection for wire-level tests.
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    pub fn hello(&mut self, name: &str) -> RawFrame {
        let mut out = Vec::new();
        let hello = Hello {
            extensions: false,
            inflight_window: 0,
            client_name: name.as_bytes(),
            resume: None,
            auth: None,
        };
        encode_hello(&hello, &mut out).unwrap();
        self.send(&out);
        let welcome = self.read_frame().expect("WELCOME");
        assert_eq!(welcome.op, Op::Welcome as u8);
        welcome
    }

    pub fn subscribe(&mut self, queue: &str, event: Option<&str>) {
        let mut out = Vec::new();
        let sub = Subscription {
            queue: queue.as_bytes(),
            event: event.map(str::as_bytes),
            group: None,
            is_pattern: false,
            start: None,
        };
        encode_subscription(Op::Subscribe, &sub, &mut out).unwrap();
        self.send(&out);
        let reply = self.read_frame().expect("SUBSCRIBED");
        assert_eq!(reply.op, Op::Subscribed as u8);
    }

    pub fn publish(&mut self, seq: u64, queue: &str, event: &str, payload: &[u8]) {
        let mut out = Vec::new();
        let publish = Publish {
            seq,
            queue: queue.as_bytes(),
            event: event.as_bytes(),
            key: None,
            ttl_ms: None,
            payload,
        };
        encode_publish(&publish, &mut out).unwrap();
        self.send(&out);
    }

    /// Next frame, or `None` at EOF. Panics on a timeout or a reset.
    pub fn read_frame(&mut self) -> Option<RawFrame> {
        loop {
            match decode(&self.buf, u32::MAX) {
                Ok(Some((frame, used))) => {
                    let _ = frame;
                    let op = self.buf[5];
                    let body = self.buf[6..used].to_vec();
                    self.buf.drain(..used);
                    return Some(RawFrame { op, body });
                }
                Ok(None) => {}
                Err(e) => panic!("server sent undecodable bytes: {e}"),
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    assert!(self.buf.is_empty(), "EOF inside a frame");
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Reads frames until the server closes; returns them all.
    pub fn read_until_close(&mut self) -> Vec<RawFrame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.read_frame() {
            frames.push(frame);
        }
        frames
    }

    /// Expects exactly: a fatal ERROR with `code`, then EOF.
    pub fn expect_error_and_close(&mut self, code: weir::protocol::ErrorCode) {
        let frames = self.read_until_close();
        let last = frames
            .last()
            .unwrap_or_else(|| panic!("no ERROR before close"));
        assert_eq!(last.op, Op::Error as u8, "last frame is ERROR: {frames:?}");
        assert_eq!(
            last.code(),
            code as u16,
            "expected {code:?}, got {:?}: {}",
            weir::protocol::ErrorCode::from_u16(last.code()),
            String::from_utf8_lossy(&last.body[11..])
        );
        assert_eq!(last.body[2] & 0x01, 0x01, "ERROR is flagged fatal");
    }
}

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A fresh, empty directory named after `name` and this process.
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("weir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `text` to `name` in the directory; returns its path.
    pub fn file(&self, name: &str, text: &str) -> std::path::PathBuf {
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

/// A loopback address with a port that was free a moment ago (for external processes that
/// need to be told a port; tests of our own server bind port 0 instead).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
