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

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::{ArgAction, Args, Parser, Subcommand};
use weir::client::{
    Client, ClientError, ClientOptions, Credentials, Event, ReconnectOptions, ReconnectingClient,
    TlsOptions, DEFAULT_TIMEOUT,
};
use weir::protocol::stats::{hex_id, SessionStats, StatsReport};

#[derive(Debug, Parser)]
#[command(
    name = "weir-cli",
    version,
    about = "Publish to, subscribe to and inspect a Weir server",
    disable_help_flag = true,
    after_help = "The server is -s HOST[:PORT] (nats habit) or -h HOST -p PORT (redis-cli and \
                  mosquitto habit); the port defaults to 7400. -h without a value, or before \
                  another option, is --help. Exit status: 0 done, 1 error (connection, server \
                  error, timeout), 2 usage error, 130/143 ended by SIGINT/SIGTERM after a clean \
                  BYE (a second signal ends it at once)."
)]
struct Cli {
    /// Server address; the port defaults to 7400.
    #[arg(
        short = 's',
        long,
        env = "WEIR_SERVER",
        default_value = "127.0.0.1:7400",
        value_name = "HOST[:PORT]",
        global = true
    )]
    server: String,

    /// Server host, replacing the host of --server (redis-cli / mosquitto `-h`).
    #[arg(short = 'h', long, value_name = "HOST", global = true)]
    host: Option<String>,

    /// Server port, replacing the port of --server (redis-cli / mosquitto `-p`).
    #[arg(short = 'p', long, value_name = "PORT", global = true)]
    port: Option<u16>,

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

    /// Print help.
    #[arg(long, action = ArgAction::Help, global = true)]
    help: Option<bool>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish a message and wait for the server's receipt.
    #[command(
        disable_help_flag = true,
        override_usage = "weir-cli pub [OPTIONS] QUEUE [EVENT] MESSAGE\n       \
                          weir-cli pub [OPTIONS] -e EVENT QUEUE MESSAGE\n       \
                          weir-cli pub [OPTIONS] -l QUEUE [EVENT]       (one message per line of \
                          stdin)\n       \
                          weir-cli pub [OPTIONS] --stdin QUEUE [EVENT]  (all of stdin, one \
                          message)",
        after_help = "With two words, `pub db hello` publishes \"hello\" with the empty event \
                      (nats and redis-cli habit). Stdin is read only with -l or --stdin. \
                      Examples:\n  weir-cli pub db update 'hello weir'\n  seq 1 5 | weir-cli \
                      pub -l db insert\n  weir-cli pub --stdin db blob < file.bin"
    )]
    Pub(PubArgs),
    /// Subscribe to a queue and print each message's payload on its own line.
    #[command(
        disable_help_flag = true,
        after_help = "Plain output writes a newline, carriage return or backslash inside a \
                      payload as \\n, \\r or \\\\, so that each message is one line; --json \
                      gives the exact bytes. SIGINT or SIGTERM acks what was printed, ends the \
                      session with BYE and exits 130 or 143."
    )]
    Sub(SubArgs),
    /// Print the server's introspection report.
    #[command(disable_help_flag = true)]
    Stats(StatsArgs),
    /// Print one line per session: id, client name, identity, peer, state, subscriptions,
    /// queue depth and bytes, in flight, throttled.
    #[command(disable_help_flag = true)]
    Sessions,
}

