//! Raft clusters of real `needle serve --raft` processes over QUIC with mutual TLS:
//! election, writes through every member, leader loss, pauses, partitions,
//! leadership hand-over and snapshot catch-up.

use crate::cluster::create_docs;
use crate::raft_cluster::{ids, write_ids, RaftCluster};
use crate::support::{assert_error, wait_for};
use serde_json::json;
use std::time::Duration;

#[test]
fn three_members_elect_one_leader_and_take_writes_through_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftCluster::start(dir.path(), 3, &[]);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    // Created through a follower: forwarded to the leader, answered once applied here.
    create_docs(&cluster.client(follower), 3, "cosine");
    for i in 0..3 {
        let written = write_ids(&cluster.client(i), &ids(&format!("via{i}"), 5));
        assert!(
            written.iter().all(|s| *s == 200),
            "writes via member {i}: {written:?}"
        );
    }
    // A linearizable read on any member sees every acknowledged write.
    for i in 0..3 {
        for writer in 0..3 {
            let got = cluster.client(i).get(&format!(
                "/collections/docs/vectors/via{writer}-4?consistency=linearizable"
            ));
            assert_eq!(got.0, 200, "member {i} reading via{writer}-4: {}", got.1);
        }
        let found = cluster.client(i).post(
            "/collections/docs/search",
            &json!({"vector": [5.0, 1.0, 0.5], "k": 15, "consistency": "linearizable"}),
        );
        assert_eq!(found.0, 200, "{}", found.1);
        assert_eq!(found.1["results"].as_array().map(Vec::len), Some(15));
    }
    assert!(cluster.converged());
    // Exactly one member reports itself leader, in /cluster/status and in metrics.
    let leaders: Vec<usize> = (0..3)
        .filter(|&i| {
            let metrics = cluster.client(i).get_text("/metrics").1;
            metrics.contains(&format!("needle_raft_leader{{node_id=\"{}\"}} 1", i + 1))
        })
        .collect();
    assert_eq!(leaders, vec![leader]);
    let metrics = cluster.client(leader).get_text("/metrics").1;
    for name in [
        "needle_raft_term",
        "needle_raft_commit_index",
        "needle_raft_applied_index",
        "needle_replication_lag_seconds{replica=",
        "needle_replication_lag_operations{replica=",
        "needle_replication_operations_total{role=\"raft_applied\"}",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from the leader's metrics"
        );
    }
    let status = cluster.status(leader).unwrap();
    assert_eq!(status["leader_id"], json!(leader as u64 + 1));
    assert!(status["term"].as_u64().unwrap() >= 1);
    assert_eq!(status["peers"].as_array().map(Vec::len), Some(3));
    assert!(status["commit_index"].as_u64().unwrap() >= 16);
    // Bad input is refused before it takes a log slot, with the usual errors.
    let bad = cluster.client(follower).post(
        "/collections/docs/vectors/batch",
        &json!({"vectors": [{"id": "x", "vector": [1.0]}]}),
    );
    assert_error(&bad, 400, "DIMENSION_MISMATCH");
    let bad = cluster.client(follower).post(
        "/collections/docs/search",
        &json!({"vector": [1.0, 0.0, 0.0], "consistency": "sometimes"}),
    );
    assert_error(&bad, 400, "INVALID_REQUEST");
}

