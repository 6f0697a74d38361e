//! Competing consumers (issue #14): one member of each group per message, windows, ack
//! deadlines, redelivery with a count, dead letters, a session's end, backlog overflow.

use std::time::Duration;

use super::harness::{failed_with, said_goodbye, test_config, Harness, Received};
use crate::broker::{CloseReason, ConnId};
use crate::config::{Config, QueueConfig};
use crate::protocol::frame::DROPPED_DEAD_LETTERED;
use crate::protocol::ErrorCode;

const PUBLISHER: ConnId = ConnId(1);
const WORKER_A: ConnId = ConnId(2);
const WORKER_B: ConnId = ConnId(3);
const WORKER_C: ConnId = ConnId(4);
const WATCHER: ConnId = ConnId(5);
const DEAD_LETTERS: ConnId = ConnId(6);

const JOBS: &str = "jobs";
const DEAD: &str = "jobs.dead";
const ACK_DEADLINE: Duration = Duration::from_millis(1_000);

/// [`test_config`] with `jobs` declared: 1 s ack deadline, 2 deliveries, dead letters to
/// `jobs.dead`.
fn group_config() -> Config {
    let mut config = test_config();
    config.queues.push(QueueConfig {
        ack_deadline_ms: ACK_DEADLINE.as_millis() as u64,
        max_deliveries: 2,
        dead_letter_queue: Some(DEAD.to_owned()),
        ..QueueConfig::new(JOBS)
    });
    config
}

/// A publisher and `workers` members of group `w` on `jobs`, each with `window`.
fn pool(workers: &[ConnId], window: u32) -> Harness {
    let mut h = Harness::with_config(group_config());
    h.hello(PUBLISHER);
    for &worker in workers {
        h.hello_extensions(worker, window);
        h.subscribe_group(worker, JOBS, None, "w");
        h.discard(worker);
    }
    h
}

fn publish_n(h: &mut Harness, n: usize) {
    for i in 1..=n {
        h.publish(PUBLISHER, JOBS, "job", &format!("j{i}"));
    }
}

#[test]
fn each_message_goes_to_exactly_one_member_and_to_every_plain_subscriber() {
    let mut h = pool(&[WORKER_A, WORKER_B, WORKER_C], 0);
    h.hello(WATCHER);
    h.subscribe(WATCHER, JOBS, None);
    h.discard(WATCHER);
    publish_n(&mut h, 9);
    let mut all = Vec::new();
    for worker in [WORKER_A, WORKER_B, WORKER_C] {
        let got = h.payloads(worker);
        assert_eq!(got.len(), 3, "round robin over idle members");
        all.extend(got);
        h.ack_all(worker);
    }
    all.sort();
    let mut expected: Vec<String> = (1..=9).map(|i| format!("j{i}")).collect();
    expected.sort();
    assert_eq!(all, expected, "every job once in total");
    assert_eq!(
        h.payloads(WATCHER).len(),
        9,
        "a plain subscriber gets every message"
    );
    h.ack_all(WATCHER);
    h.assert_store_is_empty();
}

#[test]
fn two_groups_of_one_queue_each_get_every_message_once() {
    let mut h = Harness::with_config(group_config());
    h.hello(PUBLISHER);
    for (worker, group) in [(WORKER_A, "x"), (WORKER_B, "y"), (WORKER_C, "y")] {
        h.hello_extensions(worker, 0);
        h.subscribe_group(worker, JOBS, None, group);
        h.discard(worker);
    }
    publish_n(&mut h, 4);
    assert_eq!(h.payloads(WORKER_A).len(), 4);
    assert_eq!(h.payloads(WORKER_B).len() + h.payloads(WORKER_C).len(), 4);
}

#[test]
fn a_group_with_an_event_filter_gets_only_that_event() {
    let mut h = Harness::with_config(group_config());
    h.hello(PUBLISHER);
    h.hello_extensions(WORKER_A, 0);
    h.subscribe_group(WORKER_A, JOBS, Some("resize"), "w");
    h.discard(WORKER_A);
    h.publish(PUBLISHER, JOBS, "resize", "r1");
    h.publish(PUBLISHER, JOBS, "other", "o1");
    assert_eq!(h.payloads(WORKER_A), ["r1"]);
}

