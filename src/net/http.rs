//! A minimal HTTP/1.x responder for the metrics listener: one request per connection.
//!
//! Reads the request head (at most [`MAX_REQUEST_BYTES`]), answers `GET /metrics` with the
//! Prometheus text and anything else with 404 (405 for other methods), then closes. The
//! event loop drives it; a client that sends nothing in [`HTTP_TIMEOUT`] is dropped.

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

/// Longest request head accepted.
pub(crate) const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A metrics connection is closed this long after accept, whatever its state.
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Most metrics connections open at once; more are closed at accept.
pub(crate) const MAX_HTTP_CONNECTIONS: usize = 64;

/// The HTTP listener and its connections. Connection `k` has token `base + k`.
#[derive(Debug)]
pub(crate) struct HttpListener {
    pub(crate) socket: TcpListener,
    conns: Slab<HttpConn>,
    base: usize,
}

impl HttpListener {
    pub(crate) fn new(socket: TcpListener, base: usize) -> HttpListener {
        HttpListener {
            socket,
            conns: Slab::new(),
            base,
        }
    }

    /// Whether `token` is one of this listener's connections.
    pub(crate) fn owns(&self, token: Token) -> bool {
        token.0 >= self.base && token.0 - self.base < MAX_HTTP_CONNECTIONS
    }

    /// Accepts until `WouldBlock`; past [`MAX_HTTP_CONNECTIONS`] new ones are closed at once.
    pub(crate) fn accept(&mut self, registry: &Registry, now: Instant) {
        loop {
            let mut stream = match self.socket.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if self.conns.len() >= MAX_HTTP_CONNECTIONS {
                continue;
            }
            let entry = self.conns.vacant_entry();
            let token = Token(self.base + entry.key());
            if registry
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_ok()
            {
                entry.insert(HttpConn::new(stream, now));
            }
        }
    }

    /// Reads or writes connection `token`; `render` makes the metrics body when asked.
    pub(crate) fn handle_event(
        &mut self,
        registry: &Registry,
        token: Token,
        scratch: &mut [u8],
        render: impl FnOnce() -> String,
    ) {
        let key = token.0 - self.base;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut state = conn.on_readable(scratch);
        if let HttpState::Request(path) = state {
            state = conn.respond(&path, render);
        }
        if state == HttpState::Done {
            self.remove(registry, key);
        }
    }

    /// The earliest connection deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.conns.iter().map(|(_, c)| c.deadline).min()
    }

    /// Closes connections past their deadline (all of them when `all`).
    pub(crate) fn expire(&mut self, registry: &Registry, now: Instant, all: bool) {
        if self.conns.is_empty() {
            return;
        }
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| all || c.deadline <= now)
            .map(|(k, _)| k)
            .collect();
        for key in expired {
            self.remove(registry, key);
        }
    }

    /// Whether no connection is open.
    pub(crate) fn is_idle(&self) -> bool {
        self.conns.is_empty()
    }

    fn remove(&mut self, registry: &Registry, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = registry.deregister(&mut conn.stream);
            let _ = conn.close();
        }
    }
}

#[derive(Debug)]
pub(crate) struct HttpConn {
    pub(crate) stream: TcpStream,
    request: Vec<u8>,
    response: Vec<u8>,
    sent: usize,
    pub(crate) deadline: Instant,
}

/// What a metrics connection needs next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HttpState {
    /// Waiting for more of the request or for the socket to take the response.
    Pending,
    /// The request is complete: call [`HttpConn::respond`] with the body for this path.
    Request(String),
    /// Done (response written, peer gone, or error): close it.
    Done,
}

impl HttpConn {
    pub(crate) fn new(stream: TcpStream, now: Instant) -> HttpConn {
        HttpConn {
            stream,
            request: Vec::new(),
            response: Vec::new(),
            sent: 0,
            deadline: now + HTTP_TIMEOUT,
        }
    }

    /// Reads what is available; returns the request path once the head is complete.
    pub(crate) fn on_readable(&mut self, scratch: &mut [u8]) -> HttpState {
        if !self.response.is_empty() {
            return self.on_writable();
        }
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return HttpState::Done,
                Ok(n) => {
                    self.request
                        .extend_from_slice(scratch.get(..n).unwrap_or_default());
                    let end = find_head_end(&self.request);
                    if let Some(end) = end.filter(|&end| end <= MAX_REQUEST_BYTES) {
                        return self.parse(end);
                    }
                    if self.request.len() > MAX_REQUEST_BYTES {
                        self.set_response("431 Request Header Fields Too Large", "");
                        return self.on_writable();
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return HttpState::Pending,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return HttpState::Done,
            }
        }
    }

    fn parse(&mut self, end: usize) -> HttpState {
        let head = String::from_utf8_lossy(self.request.get(..end).unwrap_or_default());
        let mut words = head.split_whitespace();
        match (words.next(), words.next()) {
            (Some("GET"), Some(path)) => HttpState::Request(path.to_owned()),
            (Some(_), Some(_)) => {
                self.set_response("405 Method Not Allowed", "");
                self.on_writable()
            }
            _ => {
                self.set_response("400 Bad Request", "");
                self.on_writable()
            }
        }
    }

    /// Queues the response for a complete request and starts writing it.
    pub(crate) fn respond(&mut self, path: &str, metrics: impl FnOnce() -> String) -> HttpState {
        match path {
            "/metrics" => {
                let body = metrics();
                self.set_response("200 OK", &body);
            }
            _ => self.set_response("404 Not Found", "try /metrics\n"),
        }
        self.on_writable()
    }

    fn set_response(&mut self, status: &str, body: &str) {
        self.response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        self.sent = 0;
    }

    /// Writes more of the response; `Done` once all of it is written.
    pub(crate) fn on_writable(&mut self) -> HttpState {
        if self.response.is_empty() {
            return HttpState::Pending;
        }
        while self.sent < self.response.len() {
            let rest = self.response.get(self.sent..).unwrap_or_default();
            match self.stream.write(rest) {
                Ok(0) => return HttpState::Done,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return HttpState::Pending,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return HttpState::Done,
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        HttpState::Done
    }

    pub(crate) fn close(&mut self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Both)
    }
}

fn find_head_end(request: &[u8]) -> Option<usize> {
    request.windows(4).position(|w| w == b"\r\n\r\n")
}