#[test]
fn a_killed_leader_is_replaced_and_catches_up_when_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, leader) = RaftCluster::start_with_docs(dir.path(), 3, &ids("before", 10));
    let term_before = cluster.status(leader).unwrap()["term"].as_u64().unwrap();
    cluster.kill(leader);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_leader = cluster.leader_among(&survivors);
    assert_ne!(new_leader, leader);
    // Writes through either survivor are acknowledged again.
    let acked = wait_for(Duration::from_secs(10), || {
        write_ids(&cluster.client(survivors[0]), &ids("after", 1)) == vec![200]
    });
    assert!(acked, "no write acknowledged after the leader was killed");
    assert!(write_ids(&cluster.client(survivors[1]), &ids("after2", 5))
        .iter()
        .all(|s| *s == 200));
    assert!(
        cluster.status(new_leader).unwrap()["term"]
            .as_u64()
            .unwrap()
            > term_before
    );
    // The old leader comes back as a follower of the same cluster (never
    // re-initialised) and receives what it missed.
    cluster.restart(leader);
    assert_eq!(cluster.leader(), new_leader);
    assert!(cluster.converged());
    let got = cluster
        .client(leader)
        .get("/collections/docs/vectors/after2-4?consistency=linearizable");
    assert_eq!(got.0, 200, "{}", got.1);
}

#[test]
fn a_paused_leader_neither_acknowledges_writes_nor_serves_stale_linearizable_reads() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftCluster::start(dir.path(), 3, &[]);
    let old = cluster.leader();
    create_docs(&cluster.client(old), 3, "cosine");
    assert_eq!(write_ids(&cluster.client(old), &ids("k", 1)), vec![200]);
    let old_node = cluster.nodes[old].as_ref().unwrap();
    old_node.signal("STOP");
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let new = cluster.leader_among(&others);
    // Written while the old leader sleeps.
    assert_eq!(
        write_ids(&cluster.client(new), &ids("during-pause", 1)),
        vec![200]
    );
    old_node.signal("CONT");
    // Right after it resumes, the old leader must not serve what it had: a
    // linearizable read either sees the write made during the pause or fails.
    let read = cluster
        .impatient(old)
        .try_get("/collections/docs/vectors/during-pause-0?consistency=linearizable");
    if let Ok((status, body)) = read {
        assert!(
            status == 200 || status >= 500,
            "stale linearizable read: {status} {body}"
        );
    }
    // A write sent to it is acknowledged only if the new leader committed it.
    let statuses = write_ids(&cluster.impatient(old), &ids("after-resume", 1));
    if statuses == vec![200] {
        let got = cluster
            .client(new)
            .get("/collections/docs/vectors/after-resume-0?consistency=linearizable");
        assert_eq!(got.0, 200, "an acknowledged write is missing: {}", got.1);
    }
    assert!(cluster.converged());
}

#[test]
fn a_minority_partition_refuses_writes_and_linearizable_reads_while_the_majority_continues() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftCluster::start(
        dir.path(),
        3,
        &["--fault-injection", "--write-timeout-ms", "2000"],
    );
    let old = cluster.leader();
    create_docs(&cluster.client(old), 3, "cosine");
    assert_eq!(
        write_ids(&cluster.client(old), &ids("whole", 3)),
        vec![200; 3]
    );
    let majority: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    cluster.partition(&[&[old], &majority]);
    // The majority elects one of its own and goes on taking writes.
    let new = cluster.leader_among(&majority);
    assert_ne!(new, old);
    let acked = wait_for(Duration::from_secs(10), || {
        write_ids(&cluster.client(majority[0]), &ids("majority", 1)) == vec![200]
    });
    assert!(acked);
    // The cut-off old leader acknowledges nothing and serves no linearizable read.
    let refused = write_ids(&cluster.impatient(old), &ids("minority", 1));
    assert_ne!(refused, vec![200], "the minority acknowledged a write");
    let read = cluster
        .impatient(old)
        .try_get("/collections/docs/vectors/whole-0?consistency=linearizable");
    assert!(
        !matches!(read, Ok((200, _))),
        "the minority served a linearizable read: {read:?}"
    );
    // An eventual read there still answers from its own state.
    let eventual = cluster.client(old).get("/collections/docs/vectors/whole-0");
    assert_eq!(eventual.0, 200);
    cluster.heal();
    assert!(cluster.converged());
    let got = cluster
        .client(old)
        .get("/collections/docs/vectors/majority-0?consistency=linearizable");
    assert_eq!(got.0, 200, "{}", got.1);
    let lost = cluster
        .client(new)
        .get("/collections/docs/vectors/minority-0");
    assert_eq!(lost.0, 404, "a refused write must not appear: {}", lost.1);
}

