//! The tracker that decides when a write has met its write concern, on a primary.
//!
//! The primary counts itself: a write is durable on the primary before anyone
//! waits. `majority` means a majority of the primary and every replica it knows of,
//! heard from lately or not; `all` means every connected replica and never less than
//! `majority`. A replica that disconnects stops counting for `all`, so an `all`
//! write waiting only on it is satisfied by the remaining ones, but a primary cut
//! off from its replicas never acknowledges `all` alone: the replicas it stopped
//! hearing from can elect a new primary that lacks the write.

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use crate::replication::consistency::WriteConcern;

/// Names a write waiting for its concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(u64);

/// The answer to [`AckTracker::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Already met: acknowledge now.
    Met,
    /// Not yet: the ticket comes back from `ack` or `disconnect` when it is met, or
    /// is dropped with `give_up` when the caller's timeout fires.
    Pending(Ticket),
}

/// What every connected replica has durably applied, and the writes waiting on it.
#[derive(Debug, Default)]
pub struct AckTracker {
    /// Replica → highest sequence number it has applied and made durable.
    acked: HashMap<String, u64>,
    /// Replica → when it was last heard from (ms), for [`AckTracker::expire_silent`].
    seen_ms: HashMap<String, u64>,
    /// (seq, ticket) → concern, in sequence order.
    waiting: BTreeMap<(u64, Ticket), WriteConcern>,
    next_ticket: u64,
    /// Replicas the cluster is known to have, heard from lately or not, by name.
    /// `majority` counts them all: a promotion elsewhere would count a silent replica
    /// too, so a write the primary alone holds must never pass for a majority write.
    known: BTreeSet<String>,
}

impl AckTracker {
    pub fn new() -> AckTracker {
        AckTracker::default()
    }

    /// Replicas currently counted.
    pub fn replicas(&self) -> usize {
        self.acked.len()
    }

    fn copies_of(&self, seq: u64) -> usize {
        1 + self.acked.values().filter(|&&a| a >= seq).count()
    }

    fn met(&self, seq: u64, concern: WriteConcern) -> bool {
        let copies = self.copies_of(seq);
        let majority = WriteConcern::Majority.copies_needed(self.majority_replicas());
        match concern {
            WriteConcern::Primary => copies >= 1,
            WriteConcern::Majority => copies >= majority,
            WriteConcern::All => {
                copies >= majority && copies >= WriteConcern::All.copies_needed(self.acked.len())
            }
        }
    }

    /// The replicas a majority is counted among: every one known, and any connected
    /// one not yet known.
    fn majority_replicas(&self) -> usize {
        self.known.len()
            + self
                .acked
                .keys()
                .filter(|r| !self.known.contains(*r))
                .count()
    }

    /// The cluster has these replicas, besides any already known.
    pub fn know(&mut self, replicas: impl IntoIterator<Item = String>) {
        self.known.extend(replicas);
    }

    /// The replica no longer counts at all (retired): not for `majority`, and not
    /// as connected until it is heard from again. Whether it was counted.
    pub fn forget(&mut self, replica: &str) -> bool {
        let known = self.known.remove(replica);
        let acked = self.acked.remove(replica).is_some();
        self.seen_ms.remove(replica);
        known || acked
    }

    /// `from` and `to` turned out to be one replica: `to` keeps the highest
    /// acknowledgement and the latest sighting of both.
    pub fn merge(&mut self, from: &str, to: &str) {
        if let Some(acked) = self.acked.remove(from) {
            let entry = self.acked.entry(to.to_string()).or_insert(acked);
            *entry = (*entry).max(acked);
        }
        if let Some(seen) = self.seen_ms.remove(from) {
            let entry = self.seen_ms.entry(to.to_string()).or_insert(seen);
            *entry = (*entry).max(seen);
        }
        if self.known.remove(from) {
            self.known.insert(to.to_string());
        }
        let _ = self.release();
    }

    /// The replicas `majority` counts, by name.
    pub fn known_replicas(&self) -> Vec<String> {
        let mut all: BTreeSet<String> = self.known.clone();
        all.extend(self.acked.keys().cloned());
        all.into_iter().collect()
    }

    /// A write at `seq`, durable on the primary, waiting for `concern`.
    pub fn wait(&mut self, seq: u64, concern: WriteConcern) -> Wait {
        if self.met(seq, concern) {
            return Wait::Met;
        }
        self.next_ticket += 1;
        let ticket = Ticket(self.next_ticket);
        self.waiting.insert((seq, ticket), concern);
        Wait::Pending(ticket)
    }

    /// The caller stopped waiting (timeout): the write stays applied on the primary.
    pub fn give_up(&mut self, ticket: Ticket) -> bool {
        let key = self.waiting.keys().find(|(_, t)| *t == ticket).copied();
        key.is_some_and(|k| self.waiting.remove(&k).is_some())
    }

