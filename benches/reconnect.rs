//! Reconnect-to-first-redelivery latency on loopback (issue 3's closing figure).
//!
//! A subscriber holds an unacked delivery, drops its TCP connection, opens a new one and
//! resumes (HELLO with the resume block, claiming it never received that delivery). Measured:
//! from starting the new TCP connect to reading the REDELIVERED DELIVER. A real server on
//! 127.0.0.1:0 in this process, real sockets; prints median / p90 / p99 / max.
//!
//! `cargo bench --bench reconnect` (WEIR_RECONNECT_ROUNDS, default 2,000).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use weir::protocol::codec::{encode_ack, encode_hello, encode_publish, encode_subscription};
use weir::protocol::frame::DELIVER_REDELIVERED;
use weir::protocol::{decode, Frame, Hello, Op, Publish, Resume, Subscription, Welcome};
use weir::{Config, Server};

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Conn {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads until a frame satisfies `want`, returning a copy of its bytes.
    fn read_until(&mut self, want: impl Fn(&Frame<'_>) -> bool) -> Vec<u8> {
        loop {
            let mut pos = 0;
            let mut found = None;
            while let Ok(Some((frame, used))) = decode(&self.buf[pos..], u32::MAX) {
                if want(&frame) {
                    found = Some(self.buf[pos..pos + used].to_vec());
                    pos += used;
                    break;
                }
                pos += used;
            }
            self.buf.drain(..pos);
            if let Some(frame) = found {
                return frame;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).expect("read");
            assert!(n > 0, "server closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn hello(&mut self, resume: Option<Resume>) -> Welcome {
        let mut out = Vec::new();
        let hello = Hello {
            extensions: false,
            inflight_window: 0,
            client_name: b"reconnect-bench",
            resume,
            auth: None,
        };
        encode_hello(&hello, &mut out).unwrap();
        self.send(&out);
        let frame = self.read_until(|f| matches!(f, Frame::Welcome(_)));
        match decode(&frame, u32::MAX) {
            Ok(Some((Frame::Welcome(w), _))) => w,
            _ => unreachable!(),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let rounds: usize = std::env::var("WEIR_RECONNECT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    let (handle, thread) = Server::spawn(config).expect("server");
    let addr = handle.local_addr();

    let mut publisher = Conn::connect(addr);
    publisher.hello(None);
    let mut subscriber = Conn::connect(addr);
    let mut welcome = subscriber.hello(None);
    let mut out = Vec::new();
    let sub = Subscription {
        queue: b"bench",
        event: None,
        start: None,
        group: None,
        is_pattern: false,
    };
    encode_subscription(Op::Subscribe, &sub, &mut out).unwrap();
    subscriber.send(&out);
    subscriber.read_until(|f| matches!(f, Frame::Subscribed(_)));

    let mut samples = Vec::with_capacity(rounds);
    let mut redeliveries = 0u64;
    for round in 1..=rounds as u64 {
        out.clear();
        let payload = round.to_be_bytes();
        let publish = Publish {
            seq: round,
            queue: b"bench",
            event: b"tick",
            key: None,
            ttl_ms: None,
            payload: &payload,
        };
        encode_publish(&publish, &mut out).unwrap();
        publisher.send(&out);
        let frame = subscriber.read_until(|f| matches!(f, Frame::Deliver(_)));
        let Ok(Some((Frame::Deliver(delivered), _))) = decode(&frame, u32::MAX) else {
            unreachable!()
        };
        let seq = delivered.seq;
        // Cut: the client drops its connection before it could process that delivery.
        drop(subscriber);
        let started = Instant::now();
        subscriber = Conn::connect(addr);
        let resumed = subscriber.hello(Some(Resume {
            session_id: welcome.session_id,
            resume_token: welcome.resume_token,
            last_delivery_seq: seq - 1,
            first_resendable_publish_seq: 1,
        }));
        assert_eq!(resumed.outcome, weir::protocol::frame::OUTCOME_RESUMED);
        let frame = subscriber.read_until(|f| matches!(f, Frame::Deliver(d) if d.seq == seq));
        samples.push(started.elapsed());
        let Ok(Some((Frame::Deliver(again), _))) = decode(&frame, u32::MAX) else {
            unreachable!()
        };
        assert_eq!(again.flags & DELIVER_REDELIVERED, DELIVER_REDELIVERED);
        assert_eq!(again.payload, payload);
        redeliveries += 1;
        out.clear();
        encode_ack(seq, &[], &mut out).unwrap();
        subscriber.send(&out);
        welcome = resumed;
    }
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "reconnect → first redelivery over loopback, {rounds} rounds ({redeliveries} \
         redelivered): median {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        us(percentile(&samples, 0.5)),
        us(percentile(&samples, 0.9)),
        us(percentile(&samples, 0.99)),
        us(*samples.last().unwrap()),
    );
    let stats = handle.stats().unwrap();
    println!(
        "server: {} resumes, {} takeovers, {} redelivered",
        stats.server.sessions_resumed,
        stats.server.sessions_taken_over,
        stats.server.messages_redelivered
    );
    handle.shutdown().unwrap();
    thread.join().unwrap().unwrap();
}
