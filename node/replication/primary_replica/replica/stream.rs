//! A replica's view of the primary's operation log: what it has applied, what it
//! asks for next, what to do with each batch that arrives, and how far behind it is.
//!
//! Applying stays with `Database::apply_entries`, which is idempotent by sequence
//! number and refuses gaps; this decides which part of a batch to hand it and when
//! to ask the primary to resend, so that restarts and retransmissions never leave a
//! gap or apply an entry twice.

use std::collections::VecDeque;

/// What the primary says about one batch it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    /// Sequence number of the batch's first entry; the rest follow without gaps.
    pub first: u64,
    /// Entries in the batch (0 for a heartbeat).
    pub count: u64,
    /// The primary's newest sequence number when it sent the batch.
    pub primary_last: u64,
    /// When the batch's first entry was written on the primary (ms since the epoch).
    pub written_ms: u64,
    /// When the first entry after the batch was written there; 0 when the batch
    /// reaches the primary's newest entry.
    pub next_written_ms: u64,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerAction {
    /// Apply the batch's entries from index `skip` on (earlier ones are applied).
    Apply { skip: usize },
    /// Everything in it is already applied (a retransmission).
    AlreadyApplied,
    /// It starts after the next entry this replica needs: ask again from `from`.
    Resync { from: u64 },
}

/// How far a replica is behind its primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Lag {
    /// Entries the primary has that this replica has not applied.
    pub operations: u64,
    /// Age of the oldest entry the primary has and this replica has not applied
    /// (0 when caught up).
    pub time_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Follower {
    applied: u64,
    primary_last: u64,
    /// (one past the last seq, written ms) of batches received and not yet fully
    /// applied, oldest first.
    pending: VecDeque<(u64, u64)>,
    /// When the first entry after the newest batch was written on the primary (0:
    /// none), the oldest unapplied entry once the pending batches are applied.
    beyond_ms: u64,
}

impl Follower {
    /// A follower whose database has applied everything up to `applied`.
    pub fn new(applied: u64) -> Follower {
        Follower {
            applied,
            primary_last: applied,
            pending: VecDeque::new(),
            beyond_ms: 0,
        }
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The sequence number to ask the primary to stream from.
    pub fn next_needed(&self) -> u64 {
        self.applied + 1
    }

    pub fn on_batch(&mut self, batch: BatchInfo) -> FollowerAction {
        self.primary_last = self.primary_last.max(batch.primary_last);
        self.beyond_ms = batch.next_written_ms;
        if batch.count == 0 {
            return FollowerAction::AlreadyApplied;
        }
        let next = self.next_needed();
        if batch.first > next {
            return FollowerAction::Resync { from: next };
        }
        let end = batch.first + batch.count; // one past the batch's last entry
        if end <= next {
            return FollowerAction::AlreadyApplied;
        }
        if self
            .pending
            .back()
            .is_none_or(|&(last_end, _)| last_end < end)
        {
            self.pending.push_back((end, batch.written_ms));
        }
        FollowerAction::Apply {
            skip: (next - batch.first) as usize,
        }
    }

    /// Entries up to `last` are now durable here; returns the sequence number to
    /// acknowledge to the primary.
    pub fn on_applied(&mut self, last: u64) -> u64 {
        self.applied = self.applied.max(last);
        self.primary_last = self.primary_last.max(self.applied);
        // A batch stays pending while any of its entries is unapplied.
        while self
            .pending
            .front()
            .is_some_and(|&(end, _)| end <= self.applied + 1)
        {
            self.pending.pop_front();
        }
        self.applied
    }

    pub fn lag(&self, now_ms: u64) -> Lag {
        Lag {
            operations: self.primary_last.saturating_sub(self.applied),
            time_ms: match self.pending.front() {
                Some(&(_, written)) => now_ms.saturating_sub(written),
                None if self.primary_last > self.applied && self.beyond_ms > 0 => {
                    now_ms.saturating_sub(self.beyond_ms)
                }
                None => 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: u64, count: u64, primary_last: u64, written_ms: u64) -> BatchInfo {
        BatchInfo {
            first,
            count,
            primary_last,
            written_ms,
            next_written_ms: 0,
        }
    }

    #[test]
    fn lag_time_counts_entries_not_yet_received() {
        let mut f = Follower::new(0);
        // Entries 1..=10 arrive; 11..=25 exist on the primary, the oldest written at 900.
        let info = BatchInfo {
            next_written_ms: 900,
            ..batch(1, 10, 25, 800)
        };
        f.on_batch(info);
        assert_eq!(
            f.lag(1_000).time_ms,
            200,
            "the received batch is the oldest"
        );
        f.on_applied(10);
        assert_eq!(
            f.lag(1_000),
            Lag {
                operations: 15,
                time_ms: 100
            },
            "applied, yet entry 11 (written at 900) is missing"
        );
        // The next batch reaches the primary's newest entry: caught up.
        f.on_batch(batch(11, 15, 25, 900));
        f.on_applied(25);
        assert_eq!(f.lag(5_000), Lag::default());
    }

    #[test]
    fn a_stream_of_batches_is_applied_in_order_and_acknowledged() {
        let mut f = Follower::new(0);
        assert_eq!(f.next_needed(), 1);
        assert_eq!(
            f.on_batch(batch(1, 10, 25, 1_000)),
            FollowerAction::Apply { skip: 0 }
        );
        assert_eq!(
            f.lag(1_500),
            Lag {
                operations: 25,
                time_ms: 500
            }
        );
        assert_eq!(f.on_applied(10), 10);
        assert_eq!(
            f.on_batch(batch(11, 15, 25, 1_200)),
            FollowerAction::Apply { skip: 0 }
        );
        assert_eq!(
            f.lag(1_500),
            Lag {
                operations: 15,
                time_ms: 300
            }
        );
        f.on_applied(25);
        assert_eq!(f.lag(9_999), Lag::default());
    }

    #[test]
    fn retransmissions_are_trimmed_or_ignored() {
        let mut f = Follower::new(10);
        // Overlapping: entries 8..=12 where 8..=10 are applied.
        assert_eq!(
            f.on_batch(batch(8, 5, 12, 0)),
            FollowerAction::Apply { skip: 3 }
        );
        f.on_applied(12);
        assert_eq!(
            f.on_batch(batch(5, 8, 12, 0)),
            FollowerAction::AlreadyApplied
        );
    }

    #[test]
    fn a_gap_asks_for_a_resend_from_the_first_missing_entry() {
        let mut f = Follower::new(10);
        assert_eq!(
            f.on_batch(batch(15, 3, 17, 0)),
            FollowerAction::Resync { from: 11 }
        );
        assert_eq!(
            f.lag(0).operations,
            7,
            "the primary's position is still learned"
        );
        assert_eq!(f.applied(), 10);
    }

    #[test]
    fn heartbeats_update_lag_without_entries() {
        let mut f = Follower::new(4);
        assert_eq!(
            f.on_batch(batch(5, 0, 9, 0)),
            FollowerAction::AlreadyApplied
        );
        assert_eq!(
            f.lag(0),
            Lag {
                operations: 5,
                time_ms: 0
            }
        );
    }

    #[test]
    fn restart_resumes_from_what_the_database_applied() {
        let mut first = Follower::new(0);
        first.on_batch(batch(1, 100, 100, 0));
        first.on_applied(60);
        // The process dies; the database kept 60. A new follower asks for 61.
        let f = Follower::new(60);
        assert_eq!(f.next_needed(), 61);
    }
}