#[derive(Debug, Args)]
struct PubArgs {
    /// QUEUE [EVENT] MESSAGE; QUEUE MESSAGE with -e; QUEUE [EVENT] with -l or --stdin.
    #[arg(value_name = "QUEUE [EVENT] MESSAGE", required = true, num_args = 1..=3)]
    words: Vec<String>,
    /// Event name of the messages (default: the second of three words, else "").
    #[arg(short = 'e', long, value_name = "EVENT")]
    event: Option<String>,
    /// Read messages from stdin, one per line (newline removed), like mosquitto_pub -l.
    #[arg(short = 'l', long = "lines", conflicts_with = "whole_stdin")]
    lines: bool,
    /// Read all of stdin as one message, like mosquitto_pub -s.
    #[arg(long = "stdin")]
    whole_stdin: bool,
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
    /// -v prints "QUEUE EVENT " before each payload (an empty event as ""); -vv also
    /// "seq=N id=N " and "redelivered " for a message sent again after a resume.
    #[arg(short = 'v', long, action = ArgAction::Count)]
    verbose: u8,
    /// Print one JSON object per message: queue, event, seq, id, redelivered, payload and
    /// encoding ("utf8", or "base64" for a payload that is not valid UTF-8).
    #[arg(long, conflicts_with = "verbose")]
    json: bool,
}

#[derive(Debug, Args)]
struct StatsArgs {
    /// Print the raw JSON document instead of a summary.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse_from(help_for_bare_h(std::env::args_os()));
    match server_address(&cli.server, cli.host.as_deref(), cli.port) {
        Ok(server) => cli.server = server,
        Err(problem) => {
            eprintln!("weir-cli: --server {:?}: {problem}", cli.server);
            return ExitCode::from(2);
        }
    }
    if let Err(problem) = credentials(&cli) {
        eprintln!("weir-cli: {problem}");
        return ExitCode::from(2);
    }
    let stop = match Stop::install() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("weir-cli: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match &cli.command {
        Command::Pub(args) => match PubPlan::from_args(args) {
            Ok(plan) => publish(&cli, args, &plan, &stop),
            Err(problem) => {
                eprintln!("weir-cli pub: {problem}");
                return ExitCode::from(2);
            }
        },
        Command::Sub(args) => subscribe(&cli, args, &stop),
        Command::Stats(args) => stats(&cli, args),
        Command::Sessions => sessions(&cli),
    };
    match result {
        Ok(()) => match stop.signal() {
            // The shell's convention for a process ended by a signal: 128 + its number.
            Some(signal) => ExitCode::from(128 + signal as u8),
            None => ExitCode::SUCCESS,
        },
        Err(failure) => {
            eprintln!("weir-cli: {failure}");
            ExitCode::FAILURE
        }
    }
}

/// `-h` is the host when a value follows it (redis-cli, mosquitto); alone, or before another
/// option, it is help, as users of most tools expect.
fn help_for_bare_h(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    for i in 1..args.len() {
        if args[i] == "--" {
            break;
        }
        let is_value =
            |next: Option<&OsString>| next.is_some_and(|n| !n.to_string_lossy().starts_with('-'));
        if args[i] == "-h" && !is_value(args.get(i + 1)) {
            args[i] = OsString::from("--help");
        }
    }
    args
}

/// The address to connect to from `--server` and the `-h`/`-p` overrides: "host:port", with
/// IPv6 hosts in brackets; the port defaults to [`DEFAULT_PORT`].
fn server_address(server: &str, host: Option<&str>, port: Option<u16>) -> Result<String, String> {
    let (server_host, server_port) = split_host_port(server)?;
    let host = host.unwrap_or(server_host);
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    let port = port.or(server_port).unwrap_or(DEFAULT_PORT);
    if host.contains(':') {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(format!("[{host}]:{port}"))
    } else {
        Ok(format!("{host}:{port}"))
    }
}

/// "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address → (host, port).
fn split_host_port(server: &str) -> Result<(&str, Option<u16>), String> {
    let parse_port = |port: &str| {
        port.parse::<u16>()
            .map_err(|_| format!("{port:?} is not a port number"))
    };
    if let Some(rest) = server.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| String::from("an IPv6 address needs its closing ]"))?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(parse_port(port)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("unexpected {after:?} after the address")),
        };
    }
    match server.split_once(':') {
        // Two colons or more: a bare IPv6 address, without a port.
        Some((_, rest)) if rest.contains(':') => Ok((server, None)),
        Some((host, port)) => Ok((host, Some(parse_port(port)?))),
        None => Ok((server, None)),
    }
}

