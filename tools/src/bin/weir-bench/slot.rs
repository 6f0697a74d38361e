//! One link of a worker and what it is doing: publishing (within its bounds) or receiving
//! (tracking order, loss and latency), and how its turn ends.

use super::*;

pub(super) struct Slot {
    pub(super) link: Link,
    pub(super) is_ready: bool,
    pub(super) is_subscribed: bool,
    pub(super) ended: Option<Ended>,
    pub(super) state: State,
}

pub(super) enum State {
    Publisher(Publishing),
    /// Boxed: its histograms make it several times the size of a publisher.
    Subscriber(Box<Receiving>),
}

pub(super) struct Publishing {
    pub(super) spec: PublisherSpec,
    pub(super) payload: Vec<u8>,
    pub(super) published: u64,
    pub(super) is_done: bool,
    pub(super) last_publish_at: Duration,
    /// Messages since the shared counter was last updated and the lag checked.
    pub(super) unreported: u64,
    /// With `spec.confirm_latency_after`: what times confirmations.
    pub(super) confirms: Option<Box<ConfirmTiming>>,
}

/// Publish-to-confirmation timing: (due, sent) of each unconfirmed message in publish order,
/// and the histograms (corrected, raw) in ns.
pub(super) struct ConfirmTiming {
    pub(super) unconfirmed: VecDeque<(u64, u64)>,
    /// Confirmed messages so far (the adapter's count when last looked at).
    pub(super) confirmed: u64,
    pub(super) corrected: Histogram<u64>,
    pub(super) raw: Histogram<u64>,
}

pub(super) struct Receiving {
    pub(super) spec: SubscriberSpec,
    pub(super) tracker: Tracker,
    pub(super) latency: Option<(Histogram<u64>, Histogram<u64>)>,
    pub(super) last_message_at: Option<Duration>,
    pub(super) closed_reason: Option<String>,
    pub(super) ended_at: Duration,
}

/// What stopped a publisher's production this turn.
pub(super) enum Blocked {
    /// More can be produced right away (the batch limit was reached).
    No,
    /// Waiting for the broker: confirmations or socket space.
    Broker,
    /// Waiting for the slowest subscriber.
    Lag,
    /// Open loop: the next message is due then.
    Until(Instant),
    Done,
}

impl Slot {
    pub(super) fn is_set_up(&self) -> bool {
        self.is_ready && (self.is_subscribed || matches!(self.state, State::Publisher(_)))
    }

    pub(super) fn on_ready(&mut self) {
        self.is_ready = true;
        if matches!(self.state, State::Subscriber(_)) {
            self.link.adapter.subscribe(&mut self.link.out);
        }
    }

    /// Bytes this link may read now; 0: not yet (a slow consumer ahead of its rate).
    pub(super) fn read_allowance(&self, start: Instant, now: Instant) -> usize {
        let State::Subscriber(receiving) = &self.state else {
            return READ_BUDGET_BYTES;
        };
        let Some(rate) = receiving.spec.read_rate else {
            return READ_BUDGET_BYTES;
        };
        let allowed = (now - start).as_secs_f64() * rate;
        if (receiving.tracker.tally.received as f64) < allowed {
            SLOW_READ_BYTES
        } else {
            0
        }
    }

    /// Reads and handles what arrived; returns the bytes read.
    pub(super) fn read(&mut self, budget: usize, shared: &Shared, start: Instant) -> usize {
        let Slot { link, state, .. } = self;
        let now = Instant::now();
        let now_ns = (now - start).as_nanos() as u64;
        let mut closed = None;
        let result = match state {
            State::Publisher(publishing) => {
                let result = link.read(budget, &mut |event| {
                    if let Event::Closed(reason) = event {
                        closed = Some(reason);
                    }
                });
                if let Some(confirms) = &mut publishing.confirms {
                    let after_ns = publishing
                        .spec
                        .confirm_latency_after
                        .unwrap_or_default()
                        .as_nanos() as u64;
                    confirms.on_confirmed(link.adapter.confirmed(), now_ns, after_ns);
                }
                result
            }
            State::Subscriber(receiving) => {
                let before = receiving.tracker.tally.received;
                let result = link.read(budget, &mut |event| match event {
                    Event::Message(payload) => receiving.on_message(payload, start, now_ns),
                    Event::Closed(reason) => closed = Some(reason),
                    Event::Ready | Event::Subscribed => {}
                });
                let received = receiving.tracker.tally.received;
                if received > before {
                    receiving.last_message_at = Some(now - start);
                    shared.delivered[receiving.spec.index].store(received, Ordering::Relaxed);
                    if receiving.spec.counts_for_lag {
                        shared.received[receiving.spec.index].store(received, Ordering::Relaxed);
                    }
                }
                if closed.is_some() {
                    receiving.closed_reason = closed.clone();
                }
                result
            }
        };
        let bytes = result.as_ref().map_or(0, |read| read.bytes);
        match (result, closed) {
            (_, Some(reason)) => self.end(Ended::Closed(reason), shared, start),
            (Ok(read), None) if read.is_eof => {
                let reason = "connection closed without a reason".to_owned();
                self.end(Ended::Closed(reason), shared, start);
            }
            (Ok(_), None) => {}
            (Err(error), None) => self.end(Ended::Failed(error.to_string()), shared, start),
        }
        bytes
    }

