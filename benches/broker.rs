//! Broker benchmarks: pure CPU, no sockets, because the broker is sans-IO.
//!
//! Each benchmark plays the event loop's part as `net/event_loop.rs` does: frames built with the
//! protocol encoders are decoded with [`protocol::decode`] and fed to `handle_frame`, then the
//! flush pass drains `poll_dirty` → `poll_transmit` into one reused buffer (what the client
//! would read is not decoded: that is the client's cost). Time is a fixed `Instant` taken once
//! and advanced explicitly; no timer ever comes due, so `handle_timeout` is never needed.
//!
//! - `fanout/N`: one 64 B PUBLISH routed to N subscribed sessions, every session's DELIVER
//!   transmitted, and every session's cumulative ACK fed back, so the steady state neither
//!   fills a window nor grows a queue. Throughput is deliveries (N per iteration).
//! - `ack/*`: applying acks for 256 in-flight deliveries of one session, as one ACK per
//!   delivery, one cumulative ACK, or four ACKs listing 64 seqs each. The 256 deliveries are
//!   published and transmitted outside the timed section.
//! - `conflation/100`: a conflating PUBLISH replacing the pending message of the same key in
//!   100 sessions whose window (1) is full, so nothing is sent to them.
//!
//! Quick run: `cargo bench --bench broker -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weir::broker::{Broker, ConnId, Intake, Origin};
use weir::config::Config;
use weir::protocol::codec::{encode_ack, encode_hello, encode_publish, encode_subscription};
use weir::protocol::{Hello, Op, Publish, Subscription, HEADER_LEN, LEN_PREFIX_LEN};

criterion_group!(benches, fanout, ack, conflation);
criterion_main!(benches);

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for &sessions in FANOUT_SESSIONS {
        let mut bench = Bench::new(sessions, 0);
        let mut publish = publish_frame(None);
        let mut ack = Vec::new();
        let mut seq = 0;
        group.throughput(Throughput::Elements(sessions as u64));
        group.bench_function(BenchmarkId::from_parameter(sessions), |b| {
            b.iter(|| {
                seq += 1;
                bench.publish(&mut publish, seq);
                let sent = bench.flush();
                // Every subscriber received exactly the same messages, so its delivery seq is
                // the publish seq and one encoded ACK serves all of them.
                ack.clear();
                encode_ack(seq, &[], &mut ack).expect("empty ACK is within limits");
                for conn in bench.subscribers() {
                    feed(&mut bench.broker, conn, &ack, bench.now);
                }
                black_box(sent)
            });
        });
        assert_eq!(bench.broker.metrics().messages_acked, seq * sessions as u64);
    }
    group.finish();
}

fn ack(c: &mut Criterion) {
    let mut group = c.benchmark_group("ack");
    group.throughput(Throughput::Elements(ACK_BATCH));
    for shape in [
        AckShape::EachDelivery,
        AckShape::Cumulative,
        AckShape::Listed64,
    ] {
        let mut bench = Bench::new(1, 0);
        let mut publish = publish_frame(None);
        let mut acks = Vec::new();
        let mut seq = 0;
        group.bench_function(shape.name(), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let first = seq + 1;
                    for _ in 0..ACK_BATCH {
                        seq += 1;
                        bench.publish(&mut publish, seq);
                    }
                    bench.flush();
                    acks.clear();
                    shape.encode(first..=seq, &mut acks);
                    let start = Instant::now();
                    feed(&mut bench.broker, ConnId(1), &acks, bench.now);
                    timed += start.elapsed();
                }
                timed
            });
        });
        assert_eq!(bench.broker.metrics().messages_acked, seq);
    }
    group.finish();
}

fn conflation(c: &mut Criterion) {
    let mut group = c.benchmark_group("conflation");
    let sessions = CONFLATION_SESSIONS;
    let mut bench = Bench::new(sessions, 1);
    let mut publish = publish_frame(Some(b"price"));
    // The first message fills every window of 1; the second waits as the pending message that
    // every later one replaces.
    bench.publish(&mut publish, 1);
    bench.publish(&mut publish, 2);
    bench.flush();
    let mut seq = 2;
    group.throughput(Throughput::Elements(sessions as u64));
    group.bench_function(BenchmarkId::from_parameter(sessions), |b| {
        b.iter(|| {
            seq += 1;
            bench.publish(&mut publish, seq);
            black_box(bench.flush())
        });
    });
    group.finish();
    let metrics = bench.broker.metrics();
    assert_eq!(metrics.messages_conflated, (seq - 2) * sessions as u64);
    assert_eq!(metrics.messages_delivered, sessions as u64);
}

/// One broker with a publisher on `ConnId(0)` and subscribers on `ConnId(1..=n)`, each
/// subscribed to every event of [`QUEUE`].
struct Bench {
    broker: Broker,
    subscribers: usize,
    now: Instant,
    out: Vec<u8>,
    high_water: usize,
}

