//! The reconnecting client against scripted servers: each test states what every connection
//! carries, byte for byte, so the resume block, the resends and the deduplication are checked
//! exactly. Behaviour against the real server is in tests/it/reconnect_*.rs.

use std::net::SocketAddr;
use std::time::Duration;

use crate::client::tests::{
    deliver, goodbye, options, scripted_server, subscribed, welcome, Peer, WAIT,
};
use crate::client::{ClientError, Event, OnFull, ReconnectOptions, ReconnectingClient};
use crate::protocol::codec::encode;
use crate::protocol::frame::{DELIVER_REDELIVERED, OUTCOME_LOST, OUTCOME_RESUMED};
use crate::protocol::{Deliver, ErrorCode, Frame, Resume, Subscription, Welcome};

fn reconnect_options() -> ReconnectOptions {
    ReconnectOptions {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
        ..ReconnectOptions::default()
    }
}

fn connect(addr: SocketAddr, reconnect: &ReconnectOptions) -> ReconnectingClient {
    ReconnectingClient::connect(addr, &options(), reconnect).expect("connect")
}

fn resumed(last_publish_seq: u64) -> Welcome {
    Welcome {
        outcome: OUTCOME_RESUMED,
        last_publish_seq,
        ..welcome()
    }
}

/// DELIVER with the REDELIVERED flag, as the server resends in-flight messages after a resume.
fn redeliver(seq: u64, payload: &[u8]) -> Frame<'_> {
    match deliver(seq, payload) {
        Frame::Deliver(d) => Frame::Deliver(Deliver {
            flags: DELIVER_REDELIVERED,
            ..d
        }),
        other => other,
    }
}

fn expect_payload(event: Event, payload: &[u8]) -> u64 {
    match event {
        Event::Deliver(delivery) => {
            assert_eq!(delivery.payload, payload);
            delivery.seq
        }
        other => panic!("expected a delivery of {payload:?}, got {other:?}"),
    }
}

fn expect_publish(frame: Frame<'_>, seq: u64, payload: &[u8]) {
    match frame {
        Frame::Publish(publish) => {
            assert_eq!((publish.seq, publish.payload), (seq, payload));
        }
        other => panic!("expected PUBLISH {seq}, got {other:?}"),
    }
}

/// Reads ACKs until one covers `up_to`.
fn expect_ack_up_to(peer: &mut Peer, up_to: u64) {
    loop {
        let acked = peer.next(|frame| match frame {
            Frame::Ack(ack) => ack.up_to,
            other => panic!("expected ACK, got {other:?}"),
        });
        assert!(acked <= up_to, "ACK {acked} of more than was consumed");
        if acked == up_to {
            return;
        }
    }
}

#[test]
fn a_lost_connection_is_resumed_from_the_last_delivery_and_the_first_unreceipted_publish() {
    let (addr, server) = scripted_server(|accept| {
        let mut first = accept();
        first.handshake();
        for seq in 1..=3 {
            first.next(|frame| expect_publish(frame, seq, format!("p{seq}").as_bytes()));
        }
        let mut out = Vec::new();
        for (seq, payload) in [(1, b"d1"), (2, b"d2"), (3, b"d3")] {
            encode(&deliver(seq, payload), &mut out).unwrap();
        }
        encode(&Frame::Receipt(1), &mut out).unwrap();
        first.send_raw(&out);
        expect_ack_up_to(&mut first, 3);
        drop(first);

        let mut second = accept();
        second.next(|frame| match frame {
            Frame::Hello(hello) => assert_eq!(
                hello.resume,
                Some(Resume {
                    session_id: welcome().session_id,
                    resume_token: welcome().resume_token,
                    last_delivery_seq: 3,
                    first_resendable_publish_seq: 2,
                })
            ),
            other => panic!("expected HELLO, got {other:?}"),
        });
        // The server got publish 2 before the cut: only 3 is sent again, with its seq.
        second.send(Frame::Welcome(resumed(2)));
        second.next(|frame| expect_publish(frame, 3, b"p3"));
        // The ack of the first connection may not have arrived: it is sent again.
        expect_ack_up_to(&mut second, 3);
        second.send(redeliver(3, b"d3"));
        second.send(deliver(4, b"d4"));
        second.send(Frame::Receipt(3));
        second.wait_for_close();
    });
    let mut client = connect(addr, &reconnect_options());
    for seq in 1..=3 {
        client.publish("db", "update", format!("p{seq}")).unwrap();
    }
    for seq in 1..=3 {
        let payload = format!("d{seq}");
        assert_eq!(
            expect_payload(client.recv().unwrap(), payload.as_bytes()),
            seq
        );
    }
    assert_eq!(
        client.recv().unwrap(),
        Event::Resumed {
            session_id: welcome().session_id,
            resent: 1
        }
    );
    // Delivery 3 came again and is dropped: the application sees each message once.
    assert_eq!(expect_payload(client.recv().unwrap(), b"d4"), 4);
    client.wait_receipted().unwrap();
    let stats = client.stats();
    assert_eq!(
        (stats.resumes, stats.duplicates_dropped, stats.redelivered),
        (1, 1, 1)
    );
    assert_eq!(stats.publishes_resent, 1);
    drop(client);
    server.join().unwrap();
}

