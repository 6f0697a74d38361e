//! Commands from other threads to the event loop: a crossbeam channel plus a mio `Waker`.
//!
//! [`ServerHandle`] is how an embedding program or a test stops the server or reads its
//! stats without touching broker internals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;

use crate::protocol::stats::StatsReport;

/// A request to the event loop.
#[derive(Debug)]
pub(crate) enum Command {
    /// Reply with a stats report.
    Stats(Sender<StatsReport>),
    /// Reload the configuration (as SIGHUP does).
    Reload,
    /// Begin a graceful shutdown.
    Shutdown,
}

/// The event loop has stopped; it cannot answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerGone;

impl std::fmt::Display for ServerGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server has stopped")
    }
}

impl std::error::Error for ServerGone {}

/// A cloneable handle to a running server.
#[derive(Clone, Debug)]
pub struct ServerHandle {
    tx: Sender<Command>,
    waker: Arc<Waker>,
    /// One per listener, in config order; never empty.
    local_addrs: Arc<[SocketAddr]>,
    metrics_addr: Option<SocketAddr>,
}

impl ServerHandle {
    pub(crate) fn new(
        waker: Arc<Waker>,
        local_addrs: Vec<SocketAddr>,
    ) -> (ServerHandle, Receiver<Command>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (
            ServerHandle {
                tx,
                waker,
                local_addrs: local_addrs.into(),
                metrics_addr: None,
            },
            rx,
        )
    }

    /// The address of the first listener (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // Invariant: a server has at least one listener (Config::listener_settings).
        self.local_addrs[0]
    }

    /// The metrics listener's address, if one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub(crate) fn set_metrics_addr(&mut self, addr: Option<SocketAddr>) {
        self.metrics_addr = addr;
    }

    /// Every listener's address, in config order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Asks the server to shut down gracefully: GOODBYE(SERVER_SHUTDOWN) to every client, flush,
    /// then `Server::run` returns.
    ///
    /// # Errors
    /// [`ServerGone`] if it has already stopped.
    pub fn shutdown(&self) -> Result<(), ServerGone> {
        self.send(Command::Shutdown)
    }

    /// Asks the server to reload its configuration, as SIGHUP does (no-op unless the server
    /// was given a reload source with `Server::reload_with`).
    ///
    /// # Errors
    /// [`ServerGone`] if it has already stopped.
    pub fn reload(&self) -> Result<(), ServerGone> {
        self.send(Command::Reload)
    }

    /// A stats report from the running server (the same data as STATS_REPLY).
    ///
    /// # Errors
    /// [`ServerGone`] if the server stopped or did not answer within 10 s.
    pub fn stats(&self) -> Result<StatsReport, ServerGone> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Command::Stats(tx))?;
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| ServerGone)
    }

    fn send(&self, command: Command) -> Result<(), ServerGone> {
        self.tx.send(command).map_err(|_| ServerGone)?;
        self.waker.wake().map_err(|_| ServerGone)
    }
}
