//! The hot path allocates nothing per message beyond the payload itself (STYLE.md §5).
//!
//! A counting global allocator wraps the system allocator for this test binary only. After a
//! warm-up (slabs, rings, buffers and the payload pool grown to their steady size), N rounds of
//! PUBLISH → fan-out → DELIVER → ACK through the real decoder and broker must allocate nothing
//! at all: even the payload's buffer comes back from the store's pool. A behaviour test, not a
//! timing test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weir::broker::{Broker, ConnId, Intake, Origin};
use weir::protocol::codec::{encode_ack, encode_hello, encode_publish, encode_subscription};
use weir::protocol::{decode, Frame, Hello, Op, Publish, Subscription};
use weir::Config;

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const SUBSCRIBERS: usize = 8;
const PUBLISHER: ConnId = ConnId(SUBSCRIBERS);

/// Hands `bytes` to the broker through the loop's entry points (`handle_readable`, then
/// `handle_input`), as the event loop does for a readable connection.
fn feed(broker: &mut Broker, conn: ConnId, bytes: &[u8], now: Instant) {
    assert_eq!(broker.handle_readable(conn, now), Intake::More);
    assert_eq!(
        broker.handle_input(conn, bytes, now),
        Intake::More,
        "all input taken"
    );
}

/// The allocation counter is global: the tests of this binary measure one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Rig {
    broker: Broker,
    now: Instant,
    input: Vec<u8>,
    output: Vec<u8>,
    publish_seq: u64,
    delivered: u64,
}

impl Rig {
    fn new() -> Rig {
        Rig::with_group(None)
    }

    /// Every subscriber a member of `group` when given (issue #14: competing consumers).
    fn with_group(group: Option<&[u8]>) -> Rig {
        let now = Instant::now();
        let mut rig = Rig {
            broker: Broker::new(Config::default(), Origin::fixed(now, 1)),
            now,
            input: Vec::with_capacity(4096),
            output: Vec::with_capacity(256 * 1024),
            publish_seq: 0,
            delivered: 0,
        };
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for conn in (0..=SUBSCRIBERS).map(ConnId) {
            rig.broker.handle_connect(conn, peer, rig.now);
            rig.input.clear();
            let hello = Hello {
                extensions: group.is_some(),
                inflight_window: 0,
                client_name: b"alloc",
                resume: None,
                auth: None,
            };
            encode_hello(&hello, &mut rig.input).unwrap();
            if conn != PUBLISHER {
                let sub = Subscription {
                    queue: b"db",
                    event: Some(b"update"),
                    group,
                    is_pattern: false,
                    start: None,
                };
                encode_subscription(Op::Subscribe, &sub, &mut rig.input).unwrap();
            }
            let input = std::mem::take(&mut rig.input);
            feed(&mut rig.broker, conn, &input, rig.now);
            rig.input = input;
        }
        rig.drain();
        rig
    }

    /// One round: publish, fan out, deliver, ack everything.
    fn round(&mut self, payload: &[u8]) {
        self.publish_seq += 1;
        self.input.clear();
        let publish = Publish {
            seq: self.publish_seq,
            queue: b"db",
            event: b"update",
            key: None,
            ttl_ms: None,
            payload,
        };
        encode_publish(&publish, &mut self.input).unwrap();
        let input = std::mem::take(&mut self.input);
        feed(&mut self.broker, PUBLISHER, &input, self.now);
        self.input = input;
        self.drain();
        self.now += Duration::from_micros(10);
    }

    /// Transmits to every dirty connection and acks every DELIVER seen.
    fn drain(&mut self) {
        while let Some(conn) = self.broker.poll_dirty() {
            self.output.clear();
            self.broker
                .poll_transmit(conn, &mut self.output, 256 * 1024, self.now);
            let mut pos = 0;
            let mut highest = 0;
            while let Ok(Some((frame, used))) = decode(&self.output[pos..], u32::MAX) {
                if let Frame::Deliver(d) = frame {
                    highest = d.seq;
                    self.delivered += 1;
                }
                pos += used;
            }
            if highest > 0 {
                self.input.clear();
                encode_ack(highest, &[], &mut self.input).unwrap();
                let input = std::mem::take(&mut self.input);
                feed(&mut self.broker, conn, &input, self.now);
                self.input = input;
            }
        }
    }
}

#[test]
fn publish_deliver_ack_allocates_nothing_once_warmed_up() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut rig = Rig::new();
    let payload = [7u8; 64];
    for _ in 0..10_000 {
        rig.round(&payload);
    }
    let rounds = 10_000u64;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..rounds {
        rig.round(&payload);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!(
        "{rounds} rounds × {SUBSCRIBERS} subscribers: {allocations} allocations, {} deliveries",
        rig.delivered
    );
    assert_eq!(rig.delivered, (2 * rounds) * SUBSCRIBERS as u64);
    assert_eq!(
        allocations, 0,
        "no allocation per message: the payload buffer is reused from the pool"
    );
    let stats = rig.broker.stats();
    assert_eq!(
        stats.server.stored_messages, 0,
        "every message acked and freed"
    );
}

#[test]
fn group_dispatch_deliver_ack_allocates_nothing_once_warmed_up() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut rig = Rig::with_group(Some(b"workers"));
    let payload = [7u8; 64];
    for _ in 0..10_000 {
        rig.round(&payload);
    }
    let rounds = 10_000u64;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..rounds {
        rig.round(&payload);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!(
        "{rounds} group rounds, {SUBSCRIBERS} members: {allocations} allocations, {} deliveries",
        rig.delivered
    );
    assert_eq!(
        rig.delivered,
        2 * rounds,
        "each message to exactly one member"
    );
    assert_eq!(allocations, 0, "no allocation per group message");
    let stats = rig.broker.stats();
    assert_eq!(stats.server.stored_messages, 0, "every job acked and freed");
    assert_eq!(stats.groups[0].acked, 2 * rounds);
}
