//! needle's election timeout in openraft's terms.
//!
//! needle's setting means what the Raft paper and the replication guide mean: a
//! follower that has heard nothing from a leader for a random time in
//! `[min, max)` starts an election. openraft's two numbers mean something else. It
//! also keeps a *leader lease* of `election_timeout_max` (a voter refuses to elect
//! anyone until the lease since it last heard the leader has run out), and a
//! follower campaigns only once `lease + sampled timeout` has passed. Handed
//! needle's 150–300 ms as they are, a follower waited 450–600 ms after the last
//! heartbeat: most of a failover was this, not the election.
//!
//! So openraft is given the lease as half of needle's maximum and a sampled
//! timeout that makes `lease + sampled` fall inside needle's window: with the
//! defaults (150–300 ms, heartbeat 50 ms) openraft gets 51..150, its lease is
//! 150 ms (three heartbeats) and a follower campaigns 201–300 ms after the last
//! heartbeat. A vote is only granted once the voter's own lease has run out, and a
//! campaign starts after it, so the lease still keeps a live leader from being
//! deposed by a member that merely lost touch with it.

use std::ops::Range;

/// openraft's `election_timeout_min` and `election_timeout_max` for needle's
/// election window `window` (ms) and `heartbeat` interval (ms).
///
/// openraft campaigns `max + U(min, max)` after the last heartbeat and needs
/// `heartbeat < min < max`; the answer keeps the campaign inside `window`
/// wherever those bounds allow (a window too narrow for them gets the smallest
/// valid one above it).
pub(crate) fn openraft_timeouts(window: &Range<u64>, heartbeat: u64) -> (u64, u64) {
    let lease = window.end / 2;
    let min = window.start.saturating_sub(lease).max(heartbeat + 1);
    let max = lease.max(min + 1);
    (min, max)
}

/// When a follower of openraft set with `(min, max)` campaigns after the last
/// heartbeat: `[max + min, 2 max)` ms.
#[cfg(test)]
fn campaign_window((min, max): (u64, u64)) -> Range<u64> {
    max + min..2 * max
}

#[cfg(test)]
mod tests {
    use super::{campaign_window, openraft_timeouts};

    #[test]
    fn the_default_window_campaigns_within_150_to_300_ms_of_the_last_heartbeat() {
        let timeouts = openraft_timeouts(&(150..300), 50);
        assert_eq!(timeouts, (51, 150));
        let campaign = campaign_window(timeouts);
        assert!(campaign.start >= 150 && campaign.end <= 300, "{campaign:?}");
        // The lease (openraft's max) outlasts two missed heartbeats.
        assert!(timeouts.1 > 2 * 50);
    }

    #[test]
    fn a_window_starting_past_half_its_end_is_kept_whole() {
        assert_eq!(
            campaign_window(openraft_timeouts(&(400..500), 50)),
            400..500
        );
    }

    #[test]
    fn a_wide_window_is_narrowed_from_below_only() {
        // openraft needs its sampled timeout above the heartbeat.
        let campaign = campaign_window(openraft_timeouts(&(1000..2000), 100));
        assert_eq!(campaign, 1101..2000);
    }

    #[test]
    fn every_answer_is_valid_for_openraft() {
        for (window, heartbeat) in [(150..300, 50), (10..20, 50), (100..101, 1), (0..1, 0)] {
            let (min, max) = openraft_timeouts(&window, heartbeat);
            assert!(heartbeat < min && min < max, "{window:?}, {heartbeat}");
        }
    }
}
