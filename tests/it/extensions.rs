//! protocol.md §Extensions over real TCP (issue 13): a HELLO with EXTENSIONS gets the
//! keep-alive in WELCOME and DROPPED frames for conflation; a HELLO without gets neither.

use weir::protocol::codec::encode_hello;
use weir::protocol::frame::{DROPPED_CONFLATED, HELLO_EXTENSIONS};
use weir::protocol::{Hello, Op};
use weir::Config;

use crate::common::{plain, RawConn, RawFrame, TestServer};

fn hello_with_extensions(conn: &mut RawConn, window: u32) -> RawFrame {
    let mut out = Vec::new();
    let hello = Hello {
        extensions: true,
        inflight_window: window,
        client_name: b"ext",
        resume: None,
        auth: None,
    };
    encode_hello(&hello, &mut out).unwrap();
    assert_eq!(out[6] & HELLO_EXTENSIONS, HELLO_EXTENSIONS);
    conn.send(&out);
    let welcome = conn.read_frame().expect("WELCOME");
    assert_eq!(welcome.op, Op::Welcome as u8);
    welcome
}

#[test]
fn welcome_has_the_keep_alive_only_for_a_hello_with_extensions() {
    let server = TestServer::with_config(Config {
        reconnect_keep_alive_ms: 45_000,
        ..Config::default()
    });
    let mut old = RawConn::connect(server.addr);
    assert_eq!(
        old.hello("old").body.len(),
        71,
        "the layout old clients decode"
    );
    let mut new = RawConn::connect(server.addr);
    let welcome = hello_with_extensions(&mut new, 0);
    assert_eq!(welcome.body.len(), 75);
    // Layout: protocol.md §WELCOME, offset 71.
    assert_eq!(welcome.body[71..75], 45_000u32.to_be_bytes());
}

#[test]
fn a_subscriber_with_extensions_gets_dropped_for_what_conflation_removed() {
    let server = TestServer::start();
    let mut subscriber = RawConn::connect(server.addr);
    hello_with_extensions(&mut subscriber, 1);
    subscriber.subscribe("px", None);
    let mut publisher = plain(server.addr, "publisher");
    // Window 1, never acked: whatever is not yet sent is replaced by the next one (how many
    // depends on how the frames fall into the server's turns).
    for price in ["1", "2", "3", "4"] {
        publisher
            .publish_conflated("px", "tick", "EURUSD", price)
            .unwrap();
    }
    publisher.flush().unwrap();
    let stats = server.wait_for("the four publishes", |s| {
        s.server.messages_published == 4 && s.server.messages_delivered >= 1
    });
    let conflated = stats.server.messages_conflated;
    assert!(conflated >= 2, "{conflated}");
    let mut dropped = 0;
    while dropped < conflated {
        let frame = subscriber.read_frame().expect("a frame");
        if frame.op == Op::Dropped as u8 {
            // Layout: protocol.md §DROPPED: reason u16, count u64, total u64.
            assert_eq!(frame.body.len(), 18);
            assert_eq!(frame.code(), DROPPED_CONFLATED);
            let count = u64::from_be_bytes(frame.body[2..10].try_into().unwrap());
            let total = u64::from_be_bytes(frame.body[10..18].try_into().unwrap());
            dropped += count;
            assert_eq!(total, dropped, "total is the running sum of counts");
        } else {
            assert_eq!(frame.op, Op::Deliver as u8, "{frame:?}");
        }
    }
    assert_eq!(dropped, conflated, "as many as STATS counted");
}