#[test]
fn a_lost_session_is_reported_and_its_subscriptions_and_publishes_are_made_again() {
    let new_session = Welcome {
        outcome: OUTCOME_LOST,
        lost_reason: Some(ErrorCode::SessionExpired),
        missed: Some(5),
        session_id: 8,
        resume_token: [3; 16],
        ..welcome()
    };
    let (addr, server) = scripted_server(move |accept| {
        let mut first = accept();
        first.handshake();
        first.next(|frame| assert_eq!(frame, Frame::Subscribe(sub_all())));
        first.send(subscribed(b"db", None));
        first.next(|frame| expect_publish(frame, 1, b"a"));
        first.next(|frame| expect_publish(frame, 2, b"b"));
        drop(first);

        let mut second = accept();
        second.next(|frame| match frame {
            Frame::Hello(hello) => {
                let resume = hello.resume.expect("a resume");
                assert_eq!(resume.first_resendable_publish_seq, 1);
            }
            other => panic!("expected HELLO, got {other:?}"),
        });
        second.send(Frame::Welcome(new_session));
        second.next(|frame| assert_eq!(frame, Frame::Subscribe(sub_all())));
        second.send(subscribed(b"db", None));
        // Published again in the new session, which numbers from 1.
        second.next(|frame| expect_publish(frame, 1, b"a"));
        second.next(|frame| expect_publish(frame, 2, b"b"));
        second.send(deliver(1, b"x"));
        second.wait_for_close();
    });
    let mut client = connect(addr, &reconnect_options());
    client.subscribe_all("db").unwrap();
    client.publish("db", "e", "a").unwrap();
    client.publish("db", "e", "b").unwrap();
    assert_eq!(
        client.recv().unwrap(),
        Event::Lost {
            reason: Some(ErrorCode::SessionExpired),
            missed: Some(5),
            session_id: 8,
            republished: 2,
        }
    );
    assert_eq!(client.session_id(), 8);
    assert_eq!(expect_payload(client.recv().unwrap(), b"x"), 1);
    assert_eq!(client.resume_block().resume_token, [3; 16]);
    drop(client);
    server.join().unwrap();
}

fn sub_all() -> Subscription<'static> {
    Subscription {
        queue: b"db",
        event: None,
        group: None,
        is_pattern: false,
        start: None,
    }
}

#[test]
fn taken_over_ends_the_client_without_a_reconnection() {
    let (addr, server) = scripted_server(|accept| {
        let mut peer = accept();
        peer.handshake();
        peer.send(deliver(1, b"before"));
        peer.send(goodbye(ErrorCode::TakenOver, "another connection resumed"));
        peer.wait_for_close();
    });
    let mut client = connect(addr, &reconnect_options());
    // What came before the GOODBYE is still handed out.
    assert_eq!(expect_payload(client.recv().unwrap(), b"before"), 1);
    for _ in 0..2 {
        match client.recv() {
            Err(ClientError::Goodbye {
                code: Ok(ErrorCode::TakenOver),
                ..
            }) => {}
            other => panic!("expected TAKEN_OVER, got {other:?}"),
        }
    }
    assert_eq!(client.stats().reconnect_attempts, 0);
    assert!(!client.is_connected());
    drop(client);
    server.join().unwrap();
}

#[test]
fn a_silent_server_is_pinged_then_left_and_the_session_resumed() {
    let quick = Welcome {
        heartbeat_interval_ms: 20,
        heartbeat_timeout_ms: 100,
        ..welcome()
    };
    let (addr, server) = scripted_server(move |accept| {
        let mut silent = accept();
        silent.handshake_with(quick);
        let mut second = accept();
        second.next(|frame| assert!(matches!(frame, Frame::Hello(_)), "{frame:?}"));
        second.send(Frame::Welcome(Welcome {
            outcome: OUTCOME_RESUMED,
            ..quick
        }));
        // Before giving up, the client asked the silent server for a sign of life.
        silent.next(|frame| assert!(matches!(frame, Frame::Ping(_)), "{frame:?}"));
        second.wait_for_close();
    });
    let mut client = connect(addr, &reconnect_options());
    let event = client.recv_timeout(WAIT).unwrap();
    assert!(
        matches!(event, Some(Event::Resumed { resent: 0, .. })),
        "{event:?}"
    );
    assert_eq!(client.stats().heartbeat_timeouts, 1);
    drop(client);
    server.join().unwrap();
}

