//! Workers: each a thread with one mio `Poll` multiplexing many [`Link`]s, each link a
//! publisher or a subscriber. Every scenario and every target runs through this one loop, so
//! a hundred subscribers cost a few threads, not a hundred, and the load generator measures
//! the broker rather than its own scheduler.
//!
//! A run: every worker connects and sets up its links (handshake, subscription confirmed),
//! all meet at a barrier with the main thread, which then fixes the start time, and the
//! publishers begin. One turn of a worker's loop:
//! 1. each publisher produces while the bounds allow: `count` or `duration`, the schedule
//!    (open loop), `max_unconfirmed` (broker confirmations), `max_lag` (how far the slowest
//!    subscriber that counts is behind all publishers together) and an unsent-bytes cap;
//! 2. every link with remembered readability is read, up to a byte budget (a rate-limited
//!    subscriber only as far as its rate allows), and its replies (acks, pongs) flushed;
//! 3. ends are decided: complete, closed by the broker, idle, stopped, timed out;
//! 4. poll, with no wait in busy mode or while work is left, else until the next due time.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};

use crate::accounting::{read_stamp, write_stamp, Stamp, Tracker, TAG_LEN};
use crate::histogram::{new_histogram, record};
use crate::link::Link;
use crate::target::{Adapter, Event};

#[path = "slot.rs"]
mod slot;
#[path = "worker_loop.rs"]
mod worker_loop;

use slot::{Blocked, ConfirmTiming, Publishing, Receiving, Slot, State};

/// What one link does in a run.
#[derive(Clone, Debug)]
pub(crate) enum Role {
    Publisher(PublisherSpec),
    Subscriber(SubscriberSpec),
}

#[derive(Clone, Debug)]
pub(crate) struct PublisherSpec {
    /// Publisher number, 0.. (the stamp's publisher field).
    pub(crate) index: usize,
    /// Stop after this many messages...
    pub(crate) count: Option<u64>,
    /// ...or this long after the start, whichever comes first.
    pub(crate) duration: Option<Duration>,
    /// Open loop: messages per second on a fixed schedule. `None`: as fast as allowed.
    pub(crate) rate: Option<f64>,
    pub(crate) payload_len: usize,
    pub(crate) max_unconfirmed: u64,
    /// Time each message from its due time and its send time to the broker's confirmation
    /// (Weir: the RECEIPT covering it), for messages due this long after the start or later.
    pub(crate) confirm_latency_after: Option<Duration>,
}

#[derive(Clone, Debug)]
pub(crate) struct SubscriberSpec {
    /// Subscriber number, 0..
    pub(crate) index: usize,
    /// Whether publishers wait for this subscriber (`max_lag`).
    pub(crate) counts_for_lag: bool,
    /// Whether it waits for messages at all (false: an idle connection, ended by `stop`).
    pub(crate) expects_messages: bool,
    /// Read at most this many messages per second (a slow consumer).
    pub(crate) read_rate: Option<f64>,
    /// Record latency histograms for messages due this long after the start or later (a
    /// warm-up is left out); `None`: no histograms. Needs payloads of at least 24 bytes.
    pub(crate) latency_after: Option<Duration>,
}

/// One connection to open.
pub(crate) struct LinkPlan {
    pub(crate) address: SocketAddr,
    pub(crate) source: Option<IpAddr>,
    pub(crate) adapter: Box<dyn Adapter>,
    pub(crate) role: Role,
    pub(crate) read_buf_bytes: usize,
}

/// Settings shared by the workers of a run.
#[derive(Clone, Debug)]
pub(crate) struct RunSettings {
    pub(crate) publishers: usize,
    pub(crate) subscribers: usize,
    pub(crate) max_lag: u64,
    /// A subscriber still missing messages ends this long after the publishers finished and it
    /// last received something.
    pub(crate) idle_timeout: Duration,
    /// The whole run ends by then, whatever state it is in.
    pub(crate) timeout: Duration,
    /// Never sleep in poll (latency runs: the load generator has its own core).
    pub(crate) is_busy: bool,
}

