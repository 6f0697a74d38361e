//! `stats` and `sessions`: the server's STATS_REPLY, summarised for people or as JSON.

use super::*;

pub(crate) fn stats(cli: &Cli, args: &StatsArgs) -> Result<(), Failure> {
    let mut client = connect(cli)?;
    let own = client.session_id();
    let json = client.stats()?;
    client.bye()?;
    let text = if args.json {
        json
    } else {
        let report: StatsReport = serde_json::from_str(&json).map_err(Failure::Stats)?;
        if args.counters {
            counters(&report)
        } else {
            summarize(&report, own)
        }
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{}", text.trim_end())
        .and_then(|()| out.flush())
        .or_else(quiet_broken_pipe)
}

/// Every server-wide figure the declaration lists (`weir::metrics::ALL`): its STATS_REPLY
/// key, value, kind and help text, so this, `/metrics` and the JSON cannot drift apart.
pub(crate) fn counters(report: &StatsReport) -> String {
    use weir::metrics::{Kind, Read, ALL};
    let mut text = String::new();
    for metric in ALL {
        let key = metric.json.strip_prefix("server.").unwrap_or(metric.json);
        let kind = match metric.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        match metric.read {
            Read::Server(read) => {
                text += &format!("{key} {} ({kind}) {}\n", read(&report.server), metric.help);
            }
            Read::ServerByKey { read, .. } => {
                let map = read(&report.server);
                let values: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let values = if values.is_empty() {
                    String::from("-")
                } else {
                    values.join(",")
                };
                text += &format!("{key} {values} ({kind}) {}\n", metric.help);
            }
            // Per-session and per-queue figures are in the summary and `sessions`.
            Read::SessionsByState { .. } | Read::Queue(_) => {}
        }
    }
    text
}

pub(crate) fn sessions(cli: &Cli) -> Result<(), Failure> {
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
pub(crate) fn session_line(session: &SessionStats) -> String {
    let subscriptions: Vec<String> = session
        .subscriptions
        .iter()
        .map(|sub| match &sub.event {
            Some(event) => format!("{}:{event}", sub.queue),
            None => format!("{}:*", sub.queue),
        })
        .collect();
    // Each field is named as in the STATS_REPLY JSON (`stats --json`), so one vocabulary
    // serves both (issue 9).
    let mut line = format!(
        "session_id={} client_name={:?}",
        hex_id::format(session.session_id),
        session.client_name
    );
    if !session.identity.is_empty() {
        line += &format!(" identity={}", session.identity);
    }
    line += &format!(
        " peer={} state={}{} subscriptions={} queue_depth={} queue_bytes={} in_flight={} \
         is_throttled={}",
        if session.peer.is_empty() {
            "-"
        } else {
            &session.peer
        },
        session.state,
        match session.expires_in_ms {
            Some(ms) if session.state == "detached" => format!(" expires_in_ms={ms}"),
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
        session.is_throttled,
    );
    line
}

/// The STATS report as text for people: server figures, each session with its subscriptions
/// and queue, each queue with its subscribers and publish count. `own` is the session that
/// asked (it is counted too, and marked).
pub(crate) fn summarize(report: &StatsReport, own: u64) -> String {
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
    if server.messages_expired > 0 || server.messages_dead_lettered > 0 {
        text += &format!(
            "  {} expired, {} dead-lettered ({} of them dropped), {} given to another group \
             member\n",
            server.messages_expired,
            server.messages_dead_lettered,
            server.messages_dropped_max_deliveries,
            server.messages_group_redelivered,
        );
    }
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

    if !report.groups.is_empty() {
        text += &format!("\ngroups ({}):\n", report.groups.len());
        for group in &report.groups {
            let filter = group.event.as_deref().unwrap_or("all events");
            text += &format!(
                "  {} on {} ({filter}): {}, {} unassigned, {} in flight; {} assigned, {} acked, \
                 {} redelivered, {} dead-lettered\n",
                group.name,
                group.queue,
                plural(group.members, "member", "members"),
                group.unassigned,
                group.in_flight,
                group.assigned,
                group.acked,
                group.redelivered,
                group.dead_lettered,
            );
        }
    }
    text
}

pub(crate) fn summarize_session(session: &SessionStats, is_own: bool) -> String {
    let subscriptions: Vec<String> = session
        .subscriptions
        .iter()
        .map(|sub| match &sub.event {
            Some(event) => format!("{}:{event}", sub.queue),
            None => format!("{} (all events)", sub.queue),
        })
        .chain(session.patterns.iter().map(|p| match &p.event {
            Some(event) => format!("pattern {}:{event} ({} queues)", p.pattern, p.queues),
            None => format!("pattern {} (all events, {} queues)", p.pattern, p.queues),
        }))
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
    let dropped = &session.dropped;
    let dropped = if dropped.expired > 0 || dropped.dead_lettered > 0 {
        format!(
            "    dropped: {} conflated, {} expired, {} dead-lettered\n",
            dropped.conflated, dropped.expired, dropped.dead_lettered
        )
    } else {
        String::new()
    };
    format!(
        "  #{} {:?} {}\n    subscriptions: {}\n    queue: {}, {} bytes ({} in flight, {} \
         pending)\n    published {} (last seq {}), delivered {} (last seq {}), acked {}, \
         conflated {}\n{dropped}",
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
pub(crate) fn quiet_broken_pipe(error: io::Error) -> Result<(), Failure> {
    match error.kind() {
        io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(Failure::Stdout(error)),
    }
}
