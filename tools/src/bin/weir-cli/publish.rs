//! `pub`: one message from the arguments, one per stdin line (`-l`), or all of stdin
//! (`--stdin`).

use super::*;

/// What `pub` publishes, from its words and flags.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PubPlan {
    pub(crate) queue: String,
    pub(crate) event: String,
    pub(crate) source: Source,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Message(String),
    /// `-l`: one message per line of stdin.
    Lines,
    /// `--stdin`: all of stdin, one message.
    WholeStdin,
}

impl PubPlan {
    /// `QUEUE [EVENT] MESSAGE`, `-e EVENT QUEUE MESSAGE`, `-l|--stdin QUEUE [EVENT]`.
    pub(crate) fn from_args(args: &PubArgs) -> Result<PubPlan, String> {
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

pub(crate) fn publish(
    cli: &Cli,
    args: &PubArgs,
    plan: &PubPlan,
    stop: &Stop,
) -> Result<(), Failure> {
    let mut client = connect_reconnecting_with(cli, args.ttl.is_some())?;
    let publish_one = |client: &mut ReconnectingClient, payload: &[u8]| {
        for _ in 0..args.count {
            match (&args.key, args.ttl) {
                (_, Some(ttl)) => {
                    client.publish_with_ttl(&plan.queue, &plan.event, payload, ttl)?
                }
                (Some(key), None) => {
                    client.publish_conflated(&plan.queue, &plan.event, key, payload)?
                }
                (None, None) => client.publish(&plan.queue, &plan.event, payload)?,
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
pub(crate) fn tell_if_terminal(how: &str) {
    if io::stdin().is_terminal() {
        eprintln!("weir-cli: reading messages from stdin, {how}; end with Ctrl-D");
    }
}

/// True when stdin is a pipe (data may be waiting that `pub QUEUE MESSAGE` will not read).
pub(crate) fn stdin_is_a_pipe() -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata("/dev/stdin").is_ok_and(|m| m.file_type().is_fifo())
}

/// Publishes each line of stdin; returns how many lines were read. Lines are read on a thread
/// so that, while stdin is idle (a pipe fed slowly, `tail -f`), the client can ping the
/// server: it reads only inside a call, and a session the server hears nothing from for
/// `heartbeat_timeout_ms` is detached. Stops early on SIGINT or SIGTERM.
pub(crate) fn publish_lines(
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
