//! Pattern subscriptions (issue #14): not implemented yet; a PATTERN SUBSCRIBE is refused.

use super::{Broker, ConnId, SessionKey};
use crate::protocol::{ErrorCode, Subscription};

impl Broker {
    /// SUBSCRIBE with PATTERN.
    pub(super) fn handle_subscribe_pattern(
        &mut self,
        conn: ConnId,
        _key: SessionKey,
        _sub: &Subscription<'_>,
    ) {
        let text = "pattern subscriptions are not supported yet";
        self.fail(conn, ErrorCode::MalformedFrame, 0, text);
    }

    /// UNSUBSCRIBE with PATTERN: nothing to remove.
    pub(super) fn handle_unsubscribe_pattern(&mut self, _key: SessionKey, _sub: &Subscription<'_>) {
    }
}
