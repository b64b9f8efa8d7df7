//! Epochs: which primary wrote which stretch of the operation log.
//!
//! Every promotion starts a new epoch at the next sequence number. A node keeps the
//! history of epochs it has followed (and, as a primary, started) in its store; it
//! travels inside snapshots. Two histories tell how much of two logs is shared: up
//! to the first epoch one node never saw, entries with the same sequence number were
//! written by the same primary. A former primary's entries after that point were
//! never replicated to the new primary, and demotion discards them.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

use crate::error::Result;
use crate::meta_keys;
use crate::Database;

/// The epoch bookkeeping a primary–replica node keeps in its store's `meta`, in the
/// same store as the log it describes (so it travels in snapshots). The core stores
/// it without knowing what it means.
pub trait EpochStore {
    /// The epochs this node's log went through.
    fn epoch_history(&self) -> Result<EpochHistory>;
    fn set_epoch_history(&self, history: &EpochHistory) -> Result<()>;
    /// Set when this node, as a primary, learnt of a newer primary (or promised a
    /// promotion): it stays fenced across restarts until it is demoted.
    fn fenced_by(&self) -> Result<Option<Fence>>;
    fn set_fenced_by(&self, fence: Option<&Fence>) -> Result<()>;
}

impl EpochStore for Database {
    fn epoch_history(&self) -> Result<EpochHistory> {
        Ok(self.meta_json(meta_keys::EPOCHS)?.unwrap_or_default())
    }

    fn set_epoch_history(&self, history: &EpochHistory) -> Result<()> {
        self.set_meta_json(meta_keys::EPOCHS, Some(history))
    }

    fn fenced_by(&self) -> Result<Option<Fence>> {
        self.meta_json(meta_keys::FENCED_BY)
    }

    fn set_fenced_by(&self, fence: Option<&Fence>) -> Result<()> {
        self.set_meta_json(meta_keys::FENCED_BY, fence)
    }
}

/// Epoch `epoch` began with the entry at `first_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStart {
    pub epoch: u64,
    pub first_seq: u64,
}

/// A node's epochs, oldest first. Never empty: a log that predates epochs is epoch 1
/// from its first entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochHistory(Vec<EpochStart>);

impl Default for EpochHistory {
    fn default() -> Self {
        EpochHistory(vec![EpochStart {
            epoch: 1,
            first_seq: 1,
        }])
    }
}

impl EpochHistory {
    pub fn current(&self) -> u64 {
        self.0.last().map_or(1, |e| e.epoch)
    }

    pub fn starts(&self) -> &[EpochStart] {
        &self.0
    }

    /// A new epoch, higher than any in the history, from `first_seq` on.
    pub fn begin(&mut self, epoch: u64, first_seq: u64) {
        debug_assert!(epoch > self.current());
        self.0.push(EpochStart { epoch, first_seq });
    }

    /// The last sequence number this node's log (applied up to `applied`) shares
    /// with a node whose history is `theirs`. Entries after it were written in an
    /// epoch `theirs` does not have.
    pub fn shared_prefix(&self, theirs: &EpochHistory, applied: u64) -> u64 {
        for (mine, other) in self.0.iter().zip(&theirs.0) {
            if mine != other {
                // The first disagreement: whichever epoch started earlier ends the
                // common part.
                return applied.min(mine.first_seq.min(other.first_seq).saturating_sub(1));
            }
        }
        match theirs.0.get(self.0.len()) {
            // They went on into an epoch this node never saw.
            Some(next) => applied.min(next.first_seq.saturating_sub(1)),
            // Their history is a prefix of (or equal to) this one.
            None => match self.0.get(theirs.0.len()) {
                Some(next) => applied.min(next.first_seq.saturating_sub(1)),
                None => applied,
            },
        }
    }
}

/// A node learnt that a newer primary exists: it takes no more writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    pub epoch: u64,
    pub primary: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(starts: &[(u64, u64)]) -> EpochHistory {
        EpochHistory(
            starts
                .iter()
                .map(|&(epoch, first_seq)| EpochStart { epoch, first_seq })
                .collect(),
        )
    }

    #[test]
    fn a_former_primary_shares_the_log_up_to_the_new_epoch() {
        let old_primary = history(&[(1, 1)]);
        let promoted = history(&[(1, 1), (2, 101)]);
        // The old primary wrote 106 entries; the promoted replica had 100.
        assert_eq!(old_primary.shared_prefix(&promoted, 106), 100);
        // A replica that lagged at 90 shares all it has.
        assert_eq!(old_primary.shared_prefix(&promoted, 90), 90);
        // The new primary sees the old one as sharing its whole epoch-1 prefix.
        assert_eq!(promoted.shared_prefix(&old_primary, 120), 100);
    }

    #[test]
    fn same_histories_share_everything_applied() {
        let h = history(&[(1, 1), (2, 40)]);
        assert_eq!(h.shared_prefix(&h.clone(), 77), 77);
        assert_eq!(EpochHistory::default().current(), 1);
    }

    #[test]
    fn two_promotions_from_one_epoch_diverge_at_the_earlier_one() {
        // Both replicas were promoted from epoch 1, at different points.
        let a = history(&[(1, 1), (2, 51)]);
        let b = history(&[(1, 1), (3, 56)]);
        assert_eq!(a.shared_prefix(&b, 70), 50);
        assert_eq!(b.shared_prefix(&a, 70), 50);
        // A chain: b followed a's epoch 2, then was promoted to 3.
        let chain = history(&[(1, 1), (2, 51), (3, 80)]);
        assert_eq!(a.shared_prefix(&chain, 85), 79);
        assert_eq!(a.shared_prefix(&chain, 60), 60);
    }
}
