//! WebSocket listeners (issue 11): Weir over `ws://`, `wss://` and behind a PROXY header, the
//! upgrade's refusals, the message rules (text, size), and a resume after a cut. The client is
//! tungstenite's blocking one over a std socket: one Weir frame per binary message, as a
//! browser client sends them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};
use weir::config::{ListenerConfig, ListenerTransport};
use weir::protocol::codec::{encode_ack, encode_hello, encode_publish, encode_subscription};
use weir::protocol::frame::OUTCOME_RESUMED;
use weir::protocol::{decode, ErrorCode, Frame, Hello, Op, Publish, Resume, Subscription};
use weir::Config;

use crate::chaos_proxy::{ChaosConfig, ChaosProxy};
use crate::common::{plain, publish_all, TestServer, WAIT};
use crate::tls::{certificate, Certificate};

fn ws_listener() -> ListenerConfig {
    ListenerConfig {
        transport: Some(ListenerTransport::Websocket),
        ..ListenerConfig::new("127.0.0.1:0".parse().unwrap())
    }
}

fn ws_server(listener: ListenerConfig) -> TestServer {
    TestServer::with_config(Config {
        listeners: vec![listener],
        ..Config::default()
    })
}

/// An upgrade request for `addr` offering `protocol`, with extra headers.
fn request(
    addr: SocketAddr,
    protocol: Option<&str>,
    extra: &[(&'static str, &str)],
) -> tungstenite::handshake::client::Request {
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    if let Some(protocol) = protocol {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(protocol).unwrap(),
        );
    }
    for (name, value) in extra {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    request
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A Weir connection over WebSocket on any stream (TCP, TLS, after a PROXY header).
struct WsConn<S: Read + Write> {
    ws: WebSocket<S>,
}

impl WsConn<TcpStream> {
    fn connect(addr: SocketAddr) -> WsConn<TcpStream> {
        WsConn::over(tcp(addr), addr)
    }
}

impl<S: Read + Write> WsConn<S> {
    /// The upgrade done by hand, then tungstenite's client framing: tungstenite's handshake
    /// machine refuses a response that arrives in more than 64 packets of under 128 bytes on
    /// average (its "attack" heuristic), which a proxy slicing every write into 1 to 3 bytes
    /// produces depending on timing.
    fn over_by_hand(mut stream: S, addr: SocketAddr) -> WsConn<S> {
        let head = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: weir.v1\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut response = Vec::new();
        let mut byte = [0u8; 1];
        while !response.ends_with(b"\r\n\r\n") {
            assert_eq!(
                stream.read(&mut byte).unwrap(),
                1,
                "EOF in the upgrade response"
            );
            response.push(byte[0]);
        }
        let response = String::from_utf8(response).unwrap();
        assert!(response.starts_with("HTTP/1.1 101"), "{response}");
        // RFC 6455 §1.3's sample key and its accept value.
        assert!(
            response.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{response}"
        );
        assert!(response
            .to_ascii_lowercase()
            .contains("sec-websocket-protocol: weir.v1"));
        let ws = WebSocket::from_raw_socket(stream, tungstenite::protocol::Role::Client, None);
        WsConn { ws }
    }

    fn over(stream: S, addr: SocketAddr) -> WsConn<S> {
        let (ws, response) =
            tungstenite::client(request(addr, Some("weir.v1"), &[]), stream).expect("upgrade");
        assert_eq!(response.headers()["sec-websocket-protocol"], "weir.v1");
        WsConn { ws }
    }

    fn send(&mut self, frame: &[u8]) {
        self.ws.send(Message::binary(frame.to_vec())).unwrap();
    }

    /// The next binary message, checked to hold exactly one Weir frame: (op, whole frame).
    fn read(&mut self) -> (u8, Vec<u8>) {
        loop {
            match self.ws.read().expect("message") {
                Message::Binary(data) => {
                    let (_, used) = decode(&data, u32::MAX).unwrap().expect("a whole frame");
                    assert_eq!(used, data.len(), "one frame per message");
                    return (data[5], data.to_vec());
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn hello(&mut self, name: &str, resume: Option<Resume>) -> weir::protocol::Welcome {
        let mut out = Vec::new();
        let hello = Hello {
            inflight_window: 0,
            client_name: name.as_bytes(),
            resume,
            auth: None,
            extensions: false,
        };
        encode_hello(&hello, &mut out).unwrap();
        self.send(&out);
        let (op, frame) = self.read();
        assert_eq!(op, Op::Welcome as u8, "{frame:?}");
        match decode(&frame, u32::MAX).unwrap() {
            Some((Frame::Welcome(welcome), _)) => welcome,
            other => panic!("{other:?}"),
        }
    }

    fn subscribe(&mut self, queue: &str) {
        let mut out = Vec::new();
        let sub = Subscription {
            queue: queue.as_bytes(),
            event: None,
            group: None,
            is_pattern: false,
            start: None,
        };
        encode_subscription(Op::Subscribe, &sub, &mut out).unwrap();
        self.send(&out);
        assert_eq!(self.read().0, Op::Subscribed as u8);
    }

    fn publish(&mut self, seq: u64, queue: &str, payload: &[u8]) {
        let mut out = Vec::new();
        let publish = Publish {
            seq,
            queue: queue.as_bytes(),
            event: b"e",
            key: None,
            ttl_ms: None,
            payload,
        };
        encode_publish(&publish, &mut out).unwrap();
        self.send(&out);
    }

    /// The next DELIVER as (seq, payload).
    fn deliver(&mut self) -> (u64, Vec<u8>) {
        loop {
            let (op, frame) = self.read();
            if let Some((Frame::Deliver(d), _)) = decode(&frame, u32::MAX).unwrap() {
                return (d.seq, d.payload.to_vec());
            }
            assert_eq!(op, Op::Ping as u8, "only PINGs between deliveries");
        }
    }

    fn ack(&mut self, up_to: u64) {
        let mut out = Vec::new();
        encode_ack(up_to, &[], &mut out).unwrap();
        self.send(&out);
    }

    /// Reads until the close frame; returns it with the Weir ERROR or GOODBYE code before it.
    fn read_until_close(&mut self) -> (Option<u16>, Option<CloseCode>) {
        let mut weir_code = None;
        loop {
            match self.ws.read() {
                Ok(Message::Binary(data)) => {
                    if data[5] == Op::Error as u8 || data[5] == Op::Goodbye as u8 {
                        weir_code = Some(u16::from_be_bytes([data[6], data[7]]));
                    }
                }
                Ok(Message::Close(frame)) => return (weir_code, frame.map(|f| f.code)),
                Ok(_) => {}
                Err(e) => panic!("before the close frame: {e}"),
            }
        }
    }
}

/// Publishes `count` payloads over `conn` as one session and waits for the last receipt.
fn publish_and_wait<S: Read + Write>(conn: &mut WsConn<S>, queue: &str, count: u64) {
    for seq in 1..=count {
        conn.publish(seq, queue, &seq.to_be_bytes().repeat(8));
    }
    loop {
        let (op, frame) = conn.read();
        if op == Op::Receipt as u8 && u64::from_be_bytes(frame[6..14].try_into().unwrap()) == count
        {
            return;
        }
    }
}

/// Subscriber and publisher over `connect`: every payload arrives once, in order, and acks
/// empty the subscriber's queue.
fn pub_sub_round<S: Read + Write>(server: &TestServer, mut connect: impl FnMut() -> WsConn<S>) {
    let mut subscriber = connect();
    subscriber.hello("ws-sub", None);
    subscriber.subscribe("db");
    let mut publisher = connect();
    publisher.hello("ws-pub", None);
    let count = 2_000;
    publish_and_wait(&mut publisher, "db", count);
    for expected in 1..=count {
        let (seq, payload) = subscriber.deliver();
        assert_eq!(seq, expected);
        assert_eq!(payload, expected.to_be_bytes().repeat(8));
        if seq % 100 == 0 {
            subscriber.ack(seq);
        }
    }
    server.wait_for("all acked", |s| s.server.messages_acked == count);
}

#[test]
fn hello_subscribe_publish_deliver_ack_work_over_ws() {
    let server = ws_server(ws_listener());
    pub_sub_round(&server, || WsConn::connect(server.addr));
    let stats = server.stats();
    assert_eq!(stats.server.messages_published, 2_000);
    assert_eq!(stats.server.messages_delivered, 2_000);
}

#[test]
fn pub_sub_works_over_wss() {
    let cert = certificate("wss");
    let server = ws_server(ListenerConfig {
        tls_cert: Some(cert.dir.join("cert.pem")),
        tls_key: Some(cert.dir.join("key.pem")),
        ..ws_listener()
    });
    let addr = server.addr;
    pub_sub_round(&server, || WsConn::over(tls_stream(addr, &cert), addr));
}

fn tls_stream(
    addr: SocketAddr,
    cert: &Certificate,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let session = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    rustls::StreamOwned::new(session, tcp(addr))
}

#[test]
fn behind_a_proxy_v2_header_the_server_sees_the_named_client() {
    let server = ws_server(ListenerConfig {
        proxy_protocol: Some(true),
        ..ws_listener()
    });
    let mut stream = tcp(server.addr);
    // PROXY v2, PROXY command, TCP over IPv4: 203.0.113.7:4000 -> 127.0.0.1:7400.
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12, 203, 0, 113, 7, 127, 0, 0, 1]);
    header.extend_from_slice(&[0x0f, 0xa0, 0x1c, 0xe8]);
    stream.write_all(&header).unwrap();
    let mut conn = WsConn::over(stream, server.addr);
    conn.hello("proxied", None);
    let stats = server.stats();
    let session = stats
        .sessions
        .iter()
        .find(|s| s.client_name == "proxied")
        .unwrap();
    assert_eq!(session.peer, "203.0.113.7:4000");
    assert_eq!(stats.server.proxy_headers, 1);
}

/// Tries an upgrade with `protocol` and headers; the refusal's status and body.
fn refused(
    addr: SocketAddr,
    protocol: Option<&str>,
    extra: &[(&'static str, &str)],
) -> (u16, String) {
    match tungstenite::client(request(addr, protocol, extra), tcp(addr)) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            let body = response.body().clone().unwrap_or_default();
            (
                response.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
        Ok(_) => panic!("upgrade accepted"),
        Err(e) => panic!("not an HTTP refusal: {e}"),
    }
}

#[test]
fn an_upgrade_without_the_weir_subprotocol_is_refused_with_400() {
    let server = ws_server(ws_listener());
    for protocol in [None, Some("mqtt"), Some("weir.v2")] {
        let (status, body) = refused(server.addr, protocol, &[]);
        assert_eq!(status, 400, "{protocol:?}");
        assert!(body.contains("weir.v1"), "{body}");
    }
    server.wait_for("no sessions", |s| s.server.sessions == 0);
}

#[test]
fn an_origin_from_another_host_is_refused_with_403_and_the_same_host_is_allowed() {
    let server = ws_server(ListenerConfig {
        websocket_allowed_origins: Some(vec!["https://app.example".into()]),
        ..ws_listener()
    });
    let (status, body) = refused(
        server.addr,
        Some("weir.v1"),
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(status, 403);
    assert!(body.contains("evil.example"), "{body}");
    let stats = server.wait_for("the close", |s| s.server.connections == 0);
    assert_eq!(stats.server.closes.get("NOT_AUTHORIZED"), Some(&1));
    for origin in [
        format!("http://{}", server.addr),
        "https://app.example".into(),
    ] {
        let request = request(server.addr, Some("weir.v1"), &[("Origin", &origin)]);
        let (ws, _) = tungstenite::client(request, tcp(server.addr)).expect(&origin);
        let mut conn = WsConn { ws };
        conn.hello("origin-ok", None);
    }
}

#[test]
fn a_plain_http_request_gets_426_and_an_oversize_upgrade_431() {
    let server = ws_server(ws_listener());
    let mut stream = tcp(server.addr);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");

    let mut stream = tcp(server.addr);
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    big.extend_from_slice(format!("X-Padding: {}\r\n", "a".repeat(9_000)).as_bytes());
    let _ = stream.write_all(&big);
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[test]
fn an_unfinished_upgrade_is_closed_at_the_handshake_timeout() {
    let server = TestServer::with_config(Config {
        handshake_timeout_ms: 200,
        listeners: vec![ws_listener()],
        ..Config::default()
    });
    let mut stream = tcp(server.addr);
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut rest = Vec::new();
    // The server closes; it had no WebSocket to say anything in.
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
    let stats = server.wait_for("the close", |s| s.server.connections == 0);
    assert_eq!(stats.server.closes.get("HANDSHAKE_TIMEOUT"), Some(&1));
}

#[test]
fn an_oversize_message_is_refused_with_frame_too_large_then_close_1009() {
    let server = ws_server(ListenerConfig {
        max_frame_len: Some(8_192),
        ..ws_listener()
    });
    let mut conn = WsConn::connect(server.addr);
    conn.hello("big", None);
    // One byte over a whole frame of max_frame_len (4-byte length field + 8,192).
    conn.ws
        .send(Message::binary(vec![0u8; 8_192 + 4 + 1]))
        .unwrap();
    let (weir_code, close) = conn.read_until_close();
    assert_eq!(weir_code, Some(ErrorCode::FrameTooLarge as u16));
    assert_eq!(close, Some(CloseCode::Size));
}

#[test]
fn a_text_message_is_refused_then_close_1003() {
    let server = ws_server(ws_listener());
    let mut conn = WsConn::connect(server.addr);
    conn.hello("texter", None);
    conn.ws.send(Message::text("SUBSCRIBE db")).unwrap();
    let (weir_code, close) = conn.read_until_close();
    assert_eq!(weir_code, Some(ErrorCode::MalformedFrame as u16));
    assert_eq!(close, Some(CloseCode::Unsupported));
}

#[test]
fn frames_split_across_messages_and_pings_are_fine_and_bye_ends_with_close_1000() {
    let server = ws_server(ws_listener());
    let mut conn = WsConn::connect(server.addr);
    let mut out = Vec::new();
    let hello = Hello {
        inflight_window: 0,
        client_name: b"splitter",
        resume: None,
        auth: None,
        extensions: false,
    };
    encode_hello(&hello, &mut out).unwrap();
    let sub = Subscription {
        queue: b"db",
        event: None,
        group: None,
        is_pattern: false,
        start: None,
    };
    encode_subscription(Op::Subscribe, &sub, &mut out).unwrap();
    // HELLO and SUBSCRIBE cut at odd places across three messages, a ping between.
    conn.send(&out[..3]);
    conn.ws.send(Message::Ping(vec![7].into())).unwrap();
    conn.send(&out[3..out.len() - 2]);
    conn.send(&out[out.len() - 2..]);
    let mut pong = false;
    let mut ops = Vec::new();
    while ops.len() < 2 {
        match conn.ws.read().unwrap() {
            Message::Pong(data) => pong = data[..] == [7],
            Message::Binary(data) => ops.push(data[5]),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ops, [Op::Welcome as u8, Op::Subscribed as u8]);
    assert!(pong, "the ping was answered");
    let mut bye = Vec::new();
    weir::protocol::codec::encode_empty(Op::Bye, &mut bye);
    conn.send(&bye);
    let (weir_code, close) = conn.read_until_close();
    assert_eq!(weir_code, Some(ErrorCode::ClientBye as u16));
    assert_eq!(close, Some(CloseCode::Normal));
}

#[test]
fn a_session_cut_over_ws_resumes_and_nothing_is_lost() {
    // A WebSocket listener for the subscriber, a TCP one for the publisher.
    let server = TestServer::with_config(Config {
        listeners: vec![
            ws_listener(),
            ListenerConfig::new("127.0.0.1:0".parse().unwrap()),
        ],
        ..Config::default()
    });
    let mut publisher = plain(server.handle.local_addrs()[1], "publisher");
    let mut subscriber = WsConn::connect(server.addr);
    let welcome = subscriber.hello("resumer", None);
    subscriber.subscribe("db");
    let first: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    publish_all(&mut publisher, "db", &first);
    let mut received = Vec::new();
    let mut last_seq = 0;
    for _ in 0..40 {
        let (seq, payload) = subscriber.deliver();
        last_seq = seq;
        received.push(String::from_utf8(payload).unwrap());
    }
    subscriber.ack(30);
    server.wait_for("the ack", |s| s.server.messages_acked == 30);
    // The cut: the TCP connection under the WebSocket goes away without a close frame.
    subscriber
        .ws
        .get_mut()
        .shutdown(std::net::Shutdown::Both)
        .unwrap();
    server.wait_for("detached", |s| s.server.sessions_detached_now == 1);
    let second: Vec<String> = (100..200).map(|i| format!("m{i}")).collect();
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    publish_all(&mut publisher, "db", &second);

    let mut resumed = WsConn::connect(server.addr);
    let welcome2 = resumed.hello(
        "resumer",
        Some(Resume {
            session_id: welcome.session_id,
            resume_token: welcome.resume_token,
            last_delivery_seq: last_seq,
            first_resendable_publish_seq: 1,
        }),
    );
    assert_eq!(welcome2.outcome, OUTCOME_RESUMED);
    while received.len() < 200 {
        let (seq, payload) = resumed.deliver();
        let payload = String::from_utf8(payload).unwrap();
        if seq > last_seq {
            last_seq = seq;
            received.push(payload);
        }
        resumed.ack(seq);
    }
    let expected: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    assert_eq!(received, expected, "every message once, in order");
    let stats = server.wait_for("all acked", |s| s.server.messages_acked == 200);
    assert_eq!(stats.server.sessions_resumed, 1);
    assert_eq!(stats.server.sessions_lost, 0);
}

#[test]
fn the_upgrade_and_messages_cut_into_slices_of_one_to_three_bytes_still_work() {
    // nats split_test.go's idea at the transport level: every TCP read ends anywhere, in the
    // HTTP head, a WebSocket header, a mask key or a payload, both ways.
    let server = ws_server(ws_listener());
    let sliced = ChaosConfig {
        mean_bytes_before_cut: 0,
        max_slice: 3,
    };
    let proxy = ChaosProxy::start(server.addr, sliced, 11);
    let mut subscriber = WsConn::over_by_hand(tcp(proxy.addr), proxy.addr);
    subscriber.hello("sliced-sub", None);
    subscriber.subscribe("db");
    let mut publisher = WsConn::over_by_hand(tcp(proxy.addr), proxy.addr);
    publisher.hello("sliced-pub", None);
    publish_and_wait(&mut publisher, "db", 200);
    for expected in 1..=200u64 {
        let (seq, payload) = subscriber.deliver();
        assert_eq!((seq, payload), (expected, expected.to_be_bytes().repeat(8)));
    }
}
