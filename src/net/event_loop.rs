//! The event loop: one thread, one `mio::Poll`, every connection in a `Slab`.
//!
//! One turn reads like a checklist (mosquitto's loop body, redis `ae.c`):
//! 1. poll, with the timeout from the broker's next deadline (zero if some connection still
//!    has readiness left over from a budget cut);
//! 2. `now` is read once;
//! 3. each event: accept, drain commands, or read a connection up to its read budget and feed
//!    every complete frame to the broker;
//! 4. broker timers;
//! 5. flush pass over the connections with something to send, each up to its write budget;
//! 6. close pass: final bytes, lingering close, slab removal (only here, so a key is never
//!    reused while events for the old connection are still pending).
//!
//! Streams are registered once for READABLE | WRITABLE (edge-triggered); readiness is kept in
//! the `Connection` and no `reregister` call is ever needed.

use std::io::{self, ErrorKind, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use log::{debug, error, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::conn::{BufferPool, Connection, TLS_BUFFER_LIMIT_BYTES};
use super::http::{HttpConn, HttpState, MAX_HTTP_CONNECTIONS};
use crate::broker::{Broker, CloseReason, ConnId};
use crate::control::Command;
use crate::protocol::proxy::{parse_proxy_header, IpNet};
use crate::protocol::{self, codec, ErrorCode};

pub(crate) const WAKER: Token = Token(usize::MAX - 1);
pub(crate) const SIGNALS: Token = Token(usize::MAX - 2);
/// Listener `i` has token `LISTENER_BASE - i`; connection tokens are slab keys, far below.
const LISTENER_BASE: usize = usize::MAX - 3;
/// Most listeners one server opens.
pub(crate) const MAX_LISTENERS: usize = 64;

/// The metrics (HTTP) listener.
pub(crate) const METRICS_LISTENER: Token = Token(LISTENER_BASE - MAX_LISTENERS);
/// Metrics connection `k` has token `HTTP_BASE + k`.
const HTTP_BASE: usize = 1 << 48;

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

/// Deliveries the publishes read from one connection in one turn may queue before the loop
/// stops reading that connection for the turn (like `read_budget_bytes`, in fan-out work):
/// with fan-out to 100, about 650 publishes, under one in-flight window per subscriber, so
/// the next flush can send all of them.
const TURN_DELIVERIES: u64 = 64 * 1024;

/// Longest a connection's reading waits while the server drains backlogs of its own making
/// ([`Broker::take_backlogged`]): then every deferred connection gets a turn.
const MAX_DRAIN: Duration = Duration::from_millis(50);

/// Bytes discarded per linger read turn.
const LINGER_DISCARD_BYTES: usize = 256 * 1024;

pub(crate) struct EventLoop {
    pub(crate) poll: Poll,
    /// Indexed like the broker's listeners; `None` once shut down.
    pub(crate) listeners: Vec<Option<TcpListener>>,
    /// Per listener: `Some(trusted networks)` if connections must start with a PROXY header.
    pub(crate) proxy_policies: Vec<Option<Vec<IpNet>>>,
    /// Per listener: the TLS configuration when it speaks TLS.
    pub(crate) tls_configs: Vec<Option<Arc<rustls::ServerConfig>>>,
    /// How to obtain a new configuration on SIGHUP or `ServerHandle::reload`.
    pub(crate) reload: Option<ReloadFn>,
    /// The Prometheus metrics listener, if configured.
    pub(crate) metrics_listener: Option<TcpListener>,
    http: Slab<HttpConn>,
    pub(crate) broker: Broker,
    pub(crate) commands: Receiver<Command>,
    pub(crate) signals: Option<signal_hook_mio::v1_0::Signals>,
    conns: Slab<Connection>,
    scratch: Box<[u8]>,
    buffers: BufferPool,
    /// Connections cut off by the read budget: mio will not report them again.
    read_again: Vec<ConnId>,
    read_now: Vec<ConnId>,
    /// Readable connections left unread while the server drains backlogs it is the cause of
    /// ([`Broker::take_backlogged`]); read again once they have drained.
    deferred: Vec<ConnId>,
    /// The last flush pass found such a backlog.
    is_draining: bool,
    /// Since when backlogs have been found turn after turn.
    draining_since: Option<Instant>,
    /// Connections whose reading is paused by a publish rate limit, with the time to resume.
    paused: Vec<(Instant, ConnId)>,
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
        listeners: Vec<TcpListener>,
        broker: Broker,
        commands: Receiver<Command>,
    ) -> EventLoop {
        EventLoop {
            poll,
            listeners: listeners.into_iter().map(Some).collect(),
            proxy_policies: Vec::new(),
            metrics_listener: None,
            reload: None,
            tls_configs: Vec::new(),
            http: Slab::new(),
            broker,
            commands,
            signals: None,
            conns: Slab::new(),
            scratch: vec![0; SCRATCH_BYTES].into_boxed_slice(),
            buffers: BufferPool::default(),
            read_again: Vec::new(),
            deferred: Vec::new(),
            is_draining: false,
            draining_since: None,
            read_now: Vec::new(),
            paused: Vec::new(),
            flush_list: Vec::new(),
            flush_again: Vec::new(),
            net_closes: Vec::new(),
            lingering: std::collections::VecDeque::new(),
            accept_retry_at: None,
            is_full_logged: false,
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
            let busy_poll = self.broker.config().busy_poll_us;
            if busy_poll > 0 && !events.is_empty() {
                spin_until = Some(now + Duration::from_micros(u64::from(busy_poll)));
            }

            self.read_now.clear();
            std::mem::swap(&mut self.read_now, &mut self.read_again);
            if !self.paused.is_empty() {
                // Rate-limited connections whose pause is over are read again (mio will not
                // report data that was already waiting).
                let read_now = &mut self.read_now;
                self.paused.retain(|&(at, id)| {
                    let is_due = at <= now;
                    if is_due {
                        read_now.push(id);
                    }
                    !is_due
                });
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => self.drain_commands(),
                    SIGNALS => self.drain_signals(),
                    METRICS_LISTENER => self.accept_http(now),
                    token if (HTTP_BASE..METRICS_LISTENER.0).contains(&token.0) => {
                        self.http_event(token.0 - HTTP_BASE);
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
                            self.read_now.push(id);
                        }
                    }
                }
            }
            self.read_now.sort_unstable();
            self.read_now.dedup();
            for index in 0..self.read_now.len() {
                let id = self.read_now[index];
                if self.is_draining && self.broker.may_defer_read(id) {
                    if let Some(conn) = self.conns.get_mut(id.0) {
                        defer(&mut self.deferred, conn, id);
                    }
                    continue;
                }
                self.read(id, now);
            }

            if self.accept_retry_at.is_some_and(|at| at <= now) {
                self.accept_retry_at = None;
                for index in 0..self.listeners.len() {
                    self.accept(index, now);
                }
            }
            if self.broker.poll_timeout().is_some_and(|at| at <= now) {
                self.broker.handle_timeout(now);
            }
            self.flush_pass();
            self.is_draining = self.broker.take_backlogged();
            if self.is_draining {
                let since = *self.draining_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= MAX_DRAIN {
                    // However long the backlogs last, no connection waits unread longer than
                    // this (its heartbeats, its acks): it gets a turn now.
                    self.is_draining = false;
                    self.draining_since = None;
                }
            } else {
                self.draining_since = None;
            }
            if !self.is_draining {
                for id in self.deferred.drain(..) {
                    if let Some(conn) = self.conns.get_mut(id.0) {
                        conn.is_deferred = false;
                    }
                    self.read_again.push(id);
                }
            }
            self.close_pass(now);
            self.expire_lingering(now);
            self.expire_http(now);

            if self.broker.is_shutting_down() && self.conns.is_empty() && self.http.is_empty() {
                info!("shutdown complete");
                return Ok(());
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.read_again.is_empty() || !self.flush_again.is_empty() {
            return Some(Duration::ZERO);
        }
        if !self.deferred.is_empty() {
            // Draining: acks wake the loop; this bounds the wait should none come.
            return Some(Duration::from_millis(1));
        }
        [
            self.broker.poll_timeout(),
            self.lingering.front().map(|(at, _)| *at),
            self.accept_retry_at,
            self.http.iter().map(|(_, c)| c.deadline).min(),
            self.paused.iter().map(|(at, _)| *at).min(),
        ]
        .into_iter()
        .flatten()
        .min()
        // Round up so we do not wake a hair early and spin.
        .map(|at| at.saturating_duration_since(now) + Duration::from_millis(1))
    }

    fn accept(&mut self, index: usize, now: Instant) {
        let Some(Some(listener)) = self.listeners.get(index) else {
            return;
        };
        loop {
            let (mut stream, peer) = match listener.accept() {
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
            if self.broker.connection_count() >= self.broker.config().max_connections {
                let mut out = Vec::new();
                let _ = codec::encode_error(
                    ErrorCode::ServerBusy,
                    true,
                    0,
                    "max_connections reached",
                    &mut out,
                );
                // A fresh socket's send buffer always has room for this; best effort.
                let _ = stream.write(&out);
                let _ = stream.shutdown(Shutdown::Write);
                self.broker.handle_refused();
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
            let mut conn = Connection::new(stream, peer);
            if let Some(Some(tls)) = self.tls_configs.get(index) {
                match rustls::ServerConnection::new(tls.clone()) {
                    Ok(mut session) => {
                        session.set_buffer_limit(Some(TLS_BUFFER_LIMIT_BYTES));
                        conn.tls = Some(Box::new(session));
                    }
                    Err(e) => {
                        warn!("TLS session for {peer}: {e}");
                        continue;
                    }
                }
            }
            let proxy_policy = self.proxy_policies.get(index).and_then(Option::as_ref);
            conn.is_awaiting_proxy_header = proxy_policy.is_some();
            entry.insert(conn);
            self.broker.handle_connect_via(index, id, peer, now);
            if let Some(trusted) = proxy_policy {
                if !trusted.iter().any(|net| net.contains(peer.ip())) {
                    let error = format!("{peer} is not a trusted proxy on this listener");
                    self.broker.handle_proxy_header(id, Err(&error));
                }
            }
        }
    }

    fn accept_http(&mut self, now: Instant) {
        let Some(listener) = &self.metrics_listener else {
            return;
        };
        loop {
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if self.http.len() >= MAX_HTTP_CONNECTIONS {
                continue;
            }
            let entry = self.http.vacant_entry();
            let token = Token(HTTP_BASE + entry.key());
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_ok()
            {
                entry.insert(HttpConn::new(stream, now));
            }
        }
    }

    fn http_event(&mut self, key: usize) {
        let broker = &self.broker;
        let Some(conn) = self.http.get_mut(key) else {
            return;
        };
        let mut state = conn.on_readable(&mut self.scratch);
        if let HttpState::Request(path) = state {
            state = conn.respond(&path, || crate::prometheus::render(&broker.stats()));
        }
        if state == HttpState::Done {
            self.remove_http(key);
        }
    }

    fn expire_http(&mut self, now: Instant) {
        if self.http.is_empty() {
            return;
        }
        let expired: Vec<usize> = self
            .http
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(k, _)| k)
            .collect();
        for key in expired {
            self.remove_http(key);
        }
    }

    fn remove_http(&mut self, key: usize) {
        if let Some(mut conn) = self.http.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            let _ = conn.close();
        }
    }

    fn drain_commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Stats(reply) => {
                    let _ = reply.send(self.broker.stats());
                }
                Command::Reload => self.reload(),
                Command::Shutdown => self.begin_shutdown(),
            }
        }
    }

    fn drain_signals(&mut self) {
        let (mut is_shutdown, mut is_reload) = (false, false);
        if let Some(signals) = &mut self.signals {
            for signal in signals.pending() {
                if signal == signal_hook::consts::SIGHUP {
                    is_reload = true;
                } else {
                    info!("signal {signal}: shutting down");
                    is_shutdown = true;
                }
            }
        }
        if is_reload && !is_shutdown {
            self.reload();
        }
        if is_shutdown {
            self.begin_shutdown();
        }
    }

    /// Loads a new configuration and applies what can change at run time; keeps the old one
    /// on any error.
    fn reload(&mut self) {
        let Some(load) = &self.reload else {
            warn!("reload requested but this server has no config source to reload");
            return;
        };
        crate::notify::notify("RELOADING=1");
        match load() {
            Ok(config) => {
                let outcome = self.broker.handle_reload(config);
                if outcome.changed.is_empty() {
                    info!("reload: nothing changed");
                } else {
                    info!("reload: applied {}", outcome.changed.join(", "));
                }
                if !outcome.needs_restart.is_empty() {
                    warn!(
                        "reload: changed, but applied only after a restart: {}",
                        outcome.needs_restart.join(", ")
                    );
                }
            }
            Err(e) => error!("reload failed, keeping the running configuration: {e}"),
        }
        crate::notify::notify("READY=1");
    }

    fn begin_shutdown(&mut self) {
        if self.broker.is_shutting_down() {
            return;
        }
        crate::notify::notify("STOPPING=1");
        for slot in &mut self.listeners {
            if let Some(mut listener) = slot.take() {
                let _ = self.poll.registry().deregister(&mut listener);
            }
        }
        if let Some(mut listener) = self.metrics_listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        for key in self.http.iter().map(|(k, _)| k).collect::<Vec<_>>() {
            self.remove_http(key);
        }
        self.broker.handle_shutdown();
    }

    /// Reads from one connection until WouldBlock or its budget, decoding as it goes.
    fn read(&mut self, id: ConnId, now: Instant) {
        let budget = self.broker.config().read_budget_bytes;
        let Some(conn) = self.conns.get_mut(id.0) else {
            return;
        };
        if conn.linger_until.is_some() {
            linger_read(conn, &mut self.scratch, &mut self.net_closes, id);
            return;
        }
        if self.broker.read_paused_until(id, now).is_some() {
            // Still paused: its entry in `paused` brings it back.
            return;
        }
        // The fan-out budget is per connection and turn, like the read budget.
        self.broker.take_queued();
        if !conn.read_buf.is_empty() && !conn.is_awaiting_proxy_header {
            // Frames held back (paused, or past last turn's fan-out budget) come first.
            feed(&mut self.broker, conn, id, &[], now);
            if self.broker.queued() >= TURN_DELIVERIES {
                self.read_again.push(id);
                return;
            }
        }
        let mut total = 0;
        loop {
            if self.broker.is_closing(id) {
                return;
            }
            if let Some(until) = self.broker.read_paused_until(id, now) {
                // Over its publish rate: stop reading (TCP back-pressure) until `until`.
                self.paused.push((until, id));
                return;
            }
            match conn.read(&mut self.scratch) {
                Ok(0) => {
                    let reason = if conn.read_buf.is_empty() {
                        CloseReason::PeerClosed
                    } else {
                        CloseReason::TruncatedFrame
                    };
                    self.net_closes.push((id, reason));
                    return;
                }
                Ok(n) => {
                    total += n;
                    self.broker.handle_io_bytes(n, 0);
                    let data = self.scratch.get(..n).unwrap_or_default();
                    feed(&mut self.broker, conn, id, data, now);
                    if self.broker.queued() >= TURN_DELIVERIES {
                        // This turn's fan-out work is done; the rest of it (held in its read
                        // buffer or still in the socket) comes next turn.
                        self.read_again.push(id);
                        return;
                    }
                    if self.broker.has_backlog() && self.broker.may_defer_read(id) {
                        // It filled a queue that keeps up past what the next flush sends:
                        // the rest waits until the backlogs drain.
                        defer(&mut self.deferred, conn, id);
                        return;
                    }
                    if total >= budget {
                        self.read_again.push(id);
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("read from {}: {e}", conn.peer);
                    self.net_closes.push((id, CloseReason::IoError));
                    return;
                }
            }
        }
    }

    /// Writes pending output of every connection that has some, each up to its budget.
    fn flush_pass(&mut self) {
        while let Some(id) = self.broker.poll_dirty() {
            if let Some(conn) = self.conns.get_mut(id.0) {
                queue_flush(&mut self.flush_list, conn, id);
            }
        }
        for id in self.flush_again.drain(..) {
            if let Some(conn) = self.conns.get_mut(id.0) {
                queue_flush(&mut self.flush_list, conn, id);
            }
        }
        let budget = self.broker.config().write_budget_bytes;
        let high_water = self.broker.config().write_high_water_bytes;
        for index in 0..self.flush_list.len() {
            let id = self.flush_list[index];
            let Some(conn) = self.conns.get_mut(id.0) else {
                continue;
            };
            conn.is_queued_for_flush = false;
            if !conn.is_writable || conn.linger_until.is_some() || self.broker.is_closing(id) {
                continue;
            }
            let mut written = 0;
            loop {
                if !conn.has_unsent() {
                    conn.reset_write_buf();
                    if conn.write_buf.capacity() == 0 {
                        conn.write_buf = self.buffers.take(high_water + 4096);
                    }
                    let appended = self
                        .broker
                        .poll_transmit(id, &mut conn.write_buf, high_water);
                    if appended == 0 {
                        conn.release_write_buf(&mut self.buffers);
                        break;
                    }
                }
                match conn.write_unsent() {
                    Ok(0) => {
                        self.net_closes.push((id, CloseReason::IoError));
                        break;
                    }
                    Ok(n) => {
                        written += n;
                        self.broker.handle_io_bytes(0, n);
                        if written >= budget {
                            self.flush_again.push(id);
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        conn.is_writable = false;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        debug!("write to {}: {e}", conn.peer);
                        self.net_closes.push((id, CloseReason::IoError));
                        break;
                    }
                }
            }
        }
        self.flush_list.clear();
    }

    /// Closes what the loop and the broker decided to close this turn.
    fn close_pass(&mut self, now: Instant) {
        for (id, reason) in std::mem::take(&mut self.net_closes) {
            let Some(conn) = self.conns.get(id.0) else {
                continue;
            };
            if conn.linger_until.is_some() {
                // Already handed back to the broker; the linger just ended early.
                self.remove(id);
                continue;
            }
            self.broker.handle_disconnect(id, reason, now);
            self.remove(id);
        }
        while let Some((id, reason)) = self.broker.poll_close() {
            let Some(conn) = self.conns.get_mut(id.0) else {
                self.broker.handle_disconnect(id, reason, now);
                continue;
            };
            // Final bytes (ERROR / GOODBYE), best effort: the socket is non-blocking.
            if !conn.has_unsent() {
                conn.reset_write_buf();
            }
            self.broker
                .poll_transmit(id, &mut conn.write_buf, usize::MAX);
            while conn.has_unsent() {
                match conn.write_unsent() {
                    Ok(n) if n > 0 => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    _ => break,
                }
            }
            self.broker.handle_disconnect(id, reason, now);
            conn.shutdown_write();
            conn.read_buf = Vec::new();
            conn.write_buf = Vec::new();
            conn.sent = 0;
            conn.linger_until = Some(now + LINGER);
            self.lingering.push_back((now + LINGER, id));
            // Whatever the peer already sent is discarded now; later bytes on readable events.
            linger_read(conn, &mut self.scratch, &mut self.net_closes, id);
        }
        // A linger that ended at once (EOF already there) is removed next turn at the latest.
        for (id, _) in std::mem::take(&mut self.net_closes) {
            if self.conns.contains(id.0) {
                self.remove(id);
            }
        }
    }

    fn expire_lingering(&mut self, now: Instant) {
        let is_shutting_down = self.broker.is_shutting_down();
        while let Some(&(at, id)) = self.lingering.front() {
            if at > now && !is_shutting_down {
                break;
            }
            self.lingering.pop_front();
            if self
                .conns
                .get(id.0)
                .is_some_and(|c| c.linger_until == Some(at))
            {
                self.remove(id);
            }
        }
    }

    fn remove(&mut self, id: ConnId) {
        let mut conn = self.conns.remove(id.0);
        if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
            error!("deregister {}: {e}", conn.peer);
        }
    }
}