/// SIGINT and SIGTERM as a flag the loops check: the session then ends cleanly (acks, BYE)
/// instead of being left detached on the server. A second signal ends the process at once.
#[derive(Debug)]
struct Stop(Arc<AtomicUsize>);

impl Stop {
    fn install() -> io::Result<Stop> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let caught = Arc::new(AtomicUsize::new(0));
        for signal in [SIGINT, SIGTERM] {
            let again = Arc::new(std::sync::atomic::AtomicBool::new(false));
            signal_hook::flag::register_conditional_shutdown(
                signal,
                128 + signal,
                Arc::clone(&again),
            )?;
            signal_hook::flag::register(signal, again)?;
            signal_hook::flag::register_usize(signal, Arc::clone(&caught), signal as usize)?;
        }
        Ok(Stop(caught))
    }

    /// The signal received, if any.
    fn signal(&self) -> Option<i32> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            signal => Some(signal as i32),
        }
    }
}

/// Why a command failed; printed on stderr.
#[derive(Debug)]
enum Failure {
    Client(ClientError),
    Connect { server: String, error: ClientError },
    NothingPublished,
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
            Failure::NothingPublished => write!(f, "nothing published: stdin had no lines"),
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

/// What `pub` publishes, from its words and flags.
#[derive(Debug, PartialEq, Eq)]
struct PubPlan {
    queue: String,
    event: String,
    source: Source,
}

#[derive(Debug, PartialEq, Eq)]
enum Source {
    Message(String),
    /// `-l`: one message per line of stdin.
    Lines,
    /// `--stdin`: all of stdin, one message.
    WholeStdin,
}

impl PubPlan {
    /// `QUEUE [EVENT] MESSAGE`, `-e EVENT QUEUE MESSAGE`, `-l|--stdin QUEUE [EVENT]`.
    fn from_args(args: &PubArgs) -> Result<PubPlan, String> {
        let from_stdin = args.lines || args.whole_stdin;
        let words = &args.words;
        let flag = if args.lines { "-l" } else { "--stdin" };
        let (queue, event, message) = match (words.as_slice(), &args.event, from_stdin) {
            ([queue], None, true) => (queue, String::new(), None),
            ([queue], Some(event), true) => (queue, event.clone(), None),
            ([queue, event], None, true) => (queue, event.clone(), None),
            ([..], _, true) => {
                return Err(format!(
                    "with {flag} the message comes from stdin: give QUEUE [EVENT] only \
                     (`weir-cli pub {flag} QUEUE [EVENT]`)"
                ))
            }
            ([queue, message], None, false) => (queue, String::new(), Some(message)),
            ([queue, event, message], None, false) => (queue, event.clone(), Some(message)),
            ([queue, message], Some(event), false) => (queue, event.clone(), Some(message)),
            ([_, _, _], Some(_), false) => {
                return Err(String::from(
                    "the event is given twice (-e and a word): `weir-cli pub -e EVENT QUEUE \
                     MESSAGE`",
                ))
            }
            _ => {
                return Err(String::from(
                    "both a queue and a message must be given: `weir-cli pub QUEUE [EVENT] \
                     MESSAGE`; to read messages from stdin, add -l (one per line) or --stdin \
                     (all of it)",
                ))
            }
        };
        let source = match message {
            Some(message) => Source::Message(message.clone()),
            None if args.lines => Source::Lines,
            None => Source::WholeStdin,
        };
        Ok(PubPlan {
            queue: queue.clone(),
            event,
            source,
        })
    }
}

fn publish(cli: &Cli, args: &PubArgs, plan: &PubPlan, stop: &Stop) -> Result<(), Failure> {
    let mut client = connect_reconnecting(cli)?;
    let publish_one = |client: &mut ReconnectingClient, payload: &[u8]| {
        for _ in 0..args.count {
            match &args.key {
                Some(key) => client.publish_conflated(&plan.queue, &plan.event, key, payload)?,
                None => client.publish(&plan.queue, &plan.event, payload)?,
            };
            report_reconnections(client);
        }
        Ok::<(), ClientError>(())
    };
    match &plan.source {
        Source::Message(message) => {
            if args.words.len() == 2 && args.event.is_none() && stdin_is_a_pipe() {
                // `seq 1 5 | weir-cli pub db insert` read stdin before -l existed.
                eprintln!(
                    "weir-cli: published {message:?} with the empty event; stdin is read only \
                     with -l (one message per line) or --stdin"
                );
            }
            publish_one(&mut client, message.as_bytes())?;
        }
        Source::Lines => {
            tell_if_terminal("one message per line");
            if publish_lines(&mut client, publish_one, stop)? == 0 && stop.signal().is_none() {
                client.bye()?;
                return Err(Failure::NothingPublished);
            }
        }
        Source::WholeStdin => {
            tell_if_terminal("all of it as one message");
            let mut payload = Vec::new();
            io::stdin()
                .lock()
                .read_to_end(&mut payload)
                .map_err(Failure::Stdin)?;
            if stop.signal().is_none() {
                publish_one(&mut client, &payload)?;
            }
        }
    }
    let waited = client.wait_receipted();
    report_reconnections(&mut client);
    waited?;
    client.bye()?;
    Ok(())
}

/// Never wait silently on a terminal: say what stdin is for.
fn tell_if_terminal(how: &str) {
    if io::stdin().is_terminal() {
        eprintln!("weir-cli: reading messages from stdin, {how}; end with Ctrl-D");
    }
}

/// True when stdin is a pipe (data may be waiting that `pub QUEUE MESSAGE` will not read).
fn stdin_is_a_pipe() -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata("/dev/stdin").is_ok_and(|m| m.file_type().is_fifo())
}

