//! Bad input gets a specific ERROR code and a closed connection; nobody else notices.

use std::time::Duration;

use weir::protocol::codec::{encode_ack, encode_hello, encode_publish, encode_subscription};
use weir::protocol::{ErrorCode, Hello, Op, Publish, Subscription};

use crate::common::{RawConn, TestServer};

fn frame(len: u32, version: u8, op: u8, body: &[u8]) -> Vec<u8> {
    let mut out = len.to_be_bytes().to_vec();
    out.push(version);
    out.push(op);
    out.extend_from_slice(body);
    out
}

fn hello_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    let hello = Hello {
        extensions: false,
        inflight_window: 0,
        client_name: b"bad",
        resume: None,
        auth: None,
    };
    encode_hello(&hello, &mut out).unwrap();
    out
}

fn publish_bytes(seq: u64, queue: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let publish = Publish {
        seq,
        queue,
        event: b"e",
        key: None,
        ttl_ms: None,
        payload: b"x",
    };
    encode_publish(&publish, &mut out).unwrap();
    out
}

struct Case {
    name: &'static str,
    /// Send HELLO (and read WELCOME) first.
    after_hello: bool,
    bytes: Vec<u8>,
    expected: ErrorCode,
}

fn cases() -> Vec<Case> {
    let mut subscribe_first = Vec::new();
    let sub = Subscription {
        queue: b"q",
        event: None,
        group: None,
        is_pattern: false,
        start: None,
    };
    encode_subscription(Op::Subscribe, &sub, &mut subscribe_first).unwrap();
    let mut ack_unsent = Vec::new();
    encode_ack(5, &[], &mut ack_unsent).unwrap();
    let mut ack_listed_unsent = Vec::new();
    encode_ack(0, &[9], &mut ack_listed_unsent).unwrap();
    vec![
        Case {
            name: "zero length",
            after_hello: false,
            bytes: vec![0, 0, 0, 0],
            expected: ErrorCode::FrameTooShort,
        },
        Case {
            name: "length 1",
            after_hello: true,
            bytes: vec![0, 0, 0, 1, 1],
            expected: ErrorCode::FrameTooShort,
        },
        Case {
            name: "length 0xFFFFFFFF, no body sent",
            after_hello: true,
            bytes: vec![0xFF, 0xFF, 0xFF, 0xFF],
            expected: ErrorCode::FrameTooLarge,
        },
        Case {
            name: "over the before-HELLO limit, no body sent",
            after_hello: false,
            bytes: 4_097u32.to_be_bytes().to_vec(),
            expected: ErrorCode::FrameTooLarge,
        },
        Case {
            name: "unsupported version",
            after_hello: false,
            bytes: frame(2, 0x02, Op::Hello as u8, &[]),
            expected: ErrorCode::UnsupportedVersion,
        },
        Case {
            name: "unknown op",
            after_hello: true,
            bytes: frame(2, 0x01, 0x7F, &[]),
            expected: ErrorCode::UnknownOp,
        },
        Case {
            name: "server op sent by a client",
            after_hello: true,
            bytes: frame(10, 0x01, Op::Receipt as u8, &[0; 8]),
            expected: ErrorCode::UnknownOp,
        },
        // Issue 13: the header check comes first, even before HELLO.
        Case {
            name: "unknown op before HELLO",
            after_hello: false,
            bytes: frame(2, 0x01, 0x7F, &[]),
            expected: ErrorCode::UnknownOp,
        },
        Case {
            name: "server op before HELLO",
            after_hello: false,
            bytes: frame(10, 0x01, Op::Receipt as u8, &[0; 8]),
            expected: ErrorCode::HelloRequired,
        },
        Case {
            name: "frame before HELLO",
            after_hello: false,
            bytes: subscribe_first,
            expected: ErrorCode::HelloRequired,
        },
        Case {
            name: "second HELLO",
            after_hello: true,
            bytes: hello_bytes(),
            expected: ErrorCode::DuplicateHello,
        },
        Case {
            name: "HELLO with a name longer than the frame",
            after_hello: false,
            bytes: frame(2 + 6, 0x01, Op::Hello as u8, &[0, 0, 0, 0, 0, 200]),
            expected: ErrorCode::MalformedFrame,
        },
        Case {
            name: "PUBLISH to an empty queue name",
            after_hello: true,
            bytes: publish_bytes(1, b""),
            expected: ErrorCode::InvalidName,
        },
        Case {
            name: "PUBLISH seq skipping ahead",
            after_hello: true,
            bytes: publish_bytes(2, b"q"),
            expected: ErrorCode::PublishSeqGap,
        },
        Case {
            name: "ACK up to a seq never sent",
            after_hello: true,
            bytes: ack_unsent,
            expected: ErrorCode::UnknownAckSeq,
        },
        Case {
            name: "ACK listing a seq never sent",
            after_hello: true,
            bytes: ack_listed_unsent,
            expected: ErrorCode::UnknownAckSeq,
        },
    ]
}

