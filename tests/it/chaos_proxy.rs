//! A chaos TCP proxy for fault tests (../shared/TESTING.md: `tc netem` is not available here).
//!
//! Sits between clients and the server on loopback. Every proxied connection forwards bytes
//! both ways in randomly sized slices and is cut (both sockets shut down, so each side sees
//! EOF, or a reset if it keeps writing) after a random number of bytes in either direction:
//! cuts land mid-frame, between a delivery and its ack, anywhere. It can also blackhole: keep
//! the sockets open and forward nothing, like a peer that went silent. Fault placement is
//! deterministic given the seed; thread scheduling is not.
//!
//! Two threads per connection (one per direction) with blocking sockets: simple, and enough
//! for the tens of connections a test makes at once.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does to each connection.
#[derive(Clone, Copy, Debug)]
pub struct ChaosConfig {
    /// Mean bytes forwarded per direction before a cut (uniform in 1..=2×mean); 0 disables
    /// cuts.
    pub mean_bytes_before_cut: u64,
    /// Largest slice written at once (slices are 1..=max_slice bytes).
    pub max_slice: usize,
}

impl ChaosConfig {
    /// Forwards everything, in one piece, and never cuts (faults only on demand).
    pub const PASS_THROUGH: ChaosConfig = ChaosConfig {
        mean_bytes_before_cut: 0,
        max_slice: 64 * 1024,
    };
}

/// Figures the proxy collects.
#[derive(Debug, Default)]
pub struct ChaosStats {
    /// Connections accepted and connected upstream.
    pub connections: AtomicU64,
    /// Connections cut at their random byte limit.
    pub cuts: AtomicU64,
    /// Of those, cuts that fell inside a frame of the direction that hit its limit.
    pub cuts_mid_frame: AtomicU64,
    /// Connections cut by [`ChaosProxy::cut_all`].
    pub forced_cuts: AtomicU64,
    /// Bytes forwarded client → server.
    pub bytes_up: AtomicU64,
    /// Bytes forwarded server → client.
    pub bytes_down: AtomicU64,
}

pub struct ChaosProxy {
    pub addr: SocketAddr,
    pub stats: Arc<ChaosStats>,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

/// State the accept thread and the pipes share with the test.
struct Shared {
    upstream: Mutex<SocketAddr>,
    stop: AtomicBool,
    blackhole: AtomicBool,
    /// Open connections by number; a connection leaves when both its pipes have ended, so
    /// file descriptors do not pile up over a long run.
    live: Mutex<HashMap<u64, Live>>,
}

struct Live {
    client: TcpStream,
    server: TcpStream,
    cut: Arc<AtomicBool>,
    /// Pipes still running (2, then 1, then the connection is removed).
    pipes: Arc<AtomicUsize>,
}

impl ChaosProxy {
    pub fn start(upstream: SocketAddr, config: ChaosConfig, seed: u64) -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stats = Arc::new(ChaosStats::default());
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            stop: AtomicBool::new(false),
            blackhole: AtomicBool::new(false),
            live: Mutex::new(HashMap::new()),
        });
        let accept_thread = {
            let (stats, shared) = (stats.clone(), shared.clone());
            std::thread::Builder::new()
                .name("chaos-accept".into())
                .spawn(move || accept_loop(listener, config, seed, &stats, &shared))
                .unwrap()
        };
        ChaosProxy {
            addr,
            stats,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// Stops (or resumes) forwarding on every connection without closing any.
    pub fn set_blackhole(&self, on: bool) {
        self.shared.blackhole.store(on, Ordering::SeqCst);
    }

    /// Sends new connections to another server (a restarted one).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.shared.upstream.lock().unwrap() = upstream;
    }

    /// Cuts every live connection now.
    pub fn cut_all(&self) {
        for live in self.shared.live.lock().unwrap().values() {
            if !live.cut.swap(true, Ordering::SeqCst) {
                self.stats.forced_cuts.fetch_add(1, Ordering::Relaxed);
            }
            let _ = live.client.shutdown(Shutdown::Both);
            let _ = live.server.shutdown(Shutdown::Both);
        }
    }

    pub fn cuts(&self) -> u64 {
        self.stats.cuts.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::Relaxed)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.set_blackhole(false);
        self.cut_all();
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    config: ChaosConfig,
    seed: u64,
    stats: &Arc<ChaosStats>,
    shared: &Arc<Shared>,
) {
    let mut rng = Rng(seed | 1);
    let mut next_id = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(_) => continue,
        };
        client.set_nonblocking(false).unwrap();
        let upstream = *shared.upstream.lock().unwrap();
        // Upstream down (a server being restarted): the client sees its connection close.
        let Ok(server) = TcpStream::connect(upstream) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let id = next_id;
        next_id += 1;
        let cut = Arc::new(AtomicBool::new(false));
        let pipes = Arc::new(AtomicUsize::new(2));
        shared.live.lock().unwrap().insert(
            id,
            Live {
                client: client.try_clone().unwrap(),
                server: server.try_clone().unwrap(),
                cut: cut.clone(),
                pipes: pipes.clone(),
            },
        );
        for (from, to, is_up) in [
            (
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                true,
            ),
            (server, client, false),
        ] {
            let limit = if config.mean_bytes_before_cut == 0 {
                u64::MAX
            } else {
                1 + rng.below(2 * config.mean_bytes_before_cut)
            };
            let pipe = Pipe {
                id,
                from,
                to,
                is_up,
                limit,
                max_slice: config.max_slice.max(1),
                rng: Rng(rng.next() | 1),
                frames: FrameTracker::default(),
                cut: cut.clone(),
                pipes: pipes.clone(),
                stats: stats.clone(),
                shared: shared.clone(),
            };
            std::thread::Builder::new()
                .name("chaos-pipe".into())
                .spawn(move || pipe.run())
                .unwrap();
        }
    }
}

