//! Raft membership: members added and removed under load, and a five-member cluster
//! losing two members and split 2/3.

use crate::cluster::create_docs;
use crate::raft_cluster::{ids, write_ids, RaftCluster};
use crate::support::{needle, wait_for};
use std::time::Duration;

#[test]
fn members_are_added_and_removed_under_load_without_losing_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RaftCluster::start(dir.path(), 3, &[]);
    let leader = cluster.leader();
    create_docs(&cluster.client(leader), 3, "cosine");
    assert!(write_ids(&cluster.client(leader), &ids("seed", 50))
        .iter()
        .all(|s| *s == 200));
    let joiner = cluster.start_joiner();
    // A writer keeps going through a follower while the membership changes.
    let writer_client = cluster.client((leader + 1) % 3);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("load-{n}");
                if write_ids(&writer_client, std::slice::from_ref(&id)) == vec![200] {
                    acked.push(id);
                }
                n += 1;
            }
            acked
        })
    };
    let url = cluster.nodes[(leader + 2) % 3]
        .as_ref()
        .unwrap()
        .url
        .clone();
    let (ok, out, err) = needle(&[
        "cluster",
        "add-node",
        "--url",
        &url,
        "--cluster-addr",
        &cluster.addrs[joiner],
    ]);
    assert!(ok, "add-node failed: {out} {err}");
    assert!(
        out.contains(&format!("\"node_id\": {}", joiner + 1)),
        "{out}"
    );
    let status = cluster.status(leader).unwrap();
    let states: Vec<(u64, String)> = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_u64().unwrap(),
                p["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(states.len(), 4, "{status}");
    assert!(
        states.contains(&(joiner as u64 + 1, "follower".to_string())),
        "{status}"
    );
    // Remove a follower that is not the writer's entry point.
    let removed = (0..3)
        .find(|i| *i != leader && *i != (leader + 1) % 3)
        .unwrap();
    let (ok, out, err) = needle(&[
        "cluster",
        "remove-node",
        "--url",
        &url,
        "--node-id",
        &(removed + 1).to_string(),
    ]);
    assert!(ok, "remove-node failed: {out} {err}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.join().unwrap();
    assert!(!acked.is_empty());
    cluster.kill(removed);
    let members = cluster.status(leader).unwrap()["peers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(members, 3);
    assert!(cluster.converged());
    // Every acknowledged write is on the new member.
    for id in acked.iter().rev().take(20) {
        let got = cluster
            .client(joiner)
            .get(&format!("/collections/docs/vectors/{id}"));
        assert_eq!(got.0, 200, "{id}: {}", got.1);
    }
    let leader_url = cluster.nodes[leader].as_ref().unwrap().url.clone();
    let (ok, out, err) = needle(&["cluster", "status", "--url", &leader_url]);
    assert!(ok && out.contains("leader_id"), "{out} {err}");
}

#[test]
fn five_members_survive_two_losses_and_a_minority_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RaftCluster::start(
        dir.path(),
        5,
        &["--fault-injection", "--write-timeout-ms", "2000"],
    );
    let leader = cluster.leader();
    create_docs(&cluster.client(leader), 3, "cosine");
    assert_eq!(
        write_ids(&cluster.client(leader), &ids("five", 3)),
        vec![200; 3]
    );
    // The leader and one more member die: three of five still elect and write.
    let other = (leader + 1) % 5;
    cluster.kill(leader);
    cluster.kill(other);
    let live = cluster.live();
    let new = cluster.leader_among(&live);
    let acked = wait_for(Duration::from_secs(10), || {
        write_ids(&cluster.client(live[0]), &ids("three-of-five", 1)) == vec![200]
    });
    assert!(acked);
    cluster.restart(leader);
    cluster.restart(other);
    assert!(cluster.converged());
    // Two members cut off from the other three: the two cannot write, the three can.
    let minority = [new, (new + 1) % 5];
    let majority: Vec<usize> = (0..5).filter(|i| !minority.contains(i)).collect();
    cluster.partition(&[&minority, &majority]);
    let majority_leader = cluster.leader_among(&majority);
    assert!(majority.contains(&majority_leader));
    assert!(wait_for(Duration::from_secs(10), || {
        write_ids(&cluster.client(majority[0]), &ids("majority-of-five", 1)) == vec![200]
    }));
    for &m in &minority {
        assert_ne!(
            write_ids(&cluster.impatient(m), &ids(&format!("minority-{m}"), 1)),
            vec![200]
        );
    }
    cluster.heal();
    assert!(cluster.converged());
}