#[test]
fn a_busy_member_gets_no_more_than_its_window_and_the_rest_waits_in_the_group() {
    let mut h = pool(&[WORKER_A, WORKER_B], 2);
    publish_n(&mut h, 10);
    assert_eq!(h.payloads(WORKER_A), ["j1", "j3"]);
    assert_eq!(h.payloads(WORKER_B), ["j2", "j4"]);
    let group = &h.stats().groups[0];
    assert_eq!(
        (group.members, group.unassigned, group.in_flight),
        (2, 6, 4)
    );
    // A's ack makes room for exactly two more, in publish order.
    h.ack_all(WORKER_A);
    assert_eq!(h.payloads(WORKER_A), ["j5", "j6"]);
    assert!(h.payloads(WORKER_B).is_empty(), "B is still busy");
    h.ack_all(WORKER_B);
    h.ack_all(WORKER_A);
    assert_eq!(h.payloads(WORKER_B).len() + h.payloads(WORKER_A).len(), 4);
    h.ack_all(WORKER_A);
    h.ack_all(WORKER_B);
    h.assert_store_is_empty();
}

#[test]
fn a_delivery_not_acked_by_the_deadline_goes_to_another_member_with_its_count() {
    let mut h = pool(&[WORKER_A, WORKER_B], 1);
    publish_n(&mut h, 1);
    let first = h.deliveries(WORKER_A);
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].delivery_count, None,
        "a first delivery carries no count"
    );
    h.advance(ACK_DEADLINE - Duration::from_millis(1));
    assert!(h.deliveries(WORKER_B).is_empty(), "not before the deadline");
    h.advance(Duration::from_millis(1));
    let again = h.deliveries(WORKER_B);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].payload_str(), "j1");
    assert_eq!(again[0].message_id, first[0].message_id);
    assert_eq!(again[0].delivery_count, Some(2));
    // A's late ack is accepted and changes nothing; B's ack ends it.
    h.ack_all(WORKER_A);
    h.ack_all(WORKER_B);
    assert!(h.control(WORKER_A).is_empty());
    let stats = h.stats();
    assert_eq!(stats.server.messages_group_redelivered, 1);
    assert_eq!(stats.groups[0].redelivered, 1);
    h.assert_store_is_empty();
}

#[test]
fn the_messages_of_a_member_whose_session_ends_reach_the_others() {
    let mut h = pool(&[WORKER_A, WORKER_B], 4);
    publish_n(&mut h, 6);
    let held_by_a = h.payloads(WORKER_A);
    assert_eq!(held_by_a, ["j1", "j3", "j5"]);
    assert_eq!(h.payloads(WORKER_B), ["j2", "j4", "j6"]);
    h.ack_all(WORKER_B);
    h.disconnect(WORKER_A, CloseReason::PeerClosed);
    let to_b = h.deliveries(WORKER_B);
    let payloads: Vec<&str> = to_b.iter().map(|d| d.payload_str()).collect();
    assert_eq!(payloads, ["j1", "j3", "j5"]);
    assert!(to_b.iter().all(|d| d.delivery_count == Some(2)));
    h.ack_all(WORKER_B);
    h.assert_store_is_empty();
}

#[test]
fn a_message_every_member_refuses_is_dead_lettered_after_max_deliveries() {
    let mut h = pool(&[WORKER_A, WORKER_B], 1);
    h.hello(DEAD_LETTERS);
    h.subscribe(DEAD_LETTERS, DEAD, None);
    h.discard(DEAD_LETTERS);
    publish_n(&mut h, 1);
    assert_eq!(h.payloads(WORKER_A), ["j1"]);
    h.advance(ACK_DEADLINE);
    assert_eq!(h.payloads(WORKER_B), ["j1"]);
    h.advance(ACK_DEADLINE);
    // max_deliveries = 2: not offered a third time.
    assert!(h.payloads(WORKER_A).is_empty());
    let dead = h.deliveries(DEAD_LETTERS);
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].queue.as_str(), dead[0].payload_str()),
        (DEAD, "j1")
    );
    // The last holder is told, as DROPPED(DEAD_LETTERED); the first is not.
    assert_eq!(
        h.control(WORKER_B),
        [Received::Dropped(DROPPED_DEAD_LETTERED, 1, 1)]
    );
    assert!(h.control(WORKER_A).is_empty());
    let stats = h.stats();
    assert_eq!(stats.server.messages_dead_lettered, 1);
    assert_eq!(stats.server.messages_dropped_max_deliveries, 0);
    assert_eq!(stats.groups[0].dead_lettered, 1);
    h.ack_all(DEAD_LETTERS);
    h.assert_store_is_empty();
}

