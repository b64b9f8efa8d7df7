//! When recent operations were committed, so that a primary can tell a replica how
//! old the oldest operation it lacks is.
//!
//! The operation log stores no times and need not: only recent entries matter for
//! lag. One (last sequence number, ms) pair per write group is kept in memory,
//! bounded; after a restart nothing is known until new writes arrive.

use parking_lot::Mutex;
use std::collections::VecDeque;

/// Write groups remembered: at the default group sizes, minutes to hours of writes.
const CAPACITY: usize = 1 << 16;

#[derive(Debug, Default)]
pub struct CommitTimes {
    /// (last sequence number of a group, commit time in ms), oldest first.
    groups: Mutex<VecDeque<(u64, u64)>>,
}

impl CommitTimes {
    /// Operations up to `last_seq` were committed at `ms`.
    pub fn record(&self, last_seq: u64, ms: u64) {
        let mut groups = self.groups.lock();
        if groups.back().is_some_and(|&(last, _)| last >= last_seq) {
            return;
        }
        groups.push_back((last_seq, ms));
        if groups.len() > CAPACITY {
            groups.pop_front();
        }
    }

    /// When operation `seq` was committed. For an operation older than everything
    /// kept, the oldest time kept, so an age computed from it errs short; `None` when
    /// nothing that old or newer is known.
    pub fn committed_ms(&self, seq: u64) -> Option<u64> {
        let groups = self.groups.lock();
        let i = groups.partition_point(|&(last, _)| last < seq);
        groups.get(i).map(|&(_, ms)| ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_takes_its_groups_time() {
        let times = CommitTimes::default();
        assert_eq!(times.committed_ms(1), None);
        times.record(3, 100); // ops 1..=3
        times.record(7, 250); // ops 4..=7
        times.record(7, 999); // nothing new: ignored
        assert_eq!(times.committed_ms(1), Some(100));
        assert_eq!(times.committed_ms(3), Some(100));
        assert_eq!(times.committed_ms(4), Some(250));
        assert_eq!(times.committed_ms(7), Some(250));
        assert_eq!(times.committed_ms(8), None);
    }

    #[test]
    fn older_than_kept_reads_as_the_oldest_kept() {
        let times = CommitTimes::default();
        for g in 0..(CAPACITY as u64 + 10) {
            times.record(g + 1, 1_000 + g);
        }
        assert_eq!(times.committed_ms(1), Some(1_010));
        assert_eq!(
            times.committed_ms(CAPACITY as u64 + 10),
            Some(1_000 + CAPACITY as u64 + 9)
        );
    }
}
