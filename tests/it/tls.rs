//! TLS on a listener (rustls driven by the mio loop), with a certificate generated here.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use weir::config::ListenerConfig;
use weir::protocol::codec::{encode_ack, encode_hello, encode_publish, encode_subscription};
use weir::protocol::{decode, Frame, Hello, Op, Publish, Subscription};
use weir::Config;

use crate::common::{TestServer, WAIT};

struct Certificate {
    dir: PathBuf,
    der: CertificateDer<'static>,
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn certificate(name: &str) -> Certificate {
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
