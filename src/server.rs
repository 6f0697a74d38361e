//! `Server` wires a validated `Config`, a `Broker` and the event loop; `ServerHandle` talks to
//! it from other threads.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use log::info;
use mio::net::TcpListener;
use mio::{Interest, Poll, Waker};

use crate::broker::Broker;
use crate::config::Config;
pub use crate::control::{ServerGone, ServerHandle};
use crate::net::event_loop::{EventLoop, LISTENER, SIGNALS, WAKER};

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    event_loop: EventLoop,
    handle: ServerHandle,
}

impl Server {
    /// Validates `config`, binds its listen address and prepares the event loop.
    ///
    /// # Errors
    /// `InvalidInput` for an invalid config; the OS error if the address cannot be bound.
    pub fn bind(config: Config) -> io::Result<Server> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(config.listen)?;
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (handle, commands) = ServerHandle::new(waker, local_addr);
        let broker = Broker::new(config);
        let event_loop = EventLoop::new(poll, listener, broker, commands);
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

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// A handle for other threads.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Makes SIGINT and SIGTERM start a graceful shutdown (for the `weir-server` binary; an
    /// embedding program keeps its own signal handling).
    ///
    /// # Errors
    /// The OS error if the handlers cannot be installed.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM])?;
        self.event_loop
            .poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.event_loop.signals = Some(signals);
        Ok(())
    }

    /// Runs the event loop on this thread until a graceful shutdown completes.
    ///
    /// # Errors
    /// Only a failure of the poll itself; a connection's error never ends the server.
    pub fn run(mut self) -> io::Result<()> {
        info!("weir listening on {}", self.local_addr());
        self.event_loop.run()
    }
}