struct Pipe {
    id: u64,
    from: TcpStream,
    to: TcpStream,
    is_up: bool,
    /// Bytes this direction forwards before it cuts the connection.
    limit: u64,
    max_slice: usize,
    rng: Rng,
    frames: FrameTracker,
    cut: Arc<AtomicBool>,
    pipes: Arc<AtomicUsize>,
    stats: Arc<ChaosStats>,
    shared: Arc<Shared>,
}

impl Pipe {
    fn run(mut self) {
        self.forward();
        // One side closed or the connection was cut: pass the close on.
        let _ = self.to.shutdown(Shutdown::Both);
        let _ = self.from.shutdown(Shutdown::Both);
        if self.pipes.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shared.live.lock().unwrap().remove(&self.id);
        }
    }

    fn forward(&mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut forwarded = 0u64;
        loop {
            let n = match self.from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            while self.shared.blackhole.load(Ordering::SeqCst) {
                if self.cut.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut pos = 0;
            while pos < n {
                if self.cut.load(Ordering::SeqCst) {
                    return;
                }
                if forwarded >= self.limit {
                    self.cut_now();
                    return;
                }
                let slice = 1 + self.rng.below(self.max_slice as u64) as usize;
                let left = usize::try_from(self.limit - forwarded).unwrap_or(usize::MAX);
                let slice = slice.min(n - pos).min(left);
                if self.to.write_all(&buf[pos..pos + slice]).is_err() {
                    return;
                }
                self.frames.advance(&buf[pos..pos + slice]);
                pos += slice;
                forwarded += slice as u64;
                let counter = if self.is_up {
                    &self.stats.bytes_up
                } else {
                    &self.stats.bytes_down
                };
                counter.fetch_add(slice as u64, Ordering::Relaxed);
            }
            if forwarded >= self.limit {
                self.cut_now();
                return;
            }
        }
    }

    fn cut_now(&self) {
        if !self.cut.swap(true, Ordering::SeqCst) {
            self.stats.cuts.fetch_add(1, Ordering::Relaxed);
            if self.frames.is_mid_frame() {
                self.stats.cuts_mid_frame.fetch_add(1, Ordering::Relaxed);
            }
        }
        let _ = self.from.shutdown(Shutdown::Both);
        let _ = self.to.shutdown(Shutdown::Both);
    }
}

/// Follows the frame boundaries of one direction from the 4-byte length prefixes, to tell
/// whether a cut fell inside a frame.
#[derive(Debug, Default)]
struct FrameTracker {
    /// Length prefix bytes seen of the next frame (0..4).
    prefix: [u8; 4],
    prefix_len: usize,
    /// Bytes of the current frame still to come after its prefix.
    body_left: u64,
}

impl FrameTracker {
    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = bytes
                    .len()
                    .min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                self.body_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            self.prefix[self.prefix_len] = bytes[0];
            self.prefix_len += 1;
            bytes = &bytes[1..];
            if self.prefix_len == 4 {
                self.prefix_len = 0;
                self.body_left = u64::from(u32::from_be_bytes(self.prefix));
            }
        }
    }

    fn is_mid_frame(&self) -> bool {
        self.prefix_len > 0 || self.body_left > 0
    }
}

/// xorshift64*: small, deterministic, good enough for fault placement.
#[derive(Clone, Copy, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
