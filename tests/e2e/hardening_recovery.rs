//! What a node does when something inside it goes wrong: a worker that panics, an
//! in-memory apply that fails after its write is durable, a device with no room for
//! entries the cluster ordered. It recovers, says so in `/health`, and never lets
//! its memory, its store or the other members disagree.

use crate::raft_cluster::RaftCluster;
use crate::support::{assert_error, wait_for, Client, Node};
use serde_json::{json, Value};
use std::time::Duration;

fn failpoint(spec: &str) -> Vec<(String, String)> {
    vec![("FAILPOINTS".to_string(), spec.to_string())]
}

fn create(c: &Client, name: &str) -> (u16, Value) {
    c.post(
        "/collections",
        &json!({"name": name, "dimensions": 2, "distance": "dot"}),
    )
}

#[test]
fn a_writer_panic_fails_one_request_and_the_node_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with_env(
        &dir.path().join("data"),
        &[],
        &failpoint("writer-panic=1*panic"),
    );
    let c = node.client();
    // The first commit panics: that request hears so; the writer lives on.
    assert_error(&create(&c, "p"), 503, "INTERRUPTED");
    assert_eq!(create(&c, "p").0, 201);
    assert_eq!(
        c.post(
            "/collections/p/vectors",
            &json!({"id": "a", "vector": [1, 0]})
        )
        .0,
        201
    );
    assert_eq!(c.get("/collections/p/vectors/a").0, 200);
    let (status, health) = c.get("/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["problems"][0]["component"], "writer", "{health}");
    let (_, metrics) = c.get_text("/metrics");
    assert!(
        metrics.contains("needle_thread_panics_total{component=\"writer\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_search_engine_panic_fails_one_search_and_the_next_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with_env(
        &dir.path().join("data"),
        &[],
        &failpoint("search-engine-panic=1*panic"),
    );
    let c = node.client();
    create(&c, "s");
    c.post(
        "/collections/s/vectors",
        &json!({"id": "a", "vector": [1, 0]}),
    );
    let search = json!({"vector": [1, 0], "k": 1});
    assert_error(
        &c.post("/collections/s/search", &search),
        503,
        "INTERRUPTED",
    );
    let (status, body) = c.post("/collections/s/search", &search);
    assert_eq!(
        (status, body["results"][0]["id"].clone()),
        (200, json!("a"))
    );
    let health = c.get("/health").1;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["problems"][0]["component"], "search", "{health}");
}

#[test]
fn a_failed_in_memory_apply_is_rebuilt_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with_env(
        &dir.path().join("data"),
        &[],
        &failpoint("apply-in-memory-fails=1*return"),
    );
    let c = node.client();
    create(&c, "r");
    // Durable, then the in-memory apply fails: the write must still be visible,
    // because memory is rebuilt from the store rather than left behind it.
    assert_eq!(
        c.post(
            "/collections/r/vectors",
            &json!({"id": "a", "vector": [1, 0]})
        )
        .0,
        201
    );
    let (status, body) = c.post("/collections/r/search", &json!({"vector": [1, 0], "k": 5}));
    assert_eq!(status, 200);
    assert_eq!(body["results"][0]["id"], "a", "{body}");
    assert_eq!(c.get("/collections/r").1["count"], 1);
    let health = c.get("/health").1;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["problems"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("rebuilt from the store")),
        "{health}"
    );
}

#[test]
fn a_node_that_cannot_rebuild_stops_taking_writes_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with_env(
        &dir.path().join("data"),
        &[],
        &failpoint("apply-in-memory-fails=1*return;rebuild-fails=1*return"),
    );
    let c = node.client();
    create(&c, "f");
    let resp = c.post(
        "/collections/f/vectors",
        &json!({"id": "a", "vector": [1, 0]}),
    );
    assert_error(&resp, 503, "NODE_FAILED");
    let (status, health) = c.get("/health");
    assert_eq!(
        (status, health["status"].clone()),
        (503, json!("failed")),
        "{health}"
    );
    assert_error(
        &c.post(
            "/collections/f/vectors",
            &json!({"id": "b", "vector": [0, 1]}),
        ),
        503,
        "NODE_FAILED",
    );
    // The write that failed in memory was durable: a restart serves it.
    let node = node.restart_with_env(&[]);
    let c = node.client();
    assert_eq!(c.get("/collections/f/vectors/a").0, 200);
    assert_eq!(c.get("/health").1["status"], "ok");
}