/// Publishes each line of stdin; returns how many lines were read. Lines are read on a thread
/// so that, while stdin is idle (a pipe fed slowly, `tail -f`), the client can ping the
/// server: it reads only inside a call, and a session the server hears nothing from for
/// `heartbeat_timeout_ms` is detached. Stops early on SIGINT or SIGTERM.
fn publish_lines(
    client: &mut ReconnectingClient,
    publish_one: impl Fn(&mut ReconnectingClient, &[u8]) -> Result<(), ClientError>,
    stop: &Stop,
) -> Result<u64, Failure> {
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
    let mut count = 0;
    loop {
        if stop.signal().is_some() {
            return Ok(count);
        }
        let line = match read.try_recv() {
            Ok(line) => line,
            Err(TryRecvError::Disconnected) => return Ok(count),
            Err(TryRecvError::Empty) => {
                // Nothing more read yet: send what is buffered before waiting.
                client.flush()?;
                report_reconnections(client);
                let mut idle_since = Instant::now();
                loop {
                    if stop.signal().is_some() {
                        return Ok(count);
                    }
                    match read.recv_timeout(SIGNAL_CHECK.min(keepalive)) {
                        Ok(line) => break line,
                        Err(RecvTimeoutError::Timeout) if idle_since.elapsed() >= keepalive => {
                            client.ping()?;
                            report_reconnections(client);
                            idle_since = Instant::now();
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return Ok(count),
                    }
                }
            }
        };
        let line = line.map_err(Failure::Stdin)?;
        publish_one(client, strip_newline(&line))?;
        count += 1;
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
            let session_id = hex_id::format(*session_id);
            let mut text = format!("weir-cli: resumed session {session_id}");
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
                "weir-cli: LOST the session ({reason}): {missed}; continuing in session {}",
                hex_id::format(*session_id)
            );
            if *republished > 0 {
                text += &format!(", {republished} unreceipted publishes published again");
            }
            Some(text)
        }
        _ => None,
    }
}

