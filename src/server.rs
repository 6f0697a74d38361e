//! `Server` wires a validated `Config`, a `Broker` and the event loop; `ServerHandle` talks to
//! it from other threads.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use log::info;
use mio::net::TcpListener;
use mio::{Interest, Poll, Waker};

use crate::broker::{Broker, Origin};
use crate::config::Config;
pub use crate::control::{ServerGone, ServerHandle};
use crate::net::event_loop::{
    listener_token, EventLoop, HTTP_BASE, HTTP_LISTENER, MAX_LISTENERS, SIGNALS, WAKER,
};
use crate::net::http::HttpListener;
use crate::net::listener::Listener;
use crate::net::password_pool::{PasswordPool, PASSWORD_WORKERS};

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    event_loop: EventLoop,
    handle: ServerHandle,
}

impl Server {
    /// Validates `config`, binds every listener's address and prepares the event loop.
    ///
    /// # Errors
    /// `InvalidInput` for an invalid config; the OS error (naming the address) if an address
    /// cannot be bound.
    pub fn bind(mut config: Config) -> io::Result<Server> {
        let invalid = |e: crate::config::ConfigError| {
            io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
        };
        config.validate().map_err(invalid)?;
        let settings = config.loop_settings().map_err(invalid)?;
        if settings.listeners.len() > MAX_LISTENERS {
            let text = format!("at most {MAX_LISTENERS} listeners");
            return Err(io::Error::new(io::ErrorKind::InvalidInput, text));
        }
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        let mut local_addrs = Vec::new();
        for (index, stack) in settings.listeners.iter().enumerate() {
            let mut listener = Listener::bind(stack)?;
            local_addrs.push(listener.socket.local_addr()?);
            poll.registry().register(
                &mut listener.socket,
                listener_token(index),
                Interest::READABLE,
            )?;
            listeners.push(listener);
        }
        let mut http = None;
        if let Some(addr) = settings.http_listen {
            let mut socket = TcpListener::bind(addr).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen for HTTP (http_listen) on {addr}: {e}"),
                )
            })?;
            poll.registry()
                .register(&mut socket, HTTP_LISTENER, Interest::READABLE)?;
            http = Some(HttpListener::new(socket, HTTP_BASE));
        }
        let metrics_addr = http.as_ref().map(|h| h.socket.local_addr()).transpose()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (mut handle, commands) = ServerHandle::new(Arc::clone(&waker), local_addrs);
        handle.set_metrics_addr(metrics_addr);
        if config.max_memory_bytes == 0 {
            // The core gets a number; the machine is read here, once.
            config.max_memory_bytes = physical_memory_bytes().map_or(0, |bytes| bytes / 4);
            log::info!(
                "max_memory_bytes = {} (a quarter of physical memory)",
                config.max_memory_bytes
            );
        }
        let storage = match config.data_dir {
            // Refused with a message naming the file: InvalidData, exit 78 from weir-server.
            Some(_) => Some(crate::storage::open(&config)?),
            None => None,
        };
        let mut broker = Broker::new(config, system_origin()?);
        let mut journal = None;
        if let Some((store, recovered)) = storage {
            for queue in recovered {
                broker.handle_recovered(queue);
            }
            journal = Some(crate::storage::JournalThread::spawn(
                store,
                Arc::clone(&waker),
            )?);
        }
        let mut event_loop = EventLoop::new(poll, listeners, broker, settings, commands);
        event_loop.password_pool = Some(PasswordPool::new(PASSWORD_WORKERS, Arc::clone(&waker))?);
        event_loop.http = http;
        event_loop.journal = journal;
        Ok(Server { event_loop, handle })
    }

    /// Binds and runs the server on a new thread. For tests and embedding programs.
    ///
    /// # Errors
    /// As [`Server::bind`].
    pub fn spawn(config: Config) -> io::Result<(ServerHandle, JoinHandle<io::Result<()>>)> {
        let server = Server::bind(config)?;
        let handle = server.handle();
        let thread = std::thread::Builder::new()
            .name("weir-loop".into())
            .spawn(move || server.run())?;
        Ok((handle, thread))
    }

    /// The address of the first listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// A handle for other threads.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Makes SIGINT and SIGTERM start a graceful shutdown and SIGHUP reload the configuration
    /// through the function given to [`Server::reload_with`] (for the `weir-server` binary; an
    /// embedding program keeps its own signal handling).
    ///
    /// # Errors
    /// The OS error if the handlers cannot be installed.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        self.event_loop
            .poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.event_loop.signals = Some(signals);
        Ok(())
    }

    /// Sets how SIGHUP (or [`ServerHandle::reload`]) obtains the new configuration, e.g. by
    /// reading the config file again. What can change at run time is applied; the rest is
    /// logged as needing a restart.
    pub fn reload_with(
        &mut self,
        load: impl Fn() -> Result<Config, crate::config::ConfigError> + Send + 'static,
    ) {
        let running = self.event_loop.broker.config().clone();
        self.event_loop.reload = Some((Box::new(load), running));
    }

    /// Runs the event loop on this thread until a graceful shutdown completes.
    ///
    /// # Errors
    /// Only a failure of the poll itself; a connection's error never ends the server.
    pub fn run(mut self) -> io::Result<()> {
        for addr in self.handle.local_addrs() {
            info!("weir listening on {addr}");
        }
        if let Some(addr) = self.handle.metrics_addr() {
            info!("metrics on http://{addr}/metrics");
        }
        crate::notify::notify("READY=1");
        let result = self.event_loop.run();
        if let Some(journal) = self.event_loop.journal.take() {
            // Every batch sent is written and synced before the server exits.
            journal.finish();
        }
        result
    }
}

/// The time and a seed from the OS random source, for the broker (which reads neither).
fn system_origin() -> io::Result<Origin> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| io::Error::other(format!("OS random source: {e}")))?;
    Ok(Origin {
        now: Instant::now(),
        unix: SystemTime::now(),
        seed,
    })
}

/// Physical memory from `/proc/meminfo` (`MemTotal`), if it can be read.
fn physical_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
