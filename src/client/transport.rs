//! Moving bytes between the socket and the buffers: the reads and writes behind every
//! [`Client`] call, and the deadlines that bound them.
//!
//! A read happens only when no complete frame is buffered (`fill`), or opportunistically after
//! much has been written (`drain`); a write sends the whole write buffer or times out leaving
//! the rest for the next one (`write_out`).

use std::io;
use std::time::{Duration, Instant};

use crate::protocol::decode;
use crate::protocol::header::FrameHeader;
use crate::protocol::Frame;

use super::buffer::FLUSH_THRESHOLD_BYTES;
use super::error::CloseCause;
use super::socket::{self, ReadOutcome};
use super::{Client, ClientError};

impl Client {
    /// Sends the write buffer, then reads once, waiting up to `wait` (see [`socket::Socket::read`]).
    pub(super) fn fill(&mut self, wait: Option<Duration>) -> Result<(), ClientError> {
        self.write_out()?;
        let frame_len = match FrameHeader::check(self.read_buf.data(), self.session.decode_limit) {
            Ok(Some(header)) => header.wire_len(),
            // A bad header is reported by decode; an incomplete one needs no room yet.
            Ok(None) | Err(_) => 0,
        };
        self.read_buf.reserve(frame_len);
        match self.socket.read(self.read_buf.spare_mut(), wait) {
            Ok(ReadOutcome::Data(n)) => {
                self.read_buf.filled(n);
                self.written_since_read = 0;
                self.last_received_at = Instant::now();
                Ok(())
            }
            Ok(ReadOutcome::Eof) => Err(self.session.close(CloseCause::Eof)),
            Ok(ReadOutcome::TimedOut) => Err(ClientError::Timeout),
            Err(e) => Err(self.session.fail_io(e)),
        }
    }

    /// Writes the whole write buffer, blocking up to the write timeout per write.
    pub(super) fn write_out(&mut self) -> Result<(), ClientError> {
        while !self.write_buf.unsent().is_empty() {
            match self.socket.write(self.write_buf.unsent()) {
                Ok(n) => {
                    self.write_buf.advance(n);
                    self.written_since_read += n;
                }
                Err(e) if socket::is_timeout(&e) => return Err(ClientError::Timeout),
                Err(e) => return Err(self.salvage_close_reason(e)),
            }
        }
        Ok(())
    }

    pub(super) fn flush_if_full(&mut self) -> Result<(), ClientError> {
        if self.write_buf.unsent().len() >= FLUSH_THRESHOLD_BYTES {
            self.write_out()?;
            self.drain()?;
        }
        Ok(())
    }

    /// Once enough has been written since the last read, takes in what has arrived without
    /// blocking and handles the receipts and PINGs at its front. Without this, a publisher
    /// that never waits would leave one RECEIPT per server write turn unread until the
    /// server's write buffer limit closes it as a slow consumer. It stops at any other frame,
    /// which a waiting call or `recv` must see, and never grows the read buffer.
    pub(super) fn drain(&mut self) -> Result<(), ClientError> {
        if self.written_since_read < DRAIN_AFTER_BYTES {
            return Ok(());
        }
        self.written_since_read = 0;
        self.read_buf.compact_if_short(0);
        loop {
            let spare = self.read_buf.spare_mut();
            let room = spare.len();
            if room == 0 {
                break;
            }
            match self.socket.read(spare, Some(Duration::ZERO)) {
                Ok(ReadOutcome::Data(n)) => {
                    self.read_buf.filled(n);
                    self.last_received_at = Instant::now();
                    if n < room {
                        break;
                    }
                }
                // EOF and socket errors persist: the next blocking call meets and reports
                // them, after the frames that came before them.
                Ok(ReadOutcome::Eof | ReadOutcome::TimedOut) | Err(_) => break,
            }
        }
        loop {
            match decode(self.read_buf.data(), self.session.decode_limit) {
                Ok(Some((frame @ (Frame::Receipt(_) | Frame::Ping(_)), used))) => {
                    let result = self.session.handle(frame, &mut self.write_buf);
                    self.read_buf.consume(used);
                    result?;
                }
                Ok(_) => return Ok(()),
                Err(e) => return Err(self.session.close(CloseCause::Decode(e))),
            }
        }
    }

    /// After a failed write, looks at what the server sent before closing: a GOODBYE or ERROR
    /// explains the failure better than the broken pipe does.
    fn salvage_close_reason(&mut self, error: io::Error) -> ClientError {
        self.read_buf.compact_if_short(0);
        loop {
            let spare = self.read_buf.spare_mut();
            if spare.is_empty() {
                break;
            }
            match self.socket.read(spare, Some(Duration::ZERO)) {
                Ok(ReadOutcome::Data(n)) => self.read_buf.filled(n),
                _ => break,
            }
        }
        while let Ok(Some((frame, used))) = decode(self.read_buf.data(), self.session.decode_limit)
        {
            let result = self.session.handle(frame, &mut self.write_buf);
            self.read_buf.consume(used);
            if let Err(e) = result {
                if e.is_fatal() {
                    return e;
                }
            }
        }
        self.session.fail_io(error)
    }
}

/// When a blocking wait gives up.
#[derive(Clone, Copy, Debug)]
pub(super) enum Deadline {
    /// Take only what has arrived.
    Now,
    At(Instant),
    Never,
}

impl Deadline {
    pub(super) fn after(timeout: Option<Duration>) -> Deadline {
        match timeout {
            Some(Duration::ZERO) => Deadline::Now,
            Some(timeout) => Instant::now()
                .checked_add(timeout)
                .map_or(Deadline::Never, Deadline::At),
            None => Deadline::Never,
        }
    }

    /// The wait left for the next read, in [`socket::Socket::read`]'s terms.
    pub(super) fn remaining(self) -> Result<Option<Duration>, ClientError> {
        match self {
            Deadline::Now => Ok(Some(Duration::ZERO)),
            Deadline::At(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    Err(ClientError::Timeout)
                } else {
                    Ok(Some(left))
                }
            }
            Deadline::Never => Ok(None),
        }
    }
}

/// Bytes written without reading after which `flush` takes in receipts. 256 KiB of publishes
/// yields at most a few receipts per server write turn, far below any buffer limit, while
/// keeping the extra non-blocking read off the per-message path.
pub(super) const DRAIN_AFTER_BYTES: usize = 256 * 1024;
