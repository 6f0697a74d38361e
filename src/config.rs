//! Server configuration: embedded defaults, TOML parsing, validation.
//!
//! Every key is optional; a missing key takes the default documented on its field and in
//! `weir.toml`. Unknown keys are an error (`deny_unknown_fields`), so a typo is caught at
//! startup instead of silently ignored. The struct field, the config key, the metric and the
//! protocol.md term are the same word.
//!
//! Nothing here runs after startup.

mod loop_settings;
pub mod reload;
mod tls_files;

pub use loop_settings::{ListenerStack, LoopSettings, WebSocketSettings};
pub use tls_files::load_tls;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::credentials::{Authenticator, UserDeclaration};
use crate::protocol::proxy::IpNet;
use crate::protocol::{MAX_NAME_LEN, RESUME_TOKEN_LEN};

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

/// One user (`[[users]]`): a name, a password hash and/or a token hash, and permissions.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name given in a PASSWORD HELLO, shown in STATS and logs (1..=255 bytes).
    pub name: String,
    /// `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`, from `weir-server --hash-password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// `sha256$<hex of SHA-256(token)>`, for TOKEN authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_hash: Option<String>,
    /// Queues this user may publish to: exact names, `prefix*`, or `*`. Default none.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Queues this user may subscribe to, same patterns. Default none.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// May use STATS. Default false.
    #[serde(default)]
    pub admin: bool,
}

impl fmt::Debug for UserConfig {
    // Hashes stay out of debug output and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("has_password_hash", &self.password_hash.is_some())
            .field("has_token_hash", &self.token_hash.is_some())
            .field("publish", &self.publish)
            .field("subscribe", &self.subscribe)
            .field("admin", &self.admin)
            .finish()
    }
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

/// Settings of one pre-declared queue (`[[queues]]` in the config file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Queue name, 1..=255 bytes.
    pub name: String,
    /// Every message of this queue conflates on (event, key). Default false.
    #[serde(default)]
    pub conflate: bool,
    /// Largest payload accepted for this queue, in bytes. Default: bounded only by
    /// `max_frame_len`.
    #[serde(default)]
    pub max_payload_len: Option<u32>,
    /// Messages are kept in `data_dir` and survive a restart or a crash; a RECEIPT is sent
    /// only once they are on disk. Needs `data_dir`. Default false.
    #[serde(default)]
    pub durable: bool,
    /// When a durable queue's RECEIPT is sent: `"always"` (the default) after the fdatasync
    /// that covers the message. Omit it to use `fsync_interval_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync: Option<String>,
    /// Instead of `fsync = "always"`: the RECEIPT is sent once the message is written (in the
    /// OS page cache), and the files are synced every this many ms: a crash of the machine
    /// (not of the server) may lose up to this window of receipted messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync_interval_ms: Option<u64>,
    /// Most messages a durable queue retains; older ones are dropped, whole segments deleted.
    /// Default 1,000,000 (the retained messages are also held in memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u64>,
    /// Most payload bytes a durable queue retains, same rule. Default 1 GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Groups of this queue: a delivery not acked this many ms after it was sent goes to
    /// another member (protocol.md §Groups). Default [`DEFAULT_ACK_DEADLINE_MS`].
    #[serde(default = "default_ack_deadline_ms")]
    pub ack_deadline_ms: u64,
    /// Groups of this queue: deliveries of one message before it is dead-lettered, 1..=1000.
    /// Default [`DEFAULT_MAX_DELIVERIES`].
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: u16,
    /// Groups of this queue: where a message goes after `max_deliveries`; without one it is
    /// dropped, counted in `messages_dropped_max_deliveries`. Default none.
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
    /// Time to live of this queue's messages, in ms, for publishes that give none
    /// (protocol.md §Time to live); 0 = never expire. Default 0.
    #[serde(default)]
    pub ttl_ms: u32,
}

/// Default `ack_deadline_ms` of a queue's groups: 30 s, the visibility timeout SQS defaults
/// to; long enough for most jobs, short enough that a hung worker's jobs move on.
pub const DEFAULT_ACK_DEADLINE_MS: u64 = 30_000;
/// Default `max_deliveries` of a queue's groups: a job that failed 5 workers is a poison
/// message, not bad luck.
pub const DEFAULT_MAX_DELIVERIES: u16 = 5;