    /// A replica (re)connected, having applied up to `applied`.
    pub fn connect(&mut self, replica: &str, applied: u64) -> Vec<Ticket> {
        self.acked.insert(replica.to_string(), applied);
        self.known.insert(replica.to_string());
        self.release()
    }

    /// A replica reports that everything up to `seq` is durable there.
    /// Acknowledgements never move backwards.
    pub fn ack(&mut self, replica: &str, seq: u64) -> Vec<Ticket> {
        if let Some(acked) = self.acked.get_mut(replica) {
            *acked = (*acked).max(seq);
        }
        self.release()
    }

    /// A replica was heard from at `now_ms`, having applied up to `applied`.
    pub fn seen(&mut self, replica: &str, applied: u64, now_ms: u64) -> Vec<Ticket> {
        self.seen_ms.insert(replica.to_string(), now_ms);
        let acked = self.acked.get(replica).copied().unwrap_or(0).max(applied);
        self.connect(replica, acked)
    }

    /// Replicas not heard from for `max_silence_ms` are treated as disconnected.
    pub fn expire_silent(&mut self, now_ms: u64, max_silence_ms: u64) -> Vec<Ticket> {
        let silent: Vec<String> = self
            .seen_ms
            .iter()
            .filter(|(_, &at)| now_ms.saturating_sub(at) > max_silence_ms)
            .map(|(name, _)| name.clone())
            .collect();
        let mut released = Vec::new();
        for name in silent {
            self.seen_ms.remove(&name);
            released.extend(self.disconnect(&name));
        }
        released
    }

    /// Whether a write at `seq` has met `concern` now.
    pub fn is_met(&self, seq: u64, concern: WriteConcern) -> bool {
        self.met(seq, concern)
    }

    /// A replica went away: it no longer counts, which can only lower what `all`
    /// and `majority` need.
    pub fn disconnect(&mut self, replica: &str) -> Vec<Ticket> {
        self.acked.remove(replica);
        self.release()
    }

    /// Removes and returns every waiting write whose concern is now met.
    fn release(&mut self) -> Vec<Ticket> {
        let ready: Vec<(u64, Ticket)> = self
            .waiting
            .iter()
            .filter(|(&(seq, _), &concern)| self.met(seq, concern))
            .map(|(&key, _)| key)
            .collect();
        for key in &ready {
            self.waiting.remove(key);
        }
        ready.into_iter().map(|(_, t)| t).collect()
    }

    /// Every counted replica and the sequence number it has acknowledged, by name.
    /// When `replica` was last heard from (ms since the epoch), if ever.
    pub fn last_seen_ms(&self, replica: &str) -> Option<u64> {
        self.seen_ms.get(replica).copied()
    }

