//! Authentication and per-queue permissions over real TCP (issue 5; protocol.md
//! §Authentication).

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use weir::client::{
    Client, ClientError, ClientOptions, Credentials, Delivery, Event, ReconnectingClient, Resume,
};
use weir::config::UserConfig;
use weir::credentials::{hash_password_with, sign_token, token_hash};
use weir::protocol::codec::encode_hello;
use weir::protocol::frame::OUTCOME_RESUMED;
use weir::protocol::{Auth, AuthMethod, ErrorCode, Hello};
use weir::Config;

use crate::chaos_proxy::{ChaosConfig, ChaosProxy};
use crate::common::{client_options, quick_reconnect, RawConn, TestServer};

/// Few iterations: the hash format is what matters here, not its cost.
const TEST_ITERATIONS: u32 = 1_000;
const SIGNING_KEY: &[u8] = b"an integration-test signing key!";

fn user(name: &str, password: &str, publish: &[&str], subscribe: &[&str]) -> UserConfig {
    UserConfig {
        name: name.to_owned(),
        password_hash: Some(hash_password_with(
            password.as_bytes(),
            b"test-salt",
            TEST_ITERATIONS,
        )),
        token_hash: None,
        publish: publish.iter().map(|p| p.to_string()).collect(),
        subscribe: subscribe.iter().map(|p| p.to_string()).collect(),
        admin: false,
    }
}

fn auth_config() -> Config {
    use base64::Engine;
    let mut admin = user("root", "root-pw", &["*"], &["*"]);
    admin.admin = true;
    let mut bot = user("bot", "unused", &[], &["bot.*"]);
    bot.password_hash = None;
    bot.token_hash = Some(token_hash(b"bot-token-123"));
    Config {
        users: vec![
            user("alice", "alice-pw", &["orders.*", "audit"], &["orders.*"]),
            admin,
            bot,
        ],
        token_signing_key: Some(base64::engine::general_purpose::STANDARD.encode(SIGNING_KEY)),
        ..Config::default()
    }
}

fn as_user(name: &str, credentials: Credentials) -> ClientOptions {
    ClientOptions {
        auth: Some(credentials),
        ..client_options(name)
    }
}

fn connect(addr: SocketAddr, credentials: Credentials) -> Result<Client, ClientError> {
    Client::connect(addr, &as_user("auth-test", credentials))
}

fn assert_server_error(result: Result<impl Sized, ClientError>, code: ErrorCode, fatal: bool) {
    match result {
        Err(ClientError::Server {
            code: got,
            fatal: got_fatal,
            ..
        }) => {
            assert_eq!(got, Ok(code));
            assert_eq!(got_fatal, fatal, "fatal flag of {}", code.name());
        }
        Err(other) => panic!("expected ERROR({}), got {other:?}", code.name()),
        Ok(_) => panic!("expected ERROR({}), got success", code.name()),
    }
}

