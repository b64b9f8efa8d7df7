//! The Raft log is what makes an applied entry durable: a member applies committed
//! entries to RocksDB without an fsync of their own, so a machine crash can take
//! the last ones back out of its database (with the applied id written beside
//! them). Such a member must apply them again from its log, once each.

use crate::raft_cluster::{ids, write_ids, RaftCluster};
use crate::support::wait_for;
use std::path::Path;
use std::time::Duration;

/// Copies `from`'s entries except `raft` (the Raft log and snapshots) into `to`.
fn copy_database(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "raft" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_database(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Replaces `dir`'s database (everything but `raft`) with the copy in `saved`.
fn restore_database(saved: &Path, dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "raft" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            std::fs::remove_dir_all(entry.path()).unwrap();
        } else {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    copy_database(saved, dir);
}

/// The database's own count of applied operations (`needle_applied_seq`): members
/// that applied the same entries once each agree on it.
fn applied_ops(cluster: &RaftCluster, i: usize) -> Option<u64> {
    let metrics = cluster.client(i).get_text("/metrics").1;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("needle_applied_seq "))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_member_whose_database_lost_applied_entries_applies_them_again_from_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, leader) = RaftCluster::start_with_docs(dir.path(), 3, &ids("before", 10));
    assert!(cluster.converged());
    let follower = (leader + 1) % 3;

    // The follower's database as it stood after the first writes, copied while it
    // is down (a consistent crash image).
    cluster.kill(follower);
    let saved = dir.path().join("saved-database");
    copy_database(cluster.data_dir(follower), &saved);
    cluster.restart(follower);

    // More acknowledged writes, deletes among them, applied by every member.
    assert!(write_ids(&cluster.client(leader), &ids("after", 20))
        .iter()
        .all(|s| *s == 200));
    for id in ids("before", 3) {
        let deleted = cluster
            .client(leader)
            .delete(&format!("/collections/docs/vectors/{id}"));
        assert_eq!(deleted.0, 200, "{}", deleted.1);
    }
    assert!(cluster.converged());
    let ops = applied_ops(&cluster, leader);
    assert!(ops.is_some_and(|n| n >= 34), "{ops:?}");

    // The machine crash: the database is back where the copy stood, the Raft log
    // keeps everything it fsynced.
    cluster.kill(follower);
    restore_database(&saved, cluster.data_dir(follower));
    cluster.restart(follower);

    // It applies the lost entries again from its own log: it holds what the others
    // hold, has applied as many operations as they have (none twice), and reads
    // them from its own state.
    assert!(cluster.converged(), "the restored member did not catch up");
    let caught_up = wait_for(Duration::from_secs(10), || {
        applied_ops(&cluster, follower) == ops
    });
    assert!(
        caught_up,
        "the restored member applied {:?} operations, the leader {ops:?}",
        applied_ops(&cluster, follower)
    );
    let own = cluster.client(follower);
    assert_eq!(own.get("/collections/docs/vectors/after-19").0, 200);
    assert_eq!(own.get("/collections/docs/vectors/before-0").0, 404);
    assert_eq!(own.get("/collections/docs/vectors/before-9").0, 200);
}
