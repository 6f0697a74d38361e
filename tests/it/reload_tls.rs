//! Reload as a plan (issue 9): TLS certificates and keys change for new connections without a
//! restart, established connections keep theirs, and a certificate that does not load leaves
//! the running one in force.

use std::path::Path;
use std::sync::{Arc, Mutex};

use weir::client::{Client, ClientError, Event, TlsOptions};
use weir::config::ListenerConfig;
use weir::Config;

use crate::common::{client_options, TestServer};
use crate::tls::{certificate, Certificate};

/// A listener with TLS files at `dir/cert.pem` and `dir/key.pem`.
fn tls_config(dir: &Path) -> Config {
    Config {
        listeners: vec![ListenerConfig {
            tls_cert: Some(dir.join("cert.pem")),
            tls_key: Some(dir.join("key.pem")),
            ..ListenerConfig::new("127.0.0.1:0".parse().unwrap())
        }],
        ..Config::default()
    }
}

fn plain_config() -> Config {
    Config {
        listeners: vec![ListenerConfig::new("127.0.0.1:0".parse().unwrap())],
        ..Config::default()
    }
}

/// A server whose reload returns whatever `next` holds then (the port is kept by the plan).
fn reloadable(first: Config) -> (TestServer, Arc<Mutex<Config>>) {
    let next = Arc::new(Mutex::new(first.clone()));
    let source = next.clone();
    let server = TestServer::with_reload(first, move || Ok(source.lock().unwrap().clone()));
    (server, next)
}

fn pinned(cert: &Certificate) -> TlsOptions {
    TlsOptions::pinned("localhost", cert.der.to_vec())
}

/// Copies `from`'s certificate and key over the files in `to` (rotation in place).
fn rotate(from: &Certificate, to: &Path) {
    for file in ["cert.pem", "key.pem"] {
        std::fs::copy(from.dir.join(file), to.join(file)).unwrap();
    }
}

fn round_trip(publisher: &mut Client, subscriber: &mut Client, payload: &str) {
    let seq = publisher.publish("db", "e", payload).unwrap();
    publisher.wait_receipt(seq).unwrap();
    loop {
        match subscriber.recv().unwrap() {
            Event::Deliver(d) => {
                assert_eq!(&d.payload[..], payload.as_bytes());
                subscriber.ack(d.seq).unwrap();
                return;
            }
            Event::Receipt(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_certificate_rotated_in_place_is_used_for_new_connections_and_old_ones_keep_theirs() {
    let old = certificate("rotate-old");
    let new = certificate("rotate-new");
    let live = certificate("rotate-live");
    rotate(&old, &live.dir);
    let (server, _next) = reloadable(tls_config(&live.dir));
    let mut subscriber =
        Client::connect_tls(server.addr, &client_options("before"), &pinned(&old)).unwrap();
    subscriber.subscribe_all("db").unwrap();

    rotate(&new, &live.dir);
    server.reload();

    let mut publisher =
        Client::connect_tls(server.addr, &client_options("after"), &pinned(&new)).unwrap();
    let refused = Client::connect_tls(server.addr, &client_options("stale"), &pinned(&old));
    assert!(matches!(refused, Err(ClientError::Io(_))), "{refused:?}");
    // The connection made before the reload goes on with the old certificate.
    round_trip(&mut publisher, &mut subscriber, "across a rotation");
}

#[test]
fn tls_added_by_a_reload_applies_to_new_connections_while_plaintext_ones_go_on() {
    let cert = certificate("reload-add");
    let (server, next) = reloadable(plain_config());
    let mut plain = Client::connect(server.addr, &client_options("plain")).unwrap();
    plain.subscribe_all("db").unwrap();

    *next.lock().unwrap() = tls_config(&cert.dir);
    server.reload();

    let mut secure =
        Client::connect_tls(server.addr, &client_options("tls"), &pinned(&cert)).unwrap();
    round_trip(&mut secure, &mut plain, "plaintext keeps working");
    let late = Client::connect(server.addr, &client_options("late-plain"));
    assert!(late.is_err(), "a new plaintext client is refused: {late:?}");
}

#[test]
fn a_certificate_that_does_not_load_keeps_the_running_one() {
    let cert = certificate("reload-bad");
    let live = certificate("reload-bad-live");
    rotate(&cert, &live.dir);
    let (server, _next) = reloadable(tls_config(&live.dir));
    std::fs::write(live.dir.join("cert.pem"), "not a certificate").unwrap();
    server.reload();
    let mut client =
        Client::connect_tls(server.addr, &client_options("still"), &pinned(&cert)).unwrap();
    client.subscribe_all("db").unwrap();
    let mut publisher =
        Client::connect_tls(server.addr, &client_options("still-pub"), &pinned(&cert)).unwrap();
    round_trip(&mut publisher, &mut client, "old certificate in force");
}
