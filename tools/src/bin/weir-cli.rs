//! weir-cli: publish to, subscribe to and inspect a Weir server from the shell.
//!
//! Flags follow nats / mosquitto_pub / redis-cli habits (STYLE.md §13): `-s/--server` or
//! `WEIR_SERVER`, `-W/--timeout`, `-n/--count`, `-v`, `--json`. Errors go to stderr with exit
//! status 1; usage errors exit 2 (clap).
//!
//! `pub` and `sub` keep running across connection cuts (`weir::client::ReconnectingClient`):
//! `pub` sends again what the server did not receipt, `sub` prints each message once, in
//! order. Each resume, and each loss when the session could not be resumed, is reported on
//! stderr.
//!
//! Credentials never come from a flag value (they would show in `ps`): `--user NAME` takes the
//! password from `WEIR_PASSWORD`; without `--user`, `WEIR_TOKEN` (a user's token) or
//! `WEIR_SIGNED_TOKEN` (a signed token) is sent if set.

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use weir::client::{
    Client, ClientError, ClientOptions, Credentials, Event, ReconnectOptions, ReconnectingClient,
    TlsOptions, DEFAULT_TIMEOUT,
};
use weir::protocol::stats::{SessionStats, StatsReport};

#[derive(Debug, Parser)]
#[command(
    name = "weir-cli",
    version,
    about = "Publish to, subscribe to and inspect a Weir server"
)]
struct Cli {
    /// Server address.
    #[arg(
        short = 's',
        long,
        env = "WEIR_SERVER",
        default_value = "127.0.0.1:7400",
        value_name = "HOST:PORT",
        global = true
    )]
    server: String,

    /// Give up waiting for the server after SECS seconds (connecting, receipts, replies;
    /// default 10). For `sub`: stop after SECS seconds without a message.
    #[arg(short = 'W', long, value_name = "SECS", value_parser = parse_secs, global = true)]
    timeout: Option<Duration>,

    /// Authenticate as this user, with the password from the WEIR_PASSWORD environment
    /// variable. Without it, WEIR_TOKEN or WEIR_SIGNED_TOKEN is used when set.
    #[arg(short = 'u', long, value_name = "NAME", global = true)]
    user: Option<String>,

    /// Connect over TLS, trusting the CA certificates in this PEM file.
    #[arg(long, value_name = "PATH", global = true)]
    tls_ca: Option<PathBuf>,

    /// The server name checked against its certificate (default: the host part of --server).
    #[arg(long, value_name = "NAME", global = true, requires = "tls_ca")]
    tls_name: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish MESSAGE, or one message per line of stdin; wait for the server's receipt.
    Pub(PubArgs),
    /// Subscribe to a queue and print each message's payload on its own line.
    Sub(SubArgs),
    /// Print the server's introspection report.
    Stats(StatsArgs),
    /// Print one line per session: id, client name, identity, peer, state, subscriptions,
    /// queue depth and bytes, in flight, throttled.
    Sessions,
}

#[derive(Debug, Args)]
struct PubArgs {
    /// Queue to publish to.
    queue: String,
    /// Event name of the messages (may be "").
    event: String,
    /// The payload; without it, each line of stdin is one message (newline removed).
    message: Option<String>,
    /// Publish each message N times.
    #[arg(short = 'n', long = "count", value_name = "N", default_value_t = 1)]
    count: u64,
    /// Conflation key: a newer message with the same queue, event and key replaces an older
    /// one still waiting to be sent to a subscriber.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
}

#[derive(Debug, Args)]
struct SubArgs {
    /// Queue to subscribe to.
    queue: String,
    /// Events to subscribe to; none means every event of the queue.
    events: Vec<String>,
    /// Exit after N messages (otherwise run until killed or the server ends the session).
    #[arg(short = 'n', long = "count", value_name = "N")]
    count: Option<u64>,
    /// Print "QUEUE EVENT " before each payload.
    #[arg(short = 'v', long)]
    verbose: bool,
}

#[derive(Debug, Args)]
struct StatsArgs {
    /// Print the raw JSON document instead of a summary.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(problem) = credentials(&cli) {
        eprintln!("weir-cli: {problem}");
        return ExitCode::from(2);
    }
    let result = match &cli.command {
        Command::Pub(args) => publish(&cli, args),
        Command::Sub(args) => subscribe(&cli, args),
        Command::Stats(args) => stats(&cli, args),
        Command::Sessions => sessions(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("weir-cli: {failure}");
            ExitCode::FAILURE
        }
    }
}

