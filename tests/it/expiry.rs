//! Time to live over real TCP (issue #14; protocol.md §Time to live): a slow subscriber
//! receives no expired message and is told, with DROPPED(EXPIRED), how many expired.

use weir::client::{Client, ClientOptions, Event};
use weir::protocol::frame::DROPPED_EXPIRED;

use crate::common::{client_options, TestServer};

fn extended(server: &TestServer, name: &str, window: u32) -> Client {
    let options = ClientOptions {
        extensions: true,
        inflight_window: window,
        ..client_options(name)
    };
    Client::connect(server.addr, &options).expect("connects")
}

#[test]
fn a_slow_subscriber_receives_no_expired_message_and_is_told_how_many_expired() {
    let server = TestServer::start();
    let mut slow = extended(&server, "slow", 4);
    slow.subscribe_all("quotes").expect("subscribe");
    let mut publisher = extended(&server, "publisher", 0);
    let mut last = 0;
    for i in 0..100 {
        last = publisher
            .publish_with_ttl("quotes", "e", format!("old-{i}"), 50)
            .expect("publish");
    }
    publisher.wait_receipt(last).expect("receipt");
    // Four are in flight (the window); the other 96 expire in the server's queue.
    server.wait_for("96 expired", |stats| stats.server.messages_expired == 96);
    for i in 0..5 {
        last = publisher
            .publish("quotes", "e", format!("new-{i}"))
            .expect("publish");
    }
    publisher.wait_receipt(last).expect("receipt");
    let mut got = Vec::new();
    while got.len() < 9 {
        if let Event::Deliver(delivery) = slow.recv().expect("delivery") {
            slow.ack(delivery.seq).expect("ack");
            got.push(String::from_utf8(delivery.payload).unwrap());
        }
    }
    let expected: Vec<String> = (0..4)
        .map(|i| format!("old-{i}"))
        .chain((0..5).map(|i| format!("new-{i}")))
        .collect();
    assert_eq!(
        got, expected,
        "the in-flight four, then only unexpired messages"
    );
    assert_eq!(
        slow.dropped_total(DROPPED_EXPIRED),
        96,
        "told with DROPPED(EXPIRED)"
    );
    let stats = server.stats();
    let session = stats
        .sessions
        .iter()
        .find(|s| s.client_name == "slow")
        .unwrap();
    assert_eq!(session.dropped.expired, 96);
}
