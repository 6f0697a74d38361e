//! SUBSCRIBE and UNSUBSCRIBE: to a queue's events, from a durable queue's position, as a
//! member of a group, or by pattern; each waits for its answer.

use super::*;

impl Client {
    /// Subscribes to one event of `queue` and waits for SUBSCRIBED. Only messages published
    /// after this are delivered. Subscribing twice is harmless.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for an empty queue or event name (use
    /// [`Client::subscribe_all`] for every event); [`ClientError::Encode`] for a name over
    /// 255 bytes; [`ClientError::Server`] with LIMIT_EXCEEDED past the server's
    /// `max_subscriptions`; [`ClientError::Timeout`]; the error that ended the connection.
    pub fn subscribe(
        &mut self,
        queue: impl AsRef<[u8]>,
        event: impl AsRef<[u8]>,
    ) -> Result<(), ClientError> {
        let event = named_event(event.as_ref())?;
        self.request_subscription(Op::Subscribe, queue.as_ref(), Some(event), None)
            .map(|_| ())
    }

    /// Joins the competing-consumer group `group` of `queue` (every event with `event: None`)
    /// and waits for SUBSCRIBED: each message of the queue goes to one member of the group,
    /// which must ack it within the queue's `ack_deadline_ms` (protocol.md §Groups).
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] unless the client connected with
    /// [`ClientOptions::extensions`] set, or for an empty name; otherwise as
    /// [`Client::subscribe`].
    pub fn subscribe_group(
        &mut self,
        queue: impl AsRef<[u8]>,
        event: Option<&[u8]>,
        group: impl AsRef<[u8]>,
    ) -> Result<(), ClientError> {
        self.request_group(Op::Subscribe, queue.as_ref(), event, group.as_ref())
    }

    /// Leaves the group joined with [`Client::subscribe_group`] and waits for UNSUBSCRIBED.
    ///
    /// # Errors
    /// As [`Client::subscribe_group`].
    pub fn unsubscribe_group(
        &mut self,
        queue: impl AsRef<[u8]>,
        event: Option<&[u8]>,
        group: impl AsRef<[u8]>,
    ) -> Result<(), ClientError> {
        self.request_group(Op::Unsubscribe, queue.as_ref(), event, group.as_ref())
    }

    pub(super) fn request_group(
        &mut self,
        op: Op,
        queue: &[u8],
        event: Option<&[u8]>,
        group: &[u8],
    ) -> Result<(), ClientError> {
        if self.session.welcome.reconnect_keep_alive_ms.is_none() {
            let text = "groups need ClientOptions::extensions";
            return Err(ClientError::InvalidArgument(text));
        }
        if group.is_empty() || event == Some(&[][..]) {
            return Err(ClientError::InvalidArgument("empty group or event name"));
        }
        let sub = Subscription {
            queue,
            event,
            group: Some(group),
            is_pattern: false,
            start: None,
        };
        self.request(op, sub).map(|_| ())
    }

    /// Subscribes to every queue matching `pattern` (one event, or every event with `event:
    /// None`), queues created later included, and waits for SUBSCRIBED. Levels are separated
    /// by `.`; a level `*` matches one level, a last level `>` one or more (protocol.md
    /// §Patterns). Each message reaches this session once however many subscriptions match.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] unless the client connected with
    /// [`ClientOptions::extensions`] set, or for an empty event name; the server refuses a
    /// malformed pattern with INVALID_NAME; otherwise as [`Client::subscribe`].
    pub fn subscribe_pattern(
        &mut self,
        pattern: impl AsRef<[u8]>,
        event: Option<&[u8]>,
    ) -> Result<(), ClientError> {
        self.request_pattern(Op::Subscribe, pattern.as_ref(), event)
    }

    /// Removes the subscription made with [`Client::subscribe_pattern`] with the same pattern
    /// and event, and waits for UNSUBSCRIBED.
    ///
    /// # Errors
    /// As [`Client::subscribe_pattern`].
    pub fn unsubscribe_pattern(
        &mut self,
        pattern: impl AsRef<[u8]>,
        event: Option<&[u8]>,
    ) -> Result<(), ClientError> {
        self.request_pattern(Op::Unsubscribe, pattern.as_ref(), event)
    }

    pub(super) fn request_pattern(
        &mut self,
        op: Op,
        pattern: &[u8],
        event: Option<&[u8]>,
    ) -> Result<(), ClientError> {
        if self.session.welcome.reconnect_keep_alive_ms.is_none() {
            let text = "patterns need ClientOptions::extensions";
            return Err(ClientError::InvalidArgument(text));
        }
        if pattern.is_empty() || event == Some(&[][..]) {
            return Err(ClientError::InvalidArgument("empty pattern or event name"));
        }
        let sub = Subscription {
            queue: pattern,
            event,
            group: None,
            is_pattern: true,
            start: None,
        };
        self.request(op, sub).map(|_| ())
    }

    /// Subscribes to every event of `queue` (ALL_EVENTS) and waits for SUBSCRIBED.
    ///
    /// # Errors
    /// As [`Client::subscribe`].
    pub fn subscribe_all(&mut self, queue: impl AsRef<[u8]>) -> Result<(), ClientError> {
        self.request_subscription(Op::Subscribe, queue.as_ref(), None, None)
            .map(|_| ())
    }

    /// Subscribes to every event of durable queue `queue`, starting in its retained messages
    /// at `start` (its `from` and `value`; protocol.md §SUBSCRIBE), and waits for SUBSCRIBED.
    /// Returns SUBSCRIBED's start block: the first position replayed and how many asked for
    /// are no longer retained.
    ///
    /// # Errors
    /// As [`Client::subscribe`].
    pub fn subscribe_all_from(
        &mut self,
        queue: impl AsRef<[u8]>,
        start: Start,
    ) -> Result<Start, ClientError> {
        let answer = self.request_subscription(Op::Subscribe, queue.as_ref(), None, Some(start))?;
        Ok(answer.unwrap_or(start))
    }

    /// Removes the subscription to one event of `queue` and waits for UNSUBSCRIBED. Messages
    /// already queued for this session are still delivered.
    ///
    /// # Errors
    /// As [`Client::subscribe`].
    pub fn unsubscribe(
        &mut self,
        queue: impl AsRef<[u8]>,
        event: impl AsRef<[u8]>,
    ) -> Result<(), ClientError> {
        let event = named_event(event.as_ref())?;
        self.request_subscription(Op::Unsubscribe, queue.as_ref(), Some(event), None)
            .map(|_| ())
    }

    /// Removes the ALL_EVENTS subscription to `queue` (not the named-event ones) and waits for
    /// UNSUBSCRIBED.
    ///
    /// # Errors
    /// As [`Client::subscribe`].
    pub fn unsubscribe_all(&mut self, queue: impl AsRef<[u8]>) -> Result<(), ClientError> {
        self.request_subscription(Op::Unsubscribe, queue.as_ref(), None, None)
            .map(|_| ())
    }

    pub(super) fn request_subscription(
        &mut self,
        op: Op,
        queue: &[u8],
        event: Option<&[u8]>,
        start: Option<Start>,
    ) -> Result<Option<Start>, ClientError> {
        let sub = Subscription {
            queue,
            event,
            group: None,
            is_pattern: false,
            start,
        };
        self.request(op, sub)
    }

    /// Sends SUBSCRIBE or UNSUBSCRIBE and waits for its answer; SUBSCRIBED's START block, if
    /// the request had one.
    pub(super) fn request(
        &mut self,
        op: Op,
        sub: Subscription<'_>,
    ) -> Result<Option<Start>, ClientError> {
        self.session.check_open()?;
        if sub.queue.is_empty() {
            return Err(ClientError::InvalidArgument("queue name is empty"));
        }
        let deadline = self.deadline();
        self.write_buf.push(self.session.max_frame_len, |out| {
            encode_subscription(op, &sub, out)
        })?;
        self.write_out()?;
        loop {
            match self.step(deadline)? {
                Some(Reply::Subscribed(echo)) if op == Op::Subscribe && echo.is(&sub) => {
                    return Ok(echo.start)
                }
                Some(Reply::Unsubscribed(echo)) if op == Op::Unsubscribe && echo.is(&sub) => {
                    return Ok(None)
                }
                _ => {}
            }
        }
    }
}
