//! The journal thread: writes the batches the loop sends, fdatasyncs them in groups, and wakes
//! the loop with how far it got.
//!
//! Group commit (RabbitMQ's Ra WAL, okaywal): the thread blocks for one batch, then takes every
//! batch that arrived meanwhile, writes them all, and runs one fdatasync per written
//! `fsync = "always"` queue file for the whole group; what arrives during that sync goes into
//! the next group. Batches are written in mark order, so "durable up to mark N" is one number.
//! Queues with `fsync_interval_ms` are reported as soon as written and synced on their own
//! timer.
//!
//! A batch that cannot be written (ENOSPC, EIO) is cut back out of the files (no partial
//! record is left), reported as failed, and the thread goes on with the next one: when the
//! space comes back, writes succeed again.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{debug, warn};
use mio::Waker;

use super::record;
use super::{BatchSender, ProgressReceiver, Store};
use crate::broker::journal::{JournalBatch, JournalMark, JournalProgress};
use crate::config::FsyncPolicy;

/// The running journal thread, as the loop holds it.
#[derive(Debug)]
pub(crate) struct JournalThread {
    /// Batches to write; dropping it ends the thread after it wrote and synced everything.
    pub(crate) batches: BatchSender,
    /// Its reports, one or more per group; the waker fires after each.
    pub(crate) progress: ProgressReceiver,
    thread: JoinHandle<()>,
}

impl JournalThread {
    /// Starts the thread over an opened store; it wakes the loop through `waker`.
    ///
    /// # Errors
    /// The OS error if the thread cannot be started.
    pub(crate) fn spawn(store: Store, waker: Arc<Waker>) -> std::io::Result<JournalThread> {
        let (batches, batch_rx) = crossbeam_channel::unbounded();
        let (progress_tx, progress) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("weir-journal".into())
            .spawn(move || Writer::new(store, progress_tx, waker).run(&batch_rx))?;
        Ok(JournalThread {
            batches,
            progress,
            thread,
        })
    }

    /// Closes the batch channel and waits until every batch sent is written and synced.
    pub(crate) fn finish(self) {
        drop(self.batches);
        if self.thread.join().is_err() {
            warn!("the journal thread panicked");
        }
    }
}

struct Writer {
    store: Store,
    progress: JournalProgress,
    reports: Sender<JournalProgress>,
    waker: Arc<Waker>,
    /// When the `fsync_interval_ms` queues written since their last sync are due.
    interval_due: Option<Instant>,
    /// Reused encoding buffer and record starts.
    buffer: Vec<u8>,
    offsets: Vec<usize>,
    /// Records of `fsync = "always"` queues written since the last sync.
    unsynced_records: u64,
    sync_micros: SyncHistogram,
}

impl Writer {
    fn new(store: Store, reports: Sender<JournalProgress>, waker: Arc<Waker>) -> Writer {
        Writer {
            store,
            progress: JournalProgress::default(),
            reports,
            waker,
            interval_due: None,
            buffer: Vec::new(),
            offsets: Vec::new(),
            unsynced_records: 0,
            sync_micros: SyncHistogram::default(),
        }
    }