/// State shared between a run's workers and the main thread.
pub(crate) struct Shared {
    pub(crate) settings: RunSettings,
    start: OnceLock<Instant>,
    barrier: Barrier,
    /// Per publisher: messages handed to its link so far (final once it ended).
    pub(crate) published: Vec<AtomicU64>,
    pub(crate) publishers_done: AtomicUsize,
    /// Per subscriber: messages received, or `u64::MAX` if it does not (or no longer)
    /// hold the publishers back.
    pub(crate) received: Vec<AtomicU64>,
    /// Per subscriber: messages received so far (final once it ended), for progress; unlike
    /// `received`, never reset when a subscriber ends.
    pub(crate) delivered: Vec<AtomicU64>,
    /// Links set up (handshake and subscription done), over all workers.
    pub(crate) established: AtomicUsize,
    /// Set by the main thread: subscribers and publishers end now.
    pub(crate) stop: AtomicBool,
    setup_error: Mutex<Option<String>>,
}

impl Shared {
    fn lag(&self) -> u64 {
        let published: u64 = self
            .published
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .sum();
        let slowest = self
            .received
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX);
        published.saturating_sub(slowest)
    }

    pub(crate) fn total_published(&self) -> u64 {
        self.published
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn total_received(&self) -> u64 {
        self.delivered
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .sum()
    }

    fn all_published(&self) -> Option<Vec<u64>> {
        (self.publishers_done.load(Ordering::Acquire) == self.settings.publishers).then(|| {
            self.published
                .iter()
                .map(|p| p.load(Ordering::Acquire))
                .collect()
        })
    }
}

/// Why a link stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Publisher: everything sent and confirmed. Subscriber: everything sent was received.
    Complete,
    /// The broker closed the connection, with its reason when it gave one.
    Closed(String),
    /// A socket or protocol error.
    Failed(String),
    /// Nothing more arrived within the idle timeout after the publishers finished.
    Idle,
    /// The scenario ended the run (slow consumer, idle connections).
    Stopped,
    /// The run's timeout ran out.
    TimedOut,
}

impl Ended {
    pub(crate) fn describe(&self) -> String {
        match self {
            Ended::Complete => "complete".into(),
            Ended::Closed(reason) => format!("closed by the broker: {reason}"),
            Ended::Failed(error) => format!("failed: {error}"),
            Ended::Idle => "idle (stopped waiting)".into(),
            Ended::Stopped => "stopped at the end of the run".into(),
            Ended::TimedOut => "timed out".into(),
        }
    }

    pub(crate) fn is_closed_by_broker(&self) -> bool {
        matches!(self, Ended::Closed(_))
    }
}

#[derive(Debug)]
pub(crate) struct PublisherReport {
    pub(crate) index: usize,
    pub(crate) published: u64,
    pub(crate) confirmed: u64,
    /// Since the start: the last message handed to the link.
    pub(crate) last_publish_at: Duration,
    /// Publish to confirmation, from the due time (corrected) and the send time (raw), in ns.
    pub(crate) confirm_latency: Option<(Histogram<u64>, Histogram<u64>)>,
    pub(crate) ended: Ended,
}

#[derive(Debug)]
pub(crate) struct SubscriberReport {
    pub(crate) index: usize,
    pub(crate) tracker: Tracker,
    /// From the due time (corrected) and from the send time (raw), in ns.
    pub(crate) latency: Option<(Histogram<u64>, Histogram<u64>)>,
    pub(crate) last_message_at: Option<Duration>,
    pub(crate) ended: Ended,
    /// Since the start.
    pub(crate) ended_at: Duration,
}

#[derive(Debug, Default)]
pub(crate) struct WorkerReport {
    pub(crate) publishers: Vec<PublisherReport>,
    pub(crate) subscribers: Vec<SubscriberReport>,
}

/// A run under way: worker threads past setup, publishers started.
pub(crate) struct Run {
    pub(crate) shared: Arc<Shared>,
    pub(crate) start: Instant,
    handles: Vec<JoinHandle<WorkerReport>>,
}

