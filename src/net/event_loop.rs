//! The event loop: one thread, one `mio::Poll`, every connection in a `Slab`. It moves bytes;
//! the broker decides.
//!
//! One turn is a checklist (mosquitto's loop body, redis `ae.c`):
//! 1. poll, until the earliest of the broker's deadline and the loop's own (lingering closes,
//!    an accept retry, HTTP timeouts): zero when the broker has connections to read again;
//! 2. `now` is read once;
//! 3. each event: accept (building the listener's transport stack), drain commands and
//!    signals, or note a connection readable or writable;
//! 4. read every readable connection, and those the broker names in `poll_reads`: the
//!    broker's `handle_readable` says whether to read, `handle_input` takes the bytes and
//!    says whether to read more;
//! 5. `handle_timeout`, then the password checks the core wants run go to the worker pool
//!    (their results, which wake the loop, are handed back before the next read pass);
//! 6. journal pass: this turn's durable records (`poll_journal`) go to the journal thread as
//!    one batch, before replies are written (Redis writes its AOF once per turn, before
//!    replies); its reports arrive through the waker and go to `handle_durable`, which
//!    releases the RECEIPTs they cover;
//! 7. flush pass over the connections the broker marked, each up to its write budget, then
//!    `handle_turn_end`;
//! 8. close pass: final bytes, lingering close, slab removal (only here, so a key is never
//!    reused while events for the old connection are still pending).
//!
//! Streams are registered once for READABLE | WRITABLE (edge-triggered); readiness is kept in
//! the `Connection` and no `reregister` call is ever needed.

