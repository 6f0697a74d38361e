//! Listeners: `[[listeners]]` as written, and the settings in force on each (top-level values
//! with the listener's overrides).

use super::*;

/// One listener (`[[listeners]]`): an address and optional overrides of the top-level session
/// settings, so a loopback listener for local clients and a public one behind a proxy can
/// differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Overrides `reconnect_keep_alive_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_keep_alive_ms: Option<u64>,
    /// Overrides `heartbeat_interval_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Overrides `heartbeat_timeout_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout_ms: Option<u64>,
    /// Overrides `max_frame_len`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame_len: Option<u32>,
    /// Overrides `in_flight_window` (alias `inflight_window`).
    #[serde(
        default,
        alias = "inflight_window",
        skip_serializing_if = "Option::is_none"
    )]
    pub in_flight_window: Option<u32>,
    /// Overrides `max_queue_depth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_depth: Option<u32>,
    /// Overrides `max_queue_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_bytes: Option<u64>,
    /// Overrides `max_queue_depth_detached` (alias `max_queue_depth_disconnected`).
    #[serde(
        default,
        alias = "max_queue_depth_disconnected",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_queue_depth_detached: Option<u32>,
    /// Overrides `max_queue_bytes_detached` (alias `max_queue_bytes_disconnected`).
    #[serde(
        default,
        alias = "max_queue_bytes_disconnected",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_queue_bytes_detached: Option<u64>,
    /// Overrides `max_publish_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_publish_rate: Option<u32>,
    /// Overrides `max_publish_bytes_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_publish_bytes_rate: Option<u64>,
    /// Overrides `tls_cert` (TLS on this listener).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Overrides `tls_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Overrides `proxy_protocol`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<bool>,
    /// Overrides `trusted_proxies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_proxies: Option<Vec<String>>,
    /// Overrides `allow_anonymous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// Overrides `transport` (`"tcp"` or `"websocket"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<ListenerTransport>,
    /// Overrides `websocket_allowed_origins`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket_allowed_origins: Option<Vec<String>>,
}

/// What a listener speaks over its TCP (or TLS) stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerTransport {
    /// Weir frames directly on the stream.
    #[default]
    Tcp,
    /// An HTTP upgrade to WebSocket (subprotocol `weir.v1`), then Weir frames in binary
    /// messages (protocol.md §WebSocket).
    Websocket,
}

impl ListenerConfig {
    /// A listener on `listen` with no overrides.
    pub fn new(listen: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            listen,
            reconnect_keep_alive_ms: None,
            heartbeat_interval_ms: None,
            heartbeat_timeout_ms: None,
            max_frame_len: None,
            in_flight_window: None,
            max_queue_depth: None,
            max_queue_bytes: None,
            max_queue_depth_detached: None,
            max_queue_bytes_detached: None,
            max_publish_rate: None,
            max_publish_bytes_rate: None,
            tls_cert: None,
            tls_key: None,
            proxy_protocol: None,
            trusted_proxies: None,
            allow_anonymous: None,
            transport: None,
            websocket_allowed_origins: None,
        }
    }
}

/// The settings in force on one listener: top-level values with that listener's overrides
/// applied. Sessions take the settings of the listener their connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Detached-session keep-alive; 0 disables reconnection.
    pub reconnect_keep_alive: Duration,
    /// PING after this much server silence.
    pub heartbeat_interval: Duration,
    /// Close after this much client silence.
    pub heartbeat_timeout: Duration,
    /// Max frame length after HELLO.
    pub max_frame_len: u32,
    /// Max in-flight window.
    pub in_flight_window: u32,
    /// Max queued messages while connected.
    pub max_queue_depth: u32,
    /// Max queued payload bytes while connected.
    pub max_queue_bytes: u64,
    /// Max queued messages while detached (already the larger of the two settings).
    pub max_queue_depth_detached: u32,
    /// Max queued payload bytes while detached (already the larger of the two settings).
    pub max_queue_bytes_detached: u64,
    /// PUBLISH frames per second per connection; 0 = unlimited.
    pub max_publish_rate: u32,
    /// Payload bytes per second per connection; 0 = unlimited.
    pub max_publish_bytes_rate: u64,
    /// HELLOs without credentials are accepted (resolved: listener, top level, then true
    /// exactly when `listen` is a loopback address).
    pub allow_anonymous: bool,
}

