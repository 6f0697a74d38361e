//! Publish / subscribe over real TCP with the blocking client: event filters, a long stream
//! with nothing lost and everything in order, and an overflow that closes exactly the slow
//! session while the others go on.

use std::time::Duration;

use weir::client::{Client, ClientError, ClientOptions};
use weir::protocol::ErrorCode;
use weir::Config;

use crate::common::{TestServer, WAIT};

fn client(server: &TestServer, name: &str) -> Client {
    let options = ClientOptions {
        name: name.to_owned(),
        timeout: Some(WAIT),
        ..ClientOptions::default()
    };
    Client::connect(server.addr, &options).unwrap()
}

/// Receives `count` deliveries, acking as it goes; returns (event, payload) pairs.
fn take(client: &mut Client, count: usize) -> Vec<(String, Vec<u8>)> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let mut last = 0;
        client
            .poll_deliveries(Some(WAIT), |d| {
                got.push((
                    String::from_utf8_lossy(d.event).into_owned(),
                    d.payload.to_vec(),
                ));
                last = d.seq;
            })
            .unwrap();
        if last > 0 {
            client.ack(last).unwrap();
        }
    }
    got
}

#[test]
fn subscribers_with_different_event_filters_each_get_exactly_their_events_in_order() {
    let server = TestServer::start();
    let mut all = client(&server, "all");
    all.subscribe_all("db").unwrap();
    let mut updates = client(&server, "updates");
    updates.subscribe("db", "update").unwrap();
    let mut inserts = client(&server, "inserts");
    inserts.subscribe("db", "insert").unwrap();
    let mut both_ways = client(&server, "both-ways");
    both_ways.subscribe("db", "update").unwrap();
    both_ways.subscribe_all("db").unwrap();
    let mut other_queue = client(&server, "other-queue");
    other_queue.subscribe_all("cache").unwrap();

    let mut publisher = client(&server, "publisher");
    let events = ["update", "insert", "delete"];
    let mut sent = Vec::new();
    for n in 0..900u32 {
        let event = events[n as usize % 3];
        publisher.publish("db", event, n.to_be_bytes()).unwrap();
        sent.push((event.to_owned(), n.to_be_bytes().to_vec()));
    }
    let last = publisher.publish("cache", "x", b"only-cache").unwrap();
    publisher.wait_receipt(last).unwrap();

    let only = |name: &str| -> Vec<(String, Vec<u8>)> {
        sent.iter().filter(|(e, _)| e == name).cloned().collect()
    };
    assert_eq!(take(&mut all, 900), sent);
    assert_eq!(take(&mut updates, 300), only("update"));
    assert_eq!(take(&mut inserts, 300), only("insert"));
    assert_eq!(
        take(&mut both_ways, 900),
        sent,
        "one copy though subscribed twice"
    );
    assert_eq!(
        take(&mut other_queue, 1),
        [("x".to_owned(), b"only-cache".to_vec())]
    );
    // Nothing more is waiting for the filtered subscribers.
    for c in [&mut updates, &mut inserts, &mut both_ways] {
        let extra = c.poll_deliveries(Some(Duration::from_millis(50)), |_| {});
        assert!(matches!(extra, Ok(0)), "{extra:?}");
    }
}

#[test]
fn a_hundred_thousand_messages_reach_two_subscribers_none_lost_all_in_order() {
    stream_to_two_subscribers(TestServer::start(), 100_000);
}

#[test]
fn with_busy_polling_twenty_thousand_messages_reach_two_subscribers_none_lost_all_in_order() {
    let config = Config {
        busy_poll_us: 200,
        ..Config::default()
    };
    stream_to_two_subscribers(TestServer::with_config(config), 20_000);
}

/// `count` messages from a publisher thread to two subscribers that check each arrives once,
/// in order.
fn stream_to_two_subscribers(server: TestServer, count: u64) {
    let mut subscribers = [client(&server, "s1"), client(&server, "s2")];
    for s in &mut subscribers {
        s.subscribe_all("stream").unwrap();
    }
    let publisher_server = server.addr;
    let publishing = std::thread::spawn(move || {
        let options = ClientOptions {
            timeout: Some(WAIT),
            ..ClientOptions::default()
        };
        let mut publisher = Client::connect(publisher_server, &options).unwrap();
        for n in 0..count {
            let seq = publisher
                .publish("stream", "tick", n.to_be_bytes())
                .unwrap();
            // Stay within the subscribers' queue limits: wait for receipts now and then.
            if seq % 20_000 == 0 {
                publisher.wait_receipt(seq).unwrap();
            }
        }
        publisher.wait_receipt(count).unwrap();
    });
    let mut next = [0u64; 2];
    while next.iter().any(|&n| n < count) {
        for (i, s) in subscribers.iter_mut().enumerate() {
            if next[i] == count {
                continue;
            }
            let mut last = 0;
            s.poll_deliveries(Some(Duration::from_millis(20)), |d| {
                let n = u64::from_be_bytes(d.payload.try_into().unwrap());
                assert_eq!(
                    n, next[i],
                    "subscriber {i}: in order, none lost, no duplicate"
                );
                next[i] += 1;
                last = d.seq;
            })
            .unwrap();
            if last > 0 {
                s.ack(last).unwrap();
            }
        }
    }
    publishing.join().unwrap();
    let stats = server.stats();
    assert_eq!(stats.server.messages_published, count);
    assert_eq!(stats.server.messages_delivered, 2 * count);
    println!("pubsub: {count} messages to 2 subscribers, none lost, all in order");
}