#[test]
fn each_malformed_input_gets_its_error_code_and_a_close_while_others_go_on() {
    let server = TestServer::start();
    let mut subscriber = RawConn::connect(server.addr);
    subscriber.hello("good-sub");
    subscriber.subscribe("db", None);
    let mut publisher = RawConn::connect(server.addr);
    publisher.hello("good-pub");
    let mut seq = 0;
    for case in cases() {
        let mut bad = RawConn::connect(server.addr);
        if case.after_hello {
            bad.hello("bad");
        }
        bad.send(&case.bytes);
        println!("case: {}", case.name);
        bad.expect_error_and_close(case.expected);

        // The well-behaved pair is unaffected.
        seq += 1;
        publisher.publish(seq, "db", "update", case.name.as_bytes());
        let receipt = publisher.read_frame().expect("RECEIPT");
        assert_eq!(receipt.op, Op::Receipt as u8);
        let delivery = subscriber.read_frame().expect("DELIVER");
        assert_eq!(delivery.op, Op::Deliver as u8);
        assert!(delivery.body.ends_with(case.name.as_bytes()));
    }
    let stats = server.wait_for("only the two good sessions left", |s| {
        s.server.connections == 2
    });
    assert_eq!(stats.server.sessions, 2);
    assert_eq!(stats.server.messages_delivered, seq);
}

#[test]
fn a_valid_frame_written_one_byte_per_write_is_accepted() {
    let server = TestServer::start();
    let mut conn = RawConn::connect(server.addr);
    for byte in hello_bytes() {
        conn.send(&[byte]);
        std::thread::sleep(Duration::from_millis(1));
    }
    let welcome = conn.read_frame().expect("WELCOME");
    assert_eq!(welcome.op, Op::Welcome as u8);
}

#[test]
fn random_garbage_never_takes_the_server_down() {
    let server = TestServer::start();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..50 {
        let mut bytes = Vec::new();
        for _ in 0..256 {
            // xorshift: deterministic junk.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push(state as u8);
        }
        let mut conn = RawConn::connect(server.addr);
        conn.send(&bytes);
        let frames = conn.read_until_close();
        let last = frames.last().expect("an ERROR before the close");
        assert_eq!(last.op, Op::Error as u8);
    }
    let mut good = RawConn::connect(server.addr);
    good.hello("after-garbage");
    server.wait_for("garbage connections closed", |s| s.server.connections == 1);
}

/// Issue 13: a TLS ClientHello or an HTTP request sent to a plain Weir listener gets an ERROR
/// whose text says what is wrong, not "frame length 369295616 exceeds the limit".
#[test]
fn tls_and_http_sent_to_a_plain_listener_are_named_in_the_error_text() {
    let server = TestServer::start();
    let client_hello = [
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ];
    for (bytes, named) in [
        (&client_hello[..], "looks like TLS"),
        (
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            "looks like HTTP",
        ),
    ] {
        let mut conn = RawConn::connect(server.addr);
        conn.send(bytes);
        let frames = conn.read_until_close();
        let error = frames
            .iter()
            .find(|f| f.op == Op::Error as u8)
            .expect("an ERROR before the close");
        let text = String::from_utf8_lossy(&error.body);
        assert!(text.contains(named), "{text}");
    }
}
