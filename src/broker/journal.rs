//! The core's side of durability: which records to persist, and what to do once they are.
//!
//! A publish to a durable queue (`durable = true` in `[[queues]]`) gets the queue's next
//! position and becomes a [`JournalEntry`]; the loop's journal pass takes this turn's entries
//! with [`Broker::poll_journal`] as one [`JournalBatch`] numbered by a [`JournalMark`] and hands
//! them to the journal thread (`crate::storage`). The thread reports back with
//! [`Broker::handle_durable`]: every batch up to `written` is in the files, every batch up to
//! `synced` also went through fdatasync.
//!
//! RECEIPTs are cumulative per session (protocol.md §RECEIPT), so a session's receipt stops
//! just below its earliest publish that is not durable yet: each session keeps a short list of
//! [`ReceiptHold`]s, one per (turn, session) with a durable publish, and the receipt seq it may
//! send is `first_seq - 1` of the oldest hold (or `last_publish_seq` with no hold).
//!
//! Nothing here touches a file or the clock; the core holds the retained messages of durable
//! queues in memory (the journal is what survives a restart), bounded by the queue's
//! `max_messages` and `max_bytes`.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Broker, MsgKey, QueueId, SessionKey};
use crate::config::FsyncPolicy;
use crate::protocol::frame::{START_LAST, START_POSITION};
use crate::protocol::Start;

/// Number of a journal batch: one per loop turn that had durable records, from 1 up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JournalMark(pub u64);

/// One record for the journal: a message accepted for a durable queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    /// The durable queue's name (shared with the core's queue table, no copy).
    pub queue: Arc<[u8]>,
    /// The message's position in its queue: the queue's own u64 offset, from 1 up, +1 per
    /// message.
    pub position: u64,
    /// Wall-clock time of acceptance, milliseconds since the Unix epoch (for `max_age_ms`).
    pub unix_ms: u64,
    /// The message: event name, conflation key and payload.
    pub message: DurableMessage,
}

/// A durable message's content: event name, optional conflation key, payload, in one buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableMessage {
    event_len: u8,
    /// Length of the conflation key, when the PUBLISH had one.
    key_len: Option<u8>,
    /// event ++ key ++ payload.
    data: Box<[u8]>,
}

impl DurableMessage {
    /// Builds one from its parts (names are ≤ 255 bytes: longer ones are cut to 255).
    pub fn new(event: &[u8], key: Option<&[u8]>, payload: &[u8]) -> DurableMessage {
        let event = event.get(..event.len().min(255)).unwrap_or_default();
        let key = key.map(|k| k.get(..k.len().min(255)).unwrap_or_default());
        let mut data = Vec::with_capacity(event.len() + key.map_or(0, <[u8]>::len) + payload.len());
        data.extend_from_slice(event);
        data.extend_from_slice(key.unwrap_or_default());
        data.extend_from_slice(payload);
        DurableMessage {
            event_len: event.len() as u8,
            key_len: key.map(|k| k.len() as u8),
            data: data.into_boxed_slice(),
        }
    }

    /// The event name.
    pub fn event(&self) -> &[u8] {
        self.data.get(..self.event_len as usize).unwrap_or_default()
    }

    /// The conflation key, if the PUBLISH had one.
    pub fn key(&self) -> Option<&[u8]> {
        let start = self.event_len as usize;
        self.key_len.map(|len| {
            self.data
                .get(start..start + len as usize)
                .unwrap_or_default()
        })
    }

    /// Bytes of event, key and payload together.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether event, key and payload are all empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        let start = self.event_len as usize + self.key_len.unwrap_or(0) as usize;
        self.data.get(start..).unwrap_or_default()
    }
}

/// This turn's records, for the journal thread.
#[derive(Debug, Default)]
pub struct JournalBatch {
    /// The batch's number; the thread reports progress in these.
    pub mark: JournalMark,
    /// Records in acceptance order.
    pub entries: Vec<JournalEntry>,
    /// Per durable queue, positions below this may be deleted (whole segments only): the
    /// core no longer retains them (retention).
    pub trims: Vec<(Arc<[u8]>, u64)>,
}

