//! Client tests against a scripted server: a real loopback socket whose far end a test thread
//! drives frame by frame, so each test states exactly what the server sends and when.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::protocol::codec::encode;
use crate::protocol::frame::OUTCOME_NEW;
use crate::protocol::{DecodeError, EncodeError, ErrorFrame, Goodbye, RESUME_TOKEN_LEN};

use super::*;

/// Bounds every wait in these tests; a hang fails instead of blocking the run. Never asserted
/// as a duration.
pub(super) const WAIT: Duration = Duration::from_secs(20);

/// The server end of a scripted connection.
pub(super) struct Peer {
    pub(super) stream: TcpStream,
    buf: Vec<u8>,
}

impl Peer {
    /// Reads the next frame the client sent and passes it to `check`.
    pub(super) fn next<T>(&mut self, check: impl FnOnce(Frame<'_>) -> T) -> T {
        loop {
            let decoded = decode(&self.buf, MAX_FRAME_LEN).expect("client sends valid frames");
            if let Some((frame, used)) = decoded {
                let result = check(frame);
                self.buf.drain(..used);
                return result;
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).expect("read from the client");
            assert!(n > 0, "the client closed before sending the expected frame");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub(super) fn send(&mut self, frame: Frame<'_>) {
        let mut out = Vec::new();
        encode(&frame, &mut out).expect("test frame encodes");
        self.send_raw(&out);
    }

    pub(super) fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the client");
    }

    pub(super) fn handshake(&mut self) {
        self.handshake_with(welcome());
    }

    pub(super) fn handshake_with(&mut self, welcome: Welcome) {
        self.next(|frame| assert!(matches!(frame, Frame::Hello(_)), "{frame:?}"));
        self.send(Frame::Welcome(welcome));
    }

    /// Keeps the connection open until the client closes it.
    pub(super) fn wait_for_close(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) => panic!("waiting for the client to close: {e}"),
            }
        }
    }
}

/// Starts a one-connection server running `script` on its own thread.
pub(super) fn scripted(
    script: impl FnOnce(&mut Peer) + Send + 'static,
) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let thread = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        let mut peer = Peer {
            stream,
            buf: Vec::new(),
        };
        script(&mut peer);
    });
    (addr, thread)
}

/// Starts a server on its own thread whose `script` takes connections one at a time with
/// the function it is given (for clients that reconnect).
pub(super) fn scripted_server(
    script: impl FnOnce(&mut dyn FnMut() -> Peer) + Send + 'static,
) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let thread = thread::spawn(move || {
        let mut accept = || {
            let (stream, _) = listener.accept().expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            stream.set_read_timeout(Some(WAIT)).expect("read timeout");
            Peer {
                stream,
                buf: Vec::new(),
            }
        };
        script(&mut accept);
    });
    (addr, thread)
}

fn connect(addr: SocketAddr) -> Client {
    Client::connect(addr, &options()).expect("connect")
}

pub(super) fn options() -> ClientOptions {
    ClientOptions {
        name: String::from("test"),
        inflight_window: 16,
        timeout: Some(WAIT),
        auth: None,
        extensions: false,
    }
}

pub(super) fn welcome() -> Welcome {
    Welcome {
        reconnect_keep_alive_ms: None,
        outcome: OUTCOME_NEW,
        lost_reason: None,
        missed: Some(0),
        session_id: 7,
        resume_token: [9; RESUME_TOKEN_LEN],
        last_publish_seq: 0,
        max_frame_len: MAX_FRAME_LEN,
        inflight_window: 16,
        heartbeat_interval_ms: 10_000,
        heartbeat_timeout_ms: 30_000,
        max_queue_depth: 100_000,
        max_queue_bytes: 64 << 20,
    }
}

pub(super) fn deliver(seq: u64, payload: &[u8]) -> Frame<'_> {
    Frame::Deliver(Deliver {
        seq,
        message_id: 100 + seq,
        flags: 0,
        queue: b"db",
        event: b"update",
        payload,
        delivery_count: None,
    })
}