fn subscribe(cli: &Cli, args: &SubArgs, stop: &Stop) -> Result<(), Failure> {
    let mut client = connect_reconnecting(cli)?;
    if args.events.is_empty() {
        client.subscribe_all(&args.queue)?;
    } else {
        for event in &args.events {
            client.subscribe(&args.queue, event)?;
        }
    }
    let format = if args.json {
        Format::Json
    } else {
        Format::Plain {
            verbose: args.verbose,
        }
    };
    let mut out = BufWriter::with_capacity(STDOUT_BUF_BYTES, io::stdout().lock());
    let mut received = 0u64;
    let mut idle_since = Instant::now();
    let mut told_disconnect = false;
    let wanted = args.count.unwrap_or(u64::MAX);
    while received < wanted && stop.signal().is_none() {
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
                match client.disconnect_reason() {
                    Some(why) if !told_disconnect => {
                        eprintln!("weir-cli: connection lost ({why}); reconnecting");
                        told_disconnect = true;
                    }
                    Some(_) => {}
                    None => told_disconnect = false,
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
                // Short waits, so that a signal or a lost connection is seen at once.
                match client.recv_timeout(wait.min(SIGNAL_CHECK))? {
                    Some(event) => event,
                    None => continue,
                }
            }
        };
        if let Some(text) = reconnection_notice(&event) {
            // Lines printed before the notice come before it.
            let _ = out.flush();
            eprintln!("{text}");
            told_disconnect = false;
            continue;
        }
        let Event::Deliver(delivery) = event else {
            continue;
        };
        // The client acks each delivery once it has handed it over; a message lost to a failed
        // write is not delivered again (the session ends with this process anyway).
        match print_delivery(&mut out, format, &delivery.as_deliver()) {
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
        Some(wanted) if received < wanted && stop.signal().is_none() => {
            Err(Failure::TimedOut { received, wanted })
        }
        _ => Ok(()),
    }
}

/// How `sub` prints a delivery.
#[derive(Clone, Copy, Debug)]
enum Format {
    /// One line per message, newlines in it escaped; `verbose` 1 adds queue and event, 2 also
    /// seq, message id and the redelivered flag.
    Plain { verbose: u8 },
    /// One JSON object per line.
    Json,
}

fn print_delivery(
    out: &mut impl Write,
    format: Format,
    delivery: &weir::client::Deliver<'_>,
) -> io::Result<()> {
    let verbose = match format {
        Format::Json => {
            let (payload, encoding) = match std::str::from_utf8(delivery.payload) {
                Ok(text) => (text.to_owned(), "utf8"),
                Err(_) => (
                    base64::engine::general_purpose::STANDARD.encode(delivery.payload),
                    "base64",
                ),
            };
            let line = serde_json::json!({
                "queue": String::from_utf8_lossy(delivery.queue),
                "event": String::from_utf8_lossy(delivery.event),
                "seq": delivery.seq,
                "id": delivery.message_id,
                "redelivered": delivery.flags & weir::protocol::frame::DELIVER_REDELIVERED != 0,
                "payload": payload,
                "encoding": encoding,
            });
            writeln!(out, "{line}")?;
            return Ok(());
        }
        Format::Plain { verbose } => verbose,
    };
    if verbose >= 1 {
        write_escaped(out, delivery.queue)?;
        out.write_all(b" ")?;
        if delivery.event.is_empty() {
            out.write_all(b"\"\"")?;
        } else {
            write_escaped(out, delivery.event)?;
        }
        out.write_all(b" ")?;
    }
    if verbose >= 2 {
        write!(out, "seq={} id={} ", delivery.seq, delivery.message_id)?;
        if delivery.flags & weir::protocol::frame::DELIVER_REDELIVERED != 0 {
            out.write_all(b"redelivered ")?;
        }
    }
    write_escaped(out, delivery.payload)?;
    out.write_all(b"\n")
}