/// What the journal thread reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalProgress {
    /// Every batch up to this mark is written to its files.
    pub written: JournalMark,
    /// Every batch up to this mark is written and fdatasynced (the `fsync = "always"` queues'
    /// files; `fsync_interval_ms` queues are synced on their own timer).
    pub synced: JournalMark,
    /// The batches from this mark up to `written` could not be made durable (ENOSPC, EIO):
    /// their publishes are refused with STORAGE_FAILED, no RECEIPT.
    pub failed: Option<JournalMark>,
    /// fdatasync calls so far.
    pub fsyncs: u64,
    /// Records covered by those calls so far.
    pub synced_records: u64,
    /// Records written so far.
    pub written_records: u64,
    /// Bytes written so far.
    pub written_bytes: u64,
    /// Median fdatasync time so far, µs (0 before the first): the upper bound of its
    /// histogram bucket, at most 12.5% above the true value.
    pub sync_p50_micros: u64,
    /// 99th percentile fdatasync time so far, µs, as `sync_p50_micros`.
    pub sync_p99_micros: u64,
}

/// A durable queue's messages as recovered from its files at startup.
#[derive(Debug, Default)]
pub struct RecoveredQueue {
    /// The queue's name.
    pub name: Arc<[u8]>,
    /// The position the next message gets (one past the last recovered; 1 for a new queue).
    pub next_position: u64,
    /// Retained messages, oldest first: (position, unix_ms, message).
    pub messages: Vec<(u64, u64, DurableMessage)>,
}

/// A session's publishes accepted in one turn whose RECEIPT waits for the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReceiptHold {
    pub(crate) mark: JournalMark,
    /// The first publish seq of the session in that batch: the receipt stays below it.
    pub(crate) first_seq: u64,
    /// Some publish of the batch went to an `fsync = "always"` queue: wait for `synced`, not
    /// only `written`.
    pub(crate) needs_sync: bool,
}

/// One retained message of a durable queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retained {
    pub(crate) position: u64,
    pub(crate) msg: MsgKey,
}

/// A durable queue's state in the core.
#[derive(Debug)]
pub(crate) struct DurableQueue {
    pub(crate) fsync: FsyncPolicy,
    /// Position of the next accepted message.
    pub(crate) next_position: u64,
    /// Retained messages, oldest first (each holds one store reference).
    pub(crate) retained: VecDeque<Retained>,
    /// Payload bytes of `retained`.
    pub(crate) retained_bytes: u64,
    pub(crate) max_messages: u64,
    pub(crate) max_bytes: u64,
    /// Oldest position retained on disk as far as the core knows (trims are sent below it).
    pub(crate) trimmed_below: u64,
}

/// The core's journal state.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    /// Whether a data_dir is configured: without one durable queues behave like others.
    pub(crate) is_enabled: bool,
    /// Entries accepted this turn.
    pub(crate) pending: Vec<JournalEntry>,
    /// Trims decided this turn.
    pub(crate) trims: Vec<(Arc<[u8]>, u64)>,
    /// Mark of the batch being built (the next `poll_journal` returns it).
    pub(crate) open_mark: JournalMark,
    pub(crate) progress: JournalProgress,
    /// Sessions with a receipt hold, with their session id (keys are reused).
    pub(crate) waiting: Vec<(SessionKey, u64)>,
    /// Bytes of `pending`, counted as in [`entry_bytes`].
    pub(crate) pending_bytes: u64,
    /// Runs of positions in `pending`: (queue, first, last).
    pub(crate) pending_positions: Vec<(QueueId, u64, u64)>,
    /// Batches handed to the thread and not yet reported written.
    pub(crate) in_flight: VecDeque<InFlight>,
    /// Bytes of `pending` and `in_flight`: what the journal thread has yet to write.
    pub(crate) in_flight_bytes: u64,
    /// Past this many bytes in flight, connections that publish to durable queues are not
    /// read until the journal catches up ([`MAX_IN_FLIGHT_BYTES`]; lowered by tests).
    pub(crate) max_in_flight_bytes: u64,
}

/// A batch the journal thread has not reported written yet.
#[derive(Debug)]
pub(crate) struct InFlight {
    mark: JournalMark,
    /// Its bytes, counted as in [`entry_bytes`].
    bytes: u64,
    /// Its messages: runs of positions (queue, first, last), to forget them if it fails.
    positions: Vec<(QueueId, u64, u64)>,
}