    pub fn acknowledged(&self) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self.acked.iter().map(|(k, &v)| (k.clone(), v)).collect();
        all.sort();
        all
    }

    /// Writes still waiting.
    pub fn pending(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_replica_still_counts_for_majority_but_not_for_all() {
        let mut tracker = AckTracker::new();
        tracker.connect("r1", 0);
        tracker.connect("r2", 0);
        tracker.disconnect("r2");
        // r2 is gone: `all` asks only r1, but a majority is still 2 of 3.
        tracker.ack("r1", 5);
        assert!(tracker.is_met(5, WriteConcern::All));
        assert!(tracker.is_met(5, WriteConcern::Majority));
        tracker.disconnect("r1");
        assert!(!tracker.is_met(6, WriteConcern::Majority));
        assert!(tracker.is_met(6, WriteConcern::Primary));
        // A new primary told of a 3-node cluster: no majority before a replica acks.
        let mut fresh = AckTracker::new();
        fresh.know(["r1".to_string(), "r2".to_string()]);
        assert!(!fresh.is_met(1, WriteConcern::Majority));
        fresh.connect("r1", 1);
        assert!(fresh.is_met(1, WriteConcern::Majority));
    }

    #[test]
    fn a_forgotten_replica_no_longer_counts_for_majority() {
        let mut t = AckTracker::new();
        t.know(["r1".to_string(), "r2".to_string(), "r3".to_string()]);
        t.connect("r1", 4);
        // 3 replicas known: a majority is 3 of 4 copies, and r2, r3 are gone for good.
        assert!(!t.is_met(4, WriteConcern::Majority));
        assert!(t.forget("r3"));
        assert!(!t.forget("r3"));
        // 2 known: 2 of 3 copies, which the primary and r1 make.
        assert!(t.is_met(4, WriteConcern::Majority));
        assert_eq!(t.known_replicas(), vec!["r1".to_string(), "r2".to_string()]);
        // A replica that reconnects under the same name is one replica, not two.
        t.connect("r1", 5);
        assert_eq!(t.known_replicas().len(), 2);
    }

    #[test]
    fn copies_needed_counts_the_primary() {
        assert_eq!(WriteConcern::Primary.copies_needed(2), 1);
        assert_eq!(WriteConcern::Majority.copies_needed(0), 1);
        assert_eq!(WriteConcern::Majority.copies_needed(1), 2);
        assert_eq!(WriteConcern::Majority.copies_needed(2), 2);
        assert_eq!(WriteConcern::Majority.copies_needed(3), 3);
        assert_eq!(WriteConcern::Majority.copies_needed(4), 3);
        assert_eq!(WriteConcern::All.copies_needed(2), 3);
    }

    #[test]
    fn concerns_parse_strictly() {
        assert_eq!(WriteConcern::parse("all").unwrap(), WriteConcern::All);
        assert_eq!(WriteConcern::default(), WriteConcern::Majority);
        assert!(WriteConcern::parse("Majority").is_err());
        assert!(WriteConcern::parse("").is_err());
    }

    #[test]
    fn majority_and_all_wait_for_the_right_acks() {
        let mut t = AckTracker::new();
        t.connect("r1", 0);
        t.connect("r2", 0);
        assert_eq!(t.wait(1, WriteConcern::Primary), Wait::Met);
        let Wait::Pending(majority) = t.wait(1, WriteConcern::Majority) else {
            panic!()
        };
        let Wait::Pending(all) = t.wait(1, WriteConcern::All) else {
            panic!()
        };
        // One replica makes 2 of 3 copies: majority, not all.
        assert_eq!(t.ack("r1", 1), vec![majority]);
        assert!(t.ack("r1", 1).is_empty());
        assert_eq!(t.ack("r2", 5), vec![all]);
        assert_eq!(t.pending(), 0);
        // Later writes already covered by acks are met at once (r2 has 5), or wait
        // for the replica that lacks them (r1 has only 1).
        assert_eq!(t.wait(5, WriteConcern::Majority), Wait::Met);
        assert!(matches!(t.wait(5, WriteConcern::All), Wait::Pending(_)));
    }

    #[test]
    fn acks_never_move_backwards_and_unknown_replicas_do_not_count() {
        let mut t = AckTracker::new();
        t.connect("r1", 10);
        t.ack("r1", 3);
        assert_eq!(t.wait(10, WriteConcern::All), Wait::Met);
        t.ack("stranger", 100);
        assert_eq!(t.replicas(), 1);
        assert!(matches!(t.wait(11, WriteConcern::All), Wait::Pending(_)));
    }

    #[test]
    fn a_disconnected_replica_stops_counting() {
        let mut t = AckTracker::new();
        t.connect("r1", 0);
        t.connect("r2", 0);
        t.ack("r1", 7);
        let Wait::Pending(all) = t.wait(7, WriteConcern::All) else {
            panic!()
        };
        // r2 is gone: "every connected replica" is now r1, which has it.
        assert_eq!(t.disconnect("r2"), vec![all]);
    }

    #[test]
    fn silent_replicas_stop_counting() {
        let mut t = AckTracker::new();
        t.seen("r1", 0, 1_000);
        t.seen("r2", 5, 1_000);
        assert!(!t.is_met(5, WriteConcern::All));
        t.seen("r2", 5, 9_000);
        assert!(t.expire_silent(9_000, 5_000).is_empty());
        assert_eq!(t.replicas(), 1, "r1 was silent for 8 s");
        assert!(t.is_met(5, WriteConcern::All));
    }

    #[test]
    fn a_primary_alone_never_acknowledges_all() {
        let mut t = AckTracker::new();
        t.seen("r1", 3, 1_000);
        t.seen("r2", 3, 1_000);
        let Wait::Pending(all) = t.wait(4, WriteConcern::All) else {
            panic!()
        };
        // Cut off from both: neither counts as connected any more, but they are two
        // of three nodes and could promote one of them without write 4.
        t.expire_silent(20_000, 15_000);
        assert_eq!(t.replicas(), 0);
        assert!(!t.is_met(4, WriteConcern::All));
        assert!(!t.is_met(4, WriteConcern::Majority));
        // One comes back with it: a majority, and every connected replica.
        assert_eq!(t.seen("r1", 4, 21_000), vec![all]);
    }

    #[test]
    fn timed_out_writes_are_forgotten() {
        let mut t = AckTracker::new();
        t.connect("r1", 0);
        let Wait::Pending(ticket) = t.wait(1, WriteConcern::All) else {
            panic!()
        };
        assert!(t.give_up(ticket));
        assert!(!t.give_up(ticket));
        assert!(
            t.ack("r1", 1).is_empty(),
            "a given-up write is not released later"
        );
    }
}
