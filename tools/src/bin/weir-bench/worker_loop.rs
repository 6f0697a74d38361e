//! One worker thread's loop: connect and set up its links, meet at the barrier, then turn
//! after turn produce, read, decide ends and poll (the checklist in `worker.rs`).

use super::*;

impl Worker {
    pub(super) fn new(plans: Vec<LinkPlan>, shared: Arc<Shared>) -> Worker {
        Worker {
            // Cannot fail short of the process running out of file descriptors at startup.
            poll: Poll::new().expect("epoll instance"),
            plans,
            slots: Vec::new(),
            shared,
        }
    }

    pub(super) fn run(mut self) -> WorkerReport {
        let setup = self.set_up();
        if let Err(error) = setup {
            if let Ok(mut slot) = self.shared.setup_error.lock() {
                slot.get_or_insert(error.to_string());
            }
        }
        self.shared.barrier.wait();
        self.shared.barrier.wait();
        let start = *self
            .shared
            .start
            .get()
            .expect("set before the second barrier");
        if self.shared.stop.load(Ordering::Acquire) {
            return WorkerReport::default();
        }
        self.drive(start);
        self.report()
    }

    /// Connects every link (at most [`MAX_CONNECTING`] at a time, so a listen backlog is not
    /// flooded), completes handshakes and subscriptions.
    pub(super) fn set_up(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut plans = std::mem::take(&mut self.plans).into_iter();
        let mut pending = 0usize;
        let mut last_progress = Instant::now();
        loop {
            while pending < MAX_CONNECTING {
                let Some(plan) = plans.next() else { break };
                let mut link =
                    Link::connect(plan.address, plan.source, plan.adapter, plan.read_buf_bytes)?;
                let token = Token(self.slots.len());
                self.poll.registry().register(
                    &mut link.stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                let mut is_ready = false;
                link.adapter.open(&mut link.out, &mut |event| {
                    is_ready |= event == Event::Ready
                });
                let state = match plan.role {
                    Role::Publisher(spec) => State::Publisher(Publishing {
                        confirms: spec.confirm_latency_after.map(|_| {
                            Box::new(ConfirmTiming {
                                unconfirmed: VecDeque::with_capacity(
                                    spec.max_unconfirmed.min(1 << 20) as usize,
                                ),
                                confirmed: 0,
                                corrected: new_histogram(),
                                raw: new_histogram(),
                            })
                        }),
                        payload: vec![0xA5; spec.payload_len.max(TAG_LEN)],
                        spec,
                        published: 0,
                        is_done: false,
                        last_publish_at: Duration::ZERO,
                        unreported: 0,
                    }),
                    Role::Subscriber(spec) => State::Subscriber(Box::new(Receiving {
                        tracker: Tracker::new(self.shared.settings.publishers),
                        latency: spec
                            .latency_after
                            .map(|_| (new_histogram(), new_histogram())),
                        spec,
                        last_message_at: None,
                        closed_reason: None,
                        ended_at: Duration::ZERO,
                    })),
                };
                let mut slot = Slot {
                    link,
                    is_ready: false,
                    is_subscribed: false,
                    ended: None,
                    state,
                };
                if is_ready {
                    slot.on_ready();
                }
                if slot.is_set_up() {
                    self.shared.established.fetch_add(1, Ordering::Relaxed);
                } else {
                    pending += 1;
                }
                self.slots.push(slot);
            }
            for slot in &mut self.slots {
                slot.link.flush()?;
            }
            if pending == 0 {
                return Ok(());
            }
            self.poll.poll(&mut events, Some(SETUP_POLL))?;
            mark_ready(&mut self.slots, &events);
            for slot in &mut self.slots {
                if !slot.link.is_readable || slot.is_set_up() {
                    continue;
                }
                let mut closed = None;
                let (mut ready, mut subscribed) = (false, false);
                let read = slot.link.read(usize::MAX, &mut |event| match event {
                    Event::Ready => ready = true,
                    Event::Subscribed => subscribed = true,
                    Event::Closed(reason) => closed = Some(reason),
                    Event::Message(_) => {}
                })?;
                if let Some(reason) = closed {
                    return Err(io::Error::other(format!("closed during setup: {reason}")));
                }
                if read.is_eof {
                    return Err(io::Error::other("connection closed during setup"));
                }
                if ready {
                    slot.on_ready();
                }
                slot.is_subscribed |= subscribed;
                if slot.is_set_up() {
                    pending -= 1;
                    last_progress = Instant::now();
                    self.shared.established.fetch_add(1, Ordering::Relaxed);
                }
            }
            if last_progress.elapsed() > SETUP_TIMEOUT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{pending} connections not set up after {SETUP_TIMEOUT:?}"),
                ));
            }
        }
    }

    pub(super) fn drive(&mut self, start: Instant) {
        let shared = Arc::clone(&self.shared);
        let settings = &shared.settings;
        let deadline = start + settings.timeout;
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut publishers_done_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let is_stopping = shared.stop.load(Ordering::Acquire) || now >= deadline;
            let mut wait = if settings.is_busy {
                Duration::ZERO
            } else {
                IDLE_POLL
            };
            for slot in &mut self.slots {
                if slot.ended.is_some() {
                    continue;
                }
                let State::Publisher(publishing) = &mut slot.state else {
                    continue;
                };
                let blocked = if is_stopping {
                    publishing.is_done = true;
                    Blocked::Done
                } else {
                    publishing.produce(&mut slot.link, &shared, start, now)
                };
                wait = wait.min(match blocked {
                    Blocked::No => Duration::ZERO,
                    Blocked::Lag => LAG_POLL,
                    Blocked::Until(due) => due.saturating_duration_since(now),
                    Blocked::Broker | Blocked::Done => wait,
                });
                if let Err(error) = slot.link.flush() {
                    slot.end(Ended::Failed(error.to_string()), &shared, start);
                }
            }
            let all_published = shared.all_published();
            if all_published.is_some() && publishers_done_at.is_none() {
                publishers_done_at = Some(now);
            }
            for slot in &mut self.slots {
                if slot.ended.is_some() {
                    continue;
                }
                let allowance = slot.read_allowance(start, now);
                if allowance == 0 {
                    wait = wait.min(LAG_POLL);
                } else if slot.link.is_readable {
                    let bytes = slot.read(allowance, &shared, start);
                    // More to read, or a publisher that may produce again (confirmations).
                    if slot.link.is_readable
                        || (bytes > 0 && matches!(slot.state, State::Publisher(_)))
                    {
                        wait = Duration::ZERO;
                    }
                }
                if slot.ended.is_none() {
                    if let Err(error) = slot.link.flush() {
                        slot.end(Ended::Failed(error.to_string()), &shared, start);
                    }
                }
                let ended = slot.decide_end(
                    all_published.as_deref(),
                    publishers_done_at,
                    is_stopping,
                    now,
                    start,
                    settings,
                );
                if let Some(ended) = ended {
                    slot.end(ended, &shared, start);
                }
            }
            if self.slots.iter().all(|slot| slot.ended.is_some()) {
                self.linger();
                return;
            }
            if let Err(error) = self.poll.poll(&mut events, Some(wait)) {
                if error.kind() != io::ErrorKind::Interrupted {
                    for slot in &mut self.slots {
                        slot.end(Ended::Failed(error.to_string()), &shared, start);
                    }
                    return;
                }
            }
            mark_ready(&mut self.slots, &events);
        }
    }

    /// Once every link has ended: sends what the open ones still hold, above all the BYE
    /// queued behind a stopped publisher's unsent messages, then shuts the sending side
    /// (every broker closes on that EOF) and reads, discarding, until the broker
    /// closes, for at most [`LINGER`]. Without this the broker may see a reset instead of the
    /// BYE (closing a socket with unread input sends RST, which discards what it had not
    /// delivered) and keep the session detached, counted as a subscriber.
    pub(super) fn linger(&mut self) {
        let until = Instant::now() + LINGER;
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut is_done: Vec<bool> = self
            .slots
            .iter()
            .map(|slot| {
                slot.ended
                    .as_ref()
                    .is_none_or(|e| e.is_closed_by_broker() || matches!(e, Ended::Failed(_)))
            })
            .collect();
        let mut is_shut = vec![false; self.slots.len()];
        while is_done.iter().any(|done| !done) && Instant::now() < until {
            let slots = self.slots.iter_mut().zip(&mut is_done).zip(&mut is_shut);
            for ((slot, is_done), is_shut) in slots {
                if *is_done {
                    continue;
                }
                let mut result = Ok(false);
                if !*is_shut {
                    match slot.link.shut_write() {
                        Ok(is_sent) => *is_shut = is_sent,
                        Err(e) => result = Err(e),
                    }
                }
                if result.is_ok() && slot.link.is_readable {
                    result = slot
                        .link
                        .read(READ_BUDGET_BYTES, &mut |_| {})
                        .map(|read| read.is_eof);
                }
                // EOF: the broker closed after its GOODBYE; an error: nothing more to do.
                *is_done = result.unwrap_or(true);
            }
            let _ = self.poll.poll(&mut events, Some(LINGER_POLL));
            mark_ready(&mut self.slots, &events);
        }
    }

    pub(super) fn report(self) -> WorkerReport {
        let mut report = WorkerReport::default();
        for slot in self.slots {
            let ended = slot.ended.unwrap_or(Ended::Stopped);
            match slot.state {
                State::Publisher(p) => report.publishers.push(PublisherReport {
                    index: p.spec.index,
                    published: p.published,
                    confirmed: slot.link.adapter.confirmed(),
                    last_publish_at: p.last_publish_at,
                    confirm_latency: p.confirms.map(|c| (c.corrected, c.raw)),
                    ended,
                }),
                State::Subscriber(r) => report.subscribers.push(SubscriberReport {
                    index: r.spec.index,
                    tracker: r.tracker,
                    latency: r.latency,
                    last_message_at: r.last_message_at,
                    ended,
                    ended_at: r.ended_at,
                }),
            }
        }
        report
    }
}

pub(super) fn mark_ready(slots: &mut [Slot], events: &Events) {
    for event in events {
        let Some(slot) = slots.get_mut(event.token().0) else {
            continue;
        };
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            slot.link.is_readable = true;
        }
        if event.is_writable() {
            slot.link.is_writable = true;
        }
    }
}