impl Run {
    /// Spawns one worker per group of links, waits until every link is set up, then starts
    /// the clock and the publishers.
    ///
    /// # Errors
    /// A link that could not connect or set up (the others are closed).
    pub(crate) fn start(settings: RunSettings, groups: Vec<Vec<LinkPlan>>) -> io::Result<Run> {
        let shared = Arc::new(Shared {
            published: (0..settings.publishers)
                .map(|_| AtomicU64::new(0))
                .collect(),
            publishers_done: AtomicUsize::new(0),
            // 0 from the start for every subscriber the publishers wait for, before any worker
            // runs: a worker that starts late must not let the publishers run ahead meanwhile.
            received: (0..settings.subscribers)
                .map(|index| {
                    let counts = groups.iter().flatten().any(|plan| {
                        matches!(&plan.role, Role::Subscriber(spec)
                            if spec.index == index && spec.counts_for_lag)
                    });
                    AtomicU64::new(if counts { 0 } else { u64::MAX })
                })
                .collect(),
            delivered: (0..settings.subscribers)
                .map(|_| AtomicU64::new(0))
                .collect(),
            established: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            start: OnceLock::new(),
            barrier: Barrier::new(groups.len() + 1),
            setup_error: Mutex::new(None),
            settings,
        });
        let handles = groups
            .into_iter()
            .map(|links| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || Worker::new(links, shared).run())
            })
            .collect();
        shared.barrier.wait();
        let start = Instant::now();
        let setup_error = shared.setup_error.lock().map(|e| e.clone()).unwrap_or(None);
        if setup_error.is_some() {
            shared.stop.store(true, Ordering::Release);
        }
        // Cannot be set twice: only this thread sets it, once.
        let _ = shared.start.set(start);
        shared.barrier.wait();
        let run = Run {
            shared,
            start,
            handles,
        };
        match setup_error {
            Some(error) => {
                run.join();
                Err(io::Error::other(error))
            }
            None => Ok(run),
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.handles.iter().all(JoinHandle::is_finished)
    }

    pub(crate) fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
    }

    /// Waits for every worker and merges their reports, in publisher and subscriber order.
    pub(crate) fn join(self) -> WorkerReport {
        let mut merged = WorkerReport::default();
        for handle in self.handles {
            let report = handle.join().expect("a worker thread does not panic");
            merged.publishers.extend(report.publishers);
            merged.subscribers.extend(report.subscribers);
        }
        merged.publishers.sort_by_key(|p| p.index);
        merged.subscribers.sort_by_key(|s| s.index);
        merged
    }
}

struct Worker {
    poll: Poll,
    plans: Vec<LinkPlan>,
    slots: Vec<Slot>,
    shared: Arc<Shared>,
}

/// Links connecting or handshaking at once per worker.
const MAX_CONNECTING: usize = 256;
/// Setup fails if no link completes its setup for this long.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
const SETUP_POLL: Duration = Duration::from_millis(100);
const EVENTS_CAPACITY: usize = 1_024;
/// Bytes read from one link per turn before serving the others.
const READ_BUDGET_BYTES: usize = 256 * 1024;
/// A rate-limited subscriber reads this much at a time, so it takes from the socket little
/// more than its rate allows.
const SLOW_READ_BYTES: usize = 4 * 1024;
/// A publisher stops producing while this much is unsent (the socket is full).
const MAX_UNSENT_BYTES: usize = 256 * 1024;
/// Messages produced per turn before reading confirmations and deliveries.
const PRODUCE_BATCH: usize = 1_024;
/// Publishers update their shared count and check the lag every this many messages.
const LAG_CHECK_EVERY: u64 = 64;
/// Wait while the subscribers catch up, or a slow consumer's rate allows more (mio rounds
/// poll timeouts up to whole milliseconds).
const LAG_POLL: Duration = Duration::from_millis(1);
/// Longest sleep in poll, so stops and timeouts are seen promptly.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// How long a worker keeps sending the last bytes (BYE) of its links after the run: enough
/// for a publisher's unsent backlog (at most `MAX_UNSENT_BYTES`) to drain into a broker that
/// reads at all.
const LINGER: Duration = Duration::from_secs(2);

