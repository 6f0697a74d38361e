//! The `throughput` scenario: publishers send `--count` tagged messages as fast as the broker
//! confirms them and the slowest subscriber keeps up; every subscriber should receive each
//! message once, in order per publisher.
//!
//! Two bounds keep the publishers honest, the same for every target:
//! - `--max-unconfirmed`: messages sent and not yet confirmed by the broker (Weir RECEIPT,
//!   Redis PUBLISH reply);
//! - `--max-lag`: messages published and not yet received by the slowest subscriber. A
//!   confirmation only says the broker accepted a message, not that it was delivered; without
//!   this bound a publisher that outruns its subscribers fills their queues until the broker
//!   closes them (Weir: QUEUE_OVERFLOW at `max_queue_depth`; Redis: the pub/sub
//!   `client-output-buffer-limit`), which measures a burst, not a sustainable rate.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use crate::target::{ConnectOptions, Polled, Publisher, Subscriber, Target};
use crate::{median, parse_secs, per_sec, thousands};

#[derive(Clone, Debug, Args)]
pub(crate) struct ThroughputArgs {
    /// Broker to measure: weir://HOST:PORT or redis://HOST:PORT.
    #[arg(
        long,
        default_value = "weir://127.0.0.1:7400",
        conflicts_with = "compare"
    )]
    target: Target,
    /// Measure several targets in turn (A B A B ...) and compare their median delivered
    /// rates, e.g. `weir://127.0.0.1:7400,redis://127.0.0.1:6379`.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    compare: Vec<Target>,
    /// Rounds per target with --compare.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Messages to send, in total over all publishers.
    #[arg(short = 'n', long, default_value_t = 100_000)]
    count: u64,
    /// Payload bytes per message (at least 8: the tag).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..))]
    payload: u32,
    /// Publishing connections, each on its own thread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    publishers: u16,
    /// Subscribing connections, each on its own thread; each receives every message.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    subscribers: u16,
    /// Weir: never ACK. Deliveries then stop once the in-flight window is full and the run
    /// ends idle with the rest lost: this shows the window at work, not throughput. Redis
    /// pub/sub has no acks; ignored there.
    #[arg(long)]
    no_acks: bool,
    /// Weir: in-flight window to ask for in HELLO (0 = the server's default).
    #[arg(long, default_value_t = 0)]
    window: u32,
    /// Queue (Weir) or channel (Redis) to use.
    #[arg(long, default_value = "bench")]
    queue: String,
    /// Most messages a publisher may have sent and not yet had confirmed (Weir RECEIPT,
    /// Redis PUBLISH reply).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_unconfirmed: u64,
    /// Most messages the publishers may be ahead of the slowest subscriber. Default: 50,000
    /// or 32 MiB of payload, whichever is less (half of Weir's default max_queue_depth and
    /// max_queue_bytes).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_lag: Option<u64>,
    /// A subscriber stops this many seconds after the publishers finished and it last
    /// received something.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_secs)]
    idle_timeout: Duration,
    /// Give up on a run after this many seconds.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_secs)]
    timeout: Duration,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the scenario as the flags say; returns whether every run was clean.
///
/// # Errors
/// A connection that could not be opened or set up.
pub(crate) fn main(args: &ThroughputArgs) -> io::Result<bool> {
    if args.compare.is_empty() {
        single(args)
    } else {
        compare(args)
    }
}

/// One run against `--target`.
fn single(args: &ThroughputArgs) -> io::Result<bool> {
    let report = run(&args.target, args)?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        report.print();
    }
    Ok(report.is_clean())
}

