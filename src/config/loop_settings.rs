//! The settings the event loop needs, apart from those of the core: which sockets to bind,
//! the transport layers of each listener's connections, and the loop's own write budgets.
//! Everything else in [`Config`] (limits, timeouts, queues, users) is the core's.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{Config, ConfigError, ListenerConfig, ListenerTransport};
use crate::protocol::proxy::IpNet;

/// The event loop's part of a configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopSettings {
    /// One per listener, in config order (the broker's listener numbers).
    pub listeners: Vec<ListenerStack>,
    /// The HTTP listener (metrics, dashboard), if any.
    pub http_listen: Option<SocketAddr>,
    /// Microseconds to poll without sleeping after a turn with I/O (`busy_poll_us`).
    pub busy_poll_us: u32,
    /// Bytes written to one connection per turn before others get theirs.
    pub write_budget_bytes: usize,
    /// Frames are encoded into a connection's write buffer only while it holds less.
    pub write_high_water_bytes: usize,
}

/// One listener: its address and the layers over each of its connections, bottom first.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerStack {
    /// Address to bind.
    pub listen: SocketAddr,
    /// `Some(trusted networks)` when each connection starts with a PROXY header.
    pub proxy: Option<Vec<IpNet>>,
    /// Certificate chain and key files when connections speak TLS (after any PROXY header).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `Some` when connections speak WebSocket (over TLS, if any): the upgrade's rules.
    pub websocket: Option<WebSocketSettings>,
}

/// The rules of a WebSocket listener's upgrade and messages (protocol.md §WebSocket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSocketSettings {
    /// Origins allowed besides the same-host rule; `"*"` allows any.
    pub allowed_origins: Vec<String>,
    /// Largest message a client may send, in bytes: one frame of the listener's
    /// `max_frame_len` with its 4-byte length field. Checked from the WebSocket header,
    /// before the payload is buffered.
    pub max_message_len: usize,
}

impl Config {
    /// The loop's settings.
    ///
    /// # Errors
    /// As [`Config::proxy_policies`] and [`Config::tls_paths`].
    pub fn loop_settings(&self) -> Result<LoopSettings, ConfigError> {
        let proxies = self.proxy_policies()?;
        let tls = self.tls_paths()?;
        let listeners = self
            .listener_settings()
            .iter()
            .zip(proxies)
            .zip(tls)
            .zip(self.websocket_settings())
            .map(|(((settings, proxy), tls), websocket)| ListenerStack {
                listen: settings.listen,
                proxy,
                tls,
                websocket,
            })
            .collect();
        Ok(LoopSettings {
            listeners,
            http_listen: self.http_listen,
            busy_poll_us: self.busy_poll_us,
            write_budget_bytes: self.write_budget_bytes,
            write_high_water_bytes: self.write_high_water_bytes,
        })
    }
}

impl Config {
    /// Per listener (same order as [`Config::listener_settings`]): the WebSocket rules, or
    /// `None` for a `"tcp"` listener.
    pub fn websocket_settings(&self) -> Vec<Option<WebSocketSettings>> {
        let one;
        let listeners = if self.listeners.is_empty() {
            one = [ListenerConfig::new(self.listen)];
            &one[..]
        } else {
            &self.listeners[..]
        };
        listeners
            .iter()
            .map(|l| {
                if l.transport.unwrap_or(self.transport) != ListenerTransport::Websocket {
                    return None;
                }
                let max_frame_len = l.max_frame_len.unwrap_or(self.max_frame_len);
                Some(WebSocketSettings {
                    allowed_origins: l
                        .websocket_allowed_origins
                        .clone()
                        .unwrap_or_else(|| self.websocket_allowed_origins.clone()),
                    max_message_len: max_frame_len as usize + 4,
                })
            })
            .collect()
    }
}