#[test]
fn on_full_error_refuses_a_publish_until_a_receipt_makes_room() {
    let (addr, server) = scripted_server(|accept| {
        let mut peer = accept();
        peer.handshake();
        peer.next(|frame| expect_publish(frame, 1, b"1"));
        peer.next(|frame| expect_publish(frame, 2, b"2"));
        // The receipt comes only when the client asks for a sign of life.
        let nonce = peer.next(|frame| match frame {
            Frame::Ping(nonce) => nonce,
            other => panic!("expected PING, got {other:?}"),
        });
        peer.send(Frame::Receipt(2));
        peer.send(Frame::Pong(nonce));
        peer.next(|frame| expect_publish(frame, 3, b"3"));
        peer.wait_for_close();
    });
    let options = ReconnectOptions {
        outbound_capacity: 2,
        on_full: OnFull::Error,
        ..reconnect_options()
    };
    let mut client = connect(addr, &options);
    client.publish("q", "", "1").unwrap();
    client.publish("q", "", "2").unwrap();
    assert!(matches!(
        client.publish("q", "", "3"),
        Err(ClientError::OutboundFull)
    ));
    assert_eq!(client.unreceipted(), 2);
    client.ping().unwrap();
    assert_eq!(client.publish("q", "", "3").unwrap(), 3);
    client.flush().unwrap();
    drop(client);
    server.join().unwrap();
}

#[test]
fn invalid_options_and_publishes_are_refused_before_anything_is_sent() {
    let zero = ReconnectOptions {
        outbound_capacity: 0,
        ..ReconnectOptions::default()
    };
    let refused = ReconnectingClient::connect("127.0.0.1:1", &options(), &zero);
    assert!(matches!(refused, Err(ClientError::InvalidArgument(_))));
    let jitter = ReconnectOptions {
        jitter: 1.5,
        ..ReconnectOptions::default()
    };
    let refused = ReconnectingClient::connect("127.0.0.1:1", &options(), &jitter);
    assert!(matches!(refused, Err(ClientError::InvalidArgument(_))));

    let (addr, server) = scripted_server(|accept| {
        let mut peer = accept();
        peer.handshake_with(Welcome {
            max_frame_len: 64,
            ..welcome()
        });
        peer.wait_for_close();
    });
    let mut client = connect(addr, &reconnect_options());
    assert!(matches!(
        client.publish("", "e", "x"),
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        client.publish("q", "e", [0u8; 64]),
        Err(ClientError::FrameTooLarge { max: 64, .. })
    ));
    assert!(matches!(
        client.subscribe("q", ""),
        Err(ClientError::InvalidArgument(_))
    ));
    assert_eq!(client.unreceipted(), 0);
    drop(client);
    server.join().unwrap();
}

/// Regression (issue 3): an attempt whose resends were cut short still moved the session on
/// (WELCOME said more was accepted), yet counted as a failure, so a publisher with a large
/// backlog on a link that carries little per connection gave up while draining it.
#[test]
fn attempts_cut_during_the_resends_still_count_as_progress() {
    const COUNT: u64 = 20_000;
    const CUT_RESUMES: u64 = 4;
    let (addr, server) = scripted_server(|accept| {
        let mut first = accept();
        first.handshake();
        for seq in 1..=COUNT {
            first.next(|frame| assert!(matches!(frame, Frame::Publish(p) if p.seq == seq)));
        }
        drop(first);
        // Each resume accepts one more publish, then takes a little of the resends and cuts
        // the connection: the client is still writing megabytes, so its restore fails.
        for accepted in 1..=CUT_RESUMES {
            let mut peer = accept();
            peer.next(|frame| match frame {
                Frame::Hello(hello) => assert_eq!(
                    hello.resume.map(|r| r.first_resendable_publish_seq),
                    Some(accepted)
                ),
                other => panic!("expected HELLO, got {other:?}"),
            });
            peer.send(Frame::Welcome(resumed(accepted)));
            peer.next(|frame| assert!(matches!(frame, Frame::Publish(p) if p.seq == accepted + 1)));
            drop(peer);
        }
        let mut last = accept();
        last.next(|frame| assert!(matches!(frame, Frame::Hello(_)), "{frame:?}"));
        last.send(Frame::Welcome(resumed(CUT_RESUMES)));
        for seq in CUT_RESUMES + 1..=COUNT {
            last.next(|frame| assert!(matches!(frame, Frame::Publish(p) if p.seq == seq)));
        }
        last.send(Frame::Receipt(COUNT));
        last.wait_for_close();
    });
    let options = ReconnectOptions {
        // Only attempts that change nothing count towards this.
        give_up_after: Some(Duration::from_millis(1)),
        outbound_capacity: COUNT as usize,
        outbound_capacity_bytes: 64 << 20,
        ..reconnect_options()
    };
    let mut client = connect(addr, &options);
    let payload = [7u8; 100];
    for _ in 0..COUNT {
        client.publish("q", "", payload).unwrap();
    }
    client.wait_receipted().unwrap();
    assert_eq!(client.stats().resumes, CUT_RESUMES + 1);
    drop(client);
    server.join().unwrap();
}