/// Rounds over every `--compare` target in turn, then the medians and the first/second ratio.
fn compare(args: &ThroughputArgs) -> io::Result<bool> {
    let mut runs: Vec<ThroughputReport> = Vec::new();
    for round in 1..=args.rounds {
        for target in &args.compare {
            let report = run(target, args)?;
            if !args.json {
                println!("round {round}/{}:", args.rounds);
                report.print();
                println!();
            }
            runs.push(report);
        }
    }
    let medians: Vec<(String, f64)> = args
        .compare
        .iter()
        .map(|target| {
            let target = target.to_string();
            let mut rates: Vec<f64> = runs
                .iter()
                .filter(|run| run.target == target)
                .map(ThroughputReport::delivered_per_sec)
                .collect();
            (target, median(&mut rates))
        })
        .collect();
    let ratio = match medians.as_slice() {
        [(_, first), (_, second), ..] if *second > 0.0 => Some(first / second),
        _ => None,
    };
    let is_clean = runs.iter().all(ThroughputReport::is_clean);
    if args.json {
        let out = json!({
            "scenario": "throughput",
            "rounds": args.rounds,
            "runs": runs.iter().map(ThroughputReport::to_json).collect::<Vec<_>>(),
            "median_delivered_msgs_per_s": medians
                .iter()
                .map(|(target, rate)| json!({"target": target, "msgs_per_s": rate.round()}))
                .collect::<Vec<_>>(),
            "ratio_first_to_second": ratio,
            "clean": is_clean,
        });
        println!("{out}");
        return Ok(is_clean);
    }
    println!(
        "median delivered msg/s over {} rounds ({} pub → {} sub, {} × {} B, Weir acks {}):",
        args.rounds,
        args.publishers,
        args.subscribers,
        thousands(args.count),
        args.payload,
        if args.no_acks { "off" } else { "on" },
    );
    for (target, rate) in &medians {
        println!("  {target:<32} {:>12}", thousands(rate.round() as u64));
    }
    if let (Some(ratio), [(first, _), (second, _), ..]) = (ratio, medians.as_slice()) {
        println!("  ratio {first} / {second} = {ratio:.2}");
    }
    if !is_clean {
        println!("  WARNING: some runs lost messages or ended early; see the rounds above");
    }
    Ok(is_clean)
}

/// What one run measured.
#[derive(Debug)]
struct ThroughputReport {
    target: String,
    publishers: u16,
    payload: u32,
    /// `None` on a target without acks.
    acks: Option<bool>,
    /// Messages the publishers were asked to send.
    count: u64,
    /// Messages the publishers sent (fewer if one failed).
    sent: u64,
    /// First publish → last publisher confirmed.
    publish_elapsed: Duration,
    publisher_errors: Vec<String>,
    subscribers: Vec<SubscriberReport>,
    /// First publish → last message received by any subscriber.
    elapsed: Duration,
}

/// What one subscriber received.
#[derive(Debug, Default)]
struct SubscriberReport {
    /// Messages received, duplicates included.
    received: u64,
    /// Distinct messages received.
    unique: u64,
    duplicates: u64,
    out_of_order: u64,
    /// Payloads whose tag names no publisher or counter of this run.
    corrupt: u64,
    /// Since the first publish.
    last_message_at: Option<Duration>,
    ended: Ended,
}

/// Why a subscriber stopped reading.
#[derive(Debug, Default)]
enum Ended {
    /// Every message sent was received.
    #[default]
    Complete,
    /// The server closed the connection (with its reason when it gave one).
    Closed(String),
    /// A socket or protocol error.
    Failed(String),
    /// Nothing more arrived within `--idle-timeout` after the publishers finished.
    Idle,
    /// `--timeout` ran out.
    TimedOut,
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Complete => f.write_str("complete"),
            Ended::Closed(reason) => write!(f, "closed: {reason}"),
            Ended::Failed(error) => write!(f, "failed: {error}"),
            Ended::Idle => f.write_str("idle"),
            Ended::TimedOut => f.write_str("timed out"),
        }
    }
}

/// Shared by a run's threads: how far the publishers are ahead of the slowest subscriber.
struct Progress {
    /// Messages handed to publishers' connections, over all publishers.
    published: AtomicU64,
    /// Per subscriber: messages received; `u64::MAX` once it stopped reading.
    received: Vec<AtomicU64>,
    max_lag: u64,
    deadline: Instant,
}

impl Progress {
    fn lag(&self) -> u64 {
        let slowest = self
            .received
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX);
        self.published
            .load(Ordering::Relaxed)
            .saturating_sub(slowest)
    }

    /// Counts `count` more published messages; if that puts the publishers more than
    /// `max_lag` ahead, flushes `publisher` and waits for the subscribers.
    fn add_published(&self, count: u64, publisher: &mut dyn Publisher) -> io::Result<()> {
        self.published.fetch_add(count, Ordering::Relaxed);
        if self.lag() <= self.max_lag {
            return Ok(());
        }
        publisher.flush()?;
        while self.lag() > self.max_lag {
            if Instant::now() >= self.deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "subscribers did not catch up before --timeout",
                ));
            }
            // Sleeping rather than spinning leaves the core to the subscribers (the bench
            // script runs every client thread on one core).
            thread::sleep(LAG_WAIT);
        }
        Ok(())
    }
}

