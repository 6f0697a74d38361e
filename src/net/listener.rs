//! A Weir listener: its socket and the transport stack every connection it accepts gets.
//!
//! The stack is replaced by a reload (a rotated certificate, a new PROXY policy) and applies
//! to connections accepted afterwards; established connections keep the layers they have.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use log::{error, info};
use mio::net::{TcpListener, TcpStream};

use super::transport::proxy::ProxyPrefix;
use super::transport::tls::Tls;
use super::transport::websocket::WebSocketLayer;
use super::transport::{Layer, Transport};
use crate::config::{load_tls, ListenerStack};
use crate::protocol::proxy::IpNet;

/// One listener, indexed like the broker's listeners.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) socket: TcpListener,
    stack: Stack,
}

/// The layers of new connections, loaded.
#[derive(Debug, Clone)]
struct Stack {
    /// `Some(trusted networks)`: connections start with a PROXY header.
    proxy: Option<Arc<[IpNet]>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// What it was loaded from, to tell a reload what changed.
    settings: ListenerStack,
}

impl Listener {
    /// Binds `settings.listen` and loads its TLS files.
    ///
    /// # Errors
    /// The OS error naming the address; `InvalidInput` naming a TLS file that does not load.
    pub(crate) fn bind(settings: &ListenerStack) -> io::Result<Listener> {
        let stack = Stack::load(settings)?;
        let socket = TcpListener::bind(settings.listen).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", settings.listen),
            )
        })?;
        Ok(Listener { socket, stack })
    }

    /// The transport for a connection just accepted from `peer`, and, if a PROXY header is
    /// required but `peer` may not send one, the reason to refuse it.
    ///
    /// # Errors
    /// As `rustls::ServerConnection::new` (then the connection is dropped).
    pub(crate) fn transport_for(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Result<Transport, rustls::Error> {
        let mut layers: Vec<Box<dyn Layer>> = Vec::new();
        if let Some(trusted) = &self.stack.proxy {
            let refusal = (!trusted.iter().any(|net| net.contains(peer.ip())))
                .then(|| format!("{peer} is not a trusted proxy on this listener"));
            layers.push(Box::new(ProxyPrefix::new(refusal)));
        }
        if let Some(config) = &self.stack.tls {
            layers.push(Box::new(Tls::new(config.clone())?));
        }
        if let Some(settings) = &self.stack.settings.websocket {
            layers.push(Box::new(WebSocketLayer::new(settings.clone())));
        }
        Ok(Transport::new(stream, layers))
    }

    /// Replaces the stack for new connections (a reload). TLS files are read again even when
    /// their paths are the same (certificate rotation in place). On a load error the running
    /// stack stays, and the error is logged as such.
    ///
    /// Returns whether the new stack is in force.
    pub(crate) fn reload(&mut self, settings: &ListenerStack) -> bool {
        match Stack::load(settings) {
            Ok(stack) => {
                if stack.settings.tls.is_some() {
                    info!(
                        "listener {}: TLS certificate and key (re)loaded",
                        settings.listen
                    );
                }
                self.stack = stack;
                true
            }
            Err(e) => {
                error!(
                    "reload: listener {}: {e}; new connections keep the running TLS setup",
                    settings.listen
                );
                false
            }
        }
    }
}

impl Stack {
    fn load(settings: &ListenerStack) -> io::Result<Stack> {
        let tls = match &settings.tls {
            Some((cert, key)) => Some(load_tls(cert, key)?),
            None => None,
        };
        Ok(Stack {
            proxy: settings.proxy.as_ref().map(|nets| nets.clone().into()),
            tls,
            settings: settings.clone(),
        })
    }
}