use std::io::{self, ErrorKind, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;
use log::{debug, error, info, warn};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::connection::{BufferPool, Connection};
use super::http::HttpListener;
use super::listener::Listener;
use super::transport::TransportEvent;
use crate::broker::{Broker, CloseReason, ConnId, Intake};
use crate::config::LoopSettings;
use crate::control::Command;

mod output;

use output::linger_read;

pub(crate) const WAKER: Token = Token(usize::MAX - 1);
pub(crate) const SIGNALS: Token = Token(usize::MAX - 2);
/// Listener `i` has token `LISTENER_BASE - i`; connection tokens are slab keys, far below.
const LISTENER_BASE: usize = usize::MAX - 3;
/// Most listeners one server opens.
pub(crate) const MAX_LISTENERS: usize = 64;

/// The HTTP listener.
pub(crate) const HTTP_LISTENER: Token = Token(LISTENER_BASE - MAX_LISTENERS);
/// HTTP connection `k` has token `HTTP_BASE + k`.
pub(crate) const HTTP_BASE: usize = 1 << 48;

/// The token of listener number `index`.
pub(crate) fn listener_token(index: usize) -> Token {
    Token(LISTENER_BASE - index)
}

fn listener_index(token: Token) -> Option<usize> {
    let index = LISTENER_BASE.checked_sub(token.0)?;
    (index < MAX_LISTENERS).then_some(index)
}

/// Produces a new configuration for a reload.
pub(crate) type ReloadFn =
    Box<dyn Fn() -> Result<crate::config::Config, crate::config::ConfigError> + Send>;

/// Shared read buffer: one `read` call moves up to this many bytes. 64 KiB matches the usual
/// socket receive buffer, so a busy connection is drained in few syscalls.
const SCRATCH_BYTES: usize = 64 * 1024;

/// How long a closing connection keeps draining input so the peer can read our last frame
/// instead of getting a reset.
const LINGER: Duration = Duration::from_secs(2);

/// Pause before retrying `accept` after it failed (e.g. EMFILE).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Bytes discarded per linger read turn.
const LINGER_DISCARD_BYTES: usize = 256 * 1024;

/// How often the broker's wall-clock anchor is renewed (signed-token expiry follows clock
/// steps within this).
const WALL_CLOCK_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct EventLoop {
    pub(crate) poll: Poll,
    /// Indexed like the broker's listeners; `None` once shut down.
    pub(crate) listeners: Vec<Option<Listener>>,
    /// The HTTP (metrics) listener, if configured.
    pub(crate) http: Option<HttpListener>,
    pub(crate) broker: Broker,
    pub(crate) settings: LoopSettings,
    /// How to obtain a new configuration on SIGHUP or `ServerHandle::reload`, and the running
    /// one to compare it with.
    pub(crate) reload: Option<(ReloadFn, crate::config::Config)>,
    pub(crate) commands: Receiver<Command>,
    /// The journal thread, when a `data_dir` is configured.
    pub(crate) journal: Option<crate::storage::JournalThread>,
    pub(crate) signals: Option<signal_hook_mio::v1_0::Signals>,
    conns: Slab<Connection>,
    scratch: Box<[u8]>,
    buffers: BufferPool,
    /// Connections to read this turn (events and `poll_reads`).
    reads: Vec<ConnId>,
    /// Runs the broker's password checks off this thread (`None`: checked inline here).
    pub(crate) password_pool: Option<super::password_pool::PasswordPool>,
    /// Connections to flush this turn.
    flush_list: Vec<ConnId>,
    /// Connections cut off by the write budget.
    flush_again: Vec<ConnId>,
    /// Closes decided by the loop itself (EOF, I/O errors).
    net_closes: Vec<(ConnId, CloseReason)>,
    /// Lingering connections, in deadline order (the linger time is fixed).
    lingering: std::collections::VecDeque<(Instant, ConnId)>,
    accept_retry_at: Option<Instant>,
    is_full_logged: bool,
    wall_clock_at: Option<Instant>,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("connections", &self.conns.len())
            .field("has_signals", &self.signals.is_some())
            .field("has_reload", &self.reload.is_some())
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    pub(crate) fn new(
        poll: Poll,
        listeners: Vec<Listener>,
        broker: Broker,
        settings: LoopSettings,
        commands: Receiver<Command>,
    ) -> EventLoop {
        EventLoop {
            poll,
            listeners: listeners.into_iter().map(Some).collect(),
            http: None,
            reload: None,
            broker,
            settings,
            commands,
            journal: None,
            signals: None,
            conns: Slab::new(),
            scratch: vec![0; SCRATCH_BYTES].into_boxed_slice(),
            buffers: BufferPool::default(),
            reads: Vec::new(),
            password_pool: None,
            flush_list: Vec::new(),
            flush_again: Vec::new(),
            net_closes: Vec::new(),
            lingering: std::collections::VecDeque::new(),
            accept_retry_at: None,
            is_full_logged: false,
            wall_clock_at: None,
        }
    }

    /// Runs until a shutdown completes.
    ///
    /// # Errors
    /// Only errors of `poll` itself; a connection's error never leaves its connection.
    pub(crate) fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        // Until then, poll without blocking (`busy_poll_us` after the last turn with I/O).
        let mut spin_until: Option<Instant> = None;
        loop {
            let before = Instant::now();
            let mut timeout = self.poll_timeout(before);
            if spin_until.is_some_and(|until| before < until) {
                timeout = Some(Duration::ZERO);
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            if self.settings.busy_poll_us > 0 && !events.is_empty() {
                spin_until =
                    Some(now + Duration::from_micros(u64::from(self.settings.busy_poll_us)));
            }
            self.renew_wall_clock(now);

            self.reads.clear();
            for event in events.iter() {
                match event.token() {
                    WAKER => {
                        self.drain_journal(now);
                        self.drain_commands();
                    }
                    SIGNALS => self.drain_signals(),
                    HTTP_LISTENER => {
                        if let Some(http) = &mut self.http {
                            http.accept(self.poll.registry(), now);
                        }
                    }
                    token if self.http.as_ref().is_some_and(|h| h.owns(token)) => {
                        self.http_event(token, now);
                    }
                    token if listener_index(token).is_some() => {
                        if let Some(index) = listener_index(token) {
                            self.accept(index, now);
                        }
                    }
                    token => {
                        let id = ConnId(token.0);
                        let Some(conn) = self.conns.get_mut(id.0) else {
                            continue;
                        };
                        if event.is_writable() {
                            conn.is_writable = true;
                            queue_flush(&mut self.flush_list, conn, id);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.reads.push(id);
                        }
                    }
                }
            }
            self.take_password_results(now);
            self.broker.poll_reads(now, &mut self.reads);
            self.reads.sort_unstable();
            self.reads.dedup();
            for index in 0..self.reads.len() {
                let id = self.reads[index];
                self.read(id, now);
            }

            if self.accept_retry_at.is_some_and(|at| at <= now) {
                self.accept_retry_at = None;
                for index in 0..self.listeners.len() {
                    self.accept(index, now);
                }
            }
            self.broker.handle_timeout(now);
            self.give_password_checks(now);
            self.journal_pass();
            self.flush_pass(now);
            self.broker.handle_turn_end(now);
            self.close_pass(now);
            self.expire_lingering(now);
            if let Some(http) = &mut self.http {
                http.expire(self.poll.registry(), now, false);
            }

            if self.broker.is_shutting_down()
                && self.conns.is_empty()
                && self.http.as_ref().is_none_or(HttpListener::is_idle)
            {
                info!("shutdown complete");
                return Ok(());
            }
        }
    }

    /// Results of password checks the workers finished (they woke the loop): answers the
    /// held HELLOs before this turn's reads.
    fn take_password_results(&mut self, now: Instant) {
        if let Some(pool) = &self.password_pool {
            while let Some((ticket, is_match)) = pool.try_result() {
                self.broker.handle_password_checked(ticket, is_match, now);
            }
        }
    }

    /// The password checks the core wants run now go to the workers (or run here without a
    /// pool).
    fn give_password_checks(&mut self, now: Instant) {
        while let Some((ticket, check)) = self.broker.poll_password_check(now) {
            match &self.password_pool {
                Some(pool) => pool.submit(ticket, check),
                None => {
                    let is_match = check.run();
                    self.broker.handle_password_checked(ticket, is_match, now);
                }
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.flush_again.is_empty() {
            return Some(Duration::ZERO);
        }
        let at = [
            self.broker.poll_timeout(),
            self.lingering.front().map(|(at, _)| *at),
            self.accept_retry_at,
            self.http.as_ref().and_then(HttpListener::next_deadline),
        ]
        .into_iter()
        .flatten()
        .min()?;
        if at <= now {
            return Some(Duration::ZERO);
        }
        // Round up so we do not wake a hair early and spin.
        Some(at.saturating_duration_since(now) + Duration::from_millis(1))
    }

    fn renew_wall_clock(&mut self, now: Instant) {
        if self
            .wall_clock_at
            .is_none_or(|at| now.saturating_duration_since(at) >= WALL_CLOCK_EVERY)
        {
            self.wall_clock_at = Some(now);
            self.broker.set_wall_clock(now, SystemTime::now());
        }
    }

    fn accept(&mut self, index: usize, now: Instant) {
        let Some(Some(listener)) = self.listeners.get(index) else {
            return;
        };
        loop {
            let (mut stream, peer) = match listener.socket.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the pending connection stays in the backlog; try
                    // again shortly rather than spin.
                    if !self.is_full_logged {
                        warn!("accept failed: {e}; retrying every {ACCEPT_RETRY:?}");
                        self.is_full_logged = true;
                    }
                    self.accept_retry_at = Some(now + ACCEPT_RETRY);
                    return;
                }
            };
            self.is_full_logged = false;
            let mut refusal = Vec::new();
            if !self.broker.handle_accept(&mut refusal) {
                // A fresh socket's send buffer always has room for this; best effort.
                let _ = stream.write(&refusal);
                let _ = stream.shutdown(Shutdown::Write);
                debug!("refused {peer}: max_connections");
                continue;
            }
            if let Err(e) = stream.set_nodelay(true) {
                debug!("set_nodelay for {peer}: {e}");
            }
            let entry = self.conns.vacant_entry();
            let id = ConnId(entry.key());
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(id.0),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                warn!("register {peer}: {e}");
                continue;
            }
            let mut transport = match listener.transport_for(stream, peer) {
                Ok(transport) => transport,
                Err(e) => {
                    warn!("TLS session for {peer}: {e}");
                    continue;
                }
            };
            let event = transport.poll_event();
            entry.insert(Connection::new(transport, peer));
            self.broker.handle_connect_via(index, id, peer, now);
            if let Some(event) = event {
                // An untrusted peer on a PROXY listener: refused before any byte is read.
                deliver_event(&mut self.broker, id, event);
            }
        }
    }

    fn http_event(&mut self, token: Token, now: Instant) {
        if let Some(http) = &mut self.http {
            let registry = self.poll.registry();
            http.handle_event(registry, token, &mut self.scratch, &mut self.broker, now);
        }
    }

    /// Reads from one connection while the broker asks for more and the socket has it.
    fn read(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.get_mut(id.0) else {
            return;
        };
        if conn.linger_until.is_some() {
            linger_read(conn, &mut self.scratch, &mut self.net_closes, id);
            return;
        }
        let mut intake = self.broker.handle_readable(id, now);
        while intake == Intake::More {
            let result = conn.transport.read(&mut self.scratch);
            let mut had_event = false;
            while let Some(event) = conn.transport.poll_event() {
                had_event = true;
                deliver_event(&mut self.broker, id, event);
            }
            match result {
                Ok(0) => {
                    self.net_closes.push((id, CloseReason::PeerClosed));
                    return;
                }
                Ok(n) => {
                    let data = self.scratch.get(..n).unwrap_or_default();
                    intake = self.broker.handle_input(id, data, now);
                }
                // A layer finished a prefix (PROXY header): what follows it is read now.
                Err(e) if e.kind() == ErrorKind::WouldBlock && had_event => {
                    intake = self.broker.handle_input(id, &[], now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("read from {}: {e}", conn.peer);
                    self.net_closes.push((id, CloseReason::IoError));
                    return;
                }
            }
        }
        if conn.transport.has_unsent() {
            // A layer has handshake bytes the socket did not take yet.
            queue_flush(&mut self.flush_list, conn, id);
        }
    }

    /// Hands this turn's durable records to the journal thread (one message per turn).
    fn journal_pass(&mut self) {
        while let Some(batch) = self.broker.poll_journal() {
            let Some(journal) = &self.journal else {
                return;
            };
            if journal.batches.send(batch).is_err() {
                error!("the journal thread is gone: durable publishes are not receipted");
            }
        }
    }

    /// Passes the journal thread's reports to the broker.
    fn drain_journal(&mut self, now: Instant) {
        let Some(journal) = &self.journal else {
            return;
        };
        while let Ok(progress) = journal.progress.try_recv() {
            self.broker.handle_durable(progress, now);
        }
    }

    fn remove(&mut self, id: ConnId) {
        let mut conn = self.conns.remove(id.0);
        if let Err(e) = self.poll.registry().deregister(conn.transport.tcp()) {
            error!("deregister {}: {e}", conn.peer);
        }
    }

    pub(super) fn begin_shutdown(&mut self) {
        if self.broker.is_shutting_down() {
            return;
        }
        crate::notify::notify("STOPPING=1");
        for slot in &mut self.listeners {
            if let Some(mut listener) = slot.take() {
                let _ = self.poll.registry().deregister(&mut listener.socket);
            }
        }
        if let Some(mut http) = self.http.take() {
            http.expire(self.poll.registry(), Instant::now(), true);
            let _ = self.poll.registry().deregister(&mut http.socket);
        }
        self.broker.handle_shutdown();
    }
}

/// Tells the broker what a transport layer learned.
fn deliver_event(broker: &mut Broker, id: ConnId, event: TransportEvent) {
    match event {
        TransportEvent::ProxyHeader(Ok(header)) => broker.handle_proxy_header(id, Ok(header)),
        TransportEvent::ProxyHeader(Err(text)) => broker.handle_proxy_header(id, Err(&text)),
        TransportEvent::Refused(code, text) => broker.handle_transport_refusal(id, code, &text),
    }
}

fn queue_flush(list: &mut Vec<ConnId>, conn: &mut Connection, id: ConnId) {
    if !conn.is_queued_for_flush {
        conn.is_queued_for_flush = true;
        list.push(id);
    }
}
