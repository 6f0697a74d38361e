//! The Weir adapter: HELLO → WELCOME, SUBSCRIBE → SUBSCRIBED (every event of the queue),
//! PUBLISH with seqs 1, 2, ... confirmed by cumulative RECEIPTs, DELIVERs acknowledged by one
//! cumulative ACK per batch of input once a quarter of the in-flight window is unacked, PING
//! answered, BYE to end. Frames are built and read with `weir::protocol`; no client library.

use std::io;

use weir::protocol::codec::{
    encode_ack, encode_empty, encode_hello, encode_ping, encode_publish, encode_subscription,
};
use weir::protocol::{
    decode, Auth, ErrorCode, Frame, Hello, Op, Publish, Subscription, MAX_FRAME_LEN,
};

use crate::target::{protocol_error, Adapter, AdapterOptions, Credentials, Event, Tls};

pub(crate) struct WeirAdapter {
    name: String,
    queue: Vec<u8>,
    /// In-flight window to ask for (0: the server's default); then the one in force.
    window: u32,
    is_acking: bool,
    /// Cumulative ACK once this many deliveries are unacked: a quarter of the window keeps
    /// deliveries flowing without an ACK per message.
    ack_every: u64,
    /// Highest DELIVER seq received.
    last_delivery: u64,
    last_acked: u64,
    /// Seq of the last PUBLISH sent (the first is 1).
    last_publish: u64,
    /// Highest PUBLISH seq the server receipted.
    receipted: u64,
    /// Credentials sent in HELLO.
    auth: Option<Credentials>,
    /// TLS settings, handed to the link as a session by `take_tls`.
    tls: Option<Tls>,
}

impl WeirAdapter {
    pub(crate) fn new(
        name: &str,
        options: &AdapterOptions,
        auth: Option<Credentials>,
        tls: Option<Tls>,
    ) -> Self {
        WeirAdapter {
            name: name.to_owned(),
            queue: options.topic.as_bytes().to_vec(),
            window: options.window,
            is_acking: options.is_acking,
            ack_every: 1,
            last_delivery: 0,
            last_acked: 0,
            last_publish: 0,
            receipted: 0,
            auth,
            tls,
        }
    }
}

