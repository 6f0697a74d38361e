use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use weir::protocol::codec::encode;
use weir::protocol::{decode, Auth, AuthMethod, ErrorCode, Frame, Hello, Publish, Subscription};

#[derive(Debug, PartialEq)]
enum Got {
    Welcome(u8),
    Error(ErrorCode),
    Goodbye(ErrorCode),
    Subscribed,
    Stats(usize),
    Other,
    Closed,
}

struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(port: u16, src: Option<&str>) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut raw = Raw { s, buf: Vec::new() };
        if let Some(src) = src {
            let line = format!("PROXY TCP4 {src} 127.0.0.1 40000 {port}\r\n");
            raw.s.write_all(line.as_bytes()).unwrap();
        }
        raw
    }
    fn send(&mut self, frame: &Frame<'_>) {
        let mut out = Vec::new();
        encode(frame, &mut out).unwrap();
        let _ = self.s.write_all(&out);
    }
    fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes);
    }
    fn recv(&mut self) -> Got {
        loop {
            if let Ok(Some((frame, used))) = decode(&self.buf, u32::MAX) {
                let got = match frame {
                    Frame::Welcome(w) => Got::Welcome(w.outcome),
                    Frame::Error(e) => Got::Error(e.code.unwrap_or(ErrorCode::MalformedFrame)),
                    Frame::Goodbye(g) => Got::Goodbye(g.code.unwrap_or(ErrorCode::MalformedFrame)),
                    Frame::Subscribed(_) => Got::Subscribed,
                    Frame::StatsReply(j) => Got::Stats(j.len()),
                    _ => Got::Other,
                };
                self.buf.drain(..used);
                if got == Got::Other {
                    continue;
                }
                return got;
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return Got::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
    fn hello(&mut self, auth: Option<Auth<'_>>) -> Got {
        self.send(&Frame::Hello(Hello {
            inflight_window: 0,
            client_name: b"atk",
            resume: None,
            auth,
        }));
        self.recv()
    }
    fn subscribe(&mut self, queue: &[u8]) -> Got {
        self.send(&Frame::Subscribe(Subscription { queue, event: None }));
        self.recv()
    }
}

fn rss_kib(pid: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

fn stats_json(port: u16, src: &str) -> String {
    let mut c = Raw::connect(port, (!src.is_empty()).then_some(src));
    c.hello(None);
    c.send(&Frame::Stats);
    loop {
        if let Ok(Some((Frame::StatsReply(j), _))) = decode(&c.buf, u32::MAX) {
            return String::from_utf8_lossy(j).into_owned();
        }
        if let Ok(Some((_, used))) = decode(&c.buf, u32::MAX) {
            c.buf.drain(..used);
            continue;
        }
        let mut chunk = [0u8; 65536];
        let n = c.s.read(&mut chunk).unwrap();
        c.buf.extend_from_slice(&chunk[..n]);
    }
}

fn field(json: &str, key: &str) -> String {
    let at = json
        .find(&format!("\"{key}\":"))
        .map(|i| i + key.len() + 3)
        .unwrap_or(0);
    json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args[2].parse().unwrap();
    match args[1].as_str() {
        "queues" => {
            let t0 = Instant::now();
            let mut refused = 0;
            let mut created = 0;
            let mut held = Vec::new();
            for s in 0..20 {
                let mut c = Raw::connect(port, Some("10.0.0.1"));
                c.hello(None);
                for n in 0..1000 {
                    match c.subscribe(format!("flood-{s}-{n}").as_bytes()) {
                        Got::Subscribed => created += 1,
                        _ => {
                            refused += 1;
                            break;
                        }
                    }
                }
                held.push(c);
            }
            // And 100,000 publishes to distinct names.
            let mut p = Raw::connect(port, Some("10.0.0.1"));
            p.hello(None);
            for n in 1..=100_000u64 {
                let q = format!("pub-{n}");
                p.send(&Frame::Publish(Publish {
                    seq: n,
                    queue: q.as_bytes(),
                    event: b"e",
                    key: None,
                    payload: b"x",
                }));
            }
            std::thread::sleep(Duration::from_millis(500));
            let json = stats_json(port, "10.0.0.3");
            println!("flood: {created} subscriptions created, {refused} refused, {:?}; server queues now {}", t0.elapsed(), field(&json, "queues"));
            let mut second = Raw::connect(port, Some("10.0.0.2"));
            second.hello(None);
            let mut ok = 0;
            for n in 0..1000 {
                if second.subscribe(format!("mine-{n}").as_bytes()) == Got::Subscribed {
                    ok += 1;
                }
            }
            println!("second client (another address): {ok}/1000 queues created");
        }
        "sessions" => {
            let t0 = Instant::now();
            let mut welcomed = 0;
            for n in 0..20_000 {
                let mut c = Raw::connect(port, Some("10.0.1.1"));
                if let Got::Welcome(_) = c.hello(None) {
                    welcomed += 1;
                }
                c.subscribe(format!("s{}", n % 10).as_bytes());
                drop(c);
            }
            std::thread::sleep(Duration::from_millis(500));
            let json = stats_json(port, "10.0.1.9");
            println!(
                "flood: 20000 cycles in {:?}, {welcomed} welcomed; sessions now {}, evicted {}",
                t0.elapsed(),
                field(&json, "sessions"),
                field(&json, "sessions_evicted")
            );
            let mut ok = 0;
            let mut keep = Vec::new();
            for n in 0..100 {
                let mut c = Raw::connect(port, Some(&format!("10.0.2.{}", n + 1)));
                if let Got::Welcome(_) = c.hello(None) {
                    ok += 1;
                }
                keep.push(c);
            }
            println!("second clients (other addresses): {ok}/100 sessions opened");
        }
        "memory" => {
            let pid = &args[3];
            let mut subs = Vec::new();
            for i in 0..40 {
                let mut c = Raw::connect(port, None);
                c.hello(None);
                c.subscribe(format!("big{i}").as_bytes());
                subs.push(c); // never read again
            }
            let mut p = Raw::connect(port, None);
            p.hello(None);
            p.s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
            let payload = vec![7u8; 64 * 1024];
            let t0 = Instant::now();
            let mut seq = 1u64;
            let mut peak = 0;
            while t0.elapsed() < Duration::from_secs(15) {
                let mut out = Vec::new();
                let q = format!("big{}", seq % 40);
                encode(
                    &Frame::Publish(Publish {
                        seq,
                        queue: q.as_bytes(),
                        event: b"e",
                        key: None,
                        payload: &payload,
                    }),
                    &mut out,
                )
                .unwrap();
                if p.s.write_all(&out).is_err() {
                    break;
                }
                seq += 1;
                if seq % 100 == 0 {
                    peak = peak.max(rss_kib(pid));
                }
            }
            peak = peak.max(rss_kib(pid));
            let json = stats_json(port, "");
            println!("40 never-reading subscribers: {seq} publishes sent in {:?}; peak RSS {} MiB; memory_bytes {} B, memory_pauses {}, memory_limit_closes {}",
                t0.elapsed(), peak / 1024, field(&json, "memory_bytes"), field(&json, "memory_pauses"), field(&json, "memory_limit_closes"));
            drop(subs);
            drop(p);
            std::thread::sleep(Duration::from_secs(1));
            // 1,000 connections each holding a max-size PUBLISH minus its last byte.
            let mut partial = Vec::new();
            let big = vec![1u8; 1024 * 1024 - 64];
            let mut frame = Vec::new();
            encode(
                &Frame::Publish(Publish {
                    seq: 1,
                    queue: b"q",
                    event: b"e",
                    key: None,
                    payload: &big,
                }),
                &mut frame,
            )
            .unwrap();
            frame.pop();
            for _ in 0..1000 {
                let mut c = Raw::connect(port, None);
                c.hello(None);
                c.s.set_write_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                c.send_bytes(&frame);
                partial.push(c);
            }
            std::thread::sleep(Duration::from_secs(2));
            let json = stats_json(port, "");
            println!("1000 partial 1 MiB frames: RSS {} MiB; memory_bytes {}, memory_limit_closes {}, connections {}",
                rss_kib(pid) / 1024, field(&json, "memory_bytes"), field(&json, "memory_limit_closes"), field(&json, "connections"));
        }
        "stats" => {
            let http_port: u16 = args[3].parse().unwrap();
            let mut c = Raw::connect(port, None);
            c.hello(None);
            for n in 0..100_000 {
                let mut out = Vec::new();
                let q = format!("q{n}");
                encode(
                    &Frame::Subscribe(Subscription {
                        queue: q.as_bytes(),
                        event: None,
                    }),
                    &mut out,
                )
                .unwrap();
                c.send_bytes(&out);
            }
            let mut subscribed = 0;
            while subscribed < 100_000 {
                if c.recv() == Got::Subscribed {
                    subscribed += 1;
                }
            }
            let t0 = Instant::now();
            c.send(&Frame::Stats);
            let got = c.recv();
            println!(
                "STATS with 100,000 queues: {:?} round trip, {:?}",
                t0.elapsed(),
                got
            );
            let t0 = Instant::now();
            let mut h = TcpStream::connect(("127.0.0.1", http_port)).unwrap();
            h.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
            let mut body = Vec::new();
            h.read_to_end(&mut body).unwrap();
            println!("/metrics: {:?}, {} bytes", t0.elapsed(), body.len());
        }
        "auth" => {
            let guess = |src: &str, secret: &[u8], user: &[u8]| {
                let mut c = Raw::connect(port, Some(src));
                c.send(&Frame::Hello(Hello {
                    inflight_window: 0,
                    client_name: b"g",
                    resume: None,
                    auth: Some(Auth {
                        method: AuthMethod::Password,
                        user,
                        secret,
                    }),
                }));
                c
            };
            // Timing first, under every bucket's burst: 4 each, alternating, fresh addresses.
            let mut known = Duration::ZERO;
            let mut unknown = Duration::ZERO;
            for n in 0..4u8 {
                for (user, total) in [(&b"alice"[..], &mut known), (&b"nobody"[..], &mut unknown)] {
                    let t0 = Instant::now();
                    let mut c = guess(&format!("10.8.{}.{}", user.len(), n + 1), b"bad", user);
                    c.recv();
                    *total += t0.elapsed();
                }
            }
            println!(
                "wrong password, known user alice (100,000 iterations): {:?} mean of 4",
                known / 4
            );
            println!("unknown user: {:?} mean of 4", unknown / 4);
            let mut held = Vec::new();
            for _ in 0..5 {
                let mut c = guess("10.9.0.1", b"wrong", b"bob");
                c.recv();
            }
            for _ in 0..20 {
                held.push(guess("10.9.0.1", b"wrong", b"bob"));
            }
            let t0 = Instant::now();
            let mut good = guess("10.9.0.1", b"right", b"alice");
            let got = good.recv();
            println!("correct password from a throttled address (25 failures just before): {:?} after {:?}", got, t0.elapsed());
            let mut answers = std::collections::BTreeMap::new();
            for mut c in held {
                *answers.entry(format!("{:?}", c.recv())).or_insert(0) += 1;
            }
            println!("the 20 held guesses were answered: {answers:?}");
        }
        _ => panic!("mode"),
    }
}
