//! The Weir adapter: HELLO → WELCOME, SUBSCRIBE → SUBSCRIBED, pipelined PUBLISH bounded by
//! RECEIPTs, DELIVERs acked cumulatively. Frames are built and read with `weir::protocol`
//! (encoders and `decode`); no client library.

use std::io;
use std::time::{Duration, Instant};

use weir::protocol::codec::{
    encode_ack, encode_hello, encode_ping, encode_publish, encode_subscription,
};
use weir::protocol::{decode, ErrorCode, Frame, Hello, Op, Publish, Subscription, MAX_FRAME_LEN};

use crate::target::{
    is_timeout, protocol_error, ConnectOptions, Polled, Publisher, Subscriber, Wire,
    CONFIRM_TIMEOUT, POLL_INTERVAL, WRITE_BATCH_BYTES,
};

/// A Weir connection after HELLO → WELCOME.
struct WeirSession {
    wire: Wire,
    /// In-flight window in force (from WELCOME).
    window: u32,
}

impl WeirSession {
    fn connect(address: &str, name: &str, window: u32, read_timeout: Duration) -> io::Result<Self> {
        let mut wire = Wire::connect(address, read_timeout)?;
        let hello = Hello {
            inflight_window: window,
            client_name: name.as_bytes(),
            resume: None,
        };
        encode_hello(&hello, &mut wire.write_buf).map_err(|e| protocol_error(e.to_string()))?;
        wire.flush()?;
        let mut session = WeirSession { wire, window: 0 };
        session.window = session.wait_for(|frame| match frame {
            Frame::Welcome(welcome) => Some(welcome.inflight_window),
            _ => None,
        })?;
        Ok(session)
    }