    pub(super) fn decide_end(
        &self,
        all_published: Option<&[u64]>,
        publishers_done_at: Option<Instant>,
        is_stopping: bool,
        now: Instant,
        start: Instant,
        settings: &RunSettings,
    ) -> Option<Ended> {
        if self.ended.is_some() {
            return None;
        }
        match &self.state {
            State::Publisher(publishing) => {
                let confirmed = self.link.adapter.confirmed();
                if publishing.is_done && confirmed >= publishing.published {
                    Some(Ended::Complete)
                } else if now >= start + settings.timeout {
                    Some(Ended::TimedOut)
                } else if is_stopping {
                    // Asked to stop: confirmations still owed are not waited for.
                    Some(Ended::Stopped)
                } else {
                    None
                }
            }
            State::Subscriber(receiving) => {
                if let Some(sent) = all_published {
                    if receiving.spec.expects_messages && receiving.tracker.has_all(sent) {
                        return Some(Ended::Complete);
                    }
                }
                if now >= start + settings.timeout {
                    return Some(Ended::TimedOut);
                }
                if is_stopping {
                    return Some(Ended::Stopped);
                }
                let done_at = publishers_done_at?;
                let last = receiving
                    .last_message_at
                    .map_or(done_at, |at| (start + at).max(done_at));
                (receiving.spec.expects_messages && now - last > settings.idle_timeout)
                    .then_some(Ended::Idle)
            }
        }
    }

    pub(super) fn end(&mut self, ended: Ended, shared: &Shared, start: Instant) {
        if self.ended.is_some() {
            return;
        }
        let is_open = !ended.is_closed_by_broker() && !matches!(ended, Ended::Failed(_));
        match &mut self.state {
            State::Publisher(publishing) => {
                publishing.is_done = true;
                shared.published[publishing.spec.index]
                    .store(publishing.published, Ordering::Release);
                shared.publishers_done.fetch_add(1, Ordering::AcqRel);
            }
            State::Subscriber(receiving) => {
                shared.received[receiving.spec.index].store(u64::MAX, Ordering::Relaxed);
                receiving.ended_at = start.elapsed();
            }
        }
        if is_open {
            self.link.adapter.close(&mut self.link.out);
            // Best effort: the run is over for this link either way.
            let _ = self.link.flush();
        }
        self.ended = Some(ended);
    }
}

impl Publishing {
    /// Produces messages until a bound stops it or a batch is done.
    pub(super) fn produce(
        &mut self,
        link: &mut Link,
        shared: &Shared,
        start: Instant,
        now: Instant,
    ) -> Blocked {
        let since_start = now - start;
        let spec = &self.spec;
        for _ in 0..PRODUCE_BATCH {
            let is_over = spec.count.is_some_and(|count| self.published >= count)
                || spec.duration.is_some_and(|d| since_start >= d);
            if is_over && !self.is_done {
                self.is_done = true;
                shared.published[spec.index].store(self.published, Ordering::Release);
                link.adapter.request_confirm(&mut link.out);
            }
            if self.is_done {
                return Blocked::Done;
            }
            if link.unsent() >= MAX_UNSENT_BYTES {
                return Blocked::Broker;
            }
            if self.published - link.adapter.confirmed() >= spec.max_unconfirmed {
                link.adapter.request_confirm(&mut link.out);
                return Blocked::Broker;
            }
            if self.unreported >= LAG_CHECK_EVERY {
                shared.published[spec.index].store(self.published, Ordering::Relaxed);
                if shared.lag() > shared.settings.max_lag {
                    // `unreported` stays due, so the next turn checks again before it
                    // publishes anything: the bound holds however often this is polled.
                    link.adapter.request_confirm(&mut link.out);
                    return Blocked::Lag;
                }
                self.unreported = 0;
            }
            let sent_ns = since_start.as_nanos() as u64;
            let due_ns = match spec.rate {
                Some(rate) => {
                    let due_ns = (self.published as f64 * 1e9 / rate) as u64;
                    if due_ns > sent_ns {
                        link.adapter.request_confirm(&mut link.out);
                        return Blocked::Until(start + Duration::from_nanos(due_ns));
                    }
                    due_ns
                }
                None => sent_ns,
            };
            self.published += 1;
            self.unreported += 1;
            if let Some(confirms) = &mut self.confirms {
                confirms.unconfirmed.push_back((due_ns, sent_ns));
            }
            let stamp = Stamp {
                publisher: spec.index,
                counter: self.published,
                due_ns: Some(due_ns),
                sent_ns: Some(sent_ns),
            };
            write_stamp(&mut self.payload, &stamp);
            link.adapter.publish(&self.payload, &mut link.out);
            self.last_publish_at = since_start;
        }
        Blocked::No
    }
}

impl ConfirmTiming {
    /// The broker has confirmed `confirmed` messages in all (cumulative) at `now_ns`.
    pub(super) fn on_confirmed(&mut self, confirmed: u64, now_ns: u64, after_ns: u64) {
        while self.confirmed < confirmed {
            let Some((due, sent)) = self.unconfirmed.pop_front() else {
                break;
            };
            self.confirmed += 1;
            if due >= after_ns {
                record(&mut self.corrected, now_ns.saturating_sub(due));
                record(&mut self.raw, now_ns.saturating_sub(sent));
            }
        }
    }
}

impl Receiving {
    pub(super) fn on_message(&mut self, payload: &[u8], start: Instant, batch_ns: u64) {
        let stamp = read_stamp(payload);
        let is_new = self.tracker.record(stamp);
        let after_ns = self.spec.latency_after.unwrap_or_default().as_nanos() as u64;
        if let (true, Some((corrected, raw)), Some(stamp)) = (is_new, &mut self.latency, stamp) {
            if let (Some(due), Some(sent)) = (stamp.due_ns, stamp.sent_ns) {
                if due >= after_ns {
                    // Per message, not per read: one read can take a while to decode.
                    let now_ns = (start.elapsed().as_nanos() as u64).max(batch_ns);
                    record(corrected, now_ns.saturating_sub(due));
                    record(raw, now_ns.saturating_sub(sent));
                }
            }
        }
    }
}