fn run(target: &Target, args: &ThroughputArgs) -> io::Result<ThroughputReport> {
    let options = ConnectOptions {
        queue: args.queue.clone(),
        window: args.window,
        is_acking: !args.no_acks,
        max_unconfirmed: args.max_unconfirmed,
    };
    let shares = split(args.count, args.publishers);
    let mut subscribers = Vec::new();
    for index in 0..args.subscribers {
        subscribers.push(target.subscriber(&options, index)?);
    }
    let mut publishers = Vec::new();
    for index in 0..args.publishers {
        publishers.push(target.publisher(&options, index)?);
    }
    let publishers_done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + args.timeout;
    let max_lag = args.max_lag.unwrap_or_else(|| {
        (DEFAULT_MAX_LAG_BYTES / u64::from(args.payload)).clamp(1, DEFAULT_MAX_LAG)
    });
    let progress = Arc::new(Progress {
        published: AtomicU64::new(0),
        received: (0..args.subscribers).map(|_| AtomicU64::new(0)).collect(),
        max_lag,
        deadline,
    });
    let subscriber_threads: Vec<_> = subscribers
        .into_iter()
        .enumerate()
        .map(|(index, subscriber)| {
            let shares = shares.clone();
            let done = Arc::clone(&publishers_done);
            let progress = Arc::clone(&progress);
            let idle_timeout = args.idle_timeout;
            thread::spawn(move || {
                let reader = Reader {
                    index,
                    progress: &progress,
                    publishers_done: &done,
                    start,
                    idle_timeout,
                };
                reader.receive_all(subscriber, &shares)
            })
        })
        .collect();
    let payload_len = args.payload as usize;
    let publisher_threads: Vec<_> = publishers
        .into_iter()
        .zip(shares.clone())
        .enumerate()
        .map(|(index, (publisher, share))| {
            let progress = Arc::clone(&progress);
            thread::spawn(move || send_all(publisher, index, share, payload_len, &progress))
        })
        .collect();
    let mut sent = 0;
    let mut publish_elapsed = Duration::ZERO;
    let mut publisher_errors = Vec::new();
    for thread in publisher_threads {
        let (count, result) = thread.join().expect("publisher thread does not panic");
        sent += count;
        publish_elapsed = publish_elapsed.max(start.elapsed());
        if let Err(error) = result {
            publisher_errors.push(error.to_string());
        }
    }
    publishers_done.store(true, Ordering::Release);
    let subscribers: Vec<SubscriberReport> = subscriber_threads
        .into_iter()
        .map(|t| t.join().expect("subscriber thread does not panic"))
        .collect();
    let elapsed = subscribers
        .iter()
        .filter_map(|s| s.last_message_at)
        .max()
        .unwrap_or(publish_elapsed);
    Ok(ThroughputReport {
        target: target.to_string(),
        publishers: args.publishers,
        payload: args.payload,
        acks: target.has_acks().then_some(!args.no_acks),
        count: args.count,
        sent,
        publish_elapsed,
        publisher_errors,
        subscribers,
        elapsed,
    })
}

/// Publishes `count` tagged messages; returns how many were sent and whether all were
/// confirmed.
fn send_all(
    mut publisher: Box<dyn Publisher>,
    index: usize,
    count: u64,
    payload_len: usize,
    progress: &Progress,
) -> (u64, io::Result<()>) {
    let mut payload = vec![0xA5; payload_len];
    let check_every = LAG_CHECK_EVERY.min(progress.max_lag);
    let mut unchecked = 0;
    for counter in 1..=count {
        let tag = (index as u64) << COUNTER_BITS | counter;
        payload[..8].copy_from_slice(&tag.to_be_bytes());
        if let Err(error) = publisher.publish(&payload) {
            return (counter - 1, Err(error));
        }
        unchecked += 1;
        if unchecked == check_every {
            unchecked = 0;
            if let Err(error) = progress.add_published(check_every, publisher.as_mut()) {
                return (counter, Err(error));
            }
        }
    }
    progress.published.fetch_add(unchecked, Ordering::Relaxed);
    (count, publisher.finish())
}

/// One subscriber thread's view of the run.
struct Reader<'a> {
    index: usize,
    progress: &'a Progress,
    publishers_done: &'a AtomicBool,
    start: Instant,
    idle_timeout: Duration,
}

