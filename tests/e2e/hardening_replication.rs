//! Replication that must not get stuck: a backlog larger than one message, a write
//! too large to ever replicate, a replica set that must shrink as well as grow.

use crate::cluster::{
    caught_up, create_docs, primary_args, replica_args, replica_args_at, start, tls_args,
};
use crate::support::{assert_error, needle, wait_for, Node};
use serde_json::{json, Value};
use std::time::Duration;

fn checksum(node: &Node) -> Value {
    node.client().get("/collections/docs/checksum").1["checksum"].clone()
}

#[test]
fn a_replica_far_behind_catches_up_through_replies_that_fit_a_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (args, p_addr) = primary_args(vec!["--insecure-dev".into()]);
    let p = start(&dir.path().join("p"), &args);
    let c = p.client();
    create_docs(&c, 384, "dot");
    // 45 batches of 1,000 × 384-d vectors: ~70 MB of log, more than the 64 MiB a
    // single reply could ever carry.
    for b in 0..45 {
        let records: Vec<Value> = (0..1000)
            .map(|i| json!({"id": format!("b{b}-{i}"), "vector": vec![(b * 1000 + i) as f32 * 1e-3; 384]}))
            .collect();
        let written = c.post(
            "/collections/docs/vectors/batch",
            &json!({"vectors": records}),
        );
        assert_eq!(written.0, 200, "{}", written.1);
    }
    // A replica that joins now needs all of it from the log, in one pull of up to
    // 1,000 entries.
    let r = start(
        &dir.path().join("r"),
        &replica_args(&p_addr, vec!["--insecure-dev".into()]),
    );
    assert!(
        wait_for(Duration::from_secs(120), || caught_up(&p, &r)),
        "the replica never caught up: {}",
        r.client().get("/replication/status").1
    );
    assert_eq!(checksum(&r), checksum(&p));
    assert_eq!(r.client().get("/collections/docs").1["count"], 45_000);
}

#[test]
fn a_write_too_large_to_replicate_is_refused_at_submit() {
    let dir = tempfile::tempdir().unwrap();
    let (args, _) = primary_args(vec!["--insecure-dev".into()]);
    let p = start(&dir.path().join("p"), &args);
    let c = p.client();
    create_docs(&c, 65_536, "dot");
    // 230 records of 65,536 components: a ~30 MB body, but 60 MB encoded, more than
    // one replicated entry may be.
    let zeros = format!("[{}]", vec!["0"; 65_536].join(","));
    let records: Vec<String> = (0..230)
        .map(|i| format!("{{\"id\":\"z{i}\",\"vector\":{zeros}}}"))
        .collect();
    let body = format!("{{\"vectors\":[{}]}}", records.join(","));
    let resp = c.post_raw("/collections/docs/vectors/batch", body);
    assert_error(&resp, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(c.get("/collections/docs").1["count"], 0);
    // A Raft member refuses it the same way, before it takes a log slot.
    let raft = crate::raft_cluster::RaftCluster::start(&dir.path().join("raft"), 1, &[]);
    let rc = raft.client(raft.leader());
    create_docs(&rc, 65_536, "dot");
    let body = format!("{{\"vectors\":[{}]}}", records.join(","));
    assert_error(
        &rc.post_raw("/collections/docs/vectors/batch", body),
        413,
        "PAYLOAD_TOO_LARGE",
    );
}

fn known(p: &Node) -> Value {
    p.client().get("/replication/status").1["known_replicas"].clone()
}

#[test]
fn replicas_are_known_by_name_and_a_retired_one_can_be_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    needle_transport::certs::generate_cluster(&certs, 4, &[]).unwrap();
    let extra = |tls: Vec<String>| {
        let mut args = tls;
        args.extend(
            [
                "--admin-key",
                "k",
                "--write-timeout-ms",
                "2000",
                "--replication-sync-interval-ms",
                "100",
            ]
            .map(String::from),
        );
        args
    };
    let (args, p_addr) = primary_args(extra(tls_args(&certs, 1)));
    let p = start(&dir.path().join("p"), &args);
    let c = p.client();
    create_docs(&c, 2, "dot");
    let mut replicas: Vec<Option<Node>> = (2..=4)
        .map(|n| {
            Some(start(
                &dir.path().join(format!("r{n}")),
                &replica_args(&p_addr, extra(tls_args(&certs, n))),
            ))
        })
        .collect();
    let insert = |id: &str| {
        c.post(
            "/collections/docs/vectors",
            &json!({"id": id, "vector": [1, 0]}),
        )
    };
    assert!(wait_for(Duration::from_secs(30), || replicas
        .iter()
        .flatten()
        .all(|r| caught_up(&p, r))));
    assert_eq!(insert("a").0, 201);
    // node-2 comes back on another cluster address: still one replica, not two.
    replicas[0].take().map(Node::kill);
    let (moved, moved_addr) = replica_args_at(&p_addr, extra(tls_args(&certs, 2)));
    replicas[0] = Some(start(&dir.path().join("r2"), &moved));
    assert!(wait_for(Duration::from_secs(30), || replicas[0]
        .as_ref()
        .is_some_and(|r| caught_up(&p, r))));
    // Counted apart while its old address might still be a live node, then merged
    // back under its name once that address has been silent for 15 s.
    let node2_fresh = |p: &Node| {
        let status = p.client().get("/replication/status").1;
        status["replicas"].as_array().is_some_and(|rs| {
            rs.iter()
                .any(|r| r["replica"] == "node-2" && r["cluster_addr"] == moved_addr.as_str())
        })
    };
    assert!(
        wait_for(Duration::from_secs(60), || known(&p)
            == json!(["node-2", "node-3", "node-4"])
            && node2_fresh(&p)),
        "{}",
        p.client().get("/replication/status").1
    );
    // node-3 and node-4 are retired for good: a majority of 4 nodes is out of reach.
    replicas[1].take().map(Node::kill);
    replicas[2].take().map(Node::kill);
    assert_error(&insert("b"), 504, "WRITE_CONCERN_TIMEOUT");
    // Forgetting one leaves 3 nodes, of which the primary and node-2 are a majority.
    let (ok, stdout, stderr) = needle(&[
        "replica",
        "forget",
        "node-3",
        "--url",
        &p.url,
        "--admin-key",
        "k",
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(known(&p), json!(["node-2", "node-4"]));
    assert_eq!(insert("c").0, 201);
    // Forgetting needs the admin key, and an unknown name changes nothing.
    let (ok, _, stderr) = needle(&["replica", "forget", "node-4", "--url", &p.url]);
    assert!(!ok && stderr.contains("UNAUTHORIZED"), "{stderr}");
    let (ok, stdout, _) = needle(&[
        "replica",
        "forget",
        "node-9",
        "--url",
        &p.url,
        "--admin-key",
        "k",
    ]);
    assert!(ok && stdout.contains("\"forgotten\": false"), "{stdout}");
    // It stays forgotten across a restart of the primary.
    let p = p.restart();
    assert_eq!(known(&p), json!(["node-2", "node-4"]));
}