/// Why a command failed; printed on stderr.
#[derive(Debug)]
enum Failure {
    Client(ClientError),
    Connect { server: String, error: ClientError },
    Stats(serde_json::Error),
    Stdin(io::Error),
    Stdout(io::Error),
    TimedOut { received: u64, wanted: u64 },
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        Failure::Client(error)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Client(e) => write!(f, "{e}"),
            Failure::Connect { server, error } => write!(f, "cannot connect to {server}: {error}"),
            Failure::Stats(e) => write!(f, "the server's stats report does not parse: {e}"),
            Failure::Stdin(e) => write!(f, "reading stdin: {e}"),
            Failure::Stdout(e) => write!(f, "writing stdout: {e}"),
            Failure::TimedOut { received, wanted } => {
                write!(f, "timed out after {received} of {wanted} messages")
            }
        }
    }
}

fn client_options(cli: &Cli) -> ClientOptions {
    ClientOptions {
        name: String::from("weir-cli"),
        inflight_window: 0,
        timeout: Some(cli.timeout.unwrap_or(DEFAULT_TIMEOUT)),
        // Checked in `main`.
        auth: credentials(cli).ok().flatten(),
    }
}

/// Credentials from `--user` and the environment (never from a flag value).
fn credentials(cli: &Cli) -> Result<Option<Credentials>, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(user) = &cli.user {
        let password = var("WEIR_PASSWORD")
            .ok_or_else(|| "--user needs the password in the WEIR_PASSWORD variable".to_owned())?;
        return Ok(Some(Credentials::password(user, &password)));
    }
    if let Some(token) = var("WEIR_TOKEN") {
        return Ok(Some(Credentials::token(&token)));
    }
    Ok(var("WEIR_SIGNED_TOKEN").map(|token| Credentials::signed_token(&token)))
}

/// TLS from `--tls-ca` and `--tls-name`, if asked for.
fn tls_options(cli: &Cli) -> Option<TlsOptions> {
    let ca = cli.tls_ca.as_ref()?;
    let name = cli
        .tls_name
        .clone()
        .unwrap_or_else(|| host_part(&cli.server).to_owned());
    Some(TlsOptions::ca_file(&name, ca))
}

/// "host" of "host:port" or "[v6]:port"; the whole text when there is no port.
fn host_part(server: &str) -> &str {
    let host = match server.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => server,
    };
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

fn connect(cli: &Cli) -> Result<Client, Failure> {
    let options = client_options(cli);
    let server = cli.server.as_str();
    match tls_options(cli) {
        Some(tls) => Client::connect_tls(server, &options, &tls),
        None => Client::connect(server, &options),
    }
    .map_err(|error| Failure::Connect {
        server: cli.server.clone(),
        error,
    })
}

/// A client for `pub` and `sub`: it reconnects and resumes after a cut, with the library's
/// default backoff and limits.
fn connect_reconnecting(cli: &Cli) -> Result<ReconnectingClient, Failure> {
    let options = ReconnectOptions::default();
    let client_options = client_options(cli);
    let server = cli.server.as_str();
    match tls_options(cli) {
        Some(tls) => ReconnectingClient::connect_tls(server, &client_options, &tls, &options),
        None => ReconnectingClient::connect(server, &client_options, &options),
    }
    .map_err(|error| Failure::Connect {
        server: cli.server.clone(),
        error,
    })
}

fn publish(cli: &Cli, args: &PubArgs) -> Result<(), Failure> {
    let mut client = connect_reconnecting(cli)?;
    let publish_one = |client: &mut ReconnectingClient, payload: &[u8]| {
        for _ in 0..args.count {
            match &args.key {
                Some(key) => client.publish_conflated(&args.queue, &args.event, key, payload)?,
                None => client.publish(&args.queue, &args.event, payload)?,
            };
            report_reconnections(client);
        }
        Ok::<(), ClientError>(())
    };
    match &args.message {
        Some(message) => publish_one(&mut client, message.as_bytes())?,
        None => publish_lines(&mut client, publish_one)?,
    }
    let waited = client.wait_receipted();
    report_reconnections(&mut client);
    waited?;
    client.bye()?;
    Ok(())
}

