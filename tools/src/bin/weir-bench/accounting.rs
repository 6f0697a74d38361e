//! Honest accounting: what each subscriber received of each publisher's messages.
//!
//! Every payload starts with a stamp (big-endian): bytes 0..8 the tag
//! `publisher << 48 | counter` (counter from 1), 8..16 the time the message was due to be
//! sent and 16..24 the time it was handed to the socket, both in ns since the run's start.
//! Payloads under 24 bytes carry the tag only. From the tags a [`Tracker`] counts duplicates,
//! reordering and corrupt payloads, and at the end splits the losses into mid-stream gaps
//! (missing counters below the highest one received: the broker dropped them) and a missing
//! tail (never received after the last one that was: still queued, in flight, or cut off).

/// Bits of the tag that hold the per-publisher counter; the publisher index sits above.
const COUNTER_BITS: u32 = 48;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;
/// Bytes of a full stamp (tag and both times).
pub(crate) const STAMP_LEN: usize = 24;
/// Bytes of the tag alone; the smallest payload weir-bench sends.
pub(crate) const TAG_LEN: usize = 8;

/// What a payload's stamp says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) publisher: usize,
    /// 1 for a publisher's first message.
    pub(crate) counter: u64,
    /// When the message was due (open-loop schedule), ns since the run's start.
    pub(crate) due_ns: Option<u64>,
    /// When it was handed to the socket, ns since the run's start.
    pub(crate) sent_ns: Option<u64>,
}

/// Writes the stamp into the front of `payload` (at least [`TAG_LEN`] bytes).
pub(crate) fn write_stamp(payload: &mut [u8], stamp: &Stamp) {
    let tag = (stamp.publisher as u64) << COUNTER_BITS | stamp.counter;
    payload[..8].copy_from_slice(&tag.to_be_bytes());
    if payload.len() >= STAMP_LEN {
        payload[8..16].copy_from_slice(&stamp.due_ns.unwrap_or(0).to_be_bytes());
        payload[16..24].copy_from_slice(&stamp.sent_ns.unwrap_or(0).to_be_bytes());
    }
}

/// Reads a stamp; `None` for a payload too short to hold a tag.
pub(crate) fn read_stamp(payload: &[u8]) -> Option<Stamp> {
    let word = |range: std::ops::Range<usize>| {
        payload
            .get(range)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
    };
    let tag = word(0..8)?;
    Some(Stamp {
        publisher: (tag >> COUNTER_BITS) as usize,
        counter: tag & COUNTER_MASK,
        due_ns: word(8..16),
        sent_ns: word(16..24),
    })
}

/// Counts for one subscriber.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Messages received, duplicates included.
    pub(crate) received: u64,
    /// Distinct messages received.
    pub(crate) unique: u64,
    pub(crate) duplicates: u64,
    /// Messages that arrived after a later one of the same publisher.
    pub(crate) out_of_order: u64,
    /// Payloads whose stamp names no publisher of this run, or counter 0.
    pub(crate) corrupt: u64,
}

/// Messages sent and not received, split by where they are missing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Losses {
    /// Missing below the highest counter received, per publisher: dropped mid-stream.
    pub(crate) gaps: u64,
    /// Missing after the highest counter received: the tail never arrived.
    pub(crate) tail: u64,
}

impl Losses {
    pub(crate) fn total(&self) -> u64 {
        self.gaps + self.tail
    }
}

/// One subscriber's bookkeeping: a bitmap of counters seen, per publisher.
#[derive(Debug)]
pub(crate) struct Tracker {
    streams: Vec<Stream>,
    pub(crate) tally: Tally,
}

#[derive(Debug, Default)]
struct Stream {
    /// Bit `counter` set once that message was received; grows as counters do.
    seen: Vec<u64>,
    unique: u64,
    highest: u64,
}

impl Tracker {
    pub(crate) fn new(publishers: usize) -> Tracker {
        Tracker {
            streams: (0..publishers).map(|_| Stream::default()).collect(),
            tally: Tally::default(),
        }
    }

