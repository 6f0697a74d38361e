//! The global memory budget (issue #12): publishers held near it, the largest consumers
//! closed past it, partial frames bounded in time.

use std::time::Duration;

use super::harness::{test_config, Harness, Received};
use crate::broker::ConnId;
use crate::config::Config;
use crate::protocol::codec;
use crate::protocol::{ErrorCode, Frame, Publish};

const PUBLISHER: ConnId = ConnId(1);
const PAYLOAD_LEN: usize = 4_000;

fn budget_config(max_memory_bytes: u64) -> Config {
    Config {
        max_memory_bytes,
        max_queue_depth: 100_000,
        max_queue_bytes: 1 << 30,
        max_queues: 100,
        ..test_config()
    }
}

// Issue #12: 40 never-reading sessions, each under its own limit, held 2.65 GB.
#[test]
fn never_acking_consumers_are_held_to_the_budget_publishers_paused_then_largest_closed() {
    let budget: u64 = 2_000_000;
    let mut h = Harness::with_config(budget_config(budget));
    h.hello(PUBLISHER);
    let consumers: Vec<ConnId> = (10..14).map(ConnId).collect();
    for &conn in &consumers {
        h.hello(conn);
        h.subscribe(conn, "q", None);
        h.discard(conn);
    }
    // One consumer subscribes to a second queue as well: it holds the most.
    h.subscribe(consumers[0], "q2", None);
    let payload = vec![7u8; PAYLOAD_LEN];
    let mut peak = 0;
    for n in 0..2_000 {
        let queue = if n % 2 == 0 { "q" } else { "q2" };
        h.publish_frame(PUBLISHER, queue, "e", None, &payload);
        peak = peak.max(h.broker.memory_bytes());
        // A consumer that never acks: its deliveries are sent, then stay in flight/pending.
        for &conn in &consumers {
            h.discard(conn);
        }
        h.advance(Duration::from_millis(1));
    }
    let stats = h.stats();
    assert!(stats.server.memory_pauses > 0, "the publisher was paused");
    assert!(
        h.unread(PUBLISHER) > 0,
        "publishes wait in the publisher's socket, not in the server"
    );
    // One frame past the budget at most, then the largest holders are closed.
    let frame = (PAYLOAD_LEN + 64) as u64 * 2;
    assert!(peak <= budget + frame, "peak {peak} over budget {budget}");
    assert_eq!(stats.server.max_memory_bytes, budget);
    assert!(stats.server.memory_bytes <= budget);
    // Near the budget only PUBLISH waits: a newcomer still subscribes, consumers still ack.
    let late = ConnId(50);
    h.hello(late);
    h.subscribe(late, "late", None);
    assert_eq!(h.frames(late).len(), 1, "SUBSCRIBED");
    h.ack_all(consumers[3]);
    assert!(h.stats().server.messages_acked > 0);
    // Past the budget (here: a reload halves it), the largest holders are closed, largest
    // first, until it is met.
    let smaller = budget / 2;
    h.broker.handle_reload(budget_config(smaller));
    h.advance(Duration::from_millis(10));
    h.drive();
    let stats = h.stats();
    assert!(stats.server.memory_bytes <= smaller, "{:?}", stats.server);
    assert!(stats.server.memory_limit_closes > 0, "{:?}", stats.server);
    let largest = h.take_inbox(consumers[0]);
    assert!(
        largest.contains(&Received::Goodbye(ErrorCode::MemoryLimit)),
        "the largest consumer is told: {:?}",
        &largest[largest.len().saturating_sub(3)..]
    );
    assert!(h.broker.memory_bytes() <= smaller);
    assert!(
        stats.server.sessions >= 2,
        "only as many closed as needed: {}",
        stats.server.sessions
    );
}

// Issue #12: a max-size PUBLISH minus its last byte was held forever.
#[test]
fn a_frame_left_incomplete_for_the_heartbeat_timeout_closes_the_connection() {
    let config = budget_config(0);
    let timeout = config.heartbeat_timeout();
    let mut h = Harness::with_config(config);
    h.hello(PUBLISHER);
    let mut bytes = Vec::new();
    let payload = vec![1u8; 100_000];
    codec::encode(
        &Frame::Publish(Publish {
            ttl_ms: None,
            seq: 1,
            queue: b"q",
            event: b"e",
            key: None,
            payload: &payload,
        }),
        &mut bytes,
    )
    .unwrap();
    bytes.pop();
    h.send_bytes(PUBLISHER, &bytes);
    assert!(
        h.broker.memory_bytes() > 100_000,
        "the partial frame is charged"
    );
    // Pings answered: the connection is not silent, yet the frame never completes.
    for _ in 0..10 {
        h.advance(timeout / 10);
        h.drive();
    }
    h.advance(Duration::from_millis(1));
    let frames = h.frames(PUBLISHER);
    assert!(
        frames.contains(&Received::Goodbye(ErrorCode::HeartbeatTimeout)),
        "{frames:?}"
    );
    assert_eq!(h.stats().server.partial_frame_timeouts, 1);
}