/// Publishes each line of stdin. Lines are read on a thread so that, while stdin is idle (a
/// pipe fed slowly, `tail -f`), the client can ping the server: it reads only inside a call,
/// and a session the server hears nothing from for `heartbeat_timeout_ms` is detached.
fn publish_lines(
    client: &mut ReconnectingClient,
    publish_one: impl Fn(&mut ReconnectingClient, &[u8]) -> Result<(), ClientError>,
) -> Result<(), Failure> {
    let (lines, read) = mpsc::sync_channel::<io::Result<Vec<u8>>>(LINE_QUEUE_LEN);
    thread::spawn(move || {
        let mut stdin = BufReader::with_capacity(STDIN_BUF_BYTES, io::stdin().lock());
        loop {
            let mut line = Vec::new();
            let result = match stdin.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => Ok(line),
                Err(e) => Err(e),
            };
            let failed = result.is_err();
            if lines.send(result).is_err() || failed {
                return;
            }
        }
    });
    let keepalive = keepalive_interval(client.welcome().heartbeat_timeout_ms);
    loop {
        let line = match read.try_recv() {
            Ok(line) => line,
            Err(TryRecvError::Disconnected) => return Ok(()),
            Err(TryRecvError::Empty) => {
                // Nothing more read yet: send what is buffered before waiting.
                client.flush()?;
                report_reconnections(client);
                loop {
                    match read.recv_timeout(keepalive) {
                        Ok(line) => break line,
                        Err(RecvTimeoutError::Timeout) => {
                            client.ping()?;
                            report_reconnections(client);
                        }
                        Err(RecvTimeoutError::Disconnected) => return Ok(()),
                    }
                }
            }
        };
        let line = line.map_err(Failure::Stdin)?;
        publish_one(client, strip_newline(&line))?;
    }
}

/// How long `pub` lets stdin stay idle before it pings: a third of the server's heartbeat
/// timeout leaves room for one slow round trip.
fn keepalive_interval(heartbeat_timeout_ms: u32) -> Duration {
    if heartbeat_timeout_ms == 0 {
        return DEFAULT_TIMEOUT;
    }
    Duration::from_millis(u64::from(heartbeat_timeout_ms / 3)).max(Duration::from_millis(10))
}

/// Says on stderr when `pub` resumed or lost its session (it reads no deliveries, so the
/// events are only these).
fn report_reconnections(client: &mut ReconnectingClient) {
    while let Some(event) = client.try_recv() {
        if let Some(text) = reconnection_notice(&event) {
            eprintln!("{text}");
        }
    }
}

/// The stderr line for a resume or a loss; `None` for other events.
fn reconnection_notice(event: &Event) -> Option<String> {
    match event {
        Event::Resumed { session_id, resent } => {
            let mut text = format!("weir-cli: resumed session {session_id:#x}");
            if *resent > 0 {
                text += &format!(", {resent} unreceipted publishes sent again");
            }
            Some(text)
        }
        Event::Lost {
            reason,
            missed,
            session_id,
            republished,
        } => {
            let reason = reason.map_or("an unknown reason", |code| code.name());
            let missed = match missed {
                Some(n) => format!("{n} messages missed"),
                None => String::from("an unknown number of messages missed"),
            };
            let mut text = format!(
                "weir-cli: LOST the session ({reason}): {missed}; continuing in session \
                 {session_id:#x}"
            );
            if *republished > 0 {
                text += &format!(", {republished} unreceipted publishes published again");
            }
            Some(text)
        }
        _ => None,
    }
}

