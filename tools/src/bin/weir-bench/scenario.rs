//! What every scenario shares: the target flags, rounds and compare mode (targets measured in
//! turn, A B A B ..., medians with min–max and ratios), the [`Outcome`] of one run (metrics,
//! notes, text, JSON), and [`watch`], which shows a progress bar and samples the server while
//! a run is under way.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::thread;
use std::time::{Duration, SystemTime};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};

use crate::probe::{CpuMeter, Process};
use crate::target::Target;
use crate::worker::{Run, Shared};
use crate::{median, thousands};

#[derive(Clone, Debug, Args)]
pub(crate) struct CommonArgs {
    /// Broker to measure: weir://HOST:PORT, redis://..., nats://..., mqtt://...?qos=0|1.
    /// Add ?pid=N (or &pid=N) when the server runs on this machine, to report its CPU use and
    /// memory from /proc.
    #[arg(
        long,
        default_value = "weir://127.0.0.1:7400",
        conflicts_with = "compare"
    )]
    pub(crate) target: Target,
    /// Measure several targets in turn (A B A B ...) and compare them: medians with min–max,
    /// and ratios of the first target to each other one. Comma-separated target URLs.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub(crate) compare: Vec<Target>,
    /// Runs per target. Default: 3 with --compare, else 1.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) rounds: Option<u32>,
    /// Queue (Weir), channel (Redis), subject (NATS) or topic (MQTT) prefix; each run uses
    /// its own name under it, so runs do not see each other's messages.
    #[arg(long, default_value = "bench", value_parser = check_topic)]
    pub(crate) topic: String,
    /// Use --topic as the name itself, every run the same: for a queue the server declares
    /// (a Weir `durable = true` queue in `[[queues]]`). Runs then share the queue.
    #[arg(long)]
    pub(crate) exact_topic: bool,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write that JSON document to this file (the tables still go to stdout).
    #[arg(long, value_name = "PATH")]
    pub(crate) json_out: Option<std::path::PathBuf>,
}

/// What one run of a scenario measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) target: String,
    pub(crate) metrics: Vec<Metric>,
    /// Observations in words (who closed what, what limited the figure).
    pub(crate) notes: Vec<String>,
    /// No loss, no duplicate, no unexpected close, no error.
    pub(crate) is_clean: bool,
    /// The human report of this run.
    pub(crate) text: String,
    pub(crate) json: Value,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Metric {
    pub(crate) key: &'static str,
    pub(crate) label: &'static str,
    pub(crate) value: Option<f64>,
    pub(crate) decimals: usize,
}

impl Metric {
    pub(crate) fn new(key: &'static str, label: &'static str, value: Option<f64>) -> Metric {
        Metric {
            key,
            label,
            value,
            decimals: 0,
        }
    }

    pub(crate) fn with_decimals(self, decimals: usize) -> Metric {
        Metric { decimals, ..self }
    }
}

/// Runs `run_once` for every target and round, prints the runs and, with more than one, the
/// summary; returns whether every run was clean.
///
/// `headline` names the metric the ratios are taken of.
///
/// # Errors
/// A run that could not be set up (connect, handshake).
pub(crate) fn run_rounds(
    scenario: &str,
    common: &CommonArgs,
    headline: &str,
    mut run_once: impl FnMut(&Target) -> io::Result<Outcome>,
) -> io::Result<bool> {
    let targets = if common.compare.is_empty() {
        vec![common.target.clone()]
    } else {
        common.compare.clone()
    };
    let rounds = common
        .rounds
        .unwrap_or(if targets.len() > 1 { 3 } else { 1 });
    let started_at = SystemTime::now();
    let mut outcomes: Vec<Outcome> = Vec::new();
    'rounds: for round in 1..=rounds {
        for target in &targets {
            if interrupted().is_some() {
                break 'rounds;
            }
            let outcome = run_once(target).map_err(|e| name_address(e, &target.address))?;
            if !common.json {
                if rounds > 1 || targets.len() > 1 {
                    println!("round {round}/{rounds}:");
                }
                print!("{}", outcome.text);
                println!();
            }
            outcomes.push(outcome);
        }
    }
    if let Some(signal) = interrupted() {
        eprintln!(
            "weir-bench: interrupted by signal {signal}: the summary covers what was measured"
        );
    }
    let summaries: Vec<Summary> = targets
        .iter()
        .map(|target| Summary::of(target, &outcomes))
        .collect();
    let is_clean = outcomes.iter().all(|o| o.is_clean);
    let ratios = ratios(&summaries, headline);
    let out = json!({
            "weir_bench_version": env!("CARGO_PKG_VERSION"),
            "started_at": utc_timestamp(started_at),
            "configuration": RUN_CONFIGURATION.get().cloned().unwrap_or(Value::Null),
            "interrupted_by_signal": interrupted(),
            "scenario": scenario,
            "rounds": rounds,
            "headline": headline,
            "targets": summaries.iter().map(Summary::to_json).collect::<Vec<_>>(),
            "ratios": ratios
                .iter()
                .map(|(other, ratio)| json!({"of": headline, "first_to": other, "ratio": ratio}))
                .collect::<Vec<_>>(),
            "runs": outcomes.iter().map(|o| o.json.clone()).collect::<Vec<_>>(),
            "clean": is_clean,
    });
    if let Some(path) = &common.json_out {
        std::fs::write(path, format!("{out}\n"))?;
    }
    if common.json {
        println!("{out}");
        return Ok(is_clean);
    }
    if outcomes.len() > 1 {
        print_summary(scenario, rounds, &summaries, &ratios, headline);
    }
    if !is_clean {
        println!("WARNING: some runs lost messages, were closed by the broker or ended early;");
        println!("         see the runs above.");
    }
    Ok(is_clean)
}

