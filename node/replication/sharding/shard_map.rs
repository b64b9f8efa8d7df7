//! A sharded collection's shard map: its shards' contiguous hash ranges, which
//! members hold each shard and which Raft group orders its writes, and an epoch
//! that grows with every change (a request routed by an older epoch can be told
//! apart and refused). Ranges are contiguous and cover the whole 64-bit space, so
//! a later split cuts one range in two and no point is ever without a shard.

use needle_consensus::{GroupId, NodeId};
use serde::{Deserialize, Serialize};

use super::error::ShardingError;
use super::id_hash::id_hash;

/// The most shards one collection may have.
pub const MAX_SHARDS: u32 = 1024;

/// An inclusive range of routing hashes, `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashRange {
    pub lo: u64,
    pub hi: u64,
}

impl HashRange {
    pub fn contains(&self, hash: u64) -> bool {
        self.lo <= hash && hash <= self.hi
    }

    /// The `shards` equal ranges the hash space is first cut into; shard `i`
    /// covers `[⌊i·2⁶⁴/S⌋, ⌊(i+1)·2⁶⁴/S⌋ − 1]`.
    pub fn even(shards: u32) -> Vec<HashRange> {
        let space = 1u128 << 64;
        let s = u128::from(shards.max(1));
        (0..s)
            .map(|i| HashRange {
                lo: (i * space / s) as u64,
                hi: ((i + 1) * space / s - 1) as u64,
            })
            .collect()
    }
}

/// One shard: its id (its position in the map), its range, its group and the
/// members holding its replicas, the preferred first leader first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlacement {
    pub id: u32,
    pub range: HashRange,
    pub group: GroupId,
    pub members: Vec<NodeId>,
}

/// A sharded collection's map, as the cluster-wide group commits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    pub epoch: u64,
    pub replication_factor: usize,
    pub shards: Vec<ShardPlacement>,
}

impl ShardMap {
    /// The shard that holds point `id`.
    pub fn shard_of(&self, id: &str) -> &ShardPlacement {
        self.shard_of_hash(id_hash(id))
    }

    /// The shard whose range holds `hash`. A validated map covers every hash.
    pub fn shard_of_hash(&self, hash: u64) -> &ShardPlacement {
        let after = self.shards.partition_point(|s| s.range.lo <= hash);
        // Shard 0 starts at 0, so `after` is at least 1 in a validated map.
        &self.shards[after.saturating_sub(1)]
    }

    /// `items` split by the shard of each one's `id`, in shard order, each part
    /// keeping the order its items had: the parts of a batch that spans shards.
    pub fn split<T>(
        &self,
        items: impl IntoIterator<Item = T>,
        id: impl Fn(&T) -> &str,
    ) -> Vec<(u32, Vec<T>)> {
        let mut parts: Vec<Vec<T>> = self.shards.iter().map(|_| Vec::new()).collect();
        for item in items {
            let shard = self.shard_of(id(&item)).id as usize;
            parts[shard].push(item);
        }
        parts
            .into_iter()
            .enumerate()
            .filter(|(_, part)| !part.is_empty())
            .map(|(shard, part)| (shard as u32, part))
            .collect()
    }

    /// Checks what routing relies on; a map decoded from a peer or from disk is
    /// used only once this passes. Shards are numbered in order, their ranges are
    /// contiguous from 0 to `u64::MAX`, each has `replication_factor` distinct
    /// members and a group of its own (never the cluster-wide one).
    pub fn validate(&self) -> Result<(), ShardingError> {
        let invalid = |m: String| Err(ShardingError::InvalidMap(m));
        let count = self.shards.len();
        if count == 0 || count > MAX_SHARDS as usize {
            return invalid(format!("{count} shards"));
        }
        let mut next_lo = Some(0u64);
        let mut groups = Vec::with_capacity(count);
        for (i, shard) in self.shards.iter().enumerate() {
            if shard.id as usize != i {
                return invalid(format!("shard {} at position {i}", shard.id));
            }
            if Some(shard.range.lo) != next_lo || shard.range.hi < shard.range.lo {
                return invalid(format!(
                    "shard {i}'s range [{}, {}] does not follow the one before it",
                    shard.range.lo, shard.range.hi
                ));
            }
            next_lo = shard.range.hi.checked_add(1);
            let mut members = shard.members.clone();
            members.sort_unstable();
            members.dedup();
            if members.len() != shard.members.len()
                || shard.members.len() != self.replication_factor
            {
                return invalid(format!(
                    "shard {i} has members {:?}, not {} distinct ones",
                    shard.members, self.replication_factor
                ));
            }
            if shard.group.is_cluster() {
                return invalid(format!("shard {i} names the cluster-wide group"));
            }
            groups.push(shard.group);
        }
        if next_lo.is_some() {
            return invalid("the ranges stop short of the end of the hash space".into());
        }
        groups.sort_unstable();
        groups.dedup();
        if groups.len() != count {
            return invalid("two shards share a group".into());
        }
        Ok(())
    }

