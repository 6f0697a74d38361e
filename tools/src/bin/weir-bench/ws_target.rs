//! WebSocket framing around any adapter (`ws://`, `wss://` for Weir, `nats-ws://` for NATS's
//! own WebSocket listener): the HTTP upgrade first, then each batch of the inner adapter's
//! bytes in one masked binary message (RFC 6455 §5.2), and the binary messages received
//! joined into the byte stream the inner adapter decodes. By hand over the link's buffers, so
//! the same mio loop drives it; no blocking WebSocket client.
//!
//! The inner adapter's opening bytes (HELLO, CONNECT) are held until the 101 arrives
//! (nats-server refuses data sent before its answer). Pings are answered; a close frame ends
//! the connection as the inner adapter's `Closed` would.

use std::io;

use crate::target::{protocol_error, Adapter, Event};

pub(crate) struct WsFraming {
    inner: Box<dyn Adapter>,
    /// `HOST:PORT`, for the Host header.
    host: String,
    /// `Sec-WebSocket-Protocol` to offer, if any.
    subprotocol: Option<&'static str>,
    is_upgraded: bool,
    /// The inner adapter's opening bytes, sent once upgraded.
    held: Vec<u8>,
    /// Payload bytes received that the inner adapter has not consumed yet (a message it could
    /// not decode whole).
    pending: Vec<u8>,
    /// What the inner adapter appends, before it is framed.
    scratch: Vec<u8>,
    /// xorshift state for the masking keys (they need not be secret here: this is a load
    /// generator, not a browser).
    mask_state: u32,
}

impl WsFraming {
    pub(crate) fn new(
        inner: Box<dyn Adapter>,
        host: &str,
        subprotocol: Option<&'static str>,
        seed: u32,
    ) -> WsFraming {
        WsFraming {
            inner,
            host: host.to_owned(),
            subprotocol,
            is_upgraded: false,
            held: Vec::new(),
            pending: Vec::new(),
            scratch: Vec::new(),
            mask_state: seed | 1,
        }
    }

    /// Frames `scratch` as one masked binary message onto `out`.
    fn frame_scratch(&mut self, out: &mut Vec<u8>) {
        if self.scratch.is_empty() {
            return;
        }
        let payload = std::mem::take(&mut self.scratch);
        self.frame(0x2, &payload, out);
        self.scratch = payload;
        self.scratch.clear();
    }

