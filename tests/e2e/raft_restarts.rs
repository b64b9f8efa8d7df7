//! Members killed and restarted on the same address, then led to: a follower's
//! connection to the dead incarnation must not stand between an impatient client
//! and the new leader.

use crate::cluster::create_docs;
use crate::raft_cluster::{ids, write_ids, RaftCluster};
use crate::support::{assert_error, wait_for, Client};
use serde_json::json;
use std::time::Duration;

const ADMIN_KEY: &str = "s3cret";

/// Hands leadership to member `to` through the current leader.
fn lead_to(cluster: &RaftCluster, to: usize) {
    for _ in 0..5 {
        let leader = cluster.leader();
        if leader == to {
            return;
        }
        let (status, body) = cluster.client(leader).post_with_bearer(
            &format!("/cluster/step-down?to={}", to + 1),
            ADMIN_KEY,
            &json!({}),
        );
        assert!(
            status == 200 || status == 503,
            "step-down to {to}: {status} {body}"
        );
    }
    assert_eq!(cluster.leader(), to, "leadership never reached member {to}");
}

#[test]
fn writes_through_a_follower_reach_a_leader_that_was_restarted_on_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RaftCluster::start(dir.path(), 3, &["--admin-key", ADMIN_KEY]);
    let first = cluster.leader();
    create_docs(&cluster.client(first), 3, "dot");
    let leader = cluster.leader();
    let to_itself = cluster.client(leader).post_with_bearer(
        &format!("/cluster/step-down?to={}", leader + 1),
        ADMIN_KEY,
        &json!({}),
    );
    assert_error(&to_itself, 400, "INVALID_REQUEST");
    let not_an_id =
        cluster
            .client(leader)
            .post_with_bearer("/cluster/step-down?to=abc", ADMIN_KEY, &json!({}));
    assert_error(&not_an_id, 400, "INVALID_REQUEST");
    for round in 0..3 {
        let restarted = cluster.leader();
        let follower = (restarted + 1) % 3;
        // The follower forwards to the leader, and so holds a connection to it.
        assert_eq!(
            write_ids(
                &cluster.client(follower),
                &ids(&format!("before{round}"), 3)
            ),
            vec![200; 3]
        );
        cluster.kill(restarted);
        let survivors: Vec<usize> = (0..3).filter(|i| *i != restarted).collect();
        cluster.leader_among(&survivors);
        cluster.restart(restarted);
        assert!(
            cluster.converged(),
            "round {round}: the restarted member never caught up"
        );
        lead_to(&cluster, restarted);
        // A client that gives up after 100 ms, as impatient ones do: each give-up
        // drops the follower's forward to the new incarnation. Some try must get
        // through well before QUIC's idle timeout (30 s) would have closed the
        // follower's connection to the dead one.
        let url = &cluster.urls()[follower];
        let impatient = Client::with_timeout(url, Duration::from_millis(100));
        let mut n = 0;
        let acked = wait_for(Duration::from_secs(10), || {
            n += 1;
            write_ids(&impatient, &[format!("after{round}-{n}")]) == vec![200]
        });
        assert!(
            acked,
            "round {round}: no write through member {follower} to the restarted leader \
             {restarted} was acknowledged within 10 s of 100 ms tries ({n} tries)"
        );
    }
    assert!(cluster.converged());
}
