//! One durable queue's log: a directory of fixed-size segment files, each with a sparse index.
//!
//! `DIR/{base:020}.log` holds records (see `record.rs`) with positions `base`, `base + 1`, …
//! in order; a segment is closed once it reaches `segment_bytes` and the next one starts at
//! the following position. `DIR/{base:020}.idx` is its sparse index: one entry (position u64,
//! byte offset u64, big-endian) at the first record starting after each [`INDEX_EVERY_BYTES`]
//! of log, so a reader finds a position by one binary search and a scan of at most that many
//! bytes. The index is derived data: it is not synced, and recovery rewrites it from the log.
//! Retention deletes whole segments, oldest first, never the one being written.
//!
//! Recovery reads every segment forward. In the newest segment, bytes after the last record
//! that checks are a torn tail when no record that checks follows them: they are cut off and
//! logged. A record that fails its checksum anywhere else is corruption beyond the tail: the
//! store is refused, never served past.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use byteorder::{BigEndian, ByteOrder};
use log::warn;

use super::record::{self, BadRecord, Record, HEADER_LEN};
use super::StoreError;

/// Log bytes between two sparse index entries (Kafka's `index.interval.bytes` default).
pub(crate) const INDEX_EVERY_BYTES: u64 = 4096;
const INDEX_ENTRY_LEN: usize = 16;

/// One segment file's metadata.
#[derive(Debug)]
struct Segment {
    /// Position of its first record.
    base: u64,
    /// Bytes of the log file.
    len: u64,
    /// Sparse index: (position, byte offset), ascending.
    index: Vec<(u64, u64)>,
}

/// A durable queue's segment files.
#[derive(Debug)]
pub(crate) struct QueueLog {
    dir: PathBuf,
    /// Oldest first; the last one is appended to.
    segments: Vec<Segment>,
    /// The newest segment, open for appending; `None` until the first append.
    active: Option<(File, File)>,
    /// Position the next record gets.
    next_position: u64,
    segment_bytes: u64,
    /// Written since the last fdatasync.
    pub(crate) is_dirty: bool,
}

/// What recovery did to a queue's files, for the log and the tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RecoveryReport {
    pub(crate) records: u64,
    pub(crate) segments: usize,
    /// Bytes cut off the newest segment (a torn tail).
    pub(crate) truncated_bytes: u64,
}

