//! Server configuration: embedded defaults, TOML parsing, validation.
//!
//! Every key is optional; a missing key takes the default documented on its field and in
//! `weir.toml`. Unknown keys are an error (`deny_unknown_fields`), so a typo is caught at
//! startup instead of silently ignored. The struct field, the config key, the metric and the
//! protocol.md term are the same word.
//!
//! Nothing here runs after startup.

mod listeners;
mod loop_settings;
mod parse;
mod queues;
pub mod reload;
#[cfg(test)]
mod tests;
mod tls_files;
mod users;
mod validate;

pub use listeners::{ListenerConfig, ListenerSettings, ListenerTransport};
pub use loop_settings::{ListenerStack, LoopSettings, WebSocketSettings};
pub use queues::{
    FsyncPolicy, QueueConfig, DEFAULT_ACK_DEADLINE_MS, DEFAULT_MAX_BYTES, DEFAULT_MAX_DELIVERIES,
    DEFAULT_MAX_MESSAGES,
};
pub use tls_files::load_tls;
pub use users::UserConfig;

use parse::{deprecated_keys, explain_parse_error};

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::credentials::{Authenticator, UserDeclaration};
use crate::protocol::proxy::IpNet;
use crate::protocol::MAX_NAME_LEN;

/// The whole server configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:7400`: loopback only until configured
    /// otherwise (the Mosquitto 2 / Redis protected-mode precedent).
    pub listen: SocketAddr,
    /// Connections beyond this get ERROR(SERVER_BUSY) and are closed. Default 10,000 (the
    /// machines we run on allow 20,000 open files per process).
    pub max_connections: usize,
    /// A connection that has not sent HELLO this long after accept is closed with
    /// HANDSHAKE_TIMEOUT. Default 5,000 ms.
    pub handshake_timeout_ms: u64,
    /// Max frame length (bytes after the length prefix) after HELLO. Default 1 MiB.
    pub max_frame_len: u32,
    /// Max frame length before HELLO is accepted. Default 4 KiB.
    pub max_frame_len_before_hello: u32,
    /// Bytes read from one connection per loop turn before serving others. Default 256 KiB.
    pub read_budget_bytes: usize,
    /// Bytes written to one connection per loop turn before serving others. Default 1 MiB.
    pub write_budget_bytes: usize,
    /// Deliveries move from a session's queue into its write buffer only while the buffer
    /// holds less than this. Default 64 KiB: enough for one large write per turn.
    pub write_high_water_bytes: usize,
    /// Frames other than DELIVER and RECEIPT waiting to be written past this close the
    /// connection with SLOW_CONSUMER. Default 8 MiB.
    pub max_write_buffer_bytes: usize,
    /// After a loop turn that had I/O, poll without blocking for this long before sleeping
    /// in epoll, so the next frame is picked up without the wake-up delay of a sleeping
    /// thread (and CPU). Costs a whole core while frames arrive more often than this; an
    /// idle server sleeps. Default 0 (off; see weir.toml for what it did on a shared VM), at
    /// most 10,000.
    pub busy_poll_us: u32,
    /// Max deliveries sent and not yet acked per session; clients may ask for less.
    /// Default 1,024. Formerly `inflight_window`, still accepted with a warning.
    #[serde(alias = "inflight_window")]
    pub in_flight_window: u32,
    /// Max messages queued for one session (pending + in flight). Default 100,000.
    pub max_queue_depth: u32,
    /// Max payload bytes queued for one session (pending + in flight). Default 64 MiB.
    pub max_queue_bytes: u64,
    /// The server sends PING after this long without sending anything. Default 10,000 ms.
    pub heartbeat_interval_ms: u64,
    /// The server closes a connection it received nothing from for this long.
    /// Default 30,000 ms.
    pub heartbeat_timeout_ms: u64,
    /// Max queues in the server (created on first use). Default 100,000.
    pub max_queues: usize,
    /// Max subscriptions per session. Default 1,000.
    pub max_subscriptions: usize,
    /// Longest queue, event or conflation key name accepted in PUBLISH and SUBSCRIBE, in
    /// bytes (the wire allows 255). Longer: ERROR(LIMIT_EXCEEDED). Default 255.
    pub max_name_len: usize,
    /// How long a session outlives its connection, waiting for the client to resume it.
    /// 0 disables reconnection. Default 60,000 ms.
    pub reconnect_keep_alive_ms: u64,
    /// Max messages queued for a detached session (the larger of this and `max_queue_depth`
    /// applies while detached). Default 200,000. Formerly `max_queue_depth_disconnected`, still
    /// accepted with a warning.
    #[serde(alias = "max_queue_depth_disconnected")]
    pub max_queue_depth_detached: u32,
    /// Max payload bytes queued for a detached session (the larger of this and
    /// `max_queue_bytes` applies while detached). Default 128 MiB. Formerly
    /// `max_queue_bytes_disconnected`, still accepted with a warning.
    #[serde(alias = "max_queue_bytes_disconnected")]
    pub max_queue_bytes_detached: u64,
    /// Most PUBLISH frames per second one connection may send (token bucket, bursts up to one
    /// second's worth). Over it the server stops reading that connection until the bucket
    /// refills: TCP back-pressure, nothing dropped. 0 = unlimited (the default).
    pub max_publish_rate: u32,
    /// Most payload bytes per second one connection may publish, same rule. 0 = unlimited.
    pub max_publish_bytes_rate: u64,
    /// Most sessions, detached ones included; a HELLO that would create one more gets
    /// ERROR(SERVER_BUSY). Default 20,000.
    pub max_sessions: usize,
    /// Most sessions (detached ones included) one identity may hold: a user name, or for
    /// anonymous sessions nobody (the address limit applies). At the limit the identity's own
    /// oldest detached session is evicted first; with none, HELLO gets ERROR(LIMIT_EXCEEDED).
    /// Default 2,000 (a tenth of `max_sessions`), so one client cannot take them all.
    pub max_sessions_per_identity: usize,
    /// Most sessions one source address may hold (the PROXY header's address when there is
    /// one), same rule; loopback addresses are not limited. Default 2,000.
    pub max_sessions_per_address: usize,
    /// Most live queues one identity may have created (a queue lives while it has subscribers
    /// or stored messages, or is declared). Default 10,000 (a tenth of `max_queues`).
    pub max_queues_per_identity: usize,
    /// Most live queues one source address may have created (loopback: unlimited). Default
    /// 10,000.
    pub max_queues_per_address: usize,
    /// Memory the broker may use for stored payloads (as allocated), queue nodes, session
    /// state and connection input buffers. Near it (7/8) publishers are not read; past it the
    /// largest consumers are closed with MEMORY_LIMIT. Default 0: a quarter of physical
    /// memory, read once at startup.
    pub max_memory_bytes: u64,
    /// Password checks (PBKDF2, run on worker threads) started per second, server-wide,
    /// bursts up to one second's worth; HELLOs from addresses and users without recent
    /// failures go first. A HELLO not checked by its handshake deadline gets SERVER_BUSY.
    /// Default 100.
    pub max_password_checks_per_second: u32,
    /// A reload that widens access (allows anonymous HELLOs, removes users or permissions,
    /// drops TLS from a listener) is refused unless the new file sets this to true; applied,
    /// it is logged at warning level with what changed. Default false.
    pub reload_widens_access: bool,
    /// PEM certificate chain for TLS; with `tls_key`, every listener without its own setting
    /// speaks TLS. Default none (plain TCP).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Address of the HTTP listener, served by the same event loop: Prometheus metrics at
    /// `GET /metrics`, the dashboard at `GET /` and its data at `GET /stats.json` (admins
    /// only; see README). Default none (off). Formerly `metrics_listen`, still accepted with a
    /// warning.
    #[serde(alias = "metrics_listen")]
    pub http_listen: Option<SocketAddr>,
    /// What the listeners speak over TCP (or TLS): `"tcp"`, Weir frames on the stream, or
    /// `"websocket"`, Weir frames in binary WebSocket messages (protocol.md §WebSocket).
    /// Listeners may override. Default `"tcp"`.
    pub transport: ListenerTransport,
    /// Browser origins (`scheme://host[:port]`, or `"*"` for any) allowed to open a WebSocket
    /// connection besides the same-host rule (protocol.md §WebSocket). Default none.
    pub websocket_allowed_origins: Vec<String>,
    /// Connections must start with a PROXY protocol v1 or v2 header naming the real client
    /// (behind HAProxy `send-proxy-v2`, nginx `proxy_protocol on`). Default false.
    pub proxy_protocol: bool,
    /// Addresses or networks allowed to send PROXY headers; other peers are refused on a
    /// `proxy_protocol` listener. Default loopback only.
    pub trusted_proxies: Vec<String>,
    /// Whether HELLOs without credentials are accepted (listeners may override). Default:
    /// true on a loopback listener, false on any other (protocol.md §Authentication).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// Base64 key (at least 32 bytes decoded) for SIGNED_TOKEN authentication. Default none
    /// (signed tokens refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_signing_key: Option<String>,
    /// Users who authenticate with a password or a token, with their permissions.
    pub users: Vec<UserConfig>,
    /// Several listeners, each with its own settings. Empty (the default): one listener on
    /// `listen` with the top-level values.
    pub listeners: Vec<ListenerConfig>,
    /// Pre-declared queues with their settings.
    pub queues: Vec<QueueConfig>,
    /// Directory of the durable queues' segment files (created if its parent exists; an
    /// empty directory is initialised; anything else must be a Weir store of this version).
    /// Default none: no storage, nothing is written, and `durable = true` is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Size at which a durable queue's segment file is closed and the next one started;
    /// retention deletes whole segments. Default 64 MiB (large enough that a segment roll,
    /// which syncs the directory, is rare; small enough that retention frees space in steps).
    pub segment_bytes: u64,
    /// Warnings about the file this was loaded from (deprecated key names), each logged once
    /// at load. Not a config key.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            max_connections: 10_000,
            handshake_timeout_ms: 5_000,
            max_frame_len: crate::protocol::MAX_FRAME_LEN,
            max_frame_len_before_hello: crate::protocol::MAX_FRAME_LEN_BEFORE_HELLO,
            read_budget_bytes: 256 * 1024,
            write_budget_bytes: 1024 * 1024,
            write_high_water_bytes: 64 * 1024,
            max_write_buffer_bytes: 8 * 1024 * 1024,
            busy_poll_us: 0,
            in_flight_window: 1_024,
            max_queue_depth: 100_000,
            max_queue_bytes: 64 * 1024 * 1024,
            heartbeat_interval_ms: 10_000,
            heartbeat_timeout_ms: 30_000,
            max_queues: 100_000,
            max_subscriptions: 1_000,
            max_name_len: MAX_NAME_LEN,
            reconnect_keep_alive_ms: 60_000,
            max_queue_depth_detached: 200_000,
            max_queue_bytes_detached: 128 * 1024 * 1024,
            max_publish_rate: 0,
            max_publish_bytes_rate: 0,
            max_sessions: 20_000,
            max_sessions_per_identity: 2_000,
            max_sessions_per_address: 2_000,
            max_queues_per_identity: 10_000,
            max_queues_per_address: 10_000,
            max_memory_bytes: 0,
            max_password_checks_per_second: 100,
            reload_widens_access: false,
            tls_cert: None,
            tls_key: None,
            http_listen: None,
            transport: ListenerTransport::Tcp,
            websocket_allowed_origins: Vec::new(),
            proxy_protocol: false,
            trusted_proxies: vec!["127.0.0.1".to_owned(), "::1".to_owned()],
            allow_anonymous: None,
            token_signing_key: None,
            users: Vec::new(),
            listeners: Vec::new(),
            queues: Vec::new(),
            data_dir: None,
            segment_bytes: 64 * 1024 * 1024,
            warnings: Vec::new(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML did not parse or had unknown keys or wrong types.
    Parse(String),
    /// A value is out of range or inconsistent with another.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read config {}: {source}", path.display())
            }
            ConfigError::Parse(msg) => write!(f, "config does not parse: {msg}"),
            ConfigError::Invalid(msg) => write!(f, "invalid config: {msg}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a TOML file.
    ///
    /// # Errors
    /// [`ConfigError`] if the file cannot be read, does not parse, or fails validation.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text)
    }

    /// Parses and validates TOML text.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`].
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse(explain_parse_error(&e.to_string())))?;
        config.validate()?;
        config.warnings = deprecated_keys(text);
        for warning in &config.warnings {
            log::warn!("config: {warning}");
        }
        Ok(config)
    }

    /// Renders the configuration as TOML (for `--print-config`). Secrets are not shown
    /// (`token_signing_key` becomes a comment saying it is set); optional keys left unset are
    /// printed commented out, with what leaving them unset means.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        let is_key_set = shown.token_signing_key.take().is_some();
        let body = match toml::to_string(&shown) {
            Ok(body) => body,
            Err(e) => return format!("# cannot render config: {e}\n"),
        };
        let mut notes = String::new();
        if is_key_set {
            notes += "# token_signing_key is set (a secret: not shown)\n";
        }
        let unset = [
            (
                self.http_listen.is_none(),
                "http_listen = \"127.0.0.1:9740\"",
                "no HTTP listener (metrics, dashboard)",
            ),
            (
                self.allow_anonymous.is_none(),
                "allow_anonymous = true",
                "anonymous clients on loopback listeners only",
            ),
            (
                !is_key_set,
                "token_signing_key = \"BASE64\"",
                "signed tokens refused",
            ),
            (
                self.tls_cert.is_none(),
                "tls_cert = \"/etc/weir/cert.pem\"",
                "plain TCP",
            ),
            (
                self.tls_key.is_none(),
                "tls_key = \"/etc/weir/key.pem\"",
                "plain TCP",
            ),
        ];
        for (is_unset, example, meaning) in unset {
            if is_unset {
                notes += &format!("# {example}    # unset: {meaning}\n");
            }
        }
        // Top-level keys go before the first table; so do these notes.
        let at = if body.starts_with('[') {
            0
        } else {
            body.find("\n[").map_or(body.len(), |i| i + 1)
        };
        format!("{}{notes}{}", &body[..at], &body[at..])
    }

    /// Checks what `-t` can check beyond [`Config::validate`] without binding: the trusted
    /// proxy addresses parse, and each TLS certificate and key is readable and parses, and
    /// they match.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the file or address and what is wrong with it.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        self.proxy_policies()?;
        for (cert, key) in self.tls_paths()?.into_iter().flatten() {
            tls_files::load_tls(&cert, &key).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        Ok(())
    }

    /// The users and signing key in force, parsed from `[[users]]` and `token_signing_key`.
    ///
    /// # Errors
    /// A message naming the user or key that is wrong.
    pub(crate) fn authenticator(&self) -> Result<Authenticator, String> {
        let declared = self.users.iter().map(|user| UserDeclaration {
            name: &user.name,
            password_hash: user.password_hash.as_deref(),
            token_hash: user.token_hash.as_deref(),
            publish: &user.publish,
            subscribe: &user.subscribe,
            admin: user.admin,
        });
        Authenticator::new(declared, self.token_signing_key.as_deref())
    }

    /// `handshake_timeout_ms` as a Duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// `heartbeat_interval_ms` as a Duration.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    /// `heartbeat_timeout_ms` as a Duration.
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms)
    }
}
