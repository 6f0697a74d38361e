//! `weir::client::Client` against a real server on 127.0.0.1:0: the paths a scripted peer
//! cannot vouch for (what this server really sends).

mod common;

use weir::client::{Client, ClientError, ClientOptions, Event};
use weir::protocol::ErrorCode;
use weir::Config;

use common::{TestServer, WAIT};

fn connect(server: &TestServer, inflight_window: u32) -> Client {
    let options = ClientOptions {
        name: String::from("client-test"),
        inflight_window,
        timeout: Some(WAIT),
        auth: None,
        extensions: false,
    };
    Client::connect(server.addr, &options).expect("connect")
}

#[test]
fn a_publish_at_max_frame_len_comes_back_as_a_longer_deliver() {
    let server = TestServer::with_config(Config {
        max_frame_len: 4096,
        ..Config::default()
    });
    let mut client = connect(&server, 0);
    assert_eq!(client.welcome().max_frame_len, 4096);
    client.subscribe("db", "update").unwrap();
    // PUBLISH length field: 2 + seq 8 + flags 1 + queue 1+2 + event 1+6 + payload.
    let payload = vec![b'x'; 4096 - 2 - 8 - 1 - 3 - 7];
    let seq = client.publish("db", "update", &payload).unwrap();
    client.wait_receipt(seq).unwrap();
    loop {
        match client.recv().unwrap() {
            Event::Deliver(delivery) => {
                assert_eq!(delivery.payload, payload);
                break;
            }
            Event::Receipt(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    client.bye().unwrap();
}

#[test]
fn deliveries_keep_flowing_past_the_window_as_poll_deliveries_acks() {
    let server = TestServer::start();
    let mut client = connect(&server, 4);
    assert_eq!(client.welcome().inflight_window, 4);
    client.subscribe_all("db").unwrap();
    for i in 0..50u32 {
        client.publish("db", "e", i.to_be_bytes()).unwrap();
    }
    let mut payloads = Vec::new();
    while payloads.len() < 50 {
        let mut last = 0;
        client
            .poll_deliveries(Some(WAIT), |d| {
                payloads.push(u32::from_be_bytes(d.payload.try_into().unwrap()));
                last = d.seq;
            })
            .unwrap();
        client.ack(last).unwrap();
    }
    assert_eq!(payloads, (0..50).collect::<Vec<_>>());
    assert_eq!(client.last_delivery_seq(), 50);
    client.wait_receipt(50).unwrap();
    client.bye().unwrap();
    server.wait_for("every delivery acked", |stats| {
        stats.server.messages_acked == 50
    });
}

#[test]
fn queue_overflow_arrives_as_goodbye_after_the_deliveries_before_it() {
    let server = TestServer::with_config(Config {
        max_queue_depth: 3,
        ..Config::default()
    });
    let mut subscriber = connect(&server, 0);
    subscriber.subscribe_all("db").unwrap();
    let mut publisher = connect(&server, 0);
    for i in 0..4 {
        publisher.publish("db", "e", format!("m{i}")).unwrap();
    }
    publisher.wait_receipt(4).unwrap();
    let mut delivered = 0;
    let err = loop {
        match subscriber.recv() {
            Ok(Event::Deliver(_)) => delivered += 1,
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(delivered <= 3, "{delivered}");
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
    assert!(matches!(
        subscriber.ping(),
        Err(ClientError::Goodbye { .. })
    ));
    publisher.bye().unwrap();
}

#[test]
fn ping_stats_and_unsubscribe_are_answered() {
    let server = TestServer::start();
    let mut client = connect(&server, 0);
    client.ping().unwrap();
    client.subscribe_all("db").unwrap();
    client.subscribe("db", "update").unwrap();
    client.unsubscribe_all("db").unwrap();
    let json = client.stats().unwrap();
    let report: weir::protocol::stats::StatsReport = serde_json::from_str(&json).unwrap();
    let me = report
        .sessions
        .iter()
        .find(|s| s.session_id == client.session_id())
        .unwrap();
    assert_eq!(me.client_name, "client-test");
    assert_eq!(me.peer, client.local_addr().unwrap().to_string());
    assert_eq!(me.subscriptions.len(), 1);
    assert_eq!(me.subscriptions[0].event.as_deref(), Some("update"));
    client.bye().unwrap();
}

#[test]
fn acks_are_checked_locally_and_an_empty_ack_is_harmless() {
    let server = TestServer::start();
    let mut client = connect(&server, 0);
    client.subscribe_all("db").unwrap();
    assert!(matches!(
        client.ack(1),
        Err(ClientError::InvalidArgument(_))
    ));
    client.ack_seqs(0, &[]).unwrap();
    client.ping().unwrap();
    client.bye().unwrap();
}

#[test]
fn a_server_error_is_fatal_and_reported_with_its_code() {
    let server = TestServer::with_config(Config {
        max_subscriptions: 1,
        ..Config::default()
    });
    let mut client = connect(&server, 0);
    client.subscribe_all("a").unwrap();
    let err = client.subscribe_all("b").unwrap_err();
    assert!(err.is_fatal());
    assert!(
        matches!(
            err,
            ClientError::Server {
                code: Ok(ErrorCode::LimitExceeded),
                fatal: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(matches!(client.ping(), Err(ClientError::Server { .. })));
}