/// Median, min and max of each metric over one target's runs.
struct Summary {
    target: String,
    /// The kind of target (`weir`, `mqtt-qos1`, ...): stable across ports and restarts.
    label: &'static str,
    /// Metrics in the order of the first run, with every value.
    metrics: Vec<(Metric, Vec<f64>)>,
    notes: Vec<String>,
    is_clean: bool,
}

impl Summary {
    fn of(target: &Target, outcomes: &[Outcome]) -> Summary {
        let label = target.label();
        let target = target.to_string();
        let runs: Vec<&Outcome> = outcomes.iter().filter(|o| o.target == target).collect();
        let mut metrics: Vec<(Metric, Vec<f64>)> = Vec::new();
        for run in &runs {
            for metric in &run.metrics {
                let values = match metrics.iter_mut().find(|(m, _)| m.key == metric.key) {
                    Some((_, values)) => values,
                    None => {
                        metrics.push((*metric, Vec::new()));
                        &mut metrics.last_mut().expect("just pushed").1
                    }
                };
                values.extend(metric.value);
            }
        }
        let mut notes: Vec<String> = Vec::new();
        for note in runs.iter().flat_map(|run| &run.notes) {
            if !notes.contains(note) {
                notes.push(note.clone());
            }
        }
        Summary {
            target,
            label,
            metrics,
            notes,
            is_clean: runs.iter().all(|run| run.is_clean),
        }
    }

    fn stats(&self, key: &str) -> Option<Stats> {
        let (_, values) = self.metrics.iter().find(|(m, _)| m.key == key)?;
        Stats::of(values)
    }