    /// Counts one received payload's stamp (`None`: too short to carry one). Returns whether
    /// it was a message not seen before.
    pub(crate) fn record(&mut self, stamp: Option<Stamp>) -> bool {
        let tally = &mut self.tally;
        tally.received += 1;
        let Some(stamp) = stamp else {
            tally.corrupt += 1;
            return false;
        };
        let stream = match self.streams.get_mut(stamp.publisher) {
            Some(stream) if stamp.counter > 0 => stream,
            _ => {
                tally.corrupt += 1;
                return false;
            }
        };
        let (word, bit) = ((stamp.counter / 64) as usize, 1u64 << (stamp.counter % 64));
        if word >= stream.seen.len() {
            let len = (word + 1).max(2 * stream.seen.len());
            stream.seen.resize(len, 0);
        }
        if stream.seen[word] & bit != 0 {
            tally.duplicates += 1;
            return false;
        }
        stream.seen[word] |= bit;
        stream.unique += 1;
        tally.unique += 1;
        if stamp.counter < stream.highest {
            tally.out_of_order += 1;
        } else {
            stream.highest = stamp.counter;
        }
        true
    }

    /// Whether every message of `sent` (per publisher) has arrived.
    pub(crate) fn has_all(&self, sent: &[u64]) -> bool {
        self.streams
            .iter()
            .zip(sent)
            .all(|(stream, &sent)| stream.unique >= sent)
    }

    /// The messages of `sent` (per publisher) not received, as gaps and tail.
    pub(crate) fn losses(&self, sent: &[u64]) -> Losses {
        let mut losses = Losses::default();
        for (stream, &sent) in self.streams.iter().zip(sent) {
            let highest = stream.highest.min(sent);
            losses.gaps += highest.saturating_sub(stream.unique);
            losses.tail += sent - highest;
        }
        losses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(publisher: usize, counter: u64) -> Option<Stamp> {
        Some(Stamp {
            publisher,
            counter,
            due_ns: None,
            sent_ns: None,
        })
    }

    #[test]
    fn stamps_round_trip_and_short_payloads_carry_the_tag_only() {
        let full = Stamp {
            publisher: 3,
            counter: 1 << 40,
            due_ns: Some(5),
            sent_ns: Some(7),
        };
        let mut payload = [0u8; 64];
        write_stamp(&mut payload, &full);
        assert_eq!(read_stamp(&payload), Some(full));
        let mut short = [0u8; 8];
        write_stamp(&mut short, &full);
        assert_eq!(
            read_stamp(&short),
            Some(Stamp {
                due_ns: None,
                sent_ns: None,
                ..full
            })
        );
        assert_eq!(read_stamp(b"short"), None);
    }

    #[test]
    fn the_tracker_counts_duplicates_reordering_and_corrupt_payloads() {
        let mut tracker = Tracker::new(2);
        for (publisher, counter) in [(0, 1), (1, 1), (0, 3), (0, 2), (0, 3), (1, 2), (2, 1)] {
            tracker.record(stamp(publisher, counter));
        }
        tracker.record(stamp(0, 0));
        tracker.record(None);
        let tally = tracker.tally;
        assert_eq!(tally.received, 9);
        assert_eq!(tally.unique, 5);
        assert_eq!(tally.duplicates, 1, "(0, 3) twice");
        assert_eq!(tally.out_of_order, 1, "(0, 2) after (0, 3)");
        assert_eq!(tally.corrupt, 3, "no publisher 2, counter 0, no stamp");
        assert!(tracker.has_all(&[3, 2]));
        assert!(!tracker.has_all(&[4, 2]));
    }

    #[test]
    fn losses_split_into_mid_stream_gaps_and_a_missing_tail() {
        let mut tracker = Tracker::new(3);
        for counter in [1, 2, 4, 7, 8] {
            tracker.record(stamp(0, counter));
        }
        tracker.record(stamp(1, 1));
        // Publisher 0 sent 10: 3, 5, 6 missing mid-stream, 9 and 10 at the end. Publisher 1
        // sent 1, all received. Publisher 2 sent 4, none received: all tail.
        let losses = tracker.losses(&[10, 1, 4]);
        assert_eq!(losses, Losses { gaps: 3, tail: 6 });
        assert_eq!(losses.total(), 9);
    }

    #[test]
    fn large_counters_grow_the_bitmap() {
        let mut tracker = Tracker::new(1);
        assert!(tracker.record(stamp(0, 1_000_000)));
        assert!(!tracker.record(stamp(0, 1_000_000)));
        assert_eq!(
            tracker.losses(&[1_000_000]),
            Losses {
                gaps: 999_999,
                tail: 0
            }
        );
    }
}