/// The next delivery, skipping receipts.
fn next_delivery(client: &mut Client) -> Delivery {
    loop {
        match client.recv().unwrap() {
            Event::Deliver(delivery) => return delivery,
            Event::Receipt(_) => {}
            other => panic!("expected a delivery, got {other:?}"),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_password_user_publishes_and_subscribes_only_where_its_patterns_allow() {
    let server = TestServer::with_config(auth_config());
    // Anonymous on loopback: may subscribe everywhere.
    let mut watcher = Client::connect(server.addr, &client_options("watcher")).unwrap();
    watcher.subscribe_all("secret").unwrap();
    watcher.subscribe_all("orders.eu").unwrap();

    let mut alice = connect(server.addr, Credentials::password("alice", "alice-pw")).unwrap();
    alice.subscribe_all("orders.eu").unwrap();
    assert_server_error(
        alice.subscribe_all("secret"),
        ErrorCode::NotAuthorized,
        false,
    );

    // A denied publish consumes its seq, is receipted, and reaches nobody.
    let denied = alice.publish("secret", "e", b"leak").unwrap();
    match alice.wait_receipt(denied) {
        Err(ClientError::Server {
            code,
            ref_seq,
            fatal,
            ..
        }) => {
            assert_eq!(
                (code, ref_seq, fatal),
                (Ok(ErrorCode::NotAuthorized), denied, false)
            );
        }
        other => panic!("expected NOT_AUTHORIZED, got {other:?}"),
    }
    alice.wait_receipt(denied).unwrap();
    let allowed = alice.publish("orders.eu", "new", b"order-1").unwrap();
    assert_eq!(allowed, denied + 1, "sequence numbers stay continuous");
    alice.wait_receipt(allowed).unwrap();

    // The connection stays usable: alice receives her own allowed message.
    let delivery = next_delivery(&mut alice);
    assert_eq!(&delivery.payload[..], b"order-1");
    let delivery = next_delivery(&mut watcher);
    assert_eq!(
        &delivery.queue[..],
        b"orders.eu",
        "the denied message went nowhere"
    );
    alice.ping().unwrap();

    let stats = server.stats();
    assert_eq!(stats.server.not_authorized, 2);
    assert_eq!(stats.server.messages_published, 1);
    let identities: Vec<&str> = stats.sessions.iter().map(|s| s.identity.as_str()).collect();
    assert!(identities.contains(&"user:alice"), "{identities:?}");
    assert!(identities.contains(&"anonymous"), "{identities:?}");
}

#[test]
fn wrong_passwords_and_unknown_users_get_auth_failed() {
    let server = TestServer::with_config(auth_config());
    let wrong = connect(server.addr, Credentials::password("alice", "nope"));
    assert_server_error(wrong, ErrorCode::AuthFailed, true);
    let unknown = connect(server.addr, Credentials::password("mallory", "alice-pw"));
    assert_server_error(unknown, ErrorCode::AuthFailed, true);
    assert_eq!(server.stats().server.auth_failures, 2);
}

#[test]
fn a_token_user_is_identified_by_its_token() {
    let server = TestServer::with_config(auth_config());
    let mut bot = connect(server.addr, Credentials::token("bot-token-123")).unwrap();
    bot.subscribe_all("bot.jobs").unwrap();
    assert_server_error(
        bot.subscribe_all("orders.eu"),
        ErrorCode::NotAuthorized,
        false,
    );
    let stats = server.stats();
    assert!(stats.sessions.iter().any(|s| s.identity == "user:bot"));
    let wrong = connect(server.addr, Credentials::token("bot-token-124"));
    assert_server_error(wrong, ErrorCode::AuthFailed, true);
}

#[test]
fn signed_tokens_are_accepted_unless_expired_or_badly_signed() {
    let server = TestServer::with_config(auth_config());
    let payload = |exp: u64| {
        format!(r#"{{"subject":"svc","exp":{exp},"publish":["svc.*"],"subscribe":["svc.*"]}}"#)
    };
    let valid = sign_token(SIGNING_KEY, &payload(unix_now() + 3600)).unwrap();
    let mut svc = connect(server.addr, Credentials::signed_token(&valid)).unwrap();
    svc.subscribe_all("svc.events").unwrap();
    assert_server_error(svc.subscribe_all("other"), ErrorCode::NotAuthorized, false);
    assert!(server
        .stats()
        .sessions
        .iter()
        .any(|s| s.identity == "subject:svc"));

    let expired = sign_token(SIGNING_KEY, &payload(unix_now() - 10)).unwrap();
    assert_server_error(
        connect(server.addr, Credentials::signed_token(&expired)),
        ErrorCode::AuthFailed,
        true,
    );
    let forged = sign_token(&[0x42; 32], &payload(unix_now() + 3600)).unwrap();
    assert_server_error(
        connect(server.addr, Credentials::signed_token(&forged)),
        ErrorCode::AuthFailed,
        true,
    );
}

#[test]
fn an_anonymous_hello_on_a_listener_that_requires_auth_gets_auth_required() {
    let server = TestServer::with_config(Config {
        allow_anonymous: Some(false),
        ..auth_config()
    });
    let anonymous = Client::connect(server.addr, &client_options("anon"));
    assert_server_error(anonymous, ErrorCode::AuthRequired, true);
    // Authenticated clients still get in.
    connect(server.addr, Credentials::password("alice", "alice-pw")).unwrap();
}

#[test]
fn stats_is_refused_to_a_non_admin_user_and_allowed_to_an_admin() {
    let server = TestServer::with_config(Config {
        allow_anonymous: Some(false),
        ..auth_config()
    });
    let mut alice = connect(server.addr, Credentials::password("alice", "alice-pw")).unwrap();
    assert_server_error(alice.stats(), ErrorCode::NotAuthorized, false);
    alice.ping().unwrap();
    let mut root = connect(server.addr, Credentials::password("root", "root-pw")).unwrap();
    let json = root.stats().unwrap();
    assert!(json.contains("user:alice"), "{json}");
}

#[test]
fn repeated_failures_from_one_source_are_slowed_while_a_good_client_keeps_working() {
    let server = TestServer::with_config(auth_config());
    let mut good = connect(server.addr, Credentials::password("alice", "alice-pw")).unwrap();
    good.subscribe_all("orders.eu").unwrap();

    // The burst: five failures answered at once.
    for _ in 0..5 {
        let bad = connect(server.addr, Credentials::password("alice", "guess"));
        assert_server_error(bad, ErrorCode::AuthFailed, true);
    }
    assert_eq!(server.stats().server.auth_throttled, 0);

    // The sixth is held: counted as throttled, not checked yet.
    let mut hello = Vec::new();
    let frame = Hello {
        extensions: false,
        inflight_window: 0,
        client_name: b"guesser",
        resume: None,
        auth: Some(Auth {
            method: AuthMethod::Password,
            user: b"alice",
            secret: b"guess-6",
        }),
    };
    encode_hello(&frame, &mut hello).unwrap();
    let mut held = RawConn::connect(server.addr);
    held.send(&hello);
    let stats = server.wait_for("the sixth HELLO held", |s| s.server.auth_throttled == 1);
    assert_eq!(stats.server.auth_failures, 5, "held, not yet checked");

    // Meanwhile the good client and new anonymous clients work as before.
    let seq = good.publish("orders.eu", "e", b"still here").unwrap();
    good.wait_receipt(seq).unwrap();
    let delivery = next_delivery(&mut good);
    assert_eq!(&delivery.payload[..], b"still here");
    let mut anonymous = Client::connect(server.addr, &client_options("anon")).unwrap();
    anonymous.ping().unwrap();
    drop(held);
}

/// The resume block a plain client would send to take its session over.
fn resume_block_of(client: &Client) -> Resume {
    Resume {
        session_id: client.session_id(),
        resume_token: client.welcome().resume_token,
        last_delivery_seq: 0,
        first_resendable_publish_seq: client.welcome().last_publish_seq + 1,
    }
}

#[test]
fn a_resume_on_a_listener_that_requires_auth_is_refused_to_another_identity_and_granted_to_the_owner(
) {
    let server = TestServer::with_config(Config {
        allow_anonymous: Some(false),
        ..auth_config()
    });
    let mut alice = connect(server.addr, Credentials::password("alice", "alice-pw")).unwrap();
    alice.subscribe_all("orders.eu").unwrap();
    let resume = resume_block_of(&alice);

    // Valid credentials, but not the session's owner: refused, and the session is untouched.
    let thief = Client::resume(
        server.addr,
        &as_user("thief", Credentials::password("root", "root-pw")),
        &resume,
    );
    assert_server_error(thief, ErrorCode::AuthFailed, true);
    let stats = server.stats();
    assert_eq!(stats.server.auth_failures, 1);
    assert_eq!(stats.server.sessions_taken_over, 0);
    alice.ping().expect("the owner's connection is untouched");

    // The owner with the same identity resumes the same session.
    let mut again = Client::resume(
        server.addr,
        &as_user("alice-again", Credentials::password("alice", "alice-pw")),
        &resume,
    )
    .unwrap();
    assert_eq!(again.welcome().outcome, OUTCOME_RESUMED);
    assert_eq!(again.session_id(), alice.session_id());
    server.wait_for("the takeover", |s| s.server.sessions_taken_over == 1);
    // The resumed session keeps the owner's permissions.
    assert_server_error(
        again.subscribe_all("secret"),
        ErrorCode::NotAuthorized,
        false,
    );
    let seq = again.publish("orders.eu", "e", b"after resume").unwrap();
    again.wait_receipt(seq).unwrap();
    assert_eq!(&next_delivery(&mut again).payload[..], b"after resume");
    let stats = server.stats();
    assert_eq!(stats.server.auth_failures, 1);
    assert!(stats
        .sessions
        .iter()
        .any(|s| s.session_id == alice.session_id() && s.identity == "user:alice"));
}

#[test]
fn a_reconnecting_client_with_credentials_resumes_after_a_cut_and_keeps_its_permissions() {
    let server = TestServer::with_config(Config {
        allow_anonymous: Some(false),
        ..auth_config()
    });
    let proxy = ChaosProxy::start(server.addr, ChaosConfig::PASS_THROUGH, 1);
    let mut alice = ReconnectingClient::connect(
        proxy.addr,
        &as_user("alice", Credentials::password("alice", "alice-pw")),
        &quick_reconnect(),
    )
    .unwrap();
    alice.subscribe_all("orders.eu").unwrap();
    let mut root = connect(server.addr, Credentials::password("root", "root-pw")).unwrap();

    let seq = root.publish("orders.eu", "e", b"before").unwrap();
    root.wait_receipt(seq).unwrap();
    match alice.recv().unwrap() {
        Event::Deliver(delivery) => assert_eq!(&delivery.payload[..], b"before"),
        other => panic!("expected a delivery, got {other:?}"),
    }
    let session = alice.session_id();

    proxy.cut_all();
    // Published while alice is cut off: the server holds it for her session.
    server.wait_for("alice's connection to end", |s| {
        s.sessions
            .iter()
            .any(|s| s.session_id == session && s.state == "detached")
    });
    let seq = root.publish("orders.eu", "e", b"during").unwrap();
    root.wait_receipt(seq).unwrap();

    let mut resumed = false;
    let payload = loop {
        match alice.recv().unwrap() {
            Event::Resumed { session_id, .. } => {
                assert_eq!(session_id, session);
                resumed = true;
            }
            Event::Deliver(delivery) => break delivery.payload,
            other => panic!("expected RESUMED then a delivery, got {other:?}"),
        }
    };
    assert!(resumed, "the session was resumed, not lost");
    assert_eq!(&payload[..], b"during");
    assert_eq!(alice.session_id(), session);
    assert_eq!(alice.stats().resumes, 1);
    assert_eq!(alice.stats().losses, 0);
    assert!(proxy.connections() >= 2);

    // Still alice, with alice's permissions.
    match alice.subscribe_all("secret") {
        Err(ClientError::Server { code, fatal, .. }) => {
            assert_eq!((code, fatal), (Ok(ErrorCode::NotAuthorized), false));
        }
        other => panic!("expected NOT_AUTHORIZED, got {other:?}"),
    }
    alice.ping().unwrap();
    let stats = server.stats();
    let session_stats = stats
        .sessions
        .iter()
        .find(|s| s.session_id == session)
        .expect("alice's session");
    assert_eq!(session_stats.identity, "user:alice");
    assert_eq!(session_stats.state, "connected");
    assert_eq!(stats.server.sessions_resumed, 1);
    assert_eq!(stats.server.auth_failures, 0);
}

/// Issue 13: a NOT_AUTHORIZED with ref_seq 0 could not be matched to the SUBSCRIBE or STATS
/// that caused it. Answers keep the order of the requests, and a HELLO with EXTENSIONS also
/// gets the op of the refused request (ERROR flag REF_OP, protocol.md §ERROR).
#[test]
fn not_authorized_names_the_op_it_answers_for_a_client_with_extensions() {
    use weir::protocol::codec::{encode_empty, encode_subscription};
    use weir::protocol::frame::{ERROR_REF_OP, HELLO_EXTENSIONS};
    use weir::protocol::{Op, Subscription};

    let server = TestServer::with_config(auth_config());
    for extensions in [false, true] {
        let mut conn = RawConn::connect(server.addr);
        let mut out = Vec::new();
        let hello = Hello {
            extensions,
            inflight_window: 0,
            client_name: b"bot",
            resume: None,
            auth: Some(Auth {
                method: AuthMethod::Token,
                user: b"",
                secret: b"bot-token-123",
            }),
        };
        encode_hello(&hello, &mut out).unwrap();
        assert_eq!(out[6] & HELLO_EXTENSIONS != 0, extensions);
        // SUBSCRIBE allowed, SUBSCRIBE denied, STATS denied (not admin), SUBSCRIBE allowed.
        for queue in ["bot.a", "orders.eu"] {
            let sub = Subscription {
                queue: queue.as_bytes(),
                event: None,
                group: None,
                is_pattern: false,
                start: None,
            };
            encode_subscription(Op::Subscribe, &sub, &mut out).unwrap();
        }
        encode_empty(Op::Stats, &mut out);
        let sub = Subscription {
            queue: b"bot.b",
            event: None,
            group: None,
            is_pattern: false,
            start: None,
        };
        encode_subscription(Op::Subscribe, &sub, &mut out).unwrap();
        conn.send(&out);
        let ops: Vec<(u8, Option<u8>)> = (0..5)
            .map(|_| conn.read_frame().expect("an answer"))
            .map(|frame| {
                let ref_op = (frame.op == Op::Error as u8).then(|| {
                    assert_eq!(frame.code(), ErrorCode::NotAuthorized as u16);
                    // Layout: code u16, flags u8, ref_seq u64, [ref_op u8], text.
                    (frame.body[2] & ERROR_REF_OP != 0).then(|| frame.body[11])
                });
                (frame.op, ref_op.flatten())
            })
            .collect();
        let (error, subscribed) = (Op::Error as u8, Op::Subscribed as u8);
        let expected_ref = |op: Op| extensions.then_some(op as u8);
        assert_eq!(
            ops,
            [
                (Op::Welcome as u8, None),
                (subscribed, None),
                (error, expected_ref(Op::Subscribe)),
                (error, expected_ref(Op::Stats)),
                (subscribed, None),
            ],
            "extensions: {extensions}"
        );
    }
}