pub(super) fn subscribed<'a>(queue: &'a [u8], event: Option<&'a [u8]>) -> Frame<'a> {
    Frame::Subscribed(Subscription {
        queue,
        event,
        group: None,
        is_pattern: false,
        start: None,
    })
}

pub(super) fn goodbye(code: ErrorCode, text: &str) -> Frame<'_> {
    Frame::Goodbye(Goodbye {
        code: Ok(code),
        text: text.as_bytes(),
    })
}

fn fatal_error(code: ErrorCode, ref_seq: u64, text: &str) -> Frame<'_> {
    Frame::Error(ErrorFrame {
        ref_op: None,
        code: Ok(code),
        fatal: true,
        ref_seq,
        text: text.as_bytes(),
    })
}

fn expect_delivery(event: Event, seq: u64, payload: &[u8]) {
    match event {
        Event::Deliver(delivery) => {
            assert_eq!(delivery.seq, seq);
            assert_eq!(delivery.message_id, 100 + seq);
            assert_eq!(delivery.queue, b"db");
            assert_eq!(delivery.event, b"update");
            assert_eq!(delivery.payload, payload);
            assert!(!delivery.redelivered);
        }
        other => panic!("expected delivery {seq}, got {other:?}"),
    }
}

// Handshake.

#[test]
fn connect_sends_hello_and_keeps_the_welcome() {
    let (addr, server) = scripted(|peer| {
        peer.next(|frame| match frame {
            Frame::Hello(hello) => {
                assert_eq!(hello.client_name, b"test");
                assert_eq!(hello.inflight_window, 16);
                assert_eq!(hello.resume, None);
            }
            other => panic!("expected HELLO, got {other:?}"),
        });
        peer.send(Frame::Welcome(Welcome {
            max_frame_len: 2048,
            ..welcome()
        }));
        peer.wait_for_close();
    });
    let client = connect(addr);
    assert_eq!(client.session_id(), 7);
    assert_eq!(client.welcome().max_frame_len, 2048);
    assert_eq!(client.welcome().inflight_window, 16);
    drop(client);
    server.join().unwrap();
}

#[test]
fn server_busy_before_welcome_fails_connect() {
    let (addr, server) = scripted(|peer| {
        peer.send(fatal_error(ErrorCode::ServerBusy, 0, "at max_connections"));
    });
    let err = Client::connect(addr, &options()).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Server {
                code: Ok(ErrorCode::ServerBusy),
                fatal: true,
                ..
            }
        ),
        "{err:?}"
    );
    server.join().unwrap();
}

#[test]
fn a_zero_timeout_is_refused() {
    let options = ClientOptions {
        timeout: Some(Duration::ZERO),
        ..options()
    };
    let err = Client::connect("127.0.0.1:1", &options).unwrap_err();
    assert!(matches!(err, ClientError::InvalidArgument(_)), "{err:?}");
}

// Publishing.

#[test]
fn publishes_are_numbered_from_one_and_receipted() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        for expected in 1..=3u64 {
            peer.next(|frame| match frame {
                Frame::Publish(publish) => {
                    assert_eq!(publish.seq, expected);
                    assert_eq!(publish.queue, b"db");
                    assert_eq!(publish.event, b"update");
                    assert_eq!(publish.payload, format!("m{expected}").as_bytes());
                    let key: Option<&[u8]> = (expected == 3).then_some(b"row7");
                    assert_eq!(publish.key, key);
                }
                other => panic!("expected PUBLISH, got {other:?}"),
            });
        }
        peer.send(Frame::Receipt(3));
        peer.wait_for_close();
    });
    let mut client = connect(addr);
    assert_eq!(client.publish("db", "update", "m1").unwrap(), 1);
    assert_eq!(client.publish("db", b"update", b"m2").unwrap(), 2);
    assert_eq!(
        client
            .publish_conflated("db", "update", "row7", "m3")
            .unwrap(),
        3
    );
    assert_eq!(client.last_publish_seq(), 3);
    client.wait_receipt(3).unwrap();
    assert_eq!(client.last_receipt(), 3);
    assert_eq!(client.recv().unwrap(), Event::Receipt(3));
    drop(client);
    server.join().unwrap();
}

