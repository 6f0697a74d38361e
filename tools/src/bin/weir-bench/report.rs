//! The delivery accounting every message-moving scenario prints: per publisher what was sent
//! and confirmed, per subscriber what arrived, what was lost (mid-stream gaps, missing tail),
//! duplicated or reordered, and how it ended. A run that lost anything says so.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::accounting::Losses;
use crate::thousands;
use crate::worker::{Ended, WorkerReport};

/// A run's deliveries, derived from its worker reports.
#[derive(Debug)]
pub(crate) struct Deliveries {
    /// Per publisher: messages sent.
    pub(crate) sent: Vec<u64>,
    /// Per publisher: messages the broker confirmed.
    pub(crate) confirmed: Vec<u64>,
    pub(crate) publisher_ends: Vec<Ended>,
    pub(crate) rows: Vec<SubscriberRow>,
}

#[derive(Debug)]
pub(crate) struct SubscriberRow {
    pub(crate) delivered: u64,
    pub(crate) losses: Losses,
    pub(crate) duplicates: u64,
    pub(crate) out_of_order: u64,
    pub(crate) corrupt: u64,
    pub(crate) ended: Ended,
}

impl Deliveries {
    pub(crate) fn of(report: &WorkerReport) -> Deliveries {
        let sent: Vec<u64> = report.publishers.iter().map(|p| p.published).collect();
        let rows = report
            .subscribers
            .iter()
            .map(|s| SubscriberRow {
                delivered: s.tracker.tally.unique,
                losses: s.tracker.losses(&sent),
                duplicates: s.tracker.tally.duplicates,
                out_of_order: s.tracker.tally.out_of_order,
                corrupt: s.tracker.tally.corrupt,
                ended: s.ended.clone(),
            })
            .collect();
        Deliveries {
            confirmed: report.publishers.iter().map(|p| p.confirmed).collect(),
            publisher_ends: report.publishers.iter().map(|p| p.ended.clone()).collect(),
            sent,
            rows,
        }
    }

    pub(crate) fn total_sent(&self) -> u64 {
        self.sent.iter().sum()
    }

    pub(crate) fn delivered(&self) -> u64 {
        self.rows.iter().map(|r| r.delivered).sum()
    }

    pub(crate) fn lost(&self) -> Losses {
        self.rows.iter().fold(Losses::default(), |sum, row| Losses {
            gaps: sum.gaps + row.losses.gaps,
            tail: sum.tail + row.losses.tail,
        })
    }

    pub(crate) fn duplicates(&self) -> u64 {
        self.rows.iter().map(|r| r.duplicates).sum()
    }