#[test]
fn step_down_hands_leadership_to_another_member() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftCluster::start(dir.path(), 3, &["--admin-key", "s3cret"]);
    let old = cluster.leader();
    create_docs(&cluster.client(old), 3, "cosine");
    let refused = cluster.client(old).post("/cluster/step-down", &json!({}));
    assert_error(&refused, 401, "UNAUTHORIZED");
    let follower = (old + 1) % 3;
    let not_leader =
        cluster
            .client(follower)
            .post_with_bearer("/cluster/step-down", "s3cret", &json!({}));
    assert_error(&not_leader, 503, "NO_LEADER");
    let (status, body) =
        cluster
            .client(old)
            .post_with_bearer("/cluster/step-down", "s3cret", &json!({}));
    assert_eq!(status, 200, "{body}");
    let new = body["leader_id"].as_u64().unwrap() as usize - 1;
    assert_ne!(new, old);
    assert_eq!(cluster.leader(), new);
    assert_eq!(
        write_ids(&cluster.client(old), &ids("after-step-down", 2)),
        vec![200; 2]
    );
    assert!(cluster.converged());
}

#[test]
fn a_member_behind_the_purged_log_catches_up_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RaftCluster::start(dir.path(), 3, &["--raft-snapshot-every", "20"]);
    let leader = cluster.leader();
    create_docs(&cluster.client(leader), 3, "cosine");
    let behind = (leader + 1) % 3;
    cluster.kill(behind);
    // Snapshots every 20 entries, keeping 20 behind each: the entries the member
    // misses are purged long before it returns.
    let written = write_ids(&cluster.client(leader), &ids("while-down", 200));
    assert!(written.iter().all(|s| *s == 200));
    let purged = wait_for(Duration::from_secs(30), || {
        cluster
            .status(leader)
            .and_then(|s| s["purged_index"].as_u64())
            .is_some_and(|p| p > 50)
    });
    assert!(
        purged,
        "the leader never purged its log: {:?}",
        cluster.status(leader)
    );
    cluster.restart(behind);
    assert!(cluster.converged());
    // It installed the leader's snapshot: its data directory moved to a new
    // generation, which only a snapshot install does.
    assert!(cluster.data_dir(behind).join("NEEDLE_GENERATION").exists());
    let got = cluster
        .client(behind)
        .get("/collections/docs/vectors/while-down-199?consistency=linearizable");
    assert_eq!(got.0, 200, "{}", got.1);
}