fn default_ack_deadline_ms() -> u64 {
    DEFAULT_ACK_DEADLINE_MS
}

fn default_max_deliveries() -> u16 {
    DEFAULT_MAX_DELIVERIES
}

/// When a durable queue's messages are synced to disk (`fsync` / `fsync_interval_ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fdatasync before the RECEIPT (group commit).
    Always,
    /// RECEIPT after the write; fdatasync every this many ms.
    Interval(u64),
}

/// Default of a durable queue's `max_messages`.
pub const DEFAULT_MAX_MESSAGES: u64 = 1_000_000;
/// Default of a durable queue's `max_bytes`.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024 * 1024;

impl QueueConfig {
    /// A queue declaration with every setting at its default.
    pub fn new(name: &str) -> QueueConfig {
        QueueConfig {
            name: name.to_owned(),
            conflate: false,
            max_payload_len: None,
            durable: false,
            fsync: None,
            fsync_interval_ms: None,
            max_messages: None,
            max_bytes: None,
            ack_deadline_ms: DEFAULT_ACK_DEADLINE_MS,
            max_deliveries: DEFAULT_MAX_DELIVERIES,
            dead_letter_queue: None,
            ttl_ms: 0,
        }
    }

    /// The queue's sync policy (validated: `fsync` is `"always"` or absent).
    pub fn fsync_policy(&self) -> FsyncPolicy {
        match self.fsync_interval_ms {
            Some(ms) if self.fsync.is_none() => FsyncPolicy::Interval(ms),
            _ => FsyncPolicy::Always,
        }
    }
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