/// Bytes of durable records the core lets wait for the journal thread (accepted, not yet
/// reported written) before it stops reading the connections that publish to durable queues:
/// the channel to the thread holds at most about this much, whatever the disk's speed.
/// About a second of writes at 64 MiB/s; a publisher stopped by it sees TCP back-pressure.
pub const MAX_IN_FLIGHT_BYTES: u64 = 64 * 1024 * 1024;

/// Reading resumes once the bytes in flight are down to this part of the bound (hysteresis:
/// not one stop and start per batch).
const RESUME_DIVISOR: u64 = 2;

/// What one record counts for the bound: its content and a record header's worth.
fn entry_bytes(message: &DurableMessage) -> u64 {
    message.len() as u64 + 32
}

impl Broker {
    /// This turn's records for the journal thread, if any (the loop's journal pass, once per
    /// turn). `None` leaves the mark unused.
    pub fn poll_journal(&mut self) -> Option<JournalBatch> {
        let journal = &mut self.journal;
        if journal.pending.is_empty() && journal.trims.is_empty() {
            return None;
        }
        let mark = journal.open_mark;
        journal.open_mark = JournalMark(mark.0 + 1);
        if journal.pending_bytes > 0 {
            journal.in_flight.push_back(InFlight {
                mark,
                bytes: std::mem::take(&mut journal.pending_bytes),
                positions: std::mem::take(&mut journal.pending_positions),
            });
        }
        Some(JournalBatch {
            mark,
            entries: std::mem::take(&mut journal.pending),
            trims: std::mem::take(&mut journal.trims),
        })
    }

    /// The journal thread caught up to `progress`: RECEIPTs held for batches now durable are
    /// released (marked for the flush pass); publishes of a failed batch are refused.
    ///
    /// Bounded work: O(sessions waiting for the journal).
    pub fn handle_durable(&mut self, progress: JournalProgress, now: std::time::Instant) {
        self.now = now;
        let previous = self.journal.progress;
        self.journal.progress = JournalProgress {
            written: progress.written.max(previous.written),
            synced: progress.synced.max(previous.synced),
            ..progress
        };
        self.metrics.journal_fsyncs = progress.fsyncs;
        self.metrics.journal_synced_messages = progress.synced_records;
        self.metrics.journal_written_bytes = progress.written_bytes;
        if let Some(mark) = progress.failed {
            self.metrics.journal_failed_batches += 1;
            log::warn!("journal batch {} could not be written", mark.0);
        }
        let progress = self.journal.progress;
        while self
            .journal
            .in_flight
            .front()
            .is_some_and(|batch| batch.mark <= progress.written)
        {
            let Some(batch) = self.journal.in_flight.pop_front() else {
                break;
            };
            self.journal.in_flight_bytes -= batch.bytes;
            if progress.failed.is_some_and(|from| from <= batch.mark) {
                for &(queue, first, last) in &batch.positions {
                    self.forget_refused(queue, first, last);
                }
            }
        }
        if self.journal.in_flight_bytes <= self.journal.max_in_flight_bytes / RESUME_DIVISOR {
            self.release_journal_held();
        }
        let mut waiting = std::mem::take(&mut self.journal.waiting);
        waiting.retain(|&(key, id)| {
            let Some(session) = self.sessions.get_mut(key.0).filter(|s| s.id == id) else {
                return false;
            };
            let mut released = false;
            let mut failed_seq = None;
            while let Some(hold) = session.receipt_holds.front() {
                if progress
                    .failed
                    .is_some_and(|from| from <= hold.mark && hold.mark <= progress.written)
                {
                    failed_seq.get_or_insert(hold.first_seq);
                    session.receipt_holds.pop_front();
                    continue;
                }
                if !is_durable(hold, &progress) {
                    break;
                }
                session.receipt_holds.pop_front();
                released = true;
            }
            let conn = session.conn;
            let keep = !session.receipt_holds.is_empty();
            if let (Some(seq), Some(conn)) = (failed_seq, conn) {
                // The failed publishes never get a RECEIPT; the session ends so the client
                // resends them after it reconnects (protocol.md §STORAGE_FAILED).
                self.metrics.messages_refused_storage += 1;
                let text = "the durable queue's journal could not write this message";
                self.fail(conn, crate::protocol::ErrorCode::StorageFailed, seq, text);
            } else if released {
                let session = &mut self.sessions[key.0];
                session.is_receipt_due = true;
                if let Some(conn) = session.conn {
                    self.mark_dirty(conn);
                }
            }
            keep
        });
        self.journal.waiting = waiting;
    }

