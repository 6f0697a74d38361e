//! A chaos TCP proxy for fault tests (../shared/TESTING.md: `tc netem` is not available here).
//!
//! Sits between clients and the server on loopback. Every proxied connection forwards bytes
//! both ways in randomly sized slices and is cut (both sockets shut down, so each side sees
//! EOF or a reset) after a random number of bytes in either direction: cuts land mid-frame,
//! between a delivery and its ack, anywhere. It can also blackhole: keep the sockets open and
//! forward nothing, like a peer that went silent. Deterministic given its seed, except for
//! thread scheduling.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does to each connection.
#[derive(Clone, Copy, Debug)]
pub struct ChaosConfig {
    /// Mean bytes forwarded (per direction) before a cut; 0 disables cuts.
    pub mean_bytes_before_cut: u64,
    /// Largest slice written at once (slices are 1..=max_slice bytes).
    pub max_slice: usize,
}

/// Figures the proxy collects.
#[derive(Debug, Default)]
pub struct ChaosStats {
    pub connections: AtomicU64,
    pub cuts: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
}

pub struct ChaosProxy {
    pub addr: SocketAddr,
    pub stats: Arc<ChaosStats>,
    stop: Arc<AtomicBool>,
    blackhole: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<(TcpStream, TcpStream)>>>,
    accept_thread: Option<JoinHandle<()>>,
}

impl ChaosProxy {
    pub fn start(upstream: SocketAddr, config: ChaosConfig, seed: u64) -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stats = Arc::new(ChaosStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let blackhole = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Mutex::new(Vec::new()));
        let accept_thread = {
            let (stats, stop, blackhole, live) =
                (stats.clone(), stop.clone(), blackhole.clone(), live.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(seed | 1);
                while !stop.load(Ordering::Relaxed) {
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
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    live.lock()
                        .unwrap()
                        .push((client.try_clone().unwrap(), server.try_clone().unwrap()));
                    let cut = Arc::new(AtomicBool::new(false));
                    for (from, to, is_up) in [
                        (client.try_clone().unwrap(), server.try_clone().unwrap(), true),
                        (server.try_clone().unwrap(), client.try_clone().unwrap(), false),
                    ] {
                        let limit = if config.mean_bytes_before_cut == 0 {
                            u64::MAX
                        } else {
                            1 + rng.below(2 * config.mean_bytes_before_cut)
                        };
                        let pipe = Pipe {
                            from,
                            to,
                            is_up,
                            limit,
                            max_slice: config.max_slice.max(1),
                            rng: Rng(rng.next() | 1),
                            cut: cut.clone(),
                            blackhole: blackhole.clone(),
                            stats: stats.clone(),
                        };
                        std::thread::spawn(move || pipe.run());
                    }
                }
            })
        };
        ChaosProxy {
            addr,
            stats,
            stop,
            blackhole,
            live,
            accept_thread: Some(accept_thread),
        }
    }

    /// Stops (or resumes) forwarding on every connection without closing any.
    pub fn set_blackhole(&self, on: bool) {
        self.blackhole.store(on, Ordering::Relaxed);
    }

    /// Cuts every live connection now.
    pub fn cut_all(&self) {
        for (client, server) in self.live.lock().unwrap().drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    pub fn cuts(&self) -> u64 {
        self.stats.cuts.load(Ordering::Relaxed)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut_all();
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

struct Pipe {
    from: TcpStream,
    to: TcpStream,
    is_up: bool,
    limit: u64,
    max_slice: usize,
    rng: Rng,
    cut: Arc<AtomicBool>,
    blackhole: Arc<AtomicBool>,
    stats: Arc<ChaosStats>,
}

impl Pipe {
    fn run(mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut forwarded = 0u64;
        loop {
            let n = match self.from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            while self.blackhole.load(Ordering::Relaxed) && !self.cut.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut pos = 0;
            while pos < n {
                if self.cut.load(Ordering::Relaxed) {
                    return;
                }
                let slice = (1 + self.rng.below(self.max_slice as u64) as usize).min(n - pos);
                let slice = slice.min((self.limit - forwarded) as usize).max(1);
                if forwarded >= self.limit {
                    self.cut_now();
                    return;
                }
                if self.to.write_all(&buf[pos..pos + slice]).is_err() {
                    self.cut_now();
                    return;
                }
                pos += slice;
                forwarded += slice as u64;
                let counter = if self.is_up {
                    &self.stats.bytes_up
                } else {
                    &self.stats.bytes_down
                };
                counter.fetch_add(slice as u64, Ordering::Relaxed);
            }
        }
        // One side closed: pass the close on.
        let _ = self.to.shutdown(Shutdown::Both);
        let _ = self.from.shutdown(Shutdown::Both);
    }

    fn cut_now(&self) {
        if !self.cut.swap(true, Ordering::Relaxed) {
            self.stats.cuts.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.from.shutdown(Shutdown::Both);
        let _ = self.to.shutdown(Shutdown::Both);
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
