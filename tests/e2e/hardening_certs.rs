//! Client certificates are clients, not members: a `RaftClient` holding one writes
//! and searches, but nothing it sends can move a member's state.

use crate::raft_cluster::RaftCluster;
use needle::replication::raft::RaftClient;
use needle::replication::TlsConfig;
use needle::{CollectionConfig, Distance};
use needle_consensus::openraft::raft::VoteRequest;
use needle_consensus::openraft::vote::RaftLeaderId;
use needle_consensus::rpc::RaftRequest;
use needle_transport::{
    BoxFuture, Handler, PeerInfo, Security, TlsFiles, Transport, TransportConfig,
};
use std::sync::Arc;

struct Nothing;

impl Handler for Nothing {
    fn request(&self, _: PeerInfo, _: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        Box::pin(async { Err("nothing here".to_string()) })
    }
    fn push(&self, _: PeerInfo, _: Vec<u8>, _: bool) -> BoxFuture<()> {
        Box::pin(async {})
    }
}

#[test]
fn a_client_certificate_writes_and_searches_but_sends_no_member_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftCluster::start(dir.path(), 3, &[]);
    cluster.leader();
    let certs = dir.path().join("certs");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tls = TlsConfig {
        cert_path: certs.join("client-1.pem"),
        key_path: certs.join("client-1-key.pem"),
        ca_path: Some(certs.join("ca.pem")),
    };
    let addrs = cluster.addrs.clone();
    let client = runtime
        .block_on(async { RaftClient::with_tls(addrs, tls) })
        .unwrap();
    runtime.block_on(async {
        client
            .create_collection(CollectionConfig::new("c", 2, Distance::Dot))
            .await
            .unwrap();
        client.insert("c", "a", &[1.0, 0.0], None).await.unwrap();
        let hits = client.search("c", &[1.0, 0.0], 1, None).await.unwrap();
        assert_eq!(hits[0].id, "a");
    });
    // The same certificate on a raw connection: Raft RPCs and regions are refused.
    let security = Security::Mutual(TlsFiles {
        cert_path: certs.join("client-1.pem"),
        key_path: certs.join("client-1-key.pem"),
        ca_path: certs.join("ca.pem"),
    });
    runtime.block_on(async {
        let transport = Transport::bind(
            "127.0.0.1:0".parse().unwrap(),
            TransportConfig::new(security),
            Arc::new(Nothing),
        )
        .unwrap();
        let member = cluster.addrs[0].parse().unwrap();
        let peer = transport.connect(member).await.unwrap();
        let vote = VoteRequest::new(
            needle_consensus::types::Vote::new(1_000_000, 99),
            Some(needle_consensus::openraft::LogId::new(
                needle_consensus::openraft::impls::leader_id_adv::LeaderId::new(1_000_000, 99)
                    .to_committed(),
                1_000_000,
            )),
        );
        let body = RaftRequest::Vote(vote).encode().unwrap();
        let refused = peer.request(&body).await.unwrap_err().to_string();
        assert!(refused.contains("cluster members"), "{refused}");
        // (Regions are refused to client certificates too: the transport's own test,
        // `a_client_certificate_cannot_read_regions`, reads a registered one.)
    });
    // Nothing was disturbed: the cluster still has its leader and serves writes.
    let leader = cluster.leader();
    crate::cluster::create_docs(&cluster.client(leader), 2, "dot");
}
