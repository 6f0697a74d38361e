//! A minimal HTTP/1.x responder for the HTTP listener (`http_listen`): one request per
//! connection.
//!
//! Reads the request head (at most [`MAX_REQUEST_BYTES`]) and answers `GET /metrics` with the
//! Prometheus text, `GET /` with the dashboard (one page embedded in the binary, plain JS, no
//! external assets) and `GET /stats.json` with the STATS_REPLY document it polls (at most
//! [`MAX_STATS_JSON_BYTES`]); anything else with 404 (405 for other methods), then closes.
//! Who may see the dashboard and its data is the broker's decision
//! ([`Broker::handle_http_access`]). The event loop drives it; a client that sends nothing in
//! [`HTTP_TIMEOUT`] is dropped.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::broker::{Broker, HttpAccess};

/// Longest request head accepted.
pub(crate) const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A metrics connection is closed this long after accept, whatever its state.
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Most metrics connections open at once; more are closed at accept.
pub(crate) const MAX_HTTP_CONNECTIONS: usize = 64;
/// Largest `/stats.json` body: sessions are left out (and counted in `sessions_omitted`) past
/// it. 1 MiB holds about 2,000 sessions; the dashboard shows the first ones anyway.
pub(crate) const MAX_STATS_JSON_BYTES: usize = 1024 * 1024;

/// The dashboard page (`GET /`).
const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// Headers of the dashboard: its own inline script and style, data from this origin only.
const DASHBOARD_HEADERS: &str = "Content-Security-Policy: default-src 'none'; \
    script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:\r\n\
    X-Frame-Options: DENY\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n";
/// The HTTP listener and its connections. Connection `k` has token `base + k`.
#[derive(Debug)]
pub(crate) struct HttpListener {
    pub(crate) socket: TcpListener,
    conns: Slab<HttpConn>,
    base: usize,
    /// Bound to a loopback address: the dashboard needs no credentials.
    is_loopback: bool,
}

impl HttpListener {
    pub(crate) fn new(socket: TcpListener, base: usize) -> HttpListener {
        let is_loopback = socket.local_addr().is_ok_and(|a| a.ip().is_loopback());
        HttpListener {
            socket,
            conns: Slab::new(),
            base,
            is_loopback,
        }
    }

    /// Whether `token` is one of this listener's connections.
    pub(crate) fn owns(&self, token: Token) -> bool {
        token.0 >= self.base && token.0 - self.base < MAX_HTTP_CONNECTIONS
    }

    /// Accepts until `WouldBlock`; past [`MAX_HTTP_CONNECTIONS`] new ones are closed at once.
    pub(crate) fn accept(&mut self, registry: &Registry, now: Instant) {
        loop {
            let (mut stream, peer) = match self.socket.accept() {
                Ok(accepted) => accepted,
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
                entry.insert(HttpConn::new(stream, peer.ip(), now));
            }
        }
    }

    /// Reads or writes connection `token`; `broker` makes the bodies and decides access.
    pub(crate) fn handle_event(
        &mut self,
        registry: &Registry,
        token: Token,
        scratch: &mut [u8],
        broker: &mut Broker,
        now: Instant,
    ) {
        let key = token.0 - self.base;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut state = conn.on_readable(scratch);
        if let HttpState::Request(request) = state {
            state = conn.respond(&request, self.is_loopback, broker, now);
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
    peer: IpAddr,
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
    /// The request is complete: call [`HttpConn::respond`].
    Request(HttpRequest),
    /// Done (response written, peer gone, or error): close it.
    Done,
}

/// A complete GET request: what the response depends on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HttpRequest {
    /// The path, query included.
    pub(crate) path: String,
    /// The `Authorization` header's value, if any.
    pub(crate) authorization: Option<Vec<u8>>,
}

impl HttpConn {
    pub(crate) fn new(stream: TcpStream, peer: IpAddr, now: Instant) -> HttpConn {
        HttpConn {
            stream,
            peer,
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
                        self.set_response(
                            "431 Request Header Fields Too Large",
                            PLAIN_TEXT,
                            "",
                            b"",
                        );
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
        let authorization = head.split("\r\n").skip(1).find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("authorization")
                .then(|| value.trim().as_bytes().to_vec())
        });
        let mut words = head.split_whitespace();
        match (words.next(), words.next()) {
            (Some("GET"), Some(path)) => HttpState::Request(HttpRequest {
                path: path.to_owned(),
                authorization,
            }),
            (Some(_), Some(_)) => {
                self.set_response("405 Method Not Allowed", PLAIN_TEXT, "", b"");
                self.on_writable()
            }
            _ => {
                self.set_response("400 Bad Request", PLAIN_TEXT, "", b"");
                self.on_writable()
            }
        }
    }

    /// Queues the response for a complete request and starts writing it. `is_loopback`: the
    /// listener's address is a loopback one (see [`Broker::handle_http_access`]).
    pub(crate) fn respond(
        &mut self,
        request: &HttpRequest,
        is_loopback: bool,
        broker: &mut Broker,
        now: Instant,
    ) -> HttpState {
        let path = request.path.split('?').next().unwrap_or_default();
        match path {
            "/metrics" => {
                let body = crate::prometheus::render(&broker.metrics_report());
                self.set_response("200 OK", PROMETHEUS_TEXT, "", body.as_bytes());
            }
            "/" | "/index.html" | "/stats.json" => {
                let access = broker.handle_http_access(
                    self.peer,
                    is_loopback,
                    request.authorization.as_deref(),
                    now,
                );
                match access {
                    HttpAccess::Allowed if path == "/stats.json" => {
                        let body = broker.stats_json(MAX_STATS_JSON_BYTES);
                        let headers = "Cache-Control: no-store\r\n";
                        self.set_response("200 OK", "application/json", headers, &body);
                    }
                    HttpAccess::Allowed => {
                        let html = DASHBOARD_HTML.as_bytes();
                        let kind = "text/html; charset=utf-8";
                        self.set_response("200 OK", kind, DASHBOARD_HEADERS, html);
                    }
                    HttpAccess::Unauthorized => self.set_response(
                        "401 Unauthorized",
                        PLAIN_TEXT,
                        "WWW-Authenticate: Basic realm=\"weir\", charset=\"UTF-8\"\r\n",
                        b"credentials of an admin user are required\n",
                    ),
                    HttpAccess::Forbidden => self.set_response(
                        "403 Forbidden",
                        PLAIN_TEXT,
                        "",
                        b"this user is not an admin\n",
                    ),
                    HttpAccess::Throttled => self.set_response(
                        "429 Too Many Requests",
                        PLAIN_TEXT,
                        "Retry-After: 10\r\n",
                        b"too many failed logins from this address; try again later\n",
                    ),
                }
            }
            _ => self.set_response(
                "404 Not Found",
                PLAIN_TEXT,
                "",
                b"try / (dashboard), /stats.json or /metrics\n",
            ),
        }
        self.on_writable()
    }

    /// `headers`: extra header lines, each ending in CRLF.
    fn set_response(&mut self, status: &str, content_type: &str, headers: &str, body: &[u8]) {
        self.response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{headers}\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        self.response.extend_from_slice(body);
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

/// The Prometheus text exposition format's content type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

fn find_head_end(request: &[u8]) -> Option<usize> {
    request.windows(4).position(|w| w == b"\r\n\r\n")
}