    fn to_json(&self) -> Value {
        let mut metrics = Map::new();
        for (metric, values) in &self.metrics {
            let stats = Stats::of(values);
            metrics.insert(
                metric.key.to_owned(),
                json!({
                    "label": metric.label,
                    "median": stats.map(|s| s.median),
                    "min": stats.map(|s| s.min),
                    "max": stats.map(|s| s.max),
                    "values": values,
                }),
            );
        }
        json!({
            "target": self.target,
            "label": self.label,
            "clean": self.is_clean,
            "notes": self.notes,
            "metrics": metrics,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Stats {
    pub(crate) fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        Some(Stats {
            median: median(&mut sorted),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }
}

/// The first target's headline median over each other target's.
fn ratios(summaries: &[Summary], headline: &str) -> Vec<(String, f64)> {
    let Some((first, others)) = summaries.split_first() else {
        return Vec::new();
    };
    let Some(base) = first.stats(headline) else {
        return Vec::new();
    };
    others
        .iter()
        .filter_map(|other| {
            let stats = other.stats(headline)?;
            (stats.median > 0.0).then(|| (other.target.clone(), base.median / stats.median))
        })
        .collect()
}

fn print_summary(
    scenario: &str,
    rounds: u32,
    summaries: &[Summary],
    ratios: &[(String, f64)],
    headline: &str,
) {
    println!("{scenario}: median (min–max) over {rounds} round(s)");
    let width = 30;
    print!("  {:<28}", "");
    for summary in summaries {
        print!(" {:>width$}", summary.target);
    }
    println!();
    let Some(first) = summaries.first() else {
        return;
    };
    for (metric, _) in &first.metrics {
        print!("  {:<28}", metric.label);
        for summary in summaries {
            let cell = summary
                .stats(metric.key)
                .map(|s| format_stats(s, metric.decimals))
                .unwrap_or_else(|| "–".into());
            print!(" {cell:>width$}");
        }
        println!();
    }
    for summary in summaries {
        for note in &summary.notes {
            println!("  {}: {note}", summary.target);
        }
    }
    let label = first
        .metrics
        .iter()
        .find(|(m, _)| m.key == headline)
        .map_or(headline, |(m, _)| m.label);
    for (other, ratio) in ratios {
        println!(
            "  ratio of {label}: {} / {other} = {ratio:.2}",
            first.target
        );
    }
}

/// `median (min–max)` with thousands separators.
pub(crate) fn format_stats(stats: Stats, decimals: usize) -> String {
    let one = |v: f64| format_value(v, decimals);
    if stats.min == stats.max {
        one(stats.median)
    } else {
        format!(
            "{} ({}–{})",
            one(stats.median),
            one(stats.min),
            one(stats.max)
        )
    }
}

pub(crate) fn format_value(value: f64, decimals: usize) -> String {
    if decimals == 0 && value.abs() < u64::MAX as f64 {
        let sign = if value < 0.0 { "-" } else { "" };
        format!("{sign}{}", thousands(value.abs().round() as u64))
    } else {
        format!("{value:.decimals$}")
    }
}

/// The command line of this process with every default filled in (secrets removed), for the
/// JSON document: what the run measured is only comparable with its configuration.
pub(crate) static RUN_CONFIGURATION: OnceLock<Value> = OnceLock::new();

/// SIGINT or SIGTERM received (its number; 0 for none): the run under way stops, with its
/// links closed cleanly (BYE), and the summary covers what was measured.
pub(crate) static INTERRUPTED: LazyLock<Arc<AtomicUsize>> =
    LazyLock::new(|| Arc::new(AtomicUsize::new(0)));

/// The signal that interrupted the run, if any.
pub(crate) fn interrupted() -> Option<usize> {
    match INTERRUPTED.load(Ordering::Relaxed) {
        0 => None,
        signal => Some(signal),
    }
}

/// An error of a run, with the target's address when the OS error does not name it
/// ("Connection refused" alone says nothing of where).
fn name_address(error: io::Error, address: &str) -> io::Error {
    if error.to_string().contains(address) {
        return error;
    }
    io::Error::new(error.kind(), format!("{address}: {error}"))
}

/// `time` as an RFC 3339 UTC timestamp, e.g. "2026-12-06T21:08:28Z".
pub(crate) fn utc_timestamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// A unique name per run: the prefix, this process, a counter.
impl CommonArgs {
    /// The queue name for one run: `--topic` as given with `--exact-topic`, else a fresh
    /// one under it ([`run_topic`]).
    pub(crate) fn run_topic(&self) -> String {
        if self.exact_topic {
            self.topic.clone()
        } else {
            run_topic(&self.topic)
        }
    }
}

pub(crate) fn run_topic(prefix: &str) -> String {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{prefix}.{}.{run}", std::process::id())
}

pub(crate) fn resolve(target: &Target) -> io::Result<SocketAddr> {
    target
        .address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
}

fn check_topic(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 200 || text.contains([' ', '*', '>', '#', '+']) {
        Err("1 to 200 bytes, without spaces or wildcards (* > # +)".into())
    } else {
        Ok(text.to_owned())
    }
}

/// What [`watch`] saw of the server while the run went on.
#[derive(Debug, Default)]
pub(crate) struct Watched {
    pub(crate) peak_rss: Option<u64>,
}

/// CPU meters for the server (if local) and for weir-bench itself.
pub(crate) struct Meters {
    pub(crate) server: Option<(Process, CpuMeter)>,
    pub(crate) bench: CpuMeter,
}

impl Meters {
    pub(crate) fn start(target: &Target) -> Meters {
        Meters {
            server: target.pid.map(|pid| {
                let process = Process::pid(pid);
                (process.clone(), CpuMeter::start(process))
            }),
            bench: CpuMeter::start(Process::current()),
        }
    }

    pub(crate) fn server_rss(&self) -> Option<u64> {
        self.server.as_ref()?.0.rss_bytes()
    }

    /// Percent of one core (server, weir-bench) over `elapsed`.
    pub(crate) fn cpu_over(&self, elapsed: Duration) -> (Option<f64>, Option<f64>) {
        (
            self.server
                .as_ref()
                .and_then(|(_, meter)| meter.percent_over(elapsed)),
            self.bench.percent_over(elapsed),
        )
    }
}

/// Waits for the run's workers, showing progress on stderr (when it is a terminal) and
/// sampling the server's memory every 100 ms. `expected`: `Some(total)` to show progress
/// against a message count, `None` against `duration`. `should_stop` is asked at each sample
/// whether the scenario wants the run ended now.
pub(crate) fn watch(
    run: &Run,
    meters: &Meters,
    expected: Option<u64>,
    duration: Option<Duration>,
    mut should_stop: impl FnMut(&Shared, Duration) -> bool,
) -> Watched {
    let bar = match (expected, duration) {
        (Some(total), _) => ProgressBar::new(total),
        (None, Some(duration)) => ProgressBar::new(duration.as_millis() as u64),
        (None, None) => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut watched = Watched::default();
    let mut last_stop_check = false;
    while !run.is_finished() {
        thread::sleep(WATCH_INTERVAL);
        let elapsed = run.start.elapsed();
        let published = run.shared.total_published();
        match (expected, duration) {
            (Some(_), _) => bar.set_position(published),
            (None, Some(_)) => bar.set_position(elapsed.as_millis() as u64),
            (None, None) => bar.tick(),
        }
        bar.set_message(format!(
            "published {}, received {}",
            thousands(published),
            thousands(run.shared.total_received())
        ));
        if let Some(rss) = meters.server_rss() {
            watched.peak_rss = Some(watched.peak_rss.map_or(rss, |peak| peak.max(rss)));
        }
        if !last_stop_check && (interrupted().is_some() || should_stop(&run.shared, elapsed)) {
            last_stop_check = true;
            run.stop();
        }
    }
    bar.finish_and_clear();
    watched
}

const WATCH_INTERVAL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(target: &str, rate: f64, clean: bool) -> Outcome {
        Outcome {
            target: target.into(),
            metrics: vec![Metric::new("rate", "msg/s", Some(rate))],
            notes: vec![format!("note of {target}")],
            is_clean: clean,
            text: String::new(),
            json: Value::Null,
        }
    }

    #[test]
    fn summaries_take_median_and_range_per_target_and_ratios_of_the_first() {
        let outcomes = [
            outcome("weir://a:1", 10.0, true),
            outcome("nats://b:1", 4.0, true),
            outcome("weir://a:1", 30.0, true),
            outcome("nats://b:1", 5.0, false),
            outcome("weir://a:1", 20.0, true),
            outcome("nats://b:1", 6.0, true),
        ];
        let a = Summary::of(&"weir://a:1".parse().unwrap(), &outcomes);
        let b = Summary::of(&"nats://b:1".parse().unwrap(), &outcomes);
        assert_eq!(
            a.stats("rate"),
            Some(Stats {
                median: 20.0,
                min: 10.0,
                max: 30.0
            })
        );
        assert!(a.is_clean && !b.is_clean);
        assert_eq!(a.notes, ["note of weir://a:1"], "notes are not repeated");
        assert_eq!((a.label, b.label), ("weir", "nats"));
        assert_eq!(ratios(&[a, b], "rate"), [("nats://b:1".to_owned(), 4.0)]);
    }

    #[test]
    fn stats_are_formatted_as_median_and_range() {
        let stats = Stats {
            median: 1_234_567.4,
            min: 1_000_000.0,
            max: 2_000_000.0,
        };
        assert_eq!(format_stats(stats, 0), "1,234,567 (1,000,000–2,000,000)");
        let one = Stats {
            median: 2.5,
            min: 2.5,
            max: 2.5,
        };
        assert_eq!(format_stats(one, 1), "2.5");
        assert_eq!(format_value(-3.0, 0), "-3");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |secs| utc_timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_591_308), "2026-12-06T21:08:28Z");
    }

    #[test]
    fn a_refused_connection_names_the_address() {
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused");
        assert_eq!(
            name_address(refused, "127.0.0.1:1").to_string(),
            "127.0.0.1:1: Connection refused"
        );
        let named = io::Error::other("127.0.0.1:1: Connection refused");
        assert_eq!(
            name_address(named, "127.0.0.1:1").to_string(),
            "127.0.0.1:1: Connection refused"
        );
    }

    #[test]
    fn topics_are_unique_per_run_and_checked() {
        assert_ne!(run_topic("t"), run_topic("t"));
        assert!(check_topic("bench").is_ok());
        for bad in ["", "a b", "a.*", "a/#", "a.>"] {
            assert!(check_topic(bad).is_err(), "{bad:?}");
        }
    }
}
