//! The Rust API of a Raft cluster: `RaftClient` (native, over QUIC with mutual TLS)
//! and `LoadBalancer` (over HTTP), against real `needle` processes.

use crate::raft_cluster::RaftCluster;
use needle::replication::raft::{RaftClient, ReadConsistency, ReadPreference};
use needle::replication::{LoadBalancer, TlsConfig, WriteConcern};
use needle::{CollectionConfig, Distance};
use serde_json::json;

#[test]
fn the_native_client_writes_and_searches_through_leader_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RaftCluster::start(dir.path(), 3, &[]);
    let certs = dir.path().join("certs");
    // The client holds its own certificate from the cluster CA (a spare identity).
    let tls = TlsConfig {
        cert_path: certs.join("node-4.pem"),
        key_path: certs.join("node-4-key.pem"),
        ca_path: Some(certs.join("ca.pem")),
    };
    let addrs = cluster.addrs.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime
        .block_on(async { RaftClient::with_tls(addrs, tls) })
        .unwrap();
    runtime.block_on(async {
        client
            .create_collection(CollectionConfig::new("documents", 3, Distance::Cosine))
            .await
            .unwrap();
        let meta = json!({"lang": "en"}).as_object().cloned();
        client
            .insert("documents", "doc1", &[1.0, 0.0, 0.0], meta)
            .await
            .unwrap();
        client
            .insert_with_concern(
                "documents",
                "doc2",
                &[0.0, 1.0, 0.0],
                None,
                WriteConcern::All,
            )
            .await
            .unwrap();
        let taken = client
            .insert("documents", "doc1", &[1.0, 0.0, 0.0], None)
            .await;
        assert_eq!(taken.unwrap_err().code(), "VECTOR_EXISTS");
        // Linearizable: sees both writes at once, wherever it is served.
        for preference in [
            ReadPreference::Primary,
            ReadPreference::Secondary,
            ReadPreference::Nearest,
        ] {
            let hits = client
                .search_with(
                    "documents",
                    &[1.0, 0.1, 0.0],
                    2,
                    None,
                    ReadConsistency::Linearizable,
                    preference,
                )
                .await
                .unwrap();
            let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
            assert_eq!(ids, vec!["doc1", "doc2"], "{preference:?}");
        }
        let filtered = client
            .search(
                "documents",
                &[0.0, 1.0, 0.0],
                5,
                Some(&json!({"lang": "en"})),
            )
            .await
            .unwrap();
        assert_eq!(filtered.len(), 1);
        assert_eq!(filtered[0].metadata.as_ref().unwrap()["lang"], "en");
        let bad = client.search("documents", &[1.0], 5, None).await;
        assert_eq!(bad.unwrap_err().code(), "DIMENSION_MISMATCH");
        let status = client.cluster_status().await.unwrap();
        assert!(status.leader_id.is_some());
        assert_eq!(status.peers.len(), 3);
    });
    // The leader dies: the client finds the new one and its writes go on.
    let leader = cluster.leader();
    cluster.kill(leader);
    runtime.block_on(async {
        client
            .insert("documents", "doc3", &[0.0, 0.0, 1.0], None)
            .await
            .unwrap();
        let hits = client
            .search_with_consistency(
                "documents",
                &[0.0, 0.0, 1.0],
                1,
                None,
                ReadConsistency::Linearizable,
            )
            .await
            .unwrap();
        assert_eq!(hits[0].id, "doc3");
    });
    // The HTTP load balancer spreads searches and skips the dead member.
    let urls: Vec<String> = (0..3)
        .map(|i| match &cluster.nodes[i] {
            Some(node) => node.url.clone(),
            None => "127.0.0.1:9".to_string(),
        })
        .collect();
    let lb = LoadBalancer::new(urls);
    runtime.block_on(async {
        for _ in 0..6 {
            let hits = lb
                .search("documents", &[0.0, 0.0, 1.0], 3, None)
                .await
                .unwrap();
            assert_eq!(hits.len(), 3);
        }
        let missing = lb.search("nope", &[0.0, 0.0, 1.0], 3, None).await;
        assert_eq!(missing.unwrap_err().code(), "COLLECTION_NOT_FOUND");
    });
}
