//! Recognises another protocol from the first bytes of a stream that failed to decode, so that
//! a client pointed at a TLS or HTTP port, or a TLS or HTTP client pointed at a plain Weir
//! listener, is told what is wrong instead of "frame length 352518912 exceeds the limit".
//!
//! Pure: it looks at bytes only, and only after a decode error (never on the hot path).

use std::fmt;

/// A protocol recognised where a Weir frame was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignProtocol {
    /// A TLS record: content type 20–23 (handshake 22 for a ClientHello, alert 21 from a
    /// TLS server answering plain bytes), then major version 3.
    Tls,
    /// An HTTP/1.x request (`GET `, `POST `, ...) or response (`HTTP/`).
    Http,
}

impl ForeignProtocol {
    /// The text a plain Weir listener sends in its ERROR to such a peer.
    pub fn server_text(self) -> &'static str {
        match self {
            ForeignProtocol::Tls => {
                "this looks like TLS, but this listener speaks plain Weir (no tls_cert); connect \
                 without TLS or to a TLS listener"
            }
            ForeignProtocol::Http => {
                "this looks like HTTP, but this port speaks the Weir protocol (protocol.md); \
                 the dashboard and metrics are served on http_listen, WebSocket on a listener \
                 with transport = \"websocket\""
            }
        }
    }
}

impl fmt::Display for ForeignProtocol {
    /// What a client tells its user when the server answered in this protocol.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForeignProtocol::Tls => f.write_str(
                "the server answered with TLS: it is a TLS listener; connect with TLS (weir-cli \
                 --tls-ca, TlsOptions)",
            ),
            ForeignProtocol::Http => f.write_str(
                "the server answered with HTTP: this is not a Weir port (a metrics or web \
                 server?)",
            ),
        }
    }
}

/// The protocol the stream starting with `bytes` speaks, if it is one this recognises.
pub fn foreign_protocol(bytes: &[u8]) -> Option<ForeignProtocol> {
    if let [20..=23, 3, 0..=4, ..] = bytes {
        return Some(ForeignProtocol::Tls);
    }
    const HTTP_STARTS: [&[u8]; 10] = [
        b"HTTP/",
        b"GET ",
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"PRI * HTTP/2",
    ];
    HTTP_STARTS
        .iter()
        .any(|start| bytes.starts_with(start))
        .then_some(ForeignProtocol::Http)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_records_and_http_are_recognised() {
        // A ClientHello record header, and the alert a TLS server sends to plain bytes.
        assert_eq!(
            foreign_protocol(&[0x16, 0x03, 0x01, 0x02, 0x00]),
            Some(ForeignProtocol::Tls)
        );
        assert_eq!(
            foreign_protocol(&[0x15, 0x03, 0x03, 0x00, 0x02]),
            Some(ForeignProtocol::Tls)
        );
        assert_eq!(
            foreign_protocol(b"HTTP/1.1 400 Bad Request\r\n"),
            Some(ForeignProtocol::Http)
        );
        assert_eq!(
            foreign_protocol(b"GET /metrics HTTP/1.1\r\n"),
            Some(ForeignProtocol::Http)
        );
    }

    #[test]
    fn weir_frames_and_short_input_are_not_foreign() {
        assert_eq!(foreign_protocol(&[0, 0, 0, 9, 1, 1]), None);
        assert_eq!(foreign_protocol(&[0x16]), None);
        assert_eq!(foreign_protocol(b"HTT"), None);
        assert_eq!(foreign_protocol(&[0x16, 0x02, 0x00]), None);
    }
}