#[test]
fn invalid_names_are_refused_before_anything_is_sent() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        peer.next(|frame| assert_eq!(frame, Frame::Ping(1)));
        peer.send(Frame::Pong(1));
        peer.wait_for_close();
    });
    let mut client = connect(addr);
    let long = [b'q'; 256];
    assert!(matches!(
        client.publish("", "e", "p"),
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        client.publish(long, "e", "p"),
        Err(ClientError::Encode(EncodeError::NameTooLong))
    ));
    assert!(matches!(
        client.subscribe("db", ""),
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        client.subscribe_all(""),
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        client.wait_receipt(1),
        Err(ClientError::InvalidArgument(_))
    ));
    // None of it reached the server, and no seq was used: the next frame is the PING.
    client.ping().unwrap();
    assert_eq!(client.last_publish_seq(), 0);
    drop(client);
    server.join().unwrap();
}

#[test]
fn a_publish_over_max_frame_len_is_refused_and_its_delivery_still_decodes() {
    // PUBLISH body: seq 8 + flags 1 + queue 1+2 + event 1+6 + payload; length field adds 2.
    let payload = vec![b'x'; 1000 - 2 - 8 - 1 - 3 - 7];
    let (addr, server) = {
        let payload = payload.clone();
        scripted(move |peer| {
            peer.handshake_with(Welcome {
                max_frame_len: 1000,
                ..welcome()
            });
            peer.next(|frame| assert!(matches!(frame, Frame::Publish(p) if p.seq == 1)));
            // The DELIVER of that publish is 8 bytes longer than max_frame_len.
            peer.send(deliver(1, &payload));
            peer.wait_for_close();
        })
    };
    let mut client = connect(addr);
    let mut too_long = payload.clone();
    too_long.push(b'x');
    let err = client.publish("db", "update", &too_long).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::FrameTooLarge {
                len: 1001,
                max: 1000
            }
        ),
        "{err:?}"
    );
    assert_eq!(client.publish("db", "update", &payload).unwrap(), 1);
    expect_delivery(client.recv().unwrap(), 1, &payload);
    drop(client);
    server.join().unwrap();
}

#[test]
fn dropping_the_client_sends_what_is_buffered() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        peer.next(|frame| assert!(matches!(frame, Frame::Publish(p) if p.seq == 1)));
        peer.wait_for_close();
    });
    let mut client = connect(addr);
    client.publish("db", "update", "last words").unwrap();
    drop(client);
    server.join().unwrap();
}

#[test]
fn a_publisher_that_never_waits_takes_in_receipts_when_it_flushes() {
    let (receipt_sent, receipt_arrived) = mpsc::channel();
    let payload = vec![b'p'; 1000];
    let batch = (DRAIN_AFTER_BYTES / payload.len() + 1) as u64;
    let (addr, server) = scripted(move |peer| {
        peer.handshake();
        for _ in 0..batch {
            peer.next(|frame| assert!(matches!(frame, Frame::Publish(_))));
        }
        peer.send(Frame::Receipt(batch));
        receipt_sent.send(()).unwrap();
        for _ in 0..batch {
            peer.next(|frame| assert!(matches!(frame, Frame::Publish(_))));
        }
        peer.wait_for_close();
    });
    let mut client = connect(addr);
    for _ in 0..batch {
        client.publish("db", "update", &payload).unwrap();
    }
    client.flush().unwrap();
    receipt_arrived.recv_timeout(WAIT).unwrap();
    for _ in 0..batch {
        client.publish("db", "update", &payload).unwrap();
    }
    client.flush().unwrap();
    assert_eq!(client.last_receipt(), batch);
    drop(client);
    server.join().unwrap();
}

// Subscribing.

