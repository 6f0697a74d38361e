//! `Server` wires a validated `Config`, a `Broker` and the event loop; `ServerHandle` talks to
//! it from other threads.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use log::info;
use mio::net::TcpListener;
use mio::{Interest, Poll, Waker};

use crate::broker::Broker;
use crate::config::Config;
pub use crate::control::{ServerGone, ServerHandle};
use crate::net::event_loop::{
    listener_token, EventLoop, MAX_LISTENERS, METRICS_LISTENER, SIGNALS, WAKER,
};

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
    pub fn bind(config: Config) -> io::Result<Server> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let settings = config.listener_settings();
        if settings.len() > MAX_LISTENERS {
            let text = format!("at most {MAX_LISTENERS} listeners");
            return Err(io::Error::new(io::ErrorKind::InvalidInput, text));
        }
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        let mut local_addrs = Vec::new();
        for (index, listener) in settings.iter().enumerate() {
            let mut socket = TcpListener::bind(listener.listen).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen on {}: {e}", listener.listen),
                )
            })?;
            local_addrs.push(socket.local_addr()?);
            poll.registry()
                .register(&mut socket, listener_token(index), Interest::READABLE)?;
            listeners.push(socket);
        }
        let metrics_listen = config.metrics_listen;
        let mut metrics_addr = None;
        let proxy_policies = config
            .proxy_policies()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let tls_configs = config
            .tls_paths()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?
            .into_iter()
            .map(|paths| paths.map(|(cert, key)| load_tls(&cert, &key)).transpose())
            .collect::<io::Result<Vec<_>>>()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (mut handle, commands) = ServerHandle::new(waker, local_addrs);
        let broker = Broker::new(config);
        let mut event_loop = EventLoop::new(poll, listeners, broker, commands);
        event_loop.proxy_policies = proxy_policies;
        event_loop.tls_configs = tls_configs;
        if let Some(addr) = metrics_listen {
            let mut socket = TcpListener::bind(addr).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen for metrics on {addr}: {e}"),
                )
            })?;
            metrics_addr = Some(socket.local_addr()?);
            event_loop.poll.registry().register(
                &mut socket,
                METRICS_LISTENER,
                Interest::READABLE,
            )?;
            event_loop.metrics_listener = Some(socket);
        }
        handle.set_metrics_addr(metrics_addr);
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
        self.event_loop.reload = Some(Box::new(load));
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
        self.event_loop.run()
    }
}

/// Loads a PEM certificate chain and private key into a rustls server configuration (also
/// for `weir-server -t`, through [`Config::check_files`](crate::config::Config::check_files)).
pub(crate) fn load_tls(cert: &Path, key: &Path) -> io::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |what: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TLS: {}: {e}", what.display()),
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, &e))?;
    if chain.is_empty() {
        return Err(invalid(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| invalid(cert, &e))?;
    Ok(Arc::new(config))
}
