//! The output side of a turn: the flush pass (what the broker has for each marked
//! connection, written through its transport up to the write budget) and the close pass
//! (final bytes, lingering close, removal).

use super::*;

impl EventLoop {
    /// Writes pending output of every connection that has some, each up to its budget.
    pub(super) fn flush_pass(&mut self, now: Instant) {
        while let Some(id) = self.broker.poll_dirty() {
            if let Some(conn) = self.conns.get_mut(id.0) {
                queue_flush(&mut self.flush_list, conn, id);
            }
        }
        for id in self.flush_again.drain(..) {
            if let Some(conn) = self.conns.get_mut(id.0) {
                queue_flush(&mut self.flush_list, conn, id);
            }
        }
        let budget = self.settings.write_budget_bytes;
        let high_water = self.settings.write_high_water_bytes;
        for index in 0..self.flush_list.len() {
            let id = self.flush_list[index];
            let Some(conn) = self.conns.get_mut(id.0) else {
                continue;
            };
            conn.is_queued_for_flush = false;
            if !conn.is_writable || conn.linger_until.is_some() {
                continue;
            }
            let mut written = 0;
            loop {
                if conn.sent >= conn.write_buf.len() {
                    // All handed to the transport: push what its layers hold, then refill.
                    match conn.transport.flush() {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            conn.is_writable = false;
                            break;
                        }
                        Err(e) => {
                            debug!("write to {}: {e}", conn.peer);
                            self.net_closes.push((id, CloseReason::IoError));
                            break;
                        }
                    }
                    conn.reset_write_buf();
                    if conn.write_buf.capacity() == 0 {
                        conn.write_buf = self.buffers.take(high_water + 4096);
                    }
                    let appended =
                        self.broker
                            .poll_transmit(id, &mut conn.write_buf, high_water, now);
                    if appended == 0 {
                        conn.release_write_buf(&mut self.buffers);
                        break;
                    }
                }
                match conn.write_unsent() {
                    Ok(0) => {
                        self.net_closes.push((id, CloseReason::IoError));
                        break;
                    }
                    Ok(n) => {
                        written += n;
                        self.broker.handle_written(n);
                        if written >= budget {
                            self.flush_again.push(id);
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        conn.is_writable = false;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        debug!("write to {}: {e}", conn.peer);
                        self.net_closes.push((id, CloseReason::IoError));
                        break;
                    }
                }
            }
        }
        self.flush_list.clear();
    }

    /// Closes what the loop and the broker decided to close this turn.
    pub(super) fn close_pass(&mut self, now: Instant) {
        for (id, reason) in std::mem::take(&mut self.net_closes) {
            let Some(conn) = self.conns.get(id.0) else {
                continue;
            };
            if conn.linger_until.is_some() {
                // Already handed back to the broker; the linger just ended early.
                self.remove(id);
                continue;
            }
            self.broker.handle_disconnect(id, reason, now);
            self.remove(id);
        }
        while let Some((id, reason)) = self.broker.poll_close() {
            let Some(conn) = self.conns.get_mut(id.0) else {
                self.broker.handle_disconnect(id, reason, now);
                continue;
            };
            // Final bytes (ERROR / GOODBYE), best effort: the socket is non-blocking.
            if conn.sent >= conn.write_buf.len() {
                conn.reset_write_buf();
            }
            self.broker
                .poll_transmit(id, &mut conn.write_buf, usize::MAX, now);
            while conn.sent < conn.write_buf.len() {
                match conn.write_unsent() {
                    Ok(n) if n > 0 => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    _ => break,
                }
            }
            let _ = conn.transport.flush();
            self.broker.handle_disconnect(id, reason, now);
            conn.transport.shutdown_write();
            conn.write_buf = Vec::new();
            conn.sent = 0;
            conn.linger_until = Some(now + LINGER);
            self.lingering.push_back((now + LINGER, id));
            // Whatever the peer already sent is discarded now; later bytes on readable events.
            linger_read(conn, &mut self.scratch, &mut self.net_closes, id);
        }
        // A linger that ended at once (EOF already there) is removed next turn at the latest.
        for (id, _) in std::mem::take(&mut self.net_closes) {
            if self.conns.contains(id.0) {
                self.remove(id);
            }
        }
    }

    pub(super) fn expire_lingering(&mut self, now: Instant) {
        let is_shutting_down = self.broker.is_shutting_down();
        while let Some(&(at, id)) = self.lingering.front() {
            if at > now && !is_shutting_down {
                break;
            }
            self.lingering.pop_front();
            if self
                .conns
                .get(id.0)
                .is_some_and(|c| c.linger_until == Some(at))
            {
                self.remove(id);
            }
        }
    }
}

/// Discards input of a lingering connection; EOF or an error ends the linger.
pub(super) fn linger_read(
    conn: &mut Connection,
    scratch: &mut [u8],
    closes: &mut Vec<(ConnId, CloseReason)>,
    id: ConnId,
) {
    use std::io::Read;
    let mut discarded = 0;
    loop {
        match conn.transport.tcp().read(scratch) {
            Ok(0) => break,
            Ok(n) => {
                discarded += n;
                if discarded >= LINGER_DISCARD_BYTES {
                    // Keep the rest for the next readable event; a flood ends at the deadline.
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    closes.push((id, CloseReason::PeerClosed));
}