    /// Checks ranges and consistency.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key and the rule it breaks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        // The biggest HELLO: flags, window, name, resume block.
        let max_hello = (2 + 1 + 4 + 1 + MAX_NAME_LEN + 8 + RESUME_TOKEN_LEN + 16) as u32;
        if self.max_frame_len_before_hello < max_hello {
            return invalid(format!(
                "max_frame_len_before_hello must be at least {max_hello} (the largest HELLO)"
            ));
        }
        if self.max_frame_len < self.max_frame_len_before_hello {
            return invalid("max_frame_len must be >= max_frame_len_before_hello".into());
        }
        if self.max_frame_len as usize > 64 * 1024 * 1024 {
            return invalid("max_frame_len must be at most 64 MiB".into());
        }
        for (key, value) in [
            ("max_connections", self.max_connections as u64),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("read_budget_bytes", self.read_budget_bytes as u64),
            ("write_budget_bytes", self.write_budget_bytes as u64),
            ("write_high_water_bytes", self.write_high_water_bytes as u64),
            ("in_flight_window", u64::from(self.in_flight_window)),
            ("max_queue_depth", u64::from(self.max_queue_depth)),
            ("max_queue_bytes", self.max_queue_bytes),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("heartbeat_timeout_ms", self.heartbeat_timeout_ms),
            ("max_queues", self.max_queues as u64),
            ("max_subscriptions", self.max_subscriptions as u64),
            ("max_name_len", self.max_name_len as u64),
            ("max_sessions", self.max_sessions as u64),
            ("segment_bytes", self.segment_bytes),
            (
                "max_sessions_per_identity",
                self.max_sessions_per_identity as u64,
            ),
            (
                "max_sessions_per_address",
                self.max_sessions_per_address as u64,
            ),
            (
                "max_queues_per_identity",
                self.max_queues_per_identity as u64,
            ),
            ("max_queues_per_address", self.max_queues_per_address as u64),
            (
                "max_password_checks_per_second",
                u64::from(self.max_password_checks_per_second),
            ),
        ] {
            if value == 0 {
                return invalid(format!("{key} must be greater than 0"));
            }
        }
        if self.busy_poll_us > 10_000 {
            return invalid("busy_poll_us must be at most 10000 (10 ms)".into());
        }
        if self.max_write_buffer_bytes < self.write_high_water_bytes + self.max_frame_len as usize {
            return invalid(
                "max_write_buffer_bytes must be >= write_high_water_bytes + max_frame_len".into(),
            );
        }
        if self.heartbeat_timeout_ms <= self.heartbeat_interval_ms {
            return invalid(
                "heartbeat_timeout_ms must be greater than heartbeat_interval_ms".into(),
            );
        }
        let mut addresses = HashSet::new();
        for (index, listener) in self.listener_settings().iter().enumerate() {
            let at = format!("listeners[{index}] ({})", listener.listen);
            // Port 0 asks the OS for any free port, so it can appear more than once.
            if listener.listen.port() != 0 && !addresses.insert(listener.listen) {
                return invalid(format!("{at}: address listed twice"));
            }
            if listener.max_frame_len < self.max_frame_len_before_hello
                || listener.max_frame_len as usize > 64 * 1024 * 1024
            {
                return invalid(format!(
                    "{at}: max_frame_len must be between max_frame_len_before_hello and 64 MiB"
                ));
            }
            if self.max_write_buffer_bytes
                < self.write_high_water_bytes + listener.max_frame_len as usize
            {
                return invalid(format!(
                    "{at}: max_write_buffer_bytes must be >= write_high_water_bytes + \
                     max_frame_len"
                ));
            }
            if listener.heartbeat_interval.is_zero()
                || listener.heartbeat_timeout <= listener.heartbeat_interval
            {
                return invalid(format!(
                    "{at}: heartbeat_timeout_ms must be greater than heartbeat_interval_ms > 0"
                ));
            }
            if listener.in_flight_window == 0
                || listener.max_queue_depth == 0
                || listener.max_queue_bytes == 0
            {
                return invalid(format!(
                    "{at}: in_flight_window, max_queue_depth and max_queue_bytes must be > 0"
                ));
            }
        }
        self.authenticator().map_err(ConfigError::Invalid)?;
        let can_authenticate = !self.users.is_empty() || self.token_signing_key.is_some();
        if let Some(listener) = self
            .listener_settings()
            .iter()
            .find(|l| !l.allow_anonymous && !can_authenticate)
        {
            return invalid(format!(
                "listener {} does not allow anonymous sessions (the default on a non-loopback \
                 address) but no [[users]] or token_signing_key is configured: nobody could \
                 connect; add users or set allow_anonymous = true",
                listener.listen
            ));
        }
        if self.max_name_len > MAX_NAME_LEN {
            return invalid(format!("max_name_len must be at most {MAX_NAME_LEN}"));
        }
        // Both parse (PROXY in front of TLS is a supported stack: the header comes in clear,
        // then the handshake).
        self.proxy_policies()?;
        self.tls_paths()?;
        if self.queues.len() > self.max_queues {
            return invalid("more [[queues]] declared than max_queues".into());
        }
        let mut names = HashSet::new();
        for queue in &self.queues {
            if queue.name.is_empty() || queue.name.len() > MAX_NAME_LEN {
                return invalid(format!(
                    "queue name {:?} must be 1 to {MAX_NAME_LEN} bytes",
                    queue.name
                ));
            }
            if !names.insert(queue.name.as_str()) {
                return invalid(format!("queue {:?} is declared twice", queue.name));
            }
            if queue.ack_deadline_ms == 0 || !(1..=1_000).contains(&queue.max_deliveries) {
                return invalid(format!(
                    "queue {:?}: ack_deadline_ms must be > 0 and max_deliveries 1 to 1000",
                    queue.name
                ));
            }
            if let Some(dead_letter_queue) = &queue.dead_letter_queue {
                if dead_letter_queue.is_empty()
                    || dead_letter_queue.len() > MAX_NAME_LEN
                    || *dead_letter_queue == queue.name
                {
                    return invalid(format!(
                        "queue {:?}: dead_letter_queue must be 1 to {MAX_NAME_LEN} bytes and \
                         another queue",
                        queue.name
                    ));
                }
            }
            if queue.max_payload_len == Some(0) {
                return invalid(format!(
                    "queue {:?}: max_payload_len must be > 0",
                    queue.name
                ));
            }
            if queue.durable && self.data_dir.is_none() {
                return invalid(format!(
                    "queue {:?} is durable but no data_dir is configured",
                    queue.name
                ));
            }
            let is_durable_key = queue.fsync.is_some()
                || queue.fsync_interval_ms.is_some()
                || queue.max_messages.is_some()
                || queue.max_bytes.is_some();
            if is_durable_key && !queue.durable {
                return invalid(format!(
                    "queue {:?}: fsync, fsync_interval_ms, max_messages and max_bytes need \
                     durable = true",
                    queue.name
                ));
            }
            if queue.fsync.as_deref().is_some_and(|f| f != "always") {
                return invalid(format!(
                    "queue {:?}: fsync must be \"always\" (or use fsync_interval_ms)",
                    queue.name
                ));
            }
            if queue.fsync.is_some() && queue.fsync_interval_ms.is_some() {
                return invalid(format!(
                    "queue {:?}: fsync = \"always\" and fsync_interval_ms exclude each other",
                    queue.name
                ));
            }
            if queue.fsync_interval_ms == Some(0)
                || queue.max_messages == Some(0)
                || queue.max_bytes == Some(0)
            {
                return invalid(format!(
                    "queue {:?}: fsync_interval_ms, max_messages and max_bytes must be > 0",
                    queue.name
                ));
            }
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

/// Keys renamed so that the config, the metrics and protocol.md use one word (issue 9): old,
/// new. The old names stay accepted (serde `alias`) and draw a warning at load.
const RENAMED_KEYS: [(&str, &str); 4] = [
    ("metrics_listen", "http_listen"),
    ("inflight_window", "in_flight_window"),
    ("max_queue_depth_disconnected", "max_queue_depth_detached"),
    ("max_queue_bytes_disconnected", "max_queue_bytes_detached"),
];

/// One warning per old key name used in `text`, at the top level or in a `[[listeners]]` table.
fn deprecated_keys(text: &str) -> Vec<String> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let listeners = table
        .get("listeners")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, l)| Some((format!("listeners[{i}]."), l.as_table()?)));
    std::iter::once((String::new(), &table))
        .chain(listeners)
        .flat_map(|(at, keys)| {
            RENAMED_KEYS
                .iter()
                .filter(|(old, _)| keys.contains_key(*old))
                .map(move |(old, new)| {
                    format!("{at}{old} is deprecated, it is now called {at}{new}")
                })
        })
        .collect()
}

