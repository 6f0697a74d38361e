//! Pattern subscriptions over real TCP (issue #14; protocol.md §Patterns): a pattern
//! subscriber receives exactly the messages of matching queues, once each, including queues
//! created after it subscribed, and only queues its identity may subscribe to.

use std::collections::BTreeMap;

use weir::client::{Client, ClientOptions, Credentials, Event};
use weir::config::UserConfig;
use weir::credentials::token_hash;
use weir::Config;

use crate::common::{client_options, plain, publish_all, TestServer};

fn pattern_client(server: &TestServer, name: &str, auth: Option<Credentials>) -> Client {
    let options = ClientOptions {
        extensions: true,
        auth,
        ..client_options(name)
    };
    Client::connect(server.addr, &options).expect("pattern client connects")
}

/// The payload published last, to a queue every test pattern matches and may read: the
/// server delivers a session's messages in acceptance order, so it comes last.
const END: &str = "end";

/// Every delivery up to the END message: (queue, payload) → copies. Acks as it goes.
fn drain(client: &mut Client) -> BTreeMap<(String, String), usize> {
    let mut got = BTreeMap::new();
    loop {
        let Event::Deliver(delivery) = client.recv().expect("a delivery") else {
            continue;
        };
        client.ack(delivery.seq).expect("ack");
        let queue = String::from_utf8_lossy(&delivery.queue).into_owned();
        let payload = String::from_utf8_lossy(&delivery.payload).into_owned();
        if payload == END {
            return got;
        }
        *got.entry((queue, payload)).or_insert(0) += 1;
    }
}

#[test]
fn a_pattern_subscriber_gets_each_message_of_matching_queues_once() {
    let server = TestServer::start();
    let mut publisher = plain(server.addr, "publisher");
    publish_all(&mut publisher, "orders.eu", &["early"]);
    let mut watcher = pattern_client(&server, "watcher", None);
    watcher
        .subscribe_pattern("orders.>", None)
        .expect("pattern");
    watcher
        .subscribe_pattern("orders.*", None)
        .expect("overlap");
    watcher.subscribe_all("orders.eu").expect("literal too");
    // orders.eu existed before; orders.us.ny and orders.uk are created by these publishes.
    let mut expected = BTreeMap::new();
    for i in 0..50 {
        for queue in [
            "orders.eu",
            "orders.us.ny",
            "orders.uk",
            "orders",
            "audit.orders",
        ] {
            let payload = format!("{queue}-{i}");
            publisher.publish(queue, "e", &payload).expect("publish");
            if queue.starts_with("orders.") {
                expected.insert((queue.to_owned(), payload), 1);
            }
        }
    }
    publish_all(&mut publisher, "orders.eu", &[END]);
    let got = drain(&mut watcher);
    assert_eq!(
        got.len(),
        150,
        "50 messages of each of the three matching queues"
    );
    assert_eq!(got, expected, "each exactly once, nothing else");
    let stats = server.stats();
    let session = stats
        .sessions
        .iter()
        .find(|s| s.client_name == "watcher")
        .unwrap();
    assert_eq!(session.patterns.len(), 2);
    assert_eq!(session.subscriptions.len(), 1);
}

#[test]
fn a_pattern_subscription_holds_to_the_identity_permissions() {
    let config = Config {
        users: vec![UserConfig {
            name: "eu-reader".to_owned(),
            password_hash: None,
            token_hash: Some(token_hash(b"eu-token")),
            publish: vec![],
            subscribe: vec!["orders.eu*".to_owned()],
            admin: false,
        }],
        ..Config::default()
    };
    let server = TestServer::with_config(config);
    let mut publisher = plain(server.addr, "publisher");
    publish_all(&mut publisher, "orders.us", &["us-before"]);
    let mut reader = pattern_client(&server, "reader", Some(Credentials::token("eu-token")));
    reader
        .subscribe_pattern("orders.>", None)
        .expect("accepted");
    publish_all(&mut publisher, "orders.us", &["us-after"]);
    publish_all(&mut publisher, "orders.eu", &["eu"]);
    publish_all(&mut publisher, "orders.eu.fr", &["fr"]);
    publish_all(&mut publisher, "orders.uk", &["uk"]);
    publish_all(&mut publisher, "orders.eu", &[END]);
    let got: Vec<String> = drain(&mut reader).into_keys().map(|(_, p)| p).collect();
    assert_eq!(got, ["eu", "fr"], "only the queues it may subscribe to");
}