    /// Reads until `pick` accepts a frame (handshake only: bounded by [`CONFIRM_TIMEOUT`]).
    fn wait_for<T>(&mut self, mut pick: impl FnMut(&Frame<'_>) -> Option<T>) -> io::Result<T> {
        let deadline = Instant::now() + CONFIRM_TIMEOUT;
        loop {
            while let Some((frame, used)) = decode(self.wire.unread(), DECODE_LIMIT)
                .map_err(|e| protocol_error(e.to_string()))?
            {
                if let Some(reason) = closing_reason(&frame) {
                    return Err(protocol_error(reason));
                }
                let picked = pick(&frame);
                self.wire.start += used;
                if let Some(value) = picked {
                    return Ok(value);
                }
            }
            match self.wire.fill() {
                Ok(0) => return Err(protocol_error("connection closed during the handshake")),
                Ok(_) => {}
                Err(e) if is_timeout(&e) && Instant::now() < deadline => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// ERROR and GOODBYE end a Weir session; their code as text.
fn closing_reason(frame: &Frame<'_>) -> Option<String> {
    let name = |code: Result<ErrorCode, u16>| match code {
        Ok(code) => code.name().to_owned(),
        Err(n) => format!("code {n}"),
    };
    match frame {
        Frame::Error(e) => Some(format!("ERROR {}", name(e.code))),
        Frame::Goodbye(g) => Some(format!("GOODBYE {}", name(g.code))),
        _ => None,
    }
}

/// Subscribes to every event of the queue; ACKs cumulatively every window/4 deliveries.
pub(crate) struct WeirSubscriber {
    session: WeirSession,
    /// False with `--no-acks`.
    is_acking: bool,
    /// Cumulative ACK once this many deliveries are unacked: a quarter of the window keeps
    /// deliveries flowing without an ACK per message.
    ack_every: u64,
    last_seq: u64,
    last_acked: u64,
}

impl WeirSubscriber {
    pub(crate) fn connect(address: &str, name: &str, options: &ConnectOptions) -> io::Result<Self> {
        let mut session = WeirSession::connect(address, name, options.window, POLL_INTERVAL)?;
        let sub = Subscription {
            queue: options.queue.as_bytes(),
            event: None,
        };
        encode_subscription(Op::Subscribe, &sub, &mut session.wire.write_buf)
            .map_err(|e| protocol_error(e.to_string()))?;
        session.wire.flush()?;
        session.wait_for(|frame| matches!(frame, Frame::Subscribed(_)).then_some(()))?;
        let ack_every = u64::from(session.window / 4).max(1);
        Ok(WeirSubscriber {
            session,
            is_acking: options.is_acking,
            ack_every,
            last_seq: 0,
            last_acked: 0,
        })
    }
}

impl Subscriber for WeirSubscriber {
    fn poll(&mut self, on_message: &mut dyn FnMut(&[u8])) -> io::Result<Polled> {
        let wire = &mut self.session.wire;
        match wire.fill() {
            Ok(0) => return Ok(Polled::Closed("connection closed by the server".into())),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => return Ok(Polled::Open),
            Err(e) => return Err(e),
        }
        let mut closed = None;
        while let Some((frame, used)) = decode(&wire.read_buf[wire.start..wire.end], DECODE_LIMIT)
            .map_err(|e| protocol_error(e.to_string()))?
        {
            match frame {
                Frame::Deliver(deliver) => {
                    on_message(deliver.payload);
                    self.last_seq = deliver.seq;
                    if self.is_acking && self.last_seq - self.last_acked >= self.ack_every {
                        // Cannot fail: an ACK without listed seqs is always within limits.
                        let _ = encode_ack(self.last_seq, &[], &mut wire.write_buf);
                        self.last_acked = self.last_seq;
                    }
                }
                Frame::Ping(nonce) => encode_ping(Op::Pong, nonce, &mut wire.write_buf),
                other => closed = closed.or_else(|| closing_reason(&other)),
            }
            wire.start += used;
        }
        wire.flush()?;
        Ok(closed.map_or(Polled::Open, Polled::Closed))
    }
}

/// Pipelines PUBLISH with seqs 1, 2, ...; bounded by RECEIPTs.
pub(crate) struct WeirPublisher {
    session: WeirSession,
    queue: Vec<u8>,
    max_unconfirmed: u64,
    /// Seq of the last PUBLISH sent (the first is 1).
    last_seq: u64,
    /// Highest seq the server receipted.
    receipted: u64,
}

impl WeirPublisher {
    pub(crate) fn connect(address: &str, name: &str, options: &ConnectOptions) -> io::Result<Self> {
        Ok(WeirPublisher {
            session: WeirSession::connect(address, name, 0, CONFIRM_TIMEOUT)?,
            queue: options.queue.as_bytes().to_vec(),
            max_unconfirmed: options.max_unconfirmed,
            last_seq: 0,
            receipted: 0,
        })
    }

    /// Flushes, then blocks for at least one read and applies every RECEIPT in it.
    fn read_receipts(&mut self) -> io::Result<()> {
        let wire = &mut self.session.wire;
        wire.flush()?;
        match wire.fill() {
            Ok(0) => return Err(protocol_error("connection closed by the server")),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                return Err(io::Error::new(e.kind(), "no RECEIPT in time"));
            }
            Err(e) => return Err(e),
        }
        while let Some((frame, used)) = decode(&wire.read_buf[wire.start..wire.end], DECODE_LIMIT)
            .map_err(|e| protocol_error(e.to_string()))?
        {
            match frame {
                Frame::Receipt(seq) => self.receipted = self.receipted.max(seq),
                Frame::Ping(nonce) => encode_ping(Op::Pong, nonce, &mut wire.write_buf),
                other => {
                    if let Some(reason) = closing_reason(&other) {
                        return Err(protocol_error(reason));
                    }
                }
            }
            wire.start += used;
        }
        Ok(())
    }
}

impl Publisher for WeirPublisher {
    fn publish(&mut self, payload: &[u8]) -> io::Result<()> {
        while self.last_seq - self.receipted >= self.max_unconfirmed {
            self.read_receipts()?;
        }
        self.last_seq += 1;
        let publish = Publish {
            seq: self.last_seq,
            queue: &self.queue,
            event: b"",
            key: None,
            payload,
        };
        let wire = &mut self.session.wire;
        encode_publish(&publish, &mut wire.write_buf).map_err(|e| protocol_error(e.to_string()))?;
        if wire.write_buf.len() >= WRITE_BATCH_BYTES {
            wire.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.session.wire.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.session.wire.flush()?;
        while self.receipted < self.last_seq {
            self.read_receipts()?;
        }
        Ok(())
    }
}

/// Frames from the server can be a little over `max_frame_len` (DELIVER adds a message id to
/// the PUBLISH it carries), so the client decodes with a looser bound.
const DECODE_LIMIT: u32 = 2 * MAX_FRAME_LEN;