impl QueueLog {
    /// Opens (creating if needed) the log in `dir`, recovering its records, oldest first.
    ///
    /// # Errors
    /// [`StoreError`] for an unreadable file, a gap or disorder of positions, or a record that
    /// fails its checksum anywhere but in a torn tail.
    pub(crate) fn open(
        dir: &Path,
        segment_bytes: u64,
    ) -> Result<(QueueLog, Vec<Record>, RecoveryReport), StoreError> {
        let io_error = |what: &str, path: &Path, e: io::Error| {
            StoreError::new(format!("cannot {what} {}: {e}", path.display()))
        };
        fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| io_error("read", dir, e))? {
            let entry = entry.map_err(|e| io_error("read", dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(".log") {
                let base = stem.parse::<u64>().map_err(|_| {
                    StoreError::new(format!(
                        "{}: not a segment file name",
                        dir.join(name).display()
                    ))
                })?;
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let mut log = QueueLog {
            dir: dir.to_path_buf(),
            segments: Vec::new(),
            active: None,
            next_position: bases.first().copied().unwrap_or(1),
            segment_bytes,
            is_dirty: false,
        };
        let mut records = Vec::new();
        let mut report = RecoveryReport::default();
        for (number, &base) in bases.iter().enumerate() {
            let is_newest = number + 1 == bases.len();
            let path = log.log_path(base);
            if base < log.next_position {
                return Err(StoreError::new(format!(
                    "{}: starts at position {base}, before {} (segments overlap)",
                    path.display(),
                    log.next_position
                )));
            }
            let bytes = fs::read(&path).map_err(|e| io_error("read", &path, e))?;
            let mut segment = Segment {
                base,
                len: 0,
                index: Vec::new(),
            };
            let mut offset = 0usize;
            let mut last_indexed: Option<u64> = None;
            while offset < bytes.len() {
                match record::decode(&bytes[offset..]) {
                    Ok((record, len)) => {
                        // Increasing; a gap is a batch the disk refused (ENOSPC), never written.
                        if record.position < log.next_position || record.position < base {
                            return Err(StoreError::new(format!(
                                "{} at byte {offset}: position {}, expected at least {}",
                                path.display(),
                                record.position,
                                log.next_position
                            )));
                        }
                        if last_indexed.is_none_or(|at| offset as u64 >= at + INDEX_EVERY_BYTES) {
                            segment.index.push((record.position, offset as u64));
                            last_indexed = Some(offset as u64);
                        }
                        log.next_position = record.position + 1;
                        offset += len;
                        records.push(record);
                        report.records += 1;
                    }
                    Err(bad) => {
                        let rest = &bytes[offset..];
                        if !is_newest || has_record_after(rest, log.next_position) {
                            return Err(StoreError::new(format!(
                                "{} at byte {offset}: a record fails its checksum ({}), and \
                                 records follow it: the store is corrupt beyond its tail",
                                path.display(),
                                match bad {
                                    BadRecord::Incomplete => "cut short",
                                    BadRecord::Corrupt => "bad checksum",
                                }
                            )));
                        }
                        warn!(
                            "{}: torn tail of {} bytes after byte {offset} (a write cut by a \
                             crash) cut off",
                            path.display(),
                            rest.len()
                        );
                        report.truncated_bytes = rest.len() as u64;
                        let file = OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .map_err(|e| io_error("open", &path, e))?;
                        file.set_len(offset as u64)
                            .and_then(|()| file.sync_all())
                            .map_err(|e| io_error("truncate", &path, e))?;
                        break;
                    }
                }
            }
            segment.len = offset as u64;
            log.write_index(&segment)
                .map_err(|e| io_error("write", &log.index_path(base), e))?;
            log.segments.push(segment);
        }
        report.segments = log.segments.len();
        Ok((log, records, report))
    }

    /// Position the next record gets.
    pub(crate) fn next_position(&self) -> u64 {
        self.next_position
    }

    /// Appends encoded records `bytes` holding `count` records starting at `first_position`
    /// (at least [`Self::next_position`]); rolls to a new segment first when the newest
    /// is full. `offsets` are the records' starts within `bytes`, for the index.
    ///
    /// # Errors
    /// The write's error; then nothing of `bytes` is left in the file.
    pub(crate) fn append(
        &mut self,
        bytes: &[u8],
        first_position: u64,
        offsets: &[usize],
    ) -> io::Result<()> {
        // After a batch the disk refused, positions go on past it (a gap, never a reuse).
        if first_position < self.next_position {
            return Err(io::Error::other(format!(
                "append at position {first_position}, the log is at {}",
                self.next_position
            )));
        }
        let needs_segment = self
            .segments
            .last()
            .is_none_or(|s| s.len >= self.segment_bytes);
        if needs_segment {
            self.roll(first_position)?;
        } else if self.active.is_none() {
            self.open_active()?;
        }
        let (Some(segment), Some((file, index_file))) =
            (self.segments.last_mut(), &mut self.active)
        else {
            return Err(io::Error::other("no active segment"));
        };
        if let Err(e) = file.write_all(bytes) {
            // Leave no partial record behind: the next append starts where this one did.
            let _ = file.set_len(segment.len);
            return Err(e);
        }
        let mut entries = Vec::new();
        for (number, &start) in offsets.iter().enumerate() {
            let at = segment.len + start as u64;
            let last = segment.index.last().map(|&(_, offset)| offset);
            if last.is_none_or(|last| at >= last + INDEX_EVERY_BYTES) {
                let position = first_position + number as u64;
                segment.index.push((position, at));
                entries.extend_from_slice(&index_entry(position, at));
            }
        }
        segment.len += bytes.len() as u64;
        self.next_position = first_position + offsets.len() as u64;
        self.is_dirty = true;
        if !entries.is_empty() {
            // Derived data: a failure here costs nothing recovery does not rebuild.
            let _ = index_file.write_all(&entries);
        }
        Ok(())
    }

    /// fdatasync of the newest segment, if anything was written since the last one.
    ///
    /// # Errors
    /// The OS error; the data since the last sync must then be taken as not durable.
    pub(crate) fn sync(&mut self) -> io::Result<bool> {
        if !self.is_dirty {
            return Ok(false);
        }
        if let Some((file, _)) = &self.active {
            file.sync_data()?;
        }
        self.is_dirty = false;
        Ok(true)
    }

    /// Deletes whole segments all of whose positions are below `position`, never the newest.
    /// Returns the number of positions deleted.
    pub(crate) fn trim_below(&mut self, position: u64) -> io::Result<u64> {
        let mut deleted = 0;
        while self.segments.len() > 1 && self.segments[1].base <= position {
            let segment = self.segments.remove(0);
            fs::remove_file(self.log_path(segment.base))?;
            let _ = fs::remove_file(self.index_path(segment.base));
            deleted += self.segments[0].base - segment.base;
        }
        Ok(deleted)
    }

    /// Where the record at `position` starts, or the nearest indexed record before it:
    /// (segment base, byte offset). `None` for a position not in the files.
    #[cfg(test)]
    pub(crate) fn locate(&self, position: u64) -> Option<(u64, u64)> {
        if position >= self.next_position {
            return None;
        }
        let number = self.segments.partition_point(|s| s.base <= position);
        let segment = self.segments.get(number.checked_sub(1)?)?;
        let entry = segment.index.partition_point(|&(p, _)| p <= position);
        let offset = entry
            .checked_sub(1)
            .and_then(|e| segment.index.get(e))
            .map_or(0, |&(_, offset)| offset);
        Some((segment.base, offset))
    }

    /// Reads the records from `position` on, up to `max` of them (for tests and tools; the
    /// broker serves retained messages from memory).
    ///
    /// # Errors
    /// A read error, or a record that does not check.
    #[cfg(test)]
    pub(crate) fn read_from(&self, position: u64, max: usize) -> io::Result<Vec<Record>> {
        let mut records = Vec::new();
        let Some((base, mut offset)) = self.locate(position) else {
            return Ok(records);
        };
        for segment in self.segments.iter().filter(|s| s.base >= base) {
            let bytes = fs::read(self.log_path(segment.base))?;
            let end = (segment.len as usize).min(bytes.len());
            let mut at = offset as usize;
            while at < end && records.len() < max {
                let (record, len) = record::decode(&bytes[at..end]).map_err(|bad| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("{bad:?}"))
                })?;
                at += len;
                if record.position >= position {
                    records.push(record);
                }
            }
            offset = 0;
        }
        Ok(records)
    }

    fn roll(&mut self, base: u64) -> io::Result<()> {
        if let Some((file, _)) = self.active.take() {
            // The closed segment must be on disk before records after it count as durable.
            if self.is_dirty {
                file.sync_data()?;
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(base))?;
        let index = File::create(self.index_path(base))?;
        // The new file's directory entry must survive a crash too.
        File::open(&self.dir)?.sync_all()?;
        self.segments.push(Segment {
            base,
            len: 0,
            index: Vec::new(),
        });
        self.active = Some((log, index));
        Ok(())
    }

    fn open_active(&mut self) -> io::Result<()> {
        let Some(segment) = self.segments.last() else {
            return Err(io::Error::other("no segment"));
        };
        let log = OpenOptions::new()
            .append(true)
            .open(self.log_path(segment.base))?;
        let index = OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.index_path(segment.base))?;
        self.active = Some((log, index));
        Ok(())
    }

    fn write_index(&self, segment: &Segment) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(segment.index.len() * INDEX_ENTRY_LEN);
        for &(position, offset) in &segment.index {
            bytes.extend_from_slice(&index_entry(position, offset));
        }
        fs::write(self.index_path(segment.base), bytes)
    }

