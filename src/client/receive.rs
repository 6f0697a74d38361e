//! Reading: one step of the socket at a time, replies matched to requests, buffered
//! deliveries handed out in order.

use super::*;

impl Client {
    pub(super) fn recv_until(&mut self, deadline: Deadline) -> Result<Event, ClientError> {
        if self.session.is_open() {
            self.write_out()?;
        }
        loop {
            if let Some(event) = self.session.inbox.pop_front() {
                return Ok(event);
            }
            self.step(deadline)?;
        }
    }

    /// Handles one frame, reading until one is complete or `deadline` passes.
    pub(super) fn step(&mut self, deadline: Deadline) -> Result<Option<Reply>, ClientError> {
        self.session.check_open()?;
        loop {
            match decode(self.read_buf.data(), self.session.decode_limit) {
                Ok(Some((frame, used))) => {
                    let result = self.session.handle(frame, &mut self.write_buf);
                    self.read_buf.consume(used);
                    return result;
                }
                Ok(None) => self.fill(deadline.remaining()?)?,
                Err(e) => {
                    let cause = CloseCause::decode(e, self.read_buf.data());
                    return Err(self.session.close(cause));
                }
            }
        }
    }

    /// Passes the complete DELIVER frames buffered to `f` and handles the other frames, without
    /// reading. `earlier` deliveries were already passed by this call: if a fatal error
    /// follows them, it is left for the next call.
    pub(super) fn deliver_buffered(
        &mut self,
        f: &mut impl FnMut(&Deliver<'_>),
        earlier: usize,
    ) -> Result<usize, ClientError> {
        let mut count = 0;
        loop {
            match decode(self.read_buf.data(), self.session.decode_limit) {
                Ok(Some((Frame::Deliver(deliver), used))) => {
                    self.session.handle_deliver(&deliver);
                    f(&deliver);
                    count += 1;
                    self.read_buf.consume(used);
                }
                Ok(Some((frame, used))) => {
                    let result = self.session.handle(frame, &mut self.write_buf);
                    self.read_buf.consume(used);
                    match result {
                        Ok(_) => {}
                        Err(e) if e.is_fatal() && earlier + count > 0 => return Ok(count),
                        Err(e) => return Err(e),
                    }
                }
                Ok(None) => return Ok(count),
                Err(e) => {
                    let e = self
                        .session
                        .close(CloseCause::decode(e, self.read_buf.data()));
                    return if earlier + count > 0 {
                        Ok(count)
                    } else {
                        Err(e)
                    };
                }
            }
        }
    }
}