impl Adapter for WeirAdapter {
    fn open(&mut self, out: &mut Vec<u8>, _events: &mut dyn FnMut(Event<'_>)) {
        let hello = Hello {
            extensions: false,
            inflight_window: self.window,
            client_name: self.name.as_bytes(),
            resume: None,
            auth: self.auth.as_ref().map(|auth| Auth {
                method: auth.method,
                user: auth.user.as_bytes(),
                secret: auth.secret.as_bytes(),
            }),
        };
        // Cannot fail: the names weir-bench makes are far below 255 bytes (credentials too
        // long are refused by the server, which closes the connection).
        let _ = encode_hello(&hello, out);
    }

    fn subscribe(&mut self, out: &mut Vec<u8>) {
        let subscription = Subscription {
            queue: &self.queue,
            event: None,
            group: None,
            is_pattern: false,
            start: None,
        };
        // Cannot fail: the queue name is checked by clap to fit (see `check_topic`).
        let _ = encode_subscription(Op::Subscribe, &subscription, out);
    }

    fn publish(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        self.last_publish += 1;
        let publish = Publish {
            seq: self.last_publish,
            queue: &self.queue,
            event: b"",
            key: None,
            ttl_ms: None,
            payload,
        };
        // Cannot fail: names fit and payloads are far below u32::MAX.
        let _ = encode_publish(&publish, out);
    }

    fn request_confirm(&mut self, _out: &mut Vec<u8>) {}

    fn confirmed(&self) -> u64 {
        self.receipted
    }

    fn handle_input(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        events: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<usize> {
        let mut used = 0;
        while let Some((frame, len)) =
            decode(&input[used..], DECODE_LIMIT).map_err(|e| protocol_error(e.to_string()))?
        {
            used += len;
            match frame {
                Frame::Deliver(deliver) => {
                    self.last_delivery = deliver.seq;
                    events(Event::Message(deliver.payload));
                }
                Frame::Receipt(seq) => self.receipted = self.receipted.max(seq),
                Frame::Ping(nonce) => encode_ping(Op::Pong, nonce, out),
                Frame::Welcome(welcome) => {
                    self.window = welcome.inflight_window;
                    self.ack_every = u64::from(self.window / 4).max(1);
                    events(Event::Ready);
                }
                Frame::Subscribed(_) => events(Event::Subscribed),
                Frame::Error(error) => events(Event::Closed(format!("ERROR {}", name(error.code)))),
                Frame::Goodbye(goodbye) => {
                    events(Event::Closed(format!("GOODBYE {}", name(goodbye.code))))
                }
                _ => {}
            }
        }
        Ok(used)
    }

    fn end_of_input(&mut self, out: &mut Vec<u8>) {
        if self.is_acking && self.last_delivery - self.last_acked >= self.ack_every {
            // Cannot fail: an ACK without listed seqs is always within limits.
            let _ = encode_ack(self.last_delivery, &[], out);
            self.last_acked = self.last_delivery;
        }
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        encode_empty(Op::Bye, out);
    }

    fn take_tls(&mut self) -> io::Result<Option<rustls::ClientConnection>> {
        self.tls.take().map(|tls| tls.connection()).transpose()
    }
}

fn name(code: Result<ErrorCode, u16>) -> String {
    match code {
        Ok(code) => code.name().to_owned(),
        Err(n) => format!("code {n}"),
    }
}

/// Frames from the server can be a little over `max_frame_len` (DELIVER adds a message id to
/// the PUBLISH it carries), so the client decodes with a looser bound.
const DECODE_LIMIT: u32 = 2 * MAX_FRAME_LEN;

#[cfg(test)]
mod tests {
    use weir::protocol::codec::{encode_deliver, encode_goodbye, encode_receipt};

    use super::*;

    fn adapter(is_acking: bool) -> WeirAdapter {
        let options = AdapterOptions {
            topic: "q".into(),
            window: 8,
            is_acking,
            confirm_every: 1,
        };
        WeirAdapter::new("t", &options, None, None)
    }

    fn feed(adapter: &mut WeirAdapter, input: &[u8], out: &mut Vec<u8>) -> Vec<String> {
        let mut seen = Vec::new();
        let used = adapter
            .handle_input(input, out, &mut |event| seen.push(format!("{event:?}")))
            .unwrap();
        assert_eq!(used, input.len());
        adapter.end_of_input(out);
        seen
    }

    #[test]
    fn deliveries_are_acked_cumulatively_once_a_quarter_of_the_window_is_unacked() {
        let mut weir = adapter(true);
        weir.window = 8;
        weir.ack_every = 2;
        let mut input = Vec::new();
        encode_deliver(1, 10, 0, b"q", b"", b"a", &mut input).unwrap();
        let mut out = Vec::new();
        assert_eq!(feed(&mut weir, &input, &mut out), ["Message([97])"]);
        assert!(out.is_empty(), "one unacked delivery is below ack_every");
        input.clear();
        encode_deliver(2, 11, 0, b"q", b"", b"b", &mut input).unwrap();
        encode_deliver(3, 12, 0, b"q", b"", b"c", &mut input).unwrap();
        feed(&mut weir, &input, &mut out);
        let mut ack = Vec::new();
        encode_ack(3, &[], &mut ack).unwrap();
        assert_eq!(out, ack, "one ACK up to the last seq of the batch");
    }

    #[test]
    fn without_acks_nothing_is_sent_back() {
        let mut weir = adapter(false);
        let mut input = Vec::new();
        for seq in 1..=10 {
            encode_deliver(seq, seq, 0, b"q", b"", b"x", &mut input).unwrap();
        }
        let mut out = Vec::new();
        feed(&mut weir, &input, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn receipts_confirm_publishes_and_goodbye_closes_with_its_code() {
        let mut weir = adapter(true);
        let mut out = Vec::new();
        for _ in 0..5 {
            weir.publish(b"payload!", &mut out);
        }
        let mut input = Vec::new();
        encode_receipt(3, &mut input);
        encode_goodbye(ErrorCode::QueueOverflow, "full", &mut input);
        let events = feed(&mut weir, &input, &mut Vec::new());
        assert_eq!(weir.confirmed(), 3);
        assert_eq!(events, [r#"Closed("GOODBYE QUEUE_OVERFLOW")"#]);
    }

    #[test]
    fn an_incomplete_frame_is_left_for_the_next_read() {
        let mut weir = adapter(true);
        let mut input = Vec::new();
        encode_receipt(1, &mut input);
        let used = weir
            .handle_input(&input[..input.len() - 1], &mut Vec::new(), &mut |_| {})
            .unwrap();
        assert_eq!(used, 0);
    }
}
