//! A sharded collection's shard map: its shards' contiguous hash ranges, which
//! members hold each shard and which Raft group orders its writes, and an epoch
//! meant to grow with every change, so that a request routed by an older map can
//! be told apart (nothing checks epochs yet). Ranges are contiguous and cover the
//! whole 64-bit space, so a later split cuts one range in two and no point is
//! ever without a shard. A map is validated before it is proposed, and routing
//! by any map answers "no shard" rather than panicking.

use needle_consensus::{GroupId, NodeId};
use serde::{Deserialize, Serialize};

use super::error::ShardingError;
use super::id_hash::id_hash;

/// The epoch of a collection's first map, as placement makes it.
pub const FIRST_EPOCH: u64 = 1;

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
    /// covers `[⌊i·2⁶⁴/S⌋, ⌊(i+1)·2⁶⁴/S⌋ − 1]`. `shards` is taken within
    /// `1..=MAX_SHARDS`.
    pub fn even(shards: u32) -> Vec<HashRange> {
        let space = 1u128 << 64;
        let s = u128::from(shards.clamp(1, MAX_SHARDS));
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

/// A sharded collection's map, as the cluster-wide group commits it. Whoever
/// proposes one validates it first ([`ShardMap::validate`]); decoding does not,
/// so that a map committed under one version's rules still replays under a
/// later one's, and routing by any map answers "no shard" rather than panicking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    pub epoch: u64,
    pub replication_factor: usize,
    pub shards: Vec<ShardPlacement>,
}

impl ShardMap {
    /// The shard that holds point `id`: always one in a valid map.
    pub fn shard_of(&self, id: &str) -> Option<&ShardPlacement> {
        self.shard_of_hash(id_hash(id))
    }

    /// The shard whose range holds `hash`: always one in a valid map.
    pub fn shard_of_hash(&self, hash: u64) -> Option<&ShardPlacement> {
        self.position_of(hash).map(|i| &self.shards[i])
    }

    fn position_of(&self, hash: u64) -> Option<usize> {
        let after = self.shards.partition_point(|s| s.range.lo <= hash);
        let at = after.checked_sub(1)?;
        self.shards[at].range.contains(hash).then_some(at)
    }

    /// `items` split by the shard of each one's `id`, in shard order, each part
    /// keeping the order its items had: the parts of a batch that spans shards,
    /// each with its shard's id.
    pub fn split<T>(
        &self,
        items: impl IntoIterator<Item = T>,
        id: impl Fn(&T) -> &str,
    ) -> Result<Vec<(u32, Vec<T>)>, ShardingError> {
        let mut parts: Vec<Vec<T>> = self.shards.iter().map(|_| Vec::new()).collect();
        for item in items {
            let hash = id_hash(id(&item));
            let at = self.position_of(hash).ok_or_else(|| {
                ShardingError::InvalidMap(format!("no shard holds hash {hash:#018x}"))
            })?;
            parts[at].push(item);
        }
        Ok(self
            .shards
            .iter()
            .zip(parts)
            .filter(|(_, part)| !part.is_empty())
            .map(|(shard, part)| (shard.id, part))
            .collect())
    }

    /// Checks what routing relies on, before a map is proposed. Shards are
    /// numbered in order, their ranges are contiguous from 0 to `u64::MAX`, each
    /// has `replication_factor` (at least one) distinct members and a group no
    /// other shard of this map has, never the cluster-wide one. That groups are
    /// unique across collections is the caller's to check.
    pub fn validate(&self) -> Result<(), ShardingError> {
        let invalid = |m: String| Err(ShardingError::InvalidMap(m));
        let count = self.shards.len();
        if count == 0 || count > MAX_SHARDS as usize {
            return invalid(format!("{count} shards"));
        }
        if self.replication_factor == 0 {
            return invalid("a replication factor of 0".into());
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
            let shard = m.shard_of_hash(hash).unwrap();
            assert!(shard.range.contains(hash), "{hash} in {:?}", shard.range);
        }
        let id = "doc-17";
        assert!(m.shard_of(id).unwrap().range.contains(id_hash(id)));
        // A map that breaks the rules: no shard, not a panic.
        let mut broken = m.clone();
        broken.shards[0].range.lo = 10;
        assert!(broken.shard_of_hash(3).is_none());
        broken.shards.clear();
        assert!(broken.shard_of_hash(3).is_none());
        assert!(broken.split(["a"], |id| id).is_err());
    }

    #[test]
    fn a_batch_splits_into_per_shard_parts_that_keep_their_order() {
        let m = map(4, 1, 1);
        let ids: Vec<String> = (0..200).map(|i| format!("p{i}")).collect();
        let parts = m.split(ids.iter(), |id| id.as_str()).unwrap();
        assert_eq!(parts.len(), 4, "200 ids leave a shard of 4 empty");
        let mut seen = 0;
        for (shard, part) in &parts {
            seen += part.len();
            assert!(part.iter().all(|id| m.shard_of(id).unwrap().id == *shard));
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
        assert!(broken(|m| {
            m.replication_factor = 0;
            m.shards.iter_mut().for_each(|s| s.members.clear());
        })
        .is_err());
    }

    proptest! {
        #[test]
        fn every_hash_has_exactly_one_shard(shards in 1u32..=MAX_SHARDS, hash: u64) {
            let ranges = HashRange::even(shards);
            prop_assert_eq!(ranges.iter().filter(|r| r.contains(hash)).count(), 1);
            let m = map(shards, 1, 1);
            let shard = m.shard_of_hash(hash);
            prop_assert!(shard.is_some_and(|s| s.range.contains(hash)));
        }
    }
}
