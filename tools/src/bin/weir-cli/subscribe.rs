//! `sub`: deliveries printed as they come (plain, `-v`, `-vv`, `--json`), acked once printed;
//! reconnection notices on stderr.

use super::*;

/// How long `pub` lets stdin stay idle before it pings: a third of the server's heartbeat
/// timeout leaves room for one slow round trip.
pub(crate) fn keepalive_interval(heartbeat_timeout_ms: u32) -> Duration {
    if heartbeat_timeout_ms == 0 {
        return DEFAULT_TIMEOUT;
    }
    Duration::from_millis(u64::from(heartbeat_timeout_ms / 3)).max(Duration::from_millis(10))
}

/// Says on stderr when `pub` resumed or lost its session (it reads no deliveries, so the
/// events are only these).
pub(crate) fn report_reconnections(client: &mut ReconnectingClient) {
    while let Some(event) = client.try_recv() {
        if let Some(text) = reconnection_notice(&event) {
            eprintln!("{text}");
        }
    }
}

/// The stderr line for a resume or a loss; `None` for other events.
pub(crate) fn reconnection_notice(event: &Event) -> Option<String> {
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

pub(crate) fn subscribe(cli: &Cli, args: &SubArgs, stop: &Stop) -> Result<(), Failure> {
    let mut client = connect_reconnecting_with(cli, args.group.is_some() || args.pattern)?;
    let events: Vec<Option<&[u8]>> = if args.events.is_empty() {
        vec![None]
    } else {
        args.events.iter().map(|e| Some(e.as_bytes())).collect()
    };
    for event in events {
        match (&args.group, args.pattern, event) {
            (Some(group), _, event) => client.subscribe_group(&args.queue, event, group)?,
            (None, true, event) => client.subscribe_pattern(&args.queue, event)?,
            (None, false, None) => client.subscribe_all(&args.queue)?,
            (None, false, Some(event)) => client.subscribe(&args.queue, event)?,
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
pub(crate) enum Format {
    /// One line per message, newlines in it escaped; `verbose` 1 adds queue and event, 2 also
    /// seq, message id and the redelivered flag.
    Plain { verbose: u8 },
    /// One JSON object per line.
    Json,
}

pub(crate) fn print_delivery(
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
pub(crate) fn write_escaped(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
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