    /// A durable queue's recovered content, at startup before any connection: the messages
    /// are retained again and the queue's positions go on after them.
    pub fn handle_recovered(&mut self, recovered: RecoveredQueue) {
        let Some(id) = self.routes.find(&recovered.name) else {
            return;
        };
        if self.routes.queue(id).durable.is_none() {
            return;
        }
        let mut retained = VecDeque::with_capacity(recovered.messages.len());
        let mut retained_bytes = 0;
        for (position, _unix_ms, message) in &recovered.messages {
            // Each stored message holds its queue (issue 12's accounting: `collect_queues`).
            self.routes.queue_mut(id).held += 1;
            let msg = self.store.insert(
                *position,
                id,
                None,
                message.event(),
                message.key().unwrap_or_default(),
                message.payload(),
            );
            self.store.retain(msg);
            retained.push_back(Retained {
                position: *position,
                msg,
            });
            retained_bytes += message.payload().len() as u64;
        }
        if let Some(durable) = self.routes.queue_mut(id).durable.as_mut() {
            durable.next_position = recovered.next_position.max(1);
            durable.trimmed_below = retained
                .front()
                .map_or(durable.next_position, |r| r.position);
            durable.retained = retained;
            durable.retained_bytes = retained_bytes;
        }
        self.trim_retained(id);
    }

    /// A message accepted for durable queue `queue`: retained, given its position, and
    /// journaled; the session's RECEIPT now waits for that batch.
    pub(super) fn journal_publish(
        &mut self,
        queue: QueueId,
        session: SessionKey,
        seq: u64,
        msg: Option<MsgKey>,
        message: DurableMessage,
    ) -> u64 {
        let unix_ms = self.unix_ms();
        let name = Arc::clone(&self.routes.queue(queue).name);
        let Some(durable) = self.routes.queue_mut(queue).durable.as_mut() else {
            return 0;
        };
        let position = durable.next_position;
        durable.next_position += 1;
        let needs_sync = durable.fsync == FsyncPolicy::Always;
        if let Some(msg) = msg {
            durable.retained.push_back(Retained { position, msg });
            durable.retained_bytes += message.payload().len() as u64;
            self.store.retain(msg);
        }
        let bytes = entry_bytes(&message);
        self.journal.pending_bytes += bytes;
        match self.journal.pending_positions.last_mut() {
            Some((q, _, last)) if *q == queue && *last + 1 == position => *last = position,
            _ => self
                .journal
                .pending_positions
                .push((queue, position, position)),
        }
        self.journal.in_flight_bytes += bytes;
        self.journal.pending.push(JournalEntry {
            queue: name,
            position,
            unix_ms,
            message,
        });
        self.metrics.messages_journaled += 1;
        let mark = self.journal.open_mark;
        let state = &mut self.sessions[session.0];
        if self.journal.in_flight_bytes > self.journal.max_in_flight_bytes {
            if let Some(conn) = state.conn {
                self.hold_for_journal(conn);
            }
        }
        let state = &mut self.sessions[session.0];
        match state.receipt_holds.back_mut() {
            Some(hold) if hold.mark == mark => hold.needs_sync |= needs_sync,
            _ => {
                if state.receipt_holds.is_empty() {
                    self.journal.waiting.push((session, state.id));
                }
                state.receipt_holds.push_back(ReceiptHold {
                    mark,
                    first_seq: seq,
                    needs_sync,
                });
            }
        }
        self.trim_retained(queue);
        position
    }

    /// Positions `first..=last` of `queue` were refused by the journal (STORAGE_FAILED): they
    /// leave the retained list, so no SUBSCRIBE with START replays a message that is not on
    /// disk and that its publisher will send again. (A subscriber attached when it was
    /// published may have had it already: delivery does not wait for the disk.)
    fn forget_refused(&mut self, queue: QueueId, first: u64, last: u64) {
        let Some(durable) = self.routes.queue_mut(queue).durable.as_mut() else {
            return;
        };
        let from = durable.retained.partition_point(|r| r.position < first);
        let to = durable.retained.partition_point(|r| r.position <= last);
        if from >= to {
            return;
        }
        for refused in durable.retained.drain(from..to) {
            durable.retained_bytes -= self.store.get(refused.msg).payload().len() as u64;
            self.store.release(refused.msg);
        }
    }