/// A serde/toml message made plainer: "did you mean" for an unknown key (the closest
/// expected key by edit distance), and "a non-negative integer" instead of Rust type names.
fn explain_parse_error(message: &str) -> String {
    let mut text = message.to_owned();
    for rust_type in ["usize", "u64", "u32", "u16", "u8"] {
        text = text.replace(
            &format!("expected {rust_type}"),
            "expected a non-negative integer",
        );
    }
    let unknown = message
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'));
    if let Some((field, rest)) = unknown {
        let expected = rest.split('`').skip(1).step_by(2);
        let best = expected
            .map(|key| (edit_distance(field, key), key))
            .min_by_key(|(distance, _)| *distance);
        if let Some((distance, key)) = best {
            if distance <= (field.len() / 3).max(2) {
                text = text.trim_end().to_owned();
                text += &format!("\ndid you mean `{key}`?\n");
            }
        }
    }
    text
}

/// Levenshtein distance between two keys (short ASCII strings).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_embedded_defaults() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn example_weir_toml_matches_the_defaults_it_documents() {
        let text = include_str!("../weir.toml");
        // Issue 13: the `[[queues]]` examples are comments now, so the file is the defaults.
        let config = Config::from_toml(text).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_toml("max_queue_dept = 5").unwrap_err();
        assert!(err.to_string().contains("max_queue_dept"), "{err}");
    }

    /// Issue 13: a suggestion for a misspelt key; no Rust type names.
    #[test]
    fn a_misspelt_key_gets_a_suggestion_and_types_are_named_for_people() {
        let err = Config::from_toml("max_queue_dept = 5")
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `max_queue_depth`?"), "{err}");
        let err = Config::from_toml("zzzzzzzzzz = 5").unwrap_err().to_string();
        assert!(!err.contains("did you mean"), "{err}");
        let err = Config::from_toml("max_connections = -1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a non-negative integer"), "{err}");
        assert!(!err.contains("usize"), "{err}");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    /// Issue 13: --print-config hides the signing key and shows unset keys commented out.
    #[test]
    fn the_printed_config_hides_secrets_and_comments_unset_keys() {
        let key = "a".repeat(44);
        let config = Config {
            token_signing_key: Some(key.clone()),
            ..Config::default()
        };
        let text = config.to_toml();
        assert!(!text.contains(&key), "{text}");
        assert!(text.contains("# token_signing_key is set"), "{text}");
        assert!(text.contains("# http_listen = "), "{text}");
        assert!(text.contains("# tls_cert = "), "{text}");
        let default = Config::default().to_toml();
        assert!(default.contains("# token_signing_key = "), "{default}");
    }

    #[test]
    fn zero_limits_are_refused_with_the_key_named() {
        let err = Config::from_toml("max_queue_depth = 0").unwrap_err();
        assert!(err.to_string().contains("max_queue_depth"), "{err}");
    }

    #[test]
    fn busy_poll_may_be_off_but_not_longer_than_ten_ms() {
        assert_eq!(Config::default().busy_poll_us, 0, "off by default");
        assert_eq!(
            Config::from_toml("busy_poll_us = 50").unwrap().busy_poll_us,
            50
        );
        assert!(Config::from_toml("busy_poll_us = 10000").is_ok());
        let err = Config::from_toml("busy_poll_us = 10001").unwrap_err();
        assert!(err.to_string().contains("busy_poll_us"), "{err}");
    }

    #[test]
    fn duplicate_queue_declarations_are_refused() {
        let text = "[[queues]]\nname = \"a\"\n[[queues]]\nname = \"a\"\n";
        assert!(Config::from_toml(text).is_err());
    }

    #[test]
    fn listeners_inherit_top_level_values_and_apply_their_overrides() {
        let text = "max_queue_depth = 10\nreconnect_keep_alive_ms = 5000\n\
                    [[listeners]]\nlisten = \"127.0.0.1:7401\"\n\
                    [[listeners]]\nlisten = \"127.0.0.1:7402\"\n\
                    reconnect_keep_alive_ms = 0\nmax_queue_depth_detached = 5\n";
        let config = Config::from_toml(text).unwrap();
        let listeners = config.listener_settings();
        assert_eq!(listeners.len(), 2);
        assert_eq!(listeners[0].reconnect_keep_alive, Duration::from_secs(5));
        assert_eq!(listeners[0].max_queue_depth, 10);
        assert_eq!(listeners[1].reconnect_keep_alive, Duration::ZERO);
        // The detached limit is never below the connected one.
        assert_eq!(listeners[1].max_queue_depth_detached, 10);
    }

    #[test]
    fn the_same_address_twice_is_refused() {
        let text = "[[listeners]]\nlisten = \"127.0.0.1:7401\"\n\
                    [[listeners]]\nlisten = \"127.0.0.1:7401\"\n";
        let err = Config::from_toml(text).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn anonymous_sessions_default_to_loopback_listeners_only() {
        let text = "allow_anonymous = true\n[[listeners]]\nlisten = \"127.0.0.1:7401\"\n\
                    [[listeners]]\nlisten = \"10.1.2.3:7402\"\n\
                    [[listeners]]\nlisten = \"10.1.2.3:7403\"\nallow_anonymous = false\n\
                    [[users]]\nname = \"u\"\ntoken_hash = \"sha256$\
                    0000000000000000000000000000000000000000000000000000000000000000\"\n";
        let config = Config::from_toml(text).unwrap();
        let allowed: Vec<bool> = config
            .listener_settings()
            .iter()
            .map(|l| l.allow_anonymous)
            .collect();
        assert_eq!(allowed, [true, true, false]);
        let mut config = config;
        config.allow_anonymous = None;
        let allowed: Vec<bool> = config
            .listener_settings()
            .iter()
            .map(|l| l.allow_anonymous)
            .collect();
        assert_eq!(allowed, [true, false, false]);
    }

    #[test]
    fn a_listener_nobody_could_use_is_refused() {
        let err = Config::from_toml("listen = \"10.1.2.3:7400\"").unwrap_err();
        assert!(err.to_string().contains("allow_anonymous"), "{err}");
    }

    #[test]
    fn bad_users_are_refused_with_the_user_named() {
        for (text, expect) in [
            (
                "[[users]]\nname = \"a\"\n",
                "needs password_hash or token_hash",
            ),
            (
                "[[users]]\nname = \"a\"\npassword_hash = \"plain\"\n",
                "pbkdf2-sha256",
            ),
            (
                "[[users]]\nname = \"a\"\ntoken_hash = \"sha256$00\"\n",
                "token_hash",
            ),
            (
                "[[users]]\nname = \"a\"\ntoken_hash = \"sha256$\
                 0000000000000000000000000000000000000000000000000000000000000000\"\n\
                 publish = [\"a*b\"]\n",
                "a*b",
            ),
            ("token_signing_key = \"c2hvcnQ=\"\n", "at least 32 bytes"),
        ] {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(expect), "{text}: {err}");
        }
    }

    #[test]
    fn metrics_listen_is_accepted_as_http_listen_with_a_warning() {
        let config = Config::from_toml("metrics_listen = \"127.0.0.1:9740\"\n").unwrap();
        assert_eq!(config.http_listen, Some("127.0.0.1:9740".parse().unwrap()));
        assert_eq!(
            config.warnings,
            ["metrics_listen is deprecated, it is now called http_listen"]
        );
    }

    #[test]
    fn a_websocket_listener_gets_its_origins_and_a_message_limit_of_one_frame() {
        let text = "websocket_allowed_origins = [\"https://a.example\"]\n\
                    [[listeners]]\nlisten = \"127.0.0.1:7400\"\n\
                    [[listeners]]\nlisten = \"127.0.0.1:7480\"\ntransport = \"websocket\"\n\
                    max_frame_len = 65536\n";
        let config = Config::from_toml(text).unwrap();
        let settings = config.websocket_settings();
        assert_eq!(settings[0], None);
        let ws = settings[1].as_ref().unwrap();
        assert_eq!(ws.allowed_origins, ["https://a.example"]);
        assert_eq!(ws.max_message_len, 65_536 + 4);
        assert!(Config::from_toml("transport = \"quic\"\n").is_err());
    }

    #[test]
    fn old_key_names_are_accepted_with_one_warning_each() {
        let text = "inflight_window = 7\nmax_queue_depth_disconnected = 200001\n\
                    max_queue_bytes_disconnected = 200000000\n\
                    [[listeners]]\nlisten = \"127.0.0.1:7401\"\ninflight_window = 3\n";
        let config = Config::from_toml(text).unwrap();
        assert_eq!(config.in_flight_window, 7);
        assert_eq!(config.max_queue_depth_detached, 200_001);
        assert_eq!(config.max_queue_bytes_detached, 200_000_000);
        assert_eq!(config.listeners[0].in_flight_window, Some(3));
        assert_eq!(
            config.warnings,
            [
                "inflight_window is deprecated, it is now called in_flight_window",
                "max_queue_depth_disconnected is deprecated, it is now called \
                 max_queue_depth_detached",
                "max_queue_bytes_disconnected is deprecated, it is now called \
                 max_queue_bytes_detached",
                "listeners[0].inflight_window is deprecated, it is now called \
                 listeners[0].in_flight_window",
            ]
        );
        // The new names draw no warning, and the printed config uses them.
        let new = Config::from_toml("in_flight_window = 7\nmax_queue_depth_detached = 1\n");
        assert!(new.unwrap().warnings.is_empty());
        let printed = config.to_toml();
        assert!(printed.contains("in_flight_window = 7"), "{printed}");
        assert!(!printed.contains("disconnected") && !printed.contains("inflight"));
    }

    #[test]
    fn an_old_and_a_new_name_together_are_refused() {
        let err = Config::from_toml("inflight_window = 1\nin_flight_window = 2\n").unwrap_err();
        assert!(err.to_string().contains("in_flight_window"), "{err}");
    }

    #[test]
    fn printed_config_parses_back_to_itself() {
        let config = Config::default();
        assert_eq!(Config::from_toml(&config.to_toml()).unwrap(), config);
    }
}