/// Writes `bytes` with `\n`, `\r` and `\` as `\n`, `\r` and `\\`: one message, one line.
fn write_escaped(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let mut start = 0;
    for (i, byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\\' => b"\\\\",
            _ => continue,
        };
        out.write_all(&bytes[start..i])?;
        out.write_all(escape)?;
        start = i + 1;
    }
    out.write_all(&bytes[start..])
}

fn stats(cli: &Cli, args: &StatsArgs) -> Result<(), Failure> {
    let mut client = connect(cli)?;
    let own = client.session_id();
    let json = client.stats()?;
    client.bye()?;
    let text = if args.json {
        json
    } else {
        let report: StatsReport = serde_json::from_str(&json).map_err(Failure::Stats)?;
        summarize(&report, own)
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{}", text.trim_end())
        .and_then(|()| out.flush())
        .or_else(quiet_broken_pipe)
}

fn sessions(cli: &Cli) -> Result<(), Failure> {
    let mut client = connect(cli)?;
    let own = client.session_id();
    let json = client.stats()?;
    client.bye()?;
    let report: StatsReport = serde_json::from_str(&json).map_err(Failure::Stats)?;
    let mut out = io::stdout().lock();
    let mut text = String::new();
    for session in &report.sessions {
        text += &session_line(session);
        if session.session_id == own {
            text += " (this request)";
        }
        text.push('\n');
    }
    if report.sessions_omitted > 0 {
        text += &format!(
            "... {} not shown\n",
            plural(report.sessions_omitted, "more session", "more sessions")
        );
    }
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .or_else(quiet_broken_pipe)
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
    let mut line = format!(
        "#{} name={:?}",
        hex_id::format(session.session_id),
        session.client_name
    );
    if !session.identity.is_empty() {
        line += &format!(" identity={}", session.identity);
    }
    line += &format!(
        " peer={} state={}{} subs={} queue={}/{}B in_flight={} throttled={}",
        if session.peer.is_empty() {
            "-"
        } else {
            &session.peer
        },
        session.state,
        match session.expires_in_ms {
            Some(ms) if session.state == "detached" => format!(" expires_in={}", seconds(ms)),
            _ => String::new(),
        },
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
/// and queue, each queue with its subscribers and publish count. `own` is the session that
/// asked (it is counted too, and marked).
fn summarize(report: &StatsReport, own: u64) -> String {
    let server = &report.server;
    let mut text = format!(
        "server: {}, {} (this request's included), {}\n",
        plural(server.connections, "connection", "connections"),
        plural(server.sessions, "session", "sessions"),
        plural(server.queues, "queue", "queues"),
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
        text += &summarize_session(session, session.session_id == own);
    }
    if report.sessions_omitted > 0 {
        text += &format!(
            "  ... {} not shown (the report is limited to one frame)\n",
            plural(report.sessions_omitted, "more session", "more sessions")
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
            "  {:<width$}  {}, {} published{}\n",
            queue.name,
            plural(queue.subscribers, "subscriber", "subscribers"),
            queue.published,
            if queue.conflate { ", conflating" } else { "" },
        );
    }
    text
}

fn summarize_session(session: &SessionStats, is_own: bool) -> String {
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
    let mut place = if session.peer.is_empty() {
        session.state.clone()
    } else {
        format!("from {}, {}", session.peer, session.state)
    };
    if session.state == "detached" {
        if let Some(ms) = session.detached_ms {
            place += &format!(" {} ago", seconds(ms));
        }
        if let Some(ms) = session.expires_in_ms {
            place += &format!(", expires in {}", seconds(ms));
        }
    }
    if is_own {
        place += " (this request)";
    }
    format!(
        "  #{} {:?} {}\n    subscriptions: {}\n    queue: {}, {} bytes ({} in flight, {} \
         pending)\n    published {} (last seq {}), delivered {} (last seq {}), acked {}, \
         conflated {}\n",
        hex_id::format(session.session_id),
        session.client_name,
        place,
        subscriptions,
        plural(session.queue_depth, "message", "messages"),
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

/// The reader went away (`weir-cli stats | head -3`): not an error worth a message.
fn quiet_broken_pipe(error: io::Error) -> Result<(), Failure> {
    match error.kind() {
        io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(Failure::Stdout(error)),
    }
}

/// "1 queue", "2 queues".
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Milliseconds as seconds for people: "59.2 s".
fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
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

/// The longest wait between checks for SIGINT/SIGTERM and for a lost connection.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// The port when `--server` or `-h` names none.
const DEFAULT_PORT: u16 = 7400;

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
            "weir-cli: resumed session 000000000000002a"
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
             session 000000000000002b, 3 unreceipted publishes published again"
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
                ..QueueStats::default()
            }],
            sessions_omitted: 1,
            closed_sessions: Vec::new(),
        };
        let text = summarize(&report, 4);
        assert!(
            text.starts_with(
                "server: 2 connections, 2 sessions (this request's included), 1 queue\n"
            ),
            "{text}"
        );
        assert!(text.contains("closes: CLIENT_BYE 3"), "{text}");
        assert!(
            text.contains(
                "#0000000000000004 \"weir-cli\" from 127.0.0.1:5000, connected (this request)"
            ),
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
        assert!(text.contains("1 more session not shown"), "{text}");
        assert!(
            text.contains("  db  1 subscriber, 5 published, conflating\n"),
            "{text}"
        );
    }

    #[test]
    fn a_detached_session_shows_its_time_to_expiry_not_an_empty_peer() {
        let session = SessionStats {
            session_id: 0x2a,
            client_name: String::from("feed"),
            state: String::from("detached"),
            detached_ms: Some(800),
            expires_in_ms: Some(59_200),
            ..SessionStats::default()
        };
        let text = summarize_session(&session, false);
        assert!(
            text.starts_with(
                "  #000000000000002a \"feed\" detached 0.8 s ago, expires in 59.2 s\n"
            ),
            "{text}"
        );
        assert!(
            session_line(&session).contains("peer=- state=detached expires_in=59.2 s"),
            "{}",
            session_line(&session)
        );
    }

    /// Issue 13: `-s HOST` without a port, `-h HOST -p PORT`, IPv6.
    #[test]
    fn the_server_address_takes_a_host_without_port_and_h_p_overrides() {
        let addr = |server, host, port| server_address(server, host, port).unwrap();
        assert_eq!(addr("127.0.0.1", None, None), "127.0.0.1:7400");
        assert_eq!(addr("broker:7401", None, None), "broker:7401");
        assert_eq!(addr("broker:7401", Some("other"), None), "other:7401");
        assert_eq!(
            addr("127.0.0.1:7400", Some("10.0.0.1"), Some(9)),
            "10.0.0.1:9"
        );
        assert_eq!(addr("::1", None, None), "[::1]:7400");
        assert_eq!(addr("[::1]:7401", None, None), "[::1]:7401");
        assert_eq!(addr("x", Some("::1"), Some(1)), "[::1]:1");
        assert!(server_address("host:http", None, None).is_err());
        assert!(server_address("[::1", None, None).is_err());
    }

    #[test]
    fn a_bare_h_is_help_and_h_with_a_value_is_the_host() {
        let args = |words: &[&str]| -> Vec<String> {
            help_for_bare_h(words.iter().map(OsString::from))
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect()
        };
        assert_eq!(args(&["weir-cli", "-h"]), ["weir-cli", "--help"]);
        assert_eq!(
            args(&["weir-cli", "pub", "-h"]),
            ["weir-cli", "pub", "--help"]
        );
        assert_eq!(
            args(&["weir-cli", "-h", "-p", "1"]),
            ["weir-cli", "--help", "-p", "1"]
        );
        assert_eq!(
            args(&["weir-cli", "-h", "10.0.0.1", "stats"]),
            ["weir-cli", "-h", "10.0.0.1", "stats"]
        );
    }

    /// Issue 13: `pub QUEUE [EVENT] MESSAGE`, `-e`, `-l`, `--stdin`.
    #[test]
    fn pub_words_give_queue_event_and_message_or_stdin() {
        let plan = |words: &[&str]| {
            let cli = Cli::try_parse_from(["weir-cli", "pub"].iter().chain(words)).unwrap();
            let Command::Pub(args) = cli.command else {
                panic!("not pub")
            };
            PubPlan::from_args(&args)
        };
        let message = |queue: &str, event: &str, message: &str| PubPlan {
            queue: queue.into(),
            event: event.into(),
            source: Source::Message(message.into()),
        };
        assert_eq!(plan(&["db", "hello"]), Ok(message("db", "", "hello")));
        assert_eq!(
            plan(&["db", "update", "hi"]),
            Ok(message("db", "update", "hi"))
        );
        assert_eq!(
            plan(&["-e", "update", "db", "hi"]),
            Ok(message("db", "update", "hi"))
        );
        let lines = plan(&["-l", "db", "insert"]).unwrap();
        assert_eq!(
            (lines.event.as_str(), lines.source),
            ("insert", Source::Lines)
        );
        assert_eq!(plan(&["--stdin", "db"]).unwrap().source, Source::WholeStdin);
        for refused in [
            &["db"][..],
            &["-e", "x", "db"],
            &["-e", "x", "db", "y", "z"],
            &["-l", "a", "b", "c"],
        ] {
            assert!(plan(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn plain_output_escapes_newlines_and_json_output_keeps_the_bytes() {
        let deliver = weir::client::Deliver {
            seq: 7,
            message_id: 42,
            flags: weir::protocol::frame::DELIVER_REDELIVERED,
            queue: b"db",
            event: b"",
            payload: b"a\nb\\c\r",
        };
        let mut out = Vec::new();
        print_delivery(&mut out, Format::Plain { verbose: 0 }, &deliver).unwrap();
        print_delivery(&mut out, Format::Plain { verbose: 1 }, &deliver).unwrap();
        print_delivery(&mut out, Format::Plain { verbose: 2 }, &deliver).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\nb\\\\c\\r\ndb \"\" a\\nb\\\\c\\r\n\
             db \"\" seq=7 id=42 redelivered a\\nb\\\\c\\r\n"
        );
        let mut out = Vec::new();
        print_delivery(&mut out, Format::Json, &deliver).unwrap();
        let binary = weir::client::Deliver {
            payload: &[0xff, 0x00],
            flags: 0,
            ..deliver
        };
        print_delivery(&mut out, Format::Json, &binary).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({"queue": "db", "event": "", "seq": 7, "id": 42,
                "redelivered": true, "payload": "a\nb\\c\r", "encoding": "utf8"})
        );
        assert_eq!(lines[1]["payload"], "/wA=");
        assert_eq!(lines[1]["encoding"], "base64");
        assert_eq!(lines[1]["redelivered"], false);
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
            "#0000000000000009 name=\"sub one\" identity=user:alice peer=127.0.0.1:5000 state=connected \
             subs=db:update,jobs:* queue=7/700B in_flight=2 throttled=yes"
        );
        session.identity.clear();
        session.subscriptions.clear();
        session.is_throttled = false;
        assert_eq!(
            session_line(&session),
            "#0000000000000009 name=\"sub one\" peer=127.0.0.1:5000 state=connected subs=- queue=7/700B \
             in_flight=2 throttled=no"
        );
    }
}
