//! The Rust API of primary–replica replication, in one process over real QUIC with
//! mutual TLS: `PrimaryNode` / `ReplicaNode`, write concerns, lag, promotion and
//! demotion.

use needle::replication::{
    PrimaryNode, ReplicaNode, ReplicationConfig, Role, TlsConfig, WriteConcern,
};
use needle::{CollectionConfig, Database, Distance, VectorRecord};
use needle_transport::certs::generate_cluster;
use std::path::Path;
use std::time::{Duration, Instant};

fn config(certs: &Path, node: usize) -> ReplicationConfig {
    ReplicationConfig {
        sync_interval_ms: 100,
        tls: Some(TlsConfig {
            cert_path: certs.join(format!("node-{node}.pem")),
            key_path: certs.join(format!("node-{node}-key.pem")),
            ca_path: Some(certs.join("ca.pem")),
        }),
        ..Default::default()
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_and_replica_nodes_replicate_then_swap_roles() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    generate_cluster(&certs, 2, &[]).unwrap();
    let primary = PrimaryNode::with_config(
        Database::open(dir.path().join("p")).unwrap(),
        "127.0.0.1:0",
        config(&certs, 1),
    )
    .unwrap();
    primary.start().await.unwrap();
    primary
        .database()
        .create_collection(CollectionConfig::new("docs", 3, Distance::Cosine))
        .unwrap();
    let primary_addr = primary.cluster_addr().unwrap().to_string();

    let mut replica = ReplicaNode::with_config(
        Database::open(dir.path().join("r")).unwrap(),
        "127.0.0.1:0",
        config(&certs, 2),
    )
    .unwrap();
    assert!(
        replica.start_sync().await.is_err(),
        "start_sync before connect"
    );
    replica.connect(&primary_addr).await.unwrap();
    replica.start_sync().await.unwrap();
    eventually("the replica's first pull", || {
        replica.database().applied_seq() == primary.database().applied_seq()
    })
    .await;

    // With the replica connected, `all` waits for it.
    for i in 0..20 {
        let record = VectorRecord::new(format!("v{i}"), vec![1.0, i as f32, 0.5]);
        let seq = primary
            .insert_with_concern("docs", record, WriteConcern::All)
            .await
            .unwrap();
        assert!(
            replica.database().applied_seq() >= seq,
            "acknowledged before the replica had it"
        );
    }
    eventually("zero lag", || {
        replica.replication_lag().unwrap().operations == 0
            && replica.database().applied_seq() == primary.database().applied_seq()
    })
    .await;
    assert_eq!(replica.replication_lag().unwrap().time_ms, 0);
    assert_eq!(
        replica
            .database()
            .collection("docs")
            .unwrap()
            .get("v7")
            .unwrap()
            .vector,
        vec![1.0, 7.0, 0.5]
    );

    // Swap roles: promote the replica, demote the primary to follow it.
    let promoted = replica.promote_to_primary().await.unwrap();
    assert_eq!(promoted.epoch, 2);
    assert_eq!(replica.role(), Some(Role::Primary));
    let new_primary = replica.cluster_addr().unwrap().to_string();
    let demoted = primary.demote_to_replica(&new_primary).await.unwrap();
    assert_eq!((demoted.epoch, demoted.discarded), (2, 0));
    assert!(matches!(primary.role(), Some(Role::Replica { .. })));
    let refused = primary
        .insert_with_concern(
            "docs",
            VectorRecord::new("x", vec![1.0, 0.0, 0.0]),
            WriteConcern::Primary,
        )
        .await;
    assert!(refused.is_err(), "a demoted primary took a write");

    replica
        .database()
        .collection("docs")
        .unwrap()
        .insert(VectorRecord::new("after", vec![0.0, 1.0, 0.0]))
        .unwrap();
    eventually("the old primary to follow the new one", || {
        primary
            .database()
            .collection("docs")
            .unwrap()
            .get("after")
            .is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_node_on_an_unspecified_address_is_refused() {
    // Its primary would see it at another address and its member list would name
    // it as a stranger: a promotion could count it twice.
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    generate_cluster(&certs, 1, &[]).unwrap();
    let db = Database::open(dir.path().join("p")).unwrap();
    let primary = PrimaryNode::with_config(db, "0.0.0.0:0", config(&certs, 1)).unwrap();
    let refused = primary.start().await.unwrap_err();
    assert_eq!(refused.code(), "INVALID_REQUEST", "{refused}");
    assert!(refused.to_string().contains("unspecified"), "{refused}");
}
