//! Nemeses: faults drawn at random from a seed (printed, so a failing schedule
//! replays), applied to real processes and to the transport's fault injection, then
//! healed. Every fault is recorded in the history.

use super::history::Recorder;
use super::workload::{Rng, Targets};
use crate::raft_cluster::RaftCluster;
use crate::support::Client;
use serde_json::json;
use std::time::Duration;

/// The faults a Raft run draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftFault {
    /// SIGKILL the leader, restart it after a while.
    KillLeader,
    /// SIGSTOP any member, SIGCONT after a while.
    Pause,
    /// Cut the leader off from everyone.
    IsolateLeader,
    /// A random minority on one side, the majority on the other.
    SplitMinority,
    /// Two sides that cannot reach each other, and one member that reaches both.
    Bridge,
    /// Every message delayed 5–60 ms, one in ten lost.
    SlowAndLossy,
    /// The leader hands over (`POST /cluster/step-down`).
    StepDown,
    /// A follower is removed from the membership and added back.
    Membership,
}

impl RaftFault {
    pub const ALL: [RaftFault; 8] = [
        RaftFault::KillLeader,
        RaftFault::Pause,
        RaftFault::IsolateLeader,
        RaftFault::SplitMinority,
        RaftFault::Bridge,
        RaftFault::SlowAndLossy,
        RaftFault::StepDown,
        RaftFault::Membership,
    ];
}

pub const ADMIN_KEY: &str = "verify-admin";

/// Applies one fault from `menu` to `cluster`, holds it for a random while, heals it.
pub fn raft_fault(
    cluster: &mut RaftCluster,
    menu: &[RaftFault],
    rng: &mut Rng,
    recorder: &Recorder,
    targets: &Targets,
) {
    let live = cluster.live();
    let fault = menu[rng.below(menu.len() as u64) as usize];
    let hold = Duration::from_millis(300 + rng.below(1200));
    let leader = cluster.leader_within(Duration::from_secs(20));
    match fault {
        RaftFault::KillLeader => {
            let Some(leader) = leader else { return };
            recorder.fault(format!("kill leader {}", leader + 1));
            cluster.kill(leader);
            *targets.urls.lock() = cluster.urls();
            std::thread::sleep(hold);
            cluster.restart(leader);
            *targets.urls.lock() = cluster.urls();
            recorder.note(format!("restarted {}", leader + 1));
        }
        RaftFault::Pause => {
            let victim = live[rng.below(live.len() as u64) as usize];
            let Some(node) = cluster.nodes[victim].as_ref() else {
                return;
            };
            recorder.fault(format!("pause {}", victim + 1));
            node.signal("STOP");
            std::thread::sleep(hold);
            node.signal("CONT");
            recorder.note(format!("resume {}", victim + 1));
        }
        RaftFault::IsolateLeader => {
            let Some(leader) = leader else { return };
            let rest: Vec<usize> = live.iter().copied().filter(|i| *i != leader).collect();
            recorder.fault(format!("isolate leader {}", leader + 1));
            cut_for(cluster, &[&[leader], &rest], hold, recorder);
        }
        RaftFault::SplitMinority => {
            let mut order = live.clone();
            shuffle(&mut order, rng);
            let (minority, majority) = order.split_at((order.len() - 1) / 2);
            recorder.fault(format!("split {:?} | {:?}", ids(minority), ids(majority)));
            cut_for(cluster, &[minority, majority], hold, recorder);
        }
        RaftFault::Bridge => {
            let mut order = live.clone();
            shuffle(&mut order, rng);
            let bridge = order[0];
            let (left, right) = order[1..].split_at((order.len() - 1) / 2);
            recorder.fault(format!(
                "bridge {} between {:?} and {:?}",
                bridge + 1,
                ids(left),
                ids(right)
            ));
            // The bridge is in neither set, so it reaches both.
            cut_for(cluster, &[left, right], hold, recorder);
        }
        RaftFault::SlowAndLossy => {
            recorder.fault("slow and lossy links".into());
            let rules = json!({
                "rules": [{"delay_ms": [5, 60], "drop": 0.1}],
                "seed": rng.below(u64::MAX),
            });
            for i in cluster.live() {
                let _ = cluster.admin_client(i).try_post("/debug/faults", &rules);
            }
            std::thread::sleep(hold * 2);
            cluster.heal();
            recorder.note("heal".into());
        }
        RaftFault::StepDown => {
            let Some(leader) = leader else { return };
            recorder.fault(format!("step down {}", leader + 1));
            let _ = cluster.impatient(leader).try_post_with_bearer(
                "/cluster/step-down",
                ADMIN_KEY,
                &json!({}),
            );
        }
        RaftFault::Membership => {
            // As an operator replaces a member: a fresh node joins (learner, then
            // voter), then a follower is removed and stopped.
            let Some(leader) = leader else { return };
            if !cluster.can_add_member() {
                return; // every spare certificate is used: skip
            }
            let joiner = cluster.start_joiner();
            *targets.urls.lock() = cluster.urls();
            let url = cluster.urls()[leader].clone();
            let added = Client::with_timeout(&url, Duration::from_secs(60)).try_post_with_bearer(
                "/cluster/members",
                ADMIN_KEY,
                &json!({"cluster_addr": cluster.addrs[joiner]}),
            );
            recorder.fault(format!(
                "add member {}: {:?}",
                joiner + 1,
                added.as_ref().map(|r| r.0)
            ));
            if !matches!(added, Ok((200, _))) {
                return; // the final check adds it or stops it
            }
            let Some(leader) = cluster.leader_within(Duration::from_secs(20)) else {
                return;
            };
            let followers: Vec<usize> = cluster
                .live()
                .into_iter()
                .filter(|i| *i != leader && *i != joiner)
                .collect();
            let victim = followers[rng.below(followers.len() as u64) as usize];
            let removed = cluster
                .impatient(leader)
                .try_delete_with_bearer(&format!("/cluster/members/{}", victim + 1), ADMIN_KEY);
            recorder.note(format!(
                "remove member {}: {:?}",
                victim + 1,
                removed.as_ref().map(|r| r.0)
            ));
            if matches!(removed, Ok((200, _))) {
                cluster.kill(victim);
                *targets.urls.lock() = cluster.urls();
            }
        }
    }
}

/// Partitions the cluster into `sides` for `hold`, then heals it.
fn cut_for(cluster: &RaftCluster, sides: &[&[usize]], hold: Duration, recorder: &Recorder) {
    cluster.partition(sides);
    std::thread::sleep(hold);
    cluster.heal();
    recorder.note("heal".into());
}

/// Member ids (index + 1), for the fault log.
fn ids(indexes: &[usize]) -> Vec<usize> {
    indexes.iter().map(|i| i + 1).collect()
}

fn shuffle(order: &mut [usize], rng: &mut Rng) {
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
}