    /// Drops the oldest retained messages of `queue` beyond its `max_messages` and
    /// `max_bytes`, and asks the journal to delete the whole segments below.
    pub(super) fn trim_retained(&mut self, queue: QueueId) {
        let name = Arc::clone(&self.routes.queue(queue).name);
        let Some(durable) = self.routes.queue_mut(queue).durable.as_mut() else {
            return;
        };
        let mut trimmed = false;
        while durable.retained.len() as u64 > durable.max_messages
            || durable.retained_bytes > durable.max_bytes
        {
            let Some(oldest) = durable.retained.pop_front() else {
                break;
            };
            // Retention counts payload bytes (`max_bytes`), as it added them.
            let bytes = self.store.get(oldest.msg).payload().len() as u64;
            durable.retained_bytes -= bytes;
            self.store.release(oldest.msg);
            trimmed = true;
        }
        if trimmed {
            let oldest = durable
                .retained
                .front()
                .map_or(durable.next_position, |r| r.position);
            durable.trimmed_below = oldest;
            self.journal.trims.retain(|(queue, _)| *queue != name);
            self.journal.trims.push((name, oldest));
        }
    }

    /// A SUBSCRIBE with START to `queue`: queues its retained messages from the start asked
    /// for (those of `event`, or all for ALL_EVENTS) for session `key`, oldest first, under
    /// the session's usual limits. Returns SUBSCRIBED's start block.
    ///
    /// Bounded work: O(retained messages replayed).
    pub(super) fn replay(
        &mut self,
        key: SessionKey,
        queue: QueueId,
        event: Option<&[u8]>,
        start: Start,
    ) -> Start {
        let Some(durable) = self.routes.queue(queue).durable.as_ref() else {
            return Start {
                first_position: 0,
                skipped: 0,
                ..start
            };
        };
        let oldest = durable
            .retained
            .front()
            .map_or(durable.next_position, |r| r.position);
        let next = durable.next_position;
        let asked = match start.from {
            START_POSITION => start.value.max(1),
            START_LAST => next.saturating_sub(start.value).max(1),
            _ => oldest,
        };
        let skipped = oldest.saturating_sub(asked);
        let first = asked.clamp(oldest, next);
        // Positions increase along `retained` (with gaps only after a refused batch).
        let from_index = durable.retained.partition_point(|r| r.position < first);
        let keys: Vec<MsgKey> = durable
            .retained
            .range(from_index.min(durable.retained.len())..)
            .map(|r| r.msg)
            .collect();
        self.metrics.messages_replayed += keys.len() as u64;
        for msg in keys {
            if event.is_some_and(|e| self.store.get(msg).event() != e) {
                continue;
            }
            if !self.sessions.contains(key.0) {
                break; // it overflowed and ended
            }
            self.enqueue(key, msg);
        }
        Start {
            first_position: first,
            skipped,
            ..start
        }
    }

    /// Wall-clock milliseconds since the Unix epoch at `self.now`, from the anchor the loop
    /// renews (the core reads no clock).
    fn unix_ms(&self) -> u64 {
        let (at, unix) = self.wall_clock;
        let since = self.now.saturating_duration_since(at);
        (unix + since)
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// Whether `hold`'s batch is as durable as its queues' policy needs.
fn is_durable(hold: &ReceiptHold, progress: &JournalProgress) -> bool {
    if hold.needs_sync {
        hold.mark <= progress.synced
    } else {
        hold.mark <= progress.written
    }
}

/// The receipt seq a session may send: below its oldest hold.
pub(crate) fn receipt_seq(holds: &VecDeque<ReceiptHold>, last_publish_seq: u64) -> u64 {
    holds
        .front()
        .map_or(last_publish_seq, |hold| hold.first_seq - 1)
}

#[cfg(test)]
impl Broker {
    /// Lowers (or raises) the journal's in-flight bound (see [`MAX_IN_FLIGHT_BYTES`]).
    pub(super) fn set_max_journal_bytes(&mut self, bytes: u64) {
        self.journal.max_in_flight_bytes = bytes;
    }
}