impl Bench {
    /// `window` is the in-flight window the subscribers ask for in HELLO (0 = server default).
    fn new(subscribers: usize, window: u32) -> Bench {
        let config = Config {
            max_connections: subscribers + 1,
            ..Config::default()
        };
        let high_water = config.write_high_water_bytes;
        let now = Instant::now();
        let mut bench = Bench {
            broker: Broker::new(config, Origin::fixed(now, 1)),
            subscribers,
            now,
            out: Vec::with_capacity(2 * high_water),
            high_water,
        };
        let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
        let mut frames = Vec::new();
        for index in 0..=subscribers {
            let conn = ConnId(index);
            let is_publisher = index == 0;
            bench.broker.handle_connect(conn, peer, bench.now);
            frames.clear();
            let hello = Hello {
                extensions: false,
                inflight_window: if is_publisher { 0 } else { window },
                client_name: b"bench",
                resume: None,
                auth: None,
            };
            encode_hello(&hello, &mut frames).expect("HELLO is within limits");
            if !is_publisher {
                let sub = Subscription {
                    queue: QUEUE,
                    event: None,
                    start: None,
                    group: None,
                    is_pattern: false,
                };
                encode_subscription(Op::Subscribe, &sub, &mut frames)
                    .expect("SUBSCRIBE is within limits");
            }
            feed(&mut bench.broker, conn, &frames, bench.now);
        }
        bench.flush();
        assert_eq!(bench.broker.connection_count(), subscribers + 1);
        bench
    }

    fn subscribers(&self) -> impl Iterator<Item = ConnId> {
        (1..=self.subscribers).map(ConnId)
    }

    /// Feeds `frame` (from [`publish_frame`]) from the publisher with its seq set to `seq`.
    fn publish(&mut self, frame: &mut [u8], seq: u64) {
        self.now += Duration::from_micros(1);
        // Layout: protocol.md §PUBLISH: the seq is the first body field, a big-endian u64.
        frame[PUBLISH_SEQ_AT..PUBLISH_SEQ_AT + 8].copy_from_slice(&seq.to_be_bytes());
        feed(&mut self.broker, ConnId(0), frame, self.now);
    }

    /// The flush pass: every dirty connection's bytes into the reused buffer, up to the write
    /// high-water mark as the event loop does. Returns the bytes produced.
    fn flush(&mut self) -> usize {
        let mut total = 0;
        while let Some(conn) = self.broker.poll_dirty() {
            self.out.clear();
            total += self
                .broker
                .poll_transmit(conn, &mut self.out, self.high_water, self.now);
        }
        assert!(
            self.broker.poll_close().is_none(),
            "no bench connection closes"
        );
        total
    }
}

/// Hands `bytes` to the broker through the loop's entry points (`handle_readable`, then
/// `handle_input`), as the read pass does.
fn feed(broker: &mut Broker, conn: ConnId, bytes: &[u8], now: Instant) {
    let intake = broker.handle_readable(conn, now);
    assert_eq!(
        intake,
        Intake::More,
        "bench connections are never held back"
    );
    let intake = broker.handle_input(conn, bytes, now);
    assert_ne!(
        intake,
        Intake::Closed,
        "bench frames are complete and valid"
    );
}

/// A 64 B PUBLISH to [`QUEUE`], conflating on `key` if given; its seq is set by
/// [`Bench::publish`].
fn publish_frame(key: Option<&[u8]>) -> Vec<u8> {
    let payload = [0xA5; FANOUT_PAYLOAD_LEN];
    let publish = Publish {
        seq: 1,
        queue: QUEUE,
        event: b"tick",
        key,
        ttl_ms: None,
        payload: &payload,
    };
    let mut frame = Vec::new();
    encode_publish(&publish, &mut frame).expect("PUBLISH is within limits");
    frame
}

/// How the `ack` benchmark acknowledges a batch of deliveries.
#[derive(Clone, Copy)]
enum AckShape {
    /// One ACK(up_to = seq) per delivery: a client that acks as it goes.
    EachDelivery,
    /// One ACK(up_to = last) for the whole batch.
    Cumulative,
    /// ACK(up_to = 0, 64 listed seqs) frames: a client acking out of order.
    Listed64,
}

impl AckShape {
    fn name(self) -> &'static str {
        match self {
            AckShape::EachDelivery => "each_delivery",
            AckShape::Cumulative => "cumulative",
            AckShape::Listed64 => "listed_64",
        }
    }

    fn encode(self, seqs: std::ops::RangeInclusive<u64>, out: &mut Vec<u8>) {
        match self {
            AckShape::EachDelivery => {
                for seq in seqs {
                    encode_ack(seq, &[], out).expect("within limits");
                }
            }
            AckShape::Cumulative => encode_ack(*seqs.end(), &[], out).expect("within limits"),
            AckShape::Listed64 => {
                let seqs: Vec<u64> = seqs.collect();
                for chunk in seqs.chunks(64) {
                    encode_ack(0, chunk, out).expect("within limits");
                }
            }
        }
    }
}

const FANOUT_SESSIONS: &[usize] = &[1, 100, 1_000];
const FANOUT_PAYLOAD_LEN: usize = 64;
const CONFLATION_SESSIONS: usize = 100;
/// Deliveries acknowledged per `ack` iteration; a quarter of the default window of 1,024, the
/// batch a client acking every window/4 produces.
const ACK_BATCH: u64 = 256;
const QUEUE: &[u8] = b"bench";
const PUBLISH_SEQ_AT: usize = LEN_PREFIX_LEN + HEADER_LEN;