    pub(crate) fn closed_by_broker(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.ended.is_closed_by_broker())
            .count()
    }

    /// Nothing lost, duplicated, reordered or corrupt; every link ended complete.
    pub(crate) fn is_clean(&self) -> bool {
        self.publisher_ends.iter().all(|e| *e == Ended::Complete)
            && self.rows.iter().all(|r| {
                r.ended == Ended::Complete
                    && r.losses.total() == 0
                    && r.duplicates == 0
                    && r.out_of_order == 0
                    && r.corrupt == 0
            })
    }

    /// One line per problem, for the summary; empty for a clean run.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for (index, ended) in self.publisher_ends.iter().enumerate() {
            if *ended != Ended::Complete {
                notes.push(format!("publisher #{index} {}", ended.describe()));
            }
        }
        let lost = self.lost();
        if lost.total() > 0 {
            notes.push(format!(
                "LOST {} deliveries: {} in mid-stream gaps, {} missing at the tail",
                thousands(lost.total()),
                thousands(lost.gaps),
                thousands(lost.tail)
            ));
        }
        if self.duplicates() > 0 {
            notes.push(format!(
                "{} duplicate deliveries",
                thousands(self.duplicates())
            ));
        }
        let mut ends: Vec<(String, usize)> = Vec::new();
        for row in self.rows.iter().filter(|r| r.ended != Ended::Complete) {
            let text = row.ended.describe();
            match ends.iter_mut().find(|(t, _)| *t == text) {
                Some((_, n)) => *n += 1,
                None => ends.push((text, 1)),
            }
        }
        for (text, n) in ends {
            notes.push(format!("{n} subscriber(s) {text}"));
        }
        notes
    }

    /// The per-subscriber table; at most `max_rows` rows, the rest summed up.
    pub(crate) fn write_table(&self, out: &mut String, max_rows: usize) {
        let _ = writeln!(
            out,
            "  {:<10} {:>12} {:>10} {:>10} {:>10} {:>8}  ended",
            "subscriber", "delivered", "lost-gaps", "lost-tail", "duplicate", "reorder"
        );
        for (index, row) in self.rows.iter().enumerate().take(max_rows) {
            let corrupt = if row.corrupt > 0 {
                format!(" ({} corrupt payloads)", row.corrupt)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  #{index:<9} {:>12} {:>10} {:>10} {:>10} {:>8}  {}{corrupt}",
                thousands(row.delivered),
                thousands(row.losses.gaps),
                thousands(row.losses.tail),
                row.duplicates,
                row.out_of_order,
                row.ended.describe(),
            );
        }
        if self.rows.len() > max_rows {
            let rest = &self.rows[max_rows..];
            let complete = rest.iter().filter(|r| r.ended == Ended::Complete).count();
            let _ = writeln!(
                out,
                "  ... {} more: {} delivered, {} lost, {} complete",
                rest.len(),
                thousands(rest.iter().map(|r| r.delivered).sum()),
                thousands(rest.iter().map(|r| r.losses.total()).sum()),
                complete
            );
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let lost = self.lost();
        json!({
            "sent": self.total_sent(),
            "sent_per_publisher": self.sent,
            "confirmed_per_publisher": self.confirmed,
            "publisher_ends": self.publisher_ends.iter().map(Ended::describe).collect::<Vec<_>>(),
            "delivered": self.delivered(),
            "lost": lost.total(),
            "lost_gaps": lost.gaps,
            "lost_tail": lost.tail,
            "duplicates": self.duplicates(),
            "subscribers_closed_by_broker": self.closed_by_broker(),
            "per_subscriber": self.rows.iter().map(|r| json!({
                "delivered": r.delivered,
                "lost_gaps": r.losses.gaps,
                "lost_tail": r.losses.tail,
                "duplicates": r.duplicates,
                "out_of_order": r.out_of_order,
                "corrupt": r.corrupt,
                "ended": r.ended.describe(),
            })).collect::<Vec<_>>(),
            "clean": self.is_clean(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::accounting::{Stamp, Tracker};
    use crate::worker::{PublisherReport, SubscriberReport};

    fn subscriber(index: usize, counters: &[u64], ended: Ended) -> SubscriberReport {
        let mut tracker = Tracker::new(1);
        for &counter in counters {
            tracker.record(Some(Stamp {
                publisher: 0,
                counter,
                due_ns: None,
                sent_ns: None,
            }));
        }
        SubscriberReport {
            index,
            tracker,
            latency: None,
            last_message_at: None,
            ended,
            ended_at: Duration::ZERO,
        }
    }

    #[test]
    fn a_run_that_lost_anything_says_so() {
        let report = WorkerReport {
            publishers: vec![PublisherReport {
                index: 0,
                published: 5,
                confirmed: 5,
                last_publish_at: Duration::ZERO,
                confirm_latency: None,
                ended: Ended::Complete,
            }],
            subscribers: vec![
                subscriber(0, &[1, 2, 3, 4, 5], Ended::Complete),
                subscriber(1, &[1, 3, 3], Ended::Closed("GOODBYE SLOW_CONSUMER".into())),
            ],
        };
        let deliveries = Deliveries::of(&report);
        assert!(!deliveries.is_clean());
        assert_eq!(deliveries.delivered(), 7);
        assert_eq!(deliveries.lost(), Losses { gaps: 1, tail: 2 });
        assert_eq!(deliveries.closed_by_broker(), 1);
        assert_eq!(
            deliveries.problems(),
            [
                "LOST 3 deliveries: 1 in mid-stream gaps, 2 missing at the tail",
                "1 duplicate deliveries",
                "1 subscriber(s) closed by the broker: GOODBYE SLOW_CONSUMER",
            ]
        );
        let mut table = String::new();
        deliveries.write_table(&mut table, 1);
        assert!(
            table.contains("... 1 more: 2 delivered, 3 lost, 0 complete"),
            "{table}"
        );
    }
}