    /// The shards `member` holds a replica of.
    pub fn held_by(&self, member: NodeId) -> impl Iterator<Item = &ShardPlacement> {
        self.shards
            .iter()
            .filter(move |s| s.members.contains(&member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::sharding::placement::plan;
    use proptest::prelude::*;

    fn map(shards: u32, r: usize, members: usize) -> ShardMap {
        let members: Vec<NodeId> = (1..=members as u64).collect();
        plan(shards, Some(r as u64), &members, GroupId(100)).unwrap()
    }

    #[test]
    fn even_ranges_cover_the_hash_space_without_gaps() {
        let one = HashRange::even(1);
        assert_eq!(
            one,
            vec![HashRange {
                lo: 0,
                hi: u64::MAX
            }]
        );
        let four = HashRange::even(4);
        assert_eq!(
            four[0],
            HashRange {
                lo: 0,
                hi: (1 << 62) - 1
            }
        );
        assert_eq!(four[1].lo, 1 << 62);
        assert_eq!(four[3].hi, u64::MAX);
        let many = HashRange::even(MAX_SHARDS);
        assert_eq!(many.len(), 1024);
        assert!(many.windows(2).all(|w| w[0].hi + 1 == w[1].lo));
    }

    #[test]
    fn a_point_goes_to_the_shard_whose_range_holds_its_hash() {
        let m = map(4, 3, 5);
        for hash in [0, 1, (1 << 62) - 1, 1 << 62, u64::MAX - 1, u64::MAX] {
            let shard = m.shard_of_hash(hash);
            assert!(shard.range.contains(hash), "{hash} in {:?}", shard.range);
        }
        let id = "doc-17";
        assert!(m.shard_of(id).range.contains(id_hash(id)));
    }

    #[test]
    fn a_batch_splits_into_per_shard_parts_that_keep_their_order() {
        let m = map(4, 1, 1);
        let ids: Vec<String> = (0..200).map(|i| format!("p{i}")).collect();
        let parts = m.split(ids.iter(), |id| id.as_str());
        assert_eq!(parts.len(), 4, "200 ids leave a shard of 4 empty");
        let mut seen = 0;
        for (shard, part) in &parts {
            seen += part.len();
            assert!(part.iter().all(|id| m.shard_of(id).id == *shard));
            let positions: Vec<usize> = part
                .iter()
                .map(|id| ids.iter().position(|x| x == *id).unwrap())
                .collect();
            assert!(positions.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(seen, 200);
    }

    #[test]
    fn maps_that_break_an_invariant_are_refused() {
        let good = map(4, 3, 5);
        assert_eq!(good.validate(), Ok(()));
        let broken = |change: fn(&mut ShardMap)| {
            let mut m = good.clone();
            change(&mut m);
            m.validate()
        };
        let gap = broken(|m| m.shards[1].range.lo += 1);
        assert!(matches!(gap, Err(ShardingError::InvalidMap(_))));
        assert!(
            broken(|m| m.shards[3].range.hi -= 1).is_err(),
            "short of the end"
        );
        assert!(broken(|m| m.shards[2].members[1] = m.shards[2].members[0]).is_err());
        assert!(broken(|m| {
            m.shards[0].members.pop();
        })
        .is_err());
        assert!(broken(|m| m.shards[1].group = m.shards[0].group).is_err());
        assert!(broken(|m| m.shards[1].group = GroupId::CLUSTER).is_err());
        assert!(broken(|m| m.shards.swap(0, 1)).is_err());
        assert!(broken(|m| m.shards.clear()).is_err());
    }

    proptest! {
        #[test]
        fn every_hash_has_exactly_one_shard(shards in 1u32..=MAX_SHARDS, hash: u64) {
            let ranges = HashRange::even(shards);
            prop_assert_eq!(ranges.iter().filter(|r| r.contains(hash)).count(), 1);
            let m = map(shards, 1, 1);
            let shard = m.shard_of_hash(hash);
            prop_assert!(shard.range.contains(hash));
        }
    }
}
