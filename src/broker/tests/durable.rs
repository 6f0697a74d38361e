//! Durable queues in the core (issue 10): RECEIPTs wait for the journal, cumulatively per
//! session; a failed batch is refused with STORAGE_FAILED; retained messages are replayed.

use super::harness::{test_config, Harness, Received};
use crate::broker::journal::{JournalMark, JournalProgress};
use crate::broker::ConnId;
use crate::config::{Config, QueueConfig};
use crate::protocol::frame::START_OLDEST;
use crate::protocol::{codec, ErrorCode, Frame, Publish, Start, Subscription};

const PUBLISHER: ConnId = ConnId(1);
const DURABLE: &str = "jobs";
const INTERVAL: &str = "fast";

fn durable_config() -> Config {
    let mut config = test_config();
    // Never opened: the core touches no file, the data_dir only switches durability on.
    config.data_dir = Some("/nonexistent/weir-data".into());
    config.queues.push(QueueConfig {
        durable: true,
        max_messages: Some(3),
        ..QueueConfig::new(DURABLE)
    });
    config.queues.push(QueueConfig {
        durable: true,
        fsync_interval_ms: Some(50),
        ..QueueConfig::new(INTERVAL)
    });
    config
}

fn progress(written: u64, synced: u64) -> JournalProgress {
    JournalProgress {
        written: JournalMark(written),
        synced: JournalMark(synced),
        ..JournalProgress::default()
    }
}

fn durable_harness() -> Harness {
    let mut h = Harness::with_config(durable_config());
    h.hello(PUBLISHER);
    h
}

#[test]
fn a_durable_publish_is_receipted_only_after_the_fsync_of_its_batch() {
    let mut h = durable_harness();
    h.publish(PUBLISHER, DURABLE, "e", "m1");
    assert_eq!(h.frames(PUBLISHER), [], "no RECEIPT before the journal");
    let batch = h.broker.poll_journal().expect("one batch this turn");
    assert_eq!(batch.mark, JournalMark(1));
    assert_eq!(batch.entries.len(), 1);
    assert_eq!(batch.entries[0].position, 1);
    assert_eq!(batch.entries[0].message.payload(), b"m1");
    assert!(h.broker.poll_journal().is_none(), "one batch per turn");
    let now = h.now;
    h.broker.handle_durable(progress(1, 0), now);
    assert_eq!(
        h.frames(PUBLISHER),
        [],
        "written is not enough for fsync = always"
    );
    h.broker.handle_durable(progress(1, 1), now);
    assert_eq!(h.frames(PUBLISHER), [Received::Receipt(1)]);
}

#[test]
fn a_receipt_stops_below_the_earliest_publish_not_yet_durable() {
    let mut h = durable_harness();
    h.publish(PUBLISHER, "plain", "e", "m1");
    assert_eq!(h.frames(PUBLISHER), [Received::Receipt(1)]);
    h.publish(PUBLISHER, DURABLE, "e", "m2");
    h.publish(PUBLISHER, "plain", "e", "m3");
    assert_eq!(
        h.frames(PUBLISHER),
        [Received::Receipt(1)],
        "held below seq 2"
    );
    let first = h.broker.poll_journal().unwrap().mark;
    h.publish(PUBLISHER, DURABLE, "e", "m4");
    let second = h.broker.poll_journal().unwrap().mark;
    let now = h.now;
    h.broker.handle_durable(progress(first.0, first.0), now);
    assert_eq!(
        h.frames(PUBLISHER),
        [Received::Receipt(3)],
        "held below seq 4"
    );
    h.broker.handle_durable(progress(second.0, second.0), now);
    assert_eq!(h.frames(PUBLISHER), [Received::Receipt(4)]);
}

#[test]
fn an_fsync_interval_queue_is_receipted_once_written() {
    let mut h = durable_harness();
    h.publish(PUBLISHER, INTERVAL, "e", "m1");
    let mark = h.broker.poll_journal().unwrap().mark;
    let now = h.now;
    h.broker.handle_durable(progress(mark.0, 0), now);
    assert_eq!(h.frames(PUBLISHER), [Received::Receipt(1)]);
}

#[test]
fn a_batch_the_journal_could_not_write_ends_the_session_with_storage_failed_and_no_receipt() {
    let mut h = durable_harness();
    h.publish(PUBLISHER, DURABLE, "e", "m1");
    let mark = h.broker.poll_journal().unwrap().mark;
    let now = h.now;
    let failed = JournalProgress {
        failed: Some(mark),
        ..progress(mark.0, mark.0)
    };
    h.broker.handle_durable(failed, now);
    let frames = h.frames(PUBLISHER);
    assert_eq!(
        frames.first(),
        Some(&Received::Error {
            code: ErrorCode::StorageFailed,
            fatal: true,
            ref_seq: 1
        })
    );
    assert!(!frames.contains(&Received::Receipt(1)));
    assert_eq!(h.stats().server.messages_refused_storage, 1);
}

