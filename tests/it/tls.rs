//! TLS on a listener (rustls driven by the mio loop), with a certificate generated here.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use weir::client::{Client, ClientError, Event, ReconnectingClient, TlsOptions};
use weir::config::ListenerConfig;
use weir::protocol::codec::{encode_ack, encode_hello, encode_publish, encode_subscription};
use weir::protocol::{decode, Frame, Hello, Op, Publish, Subscription};
use weir::Config;

use crate::chaos_proxy::{ChaosConfig, ChaosProxy};
use crate::common::{client_options, publish_all, quick_reconnect, TestServer, WAIT};

pub(crate) struct Certificate {
    pub(crate) dir: PathBuf,
    pub(crate) der: CertificateDer<'static>,
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed certificate for "localhost", in `cert.pem` and `key.pem` of its own directory.
pub(crate) fn certificate(name: &str) -> Certificate {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let dir = std::env::temp_dir().join(format!("weir-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), generated.key_pair.serialize_pem()).unwrap();
    Certificate {
        dir,
        der: generated.cert.der().clone(),
    }
}

fn tls_server(cert: &Certificate) -> TestServer {
    TestServer::with_config(Config {
        listeners: vec![ListenerConfig {
            tls_cert: Some(cert.dir.join("cert.pem")),
            tls_key: Some(cert.dir.join("key.pem")),
            ..ListenerConfig::new("127.0.0.1:0".parse().unwrap())
        }],
        ..Config::default()
    })
}

/// A protocol connection over rustls, trusting exactly `cert`.
struct TlsConn {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsConn {
    fn connect(addr: SocketAddr, cert: &Certificate) -> TlsConn {
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
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        TlsConn {
            stream: rustls::StreamOwned::new(session, tcp),
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    /// Next frame as (op, owned copy of the whole frame).
    fn read(&mut self) -> (u8, Vec<u8>) {
        loop {
            if let Some((_, used)) = decode(&self.buf, u32::MAX).unwrap() {
                let frame: Vec<u8> = self.buf.drain(..used).collect();
                return (frame[5], frame);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("EOF"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn hello(&mut self, name: &str) {
        let mut out = Vec::new();
        let hello = Hello {
            extensions: false,
            inflight_window: 0,
            client_name: name.as_bytes(),
            resume: None,
            auth: None,
        };
        encode_hello(&hello, &mut out).unwrap();
        self.send(&out);
        assert_eq!(self.read().0, Op::Welcome as u8);
    }
}

#[test]
fn pub_sub_works_over_tls_and_payloads_arrive_intact_in_order() {
    let cert = certificate("pubsub");
    let server = tls_server(&cert);
    let mut subscriber = TlsConn::connect(server.addr, &cert);
    subscriber.hello("tls-sub");
    let mut out = Vec::new();
    let sub = Subscription {
        queue: b"db",
        event: None,
        group: None,
        is_pattern: false,
        start: None,
    };
    encode_subscription(Op::Subscribe, &sub, &mut out).unwrap();
    subscriber.send(&out);
    assert_eq!(subscriber.read().0, Op::Subscribed as u8);

    let mut publisher = TlsConn::connect(server.addr, &cert);
    publisher.hello("tls-pub");
    let count = 5_000u64;
    let mut out = Vec::new();
    for seq in 1..=count {
        let payload = seq.to_be_bytes().repeat(16);
        let publish = Publish {
            seq,
            queue: b"db",
            event: b"e",
            key: None,
            ttl_ms: None,
            payload: &payload,
        };
        encode_publish(&publish, &mut out).unwrap();
    }
    publisher.send(&out);
    let mut expected = 1u64;
    while expected <= count {
        let (op, frame) = subscriber.read();
        assert_eq!(op, Op::Deliver as u8);
        let (Frame::Deliver(d), _) = decode(&frame, u32::MAX).unwrap().unwrap() else {
            unreachable!()
        };
        assert_eq!(d.payload, expected.to_be_bytes().repeat(16));
        let mut ack = Vec::new();
        encode_ack(d.seq, &[], &mut ack).unwrap();
        subscriber.send(&ack);
        expected += 1;
    }
    let stats = server.stats();
    assert_eq!(stats.server.messages_delivered, count);
    println!("tls: {count} messages of 128 B delivered in order over TLS");
}

#[test]
fn a_plaintext_client_on_a_tls_listener_gets_no_session_and_others_are_unaffected() {
    let cert = certificate("plain");
    let server = tls_server(&cert);
    let mut good = TlsConn::connect(server.addr, &cert);
    good.hello("good");
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    let mut out = Vec::new();
    let hello = Hello {
        extensions: false,
        inflight_window: 0,
        client_name: b"plain",
        resume: None,
        auth: None,
    };
    encode_hello(&hello, &mut out).unwrap();
    plain.write_all(&out).unwrap();
    // The server answers with a TLS alert (or nothing) and closes; never a WELCOME.
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(
        decode(&reply, u32::MAX).map_or(true, |f| f.is_none()),
        "no Weir frame in plaintext"
    );
    let stats = server.wait_for("the plaintext connection closed", |s| {
        s.server.connections == 1
    });
    assert_eq!(stats.server.sessions, 1);
    let mut ping = Vec::new();
    weir::protocol::codec::encode_ping(Op::Ping, 7, &mut ping);
    good.send(&ping);
    assert_eq!(good.read().0, Op::Pong as u8);
}

/// Publishes `payloads` on "db" through `weir::client` and checks `subscriber` gets them.
fn client_pub_sub(publisher: &mut Client, subscriber: &mut Client, payloads: &[&str]) {
    publish_all(publisher, "db", payloads);
    for payload in payloads {
        match subscriber.recv().unwrap() {
            Event::Deliver(delivery) => {
                assert_eq!(delivery.payload, payload.as_bytes());
                subscriber.ack(delivery.seq).unwrap();
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_client_connects_with_a_pinned_certificate() {
    let cert = certificate("client-pinned");
    let server = tls_server(&cert);
    let tls = TlsOptions::pinned("localhost", cert.der.to_vec());
    let mut subscriber = Client::connect_tls(server.addr, &client_options("sub"), &tls).unwrap();
    subscriber.subscribe_all("db").unwrap();
    let mut publisher = Client::connect_tls(server.addr, &client_options("pub"), &tls).unwrap();
    client_pub_sub(&mut publisher, &mut subscriber, &["a", "b", "c"]);
    let big = "x".repeat(300_000);
    client_pub_sub(&mut publisher, &mut subscriber, &[&big]);
    assert!(publisher.stats().unwrap().contains("\"sessions\""));
    publisher.bye().unwrap();
    subscriber.bye().unwrap();
    assert_eq!(server.stats().server.messages_delivered, 4);
}

#[test]
fn the_client_connects_with_a_ca_file_and_checks_the_name() {
    let cert = certificate("client-ca");
    let server = tls_server(&cert);
    // A self-signed certificate is its own CA.
    let tls = TlsOptions::ca_file("localhost", cert.dir.join("cert.pem"));
    let mut subscriber = Client::connect_tls(server.addr, &client_options("sub"), &tls).unwrap();
    subscriber.subscribe_all("db").unwrap();
    let mut publisher = Client::connect_tls(server.addr, &client_options("pub"), &tls).unwrap();
    client_pub_sub(&mut publisher, &mut subscriber, &["one", "two"]);

    // The certificate is for "localhost" only.
    let wrong_name = TlsOptions::ca_file("elsewhere.example", cert.dir.join("cert.pem"));
    let refused = Client::connect_tls(server.addr, &client_options("wrong-name"), &wrong_name);
    assert!(matches!(refused, Err(ClientError::Io(_))), "{refused:?}");
    // A missing CA file fails before connecting.
    let missing = TlsOptions::ca_file("localhost", cert.dir.join("missing.pem"));
    let refused = Client::connect_tls(server.addr, &client_options("missing"), &missing);
    assert!(matches!(refused, Err(ClientError::Io(_))), "{refused:?}");
    assert_eq!(server.stats().server.sessions, 2);
}

#[test]
fn a_wrong_pinned_certificate_is_refused_and_gets_no_session() {
    let cert = certificate("wrong-pin-server");
    let other = certificate("wrong-pin-other");
    let server = tls_server(&cert);
    let tls = TlsOptions::pinned("localhost", other.der.to_vec());
    match Client::connect_tls(server.addr, &client_options("impostor"), &tls) {
        Err(ClientError::Io(e)) => {
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
            let inner = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
            assert!(
                matches!(inner, Some(rustls::Error::InvalidCertificate(_))),
                "{e:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A plaintext client on a TLS listener is refused in the handshake too.
    let plaintext = Client::connect(server.addr, &client_options("plaintext"));
    assert!(plaintext.is_err());
    let stats = server.wait_for("the refused connections closed", |s| {
        s.server.connections == 0
    });
    assert_eq!(stats.server.sessions, 0);
    assert!(stats.sessions.is_empty());
}

#[test]
fn a_reconnecting_client_over_tls_resumes_after_a_cut() {
    let cert = certificate("reconnect");
    let server = tls_server(&cert);
    let proxy = ChaosProxy::start(server.addr, ChaosConfig::PASS_THROUGH, 11);
    let tls = TlsOptions::pinned("localhost", cert.der.to_vec());
    let mut subscriber = ReconnectingClient::connect_tls(
        proxy.addr,
        &client_options("subscriber"),
        &tls,
        &quick_reconnect(),
    )
    .unwrap();
    subscriber.subscribe_all("db").unwrap();
    let mut publisher = Client::connect_tls(server.addr, &client_options("pub"), &tls).unwrap();
    let sent: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    let sent: Vec<&str> = sent.iter().map(String::as_str).collect();
    publish_all(&mut publisher, "db", &sent[..100]);

    let mut received = Vec::new();
    let mut resumes = 0;
    while received.len() < sent.len() {
        match subscriber.recv().unwrap() {
            Event::Deliver(delivery) => received.push(String::from_utf8(delivery.payload).unwrap()),
            Event::Resumed { .. } => resumes += 1,
            other => panic!("{other:?}"),
        }
        if received.len() == 50 && proxy.cuts() == 0 && resumes == 0 {
            proxy.cut_all();
            publish_all(&mut publisher, "db", &sent[100..]);
        }
    }
    assert_eq!(received, sent);
    assert_eq!(resumes, 1);
    assert_eq!(
        proxy.connections(),
        2,
        "the second connection redid the handshake"
    );
    assert_eq!(server.stats().server.sessions_resumed, 1);
    let stats = subscriber.stats();
    assert_eq!((stats.resumes, stats.losses), (1, 0));
}

/// Issue 13: a plain client at a TLS listener is told so ("the server answered with TLS"),
/// not "frame length 352518912 exceeds the limit".
#[test]
fn a_plain_client_at_a_tls_listener_is_told_that_the_server_speaks_tls() {
    let cert = certificate("plain-client");
    let server = tls_server(&cert);
    let error = Client::connect(server.addr, &client_options("plain")).unwrap_err();
    // rustls answers the plaintext HELLO with an alert record (0x15 0x03 0x03 ...).
    assert!(matches!(error, ClientError::WrongProtocol(_)), "{error:?}");
    assert!(error.to_string().contains("answered with TLS"), "{error}");
}