fn subscribe(cli: &Cli, args: &SubArgs) -> Result<(), Failure> {
    let mut client = connect_reconnecting(cli)?;
    if args.events.is_empty() {
        client.subscribe_all(&args.queue)?;
    } else {
        for event in &args.events {
            client.subscribe(&args.queue, event)?;
        }
    }
    let mut out = BufWriter::with_capacity(STDOUT_BUF_BYTES, io::stdout().lock());
    let mut received = 0u64;
    let mut idle_since = Instant::now();
    let wanted = args.count.unwrap_or(u64::MAX);
    while received < wanted {
        let event = match client.try_recv() {
            Some(event) => event,
            None => {
                // Everything received is printed: show it before waiting for more.
                match out.flush() {
                    Ok(()) => {}
                    // The reader went away (`weir-cli sub q | head -1`): end quietly.
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(client.bye()?),
                    Err(e) => return Err(Failure::Stdout(e)),
                }
                let wait = match cli.timeout {
                    Some(timeout) => {
                        let left = timeout.saturating_sub(idle_since.elapsed());
                        if left.is_zero() {
                            break;
                        }
                        left
                    }
                    None => IDLE_WAIT,
                };
                match client.recv_timeout(wait)? {
                    Some(event) => event,
                    None => continue,
                }
            }
        };
        if let Some(text) = reconnection_notice(&event) {
            // Lines printed before the notice come before it.
            let _ = out.flush();
            eprintln!("{text}");
            continue;
        }
        let Event::Deliver(delivery) = event else {
            continue;
        };
        // The client acks each delivery once it has handed it over; a message lost to a failed
        // write is not delivered again (the session ends with this process anyway).
        match print_delivery(&mut out, args.verbose, &delivery.as_deliver()) {
            Ok(()) => {
                received += 1;
                idle_since = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(client.bye()?),
            Err(e) => return Err(Failure::Stdout(e)),
        }
    }
    match out.flush() {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(Failure::Stdout(e)),
    }
    client.bye()?;
    match args.count {
        Some(wanted) if received < wanted => Err(Failure::TimedOut { received, wanted }),
        _ => Ok(()),
    }
}

fn print_delivery(
    out: &mut impl Write,
    verbose: bool,
    delivery: &weir::client::Deliver<'_>,
) -> io::Result<()> {
    if verbose {
        out.write_all(delivery.queue)?;
        out.write_all(b" ")?;
        out.write_all(delivery.event)?;
        out.write_all(b" ")?;
    }
    out.write_all(delivery.payload)?;
    out.write_all(b"\n")
}

fn stats(cli: &Cli, args: &StatsArgs) -> Result<(), Failure> {
    let mut client = connect(cli)?;
    let json = client.stats()?;
    client.bye()?;
    let text = if args.json {
        json
    } else {
        let report: StatsReport = serde_json::from_str(&json).map_err(Failure::Stats)?;
        summarize(&report)
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{}", text.trim_end())
        .and_then(|()| out.flush())
        .map_err(Failure::Stdout)
}

fn sessions(cli: &Cli) -> Result<(), Failure> {
    let mut client = connect(cli)?;
    let json = client.stats()?;
    client.bye()?;
    let report: StatsReport = serde_json::from_str(&json).map_err(Failure::Stats)?;
    let mut out = io::stdout().lock();
    let mut text = String::new();
    for session in &report.sessions {
        text += &session_line(session);
        text.push('\n');
    }
    if report.sessions_omitted > 0 {
        text += &format!("... {} more sessions not shown\n", report.sessions_omitted);
    }
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Failure::Stdout)
}

/// One session on one line, `key=value` after the id so it greps and cuts well.
fn session_line(session: &SessionStats) -> String {
    let subscriptions: Vec<String> = session
        .subscriptions
        .iter()
        .map(|sub| match &sub.event {
            Some(event) => format!("{}:{event}", sub.queue),
            None => format!("{}:*", sub.queue),
        })
        .collect();
    let mut line = format!("#{} name={:?}", session.session_id, session.client_name);
    if !session.identity.is_empty() {
        line += &format!(" identity={}", session.identity);
    }
    line += &format!(
        " peer={} state={} subs={} queue={}/{}B in_flight={} throttled={}",
        session.peer,
        session.state,
        if subscriptions.is_empty() {
            String::from("-")
        } else {
            subscriptions.join(",")
        },
        session.queue_depth,
        session.queue_bytes,
        session.in_flight,
        if session.is_throttled { "yes" } else { "no" },
    );
    line
}

/// The STATS report as text for people: server figures, each session with its subscriptions
/// and queue, each queue with its subscribers and publish count.
fn summarize(report: &StatsReport) -> String {
    let server = &report.server;
    let mut text = format!(
        "server: {} connections, {} sessions, {} queues\n",
        server.connections, server.sessions, server.queues
    );
    text += &format!(
        "  messages: {} published, {} delivered, {} acked, {} conflated, {} dropped by overflow, \
         {} dropped by closed sessions, {} duplicate publishes\n",
        server.messages_published,
        server.messages_delivered,
        server.messages_acked,
        server.messages_conflated,
        server.messages_dropped_overflow,
        server.messages_dropped_session_closed,
        server.messages_duplicate
    );
    text += &format!(
        "  stored: {} messages, {} bytes\n",
        server.stored_messages, server.stored_bytes
    );
    text += &format!(
        "  connections: {} accepted, {} refused; {} bytes in, {} bytes out\n",
        server.connections_accepted, server.connections_refused, server.bytes_in, server.bytes_out
    );
    if !server.closes.is_empty() {
        let closes: Vec<String> = server
            .closes
            .iter()
            .map(|(reason, count)| format!("{reason} {count}"))
            .collect();
        text += &format!("  closes: {}\n", closes.join(", "));
    }

    text += &format!("\nsessions ({}):\n", report.sessions.len());
    if report.sessions.is_empty() {
        text += "  none\n";
    }
    for session in &report.sessions {
        text += &summarize_session(session);
    }
    if report.sessions_omitted > 0 {
        text += &format!(
            "  ... {} more sessions not shown (the report is limited to one frame)\n",
            report.sessions_omitted
        );
    }

    text += &format!("\nqueues ({}):\n", report.queues.len());
    if report.queues.is_empty() {
        text += "  none\n";
    }
    let width = report
        .queues
        .iter()
        .map(|queue| queue.name.chars().count())
        .max()
        .unwrap_or(0);
    for queue in &report.queues {
        text += &format!(
            "  {:<width$}  {} subscribers, {} published{}\n",
            queue.name,
            queue.subscribers,
            queue.published,
            if queue.conflate { ", conflating" } else { "" },
        );
    }
    text
}

fn summarize_session(session: &SessionStats) -> String {
    let subscriptions: Vec<String> = session
        .subscriptions
        .iter()
        .map(|sub| match &sub.event {
            Some(event) => format!("{}:{event}", sub.queue),
            None => format!("{} (all events)", sub.queue),
        })
        .collect();
    let subscriptions = if subscriptions.is_empty() {
        String::from("none")
    } else {
        subscriptions.join(", ")
    };
    format!(
        "  #{} {:?} from {}, {}\n    subscriptions: {}\n    queue: {} messages, {} bytes \
         ({} in flight, {} pending)\n    published {} (last seq {}), delivered {} (last seq \
         {}), acked {}, conflated {}\n",
        session.session_id,
        session.client_name,
        session.peer,
        session.state,
        subscriptions,
        session.queue_depth,
        session.queue_bytes,
        session.in_flight,
        session.pending,
        session.published,
        session.last_publish_seq,
        session.delivered,
        session.last_delivery_seq,
        session.acked,
        session.conflated,
    )
}

fn strip_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err(String::from("the timeout must be more than 0 seconds"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// Read size for stdin lines: large pipes in few syscalls.
const STDIN_BUF_BYTES: usize = 64 * 1024;

/// Lines read ahead of the publisher; bounds memory when stdin is faster than the server.
const LINE_QUEUE_LEN: usize = 4096;

/// Payloads are written in batches, flushed whenever `sub` is about to wait.
const STDOUT_BUF_BYTES: usize = 64 * 1024;

/// Each wait of `sub` without `-W`; it waits again after this, for ever.
const IDLE_WAIT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use weir::protocol::stats::{QueueStats, ServerStats, SubscriptionStats};

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn newlines_are_removed_from_stdin_lines() {
        assert_eq!(strip_newline(b"a\n"), b"a");
        assert_eq!(strip_newline(b"a\r\n"), b"a");
        assert_eq!(strip_newline(b"a"), b"a");
        assert_eq!(strip_newline(b"\n"), b"");
    }

    #[test]
    fn resumes_and_losses_are_reported_in_one_line() {
        let resumed = Event::Resumed {
            session_id: 0x2a,
            resent: 0,
        };
        assert_eq!(
            reconnection_notice(&resumed).unwrap(),
            "weir-cli: resumed session 0x2a"
        );
        let lost = Event::Lost {
            reason: Some(weir::protocol::ErrorCode::SessionExpired),
            missed: Some(7),
            session_id: 0x2b,
            republished: 3,
        };
        assert_eq!(
            reconnection_notice(&lost).unwrap(),
            "weir-cli: LOST the session (SESSION_EXPIRED): 7 messages missed; continuing in \
             session 0x2b, 3 unreceipted publishes published again"
        );
        let unknown = Event::Lost {
            reason: None,
            missed: None,
            session_id: 1,
            republished: 0,
        };
        assert!(reconnection_notice(&unknown)
            .unwrap()
            .contains("an unknown number of messages missed"));
        assert_eq!(reconnection_notice(&Event::Receipt(1)), None);
    }

    #[test]
    fn timeouts_are_positive_seconds() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("NaN").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn the_summary_shows_sessions_with_subscriptions_and_queues() {
        let report = StatsReport {
            server: ServerStats {
                connections: 2,
                sessions: 2,
                queues: 1,
                messages_published: 5,
                closes: [(String::from("CLIENT_BYE"), 3)].into_iter().collect(),
                ..ServerStats::default()
            },
            sessions: vec![SessionStats {
                session_id: 4,
                client_name: String::from("weir-cli"),
                peer: String::from("127.0.0.1:5000"),
                state: String::from("connected"),
                subscriptions: vec![
                    SubscriptionStats {
                        queue: String::from("db"),
                        event: Some(String::from("update")),
                    },
                    SubscriptionStats {
                        queue: String::from("db"),
                        event: None,
                    },
                ],
                queue_depth: 7,
                in_flight: 2,
                pending: 5,
                ..SessionStats::default()
            }],
            queues: vec![QueueStats {
                name: String::from("db"),
                conflate: true,
                subscribers: 1,
                published: 5,
            }],
            sessions_omitted: 1,
            closed_sessions: Vec::new(),
            ..StatsReport::default()
        };
        let text = summarize(&report);
        assert!(
            text.starts_with("server: 2 connections, 2 sessions, 1 queues\n"),
            "{text}"
        );
        assert!(text.contains("closes: CLIENT_BYE 3"), "{text}");
        assert!(
            text.contains("#4 \"weir-cli\" from 127.0.0.1:5000, connected"),
            "{text}"
        );
        assert!(
            text.contains("subscriptions: db:update, db (all events)"),
            "{text}"
        );
        assert!(
            text.contains("queue: 7 messages, 0 bytes (2 in flight, 5 pending)"),
            "{text}"
        );
        assert!(text.contains("1 more sessions not shown"), "{text}");
        assert!(
            text.contains("  db  1 subscribers, 5 published, conflating\n"),
            "{text}"
        );
    }

    #[test]
    fn the_tls_name_defaults_to_the_host_of_the_server_address() {
        assert_eq!(host_part("broker.example:7400"), "broker.example");
        assert_eq!(host_part("[::1]:7400"), "::1");
        assert_eq!(host_part("localhost"), "localhost");
    }

    #[test]
    fn a_session_line_shows_identity_subscriptions_queue_and_throttling() {
        let mut session = SessionStats {
            session_id: 9,
            client_name: String::from("sub one"),
            peer: String::from("127.0.0.1:5000"),
            identity: String::from("user:alice"),
            state: String::from("connected"),
            subscriptions: vec![
                SubscriptionStats {
                    queue: String::from("db"),
                    event: Some(String::from("update")),
                },
                SubscriptionStats {
                    queue: String::from("jobs"),
                    event: None,
                },
            ],
            queue_depth: 7,
            queue_bytes: 700,
            in_flight: 2,
            is_throttled: true,
            ..SessionStats::default()
        };
        assert_eq!(
            session_line(&session),
            "#9 name=\"sub one\" identity=user:alice peer=127.0.0.1:5000 state=connected \
             subs=db:update,jobs:* queue=7/700B in_flight=2 throttled=yes"
        );
        session.identity.clear();
        session.subscriptions.clear();
        session.is_throttled = false;
        assert_eq!(
            session_line(&session),
            "#9 name=\"sub one\" peer=127.0.0.1:5000 state=connected subs=- queue=7/700B \
             in_flight=2 throttled=no"
        );
    }
}