#[test]
fn retention_keeps_the_newest_max_messages_and_asks_the_journal_to_trim() {
    let mut h = durable_harness();
    for n in 1..=5 {
        h.publish(PUBLISHER, DURABLE, "e", &format!("m{n}"));
    }
    let batch = h.broker.poll_journal().unwrap();
    assert_eq!(batch.entries.len(), 5);
    assert_eq!(batch.trims.len(), 1);
    assert_eq!(batch.trims[0].1, 3, "positions below 3 may go");
    let stats = h.stats();
    let queue = stats.queues.iter().find(|q| q.name == DURABLE).unwrap();
    assert_eq!(
        (queue.retained, queue.first_position, queue.next_position),
        (3, 3, 6)
    );
}

/// Issue 10: the channel to the journal thread is bounded by the bytes in flight.
#[test]
fn past_the_journal_bound_publishers_to_durable_queues_are_not_read_until_it_catches_up() {
    const PLAIN_PUBLISHER: ConnId = ConnId(2);
    let mut h = durable_harness();
    h.hello(PLAIN_PUBLISHER);
    // Each record counts its 100-byte payload, its 1-byte event and 32 bytes of header (133):
    // the eighth publish goes past 1,000 bytes.
    h.broker.set_max_journal_bytes(1_000);
    let payload = [b'x'; 100];
    let mut bytes = Vec::new();
    let mut plain = Vec::new();
    for seq in 1..=40 {
        for (queue, out) in [(DURABLE, &mut bytes), ("plain", &mut plain)] {
            let publish = Publish {
                seq,
                queue: queue.as_bytes(),
                event: b"e",
                key: None,
                ttl_ms: None,
                payload: &payload,
            };
            codec::encode(&Frame::Publish(publish), out).unwrap();
        }
    }
    h.send_bytes(PUBLISHER, &bytes);
    h.send_bytes(PLAIN_PUBLISHER, &plain);
    h.drive();
    assert_eq!(
        h.frames(PLAIN_PUBLISHER),
        [Received::Receipt(40)],
        "plain queues are not held"
    );
    let batch = h
        .broker
        .poll_journal()
        .expect("the publishes up to the bound");
    assert_eq!(
        batch.entries.len(),
        8,
        "read up to the publish past the bound, then held"
    );
    h.drive();
    assert!(
        h.broker.poll_journal().is_none(),
        "still held: nothing written"
    );
    let now = h.now;
    h.broker
        .handle_durable(progress(batch.mark.0, batch.mark.0), now);
    assert_eq!(h.frames(PUBLISHER), [Received::Receipt(8)]);
    h.drive();
    let next = h
        .broker
        .poll_journal()
        .expect("read again once the journal caught up");
    assert_eq!(next.entries.len(), 8, "and held again past the bound");
    assert_eq!(next.entries[0].position, 9);
}

/// Issue 10: a message the journal refused is not on disk and its publisher sends it again;
/// replaying it too would deliver it twice (or a message that exists nowhere).
#[test]
fn a_message_refused_with_storage_failed_leaves_the_retained_list_and_is_never_replayed() {
    const READER: ConnId = ConnId(3);
    let mut h = durable_harness();
    h.publish(PUBLISHER, DURABLE, "e", "kept");
    let kept = h.broker.poll_journal().unwrap().mark;
    h.publish(PUBLISHER, DURABLE, "e", "refused");
    let refused = h.broker.poll_journal().unwrap().mark;
    let now = h.now;
    h.broker.handle_durable(progress(kept.0, kept.0), now);
    let failed = JournalProgress {
        failed: Some(refused),
        ..progress(refused.0, refused.0)
    };
    h.broker.handle_durable(failed, now);
    let stats = h.stats();
    let queue = stats.queues.iter().find(|q| q.name == DURABLE).unwrap();
    assert_eq!((queue.retained, queue.first_position), (1, 1));

    h.hello(READER);
    h.send(
        READER,
        &Frame::Subscribe(Subscription {
            queue: DURABLE.as_bytes(),
            event: None,
            group: None,
            is_pattern: false,
            start: Some(Start {
                from: START_OLDEST,
                value: 0,
                first_position: 0,
                skipped: 0,
            }),
        }),
    );
    h.drive();
    assert_eq!(h.payloads(READER), ["kept"]);
}
