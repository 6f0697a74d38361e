//! A minimal HTTP/1.x responder for the metrics listener: one request per connection.
//!
//! Reads the request head (at most [`MAX_REQUEST_BYTES`]), answers `GET /metrics` with the
//! Prometheus text and anything else with 404 (405 for other methods), then closes. The
//! event loop drives it; a client that sends nothing in [`HTTP_TIMEOUT`] is dropped.

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

/// Longest request head accepted.
pub(crate) const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A metrics connection is closed this long after accept, whatever its state.
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Most metrics connections open at once; more are closed at accept.
pub(crate) const MAX_HTTP_CONNECTIONS: usize = 64;

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
