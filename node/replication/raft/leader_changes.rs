//! Log lines for every change of leader and of this member's own role, with how
//! long the cluster was without a leader as this member saw it: the record a
//! failover is taken apart with (detection, campaign, the new leader's first
//! heartbeat here), each line carrying the log's own timestamp.

use std::time::Instant;

use needle_consensus::openraft::ServerState;
use needle_consensus::NodeId;

/// What this member last saw: its leader, its role and term, and since when it has
/// had no leader.
pub(crate) struct LeaderChanges {
    leader: Option<NodeId>,
    state: ServerState,
    term: u64,
    leaderless_since: Option<Instant>,
}

impl LeaderChanges {
    pub(crate) fn new() -> LeaderChanges {
        LeaderChanges {
            leader: None,
            state: ServerState::Learner,
            term: 0,
            leaderless_since: Some(Instant::now()),
        }
    }

    /// Logs what changed since the last call. A follower learns it has no leader
    /// when it starts campaigning (its election timer is what noticed), so how long
    /// it waited before that is not known here: the first campaign of a failover
    /// shows `leaderless_ms` near 0, a campaign after a failed one shows the time
    /// since the leader was lost, and "leader known" shows the whole gap.
    /// Changes that come and go between two calls are not seen.
    pub(crate) fn observe(&mut self, leader: Option<NodeId>, state: ServerState, term: u64) {
        if leader != self.leader {
            match (self.leader, leader) {
                (Some(lost), None) => {
                    self.leaderless_since = Some(Instant::now());
                    tracing::info!(term, lost, "no leader known");
                }
                (from, Some(to)) => {
                    let leaderless_ms = self
                        .leaderless_since
                        .take()
                        .map(|t| t.elapsed().as_millis());
                    tracing::info!(term, ?from, leader = to, ?leaderless_ms, "leader known");
                }
                (None, None) => {}
            }
            self.leader = leader;
        }
        let campaign =
            state == ServerState::Candidate && (self.state != state || self.term != term);
        if campaign {
            let leaderless_ms = self.leaderless_since.map(|t| t.elapsed().as_millis());
            tracing::info!(term, ?leaderless_ms, "campaigning for leader");
        }
        self.state = state;
        self.term = term;
    }
}
