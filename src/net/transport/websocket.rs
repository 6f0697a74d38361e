//! WebSocket (RFC 6455) as a layer, for browsers: the HTTP upgrade, then Weir frames in binary
//! messages (protocol.md §WebSocket). It sits on top of the stack (over TLS for `wss://`, over
//! a PROXY prefix behind a load balancer).
//!
//! [`super::ws_frames`] decodes the client's frames (masking, fragmentation, ping/pong, close,
//! the size limit read from each frame header before its payload is taken) in place from an
//! in-memory stream ([`MemStream`]) that this layer fills from below and drains below:
//! nothing blocks, nothing is allocated per message. The upgrade request is parsed here with
//! httparse, so that its size is bounded ([`MAX_HANDSHAKE_BYTES`]) and a refusal is an HTTP
//! answer with a reason; tungstenite derives the accept key.
//!
//! Both directions: client messages are concatenated into the byte stream the core decodes
//! (any split is fine); each Weir frame the server sends is one binary message, framed here by
//! hand (a server frame is unmasked: 2 to 10 header bytes and the frame, no allocation).
//!
//! A fault found here (a text message, an oversize message, a WebSocket protocol error, a
//! refused upgrade) is told to the core as [`TransportEvent::Refused`]; the core closes the
//! connection with its ERROR, which this layer still carries when the WebSocket is open, and
//! [`Layer::shutdown`] then sends the close frame with the code that names the fault.

use std::io::{self, ErrorKind, Read, Write};

use super::ws_frames::{close_code, encode_close, Inbound, Step};
use super::{Below, Layer, TransportEvent};
use crate::config::WebSocketSettings;
use crate::protocol::ErrorCode;

/// The subprotocol a client must offer in `Sec-WebSocket-Protocol`.
pub(crate) const SUBPROTOCOL: &str = "weir.v1";

/// Longest upgrade request head accepted, in bytes (the same bound as the HTTP listener's).
pub(crate) const MAX_HANDSHAKE_BYTES: usize = 8 * 1024;

/// Framed output held before the layer stops taking frames (then they wait in the write
/// buffer and the session queue behind it): the same bound as TLS's.
pub(crate) const WS_BUFFER_LIMIT_BYTES: usize = 64 * 1024;

/// Bytes read from below per call.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Most headers in an upgrade request (browsers send about 15).
const MAX_HEADERS: usize = 64;

/// One connection's WebSocket.
#[derive(Debug)]
pub(crate) struct WebSocketLayer {
    state: State,
    settings: WebSocketSettings,
    event: Option<TransportEvent>,
}

/// An upgraded connection.
#[derive(Debug)]
struct Open {
    stream: MemStream,
    inbound: Inbound,
    /// `Some(code)` once a fault was found: nothing more is read, frames from above (the
    /// core's ERROR) still go out, and the close frame carries `code`.
    fault: Option<u16>,
    /// A close frame was sent: nothing more may be.
    is_close_sent: bool,
    /// The client sent a close (answered): the stream ends.
    is_peer_closed: bool,
}

#[derive(Debug)]
enum State {
    /// Reading the upgrade request.
    Handshake(MemStream),
    /// The upgrade was refused: the HTTP answer is in the stream's output; nothing more is read
    /// and bytes from above are dropped (there is no WebSocket to carry them).
    Refused(MemStream),
    /// Upgraded.
    Open(Box<Open>),
}

impl WebSocketLayer {
    /// A layer expecting an upgrade request under `settings`.
    pub(crate) fn new(settings: WebSocketSettings) -> WebSocketLayer {
        WebSocketLayer {
            state: State::Handshake(MemStream::default()),
            settings,
            event: None,
        }
    }

    fn stream(&mut self) -> &mut MemStream {
        match &mut self.state {
            State::Handshake(stream) | State::Refused(stream) => stream,
            State::Open(open) => &mut open.stream,
        }
    }