#[test]
fn a_raft_member_that_cannot_apply_stops_and_catches_up_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broken = 2;
    let mut cluster = RaftCluster::start_with_member_env(dir.path(), 3, &[], &[], |i| {
        if i == broken {
            failpoint("apply-in-memory-fails=1*return;rebuild-fails=1*return")
        } else {
            Vec::new()
        }
    });
    let mut leader = cluster.leader();
    if leader == broken {
        assert_eq!(
            cluster
                .client(leader)
                .post("/cluster/step-down", &json!({}))
                .0,
            200
        );
        assert!(wait_for(Duration::from_secs(30), || {
            leader = cluster.leader_among(&[0, 1]);
            leader != broken
        }));
    }
    let c = cluster.client(leader);
    crate::cluster::create_docs(&c, 2, "dot");
    for batch in 0..5 {
        let records: Vec<Value> = (0..20)
            .map(|i| json!({"id": format!("b{batch}-{i}"), "vector": [i as f32, 1.0]}))
            .collect();
        let written = c.post(
            "/collections/docs/vectors/batch",
            &json!({ "vectors": records }),
        );
        assert_eq!(written.0, 200, "{}", written.1);
    }
    // The member stopped rather than skip what the others applied...
    assert!(wait_for(Duration::from_secs(30), || {
        cluster
            .client(broken)
            .try_get("/health")
            .is_ok_and(|(s, h)| s == 503 && h["status"] == "failed")
    }));
    // ...and once restarted (healthy), it holds exactly what the others hold.
    cluster.restart_with_env(broken, &[]);
    assert!(
        wait_for(Duration::from_secs(60), || {
            let sums = checksums(&cluster);
            sums.iter().all(|s| *s == sums[0] && s.is_string())
        }),
        "the member diverged: {:?}",
        checksums(&cluster)
    );
    assert_eq!(
        cluster.client(broken).get("/collections/docs").1["count"],
        100
    );
}

fn checksums(cluster: &RaftCluster) -> Vec<Value> {
    cluster
        .live()
        .into_iter()
        .map(|i| cluster.client(i).get("/collections/docs/checksum").1["checksum"].clone())
        .collect()
}

/// Three members; member `full`'s device has no room (as a full GPU would report).
fn with_a_full_device(dir: &std::path::Path, full: usize) -> RaftCluster {
    RaftCluster::start_with_member_env(dir, 3, &[], &[], |i| {
        if i == full {
            failpoint("device-full=return")
        } else {
            Vec::new()
        }
    })
}

#[test]
fn entries_the_cluster_ordered_are_applied_even_where_the_device_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let full = 2;
    let cluster = with_a_full_device(dir.path(), full);
    let mut leader = cluster.leader();
    if leader == full {
        // It would refuse to order writes: let another member lead.
        assert_eq!(
            cluster
                .client(leader)
                .post("/cluster/step-down", &json!({}))
                .0,
            200
        );
        assert!(wait_for(Duration::from_secs(30), || {
            leader = cluster.leader();
            leader != full
        }));
    }
    let c = cluster.client(leader);
    crate::cluster::create_docs(&c, 2, "dot");
    let records: Vec<Value> = (0..50)
        .map(|i| json!({"id": format!("v{i}"), "vector": [i as f32, 1.0]}))
        .collect();
    let written = c.post(
        "/collections/docs/vectors/batch",
        &json!({"vectors": records, "write_concern": "all"}),
    );
    assert_eq!(written.0, 200, "{}", written.1);
    // Every member holds the same data: the full one served it from its host copy
    // instead of refusing what the others applied.
    assert!(
        wait_for(Duration::from_secs(30), || {
            let sums = checksums(&cluster);
            sums.iter().all(|s| *s == sums[0] && s.is_string())
        }),
        "members diverged: {:?}",
        checksums(&cluster)
    );
    let on_full = cluster.client(full);
    assert_eq!(on_full.get("/collections/docs").1["count"], 50);
    let health = on_full.get("/health").1;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["problems"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no room")),
        "{health}"
    );
}