#[test]
fn deliveries_arriving_before_subscribed_are_kept_for_recv() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        peer.next(|frame| {
            assert_eq!(
                frame,
                Frame::Subscribe(Subscription {
                    queue: b"db",
                    event: None,
                    group: None,
                    is_pattern: false,
                    start: None
                })
            );
        });
        peer.send(deliver(1, b"one"));
        peer.send(Frame::Receipt(0));
        peer.send(deliver(2, b"two"));
        peer.send(subscribed(b"db", None));
        peer.wait_for_close();
    });
    let mut client = connect(addr);
    client.subscribe_all("db").unwrap();
    expect_delivery(client.recv().unwrap(), 1, b"one");
    assert_eq!(client.recv().unwrap(), Event::Receipt(0));
    expect_delivery(client.recv().unwrap(), 2, b"two");
    assert_eq!(client.last_delivery_seq(), 2);
    drop(client);
    server.join().unwrap();
}

#[test]
fn a_reply_for_another_subscription_does_not_end_the_wait() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        peer.next(|frame| {
            assert_eq!(
                frame,
                Frame::Subscribe(Subscription {
                    queue: b"db",
                    event: Some(b"update"),
                    group: None,
                    is_pattern: false,
                    start: None
                })
            );
        });
        peer.send(subscribed(b"db", None));
        peer.send(subscribed(b"other", Some(b"update")));
        peer.send(subscribed(b"db", Some(b"update")));
        peer.next(|frame| {
            assert_eq!(
                frame,
                Frame::Unsubscribe(Subscription {
                    queue: b"db",
                    event: Some(b"update"),
                    group: None,
                    is_pattern: false,
                    start: None
                })
            );
        });
        peer.send(Frame::Unsubscribed(Subscription {
            queue: b"db",
            event: Some(b"update"),
            group: None,
            is_pattern: false,
            start: None,
        }));
        // The client must not have read past its reply: this PONG answers its PING.
        peer.next(|frame| assert_eq!(frame, Frame::Ping(1)));
        peer.send(Frame::Pong(1));
        peer.wait_for_close();
    });
    let mut client = connect(addr);
    client.subscribe("db", "update").unwrap();
    client.unsubscribe("db", "update").unwrap();
    client.ping().unwrap();
    drop(client);
    server.join().unwrap();
}

// Receiving.

#[test]
fn server_ping_is_answered_while_waiting() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        peer.send(Frame::Ping(99));
        peer.next(|frame| assert_eq!(frame, Frame::Pong(99)));
        peer.send(deliver(1, b"after the pong"));
        peer.wait_for_close();
    });
    let mut client = connect(addr);
    expect_delivery(client.recv().unwrap(), 1, b"after the pong");
    drop(client);
    server.join().unwrap();
}

#[test]
fn frames_cut_at_every_byte_arrive_whole() {
    let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let (addr, server) = {
        let payload = payload.clone();
        scripted(move |peer| {
            peer.handshake();
            let mut bytes = Vec::new();
            encode(&deliver(1, &payload), &mut bytes).unwrap();
            encode(&Frame::Receipt(0), &mut bytes).unwrap();
            encode(&deliver(2, b""), &mut bytes).unwrap();
            for byte in bytes {
                peer.send_raw(&[byte]);
            }
            peer.wait_for_close();
        })
    };
    let mut client = connect(addr);
    expect_delivery(client.recv().unwrap(), 1, &payload);
    assert_eq!(client.recv().unwrap(), Event::Receipt(0));
    expect_delivery(client.recv().unwrap(), 2, b"");
    drop(client);
    server.join().unwrap();
}

#[test]
fn a_delivery_larger_than_the_read_buffer_arrives_whole() {
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (addr, server) = {
        let payload = payload.clone();
        scripted(move |peer| {
            peer.handshake();
            peer.send(deliver(1, &payload));
            peer.send(deliver(2, b"small"));
            peer.wait_for_close();
        })
    };
    let mut client = connect(addr);
    expect_delivery(client.recv().unwrap(), 1, &payload);
    expect_delivery(client.recv().unwrap(), 2, b"small");
    drop(client);
    server.join().unwrap();
}

#[test]
fn recv_timeout_returns_none_and_the_client_stays_usable() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        peer.next(|frame| assert_eq!(frame, Frame::Ping(1)));
        peer.send(Frame::Pong(1));
        peer.wait_for_close();
    });
    let mut client = connect(addr);
    assert_eq!(client.recv_timeout(Duration::ZERO).unwrap(), None);
    assert_eq!(
        client.recv_timeout(Duration::from_millis(20)).unwrap(),
        None
    );
    client.ping().unwrap();
    drop(client);
    server.join().unwrap();
}