/// Puts `id` on the deferred-read list once, however often it is readable meanwhile.
fn defer(list: &mut Vec<ConnId>, conn: &mut Connection, id: ConnId) {
    if !conn.is_deferred {
        conn.is_deferred = true;
        list.push(id);
    }
}

fn queue_flush(list: &mut Vec<ConnId>, conn: &mut Connection, id: ConnId) {
    if !conn.is_queued_for_flush {
        conn.is_queued_for_flush = true;
        list.push(id);
    }
}

/// Decodes every complete frame of `data` (appended to any partial frame kept from before)
/// and hands each to the broker; keeps an incomplete tail in `conn.read_buf`.
fn feed(broker: &mut Broker, conn: &mut Connection, id: ConnId, data: &[u8], now: Instant) {
    if conn.is_awaiting_proxy_header {
        conn.read_buf.extend_from_slice(data);
        match parse_proxy_header(&conn.read_buf) {
            Ok(None) => return,
            Ok(Some((header, used))) => {
                conn.is_awaiting_proxy_header = false;
                conn.read_buf.drain(..used);
                broker.handle_proxy_header(id, Ok(header));
            }
            Err(error) => {
                conn.read_buf.clear();
                broker.handle_proxy_header(id, Err(&error));
                return;
            }
        }
        if conn.read_buf.is_empty() {
            return;
        }
        // Frames that followed the header in the same read.
        let used = decode_all(broker, id, &conn.read_buf, now);
        conn.read_buf.drain(..used.min(conn.read_buf.len()));
        return;
    }
    if conn.read_buf.is_empty() {
        let used = decode_all(broker, id, data, now);
        if let Some(rest) = data.get(used..) {
            conn.read_buf.extend_from_slice(rest);
        }
    } else {
        conn.read_buf.extend_from_slice(data);
        let used = decode_all(broker, id, &conn.read_buf, now);
        conn.read_buf.drain(..used.min(conn.read_buf.len()));
    }
    if conn.read_buf.is_empty() && conn.read_buf.capacity() > 0 {
        // Only a frame split across reads needs this buffer; an idle connection keeps none.
        conn.read_buf = Vec::new();
    }
}