    fn run(mut self, batches: &Receiver<JournalBatch>) {
        let mut group = Vec::new();
        loop {
            let first = match self.interval_due {
                Some(due) => batches.recv_deadline(due),
                None => batches.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match first {
                Ok(batch) => group.push(batch),
                Err(RecvTimeoutError::Timeout) => {
                    self.sync_interval_queues();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            group.extend(batches.try_iter());
            self.write_group(&mut group);
        }
        self.sync_interval_queues();
        debug!(
            "journal thread done: {} fsyncs, {} records",
            self.progress.fsyncs, self.progress.written_records
        );
    }

    /// Writes every batch of `group`, then syncs the `always` queues' files once.
    fn write_group(&mut self, group: &mut Vec<JournalBatch>) {
        let mut failed = Vec::new();
        let mut has_interval = false;
        let (Some(first), Some(last)) =
            (group.first().map(|b| b.mark), group.last().map(|b| b.mark))
        else {
            return;
        };
        for batch in group.drain(..) {
            match self.write_batch(&batch) {
                Ok(interval) => has_interval |= interval,
                Err(e) => {
                    warn!("journal batch {} not written: {e}", batch.mark.0);
                    failed.push(batch.mark);
                }
            }
            for (queue, below) in &batch.trims {
                if let Some(files) = self.store.queues.get_mut(queue) {
                    match files.log.trim_below(*below) {
                        Ok(0) => {}
                        Ok(n) => debug!("retention deleted {n} messages' segments"),
                        Err(e) => warn!("retention could not delete a segment: {e}"),
                    }
                }
            }
        }
        self.progress.written = last;
        if has_interval {
            if self.interval_due.is_none() {
                self.interval_due = Some(Instant::now() + self.shortest_interval());
            }
            if failed.is_empty() {
                self.report(None);
            }
        }
        if let Err(e) = self.sync_queues(|policy| policy == FsyncPolicy::Always) {
            warn!("fdatasync failed: {e}; the group's batches are not durable");
            // Nothing in this group can be promised: every one of its marks fails.
            self.progress.synced = last;
            self.report(Some(first));
            return;
        }
        self.progress.synced = last;
        // Conservative: from the first failed batch on, the group's batches are refused (a
        // batch written after a failed one is not promised either).
        self.report(failed.first().copied());
    }

    /// Writes one batch, queue by queue; on error, nothing of it stays in the files.
    fn write_batch(&mut self, batch: &JournalBatch) -> std::io::Result<bool> {
        let mut has_interval = false;
        let mut written = 0;
        let mut index = 0;
        while index < batch.entries.len() {
            let queue = &batch.entries[index].queue;
            // A run of consecutive entries of one queue is one write.
            let run_end = batch.entries[index..]
                .iter()
                .position(|e| e.queue != *queue)
                .map_or(batch.entries.len(), |n| index + n);
            let Some(files) = self.store.queues.get_mut(queue) else {
                index = run_end;
                continue;
            };
            self.buffer.clear();
            self.offsets.clear();
            for entry in &batch.entries[index..run_end] {
                self.offsets.push(self.buffer.len());
                record::encode(
                    entry.position,
                    entry.unix_ms,
                    &entry.message,
                    &mut self.buffer,
                );
            }
            let first = batch.entries[index].position;
            files.log.append(&self.buffer, first, &self.offsets)?;
            written += (run_end - index) as u64;
            self.progress.written_bytes += self.buffer.len() as u64;
            match files.fsync {
                FsyncPolicy::Always => self.unsynced_records += (run_end - index) as u64,
                FsyncPolicy::Interval(_) => has_interval = true,
            }
            index = run_end;
        }
        self.progress.written_records += written;
        Ok(has_interval)
    }

    fn sync_interval_queues(&mut self) {
        self.interval_due = None;
        if let Err(e) = self.sync_queues(|policy| matches!(policy, FsyncPolicy::Interval(_))) {
            warn!("fdatasync of an fsync_interval_ms queue failed: {e}");
        }
        self.report(None);
    }

    fn sync_queues(&mut self, which: impl Fn(FsyncPolicy) -> bool) -> std::io::Result<()> {
        let mut result = Ok(());
        let mut synced_any = false;
        for files in self.store.queues.values_mut() {
            if !which(files.fsync) || !files.log.is_dirty {
                continue;
            }
            let started = Instant::now();
            match files.log.sync() {
                Ok(true) => {
                    synced_any = true;
                    self.progress.fsyncs += 1;
                    self.sync_micros
                        .record(started.elapsed().as_micros() as u64);
                }
                Ok(false) => {}
                Err(e) => result = Err(e),
            }
        }
        if synced_any && which(FsyncPolicy::Always) {
            self.progress.synced_records += self.unsynced_records;
            self.unsynced_records = 0;
        }
        result
    }

    fn shortest_interval(&self) -> Duration {
        self.store
            .queues
            .values()
            .filter_map(|files| match files.fsync {
                FsyncPolicy::Interval(ms) => Some(Duration::from_millis(ms)),
                FsyncPolicy::Always => None,
            })
            .min()
            .unwrap_or(Duration::from_millis(100))
    }

    fn report(&mut self, failed: Option<JournalMark>) {
        let mut progress = self.progress;
        progress.failed = failed;
        progress.sync_p50_micros = self.sync_micros.quantile(0.50);
        progress.sync_p99_micros = self.sync_micros.quantile(0.99);
        // The loop may be gone at shutdown; then nobody waits for the report.
        if self.reports.send(progress).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// fdatasync times in µs, log-linear: exact below 8 µs, then 8 buckets per power of two (each
/// at most 12.5% wide), up to 2^27 µs (over two minutes; longer ones land in the last).
#[derive(Clone, Debug)]
struct SyncHistogram {
    counts: [u64; SYNC_BUCKETS],
    total: u64,
}

impl Default for SyncHistogram {
    fn default() -> SyncHistogram {
        SyncHistogram {
            counts: [0; SYNC_BUCKETS],
            total: 0,
        }
    }
}

impl SyncHistogram {
    fn record(&mut self, micros: u64) {
        self.counts[bucket_of(micros)] += 1;
        self.total += 1;
    }

    /// The upper bound of the bucket holding the `q` quantile (0 with no samples).
    fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_top(bucket);
            }
        }
        bucket_top(SYNC_BUCKETS - 1)
    }
}

/// Exact buckets below this; then `SUB_BUCKETS` per power of two.
const LINEAR_BELOW: u64 = 8;
const SUB_BUCKETS: usize = 8;
const SYNC_BUCKETS: usize = LINEAR_BELOW as usize + SUB_BUCKETS * 24;

fn bucket_of(micros: u64) -> usize {
    if micros < LINEAR_BELOW {
        return micros as usize;
    }
    let exponent = 63 - micros.leading_zeros() as usize; // ≥ 3
    let sub = ((micros >> (exponent - 3)) & 7) as usize;
    (LINEAR_BELOW as usize + (exponent - 3) * SUB_BUCKETS + sub).min(SYNC_BUCKETS - 1)
}

/// The largest value of `bucket`.
fn bucket_top(bucket: usize) -> u64 {
    if bucket < LINEAR_BELOW as usize {
        return bucket as u64;
    }
    let exponent = (bucket - LINEAR_BELOW as usize) / SUB_BUCKETS + 3;
    let sub = ((bucket - LINEAR_BELOW as usize) % SUB_BUCKETS) as u64;
    ((9 + sub) << (exponent - 3)) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sync_time_lands_in_a_bucket_whose_top_is_within_an_eighth_above_it() {
        for micros in (0..5_000).chain([65_535, 1 << 20, (1 << 27) - 1]) {
            let top = bucket_top(bucket_of(micros));
            assert!(top >= micros, "{micros} → {top}");
            assert!(top <= micros + micros / 8, "{micros} → {top}");
        }
        assert_eq!(bucket_of(u64::MAX), SYNC_BUCKETS - 1);
    }

    #[test]
    fn fsync_percentiles_come_from_the_recorded_times() {
        let mut histogram = SyncHistogram::default();
        assert_eq!(histogram.quantile(0.5), 0);
        for _ in 0..98 {
            histogram.record(200);
        }
        histogram.record(5_000);
        histogram.record(5_000);
        let p50 = histogram.quantile(0.50);
        assert!((200..=225).contains(&p50), "{p50}");
        let p99 = histogram.quantile(0.99);
        assert!((5_000..=5_625).contains(&p99), "{p99}");
    }
}
