//! Taking what the link received: events in order, duplicates dropped, receipts applied.

use self::super::link::heartbeat_interval;
use super::*;
use crate::protocol::frame::DELIVER_REDELIVERED;
use crate::protocol::Deliver;

impl ReconnectingClient {
    /// Takes in, without waiting, what has arrived (receipts, PINGs, deliveries).
    pub(super) fn take_in(&mut self) -> Result<(), ClientError> {
        let Link::Up(client) = &mut self.link else {
            return self.ensure_up(Some(Instant::now())).map(|_| ());
        };
        let (inbox, stats) = (&mut self.inbox, &mut self.stats);
        let result = client.poll_deliveries(Some(Duration::ZERO), |d| accept(inbox, stats, d));
        self.take_receipts();
        match result {
            Ok(_) => Ok(()),
            Err(ClientError::Timeout) => {
                self.lose_link(String::from("a write made no progress"));
                Ok(())
            }
            Err(e) => self.recover(e),
        }
    }

    pub(super) fn recv_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Event>, ClientError> {
        loop {
            if let Some(event) = self.pop_event() {
                return Ok(Some(event));
            }
            if !self.ensure_up(deadline)? {
                return Ok(None);
            }
            if !self.inbox.items.is_empty() {
                continue;
            }
            let Link::Up(client) = &mut self.link else {
                continue;
            };
            let mut result = Ok(0);
            if self.consumed_seq > self.acked_seq {
                result = client.ack(self.consumed_seq).map(|()| 0);
                if result.is_ok() {
                    self.acked_seq = self.consumed_seq;
                }
            }
            if result.is_ok() {
                let now = Instant::now();
                let mut wait = heartbeat_interval(&self.welcome).map(|i| i / 4);
                if let Some(deadline) = deadline {
                    let left = deadline.saturating_duration_since(now);
                    wait = Some(wait.map_or(left, |w| w.min(left)));
                }
                let wait = wait.map(|w| if w.is_zero() { w } else { w.max(MIN_WAIT) });
                let (inbox, stats) = (&mut self.inbox, &mut self.stats);
                result = client.poll_deliveries(wait, |d| accept(inbox, stats, d));
            }
            self.take_receipts();
            match result {
                Ok(_) => {}
                Err(ClientError::Timeout) => {
                    self.lose_link(String::from("a write made no progress"));
                }
                Err(e) => self.recover(e)?,
            }
            if self.inbox.items.is_empty() {
                self.check_liveness()?;
                if deadline.is_some_and(|at| Instant::now() >= at) {
                    return Ok(None);
                }
            }
        }
    }

    pub(super) fn take_receipts(&mut self) {
        if let Link::Up(client) = &self.link {
            self.outbound.receipted(client.last_receipt());
        }
    }

    pub(super) fn pop_event(&mut self) -> Option<Event> {
        Some(match self.inbox.items.pop_front()? {
            Item::Deliver {
                delivery,
                generation,
            } => {
                if generation == self.inbox.generation {
                    self.consumed_seq = self.consumed_seq.max(delivery.seq);
                }
                Event::Deliver(delivery)
            }
            Item::Notice(event) => event,
        })
    }
}

/// Takes one DELIVER into the inbox unless its seq was received before.
pub(super) fn accept(inbox: &mut Inbox, stats: &mut ReconnectStats, deliver: &Deliver<'_>) {
    stats.deliveries += 1;
    if deliver.flags & DELIVER_REDELIVERED != 0 {
        stats.redelivered += 1;
    }
    if deliver.seq <= inbox.last_delivery_seq {
        stats.duplicates_dropped += 1;
        return;
    }
    if deliver.seq != inbox.last_delivery_seq + 1 {
        stats.seq_gaps += 1;
    }
    inbox.last_delivery_seq = deliver.seq;
    inbox.items.push_back(Item::Deliver {
        delivery: Delivery::from_deliver(deliver),
        generation: inbox.generation,
    });
}
