//! `[[queues]]`: pre-declared queues, their conflation, size, durability, group and TTL
//! settings.

use super::*;

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