impl Config {
    /// The listeners to open, with their settings resolved: `[[listeners]]`, or one on
    /// `listen` when none are declared.
    pub fn listener_settings(&self) -> Vec<ListenerSettings> {
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
                let max_queue_depth = l.max_queue_depth.unwrap_or(self.max_queue_depth);
                let max_queue_bytes = l.max_queue_bytes.unwrap_or(self.max_queue_bytes);
                ListenerSettings {
                    listen: l.listen,
                    reconnect_keep_alive: Duration::from_millis(
                        l.reconnect_keep_alive_ms
                            .unwrap_or(self.reconnect_keep_alive_ms),
                    ),
                    heartbeat_interval: Duration::from_millis(
                        l.heartbeat_interval_ms
                            .unwrap_or(self.heartbeat_interval_ms),
                    ),
                    heartbeat_timeout: Duration::from_millis(
                        l.heartbeat_timeout_ms.unwrap_or(self.heartbeat_timeout_ms),
                    ),
                    max_frame_len: l.max_frame_len.unwrap_or(self.max_frame_len),
                    in_flight_window: l.in_flight_window.unwrap_or(self.in_flight_window),
                    max_queue_depth,
                    max_queue_bytes,
                    max_queue_depth_detached: l
                        .max_queue_depth_detached
                        .unwrap_or(self.max_queue_depth_detached)
                        .max(max_queue_depth),
                    max_queue_bytes_detached: l
                        .max_queue_bytes_detached
                        .unwrap_or(self.max_queue_bytes_detached)
                        .max(max_queue_bytes),
                    max_publish_rate: l.max_publish_rate.unwrap_or(self.max_publish_rate),
                    max_publish_bytes_rate: l
                        .max_publish_bytes_rate
                        .unwrap_or(self.max_publish_bytes_rate),
                    allow_anonymous: l
                        .allow_anonymous
                        .or(self.allow_anonymous)
                        .unwrap_or(l.listen.ip().is_loopback()),
                }
            })
            .collect()
    }

    /// Per listener (same order as [`Config::listener_settings`]): `None` if it does not use the
    /// PROXY protocol, else the networks trusted to send the header.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an address that does not parse or an empty trust list.
    pub fn proxy_policies(&self) -> Result<Vec<Option<Vec<IpNet>>>, ConfigError> {
        let listeners: Vec<(Option<bool>, Option<&Vec<String>>)> = if self.listeners.is_empty() {
            vec![(None, None)]
        } else {
            self.listeners
                .iter()
                .map(|l| (l.proxy_protocol, l.trusted_proxies.as_ref()))
                .collect()
        };
        listeners
            .into_iter()
            .map(|(enabled, trusted)| {
                if !enabled.unwrap_or(self.proxy_protocol) {
                    return Ok(None);
                }
                let trusted = trusted.unwrap_or(&self.trusted_proxies);
                if trusted.is_empty() {
                    let text = "proxy_protocol needs at least one trusted_proxies entry";
                    return Err(ConfigError::Invalid(text.into()));
                }
                let nets = trusted
                    .iter()
                    .map(|t| IpNet::parse(t).map_err(ConfigError::Invalid))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(nets))
            })
            .collect()
    }

    /// Per listener (same order as [`Config::listener_settings`]): the TLS certificate and key
    /// paths, or `None` for plain TCP.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when only one of the two is given.
    pub fn tls_paths(&self) -> Result<Vec<Option<(PathBuf, PathBuf)>>, ConfigError> {
        let pairs: Vec<(Option<&PathBuf>, Option<&PathBuf>, String)> = if self.listeners.is_empty()
        {
            vec![(
                self.tls_cert.as_ref(),
                self.tls_key.as_ref(),
                self.listen.to_string(),
            )]
        } else {
            self.listeners
                .iter()
                .map(|l| {
                    (
                        l.tls_cert.as_ref().or(self.tls_cert.as_ref()),
                        l.tls_key.as_ref().or(self.tls_key.as_ref()),
                        l.listen.to_string(),
                    )
                })
                .collect()
        };
        pairs
            .into_iter()
            .map(|(cert, key, listen)| match (cert, key) {
                (Some(cert), Some(key)) => Ok(Some((cert.clone(), key.clone()))),
                (None, None) => Ok(None),
                _ => Err(ConfigError::Invalid(format!(
                    "listener {listen}: tls_cert and tls_key go together"
                ))),
            })
            .collect()
    }
}
