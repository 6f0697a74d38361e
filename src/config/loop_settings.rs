//! The settings the event loop needs, apart from those of the core: which sockets to bind,
//! the transport layers of each listener's connections, and the loop's own write budgets.
//! Everything else in [`Config`] (limits, timeouts, queues, users) is the core's.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{Config, ConfigError};
use crate::protocol::proxy::IpNet;

/// The event loop's part of a configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopSettings {
    /// One per listener, in config order (the broker's listener numbers).
    pub listeners: Vec<ListenerStack>,
    /// The HTTP listener (metrics), if any.
    pub metrics_listen: Option<SocketAddr>,
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
            .map(|((settings, proxy), tls)| ListenerStack {
                listen: settings.listen,
                proxy,
                tls,
            })
            .collect();
        Ok(LoopSettings {
            listeners,
            metrics_listen: self.metrics_listen,
            busy_poll_us: self.busy_poll_us,
            write_budget_bytes: self.write_budget_bytes,
            write_high_water_bytes: self.write_high_water_bytes,
        })
    }
}
