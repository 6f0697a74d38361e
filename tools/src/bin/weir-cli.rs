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
    /// Time to live in ms: a subscriber not sent the message this long after the server
    /// accepted it never gets it (needs a server with EXTENSIONS, protocol.md §Time to live).
    #[arg(long, value_name = "MS", conflicts_with = "key")]
    ttl: Option<u32>,
}

#[derive(Debug, Args)]
struct SubArgs {
    /// Queue to subscribe to (a pattern with --pattern).
    queue: String,
    /// Join the competing-consumer group NAME: each message goes to one member of the group
    /// (protocol.md §Groups).
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// QUEUE is a pattern: `.`-separated levels, `*` one level, a last `>` one or more
    /// (`orders.>`); without it `*` and `>` are ordinary characters of a queue name.
    #[arg(long, conflicts_with = "group")]
    pattern: bool,
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
    /// Print every server counter and gauge, one per line with its help text, from the one
    /// declaration `/metrics` and STATS_REPLY use (`weir::metrics::ALL`).
    #[arg(long, conflicts_with = "json")]
    counters: bool,
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

#[path = "weir-cli/connect.rs"]
mod connect;
#[path = "weir-cli/publish.rs"]
mod publish;
#[path = "weir-cli/stats.rs"]
mod stats;
#[path = "weir-cli/subscribe.rs"]
mod subscribe;
#[cfg(test)]
#[path = "weir-cli/tests.rs"]
mod tests;

use connect::*;
use publish::*;
use stats::*;
use subscribe::*;

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