/// Each wait of the linger for the broker's close.
const LINGER_POLL: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{AdapterOptions, Target};

    fn shared(max_lag: u64) -> Shared {
        Shared {
            settings: RunSettings {
                publishers: 1,
                subscribers: 1,
                max_lag,
                idle_timeout: Duration::from_secs(1),
                timeout: Duration::from_secs(10),
                is_busy: false,
            },
            start: OnceLock::new(),
            barrier: Barrier::new(1),
            published: vec![AtomicU64::new(0)],
            publishers_done: AtomicUsize::new(0),
            // The only subscriber has received nothing yet.
            received: vec![AtomicU64::new(0)],
            delivered: vec![AtomicU64::new(0)],
            established: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            setup_error: Mutex::new(None),
        }
    }

    #[test]
    fn a_publisher_polled_again_and_again_stays_within_max_lag() {
        // A real socket for the link; nothing needs to be sent through it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target: Target = format!("redis://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let options = AdapterOptions {
            topic: "lag".into(),
            window: 0,
            is_acking: false,
            confirm_every: u64::MAX,
        };
        let adapter = target.adapter("p0", &options);
        let mut link = Link::connect(listener.local_addr().unwrap(), None, adapter, 4096).unwrap();
        let spec = PublisherSpec {
            index: 0,
            count: None,
            duration: None,
            rate: None,
            payload_len: 64,
            max_unconfirmed: u64::MAX,
            confirm_latency_after: None,
        };
        let mut publishing = Publishing {
            payload: vec![0; 64],
            spec,
            published: 0,
            is_done: false,
            last_publish_at: Duration::ZERO,
            unreported: 0,
            confirms: None,
        };
        let shared = shared(1_000);
        let start = Instant::now();
        let mut lagging = 0;
        for _ in 0..100 {
            if matches!(
                publishing.produce(&mut link, &shared, start, Instant::now()),
                Blocked::Lag
            ) {
                lagging += 1;
            }
            // As if the socket had taken everything.
            link.out.clear();
        }
        assert!(
            publishing.published <= 1_000 + LAG_CHECK_EVERY,
            "published {} with max_lag 1000 and nothing received",
            publishing.published
        );
        assert!(lagging >= 90, "blocked by the lag {lagging} times of 100");
        // Once the subscriber catches up, publishing goes on.
        shared.received[0].store(publishing.published, Ordering::Relaxed);
        let before = publishing.published;
        publishing.produce(&mut link, &shared, start, Instant::now());
        assert!(publishing.published > before);
    }

    #[test]
    fn a_cumulative_confirmation_times_every_message_it_covers_once() {
        let mut timing = ConfirmTiming {
            unconfirmed: VecDeque::new(),
            confirmed: 0,
            corrected: new_histogram(),
            raw: new_histogram(),
        };
        // (due, sent) in ns; the first is within the warm-up (due before 1,000 ns).
        timing
            .unconfirmed
            .extend([(500, 600), (2_000, 3_000), (4_000, 4_000)]);
        timing.on_confirmed(2, 10_000, 1_000);
        assert_eq!(
            timing.corrected.len(),
            1,
            "the warm-up message is not timed"
        );
        assert_eq!(
            timing.corrected.max(),
            timing.corrected.highest_equivalent(8_000)
        );
        assert_eq!(timing.raw.max(), timing.raw.highest_equivalent(7_000));
        timing.on_confirmed(2, 11_000, 1_000);
        assert_eq!(
            timing.corrected.len(),
            1,
            "the same confirmation again times nothing"
        );
        timing.on_confirmed(3, 12_000, 1_000);
        assert_eq!(timing.corrected.len(), 2);
        assert!(timing.unconfirmed.is_empty());
    }
}
