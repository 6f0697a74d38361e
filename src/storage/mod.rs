//! Durable storage: the segment logs of durable queues and the journal thread that writes them.
//!
//! Owns files, fsync and recovery; knows nothing of sessions or routing (it stores the
//! records the core hands it, see `broker::journal`). It talks to the event loop only through
//! a channel of [`JournalBatch`]es in and a channel of [`JournalProgress`] out, with a
//! `mio::Waker` to wake the loop: the loop never waits on the disk.
//!
//! On disk (`data_dir`):
//!
//! ```text
//! VERSION                      "weir-store 1\n": refused if it says anything else
//! LOCK                         flock(2)ed exclusively while a server uses the store; a
//!                              second server is refused at startup (the file stays, empty;
//!                              the lock goes with the process, even on kill -9)
//! queues/<hex of name>/        one directory per durable queue (see `segment.rs`)
//!     00000000000000000001.log records, positions 1, 2, …
//!     00000000000000000001.idx its sparse index
//! ```
//!
//! A configured `data_dir` that does not exist is created when its parent exists; an empty
//! directory is initialised. Anything else without a VERSION file, with another version, that
//! cannot be read, or with corruption beyond a torn tail is refused at startup with a message
//! naming the file (never started empty).

mod journal;
mod record;
mod segment;

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::{info, warn};

pub(crate) use journal::JournalThread;
use segment::QueueLog;

use crate::broker::journal::{JournalBatch, JournalProgress, RecoveredQueue};
use crate::config::{Config, FsyncPolicy};

/// Contents of the VERSION file this server writes and reads.
pub(crate) const STORE_VERSION: &str = "weir-store 1\n";

/// Why a store cannot be opened: a sentence naming the file and the problem.
#[derive(Debug)]
pub(crate) struct StoreError(String);

impl StoreError {
    fn new(text: String) -> StoreError {
        StoreError(text)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for io::Error {
    fn from(error: StoreError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, error.0)
    }
}

/// One durable queue's files and settings, as the journal thread keeps them.
#[derive(Debug)]
pub(crate) struct QueueFiles {
    pub(crate) log: QueueLog,
    pub(crate) fsync: FsyncPolicy,
}

/// The opened store: every durable queue's log.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) queues: HashMap<Arc<[u8]>, QueueFiles>,
    /// `LOCK`, held (flock) for as long as the store is open.
    _lock: fs::File,
}

/// Opens `config.data_dir` for the durable queues of `config`, recovering their messages.
///
/// # Errors
/// [`StoreError`] as described in the module docs.
pub(crate) fn open(config: &Config) -> Result<(Store, Vec<RecoveredQueue>), StoreError> {
    let Some(dir) = &config.data_dir else {
        return Err(StoreError::new("no data_dir configured".into()));
    };
    prepare_dir(dir)?;
    let lock = lock_dir(dir)?;
    let mut queues = HashMap::new();
    let mut recovered = Vec::new();
    for queue in config.queues.iter().filter(|q| q.durable) {
        let path = queue_dir(dir, queue.name.as_bytes());
        let (log, records, report) = QueueLog::open(&path, config.segment_bytes)?;
        info!(
            "durable queue {:?}: {} messages in {} segments recovered{}",
            queue.name,
            report.records,
            report.segments,
            if report.truncated_bytes > 0 {
                format!(", torn tail of {} bytes cut off", report.truncated_bytes)
            } else {
                String::new()
            }
        );
        let name: Arc<[u8]> = queue.name.as_bytes().into();
        recovered.push(RecoveredQueue {
            name: Arc::clone(&name),
            next_position: log.next_position(),
            messages: records
                .into_iter()
                .map(|r| (r.position, r.unix_ms, r.message))
                .collect(),
        });
        queues.insert(
            name,
            QueueFiles {
                log,
                fsync: queue.fsync_policy(),
            },
        );
    }
    if let Ok(entries) = fs::read_dir(dir.join("queues")) {
        let known: Vec<PathBuf> = config
            .queues
            .iter()
            .filter(|q| q.durable)
            .map(|q| queue_dir(dir, q.name.as_bytes()))
            .collect();
        for entry in entries.flatten() {
            if !known.contains(&entry.path()) {
                warn!(
                    "{}: a queue that is no longer declared durable; its files are kept",
                    entry.path().display()
                );
            }
        }
    }
    Ok((
        Store {
            queues,
            _lock: lock,
        },
        recovered,
    ))
}

/// Takes the store's lock: an exclusive flock on `LOCK`, without waiting.
fn lock_dir(dir: &Path) -> Result<fs::File, StoreError> {
    let path = dir.join("LOCK");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::new(format!("cannot open {}: {e}", path.display())))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(StoreError::new(format!(
            "data_dir {} is in use by another weir-server ({} is locked): two servers \
             cannot share one store",
            dir.display(),
            path.display()
        ))),
        Err(e) => Err(StoreError::new(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// Checks, creates or initialises the data directory (see the module docs).
fn prepare_dir(dir: &Path) -> Result<(), StoreError> {
    let shown = dir.display();
    match fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
            if parent.is_some_and(|p| !p.is_dir()) {
                return Err(StoreError::new(format!(
                    "data_dir {shown} does not exist, nor does its parent directory"
                )));
            }
            fs::create_dir(dir)
                .map_err(|e| StoreError::new(format!("cannot create data_dir {shown}: {e}")))?;
            info!("data_dir {shown} created");
        }
        Err(e) => {
            return Err(StoreError::new(format!(
                "cannot read data_dir {shown}: {e}"
            )))
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(StoreError::new(format!(
                "data_dir {shown} is not a directory"
            )));
        }
        Ok(_) => {}
    }
    let version_path = dir.join("VERSION");
    let is_empty = fs::read_dir(dir)
        .map_err(|e| StoreError::new(format!("cannot read data_dir {shown}: {e}")))?
        .next()
        .is_none();
    if is_empty {
        let temp = dir.join("VERSION.tmp");
        fs::write(&temp, STORE_VERSION)
            .and_then(|()| fs::File::open(&temp)?.sync_all())
            .and_then(|()| fs::rename(&temp, &version_path))
            .and_then(|()| fs::File::open(dir)?.sync_all())
            .map_err(|e| StoreError::new(format!("cannot initialise data_dir {shown}: {e}")))?;
        return Ok(());
    }
    match fs::read(&version_path) {
        Ok(bytes) if bytes == STORE_VERSION.as_bytes() => Ok(()),
        Ok(bytes) => Err(StoreError::new(format!(
            "{}: store version {:?}; this server reads {:?} only (refusing to start rather \
             than misread it)",
            version_path.display(),
            String::from_utf8_lossy(&bytes).trim(),
            STORE_VERSION.trim()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::new(format!(
            "data_dir {shown} is not empty and has no VERSION file: not a Weir store \
             (refusing to start on it)"
        ))),
        Err(e) => Err(StoreError::new(format!(
            "cannot read {}: {e}",
            version_path.display()
        ))),
    }
}

/// A queue's directory: its name in hex, so any byte string makes a safe file name.
fn queue_dir(dir: &Path, name: &[u8]) -> PathBuf {
    let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
    dir.join("queues").join(hex)
}

/// Used by the loop: a batch to write, and a report to read.
pub(crate) type BatchSender = crossbeam_channel::Sender<JournalBatch>;
/// See [`BatchSender`].
pub(crate) type ProgressReceiver = crossbeam_channel::Receiver<JournalProgress>;