/// Returns how many bytes were consumed; all of them once the connection is closing.
fn decode_all(broker: &mut Broker, id: ConnId, buf: &[u8], now: Instant) -> usize {
    let mut pos = 0;
    loop {
        if broker.is_closing(id) {
            return buf.len();
        }
        let rest = buf.get(pos..).unwrap_or_default();
        match protocol::decode(rest, broker.max_frame_len(id)) {
            Ok(Some((frame, used))) => {
                let queued = broker.queued();
                broker.handle_frame(id, frame, now);
                pos += used;
                if broker.queued() > queued && broker.queued() >= TURN_DELIVERIES {
                    // A publish filled this turn's fan-out budget: the rest waits in the read
                    // buffer for the next turn.
                    return pos;
                }
                if broker.read_paused_until(id, now).is_some() {
                    // Over its publish rate: the rest waits in the read buffer.
                    return pos;
                }
            }
            Ok(None) => return pos,
            Err(error) => {
                match protocol::sniff::foreign_protocol(rest) {
                    Some(foreign) => broker.handle_foreign_protocol(id, &error, foreign),
                    None => broker.handle_decode_error(id, &error),
                }
                return buf.len();
            }
        }
    }
}

/// Discards input of a lingering connection; EOF or an error ends the linger.
fn linger_read(
    conn: &mut Connection,
    scratch: &mut [u8],
    closes: &mut Vec<(ConnId, CloseReason)>,
    id: ConnId,
) {
    let mut discarded = 0;
    loop {
        match conn.read(scratch) {
            Ok(0) => break,
            Ok(n) => {
                discarded += n;
                if discarded >= LINGER_DISCARD_BYTES {
                    // Keep the rest for the next readable event; a flood ends at the deadline.
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    closes.push((id, CloseReason::PeerClosed));
}