#[test]
fn a_leader_whose_device_is_full_refuses_before_ordering() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with_env(
        &dir.path().join("data"),
        &[],
        &failpoint("device-full=return"),
    );
    let c = node.client();
    create(&c, "g");
    // This node orders the write, so it refuses it: nothing is written anywhere.
    assert_error(
        &c.post(
            "/collections/g/vectors",
            &json!({"id": "a", "vector": [1, 0]}),
        ),
        507,
        "DEVICE_MEMORY_FULL",
    );
    assert_eq!(c.get("/collections/g").1["count"], 0);
}

#[test]
fn a_full_leader_refuses_a_write_a_follower_forwards_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let full = 2;
    let cluster = with_a_full_device(dir.path(), full);
    crate::cluster::create_docs(&cluster.client(cluster.leader()), 2, "dot");
    for _ in 0..5 {
        let leader = cluster.leader();
        if leader == full {
            break;
        }
        let path = format!("/cluster/step-down?to={}", full + 1);
        let (status, body) = cluster.client(leader).post(&path, &json!({}));
        assert!(status == 200 || status == 503, "{status} {body}");
    }
    assert_eq!(cluster.leader(), full, "the full member never led");
    // The follower has room; the leader, which orders the write, has none.
    let c = cluster.client((full + 1) % 3);
    assert_error(
        &c.post(
            "/collections/docs/vectors",
            &json!({"id": "a", "vector": [1, 0]}),
        ),
        507,
        "DEVICE_MEMORY_FULL",
    );
    assert_eq!(
        c.get("/collections/docs/vectors/a?consistency=linearizable")
            .0,
        404
    );
}

#[test]
fn an_idempotency_key_reused_by_a_different_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftCluster::start(dir.path(), 3, &[]);
    let leader = cluster.leader();
    crate::cluster::create_docs(&cluster.client(leader), 2, "dot");
    let c = cluster.client((leader + 1) % 3);
    let key = ("Idempotency-Key", "7:1");
    let first = c.post_with_header(
        "/collections/docs/vectors",
        key,
        &json!({"id": "a", "vector": [1, 0]}),
    );
    assert_eq!(first.0, 201, "{}", first.1);
    // The same key with another body is not a retry: it is refused, not answered
    // with the first write's outcome (which would drop this write silently).
    let reused = c.post_with_header(
        "/collections/docs/vectors",
        key,
        &json!({"id": "b", "vector": [0, 1]}),
    );
    assert_error(&reused, 409, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(
        c.get("/collections/docs/vectors/b?consistency=linearizable")
            .0,
        404
    );
    // A true retry still gets the first answer.
    let retry = c.post_with_header(
        "/collections/docs/vectors",
        key,
        &json!({"id": "a", "vector": [1, 0]}),
    );
    assert_eq!(retry, first);
}

#[test]
fn a_node_whose_log_keeps_no_request_records_refuses_an_idempotency_key() {
    // A standalone node (like a primary) cannot answer a retry from a record, so
    // it says so instead of applying the write twice on a retry.
    let (_dir, node) = crate::support::node();
    let c = node.client();
    assert_eq!(create(&c, "k").0, 201);
    let refused = c.post_with_header(
        "/collections/k/vectors",
        ("Idempotency-Key", "9:1"),
        &json!({"id": "a", "vector": [1.0, 0.0]}),
    );
    assert_error(&refused, 400, "INVALID_REQUEST");
    assert_eq!(
        refused.1["error"]["message"],
        "Idempotency-Key is honoured by Raft members only (serve --raft)"
    );
    assert_eq!(c.get("/collections/k/vectors/a").0, 404);
}
