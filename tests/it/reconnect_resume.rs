//! Resumes that succeed (issue 3): what was not receipted is resent with its seqs, what was
//! not received is redelivered, and a second connection can take a session over.

use weir::client::{Client, ClientError, Event};
use weir::protocol::frame::OUTCOME_RESUMED;
use weir::protocol::ErrorCode;

use crate::chaos_proxy::{ChaosConfig, ChaosProxy};
use crate::common::{client_options, plain, publish_all, reconnecting, TestServer};

fn payloads(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("m{i}")).collect()
}

#[test]
fn publishes_not_receipted_are_resent_with_their_seqs_after_a_cut() {
    let server = TestServer::start();
    let proxy = ChaosProxy::start(server.addr, ChaosConfig::PASS_THROUGH, 5);
    let mut subscriber = plain(server.addr, "subscriber");
    subscriber.subscribe_all("db").unwrap();
    let mut publisher = reconnecting(proxy.addr, "publisher");

    // The proxy swallows the publishes, then the connection is cut: none reached the server.
    proxy.set_blackhole(true);
    for payload in payloads(100) {
        publisher.publish("db", "e", payload).unwrap();
    }
    publisher.flush().unwrap();
    assert_eq!(publisher.unreceipted(), 100);
    proxy.cut_all();
    proxy.set_blackhole(false);

    publisher.wait_receipted().unwrap();
    assert_eq!(publisher.unreceipted(), 0);
    assert_eq!(
        publisher.try_recv(),
        Some(Event::Resumed {
            session_id: publisher.session_id(),
            resent: 100
        })
    );
    for payload in payloads(100) {
        match subscriber.recv().unwrap() {
            Event::Deliver(delivery) => assert_eq!(delivery.payload, payload.as_bytes()),
            other => panic!("{other:?}"),
        }
    }
    let stats = server.stats().server;
    assert_eq!(stats.messages_published, 100);
    assert_eq!(stats.sessions_resumed, 1);
}

#[test]
fn a_subscriber_cut_mid_stream_gets_every_message_once_and_in_order() {
    let server = TestServer::start();
    let proxy = ChaosProxy::start(server.addr, ChaosConfig::PASS_THROUGH, 6);
    let mut subscriber = reconnecting(proxy.addr, "subscriber");
    subscriber.subscribe_all("db").unwrap();
    let mut publisher = plain(server.addr, "publisher");
    let sent = payloads(500);
    let sent: Vec<&str> = sent.iter().map(String::as_str).collect();
    publish_all(&mut publisher, "db", &sent[..250]);

    let mut received = Vec::new();
    let mut resumes = 0;
    let mut is_cut = false;
    while received.len() < sent.len() {
        match subscriber.recv().unwrap() {
            Event::Deliver(delivery) => received.push(String::from_utf8(delivery.payload).unwrap()),
            Event::Resumed { .. } => resumes += 1,
            other => panic!("{other:?}"),
        }
        if received.len() == 100 && !is_cut {
            is_cut = true;
            // Deliveries in flight, some in the proxy, some unacked: cut, then publish more
            // while the session may be detached.
            proxy.cut_all();
            publish_all(&mut publisher, "db", &sent[250..]);
        }
    }
    assert_eq!(received, sent);
    assert_eq!(resumes, 1);
    let stats = subscriber.stats();
    assert_eq!((stats.resumes, stats.losses, stats.seq_gaps), (1, 0, 0));
}

#[test]
fn a_resume_from_another_connection_takes_the_session_over() {
    let server = TestServer::start();
    let mut first = reconnecting(server.addr, "first");
    first.subscribe_all("db").unwrap();
    let mut publisher = plain(server.addr, "publisher");
    publish_all(&mut publisher, "db", &["m0", "m1"]);
    for _ in 0..2 {
        assert!(matches!(first.recv().unwrap(), Event::Deliver(_)));
    }
    // Sends the ack of both; nothing else is waiting.
    assert_eq!(first.recv_timeout(std::time::Duration::ZERO).unwrap(), None);
    let resume = first.resume_block();
    assert_eq!(resume.last_delivery_seq, 2);

    let mut second = Client::resume(server.addr, &client_options("second"), &resume).unwrap();
    assert_eq!(second.welcome().outcome, OUTCOME_RESUMED);
    assert_eq!(second.session_id(), first.session_id());
    server.wait_for("the takeover", |s| s.server.sessions_taken_over == 1);

    // The first connection is told, and the client does not fight for the session.
    match first.recv() {
        Err(ClientError::Goodbye {
            code: Ok(ErrorCode::TakenOver),
            ..
        }) => {}
        other => panic!("expected TAKEN_OVER, got {other:?}"),
    }
    assert_eq!(first.stats().reconnect_attempts, 0);

    // The session carries on over the second connection, numbering where it left off.
    publish_all(&mut publisher, "db", &["m2"]);
    match second.recv().unwrap() {
        Event::Deliver(delivery) => {
            assert_eq!((delivery.seq, delivery.payload.as_slice()), (3, &b"m2"[..]));
            assert!(!delivery.redelivered);
        }
        other => panic!("{other:?}"),
    }
    second.ack(3).unwrap();
    second.bye().unwrap();
    let stats = server.stats();
    assert_eq!(stats.server.sessions_resumed, 1);
    assert!(stats
        .sessions
        .iter()
        .all(|s| s.session_id != resume.session_id));
}
