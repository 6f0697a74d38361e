//! Subscriptions of a reconnecting client: kept here so that they are made again after a
//! LOST, and changed on the live connection.

use super::*;

impl ReconnectingClient {
    /// Subscribes to one event of `queue` and waits for SUBSCRIBED; made again on the new
    /// session after [`Event::Lost`].
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for an empty name, [`ClientError::Encode`] for one over
    /// 255 bytes, [`ClientError::Timeout`] past [`ClientOptions::timeout`], and the errors that
    /// end the client (see [What ends it](ReconnectingClient#what-ends-it)).
    pub fn subscribe(
        &mut self,
        queue: impl AsRef<[u8]>,
        event: impl AsRef<[u8]>,
    ) -> Result<(), ClientError> {
        let event = named_event(event.as_ref())?;
        self.change_subscription(Op::Subscribe, queue.as_ref(), Some(event))
    }

    /// Subscribes to every event of `queue` (ALL_EVENTS).
    ///
    /// # Errors
    /// As [`ReconnectingClient::subscribe`].
    pub fn subscribe_all(&mut self, queue: impl AsRef<[u8]>) -> Result<(), ClientError> {
        self.change_subscription(Op::Subscribe, queue.as_ref(), None)
    }

    /// Removes the subscription to one event of `queue`.
    ///
    /// # Errors
    /// As [`ReconnectingClient::subscribe`].
    pub fn unsubscribe(
        &mut self,
        queue: impl AsRef<[u8]>,
        event: impl AsRef<[u8]>,
    ) -> Result<(), ClientError> {
        let event = named_event(event.as_ref())?;
        self.change_subscription(Op::Unsubscribe, queue.as_ref(), Some(event))
    }

    /// Removes the ALL_EVENTS subscription to `queue`.
    ///
    /// # Errors
    /// As [`ReconnectingClient::subscribe`].
    pub fn unsubscribe_all(&mut self, queue: impl AsRef<[u8]>) -> Result<(), ClientError> {
        self.change_subscription(Op::Unsubscribe, queue.as_ref(), None)
    }

    /// Joins the competing-consumer group `group` of `queue` (see [`Client::subscribe_group`];
    /// needs [`ClientOptions::extensions`]). A resume keeps the membership on the server;
    /// after [`Event::Lost`] it is joined again on the new session.
    ///
    /// # Errors
    /// As [`Client::subscribe_group`], and the errors that end the client.
    pub fn subscribe_group(
        &mut self,
        queue: impl AsRef<[u8]>,
        event: Option<&[u8]>,
        group: impl AsRef<[u8]>,
    ) -> Result<(), ClientError> {
        let kept = KeptSubscription::new(queue.as_ref(), event, Some(group.as_ref()), false);
        self.change_extended(Op::Subscribe, kept)
    }

    /// Leaves a group joined with [`ReconnectingClient::subscribe_group`].
    ///
    /// # Errors
    /// As [`ReconnectingClient::subscribe_group`].
    pub fn unsubscribe_group(
        &mut self,
        queue: impl AsRef<[u8]>,
        event: Option<&[u8]>,
        group: impl AsRef<[u8]>,
    ) -> Result<(), ClientError> {
        let kept = KeptSubscription::new(queue.as_ref(), event, Some(group.as_ref()), false);
        self.change_extended(Op::Unsubscribe, kept)
    }

    /// Subscribes to every queue matching `pattern` (see [`Client::subscribe_pattern`]; needs
    /// [`ClientOptions::extensions`]); made again on the new session after [`Event::Lost`].
    ///
    /// # Errors
    /// As [`Client::subscribe_pattern`], and the errors that end the client.
    pub fn subscribe_pattern(
        &mut self,
        pattern: impl AsRef<[u8]>,
        event: Option<&[u8]>,
    ) -> Result<(), ClientError> {
        let kept = KeptSubscription::new(pattern.as_ref(), event, None, true);
        self.change_extended(Op::Subscribe, kept)
    }

    /// Removes a subscription made with [`ReconnectingClient::subscribe_pattern`].
    ///
    /// # Errors
    /// As [`ReconnectingClient::subscribe_pattern`].
    pub fn unsubscribe_pattern(
        &mut self,
        pattern: impl AsRef<[u8]>,
        event: Option<&[u8]>,
    ) -> Result<(), ClientError> {
        let kept = KeptSubscription::new(pattern.as_ref(), event, None, true);
        self.change_extended(Op::Unsubscribe, kept)
    }

    pub(super) fn change_extended(
        &mut self,
        op: Op,
        kept: KeptSubscription,
    ) -> Result<(), ClientError> {
        if !self.client_options.extensions {
            let text = "groups and patterns need ClientOptions::extensions";
            return Err(ClientError::InvalidArgument(text));
        }
        if kept.queue.is_empty()
            || kept.event.as_deref() == Some(&[][..])
            || kept.group.as_deref() == Some(&[][..])
        {
            return Err(ClientError::InvalidArgument("empty name"));
        }
        let deadline = self.deadline();
        self.with_link(deadline, |client| client.request(op, kept.view()))?;
        self.record_subscription(op, kept);
        Ok(())
    }

    /// Records a subscription change the server confirmed; a LOST during the wait
    /// re-subscribes the others and the retry makes this one.
    pub(super) fn record_subscription(&mut self, op: Op, kept: KeptSubscription) {
        let known = self.subscriptions.iter().position(|k| *k == kept);
        match (op, known) {
            (Op::Subscribe, None) => self.subscriptions.push(kept),
            (Op::Unsubscribe, Some(i)) => {
                self.subscriptions.remove(i);
            }
            _ => {}
        }
    }

    pub(super) fn change_subscription(
        &mut self,
        op: Op,
        queue: &[u8],
        event: Option<&[u8]>,
    ) -> Result<(), ClientError> {
        if queue.is_empty() {
            return Err(ClientError::InvalidArgument("queue name is empty"));
        }
        if queue.len() > MAX_NAME_LEN || event.is_some_and(|e| e.len() > MAX_NAME_LEN) {
            return Err(ClientError::Encode(EncodeError::NameTooLong));
        }
        let deadline = self.deadline();
        self.with_link(deadline, |client| {
            client
                .request_subscription(op, queue, event, None)
                .map(|_| ())
        })?;
        self.record_subscription(op, KeptSubscription::new(queue, event, None, false));
        Ok(())
    }
}