    /// Writes held output below until done or the stream below is full.
    fn push(&mut self, below: &mut Below<'_>) -> io::Result<()> {
        let stream = self.stream();
        while stream.sent < stream.output.len() {
            let rest = stream.output.get(stream.sent..).unwrap_or_default();
            match below.write(rest) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => stream.sent += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        stream.output.clear();
        stream.sent = 0;
        Ok(())
    }

    /// Pushes what can go now; a full stream below is not an error (the flush pass retries).
    fn push_now(&mut self, below: &mut Below<'_>) -> io::Result<()> {
        match self.push(below) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    /// Reads more bytes from below into the stream's input. `Ok(0)` at the end of the stream.
    ///
    /// What was not decoded yet (part of a frame header or of a control frame, at most 135
    /// bytes once upgraded) moves to the front first, so the storage is zeroed once and reused.
    fn fill(&mut self, below: &mut Below<'_>) -> io::Result<usize> {
        let stream = self.stream();
        if stream.pos >= stream.end {
            stream.pos = 0;
            stream.end = 0;
        } else if stream.pos > 0 {
            stream.input.copy_within(stream.pos..stream.end, 0);
            stream.end -= stream.pos;
            stream.pos = 0;
        }
        if stream.input.len() < stream.end + READ_CHUNK_BYTES {
            stream.input.resize(stream.end + READ_CHUNK_BYTES, 0);
        }
        let n = below.read(stream.input.get_mut(stream.end..).unwrap_or_default())?;
        stream.end += n;
        Ok(n)
    }

    /// Reads binary messages' payload into `buf` until it is full or nothing more has arrived,
    /// so the core gets many frames per call, as from TCP.
    fn read_messages(&mut self, below: &mut Below<'_>, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            let State::Open(open) = &mut self.state else {
                return Ok(filled);
            };
            if open.fault.is_some() {
                return Ok(filled);
            }
            if open.is_peer_closed {
                return Ok(filled);
            }
            if filled >= buf.len() {
                return Ok(filled);
            }
            let stream = &mut open.stream;
            let input = stream.input.get(stream.pos..stream.end).unwrap_or_default();
            let out = buf.get_mut(filled..).unwrap_or_default();
            let (used, step) = open.inbound.step(input, out);
            stream.pos += used;
            match step {
                Step::Data(n) => filled += n,
                Step::Pong(pong) => {
                    // Bounded like frames from above: a client that sends pings and never
                    // reads must not grow this buffer (RFC 6455 §5.5.3 lets an endpoint answer
                    // only the latest ping); its write stall ends it at the heartbeat timeout.
                    if !open.is_close_sent && stream.output.len() < WS_BUFFER_LIMIT_BYTES {
                        stream.output.extend_from_slice(&pong);
                    }
                }
                Step::Close(code) => {
                    // Answered with the client's code (RFC 6455 §5.5.1); the stream then ends.
                    if !open.is_close_sent {
                        let code = if code < 1000 {
                            close_code::NORMAL
                        } else {
                            code
                        };
                        encode_close(code, &mut stream.output);
                        open.is_close_sent = true;
                    }
                    open.is_peer_closed = true;
                    self.push_now(below)?;
                    return Ok(filled);
                }
                Step::Fault(close, text) => {
                    let code = match close {
                        close_code::TOO_BIG => ErrorCode::FrameTooLarge,
                        _ => ErrorCode::MalformedFrame,
                    };
                    let error = self.fail(code, close, text.into());
                    return if filled > 0 { Ok(filled) } else { Err(error) };
                }
                Step::NeedMore => {
                    self.push_now(below)?;
                    match self.fill(below) {
                        Ok(0) if filled == 0 => return Ok(0),
                        Ok(0) => return Ok(filled),
                        Ok(_) => {}
                        // What was decoded goes up now; the error comes again next time.
                        Err(_) if filled > 0 => return Ok(filled),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Tells the core of a fault and stops reading; the close frame will carry `close`.
    fn fail(&mut self, code: ErrorCode, close: u16, text: String) -> io::Error {
        if let State::Open(open) = &mut self.state {
            open.fault = Some(close);
        }
        self.event = Some(TransportEvent::Refused(code, format!("WebSocket: {text}")));
        ErrorKind::WouldBlock.into()
    }

    /// One step of the upgrade over what has arrived. `Ok(true)` once upgraded.
    fn try_upgrade(&mut self) -> bool {
        let State::Handshake(stream) = &mut self.state else {
            return false;
        };
        let input = stream.input.get(stream.pos..stream.end).unwrap_or_default();
        let head_len = MAX_HANDSHAKE_BYTES.min(input.len());
        let head = input.get(..head_len).unwrap_or_default();
        let outcome = match upgrade(head, &self.settings) {
            Upgrade::Incomplete if input.len() >= MAX_HANDSHAKE_BYTES => {
                let mut refusal = Refusal::new(
                    "431 Request Header Fields Too Large",
                    format!("the upgrade request exceeds {MAX_HANDSHAKE_BYTES} bytes"),
                );
                refusal.code = ErrorCode::FrameTooLarge;
                Upgrade::Refuse(refusal)
            }
            other => other,
        };
        match outcome {
            Upgrade::Incomplete => false,
            Upgrade::Accept { used, response } => {
                let mut stream = std::mem::take(stream);
                stream.pos += used;
                stream.output.extend_from_slice(response.as_bytes());
                self.state = State::Open(Box::new(Open {
                    stream,
                    inbound: Inbound::new(self.settings.max_message_len),
                    fault: None,
                    is_close_sent: false,
                    is_peer_closed: false,
                }));
                true
            }
            Upgrade::Refuse(refusal) => {
                let mut stream = std::mem::take(stream);
                stream.input = Vec::new();
                stream.pos = 0;
                stream.end = 0;
                stream
                    .output
                    .extend_from_slice(refusal.response().as_bytes());
                self.event = Some(TransportEvent::Refused(
                    refusal.code,
                    format!("WebSocket upgrade refused: {}", refusal.text),
                ));
                self.state = State::Refused(stream);
                false
            }
        }
    }
}

impl Layer for WebSocketLayer {
    fn read(&mut self, below: &mut Below<'_>, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match &mut self.state {
                State::Refused(_) => return Err(ErrorKind::WouldBlock.into()),
                State::Open(open) if open.fault.is_some() => {
                    return Err(ErrorKind::WouldBlock.into())
                }
                State::Handshake(_) => {
                    if self.fill(below)? == 0 {
                        return Ok(0);
                    }
                    let upgraded = self.try_upgrade();
                    self.push_now(below)?;
                    if !upgraded && self.event.is_some() {
                        return Err(ErrorKind::WouldBlock.into());
                    }
                }
                State::Open(_) => return self.read_messages(below, buf),
            }
        }
    }

    fn write(&mut self, below: &mut Below<'_>, buf: &[u8]) -> io::Result<usize> {
        let State::Open(open) = &self.state else {
            // No WebSocket (yet, or refused): the core's ERROR has nowhere to go.
            return Ok(buf.len());
        };
        if open.is_close_sent {
            return Ok(buf.len());
        }
        match self.push(below) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if self.stream().output.len() >= WS_BUFFER_LIMIT_BYTES {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        let output = &mut self.stream().output;
        let mut taken = 0;
        while output.len() < WS_BUFFER_LIMIT_BYTES {
            let rest = buf.get(taken..).unwrap_or_default();
            let Some(frame_len) = whole_frame_len(rest) else {
                break;
            };
            let frame = rest.get(..frame_len).unwrap_or_default();
            encode_binary_header(frame.len(), output);
            output.extend_from_slice(frame);
            taken += frame_len;
        }
        if taken == 0 && !buf.is_empty() && output.len() < WS_BUFFER_LIMIT_BYTES {
            // Not a whole frame: the write buffer only ever holds whole frames, so this is a
            // tail the caller cut; send it as it is rather than stall.
            encode_binary_header(buf.len(), output);
            output.extend_from_slice(buf);
            taken = buf.len();
        }
        self.push_now(below)?;
        if taken == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn flush(&mut self, below: &mut Below<'_>) -> io::Result<()> {
        self.push(below)
    }

    fn has_unsent(&self) -> bool {
        let stream = match &self.state {
            State::Handshake(stream) | State::Refused(stream) => stream,
            State::Open(open) => &open.stream,
        };
        stream.sent < stream.output.len()
    }

    fn shutdown(&mut self, below: &mut Below<'_>) {
        if let State::Open(open) = &mut self.state {
            if !open.is_close_sent {
                encode_close(
                    open.fault.unwrap_or(close_code::NORMAL),
                    &mut open.stream.output,
                );
                open.is_close_sent = true;
            }
        }
        let _ = self.push(below);
    }

    fn poll_event(&mut self) -> Option<TransportEvent> {
        self.event.take()
    }
}

/// The connection's in-memory buffers: `input[pos..end]` arrived from below and is not yet
/// decoded (the rest of `input` is storage); `output[sent..]` is framed and not yet pushed
/// below.
#[derive(Debug, Default)]
pub(crate) struct MemStream {
    input: Vec<u8>,
    pos: usize,
    end: usize,
    output: Vec<u8>,
    sent: usize,
}

/// The length of the whole Weir frame at the start of `bytes` (its 4-byte length field plus
/// `length`), if all of it is there. Layout: protocol.md §Framing.
fn whole_frame_len(bytes: &[u8]) -> Option<usize> {
    let field: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let total = 4usize.checked_add(u32::from_be_bytes(field) as usize)?;
    (total <= bytes.len()).then_some(total)
}

/// Appends the header of one unmasked, final, binary WebSocket frame of `len` payload bytes
/// (RFC 6455 §5.2).
pub(crate) fn encode_binary_header(len: usize, out: &mut Vec<u8>) {
    out.push(0x82);
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// What the upgrade request says so far.
#[derive(Debug)]
enum Upgrade {
    /// The head is not complete yet.
    Incomplete,
    /// Upgrade: the head was `used` bytes; `response` is the 101 to send.
    Accept { used: usize, response: String },
    /// Refuse with this answer.
    Refuse(Refusal),
}

/// An HTTP refusal of the upgrade.
#[derive(Debug)]
struct Refusal {
    status: &'static str,
    text: String,
    /// How the core counts the close: NOT_AUTHORIZED for an origin, FRAME_TOO_LARGE for a
    /// head too long, MALFORMED_FRAME for the rest.
    code: ErrorCode,
    /// Extra header lines, each ending in CRLF.
    headers: &'static str,
}

impl Refusal {
    fn new(status: &'static str, text: String) -> Refusal {
        Refusal {
            status,
            text,
            code: ErrorCode::MalformedFrame,
            headers: "",
        }
    }

    fn response(&self) -> String {
        let body = format!("{}\n", self.text);
        format!(
            "HTTP/1.1 {}\r\nContent-Type: text/plain; charset=utf-8\r\n{}Content-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            self.status,
            self.headers,
            body.len()
        )
    }
}

/// Checks an upgrade request head (RFC 6455 §4.2.1, protocol.md §WebSocket).
fn upgrade(head: &[u8], settings: &WebSocketSettings) -> Upgrade {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let used = match request.parse(head) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Upgrade::Incomplete,
        Err(httparse::Error::TooManyHeaders) => {
            return Upgrade::Refuse(Refusal::new(
                "431 Request Header Fields Too Large",
                format!("more than {MAX_HEADERS} headers"),
            ))
        }
        Err(error) => {
            return Upgrade::Refuse(Refusal::new(
                "400 Bad Request",
                format!("not an HTTP request: {error}"),
            ))
        }
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    let has_token = |name: &str, token: &str| {
        request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .any(|t| {
                String::from_utf8_lossy(t)
                    .trim()
                    .eq_ignore_ascii_case(token)
            })
    };
    if request.method != Some("GET") || request.version != Some(1) {
        let text = "a WebSocket upgrade is a GET request in HTTP/1.1".to_owned();
        return Upgrade::Refuse(Refusal::new("400 Bad Request", text));
    }
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        let mut refusal = Refusal::new(
            "426 Upgrade Required",
            format!("this is a Weir WebSocket listener: upgrade to WebSocket with subprotocol {SUBPROTOCOL}"),
        );
        refusal.headers = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
        return Upgrade::Refuse(refusal);
    }
    if header("sec-websocket-version").as_deref() != Some("13") {
        let mut refusal = Refusal::new(
            "426 Upgrade Required",
            "only WebSocket version 13 is supported".into(),
        );
        refusal.headers = "Sec-WebSocket-Version: 13\r\n";
        return Upgrade::Refuse(refusal);
    }
    let Some(key) = header("sec-websocket-key").filter(|k| !k.is_empty()) else {
        let text = "the Sec-WebSocket-Key header is missing".to_owned();
        return Upgrade::Refuse(Refusal::new("400 Bad Request", text));
    };
    if !has_token("sec-websocket-protocol", SUBPROTOCOL) {
        let text = format!("the subprotocol {SUBPROTOCOL} is required (Sec-WebSocket-Protocol)");
        return Upgrade::Refuse(Refusal::new("400 Bad Request", text));
    }
    if let Some(origin) = header("origin") {
        let host = header("host").unwrap_or_default();
        if !is_origin_allowed(&origin, &host, &settings.allowed_origins) {
            let text = format!(
                "origin {origin} is not allowed here (same host as {host:?}, or \
                 websocket_allowed_origins)"
            );
            let mut refusal = Refusal::new("403 Forbidden", text);
            refusal.code = ErrorCode::NotAuthorized;
            return Upgrade::Refuse(refusal);
        }
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
    );
    Upgrade::Accept { used, response }
}

/// The origin rule: an `Origin` whose host (and port) is the request's `Host`, or one listed
/// in `allowed` (compared without case), or any when `allowed` holds `"*"`.
fn is_origin_allowed(origin: &str, host: &str, allowed: &[String]) -> bool {
    if allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
    !host.is_empty() && authority.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(allowed: &[&str]) -> WebSocketSettings {
        WebSocketSettings {
            allowed_origins: allowed.iter().map(|s| (*s).to_owned()).collect(),
            max_message_len: 1024,
        }
    }

    const REQUEST: &str = "GET / HTTP/1.1\r\nHost: 127.0.0.1:7400\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, weir.v1\r\n";

    fn request(extra: &str) -> Vec<u8> {
        format!("{REQUEST}{extra}\r\n").into_bytes()
    }

    #[test]
    fn an_upgrade_offering_weir_v1_is_accepted_with_the_rfc_accept_key() {
        let head = request("");
        match upgrade(&head, &settings(&[])) {
            Upgrade::Accept { used, response } => {
                assert_eq!(used, head.len());
                assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
                assert!(response.contains("Sec-WebSocket-Protocol: weir.v1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_head_cut_anywhere_is_incomplete_not_refused() {
        let head = request("");
        for cut in 0..head.len() {
            assert!(matches!(
                upgrade(&head[..cut], &settings(&[])),
                Upgrade::Incomplete
            ));
        }
    }

    #[test]
    fn refusals_name_the_rule() {
        let plain = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        let cases: [(Vec<u8>, &str); 3] = [
            (plain.to_vec(), "426"),
            (REQUEST.replace("chat, weir.v1", "chat").into_bytes(), "400"),
            (request("Origin: https://evil.example\r\n"), "403"),
        ];
        for (head, status) in cases {
            let mut head = head;
            if !head.ends_with(b"\r\n\r\n") {
                head.extend_from_slice(b"\r\n");
            }
            match upgrade(&head, &settings(&[])) {
                Upgrade::Refuse(r) => {
                    assert!(r.response().starts_with(&format!("HTTP/1.1 {status}")))
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[test]
    fn origin_rule_same_host_list_or_star() {
        assert!(is_origin_allowed(
            "http://127.0.0.1:7400",
            "127.0.0.1:7400",
            &[]
        ));
        assert!(!is_origin_allowed(
            "http://127.0.0.1:8000",
            "127.0.0.1:7400",
            &[]
        ));
        assert!(!is_origin_allowed("null", "127.0.0.1:7400", &[]));
        let list = ["https://app.example".to_owned()];
        assert!(is_origin_allowed("https://APP.example", "weir:443", &list));
        assert!(is_origin_allowed("https://x", "y", &["*".to_owned()]));
    }

    #[test]
    fn binary_headers_use_the_shortest_length_form() {
        for (len, header) in [
            (0usize, vec![0x82, 0]),
            (125, vec![0x82, 125]),
            (126, vec![0x82, 126, 0, 126]),
            (65_536, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            encode_binary_header(len, &mut out);
            assert_eq!(out, header, "{len}");
        }
    }

    #[test]
    fn whole_frames_are_measured_from_the_length_field() {
        assert_eq!(whole_frame_len(&[0, 0, 0, 2, 1, 7]), Some(6));
        assert_eq!(whole_frame_len(&[0, 0, 0, 2, 1]), None);
        assert_eq!(whole_frame_len(&[0, 0]), None);
    }
}