    fn frame(&mut self, opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
        out.push(0x80 | opcode);
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if let Ok(short) = u16::try_from(len) {
            out.push(0x80 | 126);
            out.extend_from_slice(&short.to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        self.mask_state ^= self.mask_state << 13;
        self.mask_state ^= self.mask_state >> 17;
        self.mask_state ^= self.mask_state << 5;
        let key = self.mask_state.to_be_bytes();
        out.extend_from_slice(&key);
        let start = out.len();
        out.extend_from_slice(payload);
        for (i, byte) in out[start..].iter_mut().enumerate() {
            *byte ^= key[i % 4];
        }
    }

    /// Hands `payload` (one binary message) to the inner adapter.
    fn deliver(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
        events: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<()> {
        if self.pending.is_empty() {
            let used = self
                .inner
                .handle_input(payload, &mut self.scratch, events)?;
            self.pending.extend_from_slice(&payload[used..]);
        } else {
            self.pending.extend_from_slice(payload);
            let pending = std::mem::take(&mut self.pending);
            let used = self
                .inner
                .handle_input(&pending, &mut self.scratch, events)?;
            self.pending = pending;
            self.pending.drain(..used);
        }
        self.frame_scratch(out);
        Ok(())
    }
}

impl Adapter for WsFraming {
    fn open(&mut self, out: &mut Vec<u8>, events: &mut dyn FnMut(Event<'_>)) {
        let protocol = self
            .subprotocol
            .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
            .unwrap_or_default();
        out.extend_from_slice(
            format!(
                "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: d2Vpci1iZW5jaC1rZXkxMg==\r\nSec-WebSocket-Version: 13\r\n\
                 {protocol}\r\n",
                self.host
            )
            .as_bytes(),
        );
        self.inner.open(&mut self.held, events);
    }

    fn subscribe(&mut self, out: &mut Vec<u8>) {
        self.inner.subscribe(&mut self.scratch);
        self.frame_scratch(out);
    }

    fn publish(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        self.inner.publish(payload, &mut self.scratch);
        self.frame_scratch(out);
    }

    fn request_confirm(&mut self, out: &mut Vec<u8>) {
        self.inner.request_confirm(&mut self.scratch);
        self.frame_scratch(out);
    }

    fn confirmed(&self) -> u64 {
        self.inner.confirmed()
    }

    fn handle_input(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        events: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<usize> {
        let mut used = 0;
        if !self.is_upgraded {
            let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
                if input.len() > 8 * 1024 {
                    return Err(protocol_error("the upgrade answer exceeds 8 KiB"));
                }
                return Ok(0);
            };
            let head = String::from_utf8_lossy(&input[..end]);
            if !head.starts_with("HTTP/1.1 101") {
                let status = head.lines().next().unwrap_or_default().to_owned();
                let body = String::from_utf8_lossy(&input[end + 4..]).trim().to_owned();
                events(Event::Closed(format!("upgrade refused: {status} {body}")));
                return Ok(input.len());
            }
            self.is_upgraded = true;
            used = end + 4;
            self.scratch.append(&mut self.held);
            self.frame_scratch(out);
        }
        loop {
            let rest = &input[used..];
            let Some((opcode, header_len, len)) = frame_header(rest)? else {
                return Ok(used);
            };
            let Some(payload) = rest.get(header_len..header_len + len) else {
                return Ok(used);
            };
            match opcode {
                0x0 | 0x2 => self.deliver(payload, out, events)?,
                0x9 => {
                    let data = payload.to_vec();
                    self.frame(0xA, &data, out);
                }
                0xA => {}
                0x8 => {
                    let code = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    events(Event::Closed(format!("WebSocket close {code:?}")));
                }
                other => return Err(protocol_error(format!("WebSocket opcode {other:#x}"))),
            }
            used += header_len + len;
        }
    }

    fn end_of_input(&mut self, out: &mut Vec<u8>) {
        self.inner.end_of_input(&mut self.scratch);
        self.frame_scratch(out);
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        self.inner.close(&mut self.scratch);
        self.frame_scratch(out);
    }

    fn take_tls(&mut self) -> io::Result<Option<rustls::ClientConnection>> {
        self.inner.take_tls()
    }
}

/// A server frame's (opcode, header length, payload length), if its header is all there.
fn frame_header(bytes: &[u8]) -> io::Result<Option<(u8, usize, usize)>> {
    let (Some(&first), Some(&second)) = (bytes.first(), bytes.get(1)) else {
        return Ok(None);
    };
    if second & 0x80 != 0 {
        return Err(protocol_error("a masked frame from the server"));
    }
    let opcode = first & 0x0f;
    Ok(match second & 0x7f {
        126 => bytes
            .get(2..4)
            .map(|b| (opcode, 4, usize::from(u16::from_be_bytes([b[0], b[1]])))),
        127 => bytes.get(2..10).map(|b| {
            let mut len = [0u8; 8];
            len.copy_from_slice(b);
            (opcode, 10, u64::from_be_bytes(len) as usize)
        }),
        short => Some((opcode, 2, usize::from(short))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::AdapterOptions;
    use crate::weir_target::WeirAdapter;

    fn framing() -> WsFraming {
        let options = AdapterOptions {
            topic: "q".into(),
            window: 8,
            is_acking: true,
            confirm_every: 1,
        };
        let inner = Box::new(WeirAdapter::new("t", &options, None, None));
        WsFraming::new(inner, "127.0.0.1:1", Some("weir.v1"), 7)
    }

    fn unmask(frame: &[u8]) -> Vec<u8> {
        let (_, header_len, len) = frame_header(&[frame[0], frame[1] & 0x7f, 0, 0])
            .unwrap()
            .unwrap();
        assert!(header_len == 2, "short test frames");
        let key = &frame[2..6];
        frame[6..6 + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect()
    }

    #[test]
    fn the_upgrade_goes_first_then_hello_in_a_masked_frame() {
        let mut ws = framing();
        let mut out = Vec::new();
        ws.open(&mut out, &mut |_| {});
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("GET / HTTP/1.1\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: weir.v1\r\n"));
        assert!(text.ends_with("\r\n\r\n"), "nothing before the 101");
        out.clear();
        let answer = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        ws.handle_input(answer, &mut out, &mut |_| {}).unwrap();
        let hello = unmask(&out);
        assert_eq!(hello[5], 0x01, "HELLO in the first message");
    }

    #[test]
    fn server_messages_split_anywhere_reach_the_inner_adapter() {
        let mut ws = framing();
        let mut input = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
        let mut receipt = Vec::new();
        weir::protocol::codec::encode_receipt(5, &mut receipt);
        input.extend_from_slice(&[0x82, receipt.len() as u8]);
        input.extend_from_slice(&receipt);
        for cut in 0..input.len() {
            let mut ws_cut = framing();
            let used = ws_cut
                .handle_input(&input[..cut], &mut Vec::new(), &mut |_| {})
                .unwrap();
            let used2 = ws_cut
                .handle_input(&input[used..], &mut Vec::new(), &mut |_| {})
                .unwrap();
            assert_eq!(used + used2, input.len(), "cut at {cut}");
            assert_eq!(ws_cut.confirmed(), 5);
        }
        ws.handle_input(&input, &mut Vec::new(), &mut |_| {})
            .unwrap();
        assert_eq!(ws.confirmed(), 5);
    }
}