#[test]
fn poll_deliveries_borrows_every_delivery_in_order() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        peer.next(|frame| assert!(matches!(frame, Frame::Subscribe(_))));
        peer.send(deliver(1, b"kept during subscribe"));
        peer.send(subscribed(b"db", Some(b"update")));
        peer.send(deliver(2, b"two"));
        peer.send(Frame::Receipt(0));
        peer.send(deliver(3, b"three"));
        peer.wait_for_close();
    });
    let mut client = connect(addr);
    client.subscribe("db", "update").unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        client
            .poll_deliveries(Some(WAIT), |d| {
                assert_eq!(d.queue, b"db");
                assert_eq!(d.message_id, 100 + d.seq);
                seen.push((d.seq, d.payload.to_vec()));
            })
            .unwrap();
    }
    assert_eq!(
        seen,
        vec![
            (1, b"kept during subscribe".to_vec()),
            (2, b"two".to_vec()),
            (3, b"three".to_vec())
        ]
    );
    assert_eq!(client.last_delivery_seq(), 3);
    assert_eq!(
        client
            .poll_deliveries(Some(Duration::ZERO), |_| {})
            .unwrap(),
        0
    );
    assert_eq!(
        client
            .poll_deliveries(Some(Duration::from_millis(10)), |_| {})
            .unwrap(),
        0
    );
    drop(client);
    server.join().unwrap();
}

// Acking.

#[test]
fn acks_merge_and_cannot_name_deliveries_not_received() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        for seq in 1..=3 {
            peer.send(deliver(seq, b"m"));
        }
        peer.next(|frame| match frame {
            Frame::Ack(ack) => {
                assert_eq!(ack.up_to, 3);
                assert!(ack.seqs.is_empty());
            }
            other => panic!("expected one merged ACK, got {other:?}"),
        });
        peer.next(|frame| match frame {
            Frame::Ack(ack) => {
                assert_eq!(ack.up_to, 0);
                assert_eq!(ack.seqs.iter().collect::<Vec<_>>(), vec![2, 3]);
            }
            other => panic!("expected ACK with seqs, got {other:?}"),
        });
        peer.wait_for_close();
    });
    let mut client = connect(addr);
    assert!(matches!(
        client.ack(1),
        Err(ClientError::InvalidArgument(_))
    ));
    for seq in 1..=3 {
        expect_delivery(client.recv().unwrap(), seq, b"m");
    }
    assert!(matches!(
        client.ack(4),
        Err(ClientError::InvalidArgument(_))
    ));
    client.ack(1).unwrap();
    client.ack(3).unwrap();
    client.ack(2).unwrap();
    client.flush().unwrap();
    assert!(matches!(
        client.ack_seqs(0, &[2, 4]),
        Err(ClientError::InvalidArgument(_))
    ));
    client.ack_seqs(0, &[2, 3]).unwrap();
    client.flush().unwrap();
    drop(client);
    server.join().unwrap();
}

// Requests.

#[test]
fn stats_returns_the_reply_body() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        peer.next(|frame| assert_eq!(frame, Frame::Stats));
        peer.send(Frame::StatsReply(br#"{"server":{}}"#));
        peer.wait_for_close();
    });
    let mut client = connect(addr);
    assert_eq!(client.stats().unwrap(), r#"{"server":{}}"#);
    drop(client);
    server.join().unwrap();
}

#[test]
fn a_stats_reply_arriving_after_a_timeout_is_not_taken_for_the_next() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        peer.next(|frame| assert_eq!(frame, Frame::Stats));
        peer.next(|frame| assert_eq!(frame, Frame::Stats));
        peer.send(Frame::StatsReply(b"first"));
        peer.send(Frame::StatsReply(b"second"));
        peer.wait_for_close();
    });
    let mut client = Client::connect(
        addr,
        &ClientOptions {
            timeout: Some(Duration::from_millis(50)),
            ..options()
        },
    )
    .unwrap();
    assert!(matches!(client.stats(), Err(ClientError::Timeout)));
    client.timeout = Some(WAIT);
    assert_eq!(client.stats().unwrap(), "second");
    drop(client);
    server.join().unwrap();
}

