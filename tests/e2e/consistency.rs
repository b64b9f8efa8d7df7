//! The consistency verification suite: recorded histories of real clusters under a
//! seeded nemesis, checked for linearizable registers, durable acknowledged writes,
//! searches that see acknowledged writes, and convergence (see `verify/` and
//! docs/consistency.md). The short runs are part of the test suite; the soaks are
//! `--ignored` (`NEEDLE_VERIFY_SECS`, default 1800). `NEEDLE_VERIFY_SEED` replays a
//! schedule; every run prints its seed and where its history file is.

use crate::verify::history::read_operations;
use crate::verify::linearizability::{self, KeyVerdict};
use crate::verify::nemesis::RaftFault;
use crate::verify::run::{seed, PrimaryReplicaRun, RaftRun, Report};
use std::time::Duration;

fn soak_length() -> Duration {
    Duration::from_secs(
        std::env::var("NEEDLE_VERIFY_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1800),
    )
}

#[track_caller]
fn assert_clean(report: &Report) {
    println!("{}", report.summary());
    assert_eq!(report.anomalies(), 0, "{}", report.summary());
    // A run that did nothing proves nothing.
    assert!(report.acknowledged_writes > 50, "{}", report.summary());
}

fn raft_three(name: &str, duration: Duration) -> RaftRun {
    RaftRun {
        name: name.into(),
        members: 3,
        duration,
        seed: seed(),
        faults: RaftFault::ALL.to_vec(),
        http_clients: 4,
        native_clients: 2,
        failpoint: None,
    }
}

fn raft_five(name: &str, duration: Duration) -> RaftRun {
    RaftRun {
        name: name.into(),
        members: 5,
        duration,
        seed: seed(),
        faults: vec![
            RaftFault::IsolateLeader,
            RaftFault::SplitMinority,
            RaftFault::Bridge,
            RaftFault::KillLeader,
            RaftFault::Pause,
            RaftFault::SlowAndLossy,
            RaftFault::Membership,
        ],
        http_clients: 4,
        native_clients: 1,
        failpoint: None,
    }
}

#[test]
fn raft_three_members_stay_linearizable_under_every_fault() {
    let report = raft_three("raft3", Duration::from_secs(40)).run();
    assert_clean(&report);
    assert!(report.faults >= 10, "{}", report.summary());
}

#[test]
fn raft_five_members_stay_linearizable_under_partitions_and_bridges() {
    let report = raft_five("raft5", Duration::from_secs(30)).run();
    assert_clean(&report);
}

/// This run found a bug, now fixed (docs/consistency.md, "Found"): a replica a
/// promotion caught up from went on acknowledging the old primary's writes.
#[test]
fn primary_replica_keeps_acknowledged_writes_through_failovers() {
    let report = PrimaryReplicaRun {
        name: "primary-replica".into(),
        duration: Duration::from_secs(30),
        seed: seed(),
        http_clients: 4,
    }
    .run();
    assert_clean(&report);
}

/// Self-test: a leader that acknowledges before a majority has the write is caught
/// (an isolated leader acknowledges writes the next leader discards).
#[cfg(feature = "failpoints")]
#[test]
fn planted_bug_ack_before_commit_is_caught() {
    let report = RaftRun {
        failpoint: Some("raft-ack-before-commit"),
        faults: vec![RaftFault::IsolateLeader],
        ..raft_three("planted-ack-before-commit", Duration::from_secs(20))
    }
    .run();
    println!("{}", report.summary());
    assert!(
        !report.lost_appends.is_empty() || !report.violations.is_empty(),
        "the planted bug went unnoticed: {}",
        report.summary()
    );
}

/// Self-test: members that serve `linearizable` reads from local state are caught
/// (a deposed leader or a lagging follower answers with stale data).
#[cfg(feature = "failpoints")]
#[test]
fn planted_bug_local_linearizable_reads_is_caught() {
    let report = RaftRun {
        failpoint: Some("raft-local-linearizable-reads"),
        faults: vec![RaftFault::IsolateLeader, RaftFault::Pause],
        ..raft_three("planted-local-reads", Duration::from_secs(20))
    }
    .run();
    println!("{}", report.summary());
    assert!(
        !report.violations.is_empty() || !report.stale_searches.is_empty(),
        "the planted bug went unnoticed: {}",
        report.summary()
    );
}

#[test]
#[ignore]
fn soak_raft_three_members() {
    assert_clean(&raft_three("soak-raft3", soak_length()).run());
}

#[test]
#[ignore]
fn soak_raft_five_members() {
    assert_clean(&raft_five("soak-raft5", soak_length()).run());
}

#[test]
#[ignore]
fn soak_primary_replica() {
    let report = PrimaryReplicaRun {
        name: "soak-primary-replica".into(),
        duration: soak_length(),
        seed: seed(),
        http_clients: 4,
    }
    .run();
    assert_clean(&report);
}

/// Checks a recorded history file again: `NEEDLE_VERIFY_HISTORY=path cargo test
/// --release --test e2e recheck_a_recorded_history -- --ignored --nocapture`.
#[test]
#[ignore]
fn recheck_a_recorded_history() {
    let path = std::env::var("NEEDLE_VERIFY_HISTORY").expect("NEEDLE_VERIFY_HISTORY=path");
    let ops = read_operations(std::path::Path::new(&path)).expect("history file");
    let mut failing = 0;
    for (key, verdict) in linearizability::check(&ops) {
        match verdict {
            KeyVerdict::Linearizable => println!("{key}: linearizable"),
            KeyVerdict::Inconclusive => {
                failing += 1;
                println!("{key}: undecided (step budget)");
            }
            KeyVerdict::Violation { smallest } => {
                failing += 1;
                println!("{key}: NOT linearizable; smallest failing sub-history:");
                for op in smallest {
                    println!("  {}", serde_json::to_string(&op).unwrap_or_default());
                }
            }
        }
    }
    assert_eq!(failing, 0, "{failing} keys fail");
}
