//! The NATS adapter: the core text protocol (no JetStream). CONNECT with `verbose: false`
//! (no `+OK` per command), then PING: its PONG is the handshake's end. SUB then PING: its PONG
//! confirms the subscription. PUB has no reply, so a publisher sends PING every
//! `confirm_every` publishes; the server answers PINGs in order after processing everything
//! before them, so each PONG confirms the publishes sent before its PING (what NATS clients
//! call a flush). Server PINGs are answered with PONG.

use std::collections::VecDeque;
use std::io::{self, Write};

use crate::target::{protocol_error, Adapter, AdapterOptions, Event};

pub(crate) struct NatsAdapter {
    name: String,
    subject: Vec<u8>,
    confirm_every: u64,
    /// What each PING sent and not yet answered was for, oldest first.
    pending_pongs: VecDeque<Pong>,
    published: u64,
    /// Publishes covered by the last PING sent.
    requested: u64,
    confirmed: u64,
}

/// What the answer to one of our PINGs means.
#[derive(Debug, PartialEq, Eq)]
enum Pong {
    Handshake,
    Subscribed,
    /// Every publish up to this count was processed.
    Confirm(u64),
}

impl NatsAdapter {
    pub(crate) fn new(name: &str, options: &AdapterOptions) -> Self {
        NatsAdapter {
            name: name.to_owned(),
            subject: options.topic.as_bytes().to_vec(),
            confirm_every: options.confirm_every.max(1),
            pending_pongs: VecDeque::new(),
            published: 0,
            requested: 0,
            confirmed: 0,
        }
    }
}

impl Adapter for NatsAdapter {
    fn open(&mut self, out: &mut Vec<u8>, _events: &mut dyn FnMut(Event<'_>)) {
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"name\":\"{}\",\"lang\":\"rust\",\
             \"version\":\"0\",\"protocol\":1,\"echo\":true}}\r\nPING\r\n",
            self.name
        );
        self.pending_pongs.push_back(Pong::Handshake);
    }

    fn subscribe(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"SUB ");
        out.extend_from_slice(&self.subject);
        out.extend_from_slice(b" 1\r\nPING\r\n");
        self.pending_pongs.push_back(Pong::Subscribed);
    }

    fn publish(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(b"PUB ");
        out.extend_from_slice(&self.subject);
        let _ = write!(out, " {}\r\n", payload.len());
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        self.published += 1;
        if self.published - self.requested >= self.confirm_every {
            self.request_confirm(out);
        }
    }

    fn request_confirm(&mut self, out: &mut Vec<u8>) {
        if self.published > self.requested {
            out.extend_from_slice(b"PING\r\n");
            self.pending_pongs.push_back(Pong::Confirm(self.published));
            self.requested = self.published;
        }
    }

    fn confirmed(&self) -> u64 {
        self.confirmed
    }

    fn handle_input(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        events: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<usize> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() > MAX_CONTROL_LINE {
                    return Err(protocol_error("NATS control line too long"));
                }
                return Ok(used);
            };
            let line = rest[..newline]
                .strip_suffix(b"\r")
                .unwrap_or(&rest[..newline]);
            let after_line = newline + 1;
            if let Some(args) = line.strip_prefix(b"MSG ") {
                let size = args
                    .rsplit(|&b| b == b' ')
                    .next()
                    .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
                    .ok_or_else(|| protocol_error("NATS MSG without a byte count"))?;
                let Some(payload) = rest.get(after_line..after_line + size + 2) else {
                    return Ok(used);
                };
                events(Event::Message(&payload[..size]));
                used += after_line + size + 2;
                continue;
            }
            used += after_line;
            match line {
                b"PING" => out.extend_from_slice(b"PONG\r\n"),
                b"PONG" => match self.pending_pongs.pop_front() {
                    Some(Pong::Handshake) => events(Event::Ready),
                    Some(Pong::Subscribed) => events(Event::Subscribed),
                    Some(Pong::Confirm(count)) => self.confirmed = count,
                    None => {}
                },
                _ if line.starts_with(b"-ERR") => {
                    let text = String::from_utf8_lossy(line).into_owned();
                    events(Event::Closed(text));
                }
                // INFO, +OK and anything newer.
                _ => {}
            }
        }
    }

    fn end_of_input(&mut self, _out: &mut Vec<u8>) {}

    fn close(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"UNSUB 1\r\n");
    }
}

/// nats-server's default `max_control_line`.
const MAX_CONTROL_LINE: usize = 4_096;

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(confirm_every: u64) -> NatsAdapter {
        let options = AdapterOptions {
            topic: "bench".into(),
            window: 0,
            is_acking: false,
            confirm_every,
        };
        NatsAdapter::new("t", &options)
    }

    fn events(nats: &mut NatsAdapter, input: &[u8], out: &mut Vec<u8>) -> (usize, Vec<String>) {
        let mut seen = Vec::new();
        let used = nats
            .handle_input(input, out, &mut |event| seen.push(format!("{event:?}")))
            .unwrap();
        (used, seen)
    }

    #[test]
    fn pongs_answer_handshake_subscription_and_confirmations_in_order() {
        let mut nats = adapter(2);
        let mut out = Vec::new();
        nats.open(&mut out, &mut |_| {});
        nats.subscribe(&mut out);
        for _ in 0..3 {
            nats.publish(b"abc", &mut out);
        }
        nats.request_confirm(&mut out);
        nats.request_confirm(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("CONNECT {"));
        assert!(text.ends_with(
            "PING\r\nSUB bench 1\r\nPING\r\nPUB bench 3\r\nabc\r\nPUB bench 3\r\nabc\r\nPING\r\n\
             PUB bench 3\r\nabc\r\nPING\r\n"
        ));
        let input = b"INFO {\"x\":1}\r\nPONG\r\nPONG\r\nPONG\r\n";
        let (_, seen) = events(&mut nats, input, &mut Vec::new());
        assert_eq!(seen, ["Ready", "Subscribed"]);
        assert_eq!(nats.confirmed(), 2);
        events(&mut nats, b"PONG\r\n", &mut Vec::new());
        assert_eq!(nats.confirmed(), 3);
    }

    #[test]
    fn messages_parse_only_once_their_payload_is_complete() {
        let mut nats = adapter(1);
        let wire = b"MSG bench 1 5\r\nhe\r\no\r\nMSG bench 1 reply.to 2\r\nhi\r\n";
        let first = b"MSG bench 1 5\r\nhe\r\no\r\n".len();
        for cut in 0..first {
            assert_eq!(events(&mut nats, &wire[..cut], &mut Vec::new()).0, 0);
        }
        let (used, seen) = events(&mut nats, wire, &mut Vec::new());
        assert_eq!(used, wire.len());
        assert_eq!(
            seen,
            ["Message([104, 101, 13, 10, 111])", "Message([104, 105])"]
        );
    }

    #[test]
    fn server_pings_are_answered_and_errors_close() {
        let mut nats = adapter(1);
        let mut out = Vec::new();
        let (_, seen) = events(&mut nats, b"PING\r\n-ERR 'Slow Consumer'\r\n", &mut out);
        assert_eq!(out, b"PONG\r\n");
        assert_eq!(seen, [r#"Closed("-ERR 'Slow Consumer'")"#]);
    }
}