// Endings.

#[test]
fn bye_waits_for_goodbye_client_bye() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        peer.next(|frame| assert!(matches!(frame, Frame::Publish(_))));
        peer.next(|frame| assert_eq!(frame, Frame::Bye));
        peer.send(deliver(1, b"dropped"));
        peer.send(goodbye(ErrorCode::ClientBye, ""));
    });
    let mut client = connect(addr);
    client.publish("db", "update", "flushed by bye").unwrap();
    client.bye().unwrap();
    server.join().unwrap();
}

#[test]
fn goodbye_is_reported_after_the_deliveries_before_it() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        peer.send(deliver(1, b"one"));
        peer.send(goodbye(ErrorCode::ServerShutdown, "shutting down"));
    });
    let mut client = connect(addr);
    expect_delivery(client.recv().unwrap(), 1, b"one");
    for _ in 0..2 {
        match client.recv() {
            Err(ClientError::Goodbye {
                code: Ok(ErrorCode::ServerShutdown),
                text,
            }) => assert_eq!(text, "shutting down"),
            other => panic!("expected GOODBYE, got {other:?}"),
        }
    }
    assert!(matches!(
        client.publish("db", "e", "p"),
        Err(ClientError::Goodbye { .. })
    ));
    server.join().unwrap();
}

#[test]
fn a_fatal_error_ends_the_client_and_is_reported_again() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        peer.next(|frame| assert!(matches!(frame, Frame::Publish(_))));
        peer.send(fatal_error(ErrorCode::LimitExceeded, 1, "payload too long"));
    });
    let mut client = connect(addr);
    let seq = client.publish("db", "update", "big").unwrap();
    let err = client.wait_receipt(seq).unwrap_err();
    assert!(err.is_fatal());
    let expected = |err: &ClientError| {
        matches!(err, ClientError::Server {
            code: Ok(ErrorCode::LimitExceeded),
            fatal: true,
            ref_seq: 1,
            text,
        } if text == "payload too long")
    };
    assert!(expected(&err), "{err:?}");
    assert_eq!(
        err.to_string(),
        "server error LIMIT_EXCEEDED (publish seq 1): payload too long"
    );
    assert!(expected(&client.publish("db", "e", "p").unwrap_err()));
    server.join().unwrap();
}

#[test]
fn eof_without_goodbye_is_closed() {
    let (addr, server) = scripted(|peer| peer.handshake());
    let mut client = connect(addr);
    server.join().unwrap();
    assert!(matches!(client.recv(), Err(ClientError::Closed)));
    assert!(matches!(client.ping(), Err(ClientError::Closed)));
}

#[test]
fn an_oversized_length_is_rejected_from_the_header_alone() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        // Only the header of a frame one byte over the decode limit; no body follows.
        let len = MAX_FRAME_LEN + session::DELIVER_OVERHEAD_BYTES + 1;
        let mut header = len.to_be_bytes().to_vec();
        header.extend_from_slice(&[crate::protocol::VERSION, Op::Deliver as u8]);
        peer.send_raw(&header);
        peer.wait_for_close();
    });
    let mut client = connect(addr);
    let err = client.recv().unwrap_err();
    assert!(
        matches!(err, ClientError::Decode(DecodeError::FrameTooLarge { .. })),
        "{err:?}"
    );
    drop(client);
    server.join().unwrap();
}

#[test]
fn a_client_to_server_op_from_the_server_is_unexpected() {
    let (addr, server) = scripted(|peer| {
        peer.handshake();
        peer.send(Frame::Bye);
        peer.wait_for_close();
    });
    let mut client = connect(addr);
    let err = client.recv().unwrap_err();
    assert!(
        matches!(err, ClientError::UnexpectedFrame(op) if op == Op::Bye.name()),
        "{err:?}"
    );
    drop(client);
    server.join().unwrap();
}