#[test]
fn a_write_retried_with_its_idempotency_key_is_applied_once_even_across_a_leader_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RaftCluster::start(dir.path(), 3, &[]);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    create_docs(&cluster.client(leader), 3, "cosine");
    let c = cluster.client(follower);
    let record = json!({"id": "once", "vector": [1.0, 2.0, 3.0]});
    let key = ("Idempotency-Key", "42:1");
    let first = c.post_with_header("/collections/docs/vectors", key, &record);
    assert_eq!(first.0, 201, "{}", first.1);
    // The retry gets the first answer, not VECTOR_EXISTS.
    let retry = c.post_with_header("/collections/docs/vectors", key, &record);
    assert_eq!(retry, first);
    // A new write (no key, or another key) is a new write.
    assert_error(
        &c.post("/collections/docs/vectors", &record),
        409,
        "VECTOR_EXISTS",
    );
    let other = c.post_with_header(
        "/collections/docs/vectors",
        ("Idempotency-Key", "42:2"),
        &record,
    );
    assert_error(&other, 409, "VECTOR_EXISTS");
    // A delete retried with its key answers as the first one did.
    let gone = ("Idempotency-Key", "42:3");
    let deleted = c.delete_with_header("/collections/docs/vectors/once", gone);
    assert_eq!(deleted.1["deleted"], json!(true), "{}", deleted.1);
    let again = c.delete_with_header("/collections/docs/vectors/once", gone);
    assert_eq!(again.1["deleted"], json!(true), "{}", again.1);
    assert_eq!(
        c.delete("/collections/docs/vectors/once").1["deleted"],
        json!(false)
    );
    // The records are replicated: after the leader dies, a retry of the first insert
    // through another member is still recognised and not applied again.
    cluster.kill(leader);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    cluster.leader_among(&survivors);
    let late =
        cluster
            .client(survivors[1])
            .post_with_header("/collections/docs/vectors", key, &record);
    assert_eq!(
        late, first,
        "a retry after the leader change was applied again"
    );
    let absent = cluster
        .client(survivors[0])
        .get("/collections/docs/vectors/once?consistency=linearizable");
    assert_eq!(
        absent.0, 404,
        "the retried insert came back to life: {}",
        absent.1
    );
    let bad = c.post_with_header(
        "/collections/docs/vectors",
        ("Idempotency-Key", "x"),
        &record,
    );
    assert_error(&bad, 400, "INVALID_REQUEST");
}

#[test]
fn a_primary_write_is_acknowledged_before_commit_and_is_lost_with_a_cut_off_leader() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftCluster::start(
        dir.path(),
        3,
        &["--fault-injection", "--write-timeout-ms", "2000"],
    );
    let old = cluster.leader();
    let follower = (old + 1) % 3;
    create_docs(&cluster.client(old), 3, "cosine");
    // In a healthy cluster a primary write through a follower is acknowledged and
    // then applied everywhere.
    let body = |id: &str| json!({"vectors": [{"id": id, "vector": [1.0, 0.0, 0.0]}], "write_concern": "primary"});
    let acked = cluster
        .client(follower)
        .post("/collections/docs/vectors/batch", &body("p-healthy"));
    assert_eq!(acked.0, 200, "{}", acked.1);
    assert_eq!(
        acked.1["seq"],
        json!(0),
        "nothing is applied when a primary write is acknowledged"
    );
    // Not committed when acknowledged, so even a linearizable read may miss it for a
    // moment; it is committed and applied shortly after.
    assert!(wait_for(Duration::from_secs(10), || {
        cluster
            .client(follower)
            .get("/collections/docs/vectors/p-healthy")
            .0
            == 200
    }));
    // Cut the leader off: it still takes primary writes into its own log...
    let majority: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    cluster.partition(&[&[old], &majority]);
    let cut_off = cluster
        .impatient(old)
        .try_post("/collections/docs/vectors/batch", &body("p-lost"));
    // ...but never a majority write.
    let refused = cluster.impatient(old).try_post(
        "/collections/docs/vectors/batch",
        &json!({"vectors": [{"id": "m-refused", "vector": [0.0, 1.0, 0.0]}]}),
    );
    assert!(
        !matches!(refused, Ok((200, _))),
        "a cut-off leader acknowledged a majority write"
    );
    let new = cluster.leader_among(&majority);
    assert!(wait_for(Duration::from_secs(10), || {
        write_ids(&cluster.client(new), &ids("after-cut", 1)) == vec![200]
    }));
    cluster.heal();
    assert!(cluster.converged());
    // The acknowledged primary write never reached a majority: the new leader's log
    // replaced it, on every member.
    if let Ok((200, _)) = cut_off {
        for i in 0..3 {
            let lost = cluster
                .client(i)
                .get("/collections/docs/vectors/p-lost?consistency=linearizable");
            assert_eq!(lost.0, 404, "member {i}: {}", lost.1);
        }
    }
    let kept = cluster
        .client(old)
        .get("/collections/docs/vectors/after-cut-0?consistency=linearizable");
    assert_eq!(kept.0, 200, "{}", kept.1);
}