#[test]
fn without_a_dead_letter_queue_a_refused_message_is_dropped_and_counted() {
    let mut config = test_config();
    config.queues.push(QueueConfig {
        ack_deadline_ms: 1_000,
        max_deliveries: 1,
        ..QueueConfig::new(JOBS)
    });
    let mut h = Harness::with_config(config);
    h.hello(PUBLISHER);
    h.hello_extensions(WORKER_A, 0);
    h.subscribe_group(WORKER_A, JOBS, None, "w");
    publish_n(&mut h, 1);
    h.discard(WORKER_A);
    h.advance(ACK_DEADLINE);
    let server = h.stats().server;
    assert_eq!(
        (
            server.messages_dead_lettered,
            server.messages_dropped_max_deliveries
        ),
        (1, 1)
    );
    h.assert_store_is_empty();
}

#[test]
fn a_full_group_backlog_closes_its_members_with_queue_overflow() {
    // test_config: max_queue_depth 32; window 1 per member.
    let mut h = pool(&[WORKER_A, WORKER_B], 1);
    publish_n(&mut h, 2 + 32);
    h.discard(WORKER_A);
    h.discard(WORKER_B);
    publish_n(&mut h, 1);
    assert_eq!(h.frames(WORKER_A), said_goodbye(ErrorCode::QueueOverflow));
    assert_eq!(h.frames(WORKER_B), said_goodbye(ErrorCode::QueueOverflow));
    assert!(
        h.stats().groups.is_empty(),
        "the group ends with its last member"
    );
    h.assert_store_is_empty();
}

#[test]
fn a_group_subscription_needs_extensions() {
    let mut h = Harness::with_config(group_config());
    h.hello(WORKER_A);
    h.subscribe_group(WORKER_A, JOBS, None, "w");
    assert_eq!(h.frames(WORKER_A), failed_with(ErrorCode::MalformedFrame));
}

#[test]
fn a_member_that_leaves_gets_nothing_more_and_the_group_ends_with_its_last_member() {
    let mut h = pool(&[WORKER_A, WORKER_B], 0);
    h.unsubscribe_group(WORKER_A, JOBS, None, "w");
    h.discard(WORKER_A);
    publish_n(&mut h, 3);
    assert!(h.payloads(WORKER_A).is_empty());
    assert_eq!(h.payloads(WORKER_B).len(), 3);
    h.ack_all(WORKER_B);
    h.unsubscribe_group(WORKER_B, JOBS, None, "w");
    let stats = h.stats();
    assert!(stats.groups.is_empty());
    assert_eq!(
        stats
            .queues
            .iter()
            .find(|q| q.name == JOBS)
            .unwrap()
            .subscribers,
        0
    );
}

#[test]
fn a_member_acking_one_at_a_time_takes_the_backlog_in_order() {
    let mut config = group_config();
    config.reconnect_keep_alive_ms = 60_000;
    let mut h = Harness::with_config(config);
    h.hello(PUBLISHER);
    h.hello_extensions(WORKER_A, 1);
    h.subscribe_group(WORKER_A, JOBS, None, "w");
    h.discard(WORKER_A);
    publish_n(&mut h, 3);
    assert_eq!(h.payloads(WORKER_A), ["j1"]);
    h.ack_all(WORKER_A);
    assert_eq!(h.payloads(WORKER_A), ["j2"]);
    h.ack_all(WORKER_A);
    assert_eq!(h.payloads(WORKER_A), ["j3"]);
    h.ack_all(WORKER_A);
    h.assert_store_is_empty();
}