#[test]
fn overflow_closes_exactly_the_slow_session_while_the_others_go_on() {
    let server = TestServer::with_config(Config {
        max_queue_depth: 1_000,
        in_flight_window: 100,
        ..Config::default()
    });
    let mut slow = client(&server, "slow");
    slow.subscribe_all("feed").unwrap();
    let mut fast = client(&server, "fast");
    fast.subscribe_all("feed").unwrap();
    let mut publisher = client(&server, "publisher");
    let count = 3_000u32;
    let mut received = 0u32;
    for n in 0..count {
        let seq = publisher.publish("feed", "e", n.to_be_bytes()).unwrap();
        if seq % 250 == 0 {
            publisher.wait_receipt(seq).unwrap();
            // The fast subscriber keeps up; the slow one never reads or acks.
            let mut last = 0;
            while received < n + 1 {
                fast.poll_deliveries(Some(WAIT), |d| {
                    assert_eq!(d.payload, received.to_be_bytes());
                    received += 1;
                    last = d.seq;
                })
                .unwrap();
                fast.ack(last).unwrap();
            }
        }
    }
    assert_eq!(received, count, "the fast subscriber got everything");
    let stats = server.wait_for("the slow session closed", |s| {
        s.server.closes.get("QUEUE_OVERFLOW") == Some(&1)
    });
    let names: Vec<&str> = stats
        .sessions
        .iter()
        .map(|s| s.client_name.as_str())
        .collect();
    assert!(!names.contains(&"slow"), "{names:?}");
    assert!(names.contains(&"fast") && names.contains(&"publisher"));
    assert!(stats.server.messages_dropped_overflow >= 1);
    // The slow client is told why, after whatever it had received before.
    let err = loop {
        match slow.poll_deliveries(Some(WAIT), |_| {}) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            err,
            ClientError::Goodbye {
                code: Ok(ErrorCode::QueueOverflow),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_burst_fanned_out_past_one_turns_budget_reaches_every_subscriber_in_order() {
    // 3,000 publishes written at once to 50 subscribers: 150,000 deliveries, more than the
    // loop queues from one connection in one turn (65,536), so most of the burst waits in the
    // publisher's read buffer for later turns, with no new bytes to wake the loop for it.
    // Heartbeats are far off: no PING exchange may be what gets the rest read.
    let server = TestServer::with_config(Config {
        heartbeat_interval_ms: 120_000,
        heartbeat_timeout_ms: 360_000,
        ..Config::default()
    });
    let subscribers = 50;
    let count = 3_000u32;
    let mut clients: Vec<Client> = (0..subscribers)
        .map(|i| {
            let mut c = client(&server, &format!("s{i}"));
            c.subscribe_all("burst").unwrap();
            c
        })
        .collect();
    let mut publisher = client(&server, "publisher");
    // Buffered by the client and written in large chunks by the flush in wait_receipt.
    for n in 0..count {
        publisher.publish("burst", "e", n.to_be_bytes()).unwrap();
    }
    publisher.wait_receipt(u64::from(count)).unwrap();
    let mut next = vec![0u32; subscribers];
    while next.iter().any(|&n| n < count) {
        for (i, c) in clients.iter_mut().enumerate() {
            if next[i] == count {
                continue;
            }
            let mut last = 0;
            c.poll_deliveries(Some(Duration::from_millis(20)), |d| {
                assert_eq!(d.payload, next[i].to_be_bytes(), "subscriber {i}");
                next[i] += 1;
                last = d.seq;
            })
            .unwrap();
            if last > 0 {
                c.ack(last).unwrap();
            }
        }
    }
    let stats = server.stats();
    assert_eq!(stats.server.messages_published, u64::from(count));
    assert_eq!(
        stats.server.messages_delivered,
        u64::from(count) * subscribers as u64
    );
}
