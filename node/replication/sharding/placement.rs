//! Where a new sharded collection's replicas go. Replicas are laid out round the
//! members in order, `R` consecutive members per shard, each shard starting where
//! the one before it ended: no member holds two replicas of one shard (`R` is at
//! most the member count), and every member holds ⌊S·R/n⌋ or ⌈S·R/n⌉ replicas.
//! Each shard's first leader is the one of its replicas that leads the fewest
//! shards so far, so that first leaders spread too and one member's loss costs
//! as few groups their leader as it can.

use needle_consensus::{GroupId, NodeId};

use super::error::ShardingError;
use super::shard_map::{HashRange, ShardMap, ShardPlacement, FIRST_EPOCH, MAX_SHARDS};

/// The replication factor when a request names none.
pub const DEFAULT_REPLICATION_FACTOR: usize = 3;

/// The epoch-1 map of a collection of `shards` shards over `members`, with
/// `replication_factor` replicas each (default `min(3, members)`), its groups
/// numbered from `first_group`.
pub fn plan(
    shards: u32,
    replication_factor: Option<u64>,
    members: &[NodeId],
    first_group: GroupId,
) -> Result<ShardMap, ShardingError> {
    if shards == 0 || shards > MAX_SHARDS {
        return Err(ShardingError::InvalidShardCount {
            given: u64::from(shards),
            max: MAX_SHARDS,
        });
    }
    let mut members = members.to_vec();
    members.sort_unstable();
    members.dedup();
    let n = members.len();
    let r = match replication_factor {
        None => DEFAULT_REPLICATION_FACTOR.min(n),
        Some(r) => usize::try_from(r).unwrap_or(usize::MAX),
    };
    if r == 0 || r > n {
        return Err(ShardingError::InvalidReplicationFactor {
            given: replication_factor.unwrap_or(r as u64),
            members: n,
        });
    }
    if first_group.is_cluster() || first_group.0.checked_add(u64::from(shards)).is_none() {
        return Err(ShardingError::InvalidMap(format!(
            "groups cannot be numbered from {}",
            first_group.0
        )));
    }
    let mut leads = vec![0usize; n];
    let placements = HashRange::even(shards)
        .into_iter()
        .enumerate()
        .map(|(i, range)| {
            let start = i * r % n;
            let mut held: Vec<usize> = (0..r).map(|j| (start + j) % n).collect();
            // Fewest leads first, then the earliest in the layout.
            let (pick, _) = held
                .iter()
                .enumerate()
                .min_by_key(|(pos, &m)| (leads[m], *pos))
                .unwrap_or((0, &0));
            held.swap(0, pick);
            leads[held[0]] += 1;
            ShardPlacement {
                id: i as u32,
                range,
                group: GroupId(first_group.0 + i as u64),
                members: held.into_iter().map(|m| members[m]).collect(),
            }
        })
        .collect();
    Ok(ShardMap {
        epoch: FIRST_EPOCH,
        replication_factor: r,
        shards: placements,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: u64) -> Vec<NodeId> {
        (1..=n).collect()
    }

    #[test]
    fn the_issue_layout_spreads_replicas_and_first_leaders() {
        // 5 members, 4 shards, R = 3: 12 replicas, so two members hold 3, three
        // hold 2, and the four first leaders are four different members.
        let m = plan(4, Some(3), &ids(5), GroupId(1)).unwrap();
        assert_eq!(m.validate(), Ok(()));
        let mut held: Vec<usize> = (1..=5).map(|id| m.held_by(id).count()).collect();
        held.sort_unstable();
        assert_eq!(held, vec![2, 2, 2, 3, 3]);
        let mut leaders: Vec<NodeId> = m.shards.iter().map(|s| s.members[0]).collect();
        leaders.sort_unstable();
        leaders.dedup();
        assert_eq!(leaders.len(), 4);
    }

    #[test]
    fn counts_outside_their_bounds_are_refused_with_their_codes() {
        let refused = |s, r, n| plan(s, r, &ids(n), GroupId(1)).unwrap_err().code();
        assert_eq!(refused(0, None, 3), "INVALID_SHARD_COUNT");
        assert_eq!(refused(1025, None, 3), "INVALID_SHARD_COUNT");
        assert_eq!(refused(4, Some(4), 3), "INVALID_REPLICATION_FACTOR");
        assert_eq!(refused(4, Some(0), 3), "INVALID_REPLICATION_FACTOR");
        assert_eq!(refused(4, Some(u64::MAX), 3), "INVALID_REPLICATION_FACTOR");
        assert!(plan(4, None, &ids(2), GroupId(1)).is_ok_and(|m| m.replication_factor == 2));
        assert!(plan(4, None, &ids(7), GroupId(1)).is_ok_and(|m| m.replication_factor == 3));
        assert!(plan(1024, Some(1), &ids(1), GroupId(1)).is_ok());
    }

    proptest! {
        #[test]
        fn replicas_and_leaders_spread_evenly(n in 1u64..=9, r_pick in 0usize..9, shards in 1u32..=96) {
            let r = r_pick % n as usize + 1;
            let m = plan(shards, Some(r as u64), &ids(n), GroupId(10)).unwrap();
            prop_assert_eq!(m.validate(), Ok(()));
            let held: Vec<usize> = (1..=n).map(|id| m.held_by(id).count()).collect();
            let total = shards as usize * r;
            let (lo, hi) = (total / n as usize, total.div_ceil(n as usize));
            prop_assert!(held.iter().all(|&h| h == lo || h == hi), "{:?}", held);
            let leads: Vec<usize> = (1..=n)
                .map(|id| m.shards.iter().filter(|s| s.members[0] == id).count())
                .collect();
            let (fewest, most) = (leads.iter().min().unwrap(), leads.iter().max().unwrap());
            prop_assert!(most - fewest <= 1, "leads {:?}", leads);
        }
    }
}