impl Reader<'_> {
    /// Reads until every message of every publisher's `shares` arrived, or the subscriber is
    /// closed, idle after the publishers finished, or out of time.
    fn receive_all(&self, mut subscriber: Box<dyn Subscriber>, shares: &[u64]) -> SubscriberReport {
        let mut tracker = Tracker::new(shares);
        let expected: u64 = shares.iter().sum();
        let received = &self.progress.received[self.index];
        let mut last_message_at = None;
        let mut last_progress = self.start;
        let mut done_at = None;
        let ended = loop {
            if tracker.report.unique == expected {
                break Ended::Complete;
            }
            let before = tracker.report.received;
            let polled = subscriber.poll(&mut |payload| tracker.record(payload));
            let now = Instant::now();
            if tracker.report.received > before {
                received.store(tracker.report.received, Ordering::Relaxed);
                last_progress = now;
                last_message_at = Some(now - self.start);
            }
            match polled {
                Ok(Polled::Open) => {}
                Ok(Polled::Closed(reason)) => break Ended::Closed(reason),
                Err(error) => break Ended::Failed(error.to_string()),
            }
            if now >= self.progress.deadline {
                break Ended::TimedOut;
            }
            if done_at.is_none() && self.publishers_done.load(Ordering::Acquire) {
                done_at = Some(now);
            }
            if done_at.is_some_and(|done| now - last_progress.max(done) > self.idle_timeout) {
                break Ended::Idle;
            }
        };
        // A subscriber that stopped reading no longer holds the publishers back.
        received.store(u64::MAX, Ordering::Relaxed);
        SubscriberReport {
            ended,
            last_message_at,
            ..tracker.report
        }
    }
}

impl ThroughputReport {
    fn delivered(&self) -> u64 {
        self.subscribers.iter().map(|s| s.unique).sum()
    }

    fn lost(&self) -> u64 {
        self.subscribers
            .iter()
            .map(|s| self.sent.saturating_sub(s.unique))
            .sum()
    }

    /// Distinct messages received over all subscribers per second of `elapsed`.
    fn delivered_per_sec(&self) -> f64 {
        per_sec(self.delivered(), self.elapsed)
    }

    fn is_clean(&self) -> bool {
        self.publisher_errors.is_empty()
            && self.sent == self.count
            && self.subscribers.iter().all(|s| {
                matches!(s.ended, Ended::Complete)
                    && s.duplicates == 0
                    && s.out_of_order == 0
                    && s.corrupt == 0
            })
    }

    fn print(&self) {
        println!(
            "throughput  {}  {} pub → {} sub  {} × {} B  {}",
            self.target,
            self.publishers,
            self.subscribers.len(),
            thousands(self.count),
            self.payload,
            match self.acks {
                Some(true) => "acks on",
                Some(false) => "acks off",
                None => "no acks",
            },
        );
        println!(
            "  sent        {:>12} msgs in {:.3} s ({} msg/s, until confirmed)",
            thousands(self.sent),
            self.publish_elapsed.as_secs_f64(),
            thousands(per_sec(self.sent, self.publish_elapsed).round() as u64),
        );
        for error in &self.publisher_errors {
            println!("  publisher error: {error}");
        }
        println!(
            "  {:<10} {:>12} {:>10} {:>10} {:>12}  ended",
            "subscriber", "delivered", "lost", "duplicates", "out-of-order"
        );
        for (index, s) in self.subscribers.iter().enumerate() {
            let corrupt = if s.corrupt > 0 {
                format!(" ({} corrupt payloads)", s.corrupt)
            } else {
                String::new()
            };
            println!(
                "  #{index:<9} {:>12} {:>10} {:>10} {:>12}  {}{corrupt}",
                thousands(s.unique),
                thousands(self.sent.saturating_sub(s.unique)),
                s.duplicates,
                s.out_of_order,
                s.ended,
            );
        }
        println!(
            "  elapsed     {:.3} s (first publish → last delivery)",
            self.elapsed.as_secs_f64()
        );
        println!(
            "  delivered   {:>12} msg/s (all subscribers)",
            thousands(self.delivered_per_sec().round() as u64)
        );
    }

