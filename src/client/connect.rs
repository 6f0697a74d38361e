//! Opening a session: HELLO and WELCOME, a new session or a resume, over TCP or TLS.

use super::*;

impl Client {
    /// Connects, sends HELLO with `options`, and waits for WELCOME.
    ///
    /// # Errors
    /// [`ClientError::Io`] if no address accepts the connection; [`ClientError::Server`] if the
    /// server refuses it (SERVER_BUSY); [`ClientError::Timeout`] if WELCOME does not arrive
    /// within `options.timeout`; [`ClientError::Encode`] for a name over 255 bytes;
    /// [`ClientError::InvalidArgument`] for a zero timeout; any other fatal error.
    pub fn connect(
        addr: impl ToSocketAddrs,
        options: &ClientOptions,
    ) -> Result<Client, ClientError> {
        Client::handshake(addr, options, None, None)
    }

    /// As [`Client::connect`], over TLS: the TLS handshake (trusting what `tls` says) comes
    /// before HELLO, both within `options.timeout`.
    ///
    /// # Errors
    /// As [`Client::connect`]; a certificate the client does not trust, or a failed TLS
    /// handshake, is [`ClientError::Io`] (`InvalidData`, wrapping the `rustls::Error`), as is
    /// a CA file that cannot be read or holds no certificate.
    pub fn connect_tls(
        addr: impl ToSocketAddrs,
        options: &ClientOptions,
        tls: &TlsOptions,
    ) -> Result<Client, ClientError> {
        Client::handshake(addr, options, Some(tls), None)
    }

    /// Connects and asks to resume the session named in `resume` (HELLO with the resume block;
    /// protocol.md §Reconnection). The outcome is in [`Client::welcome`]: `OUTCOME_RESUMED`
    /// (same session; resend the publishes with a seq above `last_publish_seq`, with their
    /// original seqs, in order) or `OUTCOME_LOST` (a new session; `lost_reason` and `missed` say
    /// what happened to the old one).
    ///
    /// After RESUMED the client may ack deliveries up to `resume.last_delivery_seq`, and the
    /// server resends the in-flight deliveries above it. [`ReconnectingClient`] does all this
    /// on its own.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub fn resume(
        addr: impl ToSocketAddrs,
        options: &ClientOptions,
        resume: &Resume,
    ) -> Result<Client, ClientError> {
        Client::handshake(addr, options, None, Some(resume))
    }

    /// As [`Client::resume`], over TLS (see [`Client::connect_tls`]).
    ///
    /// # Errors
    /// As [`Client::connect_tls`].
    pub fn resume_tls(
        addr: impl ToSocketAddrs,
        options: &ClientOptions,
        tls: &TlsOptions,
        resume: &Resume,
    ) -> Result<Client, ClientError> {
        Client::handshake(addr, options, Some(tls), Some(resume))
    }

    /// Connects (over TLS with `tls`), sends HELLO (resuming with `resume`), waits for WELCOME.
    pub(super) fn handshake(
        addr: impl ToSocketAddrs,
        options: &ClientOptions,
        tls: Option<&TlsOptions>,
        resume: Option<&Resume>,
    ) -> Result<Client, ClientError> {
        if options.timeout == Some(Duration::ZERO) {
            return Err(ClientError::InvalidArgument("timeout must not be zero"));
        }
        let deadline = Deadline::after(options.timeout);
        let socket = Socket::connect(addr, options.timeout, tls).map_err(ClientError::Io)?;
        let mut client = Client {
            socket,
            read_buf: ReadBuf::new(),
            write_buf: WriteBuf::new(),
            session: Session::new(),
            timeout: options.timeout,
            written_since_read: 0,
            last_received_at: Instant::now(),
        };
        client.write_buf.push(MAX_FRAME_LEN_BEFORE_HELLO, |out| {
            encode_hello(
                &Hello {
                    extensions: options.extensions,
                    inflight_window: options.inflight_window,
                    client_name: options.name.as_bytes(),
                    resume: resume.copied(),
                    auth: options.auth.as_ref().map(Credentials::as_auth),
                },
                out,
            )
        })?;
        client.write_out()?;
        let welcome = loop {
            match decode(client.read_buf.data(), MAX_FRAME_LEN) {
                Ok(Some((Frame::Welcome(welcome), used))) => {
                    client.read_buf.consume(used);
                    break welcome;
                }
                Ok(Some((frame @ (Frame::Error(_) | Frame::Goodbye(_)), _))) => {
                    // Both come back as an error (SERVER_BUSY, HANDSHAKE_TIMEOUT, ...).
                    return Err(match client.session.handle(frame, &mut client.write_buf) {
                        Err(e) => e,
                        Ok(_) => ClientError::UnexpectedFrame(op_name(&frame)),
                    });
                }
                Ok(Some((frame, _))) => {
                    return Err(client
                        .session
                        .close(CloseCause::Unexpected(op_name(&frame))))
                }
                Ok(None) => client.fill(deadline.remaining()?)?,
                Err(e) => {
                    let cause = CloseCause::decode(e, client.read_buf.data());
                    return Err(client.session.close(cause));
                }
            }
        };
        client.session.handle_welcome(welcome);
        if let (Some(resume), OUTCOME_RESUMED) = (resume, welcome.outcome) {
            // Deliveries up to it stay in flight on the server until acked.
            client.session.last_delivery_seq = resume.last_delivery_seq;
        }
        Ok(client)
    }
}