    fn log_path(&self, base: u64) -> PathBuf {
        self.dir.join(format!("{base:020}.log"))
    }

    fn index_path(&self, base: u64) -> PathBuf {
        self.dir.join(format!("{base:020}.idx"))
    }
}

fn index_entry(position: u64, offset: u64) -> [u8; INDEX_ENTRY_LEN] {
    let mut entry = [0; INDEX_ENTRY_LEN];
    BigEndian::write_u64(&mut entry[..8], position);
    BigEndian::write_u64(&mut entry[8..], offset);
    entry
}

/// Whether a record that checks, with a position at or after `next`, starts anywhere in
/// `rest` after its first byte: then a bad record is not a torn tail but corruption.
fn has_record_after(rest: &[u8], next: u64) -> bool {
    (1..rest.len().saturating_sub(HEADER_LEN - 1))
        .any(|at| matches!(record::decode(&rest[at..]), Ok((record, _)) if record.position >= next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::journal::DurableMessage;

    fn append_messages(log: &mut QueueLog, count: u64, payload_len: usize) {
        for _ in 0..count {
            let position = log.next_position();
            let mut bytes = Vec::new();
            let message = DurableMessage::new(b"e", None, &vec![b'x'; payload_len]);
            record::encode(position, 0, &message, &mut bytes);
            log.append(&bytes, position, &[0]).unwrap();
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-seg-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn segments_roll_at_their_size_and_the_index_finds_every_position() {
        let dir = temp_dir("roll");
        let (mut log, records, _) = QueueLog::open(&dir, 10_000).unwrap();
        assert!(records.is_empty());
        append_messages(&mut log, 300, 200);
        assert!(log.segments.len() > 3, "{} segments", log.segments.len());
        for position in [1, 2, 49, 150, 299, 300] {
            let found = log.read_from(position, 1).unwrap();
            assert_eq!(found[0].position, position);
        }
        drop(log);
        let (log, records, report) = QueueLog::open(&dir, 10_000).unwrap();
        assert_eq!(records.len(), 300);
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(log.next_position(), 301);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn trimming_deletes_whole_segments_only() {
        let dir = temp_dir("trim");
        let (mut log, _, _) = QueueLog::open(&dir, 10_000).unwrap();
        append_messages(&mut log, 300, 200);
        let second = log.segments[1].base;
        assert_eq!(log.trim_below(second - 1).unwrap(), 0);
        assert_eq!(log.trim_below(second).unwrap(), second - 1);
        drop(log);
        let (_, records, _) = QueueLog::open(&dir, 10_000).unwrap();
        assert_eq!(records[0].position, second);
        assert_eq!(records.len() as u64, 301 - second);
        fs::remove_dir_all(&dir).unwrap();
    }
}