    fn to_json(&self) -> Value {
        let per_subscriber: Vec<Value> = self
            .subscribers
            .iter()
            .map(|s| {
                json!({
                    "delivered": s.unique,
                    "received": s.received,
                    "lost": self.sent.saturating_sub(s.unique),
                    "duplicates": s.duplicates,
                    "out_of_order": s.out_of_order,
                    "corrupt": s.corrupt,
                    "ended": s.ended.to_string(),
                })
            })
            .collect();
        json!({
            "scenario": "throughput",
            "target": self.target,
            "publishers": self.publishers,
            "subscribers": self.subscribers.len(),
            "payload_bytes": self.payload,
            "acks": self.acks,
            "count": self.count,
            "sent": self.sent,
            "publish_elapsed_s": self.publish_elapsed.as_secs_f64(),
            "publisher_errors": self.publisher_errors,
            "per_subscriber": per_subscriber,
            "delivered": self.delivered(),
            "lost": self.lost(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "delivered_msgs_per_s": self.delivered_per_sec().round(),
            "clean": self.is_clean(),
        })
    }
}

/// Per-subscriber bookkeeping of the tags seen: a bitmap per publisher.
struct Tracker {
    streams: Vec<Stream>,
    report: SubscriberReport,
}

/// What one subscriber saw of one publisher's messages.
struct Stream {
    /// Bit `counter` set once that message was received.
    seen: Vec<u64>,
    /// Messages this publisher sends; counters run 1..=count.
    count: u64,
    highest: u64,
}

impl Tracker {
    fn new(shares: &[u64]) -> Tracker {
        let streams = shares
            .iter()
            .map(|&count| Stream {
                seen: vec![0; (count / 64 + 1) as usize],
                count,
                highest: 0,
            })
            .collect();
        Tracker {
            streams,
            report: SubscriberReport::default(),
        }
    }

    fn record(&mut self, payload: &[u8]) {
        let report = &mut self.report;
        report.received += 1;
        let Some(tag) = payload.get(..8).and_then(|b| b.try_into().ok()) else {
            report.corrupt += 1;
            return;
        };
        let tag = u64::from_be_bytes(tag);
        let counter = tag & ((1 << COUNTER_BITS) - 1);
        let stream = match self.streams.get_mut((tag >> COUNTER_BITS) as usize) {
            Some(stream) if (1..=stream.count).contains(&counter) => stream,
            _ => {
                report.corrupt += 1;
                return;
            }
        };
        let (word, bit) = ((counter / 64) as usize, 1 << (counter % 64));
        if stream.seen[word] & bit != 0 {
            report.duplicates += 1;
            return;
        }
        stream.seen[word] |= bit;
        report.unique += 1;
        if counter < stream.highest {
            report.out_of_order += 1;
        } else {
            stream.highest = counter;
        }
    }
}

/// `count` split over `parts` as evenly as possible.
fn split(count: u64, parts: u16) -> Vec<u64> {
    let parts = u64::from(parts);
    (0..parts)
        .map(|i| count / parts + u64::from(i < count % parts))
        .collect()
}

/// Bits of the payload tag that hold the per-publisher counter; the publisher index sits above.
const COUNTER_BITS: u32 = 48;
const DEFAULT_MAX_LAG: u64 = 50_000;
const DEFAULT_MAX_LAG_BYTES: u64 = 32 * 1024 * 1024;
/// Publishers check the lag every this many messages: often enough to stay near `max_lag`,
/// rarely enough that the shared counters cost nothing.
const LAG_CHECK_EVERY: u64 = 64;
const LAG_WAIT: Duration = Duration::from_micros(100);

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(publisher: u64, counter: u64) -> [u8; 8] {
        (publisher << COUNTER_BITS | counter).to_be_bytes()
    }

    #[test]
    fn the_tracker_counts_duplicates_reordering_and_foreign_tags() {
        let mut tracker = Tracker::new(&[3, 2]);
        for (publisher, counter) in [
            (0, 1),
            (1, 1),
            (0, 3),
            (0, 2),
            (0, 3),
            (1, 2),
            (2, 1),
            (0, 4),
        ] {
            tracker.record(&tagged(publisher, counter));
        }
        tracker.record(b"short");
        let report = &tracker.report;
        assert_eq!(report.received, 9);
        assert_eq!(report.unique, 5);
        assert_eq!(report.duplicates, 1, "(0, 3) twice");
        assert_eq!(report.out_of_order, 1, "(0, 2) after (0, 3)");
        assert_eq!(
            report.corrupt, 3,
            "no publisher 2, no counter 4, payload < 8 bytes"
        );
    }

    #[test]
    fn the_count_is_split_evenly_over_publishers() {
        assert_eq!(split(10, 3), [4, 3, 3]);
        assert_eq!(split(2, 4), [1, 1, 0, 0]);
    }

    #[test]
    fn the_lag_is_measured_from_the_slowest_subscriber_still_reading() {
        let progress = Progress {
            published: AtomicU64::new(100),
            received: vec![AtomicU64::new(40), AtomicU64::new(90)],
            max_lag: 10,
            deadline: Instant::now(),
        };
        assert_eq!(progress.lag(), 60);
        progress.received[0].store(u64::MAX, Ordering::Relaxed);
        assert_eq!(progress.lag(), 10);
    }
}
